/* zstream.h: zstd decompression on a thread of its own, between an fd and libarchive's tar reader —
 * as `zstd -d | tar -x` splits the work, so decompressing overlaps writing the job's files.
 * Internal to cache/. (Compression stays in libarchive's zstd filter with one zstd worker per
 * CPU: a thread of our own in front of it measured slower.) */
#pragma once

#include "lib/drv.h"

struct zstream;

/* Decompression: the stream's thread reads in_fd; a zstd stream (magic 28 b5 2f fd) comes out
 * decompressed, anything else as it is (libarchive then knows its other formats). zstream_read
 * gives the next chunk (valid until the next call): its length, 0 at the end, -errno on an error
 * (zstream_error says which). zstream_reader_end stops the thread (it may leave part of in_fd
 * unread), waits and frees. */
int zstream_reader_start(int in_fd, struct zstream **out, struct drv_error *err);
/* The same, the thread reading through rd(ud, buf, n) (as read(2): bytes, 0 at the end, -errno). */
int zstream_reader_start_fn(ssize_t (*rd)(void *ud, void *buf, size_t n), void *ud,
                            struct zstream **out, struct drv_error *err);
ssize_t zstream_read(struct zstream *z, const void **buf);
const char *zstream_error(struct zstream *z);
void zstream_reader_end(struct zstream *z);

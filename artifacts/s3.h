/* s3.h: the S3 backend of objstore (internal to artifacts/): SigV4 through libcurl's
 * CURLOPT_AWS_SIGV4 with x-amz-content-sha256 always sent, canonical query strings, path-style or
 * virtual-host style, session tokens, custom CA, retries with backoff and jitter, SHA-256
 * integrity (payload hash on upload, x-amz-meta-sha256 verified on download), multipart uploads
 * with parallel parts over curl multi (aborted on failure). */
#pragma once

#include "artifacts/objstore.h"

struct s3;

int s3_open(const struct js_storage *cfg, struct s3 **out, struct drv_error *err);
void s3_free(struct s3 *s);
/* Upload size bytes of fd from offset 0 (pread; fd must be seekable). Multipart when size is
 * larger than the part size. content_type may be NULL. */
int s3_put_fd(struct s3 *s, const char *key, int fd, uint64_t size, const char *content_type,
              struct drv_error *err);
/* Upload many files in parallel over reused connections (each small; single PUTs). */
int s3_put_many(struct s3 *s, const struct objstore_item *items, size_t n, struct drv_error *err);
/* Download key (or the byte range [off, off+len) when len > 0) appending to out_fd from its
 * current size; -ENOENT when absent (no message). */
int s3_get(struct s3 *s, const char *key, int out_fd, uint64_t off, uint64_t len,
           struct drv_error *err);
int s3_head(struct s3 *s, const char *key, bool *exists, uint64_t *size, struct drv_error *err);
int s3_delete(struct s3 *s, const char *key, struct drv_error *err);
int s3_list(struct s3 *s, const char *prefix, struct objstore_entry **out, size_t *n,
            struct drv_error *err);
/* Streaming upload: write the object's bytes to *wfd (a pipe; a thread uploads them as they come,
 * in parts of the part size, several at a time); s3_stream_end closes wfd and waits. With
 * abort_it (or any failure) nothing becomes visible under key. The store must not be used by
 * the caller between begin and end. */
struct s3_stream;
int s3_stream_begin(struct s3 *s, const char *key, int *wfd, struct s3_stream **out,
                    struct drv_error *err);
int s3_stream_end(struct s3_stream *st, int wfd, bool abort_it, struct drv_error *err);
/* Streamed download: *rfd is a pipe fed by a thread (resets resume with a Range); read it to EOF,
 * then s3_get_stream_end says whether all of it came and matched its checksum. -ENOENT when
 * absent. The store must not be used by the caller in between. */
struct s3_rstream;
int s3_get_stream_begin(struct s3 *s, const char *key, int *rfd, struct s3_rstream **out,
                        struct drv_error *err);
int s3_get_stream_end(struct s3_rstream *st, int rfd, struct drv_error *err);

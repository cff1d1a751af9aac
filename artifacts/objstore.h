/* objstore.h: the object store of caches, workspaces, artifacts and test results — one interface
 * over `file://DIR` (atomic renames, listing by prefix with mtimes) and S3 (artifacts/s3*.c). */
#pragma once

#include "executor/jobspec.h"

struct objstore;

struct objstore_entry {
        char *key;
        uint64_t size;
        int64_t mtime_ns;
};

/* Open the store the spec names. */
int objstore_open(const struct js_storage *cfg, struct objstore **out, struct drv_error *err);
void objstore_free(struct objstore *s);
static inline void objstore_freep(struct objstore **p)
{
        if (*p)
                objstore_free(*p);
}
/* Begin writing key: returns an fd to write the object's bytes to. Nothing is visible under key
 * until objstore_commit; objstore_abort (or a crash) leaves nothing behind under key. */
int objstore_begin(struct objstore *s, const char *key, int *fd, struct drv_error *err);
int objstore_commit(struct objstore *s, const char *key, int fd, struct drv_error *err);
void objstore_abort(struct objstore *s, const char *key, int fd);
/* Put the bytes of fd (read from its current offset to EOF) under key. */
int objstore_put_fd(struct objstore *s, const char *key, int fd, struct drv_error *err);
struct objstore_item {
        const char *key;
        int fd;                   /* a regular file, read from offset 0 to its size */
        const char *content_type; /* NULL: application/octet-stream */
};
/* Put many files, in parallel over reused connections for S3 (stops at the first failure). */
int objstore_put_many(struct objstore *s, const struct objstore_item *items, size_t n,
                      struct drv_error *err);
/* Open bytes [off, off+len) of key (len 0: to the end) as a file positioned at 0; -ENOENT. */
int objstore_get_range(struct objstore *s, const char *key, uint64_t off, uint64_t len, int *fd,
                       struct drv_error *err);
/* Read key as a stream (for S3: downloaded while the caller reads; for file://: the file).
 * Read *fd to EOF, then objstore_read_end tells whether everything came intact (a caller that
 * must not act on partial data checks it before trusting what it read). -ENOENT when absent. */
int objstore_read_begin(struct objstore *s, const char *key, int *fd, void **handle,
                        struct drv_error *err);
int objstore_read_end(struct objstore *s, void *handle, int fd, struct drv_error *err);
/* Delete key (absent is fine). */
int objstore_delete(struct objstore *s, const char *key, struct drv_error *err);
/* Open key for reading; -ENOENT when absent. */
int objstore_get(struct objstore *s, const char *key, int *fd, struct drv_error *err);
/* Does key exist? */
int objstore_exists(struct objstore *s, const char *key, bool *out, struct drv_error *err);
/* Every key starting with prefix (sorted by key). Caller frees with objstore_entries_free. */
int objstore_list(struct objstore *s, const char *prefix, struct objstore_entry **out, size_t *n,
                  struct drv_error *err);
void objstore_entries_free(struct objstore_entry *e, size_t n);
/* Human name of the store for messages ("file:///x", "s3://bucket"). */
const char *objstore_name(struct objstore *s);
/* Is key a safe object key (no empty, "." or ".." components, no NUL, bounded)? */
bool objstore_key_ok(const char *key);

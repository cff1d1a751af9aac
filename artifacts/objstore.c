/* objstore.c: the file:// object store — objects are files under DIR/objects/, written to a
 * temporary file and renamed into place, so a half-written object never counts as present. */
#include "artifacts/objstore.h"
#include "artifacts/s3.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>

#define MAX_KEY 1024

#define MAX_STREAMS 8

struct objstore {
        struct s3 *s3; /* the S3 backend, or NULL for file:// */
        struct {
                int fd;
                struct s3_stream *st;
        } streams[MAX_STREAMS]; /* S3 uploads begun and not yet committed */
        char *name;
        char *dir; /* DIR/objects */
        char *tmp; /* DIR/tmp */
};

static int stream_end(struct objstore *s, const char *key, int fd, bool abort_it,
                      struct drv_error *err);

bool objstore_key_ok(const char *key)
{
        size_t n = strlen(key);
        if (n == 0 || n > MAX_KEY || key[0] == '/' || key[n - 1] == '/')
                return false;
        for (const char *p = key; *p;) {
                const char *e = strchrnul(p, '/');
                size_t l = (size_t)(e - p);
                if (l == 0 || (l == 1 && p[0] == '.') || (l == 2 && p[0] == '.' && p[1] == '.'))
                        return false;
                p = *e ? e + 1 : e;
        }
        return true;
}

int objstore_open(const struct js_storage *cfg, struct objstore **out, struct drv_error *err)
{
        if (!cfg || !cfg->url)
                return drv_err(err, EINVAL, "the job spec has no storage");
        if (drv_startswith(cfg->url, "s3://")) {
                struct objstore *s = calloc(1, sizeof(*s));
                if (!s)
                        return drv_err(err, ENOMEM, "out of memory");
                const char *t = getenv("TMPDIR");
                s->tmp = strdup(t && t[0] ? t : "/tmp");
                s->name = strdup(cfg->url);
                int r = s->tmp && s->name ? s3_open(cfg, &s->s3, err)
                                          : drv_err(err, ENOMEM, "out of memory");
                if (r < 0) {
                        objstore_free(s);
                        return r;
                }
                *out = s;
                return 0;
        }
        if (!drv_startswith(cfg->url, "file:///"))
                return drv_err(err, EINVAL, "storage url '%s' is neither s3:// nor file:///",
                               cfg->url);
        const char *dir = cfg->url + strlen("file://");
        struct objstore *s = calloc(1, sizeof(*s));
        if (!s)
                return drv_err(err, ENOMEM, "out of memory");
        s->name = strdup(cfg->url);
        s->dir = drv_path_join(dir, "objects");
        s->tmp = drv_path_join(dir, "tmp");
        int r = s->name && s->dir && s->tmp ? 0 : drv_err(err, ENOMEM, "out of memory");
        if (r == 0)
                r = drv_mkdir_p(s->dir, 0700, err);
        if (r == 0)
                r = drv_mkdir_p(s->tmp, 0700, err);
        if (r < 0) {
                objstore_free(s);
                return r;
        }
        *out = s;
        return 0;
}

void objstore_free(struct objstore *s)
{
        if (!s)
                return;
        for (size_t i = 0; i < MAX_STREAMS; i++)
                if (s->streams[i].st)
                        stream_end(s, "", s->streams[i].fd, true, NULL);
        s3_free(s->s3);
        free(s->name);
        free(s->dir);
        free(s->tmp);
        free(s);
}

const char *objstore_name(struct objstore *s)
{
        return s->name;
}

static char *tmp_path(struct objstore *s, int fd)
{
        return drv_asprintf("%s/upload-%d-%d", s->tmp, (int)getpid(), fd);
}

int objstore_begin(struct objstore *s, const char *key, int *fd, struct drv_error *err)
{
        if (!objstore_key_ok(key))
                return drv_err(err, EINVAL, "%s: invalid object key '%s'", s->name, key);
        if (s->s3) { /* a pipe into a streaming multipart upload */
                size_t i = 0;
                while (i < MAX_STREAMS && s->streams[i].st)
                        i++;
                if (i == MAX_STREAMS)
                        return drv_err(err, EBUSY, "%s: too many uploads at once", s->name);
                int r = s3_stream_begin(s->s3, key, fd, &s->streams[i].st, err);
                if (r == 0)
                        s->streams[i].fd = *fd;
                return r;
        }
        /* an unnamed file in tmp/, linked into place at commit */
        int f = open(s->tmp, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
        if (f < 0)
                return drv_err_errno(err, "%s: cannot create an upload for %s", s->name, key);
        *fd = f;
        return 0;
}

/* End the S3 stream of fd (which is closed either way). */
static int stream_end(struct objstore *s, const char *key, int fd, bool abort_it,
                      struct drv_error *err)
{
        for (size_t i = 0; i < MAX_STREAMS; i++)
                if (s->streams[i].st && s->streams[i].fd == fd) {
                        struct s3_stream *st = s->streams[i].st;
                        s->streams[i].st = NULL;
                        return s3_stream_end(st, fd, abort_it, err);
                }
        close(fd);
        return drv_err(err, EBADF, "%s: %s was not begun", s->name, key);
}

int objstore_commit(struct objstore *s, const char *key, int fd, struct drv_error *err)
{
        if (s->s3)
                return stream_end(s, key, fd, false, err);
        _cleanup_free_ char *dst = drv_path_join(s->dir, key);
        _cleanup_free_ char *tmp = tmp_path(s, fd);
        char proc[64];
        if (!dst || !tmp)
                return drv_err(err, ENOMEM, "out of memory");
        if (fsync(fd) < 0)
                return drv_err_errno(err, "%s: cannot write %s", s->name, key);
        _cleanup_free_ char *parent = strdup(dst);
        if (!parent)
                return drv_err(err, ENOMEM, "out of memory");
        *strrchr(parent, '/') = '\0';
        int r = drv_mkdir_p(parent, 0700, err);
        if (r < 0)
                return r;
        snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
        unlink(tmp);
        if (linkat(AT_FDCWD, proc, AT_FDCWD, tmp, AT_SYMLINK_FOLLOW) < 0)
                return drv_err_errno(err, "%s: cannot store %s", s->name, key);
        if (rename(tmp, dst) < 0) {
                r = drv_err_errno(err, "%s: cannot store %s", s->name, key);
                unlink(tmp);
                return r;
        }
        close(fd);
        return 0;
}

void objstore_abort(struct objstore *s, const char *key, int fd)
{
        if (s->s3) { /* only a stream still open (a failed commit already ended it) */
                for (size_t i = 0; fd >= 0 && i < MAX_STREAMS; i++)
                        if (s->streams[i].st && s->streams[i].fd == fd)
                                stream_end(s, key, fd, true, NULL);
                return;
        }
        if (fd >= 0)
                close(fd); /* an O_TMPFILE vanishes with its last fd */
}

int objstore_put_fd(struct objstore *s, const char *key, int src, struct drv_error *err)
{
        struct objstore_item it = {.key = key, .fd = src, .content_type = NULL};
        struct stat st;
        if (s->s3 && fstat(src, &st) == 0 && S_ISREG(st.st_mode) && lseek(src, 0, SEEK_CUR) == 0)
                return objstore_put_many(s, &it, 1, err);
        int fd;
        int r = objstore_begin(s, key, &fd, err);
        if (r < 0)
                return r;
        char buf[65536];
        for (;;) {
                ssize_t n = read(src, buf, sizeof(buf));
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0) {
                        r = drv_err_errno(err, "%s: reading the data of %s", s->name, key);
                        break;
                }
                if (n == 0)
                        break;
                if ((r = drv_write_all(fd, buf, (size_t)n)) < 0) {
                        errno = -r;
                        r = drv_err_errno(err, "%s: writing %s", s->name, key);
                        break;
                }
        }
        if (r < 0) {
                objstore_abort(s, key, fd);
                return r;
        }
        r = objstore_commit(s, key, fd, err);
        if (r < 0)
                objstore_abort(s, key, fd);
        return r;
}

int objstore_get_range(struct objstore *s, const char *key, uint64_t off, uint64_t len, int *fd,
                       struct drv_error *err)
{
        if (!objstore_key_ok(key))
                return drv_err(err, EINVAL, "%s: invalid object key '%s'", s->name, key);
        if (s->s3) {
                int f = open(s->tmp, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
                if (f < 0)
                        return drv_err_errno(err, "%s: cannot create a file in %s", s->name,
                                             s->tmp);
                int r = s3_get(s->s3, key, f, off, len, err);
                if (r == 0 && lseek(f, 0, SEEK_SET) < 0)
                        r = drv_err_errno(err, "%s: %s", s->name, key);
                if (r < 0) {
                        close(f);
                        return r;
                }
                *fd = f;
                return 0;
        }
        int f;
        int r = objstore_get(s, key, &f, err);
        if (r < 0)
                return r;
        if (off > 0 || len > 0) {
                _cleanup_close_ int src = f;
                f = open(s->tmp, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
                if (f < 0)
                        return drv_err_errno(err, "%s: %s", s->name, key);
                loff_t o = (loff_t)off;
                uint64_t left = len ? len : UINT64_MAX;
                while (left > 0) {
                        ssize_t n = copy_file_range(src, &o, f, NULL,
                                                    left > (1u << 30) ? (1u << 30) : left, 0);
                        if (n < 0 && errno == EINTR)
                                continue;
                        if (n < 0) {
                                r = drv_err_errno(err, "%s: %s", s->name, key);
                                close(f);
                                return r;
                        }
                        if (n == 0)
                                break;
                        left -= (uint64_t)n;
                }
                lseek(f, 0, SEEK_SET);
        }
        *fd = f;
        return 0;
}

int objstore_read_begin(struct objstore *s, const char *key, int *fd, void **handle,
                        struct drv_error *err)
{
        *handle = NULL;
        if (!objstore_key_ok(key))
                return drv_err(err, EINVAL, "%s: invalid object key '%s'", s->name, key);
        if (s->s3) {
                struct s3_rstream *st = NULL;
                int r = s3_get_stream_begin(s->s3, key, fd, &st, err);
                *handle = st;
                return r;
        }
        return objstore_get(s, key, fd, err);
}

int objstore_read_end(struct objstore *s, void *handle, int fd, struct drv_error *err)
{
        if (s->s3 && handle)
                return s3_get_stream_end(handle, fd, err);
        close(fd);
        return 0;
}

int objstore_delete(struct objstore *s, const char *key, struct drv_error *err)
{
        if (!objstore_key_ok(key))
                return drv_err(err, EINVAL, "%s: invalid object key '%s'", s->name, key);
        if (s->s3)
                return s3_delete(s->s3, key, err);
        _cleanup_free_ char *p = drv_path_join(s->dir, key);
        if (!p)
                return drv_err(err, ENOMEM, "out of memory");
        if (unlink(p) < 0 && errno != ENOENT)
                return drv_err_errno(err, "%s: cannot delete %s", s->name, key);
        return 0;
}

int objstore_put_many(struct objstore *s, const struct objstore_item *items, size_t n,
                      struct drv_error *err)
{
        for (size_t i = 0; i < n; i++)
                if (!objstore_key_ok(items[i].key))
                        return drv_err(err, EINVAL, "%s: invalid object key '%s'", s->name,
                                       items[i].key);
        if (s->s3)
                return s3_put_many(s->s3, items, n, err);
        for (size_t i = 0; i < n; i++) {
                int r = objstore_put_fd(s, items[i].key, items[i].fd, err);
                if (r < 0)
                        return r;
        }
        return 0;
}

int objstore_get(struct objstore *s, const char *key, int *fd, struct drv_error *err)
{
        if (!objstore_key_ok(key))
                return drv_err(err, EINVAL, "%s: invalid object key '%s'", s->name, key);
        if (s->s3)
                return objstore_get_range(s, key, 0, 0, fd, err);
        _cleanup_free_ char *p = drv_path_join(s->dir, key);
        if (!p)
                return drv_err(err, ENOMEM, "out of memory");
        int f = open(p, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (f < 0)
                return errno == ENOENT ? -ENOENT
                                       : drv_err_errno(err, "%s: cannot read %s", s->name, key);
        *fd = f;
        return 0;
}

int objstore_exists(struct objstore *s, const char *key, bool *out, struct drv_error *err)
{
        if (!objstore_key_ok(key))
                return drv_err(err, EINVAL, "%s: invalid object key '%s'", s->name, key);
        if (s->s3)
                return s3_head(s->s3, key, out, NULL, err);
        _cleanup_free_ char *p = drv_path_join(s->dir, key);
        struct stat st;
        if (!p)
                return drv_err(err, ENOMEM, "out of memory");
        *out = lstat(p, &st) == 0 && S_ISREG(st.st_mode);
        return 0;
}

struct listing {
        struct objstore_entry *v;
        size_t n, cap;
};

static int walk(const char *base, const char *rel, const char *prefix, struct listing *l, int depth)
{
        _cleanup_free_ char *dir = rel[0] ? drv_path_join(base, rel) : strdup(base);
        if (!dir || depth > 64)
                return dir ? 0 : -ENOMEM;
        DIR *d = opendir(dir);
        if (!d)
                return 0;
        struct dirent *de;
        int r = 0;
        while (r == 0 && (de = readdir(d))) {
                if (de->d_name[0] == '.' &&
                    (!de->d_name[1] || (de->d_name[1] == '.' && !de->d_name[2])))
                        continue;
                _cleanup_free_ char *key =
                    rel[0] ? drv_asprintf("%s/%s", rel, de->d_name) : strdup(de->d_name);
                if (!key) {
                        r = -ENOMEM;
                        break;
                }
                /* prune subtrees that cannot hold the prefix */
                size_t kl = strlen(key), pl = strlen(prefix);
                if (strncmp(key, prefix, kl < pl ? kl : pl) != 0)
                        continue;
                struct stat st;
                if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                        continue;
                if (S_ISDIR(st.st_mode)) {
                        r = walk(base, key, prefix, l, depth + 1);
                        continue;
                }
                if (!S_ISREG(st.st_mode) || !drv_startswith(key, prefix))
                        continue;
                if (l->n == l->cap) {
                        size_t cap = l->cap ? 2 * l->cap : 16;
                        struct objstore_entry *v = realloc(l->v, cap * sizeof(*v));
                        if (!v) {
                                r = -ENOMEM;
                                break;
                        }
                        l->v = v;
                        l->cap = cap;
                }
                l->v[l->n++] = (struct objstore_entry){
                    .key = TAKE_PTR(key),
                    .size = (uint64_t)st.st_size,
                    .mtime_ns = (int64_t)st.st_mtim.tv_sec * 1000000000LL + st.st_mtim.tv_nsec};
        }
        closedir(d);
        return r;
}

static int cmp_entry(const void *a, const void *b)
{
        return strcmp(((const struct objstore_entry *)a)->key,
                      ((const struct objstore_entry *)b)->key);
}

int objstore_list(struct objstore *s, const char *prefix, struct objstore_entry **out, size_t *n,
                  struct drv_error *err)
{
        if (s->s3)
                return s3_list(s->s3, prefix, out, n, err);
        struct listing l = {0};
        int r = walk(s->dir, "", prefix, &l, 0);
        if (r < 0) {
                objstore_entries_free(l.v, l.n);
                return drv_err(err, -r, "%s: cannot list %s", s->name, prefix);
        }
        if (l.n)
                qsort(l.v, l.n, sizeof(*l.v), cmp_entry);
        *out = l.v;
        *n = l.n;
        return 0;
}

void objstore_entries_free(struct objstore_entry *e, size_t n)
{
        for (size_t i = 0; i < n; i++)
                free(e[i].key);
        free(e);
}

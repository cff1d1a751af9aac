/* store.c: the content-addressed layer store — ROOT/layers/<hex>/{root/,size,lease,private},
 * per-digest lock files ROOT/locks/<hex>.lock so one layer is downloaded once across processes,
 * shared flock leases on `lease` held by img_pull until img_release, LRU GC (lease mtime = last
 * use) under a size bound that skips every leased layer or layer being pulled. */
#include "executor/images/store_int.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>

int img_store_open(const char *root, uint64_t max_bytes, struct img_store **out,
                   struct drv_error *err)
{
        static const char *subdirs[] = {"layers", "locks", "tmp", "images", "auth"};
        for (size_t i = 0; i < DRV_ARRAY_SIZE(subdirs); i++) {
                _cleanup_free_ char *p = drv_path_join(root, subdirs[i]);
                if (!p)
                        return drv_err(err, ENOMEM, "out of memory");
                int r = drv_mkdir_p(p, 0700, err);
                if (r < 0)
                        return drv_err_prefix(err, "image store %s", root);
        }
        struct img_store *st = calloc(1, sizeof(*st));
        if (!st || !(st->root = strdup(root))) {
                free(st);
                return drv_err(err, ENOMEM, "out of memory");
        }
        st->max_bytes = max_bytes;
        *out = st;
        return 0;
}

void img_store_close(struct img_store *st)
{
        if (!st)
                return;
        free(st->root);
        free(st);
}

static int flock_retry(int fd, int op)
{
        return (int)DRV_RETRY(flock(fd, op));
}

#define CONFIG_MAX   (8u << 20)   /* an image config blob */
#define UNPACK_RATIO 100          /* a layer unpacks to at most this times its blob ... */
#define UNPACK_FLOOR (1ULL << 30) /* ... or this, whichever is more (gzip bombs) */

/* Bytes used by the tree below dirfd (st_blocks, at least IMG_ENTRY_MIN_BYTES an entry: inodes
 * count), never following symlinks. */
static uint64_t du_at(int dirfd, int depth)
{
        if (depth > 256)
                return 0;
        DIR *d = fdopendir(dirfd);
        if (!d) {
                close(dirfd);
                return 0;
        }
        uint64_t total = 0;
        struct dirent *de;
        while ((de = readdir(d))) {
                if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
                        continue;
                struct stat s;
                if (fstatat(dirfd, de->d_name, &s, AT_SYMLINK_NOFOLLOW) < 0)
                        continue;
                uint64_t b = (uint64_t)s.st_blocks * 512;
                total += b > IMG_ENTRY_MIN_BYTES ? b : IMG_ENTRY_MIN_BYTES;
                if (S_ISDIR(s.st_mode)) {
                        int sub = openat(dirfd, de->d_name,
                                         O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                        if (sub >= 0)
                                total += du_at(sub, depth + 1);
                }
        }
        closedir(d);
        return total;
}

static bool layer_complete(const char *ldir)
{
        _cleanup_free_ char *p = drv_path_join(ldir, "size");
        return p && access(p, F_OK) == 0;
}

/* How much a layer of blob_bytes may unpack to: the store's bound, and UNPACK_RATIO times the
 * blob (at least UNPACK_FLOOR) so that a small gzip bomb fails under any store bound. */
static uint64_t unpack_bound(const struct img_store *st, uint64_t blob_bytes)
{
        uint64_t b =
            blob_bytes > UNPACK_FLOOR / UNPACK_RATIO ? blob_bytes * UNPACK_RATIO : UNPACK_FLOOR;
        return st->max_bytes && st->max_bytes < b ? st->max_bytes : b;
}

/* Download desc into ROOT/tmp, verify it, unpack it and move it into place as ldir. */
static int fetch_layer(struct img_store *st, struct reg *reg, const struct img_layer_desc *desc,
                       const char *ldir, struct drv_error *err)
{
        const char *hex = desc->digest + 7;
        _cleanup_free_ char *tmpl = drv_asprintf("%s/tmp/blob-%s-XXXXXX", st->root, hex);
        _cleanup_free_ char *utmpl = drv_asprintf("%s/tmp/layer-%s-XXXXXX", st->root, hex);
        _cleanup_free_ char *rootp = NULL, *sizep = NULL;
        _cleanup_close_ int rfd = -1;
        if (!tmpl || !utmpl)
                return drv_err(err, ENOMEM, "out of memory");
        _cleanup_close_ int fd = mkostemp(tmpl, O_CLOEXEC);
        if (fd < 0)
                return drv_err_errno(err, "cannot create %s", tmpl);
        unlink(tmpl);
        uint64_t t0 = drv_now_ns();
        if (st->max_bytes && desc->size > st->max_bytes)
                return drv_err(err, EFBIG,
                               "layer %s declares %llu bytes, more than the image store's bound "
                               "(%llu)",
                               desc->digest, (unsigned long long)desc->size,
                               (unsigned long long)st->max_bytes);
        int r = reg_get_blob(reg, desc->digest, fd, desc->size ? desc->size : st->max_bytes, err);
        if (r < 0)
                return r;
        struct stat bs;
        fstat(fd, &bs);
        if (lseek(fd, 0, SEEK_SET) < 0)
                return drv_err_errno(err, "seek %s", tmpl);
        if (!mkdtemp(utmpl))
                return drv_err_errno(err, "cannot create %s", utmpl);
        rootp = drv_path_join(utmpl, "root");
        if (!rootp || mkdir(rootp, 0755) < 0 ||
            (rfd = open(rootp, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
                r = drv_err_errno(err, "cannot create %s", rootp ? rootp : utmpl);
                goto fail;
        }
        struct img_unpack_stats us;
        r = img_unpack_layer(fd, rfd, unpack_bound(st, (uint64_t)bs.st_size), &us, err);
        if (r < 0) {
                drv_err_prefix(err, "layer %s", desc->digest);
                goto fail;
        }
        uint64_t size = du_at(TAKE_FD(rfd), 0);
        char buf[32];
        snprintf(buf, sizeof(buf), "%llu\n", (unsigned long long)size);
        sizep = drv_path_join(utmpl, "size");
        if (!sizep || (r = drv_write_file_atomic(sizep, buf, strlen(buf), 0644, err)) < 0)
                goto fail;
        if (reg_has_credentials(reg)) { /* from a private image, maybe: see layer_gate */
                _cleanup_free_ char *pp = drv_path_join(utmpl, "private");
                const char *from = reg_name(reg);
                if (!pp || (r = drv_write_file_atomic(pp, from, strlen(from), 0644, err)) < 0)
                        goto fail;
        }
        drv_rm_rf(ldir, NULL); /* leftovers of a crashed pull */
        if (rename(utmpl, ldir) < 0) {
                r = drv_err_errno(err, "cannot move layer into %s", ldir);
                goto fail;
        }
        log_info("image_layer_pulled",
                 "digest=%s blob_bytes=%lld unpacked_bytes=%llu entries=%llu whiteouts=%llu "
                 "ms=%llu",
                 desc->digest, (long long)bs.st_size, (unsigned long long)size,
                 (unsigned long long)us.entries, (unsigned long long)us.whiteouts,
                 (unsigned long long)((drv_now_ns() - t0) / 1000000));
        return 0;
fail:
        drv_rm_rf(utmpl, NULL);
        return r;
}

/* A layer fetched with credentials (its `private` file names the registry) is reused by another
 * pull as is only from that registry with credentials (a registry links a blob into a repository
 * only for who may read it); any other pull proves that its registry holds the layer by
 * downloading it again (verified, then dropped) — a manifest of a registry the job chose could
 * list any digest. A proof without credentials makes the layer public. */
static int layer_gate(struct img_store *st, struct reg *reg, const struct img_layer_desc *desc,
                      const char *ldir, struct drv_error *err)
{
        _cleanup_free_ char *mp = drv_path_join(ldir, "private");
        _cleanup_free_ char *from = NULL;
        _cleanup_free_ char *tmpl =
            drv_asprintf("%s/tmp/proof-%s-XXXXXX", st->root, desc->digest + 7);
        if (!mp || !tmpl)
                return drv_err(err, ENOMEM, "out of memory");
        if (drv_read_file(mp, &from, NULL, 4096, NULL) < 0)
                return 0; /* public */
        if (reg_has_credentials(reg) && strcmp(from, reg_name(reg)) == 0)
                return 0;
        _cleanup_close_ int fd = mkostemp(tmpl, O_CLOEXEC);
        if (fd < 0)
                return drv_err_errno(err, "cannot create %s", tmpl);
        unlink(tmpl);
        int r = reg_get_blob(reg, desc->digest, fd, desc->size ? desc->size : st->max_bytes, err);
        if (r < 0)
                return drv_err_prefix(err,
                                      "layer %s is in the image store from a private image and "
                                      "this registry does not serve it",
                                      desc->digest);
        if (!reg_has_credentials(reg))
                unlink(mp);
        log_info("image_layer_proved", "digest=%s registry=%s", desc->digest, reg_name(reg));
        return 0;
}

int store_layer_get(struct img_store *st, struct reg *reg, const struct img_layer_desc *desc,
                    int *lease_fd, char **dir, struct drv_error *err)
{
        const char *hex = desc->digest + 7;
        _cleanup_free_ char *lockp = drv_asprintf("%s/locks/%s.lock", st->root, hex);
        _cleanup_free_ char *ldir = drv_asprintf("%s/layers/%s", st->root, hex);
        if (!lockp || !ldir)
                return drv_err(err, ENOMEM, "out of memory");
        _cleanup_close_ int lock = open(lockp, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
        if (lock < 0)
                return drv_err_errno(err, "cannot open %s", lockp);
        if (flock_retry(lock, LOCK_EX | LOCK_NB) < 0) {
                if (errno != EWOULDBLOCK)
                        return drv_err_errno(err, "cannot lock %s", lockp);
                log_info("image_layer_wait", "digest=%s reason=pulled_by_another_process",
                         desc->digest);
                /* polled, not blocking: a cancel must not wait for the other pull */
                while (flock_retry(lock, LOCK_EX | LOCK_NB) < 0) {
                        if (errno != EWOULDBLOCK)
                                return drv_err_errno(err, "cannot lock %s", lockp);
                        if (st->cancel && atomic_load(st->cancel))
                                return drv_err(err, ECANCELED, "layer %s: canceled", desc->digest);
                        usleep(50 * 1000);
                }
        }
        if (!layer_complete(ldir)) {
                if (!reg)
                        return drv_err(err, ENOENT, "layer %s is not in the image store",
                                       desc->digest);
                int r = fetch_layer(st, reg, desc, ldir, err);
                if (r < 0)
                        return r;
        } else {
                int r = reg ? layer_gate(st, reg, desc, ldir, err) : 0;
                if (r < 0)
                        return r;
                log_debug("image_layer_reused", "digest=%s", desc->digest);
        }
        _cleanup_free_ char *leasep = drv_path_join(ldir, "lease");
        if (!leasep)
                return drv_err(err, ENOMEM, "out of memory");
        int lfd = open(leasep, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
        if (lfd < 0 || flock_retry(lfd, LOCK_SH) < 0) {
                int r = drv_err_errno(err, "cannot lease layer %s", desc->digest);
                if (lfd >= 0)
                        close(lfd);
                return r;
        }
        futimens(lfd, NULL); /* last use, for LRU */
        *dir = drv_path_join(ldir, "root");
        if (!*dir) {
                close(lfd);
                return drv_err(err, ENOMEM, "out of memory");
        }
        *lease_fd = lfd;
        return 0; /* the lock is released on return: the lease now keeps GC away */
}

int store_small_blob(struct img_store *st, struct reg *reg, const char *digest, char **body,
                     size_t *len, struct drv_error *err)
{
        _cleanup_free_ char *tmpl = drv_asprintf("%s/tmp/config-XXXXXX", st->root);
        if (!tmpl)
                return drv_err(err, ENOMEM, "out of memory");
        _cleanup_close_ int fd = mkostemp(tmpl, O_CLOEXEC);
        if (fd < 0)
                return drv_err_errno(err, "cannot create %s", tmpl);
        unlink(tmpl);
        int r = reg_get_blob(reg, digest, fd, CONFIG_MAX, err);
        if (r < 0)
                return r;
        if (lseek(fd, 0, SEEK_SET) < 0)
                return drv_err_errno(err, "seek");
        return drv_read_fd(fd, body, len, CONFIG_MAX, err);
}

/* ---- GC ---- */

struct gc_ent {
        char hex[65];
        uint64_t size;
        struct timespec used;
};

static int cmp_used(const void *a, const void *b)
{
        const struct gc_ent *x = a, *y = b;
        if (x->used.tv_sec != y->used.tv_sec)
                return x->used.tv_sec < y->used.tv_sec ? -1 : 1;
        if (x->used.tv_nsec != y->used.tv_nsec)
                return x->used.tv_nsec < y->used.tv_nsec ? -1 : 1;
        return 0;
}

static int gc_list(struct img_store *st, struct gc_ent **out, size_t *n, struct drv_error *err)
{
        _cleanup_free_ char *lp = drv_path_join(st->root, "layers");
        DIR *d = lp ? opendir(lp) : NULL;
        if (!d)
                return drv_err_errno(err, "cannot list %s", lp ? lp : st->root);
        struct gc_ent *v = NULL;
        size_t cnt = 0, cap = 0;
        struct dirent *de;
        int r = 0;
        while ((de = readdir(d))) {
                if (strlen(de->d_name) != 64)
                        continue;
                _cleanup_free_ char *ldir = drv_path_join(lp, de->d_name);
                _cleanup_free_ char *sizep = ldir ? drv_path_join(ldir, "size") : NULL;
                _cleanup_free_ char *leasep = ldir ? drv_path_join(ldir, "lease") : NULL;
                _cleanup_free_ char *sz = NULL;
                if (!sizep || !leasep) {
                        r = drv_err(err, ENOMEM, "out of memory");
                        break;
                }
                struct stat ls;
                if (drv_read_file(sizep, &sz, NULL, 64, NULL) < 0)
                        continue; /* being pulled or broken: not ours to judge */
                if (stat(leasep, &ls) < 0 && stat(ldir, &ls) < 0)
                        continue;
                if (cnt == cap) {
                        cap = cap ? cap * 2 : 64;
                        struct gc_ent *nv = realloc(v, cap * sizeof(*v));
                        if (!nv) {
                                r = drv_err(err, ENOMEM, "out of memory");
                                break;
                        }
                        v = nv;
                }
                memcpy(v[cnt].hex, de->d_name, 65);
                v[cnt].size = strtoull(sz, NULL, 10);
                v[cnt].used = ls.st_mtim;
                cnt++;
        }
        closedir(d);
        if (r < 0) {
                free(v);
                return r;
        }
        if (cnt)
                qsort(v, cnt, sizeof(*v), cmp_used);
        *out = v;
        *n = cnt;
        return 0;
}

/* Remove one layer if nobody pulls or leases it: true when removed. */
static bool gc_try_remove(struct img_store *st, const char *hex)
{
        _cleanup_free_ char *lockp = drv_asprintf("%s/locks/%s.lock", st->root, hex);
        _cleanup_free_ char *ldir = drv_asprintf("%s/layers/%s", st->root, hex);
        _cleanup_free_ char *leasep = ldir ? drv_path_join(ldir, "lease") : NULL;
        _cleanup_free_ char *trash = drv_asprintf("%s/tmp/gc-%s", st->root, hex);
        if (!lockp || !leasep || !trash)
                return false;
        _cleanup_close_ int lock = open(lockp, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
        if (lock < 0 || flock_retry(lock, LOCK_EX | LOCK_NB) < 0)
                return false; /* being pulled */
        _cleanup_close_ int lease = open(leasep, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
        if (lease < 0 || flock_retry(lease, LOCK_EX | LOCK_NB) < 0) {
                log_debug("image_gc_kept", "layer=%s reason=leased", hex);
                return false;
        }
        drv_rm_rf(trash, NULL);
        if (rename(ldir, trash) < 0)
                return false;
        struct drv_error e = {0};
        if (drv_rm_rf(trash, &e) < 0)
                log_warn("image_gc_rm_failed", "layer=%s error=\"%s\"", hex, e.message);
        return true;
}

/* Remove what crashed pulls and GCs left in ROOT/tmp: GC trash, and half-unpacked layers whose
 * digest lock nobody holds. */
static void gc_tmp(struct img_store *st)
{
        _cleanup_free_ char *tp = drv_path_join(st->root, "tmp");
        DIR *d = tp ? opendir(tp) : NULL;
        struct dirent *de;
        while (d && (de = readdir(d))) {
                const char *n = de->d_name;
                bool trash = drv_startswith(n, "gc-");
                if (!trash && !(drv_startswith(n, "layer-") && strlen(n) > 6 + 64))
                        continue;
                _cleanup_free_ char *p = drv_path_join(tp, n);
                _cleanup_free_ char *lockp =
                    trash ? NULL : drv_asprintf("%s/locks/%.64s.lock", st->root, n + 6);
                _cleanup_close_ int lock = -1;
                if (!trash) {
                        lock = lockp ? open(lockp, O_RDWR | O_CLOEXEC) : -1;
                        if (lock >= 0 && flock_retry(lock, LOCK_EX | LOCK_NB) < 0)
                                continue; /* its pull is still running */
                }
                if (p && drv_rm_rf(p, NULL) == 0)
                        log_info("image_gc_tmp_removed", "path=%s", p);
        }
        if (d)
                closedir(d);
}

int img_store_gc(struct img_store *st, uint64_t max_bytes, uint64_t *freed, struct drv_error *err)
{
        gc_tmp(st);
        struct gc_ent *v = NULL;
        size_t n = 0;
        uint64_t total = 0, fr = 0;
        if (freed)
                *freed = 0;
        int r = gc_list(st, &v, &n, err);
        if (r < 0)
                return r;
        for (size_t i = 0; i < n; i++)
                total += v[i].size;
        unsigned removed = 0, kept = 0;
        for (size_t i = 0; i < n && total > max_bytes; i++) {
                if (gc_try_remove(st, v[i].hex)) {
                        total -= v[i].size;
                        fr += v[i].size;
                        removed++;
                        log_info("image_gc_removed", "layer=sha256:%s bytes=%llu", v[i].hex,
                                 (unsigned long long)v[i].size);
                } else {
                        kept++;
                }
        }
        free(v);
        log_info("image_gc",
                 "store=%s max_bytes=%llu removed=%u kept_in_use=%u freed=%llu "
                 "remaining=%llu",
                 st->root, (unsigned long long)max_bytes, removed, kept, (unsigned long long)fr,
                 (unsigned long long)total);
        if (freed)
                *freed = fr;
        return 0;
}

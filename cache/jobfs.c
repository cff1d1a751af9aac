/* jobfs.c: resolve job paths inside the job's root, glob without following symlinks, and write
 * and safely extract tar+zstd archives of job files (libarchive). */
#include "cache/jobfs.h"
#include "cache/zstream.h"
#include "lib/drv.h"

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/fsuid.h>
#include <sys/stat.h>
#include <sys/syscall.h>

#define O_LARGEFILE_K      0100000
#define ARCHIVE_ZSTD_LEVEL "1"

static int openat2_in(int dirfd, const char *path, uint64_t flags, uint64_t resolve)
{
        struct open_how how = {.flags = flags | O_CLOEXEC | O_LARGEFILE_K, .resolve = resolve};
        while (*path == '/')
                path++;
        if (!*path)
                path = ".";
        return (int)syscall(SYS_openat2, dirfd, path, &how, sizeof(how));
}

struct fsid {
        int uid, gid;
};

static struct fsid as_job(const struct jobfs *fs)
{
        struct fsid old = {setfsuid(fs->uid), setfsgid(fs->gid)};
        return old;
}

static void as_self(struct fsid old)
{
        int e = errno;
        setfsuid((uid_t)old.uid);
        setfsgid((gid_t)old.gid);
        errno = e;
}

int jobfs_open_dir(const struct jobfs *fs, const char *inside, bool create, int *out,
                   struct drv_error *err)
{
        int fd = openat2_in(fs->root_fd, inside, O_DIRECTORY | O_RDONLY,
                            RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS);
        if (fd >= 0 || errno != ENOENT || !create) {
                if (fd < 0)
                        return drv_err_errno(err, "cannot open %s in the job", inside);
                *out = fd;
                return 0;
        }
        /* create what is missing, component by component, never through a symlink */
        _cleanup_free_ char *copy = strdup(inside);
        if (!copy)
                return drv_err(err, ENOMEM, "out of memory");
        int cur = openat2_in(fs->root_fd, "/", O_DIRECTORY | O_RDONLY, RESOLVE_IN_ROOT);
        if (cur < 0)
                return drv_err_errno(err, "cannot open the job's root");
        char *save = NULL;
        for (char *c = strtok_r(copy, "/", &save); c; c = strtok_r(NULL, "/", &save)) {
                if (strcmp(c, ".") == 0)
                        continue;
                if (strcmp(c, "..") == 0) {
                        close(cur);
                        return drv_err(err, EINVAL, "path %s in the job contains ..", inside);
                }
                int next = openat2_in(cur, c, O_DIRECTORY | O_RDONLY,
                                      RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS);
                if (next < 0 && errno == ENOENT) {
                        struct fsid old = as_job(fs);
                        int r = mkdirat(cur, c, 0755);
                        as_self(old);
                        if (r < 0 && errno != EEXIST) {
                                close(cur);
                                return drv_err_errno(err, "cannot create %s in the job", inside);
                        }
                        next = openat2_in(cur, c, O_DIRECTORY | O_RDONLY | O_NOFOLLOW,
                                          RESOLVE_NO_SYMLINKS | RESOLVE_BENEATH);
                }
                close(cur);
                if (next < 0)
                        return drv_err_errno(err, "cannot open %s in the job", inside);
                cur = next;
        }
        *out = cur;
        return 0;
}

int jobfs_open_file(const struct jobfs *fs, const char *inside, int *out, struct drv_error *err)
{
        int fd = openat2_in(fs->root_fd, inside, O_RDONLY | O_NOFOLLOW,
                            RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS);
        if (fd < 0)
                return drv_err_errno(err, "cannot open %s in the job", inside);
        *out = fd;
        return 0;
}

int jobfs_glob(int dirfd, const char *pattern, char ***out, struct drv_error *err)
{
        while (pattern[0] == '.' && pattern[1] == '/')
                pattern += 2;
        if (drv_glob_walk(dirfd, pattern, DRV_GLOB_BENEATH, out) < 0)
                return drv_err(err, ENOMEM, "out of memory");
        return 0;
}

/* ---- writing archives ---- */

static int cmp_str(const void *a, const void *b)
{
        return strcmp(*(char *const *)a, *(char *const *)b);
}

#define READ_BUF (1u << 20) /* files are read in 1 MiB chunks (sequential read-ahead) */

struct writer {
        struct archive *a;
        struct archive_stats *st;
        const char *prefix;
        struct drv_error *err;
        char *buf; /* READ_BUF bytes */
};

static int add_entry(struct writer *w, int dirfd, const char *rel, int depth);

static int write_data(struct writer *w, int fd, const char *name, off_t size)
{
        if (size > (off_t)READ_BUF)
                posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
        for (;;) {
                ssize_t n = read(fd, w->buf, READ_BUF);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return drv_err_errno(w->err, "reading %s", name);
                if (n == 0)
                        return 0;
                if (archive_write_data(w->a, w->buf, (size_t)n) < 0)
                        return drv_err(w->err, EIO, "archiving %s: %s", name,
                                       archive_error_string(w->a));
                w->st->bytes += (uint64_t)n;
        }
}

static int add_entry(struct writer *w, int dirfd, const char *rel, int depth)
{
        struct stat st;
        if (depth > 256)
                return drv_err(w->err, ELOOP, "%s: directories nest too deep", rel);
        if (fstatat(dirfd, rel, &st, AT_SYMLINK_NOFOLLOW) < 0)
                return drv_err_errno(w->err, "cannot stat %s", rel);
        _cleanup_free_ char *name = drv_asprintf("%s%s", w->prefix, rel);
        if (!name)
                return drv_err(w->err, ENOMEM, "out of memory");
        struct archive_entry *e = archive_entry_new();
        archive_entry_set_pathname(e, name);
        archive_entry_copy_stat(e, &st);
        archive_entry_set_uid(e, 0);
        archive_entry_set_gid(e, 0);
        int r = 0, fd = -1;
        char target[4096];
        if (S_ISLNK(st.st_mode)) {
                ssize_t n = readlinkat(dirfd, rel, target, sizeof(target) - 1);
                if (n < 0) {
                        archive_entry_free(e);
                        return drv_err_errno(w->err, "cannot read link %s", rel);
                }
                target[n] = '\0';
                archive_entry_set_symlink(e, target);
                w->st->links++;
        } else if (S_ISREG(st.st_mode)) {
                fd = openat2_in(dirfd, rel, O_RDONLY | O_NOFOLLOW,
                                RESOLVE_NO_SYMLINKS | RESOLVE_BENEATH);
                if (fd < 0) {
                        archive_entry_free(e);
                        return drv_err_errno(w->err, "cannot open %s", rel);
                }
                w->st->files++;
        } else if (S_ISDIR(st.st_mode)) {
                w->st->dirs++;
        } else {
                archive_entry_free(e);
                w->st->skipped++;
                return 0; /* sockets, fifos, devices are not archived */
        }
        if (archive_write_header(w->a, e) < 0)
                r = drv_err(w->err, EIO, "archiving %s: %s", rel, archive_error_string(w->a));
        archive_entry_free(e);
        if (r == 0 && fd >= 0)
                r = write_data(w, fd, rel, st.st_size);
        if (fd >= 0)
                close(fd);
        if (r < 0 || !S_ISDIR(st.st_mode))
                return r;
        int dfd = openat2_in(dirfd, rel, O_DIRECTORY | O_RDONLY | O_NOFOLLOW,
                             RESOLVE_NO_SYMLINKS | RESOLVE_BENEATH);
        if (dfd < 0)
                return drv_err_errno(w->err, "cannot open %s", rel);
        DIR *d = fdopendir(dfd);
        if (!d) {
                close(dfd);
                return drv_err_errno(w->err, "cannot read %s", rel);
        }
        char **names = NULL;
        struct dirent *de;
        while ((de = readdir(d)))
                if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
                        drv_strv_push(&names, de->d_name);
        closedir(d);
        size_t n = drv_strv_len(names);
        if (n)
                qsort(names, n, sizeof(char *), cmp_str);
        for (size_t i = 0; r == 0 && i < n; i++) {
                _cleanup_free_ char *child = drv_asprintf("%s/%s", rel, names[i]);
                r = child ? add_entry(w, dirfd, child, depth + 1)
                          : drv_err(w->err, ENOMEM, "out of memory");
        }
        drv_strv_free(names);
        return r;
}

int archive_write_paths(int base_fd, char *const *paths, const char *prefix, int out_fd,
                        struct archive_stats *st, struct drv_error *err)
{
        struct archive *a = archive_write_new();
        if (!a)
                return drv_err(err, ENOMEM, "out of memory");
        archive_write_set_format_pax_restricted(a);
        archive_write_add_filter_zstd(a);
        /* one worker thread per CPU (libarchive >= 3.6: zstd's nbWorkers) */
        char threads[16];
        long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
        snprintf(threads, sizeof(threads), "%ld", ncpu > 1 ? ncpu : 1);
        archive_write_set_filter_option(a, "zstd", "threads", threads);
        /* level 1, not zstd's default 3: on the bench tree (docs/BENCHMARKS.md) a third of the
         * CPU for an archive no larger; on typical caches a few % larger, still 2-3x faster */
        archive_write_set_filter_option(a, "zstd", "compression-level", ARCHIVE_ZSTD_LEVEL);
        /* large writes (few syscalls into the upload pipe), no zero padding after the end */
        archive_write_set_bytes_per_block(a, 1 << 20);
        archive_write_set_bytes_in_last_block(a, 1);
        if (archive_write_open_fd(a, out_fd) != ARCHIVE_OK) {
                int r = drv_err(err, EIO, "cannot start an archive: %s", archive_error_string(a));
                archive_write_free(a);
                return r;
        }
        struct writer w = {
            .a = a, .st = st, .prefix = prefix ? prefix : "", .err = err, .buf = malloc(READ_BUF)};
        int r = w.buf ? 0 : drv_err(err, ENOMEM, "out of memory");
        for (size_t i = 0; r == 0 && paths && paths[i]; i++) {
                if (strstr(paths[i], "..") &&
                    (strcmp(paths[i], "..") == 0 || drv_startswith(paths[i], "../") ||
                     strstr(paths[i], "/../")))
                        r = drv_err(err, EINVAL, "path %s leaves its root", paths[i]);
                else
                        r = add_entry(&w, base_fd, paths[i], 0);
        }
        if (archive_write_close(a) != ARCHIVE_OK && r == 0)
                r = drv_err(err, EIO, "cannot finish the archive: %s", archive_error_string(a));
        archive_write_free(a);
        free(w.buf);
        return r;
}

/* ---- safe extraction ---- */

/* Normalise an entry name: strip "./", refuse absolute paths and "..". */
static int clean_name(const char *in, char *out, size_t n)
{
        if (in[0] == '/')
                return -EPERM;
        while (in[0] == '.' && in[1] == '/')
                in += 2;
        size_t l = strlen(in);
        while (l > 0 && in[l - 1] == '/')
                l--;
        if (l == 0 || l >= n)
                return l == 0 ? -ENOENT : -ENAMETOOLONG;
        memcpy(out, in, l);
        out[l] = '\0';
        for (const char *p = out; *p;) {
                const char *e = strchrnul(p, '/');
                if ((e - p == 2 && p[0] == '.' && p[1] == '.'))
                        return -EPERM;
                p = *e ? e + 1 : e;
        }
        return 0;
}

/* Open (creating) the parent directory of name below dest, never through a symlink. */
static int open_parent(const struct jobfs *fs, int dest, const char *name, const char **base)
{
        _cleanup_free_ char *copy = strdup(name);
        if (!copy)
                return -ENOMEM;
        char *slash = strrchr(copy, '/');
        *base = strrchr(name, '/') ? strrchr(name, '/') + 1 : name;
        int cur = fcntl(dest, F_DUPFD_CLOEXEC, 3);
        if (!slash || cur < 0)
                return cur;
        *slash = '\0';
        char *save = NULL;
        for (char *c = strtok_r(copy, "/", &save); c; c = strtok_r(NULL, "/", &save)) {
                if (strcmp(c, ".") == 0)
                        continue;
                int next = openat2_in(cur, c, O_DIRECTORY | O_RDONLY | O_NOFOLLOW,
                                      RESOLVE_NO_SYMLINKS | RESOLVE_BENEATH);
                if (next < 0 && errno == ENOENT) {
                        struct fsid old = as_job(fs);
                        if (mkdirat(cur, c, 0755) < 0 && errno != EEXIST) {
                                as_self(old);
                                close(cur);
                                return -errno;
                        }
                        as_self(old);
                        next = openat2_in(cur, c, O_DIRECTORY | O_RDONLY | O_NOFOLLOW,
                                          RESOLVE_NO_SYMLINKS | RESOLVE_BENEATH);
                }
                int e = errno;
                close(cur);
                if (next < 0)
                        return e == ELOOP || e == ENOTDIR ? -EXDEV : -e;
                cur = next;
        }
        return cur;
}

/* The parent directory of the last regular file extracted: the next file in the same folder
 * reuses its fd (forgotten at any other kind of entry, which could change the tree). */
struct parent_cache {
        char path[4096];
        int fd;
};

static void parent_forget(struct parent_cache *pc)
{
        if (pc->fd >= 0)
                close(pc->fd);
        pc->fd = -1;
        pc->path[0] = '\0';
}

/* open_parent, through the cache for regular files; *owned: the caller closes the fd. */
static int parent_of(const struct jobfs *fs, int dest, const char *name, const char **base,
                     struct parent_cache *pc, bool regular, bool *owned)
{
        const char *slash = strrchr(name, '/');
        size_t plen = slash ? (size_t)(slash - name) : 0;
        *owned = true;
        if (!regular) {
                parent_forget(pc);
                return open_parent(fs, dest, name, base);
        }
        if (pc->fd >= 0 && strlen(pc->path) == plen && strncmp(pc->path, name, plen) == 0) {
                *base = slash ? slash + 1 : name;
                *owned = false;
                return pc->fd;
        }
        parent_forget(pc);
        int fd = open_parent(fs, dest, name, base);
        if (fd >= 0 && plen < sizeof(pc->path)) {
                memcpy(pc->path, name, plen);
                pc->path[plen] = '\0';
                pc->fd = fd;
                *owned = false;
        }
        return fd;
}

static int extract_one(const struct jobfs *fs, int dest, struct archive *a, struct archive_entry *e,
                       const char *name, struct archive_stats *st, const struct archive_limits *lim,
                       struct parent_cache *pc, struct drv_error *err)
{
        const char *base;
        const char *hl = archive_entry_hardlink(e);
        bool regular = !hl && archive_entry_filetype(e) == AE_IFREG, owned;
        int pfd = parent_of(fs, dest, name, &base, pc, regular, &owned);
        if (pfd == -EXDEV)
                return drv_err(err, EXDEV, "archive entry %s: a parent is a symlink", name);
        if (pfd < 0)
                return drv_err(err, -pfd, "archive entry %s: %s", name, strerror(-pfd));
        mode_t mode = archive_entry_mode(e);
        mode_t perm = mode & 07777 & ~(mode_t)06000; /* never setuid/setgid */
        int r = 0;
        struct fsid old = as_job(fs);
        struct stat cur;
        /* (a new regular file is created first; only if that name is taken is it looked at) */
        bool exists = !regular && fstatat(pfd, base, &cur, AT_SYMLINK_NOFOLLOW) == 0;
        if (hl) {
                /* a hard link must name a regular file extracted earlier in the same tree */
                char clean[4096];
                const char *tb;
                if (exists)
                        unlinkat(pfd, base, S_ISDIR(cur.st_mode) ? AT_REMOVEDIR : 0);
                if (clean_name(hl, clean, sizeof(clean)) < 0) {
                        r = drv_err(err, EPERM,
                                    "archive entry %s refused: hard link to %s leaves "
                                    "the tree",
                                    name, hl);
                } else {
                        int tfd = open_parent(fs, dest, clean, &tb);
                        struct stat ts;
                        if (tfd < 0 || fstatat(tfd, tb, &ts, AT_SYMLINK_NOFOLLOW) < 0 ||
                            !S_ISREG(ts.st_mode) || linkat(tfd, tb, pfd, base, 0) < 0)
                                r = drv_err(err, EPERM,
                                            "archive entry %s refused: bad hard link "
                                            "to %s",
                                            name, hl);
                        if (tfd >= 0)
                                close(tfd);
                }
                st->links++;
                as_self(old);
                if (owned)
                        close(pfd);
                return r;
        }
        switch (archive_entry_filetype(e)) {
        case AE_IFDIR:
                if (exists && !S_ISDIR(cur.st_mode))
                        unlinkat(pfd, base, 0);
                if (mkdirat(pfd, base, perm | 0700) < 0 && errno != EEXIST)
                        r = drv_err_errno(err, "archive entry %s", name);
                st->dirs++;
                break;
        case AE_IFLNK: {
                /* NULL: no link name in the header, or one libarchive cannot convert */
                const char *target = archive_entry_symlink(e);
                if (!target || !*target) {
                        r = drv_err(err, EPERM,
                                    "archive entry %s refused: symlink without a target", name);
                        break;
                }
                if (exists)
                        unlinkat(pfd, base, S_ISDIR(cur.st_mode) ? AT_REMOVEDIR : 0);
                if (symlinkat(target, pfd, base) < 0)
                        r = drv_err_errno(err, "archive entry %s", name);
                st->links++;
                break;
        }
        case AE_IFREG: {
                int fd = openat2_in(pfd, base, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW,
                                    RESOLVE_NO_SYMLINKS | RESOLVE_BENEATH);
                if (fd < 0 && errno == EEXIST &&
                    fstatat(pfd, base, &cur, AT_SYMLINK_NOFOLLOW) == 0) { /* replaced */
                        unlinkat(pfd, base, S_ISDIR(cur.st_mode) ? AT_REMOVEDIR : 0);
                        fd = openat2_in(pfd, base, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW,
                                        RESOLVE_NO_SYMLINKS | RESOLVE_BENEATH);
                }
                if (fd < 0) {
                        r = drv_err_errno(err, "archive entry %s", name);
                        break;
                }
                const void *buf;
                size_t size;
                la_int64_t off;
                int ar;
                while ((ar = archive_read_data_block(a, &buf, &size, &off)) == ARCHIVE_OK) {
                        st->bytes += size;
                        if (st->bytes > lim->max_bytes) {
                                r = drv_err(err, EFBIG, "archive is larger than %llu bytes",
                                            (unsigned long long)lim->max_bytes);
                                break;
                        }
                        if (pwrite(fd, buf, size, off) != (ssize_t)size) {
                                r = drv_err_errno(err, "writing %s", name);
                                break;
                        }
                }
                if (r == 0 && ar != ARCHIVE_EOF)
                        r = drv_err(err, EIO, "archive entry %s: %s", name,
                                    archive_error_string(a));
                if (r == 0 && fchmod(fd, perm) < 0)
                        r = drv_err_errno(err, "chmod %s", name);
                if (r == 0) {
                        struct timespec ts[2] = {
                            {archive_entry_mtime(e), archive_entry_mtime_nsec(e)},
                            {archive_entry_mtime(e), archive_entry_mtime_nsec(e)}};
                        futimens(fd, ts);
                }
                close(fd);
                st->files++;
                break;
        }
        default:
                st->skipped++; /* devices, fifos, sockets: never created in a job */
                break;
        }
        if (r == 0 && archive_entry_filetype(e) != AE_IFREG) {
                struct timespec ts[2] = {{archive_entry_mtime(e), archive_entry_mtime_nsec(e)},
                                         {archive_entry_mtime(e), archive_entry_mtime_nsec(e)}};
                utimensat(pfd, base, ts, AT_SYMLINK_NOFOLLOW);
                if (archive_entry_filetype(e) == AE_IFDIR) {
                        /* through an fd of the directory itself: a name could have been swapped
                         * for a symlink by the running job */
                        int dfd = openat2_in(pfd, base, O_DIRECTORY | O_RDONLY | O_NOFOLLOW,
                                             RESOLVE_NO_SYMLINKS | RESOLVE_BENEATH);
                        if (dfd < 0 || fchmod(dfd, perm | 0700) < 0)
                                log_debug("archive_chmod_skipped", "entry=%s errno=%d", name,
                                          errno);
                        if (dfd >= 0)
                                close(dfd);
                }
        }
        as_self(old);
        if (owned)
                close(pfd);
        return r;
}

static la_ssize_t zs_read_cb(struct archive *a, void *client, const void **buf)
{
        ssize_t n = zstream_read(client, buf);
        if (n < 0) {
                archive_set_error(a, (int)-n, "%s", zstream_error(client));
                return -1;
        }
        return n;
}

int archive_extract(const struct jobfs *fs, int dest_fd, int in_fd,
                    const struct archive_limits *limits, struct archive_stats *st,
                    struct drv_error *err)
{
        struct archive_limits lim = {limits ? limits->max_bytes : 0,
                                     limits ? limits->max_entries : 0};
        if (!lim.max_bytes)
                lim.max_bytes = 32ULL << 30;
        if (!lim.max_entries)
                lim.max_entries = 2000000;
        struct archive *a = archive_read_new();
        if (!a)
                return drv_err(err, ENOMEM, "out of memory");
        archive_read_support_filter_all(a); /* (zstd comes decompressed: the others) */
        archive_read_support_format_tar(a);
        archive_read_support_format_gnutar(a);
        /* a thread of its own reads in_fd and decompresses zstd, as `zstd -d | tar -x` would */
        struct zstream *z = NULL;
        int r = zstream_reader_start(in_fd, &z, err);
        if (r < 0) {
                archive_read_free(a);
                return r;
        }
        if (archive_read_open(a, z, NULL, zs_read_cb, NULL) != ARCHIVE_OK)
                r = drv_err(err, EIO, "not an archive: %s", archive_error_string(a));
        uint64_t entries = 0;
        struct archive_entry *e;
        struct parent_cache pc = {.fd = -1};
        while (r == 0) {
                int ar = archive_read_next_header(a, &e);
                if (ar == ARCHIVE_EOF)
                        break;
                if (ar != ARCHIVE_OK && ar != ARCHIVE_WARN) {
                        r = drv_err(err, EIO, "corrupt archive: %s", archive_error_string(a));
                        break;
                }
                if (++entries > lim.max_entries) {
                        r = drv_err(err, EFBIG, "archive has more than %llu entries",
                                    (unsigned long long)lim.max_entries);
                        break;
                }
                char name[4096];
                const char *raw = archive_entry_pathname(e);
                int c = raw ? clean_name(raw, name, sizeof(name)) : -EINVAL;
                if (c == -ENOENT)
                        continue; /* "./" itself */
                if (c < 0) {
                        r = drv_err(err, EPERM, "archive entry '%s' refused: %s", raw ? raw : "",
                                    c == -EPERM ? "absolute or .. path" : "bad name");
                        break;
                }
                r = extract_one(fs, dest_fd, a, e, name, st, &lim, &pc, err);
        }
        parent_forget(&pc);
        archive_read_free(a);
        zstream_reader_end(z);
        return r;
}

/* ---- shared with the image layer unpacker (executor/images/unpack.c) ---- */

int jobfs_clean_name(const char *in, char *out, size_t n)
{
        return clean_name(in, out, n);
}

int jobfs_open_parent(const struct jobfs *fs, int dest, const char *name, const char **base)
{
        return open_parent(fs, dest, name, base);
}

int jobfs_openat_beneath(int dirfd, const char *path, int flags)
{
        return openat2_in(dirfd, path, (uint64_t)flags | O_NOFOLLOW,
                          RESOLVE_NO_SYMLINKS | RESOLVE_BENEATH);
}

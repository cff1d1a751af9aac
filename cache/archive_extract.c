/* archive_extract.c: safe extraction of untrusted tar archives into a job's tree (libarchive,
 * zstd on a thread of its own), with an undo log so that a refused archive leaves nothing. */
#include "cache/jobfs_int.h"
#include "cache/zstream.h"

#include <archive.h>
#include <archive_entry.h>
#include <sys/stat.h>

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

/* ---- the undo log of an extraction ---- */

enum undo_kind { UNDO_CREATED, UNDO_REPLACED, UNDO_RMDIR };

struct undo {
        char *name;   /* clean name below dest */
        char *backup; /* UNDO_REPLACED: the old entry's name, aside in the same directory */
        enum undo_kind kind;
};

struct archive_journal {
        struct undo *u;
        size_t n, cap;
        unsigned seq;
        bool broken; /* out of memory: what follows cannot be undone */
        int log_fd;  /* each entry is also appended here (-1: none) */
};

struct archive_journal *archive_journal_new(int log_fd)
{
        struct archive_journal *j = calloc(1, sizeof(*j));
        if (j)
                j->log_fd = log_fd;
        return j;
}

/* One record of the log: kind, NUL, name, NUL, backup, NUL — written at once, before the change
 * it undoes is made, so that the log of a killed extractor still undoes all it did. */
static void journal_log(struct archive_journal *j, const char *name, const char *backup,
                        enum undo_kind kind)
{
        char rec[2 * 4096 + 8];
        int n = snprintf(rec, sizeof(rec), "%d%c%s%c%s%c", (int)kind, 0, name, 0,
                         backup ? backup : "", 0);
        if (n > 0 && (size_t)n < sizeof(rec) && drv_write_all(j->log_fd, rec, (size_t)n) < 0)
                j->broken = true;
}

static void journal_add(struct archive_journal *j, const char *name, const char *backup,
                        enum undo_kind kind)
{
        if (!j || j->broken)
                return;
        if (j->log_fd >= 0)
                journal_log(j, name, backup, kind);
        if (j->n == j->cap) {
                size_t nc = j->cap ? j->cap * 2 : 64;
                struct undo *nu = realloc(j->u, nc * sizeof(*nu));
                if (!nu) {
                        j->broken = true;
                        return;
                }
                j->u = nu;
                j->cap = nc;
        }
        struct undo *u = &j->u[j->n];
        u->name = strdup(name);
        u->backup = backup ? strdup(backup) : NULL;
        u->kind = kind;
        if (!u->name || (backup && !u->backup)) {
                free(u->name);
                free(u->backup);
                j->broken = true;
                return;
        }
        j->n++;
}

/* Move the existing entry base (of the clean name) out of the way before it is replaced: aside
 * under a hidden name when a journal is kept, else removed. */
static int set_aside(struct archive_journal *j, int pfd, const char *base, const char *name,
                     const struct stat *cur)
{
        if (S_ISDIR(cur->st_mode)) { /* only an empty one can go */
                if (unlinkat(pfd, base, AT_REMOVEDIR) < 0)
                        return -errno;
                journal_add(j, name, NULL, UNDO_RMDIR);
                return 0;
        }
        if (!j)
                return unlinkat(pfd, base, 0) < 0 ? -errno : 0;
        char bak[64];
        for (;;) {
                snprintf(bak, sizeof(bak), ".drover-undo.%d.%u", (int)getpid(), j->seq++);
                if (renameat2(pfd, base, pfd, bak, RENAME_NOREPLACE) == 0)
                        break;
                if (errno != EEXIST)
                        return -errno;
        }
        journal_add(j, name, bak, UNDO_REPLACED);
        return 0;
}

/* The directory that holds the clean name below dest (no symlink followed), or -errno. */
static int undo_parent(int dest, const char *name, const char **base)
{
        const char *slash = strrchr(name, '/');
        *base = slash ? slash + 1 : name;
        if (!slash)
                return fcntl(dest, F_DUPFD_CLOEXEC, 3);
        _cleanup_free_ char *dir = strndup(name, (size_t)(slash - name));
        if (!dir)
                return -ENOMEM;
        int fd = openat2_in(dest, dir, O_DIRECTORY | O_RDONLY | O_NOFOLLOW,
                            RESOLVE_NO_SYMLINKS | RESOLVE_BENEATH);
        return fd < 0 ? -errno : fd;
}

static void undo_one(int dest, const struct undo *u, bool commit)
{
        const char *base;
        int pfd = undo_parent(dest, u->name, &base);
        if (pfd < 0) {
                log_debug("archive_undo_skipped", "entry=%s errno=%d", u->name, -pfd);
                return;
        }
        struct stat st;
        if (commit) {
                if (u->kind == UNDO_REPLACED)
                        unlinkat(pfd, u->backup, 0);
        } else if (u->kind == UNDO_RMDIR) {
                mkdirat(pfd, base, 0755);
        } else {
                if (fstatat(pfd, base, &st, AT_SYMLINK_NOFOLLOW) == 0)
                        unlinkat(pfd, base, S_ISDIR(st.st_mode) ? AT_REMOVEDIR : 0);
                if (u->kind == UNDO_REPLACED)
                        renameat(pfd, u->backup, pfd, base);
        }
        close(pfd);
}

/* The next NUL-terminated string of log at *off, or NULL when the log ends first. */
static const char *next_str(const char *log, size_t len, size_t *off)
{
        const char *p = log + *off;
        const char *nul = *off < len ? memchr(p, 0, len - *off) : NULL;
        if (!nul)
                return NULL;
        *off = (size_t)(nul + 1 - log);
        return p;
}

int archive_journal_replay(int dest_fd, const char *log, size_t len)
{
        struct archive_journal *j = archive_journal_new(-1);
        if (!j)
                return -ENOMEM;
        for (size_t off = 0;;) {
                const char *kind = next_str(log, len, &off);
                const char *name = kind ? next_str(log, len, &off) : NULL;
                const char *bak = name ? next_str(log, len, &off) : NULL;
                if (!bak)
                        break; /* the end, or a record cut short by the kill */
                int k = atoi(kind);
                char clean[4096];
                /* (the job could have written the log: only names below dest are touched) */
                if (k < UNDO_CREATED || k > UNDO_RMDIR ||
                    clean_name(name, clean, sizeof(clean)) < 0 ||
                    (k == UNDO_REPLACED && (!bak[0] || strchr(bak, '/'))))
                        continue;
                journal_add(j, clean, k == UNDO_REPLACED ? bak : NULL, (enum undo_kind)k);
        }
        bool broken = j->broken;
        archive_journal_end(j, dest_fd, false);
        return broken ? -ENOMEM : 0;
}

void archive_journal_end(struct archive_journal *j, int dest_fd, bool commit)
{
        if (!j)
                return;
        for (size_t i = j->n; i-- > 0;) {
                undo_one(dest_fd, &j->u[i], commit);
                free(j->u[i].name);
                free(j->u[i].backup);
        }
        free(j->u);
        free(j);
}

/* Open (creating) the parent directory of name below dest, never through a symlink. */
static int open_parent(const struct jobfs *fs, int dest, const char *name, const char **base,
                       struct archive_journal *j)
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
                        int mk = mkdirat(cur, c, 0755);
                        if (mk < 0 && errno != EEXIST) {
                                as_self(old);
                                close(cur);
                                return -errno;
                        }
                        as_self(old);
                        if (mk == 0 && j) { /* the prefix of name that ends at c */
                                _cleanup_free_ char *made =
                                    strndup(name, (size_t)(c - copy) + strlen(c));
                                if (made)
                                        journal_add(j, made, NULL, UNDO_CREATED);
                                else
                                        j->broken = true;
                        }
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
                     struct parent_cache *pc, bool regular, bool *owned, struct archive_journal *j)
{
        const char *slash = strrchr(name, '/');
        size_t plen = slash ? (size_t)(slash - name) : 0;
        *owned = true;
        if (!regular) {
                parent_forget(pc);
                return open_parent(fs, dest, name, base, j);
        }
        if (pc->fd >= 0 && strlen(pc->path) == plen && strncmp(pc->path, name, plen) == 0) {
                *base = slash ? slash + 1 : name;
                *owned = false;
                return pc->fd;
        }
        parent_forget(pc);
        int fd = open_parent(fs, dest, name, base, j);
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
                       struct parent_cache *pc, struct archive_journal *j, struct drv_error *err)
{
        const char *base;
        const char *hl = archive_entry_hardlink(e);
        bool regular = !hl && archive_entry_filetype(e) == AE_IFREG, owned;
        int pfd = parent_of(fs, dest, name, &base, pc, regular, &owned, j);
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
                        set_aside(j, pfd, base, name, &cur);
                if (clean_name(hl, clean, sizeof(clean)) < 0) {
                        r = drv_err(err, EPERM,
                                    "archive entry %s refused: hard link to %s leaves "
                                    "the tree",
                                    name, hl);
                } else {
                        int tfd = open_parent(fs, dest, clean, &tb, j);
                        struct stat ts;
                        if (tfd < 0 || fstatat(tfd, tb, &ts, AT_SYMLINK_NOFOLLOW) < 0 ||
                            !S_ISREG(ts.st_mode) || linkat(tfd, tb, pfd, base, 0) < 0)
                                r = drv_err(err, EPERM,
                                            "archive entry %s refused: bad hard link "
                                            "to %s",
                                            name, hl);
                        else if (!exists || S_ISDIR(cur.st_mode))
                                journal_add(j, name, NULL, UNDO_CREATED);
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
                        set_aside(j, pfd, base, name, &cur);
                if (mkdirat(pfd, base, perm | 0700) == 0)
                        journal_add(j, name, NULL, UNDO_CREATED);
                else if (errno != EEXIST)
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
                bool aside = exists && set_aside(j, pfd, base, name, &cur) == 0 &&
                             !S_ISDIR(cur.st_mode) && j;
                if (symlinkat(target, pfd, base) < 0)
                        r = drv_err_errno(err, "archive entry %s", name);
                else if (!aside) /* (set aside: its undo removes the new one first) */
                        journal_add(j, name, NULL, UNDO_CREATED);
                st->links++;
                break;
        }
        case AE_IFREG: {
                int fd = openat2_in(pfd, base, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW,
                                    RESOLVE_NO_SYMLINKS | RESOLVE_BENEATH);
                bool aside = false;
                if (fd < 0 && errno == EEXIST &&
                    fstatat(pfd, base, &cur, AT_SYMLINK_NOFOLLOW) == 0) { /* replaced */
                        aside =
                            set_aside(j, pfd, base, name, &cur) == 0 && !S_ISDIR(cur.st_mode) && j;
                        fd = openat2_in(pfd, base, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW,
                                        RESOLVE_NO_SYMLINKS | RESOLVE_BENEATH);
                }
                if (fd >= 0 && !aside) /* before its bytes: a failure midway removes it */
                        journal_add(j, name, NULL, UNDO_CREATED);
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

int archive_extract_from(const struct jobfs *fs, int dest_fd,
                         ssize_t (*rd)(void *ud, void *buf, size_t n), void *ud,
                         const struct archive_limits *limits, struct archive_stats *st,
                         struct archive_journal **journal, struct drv_error *err)
{
        struct archive_limits lim = {limits ? limits->max_bytes : 0,
                                     limits ? limits->max_entries : 0};
        if (!lim.max_bytes)
                lim.max_bytes = 32ULL << 30;
        if (!lim.max_entries)
                lim.max_entries = 2000000;
        struct archive_journal *j = *journal ? *journal : archive_journal_new(-1);
        *journal = j;
        struct archive *a = j ? archive_read_new() : NULL;
        if (!a)
                return drv_err(err, ENOMEM, "out of memory");
        archive_read_support_filter_all(a); /* (zstd comes decompressed: the others) */
        archive_read_support_format_tar(a);
        archive_read_support_format_gnutar(a);
        /* a thread of its own reads the input and decompresses zstd, as `zstd -d | tar -x` */
        struct zstream *z = NULL;
        int r = zstream_reader_start_fn(rd, ud, &z, err);
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
                r = extract_one(fs, dest_fd, a, e, name, st, &lim, &pc, j, err);
        }
        if (r == 0 && j->broken)
                r = drv_err(err, ENOMEM, "out of memory (the undo log of the extraction)");
        parent_forget(&pc);
        archive_read_free(a);
        zstream_reader_end(z);
        return r;
}

static ssize_t fd_read(void *ud, void *buf, size_t n)
{
        ssize_t k = DRV_RETRY(read(*(int *)ud, buf, n));
        return k < 0 ? -errno : k;
}

int archive_extract(const struct jobfs *fs, int dest_fd, int in_fd,
                    const struct archive_limits *limits, struct archive_stats *st,
                    struct drv_error *err)
{
        struct archive_journal *j = NULL;
        int r = archive_extract_from(fs, dest_fd, fd_read, &in_fd, limits, st, &j, err);
        archive_journal_end(j, dest_fd, r == 0);
        return r;
}

/* ---- shared with the image layer unpacker (executor/images/unpack.c) ---- */

int jobfs_clean_name(const char *in, char *out, size_t n)
{
        return clean_name(in, out, n);
}

int jobfs_open_parent(const struct jobfs *fs, int dest, const char *name, const char **base)
{
        return open_parent(fs, dest, name, base, NULL);
}

int jobfs_openat_beneath(int dirfd, const char *path, int flags)
{
        return openat2_in(dirfd, path, (uint64_t)flags | O_NOFOLLOW,
                          RESOLVE_NO_SYMLINKS | RESOLVE_BENEATH);
}

/* jobhelper_main.c: the in-job storage helper, `circleci __storage OP ...` — runs as the job,
 * inside the job, and is the only code that opens a job's files for drover's storage steps.
 * Frames on stdin/stdout as cache/jobhelper.h describes. No symlink is followed anywhere in a
 * path; only regular files are read (never FIFOs, devices or kernel pseudo-files). */
#include "cache/jobfs.h"
#include "cache/jobhelper.h"

#include <dirent.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <signal.h>
#include <sys/stat.h>

#define HELPER_BUF (1u << 20)

/* Small frames are gathered (a file's 'F', 'D', 'E' in one write); this process's only output. */
static struct {
        char buf[65536];
        size_t n;
} out;

static int flush_out(void)
{
        int r = out.n ? drv_write_all(STDOUT_FILENO, out.buf, out.n) : 0;
        out.n = 0;
        return r;
}

static int put(char type, const void *buf, size_t n)
{
        unsigned char hdr[4] = {(unsigned char)type, (unsigned char)(n >> 16),
                                (unsigned char)(n >> 8), (unsigned char)n};
        if (out.n + 4 + n > sizeof(out.buf) && flush_out() < 0)
                return -EPIPE;
        if (4 + n <= sizeof(out.buf)) {
                memcpy(out.buf + out.n, hdr, 4);
                if (n)
                        memcpy(out.buf + out.n + 4, buf, n);
                out.n += 4 + n;
                return 0;
        }
        int r = drv_write_all(STDOUT_FILENO, hdr, 4);
        return r < 0 ? r : drv_write_all(STDOUT_FILENO, buf, n);
}

static int put_str(char type, const char *s)
{
        return put(type, s, strlen(s));
}

static int fail(const struct drv_error *e)
{
        put_str('X', e->message[0] ? e->message : strerror(e->code ? e->code : EIO));
        return 1;
}

static int put_data(void *ud, const void *buf, size_t n)
{
        (void)ud;
        for (size_t off = 0; off < n;) {
                size_t k = n - off < JH_MAX_FRAME ? n - off : JH_MAX_FRAME;
                int r = put('D', (const char *)buf + off, k);
                if (r < 0)
                        return r;
                off += k;
        }
        return 0;
}

static void warn_skipped(void *ud, const char *rel, const char *why)
{
        (void)ud;
        char line[1024];
        snprintf(line, sizeof(line), "%s skipped: %s", rel, why);
        put_str('W', line);
}

static int put_stats(const struct archive_stats *st)
{
        char s[160];
        snprintf(s, sizeof(s), "%llu %llu %llu %llu %llu", (unsigned long long)st->files,
                 (unsigned long long)st->dirs, (unsigned long long)st->links,
                 (unsigned long long)st->bytes, (unsigned long long)st->skipped);
        return put_str('S', s);
}

static int open_root(struct jobfs *fs, int root)
{
        *fs = (struct jobfs){.root_fd = root, .uid = getuid(), .gid = getgid()};
        return fs->root_fd;
}

static uint64_t arg_u64(const char *s)
{
        return strtoull(s, NULL, 10);
}

/* pack BASE MAX_FILE MAX_STEP PATTERN...: a tar+zstd of the matches below BASE. */
static int op_pack(int root, int argc, char **argv)
{
        struct jobfs fs;
        struct drv_error e = {0};
        _cleanup_close_ int base = -1;
        if (argc < 3 || open_root(&fs, root) < 0)
                return drv_err(&e, EINVAL, "pack: bad arguments"), fail(&e);
        if (jobfs_open_dir_strict(&fs, argv[0], false, &base, &e) < 0)
                return fail(&e);
        _cleanup_strv_ char **names = NULL;
        for (int i = 3; i < argc; i++) {
                size_t before = drv_strv_len(names);
                if (jobfs_glob(base, argv[i], &names, &e) < 0)
                        return fail(&e);
                if (drv_strv_len(names) == before) {
                        _cleanup_free_ char *full = drv_path_join(argv[0], argv[i]);
                        char line[1200];
                        snprintf(line, sizeof(line), "could not find %s; skipping",
                                 full ? full : argv[i]);
                        put_str('W', line);
                }
        }
        struct archive_stats st = {0}; /* (no names: an empty archive) */
        struct archive_sink sink = {.write = put_data,
                                    .max_file = arg_u64(argv[1]),
                                    .max_total = arg_u64(argv[2]),
                                    .skipped = warn_skipped};
        if (archive_write_paths_to(base, names, "", &sink, &st, &e) < 0)
                return fail(&e);
        return put_stats(&st) < 0;
}

struct walk {
        uint64_t max_file, max_step, bytes;
        struct archive_stats st;
        char *buf;
};

/* One regular file: 'F' "SIZE NAME", its bytes (never more than SIZE), 'E'. */
static int send_file(struct walk *w, int fd, const struct stat *st, const char *rel,
                     struct drv_error *e)
{
        uint64_t size = (uint64_t)st->st_size;
        if (size > w->max_file)
                return drv_err(e, EFBIG,
                               "%s: %llu bytes is more than the cap of %llu per file "
                               "(storage.max_file_mb)",
                               rel[0] ? rel : ".", (unsigned long long)size,
                               (unsigned long long)w->max_file);
        if (w->bytes + size > w->max_step)
                return drv_err(e, EFBIG,
                               "%s: the step's files exceed the cap of %llu bytes "
                               "(storage.max_step_mb)",
                               rel[0] ? rel : ".", (unsigned long long)w->max_step);
        char head[4200];
        snprintf(head, sizeof(head), "%llu %s", (unsigned long long)size, rel);
        if (put_str('F', head) < 0)
                return drv_err(e, EPIPE, "the supervisor is gone");
        for (uint64_t left = size; left;) {
                ssize_t n = DRV_RETRY(read(fd, w->buf, left < HELPER_BUF ? left : HELPER_BUF));
                if (n < 0)
                        return drv_err_errno(e, "reading %s", rel);
                if (n == 0)
                        break; /* it shrank meanwhile */
                if (put('D', w->buf, (size_t)n) < 0)
                        return drv_err(e, EPIPE, "the supervisor is gone");
                left -= (uint64_t)n;
                w->bytes += (uint64_t)n;
        }
        w->st.files++;
        return put('E', NULL, 0) < 0 ? drv_err(e, EPIPE, "the supervisor is gone") : 0;
}

/* Every regular file below the directory dfd (rel names it); symlinks are not followed. */
static int walk_dir(struct walk *w, int dfd, const char *rel, int depth, struct drv_error *e)
{
        if (depth > 128)
                return drv_err(e, ELOOP, "%s: directories nest too deep", rel);
        int dup = fcntl(dfd, F_DUPFD_CLOEXEC, 3);
        DIR *d = dup >= 0 ? fdopendir(dup) : NULL;
        if (!d) {
                if (dup >= 0)
                        close(dup);
                return drv_err_errno(e, "cannot read %s", rel[0] ? rel : ".");
        }
        _cleanup_strv_ char **names = NULL;
        struct dirent *de;
        while ((de = readdir(d)))
                if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..") &&
                    drv_strv_push(&names, de->d_name) < 0)
                        break;
        closedir(d);
        int r = 0;
        for (size_t i = 0; r == 0 && names && names[i]; i++) {
                _cleanup_free_ char *child =
                    rel[0] ? drv_asprintf("%s/%s", rel, names[i]) : strdup(names[i]);
                struct stat st;
                if (!child)
                        return drv_err(e, ENOMEM, "out of memory");
                if (fstatat(dfd, names[i], &st, AT_SYMLINK_NOFOLLOW) < 0)
                        continue; /* gone meanwhile */
                if (S_ISDIR(st.st_mode)) {
                        _cleanup_close_ int sub =
                            jobfs_openat_beneath(dfd, names[i], O_RDONLY | O_DIRECTORY);
                        r = sub >= 0 ? walk_dir(w, sub, child, depth + 1, e)
                                     : drv_err_errno(e, "cannot open %s", child);
                        continue;
                }
                if (S_ISLNK(st.st_mode)) {
                        w->st.skipped++;
                        continue; /* never followed, never stored */
                }
                _cleanup_close_ int fd = -1;
                struct drv_error e2 = {0};
                r = jobfs_open_regular(dfd, names[i], &fd, &st, &e2);
                if (r == -EINVAL || r == -EPERM) { /* a FIFO, device, socket, pseudo-file */
                        warn_skipped(NULL, child, e2.message);
                        w->st.skipped++;
                        r = 0;
                        continue;
                }
                r = r < 0 ? (*e = e2, r) : send_file(w, fd, &st, child, e);
        }
        return r;
}

/* files PATH MAX_FILE MAX_STEP: PATH's bytes if it is a regular file, else every regular file
 * below the directory PATH (names relative to it). */
static int op_files(int root, int argc, char **argv)
{
        struct jobfs fs;
        struct drv_error e = {0};
        if (argc != 3 || open_root(&fs, root) < 0)
                return drv_err(&e, EINVAL, "files: bad arguments"), fail(&e);
        struct walk w = {.max_file = arg_u64(argv[1]), .max_step = arg_u64(argv[2])};
        _cleanup_free_ char *buf = w.buf = malloc(HELPER_BUF);
        const char *rel = argv[0];
        while (*rel == '/')
                rel++;
        if (!buf)
                return drv_err(&e, ENOMEM, "out of memory"), fail(&e);
        _cleanup_close_ int dfd =
            jobfs_openat_beneath(fs.root_fd, rel[0] ? rel : ".", O_RDONLY | O_DIRECTORY);
        int r;
        if (dfd >= 0) {
                r = walk_dir(&w, dfd, "", 0, &e);
        } else if (errno == ENOTDIR) {
                _cleanup_close_ int fd = -1;
                struct stat st;
                r = jobfs_open_regular(fs.root_fd, rel, &fd, &st, &e);
                if (r == 0)
                        r = send_file(&w, fd, &st, "", &e);
        } else if (errno == ELOOP) {
                r = drv_err(&e, ELOOP, "%s: a symlink in the path is not followed", argv[0]);
        } else if (errno == ENOENT) {
                r = drv_err(&e, ENOENT, "%s does not exist in the job", argv[0]);
        } else {
                r = drv_err_errno(&e, "cannot open %s", argv[0]);
        }
        if (r < 0)
                return fail(&e);
        w.st.bytes = w.bytes;
        return put_stats(&w.st) < 0;
}

/* sum FILE MAX_FILE: base64 of the SHA-256 of a regular file. */
static int op_sum(int root, int argc, char **argv)
{
        struct jobfs fs;
        struct drv_error e = {0};
        if (argc != 2 || open_root(&fs, root) < 0)
                return drv_err(&e, EINVAL, "sum: bad arguments"), fail(&e);
        const char *rel = argv[0];
        while (*rel == '/')
                rel++;
        _cleanup_close_ int fd = -1;
        struct stat st;
        if (jobfs_open_regular(fs.root_fd, rel, &fd, &st, &e) < 0)
                return fail(&e);
        if ((uint64_t)st.st_size > arg_u64(argv[1]))
                return drv_err(&e, EFBIG, "%s is larger than the cap of %s bytes per file", argv[0],
                               argv[1]),
                       fail(&e);
        _cleanup_free_ char *buf = malloc(HELPER_BUF);
        EVP_MD_CTX *md = EVP_MD_CTX_new();
        unsigned char dig[EVP_MAX_MD_SIZE], b64[128];
        unsigned int dl = 0;
        int r = buf && md ? 0 : drv_err(&e, ENOMEM, "out of memory");
        if (md)
                EVP_DigestInit_ex(md, EVP_sha256(), NULL);
        for (uint64_t left = (uint64_t)st.st_size; r == 0 && left;) {
                ssize_t n = DRV_RETRY(read(fd, buf, left < HELPER_BUF ? left : HELPER_BUF));
                if (n < 0)
                        r = drv_err_errno(&e, "reading %s", argv[0]);
                if (n <= 0)
                        break;
                EVP_DigestUpdate(md, buf, (size_t)n);
                left -= (uint64_t)n;
        }
        if (md)
                EVP_DigestFinal_ex(md, dig, &dl);
        EVP_MD_CTX_free(md);
        if (r < 0)
                return fail(&e);
        EVP_EncodeBlock(b64, dig, (int)dl);
        return put_str('S', (const char *)b64) < 0;
}

/* stdin frames as read(2) for the extractor: 'D' bytes, 0 at 'C', -ECANCELED at 'A'. */
struct frames_in {
        size_t left; /* of the current 'D' frame */
        bool done;
};

static ssize_t frames_read(void *ud, void *buf, size_t n)
{
        struct frames_in *f = ud;
        while (f->left == 0) {
                if (f->done)
                        return 0;
                unsigned char h[4];
                size_t got = 0;
                while (got < 4) {
                        ssize_t k = DRV_RETRY(read(STDIN_FILENO, h + got, 4 - got));
                        if (k <= 0)
                                return k < 0 ? -errno : -EPIPE;
                        got += (size_t)k;
                }
                size_t len = ((size_t)h[1] << 16) | ((size_t)h[2] << 8) | h[3];
                if (h[0] == 'C' && len == 0) {
                        f->done = true;
                        return 0;
                }
                if (h[0] == 'A')
                        return -ECANCELED;
                if (h[0] != 'D' || len > JH_MAX_FRAME)
                        return -EPROTO;
                f->left = len;
        }
        ssize_t k = DRV_RETRY(read(STDIN_FILENO, buf, n < f->left ? n : f->left));
        if (k == 0)
                return -EPIPE;
        if (k > 0)
                f->left -= (size_t)k;
        return k < 0 ? -errno : k;
}

/* The undo log's directory fd (strict) and name within, from its absolute inside path. */
static int open_log_dir(const struct jobfs *fs, const char *path, const char **name,
                        struct drv_error *e)
{
        const char *slash = strrchr(path, '/');
        _cleanup_free_ char *dir =
            slash && slash != path ? strndup(path, (size_t)(slash - path)) : strdup("/");
        int dfd = -1;
        *name = slash ? slash + 1 : path;
        if (!dir)
                return drv_err(e, ENOMEM, "out of memory");
        int r = jobfs_open_dir_strict(fs, dir, false, &dfd, e);
        return r < 0 ? r : dfd;
}

/* unpack DEST CREATE LOG: extract the archive of the stdin frames into DEST; kept only when it
 * was whole and the supervisor said 'C', else undone. LOG (a new file, if its directory is
 * there) records each change as it is made: `undo` replays it if this process is killed. */
static int op_unpack(int root, int argc, char **argv)
{
        struct jobfs fs;
        struct drv_error e = {0};
        _cleanup_close_ int dest = -1;
        if (argc != 3 || open_root(&fs, root) < 0)
                return drv_err(&e, EINVAL, "unpack: bad arguments"), fail(&e);
        if (jobfs_open_dir_strict(&fs, argv[0], strcmp(argv[1], "1") == 0, &dest, &e) < 0)
                return fail(&e);
        /* without a place for the log (no /tmp: the remote Docker runtime's home copy) the undo
         * log is kept in memory only */
        const char *log_name;
        struct drv_error e2 = {0};
        _cleanup_close_ int log_dir = open_log_dir(&fs, argv[2], &log_name, &e2);
        _cleanup_close_ int log_fd =
            log_dir < 0 ? -1
                        : openat(log_dir, log_name,
                                 O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        struct archive_journal *j = archive_journal_new(log_fd);
        if (!j)
                return drv_err(&e, ENOMEM, "out of memory"), fail(&e);
        struct frames_in in = {0};
        struct archive_stats st = {0};
        int r = archive_extract_from(&fs, dest, frames_read, &in, NULL, &st, &j, &e);
        if (r == 0) { /* the rest (tar padding, the end of the stream) up to 'C' or 'A' */
                char sink[65536];
                ssize_t k;
                while ((k = frames_read(&in, sink, sizeof(sink))) > 0)
                        ;
                if (k < 0)
                        r = drv_err(&e, -(int)k, "the archive did not come whole (%s)",
                                    strerror(-(int)k));
        }
        archive_journal_end(j, dest, r == 0);
        if (log_fd >= 0)
                unlinkat(log_dir, log_name, 0);
        if (r < 0)
                return fail(&e);
        return put_stats(&st) < 0;
}

/* undo DEST LOG: replay the undo log of an `unpack` that was killed, then remove it. */
static int op_undo(int root, int argc, char **argv)
{
        struct jobfs fs;
        struct drv_error e = {0};
        _cleanup_close_ int dest = -1;
        if (argc != 2 || open_root(&fs, root) < 0)
                return drv_err(&e, EINVAL, "undo: bad arguments"), fail(&e);
        const char *log_name;
        _cleanup_close_ int log_dir = open_log_dir(&fs, argv[1], &log_name, &e);
        if (log_dir < 0)
                return fail(&e);
        _cleanup_close_ int fd = -1;
        struct stat st;
        if (jobfs_open_regular(log_dir, log_name, &fd, &st, &e) < 0)
                return fail(&e);
        _cleanup_free_ char *log = NULL;
        size_t len = 0;
        if (drv_read_fd(fd, &log, &len, 256u << 20, &e) < 0 ||
            jobfs_open_dir_strict(&fs, argv[0], false, &dest, &e) < 0)
                return fail(&e);
        int r = archive_journal_replay(dest, log, len);
        unlinkat(log_dir, log_name, 0);
        if (r < 0)
                return drv_err(&e, -r, "undo: %s", strerror(-r)), fail(&e);
        return put_str('S', "undone") < 0;
}

static int dispatch(int argc, char **argv);

int jobhelper_main(int argc, char **argv)
{
        int rc = dispatch(argc, argv);
        return flush_out() < 0 ? 1 : rc;
}

static int dispatch(int argc, char **argv)
{
        /* argv: circleci __storage [--root-fd N] OP ARGS... (N: a directory fd taken as the
         * job's root instead of "/": the remote Docker runtime's local copy of the home) */
        signal(SIGPIPE, SIG_IGN);
        umask(022);
        int root = -1;
        if (argc >= 4 && strcmp(argv[2], "--root-fd") == 0) {
                root = atoi(argv[3]);
                argc -= 2, argv += 2;
        } else {
                root = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
        }
        if (argc >= 3 && strcmp(argv[2], "pack") == 0)
                return op_pack(root, argc - 3, argv + 3);
        if (argc >= 3 && strcmp(argv[2], "files") == 0)
                return op_files(root, argc - 3, argv + 3);
        if (argc >= 3 && strcmp(argv[2], "sum") == 0)
                return op_sum(root, argc - 3, argv + 3);
        if (argc >= 3 && strcmp(argv[2], "unpack") == 0)
                return op_unpack(root, argc - 3, argv + 3);
        if (argc >= 3 && strcmp(argv[2], "undo") == 0)
                return op_undo(root, argc - 3, argv + 3);
        struct drv_error e = {0};
        drv_err(&e, EINVAL, "unknown storage helper op");
        return fail(&e);
}

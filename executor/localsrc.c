/* localsrc.c: the filtered snapshot of the local source that `drover run` gives checkout steps. */
#include "executor/localsrc.h"

#include <fcntl.h>
#include <linux/openat2.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>

static int openat2_beneath(int dirfd, const char *path, int flags)
{
        struct open_how how = {.flags = (uint64_t)(flags | O_CLOEXEC | O_NOFOLLOW),
                               .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
                                          RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV};
        long fd;
        do
                fd = syscall(SYS_openat2, dirfd, path, &how, sizeof(how));
        while (fd < 0 && errno == EINTR);
        return fd < 0 ? -errno : (int)fd;
}

/* git with explicit argv; its stdout to out_fd (-1: /dev/null), the end of its stderr kept for
 * the error. No configured command runs: no hooks, no fsmonitor; any owner's repository. */
static int git(const char *const *args, int out_fd, struct drv_error *err)
{
        const char *argv[32] = {"git",
                                "-c",
                                "safe.directory=*",
                                "-c",
                                "core.fsmonitor=false",
                                "-c",
                                "core.hooksPath=/dev/null"};
        size_t n = 7;
        for (size_t i = 0; args[i] && n < DRV_ARRAY_SIZE(argv) - 1; i++)
                argv[n++] = args[i];
        argv[n] = NULL;
        const char *home = getenv("HOME"), *xdg = getenv("XDG_CONFIG_HOME");
        _cleanup_free_ char *home_v = home ? drv_asprintf("HOME=%s", home) : NULL;
        _cleanup_free_ char *xdg_v = xdg ? drv_asprintf("XDG_CONFIG_HOME=%s", xdg) : NULL;
        char *envp[] = {"PATH=/usr/local/bin:/usr/bin:/bin",
                        "LC_ALL=C",
                        "GIT_TERMINAL_PROMPT=0",
                        home_v,
                        xdg_v,
                        NULL};
        if (!home_v) { /* keep the list NULL-terminated without holes */
                envp[3] = xdg_v;
                envp[4] = NULL;
        }
        int p[2];
        if (pipe2(p, O_CLOEXEC) < 0)
                return drv_err_errno(err, "pipe");
        pid_t pid = fork();
        if (pid < 0) {
                close(p[0]);
                close(p[1]);
                return drv_err_errno(err, "fork");
        }
        if (pid == 0) {
                int nul = open("/dev/null", O_RDWR | O_CLOEXEC);
                if (nul < 0 || dup2(nul, 0) < 0 || dup2(out_fd >= 0 ? out_fd : nul, 1) < 0 ||
                    dup2(p[1], 2) < 0)
                        _exit(126);
                execvpe("git", (char *const *)argv, envp);
                _exit(127);
        }
        close(p[1]);
        char msg[4096];
        size_t len = 0;
        for (;;) { /* keep the last bytes: git's reason is at the end */
                ssize_t got = DRV_RETRY(read(p[0], msg + len, sizeof(msg) - 1 - len));
                if (got <= 0)
                        break;
                len += (size_t)got;
                if (len > sizeof(msg) / 2) {
                        memmove(msg, msg + len - sizeof(msg) / 4, sizeof(msg) / 4);
                        len = sizeof(msg) / 4;
                }
        }
        msg[len] = 0;
        close(p[0]);
        int st;
        if (DRV_RETRY(waitpid(pid, &st, 0)) < 0)
                return drv_err_errno(err, "waitpid git");
        if (WIFEXITED(st) && WEXITSTATUS(st) == 127)
                return drv_err(err, ENOENT, "git is not installed on this machine");
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
                while (len && (msg[len - 1] == '\n' || msg[len - 1] == ' '))
                        msg[--len] = 0;
                char *last = strrchr(msg, '\n');
                const char *cmd = "";
                for (size_t i = 0; args[i] && !cmd[0]; i++) /* the subcommand, after -C DIR */
                        if (strcmp(args[i], "-C") == 0 && args[i + 1])
                                i++;
                        else if (args[i][0] != '-')
                                cmd = args[i];
                return drv_err(err, EIO, "git %s failed: %s", cmd, last ? last + 1 : msg);
        }
        return 0;
}

/* Run git with its stdout into the file path (created 0600). */
static int git_to(const char *path, const char *const *args, struct drv_error *err)
{
        _cleanup_close_ int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (fd < 0)
                return drv_err_errno(err, "create %s", path);
        return git(args, fd, err);
}

static int copy_bytes(int in, int out)
{
        for (;;) {
                ssize_t n = copy_file_range(in, NULL, out, NULL, 1 << 30, 0);
                if (n == 0)
                        return 0;
                if (n > 0)
                        continue;
                if (errno == EINTR)
                        continue;
                if (errno != EXDEV && errno != EINVAL && errno != ENOSYS && errno != EOPNOTSUPP)
                        return -errno;
                char buf[65536];
                for (;;) {
                        ssize_t got = DRV_RETRY(read(in, buf, sizeof(buf)));
                        if (got < 0)
                                return -errno;
                        if (got == 0)
                                return 0;
                        if (drv_write_all(out, buf, (size_t)got) < 0)
                                return -errno;
                }
        }
}

/* Make the parent directories of rel under dst (0755). */
static int make_parents(int dst, const char *rel)
{
        _cleanup_free_ char *p = strdup(rel);
        if (!p)
                return -ENOMEM;
        for (char *s = strchr(p, '/'); s; s = strchr(s + 1, '/')) {
                *s = 0;
                if (mkdirat(dst, p, 0755) < 0 && errno != EEXIST)
                        return -errno;
                *s = '/';
        }
        return 0;
}

static bool safe_rel(const char *rel)
{
        if (!rel[0] || rel[0] == '/' || drv_endswith(rel, "/"))
                return false;
        for (const char *c = rel; c; c = strchr(c, '/')) {
                c += *c == '/';
                if (strncmp(c, "..", 2) == 0 && (c[2] == '/' || c[2] == 0))
                        return false;
                if (strncmp(c, ".git", 4) == 0 && (c[4] == '/' || c[4] == 0))
                        return false;
        }
        return true;
}

/* Copy one listed path: a regular file (mode 0644, or 0755 when executable) or a symlink as a
 * symlink; nothing else, nothing through a symlink. 1 copied, 0 skipped, -errno. */
static int copy_entry(int root, int dst, const char *rel)
{
        if (!safe_rel(rel))
                return 0;
        int fd = openat2_beneath(root, rel, O_PATH);
        if (fd == -ENOENT || fd == -ELOOP || fd == -EXDEV || fd == -ENOTDIR)
                return 0; /* deleted meanwhile, or behind a symlink or a mount */
        if (fd < 0)
                return fd;
        _cleanup_close_ int pfd = fd;
        struct stat st;
        if (fstat(pfd, &st) < 0)
                return -errno;
        int r = make_parents(dst, rel);
        if (r < 0)
                return r;
        if (S_ISLNK(st.st_mode)) {
                char target[4096];
                ssize_t n = readlinkat(pfd, "", target, sizeof(target) - 1);
                if (n < 0)
                        return -errno;
                target[n] = 0;
                return symlinkat(target, dst, rel) < 0 && errno != EEXIST ? -errno : 1;
        }
        if (!S_ISREG(st.st_mode))
                return 0;
        _cleanup_close_ int in = openat2_beneath(root, rel, O_RDONLY | O_NONBLOCK);
        if (in < 0)
                return in == -ENOENT || in == -ELOOP ? 0 : in;
        if (fstat(in, &st) < 0)
                return -errno;
        if (!S_ISREG(st.st_mode))
                return 0;
        mode_t mode = st.st_mode & 0111 ? 0755 : 0644;
        _cleanup_close_ int out =
            openat(dst, rel, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
        if (out < 0)
                return -errno;
        if ((r = copy_bytes(in, out)) < 0)
                return r;
        return fchmod(out, mode) < 0 ? -errno : 1; /* whatever the umask */
}

/* Copy every path of the NUL-separated list into dst_path. */
static int copy_listed(const char *root, const char *list, const char *dst_path, size_t *files,
                       struct drv_error *err)
{
        _cleanup_free_ char *text = NULL;
        size_t len = 0;
        int r = drv_read_file(list, &text, &len, 512 << 20, err);
        if (r < 0)
                return r;
        if (mkdir(dst_path, 0755) < 0)
                return drv_err_errno(err, "mkdir %s", dst_path);
        _cleanup_close_ int rootfd = open(root, O_PATH | O_DIRECTORY | O_CLOEXEC);
        _cleanup_close_ int dst = open(dst_path, O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (rootfd < 0 || dst < 0)
                return drv_err_errno(err, "open %s", rootfd < 0 ? root : dst_path);
        for (size_t off = 0; off < len;) {
                const char *rel = text + off;
                off += strlen(rel) + 1;
                r = copy_entry(rootfd, dst, rel);
                if (r < 0)
                        return drv_err(err, -r, "copy %s/%s: %s", root, rel, strerror(-r));
                *files += (size_t)r;
        }
        return 0;
}

char *localsrc_clean_url(const char *url)
{
        const char *sep = strstr(url, "://");
        const char *at = sep ? strchr(sep + 3, '@') : NULL;
        const char *slash = sep ? strchr(sep + 3, '/') : NULL;
        if (!sep || !at || (slash && slash < at))
                return strdup(url); /* no userinfo, or scp-like user@host:path */
        bool ssh = (size_t)(sep - url) == 3 && strncmp(url, "ssh", 3) == 0;
        const char *colon = memchr(sep + 3, ':', (size_t)(at - sep - 3));
        if (ssh && !colon)
                return strdup(url);
        if (ssh)
                return drv_asprintf("%.*s%s", (int)(colon - url), url, at);
        return drv_asprintf("%.*s%s", (int)(sep + 3 - url), url, at + 1);
}

static int write_text(const char *dir, const char *name, const char *text, struct drv_error *err)
{
        _cleanup_free_ char *path = drv_path_join(dir, name);
        if (!path)
                return drv_err(err, ENOMEM, "out of memory");
        return drv_write_file_atomic(path, text, strlen(text), 0644, err);
}

/* The repository's origin URL without credentials into src/origin (nothing when none). */
static int write_origin(struct localsrc *s, const char *root, struct drv_error *err)
{
        _cleanup_free_ char *raw = drv_path_join(s->stage, "origin");
        const char *args[] = {"-C", root, "config", "--get", "remote.origin.url", NULL};
        struct drv_error e = {0};
        if (!raw)
                return drv_err(err, ENOMEM, "out of memory");
        if (git_to(raw, args, &e) < 0)
                return 0; /* no origin */
        _cleanup_free_ char *url = NULL;
        if (drv_read_file(raw, &url, NULL, 1 << 16, err) < 0)
                return -EIO;
        url[strcspn(url, "\r\n")] = 0;
        _cleanup_free_ char *clean = localsrc_clean_url(url);
        if (!clean)
                return drv_err(err, ENOMEM, "out of memory");
        return url[0] ? write_text(s->src, "origin", clean, err) : 0;
}

static int snapshot_repo(struct localsrc *s, const char *root, const struct localrepo *repo,
                         bool committed, struct drv_error *err)
{
        _cleanup_free_ char *bare = drv_path_join(s->src, "repo.git");
        _cleanup_free_ char *list = drv_path_join(s->stage, "list");
        _cleanup_free_ char *deleted = drv_path_join(s->src, "deleted");
        _cleanup_free_ char *tree = drv_path_join(s->src, "tree");
        if (!bare || !list || !deleted || !tree)
                return drv_err(err, ENOMEM, "out of memory");
        if (committed && !repo->revision)
                return drv_err(err, EINVAL, "--committed: %s has no commit yet", root);
        /* a fresh repository: the objects and refs, none of the source's config */
        const char *clone[] = {"clone", "--bare", "--quiet", "--local", "--", root, bare, NULL};
        int r = git(clone, -1, err);
        if (r < 0)
                return drv_err_prefix(err, "snapshot of %s", root);
        if ((r = write_origin(s, root, err)) < 0)
                return r;
        if (committed)
                return 0;
        const char *ls[] = {"-C",       root,       "ls-files",           "-z",
                            "--cached", "--others", "--exclude-standard", NULL};
        const char *ls_del[] = {"-C", root, "ls-files", "-z", "--deleted", NULL};
        if ((r = git_to(list, ls, err)) < 0 || (r = git_to(deleted, ls_del, err)) < 0)
                return drv_err_prefix(err, "snapshot of %s", root);
        if (chmod(deleted, 0644) < 0)
                return drv_err_errno(err, "chmod %s", deleted);
        return copy_listed(root, list, tree, &s->files, err);
}

/* A directory without git: its files, minus what .gitignore files there ignore. */
static int snapshot_plain(struct localsrc *s, const char *root, bool committed,
                          struct drv_error *err)
{
        if (committed)
                return drv_err(err, EINVAL, "--committed: %s is not a git repository", root);
        _cleanup_free_ char *empty = drv_path_join(s->stage, "empty.git");
        _cleanup_free_ char *list = drv_path_join(s->stage, "list");
        _cleanup_free_ char *tree = drv_path_join(s->src, "tree");
        _cleanup_free_ char *gd = empty ? drv_asprintf("--git-dir=%s", empty) : NULL;
        _cleanup_free_ char *wt = drv_asprintf("--work-tree=%s", root);
        if (!list || !tree || !gd || !wt)
                return drv_err(err, ENOMEM, "out of memory");
        const char *init[] = {"init", "--bare", "--quiet", empty, NULL};
        const char *ls[] = {gd, wt, "ls-files", "-z", "--others", "--exclude-standard", NULL};
        int r = git(init, -1, err);
        if (r == 0)
                r = git_to(list, ls, err);
        if (r < 0)
                return drv_err_prefix(err, "snapshot of %s", root);
        return copy_listed(root, list, tree, &s->files, err);
}

static int describe(struct localsrc *s, const char *root, const struct localrepo *repo,
                    bool committed, struct drv_error *err)
{
        char head[64] = "";
        if (repo && repo->revision)
                snprintf(head, sizeof(head), "HEAD %.12s%s%s%s", repo->revision,
                         repo->branch ? " (" : "", repo->branch ? repo->branch : "",
                         repo->branch ? ")" : "");
        _cleanup_free_ char *text =
            !repo ? drv_asprintf("drover run: %s is not a git repository: checking out its "
                                 "files as they are (no history; what .gitignore files ignore "
                                 "is left out)\n",
                                 root)
            : committed
                ? drv_asprintf("drover run: checking out %s of %s as committed (--committed: "
                               "uncommitted changes and untracked files are left out)\n",
                               head, root)
            : !repo->revision
                ? drv_asprintf("drover run: %s has no commit yet: checking out its work tree "
                               "(files git does not ignore), no history\n",
                               root)
                : drv_asprintf("drover run: checking out the work tree of %s as you see it: %s "
                               "plus uncommitted changes and untracked files; git-ignored files "
                               "are left out (--committed: HEAD only)\n",
                               root, head);
        if (!text)
                return drv_err(err, ENOMEM, "out of memory");
        return write_text(s->src, "describe", text, err);
}

int localsrc_prepare(const char *root, const struct localrepo *repo, bool committed,
                     struct localsrc *out, struct drv_error *err)
{
        *out = (struct localsrc){0};
        const char *tmp = getenv("TMPDIR");
        out->stage = drv_asprintf("%s/drover-src-XXXXXX", tmp && tmp[0] == '/' ? tmp : "/tmp");
        if (!out->stage || !mkdtemp(out->stage)) {
                int e = out->stage ? errno : ENOMEM;
                free(out->stage);
                out->stage = NULL;
                return drv_err(err, e, "staging directory for the checkout: %s", strerror(e));
        }
        out->src = drv_path_join(out->stage, "src");
        if (!out->src)
                return drv_err(err, ENOMEM, "out of memory");
        if (mkdir(out->src, 0755) < 0 || chmod(out->src, 0755) < 0)
                return drv_err_errno(err, "mkdir %s", out->src);
        int r = repo ? snapshot_repo(out, root, repo, committed, err)
                     : snapshot_plain(out, root, committed, err);
        return r < 0 ? r : describe(out, root, repo, committed, err);
}

void localsrc_release(struct localsrc *s)
{
        if (s->stage) {
                struct drv_error e;
                (void)drv_rm_rf(s->stage, &e);
        }
        free(s->stage);
        free(s->src);
        *s = (struct localsrc){0};
}

/* runtime_sandbox.c: the local runtime — one long-lived drover sandbox per job. */
#include "executor/runtime.h"
#include "executor/injob.h"
#include "executor/runtime_image.h"
#include "sandbox/sandbox.h"

#include <ctype.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <linux/openat2.h>
#include <dirent.h>
#include <sys/file.h>
#include <sys/fsuid.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>

/* Host directories of running jobs, in drv_run_root() (/run/drover as root; rootless: the
 * user's, docs/rootless.md): made by drover, never seen by a job (/run, /home are masked). */
#define RUN_DIR_PREFIX "job-"

static void closedirp(DIR **d)
{
        if (*d)
                closedir(*d);
}

struct rts {
        struct sandbox *sb;
        struct sandbox_bind binds[20];
        char name[65];
        struct rtimg *img; /* docker jobs: the images, job user and services; NULL on machine */
        struct sandbox_group *group; /* with services: the job's cgroup over all its sandboxes */
        char *run_dir;    /* host dir of this job (RUN_DIR_PREFIX...): the passwd/group files bound
                             inside, steps/ bound read-only at INJOB_STEPS_DIR */
        int run_lock_fd;  /* flock on run_dir/owner: held while the job lives (the sweep's test) */
        bool steps_owned; /* steps/ belongs to the job user (after sandbox_create) */
        char *etc_passwd;
        char *etc_group;
};

/* Does an /etc/passwd or /etc/group text have an entry with this id (field 3)? */
static bool has_id(const char *text, unsigned id)
{
        char idf[16];
        snprintf(idf, sizeof(idf), "%u", id);
        size_t il = strlen(idf);
        for (const char *l = text; l && *l; l = strchr(l, '\n'), l = l ? l + 1 : NULL) {
                const char *eol = strchr(l, '\n');
                const char *f = strchr(l, ':');
                f = f && (!eol || f < eol) ? strchr(f + 1, ':') : NULL;
                if (f && (!eol || f < eol) && strncmp(f + 1, idf, il) == 0 && f[1 + il] == ':')
                        return true;
        }
        return false;
}

/* The host's /etc/passwd and /etc/group plus the job user (circleci, 3434) when the host has no
 * entry for uid (gid) 3434: ssh, git and `id -un` need the job user's entry (getpwuid). A host
 * `circleci` with another uid keeps its line; ours is found by uid. Bound read-only over the
 * host's files. */
static int job_user_files(struct rts *rt, struct drv_error *err)
{
        static const char *const names[2] = {"passwd", "group"};
        static const char *const lines[2] = {
            "circleci:x:3434:3434:circleci:/home/circleci:/bin/bash\n", "circleci:x:3434:\n"};
        char **dest[2] = {&rt->etc_passwd, &rt->etc_group};
        int r;
        for (int i = 0; i < 2; i++) {
                _cleanup_free_ char *host = drv_asprintf("/etc/%s", names[i]), *text = NULL;
                size_t len = 0;
                if (!host)
                        return drv_err(err, ENOMEM, "out of memory");
                if ((r = drv_read_file(host, &text, &len, 16 << 20, err)) < 0)
                        return r;
                if (has_id(text, 3434))
                        continue;
                _cleanup_free_ char *all = drv_asprintf(
                    "%s%s%s", text, len && text[len - 1] != '\n' ? "\n" : "", lines[i]);
                *dest[i] = drv_asprintf("%s/%s", rt->run_dir, names[i]);
                if (!all || !*dest[i])
                        return drv_err(err, ENOMEM, "out of memory");
                if ((r = drv_write_file_atomic(*dest[i], all, strlen(all), 0644, err)) < 0)
                        return r;
        }
        return 0;
}

/* The job's own host directory: RUN_DIR_PREFIX-XXXXXX with an flock'ed owner file (held until
 * rts_free; a crashed run's directory is found by runtime_sweep_stale through the free lock) and
 * steps/ for the step scripts. */
static int make_run_dir(struct rts *rt, struct drv_error *err)
{
        _cleanup_free_ char *root = drv_run_root();
        if (!root)
                return drv_err(err, ENOENT, "no state directory: set HOME or XDG_RUNTIME_DIR");
        int r = drv_mkdir_p(root, drv_rootless() ? 0700 : 0755, err);
        if (r < 0)
                return r;
        _cleanup_free_ char *tmpl = drv_asprintf("%s/" RUN_DIR_PREFIX "XXXXXX", root);
        if (!tmpl)
                return drv_err(err, ENOMEM, "out of memory");
        if (!mkdtemp(tmpl))
                return drv_err_errno(err, "mkdtemp %s", tmpl);
        if (!(rt->run_dir = strdup(tmpl)))
                return drv_err(err, ENOMEM, "out of memory");
        _cleanup_free_ char *owner = drv_asprintf("%s/owner", tmpl),
                            *steps = drv_asprintf("%s/steps", tmpl);
        if (!owner || !steps)
                return drv_err(err, ENOMEM, "out of memory");
        rt->run_lock_fd = open(owner, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (rt->run_lock_fd < 0 || flock(rt->run_lock_fd, LOCK_EX | LOCK_NB) < 0)
                return drv_err_errno(err, "lock %s", owner);
        char pid[24];
        int n = snprintf(pid, sizeof(pid), "%d\n", (int)getpid());
        if (chmod(tmpl, 0755) < 0 || drv_write_all(rt->run_lock_fd, pid, (size_t)n) < 0 ||
            mkdir(steps, 0700) < 0)
                return drv_err_errno(err, "prepare %s", tmpl);
        return 0;
}

/* Remove the run directories of crashed runs: their owner lock is free. Legacy etc-* directories
 * (no owner file) go once a day old: no job lasts that long. */
static void sweep_run_dirs(void)
{
        _cleanup_free_ char *root = drv_run_root();
        _cleanup_(closedirp) DIR *d = root ? opendir(root) : NULL;
        for (struct dirent *de; d && (de = readdir(d));) {
                bool ours = strncmp(de->d_name, RUN_DIR_PREFIX, strlen(RUN_DIR_PREFIX)) == 0;
                bool legacy = strncmp(de->d_name, "etc-", 4) == 0;
                if (!ours && !legacy)
                        continue;
                _cleanup_free_ char *dir = drv_asprintf("%s/%s", root, de->d_name);
                _cleanup_free_ char *owner = drv_asprintf("%s/owner", dir ? dir : "");
                if (!dir || !owner)
                        return;
                struct stat st;
                _cleanup_close_ int fd = -1;
                if (ours) {
                        fd = open(owner, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
                        if (fd < 0 || flock(fd, LOCK_EX | LOCK_NB) < 0)
                                continue; /* alive, or too new to have its lock yet */
                } else if (lstat(dir, &st) < 0 || !S_ISDIR(st.st_mode) ||
                           time(NULL) - st.st_mtime < 86400) {
                        continue;
                }
                struct drv_error e = {0};
                if (drv_rm_rf(dir, &e) < 0)
                        log_warn("sweep_failed", "dir=%s error=\"%s\"", dir, e.message);
                else
                        log_info("swept", "dir=%s reason=\"no live owner\"", dir);
        }
}

int runtime_sweep_stale(struct drv_error *err)
{
        sweep_run_dirs();
        return sandbox_sweep_stale(err);
}

static void rts_free(struct rts *rt)
{
        if (rt->run_dir) {
                struct drv_error e = {0};
                if (drv_rm_rf(rt->run_dir, &e) < 0)
                        log_warn("run_dir_cleanup_failed", "dir=%s error=\"%s\"", rt->run_dir,
                                 e.message);
        }
        if (rt->run_lock_fd >= 0)
                close(rt->run_lock_fd);
        free(rt->run_dir);
        free(rt->etc_passwd);
        free(rt->etc_group);
        free(rt);
}

/* The sandbox (and cgroup) name: the job id with anything outside [A-Za-z0-9._-] replaced,
 * plus the node index, so that concurrent jobs on one host never share a cgroup. */
static void sandbox_name(const struct jobspec *spec, char *buf, size_t n)
{
        char idx[16];
        snprintf(idx, sizeof(idx), "-%u", spec->node_index);
        size_t room = n - 1 - strlen(idx), i = 0;
        for (const char *c = spec->job_id ? spec->job_id : "job"; *c && i < room; c++, i++)
                buf[i] = (isalnum((unsigned char)*c) || strchr("._-", *c)) ? *c : '_';
        if (i == 0)
                buf[i++] = 'j';
        if (buf[0] == '.')
                buf[0] = '_';
        snprintf(buf + i, n - i, "%s", idx);
}

static void rts_close(void *impl);

/* The sandbox's notes (rootless: limits not enforced, which network) in the job's output, once
 * per job: each line through hooks.notice ("Spin up environment"), else on stderr. */
static void tell_notes(const struct runtime_hooks *h, const char *notes)
{
        for (const char *l = notes; l && *l;) {
                const char *eol = strchrnul(l, '\n');
                _cleanup_free_ char *line = strndup(l, (size_t)(eol - l));
                if (line && h->notice)
                        h->notice(h->ud, line);
                else if (line)
                        fprintf(stderr, "%s\n", line);
                l = *eol ? eol + 1 : eol;
        }
}

static int rts_open(const struct runtime_config *cfg, void **out, struct drv_error *err)
{
        const struct jobspec *spec = cfg->spec;
        const struct js_executor *e = &spec->executor;
        if (e->runtime != JS_RUNTIME_SANDBOX)
                return drv_err(err, ENOTSUP, "$.executor.runtime: not a sandbox job");
        struct rts *rt = calloc(1, sizeof(*rt));
        if (!rt)
                return drv_err(err, ENOMEM, "out of memory");
        rt->run_lock_fd = -1;
        sandbox_name(spec, rt->name, sizeof(rt->name));
        int r = make_run_dir(rt, err);
        if (r < 0) {
                rts_free(rt);
                return drv_err_prefix(err, "the job's run directory");
        }
        if (e->kind == JS_KIND_DOCKER &&
            (r = rtimg_open(spec, rt->name, &cfg->hooks, &rt->img, err)) < 0) {
                rts_free(rt);
                return r;
        }
        _cleanup_free_ char *steps = drv_asprintf("%s/steps", rt->run_dir);
        if (!steps) {
                rts_free(rt);
                return drv_err(err, ENOMEM, "out of memory");
        }
        size_t nb = 0;
        rt->binds[nb++] = (struct sandbox_bind){steps, INJOB_STEPS_DIR, true};
        if (cfg->self_exe && !rt->img) { /* on images: rtimg_primary_config */
                rt->binds[nb++] =
                    (struct sandbox_bind){cfg->self_exe, "/run/drover/bin/circleci", true};
                rt->binds[nb++] =
                    (struct sandbox_bind){cfg->self_exe, "/run/drover/bin/circleci-agent", true};
        }
        if (cfg->source_dir)
                rt->binds[nb++] = (struct sandbox_bind){cfg->source_dir, INJOB_SOURCE_DIR, true};
        if (!rt->img && (r = job_user_files(rt, err)) < 0) {
                rts_close(rt);
                return drv_err_prefix(err, "the job user's passwd entry");
        }
        if (rt->etc_passwd)
                rt->binds[nb++] = (struct sandbox_bind){rt->etc_passwd, "/etc/passwd", true};
        if (rt->etc_group)
                rt->binds[nb++] = (struct sandbox_bind){rt->etc_group, "/etc/group", true};
        struct sandbox_config sc = {
            .name = rt->name,
            .hostname = "drover",
            .net = e->network == JS_NET_PRIVATE ? SANDBOX_NET_PRIVATE : SANDBOX_NET_NONE,
            .memory_bytes = e->memory_mb << 20,
            .cpus = e->cpus,
            .pids_max = e->pids,
            .disk_bytes = e->disk_mb << 20,
            .binds = rt->binds,
            .n_binds = nb,
        };
        r = rt->img ? rtimg_primary_config(rt->img, cfg->self_exe, &sc, rt->binds, &sc.n_binds,
                                           DRV_ARRAY_SIZE(rt->binds), err)
                    : 0;
        /* services: primary and services in one group with the job's limits (their total) */
        if (r == 0 && rt->img && e->n_images > 1)
                r = sandbox_group_create(rt->name, sc.memory_bytes, sc.cpus, sc.pids_max,
                                         &rt->group, err);
        sc.group = rt->group;
        if (r == 0)
                r = sandbox_create(&sc, &rt->sb, err);
        if (r == 0 &&
            (chown(steps, sandbox_host_uid(rt->sb, false), sandbox_host_gid(rt->sb, false)) < 0 ||
             chmod(steps, 0700) < 0))
                r = drv_err_errno(err, "hand %s to the job user", steps);
        if (r == 0)
                tell_notes(&cfg->hooks, sandbox_notes(rt->sb));
        if (r == 0 && rt->img)
                r = rtimg_start_services(rt->img, rt->sb, rt->group, err);
        if (r < 0) {
                rts_close(rt);
                return r;
        }
        *out = rt;
        return 0;
}

/* Run se in the job (steps and SSH sessions alike): an image job's environment and user apply;
 * on a pty when pty_master is given. */
static int rts_exec_in_job(struct rts *rt, struct sandbox_exec *se, const struct winsize *pty,
                           int *proc, int *pty_master, struct drv_error *err)
{
        _cleanup_strv_ char **env = rt->img ? rtimg_step_env(rt->img, se->envp) : NULL;
        if (rt->img && !env)
                return drv_err(err, ENOMEM, "out of memory");
        if (env)
                se->envp = (const char *const *)env;
        /* an image's root user keeps root's capabilities */
        se->as_root = se->as_root || (rt->img && rtimg_job_user(rt->img)->uid == 0);
        se->new_session = true;
        if (pty)
                return sandbox_spawn_pty(rt->sb, se, pty->ws_row, pty->ws_col, proc, pty_master,
                                         err);
        return sandbox_spawn(rt->sb, se, proc, err);
}

static int rts_spawn(void *impl, const struct runtime_exec *ex, int *proc, struct drv_error *err)
{
        struct sandbox_exec se = {.argv = ex->argv,
                                  .envp = ex->envp,
                                  .cwd = ex->cwd,
                                  .stdin_fd = -1,
                                  .stdout_fd = ex->out_fd,
                                  .stderr_fd = ex->out_fd,
                                  .as_root = ex->as_root};
        return rts_exec_in_job(impl, &se, NULL, proc, NULL, err);
}

static int rts_event_fd(void *impl)
{
        struct rts *rt = impl;
        return sandbox_event_fd(rt->sb);
}

static int rts_next_exit(void *impl, struct runtime_exit *ev, struct drv_error *err)
{
        struct rts *rt = impl;
        struct sandbox_exit se;
        int r = sandbox_next_exit(rt->sb, &se, err);
        if (r < 0)
                return r;
        ev->proc = se.proc_id;
        ev->status = se.status;
        ev->oom = se.oom;
        ev->cpu_usec = se.cpu_usec;
        ev->peak_memory = se.peak_memory;
        return 0;
}

static bool rts_has_pending_exit(void *impl)
{
        struct rts *rt = impl;
        return sandbox_has_pending_exit(rt->sb);
}

static int rts_signal(void *impl, int proc, int sig)
{
        struct rts *rt = impl;
        return sandbox_signal(rt->sb, proc, sig);
}

static int rts_kill_all(void *impl, struct drv_error *err)
{
        struct rts *rt = impl;
        return sandbox_kill_processes(rt->sb, err);
}

static int rts_root_fd(void *impl)
{
        struct rts *rt = impl;
        return sandbox_root_fd(rt->sb);
}

static uid_t rts_host_uid(void *impl)
{
        struct rts *rt = impl;
        return sandbox_host_uid(rt->sb, false);
}

static gid_t rts_host_gid(void *impl)
{
        struct rts *rt = impl;
        return sandbox_host_gid(rt->sb, false);
}

static const char *rts_home(void *impl)
{
        struct rts *rt = impl;
        return sandbox_home(rt->sb);
}

static const char *rts_user(void *impl)
{
        struct rts *rt = impl;
        return rt->img ? rtimg_job_user(rt->img)->name : "circleci";
}

static uint64_t rts_memory_limit(void *impl)
{
        struct rts *rt = impl;
        return sandbox_memory_limit(rt->sb);
}

/* Open a path of the job (as the job user, see rts_write_file). O_NONBLOCK: a FIFO the job put
 * there cannot block us in open(); only a regular file is handed back (-EINVAL otherwise). */
static int open_in_root(struct rts *rt, const char *path, int flags, mode_t mode)
{
        struct open_how how = {.flags = (uint64_t)(flags | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK |
                                                   0100000 /* O_LARGEFILE */),
                               .mode = flags & O_CREAT ? mode : 0,
                               .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS};
        while (*path == '/')
                path++;
        int root = sandbox_root_fd(rt->sb);
        if (root < 0) {
                errno = ESRCH; /* the sandbox's pid 1 is gone: no root to resolve in */
                return -1;
        }
        _cleanup_close_ int fd = (int)syscall(SYS_openat2, root, path, &how, sizeof(how));
        struct stat st;
        if (fd < 0 || fstat(fd, &st) < 0)
                return -1;
        if (!S_ISREG(st.st_mode)) {
                errno = EINVAL;
                return -1;
        }
        int fl = fcntl(fd, F_GETFL);
        if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) < 0)
                return -1;
        return TAKE_FD(fd);
}

static bool rts_path_exists(void *impl, const char *inside_path)
{
        struct rts *rt = impl;
        struct open_how how = {.flags = O_PATH | O_CLOEXEC,
                               .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS};
        while (*inside_path == '/')
                inside_path++;
        int fd = (int)syscall(SYS_openat2, sandbox_root_fd(rt->sb), inside_path, &how, sizeof(how));
        if (fd < 0)
                return false;
        close(fd);
        return true;
}

static int rts_write_file(void *impl, const char *inside_path, const void *data, size_t n,
                          mode_t mode, struct drv_error *err)
{
        struct rts *rt = impl;
        /* the job's filesystems belong to its user namespace: create files as the job user
         * (host root is not mapped there: EOVERFLOW) */
        int ofsuid = setfsuid(rts_host_uid(rt));
        int ofsgid = setfsgid(rts_host_gid(rt));
        _cleanup_close_ int fd = open_in_root(rt, inside_path, O_WRONLY | O_CREAT | O_TRUNC, mode);
        int saved = errno;
        setfsuid((uid_t)ofsuid);
        setfsgid((gid_t)ofsgid);
        errno = saved;
        if (fd < 0 && errno == EINVAL)
                return drv_err(err, EINVAL, "cannot create %s in the job: not a regular file",
                               inside_path);
        if (fd < 0)
                return drv_err_errno(err, "cannot create %s in the job", inside_path);
        if (fchmod(fd, mode) < 0)
                return drv_err_errno(err, "cannot set the mode of %s in the job", inside_path);
        int r = drv_write_all(fd, data, n);
        if (r < 0) {
                errno = -r;
                return drv_err_errno(err, "cannot write %s in the job", inside_path);
        }
        return 0;
}

/* Step scripts go to steps/ of the job's run directory (bound read-only at INJOB_STEPS_DIR): the
 * job can neither put a FIFO or symlink there nor fill the file system they are on. */
static int rts_write_script(void *impl, const char *name, const void *data, size_t n,
                            char **inside_path, struct drv_error *err)
{
        struct rts *rt = impl;
        if (strchr(name, '/') || !name[0] || strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
                return drv_err(err, EINVAL, "step script name '%s'", name);
        _cleanup_free_ char *dir = drv_asprintf("%s/steps", rt->run_dir);
        if (!dir)
                return drv_err(err, ENOMEM, "out of memory");
        _cleanup_close_ int dfd = open(dir, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (dfd < 0)
                return drv_err_errno(err, "open %s", dir);
        if (unlinkat(dfd, name, 0) < 0 && errno != ENOENT)
                return drv_err_errno(err, "remove %s/%s", dir, name);
        _cleanup_close_ int fd =
            openat(dfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0700);
        if (fd < 0)
                return drv_err_errno(err, "create %s/%s", dir, name);
        int r = drv_write_all(fd, data, n);
        if (r < 0) {
                errno = -r;
                return drv_err_errno(err, "write %s/%s", dir, name);
        }
        if (fchown(fd, rts_host_uid(rt), rts_host_gid(rt)) < 0)
                return drv_err_errno(err, "hand %s/%s to the job user", dir, name);
        if (!(*inside_path = drv_asprintf("%s/%s", INJOB_STEPS_DIR, name)))
                return drv_err(err, ENOMEM, "out of memory");
        return 0;
}

static bool rts_broken(void *impl, char *reason, size_t n)
{
        struct rts *rt = impl;
        return sandbox_broken(rt->sb, reason, n);
}

static void rts_close(void *impl)
{
        struct rts *rt = impl;
        if (!rt)
                return;
        sandbox_destroy(rt->sb);
        rtimg_close(rt->img);             /* services, then the images' leases */
        sandbox_group_destroy(rt->group); /* after all its members */
        rts_free(rt);
}

static int rts_spawn_session(void *impl, const struct runtime_session_exec *ex, int *proc,
                             int *pty_master, struct drv_error *err)
{
        struct sandbox_exec se = {.argv = ex->argv,
                                  .envp = ex->envp,
                                  .cwd = ex->cwd,
                                  .stdin_fd = ex->in_fd,
                                  .stdout_fd = ex->out_fd,
                                  .stderr_fd = ex->err_fd};
        struct winsize ws = {.ws_row = ex->rows, .ws_col = ex->cols};
        return rts_exec_in_job(impl, &se, ex->pty ? &ws : NULL, proc, pty_master, err);
}

static int rts_resize_session(void *impl, int proc, int pty_master, unsigned short rows,
                              unsigned short cols)
{
        (void)impl, (void)proc;
        struct winsize ws = {.ws_row = rows, .ws_col = cols};
        return ioctl(pty_master, TIOCSWINSZ, &ws) < 0 ? -errno : 0; /* the kernel sends SIGWINCH */
}

struct connect_job {
        int netns;
        const char *host;
        uint16_t port;
        int fd;
        struct drv_error err;
};

/* In a thread of its own (setns changes only the calling thread's network namespace). */
static void *connect_inside(void *arg)
{
        struct connect_job *j = arg;
        if (setns(j->netns, CLONE_NEWNET) < 0)
                drv_err_errno(&j->err, "enter the job's network namespace");
        else
                (void)drv_tcp_connect(j->host, j->port, 10000, &j->fd, &j->err);
        return NULL;
}

/* Rootless: joining the job's network namespace needs its user namespace first, which a
 * threaded process cannot enter (setns(2)): a forked child enters both, connects and hands the
 * socket back over a socketpair. */
static int connect_by_child(struct rts *rt, const char *host, uint16_t port, int *fd,
                            struct drv_error *err)
{
        _cleanup_close_ int uns = sandbox_open_ns(rt->sb, "user", err);
        if (uns < 0)
                return uns;
        _cleanup_close_ int nns = sandbox_open_ns(rt->sb, "net", err);
        if (nns < 0)
                return nns;
        int sv[2];
        if (socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, sv) < 0)
                return drv_err_errno(err, "socketpair");
        pid_t child = fork();
        if (child == 0) {
                close(sv[0]);
                struct drv_error e = {0};
                int cfd = -1;
                if (setns(uns, CLONE_NEWUSER) < 0 || setns(nns, CLONE_NEWNET) < 0)
                        drv_err_errno(&e, "enter the job's network namespace");
                else
                        (void)drv_tcp_connect(host, port, 10000, &cfd, &e);
                union {
                        char b[CMSG_SPACE(sizeof(int))];
                        struct cmsghdr align;
                } cm = {0};
                struct iovec iov = {e.message, strlen(e.message) + 1};
                struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
                if (cfd >= 0) {
                        mh.msg_control = cm.b;
                        mh.msg_controllen = sizeof(cm.b);
                        struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
                        c->cmsg_level = SOL_SOCKET;
                        c->cmsg_type = SCM_RIGHTS;
                        c->cmsg_len = CMSG_LEN(sizeof(int));
                        memcpy(CMSG_DATA(c), &cfd, sizeof(int));
                }
                _exit(sendmsg(sv[1], &mh, 0) < 0 ? 1 : 0);
        }
        close(sv[1]);
        if (child < 0) {
                close(sv[0]);
                return drv_err_errno(err, "fork to connect inside the job");
        }
        char msg[sizeof(err->message) + 1] = "";
        union {
                char b[CMSG_SPACE(sizeof(int))];
                struct cmsghdr align;
        } cm;
        struct iovec iov = {msg, sizeof(msg) - 1};
        struct msghdr mh = {
            .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cm.b, .msg_controllen = sizeof(cm.b)};
        ssize_t n = DRV_RETRY(recvmsg(sv[0], &mh, MSG_CMSG_CLOEXEC));
        close(sv[0]);
        DRV_RETRY(waitpid(child, NULL, 0));
        struct cmsghdr *c = n > 0 ? CMSG_FIRSTHDR(&mh) : NULL;
        if (c && c->cmsg_type == SCM_RIGHTS) {
                memcpy(fd, CMSG_DATA(c), sizeof(int));
                return drv_fd_nonblock(*fd, true) < 0 ? drv_err_errno(err, "socket") : 0;
        }
        return drv_err(err, ECONNREFUSED, "inside the job: %s", msg[0] ? msg : "connect failed");
}

static int rts_connect_tcp(void *impl, const char *host, uint16_t port, int *fd,
                           struct drv_error *err)
{
        struct rts *rt = impl;
        if (sandbox_rootless(rt->sb))
                return connect_by_child(rt, host, port, fd, err);
        int ns = sandbox_open_netns(rt->sb, err);
        if (ns < 0)
                return ns;
        struct connect_job j = {.netns = ns, .host = host, .port = port, .fd = -1};
        pthread_t t;
        int e = pthread_create(&t, NULL, connect_inside, &j);
        if (e == 0)
                pthread_join(t, NULL);
        close(ns);
        if (e != 0)
                return drv_err(err, e, "cannot start a thread to connect inside the job");
        if (j.fd < 0) {
                *err = j.err;
                return drv_err_prefix(err, "inside the job");
        }
        *fd = j.fd;
        return 0;
}

static void rts_poll(void *impl)
{
        struct rts *rt = impl;
        if (rt->img)
                rtimg_poll_services(rt->img);
}

static int rts_poll_fd(void *impl)
{
        struct rts *rt = impl;
        return rt->img ? rtimg_poll_fd(rt->img) : -1;
}

const struct runtime_ops runtime_sandbox_ops = {
    .name = "sandbox",
    .open = rts_open,
    .spawn = rts_spawn,
    .event_fd = rts_event_fd,
    .next_exit = rts_next_exit,
    .has_pending_exit = rts_has_pending_exit,
    .signal = rts_signal,
    .kill_all = rts_kill_all,
    .root_fd = rts_root_fd,
    .host_uid = rts_host_uid,
    .host_gid = rts_host_gid,
    .home = rts_home,
    .user = rts_user,
    .memory_limit = rts_memory_limit,
    .path_exists = rts_path_exists,
    .write_file = rts_write_file,
    .close = rts_close,
    .spawn_session = rts_spawn_session,
    .connect_tcp = rts_connect_tcp,
    .resize_session = rts_resize_session,
    .poll = rts_poll,
    .poll_fd = rts_poll_fd,
    .write_script = rts_write_script,
    .broken = rts_broken,
};

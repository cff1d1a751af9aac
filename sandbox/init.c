/* init.c: the sandbox's pid 1 — sets up the namespaces' insides, then serves spawn requests,
 * reaps every zombie, forwards signals and reports each spawned process's exit. */
#include "sandbox/internal.h"

#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <termios.h>

/* Docker's default capabilities: the most uid 0 inside keeps. */
static const int docker_caps[] = {
    CAP_CHOWN,   CAP_DAC_OVERRIDE, CAP_FSETID,           CAP_FOWNER,
    CAP_MKNOD,   CAP_NET_RAW,      CAP_SETGID,           CAP_SETUID,
    CAP_SETFCAP, CAP_SETPCAP,      CAP_NET_BIND_SERVICE, CAP_SYS_CHROOT,
    CAP_KILL,    CAP_AUDIT_WRITE};

static const int forwarded[] = {SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2};

struct proc {
        pid_t pid;
        int32_t proc_id;
        bool last; /* SBM_F_LAST */
};

struct init_state {
        const struct sb_init_args *a;
        struct proc *procs;
        size_t n_procs, cap_procs;
        struct sbm_exit *pending; /* exit events the socket had no room for */
        size_t n_pending, cap_pending;
        bool done; /* the SBM_F_LAST process exited: exit once its event is sent */
};

_Noreturn static void die_sync(int fd, int code, const char *msg)
{
        struct sb_sync_msg m = {.err = code ? code : EIO};
        snprintf(m.msg, sizeof(m.msg), "%s", msg);
        (void)!send(fd, &m, sizeof(m), MSG_NOSIGNAL);
        _exit(1);
}

static void close_all_except(const int *keep, size_t n)
{
        unsigned lo = 0;
        for (;;) {
                unsigned next = ~0U;
                for (size_t i = 0; i < n; i++)
                        if (keep[i] >= 0 && (unsigned)keep[i] >= lo && (unsigned)keep[i] < next)
                                next = (unsigned)keep[i];
                if (next == ~0U) {
                        syscall(SYS_close_range, lo, ~0U, 0);
                        return;
                }
                if (next > lo)
                        syscall(SYS_close_range, lo, next - 1, 0);
                lo = next + 1;
        }
}

static uint64_t docker_cap_mask(void)
{
        uint64_t m = 0;
        for (size_t i = 0; i < DRV_ARRAY_SIZE(docker_caps); i++)
                m |= 1ULL << docker_caps[i];
        return m;
}

static int set_caps(uint64_t eff_perm)
{
        struct __user_cap_header_struct h = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
        struct __user_cap_data_struct d[2] = {
            {.effective = (uint32_t)eff_perm, .permitted = (uint32_t)eff_perm},
            {.effective = (uint32_t)(eff_perm >> 32), .permitted = (uint32_t)(eff_perm >> 32)}};
        return (int)syscall(SYS_capset, &h, d);
}

/* Find argv0 in the PATH of envp; fills buf. */
static const char *find_exe(const char *argv0, char *const *envp, char *buf, size_t n)
{
        if (strchr(argv0, '/'))
                return argv0;
        const char *path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
        for (char *const *e = envp; *e; e++)
                if (strncmp(*e, "PATH=", 5) == 0)
                        path = *e + 5;
        const char *found = NULL;
        for (const char *p = path;; p++) {
                const char *end = strchrnul(p, ':');
                int len = (int)(end - p);
                snprintf(buf, n, "%.*s%s%s", len, p, len ? "/" : "", argv0);
                if (access(buf, X_OK) == 0) {
                        struct stat st;
                        if (stat(buf, &st) == 0 && S_ISREG(st.st_mode))
                                return buf;
                } else if (!found && errno == EACCES) {
                        found = argv0; /* remember: exists but not executable */
                }
                if (!*end)
                        break;
                p = end;
        }
        errno = found ? EACCES : ENOENT;
        return NULL;
}

_Noreturn static void child_fail(int pipe_fd, int stage)
{
        int32_t m[2] = {errno ? errno : EIO, stage};
        (void)!write(pipe_fd, m, sizeof(m));
        _exit(127);
}

/* The job's processes go before pid 1 when the job runs out of memory. Raising the score needs
 * no privilege, but our /proc files belong to the host's root while we are not dumpable (pid 1's
 * memory is a copy of the supervisor's): dumpable for the one write, while we still hold every
 * capability of the namespace (no job process may ptrace us meanwhile). A failure leaves the
 * inherited score. */
static void raise_oom_score(void)
{
        if (prctl(PR_SET_DUMPABLE, 1, 0, 0, 0) < 0)
                return;
        int fd = open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
        if (fd >= 0) {
                char v[16];
                int n = snprintf(v, sizeof(v), "%d", SANDBOX_JOB_OOM_SCORE_ADJ);
                (void)!write(fd, v, (size_t)n);
                close(fd);
        }
        prctl(PR_SET_DUMPABLE, 0, 0, 0, 0); /* the exec makes it dumpable again (job user) */
}

/* Does inside uid 0 exist (the supervisor's start byte "g"; "s": a rootless single-id map)? Set
 * once by pid 1 before it serves anything. */
static bool root_mapped = true;

/* setgroups(0): drop the supervisor's supplementary groups. Rootless maps written without
 * CAP_SETGID in the parent namespace have setgroups denied by the kernel: the job keeps the
 * user's own groups (unmapped inside, shown as nogroup), no more than the user has. */
static int drop_groups(const struct sb_init_args *a)
{
        if (setgroups(0, NULL) == 0 || (a->rootless && errno == EPERM))
                return 0;
        return -1;
}

/* In the forked child: become the job process and exec. Never returns. */
_Noreturn static void child_exec(const struct sb_init_args *a, const struct sbm_req *rq,
                                 char **argv, char **envp, const char *cwd, const int fds[3],
                                 int pipe_fd)
{
        /* rootless with a single-id map: there is no root inside, "root" runs as the job user */
        bool root = rq->flags & SBM_F_ROOT && root_mapped;
        uid_t uid = root ? 0 : a->uid;
        gid_t gid = root ? 0 : a->gid;
        sigset_t none;
        sigemptyset(&none);
        for (size_t i = 0; i < DRV_ARRAY_SIZE(forwarded); i++)
                signal(forwarded[i], SIG_DFL);
        signal(SIGPIPE, SIG_DFL);
        signal(SIGCHLD, SIG_DFL);
        sigprocmask(SIG_SETMASK, &none, NULL);
        /* steps: a session (and process group) of their own; otherwise the caller's process
         * group, so that an interactive `drover sandbox` stays in the terminal's foreground */
        if (rq->flags & (SBM_F_NEW_SESSION | SBM_F_PTY) && setsid() < 0)
                child_fail(pipe_fd, ST_FDS);
        raise_oom_score();
        /* fds: the three given (or /dev/null) on 0-2, the error pipe high, nothing else */
        int hi[3];
        for (int i = 0; i < 3; i++) {
                int f = fds[i] >= 0 ? fds[i] : open("/dev/null", O_RDWR | O_CLOEXEC);
                if (f < 0 || (hi[i] = fcntl(f, F_DUPFD_CLOEXEC, 100)) < 0)
                        child_fail(pipe_fd, ST_FDS);
        }
        int pfd = fcntl(pipe_fd, F_DUPFD_CLOEXEC, 110);
        if (pfd < 0)
                child_fail(pipe_fd, ST_FDS);
        pipe_fd = pfd;
        for (int i = 0; i < 3; i++)
                if (dup2(hi[i], i) < 0)
                        child_fail(pipe_fd, ST_FDS);
        int keep[] = {0, 1, 2, pipe_fd};
        close_all_except(keep, DRV_ARRAY_SIZE(keep));
        /* a terminal session: the pty becomes the controlling tty, owned by the job user */
        if (rq->flags & SBM_F_PTY &&
            (ioctl(0, TIOCSCTTY, 0) < 0 || fchown(0, uid, (gid_t)-1) < 0 || fchmod(0, 0620) < 0))
                child_fail(pipe_fd, ST_FDS);
        struct rlimit core = {0, 0}, nofile = {1048576, 1048576};
        if (setrlimit(RLIMIT_NOFILE, &nofile) < 0) {
                getrlimit(RLIMIT_NOFILE, &nofile);
                nofile.rlim_cur = nofile.rlim_max;
                setrlimit(RLIMIT_NOFILE, &nofile);
        }
        setrlimit(RLIMIT_CORE, &core);
        if (chdir(cwd) < 0) {
                if (errno != ENOENT || drv_mkdir_p(cwd, 0755, NULL) < 0 ||
                    chown(cwd, uid, gid) < 0 || chdir(cwd) < 0)
                        child_fail(pipe_fd, ST_CWD);
        }
        /* capabilities: bounding set cut to Docker's, ambient cleared */
        uint64_t allowed = docker_cap_mask();
        for (int c = 0; c < 64; c++) {
                if (allowed & (1ULL << c))
                        continue;
                if (prctl(PR_CAPBSET_DROP, c, 0, 0, 0) < 0) {
                        if (errno == EINVAL)
                                break; /* past the last capability */
                        child_fail(pipe_fd, ST_CAPS);
                }
        }
        if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0)
                child_fail(pipe_fd, ST_CAPS);
        if (drop_groups(a) < 0 || setresgid(gid, gid, gid) < 0 || setresuid(uid, uid, uid) < 0)
                child_fail(pipe_fd, ST_IDS);
        /* non-root lost every capability with setresuid; root keeps at most Docker's set */
        if (set_caps(root ? allowed : 0) < 0)
                child_fail(pipe_fd, ST_CAPS);
        if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
                child_fail(pipe_fd, ST_SECCOMP);
        char buf[4096];
        const char *exe = find_exe(argv[0], envp, buf, sizeof(buf));
        if (!exe)
                child_fail(pipe_fd, ST_EXEC);
        /* the seccomp filters are pid 1's, inherited with the fork (install_seccomp) */
        execve(exe, argv, envp);
        child_fail(pipe_fd, ST_EXEC);
}

/* Split the request body into argv / envp (NULL-terminated, pointing into body) and cwd. */
static int parse_spawn(char *body, size_t len, const struct sbm_req *rq, char ***argv, char ***envp,
                       char **cwd)
{
        size_t argc = rq->argc, envc = rq->envc;
        if (argc == 0 || argc > 65536 || envc > 65536)
                return -EINVAL;
        char **v = calloc(argc + envc + 2, sizeof(char *));
        if (!v)
                return -ENOMEM;
        char *p = body, *end = body + len;
        for (size_t k = 0; k < argc + envc + 1; k++) {
                char *z = p < end ? memchr(p, 0, (size_t)(end - p)) : NULL;
                if (!z) {
                        free(v);
                        return -EINVAL;
                }
                if (k < argc)
                        v[k] = p;
                else if (k < argc + envc)
                        v[k + 1] = p;
                else
                        *cwd = p;
                p = z + 1;
        }
        *argv = v;
        *envp = v + argc + 1;
        return 0;
}

/* A new pty pair in the sandbox's own devpts: master (returned) and slave (*slave). */
static int open_pty(uint32_t size, int *slave)
{
        int m = open("/dev/pts/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC);
        if (m < 0)
                return -errno;
        unsigned n = 0, unlock = 0;
        struct winsize ws = {.ws_row = (unsigned short)(size >> 16),
                             .ws_col = (unsigned short)(size & 0xffff)};
        char name[64];
        if (ioctl(m, TIOCSPTLCK, &unlock) < 0 || ioctl(m, TIOCGPTN, &n) < 0 ||
            (size && ioctl(m, TIOCSWINSZ, &ws) < 0))
                goto fail;
        snprintf(name, sizeof(name), "/dev/pts/%u", n);
        if ((*slave = open(name, O_RDWR | O_NOCTTY | O_CLOEXEC)) < 0)
                goto fail;
        return m;
fail:;
        int e = errno;
        close(m);
        return -e;
}

static int do_spawn(struct init_state *s, const struct sbm_req *rq, char *body, size_t len,
                    int fds[3], struct sbm_reply *rep, int *master)
{
        char **argv, **envp, *cwd = NULL;
        int r = parse_spawn(body, len, rq, &argv, &envp, &cwd);
        if (r < 0)
                return r;
        _cleanup_close_ int slave = -1;
        int ptyfds[3];
        if (rq->flags & SBM_F_PTY) {
                if ((*master = open_pty((uint32_t)rq->sig, &slave)) < 0) {
                        free(argv);
                        return *master;
                }
                ptyfds[0] = ptyfds[1] = ptyfds[2] = slave;
                fds = ptyfds;
        }
        if (!*cwd)
                cwd = (char *)s->a->home;
        int p[2];
        if (pipe2(p, O_CLOEXEC) < 0) {
                free(argv);
                return -errno;
        }
        pid_t pid = fork();
        if (pid == 0) {
                close(p[0]);
                child_exec(s->a, rq, argv, envp, cwd, fds, p[1]);
        }
        int e = errno;
        free(argv);
        close(p[1]);
        if (pid < 0) {
                close(p[0]);
                return -e;
        }
        int32_t m[2];
        ssize_t n = DRV_RETRY(read(p[0], m, sizeof(m)));
        close(p[0]);
        rep->pid = pid;
        if (n == (ssize_t)sizeof(m)) {
                rep->stage = m[1];
                return -m[0]; /* failed before exec; reaped (and not reported) later */
        }
        if (s->n_procs == s->cap_procs) {
                size_t nc = s->cap_procs ? s->cap_procs * 2 : 16;
                struct proc *np = realloc(s->procs, nc * sizeof(*np));
                if (!np) {
                        kill(pid, SIGKILL);
                        return -ENOMEM;
                }
                s->procs = np;
                s->cap_procs = nc;
        }
        s->procs[s->n_procs++] = (struct proc){pid, rq->proc_id, (rq->flags & SBM_F_LAST) != 0};
        return 0;
}

static struct proc *find_proc(struct init_state *s, int32_t proc_id)
{
        for (size_t i = 0; i < s->n_procs; i++)
                if (s->procs[i].proc_id == proc_id)
                        return &s->procs[i];
        return NULL;
}

static void handle_request(struct init_state *s, char *buf, size_t len, int fds[3])
{
        struct sbm_req rq;
        struct sbm_reply rep = {0};
        _cleanup_close_ int master = -1;
        if (len < sizeof(rq)) {
                rep.result = -EINVAL;
                goto out;
        }
        memcpy(&rq, buf, sizeof(rq));
        rep.proc_id = rq.proc_id;
        if (rq.type == SBM_SPAWN) {
                rep.result =
                    do_spawn(s, &rq, buf + sizeof(rq), len - sizeof(rq), fds, &rep, &master);
        } else if (rq.type == SBM_SIGNAL) {
                struct proc *p = find_proc(s, rq.proc_id);
                if (!p)
                        rep.result = -ESRCH;
                else if (kill(-p->pid, rq.sig) < 0 && kill(p->pid, rq.sig) < 0)
                        rep.result = -errno;
        } else if (rq.type == SBM_KILLALL) {
                if (kill(-1, SIGKILL) < 0 && errno != ESRCH)
                        rep.result = -errno;
        } else {
                rep.result = -EINVAL;
        }
out:;
        /* a pty spawn hands the master back with its reply */
        union {
                char b[CMSG_SPACE(sizeof(int))];
                struct cmsghdr align;
        } cm;
        struct iovec iov = {&rep, sizeof(rep)};
        struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
        if (rep.result == 0 && master >= 0) {
                memset(&cm, 0, sizeof(cm));
                mh.msg_control = cm.b;
                mh.msg_controllen = sizeof(cm.b);
                struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
                c->cmsg_level = SOL_SOCKET;
                c->cmsg_type = SCM_RIGHTS;
                c->cmsg_len = CMSG_LEN(sizeof(int));
                memcpy(CMSG_DATA(c), &master, sizeof(int));
        }
        (void)!sendmsg(s->a->ctl_fd, &mh, MSG_NOSIGNAL);
}

static void queue_exit(struct init_state *s, const struct sbm_exit *ev)
{
        if (s->n_pending == 0 &&
            send(s->a->ev_fd, ev, sizeof(*ev), MSG_NOSIGNAL | MSG_DONTWAIT) == (ssize_t)sizeof(*ev))
                return;
        if (s->n_pending == s->cap_pending) {
                size_t nc = s->cap_pending ? s->cap_pending * 2 : 64;
                struct sbm_exit *np = realloc(s->pending, nc * sizeof(*np));
                if (!np)
                        return; /* dropped: the supervisor sees it at destroy */
                s->pending = np;
                s->cap_pending = nc;
        }
        s->pending[s->n_pending++] = *ev;
}

static void flush_pending(struct init_state *s)
{
        size_t i = 0;
        for (; i < s->n_pending; i++)
                if (send(s->a->ev_fd, &s->pending[i], sizeof(s->pending[i]),
                         MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
                        break;
        memmove(s->pending, s->pending + i, (s->n_pending - i) * sizeof(*s->pending));
        s->n_pending -= i;
}

static void reap(struct init_state *s)
{
        for (;;) {
                int st;
                struct rusage ru;
                pid_t pid = wait4(-1, &st, WNOHANG, &ru);
                if (pid <= 0)
                        return;
                for (size_t i = 0; i < s->n_procs; i++) {
                        if (s->procs[i].pid != pid)
                                continue;
                        struct sbm_exit ev = {.proc_id = s->procs[i].proc_id,
                                              .status = st,
                                              .cpu_usec = (uint64_t)ru.ru_utime.tv_sec * 1000000 +
                                                          (uint64_t)ru.ru_utime.tv_usec +
                                                          (uint64_t)ru.ru_stime.tv_sec * 1000000 +
                                                          (uint64_t)ru.ru_stime.tv_usec};
                        s->done |= s->procs[i].last;
                        s->procs[i] = s->procs[--s->n_procs];
                        queue_exit(s, &ev);
                        break;
                }
        }
}

/* Read one request from the supervisor and answer it. */
static void read_request(struct init_state *s, char *buf, size_t bufsz)
{
        union {
                char b[CMSG_SPACE(3 * sizeof(int))];
                struct cmsghdr align;
        } cm;
        struct iovec iov = {buf, bufsz};
        struct msghdr mh = {
            .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cm.b, .msg_controllen = sizeof(cm.b)};
        ssize_t n = recvmsg(s->a->ctl_fd, &mh, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
        if (n == 0)
                _exit(0); /* supervisor gone: pid 1 exits, the kernel kills all */
        if (n < 0)
                return;
        int got[3] = {-1, -1, -1}, fds[3] = {-1, -1, -1}, ng = 0;
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c))
                if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
                        ng = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
                        memcpy(got, CMSG_DATA(c), (size_t)ng * sizeof(int));
                }
        uint32_t flags = 0;
        if ((size_t)n >= sizeof(struct sbm_req))
                memcpy(&flags, buf + offsetof(struct sbm_req, flags), sizeof(flags));
        for (int i = 0, k = 0; i < 3; i++)
                if (flags & (SBM_F_STDIN << i) && k < ng)
                        fds[i] = got[k++];
        handle_request(s, buf, (size_t)n, fds);
        for (int i = 0; i < ng; i++)
                close(got[i]);
}

_Noreturn static void serve(struct init_state *s, int sfd)
{
        size_t bufsz = SBM_MAX + sizeof(struct sbm_req);
        char *buf = malloc(bufsz);
        if (!buf)
                _exit(1);
        for (;;) {
                struct pollfd pf[3] = {{s->a->ctl_fd, POLLIN, 0},
                                       {sfd, POLLIN, 0},
                                       {s->a->ev_fd, s->n_pending ? POLLOUT : 0, 0}};
                if (poll(pf, 3, -1) < 0)
                        continue;
                if (pf[1].revents & POLLIN) {
                        struct signalfd_siginfo si;
                        while (read(sfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
                                if (si.ssi_signo == SIGCHLD)
                                        continue;
                                for (size_t i = 0; i < s->n_procs; i++)
                                        kill(-s->procs[i].pid, (int)si.ssi_signo);
                        }
                        reap(s);
                }
                if (pf[2].revents & POLLOUT)
                        flush_pending(s);
                /* one-shot use: the sandbox ends with its process; exiting here (the kernel
                 * kills what is left in the pid namespace) overlaps the namespaces' teardown with
                 * the supervisor reading the exit, instead of waiting for its SIGKILL */
                if (s->done && s->n_pending == 0)
                        _exit(0);
                if (pf[2].revents & (POLLHUP | POLLERR))
                        _exit(0);
                if (pf[0].revents & (POLLIN | POLLHUP | POLLERR))
                        read_request(s, buf, bufsz);
        }
}

/* The job's seccomp filters, installed once in pid 1 when its setup is done: every process it
 * forks inherits them (installing them per spawn cost 0.1-0.4 ms of BPF JIT each time). pid 1's
 * own loop (poll, socket messages, fork, kill, wait4, ptys) and what a child does before exec
 * (ids, capabilities, rlimits, execve) are all in the allow-list. The allow-list, then the
 * exceptions inside it: the kernel runs both, the most restrictive answer wins. */
static int install_seccomp(const struct sb_bpf *bpf)
{
        struct sock_fprog allow = {.len = bpf->len, .filter = bpf->insns};
        struct sock_fprog deny = {.len = bpf->deny_len, .filter = bpf->deny_insns};
        if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 ||
            prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &allow, 0, 0) < 0 ||
            prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &deny, 0, 0) < 0)
                return -1;
        return 0;
}

/* pid 1 is a copy of the supervisor: rename it and blank the supervisor's command line, which
 * /proc/1/cmdline would show to the job. */
static void hide_supervisor(void)
{
        char buf[1024];
        prctl(PR_SET_NAME, "drover-init", 0, 0, 0);
        int fd = open("/proc/self/stat", O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return;
        ssize_t n = read(fd, buf, sizeof(buf) - 1);
        close(fd);
        if (n <= 0)
                return;
        buf[n] = 0;
        char *p = strrchr(buf, ')');
        unsigned long start = 0, end = 0;
        /* after ")": field 3 onwards; arg_start/arg_end are fields 48 and 49 */
        for (int field = 2; p && *p && field < 49; field++) {
                p = strchr(p + 1, ' ');
                if (p && field + 1 == 48)
                        start = strtoul(p + 1, NULL, 10);
                if (p && field + 1 == 49)
                        end = strtoul(p + 1, NULL, 10);
        }
        if (start && end > start + 12) {
                memset((void *)start, 0, end - start);
                memcpy((void *)start, "drover-init", 12);
        }
}

_Noreturn void sb_init_main(const struct sb_init_args *a)
{
        struct drv_error err = {0};
        char byte;
        prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
        /* the job must not read pid 1's memory (a copy of the supervisor's) via /proc/1/mem.
         * Rootless, the supervisor itself needs pid 1's /proc files (root, ns/net for pasta and
         * services), which a non-dumpable process keeps from anybody without CAP_SYS_PTRACE on
         * the host; there pid 1 stays dumpable and its full capability set (which no job
         * process has) is what keeps the job from tracing or reading it (ptrace's subset rule,
         * tested by the rootless escape suite). */
        if (!a->rootless)
                prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
        {
                /* nothing of the supervisor's leaks in: keep only what pid 1 uses */
                size_t nl = 0, n = 0;
                for (int *f = a->lower_fds; f && *f >= 0; f++)
                        nl++;
                for (int *f = a->host_fds; f && *f >= 0; f++)
                        nl++;
                int *keep = malloc((4 + nl + a->cfg->n_binds) * sizeof(int));
                if (!keep)
                        _exit(1);
                keep[n++] = a->sync_fd;
                keep[n++] = a->ctl_fd;
                keep[n++] = a->ev_fd;
                keep[n++] = a->rootfs_fd;
                for (int *f = a->lower_fds; f && *f >= 0; f++)
                        keep[n++] = *f;
                for (int *f = a->host_fds; f && *f >= 0; f++)
                        keep[n++] = *f;
                for (size_t i = 0; a->bind_fds && i < a->cfg->n_binds; i++)
                        keep[n++] = a->bind_fds[i];
                close_all_except(keep, n);
                free(keep);
        }
        if (DRV_RETRY(read(a->sync_fd, &byte, 1)) != 1)
                _exit(1); /* supervisor gave up */
        root_mapped = byte == 'g';
        /* rootless: the host paths are opened with the user's own rights, while we have them */
        if (a->rootless && sb_open_paths(a->cfg, (struct sb_init_args *)a, &err) < 0)
                die_sync(a->sync_fd, err.code, err.message);
        /* without a root inside (rootless single-id map) pid 1 stays the job user, keeping the
         * capabilities it was born with in its user namespace */
        if (root_mapped && (setresgid(0, 0, 0) < 0 || setresuid(0, 0, 0) < 0))
                die_sync(a->sync_fd, errno, "become root in the user namespace");
        if (drop_groups(a) < 0)
                die_sync(a->sync_fd, errno, "drop the supplementary groups");
        /* (a change of ids made us non-dumpable: see above) */
        if (a->rootless)
                prctl(PR_SET_DUMPABLE, 1, 0, 0, 0);
        if (sethostname(a->hostname, strlen(a->hostname)) < 0)
                die_sync(a->sync_fd, errno, "sethostname");
        if (!a->cfg || (a->cfg->net == SANDBOX_NET_NONE && !a->cfg->join_netns_of) ||
            (a->rootless && a->lo_up)) {
                if (sb_net_loopback_up() < 0)
                        die_sync(a->sync_fd, errno, "bring lo up");
        }
        if (sb_rootfs_build(a, &err) < 0)
                die_sync(a->sync_fd, err.code, err.message);
        /* last: cfg strings may point into the command line it blanks */
        hide_supervisor();
        /* wait until we are in the job cgroup (and the network is made): the cgroup namespace
         * is rooted there */
        if (DRV_RETRY(read(a->sync_fd, &byte, 1)) != 1)
                _exit(1);
        if (unshare(CLONE_NEWCGROUP) < 0)
                die_sync(a->sync_fd, errno, "unshare cgroup namespace");
        for (int *f = a->lower_fds; f && *f >= 0; f++)
                close(*f);
        for (int *f = a->host_fds; f && *f >= 0; f++)
                close(*f);
        for (size_t i = 0; i < a->cfg->n_binds; i++)
                close(a->bind_fds[i]);
        if (a->rootfs_fd >= 0)
                close(a->rootfs_fd);
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, SIGCHLD);
        for (size_t i = 0; i < DRV_ARRAY_SIZE(forwarded); i++)
                sigaddset(&set, forwarded[i]);
        signal(SIGPIPE, SIG_IGN);
        sigprocmask(SIG_BLOCK, &set, NULL);
        int sfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
        if (sfd < 0)
                die_sync(a->sync_fd, errno, "signalfd");
        if (a->bpf && install_seccomp(a->bpf) < 0)
                die_sync(a->sync_fd, errno, "install the seccomp profile");
        struct init_state s = {.a = a};
        /* a spawn queued with the creation (sandbox_create_spawn): answer it before "ready", so
         * that the supervisor wakes once for both */
        char peek;
        if (recv(a->ctl_fd, &peek, 1, MSG_PEEK | MSG_DONTWAIT) == 1) {
                char *buf = malloc(SBM_MAX + sizeof(struct sbm_req));
                if (!buf)
                        _exit(1);
                read_request(&s, buf, SBM_MAX + sizeof(struct sbm_req));
                free(buf);
        }
        struct sb_sync_msg ok = {0};
        if (send(a->sync_fd, &ok, sizeof(ok), MSG_NOSIGNAL) < 0)
                _exit(1);
        close(a->sync_fd);
        serve(&s, sfd);
}

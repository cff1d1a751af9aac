/* docker_proxy.c: the API proxy process of setup_remote_docker — started by the supervisor as
 * `drover __docker-proxy` (hidden; fork + execveat of drover's own image, as the pumps are, since
 * the supervisor may have threads), it binds the job's socket, creates the job's network, and
 * forks one child per connection; the supervisor kills its process group at the job's end and
 * removes what the job left on the engine. */
#include "agent/commands.h"
#include "executor/docker/docker_proxy_int.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/fsuid.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>

extern char **environ;

struct docker_proxy {
        pid_t pid;
        int own_fd;
        char *label;
        struct docker *engine; /* a connection of the supervisor's own, for the cleanup */
};

/* ---- the supervisor's side ---- */

static int describe(const struct docker_proxy_opts *o, const char *net, struct strbuf *sb)
{
        char uid[16], gid[16], lvl[4];
        snprintf(uid, sizeof(uid), "%u", (unsigned)o->uid);
        snprintf(gid, sizeof(gid), "%u", (unsigned)o->gid);
        snprintf(lvl, sizeof(lvl), "%d", (int)drv_log_get_level());
        if (rtdocker_desc_put_conn(sb, o->engine) < 0 ||
            rtdocker_desc_put(sb, "label", o->label) < 0 || rtdocker_desc_put(sb, "net", net) < 0 ||
            rtdocker_desc_put(sb, "uid", uid) < 0 || rtdocker_desc_put(sb, "gid", gid) < 0 ||
            rtdocker_desc_put(sb, "log", lvl) < 0)
                return -ENOMEM;
        return 0;
}

/* The forked child: async-signal-safe calls only. src: DESC, DIR, READY, OWN, EXE. */
static _Noreturn void child_exec(const int *src, char *const *argv)
{
        int tmp[DPROXY_FD_EXE - DPROXY_FD_DESC + 1];
        (void)setpgid(0, 0); /* the supervisor ends the proxy and its connections as one group */
        for (int i = 0; i <= DPROXY_FD_EXE - DPROXY_FD_DESC; i++)
                tmp[i] = fcntl(src[i], F_DUPFD, DPROXY_FD_EXE + 1);
        for (int i = 0; i <= DPROXY_FD_EXE - DPROXY_FD_DESC; i++)
                (void)dup2(tmp[i], DPROXY_FD_DESC + i);
        (void)fcntl(DPROXY_FD_EXE, F_SETFD, FD_CLOEXEC);
        syscall(SYS_close_range, DPROXY_FD_EXE + 1, ~0U, 0);
        syscall(SYS_execveat, DPROXY_FD_EXE, "", argv, environ, AT_EMPTY_PATH);
        (void)!write(DPROXY_FD_READY, "cannot exec drover", 18);
        _exit(127);
}

/* Wait for the proxy's "ok\n" (or its error) on the ready pipe. */
static int wait_ready(int rd, struct drv_error *err)
{
        char buf[512];
        size_t len = 0;
        uint64_t deadline = drv_now_ns() + 30ULL * 1000000000ULL;
        for (;;) {
                struct pollfd p = {rd, POLLIN, 0};
                int64_t left = (int64_t)(deadline - drv_now_ns()) / 1000000;
                if (left <= 0)
                        return drv_err(err, ETIMEDOUT, "the Docker API proxy did not start");
                if (DRV_RETRY(poll(&p, 1, (int)left)) < 0)
                        return drv_err_errno(err, "poll");
                ssize_t n = DRV_RETRY(read(rd, buf + len, sizeof(buf) - 1 - len));
                if (n < 0)
                        return drv_err_errno(err, "the Docker API proxy's pipe");
                len += (size_t)n;
                buf[len] = 0;
                if (strcmp(buf, "ok\n") == 0)
                        return 0;
                if (n == 0 || len == sizeof(buf) - 1)
                        return drv_err(err, EIO, "the Docker API proxy: %s",
                                       len ? buf : "ended before listening");
        }
}

int docker_proxy_start(const struct docker_proxy_opts *o, struct docker_proxy **out,
                       struct drv_error *err)
{
        uint32_t rnd = 0;
        if (getrandom(&rnd, sizeof(rnd), 0) < 0)
                rnd = (uint32_t)getpid() ^ (uint32_t)drv_now_ns();
        char net[32];
        snprintf(net, sizeof(net), "drover-rd-%08x", rnd);
        _cleanup_strbuf_ struct strbuf sb = STRBUF_INIT;
        if (describe(o, net, &sb) < 0)
                return drv_err(err, ENOMEM, "out of memory");
        _cleanup_close_ int desc = memfd_create("drover-proxy", MFD_CLOEXEC);
        _cleanup_close_ int own = memfd_create("drover-proxy-own", MFD_CLOEXEC);
        if (desc < 0 || own < 0)
                return drv_err_errno(err, "memfd_create");
        int r = drv_write_all(desc, sb.buf, sb.len);
        explicit_bzero(sb.buf, sb.len); /* the client key */
        if (r < 0 || lseek(desc, 0, SEEK_SET) < 0 || fcntl(own, F_SETFL, O_APPEND) < 0)
                return drv_err_errno(err, "the Docker API proxy's description");
        _cleanup_close_ int exe = rtdocker_self_open(err);
        if (exe < 0)
                return exe;
        int pfd[2];
        if (pipe2(pfd, O_CLOEXEC) < 0)
                return drv_err_errno(err, "pipe");
        _cleanup_close_ int rd = pfd[0], wr = pfd[1];
        _cleanup_free_ struct docker_proxy *p = calloc(1, sizeof(*p));
        if (!p || !(p->label = strdup(o->label)))
                return drv_err(err, ENOMEM, "out of memory");
        if ((r = docker_dup(o->engine, &p->engine, err)) < 0) {
                free(p->label);
                return r;
        }
        char *const argv[] = {(char *)"drover", (char *)DPROXY_CMD, NULL};
        const int src[] = {desc, o->dirfd, wr, own, exe};
        pid_t c = fork();
        if (c < 0) {
                docker_close(p->engine);
                free(p->label);
                return drv_err_errno(err, "fork");
        }
        if (c == 0)
                child_exec(src, argv);
        (void)setpgid(c, c); /* whichever of the two runs first */
        p->pid = c;
        p->own_fd = TAKE_FD(own);
        close(TAKE_FD(wr));
        if ((r = wait_ready(rd, err)) < 0) {
                struct drv_error e = {0};
                docker_proxy_stop(TAKE_PTR(p), &e);
                return r;
        }
        log_info("docker_proxy_started", "pid=%d label=%s", (int)c, o->label);
        *out = TAKE_PTR(p);
        return 0;
}

/* Tags the job made ("t REF" lines of the shared file): removed (untagged) at the end. */
static void untag(struct docker_proxy *p)
{
        _cleanup_free_ char *text = NULL;
        size_t len = 0;
        struct drv_error e = {0};
        if (lseek(p->own_fd, 0, SEEK_SET) < 0 ||
            drv_read_fd(p->own_fd, &text, &len, 1 << 22, &e) < 0)
                return;
        for (char *line = text, *nl; line && *line; line = nl ? nl + 1 : NULL) {
                nl = strchr(line, '\n');
                if (nl)
                        *nl = 0;
                if (!drv_startswith(line, "t "))
                        continue;
                /* the proxy wrote only references it checked (dproxy_ref_ok) */
                _cleanup_free_ char *path = drv_asprintf("/images/%s?noprune=1", line + 2);
                if (path && docker_call(p->engine, "DELETE", path, NULL, NULL, NULL, &e) < 0 &&
                    e.code != ENOENT)
                        log_warn("docker_proxy_untag_failed", "ref=%s error=\"%s\"", line + 2,
                                 e.message);
        }
}

int docker_proxy_stop(struct docker_proxy *p, struct drv_error *err)
{
        if (!p)
                return 0;
        if (p->pid > 0) {
                (void)kill(-p->pid, SIGKILL);
                (void)kill(p->pid, SIGKILL);
                (void)DRV_RETRY(waitpid(p->pid, NULL, 0));
        }
        untag(p);
        unsigned removed = 0;
        int r = docker_cleanup(p->engine, p->label, &removed, err);
        log_info("docker_proxy_stopped", "label=%s removed=%u", p->label, removed);
        docker_close(p->engine);
        if (p->own_fd >= 0)
                close(p->own_fd);
        free(p->label);
        free(p);
        return r;
}

/* ---- the proxy process: `drover __docker-proxy` ---- */

/* Tell the supervisor why the proxy cannot serve (errnum 0: what alone). */
static int ready_fail(const char *what, int errnum)
{
        char msg[400];
        snprintf(msg, sizeof(msg), "%s%s%s", what, errnum ? ": " : "",
                 errnum ? strerror(errnum) : "");
        (void)!write(DPROXY_FD_READY, msg, strlen(msg));
        return 3;
}

/* Bind the socket in the job's directory as the job user (only it may connect: 0600). */
static int listen_in_job(uid_t uid, gid_t gid)
{
        if (fchdir(DPROXY_FD_DIR) < 0)
                return -errno;
        close(DPROXY_FD_DIR);
        umask(0177);
        int ofsgid = setfsgid(gid), ofsuid = setfsuid(uid);
        (void)unlink(DPROXY_SOCK_NAME);
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_un a = {.sun_family = AF_UNIX, .sun_path = DPROXY_SOCK_NAME};
        int r = fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(fd, 64) < 0
                    ? -errno
                    : 0;
        setfsuid((uid_t)ofsuid);
        setfsgid((gid_t)ofsgid);
        if (chdir("/") < 0 || r < 0) {
                int saved = r < 0 ? r : -errno;
                if (fd >= 0)
                        close(fd);
                return saved;
        }
        return fd;
}

static void accept_loop(const struct dproxy *px, int lfd)
{
        unsigned live = 0;
        for (;;) {
                while (live > 0 && waitpid(-1, NULL, live >= DPROXY_MAX_CONNS ? 0 : WNOHANG) > 0)
                        live--;
                struct pollfd p = {lfd, POLLIN, 0};
                if (DRV_RETRY(poll(&p, 1, 1000)) <= 0)
                        continue;
                int c = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
                if (c < 0)
                        continue;
                pid_t pid = fork();
                if (pid == 0) {
                        close(lfd);
                        (void)prctl(PR_SET_PDEATHSIG, SIGKILL);
                        dproxy_serve(px, c);
                        _exit(0);
                }
                close(c);
                if (pid > 0)
                        live++;
        }
}

static int proxy_main(const struct rtdocker_desc_rec *rec, size_t n)
{
        struct dproxy px = {.label = rtdocker_desc_get(rec, n, "label"),
                            .net = rtdocker_desc_get(rec, n, "net"),
                            .own_fd = DPROXY_FD_OWN};
        rtdocker_desc_conn(rec, n, &px.conn);
        px.node = px.conn.node ?: "";
        const char *uid = rtdocker_desc_get(rec, n, "uid"), *gid = rtdocker_desc_get(rec, n, "gid");
        const char *lvl = rtdocker_desc_get(rec, n, "log");
        if (!px.label || !px.net || !uid || !gid)
                return ready_fail("the description lacks label, net, uid or gid", 0);
        if (lvl)
                drv_log_set_level((enum drv_log_level)atoi(lvl));
        int lfd = listen_in_job((uid_t)atol(uid), (gid_t)atol(gid));
        if (lfd < 0)
                return ready_fail("cannot listen on the job's socket", -lfd);
        struct docker *d = NULL;
        struct drv_error e = {0};
        _cleanup_free_ char *net_id = NULL;
        if (docker_from_conn(&px.conn, &d, &e) < 0 ||
            docker_network_create(d, px.net, px.label, &net_id, &e) < 0) {
                docker_close(d);
                return ready_fail(e.message, 0);
        }
        docker_close(d);
        (void)!write(DPROXY_FD_READY, "ok\n", 3);
        close(DPROXY_FD_READY);
        accept_loop(&px, lfd);
        return 0;
}

int cmd_docker_proxy(int argc, char **argv)
{
        (void)argv;
        struct stat st;
        if (argc != 1 || fstat(DPROXY_FD_DESC, &st) < 0 || !S_ISREG(st.st_mode) ||
            fcntl(DPROXY_FD_READY, F_GETFD) < 0 || fcntl(DPROXY_FD_OWN, F_GETFD) < 0) {
                fprintf(stderr,
                        "drover %s: an internal command of setup_remote_docker, which "
                        "starts it with its file descriptors; not for use by hand\n",
                        DPROXY_CMD);
                return 2;
        }
        (void)prctl(PR_SET_PDEATHSIG, SIGKILL); /* the supervisor died: so does the proxy */
        (void)prctl(PR_SET_DUMPABLE, 0);        /* it holds the engine's key */
        _cleanup_free_ char *text = NULL;
        size_t len = 0;
        struct drv_error e = {0};
        if (drv_read_fd(DPROXY_FD_DESC, &text, &len, 1 << 20, &e) < 0)
                return ready_fail(e.message, 0);
        close(DPROXY_FD_DESC);
        struct rtdocker_desc_rec rec[32];
        size_t n = 0;
        if (rtdocker_desc_parse(text, len, rec, DRV_ARRAY_SIZE(rec), &n) < 0)
                return ready_fail("bad description", 0);
        return proxy_main(rec, n);
}

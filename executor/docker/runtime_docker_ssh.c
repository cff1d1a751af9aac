/* runtime_docker_ssh.c: SSH rerun sessions on the docker runtime — an exec with stdin attached
 * (on the engine's terminal when asked), pumped by a child process like steps are; window
 * resizes through the engine's exec resize endpoint. Port forwarding: runtime_docker_fwd.c. */
#include "executor/docker/runtime_docker_int.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>

struct pump_io {
        bool tty;
        int in;       /* from the SSH side: stdin bytes (tty: the socketpair end) */
        int out, err; /* to the SSH side (tty: out is the socketpair end, err -1) */
        unsigned short rows, cols;
};

static int to_fd(void *ud, int stream, const void *p, size_t n)
{
        const struct pump_io *io = ud;
        int fd = stream == 2 && io->err >= 0 ? io->err : io->out;
        (void)drv_write_all(fd, p, n); /* a reader gone: drop, keep draining the stream */
        return 0;
}

static void resize(struct docker *base, const char *exec_id, unsigned short rows,
                   unsigned short cols)
{
        struct docker *d = NULL;
        struct drv_error e = {0};
        _cleanup_free_ char *path = drv_asprintf("/exec/%s/resize?h=%u&w=%u", exec_id, rows, cols);
        if (path && docker_dup(base, &d, &e) == 0)
                (void)docker_call(d, "POST", path, NULL, NULL, NULL, &e);
        docker_close(d);
}

int rtdocker_stdin_step(struct docker *d, int in_fd, struct rtdocker_stdin *si, bool half_close)
{
        if (si->len == 0 && !si->eof) {
                ssize_t n = DRV_RETRY(read(in_fd, si->buf, sizeof(si->buf)));
                if (n <= 0) {
                        si->eof = true;
                        if (half_close)
                                docker_attach_close_write(d);
                        return n == 0 ? 0 : -ECONNRESET;
                }
                si->len = (size_t)n;
                si->off = 0;
        }
        if (si->len == 0)
                return 0;
        ssize_t s = docker_attach_send_some(d, si->buf + si->off, si->len - si->off);
        if (s == -EAGAIN)
                return 0;
        if (s < 0)
                return -EPIPE;
        si->off += (size_t)s;
        if (si->off == si->len)
                si->len = si->off = 0;
        return 0;
}

/* Move bytes both ways until the exec's stream ends; 0, or -1 when it failed. */
static int pump_loop(struct docker *d, struct pump_io *io, struct strbuf *early)
{
        struct docker_demux dm = {0};
        char buf[32768];
        static struct rtdocker_stdin si; /* one per pump process */
        if (early->len) {
                if (io->tty)
                        (void)drv_write_all(io->out, early->buf, early->len);
                else
                        (void)docker_demux_feed(&dm, early->buf, early->len, to_fd, io);
        }
        for (;;) {
                bool reading = !si.eof && si.len == 0;
                struct pollfd pf[2] = {
                    {docker_attach_fd(d), (short)(POLLIN | (si.len ? POLLOUT : 0)), 0},
                    {reading ? io->in : -1, POLLIN, 0}};
                if (DRV_RETRY(poll(pf, 2, -1)) < 0)
                        return -1;
                while (pf[0].revents & ~POLLOUT) {
                        ssize_t n = docker_attach_recv(d, buf, sizeof(buf));
                        if (n == -EAGAIN)
                                break;
                        if (n <= 0)
                                return n == 0 ? 0 : -1;
                        if (io->tty)
                                (void)drv_write_all(io->out, buf, (size_t)n);
                        else
                                (void)docker_demux_feed(&dm, buf, (size_t)n, to_fd, io);
                }
                if (((si.len && (pf[0].revents & POLLOUT)) || (reading && pf[1].revents)) &&
                    rtdocker_stdin_step(d, io->in, &si, !io->tty) == -EPIPE)
                        return -1;
        }
}

/* The session pump (a pump process): stdin in, output out until the exec ends; its exit code on
 * report. */
void rtdocker_pump_session(struct docker *base, const struct rtdocker_pump *p)
{
        struct pump_io io = {.tty = p->tty,
                             .in = p->in,
                             .out = p->out,
                             .err = p->tty ? -1 : p->err,
                             .rows = p->rows,
                             .cols = p->cols};
        signal(SIGPIPE, SIG_IGN);
        struct rtdocker_exit_rec rec = {p->proc, -1};
        struct docker *d = NULL;
        struct drv_error e = {0};
        _cleanup_strbuf_ struct strbuf early = STRBUF_INIT;
        if (docker_dup(base, &d, &e) == 0 &&
            docker_attach_start(d, p->exec_id, io.tty, &early, &e) == 0) {
                if (io.tty && io.rows && io.cols)
                        resize(base, p->exec_id, io.rows, io.cols);
                int r = pump_loop(d, &io, &early);
                docker_close(d);
                d = NULL;
                struct docker_exec_state st;
                if (r == 0 && docker_dup(base, &d, &e) == 0 &&
                    docker_exec_wait(d, p->exec_id, &st, &e) == 0)
                        rec.code = st.exit_code;
        }
        if (rec.code < 0)
                log_error("docker_session_failed", "host=%s error=\"%s\"", docker_host_name(base),
                          e.message[0] ? e.message : "stream failed");
        docker_close(d);
        (void)drv_write_all(p->report, &rec, sizeof(rec));
}

int rtdocker_spawn_session(struct rtdocker *rt, const struct runtime_session_exec *ex, int *proc,
                           int *pty_master, struct drv_error *err)
{
        int r = rtdocker_sync_back(rt, err);
        if (r < 0)
                return r;
        if (rt->n_procs >= DRV_ARRAY_SIZE(rt->procs))
                return drv_err(err, EMFILE, "too many processes in one job");
        int id = (int)rt->n_procs + 1;
        /* as steps: the pid file (signals), the working directory, then the command */
        _cleanup_free_ char *script =
            drv_asprintf("echo $$ >/tmp/.drover-pid-%d || exit 1; mkdir -p \"$1\" 2>/dev/null; "
                         "cd \"$1\" || exit 1; shift; exec \"$@\"",
                         id);
        _cleanup_strv_ char **argv = NULL;
        if (!script || drv_strv_push(&argv, "/bin/sh") < 0 || drv_strv_push(&argv, "-c") < 0 ||
            drv_strv_push(&argv, script) < 0 || drv_strv_push(&argv, "drover-session") < 0 ||
            drv_strv_push(&argv, ex->cwd ? ex->cwd : rt->home) < 0)
                return drv_err(err, ENOMEM, "out of memory");
        for (const char *const *a = ex->argv; *a; a++)
                if (drv_strv_push(&argv, *a) < 0)
                        return drv_err(err, ENOMEM, "out of memory");
        char *exec_id = NULL;
        r = docker_exec_create_attached(rt->d, rt->primary, argv, (char *const *)ex->envp, ex->pty,
                                        &exec_id, err);
        if (r < 0)
                return r;
        int sp[2] = {-1, -1};
        struct rtdocker_exit_rec fail = {id, -1};
        struct rtdocker_pump pp = {.kind = "session",
                                   .proc = id,
                                   .exec_id = exec_id,
                                   .tty = ex->pty,
                                   .rows = ex->rows,
                                   .cols = ex->cols,
                                   .report = rt->exit_wr,
                                   .in = ex->in_fd,
                                   .out = ex->out_fd,
                                   .err = ex->err_fd,
                                   .fail = &fail,
                                   .fail_len = sizeof(fail)};
        if (ex->pty) {
                if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) < 0) {
                        free(exec_id);
                        return drv_err_errno(err, "socketpair");
                }
                pp.in = pp.out = sp[1];
                pp.err = -1;
        }
        pid_t pid;
        if ((r = rtdocker_pump_spawn(rt, &pp, &pid, err)) < 0) {
                free(exec_id);
                if (sp[0] >= 0) {
                        close(sp[0]);
                        close(sp[1]);
                }
                return r;
        }
        if (ex->pty) {
                close(sp[1]);
                *pty_master = sp[0];
        }
        rt->procs[rt->n_procs++] =
            (struct rtdocker_proc){.id = id, .child = pid, .exec_id = exec_id};
        *proc = id;
        return 0;
}

int rtdocker_resize_session(struct rtdocker *rt, int proc, unsigned short rows, unsigned short cols)
{
        for (size_t i = 0; i < rt->n_procs; i++) {
                struct rtdocker_proc *p = &rt->procs[i];
                if (p->id != proc || !p->exec_id || p->done)
                        continue;
                _cleanup_free_ char *path =
                    drv_asprintf("/exec/%s/resize?h=%u&w=%u", p->exec_id, rows, cols);
                struct drv_error e = {0};
                return path ? docker_call(rt->d, "POST", path, NULL, NULL, NULL, &e) : -ENOMEM;
        }
        return -ESRCH;
}

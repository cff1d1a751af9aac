/* runtime_docker_fwd.c: `ssh -L` on the docker runtime. Each forward is an exec of
 * drover-docker-helper `connect HOST PORT` in the primary container — so the connection is made
 * from inside the job's network (localhost is the job's, service names resolve as for steps) —
 * with stdin attached. A child process pumps that exec's stream to one end of a socketpair; the
 * other end is the fd the SSH channel gets. The helper's first frame says whether the connect
 * worked, and connect_tcp waits for it: a refused connect is a refused channel. */
#include "executor/docker/runtime_docker_int.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>

#define FWD_ANSWER_MS 30000 /* the helper's own connect gives up after 10 s */

/* What the pump child tells connect_tcp, once. */
struct fwd_status {
        int code; /* 0: connected, else an errno */
        char msg[256];
};

struct fwd_pump {
        int sock;      /* the pump's end of the socketpair */
        int status_fd; /* -1 once reported */
        struct rtdocker_frames fr;
        char word[256]; /* payload of a C or E frame */
        size_t word_len;
        char said[256]; /* the exec's stderr (an engine's or the kernel's complaint) */
        size_t said_len;
        long relay_pid;
        bool out_shut; /* the server's EOF passed on */
        bool hung_up;  /* the channel's side is gone */
        bool broken;   /* not the helper's frames */
};

static void report(struct fwd_pump *fp, int code, const char *msg)
{
        if (fp->status_fd < 0)
                return;
        struct fwd_status st = {.code = code};
        snprintf(st.msg, sizeof(st.msg), "%s", msg);
        (void)drv_write_all(fp->status_fd, &st, sizeof(st));
        close(fp->status_fd);
        fp->status_fd = -1;
}

static void keep_text(char *buf, size_t cap, size_t *len, const void *p, size_t n)
{
        size_t k = n < cap - 1 - *len ? n : cap - 1 - *len;
        if (k == 0) /* an empty frame's p is NULL */
                return;
        memcpy(buf + *len, p, k);
        *len += k;
        buf[*len] = '\0';
}

static int on_frame(void *ud, int type, const void *p, size_t n, bool end)
{
        struct fwd_pump *fp = ud;
        switch (type) {
        case DKH_CONNECTED:
        case DKH_ERROR:
                keep_text(fp->word, sizeof(fp->word), &fp->word_len, p, n);
                if (end && type == DKH_CONNECTED) {
                        fp->relay_pid = strtol(fp->word, NULL, 10);
                        report(fp, 0, "");
                } else if (end) {
                        report(fp, ECONNREFUSED, fp->word);
                }
                if (end)
                        fp->word_len = 0;
                return 0;
        case DKH_DATA:
                if (!fp->hung_up && drv_write_all(fp->sock, p, n) < 0)
                        fp->hung_up = true; /* EPIPE: the channel closed its fd */
                return 0;
        default: /* DKH_EOF */
                shutdown(fp->sock, SHUT_WR);
                fp->out_shut = true;
                return 0;
        }
}

static int on_stream(void *ud, int stream, const void *p, size_t n)
{
        struct fwd_pump *fp = ud;
        if (stream != 1 || fp->broken) {
                keep_text(fp->said, sizeof(fp->said), &fp->said_len, p, n);
                return 0;
        }
        if (rtdocker_frames_feed(&fp->fr, p, n, on_frame, fp) == -EPROTO) {
                fp->broken = true;
                keep_text(fp->said, sizeof(fp->said), &fp->said_len, p, n);
        }
        return 0;
}

/* One round of the engine's stream: false when it ended (the helper exited) or failed. */
static bool from_engine(struct docker *d, struct docker_demux *dm, struct fwd_pump *fp)
{
        char buf[32768];
        for (;;) {
                ssize_t n = docker_attach_recv(d, buf, sizeof(buf));
                if (n == -EAGAIN)
                        return true;
                if (n <= 0)
                        return false;
                (void)docker_demux_feed(dm, buf, (size_t)n, on_stream, fp);
        }
}

/* Until the exec's stream ends, or the channel hangs up. The client's EOF ends the helper's
 * stdin, which then shuts the socket's write side. */
static void fwd_loop(struct docker *d, struct fwd_pump *fp, struct strbuf *early)
{
        struct docker_demux dm = {0};
        static struct rtdocker_stdin si; /* one per pump process */
        (void)docker_demux_feed(&dm, early->buf, early->len, on_stream, fp);
        while (!fp->hung_up && !fp->broken) {
                /* after both halves are shut the socket always polls HUP: stop watching it */
                bool watch = !(si.eof && fp->out_shut);
                bool reading = !si.eof && si.len == 0;
                struct pollfd pf[2] = {
                    {docker_attach_fd(d), (short)(POLLIN | (si.len ? POLLOUT : 0)), 0},
                    {watch ? fp->sock : -1, reading ? POLLIN : 0, 0}};
                if (DRV_RETRY(poll(pf, 2, -1)) < 0)
                        return;
                if ((pf[0].revents & ~POLLOUT) && !from_engine(d, &dm, fp))
                        return; /* the helper ended */
                if ((si.len && (pf[0].revents & POLLOUT)) ||
                    (reading && (pf[1].revents & (POLLIN | POLLHUP | POLLERR)))) {
                        int r = rtdocker_stdin_step(d, fp->sock, &si, true);
                        if (r == -EPIPE)
                                return;
                        fp->hung_up = r == -ECONNRESET;
                } else if (si.eof && (pf[1].revents & POLLHUP)) {
                        fp->hung_up = true; /* the channel is gone, the server still talks */
                }
        }
}

/* The forward pump (a pump process): the helper's frames to and from the socket in; the word
 * about the connect on report. */
void rtdocker_pump_fwd(struct docker *base, const struct rtdocker_pump *p)
{
        signal(SIGPIPE, SIG_IGN);
        struct fwd_pump fp = {.sock = p->in, .status_fd = p->report};
        struct docker *d = NULL;
        struct drv_error e = {0};
        _cleanup_strbuf_ struct strbuf early = STRBUF_INIT;
        if (fp.sock >= 0 && docker_dup(base, &d, &e) == 0 &&
            docker_attach_start(d, p->exec_id, false, &early, &e) == 0)
                fwd_loop(d, &fp, &early);
        docker_close(d);
        d = NULL;
        if (fp.status_fd >= 0) /* ended before a word about the connect */
                report(&fp, e.code ? e.code : EPROTO,
                       e.message[0]  ? e.message
                       : fp.said_len ? fp.said
                                     : "the helper ended without an answer");
        if (fp.hung_up && fp.relay_pid > 1 && p->container) { /* a relay whose channel is gone */
                char pid[24];
                snprintf(pid, sizeof(pid), "%ld", fp.relay_pid);
                char *argv[] = {(char *)DKHELPER_PATH, (char *)"kill", pid, NULL};
                int code = -1;
                if (docker_dup(base, &d, &e) == 0)
                        (void)docker_exec_run(d, p->container, argv, NULL, -1, &code, &e);
                docker_close(d);
        }
}

/* Track a new pump (pid > 0; after reaping those that ended), or only reap (pid 0). 0, or
 * -EMFILE when every slot is busy. */
static int fwd_track(struct rtdocker *rt, pid_t pid)
{
        pthread_mutex_lock(&rt->helper_lock);
        size_t j = 0;
        for (size_t i = 0; i < rt->n_fwd; i++) {
                int st;
                if (DRV_RETRY(waitpid(rt->fwd[i], &st, WNOHANG)) == 0)
                        rt->fwd[j++] = rt->fwd[i];
        }
        rt->n_fwd = j;
        int r = rt->n_fwd < DRV_ARRAY_SIZE(rt->fwd) ? 0 : -EMFILE;
        if (r == 0 && pid > 0)
                rt->fwd[rt->n_fwd++] = pid;
        pthread_mutex_unlock(&rt->helper_lock);
        return r;
}

/* Wait for the pump's word; 0 when the relay is connected. */
static int fwd_answer(int status_fd, const char *host, uint16_t port, struct drv_error *err)
{
        struct pollfd pf = {status_fd, POLLIN, 0};
        int n = DRV_RETRY(poll(&pf, 1, FWD_ANSWER_MS));
        if (n == 0)
                return drv_err(err, ETIMEDOUT,
                               "%s:%u inside the job's container: no answer in %d s", host, port,
                               FWD_ANSWER_MS / 1000);
        struct fwd_status st;
        if (n < 0 || DRV_RETRY(read(status_fd, &st, sizeof(st))) != (ssize_t)sizeof(st))
                return drv_err(err, EIO, "%s:%u inside the job's container: the pump failed", host,
                               port);
        st.msg[sizeof(st.msg) - 1] = '\0';
        if (st.code)
                return drv_err(err, st.code, "inside the job's container: %s", st.msg);
        return 0;
}

int rtdocker_connect_tcp(struct rtdocker *rt, const char *host, uint16_t port, int *fd,
                         struct drv_error *err)
{
        /* own connection: the runtime's lock is not held here (steps go on meanwhile) */
        _cleanup_(docker_closep) struct docker *d = NULL;
        int r = docker_dup(rt->d, &d, err);
        if (r == 0)
                r = rtdocker_helper_install(rt, d, err);
        if (r < 0)
                return r;
        if (fwd_track(rt, 0) < 0)
                return drv_err(err, EMFILE, "too many forwards open in one job");
        char ps[8];
        snprintf(ps, sizeof(ps), "%u", port);
        char *argv[] = {(char *)DKHELPER_PATH, (char *)"connect", (char *)host, ps, NULL};
        _cleanup_free_ char *exec_id = NULL;
        if ((r = docker_exec_create_attached(d, rt->primary, argv, NULL, false, &exec_id, err)) < 0)
                return r;
        int sp[2] = {-1, -1}, st[2] = {-1, -1};
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) < 0)
                return drv_err_errno(err, "socketpair");
        _cleanup_close_ int mine = sp[0], theirs = sp[1];
        if (pipe2(st, O_CLOEXEC) < 0)
                return drv_err_errno(err, "pipe");
        _cleanup_close_ int st_rd = st[0], st_wr = st[1];
        struct fwd_status fail = {.code = EIO, .msg = "the pump process could not start"};
        struct rtdocker_pump pp = {.kind = "fwd",
                                   .exec_id = exec_id,
                                   .container = rt->primary,
                                   .report = st_wr,
                                   .in = theirs,
                                   .out = -1,
                                   .err = -1,
                                   .fail = &fail,
                                   .fail_len = sizeof(fail)};
        pid_t pid;
        if ((r = rtdocker_pump_spawn(rt, &pp, &pid, err)) < 0)
                return r;
        close(TAKE_FD(theirs));
        close(TAKE_FD(st_wr));
        r = fwd_answer(st_rd, host, port, err);
        if (r == 0 && fwd_track(rt, pid) < 0)
                r = drv_err(err, EMFILE, "too many forwards open in one job");
        if (r < 0) {
                int ws;
                kill(pid, SIGKILL); /* ended already, or stuck */
                (void)DRV_RETRY(waitpid(pid, &ws, 0));
                return r;
        }
        *fd = TAKE_FD(mine);
        return 0;
}

void rtdocker_fwd_stop(struct rtdocker *rt)
{
        for (size_t i = 0; i < rt->n_fwd; i++) {
                int st;
                kill(rt->fwd[i], SIGKILL);
                (void)DRV_RETRY(waitpid(rt->fwd[i], &st, 0));
        }
        rt->n_fwd = 0;
}

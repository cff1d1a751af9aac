/* session.c: one SSH connection (its own thread) — publickey auth, session channels (shell, exec,
 * sftp, on a pty or pipes) run inside the job, and direct-tcpip into the job's network. */
#include "executor/ssh/internal.h"

#include <fcntl.h>
#include <libssh/callbacks.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>

#define MAX_CHANS     16
#define AUTH_GRACE_NS SSHD_LOGIN_GRACE_NS    /* the acceptor cuts it then, too */
#define DRAIN_NS      (1000ULL * 1000000ULL) /* output after the process ended */
#define SFTP_SERVER   "/usr/lib/openssh/sftp-server"
#define IO_CHUNK      32768

enum chan_kind { CH_SESSION, CH_TCP };

struct chan {
        struct conn *c;
        ssh_channel ch;
        struct ssh_channel_callbacks_struct cb;
        enum chan_kind kind;
        /* requests before the process starts */
        bool pty;
        unsigned short rows, cols;
        char **env; /* TERM, LANG */
        /* the process (or socket) */
        bool started;
        int proc;
        int in_fd;          /* to the process / socket; -1 once closed */
        int out_fd, err_fd; /* from it; -1 once closed */
        bool out_eof, err_eof;
        bool in_w, out_w, err_w, exit_w; /* watched by the event */
        int exit_pipe[2];
        bool exited;
        struct runtime_exit ex;
        uint64_t exited_ns;
        uint64_t out_ns;     /* last output forwarded */
        char pend[IO_CHUNK]; /* read from the channel, not yet written to in_fd */
        size_t pend_len, pend_off;
        bool client_eof;
        bool eof_sent;
        bool remote_closed;
        bool broken;
};

struct conn {
        struct sshd *srv;
        ssh_session session;
        ssh_event event;
        unsigned id;
        int slot;
        char remote[64];
        char user[64];
        char key_fp[128];
        bool authenticated;
        bool stop;
        struct ssh_server_callbacks_struct scb;
        struct chan *chans[MAX_CHANS];
};

static struct chan *chan_new(struct conn *c, enum chan_kind kind)
{
        for (size_t i = 0; i < MAX_CHANS; i++) {
                if (c->chans[i])
                        continue;
                struct chan *h = calloc(1, sizeof(*h));
                if (!h)
                        return NULL;
                h->c = c;
                h->kind = kind;
                h->in_fd = h->out_fd = h->err_fd = -1;
                h->exit_pipe[0] = h->exit_pipe[1] = -1;
                c->chans[i] = h;
                return h;
        }
        return NULL;
}

static void watch(struct chan *h, int fd, bool *watched, bool want, short events,
                  ssh_event_callback cb)
{
        if (fd < 0)
                want = false;
        if (want == *watched)
                return;
        if (want) {
                if (ssh_event_add_fd(h->c->event, fd, events, cb, h) == SSH_OK)
                        *watched = true;
        } else {
                ssh_event_remove_fd(h->c->event, fd);
                *watched = false;
        }
}

static void close_fd(struct chan *h, int *fd, bool *watched)
{
        watch(h, *fd, watched, false, 0, NULL);
        if (*fd >= 0)
                close(*fd);
        *fd = -1;
}

/* Release everything of a channel; kill_sig != 0 signals a process that still runs. */
static void chan_free(struct conn *c, size_t i, int kill_sig)
{
        struct chan *h = c->chans[i];
        struct runtime *rt = c->srv->rt;
        if (h->started && h->kind == CH_SESSION) {
                runtime_forget_session(rt, h->proc);
                if (!h->exited && kill_sig)
                        (void)runtime_signal(rt, h->proc, kill_sig);
        }
        if (h->out_fd == h->in_fd)
                h->out_fd = -1;
        close_fd(h, &h->in_fd, &h->in_w);
        close_fd(h, &h->out_fd, &h->out_w);
        close_fd(h, &h->err_fd, &h->err_w);
        close_fd(h, &h->exit_pipe[0], &h->exit_w);
        if (h->exit_pipe[1] >= 0)
                close(h->exit_pipe[1]);
        if (h->ch) {
                ssh_remove_channel_callbacks(h->ch, &h->cb);
                if (!h->remote_closed)
                        ssh_channel_close(h->ch);
                ssh_channel_free(h->ch);
        }
        drv_strv_free(h->env);
        free(h);
        c->chans[i] = NULL;
}

/* ---- process -> client ---- */

static int on_readable(socket_t fd, int revents, void *ud)
{
        (void)revents;
        struct chan *h = ud;
        bool is_err = fd == h->err_fd;
        uint32_t win = ssh_channel_window_size(h->ch);
        if (win == 0)
                return 0; /* the loop stops watching until the client opens the window */
        char buf[IO_CHUNK];
        ssize_t n = read(fd, buf, win < sizeof(buf) ? win : sizeof(buf));
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
                return 0;
        if (n <= 0) { /* EOF; EIO on a pty master once the terminal is hung up */
                if (is_err)
                        h->err_eof = true;
                else
                        h->out_eof = true;
                return 0;
        }
        int w = is_err ? ssh_channel_write_stderr(h->ch, buf, (uint32_t)n)
                       : ssh_channel_write(h->ch, buf, (uint32_t)n);
        if (w < 0)
                h->broken = true;
        h->out_ns = drv_now_ns();
        return 0;
}

static int on_writable(socket_t fd, int revents, void *ud)
{
        (void)fd, (void)revents, (void)ud;
        return 0; /* wakes the loop, which writes */
}

static int on_exit_pipe(socket_t fd, int revents, void *ud)
{
        (void)revents;
        struct chan *h = ud;
        struct runtime_exit ex;
        if (read(fd, &ex, sizeof(ex)) == (ssize_t)sizeof(ex) && !h->exited) {
                h->exited = true;
                h->ex = ex;
                h->exited_ns = drv_now_ns();
        }
        return 0;
}

static int on_stop(socket_t fd, int revents, void *ud)
{
        (void)fd, (void)revents;
        struct conn *c = ud;
        c->stop = true;
        return 0;
}

/* Called by the thread that drains the runtime's exits (under its lock): hand over by pipe. */
static void deliver_exit(void *ctx, const struct runtime_exit *ex)
{
        int fd = (int)(intptr_t)ctx;
        (void)!write(fd, ex, sizeof(*ex));
}

/* ---- client -> process ---- */

static void pump_in(struct chan *h)
{
        for (int rounds = 0; rounds < 64 && h->in_fd >= 0; rounds++) {
                if (h->pend_off < h->pend_len) {
                        ssize_t n =
                            write(h->in_fd, h->pend + h->pend_off, h->pend_len - h->pend_off);
                        if (n < 0 && (errno == EAGAIN || errno == EINTR))
                                return;
                        if (n < 0) { /* the reader is gone: drop what the client sends */
                                h->pend_off = h->pend_len = 0;
                                close_fd(h, &h->in_fd, &h->in_w);
                                return;
                        }
                        h->pend_off += (size_t)n;
                        if (h->pend_off < h->pend_len)
                                return;
                }
                h->pend_off = h->pend_len = 0;
                int avail = ssh_channel_poll(h->ch, 0);
                if (avail == SSH_EOF) {
                        if (!h->client_eof && h->kind == CH_TCP)
                                shutdown(h->in_fd, SHUT_WR);
                        else if (!h->client_eof && !h->pty)
                                close_fd(h, &h->in_fd, &h->in_w);
                        h->client_eof = true;
                        return;
                }
                if (avail <= 0)
                        return;
                int n = ssh_channel_read_nonblocking(h->ch, h->pend, sizeof(h->pend), 0);
                if (n <= 0)
                        return;
                h->pend_len = (size_t)n;
        }
}

/* ---- starting processes ---- */

static char **session_env(struct chan *h)
{
        char **env = NULL;
        for (char **e = h->c->srv->envp; e && *e; e++)
                if (drv_strv_push(&env, *e) < 0)
                        goto oom;
        for (char **e = h->env; e && *e; e++) {
                size_t l = strcspn(*e, "=") + 1;
                for (char **o = env; o && *o; o++)
                        if (strncmp(*o, *e, l) == 0)
                                **o = '\0'; /* overridden: blanked, skipped below */
                if (drv_strv_push(&env, *e) < 0)
                        goto oom;
        }
        char **out = NULL;
        for (char **e = env; e && *e; e++)
                if (**e && drv_strv_push(&out, *e) < 0) {
                        drv_strv_free(out);
                        goto oom;
                }
        drv_strv_free(env);
        return out;
oom:
        drv_strv_free(env);
        return NULL;
}

static int start_process(struct chan *h, const char *const *argv)
{
        struct sshd *s = h->c->srv;
        if (h->started)
                return -1; /* one process per channel */
        _cleanup_strv_ char **env = session_env(h);
        int in[2] = {-1, -1}, out[2] = {-1, -1}, err[2] = {-1, -1}, master = -1;
        if (!env || pipe2(h->exit_pipe, O_CLOEXEC | O_NONBLOCK) < 0)
                return -1;
        if (!h->pty &&
            (pipe2(in, O_CLOEXEC) < 0 || pipe2(out, O_CLOEXEC) < 0 || pipe2(err, O_CLOEXEC) < 0))
                goto fail;
        struct runtime_session_exec ex = {.argv = argv,
                                          .envp = (const char *const *)env,
                                          .cwd = s->workdir,
                                          .pty = h->pty,
                                          .rows = h->rows,
                                          .cols = h->cols,
                                          .in_fd = in[0],
                                          .out_fd = out[1],
                                          .err_fd = err[1]};
        struct drv_error e = {0};
        if (runtime_spawn_session(s->rt, &ex, &h->proc, &master, deliver_exit,
                                  (void *)(intptr_t)h->exit_pipe[1], &e) < 0) {
                log_warn("ssh_spawn_failed", "session=%u argv0=%s error=\"%s\"", h->c->id, argv[0],
                         e.message);
                goto fail;
        }
        h->started = true;
        if (h->pty) {
                h->in_fd = master;
                h->out_fd = fcntl(master, F_DUPFD_CLOEXEC, 3);
                h->err_eof = true;
        } else {
                close(in[0]);
                close(out[1]);
                close(err[1]);
                h->in_fd = in[1];
                h->out_fd = out[0];
                h->err_fd = err[0];
        }
        drv_fd_nonblock(h->in_fd, true);
        drv_fd_nonblock(h->out_fd, true);
        if (h->err_fd >= 0)
                drv_fd_nonblock(h->err_fd, true);
        log_info("ssh_process_started", "session=%u argv0=%s pty=%d", h->c->id, argv[0], h->pty);
        return 0;
fail:
        for (int i = 0; i < 2; i++) {
                if (in[i] >= 0)
                        close(in[i]);
                if (out[i] >= 0)
                        close(out[i]);
                if (err[i] >= 0)
                        close(err[i]);
                if (h->exit_pipe[i] >= 0)
                        close(h->exit_pipe[i]);
                h->exit_pipe[i] = -1;
        }
        return -1;
}

/* ---- channel requests ---- */

static int on_pty(ssh_session session, ssh_channel channel, const char *term, int width, int height,
                  int pxwidth, int pxheight, void *ud)
{
        (void)session, (void)channel, (void)pxwidth, (void)pxheight;
        struct chan *h = ud;
        if (h->started)
                return -1;
        h->pty = true;
        h->cols = (unsigned short)(width > 0 && width < 65536 ? width : 80);
        h->rows = (unsigned short)(height > 0 && height < 65536 ? height : 24);
        char *kv = drv_asprintf("TERM=%s", term && *term ? term : "xterm");
        if (!kv || drv_strv_push(&h->env, kv) < 0) {
                free(kv);
                return -1;
        }
        free(kv);
        return 0;
}

static int on_window(ssh_session session, ssh_channel channel, int width, int height, int pxwidth,
                     int pxheight, void *ud)
{
        (void)session, (void)channel;
        struct chan *h = ud;
        h->cols = (unsigned short)(width > 0 && width < 65536 ? width : h->cols);
        h->rows = (unsigned short)(height > 0 && height < 65536 ? height : h->rows);
        (void)pxwidth, (void)pxheight;
        if (h->pty && h->in_fd >= 0 && h->started)
                (void)runtime_resize_session(h->c->srv->rt, h->proc, h->in_fd, h->rows, h->cols);
        return 0;
}

static int on_env(ssh_session session, ssh_channel channel, const char *name, const char *value,
                  void *ud)
{
        (void)session, (void)channel;
        struct chan *h = ud;
        if (h->started || !name || !value || (strcmp(name, "TERM") && strcmp(name, "LANG")))
                return -1; /* as sshd without AcceptEnv: refused, the client goes on */
        char *kv = drv_asprintf("%s=%s", name, value);
        if (!kv || drv_strv_push(&h->env, kv) < 0) {
                free(kv);
                return -1;
        }
        free(kv);
        return 0;
}

static int on_shell(ssh_session session, ssh_channel channel, void *ud)
{
        (void)session, (void)channel;
        struct chan *h = ud;
        const char *argv[] = {h->c->srv->shell, NULL};
        return start_process(h, argv);
}

static int on_exec(ssh_session session, ssh_channel channel, const char *command, void *ud)
{
        (void)session, (void)channel;
        struct chan *h = ud;
        const char *argv[] = {h->c->srv->shell, "-c", command ? command : "", NULL};
        return start_process(h, argv);
}

static int on_subsystem(ssh_session session, ssh_channel channel, const char *name, void *ud)
{
        (void)session, (void)channel;
        struct chan *h = ud;
        if (!name || strcmp(name, "sftp") != 0 || !h->c->srv->have_sftp)
                return -1;
        h->pty = false; /* sftp speaks binary: never on a terminal */
        const char *argv[] = {SFTP_SERVER, NULL};
        return start_process(h, argv);
}

static void on_signal(ssh_session session, ssh_channel channel, const char *name, void *ud)
{
        (void)session, (void)channel;
        struct chan *h = ud;
        int sig = sshd_signal_from_name(name);
        if (h->started && !h->exited && sig)
                (void)runtime_signal(h->c->srv->rt, h->proc, sig);
}

static void on_close(ssh_session session, ssh_channel channel, void *ud)
{
        (void)session, (void)channel;
        struct chan *h = ud;
        h->remote_closed = true;
}

static void chan_callbacks(struct chan *h)
{
        memset(&h->cb, 0, sizeof(h->cb));
        h->cb.userdata = h;
        h->cb.channel_close_function = on_close;
        if (h->kind == CH_SESSION) {
                h->cb.channel_pty_request_function = on_pty;
                h->cb.channel_pty_window_change_function = on_window;
                h->cb.channel_env_request_function = on_env;
                h->cb.channel_shell_request_function = on_shell;
                h->cb.channel_exec_request_function = on_exec;
                h->cb.channel_subsystem_request_function = on_subsystem;
                h->cb.channel_signal_function = on_signal;
        }
        ssh_callbacks_init(&h->cb);
        ssh_set_channel_callbacks(h->ch, &h->cb);
}

static ssh_channel on_session_open(ssh_session session, void *ud)
{
        struct conn *c = ud;
        if (!c->authenticated || c->stop)
                return NULL;
        struct chan *h = chan_new(c, CH_SESSION);
        if (!h)
                return NULL;
        h->ch = ssh_channel_new(session);
        if (!h->ch) {
                for (size_t i = 0; i < MAX_CHANS; i++)
                        if (c->chans[i] == h)
                                chan_free(c, i, 0);
                return NULL;
        }
        chan_callbacks(h);
        return h->ch;
}

/* direct-tcpip (ssh -L): connect inside the job, then accept; everything else is refused. */
static int on_message(ssh_session session, ssh_message msg, void *ud)
{
        (void)session;
        struct conn *c = ud;
        if (ssh_message_type(msg) != SSH_REQUEST_CHANNEL_OPEN ||
            ssh_message_subtype(msg) != SSH_CHANNEL_DIRECT_TCPIP || !c->authenticated || c->stop)
                return 1; /* default reply: refused (tcpip-forward, agent, x11, passwords) */
        const char *host = ssh_message_channel_request_open_destination(msg);
        int port = ssh_message_channel_request_open_destination_port(msg);
        if (!host || port <= 0 || port > 65535)
                return 1;
        struct drv_error e = {0};
        int fd = -1;
        if (runtime_connect_tcp(c->srv->rt, host, (uint16_t)port, &fd, &e) < 0) {
                log_info("ssh_forward_refused", "session=%u to=%s:%d error=\"%s\"", c->id, host,
                         port, e.message);
                return 1;
        }
        struct chan *h = chan_new(c, CH_TCP);
        if (!h) {
                close(fd);
                return 1;
        }
        h->in_fd = fd;
        h->out_fd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
        h->started = true;
        h->err_eof = true;
        h->ch = ssh_message_channel_request_open_reply_accept(msg);
        if (!h->ch || h->out_fd < 0) {
                for (size_t i = 0; i < MAX_CHANS; i++)
                        if (c->chans[i] == h)
                                chan_free(c, i, 0);
                return h->ch ? 0 : 1;
        }
        drv_fd_nonblock(h->in_fd, true);
        drv_fd_nonblock(h->out_fd, true);
        chan_callbacks(h);
        log_info("ssh_forward", "session=%u to=%s:%d", c->id, host, port);
        return 0;
}

static int on_auth_pubkey(ssh_session session, const char *user, struct ssh_key_struct *key,
                          char state, void *ud)
{
        (void)session;
        struct conn *c = ud;
        if (!sshd_key_allowed(c->srv, key)) {
                if (state != SSH_PUBLICKEY_STATE_NONE)
                        log_info("ssh_auth_refused", "session=%u remote=%s", c->id, c->remote);
                return SSH_AUTH_DENIED;
        }
        if (state == SSH_PUBLICKEY_STATE_NONE)
                return SSH_AUTH_SUCCESS; /* "this key would do": the client signs next */
        if (state != SSH_PUBLICKEY_STATE_VALID)
                return SSH_AUTH_DENIED;
        unsigned char *hash = NULL;
        size_t hlen = 0;
        if (ssh_get_publickey_hash(key, SSH_PUBLICKEY_HASH_SHA256, &hash, &hlen) == 0) {
                char *fp = ssh_get_fingerprint_hash(SSH_PUBLICKEY_HASH_SHA256, hash, hlen);
                snprintf(c->key_fp, sizeof(c->key_fp), "%s", fp ? fp : "?");
                ssh_string_free_char(fp);
                ssh_clean_pubkey_hash(&hash);
        }
        snprintf(c->user, sizeof(c->user), "%s", user ? user : "");
        c->authenticated = true;
        return SSH_AUTH_SUCCESS;
}

/* ---- the loop ---- */

/* Per channel after each poll round: move bytes, update watches, end what is finished. */
static void chan_step(struct conn *c, size_t i)
{
        struct chan *h = c->chans[i];
        if (h->remote_closed || h->broken) {
                chan_free(c, i, SIGHUP);
                return;
        }
        if (!h->started)
                return;
        pump_in(h);
        bool win = ssh_channel_window_size(h->ch) > 0;
        watch(h, h->in_fd, &h->in_w, h->pend_off < h->pend_len, POLLOUT, on_writable);
        watch(h, h->out_fd, &h->out_w, win && !h->out_eof, POLLIN, on_readable);
        watch(h, h->err_fd, &h->err_w, win && !h->err_eof, POLLIN, on_readable);
        watch(h, h->exit_pipe[0], &h->exit_w, !h->exited, POLLIN, on_exit_pipe);
        if (h->kind == CH_TCP) {
                if (h->out_eof && !h->eof_sent) {
                        ssh_channel_send_eof(h->ch);
                        h->eof_sent = true;
                }
                if (h->out_eof && h->client_eof)
                        chan_free(c, i, 0);
                return;
        }
        if (!h->exited)
                return;
        /* the output ends at EOF, or once nothing came for a while after the exit (a background
         * child may hold the pipe or terminal forever); a client that is slow to open its window
         * does not lose the rest */
        bool drained = h->out_eof && h->err_eof;
        uint64_t last = h->out_ns > h->exited_ns ? h->out_ns : h->exited_ns;
        if (!drained && (!win || drv_now_ns() < last + DRAIN_NS))
                return;
        int st = h->ex.status;
        if (WIFSIGNALED(st)) {
                const char *name = sshd_signal_name(WTERMSIG(st));
                ssh_channel_request_send_exit_signal(h->ch, name ? name : "KILL", WCOREDUMP(st), "",
                                                     "");
        } else {
                ssh_channel_request_send_exit_status(h->ch, WEXITSTATUS(st));
        }
        ssh_channel_send_eof(h->ch);
        log_info("ssh_process_ended", "session=%u status=%d", c->id, st);
        chan_free(c, i, 0);
}

static bool connected(struct conn *c)
{
        return ssh_is_connected(c->session) &&
               !(ssh_get_status(c->session) & (SSH_CLOSED | SSH_CLOSED_ERROR));
}

static void serve(struct conn *c)
{
        while (!c->stop && connected(c)) {
                bool waiting = false;
                for (size_t i = 0; i < MAX_CHANS; i++)
                        if (c->chans[i] && c->chans[i]->kind == CH_SESSION &&
                            c->chans[i]->started && !c->chans[i]->exited)
                                waiting = true;
                if (waiting) /* the step machine may be busy in a built-in step */
                        runtime_drain_exits(c->srv->rt);
                for (size_t i = 0; i < MAX_CHANS; i++)
                        if (c->chans[i])
                                chan_step(c, i);
                if (ssh_event_dopoll(c->event, 200) == SSH_ERROR && !connected(c))
                        break;
        }
}

static bool authenticate(struct conn *c)
{
        uint64_t deadline = drv_now_ns() + AUTH_GRACE_NS;
        while (!c->authenticated && !c->stop && connected(c) && drv_now_ns() < deadline)
                if (ssh_event_dopoll(c->event, 200) == SSH_ERROR && !connected(c))
                        break;
        return c->authenticated && !c->stop;
}

void *sshd_conn_main(void *arg)
{
        struct sshd_conn_args *a = arg;
        struct conn *c = calloc(1, sizeof(*c));
        if (!c) {
                sshd_conn_release(a->srv, a->slot);
                ssh_free(a->session);
                free(a);
                return NULL;
        }
        c->srv = a->srv;
        c->session = a->session;
        c->id = a->id;
        c->slot = a->slot;
        snprintf(c->remote, sizeof(c->remote), "%s", a->remote);
        free(a);
        long timeout = 30;
        ssh_options_set(c->session, SSH_OPTIONS_TIMEOUT, &timeout);
        ssh_set_auth_methods(c->session, SSH_AUTH_METHOD_PUBLICKEY);
        c->scb.userdata = c;
        c->scb.auth_pubkey_function = on_auth_pubkey;
        c->scb.channel_open_request_session_function = on_session_open;
        ssh_callbacks_init(&c->scb);
        ssh_set_server_callbacks(c->session, &c->scb);
        ssh_set_message_callback(c->session, on_message, c);
        uint64_t t0 = drv_now_ns();
        if (ssh_handle_key_exchange(c->session) != SSH_OK) {
                log_info("ssh_kex_failed", "session=%u remote=%s error=\"%s\"", c->id, c->remote,
                         ssh_get_error(c->session));
                goto out;
        }
        c->event = ssh_event_new();
        if (!c->event || ssh_event_add_session(c->event, c->session) != SSH_OK ||
            ssh_event_add_fd(c->event, c->srv->stop_pipe[0], POLLIN, on_stop, c) != SSH_OK)
                goto out;
        if (!authenticate(c))
                goto out;
        sshd_conn_authenticated(c->srv, c->slot);
        sshd_session_opened(c->srv, c->id, c->user, c->key_fp, c->remote);
        t0 = drv_now_ns();
        serve(c);
        for (size_t i = 0; i < MAX_CHANS; i++)
                if (c->chans[i])
                        chan_free(c, i, c->stop ? SIGKILL : SIGHUP);
        sshd_session_closed(c->srv, c->id, (drv_now_ns() - t0) / 1000000);
out:
        for (size_t i = 0; i < MAX_CHANS; i++)
                if (c->chans[i])
                        chan_free(c, i, SIGKILL);
        if (c->event) {
                ssh_event_remove_fd(c->event, c->srv->stop_pipe[0]);
                ssh_event_remove_session(c->event, c->session);
                ssh_event_free(c->event);
        }
        if (connected(c))
                ssh_disconnect(c->session);
        sshd_conn_release(c->srv, c->slot);
        ssh_free(c->session);
        free(c);
        return NULL;
}

/* jobhelper.c: the supervisor's side of the in-job storage helper — start it through the
 * runtime, read and write its frames with deadlines, reap it. It trusts nothing the helper says. */
#include "cache/jobhelper.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>

#define JH_REAP_MS 10000 /* after its last frame, the helper has this long to exit */

struct jobhelper {
        const struct step_runner *run;
        int proc;
        int in_fd;  /* its stdin (ours to write), -1 once closed */
        int out_fd; /* its stdout+stderr (ours to read) */
        uint64_t idle_ms;
        char hdr[4];
        char *buf;        /* JH_MAX_FRAME + 1 */
        bool ended;       /* its last frame ('S' or 'X') came */
        bool eof;         /* its stdout ended (it exited or was killed) */
        char last;        /* type of the last frame */
        char rbuf[65536]; /* small frames come many to a read */
        size_t rpos, rlen;
};

struct jh_caps jobhelper_caps(const struct step_ctx *ctx)
{
        const struct js_storage *s = &ctx->spec->storage;
        struct jh_caps c = {(s->max_file_mb ? s->max_file_mb : JH_DEFAULT_MAX_FILE_MB) << 20,
                            (s->max_step_mb ? s->max_step_mb : JH_DEFAULT_MAX_STEP_MB) << 20};
        return c;
}

static void jh_free(struct jobhelper *h)
{
        if (h->in_fd >= 0)
                close(h->in_fd);
        if (h->out_fd >= 0)
                close(h->out_fd);
        free(h->buf);
        free(h);
}

int jobhelper_start(const struct step_ctx *ctx, const char *const *args, struct jobhelper **out,
                    struct drv_error *err)
{
        if (!ctx->runner)
                return drv_err(err, ENOTSUP, "this runtime has no in-job helper");
        const char *argv[16] = {ctx->runner->tool, JH_SUBCOMMAND};
        size_t n = 2;
        for (size_t i = 0; args[i]; i++) {
                if (n + 1 >= DRV_ARRAY_SIZE(argv))
                        return drv_err(err, E2BIG, "too many helper arguments");
                argv[n++] = args[i];
        }
        argv[n] = NULL;
        struct jobhelper *h = calloc(1, sizeof(*h));
        int inp[2] = {-1, -1}, outp[2] = {-1, -1};
        if (!h || !(h->buf = malloc(JH_MAX_FRAME + 1))) {
                free(h);
                return drv_err(err, ENOMEM, "out of memory");
        }
        h->run = ctx->runner;
        h->in_fd = h->out_fd = -1;
        h->idle_ms = (ctx->idle_timeout ? ctx->idle_timeout : 600) * 1000;
        if (pipe2(inp, O_CLOEXEC) < 0 || pipe2(outp, O_CLOEXEC) < 0) {
                int r = drv_err_errno(err, "pipe");
                if (inp[0] >= 0)
                        close(inp[0]), close(inp[1]);
                jh_free(h);
                return r;
        }
        int r = h->run->start(h->run->ud, argv, inp[0], outp[1], &h->proc, err);
        close(inp[0]);
        close(outp[1]);
        h->in_fd = inp[1];
        h->out_fd = outp[0];
        if (r < 0) {
                jh_free(h);
                return drv_err_prefix(err, "cannot start the in-job helper");
        }
        /* a helper that stops reading or writing must never block us: poll with deadlines */
        fcntl(h->in_fd, F_SETFL, O_NONBLOCK);
        fcntl(h->out_fd, F_SETFL, O_NONBLOCK);
        signal(SIGPIPE, SIG_IGN);
        *out = h;
        return 0;
}

/* Wait until fd is ready for events; -ETIMEDOUT after the idle timeout. */
static int jh_wait(struct jobhelper *h, int fd, short events, struct drv_error *err)
{
        struct pollfd p = {.fd = fd, .events = events};
        int n = DRV_RETRY(poll(&p, 1, (int)h->idle_ms));
        if (n < 0)
                return drv_err_errno(err, "poll");
        if (n == 0)
                return drv_err(err, ETIMEDOUT,
                               "the in-job helper was silent for %llu s (no_output_timeout)",
                               (unsigned long long)(h->idle_ms / 1000));
        return 0;
}

static int jh_read_full(struct jobhelper *h, char *buf, size_t n, struct drv_error *err)
{
        size_t got = 0;
        while (got < n) {
                if (h->rpos < h->rlen) {
                        size_t k = h->rlen - h->rpos < n - got ? h->rlen - h->rpos : n - got;
                        memcpy(buf + got, h->rbuf + h->rpos, k);
                        h->rpos += k;
                        got += k;
                        continue;
                }
                /* big payloads straight into buf, the rest through rbuf */
                bool direct = n - got >= sizeof(h->rbuf);
                ssize_t k = direct ? read(h->out_fd, buf + got, n - got)
                                   : read(h->out_fd, h->rbuf, sizeof(h->rbuf));
                if (k > 0) {
                        if (direct)
                                got += (size_t)k;
                        else
                                h->rpos = 0, h->rlen = (size_t)k;
                        continue;
                }
                if (k == 0) {
                        h->eof = true;
                        return drv_err(err, EPIPE, "the in-job helper ended without an answer");
                }
                if (errno == EINTR)
                        continue;
                if (errno != EAGAIN)
                        return drv_err_errno(err, "reading from the in-job helper");
                int r = jh_wait(h, h->out_fd, POLLIN, err);
                if (r < 0)
                        return r;
        }
        return 0;
}

int jobhelper_next(struct jobhelper *h, char *type, const char **payload, size_t *len,
                   struct drv_error *err)
{
        if (h->ended)
                return drv_err(err, EPROTO, "the in-job helper already ended");
        int r = jh_read_full(h, h->hdr, 4, err);
        if (r < 0)
                return r;
        size_t n = ((size_t)(unsigned char)h->hdr[1] << 16) |
                   ((size_t)(unsigned char)h->hdr[2] << 8) | (unsigned char)h->hdr[3];
        if (!strchr("FDEWSX", h->hdr[0]) || h->hdr[0] == '\0' || n > JH_MAX_FRAME)
                return drv_err(err, EPROTO,
                               "the in-job helper broke the protocol (frame '%c', %zu bytes)",
                               h->hdr[0] >= 32 && h->hdr[0] < 127 ? h->hdr[0] : '?', n);
        if ((r = jh_read_full(h, h->buf, n, err)) < 0)
                return r;
        h->buf[n] = '\0';
        *type = h->last = h->hdr[0];
        *payload = h->buf;
        *len = n;
        h->ended = *type == 'S' || *type == 'X';
        return 0;
}

int jobhelper_send(struct jobhelper *h, char type, const void *payload, size_t len,
                   struct drv_error *err)
{
        if (len > JH_MAX_FRAME || h->in_fd < 0)
                return drv_err(err, EINVAL, "bad frame for the in-job helper");
        unsigned char hdr[4] = {(unsigned char)type, (unsigned char)(len >> 16),
                                (unsigned char)(len >> 8), (unsigned char)len};
        struct iovec part[2] = {{hdr, 4}, {(void *)payload, len}};
        size_t left = 4 + len;
        while (left) {
                ssize_t k =
                    writev(h->in_fd, part[0].iov_len ? part : part + 1, part[0].iov_len ? 2 : 1);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k < 0 && errno == EAGAIN) {
                        int r = jh_wait(h, h->in_fd, POLLOUT, err);
                        if (r < 0)
                                return r;
                        continue;
                }
                if (k < 0)
                        return drv_err(err, errno == EPIPE ? EPIPE : errno,
                                       "the in-job helper stopped reading (%s)", strerror(errno));
                left -= (size_t)k;
                for (int i = 0; i < 2 && k > 0; i++) {
                        size_t t = (size_t)k < part[i].iov_len ? (size_t)k : part[i].iov_len;
                        part[i].iov_base = (char *)part[i].iov_base + t;
                        part[i].iov_len -= t;
                        k -= (ssize_t)t;
                }
        }
        return 0;
}

void jobhelper_close_input(struct jobhelper *h)
{
        if (h->in_fd >= 0)
                close(h->in_fd);
        h->in_fd = -1;
}

/* Reap proc, waiting at most ms (then kill it and wait for that). */
static int jh_reap(struct jobhelper *h, int ms, int *status, bool *oom)
{
        for (int waited = 0;; waited += 10) {
                int r = h->run->exit_of(h->run->ud, h->proc, status, oom);
                if (r != -EAGAIN)
                        return r;
                if (waited == ms)
                        h->run->kill(h->run->ud, h->proc);
                if (waited > ms + 10000)
                        return -ETIMEDOUT;
                struct timespec ts = {0, 10 * 1000000L};
                nanosleep(&ts, NULL);
        }
}

int jobhelper_finish(struct jobhelper *h, struct drv_error *err)
{
        jobhelper_close_input(h);
        int status = 0;
        bool oom = false;
        int r = jh_reap(h, JH_REAP_MS, &status, &oom);
        jh_free(h);
        if (r < 0)
                return drv_err(err, -r, "the in-job helper did not end");
        if (oom)
                return drv_err(err, ENOMEM,
                               "the in-job helper ran out of memory (the job's limit)");
        if (WIFSIGNALED(status))
                return drv_err(err, EINTR, "the in-job helper was killed (signal %d)",
                               WTERMSIG(status));
        if (WEXITSTATUS(status) != 0)
                return drv_err(err, EIO, "the in-job helper failed (exit %d)", WEXITSTATUS(status));
        return 0;
}

void jobhelper_abort(struct jobhelper *h)
{
        int status;
        bool oom;
        jobhelper_close_input(h);
        close(h->out_fd);
        h->out_fd = -1;
        h->run->kill(h->run->ud, h->proc);
        jh_reap(h, 0, &status, &oom);
        jh_free(h);
}

int jobhelper_unexpected(char type, const char *payload, struct drv_error *err)
{
        if (type == 'X')
                return drv_err(err, EIO, "%s", payload);
        return drv_err(err, EPROTO, "the in-job helper broke the protocol (frame '%c')", type);
}

int jobhelper_end(struct jobhelper *h, int r, struct drv_error *err)
{
        if (!h)
                return r;
        if (r < 0 && !h->ended && !h->eof) { /* our side failed: it is of no more use */
                jobhelper_abort(h);
                return r;
        }
        char last = h->last;
        struct drv_error e2 = {0};
        int f = jobhelper_finish(h, &e2);
        /* its own failure (out of memory in the job) says more than a missing answer */
        if (f < 0 && (r == 0 || last != 'X')) {
                *err = e2;
                return f;
        }
        return r;
}

int jobhelper_run(const struct step_ctx *ctx, const char *const *args, char **result,
                  struct drv_error *err)
{
        struct jobhelper *h = NULL;
        int r = jobhelper_start(ctx, args, &h, err);
        char type = 0;
        const char *p;
        size_t n;
        while (r == 0 && (r = jobhelper_next(h, &type, &p, &n, err)) == 0 && type == 'W')
                output_step_printf(ctx->out, ctx->step_index, "Warning: %s", p);
        if (r == 0 && type != 'S')
                r = jobhelper_unexpected(type, p, err);
        if (r == 0 && !(*result = strdup(p)))
                r = drv_err(err, ENOMEM, "out of memory");
        return jobhelper_end(h, r, err);
}

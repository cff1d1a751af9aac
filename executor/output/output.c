/* output.c: the output pipeline — masking, terminal rendering, the spool writer and the shipper's
 * lifecycle (shipper.c sends the spool to the output processor; docs/protocol-output.md). */
#include "executor/output.h"
#include "executor/output/mask.h"
#include "executor/output/spool.h"

#include <jansson.h>

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

#define DEFAULT_SPOOL_MAX (256ULL << 20)

struct stream {
        bool open;
        bool background;
        bool midline; /* the terminal saw bytes of this stream after the last newline */
        char *name;
        uint64_t started_ns;
        struct mask_stream ms;
        int data_fd; /* spool N.data, -1 without a processor */
        int ts_fd;
        uint64_t written; /* masked bytes spooled (counted as they are buffered in pend) */
        uint64_t chunk_start;
        uint64_t chunk_ns;  /* when the last ts record was written */
        struct strbuf pend; /* masked bytes of the current write, one write(2) in spool_commit */
};

struct output {
        struct output_config cfg;
        char *job_id, *url, *token, *ca_pem, *attempt; /* owned copies */
        int fd;
        bool color;
        uint64_t opened_ns;
        struct masker *masker;
        struct stream *streams;
        size_t n_streams;
        int last_term_stream; /* stream whose bytes the terminal saw last, -1 none */
        /* processor */
        bool ship;
        char *spool_path;
        int spool_fd;
        struct spool_state *st;
        uint64_t spool_max;
        unsigned base; /* spool step number of step 0: steps of a crashed run come first */
        int lock_fd;   /* writer.lock */
        pid_t shipper;
        int wake_w; /* write end of the shipper's wake-up pipe */
        int wake_r;
};

static struct stream *stream_get(struct output *o, unsigned idx, bool create)
{
        if (idx >= SPOOL_MAX_STEPS)
                return NULL;
        if (idx >= o->n_streams) {
                if (!create)
                        return NULL;
                size_t n = idx + 16 < SPOOL_MAX_STEPS ? idx + 16 : SPOOL_MAX_STEPS;
                struct stream *s = realloc(o->streams, n * sizeof(*s));
                if (!s)
                        return NULL;
                memset(s + o->n_streams, 0, (n - o->n_streams) * sizeof(*s));
                for (size_t i = o->n_streams; i < n; i++) {
                        s[i].data_fd = s[i].ts_fd = -1;
                        mask_stream_init(&s[i].ms);
                }
                o->streams = s;
                o->n_streams = n;
        }
        return &o->streams[idx];
}

static uint64_t wall_ns(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/* ---- terminal ---- */

static int term_write(struct output *o, const void *buf, size_t n)
{
        if (o->fd < 0 || n == 0)
                return 0;
        return drv_write_all(o->fd, buf, n);
}

/* Before drover's own lines: finish a line another stream left open. */
static int term_break(struct output *o)
{
        if (o->last_term_stream >= 0 && o->streams[o->last_term_stream].midline) {
                o->streams[o->last_term_stream].midline = false;
                return term_write(o, "\n", 1);
        }
        return 0;
}

static void fmt_elapsed(struct strbuf *sb, uint64_t ns)
{
        uint64_t ms = ns / 1000000ULL;
        if (ms < 60000)
                strbuf_printf(sb, "%llu.%02llus", (unsigned long long)(ms / 1000),
                              (unsigned long long)(ms % 1000 / 10));
        else
                strbuf_printf(sb, "%llum%02llus", (unsigned long long)(ms / 60000),
                              (unsigned long long)(ms % 60000 / 1000));
}

/* Masked step bytes to the terminal; background steps' lines carry a "name | " prefix. */
static int term_step_bytes(struct output *o, unsigned idx, const char *buf, size_t n)
{
        struct stream *s = &o->streams[idx];
        int r;
        if (o->fd < 0 || n == 0)
                return 0;
        if (o->last_term_stream != (int)idx) {
                if ((r = term_break(o)) < 0)
                        return r;
                o->last_term_stream = (int)idx;
        }
        if (!s->background)
                goto raw;
        while (n) {
                if (!s->midline) {
                        struct strbuf p = STRBUF_INIT;
                        if (o->color)
                                strbuf_printf(&p, "\033[35m%s |\033[0m ", s->name);
                        else
                                strbuf_printf(&p, "%s | ", s->name);
                        r = term_write(o, p.buf, p.len);
                        strbuf_release(&p);
                        if (r < 0)
                                return r;
                }
                const char *nl = memchr(buf, '\n', n);
                size_t k = nl ? (size_t)(nl - buf) + 1 : n;
                if ((r = term_write(o, buf, k)) < 0)
                        return r;
                s->midline = !nl;
                buf += k;
                n -= k;
        }
        return 0;
raw:
        s->midline = buf[n - 1] != '\n';
        return term_write(o, buf, n);
}

/* ---- spool ---- */

static void wake_shipper(struct output *o)
{
        if (o->wake_w >= 0) {
                ssize_t DRV_UNUSED w = write(o->wake_w, "x", 1); /* EAGAIN: already awake */
        }
}

struct emit_ctx {
        struct output *o;
        unsigned idx;
        int err;
};

static int emit_masked(void *ctx, const void *buf, size_t n)
{
        struct emit_ctx *e = ctx;
        struct output *o = e->o;
        struct stream *s = &o->streams[e->idx];
        int r = term_step_bytes(o, e->idx, buf, n);
        if (r < 0)
                return r;
        if (s->data_fd >= 0) {
                r = strbuf_append(&s->pend, buf, n);
                if (r < 0)
                        return r;
                s->written += n;
        }
        return 0;
}

/* After a write: one timestamp record for the chunk, publish the new length, wake the shipper. */
static int spool_commit(struct output *o, unsigned idx)
{
        struct stream *s = &o->streams[idx];
        if (s->data_fd < 0 || s->written == s->chunk_start)
                return 0;
        int r = drv_write_all(s->data_fd, s->pend.buf, s->pend.len);
        if (r < 0)
                return r;
        if (s->pend.cap > (1u << 20)) /* keep no huge buffer after a huge write */
                strbuf_release(&s->pend);
        else
                s->pend.len = 0;
        uint64_t now = wall_ns();
        if (now - s->chunk_ns >= 1000000ULL) { /* else the bytes join the previous chunk */
                struct spool_ts rec = {.offset = s->chunk_start, .ns = now};
                r = drv_write_all(s->ts_fd, &rec, sizeof(rec));
                if (r < 0)
                        return r;
                s->chunk_ns = now;
        }
        s->chunk_start = s->written;
        spool_store(&o->st->written[o->base + idx], s->written);
        wake_shipper(o);
        return 0;
}

static uint64_t backlog(struct output *o)
{
        uint64_t b = 0;
        uint32_t n = __atomic_load_n(&o->st->n_steps, __ATOMIC_ACQUIRE);
        for (size_t i = 0; i < n && i < SPOOL_MAX_STEPS; i++) {
                uint64_t w = spool_load(&o->st->written[i]), a = spool_load(&o->st->acked[i]);
                if (w > a)
                        b += w - a;
        }
        return b;
}

static int spawn_shipper(struct output *o, struct drv_error *err);

/* Restart a shipper that died (it resumes from the persisted acknowledged offsets). */
static void check_shipper(struct output *o)
{
        if (!o->ship || o->shipper <= 0)
                return;
        int status;
        if (waitpid(o->shipper, &status, WNOHANG) == o->shipper) {
                log_warn("output_shipper_died", "status=%d", status);
                o->shipper = 0;
                struct drv_error e;
                if (spawn_shipper(o, &e) < 0)
                        log_warn("output_shipper_respawn_failed", "error=\"%s\"", e.message);
        }
}

bool output_can_accept(struct output *o)
{
        if (!o->ship)
                return true;
        uint64_t b = backlog(o);
        if (b > spool_load(&o->st->backlog_peak))
                spool_store(&o->st->backlog_peak, b);
        if (b < o->spool_max)
                return true;
        check_shipper(o);
        return false;
}

static json_t *end_json(const struct output_step_end *res, uint64_t length)
{
        return json_pack("{s:i, s:i, s:s, s:s?, s:I, s:I}", "exit_code", res->exit_code, "signal",
                         res->signal, "status", res->status ? res->status : "?", "reason",
                         res->reason, "duration_ms", (json_int_t)res->duration_ms, "length",
                         (json_int_t)length);
}

/* Write <spool>/N.json atomically (takes the reference to j). */
static int write_step_json(struct output *o, unsigned sidx, json_t *j)
{
        if (!j)
                return -ENOMEM;
        char *txt = json_dumps(j, JSON_COMPACT);
        json_decref(j);
        if (!txt)
                return -ENOMEM;
        char name[32], tmp[40];
        snprintf(name, sizeof(name), "%u.json", sidx);
        snprintf(tmp, sizeof(tmp), "%u.json.tmp", sidx);
        int fd =
            openat(o->spool_fd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
        int r = fd < 0 ? -errno : drv_write_all(fd, txt, strlen(txt));
        free(txt);
        if (fd >= 0)
                close(fd);
        if (r == 0 && renameat(o->spool_fd, tmp, o->spool_fd, name) < 0)
                r = -errno;
        return r;
}

static int spool_json(struct output *o, unsigned idx, const struct output_step_end *res)
{
        struct stream *s = &o->streams[idx];
        json_t *j = json_pack("{s:s, s:b, s:I}", "name", s->name, "background", s->background,
                              "begin_ns", (json_int_t)s->started_ns);
        if (j && res)
                json_object_set_new(j, "end", end_json(res, s->written));
        return write_step_json(o, o->base + idx, j);
}

/* A spool left by an earlier run of this job (drover job crashed): stop its shipper if it still
 * runs, end the steps it left open, and number this run's steps after its steps. */
static int recover_spool(struct output *o, int state_fd, struct drv_error *err)
{
        struct spool_state *st = o->st;
        for (int i = 0; flock(state_fd, LOCK_EX | LOCK_NB) < 0; i++) {
                if (errno != EWOULDBLOCK && errno != EINTR)
                        return drv_err_errno(err, "cannot lock %s/state", o->spool_path);
                pid_t old = (pid_t)st->shipper_pid;
                if (i == 0 && old > 1) { /* the lock holder: the earlier run's shipper */
                        log_info("output_spool_takeover", "job=%s old_shipper=%d", o->job_id,
                                 (int)old);
                        kill(old, SIGTERM);
                }
                if (i == 1500)
                        return drv_err(err, EBUSY, "the spool %s stays in use (shipper pid %d)",
                                       o->spool_path, (int)old);
                struct timespec ts = {0, 10 * 1000000L};
                nanosleep(&ts, NULL);
        }
        flock(state_fd, LOCK_UN); /* the new shipper takes it */
        uint32_t n = st->n_steps < SPOOL_MAX_STEPS ? st->n_steps : SPOOL_MAX_STEPS;
        uint64_t unacked = 0;
        unsigned reopened = 0;
        for (unsigned i = 0; i < n; i++) {
                if (st->state[i] == SPOOL_UNUSED)
                        continue;
                char fn[32];
                snprintf(fn, sizeof(fn), "%u.data", i);
                struct stat sb;
                /* bytes the crashed writer spooled but had not published yet go out too */
                if (fstatat(o->spool_fd, fn, &sb, 0) == 0 && (uint64_t)sb.st_size > st->written[i])
                        st->written[i] = (uint64_t)sb.st_size;
                if (st->acked[i] > st->written[i])
                        st->acked[i] = st->written[i];
                unacked += st->written[i] - st->acked[i];
                if (st->state[i] != SPOOL_OPEN)
                        continue;
                snprintf(fn, sizeof(fn), "%u.json", i);
                json_t *j = NULL;
                int fd = openat(o->spool_fd, fn, O_RDONLY | O_CLOEXEC);
                if (fd >= 0) {
                        j = json_loadfd(fd, 0, NULL);
                        close(fd);
                }
                if (!json_is_object(j)) {
                        json_decref(j);
                        char name[32];
                        snprintf(name, sizeof(name), "step %u", i);
                        j = json_pack("{s:s, s:b, s:I}", "name", name, "background", 0, "begin_ns",
                                      (json_int_t)0);
                }
                struct output_step_end res = {
                    .exit_code = -1,
                    .status = "canceled",
                    .reason = "the job supervisor stopped before the step ended (drover job was "
                              "restarted)"};
                if (j)
                        json_object_set_new(j, "end", end_json(&res, st->written[i]));
                int r = write_step_json(o, i, j);
                if (r < 0)
                        return drv_err(err, -r, "cannot end step %u of the old spool", i);
                __atomic_store_n(&st->state[i], SPOOL_ENDED, __ATOMIC_RELEASE);
                reopened++;
        }
        st->closing = 0;
        o->base = n;
        log_info("output_spool_recovered", "job=%s steps=%u ended=%u unacked=%llu", o->job_id, n,
                 reopened, (unsigned long long)unacked);
        return 0;
}

/* The spool directory: the operator's (created if missing), else a fresh private one made by
 * mkdtemp (0700, never an existing path: a name planted in a shared /tmp is not followed). */
static int make_spool_dir(struct output *o, struct drv_error *err)
{
        if (o->cfg.spool_dir) {
                o->spool_path = strdup(o->cfg.spool_dir);
                if (!o->spool_path)
                        return drv_err(err, ENOMEM, "out of memory");
                if (drv_mkdir_p(o->spool_path, 0700, err) < 0)
                        return drv_err_prefix(err, "output spool");
                return 0;
        }
        const char *tmp = getenv("TMPDIR");
        if (asprintf(&o->spool_path, "%s/drover-spool-%s-XXXXXX", tmp && *tmp ? tmp : "/tmp",
                     o->job_id) < 0) {
                o->spool_path = NULL;
                return drv_err(err, ENOMEM, "out of memory");
        }
        if (!mkdtemp(o->spool_path))
                return drv_err_errno(err, "cannot create the output spool %s", o->spool_path);
        return 0;
}

static int open_spool(struct output *o, struct drv_error *err)
{
        if (make_spool_dir(o, err) < 0)
                return -err->code;
        /* O_NOFOLLOW: the last component is never a link (the operator's dir included) */
        o->spool_fd = open(o->spool_path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (o->spool_fd < 0)
                return drv_err_errno(err, "cannot open the spool %s", o->spool_path);
        o->lock_fd =
            openat(o->spool_fd, "writer.lock", O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (o->lock_fd < 0)
                return drv_err_errno(err, "cannot create %s/writer.lock", o->spool_path);
        if (flock(o->lock_fd, LOCK_EX | LOCK_NB) < 0)
                return drv_err(err, EBUSY, "the spool %s is in use: job %s runs already",
                               o->spool_path, o->job_id);
        _cleanup_close_ int fd =
            openat(o->spool_fd, "state", O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
        struct stat sb;
        if (fd < 0 || fstat(fd, &sb) < 0)
                return drv_err_errno(err, "cannot open %s/state", o->spool_path);
        bool old = sb.st_size == (off_t)sizeof(struct spool_state);
        if (!old && (ftruncate(fd, 0) < 0 || ftruncate(fd, sizeof(struct spool_state)) < 0))
                return drv_err_errno(err, "cannot create %s/state", o->spool_path);
        void *p = mmap(NULL, sizeof(struct spool_state), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (p == MAP_FAILED)
                return drv_err_errno(err, "cannot map %s/state", o->spool_path);
        o->st = p;
        if (old && o->st->magic == SPOOL_MAGIC) {
                if (recover_spool(o, fd, err) < 0)
                        return -err->code;
        } else if (old) { /* not ours (another version): start afresh */
                log_warn("output_spool_reset", "spool=%s", o->spool_path);
                memset(o->st, 0, sizeof(*o->st));
        }
        o->st->magic = SPOOL_MAGIC;
        int pfd[2];
        if (pipe2(pfd, O_CLOEXEC | O_NONBLOCK) < 0)
                return drv_err_errno(err, "pipe");
        o->wake_r = pfd[0];
        o->wake_w = pfd[1];
        return spawn_shipper(o, err);
}

static int spawn_shipper(struct output *o, struct drv_error *err)
{
        fflush(NULL);
        pid_t pid = fork();
        if (pid < 0)
                return drv_err_errno(err, "cannot start the output shipper");
        if (pid == 0) {
                close(o->wake_w);
                shipper_main(&o->cfg, o->spool_fd, o->st, o->wake_r);
        }
        o->shipper = pid;
        o->st->shipper_pid = (uint64_t)pid;
        return 0;
}

int output_open(const struct output_config *cfg, struct output **out, struct drv_error *err)
{
        struct output *o = calloc(1, sizeof(*o));
        if (!o)
                return drv_err(err, ENOMEM, "out of memory");
        o->spool_fd = o->wake_r = o->wake_w = o->lock_fd = -1;
        o->last_term_stream = -1;
        o->fd = cfg->terminal_fd;
        o->color = cfg->color;
        o->opened_ns = drv_now_ns();
        o->cfg = *cfg;
        o->job_id = strdup(cfg->job_id ? cfg->job_id : "job");
        o->cfg.job_id = o->job_id;
        o->cfg.secrets = NULL;
        errno = 0;
        o->masker = masker_new(cfg->secrets);
        if (!o->masker || !o->job_id) {
                output_free(o);
                return drv_err(err, errno ? errno : ENOMEM, "output: cannot build the masker");
        }
        o->ship = cfg->url && strcmp(cfg->url, "terminal") != 0;
        if (o->ship) {
                if (strncmp(cfg->url, "http://", 7) != 0 && strncmp(cfg->url, "https://", 8) != 0) {
                        output_free(o);
                        return drv_err(err, EINVAL, "output url %s: want http(s)://", cfg->url);
                }
                o->url = strdup(cfg->url);
                o->token = cfg->token ? strdup(cfg->token) : NULL;
                o->ca_pem = cfg->ca_pem ? strdup(cfg->ca_pem) : NULL;
                o->attempt = cfg->attempt ? strdup(cfg->attempt) : NULL;
                o->cfg.attempt = o->attempt;
                o->cfg.url = o->url;
                o->cfg.token = o->token;
                o->cfg.ca_pem = o->ca_pem;
                o->spool_max = cfg->spool_max_bytes ? cfg->spool_max_bytes : DEFAULT_SPOOL_MAX;
                if (open_spool(o, err) < 0) {
                        output_free(o);
                        return -err->code;
                }
        }
        *out = o;
        return 0;
}

char *output_mask(const struct output *o, const char *text)
{
        return mask_text(o ? o->masker : NULL, text ? text : "");
}

int output_step_begin(struct output *o, unsigned idx, const char *name, bool background,
                      struct drv_error *err)
{
        struct stream *s = o->base + idx < SPOOL_MAX_STEPS ? stream_get(o, idx, true) : NULL;
        if (!s)
                return drv_err(err, ENOMEM, "output: cannot open step %u", idx);
        if (s->open || s->name)
                return drv_err(err, EEXIST, "output: step %u was already begun", idx);
        s->name = output_mask(o, name); /* shown in headers, prefixes, footers and the spool */
        if (!s->name)
                return drv_err(err, ENOMEM, "out of memory");
        s->open = true;
        s->background = background;
        s->started_ns = wall_ns();
        int r;
        if (o->ship) {
                unsigned sidx = o->base + idx;
                char fn[32];
                snprintf(fn, sizeof(fn), "%u.data", sidx);
                s->data_fd = openat(o->spool_fd, fn,
                                    O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
                snprintf(fn, sizeof(fn), "%u.ts", sidx);
                s->ts_fd = openat(o->spool_fd, fn,
                                  O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
                if (s->data_fd < 0 || s->ts_fd < 0)
                        return drv_err_errno(err, "cannot create the spool of step %u", idx);
                if ((r = spool_json(o, idx, NULL)) < 0)
                        return drv_err(err, -r, "cannot write the spool of step %u", idx);
                if (sidx + 1 > o->st->n_steps)
                        __atomic_store_n(&o->st->n_steps, sidx + 1, __ATOMIC_RELEASE);
                __atomic_store_n(&o->st->state[sidx], SPOOL_OPEN, __ATOMIC_RELEASE);
                wake_shipper(o);
        }
        struct strbuf line = STRBUF_INIT;
        struct strbuf el = STRBUF_INIT;
        fmt_elapsed(&el, drv_now_ns() - o->opened_ns);
        if (o->color)
                strbuf_printf(&line, "\033[2m[%s]\033[0m \033[1;%sm==> %s%s\033[0m\n", el.buf,
                              background ? "35" : "36", background ? "(background) " : "", s->name);
        else
                strbuf_printf(&line, "==> %s%s\n", background ? "(background) " : "", s->name);
        r = term_break(o);
        if (r == 0)
                r = term_write(o, line.buf, line.len);
        strbuf_release(&line);
        strbuf_release(&el);
        return r < 0 ? drv_err(err, -r, "cannot write to the terminal") : 0;
}

int output_step_write(struct output *o, unsigned idx, const void *buf, size_t n,
                      struct drv_error *err)
{
        struct stream *s = stream_get(o, idx, false);
        if (!s || !s->open)
                return drv_err(err, EINVAL, "output: step %u is not open", idx);
        if (o->ship && !output_can_accept(o))
                return drv_err(err, EAGAIN, "output: the spool is full");
        struct emit_ctx e = {o, idx, 0};
        int r = mask_feed(o->masker, &s->ms, buf, n, emit_masked, &e);
        if (r == 0)
                r = spool_commit(o, idx);
        return r < 0 ? drv_err(err, -r, "output: cannot write step %u", idx) : 0;
}

int output_step_printf(struct output *o, unsigned idx, const char *fmt, ...)
{
        struct strbuf sb = STRBUF_INIT;
        va_list ap;
        va_start(ap, fmt);
        int r = strbuf_vprintf(&sb, fmt, ap);
        va_end(ap);
        if (r == 0 && (sb.len == 0 || sb.buf[sb.len - 1] != '\n'))
                r = strbuf_putc(&sb, '\n');
        struct stream *s = stream_get(o, idx, false);
        if (r == 0 && (!s || !s->open))
                r = -EINVAL;
        if (r == 0) {
                /* drover's own lines are never refused: they are small and rare */
                struct emit_ctx e = {o, idx, 0};
                r = mask_feed(o->masker, &s->ms, sb.buf, sb.len, emit_masked, &e);
                if (r == 0)
                        r = spool_commit(o, idx);
        }
        strbuf_release(&sb);
        return r;
}

/* The step's last line on the terminal: status, reason (when it adds something), duration. */
static int term_step_end(struct output *o, const struct stream *s,
                         const struct output_step_end *res)
{
        bool ok = res->status && strcmp(res->status, "success") == 0;
        const char *status = res->status ? res->status : "?";
        struct strbuf line = STRBUF_INIT, d = STRBUF_INIT;
        fmt_elapsed(&d, res->duration_ms * 1000000ULL);
        /* a step drover stopped (cancel, timeout) says so; the signal it was sent is noise */
        bool stopped = strcmp(status, "canceled") == 0 || strcmp(status, "timedout") == 0;
        if (res->exit_code >= 0 && !ok)
                strbuf_printf(&d, ", exit %d", res->exit_code);
        else if (res->signal && !stopped)
                strbuf_printf(&d, ", signal %d", res->signal);
        const char *shown = res->reason && strcmp(res->reason, status) ? res->reason : NULL;
        if (o->color)
                strbuf_printf(&line, "\033[%sm<== %s%s: %s%s%s\033[0m \033[2m(%s)\033[0m\n",
                              ok ? "32" : "1;31", s->background ? "(background) " : "", s->name,
                              status, shown ? " — " : "", shown ? shown : "", d.buf);
        else
                strbuf_printf(&line, "<== %s%s: %s%s%s (%s)\n",
                              s->background ? "(background) " : "", s->name, status,
                              shown ? " — " : "", shown ? shown : "", d.buf);
        int r = term_break(o);
        if (r == 0)
                r = term_write(o, line.buf, line.len);
        strbuf_release(&line);
        strbuf_release(&d);
        return r;
}

int output_step_end(struct output *o, unsigned idx, const struct output_step_end *given,
                    struct drv_error *err)
{
        struct stream *s = stream_get(o, idx, false);
        if (!s || !s->open)
                return drv_err(err, EINVAL, "output: step %u is not open", idx);
        struct output_step_end masked = *given, *res = &masked;
        _cleanup_free_ char *reason = given->reason ? output_mask(o, given->reason) : NULL;
        if (given->reason && !reason)
                return drv_err(err, ENOMEM, "out of memory");
        masked.reason = reason;
        struct emit_ctx e = {o, idx, 0};
        int r = mask_flush(o->masker, &s->ms, emit_masked, &e);
        if (r == 0)
                r = spool_commit(o, idx);
        s->open = false;
        if (r < 0)
                return drv_err(err, -r, "output: cannot flush step %u", idx);
        if (o->ship) {
                if ((r = spool_json(o, idx, res)) < 0)
                        return drv_err(err, -r, "cannot write the spool of step %u", idx);
                __atomic_store_n(&o->st->state[o->base + idx], SPOOL_ENDED, __ATOMIC_RELEASE);
                wake_shipper(o);
        }
        if (o->fd < 0)
                return 0;
        r = term_step_end(o, s, res);
        return r < 0 ? drv_err(err, -r, "cannot write to the terminal") : 0;
}

static bool all_acked(struct output *o)
{
        uint32_t n = __atomic_load_n(&o->st->n_steps, __ATOMIC_ACQUIRE);
        for (size_t i = 0; i < n && i < SPOOL_MAX_STEPS; i++) {
                uint8_t stt = __atomic_load_n(&o->st->state[i], __ATOMIC_ACQUIRE);
                if (stt == SPOOL_UNUSED ||
                    (__atomic_load_n(&o->st->sent[i], __ATOMIC_ACQUIRE) & SPOOL_SENT_LOST))
                        continue;
                if (spool_load(&o->st->acked[i]) < spool_load(&o->st->written[i]))
                        return false;
                uint8_t sent = __atomic_load_n(&o->st->sent[i], __ATOMIC_ACQUIRE);
                if (stt == SPOOL_ENDED && !(sent & SPOOL_SENT_END))
                        return false;
        }
        return true;
}

int output_close(struct output *o, uint64_t timeout_ms, struct drv_error *err)
{
        int r = 0;
        for (size_t i = 0; i < o->n_streams; i++)
                if (o->streams[i].open) {
                        struct emit_ctx e = {o, (unsigned)i, 0};
                        r = mask_flush(o->masker, &o->streams[i].ms, emit_masked, &e);
                        if (r == 0)
                                r = spool_commit(o, (unsigned)i);
                        if (r < 0)
                                return drv_err(err, -r, "output: cannot flush step %zu", i);
                }
        if (o->fd >= 0 && (r = term_break(o)) < 0)
                return drv_err(err, -r, "cannot write to the terminal");
        if (!o->ship || o->shipper <= 0)
                return 0;
        __atomic_store_n(&o->st->closing, 1, __ATOMIC_RELEASE);
        wake_shipper(o);
        uint64_t deadline = drv_now_ns() + timeout_ms * 1000000ULL;
        while (!all_acked(o) && drv_now_ns() < deadline) {
                check_shipper(o);
                struct timespec ts = {0, 10 * 1000000L};
                nanosleep(&ts, NULL);
        }
        bool done = all_acked(o);
        kill(o->shipper, SIGTERM);
        DRV_RETRY(waitpid(o->shipper, NULL, 0));
        o->shipper = 0;
        if (!done)
                return drv_err(
                    err, ETIMEDOUT,
                    "output: the processor did not acknowledge everything within %llu ms "
                    "(spool kept in %s)",
                    (unsigned long long)timeout_ms, o->spool_path);
        return 0;
}

void output_free(struct output *o)
{
        if (!o)
                return;
        if (o->shipper > 0) {
                kill(o->shipper, SIGTERM);
                DRV_RETRY(waitpid(o->shipper, NULL, 0));
        }
        bool clean = o->st && all_acked(o);
        for (size_t i = 0; i < o->n_streams; i++) {
                free(o->streams[i].name);
                mask_stream_release(&o->streams[i].ms);
                strbuf_release(&o->streams[i].pend);
                if (o->streams[i].data_fd >= 0)
                        close(o->streams[i].data_fd);
                if (o->streams[i].ts_fd >= 0)
                        close(o->streams[i].ts_fd);
        }
        if (o->st)
                munmap(o->st, sizeof(*o->st));
        if (o->spool_fd >= 0)
                close(o->spool_fd);
        if (clean && o->spool_path)
                drv_rm_rf(o->spool_path, NULL); /* everything acknowledged: nothing to resend */
        if (o->wake_r >= 0)
                close(o->wake_r);
        if (o->lock_fd >= 0)
                close(o->lock_fd);
        if (o->wake_w >= 0)
                close(o->wake_w);
        free(o->streams);
        masker_free(o->masker);
        free(o->spool_path);
        free(o->job_id);
        free(o->url);
        free(o->token);
        free(o->ca_pem);
        free(o->attempt);
        free(o);
}

/* A job spool nobody uses (both locks free) whose newest file is older than cutoff. */
static bool spool_stale(int dfd, time_t cutoff)
{
        _cleanup_close_ int wl = openat(dfd, "writer.lock", O_RDWR | O_CLOEXEC);
        _cleanup_close_ int sl = openat(dfd, "state", O_RDWR | O_CLOEXEC);
        if (wl < 0 || sl < 0 || flock(wl, LOCK_EX | LOCK_NB) < 0 ||
            flock(sl, LOCK_EX | LOCK_NB) < 0)
                return false; /* not ours, or in use: a writer or a shipper holds it */
        DIR *d = fdopendir(dup(dfd));
        if (!d)
                return false;
        bool old = true;
        struct dirent *de;
        while (old && (de = readdir(d))) {
                struct stat sb;
                if (de->d_name[0] != '.' && fstatat(dfd, de->d_name, &sb, 0) == 0 &&
                    sb.st_mtime >= cutoff)
                        old = false;
        }
        closedir(d);
        return old;
}

int output_spool_gc(const char *root, uint64_t max_age_s)
{
        DIR *d = opendir(root);
        if (!d)
                return 0;
        time_t cutoff = time(NULL) - (time_t)max_age_s;
        int removed = 0;
        struct dirent *de;
        while ((de = readdir(d))) {
                if (strncmp(de->d_name, "job-", 4) != 0)
                        continue;
                _cleanup_close_ int dfd =
                    openat(dirfd(d), de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                if (dfd < 0 || !spool_stale(dfd, cutoff))
                        continue;
                _cleanup_free_ char *path = NULL;
                if (asprintf(&path, "%s/%s", root, de->d_name) < 0)
                        continue;
                if (drv_rm_rf(path, NULL) == 0) {
                        log_info("output_spool_removed", "spool=%s reason=stale", path);
                        removed++;
                }
        }
        closedir(d);
        return removed;
}

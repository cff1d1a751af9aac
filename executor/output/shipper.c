/* shipper.c: the child process that sends the spool to the output processor (protocol in
 * docs/protocol-output.md). The spool on disk is its only interface with the writer: it reads
 * step bytes and chunk timestamps from the files, and publishes the acknowledged offsets in the
 * shared state map. Reconnects with exponential backoff and jitter; never drops a byte. */
#include "executor/output.h"
#include "executor/output/spool.h"

#include <jansson.h>

#include <curl/curl.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>

#define BATCH_MAX     (4u << 20)
#define BATCH_MIN     (256u << 10)
#define BATCH_FRAMES  65536 /* frames per batch at most (many tiny writes) */
#define BATCH_AGE_NS  (100ULL * 1000000ULL)
#define PUNCH_MIN     (1u << 20)
#define BACKOFF_MIN   100 /* ms */
#define BACKOFF_MAX   2000
#define ORPHAN_GIVEUP (600ULL * 1000000000ULL)
#define CT_BATCH      "application/vnd.drover.output.v1"

struct sstep {
        int data_fd, ts_fd;
        uint64_t ts_pos; /* file position of a ts record at or before the acknowledged offset */
        uint64_t first_unsent_ns;
        uint64_t punched;    /* N.data is punched out below this offset */
        uint64_t ts_punched; /* N.ts is punched out below this file position */
        uint64_t ts_floor;   /* stream offset whose chunk record is the first one kept */
};

struct ship {
        const struct output_config *cfg;
        int spool_fd;
        struct spool_state *st;
        CURL *curl;
        char *job_esc;
        struct sstep steps[SPOOL_MAX_STEPS];
        unsigned char *data; /* [a, b) read at once when the frames are small */
        struct frame *frames;
        size_t n_frames;
};

/* One frame of a batch: the chunk [off, off + len) of the step stream, written at ns. */
struct frame {
        uint64_t ns, off;
        uint32_t len;
};

/* The request body of a batch, produced as libcurl asks for it: frame headers, and the bytes
 * pread straight from the spool into libcurl's upload buffer (or from sh->data when staged). */
struct body {
        struct ship *sh;
        int fd;
        uint64_t a;  /* stream offset of the batch */
        bool staged; /* the bytes are in sh->data */
        size_t i;    /* current frame */
        size_t in;   /* bytes of frame i produced (12 header bytes, then data) */
};

static volatile sig_atomic_t stop;
static void on_term(int sig)
{
        (void)sig;
        stop = 1;
}

/* A SIGTERM (a restarted drover job takes the spool over) aborts a request under way. */
static int on_progress(void *ud, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un)
{
        return stop ? 1 : 0;
}

static size_t on_body(char *p, size_t sz, size_t n, void *ud)
{
        struct strbuf *sb = ud;
        if (sb->len < 65536)
                strbuf_append(sb, p, sz * n);
        return sz * n;
}

/* One request. Returns the HTTP status, or -EIO when the processor could not be reached. */
static long request(struct ship *sh, const char *method, unsigned idx, const char *what,
                    const char *ctype, int64_t offset, const void *body, size_t n,
                    struct body *stream, uint64_t *next_offset)
{
        char url[2048];
        snprintf(url, sizeof(url), "%s/v1/jobs/%s/steps/%u%s%s", sh->cfg->url, sh->job_esc, idx,
                 what ? "/" : "", what ? what : "");
        struct curl_slist *h = NULL;
        char line[600];
        if (sh->cfg->token) {
                snprintf(line, sizeof(line), "Authorization: Bearer %s", sh->cfg->token);
                h = curl_slist_append(h, line);
        }
        snprintf(line, sizeof(line), "Content-Type: %s", ctype);
        h = curl_slist_append(h, line);
        h = curl_slist_append(h, "Drover-Output-Version: 1");
        if (sh->cfg->attempt) { /* streams are (job, attempt, step) for a processor that knows it */
                snprintf(line, sizeof(line), "Drover-Attempt: %s", sh->cfg->attempt);
                h = curl_slist_append(h, line);
        }
        h = curl_slist_append(h, "Expect:");
        if (offset >= 0) {
                snprintf(line, sizeof(line), "Drover-Offset: %lld", (long long)offset);
                h = curl_slist_append(h, line);
        }
        struct strbuf resp = STRBUF_INIT;
        CURL *c = sh->curl;
        curl_easy_setopt(c, CURLOPT_URL, url);
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
        curl_easy_setopt(c, CURLOPT_POST, 1L);
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, stream ? NULL : body);
        curl_easy_setopt(c, CURLOPT_READDATA, stream);
        curl_easy_setopt(c, CURLOPT_SEEKDATA, stream);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)n);
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
        curl_easy_setopt(c, CURLOPT_WRITEDATA, &resp);
        CURLcode cc = curl_easy_perform(c);
        long status = -EIO;
        if (cc == CURLE_OK)
                curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
        else
                log_debug("output_send_failed", "step=%u error=\"%s\"", idx,
                          curl_easy_strerror(cc));
        curl_slist_free_all(h);
        if (status > 0 && next_offset) {
                json_t *j = resp.buf ? json_loadb(resp.buf, resp.len, 0, NULL) : NULL;
                json_t *v = j ? json_object_get(j, "next_offset") : NULL;
                if (json_is_integer(v) && json_integer_value(v) >= 0)
                        *next_offset = (uint64_t)json_integer_value(v);
                else if (status == 200 || status == 409)
                        status = -EPROTO;
                json_decref(j);
        }
        if (status >= 400 && status != 409)
                log_warn("output_rejected", "step=%u status=%ld body=\"%.200s\"", idx, status,
                         resp.buf ? resp.buf : "");
        strbuf_release(&resp);
        return status;
}

static int open_step(struct ship *sh, unsigned idx)
{
        struct sstep *ss = &sh->steps[idx];
        if (ss->data_fd >= 0)
                return 0;
        char fn[32];
        snprintf(fn, sizeof(fn), "%u.data", idx);
        ss->data_fd = openat(sh->spool_fd, fn, O_RDWR | O_CLOEXEC);
        snprintf(fn, sizeof(fn), "%u.ts", idx);
        ss->ts_fd = openat(sh->spool_fd, fn, O_RDWR | O_CLOEXEC);
        if (ss->data_fd < 0 || ss->ts_fd < 0)
                return -errno;
        /* what an earlier shipper (of this run or a crashed one) already trimmed */
        ss->punched = spool_load(&sh->st->acked[idx]) & ~4095ULL;
        ss->ts_pos = spool_load(&sh->st->ts_pos[idx]);
        ss->ts_punched = ss->ts_pos & ~4095ULL;
        struct spool_ts rec;
        if (ss->ts_punched &&
            pread(ss->ts_fd, &rec, sizeof(rec), (off_t)ss->ts_punched) == (ssize_t)sizeof(rec))
                ss->ts_floor = rec.offset;
        return 0;
}

/* The chunk records before the one covering the acknowledged offset leave the disk too. */
static void trim_ts(struct ship *sh, unsigned idx)
{
        struct sstep *ss = &sh->steps[idx];
        spool_store(&sh->st->ts_pos[idx], ss->ts_pos);
        uint64_t upto = ss->ts_pos & ~4095ULL;
        if (upto <= ss->ts_punched)
                return;
        struct spool_ts rec;
        if (pread(ss->ts_fd, &rec, sizeof(rec), (off_t)upto) != (ssize_t)sizeof(rec))
                return;
        if (fallocate(ss->ts_fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)ss->ts_punched,
                      (off_t)(upto - ss->ts_punched)) == 0) {
                ss->ts_punched = upto;
                ss->ts_floor = rec.offset;
        }
}

/* The frames of [a, b): one per chunk (ts record) overlapping the range, at most BATCH_FRAMES
 * (b is lowered then). Returns the body length (12 header bytes + data per frame) or -errno. */
static ssize_t build_frames(struct ship *sh, unsigned idx, uint64_t a, uint64_t *pb)
{
        struct sstep *ss = &sh->steps[idx];
        struct spool_ts recs[256];
        uint64_t b = *pb, pos = ss->ts_pos, cur_ns = 0, cur_pos = ss->ts_pos;
        bool have = false;
        size_t frames = 0;
        uint64_t at = a;
        for (;;) {
                ssize_t r = pread(ss->ts_fd, recs, sizeof(recs), (off_t)pos);
                if (r < 0)
                        return -errno;
                size_t nr = (size_t)r / sizeof(recs[0]);
                size_t i;
                for (i = 0; i < nr; i++) {
                        struct spool_ts *t = &recs[i];
                        if (t->offset <= a) {
                                cur_ns = t->ns;
                                cur_pos = pos + i * sizeof(recs[0]);
                                have = true;
                                continue;
                        }
                        if (t->offset >= b)
                                break;
                        if (frames + 1 == BATCH_FRAMES) { /* the rest goes in the next batch */
                                b = t->offset;
                                break;
                        }
                        sh->frames[frames++] = (struct frame){
                            .ns = cur_ns, .off = at, .len = (uint32_t)(t->offset - at)};
                        at = t->offset;
                        cur_ns = t->ns;
                }
                if (i < nr || nr == 0)
                        break;
                pos += nr * sizeof(recs[0]);
        }
        if (!have && ss->ts_pos > ss->ts_punched) { /* the processor went back: rescan */
                ss->ts_pos = ss->ts_punched;
                return build_frames(sh, idx, a, pb);
        }
        sh->frames[frames++] = (struct frame){.ns = cur_ns, .off = at, .len = (uint32_t)(b - at)};
        sh->n_frames = frames;
        ss->ts_pos = cur_pos;
        *pb = b;
        return (ssize_t)(12 * frames + (b - a));
}

static void put_be(unsigned char *p, uint64_t v, int bytes)
{
        for (int i = bytes - 1; i >= 0; i--, v >>= 8)
                p[i] = (unsigned char)v;
}

static size_t on_read(char *buf, size_t sz, size_t nitems, void *ud)
{
        struct body *bd = ud;
        struct ship *sh = bd->sh;
        size_t cap = sz * nitems, out = 0;
        while (out < cap && bd->i < sh->n_frames) {
                const struct frame *f = &sh->frames[bd->i];
                size_t k;
                if (bd->in < 12) {
                        unsigned char h[12];
                        put_be(h, f->ns, 8);
                        put_be(h + 8, f->len, 4);
                        k = 12 - bd->in < cap - out ? 12 - bd->in : cap - out;
                        memcpy(buf + out, h + bd->in, k);
                } else {
                        size_t done = bd->in - 12;
                        k = f->len - done < cap - out ? f->len - done : cap - out;
                        if (bd->staged) {
                                memcpy(buf + out, sh->data + (f->off - bd->a) + done, k);
                        } else {
                                ssize_t g = pread(bd->fd, buf + out, k, (off_t)(f->off + done));
                                if (g < 0 && errno == EINTR)
                                        continue;
                                if (g <= 0)
                                        return CURL_READFUNC_ABORT;
                                k = (size_t)g;
                        }
                }
                out += k;
                bd->in += k;
                if (bd->in == 12 + (size_t)f->len) {
                        bd->i++;
                        bd->in = 0;
                }
        }
        return out;
}

/* libcurl rewinds the body to resend it on a fresh connection (a reused one had died). */
static int on_seek(void *ud, curl_off_t offset, int origin)
{
        struct body *bd = ud;
        if (offset != 0 || origin != SEEK_SET)
                return CURL_SEEKFUNC_CANTSEEK;
        bd->i = 0;
        bd->in = 0;
        return CURL_SEEKFUNC_OK;
}

static char *read_json(struct ship *sh, unsigned idx)
{
        char fn[32];
        snprintf(fn, sizeof(fn), "%u.json", idx);
        int fd = openat(sh->spool_fd, fn, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return NULL;
        char *buf = NULL;
        size_t len;
        int r = drv_read_fd(fd, &buf, &len, 1 << 20, NULL);
        close(fd);
        return r < 0 ? NULL : buf;
}

/* Adopt the processor's next expected offset. Returns -1 for an answer we cannot follow: beyond
 * what was written, or back into bytes already punched out of the spool. */
static int set_acked(struct ship *sh, unsigned idx, uint64_t next, uint64_t written)
{
        struct sstep *ss = &sh->steps[idx];
        if (next > written || next < ss->punched || next < ss->ts_floor) {
                log_warn("output_bad_ack",
                         "step=%u next_offset=%llu written=%llu spooled_from=%llu", idx,
                         (unsigned long long)next, (unsigned long long)written,
                         (unsigned long long)ss->punched);
                return -1;
        }
        spool_store(&sh->st->acked[idx], next);
        uint64_t upto = next & ~4095ULL;
        /* acknowledged bytes leave the disk (offsets stay): a MiB at a time, or all of them once
         * the processor has everything (punching takes the file's lock the writer needs too) */
        if (upto > ss->punched && ss->data_fd >= 0 &&
            (upto - ss->punched >= PUNCH_MIN || next == written)) {
                fallocate(ss->data_fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                          (off_t)ss->punched, (off_t)(upto - ss->punched));
                ss->punched = upto;
        }
        return 0;
}

/* The processor answered 404 for a step's output or end: it has not (or no longer) the step's
 * begin record. The begin goes again on the next pass. */
static void lost_begin(struct ship *sh, unsigned idx)
{
        log_warn("output_step_not_begun", "step=%u action=begin_again", idx);
        __atomic_and_fetch(&sh->st->sent[idx], (uint8_t)~SPOOL_SENT_BEGIN, __ATOMIC_RELEASE);
}

/* The processor wants bytes of the step the spool no longer has (it lost acknowledged data):
 * nothing can satisfy it, so the step is given up (logged once) and the other steps go on. */
static bool give_up_step(struct ship *sh, unsigned idx, uint64_t next)
{
        struct sstep *ss = &sh->steps[idx];
        if (next >= ss->punched && next >= ss->ts_floor)
                return false;
        log_error("output_stream_lost",
                  "step=%u next_offset=%llu spooled_from=%llu action=give_up_step", idx,
                  (unsigned long long)next, (unsigned long long)ss->punched);
        __atomic_or_fetch(&sh->st->sent[idx], SPOOL_SENT_LOST, __ATOMIC_RELEASE);
        return true;
}

/* Send the step's pending bytes [a, w) in one batch. 1 sent, 0 not due yet, -1 failed. */
static int ship_bytes(struct ship *sh, unsigned idx, uint8_t state, bool closing, int *wait_ms)
{
        struct spool_state *st = sh->st;
        struct sstep *ss = &sh->steps[idx];
        uint64_t w = spool_load(&st->written[idx]), a = spool_load(&st->acked[idx]), next = 0;
        uint64_t now = drv_now_ns();
        if (!ss->first_unsent_ns)
                ss->first_unsent_ns = now;
        uint64_t age = now - ss->first_unsent_ns;
        if (w - a < BATCH_MIN && age < BATCH_AGE_NS && !closing && state != SPOOL_ENDED) {
                int left = (int)((BATCH_AGE_NS - age) / 1000000ULL) + 1;
                if (left < *wait_ms)
                        *wait_ms = left;
                return 0;
        }
        uint64_t b = w - a > BATCH_MAX ? a + BATCH_MAX : w;
        ssize_t len = build_frames(sh, idx, a, &b);
        if (len < 0)
                return -1;
        struct body bd = {.sh = sh, .fd = ss->data_fd, .a = a};
        /* many small frames: one pread of the range, not one per frame */
        if (sh->n_frames > 1 && (b - a) / sh->n_frames < 8192) {
                ssize_t got = pread(ss->data_fd, sh->data, b - a, (off_t)a);
                if (got != (ssize_t)(b - a))
                        return -1;
                bd.staged = true;
        }
        long s =
            request(sh, "POST", idx, "output", CT_BATCH, (int64_t)a, NULL, (size_t)len, &bd, &next);
        if (s == 404)
                lost_begin(sh, idx);
        /* a 409 naming the offset that was sent moves nothing: back off like a failure */
        if ((s != 200 && s != 409) || (s == 409 && next == a))
                return -1;
        if (give_up_step(sh, idx, next))
                return 1;
        if (set_acked(sh, idx, next, w) < 0)
                return -1;
        trim_ts(sh, idx);
        ss->first_unsent_ns = spool_load(&st->acked[idx]) < w ? now : 0;
        return 1;
}

/* The step's end record, once every byte is acknowledged. 1 sent, -1 failed or to repeat. */
static int ship_end(struct ship *sh, unsigned idx, uint64_t w)
{
        struct spool_state *st = sh->st;
        uint64_t next = 0;
        _cleanup_free_ char *j = read_json(sh, idx);
        long s = j ? request(sh, "POST", idx, "end", "application/json", (int64_t)w, j, strlen(j),
                             NULL, &next)
                   : -EIO;
        if (s == 404)
                lost_begin(sh, idx);
        if (s == 409 && next == w) /* a repeated end (its answer was lost): already there */
                s = 200;
        else if (s == 409 && (give_up_step(sh, idx, next) || set_acked(sh, idx, next, w) == 0))
                return 1; /* the missing bytes go again on the next pass */
        if (s < 200 || s >= 300)
                return -1;
        __atomic_or_fetch(&st->sent[idx], SPOOL_SENT_END, __ATOMIC_RELEASE);
        return 1;
}

/* One step's share of a pass: begin, bytes, end. 1 sent, 0 idle, -1 failed; *done false while
 * the step has something left. */
static int ship_step(struct ship *sh, unsigned idx, bool closing, int *wait_ms, bool *done)
{
        struct spool_state *st = sh->st;
        uint8_t state = __atomic_load_n(&st->state[idx], __ATOMIC_ACQUIRE);
        if (state == SPOOL_UNUSED || (st->sent[idx] & SPOOL_SENT_LOST))
                return 0;
        if (open_step(sh, idx) < 0)
                return -1;
        int did = 0;
        if (!(st->sent[idx] & SPOOL_SENT_BEGIN)) {
                _cleanup_free_ char *j = read_json(sh, idx);
                long s = j ? request(sh, "PUT", idx, NULL, "application/json", -1, j, strlen(j),
                                     NULL, NULL)
                           : -EIO;
                if (s < 200 || s >= 300) {
                        *done = false;
                        return -1;
                }
                __atomic_or_fetch(&st->sent[idx], SPOOL_SENT_BEGIN, __ATOMIC_RELEASE);
                did = 1;
        }
        uint64_t w = spool_load(&st->written[idx]);
        int r = 0;
        if (spool_load(&st->acked[idx]) < w)
                r = ship_bytes(sh, idx, state, closing, wait_ms);
        else if (state == SPOOL_ENDED && !(st->sent[idx] & SPOOL_SENT_END))
                r = ship_end(sh, idx, w);
        if (!(st->sent[idx] & SPOOL_SENT_LOST) &&
            (spool_load(&st->acked[idx]) < w ||
             (state == SPOOL_ENDED && !(st->sent[idx] & SPOOL_SENT_END))))
                *done = false;
        return r < 0 ? -1 : (r || did);
}

/* One pass over the steps: a step that fails does not hold the others back. Returns 1 when
 * something was sent, 0 when idle, -1 when a step failed (the caller backs off); *wait_ms is
 * lowered to when a young batch becomes due. */
static int pass(struct ship *sh, bool closing, int *wait_ms, bool *all_done)
{
        uint32_t n = __atomic_load_n(&sh->st->n_steps, __ATOMIC_ACQUIRE);
        int did = 0;
        bool failed = false;
        *all_done = true;
        for (unsigned i = 0; i < n && i < SPOOL_MAX_STEPS && !stop; i++) {
                int r = ship_step(sh, i, closing, wait_ms, all_done);
                if (r < 0)
                        failed = true;
                else if (r > 0)
                        did = 1;
        }
        return failed ? -1 : did;
}

_Noreturn void shipper_main(const struct output_config *cfg, int spool_fd, struct spool_state *st,
                            int wake_fd)
{
        /* keep only what the shipper needs: no step pipes or event fds may stay open here */
        int keep[] = {spool_fd, wake_fd, 2};
        int moved[3];
        for (int i = 0; i < 3; i++)
                moved[i] = fcntl(keep[i], F_DUPFD_CLOEXEC, 1000);
        int nul = open("/dev/null", O_RDWR | O_CLOEXEC);
        if (nul >= 0) {
                dup2(nul, 0);
                dup2(nul, 1);
        }
        dup2(moved[2], 2);
        close_range(3, 999, 0);
        close_range((unsigned)moved[2], (unsigned)moved[2], 0);
        spool_fd = moved[0];
        wake_fd = moved[1];
        struct sigaction sa = {.sa_handler = on_term};
        sigaction(SIGTERM, &sa, NULL);
        signal(SIGINT, SIG_IGN); /* a ^C at the terminal is for the job, the spool still goes out */
        signal(SIGPIPE, SIG_IGN);
        pid_t parent = getppid();
        /* one shipper per spool: a previous one (of a crashed run) must be gone first */
        int lock = openat(spool_fd, "state", O_RDWR | O_CLOEXEC);
        if (lock < 0)
                _exit(70);
        while (flock(lock, LOCK_EX) < 0)
                if (errno != EINTR || stop)
                        _exit(70);
        spool_store(&st->shipper_pid, (uint64_t)getpid());

        struct ship *sh = calloc(1, sizeof(*sh));
        if (!sh || curl_global_init(CURL_GLOBAL_DEFAULT) != 0)
                _exit(70);
        sh->cfg = cfg;
        sh->spool_fd = spool_fd;
        sh->st = st;
        for (unsigned i = 0; i < SPOOL_MAX_STEPS; i++)
                sh->steps[i].data_fd = sh->steps[i].ts_fd = -1;
        sh->data = malloc(BATCH_MAX);
        sh->frames = malloc(BATCH_FRAMES * sizeof(*sh->frames));
        sh->curl = curl_easy_init();
        if (!sh->frames || !sh->data || !sh->curl)
                _exit(70);
        sh->job_esc = curl_easy_escape(sh->curl, cfg->job_id, 0);
        curl_easy_setopt(sh->curl, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(sh->curl, CURLOPT_CONNECTTIMEOUT_MS, 2000L);
        curl_easy_setopt(sh->curl, CURLOPT_TIMEOUT_MS, 10000L);
        curl_easy_setopt(sh->curl, CURLOPT_TCP_NODELAY, 1L);
        curl_easy_setopt(sh->curl, CURLOPT_READFUNCTION, on_read);
        curl_easy_setopt(sh->curl, CURLOPT_XFERINFOFUNCTION, on_progress);
        curl_easy_setopt(sh->curl, CURLOPT_NOPROGRESS, 0L);
        curl_easy_setopt(sh->curl, CURLOPT_SEEKFUNCTION, on_seek);
        curl_easy_setopt(sh->curl, CURLOPT_UPLOAD_BUFFERSIZE, 512L * 1024);
        if (cfg->ca_pem) {
                if (strncmp(cfg->ca_pem, "-----BEGIN", 10) == 0) {
                        struct curl_blob blob = {(void *)cfg->ca_pem, strlen(cfg->ca_pem),
                                                 CURL_BLOB_COPY};
                        curl_easy_setopt(sh->curl, CURLOPT_CAINFO_BLOB, &blob);
                } else {
                        curl_easy_setopt(sh->curl, CURLOPT_CAINFO, cfg->ca_pem);
                }
        }
        int backoff = BACKOFF_MIN;
        unsigned seed = (unsigned)getpid() ^ (unsigned)drv_now_ns();
        uint64_t orphan_since = 0;
        /* a previous shipper's batch may be in a much-later ts position: start scanning at 0 */
        while (!stop) {
                bool parent_gone = getppid() != parent;
                if (parent_gone && !orphan_since)
                        orphan_since = drv_now_ns();
                bool closing = __atomic_load_n(&st->closing, __ATOMIC_ACQUIRE) || parent_gone;
                int wait_ms = 100, done_all = 0;
                bool all_done = false;
                int r = pass(sh, closing, &wait_ms, &all_done);
                done_all = all_done;
                if (r < 0 && stop)
                        break;
                if (r < 0) {
                        /* processor away or refusing: back off with jitter, keep everything */
                        int j = backoff / 2 + (int)(rand_r(&seed) % (unsigned)(backoff / 2 + 1));
                        poll(NULL, 0, j);
                        backoff = backoff * 2 > BACKOFF_MAX ? BACKOFF_MAX : backoff * 2;
                        if (orphan_since && drv_now_ns() - orphan_since > ORPHAN_GIVEUP)
                                break;
                        continue;
                }
                backoff = BACKOFF_MIN;
                if (parent_gone && done_all)
                        break;
                if (r > 0)
                        continue;
                struct pollfd pfd = {.fd = wake_fd, .events = POLLIN};
                poll(&pfd, 1, closing ? 20 : wait_ms);
                char drain[256];
                while (read(wake_fd, drain, sizeof(drain)) > 0)
                        ;
        }
        _exit(0);
}

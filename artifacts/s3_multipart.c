/* s3_multipart.c: multipart uploads — of a file (parts read with pread, in parallel) and streamed
 * from a pipe (parts filled by a reader thread while earlier ones upload). Either completes or is
 * aborted: no half-written object ever becomes visible. */
#include "artifacts/s3_int.h"

#include <fcntl.h>

#define MPU_PARALLEL 4 /* parts in flight */

/* POST ?uploads= (with one x-amz-meta- header, meta); the new upload's id in *upload_id. */
static int mpu_create(struct s3 *s, const char *key, const char *meta, const char *content_type,
                      char **upload_id, struct drv_error *err)
{
        struct xfer x;
        int r = s3_xfer_init(s, &x, "POST", key, "uploads=");
        r = r ?: s3_xfer_header(&x, "%s", meta);
        r = r
                ?: s3_xfer_header(&x, "Content-Type: %s",
                                  content_type ? content_type : "application/octet-stream");
        r = r < 0 ? drv_err(err, ENOMEM, "out of memory") : s3_run_one(s, &x, err);
        const char *p = x.resp.buf ? x.resp.buf : "";
        if (r == 0 && !(*upload_id = s3_xml_take(&p, p + x.resp.len, "UploadId")))
                r = drv_err(err, EIO, "%s: POST %s%s?uploads: no UploadId in the answer", s->name,
                            s->prefix, key);
        s3_xfer_release(&x);
        return r;
}

/* The PUT of part number part (its body is the caller's to give). */
static int mpu_part(struct s3 *s, struct xfer *x, const char *key, const char *upload_id,
                    unsigned part)
{
        _cleanup_free_ char *q = s3_upload_query(upload_id, part);
        return q ? s3_xfer_init(s, x, "PUT", key, q) : -ENOMEM;
}

/* Note an uploaded part (its ETag) in the CompleteMultipartUpload list. */
static int mpu_done_part(struct s3 *s, const char *key, struct strbuf *done, const struct xfer *x,
                         unsigned part, struct drv_error *err)
{
        _cleanup_free_ char *etag = s3_resp_header(x, "etag");
        if (!etag)
                return drv_err(err, EIO, "%s: part %u of %s: no ETag", s->name, part, key);
        if (strbuf_printf(done, "<Part><PartNumber>%u</PartNumber><ETag>%s</ETag></Part>", part,
                          etag) < 0)
                return drv_err(err, ENOMEM, "out of memory");
        return 0;
}

/* CompleteMultipartUpload of the parts in done. A completion whose answer was lost and whose
 * retry gets NoSuchUpload is confirmed by a HEAD with the object's checksum (whole, if known). */
static int mpu_complete(struct s3 *s, const char *key, const char *upload_id,
                        const struct strbuf *done, const char *whole, struct drv_error *err)
{
        _cleanup_free_ char *q = s3_upload_query(upload_id, 0);
        _cleanup_free_ char *body = drv_asprintf(
            "<CompleteMultipartUpload>%s</CompleteMultipartUpload>", done->buf ? done->buf : "");
        struct xfer c;
        if (!q || !body || s3_xfer_init(s, &c, "POST", key, q) < 0)
                return drv_err(err, ENOMEM, "out of memory");
        s3_xfer_body_mem(&c, body, strlen(body));
        int r = s3_xfer_header(&c, "Content-Type: %s", "application/xml");
        r = r < 0 ? drv_err(err, ENOMEM, "out of memory") : s3_run_one(s, &c, err);
        if (r < 0 && whole && c.attempt > 0 && c.resp.buf &&
            strstr(c.resp.buf, "<Code>NoSuchUpload</Code>")) {
                struct xfer hd;
                struct drv_error e2 = {0};
                if (s3_xfer_init(s, &hd, "HEAD", key, NULL) == 0 && s3_run_one(s, &hd, &e2) == 0) {
                        _cleanup_free_ char *got = s3_resp_header(&hd, "x-amz-meta-sha256");
                        if (got && strcasecmp(got, whole) == 0) {
                                r = 0;
                                drv_err_clear(err);
                        }
                }
                s3_xfer_release(&hd);
        }
        s3_xfer_release(&c);
        return r;
}

/* Abort: nothing of it stays (the server frees its parts). */
static void mpu_abort(struct s3 *s, const char *key, const char *upload_id)
{
        _cleanup_free_ char *q = s3_upload_query(upload_id, 0);
        struct xfer a;
        struct drv_error e2 = {0};
        if (!q || s3_xfer_init(s, &a, "DELETE", key, q) < 0)
                return;
        if (s3_run_one(s, &a, &e2) < 0)
                log_warn("s3_abort_failed", "store=%s key=%s error=\"%s\"", s->name, key,
                         e2.message);
        s3_xfer_release(&a);
}

int s3_multipart_fd(struct s3 *s, const char *key, int fd, uint64_t size, const char *content_type,
                    struct drv_error *err)
{
        char whole[65];
        int r = s3_sha256_fd(fd, 0, size, whole);
        if (r < 0)
                return drv_err(err, -r, "%s: reading the data of %s", s->name, key);
        _cleanup_free_ char *meta = drv_asprintf("x-amz-meta-sha256: %s", whole);
        _cleanup_free_ char *upload_id = NULL;
        if (!meta)
                return drv_err(err, ENOMEM, "out of memory");
        if ((r = mpu_create(s, key, meta, content_type, &upload_id, err)) < 0)
                return r;
        uint64_t psz = s->part_size;
        while ((size + psz - 1) / psz > 10000)
                psz *= 2;
        size_t nparts = (size_t)((size + psz - 1) / psz);
        struct xfer *parts = calloc(nparts, sizeof(*parts));
        struct xfer **pp = calloc(nparts, sizeof(*pp));
        struct strbuf done = STRBUF_INIT;
        if (!parts || !pp)
                r = drv_err(err, ENOMEM, "out of memory");
        for (size_t i = 0; r == 0 && i < nparts; i++) {
                uint64_t off = i * psz, len = i + 1 < nparts ? psz : size - i * psz;
                pp[i] = &parts[i];
                if ((r = mpu_part(s, &parts[i], key, upload_id, (unsigned)i + 1)) < 0)
                        r = drv_err(err, ENOMEM, "out of memory");
                else if ((r = s3_xfer_body_fd(&parts[i], fd, off, len)) < 0)
                        r = drv_err(err, -r, "%s: reading the data of %s", s->name, key);
        }
        if (r == 0)
                r = s3_run_xfers(s, pp, nparts, MPU_PARALLEL, true, err);
        for (size_t i = 0; r == 0 && i < nparts; i++)
                r = mpu_done_part(s, key, &done, &parts[i], (unsigned)i + 1, err);
        r = r ?: mpu_complete(s, key, upload_id, &done, whole, err);
        if (r < 0)
                mpu_abort(s, key, upload_id);
        for (size_t i = 0; parts && i < nparts; i++)
                s3_xfer_release(&parts[i]);
        free(parts);
        free(pp);
        strbuf_release(&done);
        return r;
}

/* ---- streaming uploads: bytes written to a pipe go straight into a multipart upload ---- */

struct s3_stream {
        struct s3 *s;
        char *key;
        int rfd;
        pthread_t thread;
        int result;
        bool aborted; /* __atomic: the writer gave up, never complete */
        struct drv_error err;
};

/* Read up to n bytes (fewer only at EOF). */
static ssize_t read_full(int fd, char *buf, size_t n)
{
        size_t got = 0;
        while (got < n) {
                ssize_t k = DRV_RETRY(read(fd, buf + got, n - got));
                if (k < 0)
                        return -errno;
                if (k == 0)
                        break;
                got += (size_t)k;
        }
        return (ssize_t)got;
}

#define RING 6 /* part buffers: up to 4 uploading while the writer fills the others */

struct ring {
        pthread_mutex_t mu;
        pthread_cond_t cv;
        char *buf[RING];
        size_t len[RING];
        bool full[RING];
        unsigned filled; /* parts read so far (slot = index % RING) */
        bool eof, stop;
        int rerr;
        int fd;
        size_t psz;
};

/* The reader thread: fills free slots from the pipe; after stop it only drains. */
static void *ring_reader(void *data)
{
        struct ring *g = data;
        for (;;) {
                pthread_mutex_lock(&g->mu);
                unsigned slot = g->filled % RING;
                while (g->full[slot] && !g->stop)
                        pthread_cond_wait(&g->cv, &g->mu);
                bool stop = g->stop;
                pthread_mutex_unlock(&g->mu);
                if (stop)
                        break;
                ssize_t n = read_full(g->fd, g->buf[slot], g->psz);
                pthread_mutex_lock(&g->mu);
                if (n < 0)
                        g->rerr = (int)-n;
                else
                        g->len[slot] = (size_t)n;
                g->full[slot] = n >= 0;
                g->filled += n >= 0;
                g->eof = n < 0 || (size_t)n < g->psz;
                pthread_cond_broadcast(&g->cv);
                bool done = g->eof;
                pthread_mutex_unlock(&g->mu);
                if (done)
                        break;
        }
        return NULL;
}

static int stream_upload(struct s3_stream *st)
{
        struct s3 *s = st->s;
        struct drv_error *err = &st->err;
        struct ring g = {.fd = st->rfd, .psz = (size_t)s->part_size};
        pthread_t reader;
        struct xfer parts[MPU_PARALLEL];
        struct xfer *pp[MPU_PARALLEL];
        char *upload_id = NULL;
        struct strbuf done = STRBUF_INIT;
        unsigned partno = 0; /* parts uploaded */
        int r = 0;
        memset(parts, 0, sizeof(parts));
        pthread_mutex_init(&g.mu, NULL);
        pthread_cond_init(&g.cv, NULL);
        for (unsigned i = 0; i < RING; i++)
                if (!(g.buf[i] = malloc(g.psz)))
                        r = drv_err(err, ENOMEM, "out of memory");
        if (r == 0 && pthread_create(&reader, NULL, ring_reader, &g) != 0)
                r = drv_err(err, EAGAIN, "%s: cannot start a reader thread", s->name);
        bool started = r == 0;
        for (bool last = false; r == 0 && !last;) {
                /* wait for at least one part (or the end) */
                pthread_mutex_lock(&g.mu);
                while (g.filled == partno && !g.eof)
                        pthread_cond_wait(&g.cv, &g.mu);
                unsigned avail = g.filled - partno;
                bool eof = g.eof;
                int rerr = g.rerr;
                pthread_mutex_unlock(&g.mu);
                if (rerr) {
                        r = drv_err(err, rerr, "%s: reading the data of %s", s->name, st->key);
                        break;
                }
                last = eof; /* everything there is has been read */
                if (avail > MPU_PARALLEL) {
                        avail = MPU_PARALLEL;
                        last = false;
                }
                if (last && __atomic_load_n(&st->aborted, __ATOMIC_SEQ_CST)) {
                        r = drv_err(err, ECANCELED, "%s: upload of %s abandoned", s->name, st->key);
                        break;
                }
                if (partno == 0 && last && avail <= 1) { /* small: one PUT */
                        struct xfer x;
                        r = s3_xfer_init(s, &x, "PUT", st->key, NULL);
                        s3_xfer_body_mem(&x, g.buf[0], avail ? g.len[0] : 0);
                        r = r ?: s3_xfer_header(&x, "x-amz-meta-sha256: %s", x.payload_sha);
                        r = r < 0 ? drv_err(err, ENOMEM, "out of memory") : s3_run_one(s, &x, err);
                        s3_xfer_release(&x);
                        goto out;
                }
                if (!upload_id) {
                        char meta[64];
                        snprintf(meta, sizeof(meta), "x-amz-meta-part-size: %zu", g.psz);
                        if ((r = mpu_create(s, st->key, meta, NULL, &upload_id, err)) < 0)
                                break;
                }
                unsigned np = 0;
                for (unsigned i = 0; r == 0 && i < avail; i++) {
                        unsigned slot = (partno + i) % RING;
                        if (g.len[slot] == 0)
                                continue; /* an empty tail is no part */
                        if (mpu_part(s, &parts[np], st->key, upload_id, partno + np + 1) < 0)
                                r = drv_err(err, ENOMEM, "out of memory");
                        s3_xfer_body_mem(&parts[np], g.buf[slot], g.len[slot]);
                        pp[np] = &parts[np];
                        np++;
                }
                if (r == 0 && np)
                        r = s3_run_xfers(s, pp, np, MPU_PARALLEL, true, err);
                for (unsigned i = 0; i < np; i++) {
                        if (r == 0)
                                r = mpu_done_part(s, st->key, &done, &parts[i], partno + i + 1,
                                                  err);
                        s3_xfer_release(&parts[i]);
                }
                /* free the slots (empty ones included) for the reader */
                pthread_mutex_lock(&g.mu);
                for (unsigned i = 0; i < avail; i++)
                        g.full[(partno + i) % RING] = false;
                pthread_cond_broadcast(&g.cv);
                pthread_mutex_unlock(&g.mu);
                partno += avail; /* (only a tail slot is ever empty: part numbers stay dense) */
        }
        if (r == 0 && upload_id)
                r = mpu_complete(s, st->key, upload_id, &done, NULL, err);
        if (r < 0 && upload_id)
                mpu_abort(s, st->key, upload_id);
out:
        if (started) {
                pthread_mutex_lock(&g.mu);
                g.stop = true;
                pthread_cond_broadcast(&g.cv);
                pthread_mutex_unlock(&g.mu);
                pthread_join(reader, NULL);
        }
        for (unsigned i = 0; i < RING; i++)
                free(g.buf[i]);
        pthread_mutex_destroy(&g.mu);
        pthread_cond_destroy(&g.cv);
        free(upload_id);
        strbuf_release(&done);
        return r;
}

static void *stream_main(void *data)
{
        struct s3_stream *st = data;
        st->result = stream_upload(st);
        /* drain, so that the writer never blocks on a failed upload */
        char buf[65536];
        while (DRV_RETRY(read(st->rfd, buf, sizeof(buf))) > 0)
                ;
        return NULL;
}

int s3_stream_begin(struct s3 *s, const char *key, int *wfd, struct s3_stream **out,
                    struct drv_error *err)
{
        struct s3_stream *st = calloc(1, sizeof(*st));
        if (!st || !(st->key = strdup(key))) {
                free(st);
                return drv_err(err, ENOMEM, "out of memory");
        }
        st->s = s;
        int r = s3_pipe_thread(s, true, stream_main, st, &st->thread, wfd, &st->rfd, err);
        if (r < 0) {
                free(st->key);
                free(st);
                return r;
        }
        *out = st;
        return 0;
}

int s3_stream_end(struct s3_stream *st, int wfd, bool abort_it, struct drv_error *err)
{
        if (abort_it) /* EOF then means: give up, not complete */
                __atomic_store_n(&st->aborted, true, __ATOMIC_SEQ_CST);
        close(wfd);
        pthread_join(st->thread, NULL);
        close(st->rfd);
        int r = st->result;
        if (r < 0 && err)
                *err = st->err;
        free(st->key);
        free(st);
        return r;
}

/* zstream.c: a ring of buffers between the caller and a thread that decompresses an fd
 * (libzstd's streaming API). */
#include "cache/zstream.h"

#include <pthread.h>
#include <zstd.h>

#define ZS_NBUF  4
#define ZS_BUFSZ (1u << 20)

struct zstream {
        pthread_t thread;
        pthread_mutex_t mu;
        pthread_cond_t cv;
        char *buf[ZS_NBUF];
        size_t len[ZS_NBUF];
        unsigned head, tail; /* buffers published / taken back; head - tail are in the ring */
        bool eof;            /* the producer is done (or failed: err) */
        bool stop;           /* the consumer is gone (or aborts) */
        int err;             /* errno of the thread's failure, 0 if none */
        char msg[160];
        int fd;
        ssize_t (*rd)(void *ud, void *buf, size_t n); /* NULL: read(fd) */
        void *rd_ud;
        bool holding; /* the caller holds buffer tail */
        bool started;
};

static void zs_fail(struct zstream *z, int e, const char *msg)
{
        pthread_mutex_lock(&z->mu);
        if (!z->err) {
                z->err = e;
                snprintf(z->msg, sizeof(z->msg), "%s", msg);
        }
        z->eof = true;
        pthread_cond_broadcast(&z->cv);
        pthread_mutex_unlock(&z->mu);
}

static struct zstream *zs_new(int fd)
{
        struct zstream *z = calloc(1, sizeof(*z));
        if (!z)
                return NULL;
        z->fd = fd;
        pthread_mutex_init(&z->mu, NULL);
        pthread_cond_init(&z->cv, NULL);
        for (unsigned i = 0; i < ZS_NBUF; i++)
                if (!(z->buf[i] = malloc(ZS_BUFSZ))) {
                        for (unsigned k = 0; k < i; k++)
                                free(z->buf[k]);
                        free(z);
                        return NULL;
                }
        return z;
}

static void zs_free(struct zstream *z)
{
        for (unsigned i = 0; i < ZS_NBUF; i++)
                free(z->buf[i]);
        pthread_mutex_destroy(&z->mu);
        pthread_cond_destroy(&z->cv);
        free(z);
}

static int zs_start(struct zstream *z, void *(*fn)(void *), struct zstream **out,
                    struct drv_error *err)
{
        int e = pthread_create(&z->thread, NULL, fn, z);
        if (e) {
                zs_free(z);
                return drv_err(err, e, "cannot start a decompression thread");
        }
        z->started = true;
        *out = z;
        return 0;
}

/* ---- decompression: the thread fills buffers, the caller reads them ---- */

static ssize_t zs_input(struct zstream *z, void *buf, size_t n)
{
        if (!z->rd)
                return DRV_RETRY(read(z->fd, buf, n));
        ssize_t k = z->rd(z->rd_ud, buf, n);
        if (k < 0)
                errno = (int)-k;
        return k < 0 ? -1 : k;
}

/* Wait for a free buffer; NULL when the reader is gone. */
static char *zs_slot(struct zstream *z)
{
        pthread_mutex_lock(&z->mu);
        while (z->head - z->tail == ZS_NBUF && !z->stop)
                pthread_cond_wait(&z->cv, &z->mu);
        char *b = z->stop ? NULL : z->buf[z->head % ZS_NBUF];
        pthread_mutex_unlock(&z->mu);
        return b;
}

static void zs_put(struct zstream *z, size_t n, bool eof)
{
        pthread_mutex_lock(&z->mu);
        if (n) {
                z->len[z->head % ZS_NBUF] = n;
                z->head++;
        }
        z->eof = z->eof || eof;
        pthread_cond_broadcast(&z->cv);
        pthread_mutex_unlock(&z->mu);
}

static void *reader_main(void *data)
{
        struct zstream *z = data;
        ZSTD_DStream *d = ZSTD_createDStream();
        size_t isz = ZSTD_DStreamInSize() * 8;
        char *ibuf = malloc(isz);
        ZSTD_inBuffer in = {ibuf, 0, 0};
        bool zstd = false, in_eof = false;
        if (!d || !ibuf) {
                zs_fail(z, ENOMEM, "out of memory");
                goto out;
        }
        /* the first bytes say whether it is zstd */
        while (in.size < 4 && !in_eof) {
                ssize_t k = zs_input(z, ibuf + in.size, isz - in.size);
                if (k < 0) {
                        zs_fail(z, errno, strerror(errno));
                        goto out;
                }
                in_eof = k == 0;
                in.size += (size_t)k;
        }
        zstd = in.size >= 4 && memcmp(ibuf, "\x28\xb5\x2f\xfd", 4) == 0;
        for (size_t frame_left = 0;;) {
                char *b = zs_slot(z);
                if (!b)
                        break;
                ZSTD_outBuffer o = {b, ZS_BUFSZ, 0};
                bool done = false;
                while (o.pos < o.size) {
                        if (zstd) { /* (also flushes what it holds when the input is used up) */
                                size_t o0 = o.pos, i0 = in.pos;
                                frame_left = ZSTD_decompressStream(d, &o, &in);
                                if (ZSTD_isError(frame_left)) {
                                        zs_put(z, o.pos, false);
                                        zs_fail(z, EIO, ZSTD_getErrorName(frame_left));
                                        goto out;
                                }
                                if (o.pos > o0 || in.pos > i0)
                                        continue;
                        } else if (in.pos < in.size) { /* as it is */
                                size_t k = in.size - in.pos < o.size - o.pos ? in.size - in.pos
                                                                             : o.size - o.pos;
                                memcpy(b + o.pos, ibuf + in.pos, k);
                                o.pos += k;
                                in.pos += k;
                                continue;
                        }
                        if (in_eof) {
                                done = true;
                                break;
                        }
                        if (__atomic_load_n(&z->stop, __ATOMIC_RELAXED))
                                goto out; /* the reader is gone */
                        ssize_t k = zs_input(z, ibuf, isz);
                        if (k < 0) {
                                zs_put(z, o.pos, false);
                                zs_fail(z, errno, strerror(errno));
                                goto out;
                        }
                        in = (ZSTD_inBuffer){ibuf, (size_t)k, 0};
                        in_eof = k == 0;
                }
                if (done && zstd && frame_left != 0) {
                        zs_put(z, o.pos, false);
                        zs_fail(z, EIO, "truncated zstd stream");
                        goto out;
                }
                zs_put(z, o.pos, done);
                if (done)
                        break;
        }
out:
        ZSTD_freeDStream(d);
        free(ibuf);
        return NULL;
}

int zstream_reader_start(int in_fd, struct zstream **out, struct drv_error *err)
{
        struct zstream *z = zs_new(in_fd);
        if (!z)
                return drv_err(err, ENOMEM, "out of memory");
        return zs_start(z, reader_main, out, err);
}

int zstream_reader_start_fn(ssize_t (*rd)(void *ud, void *buf, size_t n), void *ud,
                            struct zstream **out, struct drv_error *err)
{
        struct zstream *z = zs_new(-1);
        if (!z)
                return drv_err(err, ENOMEM, "out of memory");
        z->rd = rd;
        z->rd_ud = ud;
        return zs_start(z, reader_main, out, err);
}

ssize_t zstream_read(struct zstream *z, const void **buf)
{
        pthread_mutex_lock(&z->mu);
        if (z->holding) {
                z->tail++;
                z->holding = false;
                pthread_cond_broadcast(&z->cv);
        }
        while (z->head == z->tail && !z->eof)
                pthread_cond_wait(&z->cv, &z->mu);
        ssize_t n;
        if (z->head == z->tail) {
                n = z->err ? -z->err : 0;
        } else {
                *buf = z->buf[z->tail % ZS_NBUF];
                n = (ssize_t)z->len[z->tail % ZS_NBUF];
                z->holding = true;
        }
        pthread_mutex_unlock(&z->mu);
        return n;
}

const char *zstream_error(struct zstream *z)
{
        return z->msg[0] ? z->msg : "no error";
}

void zstream_reader_end(struct zstream *z)
{
        pthread_mutex_lock(&z->mu);
        z->stop = true;
        pthread_cond_broadcast(&z->cv);
        pthread_mutex_unlock(&z->mu);
        pthread_join(z->thread, NULL);
        zs_free(z);
}

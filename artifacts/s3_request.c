/* s3_request.c: one S3 request from set-up to verdict. Every request goes through the store's
 * curl multi handle (its connection cache is reused between requests), is signed by libcurl
 * (CURLOPT_AWS_SIGV4) with the payload hash and canonical query made by sigv4.c, and is retried
 * with exponential backoff and jitter on resets, timeouts, 5xx, 429 and SlowDown. */
#include "artifacts/s3_int.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/random.h>
#include <time.h>

void s3_xfer_release(struct xfer *x)
{
        free(x->url);
        free(x->what);
        curl_slist_free_all(x->hdrs);
        curl_slist_free_all(x->sent);
        strbuf_release(&x->resp);
        strbuf_release(&x->resp_hdrs);
        EVP_MD_CTX_free(x->out_md);
        EVP_MD_CTX_free(x->etag_all);
        EVP_MD_CTX_free(x->etag_part);
        memset(x, 0, sizeof(*x));
}

static size_t on_read(char *buf, size_t size, size_t nmemb, void *data)
{
        struct xfer *x = data;
        size_t want = size * nmemb;
        uint64_t left = x->body_len - x->body_pos;
        if (want > left)
                want = (size_t)left;
        if (want == 0)
                return 0;
        if (x->body_fd < 0) {
                memcpy(buf, x->body_mem + x->body_pos, want);
        } else {
                ssize_t n =
                    DRV_RETRY(pread(x->body_fd, buf, want, (off_t)(x->body_off + x->body_pos)));
                if (n <= 0)
                        return CURL_READFUNC_ABORT;
                want = (size_t)n;
        }
        x->body_pos += want;
        return want;
}

static int on_seek(void *data, curl_off_t off, int origin)
{
        struct xfer *x = data;
        if (origin != SEEK_SET || off < 0 || (uint64_t)off > x->body_len)
                return CURL_SEEKFUNC_CANTSEEK;
        x->body_pos = (uint64_t)off;
        return CURL_SEEKFUNC_OK;
}

/* Streamed downloads: md5 of every part (x-amz-meta-part-size) for the multipart ETag check. */
static void stream_md5(struct xfer *x, const char *buf, size_t n)
{
        if (!x->etag_checked) {
                x->etag_checked = true;
                _cleanup_free_ char *sha = s3_resp_header(x, "x-amz-meta-sha256");
                _cleanup_free_ char *ps = s3_resp_header(x, "x-amz-meta-part-size");
                if (!sha && ps) { /* only the ETag can be checked: no sha256 to compute */
                        EVP_MD_CTX_free(x->out_md);
                        x->out_md = NULL;
                }
                x->etag_psz = ps ? strtoull(ps, NULL, 10) : 0;
                if (x->etag_psz) {
                        x->etag_all = EVP_MD_CTX_new();
                        x->etag_part = EVP_MD_CTX_new();
                        if (!x->etag_all || !x->etag_part)
                                x->etag_psz = 0;
                        else {
                                EVP_DigestInit_ex(x->etag_all, EVP_md5(), NULL);
                                EVP_DigestInit_ex(x->etag_part, EVP_md5(), NULL);
                        }
                }
        }
        while (x->etag_psz && n > 0) {
                uint64_t room = x->etag_psz - x->etag_in_part;
                size_t k = n < room ? n : (size_t)room;
                EVP_DigestUpdate(x->etag_part, buf, k);
                x->etag_in_part += k;
                buf += k;
                n -= k;
                if (x->etag_in_part == x->etag_psz) {
                        unsigned char md[16];
                        unsigned l;
                        EVP_DigestFinal_ex(x->etag_part, md, &l);
                        EVP_DigestUpdate(x->etag_all, md, 16);
                        EVP_DigestInit_ex(x->etag_part, EVP_md5(), NULL);
                        x->etag_in_part = 0;
                        x->etag_nparts++;
                }
        }
}

static size_t on_write(char *buf, size_t size, size_t nmemb, void *data)
{
        struct xfer *x = data;
        size_t n = size * nmemb;
        if (x->out_fd >= 0 && x->status / 100 == 2) {
                if (x->stream)
                        stream_md5(x, buf, n);
                if (drv_write_all(x->out_fd, buf, n) < 0)
                        return 0;
                if (x->out_md)
                        EVP_DigestUpdate(x->out_md, buf, n);
                x->out_pos += n;
                return n;
        }
        if (x->resp.len + n > S3_MAX_BODY_KEEP)
                return 0;
        return strbuf_append(&x->resp, buf, n) < 0 ? 0 : n;
}

static size_t on_header(char *buf, size_t size, size_t nmemb, void *data)
{
        struct xfer *x = data;
        size_t n = size * nmemb;
        if (n > 5 && memcmp(buf, "HTTP/", 5) == 0) { /* a new response (after 100, redirects) */
                strbuf_reset(&x->resp_hdrs);
                sscanf(buf, "HTTP/%*s %ld", &x->status);
        }
        if (x->resp_hdrs.len + n < 65536)
                strbuf_append(&x->resp_hdrs, buf, n);
        return n;
}

char *s3_resp_header(const struct xfer *x, const char *name)
{
        size_t nl = strlen(name);
        const char *p = x->resp_hdrs.buf;
        for (; p && *p;) {
                const char *e = strchr(p, '\n');
                if (!e)
                        e = p + strlen(p);
                if ((size_t)(e - p) > nl && strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
                        const char *v = p + nl + 1;
                        while (*v == ' ' || *v == '\t')
                                v++;
                        const char *ve = e;
                        while (ve > v && (ve[-1] == '\r' || ve[-1] == ' '))
                                ve--;
                        return strndup(v, (size_t)(ve - v));
                }
                p = *e ? e + 1 : e;
        }
        return NULL;
}

int s3_xfer_init(struct s3 *s, struct xfer *x, const char *method, const char *key,
                 const char *query)
{
        memset(x, 0, sizeof(*x));
        x->method = method;
        x->body_fd = -1;
        x->out_fd = -1;
        struct strbuf u = STRBUF_INIT;
        int r = strbuf_puts(&u, s->base);
        r = r ?: strbuf_putc(&u, '/');
        if (key) {
                r = r ?: s3_uri_encode(&u, s->prefix, true);
                r = r ?: s3_uri_encode(&u, key, true);
        }
        if (query && query[0])
                r = r ?: strbuf_printf(&u, "?%s", query);
        if (r < 0) {
                strbuf_release(&u);
                return -ENOMEM;
        }
        x->url = strbuf_detach(&u);
        x->what = drv_asprintf("%s %s%s%s", method, key ? s->prefix : "", key ? key : "/",
                               query && query[0] ? " (query)" : "");
        snprintf(x->payload_sha, sizeof(x->payload_sha), "%s", S3_EMPTY_SHA256);
        return x->what ? 0 : -ENOMEM;
}

int s3_xfer_header(struct xfer *x, const char *fmt, const char *v)
{
        _cleanup_free_ char *h = drv_asprintf(fmt, v);
        struct curl_slist *l = h ? curl_slist_append(x->hdrs, h) : NULL;
        if (!l)
                return -ENOMEM;
        x->hdrs = l;
        return 0;
}

void s3_xfer_body_mem(struct xfer *x, const void *p, size_t n)
{
        x->body_fd = -1;
        x->body_mem = p;
        x->body_off = 0;
        x->body_len = n;
        s3_sha256_mem(p, n, x->payload_sha);
}

int s3_xfer_body_fd(struct xfer *x, int fd, uint64_t off, uint64_t len)
{
        x->body_fd = fd;
        x->body_mem = NULL;
        x->body_off = off;
        x->body_len = len;
        return s3_sha256_fd(fd, off, len, x->payload_sha);
}

static int xfer_setup(struct s3 *s, struct xfer *x, CURL *h)
{
        if (x->prepare) {
                int r = x->prepare(x, x->prep_arg);
                x->prepare = NULL;
                if (r < 0)
                        return r;
        }
        curl_easy_reset(h);
        x->status = 0;
        x->curl_msg[0] = '\0';
        x->body_pos = 0;
        strbuf_reset(&x->resp);
        strbuf_reset(&x->resp_hdrs);
        if (x->out_fd >= 0 && x->stream) {
                /* keep what went down the pipe: resume after it */
        } else if (x->out_fd >= 0) {
                if (ftruncate(x->out_fd, (off_t)x->out_base) < 0 ||
                    lseek(x->out_fd, (off_t)x->out_base, SEEK_SET) < 0)
                        return -errno;
                x->out_pos = 0;
                if (x->out_md)
                        EVP_DigestInit_ex(x->out_md, EVP_sha256(), NULL);
        }
        struct curl_slist *hd = NULL;
        for (struct curl_slist *l = x->hdrs; l; l = l->next)
                if (!(hd = curl_slist_append(hd, l->data)))
                        return -ENOMEM;
        /* the hash of the payload (libcurl 7.88 does not add it for s3) */
        _cleanup_free_ char *ph = drv_asprintf("x-amz-content-sha256: %s", x->payload_sha);
        struct curl_slist *t = ph ? curl_slist_append(hd, ph) : NULL;
        if (t)
                hd = t;
        if (t && x->stream && x->out_pos > 0) {
                char range[64];
                snprintf(range, sizeof(range), "Range: bytes=%llu-",
                         (unsigned long long)x->out_pos);
                t = curl_slist_append(hd, range);
        }
        /* (no "Expect:" to drop 100-continue: libcurl would sign the empty header it drops) */
        if (t && s->token_hdr)
                t = curl_slist_append(hd, s->token_hdr);
        if (!t) {
                curl_slist_free_all(hd);
                return -ENOMEM;
        }
        curl_slist_free_all(x->sent);
        x->sent = hd;
        curl_easy_setopt(h, CURLOPT_URL, x->url);
        curl_easy_setopt(h, CURLOPT_HTTPHEADER, x->sent);
        curl_easy_setopt(h, CURLOPT_AWS_SIGV4, s->sigv4);
        curl_easy_setopt(h, CURLOPT_USERNAME, s->access_key);
        curl_easy_setopt(h, CURLOPT_PASSWORD, s->secret_key);
        curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(h, CURLOPT_ERRORBUFFER, x->curl_msg);
        curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, 10L);
        curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
        curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, s->low_speed_time);
        curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_write);
        curl_easy_setopt(h, CURLOPT_WRITEDATA, x);
        curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
        curl_easy_setopt(h, CURLOPT_HEADERDATA, x);
        curl_easy_setopt(h, CURLOPT_PRIVATE, x);
        curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
        if (s->ca_pem) {
                if (drv_startswith(s->ca_pem, "-----BEGIN")) {
                        struct curl_blob b = {
                            .data = s->ca_pem, .len = strlen(s->ca_pem), .flags = CURL_BLOB_COPY};
                        curl_easy_setopt(h, CURLOPT_CAINFO_BLOB, &b);
                } else {
                        curl_easy_setopt(h, CURLOPT_CAINFO, s->ca_pem);
                }
        }
        bool has_body = x->body_len > 0 || x->body_fd >= 0 || x->body_mem;
        if (strcmp(x->method, "HEAD") == 0) {
                curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
        } else if (strcmp(x->method, "PUT") == 0) {
                curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
                curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE, (curl_off_t)x->body_len);
                curl_easy_setopt(h, CURLOPT_READFUNCTION, on_read);
                curl_easy_setopt(h, CURLOPT_READDATA, x);
                curl_easy_setopt(h, CURLOPT_SEEKFUNCTION, on_seek);
                curl_easy_setopt(h, CURLOPT_SEEKDATA, x);
        } else if (strcmp(x->method, "POST") == 0) {
                curl_easy_setopt(h, CURLOPT_POST, 1L);
                if (has_body) {
                        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)x->body_len);
                        curl_easy_setopt(h, CURLOPT_READFUNCTION, on_read);
                        curl_easy_setopt(h, CURLOPT_READDATA, x);
                        curl_easy_setopt(h, CURLOPT_SEEKFUNCTION, on_seek);
                        curl_easy_setopt(h, CURLOPT_SEEKDATA, x);
                } else {
                        curl_easy_setopt(h, CURLOPT_POSTFIELDS, "");
                        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, 0L);
                }
        } else if (strcmp(x->method, "GET") != 0) {
                curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, x->method);
        }
        return 0;
}

static bool slowdown(const struct xfer *x)
{
        return x->resp.buf && (strstr(x->resp.buf, "<Code>SlowDown</Code>") ||
                               strstr(x->resp.buf, "<Code>InternalError</Code>") ||
                               strstr(x->resp.buf, "<Code>ServiceUnavailable</Code>"));
}

/* After a transfer ended: 0 done, 1 retry, <0 failed for good (message in err). */
static int xfer_judge(struct s3 *s, struct xfer *x, struct drv_error *err)
{
        bool retryable = false;
        log_debug("s3_request", "store=%s request=\"%s\" curl=%d status=%ld attempt=%u", s->name,
                  x->what, (int)x->cc, x->status, x->attempt);
        if (x->cc != CURLE_OK) {
                switch (x->cc) {
                case CURLE_COULDNT_CONNECT:
                case CURLE_OPERATION_TIMEDOUT:
                case CURLE_SEND_ERROR:
                case CURLE_RECV_ERROR:
                case CURLE_PARTIAL_FILE:
                case CURLE_GOT_NOTHING:
                case CURLE_SSL_CONNECT_ERROR:
                case CURLE_HTTP2:
                case CURLE_HTTP2_STREAM:
                case CURLE_COULDNT_RESOLVE_HOST:
                case CURLE_WRITE_ERROR:
                case CURLE_ABORTED_BY_CALLBACK:
                case CURLE_READ_ERROR:
                case CURLE_SEND_FAIL_REWIND:
                        retryable = x->cc != CURLE_COULDNT_RESOLVE_HOST || x->attempt < 2;
                        break;
                default:
                        break;
                }
                if (x->stream && x->cc == CURLE_WRITE_ERROR)
                        retryable = false; /* the reader went away */
                drv_err(err, EIO, "%s: %s at %s: %s", s->name, x->what, s->base,
                        x->curl_msg[0] ? x->curl_msg : curl_easy_strerror(x->cc));
        } else if (x->status / 100 == 2) {
                if (x->out_fd >= 0 && (x->out_md || x->etag_psz)) {
                        _cleanup_free_ char *want = s3_resp_header(x, "x-amz-meta-sha256");
                        unsigned char md[32];
                        unsigned mdl = 0;
                        char got[65] = "";
                        if (x->out_md) {
                                EVP_DigestFinal_ex(x->out_md, md, &mdl);
                                drv_hex(md, 32, got);
                        }
                        if (want && x->out_md && strcasecmp(want, got) != 0) {
                                drv_err(err, EIO,
                                        "%s: %s: checksum mismatch (sha256 %s, expected %s)",
                                        s->name, x->what, got, want);
                                retryable = !x->stream;
                                goto judged;
                        }
                        if (!want && x->stream && x->etag_psz) {
                                _cleanup_free_ char *etag = s3_resp_header(x, "etag");
                                unsigned char m5[16];
                                unsigned l;
                                char h5[40];
                                if (x->etag_in_part > 0) {
                                        EVP_DigestFinal_ex(x->etag_part, m5, &l);
                                        EVP_DigestUpdate(x->etag_all, m5, 16);
                                        x->etag_nparts++;
                                }
                                EVP_DigestFinal_ex(x->etag_all, m5, &l);
                                drv_hex(m5, 16, h5);
                                const char *e = etag && etag[0] == '"' ? etag + 1 : etag;
                                const char *dash = e ? strrchr(e, '-') : NULL;
                                if (!dash || strncasecmp(e, h5, 32) != 0 ||
                                    strtoull(dash + 1, NULL, 10) != x->etag_nparts) {
                                        drv_err(err, EIO,
                                                "%s: %s: content does not match its ETag %s",
                                                s->name, x->what, etag ? etag : "(none)");
                                        goto judged;
                                }
                        }
                }
                if (strcmp(x->method, "POST") == 0 && x->resp.buf &&
                    strstr(x->resp.buf, "<Error>")) { /* CompleteMultipartUpload can fail late */
                        retryable = slowdown(x);
                        const char *p = x->resp.buf;
                        _cleanup_free_ char *code = s3_xml_take(&p, p + x->resp.len, "Code");
                        drv_err(err, EIO, "%s: %s: %s", s->name, x->what, code ? code : "error");
                        goto judged;
                }
                return 0;
        } else {
                const char *p = x->resp.buf ? x->resp.buf : "";
                const char *end = p + x->resp.len;
                _cleanup_free_ char *code = s3_xml_take(&p, end, "Code");
                p = x->resp.buf ? x->resp.buf : "";
                _cleanup_free_ char *msg = s3_xml_take(&p, end, "Message");
                retryable = x->status >= 500 || x->status == 429 || slowdown(x);
                drv_err(err,
                        x->status == 403   ? EACCES
                        : x->status == 404 ? ENOENT
                                           : EIO,
                        "%s: %s at %s: HTTP %ld%s%s%s%s", s->name, x->what, s->base, x->status,
                        code ? " " : "", code ? code : "", msg && msg[0] ? ": " : "",
                        msg ? msg : "");
        }
judged:
        if (retryable && x->attempt + 1 < s->attempts) {
                uint64_t d = (uint64_t)s->backoff_ms << (x->attempt < 10 ? x->attempt : 10);
                if (d > 5000)
                        d = 5000;
                unsigned rnd = 0;
                if (getrandom(&rnd, sizeof(rnd), 0) != sizeof(rnd))
                        rnd = (unsigned)drv_now_ns();
                d = d / 2 + (d ? rnd % (d / 2 + 1) : 0); /* jitter: [d/2, d] */
                log_info("s3_retry",
                         "store=%s request=\"%s\" attempt=%u delay_ms=%llu error=\"%s\"", s->name,
                         x->what, x->attempt + 1, (unsigned long long)d, err->message);
                x->attempt++;
                x->not_before_ns = drv_now_ns() + d * 1000000ull;
                return 1;
        }
        return -err->code;
}

int s3_run_xfers(struct s3 *s, struct xfer **xs, size_t n, unsigned par, bool stop_on_error,
                 struct drv_error *err)
{
        CURL *slot_x[S3_MAX_PARALLEL] = {0};
        struct xfer *slot[S3_MAX_PARALLEL] = {0};
        size_t next = 0, done = 0;
        size_t *retry = calloc(n ? n : 1, sizeof(*retry));
        size_t n_retry = 0;
        int first = 0;
        bool stop = false;
        if (!retry)
                return drv_err(err, ENOMEM, "out of memory");
        if (par > S3_MAX_PARALLEL)
                par = S3_MAX_PARALLEL;
        if (par == 0)
                par = 1;
        while (done < n) {
                uint64_t now = drv_now_ns();
                for (unsigned i = 0; i < par; i++) {
                        if (slot[i])
                                continue;
                        struct xfer *x = NULL;
                        for (size_t k = 0; k < n_retry; k++)
                                if (xs[retry[k]]->not_before_ns <= now) {
                                        x = xs[retry[k]];
                                        retry[k] = retry[--n_retry];
                                        break;
                                }
                        if (!x && next < n && !stop)
                                x = xs[next++];
                        if (!x)
                                break;
                        CURL *h = s->easy[i];
                        int r = xfer_setup(s, x, h);
                        if (r < 0) {
                                x->done = true;
                                x->result =
                                    drv_err(err, -r, "%s: %s: setting up", s->name, x->what);
                                first = first ?: x->result;
                                done++;
                                continue;
                        }
                        curl_multi_add_handle(s->multi, h);
                        slot[i] = x;
                        slot_x[i] = h;
                }
                if (stop) { /* count what will never start */
                        done += n - next;
                        next = n;
                        for (size_t k = 0; k < n_retry; k++)
                                done++;
                        n_retry = 0;
                }
                bool any = false;
                for (unsigned i = 0; i < par; i++)
                        any = any || slot[i];
                if (!any) {
                        if (done >= n)
                                break;
                        struct timespec ts = {0, 20 * 1000000};
                        nanosleep(&ts, NULL);
                        continue;
                }
                int running = 0;
                curl_multi_perform(s->multi, &running);
                CURLMsg *m;
                int left;
                while ((m = curl_multi_info_read(s->multi, &left))) {
                        if (m->msg != CURLMSG_DONE)
                                continue;
                        CURL *h = m->easy_handle;
                        CURLcode cc = m->data.result;
                        curl_multi_remove_handle(s->multi, h);
                        unsigned i = 0;
                        while (i < par && slot_x[i] != h)
                                i++;
                        if (i == par)
                                continue;
                        struct xfer *x = slot[i];
                        slot[i] = NULL;
                        slot_x[i] = NULL;
                        x->cc = cc;
                        struct drv_error e = {0};
                        int r = xfer_judge(s, x, &e);
                        if (r == 1) {
                                for (size_t k = 0; k < n; k++)
                                        if (xs[k] == x) {
                                                retry[n_retry++] = k;
                                                break;
                                        }
                                continue;
                        }
                        x->result = r;
                        x->done = true;
                        done++;
                        if (r < 0 && !first) {
                                first = r;
                                *err = e;
                                stop = stop_on_error;
                        }
                }
                if (running > 0)
                        curl_multi_poll(s->multi, NULL, 0, 50, NULL);
        }
        free(retry);
        return first;
}

int s3_run_one(struct s3 *s, struct xfer *x, struct drv_error *err)
{
        struct xfer *xs[1] = {x};
        return s3_run_xfers(s, xs, 1, 1, true, err);
}

int s3_pipe_thread(struct s3 *s, bool to_thread, void *(*fn)(void *), void *arg, pthread_t *th,
                   int *mine, int *theirs, struct drv_error *err)
{
        int p[2];
        if (pipe2(p, O_CLOEXEC) < 0)
                return drv_err_errno(err, "%s: pipe", s->name);
        fcntl(p[1], F_SETPIPE_SZ, 1 << 20);
        *mine = to_thread ? p[1] : p[0];
        *theirs = to_thread ? p[0] : p[1];
        int e = pthread_create(th, NULL, fn, arg);
        if (e) {
                close(p[0]);
                close(p[1]);
                return drv_err(err, e, "%s: cannot start a thread", s->name);
        }
        return 0;
}

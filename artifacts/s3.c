/* s3.c: the S3 backend of objstore — opening a store and its operations (PUT, GET, HEAD, DELETE,
 * listing, streamed downloads). Requests: s3_request.c; signing: sigv4.c; multipart and streamed
 * uploads: s3_multipart.c. */
#include "artifacts/s3_int.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <time.h>

void s3_free(struct s3 *s)
{
        if (!s)
                return;
        for (unsigned i = 0; i < S3_MAX_PARALLEL; i++)
                if (s->easy[i])
                        curl_easy_cleanup(s->easy[i]);
        if (s->multi)
                curl_multi_cleanup(s->multi);
        free(s->name);
        free(s->bucket);
        free(s->prefix);
        free(s->base);
        free(s->region);
        free(s->sigv4);
        free(s->access_key);
        free(s->secret_key);
        free(s->token_hdr);
        free(s->ca_pem);
        free(s);
}

static uint64_t env_u64(const char *name, uint64_t def)
{
        const char *v = getenv(name);
        uint64_t x;
        return v && drv_parse_size(v, &x) == 0 && x > 0 ? x : def;
}

int s3_open(const struct js_storage *cfg, struct s3 **out, struct drv_error *err)
{
        static bool inited;
        if (!inited) {
                curl_global_init(CURL_GLOBAL_DEFAULT);
                inited = true;
        }
        const char *u = cfg->url + strlen("s3://");
        const char *slash = strchr(u, '/');
        size_t bl = slash ? (size_t)(slash - u) : strlen(u);
        if (bl == 0 || bl > 63)
                return drv_err(err, EINVAL, "storage url '%s': no bucket name", cfg->url);
        for (size_t i = 0; i < bl; i++)
                if (!((u[i] >= 'a' && u[i] <= 'z') || (u[i] >= '0' && u[i] <= '9') || u[i] == '-' ||
                      u[i] == '.'))
                        return drv_err(err, EINVAL, "storage url '%s': bad bucket name", cfg->url);
        struct s3 *s = calloc(1, sizeof(*s));
        if (!s)
                return drv_err(err, ENOMEM, "out of memory");
        s->name = strdup(cfg->url);
        s->bucket = strndup(u, bl);
        const char *pfx = slash ? slash + 1 : "";
        while (*pfx == '/')
                pfx++;
        s->prefix =
            pfx[0] ? drv_asprintf("%s%s", pfx, drv_endswith(pfx, "/") ? "" : "/") : strdup("");
        s->region = strdup(cfg->region && cfg->region[0] ? cfg->region : "us-east-1");
        _cleanup_free_ char *ep =
            cfg->endpoint && cfg->endpoint[0]
                ? strdup(cfg->endpoint)
                : drv_asprintf("https://s3.%s.amazonaws.com", s->region ? s->region : "");
        int r = 0;
        if (!s->name || !s->bucket || !s->prefix || !s->region || !ep)
                r = drv_err(err, ENOMEM, "out of memory");
        size_t el = ep ? strlen(ep) : 0;
        while (el > 0 && ep[el - 1] == '/')
                ep[--el] = '\0';
        const char *hostpart = ep ? strstr(ep, "://") : NULL;
        if (r == 0 &&
            (!hostpart || !(drv_startswith(ep, "http://") || drv_startswith(ep, "https://")) ||
             strchr(hostpart + 3, '/')))
                r = drv_err(err, EINVAL, "storage endpoint '%s': expected http(s)://host[:port]",
                            ep);
        if (r == 0) {
                if (cfg->path_style)
                        s->base = drv_asprintf("%s/%s", ep, s->bucket);
                else
                        s->base = drv_asprintf("%.*s%s.%s", (int)(hostpart + 3 - ep), ep, s->bucket,
                                               hostpart + 3);
                s->sigv4 = drv_asprintf("aws:amz:%s:s3", s->region);
                s->access_key = strdup(cfg->access_key ? cfg->access_key : "");
                s->secret_key = strdup(cfg->secret_key ? cfg->secret_key : "");
                if (cfg->session_token && cfg->session_token[0])
                        s->token_hdr = drv_asprintf("x-amz-security-token: %s", cfg->session_token);
                if (cfg->ca_pem && cfg->ca_pem[0])
                        s->ca_pem = strdup(cfg->ca_pem);
                s->multi = curl_multi_init();
                for (unsigned i = 0; i < S3_MAX_PARALLEL; i++)
                        s->easy[i] = curl_easy_init();
                if (!s->base || !s->sigv4 || !s->access_key || !s->secret_key || !s->multi ||
                    !s->easy[S3_MAX_PARALLEL - 1] ||
                    (cfg->session_token && cfg->session_token[0] && !s->token_hdr) ||
                    (cfg->ca_pem && cfg->ca_pem[0] && !s->ca_pem))
                        r = drv_err(err, ENOMEM, "out of memory");
        }
        if (r < 0) {
                s3_free(s);
                return r;
        }
        curl_multi_setopt(s->multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long)S3_MAX_PARALLEL);
        s->attempts = (unsigned)env_u64("DROVER_S3_ATTEMPTS", 6);
        s->backoff_ms = (unsigned)env_u64("DROVER_S3_BACKOFF_MS", 100);
        s->part_size = env_u64("DROVER_S3_PART_SIZE", 16u << 20);
        if (s->part_size < (5u << 20))
                s->part_size = 5u << 20;
        s->low_speed_time = (long)env_u64("DROVER_S3_STALL_SECONDS", 30);
        s->parallel = (unsigned)env_u64("DROVER_S3_PARALLEL", 16);
        s->list_page = (unsigned)env_u64("DROVER_S3_LIST_PAGE", 0); /* 0: the server's (1000) */
        if (s->parallel > S3_MAX_PARALLEL)
                s->parallel = S3_MAX_PARALLEL;
        *out = s;
        return 0;
}

/* The body and headers of a single PUT of size bytes of fd. */
static int put_body(struct xfer *x, int fd, uint64_t size, const char *content_type)
{
        int r = s3_xfer_body_fd(x, fd, 0, size);
        r = r ?: s3_xfer_header(x, "x-amz-meta-sha256: %s", x->payload_sha);
        r = r
                ?: s3_xfer_header(x, "Content-Type: %s",
                                  content_type ? content_type : "application/octet-stream");
        return r;
}

/* (s3_put_many: read and hash a file only when its request starts) */
static int prepare_put(struct xfer *x, const void *arg)
{
        const struct objstore_item *it = arg;
        struct stat st;
        if (fstat(it->fd, &st) < 0)
                return -errno;
        return put_body(x, it->fd, (uint64_t)st.st_size, it->content_type);
}

int s3_put_fd(struct s3 *s, const char *key, int fd, uint64_t size, const char *content_type,
              struct drv_error *err)
{
        if (size > s->part_size)
                return s3_multipart_fd(s, key, fd, size, content_type, err);
        struct xfer x;
        int r = s3_xfer_init(s, &x, "PUT", key, NULL);
        r = r ?: put_body(&x, fd, size, content_type);
        if (r < 0)
                r = drv_err(err, -r, "%s: reading the data of %s", s->name, key);
        else
                r = s3_run_one(s, &x, err);
        s3_xfer_release(&x);
        return r;
}

int s3_put_many(struct s3 *s, const struct objstore_item *items, size_t n, struct drv_error *err)
{
        /* large files go up one by one (multipart, parts in parallel); the small ones all in one
         * run of requests, s->parallel at a time, each read and hashed as it starts */
        struct xfer *xs = calloc(n ? n : 1, sizeof(*xs));
        struct xfer **pp = calloc(n ? n : 1, sizeof(*pp));
        size_t k = 0;
        int r = xs && pp ? 0 : drv_err(err, ENOMEM, "out of memory");
        for (size_t i = 0; r == 0 && i < n; i++) {
                const struct objstore_item *it = &items[i];
                struct stat st;
                if (fstat(it->fd, &st) < 0) {
                        r = drv_err_errno(err, "%s: %s", s->name, it->key);
                } else if ((uint64_t)st.st_size > s->part_size) {
                        r = s3_multipart_fd(s, it->key, it->fd, (uint64_t)st.st_size,
                                            it->content_type, err);
                } else if (s3_xfer_init(s, &xs[k], "PUT", it->key, NULL) < 0) {
                        r = drv_err(err, ENOMEM, "out of memory");
                } else {
                        xs[k].prepare = prepare_put;
                        xs[k].prep_arg = it;
                        pp[k] = &xs[k];
                        k++;
                }
        }
        if (r == 0)
                r = s3_run_xfers(s, pp, k, s->parallel, true, err);
        for (size_t i = 0; xs && i < n; i++)
                s3_xfer_release(&xs[i]);
        free(xs);
        free(pp);
        return r;
}

/* A streamed multipart object has no sha256 of the whole (not known when it began), but its
 * part size: its ETag, md5(md5(part 1) .. md5(part N)) "-N", is checked against what came. */
static int verify_multipart_etag(struct s3 *s, const char *key, struct xfer *x,
                                 struct drv_error *err)
{
        _cleanup_free_ char *sha = s3_resp_header(x, "x-amz-meta-sha256");
        _cleanup_free_ char *ps = s3_resp_header(x, "x-amz-meta-part-size");
        _cleanup_free_ char *etag = s3_resp_header(x, "etag");
        if (sha || !ps || !etag)
                return 0;
        uint64_t psz = strtoull(ps, NULL, 10);
        char *dash = strrchr(etag, '-');
        if (psz == 0 || !dash)
                return 0;
        unsigned long nparts = strtoul(dash + 1, NULL, 10);
        EVP_MD_CTX *all = EVP_MD_CTX_new(), *one = EVP_MD_CTX_new();
        unsigned char md[16];
        unsigned mdl;
        int r = all && one ? 0 : -ENOMEM;
        unsigned long n = 0;
        if (r == 0)
                EVP_DigestInit_ex(all, EVP_md5(), NULL);
        for (uint64_t off = 0; r == 0 && off < x->out_pos; off += psz, n++) {
                uint64_t left = x->out_pos - off < psz ? x->out_pos - off : psz;
                EVP_DigestInit_ex(one, EVP_md5(), NULL);
                r = s3_digest_fd(one, x->out_fd, x->out_base + off, left);
                EVP_DigestFinal_ex(one, md, &mdl);
                EVP_DigestUpdate(all, md, 16);
        }
        char got[40];
        if (r == 0) {
                EVP_DigestFinal_ex(all, md, &mdl);
                drv_hex(md, 16, got);
        }
        EVP_MD_CTX_free(all);
        EVP_MD_CTX_free(one);
        if (r < 0)
                return drv_err(err, -r, "%s: verifying %s", s->name, key);
        const char *e = etag[0] == '"' ? etag + 1 : etag;
        if (n != nparts || strncasecmp(e, got, 32) != 0)
                return drv_err(err, EIO, "%s: GET %s: content does not match its ETag %s", s->name,
                               key, etag);
        return 0;
}

int s3_get(struct s3 *s, const char *key, int out_fd, uint64_t off, uint64_t len,
           struct drv_error *err)
{
        struct xfer x;
        struct stat st;
        int r = s3_xfer_init(s, &x, "GET", key, NULL);
        if (r < 0)
                return drv_err(err, ENOMEM, "out of memory");
        if (fstat(out_fd, &st) < 0) {
                s3_xfer_release(&x);
                return drv_err_errno(err, "%s: GET %s", s->name, key);
        }
        x.out_fd = out_fd;
        x.out_base = (uint64_t)st.st_size;
        if (len > 0 || off > 0) {
                char range[96];
                if (len > 0)
                        snprintf(range, sizeof(range), "%llu-%llu", (unsigned long long)off,
                                 (unsigned long long)(off + len - 1));
                else
                        snprintf(range, sizeof(range), "%llu-", (unsigned long long)off);
                r = s3_xfer_header(&x, "Range: bytes=%s", range);
        } else {
                x.out_md = EVP_MD_CTX_new(); /* whole objects are verified */
                r = x.out_md ? 0 : -ENOMEM;
        }
        struct drv_error e = {0};
        r = r < 0 ? drv_err(err, ENOMEM, "out of memory") : s3_run_one(s, &x, &e);
        if (r == 0 && x.out_md)
                r = verify_multipart_etag(s, key, &x, &e);
        if (r < 0 && x.status == 404)
                r = -ENOENT;
        else if (r < 0)
                *err = e;
        s3_xfer_release(&x);
        return r;
}

int s3_head(struct s3 *s, const char *key, bool *exists, uint64_t *size, struct drv_error *err)
{
        struct xfer x;
        int r = s3_xfer_init(s, &x, "HEAD", key, NULL);
        if (r < 0)
                return drv_err(err, ENOMEM, "out of memory");
        struct drv_error e = {0};
        r = s3_run_one(s, &x, &e);
        *exists = r == 0;
        if (r < 0 && x.status == 404)
                r = 0;
        else if (r < 0)
                *err = e;
        if (r == 0 && *exists && size) {
                _cleanup_free_ char *cl = s3_resp_header(&x, "content-length");
                *size = cl ? strtoull(cl, NULL, 10) : 0;
        }
        s3_xfer_release(&x);
        return r;
}

int s3_delete(struct s3 *s, const char *key, struct drv_error *err)
{
        struct xfer x;
        int r = s3_xfer_init(s, &x, "DELETE", key, NULL);
        r = r < 0 ? drv_err(err, ENOMEM, "out of memory") : s3_run_one(s, &x, err);
        s3_xfer_release(&x);
        return r;
}

static int64_t parse_time_ns(const char *t)
{
        struct tm tm = {0};
        int ms = 0;
        if (sscanf(t, "%d-%d-%dT%d:%d:%d.%dZ", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
                   &tm.tm_min, &tm.tm_sec, &ms) < 6)
                return 0;
        tm.tm_year -= 1900;
        tm.tm_mon -= 1;
        return (int64_t)timegm(&tm) * 1000000000LL + (int64_t)ms * 1000000LL;
}

int s3_list(struct s3 *s, const char *prefix, struct objstore_entry **out, size_t *n,
            struct drv_error *err)
{
        struct objstore_entry *v = NULL;
        size_t nv = 0, cap = 0;
        char *token = NULL;
        int r = 0;
        size_t pl = strlen(s->prefix);
        for (int page = 0; r == 0 && page < 100000; page++) {
                /* canonical query: keys sorted, values encoded ('/' too) */
                struct strbuf q = STRBUF_INIT;
                if (token) {
                        r = strbuf_puts(&q, "continuation-token=");
                        r = r ?: s3_uri_encode(&q, token, false);
                        r = r ?: strbuf_putc(&q, '&');
                }
                r = r ?: strbuf_puts(&q, "list-type=2&");
                if (s->list_page)
                        r = r ?: strbuf_printf(&q, "max-keys=%u&", s->list_page);
                r = r ?: strbuf_puts(&q, "prefix=");
                r = r ?: s3_uri_encode(&q, s->prefix, false);
                r = r ?: s3_uri_encode(&q, prefix, false);
                struct xfer x;
                r = r ?: s3_xfer_init(s, &x, "GET", NULL, q.buf);
                strbuf_release(&q);
                if (r < 0) {
                        r = drv_err(err, ENOMEM, "out of memory");
                        break;
                }
                r = s3_run_one(s, &x, err);
                const char *p = x.resp.buf ? x.resp.buf : "";
                const char *end = p + x.resp.len;
                const char *c;
                while (r == 0 && (c = memmem(p, (size_t)(end - p), "<Contents>", 10))) {
                        const char *ce = memmem(c, (size_t)(end - c), "</Contents>", 11);
                        if (!ce)
                                break;
                        const char *f = c;
                        _cleanup_free_ char *k = s3_xml_take(&f, ce, "Key");
                        f = c;
                        _cleanup_free_ char *sz = s3_xml_take(&f, ce, "Size");
                        f = c;
                        _cleanup_free_ char *lm = s3_xml_take(&f, ce, "LastModified");
                        p = ce + 11;
                        if (!k || strlen(k) < pl || strncmp(k, s->prefix, pl) != 0)
                                continue;
                        if (nv == cap) {
                                size_t nc = cap ? cap * 2 : 64;
                                struct objstore_entry *nvp = realloc(v, nc * sizeof(*v));
                                if (!nvp) {
                                        r = drv_err(err, ENOMEM, "out of memory");
                                        break;
                                }
                                v = nvp;
                                cap = nc;
                        }
                        v[nv].key = strdup(k + pl);
                        if (!v[nv].key) {
                                r = drv_err(err, ENOMEM, "out of memory");
                                break;
                        }
                        v[nv].size = sz ? strtoull(sz, NULL, 10) : 0;
                        v[nv].mtime_ns = lm ? parse_time_ns(lm) : 0;
                        nv++;
                }
                p = x.resp.buf ? x.resp.buf : "";
                _cleanup_free_ char *trunc = r == 0 ? s3_xml_take(&p, end, "IsTruncated") : NULL;
                free(token);
                token = NULL;
                if (trunc && strcmp(trunc, "true") == 0) {
                        p = x.resp.buf;
                        token = s3_xml_take(&p, end, "NextContinuationToken");
                        if (!token)
                                r = drv_err(err, EIO, "%s: listing %s: truncated without a token",
                                            s->name, prefix);
                }
                s3_xfer_release(&x);
                if (!token)
                        break;
        }
        free(token);
        if (r < 0) {
                objstore_entries_free(v, nv);
                return r;
        }
        *out = v;
        *n = nv;
        return 0;
}

/* ---------- streamed downloads: a thread GETs into a pipe the caller reads as it comes ----------
 */

struct s3_rstream {
        struct s3 *s;
        char *key;
        int wfd;
        pthread_t thread;
        int result;
        struct drv_error err;
};

static void *rstream_main(void *data)
{
        struct s3_rstream *st = data;
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, SIGPIPE); /* a reader that stops early gives EPIPE, not a signal */
        pthread_sigmask(SIG_BLOCK, &set, NULL);
        struct xfer x;
        int r = s3_xfer_init(st->s, &x, "GET", st->key, NULL);
        x.out_fd = st->wfd;
        x.stream = true;
        x.out_md = r == 0 ? EVP_MD_CTX_new() : NULL;
        if (r < 0 || !x.out_md || !EVP_DigestInit_ex(x.out_md, EVP_sha256(), NULL))
                r = drv_err(&st->err, ENOMEM, "out of memory");
        else
                r = s3_run_one(st->s, &x, &st->err);
        s3_xfer_release(&x);
        st->result = r;
        close(st->wfd); /* EOF: the reader then asks s3_get_stream_end whether it was all good */
        return NULL;
}

int s3_get_stream_begin(struct s3 *s, const char *key, int *rfd, struct s3_rstream **out,
                        struct drv_error *err)
{
        bool exists = false;
        int r = s3_head(s, key, &exists, NULL, err);
        if (r < 0)
                return r;
        if (!exists)
                return -ENOENT;
        struct s3_rstream *st = calloc(1, sizeof(*st));
        if (!st || !(st->key = strdup(key))) {
                free(st);
                return drv_err(err, ENOMEM, "out of memory");
        }
        st->s = s;
        r = s3_pipe_thread(s, false, rstream_main, st, &st->thread, rfd, &st->wfd, err);
        if (r < 0) {
                free(st->key);
                free(st);
                return r;
        }
        *out = st;
        return 0;
}

int s3_get_stream_end(struct s3_rstream *st, int rfd, struct drv_error *err)
{
        close(rfd);
        pthread_join(st->thread, NULL);
        int r = st->result;
        if (r < 0 && err)
                *err = st->err;
        free(st->key);
        free(st);
        return r;
}

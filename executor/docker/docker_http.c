/* docker_http.c: the docker client's transport — libcurl over TLS (PEM blobs) or a unix socket,
 * API version negotiation, JSON calls with Docker's error messages, the stream demultiplexer. */
#include "executor/docker/docker_int.h"

#include <time.h>

#define DOCKER_CLIENT_MAX_MINOR 41 /* API 1.41: Docker 20.10 */
#define DOCKER_CLIENT_MIN_MINOR 24

const char *docker_api_version(const struct docker *d)
{
        return d->api;
}
const char *docker_engine_version(const struct docker *d)
{
        return d->engine;
}
const char *docker_engine_arch(const struct docker *d)
{
        return d->arch;
}
const char *docker_host_name(const struct docker *d)
{
        return d->host;
}

void docker_close(struct docker *d)
{
        if (!d)
                return;
        if (d->curl)
                curl_easy_cleanup(d->curl);
        free(d->base);
        free(d->sock);
        free(d->host);
        free(d->ca_pem);
        free(d->cert_pem);
        free(d->key_pem);
        free(d);
}

char *docker_escape(struct docker *d, const char *s)
{
        char *e = curl_easy_escape(d->curl, s, 0);
        if (!e)
                return NULL;
        char *r = strdup(e);
        curl_free(e);
        return r;
}

static size_t to_strbuf(char *p, size_t size, size_t n, void *ud)
{
        return strbuf_append(ud, p, size * n) < 0 ? 0 : size * n;
}

struct sink_ctx {
        const struct docker_req *rq;
};
static size_t to_sink(char *p, size_t size, size_t n, void *ud)
{
        const struct docker_req *rq = ud;
        return rq->sink(rq->sink_ud, p, size * n);
}

static size_t from_fd(char *p, size_t size, size_t n, void *ud)
{
        int fd = *(int *)ud;
        ssize_t r = DRV_RETRY(read(fd, p, size * n));
        return r < 0 ? CURL_READFUNC_ABORT : (size_t)r;
}

static bool is_connect_error(CURLcode c)
{
        return c == CURLE_COULDNT_CONNECT || c == CURLE_COULDNT_RESOLVE_HOST ||
               c == CURLE_OPERATION_TIMEDOUT;
}

static bool is_tls_error(CURLcode c, const char *msg)
{
        if (c == CURLE_SSL_CONNECT_ERROR || c == CURLE_PEER_FAILED_VERIFICATION ||
            c == CURLE_SSL_CERTPROBLEM || c == CURLE_SSL_CIPHER || c == CURLE_SSL_CACERT_BADFILE ||
            c == CURLE_SSL_ISSUER_ERROR || c == CURLE_SSL_CLIENTCERT)
                return true;
        return (c == CURLE_RECV_ERROR || c == CURLE_SEND_ERROR || c == CURLE_GOT_NOTHING) &&
               (strstr(msg, "alert") || strstr(msg, "certificate") || strstr(msg, "SSL"));
}

void docker_curl_endpoint(struct docker *d, CURL *c)
{
        curl_easy_setopt(c, CURLOPT_ERRORBUFFER, d->errbuf);
        curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
        if (d->sock)
                curl_easy_setopt(c, CURLOPT_UNIX_SOCKET_PATH, d->sock);
        if (d->ca_pem) {
                struct curl_blob b = {d->ca_pem, strlen(d->ca_pem), CURL_BLOB_COPY};
                curl_easy_setopt(c, CURLOPT_CAINFO_BLOB, &b);
        }
        if (d->cert_pem) {
                struct curl_blob b = {d->cert_pem, strlen(d->cert_pem), CURL_BLOB_COPY};
                curl_easy_setopt(c, CURLOPT_SSLCERT_BLOB, &b);
                curl_easy_setopt(c, CURLOPT_SSLCERTTYPE, "PEM");
        }
        if (d->key_pem) {
                struct curl_blob b = {d->key_pem, strlen(d->key_pem), CURL_BLOB_COPY};
                curl_easy_setopt(c, CURLOPT_SSLKEY_BLOB, &b);
                curl_easy_setopt(c, CURLOPT_SSLKEYTYPE, "PEM");
        }
}

static int setup(struct docker *d, const struct docker_req *rq, struct curl_slist **hl,
                 struct strbuf *resp)
{
        CURL *c = d->curl;
        curl_easy_reset(c);
        _cleanup_free_ char *url = drv_asprintf("%s%s%s%s", d->base, rq->versioned ? "/v" : "",
                                                rq->versioned ? d->api : "", rq->path);
        if (!url)
                return -ENOMEM;
        curl_easy_setopt(c, CURLOPT_URL, url);
        curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
        docker_curl_endpoint(d, c);
        for (const char *const *h = rq->headers; h && *h; h++)
                *hl = curl_slist_append(*hl, *h);
        if (rq->body_fd >= 0) {
                curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
                curl_easy_setopt(c, CURLOPT_READFUNCTION, from_fd);
                curl_easy_setopt(c, CURLOPT_READDATA, (void *)&rq->body_fd);
                *hl = curl_slist_append(*hl, "Transfer-Encoding: chunked");
                *hl = curl_slist_append(*hl, "Expect:");
        } else if (rq->body) {
                curl_easy_setopt(c, CURLOPT_POSTFIELDS, rq->body);
                curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)rq->body_len);
        } else if (strcmp(rq->method, "POST") == 0) {
                curl_easy_setopt(c, CURLOPT_POSTFIELDS, "");
                curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)0);
        }
        if (strcmp(rq->method, "HEAD") == 0)
                curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
        else
                curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, rq->method);
        if (*hl)
                curl_easy_setopt(c, CURLOPT_HTTPHEADER, *hl);
        if (rq->sink) {
                curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, to_sink);
                curl_easy_setopt(c, CURLOPT_WRITEDATA, (void *)rq);
        } else {
                curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, to_strbuf);
                curl_easy_setopt(c, CURLOPT_WRITEDATA, resp);
        }
        return 0;
}

int docker_do(struct docker *d, const struct docker_req *rq, struct strbuf *resp, long *status,
              struct drv_error *err)
{
        long delay_ms = 100;
        for (int attempt = 0;; attempt++) {
                struct curl_slist *hl = NULL;
                strbuf_reset(resp);
                d->errbuf[0] = 0;
                int r = setup(d, rq, &hl, resp);
                if (r < 0) {
                        curl_slist_free_all(hl);
                        return drv_err(err, -r, "docker %s: out of memory", d->host);
                }
                uint64_t t0 = drv_now_ns();
                CURLcode cc = curl_easy_perform(d->curl);
                curl_slist_free_all(hl);
                if (cc == CURLE_OK) {
                        curl_easy_getinfo(d->curl, CURLINFO_RESPONSE_CODE, status);
                        log_debug("docker_request",
                                  "host=%s method=%s path=\"%.*s\" status=%ld ms=%.1f", d->host,
                                  rq->method, (int)strcspn(rq->path, "?"), rq->path, *status,
                                  (double)(drv_now_ns() - t0) / 1e6);
                        return 0;
                }
                const char *msg = d->errbuf[0] ? d->errbuf : curl_easy_strerror(cc);
                if (is_connect_error(cc) && attempt < rq->retries && rq->body_fd < 0) {
                        log_warn("docker_retry",
                                 "host=%s endpoint=\"%s %s\" attempt=%d error=\"%s\"", d->host,
                                 rq->method, rq->path, attempt + 1, msg);
                        struct timespec ts = {0, delay_ms * 1000000L};
                        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
                                ;
                        delay_ms *= 3;
                        continue;
                }
                if (is_tls_error(cc, msg))
                        return drv_err(err, ECONNREFUSED,
                                       "docker %s: %s %s: TLS refused (check the CA, client "
                                       "certificate and key): %s",
                                       d->host, rq->method, rq->path, msg);
                if (is_connect_error(cc))
                        return drv_err(err, EHOSTUNREACH, "docker %s: %s %s: host unreachable: %s",
                                       d->host, rq->method, rq->path, msg);
                return drv_err(err, EIO, "docker %s: %s %s: %s", d->host, rq->method, rq->path,
                               msg);
        }
}

int docker_status_err(struct docker *d, const char *method, const char *path, long status,
                      const char *body, struct drv_error *err)
{
        const char *msg = body && *body ? body : "(no message)";
        json_t *j = body ? json_loads(body, 0, NULL) : NULL;
        const char *m = j ? json_string_value(json_object_get(j, "message")) : NULL;
        if (m)
                msg = m;
        int code = status == 404                    ? ENOENT
                   : status == 401 || status == 403 ? EACCES
                   : status == 409                  ? EEXIST
                   : status >= 500                  ? EIO
                                                    : EINVAL;
        /* cut a query string out of the endpoint for readability */
        int plen = (int)strcspn(path, "?");
        drv_err(err, code, "docker %s: %s %.*s: %ld: %s", d->host, method, plen, path, status, msg);
        json_decref(j);
        return -code;
}

int docker_call(struct docker *d, const char *method, const char *path, json_t *body, json_t **out,
                long *status, struct drv_error *err)
{
        _cleanup_free_ char *text = NULL;
        if (body && !(text = json_dumps(body, JSON_COMPACT)))
                return drv_err(err, ENOMEM, "out of memory");
        const char *hdrs[] = {"Content-Type: application/json", NULL};
        struct docker_req rq = {.method = method,
                                .path = path,
                                .versioned = true,
                                .headers = text ? hdrs : NULL,
                                .body = text,
                                .body_len = text ? strlen(text) : 0,
                                .body_fd = -1,
                                .retries = 2};
        _cleanup_strbuf_ struct strbuf resp = STRBUF_INIT;
        long st = 0;
        int r = docker_do(d, &rq, &resp, &st, err);
        if (r < 0)
                return r;
        if (status)
                *status = st;
        if (st >= 400)
                return docker_status_err(d, method, path, st, resp.buf, err);
        if (out) {
                *out = NULL;
                if (resp.len > 0) {
                        json_error_t je;
                        *out = json_loadb(resp.buf, resp.len, 0, &je);
                        if (!*out)
                                return drv_err(err, EPROTO, "docker %s: %s %s: bad JSON: %s",
                                               d->host, method, path, je.text);
                }
        }
        return 0;
}

static int parse_minor(const char *v)
{
        if (!v || strncmp(v, "1.", 2) != 0)
                return -1;
        return atoi(v + 2);
}

static int parse_url(struct docker *d, const char *url, bool tls, struct drv_error *err)
{
        const char *rest;
        if ((rest = drv_startswith(url, "unix://") ? url + 7 : NULL)) {
                d->sock = strdup(rest);
                d->host = strdup(rest);
                d->base = strdup("http://localhost");
        } else {
                rest = drv_startswith(url, "tcp://")     ? url + 6
                       : drv_startswith(url, "https://") ? url + 8
                       : drv_startswith(url, "http://")  ? url + 7
                                                         : NULL;
                if (!rest || !*rest)
                        return drv_err(err, EINVAL,
                                       "docker host \"%s\": expected tcp://HOST:PORT, "
                                       "https://HOST:PORT or unix:///PATH",
                                       url);
                size_t n = strcspn(rest, "/");
                d->host = strndup(rest, n);
                bool https = tls || drv_startswith(url, "https://");
                d->base =
                    d->host ? drv_asprintf("%s://%s", https ? "https" : "http", d->host) : NULL;
        }
        if (!d->host || !d->base)
                return drv_err(err, ENOMEM, "out of memory");
        return 0;
}

static int negotiate(struct docker *d, struct drv_error *err)
{
        struct docker_req rq = {.method = "GET", .path = "/version", .body_fd = -1, .retries = 3};
        _cleanup_strbuf_ struct strbuf resp = STRBUF_INIT;
        long st = 0;
        int r = docker_do(d, &rq, &resp, &st, err);
        if (r < 0)
                return r;
        if (st >= 400)
                return docker_status_err(d, "GET", "/version", st, resp.buf, err);
        json_t *j = json_loadb(resp.buf ? resp.buf : "", resp.len, 0, NULL);
        const char *api = j ? json_string_value(json_object_get(j, "ApiVersion")) : NULL;
        const char *ver = j ? json_string_value(json_object_get(j, "Version")) : NULL;
        int max = parse_minor(api);
        if (max < 0) {
                json_decref(j);
                return drv_err(err, EPROTO, "docker %s: GET /version: no ApiVersion in the answer",
                               d->host);
        }
        if (max < DOCKER_CLIENT_MIN_MINOR) {
                json_decref(j);
                return drv_err(err, ENOTSUP,
                               "docker %s: engine API %s is older than 1.%d, which drover needs",
                               d->host, api, DOCKER_CLIENT_MIN_MINOR);
        }
        snprintf(d->api, sizeof(d->api), "1.%d",
                 max < DOCKER_CLIENT_MAX_MINOR ? max : DOCKER_CLIENT_MAX_MINOR);
        snprintf(d->engine, sizeof(d->engine), "%s", ver ? ver : "?");
        const char *arch = json_string_value(json_object_get(j, "Arch"));
        snprintf(d->arch, sizeof(d->arch), "%s", arch ? arch : "");
        json_decref(j);
        return 0;
}

static void global_init(void)
{
        static bool inited;
        if (!inited) {
                curl_global_init(CURL_GLOBAL_DEFAULT);
                inited = true;
        }
}

int docker_open(const struct docker_endpoint *ep, struct docker **out, struct drv_error *err)
{
        if (!ep->url)
                return drv_err(err, EINVAL, "docker host: no url");
        global_init();
        struct docker *d = calloc(1, sizeof(*d));
        if (!d)
                return drv_err(err, ENOMEM, "out of memory");
        _cleanup_(docker_closep) struct docker *guard = d;
        bool tls = ep->cert_pem || ep->ca_pem;
        int r = parse_url(d, ep->url, tls, err);
        if (r < 0)
                return r;
        if ((ep->ca_pem && !(d->ca_pem = strdup(ep->ca_pem))) ||
            (ep->cert_pem && !(d->cert_pem = strdup(ep->cert_pem))) ||
            (ep->key_pem && !(d->key_pem = strdup(ep->key_pem))) || !(d->curl = curl_easy_init()))
                return drv_err(err, ENOMEM, "out of memory");
        r = negotiate(d, err);
        if (r < 0)
                return r;
        log_debug("docker_open", "host=%s api=%s engine=%s", d->host, d->api, d->engine);
        *out = TAKE_PTR(guard);
        return 0;
}

void docker_describe(const struct docker *d, struct docker_conn *c)
{
        *c = (struct docker_conn){.base = d->base,
                                  .host = d->host,
                                  .sock = d->sock,
                                  .ca_pem = d->ca_pem,
                                  .cert_pem = d->cert_pem,
                                  .key_pem = d->key_pem,
                                  .api = d->api,
                                  .engine = d->engine,
                                  .arch = d->arch,
                                  .node = d->node};
}

static char *dup_opt(const char *s, bool *oom)
{
        char *r = s ? strdup(s) : NULL;
        *oom = *oom || (s && !r);
        return r;
}

int docker_from_conn(const struct docker_conn *c, struct docker **out, struct drv_error *err)
{
        if (!c->base || !c->host || !c->api)
                return drv_err(err, EINVAL, "docker connection: base, host and api are needed");
        global_init();
        struct docker *n = calloc(1, sizeof(*n));
        if (!n)
                return drv_err(err, ENOMEM, "out of memory");
        snprintf(n->api, sizeof(n->api), "%s", c->api);
        snprintf(n->engine, sizeof(n->engine), "%s", c->engine ? c->engine : "");
        snprintf(n->arch, sizeof(n->arch), "%s", c->arch ? c->arch : "");
        snprintf(n->node, sizeof(n->node), "%s", c->node ? c->node : "");
        bool oom = false;
        n->base = dup_opt(c->base, &oom);
        n->host = dup_opt(c->host, &oom);
        n->sock = dup_opt(c->sock, &oom);
        n->ca_pem = dup_opt(c->ca_pem, &oom);
        n->cert_pem = dup_opt(c->cert_pem, &oom);
        n->key_pem = dup_opt(c->key_pem, &oom);
        n->curl = curl_easy_init();
        if (oom || !n->curl) {
                docker_close(n);
                return drv_err(err, ENOMEM, "out of memory");
        }
        *out = n;
        return 0;
}

int docker_dup(const struct docker *d, struct docker **out, struct drv_error *err)
{
        struct docker_conn c;
        docker_describe(d, &c);
        return docker_from_conn(&c, out, err);
}

int docker_demux_feed(struct docker_demux *dm, const void *data, size_t n,
                      int (*out)(void *ud, int stream, const void *p, size_t len), void *ud)
{
        const unsigned char *p = data;
        while (n > 0) {
                if (dm->left == 0) {
                        size_t take = 8 - dm->hdr_len < n ? 8 - dm->hdr_len : n;
                        memcpy(dm->hdr + dm->hdr_len, p, take);
                        dm->hdr_len += take;
                        p += take;
                        n -= take;
                        if (dm->hdr_len < 8)
                                break;
                        dm->stream = dm->hdr[0];
                        dm->left = (size_t)dm->hdr[4] << 24 | (size_t)dm->hdr[5] << 16 |
                                   (size_t)dm->hdr[6] << 8 | dm->hdr[7];
                        dm->hdr_len = 0;
                        continue;
                }
                size_t take = dm->left < n ? dm->left : n;
                int r = out(ud, dm->stream, p, take);
                if (r < 0)
                        return r;
                dm->left -= take;
                p += take;
                n -= take;
        }
        return 0;
}

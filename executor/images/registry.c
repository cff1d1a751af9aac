/* registry.c: distribution v2 / OCI registry client over libcurl — manifests and blobs by
 * digest, anonymous / basic / bearer-token auth following the WWW-Authenticate challenge, TLS
 * with an extra CA, redirects to blob storage, retries with backoff on transient failures. */
#include "executor/images/images_int.h"

#include <curl/curl.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <pthread.h>

#define MANIFEST_MAX (4u << 20)
#define TOKEN_MAX    (1u << 20)
#define ACCEPT_MANIFESTS                                                                           \
        "Accept: application/vnd.oci.image.index.v1+json, "                                        \
        "application/vnd.docker.distribution.manifest.list.v2+json, "                              \
        "application/vnd.oci.image.manifest.v1+json, "                                             \
        "application/vnd.docker.distribution.manifest.v2+json"

struct reg {
        char *name; /* registry as named in the reference (for messages) */
        char *base; /* "https://host:port" */
        char *repo;
        const struct img_pull_opts *o;
        char *auth_header; /* "Authorization: Bearer ..." once a token was obtained */
        bool use_basic;
        CURL *curl;
        unsigned blob_gets;
        struct img_egress eg; /* where redirects and token realms may lead */
};

/* what one request collects */
struct xfer {
        struct strbuf body; /* in-memory sink (manifests, tokens) */
        size_t max;
        int fd; /* or a file sink, hashed on the way */
        EVP_MD_CTX *md;
        int write_errno;
        char *ctype, *challenge;
        const struct reg *r;
        const char *digest;
        uint64_t size_hint;
        uint64_t got, limit; /* file sink: bytes written, at most limit (0 = no bound) */
        uint64_t last_byte_ns;
        curl_off_t last_now;
        bool stalled;
        char refused[96]; /* an address the egress rule refused: "ADDR (class)" */
};

#define host_is_loopback img_host_is_loopback
#define STALL_DEFAULT_S  60

static void curl_init_once(void)
{
        curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* The operator's own pull, or one of the operator's mirrors: not a registry a job chose. */
static bool operator_registry(const char *registry, const struct img_pull_opts *o)
{
        if (o && o->operator_pull)
                return true;
        for (size_t i = 0; o && o->mirrors && o->mirrors[i]; i++)
                if (strcmp(o->mirrors[i], registry) == 0)
                        return true;
        return false;
}

int reg_open(const char *registry, const char *repository, const struct img_pull_opts *o,
             struct reg **out, struct drv_error *err)
{
        static pthread_once_t once = PTHREAD_ONCE_INIT;
        pthread_once(&once, curl_init_once);
        struct reg *r = calloc(1, sizeof(*r));
        if (!r)
                return drv_err(err, ENOMEM, "out of memory");
        r->o = o;
        r->name = strdup(registry);
        r->repo = strdup(repository);
        const char *host = registry;
        if (drv_startswith(registry, "https://") || drv_startswith(registry, "http://")) {
                r->base = strdup(registry);
                if (r->base && r->base[strlen(r->base) - 1] == '/')
                        r->base[strlen(r->base) - 1] = '\0';
                host = strstr(registry, "://") + 3;
                if (drv_startswith(registry, "http://") && !(o && o->insecure_http) &&
                    !host_is_loopback(host)) {
                        reg_close(r);
                        return drv_err(err, EPERM,
                                       "registry %s: plain http is only allowed for loopback "
                                       "registries with insecure_http",
                                       registry);
                }
        } else if (strcmp(registry, "docker.io") == 0) {
                r->base = strdup("https://registry-1.docker.io");
        } else {
                bool http = o && o->insecure_http && host_is_loopback(host);
                r->base = drv_asprintf("%s://%s", http ? "http" : "https", registry);
        }
        r->curl = curl_easy_init();
        if (!r->name || !r->repo || !r->base || !r->curl) {
                reg_close(r);
                return drv_err(err, ENOMEM, "out of memory");
        }
        int e = img_egress_init(&r->eg, r->base, operator_registry(registry, o), err);
        if (e < 0) {
                reg_close(r);
                return e;
        }
        *out = r;
        return 0;
}

int reg_clone(const struct reg *r, struct reg **out, struct drv_error *err)
{
        struct reg *c = calloc(1, sizeof(*c));
        if (!c)
                return drv_err(err, ENOMEM, "out of memory");
        c->o = r->o;
        c->use_basic = r->use_basic;
        c->eg = r->eg;
        c->name = strdup(r->name);
        c->base = strdup(r->base);
        c->repo = strdup(r->repo);
        c->auth_header = r->auth_header ? strdup(r->auth_header) : NULL;
        c->curl = curl_easy_init();
        if (!c->name || !c->base || !c->repo || (r->auth_header && !c->auth_header) || !c->curl) {
                reg_close(c);
                return drv_err(err, ENOMEM, "out of memory");
        }
        *out = c;
        return 0;
}

void reg_close(struct reg *r)
{
        if (!r)
                return;
        if (r->curl)
                curl_easy_cleanup(r->curl);
        free(r->name);
        free(r->base);
        free(r->repo);
        free(r->auth_header);
        free(r);
}

unsigned reg_blob_gets(const struct reg *r)
{
        return r->blob_gets;
}

const char *reg_name(const struct reg *r)
{
        return r->name;
}

bool reg_has_credentials(const struct reg *r)
{
        return r->o && r->o->username;
}

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
        struct xfer *x = ud;
        size_t len = size * n;
        if (x->fd >= 0) {
                if (x->limit && x->got + len > x->limit) {
                        x->write_errno = EFBIG; /* cut at once: never stored, never read on */
                        return 0;
                }
                x->got += len;
                if (x->md && EVP_DigestUpdate(x->md, p, len) != 1)
                        return 0;
                if (drv_write_all(x->fd, p, len) < 0) {
                        x->write_errno = errno;
                        return 0;
                }
                return len;
        }
        if (x->body.len + len > x->max) {
                x->write_errno = EFBIG;
                return 0;
        }
        return strbuf_append(&x->body, p, len) < 0 ? 0 : len;
}

static char *header_value(const char *line, size_t n, const char *name)
{
        size_t k = strlen(name);
        if (n <= k || strncasecmp(line, name, k) != 0 || line[k] != ':')
                return NULL;
        const char *v = line + k + 1;
        const char *end = line + n;
        while (v < end && (*v == ' ' || *v == '\t'))
                v++;
        while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' '))
                end--;
        return strndup(v, (size_t)(end - v));
}

static size_t on_header(char *p, size_t size, size_t n, void *ud)
{
        struct xfer *x = ud;
        size_t len = size * n;
        if (len >= 5 && strncmp(p, "HTTP/", 5) == 0) { /* a new response (redirect) */
                free(x->ctype);
                free(x->challenge);
                x->ctype = x->challenge = NULL;
        }
        char *v;
        if ((v = header_value(p, len, "Content-Type"))) {
                free(x->ctype);
                x->ctype = v;
        } else if ((v = header_value(p, len, "WWW-Authenticate"))) {
                free(x->challenge);
                x->challenge = v;
        }
        return len;
}

static int on_progress(void *ud, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                       curl_off_t ulnow)
{
        (void)ultotal;
        (void)ulnow;
        struct xfer *x = ud;
        if (img_canceled(x->r->o))
                return 1; /* CURLE_ABORTED_BY_CALLBACK */
        uint64_t now = drv_now_ns();
        unsigned stall =
            x->r->o && x->r->o->stall_timeout_s ? x->r->o->stall_timeout_s : STALL_DEFAULT_S;
        if (!x->last_byte_ns || dlnow != x->last_now) {
                x->last_byte_ns = now;
                x->last_now = dlnow;
        } else if (now - x->last_byte_ns > stall * 1000000000ULL) {
                x->stalled = true; /* nothing read for the stall timeout */
                return 1;
        }
        if (x->r->o && x->r->o->progress && x->digest)
                x->r->o->progress(x->r->o->ud, x->digest, (uint64_t)dlnow,
                                  dltotal > 0 ? (uint64_t)dltotal : x->size_hint);
        return 0;
}

static void xfer_reset(struct xfer *x)
{
        strbuf_release(&x->body);
        free(x->ctype);
        free(x->challenge);
        x->ctype = x->challenge = NULL;
        x->write_errno = 0;
        x->got = 0;
        x->last_byte_ns = 0;
        x->stalled = false;
        x->refused[0] = '\0';
}

/* Every connection (the registry's, a redirect's, a token realm's) is opened here: its address
 * must pass the egress rule (egress.c), checked after DNS on the very address used. */
static curl_socket_t on_opensocket(void *ud, curlsocktype purpose, struct curl_sockaddr *a)
{
        struct xfer *x = ud;
        (void)purpose;
        if (!img_egress_allowed(&x->r->eg, &a->addr, x->refused, sizeof(x->refused)))
                return CURL_SOCKET_BAD;
        int fd = socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
        return fd < 0 ? CURL_SOCKET_BAD : fd;
}

/* Set the common options on h (TLS, redirects, timeouts, the egress check into x). */
static void setup_common(CURL *h, const struct img_pull_opts *o, char *errbuf, struct xfer *x)
{
        curl_easy_setopt(h, CURLOPT_OPENSOCKETFUNCTION, on_opensocket);
        curl_easy_setopt(h, CURLOPT_OPENSOCKETDATA, x);
        curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
        curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 1L);
        curl_easy_setopt(h, CURLOPT_MAXREDIRS, 5L);
        curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
        curl_easy_setopt(h, CURLOPT_REDIR_PROTOCOLS_STR, "https,http");
        curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, 15L);
        curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
        curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, 60L);
        curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(h, CURLOPT_USERAGENT, "drover-images/1");
        if (o && o->ca_file)
                curl_easy_setopt(h, CURLOPT_CAINFO, o->ca_file);
}

static bool transient(CURLcode c, long status)
{
        if (c == CURLE_OK)
                return status == 429 || status == 502 || status == 503 || status == 504 ||
                       status == 500;
        return c == CURLE_COULDNT_CONNECT || c == CURLE_OPERATION_TIMEDOUT ||
               c == CURLE_ABORTED_BY_CALLBACK /* a stall (a cancel is handled before) */ ||
               c == CURLE_RECV_ERROR || c == CURLE_SEND_ERROR || c == CURLE_GOT_NOTHING ||
               c == CURLE_PARTIAL_FILE || c == CURLE_HTTP2 || c == CURLE_HTTP2_STREAM;
}

static bool tls_error(CURLcode c)
{
        return c == CURLE_PEER_FAILED_VERIFICATION || c == CURLE_SSL_CONNECT_ERROR ||
               c == CURLE_SSL_CACERT_BADFILE || c == CURLE_SSL_CERTPROBLEM;
}

/* Value of key in a challenge `Bearer realm="..",service="..",scope=".."` (allocated). */
static char *challenge_param(const char *ch, const char *key)
{
        size_t k = strlen(key);
        for (const char *p = ch; (p = strstr(p, key)); p += k) {
                if (p != ch && p[-1] != ' ' && p[-1] != ',')
                        continue;
                if (p[k] != '=')
                        continue;
                const char *v = p + k + 1;
                if (*v == '"') {
                        const char *e = strchr(v + 1, '"');
                        return e ? strndup(v + 1, (size_t)(e - v - 1)) : NULL;
                }
                return strndup(v, strcspn(v, ", "));
        }
        return NULL;
}

/* Ask the token server named by a Bearer challenge for a token. */
static int fetch_token(struct reg *r, const char *challenge, struct drv_error *err)
{
        _cleanup_free_ char *realm = challenge_param(challenge, "realm");
        _cleanup_free_ char *service = challenge_param(challenge, "service");
        _cleanup_free_ char *scope = challenge_param(challenge, "scope");
        if (!realm || !(drv_startswith(realm, "https://") || drv_startswith(realm, "http://")))
                return drv_err(err, EPROTO, "bearer challenge without a usable realm");
        if (drv_startswith(realm, "http://") && r->o && r->o->username &&
            !host_is_loopback(realm + 7))
                return drv_err(err, EPERM, "token realm %s is plain http: credentials not sent",
                               realm);
        CURL *h = curl_easy_init();
        if (!h)
                return drv_err(err, ENOMEM, "out of memory");
        char *esc_service = service ? curl_easy_escape(h, service, 0) : NULL;
        _cleanup_free_ char *def_scope = drv_asprintf("repository:%s:pull", r->repo);
        char *esc_scope = curl_easy_escape(h, scope ? scope : def_scope, 0);
        _cleanup_free_ char *url = drv_asprintf(
            "%s%sscope=%s%s%s", realm, strchr(realm, '?') ? "&" : "?", esc_scope ? esc_scope : "",
            esc_service ? "&service=" : "", esc_service ? esc_service : "");
        curl_free(esc_service);
        curl_free(esc_scope);
        char errbuf[CURL_ERROR_SIZE] = "";
        struct xfer x = {.fd = -1, .max = TOKEN_MAX, .r = r};
        setup_common(h, r->o, errbuf, &x);
        curl_easy_setopt(h, CURLOPT_URL, url);
        curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
        curl_easy_setopt(h, CURLOPT_WRITEDATA, &x);
        curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
        curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
        curl_easy_setopt(h, CURLOPT_XFERINFODATA, &x);
        if (r->o && r->o->username) {
                curl_easy_setopt(h, CURLOPT_HTTPAUTH, CURLAUTH_BASIC);
                curl_easy_setopt(h, CURLOPT_USERNAME, r->o->username);
                curl_easy_setopt(h, CURLOPT_PASSWORD, r->o->password ? r->o->password : "");
        }
        CURLcode c = curl_easy_perform(h);
        long status = 0;
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
        curl_easy_cleanup(h);
        int ret = 0;
        if (c != CURLE_OK && x.refused[0]) {
                ret = drv_err(err, EPERM,
                              "token realm %s leads to %s: refused (a realm may only lead to the "
                              "registry's own address, a public address or one allowed in "
                              "DROVER_IMAGE_EGRESS_ALLOW)",
                              realm, x.refused);
        } else if (c == CURLE_ABORTED_BY_CALLBACK && x.stalled) {
                ret = drv_err(err, ETIMEDOUT, "token server %s: no answer for the stall timeout",
                              realm);
        } else if (c == CURLE_ABORTED_BY_CALLBACK) {
                ret = drv_err(err, ECANCELED, "token server %s: canceled", realm);
        } else if (c != CURLE_OK) {
                ret = drv_err(err, tls_error(c) ? EPROTO : EIO, "token server %s: %s%s", realm,
                              tls_error(c) ? "TLS: " : "",
                              errbuf[0] ? errbuf : curl_easy_strerror(c));
        } else if ((status == 401 || status == 403) && !(r->o && r->o->username)) {
                ret = drv_err(err, EACCES,
                              "authentication required: token server %s refused anonymous "
                              "access (HTTP %ld; give a username and password)",
                              realm, status);
        } else if (status == 401 || status == 403) {
                ret = drv_err(err, EACCES,
                              "authentication failed at token server %s (HTTP %ld): wrong "
                              "username or password?",
                              realm, status);
        } else if (status != 200) {
                ret = drv_err(err, EIO, "token server %s answered HTTP %ld", realm, status);
        } else {
                json_t *j = json_loadb(x.body.buf, x.body.len, 0, NULL);
                const char *tok = json_string_value(json_object_get(j, "token"));
                if (!tok)
                        tok = json_string_value(json_object_get(j, "access_token"));
                if (!tok || !*tok || strpbrk(tok, "\r\n")) {
                        ret = drv_err(err, EPROTO, "token server %s answered no token", realm);
                } else {
                        free(r->auth_header);
                        r->auth_header = drv_asprintf("Authorization: Bearer %s", tok);
                        if (!r->auth_header)
                                ret = drv_err(err, ENOMEM, "out of memory");
                }
                if (j)
                        json_decref(j);
        }
        xfer_reset(&x);
        return ret;
}

/* Set r's handle up for one GET of url into x; returns the header list to free after it. */
static struct curl_slist *prepare_get(struct reg *r, const char *url, const char *accept,
                                      struct xfer *x, char *errbuf)
{
        CURL *h = r->curl;
        curl_easy_reset(h);
        setup_common(h, r->o, errbuf, x);
        if (x->limit) /* curl refuses a larger Content-Length before any byte */
                curl_easy_setopt(h, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)x->limit);
        curl_easy_setopt(h, CURLOPT_URL, url);
        curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
        curl_easy_setopt(h, CURLOPT_WRITEDATA, x);
        curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
        curl_easy_setopt(h, CURLOPT_HEADERDATA, x);
        /* progress and cancel: libcurl calls it about once a second even when stalled */
        curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
        curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
        curl_easy_setopt(h, CURLOPT_XFERINFODATA, x);
        struct curl_slist *hdrs = NULL;
        if (accept)
                hdrs = curl_slist_append(hdrs, accept);
        if (r->auth_header)
                hdrs = curl_slist_append(hdrs, r->auth_header);
        curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
        if (r->use_basic && r->o && r->o->username) {
                curl_easy_setopt(h, CURLOPT_HTTPAUTH, CURLAUTH_BASIC);
                curl_easy_setopt(h, CURLOPT_USERNAME, r->o->username);
                curl_easy_setopt(h, CURLOPT_PASSWORD, r->o->password ? r->o->password : "");
        }
        return hdrs;
}

/* One authenticated GET of base/v2/repo/<path> into x, with auth challenge handling and
 * retries. Fills *status. */
static int reg_get(struct reg *r, const char *what, const char *path, const char *accept,
                   struct xfer *x, long *status, struct drv_error *err)
{
        _cleanup_free_ char *url = drv_asprintf("%s/v2/%s/%s", r->base, r->repo, path);
        if (!url)
                return drv_err(err, ENOMEM, "out of memory");
        char errbuf[CURL_ERROR_SIZE];
        unsigned delay_ms = 200;
        bool tried_auth = false;
        for (int attempt = 1;; attempt++) {
                errbuf[0] = '\0';
                if (img_canceled(r->o))
                        return drv_err(err, ECANCELED, "registry %s, repository %s: %s: canceled",
                                       r->name, r->repo, what);
                CURL *h = r->curl;
                struct curl_slist *hdrs = prepare_get(r, url, accept, x, errbuf);
                if (x->fd >= 0) {
                        r->blob_gets++;
                        if (ftruncate(x->fd, 0) < 0 || lseek(x->fd, 0, SEEK_SET) < 0 ||
                            (x->md && EVP_DigestInit_ex(x->md, EVP_sha256(), NULL) != 1)) {
                                curl_slist_free_all(hdrs);
                                return drv_err_errno(err, "cannot reset the download file");
                        }
                }
                xfer_reset(x);
                CURLcode c = curl_easy_perform(h);
                curl_slist_free_all(hdrs);
                *status = 0;
                curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, status);
                log_debug("registry_get", "registry=%s repository=%s path=%s status=%ld curl=%d",
                          r->name, r->repo, path, *status, (int)c);
                if (c != CURLE_OK && x->refused[0]) /* (another address may have served) */
                        return drv_err(err, EPERM,
                                       "registry %s, repository %s: %s: a redirect leads to %s: "
                                       "refused (only the registry's own address, public "
                                       "addresses and DROVER_IMAGE_EGRESS_ALLOW)",
                                       r->name, r->repo, what, x->refused);
                if (c == CURLE_ABORTED_BY_CALLBACK && !x->stalled)
                        return drv_err(err, ECANCELED, "registry %s, repository %s: %s: canceled",
                                       r->name, r->repo, what);
                if (c == CURLE_FILESIZE_EXCEEDED ||
                    (c == CURLE_WRITE_ERROR && x->write_errno == EFBIG && x->fd >= 0))
                        return drv_err(err, EFBIG,
                                       "registry %s, repository %s: %s: the answer is larger "
                                       "than the %llu bytes declared: refused",
                                       r->name, r->repo, what, (unsigned long long)x->limit);
                if (c == CURLE_WRITE_ERROR && x->write_errno)
                        return drv_err(err, x->write_errno, "registry %s, repository %s: %s: %s",
                                       r->name, r->repo, what,
                                       x->write_errno == EFBIG ? "answer too large"
                                                               : strerror(x->write_errno));
                if (c == CURLE_OK && *status == 401 && !tried_auth) {
                        tried_auth = true;
                        const char *ch = x->challenge ? x->challenge : "";
                        if (strncasecmp(ch, "Bearer", 6) == 0) {
                                int t = fetch_token(r, ch, err);
                                if (t < 0)
                                        return drv_err_prefix(err, "registry %s, repository %s: %s",
                                                              r->name, r->repo, what);
                                continue;
                        }
                        if (!r->o || !r->o->username)
                                return drv_err(err, EACCES,
                                               "registry %s, repository %s: %s: authentication "
                                               "required (anonymous access refused; give a "
                                               "username and password)",
                                               r->name, r->repo, what);
                        r->use_basic = true;
                        continue;
                }
                if (c == CURLE_OK && (*status == 401 || *status == 403))
                        return drv_err(err, EACCES, "registry %s, repository %s: %s: %s (HTTP %ld)",
                                       r->name, r->repo, what,
                                       r->o && r->o->username
                                           ? "authentication failed: wrong username or password, "
                                             "or no pull access"
                                           : "authentication required (anonymous access refused)",
                                       *status);
                if (transient(c, *status) && attempt < 4) {
                        log_info("registry_retry",
                                 "registry=%s repository=%s what=%s attempt=%d status=%ld "
                                 "error=\"%s\"",
                                 r->name, r->repo, what, attempt, *status,
                                 c ? curl_easy_strerror(c) : "http");
                        for (unsigned w = 0; w < delay_ms && !img_canceled(r->o); w += 50)
                                usleep(50 * 1000);
                        delay_ms *= 3;
                        continue;
                }
                if (x->stalled)
                        return drv_err(err, ETIMEDOUT,
                                       "registry %s, repository %s: %s: nothing received for "
                                       "the stall timeout (%u s), %d attempts",
                                       r->name, r->repo, what,
                                       r->o && r->o->stall_timeout_s ? r->o->stall_timeout_s
                                                                     : STALL_DEFAULT_S,
                                       attempt);
                if (c != CURLE_OK)
                        return drv_err(err, tls_error(c) ? EPROTO : EIO,
                                       "registry %s, repository %s: %s: %s%s", r->name, r->repo,
                                       what, tls_error(c) ? "TLS: " : "",
                                       errbuf[0] ? errbuf : curl_easy_strerror(c));
                if (*status == 404)
                        return drv_err(err, ENOENT, "registry %s, repository %s: %s: not found",
                                       r->name, r->repo, what);
                if (*status != 200)
                        return drv_err(err, EIO, "registry %s, repository %s: %s: HTTP %ld",
                                       r->name, r->repo, what, *status);
                return 0;
        }
}

int reg_get_manifest(struct reg *r, const char *ref, char **body, size_t *len, char **ctype,
                     char **digest, struct drv_error *err)
{
        struct xfer x = {.fd = -1, .max = MANIFEST_MAX, .r = r};
        long status;
        _cleanup_free_ char *path = drv_asprintf("manifests/%s", ref);
        _cleanup_free_ char *what = drv_asprintf("manifest %s", ref);
        if (!path || !what)
                return drv_err(err, ENOMEM, "out of memory");
        int ret = reg_get(r, what, path, ACCEPT_MANIFESTS, &x, &status, err);
        if (ret < 0) {
                xfer_reset(&x);
                return ret;
        }
        unsigned char md[32];
        char hex[65];
        EVP_Digest(x.body.buf ? x.body.buf : "", x.body.len, md, NULL, EVP_sha256(), NULL);
        drv_hex(md, 32, hex);
        char *d = drv_asprintf("sha256:%s", hex);
        if (!d) {
                xfer_reset(&x);
                return drv_err(err, ENOMEM, "out of memory");
        }
        if (drv_startswith(ref, "sha256:") && strcmp(ref, d) != 0) {
                free(d);
                xfer_reset(&x);
                return drv_err(err, EBADMSG,
                               "registry %s, repository %s: manifest %s: digest mismatch (got "
                               "sha256:%s)",
                               r->name, r->repo, ref, hex);
        }
        *digest = d;
        *len = x.body.len;
        *ctype = TAKE_PTR(x.ctype);
        *body = strbuf_detach(&x.body);
        xfer_reset(&x);
        return *body ? 0 : drv_err(err, ENOMEM, "out of memory");
}

int reg_get_blob(struct reg *r, const char *digest, int fd, uint64_t size, struct drv_error *err)
{
        if (!img_digest_valid(digest))
                return drv_err(err, EINVAL, "blob digest %s is not sha256:<hex>", digest);
        struct xfer x = {.fd = fd, .r = r, .digest = digest, .size_hint = size, .limit = size};
        x.md = EVP_MD_CTX_new();
        if (!x.md)
                return drv_err(err, ENOMEM, "out of memory");
        long status;
        _cleanup_free_ char *path = drv_asprintf("blobs/%s", digest);
        _cleanup_free_ char *what = drv_asprintf("blob %s", digest);
        int ret = path && what ? reg_get(r, what, path, NULL, &x, &status, err)
                               : drv_err(err, ENOMEM, "out of memory");
        if (ret == 0) {
                unsigned char md[32];
                unsigned n = 0;
                char hex[65];
                EVP_DigestFinal_ex(x.md, md, &n);
                drv_hex(md, 32, hex);
                if (strcmp(hex, digest + 7) != 0)
                        ret = drv_err(err, EBADMSG,
                                      "registry %s, repository %s: blob %s: digest mismatch "
                                      "(content is sha256:%s): refused",
                                      r->name, r->repo, digest, hex);
        }
        EVP_MD_CTX_free(x.md);
        xfer_reset(&x);
        return ret;
}

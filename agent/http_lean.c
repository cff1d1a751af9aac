/* http_lean.c: the control-plane HTTP client of the lean `drover-agent`: HTTP/1.1 over mbedTLS
 * (mutual TLS with the agent's CA, certificate and key; server name or IP verified), non-blocking
 * on the agent's epoll loop, several requests in flight, keep-alive reuse, timeouts, HTTPS_PROXY
 * via CONNECT. Same interface as http.c (libcurl), far fewer resident pages (bench/agent.sh). */
#include "agent/agent.h"
#include "agent/http_parse.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/error.h>
#include <mbedtls/net_sockets.h>
#include <mbedtls/pk.h>
#include <mbedtls/ssl.h>
#include <mbedtls/x509_crt.h>

#define CONNECT_TIMEOUT_NS (5000ull * 1000000)
#define IDLE_KEEP_NS       (30000ull * 1000000)
#define MAX_IDLE_CONNS     8

enum conn_state { C_CONNECTING, C_PROXY_SEND, C_PROXY_RECV, C_HANDSHAKE, C_SEND, C_RECV, C_IDLE };

struct endpoint {
        bool tls;
        char host[256]; /* without brackets */
        char port[8];
};

struct conn {
        struct conn *next;
        struct watch *w; /* in epoll; handed to the graveyard when closed */
        int fd;
        enum conn_state state;
        struct endpoint ep;  /* where the request goes (the origin) */
        struct endpoint hop; /* where the socket connects (origin or proxy) */
        bool proxied;
        struct addrinfo *ai, *cur;
        bool ssl_on;
        mbedtls_ssl_context ssl;
        struct tls_mat *mat; /* what ssl was set up with */
        uint32_t events;     /* current epoll mask */
        struct http_req *req;
        uint64_t idle_since_ns;
        struct strbuf pbuf; /* CONNECT request/response */
        size_t poff;
        bool reused;
};

struct http_impl {
        struct http_req *next; /* in-flight list */
        struct conn *c;
        struct endpoint ep;
        char *target; /* path (and query) */
        struct strbuf out;
        size_t out_off;
        struct http_parser p;
        bool got_bytes;
        int retries;
        uint64_t deadline_ns;
        int fail_rc; /* != 0: fail at the next timer tick (errors found inside http_post) */
};

struct lean {
        struct agent *a;
        struct tls_mat *tls; /* the current TLS material */
        struct conn *conns;
        struct http_req *reqs;
};

static struct lean *L(struct agent *a)
{
        return a->http;
}

static void tls_err(char *buf, size_t n, const char *what, int e)
{
        char m[120];
        mbedtls_strerror(e, m, sizeof(m));
        snprintf(buf, n, "%s: %s (-0x%04x)", what, m, (unsigned)-e);
}

/* ---- TLS material: read at the first connection and again, for new connections, when the
 * config names other files or a file changed (certificate rotation); connections hold a
 * reference to the material they were set up with ---- */
struct tls_mat {
        unsigned refs;
        char *path[3]; /* ca, cert, key as configured */
        struct stat st[3];
        mbedtls_entropy_context ent;
        mbedtls_ctr_drbg_context drbg;
        mbedtls_ssl_config conf;
        mbedtls_x509_crt ca, cert;
        mbedtls_pk_context key;
};

static void mat_unref(struct tls_mat *m)
{
        if (!m || --m->refs > 0)
                return;
        mbedtls_ssl_config_free(&m->conf);
        mbedtls_x509_crt_free(&m->ca);
        mbedtls_x509_crt_free(&m->cert);
        mbedtls_pk_free(&m->key);
        mbedtls_ctr_drbg_free(&m->drbg);
        mbedtls_entropy_free(&m->ent);
        for (size_t i = 0; i < 3; i++)
                free(m->path[i]);
        free(m);
}

static void tls_paths(const struct agent_config *c, const char *p[3])
{
        p[0] = c->tls_ca && c->tls_ca[0] ? c->tls_ca : "/etc/ssl/certs/ca-certificates.crt";
        p[1] = c->tls_cert ? c->tls_cert : "";
        p[2] = c->tls_key && c->tls_key[0] ? c->tls_key : p[1];
}

static void tls_stat(const char *p, struct stat *st)
{
        memset(st, 0, sizeof(*st));
        if (*p)
                (void)stat(p, st);
}

static bool mat_current(const struct tls_mat *m, const char *p[3])
{
        for (size_t i = 0; i < 3; i++) {
                struct stat st;
                tls_stat(p[i], &st);
                if (strcmp(m->path[i], p[i]) != 0 || st.st_ino != m->st[i].st_ino ||
                    st.st_dev != m->st[i].st_dev || st.st_size != m->st[i].st_size ||
                    st.st_mtim.tv_sec != m->st[i].st_mtim.tv_sec ||
                    st.st_mtim.tv_nsec != m->st[i].st_mtim.tv_nsec)
                        return false;
        }
        return true;
}

/* The current material (a new reference), or NULL with errbuf filled. */
static struct tls_mat *tls_get(struct lean *l, char *errbuf, size_t n)
{
        const char *p[3];
        tls_paths(&l->a->cfg, p);
        if (l->tls && mat_current(l->tls, p)) {
                l->tls->refs++;
                return l->tls;
        }
        struct tls_mat *m = calloc(1, sizeof(*m));
        if (!m) {
                snprintf(errbuf, n, "out of memory");
                return NULL;
        }
        m->refs = 1;
        mbedtls_entropy_init(&m->ent);
        mbedtls_ctr_drbg_init(&m->drbg);
        mbedtls_ssl_config_init(&m->conf);
        mbedtls_x509_crt_init(&m->ca);
        mbedtls_x509_crt_init(&m->cert);
        mbedtls_pk_init(&m->key);
        for (size_t i = 0; i < 3; i++) {
                tls_stat(p[i], &m->st[i]); /* before reading: a change after it reloads again */
                m->path[i] = strdup(p[i]);
                if (!m->path[i]) {
                        snprintf(errbuf, n, "out of memory");
                        goto fail;
                }
        }
        int e;
        if ((e = mbedtls_ctr_drbg_seed(&m->drbg, mbedtls_entropy_func, &m->ent,
                                       (const unsigned char *)"drover-agent", 12)) != 0) {
                tls_err(errbuf, n, "random seed", e);
                goto fail;
        }
        if ((e = mbedtls_x509_crt_parse_file(&m->ca, p[0])) < 0) {
                tls_err(errbuf, n, p[0], e);
                goto fail;
        }
        if ((e = mbedtls_ssl_config_defaults(&m->conf, MBEDTLS_SSL_IS_CLIENT,
                                             MBEDTLS_SSL_TRANSPORT_STREAM,
                                             MBEDTLS_SSL_PRESET_DEFAULT)) != 0) {
                tls_err(errbuf, n, "tls config", e);
                goto fail;
        }
        mbedtls_ssl_conf_min_version(&m->conf, MBEDTLS_SSL_MAJOR_VERSION_3,
                                     MBEDTLS_SSL_MINOR_VERSION_3);
        mbedtls_ssl_conf_authmode(&m->conf, MBEDTLS_SSL_VERIFY_REQUIRED);
        mbedtls_ssl_conf_ca_chain(&m->conf, &m->ca, NULL);
        mbedtls_ssl_conf_rng(&m->conf, mbedtls_ctr_drbg_random, &m->drbg);
        if (p[1][0]) {
                if ((e = mbedtls_x509_crt_parse_file(&m->cert, p[1])) != 0) {
                        tls_err(errbuf, n, p[1], e);
                        goto fail;
                }
                if ((e = mbedtls_pk_parse_keyfile(&m->key, p[2], NULL)) != 0) {
                        tls_err(errbuf, n, p[2], e);
                        goto fail;
                }
                if ((e = mbedtls_ssl_conf_own_cert(&m->conf, &m->cert, &m->key)) != 0) {
                        tls_err(errbuf, n, "client certificate", e);
                        goto fail;
                }
        }
        if (l->tls)
                log_info("tls_material_loaded", "ca=%s cert=%s", p[0], p[1]);
        mat_unref(l->tls);
        l->tls = m;
        m->refs++;
        return m;
fail:
        mat_unref(m);
        return NULL;
}

/* ---- URLs and proxies ---- */
static int parse_url(const char *url, struct endpoint *ep, const char **path)
{
        memset(ep, 0, sizeof(*ep));
        const char *s;
        if (strncasecmp(url, "https://", 8) == 0) {
                ep->tls = true;
                s = url + 8;
        } else if (strncasecmp(url, "http://", 7) == 0) {
                s = url + 7;
        } else {
                return -EINVAL;
        }
        const char *end = s + strcspn(s, "/?#");
        const char *at = memchr(s, '@', (size_t)(end - s));
        if (at)
                s = at + 1; /* user info: not used */
        const char *hp_end, *port = NULL;
        if (*s == '[') {
                const char *rb = memchr(s, ']', (size_t)(end - s));
                if (!rb || rb - s - 1 >= (long)sizeof(ep->host))
                        return -EINVAL;
                memcpy(ep->host, s + 1, (size_t)(rb - s - 1));
                hp_end = rb + 1;
                if (hp_end < end && *hp_end == ':')
                        port = hp_end + 1;
        } else {
                const char *colon = memchr(s, ':', (size_t)(end - s));
                hp_end = colon ? colon : end;
                if (hp_end - s >= (long)sizeof(ep->host) || hp_end == s)
                        return -EINVAL;
                memcpy(ep->host, s, (size_t)(hp_end - s));
                if (colon)
                        port = colon + 1;
        }
        if (port && end - port > 0) {
                if (end - port >= (long)sizeof(ep->port))
                        return -EINVAL;
                memcpy(ep->port, port, (size_t)(end - port));
        } else {
                snprintf(ep->port, sizeof(ep->port), "%s", ep->tls ? "443" : "80");
        }
        if (path)
                *path = *end ? end : "/";
        return 0;
}

static const char *env2(const char *a, const char *b)
{
        const char *v = getenv(a);
        return v && *v ? v : getenv(b);
}

/* NO_PROXY: "*", or comma-separated host names / domain suffixes / IPs. */
static bool no_proxy(const char *host)
{
        const char *np = env2("NO_PROXY", "no_proxy");
        if (!np)
                return false;
        size_t hl = strlen(host);
        for (const char *s = np; *s;) {
                while (*s == ' ' || *s == ',')
                        s++;
                size_t n = strcspn(s, ", ");
                if (n == 1 && *s == '*')
                        return true;
                const char *t = s;
                size_t tn = n;
                if (tn && *t == '.') {
                        t++;
                        tn--;
                }
                if (tn && hl >= tn && strncasecmp(host + hl - tn, t, tn) == 0 &&
                    (hl == tn || host[hl - tn - 1] == '.'))
                        return true;
                s += n;
        }
        return false;
}

/* The proxy for an origin (HTTPS_PROXY for https, HTTP_PROXY for http), or false. */
static bool proxy_for(const struct endpoint *ep, struct endpoint *proxy)
{
        const char *p =
            ep->tls ? env2("HTTPS_PROXY", "https_proxy") : env2("HTTP_PROXY", "http_proxy");
        if (!p || !*p || no_proxy(ep->host))
                return false;
        _cleanup_free_ char *u = strstr(p, "://") ? strdup(p) : drv_asprintf("http://%s", p);
        if (!u || parse_url(u, proxy, NULL) < 0 || proxy->tls) {
                log_warn("proxy_unusable", "proxy=%s error=\"only http:// proxies\"", p);
                return false;
        }
        if (!strchr(p + (strstr(p, "://") ? strstr(p, "://") - p + 3 : 0), ':') && !strstr(p, "]:"))
                snprintf(proxy->port, sizeof(proxy->port), "1080");
        return true;
}

/* ---- connections ---- */
static void set_events(struct lean *l, struct conn *c, uint32_t ev)
{
        if (c->events == ev)
                return;
        struct epoll_event e = {.events = ev, .data.ptr = c->w};
        epoll_ctl(l->a->epfd, EPOLL_CTL_MOD, c->fd, &e);
        c->events = ev;
}

static void conn_close(struct lean *l, struct conn *c)
{
        for (struct conn **pp = &l->conns; *pp; pp = &(*pp)->next)
                if (*pp == c) {
                        *pp = c->next;
                        break;
                }
        if (c->req)
                c->req->impl->c = NULL;
        if (c->ssl_on)
                mbedtls_ssl_free(&c->ssl);
        mat_unref(c->mat);
        if (c->fd >= 0) {
                epoll_ctl(l->a->epfd, EPOLL_CTL_DEL, c->fd, NULL);
                close(c->fd);
        }
        if (c->w) { /* the current epoll batch may still name it: freed after the batch */
                c->w->type = W_DEAD;
                c->w->obj = l->a->graveyard;
                l->a->graveyard = c->w;
        }
        if (c->ai)
                freeaddrinfo(c->ai);
        strbuf_release(&c->pbuf);
        free(c);
}

/* Start a non-blocking connect to c->cur (or the next address that accepts one). */
static int conn_connect(struct lean *l, struct conn *c, char *err, size_t n)
{
        for (; c->cur; c->cur = c->cur->ai_next) {
                if (c->fd >= 0) {
                        epoll_ctl(l->a->epfd, EPOLL_CTL_DEL, c->fd, NULL);
                        close(c->fd);
                }
                c->fd = socket(c->cur->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
                if (c->fd < 0)
                        continue;
                int one = 1;
                setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
                int r = connect(c->fd, c->cur->ai_addr, c->cur->ai_addrlen);
                if (r < 0 && errno != EINPROGRESS) {
                        snprintf(err, n, "connect to %s port %s: %s", c->hop.host, c->hop.port,
                                 strerror(errno));
                        continue;
                }
                c->w->fd = c->fd;
                c->events = EPOLLOUT;
                struct epoll_event e = {.events = EPOLLOUT, .data.ptr = c->w};
                if (epoll_ctl(l->a->epfd, EPOLL_CTL_ADD, c->fd, &e) < 0) {
                        snprintf(err, n, "epoll: %s", strerror(errno));
                        continue;
                }
                c->state = C_CONNECTING;
                return 0;
        }
        if (c->fd >= 0) {
                close(c->fd);
                c->fd = -1;
        }
        return -ECONNREFUSED;
}

static struct conn *conn_new(struct lean *l, const struct endpoint *ep, char *err, size_t n)
{
        struct conn *c = calloc(1, sizeof(*c));
        struct watch *w = calloc(1, sizeof(*w));
        if (!c || !w) {
                free(c);
                free(w);
                snprintf(err, n, "out of memory");
                return NULL;
        }
        c->fd = -1;
        c->w = w;
        w->type = W_HTTP_SOCK;
        w->fd = -1;
        w->obj = c;
        c->ep = *ep;
        c->proxied = proxy_for(ep, &c->hop);
        if (!c->proxied)
                c->hop = *ep;
        c->next = l->conns;
        l->conns = c;
        struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICHOST};
        int r = getaddrinfo(c->hop.host, c->hop.port, &hints, &c->ai);
        if (r == EAI_NONAME) {
                hints.ai_flags = 0; /* a name: every address, loopback ones too */
                r = getaddrinfo(c->hop.host, c->hop.port, &hints, &c->ai);
        }
        if (r != 0) {
                snprintf(err, n, "could not resolve %s: %s", c->hop.host, gai_strerror(r));
                c->ai = NULL;
                conn_close(l, c);
                return NULL;
        }
        c->cur = c->ai;
        if (conn_connect(l, c, err, n) < 0) {
                conn_close(l, c);
                return NULL;
        }
        return c;
}

/* ---- I/O of a connection: TLS or plain ---- */
static int bio_send(void *ctx, const unsigned char *buf, size_t len)
{
        struct conn *c = ctx;
        ssize_t r = send(c->fd, buf, len, MSG_NOSIGNAL);
        if (r < 0)
                return errno == EAGAIN || errno == EINTR ? MBEDTLS_ERR_SSL_WANT_WRITE
                                                         : MBEDTLS_ERR_NET_SEND_FAILED;
        return (int)r;
}

static int bio_recv(void *ctx, unsigned char *buf, size_t len)
{
        struct conn *c = ctx;
        ssize_t r = recv(c->fd, buf, len, 0);
        if (r < 0)
                return errno == EAGAIN || errno == EINTR ? MBEDTLS_ERR_SSL_WANT_READ
                                                         : MBEDTLS_ERR_NET_RECV_FAILED;
        return (int)r;
}

/* > 0 bytes, 0 EOF, -EAGAIN (events updated), other < 0 error (err filled). */
static ssize_t io_read(struct lean *l, struct conn *c, char *buf, size_t n, char *err, size_t en)
{
        if (!c->ssl_on || c->state == C_PROXY_RECV) {
                ssize_t r = recv(c->fd, buf, n, 0);
                if (r < 0 && (errno == EAGAIN || errno == EINTR)) {
                        set_events(l, c, EPOLLIN);
                        return -EAGAIN;
                }
                if (r < 0) {
                        snprintf(err, en, "recv: %s", strerror(errno));
                        return -errno;
                }
                return r;
        }
        int r = mbedtls_ssl_read(&c->ssl, (unsigned char *)buf, n);
        if (r == MBEDTLS_ERR_SSL_WANT_READ || r == MBEDTLS_ERR_SSL_WANT_WRITE) {
                set_events(l, c, r == MBEDTLS_ERR_SSL_WANT_READ ? EPOLLIN : EPOLLOUT);
                return -EAGAIN;
        }
        if (r == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY || r == 0)
                return 0;
        if (r < 0) {
                tls_err(err, en, "tls read", r);
                return -EIO;
        }
        return r;
}

static ssize_t io_write(struct lean *l, struct conn *c, const char *buf, size_t n, char *err,
                        size_t en)
{
        if (!c->ssl_on || c->state == C_PROXY_SEND) {
                ssize_t r = send(c->fd, buf, n, MSG_NOSIGNAL);
                if (r < 0 && (errno == EAGAIN || errno == EINTR)) {
                        set_events(l, c, EPOLLOUT);
                        return -EAGAIN;
                }
                if (r < 0) {
                        snprintf(err, en, "send: %s", strerror(errno));
                        return -errno;
                }
                return r;
        }
        int r = mbedtls_ssl_write(&c->ssl, (const unsigned char *)buf, n);
        if (r == MBEDTLS_ERR_SSL_WANT_READ || r == MBEDTLS_ERR_SSL_WANT_WRITE) {
                set_events(l, c, r == MBEDTLS_ERR_SSL_WANT_READ ? EPOLLIN : EPOLLOUT);
                return -EAGAIN;
        }
        if (r < 0) {
                tls_err(err, en, "tls write", r);
                return -EIO;
        }
        return r;
}

/* mbedTLS 2.28 matches names (CN, dNSName) only: a server given by IP address is checked
 * against the iPAddress entries of its certificate here. */
static bool cert_has_ip(const mbedtls_x509_crt *crt, const char *host)
{
        unsigned char want[16];
        size_t wl;
        if (inet_pton(AF_INET, host, want) == 1)
                wl = 4;
        else if (inet_pton(AF_INET6, host, want) == 1)
                wl = 16;
        else
                return false;
        for (const mbedtls_x509_sequence *s = &crt->subject_alt_names; s && s->buf.p; s = s->next)
                if ((s->buf.tag & 0x1f) == 7 && s->buf.len == wl && !memcmp(s->buf.p, want, wl))
                        return true;
        return false;
}

static bool is_ip(const char *host)
{
        unsigned char b[16];
        return inet_pton(AF_INET, host, b) == 1 || inet_pton(AF_INET6, host, b) == 1;
}

static int tls_start(struct lean *l, struct conn *c, char *err, size_t n)
{
        c->mat = tls_get(l, err, n);
        if (!c->mat)
                return -EINVAL;
        mbedtls_ssl_init(&c->ssl);
        c->ssl_on = true;
        int e = mbedtls_ssl_setup(&c->ssl, &c->mat->conf);
        if (e == 0)
                e = mbedtls_ssl_set_hostname(&c->ssl, is_ip(c->ep.host) ? NULL : c->ep.host);
        if (e != 0) {
                tls_err(err, n, "tls setup", e);
                return -EINVAL;
        }
        mbedtls_ssl_set_bio(&c->ssl, c, bio_send, bio_recv, NULL);
        c->state = C_HANDSHAKE;
        return 0;
}

/* ---- requests ---- */
static void arm_timer(struct lean *l)
{
        uint64_t next = 0;
        for (struct http_req *r = l->reqs; r; r = r->impl->next)
                if (!next || r->impl->deadline_ns < next)
                        next = r->impl->deadline_ns;
        for (struct conn *c = l->conns; c; c = c->next) {
                uint64_t t = 0;
                if (c->state == C_IDLE)
                        t = c->idle_since_ns + IDLE_KEEP_NS;
                else if (c->state == C_CONNECTING && c->req)
                        t = c->req->started_ns + CONNECT_TIMEOUT_NS;
                if (t && (!next || t < next))
                        next = t;
        }
        struct itimerspec its = {0};
        if (next) {
                uint64_t now = drv_now_ns(), d = next > now ? next - now : 1;
                its.it_value.tv_sec = (time_t)(d / 1000000000ull);
                its.it_value.tv_nsec = (long)(d % 1000000000ull);
        }
        timerfd_settime(l->a->http_timer.fd, 0, &its, NULL);
}

static void req_free(struct http_req *r)
{
        if (!r)
                return;
        if (r->impl) {
                free(r->impl->target);
                strbuf_release(&r->impl->out);
                http_parser_release(&r->impl->p);
                free(r->impl);
        }
        free(r->body);
        strbuf_release(&r->resp);
        free(r);
}

static void req_unlink(struct lean *l, struct http_req *r)
{
        for (struct http_req **pp = &l->reqs; *pp; pp = &(*pp)->impl->next)
                if (*pp == r) {
                        *pp = r->impl->next;
                        return;
                }
}

static void complete(struct lean *l, struct http_req *r, int rc, long status)
{
        req_unlink(l, r);
        struct conn *c = r->impl->c;
        if (c) {
                c->req = NULL;
                r->impl->c = NULL;
                size_t idle = 0;
                for (struct conn *k = l->conns; k; k = k->next)
                        idle += k->state == C_IDLE;
                if (rc == HTTP_OK && r->impl->p.keep_alive && idle < MAX_IDLE_CONNS) {
                        c->state = C_IDLE;
                        c->idle_since_ns = drv_now_ns();
                        set_events(l, c, EPOLLIN);
                } else {
                        conn_close(l, c);
                }
        }
        if (rc != HTTP_OK)
                log_debug("http_failed", "host=%s error=\"%s\"", r->impl->ep.host, r->error);
        if (r->done)
                r->done(l->a, r, rc, status);
        req_free(r);
        arm_timer(l);
}

/* Put r on a connection: an idle one to the same origin, else a new one. */
static int req_attach(struct lean *l, struct http_req *r)
{
        struct http_impl *im = r->impl;
        struct conn *c = NULL;
        for (struct conn *k = l->conns; k; k = k->next)
                if (k->state == C_IDLE && k->ep.tls == im->ep.tls &&
                    !strcmp(k->ep.host, im->ep.host) && !strcmp(k->ep.port, im->ep.port)) {
                        c = k;
                        break;
                }
        if (c) {
                c->reused = true;
                c->state = C_SEND;
                set_events(l, c, EPOLLOUT);
        } else {
                c = conn_new(l, &im->ep, r->error, sizeof(r->error));
                if (!c)
                        return -ECONNREFUSED;
                c->reused = false;
        }
        c->req = r;
        im->c = c;
        im->out_off = 0;
        im->got_bytes = false;
        strbuf_reset(&r->resp);
        http_parser_release(&im->p);
        http_parser_init(&im->p, &r->resp, HTTP_MAX_RESPONSE);
        return 0;
}

/* A reused keep-alive connection the server had closed: once more on a fresh one. */
static bool retry(struct lean *l, struct http_req *r)
{
        struct conn *c = r->impl->c;
        if (!c || !c->reused || r->impl->got_bytes || r->impl->retries > 0)
                return false;
        r->impl->retries++;
        conn_close(l, c);
        if (req_attach(l, r) < 0)
                return false;
        return true;
}

static void fail(struct lean *l, struct http_req *r, int rc)
{
        if (retry(l, r))
                return;
        complete(l, r, rc, 0);
}

static int build_request(struct agent *a, struct http_req *r, const char *path)
{
        struct strbuf *o = &r->impl->out;
        const struct endpoint *ep = &r->impl->ep;
        bool v6 = strchr(ep->host, ':') != NULL;
        bool dflt = !strcmp(ep->port, ep->tls ? "443" : "80");
        size_t blen = r->body ? strlen(r->body) : 2;
        int e = strbuf_printf(o,
                              "POST %s HTTP/1.1\r\nHost: %s%s%s%s%s\r\nUser-Agent: drover-agent\r\n"
                              "Accept: */*\r\nContent-Type: application/json\r\n"
                              "Drover-Protocol: %d\r\n",
                              path, v6 ? "[" : "", ep->host, v6 ? "]" : "", dflt ? "" : ":",
                              dflt ? "" : ep->port, AGENT_PROTOCOL_VERSION);
        if (e >= 0 && !strcmp(path, "/v1/register") && a->token)
                e = strbuf_printf(o, "Authorization: Bearer %s\r\n", a->token);
        if (e >= 0 && a->node_id)
                e = strbuf_printf(o, "Drover-Node: %s\r\n", a->node_id);
        if (e >= 0)
                e = strbuf_printf(o, "Content-Length: %zu\r\n\r\n%s", blen,
                                  r->body ? r->body : "{}");
        return e < 0 ? -ENOMEM : 0;
}

int http_init(struct agent *a, struct drv_error *err)
{
        struct lean *l = calloc(1, sizeof(*l));
        if (!l)
                return drv_err(err, ENOMEM, "out of memory");
        l->a = a;
        a->http = l;
        a->http_timer.type = W_HTTP_TIMER;
        a->http_timer.fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
        if (a->http_timer.fd < 0)
                return drv_err_errno(err, "timerfd_create");
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &a->http_timer};
        if (epoll_ctl(a->epfd, EPOLL_CTL_ADD, a->http_timer.fd, &ev) < 0)
                return drv_err_errno(err, "epoll_ctl");
        return 0;
}

void http_cleanup(struct agent *a)
{
        struct lean *l = L(a);
        if (l) {
                while (l->reqs) {
                        struct http_req *r = l->reqs;
                        req_unlink(l, r);
                        req_free(r);
                }
                while (l->conns)
                        conn_close(l, l->conns);
                mat_unref(l->tls);
                free(l);
                a->http = NULL;
        }
        if (a->http_timer.fd >= 0)
                close(a->http_timer.fd);
        a->http_timer.fd = -1;
}

struct http_req *http_post(struct agent *a, const char *path, char *body_take, long timeout_ms,
                           http_done_fn done, void *data)
{
        struct lean *l = L(a);
        struct http_req *r = calloc(1, sizeof(*r));
        if (!r || !(r->impl = calloc(1, sizeof(*r->impl)))) {
                free(r);
                free(body_take);
                return NULL;
        }
        r->body = body_take;
        r->done = done;
        r->data = data;
        r->server = a->server;
        r->started_ns = drv_now_ns();
        struct http_impl *im = r->impl;
        http_parser_init(&im->p, &r->resp, HTTP_MAX_RESPONSE);
        im->deadline_ns = r->started_ns + (uint64_t)timeout_ms * 1000000ull;
        _cleanup_free_ char *url = drv_asprintf("%s%s", a->cfg.servers[a->server], path);
        const char *target = NULL;
        if (!url) {
                req_free(r);
                return NULL;
        }
        if (parse_url(url, &im->ep, &target) < 0) {
                snprintf(r->error, sizeof(r->error), "unsupported URL %s", url);
                im->fail_rc = HTTP_E_OTHER;
        } else if (!(im->target = strdup(target)) || build_request(a, r, im->target) < 0) {
                req_free(r);
                return NULL;
        } else if (req_attach(l, r) < 0) {
                im->fail_rc = HTTP_E_CONNECT;
        }
        if (im->fail_rc) /* reported from the loop, never from inside http_post */
                im->deadline_ns = drv_now_ns();
        im->next = l->reqs;
        l->reqs = r;
        arm_timer(l);
        return r;
}

void http_abort(struct agent *a, struct http_req *r)
{
        if (!r)
                return;
        struct lean *l = L(a);
        req_unlink(l, r);
        if (r->impl->c)
                conn_close(l, r->impl->c);
        req_free(r);
        arm_timer(l);
}

json_t *http_json(struct http_req *r)
{
        if (!r->resp.len)
                return NULL;
        return json_loadb(r->resp.buf, r->resp.len, 0, NULL);
}

/* ---- the state machine of a connection with a request ---- */
static void step_conn(struct lean *l, struct conn *c, uint32_t events)
{
        struct http_req *r = c->req;
        struct http_impl *im = r->impl;
        char *err = r->error;
        size_t en = sizeof(r->error);
        for (;;) {
                switch (c->state) {
                case C_CONNECTING: {
                        int so = 0;
                        socklen_t sl = sizeof(so);
                        if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
                                return;
                        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &so, &sl) < 0)
                                so = errno;
                        if (so == EINPROGRESS)
                                return;
                        if (so) {
                                snprintf(err, en, "connect to %s port %s: %s", c->hop.host,
                                         c->hop.port, strerror(so));
                                c->cur = c->cur ? c->cur->ai_next : NULL;
                                if (c->cur && conn_connect(l, c, err, en) == 0)
                                        return;
                                complete(l, r, HTTP_E_CONNECT, 0);
                                return;
                        }
                        if (c->proxied) {
                                strbuf_reset(&c->pbuf);
                                bool v6 = strchr(c->ep.host, ':') != NULL;
                                strbuf_printf(&c->pbuf,
                                              "CONNECT %s%s%s:%s HTTP/1.1\r\nHost: %s%s%s:%s\r\n"
                                              "User-Agent: drover-agent\r\n\r\n",
                                              v6 ? "[" : "", c->ep.host, v6 ? "]" : "", c->ep.port,
                                              v6 ? "[" : "", c->ep.host, v6 ? "]" : "", c->ep.port);
                                c->poff = 0;
                                c->state = C_PROXY_SEND;
                        } else if (c->ep.tls) {
                                if (tls_start(l, c, err, en) < 0) {
                                        complete(l, r, HTTP_E_TLS, 0);
                                        return;
                                }
                        } else {
                                c->state = C_SEND;
                        }
                        break;
                }
                case C_PROXY_SEND: {
                        ssize_t n =
                            io_write(l, c, c->pbuf.buf + c->poff, c->pbuf.len - c->poff, err, en);
                        if (n == -EAGAIN)
                                return;
                        if (n < 0) {
                                complete(l, r, HTTP_E_CONNECT, 0);
                                return;
                        }
                        c->poff += (size_t)n;
                        if (c->poff == c->pbuf.len) {
                                strbuf_reset(&c->pbuf);
                                c->state = C_PROXY_RECV;
                        }
                        break;
                }
                case C_PROXY_RECV: {
                        /* byte by byte: nothing of the tunnel may be read past the headers */
                        char ch;
                        ssize_t n = io_read(l, c, &ch, 1, err, en);
                        if (n == -EAGAIN)
                                return;
                        if (n <= 0 || c->pbuf.len > 16384) {
                                if (n >= 0)
                                        snprintf(err, en, "proxy %s closed the connection",
                                                 c->hop.host);
                                complete(l, r, HTTP_E_CONNECT, 0);
                                return;
                        }
                        strbuf_putc(&c->pbuf, ch);
                        if (c->pbuf.len < 4 || memcmp(c->pbuf.buf + c->pbuf.len - 4, "\r\n\r\n", 4))
                                break;
                        if (strncmp(c->pbuf.buf, "HTTP/1.", 7) != 0 || c->pbuf.len < 12 ||
                            c->pbuf.buf[9] != '2') {
                                snprintf(err, en, "proxy CONNECT refused: %.40s", c->pbuf.buf);
                                complete(l, r, HTTP_E_CONNECT, 0);
                                return;
                        }
                        strbuf_release(&c->pbuf);
                        if (c->ep.tls) {
                                if (tls_start(l, c, err, en) < 0) {
                                        complete(l, r, HTTP_E_TLS, 0);
                                        return;
                                }
                        } else {
                                c->state = C_SEND;
                        }
                        break;
                }
                case C_HANDSHAKE: {
                        int e = mbedtls_ssl_handshake(&c->ssl);
                        if (e == MBEDTLS_ERR_SSL_WANT_READ || e == MBEDTLS_ERR_SSL_WANT_WRITE) {
                                set_events(l, c,
                                           e == MBEDTLS_ERR_SSL_WANT_READ ? EPOLLIN : EPOLLOUT);
                                return;
                        }
                        if (e != 0) {
                                uint32_t flags = mbedtls_ssl_get_verify_result(&c->ssl);
                                if (e == MBEDTLS_ERR_X509_CERT_VERIFY_FAILED && flags) {
                                        char vb[160];
                                        mbedtls_x509_crt_verify_info(vb, sizeof(vb), "", flags);
                                        vb[strcspn(vb, "\n")] = 0;
                                        snprintf(err, en, "server certificate: %s", vb);
                                } else {
                                        tls_err(err, en, "tls handshake", e);
                                }
                                complete(l, r, HTTP_E_TLS, 0);
                                return;
                        }
                        if (is_ip(c->ep.host)) {
                                const mbedtls_x509_crt *peer = mbedtls_ssl_get_peer_cert(&c->ssl);
                                if (!peer || !cert_has_ip(peer, c->ep.host)) {
                                        snprintf(err, en, "server certificate does not name %s",
                                                 c->ep.host);
                                        complete(l, r, HTTP_E_TLS, 0);
                                        return;
                                }
                        }
                        c->state = C_SEND;
                        break;
                }
                case C_SEND: {
                        ssize_t n = io_write(l, c, im->out.buf + im->out_off,
                                             im->out.len - im->out_off, err, en);
                        if (n == -EAGAIN)
                                return;
                        if (n < 0) {
                                fail(l, r, HTTP_E_CONNECT);
                                return;
                        }
                        im->out_off += (size_t)n;
                        if (im->out_off == im->out.len) {
                                c->state = C_RECV;
                                set_events(l, c, EPOLLIN);
                        }
                        break;
                }
                case C_RECV: {
                        char buf[16384];
                        ssize_t n = io_read(l, c, buf, sizeof(buf), err, en);
                        if (n == -EAGAIN)
                                return;
                        if (n < 0) {
                                fail(l, r, HTTP_E_CONNECT);
                                return;
                        }
                        if (n == 0) {
                                if (!im->got_bytes) {
                                        snprintf(err, en, "empty reply from server");
                                        fail(l, r, HTTP_E_CONNECT);
                                } else if (http_parser_eof(&im->p) < 0) {
                                        snprintf(err, en, "%s", im->p.error);
                                        complete(l, r, HTTP_E_PROTOCOL, 0);
                                } else {
                                        im->p.keep_alive = false;
                                        complete(l, r, HTTP_OK, im->p.status);
                                }
                                return;
                        }
                        im->got_bytes = true;
                        ssize_t used = http_parser_feed(&im->p, buf, (size_t)n);
                        if (used < 0) {
                                snprintf(err, en, "%s", im->p.error);
                                complete(l, r, HTTP_E_PROTOCOL, 0);
                                return;
                        }
                        if (im->p.state == HP_DONE) {
                                if (used < n || (c->ssl_on && mbedtls_ssl_get_bytes_avail(&c->ssl)))
                                        im->p.keep_alive = false; /* unasked-for bytes */
                                complete(l, r, HTTP_OK, im->p.status);
                                return;
                        }
                        break;
                }
                case C_IDLE:
                        return;
                }
        }
}

void http_drive(struct agent *a, int fd, uint32_t events)
{
        struct lean *l = L(a);
        if (fd == HTTP_TIMER_FD) {
                uint64_t x;
                (void)!read(a->http_timer.fd, &x, sizeof(x));
                bool again = true;
                while (again) { /* a callback may add or abort requests: rescan after each */
                        again = false;
                        uint64_t now = drv_now_ns();
                        for (struct http_req *r = l->reqs; r; r = r->impl->next) {
                                if (r->impl->deadline_ns > now)
                                        continue;
                                if (r->impl->fail_rc) {
                                        complete(l, r, r->impl->fail_rc, 0);
                                } else {
                                        snprintf(
                                            r->error, sizeof(r->error), "timeout after %llu ms",
                                            (unsigned long long)((now - r->started_ns) / 1000000));
                                        complete(l, r, HTTP_E_TIMEOUT, 0);
                                }
                                again = true;
                                break;
                        }
                }
                uint64_t now = drv_now_ns();
                for (struct conn *c = l->conns, *nx; c; c = nx) {
                        nx = c->next;
                        if (c->state == C_CONNECTING && c->req &&
                            now - c->req->started_ns > CONNECT_TIMEOUT_NS) {
                                snprintf(c->req->error, sizeof(c->req->error),
                                         "connect to %s port %s: timeout", c->hop.host,
                                         c->hop.port);
                                complete(l, c->req, HTTP_E_CONNECT, 0);
                                break; /* the list may have changed */
                        }
                        if (c->state == C_IDLE && now - c->idle_since_ns >= IDLE_KEEP_NS)
                                conn_close(l, c);
                }
                arm_timer(l);
                return;
        }
        struct conn *c = NULL;
        for (struct conn *k = l->conns; k; k = k->next)
                if (k->fd == fd)
                        c = k;
        if (!c)
                return;
        if (c->state == C_IDLE) { /* the server closed it, or sent what nobody asked for */
                conn_close(l, c);
                arm_timer(l);
                return;
        }
        if (c->req)
                step_conn(l, c, events);
}

/* http_lean.c: the control-plane HTTP client of the lean `drover-agent`: HTTP/1.1 over mbedTLS
 * (mutual TLS with the agent's CA, certificate and key; server name or IP verified), non-blocking
 * on the agent's epoll loop, several requests in flight, keep-alive reuse, timeouts, proxies
 * (http:// and https://, with credentials) via CONNECT. Same interface as http.c (libcurl), far
 * fewer resident pages (bench/agent.sh). This file: requests and the state machine of a
 * connection; http_lean_net.c resolves, connects and tunnels; http_lean_tls.c does TLS. */
#include "agent/http_lean.h"

#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>

static struct lean *L(struct agent *a)
{
        return a->http;
}

/* ---- connections ---- */
void lean_set_events(struct lean *l, struct conn *c, uint32_t ev)
{
        if (c->events == ev || c->fd < 0)
                return;
        struct epoll_event e = {.events = ev, .data.ptr = c->w};
        epoll_ctl(l->a->epfd, EPOLL_CTL_MOD, c->fd, &e);
        c->events = ev;
}

void lean_conn_close(struct lean *l, struct conn *c)
{
        for (struct conn **pp = &l->conns; *pp; pp = &(*pp)->next)
                if (*pp == c) {
                        *pp = c->next;
                        break;
                }
        if (c->req)
                c->req->impl->c = NULL;
        lean_tls_conn_free(c);
        lean_resolve_detach(l, c);
        if (c->fd >= 0) {
                epoll_ctl(l->a->epfd, EPOLL_CTL_DEL, c->fd, NULL);
                close(c->fd);
        }
        if (c->w) { /* the current epoll batch may still name it: freed after the batch */
                c->w->type = W_DEAD;
                c->w->obj = l->a->graveyard;
                l->a->graveyard = c->w;
        }
        if (c->pbuf.buf) /* a CONNECT request not sent yet holds the proxy's credentials */
                explicit_bzero(c->pbuf.buf, c->pbuf.cap);
        strbuf_release(&c->pbuf);
        agent_proxy_release(&c->px);
        free(c);
}

static struct conn *conn_new(struct lean *l, const struct url_endpoint *ep, char *err, size_t n)
{
        struct conn *c = calloc(1, sizeof(*c));
        struct watch *w = calloc(1, sizeof(*w));
        if (!c || !w) {
                free(c);
                free(w);
                snprintf(err, n, "out of memory");
                return NULL;
        }
        struct drv_error e = {0};
        int px = agent_proxy_for(ep->tls, ep->host, &c->px, &e);
        if (px < 0) {
                snprintf(err, n, "%s", e.message);
                free(c);
                free(w);
                return NULL;
        }
        c->fd = -1;
        c->w = w;
        w->type = W_HTTP_SOCK;
        w->fd = -1;
        w->obj = c;
        c->ep = *ep;
        c->proxied = px > 0;
        c->hop = c->proxied ? c->px.ep : *ep;
        c->next = l->conns;
        l->conns = c;
        if (lean_conn_open(l, c, err, n) < 0) {
                lean_conn_close(l, c);
                return NULL;
        }
        return c;
}

int lean_conn_advance(struct lean *l, struct conn *c, char *err, size_t en)
{
        switch (c->state) {
        case C_CONNECTING:
                if (c->proxied && c->hop.tls)
                        return lean_tls_start(l, c, TLS_PROXY, err, en) < 0 ? HTTP_E_TLS : 0;
                /* fall through */
        case C_PROXY_TLS:
                if (c->proxied)
                        return lean_proxy_start(c, err, en) < 0 ? HTTP_E_OTHER : 0;
                /* fall through */
        case C_PROXY_SEND:
        case C_PROXY_RECV:
                if (c->ep.tls)
                        return lean_tls_start(l, c, TLS_ORIGIN, err, en) < 0 ? HTTP_E_TLS : 0;
                /* fall through */
        default:
                c->state = C_SEND;
                return 0;
        }
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
                else if (c->state < C_SEND && c->req)
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
        if (r && r->impl) {
                free(r->impl->target);
                strbuf_release(&r->impl->out);
                http_parser_release(&r->impl->p);
        }
        http_req_free(r);
}

static void req_unlink(struct lean *l, struct http_req *r)
{
        for (struct http_req **pp = &l->reqs; *pp; pp = &(*pp)->impl->next)
                if (*pp == r) {
                        *pp = r->impl->next;
                        return;
                }
}

void lean_complete(struct lean *l, struct http_req *r, int rc, long status)
{
        if (rc != HTTP_OK && r->fail == NETFAIL_NONE) /* what no step named more precisely */
                r->fail = rc == HTTP_E_TIMEOUT   ? NETFAIL_TIMEOUT
                          : rc == HTTP_E_CONNECT ? NETFAIL_CONNECT
                          : rc == HTTP_E_TLS     ? NETFAIL_HANDSHAKE
                                                 : NETFAIL_OTHER;
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
                        lean_set_events(l, c, EPOLLIN);
                } else {
                        lean_conn_close(l, c);
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
                lean_set_events(l, c, EPOLLOUT);
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
        lean_conn_close(l, c);
        if (req_attach(l, r) < 0)
                return false;
        return true;
}

static void fail(struct lean *l, struct http_req *r, int rc)
{
        if (retry(l, r))
                return;
        lean_complete(l, r, rc, 0);
}

static int add_header(void *ctx, const char *line)
{
        return strbuf_printf(ctx, "%s\r\n", line) < 0 ? -ENOMEM : 0;
}

static int build_request(struct agent *a, struct http_req *r, const char *path)
{
        struct strbuf *o = &r->impl->out;
        const struct url_endpoint *ep = &r->impl->ep;
        bool v6 = strchr(ep->host, ':') != NULL;
        bool dflt = !strcmp(ep->port, ep->tls ? "443" : "80");
        const char *body = http_req_body(r);
        int e = strbuf_printf(o, "POST %s HTTP/1.1\r\nHost: %s%s%s%s%s\r\nAccept: */*\r\n", path,
                              v6 ? "[" : "", ep->host, v6 ? "]" : "", dflt ? "" : ":",
                              dflt ? "" : ep->port);
        if (e >= 0)
                e = http_req_headers(a, path, add_header, o);
        if (e >= 0)
                e = strbuf_printf(o, "Content-Length: %zu\r\n\r\n%s", strlen(body), body);
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
                while (l->conns) /* first: a connection points at its request */
                        lean_conn_close(l, l->conns);
                while (l->reqs) {
                        struct http_req *r = l->reqs;
                        req_unlink(l, r);
                        req_free(r);
                }
                lean_resolve_cleanup(l);
                lean_tls_cleanup(l);
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
        _cleanup_free_ char *url = NULL;
        struct http_req *r =
            http_req_new(a, path, body_take, sizeof(struct http_impl), done, data, &url);
        if (!r)
                return NULL;
        struct http_impl *im = r->impl;
        http_parser_init(&im->p, &r->resp, HTTP_MAX_RESPONSE);
        im->deadline_ns = r->started_ns + (uint64_t)timeout_ms * 1000000ull;
        const char *target = NULL;
        if (url_endpoint_parse(url, &im->ep, &target) < 0) {
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
                lean_conn_close(l, r->impl->c);
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
/* Connected: the next stage (0 or an http_rc); -EAGAIN: still connecting (or the next address). */
static int step_connecting(struct lean *l, struct conn *c, uint32_t events, char *err, size_t en)
{
        int so = 0;
        socklen_t sl = sizeof(so);
        if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
                return -EAGAIN;
        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &so, &sl) < 0)
                so = errno;
        if (so == EINPROGRESS)
                return -EAGAIN;
        if (!so)
                return lean_conn_advance(l, c, err, en);
        snprintf(err, en, "connect to %s port %s: %s", c->hop.host, c->hop.port, strerror(so));
        c->cur = c->cur ? c->cur->ai_next : NULL;
        if (c->cur && lean_conn_connect(l, c, err, en) == 0)
                return -EAGAIN;
        return HTTP_E_CONNECT;
}

/* The request out: true when waiting or finished with it. */
static bool step_send(struct lean *l, struct conn *c)
{
        struct http_req *r = c->req;
        struct http_impl *im = r->impl;
        ssize_t n = lean_io_write(l, c, im->out.buf + im->out_off, im->out.len - im->out_off,
                                  r->error, sizeof(r->error));
        if (n == -EAGAIN)
                return true;
        if (n < 0) {
                fail(l, r, HTTP_E_CONNECT);
                return true;
        }
        im->out_off += (size_t)n;
        if (im->out_off == im->out.len) {
                c->state = C_RECV;
                lean_set_events(l, c, EPOLLIN);
        }
        return false;
}

/* The response in: true when waiting or finished with it. */
static bool step_recv(struct lean *l, struct conn *c)
{
        struct http_req *r = c->req;
        struct http_impl *im = r->impl;
        char *err = r->error;
        size_t en = sizeof(r->error);
        char buf[16384];
        ssize_t n = lean_io_read(l, c, buf, sizeof(buf), err, en);
        if (n == -EAGAIN)
                return true;
        if (n < 0) {
                fail(l, r, HTTP_E_CONNECT);
                return true;
        }
        if (n == 0) {
                if (!im->got_bytes) {
                        snprintf(err, en, "empty reply from server");
                        fail(l, r, HTTP_E_CONNECT);
                } else if (http_parser_eof(&im->p) < 0) {
                        snprintf(err, en, "%s", im->p.error);
                        lean_complete(l, r, HTTP_E_PROTOCOL, 0);
                } else {
                        im->p.keep_alive = false;
                        lean_complete(l, r, HTTP_OK, im->p.status);
                }
                return true;
        }
        im->got_bytes = true;
        ssize_t used = http_parser_feed(&im->p, buf, (size_t)n);
        if (used < 0) {
                snprintf(err, en, "%s", im->p.error);
                lean_complete(l, r, HTTP_E_PROTOCOL, 0);
                return true;
        }
        if (im->p.state == HP_DONE) {
                if (used < n || lean_tls_pending(c))
                        im->p.keep_alive = false; /* unasked-for bytes */
                lean_complete(l, r, HTTP_OK, im->p.status);
                return true;
        }
        return false;
}

static void step_conn(struct lean *l, struct conn *c, uint32_t events)
{
        struct http_req *r = c->req;
        char *err = r->error;
        size_t en = sizeof(r->error);
        for (;;) {
                int rc = 0;
                switch (c->state) {
                case C_RESOLVING:
                case C_IDLE:
                        return;
                case C_CONNECTING:
                        rc = step_connecting(l, c, events, err, en);
                        break;
                case C_PROXY_TLS:
                case C_HANDSHAKE:
                        rc = lean_tls_handshake(
                            l, c, c->state == C_PROXY_TLS ? TLS_PROXY : TLS_ORIGIN, err, en);
                        rc = rc == 0         ? lean_conn_advance(l, c, err, en)
                             : rc == -EAGAIN ? rc
                                             : HTTP_E_TLS;
                        break;
                case C_PROXY_SEND:
                case C_PROXY_RECV:
                        rc = lean_proxy_step(l, c, err, en);
                        if (rc < 0 && rc != -EAGAIN)
                                r->fail = NETFAIL_PROXY;
                        rc = rc == 0         ? lean_conn_advance(l, c, err, en)
                             : rc == -EAGAIN ? rc
                                             : HTTP_E_CONNECT;
                        break;
                case C_SEND:
                        if (step_send(l, c))
                                return;
                        continue;
                case C_RECV:
                        if (step_recv(l, c))
                                return;
                        continue;
                }
                if (rc == -EAGAIN)
                        return;
                if (rc > 0) {
                        lean_complete(l, r, rc, 0);
                        return;
                }
        }
}

/* A connection still on its way to the request after the connect timeout: why. */
static void connect_timeout(struct conn *c, char *err, size_t en)
{
        unsigned ms = HTTP_CONNECT_TIMEOUT_MS;
        if (c->state == C_RESOLVING)
                snprintf(err, en, "could not resolve %s: no answer from the resolver within %u ms",
                         c->hop.host, ms);
        else if (c->state == C_CONNECTING)
                snprintf(err, en, "connect to %s port %s: timeout", c->hop.host, c->hop.port);
        else
                snprintf(err, en, "connect to %s port %s: %s not done within %u ms", c->hop.host,
                         c->hop.port,
                         c->state == C_PROXY_TLS   ? "TLS handshake with the proxy"
                         : c->state == C_HANDSHAKE ? "TLS handshake"
                                                   : "proxy CONNECT",
                         ms);
}

static void drive_timer(struct lean *l)
{
        uint64_t x;
        (void)!read(l->a->http_timer.fd, &x, sizeof(x));
        bool again = true;
        while (again) { /* a callback may add or abort requests: rescan after each */
                again = false;
                uint64_t now = drv_now_ns();
                for (struct http_req *r = l->reqs; r; r = r->impl->next) {
                        if (r->impl->deadline_ns > now)
                                continue;
                        /* still resolving or connecting (a request timeout as long as the
                         * connect timeout ends at the same time): say which phase hung */
                        struct conn *rc_conn = NULL;
                        for (struct conn *c = l->conns; c && !rc_conn; c = c->next)
                                if (c->req == r && c->state < C_SEND)
                                        rc_conn = c;
                        if (!r->impl->fail_rc && rc_conn) {
                                connect_timeout(rc_conn, r->error, sizeof(r->error));
                                r->fail = NETFAIL_TIMEOUT;
                        } else if (!r->impl->fail_rc)
                                snprintf(r->error, sizeof(r->error), "timeout after %llu ms",
                                         (unsigned long long)((now - r->started_ns) / 1000000));
                        lean_complete(l, r, r->impl->fail_rc ? r->impl->fail_rc : HTTP_E_TIMEOUT,
                                      0);
                        again = true;
                        break;
                }
        }
        uint64_t now = drv_now_ns();
        for (struct conn *c = l->conns, *nx; c; c = nx) {
                nx = c->next;
                if (c->state < C_SEND && c->req && now - c->req->started_ns >= CONNECT_TIMEOUT_NS) {
                        connect_timeout(c, c->req->error, sizeof(c->req->error));
                        c->req->fail = NETFAIL_TIMEOUT;
                        lean_complete(l, c->req, HTTP_E_CONNECT, 0);
                        break; /* the list may have changed */
                }
                if (c->state == C_IDLE && now - c->idle_since_ns >= IDLE_KEEP_NS)
                        lean_conn_close(l, c);
        }
        arm_timer(l);
}

void http_drive(struct agent *a, int fd, uint32_t events)
{
        struct lean *l = L(a);
        if (fd == HTTP_TIMER_FD) {
                drive_timer(l);
                return;
        }
        if (lean_resolve_drive(l, fd)) {
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
                lean_conn_close(l, c);
                arm_timer(l);
                return;
        }
        if (c->req)
                step_conn(l, c, events);
}

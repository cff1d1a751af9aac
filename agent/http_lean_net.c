/* http_lean_net.c: the network side of the lean transport: host names resolved off the event
 * loop with a bound, non-blocking connects, and the proxy's CONNECT tunnel (with
 * Proxy-Authorization: Basic for a proxy URL with credentials). */
#include "agent/http_lean.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include <mbedtls/base64.h>

/* ---- name resolution ----
 * getaddrinfo is the one call that forces a thread on the agent (house style: one event loop,
 * threads only where a library forces them): glibc has no non-blocking resolver, and
 * getaddrinfo_a runs threads too without a way to cancel a lookup in progress. Blocking in the
 * loop would stop heartbeats and the drain on SIGTERM for the resolver's whole timeout
 * (timeout x attempts x nameservers) whenever the DNS server is dead. So each lookup runs in a
 * short-lived detached thread that only calls getaddrinfo and then writes one byte to a
 * socketpair the loop watches. The loop gives up waiting after the connect timeout (the
 * request fails naming the host) and never waits for the thread: the thread, which cannot be
 * interrupted, finishes on its own and the last of the two references frees the lookup. A
 * request for a name whose lookup still runs (even one given up on) waits for that one, so a
 * dead DNS server costs one thread per name, not one per retry. */
struct resolve {
        struct resolve *next; /* l->resolves (loop only) */
        atomic_int refs;      /* the loop's and the thread's */
        atomic_bool answered; /* rc and ai are written (by the thread) */
        int fd;               /* the loop's end of the socketpair (-1 once answered) */
        int tfd;              /* the thread's end, closed by the thread */
        struct watch *w;
        char host[256], port[8];
        int rc, err_no; /* getaddrinfo's result (err_no: errno for EAI_SYSTEM) */
        struct addrinfo *ai;
        unsigned users; /* connections waiting for it or using ai (loop only) */
};

static void resolve_unref(struct resolve *res)
{
        if (atomic_fetch_sub(&res->refs, 1) != 1)
                return;
        if (res->ai)
                freeaddrinfo(res->ai);
        free(res);
}

static void *resolve_thread(void *arg)
{
        struct resolve *res = arg;
        struct addrinfo hints = {.ai_socktype = SOCK_STREAM}; /* every address, loopback too */
        res->rc = getaddrinfo(res->host, res->port, &hints, &res->ai);
        res->err_no = errno;
        atomic_store(&res->answered, true);
        char x = 1;
        (void)!send(res->tfd, &x, 1, MSG_NOSIGNAL); /* the loop may have gone: EPIPE is fine */
        close(res->tfd);
        resolve_unref(res);
        return NULL;
}

/* Stop watching res's socket (answered, or the transport is going away). */
static void resolve_unwatch(struct lean *l, struct resolve *res)
{
        if (res->fd < 0)
                return;
        epoll_ctl(l->a->epfd, EPOLL_CTL_DEL, res->fd, NULL);
        close(res->fd);
        res->fd = -1;
        res->w->type = W_DEAD; /* the current epoll batch may still name it */
        res->w->obj = l->a->graveyard;
        l->a->graveyard = res->w;
        res->w = NULL;
}

static void resolve_drop(struct lean *l, struct resolve *res)
{
        for (struct resolve **pp = &l->resolves; *pp; pp = &(*pp)->next)
                if (*pp == res) {
                        *pp = res->next;
                        break;
                }
        resolve_unwatch(l, res);
        resolve_unref(res);
}

static struct resolve *resolve_start(struct lean *l, const char *host, const char *port, char *err,
                                     size_t n)
{
        struct resolve *res = calloc(1, sizeof(*res));
        struct watch *w = calloc(1, sizeof(*w));
        int sv[2] = {-1, -1};
        if (!res || !w || socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
                snprintf(err, n, "could not resolve %s: %s", host,
                         res && w ? strerror(errno) : "out of memory");
                free(res);
                free(w);
                return NULL;
        }
        snprintf(res->host, sizeof(res->host), "%s", host);
        snprintf(res->port, sizeof(res->port), "%s", port);
        res->fd = sv[0];
        res->tfd = sv[1];
        res->w = w;
        w->type = W_HTTP_SOCK;
        w->fd = sv[0];
        w->obj = res;
        atomic_init(&res->refs, 2);
        struct epoll_event e = {.events = EPOLLIN, .data.ptr = w};
        pthread_attr_t at;
        sigset_t all, old;
        sigfillset(&all);
        int r = drv_fd_nonblock(sv[0], true) < 0 ? errno : 0;
        if (!r && epoll_ctl(l->a->epfd, EPOLL_CTL_ADD, sv[0], &e) < 0)
                r = errno;
        if (!r && !(r = pthread_attr_init(&at))) {
                pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
                /* the thread takes no signal: SIGTERM & co. stay with the loop's signalfd */
                pthread_sigmask(SIG_SETMASK, &all, &old);
                pthread_t t;
                r = pthread_create(&t, &at, resolve_thread, res);
                pthread_sigmask(SIG_SETMASK, &old, NULL);
                pthread_attr_destroy(&at);
        }
        if (r) {
                snprintf(err, n, "could not resolve %s: resolver thread: %s", host, strerror(r));
                close(sv[1]);
                resolve_unwatch(l, res);
                free(res);
                return NULL;
        }
        res->next = l->resolves;
        l->resolves = res;
        return res;
}

/* The lookup c waited for has answered: connect, or fail its request naming the host. */
static void resolved(struct lean *l, struct conn *c)
{
        struct resolve *res = c->res;
        struct http_req *r = c->req;
        if (!r) {
                lean_conn_close(l, c);
                return;
        }
        if (!atomic_load(&res->answered) || res->rc != 0) {
                const char *why = !atomic_load(&res->answered) ? "resolver thread ended"
                                  : res->rc == EAI_SYSTEM      ? strerror(res->err_no)
                                                               : gai_strerror(res->rc);
                snprintf(r->error, sizeof(r->error), "could not resolve %s: %s", c->hop.host, why);
                r->fail = c->proxied ? NETFAIL_PROXY : NETFAIL_RESOLVE;
                lean_complete(l, r, HTTP_E_CONNECT, 0);
                return;
        }
        c->cur = res->ai;
        if (lean_conn_connect(l, c, r->error, sizeof(r->error)) < 0)
                lean_complete(l, r, HTTP_E_CONNECT, 0);
}

bool lean_resolve_drive(struct lean *l, int fd)
{
        struct resolve *res = NULL;
        for (struct resolve *k = l->resolves; k && fd >= 0; k = k->next)
                if (k->fd == fd)
                        res = k;
        if (!res)
                return false;
        char x;
        if (recv(fd, &x, 1, 0) < 0 && (errno == EAGAIN || errno == EINTR))
                return true;
        resolve_unwatch(l, res);
        res->users++; /* kept while its connections go on (they may complete and close) */
        for (;;) {
                struct conn *c = NULL;
                for (struct conn *k = l->conns; k && !c; k = k->next)
                        if (k->res == res && k->state == C_RESOLVING)
                                c = k;
                if (!c)
                        break;
                resolved(l, c);
        }
        if (--res->users == 0)
                resolve_drop(l, res);
        return true;
}

void lean_resolve_detach(struct lean *l, struct conn *c)
{
        struct resolve *res = c->res;
        c->res = NULL;
        if (c->ai)
                freeaddrinfo(c->ai);
        c->ai = c->cur = NULL;
        /* a lookup still running stays listed: the next request for the name waits for it */
        if (res && --res->users == 0 && res->fd < 0)
                resolve_drop(l, res);
}

void lean_resolve_cleanup(struct lean *l)
{
        while (l->resolves)
                resolve_drop(l, l->resolves);
}

int lean_conn_open(struct lean *l, struct conn *c, char *err, size_t n)
{
        struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICHOST};
        int r = getaddrinfo(c->hop.host, c->hop.port, &hints, &c->ai);
        if (r == 0) { /* an address: nothing to wait for */
                c->cur = c->ai;
                return lean_conn_connect(l, c, err, n);
        }
        c->ai = NULL;
        if (r != EAI_NONAME) {
                snprintf(err, n, "could not resolve %s: %s", c->hop.host, gai_strerror(r));
                return -EINVAL;
        }
        struct resolve *res = NULL;
        for (struct resolve *k = l->resolves; k && !res; k = k->next)
                if (k->fd >= 0 && !strcmp(k->host, c->hop.host) && !strcmp(k->port, c->hop.port))
                        res = k;
        if (!res && !(res = resolve_start(l, c->hop.host, c->hop.port, err, n)))
                return -EAGAIN;
        res->users++;
        c->res = res;
        c->state = C_RESOLVING;
        return 0;
}

int lean_conn_connect(struct lean *l, struct conn *c, char *err, size_t n)
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

/* ---- the proxy's CONNECT tunnel ---- */
static void pbuf_wipe(struct conn *c)
{
        if (c->pbuf.buf)
                explicit_bzero(c->pbuf.buf, c->pbuf.cap);
        strbuf_reset(&c->pbuf);
}

/* Proxy-Authorization: Basic base64(user:password), written into room reserved beforehand
 * (no realloc leaves a copy of the credentials behind). */
static int proxy_auth(struct conn *c)
{
        size_t ul = strlen(c->px.user), pl = strlen(c->px.pass), n = ul + 1 + pl;
        size_t cap = 4 * ((n + 2) / 3) + 1, olen = 0;
        unsigned char *raw = malloc(n + 1), *b64 = malloc(cap);
        int e = raw && b64 && strbuf_grow(&c->pbuf, cap + 40) == 0 ? 0 : -ENOMEM;
        if (e == 0) {
                memcpy(raw, c->px.user, ul);
                raw[ul] = ':';
                memcpy(raw + ul + 1, c->px.pass, pl);
                if (mbedtls_base64_encode(b64, cap, &olen, raw, n) != 0)
                        e = -ENOMEM;
        }
        if (e == 0)
                e = strbuf_printf(&c->pbuf, "Proxy-Authorization: Basic %.*s\r\n", (int)olen,
                                  (const char *)b64);
        if (raw)
                explicit_bzero(raw, n + 1);
        if (b64)
                explicit_bzero(b64, cap);
        free(raw);
        free(b64);
        return e < 0 ? -ENOMEM : 0;
}

int lean_proxy_start(struct conn *c, char *err, size_t en)
{
        bool v6 = strchr(c->ep.host, ':') != NULL;
        char target[300];
        snprintf(target, sizeof(target), "%s%s%s:%s", v6 ? "[" : "", c->ep.host, v6 ? "]" : "",
                 c->ep.port);
        pbuf_wipe(c);
        int e = strbuf_grow(&c->pbuf, 1024);
        if (e == 0)
                e = strbuf_printf(&c->pbuf,
                                  "CONNECT %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: drover-agent\r\n",
                                  target, target);
        if (e >= 0 && c->px.user)
                e = proxy_auth(c);
        if (e >= 0)
                e = strbuf_puts(&c->pbuf, "\r\n");
        if (e < 0) {
                pbuf_wipe(c);
                snprintf(err, en, "out of memory");
                return -ENOMEM;
        }
        c->poff = 0;
        c->state = C_PROXY_SEND;
        return 0;
}

/* A refusal: the proxy's status line (printable, quote-free) and what to check. */
static void proxy_refused(struct conn *c, char *err, size_t en)
{
        char line[100];
        size_t ll = strcspn(c->pbuf.buf, "\r\n");
        if (ll >= sizeof(line))
                ll = sizeof(line) - 1;
        for (size_t i = 0; i < ll; i++) {
                char ch = c->pbuf.buf[i];
                line[i] = ch >= 0x20 && ch < 0x7f && ch != '"' && ch != '\\' ? ch : '?';
        }
        line[ll] = 0;
        bool auth = c->pbuf.len > 12 && !strncmp(c->pbuf.buf + 8, " 407", 4);
        snprintf(err, en, "proxy %s refused the tunnel to %s: %s%s%s%s", c->px.shown, c->ep.host,
                 line,
                 !auth        ? ""
                 : c->px.user ? " (the proxy did not accept the credentials in "
                              : " (the proxy wants credentials: user:password@ in ",
                 auth ? c->px.var : "", auth ? ")" : "");
}

int lean_proxy_step(struct lean *l, struct conn *c, char *err, size_t en)
{
        while (c->state == C_PROXY_SEND) {
                ssize_t n =
                    lean_io_write(l, c, c->pbuf.buf + c->poff, c->pbuf.len - c->poff, err, en);
                if (n == -EAGAIN)
                        return -EAGAIN;
                if (n < 0) {
                        pbuf_wipe(c);
                        return -EIO;
                }
                c->poff += (size_t)n;
                if (c->poff == c->pbuf.len) {
                        pbuf_wipe(c); /* it held the credentials */
                        c->state = C_PROXY_RECV;
                        lean_set_events(l, c, EPOLLIN);
                }
        }
        for (;;) {
                /* byte by byte: nothing of the tunnel may be read past the headers */
                char ch;
                ssize_t n = lean_io_read(l, c, &ch, 1, err, en);
                if (n == -EAGAIN)
                        return -EAGAIN;
                if (n <= 0 || c->pbuf.len > 16384) {
                        if (n >= 0)
                                snprintf(err, en, "proxy %s %s", c->px.shown,
                                         n == 0 ? "closed the connection during CONNECT"
                                                : "sent more than 16 KiB of headers");
                        return -EIO;
                }
                if (strbuf_putc(&c->pbuf, ch) < 0) {
                        snprintf(err, en, "out of memory");
                        return -ENOMEM;
                }
                if (c->pbuf.len < 4 || memcmp(c->pbuf.buf + c->pbuf.len - 4, "\r\n\r\n", 4))
                        continue;
                if (strncmp(c->pbuf.buf, "HTTP/1.", 7) != 0 || c->pbuf.len < 12 ||
                    c->pbuf.buf[9] != '2') {
                        proxy_refused(c, err, en);
                        return -EIO;
                }
                strbuf_release(&c->pbuf);
                return 0;
        }
}

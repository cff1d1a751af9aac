/* http_lean.h: internals of the lean transport of `drover-agent`, shared by its files:
 * http_lean.c (requests, the connection state machine, the http_* interface), http_lean_net.c
 * (name resolution off the loop, connect, the proxy's CONNECT tunnel) and http_lean_tls.c (TLS
 * material, handshakes, layered I/O: plain, TLS, or TLS inside an https:// proxy's TLS). */
#pragma once

#include "agent/agent.h"
#include "agent/http_parse.h"
#include "agent/proxy.h"

#include <mbedtls/ssl.h>
#include <netdb.h>

#define CONNECT_TIMEOUT_NS ((uint64_t)HTTP_CONNECT_TIMEOUT_MS * 1000000)
#define IDLE_KEEP_NS       (30000ull * 1000000)
#define MAX_IDLE_CONNS     8

/* A connection goes through these in order, skipping what does not apply. */
enum conn_state {
        C_RESOLVING,  /* waiting for the resolver thread (a host name) */
        C_CONNECTING, /* TCP connect in progress */
        C_PROXY_TLS,  /* handshake with an https:// proxy */
        C_PROXY_SEND, /* CONNECT request */
        C_PROXY_RECV, /* CONNECT answer */
        C_HANDSHAKE,  /* TLS with the control plane */
        C_SEND,
        C_RECV,
        C_IDLE
};

struct tls_mat;
struct resolve;

struct conn {
        struct conn *next;
        struct watch *w; /* in epoll; handed to the graveyard when closed */
        int fd;
        enum conn_state state;
        struct url_endpoint ep;  /* where the request goes (the origin) */
        struct url_endpoint hop; /* where the socket connects (origin or proxy) */
        bool proxied;
        struct agent_proxy px; /* when proxied (px.user/pass: secrets) */
        struct resolve *res;   /* the lookup of hop.host it waits for or took addresses from */
        struct addrinfo *ai;   /* addresses of a numeric hop (res == NULL) */
        struct addrinfo *cur;  /* the address being tried */
        bool ssl_on, pssl_on;  /* TLS with the origin; TLS with the proxy */
        mbedtls_ssl_context ssl, pssl;
        struct tls_mat *mat, *pmat; /* what ssl / pssl were set up with */
        uint32_t events;            /* current epoll mask */
        uint32_t want;              /* what the socket layer last waited for (EPOLLIN/OUT) */
        int io_errno;               /* the socket layer's last errno */
        struct http_req *req;
        uint64_t idle_since_ns;
        struct strbuf pbuf; /* CONNECT request (wiped: credentials) / answer */
        size_t poff;
        bool reused;
};

struct http_impl {
        struct http_req *next; /* in-flight list */
        struct conn *c;
        struct url_endpoint ep;
        char *target; /* path (and query) */
        struct strbuf out;
        size_t out_off;
        struct http_parser p;
        bool got_bytes;
        int retries;
        uint64_t deadline_ns;
        int fail_rc; /* != 0: fail at the next timer tick (errors found inside http_post) */
};

enum { TLS_ORIGIN, TLS_PROXY };

struct lean {
        struct agent *a;
        struct tls_mat *tls[2]; /* the current TLS material: control plane, proxy */
        struct conn *conns;
        struct http_req *reqs;
        struct resolve *resolves; /* lookups running or with users */
};

/* http_lean.c */
void lean_set_events(struct lean *l, struct conn *c, uint32_t ev);
void lean_conn_close(struct lean *l, struct conn *c);
/* End r with rc (HTTP_OK: status) and call its done; its connection is kept idle or closed. */
void lean_complete(struct lean *l, struct http_req *r, int rc, long status);
/* The stage after the one c just finished: proxy TLS, CONNECT, TLS with the origin, request.
 * 0, or an http_rc class with c->req's error filled. */
int lean_conn_advance(struct lean *l, struct conn *c, char *err, size_t en);

/* http_lean_net.c */
/* Find c->hop's addresses (numeric: at once; a name: C_RESOLVING until the resolver answers)
 * and start connecting. 0, or -errno with err filled. */
int lean_conn_open(struct lean *l, struct conn *c, char *err, size_t n);
/* Start a non-blocking connect to c->cur or the next address that takes one (C_CONNECTING). */
int lean_conn_connect(struct lean *l, struct conn *c, char *err, size_t n);
/* A resolver's socket fired (fd): hand its answer to the connections waiting. false if fd is
 * not a resolver's. */
bool lean_resolve_drive(struct lean *l, int fd);
/* c is closed: stop waiting for / using its lookup. */
void lean_resolve_detach(struct lean *l, struct conn *c);
/* Drop every lookup (the threads still running finish on their own). */
void lean_resolve_cleanup(struct lean *l);
/* Build c's CONNECT request (C_PROXY_SEND). */
int lean_proxy_start(struct conn *c, char *err, size_t en);
/* Drive C_PROXY_SEND / C_PROXY_RECV: 0 tunnel open, -EAGAIN, else an error (err filled). */
int lean_proxy_step(struct lean *l, struct conn *c, char *err, size_t en);

/* http_lean_tls.c */
/* Set up TLS on c (TLS_PROXY: with the proxy, else with the origin inside any proxy TLS). */
int lean_tls_start(struct lean *l, struct conn *c, int which, char *err, size_t n);
/* Drive that handshake: 0 done (peer verified), -EAGAIN, -EIO with err filled. */
int lean_tls_handshake(struct lean *l, struct conn *c, int which, char *err, size_t n);
/* c's top layer: > 0 bytes, 0 EOF (read), -EAGAIN (events updated), other < 0 (err filled). */
ssize_t lean_io_read(struct lean *l, struct conn *c, char *buf, size_t n, char *err, size_t en);
ssize_t lean_io_write(struct lean *l, struct conn *c, const char *buf, size_t n, char *err,
                      size_t en);
/* Bytes a TLS layer of c holds already decrypted (nothing epoll would report). */
size_t lean_tls_pending(struct conn *c);
void lean_tls_conn_free(struct conn *c);
void lean_tls_cleanup(struct lean *l);

/* http_lean_tls.c: TLS of the lean transport (mbedTLS): the material (CA, client certificate and
 * key for the control plane; the CA for an https:// proxy), handshakes with the peer verified by
 * name or address, and a connection's layered I/O — plain, TLS, or TLS to the control plane
 * inside the TLS to an https:// proxy. */
#include "agent/http_lean.h"

#include <arpa/inet.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/error.h>
#include <mbedtls/net_sockets.h>
#include <mbedtls/pk.h>
#include <mbedtls/x509_crt.h>

#define SYSTEM_CA "/etc/ssl/certs/ca-certificates.crt"

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

/* The files of the control plane's TLS, or of the proxy's (its CA only: no client cert). */
static void tls_paths(const struct agent_config *c, int which, const char *p[3])
{
        if (which == TLS_PROXY) {
                p[0] = c->tls_proxy_ca && c->tls_proxy_ca[0] ? c->tls_proxy_ca : SYSTEM_CA;
                p[1] = p[2] = "";
                return;
        }
        p[0] = c->tls_ca && c->tls_ca[0] ? c->tls_ca : SYSTEM_CA;
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

static int mat_load(struct tls_mat *m, const char *p[3], char *errbuf, size_t n)
{
        int e;
        if ((e = mbedtls_ctr_drbg_seed(&m->drbg, mbedtls_entropy_func, &m->ent,
                                       (const unsigned char *)"drover-agent", 12)) != 0) {
                tls_err(errbuf, n, "random seed", e);
                return -EIO;
        }
        if ((e = mbedtls_x509_crt_parse_file(&m->ca, p[0])) < 0) {
                tls_err(errbuf, n, p[0], e);
                return -EINVAL;
        }
        if ((e = mbedtls_ssl_config_defaults(&m->conf, MBEDTLS_SSL_IS_CLIENT,
                                             MBEDTLS_SSL_TRANSPORT_STREAM,
                                             MBEDTLS_SSL_PRESET_DEFAULT)) != 0) {
                tls_err(errbuf, n, "tls config", e);
                return -EINVAL;
        }
        mbedtls_ssl_conf_min_version(&m->conf, MBEDTLS_SSL_MAJOR_VERSION_3,
                                     MBEDTLS_SSL_MINOR_VERSION_3);
        mbedtls_ssl_conf_authmode(&m->conf, MBEDTLS_SSL_VERIFY_REQUIRED);
        mbedtls_ssl_conf_ca_chain(&m->conf, &m->ca, NULL);
        mbedtls_ssl_conf_rng(&m->conf, mbedtls_ctr_drbg_random, &m->drbg);
        if (!p[1][0])
                return 0;
        if ((e = mbedtls_x509_crt_parse_file(&m->cert, p[1])) != 0) {
                tls_err(errbuf, n, p[1], e);
                return -EINVAL;
        }
        if ((e = mbedtls_pk_parse_keyfile(&m->key, p[2], NULL)) != 0) {
                tls_err(errbuf, n, p[2], e);
                return -EINVAL;
        }
        if ((e = mbedtls_ssl_conf_own_cert(&m->conf, &m->cert, &m->key)) != 0) {
                tls_err(errbuf, n, "client certificate", e);
                return -EINVAL;
        }
        return 0;
}

/* The current material of which (a new reference), or NULL with errbuf filled. */
static struct tls_mat *tls_get(struct lean *l, int which, char *errbuf, size_t n)
{
        const char *p[3];
        tls_paths(&l->a->cfg, which, p);
        struct tls_mat *cur = l->tls[which];
        if (cur && mat_current(cur, p)) {
                cur->refs++;
                return cur;
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
                        mat_unref(m);
                        return NULL;
                }
        }
        if (mat_load(m, p, errbuf, n) < 0) {
                mat_unref(m);
                return NULL;
        }
        if (cur)
                log_info("tls_material_loaded", "for=%s ca=%s cert=%s",
                         which == TLS_PROXY ? "proxy" : "control_plane", p[0], p[1]);
        mat_unref(cur);
        l->tls[which] = m;
        m->refs++;
        return m;
}

void lean_tls_cleanup(struct lean *l)
{
        for (size_t i = 0; i < 2; i++) {
                mat_unref(l->tls[i]);
                l->tls[i] = NULL;
        }
}

void lean_tls_conn_free(struct conn *c)
{
        if (c->ssl_on)
                mbedtls_ssl_free(&c->ssl);
        if (c->pssl_on)
                mbedtls_ssl_free(&c->pssl);
        c->ssl_on = c->pssl_on = false;
        mat_unref(c->mat);
        mat_unref(c->pmat);
        c->mat = c->pmat = NULL;
}

/* ---- the layers: socket, proxy TLS over it, origin TLS over either ---- */
static int bio_send(void *ctx, const unsigned char *buf, size_t len)
{
        struct conn *c = ctx;
        ssize_t r = send(c->fd, buf, len, MSG_NOSIGNAL);
        if (r >= 0)
                return (int)r;
        if (errno == EAGAIN || errno == EINTR) {
                c->want = EPOLLOUT;
                return MBEDTLS_ERR_SSL_WANT_WRITE;
        }
        c->io_errno = errno;
        return MBEDTLS_ERR_NET_SEND_FAILED;
}

static int bio_recv(void *ctx, unsigned char *buf, size_t len)
{
        struct conn *c = ctx;
        ssize_t r = recv(c->fd, buf, len, 0);
        if (r >= 0)
                return (int)r;
        if (errno == EAGAIN || errno == EINTR) {
                c->want = EPOLLIN;
                return MBEDTLS_ERR_SSL_WANT_READ;
        }
        c->io_errno = errno;
        return MBEDTLS_ERR_NET_RECV_FAILED;
}

/* TLS with the control plane inside the tunnel of an https:// proxy: its records travel as the
 * data of the proxy's TLS. */
static int bio_send_tunnel(void *ctx, const unsigned char *buf, size_t len)
{
        struct conn *c = ctx;
        int r = mbedtls_ssl_write(&c->pssl, buf, len);
        if (r >= 0 || r == MBEDTLS_ERR_SSL_WANT_READ || r == MBEDTLS_ERR_SSL_WANT_WRITE)
                return r;
        return MBEDTLS_ERR_NET_SEND_FAILED;
}

static int bio_recv_tunnel(void *ctx, unsigned char *buf, size_t len)
{
        struct conn *c = ctx;
        int r = mbedtls_ssl_read(&c->pssl, buf, len);
        if (r == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY)
                return 0;
        if (r >= 0 || r == MBEDTLS_ERR_SSL_WANT_READ || r == MBEDTLS_ERR_SSL_WANT_WRITE)
                return r;
        return MBEDTLS_ERR_NET_RECV_FAILED;
}

/* A would-block of any layer: wait for what the socket layer waited for. */
static bool would_block(struct lean *l, struct conn *c, int r)
{
        if (r != MBEDTLS_ERR_SSL_WANT_READ && r != MBEDTLS_ERR_SSL_WANT_WRITE)
                return false;
        uint32_t ev = c->want ? c->want : r == MBEDTLS_ERR_SSL_WANT_READ ? EPOLLIN : EPOLLOUT;
        lean_set_events(l, c, ev);
        return true;
}

static void io_err(struct conn *c, int r, const char *what, char *err, size_t en)
{
        if ((r == MBEDTLS_ERR_NET_RECV_FAILED || r == MBEDTLS_ERR_NET_SEND_FAILED) && !c->ssl_on &&
            !c->pssl_on)
                snprintf(err, en, "%s: %s", r == MBEDTLS_ERR_NET_RECV_FAILED ? "recv" : "send",
                         strerror(c->io_errno));
        else
                tls_err(err, en, what, r);
}

ssize_t lean_io_read(struct lean *l, struct conn *c, char *buf, size_t n, char *err, size_t en)
{
        unsigned char *b = (unsigned char *)buf;
        c->want = 0;
        int r = c->ssl_on    ? mbedtls_ssl_read(&c->ssl, b, n)
                : c->pssl_on ? mbedtls_ssl_read(&c->pssl, b, n)
                             : bio_recv(c, b, n);
        if (would_block(l, c, r))
                return -EAGAIN;
        if (r == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY || r == 0)
                return 0;
        if (r < 0) {
                io_err(c, r, "tls read", err, en);
                return -EIO;
        }
        return r;
}

ssize_t lean_io_write(struct lean *l, struct conn *c, const char *buf, size_t n, char *err,
                      size_t en)
{
        const unsigned char *b = (const unsigned char *)buf;
        c->want = 0;
        int r = c->ssl_on    ? mbedtls_ssl_write(&c->ssl, b, n)
                : c->pssl_on ? mbedtls_ssl_write(&c->pssl, b, n)
                             : bio_send(c, b, n);
        if (would_block(l, c, r))
                return -EAGAIN;
        if (r < 0) {
                io_err(c, r, "tls write", err, en);
                return -EIO;
        }
        return r;
}

size_t lean_tls_pending(struct conn *c)
{
        return (c->ssl_on ? mbedtls_ssl_get_bytes_avail(&c->ssl) : 0) +
               (c->pssl_on ? mbedtls_ssl_get_bytes_avail(&c->pssl) : 0);
}

/* ---- handshakes ---- */
static bool is_ip(const char *host)
{
        unsigned char b[16];
        return inet_pton(AF_INET, host, b) == 1 || inet_pton(AF_INET6, host, b) == 1;
}

/* mbedTLS 2.28 matches names (CN, dNSName) only: a peer given by IP address is checked
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

int lean_tls_start(struct lean *l, struct conn *c, int which, char *err, size_t n)
{
        bool px = which == TLS_PROXY;
        struct tls_mat **mat = px ? &c->pmat : &c->mat;
        mbedtls_ssl_context *ssl = px ? &c->pssl : &c->ssl;
        const char *host = px ? c->hop.host : c->ep.host;
        *mat = tls_get(l, which, err, n);
        if (!*mat)
                return -EINVAL;
        mbedtls_ssl_init(ssl);
        *(px ? &c->pssl_on : &c->ssl_on) = true;
        int e = mbedtls_ssl_setup(ssl, &(*mat)->conf);
        if (e == 0)
                e = mbedtls_ssl_set_hostname(ssl, is_ip(host) ? NULL : host);
        if (e != 0) {
                tls_err(err, n, "tls setup", e);
                return -EINVAL;
        }
        if (!px && c->pssl_on)
                mbedtls_ssl_set_bio(ssl, c, bio_send_tunnel, bio_recv_tunnel, NULL);
        else
                mbedtls_ssl_set_bio(ssl, c, bio_send, bio_recv, NULL);
        c->state = px ? C_PROXY_TLS : C_HANDSHAKE;
        lean_set_events(l, c, EPOLLOUT);
        return 0;
}

/* The kind of a failed handshake (agent/netfail.h, the words of `drover check`): a peer that
 * alerts, closes or resets once it has our certificate refused it (TLS 1.2 names no reason we
 * could rely on: servers send bad_certificate, unknown_ca, or just close). */
static enum netfail handshake_fail(const mbedtls_ssl_context *ssl, bool px, int e)
{
        bool ended = e == MBEDTLS_ERR_SSL_FATAL_ALERT_MESSAGE || e == MBEDTLS_ERR_NET_SEND_FAILED ||
                     e == MBEDTLS_ERR_NET_RECV_FAILED || e == MBEDTLS_ERR_SSL_CONN_EOF ||
                     e == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY;
        if (px)
                return NETFAIL_PROXY;
        if (ended && ssl->client_auth && ssl->state > MBEDTLS_SSL_CLIENT_CERTIFICATE)
                return NETFAIL_CLIENT_REFUSED;
        return ended && e != MBEDTLS_ERR_SSL_FATAL_ALERT_MESSAGE ? NETFAIL_CLOSED
                                                                 : NETFAIL_HANDSHAKE;
}

static void set_fail(struct conn *c, enum netfail f)
{
        if (c->req)
                c->req->fail = f;
}

int lean_tls_handshake(struct lean *l, struct conn *c, int which, char *err, size_t n)
{
        bool px = which == TLS_PROXY;
        mbedtls_ssl_context *ssl = px ? &c->pssl : &c->ssl;
        const char *host = px ? c->hop.host : c->ep.host;
        char who[300];
        if (px)
                snprintf(who, sizeof(who), "proxy %s certificate", c->px.shown);
        else
                snprintf(who, sizeof(who), "server certificate");
        c->want = 0;
        int e = mbedtls_ssl_handshake(ssl);
        if (would_block(l, c, e))
                return -EAGAIN;
        if (e != 0) {
                uint32_t flags = mbedtls_ssl_get_verify_result(ssl);
                if (e == MBEDTLS_ERR_X509_CERT_VERIFY_FAILED && flags) {
                        char vb[160];
                        mbedtls_x509_crt_verify_info(vb, sizeof(vb), "", flags);
                        vb[strcspn(vb, "\n")] = 0;
                        snprintf(err, n, "%s: %s%s", who, vb,
                                 px ? " (tls.proxy_ca: the proxy's CA)" : "");
                        set_fail(c,
                                 px ? NETFAIL_PROXY
                                    : netfail_of_verify(flags & MBEDTLS_X509_BADCERT_NOT_TRUSTED,
                                                        flags & (MBEDTLS_X509_BADCERT_EXPIRED |
                                                                 MBEDTLS_X509_BADCERT_FUTURE),
                                                        flags & MBEDTLS_X509_BADCERT_CN_MISMATCH));
                } else {
                        tls_err(err, n, px ? "tls handshake with the proxy" : "tls handshake", e);
                        set_fail(c, handshake_fail(ssl, px, e));
                }
                return -EIO;
        }
        if (is_ip(host)) {
                const mbedtls_x509_crt *peer = mbedtls_ssl_get_peer_cert(ssl);
                if (!peer || !cert_has_ip(peer, host)) {
                        snprintf(err, n, "%s does not name %s", who, host);
                        set_fail(c, px ? NETFAIL_PROXY : NETFAIL_NAME);
                        return -EIO;
                }
        }
        return 0;
}

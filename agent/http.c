/* http.c: the control-plane HTTP client: libcurl multi, driven by the agent's epoll loop. */
#include "agent/agent.h"

#include <curl/curl.h>

#include <sys/epoll.h>
#include <sys/timerfd.h>

struct http_impl {
        CURL *easy;
        struct curl_slist *hdrs;
        char errbuf[CURL_ERROR_SIZE]; /* libcurl's own message: names the host, proxy, status */
};

static size_t on_write(char *ptr, size_t size, size_t nmemb, void *userdata)
{
        struct http_req *r = userdata;
        size_t n = size * nmemb;
        if (r->resp.len + n > HTTP_MAX_RESPONSE || strbuf_append(&r->resp, ptr, n) < 0)
                return 0;
        return n;
}

static int on_socket(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
        (void)easy;
        struct agent *a = userp;
        struct watch *w = socketp;
        if (what == CURL_POLL_REMOVE) {
                if (w) {
                        epoll_ctl(a->epfd, EPOLL_CTL_DEL, s, NULL);
                        /* the current epoll batch may still name it: free after the batch */
                        w->type = W_DEAD;
                        w->obj = a->graveyard;
                        a->graveyard = w;
                        curl_multi_assign(a->http, s, NULL);
                }
                return 0;
        }
        struct epoll_event ev = {0};
        if (what == CURL_POLL_IN || what == CURL_POLL_INOUT)
                ev.events |= EPOLLIN;
        if (what == CURL_POLL_OUT || what == CURL_POLL_INOUT)
                ev.events |= EPOLLOUT;
        if (!w) {
                w = calloc(1, sizeof(*w));
                if (!w)
                        return -1;
                w->type = W_HTTP_SOCK;
                w->fd = s;
                ev.data.ptr = w;
                if (epoll_ctl(a->epfd, EPOLL_CTL_ADD, s, &ev) < 0) {
                        free(w);
                        return -1;
                }
                curl_multi_assign(a->http, s, w);
        } else {
                ev.data.ptr = w;
                epoll_ctl(a->epfd, EPOLL_CTL_MOD, s, &ev);
        }
        return 0;
}

static int on_timer(CURLM *multi, long timeout_ms, void *userp)
{
        (void)multi;
        struct agent *a = userp;
        struct itimerspec its = {0};
        if (timeout_ms == 0)
                its.it_value.tv_nsec = 1; /* as soon as possible, from the loop */
        else if (timeout_ms > 0) {
                its.it_value.tv_sec = timeout_ms / 1000;
                its.it_value.tv_nsec = (timeout_ms % 1000) * 1000000;
        }
        timerfd_settime(a->http_timer.fd, 0, &its, NULL);
        return 0;
}

int http_init(struct agent *a, struct drv_error *err)
{
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0)
                return drv_err(err, EIO, "curl_global_init failed");
        CURLM *multi = curl_multi_init();
        a->http = multi;
        if (!multi)
                return drv_err(err, ENOMEM, "curl_multi_init failed");
        a->http_timer.type = W_HTTP_TIMER;
        a->http_timer.fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
        if (a->http_timer.fd < 0)
                return drv_err_errno(err, "timerfd_create");
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &a->http_timer};
        if (epoll_ctl(a->epfd, EPOLL_CTL_ADD, a->http_timer.fd, &ev) < 0)
                return drv_err_errno(err, "epoll_ctl");
        curl_multi_setopt(multi, CURLMOPT_SOCKETFUNCTION, on_socket);
        curl_multi_setopt(multi, CURLMOPT_SOCKETDATA, a);
        curl_multi_setopt(multi, CURLMOPT_TIMERFUNCTION, on_timer);
        curl_multi_setopt(multi, CURLMOPT_TIMERDATA, a);
        curl_multi_setopt(multi, CURLMOPT_MAX_HOST_CONNECTIONS, 8L);
        return 0;
}

static void req_free(struct http_req *r)
{
        if (r && r->impl) {
                curl_easy_cleanup(r->impl->easy);
                curl_slist_free_all(r->impl->hdrs);
        }
        http_req_free(r);
}

void http_cleanup(struct agent *a)
{
        if (a->http) {
                curl_multi_cleanup(a->http);
                a->http = NULL;
        }
        if (a->http_timer.fd >= 0)
                close(a->http_timer.fd);
        a->http_timer.fd = -1;
        curl_global_cleanup();
}

static int add_header(void *ctx, const char *line)
{
        struct curl_slist **l = ctx, *n = curl_slist_append(*l, line);
        if (!n)
                return -ENOMEM;
        *l = n;
        return 0;
}

struct http_req *http_post(struct agent *a, const char *path, char *body_take, long timeout_ms,
                           http_done_fn done, void *data)
{
        _cleanup_free_ char *url = NULL;
        struct http_req *r =
            http_req_new(a, path, body_take, sizeof(struct http_impl), done, data, &url);
        if (!r)
                return NULL;
        struct http_impl *im = r->impl;
        if (!(im->easy = curl_easy_init()) || add_header(&im->hdrs, "Expect:") < 0 ||
            http_req_headers(a, path, add_header, &im->hdrs) < 0) {
                req_free(r);
                return NULL;
        }
        CURL *e = im->easy;
        curl_easy_setopt(e, CURLOPT_URL, url);
        curl_easy_setopt(e, CURLOPT_HTTPHEADER, im->hdrs);
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, http_req_body(r));
        curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
        curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
        curl_easy_setopt(e, CURLOPT_PRIVATE, r);
        curl_easy_setopt(e, CURLOPT_ERRORBUFFER, im->errbuf);
        curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
        /* A request ended (timeout, abort, drain) while its name is still being resolved: without
         * this libcurl joins its resolver thread, i.e. blocks the loop for the resolver's whole
         * timeout when the DNS server is dead; with it the thread is left to finish alone. */
#if LIBCURL_VERSION_NUM >= 0x075700 /* 7.87.0 */
        curl_easy_setopt(e, CURLOPT_QUICK_EXIT, 1L);
#endif
        curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, timeout_ms);
        curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)HTTP_CONNECT_TIMEOUT_MS);
        curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "https,http");
        if (a->cfg.tls_ca && a->cfg.tls_ca[0])
                curl_easy_setopt(e, CURLOPT_CAINFO, a->cfg.tls_ca);
        if (a->cfg.tls_cert && a->cfg.tls_cert[0])
                curl_easy_setopt(e, CURLOPT_SSLCERT, a->cfg.tls_cert);
        if (a->cfg.tls_key && a->cfg.tls_key[0])
                curl_easy_setopt(e, CURLOPT_SSLKEY, a->cfg.tls_key);
        if (a->cfg.tls_proxy_ca && a->cfg.tls_proxy_ca[0]) /* an https:// proxy's CA */
                curl_easy_setopt(e, CURLOPT_PROXY_CAINFO, a->cfg.tls_proxy_ca);
        if (curl_multi_add_handle(a->http, e) != CURLM_OK) {
                req_free(r);
                return NULL;
        }
        return r;
}

void http_abort(struct agent *a, struct http_req *r)
{
        if (!r)
                return;
        curl_multi_remove_handle(a->http, r->impl->easy);
        req_free(r);
}

json_t *http_json(struct http_req *r)
{
        if (!r->resp.len)
                return NULL;
        return json_loadb(r->resp.buf, r->resp.len, 0, NULL);
}

/* Our certificate was refused: the server says so with a TLS alert, as OpenSSL words it in
 * libcurl's message ("tlsv13 alert certificate required", "tlsv1 alert unknown ca"), or — the
 * alert lost to a reset, libcurl then says e.g. "getpeername() failed" — the server ended a new
 * connection after the handshake, before any response: with TLS 1.3 a server checks a client
 * certificate only once the client finished its handshake (docs/protocol-control-plane.md:
 * without a valid one the connection is refused). */
static bool client_refused(CURL *easy, const char *errbuf)
{
        static const char *const alerts[] = {
            "alert certificate required",    "alert unknown ca",
            "alert bad certificate",         "alert certificate expired",
            "alert certificate revoked",     "alert certificate unknown",
            "alert unsupported certificate", "alert access denied"};
        for (size_t i = 0; i < sizeof(alerts) / sizeof(alerts[0]); i++)
                if (strstr(errbuf, alerts[i]))
                        return true;
        curl_off_t tls_done = 0;
        long conns = 0, status = 0;
        curl_easy_getinfo(easy, CURLINFO_APPCONNECT_TIME_T, &tls_done);
        curl_easy_getinfo(easy, CURLINFO_NUM_CONNECTS, &conns);
        curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
        return tls_done > 0 && conns > 0 && status == 0;
}

enum netfail netfail_of_curl(void *easy, int rc, const char *errbuf)
{
        long verify = 0;
        switch ((CURLcode)rc) {
        case CURLE_OK:
                return NETFAIL_NONE;
        case CURLE_COULDNT_RESOLVE_HOST:
                return NETFAIL_RESOLVE;
        case CURLE_COULDNT_RESOLVE_PROXY:
        case CURLE_PROXY:
                return NETFAIL_PROXY;
        case CURLE_COULDNT_CONNECT:
                return NETFAIL_CONNECT;
        case CURLE_OPERATION_TIMEDOUT:
                return NETFAIL_TIMEOUT;
        case CURLE_PEER_FAILED_VERIFICATION:
                /* OpenSSL's verify result (X509_V_ERR_*) for the chain; libcurl checks the host
                 * name itself and says so ("... matches target host name '...'") */
                curl_easy_getinfo(easy, CURLINFO_SSL_VERIFYRESULT, &verify);
                return netfail_of_verify(
                    false, verify == 9 || verify == 10 /* not yet valid, expired */,
                    verify == 62 /* hostname mismatch */ || strstr(errbuf, "target host name"));
        case CURLE_SSL_CACERT_BADFILE:
                return NETFAIL_UNTRUSTED;
        case CURLE_SSL_CONNECT_ERROR:
        case CURLE_SSL_CERTPROBLEM:
                return client_refused(easy, errbuf) ? NETFAIL_CLIENT_REFUSED : NETFAIL_HANDSHAKE;
        case CURLE_RECV_ERROR:
        case CURLE_SEND_ERROR:
        case CURLE_GOT_NOTHING:
                return client_refused(easy, errbuf) ? NETFAIL_CLIENT_REFUSED : NETFAIL_CLOSED;
        default:
                return NETFAIL_OTHER;
        }
}

static int http_rc_of(CURLcode rc)
{
        switch (rc) {
        case CURLE_OK:
                return HTTP_OK;
        case CURLE_COULDNT_RESOLVE_HOST:
        case CURLE_COULDNT_RESOLVE_PROXY:
        case CURLE_COULDNT_CONNECT:
        case CURLE_PROXY:
        case CURLE_SEND_ERROR:
        case CURLE_RECV_ERROR:
        case CURLE_GOT_NOTHING:
                return HTTP_E_CONNECT;
        case CURLE_SSL_CONNECT_ERROR:
        case CURLE_PEER_FAILED_VERIFICATION:
        case CURLE_SSL_CERTPROBLEM:
        case CURLE_SSL_CACERT_BADFILE:
                return HTTP_E_TLS;
        case CURLE_OPERATION_TIMEDOUT:
                return HTTP_E_TIMEOUT;
        case CURLE_WRITE_ERROR:
        case CURLE_WEIRD_SERVER_REPLY:
                return HTTP_E_PROTOCOL;
        default:
                return HTTP_E_OTHER;
        }
}

void http_drive(struct agent *a, int fd, uint32_t events)
{
        int running = 0, mask = 0;
        if (fd == HTTP_TIMER_FD) {
                fd = CURL_SOCKET_TIMEOUT;
                uint64_t x;
                (void)!read(a->http_timer.fd, &x, sizeof(x));
        } else {
                if (events & EPOLLIN)
                        mask |= CURL_CSELECT_IN;
                if (events & EPOLLOUT)
                        mask |= CURL_CSELECT_OUT;
                if (events & (EPOLLERR | EPOLLHUP))
                        mask |= CURL_CSELECT_ERR;
        }
        curl_multi_socket_action(a->http, fd, mask, &running);
        CURLMsg *msg;
        int left;
        while ((msg = curl_multi_info_read(a->http, &left))) {
                if (msg->msg != CURLMSG_DONE)
                        continue;
                CURL *e = msg->easy_handle;
                CURLcode rc = msg->data.result;
                struct http_req *r = NULL;
                long status = 0;
                curl_easy_getinfo(e, CURLINFO_PRIVATE, (char **)&r);
                curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
                curl_multi_remove_handle(a->http, e);
                if (rc != CURLE_OK) {
                        snprintf(r->error, sizeof(r->error), "%s",
                                 r->impl->errbuf[0] ? r->impl->errbuf : curl_easy_strerror(rc));
                        r->fail = netfail_of_curl(e, rc, r->error);
                }
                if (r->done)
                        r->done(a, r, http_rc_of(rc), status);
                req_free(r);
        }
}

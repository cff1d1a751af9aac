/* docker_attach.c: an exec started attached — POST /exec/{id}/start upgraded to a raw TCP stream
 * (stdin in, output out) on the client's own connection, for interactive SSH sessions. */
#include "executor/docker/docker_int.h"

#include <poll.h>
#include <sys/socket.h>

static int wait_sock(struct docker *d, short events, int timeout_ms)
{
        int fd = docker_attach_fd(d);
        if (fd < 0)
                return -EBADF;
        struct pollfd p = {fd, events, 0};
        int n = DRV_RETRY(poll(&p, 1, timeout_ms));
        return n < 0 ? -errno : n == 0 ? -ETIMEDOUT : 0;
}

ssize_t docker_attach_send_some(struct docker *d, const void *buf, size_t n)
{
        size_t sent = 0;
        CURLcode c = curl_easy_send(d->curl, buf, n, &sent);
        if (c == CURLE_AGAIN)
                return -EAGAIN;
        if (c != CURLE_OK)
                return -EPIPE;
        return (ssize_t)sent;
}

int docker_attach_send(struct docker *d, const void *buf, size_t n)
{
        const char *p = buf;
        while (n > 0) {
                ssize_t sent = docker_attach_send_some(d, p, n);
                if (sent == -EAGAIN) {
                        int r = wait_sock(d, POLLOUT, 30000);
                        if (r < 0)
                                return r;
                        continue;
                }
                if (sent < 0)
                        return (int)sent;
                p += sent;
                n -= (size_t)sent;
        }
        return 0;
}

ssize_t docker_attach_recv(struct docker *d, void *buf, size_t n)
{
        size_t got = 0;
        CURLcode c = curl_easy_recv(d->curl, buf, n, &got);
        if (c == CURLE_AGAIN)
                return -EAGAIN;
        if (c != CURLE_OK)
                return -EIO;
        return (ssize_t)got; /* 0: the engine closed the stream */
}

int docker_attach_fd(struct docker *d)
{
        curl_socket_t s = CURL_SOCKET_BAD;
        if (curl_easy_getinfo(d->curl, CURLINFO_ACTIVESOCKET, &s) != CURLE_OK ||
            s == CURL_SOCKET_BAD)
                return -1;
        return (int)s;
}

void docker_attach_close_write(struct docker *d)
{
        int fd = docker_attach_fd(d);
        if (fd >= 0)
                shutdown(fd, SHUT_WR); /* the engine reads EOF: stdin ends */
}

int docker_raw_connect(struct docker *d, struct drv_error *err)
{
        CURL *c = d->curl;
        curl_easy_reset(c);
        _cleanup_free_ char *url = drv_asprintf("%s/", d->base);
        if (!url)
                return drv_err(err, ENOMEM, "out of memory");
        curl_easy_setopt(c, CURLOPT_URL, url);
        curl_easy_setopt(c, CURLOPT_CONNECT_ONLY, 1L);
        docker_curl_endpoint(d, c);
        d->errbuf[0] = 0;
        CURLcode cc = curl_easy_perform(c);
        if (cc != CURLE_OK)
                return drv_err(err, EHOSTUNREACH, "docker %s: connect: %s", d->host,
                               d->errbuf[0] ? d->errbuf : curl_easy_strerror(cc));
        return 0;
}

int docker_attach_start(struct docker *d, const char *exec_id, bool tty, struct strbuf *early,
                        struct drv_error *err)
{
        int r = docker_raw_connect(d, err);
        if (r < 0)
                return drv_err_prefix(err, "attach");
        char body[64];
        snprintf(body, sizeof(body), "{\"Detach\":false,\"Tty\":%s}", tty ? "true" : "false");
        _cleanup_free_ char *req = drv_asprintf(
            "POST /v%s/exec/%s/start HTTP/1.1\r\nHost: docker\r\nContent-Type: application/json\r\n"
            "Connection: Upgrade\r\nUpgrade: tcp\r\nContent-Length: %zu\r\n\r\n%s",
            d->api, exec_id, strlen(body), body);
        if (!req)
                return drv_err(err, ENOMEM, "out of memory");
        if (docker_attach_send(d, req, strlen(req)) < 0)
                return drv_err(err, EPIPE, "docker %s: attach: cannot send the request", d->host);
        /* the answer's head; what follows it is already the stream */
        _cleanup_strbuf_ struct strbuf head = STRBUF_INIT;
        char buf[4096];
        uint64_t deadline = drv_now_ns() + 30ULL * 1000000000ULL;
        const char *end = NULL;
        while (!end) {
                ssize_t n = docker_attach_recv(d, buf, sizeof(buf));
                if (n == -EAGAIN) {
                        if (drv_now_ns() > deadline || wait_sock(d, POLLIN, 1000) == -EBADF)
                                return drv_err(err, ETIMEDOUT, "docker %s: attach: no answer",
                                               d->host);
                        continue;
                }
                if (n <= 0 || strbuf_append(&head, buf, (size_t)n) < 0 || head.len > 65536)
                        return drv_err(err, EPROTO, "docker %s: attach: bad answer", d->host);
                end = memmem(head.buf, head.len, "\r\n\r\n", 4);
        }
        int status = 0;
        if (sscanf(head.buf, "HTTP/1.%*d %d", &status) != 1 || (status != 101 && status != 200)) {
                size_t hl = (size_t)(end - head.buf);
                return drv_err(err, EPROTO, "docker %s: POST /exec/%.12s/start: %.*s", d->host,
                               exec_id, (int)(hl < 200 ? hl : 200), head.buf);
        }
        size_t off = (size_t)(end - head.buf) + 4;
        if (off < head.len && strbuf_append(early, head.buf + off, head.len - off) < 0)
                return drv_err(err, ENOMEM, "out of memory");
        return 0;
}

/* docker_proxy_conn.c: one connection of a job to its Docker API proxy. Each request's head (and
 * a JSON body the rules read) is parsed and judged, sent to the engine, its body streamed exactly
 * as far as its framing says (Content-Length or chunked: bytes after it are never forwarded as
 * part of it), then the engine's answer is relayed as far as its own framing says. Connections
 * are kept alive both ways (HTTP/1.1): the next request on the client's connection is read,
 * parsed and judged like the first, and goes to the engine on the same TLS connection (and the
 * look-ups on one of their own), so a CLI command costs one fork and two TLS handshakes, not
 * one of each per request. Anything not framed exactly (an answer until close, an early answer
 * to an unsent body, a proxy refusal) ends the connection. Attach and exec start are hijacked:
 * after the head both ways are raw (stdin and the output stream). */
#include "executor/docker/docker_proxy_int.h"

#include <poll.h>
#include <sys/socket.h>

#define HEAD_MAX  (64u << 10)
#define BUF_SIZE  (64u << 10)
#define RHEAD_MAX 8192  /* an engine answer's head larger than this: relayed until close */
#define IDLE_MS   30000 /* a kept-alive client connection idle for so long is closed */

struct head {
        char *method, *target;
        const char *ver; /* "/v1.41" or "" */
        char *path, *query;
        struct strbuf keep; /* header lines passed on */
        int64_t clen;       /* -1: none */
        bool chunked;
        bool close; /* the client's last request on this connection (HTTP/1.0, Connection: close) */
};

/* How much of what the client sends belongs to the request (the rest is never forwarded). */
struct track {
        enum { T_NONE, T_LEN, T_CHUNK, T_ALL } mode;
        uint64_t left;
        enum { CS_SIZE, CS_EXT, CS_DATA, CS_DATA_END, CS_TR_START, CS_TR_LINE } cs;
        bool done, bad, then_all; /* then_all: hijacked, raw after the body */
};

static void track_finish(struct track *t)
{
        t->done = true;
        if (t->then_all) {
                t->mode = T_ALL;
                t->done = false;
        }
}

static size_t chunk_feed(struct track *t, const char *p, size_t n)
{
        size_t i = 0;
        while (i < n && !t->done && !t->bad) {
                if (t->cs == CS_DATA) {
                        size_t k = n - i < t->left ? n - i : (size_t)t->left;
                        i += k;
                        if ((t->left -= k) == 0)
                                t->cs = CS_DATA_END;
                        continue;
                }
                char c = p[i++];
                int hex = c >= '0' && c <= '9'   ? c - '0'
                          : c >= 'a' && c <= 'f' ? c - 'a' + 10
                          : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                                 : -1;
                if (t->cs == CS_SIZE && hex >= 0) {
                        t->left = t->left * 16 + (uint64_t)hex;
                        t->bad = t->left > (1ULL << 40);
                } else if ((t->cs == CS_SIZE || t->cs == CS_EXT) && c == '\n') {
                        t->cs = t->left ? CS_DATA : CS_TR_START;
                } else if (t->cs == CS_SIZE && c == ';') {
                        t->cs = CS_EXT;
                } else if (t->cs == CS_DATA_END && c == '\n') {
                        t->cs = CS_SIZE;
                } else if (t->cs == CS_TR_START && c == '\n') {
                        track_finish(t);
                } else if (t->cs == CS_TR_START && c != '\r') {
                        t->cs = CS_TR_LINE;
                } else if (t->cs == CS_TR_LINE && c == '\n') {
                        t->cs = CS_TR_START;
                } else if (c != '\r' && t->cs != CS_EXT && t->cs != CS_TR_LINE) {
                        t->bad = true;
                }
        }
        return i;
}

/* How many of n bytes from the client go to the engine. */
static size_t track_feed(struct track *t, const char *p, size_t n)
{
        if (t->mode == T_ALL)
                return n;
        if (t->done || t->mode == T_NONE)
                return 0;
        size_t k;
        if (t->mode == T_CHUNK) {
                k = chunk_feed(t, p, n);
        } else {
                k = n < t->left ? n : (size_t)t->left;
                if ((t->left -= k) == 0)
                        track_finish(t);
        }
        return t->mode == T_ALL ? n : k; /* hijacked: what follows the body is the stream */
}

/* The engine's answer: its head is read as it passes, then its body tracked with the request's
 * grammar. done: the answer ended where its framing says; keep: the engine connection may carry
 * the next request. */
struct rtrack {
        bool head_req; /* the request was HEAD: no body whatever the head says */
        bool head_done, done, keep, until_close;
        char hbuf[RHEAD_MAX];
        size_t hlen;
        struct track body;
};

static void rtrack_head(struct rtrack *rt)
{
        int status = 0, minor = 0;
        rt->hbuf[rt->hlen] = '\0';
        if (sscanf(rt->hbuf, "HTTP/1.%d %d", &minor, &status) != 2) {
                rt->until_close = true;
                return;
        }
        int64_t clen = -1;
        bool chunked = false, close_it = minor == 0;
        for (char *l = strstr(rt->hbuf, "\r\n"); l; l = strstr(l + 2, "\r\n")) {
                char h[256];
                snprintf(h, sizeof(h), "%.*s", (int)strcspn(l + 2, "\r\n"), l + 2);
                const char *v = strchr(h, ':');
                v = v ? v + 1 + strspn(v + 1, " \t") : "";
                uint64_t u;
                if (strncasecmp(h, "content-length:", 15) == 0) {
                        if (clen >= 0 || drv_parse_u64(v, &u) < 0 || u > INT64_MAX)
                                close_it = true;
                        else
                                clen = (int64_t)u;
                } else if (strncasecmp(h, "transfer-encoding:", 18) == 0) {
                        chunked = true;
                        close_it |= strcasecmp(v, "chunked") != 0;
                } else if (strncasecmp(h, "connection:", 11) == 0) {
                        close_it |= strcasestr(v, "close") != NULL;
                }
        }
        rt->head_done = true;
        rt->body = (struct track){.mode = T_NONE};
        if (rt->head_req || (status >= 100 && status < 200 && status != 101) || status == 204 ||
            status == 304) {
                rt->done = true;
        } else if (status == 101 || (chunked && clen >= 0) || (!chunked && clen < 0)) {
                rt->until_close = true;
        } else if (chunked) {
                rt->body.mode = T_CHUNK;
        } else if (clen == 0) {
                rt->done = true;
        } else {
                rt->body.mode = T_LEN;
                rt->body.left = (uint64_t)clen;
        }
        rt->keep = !rt->until_close && !close_it;
}

/* How many of n bytes from the engine belong to the answer (the rest: not reusable). */
static size_t rtrack_feed(struct rtrack *rt, const char *p, size_t n)
{
        if (rt->until_close)
                return n;
        size_t used = 0;
        if (!rt->head_done) {
                size_t room = sizeof(rt->hbuf) - 1 - rt->hlen, k = n < room ? n : room;
                size_t before = rt->hlen;
                memcpy(rt->hbuf + rt->hlen, p, k);
                rt->hlen += k;
                char *end = memmem(rt->hbuf, rt->hlen, "\r\n\r\n", 4);
                if (!end) {
                        rt->until_close = rt->hlen == sizeof(rt->hbuf) - 1;
                        return rt->until_close ? n : k;
                }
                used = (size_t)(end - rt->hbuf) + 4 - before;
                rt->hlen = (size_t)(end - rt->hbuf) + 2; /* keep the last header's CRLF */
                rtrack_head(rt);
                if (rt->until_close)
                        return n;
        }
        if (!rt->done && used < n) {
                used += track_feed(&rt->body, p + used, n - used);
                rt->done = rt->body.done;
                if (rt->body.bad)
                        rt->keep = false, rt->until_close = true;
        }
        if (used < n)
                rt->keep = false; /* bytes past the answer: never carry a request again */
        return rt->until_close ? n : used;
}

static void answer(int cfd, int status, const char *msg)
{
        json_t *j = json_pack("{s:s}", "message", msg);
        _cleanup_free_ char *body = j ? json_dumps(j, JSON_COMPACT) : NULL;
        json_decref(j);
        const char *reason = status == 403 ? "Forbidden" : status == 404 ? "Not Found" : "Error";
        _cleanup_free_ char *resp = drv_asprintf(
            "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
            "Connection: close\r\n\r\n%s\n",
            status, reason, body ? strlen(body) + 1 : 0, body ? body : "");
        if (resp)
                (void)drv_write_all(cfd, resp, strlen(resp));
}

static int read_more(int cfd, struct strbuf *in, int timeout_ms)
{
        char buf[16384];
        struct pollfd p = {cfd, POLLIN, 0};
        if (DRV_RETRY(poll(&p, 1, timeout_ms)) <= 0)
                return -ETIMEDOUT;
        ssize_t n = DRV_RETRY(recv(cfd, buf, sizeof(buf), 0));
        if (n <= 0)
                return n < 0 ? -errno : -ECONNRESET;
        return strbuf_append(in, buf, (size_t)n);
}

/* Path characters the engine's router sees exactly as we do: no escapes, no dot segments. */
static bool path_ok(const char *p)
{
        if (p[0] != '/' || strstr(p, "//") || strstr(p, "/./") || strstr(p, "/../") ||
            drv_endswith(p, "/.") || drv_endswith(p, "/.."))
                return false;
        return strspn(p, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/_.:@-") ==
               strlen(p);
}

static bool hop_header(const char *line)
{
        static const char *const names[] = {"host:",
                                            "connection:",
                                            "upgrade:",
                                            "keep-alive:",
                                            "content-length:",
                                            "transfer-encoding:",
                                            "te:",
                                            "trailer:",
                                            "expect:",
                                            "proxy-connection:",
                                            "proxy-authorization:"};
        for (size_t i = 0; i < DRV_ARRAY_SIZE(names); i++)
                if (strncasecmp(line, names[i], strlen(names[i])) == 0)
                        return true;
        return false;
}

/* Parse the head in buf (NUL-terminated at its blank line); 0 or -EINVAL. */
static int parse_head(char *buf, struct head *h)
{
        char *save = NULL, *line = strtok_r(buf, "\r\n", &save);
        if (!line)
                return -EINVAL;
        char *sp1 = strchr(line, ' '), *sp2 = sp1 ? strchr(sp1 + 1, ' ') : NULL;
        if (!sp1 || !sp2 || !drv_startswith(sp2 + 1, "HTTP/1."))
                return -EINVAL;
        *sp1 = *sp2 = 0;
        h->method = line;
        h->target = sp1 + 1;
        h->clen = -1;
        h->close = strcmp(sp2 + 1, "HTTP/1.1") != 0;
        while ((line = strtok_r(NULL, "\r\n", &save))) {
                if (strncasecmp(line, "connection:", 11) == 0 && strcasestr(line + 11, "close"))
                        h->close = true;
                if (strncasecmp(line, "content-length:", 15) == 0) {
                        uint64_t v;
                        const char *s = line + 15 + strspn(line + 15, " \t");
                        if (drv_parse_u64(s, &v) < 0 || v > INT64_MAX)
                                return -EINVAL;
                        h->clen = (int64_t)v;
                } else if (strncasecmp(line, "transfer-encoding:", 18) == 0) {
                        if (!strcasestr(line + 18, "chunked"))
                                return -EINVAL;
                        h->chunked = true;
                }
                if (!strchr(line, ':'))
                        return -EINVAL;
                if (!hop_header(line) &&
                    (strbuf_puts(&h->keep, line) < 0 || strbuf_puts(&h->keep, "\r\n") < 0))
                        return -ENOMEM;
        }
        if (h->chunked && h->clen >= 0)
                return -EINVAL; /* request smuggling's favourite */
        /* /vX.Y prefix, path, query */
        char *q = strchr(h->target, '?');
        h->query = q ? q + 1 : (char *)"";
        if (q)
                *q = 0;
        h->path = h->target;
        h->ver = "";
        unsigned maj, min;
        int used = 0;
        if (sscanf(h->target, "/v%u.%u%n", &maj, &min, &used) == 2 && h->target[used] == '/') {
                static char ver[24];
                snprintf(ver, sizeof(ver), "/v%u.%u", maj, min);
                h->ver = ver;
                h->path = h->target + used;
        }
        return path_ok(h->path) ? 0 : -EINVAL;
}

struct relay {
        int cfd;
        struct docker *raw;
        char up[BUF_SIZE], down[BUF_SIZE];
        size_t up_off, up_len, down_off, down_len;
        bool c_eof, e_eof, up_shut;
        struct rtrack rt;
        struct strbuf *next; /* client bytes past the request: the next request's */
};

/* Move what can move now; true when anything moved. -EPIPE when the client is gone. */
static int relay_step(struct relay *r, struct track *t)
{
        bool moved = false;
        if (!r->e_eof && r->down_len == 0) {
                ssize_t n = docker_attach_recv(r->raw, r->down, sizeof(r->down));
                if (n != -EAGAIN) {
                        r->e_eof = n <= 0;
                        r->down_off = 0;
                        r->down_len = n > 0 ? rtrack_feed(&r->rt, r->down, (size_t)n) : 0;
                        moved = true;
                }
        }
        if (r->down_len) {
                ssize_t w =
                    send(r->cfd, r->down + r->down_off, r->down_len, MSG_NOSIGNAL | MSG_DONTWAIT);
                if (w < 0 && errno != EAGAIN && errno != EINTR)
                        return -EPIPE;
                if (w > 0) {
                        r->down_off += (size_t)w;
                        r->down_len -= (size_t)w;
                        moved = true;
                }
        }
        if (r->up_len) {
                ssize_t s = docker_attach_send_some(r->raw, r->up + r->up_off, r->up_len);
                if (s == -EPIPE)
                        return -EPIPE;
                if (s > 0) {
                        r->up_off += (size_t)s;
                        r->up_len -= (size_t)s;
                        moved = true;
                }
        }
        if (!r->c_eof && r->up_len == 0) {
                ssize_t n = recv(r->cfd, r->up, sizeof(r->up), MSG_DONTWAIT);
                if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
                        r->c_eof = true;
                        moved = true;
                } else if (n > 0) {
                        r->up_off = 0;
                        r->up_len = track_feed(t, r->up, (size_t)n);
                        r->c_eof = t->done || t->bad;
                        if (r->up_len < (size_t)n && t->done && !t->bad && r->next &&
                            strbuf_append(r->next, r->up + r->up_len, (size_t)n - r->up_len) < 0)
                                return -EPIPE;
                        moved = true;
                }
        }
        if (r->c_eof && r->up_len == 0 && !r->up_shut && t->mode == T_ALL) {
                docker_attach_close_write(r->raw); /* stdin ended */
                r->up_shut = true;
        }
        return moved;
}

static void relay(struct relay *r, struct track *t)
{
        for (;;) {
                int m = relay_step(r, t);
                if (m < 0 || (r->e_eof && r->down_len == 0))
                        return;
                if (r->rt.done && r->down_len == 0 && t->mode != T_ALL)
                        return; /* the answer ended where its framing says */
                if (m > 0)
                        continue;
                int efd = docker_attach_fd(r->raw);
                bool hijacked = t->mode == T_ALL;
                struct pollfd p[2] = {{r->cfd, 0, 0}, {efd, 0, 0}};
                if (!r->c_eof && r->up_len == 0)
                        p[0].events |= POLLIN;
                if (r->down_len)
                        p[0].events |= POLLOUT;
                if (r->c_eof && !hijacked)
                        p[0].events |= POLLRDHUP; /* a client that hangs up on logs -f, wait */
                if (!r->e_eof && r->down_len == 0)
                        p[1].events |= POLLIN;
                if (r->up_len)
                        p[1].events |= POLLOUT;
                if (!p[1].events)
                        p[1].fd = -1;
                if (DRV_RETRY(poll(p, 2, -1)) < 0)
                        return;
                if ((p[0].revents & (POLLHUP | POLLERR)) ||
                    (!hijacked && (p[0].revents & POLLRDHUP)))
                        return; /* the client is gone */
        }
}

/* The engine connection kept from the last request, if it is still good: nothing to read on it
 * (an idle engine that closed it, or bytes no request asked for, make a new one). */
static struct docker *kept_raw(struct docker **kept)
{
        struct docker *raw = *kept;
        *kept = NULL;
        if (!raw)
                return NULL;
        struct pollfd p = {docker_attach_fd(raw), POLLIN, 0};
        if (p.fd >= 0 && DRV_RETRY(poll(&p, 1, 0)) == 0)
                return raw;
        docker_close(raw);
        return NULL;
}

/* Send the judged request's head (and JSON body) to the engine on *kept (or a new connection);
 * then relay. in: the client's bytes after the head; what is left of it after the request is
 * the next request's. True when both connections can carry the next request (then *kept holds
 * the engine's). */
static bool forward(const struct dproxy *px, struct docker *d, int cfd, struct head *h,
                    struct dproxy_req *rq, struct strbuf *in, struct docker **kept)
{
        _cleanup_free_ char *body =
            rq->body && rq->body_changed ? json_dumps(rq->body, JSON_COMPACT) : NULL;
        _cleanup_strbuf_ struct strbuf sb = STRBUF_INIT;
        const char *target = rq->target ? rq->target : NULL;
        int r = target ? strbuf_printf(&sb, "%s %s%s HTTP/1.1\r\n", h->method, h->ver, target)
                       : strbuf_printf(&sb, "%s %s%s%s%s HTTP/1.1\r\n", h->method, h->ver, h->path,
                                       h->query[0] ? "?" : "", h->query);
        r = r ?: strbuf_printf(&sb, "Host: docker\r\n%s", h->keep.buf ? h->keep.buf : "");
        struct track t = {.then_all = rq->hijack};
        if (body) {
                r = r ?: strbuf_printf(&sb, "Content-Length: %zu\r\n", strlen(body));
                t.mode = T_NONE;
        } else if (h->chunked) {
                r = r ?: strbuf_puts(&sb, "Transfer-Encoding: chunked\r\n");
                t.mode = T_CHUNK;
        } else if (h->clen >= 0) {
                r = r ?: strbuf_printf(&sb, "Content-Length: %lld\r\n", (long long)h->clen);
                t.mode = h->clen ? T_LEN : T_NONE;
                t.left = (uint64_t)h->clen;
        }
        if (t.mode == T_NONE)
                track_finish(&t);
        /* HTTP/1.1: kept alive unless hijacked */
        r = r
                ?: strbuf_puts(&sb,
                               rq->hijack ? "Connection: Upgrade\r\nUpgrade: tcp\r\n\r\n" : "\r\n");
        r = r ?: (body ? strbuf_puts(&sb, body) : 0);
        if (in->len > BUF_SIZE) { /* never: heads are read 16 KiB at a time, keeps bounded */
                answer(cfd, 400, "drover: bad request");
                return false;
        }
        struct docker *raw = rq->hijack ? NULL : kept_raw(kept);
        struct drv_error e = {0};
        if (r == 0 && raw && docker_attach_send(raw, sb.buf, sb.len) < 0) {
                docker_close(raw); /* gone since the check: a new one */
                raw = NULL;
        }
        if (r < 0 || (!raw && (docker_dup(d, &raw, &e) < 0 || docker_raw_connect(raw, &e) < 0 ||
                               docker_attach_send(raw, sb.buf, sb.len) < 0))) {
                answer(cfd, 502, e.message[0] ? e.message : "drover: the engine cannot be reached");
                docker_close(raw);
                return false;
        }
        _cleanup_free_ struct relay *rl = calloc(1, sizeof(*rl));
        bool keep = false;
        if (rl) {
                rl->cfd = cfd;
                rl->raw = raw;
                rl->rt.head_req = strcmp(h->method, "HEAD") == 0;
                _cleanup_strbuf_ struct strbuf next = STRBUF_INIT;
                rl->next = &next;
                /* body bytes that came with the head (the JSON body was taken out of in) */
                if (!body && in->len) {
                        rl->up_len = track_feed(&t, in->buf, in->len);
                        memcpy(rl->up, in->buf, rl->up_len);
                        rl->c_eof = t.done || t.bad;
                } else {
                        rl->c_eof = t.done;
                }
                size_t rest = in->len - rl->up_len;
                memmove(in->buf, in->buf + rl->up_len, rest);
                in->len = rest;
                (void)drv_fd_nonblock(cfd, true);
                relay(rl, &t);
                (void)drv_fd_nonblock(cfd, false);
                keep = rl->rt.done && rl->rt.keep && t.done && !t.bad && t.mode != T_ALL &&
                       rl->up_len == 0 && rl->down_len == 0 && !rl->e_eof &&
                       (!next.len || strbuf_append(in, next.buf, next.len) == 0) &&
                       in->len <= BUF_SIZE / 2;
        }
        if (keep)
                *kept = raw;
        else
                docker_close(raw);
        if (rq->pulled)
                dproxy_record_pull(px, d, rq->pulled);
        return keep;
}

/* Judge the request whose head is parsed (in: the bytes after the head) and forward it; *d is the
 * connection for look-ups, *kept the engine connection for requests (both kept for the next
 * request). True when the client's connection can carry another request. */
static bool handle(const struct dproxy *px, int cfd, struct head *h, struct strbuf *in,
                   struct docker **d, struct docker **kept)
{
        struct dproxy_req rq = {.method = h->method, .path = h->path, .query = h->query};
        if (dproxy_wants_json(h->method, h->path)) {
                if (h->chunked || h->clen > (int64_t)DPROXY_JSON_MAX) {
                        answer(cfd, 400,
                               "drover: a JSON body needs a Content-Length "
                               "(at most 1 MiB)");
                        return false;
                }
                while (h->clen > 0 && in->len < (size_t)h->clen)
                        if (read_more(cfd, in, 60000) < 0)
                                return false;
                json_error_t je;
                rq.body = h->clen > 0 ? json_loadb(in->buf, (size_t)h->clen, 0, &je) : NULL;
                if (h->clen > 0 && !rq.body) {
                        answer(cfd, 400, "drover: the request's JSON cannot be read");
                        return false;
                }
                /* what follows the JSON body is the next request's */
                memmove(in->buf, in->buf + h->clen, in->len - (size_t)h->clen);
                in->len -= (size_t)h->clen;
                rq.body_changed = true; /* always re-encoded: what was judged is what is sent */
        }
        struct drv_error e = {0};
        int r = *d ? 0 : docker_from_conn(&px->conn, d, &e);
        r = r ?: dproxy_route(px, *d, &rq, &e);
        bool keep = false;
        if (r < 0)
                answer(cfd, 502, e.message);
        else if (r > 0)
                answer(cfd, rq.status, rq.msg);
        else
                keep = forward(px, *d, cfd, h, &rq, in, kept) && !h->close;
        if (r != 0)
                log_info("docker_proxy_refused", "label=%s method=%s path=%s status=%d msg=\"%s\"",
                         px->label, h->method, h->path, r < 0 ? 502 : rq.status,
                         r < 0 ? e.message : rq.msg);
        json_decref(rq.body);
        free(rq.target);
        free(rq.pulled);
        return keep;
}

/* One request from the client's connection (its bytes so far in in); true: read the next. */
static bool serve_one(const struct dproxy *px, int cfd, struct strbuf *in, int wait_ms,
                      struct docker **d, struct docker **kept)
{
        char *end = NULL;
        while (!(end = in->len ? memmem(in->buf, in->len, "\r\n\r\n", 4) : NULL))
                if (in->len > HEAD_MAX || read_more(cfd, in, wait_ms) < 0)
                        return false;
        size_t head_len = (size_t)(end - in->buf) + 4;
        _cleanup_free_ char *hbuf = strndup(in->buf, head_len - 2);
        if (!hbuf || memchr(in->buf, 0, head_len)) {
                answer(cfd, 400, "drover: bad request");
                return false;
        }
        memmove(in->buf, in->buf + head_len, in->len - head_len);
        in->len -= head_len;
        struct head h = {.keep = STRBUF_INIT};
        bool more = false;
        if (parse_head(hbuf, &h) < 0)
                answer(cfd, 400, "drover: the API proxy cannot read this request");
        else
                more = handle(px, cfd, &h, in, d, kept);
        strbuf_release(&h.keep);
        return more;
}

void dproxy_serve(const struct dproxy *px, int cfd)
{
        _cleanup_strbuf_ struct strbuf in = STRBUF_INIT;
        struct docker *d = NULL, *kept = NULL;
        for (int wait_ms = 60000; serve_one(px, cfd, &in, wait_ms, &d, &kept); wait_ms = IDLE_MS)
                ;
        docker_close(kept);
        docker_close(d);
}

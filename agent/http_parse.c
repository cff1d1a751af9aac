/* http_parse.c: incremental HTTP/1.1 response parser (see http_parse.h). */
#include "agent/http_parse.h"

#include <ctype.h>
#include <strings.h>

void http_parser_init(struct http_parser *p, struct strbuf *body, size_t max_body)
{
        memset(p, 0, sizeof(*p));
        p->line = (struct strbuf)STRBUF_INIT;
        p->body = body;
        p->max_body = max_body;
        p->state = HP_STATUS;
}

void http_parser_release(struct http_parser *p)
{
        strbuf_release(&p->line);
}

static ssize_t fail(struct http_parser *p, int e, const char *msg)
{
        snprintf(p->error, sizeof(p->error), "%s", msg);
        return -e;
}

static int parse_status(struct http_parser *p, const char *l)
{
        int minor;
        if (strncmp(l, "HTTP/1.", 7) != 0 || !isdigit((unsigned char)l[7]) || l[8] != ' ')
                return (int)fail(p, EPROTO, "malformed status line");
        minor = l[7] - '0';
        if (!isdigit((unsigned char)l[9]) || !isdigit((unsigned char)l[10]) ||
            !isdigit((unsigned char)l[11]) || (l[12] != ' ' && l[12] != 0))
                return (int)fail(p, EPROTO, "malformed status code");
        p->status = (l[9] - '0') * 100 + (l[10] - '0') * 10 + (l[11] - '0');
        if (p->status < 100)
                return (int)fail(p, EPROTO, "malformed status code");
        p->keep_alive = minor >= 1;
        p->chunked = p->has_len = false;
        p->remaining = 0;
        p->state = HP_HEADERS;
        return 0;
}

static bool token_in(const char *v, const char *tok)
{
        size_t n = strlen(tok);
        for (const char *s = v; *s;) {
                while (*s == ' ' || *s == '\t' || *s == ',')
                        s++;
                const char *e = s;
                while (*e && *e != ',')
                        e++;
                const char *t = e;
                while (t > s && (t[-1] == ' ' || t[-1] == '\t'))
                        t--;
                if ((size_t)(t - s) == n && strncasecmp(s, tok, n) == 0)
                        return true;
                s = e;
        }
        return false;
}

static int parse_header(struct http_parser *p, char *l)
{
        char *colon = strchr(l, ':');
        if (!colon || colon == l)
                return (int)fail(p, EPROTO, "malformed header line");
        *colon = 0;
        char *v = colon + 1;
        while (*v == ' ' || *v == '\t')
                v++;
        size_t vl = strlen(v);
        while (vl && (v[vl - 1] == ' ' || v[vl - 1] == '\t'))
                v[--vl] = 0;
        if (strcasecmp(l, "Content-Length") == 0) {
                uint64_t n;
                if (drv_parse_u64(v, &n) < 0)
                        return (int)fail(p, EPROTO, "bad Content-Length");
                if (p->has_len && n != p->remaining)
                        return (int)fail(p, EPROTO, "conflicting Content-Length");
                p->has_len = true;
                p->remaining = n;
        } else if (strcasecmp(l, "Transfer-Encoding") == 0) {
                if (!token_in(v, "chunked"))
                        return (int)fail(p, EPROTO, "unsupported Transfer-Encoding");
                p->chunked = true;
        } else if (strcasecmp(l, "Connection") == 0) {
                if (token_in(v, "close"))
                        p->keep_alive = false;
                else if (token_in(v, "keep-alive"))
                        p->keep_alive = true;
        }
        return 0;
}

/* End of the header block: choose how the body is framed. */
static int headers_done(struct http_parser *p)
{
        if (p->status < 200) { /* 1xx: an interim response, the real one follows */
                p->state = HP_STATUS;
                return 0;
        }
        if (p->status == 204 || p->status == 304) {
                p->state = HP_DONE;
                return 0;
        }
        if (p->chunked) {
                p->has_len = false;
                p->state = HP_CHUNK_SIZE;
        } else if (p->has_len) {
                if (p->remaining > p->max_body)
                        return (int)fail(p, EMSGSIZE, "response body too large");
                p->state = p->remaining ? HP_BODY_LEN : HP_DONE;
        } else {
                p->keep_alive = false;
                p->state = HP_BODY_EOF;
        }
        return 0;
}

static int parse_chunk_size(struct http_parser *p, const char *l)
{
        uint64_t n = 0;
        const char *s = l;
        if (!isxdigit((unsigned char)*s))
                return (int)fail(p, EPROTO, "malformed chunk size");
        for (; isxdigit((unsigned char)*s); s++) {
                if (n >> 60)
                        return (int)fail(p, EPROTO, "chunk size overflow");
                n = n * 16 +
                    (uint64_t)(isdigit((unsigned char)*s) ? *s - '0' : (tolower(*s) - 'a' + 10));
        }
        while (*s == ' ' || *s == '\t')
                s++;
        if (*s && *s != ';')
                return (int)fail(p, EPROTO, "malformed chunk size");
        if (n > p->max_body || p->body->len + n > p->max_body)
                return (int)fail(p, EMSGSIZE, "response body too large");
        p->remaining = n;
        p->state = n ? HP_CHUNK_DATA : HP_TRAILERS;
        return 0;
}

/* A complete line (without CRLF) in the current line state. */
static int on_line(struct http_parser *p)
{
        char *l = p->line.buf ? p->line.buf : (char *)"";
        int r = 0;
        switch (p->state) {
        case HP_STATUS:
                r = parse_status(p, l);
                break;
        case HP_HEADERS:
                r = l[0] ? parse_header(p, l) : headers_done(p);
                break;
        case HP_CHUNK_SIZE:
                r = parse_chunk_size(p, l);
                break;
        case HP_CHUNK_CRLF:
                if (l[0])
                        r = (int)fail(p, EPROTO, "missing CRLF after chunk");
                else
                        p->state = HP_CHUNK_SIZE;
                break;
        case HP_TRAILERS:
                if (!l[0])
                        p->state = HP_DONE;
                break;
        default:
                break;
        }
        strbuf_reset(&p->line);
        return r;
}

ssize_t http_parser_feed(struct http_parser *p, const char *buf, size_t n)
{
        size_t i = 0;
        while (i < n && p->state != HP_DONE) {
                if (p->state == HP_BODY_LEN || p->state == HP_CHUNK_DATA ||
                    p->state == HP_BODY_EOF) {
                        size_t k = n - i;
                        if (p->state != HP_BODY_EOF && k > p->remaining)
                                k = (size_t)p->remaining;
                        if (p->body->len + k > p->max_body)
                                return fail(p, EMSGSIZE, "response body too large");
                        if (strbuf_append(p->body, buf + i, k) < 0)
                                return fail(p, ENOMEM, "out of memory");
                        i += k;
                        if (p->state == HP_BODY_EOF)
                                continue;
                        p->remaining -= k;
                        if (!p->remaining)
                                p->state = p->state == HP_BODY_LEN ? HP_DONE : HP_CHUNK_CRLF;
                        continue;
                }
                /* line states: up to LF */
                const char *lf = memchr(buf + i, '\n', n - i);
                size_t k = lf ? (size_t)(lf - (buf + i)) : n - i;
                if (p->line.len + k > HTTP_PARSE_MAX_LINE)
                        return fail(p, EMSGSIZE, "response line too long");
                p->header_bytes += k + (lf ? 1 : 0);
                if (p->header_bytes > HTTP_PARSE_MAX_HEADERS)
                        return fail(p, EMSGSIZE, "response headers too large");
                if (k && strbuf_append(&p->line, buf + i, k) < 0)
                        return fail(p, ENOMEM, "out of memory");
                i += k;
                if (!lf)
                        break;
                i++; /* the LF */
                if (p->line.len && p->line.buf[p->line.len - 1] == '\r')
                        p->line.buf[--p->line.len] = 0;
                if (memchr(p->line.buf ? p->line.buf : "", 0, p->line.len))
                        return fail(p, EPROTO, "NUL in response line");
                int r = on_line(p);
                if (r < 0)
                        return r;
        }
        return (ssize_t)i;
}

int http_parser_eof(struct http_parser *p)
{
        if (p->state == HP_BODY_EOF) {
                p->state = HP_DONE;
                return 0;
        }
        if (p->state == HP_DONE)
                return 0;
        return (int)fail(p, EPROTO, "connection closed before the response was complete");
}

/* http_parse.h: incremental HTTP/1.1 response parser of the lean transport (http_lean.c):
 * status line, headers, body by Content-Length, chunked or until close; bounded. */
#pragma once

#include "lib/drv.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum http_parse_state {
        HP_STATUS,
        HP_HEADERS,
        HP_BODY_LEN,
        HP_CHUNK_SIZE,
        HP_CHUNK_DATA,
        HP_CHUNK_CRLF,
        HP_TRAILERS,
        HP_BODY_EOF,
        HP_DONE
};

#define HTTP_PARSE_MAX_LINE    8192
#define HTTP_PARSE_MAX_HEADERS 65536

struct http_parser {
        enum http_parse_state state;
        long status;
        bool keep_alive; /* the connection may carry the next request */
        bool chunked, has_len;
        uint64_t remaining; /* body or chunk bytes still due */
        size_t max_body;
        size_t header_bytes;
        struct strbuf line; /* the line being read */
        struct strbuf *body;
        char error[128];
};

/* Parse a response whose body goes to *body (at most max_body bytes). */
void http_parser_init(struct http_parser *p, struct strbuf *body, size_t max_body);
void http_parser_release(struct http_parser *p);
/* Feed n bytes. Returns how many were consumed (< n only once the response is complete:
 * state HP_DONE, the rest is not part of it), or -EPROTO/-EMSGSIZE/-ENOMEM with p->error. */
ssize_t http_parser_feed(struct http_parser *p, const char *buf, size_t n);
/* The peer closed the connection: 0 if that completes the response (body until close),
 * else -EPROTO (truncated). */
int http_parser_eof(struct http_parser *p);

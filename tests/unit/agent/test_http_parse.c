/* test_http_parse.c: the lean transport's HTTP/1.1 response parser (agent/http_parse.c):
 * Content-Length, chunked, until close, split reads, interim 1xx, oversized and malformed input. */
#include "agent/http_parse.h"
#include "testlib.h"

/* Feed text in pieces of `step` bytes (0: all at once). Returns the last feed result. */
static ssize_t feed(struct http_parser *p, const char *text, size_t step, size_t *consumed)
{
        size_t n = strlen(text), off = 0;
        ssize_t r = 0;
        *consumed = 0;
        while (off < n && p->state != HP_DONE) {
                size_t k = step && n - off > step ? step : n - off;
                r = http_parser_feed(p, text + off, k);
                if (r < 0)
                        return r;
                *consumed += (size_t)r;
                off += k;
        }
        return r;
}

static const char *CL = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                        "Content-Length: 11\r\n\r\n{\"a\": 1234}";
static const char *CHUNKED = "HTTP/1.1 201 Created\r\ntransfer-encoding: chunked\r\n\r\n"
                             "4\r\n{\"a\"\r\n7;ext=1\r\n: 1234}\r\n0\r\nX-Trailer: t\r\n\r\n";

TEST(content_length_every_split)
{
        for (size_t step = 0; step < 20; step++) {
                struct strbuf body = STRBUF_INIT;
                struct http_parser p;
                size_t used;
                http_parser_init(&p, &body, 1024);
                CHECK(feed(&p, CL, step, &used) >= 0);
                CHECK_INTEQ(p.state, HP_DONE);
                CHECK_INTEQ(p.status, 200);
                CHECK(p.keep_alive);
                CHECK_INTEQ(used, strlen(CL));
                CHECK_STREQ(body.buf, "{\"a\": 1234}");
                http_parser_release(&p);
                strbuf_release(&body);
        }
}

TEST(chunked_every_split)
{
        for (size_t step = 0; step < 20; step++) {
                struct strbuf body = STRBUF_INIT;
                struct http_parser p;
                size_t used;
                http_parser_init(&p, &body, 1024);
                CHECK(feed(&p, CHUNKED, step, &used) >= 0);
                CHECK_INTEQ(p.state, HP_DONE);
                CHECK_INTEQ(p.status, 201);
                CHECK_STREQ(body.buf, "{\"a\": 1234}");
                CHECK_INTEQ(used, strlen(CHUNKED));
                http_parser_release(&p);
                strbuf_release(&body);
        }
}

TEST(bytes_after_the_response_are_not_consumed)
{
        struct strbuf body = STRBUF_INIT;
        struct http_parser p;
        const char *t = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA";
        http_parser_init(&p, &body, 1024);
        CHECK_INTEQ(http_parser_feed(&p, t, strlen(t)), strlen(t) - 5);
        CHECK_INTEQ(p.state, HP_DONE);
        CHECK_STREQ(body.buf, "ok");
        http_parser_release(&p);
        strbuf_release(&body);
}

TEST(body_until_close_and_connection_close)
{
        struct strbuf body = STRBUF_INIT;
        struct http_parser p;
        size_t used;
        http_parser_init(&p, &body, 1024);
        CHECK(feed(&p, "HTTP/1.0 200 OK\r\nServer: x\r\n\r\nhello ", 3, &used) >= 0);
        CHECK(feed(&p, "world", 0, &used) >= 0);
        CHECK(p.state != HP_DONE);
        CHECK_INTEQ(http_parser_eof(&p), 0);
        CHECK_INTEQ(p.state, HP_DONE);
        CHECK(!p.keep_alive);
        CHECK_STREQ(body.buf, "hello world");
        http_parser_release(&p);
        strbuf_release(&body);

        body = (struct strbuf)STRBUF_INIT;
        http_parser_init(&p, &body, 1024);
        CHECK(feed(&p, "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n", 0,
                   &used) >= 0);
        CHECK_INTEQ(p.state, HP_DONE);
        CHECK(!p.keep_alive);
        http_parser_release(&p);
        strbuf_release(&body);
}

TEST(truncated_body_is_an_error_at_eof)
{
        struct strbuf body = STRBUF_INIT;
        struct http_parser p;
        size_t used;
        http_parser_init(&p, &body, 1024);
        CHECK(feed(&p, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", 0, &used) >= 0);
        CHECK_INTEQ(http_parser_eof(&p), -EPROTO);
        http_parser_release(&p);
        strbuf_release(&body);
}

TEST(interim_100_continue_is_skipped)
{
        struct strbuf body = STRBUF_INIT;
        struct http_parser p;
        size_t used;
        http_parser_init(&p, &body, 1024);
        CHECK(feed(&p,
                   "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 503 Busy\r\nContent-Length: 1\r\n\r\nx",
                   5, &used) >= 0);
        CHECK_INTEQ(p.state, HP_DONE);
        CHECK_INTEQ(p.status, 503);
        CHECK_STREQ(body.buf, "x");
        http_parser_release(&p);
        strbuf_release(&body);
}

TEST(oversized_responses_are_refused)
{
        struct strbuf body = STRBUF_INIT;
        struct http_parser p;
        size_t used;
        /* declared length over the cap: refused before any body byte */
        http_parser_init(&p, &body, 8);
        CHECK_INTEQ(feed(&p, "HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n", 0, &used), -EMSGSIZE);
        http_parser_release(&p);
        /* chunks adding up to more than the cap */
        strbuf_reset(&body);
        http_parser_init(&p, &body, 8);
        CHECK_INTEQ(feed(&p,
                         "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n12345\r\n"
                         "4\r\n6789\r\n0\r\n\r\n",
                         3, &used),
                    -EMSGSIZE);
        http_parser_release(&p);
        /* body until close beyond the cap */
        strbuf_reset(&body);
        http_parser_init(&p, &body, 8);
        CHECK_INTEQ(feed(&p, "HTTP/1.1 200 OK\r\n\r\n0123456789", 0, &used), -EMSGSIZE);
        http_parser_release(&p);
        /* an endless header line */
        strbuf_reset(&body);
        http_parser_init(&p, &body, 8);
        char *line = malloc(HTTP_PARSE_MAX_LINE + 64);
        CHECK(line != NULL);
        if (!line)
                return;
        int head = snprintf(line, 64, "HTTP/1.1 200 OK\r\nX: ");
        memset(line + head, 'a', HTTP_PARSE_MAX_LINE);
        line[HTTP_PARSE_MAX_LINE + 20] = 0;
        CHECK_INTEQ(feed(&p, line, 100, &used), -EMSGSIZE);
        free(line);
        http_parser_release(&p);
        strbuf_release(&body);
}

TEST(malformed_responses_are_refused)
{
        static const char *bad[] = {
            "HTTP/2 200 OK\r\n\r\n",
            "HTTP/1.1 2x0 OK\r\n\r\n",
            "SSH-2.0-OpenSSH\r\n",
            "HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nab\r\n",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffffff\r\n",
        };
        for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
                struct strbuf body = STRBUF_INIT;
                struct http_parser p;
                size_t used;
                http_parser_init(&p, &body, 1024);
                ssize_t r = feed(&p, bad[i], 0, &used);
                if (r >= 0)
                        printf("#   accepted: %s\n", bad[i]);
                CHECK(r < 0);
                CHECK(p.error[0] != 0);
                http_parser_release(&p);
                strbuf_release(&body);
        }
}

int main(void)
{
        RUN(content_length_every_split);
        RUN(chunked_every_split);
        RUN(bytes_after_the_response_are_not_consumed);
        RUN(body_until_close_and_connection_close);
        RUN(truncated_body_is_an_error_at_eof);
        RUN(interim_100_continue_is_skipped);
        RUN(oversized_responses_are_refused);
        RUN(malformed_responses_are_refused);
        TEST_DONE();
}

/* fuzz_http_response.c: libFuzzer target — the lean agent transport's HTTP response parser
 * (agent/http_parse.c) on arbitrary bytes, fed in pieces whose sizes come from the input. Besides
 * not crashing: the body never exceeds its cap, and a finished parse has a 1xx..999 status. */
#include "agent/http_parse.h"

#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        if (size < 1)
                return 0;
        size_t step = (size_t)(data[0] % 17) + 1, cap = (size_t)(data[0] >> 4) * 64 + 1;
        data++;
        size--;
        struct strbuf body = STRBUF_INIT;
        struct http_parser p;
        http_parser_init(&p, &body, cap);
        size_t off = 0;
        ssize_t r = 0;
        while (off < size && p.state != HP_DONE) {
                size_t k = size - off < step ? size - off : step;
                r = http_parser_feed(&p, (const char *)data + off, k);
                if (r < 0)
                        break;
                if ((size_t)r > k)
                        abort();
                off += k;
        }
        if (r >= 0 && p.state != HP_DONE)
                (void)http_parser_eof(&p);
        if (body.len > cap)
                abort();
        if (p.state == HP_DONE && (p.status < 200 || p.status > 999))
                abort();
        http_parser_release(&p);
        strbuf_release(&body);
        return 0;
}

/* test_docker_demux.c: the 8-byte-header stream demultiplexer of the docker client. */
#include "executor/docker/docker.h"
#include "testlib.h"

static int collect(void *ud, int stream, const void *p, size_t n)
{
        struct strbuf *sb = ud;
        if (strbuf_printf(sb, "%d:", stream) < 0)
                return -ENOMEM;
        return strbuf_append(sb, p, n);
}

TEST(demux_splits_frames_across_any_chunking)
{
        static const unsigned char s[] = {1, 0, 0, 0, 0, 0, 0, 3, 'a', 'b', 'c',
                                          2, 0, 0, 0, 0, 0, 0, 2, 'd', 'e'};
        for (size_t chunk = 1; chunk <= sizeof(s); chunk++) {
                struct docker_demux dm = {0};
                struct strbuf sb = STRBUF_INIT;
                for (size_t i = 0; i < sizeof(s); i += chunk)
                        docker_demux_feed(&dm, s + i, i + chunk > sizeof(s) ? sizeof(s) - i : chunk,
                                          collect, &sb);
                /* the payload arrives whole or in pieces, each tagged with its stream */
                struct strbuf plain = STRBUF_INIT;
                for (size_t i = 0; i < sb.len; i++)
                        if (!(sb.buf[i] >= '0' && sb.buf[i] <= '2' && sb.buf[i + 1] == ':'))
                                strbuf_putc(&plain, sb.buf[i]);
                        else
                                i++;
                CHECK_STREQ(plain.buf, "abcde");
                CHECK(strstr(sb.buf, "1:a") && strstr(sb.buf, "2:d"));
                strbuf_release(&sb);
                strbuf_release(&plain);
        }
}

TEST(demux_handles_empty_and_large_frames)
{
        unsigned char s[8 + 70000 + 8];
        memset(s, 0, sizeof(s));
        s[0] = 1; /* empty stdout frame */
        s[8] = 2;
        s[13] = 0x01, s[14] = 0x11, s[15] = 0x70; /* 70000 */
        memset(s + 16, 'x', 70000);
        /* the array is 8 short for the last frame header: feed what we have */
        struct docker_demux dm = {0};
        struct strbuf sb = STRBUF_INIT;
        CHECK(docker_demux_feed(&dm, s, 16 + 70000, collect, &sb) == 0);
        CHECK(sb.len == 2 + 70000);
        CHECK(dm.left == 0 && dm.hdr_len == 0);
        strbuf_release(&sb);
}

int main(void)
{
        RUN(demux_splits_frames_across_any_chunking);
        RUN(demux_handles_empty_and_large_frames);
        TEST_DONE();
}

/* test_lib.c: unit tests of the shared library (lib/). */
#include "lib/drv.h"
#include "testlib.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

TEST(parse_duration_accepts_circleci_forms)
{
        uint64_t s;
        CHECK(drv_parse_duration("10m", &s) == 0 && s == 600);
        CHECK(drv_parse_duration("1h30m", &s) == 0 && s == 5400);
        CHECK(drv_parse_duration("45", &s) == 0 && s == 45);
        CHECK(drv_parse_duration("2h5s", &s) == 0 && s == 7205);
        CHECK(drv_parse_duration("", &s) == -EINVAL);
        CHECK(drv_parse_duration("10x", &s) == -EINVAL);
        CHECK(drv_parse_duration("1h30", &s) == -EINVAL);
        CHECK(drv_parse_duration("99999999999999999999h", &s) == -ERANGE);
}

TEST(parse_size_units)
{
        uint64_t v;
        CHECK(drv_parse_size("512", &v) == 0 && v == 512);
        CHECK(drv_parse_size("4M", &v) == 0 && v == 4u << 20);
        CHECK(drv_parse_size("1Gi", &v) == 0 && v == 1u << 30);
        CHECK(drv_parse_size("1Q", &v) == -EINVAL);
        CHECK(drv_parse_size("", &v) == -EINVAL);
}

TEST(strbuf_grows_and_detaches)
{
        struct strbuf sb = STRBUF_INIT;
        for (int i = 0; i < 1000; i++)
                CHECK(strbuf_printf(&sb, "%d,", i) == 0);
        CHECK(sb.len > 3000);
        CHECK(drv_startswith(sb.buf, "0,1,2,"));
        char *s = strbuf_detach(&sb);
        CHECK(s && sb.buf == NULL && sb.len == 0);
        free(s);
}

TEST(error_prefix_keeps_code_and_names_context)
{
        struct drv_error e = {0};
        int r = drv_err(&e, ENOENT, "no such step %d", 3);
        CHECK_INTEQ(r, -ENOENT);
        drv_err_prefix(&e, "job %s", "build");
        CHECK_STREQ(e.message, "job build: no such step 3");
        CHECK_INTEQ(e.code, ENOENT);
}

TEST(path_join_collapses_slashes)
{
        char *p = drv_path_join("/a/b/", "/c");
        CHECK_STREQ(p, "/a/b/c");
        free(p);
        p = drv_path_join("/", "x");
        CHECK_STREQ(p, "/x");
        free(p);
}

TEST(strv_push_and_copy)
{
        _cleanup_strv_ char **v = NULL;
        CHECK(drv_strv_push(&v, "a") == 0);
        CHECK(drv_strv_push(&v, "b") == 0);
        CHECK_INTEQ(drv_strv_len(v), 2);
        _cleanup_strv_ char **c = drv_strv_copy(v);
        CHECK(c && strcmp(c[1], "b") == 0 && c[2] == NULL);
}

TEST(hex_is_lowercase_and_terminated)
{
        const unsigned char d[] = {0x00, 0x0f, 0xa5, 0xff};
        char out[9];
        memset(out, 'x', sizeof(out));
        drv_hex(d, sizeof(d), out);
        CHECK_STREQ(out, "000fa5ff");
        drv_hex(d, 0, out);
        CHECK_STREQ(out, "");
}

TEST(tcp_connect_reaches_a_listener_and_names_what_failed)
{
        int ls = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        socklen_t sl = sizeof(sa);
        CHECK(ls >= 0 && bind(ls, (struct sockaddr *)&sa, sizeof(sa)) == 0 && listen(ls, 1) == 0 &&
              getsockname(ls, (struct sockaddr *)&sa, &sl) == 0);
        uint16_t port = ntohs(sa.sin_port);
        struct drv_error err = {0};
        int fd = -1;
        CHECK_INTEQ(drv_tcp_connect("localhost", port, 2000, &fd, &err), 0);
        CHECK(fd >= 0);
        close(fd);
        close(ls); /* nothing listens there any more */
        fd = -1;
        CHECK_INTEQ(drv_tcp_connect("127.0.0.1", port, 2000, &fd, &err), -ECONNREFUSED);
        char want[64];
        snprintf(want, sizeof(want), "127.0.0.1:%u: connect: Connection refused", port);
        CHECK_STREQ(err.message, want);
        CHECK_INTEQ(fd, -1);
}

static char *mask_word(const void *ctx, const char *line)
{
        const char *hit = strstr(line, (const char *)ctx);
        if (!hit)
                return NULL;
        return drv_asprintf("%.*s********%s", (int)(hit - line), line,
                            hit + strlen((const char *)ctx));
}

/* drover job masks its log lines through the filter (issue 18): every line passes it, and
 * clearing it writes lines as they are again. */
TEST(log_filter_rewrites_every_line_until_cleared)
{
        int p[2];
        CHECK(pipe(p) == 0);
        int saved = dup(STDERR_FILENO);
        dup2(p[1], STDERR_FILENO);
        drv_log_set_filter(mask_word, "s3cr3t-value");
        log_warn("cache_failed", "key=%s error=\"%s\"", "k-s3cr3t-value", "no");
        log_info("plain", "x=%d", 1);
        drv_log_set_filter(NULL, NULL);
        log_warn("after", "key=%s", "s3cr3t-value");
        dup2(saved, STDERR_FILENO);
        close(saved);
        close(p[1]);
        char buf[4096];
        ssize_t n = read(p[0], buf, sizeof(buf) - 1);
        close(p[0]);
        buf[n > 0 ? n : 0] = 0;
        CHECK(strstr(buf, "event=cache_failed key=k-******** error=\"no\"\n") != NULL);
        CHECK(strstr(buf, "event=plain x=1\n") != NULL);
        CHECK(strstr(buf, "event=after key=s3cr3t-value\n") != NULL);
        CHECK(strstr(buf, "k-s3cr3t") == NULL);
}

int main(void)
{
        RUN(parse_duration_accepts_circleci_forms);
        RUN(parse_size_units);
        RUN(strbuf_grows_and_detaches);
        RUN(error_prefix_keeps_code_and_names_context);
        RUN(path_join_collapses_slashes);
        RUN(strv_push_and_copy);
        RUN(hex_is_lowercase_and_terminated);
        RUN(tcp_connect_reaches_a_listener_and_names_what_failed);
        RUN(log_filter_rewrites_every_line_until_cleared);
        TEST_DONE();
}

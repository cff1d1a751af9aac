/* test_check.c: unit tests of `drover check`'s URL and proxy rules (agent/check_net.c). */
#include "agent/check_internal.h"
#include "testlib.h"

static void proxy_env(const char *https, const char *http, const char *no)
{
        static const char *names[] = {"https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY",
                                      "all_proxy",   "ALL_PROXY",   "no_proxy",   "NO_PROXY"};
        for (size_t i = 0; i < DRV_ARRAY_SIZE(names); i++)
                unsetenv(names[i]);
        if (https)
                setenv("HTTPS_PROXY", https, 1);
        if (http)
                setenv("http_proxy", http, 1);
        if (no)
                setenv("NO_PROXY", no, 1);
}

TEST(normalize_adds_scheme_and_default_port)
{
        char *u = check_normalize_url("cp.example.com", 4647);
        CHECK_STREQ(u, "https://cp.example.com:4647");
        free(u);
        u = check_normalize_url("10.0.0.1:9999", 4647);
        CHECK_STREQ(u, "https://10.0.0.1:9999");
        free(u);
        u = check_normalize_url("[::1]", 8585);
        CHECK_STREQ(u, "https://[::1]:8585");
        free(u);
}

TEST(normalize_docker_tcp_is_tls)
{
        char *u = check_normalize_url("tcp://docker1:2376", 2376);
        CHECK_STREQ(u, "https://docker1:2376");
        free(u);
        u = check_normalize_url("tcp://docker1", 2376);
        CHECK_STREQ(u, "https://docker1:2376");
        free(u);
}

TEST(normalize_keeps_full_urls)
{
        char *u = check_normalize_url("http://out:8585/x", 8585);
        CHECK_STREQ(u, "http://out:8585/x");
        free(u);
        u = check_normalize_url("file:///var/store", 443);
        CHECK_STREQ(u, "file:///var/store");
        free(u);
}

TEST(https_proxy_used_for_https)
{
        proxy_env("http://p:3128", NULL, NULL);
        char *p = check_proxy_for("https://cp:4647");
        CHECK_STREQ(p, "http://p:3128");
        free(p);
        /* plain http does not use HTTPS_PROXY */
        p = check_proxy_for("http://out:8585");
        CHECK(p == NULL);
        free(p);
}

TEST(uppercase_http_proxy_ignored_for_http)
{
        proxy_env(NULL, NULL, NULL);
        setenv("HTTP_PROXY", "http://upper:1", 1);
        char *p = check_proxy_for("http://out:8585");
        CHECK(p == NULL);
        free(p);
        proxy_env(NULL, "http://lower:1", NULL);
        p = check_proxy_for("http://out:8585");
        CHECK_STREQ(p, "http://lower:1");
        free(p);
}

TEST(no_proxy_matches_hosts_and_domains)
{
        proxy_env("http://p:3128", NULL, "localhost, .corp.example,10.0.0.5");
        char *p = check_proxy_for("https://out.corp.example:8585");
        CHECK(p == NULL);
        free(p);
        p = check_proxy_for("https://corp.example");
        CHECK(p == NULL);
        free(p);
        p = check_proxy_for("https://10.0.0.5:2376");
        CHECK(p == NULL);
        free(p);
        p = check_proxy_for("https://LOCALHOST:1");
        CHECK(p == NULL);
        free(p);
        /* suffix must be at a dot boundary */
        p = check_proxy_for("https://evilcorp.example");
        CHECK_STREQ(p, "http://p:3128");
        free(p);
        p = check_proxy_for("https://user:pw@s3.amazonaws.com/bucket");
        CHECK_STREQ(p, "http://p:3128");
        free(p);
}

TEST(no_proxy_star_disables_proxy)
{
        proxy_env("http://p:3128", NULL, "*");
        char *p = check_proxy_for("https://anything");
        CHECK(p == NULL);
        free(p);
}

int main(void)
{
        RUN(normalize_adds_scheme_and_default_port);
        RUN(normalize_docker_tcp_is_tls);
        RUN(normalize_keeps_full_urls);
        RUN(https_proxy_used_for_https);
        RUN(uppercase_http_proxy_ignored_for_http);
        RUN(no_proxy_matches_hosts_and_domains);
        RUN(no_proxy_star_disables_proxy);
        TEST_DONE();
}

/* test_agent_proxy.c: the proxy environment as libcurl reads it (agent/proxy.c: variable
 * precedence, NO_PROXY, credentials percent-decoded, default ports, unusable URLs named by
 * their variable and never echoed), http(s) URL parsing, and the protocol headers both
 * transports send (agent/http_common.c). */
#include "agent/agent.h"
#include "agent/proxy.h"
#include "testlib.h"

#include <stdlib.h>

static void clear_env(void)
{
        static const char *const vars[] = {"https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY",
                                           "all_proxy",   "ALL_PROXY",   "no_proxy",   "NO_PROXY"};
        for (size_t i = 0; i < DRV_ARRAY_SIZE(vars); i++)
                unsetenv(vars[i]);
}

TEST(url_endpoint_parses_hosts_ports_paths)
{
        struct url_endpoint ep;
        const char *path = NULL;
        CHECK(url_endpoint_parse("https://cp.example:4647/v1/claim?x=1", &ep, &path) == 0);
        CHECK(ep.tls);
        CHECK_STREQ(ep.host, "cp.example");
        CHECK_STREQ(ep.port, "4647");
        CHECK_STREQ(path, "/v1/claim?x=1");
        CHECK(url_endpoint_parse("http://[fd00::1]", &ep, &path) == 0);
        CHECK(!ep.tls);
        CHECK_STREQ(ep.host, "fd00::1");
        CHECK_STREQ(ep.port, "80");
        CHECK_STREQ(path, "/");
        CHECK(url_endpoint_parse("https://u:p@w@h:1", &ep, NULL) == 0);
        CHECK_STREQ(ep.host, "h");
        CHECK(url_endpoint_parse("tcp://h:1", &ep, NULL) == -EINVAL);
        CHECK(url_endpoint_parse("https://:443", &ep, NULL) == -EINVAL);
        CHECK(url_endpoint_parse("https://h:44x", &ep, NULL) == -EINVAL);
        CHECK(url_endpoint_parse("https://[::1", &ep, NULL) == -EINVAL);
}

TEST(proxy_variables_in_libcurl_order)
{
        struct agent_proxy p;
        struct drv_error err = {0};
        clear_env();
        CHECK(agent_proxy_for(true, "cp", &p, &err) == 0);
        setenv("HTTPS_PROXY", "http://upper:3128", 1);
        CHECK(agent_proxy_for(true, "cp", &p, &err) == 1);
        CHECK_STREQ(p.ep.host, "upper");
        agent_proxy_release(&p);
        setenv("https_proxy", "lower:3129", 1); /* no scheme: http:// */
        CHECK(agent_proxy_for(true, "cp", &p, &err) == 1);
        CHECK_STREQ(p.ep.host, "lower");
        CHECK_STREQ(p.shown, "http://lower:3129");
        CHECK_STREQ(p.var, "https_proxy");
        agent_proxy_release(&p);
        /* http: lower-case http_proxy only (CGI rule), then all_proxy */
        setenv("HTTP_PROXY", "http://upper:1", 1);
        CHECK(agent_proxy_for(false, "cp", &p, &err) == 0);
        setenv("ALL_PROXY", "http://all", 1);
        CHECK(agent_proxy_for(false, "cp", &p, &err) == 1);
        CHECK_STREQ(p.shown, "http://all:1080"); /* libcurl's default proxy port */
        agent_proxy_release(&p);
        setenv("no_proxy", "other, .example.com,10.0.0.5", 1);
        CHECK(agent_no_proxy("a.example.com") && agent_no_proxy("example.com"));
        CHECK(agent_no_proxy("10.0.0.5") && !agent_no_proxy("10.0.0.50"));
        CHECK(!agent_no_proxy("badexample.com"));
        CHECK(agent_proxy_for(true, "cp.example.com", &p, &err) == 0);
        setenv("no_proxy", "*", 1);
        CHECK(agent_proxy_for(true, "anything", &p, &err) == 0);
        clear_env();
}

TEST(proxy_credentials_are_percent_decoded_and_never_shown)
{
        struct agent_proxy p;
        struct drv_error err = {0};
        clear_env();
        setenv("https_proxy", "https://us%40er:p%3Aa@ss%2F@[fd00::2]", 1);
        CHECK(agent_proxy_for(true, "cp", &p, &err) == 1);
        CHECK(p.ep.tls);
        CHECK_STREQ(p.user, "us@er");
        CHECK_STREQ(p.pass, "p:a@ss/");
        CHECK_STREQ(p.ep.host, "fd00::2");
        CHECK_STREQ(p.shown, "https://[fd00::2]:443");
        agent_proxy_release(&p);
        CHECK(p.pass == NULL && p.user == NULL);
        setenv("https_proxy", "http://user@h:1", 1); /* a user without password */
        CHECK(agent_proxy_for(true, "cp", &p, &err) == 1);
        CHECK_STREQ(p.user, "user");
        CHECK_STREQ(p.pass, "");
        agent_proxy_release(&p);
        setenv("https_proxy", "http://u:bad%zzsecret@h:1", 1);
        CHECK(agent_proxy_for(true, "cp", &p, &err) == -EINVAL);
        CHECK(strstr(err.message, "https_proxy") && !strstr(err.message, "secret"));
        setenv("https_proxy", "socks5://u:secret@h:1080", 1);
        CHECK(agent_proxy_for(true, "cp", &p, &err) == -EINVAL);
        CHECK(strstr(err.message, "socks5") && !strstr(err.message, "secret"));
        clear_env();
}

static int collect(void *ctx, const char *line)
{
        return strbuf_printf(ctx, "%s|", line) < 0 ? -ENOMEM : 0;
}

TEST(protocol_headers_are_the_same_for_both_transports)
{
        struct agent a = {0};
        struct strbuf sb = STRBUF_INIT;
        a.token = "tok";
        a.node_id = "n1";
        CHECK(http_req_headers(&a, "/v1/register", collect, &sb) == 0);
        CHECK_STREQ(sb.buf, "User-Agent: drover-agent|Content-Type: application/json|"
                            "Drover-Protocol: 1|Authorization: Bearer tok|Drover-Node: n1|");
        strbuf_reset(&sb);
        CHECK(http_req_headers(&a, "/v1/heartbeat", collect, &sb) == 0);
        CHECK(!strstr(sb.buf, "Bearer")); /* the join token goes to registration only */
        strbuf_release(&sb);
}

/* agent/netfail.c: one table of kinds and fixes for drover check and both daemons' logs */
TEST(failure_kinds_and_fixes)
{
        CHECK_STREQ(netfail_kind(NETFAIL_NONE), "");
        CHECK(netfail_fix(NETFAIL_NONE) == NULL);
        for (int f = NETFAIL_RESOLVE; f <= NETFAIL_OTHER; f++) {
                CHECK(netfail_kind((enum netfail)f)[0] != '\0');
                CHECK(netfail_fix((enum netfail)f) && netfail_fix((enum netfail)f)[0]);
                CHECK(!strchr(netfail_fix((enum netfail)f), '"')); /* a quoted log field */
        }
        CHECK_STREQ(netfail_kind((enum netfail)99), "failed");
        CHECK_STREQ(netfail_kind(NETFAIL_CLIENT_REFUSED), "client certificate refused");
        /* the chain first: an expired certificate from an unknown CA is "not trusted" */
        CHECK(netfail_of_verify(true, true, true) == NETFAIL_UNTRUSTED);
        CHECK(netfail_of_verify(false, true, true) == NETFAIL_EXPIRED);
        CHECK(netfail_of_verify(false, false, true) == NETFAIL_NAME);
        CHECK(netfail_of_verify(false, false, false) == NETFAIL_UNTRUSTED);
        /* libcurl results without a transfer behind them */
        CHECK(netfail_of_curl(NULL, 0, "") == NETFAIL_NONE);
        CHECK(netfail_of_curl(NULL, 6 /* CURLE_COULDNT_RESOLVE_HOST */, "") == NETFAIL_RESOLVE);
        CHECK(netfail_of_curl(NULL, 7 /* CURLE_COULDNT_CONNECT */, "") == NETFAIL_CONNECT);
        CHECK(netfail_of_curl(NULL, 28 /* CURLE_OPERATION_TIMEDOUT */, "") == NETFAIL_TIMEOUT);
}

int main(void)
{
        RUN(url_endpoint_parses_hosts_ports_paths);
        RUN(proxy_variables_in_libcurl_order);
        RUN(proxy_credentials_are_percent_decoded_and_never_shown);
        RUN(protocol_headers_are_the_same_for_both_transports);
        RUN(failure_kinds_and_fixes);
        TEST_DONE();
}

/* check_net.c: `drover check` network probes — TCP + TLS to the control plane, output processor,
 * object storage and Docker hosts through libcurl (so HTTP(S)_PROXY/NO_PROXY apply exactly as in
 * the agent), and which SSH rerun ports are free. */
#include "agent/check_internal.h"
#include "agent/netfail.h"
#include "agent/proxy.h"

#include <curl/curl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>

char *check_normalize_url(const char *s, unsigned default_port)
{
        const char *rest = s;
        const char *scheme = "https";
        if (drv_startswith(s, "tcp://"))
                rest = s + 6;
        else if (strstr(s, "://"))
                return strdup(s);
        /* host or host:port or [v6]:port */
        const char *colon = strrchr(rest, ':');
        const char *bracket = strrchr(rest, ']');
        bool has_port = colon && (!bracket || colon > bracket);
        if (has_port)
                return drv_asprintf("%s://%s", scheme, rest);
        return drv_asprintf("%s://%s:%u", scheme, rest, default_port);
}

char *check_proxy_for(const char *url)
{
        struct url_endpoint ep;
        struct agent_proxy p;
        struct drv_error e = {0};
        if (url_endpoint_parse(url, &ep, NULL) < 0)
                return NULL;
        int r = agent_proxy_for(ep.tls, ep.host, &p, &e);
        if (r < 0)
                return strdup(e.message); /* names the variable, never its value */
        if (r == 0)
                return NULL;
        char *shown = p.shown; /* without user info: the proxy URL may carry a password */
        p.shown = NULL;
        agent_proxy_release(&p);
        return shown;
}

static void check_file_storage(struct check_report *r, const char *what, const char *url)
{
        const char *dir = url + strlen("file://");
        struct stat st;
        if (stat(dir, &st) < 0 || !S_ISDIR(st.st_mode))
                check_line(r, CHECK_FAIL, what, "create the directory", "%s: %s", dir,
                           strerror(errno ? errno : ENOTDIR));
        else if (access(dir, W_OK) < 0)
                check_line(r, CHECK_FAIL, what, "make it writable by root", "%s: %s", dir,
                           strerror(errno));
        else
                check_line(r, CHECK_OK, what, NULL, "%s is a writable directory", dir);
}

static size_t discard(char *p, size_t size, size_t n, void *data)
{
        (void)p;
        (void)data;
        return size * n;
}

void check_endpoint(struct check_report *r, const char *what, const char *url,
                    const struct check_opts *o)
{
        if (!url) {
                check_line(r, CHECK_FAIL, what, NULL, "out of memory");
                return;
        }
        if (drv_startswith(url, "file://")) {
                check_file_storage(r, what, url);
                return;
        }
        CURL *c = curl_easy_init();
        if (!c) {
                check_line(r, CHECK_FAIL, what, NULL, "libcurl init failed");
                return;
        }
        char errbuf[CURL_ERROR_SIZE] = "";
        /* A real request, not just a handshake: with TLS 1.3 a server refuses a client
         * certificate only after the handshake, so only a response proves mTLS works. Any HTTP
         * status will do (404 from "/", 403 from an anonymous S3 GET). */
        curl_easy_setopt(c, CURLOPT_URL, url);
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
        curl_easy_setopt(c, CURLOPT_MAXFILESIZE, 1L << 20);
        curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, o->timeout_ms);
        curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, o->timeout_ms);
        curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
        curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
        if (o->ca_file)
                curl_easy_setopt(c, CURLOPT_CAINFO, o->ca_file);
        if (o->cert_file)
                curl_easy_setopt(c, CURLOPT_SSLCERT, o->cert_file);
        if (o->key_file)
                curl_easy_setopt(c, CURLOPT_SSLKEY, o->key_file);
        if (o->proxy_ca_file)
                curl_easy_setopt(c, CURLOPT_PROXY_CAINFO, o->proxy_ca_file);
        uint64_t t0 = drv_now_ns();
        CURLcode rc = curl_easy_perform(c);
        uint64_t ms = (drv_now_ns() - t0) / 1000000;
        _cleanup_free_ char *proxy = check_proxy_for(url);
        _cleanup_free_ char *via = proxy ? drv_asprintf(" via proxy %s", proxy) : NULL;
        if (rc != CURLE_OK) {
                /* the classification the daemon's log uses too (agent/netfail.c) */
                enum netfail f = netfail_of_curl(c, rc, errbuf);
                check_line(r, CHECK_FAIL, what, netfail_fix(f), "%s %s%s: %s", url, netfail_kind(f),
                           via ? via : "", errbuf[0] ? errbuf : curl_easy_strerror(rc));
        } else {
                long status = 0;
                curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
                if (drv_startswith(url, "https://"))
                        check_line(r, CHECK_OK, what, NULL,
                                   "%s reachable, TLS verified%s (HTTP %ld, %llu ms)", url,
                                   via ? via : "", status, (unsigned long long)ms);
                else
                        check_line(r, CHECK_WARN, what, "use https:// so traffic is encrypted",
                                   "%s reachable%s, but not TLS (HTTP %ld, %llu ms)", url,
                                   via ? via : "", status, (unsigned long long)ms);
        }
        curl_easy_cleanup(c);
}

static bool port_free(unsigned port)
{
        _cleanup_close_ int fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
        int one = 1;
        if (fd < 0) {
                fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
                if (fd < 0)
                        return false;
                (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
                struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
                return bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
        }
        /* dual-stack any: conflicts with both v4 and v6 listeners */
        (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        int zero = 0;
        (void)setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
        struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_port = htons((uint16_t)port)};
        return bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
}

/* Append "a-b" or "a" to sb, comma separated. */
static void put_range(struct strbuf *sb, unsigned a, unsigned b)
{
        if (sb->len)
                (void)strbuf_puts(sb, ",");
        if (a == b)
                (void)strbuf_printf(sb, "%u", a);
        else
                (void)strbuf_printf(sb, "%u-%u", a, b);
}

void check_ports(struct check_report *r, unsigned lo, unsigned hi)
{
        _cleanup_strbuf_ struct strbuf freeb = STRBUF_INIT, used = STRBUF_INIT;
        unsigned nfree = 0, total = hi - lo + 1;
        long run_start = -1;
        bool run_free = false;
        for (unsigned p = lo; p <= hi + 1; p++) {
                bool f = p <= hi ? port_free(p) : !run_free;
                if (p <= hi && f)
                        nfree++;
                if (run_start < 0) {
                        run_start = p;
                        run_free = f;
                } else if (f != run_free || p > hi) {
                        put_range(run_free ? &freeb : &used, (unsigned)run_start, p - 1);
                        run_start = p;
                        run_free = f;
                }
        }
        if (nfree == 0)
                check_line(r, CHECK_FAIL, "ssh ports",
                           "free some ports or set ssh_ports to a free range",
                           "none of %u-%u is free (SSH reruns need one per job)", lo, hi);
        else
                check_line(r, nfree == total ? CHECK_OK : CHECK_WARN, "ssh ports",
                           "stop what listens there or narrow ssh_ports", "%u of %u free: %s%s%s",
                           nfree, total, freeb.buf, used.len ? "; in use: " : "",
                           used.len ? used.buf : "");
}

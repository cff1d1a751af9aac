/* proxy.c: http(s) URLs and the proxy environment, read as libcurl reads them (one rule for the
 * lean transport and `drover check`). */
#include "agent/proxy.h"

#include <strings.h>

int url_endpoint_parse(const char *url, struct url_endpoint *ep, const char **path)
{
        memset(ep, 0, sizeof(*ep));
        const char *s;
        if (strncasecmp(url, "https://", 8) == 0) {
                ep->tls = true;
                s = url + 8;
        } else if (strncasecmp(url, "http://", 7) == 0) {
                s = url + 7;
        } else {
                return -EINVAL;
        }
        const char *end = s + strcspn(s, "/?#");
        const char *at = NULL;
        for (const char *k = s; k < end; k++) /* the last '@': a raw '@' in a password is common */
                if (*k == '@')
                        at = k;
        if (at)
                s = at + 1; /* user info: agent_proxy_for reads it */
        const char *hp_end, *port = NULL;
        if (*s == '[') {
                const char *rb = memchr(s, ']', (size_t)(end - s));
                if (!rb || rb - s - 1 >= (long)sizeof(ep->host) || rb == s + 1)
                        return -EINVAL;
                memcpy(ep->host, s + 1, (size_t)(rb - s - 1));
                hp_end = rb + 1;
                if (hp_end < end && *hp_end == ':')
                        port = hp_end + 1;
                else if (hp_end < end)
                        return -EINVAL;
        } else {
                const char *colon = memchr(s, ':', (size_t)(end - s));
                hp_end = colon ? colon : end;
                if (hp_end - s >= (long)sizeof(ep->host) || hp_end == s)
                        return -EINVAL;
                memcpy(ep->host, s, (size_t)(hp_end - s));
                if (colon)
                        port = colon + 1;
        }
        if (port && end - port > 0) {
                if (end - port >= (long)sizeof(ep->port) ||
                    strspn(port, "0123456789") != (size_t)(end - port))
                        return -EINVAL;
                memcpy(ep->port, port, (size_t)(end - port));
        } else {
                snprintf(ep->port, sizeof(ep->port), "%s", ep->tls ? "443" : "80");
        }
        if (path)
                *path = *end ? end : "/";
        return 0;
}

/* The first of two variables that is set and not empty (its name in *name). */
static const char *env2(const char *a, const char *b, const char **name)
{
        const char *v = getenv(a);
        *name = a;
        if (v && *v)
                return v;
        v = b ? getenv(b) : NULL;
        *name = b;
        return v && *v ? v : NULL;
}

bool agent_no_proxy(const char *host)
{
        const char *var;
        const char *np = env2("no_proxy", "NO_PROXY", &var);
        if (!np)
                return false;
        size_t hl = strlen(host);
        for (const char *p = np; *p;) {
                while (*p == ',' || *p == ' ')
                        p++;
                size_t n = strcspn(p, ", ");
                if (n == 0)
                        break;
                const char *e = p;
                size_t en = n;
                if (*e == '.') {
                        e++;
                        en--;
                }
                if ((en == 1 && *e == '*') || (hl == en && strncasecmp(host, e, en) == 0) ||
                    (hl > en && host[hl - en - 1] == '.' &&
                     strncasecmp(host + hl - en, e, en) == 0))
                        return true;
                p += n;
        }
        return false;
}

static int hexval(char c)
{
        if (c >= '0' && c <= '9')
                return c - '0';
        c = (char)(c | 0x20);
        return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* A malloc'd percent-decoded copy of s[0..n), or NULL (bad %XX, a NUL byte, no memory). */
static char *pct_decode(const char *s, size_t n)
{
        char *out = malloc(n + 1), *o = out;
        if (!out)
                return NULL;
        for (size_t i = 0; i < n; i++) {
                if (s[i] != '%') {
                        *o++ = s[i];
                        continue;
                }
                int hi = i + 2 < n ? hexval(s[i + 1]) : -1;
                int lo = hi >= 0 ? hexval(s[i + 2]) : -1;
                if (lo < 0 || (hi == 0 && lo == 0)) {
                        explicit_bzero(out, n + 1);
                        free(out);
                        return NULL;
                }
                *o++ = (char)(hi * 16 + lo);
                i += 2;
        }
        *o = 0;
        return out;
}

/* user[:pass]@ of a proxy URL (s after "scheme://"), percent-decoded. */
static int proxy_userinfo(const char *s, struct agent_proxy *p)
{
        const char *end = s + strcspn(s, "/?#");
        const char *at = NULL;
        for (const char *k = s; k < end; k++) /* the last '@', as url_endpoint_parse */
                if (*k == '@')
                        at = k;
        if (!at)
                return 0;
        const char *colon = memchr(s, ':', (size_t)(at - s));
        const char *ue = colon ? colon : at;
        p->user = pct_decode(s, (size_t)(ue - s));
        p->pass = colon ? pct_decode(colon + 1, (size_t)(at - colon - 1)) : strdup("");
        return p->user && p->pass ? 0 : -EINVAL;
}

int agent_proxy_for(bool tls, const char *host, struct agent_proxy *p, struct drv_error *err)
{
        memset(p, 0, sizeof(*p));
        const char *var;
        /* libcurl reads only lower-case http_proxy (CGI safety), https_proxy before HTTPS_PROXY */
        const char *v =
            tls ? env2("https_proxy", "HTTPS_PROXY", &var) : env2("http_proxy", NULL, &var);
        if (!v)
                v = env2("all_proxy", "ALL_PROXY", &var);
        if (!v || agent_no_proxy(host))
                return 0;
        p->var = var;
        const char *sep = strstr(v, "://");
        _cleanup_free_ char *u = sep ? strdup(v) : drv_asprintf("http://%s", v);
        if (!u)
                return drv_err(err, ENOMEM, "out of memory");
        const char *rest = strstr(u, "://") + 3;
        int r = url_endpoint_parse(u, &p->ep, NULL);
        if (r == 0)
                r = proxy_userinfo(rest, p);
        if (r == 0) {
                /* libcurl's default proxy ports: 1080 for http://, 443 for https:// */
                const char *hp = strrchr(rest, '@') ? strrchr(rest, '@') + 1 : rest;
                const char *hend = hp + strcspn(hp, "/?#");
                const char *rb = *hp == '[' ? memchr(hp, ']', (size_t)(hend - hp)) : hp;
                if (!memchr(rb, ':', (size_t)(hend - rb)) && !p->ep.tls)
                        snprintf(p->ep.port, sizeof(p->ep.port), "1080");
                bool v6 = strchr(p->ep.host, ':') != NULL;
                p->shown = drv_asprintf("%s://%s%s%s:%s", p->ep.tls ? "https" : "http",
                                        v6 ? "[" : "", p->ep.host, v6 ? "]" : "", p->ep.port);
                if (!p->shown)
                        r = -ENOMEM;
        }
        if (r < 0) {
                agent_proxy_release(p);
                if (r == -ENOMEM)
                        return drv_err(err, ENOMEM, "out of memory");
                /* never echo the value: it may hold a password */
                if (sep && strncasecmp(v, "http://", 7) && strncasecmp(v, "https://", 8))
                        return drv_err(err, EINVAL,
                                       "%s: proxy scheme %.*s:// not supported (http://, https://)",
                                       var, (int)(sep - v > 12 ? 12 : sep - v), v);
                return drv_err(err, EINVAL,
                               "%s: not a usable proxy URL (expected http[s]://[user:password@]"
                               "host[:port], user and password percent-encoded)",
                               var);
        }
        return 1;
}

void agent_proxy_release(struct agent_proxy *p)
{
        if (p->pass) {
                explicit_bzero(p->pass, strlen(p->pass));
                free(p->pass);
        }
        free(p->user);
        free(p->shown);
        memset(p, 0, sizeof(*p));
}

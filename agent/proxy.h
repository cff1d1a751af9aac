/* proxy.h: http(s) URLs and the proxy environment (https_proxy, http_proxy, all_proxy, no_proxy
 * and their upper-case forms) read as libcurl reads them — for the lean transport, which has no
 * libcurl, and for `drover check`, which says which proxy a request takes. */
#pragma once

#include "lib/drv.h"

#include <stdbool.h>

/* Where an http(s) URL goes. */
struct url_endpoint {
        bool tls;       /* https:// */
        char host[256]; /* without brackets */
        char port[8];   /* given, else 443 / 80 */
};

/* Parse an http:// or https:// URL (user info is skipped); *path (if asked) points at its path
 * and query, "/" when there is none. -EINVAL if it is not such a URL. */
int url_endpoint_parse(const char *url, struct url_endpoint *ep, const char **path);

/* A proxy from the environment. user/pass are secrets: never log them (`shown` is the URL
 * without them). */
struct agent_proxy {
        struct url_endpoint ep; /* ep.tls: an https:// proxy (TLS to the proxy itself) */
        char *user, *pass;      /* percent-decoded; NULL when the URL has none */
        char *shown;            /* scheme://host:port, for messages */
        const char *var;        /* the variable it came from */
};

/* True if no_proxy/NO_PROXY ("*", or a comma list of host names, domain suffixes with or
 * without the leading dot, addresses) exempts host. */
bool agent_no_proxy(const char *host);
/* The proxy for a request to host over https (tls) or http: 1 with *p filled (release it),
 * 0 for a direct connection, or a negative errno with err naming the variable (a proxy URL the
 * caller cannot use: not http(s)://, bad host or port, bad percent-encoding). */
int agent_proxy_for(bool tls, const char *host, struct agent_proxy *p, struct drv_error *err);
/* Free what agent_proxy_for filled (the password is wiped first). */
void agent_proxy_release(struct agent_proxy *p);

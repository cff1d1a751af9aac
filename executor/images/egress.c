/* egress.c: where the image puller may connect on a job's behalf. The registry a job names must
 * resolve to public addresses only, unless the operator lists the registry
 * (DROVER_IMAGE_REGISTRY_ALLOW: comma-separated HOST[:PORT]) or its addresses
 * (DROVER_IMAGE_EGRESS_ALLOW, DROVER_SANDBOX_EGRESS_ALLOW: CIDRs): `image: 127.0.0.1:5000/x` does
 * not reach a service of the agent host, nor a private or link-local one (cloud metadata). The
 * operator's own pulls (`drover image`) and mirrors are the operator's choice and pass. A redirect
 * (blob storage) or a bearer-token realm from that registry may lead only to the registry's own
 * addresses, to public addresses, or to what the operator allow-lists — never to another
 * loopback, link-local, private or unique-local address. The check is on the address each
 * connection is opened to (curl's opensocket callback: after DNS, so a name cannot be rebound
 * between the check and the connect). Loopback is decided exactly, by address (and the name
 * "localhost"). */
#include "executor/images/images_int.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>

enum addr_class { ADDR_PUBLIC, ADDR_LOOPBACK, ADDR_LINK_LOCAL, ADDR_PRIVATE, ADDR_RESERVED };

static const char *const class_names[] = {"public", "loopback", "link-local", "private",
                                          "reserved"};

static enum addr_class v4_class(uint32_t a) /* host byte order */
{
        if ((a >> 24) == 127)
                return ADDR_LOOPBACK;
        if ((a >> 16) == 0xa9fe) /* 169.254/16 */
                return ADDR_LINK_LOCAL;
        if ((a >> 24) == 10 || (a >> 20) == 0xac1 || (a >> 16) == 0xc0a8 || (a >> 22) == 0x191)
                return ADDR_PRIVATE; /* 10/8, 172.16/12, 192.168/16, 100.64/10 (CGNAT) */
        if ((a >> 24) == 0 || (a >> 28) >= 0xe)
                return ADDR_RESERVED; /* 0/8, multicast, 240/4, broadcast */
        return ADDR_PUBLIC;
}

static enum addr_class v6_class(const struct in6_addr *a)
{
        const uint8_t *b = a->s6_addr;
        if (IN6_IS_ADDR_V4MAPPED(a) || IN6_IS_ADDR_V4COMPAT(a)) {
                uint32_t v4 = ((uint32_t)b[12] << 24) | ((uint32_t)b[13] << 16) |
                              ((uint32_t)b[14] << 8) | b[15];
                return IN6_IS_ADDR_V4COMPAT(a) && v4 <= 1 ? (v4 ? ADDR_LOOPBACK : ADDR_RESERVED)
                                                          : v4_class(v4);
        }
        if (IN6_IS_ADDR_LOOPBACK(a))
                return ADDR_LOOPBACK;
        if (IN6_IS_ADDR_UNSPECIFIED(a) || b[0] == 0xff)
                return ADDR_RESERVED;
        if (b[0] == 0xfe && (b[1] & 0xc0) == 0x80)
                return ADDR_LINK_LOCAL;
        if ((b[0] & 0xfe) == 0xfc || (b[0] == 0xfe && (b[1] & 0xc0) == 0xc0))
                return ADDR_PRIVATE; /* fc00::/7 unique-local, fec0::/10 site-local */
        return ADDR_PUBLIC;
}

static enum addr_class addr_class(const struct sockaddr *sa)
{
        if (sa->sa_family == AF_INET)
                return v4_class(
                    ntohl(((const struct sockaddr_in *)(const void *)sa)->sin_addr.s_addr));
        if (sa->sa_family == AF_INET6)
                return v6_class(&((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr);
        return ADDR_RESERVED;
}

/* The address bytes of sa (4 or 16), IPv4-mapped IPv6 as IPv4. */
static size_t addr_bytes(const struct sockaddr *sa, uint8_t out[16])
{
        if (sa->sa_family == AF_INET) {
                memcpy(out, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, 4);
                return 4;
        }
        if (sa->sa_family != AF_INET6)
                return 0;
        const struct in6_addr *a = &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr;
        if (IN6_IS_ADDR_V4MAPPED(a)) {
                memcpy(out, a->s6_addr + 12, 4);
                return 4;
        }
        memcpy(out, a->s6_addr, 16);
        return 16;
}

static void addr_text(const struct sockaddr *sa, char *buf, size_t n)
{
        uint8_t b[16];
        size_t len = addr_bytes(sa, b);
        if (!len || !inet_ntop(len == 4 ? AF_INET : AF_INET6, b, buf, (socklen_t)n))
                snprintf(buf, n, "?");
}

/* Is sa inside the CIDR text c ("10.1.0.0/16", "fd00::/8", "192.0.2.7"; an IPv4 entry may end
 * in ":PORT", as in the job's allow-list: then only that port)? */
static bool in_cidr(const struct sockaddr *sa, const char *c)
{
        char ip[64];
        const char *colon = strchr(c, ':');
        if (colon && !strchr(colon + 1, ':') && sa->sa_family == AF_INET) { /* v4 ":PORT" */
                char *end = NULL;
                unsigned long port = strtoul(colon + 1, &end, 10);
                const struct sockaddr_in *s4 = (const struct sockaddr_in *)(const void *)sa;
                if (!end || *end || port != ntohs(s4->sin_port) ||
                    (size_t)(colon - c) >= sizeof(ip))
                        return false;
                memcpy(ip, c, (size_t)(colon - c));
                ip[colon - c] = '\0';
                return in_cidr(sa, ip);
        }
        size_t n = strcspn(c, "/");
        if (n >= sizeof(ip))
                return false;
        memcpy(ip, c, n);
        ip[n] = '\0';
        uint8_t net[16], a[16];
        size_t len = addr_bytes(sa, a);
        size_t nlen = inet_pton(AF_INET, ip, net) == 1    ? 4
                      : inet_pton(AF_INET6, ip, net) == 1 ? 16
                                                          : 0;
        if (!len || len != nlen)
                return false;
        char *end = NULL;
        unsigned long bits = c[n] == '/' ? strtoul(c + n + 1, &end, 10) : len * 8;
        if ((end && *end) || bits > len * 8)
                return false;
        for (size_t i = 0; i < len && bits; i++) {
                unsigned take = bits >= 8 ? 8 : (unsigned)bits;
                uint8_t mask = (uint8_t)(0xff00u >> take);
                if ((a[i] & mask) != (net[i] & mask))
                        return false;
                bits -= take;
        }
        return true;
}

/* The operator's allow-lists: the puller's (DROVER_IMAGE_EGRESS_ALLOW) and the jobs' own
 * (DROVER_SANDBOX_EGRESS_ALLOW, sandbox/egress.c: what a job may reach, the puller may fetch for
 * it). The one place to point at a shared egress policy. */
static bool list_allows(const char *list, const struct sockaddr *sa)
{
        char item[80];
        for (const char *p = list; p && *p;) {
                size_t n = strcspn(p, ", ");
                if (n && n < sizeof(item)) {
                        memcpy(item, p, n);
                        item[n] = '\0';
                        if (in_cidr(sa, item))
                                return true;
                }
                p += n;
                p += strspn(p, ", ");
        }
        return false;
}

static bool operator_allows(const struct sockaddr *sa)
{
        return list_allows(getenv("DROVER_IMAGE_EGRESS_ALLOW"), sa) ||
               list_allows(getenv("DROVER_SANDBOX_EGRESS_ALLOW"), sa);
}

/* host of "host", "host:port", "[v6]:port", "host:port/path" into out. */
static bool split_host(const char *s, char *out, size_t n)
{
        size_t len;
        if (*s == '[') {
                const char *e = strchr(s, ']');
                if (!e)
                        return false;
                s++;
                len = (size_t)(e - s);
        } else {
                len = strcspn(s, ":/?#");
        }
        if (!len || len >= n)
                return false;
        memcpy(out, s, len);
        out[len] = '\0';
        return true;
}

bool img_host_is_loopback(const char *hostport)
{
        char h[256];
        struct in_addr a4;
        struct in6_addr a6;
        if (!hostport || !split_host(hostport, h, sizeof(h)))
                return false;
        if (strcasecmp(h, "localhost") == 0)
                return true;
        if (inet_pton(AF_INET, h, &a4) == 1)
                return v4_class(ntohl(a4.s_addr)) == ADDR_LOOPBACK;
        return inet_pton(AF_INET6, h, &a6) == 1 && v6_class(&a6) == ADDR_LOOPBACK;
}

/* Is HOST:PORT one of the operator's registries (DROVER_IMAGE_REGISTRY_ALLOW entries HOST[:PORT];
 * HOST alone: any port)? Exact names, case-insensitive: never a prefix or a suffix. */
static bool registry_listed(const char *host, const char *port)
{
        const char *list = getenv("DROVER_IMAGE_REGISTRY_ALLOW");
        char item[300], h[256];
        for (const char *p = list; p && *p;) {
                size_t n = strcspn(p, ", ");
                if (n && n < sizeof(item)) {
                        memcpy(item, p, n);
                        item[n] = '\0';
                        if (split_host(item, h, sizeof(h)) && strcasecmp(h, host) == 0) {
                                const char *ip =
                                    item + (item[0] == '[' ? strlen(h) + 2 : strlen(h));
                                if (!*ip || (*ip == ':' && strcmp(ip + 1, port) == 0))
                                        return true;
                        }
                }
                p += n;
                p += strspn(p, ", ");
        }
        return false;
}

int img_egress_init(struct img_egress *eg, const char *base, bool trusted, struct drv_error *err)
{
        memset(eg, 0, sizeof(*eg));
        const char *auth = strstr(base, "://");
        auth = auth ? auth + 3 : base;
        char host[256], port[8];
        if (!split_host(auth, host, sizeof(host)))
                return drv_err(err, EINVAL, "registry %s: no host", base);
        const char *pp = auth + (*auth == '[' ? strlen(host) + 2 : strlen(host));
        if (*pp == ':')
                snprintf(port, sizeof(port), "%.*s", (int)strcspn(pp + 1, "/?#"), pp + 1);
        else
                snprintf(port, sizeof(port), "%s", drv_startswith(base, "http://") ? "80" : "443");
        struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai = NULL;
        int g = getaddrinfo(host, port, &hints, &ai);
        if (g != 0)
                return 0; /* curl says it better; nothing else but public addresses passes */
        int r = 0;
        bool listed = trusted || registry_listed(host, port);
        for (struct addrinfo *p = ai; p && eg->n < IMG_EGRESS_MAX_ADDRS; p = p->ai_next) {
                enum addr_class c = addr_class(p->ai_addr);
                if (c != ADDR_PUBLIC && !listed && !operator_allows(p->ai_addr)) {
                        char t[64];
                        addr_text(p->ai_addr, t, sizeof(t));
                        r = drv_err(err, EPERM,
                                    "registry %s: %s is a %s address: refused for a job (the "
                                    "operator lists registries jobs may use on such addresses in "
                                    "DROVER_IMAGE_REGISTRY_ALLOW; docs/images.md)",
                                    auth, t, class_names[c]);
                        break;
                }
                if (p->ai_addrlen <= sizeof(eg->addrs[0]))
                        memcpy(&eg->addrs[eg->n++], p->ai_addr, p->ai_addrlen);
        }
        freeaddrinfo(ai);
        return r;
}

bool img_egress_allowed(const struct img_egress *eg, const struct sockaddr *sa, char *why, size_t n)
{
        uint8_t a[16], b[16];
        size_t len = addr_bytes(sa, a);
        enum addr_class c = addr_class(sa);
        if (c == ADDR_PUBLIC || operator_allows(sa))
                return true;
        for (size_t i = 0; len && i < eg->n; i++)
                if (addr_bytes((const struct sockaddr *)&eg->addrs[i], b) == len &&
                    memcmp(a, b, len) == 0)
                        return true; /* the registry the job named, any port */
        char t[64];
        addr_text(sa, t, sizeof(t));
        snprintf(why, n, "%s (%s)", t, class_names[c]);
        return false;
}

/* egress.c: the egress policy of a job's private network (docs/sandbox.md "Egress"): the
 * internet yes; the builder's private networks, link-local addresses, other jobs and the host
 * itself no — except the host's DNS servers and what the operator allows
 * ($DROVER_SANDBOX_EGRESS_ALLOW). This file only plans the iptables rules; net.c runs them. */
#include "sandbox/internal.h"

#include <arpa/inet.h>

/* Never reached by default: RFC 1918, CGNAT (RFC 6598), link-local (cloud metadata at
 * 169.254.169.254), "this network", loopback, IETF protocol assignments, benchmarking,
 * multicast and reserved. drover's own job range is added from the plan. */
static const char *const blocked[] = {
    "10.0.0.0/8",     "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10",
    "169.254.0.0/16", "0.0.0.0/8",     "127.0.0.0/8",    "192.0.0.0/24",
    "198.18.0.0/15",  "224.0.0.0/4",   "240.0.0.0/4",
};

/* "ADDR[/BITS][:PORT]" -> cidr "a.b.c.d/N" and port ("" = every port). */
static int parse_entry(const char *s, char cidr[48], char port[8])
{
        char addr[32] = "";
        unsigned bits = 32, p = 0;
        size_t alen = strcspn(s, "/:");
        if (alen == 0 || alen >= sizeof(addr))
                return -EINVAL;
        memcpy(addr, s, alen);
        const char *rest = s + alen;
        struct in_addr in;
        if (inet_pton(AF_INET, addr, &in) != 1)
                return -EINVAL;
        if (*rest == '/') {
                char *end;
                unsigned long b = strtoul(rest + 1, &end, 10);
                if (end == rest + 1 || b > 32)
                        return -EINVAL;
                bits = (unsigned)b;
                rest = end;
        }
        if (*rest == ':') {
                char *end;
                unsigned long v = strtoul(rest + 1, &end, 10);
                if (end == rest + 1 || v == 0 || v > 65535)
                        return -EINVAL;
                p = (unsigned)v;
                rest = end;
        }
        if (*rest)
                return -EINVAL;
        uint32_t a = ntohl(in.s_addr) & (bits ? ~0U << (32 - bits) : 0);
        struct in_addr net = {htonl(a)};
        inet_ntop(AF_INET, &net, addr, sizeof(addr));
        snprintf(cidr, 48, "%s/%u", addr, bits);
        if (p)
                snprintf(port, 8, "%u", p);
        else
                port[0] = 0;
        return 0;
}

int sb_egress_plan(struct sb_net *n, const char *allow, const char *resolv_conf,
                   struct drv_error *err)
{
        n->n_allow = 0;
        n->n_dns = 0;
        _cleanup_free_ char *copy = strdup(allow ? allow : "");
        if (!copy)
                return drv_err(err, ENOMEM, "out of memory");
        char *save = NULL;
        for (char *t = strtok_r(copy, ", \t\n", &save); t; t = strtok_r(NULL, ", \t\n", &save)) {
                if (n->n_allow >= SB_EGRESS_MAX)
                        return drv_err(err, E2BIG,
                                       "DROVER_SANDBOX_EGRESS_ALLOW: more than %d entries",
                                       SB_EGRESS_MAX);
                struct sb_egress *e = &n->allow[n->n_allow];
                if (parse_entry(t, e->cidr, e->port) < 0)
                        return drv_err(
                            err, EINVAL,
                            "DROVER_SANDBOX_EGRESS_ALLOW: '%s' is not ADDR[/BITS][:PORT] "
                            "(IPv4)",
                            t);
                n->n_allow++;
        }
        /* the job resolves names through the host's servers: port 53 there stays open */
        _cleanup_free_ char *text = NULL;
        struct drv_error e;
        if (!resolv_conf || drv_read_file(resolv_conf, &text, NULL, 1 << 20, &e) < 0)
                return 0;
        for (char *line = strtok_r(text, "\n", &save); line && n->n_dns < SB_EGRESS_DNS_MAX;
             line = strtok_r(NULL, "\n", &save)) {
                char ns[64];
                struct in_addr in;
                if (sscanf(line, " nameserver %63s", ns) == 1 && inet_pton(AF_INET, ns, &in) == 1)
                        snprintf(n->dns[n->n_dns++], sizeof(n->dns[0]), "%s", ns);
        }
        return 0;
}

/* Append one rule: words separated by single spaces (none holds a space). */
static int add(char ***rules, const char *fmt, ...) DRV_PRINTF(2, 3);
static int add(char ***rules, const char *fmt, ...)
{
        va_list ap;
        va_start(ap, fmt);
        char *s = NULL;
        int n = vasprintf(&s, fmt, ap);
        va_end(ap);
        if (n < 0)
                return -ENOMEM;
        return drv_strv_push_take(rules, s);
}

/* ACCEPT rules of chain for dst (and port: tcp and udp). */
static int add_accept(char ***rules, const char *chain, const char *h, const char *dst,
                      const char *port)
{
        if (!port || !port[0])
                return add(rules, "%s -i %s -d %s -j ACCEPT", chain, h, dst);
        int r = add(rules, "%s -i %s -d %s -p tcp --dport %s -j ACCEPT", chain, h, dst, port);
        return r ?: add(rules, "%s -i %s -d %s -p udp --dport %s -j ACCEPT", chain, h, dst, port);
}

int sb_egress_rules(const struct sb_net *n, const char *base_subnet, char ***out)
{
        char **rules = NULL;
        const char *h = n->host_if;
        const char *rej = "REJECT --reject-with icmp-admin-prohibited";
        /* forwarded: answers back in; never another job; the allowed; then no private range */
        int r =
            add(&rules, "FORWARD -o %s -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT", h);
        r = r ?: add(&rules, "FORWARD -i %s -o drv+ -j DROP", h);
        for (size_t i = 0; r == 0 && i < n->n_allow; i++)
                r = add_accept(&rules, "FORWARD", h, n->allow[i].cidr, n->allow[i].port);
        for (size_t i = 0; r == 0 && i < n->n_dns; i++)
                r = add_accept(&rules, "FORWARD", h, n->dns[i], "53");
        for (size_t i = 0; r == 0 && i < DRV_ARRAY_SIZE(blocked); i++)
                r = add(&rules, "FORWARD -i %s -d %s -j %s", h, blocked[i], rej);
        if (r == 0 && base_subnet)
                r = add(&rules, "FORWARD -i %s -d %s -j %s", h, base_subnet, rej);
        r = r ?: add(&rules, "FORWARD -i %s -j ACCEPT", h);
        /* to the host's own addresses (its side of the veth and every other): DNS and the
         * allowed only */
        r = r ?: add(&rules, "INPUT -i %s -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT", h);
        for (size_t i = 0; r == 0 && i < n->n_allow; i++)
                r = add_accept(&rules, "INPUT", h, n->allow[i].cidr, n->allow[i].port);
        for (size_t i = 0; r == 0 && i < n->n_dns; i++)
                r = add_accept(&rules, "INPUT", h, n->dns[i], "53");
        r = r ?: add(&rules, "INPUT -i %s -j %s", h, rej);
        if (r < 0) {
                drv_strv_free(rules);
                return r;
        }
        *out = rules;
        return 0;
}

/* netfail.c: the shared classification of network and TLS failures (netfail.h). */
#include "agent/netfail.h"

#include <stddef.h>

#define CERT_DOC "docs/operations.md, Certificates and join tokens"

static const struct {
        const char *kind, *fix;
} table[] = {
    [NETFAIL_NONE] = {"", NULL},
    [NETFAIL_RESOLVE] = {"cannot resolve", "check the host name and /etc/resolv.conf"},
    [NETFAIL_PROXY] = {"proxy failed", "check HTTPS_PROXY/HTTP_PROXY, or add the host to NO_PROXY"},
    [NETFAIL_CONNECT] = {"unreachable", "check the address and port, firewalls/security groups, "
                                        "and whether the host belongs in NO_PROXY"},
    [NETFAIL_TIMEOUT] = {"timed out", "check the address and port, firewalls/security groups, "
                                      "and whether the host belongs in NO_PROXY"},
    [NETFAIL_UNTRUSTED] = {"TLS certificate not trusted",
                           "trust the server's CA: set tls.ca in the agent config (drover check: "
                           "--ca-file) to the CA that signed the server's certificate"},
    [NETFAIL_EXPIRED] = {"TLS certificate expired or not yet valid",
                         "renew the server's certificate, and check this machine's clock "
                         "(timedatectl)"},
    [NETFAIL_NAME] = {"TLS certificate names another host",
                      "use a host name the server's certificate names (subjectAltName) in the "
                      "URL, or reissue the certificate for this name"},
    [NETFAIL_HANDSHAKE] = {"TLS handshake failed",
                           "check that the server speaks TLS on this port, and the client "
                           "certificate and key files (tls.cert, tls.key)"},
    [NETFAIL_CLOSED] = {"connection closed by the server",
                        "check the client certificate and key (tls.cert, tls.key): a server may "
                        "refuse one by closing the connection; then the server's log"},
    [NETFAIL_CLIENT_REFUSED] = {"client certificate refused",
                                "the server did not accept tls.cert: issue it from the CA the "
                                "server trusts for clients, with extendedKeyUsage clientAuth, "
                                "not expired (" CERT_DOC ")"},
    [NETFAIL_OTHER] = {"failed", "see the message above"},
};

const char *netfail_kind(enum netfail f)
{
        if ((size_t)f >= sizeof(table) / sizeof(table[0]))
                f = NETFAIL_OTHER;
        return table[f].kind;
}

const char *netfail_fix(enum netfail f)
{
        if ((size_t)f >= sizeof(table) / sizeof(table[0]))
                f = NETFAIL_OTHER;
        return table[f].fix;
}

enum netfail netfail_of_verify(bool untrusted, bool expired, bool name_mismatch)
{
        if (untrusted || (!expired && !name_mismatch))
                return NETFAIL_UNTRUSTED;
        if (expired)
                return NETFAIL_EXPIRED;
        return name_mismatch ? NETFAIL_NAME : NETFAIL_UNTRUSTED;
}

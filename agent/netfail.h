/* netfail.h: what went wrong reaching a server (control plane, output processor, storage, Docker
 * host), in the words `drover check` and the daemon's log share: one classification, a short
 * name and a fix for each, whichever TLS library met the failure (libcurl: netfail_of_curl in
 * http.c; mbedTLS: http_lean_tls.c). No I/O. */
#pragma once

#include <stdbool.h>

enum netfail {
        NETFAIL_NONE = 0,
        NETFAIL_RESOLVE,        /* the host name does not resolve */
        NETFAIL_PROXY,          /* the proxy failed or refused the tunnel */
        NETFAIL_CONNECT,        /* no TCP connection */
        NETFAIL_TIMEOUT,        /* no answer in time */
        NETFAIL_UNTRUSTED,      /* the server's certificate is not signed by a trusted CA */
        NETFAIL_EXPIRED,        /* the server's certificate expired or is not valid yet */
        NETFAIL_NAME,           /* the server's certificate names another host */
        NETFAIL_HANDSHAKE,      /* TLS failed otherwise (not TLS on this port, no common cipher) */
        NETFAIL_CLOSED,         /* the server closed or reset the connection, no reason given */
        NETFAIL_CLIENT_REFUSED, /* the server refused our client certificate */
        NETFAIL_OTHER,
};

/* A short name of the failure ("client certificate refused"); "" for NETFAIL_NONE. */
const char *netfail_kind(enum netfail f);
/* What to do about it (one line); NULL for NETFAIL_NONE. */
const char *netfail_fix(enum netfail f);
/* A server certificate's verification failure, from what the TLS library reports, first match
 * wins: not signed by a trusted CA, expired (or not valid yet), names another host. */
enum netfail netfail_of_verify(bool untrusted, bool expired, bool name_mismatch);
/* The libcurl result rc of a transfer on easy (a CURL *; its TLS verify result refines
 * CURLE_PEER_FAILED_VERIFICATION) whose error buffer holds errbuf. In http.c: libcurl only. */
enum netfail netfail_of_curl(void *easy, int rc, const char *errbuf);

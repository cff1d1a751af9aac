/* docker_int.h: internals shared by the docker client's files (not a contract). */
#pragma once

#include "executor/docker/docker.h"

#include <curl/curl.h>

struct docker {
        CURL *curl;
        char *base; /* https://127.0.0.1:2376 or http://localhost (unix socket) */
        char *sock; /* unix socket path or NULL */
        char *host; /* for messages */
        char *ca_pem, *cert_pem, *key_pem;
        char api[16];    /* negotiated, e.g. "1.41" */
        char engine[64]; /* engine version */
        char arch[16];   /* engine's Arch */
        char node[128];  /* drover.node label value, "" = none */
        char errbuf[CURL_ERROR_SIZE];
};

/* One raw request. body/body_len (may be NULL) or body_fd >= 0 (chunked upload); response bytes go
 * to sink(ud, p, n) when sink is set, else into resp. headers: extra header lines (NULL ok).
 * versioned: prefix the path with /vAPI. Connect errors are retried with backoff. */
struct docker_req {
        const char *method;
        const char *path;
        bool versioned;
        const char *const *headers;
        const char *body;
        size_t body_len;
        int body_fd;
        size_t (*sink)(void *ud, const char *p, size_t n);
        void *sink_ud;
        int retries; /* extra attempts on connect errors */
};
int docker_do(struct docker *d, const struct docker_req *rq, struct strbuf *resp, long *status,
              struct drv_error *err);
/* Error for a status >= 400 with Docker's {"message": ...}. */
int docker_status_err(struct docker *d, const char *method, const char *path, long status,
                      const char *body, struct drv_error *err);
/* URL-escape s (malloc'd). */
char *docker_escape(struct docker *d, const char *s);
/* On a reset easy handle: error buffer, timeouts, and how to reach the engine (unix socket, or
 * TLS with the endpoint's CA, client certificate and key). */
void docker_curl_endpoint(struct docker *d, CURL *c);

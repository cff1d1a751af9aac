/* http_common.c: what both control-plane transports (http.c, libcurl; http_lean.c, mbedTLS)
 * share: a request's set-up and the protocol's request headers (docs/protocol-control-plane.md),
 * so they exist once. */
#include "agent/agent.h"

struct http_req *http_req_new(struct agent *a, const char *path, char *body_take, size_t impl_size,
                              http_done_fn done, void *data, char **url)
{
        struct http_req *r = calloc(1, sizeof(*r));
        *url = drv_asprintf("%s%s", a->cfg.servers[a->server], path);
        if (!r || !*url || !(r->impl = calloc(1, impl_size))) {
                free(r);
                free(*url);
                *url = NULL;
                free(body_take);
                return NULL;
        }
        r->body = body_take;
        r->done = done;
        r->data = data;
        r->server = a->server;
        r->started_ns = drv_now_ns();
        r->reg_gen = a->reg_gen;
        return r;
}

void http_req_free(struct http_req *r)
{
        if (!r)
                return;
        free(r->impl);
        free(r->body);
        strbuf_release(&r->resp);
        free(r);
}

const char *http_req_body(const struct http_req *r)
{
        return r->body ? r->body : "{}";
}

int http_req_headers(const struct agent *a, const char *path,
                     int (*add)(void *ctx, const char *line), void *ctx)
{
        char h[320];
        int e = add(ctx, "User-Agent: drover-agent");
        if (e >= 0)
                e = add(ctx, "Content-Type: application/json");
        snprintf(h, sizeof(h), "Drover-Protocol: %d", AGENT_PROTOCOL_VERSION);
        if (e >= 0)
                e = add(ctx, h);
        if (e >= 0 && !strcmp(path, "/v1/register") && a->token) {
                _cleanup_free_ char *auth = drv_asprintf("Authorization: Bearer %s", a->token);
                e = auth ? add(ctx, auth) : -ENOMEM;
                if (auth)
                        explicit_bzero(auth, strlen(auth));
        }
        if (e >= 0 && a->node_id) {
                snprintf(h, sizeof(h), "Drover-Node: %s", a->node_id);
                e = add(ctx, h);
        }
        return e < 0 ? e : 0;
}

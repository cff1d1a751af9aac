/* docker_hosts.c: the agent's remote Docker engines (docker_hosts:): leftovers of a crashed run
 * removed at start (only what carries drover's labels and this node's name), and the engine handed
 * to claimed jobs whose spec names none. */
#include "agent/agent.h"
#include "executor/docker/docker.h" /* struct js_docker_host (header only) */

const char *agent_node_name(struct agent *a)
{
        static char host[256];
        if (a->cfg.name && a->cfg.name[0])
                return a->cfg.name;
        if (!host[0] && gethostname(host, sizeof(host) - 1) < 0)
                snprintf(host, sizeof(host), "localhost");
        return host;
}

static void host_free(struct js_docker_host *h)
{
        free(h->url);
        free(h->ca_pem);
        free(h->cert_pem);
        free(h->key_pem);
        memset(h, 0, sizeof(*h));
}

void agent_docker_free(struct agent *a)
{
        for (size_t i = 0; i < a->n_docker; i++)
                host_free(&a->docker[i]);
        free(a->docker);
        a->docker = NULL;
        a->n_docker = 0;
}

/* Read the PEM files of every configured engine; an engine whose files cannot be read is
 * logged and left out. */
void agent_docker_load(struct agent *a)
{
        agent_docker_free(a);
        size_t n = drv_strv_len(a->cfg.docker_hosts);
        if (!n)
                return;
        a->docker = calloc(n, sizeof(*a->docker));
        if (!a->docker)
                return;
        for (size_t i = 0; i < n; i++) {
                const char *url, *f[3];
                agent_config_docker_host(&a->cfg, i, &url, &f[0], &f[1], &f[2]);
                char *pem[3] = {NULL, NULL, NULL};
                struct drv_error e = {0};
                int r = 0;
                for (size_t k = 0; k < 3 && r == 0; k++)
                        r = drv_read_file(f[k], &pem[k], NULL, 1 << 20, &e);
                struct js_docker_host *h = &a->docker[a->n_docker];
                h->url = strdup(url);
                h->ca_pem = pem[0];
                h->cert_pem = pem[1];
                h->key_pem = pem[2];
                if (r < 0 || !h->url) {
                        log_error("docker_host_unusable", "url=%s error=\"%s\"", url,
                                  r < 0 ? e.message : "out of memory");
                        host_free(h);
                        continue;
                }
                a->n_docker++;
        }
}

/* Does the job need an engine: docker runtime, or a setup_remote_docker step? */
static bool wants_docker(json_t *spec)
{
        json_t *ex = json_object_get(spec, "executor");
        const char *rt = json_string_value(json_object_get(ex, "runtime"));
        if (rt && strcmp(rt, "docker") == 0)
                return true;
        size_t i;
        json_t *st;
        json_array_foreach (json_object_get(spec, "steps"), i, st) {
                const char *t = json_string_value(json_object_get(st, "type"));
                if (t && strcmp(t, "setup_remote_docker") == 0)
                        return true;
        }
        return false;
}

int agent_docker_fill_spec(struct agent *a, json_t *spec)
{
        json_t *ex = json_object_get(spec, "executor");
        if (!a->n_docker || !json_is_object(ex) || json_object_get(ex, "docker_host") ||
            !wants_docker(spec))
                return 0;
        const struct js_docker_host *h = &a->docker[a->docker_next++ % a->n_docker];
        json_t *o = json_pack("{s:s, s:s, s:s, s:s}", "url", h->url, "ca", h->ca_pem, "cert",
                              h->cert_pem, "key", h->key_pem);
        if (!o || json_object_set_new(ex, "docker_host", o) < 0)
                return -ENOMEM;
        log_info("docker_host_assigned", "url=%s", h->url);
        return 1;
}

/* docker_cleanup.c: `drover agent` removes this node's Docker leftovers on every engine at start
 * with the docker client (libcurl). The lean drover-agent runs this in a `drover agent` child
 * (docker_cleanup_lean.c). */
#include "agent/agent.h"
#include "executor/docker/docker.h"

void agent_docker_cleanup(struct agent *a)
{
        const char *node = agent_node_name(a);
        for (size_t i = 0; i < a->n_docker; i++) {
                unsigned removed = 0;
                struct drv_error e = {0};
                uint64_t t0 = drv_now_ns();
                if (docker_cleanup_leftovers(&a->docker[i], node, &removed, &e) < 0)
                        log_warn("docker_leftovers_failed", "url=%s node=%s error=\"%s\"",
                                 a->docker[i].url, node, e.message);
                else
                        log_info("docker_leftovers_removed", "url=%s node=%s removed=%u ms=%llu",
                                 a->docker[i].url, node, removed,
                                 (unsigned long long)((drv_now_ns() - t0) / 1000000));
        }
}

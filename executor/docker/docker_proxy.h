/* docker_proxy.h: the Docker API proxy a job's setup_remote_docker gets instead of the engine's
 * key. The supervisor keeps the engine's client key; the job gets a unix socket in its own
 * directory, served by a proxy process that lets through only what a job needs for docker
 * build/run/ps/logs/exec/cp/pull/push/compose-style use, and only on what the job itself created
 * (labelled drover.job=LABEL): no privileged containers, host paths, host namespaces, devices or
 * added capabilities; everything it does not know is refused. At the end the proxy is killed and
 * everything labelled for the job is removed from the engine. docs/docker.md has the threat model.
 */
#pragma once

#include "executor/docker/docker.h"

#include <sys/types.h>

struct docker_proxy;

struct docker_proxy_opts {
        struct docker *engine; /* an open connection (its key goes to the proxy process only) */
        const char *label;     /* drover.job value for everything the job creates */
        int dirfd;             /* the job's directory for the socket (DPROXY_SOCK_NAME) */
        uid_t uid;             /* the socket's owner: the job user as the host sees it */
        gid_t gid;
};

/* Start the proxy process; returns once its socket listens. *out is the caller's. */
int docker_proxy_start(const struct docker_proxy_opts *o, struct docker_proxy **out,
                       struct drv_error *err);
/* Stop the proxy (its connections too) and remove everything labelled for the job from the engine
 * (containers, images it built, tags it made, networks, volumes); frees p. NULL is fine. */
int docker_proxy_stop(struct docker_proxy *p, struct drv_error *err);

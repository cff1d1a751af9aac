/* setup_remote.h: the `setup_remote_docker` step for a job in the local sandbox — the job gets
 * DOCKER_HOST, DOCKER_TLS_VERIFY=1 and DOCKER_CERT_PATH (cert files written inside the job) for
 * the remote engine of the spec's executor.docker_host, so its `docker` CLI talks to it. */
#pragma once

#include "executor/stepctx.h"

/* Check the engine answers (API version negotiated), write ca.pem/cert.pem/key.pem into
 * ~/.drover-remote-docker (owned by the job user, key 0600) and append the exports to the
 * file named by BASH_ENV in the step's environment, so later steps see them. */
int docker_setup_remote(const struct step_ctx *ctx, const struct js_step *step,
                        struct drv_error *err);

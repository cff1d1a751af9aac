/* stepenv.h: the environment of a step and the built-in steps that are not `run`. */
#pragma once

#include "executor/jobspec.h"
#include "executor/stepctx.h"

/* Where `circleci` and friends are offered inside, and the PATH a step gets unless the job or
 * step sets one (an image's own PATH replaces the part after the tools dir). */
#define STEPENV_TOOLS_DIR "/run/drover/bin"
#define STEPENV_DEFAULT_PATH                                                                       \
        STEPENV_TOOLS_DIR ":/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

/* The whole environment of a run step, built from scratch: CircleCI's variables, the job's
 * environment, then the step's (later wins). NULL-terminated "K=V" vector; caller frees. */
char **stepenv_build(const struct jobspec *spec, const struct js_step *st, const char *home,
                     const char *user, const char *bash_env);
/* Every secret value of the job (for masking); NULL-terminated, caller frees. */
char **stepenv_secrets(const struct jobspec *spec);
/* Run a built-in step (caches, workspaces, artifacts, test results, ssh keys, remote docker). */
int stepbuiltin_run(const struct step_ctx *ctx, const struct js_step *st, struct drv_error *err);

/* stepctx.h: what a built-in step handler (caches, workspaces, artifacts, test results, checkout)
 * is given by the step machine. Handlers run in `drover job`, outside the sandbox. */
#pragma once

#include "executor/events.h"
#include "executor/jobspec.h"
#include "executor/output.h"

struct objstore;
struct docker_proxy;

struct step_ctx {
        const struct jobspec *spec;
        int root_fd;         /* O_PATH dirfd of the job's root as the host sees it: resolve every
                                job path with openat2(RESOLVE_IN_ROOT), never follow it out */
        const char *home;    /* inside absolute path of the job user's home */
        const char *workdir; /* inside absolute path of the job's working directory */
        uid_t uid;           /* host uid/gid that files written into the job must get */
        gid_t gid;
        struct objstore *store; /* the job's object store (NULL when the spec has no storage) */
        struct output *out;     /* progress lines: output_step_printf(out, step_index, ...) */
        unsigned step_index;
        struct job_events *events;          /* artifact and test-result records */
        char *const *envp;                  /* the step's environment (for {{ .Environment.X }}) */
        struct docker_proxy **docker_proxy; /* setup_remote_docker's: started once, stopped at
                                               the job's end (docker_proxy.h) */
};

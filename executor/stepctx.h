/* stepctx.h: what a built-in step handler (caches, workspaces, artifacts, test results, checkout)
 * is given by the step machine. Handlers run in `drover job`, outside the sandbox; every job file
 * they read or write goes through the in-job helper (cache/jobhelper.h). */
#pragma once

#include "executor/events.h"
#include "executor/jobspec.h"
#include "executor/output.h"

struct objstore;
struct docker_proxy;

/* Starts processes inside the job for built-in steps (the in-job storage helper,
 * cache/jobhelper.h): as the job user, in its namespaces and cgroup (executor/stephelper.c). */
struct step_runner {
        void *ud;
        /* start argv in the job: stdin from in_fd, stdout and stderr to out_fd */
        int (*start)(void *ud, const char *const *argv, int in_fd, int out_fd, int *proc,
                     struct drv_error *err);
        /* 0 and the wait status (*oom: killed by the job's memory limit) once proc ended;
         * -EAGAIN while it runs */
        int (*exit_of)(void *ud, int proc, int *status, bool *oom);
        /* SIGKILL proc's process group */
        void (*kill)(void *ud, int proc);
        /* path of the drover binary inside the job */
        const char *tool;
};

struct step_ctx {
        const struct jobspec *spec;
        int root_fd;         /* O_PATH dirfd of the job's root as the host sees it (the remote
                                Docker runtime: its home copy); storage steps never open job
                                paths through it but through runner (the in-job helper) */
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
        /* the in-job helper's launcher (executor/stephelper.h); storage steps fail without one */
        const struct step_runner *runner;
        uint64_t idle_timeout; /* seconds the helper may stay silent (no_output_timeout) */
};

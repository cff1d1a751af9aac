/* runtime.h: where a job's processes run — the step machine drives a runtime through these calls.
 * Implementations: the local sandbox (runtime_sandbox.c); a remote Docker engine (issue 6). */
#pragma once

#include "executor/jobspec.h"

struct runtime;

/* One process to start in the job's environment. */
struct runtime_exec {
        const char *const *argv;
        const char *const *envp; /* complete environment */
        const char *cwd;         /* inside path */
        int out_fd;              /* stdout and stderr go here (one ordered stream) */
        bool as_root;
};

struct runtime_exit {
        int proc;
        int status; /* wait status */
        bool oom;
        uint64_t cpu_usec;
        uint64_t peak_memory;
};

/* One interactive process (SSH rerun sessions): on a terminal, or with three separate stdio fds. */
struct runtime_session_exec {
        const char *const *argv;
        const char *const *envp; /* complete environment */
        const char *cwd;         /* inside path */
        bool pty;                /* a new terminal inside the job; its master comes back */
        unsigned short rows, cols;
        int in_fd, out_fd, err_fd; /* without pty: host fds given to the process (-1 /dev/null) */
};

/* Receives the exit of a process started by runtime_spawn_session (instead of runtime_next_exit
 * returning it); called from the thread that drains exits, under the runtime's lock. */
typedef void (*runtime_exit_fn)(void *ctx, const struct runtime_exit *ex);

/* How a runtime reaches its job while it sets up and tears down the environment (all optional). */
struct runtime_hooks {
        /* one line (no newline) for the job's output: image pull progress, the services
         * started, a service that ended; called from any thread, never two at once. NULL:
         * stderr */
        void (*notice)(void *ud, const char *line);
        /* true once the job is canceled: polled (about every 100 ms) during long setup work
         * (image pulls), which then stops promptly and runtime_open fails with -ECANCELED */
        bool (*canceled)(void *ud);
        void *ud;
};

struct runtime_config {
        const struct jobspec *spec;
        const char *self_exe;   /* the drover binary, offered inside as `circleci` */
        const char *source_dir; /* optional host dir bound read-only at INJOB_SOURCE_DIR */
        struct runtime_hooks hooks;
};

/* What one runtime implements (impl is its own state). runtime_open picks the implementation from
 * the spec's executor.runtime: runtime_sandbox_ops (runtime_sandbox.c) for "sandbox"; the remote
 * Docker runtime adds its table to runtime.c for "docker". */
struct runtime_ops {
        const char *name;
        int (*open)(const struct runtime_config *cfg, void **impl, struct drv_error *err);
        int (*spawn)(void *impl, const struct runtime_exec *ex, int *proc, struct drv_error *err);
        int (*event_fd)(void *impl);
        int (*next_exit)(void *impl, struct runtime_exit *ev, struct drv_error *err);
        bool (*has_pending_exit)(void *impl);
        int (*signal)(void *impl, int proc, int sig);
        int (*kill_all)(void *impl, struct drv_error *err);
        int (*root_fd)(void *impl);
        uid_t (*host_uid)(void *impl);
        gid_t (*host_gid)(void *impl);
        const char *(*home)(void *impl);
        const char *(*user)(void *impl);
        uint64_t (*memory_limit)(void *impl);
        bool (*path_exists)(void *impl, const char *inside_path);
        int (*write_file)(void *impl, const char *inside_path, const void *data, size_t n,
                          mode_t mode, struct drv_error *err);
        void (*close)(void *impl);
        /* optional (NULL: SSH rerun is not supported by this runtime) */
        int (*spawn_session)(void *impl, const struct runtime_session_exec *ex, int *proc,
                             int *pty_master, struct drv_error *err);
        int (*connect_tcp)(void *impl, const char *host, uint16_t port, int *fd,
                           struct drv_error *err);
        int (*resize_session)(void *impl, int proc, int pty_master, unsigned short rows,
                              unsigned short cols);
        /* optional: report what changed outside the steps (a service that ended) through
         * hooks.notice */
        void (*poll)(void *impl);
        /* optional: an fd readable when poll has something to report (-1: none); part of
         * runtime_event_fd, so that the step machine calls runtime_poll at once */
        int (*poll_fd)(void *impl);
        /* optional: write a step's script where the job can neither pre-create nor fill it (the
         * sandbox: a directory drover owns, bound read-only inside); *inside_path receives its
         * path inside (caller frees). NULL: runtime_write_script falls back to write_file */
        int (*write_script)(void *impl, const char *name, const void *data, size_t n,
                            char **inside_path, struct drv_error *err);
        /* optional: has the job's environment died under us (the sandbox's pid 1 was killed)?
         * Then reason says why, and nothing may touch the job's root any more */
        bool (*broken)(void *impl, char *reason, size_t n);
};
extern const struct runtime_ops runtime_sandbox_ops;
extern const struct runtime_ops runtime_docker_ops; /* executor/docker/runtime_docker.c */

/* Start the job's environment (sandbox with limits from the spec's resources). */
int runtime_open(const struct runtime_config *cfg, struct runtime **out, struct drv_error *err);
int runtime_spawn(struct runtime *rt, const struct runtime_exec *ex, int *proc,
                  struct drv_error *err);
/* fd readable when exits may be pending (an epoll fd of the implementation's event fd and the
 * runtime's own wake-up) or when runtime_poll has something to report (the implementation's
 * poll_fd: a service that ended); runtime_next_exit returns -EAGAIN when no exit is. Whoever
 * waits on it calls runtime_next_exit and runtime_poll when it is readable. */
int runtime_event_fd(struct runtime *rt);
int runtime_next_exit(struct runtime *rt, struct runtime_exit *ev, struct drv_error *err);
bool runtime_has_pending_exit(struct runtime *rt);
/* Signal the process group of one process. */
int runtime_signal(struct runtime *rt, int proc, int sig);
/* Kill every process of the job (background steps included). */
int runtime_kill_all(struct runtime *rt, struct drv_error *err);
/* O_PATH dirfd of the job's root as the host sees it, for built-in steps (-1 if none). */
int runtime_root_fd(struct runtime *rt);
/* Host uid/gid of the job user. */
uid_t runtime_host_uid(struct runtime *rt);
gid_t runtime_host_gid(struct runtime *rt);
/* Inside path of the job user's home; job user name. */
const char *runtime_home(struct runtime *rt);
const char *runtime_user(struct runtime *rt);
/* Memory limit in bytes (0 = none), for "out of memory (limit N)". */
uint64_t runtime_memory_limit(struct runtime *rt);
/* Does an inside path exist (e.g. /bin/bash)? */
bool runtime_path_exists(struct runtime *rt, const char *inside_path);
/* Write a file inside the job (mode, owned by the job user), e.g. step scripts. Mode 0600 marks a
 * private file (a key): it is never readable by others on its way, nor passed in an argv. */
int runtime_write_file(struct runtime *rt, const char *inside_path, const void *data, size_t n,
                       mode_t mode, struct drv_error *err);
/* Write a step's script (mode 0700 for the job user) named name; *inside_path receives where the
 * job finds it (caller frees). Where the runtime has no place of its own: /tmp/name in the job. */
int runtime_write_script(struct runtime *rt, const char *name, const void *data, size_t n,
                         char **inside_path, struct drv_error *err);
/* True when the job's environment died under drover (the sandbox's pid 1 was killed, e.g. by the
 * OOM killer): the job must end at once as an infrastructure failure; reason (n bytes) says why.
 */
bool runtime_broken(struct runtime *rt, char *reason, size_t n);
/* SSH rerun. Every runtime_* call (but open and close) may come from several threads: the
 * runtime serialises them with one lock. */
/* Does this runtime run interactive sessions (runtime_spawn_session)? */
bool runtime_has_sessions(struct runtime *rt);
/* Start an interactive process; its exit goes to on_exit(ctx, ...), never to runtime_next_exit.
 * With ex->pty, *pty_master receives the terminal's master fd (the caller closes it). */
int runtime_spawn_session(struct runtime *rt, const struct runtime_session_exec *ex, int *proc,
                          int *pty_master, runtime_exit_fn on_exit, void *ctx,
                          struct drv_error *err);
/* New window size of a session's terminal (pty_master as runtime_spawn_session returned it). */
int runtime_resize_session(struct runtime *rt, int proc, int pty_master, unsigned short rows,
                           unsigned short cols);
/* From a session thread: take every pending exit now — sessions' go to their callbacks, the
 * others are held for runtime_next_exit (runtime_event_fd becomes readable). Lets sessions see
 * their processes end while the step machine is busy elsewhere (a long built-in step). */
void runtime_drain_exits(struct runtime *rt);
/* Stop routing proc's exit to its callback (the exit is then dropped). */
void runtime_forget_session(struct runtime *rt, int proc);
/* A TCP connection to host:port as seen from inside the job (sandbox: from its network namespace;
 * docker: through a relay inside the primary container); -ENOTSUP when the runtime cannot. Not
 * serialised with the other calls: a connect can take seconds. */
int runtime_connect_tcp(struct runtime *rt, const char *host, uint16_t port, int *fd,
                        struct drv_error *err);
/* Let the runtime report what changed outside the steps (a service container that ended)
 * through its hooks.notice; a no-op for runtimes without it. Called by the step machine when
 * runtime_event_fd is readable (while a step runs) and between steps. */
void runtime_poll(struct runtime *rt);
/* At `drover run`/`drover job`/agent start: remove what crashed runs left behind — job
 * directories under /run/drover whose owner is gone, and sandbox_sweep_stale's cgroups and
 * network rules. Never touches what a live job owns. */
int runtime_sweep_stale(struct drv_error *err);
/* Kill everything, release every resource. */
void runtime_close(struct runtime *rt);
static inline void runtime_closep(struct runtime **p)
{
        if (*p)
                runtime_close(*p);
}

/* sandbox.h: the isolation every local job runs in — one long-lived sandbox per job, many
 * processes. */
#pragma once

#include "lib/drv.h"

#include <sys/resource.h>

enum sandbox_net {
        SANDBOX_NET_NONE,    /* own net namespace with loopback only */
        SANDBOX_NET_PRIVATE, /* own net namespace + veth pair + NAT to the outside */
};

/* An extra bind mount from the host into the sandbox. */
struct sandbox_bind {
        const char *host_path;
        const char *inside_path;
        bool readonly;
};

/* Sandboxes that can run at once on a host: each takes a uid range and a network slot (a
 * docker job's primary and each of its services: one each). The agent sizes its jobs and their
 * services against this (docs/sandbox.md "Slots"). */
#define SANDBOX_SLOTS 1024

/* pids_max when a config asks for none (docker runtime services get it too). */
#define SANDBOX_PIDS_DEFAULT 4096

struct sandbox_config {
        const char *name;   /* job id: names the cgroup and the network; [A-Za-z0-9._-] */
        const char *rootfs; /* NULL: the host's root read-only; else an unpacked image dir */
        const char *const *lowerdirs; /* optional: overlay lower layers (top first),
                                         NULL-terminated; used instead of rootfs when set */
        const char *hostname;         /* default "drover" */
        enum sandbox_net net;
        uint64_t memory_bytes; /* 0 = unlimited */
        double cpus;           /* 0 = unlimited */
        uint64_t pids_max;     /* 0 = default (SANDBOX_PIDS_DEFAULT) */
        uint64_t disk_bytes;   /* size bound of the writable area; 0 = default (10 GiB) */
        uid_t uid;             /* the job user inside; default 3434 ("circleci") */
        gid_t gid;
        const char *user_name;           /* default "circleci" */
        const char *home;                /* inside path, default /home/circleci */
        const char *const *masked_paths; /* extra host paths hidden behind empty tmpfs */
        const struct sandbox_bind *binds;
        size_t n_binds;
        bool no_seccomp; /* testing only: skip the seccomp profile */
        bool ids_given;  /* uid/gid are used as given, 0 included (an image's root user) */
        /* Share the network namespace of this running sandbox instead of a new one (sibling
         * sandboxes of a job: service containers reachable on localhost); net is then ignored.
         */
        struct sandbox *join_netns_of;
        /* optional: the job's parent cgroup (sandbox_group_create); this sandbox's cgroup is
         * made below it, so the group's limits cap this sandbox and its siblings together */
        const struct sandbox_group *group;
};

/* A parent cgroup for the sibling sandboxes of one job (a docker job's primary and services):
 * memory, cpus and pids limits over their sum (0 = unlimited; pids 0 = SANDBOX_PIDS_DEFAULT).
 * Destroy it after every member sandbox. */
struct sandbox_group;
int sandbox_group_create(const char *name, uint64_t memory_bytes, double cpus, uint64_t pids_max,
                         struct sandbox_group **out, struct drv_error *err);
uint64_t sandbox_group_memory_limit(const struct sandbox_group *g);
void sandbox_group_destroy(struct sandbox_group *g);

/* How to start one process inside an existing sandbox. */
struct sandbox_exec {
        const char *const *argv; /* argv[0] is looked up in PATH of envp if it has no '/' */
        const char *const *envp; /* the whole environment (nothing is inherited) */
        const char *cwd;         /* inside path; created if missing (owned by the job user) */
        int stdin_fd;            /* host fds handed to the process; -1 = /dev/null */
        int stdout_fd;
        int stderr_fd;
        bool as_root;     /* uid 0 inside (still unprivileged on the host) */
        bool new_session; /* setsid(); default behaviour for steps: true. false: stays in the
                             process group of the caller of sandbox_create (interactive use) */
        bool last;        /* one-shot use (drover sandbox): the sandbox ends when this process
                             exits — everything else inside is killed then, and only
                             sandbox_next_exit and sandbox_destroy are of use afterwards */
};

/* Why and how a process ended. */
struct sandbox_exit {
        int proc_id;          /* as returned by sandbox_spawn */
        int status;           /* wait status (WIFEXITED/WIFSIGNALED) */
        bool oom;             /* killed by the OOM killer of the job's memory limit */
        uint64_t cpu_usec;    /* user+system CPU of the process and its reaped children */
        uint64_t peak_memory; /* bytes: peak of the job cgroup during the process, 0 if unknown */
};

struct sandbox;

/* Create the sandbox: namespaces, rootfs, cgroup with limits, network, pid-1 inside.
 * Returns 0 and a new sandbox (free with sandbox_destroy). Called by root, or rootless by an
 * ordinary user (user namespaces; the same sandbox where the kernel lets a user do it, see
 * docs/rootless.md). */
int sandbox_create(const struct sandbox_config *cfg, struct sandbox **out, struct drv_error *err);
/* sandbox_create, then sandbox_spawn of ex, with one round trip less: the spawn request is
 * queued while pid 1 finishes its setup (one-shot use: drover sandbox). A create error: *out is
 * NULL. A spawn error: *out is the sandbox (destroy it). */
int sandbox_create_spawn(const struct sandbox_config *cfg, const struct sandbox_exec *ex,
                         struct sandbox **out, int *proc_id, struct drv_error *err);
/* Start a process inside (new process group, seccomp + caps + no_new_privs applied). */
int sandbox_spawn(struct sandbox *sb, const struct sandbox_exec *ex, int *proc_id,
                  struct drv_error *err);
/* Start a process on a new pseudo-terminal of the sandbox's own devpts (stdio on its slave, a
 * new session with the pty as controlling tty; ex's fds are ignored). *master_fd receives the
 * master (the caller's; resize it with TIOCSWINSZ). rows/cols 0: the kernel's default size. */
int sandbox_spawn_pty(struct sandbox *sb, const struct sandbox_exec *ex, unsigned short rows,
                      unsigned short cols, int *proc_id, int *master_fd, struct drv_error *err);
/* An fd of the sandbox's network namespace (caller closes), e.g. to connect to a port inside
 * with setns(2) in a helper thread. Returns the fd or -errno. */
int sandbox_open_netns(struct sandbox *sb, struct drv_error *err);
/* An fd of one of the sandbox's namespaces, kind as in /proc/PID/ns ("net", "user"); rootless,
 * a process must enter the "user" one before the "net" one (caller closes). */
int sandbox_open_ns(struct sandbox *sb, const char *kind, struct drv_error *err);
/* An fd that becomes readable when sandbox_next_exit has something (for epoll). */
int sandbox_event_fd(struct sandbox *sb);
/* Fetch one finished process; -EAGAIN when none is pending. Never blocks. */
int sandbox_next_exit(struct sandbox *sb, struct sandbox_exit *ev, struct drv_error *err);
/* True when exits are queued in memory (sandbox_event_fd may then not be readable). */
bool sandbox_has_pending_exit(struct sandbox *sb);
/* Send sig to the process group of a spawned process. -ESRCH when it is gone. */
int sandbox_signal(struct sandbox *sb, int proc_id, int sig);
/* Kill every process in the sandbox except pid 1 (background steps included). */
int sandbox_kill_processes(struct sandbox *sb, struct drv_error *err);
/* Has pid 1 ended (killed, e.g. by the OOM killer)? Then everything inside is gone, the root fd
 * is closed (sandbox_root_fd: -1) and reason (n bytes) says why. Does not reap pid 1. */
bool sandbox_broken(struct sandbox *sb, char *reason, size_t n);
/* The oom_score_adj every process started in a sandbox sets for itself: above pid 1's, so that
 * the OOM killer of the job's memory limit takes the job's processes first. */
#define SANDBOX_JOB_OOM_SCORE_ADJ 500
/* At start of a drover process that runs jobs: remove the cgroups (empty, a minute old) and the
 * private-network rules and veths (their slot's lock free) that crashed runs left behind. */
int sandbox_sweep_stale(struct drv_error *err);
/* O_PATH|O_DIRECTORY fd of the sandbox's root as the host sees it (resolve with RESOLVE_IN_ROOT).
 */
int sandbox_root_fd(struct sandbox *sb);
/* Host uid/gid that the job user (or inside uid 0 when root is true) maps to. */
uid_t sandbox_host_uid(struct sandbox *sb, bool root);
gid_t sandbox_host_gid(struct sandbox *sb, bool root);
/* Inside paths of the job user's home and name. */
const char *sandbox_home(struct sandbox *sb);
/* Limits actually applied (for "out of memory (limit N)" messages). */
uint64_t sandbox_memory_limit(struct sandbox *sb);
/* What the job's output should say about this sandbox, one line each ("" when nothing): a
 * rootless sandbox without a delegated cgroup ("resource limits not enforced: no delegated
 * cgroup") and its network (pasta, or the user's own namespace). */
const char *sandbox_notes(struct sandbox *sb);
/* Created by an ordinary user (docs/rootless.md)? */
bool sandbox_rootless(struct sandbox *sb);
/* Cgroup mode found at start: "v1", "v2" (or "hybrid" reported as v1). */
const char *sandbox_cgroup_mode(struct sandbox *sb);
/* Kill everything (whole tree, every time), reap, remove cgroup, network and work area. */
void sandbox_destroy(struct sandbox *sb);
static inline void sandbox_destroyp(struct sandbox **p)
{
        if (*p)
                sandbox_destroy(*p);
}

/* `drover sandbox [opts] -- CMD...`: run one command in a fresh sandbox; exit status is CMD's. */
int cmd_sandbox(int argc, char **argv);

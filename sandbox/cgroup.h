/* cgroup.h: internal — one interface over cgroups v1 (legacy/hybrid) and v2 (unified). */
#pragma once

#include "lib/drv.h"

/* The statfs magics of cgroupfs (CGROUP_SUPER_MAGIC), cgroup2 (CGROUP2_SUPER_MAGIC) and tmpfs
 * (TMPFS_MAGIC) come from the kernel's header: the one definition for the sandbox and `drover
 * check`. */
#include <linux/magic.h>

enum cg_mode {
        CG_MODE_V1,     /* legacy: one hierarchy per controller */
        CG_MODE_HYBRID, /* v1 controllers + an empty cgroup2 at unified/ (driven as v1) */
        CG_MODE_V2,     /* unified */
};

/* Decide the mode from statfs magics of the cgroup root and of root/unified (0 if absent).
 * Returns -ENOENT when neither looks like cgroups. Pure: unit-tested. */
int cg_mode_from_magic(long root_magic, long unified_magic, enum cg_mode *out);
/* statfs() the real tree at root (normally /sys/fs/cgroup). */
int cg_detect(const char *root, enum cg_mode *out, struct drv_error *err);
/* "v1", "hybrid", "v2". */
const char *cg_mode_name(enum cg_mode m);

struct cg_limits {
        uint64_t memory_bytes; /* 0 = unlimited */
        double cpus;           /* 0 = unlimited */
        uint64_t pids_max;     /* 0 = unlimited */
        bool pids_default;     /* pids_max is a default, not asked for: skip it without pids */
        bool parent;           /* a parent of groups: made in every hierarchy (v1 cpu too) */
};

struct cg_usage {
        uint64_t memory_peak; /* bytes, 0 if unknown */
        uint64_t oom_kills;   /* oom_kill counter of the group */
        uint64_t cpu_usec;
};

/* A NULL group (a rootless sandbox without a delegated cgroup) is accepted by every function
 * below that takes one: no limits, nothing to move, kill or read. */
struct cgroup;

/* Where groups are made. root: the cgroup mount root (the v2 mount for CG_MODE_V2, the directory
 * holding per-controller mounts for v1). parent: path relative to each hierarchy under which the
 * job group "name" is created (e.g. "/process_api/x/drover"); NULL means "the caller's own cgroup
 * + /drover" read from /proc/self/cgroup. */
struct cg_place {
        enum cg_mode mode;
        const char *root;
        const char *parent;
};

/* May we make groups at pl without privileges: a v2 tree whose group we are in is ours to
 * write (a systemd user slice with Delegate=yes)? The rootless sandbox runs without limits when
 * not. */
bool cg_delegated(const struct cg_place *pl);
/* Create the job group with its limits. */
int cg_create(const struct cg_place *pl, const char *name, const struct cg_limits *lim,
              struct cgroup **out, struct drv_error *err);
/* Move a (host) pid into the group (every hierarchy). */
int cg_add_pid(struct cgroup *cg, pid_t pid, struct drv_error *err);
/* Kill every process of the group: v2 cgroup.kill, else freeze + SIGCONT/SIGKILL each + thaw.
 * Waits (briefly) until the group is empty when wait is set. */
int cg_kill_all(struct cgroup *cg, bool wait, struct drv_error *err);
/* v2: an O_PATH fd of the group for clone3(CLONE_INTO_CGROUP) (caller closes); v1: -1. */
int cg_dir_fd(struct cgroup *cg);
/* Current usage; what the cgroup version does not tell is left 0. */
int cg_read_usage(struct cgroup *cg, struct cg_usage *u);
/* Reset the memory peak where the version allows (v1 max_usage_in_bytes, v2 memory.peak). */
void cg_reset_peak(struct cgroup *cg);
/* Memory limit applied, 0 = none. */
uint64_t cg_memory_limit(struct cgroup *cg);
/* Directory of the group in the (first) hierarchy, for tests and logs. */
const char *cg_path(struct cgroup *cg);
/* Remove the empty groups (no processes, no children) below drover's parent in every hierarchy
 * that are at least min_age_s old: what crashed runs left. A live group is never removed. */
int cg_sweep(const struct cg_place *pl, unsigned min_age_s, struct drv_error *err);
/* Remove the group directories (after the processes are gone) and free. NULL is fine. */
int cg_destroy(struct cgroup *cg, struct drv_error *err);

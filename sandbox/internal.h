/* internal.h: shared between the sandbox's supervisor side (sandbox.c), its pid 1 (init.c), the
 * seccomp profile (seccomp.c) and networking (net.c). Not part of the contract. */
#pragma once

#include "lib/drv.h"
#include "sandbox/sandbox.h"

#include <linux/filter.h>

/* ---- supervisor plumbing (plumbing.c) ---- */
#define UID_BASE  0x40000000u /* host uid of inside uid 0 in slot 0; 65536 ids per slot */
#define UID_RANGE 65536u
/* [A-Za-z0-9._-], 1..64, no leading dot */
bool sb_name_ok(const char *s);
struct cg_place;
/* Where cgroups are made (DROVER_CGROUP_FS, DROVER_CGROUP_PARENT, the mode found there). */
int sb_cg_place(struct cg_place *pl, struct drv_error *err);
/* The cgroup name of a group (its members' groups are "name/member"). */
const char *sb_group_name(const struct sandbox_group *g);
/* The slot directory: drv_run_root()/uid-slots (/run/drover/uid-slots as root), found once. */
const char *sb_slot_dir(void);
/* Mark slot as having (on) or no longer having a private network (sweep.c). */
void sb_net_mark(int slot, bool on);
/* Hold slot's lock if nobody does: the lock fd (close to release), or -1 when it is taken. */
int sb_try_slot(int slot);
/* Take the first free uid/network slot: an flock'ed file, released when the fd closes. */
int sb_take_slot(int *slot, int *fd_out, struct drv_error *err);
/* uid_map and gid_map of pid: inside 0.. -> host base.. (UID_RANGE ids) */
int sb_write_maps(pid_t pid, uint32_t base, struct drv_error *err);
/* Rootless id maps (drover run by an ordinary user; docs/rootless.md). The job user (uid/gid of
 * the config) is always the user's own id, so what the job leaves in a bound host path is the
 * user's; with subordinate ids (newuidmap/newgidmap and /etc/subuid, /etc/subgid ranges of 65535
 * or more) every other inside id 0..65535 maps into them, root included. */
struct sb_ids {
        bool sub;       /* subordinate ranges found and the helpers installed */
        uid_t user_uid; /* the user's own ids */
        gid_t user_gid;
        uint32_t sub_uid; /* first subordinate uid / gid */
        uint32_t sub_gid;
};
/* Find what the user may map (no helper is run). */
void sb_ids_plan(struct sb_ids *ids);
/* Write pid's maps for job ids uid/gid: through the helpers when ids->sub, else (or when they
 * refuse: ids->sub is cleared) the single-id maps. *root_mapped: inside uid 0 exists (subordinate
 * ids, or a job user that is root). */
int sb_write_maps_rootless(pid_t pid, struct sb_ids *ids, uid_t uid, gid_t gid, bool *root_mapped,
                           struct drv_error *err);
struct sb_init_args;
/* Is pasta (Debian: passt) installed and the tun device open to us? */
bool sb_pasta_usable(void);
/* pasta for pid's network namespace (user-mode networking, a copy of the host's addresses and
 * routes; state files in dir, named by slot): *helper is its (daemonized) pid, to kill. */
int sb_pasta_start(pid_t pid, const char *dir, int slot, pid_t *helper, struct drv_error *err);
/* Rootless: pid 1 opens the host paths itself (open_tree needs CAP_SYS_ADMIN over the mount
 * namespace: its own, not the host's), before it leaves the user's ids. */
int sb_open_paths(const struct sandbox_config *cfg, struct sb_init_args *a, struct drv_error *err);
/* A SOCK_SEQPACKET pair with large buffers. */
int sb_make_pair(int sv[2], struct drv_error *err);
/* Does this process have other threads? (pid 1 is cloned differently then) */
bool sb_multithreaded(void);

/* ---- seccomp: compiled at build time, installed by pid 1 ---- */
struct sb_bpf {
        struct sock_filter *insns; /* the allow-list; one allocation holds both programs */
        unsigned short len;
        struct sock_filter *deny_insns; /* exceptions inside allowed syscalls (points into insns) */
        unsigned short deny_len;
};
/* The Docker-like profile as classic BPF, two filters to install in order (caller frees insns):
 * a copy of the programs compiled at build time (seccomp.c, no libseccomp at run time). */
int sb_seccomp_build(struct sb_bpf *out, struct drv_error *err);
/* Compile the profile with libseccomp (seccomp_profile.c: the build-time generator and tests). */
int sb_seccomp_compile(struct sb_bpf *out, struct drv_error *err);

/* ---- supervisor <-> init messages (SOCK_SEQPACKET) ---- */
enum sbm_type {
        SBM_SPAWN = 1, /* + up to 3 fds (SCM_RIGHTS) */
        SBM_SIGNAL,    /* signal the process group of proc_id */
        SBM_KILLALL,   /* kill(-1, SIGKILL) inside: everything but pid 1 */
};
#define SBM_F_ROOT        1u
#define SBM_F_NEW_SESSION 2u
#define SBM_F_STDIN       4u /* which of the three fds are attached, in this order */
#define SBM_F_STDOUT      8u
#define SBM_F_STDERR      16u
#define SBM_F_PTY         32u /* stdio on a new pty (see below) */
#define SBM_F_LAST                                                                                 \
        64u                /* pid 1 exits once this process has exited and its exit                \
                              event is sent: the sandbox ends with it */
#define SBM_MAX (1u << 20) /* largest request (argv + envp + cwd) */
/* SBM_F_PTY: the process gets a new pty of the sandbox's own devpts; sig carries the window size
 * (rows << 16 | cols) and the reply carries the master fd (SCM_RIGHTS). */

struct sbm_req {
        uint32_t type;
        int32_t proc_id;
        int32_t sig;
        uint32_t flags;
        uint32_t argc, envc;
        /* then argc + envc + 1 NUL-terminated strings: argv..., envp..., cwd */
};
/* Where a spawn failed (sbm_reply.stage). */
enum sb_stage { ST_NONE, ST_FDS, ST_CWD, ST_CAPS, ST_IDS, ST_SECCOMP, ST_EXEC };
struct sbm_reply {
        int32_t proc_id;
        int32_t result; /* 0 or -errno */
        int32_t pid;    /* pid inside the sandbox */
        int32_t stage;  /* where a spawn failed (enum sb_stage), 0 if it did not */
};
struct sbm_exit {
        int32_t proc_id;
        int32_t status;
        uint64_t cpu_usec;
};

/* What init learns at start (inherited memory: init is a fork-style clone). */
struct sb_init_args {
        const struct sandbox_config *cfg;
        int sync_fd;       /* socket: init waits for 1 byte, then answers 0 + message or errno */
        int ctl_fd;        /* requests / replies */
        int ev_fd;         /* exit events */
        int rootfs_fd;     /* O_PATH of cfg->rootfs or -1 */
        int *lower_fds;    /* O_PATH of cfg->lowerdirs, -1 terminated, or NULL */
        int *bind_fds;     /* O_PATH per cfg->binds */
        int *host_fds;     /* host-root mode: detached copies of "/" and of the host mounts shown,
                              -1 terminated (sb_host_trees), or NULL: "/" bound recursively */
        char **host_paths; /* their mount points, host_paths[0] = "/" */
        uint64_t disk_bytes;
        uid_t uid;
        gid_t gid;
        const char *home;
        const char *hostname;
        const struct sb_bpf *bpf; /* NULL when seccomp is off */
        bool rootless;            /* created by an ordinary user (rootless.c) */
        bool lo_up;               /* a new network namespace: bring lo up */
};

/* Supervisor, host-root mode: detached (non-recursive) copies of "/" and of every host mount
 * not under a path the sandbox replaces or hides (/proc, /sys, /dev, /tmp, the default masks):
 * only those are attached in the job's root (a recursive bind would copy every host mount —
 * Docker's overlays and netns files too — on each start, and tear them down again). */
int sb_host_trees(struct sb_init_args *a, struct drv_error *err);
void sb_host_trees_free(struct sb_init_args *a);
/* Build the job's root and pivot into it (pid 1, inside the new namespaces). */
int sb_rootfs_build(const struct sb_init_args *a, struct drv_error *err);
/* Body of pid 1; never returns. */
_Noreturn void sb_init_main(const struct sb_init_args *a);

/* Message on the sync socket when init fails to start. */
struct sb_sync_msg {
        int32_t err; /* 0 = ready */
        char msg[512];
};

/* ---- networking ---- */
#define SB_EGRESS_MAX     64
#define SB_EGRESS_DNS_MAX 3
struct sb_net {
        bool private_net;
        int slot;
        char host_if[16];
        char inside_if[16];
        char host_addr[20];   /* a.b.c.d */
        char inside_addr[20]; /* a.b.c.d */
        char subnet[24];      /* a.b.c.d/30 */
        char base[24];        /* drover's whole job range: a.b.c.d/N */
        bool rules_added;
        /* egress policy (egress.c): the operator's allow-list and the host's DNS servers */
        struct sb_egress {
                char cidr[48]; /* a.b.c.d/N */
                char port[8];  /* "" = every port */
        } allow[SB_EGRESS_MAX];
        size_t n_allow;
        char dns[SB_EGRESS_DNS_MAX][16];
        size_t n_dns;
};
/* Address plan for slot: subnet base from $DROVER_SANDBOX_SUBNET (default 10.213.0.0/16). */
int sb_net_plan(struct sb_net *n, int slot, struct drv_error *err);
/* Private network: veth pair into init's netns, addresses, default route, NAT rules. */
int sb_net_setup(struct sb_net *n, pid_t init_pid, struct drv_error *err);
/* Remove what setup made (safe to call on a partial setup). */
void sb_net_teardown(struct sb_net *n);
/* Egress policy (egress.c). Parse allow ("ADDR[/BITS][:PORT]" entries separated by commas or
 * blanks; $DROVER_SANDBOX_EGRESS_ALLOW) and the IPv4 nameservers of resolv_conf into n. */
int sb_egress_plan(struct sb_net *n, const char *allow, const char *resolv_conf,
                   struct drv_error *err);
/* The filter rules of n's policy, top to bottom, each "CHAIN match... -j TARGET" (words
 * separated by single spaces); base_subnet is drover's job range. Caller frees (strv). */
int sb_egress_rules(const struct sb_net *n, const char *base_subnet, char ***out);
/* A crashed run's network of n's slot (the caller holds the slot's lock): every copy of its rules
 * and its veth. */
void sb_net_remove_stale(struct sb_net *n);
/* Bring lo up in the current netns (init calls this). */
int sb_net_loopback_up(void);

/* sandbox.c: the supervisor side — create the namespaces and cgroup, talk to pid 1, destroy. */
#include "sandbox/cgroup.h"
#include "sandbox/internal.h"

#include <inttypes.h>
#include <fcntl.h>
#include <linux/mount.h>
#include <linux/sched.h>
#include <sched.h>
#include <poll.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>

/* A spawn request sent, its answer not read yet. */
struct sent_spawn {
        int32_t proc_id;
        uint64_t oom_before;
};

static int spawn_send(struct sandbox *sb, const struct sandbox_exec *ex, uint32_t flags,
                      int32_t sig, struct sent_spawn *ss, struct drv_error *err);

struct proc_rec {
        int proc_id;
        uint64_t oom_before;
};

struct sandbox {
        char *name;
        pid_t init_pid;
        int ctl_fd, ev_fd, lock_fd, root_fd;
        int slot;
        enum cg_mode cg_mode;
        struct cgroup *cg;
        struct sb_net net;
        struct sb_bpf bpf;
        uid_t uid;
        gid_t gid;
        char *home;
        int next_proc_id;
        struct proc_rec *procs; /* spawned, exit not yet returned */
        size_t n_procs;
        bool init_gone;
        bool net_marked; /* sb_net_mark'ed: unmark after the teardown */
        bool init_dead;  /* sandbox_broken saw pid 1 end (exit status kept for the reason) */
        int init_code;   /* its siginfo si_code and si_status */
        int init_status;
        /* sandbox_create_spawn: the first spawn, sent with "c" while pid 1 finishes its setup */
        const struct sandbox_exec *first;
        struct sent_spawn first_sent;
        int first_r; /* 0: sent, answer pending */
        /* rootless (rootless.c): the user's ids, what was found in place of root's means */
        bool rootless;
        struct sb_ids ids;
        bool root_mapped; /* inside uid 0 exists */
        bool host_net;    /* the user's own network namespace (no pasta) */
        pid_t net_helper; /* pasta, killed at destroy */
        char notes[256];  /* what the job output should say about it (sandbox_notes) */
        uint64_t t0;      /* DROVER_SANDBOX_TIMING=1: phase times on stderr (bench/sandbox.sh) */
        bool timing;
};

static void phase(struct sandbox *sb, const char *name)
{
        if (sb->timing)
                fprintf(stderr, "sandbox_timing phase=%s ms=%.3f\n", name,
                        (double)(drv_now_ns() - sb->t0) / 1e6);
}

/* A detached copy of the mount tree at path: pid 1 attaches it with move_mount (a plain bind of
 * a path from the host's mount namespace is refused in the sandbox's). */
static int tree(const char *path)
{
        return (int)syscall(SYS_open_tree, AT_FDCWD, path,
                            OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE);
}

int sb_open_paths(const struct sandbox_config *cfg, struct sb_init_args *a, struct drv_error *err)
{
        a->rootfs_fd = -1;
        int r;
        /* rootless: the host's mounts are locked in pid 1's copy, only a recursive bind of "/" */
        if (!cfg->rootfs && !cfg->lowerdirs && !a->rootless &&
            !getenv("DROVER_SANDBOX_HOST_ROOT_RECURSIVE") && (r = sb_host_trees(a, err)) < 0)
                return r;
        if (cfg->rootfs && !cfg->lowerdirs) {
                a->rootfs_fd = tree(cfg->rootfs);
                if (a->rootfs_fd < 0)
                        return drv_err_errno(err, "rootfs %s", cfg->rootfs);
        }
        if (cfg->lowerdirs) {
                size_t n = drv_strv_len((char *const *)cfg->lowerdirs);
                a->lower_fds = malloc((n + 1) * sizeof(int));
                if (!a->lower_fds)
                        return drv_err(err, ENOMEM, "out of memory");
                for (size_t i = 0; i <= n; i++)
                        a->lower_fds[i] = -1;
                for (size_t i = 0; i < n; i++) {
                        a->lower_fds[i] = tree(cfg->lowerdirs[i]);
                        if (a->lower_fds[i] < 0)
                                return drv_err_errno(err, "lower dir %s", cfg->lowerdirs[i]);
                }
        }
        a->bind_fds = calloc(cfg->n_binds + 1, sizeof(int));
        if (!a->bind_fds)
                return drv_err(err, ENOMEM, "out of memory");
        for (size_t i = 0; i < cfg->n_binds; i++)
                a->bind_fds[i] = -1;
        for (size_t i = 0; i < cfg->n_binds; i++) {
                const struct sandbox_bind *b = &cfg->binds[i];
                if (!b->host_path || !b->inside_path || b->inside_path[0] != '/' ||
                    strstr(b->inside_path, "/../") || drv_endswith(b->inside_path, "/.."))
                        return drv_err(err, EINVAL, "bind %s: inside path must be absolute",
                                       b->host_path ? b->host_path : "(null)");
                a->bind_fds[i] = tree(b->host_path);
                if (a->bind_fds[i] < 0)
                        return drv_err_errno(err, "bind source %s", b->host_path);
        }
        return 0;
}

static void close_paths(const struct sandbox_config *cfg, struct sb_init_args *a)
{
        sb_host_trees_free(a);
        if (a->rootfs_fd >= 0)
                close(a->rootfs_fd);
        for (int *f = a->lower_fds; f && *f >= 0; f++)
                close(*f);
        for (size_t i = 0; a->bind_fds && i < cfg->n_binds; i++)
                if (a->bind_fds[i] >= 0)
                        close(a->bind_fds[i]);
        free(a->lower_fds);
        free(a->bind_fds);
}

/* Image layers are owned by host ids 0..65535 (as unpacked): show them through an idmapped
 * mount so that inside uid N owns what host uid N owned on disk. */
static int idmap_layers(pid_t pid, const struct sb_init_args *a, struct drv_error *err)
{
        if (a->rootfs_fd < 0 && !a->lower_fds)
                return 0;
        char path[64];
        snprintf(path, sizeof(path), "/proc/%d/ns/user", (int)pid);
        _cleanup_close_ int ns = open(path, O_RDONLY | O_CLOEXEC);
        if (ns < 0)
                return drv_err_errno(err, "open %s", path);
        struct mount_attr attr = {.attr_set = MOUNT_ATTR_IDMAP, .userns_fd = (uint64_t)ns};
        const int one[2] = {a->rootfs_fd, -1};
        for (const int *f = a->lower_fds ? a->lower_fds : one; *f >= 0; f++)
                if (syscall(SYS_mount_setattr, *f, "", AT_EMPTY_PATH | AT_RECURSIVE, &attr,
                            sizeof(attr)) < 0)
                        return drv_err_errno(err, "idmapped mount of the image (its file system "
                                                  "must support idmapped mounts)");
        return 0;
}

#define SB_CLONE_SAME_USERNS (1ULL << 63) /* our flag, never the kernel's */

/* Fork-style clone (no new stack: works under ASan; the child is a copy of us). On v2 the child
 * is born in the job cgroup (CLONE_INTO_CGROUP): no migration, which costs an RCU grace period.
 * Returns the pid, 0 in the child, -1 with errno. */
static long raw_clone(uint64_t extra, int cgfd, bool *in_cgroup)
{
        /* SB_CLONE_SAME_USERNS: a rootless sibling, already in the first sandbox's namespace */
        const uint64_t flags = (extra & SB_CLONE_SAME_USERNS ? 0 : CLONE_NEWUSER) | CLONE_NEWPID |
                               CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWUTS |
                               (extra & ~SB_CLONE_SAME_USERNS);
        if (cgfd >= 0) {
                struct clone_args ca = {.flags = flags | CLONE_INTO_CGROUP,
                                        /* CLONE_PARENT: the caller's exit signal */
                                        .exit_signal = extra & CLONE_PARENT ? 0 : SIGCHLD,
                                        .cgroup = (uint64_t)cgfd};
                long pid = syscall(SYS_clone3, &ca, sizeof(ca));
                if (pid >= 0) {
                        *in_cgroup = true;
                        return pid;
                }
        }
        return syscall(SYS_clone, flags | SIGCHLD, 0, NULL, NULL, 0);
}

/* pid 1 as our child. A raw clone copies a process without running fork handlers: if another
 * thread held a lock (malloc's), pid 1 would inherit it held. So with threads around, fork()
 * first (glibc resets its locks in the child) and clone from there with CLONE_PARENT.
 * netns_fd >= 0: pid 1 joins that network namespace (the middle process enters it as host root,
 * the clone then keeps it) instead of a new one. */
static long clone_init(struct sandbox *sb, int netns_fd, int userns_fd, bool *in_cgroup)
{
        int cgfd = cg_dir_fd(sb->cg);
        long pid;
        const uint64_t newnet = netns_fd >= 0 || sb->host_net ? 0 : CLONE_NEWNET;
        if (netns_fd < 0 && !sb_multithreaded() && !getenv("DROVER_SANDBOX_FORK_FIRST")) {
                pid = raw_clone(newnet, cgfd, in_cgroup);
        } else {
                int p[2];
                if (pipe2(p, O_CLOEXEC) < 0)
                        return -1;
                pid_t mid = fork();
                if (mid == 0) {
                        close(p[0]);
                        long child = -1;
                        /* rootless: joining a network namespace needs CAP_SYS_ADMIN over our
                         * own user namespace too, so the sibling enters the first sandbox's */
                        if (userns_fd >= 0 && setns(userns_fd, CLONE_NEWUSER) < 0)
                                netns_fd = -2;
                        if (netns_fd == -1 ||
                            (netns_fd >= 0 && setns(netns_fd, CLONE_NEWNET) == 0)) {
                                /* as Docker: any port for anybody in a shared namespace */
                                if (netns_fd >= 0)
                                        (void)drv_write_file(
                                            "/proc/sys/net/ipv4/ip_unprivileged_port_start", "0",
                                            NULL);
                                child = raw_clone(CLONE_PARENT | newnet |
                                                      (userns_fd >= 0 ? SB_CLONE_SAME_USERNS : 0),
                                                  cgfd, in_cgroup);
                        }
                        if (child == 0) {
                                close(p[1]);
                                if (cgfd >= 0)
                                        close(cgfd);
                                return 0;
                        }
                        long m[3] = {child, *in_cgroup, errno};
                        (void)!write(p[1], m, sizeof(m));
                        _exit(0);
                }
                close(p[1]);
                long m[3] = {-1, 0, EIO};
                int e = mid < 0 ? errno : 0;
                if (mid > 0 && DRV_RETRY(read(p[0], m, sizeof(m))) != (ssize_t)sizeof(m))
                        m[0] = -1;
                close(p[0]);
                if (mid > 0)
                        DRV_RETRY(waitpid(mid, NULL, 0));
                pid = m[0];
                *in_cgroup = m[1];
                errno = mid < 0 ? e : (int)m[2];
        }
        if (pid != 0 && cgfd >= 0) {
                int e = errno;
                close(cgfd);
                errno = e;
        }
        if (pid == 0 && cgfd >= 0)
                close(cgfd);
        return pid;
}

/* pid 1 is the last thing the OOM killer may pick: OOM_SCORE_ADJ_MIN from us (host root), which
 * needs CAP_SYS_RESOURCE. Without it pid 1 keeps our score, and the job's processes still rank
 * above it (SB_JOB_OOM_SCORE_ADJ, set by each of them in init.c); if pid 1 dies anyway, the job
 * ends as an infrastructure failure (sandbox_broken). */
static void protect_init(pid_t pid)
{
        static bool told;
        char path[64];
        snprintf(path, sizeof(path), "/proc/%d/oom_score_adj", (int)pid);
        struct drv_error e = {0};
        if (drv_write_file(path, "-1000", &e) < 0 && !told) {
                told = true;
                log_info("sandbox_oom_protect_unavailable",
                         "error=\"%s\" effect=\"pid 1 keeps the supervisor's oom_score_adj; the "
                         "job's processes are still killed first\"",
                         e.message);
        }
}

/* Clone pid 1, map its ids, put it in the cgroup and network, let it build the root. */
/* pid 1 reports its own setup error and dies; what failed after it (the network made for its
 * pid) is a consequence: name the cause. */
static void pid1_error_first(int sync_fd, int *r, struct drv_error *err)
{
        struct sb_sync_msg m;
        if (recv(sync_fd, &m, sizeof(m), MSG_DONTWAIT) == (ssize_t)sizeof(m) && m.err) {
                m.msg[sizeof(m.msg) - 1] = 0;
                *r = drv_err(err, m.err, "sandbox setup: %s", m.msg);
        }
}

static int start_init(struct sandbox *sb, const struct sandbox_config *cfg, struct sb_init_args *a,
                      struct drv_error *err)
{
        int sync[2] = {-1, -1}, ctl[2] = {-1, -1}, ev[2] = {-1, -1}, r;
        _cleanup_close_ int netns_fd = -1, userns_fd = -1;
        if ((r = sb_make_pair(sync, err)) < 0 || (r = sb_make_pair(ctl, err)) < 0 ||
            (r = sb_make_pair(ev, err)) < 0)
                goto out;
        a->sync_fd = sync[1];
        a->ctl_fd = ctl[1];
        a->ev_fd = ev[1];
        bool in_cgroup = false;
        if (cfg->join_netns_of) {
                char ns[64];
                snprintf(ns, sizeof(ns), "/proc/%d/ns/net", (int)cfg->join_netns_of->init_pid);
                netns_fd = open(ns, O_RDONLY | O_CLOEXEC);
                if (netns_fd < 0) {
                        r = drv_err_errno(err, "open %s (the sandbox to share a network with)", ns);
                        goto out;
                }
        }
        if (cfg->join_netns_of && sb->rootless) {
                char ns[64];
                snprintf(ns, sizeof(ns), "/proc/%d/ns/user", (int)cfg->join_netns_of->init_pid);
                if ((userns_fd = open(ns, O_RDONLY | O_CLOEXEC)) < 0) {
                        r = drv_err_errno(err, "open %s (the sandbox to share a network with)", ns);
                        goto out;
                }
        }
        long pid = clone_init(sb, netns_fd, userns_fd, &in_cgroup);
        if (pid < 0) {
                r = drv_err_errno(err, "clone the sandbox's pid 1");
                goto out;
        }
        if (pid == 0) {
                close(sync[0]);
                close(ctl[0]);
                close(ev[0]);
                if (sb->lock_fd >= 0)
                        close(sb->lock_fd);
                sb_init_main(a);
        }
        sb->init_pid = (pid_t)pid;
        phase(sb, "clone");
        if (!sb->rootless)
                protect_init(sb->init_pid);
        close(TAKE_FD(sync[1]));
        close(TAKE_FD(ctl[1]));
        close(TAKE_FD(ev[1]));
        sb->root_mapped = true;
        if (userns_fd >= 0) /* the first sandbox's namespace: its maps */
                sb->root_mapped = cfg->join_netns_of->root_mapped, r = 0;
        else if (sb->rootless)
                r = sb_write_maps_rootless(sb->init_pid, &sb->ids, sb->uid, sb->gid,
                                           &sb->root_mapped, err);
        else
                r = sb_write_maps(sb->init_pid, UID_BASE + (uint32_t)sb->slot * UID_RANGE, err);
        if (r < 0 || (!sb->rootless && (r = idmap_layers(sb->init_pid, a, err)) < 0))
                goto out;
        /* "g": build the root (trusted code) while we move pid 1 into the cgroup and make the
         * network; "c": both done, nothing of the job can start before this. "s": the same
         * where inside uid 0 does not exist (rootless single-id map) */
        if (DRV_RETRY(write(sync[0], sb->root_mapped ? "g" : "s", 1)) != 1) {
                r = drv_err_errno(err, "start the sandbox's pid 1");
                goto out;
        }
        if (!in_cgroup && (r = cg_add_pid(sb->cg, sb->init_pid, err)) < 0)
                goto out;
        phase(sb, "maps_cg");
        if (cfg->net == SANDBOX_NET_PRIVATE && !cfg->join_netns_of && sb->rootless &&
            !sb->host_net &&
            (r = sb_pasta_start(sb->init_pid, sb_slot_dir(), sb->slot, &sb->net_helper, err)) < 0) {
                pid1_error_first(sync[0], &r, err);
                goto out;
        }
        if (cfg->net == SANDBOX_NET_PRIVATE && !cfg->join_netns_of && !sb->rootless) {
                sb_net_mark(sb->slot, true); /* before any rule: a crash leaves it to the sweep */
                sb->net_marked = true;
                if ((r = sb_net_setup(&sb->net, sb->init_pid, err)) < 0) {
                        pid1_error_first(sync[0], &r, err);
                        goto out;
                }
        }
        if (DRV_RETRY(write(sync[0], "c", 1)) != 1) {
                r = drv_err_errno(err, "start the sandbox's pid 1");
                goto out;
        }
        if (sb->first) { /* queued: pid 1 finds it when it starts serving, no round trip */
                sb->ctl_fd = ctl[0];
                sb->first_r = spawn_send(sb, sb->first, 0, 0, &sb->first_sent, NULL);
                sb->ctl_fd = -1;
        }
        struct sb_sync_msg m;
        ssize_t n = DRV_RETRY(recv(sync[0], &m, sizeof(m), 0));
        if (n != (ssize_t)sizeof(m)) {
                r = drv_err(err, EIO, "the sandbox's pid 1 died while starting");
                goto out;
        }
        if (m.err) {
                m.msg[sizeof(m.msg) - 1] = 0;
                r = drv_err(err, m.err, "sandbox setup: %s", m.msg);
                goto out;
        }
        char root[64];
        snprintf(root, sizeof(root), "/proc/%d/root", (int)sb->init_pid);
        phase(sb, "ready");
        sb->root_fd = open(root, O_PATH | O_DIRECTORY | O_CLOEXEC);
        /* a queued one-shot spawn may have run and ended the sandbox already */
        if (sb->root_fd < 0 && !(sb->first && sb->first_r == 0 && errno == ENOENT)) {
                r = drv_err_errno(err, "open %s", root);
                goto out;
        }
        sb->ctl_fd = TAKE_FD(ctl[0]);
        sb->ev_fd = TAKE_FD(ev[0]);
        r = 0;
out:
        for (int i = 0; i < 2; i++) {
                if (sync[i] >= 0)
                        close(sync[i]);
                if (ctl[i] >= 0)
                        close(ctl[i]);
                if (ev[i] >= 0)
                        close(ev[i]);
        }
        return r;
}

/* The sandbox's cgroup name: in the job's group, below it. */
static char *cg_name_for(const struct sandbox_config *cfg)
{
        return cfg->group ? drv_asprintf("%s/%s", sb_group_name(cfg->group), cfg->name)
                          : strdup(cfg->name);
}

static int create(const struct sandbox_config *cfg, const struct sandbox_exec *first,
                  struct sandbox **out, struct drv_error *err)
{
        if (!sb_name_ok(cfg->name))
                return drv_err(err, EINVAL, "sandbox name '%s': use [A-Za-z0-9._-], up to 64",
                               cfg->name ? cfg->name : "");
        _cleanup_(sandbox_destroyp) struct sandbox *sb = calloc(1, sizeof(*sb));
        if (!sb)
                return drv_err(err, ENOMEM, "out of memory");
        sb->rootless = drv_rootless();
        sb->net_helper = -1;
        if (sb->rootless)
                sb_ids_plan(&sb->ids);
        sb->init_pid = -1;
        sb->ctl_fd = sb->ev_fd = sb->lock_fd = sb->root_fd = -1;
        sb->first = first;
        sb->first_r = -1;
        sb->uid = cfg->uid || cfg->ids_given ? cfg->uid : 3434;
        sb->gid = cfg->gid || cfg->ids_given ? cfg->gid : 3434;
        sb->name = strdup(cfg->name);
        sb->home = strdup(cfg->home ? cfg->home : "/home/circleci");
        if (!sb->name || !sb->home)
                return drv_err(err, ENOMEM, "out of memory");
        if (sb->home[0] != '/' || sb->uid >= UID_RANGE || sb->gid >= UID_RANGE)
                return drv_err(err, EINVAL,
                               "job user %u:%u home %s: ids below 65536, absolute "
                               "home",
                               sb->uid, sb->gid, sb->home);
        int r;
        sb->t0 = drv_now_ns();
        sb->timing = getenv("DROVER_SANDBOX_TIMING") != NULL;
        if (!cfg->no_seccomp && (r = sb_seccomp_build(&sb->bpf, err)) < 0)
                return r;
        phase(sb, "seccomp");
        if ((r = sb_take_slot(&sb->slot, &sb->lock_fd, err)) < 0)
                return r;
        struct cg_place pl;
        bool no_cgroup = false;
        if ((r = sb_cg_place(&pl, err)) == -EPERM && sb->rootless) {
                no_cgroup = true; /* run without limits, and say so (sandbox_notes) */
                snprintf(sb->notes, sizeof(sb->notes),
                         "resource limits not enforced: no delegated cgroup\n");
        } else if (r < 0) {
                return r;
        }
        sb->cg_mode = pl.mode;
        _cleanup_free_ char *cgname = cg_name_for(cfg);
        if (!cgname)
                return drv_err(err, ENOMEM, "out of memory");
        struct cg_limits lim = {.memory_bytes = cfg->memory_bytes,
                                .cpus = cfg->cpus,
                                .pids_max = cfg->pids_max ? cfg->pids_max : SANDBOX_PIDS_DEFAULT,
                                .pids_default = cfg->pids_max == 0};
        phase(sb, "slot");
        r = no_cgroup ? 0 : cg_create(&pl, cgname, &lim, &sb->cg, err);
        phase(sb, "cgcreate");
        if (r == -EEXIST) { /* the same job name twice on this host: the slot makes it unique */
                _cleanup_free_ char *alt = drv_asprintf("%s-%d", cgname, sb->slot);
                if (!alt)
                        return drv_err(err, ENOMEM, "out of memory");
                r = cg_create(&pl, alt, &lim, &sb->cg, err);
        }
        if (r < 0)
                return drv_err_prefix(err, "cgroup");
        if (cfg->join_netns_of && cfg->join_netns_of->init_pid <= 0)
                return drv_err(err, EINVAL, "join_netns_of: that sandbox is not running");
        if (cfg->net == SANDBOX_NET_PRIVATE && !cfg->join_netns_of && sb->rootless) {
                sb->host_net = !sb_pasta_usable();
                size_t n = strlen(sb->notes);
                snprintf(sb->notes + n, sizeof(sb->notes) - n, "%s\n",
                         sb->host_net ? "network: the user's own network namespace (pasta is "
                                        "not installed or /dev/net/tun is not open to the user)"
                                      : "network: user-mode networking (pasta)");
        } else if (cfg->net == SANDBOX_NET_PRIVATE && !cfg->join_netns_of &&
                   (r = sb_net_plan(&sb->net, sb->slot, err)) < 0) {
                return r;
        }
        struct sb_init_args a = {.cfg = cfg,
                                 .disk_bytes = cfg->disk_bytes ? cfg->disk_bytes : 10ULL << 30,
                                 .uid = sb->uid,
                                 .gid = sb->gid,
                                 .home = sb->home,
                                 .hostname = cfg->hostname ? cfg->hostname : "drover",
                                 .bpf = cfg->no_seccomp ? NULL : &sb->bpf,
                                 .rootless = sb->rootless,
                                 .lo_up = !cfg->join_netns_of && !sb->host_net,
                                 .rootfs_fd = -1};
        /* rootless: pid 1 opens them (sb_open_paths) */
        r = sb->rootless ? 0 : sb_open_paths(cfg, &a, err);
        if (r == 0)
                r = start_init(sb, cfg, &a, err);
        close_paths(cfg, &a);
        if (r < 0)
                return r;
        log_debug("sandbox_created", "name=%s pid=%d cgroup=%s mode=%s slot=%d", sb->name,
                  (int)sb->init_pid, cg_path(sb->cg), cg_mode_name(sb->cg_mode), sb->slot);
        *out = TAKE_PTR(sb);
        return 0;
}

int sandbox_create(const struct sandbox_config *cfg, struct sandbox **out, struct drv_error *err)
{
        return create(cfg, NULL, out, err);
}

static int request_send(struct sandbox *sb, const void *msg, size_t len, const int *fds, int nfds,
                        struct drv_error *err);
static int request_recv(struct sandbox *sb, struct sbm_reply *rep, int *fd_out,
                        struct drv_error *err);

/* Send one request, wait for its reply; fd_out (optional) receives an fd the reply carries. */
static int request_fd(struct sandbox *sb, const void *msg, size_t len, const int *fds, int nfds,
                      struct sbm_reply *rep, int *fd_out, struct drv_error *err)
{
        int r = request_send(sb, msg, len, fds, nfds, err);
        return r < 0 ? r : request_recv(sb, rep, fd_out, err);
}

static int request(struct sandbox *sb, const void *msg, size_t len, const int *fds, int nfds,
                   struct sbm_reply *rep, struct drv_error *err)
{
        return request_fd(sb, msg, len, fds, nfds, rep, NULL, err);
}

static int request_send(struct sandbox *sb, const void *msg, size_t len, const int *fds, int nfds,
                        struct drv_error *err)
{
        union {
                char b[CMSG_SPACE(3 * sizeof(int))];
                struct cmsghdr align;
        } cm;
        struct iovec iov = {(void *)msg, len};
        struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
        if (nfds > 0) {
                memset(&cm, 0, sizeof(cm));
                mh.msg_control = cm.b;
                mh.msg_controllen = CMSG_SPACE((size_t)nfds * sizeof(int));
                struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
                c->cmsg_level = SOL_SOCKET;
                c->cmsg_type = SCM_RIGHTS;
                c->cmsg_len = CMSG_LEN((size_t)nfds * sizeof(int));
                memcpy(CMSG_DATA(c), fds, (size_t)nfds * sizeof(int));
        }
        if (sb->ctl_fd < 0)
                return drv_err(err, EPIPE, "sandbox %s is gone", sb->name);
        if (DRV_RETRY(sendmsg(sb->ctl_fd, &mh, MSG_NOSIGNAL)) < 0)
                return drv_err_errno(err, "sandbox %s: send request", sb->name);
        return 0;
}

static int request_recv(struct sandbox *sb, struct sbm_reply *rep, int *fd_out,
                        struct drv_error *err)
{
        union {
                char b[CMSG_SPACE(sizeof(int))];
                struct cmsghdr align;
        } rcm;
        struct iovec riov = {rep, sizeof(*rep)};
        struct msghdr rmh = {.msg_iov = &riov,
                             .msg_iovlen = 1,
                             .msg_control = rcm.b,
                             .msg_controllen = sizeof(rcm.b)};
        ssize_t n = DRV_RETRY(recvmsg(sb->ctl_fd, &rmh, MSG_CMSG_CLOEXEC));
        for (struct cmsghdr *c = n > 0 ? CMSG_FIRSTHDR(&rmh) : NULL; c; c = CMSG_NXTHDR(&rmh, c))
                if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
                        int fd;
                        memcpy(&fd, CMSG_DATA(c), sizeof(fd));
                        if (fd_out && *fd_out < 0)
                                *fd_out = fd;
                        else
                                close(fd);
                }
        if (n != (ssize_t)sizeof(*rep))
                return drv_err(err, EPIPE, "sandbox %s: pid 1 did not answer", sb->name);
        return 0;
}

static const char *stage_name(int stage)
{
        static const char *const names[] = {"",
                                            "set up fds",
                                            "enter the directory",
                                            "drop capabilities",
                                            "switch user",
                                            "install seccomp",
                                            "execute"};
        return stage >= 0 && stage < (int)DRV_ARRAY_SIZE(names) ? names[stage] : "start";
}

static int spawn_req(struct sandbox *sb, const struct sandbox_exec *ex, uint32_t flags, int32_t sig,
                     int *proc_id, int *master, struct drv_error *err);

int sandbox_spawn(struct sandbox *sb, const struct sandbox_exec *ex, int *proc_id,
                  struct drv_error *err)
{
        return spawn_req(sb, ex, 0, 0, proc_id, NULL, err);
}

int sandbox_spawn_pty(struct sandbox *sb, const struct sandbox_exec *ex, unsigned short rows,
                      unsigned short cols, int *proc_id, int *master_fd, struct drv_error *err)
{
        struct sandbox_exec e = *ex;
        e.stdin_fd = e.stdout_fd = e.stderr_fd = -1;
        *master_fd = -1;
        int r = spawn_req(sb, &e, SBM_F_PTY, (int32_t)((uint32_t)rows << 16 | cols), proc_id,
                          master_fd, err);
        if (r == 0 && *master_fd < 0)
                return drv_err(err, EPROTO, "sandbox %s: no pty came back", sb->name);
        if (r < 0 && *master_fd >= 0) {
                close(*master_fd);
                *master_fd = -1;
        }
        return r;
}

int sandbox_open_netns(struct sandbox *sb, struct drv_error *err)
{
        return sandbox_open_ns(sb, "net", err);
}

int sandbox_open_ns(struct sandbox *sb, const char *kind, struct drv_error *err)
{
        char p[64];
        snprintf(p, sizeof(p), "/proc/%d/ns/%s", (int)sb->init_pid, kind);
        int fd = open(p, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return drv_err_errno(err, "sandbox %s: open %s", sb->name, p);
        return fd;
}

static int spawn_send(struct sandbox *sb, const struct sandbox_exec *ex, uint32_t flags,
                      int32_t sig, struct sent_spawn *ss, struct drv_error *err)
{
        if (!ex->argv || !ex->argv[0])
                return drv_err(err, EINVAL, "spawn: empty argv");
        _cleanup_strbuf_ struct strbuf body = STRBUF_INIT;
        static const char *const no_env[] = {NULL};
        const char *const *envp = ex->envp ? ex->envp : no_env;
        struct sbm_req rq = {.type = SBM_SPAWN, .proc_id = ++sb->next_proc_id};
        rq.flags = (ex->as_root ? SBM_F_ROOT : 0) | (ex->new_session ? SBM_F_NEW_SESSION : 0) |
                   (ex->last ? SBM_F_LAST : 0) | flags;
        rq.sig = sig;
        int fds[3], nfds = 0;
        const int given[3] = {ex->stdin_fd, ex->stdout_fd, ex->stderr_fd};
        for (int i = 0; i < 3; i++)
                if (given[i] >= 0) {
                        rq.flags |= SBM_F_STDIN << i;
                        fds[nfds++] = given[i];
                }
        int r = strbuf_append(&body, &rq, sizeof(rq));
        for (const char *const *v = ex->argv; !r && *v; v++, rq.argc++)
                r = strbuf_append(&body, *v, strlen(*v) + 1);
        for (const char *const *v = envp; !r && *v; v++, rq.envc++)
                r = strbuf_append(&body, *v, strlen(*v) + 1);
        if (!r)
                r = strbuf_append(&body, ex->cwd ? ex->cwd : "",
                                  strlen(ex->cwd ? ex->cwd : "") + 1);
        if (r < 0)
                return drv_err(err, ENOMEM, "out of memory");
        if (body.len > SBM_MAX)
                return drv_err(err, E2BIG, "spawn %s: argv + environment over %u bytes",
                               ex->argv[0], SBM_MAX);
        memcpy(body.buf, &rq, sizeof(rq));
        struct proc_rec *np = realloc(sb->procs, (sb->n_procs + 1) * sizeof(*np));
        if (!np)
                return drv_err(err, ENOMEM, "out of memory");
        sb->procs = np;
        struct cg_usage u;
        cg_read_usage(sb->cg, &u);
        cg_reset_peak(sb->cg);
        *ss = (struct sent_spawn){rq.proc_id, u.oom_kills};
        return request_send(sb, body.buf, body.len, fds, nfds, err);
}

static int spawn_recv(struct sandbox *sb, const struct sandbox_exec *ex,
                      const struct sent_spawn *ss, int *proc_id, int *master, struct drv_error *err)
{
        struct sbm_reply rep;
        int r = request_recv(sb, &rep, master, err);
        if (r < 0)
                return r;
        if (rep.result < 0 && rep.stage == ST_CWD) /* the directory, not the program */
                return drv_err(err, -rep.result, "cannot enter the directory %s: %s",
                               ex->cwd && *ex->cwd ? ex->cwd : sb->home, strerror(-rep.result));
        if (rep.result < 0)
                return drv_err(err, -rep.result, "cannot %s %s: %s", stage_name(rep.stage),
                               ex->argv[0], strerror(-rep.result));
        sb->procs[sb->n_procs++] = (struct proc_rec){ss->proc_id, ss->oom_before};
        phase(sb, "spawned");
        *proc_id = ss->proc_id;
        return 0;
}

static int spawn_req(struct sandbox *sb, const struct sandbox_exec *ex, uint32_t flags, int32_t sig,
                     int *proc_id, int *master, struct drv_error *err)
{
        struct sent_spawn ss;
        int r = spawn_send(sb, ex, flags, sig, &ss, err);
        return r < 0 ? r : spawn_recv(sb, ex, &ss, proc_id, master, err);
}

int sandbox_create_spawn(const struct sandbox_config *cfg, const struct sandbox_exec *ex,
                         struct sandbox **out, int *proc_id, struct drv_error *err)
{
        *out = NULL;
        int r = create(cfg, ex, out, err);
        if (r < 0)
                return r;
        struct sandbox *sb = *out;
        sb->first = NULL;
        if (sb->first_r < 0) /* could not be queued: the ordinary way */
                return spawn_req(sb, ex, 0, 0, proc_id, NULL, err);
        return spawn_recv(sb, ex, &sb->first_sent, proc_id, NULL, err);
}

int sandbox_event_fd(struct sandbox *sb)
{
        return sb->ev_fd;
}

static void fill_exit(struct sandbox *sb, struct sandbox_exit *ev, int proc_id, int status,
                      uint64_t cpu)
{
        struct cg_usage u;
        cg_read_usage(sb->cg, &u);
        memset(ev, 0, sizeof(*ev));
        ev->proc_id = proc_id;
        ev->status = status;
        ev->cpu_usec = cpu;
        ev->peak_memory = u.memory_peak;
        for (size_t i = 0; i < sb->n_procs; i++) {
                if (sb->procs[i].proc_id != proc_id)
                        continue;
                bool failed = !(WIFEXITED(status) && WEXITSTATUS(status) == 0);
                ev->oom = failed && u.oom_kills > sb->procs[i].oom_before;
                sb->procs[i] = sb->procs[--sb->n_procs];
                break;
        }
}

int sandbox_next_exit(struct sandbox *sb, struct sandbox_exit *ev, struct drv_error *err)
{
        phase(sb, "next_exit");
        if (sb->init_gone) {
                if (sb->n_procs == 0)
                        return -EAGAIN;
                /* pid 1 died (killed, or OOM): everything inside died with it */
                fill_exit(sb, ev, sb->procs[sb->n_procs - 1].proc_id, SIGKILL, 0);
                return 0;
        }
        struct sbm_exit m;
        ssize_t n = DRV_RETRY(recv(sb->ev_fd, &m, sizeof(m), MSG_DONTWAIT));
        if (n < 0 && errno == EAGAIN)
                return -EAGAIN;
        if (n < 0)
                return drv_err_errno(err, "sandbox %s: read exit event", sb->name);
        if (n == 0) {
                sb->init_gone = true;
                if (sb->root_fd >= 0) { /* its root is no longer the job's: never resolve in it */
                        close(sb->root_fd);
                        sb->root_fd = -1;
                }
                return sandbox_next_exit(sb, ev, err);
        }
        if (n != (ssize_t)sizeof(m))
                return drv_err(err, EPROTO, "sandbox %s: short exit event", sb->name);
        fill_exit(sb, ev, m.proc_id, m.status, m.cpu_usec);
        return 0;
}

bool sandbox_has_pending_exit(struct sandbox *sb)
{
        /* exits wait in pid 1's socket (the event fd is readable) except after pid 1 died */
        return sb->init_gone && sb->n_procs > 0;
}

int sandbox_signal(struct sandbox *sb, int proc_id, int sig)
{
        struct sbm_req rq = {.type = SBM_SIGNAL, .proc_id = proc_id, .sig = sig};
        struct sbm_reply rep;
        int r = request(sb, &rq, sizeof(rq), NULL, 0, &rep, NULL);
        return r < 0 ? r : rep.result;
}

int sandbox_kill_processes(struct sandbox *sb, struct drv_error *err)
{
        struct sbm_req rq = {.type = SBM_KILLALL};
        struct sbm_reply rep;
        int r = request(sb, &rq, sizeof(rq), NULL, 0, &rep, err);
        if (r < 0)
                return r;
        if (rep.result < 0)
                return drv_err(err, -rep.result, "sandbox %s: kill processes: %s", sb->name,
                               strerror(-rep.result));
        return 0;
}

bool sandbox_broken(struct sandbox *sb, char *reason, size_t n)
{
        if (!sb || sb->init_pid <= 0)
                return false;
        if (!sb->init_dead) {
                /* pid 1 closed its end of the control socket: it is dying, wait for it */
                struct pollfd p = {.fd = sb->ctl_fd};
                bool hup = sb->init_gone || (sb->ctl_fd >= 0 && poll(&p, 1, 0) == 1 &&
                                             p.revents & (POLLHUP | POLLERR));
                siginfo_t si = {0};
                int opts = WEXITED | WNOWAIT | __WALL | (hup ? 0 : WNOHANG);
                if (DRV_RETRY(waitid(P_PID, (id_t)sb->init_pid, &si, opts)) < 0 || si.si_pid == 0)
                        return false;
                sb->init_dead = true;
                sb->init_code = si.si_code;
                sb->init_status = si.si_status;
                if (sb->root_fd >= 0) {
                        close(sb->root_fd);
                        sb->root_fd = -1;
                }
        }
        struct cg_usage u = {0};
        cg_read_usage(sb->cg, &u);
        uint64_t lim = cg_memory_limit(sb->cg);
        if (sb->init_code == CLD_EXITED)
                snprintf(reason, n,
                         "the job's sandbox ended: its pid 1 (drover-init) exited "
                         "with code %d",
                         sb->init_status);
        else if (sb->init_status == SIGKILL && u.oom_kills > 0 && lim)
                snprintf(reason, n,
                         "the job's sandbox ended: the out-of-memory killer of the job's memory "
                         "limit (%" PRIu64 " MiB) killed its pid 1 (drover-init)",
                         lim >> 20);
        else
                snprintf(reason, n,
                         "the job's sandbox ended: its pid 1 (drover-init) was killed "
                         "by signal %d",
                         sb->init_status);
        return true;
}

int sandbox_root_fd(struct sandbox *sb)
{
        return sb->root_fd;
}

uid_t sandbox_host_uid(struct sandbox *sb, bool root)
{
        if (sb->rootless)
                return root && sb->ids.sub && sb->uid != 0 ? sb->ids.sub_uid : sb->ids.user_uid;
        return UID_BASE + (uid_t)sb->slot * UID_RANGE + (root ? 0 : sb->uid);
}

gid_t sandbox_host_gid(struct sandbox *sb, bool root)
{
        if (sb->rootless)
                return root && sb->ids.sub && sb->gid != 0 ? sb->ids.sub_gid : sb->ids.user_gid;
        return UID_BASE + (gid_t)sb->slot * UID_RANGE + (root ? 0 : sb->gid);
}

const char *sandbox_home(struct sandbox *sb)
{
        return sb->home;
}

uint64_t sandbox_memory_limit(struct sandbox *sb)
{
        return sb->cg ? cg_memory_limit(sb->cg) : 0;
}

const char *sandbox_notes(struct sandbox *sb)
{
        return sb->notes;
}

bool sandbox_rootless(struct sandbox *sb)
{
        return sb->rootless;
}

const char *sandbox_cgroup_mode(struct sandbox *sb)
{
        return sb->cg_mode == CG_MODE_V2 ? "v2" : "v1";
}

void sandbox_destroy(struct sandbox *sb)
{
        if (!sb)
                return;
        struct drv_error err = {0};
        phase(sb, "destroy");
        if (sb->init_pid > 0) {
                /* SIGKILL of pid 1 kills the whole pid namespace; wait reaps after all died */
                kill(sb->init_pid, SIGKILL);
                DRV_RETRY(waitpid(sb->init_pid, NULL, __WALL));
                phase(sb, "reaped");
        }
        if (sb->cg) {
                if (cg_kill_all(sb->cg, true, &err) < 0)
                        log_warn("sandbox_kill", "name=%s error=\"%s\"", sb->name, err.message);
                phase(sb, "cgkilled");
                if (cg_destroy(sb->cg, &err) < 0)
                        log_warn("sandbox_cgroup_remove", "name=%s error=\"%s\"", sb->name,
                                 err.message);
        }
        phase(sb, "destroyed");
        if (sb->net_helper > 0)
                kill(sb->net_helper, SIGTERM); /* pasta: it also ends with the namespace */
        sb_net_teardown(&sb->net);
        if (sb->net_marked)
                sb_net_mark(sb->slot, false);
        if (sb->ctl_fd >= 0)
                close(sb->ctl_fd);
        if (sb->ev_fd >= 0)
                close(sb->ev_fd);
        if (sb->root_fd >= 0)
                close(sb->root_fd);
        if (sb->lock_fd >= 0)
                close(sb->lock_fd);
        free(sb->bpf.insns);
        free(sb->procs);
        free(sb->name);
        free(sb->home);
        free(sb);
}

/* check_kernel.c: `drover check` probes of this host — user namespaces, overlayfs, seccomp,
 * cgroups, disk space, clock. Probe by trying, not by version numbers. */
#include "agent/check_internal.h"
#include "sandbox/cgroup.h" /* the cgroup statfs magics */

#include <dirent.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <sys/timex.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>

/* Read a small /proc or /sys number; -errno when absent. */
static int read_long(const char *path, long *out)
{
        _cleanup_free_ char *s = NULL;
        int r = drv_read_file(path, &s, NULL, 4096, NULL);
        if (r < 0)
                return r;
        char *end;
        errno = 0;
        long v = strtol(s, &end, 10);
        if (errno || end == s)
                return -EINVAL;
        *out = v;
        return 0;
}

void check_identity(struct check_report *r)
{
        struct utsname u;
        if (uname(&u) == 0)
                check_line(r, CHECK_INFO, "host", NULL, "%s %s %s", u.sysname, u.release,
                           u.machine);
        if (geteuid() != 0)
                check_line(r, CHECK_FAIL, "root", "run drover check (and the agent) as root",
                           "running as uid %u: the agent needs root to create sandboxes "
                           "(namespaces, mounts, cgroups, veth)",
                           (unsigned)geteuid());
        else
                check_line(r, CHECK_OK, "root", NULL, "running as root");
}

/* Fork a child that unshares flags; returns 0 or -errno from the child. */
static int try_unshare(int flags)
{
        pid_t pid = fork();
        if (pid < 0)
                return -errno;
        if (pid == 0)
                _exit(unshare(flags) == 0 ? 0 : (errno & 0xff));
        int status;
        if (DRV_RETRY(waitpid(pid, &status, 0)) < 0)
                return -errno;
        if (!WIFEXITED(status))
                return -ECHILD;
        return -WEXITSTATUS(status);
}

void check_userns(struct check_report *r)
{
        long max = -1, unpriv = -1;
        if (read_long("/proc/sys/user/max_user_namespaces", &max) == 0 && max == 0) {
                check_line(r, CHECK_FAIL, "user namespaces",
                           "sysctl -w user.max_user_namespaces=15000 (and persist it in "
                           "/etc/sysctl.d/)",
                           "disabled: user.max_user_namespaces = 0");
                return;
        }
        if (read_long("/proc/sys/kernel/unprivileged_userns_clone", &unpriv) == 0 && unpriv == 0)
                check_line(r, CHECK_INFO, "user namespaces", NULL,
                           "kernel.unprivileged_userns_clone = 0 (fine: the agent runs as root)");
        int e = try_unshare(CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET |
                            CLONE_NEWIPC | CLONE_NEWUTS);
        if (e < 0) {
                check_line(r, CHECK_FAIL, "user namespaces",
                           "allow user namespaces (user.max_user_namespaces > 0; outside a "
                           "container or with a seccomp/AppArmor policy that permits unshare)",
                           "unshare(user|mount|pid|net|ipc|uts) failed: %s", strerror(-e));
                return;
        }
        if (max > 0)
                check_line(r, CHECK_OK, "user namespaces", NULL,
                           "unshare(user|mount|pid|net|ipc|uts) works (max_user_namespaces=%ld)",
                           max);
        else
                check_line(r, CHECK_OK, "user namespaces", NULL,
                           "unshare(user|mount|pid|net|ipc|uts) works");
}

static bool file_has_word(const char *path, const char *word)
{
        _cleanup_free_ char *s = NULL;
        if (drv_read_file(path, &s, NULL, 1 << 20, NULL) < 0)
                return false;
        size_t n = strlen(word);
        for (char *p = s; (p = strstr(p, word)); p += n) {
                bool start = p == s || p[-1] == '\t' || p[-1] == ' ' || p[-1] == '\n';
                bool end = p[n] == '\0' || p[n] == '\n' || p[n] == ' ' || p[n] == '\t';
                if (start && end)
                        return true;
        }
        return false;
}

void check_overlayfs(struct check_report *r)
{
        if (file_has_word("/proc/filesystems", "overlay")) {
                check_line(r, CHECK_OK, "overlayfs", NULL, "listed in /proc/filesystems");
                return;
        }
        struct utsname u;
        char mod[512];
        if (uname(&u) == 0) {
                snprintf(mod, sizeof(mod), "/lib/modules/%s/kernel/fs/overlayfs", u.release);
                if (access(mod, F_OK) == 0) {
                        check_line(r, CHECK_WARN, "overlayfs",
                                   "modprobe overlay (and add it to /etc/modules-load.d/)",
                                   "not loaded yet; module present in %s", mod);
                        return;
                }
        }
        check_line(r, CHECK_FAIL, "overlayfs",
                   "use a kernel with CONFIG_OVERLAY_FS (every distribution kernel has it)",
                   "not in /proc/filesystems and no module found: per-job writable roots need "
                   "it");
}

void check_seccomp(struct check_report *r)
{
        int mode = prctl(PR_GET_SECCOMP, 0, 0, 0, 0);
        if (mode < 0) {
                check_line(r, CHECK_FAIL, "seccomp", "use a kernel built with CONFIG_SECCOMP",
                           "prctl(PR_GET_SECCOMP) failed: %s", strerror(errno));
                return;
        }
        if (!file_has_word("/proc/self/status", "Seccomp_filters:") &&
            !file_has_word("/proc/sys/kernel/seccomp/actions_avail", "errno")) {
                check_line(r, CHECK_FAIL, "seccomp",
                           "use a kernel built with CONFIG_SECCOMP_FILTER",
                           "seccomp filter mode not available");
                return;
        }
        if (mode == 2)
                check_line(r, CHECK_OK, "seccomp", NULL,
                           "filters available (this process is already filtered: the job's "
                           "profile stacks on top)");
        else
                check_line(r, CHECK_OK, "seccomp", NULL, "filter mode available");
}

/* mkdir + rmdir a probe cgroup under dir; 0 or -errno. */
static int try_mkcgroup(const char *dir)
{
        char p[4096];
        snprintf(p, sizeof(p), "%s/drover-check-%d", dir, (int)getpid());
        if (mkdir(p, 0755) < 0)
                return -errno;
        if (rmdir(p) < 0)
                return -errno;
        return 0;
}

static void check_v1_controllers(struct check_report *r, const char *root)
{
        static const char *ctrls[] = {"memory", "pids", "cpu"};
        for (size_t i = 0; i < DRV_ARRAY_SIZE(ctrls); i++) {
                char dir[4096], what[64];
                snprintf(dir, sizeof(dir), "%s/%s", root, ctrls[i]);
                snprintf(what, sizeof(what), "cgroup %s", ctrls[i]);
                struct stat st;
                if (stat(dir, &st) < 0 || !S_ISDIR(st.st_mode)) {
                        check_line(r, CHECK_FAIL, what,
                                   "mount the cgroup v1 controller (or boot with cgroup v2)",
                                   "%s is not mounted", dir);
                        continue;
                }
                int e = try_mkcgroup(dir);
                if (e < 0)
                        check_line(r, CHECK_FAIL, what,
                                   "run as root with a writable cgroupfs (in a container: "
                                   "--cgroupns=private and a rw /sys/fs/cgroup; under systemd: "
                                   "Delegate=yes)",
                                   "cannot create a cgroup in %s: %s", dir, strerror(-e));
                else
                        check_line(r, CHECK_OK, what, NULL, "writable (%s)", dir);
        }
}

static void check_v2(struct check_report *r, const char *root)
{
        char path[4096];
        _cleanup_free_ char *ctrls = NULL, *sub = NULL;
        snprintf(path, sizeof(path), "%s/cgroup.controllers", root);
        (void)drv_read_file(path, &ctrls, NULL, 4096, NULL);
        snprintf(path, sizeof(path), "%s/cgroup.subtree_control", root);
        (void)drv_read_file(path, &sub, NULL, 4096, NULL);
        static const char *need[] = {"memory", "pids", "cpu"};
        for (size_t i = 0; i < DRV_ARRAY_SIZE(need); i++) {
                char what[64];
                snprintf(what, sizeof(what), "cgroup %s", need[i]);
                char *p = ctrls ? strstr(ctrls, need[i]) : NULL;
                bool avail = false;
                while (p && !avail) {
                        size_t n = strlen(need[i]);
                        avail = (p == ctrls || p[-1] == ' ') &&
                                (p[n] == ' ' || p[n] == '\n' || p[n] == '\0');
                        p = strstr(p + 1, need[i]);
                }
                if (!avail) {
                        check_line(r, CHECK_FAIL, what,
                                   "enable the controller in the parent's cgroup.subtree_control "
                                   "(systemd: Delegate=yes)",
                                   "not in %s/cgroup.controllers", root);
                        continue;
                }
                check_line(r, CHECK_OK, what, NULL, "available");
        }
        int e = try_mkcgroup(root);
        if (e < 0)
                check_line(r, CHECK_FAIL, "cgroup write",
                           "run as root with a writable cgroupfs (systemd: Delegate=yes)",
                           "cannot create a cgroup in %s: %s", root, strerror(-e));
        else
                check_line(r, CHECK_OK, "cgroup write", NULL, "can create cgroups in %s (%s)", root,
                           sub && *sub ? "subtree_control set" : "subtree_control empty");
}

/* Is any cgroup hierarchy mounted with favordynmods? (/proc/self/mountinfo) */
static bool favordynmods_mounted(void)
{
        _cleanup_free_ char *mi = NULL;
        if (drv_read_file("/proc/self/mountinfo", &mi, NULL, 0, NULL) < 0)
                return false;
        for (char *l = mi; l && *l;) {
                char *nl = strchr(l, '\n');
                if (nl)
                        *nl = 0;
                if (strstr(l, " - cgroup") && strstr(l, "favordynmods"))
                        return true;
                l = nl ? nl + 1 : NULL;
        }
        return false;
}

/* v1: every job's pid 1 is moved into the job's groups (v2 starts it inside with clone3
 * CLONE_INTO_CGROUP). Such a move takes cgroup_threadgroup_rwsem for writing, which on some
 * kernels waits for an RCU grace period (milliseconds under load) unless rcu_expedited is 1 or a
 * hierarchy is mounted favordynmods. Measure it: move three idle children into a probe group. */
static void check_cgroup_attach(struct check_report *r, const char *mnt)
{
        long exp = -1;
        (void)read_long("/sys/kernel/rcu_expedited", &exp);
        bool fav = favordynmods_mounted();
        char dir[4096], procs[4200];
        snprintf(dir, sizeof(dir), "%s/drover-check-attach-%d", mnt, (int)getpid());
        snprintf(procs, sizeof(procs), "%s/cgroup.procs", dir);
        if (mkdir(dir, 0755) < 0)
                return; /* not writable: reported above */
        double worst = -1;
        pid_t kids[3] = {-1, -1, -1};
        int fd = open(procs, O_WRONLY | O_CLOEXEC);
        for (int i = 0; fd >= 0 && i < 3; i++) {
                kids[i] = fork();
                if (kids[i] == 0) {
                        for (;;)
                                pause();
                }
                if (kids[i] < 0)
                        break;
                char pid[16];
                int n = snprintf(pid, sizeof(pid), "%d", (int)kids[i]);
                uint64_t t0 = drv_now_ns();
                if (write(fd, pid, (size_t)n) != n)
                        break;
                double ms = (double)(drv_now_ns() - t0) / 1e6;
                if (ms > worst)
                        worst = ms;
        }
        if (fd >= 0)
                close(fd);
        for (int i = 0; i < 3; i++)
                if (kids[i] > 0) {
                        kill(kids[i], SIGKILL);
                        DRV_RETRY(waitpid(kids[i], NULL, 0));
                }
        for (int i = 0; i < 100 && rmdir(dir) < 0 && errno == EBUSY; i++)
                usleep(1000);
        if (worst < 0)
                return;
        bool slow = worst > 2.0 && exp != 1 && !fav;
        check_line(r, slow ? CHECK_WARN : CHECK_INFO, "cgroup attach",
                   slow ? "echo 1 > /sys/kernel/rcu_expedited, or mount a cgroup hierarchy with "
                          "-o favordynmods (docs/sandbox.md, \"Start-up\")"
                        : NULL,
                   "moving a process into a v1 cgroup took %.2f ms (worst of 3; every job's "
                   "pid 1 is moved once); rcu_expedited=%ld, favordynmods %s",
                   worst, exp, fav ? "on" : "off");
}

void check_cgroups(struct check_report *r, const char *root)
{
        struct statfs fs;
        char unified[4096];
        if (statfs(root, &fs) < 0) {
                check_line(r, CHECK_FAIL, "cgroup", "mount cgroupfs at /sys/fs/cgroup", "%s: %s",
                           root, strerror(errno));
                return;
        }
        snprintf(unified, sizeof(unified), "%s/unified", root);
        char probe[4096];
        snprintf(probe, sizeof(probe), "%s/cgroup.controllers", root);
        bool v2 = fs.f_type == CGROUP2_SUPER_MAGIC;
        bool by_layout = false;
        if (fs.f_type != CGROUP2_SUPER_MAGIC && fs.f_type != TMPFS_MAGIC &&
            fs.f_type != CGROUP_SUPER_MAGIC) {
                /* Not a cgroupfs (a test tree, say): infer the layout from its files. */
                by_layout = true;
                v2 = access(probe, F_OK) == 0;
        }
        if (v2) {
                check_line(r, CHECK_OK, "cgroup version", NULL, "v2 (unified) at %s%s", root,
                           by_layout ? " (by layout)" : "");
                check_v2(r, root);
                return;
        }
        struct statfs ufs;
        bool hybrid = statfs(unified, &ufs) == 0 && ufs.f_type == CGROUP2_SUPER_MAGIC;
        check_line(r, CHECK_OK, "cgroup version", NULL, "%s at %s%s",
                   hybrid ? "hybrid (v1 controllers, cgroup2 at unified/ without controllers)"
                          : "v1",
                   root, by_layout ? " (by layout)" : "");
        check_v1_controllers(r, root);
        char mnt[4096];
        snprintf(mnt, sizeof(mnt), "%s/pids", root);
        if (statfs(mnt, &fs) == 0 && fs.f_type == CGROUP_SUPER_MAGIC)
                check_cgroup_attach(r, mnt);
}

/* Nearest existing ancestor of dir (the dir may not exist before the agent first runs). */
static char *existing_ancestor(const char *dir)
{
        char *p = strdup(dir);
        if (!p)
                return NULL;
        while (access(p, F_OK) < 0) {
                char *slash = strrchr(p, '/');
                if (!slash || slash == p) {
                        /* p may be shorter than "/" plus its NUL (an empty path) */
                        free(p);
                        return strdup("/");
                }
                *slash = '\0';
        }
        return p;
}

static void human(char *buf, size_t n, uint64_t bytes)
{
        if (bytes >= (1ULL << 30))
                snprintf(buf, n, "%.1f GiB", (double)bytes / (double)(1ULL << 30));
        else
                snprintf(buf, n, "%.0f MiB", (double)bytes / (double)(1ULL << 20));
}

void check_disk(struct check_report *r, const char *what, const char *dir, uint64_t fail_below,
                uint64_t warn_below)
{
        _cleanup_free_ char *at = existing_ancestor(dir);
        struct statvfs vfs;
        if (!at || statvfs(at, &vfs) < 0) {
                check_line(r, CHECK_FAIL, what, "create the directory on a local filesystem",
                           "%s: %s", dir, strerror(at ? errno : ENOMEM));
                return;
        }
        uint64_t avail = (uint64_t)vfs.f_bavail * vfs.f_frsize;
        char h[32], lim[32];
        human(h, sizeof(h), avail);
        if (avail < fail_below) {
                human(lim, sizeof(lim), fail_below);
                check_line(r, CHECK_FAIL, what, "free space or point the directory elsewhere",
                           "%s free at %s (needs at least %s)", h, dir, lim);
        } else if (avail < warn_below) {
                human(lim, sizeof(lim), warn_below);
                check_line(r, CHECK_WARN, what, "free space: caches and images fill disks fast",
                           "%s free at %s (below %s)", h, dir, lim);
        } else if (vfs.f_files && vfs.f_favail < 10000) {
                check_line(r, CHECK_WARN, what, "free inodes", "only %lu inodes free at %s",
                           (unsigned long)vfs.f_favail, dir);
        } else {
                check_line(r, CHECK_OK, what, NULL, "%s free at %s%s", h, dir,
                           strcmp(at, dir) ? " (not created yet)" : "");
        }
}

void check_clock(struct check_report *r)
{
        /* 2025-01-01T00:00:00Z: any clock before this is wrong and breaks certificate checks. */
        const time_t floor = 1735689600;
        time_t now = time(NULL);
        char buf[40];
        drv_time_rfc3339(buf, sizeof(buf));
        if (now < floor) {
                check_line(r, CHECK_FAIL, "clock",
                           "set the time (chrony/systemd-timesyncd): TLS certificates will not "
                           "validate",
                           "system time %s is in the past", buf);
                return;
        }
        struct timex tx = {0};
        int st = adjtimex(&tx);
        if (st == TIME_ERROR || (st >= 0 && (tx.status & STA_UNSYNC)))
                check_line(r, CHECK_WARN, "clock", "run an NTP client (chrony, systemd-timesyncd)",
                           "%s, not synchronised by NTP", buf);
        else
                check_line(r, CHECK_OK, "clock", NULL, "%s, synchronised", buf);
}

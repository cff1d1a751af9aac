/* cgroup.c: job cgroups on v1 (one hierarchy per controller) and v2 (unified) behind cgroup.h. */
#include "sandbox/cgroup.h"

#include <inttypes.h>
#include <limits.h>
#include <fcntl.h>
#include <signal.h>
#include <dirent.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <time.h>

#define CPU_PERIOD_US 100000

/* v1 hierarchies we use; the first one present names the group in logs. */
enum { V1_MEMORY, V1_CPU, V1_CPUACCT, V1_PIDS, V1_FREEZER, V1_N };
static const char *const v1_names[V1_N] = {"memory", "cpu", "cpuacct", "pids", "freezer"};

struct cgroup {
        enum cg_mode mode;
        char *dir[V1_N]; /* v2: dir[0] only; v1: NULL where the controller is absent */
        uint64_t memory_limit;
};

int cg_mode_from_magic(long root_magic, long unified_magic, enum cg_mode *out)
{
        if (root_magic == CGROUP2_SUPER_MAGIC)
                *out = CG_MODE_V2;
        else if (root_magic == TMPFS_MAGIC && unified_magic == CGROUP2_SUPER_MAGIC)
                *out = CG_MODE_HYBRID;
        else if (root_magic == TMPFS_MAGIC || root_magic == CGROUP_SUPER_MAGIC)
                *out = CG_MODE_V1;
        else
                return -ENOENT;
        return 0;
}

int cg_detect(const char *root, enum cg_mode *out, struct drv_error *err)
{
        struct statfs st, su;
        if (statfs(root, &st) < 0)
                return drv_err_errno(err, "statfs %s", root);
        _cleanup_free_ char *uni = drv_path_join(root, "unified");
        long um = 0;
        if (uni && statfs(uni, &su) == 0)
                um = (long)su.f_type;
        if (cg_mode_from_magic((long)st.f_type, um, out) < 0)
                return drv_err(err, ENOENT, "%s is not a cgroup file system", root);
        return 0;
}

const char *cg_mode_name(enum cg_mode m)
{
        return m == CG_MODE_V2 ? "v2" : m == CG_MODE_HYBRID ? "hybrid" : "v1";
}

/* The caller's own cgroup path for controller ctrl (NULL = the v2 "0::" line), from the text of
 * /proc/self/cgroup. */
static char *own_cgroup(const char *self, const char *ctrl)
{
        if (!self)
                return NULL;
        _cleanup_free_ char *buf = strdup(self);
        if (!buf)
                return NULL;
        char *save = NULL;
        for (char *line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
                char *c1 = strchr(line, ':');
                char *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
                if (!c2)
                        continue;
                *c2 = 0;
                const char *ctrls = c1 + 1, *path = c2 + 1;
                if (!ctrl) {
                        if (!*ctrls)
                                return strdup(path);
                        continue;
                }
                size_t n = strlen(ctrl);
                for (const char *p = ctrls; *p;) {
                        const char *e = strchrnul(p, ',');
                        if ((size_t)(e - p) == n && strncmp(p, ctrl, n) == 0)
                                return strdup(path);
                        p = *e ? e + 1 : e;
                }
        }
        return NULL;
}

bool cg_delegated(const struct cg_place *pl)
{
        if (pl->mode != CG_MODE_V2)
                return false; /* v1 hierarchies are never handed to a user */
        _cleanup_free_ char *self = NULL;
        if (drv_read_file("/proc/self/cgroup", &self, NULL, 1 << 16, NULL) < 0)
                return false;
        _cleanup_free_ char *own = own_cgroup(self, NULL);
        _cleanup_free_ char *dir = own ? drv_asprintf("%s%s", pl->root, own) : NULL;
        if (!dir)
                return false;
        static const char *const knobs[] = {"", "/cgroup.procs", "/cgroup.subtree_control"};
        for (size_t i = 0; i < DRV_ARRAY_SIZE(knobs); i++) {
                char p[PATH_MAX];
                snprintf(p, sizeof(p), "%s%s", dir, knobs[i]);
                if (access(p, W_OK) < 0)
                        return false;
        }
        return true;
}

static char *group_dir(const char *self, const char *mount, const char *parent, const char *ctrl,
                       const char *name)
{
        _cleanup_free_ char *own = NULL;
        if (!parent) {
                own = own_cgroup(self, ctrl);
                if (!own)
                        own = strdup("/");
                if (!own)
                        return NULL;
                if (strcmp(own, "/") == 0)
                        own[0] = 0;
        }
        if (parent)
                return drv_asprintf("%s/%s/%s", mount, parent[0] == '/' ? parent + 1 : parent,
                                    name);
        return drv_asprintf("%s%s/drover/%s", mount, own, name);
}

/* mkdir the group itself exclusively: a stale empty group of a crashed run is replaced, a live
 * one is -EEXIST (the caller picks another name). Parents are made as needed. */
static int make_group(const char *dir, bool fake_ok, struct drv_error *err)
{
        _cleanup_free_ char *parent = strdup(dir);
        if (!parent)
                return drv_err(err, ENOMEM, "out of memory");
        *strrchr(parent, '/') = 0;
        int r = drv_mkdir_p(parent, 0755, err);
        if (r < 0)
                return r;
        if (mkdir(dir, 0755) == 0)
                return 0;
        if (errno != EEXIST)
                return drv_err_errno(err, "mkdir %s", dir);
        if (rmdir(dir) == 0 && mkdir(dir, 0755) == 0)
                return 0;
        if (fake_ok && errno == ENOTEMPTY)
                return 0; /* a fake tree in a test: plain files make it "not empty" */
        return drv_err(err, EEXIST, "cgroup %s is in use", dir);
}

static int write_knob(const char *dir, const char *knob, const char *val, struct drv_error *err)
{
        _cleanup_free_ char *p = drv_path_join(dir, knob);
        if (!p)
                return drv_err(err, ENOMEM, "out of memory");
        return drv_write_file(p, val, err);
}

/* Read a small knob into buf (NUL-terminated, truncated to n-1 bytes): no heap, one read. */
static int read_small(const char *dir, const char *knob, char *buf, size_t n)
{
        char p[PATH_MAX];
        if ((size_t)snprintf(p, sizeof(p), "%s/%s", dir, knob) >= sizeof(p))
                return -ENAMETOOLONG;
        int fd = open(p, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return -errno;
        ssize_t r = DRV_RETRY(read(fd, buf, n - 1));
        int e = errno;
        close(fd);
        if (r < 0)
                return -e;
        buf[r] = 0;
        return 0;
}

static int read_knob(const char *dir, const char *knob, char **out)
{
        _cleanup_free_ char *p = drv_path_join(dir, knob);
        if (!p)
                return -ENOMEM;
        return drv_read_file(p, out, NULL, 1 << 20, NULL);
}

static bool knob_exists(const char *dir, const char *knob)
{
        _cleanup_free_ char *p = drv_path_join(dir, knob);
        return p && access(p, F_OK) == 0;
}

/* "key N" line of a flat keyed file such as memory.events or cpu.stat. */
static int keyed_value(const char *text, const char *key, uint64_t *out)
{
        size_t n = strlen(key);
        for (const char *l = text; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
                if (strncmp(l, key, n) == 0 && l[n] == ' ') {
                        *out = strtoull(l + n + 1, NULL, 10);
                        return 0;
                }
        }
        return -ENOENT;
}

/* v2 allows controllers in a group's children only when the group itself holds no process:
 * move the processes found there (the agent itself, typically: a delegated service cgroup) into
 * a "supervisor" leaf beside the job groups, as systemd and crun do. */
static int evacuate(const char *level)
{
        _cleanup_free_ char *leaf = drv_path_join(level, "supervisor");
        _cleanup_free_ char *procs = NULL;
        if (!leaf || (mkdir(leaf, 0755) < 0 && errno != EEXIST) ||
            read_knob(level, "cgroup.procs", &procs) < 0)
                return -1;
        for (char *line = strtok(procs, "\n"); line; line = strtok(NULL, "\n"))
                if (write_knob(leaf, "cgroup.procs", line, NULL) < 0)
                        return -1;
        return 0;
}

/* v2: enable the controllers in the mount and every ancestor of the group below it. */
static int v2_enable_controllers(const char *mount, const char *dir, struct drv_error *err)
{
        size_t ml = strlen(mount);
        _cleanup_free_ char *level = strdup(dir);
        if (!level)
                return drv_err(err, ENOMEM, "out of memory");
        char *end = strrchr(level, '/'); /* levels are the prefixes of dir ending before a '/' */
        for (size_t cut = ml; level + cut <= end;) {
                char saved = level[cut];
                level[cut] = 0;
                _cleanup_free_ char *avail = NULL;
                (void)read_knob(level, "cgroup.controllers", &avail);
                static const char *const ctrls[] = {"memory", "cpu", "pids"};
                char val[64] = "";
                for (size_t i = 0; i < DRV_ARRAY_SIZE(ctrls); i++) {
                        if (avail && !strstr(avail, ctrls[i]))
                                continue;
                        snprintf(val + strlen(val), sizeof(val) - strlen(val), "%s+%s",
                                 val[0] ? " " : "", ctrls[i]);
                }
                /* one write of the whole list (a fake tree then holds exactly it) */
                int r = val[0] ? write_knob(level, "cgroup.subtree_control", val, NULL) : 0;
                if (r == -EBUSY && evacuate(level) == 0) /* "no internal processes" */
                        r = write_knob(level, "cgroup.subtree_control", val, NULL);
                if (r < 0) {
                        return drv_err(err, -r,
                                       "cannot enable controllers '%s' in %s (is the cgroup "
                                       "delegated, with no processes in it?): %s",
                                       val, level, strerror(-r));
                }
                level[cut] = saved;
                char *next = strchr(level + cut + 1, '/');
                if (!next)
                        break;
                cut = (size_t)(next - level);
        }
        return 0;
}

static int apply_limits(struct cgroup *cg, const struct cg_limits *lim, struct drv_error *err)
{
        char buf[64];
        int r;
        bool v2 = cg->mode == CG_MODE_V2;
        const char *mem = cg->dir[V1_MEMORY], *cpu = v2 ? cg->dir[0] : cg->dir[V1_CPU],
                   *pids = v2 ? cg->dir[0] : cg->dir[V1_PIDS];
        if (lim->memory_bytes) {
                if (!mem)
                        return drv_err(err, ENOTSUP, "no memory controller for a memory limit");
                snprintf(buf, sizeof(buf), "%" PRIu64, lim->memory_bytes);
                r = write_knob(mem, v2 ? "memory.max" : "memory.limit_in_bytes", buf, err);
                if (r < 0)
                        return r;
                /* no swap beyond the limit */
                if (v2 && knob_exists(mem, "memory.swap.max"))
                        r = write_knob(mem, "memory.swap.max", "0", err);
                else if (!v2 && knob_exists(mem, "memory.memsw.limit_in_bytes"))
                        r = write_knob(mem, "memory.memsw.limit_in_bytes", buf, err);
                if (r < 0)
                        return r;
                cg->memory_limit = lim->memory_bytes;
        }
        if (lim->cpus > 0) {
                if (!cpu)
                        return drv_err(err, ENOTSUP, "no cpu controller for a CPU quota");
                uint64_t quota = (uint64_t)(lim->cpus * CPU_PERIOD_US + 0.5);
                if (quota < 1000)
                        quota = 1000;
                if (v2) {
                        snprintf(buf, sizeof(buf), "%" PRIu64 " %d", quota, CPU_PERIOD_US);
                        r = write_knob(cpu, "cpu.max", buf, err);
                } else {
                        snprintf(buf, sizeof(buf), "%d", CPU_PERIOD_US);
                        r = write_knob(cpu, "cpu.cfs_period_us", buf, err);
                        snprintf(buf, sizeof(buf), "%" PRIu64, quota);
                        if (r == 0)
                                r = write_knob(cpu, "cpu.cfs_quota_us", buf, err);
                }
                if (r < 0)
                        return r;
        }
        bool has_pids = pids && (!v2 || knob_exists(pids, "pids.max"));
        if (lim->pids_max && (has_pids || !lim->pids_default)) {
                if (!has_pids)
                        return drv_err(err, ENOTSUP, "no pids controller for a pids limit");
                snprintf(buf, sizeof(buf), "%" PRIu64, lim->pids_max);
                r = write_knob(pids, "pids.max", buf, err);
                if (r < 0)
                        return r;
        }
        return 0;
}

int cg_create(const struct cg_place *pl, const char *name, const struct cg_limits *lim,
              struct cgroup **out, struct drv_error *err)
{
        struct cgroup *cg = calloc(1, sizeof(*cg));
        int r;
        if (!cg)
                return drv_err(err, ENOMEM, "out of memory");
        cg->mode = pl->mode;
        char self[8192] = "";
        if (!pl->parent)
                (void)read_small("/proc/self", "cgroup", self, sizeof(self));
        if (pl->mode == CG_MODE_V2) {
                cg->dir[0] = group_dir(self, pl->root, pl->parent, NULL, name);
                if (!cg->dir[0]) {
                        r = drv_err(err, ENOMEM, "out of memory");
                        goto fail;
                }
                r = make_group(cg->dir[0], pl->parent != NULL, err);
                if (r < 0) {
                        free(TAKE_PTR(cg->dir[0])); /* not ours: never remove it */
                        goto fail;
                }
                r = v2_enable_controllers(pl->root, cg->dir[0], err);
                if (r < 0)
                        goto fail;
        } else {
                bool any = false;
                for (int i = 0; i < V1_N; i++) {
                        /* the cpu hierarchy only holds a quota: none asked, no group (one
                         * mkdir, move and rmdir less per job; usage comes from cpuacct) */
                        if (i == V1_CPU && !(lim->cpus > 0) && !lim->parent)
                                continue;
                        _cleanup_free_ char *mnt = drv_path_join(pl->root, v1_names[i]);
                        if (!mnt) {
                                r = drv_err(err, ENOMEM, "out of memory");
                                goto fail;
                        }
                        struct statfs st;
                        if (statfs(mnt, &st) < 0 || st.f_type != CGROUP_SUPER_MAGIC)
                                continue;
                        cg->dir[i] = group_dir(self, mnt, pl->parent, v1_names[i], name);
                        if (!cg->dir[i]) {
                                r = drv_err(err, ENOMEM, "out of memory");
                                goto fail;
                        }
                        r = make_group(cg->dir[i], false, err);
                        if (r < 0) {
                                free(TAKE_PTR(cg->dir[i])); /* not ours: never remove it */
                                goto fail;
                        }
                        any = true;
                }
                if (!any) {
                        r = drv_err(err, ENOENT, "no cgroup v1 controllers under %s", pl->root);
                        goto fail;
                }
        }
        r = apply_limits(cg, lim, err);
        if (r < 0)
                goto fail;
        *out = cg;
        return 0;
fail:
        cg_destroy(cg, NULL);
        return r;
}

int cg_add_pid(struct cgroup *cg, pid_t pid, struct drv_error *err)
{
        if (!cg)
                return 0;
        char buf[24];
        snprintf(buf, sizeof(buf), "%d", (int)pid);
        int n = cg->mode == CG_MODE_V2 ? 1 : V1_N;
        for (int i = 0; i < n; i++) {
                if (!cg->dir[i] ||
                    (i > 0 && cg->dir[i - 1] && strcmp(cg->dir[i], cg->dir[i - 1]) == 0))
                        continue;
                int r = write_knob(cg->dir[i], "cgroup.procs", buf, err);
                if (r < 0)
                        return r;
        }
        return 0;
}

static const char *procs_dir(struct cgroup *cg)
{
        if (cg->mode == CG_MODE_V2)
                return cg->dir[0];
        for (int i = V1_N - 1; i >= 0; i--)
                if (cg->dir[i])
                        return cg->dir[i];
        return NULL;
}

/* SIGCONT + SIGKILL every pid listed; returns how many were listed. */
static int kill_listed(const char *dir)
{
        _cleanup_free_ char *procs = NULL;
        if (read_knob(dir, "cgroup.procs", &procs) < 0)
                return 0;
        int n = 0;
        for (char *s = procs; *s;) {
                char *e;
                long pid = strtol(s, &e, 10);
                if (e == s)
                        break;
                if (pid > 1) {
                        kill((pid_t)pid, SIGCONT);
                        kill((pid_t)pid, SIGKILL);
                        n++;
                }
                s = e;
                while (*s == '\n' || *s == ' ')
                        s++;
        }
        return n;
}

static bool group_empty(const char *dir)
{
        char b[64];
        if (read_small(dir, "cgroup.procs", b, sizeof(b)) < 0)
                return true;
        return b[strspn(b, " \n")] == 0;
}

int cg_kill_all(struct cgroup *cg, bool wait, struct drv_error *err)
{
        if (!cg)
                return 0;
        const char *dir = procs_dir(cg);
        if (!dir)
                return 0;
        int r = 0;
        /* the common case at destroy: pid 1 was reaped, so its pid namespace is empty. Freezing
         * a v1 group costs (the freezer flips a static key: text patching on every CPU). */
        if (wait && group_empty(dir))
                return 0;
        if (cg->mode == CG_MODE_V2 && knob_exists(dir, "cgroup.kill")) {
                r = write_knob(dir, "cgroup.kill", "1", err);
        } else {
                const char *fdir = cg->mode == CG_MODE_V2 ? dir : cg->dir[V1_FREEZER];
                const char *knob = cg->mode == CG_MODE_V2 ? "cgroup.freeze" : "freezer.state";
                const char *on = cg->mode == CG_MODE_V2 ? "1" : "FROZEN";
                const char *off = cg->mode == CG_MODE_V2 ? "0" : "THAWED";
                bool frozen = fdir && write_knob(fdir, knob, on, NULL) == 0;
                kill_listed(dir);
                if (frozen) /* always thaw, even when killing failed */
                        r = write_knob(fdir, knob, off, err);
        }
        for (int i = 0; wait && i < 2000 && !group_empty(dir); i++) {
                if (i % 50 == 49)
                        kill_listed(dir); /* forked while we looked */
                struct timespec ts = {0, 1000000};
                nanosleep(&ts, NULL);
        }
        return r;
}

int cg_dir_fd(struct cgroup *cg)
{
        if (!cg || cg->mode != CG_MODE_V2 || !cg->dir[0])
                return -1;
        return open(cg->dir[0], O_PATH | O_DIRECTORY | O_CLOEXEC);
}

int cg_read_usage(struct cgroup *cg, struct cg_usage *u)
{
        memset(u, 0, sizeof(*u));
        if (!cg)
                return 0;
        char b[4096];
        if (cg->mode == CG_MODE_V2) {
                const char *d = cg->dir[0];
                if (read_small(d, "memory.peak", b, sizeof(b)) == 0)
                        u->memory_peak = strtoull(b, NULL, 10);
                if (read_small(d, "memory.events", b, sizeof(b)) == 0)
                        keyed_value(b, "oom_kill", &u->oom_kills);
                if (read_small(d, "cpu.stat", b, sizeof(b)) == 0)
                        keyed_value(b, "usage_usec", &u->cpu_usec);
                return 0;
        }
        if (cg->dir[V1_MEMORY]) {
                if (read_small(cg->dir[V1_MEMORY], "memory.max_usage_in_bytes", b, sizeof(b)) == 0)
                        u->memory_peak = strtoull(b, NULL, 10);
                if (read_small(cg->dir[V1_MEMORY], "memory.oom_control", b, sizeof(b)) == 0)
                        keyed_value(b, "oom_kill", &u->oom_kills);
        }
        if (cg->dir[V1_CPUACCT] &&
            read_small(cg->dir[V1_CPUACCT], "cpuacct.usage", b, sizeof(b)) == 0)
                u->cpu_usec = strtoull(b, NULL, 10) / 1000;
        return 0;
}

void cg_reset_peak(struct cgroup *cg)
{
        if (!cg)
                return;
        if (cg->mode == CG_MODE_V2)
                (void)write_knob(cg->dir[0], "memory.peak", "0", NULL); /* 6.12+; else stays */
        else if (cg->dir[V1_MEMORY])
                (void)write_knob(cg->dir[V1_MEMORY], "memory.max_usage_in_bytes", "0", NULL);
}

uint64_t cg_memory_limit(struct cgroup *cg)
{
        return cg ? cg->memory_limit : 0;
}

const char *cg_path(struct cgroup *cg)
{
        if (!cg)
                return "none";
        for (int i = 0; i < V1_N; i++)
                if (cg->dir[i])
                        return cg->dir[i];
        return "";
}

int cg_destroy(struct cgroup *cg, struct drv_error *err)
{
        if (!cg)
                return 0;
        int r = 0;
        for (int i = 0; i < V1_N; i++) {
                if (!cg->dir[i])
                        continue;
                for (int tries = 0; tries < 200; tries++) {
                        if (rmdir(cg->dir[i]) == 0 || errno == ENOENT)
                                break;
                        if (errno != EBUSY) {
                                r = drv_err_errno(err, "rmdir %s", cg->dir[i]);
                                break;
                        }
                        /* a group empties a moment after its last task exits */
                        struct timespec ts = {0, tries < 20 ? 50000 : 1000000};
                        nanosleep(&ts, NULL);
                }
                free(cg->dir[i]);
        }
        free(cg);
        return r;
}

/* rmdir every group below dir (depth first) older than min_age_s; the kernel refuses a group with
 * processes or children (EBUSY), so only empty ones go. Returns how many were removed. */
static int sweep_dir(const char *dir, time_t now, unsigned min_age_s, int depth)
{
        DIR *d = opendir(dir);
        if (!d)
                return 0;
        int removed = 0;
        for (struct dirent *de; (de = readdir(d));) {
                if (de->d_type != DT_DIR || de->d_name[0] == '.')
                        continue;
                _cleanup_free_ char *sub = drv_path_join(dir, de->d_name);
                struct stat st;
                if (!sub || lstat(sub, &st) < 0 || !S_ISDIR(st.st_mode))
                        continue;
                if (depth < 4)
                        removed += sweep_dir(sub, now, min_age_s, depth + 1);
                if (now - st.st_mtime < (time_t)min_age_s)
                        continue;
                if (rmdir(sub) == 0) {
                        log_info("swept", "cgroup=%s reason=\"no processes\"", sub);
                        removed++;
                }
        }
        closedir(d);
        return removed;
}

int cg_sweep(const struct cg_place *pl, unsigned min_age_s, struct drv_error *err)
{
        /* a parent given by the operator is swept only when it is drover's own ("drover...") */
        const char *base = pl->parent ? strrchr(pl->parent, '/') : NULL;
        base = base ? base + 1 : pl->parent;
        if (base && strncmp(base, "drover", 6) != 0)
                return 0;
        char self[8192] = "";
        if (!pl->parent)
                (void)read_small("/proc/self", "cgroup", self, sizeof(self));
        time_t now = time(NULL);
        for (int i = 0; i < (pl->mode == CG_MODE_V2 ? 1 : V1_N); i++) {
                _cleanup_free_ char *mnt = pl->mode == CG_MODE_V2
                                               ? strdup(pl->root)
                                               : drv_path_join(pl->root, v1_names[i]);
                _cleanup_free_ char *dir =
                    mnt ? group_dir(self, mnt, pl->parent,
                                    pl->mode == CG_MODE_V2 ? NULL : v1_names[i], "")
                        : NULL;
                if (!dir)
                        return drv_err(err, ENOMEM, "out of memory");
                (void)sweep_dir(dir, now, min_age_s, 0);
        }
        return 0;
}

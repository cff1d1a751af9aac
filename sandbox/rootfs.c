/* rootfs.c: pid 1 builds the job's file system view: host root read-only (or an image with a
 * writable overlay), masked credential paths, a size-bounded writable area, /dev, /proc, /sys,
 * extra binds, then pivot_root and the old root detached. Runs inside the new namespaces. */
#include "sandbox/internal.h"

#include <inttypes.h>
#include <fcntl.h>
#include <linux/mount.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>

#define STAGE "/tmp"                 /* covered by a private tmpfs in our mount ns */
#define R     STAGE "/.drover-root"  /* the new root while it is built */
#define W     STAGE "/.drover-work"  /* the job's writable, size-bounded area */
#define E     STAGE "/.drover-empty" /* an empty read-only directory, bound over hidden paths */

/* Host paths that may hold credentials: hidden behind empty directories (host-root mode). /tmp and
 * /var/tmp are not here: the job's own (place_work) always cover them. /var/run is a symlink to
 * /run on most hosts (mask() then skips it as already hidden). */
static const char *const default_masks[] = {
    "/root",           "/home",    "/run",   "/var/run",    "/etc/drover",
    "/var/lib/drover", "/mnt",     "/media", "/etc/ssh",    "/var/spool/cron",
    "/var/lib/docker", "/var/log", "/boot",  "/lost+found",
};
/* /proc entries: files replaced by /dev/null, dirs by an empty read-only tmpfs (as Docker). */
static const char *const proc_masked[] = {"kcore",       "keys",          "timer_list",
                                          "sched_debug", "latency_stats", "timer_stats",
                                          "acpi",        "scsi",          "asound"};
static const char *const proc_readonly[] = {"bus", "fs", "irq", "sys", "sysrq-trigger"};
static const char *const sys_masked[] = {"firmware", "devices/virtual/powercap", "kernel/security",
                                         "kernel/debug", "fs/bpf"};
static const char *const dev_nodes[] = {"null", "zero", "full", "random", "urandom", "tty"};

static int fail(struct drv_error *err, const char *what, const char *path)
{
        return drv_err_errno(err, "%s %s", what, path);
}

static int setattr(const char *path, uint64_t set, bool recursive, struct drv_error *err)
{
        struct mount_attr attr = {.attr_set = set};
        if (syscall(SYS_mount_setattr, AT_FDCWD, path, recursive ? AT_RECURSIVE : 0, &attr,
                    sizeof(attr)) < 0)
                return fail(err, "mount_setattr", path);
        return 0;
}

static int mount_tmpfs(const char *path, const char *opts, unsigned long flags,
                       struct drv_error *err)
{
        if (mount("tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV | flags, opts) < 0)
                return fail(err, "mount tmpfs on", path);
        return 0;
}

/* Bind src over dst; ro makes it read-only, always nosuid+nodev. */
static int bind(const char *src, const char *dst, bool ro, struct drv_error *err)
{
        if (mount(src, dst, NULL, MS_BIND | MS_REC, NULL) < 0)
                return drv_err_errno(err, "bind %s on %s", src, dst);
        return setattr(dst, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | (ro ? MOUNT_ATTR_RDONLY : 0),
                       true, err);
}

/* Attach a detached mount tree (open_tree from the supervisor) at dst. */
static int attach(int tree_fd, const char *dst, struct drv_error *err)
{
        if (syscall(SYS_move_mount, tree_fd, "", AT_FDCWD, dst, MOVE_MOUNT_F_EMPTY_PATH) < 0)
                return fail(err, "move_mount on", dst);
        return 0;
}

static char *in_root(const char *p)
{
        return drv_asprintf("%s%s%s", R, p[0] == '/' ? "" : "/", p);
}

/* Create an empty file (mount point for a file bind) unless something is there. */
static int touch(const char *path, struct drv_error *err)
{
        int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
        if (fd < 0 && errno != EEXIST)
                return fail(err, "create mount point", path);
        if (fd >= 0)
                close(fd);
        return 0;
}

static int mkdir_parent(const char *path, struct drv_error *err)
{
        _cleanup_free_ char *d = strdup(path);
        if (!d)
                return drv_err(err, ENOMEM, "out of memory");
        char *s = strrchr(d, '/');
        if (s && s != d) {
                *s = 0;
                return drv_mkdir_p(d, 0755, err);
        }
        return 0;
}

/* Bind src over dst as it is: a bind copies the flags of src's mount (read-only, nosuid...). */
static int bind_as_is(const char *src, const char *dst, struct drv_error *err)
{
        if (mount(src, dst, NULL, MS_BIND, NULL) < 0)
                return drv_err_errno(err, "bind %s on %s", src, dst);
        return 0;
}

/* Hide one inside path: a directory under an empty one — writable: its own directory in the work
 * area (writes count against the disk bound); else the shared read-only E — a file under
 * /dev/null. Binds, not one tmpfs each: no superblock to make, and tear down, per mask. */
static int mask(const char *inside, bool writable, struct drv_error *err)
{
        _cleanup_free_ char *p = in_root(inside);
        struct stat st;
        if (!p)
                return drv_err(err, ENOMEM, "out of memory");
        if (lstat(p, &st) < 0)
                return 0; /* nothing to hide */
        if (S_ISLNK(st.st_mode)) {
                /* hide what it points to, as seen from the host root (same tree as R) */
                char real[4096];
                if (!realpath(inside, real))
                        return 0;
                if (strcmp(real, inside) == 0)
                        return 0;
                return mask(real, writable, err);
        }
        if (S_ISDIR(st.st_mode) && !writable)
                return bind_as_is(E, p, err);
        if (S_ISDIR(st.st_mode)) {
                static unsigned n;
                char dir[64];
                snprintf(dir, sizeof(dir), W "/masks/%u", n++);
                if (mkdir(dir, 0755) < 0)
                        return fail(err, "mkdir", dir);
                return bind_as_is(dir, p, err); /* the work area: rw, nosuid, nodev */
        }
        return bind("/dev/null", p, true, err);
}

/* A default mask that is a symlink to another default mask (/var/run -> /run) is hidden already. */
static bool masked_by_default(const char *path)
{
        char real[4096];
        struct stat st;
        if (lstat(path, &st) < 0 || !S_ISLNK(st.st_mode) || !realpath(path, real))
                return false;
        for (size_t i = 0; i < DRV_ARRAY_SIZE(default_masks); i++)
                if (strcmp(real, default_masks[i]) == 0)
                        return true;
        return false;
}

static int setup_dev(struct drv_error *err)
{
        int r;
        if ((r = drv_mkdir_p(R "/dev", 0755, err)) < 0 ||
            (r = mount_tmpfs(R "/dev", "mode=755,size=256k", MS_NOEXEC, err)) < 0)
                return r;
        for (size_t i = 0; i < DRV_ARRAY_SIZE(dev_nodes); i++) {
                char src[64], dst[96];
                snprintf(src, sizeof(src), "/dev/%s", dev_nodes[i]);
                snprintf(dst, sizeof(dst), R "/dev/%s", dev_nodes[i]);
                if ((r = touch(dst, err)) < 0)
                        return r;
                if (mount(src, dst, NULL, MS_BIND, NULL) < 0)
                        return fail(err, "bind", src);
        }
        /* the nodes (and the tmpfs under them): one call for all */
        if ((r = setattr(R "/dev", MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC, true, err)) < 0)
                return r;
        if (mkdir(R "/dev/pts", 0755) < 0 || mkdir(R "/dev/shm", 01777) < 0 ||
            mkdir(R "/dev/mqueue", 0755) < 0)
                return fail(err, "mkdir", R "/dev/*");
        if (mount("devpts", R "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC,
                  "newinstance,ptmxmode=0666,mode=0620,gid=5") < 0 &&
            mount("devpts", R "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC,
                  "newinstance,ptmxmode=0666,mode=0620") < 0)
                return fail(err, "mount devpts on", R "/dev/pts");
        if ((r = mount_tmpfs(R "/dev/shm", "mode=1777,size=64m", 0, err)) < 0)
                return r;
        static const char *const links[][2] = {{"pts/ptmx", "ptmx"},
                                               {"/proc/self/fd", "fd"},
                                               {"/proc/self/fd/0", "stdin"},
                                               {"/proc/self/fd/1", "stdout"},
                                               {"/proc/self/fd/2", "stderr"}};
        for (size_t i = 0; i < DRV_ARRAY_SIZE(links); i++) {
                char dst[64];
                snprintf(dst, sizeof(dst), R "/dev/%s", links[i][1]);
                if (symlink(links[i][0], dst) < 0)
                        return fail(err, "symlink", dst);
        }
        return 0;
}

static int setup_proc_sys(bool host_root, struct drv_error *err)
{
        int r;
        if ((r = drv_mkdir_p(R "/proc", 0555, err)) < 0)
                return r;
        if (mount("proc", R "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
                return fail(err, "mount proc on", R "/proc");
        char p[128];
        for (size_t i = 0; i < DRV_ARRAY_SIZE(proc_masked); i++) {
                snprintf(p, sizeof(p), "/proc/%s", proc_masked[i]);
                if ((r = mask(p, false, err)) < 0)
                        return r;
        }
        /* no nested user namespaces (also without seccomp): our userns's own ucount limit */
        if ((r = drv_write_file(R "/proc/sys/user/max_user_namespaces", "0", err)) < 0)
                return r;
        for (size_t i = 0; i < DRV_ARRAY_SIZE(proc_readonly); i++) {
                snprintf(p, sizeof(p), R "/proc/%s", proc_readonly[i]);
                if (access(p, F_OK) == 0 && (r = bind(p, p, true, err)) < 0)
                        return r;
        }
        if ((r = drv_mkdir_p(R "/sys", 0555, err)) < 0)
                return r;
        if (mount("sysfs", R "/sys", "sysfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) <
            0) {
                /* not allowed here: a read-only copy of the host's instead */
                if (!host_root && (r = bind("/sys", R "/sys", true, err)) < 0)
                        return r;
        }
        for (size_t i = 0; i < DRV_ARRAY_SIZE(sys_masked); i++) {
                snprintf(p, sizeof(p), "/sys/%s", sys_masked[i]);
                if ((r = mask(p, false, err)) < 0)
                        return r;
        }
        return 0;
}

/* The root itself: host "/" read-only, or overlay(lowers, upper in the work area). */
static int setup_root(const struct sb_init_args *a, struct drv_error *err)
{
        if (!a->cfg->rootfs && !a->lower_fds) {
                if (!a->host_fds && mount("/", R, NULL, MS_BIND | MS_REC, NULL) < 0)
                        return fail(err, "bind / on", R);
                for (size_t i = 0; a->host_fds && a->host_fds[i] >= 0; i++) {
                        _cleanup_free_ char *dst = i ? in_root(a->host_paths[i]) : strdup(R);
                        if (!dst)
                                return drv_err(err, ENOMEM, "out of memory");
                        int r = attach(a->host_fds[i], dst, err);
                        if (r < 0 && i > 0 && (errno == ENOENT || errno == ENOTDIR))
                                continue; /* its mount point went away meanwhile */
                        if (r < 0)
                                return drv_err_prefix(err, "host mount %s", a->host_paths[i]);
                }
                return setattr(R, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV, true,
                               err);
        }
        _cleanup_strbuf_ struct strbuf o = STRBUF_INIT;
        int r = strbuf_puts(&o, "lowerdir=");
        const int one[2] = {a->rootfs_fd, -1};
        const int *fds = a->lower_fds ? a->lower_fds : one;
        for (int i = 0; r == 0 && fds[i] >= 0; i++) {
                char dir[64];
                snprintf(dir, sizeof(dir), STAGE "/.lower%d", i);
                if (mkdir(dir, 0755) < 0)
                        return fail(err, "mkdir", dir);
                if ((r = attach(fds[i], dir, err)) < 0)
                        return r;
                r = strbuf_printf(&o, "%s%s", i ? ":" : "", dir);
        }
        r = r ?: strbuf_puts(&o, ",upperdir=" W "/upper,workdir=" W "/ovlwork,userxattr");
        if (r < 0)
                return drv_err(err, ENOMEM, "out of memory");
        if (mkdir(W "/upper", 0755) < 0 || mkdir(W "/ovlwork", 0700) < 0)
                return fail(err, "mkdir", W "/upper");
        if (mount("overlay", R, "overlay", MS_NOSUID | MS_NODEV, o.buf) < 0)
                return drv_err_errno(err, "mount overlay (%s) on %s", o.buf, R);
        return 0;
}

static int setup_binds(const struct sb_init_args *a, struct drv_error *err)
{
        for (size_t i = 0; i < a->cfg->n_binds; i++) {
                const struct sandbox_bind *b = &a->cfg->binds[i];
                _cleanup_free_ char *dst = in_root(b->inside_path);
                struct stat st;
                int r;
                if (!dst)
                        return drv_err(err, ENOMEM, "out of memory");
                if (fstat(a->bind_fds[i], &st) < 0)
                        return fail(err, "stat", b->host_path);
                if (access(dst, F_OK) < 0) {
                        r = S_ISDIR(st.st_mode) ? drv_mkdir_p(dst, 0755, err)
                                                : mkdir_parent(dst, err) ?: touch(dst, err);
                        if (r < 0)
                                return drv_err_prefix(err, "mount point for %s", b->inside_path);
                }
                if (attach(a->bind_fds[i], dst, err) < 0)
                        return drv_err_prefix(err, "bind %s", b->host_path);
                r = setattr(dst,
                            MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV |
                                (b->readonly ? MOUNT_ATTR_RDONLY : 0),
                            true, err);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int setup_work(const struct sb_init_args *a, struct drv_error *err)
{
        char opts[96];
        int r;
        snprintf(opts, sizeof(opts), "mode=755,size=%" PRIu64, a->disk_bytes);
        if ((r = mount_tmpfs(W, opts, 0, err)) < 0)
                return r;
        if (mkdir(W "/home", 0755) < 0 || mkdir(W "/tmp", 01777) < 0 ||
            mkdir(W "/masks", 0755) < 0 || mkdir(W "/vartmp", 01777) < 0 ||
            chmod(W "/tmp", 01777) < 0 || chmod(W "/vartmp", 01777) < 0 ||
            chown(W "/home", a->uid, a->gid) < 0)
                return fail(err, "prepare", W);
        return 0;
}

static int place_work(const struct sb_init_args *a, bool host_root, struct drv_error *err)
{
        _cleanup_free_ char *home = in_root(a->home);
        struct stat st;
        int r;
        if (!home)
                return drv_err(err, ENOMEM, "out of memory");
        if (!host_root && a->cfg->ids_given) {
                /* an image's user: its home stays as the image has it (tools live there), in
                 * the writable overlay (whose upper is in the size-bounded work area) */
                if (lstat(home, &st) < 0 &&
                    ((r = drv_mkdir_p(home, 0755, err)) < 0 || chown(home, a->uid, a->gid) < 0))
                        return r < 0 ? r : fail(err, "chown", home);
        } else if ((r = drv_mkdir_p(home, 0755, err)) < 0 ||
                   (r = bind(W "/home", home, false, err)) < 0) {
                return r;
        }
        if ((r = drv_mkdir_p(R "/tmp", 01777, err)) < 0 ||
            (r = bind(W "/tmp", R "/tmp", false, err)) < 0)
                return r;
        if (access(R "/var/tmp", F_OK) == 0 &&
            (r = bind(W "/vartmp", R "/var/tmp", false, err)) < 0)
                return r;
        return 0;
}

int sb_rootfs_build(const struct sb_init_args *a, struct drv_error *err)
{
        int r;
        bool host_root = !a->cfg->rootfs && !a->lower_fds;
        if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
                return fail(err, "make private", "/");
        if ((r = mount_tmpfs(STAGE, "mode=700,size=64k", 0, err)) < 0)
                return r;
        if (mkdir(R, 0755) < 0 || mkdir(W, 0755) < 0 || mkdir(E, 0555) < 0)
                return fail(err, "mkdir", R);
        if ((r = mount_tmpfs(E, "size=4k,mode=555", MS_RDONLY | MS_NOEXEC, err)) < 0)
                return r;
        if ((r = setup_work(a, err)) < 0 || (r = setup_root(a, err)) < 0)
                return r;
        if (host_root) {
                for (size_t i = 0; i < DRV_ARRAY_SIZE(default_masks); i++)
                        if (!masked_by_default(default_masks[i]) &&
                            (r = mask(default_masks[i], true, err)) < 0)
                                return r;
        } else if (access(R "/run", F_OK) == 0 &&
                   (r = mount_tmpfs(R "/run", "mode=755,size=16m", 0, err)) < 0) {
                return r;
        }
        for (const char *const *m = a->cfg->masked_paths; m && *m; m++)
                if ((r = mask(*m, false, err)) < 0)
                        return r;
        if ((r = place_work(a, host_root, err)) < 0 || (r = setup_dev(err)) < 0 ||
            (r = setup_proc_sys(host_root, err)) < 0 || (r = setup_binds(a, err)) < 0)
                return r;
        if (chdir(R) < 0)
                return fail(err, "chdir", R);
        if (syscall(SYS_pivot_root, ".", ".") < 0)
                return fail(err, "pivot_root", R);
        if (umount2(".", MNT_DETACH) < 0)
                return fail(err, "detach old root", "/");
        if (chdir("/") < 0)
                return fail(err, "chdir", "/");
        return 0;
}

/* mountinfo escapes space, tab, newline and backslash as \ooo */
static void unescape(char *s)
{
        char *w = s;
        for (char *r = s; *r; r++) {
                if (r[0] == '\\' && r[1] >= '0' && r[1] <= '3' && r[2] >= '0' && r[2] <= '7' &&
                    r[3] >= '0' && r[3] <= '7') {
                        *w++ = (char)((r[1] - '0') * 64 + (r[2] - '0') * 8 + (r[3] - '0'));
                        r += 3;
                } else {
                        *w++ = *r;
                }
        }
        *w = 0;
}

static bool under(const char *path, const char *dir)
{
        size_t n = strlen(dir);
        return strncmp(path, dir, n) == 0 && (path[n] == 0 || path[n] == '/');
}

/* Paths the job's root replaces or hides in host-root mode: host mounts there are not shown. */
static bool hidden(const char *mp)
{
        static const char *const replaced[] = {"/proc", "/sys", "/dev", "/tmp", "/var/tmp"};
        for (size_t i = 0; i < DRV_ARRAY_SIZE(replaced); i++)
                if (under(mp, replaced[i]))
                        return true;
        for (size_t i = 0; i < DRV_ARRAY_SIZE(default_masks); i++)
                if (under(mp, default_masks[i]))
                        return true;
        return false;
}

void sb_host_trees_free(struct sb_init_args *a)
{
        for (int *f = a->host_fds; f && *f >= 0; f++)
                close(*f);
        free(a->host_fds);
        drv_strv_free(a->host_paths);
        a->host_fds = NULL;
        a->host_paths = NULL;
}

int sb_host_trees(struct sb_init_args *a, struct drv_error *err)
{
        _cleanup_free_ char *mi = NULL;
        int r = drv_read_file("/proc/self/mountinfo", &mi, NULL, 0, err);
        if (r < 0)
                return r;
        size_t n = 0, cap = 16;
        a->host_fds = malloc(cap * sizeof(int));
        if (!a->host_fds || drv_strv_push(&a->host_paths, "/") < 0)
                goto oom;
        a->host_fds[0] = -1;
        char *save = NULL;
        for (char *l = strtok_r(mi, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
                /* ID PARENT MAJ:MIN ROOT MOUNTPOINT ... */
                char *f = l;
                for (int i = 0; i < 4 && f; i++)
                        f = strchr(f, ' ') ? strchr(f, ' ') + 1 : NULL;
                if (!f)
                        continue;
                char *end = strchr(f, ' ');
                if (end)
                        *end = 0;
                unescape(f);
                if (f[0] != '/' || strcmp(f, "/") == 0 || hidden(f))
                        continue;
                if (n + 2 >= cap) {
                        int *nf = realloc(a->host_fds, (cap *= 2) * sizeof(int));
                        if (!nf)
                                goto oom;
                        a->host_fds = nf;
                }
                int fd =
                    (int)syscall(SYS_open_tree, AT_FDCWD, f, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
                if (fd < 0)
                        continue; /* gone meanwhile, or not ours to copy: not shown */
                if (drv_strv_push(&a->host_paths, f) < 0) {
                        close(fd);
                        goto oom;
                }
                a->host_fds[++n] = fd;
                a->host_fds[n + 1] = -1;
        }
        a->host_fds[0] =
            (int)syscall(SYS_open_tree, AT_FDCWD, "/", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
        if (a->host_fds[0] < 0) {
                r = drv_err_errno(err, "copy the host root");
                a->host_fds[0] = -1;
                for (size_t i = 1; i <= n; i++)
                        close(a->host_fds[i]);
                free(TAKE_PTR(a->host_fds));
                drv_strv_free(TAKE_PTR(a->host_paths));
                return r;
        }
        if (n == 0)
                a->host_fds[1] = -1;
        return 0;
oom:
        sb_host_trees_free(a);
        return drv_err(err, ENOMEM, "out of memory");
}

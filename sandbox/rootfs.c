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
#include <linux/openat2.h>

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

/* Every mount target inside the new root is an fd found by openat2(RESOLVE_IN_ROOT) from R: a
 * symlink in an image (/home -> /var/tmp) is resolved inside the image, never through the host's
 * path walk (issue 20: that created files on the host). mount(2) gets the fd as /proc/self/fd/N;
 * what is mounted on it is reached by resolving again (the fd stays below the new mount). */
struct target {
        int fd;
        char path[32]; /* /proc/self/fd/N */
};

static void target_close(struct target *t)
{
        if (t->fd >= 0)
                close(t->fd);
        t->fd = -1;
}

/* openat2 under R with symlinks resolved inside it; -errno. */
static int open_in_root(const char *inside, int flags)
{
        _cleanup_close_ int rfd = open(R, O_PATH | O_DIRECTORY | O_CLOEXEC);
        struct open_how how = {.flags = (uint64_t)(flags | O_CLOEXEC),
                               .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS};
        if (rfd < 0)
                return -errno;
        int fd = (int)syscall(SYS_openat2, rfd, inside, &how, sizeof(how));
        return fd < 0 ? -errno : fd;
}

/* Create the last component of `inside` (its parent resolved in the root): a directory of
 * `mode`, or an empty file when !dir. */
static int create_in_root(const char *inside, bool dir, mode_t mode, struct drv_error *err)
{
        _cleanup_free_ char *parent = strdup(inside);
        if (!parent)
                return drv_err(err, ENOMEM, "out of memory");
        char *slash = strrchr(parent, '/');
        const char *base = slash ? slash + 1 : parent;
        if (slash)
                *slash = 0;
        _cleanup_close_ int pfd =
            open_in_root(slash && parent[0] ? parent : "/", O_PATH | O_DIRECTORY);
        if (pfd < 0)
                return drv_err(err, -pfd, "mount point %s: its parent: %s", inside, strerror(-pfd));
        int r = dir ? mkdirat(pfd, base, mode)
                    : openat(pfd, base, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
        if (r < 0 && errno == EEXIST) /* there, yet not found: a link to nothing */
                return drv_err(err, ELOOP,
                               "mount point %s is a symbolic link to a missing path inside the "
                               "root: refused",
                               inside);
        if (r < 0)
                return drv_err_errno(err, "create mount point %s", inside);
        if (!dir)
                close(r);
        return 0;
}

/* Resolve `inside` in the new root; with create, make what is missing (parents 0755, the last
 * a directory of `mode` or, !dir, an empty file). -ENOENT without an error when !create. */
static int root_target(const char *inside, bool create, bool dir, mode_t mode, struct target *t,
                       struct drv_error *err)
{
        t->fd = open_in_root(inside, O_PATH);
        if (t->fd == -ENOSYS)
                return drv_err(err, ENOSYS,
                               "this kernel has no openat2: mount targets cannot "
                               "be resolved inside the root");
        if (t->fd == -ENOENT && create) {
                _cleanup_free_ char *p = strdup(inside);
                if (!p)
                        return drv_err(err, ENOMEM, "out of memory");
                for (char *c = strchr(p + 1, '/');; c = strchr(c + 1, '/')) {
                        if (c)
                                *c = 0;
                        int fd = open_in_root(p, O_PATH);
                        int r = fd >= 0 ? 0
                                : fd != -ENOENT
                                    ? drv_err(err, -fd, "mount point %s: %s", p, strerror(-fd))
                                    : create_in_root(p, c || dir, c ? 0755 : mode, err);
                        if (fd >= 0)
                                close(fd);
                        if (r < 0)
                                return r;
                        if (!c)
                                break;
                        *c = '/';
                }
                t->fd = open_in_root(inside, O_PATH);
        }
        if (t->fd == -ENOENT && !create)
                return -ENOENT;
        if (t->fd < 0)
                return drv_err(err, -t->fd, "mount point %s: %s", inside, strerror(-t->fd));
        snprintf(t->path, sizeof(t->path), "/proc/self/fd/%d", t->fd);
        return 0;
}

/* mount_setattr on what is mounted at `inside` now (resolved again: see struct target). */
static int setattr(const char *inside, uint64_t set, bool recursive, struct drv_error *err)
{
        struct mount_attr attr = {.attr_set = set};
        int fd = open_in_root(inside, O_PATH);
        if (fd < 0)
                return drv_err(err, -fd, "mount_setattr %s: %s", inside, strerror(-fd));
        int r = (int)syscall(SYS_mount_setattr, fd, "",
                             AT_EMPTY_PATH | (recursive ? AT_RECURSIVE : 0), &attr, sizeof(attr));
        close(fd);
        return r < 0 ? fail(err, "mount_setattr", inside) : 0;
}

/* A tmpfs on the directory `inside` (created if missing, of `mode`). */
static int mount_tmpfs(const char *inside, mode_t mode, const char *opts, unsigned long flags,
                       struct drv_error *err)
{
        struct target t __attribute__((cleanup(target_close))) = {.fd = -1};
        int r = root_target(inside, true, true, mode, &t, err);
        if (r < 0)
                return r;
        if (mount("tmpfs", t.path, "tmpfs", MS_NOSUID | MS_NODEV | flags, opts) < 0)
                return fail(err, "mount tmpfs on", inside);
        return 0;
}

/* Bind the host path src over `inside` (created if missing: a directory if src is one, else an
 * empty file); ro makes it read-only, always nosuid+nodev unless as_is (the flags of src's
 * mount: read-only, nosuid...). */
static int bind_flags(const char *src, const char *inside, bool ro, bool as_is,
                      struct drv_error *err)
{
        struct target t __attribute__((cleanup(target_close))) = {.fd = -1};
        struct stat st;
        if (stat(src, &st) < 0)
                return fail(err, "stat", src);
        int r = root_target(inside, true, S_ISDIR(st.st_mode), 0755, &t, err);
        if (r < 0)
                return r;
        if (mount(src, t.path, NULL, MS_BIND | (as_is ? 0 : MS_REC), NULL) < 0)
                return drv_err_errno(err, "bind %s on %s", src, inside);
        if (as_is)
                return 0;
        return setattr(inside, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | (ro ? MOUNT_ATTR_RDONLY : 0),
                       true, err);
}

static int bind(const char *src, const char *inside, bool ro, struct drv_error *err)
{
        return bind_flags(src, inside, ro, false, err);
}

/* Attach a detached mount tree (open_tree from the supervisor) at the host path dst. */
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

/* Hide one inside path (symlinks resolved inside the root): a directory under an empty one —
 * writable: its own directory in the work area (writes count against the disk bound); else the
 * shared read-only E — a file under /dev/null. Binds, not one tmpfs each: no superblock to make,
 * and tear down, per mask. */
static int mask(const char *inside, bool writable, struct drv_error *err)
{
        struct target t __attribute__((cleanup(target_close))) = {.fd = -1};
        struct stat st;
        int r = root_target(inside, false, false, 0, &t, err);
        if (r == -ENOENT)
                return 0; /* nothing to hide */
        if (r < 0)
                return r;
        if (fstat(t.fd, &st) < 0)
                return fail(err, "stat", inside);
        if (!S_ISDIR(st.st_mode))
                return bind("/dev/null", inside, true, err);
        char dir[64] = E;
        if (writable) {
                static unsigned n;
                snprintf(dir, sizeof(dir), W "/masks/%u", n++);
                if (mkdir(dir, 0755) < 0)
                        return fail(err, "mkdir", dir);
        }
        if (mount(dir, t.path, NULL, MS_BIND, NULL) < 0) /* as is: E ro, the work area rw */
                return drv_err_errno(err, "bind %s on %s", dir, inside);
        return 0;
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
        if ((r = mount_tmpfs("/dev", 0755, "mode=755,size=256k", MS_NOEXEC, err)) < 0)
                return r;
        for (size_t i = 0; i < DRV_ARRAY_SIZE(dev_nodes); i++) {
                char src[64];
                snprintf(src, sizeof(src), "/dev/%s", dev_nodes[i]);
                if ((r = bind_flags(src, src, false, true, err)) < 0)
                        return r;
        }
        /* the nodes (and the tmpfs under them): one call for all */
        if ((r = setattr("/dev", MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC, true, err)) < 0)
                return r;
        struct target t __attribute__((cleanup(target_close))) = {.fd = -1};
        if ((r = root_target("/dev/pts", true, true, 0755, &t, err)) < 0)
                return r;
        if (mount("devpts", t.path, "devpts", MS_NOSUID | MS_NOEXEC,
                  "newinstance,ptmxmode=0666,mode=0620,gid=5") < 0 &&
            mount("devpts", t.path, "devpts", MS_NOSUID | MS_NOEXEC,
                  "newinstance,ptmxmode=0666,mode=0620") < 0)
                return fail(err, "mount devpts on", "/dev/pts");
        if ((r = mount_tmpfs("/dev/shm", 01777, "mode=1777,size=64m", 0, err)) < 0 ||
            (r = root_target("/dev/mqueue", true, true, 0755, &t, err)) < 0)
                return r;
        static const char *const links[][2] = {{"pts/ptmx", "ptmx"},
                                               {"/proc/self/fd", "fd"},
                                               {"/proc/self/fd/0", "stdin"},
                                               {"/proc/self/fd/1", "stdout"},
                                               {"/proc/self/fd/2", "stderr"}};
        _cleanup_close_ int dev = open_in_root("/dev", O_PATH | O_DIRECTORY);
        if (dev < 0)
                return drv_err(err, -dev, "open /dev: %s", strerror(-dev));
        for (size_t i = 0; i < DRV_ARRAY_SIZE(links); i++)
                if (symlinkat(links[i][0], dev, links[i][1]) < 0)
                        return fail(err, "symlink /dev/", links[i][1]);
        return 0;
}

/* A fresh kernel file system (proc, sysfs) on the directory `inside`; *refused: the kernel
 * said no to the mount itself (err filled either way). */
static int mount_kernfs(const char *type, const char *inside, unsigned long flags, bool *refused,
                        struct drv_error *err)
{
        struct target t __attribute__((cleanup(target_close))) = {.fd = -1};
        int r = root_target(inside, true, true, 0555, &t, err);
        *refused = false;
        if (r < 0)
                return r;
        if (mount(type, t.path, type, flags, NULL) < 0) {
                *refused = true;
                return drv_err_errno(err, "mount %s on %s", type, inside);
        }
        return 0;
}

static int setup_proc_sys(bool host_root, struct drv_error *err)
{
        bool refused;
        int r = mount_kernfs("proc", "/proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, &refused, err);
        if (r < 0)
                return r;
        char p[128];
        for (size_t i = 0; i < DRV_ARRAY_SIZE(proc_masked); i++) {
                snprintf(p, sizeof(p), "/proc/%s", proc_masked[i]);
                if ((r = mask(p, false, err)) < 0)
                        return r;
        }
        /* no nested user namespaces (also without seccomp): our userns's own ucount limit */
        _cleanup_close_ int fd = open_in_root("/proc/sys/user/max_user_namespaces", O_WRONLY);
        if (fd < 0 || write(fd, "0", 1) != 1)
                return drv_err(err, fd < 0 ? -fd : errno, "cannot write %s",
                               "/proc/sys/user/max_user_namespaces");
        for (size_t i = 0; i < DRV_ARRAY_SIZE(proc_readonly); i++) {
                struct target t __attribute__((cleanup(target_close))) = {.fd = -1};
                snprintf(p, sizeof(p), "/proc/%s", proc_readonly[i]);
                if ((r = root_target(p, false, false, 0, &t, err)) == -ENOENT)
                        continue;
                if (r < 0 || (r = bind(t.path, p, true, err)) < 0)
                        return r;
        }
        r = mount_kernfs("sysfs", "/sys", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, &refused,
                         err);
        if (r < 0 && !refused)
                return r;
        /* not allowed here: a read-only copy of the host's instead */
        if (r < 0 && !host_root && (r = bind("/sys", "/sys", true, err)) < 0)
                return r;
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
                        /* the host's own mount points, in the host's tree (R is its copy) */
                        _cleanup_free_ char *dst = i ? in_root(a->host_paths[i]) : strdup(R);
                        if (!dst)
                                return drv_err(err, ENOMEM, "out of memory");
                        int r = attach(a->host_fds[i], dst, err);
                        if (r < 0 && i > 0 && (errno == ENOENT || errno == ENOTDIR))
                                continue; /* its mount point went away meanwhile */
                        if (r < 0)
                                return drv_err_prefix(err, "host mount %s", a->host_paths[i]);
                }
                return setattr("/", MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV, true,
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
                struct target t __attribute__((cleanup(target_close))) = {.fd = -1};
                struct stat st;
                int r;
                if (fstat(a->bind_fds[i], &st) < 0)
                        return fail(err, "stat", b->host_path);
                if ((r = root_target(b->inside_path, true, S_ISDIR(st.st_mode), 0755, &t, err)) < 0)
                        return drv_err_prefix(err, "bind %s", b->host_path);
                if (syscall(SYS_move_mount, a->bind_fds[i], "", t.fd, "",
                            MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) < 0)
                        return drv_err_errno(err, "bind %s on %s", b->host_path, b->inside_path);
                r = setattr(b->inside_path,
                            MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV |
                                (b->readonly ? MOUNT_ATTR_RDONLY : 0),
                            true, err);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* A tmpfs on a staging path of ours (not in the root). */
static int mount_stage(const char *path, const char *opts, unsigned long flags,
                       struct drv_error *err)
{
        if (mount("tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV | flags, opts) < 0)
                return fail(err, "mount tmpfs on", path);
        return 0;
}

static int setup_work(const struct sb_init_args *a, struct drv_error *err)
{
        char opts[96];
        int r;
        snprintf(opts, sizeof(opts), "mode=755,size=%" PRIu64, a->disk_bytes);
        if ((r = mount_stage(W, opts, 0, err)) < 0)
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
        struct target t __attribute__((cleanup(target_close))) = {.fd = -1};
        int r;
        if (!host_root && a->cfg->ids_given) {
                /* an image's user: its home stays as the image has it (tools live there), in
                 * the writable overlay (whose upper is in the size-bounded work area) */
                r = root_target(a->home, false, true, 0, &t, err);
                if (r == -ENOENT && (r = root_target(a->home, true, true, 0755, &t, err)) == 0 &&
                    fchownat(t.fd, "", a->uid, a->gid, AT_EMPTY_PATH) < 0)
                        return fail(err, "chown", a->home);
                if (r < 0)
                        return r;
        } else if ((r = bind(W "/home", a->home, false, err)) < 0) {
                return r;
        }
        if ((r = bind(W "/tmp", "/tmp", false, err)) < 0)
                return r;
        r = root_target("/var/tmp", false, true, 0, &t, err);
        if (r == 0)
                r = bind(W "/vartmp", "/var/tmp", false, err);
        return r == -ENOENT ? 0 : r;
}

int sb_rootfs_build(const struct sb_init_args *a, struct drv_error *err)
{
        int r;
        bool host_root = !a->cfg->rootfs && !a->lower_fds;
        if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
                return fail(err, "make private", "/");
        if ((r = mount_stage(STAGE, "mode=700,size=64k", 0, err)) < 0)
                return r;
        if (mkdir(R, 0755) < 0 || mkdir(W, 0755) < 0 || mkdir(E, 0555) < 0)
                return fail(err, "mkdir", R);
        if ((r = mount_stage(E, "size=4k,mode=555", MS_RDONLY | MS_NOEXEC, err)) < 0)
                return r;
        if ((r = setup_work(a, err)) < 0 || (r = setup_root(a, err)) < 0)
                return r;
        struct target run __attribute__((cleanup(target_close))) = {.fd = -1};
        if (host_root) {
                for (size_t i = 0; i < DRV_ARRAY_SIZE(default_masks); i++)
                        if (!masked_by_default(default_masks[i]) &&
                            (r = mask(default_masks[i], true, err)) < 0)
                                return r;
        } else if ((r = root_target("/run", false, true, 0, &run, err)) == 0) {
                if ((r = mount_tmpfs("/run", 0755, "mode=755,size=16m", 0, err)) < 0)
                        return r;
        } else if (r != -ENOENT) {
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

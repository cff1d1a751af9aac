/* seccomp_profile.c: the job's syscall profile, compiled to classic BPF with libseccomp. Runs at
 * build time (seccomp_gen.c writes the programs into a header that seccomp.c serves), so starting
 * a sandbox neither links nor runs libseccomp.
 *
 * Two filters, installed in this order by every spawned process:
 *  1. the allow-list, modelled on Docker's default profile for a container with Docker's default
 *     capabilities: everything not listed fails with EPERM (keyctl, bpf, mount, unshare, setns,
 *     kexec, modules, open_by_handle_at, userfaultfd, perf, ...). Also io_uring (it would run
 *     syscalls this filter never sees), which Docker's list allows. clone only without namespace
 *     flags, clone3 ENOSYS (its flags are in memory the filter cannot read: libc falls back to
 *     clone), personality only the harmless personas. Syscalls newer than this list that are
 *     not allowed fail with ENOSYS, as runc does, so that libc falls back instead of failing.
 *  2. a few exceptions inside allowed syscalls (default allow): socket families AF_ALG, AF_KEY and
 *     AF_VSOCK (EAFNOSUPPORT), and the ioctls that fake terminal input (TIOCSTI, TIOCLINUX).
 *     libseccomp cannot express "allow all but" in the allow-list itself (an unconditional
 *     rule overrides conditional ones); the kernel applies every filter and the most restrictive
 *     answer wins. */
#include "sandbox/internal.h"

#include <fcntl.h>
#include <sched.h>
#include <seccomp.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <termios.h>

/* Allowed with any arguments. Names not on the build architecture are skipped. */
static const char *const allowed[] = {
    /* files and directories */
    "access",
    "chdir",
    "chmod",
    "chown",
    "chown32",
    "close",
    "close_range",
    "copy_file_range",
    "creat",
    "dup",
    "dup2",
    "dup3",
    "faccessat",
    "faccessat2",
    "fadvise64",
    "fadvise64_64",
    "fallocate",
    "fanotify_mark",
    "fchdir",
    "fchmod",
    "fchmodat",
    "fchown",
    "fchown32",
    "fchownat",
    "fcntl",
    "fcntl64",
    "fdatasync",
    "fgetxattr",
    "flistxattr",
    "flock",
    "fremovexattr",
    "fsetxattr",
    "fstat",
    "fstat64",
    "fstatat64",
    "fstatfs",
    "fstatfs64",
    "fsync",
    "ftruncate",
    "ftruncate64",
    "futimesat",
    "getcwd",
    "getdents",
    "getdents64",
    "getxattr",
    "inotify_add_watch",
    "inotify_init",
    "inotify_init1",
    "inotify_rm_watch",
    "lchown",
    "lchown32",
    "lgetxattr",
    "link",
    "linkat",
    "listxattr",
    "llistxattr",
    "_llseek",
    "lremovexattr",
    "lseek",
    "lsetxattr",
    "lstat",
    "lstat64",
    "mkdir",
    "mkdirat",
    "mknod",
    "mknodat",
    "name_to_handle_at",
    "newfstatat",
    "open",
    "openat",
    "openat2",
    "pread64",
    "preadv",
    "preadv2",
    "pwrite64",
    "pwritev",
    "pwritev2",
    "read",
    "readahead",
    "readlink",
    "readlinkat",
    "readv",
    "removexattr",
    "rename",
    "renameat",
    "renameat2",
    "rmdir",
    "sendfile",
    "sendfile64",
    "setxattr",
    "splice",
    "stat",
    "stat64",
    "statfs",
    "statfs64",
    "statx",
    "symlink",
    "symlinkat",
    "sync",
    "sync_file_range",
    "syncfs",
    "tee",
    "truncate",
    "truncate64",
    "umask",
    "unlink",
    "unlinkat",
    "utime",
    "utimensat",
    "utimensat_time64",
    "utimes",
    "vmsplice",
    "write",
    "writev",
    /* memory */
    "brk",
    "madvise",
    "membarrier",
    "memfd_create",
    "memfd_secret",
    "mincore",
    "mlock",
    "mlock2",
    "mlockall",
    "mmap",
    "mmap2",
    "mprotect",
    "mremap",
    "msync",
    "munlock",
    "munlockall",
    "munmap",
    "pkey_alloc",
    "pkey_free",
    "pkey_mprotect",
    "remap_file_pages",
    /* processes, threads, signals */
    "arch_prctl",
    "capget",
    "capset",
    "chroot",
    "execve",
    "execveat",
    "exit",
    "exit_group",
    "fork",
    "get_robust_list",
    "get_thread_area",
    "getcpu",
    "getegid",
    "getegid32",
    "geteuid",
    "geteuid32",
    "getgid",
    "getgid32",
    "getgroups",
    "getgroups32",
    "getitimer",
    "getpgid",
    "getpgrp",
    "getpid",
    "getppid",
    "getpriority",
    "getresgid",
    "getresgid32",
    "getresuid",
    "getresuid32",
    "getrlimit",
    "getrusage",
    "getsid",
    "gettid",
    "getuid",
    "getuid32",
    "ioprio_get",
    "ioprio_set",
    "kill",
    "modify_ldt",
    "pause",
    "pidfd_open",
    "pidfd_send_signal",
    "prctl",
    "prlimit64",
    "process_mrelease",
    "process_vm_readv",
    "process_vm_writev",
    "ptrace",
    "restart_syscall",
    "rseq",
    "rt_sigaction",
    "rt_sigpending",
    "rt_sigprocmask",
    "rt_sigqueueinfo",
    "rt_sigreturn",
    "rt_sigsuspend",
    "rt_sigtimedwait",
    "rt_sigtimedwait_time64",
    "rt_tgsigqueueinfo",
    "sched_get_priority_max",
    "sched_get_priority_min",
    "sched_getaffinity",
    "sched_getattr",
    "sched_getparam",
    "sched_getscheduler",
    "sched_rr_get_interval",
    "sched_rr_get_interval_time64",
    "sched_setaffinity",
    "sched_setattr",
    "sched_setparam",
    "sched_setscheduler",
    "sched_yield",
    "seccomp",
    "set_robust_list",
    "set_thread_area",
    "set_tid_address",
    "setfsgid",
    "setfsgid32",
    "setfsuid",
    "setfsuid32",
    "setgid",
    "setgid32",
    "setgroups",
    "setgroups32",
    "setitimer",
    "setpgid",
    "setpriority",
    "setregid",
    "setregid32",
    "setresgid",
    "setresgid32",
    "setresuid",
    "setresuid32",
    "setreuid",
    "setreuid32",
    "setrlimit",
    "setsid",
    "setuid",
    "setuid32",
    "sigaltstack",
    "signalfd",
    "signalfd4",
    "sigprocmask",
    "sigreturn",
    "tgkill",
    "tkill",
    "ugetrlimit",
    "uname",
    "vfork",
    "wait4",
    "waitid",
    "waitpid",
    /* landlock: a job may sandbox itself further */
    "landlock_add_rule",
    "landlock_create_ruleset",
    "landlock_restrict_self",
    /* time */
    "adjtimex",
    "alarm",
    "clock_adjtime",
    "clock_adjtime64",
    "clock_getres",
    "clock_getres_time64",
    "clock_gettime",
    "clock_gettime64",
    "clock_nanosleep",
    "clock_nanosleep_time64",
    "gettimeofday",
    "nanosleep",
    "time",
    "timer_create",
    "timer_delete",
    "timer_getoverrun",
    "timer_gettime",
    "timer_gettime64",
    "timer_settime",
    "timer_settime64",
    "timerfd_create",
    "timerfd_gettime",
    "timerfd_gettime64",
    "timerfd_settime",
    "timerfd_settime64",
    "times",
    /* waiting, events, futexes, async I/O (not io_uring) */
    "epoll_create",
    "epoll_create1",
    "epoll_ctl",
    "epoll_ctl_old",
    "epoll_pwait",
    "epoll_pwait2",
    "epoll_wait",
    "epoll_wait_old",
    "eventfd",
    "eventfd2",
    "futex",
    "futex_time64",
    "futex_waitv",
    "io_cancel",
    "io_destroy",
    "io_getevents",
    "io_pgetevents",
    "io_pgetevents_time64",
    "io_setup",
    "io_submit",
    "_newselect",
    "pipe",
    "pipe2",
    "poll",
    "ppoll",
    "ppoll_time64",
    "pselect6",
    "pselect6_time64",
    "select",
    /* System V and POSIX IPC (the job's own ipc namespace) */
    "ipc",
    "mq_getsetattr",
    "mq_notify",
    "mq_open",
    "mq_timedreceive",
    "mq_timedreceive_time64",
    "mq_timedsend",
    "mq_timedsend_time64",
    "mq_unlink",
    "msgctl",
    "msgget",
    "msgrcv",
    "msgsnd",
    "semctl",
    "semget",
    "semop",
    "semtimedop",
    "semtimedop_time64",
    "shmat",
    "shmctl",
    "shmdt",
    "shmget",
    /* sockets (families: filter 2) and ioctl (terminal input: filter 2) */
    "accept",
    "accept4",
    "bind",
    "connect",
    "getpeername",
    "getsockname",
    "getsockopt",
    "ioctl",
    "listen",
    "recv",
    "recvfrom",
    "recvmmsg",
    "recvmmsg_time64",
    "recvmsg",
    "send",
    "sendmmsg",
    "sendmsg",
    "sendto",
    "setsockopt",
    "shutdown",
    "socket",
    "socketcall",
    "socketpair",
    /* misc */
    "getrandom",
    "sysinfo",
};

/* Syscalls since Linux 5.1 share one number on every architecture. Those newer than libseccomp
 * may know by name: allowed (the same kind of call as one listed above) or ENOSYS. */
static const struct {
        int nr;
        bool allow;
        const char *name;
} newer[] = {
    {451, false, "cachestat"},         {452, true, "fchmodat2"},
    {453, true, "map_shadow_stack"},   {454, true, "futex_wake"},
    {455, true, "futex_wait"},         {456, true, "futex_requeue"},
    {457, false, "statmount"},         {458, false, "listmount"},
    {459, false, "lsm_get_self_attr"}, {460, false, "lsm_set_self_attr"},
    {461, false, "lsm_list_modules"},  {462, true, "mseal"},
    {463, true, "setxattrat"},         {464, true, "getxattrat"},
    {465, true, "listxattrat"},        {466, true, "removexattrat"},
    {467, false, "open_tree_attr"},    {468, true, "file_getattr"},
    {469, true, "file_setattr"},
};
#define NEWER_ENOSYS_END 512 /* 470..511: not yet known here, ENOSYS too */

/* CLONE_NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET: Docker's mask 0x7E020000 */
#define CLONE_NS_MASK                                                                              \
        (CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER |             \
         CLONE_NEWPID | CLONE_NEWNET)

/* personas allowed: PER_LINUX, PER_LINUX32, UNAME26, PER_LINUX32|UNAME26, and the query */
static const unsigned long personas[] = {0x0, 0x8, 0x20000, 0x20008, 0xffffffffUL};

static int add(scmp_filter_ctx ctx, uint32_t action, int nr, const char *name, unsigned n,
               const struct scmp_arg_cmp *cmp, struct drv_error *err)
{
        int r = seccomp_rule_add_array(ctx, action, nr, n, cmp);
        if (r < 0)
                return drv_err(err, -r, "seccomp rule for %s: %s", name, strerror(-r));
        return 0;
}

static int rule(scmp_filter_ctx ctx, uint32_t action, const char *name, unsigned n,
                const struct scmp_arg_cmp *cmp, struct drv_error *err)
{
        int nr = seccomp_syscall_resolve_name(name);
        if (nr == __NR_SCMP_ERROR)
                return 0; /* unknown to this libseccomp: not a syscall here */
        return add(ctx, action, nr, name, n, cmp, err);
}

static int allow_list(scmp_filter_ctx ctx, struct drv_error *err)
{
        int r;
        for (size_t i = 0; i < DRV_ARRAY_SIZE(allowed); i++)
                if ((r = rule(ctx, SCMP_ACT_ALLOW, allowed[i], 0, NULL, err)) < 0)
                        return r;
        for (size_t i = 0; i < DRV_ARRAY_SIZE(newer); i++) {
                int nr = seccomp_syscall_resolve_name(newer[i].name);
                if (nr == __NR_SCMP_ERROR)
                        nr = newer[i].nr;
                uint32_t act = newer[i].allow ? SCMP_ACT_ALLOW : SCMP_ACT_ERRNO(ENOSYS);
                if ((r = add(ctx, act, nr, newer[i].name, 0, NULL, err)) < 0)
                        return r;
        }
        for (int nr = 470; nr < NEWER_ENOSYS_END; nr++)
                if ((r = add(ctx, SCMP_ACT_ERRNO(ENOSYS), nr, "a future syscall", 0, NULL, err)) <
                    0)
                        return r;
        /* clone: threads and processes, no namespaces */
        struct scmp_arg_cmp c = SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_NS_MASK, 0);
        if ((r = rule(ctx, SCMP_ACT_ALLOW, "clone", 1, &c, err)) < 0)
                return r;
        if ((r = rule(ctx, SCMP_ACT_ERRNO(ENOSYS), "clone3", 0, NULL, err)) < 0)
                return r;
        for (size_t i = 0; i < DRV_ARRAY_SIZE(personas); i++) {
                c = SCMP_A0(SCMP_CMP_EQ, personas[i]);
                if ((r = rule(ctx, SCMP_ACT_ALLOW, "personality", 1, &c, err)) < 0)
                        return r;
        }
        return 0;
}

static int exceptions(scmp_filter_ctx ctx, struct drv_error *err)
{
        int r;
        static const int families[] = {AF_ALG, AF_VSOCK, AF_KEY};
        for (size_t i = 0; i < DRV_ARRAY_SIZE(families); i++) {
                /* the domain is an int: compare its low 32 bits only */
                struct scmp_arg_cmp c =
                    SCMP_A0(SCMP_CMP_MASKED_EQ, 0xffffffffu, (scmp_datum_t)families[i]);
                if ((r = rule(ctx, SCMP_ACT_ERRNO(EAFNOSUPPORT), "socket", 1, &c, err)) < 0)
                        return r;
        }
        /* faking terminal input into the caller's shell */
        static const unsigned long ioctls[] = {TIOCSTI, TIOCLINUX};
        for (size_t i = 0; i < DRV_ARRAY_SIZE(ioctls); i++) {
                struct scmp_arg_cmp c = SCMP_A1(SCMP_CMP_MASKED_EQ, 0xffffffffu, ioctls[i]);
                if ((r = rule(ctx, SCMP_ACT_ERRNO(EPERM), "ioctl", 1, &c, err)) < 0)
                        return r;
        }
        return 0;
}

/* Export ctx as classic BPF into a malloc'ed buffer. */
static int export(scmp_filter_ctx ctx, struct sock_filter **insns, unsigned short *len,
                  struct drv_error *err)
{
        int mfd = memfd_create("drover-seccomp", MFD_CLOEXEC);
        if (mfd < 0)
                return drv_err_errno(err, "memfd_create");
        int e = seccomp_export_bpf(ctx, mfd);
        if (e < 0) {
                close(mfd);
                return drv_err(err, -e, "seccomp_export_bpf: %s", strerror(-e));
        }
        char *buf = NULL;
        size_t n = 0;
        lseek(mfd, 0, SEEK_SET);
        int r = drv_read_fd(mfd, &buf, &n, 1 << 20, err);
        close(mfd);
        if (r < 0)
                return r;
        if (n == 0 || n % sizeof(struct sock_filter) ||
            n / sizeof(struct sock_filter) > BPF_MAXINSNS) {
                free(buf);
                return drv_err(err, EINVAL, "seccomp program of %zu bytes", n);
        }
        *insns = (struct sock_filter *)(void *)buf;
        *len = (unsigned short)(n / sizeof(struct sock_filter));
        return 0;
}

/* One filter: default action, rules, exported. Other architectures (i386 int 0x80, x32) are
 * killed by libseccomp's architecture check. */
static int compile_one(uint32_t def, int (*rules)(scmp_filter_ctx, struct drv_error *),
                       struct sock_filter **insns, unsigned short *len, struct drv_error *err)
{
        scmp_filter_ctx ctx = seccomp_init(def);
        if (!ctx)
                return drv_err(err, ENOMEM, "seccomp_init failed");
        /* a binary tree of syscall numbers: a few comparisons per syscall, not one per rule */
        int r = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_OPTIMIZE, 2);
        if (r < 0)
                r = drv_err(err, -r, "seccomp optimize: %s", strerror(-r));
        if (r == 0)
                r = rules(ctx, err);
        if (r == 0)
                r = export(ctx, insns, len, err);
        seccomp_release(ctx);
        return r;
}

int sb_seccomp_compile(struct sb_bpf *out, struct drv_error *err)
{
        struct sock_filter *a = NULL, *b = NULL;
        unsigned short na = 0, nb = 0;
        int r = compile_one(SCMP_ACT_ERRNO(EPERM), allow_list, &a, &na, err);
        if (r == 0)
                r = compile_one(SCMP_ACT_ALLOW, exceptions, &b, &nb, err);
        if (r == 0) {
                out->insns = realloc(a, ((size_t)na + nb) * sizeof(*a));
                if (!out->insns)
                        r = drv_err(err, ENOMEM, "out of memory");
        }
        if (r < 0) {
                free(a);
                free(b);
                return r;
        }
        memcpy(out->insns + na, b, nb * sizeof(*b));
        free(b);
        out->len = na;
        out->deny_insns = out->insns + na;
        out->deny_len = nb;
        return 0;
}

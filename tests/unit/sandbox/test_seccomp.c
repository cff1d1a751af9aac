/* test_seccomp.c: the job's seccomp profile, installed in a child that then pokes syscalls. */
#include "sandbox/internal.h"
#include "testlib.h"

#include <fcntl.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <termios.h>
#include <sys/ioctl.h>

enum {
        T_KEYCTL,
        T_ADD_KEY,
        T_BPF,
        T_UNSHARE,
        T_CLONE_NEWNS,
        T_CLONE3,
        T_AF_ALG,
        T_AF_VSOCK,
        T_PERSONA_ASLR,
        T_PERSONA_QUERY,
        T_MOUNT,
        T_INIT_MODULE,
        T_TIOCSTI,
        T_GETPID,
        T_FORK,
        T_SOCKET_INET,
        T_PTRACE_SELF_CHILD,
        T_KEXEC_FILE,
        T_OPEN_BY_HANDLE,
        T_USERFAULTFD,
        T_IO_URING,
        T_SETNS,
        T_FUTURE,
        T_VSOCK_HIGH_BITS,
        T_TIOCSTI_HIGH_BITS,
        T_PERSONA_LINUX32,
        T_FCHMODAT2,
        T_CLONE_THREADLIKE,
        T_N
};

static struct sb_bpf bpf;

/* Child: filter on, then one syscall per slot; errno (or 0) written back. No libc that could
 * call a denied syscall, and _exit so no sanitizer runs at exit under the filter. */
static void run_child(int out)
{
        int res[T_N];
        struct sock_fprog prog = {.len = bpf.len, .filter = bpf.insns};
        struct sock_fprog deny = {.len = bpf.deny_len, .filter = bpf.deny_insns};
        if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 ||
            prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog, 0, 0) < 0 ||
            prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &deny, 0, 0) < 0)
                _exit(99);
#define TRY(i, expr) res[i] = (expr) < 0 ? errno : 0
        TRY(T_KEYCTL, syscall(SYS_keyctl, 0 /* KEYCTL_GET_KEYRING_ID */, -3, 0));
        TRY(T_ADD_KEY, syscall(SYS_add_key, "user", "x", "y", 1, -3));
        TRY(T_BPF, syscall(SYS_bpf, 0, NULL, 0));
        TRY(T_UNSHARE, syscall(SYS_unshare, CLONE_NEWUSER));
        TRY(T_CLONE_NEWNS, syscall(SYS_clone, CLONE_NEWNS | SIGCHLD, 0, NULL, NULL, 0));
        TRY(T_CLONE3, syscall(SYS_clone3, NULL, 0));
        long fd = syscall(SYS_socket, 38 /* AF_ALG */, SOCK_SEQPACKET, 0);
        res[T_AF_ALG] = fd < 0 ? errno : 0;
        fd = syscall(SYS_socket, 40 /* AF_VSOCK */, SOCK_STREAM, 0);
        res[T_AF_VSOCK] = fd < 0 ? errno : 0;
        TRY(T_PERSONA_ASLR, syscall(SYS_personality, 0x0040000));
        TRY(T_PERSONA_QUERY, syscall(SYS_personality, 0xffffffff));
        TRY(T_MOUNT, syscall(SYS_mount, "none", "/mnt", "tmpfs", 0, NULL));
        TRY(T_INIT_MODULE, syscall(SYS_init_module, NULL, 0, ""));
        char c = 'x';
        TRY(T_TIOCSTI, syscall(SYS_ioctl, 0, TIOCSTI, &c));
        TRY(T_GETPID, syscall(SYS_getpid));
        long pid = syscall(SYS_clone, SIGCHLD, 0, NULL, NULL, 0);
        if (pid == 0)
                syscall(SYS_exit, 0);
        res[T_FORK] = pid < 0 ? errno : 0;
        if (pid > 0)
                syscall(SYS_wait4, pid, NULL, 0, NULL);
        fd = syscall(SYS_socket, AF_INET, SOCK_DGRAM, 0);
        res[T_SOCKET_INET] = fd < 0 ? errno : 0;
        res[T_PTRACE_SELF_CHILD] = 0;
        /* absent from the allow-list: EPERM */
        TRY(T_KEXEC_FILE, syscall(SYS_kexec_file_load, -1, -1, 0, "", 0));
        TRY(T_OPEN_BY_HANDLE, syscall(SYS_open_by_handle_at, -1, NULL, 0));
        TRY(T_USERFAULTFD, syscall(SYS_userfaultfd, 0));
        TRY(T_IO_URING, syscall(SYS_io_uring_setup, 1, NULL));
        TRY(T_SETNS, syscall(SYS_setns, -1, 0));
        /* newer than any kernel here: ENOSYS (libc falls back) */
        TRY(T_FUTURE, syscall(500));
        /* arguments are compared on their low 32 bits (the kernel's int) */
        fd = syscall(SYS_socket, (1UL << 32) | 40 /* AF_VSOCK */, SOCK_STREAM, 0);
        res[T_VSOCK_HIGH_BITS] = fd < 0 ? errno : 0;
        TRY(T_TIOCSTI_HIGH_BITS, syscall(SYS_ioctl, 0, (1UL << 32) | TIOCSTI, &c));
        /* harmless personas stay allowed; then back */
        TRY(T_PERSONA_LINUX32, syscall(SYS_personality, 0x8));
        syscall(SYS_personality, 0x0);
        /* allowed although newer than the list in Docker's profile (0 or a plain failure) */
        TRY(T_FCHMODAT2, syscall(452 /* fchmodat2 */, AT_FDCWD, "/nonexistent-drover", 0644, 0));
        /* fork-like clone flags are fine */
        pid = syscall(SYS_clone, SIGCHLD | CLONE_PARENT_SETTID, 0, NULL, NULL, 0);
        if (pid == 0)
                syscall(SYS_exit, 0);
        res[T_CLONE_THREADLIKE] = pid < 0 ? errno : 0;
        if (pid > 0)
                syscall(SYS_wait4, pid, NULL, 0, NULL);
        (void)!write(out, res, sizeof(res));
        syscall(SYS_exit_group, 0);
}

TEST(profile_denies_the_dangerous_and_allows_the_ordinary)
{
        struct drv_error err = {0};
        CHECK_INTEQ(sb_seccomp_build(&bpf, &err), 0);
        CHECK(bpf.len > 20);
        int p[2];
        CHECK(pipe(p) == 0);
        pid_t pid = fork();
        if (pid == 0) {
                close(p[0]);
                run_child(p[1]);
        }
        close(p[1]);
        int res[T_N];
        memset(res, 0xff, sizeof(res));
        CHECK_INTEQ(read(p[0], res, sizeof(res)), sizeof(res));
        close(p[0]);
        int st;
        waitpid(pid, &st, 0);
        CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
        CHECK_INTEQ(res[T_KEYCTL], EPERM);
        CHECK_INTEQ(res[T_ADD_KEY], EPERM);
        CHECK_INTEQ(res[T_BPF], EPERM);
        CHECK_INTEQ(res[T_UNSHARE], EPERM);
        CHECK_INTEQ(res[T_CLONE_NEWNS], EPERM);
        CHECK_INTEQ(res[T_CLONE3], ENOSYS);
        CHECK_INTEQ(res[T_AF_ALG], EAFNOSUPPORT);
        CHECK_INTEQ(res[T_AF_VSOCK], EAFNOSUPPORT);
        CHECK_INTEQ(res[T_PERSONA_ASLR], EPERM);
        CHECK_INTEQ(res[T_PERSONA_QUERY], 0);
        CHECK_INTEQ(res[T_MOUNT], EPERM);
        CHECK_INTEQ(res[T_INIT_MODULE], EPERM);
        CHECK_INTEQ(res[T_TIOCSTI], EPERM);
        CHECK_INTEQ(res[T_GETPID], 0);
        CHECK_INTEQ(res[T_FORK], 0);
        CHECK_INTEQ(res[T_SOCKET_INET], 0);
        CHECK_INTEQ(res[T_KEXEC_FILE], EPERM);
        CHECK_INTEQ(res[T_OPEN_BY_HANDLE], EPERM);
        CHECK_INTEQ(res[T_USERFAULTFD], EPERM);
        CHECK_INTEQ(res[T_IO_URING], EPERM);
        CHECK_INTEQ(res[T_SETNS], EPERM);
        CHECK_INTEQ(res[T_FUTURE], ENOSYS);
        CHECK_INTEQ(res[T_VSOCK_HIGH_BITS], EAFNOSUPPORT);
        CHECK_INTEQ(res[T_TIOCSTI_HIGH_BITS], EPERM);
        CHECK_INTEQ(res[T_PERSONA_LINUX32], 0);
        CHECK(res[T_FCHMODAT2] == ENOENT || res[T_FCHMODAT2] == ENOSYS);
        CHECK_INTEQ(res[T_CLONE_THREADLIKE], 0);
        free(bpf.insns);
}

TEST(build_twice_gives_the_same_program)
{
        struct sb_bpf a, b;
        CHECK_INTEQ(sb_seccomp_build(&a, NULL), 0);
        CHECK_INTEQ(sb_seccomp_build(&b, NULL), 0);
        CHECK_INTEQ(a.len, b.len);
        CHECK(memcmp(a.insns, b.insns, a.len * sizeof(*a.insns)) == 0);
        free(a.insns);
        free(b.insns);
}

TEST(shipped_program_is_the_profile_compiled_now)
{
        struct sb_bpf shipped, fresh;
        CHECK_INTEQ(sb_seccomp_build(&shipped, NULL), 0);
        CHECK_INTEQ(sb_seccomp_compile(&fresh, NULL), 0);
        CHECK_INTEQ(shipped.len, fresh.len);
        CHECK(shipped.len == fresh.len &&
              memcmp(shipped.insns, fresh.insns, fresh.len * sizeof(*fresh.insns)) == 0);
        CHECK_INTEQ(shipped.deny_len, fresh.deny_len);
        CHECK(shipped.deny_len == fresh.deny_len &&
              memcmp(shipped.deny_insns, fresh.deny_insns,
                     fresh.deny_len * sizeof(*fresh.deny_insns)) == 0);
        free(shipped.insns);
        free(fresh.insns);
}

int main(void)
{
        RUN(profile_denies_the_dangerous_and_allows_the_ordinary);
        RUN(build_twice_gives_the_same_program);
        RUN(shipped_program_is_the_profile_compiled_now);
        TEST_DONE();
}

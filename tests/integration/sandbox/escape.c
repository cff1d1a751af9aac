/* escape.c: syscall-poking helper run INSIDE the sandbox by the integration tests. Each mode
 * tries one escape; exit 0 = the escape failed (good), 1 = it worked (bad), 2 = usage/setup.
 * Built without sanitizers: it runs under seccomp. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static int denied(const char *what, long r)
{
        if (r < 0) {
                printf("%s: refused (%s)\n", what, strerror(errno));
                return 0;
        }
        printf("%s: SUCCEEDED\n", what);
        return 1;
}

static int caps_and_ids(void)
{
        FILE *f = fopen("/proc/self/status", "r");
        char line[256];
        int bad = 0;
        while (f && fgets(line, sizeof(line), f)) {
                if (strncmp(line, "CapEff:", 7) == 0 || strncmp(line, "CapPrm:", 7) == 0) {
                        unsigned long long v = strtoull(line + 8, NULL, 16);
                        printf("%.6s %llx\n", line, v);
                        if (v != 0)
                                bad = 1;
                }
        }
        if (f)
                fclose(f);
        printf("uid %d euid %d\n", (int)getuid(), (int)geteuid());
        if (geteuid() != getuid() || geteuid() == 0)
                bad = 1;
        return bad;
}

static int connect_to(const char *ip, int port)
{
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
        inet_pton(AF_INET, ip, &sa.sin_addr);
        int r = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
        printf("connect %s:%d: %s\n", ip, port, r == 0 ? "connected" : strerror(errno));
        close(fd);
        return r;
}

static int gateway(char *buf, size_t n)
{
        FILE *f = fopen("/proc/net/route", "r");
        char line[256];
        while (f && fgets(line, sizeof(line), f)) {
                char ifn[32];
                unsigned dst, gw;
                if (sscanf(line, "%31s %x %x", ifn, &dst, &gw) == 3 && dst == 0 && gw) {
                        struct in_addr a = {gw};
                        inet_ntop(AF_INET, &a, buf, (socklen_t)n);
                        fclose(f);
                        return 0;
                }
        }
        if (f)
                fclose(f);
        return -1;
}

static int fork_bomb(void)
{
        int n = 0;
        for (;;) {
                pid_t p = fork();
                if (p == 0) {
                        pause();
                        _exit(0);
                }
                if (p < 0) {
                        int e = errno;
                        printf("fork failed after %d children: %s\n", n, strerror(e));
                        fflush(stdout);
                        signal(SIGTERM, SIG_IGN);
                        kill(0, SIGTERM);
                        return e == EAGAIN ? 0 : 1;
                }
                if (++n > 100000)
                        return 1;
        }
}

/* 0 when the call just made failed with want; else 1, said why. */
static int want_errno(const char *name, long r, int want)
{
        int e = errno;
        if (r == -1 && e == want)
                return 0;
        printf("%s: %ld %s (want %s)\n", name, r, strerror(e), strerror(want));
        return 1;
}

static int chroot_escape(const char *marker)
{
        if (mkdir("/tmp/jail", 0755) < 0 && errno != EEXIST)
                return 2;
        if (chroot("/tmp/jail") < 0) {
                printf("chroot: %s\n", strerror(errno));
                /* without CAP_SYS_CHROOT there is nothing to escape from */
        }
        for (int i = 0; i < 64; i++)
                (void)!chdir("..");
        (void)!chroot(".");
        int seen = access(marker, F_OK) == 0;
        printf("after escape attempt: host marker %s, /home/circleci %s\n",
               seen ? "VISIBLE" : "not visible",
               access("/home/circleci", F_OK) == 0 ? "present" : "absent");
        return seen;
}

int main(int argc, char **argv)
{
        if (argc < 2)
                return 2;
        const char *m = argv[1];
        if (!strcmp(m, "keyctl"))
                return denied("keyctl", syscall(SYS_keyctl, 0, -3 /* session */, 1)) |
                       denied("add_key", syscall(SYS_add_key, "user", "k", "v", 1, -3));
        if (!strcmp(m, "bpf"))
                return denied("bpf", syscall(SYS_bpf, 0 /* MAP_CREATE */, NULL, 0));
        if (!strcmp(m, "module")) {
                int fd = open("/dev/null", O_RDONLY);
                return denied("init_module", syscall(SYS_init_module, "", 0, "")) |
                       denied("finit_module", syscall(SYS_finit_module, fd, "", 0)) |
                       denied("delete_module", syscall(SYS_delete_module, "loop", 0));
        }
        if (!strcmp(m, "mount"))
                return denied("mount tmpfs", mount("x", "/tmp", "tmpfs", 0, NULL)) |
                       denied("remount / rw", mount(NULL, "/", NULL, MS_REMOUNT | MS_BIND, NULL)) |
                       denied("umount /proc", umount2("/proc", MNT_DETACH)) |
                       denied("pivot_root", syscall(SYS_pivot_root, "/tmp", "/tmp"));
        if (!strcmp(m, "userns")) {
                int bad = denied("unshare(CLONE_NEWUSER)", unshare(CLONE_NEWUSER));
                bad |= denied("unshare(CLONE_NEWNS)", unshare(CLONE_NEWNS));
                long p = syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, 0, NULL, NULL, 0);
                if (p == 0)
                        _exit(0);
                if (p > 0)
                        waitpid((pid_t)p, NULL, 0);
                bad |= denied("clone(CLONE_NEWUSER)", p);
                int fd = open("/proc/1/ns/user", O_RDONLY);
                bad |= denied("setns(pid 1 user ns)", fd < 0 ? -1 : setns(fd, 0));
                return bad;
        }
        if (!strcmp(m, "ptrace") && argc > 2) {
                pid_t host = (pid_t)atoi(argv[2]);
                int bad = denied("ptrace host pid", ptrace(PTRACE_ATTACH, host, 0, 0));
                bad |= denied("ptrace pid 1", ptrace(PTRACE_ATTACH, 1, 0, 0));
                bad |= denied("open /proc/1/mem", open("/proc/1/mem", O_RDONLY));
                return bad;
        }
        if (!strcmp(m, "sethostname"))
                return denied("sethostname", sethostname("evil", 4));
        if (!strcmp(m, "caps"))
                return caps_and_ids();
        if (!strcmp(m, "connect") && argc > 3)
                return connect_to(argv[2], atoi(argv[3])) == 0;
        if (!strcmp(m, "gw-connect") && argc > 2) {
                char gw[64];
                if (gateway(gw, sizeof(gw)) < 0) {
                        printf("no default route\n");
                        return 2;
                }
                printf("gateway %s\n", gw);
                return connect_to(gw, atoi(argv[2])) == 0 ? 0 : 1; /* here 0 = reached */
        }
        if (!strcmp(m, "forkbomb"))
                return fork_bomb();
        if (!strcmp(m, "hog")) {
                size_t n = (size_t)atol(argc > 2 ? argv[2] : "1024") << 20;
                char *p = malloc(n);
                for (size_t i = 0; p && i < n; i += 4096)
                        p[i] = 1;
                printf("allocated %zu MiB and survived\n", n >> 20);
                return 1;
        }
        if (!strcmp(m, "chroot") && argc > 2)
                return chroot_escape(argv[2]);
        if (!strcmp(m, "write") && argc > 2) {
                int bad = 0;
                for (int i = 2; i < argc; i++)
                        bad |= denied(argv[i], open(argv[i], O_WRONLY | O_CREAT, 0644));
                return bad;
        }
        if (!strcmp(m, "allowlist")) {
                /* absent from the seccomp allow-list: EPERM, whatever the capabilities say;
                 * newer than the list: ENOSYS */
                int bad = 0;
                bad |= want_errno("kexec_file_load", syscall(SYS_kexec_file_load, -1, -1, 0, "", 0),
                                  EPERM);
                bad |= want_errno("open_by_handle_at", syscall(SYS_open_by_handle_at, -1, NULL, 0),
                                  EPERM);
                bad |= want_errno("userfaultfd", syscall(SYS_userfaultfd, 0), EPERM);
                bad |= want_errno("io_uring_setup", syscall(SYS_io_uring_setup, 1, NULL), EPERM);
                bad |= want_errno("perf_event_open",
                                  syscall(SYS_perf_event_open, NULL, 0, -1, -1, 0), EPERM);
                bad |= want_errno("syscall 500", syscall(500), ENOSYS);
                return bad;
        }
        if (!strcmp(m, "fds")) {
                int bad = 0;
                for (int fd = 3; fd < 1024; fd++)
                        if (fcntl(fd, F_GETFD) >= 0) {
                                printf("inherited fd %d\n", fd);
                                bad = 1;
                        }
                return bad;
        }
        return 2;
}

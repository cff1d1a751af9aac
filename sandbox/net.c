/* net.c: the job's network — loopback only, or a veth pair with a per-job /30 and NAT. The
 * private network is made with fork/exec of ip(8) and iptables(8), explicit argv, no shell. */
#include "sandbox/internal.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <net/if.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>

int sb_net_loopback_up(void)
{
        int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        struct ifreq ifr = {0};
        snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "lo");
        int r = 0;
        if (ioctl(fd, SIOCGIFFLAGS, &ifr) < 0) {
                r = -errno;
        } else {
                ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
                if (ioctl(fd, SIOCSIFFLAGS, &ifr) < 0)
                        r = -errno;
        }
        close(fd);
        return r;
}

int sb_net_plan(struct sb_net *n, int slot, struct drv_error *err)
{
        const char *base = getenv("DROVER_SANDBOX_SUBNET");
        if (!base || !*base)
                base = "10.213.0.0/16";
        char addr[32];
        int bits;
        const char *slash = strchr(base, '/');
        if (!slash || (size_t)(slash - base) >= sizeof(addr))
                return drv_err(err, EINVAL, "DROVER_SANDBOX_SUBNET=%s: want a.b.c.d/N", base);
        memcpy(addr, base, (size_t)(slash - base));
        addr[slash - base] = 0;
        bits = atoi(slash + 1);
        struct in_addr in;
        if (inet_pton(AF_INET, addr, &in) != 1 || bits < 8 || bits > 28)
                return drv_err(err, EINVAL, "DROVER_SANDBOX_SUBNET=%s: want a.b.c.d/N, N 8..28",
                               base);
        uint32_t net = ntohl(in.s_addr) & (bits ? ~0U << (32 - bits) : 0);
        uint32_t room = 1U << (32 - bits - 2); /* number of /30s */
        if ((uint32_t)slot >= room)
                return drv_err(err, ENOSPC, "subnet %s has no room for job slot %d", base, slot);
        uint32_t sub = net + (uint32_t)slot * 4;
        struct in_addr h = {htonl(sub + 1)}, c = {htonl(sub + 2)}, s = {htonl(sub)};
        memset(n, 0, sizeof(*n));
        n->private_net = true;
        n->slot = slot;
        snprintf(n->host_if, sizeof(n->host_if), "drv%dh", slot);
        snprintf(n->inside_if, sizeof(n->inside_if), "drv%dc", slot);
        inet_ntop(AF_INET, &h, n->host_addr, sizeof(n->host_addr));
        inet_ntop(AF_INET, &c, n->inside_addr, sizeof(n->inside_addr));
        inet_ntop(AF_INET, &s, addr, sizeof(addr));
        snprintf(n->subnet, sizeof(n->subnet), "%s/30", addr);
        struct in_addr b = {htonl(net)};
        inet_ntop(AF_INET, &b, addr, sizeof(addr));
        snprintf(n->base, sizeof(n->base), "%s/%d", addr, bits);
        return sb_egress_plan(n, getenv("DROVER_SANDBOX_EGRESS_ALLOW"), "/etc/resolv.conf", err);
}

/* Run a tool with explicit argv, optionally inside netns_fd, its stdin from in_fd (-1:
 * /dev/null); stdout/stderr to /dev/null unless it fails (then stderr is kept in err). */
static int run_with(const char *const *argv, int netns_fd, int in_fd, struct drv_error *err)
{
        int p[2];
        if (pipe2(p, O_CLOEXEC) < 0)
                return drv_err_errno(err, "pipe");
        pid_t pid = fork();
        if (pid < 0) {
                close(p[0]);
                close(p[1]);
                return drv_err_errno(err, "fork");
        }
        if (pid == 0) {
                int nul = open("/dev/null", O_RDWR | O_CLOEXEC);
                if (nul < 0 || dup2(in_fd >= 0 ? in_fd : nul, 0) < 0 || dup2(nul, 1) < 0 ||
                    dup2(p[1], 2) < 0)
                        _exit(126);
                if (netns_fd >= 0 && setns(netns_fd, CLONE_NEWNET) < 0)
                        _exit(125);
                static char *const envp[] = {"PATH=/usr/sbin:/usr/bin:/sbin:/bin", NULL};
                execve(argv[0], (char *const *)argv, envp);
                _exit(127);
        }
        close(p[1]);
        char msg[512] = "";
        ssize_t n = DRV_RETRY(read(p[0], msg, sizeof(msg) - 1));
        msg[n > 0 ? n : 0] = 0;
        close(p[0]);
        int st;
        if (DRV_RETRY(waitpid(pid, &st, 0)) < 0)
                return drv_err_errno(err, "waitpid %s", argv[0]);
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
                msg[strcspn(msg, "\n")] = 0;
                return drv_err(err, EIO, "%s %s %s failed (status %d): %s", argv[0], argv[1],
                               argv[2] ? argv[2] : "", st, msg);
        }
        return 0;
}

static int run(const char *const *argv, int netns_fd, struct drv_error *err)
{
        return run_with(argv, netns_fd, -1, err);
}

static const char *ip_tool(void)
{
        return access("/usr/sbin/ip", X_OK) == 0 ? "/usr/sbin/ip" : "/sbin/ip";
}
static const char *iptables_tool(void)
{
        return access("/usr/sbin/iptables", X_OK) == 0 ? "/usr/sbin/iptables" : "/sbin/iptables";
}

/* The rules (nat and filter) as iptables-restore input, each line "ACTION CHAIN words...":
 * NAT out of the job's /30, and the egress policy (egress.c: forwarding out and back, but never
 * to another job's network, a private range or link-local address — 169.254.169.254 is cloud
 * metadata, the builder's own credentials — nor to the host itself, except DNS and the
 * operator's allow-list). With -I every rule goes to the top of its chain: the policy is
 * written bottom-up, so it ends up in its order. */
static int rules_text(const struct sb_net *n, const char *action, struct strbuf *sb)
{
        _cleanup_strv_ char **filter = NULL;
        int r = sb_egress_rules(n, n->base, &filter);
        r = r
                ?: strbuf_printf(sb, "*nat\n%s POSTROUTING -s %s ! -o %s -j MASQUERADE\nCOMMIT\n",
                                 action, n->subnet, n->host_if);
        r = r ?: strbuf_puts(sb, "*filter\n");
        for (size_t i = drv_strv_len(filter); r == 0 && i-- > 0;)
                r = strbuf_printf(sb, "%s %s\n", action, filter[i]);
        return r ?: strbuf_puts(sb, "COMMIT\n");
}

/* Insert ("-I") or delete ("-D") all the rules in one iptables-restore (one transaction: a
 * delete fails as a whole when one rule is missing). */
static int rules(const struct sb_net *n, const char *action, struct drv_error *err)
{
        _cleanup_strbuf_ struct strbuf sb = STRBUF_INIT;
        if (rules_text(n, action, &sb) < 0)
                return drv_err(err, ENOMEM, "out of memory");
        _cleanup_close_ int fd = memfd_create("drover-rules", MFD_CLOEXEC);
        if (fd < 0 || drv_write_all(fd, sb.buf, sb.len) < 0 || lseek(fd, 0, SEEK_SET) < 0)
                return drv_err_errno(err, "iptables rules");
        const char *restore = access("/usr/sbin/iptables-restore", X_OK) == 0
                                  ? "/usr/sbin/iptables-restore"
                                  : "/sbin/iptables-restore";
        const char *argv[] = {restore, "-w", "--noflush", NULL};
        return run_with(argv, -1, fd, err);
}

/* Delete the rules one by one, whatever is left of them. */
static void remove_each(const struct sb_net *n)
{
        _cleanup_strbuf_ struct strbuf sb = STRBUF_INIT;
        if (rules_text(n, "-D", &sb) < 0)
                return;
        const char *table = "filter";
        for (char *line = strtok(sb.buf, "\n"); line; line = strtok(NULL, "\n")) {
                if (line[0] == '*')
                        table = line[1] == 'n' ? "nat" : "filter";
                if (line[0] != '-')
                        continue;
                const char *argv[48] = {iptables_tool(), "-w", "-t", table};
                size_t k = 4;
                char *save = NULL;
                for (char *w = strtok_r(line, " ", &save); w && k < DRV_ARRAY_SIZE(argv) - 1;
                     w = strtok_r(NULL, " ", &save))
                        argv[k++] = w;
                argv[k] = NULL;
                (void)run(argv, -1, NULL);
        }
}

/* Delete every copy of the slot's rules (a crashed run may have left several). */
static void remove_rules(struct sb_net *n)
{
        for (int i = 0; i < 8 && rules(n, "-D", NULL) == 0; i++)
                ;
}

void sb_net_remove_stale(struct sb_net *n)
{
        remove_rules(n);
        const char *del[] = {ip_tool(), "link", "del", n->host_if, NULL};
        (void)run(del, -1, NULL);
}

int sb_net_setup(struct sb_net *n, pid_t init_pid, struct drv_error *err)
{
        char pidstr[16], nspath[64], host_cidr[32], in_cidr[32];
        snprintf(pidstr, sizeof(pidstr), "%d", (int)init_pid);
        snprintf(nspath, sizeof(nspath), "/proc/%d/ns/net", (int)init_pid);
        snprintf(host_cidr, sizeof(host_cidr), "%s/30", n->host_addr);
        snprintf(in_cidr, sizeof(in_cidr), "%s/30", n->inside_addr);
        const char *ip = ip_tool();
        int r;
        _cleanup_close_ int nsfd = open(nspath, O_RDONLY | O_CLOEXEC);
        if (nsfd < 0)
                return drv_err_errno(err, "open %s", nspath);
        /* a stale pair from a crashed run with our slot: remove it first */
        const char *del[] = {ip, "link", "del", n->host_if, NULL};
        (void)run(del, -1, NULL);
        const char *add[] = {ip,     "link", "add",        n->host_if, "type", "veth",
                             "peer", "name", n->inside_if, "netns",    pidstr, NULL};
        const char *haddr[] = {ip, "addr", "add", host_cidr, "dev", n->host_if, NULL};
        const char *hup[] = {ip, "link", "set", n->host_if, "up", NULL};
        const char *iaddr[] = {ip, "addr", "add", in_cidr, "dev", n->inside_if, NULL};
        const char *iup[] = {ip, "link", "set", n->inside_if, "up", NULL};
        const char *loup[] = {ip, "link", "set", "lo", "up", NULL};
        const char *route[] = {ip, "route", "add", "default", "via", n->host_addr, NULL};
        if ((r = run(add, -1, err)) < 0)
                return drv_err_prefix(err, "private network");
        /* no IPv6 on the host's side: the job's link-local address reaches nothing there */
        _cleanup_free_ char *v6 =
            drv_asprintf("/proc/sys/net/ipv6/conf/%s/disable_ipv6", n->host_if);
        struct drv_error e6;
        if (!v6 || (drv_write_file(v6, "1", &e6) < 0 && e6.code != ENOENT))
                return drv_err(err, v6 ? e6.code : ENOMEM, "private network: %s",
                               v6 ? e6.message : "out of memory");
        if ((r = run(haddr, -1, err)) < 0 || (r = run(hup, -1, err)) < 0 ||
            (r = run(iaddr, nsfd, err)) < 0 || (r = run(iup, nsfd, err)) < 0 ||
            (r = run(loup, nsfd, err)) < 0 || (r = run(route, nsfd, err)) < 0)
                return drv_err_prefix(err, "private network");
        if (drv_write_file("/proc/sys/net/ipv4/ip_forward", "1", err) < 0)
                return drv_err_prefix(err, "private network");
        /* rules of a crashed run with our slot (the slot lock makes them ours): remove them, or
         * the teardown below would leave a copy behind */
        remove_rules(n);
        n->rules_added = true;
        if ((r = rules(n, "-I", err)) < 0)
                return drv_err_prefix(err, "private network");
        return 0;
}

void sb_net_teardown(struct sb_net *n)
{
        if (!n->private_net)
                return;
        if (n->rules_added && rules(n, "-D", NULL) < 0)
                remove_each(n); /* some went missing: delete what is left */
        n->rules_added = false;
        const char *del[] = {ip_tool(), "link", "del", n->host_if, NULL};
        (void)run(del, -1, NULL); /* usually gone already with the netns */
        n->private_net = false;
}

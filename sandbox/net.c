/* net.c: the job's network — loopback only, or a veth pair with a per-job /30 and NAT. The
 * private network is made with fork/exec of ip(8) and iptables(8), explicit argv, no shell. */
#include "sandbox/internal.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <net/if.h>
#include <sched.h>
#include <sys/ioctl.h>
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
        return 0;
}

/* Run a tool with explicit argv, optionally inside netns_fd; stdout/stderr to /dev/null unless
 * it fails (then stderr is kept in err). */
static int run(const char *const *argv, int netns_fd, struct drv_error *err)
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
                if (nul < 0 || dup2(nul, 0) < 0 || dup2(nul, 1) < 0 || dup2(p[1], 2) < 0)
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

static const char *ip_tool(void)
{
        return access("/usr/sbin/ip", X_OK) == 0 ? "/usr/sbin/ip" : "/sbin/ip";
}
static const char *iptables_tool(void)
{
        return access("/usr/sbin/iptables", X_OK) == 0 ? "/usr/sbin/iptables" : "/sbin/iptables";
}

/* The rules, inserted at the top of their chains (action "-I") or deleted ("-D"): NAT out of the
 * job's /30; forwarding out and back; but never to another job's network (drv+) nor to
 * link-local addresses (169.254.169.254: cloud metadata, the builder's own credentials). The
 * DROPs are inserted last so they come first. */
static int rules(struct sb_net *n, const char *action, int *n_done, struct drv_error *err)
{
        const char *ipt = iptables_tool();
        const char *nat[] = {ipt,       "-w", "-t", "nat",      action, "POSTROUTING", "-s",
                             n->subnet, "!",  "-o", n->host_if, "-j",   "MASQUERADE",  NULL};
        const char *fwd_out[] = {ipt,        "-w", action,   "FORWARD", "-i",
                                 n->host_if, "-j", "ACCEPT", NULL};
        const char *fwd_in[] = {
            ipt,        "-w",     action,      "FORWARD",   "-o",
            n->host_if, "-m",     "conntrack", "--ctstate", "RELATED,ESTABLISHED",
            "-j",       "ACCEPT", NULL};
        const char *no_jobs[] = {ipt,  "-w",   action, "FORWARD", "-i", n->host_if,
                                 "-o", "drv+", "-j",   "DROP",    NULL};
        const char *no_meta[] = {ipt,  "-w",       action, "FORWARD",
                                 "-i", n->host_if, "-d",   "169.254.0.0/16",
                                 "-j", "DROP",     NULL};
        const char *const *all[] = {nat, fwd_out, fwd_in, no_jobs, no_meta};
        int first = 0, done = 0;
        for (size_t i = 0; i < DRV_ARRAY_SIZE(all); i++) {
                int r = run(all[i], -1, first ? NULL : err);
                if (r < 0 && !first)
                        first = r;
                if (r == 0)
                        done++;
        }
        if (n_done)
                *n_done = done;
        return first;
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
        if ((r = run(add, -1, err)) < 0 || (r = run(haddr, -1, err)) < 0 ||
            (r = run(hup, -1, err)) < 0 || (r = run(iaddr, nsfd, err)) < 0 ||
            (r = run(iup, nsfd, err)) < 0 || (r = run(loup, nsfd, err)) < 0 ||
            (r = run(route, nsfd, err)) < 0)
                return drv_err_prefix(err, "private network");
        if (drv_write_file("/proc/sys/net/ipv4/ip_forward", "1", err) < 0)
                return drv_err_prefix(err, "private network");
        /* rules of a crashed run with our slot (the slot lock makes them ours): remove them, or
         * the teardown below would leave a copy behind */
        for (int i = 0, done = 1; i < 8 && done > 0; i++)
                (void)rules(n, "-D", &done, NULL);
        n->rules_added = true;
        if ((r = rules(n, "-I", NULL, err)) < 0)
                return drv_err_prefix(err, "private network");
        return 0;
}

void sb_net_teardown(struct sb_net *n)
{
        if (!n->private_net)
                return;
        if (n->rules_added)
                (void)rules(n, "-D", NULL, NULL);
        n->rules_added = false;
        const char *del[] = {ip_tool(), "link", "del", n->host_if, NULL};
        (void)run(del, -1, NULL); /* usually gone already with the netns */
        n->private_net = false;
}

/* sweep.c: remove what a crashed run (kill -9 of `drover job`, `drover run`, the agent) left
 * behind — empty job cgroups and the private-network rules and veth of slots nobody holds.
 * Never what a live job owns: a cgroup with processes cannot be removed (the kernel refuses) and a
 * fresh one is left alone; a network slot is only cleaned while we hold its lock. */
#include "sandbox/cgroup.h"
#include "sandbox/internal.h"

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

/* A job cgroup is made and given pid 1 within milliseconds: younger ones may be starting. */
#define CG_MIN_AGE_S 60

/* iptables -S of one chain into buf (NUL-terminated, truncated at n - 1). */
static int list_rules(const char *table, const char *chain, char *buf, size_t n)
{
        const char *ipt =
            access("/usr/sbin/iptables", X_OK) == 0 ? "/usr/sbin/iptables" : "/sbin/iptables";
        const char *const argv[] = {ipt, "-w", "-t", table, "-S", chain, NULL};
        int p[2];
        if (pipe2(p, O_CLOEXEC) < 0)
                return -errno;
        pid_t pid = fork();
        if (pid < 0) {
                int e = errno;
                close(p[0]);
                close(p[1]);
                return -e;
        }
        if (pid == 0) {
                int nul = open("/dev/null", O_RDWR | O_CLOEXEC);
                if (nul < 0 || dup2(nul, 0) < 0 || dup2(p[1], 1) < 0 || dup2(nul, 2) < 0)
                        _exit(126);
                static char *const envp[] = {"PATH=/usr/sbin:/usr/bin:/sbin:/bin", NULL};
                execve(argv[0], (char *const *)argv, envp);
                _exit(127);
        }
        close(p[1]);
        size_t len = 0;
        for (;;) {
                char tmp[4096];
                ssize_t k = DRV_RETRY(read(p[0], tmp, sizeof(tmp)));
                if (k <= 0)
                        break;
                size_t take = len + (size_t)k < n - 1 ? (size_t)k : n - 1 - len;
                memcpy(buf + len, tmp, take);
                len += take;
        }
        buf[len] = 0;
        close(p[0]);
        int st;
        if (DRV_RETRY(waitpid(pid, &st, 0)) < 0)
                return -errno;
        return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -EIO;
}

/* Every slot named by a drvNh interface in text: seen[N] = true. */
static void slots_in(const char *text, bool *seen, int n_slots)
{
        for (const char *p = text; (p = strstr(p, "drv"));) {
                p += 3;
                char *end;
                long s = strtol(p, &end, 10);
                if (end != p && *end == 'h' && s >= 0 && s < n_slots)
                        seen[s] = true;
        }
}

static void sweep_net(void)
{
        static char text[1 << 18];
        bool seen[SANDBOX_SLOTS] = {false};
        if (list_rules("filter", "FORWARD", text, sizeof(text)) == 0)
                slots_in(text, seen, SANDBOX_SLOTS);
        if (list_rules("nat", "POSTROUTING", text, sizeof(text)) == 0)
                slots_in(text, seen, SANDBOX_SLOTS);
        for (int s = 0; s < SANDBOX_SLOTS; s++) {
                if (!seen[s])
                        continue;
                _cleanup_close_ int lock = sb_try_slot(s);
                if (lock < 0)
                        continue; /* a live job's */
                struct sb_net n;
                if (sb_net_plan(&n, s, NULL) < 0)
                        continue;
                n.rules_added = true;
                sb_net_remove_stale(&n);
                log_info("swept", "network=%s reason=\"slot not held\"", n.host_if);
        }
}

int sandbox_sweep_stale(struct drv_error *err)
{
        struct cg_place pl;
        int r = sb_cg_place(&pl, err);
        if (r == 0)
                r = cg_sweep(&pl, CG_MIN_AGE_S, err);
        sweep_net();
        return r;
}

/* sweep.c: remove what a crashed run (kill -9 of `drover job`, `drover run`, the agent) left
 * behind — empty job cgroups and the private-network rules and veth of slots nobody holds (a
 * slot is marked <slot>.net in the slot directory before its rules are made, unmarked after they
 * are gone: no iptables listing at every start).
 * Never what a live job owns: a cgroup with processes cannot be removed (the kernel refuses) and a
 * fresh one is left alone; a network slot is only cleaned while we hold its lock. */
#include "sandbox/cgroup.h"
#include "sandbox/internal.h"

#include <fcntl.h>
#include <limits.h>
#include <dirent.h>
#include <unistd.h>

/* A job cgroup is made and given pid 1 within milliseconds: younger ones may be starting. */
#define CG_MIN_AGE_S 60

void sb_net_mark(int slot, bool on)
{
        char p[PATH_MAX + 16];
        snprintf(p, sizeof(p), "%s/%d.net", sb_slot_dir(), slot);
        if (on) {
                int fd = open(p, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
                if (fd < 0)
                        log_warn("net_mark_failed", "path=%s error=%s", p, strerror(errno));
                else
                        close(fd);
        } else if (unlink(p) < 0 && errno != ENOENT) {
                log_warn("net_unmark_failed", "path=%s error=%s", p, strerror(errno));
        }
}

/* Slots marked as having a private network (sb_net_mark) whose lock is free: a crashed run's. */
static void sweep_net(void)
{
        DIR *d = opendir(sb_slot_dir());
        for (struct dirent *de; d && (de = readdir(d));) {
                char *end;
                long s = strtol(de->d_name, &end, 10);
                if (end == de->d_name || strcmp(end, ".net") != 0 || s < 0 || s >= SANDBOX_SLOTS)
                        continue;
                _cleanup_close_ int lock = sb_try_slot((int)s);
                if (lock < 0)
                        continue; /* a live job's */
                struct sb_net n;
                if (sb_net_plan(&n, (int)s, NULL) < 0)
                        continue;
                n.rules_added = true;
                sb_net_remove_stale(&n);
                sb_net_mark((int)s, false);
                log_info("swept", "network=%s reason=\"slot not held\"", n.host_if);
        }
        if (d)
                closedir(d);
}

int sandbox_sweep_stale(struct drv_error *err)
{
        struct cg_place pl;
        int r = sb_cg_place(&pl, err);
        if (r == -EPERM && drv_rootless())
                return 0; /* no cgroups of ours, and no network rules (no iptables rootless) */
        if (r == 0)
                r = cg_sweep(&pl, CG_MIN_AGE_S, err);
        sweep_net();
        return r;
}

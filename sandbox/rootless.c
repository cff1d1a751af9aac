/* rootless.c: the sandbox created by an ordinary user — id maps through the user's own ids (and
 * subordinate ids), the user-mode network helper (pasta). Capability checks, not a second
 * runtime: sandbox.c calls these where root mode writes maps and makes a veth. */
#include "sandbox/internal.h"

#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <sys/wait.h>

#define NEWUIDMAP  "/usr/bin/newuidmap"
#define NEWGIDMAP  "/usr/bin/newgidmap"
#define SUB_NEEDED (UID_RANGE - 1) /* every inside id but the job user's */

/* In a forked child before execve: the helpers start with default signal dispositions and
 * nothing blocked (the supervisor ignores SIGPIPE; pasta refuses to start when it finds it
 * ignored already). */
static void reset_signals(void)
{
        sigset_t none;
        sigemptyset(&none);
        for (int s = 1; s < NSIG; s++)
                if (s != SIGKILL && s != SIGSTOP)
                        signal(s, SIG_DFL);
        sigprocmask(SIG_SETMASK, &none, NULL);
}

/* The first id of a subordinate range of at least SUB_NEEDED ids for name or uid in file. */
static bool find_subid(const char *file, const char *name, unsigned id, uint32_t *start)
{
        _cleanup_free_ char *text = NULL;
        if (drv_read_file(file, &text, NULL, 1 << 20, NULL) < 0)
                return false;
        char idstr[16];
        snprintf(idstr, sizeof(idstr), "%u", id);
        char *save = NULL;
        for (char *l = strtok_r(text, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
                char *c1 = strchr(l, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
                if (!c2)
                        continue;
                *c1 = 0;
                if (strcmp(l, idstr) != 0 && !(name && *name && strcmp(l, name) == 0))
                        continue;
                char *end;
                unsigned long s = strtoul(c1 + 1, &end, 10), n = strtoul(c2 + 1, NULL, 10);
                if (end == c2 && n >= SUB_NEEDED && s + SUB_NEEDED <= UINT32_MAX) {
                        *start = (uint32_t)s;
                        return true;
                }
        }
        return false;
}

void sb_ids_plan(struct sb_ids *ids)
{
        memset(ids, 0, sizeof(*ids));
        ids->user_uid = geteuid();
        ids->user_gid = getegid();
        /* the name only helps find the entry; newuidmap checks it against the real user */
        const char *name = getenv("USER");
        if (!name || !*name)
                name = getenv("LOGNAME");
        ids->sub = !getenv("DROVER_ROOTLESS_SINGLE_ID") && access(NEWUIDMAP, X_OK) == 0 &&
                   access(NEWGIDMAP, X_OK) == 0 &&
                   find_subid("/etc/subuid", name, ids->user_uid, &ids->sub_uid) &&
                   find_subid("/etc/subgid", name, ids->user_gid, &ids->sub_gid);
}

/* argv of newuidmap/newgidmap: inside 0..65535, job id -> own, the rest -> sub.. */
static int run_idmap_helper(const char *helper, pid_t pid, unsigned job, unsigned own, uint32_t sub,
                            struct drv_error *err)
{
        char a[12][16];
        int n = 0;
        snprintf(a[n++], 16, "%d", (int)pid);
#define TRIPLE(in, out, cnt)                                                                       \
        do {                                                                                       \
                snprintf(a[n++], 16, "%u", (unsigned)(in));                                        \
                snprintf(a[n++], 16, "%u", (unsigned)(out));                                       \
                snprintf(a[n++], 16, "%u", (unsigned)(cnt));                                       \
        } while (0)
        if (job > 0)
                TRIPLE(0, sub, job);
        TRIPLE(job, own, 1);
        if (job + 1 < UID_RANGE)
                TRIPLE(job + 1, sub + job, UID_RANGE - 1 - job);
#undef TRIPLE
        char *argv[14] = {(char *)helper};
        for (int i = 0; i < n; i++)
                argv[i + 1] = a[i];
        char *envp[] = {NULL};
        pid_t child = fork();
        if (child < 0)
                return drv_err_errno(err, "fork %s", helper);
        if (child == 0) {
                reset_signals();
                execve(helper, argv, envp);
                _exit(127);
        }
        int st;
        if (DRV_RETRY(waitpid(child, &st, 0)) < 0)
                return drv_err_errno(err, "wait for %s", helper);
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
                return drv_err(err, EPERM, "%s failed (status %d)", helper, st);
        return 0;
}

int sb_write_maps_rootless(pid_t pid, struct sb_ids *ids, uid_t uid, gid_t gid, bool *root_mapped,
                           struct drv_error *err)
{
        struct drv_error e = {0};
        if (ids->sub) {
                /* gid first: newgidmap may write "deny" to setgroups, which must precede */
                if (run_idmap_helper(NEWGIDMAP, pid, gid, ids->user_gid, ids->sub_gid, &e) == 0 &&
                    run_idmap_helper(NEWUIDMAP, pid, uid, ids->user_uid, ids->sub_uid, &e) == 0) {
                        *root_mapped = true;
                        return 0;
                }
                static bool told;
                if (!told)
                        log_warn("sandbox_subids_refused",
                                 "error=\"%s\" effect=\"single-id map: only the job user exists "
                                 "inside\"",
                                 e.message);
                told = true;
                ids->sub = false;
        }
        char path[64], map[64];
        *root_mapped = uid == 0;
        snprintf(path, sizeof(path), "/proc/%d/setgroups", (int)pid);
        int r = drv_write_file(path, "deny", err);
        if (r < 0)
                return r;
        snprintf(path, sizeof(path), "/proc/%d/gid_map", (int)pid);
        snprintf(map, sizeof(map), "%u %u 1\n", (unsigned)gid, (unsigned)ids->user_gid);
        if ((r = drv_write_file(path, map, err)) < 0)
                return r;
        snprintf(path, sizeof(path), "/proc/%d/uid_map", (int)pid);
        snprintf(map, sizeof(map), "%u %u 1\n", (unsigned)uid, (unsigned)ids->user_uid);
        return drv_write_file(path, map, err);
}

#define PASTA "/usr/bin/pasta"

bool sb_pasta_usable(void)
{
        /* pasta needs the tun device (0666 on a normal system; 0600 in some containers) */
        return !getenv("DROVER_ROOTLESS_NO_PASTA") && access(PASTA, X_OK) == 0 &&
               access("/dev/net/tun", R_OK | W_OK) == 0;
}

int sb_pasta_start(pid_t pid, const char *dir, int slot, pid_t *helper, struct drv_error *err)
{
        char pidfile[PATH_MAX], logfile[PATH_MAX], target[16];
        snprintf(pidfile, sizeof(pidfile), "%s/%d.pasta", dir, slot);
        snprintf(logfile, sizeof(logfile), "%s/%d.pasta-log", dir, slot);
        snprintf(target, sizeof(target), "%d", (int)pid);
        (void)unlink(pidfile);
        _cleanup_close_ int log =
            open(logfile, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (log < 0)
                return drv_err_errno(err, "open %s", logfile);
        /* no port of the host's loopback through the gateway address, nothing forwarded in or
         * out; pasta joins pid's user and network namespaces and daemonizes once ready */
        char *argv[] = {PASTA,   "--quiet", "--config-net", "--no-map-gw", "-t", "none",
                        "-u",    "none",    "-T",           "none",        "-U", "none",
                        "--pid", pidfile,   target,         NULL};
        char *envp[] = {NULL};
        pid_t child = fork();
        if (child < 0)
                return drv_err_errno(err, "fork " PASTA);
        if (child == 0) {
                reset_signals();
                if (dup2(log, 1) < 0 || dup2(log, 2) < 0)
                        _exit(126);
                execve(PASTA, argv, envp);
                _exit(127);
        }
        int st;
        if (DRV_RETRY(waitpid(child, &st, 0)) < 0)
                return drv_err_errno(err, "wait for " PASTA);
        _cleanup_free_ char *out = NULL, *pidtext = NULL;
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
                (void)drv_read_file(logfile, &out, NULL, 4096, NULL);
                return drv_err(err, EIO, PASTA " (the job's network) failed, status %d: %s", st,
                               out ? out : "");
        }
        (void)unlink(logfile);
        if (drv_read_file(pidfile, &pidtext, NULL, 64, err) < 0)
                return drv_err_prefix(err, "pasta's pid");
        *helper = (pid_t)strtol(pidtext, NULL, 10);
        (void)unlink(pidfile);
        return 0;
}

/* cli.c: `drover sandbox [opts] -- CMD...` — run one command in a fresh sandbox. */
#include "agent/commands.h"
#include "sandbox/cli.h"

#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <sys/wait.h>

static const char usage[] =
    "usage: drover sandbox [options] -- CMD [ARG...]\n"
    "Run CMD in a fresh sandbox (user, pid, mount, ipc, uts, net, cgroup namespaces;\n"
    "cgroup limits; seccomp; Docker's capabilities at most; no_new_privs).\n"
    "  --rootfs DIR         an unpacked image as root (writable overlay on top)\n"
    "  --lower DIR          an overlay lower layer (repeat; top first)\n"
    "  --net none|private   loopback only (default) or a veth pair with NAT\n"
    "  --memory SIZE        memory limit (e.g. 512M)\n"
    "  --cpus N             CPU quota (e.g. 1.5)\n"
    "  --pids N             process limit (default 4096)\n"
    "  --disk SIZE          size of the writable area: home, /tmp (default 10G)\n"
    "  --user root|circleci run CMD as uid 0 inside or as the job user (default)\n"
    "  --bind HOST:INSIDE[:ro]  bind a host path inside\n"
    "  --mask PATH          hide PATH (and what is below it) behind an empty mount\n"
    "  --hostname NAME      (default drover)\n"
    "  --env K=V            add to the environment (built from scratch)\n"
    "  --cwd DIR            working directory inside (default the home)\n"
    "  --name NAME          job name for the cgroup (default cli-PID)\n"
    "  --no-seccomp         testing only: no seccomp profile\n"
    "Exit status: CMD's, 128+N when killed by signal N.\n";

void sb_cli_free(struct sb_cli *o)
{
        drv_strv_free(o->env);
        drv_strv_free(o->masks);
        drv_strv_free(o->lowers);
        for (size_t i = 0; i < o->cfg.n_binds; i++) {
                free((char *)o->binds[i].host_path);
                free((char *)o->binds[i].inside_path);
        }
        free(o->binds);
        free(o->name);
        memset(o, 0, sizeof(*o));
}

static int parse_bind(struct sb_cli *o, const char *spec, struct drv_error *err)
{
        const char *c1 = strchr(spec, ':');
        if (!c1 || c1 == spec || c1[1] != '/')
                return drv_err(err, EINVAL, "--bind %s: want HOST:INSIDE[:ro]", spec);
        const char *c2 = strchr(c1 + 1, ':');
        bool ro = false;
        if (c2) {
                if (strcmp(c2, ":ro") == 0)
                        ro = true;
                else if (strcmp(c2, ":rw") != 0)
                        return drv_err(err, EINVAL, "--bind %s: the mode must be ro or rw", spec);
        }
        struct sandbox_bind *nb = realloc(o->binds, (o->cfg.n_binds + 1) * sizeof(*nb));
        if (!nb)
                return drv_err(err, ENOMEM, "out of memory");
        o->binds = nb;
        char *h = strndup(spec, (size_t)(c1 - spec));
        char *in = c2 ? strndup(c1 + 1, (size_t)(c2 - c1 - 1)) : strdup(c1 + 1);
        if (!h || !in) {
                free(h);
                free(in);
                return drv_err(err, ENOMEM, "out of memory");
        }
        o->binds[o->cfg.n_binds++] = (struct sandbox_bind){h, in, ro};
        return 0;
}

static int parse_one(struct sb_cli *o, const char *opt, const char *val, struct drv_error *err)
{
        uint64_t u;
        if (strcmp(opt, "--rootfs") == 0) {
                o->cfg.rootfs = val;
        } else if (strcmp(opt, "--lower") == 0) {
                if (drv_strv_push(&o->lowers, val) < 0)
                        return drv_err(err, ENOMEM, "out of memory");
        } else if (strcmp(opt, "--net") == 0) {
                if (strcmp(val, "none") == 0)
                        o->cfg.net = SANDBOX_NET_NONE;
                else if (strcmp(val, "private") == 0)
                        o->cfg.net = SANDBOX_NET_PRIVATE;
                else
                        return drv_err(err, EINVAL, "--net %s: want none or private", val);
        } else if (strcmp(opt, "--memory") == 0 || strcmp(opt, "--disk") == 0) {
                if (drv_parse_size(val, &u) < 0 || u == 0)
                        return drv_err(err, EINVAL, "%s %s: not a size", opt, val);
                *(opt[2] == 'm' ? &o->cfg.memory_bytes : &o->cfg.disk_bytes) = u;
        } else if (strcmp(opt, "--cpus") == 0) {
                char *end;
                double d = strtod(val, &end);
                if (end == val || *end || !(d > 0) || d > 4096)
                        return drv_err(err, EINVAL, "--cpus %s: want a number > 0", val);
                o->cfg.cpus = d;
        } else if (strcmp(opt, "--pids") == 0) {
                if (drv_parse_u64(val, &u) < 0 || u == 0)
                        return drv_err(err, EINVAL, "--pids %s: want a number > 0", val);
                o->cfg.pids_max = u;
        } else if (strcmp(opt, "--user") == 0) {
                if (strcmp(val, "root") == 0)
                        o->as_root = true;
                else if (strcmp(val, "circleci") == 0)
                        o->as_root = false;
                else
                        return drv_err(err, EINVAL, "--user %s: want root or circleci", val);
        } else if (strcmp(opt, "--bind") == 0) {
                return parse_bind(o, val, err);
        } else if (strcmp(opt, "--mask") == 0) {
                if (val[0] != '/')
                        return drv_err(err, EINVAL, "--mask %s: want an absolute path", val);
                if (drv_strv_push(&o->masks, val) < 0)
                        return drv_err(err, ENOMEM, "out of memory");
        } else if (strcmp(opt, "--hostname") == 0) {
                if (!*val || strlen(val) > 64)
                        return drv_err(err, EINVAL, "--hostname %s: 1 to 64 characters", val);
                o->cfg.hostname = val;
        } else if (strcmp(opt, "--env") == 0) {
                if (!strchr(val, '=') || val[0] == '=')
                        return drv_err(err, EINVAL, "--env %s: want K=V", val);
                if (drv_strv_push(&o->env, val) < 0)
                        return drv_err(err, ENOMEM, "out of memory");
        } else if (strcmp(opt, "--cwd") == 0) {
                if (val[0] != '/')
                        return drv_err(err, EINVAL, "--cwd %s: want an absolute path", val);
                o->cwd = val;
        } else if (strcmp(opt, "--name") == 0) {
                free(o->name);
                o->name = strdup(val);
                if (!o->name)
                        return drv_err(err, ENOMEM, "out of memory");
        } else {
                return drv_err(err, EINVAL, "unknown option %s (see --help)", opt);
        }
        return 0;
}

int sb_cli_parse(int argc, char **argv, struct sb_cli *o, struct drv_error *err)
{
        memset(o, 0, sizeof(*o));
        int i = 1, r;
        for (; i < argc; i++) {
                const char *a = argv[i];
                if (strcmp(a, "--") == 0) {
                        i++;
                        break;
                }
                if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
                        o->help = true;
                        return 0;
                }
                if (strcmp(a, "--no-seccomp") == 0) {
                        o->cfg.no_seccomp = true;
                        continue;
                }
                if (a[0] != '-')
                        break; /* the command starts */
                const char *eq = strchr(a, '=');
                _cleanup_free_ char *opt = eq ? strndup(a, (size_t)(eq - a)) : strdup(a);
                if (!opt)
                        return drv_err(err, ENOMEM, "out of memory");
                const char *val = eq ? eq + 1 : NULL;
                if (!val) {
                        if (i + 1 >= argc)
                                return drv_err(err, EINVAL, "%s needs a value", opt);
                        val = argv[++i];
                }
                if ((r = parse_one(o, opt, val, err)) < 0)
                        return r;
        }
        if (i >= argc)
                return drv_err(err, EINVAL, "no command given (drover sandbox [opts] -- CMD)");
        o->cmd = argv + i;
        o->cfg.masked_paths = (const char *const *)o->masks;
        o->cfg.lowerdirs = (const char *const *)o->lowers;
        o->cfg.binds = o->binds;
        return 0;
}

/* The environment, from scratch: a sane PATH, the user's identity, then --env. */
static char **build_env(const struct sb_cli *o, const char *home)
{
        char **env = NULL;
        const char *user = o->as_root ? "root" : "circleci";
        char *items[] = {
            strdup("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"),
            drv_asprintf("HOME=%s", o->as_root ? "/root" : home), drv_asprintf("USER=%s", user),
            drv_asprintf("LOGNAME=%s", user)};
        bool ok = true;
        for (size_t i = 0; i < DRV_ARRAY_SIZE(items); i++)
                if (!items[i] || drv_strv_push_take(&env, items[i]) < 0)
                        ok = false;
        for (char **e = o->env; ok && e && *e; e++)
                if (drv_strv_push(&env, *e) < 0)
                        ok = false;
        if (!ok) {
                drv_strv_free(env);
                return NULL;
        }
        return env;
}

/* Wait for the one process, forwarding SIGINT/SIGTERM/SIGHUP to it; a second signal gives up
 * (the caller destroys the sandbox: everything inside dies). Returns 0, -errno, or the signal
 * number that made us give up (> 0). */
static int wait_exit(struct sandbox *sb, int proc_id, struct sandbox_exit *ev)
{
        int signals = 0;
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, SIGINT);
        sigaddset(&set, SIGTERM);
        sigaddset(&set, SIGHUP);
        sigprocmask(SIG_BLOCK, &set, NULL);
        _cleanup_close_ int sfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
        struct drv_error err = {0};
        for (;;) {
                int r = sandbox_next_exit(sb, ev, &err);
                if (r == 0 && ev->proc_id == proc_id)
                        return 0;
                if (r < 0 && r != -EAGAIN) {
                        fprintf(stderr, "drover sandbox: %s\n", err.message);
                        return r;
                }
                if (r == 0)
                        continue;
                struct pollfd pf[2] = {{sandbox_event_fd(sb), POLLIN, 0}, {sfd, POLLIN, 0}};
                if (poll(pf, sfd >= 0 ? 2 : 1, -1) < 0 && errno != EINTR)
                        return -errno;
                struct signalfd_siginfo si;
                while (sfd >= 0 && read(sfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
                        if (++signals > 1)
                                return (int)si.ssi_signo;
                        sandbox_signal(sb, proc_id, (int)si.ssi_signo);
                }
        }
}

int cmd_sandbox(int argc, char **argv)
{
        struct sb_cli o;
        struct drv_error err = {0};
        if (sb_cli_parse(argc, argv, &o, &err) < 0) {
                fprintf(stderr, "drover sandbox: %s\n", err.message);
                sb_cli_free(&o);
                return 2;
        }
        if (o.help) {
                fputs(usage, stdout);
                sb_cli_free(&o);
                return 0;
        }
        char defname[32];
        snprintf(defname, sizeof(defname), "cli-%d", (int)getpid());
        o.cfg.name = o.name ? o.name : defname;
        struct sandbox *sb = NULL;
        _cleanup_strv_ char **env = NULL;
        int status = 125;
        /* the home as sandbox_create makes it (the spawn is sent along with the creation) */
        env = build_env(&o, o.cfg.home ? o.cfg.home : "/home/circleci");
        if (!env) {
                fprintf(stderr, "drover sandbox: out of memory\n");
                goto out;
        }
        struct sandbox_exec ex = {.argv = (const char *const *)o.cmd,
                                  .envp = (const char *const *)env,
                                  .cwd = o.cwd,
                                  .stdin_fd = 0,
                                  .stdout_fd = 1,
                                  .stderr_fd = 2,
                                  .as_root = o.as_root,
                                  .new_session = false,
                                  .last = true};
        int id;
        if (sandbox_create_spawn(&o.cfg, &ex, &sb, &id, &err) < 0) {
                fprintf(stderr, "drover sandbox: %s\n", err.message);
                if (sb) /* created, the command could not be started */
                        status = err.code == ENOENT ? 127 : 126;
                goto out;
        }
        struct sandbox_exit ev;
        int w = wait_exit(sb, id, &ev);
        if (w != 0) {
                if (w > 0)
                        status = 128 + w;
                goto out;
        }
        if (ev.oom)
                fprintf(stderr, "drover sandbox: out of memory (limit %" PRIu64 ")\n",
                        sandbox_memory_limit(sb));
        status = WIFEXITED(ev.status) ? WEXITSTATUS(ev.status) : 128 + WTERMSIG(ev.status);
out:
        sandbox_destroy(sb);
        sb_cli_free(&o);
        return status;
}

/* stephelper.c: start the in-job storage helper for built-in steps — inside the job through the
 * runtime (sandbox, images), or confined to the local copy of a remote Docker job's home. */
#include "executor/stephelper.h"
#include "cache/jobhelper.h"
#include "executor/stepenv.h"

#include <fcntl.h>
#include <grp.h>
#include <pthread.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>

#define SH_MAX 8 /* helpers of one step alive at once (one in practice) */

struct sh_proc {
        int proc; /* runtime proc id, or host pid (local) */
        bool used, done, oom;
        int status;
};

struct step_helper {
        struct runtime *rt;
        const char *self_exe;
        int root_fd; /* local: the Docker job's home copy */
        uid_t uid;
        gid_t gid;
        bool local;
        pthread_mutex_t mu; /* exits arrive on whichever thread drains the runtime */
        struct sh_proc p[SH_MAX];
        struct sh_proc orphan[SH_MAX]; /* exits that came before their slot had the id */
        struct step_runner runner;
};

static const char *const helper_env[] = {"PATH=" STEPENV_DEFAULT_PATH, "LC_ALL=C", NULL};

static struct sh_proc *slot_of(struct step_helper *sh, int proc)
{
        for (size_t i = 0; i < SH_MAX; i++)
                if (sh->p[i].used && sh->p[i].proc == proc)
                        return &sh->p[i];
        return NULL;
}

static void on_exit_cb(void *ctx, const struct runtime_exit *ex)
{
        struct step_helper *sh = ctx;
        pthread_mutex_lock(&sh->mu);
        struct sh_proc *s = slot_of(sh, ex->proc);
        for (size_t i = 0; !s && i < SH_MAX; i++)
                if (!sh->orphan[i].used)
                        s = &sh->orphan[i];
        if (s)
                *s = (struct sh_proc){.proc = ex->proc,
                                      .used = true,
                                      .done = true,
                                      .status = ex->status,
                                      .oom = ex->oom};
        pthread_mutex_unlock(&sh->mu);
}

static struct sh_proc *new_slot(struct step_helper *sh)
{
        for (size_t i = 0; i < SH_MAX; i++)
                if (!sh->p[i].used) {
                        sh->p[i] = (struct sh_proc){.used = true, .proc = -1};
                        return &sh->p[i];
                }
        return NULL;
}

/* Inside the job: like a step, as the job user (an SSH session's way: its exit comes to us). */
static int start_in_job(struct step_helper *sh, const char *const *argv, int in_fd, int out_fd,
                        int *proc, struct drv_error *err)
{
        struct runtime_session_exec ex = {.argv = argv,
                                          .envp = helper_env,
                                          .cwd = "/",
                                          .in_fd = in_fd,
                                          .out_fd = out_fd,
                                          .err_fd = out_fd};
        pthread_mutex_lock(&sh->mu);
        struct sh_proc *s = new_slot(sh);
        pthread_mutex_unlock(&sh->mu);
        if (!s)
                return drv_err(err, EBUSY, "too many in-job helpers");
        /* (not under mu: on_exit_cb takes it under the runtime's lock) */
        int r = runtime_spawn_session(sh->rt, &ex, proc, NULL, on_exit_cb, sh, err);
        pthread_mutex_lock(&sh->mu);
        if (r == 0) {
                s->proc = *proc;
                for (size_t i = 0; i < SH_MAX; i++) /* its exit came first */
                        if (sh->orphan[i].used && sh->orphan[i].proc == *proc) {
                                *s = sh->orphan[i];
                                sh->orphan[i].used = false;
                        }
        } else {
                s->used = false;
        }
        pthread_mutex_unlock(&sh->mu);
        return r;
}

/* On this host, for the remote Docker runtime's home copy: the job's host ids, no privileges. */
static int start_local(struct step_helper *sh, const char *const *argv, int in_fd, int out_fd,
                       int *proc, struct drv_error *err)
{
        const char *av[24] = {"circleci", JH_SUBCOMMAND, "--root-fd", "3"};
        size_t n = 4;
        for (size_t i = 2; argv[i] && n + 1 < DRV_ARRAY_SIZE(av); i++)
                av[n++] = argv[i];
        av[n] = NULL;
        pthread_mutex_lock(&sh->mu);
        struct sh_proc *s = new_slot(sh);
        pthread_mutex_unlock(&sh->mu);
        if (!s)
                return drv_err(err, EBUSY, "too many in-job helpers");
        pid_t pid = fork();
        if (pid < 0) {
                s->used = false;
                return drv_err_errno(err, "fork");
        }
        if (pid == 0) { /* async-signal-safe calls only */
                if (dup2(in_fd, 0) < 0 || dup2(out_fd, 1) < 0 || dup2(out_fd, 2) < 0 ||
                    (sh->root_fd == 3 ? fcntl(3, F_SETFD, 0) : dup2(sh->root_fd, 3)) < 0)
                        _exit(127);
                if (geteuid() == 0 &&
                    (setgroups(0, NULL) < 0 || setresgid(sh->gid, sh->gid, sh->gid) < 0 ||
                     setresuid(sh->uid, sh->uid, sh->uid) < 0))
                        _exit(126);
                prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
                execve(sh->self_exe, (char *const *)av, (char *const *)helper_env);
                _exit(127);
        }
        pthread_mutex_lock(&sh->mu);
        s->proc = *proc = pid;
        pthread_mutex_unlock(&sh->mu);
        return 0;
}

static int runner_start(void *ud, const char *const *argv, int in_fd, int out_fd, int *proc,
                        struct drv_error *err)
{
        struct step_helper *sh = ud;
        return sh->local ? start_local(sh, argv, in_fd, out_fd, proc, err)
                         : start_in_job(sh, argv, in_fd, out_fd, proc, err);
}

static int runner_exit_of(void *ud, int proc, int *status, bool *oom)
{
        struct step_helper *sh = ud;
        if (sh->local) {
                pid_t w = waitpid(proc, status, WNOHANG);
                *oom = false;
                if (w == 0)
                        return -EAGAIN;
                pthread_mutex_lock(&sh->mu);
                struct sh_proc *s = slot_of(sh, proc);
                if (s)
                        s->used = false;
                pthread_mutex_unlock(&sh->mu);
                return w < 0 ? -errno : 0;
        }
        runtime_drain_exits(sh->rt); /* routed exits come to on_exit_cb */
        pthread_mutex_lock(&sh->mu);
        struct sh_proc *s = slot_of(sh, proc);
        int r = !s ? -ESRCH : s->done ? 0 : -EAGAIN;
        if (s && s->done) {
                *status = s->status;
                *oom = s->oom;
                s->used = false;
        }
        pthread_mutex_unlock(&sh->mu);
        return r;
}

static void runner_kill(void *ud, int proc)
{
        struct step_helper *sh = ud;
        if (sh->local)
                kill(proc, SIGKILL);
        else
                runtime_signal(sh->rt, proc, SIGKILL);
}

struct step_helper *step_helper_new(struct runtime *rt, bool local, const char *self_exe,
                                    int root_fd, uid_t uid, gid_t gid)
{
        struct step_helper *sh = calloc(1, sizeof(*sh));
        if (!sh)
                return NULL;
        sh->rt = rt;
        sh->self_exe = self_exe;
        sh->root_fd = root_fd;
        sh->uid = uid;
        sh->gid = gid;
        sh->local = local;
        pthread_mutex_init(&sh->mu, NULL);
        sh->runner = (struct step_runner){.ud = sh,
                                          .start = runner_start,
                                          .exit_of = runner_exit_of,
                                          .kill = runner_kill,
                                          .tool = STEPENV_TOOLS_DIR "/circleci"};
        return sh;
}

const struct step_runner *step_helper_runner(struct step_helper *sh)
{
        return sh ? &sh->runner : NULL;
}

void step_helper_free(struct step_helper *sh)
{
        if (!sh)
                return;
        for (size_t i = 0; i < SH_MAX; i++) /* never call back into freed memory */
                if (sh->p[i].used && !sh->local)
                        runtime_forget_session(sh->rt, sh->p[i].proc);
        pthread_mutex_destroy(&sh->mu);
        free(sh);
}

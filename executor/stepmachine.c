/* stepmachine.c: the step machine — one epoll loop over step output pipes, the runtime's exits,
 * deadlines (no_output_timeout, job timeout) and cancellation signals. */
#include "executor/stepmachine.h"
#include "executor/checkout.h"
#include "executor/continuation.h"
#include "executor/injob.h"
#include "executor/stephelper.h"
#include "executor/runtime.h"
#include "executor/stepenv.h"
#include "executor/stepctx.h"
#include "executor/docker/docker_proxy.h"
#include "executor/watchdog.h"
#include "executor/ssh/ssh.h"
#include "artifacts/artifacts.h"
#include "artifacts/objstore.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/wait.h>

#define KILL_GRACE_NS (2ULL * 1000000000ULL)
#define DRAIN_NS      (200ULL * 1000000ULL)
#define HALT_MARKER   INJOB_HALT_MARKER

/* A process the loop watches: a foreground or background run step. */
struct proc {
        unsigned step;
        int id;      /* runtime proc id */
        int pipe_fd; /* read end, -1 once closed */
        bool exited;
        bool background;
        struct runtime_exit ex;
        uint64_t exited_ns;
        uint64_t last_output_ns;
        uint64_t start_ns;
        uint64_t kill_at_ns; /* SIGKILL after a SIGTERM; 0 none */
        bool timed_out;
        bool canceled;
        bool paused;           /* the output spool is full: the pipe is not read */
        struct strbuf pending; /* bytes read but refused by the output (-EAGAIN) */
        char tail[512];        /* the last output bytes: a checkout's failure reason */
        size_t tail_len;
};

struct machine {
        const struct job_run_opts *o;
        const struct jobspec *spec;
        struct runtime *rt;
        int ep;
        struct proc procs[256];
        size_t n_procs;
        char *home;
        char *workdir;
        char *bash_env;
        bool have_bash;
        struct objstore *store;
        bool canceled;
        bool job_timed_out;
        uint64_t job_deadline_ns;
        struct sshd *ssh;            /* SSH rerun server, when the spec enables it */
        int64_t runtime_start_ms;    /* runtime_open took this long (-1: not opened) */
        struct docker_proxy *dproxy; /* setup_remote_docker's API proxy (NULL: none) */
        uint64_t env_begin_ns[2];    /* "Spin up environment", "Service containers" begun */
        struct job_watchdog *wd;     /* ends the job even when this loop is stuck */
        bool broken;                 /* the job's environment died under us (runtime_broken) */
        char broken_reason[512];
        struct continuation_state continuation; /* dynamic config: the key spent? */
};

/* The runtime's notices (image pulls, services) have streams of their own after the SSH ones:
 * n_steps + 2 "Spin up environment" while the runtime opens, n_steps + 3 "Service containers"
 * after; each is begun by its first line. */
static unsigned env_stream_idx(const struct machine *m, int which)
{
        return (unsigned)m->spec->n_steps + 2 + (unsigned)which;
}

static void on_runtime_notice(void *ud, const char *line)
{
        static const char *const names[2] = {"Spin up environment", "Service containers"};
        struct machine *m = ud;
        int which = m->rt ? 1 : 0;
        unsigned idx = env_stream_idx(m, which);
        struct drv_error e;
        if (!m->env_begin_ns[which]) {
                if (output_step_begin(m->o->out, idx, names[which], false, &e) < 0)
                        log_warn("output_begin_failed", "step=%u error=\"%s\"", idx, e.message);
                m->env_begin_ns[which] = drv_now_ns();
        }
        output_step_printf(m->o->out, idx, "%s", line);
}

static void end_env_stream(struct machine *m, int which, const char *status, const char *reason)
{
        if (!m->env_begin_ns[which])
                return;
        unsigned idx = env_stream_idx(m, which);
        struct output_step_end end = {.exit_code = strcmp(status, "success") == 0 ? 0 : -1,
                                      .status = status,
                                      .reason = reason,
                                      .duration_ms =
                                          (drv_now_ns() - m->env_begin_ns[which]) / 1000000};
        struct drv_error e;
        if (output_step_end(m->o->out, idx, &end, &e) < 0)
                log_warn("output_end_failed", "step=%u error=\"%s\"", idx, e.message);
}

/* Polled by the runtime during its setup: a SIGINT/SIGTERM taken there cancels the job. */
static bool on_runtime_canceled(void *ud)
{
        struct machine *m = ud;
        struct signalfd_siginfo si;
        if (!m->canceled && m->o->cancel_signal_fd >= 0 &&
            read(m->o->cancel_signal_fd, &si, sizeof(si)) == sizeof(si)) {
                log_info("job_cancel", "signal=%u phase=setup", si.ssi_signo);
                m->canceled = true;
                job_watchdog_noticed(m->wd);
        }
        return m->canceled;
}

static int watch(struct machine *m, int fd, uint64_t tag)
{
        struct epoll_event ev = {.events = EPOLLIN, .data.u64 = tag};
        return epoll_ctl(m->ep, EPOLL_CTL_ADD, fd, &ev) < 0 ? -errno : 0;
}

#define TAG_RUNTIME (1ULL << 40)
#define TAG_SIGNAL  (2ULL << 40)

static void close_pipe(struct machine *m, struct proc *p)
{
        if (p->pipe_fd < 0)
                return;
        if (!p->paused)
                epoll_ctl(m->ep, EPOLL_CTL_DEL, p->pipe_fd, NULL);
        p->paused = false;
        close(p->pipe_fd);
        p->pipe_fd = -1;
}

/* Backpressure: stop reading a step's pipe while the output cannot take more (the step then
 * blocks on its full pipe); nothing is dropped. */
static void pause_pipe(struct machine *m, struct proc *p)
{
        if (p->paused || p->pipe_fd < 0)
                return;
        epoll_ctl(m->ep, EPOLL_CTL_DEL, p->pipe_fd, NULL);
        p->paused = true;
}

/* Offer the held bytes again; resume reading once they are taken. */
static void retry_pending(struct machine *m, struct proc *p)
{
        struct drv_error e;
        if (p->pending.len) {
                int r = output_step_write(m->o->out, p->step, p->pending.buf, p->pending.len, &e);
                if (r == -EAGAIN)
                        return;
                if (r < 0)
                        log_warn("output_write_failed", "step=%u error=\"%s\"", p->step, e.message);
                strbuf_reset(&p->pending);
        }
        if (p->paused && p->pipe_fd >= 0 && output_can_accept(m->o->out)) {
                struct epoll_event ev = {.events = EPOLLIN, .data.u64 = (uint64_t)(p - m->procs)};
                if (epoll_ctl(m->ep, EPOLL_CTL_ADD, p->pipe_fd, &ev) == 0)
                        p->paused = false;
        }
}

static void keep_tail(struct proc *p, const char *buf, size_t n)
{
        const size_t cap = sizeof(p->tail);
        if (n >= cap) {
                memcpy(p->tail, buf + n - cap, cap);
                p->tail_len = cap;
                return;
        }
        size_t keep = p->tail_len < cap - n ? p->tail_len : cap - n;
        memmove(p->tail, p->tail + p->tail_len - keep, keep);
        memcpy(p->tail + keep, buf, n);
        p->tail_len = keep + n;
}

static void read_pipe(struct machine *m, struct proc *p)
{
        char buf[65536];
        for (int rounds = 0; rounds < 16 && p->pipe_fd >= 0; rounds++) {
                if (p->pending.len || !output_can_accept(m->o->out)) {
                        pause_pipe(m, p);
                        return;
                }
                ssize_t n = read(p->pipe_fd, buf, sizeof(buf));
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0 && errno == EAGAIN)
                        return;
                if (n <= 0) {
                        close_pipe(m, p);
                        return;
                }
                p->last_output_ns = drv_now_ns();
                keep_tail(p, buf, (size_t)n);
                struct drv_error e;
                int r = output_step_write(m->o->out, p->step, buf, (size_t)n, &e);
                if (r == -EAGAIN) {
                        if (strbuf_append(&p->pending, buf, (size_t)n) < 0)
                                log_error("output_lost", "step=%u bytes=%zd reason=oom", p->step,
                                          n);
                        pause_pipe(m, p);
                        return;
                }
                if (r < 0)
                        log_warn("output_write_failed", "step=%u error=\"%s\"", p->step, e.message);
        }
}

static struct proc *find_proc(struct machine *m, int id)
{
        for (size_t i = 0; i < m->n_procs; i++)
                if (m->procs[i].id == id)
                        return &m->procs[i];
        return NULL;
}

static void collect_exits(struct machine *m)
{
        struct runtime_exit ex;
        struct drv_error e;
        while (runtime_next_exit(m->rt, &ex, &e) == 0) {
                struct proc *p = find_proc(m, ex.proc);
                if (!p)
                        continue;
                p->exited = true;
                p->ex = ex;
                p->exited_ns = drv_now_ns();
                p->kill_at_ns = 0;
        }
}

static void cancel_all(struct machine *m)
{
        struct drv_error e;
        m->canceled = true;
        job_watchdog_noticed(m->wd);
        for (size_t i = 0; i < m->n_procs; i++)
                if (!m->procs[i].exited)
                        m->procs[i].canceled = true;
        if (runtime_kill_all(m->rt, &e) < 0)
                log_warn("kill_all_failed", "error=\"%s\"", e.message);
}

/* Wait for one event or deadline; handles everything that arrived. */
static void loop_once(struct machine *m, struct proc *fg)
{
        uint64_t now = drv_now_ns(), next = now + 1000000000ULL;
        if (fg && !fg->exited) {
                const struct js_step *st = &m->spec->steps[fg->step];
                uint64_t not =
                    st->no_output_timeout ? st->no_output_timeout : m->spec->no_output_timeout;
                uint64_t dl = fg->last_output_ns + not *1000000000ULL;
                if (!fg->timed_out && now >= dl) {
                        fg->timed_out = true;
                        runtime_signal(m->rt, fg->id, SIGTERM);
                        fg->kill_at_ns = now + KILL_GRACE_NS;
                } else if (!fg->timed_out && dl < next) {
                        next = dl;
                }
        }
        for (size_t i = 0; i < m->n_procs; i++) {
                struct proc *p = &m->procs[i];
                if (p->paused || p->pending.len) {
                        retry_pending(m, p);
                        if (p->paused || p->pending.len) {
                                /* our own backpressure is not the step's silence */
                                p->last_output_ns = now;
                                if (p->exited)
                                        p->exited_ns = now;
                                if (now + 10000000ULL < next)
                                        next = now + 10000000ULL;
                        }
                }
                if (p->kill_at_ns && !p->exited) {
                        if (now >= p->kill_at_ns) {
                                runtime_signal(m->rt, p->id, SIGKILL);
                                p->kill_at_ns = 0;
                        } else if (p->kill_at_ns < next) {
                                next = p->kill_at_ns;
                        }
                }
                if (p->exited && p->pipe_fd >= 0) {
                        /* the process is gone; give its pipe a moment, then stop waiting on
                         * descendants that keep it open */
                        uint64_t dl = p->exited_ns + DRAIN_NS;
                        if (now >= dl && !p->background)
                                close_pipe(m, p);
                        else if (dl < next)
                                next = dl;
                }
        }
        if (!m->job_timed_out && now >= m->job_deadline_ns) {
                m->job_timed_out = true;
                cancel_all(m);
        } else if (m->job_deadline_ns < next) {
                next = m->job_deadline_ns;
        }
        if (runtime_has_pending_exit(m->rt)) {
                collect_exits(m);
                return;
        }
        int timeout = next > now ? (int)((next - now) / 1000000ULL) + 1 : 0;
        struct epoll_event evs[16];
        int n = epoll_wait(m->ep, evs, 16, timeout);
        for (int i = 0; i < n; i++) {
                uint64_t tag = evs[i].data.u64;
                if (tag == TAG_RUNTIME) {
                        collect_exits(m);
                        runtime_poll(m->rt); /* a service that ended: told while steps run */
                } else if (tag == TAG_SIGNAL) {
                        struct signalfd_siginfo si;
                        if (read(m->o->cancel_signal_fd, &si, sizeof(si)) == sizeof(si)) {
                                log_info("job_cancel", "signal=%u", si.ssi_signo);
                                cancel_all(m);
                        }
                } else if (tag < m->n_procs) {
                        read_pipe(m, &m->procs[tag]);
                }
        }
}

/* Start a run step; returns its proc (NULL with err set on failure to start). */
static struct proc *start_run(struct machine *m, unsigned idx, const char *command,
                              struct drv_error *err)
{
        const struct js_step *st = &m->spec->steps[idx];
        /* a finished foreground step's slot is free again (its result was reported) */
        size_t slot = m->n_procs;
        for (size_t i = 0; i < m->n_procs; i++)
                if (!m->procs[i].background && m->procs[i].exited && m->procs[i].pipe_fd < 0) {
                        slot = i;
                        break;
                }
        if (slot >= DRV_ARRAY_SIZE(m->procs)) {
                drv_err(err, EMFILE, "too many background steps in one job");
                return NULL;
        }
        char name[64];
        snprintf(name, sizeof(name), ".drover-step-%u.sh", idx);
        _cleanup_free_ char *script = NULL;
        if (runtime_write_script(m->rt, name, command, strlen(command), &script, err) < 0)
                return NULL;
        const char *shell = st->shell ? st->shell : m->spec->shell;
        if (st->type == JS_STEP_CHECKOUT || st->type == JS_STEP_ADD_SSH_KEYS)
                shell = "/bin/sh"; /* our POSIX sh scripts, whatever the job's shell is */
        if (!shell)
                shell = step_default_shell(m->have_bash);
        _cleanup_strv_ char **argv = step_shell_argv(shell, script);
        _cleanup_free_ char *cwd = step_resolve_dir(
            st->working_directory ? st->working_directory : m->workdir, m->workdir, m->home);
        _cleanup_strv_ char **envp =
            stepenv_build(m->spec, st, m->home, runtime_user(m->rt), m->bash_env);
        if (!argv || !cwd || !envp) {
                drv_err(err, ENOMEM, "out of memory");
                return NULL;
        }
        int pfd[2];
        if (pipe2(pfd, O_CLOEXEC) < 0) {
                drv_err_errno(err, "pipe");
                return NULL;
        }
        struct runtime_exec ex = {.argv = (const char *const *)argv,
                                  .envp = (const char *const *)envp,
                                  .cwd = cwd,
                                  .out_fd = pfd[1]};
        int id;
        int r = runtime_spawn(m->rt, &ex, &id, err);
        close(pfd[1]);
        if (r < 0) {
                close(pfd[0]);
                return NULL;
        }
        struct proc *p = &m->procs[slot];
        strbuf_release(&p->pending);
        *p = (struct proc){.step = idx,
                           .id = id,
                           .pipe_fd = pfd[0],
                           .background = st->background,
                           .start_ns = drv_now_ns()};
        p->last_output_ns = p->start_ns;
        drv_fd_nonblock(p->pipe_fd, true);
        if (watch(m, p->pipe_fd, slot) < 0) {
                drv_err_errno(err, "epoll");
                close(p->pipe_fd);
                p->pipe_fd = -1;
                p->exited = true; /* the slot stays free */
                return NULL;
        }
        if (slot == m->n_procs)
                m->n_procs++;
        return p;
}

static void format_reason(struct machine *m, const struct proc *p, enum step_status *status,
                          char *reason, size_t n)
{
        const struct js_step *st = &m->spec->steps[p->step];
        struct step_end_facts f = {
            .wait_status = p->ex.status,
            .oom = p->ex.oom,
            .no_output_timed_out = p->timed_out,
            .canceled = p->canceled || m->canceled,
            .job_timed_out = (p->canceled || m->canceled) && m->job_timed_out,
            .no_output_timeout_s =
                st->no_output_timeout ? st->no_output_timeout : m->spec->no_output_timeout,
            .memory_limit = runtime_memory_limit(m->rt)};
        *status = step_classify(&f, reason, n);
}

static void emit_step_finished(struct machine *m, unsigned idx, enum step_status status,
                               const char *reason, const struct proc *p, uint64_t dur_ms)
{
        json_t *d =
            json_pack("{s:i, s:s, s:s, s:I}", "step", (int)idx, "name", m->spec->steps[idx].name,
                      "status", step_status_name(status), "duration_ms", (json_int_t)dur_ms);
        if (reason && reason[0])
                json_object_set_new(d, "reason", json_string(reason));
        if (p) {
                int ws = p->ex.status;
                json_object_set_new(d, "exit_code",
                                    json_integer(WIFEXITED(ws) ? WEXITSTATUS(ws) : -1));
                if (WIFSIGNALED(ws))
                        json_object_set_new(d, "signal", json_integer(WTERMSIG(ws)));
                json_object_set_new(d, "cpu_usec", json_integer((json_int_t)p->ex.cpu_usec));
                json_object_set_new(d, "peak_memory", json_integer((json_int_t)p->ex.peak_memory));
        }
        job_events_emit(m->o->events, "step_finished", d);
}

static void end_step_output(struct machine *m, unsigned idx, enum step_status status,
                            const char *reason, const struct proc *p, uint64_t dur_ms)
{
        struct output_step_end end = {.exit_code = -1,
                                      .status = step_status_name(status),
                                      .reason = reason && reason[0] ? reason : NULL,
                                      .duration_ms = dur_ms};
        if (p && WIFEXITED(p->ex.status))
                end.exit_code = WEXITSTATUS(p->ex.status);
        if (p && WIFSIGNALED(p->ex.status))
                end.signal = WTERMSIG(p->ex.status);
        struct drv_error e;
        if (output_step_end(m->o->out, idx, &end, &e) < 0)
                log_warn("output_end_failed", "step=%u error=\"%s\"", idx, e.message);
        emit_step_finished(m, idx, status, reason, p, dur_ms);
}

/* Did the job's environment die under us (the sandbox's pid 1 killed)? Then the job ends at once
 * as an infrastructure failure and nothing touches its root any more. */
static bool check_broken(struct machine *m, unsigned idx)
{
        if (m->broken || !m->rt ||
            !runtime_broken(m->rt, m->broken_reason, sizeof(m->broken_reason)))
                return m->broken;
        m->broken = true;
        log_error("job_environment_lost", "step=%u reason=\"%s\"", idx, m->broken_reason);
        output_step_printf(m->o->out, idx, "drover: %s", m->broken_reason);
        return true;
}

/* Run one step to completion (background steps: until started). */
/* What a built-in step handler (or the continuation check) is given for step idx; every job
 * file is read and written by the in-job helper, as the job. The caller frees the helper. */
static struct step_helper *builtin_ctx(struct machine *m, unsigned idx, char *const *envp,
                                       struct step_ctx *ctx)
{
        const struct js_step *st = &m->spec->steps[idx];
        *ctx =
            (struct step_ctx){.spec = m->spec,
                              .store = m->store,
                              .envp = envp,
                              .root_fd = runtime_root_fd(m->rt),
                              .home = m->home,
                              .workdir = m->workdir,
                              .uid = runtime_host_uid(m->rt),
                              .gid = runtime_host_gid(m->rt),
                              .out = m->o->out,
                              .step_index = idx,
                              .events = m->o->events,
                              .docker_proxy = &m->dproxy,
                              .idle_timeout = st->no_output_timeout ? st->no_output_timeout
                                                                    : m->spec->no_output_timeout};
        struct step_helper *sh =
            step_helper_new(m->rt, m->spec->executor.runtime == JS_RUNTIME_DOCKER, m->o->self_exe,
                            ctx->root_fd, ctx->uid, ctx->gid);
        ctx->runner = step_helper_runner(sh);
        return sh;
}

/* After a run step of a setup workflow's job: a continuation the step left is taken now
 * (executor/continuation.h); a refused one fails the step. */
static void check_continuation(struct machine *m, unsigned idx, enum step_status *status,
                               char *reason, size_t n)
{
        const char *key = continuation_key(m->spec);
        if (!key || m->broken || !runtime_path_exists(m->rt, INJOB_CONTINUATION_FILE))
                return;
        struct step_ctx ctx;
        struct drv_error err = {0};
        struct step_helper *sh = builtin_ctx(m, idx, NULL, &ctx);
        int r = continuation_collect(&ctx, key, &m->continuation, &err);
        step_helper_free(sh);
        if (r < 0) {
                output_step_printf(m->o->out, idx, "drover: %s", err.message);
                if (*status == STEP_SUCCESS) {
                        *status = STEP_FAILED;
                        snprintf(reason, n, "%s", err.message);
                }
        }
}

static enum step_status run_step(struct machine *m, unsigned idx)
{
        const struct js_step *st = &m->spec->steps[idx];
        struct drv_error err = {0};
        char reason[512] = "";
        enum step_status status = STEP_FAILED;
        uint64_t t0 = drv_now_ns();
        struct drv_error e;
        job_watchdog_step(m->wd, idx);
        if (output_step_begin(m->o->out, idx, st->name, st->background, &e) < 0)
                log_warn("output_begin_failed", "step=%u error=\"%s\"", idx, e.message);
        job_events_emit(m->o->events, "step_started",
                        json_pack("{s:i, s:s, s:s, s:b}", "step", (int)idx, "name", st->name,
                                  "step_type", jobspec_step_type_name(st->type), "background",
                                  st->background));
        _cleanup_free_ char *command = NULL;
        bool scripted = st->type == JS_STEP_CHECKOUT || st->type == JS_STEP_ADD_SSH_KEYS;
        if (scripted) {
                /* git and ssh run inside the job as its user; drover only stages the keys */
                int r;
                if (st->type == JS_STEP_CHECKOUT) {
                        /* drover run: the snapshot of the local source, bound inside */
                        r = checkout_prepare(m->rt, m->spec, st, m->workdir, m->home,
                                             m->o->source_dir ? INJOB_SOURCE_DIR : NULL, &command,
                                             &err);
                } else {
                        r = sshkeys_prepare(m->rt, m->spec, st, m->home, &command, &err);
                }
                if (r < 0) {
                        snprintf(reason, sizeof(reason), "%s", err.message);
                        output_step_printf(m->o->out, idx, "drover: %s", reason);
                        end_step_output(m, idx, STEP_FAILED, reason, NULL,
                                        (drv_now_ns() - t0) / 1000000);
                        return STEP_FAILED;
                }
        } else if (st->type != JS_STEP_RUN) {
                _cleanup_strv_ char **envp =
                    stepenv_build(m->spec, st, m->home, runtime_user(m->rt), m->bash_env);
                struct step_ctx ctx;
                struct step_helper *sh = builtin_ctx(m, idx, envp, &ctx);
                int r = stepbuiltin_run(&ctx, st, &err);
                step_helper_free(sh);
                status = r < 0 ? STEP_FAILED : STEP_SUCCESS;
                if (r < 0) {
                        snprintf(reason, sizeof(reason), "%s", err.message);
                        output_step_printf(m->o->out, idx, "%s", err.message);
                }
                end_step_output(m, idx, status, reason, NULL, (drv_now_ns() - t0) / 1000000);
                return status;
        }
        struct proc *p = start_run(m, idx, command ? command : st->command, &err);
        if (!p) {
                if (check_broken(m, idx))
                        drv_err(&err, ESRCH, "%s", m->broken_reason);
                else
                        output_step_printf(m->o->out, idx, "drover: %s", err.message);
                snprintf(reason, sizeof(reason), "%s", err.message);
                end_step_output(m, idx, STEP_FAILED, reason, NULL, (drv_now_ns() - t0) / 1000000);
                return STEP_FAILED;
        }
        if (st->background)
                return STEP_SUCCESS; /* ends at job end; its output keeps flowing */
        size_t pi = (size_t)(p - m->procs);
        while (!m->procs[pi].exited || m->procs[pi].pipe_fd >= 0)
                loop_once(m, &m->procs[pi]);
        p = &m->procs[pi];
        format_reason(m, p, &status, reason, sizeof(reason));
        if (check_broken(m, idx)) {
                status = STEP_FAILED;
                snprintf(reason, sizeof(reason), "%s", m->broken_reason);
        }
        if (scripted && status == STEP_FAILED &&
            checkout_failure_reason(p->tail, p->tail_len, reason, sizeof(reason)))
                checkout_redact(m->spec, reason);
        check_continuation(m, idx, &status, reason, sizeof(reason));
        end_step_output(m, idx, status, reason, p, (drv_now_ns() - t0) / 1000000);
        return status;
}

/* End the background steps: kill what still runs, report each. */
static void finish_background(struct machine *m)
{
        bool any = false;
        for (size_t i = 0; i < m->n_procs; i++)
                if (m->procs[i].background && !m->procs[i].exited)
                        any = true;
        struct drv_error e;
        if (any && runtime_kill_all(m->rt, &e) < 0)
                log_warn("kill_all_failed", "error=\"%s\"", e.message);
        for (size_t i = 0; i < m->n_procs; i++) {
                struct proc *p = &m->procs[i];
                if (!p->background)
                        continue;
                uint64_t give_up = drv_now_ns() + 5000000000ULL;
                while ((!p->exited || p->pipe_fd >= 0) && drv_now_ns() < give_up) {
                        loop_once(m, NULL);
                        if (p->exited && p->pipe_fd >= 0 && drv_now_ns() > p->exited_ns + DRAIN_NS)
                                close_pipe(m, p);
                }
                close_pipe(m, p);
                char reason[512];
                enum step_status status;
                format_reason(m, p, &status, reason, sizeof(reason));
                if (!m->canceled && p->exited && WIFSIGNALED(p->ex.status) &&
                    WTERMSIG(p->ex.status) == SIGKILL && !p->ex.oom) {
                        status = STEP_SUCCESS; /* stopped at job end, as on CircleCI */
                        snprintf(reason, sizeof(reason), "stopped at the end of the job");
                }
                end_step_output(m, p->step, status, reason, p,
                                (drv_now_ns() - p->start_ns) / 1000000);
        }
}

static bool halted(struct machine *m)
{
        return !m->broken && runtime_path_exists(m->rt, HALT_MARKER);
}

static int machine_setup(struct machine *m, struct drv_error *err)
{
        const struct jobspec *spec = m->spec;
        bool checks_out = false; /* jobs without a checkout step see none of the source */
        for (size_t i = 0; i < spec->n_steps; i++)
                checks_out = checks_out || spec->steps[i].type == JS_STEP_CHECKOUT;
        struct runtime_config rc = {
            .spec = spec,
            .self_exe = m->o->self_exe,
            .source_dir = checks_out ? m->o->source_dir : NULL,
            .hooks = {.notice = on_runtime_notice, .canceled = on_runtime_canceled, .ud = m}};
        uint64_t t0 = drv_now_ns();
        int r = runtime_open(&rc, &m->rt, err);
        uint64_t ms = (drv_now_ns() - t0) / 1000000;
        end_env_stream(m, 0,
                       r == 0        ? "success"
                       : m->canceled ? "canceled"
                                     : "failed",
                       r == 0 ? NULL : err->message);
        if (r < 0)
                return r;
        m->runtime_start_ms = (int64_t)ms;
        m->ep = epoll_create1(EPOLL_CLOEXEC);
        if (m->ep < 0)
                return drv_err_errno(err, "epoll_create1");
        r = watch(m, runtime_event_fd(m->rt), TAG_RUNTIME);
        if (r == 0 && m->o->cancel_signal_fd >= 0)
                r = watch(m, m->o->cancel_signal_fd, TAG_SIGNAL);
        if (r < 0)
                return drv_err(err, -r, "epoll_ctl");
        m->home = strdup(runtime_home(m->rt));
        m->workdir = m->home ? step_resolve_dir(spec->working_directory, m->home, m->home) : NULL;
        m->bash_env = drv_asprintf("/tmp/.bash_env-%s", spec->job_id);
        if (!m->home || !m->workdir || !m->bash_env)
                return drv_err(err, ENOMEM, "out of memory");
        for (char *c = m->bash_env + 5; *c; c++)
                if (*c == '/')
                        *c = '_';
        m->have_bash = runtime_path_exists(m->rt, "/bin/bash");
        r = runtime_write_file(m->rt, m->bash_env, "", 0, 0644, err);
        if (r < 0 || !spec->storage.url)
                return r;
        r = objstore_open(&spec->storage, &m->store, err);
        if (r < 0)
                return r;
        /* timings of earlier runs, for `circleci tests split --split-by=timings` */
        json_t *timings = NULL;
        struct drv_error e2;
        if (testresults_timings(m->store, spec, &timings, &e2) == 0 && timings) {
                char *text = json_dumps(timings, JSON_COMPACT);
                if (text)
                        (void)runtime_write_file(m->rt, INJOB_TIMINGS_FILE, text, strlen(text),
                                                 0644, &e2);
                free(text);
                json_decref(timings);
        }
        return 0;
}

/* SSH rerun: start the server (output stream n_steps, "Enable SSH"). */
static int ssh_begin(struct machine *m, struct drv_error *err)
{
        const struct jobspec *spec = m->spec;
        unsigned idx = (unsigned)spec->n_steps;
        uint16_t lo = 64535, hi = 65535;
        const char *env_ports = getenv("DROVER_SSH_PORTS"); /* the agent's configured range */
        if (env_ports && sshd_parse_ports(env_ports, &lo, &hi) < 0)
                return drv_err(err, EINVAL, "DROVER_SSH_PORTS '%s' is not a port range LO-HI",
                               env_ports);
        if (spec->ssh.port_min > lo)
                lo = (uint16_t)spec->ssh.port_min;
        if (spec->ssh.port_max && spec->ssh.port_max < hi)
                hi = (uint16_t)spec->ssh.port_max;
        _cleanup_strv_ char **envp =
            stepenv_build(spec, NULL, m->home, runtime_user(m->rt), m->bash_env);
        if (!envp)
                return drv_err(err, ENOMEM, "out of memory");
        struct sshd_config sc = {.spec = spec,
                                 .rt = m->rt,
                                 .events = m->o->events,
                                 .envp = (const char *const *)envp,
                                 .workdir = m->workdir,
                                 .shell = m->have_bash ? "/bin/bash" : "/bin/sh",
                                 .port_min = lo,
                                 .port_max = hi,
                                 .listen = getenv("DROVER_SSH_LISTEN")};
        struct drv_error e;
        if (output_step_begin(m->o->out, idx, "Enable SSH", false, &e) < 0)
                log_warn("output_begin_failed", "step=%u error=\"%s\"", idx, e.message);
        int r = lo > hi ? drv_err(err, EINVAL,
                                  "ssh: the job's port range is outside the agent's "
                                  "(DROVER_SSH_PORTS)")
                        : sshd_start(&sc, &m->ssh, err);
        char host[256] = "localhost";
        const char *h = getenv("DROVER_SSH_HOST");
        if (h && *h)
                snprintf(host, sizeof(host), "%s", h);
        else if (gethostname(host, sizeof(host)) < 0)
                snprintf(host, sizeof(host), "localhost");
        if (r < 0)
                output_step_printf(m->o->out, idx, "%s", err->message);
        else
                output_step_printf(m->o->out, idx,
                                   "You can now SSH into this box if your SSH public key is "
                                   "added:\n    $ ssh -p %u %s\n"
                                   "Host key fingerprint: %s",
                                   sshd_port(m->ssh), host, sshd_host_fingerprint(m->ssh));
        struct output_step_end end = {.exit_code = r < 0 ? 1 : 0,
                                      .status = r < 0 ? "failed" : "success",
                                      .reason = r < 0 ? err->message : NULL};
        if (output_step_end(m->o->out, idx, &end, &e) < 0)
                log_warn("output_end_failed", "step=%u error=\"%s\"", idx, e.message);
        return r;
}

/* SSH rerun: after the steps, keep the job while sessions are open (output stream n_steps+1). */
static void ssh_wait(struct machine *m)
{
        const struct js_ssh *js = &m->spec->ssh;
        unsigned idx = (unsigned)m->spec->n_steps + 1;
        uint64_t t0 = drv_now_ns();
        char idle[32], cap[32];
        step_format_duration(js->idle_timeout, idle, sizeof(idle));
        step_format_duration(js->max_duration, cap, sizeof(cap));
        struct drv_error e;
        if (output_step_begin(m->o->out, idx, "Wait for SSH sessions", false, &e) < 0)
                log_warn("output_begin_failed", "step=%u error=\"%s\"", idx, e.message);
        output_step_printf(m->o->out, idx,
                           "The job stays up while SSH sessions are open, until %s without "
                           "one (at most %s).",
                           idle, cap);
        enum sshd_wait w = SSHD_WAIT_KEEP;
        while (!m->canceled) {
                w = sshd_wait_state(sshd_sessions(m->ssh), drv_now_ns(),
                                    sshd_last_active_ns(m->ssh), t0, js->idle_timeout,
                                    js->max_duration);
                if (w != SSHD_WAIT_KEEP)
                        break;
                loop_once(m, NULL);
        }
        if (w != SSHD_WAIT_KEEP)
                output_step_printf(m->o->out, idx, "%s",
                                   w == SSHD_WAIT_IDLE ? "No SSH session for the idle timeout: "
                                                         "ending the job."
                                                       : "SSH time limit reached: ending the job.");
        struct output_step_end end = {.exit_code = m->canceled ? -1 : 0,
                                      .status = m->canceled ? "canceled" : "success",
                                      .duration_ms = (drv_now_ns() - t0) / 1000000};
        if (output_step_end(m->o->out, idx, &end, &e) < 0)
                log_warn("output_end_failed", "step=%u error=\"%s\"", idx, e.message);
}

/* The job's API proxy ends with its steps: what the job made on the engine goes too. */
static void stop_docker_proxy(struct machine *m)
{
        struct drv_error e = {0};
        if (docker_proxy_stop(TAKE_PTR(m->dproxy), &e) < 0)
                log_warn("docker_proxy_cleanup_failed", "error=\"%s\"", e.message);
}

int job_run(const struct job_run_opts *o, enum job_status *status, struct drv_error *err)
{
        struct machine m = {.o = o, .spec = o->spec, .ep = -1, .runtime_start_ms = -1};
        uint64_t t0 = drv_now_ns();
        m.job_deadline_ns = t0 + o->spec->job_timeout * 1000000000ULL;
        job_events_emit(o->events, "started",
                        json_pack("{s:s, s:i, s:i}", "name", o->spec->job_name, "node_index",
                                  (int)o->spec->node_index, "node_total",
                                  (int)o->spec->node_total));
        int r = machine_setup(&m, err);
        /* after the setup: the sandbox's pid 1 is cloned while we have no other thread (the
         * cheaper clone path, sandbox.md); the setup polls for cancellation itself */
        struct job_watchdog_config wc = {.deadline_ns = m.job_deadline_ns,
                                         .cancel_fd = o->cancel_signal_fd,
                                         .events = o->events};
        if (r == 0)
                r = job_watchdog_start(&wc, &m.wd, err);
        if (r == 0 && o->spec->ssh.enabled)
                r = ssh_begin(&m, err);
        bool failed = false;
        if (r == 0) {
                for (unsigned i = 0; i < o->spec->n_steps; i++) {
                        const struct js_step *st = &o->spec->steps[i];
                        if (m.canceled || check_broken(&m, i))
                                break;
                        if (!step_runs(st, failed))
                                continue;
                        enum step_status s = run_step(&m, i);
                        if (check_broken(&m, i))
                                break;
                        runtime_poll(m.rt); /* a service that ended meanwhile is told now */
                        if (s != STEP_SUCCESS)
                                failed = true;
                        if (!failed && halted(&m)) {
                                output_step_printf(o->out, i,
                                                   "circleci-agent step halt: ending "
                                                   "the job here, successfully");
                                break;
                        }
                }
                if (m.ssh && !m.broken)
                        ssh_wait(&m);
                sshd_stop(m.ssh); /* sessions end before the background steps are stopped */
                m.ssh = NULL;
                finish_background(&m);
        }
        sshd_stop(m.ssh);
        stop_docker_proxy(&m);
        bool setup_canceled = r < 0 && !m.rt && m.canceled; /* e.g. during an image pull */
        bool setup_timed_out = r == -ETIME && !m.rt; /* the job's timeout during an image pull */
        *status = job_classify((r < 0 && !setup_canceled && !setup_timed_out) || m.broken,
                               m.job_timed_out || setup_timed_out, m.canceled, failed);
        json_t *fin = json_pack("{s:s, s:I}", "status", job_status_name(*status), "duration_ms",
                                (json_int_t)((drv_now_ns() - t0) / 1000000));
        if (r < 0)
                json_object_set_new(fin, "reason", json_string(err->message));
        else if (m.broken)
                json_object_set_new(fin, "reason", json_string(m.broken_reason));
        if (m.runtime_start_ms >= 0) /* sandbox / containers ready: the agent's metric */
                json_object_set_new(fin, "runtime_start_ms", json_integer(m.runtime_start_ms));
        job_events_emit(o->events, "finished", fin);
        for (size_t i = 0; i < m.n_procs; i++) {
                close_pipe(&m, &m.procs[i]);
                strbuf_release(&m.procs[i].pending);
        }
        runtime_close(m.rt); /* its notices (a service that ended) go to "Service containers" */
        end_env_stream(&m, 1, "success", NULL);
        objstore_free(m.store);
        if (m.ep >= 0)
                close(m.ep);
        free(m.home);
        free(m.workdir);
        free(m.bash_env);
        job_watchdog_stop(m.wd);
        return r < 0 && !setup_canceled ? r : 0;
}

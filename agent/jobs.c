/* jobs.c: one supervisor process (`drover job`) per claimed job; its events, buffered in memory
 * (bounded: a full buffer stops reading the job's pipe, which holds the job back rather than
 * dropping anything) until the control plane acknowledges them; cancel with SIGTERM then SIGKILL
 * of the process group; the agent's own last event, `outcome`, carries the job's final status. */
#include "agent/agent.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>

#define JOB_BUFFER_MAX  (1u << 20) /* bytes of unacknowledged events per job */
#define JOB_BATCH_MAX   200
#define JOB_BATCH_BYTES (4u << 20) /* a batch stops growing past this */

static char *run_dir(struct agent *a)
{
        return drv_path_join(a->cfg.work_dir, ".agent");
}

/* Close and remove the job's spool file (its bytes leave the agent's spool total). */
static void spool_release(struct agent *a, struct job *j)
{
        if (j->spool_path) {
                if (j->spool_fd >= 0)
                        close(j->spool_fd);
                j->spool_fd = -1;
                unlink(j->spool_path);
                free(j->spool_path);
                j->spool_path = NULL;
        }
        a->spool_bytes -= j->spool_size < a->spool_bytes ? j->spool_size : a->spool_bytes;
        j->spool_size = 0;
        j->n_spooled = 0;
}

/* Spill one event to the job's spool file (created on first use, 0600 in the private runtime
 * dir); its index entry keeps only the offset and length. */
static int spool_write(struct agent *a, struct job *j, const char *s, size_t n, uint64_t *off)
{
        if (j->spool_fd < 0) {
                static unsigned counter;
                _cleanup_free_ char *dir = run_dir(a);
                free(j->spool_path);
                j->spool_path =
                    dir ? drv_asprintf("%s/events-%u-%u.spool", dir, (unsigned)getpid(), ++counter)
                        : NULL;
                if (!j->spool_path)
                        return -ENOMEM;
                j->spool_fd =
                    open(j->spool_path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
                if (j->spool_fd < 0) {
                        int e = errno;
                        log_error("job_events_spool_failed", "job=%s path=%s error=\"%s\"", j->id,
                                  j->spool_path, strerror(e));
                        free(j->spool_path);
                        j->spool_path = NULL;
                        return -e;
                }
                log_info("job_events_spooled", "job=%s path=%s", j->id, j->spool_path);
        }
        size_t done = 0;
        while (done < n) {
                ssize_t w = pwrite(j->spool_fd, s + done, n - done, (off_t)(j->spool_size + done));
                if (w < 0 && errno == EINTR)
                        continue;
                if (w <= 0) {
                        log_error("job_events_spool_failed", "job=%s error=\"%s\"", j->id,
                                  w < 0 ? strerror(errno) : "short write");
                        return -EIO;
                }
                done += (size_t)w;
        }
        *off = j->spool_size;
        j->spool_size += n;
        a->spool_bytes += n;
        a->m.events_spooled++;
        return 0;
}

static void job_free(struct job *j)
{
        for (size_t i = 0; i < j->nev; i++)
                free(j->ev[i].json);
        free(j->ev);
        if (j->spool_path) { /* spool_fd is valid only once spool_path is set */
                if (j->spool_fd >= 0)
                        close(j->spool_fd);
                unlink(j->spool_path);
                free(j->spool_path);
        }
        if (j->spec_path) {
                unlink(j->spec_path);
                free(j->spec_path);
        }
        if (j->w.fd >= 0)
                close(j->w.fd);
        strbuf_release(&j->line);
        free(j->cancel_reason);
        free(j->attempt);
        free(j->id);
        free(j);
}

struct job *jobs_find(struct agent *a, const char *id)
{
        for (struct job *j = a->jobs; j; j = j->next)
                if (strcmp(j->id, id) == 0)
                        return j;
        return NULL;
}

size_t jobs_running(struct agent *a)
{
        size_t n = 0;
        for (struct job *j = a->jobs; j; j = j->next)
                if (!j->exited)
                        n++;
        return n;
}

/* Queue one event for delivery: in memory up to JOB_BUFFER_MAX, beyond that spilled to the job's
 * spool file while the agent's spool total stays within event_spool_max; when neither has room it
 * still goes to memory, and jobs_on_events stops reading the job's pipe (the job waits). */
static int push_event(struct agent *a, struct job *j, int64_t seq, json_t *ev)
{
        char *s = json_dumps(ev, JSON_COMPACT);
        if (!s)
                return -ENOMEM;
        if (j->nev == j->cap) {
                size_t nc = j->cap ? j->cap * 2 : 16;
                struct job_event *n = realloc(j->ev, nc * sizeof(*n));
                if (!n) {
                        free(s);
                        return -ENOMEM;
                }
                j->ev = n;
                j->cap = nc;
        }
        size_t len = strlen(s);
        struct job_event e = {seq, s, 0, len};
        if (j->buffered + len > JOB_BUFFER_MAX && a->spool_bytes + len <= a->cfg.event_spool_max &&
            spool_write(a, j, s, len, &e.off) == 0) {
                free(s);
                e.json = NULL;
                j->n_spooled++;
        } else {
                j->buffered += len;
        }
        j->ev[j->nev++] = e;
        if (seq > j->max_seq)
                j->max_seq = seq;
        return 0;
}

void jobs_resources(json_t *spec, double *cpus, uint64_t *mem_mb)
{
        static const struct {
                const char *name;
                double cpus;
                uint64_t mem;
        } classes[] = {{"small", 1, 2048},     {"medium", 2, 4096},  {"medium+", 3, 6144},
                       {"large", 4, 8192},     {"xlarge", 8, 16384}, {"2xlarge", 16, 32768},
                       {"2xlarge+", 20, 40960}};
        json_t *ex = json_object_get(spec, "executor");
        json_t *res = json_object_get(ex, "resources");
        const char *rc = json_string_value(json_object_get(ex, "resource_class"));
        *cpus = 0;
        *mem_mb = 0;
        for (size_t i = 0; rc && i < DRV_ARRAY_SIZE(classes); i++)
                if (!strcmp(rc, classes[i].name)) {
                        *cpus = classes[i].cpus;
                        *mem_mb = classes[i].mem;
                }
        json_t *c = json_object_get(res, "cpus"), *m = json_object_get(res, "memory_mb");
        if (json_is_number(c) && json_number_value(c) > 0)
                *cpus = json_number_value(c);
        if (json_is_integer(m) && json_integer_value(m) > 0)
                *mem_mb = (uint64_t)json_integer_value(m);
}

/* The binary with `drover job`: this one, or for the lean `drover-agent` the `drover` beside it. */
static char *job_exe(void)
{
        char *self = drv_self_exe();
        char *slash = self ? strrchr(self, '/') : NULL;
        if (!slash ||
            strncmp(slash + 1, "drover-agent", 12) != 0) /* drover-agent*: the daemon alone */
                return self;
        char *full = drv_asprintf("%.*s/drover", (int)(slash - self), self);
        free(self);
        return full;
}

int jobs_start(struct agent *a, json_t *spec, struct drv_error *err)
{
        const char *id = json_string_value(json_object_get(json_object_get(spec, "id"), "job"));
        if (!id || !id[0])
                return drv_err(err, EINVAL, "claimed job has no id.job");
        if (jobs_find(a, id))
                return drv_err(err, EEXIST, "job %s is already running here", id);
        _cleanup_free_ char *dir = run_dir(a);
        if (!dir || drv_mkdir_p(dir, 0700, err) < 0 || chmod(dir, 0700) < 0)
                return drv_err_prefix(err, "runtime dir");
        struct job *j = calloc(1, sizeof(*j));
        if (!j)
                return drv_err(err, ENOMEM, "out of memory");
        j->w = (struct watch){W_JOB_EVENTS, -1, j};
        j->spool_fd = -1;
        j->id = strdup(id);
        const char *att =
            json_string_value(json_object_get(json_object_get(spec, "id"), "attempt"));
        j->attempt = att ? strdup(att) : NULL;
        j->claimed_ns = drv_now_ns();
        jobs_resources(spec, &j->cpus, &j->mem_mb);
        j->spec_path = drv_asprintf("%s/job-%llu-%u.json", dir, (unsigned long long)j->claimed_ns,
                                    (unsigned)getpid());
        _cleanup_free_ char *text = json_dumps(spec, JSON_COMPACT);
        if (!j->id || !j->spec_path || !text) {
                job_free(j);
                return drv_err(err, ENOMEM, "out of memory");
        }
        _cleanup_close_ int sfd =
            open(j->spec_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (sfd < 0 || drv_write_all(sfd, text, strlen(text)) < 0) {
                drv_err_errno(err, "writing %s", j->spec_path);
                job_free(j);
                return -err->code;
        }
        int p[2];
        if (pipe2(p, O_CLOEXEC) < 0) {
                job_free(j);
                return drv_err_errno(err, "pipe2");
        }
        _cleanup_free_ char *self = job_exe();
        /* drover job: the operator's output spool settings (docs/agent.md) */
        char spool_max[32];
        snprintf(spool_max, sizeof(spool_max), "%llu", (unsigned long long)a->cfg.spool_max);
        const char *job_argv[12] = {"drover", "job", "--spec", j->spec_path, "--events-fd", "3"};
        size_t ja = 6;
        if (a->cfg.spool_dir && a->cfg.spool_dir[0]) {
                job_argv[ja++] = "--spool-dir";
                job_argv[ja++] = a->cfg.spool_dir;
        }
        if (a->cfg.spool_max) {
                job_argv[ja++] = "--spool-max";
                job_argv[ja++] = spool_max;
        }
        job_argv[ja] = NULL;
        pid_t agent_pid = getpid();
        pid_t pid = fork();
        if (pid < 0) {
                close(p[0]);
                close(p[1]);
                job_free(j);
                return drv_err_errno(err, "fork");
        }
        if (pid == 0) {
                sigset_t none;
                sigemptyset(&none);
                sigprocmask(SIG_SETMASK, &none, NULL);
                setpgid(0, 0);
                /* the agent is stateless: if it dies, its jobs are canceled, not orphaned */
                prctl(PR_SET_PDEATHSIG, SIGTERM);
                if (getppid() != agent_pid)
                        _exit(3);
                if (dup2(p[1], 3) < 0)
                        _exit(3);
                int nul = open("/dev/null", O_RDWR | O_CLOEXEC);
                if (nul >= 0) {
                        dup2(nul, 0);
                        dup2(nul, 1);
                }
                if (a->cfg.job_command && a->cfg.job_command[0])
                        execl(a->cfg.job_command, a->cfg.job_command, "--spec", j->spec_path,
                              "--events-fd", "3", (char *)NULL);
                else if (self)
                        execv(self, (char *const *)job_argv);
                _exit(3);
        }
        close(p[1]);
        setpgid(pid, pid); /* also from the parent: no race with an early kill(-pid) */
        drv_fd_nonblock(p[0], true);
        j->pid = pid;
        j->w.fd = p[0];
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &j->w};
        epoll_ctl(a->epfd, EPOLL_CTL_ADD, p[0], &ev);
        j->next = a->jobs;
        a->jobs = j;
        log_info("job_started", "job=%s pid=%d", j->id, (int)pid);
        return 0;
}

void jobs_start_failed(struct agent *a, json_t *spec, const char *reason)
{
        const char *id = json_string_value(json_object_get(json_object_get(spec, "id"), "job"));
        if (!id || !id[0] || jobs_find(a, id))
                return; /* nothing to report it under, or it is running already */
        struct job *j = calloc(1, sizeof(*j));
        if (!j || !(j->id = strdup(id)) || !(j->cancel_reason = strdup(reason))) {
                if (j)
                        job_free(j);
                return;
        }
        const char *att =
            json_string_value(json_object_get(json_object_get(spec, "id"), "attempt"));
        j->attempt = att ? strdup(att) : NULL;
        j->w = (struct watch){W_JOB_EVENTS, -1, j};
        j->spool_fd = -1;
        j->exited = true;
        j->wstatus = 3 << 8; /* as if `drover job` had exited 3: infrastructure failure */
        j->infra_cancel = true;
        j->next = a->jobs;
        a->jobs = j;
}

static void on_line(struct agent *a, struct job *j, const char *line, size_t n)
{
        json_t *ev = json_loadb(line, n, 0, NULL);
        json_int_t seq = ev ? json_integer_value(json_object_get(ev, "seq")) : 0;
        if (!ev || !json_is_object(ev) || seq <= j->max_seq) {
                log_warn("job_event_ignored", "job=%s reason=%s", j->id,
                         ev ? "sequence not increasing" : "not JSON");
                json_decref(ev);
                return;
        }
        metrics_note_event(a, j, ev);
        if (push_event(a, j, seq, ev) < 0)
                log_error("job_event_lost", "job=%s seq=%lld reason=oom", j->id, (long long)seq);
        json_decref(ev);
}

void jobs_on_events(struct agent *a, struct job *j)
{
        char buf[16384];
        for (;;) {
                ssize_t n = read(j->w.fd, buf, sizeof(buf));
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        break; /* EAGAIN */
                if (n == 0) {
                        if (!j->paused)
                                epoll_ctl(a->epfd, EPOLL_CTL_DEL, j->w.fd, NULL);
                        close(j->w.fd);
                        j->w.fd = -1;
                        break;
                }
                strbuf_append(&j->line, buf, (size_t)n);
                char *start = j->line.buf, *nl;
                while ((nl = memchr(start, '\n', j->line.len - (size_t)(start - j->line.buf)))) {
                        if (nl > start)
                                on_line(a, j, start, (size_t)(nl - start));
                        start = nl + 1;
                }
                size_t rest = j->line.len - (size_t)(start - j->line.buf);
                memmove(j->line.buf, start, rest);
                j->line.len = rest;
                if (j->buffered > JOB_BUFFER_MAX) { /* hold the job back until acked */
                        log_info("job_events_paused", "job=%s buffered=%zu", j->id, j->buffered);
                        epoll_ctl(a->epfd, EPOLL_CTL_DEL, j->w.fd, NULL);
                        j->paused = true;
                        break;
                }
        }
}

void jobs_reap(struct agent *a)
{
        int ws;
        pid_t pid;
        while ((pid = waitpid(-1, &ws, WNOHANG)) > 0) {
                for (struct job *j = a->jobs; j; j = j->next) {
                        if (j->pid != pid)
                                continue;
                        j->exited = true;
                        j->exited_ns = drv_now_ns();
                        j->wstatus = ws;
                        log_info("job_exited", "job=%s pid=%d exit=%d signal=%d", j->id, (int)pid,
                                 WIFEXITED(ws) ? WEXITSTATUS(ws) : -1,
                                 WIFSIGNALED(ws) ? WTERMSIG(ws) : 0);
                }
        }
}

void jobs_cancel(struct agent *a, struct job *j, const char *reason, bool infra)
{
        if (j->exited || j->cancel_sent)
                return;
        j->infra_cancel = infra;
        free(j->cancel_reason);
        j->cancel_reason = strdup(reason);
        j->cancel_sent = true;
        j->kill_at_ns = drv_now_ns() + a->cfg.cancel_grace * 1000000000ull;
        kill(j->pid, SIGTERM);
        log_info("job_cancel", "job=%s pid=%d reason=\"%s\"", j->id, (int)j->pid, reason);
}

static void queue_outcome(struct agent *a, struct job *j)
{
        const char *status = "infrastructure_fail", *reason = NULL;
        int code = -1, idx = 3;
        if (WIFEXITED(j->wstatus)) {
                code = WEXITSTATUS(j->wstatus);
                switch (code) {
                case 0:
                        status = "success", idx = 0;
                        break;
                case 1:
                        status = "failed", idx = 1;
                        break;
                case 2:
                        status = "failed", idx = 1, reason = "invalid job spec";
                        break;
                case 4:
                        status = "canceled", idx = 2;
                        break;
                default:
                        reason = "job supervisor failed";
                }
        } else {
                reason = "job supervisor killed by a signal";
        }
        if (j->infra_cancel && idx != 0) {
                status = "infrastructure_fail", idx = 3;
                reason = j->cancel_reason;
        } else if (j->cancel_sent && idx == 3) {
                status = "canceled", idx = 2, reason = j->cancel_reason;
        }
        char t[40];
        drv_time_rfc3339(t, sizeof(t));
        json_t *ev =
            json_pack("{s:I, s:s, s:s, s:s, s:s, s:i}", "seq", (json_int_t)j->max_seq + 1, "type",
                      "outcome", "job", j->id, "time", t, "status", status, "exit_code", code);
        if (reason)
                json_object_set_new(ev, "reason", json_string(reason));
        push_event(a, j, j->max_seq + 1, ev);
        json_decref(ev);
        j->outcome_queued = true;
        a->m.finished[idx]++;
        if (j->spec_path) {
                unlink(j->spec_path);
                free(j->spec_path);
                j->spec_path = NULL;
        }
        log_info("job_finished", "job=%s status=%s exit=%d", j->id, status, code);
}

static void drop_acked(struct agent *a, struct job *j, int64_t acked)
{
        size_t k = 0;
        for (size_t i = 0; i < j->nev; i++) {
                if (j->ev[i].seq > acked) {
                        j->ev[k++] = j->ev[i];
                } else if (j->ev[i].json) {
                        j->buffered -= j->ev[i].len;
                        free(j->ev[i].json);
                } else {
                        j->n_spooled--;
                }
        }
        j->nev = k;
        if (acked > j->acked)
                j->acked = acked;
        if (!j->n_spooled && j->spool_size && j->spool_fd >= 0) { /* all delivered: reuse it */
                if (ftruncate(j->spool_fd, 0) == 0) {
                        a->spool_bytes -= j->spool_size;
                        j->spool_size = 0;
                }
        }
}

static void on_events_done(struct agent *a, struct http_req *r, int rc, long status)
{
        struct job *j = r->data;
        j->inflight = NULL;
        _cleanup_(json_decrefp) json_t *resp = http_json(r);
        if (rc != HTTP_OK || status >= 500 || status == 0) {
                j->attempts++;
                j->retry_at_ns = drv_now_ns() + agent_backoff_ns(a);
                agent_server_failed(a, r, "events", rc != HTTP_OK ? r->error : "5xx");
                return;
        }
        agent_server_ok(a);
        int64_t before = j->acked;
        if (status == 200) {
                json_t *acked = json_object_get(resp, "acked");
                if (!json_is_integer(acked) || json_integer_value(acked) > j->max_seq) {
                        log_error("events_bad_answer", "job=%s body=\"%.200s\"", j->id,
                                  r->resp.buf ? r->resp.buf : "");
                } else {
                        a->m.events_sent +=
                            (uint64_t)json_integer_value(json_object_get(resp, "accepted"));
                        drop_acked(a, j, json_integer_value(acked));
                }
        } else if (status == 409) {
                json_t *ev = json_object_get(resp, "expected");
                json_int_t exp = json_integer_value(ev);
                log_warn("events_resync", "job=%s expected=%lld", j->id, (long long)exp);
                if (!json_is_integer(ev) || exp <= j->acked || exp > j->max_seq + 1) {
                        /* it asks for events it acknowledged before (and the agent dropped), or
                         * for ones never written: no order can satisfy it */
                        log_error("events_gap_unfillable",
                                  "job=%s expected=%lld acked=%lld written=%lld action=drop", j->id,
                                  (long long)exp, (long long)j->acked, (long long)j->max_seq);
                        j->events_lost = true;
                        drop_acked(a, j, j->max_seq);
                } else {
                        drop_acked(a, j, exp - 1);
                }
        } else if ((status == 401 || status == 404) &&
                   !strcmp(json_string_value(json_object_get(resp, "code")) ?: "",
                           "unknown_node")) {
                agent_node_unknown(a, r, "events"); /* the batch goes again under the new id */
                before = -1;
        } else {
                const char *msg = json_string_value(json_object_get(resp, "error"));
                const char *code = json_string_value(json_object_get(resp, "code"));
                log_error("events_rejected", "job=%s status=%ld error=\"%s\" dropped=%zu", j->id,
                          status, msg ? msg : "", j->nev);
                drop_acked(a, j, j->max_seq);
                /* the claim was requeued (never acknowledged in time): the job is not ours any
                 * more and may run elsewhere, so it must not go on here */
                if (status == 404 && code && !strcmp(code, "unknown_job")) {
                        j->disowned = true; /* not in heartbeats: they would acknowledge a new
                                               claim of the same job id */
                        jobs_cancel(a, j, "the control plane no longer assigns this job here",
                                    false);
                }
        }
        /* an answer that moved nothing forward: the next try waits (no request loop) */
        if (j->nev && j->acked == before) {
                j->retry_at_ns = drv_now_ns() + agent_backoff_for(j->attempts++);
        } else {
                j->attempts = 0;
        }
}

static void send_events(struct agent *a, struct job *j)
{
        struct strbuf sb = STRBUF_INIT;
        strbuf_printf(&sb, "{\"node_id\":\"%s\",", a->node_id);
        if (j->attempt) /* checked charset: no escaping needed */
                strbuf_printf(&sb, "\"attempt\":\"%s\",", j->attempt);
        strbuf_puts(&sb, "\"events\":[");
        size_t n = j->nev < JOB_BATCH_MAX ? j->nev : JOB_BATCH_MAX;
        for (size_t i = 0; i < n && sb.len < JOB_BATCH_BYTES; i++) {
                if (i)
                        strbuf_putc(&sb, ',');
                if (j->ev[i].json) {
                        strbuf_puts(&sb, j->ev[i].json);
                        continue;
                }
                size_t at = sb.len;
                ssize_t r =
                    strbuf_grow(&sb, j->ev[i].len) < 0
                        ? -1
                        : pread(j->spool_fd, sb.buf + at, j->ev[i].len, (off_t)j->ev[i].off);
                if (r != (ssize_t)j->ev[i].len) {
                        log_error("job_event_spool_read_failed", "job=%s seq=%lld error=\"%s\"",
                                  j->id, (long long)j->ev[i].seq,
                                  r < 0 ? strerror(errno) : "short read");
                        strbuf_release(&sb);
                        j->retry_at_ns = drv_now_ns() + 1000000000ull;
                        return;
                }
                sb.len += j->ev[i].len;
                sb.buf[sb.len] = 0;
        }
        strbuf_puts(&sb, "]}");
        _cleanup_free_ char *path = NULL;
        _cleanup_free_ char *esc = agent_path_escape(j->id);
        path = drv_asprintf("/v1/jobs/%s/events", esc ? esc : "");
        j->inflight =
            http_post(a, path, strbuf_detach(&sb), AGENT_EVENTS_TIMEOUT, on_events_done, j);
        if (!j->inflight)
                j->retry_at_ns = drv_now_ns() + 1000000000ull;
}

void jobs_tick(struct agent *a)
{
        uint64_t now = drv_now_ns();
        for (struct job **pp = &a->jobs; *pp;) {
                struct job *j = *pp;
                if (j->cancel_sent && !j->exited && now >= j->kill_at_ns) {
                        log_warn("job_kill", "job=%s pid=%d reason=cancel_grace_expired", j->id,
                                 (int)j->pid);
                        kill(-j->pid, SIGKILL);
                        kill(j->pid, SIGKILL);
                        j->kill_at_ns = now + 5000000000ull;
                }
                if (j->paused && j->w.fd >= 0 && j->buffered <= JOB_BUFFER_MAX / 2) {
                        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &j->w};
                        j->paused = false;
                        epoll_ctl(a->epfd, EPOLL_CTL_ADD, j->w.fd, &ev);
                        jobs_on_events(a, j);
                }
                if (j->exited && j->w.fd >= 0 && j->buffered <= JOB_BUFFER_MAX)
                        jobs_on_events(a, j); /* drain what is left in the pipe */
                if (j->exited && j->w.fd >= 0 && now - j->exited_ns > 2 * 1000000000ull &&
                    j->buffered <= JOB_BUFFER_MAX) {
                        /* something the supervisor left behind still holds the pipe */
                        log_warn("job_events_pipe_held", "job=%s", j->id);
                        if (!j->paused)
                                epoll_ctl(a->epfd, EPOLL_CTL_DEL, j->w.fd, NULL);
                        close(j->w.fd);
                        j->w.fd = -1;
                }
                if (j->exited && j->w.fd < 0 && !j->outcome_queued)
                        queue_outcome(a, j);
                if ((j->disowned || j->events_lost) && j->nev && !j->inflight)
                        drop_acked(a, j, j->max_seq);
                if (j->nev && !j->inflight && a->registered && a->hb_since_reg &&
                    now >= j->retry_at_ns)
                        send_events(a, j);
                if (j->outcome_queued && !j->nev && !j->inflight) {
                        *pp = j->next;
                        a->jobs_finished_total++;
                        spool_release(a, j);
                        job_free(j);
                        continue;
                }
                pp = &j->next;
        }
}

void jobs_free_all(struct agent *a)
{
        while (a->jobs) {
                struct job *j = a->jobs;
                a->jobs = j->next;
                if (j->inflight)
                        http_abort(a, j->inflight);
                spool_release(a, j);
                job_free(j);
        }
}

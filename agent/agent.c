/* agent.c: `drover agent`, the daemon: one epoll loop (signalfd, timerfd, HTTP client, job
 * event pipes, metrics socket) that registers, heartbeats, claims jobs into supervisor processes,
 * delivers their events, drains on SIGTERM and reloads its config on SIGHUP. */
#include "agent/agent.h"
#include "agent/commands.h"
#include "drover_version.h"
#include "executor/docker/runtime_docker.h"
#include "sandbox/sandbox.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <sys/utsname.h>

#define NS               1000000000ull
#define CLAIM_DRAIN_WAIT (5 * NS)

static void usage(FILE *f)
{
        fprintf(f, "usage: drover agent [--config PATH] [--print-config] [--KEY VALUE...]\n"
                   "The build agent daemon. Every key of /etc/drover/agent.yaml is also a flag\n"
                   "(--max-jobs 1, --tls-ca PATH, --exit-after-job) and an environment variable\n"
                   "(DROVER_MAX_JOBS). See man 8 drover-agent, man 5 drover-agent.yaml and\n"
                   "docs/agent.md (installed in /usr/share/doc/drover/docs/).\n");
}

uint64_t agent_backoff_ns(struct agent *a)
{
        return agent_backoff_for(a->fail_streak);
}

uint64_t agent_backoff_for(unsigned streak)
{
        unsigned s = streak < 7 ? streak : 7;
        uint64_t base = (250000000ull << s);
        if (base > 30 * NS)
                base = 30 * NS;
        /* jitter: 50%..150% */
        uint64_t r = (uint64_t)random() % 1000;
        return base / 2 + base * r / 1000;
}

void agent_server_failed(struct agent *a, const struct http_req *r, const char *what,
                         const char *detail)
{
        int n = (int)drv_strv_len(a->cfg.servers), server = r->server;
        a->fail_streak++;
        const char *url = server < n ? a->cfg.servers[server] : "?";
        if (r->fail != NETFAIL_NONE) /* the words of `drover check` (agent/netfail.c) */
                log_warn("control_plane_unreachable",
                         "request=%s server=%s problem=\"%s\" error=\"%s\" fix=\"%s\" streak=%u",
                         what, url, netfail_kind(r->fail), detail, netfail_fix(r->fail),
                         a->fail_streak);
        else
                log_warn("control_plane_unreachable", "request=%s server=%s error=\"%s\" streak=%u",
                         what, url, detail, a->fail_streak);
        if (n > 1 && server == a->server)
                a->server = (a->server + 1) % n;
}

/* A 401/404 "unknown node" answer: register again, unless the request was sent under an earlier
 * registration (the agent registered since; the request is simply retried under the new id). */
void agent_node_unknown(struct agent *a, struct http_req *r, const char *what)
{
        if (r->reg_gen != a->reg_gen || !a->registered) {
                log_info("node_unknown_stale", "request=%s action=retry", what);
                return;
        }
        log_warn("node_unknown", "request=%s server=%s action=register", what,
                 a->cfg.servers[a->server]);
        a->registered = false;
        a->hb_since_reg = false;
}

void agent_server_ok(struct agent *a)
{
        if (a->fail_streak)
                log_info("control_plane_reachable", "server=%s", a->cfg.servers[a->server]);
        a->fail_streak = 0;
}

char *agent_node_body(struct agent *a, json_t *extra)
{
        json_t *o = extra ? extra : json_object();
        json_object_set_new(o, "node_id", json_string(a->node_id ? a->node_id : ""));
        char *s = json_dumps(o, JSON_COMPACT);
        json_decref(o);
        return s;
}

static size_t free_slots(struct agent *a)
{
        size_t n = 0;
        for (struct job *j = a->jobs; j; j = j->next)
                if (!j->outcome_queued)
                        n++;
        return n >= a->capacity ? 0 : a->capacity - n;
}

static void free_resources(struct agent *a, double *cpus, uint64_t *mem)
{
        double c = a->cpus_total;
        uint64_t m = a->mem_total_mb;
        for (struct job *j = a->jobs; j; j = j->next) {
                if (j->outcome_queued)
                        continue;
                c -= j->cpus;
                m = m > j->mem_mb ? m - j->mem_mb : 0;
        }
        *cpus = c > 0 ? c : 0;
        *mem = m;
}

/* Jobs this node runs at once: max_jobs, else by CPUs and memory; never more than the host's
 * sandbox slots hold with every job at its max_services_per_job (checked at start). */
static void compute_capacity(struct agent *a)
{
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        uint64_t mem = (uint64_t)sysconf(_SC_PHYS_PAGES) * (uint64_t)sysconf(_SC_PAGESIZE);
        size_t by_mem = (size_t)(mem / (2048ull << 20));
        size_t c = cpus > 0 ? (size_t)cpus : 1;
        a->cpus_total = (double)c;
        a->mem_total_mb = mem >> 20 > 512 ? (mem >> 20) - 512 : 0; /* keep 512 MB for the host */
        if (by_mem < c)
                c = by_mem;
        a->capacity = a->cfg.max_jobs ? (size_t)a->cfg.max_jobs : (c ? c : 1);
        size_t fit = SANDBOX_SLOTS / (size_t)(1 + a->cfg.max_services_per_job);
        if (!a->cfg.max_jobs && a->capacity > fit)
                a->capacity = fit ? fit : 1;
}

/* One job cannot starve the others of sandbox slots: the configured jobs, each with its
 * services, must fit in the host's slots. */
static int check_slots(struct agent *a, struct drv_error *err)
{
        uint64_t per_job = 1 + a->cfg.max_services_per_job;
        if (a->cfg.max_services_per_job >= SANDBOX_SLOTS ||
            (uint64_t)a->capacity * per_job > SANDBOX_SLOTS)
                return drv_err(err, EINVAL,
                               "max_jobs %zu with max_services_per_job %llu need %llu sandbox "
                               "slots; this host has %d: lower max_jobs or max_services_per_job",
                               a->capacity, (unsigned long long)a->cfg.max_services_per_job,
                               (unsigned long long)((uint64_t)a->capacity * per_job),
                               SANDBOX_SLOTS);
        char svc[32]; /* the jobs' `drover job` enforces it (executor/runtime_image.c) */
        snprintf(svc, sizeof(svc), "%llu", (unsigned long long)a->cfg.max_services_per_job);
        setenv("DROVER_MAX_SERVICES", svc, 1);
        return 0;
}

static char *read_line_file(const char *path)
{
        char *s = NULL;
        struct drv_error e = {0};
        if (drv_read_file(path, &s, NULL, 4096, &e) < 0)
                return strdup("");
        s[strcspn(s, "\n")] = 0;
        return s;
}

static void fatal(struct agent *a, const char *event, const char *fmt, const char *detail)
{
        log_error(event, fmt, detail);
        a->fatal = true;
        a->exit_code = 1;
        a->done = true;
}

/* ---- register ---- */
static void on_register(struct agent *a, struct http_req *r, int rc, long status)
{
        a->reg_req = NULL;
        _cleanup_(json_decrefp) json_t *resp = http_json(r);
        if (rc != HTTP_OK || status >= 500 || status == 0) {
                agent_server_failed(a, r, "register", rc != HTTP_OK ? r->error : "server error");
                a->next_register_ns = drv_now_ns() + agent_backoff_ns(a);
                return;
        }
        const char *msg = json_string_value(json_object_get(resp, "error"));
        if (status != 200) {
                fatal(a, "register_refused", "error=\"%s\"",
                      msg ? msg : "the control plane refused the registration");
                return;
        }
        const char *id = json_string_value(json_object_get(resp, "node_id"));
        json_t *hbv = json_object_get(resp, "heartbeat_interval_ms");
        json_t *pv = json_object_get(resp, "protocol");
        const char *bad = NULL;
        if (!id || !id[0] || !json_is_integer(hbv) || json_integer_value(hbv) <= 0 ||
            json_integer_value(hbv) > 3600000)
                bad = "malformed register answer (node_id, heartbeat_interval_ms 1..3600000)";
        else if (pv && (!json_is_integer(pv) || json_integer_value(pv) != AGENT_PROTOCOL_VERSION))
                bad = "register answer names another protocol version than the agent's";
        if (bad) { /* a server fault, not a refusal: try the next replica, with backoff */
                log_error(
                    "register_bad_answer", "server=%s error=\"%s\" body=\"%.200s\"",
                    a->cfg.servers[r->server < (int)drv_strv_len(a->cfg.servers) ? r->server : 0],
                    bad, r->resp.buf ? r->resp.buf : "");
                agent_server_failed(a, r, "register", bad);
                a->next_register_ns = drv_now_ns() + agent_backoff_ns(a);
                return;
        }
        json_int_t hb = json_integer_value(hbv);
        agent_server_ok(a);
        free(a->node_id);
        a->node_id = strdup(id);
        a->hb_interval_ms = (uint64_t)hb;
        a->registered = true;
        a->reg_gen++;
        /* a heartbeat at once: it lists the jobs still held, which the control plane re-keys to
         * the new node id; their events wait for its answer (hb_since_reg) */
        a->hb_since_reg = false;
        a->next_hb_ns = 0;
        a->next_claim_ns = 0;
        log_info("registered", "node=%s server=%s heartbeat_ms=%llu capacity=%zu", a->node_id,
                 a->cfg.servers[a->server], (unsigned long long)a->hb_interval_ms, a->capacity);
        if (!a->ready_sent) {
                sd_notifyf("READY=1\nSTATUS=registered as %s, %zu slots", a->node_id, a->capacity);
                a->ready_sent = true;
        }
}

static void send_register(struct agent *a)
{
        struct utsname u;
        uname(&u);
        _cleanup_free_ char *mid = read_line_file("/etc/machine-id");
        _cleanup_free_ char *bid = read_line_file("/proc/sys/kernel/random/boot_id");
        char host[256] = "";
        gethostname(host, sizeof(host) - 1);
        json_t *rc = json_array();
        for (char **c = a->cfg.resource_classes; c && *c; c++)
                json_array_append_new(rc, json_string(*c));
        int cg = access("/sys/fs/cgroup/cgroup.controllers", F_OK) == 0 ? 2 : 1;
        json_t *o = json_pack(
            "{s:i, s:s, s:s, s:s, s:s, s:o, s:i, s:I, s:I, s:s, s:s, s:i, s:[s], s:s}", "protocol",
            AGENT_PROTOCOL_VERSION, "name", a->cfg.name[0] ? a->cfg.name : host, "machine_id", mid,
            "boot_id", bid, "version", DROVER_VERSION, "resource_classes", rc, "cpus",
            (int)sysconf(_SC_NPROCESSORS_ONLN), "memory_mb",
            (json_int_t)((uint64_t)sysconf(_SC_PHYS_PAGES) * (uint64_t)sysconf(_SC_PAGESIZE) >> 20),
            "max_jobs", (json_int_t)a->capacity, "kernel", u.release, "arch", u.machine,
            "cgroup_version", cg, "runtimes", "sandbox", "ssh_ports", a->cfg.ssh_ports);
        if (o && a->n_docker)
                json_array_append_new(json_object_get(o, "runtimes"), json_string("docker"));
        free(a->node_id);
        a->node_id = NULL;
        a->reg_req = http_post(a, "/v1/register", json_dumps(o, JSON_COMPACT),
                               AGENT_REGISTER_TIMEOUT, on_register, NULL);
        json_decref(o);
        if (!a->reg_req)
                a->next_register_ns = drv_now_ns() + NS;
}

/* ---- heartbeat ---- */
static void start_drain(struct agent *a, const char *why)
{
        if (a->draining)
                return;
        a->draining = a->stopping = true;
        a->drain_deadline_ns = drv_now_ns() + a->cfg.drain_grace * NS;
        /* The outstanding long poll is not cut: the draining heartbeat (sent now) makes the
         * control plane answer it at once; a job it still brings is released. If the control
         * plane does not answer, the poll is abandoned after CLAIM_DRAIN_WAIT (the control plane
         * requeues claims that are never acknowledged). */
        a->next_hb_ns = 0;
        a->claim_abort_ns = drv_now_ns() + CLAIM_DRAIN_WAIT;
        log_info("draining", "reason=%s running=%zu grace_s=%llu", why, jobs_running(a),
                 (unsigned long long)a->cfg.drain_grace);
        sd_notifyf("STOPPING=1\nSTATUS=draining (%s), %zu jobs running", why, jobs_running(a));
}

static void on_heartbeat(struct agent *a, struct http_req *r, int rc, long status)
{
        a->hb_req = NULL;
        _cleanup_(json_decrefp) json_t *resp = http_json(r);
        if (rc != HTTP_OK || status >= 500 || status == 0) {
                a->m.heartbeat_failures++;
                agent_server_failed(a, r, "heartbeat", rc != HTTP_OK ? r->error : "server error");
                a->next_hb_ns = drv_now_ns() + agent_backoff_ns(a);
                return;
        }
        if (status == 404 || status == 401) {
                a->m.heartbeat_failures++;
                agent_node_unknown(a, r, "heartbeat");
                if (a->registered) /* stale: the next one under the new id at once */
                        a->next_hb_ns = 0;
                return;
        }
        agent_server_ok(a);
        /* the control plane has seen the jobs this node holds (re-keyed them): events may go,
         * even when the answer itself is not usable */
        if (status >= 200 && status < 300 && r->reg_gen == a->reg_gen)
                a->hb_since_reg = true;
        json_t *cancel = json_object_get(resp, "cancel"), *drain = json_object_get(resp, "drain");
        if (status != 200 || !json_is_object(resp) || (cancel && !json_is_array(cancel)) ||
            (drain && !json_is_boolean(drain))) {
                /* an answer the protocol does not define: logged and not acted on; the next
                 * heartbeat goes out on schedule */
                a->m.heartbeat_failures++;
                log_error("heartbeat_bad_answer", "status=%ld body=\"%.200s\"", status,
                          r->resp.buf ? r->resp.buf : "");
                return;
        }
        a->m.heartbeats++;
        a->last_hb_ok_ns = drv_now_ns();
        size_t i;
        json_t *v;
        json_array_foreach (cancel, i, v) {
                struct job *j = json_is_string(v) ? jobs_find(a, json_string_value(v)) : NULL;
                if (j)
                        jobs_cancel(a, j, "canceled by the control plane", false);
        }
        if (json_is_true(drain))
                start_drain(a, "control_plane");
}

static void send_heartbeat(struct agent *a)
{
        json_t *run = json_array(), *held = json_array();
        for (struct job *j = a->jobs; j; j = j->next) {
                if (j->disowned)
                        continue;
                if (!j->exited)
                        json_array_append_new(run, json_string(j->id));
                json_array_append_new(held, json_string(j->id));
        }
        json_t *o = json_pack("{s:o, s:o, s:I, s:I, s:b}", "running", run, "claimed", held,
                              "free_slots", (json_int_t)(a->draining ? 0 : free_slots(a)),
                              "capacity", (json_int_t)a->capacity, "draining", a->draining);
        a->hb_req = http_post(a, "/v1/heartbeat", agent_node_body(a, o), AGENT_HEARTBEAT_TIMEOUT,
                              on_heartbeat, NULL);
        /* the period is kept from the schedule, not from when the 100 ms tick noticed it is
         * due (which made it drift); after a pause it starts again from now */
        uint64_t now = drv_now_ns(), period = a->hb_interval_ms * 1000000ull;
        a->next_hb_ns =
            a->next_hb_ns && a->next_hb_ns + period > now ? a->next_hb_ns + period : now + period;
}

/* ---- claim ---- */
static void on_claim(struct agent *a, struct http_req *r, int rc, long status)
{
        a->claim_req = NULL;
        _cleanup_(json_decrefp) json_t *resp = http_json(r);
        if (rc != HTTP_OK || status >= 500 || status == 0) {
                a->m.claim_errors++;
                agent_server_failed(a, r, "claim", rc != HTTP_OK ? r->error : "server error");
                a->next_claim_ns = drv_now_ns() + agent_backoff_ns(a);
                return;
        }
        agent_server_ok(a);
        if (status == 204) {
                /* answered at once (a draining node, a server holding less than asked): the
                 * next claim waits, so claims never exceed one per AGENT_CLAIM_MIN_NS */
                a->m.claim_empty++;
                a->next_claim_ns = r->started_ns + AGENT_CLAIM_MIN_NS;
                return;
        }
        if (status == 404 || status == 401) {
                agent_node_unknown(a, r, "claim");
                return;
        }
        json_t *spec = json_object_get(resp, "job");
        if (status != 200 || !json_is_object(spec)) {
                a->m.claim_errors++;
                log_error("claim_rejected", "status=%ld body=\"%.200s\"", status,
                          r->resp.buf ? r->resp.buf : "");
                a->next_claim_ns = drv_now_ns() + agent_backoff_ns(a);
                return;
        }
        a->m.claims++;
        a->m.claim_latency_sum += (double)(drv_now_ns() - r->started_ns) / 1e9;
        const char *jid = json_string_value(json_object_get(json_object_get(spec, "id"), "job"));
        struct job *old = jid ? jobs_find(a, jid) : NULL;
        if (jid && (a->draining || old)) {
                /* answered before the control plane saw the drain, or the job is claimed again
                 * while a requeued copy of it still ends here: give it back */
                log_info("claim_released", "job=%s reason=%s", jid,
                         a->draining ? "draining" : "an earlier copy still ends here");
                if (drv_strv_push(&a->release, jid) < 0)
                        log_error("claim_release_lost", "job=%s reason=oom", jid);
                if (old) /* not straight back for it while the old copy ends */
                        a->next_claim_ns = drv_now_ns() + NS / 2;
                return;
        }
        json_t *att = json_object_get(resp, "attempt");
        const char *as = json_string_value(att);
        if (jobspec_attempt_valid(as))
                json_object_set(json_object_get(spec, "id"), "attempt", att);
        else if (att)
                log_error("claim_bad_attempt", "job=%s attempt=\"%.80s\"", jid ? jid : "?",
                          as ? as : "(not a string)");
        struct drv_error err = {0};
        if (agent_docker_fill_spec(a, spec) < 0)
                log_error("docker_host_assign_failed", "error=\"out of memory\"");
        if (jobs_start(a, spec, &err) < 0) {
                log_error("job_start_failed", "error=\"%s\"", err.message);
                jobs_start_failed(a, spec, err.message);
        }
        a->idle_since_ns = 0;
        if (a->cfg.exit_after_job)
                start_drain(a, "exit_after_job");
}

/* claim_wait, within the protocol's maximum */
static uint64_t claim_wait(const struct agent *a)
{
        return a->cfg.claim_wait > AGENT_CLAIM_WAIT_MAX ? AGENT_CLAIM_WAIT_MAX : a->cfg.claim_wait;
}

static void send_claim(struct agent *a)
{
        json_t *rc = json_array();
        for (char **c = a->cfg.resource_classes; c && *c; c++)
                json_array_append_new(rc, json_string(*c));
        double fc;
        uint64_t fm;
        free_resources(a, &fc, &fm);
        json_t *o = json_pack("{s:I, s:f, s:I, s:o, s:I}", "free_slots", (json_int_t)free_slots(a),
                              "free_cpus", fc, "free_memory_mb", (json_int_t)fm, "resource_classes",
                              rc, "wait", (json_int_t)claim_wait(a));
        a->claim_req = http_post(a, "/v1/claim", agent_node_body(a, o),
                                 (long)(claim_wait(a) + 10) * 1000, on_claim, NULL);
}

/* ---- release: a claimed job this node will not run goes back to the queue ---- */
static void on_release(struct agent *a, struct http_req *r, int rc, long status)
{
        (void)r;
        a->rel_req = NULL;
        const char *jid = a->release ? a->release[0] : NULL;
        if (!jid)
                return;
        if (rc != HTTP_OK || status >= 500 || status == 0) {
                agent_server_failed(a, r, "release", rc != HTTP_OK ? r->error : "server error");
                a->next_release_ns = drv_now_ns() + agent_backoff_ns(a);
                return;
        }
        agent_server_ok(a);
        if (status == 200)
                log_info("job_released", "job=%s", jid);
        else /* 404/409: not ours any more, or already started: nothing to give back */
                log_warn("job_release_refused", "job=%s status=%ld body=\"%.200s\"", jid, status,
                         r->resp.buf ? r->resp.buf : "");
        free(a->release[0]);
        memmove(a->release, a->release + 1, drv_strv_len(a->release) * sizeof(char *));
}

static void send_release(struct agent *a)
{
        _cleanup_free_ char *esc = agent_path_escape(a->release[0]);
        _cleanup_free_ char *path = esc ? drv_asprintf("/v1/jobs/%s/release", esc) : NULL;
        char *body = agent_node_body(a, json_pack("{s:s}", "reason", "not started by this node"));
        a->rel_req =
            path && body ? http_post(a, path, body, AGENT_RELEASE_TIMEOUT, on_release, NULL) : NULL;
        if (!path)
                free(body);
        if (!a->rel_req)
                a->next_release_ns = drv_now_ns() + NS;
}

char *agent_path_escape(const char *s)
{
        static const char hex[] = "0123456789ABCDEF";
        char *out = malloc(strlen(s) * 3 + 1), *o = out;
        if (!out)
                return NULL;
        for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
                if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                    (*p >= '0' && *p <= '9') || strchr("-._~", *p)) {
                        *o++ = (char)*p;
                } else {
                        *o++ = '%';
                        *o++ = hex[*p >> 4];
                        *o++ = hex[*p & 15];
                }
        }
        *o = 0;
        return out;
}

/* ---- deregister ---- */
static void on_deregister(struct agent *a, struct http_req *r, int rc, long status)
{
        a->dereg_req = NULL;
        a->deregistered = true;
        if (rc != HTTP_OK || status != 200)
                log_warn("deregister_failed", "status=%ld error=\"%s\"", status,
                         rc != HTTP_OK ? r->error : "");
        else
                log_info("deregistered", "node=%s", a->node_id);
        a->done = true;
}

/* ---- the loop ---- */

/* log_file: stderr (fd 2, which the job supervisors inherit too) goes to it, opened again on each
 * SIGHUP so that a rotated file is let go. */
static void open_log(struct agent *a)
{
        if (!a->cfg.log_file || !a->cfg.log_file[0])
                return;
        int fd = open(a->cfg.log_file, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, 0640);
        if (fd < 0) {
                log_error("log_open_failed", "path=%s error=\"%s\"", a->cfg.log_file,
                          strerror(errno));
                return;
        }
        if (fd != STDERR_FILENO) {
                if (dup2(fd, STDERR_FILENO) < 0)
                        log_error("log_open_failed", "path=%s error=\"%s\"", a->cfg.log_file,
                                  strerror(errno));
                close(fd);
        }
}

static void reload(struct agent *a)
{
        struct agent_config n;
        bool print;
        struct drv_error err = {0};
        if (agent_config_load(a->argc, a->argv, &n, &print, &err) < 0 || !n.servers) {
                log_error("reload_failed", "error=\"%s\"", err.code ? err.message : "no servers");
                agent_config_free(&n);
                return;
        }
        agent_config_free(&a->cfg);
        a->cfg = n;
        a->server = 0;
        enum drv_log_level lv;
        if (drv_log_parse_level(a->cfg.log_level, &lv) == 0)
                drv_log_set_level(lv);
        open_log(a);
        compute_capacity(a);
        struct drv_error se = {0};
        if (check_slots(a, &se) < 0) { /* keep the old per-job bound, fewer jobs */
                log_error("config_slots", "error=\"%s\"", se.message);
                const char *old = getenv("DROVER_MAX_SERVICES");
                uint64_t m = 0;
                if (!old || drv_parse_u64(old, &m) < 0 || m >= SANDBOX_SLOTS)
                        m = 0;
                a->cfg.max_services_per_job = m;
                if (a->capacity > SANDBOX_SLOTS / (size_t)(1 + m))
                        a->capacity = SANDBOX_SLOTS / (size_t)(1 + m);
        }
        agent_docker_load(a);
        metrics_reopen(a);
        log_info("config_reloaded", "capacity=%zu classes=%zu log_file=%s", a->capacity,
                 drv_strv_len(a->cfg.resource_classes), a->cfg.log_file);
}

static void on_signal(struct agent *a)
{
        struct signalfd_siginfo si;
        while (read(a->sigw.fd, &si, sizeof(si)) == sizeof(si)) {
                switch (si.ssi_signo) {
                case SIGTERM:
                case SIGINT:
                        start_drain(a, si.ssi_signo == SIGTERM ? "SIGTERM" : "SIGINT");
                        break;
                case SIGHUP:
                        reload(a);
                        break;
                case SIGCHLD:
                        jobs_reap(a);
                        break;
                }
        }
}

static void step(struct agent *a)
{
        uint64_t now = drv_now_ns();
        jobs_tick(a);
        metrics_tick(a);
        if (a->done)
                return;
        bool any_jobs = a->jobs != NULL;
        if (a->registered && a->release && a->release[0] && !a->rel_req &&
            now >= a->next_release_ns)
                send_release(a);
        if (a->draining && a->claim_req && now >= a->claim_abort_ns) {
                log_warn("claim_abandoned", "reason=draining wait_ms=%llu",
                         (unsigned long long)(CLAIM_DRAIN_WAIT / 1000000));
                http_abort(a, a->claim_req);
                a->claim_req = NULL;
        }
        if (a->stopping) {
                /* pending releases and the long poll count as work still to finish */
                any_jobs |= a->claim_req || a->rel_req || (a->release && a->release[0]);
                if (any_jobs && now >= a->drain_deadline_ns)
                        for (struct job *j = a->jobs; j; j = j->next)
                                jobs_cancel(a, j, "agent shutting down: drain grace expired", true);
                /* give up on undeliverable events well after the grace */
                bool give_up = now >= a->drain_deadline_ns + (a->cfg.cancel_grace + 30) * NS;
                if ((!any_jobs || give_up) && !a->dereg_req && !a->deregistered) {
                        if (a->registered) {
                                a->dereg_req =
                                    http_post(a, "/v1/deregister", agent_node_body(a, NULL),
                                              AGENT_DEREGISTER_TIMEOUT, on_deregister, NULL);
                                if (!a->dereg_req)
                                        a->done = true;
                        } else if (!any_jobs || give_up) {
                                a->done = true;
                        }
                }
                if (a->dereg_req || a->done)
                        return;
        }
        if (!a->registered) {
                if (!a->reg_req && now >= a->next_register_ns)
                        send_register(a);
                return;
        }
        if (!a->hb_req && now >= a->next_hb_ns)
                send_heartbeat(a);
        if (!any_jobs && !a->stopping) {
                if (!a->idle_since_ns)
                        a->idle_since_ns = now;
                if (a->cfg.idle_timeout && now - a->idle_since_ns >= a->cfg.idle_timeout * NS) {
                        log_info("idle_timeout", "idle_s=%llu",
                                 (unsigned long long)a->cfg.idle_timeout);
                        start_drain(a, "idle_timeout");
                        return;
                }
        } else {
                a->idle_since_ns = 0;
        }
        if (!a->draining && !a->claim_req && free_slots(a) > 0 && now >= a->next_claim_ns)
                send_claim(a);
        if (a->watchdog_usec && now >= a->next_watchdog_ns) {
                sd_notifyf("WATCHDOG=1");
                a->next_watchdog_ns = now + a->watchdog_usec * 500ull;
        }
        size_t running = jobs_running(a);
        if (running != a->last_status_running) {
                sd_notifyf("STATUS=%zu of %zu slots busy, %u jobs done", running, a->capacity,
                           a->jobs_finished_total);
                a->last_status_running = running;
        }
        if (a->statsd_fd >= 0 && now >= a->next_statsd_ns) {
                metrics_statsd_flush(a);
                a->next_statsd_ns = now + 10 * NS;
        }
}

static int setup(struct agent *a, struct drv_error *err)
{
        a->epfd = epoll_create1(EPOLL_CLOEXEC);
        if (a->epfd < 0)
                return drv_err_errno(err, "epoll_create1");
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, SIGTERM);
        sigaddset(&set, SIGINT);
        sigaddset(&set, SIGHUP);
        sigaddset(&set, SIGCHLD);
        sigprocmask(SIG_BLOCK, &set, NULL);
        signal(SIGPIPE, SIG_IGN);
        a->sigw = (struct watch){W_SIGNAL, signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK), NULL};
        a->tickw = (struct watch){
            W_TICK, timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK), NULL};
        if (a->sigw.fd < 0 || a->tickw.fd < 0)
                return drv_err_errno(err, "signalfd/timerfd");
        struct itimerspec its = {{0, 100000000}, {0, 100000000}};
        timerfd_settime(a->tickw.fd, 0, &its, NULL);
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &a->sigw};
        epoll_ctl(a->epfd, EPOLL_CTL_ADD, a->sigw.fd, &ev);
        ev.data.ptr = &a->tickw;
        epoll_ctl(a->epfd, EPOLL_CTL_ADD, a->tickw.fd, &ev);
        int r = http_init(a, err);
        if (r < 0)
                return r;
        return metrics_listen(a, err);
}

static int run(struct agent *a)
{
        struct epoll_event evs[32];
        while (!a->done) {
                int n = epoll_wait(a->epfd, evs, 32, 1000);
                if (n < 0 && errno != EINTR) {
                        log_error("epoll_failed", "error=\"%s\"", strerror(errno));
                        return 1;
                }
                for (int i = 0; i < n; i++) {
                        struct watch *w = evs[i].data.ptr;
                        uint64_t x;
                        switch (w->type) {
                        case W_DEAD:
                                break;
                        case W_SIGNAL:
                                on_signal(a);
                                break;
                        case W_TICK:
                                (void)!read(w->fd, &x, sizeof(x));
                                break;
                        case W_HTTP_TIMER:
                                http_drive(a, HTTP_TIMER_FD, 0);
                                break;
                        case W_HTTP_SOCK:
                                http_drive(a, w->fd, evs[i].events);
                                break;
                        case W_JOB_EVENTS:
                                jobs_on_events(a, w->obj);
                                break;
                        case W_METRICS_LISTEN:
                                metrics_on_accept(a);
                                break;
                        case W_METRICS_CONN:
                                metrics_on_conn(a, w);
                                break;
                        }
                }
                while (a->graveyard) {
                        struct watch *w = a->graveyard;
                        a->graveyard = w->obj;
                        free(w);
                }
                step(a);
        }
        return a->exit_code;
}

/* A list setting as the environment variable name (comma-separated; unset when empty). */
static void export_list(const char *name, char *const *list)
{
        _cleanup_strbuf_ struct strbuf m = STRBUF_INIT;
        for (char *const *v = list; v && *v; v++)
                if (strbuf_printf(&m, "%s%s", v == list ? "" : ",", *v) < 0)
                        return;
        if (m.len)
                setenv(name, m.buf, 1);
        else
                unsetenv(name);
}

/* The image settings of docker jobs in the sandbox, as the environment their `drover job`
 * reads (executor/runtime_image.h), and the egress allow-list of the jobs' private networks
 * (sandbox/egress.c). */
static void agent_export_job_settings(const struct agent_config *c)
{
        char max[32];
        snprintf(max, sizeof(max), "%llu", (unsigned long long)c->image_store_max);
        const char *vals[][2] = {{"DROVER_IMAGE_STORE", c->image_store},
                                 {"DROVER_IMAGE_STORE_MAX", c->image_store_max ? max : NULL},
                                 {"DROVER_IMAGE_PULL", c->image_pull},
                                 {"DROVER_IMAGE_CA_FILE", c->image_ca_file}};
        for (size_t i = 0; i < DRV_ARRAY_SIZE(vals); i++)
                if (vals[i][1] && *vals[i][1])
                        setenv(vals[i][0], vals[i][1], 1);
        export_list("DROVER_IMAGE_MIRRORS", c->image_mirrors);
        export_list("DROVER_IMAGE_REGISTRY_ALLOW", c->image_registry_allow);
        export_list("DROVER_SANDBOX_EGRESS_ALLOW", c->egress_allow);
}

int cmd_agent(int argc, char **argv)
{
        struct agent a = {0};
        struct drv_error err = {0};
        bool print = false;
        a.argc = argc;
        a.argv = argv;
        a.epfd = a.statsd_fd = -1;
        a.http_timer.fd = a.sigw.fd = a.tickw.fd = a.metricsw.fd = -1;
        int r = agent_config_load(argc, argv, &a.cfg, &print, &err);
        if (r == -EAGAIN) {
                usage(stdout);
                agent_config_free(&a.cfg);
                return 0;
        }
        if (r < 0) {
                fprintf(stderr, "drover agent: %s\n", err.message);
                agent_config_free(&a.cfg);
                return 2;
        }
        if (print) {
                _cleanup_free_ char *s = agent_config_format(&a.cfg);
                fputs(s, stdout);
                agent_config_free(&a.cfg);
                return 0;
        }
        enum drv_log_level lv;
        if (drv_log_parse_level(a.cfg.log_level, &lv) == 0)
                drv_log_set_level(lv);
        open_log(&a);
        int rc = 1;
        const char *oneshot = getenv(AGENT_ONESHOT_ENV);
        if (oneshot && strcmp(oneshot, "docker-cleanup") == 0) {
                /* the lean drover-agent's child: only the Docker leftovers (no libcurl there) */
                agent_docker_load(&a);
                agent_docker_cleanup(&a);
                rc = 0;
                goto out;
        }
        if (!a.cfg.servers || !a.cfg.servers[0]) {
                fprintf(stderr, "drover agent: no control plane servers configured (servers)\n");
                goto out;
        }
        a.token = agent_config_join_token(&a.cfg, &err);
        if (!a.token) {
                fprintf(stderr, "drover agent: join token: %s\n", err.message);
                goto out;
        }
        srandom((unsigned)(drv_now_ns() ^ (uint64_t)getpid()));
        compute_capacity(&a);
        if (check_slots(&a, &err) < 0) {
                fprintf(stderr, "drover agent: %s\n", err.message);
                goto out;
        }
        const char *wd = getenv("WATCHDOG_USEC");
        uint64_t wu;
        if (wd && drv_parse_u64(wd, &wu) == 0)
                a.watchdog_usec = wu;
        if (setup(&a, &err) < 0) {
                fprintf(stderr, "drover agent: %s\n", err.message);
                goto out;
        }
        /* the job supervisors label their Docker objects with this node's name */
        setenv(RTDOCKER_NODE_ENV, agent_node_name(&a), 1);
        /* ... and run SSH reruns on a port of the configured range (docs/ssh.md) */
        if (a.cfg.ssh_ports && *a.cfg.ssh_ports)
                setenv("DROVER_SSH_PORTS", a.cfg.ssh_ports, 1);
        /* ... and pull images for docker jobs in the sandbox with these settings */
        agent_export_job_settings(&a.cfg);
        agent_docker_load(&a);
        agent_docker_cleanup(&a);
        /* opt-in: on v1 hosts every job's pid 1 is moved into its cgroups, which some kernels
         * make wait for an RCU grace period; expedited grace periods cut that (docs/sandbox.md) */
        if (a.cfg.rcu_expedited) {
                struct drv_error e = {0};
                if (drv_write_file("/sys/kernel/rcu_expedited", "1", &e) < 0)
                        log_warn("rcu_expedited", "error=\"%s\"", e.message);
                else
                        log_info("rcu_expedited", "value=1");
        }
        a.start_ns = drv_now_ns();
        log_info("agent_start", "servers=%zu capacity=%zu pid=%d", drv_strv_len(a.cfg.servers),
                 a.capacity, (int)getpid());
        sd_notifyf("STATUS=registering");
        rc = run(&a);
        log_info("agent_exit", "code=%d jobs_finished=%u", rc, a.jobs_finished_total);
out:
        jobs_free_all(&a);
        http_abort(&a, a.reg_req);
        http_abort(&a, a.hb_req);
        http_abort(&a, a.claim_req);
        http_abort(&a, a.dereg_req);
        http_abort(&a, a.rel_req);
        drv_strv_free(a.release);
        if (a.http)
                http_cleanup(&a);
        while (a.graveyard) {
                struct watch *w = a.graveyard;
                a.graveyard = w->obj;
                free(w);
        }
        if (a.metricsw.fd >= 0)
                close(a.metricsw.fd);
        if (a.statsd_fd >= 0)
                close(a.statsd_fd);
        if (a.sigw.fd >= 0)
                close(a.sigw.fd);
        if (a.tickw.fd >= 0)
                close(a.tickw.fd);
        if (a.epfd >= 0)
                close(a.epfd);
        free(a.node_id);
        free(a.token);
        agent_docker_free(&a);
        agent_config_free(&a.cfg);
        return rc;
}

/* metrics.c: Prometheus text and /healthz on a local address, StatsD (optional), sd_notify. */
#include "agent/agent.h"
#include "sandbox/sandbox.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>

void sd_notifyf(const char *fmt, ...)
{
        const char *path = getenv("NOTIFY_SOCKET");
        if (!path || (path[0] != '/' && path[0] != '@'))
                return;
        char msg[512];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        size_t n = strlen(path);
        if (n >= sizeof(sa.sun_path))
                return;
        memcpy(sa.sun_path, path, n);
        if (sa.sun_path[0] == '@')
                sa.sun_path[0] = 0;
        _cleanup_close_ int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return;
        sendto(fd, msg, strlen(msg), MSG_NOSIGNAL, (struct sockaddr *)&sa,
               (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n));
}

static int parse_hostport(const char *s, struct sockaddr_in *sa)
{
        const char *colon = strrchr(s, ':');
        uint64_t port;
        if (!colon || drv_parse_u64(colon + 1, &port) < 0 || port > 65535)
                return -EINVAL;
        char host[64];
        size_t n = (size_t)(colon - s);
        if (n >= sizeof(host))
                return -EINVAL;
        memcpy(host, s, n);
        host[n] = 0;
        *sa = (struct sockaddr_in){.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
        if (!n || !strcmp(host, "localhost"))
                snprintf(host, sizeof(host), "127.0.0.1");
        return inet_pton(AF_INET, host, &sa->sin_addr) == 1 ? 0 : -EINVAL;
}

int metrics_listen(struct agent *a, struct drv_error *err)
{
        a->metricsw = (struct watch){W_METRICS_LISTEN, -1, NULL};
        if (a->cfg.statsd && a->cfg.statsd[0]) {
                struct sockaddr_in sa;
                if (parse_hostport(a->cfg.statsd, &sa) < 0)
                        return drv_err(err, EINVAL, "statsd: expected IPv4:PORT, got '%s'",
                                       a->cfg.statsd);
                a->statsd_fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
                if (a->statsd_fd < 0 ||
                    connect(a->statsd_fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
                        return drv_err_errno(err, "statsd socket");
        }
        if (!a->cfg.metrics_listen || !a->cfg.metrics_listen[0])
                return 0;
        struct sockaddr_in sa;
        if (parse_hostport(a->cfg.metrics_listen, &sa) < 0)
                return drv_err(err, EINVAL, "metrics_listen: expected IPv4:PORT, got '%s'",
                               a->cfg.metrics_listen);
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
                return drv_err_errno(err, "socket");
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 16) < 0) {
                drv_err_errno(err, "metrics_listen %s", a->cfg.metrics_listen);
                close(fd);
                return -err->code;
        }
        a->metricsw.fd = fd;
        a->metrics_paused = false;
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &a->metricsw};
        epoll_ctl(a->epfd, EPOLL_CTL_ADD, fd, &ev);
        return 0;
}

void metrics_reopen(struct agent *a)
{
        if (a->statsd_fd >= 0)
                close(a->statsd_fd);
        a->statsd_fd = -1;
        if (a->metricsw.fd >= 0) {
                epoll_ctl(a->epfd, EPOLL_CTL_DEL, a->metricsw.fd, NULL);
                close(a->metricsw.fd);
        }
        a->metricsw.fd = -1;
        a->next_statsd_ns = 0;
        struct drv_error err = {0};
        if (metrics_listen(a, &err) < 0) {
                log_error("metrics_reopen_failed", "error=\"%s\"", err.message);
                if (a->statsd_fd >= 0 && (!a->cfg.statsd || !a->cfg.statsd[0])) {
                        close(a->statsd_fd);
                        a->statsd_fd = -1;
                }
                return;
        }
        log_info("metrics_reopened", "listen=%s statsd=%s", a->cfg.metrics_listen, a->cfg.statsd);
}

static void listen_events(struct agent *a, uint32_t events)
{
        struct epoll_event ev = {.events = events, .data.ptr = &a->metricsw};
        if (a->metricsw.fd >= 0 && epoll_ctl(a->epfd, EPOLL_CTL_MOD, a->metricsw.fd, &ev) < 0)
                log_warn("metrics_epoll", "error=\"%s\"", strerror(errno));
}

/* Stop accepting (the listener leaves the epoll set, connections wait in the backlog): a full
 * table or EMFILE would otherwise wake the loop again at once, forever. */
static void pause_accept(struct agent *a, const char *why)
{
        if (a->metrics_paused)
                return;
        listen_events(a, 0);
        a->metrics_paused = true;
        if (a->metrics_pauses++ % 100 == 0) /* EMFILE that lasts: retried each tick */
                log_warn("metrics_accept_paused", "reason=\"%s\" max_connections=%d pauses=%llu",
                         why, METRICS_MAX_CONNS, (unsigned long long)a->metrics_pauses);
}

static void resume_accept(struct agent *a)
{
        if (!a->metrics_paused)
                return;
        listen_events(a, EPOLLIN);
        a->metrics_paused = false;
}

/* The watch goes to the graveyard (freed after the epoll batch, which may still name it). */
static void close_conn(struct agent *a, size_t i)
{
        struct watch *w = a->metrics_conns[i];
        epoll_ctl(a->epfd, EPOLL_CTL_DEL, w->fd, NULL);
        close(w->fd);
        w->fd = -1;
        w->type = W_DEAD;
        w->obj = a->graveyard;
        a->graveyard = w;
        a->metrics_conns[i] = NULL;
        resume_accept(a);
}

void metrics_on_accept(struct agent *a)
{
        for (;;) {
                size_t i = 0, oldest = 0;
                while (i < METRICS_MAX_CONNS && a->metrics_conns[i]) {
                        if (a->metrics_conn_ns[i] < a->metrics_conn_ns[oldest])
                                oldest = i;
                        i++;
                }
                int fd = accept4(a->metricsw.fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
                if (fd < 0) {
                        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
                            errno == ENOMEM)
                                pause_accept(a, strerror(errno)); /* the tick retries */
                        return;
                }
                if (i == METRICS_MAX_CONNS) { /* full: the oldest (idle, or slow) one goes */
                        log_debug("metrics_conn_evicted", "max_connections=%d", METRICS_MAX_CONNS);
                        close_conn(a, oldest);
                        i = oldest;
                }
                struct watch *w = calloc(1, sizeof(*w));
                if (!w) {
                        close(fd);
                        continue;
                }
                *w = (struct watch){W_METRICS_CONN, fd, NULL};
                struct epoll_event ev = {.events = EPOLLIN, .data.ptr = w};
                if (epoll_ctl(a->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
                        close(fd);
                        free(w);
                        continue;
                }
                a->metrics_conns[i] = w;
                a->metrics_conn_ns[i] = drv_now_ns();
        }
}

void metrics_tick(struct agent *a)
{
        uint64_t now = drv_now_ns();
        for (size_t i = 0; i < METRICS_MAX_CONNS; i++)
                if (a->metrics_conns[i] && now - a->metrics_conn_ns[i] >= METRICS_CONN_NS)
                        close_conn(a, i);
        for (size_t i = 0; i < METRICS_MAX_CONNS; i++)
                if (!a->metrics_conns[i]) {
                        resume_accept(a); /* after EMFILE: try again, at most once a tick */
                        break;
                }
}

static void render(struct agent *a, struct strbuf *sb)
{
        static const char *const st[] = {"success", "failed", "canceled", "infrastructure_fail",
                                         "other"};
        struct agent_metrics *m = &a->m;
        strbuf_printf(sb,
                      "# HELP drover_jobs_running Jobs running on this node.\n"
                      "# TYPE drover_jobs_running gauge\ndrover_jobs_running %zu\n"
                      "# TYPE drover_job_slots gauge\ndrover_job_slots %zu\n"
                      "# TYPE drover_draining gauge\ndrover_draining %d\n"
                      "# HELP drover_jobs_finished_total Jobs finished, by status.\n"
                      "# TYPE drover_jobs_finished_total counter\n",
                      jobs_running(a), a->capacity, a->draining ? 1 : 0);
        for (size_t i = 0; i < 4; i++)
                strbuf_printf(sb, "drover_jobs_finished_total{status=\"%s\"} %llu\n", st[i],
                              (unsigned long long)m->finished[i]);
        strbuf_printf(
            sb,
            "# TYPE drover_claims_total counter\ndrover_claims_total{result=\"job\"} %llu\n"
            "drover_claims_total{result=\"empty\"} %llu\n"
            "drover_claims_total{result=\"error\"} %llu\n"
            "# HELP drover_claim_latency_seconds Time from claim request to a job.\n"
            "# TYPE drover_claim_latency_seconds summary\n"
            "drover_claim_latency_seconds_sum %.6f\ndrover_claim_latency_seconds_count %llu\n"
            "# TYPE drover_claim_to_first_step_seconds summary\n"
            "drover_claim_to_first_step_seconds_sum %.6f\n"
            "drover_claim_to_first_step_seconds_count %llu\n"
            "# TYPE drover_heartbeats_total counter\ndrover_heartbeats_total %llu\n"
            "# TYPE drover_heartbeat_failures_total counter\n"
            "drover_heartbeat_failures_total %llu\n"
            "# TYPE drover_step_duration_seconds summary\n"
            "drover_step_duration_seconds_sum %.6f\ndrover_step_duration_seconds_count %llu\n"
            "# TYPE drover_sandbox_start_seconds summary\n"
            "drover_sandbox_start_seconds_sum %.6f\ndrover_sandbox_start_seconds_count %llu\n"
            "# TYPE drover_job_events_sent_total counter\ndrover_job_events_sent_total %llu\n"
            "# TYPE drover_output_bytes_total counter\ndrover_output_bytes_total %llu\n"
            "# TYPE drover_cache_total counter\ndrover_cache_total{result=\"hit\"} %llu\n"
            "drover_cache_total{result=\"miss\"} %llu\n"
            "# TYPE drover_upload_bytes_total counter\ndrover_upload_bytes_total %llu\n",
            (unsigned long long)m->claims, (unsigned long long)m->claim_empty,
            (unsigned long long)m->claim_errors, m->claim_latency_sum,
            (unsigned long long)m->claims, m->claim_to_first_step_sum,
            (unsigned long long)m->claim_to_first_step_n, (unsigned long long)m->heartbeats,
            (unsigned long long)m->heartbeat_failures, m->step_seconds_sum,
            (unsigned long long)m->steps, m->sandbox_start_sum,
            (unsigned long long)m->sandbox_starts, (unsigned long long)m->events_sent,
            (unsigned long long)m->output_bytes, (unsigned long long)m->cache_hits,
            (unsigned long long)m->cache_misses, (unsigned long long)m->upload_bytes);
        strbuf_printf(
            sb,
            "# HELP drover_event_spool_bytes Job events spilled to disk, unacknowledged.\n"
            "# TYPE drover_event_spool_bytes gauge\ndrover_event_spool_bytes %llu\n"
            "# TYPE drover_job_events_spooled_total counter\n"
            "drover_job_events_spooled_total %llu\n"
            "# HELP drover_sandbox_slots Sandboxes this host can run at once.\n"
            "# TYPE drover_sandbox_slots gauge\ndrover_sandbox_slots %d\n"
            "# HELP drover_sandbox_slots_per_job_max A job's primary and its services at most.\n"
            "# TYPE drover_sandbox_slots_per_job_max gauge\n"
            "drover_sandbox_slots_per_job_max %llu\n",
            (unsigned long long)a->spool_bytes, (unsigned long long)m->events_spooled,
            SANDBOX_SLOTS, (unsigned long long)(1 + a->cfg.max_services_per_job));
}

void metrics_on_conn(struct agent *a, struct watch *w)
{
        char req[4096];
        ssize_t n = read(w->fd, req, sizeof(req) - 1);
        if (n < 0 && errno == EAGAIN)
                return;
        if (n > 0) {
                req[n] = 0;
                struct strbuf body = STRBUF_INIT;
                const char *status = "200 OK", *ctype = "text/plain; version=0.0.4";
                if (!strncmp(req, "GET /metrics ", 13)) {
                        render(a, &body);
                } else if (!strncmp(req, "GET /healthz ", 13)) {
                        bool ok = a->registered || !a->ready_sent;
                        if (!a->registered)
                                status = "503 Service Unavailable";
                        strbuf_printf(&body, "%s registered=%d draining=%d running=%zu\n",
                                      a->registered ? "ok" : "unhealthy", a->registered,
                                      a->draining, jobs_running(a));
                        (void)ok;
                } else {
                        status = "404 Not Found";
                        strbuf_puts(&body, "not found\n");
                }
                char head[256];
                int hn = snprintf(head, sizeof(head),
                                  "HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                                  "Connection: close\r\n\r\n",
                                  status, ctype, body.len);
                drv_fd_nonblock(w->fd, false);
                struct timeval tv = {1, 0};
                setsockopt(w->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
                (void)drv_write_all(w->fd, head, (size_t)hn);
                (void)drv_write_all(w->fd, body.buf ? body.buf : "", body.len);
                strbuf_release(&body);
        }
        for (size_t i = 0; i < METRICS_MAX_CONNS; i++)
                if (a->metrics_conns[i] == w)
                        close_conn(a, i);
}

void metrics_note_event(struct agent *a, struct job *j, json_t *ev)
{
        const char *type = json_string_value(json_object_get(ev, "type"));
        if (!type)
                return;
        if (!strcmp(type, "step_started") && !j->first_step_seen) {
                j->first_step_seen = true;
                a->m.claim_to_first_step_sum += (double)(drv_now_ns() - j->claimed_ns) / 1e9;
                a->m.claim_to_first_step_n++;
        } else if (!strcmp(type, "step_finished")) {
                a->m.steps++;
                a->m.step_seconds_sum +=
                    (double)json_integer_value(json_object_get(ev, "duration_ms")) / 1e3;
        } else if (!strcmp(type, "finished")) {
                json_t *s = json_object_get(ev, "runtime_start_ms");
                if (json_is_integer(s)) {
                        a->m.sandbox_starts++;
                        a->m.sandbox_start_sum += (double)json_integer_value(s) / 1e3;
                }
        } else if (!strcmp(type, "cache")) {
                if (json_is_true(json_object_get(ev, "hit")))
                        a->m.cache_hits++;
                else
                        a->m.cache_misses++;
        } else if (!strcmp(type, "artifact") || !strcmp(type, "upload")) {
                a->m.upload_bytes += (uint64_t)json_integer_value(json_object_get(ev, "size"));
        }
        json_t *ob = json_object_get(ev, "output_bytes");
        if (ob)
                a->m.output_bytes += (uint64_t)json_integer_value(ob);
}

void metrics_statsd_flush(struct agent *a)
{
        if (a->statsd_fd <= 0)
                return;
        char buf[512];
        int n =
            snprintf(buf, sizeof(buf),
                     "drover.jobs.running:%zu|g\ndrover.jobs.success:%llu|g\n"
                     "drover.jobs.failed:%llu|g\ndrover.heartbeat.failures:%llu|g\n"
                     "drover.claims:%llu|g\n",
                     jobs_running(a), (unsigned long long)a->m.finished[0],
                     (unsigned long long)a->m.finished[1],
                     (unsigned long long)a->m.heartbeat_failures, (unsigned long long)a->m.claims);
        (void)!send(a->statsd_fd, buf, (size_t)n, MSG_NOSIGNAL);
}

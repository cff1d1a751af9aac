/* agent.h: internals of `drover agent` shared by its files (config, http, jobs, metrics, loop). */
#pragma once

#include "agent/netfail.h"
#include "executor/jobspec.h"
#include "lib/drv.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#define AGENT_PROTOCOL_VERSION 1
/* docs/protocol-control-plane.md: the most a claim may ask the server to hold it; a claim
 * answered sooner than AGENT_CLAIM_MIN_NS (204 at once) waits out the rest before the next;
 * request timeouts per call ("Request timeouts") */
#define AGENT_CLAIM_WAIT_MAX     30
#define AGENT_CLAIM_MIN_NS       1000000000ull
#define AGENT_REGISTER_TIMEOUT   5000
#define AGENT_HEARTBEAT_TIMEOUT  5000
#define AGENT_EVENTS_TIMEOUT     10000
#define AGENT_RELEASE_TIMEOUT    5000
#define AGENT_DEREGISTER_TIMEOUT 5000

/* ---- config.c ---- */
struct agent_config {
        char **servers;
        char *join_token_file;
        char *join_token; /* secret: redacted by --print-config */
        char *tls_ca, *tls_cert, *tls_key;
        char *tls_proxy_ca; /* trust for an https:// proxy; "" = the system store */
        char *name;
        char **resource_classes;
        uint64_t max_jobs;
        bool exit_after_job;
        uint64_t idle_timeout; /* seconds, 0 = never */
        char *work_dir, *spool_dir;
        uint64_t spool_max;    /* bytes of unacknowledged output per job (drover job --spool-max) */
        uint64_t drain_grace;  /* seconds */
        uint64_t cancel_grace; /* seconds between SIGTERM and SIGKILL of a job */
        uint64_t claim_wait;   /* seconds of a claim long poll */
        char *ssh_ports;
        uint64_t event_spool_max; /* bytes of job events spilled to disk, all jobs; 0 = none */
        char *metrics_listen;
        char *statsd;
        char *log_level;
        char *log_file; /* "" = stderr; reopened on SIGHUP (log rotation) */
        char *output_processor;
        char *storage_endpoint;
        char **docker_hosts;      /* engine URLs (tcp://HOST:2376) */
        char **docker_hosts_ca;   /* per host, same length: "" = docker_tls.ca */
        char **docker_hosts_cert; /* "" = docker_tls.cert */
        char **docker_hosts_key;  /* "" = docker_tls.key */
        char *docker_tls_ca, *docker_tls_cert, *docker_tls_key;
        char *job_command; /* test hook: run this instead of `drover job` (not printed if unset) */
        /* docker jobs on images in the sandbox (docs/images-run.md): exported to the jobs as
         * DROVER_IMAGE_STORE, _STORE_MAX, _PULL, _MIRRORS, _CA_FILE */
        char *image_store;
        uint64_t image_store_max; /* bytes, 0 = no bound */
        char *image_pull;         /* never | missing | always */
        char **image_mirrors;
        char **image_registry_allow; /* HOST[:PORT] registries jobs may name on loopback or
                                        private addresses (DROVER_IMAGE_REGISTRY_ALLOW) */
        char *image_ca_file;
        /* services a docker job may have (exported as DROVER_MAX_SERVICES): with max_jobs it
         * sizes the sandbox slots a node needs, (1 + this) per job (docs/agent.md) */
        uint64_t max_services_per_job;
        bool rcu_expedited;  /* sandbox.rcu_expedited: write 1 to /sys/kernel/rcu_expedited at start
                                (opt-in; docs/sandbox.md "Start-up") */
        char **egress_allow; /* sandbox.egress_allow: ADDR[/BITS][:PORT] jobs may reach besides
                                the internet (docs/sandbox.md "Egress"); exported to the jobs as
                                DROVER_SANDBOX_EGRESS_ALLOW */
};

/* Effective config: defaults < file (--config PATH or /etc/drover/agent.yaml if present) < env
 * DROVER_* < flags. argv is getopt-parsed; *print and *config_path report the meta flags. */
int agent_config_load(int argc, char **argv, struct agent_config *cfg, bool *print,
                      struct drv_error *err);
void agent_config_free(struct agent_config *cfg);
/* YAML text of the effective config, secrets redacted. Caller frees. */
char *agent_config_format(const struct agent_config *cfg);
/* Load the join token (join_token, else join_token_file). Caller frees; NULL if none. */
char *agent_config_join_token(const struct agent_config *cfg, struct drv_error *err);
/* Set one key from a string (env/flag syntax: lists comma-separated). For tests. */
int agent_config_set(struct agent_config *cfg, const char *key, const char *value,
                     struct drv_error *err);
void agent_config_defaults(struct agent_config *cfg);
/* The TLS files of docker_hosts[i] (its own, else docker_tls.*). */
void agent_config_docker_host(const struct agent_config *cfg, size_t i, const char **url,
                              const char **ca, const char **cert, const char **key);

/* ---- http.c (libcurl multi, `drover agent`) or http_lean.c (mbedTLS, `drover-agent`): the
 * control-plane HTTP client driven by the agent's epoll loop; one interface, two transports ---- */
enum watch_type {
        W_DEAD,
        W_SIGNAL,
        W_TICK,
        W_HTTP_TIMER,
        W_HTTP_SOCK,
        W_JOB_EVENTS,
        W_METRICS_LISTEN,
        W_METRICS_CONN
};
struct watch {
        enum watch_type type;
        int fd;
        void *obj;
};

struct agent;
struct http_req;
/* rc: HTTP_OK, or the class of transport failure (no usable response); r->error says what.
 * status: the HTTP status of a complete response, else 0. */
enum http_rc {
        HTTP_OK = 0,
        HTTP_E_CONNECT,
        HTTP_E_TLS,
        HTTP_E_TIMEOUT,
        HTTP_E_PROTOCOL,
        HTTP_E_OTHER
};
typedef void (*http_done_fn)(struct agent *a, struct http_req *r, int rc, long status);
struct http_impl; /* the transport's own state of a request */
struct http_req {
        struct http_impl *impl;
        char *body;
        struct strbuf resp;
        http_done_fn done;
        void *data;
        int server;       /* index into servers */
        unsigned reg_gen; /* the registration (node id) the request was sent under */
        uint64_t started_ns;
        char error[256];   /* rc != HTTP_OK: what failed */
        enum netfail fail; /* rc != HTTP_OK: its kind, as `drover check` names it */
};
#define HTTP_TIMER_FD     (-1) /* http_drive: the transport's timer fired */
#define HTTP_MAX_RESPONSE (8u << 20)

int http_init(struct agent *a, struct drv_error *err);
void http_cleanup(struct agent *a);
/* POST json body to servers[a->server] + path; done is called once from the loop. */
struct http_req *http_post(struct agent *a, const char *path, char *body_take, long timeout_ms,
                           http_done_fn done, void *data);
/* Abort an in-flight request (done is not called). */
void http_abort(struct agent *a, struct http_req *r);
/* Drive the transport after an fd event (fd, events) or its timer (fd = HTTP_TIMER_FD). */
void http_drive(struct agent *a, int fd, uint32_t events);
/* Parse the response body as JSON (NULL if not). */
json_t *http_json(struct http_req *r);

/* ---- http_common.c: what both transports share ---- */
#define HTTP_CONNECT_TIMEOUT_MS 5000 /* name resolution + TCP connect (+ proxy tunnel: lean) */
/* A request to servers[a->server] + path: common fields set, impl zeroed (impl_size bytes);
 * *url (caller frees) is where it goes. NULL when out of memory (body freed). */
struct http_req *http_req_new(struct agent *a, const char *path, char *body_take, size_t impl_size,
                              http_done_fn done, void *data, char **url);
/* Free r, its impl block (the transport released what that points to), body and response. */
void http_req_free(struct http_req *r);
/* The body to send ("{}" when none). */
const char *http_req_body(const struct http_req *r);
/* The protocol's request headers for path ("Name: value", no line end), one by one to add;
 * the first negative return of add ends it and is returned. The bearer token is a secret. */
int http_req_headers(const struct agent *a, const char *path,
                     int (*add)(void *ctx, const char *line), void *ctx);

/* ---- jobs.c: supervisors ---- */
struct job_event {
        int64_t seq;
        char *json;   /* compact JSON object; NULL: spilled to the job's spool file */
        uint64_t off; /* where in the spool file, when spilled */
        size_t len;
};
struct job {
        struct job *next;
        char *id;
        char *attempt; /* the claim's attempt id (events carry it); NULL = none */
        pid_t pid;
        struct watch w; /* events pipe */
        char *spec_path;
        struct strbuf line;
        struct job_event *ev;
        size_t nev, cap;
        size_t buffered; /* bytes of events in memory */
        int spool_fd;    /* events beyond the memory bound, while unacknowledged; -1 = none */
        char *spool_path;
        uint64_t spool_size;
        size_t n_spooled;
        int64_t max_seq, acked;
        struct http_req *inflight;
        uint64_t retry_at_ns;
        unsigned attempts;
        bool exited, outcome_queued, infra_cancel;
        uint64_t exited_ns;
        bool paused; /* events pipe out of epoll: buffer full */
        int wstatus;
        bool cancel_sent;
        uint64_t kill_at_ns;
        uint64_t claimed_ns;
        double cpus; /* reserved from the spec's resources or resource class */
        uint64_t mem_mb;
        bool first_step_seen;
        char *cancel_reason;
        bool disowned;    /* the control plane requeued its claim: not reported, events dropped */
        bool events_lost; /* the control plane asked for events it had acknowledged: dropped */
};
int jobs_start(struct agent *a, json_t *spec, struct drv_error *err);
/* A claimed job that could not be started: report it as an infrastructure failure. */
void jobs_start_failed(struct agent *a, json_t *spec, const char *reason);
/* CPUs and memory a job spec asks for (executor.resources, else its resource class; 0 = unknown).
 */
void jobs_resources(json_t *spec, double *cpus, uint64_t *mem_mb);
void jobs_on_events(struct agent *a, struct job *j);
void jobs_reap(struct agent *a);
void jobs_cancel(struct agent *a, struct job *j, const char *reason, bool infra);
struct job *jobs_find(struct agent *a, const char *id);
void jobs_tick(struct agent *a); /* kill escalation, event delivery, removal of finished jobs */
size_t jobs_running(struct agent *a);
void jobs_free_all(struct agent *a);

/* ---- metrics.c ---- */
struct agent_metrics {
        uint64_t finished[5]; /* success, failed, canceled, infrastructure_fail, other */
        uint64_t claims, claim_empty, claim_errors;
        double claim_latency_sum;
        uint64_t heartbeats, heartbeat_failures;
        uint64_t steps;
        double step_seconds_sum;
        double claim_to_first_step_sum;
        uint64_t claim_to_first_step_n;
        uint64_t events_sent, events_buffered_max;
        uint64_t output_bytes, cache_hits, cache_misses, upload_bytes;
        uint64_t events_spooled;
        double sandbox_start_sum;
        uint64_t sandbox_starts;
};
int metrics_listen(struct agent *a, struct drv_error *err);
/* SIGHUP: close and reopen the metrics listener and the StatsD socket from the (new) config. */
void metrics_reopen(struct agent *a);
/* Connections to the metrics port at once (a new one closes the oldest), and how long one may
 * stay; at EMFILE accepting pauses (the listener leaves the epoll set) until the next tick. */
#define METRICS_MAX_CONNS 16
#define METRICS_CONN_NS   (5 * 1000000000ull)
void metrics_on_accept(struct agent *a);
/* From the tick: close connections older than METRICS_CONN_NS, resume a paused accept. */
void metrics_tick(struct agent *a);
void metrics_on_conn(struct agent *a, struct watch *w);
void metrics_note_event(struct agent *a, struct job *j, json_t *ev);
void metrics_statsd_flush(struct agent *a);
void sd_notifyf(const char *fmt, ...) DRV_PRINTF(1, 2);

/* ---- docker_hosts.c ---- */
struct js_docker_host;
/* The node name: config `name`, else the host name. Labels this node's Docker objects. */
const char *agent_node_name(struct agent *a);
void agent_docker_load(struct agent *a); /* read the PEM files of docker_hosts */
void agent_docker_free(struct agent *a);
void agent_docker_cleanup(struct agent *a); /* remove this node's leftovers on every engine */
/* A claimed job that needs an engine and names none gets one of the agent's (round robin):
 * 1 filled in, 0 nothing to do, -ENOMEM. */
int agent_docker_fill_spec(struct agent *a, json_t *spec);

/* ---- agent.c ---- */
struct agent {
        struct agent_config cfg;
        int argc;
        char **argv;
        int epfd;
        struct watch sigw, tickw, http_timer;
        void *http; /* the transport (CURLM * or the lean client) */
        int server; /* current server index */
        char *node_id;
        unsigned reg_gen;  /* bumped by every successful registration */
        bool hb_since_reg; /* a heartbeat of this registration was answered 200: the control
                              plane re-keyed our jobs, their events may go */
        char *token;
        uint64_t hb_interval_ms;
        uint64_t next_hb_ns, next_claim_ns, next_register_ns;
        unsigned fail_streak;
        struct http_req *reg_req, *hb_req, *claim_req, *dereg_req;
        struct job *jobs;
        size_t capacity;
        double cpus_total;
        uint64_t mem_total_mb;
        bool draining, stopping, registered, deregistered, done, ready_sent;
        uint64_t drain_deadline_ns, idle_since_ns, last_hb_ok_ns, start_ns;
        unsigned jobs_finished_total;
        size_t last_status_running;
        bool fatal;
        int exit_code;
        struct watch metricsw;
        struct watch *metrics_conns[METRICS_MAX_CONNS]; /* open connections, NULL: free */
        uint64_t metrics_conn_ns[METRICS_MAX_CONNS];    /* when each was accepted */
        bool metrics_paused;                            /* the listener is out of the epoll set */
        uint64_t metrics_pauses;
        struct agent_metrics m;
        int statsd_fd;
        uint64_t next_statsd_ns, next_watchdog_ns, watchdog_usec;
        int epoll_reg_errors;
        struct watch
            *graveyard;       /* http socket watches removed during an epoll batch (->obj links) */
        uint64_t spool_bytes; /* sum of the jobs' spool files */
        uint64_t claim_abort_ns; /* draining: give up the outstanding long poll at this time */
        char **release;          /* claimed jobs to give back (POST /v1/jobs/ID/release) */
        struct http_req *rel_req;
        uint64_t next_release_ns;
        struct js_docker_host *docker; /* docker_hosts with their PEM text */
        size_t n_docker, docker_next;
};
/* A request to servers[server] failed (connection error or 5xx): back off, and move on to the
 * next server unless another failed request already did. */
void agent_server_failed(struct agent *a, const struct http_req *r, const char *what,
                         const char *detail);
void agent_server_ok(struct agent *a);
/* A 401/404 unknown_node answer to r: register again, unless r was sent under an earlier
 * registration (then it is only retried under the current node id). */
void agent_node_unknown(struct agent *a, struct http_req *r, const char *what);
uint64_t agent_backoff_ns(struct agent *a);
/* 250 ms doubling per failure in a row (streak), capped at 30 s, with 50..150 % jitter */
uint64_t agent_backoff_for(unsigned streak);
char *agent_node_body(struct agent *a, json_t *extra); /* {"node_id":..., ...extra} */
/* Percent-encode s for a URL path segment (RFC 3986 unreserved kept). Caller frees. */
char *agent_path_escape(const char *s);
/* Remove this node's Docker leftovers (DROVER_AGENT_ONESHOT=docker-cleanup child of the lean
 * drover-agent: `drover agent` with the same arguments does only that, then exits). */
#define AGENT_ONESHOT_ENV "DROVER_AGENT_ONESHOT"

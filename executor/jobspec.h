/* jobspec.h: the job spec — the one JSON document every front door produces (docs/jobspec.md). */
#pragma once

#include "lib/drv.h"

#include <jansson.h>

#define JOBSPEC_VERSION 1

enum js_runtime { JS_RUNTIME_SANDBOX, JS_RUNTIME_DOCKER };
enum js_kind { JS_KIND_MACHINE, JS_KIND_DOCKER };
enum js_network { JS_NET_NONE, JS_NET_PRIVATE };
enum js_when { JS_WHEN_ON_SUCCESS, JS_WHEN_ON_FAIL, JS_WHEN_ALWAYS };

enum js_step_type {
        JS_STEP_RUN,
        JS_STEP_CHECKOUT,
        JS_STEP_SAVE_CACHE,
        JS_STEP_RESTORE_CACHE,
        JS_STEP_PERSIST_TO_WORKSPACE,
        JS_STEP_ATTACH_WORKSPACE,
        JS_STEP_STORE_ARTIFACTS,
        JS_STEP_STORE_TEST_RESULTS,
        JS_STEP_ADD_SSH_KEYS,
        JS_STEP_SETUP_REMOTE_DOCKER,
};

/* One environment variable; secret ones are masked in output. */
struct js_env {
        char *name;
        char *value;
        bool secret;
};

struct js_auth {
        char *username; /* NULL when the image has no auth */
        char *password;
};

/* One image of a docker executor: [0] is the primary, the rest are service containers. */
struct js_image {
        char *image;
        char *name;        /* service hostname alias, may be NULL */
        char **entrypoint; /* NULL-terminated or NULL */
        char **command;    /* NULL-terminated or NULL */
        char *user;        /* may be NULL */
        struct js_env *env;
        size_t n_env;
        struct js_auth auth;
        /* service images: limits of their own sandbox; 0 = the executor's (jobspec.md) */
        double cpus;
        uint64_t memory_mb;
        uint64_t pids;
};

/* TLS client material for a remote Docker engine (PEM text, never paths). */
struct js_docker_host {
        char *url; /* tcp://HOST:2376 */
        char *ca_pem;
        char *cert_pem;
        char *key_pem;
};

struct js_executor {
        enum js_runtime runtime;
        enum js_kind kind;
        struct js_image *images;
        size_t n_images;
        char *resource_class;
        double cpus;        /* 0 = unlimited */
        uint64_t memory_mb; /* 0 = unlimited */
        uint64_t pids;      /* 0 = default */
        uint64_t disk_mb;   /* 0 = default */
        enum js_network network;
        struct js_docker_host docker_host; /* url NULL when not given */
};

struct js_step {
        enum js_step_type type;
        char *name;        /* always set after parsing: default derived from type/command */
        enum js_when when; /* default on_success */
        /* run */
        char *command;
        char *shell;        /* NULL = job shell */
        struct js_env *env; /* step environment */
        size_t n_env;
        char *working_directory; /* NULL = job working directory */
        bool background;
        uint64_t no_output_timeout; /* seconds; 0 = job default */
        /* checkout: path; store_artifacts: path + destination; store_test_results: path;
         * attach_workspace: at; persist_to_workspace: root + paths */
        char *path;
        char *destination;
        char *root;
        char *at;
        char **paths;        /* save_cache, persist_to_workspace; NULL-terminated */
        char *key;           /* save_cache */
        char **keys;         /* restore_cache (key alone is folded into keys); NULL-terminated */
        char **fingerprints; /* add_ssh_keys; NULL-terminated, may be empty */
        bool docker_layer_caching; /* setup_remote_docker */
};

struct js_ssh_key {
        char *fingerprint;
        char *private_key; /* PEM / OpenSSH text */
        char *hostname;    /* ssh_keys: the host the key is for (NULL = every host) */
};

struct js_vcs {
        char *url; /* may be NULL: no checkout possible */
        char *revision;
        char *branch;
        char *tag;
        char *pr_number;
        struct js_ssh_key checkout_key; /* private_key NULL when none */
        char *known_hosts;              /* extra known_hosts lines, may be NULL */
        uint64_t depth;                 /* shallow fetch of this many commits; 0 = full history */
        char *filter;                   /* partial clone filter ("blob:none"), may be NULL */
        bool pr_merge;                  /* pr_ref "merge": refs/pull/N/merge (default head) */
};

struct js_layer {
        char *job; /* upstream job name */
        char *key; /* object key of the layer archive */
};

struct js_storage {
        char *url;      /* s3://BUCKET[/PREFIX] or file:///DIR */
        char *endpoint; /* https://host:port for s3 */
        char *region;
        char *access_key;
        char *secret_key;    /* secret */
        char *session_token; /* secret */
        bool path_style;
        char *ca_pem;
        bool allow_unsafe_content_types;
        uint64_t max_file_mb; /* cap of one stored file, MiB (0: the default, 2048) */
        uint64_t max_step_mb; /* cap of one storage step's files, MiB (0: the default, 8192) */
};

struct js_output {
        char *url;    /* "terminal" or http(s)://host:8585 */
        char *token;  /* secret */
        char *ca_pem; /* PEM CA bundle for an https:// processor; NULL = the system's */
};

struct js_ssh {
        bool enabled;
        char **authorized_keys; /* NULL-terminated */
        uint64_t idle_timeout;  /* seconds, default 600 */
        uint64_t max_duration;  /* seconds, default 7200 */
        uint64_t port_min;      /* 0 = the agent's range (DROVER_SSH_PORTS, default 64535) */
        uint64_t port_max;      /* 0 = the agent's range (default 65535) */
};

/* id.attempt: 1..JOBSPEC_ATTEMPT_MAX bytes of these (the agent checks a claim's attempt the same
 * way before it reaches the spec) */
#define JOBSPEC_ATTEMPT_CHARS "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-"
#define JOBSPEC_ATTEMPT_MAX   64
static inline bool jobspec_attempt_valid(const char *s)
{
        size_t n = s ? strlen(s) : 0;
        return n && n <= JOBSPEC_ATTEMPT_MAX && strspn(s, JOBSPEC_ATTEMPT_CHARS) == n;
}

struct jobspec {
        int version;
        /* ids */
        char *job_id;
        char *attempt; /* id.attempt: the control plane's claim of this run; NULL = none */
        char *job_name;
        uint64_t build_num;
        char *workflow_id;
        char *workflow_name;
        char *project; /* e.g. gh/org/repo */
        unsigned node_index;
        unsigned node_total;
        char *pipeline_id;

        struct js_vcs vcs;
        struct js_executor executor;
        struct js_env *env;
        size_t n_env;
        char *shell; /* NULL = default (/bin/bash -eo pipefail, else /bin/sh -eo pipefail) */
        char *working_directory; /* default "~/project" */
        struct js_step *steps;
        size_t n_steps;
        struct js_layer *layers;
        size_t n_layers;
        struct js_storage storage;
        struct js_output output;
        struct js_ssh ssh;
        struct js_ssh_key *ssh_keys; /* for add_ssh_keys */
        size_t n_ssh_keys;
        uint64_t job_timeout;       /* seconds, default 18000 (5h) */
        uint64_t no_output_timeout; /* seconds, default 600 */
};

/* The limits of service image i (>= 1): its own `resources` where given, else the executor's. */
static inline void jobspec_service_limits(const struct js_executor *e, size_t i, double *cpus,
                                          uint64_t *memory_mb, uint64_t *pids)
{
        const struct js_image *im = &e->images[i];
        *cpus = im->cpus > 0 ? im->cpus : e->cpus;
        *memory_mb = im->memory_mb ? im->memory_mb : e->memory_mb;
        *pids = im->pids ? im->pids : e->pids;
}

/* Parse and fully validate a job spec from JSON text. On error, err names the JSON path of the bad
 * field ("$.steps[2].run.command: expected a string"). Returns 0 and a new spec (caller frees). */
/* Limits of a spec: a job's output streams are its steps plus 4 (SSH and environment) and fit
 * the output spool's 4096 (SPOOL_MAX_STEPS); id.job names files. */
#define JS_MAX_STEPS  4092
#define JS_MAX_JOB_ID 128
int jobspec_parse(const char *text, size_t len, struct jobspec **out, struct drv_error *err);
/* Same from an already-decoded JSON value (not consumed). */
int jobspec_from_json(json_t *root, struct jobspec **out, struct drv_error *err);
/* Encode a spec back to JSON (new reference), round-trips through jobspec_from_json. */
json_t *jobspec_to_json(const struct jobspec *spec);
/* Name of a step type as in the config ("run", "save_cache", ...). */
const char *jobspec_step_type_name(enum js_step_type t);
const char *jobspec_when_name(enum js_when w);
/* The step type named NAME ("run", "checkout", ...); -1 when NAME is not a built-in step. */
int jobspec_step_type_from_name(const char *name);
void jobspec_free(struct jobspec *spec);
static inline void jobspec_freep(struct jobspec **p)
{
        if (*p)
                jobspec_free(*p);
}

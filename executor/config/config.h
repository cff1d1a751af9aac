/* config.h: the CircleCI config compiler — .circleci/config.yml (2 / 2.1) -> job specs. */
#pragma once

#include "lib/drv.h"

#include <jansson.h>

/* What started the pipeline (pipeline.trigger_source). A push (webhook) or API pipeline leaves
 * out workflows with `triggers:`; a scheduled one runs them (docs/config.md "Triggers"). */
enum config_trigger { CONFIG_TRIGGER_WEBHOOK, CONFIG_TRIGGER_API, CONFIG_TRIGGER_SCHEDULE };

/* Statuses a `requires` entry accepts, as bits (CircleCI's `- build: [success, failed]`). */
enum {
        CONFIG_REQ_SUCCESS = 1u << 0,
        CONFIG_REQ_FAILED = 1u << 1,
        CONFIG_REQ_CANCELED = 1u << 2,
        CONFIG_REQ_UNAUTHORIZED = 1u << 3,
        CONFIG_REQ_NOT_RUN = 1u << 4,
        CONFIG_REQ_TERMINAL = (1u << 5) - 1,
};

/* Pipeline values the compiler needs (what the control plane would know about a pipeline). */
struct config_opts {
        const char *branch;      /* for workflow filters and CIRCLE_BRANCH; may be NULL */
        const char *tag;         /* for tag filters; may be NULL */
        const char *revision;    /* sha; may be NULL */
        const char *project;     /* e.g. gh/org/repo; may be NULL */
        const char *repo_url;    /* vcs url; may be NULL */
        uint64_t build_num;      /* first build number to hand out */
        const char *workflow_id; /* may be NULL: generated */
        const char *const *env;  /* extra "K=V" for every job (drover run -e); NULL-terminated */
        const char *const *secret_env; /* the same, marked secret (drover run -s, --secret-env,
                                          --secret-file); NULL-terminated, may be NULL */
        json_t *pipeline_parameters;   /* object, may be NULL */
        enum config_trigger trigger;   /* default: a push (webhook) */
        const char *schedule_name;     /* pipeline.schedule.name; may be NULL */
        const char *base_revision;     /* pipeline.git.base_revision; may be NULL */
        const char *default_branch;    /* for pipeline.git.branch.is_default; NULL: "main" */
        const char *arch;              /* builder machine (uname -m); NULL: this machine */
        json_t *trigger_parameters;    /* pipeline.trigger_parameters.* (object); may be NULL */
        /* Registry orbs: directories searched first, in order (--orb-dir, DROVER_ORB_PATH, the
         * project's .circleci/orbs: see orb_search_dirs), NULL-terminated, may be NULL; then the
         * cache (NULL: orb_cache_dir(), "": none). */
        const char *const *orb_dirs;
        const char *orb_cache;
        /* Called once for a registry orb found nowhere (drover run --pull-orbs): fetch ref into
         * the cache; it is looked up again after. NULL: offline (an error names what to do). */
        int (*orb_fetch)(void *arg, const char *ref, struct drv_error *err);
        void *orb_fetch_arg;
};

/* One job as it runs in a workflow (after matrix expansion and parameter binding). */
struct config_job {
        char *name;      /* unique within its workflow (CircleCI's name / matrix name) */
        char *job;       /* the `jobs:` entry it comes from */
        char **requires; /* names of upstream jobs of the same workflow; NULL-terminated */
        unsigned *requires_status; /* per requires entry: CONFIG_REQ_* bits it accepts (NULL:
                                      all CONFIG_REQ_SUCCESS) */
        char *serial_group;        /* workflow job's `serial-group`; may be NULL */
        char *unrunnable;          /* why this builder cannot run it (macOS, Windows, GPU, ...);
                                      then spec is NULL and the job is reported as not run */
        unsigned parallelism;      /* >= 1 */
        json_t *spec;              /* job spec (docs/jobspec.md) for node_index 0 of node_total =
                                      parallelism; valid except for storage/output, which the caller
                                      fills in. Owned by the config. */
};

struct config_workflow {
        char *name;
        struct config_job *jobs; /* in a valid topological order of requires */
        size_t n_jobs;
};

struct config {
        char *path;
        struct config_workflow *workflows; /* jobs filtered out by branch/tag filters are omitted */
        size_t n_workflows;
        struct config_job *jobs; /* every `jobs:` entry compiled standalone (for `drover run JOB`);
                                    a job whose required parameters have no default is absent */
        size_t n_jobs;
        char **warnings; /* "FILE:LINE:COL: message": accepted but unused keys, unrunnable jobs
                            (each once); NULL-terminated, may be NULL */
        char **skipped_workflows;   /* workflows whose when/unless is false for these pipeline
                                       values, or whose triggers: do not select this pipeline;
                                       NULL-terminated, may be NULL */
        char **scheduled_workflows; /* of those, the ones left out by their triggers: (they run
                                       in scheduled pipelines only); may be NULL */
        bool setup; /* `setup: true`: a setup config, whose workflow may continue the pipeline
                       with another config (docs/config.md "Dynamic config") */
};

/* The accepted statuses of requires entry k of j (CONFIG_REQ_*). */
unsigned config_job_requires_status(const struct config_job *j, size_t k);
/* The CONFIG_REQ_* bit of a finished job's status (success, failed, canceled, not_run, ...). */
unsigned config_req_bit(const char *job_status);
/* pipeline.trigger_source of a trigger: webhook, api, scheduled_pipeline. */
const char *config_trigger_source(enum config_trigger t);
/* Parse "webhook"/"push", "api", "schedule"; -EINVAL otherwise. */
int config_trigger_parse(const char *s, enum config_trigger *out);

/* Load, resolve and compile a config file. On error, err has "FILE:LINE:COL: message" of the
 * first problem. Returns 0 and a new config (free with config_free). */
int config_load(const char *path, const struct config_opts *opts, struct config **out,
                struct drv_error *err);
/* Same from text (name is used in messages). */
int config_load_text(const char *name, const char *text, size_t len, const struct config_opts *opts,
                     struct config **out, struct drv_error *err);
/* Validate and collect EVERY error, each "FILE:LINE:COL: message". Returns the number of errors
 * (0 = valid) or -errno; *errors is a NULL-terminated vector the caller frees. */
int config_validate(const char *path, const struct config_opts *opts, char ***errors,
                    struct drv_error *err);
/* Look up a workflow or a standalone job by name; NULL when absent. */
const struct config_workflow *config_find_workflow(const struct config *c, const char *name);
const struct config_job *config_find_job(const struct config *c, const char *name);
void config_free(struct config *c);
static inline void config_freep(struct config **p)
{
        if (*p)
                config_free(*p);
}

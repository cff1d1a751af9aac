/* internal.h: shared state of the config compiler's files. */
#pragma once

#include "executor/config/config.h"
#include "executor/config/ynode.h"

#define MAX_COMMAND_DEPTH 32   /* commands calling commands */
#define MAX_ERRORS        1000 /* errors collected, then one 'too many errors' */

/* Compilation context: the document, pipeline values and every error found. */
struct cctx {
        const char *file;
        struct ynode *root;
        const struct config_opts *opts;
        char **errors;                          /* "FILE:LINE:COL: message" */
        size_t n_errors;                        /* entries in errors (<= MAX_ERRORS + 1) */
        unsigned depth;                         /* command expansion depth */
        const char *calling[MAX_COMMAND_DEPTH]; /* commands being expanded (depth of them):
                                                   recursion check */
        size_t expanded;                        /* steps compiled for the current job (bounded) */
        bool v21;                               /* version 2.1 (commands, parameters, executors) */
        char **warnings;                        /* "FILE:LINE:COL: message", each once */
        struct orb_table *orbs;                 /* orbs declared and loaded (orbs.c) */
        char *unrunnable; /* set by compile_job: why this builder cannot run the job */
        char hint[160];   /* csuggest's last answer */
};

/* Record a warning at n (may be NULL); the same line is kept once. */
void cwarn(struct cctx *c, const struct ynode *n, const char *fmt, ...) DRV_PRINTF(3, 4);

/* orbs.c: inline and registry orbs. Register the orbs the config declares (none is loaded). */
int orbs_init(struct cctx *c);
/* Count the orb of name ("orb/job") as used without loading it (a job filtered out). */
void orbs_mark_used(struct cctx *c, const char *name);
/* A warning for each declared orb nothing used. */
void orbs_finish(struct cctx *c);
void orbs_free(struct cctx *c);
/* The definition of name among kind ("commands", "executors" or "jobs"): the config's own, or
 * for "orb/name" (and "orb/nested/name") an orb's, loading the orb on first use. 0 with *out set;
 * -ENOENT when there is none (no message); -EINVAL when an orb could not be loaded (its error is
 * recorded once). */
int config_lookup(struct cctx *c, const char *kind, const char *name, const struct ynode *where,
                  const struct ynode **out);

/* Record an error at node n (may be NULL: the document); returns -EINVAL. */
int cerr(struct cctx *c, const struct ynode *n, const char *fmt, ...) DRV_PRINTF(3, 4);
/* " (did you mean 'X'?)" when exactly one of cands (NULL-terminated, may be NULL) or of the keys
 * of map (may be NULL) is one edit from bad, else "" (valid until the next call; suggest.c). */
const char *csuggest(struct cctx *c, const char *bad, const char *const *cands,
                     const struct ynode *map);
/* The same among the built-in steps and the config's commands. */
const char *csuggest_step(struct cctx *c, const char *bad);
/* Order the collected errors by line and column (stable). */
void cerr_sort(struct cctx *c);

/* A bound parameter: name and value node (borrowed from the args or the declaration). */
struct cparam {
        const char *name;
        const struct ynode *value;
};

struct cparams {
        struct cparam *v;
        size_t n;
};

/* Bind args (a map or NULL) to the declared parameters (a map or NULL) of what. */
int params_bind(struct cctx *c, const struct ynode *decl, const struct ynode *args,
                const char *what, const struct ynode *where, struct cparams *out);
void params_free(struct cparams *p);
/* params_bind for the element name of kind: adds the orb-level parameters (defaults) of the orb
 * that defines it, under the element's own. */
int params_bind_element(struct cctx *c, const char *name, const struct ynode *decl,
                        const struct ynode *args, const char *what, const struct ynode *where,
                        struct cparams *out);
/* Copy n with every `<< parameters.x >>`, `<< pipeline.x >>` (and `<< matrix.x >>` when
 * matrix) substituted; a scalar that is only a reference to a steps/map parameter becomes a copy
 * of it. NULL with an error recorded on failure. */
struct ynode *params_subst(struct cctx *c, const struct ynode *n, const struct cparams *p);
/* Substitute in a string (for names); caller frees; NULL on error (recorded). */
char *params_subst_str(struct cctx *c, const struct ynode *where, const char *s,
                       const struct cparams *p);

/* The bound value of parameter name; NULL when absent. */
const struct ynode *cparams_get(const struct cparams *p, const char *name);

/* An expression value (expr.c). */
struct xval {
        enum { X_NULL, X_BOOL, X_NUM, X_STR } t;
        bool b;
        double n;
        char *s; /* owned */
};
void xval_release(struct xval *v);
void xval_from_scalar(const struct ynode *n, struct xval *out);
bool expr_truthy(const struct xval *v);
/* Text of a value (caller frees; null is ""). */
char *expr_render(const struct xval *v);
/* Evaluate a CircleCI expression (docs/config.md "Expressions"); p gives parameters.x and
 * matrix.x (may be NULL). Errors are recorded at where. */
int expr_eval(struct cctx *c, const struct ynode *where, const char *text, const struct cparams *p,
              struct xval *out);
/* text names a pipeline value, parameter or matrix value (so it is an expression). */
bool expr_mentions_vars(const char *text);
/* A `when:`/`unless:`/`filters:` string that is an expression (it starts with a variable,
 * `not`, `(` or a string literal and names a variable), not a literal. */
bool expr_is_condition(const char *text);
/* Typed value of pipeline.<key>; -ENOENT when there is no such value. */
int pipeline_lookup(struct cctx *c, const char *key, struct xval *out);

/* Compile a steps sequence into a JSON array of job spec steps (appended to out). */
int steps_compile(struct cctx *c, const struct ynode *steps, json_t *out);
/* Evaluate a `when`/`unless` condition. */
int condition_eval(struct cctx *c, const struct ynode *cond, bool *out);

/* Scalar text of n or an error naming what was expected. */
const char *cscalar(struct cctx *c, const struct ynode *n, const char *what);

/* environment: a map, or a list of "K=V" strings or one-pair maps -> job spec env array. */
json_t *config_env(struct cctx *c, const struct ynode *env);
/* Bind a job's parameters (args may be NULL), substitute, merge its executor and compile it into
 * a job spec named name. NULL with errors recorded, or NULL with c->unrunnable set (the caller
 * takes it) when this builder cannot run the job. */
json_t *compile_job(struct cctx *c, const char *jobname, const char *name, const struct ynode *args,
                    const struct ynode *where, const char *wf, unsigned *parallelism);
/* The `type:` of a `jobs:` entry: build (default), no-op, approval or release (an unknown type
 * is an error recorded, and build). */
const char *job_kind(struct cctx *c, const char *jobname);
/* requires: names, or one-pair maps NAME: STATUS / NAME: [STATUS...] -> names and their
 * CONFIG_REQ_* bits (index-aligned; both new). -ENOMEM only: bad entries are errors recorded. */
int requires_parse(struct cctx *c, const struct ynode *req, char ***names, unsigned **status);
/* A copy of n statuses (NULL st: zeros); caller frees. */
unsigned *requires_status_dup(const unsigned *st, size_t n);
/* serial-group value (pipeline values substituted, charset and length checked); NULL when
 * absent or bad (error recorded). Caller frees. */
char *serial_group_parse(struct cctx *c, const struct ynode *v);
/* Top-level keys a config may have. */
bool config_top_key_ok(const char *key);

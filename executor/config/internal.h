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
};

/* Record an error at node n (may be NULL: the document); returns -EINVAL. */
int cerr(struct cctx *c, const struct ynode *n, const char *fmt, ...) DRV_PRINTF(3, 4);

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
/* Copy n with every `<< parameters.x >>`, `<< pipeline.x >>` (and `<< matrix.x >>` when
 * matrix) substituted; a scalar that is only a reference to a steps/map parameter becomes a copy
 * of it. NULL with an error recorded on failure. */
struct ynode *params_subst(struct cctx *c, const struct ynode *n, const struct cparams *p);
/* Substitute in a string (for names); caller frees; NULL on error (recorded). */
char *params_subst_str(struct cctx *c, const struct ynode *where, const char *s,
                       const struct cparams *p);

/* Compile a steps sequence into a JSON array of job spec steps (appended to out). */
int steps_compile(struct cctx *c, const struct ynode *steps, json_t *out);
/* Evaluate a `when`/`unless` condition. */
int condition_eval(struct cctx *c, const struct ynode *cond, bool *out);

/* Scalar text of n or an error naming what was expected. */
const char *cscalar(struct cctx *c, const struct ynode *n, const char *what);

/* environment: a map, or a list of "K=V" strings or one-pair maps -> job spec env array. */
json_t *config_env(struct cctx *c, const struct ynode *env);
/* Bind a job's parameters (args may be NULL), substitute, merge its executor and compile it into
 * a job spec named name. NULL with errors recorded. */
json_t *compile_job(struct cctx *c, const char *jobname, const char *name, const struct ynode *args,
                    const struct ynode *where, const char *wf, unsigned *parallelism);
/* Top-level keys a config may have. */
bool config_top_key_ok(const char *key);

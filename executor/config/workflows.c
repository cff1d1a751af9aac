/* workflows.c: load a config, compile its standalone jobs and its workflows (matrix, requires,
 * approval jobs, branch/tag filters), order jobs by requires. */
#include "executor/config/internal.h"

#include <regex.h>

#define MATRIX_MAX_JOBS (1000u) /* jobs one matrix may expand to */

struct wjob {
        char *name;
        char *job;
        char *alias;
        char **requires; /* as written */
        bool approval;
        bool filtered;
        const struct ynode *where;
        struct ynode *args; /* owned */
};

static void wjob_free(struct wjob *w)
{
        free(w->name);
        free(w->job);
        free(w->alias);
        drv_strv_free(w->requires);
        ynode_free(w->args);
}

/* `only`/`ignore` value: a string or list; each a literal or /regex/. */
static bool filter_matches(struct cctx *c, const struct ynode *v, const char *s)
{
        const struct ynode *single[1] = {v};
        const struct ynode *const *items =
            v->kind == Y_SEQ ? (const struct ynode *const *)v->items : single;
        size_t n = v->kind == Y_SEQ ? v->n : 1;
        for (size_t i = 0; i < n; i++) {
                const char *p = items[i]->kind == Y_SCALAR ? items[i]->value : NULL;
                if (!p) {
                        cerr(c, items[i], "filters take strings or /regex/");
                        continue;
                }
                size_t l = strlen(p);
                if (l >= 2 && p[0] == '/' && p[l - 1] == '/') {
                        regex_t re;
                        _cleanup_free_ char *anch = drv_asprintf("^(%.*s)$", (int)l - 2, p + 1);
                        if (!anch || regcomp(&re, anch, REG_EXTENDED | REG_NOSUB) != 0) {
                                cerr(c, items[i], "invalid filter regex %s", p);
                                continue;
                        }
                        bool m = regexec(&re, s, 0, NULL, 0) == 0;
                        regfree(&re);
                        if (m)
                                return true;
                } else if (strcmp(p, s) == 0) {
                        return true;
                }
        }
        return false;
}

static bool key_in(const char *k, const char *const *set)
{
        for (size_t i = 0; set[i]; i++)
                if (strcmp(k, set[i]) == 0)
                        return true;
        return false;
}

static bool passes_filters(struct cctx *c, const struct ynode *filters)
{
        const struct config_opts *o = c->opts;
        static const char *const fkeys[] = {"branches", "tags", NULL}, *const okeys[] = {
                                                                           "only", "ignore", NULL};
        if (filters && !ynode_is_null(filters) && filters->kind != Y_MAP)
                cerr(c, filters, "filters must be a map of branches and tags");
        for (size_t i = 0; i < ynode_pairs(filters); i++) {
                const struct ynode *k = filters->items[2 * i], *v = filters->items[2 * i + 1];
                if (!key_in(k->value, fkeys)) {
                        cerr(c, k, "unknown key '%s' in filters (branches or tags)", k->value);
                        continue;
                }
                if (!ynode_is_null(v) && v->kind != Y_MAP)
                        cerr(c, v, "filters.%s must be a map of only and ignore", k->value);
                for (size_t j = 0; j < ynode_pairs(v); j++)
                        if (!key_in(v->items[2 * j]->value, okeys))
                                cerr(c, v->items[2 * j],
                                     "unknown key '%s' in filters.%s (only or ignore)",
                                     v->items[2 * j]->value, k->value);
        }
        const struct ynode *tags = ynode_get(filters, "tags");
        const struct ynode *br = ynode_get(filters, "branches");
        if (o->tag) {
                const struct ynode *only = ynode_get(tags, "only"),
                                   *ign = ynode_get(tags, "ignore");
                if (!only)
                        return false; /* CircleCI runs no job for a tag without a tags filter */
                return filter_matches(c, only, o->tag) && !(ign && filter_matches(c, ign, o->tag));
        }
        if (!o->branch)
                return true;
        const struct ynode *only = ynode_get(br, "only"), *ign = ynode_get(br, "ignore");
        if (only && !filter_matches(c, only, o->branch))
                return false;
        return !(ign && filter_matches(c, ign, o->branch));
}

/* args without the workflow-only keys, plus extra (param, value) pairs; new node. */
static struct ynode *job_args(const struct ynode *args, const struct ynode *const *extra, size_t nx)
{
        struct ynode *m = ynode_new(Y_MAP, args ? args->line : 0, args ? args->col : 0);
        for (size_t i = 0; m && args && i + 1 < args->n; i += 2) {
                const char *k = args->items[i]->value;
                if (strcmp(k, "matrix") == 0)
                        continue;
                struct ynode *kc = ynode_copy(args->items[i]), *vc = ynode_copy(args->items[i + 1]);
                if (!kc || !vc || ynode_append(m, kc) < 0 || ynode_append(m, vc) < 0) {
                        ynode_free(kc);
                        ynode_free(vc);
                        ynode_free(m);
                        return NULL;
                }
        }
        for (size_t i = 0; m && i < nx; i++) {
                struct ynode *c = ynode_copy(extra[i]);
                if (!c || ynode_append(m, c) < 0) {
                        ynode_free(c);
                        ynode_free(m);
                        return NULL;
                }
        }
        return m;
}

static int push_wjob(struct wjob **v, size_t *n, struct wjob *w)
{
        struct wjob *nv = realloc(*v, (*n + 1) * sizeof(*nv));
        if (!nv)
                return -ENOMEM;
        *v = nv;
        (*v)[(*n)++] = *w;
        return 0;
}

static bool excluded(const struct ynode *exclude, const struct ynode *const *pairs, size_t np)
{
        for (size_t e = 0; exclude && exclude->kind == Y_SEQ && e < exclude->n; e++) {
                const struct ynode *ex = exclude->items[e];
                bool all = ynode_pairs(ex) > 0;
                for (size_t i = 0; all && i < ynode_pairs(ex); i++) {
                        bool found = false;
                        for (size_t j = 0; j + 1 < np; j += 2)
                                if (strcmp(pairs[j]->value, ex->items[2 * i]->value) == 0 &&
                                    pairs[j + 1]->kind == Y_SCALAR &&
                                    ex->items[2 * i + 1]->kind == Y_SCALAR &&
                                    strcmp(pairs[j + 1]->value, ex->items[2 * i + 1]->value) == 0)
                                        found = true;
                        all = found;
                }
                if (all)
                        return true;
        }
        return false;
}

/* requires of one matrix job: `<< matrix.x >>` in them is substituted (CircleCI does). */
static char **matrix_requires(struct cctx *c, const struct ynode *req, char **requires,
                              const struct cparams *mp)
{
        char **out = calloc(1, sizeof(char *));
        for (size_t i = 0; out && requires && requires[i]; i++) {
                char *s = strstr(requires[i], "<<") ? params_subst_str(c, req, requires[i], mp)
                                                    : strdup(requires[i]);
                if (s)
                        drv_strv_push_take(&out, s);
        }
        return out;
}

/* Expand one workflow entry (maybe a matrix) into wjobs. */
static int expand_entry(struct cctx *c, const struct ynode *entry, struct wjob **v, size_t *n)
{
        const char *jobname;
        const struct ynode *args = NULL;
        if (entry->kind == Y_SCALAR) {
                jobname = entry->value;
        } else if (entry->kind == Y_MAP && ynode_pairs(entry) == 1) {
                jobname = entry->items[0]->value;
                args = ynode_is_null(entry->items[1]) ? NULL : entry->items[1];
                if (args && args->kind != Y_MAP)
                        return cerr(c, args, "options of workflow job '%s' must be a map", jobname);
        } else {
                return cerr(c, entry, "a workflow job is a name or a map with one job name");
        }
        const struct ynode *type = ynode_get(args, "type");
        bool approval = type && type->kind == Y_SCALAR && strcmp(type->value, "approval") == 0;
        const struct ynode *req = ynode_get(args, "requires");
        char **requires = calloc(1, sizeof(char *));
        for (size_t i = 0; requires && req && req->kind == Y_SEQ && i < req->n; i++)
                if (req->items[i]->kind == Y_SCALAR)
                        drv_strv_push(&requires, req->items[i]->value);
        if (req && req->kind != Y_SEQ)
                cerr(c, req, "requires must be a list of job names");
        bool filtered = !passes_filters(c, ynode_get(args, "filters"));
        const struct ynode *nm = ynode_get(args, "name");
        const struct ynode *matrix = ynode_get(args, "matrix");
        if (!matrix) {
                struct wjob w = {.name = strdup(nm && nm->kind == Y_SCALAR ? nm->value : jobname),
                                 .job = strdup(jobname),
                                 .requires = requires,
                                 .approval = approval,
                                 .filtered = filtered,
                                 .where = entry,
                                 .args = job_args(args, NULL, 0)};
                return push_wjob(v, n, &w);
        }
        const struct ynode *mp = ynode_get(matrix, "parameters");
        const struct ynode *al = ynode_get(matrix, "alias");
        size_t np = ynode_pairs(mp);
        if (np == 0) {
                drv_strv_free(requires);
                return cerr(c, matrix, "matrix needs parameters");
        }
        size_t *idx = calloc(np, sizeof(size_t));
        const struct ynode **pairs = calloc(2 * np, sizeof(*pairs));
        int r = idx && pairs ? 0 : -ENOMEM;
        for (size_t i = 0; r == 0 && i < np; i++)
                if (mp->items[2 * i + 1]->kind != Y_SEQ || mp->items[2 * i + 1]->n == 0)
                        r = cerr(c, mp->items[2 * i + 1],
                                 "matrix parameter %s needs a list of values",
                                 mp->items[2 * i]->value);
        size_t combos = 1;
        for (size_t i = 0; r == 0 && i < np; i++) {
                combos *= mp->items[2 * i + 1]->n;
                if (combos > MATRIX_MAX_JOBS)
                        r = cerr(c, matrix, "matrix of job '%s' expands to more than %u jobs",
                                 jobname, MATRIX_MAX_JOBS);
        }
        while (r == 0) {
                struct strbuf name = STRBUF_INIT;
                struct cparams mparams = {calloc(np, sizeof(struct cparam)), np};
                strbuf_puts(&name, jobname);
                for (size_t i = 0; i < np; i++) {
                        pairs[2 * i] = mp->items[2 * i];
                        pairs[2 * i + 1] = mp->items[2 * i + 1]->items[idx[i]];
                        if (mparams.v)
                                mparams.v[i] =
                                    (struct cparam){mp->items[2 * i]->value, pairs[2 * i + 1]};
                        strbuf_printf(&name, "-%s",
                                      pairs[2 * i + 1]->kind == Y_SCALAR ? pairs[2 * i + 1]->value
                                                                         : "x");
                }
                if (!excluded(ynode_get(matrix, "exclude"), pairs, 2 * np)) {
                        char *display = nm && nm->kind == Y_SCALAR
                                            ? params_subst_str(c, nm, nm->value, &mparams)
                                            : strbuf_detach(&name);
                        struct wjob w = {
                            .name = display,
                            .job = strdup(jobname),
                            .alias = strdup(al && al->kind == Y_SCALAR ? al->value : jobname),
                            .requires = matrix_requires(c, req, requires, &mparams),
                            .approval = approval,
                            .filtered = filtered,
                            .where = entry,
                            .args = job_args(args, pairs, 2 * np)};
                        if (!w.name || push_wjob(v, n, &w) < 0)
                                r = -ENOMEM;
                }
                strbuf_release(&name);
                free(mparams.v);
                /* next combination */
                size_t k = np;
                while (k-- > 0) {
                        if (++idx[k] < mp->items[2 * k + 1]->n)
                                break;
                        idx[k] = 0;
                }
                if (k == (size_t)-1)
                        break;
        }
        free(idx);
        free(pairs);
        drv_strv_free(requires);
        return r;
}

static ssize_t find_w(struct wjob *v, size_t n, const char *name)
{
        for (size_t i = 0; i < n; i++)
                if (strcmp(v[i].name, name) == 0)
                        return (ssize_t)i;
        return -1;
}

/* The requires of job i, with approval jobs (approved at once here) replaced by what they
 * require, so the order between the jobs around an approval is kept. */
static void push_requires(struct wjob *w, size_t n, char ***deps, size_t i, char ***out,
                          unsigned depth)
{
        for (size_t k = 0; deps[i][k] && depth <= n; k++) {
                ssize_t d = find_w(w, n, deps[i][k]);
                if (d < 0)
                        continue;
                if (w[d].approval) {
                        push_requires(w, n, deps, (size_t)d, out, depth + 1);
                        continue;
                }
                bool have = false;
                for (size_t q = 0; *out && (*out)[q]; q++)
                        have = have || strcmp((*out)[q], deps[i][k]) == 0;
                if (!have)
                        drv_strv_push(out, deps[i][k]);
        }
}

static int compile_workflow(struct cctx *c, const char *wfname, const struct ynode *wf,
                            struct config *cfg)
{
        static const char *const wkeys[] = {"jobs", "when", "unless", "triggers", NULL};
        for (size_t i = 0; i < ynode_pairs(wf); i++)
                if (!key_in(wf->items[2 * i]->value, wkeys))
                        cerr(c, wf->items[2 * i], "unknown key '%s' in workflow '%s'",
                             wf->items[2 * i]->value, wfname);
        const struct ynode *jobs = ynode_get(wf, "jobs");
        if (!jobs || jobs->kind != Y_SEQ)
                return cerr(c, wf, "workflow '%s' needs a list of jobs", wfname);
        /* when/unless see pipeline values (`<< pipeline.parameters.x >>`) */
        static const struct cparams none = {0};
        const struct ynode *w0 = ynode_get(wf, "when"), *u0 = ynode_get(wf, "unless");
        _cleanup_(ynode_freep) struct ynode *when = w0 ? params_subst(c, w0, &none) : NULL;
        _cleanup_(ynode_freep) struct ynode *unless = u0 ? params_subst(c, u0, &none) : NULL;
        if ((w0 && !when) || (u0 && !unless))
                return -EINVAL;
        bool run = true, skip = false;
        if (when && condition_eval(c, when, &run) < 0)
                return -EINVAL;
        if (unless && condition_eval(c, unless, &skip) < 0)
                return -EINVAL;
        run = run && !skip;
        if (!run)
                return 0;
        struct wjob *w = NULL;
        size_t n = 0;
        int r = 0;
        for (size_t i = 0; i < jobs->n; i++)
                if (expand_entry(c, jobs->items[i], &w, &n) < 0)
                        r = -EINVAL;
        /* resolve requires: names, aliases; duplicates; unknown names */
        char ***deps = calloc(n + 1, sizeof(char **));
        for (size_t i = 0; deps && i < n; i++) {
                if (find_w(w, i, w[i].name) >= 0)
                        r = cerr(c, w[i].where, "workflow '%s' has two jobs named '%s'", wfname,
                                 w[i].name);
                deps[i] = calloc(1, sizeof(char *));
                for (size_t k = 0; w[i].requires && w[i].requires[k]; k++) {
                        const char *q = w[i].requires[k];
                        bool found = false;
                        for (size_t j = 0; j < n; j++)
                                if (strcmp(w[j].name, q) == 0 ||
                                    (w[j].alias && strcmp(w[j].alias, q) == 0)) {
                                        drv_strv_push(&deps[i], w[j].name);
                                        found = true;
                                }
                        if (!found)
                                r = cerr(c, w[i].where,
                                         "job '%s' requires '%s', which is not in workflow '%s'",
                                         w[i].name, q, wfname);
                }
        }
        if (!deps)
                r = -ENOMEM;
        /* with a broken graph, still compile every job once to report its own errors */
        for (size_t i = 0; r == -EINVAL && i < n; i++)
                if (!w[i].filtered && !w[i].approval) {
                        unsigned par = 1;
                        json_decref(compile_job(c, w[i].job, w[i].name, w[i].args, w[i].where,
                                                wfname, &par));
                }
        /* a job whose upstream is filtered out is left out too */
        for (bool changed = true; r == 0 && changed;) {
                changed = false;
                for (size_t i = 0; i < n; i++)
                        for (size_t k = 0; !w[i].filtered && deps[i][k]; k++)
                                if (w[find_w(w, n, deps[i][k])].filtered) {
                                        w[i].filtered = true;
                                        changed = true;
                                }
        }
        /* topological order (Kahn), approvals are satisfied at once */
        struct config_workflow *cw = NULL;
        if (r == 0) {
                struct config_workflow *nw =
                    realloc(cfg->workflows, (cfg->n_workflows + 1) * sizeof(*nw));
                if (!nw)
                        r = -ENOMEM;
                else {
                        cfg->workflows = nw;
                        cw = &cfg->workflows[cfg->n_workflows++];
                        memset(cw, 0, sizeof(*cw));
                        cw->name = strdup(wfname);
                        cw->jobs = calloc(n + 1, sizeof(*cw->jobs));
                }
        }
        bool *placed = calloc(n + 1, sizeof(bool)), failed = false;
        size_t n_placed = 0;
        while (r == 0 && n_placed < n) {
                bool progress = false;
                for (size_t i = 0; i < n; i++) {
                        if (placed[i])
                                continue;
                        bool ready = true;
                        for (size_t k = 0; deps[i][k]; k++)
                                ready = ready && placed[find_w(w, n, deps[i][k])];
                        if (!ready)
                                continue;
                        placed[i] = true;
                        n_placed++;
                        progress = true;
                        if (w[i].filtered || w[i].approval)
                                continue;
                        unsigned par = 1;
                        json_t *spec = compile_job(c, w[i].job, w[i].name, w[i].args, w[i].where,
                                                   wfname, &par);
                        if (!spec) {
                                failed = true; /* go on: report the other jobs' errors too */
                                continue;
                        }
                        struct config_job *j = &cw->jobs[cw->n_jobs++];
                        j->name = strdup(w[i].name);
                        j->job = strdup(w[i].job);
                        j->parallelism = par;
                        j->spec = spec;
                        j->requires = calloc(1, sizeof(char *));
                        push_requires(w, n, deps, i, &j->requires, 0);
                }
                if (!progress) {
                        r = cerr(c, wf, "workflow '%s' has a cycle in its requires", wfname);
                        break;
                }
        }
        free(placed);
        if (r == 0 && failed)
                r = -EINVAL;
        for (size_t i = 0; i < n; i++) {
                drv_strv_free(deps ? deps[i] : NULL);
                wjob_free(&w[i]);
        }
        free(deps);
        free(w);
        return r;
}

static void config_job_free(struct config_job *j)
{
        free(j->name);
        free(j->job);
        drv_strv_free(j->requires);
        json_decref(j->spec);
}

void config_free(struct config *c)
{
        if (!c)
                return;
        for (size_t i = 0; i < c->n_workflows; i++) {
                for (size_t j = 0; j < c->workflows[i].n_jobs; j++)
                        config_job_free(&c->workflows[i].jobs[j]);
                free(c->workflows[i].jobs);
                free(c->workflows[i].name);
        }
        free(c->workflows);
        for (size_t j = 0; j < c->n_jobs; j++)
                config_job_free(&c->jobs[j]);
        free(c->jobs);
        free(c->path);
        free(c);
}

static int compile_all(struct cctx *c, struct config *cfg)
{
        struct ynode *root = c->root;
        if (root->kind != Y_MAP)
                return cerr(c, root, "the config must be a map");
        for (size_t i = 0; i < ynode_pairs(root); i++)
                if (!config_top_key_ok(root->items[2 * i]->value))
                        cerr(c, root->items[2 * i], "unknown top-level key '%s'",
                             root->items[2 * i]->value);
        const struct ynode *ver = ynode_get(root, "version");
        if (!ver || ver->kind != Y_SCALAR ||
            (strcmp(ver->value, "2") && strcmp(ver->value, "2.1") && strcmp(ver->value, "2.0")))
                return cerr(c, ver ? ver : root, "version must be 2 or 2.1");
        c->v21 = strcmp(ver->value, "2.1") == 0;
        const char *pname;
        json_t *pval;
        const struct ynode *pdecl = ynode_get(root, "parameters");
        json_object_foreach (c->opts->pipeline_parameters, pname, pval) {
                const struct ynode *d = ynode_get(pdecl, pname);
                const struct ynode *t = ynode_get(d, "type");
                const char *sv = json_string_value(pval);
                if (!d)
                        cerr(c, pdecl, "pipeline parameter '%s' is not declared in parameters",
                             pname);
                else if (t && t->kind == Y_SCALAR && strcmp(t->value, "boolean") == 0 && sv &&
                         strcmp(sv, "true") && strcmp(sv, "false"))
                        cerr(c, d, "pipeline parameter '%s' must be true or false, got '%s'", pname,
                             sv);
                else if (t && t->kind == Y_SCALAR && strcmp(t->value, "integer") == 0 && sv &&
                         (!*sv || sv[strspn(sv, "-0123456789")]))
                        cerr(c, d, "pipeline parameter '%s' must be an integer, got '%s'", pname,
                             sv);
        }
        const struct ynode *orbs = ynode_get(root, "orbs");
        for (size_t i = 0; i < ynode_pairs(orbs); i++)
                cerr(c, orbs->items[2 * i + 1],
                     "orb '%s' (%s) cannot be used: orbs are fetched from the network, which "
                     "drover does not do",
                     orbs->items[2 * i]->value,
                     orbs->items[2 * i + 1]->kind == Y_SCALAR ? orbs->items[2 * i + 1]->value
                                                              : "inline");
        if (!c->v21)
                for (size_t k = 0; k < 3; k++) {
                        static const char *const v21[] = {"commands", "executors", "parameters"};
                        if (ynode_get(root, v21[k]))
                                cerr(c, ynode_get(root, v21[k]), "%s needs version 2.1", v21[k]);
                }
        const struct ynode *jobs = ynode_get(root, "jobs");
        if (!jobs || jobs->kind != Y_MAP)
                return cerr(c, root, "the config has no jobs");
        cfg->jobs = calloc(ynode_pairs(jobs) + 1, sizeof(*cfg->jobs));
        if (!cfg->jobs)
                return -ENOMEM;
        for (size_t i = 0; i < ynode_pairs(jobs); i++) {
                const char *name = jobs->items[2 * i]->value;
                const struct ynode *decl = ynode_get(jobs->items[2 * i + 1], "parameters");
                bool needs_args = false;
                for (size_t k = 0; k < ynode_pairs(decl); k++)
                        if (!ynode_get(decl->items[2 * k + 1], "default"))
                                needs_args = true;
                if (needs_args)
                        continue; /* only runnable from a workflow that passes its parameters */
                unsigned par = 1;
                json_t *spec = compile_job(c, name, name, NULL, jobs->items[2 * i], NULL, &par);
                if (!spec)
                        continue;
                struct config_job *j = &cfg->jobs[cfg->n_jobs++];
                j->name = strdup(name);
                j->job = strdup(name);
                j->requires = calloc(1, sizeof(char *));
                j->parallelism = par;
                j->spec = spec;
        }
        const struct ynode *wfs = ynode_get(root, "workflows");
        for (size_t i = 0; i < ynode_pairs(wfs); i++) {
                const char *name = wfs->items[2 * i]->value;
                if (strcmp(name, "version") == 0)
                        continue;
                compile_workflow(c, name, wfs->items[2 * i + 1], cfg);
        }
        return 0;
}

/* Compile; errors collected in *errors. */
static int compile_text(const char *name, const char *text, size_t len,
                        const struct config_opts *opts, struct config **out, char ***errors,
                        struct drv_error *err)
{
        struct config_opts empty = {0};
        struct cctx c = {.file = name, .opts = opts ? opts : &empty};
        int r = ynode_parse(name, text, len, &c.root, err);
        if (r < 0) {
                drv_strv_push(errors, err->message);
                return r;
        }
        struct config *cfg = calloc(1, sizeof(*cfg));
        if (!cfg || !(cfg->path = strdup(name))) {
                free(cfg);
                ynode_free(c.root);
                return drv_err(err, ENOMEM, "out of memory");
        }
        compile_all(&c, cfg);
        ynode_free(c.root);
        if (c.errors) {
                drv_err(err, EINVAL, "%s", c.errors[0]);
                *errors = c.errors;
                config_free(cfg);
                return -EINVAL;
        }
        *out = cfg;
        return 0;
}

int config_load_text(const char *name, const char *text, size_t len, const struct config_opts *opts,
                     struct config **out, struct drv_error *err)
{
        char **errors = NULL;
        int r = compile_text(name, text, len, opts, out, &errors, err);
        drv_strv_free(errors);
        return r;
}

int config_load(const char *path, const struct config_opts *opts, struct config **out,
                struct drv_error *err)
{
        _cleanup_free_ char *text = NULL;
        size_t len;
        int r = drv_read_file(path, &text, &len, YAML_MAX_BYTES, err);
        if (r < 0)
                return r;
        return config_load_text(path, text, len, opts, out, err);
}

int config_validate(const char *path, const struct config_opts *opts, char ***errors,
                    struct drv_error *err)
{
        _cleanup_free_ char *text = NULL;
        size_t len;
        int r = drv_read_file(path, &text, &len, YAML_MAX_BYTES, err);
        if (r < 0)
                return r;
        struct config *cfg = NULL;
        *errors = calloc(1, sizeof(char *));
        if (!*errors)
                return drv_err(err, ENOMEM, "out of memory");
        char **found = NULL;
        r = compile_text(path, text, len, opts, &cfg, &found, err);
        config_free(cfg);
        if (found) {
                drv_strv_free(*errors);
                *errors = found;
        }
        return r == 0 ? 0 : (int)drv_strv_len(*errors);
}

const struct config_workflow *config_find_workflow(const struct config *c, const char *name)
{
        for (size_t i = 0; i < c->n_workflows; i++)
                if (strcmp(c->workflows[i].name, name) == 0)
                        return &c->workflows[i];
        return NULL;
}

const struct config_job *config_find_job(const struct config *c, const char *name)
{
        for (size_t i = 0; i < c->n_jobs; i++)
                if (strcmp(c->jobs[i].name, name) == 0)
                        return &c->jobs[i];
        return NULL;
}

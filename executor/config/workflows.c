/* workflows.c: load a config, compile its standalone jobs and its workflows (matrix, requires,
 * approval jobs, branch/tag filters), order jobs by requires. */
#include "executor/config/internal.h"

#include <regex.h>

#define MATRIX_MAX_JOBS (1000u) /* jobs one matrix may expand to */

struct wjob {
        char *name;
        char *job;
        char *alias;
        char **requires;      /* as written */
        unsigned *req_status; /* CONFIG_REQ_* bits per requires entry */
        char *serial_group;
        bool approval; /* approval or no-op: satisfied at once, not run */
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
        free(w->req_status);
        free(w->serial_group);
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
        if (filters && filters->kind == Y_SCALAR && !ynode_is_null(filters)) {
                /* an expression-based job filter: `pipeline.git.branch == "main" or ...` */
                struct xval v;
                if (expr_eval(c, filters, filters->value, NULL, &v) < 0)
                        return false;
                bool pass = expr_truthy(&v);
                xval_release(&v);
                return pass;
        }
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
                if (strcmp(k, "matrix") == 0 || strcmp(k, "serial-group") == 0)
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
                char *s =
                    strstr(requires[i], "<<") ? params_subst_str(c, req, requires[i], mp) : NULL;
                drv_strv_push_take(&out, s ? s : strdup(requires[i])); /* keeps statuses aligned */
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
        const char *kind = job_kind(c, jobname);
        bool approval = (type && type->kind == Y_SCALAR && strcmp(type->value, "approval") == 0) ||
                        strcmp(kind, "no-op") == 0 || strcmp(kind, "approval") == 0;
        const struct ynode *req = ynode_get(args, "requires");
        char **requires = NULL;
        _cleanup_free_ unsigned *req_status = NULL;
        if (requires_parse(c, req, &requires, &req_status) < 0)
                return -ENOMEM;
        _cleanup_free_ char *serial = serial_group_parse(c, ynode_get(args, "serial-group"));
        bool filtered = !passes_filters(c, ynode_get(args, "filters"));
        const struct ynode *nm = ynode_get(args, "name");
        const struct ynode *matrix = ynode_get(args, "matrix");
        if (!matrix) {
                struct wjob w = {.name = strdup(nm && nm->kind == Y_SCALAR ? nm->value : jobname),
                                 .job = strdup(jobname),
                                 .requires = requires,
                                 .req_status = TAKE_PTR(req_status),
                                 .serial_group = TAKE_PTR(serial),
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
                            .req_status = requires_status_dup(req_status, drv_strv_len(requires)),
                            .serial_group = serial ? strdup(serial) : NULL,
                            .approval = approval,
                            .filtered = filtered,
                            .where = entry,
                            .args = job_args(args, pairs, 2 * np)};
                        if (!w.name || push_wjob(v, n, &w) < 0) { /* (found by fuzz_config) */
                                wjob_free(&w);
                                r = -ENOMEM;
                        }
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

/* The requires of job i, with approval and no-op jobs (satisfied at once here) replaced by
 * what they require, so the order between the jobs around them is kept. */
static void push_requires(struct wjob *w, size_t n, char ***deps, unsigned **dst, size_t i,
                          struct config_job *j, unsigned depth)
{
        for (size_t k = 0; deps[i][k] && depth <= n; k++) {
                ssize_t d = find_w(w, n, deps[i][k]);
                if (d < 0)
                        continue;
                if (w[d].approval) {
                        push_requires(w, n, deps, dst, (size_t)d, j, depth + 1);
                        continue;
                }
                size_t q = 0;
                bool have = false;
                for (; j->requires[q]; q++)
                        if (strcmp(j->requires[q], deps[i][k]) == 0) {
                                j->requires_status[q] |= dst[i][k];
                                have = true;
                        }
                unsigned *ns = have ? NULL : realloc(j->requires_status, (q + 2) * sizeof(*ns));
                if (!ns || drv_strv_push(&j->requires, deps[i][k]) < 0)
                        continue;
                ns[q] = dst[i][k];
                ns[q + 1] = 0;
                j->requires_status = ns;
        }
}

/* The same job listed more than once under one name: CircleCI names them NAME-1, NAME-2, ...
 * and `requires: [NAME]` waits for all of them. */
static void number_duplicates(struct wjob *w, size_t n)
{
        for (size_t i = 0; i < n; i++) {
                if (find_w(w + i + 1, n - i - 1, w[i].name) < 0)
                        continue;
                _cleanup_free_ char *orig = strdup(w[i].name);
                unsigned count = 0;
                for (size_t j = i; orig && j < n; j++) {
                        if (strcmp(w[j].name, orig) != 0)
                                continue;
                        char *nn = drv_asprintf("%s-%u", orig, ++count);
                        if (!nn)
                                continue;
                        free(w[j].name);
                        w[j].name = nn;
                        if (!w[j].alias)
                                w[j].alias = strdup(orig);
                }
        }
}

/* triggers: a list of `schedule: {cron, filters}`. Such a workflow runs only on its schedule:
 * left out of push and API pipelines, selected by a scheduled one whose branch its filters
 * take. Returns whether the workflow runs in this pipeline. */
static bool triggers_select(struct cctx *c, const char *wfname, const struct ynode *trig)
{
        bool scheduled = c->opts->trigger == CONFIG_TRIGGER_SCHEDULE, any = false;
        if (trig->kind != Y_SEQ || trig->n == 0) {
                cerr(c, trig, "triggers of workflow '%s' must be a list of schedule entries",
                     wfname);
                return false;
        }
        for (size_t i = 0; i < trig->n; i++) {
                const struct ynode *sch = ynode_get(trig->items[i], "schedule");
                const struct ynode *cron = ynode_get(sch, "cron");
                if (!sch || ynode_pairs(trig->items[i]) != 1 || sch->kind != Y_MAP) {
                        cerr(c, trig->items[i], "a trigger is `schedule: {cron, filters}`");
                        continue;
                }
                static const char *const skeys[] = {"cron", "filters", NULL};
                for (size_t k = 0; k < ynode_pairs(sch); k++)
                        if (!key_in(sch->items[2 * k]->value, skeys))
                                cerr(c, sch->items[2 * k], "unknown key '%s' in schedule",
                                     sch->items[2 * k]->value);
                int fields = 0;
                for (const char *q = cron && cron->kind == Y_SCALAR ? cron->value : ""; *q;) {
                        q += strspn(q, " \t");
                        if (*q)
                                fields++;
                        q += strcspn(q, " \t");
                }
                if (fields != 5)
                        cerr(c, cron ? cron : sch, "schedule needs a cron of 5 fields");
                if (scheduled && passes_filters(c, ynode_get(sch, "filters")))
                        any = true;
        }
        return any;
}

/* Workflow-level keys: when/unless (conditions or expressions) and triggers. */
/* *run: the workflow runs in this pipeline; *by_trigger: it does not because its triggers: do
 * not select this pipeline (its when/unless would let it run) */
static int workflow_runs(struct cctx *c, const char *wfname, const struct ynode *wf, bool *run,
                         bool *by_trigger)
{
        static const char *const wkeys[] = {"jobs", "when", "unless", "triggers", "max_auto_reruns",
                                            NULL};
        for (size_t i = 0; i < ynode_pairs(wf); i++)
                if (!key_in(wf->items[2 * i]->value, wkeys))
                        cerr(c, wf->items[2 * i], "unknown key '%s' in workflow '%s'%s",
                             wf->items[2 * i]->value, wfname,
                             csuggest(c, wf->items[2 * i]->value, wkeys, NULL));
        if (ynode_get(wf, "max_auto_reruns"))
                cwarn(c, ynode_get(wf, "max_auto_reruns"),
                      "max_auto_reruns is accepted and ignored: drover does not rerun "
                      "workflows by itself");
        /* when/unless see pipeline values (`<< pipeline.parameters.x >>`) */
        static const struct cparams none = {0};
        const struct ynode *w0 = ynode_get(wf, "when"), *u0 = ynode_get(wf, "unless");
        _cleanup_(ynode_freep) struct ynode *when = w0 ? params_subst(c, w0, &none) : NULL;
        _cleanup_(ynode_freep) struct ynode *unless = u0 ? params_subst(c, u0, &none) : NULL;
        if ((w0 && !when) || (u0 && !unless))
                return -EINVAL;
        bool yes = true, skip = false;
        if (when && condition_eval(c, when, &yes) < 0)
                return -EINVAL;
        if (unless && condition_eval(c, unless, &skip) < 0)
                return -EINVAL;
        const struct ynode *trig = ynode_get(wf, "triggers");
        bool sel = trig ? triggers_select(c, wfname, trig) : true;
        *run = yes && !skip && sel;
        *by_trigger = yes && !skip && !sel;
        return 0;
}

/* The node of name q in a workflow entry's requires (a name, or a map of a name to statuses);
 * the requires (or the entry) itself when not found there. */
static const struct ynode *require_node(const struct ynode *entry, const char *q)
{
        const struct ynode *args =
            entry && entry->kind == Y_MAP && ynode_pairs(entry) == 1 ? entry->items[1] : NULL;
        const struct ynode *req = ynode_get(args, "requires");
        for (size_t i = 0; req && req->kind == Y_SEQ && i < req->n; i++) {
                const struct ynode *it = req->items[i];
                if (it->kind == Y_SCALAR && strcmp(it->value, q) == 0)
                        return it;
                if (it->kind == Y_MAP && ynode_pairs(it) == 1 &&
                    strcmp(it->items[0]->value, q) == 0)
                        return it->items[0];
        }
        return req ? req : entry;
}

/* "did you mean" among the names of a workflow's jobs. */
static const char *suggest_wjob(struct cctx *c, const char *q, const struct wjob *w, size_t n)
{
        _cleanup_free_ const char **names = calloc(n + 1, sizeof(char *));
        for (size_t i = 0; names && i < n; i++)
                names[i] = w[i].name;
        return csuggest(c, q, names, NULL);
}

/* Resolve each job's requires (names, aliases) into deps (upstream names) and dst (their
 * statuses); unknown names are errors. */
static int resolve_requires(struct cctx *c, const char *wfname, struct wjob *w, size_t n,
                            char ***deps, unsigned **dst)
{
        int r = 0;
        for (size_t i = 0; i < n; i++) {
                if (find_w(w, i, w[i].name) >= 0)
                        r = cerr(c, w[i].where, "workflow '%s' has two jobs named '%s'", wfname,
                                 w[i].name);
                size_t nreq = drv_strv_len(w[i].requires), k2 = 0;
                deps[i] = calloc(1, sizeof(char *));
                dst[i] = calloc(nreq * n + 1, sizeof(unsigned));
                if (!deps[i] || !dst[i])
                        return -ENOMEM;
                for (size_t k = 0; k < nreq; k++) {
                        const char *q = w[i].requires[k];
                        bool found = false;
                        for (size_t j = 0; j < n; j++)
                                if (strcmp(w[j].name, q) == 0 ||
                                    (w[j].alias && strcmp(w[j].alias, q) == 0)) {
                                        drv_strv_push(&deps[i], w[j].name);
                                        dst[i][k2++] = w[i].req_status ? w[i].req_status[k]
                                                                       : CONFIG_REQ_SUCCESS;
                                        found = true;
                                }
                        if (!found)
                                r = cerr(c, require_node(w[i].where, q),
                                         "job '%s' requires '%s', which is not in workflow "
                                         "'%s'%s",
                                         w[i].name, q, wfname, suggest_wjob(c, q, w, n));
                }
        }
        return r;
}

/* One workflow job compiled (or listed as unrunnable). false: an error was recorded. */
static bool add_job(struct cctx *c, const char *wfname, struct wjob *w, size_t n, char ***deps,
                    unsigned **dst, size_t i, struct config_workflow *cw)
{
        unsigned par = 1;
        json_t *spec = compile_job(c, w[i].job, w[i].name, w[i].args, w[i].where, wfname, &par);
        char *why = TAKE_PTR(c->unrunnable);
        if (!spec && !why)
                return false;
        struct config_job *j = &cw->jobs[cw->n_jobs++];
        j->name = strdup(w[i].name);
        j->job = strdup(w[i].job);
        j->parallelism = par;
        j->spec = spec;
        j->unrunnable = why;
        j->serial_group = w[i].serial_group ? strdup(w[i].serial_group) : NULL;
        j->requires = calloc(1, sizeof(char *));
        j->requires_status = calloc(1, sizeof(unsigned));
        push_requires(w, n, deps, dst, i, j, 0);
        return true;
}

static int compile_workflow(struct cctx *c, const char *wfname, const struct ynode *wf,
                            struct config *cfg)
{
        bool run, by_trigger; /* its keys first: a misspelt jobs: is named with a guess */
        int wr = workflow_runs(c, wfname, wf, &run, &by_trigger);
        const struct ynode *jobs = ynode_get(wf, "jobs");
        if (!jobs || jobs->kind != Y_SEQ)
                return cerr(c, wf, "workflow '%s' needs a list of jobs", wfname);
        if (wr < 0)
                return -EINVAL;
        if (!run) /* named, for `drover run --workflow` and --list */
                return drv_strv_push(&cfg->skipped_workflows, wfname)
                           ?: (by_trigger ? drv_strv_push(&cfg->scheduled_workflows, wfname) : 0);
        struct wjob *w = NULL;
        size_t n = 0;
        int r = 0;
        for (size_t i = 0; i < jobs->n; i++)
                if (expand_entry(c, jobs->items[i], &w, &n) < 0)
                        r = -EINVAL;
        number_duplicates(w, n);
        char ***deps = calloc(n + 1, sizeof(char **));
        unsigned **dst = calloc(n + 1, sizeof(unsigned *));
        if (!deps || !dst)
                r = -ENOMEM;
        else if (resolve_requires(c, wfname, w, n, deps, dst) < 0 && r == 0)
                r = -EINVAL;
        /* with a broken graph, still compile every job once to report its own errors */
        for (size_t i = 0; r == -EINVAL && i < n; i++)
                if (!w[i].filtered && !w[i].approval) {
                        unsigned par = 1;
                        json_decref(compile_job(c, w[i].job, w[i].name, w[i].args, w[i].where,
                                                wfname, &par));
                        free(TAKE_PTR(c->unrunnable));
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
        /* topological order (Kahn), approvals and no-op jobs are satisfied at once */
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
                        if (w[i].filtered)
                                orbs_mark_used(c, w[i].job); /* not run here, but used */
                        if (!w[i].filtered && !w[i].approval &&
                            !add_job(c, wfname, w, n, deps, dst, i, cw))
                                failed = true; /* go on: report the other jobs' errors too */
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
                free(dst ? dst[i] : NULL);
                wjob_free(&w[i]);
        }
        free(deps);
        free(dst);
        free(w);
        return r;
}

static void config_job_free(struct config_job *j)
{
        free(j->name);
        free(j->job);
        free(j->requires_status);
        free(j->serial_group);
        free(j->unrunnable);
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
        drv_strv_free(c->warnings);
        drv_strv_free(c->skipped_workflows);
        drv_strv_free(c->scheduled_workflows);
        free(c->path);
        free(c);
}

static int compile_all(struct cctx *c, struct config *cfg)
{
        struct ynode *root = c->root;
        if (root->kind != Y_MAP)
                return cerr(c, root, "the config must be a map");
        /* CircleCI takes any other top-level key: real configs park YAML anchors under
         * `x-docker:`, `references:`, `job_defaults:`... */
        if (ynode_get(root, "job-groups"))
                cwarn(c, ynode_get(root, "job-groups"),
                      "job-groups are not supported by drover: a workflow that invokes a group "
                      "fails with 'unknown job'");
        const struct ynode *ver = ynode_get(root, "version");
        if (!ver || ver->kind != Y_SCALAR ||
            (strcmp(ver->value, "2") && strcmp(ver->value, "2.1") && strcmp(ver->value, "2.0")))
                return cerr(c, ver ? ver : root, "version must be 2 or 2.1");
        c->v21 = strcmp(ver->value, "2.1") == 0;
        /* dynamic config (docs/config.md "Dynamic config"): a setup config runs its setup
         * workflow, whose job may continue the pipeline with another config */
        const struct ynode *setup = ynode_get(root, "setup");
        if (setup && (setup->kind != Y_SCALAR ||
                      (strcmp(setup->value, "true") && strcmp(setup->value, "false"))))
                cerr(c, setup, "setup must be true or false");
        else if (setup && strcmp(setup->value, "true") == 0 && !c->v21)
                cerr(c, setup, "setup: true needs version 2.1");
        else if (setup)
                cfg->setup = strcmp(setup->value, "true") == 0;
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
        if (orbs_init(c) == -ENOMEM)
                return -ENOMEM;
        if (!c->v21)
                for (size_t k = 0; k < 3; k++) {
                        static const char *const v21[] = {"commands", "executors", "parameters"};
                        if (ynode_get(root, v21[k]))
                                cerr(c, ynode_get(root, v21[k]), "%s needs version 2.1", v21[k]);
                }
        const struct ynode *jobs = ynode_get(root, "jobs");
        /* a config whose workflows only run orb jobs needs no jobs of its own */
        if (jobs ? jobs->kind != Y_MAP : !ynode_get(root, "workflows"))
                return cerr(c, jobs ? jobs : root, "the config has no jobs");
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
                const char *kind = job_kind(c, name);
                if (strcmp(kind, "no-op") == 0 || strcmp(kind, "approval") == 0)
                        continue; /* nothing to run */
                unsigned par = 1;
                json_t *spec = compile_job(c, name, name, NULL, jobs->items[2 * i], NULL, &par);
                char *why = TAKE_PTR(c->unrunnable);
                if (!spec && !why)
                        continue;
                struct config_job *j = &cfg->jobs[cfg->n_jobs++];
                j->name = strdup(name);
                j->job = strdup(name);
                j->requires = calloc(1, sizeof(char *));
                j->parallelism = par;
                j->spec = spec;
                j->unrunnable = why;
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
        orbs_finish(&c);
        orbs_free(&c);
        ynode_free(c.root);
        free(c.unrunnable);
        cfg->warnings = c.warnings;
        if (c.errors) {
                /* the message: the first error found (often the cause of the later ones); the
                 * list: in file order */
                drv_err(err, EINVAL, "%s", c.errors[0]);
                cerr_sort(&c);
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

/* timings.c: the per-test timings index that `circleci tests split --split-by=timings` reads.
 * Every node of a job must split with the same timings (else a test file runs twice or never), so
 * each store_test_results step writes its own object under the run that made it
 * (timings/PROJECT/JOB/RUN/node-I-step-K.json) and never touches another node's or another run's;
 * a node reads the merge of the earlier runs only, never of its own run. */
#include "artifacts/artifacts.h"
#include "artifacts/objstore.h"

#define TIMINGS_KEEP_RUNS 5 /* earlier runs kept per job */

/* A key component from an id: no '/', never empty, "." or "..". Caller frees. */
static char *key_part(const char *id)
{
        if (!id || !id[0] || strcmp(id, ".") == 0 || strcmp(id, "..") == 0)
                return strdup("default");
        char *s = strdup(id);
        for (char *c = s; c && *c; c++)
                if (*c == '/')
                        *c = '_';
        return s;
}

/* "timings/PROJECT/JOB/" (caller frees). */
static char *timings_prefix(const char *project, const char *job_name)
{
        _cleanup_free_ char *job = key_part(job_name);
        return job ? drv_asprintf("timings/%s/%s/", project ? project : "default", job) : NULL;
}

/* The run a job's nodes share: its workflow, else its pipeline, else the job (caller frees). */
static char *run_of(const struct jobspec *spec)
{
        return key_part(spec->workflow_id   ? spec->workflow_id
                        : spec->pipeline_id ? spec->pipeline_id
                                            : spec->job_id);
}

struct run_age {
        char *run; /* the RUN component */
        int64_t mtime_ns;
};

static int cmp_age(const void *a, const void *b)
{
        const struct run_age *x = a, *y = b;
        if (x->mtime_ns != y->mtime_ns)
                return x->mtime_ns < y->mtime_ns ? -1 : 1;
        return strcmp(x->run, y->run);
}

static void runs_free(struct run_age *runs, size_t n)
{
        for (size_t i = 0; runs && i < n; i++)
                free(runs[i].run);
        free(runs);
}

/* The runs under prefix except `skip`, oldest first (by their newest object). */
static int list_runs(struct objstore *store, const char *prefix, const char *skip,
                     struct objstore_entry **ents, size_t *ne, struct run_age **out, size_t *nout,
                     struct drv_error *err)
{
        int r = objstore_list(store, prefix, ents, ne, err);
        if (r < 0)
                return r;
        struct run_age *runs = calloc(*ne + 1, sizeof(*runs));
        size_t n = 0, plen = strlen(prefix);
        if (!runs)
                return drv_err(err, ENOMEM, "out of memory");
        for (size_t i = 0; i < *ne; i++) {
                const char *rest = (*ents)[i].key + plen;
                const char *slash = strchr(rest, '/');
                if (!slash || (skip && strlen(skip) == (size_t)(slash - rest) &&
                               strncmp(rest, skip, (size_t)(slash - rest)) == 0))
                        continue;
                size_t rl = (size_t)(slash - rest);
                /* keys come sorted: one run's objects are next to each other */
                if (n == 0 || strlen(runs[n - 1].run) != rl || strncmp(runs[n - 1].run, rest, rl))
                        if (!(runs[n++].run = strndup(rest, rl))) {
                                runs_free(runs, n);
                                return drv_err(err, ENOMEM, "out of memory");
                        }
                if ((*ents)[i].mtime_ns > runs[n - 1].mtime_ns)
                        runs[n - 1].mtime_ns = (*ents)[i].mtime_ns;
        }
        qsort(runs, n, sizeof(*runs), cmp_age);
        *out = runs;
        *nout = n;
        return 0;
}

/* Does key belong to run (prefix + run + "/")? */
static bool key_in_run(const char *key, size_t plen, const char *run)
{
        size_t rl = strlen(run);
        return strncmp(key + plen, run, rl) == 0 && key[plen + rl] == '/';
}

/* Add the cases of one stored object to merged (file|classname|name -> case; later wins). */
static void merge_object(struct objstore *store, const char *key, json_t *merged)
{
        int fd;
        struct drv_error e2 = {0};
        if (objstore_get(store, key, &fd, &e2) < 0)
                return;
        json_error_t je;
        json_t *doc = json_loadfd(fd, 0, &je);
        close(fd);
        size_t i;
        json_t *t;
        json_array_foreach (json_object_get(doc, "tests"), i, t) {
                const char *f = json_string_value(json_object_get(t, "file"));
                const char *c = json_string_value(json_object_get(t, "classname"));
                const char *n = json_string_value(json_object_get(t, "name"));
                _cleanup_free_ char *id =
                    drv_asprintf("%s\x1f%s\x1f%s", f ? f : "", c ? c : "", n ? n : "");
                if (id)
                        json_object_set(merged, id, t);
        }
        json_decref(doc);
}

int testresults_timings(struct objstore *store, const struct jobspec *spec, json_t **out,
                        struct drv_error *err)
{
        *out = NULL;
        _cleanup_free_ char *prefix = timings_prefix(spec->project, spec->job_name);
        _cleanup_free_ char *run = run_of(spec);
        _cleanup_free_ char *legacy = drv_asprintf(
            "timings/%s/%s.json", spec->project ? spec->project : "default", spec->job_name);
        if (!prefix || !run || !legacy)
                return drv_err(err, ENOMEM, "out of memory");
        struct objstore_entry *ents = NULL;
        size_t ne = 0, nruns = 0;
        struct run_age *runs = NULL;
        int r = list_runs(store, prefix, run, &ents, &ne, &runs, &nruns, err);
        if (r < 0) {
                objstore_entries_free(ents, ne);
                return r;
        }
        json_t *merged = json_object();
        merge_object(store, legacy, merged); /* the single index of older versions */
        size_t plen = strlen(prefix);
        for (size_t k = 0; k < nruns; k++)
                for (size_t i = 0; i < ne; i++)
                        if (key_in_run(ents[i].key, plen, runs[k].run))
                                merge_object(store, ents[i].key, merged);
        runs_free(runs, nruns);
        objstore_entries_free(ents, ne);
        if (json_object_size(merged) == 0) {
                json_decref(merged);
                return 0;
        }
        json_t *tests = json_array();
        const char *id;
        json_t *t;
        json_object_foreach (merged, id, t)
                json_array_append(tests, t);
        json_decref(merged);
        *out = json_pack("{s:o}", "tests", tests);
        return *out ? 0 : drv_err(err, ENOMEM, "out of memory");
}

/* Delete the objects of all but the newest TIMINGS_KEEP_RUNS earlier runs. */
static void prune_runs(struct objstore *store, const char *prefix, const char *run)
{
        struct objstore_entry *ents = NULL;
        size_t ne = 0, nruns = 0;
        struct run_age *runs = NULL;
        struct drv_error e2 = {0};
        if (list_runs(store, prefix, run, &ents, &ne, &runs, &nruns, &e2) == 0) {
                size_t plen = strlen(prefix);
                for (size_t k = 0; k + TIMINGS_KEEP_RUNS < nruns; k++)
                        for (size_t i = 0; i < ne; i++)
                                if (key_in_run(ents[i].key, plen, runs[k].run))
                                        (void)objstore_delete(store, ents[i].key, &e2);
        }
        runs_free(runs, nruns);
        objstore_entries_free(ents, ne);
}

int testresults_timings_store(struct objstore *store, const struct jobspec *spec,
                              unsigned step_index, json_t *cases, struct drv_error *err)
{
        _cleanup_free_ char *prefix = timings_prefix(spec->project, spec->job_name);
        _cleanup_free_ char *run = run_of(spec);
        _cleanup_free_ char *key = prefix && run ? drv_asprintf("%s%s/node-%u-step-%u.json", prefix,
                                                                run, spec->node_index, step_index)
                                                 : NULL;
        json_t *doc = json_pack("{s:O}", "tests", cases);
        _cleanup_free_ char *text = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
        json_decref(doc);
        if (!key || !text)
                return drv_err(err, ENOMEM, "out of memory");
        if (!objstore_key_ok(key))
                return drv_err(err, EINVAL, "timings: bad object key %s", key);
        int wfd;
        int r = objstore_begin(store, key, &wfd, err);
        if (r < 0)
                return r;
        if ((r = drv_write_all(wfd, text, strlen(text))) < 0 ||
            (r = objstore_commit(store, key, wfd, err)) < 0) {
                objstore_abort(store, key, wfd);
                return r < 0 && !err->code ? drv_err(err, -r, "storing %s", key) : r;
        }
        prune_runs(store, prefix, run);
        return 0;
}

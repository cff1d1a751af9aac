/* runselect.c: --list, --with-upstream and the stored upstream workspace of `drover run`
 * (runselect.h). */
#include "executor/runselect.h"

#include <time.h>

void runselect_list(const struct config *cfg, FILE *f)
{
        fprintf(f, "workflows in %s (drover run --workflow NAME):\n", cfg->path);
        for (size_t i = 0; i < cfg->n_workflows; i++) {
                const struct config_workflow *wf = &cfg->workflows[i];
                fprintf(f, "  %s\n", wf->name);
                if (wf->n_jobs == 0)
                        fprintf(f, "      (no job for this branch/tag)\n");
                for (size_t k = 0; k < wf->n_jobs; k++) {
                        const struct config_job *j = &wf->jobs[k];
                        fprintf(f, "      %s", j->name);
                        if (strcmp(j->name, j->job))
                                fprintf(f, " (job %s)", j->job);
                        if (j->parallelism > 1)
                                fprintf(f, " x%u nodes", j->parallelism);
                        for (size_t r = 0; j->requires && j->requires[r]; r++)
                                fprintf(f, "%s%s", r ? ", " : "  requires ", j->requires[r]);
                        fprintf(f, "\n");
                }
        }
        for (char **s = cfg->skipped_workflows; s && *s; s++) {
                bool sched = false;
                for (char **t = cfg->scheduled_workflows; t && *t; t++)
                        sched = sched || strcmp(*t, *s) == 0;
                fprintf(f, "  %s  (not run: %s)\n", *s,
                        sched ? "scheduled pipelines only; see --trigger schedule"
                              : "its when/unless is false for these pipeline parameters; see "
                                "--param");
        }
        fprintf(f, "jobs (drover run JOB):\n");
        for (size_t i = 0; i < cfg->n_jobs; i++)
                fprintf(f, "  %s\n", cfg->jobs[i].name);
}

const struct config_workflow *runselect_workflow_of(const struct config *cfg, const char *job,
                                                    size_t *index)
{
        for (int by_entry = 0; by_entry < 2; by_entry++)
                for (size_t i = 0; i < cfg->n_workflows; i++)
                        for (size_t k = 0; k < cfg->workflows[i].n_jobs; k++) {
                                const struct config_job *j = &cfg->workflows[i].jobs[k];
                                if (strcmp(by_entry ? j->job : j->name, job) == 0) {
                                        *index = k;
                                        return &cfg->workflows[i];
                                }
                        }
        return NULL;
}

/* Mark job k and everything it requires (jobs come in requires order: upstreams first). */
static void mark_needed(const struct config_workflow *wf, size_t k, bool *need)
{
        need[k] = true;
        const struct config_job *j = &wf->jobs[k];
        for (size_t r = 0; j->requires && j->requires[r]; r++)
                for (size_t u = 0; u < k; u++)
                        if (!need[u] && strcmp(wf->jobs[u].name, j->requires[r]) == 0)
                                mark_needed(wf, u, need);
}

struct config_job *runselect_with_upstream(const struct config_workflow *wf, size_t index,
                                           size_t *n)
{
        _cleanup_free_ bool *need = calloc(wf->n_jobs, sizeof(bool));
        struct config_job *jobs = calloc(wf->n_jobs, sizeof(*jobs));
        if (!need || !jobs) {
                free(jobs);
                return NULL;
        }
        mark_needed(wf, index, need);
        *n = 0;
        for (size_t k = 0; k <= index; k++)
                if (need[k])
                        jobs[(*n)++] = wf->jobs[k];
        return jobs;
}

/* Does the job's spec have a step of this type? */
static bool has_step(const struct config_job *j, const char *type)
{
        size_t k;
        json_t *st;
        json_array_foreach (json_object_get(j->spec, "steps"), k, st) {
                const char *t = json_string_value(json_object_get(st, "type"));
                if (t && strcmp(t, type) == 0)
                        return true;
        }
        return false;
}

bool runselect_attaches(const struct config_job *j)
{
        return has_step(j, "attach_workspace");
}

/* The layers job stored in its newest run (workflow ids starting with wf_prefix), appended to
 * layers; false when it never stored one. when: that run's time. */
static bool newest_layers(struct objstore *store, const char *wf_prefix, const char *job,
                          json_t *layers, int64_t *when)
{
        _cleanup_free_ char *prefix = drv_asprintf("workspaces/%s", wf_prefix);
        struct objstore_entry *ents = NULL;
        size_t ne = 0;
        struct drv_error e = {0};
        if (!prefix || objstore_list(store, prefix, &ents, &ne, &e) < 0)
                return false;
        /* keys: workspaces/WFID/JOB/NODE-STEP.tar.zst; the run is WFID */
        const char *best = NULL;
        size_t best_len = 0;
        *when = 0;
        for (size_t i = 0; i < ne; i++) {
                const char *wfid = ents[i].key + strlen("workspaces/");
                const char *slash = strchr(wfid, '/');
                size_t jl = strlen(job);
                if (!slash || strncmp(slash + 1, job, jl) || slash[1 + jl] != '/')
                        continue;
                if (ents[i].mtime_ns > *when) {
                        *when = ents[i].mtime_ns;
                        best = wfid;
                        best_len = (size_t)(slash - wfid);
                }
        }
        for (size_t i = 0; best && i < ne; i++) {
                const char *wfid = ents[i].key + strlen("workspaces/");
                size_t jl = strlen(job);
                if (strncmp(wfid, best, best_len) == 0 && wfid[best_len] == '/' &&
                    strncmp(wfid + best_len + 1, job, jl) == 0 && wfid[best_len + 1 + jl] == '/')
                        json_array_append_new(
                            layers, json_pack("{s:s, s:s}", "job", job, "key", ents[i].key));
        }
        objstore_entries_free(ents, ne);
        return best != NULL;
}

json_t *runselect_stored_layers(struct objstore *store, const char *wf_prefix,
                                const struct config_workflow *wf, size_t index, FILE *f)
{
        json_t *layers = json_array();
        _cleanup_free_ bool *need = calloc(wf->n_jobs, sizeof(bool));
        if (!need)
                return layers;
        mark_needed(wf, index, need);
        for (size_t k = 0; k < index; k++) {
                if (!need[k] || !has_step(&wf->jobs[k], "persist_to_workspace"))
                        continue; /* only what upstream jobs persist is attached */
                int64_t when = 0;
                const char *up = wf->jobs[k].name;
                if (newest_layers(store, wf_prefix, up, layers, &when)) {
                        char ts[64] = "?";
                        time_t t = (time_t)(when / 1000000000);
                        struct tm tm;
                        if (localtime_r(&t, &tm))
                                strftime(ts, sizeof(ts), "%Y-%m-%d %H:%M:%S", &tm);
                        fprintf(f,
                                "drover run: notice: %s requires %s (workflow %s): attaching the "
                                "workspace %s stored in its last run (%s); --with-upstream runs "
                                "it first\n",
                                wf->jobs[index].name, up, wf->name, up, ts);
                } else {
                        fprintf(f,
                                "drover run: notice: %s requires %s (workflow %s), which has "
                                "stored no workspace here yet: its files will be missing; "
                                "--with-upstream runs it first\n",
                                wf->jobs[index].name, up, wf->name);
                }
        }
        return layers;
}

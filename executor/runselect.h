/* runselect.h: what `drover run` runs besides a whole workflow — the --list of a config's
 * workflows and jobs, a job together with the jobs it requires (--with-upstream), and the
 * workspace an upstream job stored in an earlier run (for a single-job run). */
#pragma once

#include "artifacts/objstore.h"
#include "executor/config/config.h"

#include <jansson.h>
#include <stdio.h>

/* Print the config's workflows (each job with what it requires; those skipped by their
 * when/unless) and the jobs `drover run JOB` takes. */
void runselect_list(const struct config *cfg, FILE *f);
/* The workflow that runs job (by its name in the workflow, else its `jobs:` entry); NULL when
 * none does. *index is the job's place in it. */
const struct config_workflow *runselect_workflow_of(const struct config *cfg, const char *job,
                                                    size_t *index);
/* The jobs of wf that job `index` needs (transitively) and that job, in wf's order: a new array
 * of shallow copies (caller frees the array only). */
struct config_job *runselect_with_upstream(const struct config_workflow *wf, size_t index,
                                           size_t *n);
/* Workspace layers ([{"job","key"}]) the upstream jobs of wf's job `index` stored in their last
 * run (keys workspaces/WFID/JOB/..., WFID starting with wf_prefix), for the upstream jobs that
 * persist to the workspace; each one found or missing told on f. Returns a new array. */
json_t *runselect_stored_layers(struct objstore *store, const char *wf_prefix,
                                const struct config_workflow *wf, size_t index, FILE *f);
/* Does the job's spec have an attach_workspace step? */
bool runselect_attaches(const struct config_job *j);

/* runsummary.h: the summary `drover run` prints at the end — every job with its steps, the exit
 * code or reason of each failed step, where artifacts and test results were stored (file://
 * links, failing test names) and the first failure to look at. */
#pragma once

#include "executor/config/config.h"

#include <jansson.h>

/* What happened to one workflow job, for requires, workspaces and the summary. */
struct job_outcome {
        const struct config_job *job;
        bool ran;
        bool ok;
        const char *status; /* success, failed, canceled, blocked, ... */
        json_t *layers;     /* workspace layers this job and its upstream produced */
        json_t *events;     /* every node's events (each with "node", 0-based), for the summary */
        uint64_t duration_ms;
};

/* Print the summary of n jobs to stdout; store_dir is the local store (its objects are below
 * STORE/objects/). Nodes are numbered as in the job headers: "node 1/3" is CIRCLE_NODE_INDEX 0. */
void runsummary_print(const struct job_outcome *out, size_t n, const char *store_dir);

/* jobrunner.h: run one job spec with its output and events set up — shared by `drover job` and
 * `drover run`. */
#pragma once

#include "executor/stepmachine.h"

struct jobrunner_opts {
        const struct jobspec *spec;
        int events_fd;       /* JSON lines of job events, -1 none */
        int terminal_fd;     /* terminal output when the spec's output is "terminal" */
        json_t **events_out; /* optional: receives all events (new reference) */
        const char
            *source_dir;       /* `drover run`: the local source's snapshot (localsrc.h), or NULL */
        const char *spool_dir; /* output spool root: the job's spool is <spool_dir>/<job id>;
                                  NULL = $DROVER_OUTPUT_SPOOL_DIR (the job's own dir) or
                                  $TMPDIR/drover-spool-<job id> */
        uint64_t spool_max;    /* bound of unacknowledged output; 0 = $DROVER_OUTPUT_SPOOL_MAX
                                  or 256 MiB */
};

/* Set up output (masking), events and cancellation signals, run the job, tear down.
 * Returns 0 with the job's status, or -errno when the job could not be run at all. */
int jobrunner_run(const struct jobrunner_opts *o, enum job_status *status, struct drv_error *err);

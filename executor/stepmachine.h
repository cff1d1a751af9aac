/* stepmachine.h: run one job spec's steps over a runtime, with output and events. */
#pragma once

#include "executor/events.h"
#include "executor/jobspec.h"
#include "executor/output.h"

enum job_status {
        JOB_SUCCESS,
        JOB_FAILED,
        JOB_CANCELED,
        JOB_TIMEDOUT,
        JOB_INFRA_FAIL,
};

/* Where a step's result comes from. */
enum step_status {
        STEP_SUCCESS,
        STEP_FAILED,
        STEP_TIMEDOUT, /* no_output_timeout */
        STEP_OOM,
        STEP_CANCELED,
        STEP_SKIPPED,
};

struct job_run_opts {
        const struct jobspec *spec;
        struct output *out;
        struct job_events *events;
        const char *self_exe; /* the drover binary, offered inside as `circleci` */
        int cancel_signal_fd; /* signalfd for SIGINT/SIGTERM (-1: none) */
        const char
            *source_dir; /* `drover run`: the local source's snapshot (localsrc.h), or NULL */
};

/* Run the job; returns 0 and its status, or -errno on an infrastructure failure. */
int job_run(const struct job_run_opts *o, enum job_status *status, struct drv_error *err);
const char *job_status_name(enum job_status s);
const char *step_status_name(enum step_status s);
/* What is known when a step's process ended, and how it is reported. */
struct step_end_facts {
        int wait_status;
        bool oom;
        bool no_output_timed_out;
        bool canceled;      /* SIGINT/SIGTERM or job timeout stopped it */
        bool job_timed_out; /* ... because of the job timeout */
        uint64_t no_output_timeout_s;
        uint64_t memory_limit; /* bytes, 0 unknown */
};
/* The step's status and its reason ("" on success), e.g. "exited with code 3". */
enum step_status step_classify(const struct step_end_facts *f, char *reason, size_t n);
/* The job's status; precedence: infrastructure failure, timeout, cancel, failure. */
enum job_status job_classify(bool infra_failed, bool timed_out, bool canceled, bool failed);
/* Should a step with `when` run, given whether the job has failed so far? */
bool step_should_run(enum js_when when, bool job_failed);
/* Does step st run, given whether the job has failed so far? Its `when`, except that
 * store_artifacts and store_test_results always run (as on CircleCI). */
bool step_runs(const struct js_step *st, bool job_failed);
/* The default shell: bash when the job root has /bin/bash. */
const char *step_default_shell(bool have_bash);
/* Split a shell string ("/bin/bash -eo pipefail") into argv, append script; caller frees. */
char **step_shell_argv(const char *shell, const char *script);
/* Expand a leading ~ against home; relative paths join the base directory. Caller frees. */
char *step_resolve_dir(const char *dir, const char *base, const char *home);
/* Format "exceeded 10m0s"-style durations into buf. */
void step_format_duration(uint64_t seconds, char *buf, size_t n);

/* output.h: a job's output pipeline — step bytes, secrets masked, to the terminal and/or the
 * output processor on :8585 through a bounded on-disk spool (docs/protocol.md). */
#pragma once

#include "lib/drv.h"

struct output;

struct output_config {
        const char *job_id;
        const char *attempt;        /* the run's attempt id (Drover-Attempt header); NULL = none */
        const char *url;            /* "terminal" (or NULL) or http(s)://host:8585 */
        const char *token;          /* bearer token for the processor (secret) */
        const char *spool_dir;      /* directory for the spool; NULL = $TMPDIR/drover-spool-<job> */
        uint64_t spool_max_bytes;   /* bound of unacknowledged bytes; 0 = 256 MiB */
        const char *const *secrets; /* values to mask (NULL-terminated); short/trivial ones are
                                       ignored per CircleCI's rule */
        int terminal_fd;            /* where terminal output goes; -1 = none */
        bool color;                 /* ANSI colour + elapsed time (a TTY) */
        const char *ca_pem;         /* TLS CA for the processor */
};

/* How a step ended, for the terminal footer and the processor's end-of-step record. */
struct output_step_end {
        int exit_code;      /* -1 when killed by a signal */
        int signal;         /* 0 or the signal */
        const char *status; /* "success", "failed", "timedout", "oom", "canceled", "skipped" */
        const char *reason; /* human text such as "out of memory (limit 512 MiB)", may be NULL
                               (masked before it is shown or spooled) */
        uint64_t duration_ms;
};

/* Open the pipeline (spool, masking tables, shipper). Returns 0 and a new output. */
int output_open(const struct output_config *cfg, struct output **out, struct drv_error *err);
/* The one masking function for everything drover prints or sends besides step output (which
 * output_step_write masks as a stream): text with every secret of the job and its encoded forms
 * replaced by "********" (docs/executor.md "Secret masking"). o may be NULL (a plain copy).
 * Returns a new string the caller frees, NULL on ENOMEM. */
char *output_mask(const struct output *o, const char *text);
/* Start step number idx (0-based, unique within the job) named name (masked). */
int output_step_begin(struct output *o, unsigned idx, const char *name, bool background,
                      struct drv_error *err);
/* Raw bytes the step wrote (any bytes: binary, invalid UTF-8, huge lines). Masking is applied
 * here, holding back only a possible secret prefix. Returns 0, or -EAGAIN when the spool is full:
 * nothing was taken, the caller stops reading the step's pipe and retries later (backpressure). */
int output_step_write(struct output *o, unsigned idx, const void *buf, size_t n,
                      struct drv_error *err);
/* printf-style informational line from drover itself into a step's stream (masked too). */
int output_step_printf(struct output *o, unsigned idx, const char *fmt, ...) DRV_PRINTF(3, 4);
/* End a step: flush its held-back bytes and record the result. */
int output_step_end(struct output *o, unsigned idx, const struct output_step_end *res,
                    struct drv_error *err);
/* True while the spool has room (the caller may read more step output). */
bool output_can_accept(struct output *o);
/* Flush everything; wait up to timeout_ms for the processor to acknowledge all bytes. */
int output_close(struct output *o, uint64_t timeout_ms, struct drv_error *err);
void output_free(struct output *o);
/* Remove job spools under root (the directories job-* that `drover job --spool-dir root` makes)
 * left by supervisors that crashed and were never started again: no process holds their locks
 * and nothing was written to them for max_age_s seconds. Returns how many were removed. */
int output_spool_gc(const char *root, uint64_t max_age_s);

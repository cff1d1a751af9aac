/* continuation.h: dynamic config (`setup: true`) — how a setup workflow's job continues the
 * pipeline with a configuration it generated (docs/config.md "Dynamic config").
 *
 * The job runs `circleci continue FILE [--parameters JSON|FILE]` (the in-job tool). It writes
 * the continuation API's body, {"continuation-key", "configuration", "parameters"}, to
 * INJOB_CONTINUATION_FILE in the job's /tmp (once: the file is created exclusively). After each
 * step, `drover job` has the in-job helper read that file as the job, checks the key against
 * the job's CIRCLE_CONTINUATION_KEY and emits a `continuation` event {"configuration",
 * "parameters"} — once per job: the key is single-use. `drover run` then compiles and runs the
 * continued config; under the agent the event reaches the control plane
 * (docs/protocol-control-plane.md). */
#pragma once

#include "executor/stepctx.h"

#include <jansson.h>

/* Where the in-job tool leaves the continuation request (the job's /tmp). */
#define INJOB_CONTINUATION_FILE "/tmp/.drover-continuation.json"
/* The environment variable carrying the job's continuation key (CircleCI's name). */
#define CONTINUATION_KEY_ENV "CIRCLE_CONTINUATION_KEY"
/* Largest request accepted (the configuration text and its parameters, JSON-encoded). */
#define CONTINUATION_MAX_BYTES (4u << 20)

/* A job's continuation state in the step machine. */
struct continuation_state {
        bool used;       /* a continuation was accepted: the key is spent */
        char digest[65]; /* SHA-256 (hex) of the accepted request, to tell it from a new one */
};

/* The continuation key of a job spec (its CIRCLE_CONTINUATION_KEY), NULL when the job is not
 * part of a setup workflow. Borrowed from spec. */
const char *continuation_key(const struct jobspec *spec);
/* Check a request body (the continuation API's JSON) against key: an object whose
 * "continuation-key" is key, "configuration" a non-empty string, "parameters" (optional) an
 * object of strings, numbers and booleans. *event receives {"configuration", "parameters"}
 * (caller frees). */
int continuation_parse(const char *body, size_t len, const char *key, json_t **event,
                       struct drv_error *err);
/* After a step of a job with a continuation key: when the job left a request, read it through
 * the in-job helper (ctx->runner), check it and emit the `continuation` event. A second,
 * different request after one was accepted is refused (an error: the key is single-use); the
 * same request again is nothing new. */
int continuation_collect(const struct step_ctx *ctx, const char *key, struct continuation_state *st,
                         struct drv_error *err);
/* Add CIRCLE_CONTINUATION_KEY=key to a job spec's environment (JSON, docs/jobspec.md). */
int continuation_spec_add_key(json_t *spec, const char *key);
/* A new random key (64 hex characters and a NUL into buf). */
int continuation_new_key(char buf[65]);
/* The in-job tool: `circleci continue FILE [--parameters JSON|FILE]`; exit status. */
int continuation_tool(int argc, char **argv);

/* events.h: job events (started, step_started, step_finished, artifact, test_results, finished),
 * one JSON object a line, each with a sequence number so a retry is idempotent. */
#pragma once

#include "lib/drv.h"

#include <jansson.h>

struct job_events;
struct output;

/* Open an event sink writing JSON lines to fd (-1: keep them in memory only). job_id is copied. */
int job_events_open(int fd, const char *job_id, struct job_events **out, struct drv_error *err);
/* Mask every string of every event emitted from now on with output_mask(o) — step names,
 * reasons, cache keys, artifact paths, SSH session fields. o must outlive ev. */
void job_events_mask_with(struct job_events *ev, const struct output *o);
/* Emit one event of type with the fields of data (stolen; may be NULL). Adds "seq", "type",
 * "job", "time". Returns the sequence number (>= 1) or -errno. */
int64_t job_events_emit(struct job_events *ev, const char *type, json_t *data);
/* All events emitted so far (borrowed array of objects), for the end-of-run summary and tests. */
json_t *job_events_all(struct job_events *ev);
void job_events_free(struct job_events *ev);

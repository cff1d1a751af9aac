/* artifacts.h: store_artifacts (each file its own object, with a content type) and
 * store_test_results (files + a JUnit XML summary with per-test timings). */
#pragma once

#include "executor/stepctx.h"

#include <jansson.h>

struct objstore;

/* Content type stored for a file name: one of the safe types, else text/plain unless unsafe
 * types are allowed (then the type the extension names, or application/octet-stream). */
const char *artifacts_content_type(const char *name, bool allow_unsafe);
int artifacts_step_store(const struct step_ctx *ctx, const struct js_step *step,
                         struct drv_error *err);
int testresults_step_store(const struct step_ctx *ctx, const struct js_step *step,
                           struct drv_error *err);
/* Parse JUnit XML text into {"tests","failures","errors","skipped","time","cases":[{file,
 * classname,name,time,result}]}; malformed input returns -EINVAL (a warning for the caller). */
int testresults_parse_junit(const char *xml, size_t len, json_t **out, struct drv_error *err);
/* Per-test timings stored by earlier runs of the spec's job in its project ({"tests": [...]}):
 * the merge of earlier runs (workflows) only, never of the spec's own run, so that every node of
 * one run splits alike; *out is NULL when there are none. */
int testresults_timings(struct objstore *store, const struct jobspec *spec, json_t **out,
                        struct drv_error *err);
/* Store the cases one store_test_results step of the spec's node found, under its run. */
int testresults_timings_store(struct objstore *store, const struct jobspec *spec,
                              unsigned step_index, json_t *cases, struct drv_error *err);

/* cache.h: caches (save_cache / restore_cache with key templates) and workspaces
 * (persist_to_workspace / attach_workspace). Step handlers run in `drover job`, outside the
 * sandbox; the job's files are read and written by the in-job helper (cache/jobhelper.h). */
#pragma once

#include "executor/stepctx.h"

#define CACHE_MAX_KEY 900

/* Render a CircleCI cache key template: {{ .Branch }}, {{ .Revision }}, {{ .BuildNum }},
 * {{ .Environment.NAME }}, {{ checksum "FILE" }}, {{ epoch }}, {{ arch }}, {{ .CheckoutKey }}.
 * FILE is read inside the job (relative to its working directory). Caller frees *out. */
int cache_key_render(const struct step_ctx *ctx, const char *tmpl, char **out,
                     struct drv_error *err);
/* Absolute inside path of a step path: `~` is the home, relative paths join the working dir. */
char *cache_inside_path(const struct step_ctx *ctx, const char *path);

int cache_step_save(const struct step_ctx *ctx, const struct js_step *step, struct drv_error *err);
int cache_step_restore(const struct step_ctx *ctx, const struct js_step *step,
                       struct drv_error *err);
int workspace_step_persist(const struct step_ctx *ctx, const struct js_step *step,
                           struct drv_error *err);
int workspace_step_attach(const struct step_ctx *ctx, const struct js_step *step,
                          struct drv_error *err);

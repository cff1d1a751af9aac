/* cfgtest.h: helpers shared by the config compiler unit tests. */
#pragma once

#include "executor/config/config.h"
#include "executor/jobspec.h"
#include "testlib.h"

static inline struct config *load(const char *yaml, const struct config_opts *o,
                                  struct drv_error *e)
{
        struct config *c = NULL;
        if (config_load_text("t.yml", yaml, strlen(yaml), o, &c, e) < 0)
                return NULL;
        return c;
}

static inline void check_spec_valid(const struct config_job *j)
{
        if (!j->spec && j->unrunnable)
                return; /* a job this builder cannot run has no spec */
        struct jobspec *s = NULL;
        struct drv_error e = {0};
        if (jobspec_from_json(j->spec, &s, &e) < 0) {
                printf("#   spec of %s invalid: %s\n", j->name, e.message);
                tl_cur_failed = 1;
        }
        jobspec_free(s);
}

/* Every compiled spec (workflow jobs and standalone jobs) must pass the job spec validator. */
static inline void check_specs_valid(const struct config *c)
{
        for (size_t w = 0; w < c->n_workflows; w++)
                for (size_t j = 0; j < c->workflows[w].n_jobs; j++)
                        check_spec_valid(&c->workflows[w].jobs[j]);
        for (size_t j = 0; j < c->n_jobs; j++)
                check_spec_valid(&c->jobs[j]);
}

static inline json_t *step(const struct config_job *j, size_t i)
{
        return json_array_get(json_object_get(j->spec, "steps"), i);
}

static inline const char *sget(json_t *o, const char *k)
{
        return json_string_value(json_object_get(o, k));
}

/* Compiling yaml with o fails with an error containing fragment. */
static inline void expect_error_opts(const char *yaml, const struct config_opts *o,
                                     const char *fragment)
{
        struct drv_error e = {0};
        struct config *c = load(yaml, o, &e);
        CHECK(c == NULL);
        if (!strstr(e.message, fragment)) {
                printf("#   error '%s' lacks '%s'\n", e.message, fragment);
                tl_cur_failed = 1;
        }
        config_free(c);
}

static inline void expect_error(const char *yaml, const char *fragment)
{
        expect_error_opts(yaml, NULL, fragment);
}

/* Compiling yaml with o succeeds (the test fails otherwise); NULL on failure. */
static inline struct config *must_load(const char *yaml, const struct config_opts *o)
{
        struct drv_error e = {0};
        struct config *c = load(yaml, o, &e);
        if (!c) {
                printf("#   unexpected error: %s\n", e.message);
                tl_cur_failed = 1;
                return NULL;
        }
        check_specs_valid(c);
        return c;
}

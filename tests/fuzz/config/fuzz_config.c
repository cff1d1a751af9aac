/* fuzz_config.c: libFuzzer target — the CircleCI config compiler on arbitrary bytes. Besides not
 * crashing, every job spec it produces must pass the job spec validator. */
#include "executor/config/config.h"
#include "executor/jobspec.h"

#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(const struct config_job *j)
{
        struct jobspec *s = NULL;
        struct drv_error e;
        if (!j->spec) { /* only a job this builder cannot run has no spec, and says why */
                if (!j->unrunnable)
                        abort();
                return;
        }
        if (jobspec_from_json(j->spec, &s, &e) < 0) {
                fprintf(stderr, "compiled spec of %s is invalid: %s\n", j->name, e.message);
                abort();
        }
        jobspec_free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct config *c = NULL;
        struct drv_error e;
        /* odd sizes are scheduled pipelines (workflows with triggers:) */
        struct config_opts o = {.branch = "main",
                                .build_num = 1,
                                .project = "gh/acme/app",
                                .arch = "x86_64",
                                .trigger =
                                    size % 2 ? CONFIG_TRIGGER_SCHEDULE : CONFIG_TRIGGER_WEBHOOK};
        if (config_load_text("fuzz.yml", (const char *)data, size, &o, &c, &e) < 0)
                return 0;
        for (size_t w = 0; w < c->n_workflows; w++)
                for (size_t k = 0; k < c->workflows[w].n_jobs; k++)
                        check(&c->workflows[w].jobs[k]);
        for (size_t k = 0; k < c->n_jobs; k++)
                check(&c->jobs[k]);
        config_free(c);
        return 0;
}

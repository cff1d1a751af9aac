/* stepenv.c: a step's environment (CircleCI's variables, job and step env) and built-in steps. */
#include "executor/docker/setup_remote.h"
#include "executor/stepenv.h"
#include "executor/checkout.h"
#include "executor/stepmachine.h"
#include "artifacts/artifacts.h"
#include "cache/cache.h"

static int env_set(char ***env, const char *name, const char *value)
{
        size_t l = strlen(name);
        char *kv = drv_asprintf("%s=%s", name, value ? value : "");
        if (!kv)
                return -ENOMEM;
        for (char **e = *env; e && *e; e++)
                if (strncmp(*e, name, l) == 0 && (*e)[l] == '=') {
                        free(*e);
                        *e = kv;
                        return 0;
                }
        return drv_strv_push_take(env, kv);
}

/* gh/org/repo -> org, repo */
static void project_parts(const char *project, char *user, size_t un, char *repo, size_t rn)
{
        user[0] = repo[0] = '\0';
        if (!project)
                return;
        const char *a = strchr(project, '/');
        const char *b = a ? strchr(a + 1, '/') : NULL;
        if (a && b) {
                snprintf(user, un, "%.*s", (int)(b - a - 1), a + 1);
                snprintf(repo, rn, "%s", b + 1);
        }
}

char **stepenv_build(const struct jobspec *spec, const struct js_step *st, const char *home,
                     const char *user, const char *bash_env)
{
        char **env = NULL;
        char num[32], idx[16], tot[16], puser[256], prepo[256];
        snprintf(num, sizeof(num), "%llu", (unsigned long long)spec->build_num);
        snprintf(idx, sizeof(idx), "%u", spec->node_index);
        snprintf(tot, sizeof(tot), "%u", spec->node_total);
        project_parts(spec->project, puser, sizeof(puser), prepo, sizeof(prepo));
        const char *fixed[][2] = {
            {"PATH", STEPENV_DEFAULT_PATH},
            {"HOME", home},
            {"USER", user},
            {"LOGNAME", user},
            {"SHELL", "/bin/bash"},
            {"LANG", "C.UTF-8"},
            {"CI", "true"},
            {"CIRCLECI", "true"},
            {"CIRCLE_JOB", spec->job_name},
            {"CIRCLE_BUILD_NUM", num},
            {"CIRCLE_NODE_INDEX", idx},
            {"CIRCLE_NODE_TOTAL", tot},
            {"CIRCLE_WORKING_DIRECTORY", spec->working_directory},
            {"CIRCLE_BRANCH", spec->vcs.branch},
            {"CIRCLE_SHA1", spec->vcs.revision},
            {"CIRCLE_TAG", spec->vcs.tag},
            {"CIRCLE_PR_NUMBER", spec->vcs.pr_number},
            {"CIRCLE_REPOSITORY_URL", spec->vcs.url},
            {"CIRCLE_WORKFLOW_ID", spec->workflow_id},
            {"CIRCLE_WORKFLOW_JOB_ID", spec->job_id},
            {"CIRCLE_PROJECT_USERNAME", puser[0] ? puser : NULL},
            {"CIRCLE_PROJECT_REPONAME", prepo[0] ? prepo : NULL},
            {"BASH_ENV", bash_env},
            {"DROVER_TIMINGS_FILE", "/tmp/.drover-timings.json"},
        };
        for (size_t i = 0; i < DRV_ARRAY_SIZE(fixed); i++)
                if (fixed[i][1] && env_set(&env, fixed[i][0], fixed[i][1]) < 0)
                        goto oom;
        for (size_t i = 0; i < spec->n_env; i++)
                if (env_set(&env, spec->env[i].name, spec->env[i].value) < 0)
                        goto oom;
        for (size_t i = 0; st && i < st->n_env; i++)
                if (env_set(&env, st->env[i].name, st->env[i].value) < 0)
                        goto oom;
        return env;
oom:
        drv_strv_free(env);
        return NULL;
}

char **stepenv_secrets(const struct jobspec *spec)
{
        char **v = calloc(1, sizeof(char *)); /* non-NULL even when empty */
        if (!v)
                return NULL;
        for (size_t i = 0; i < spec->n_env; i++)
                if (spec->env[i].secret && drv_strv_push(&v, spec->env[i].value) < 0)
                        goto oom;
        for (size_t s = 0; s < spec->n_steps; s++)
                for (size_t i = 0; i < spec->steps[s].n_env; i++)
                        if (spec->steps[s].env[i].secret &&
                            drv_strv_push(&v, spec->steps[s].env[i].value) < 0)
                                goto oom;
        if (spec->storage.secret_key && drv_strv_push(&v, spec->storage.secret_key) < 0)
                goto oom;
        char *url_pw = checkout_url_password(spec->vcs.url);
        if (url_pw && drv_strv_push_take(&v, url_pw) < 0)
                goto oom;
        return v;
oom:
        drv_strv_free(v);
        return NULL;
}

int stepbuiltin_run(const struct step_ctx *ctx, const struct js_step *st, struct drv_error *err)
{
        switch (st->type) {
        case JS_STEP_SAVE_CACHE:
                return cache_step_save(ctx, st, err);
        case JS_STEP_RESTORE_CACHE:
                return cache_step_restore(ctx, st, err);
        case JS_STEP_PERSIST_TO_WORKSPACE:
                return workspace_step_persist(ctx, st, err);
        case JS_STEP_ATTACH_WORKSPACE:
                return workspace_step_attach(ctx, st, err);
        case JS_STEP_STORE_ARTIFACTS:
                return artifacts_step_store(ctx, st, err);
        case JS_STEP_STORE_TEST_RESULTS:
                return testresults_step_store(ctx, st, err);
        case JS_STEP_SETUP_REMOTE_DOCKER:
                return docker_setup_remote(ctx, st, err);
        default:
                break;
        }
        return drv_err(err, ENOTSUP, "step type %s is not supported by this drover yet",
                       jobspec_step_type_name(st->type));
}

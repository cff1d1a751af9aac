/* steppolicy.c: the step machine's pure rules — status names, when a step runs, the default
 * shell, how a step's end and a job's end are classified. No I/O: unit-tested directly. */
#include "executor/stepmachine.h"

#include <string.h>
#include <sys/wait.h>

const char *job_status_name(enum job_status s)
{
        static const char *const n[] = {"success", "failed", "canceled", "timedout",
                                        "infrastructure_fail"};
        return n[s];
}

const char *step_status_name(enum step_status s)
{
        static const char *const n[] = {"success", "failed",   "timedout",
                                        "oom",     "canceled", "skipped"};
        return n[s];
}

bool step_should_run(enum js_when when, bool job_failed)
{
        switch (when) {
        case JS_WHEN_ALWAYS:
                return true;
        case JS_WHEN_ON_FAIL:
                return job_failed;
        case JS_WHEN_ON_SUCCESS:
                break;
        }
        return !job_failed;
}

bool step_runs(const struct js_step *st, bool job_failed)
{
        /* CircleCI's configuration reference: store_artifacts and store_test_results always run,
         * even after a failed step (not after a cancel or the job timeout: the job ends then) */
        if (st->type == JS_STEP_STORE_ARTIFACTS || st->type == JS_STEP_STORE_TEST_RESULTS)
                return true;
        return step_should_run(st->when, job_failed);
}

const char *step_default_shell(bool have_bash)
{
        return have_bash ? "/bin/bash -eo pipefail" : "/bin/sh -eo pipefail";
}

char **step_shell_argv(const char *shell, const char *script)
{
        _cleanup_free_ char *copy = strdup(shell);
        char **argv = NULL;
        if (!copy)
                return NULL;
        char *save = NULL;
        for (char *t = strtok_r(copy, " \t", &save); t; t = strtok_r(NULL, " \t", &save))
                if (drv_strv_push(&argv, t) < 0) {
                        drv_strv_free(argv);
                        return NULL;
                }
        if (!argv || drv_strv_push(&argv, script) < 0) {
                drv_strv_free(argv);
                return NULL;
        }
        return argv;
}

char *step_resolve_dir(const char *dir, const char *base, const char *home)
{
        if (dir[0] == '~' && (dir[1] == '/' || dir[1] == '\0'))
                return drv_path_join(home, dir + 1);
        if (dir[0] == '/')
                return strdup(dir);
        return drv_path_join(base, dir);
}

void step_format_duration(uint64_t s, char *buf, size_t n)
{
        if (s >= 3600)
                snprintf(buf, n, "%lluh%llum%llus", (unsigned long long)(s / 3600),
                         (unsigned long long)(s % 3600 / 60), (unsigned long long)(s % 60));
        else if (s >= 60)
                snprintf(buf, n, "%llum%llus", (unsigned long long)(s / 60),
                         (unsigned long long)(s % 60));
        else
                snprintf(buf, n, "%llus", (unsigned long long)s); /* as Go prints 2s */
}

enum step_status step_classify(const struct step_end_facts *f, char *reason, size_t n)
{
        int ws = f->wait_status;
        reason[0] = '\0';
        if (f->canceled || f->job_timed_out) {
                snprintf(reason, n, "%s", f->job_timed_out ? "job timeout reached" : "canceled");
                return f->job_timed_out ? STEP_TIMEDOUT : STEP_CANCELED;
        }
        if (f->no_output_timed_out) {
                char d[32];
                step_format_duration(f->no_output_timeout_s, d, sizeof(d));
                snprintf(reason, n, "Too long with no output (exceeded %s)", d);
                return STEP_TIMEDOUT;
        }
        if (f->oom) {
                if (f->memory_limit)
                        snprintf(reason, n, "out of memory (limit %llu MiB)",
                                 (unsigned long long)(f->memory_limit >> 20));
                else
                        snprintf(reason, n, "out of memory");
                return STEP_OOM;
        }
        if (WIFEXITED(ws) && WEXITSTATUS(ws) == 0)
                return STEP_SUCCESS;
        if (WIFEXITED(ws))
                snprintf(reason, n, "exited with code %d", WEXITSTATUS(ws));
        else
                snprintf(reason, n, "killed by signal %d (%s)", WTERMSIG(ws),
                         strsignal(WTERMSIG(ws)));
        return STEP_FAILED;
}

enum job_status job_classify(bool infra_failed, bool timed_out, bool canceled, bool failed)
{
        if (infra_failed)
                return JOB_INFRA_FAIL;
        if (timed_out)
                return JOB_TIMEDOUT;
        if (canceled)
                return JOB_CANCELED;
        return failed ? JOB_FAILED : JOB_SUCCESS;
}

/* test_steps.c: step machine helpers and the `circleci tests` algorithms. */
#include "executor/stepenv.h"
#include "executor/stepmachine.h"
#include "executor/testsplit.h"
#include "executor/localrepo.h"
#include "testlib.h"

#include <signal.h>

static bool strv_has(char **v, const char *s)
{
        for (size_t i = 0; v && v[i]; i++)
                if (strcmp(v[i], s) == 0)
                        return true;
        return false;
}

TEST(when_conditions)
{
        CHECK(step_should_run(JS_WHEN_ON_SUCCESS, false));
        CHECK(!step_should_run(JS_WHEN_ON_SUCCESS, true));
        CHECK(!step_should_run(JS_WHEN_ON_FAIL, false));
        CHECK(step_should_run(JS_WHEN_ON_FAIL, true));
        CHECK(step_should_run(JS_WHEN_ALWAYS, true) && step_should_run(JS_WHEN_ALWAYS, false));
}

TEST(shell_argv_and_default_shell)
{
        _cleanup_strv_ char **a = step_shell_argv("/bin/bash -eo pipefail", "/tmp/s.sh");
        CHECK(a && drv_strv_len(a) == 4);
        CHECK(a && strcmp(a[1], "-eo") == 0 && strcmp(a[3], "/tmp/s.sh") == 0);
        CHECK_STREQ(step_default_shell(true), "/bin/bash -eo pipefail");
        CHECK_STREQ(step_default_shell(false), "/bin/sh -eo pipefail");
}

TEST(working_directories_resolve_against_home_and_base)
{
        _cleanup_free_ char *a = step_resolve_dir("~/project", "/x", "/home/c");
        _cleanup_free_ char *b = step_resolve_dir("sub/dir", "/home/c/project", "/home/c");
        _cleanup_free_ char *c = step_resolve_dir("/abs", "/x", "/h");
        _cleanup_free_ char *d = step_resolve_dir("~", "/x", "/home/c");
        CHECK_STREQ(a, "/home/c/project");
        CHECK_STREQ(b, "/home/c/project/sub/dir");
        CHECK_STREQ(c, "/abs");
        CHECK_STREQ(d, "/home/c");
}

TEST(durations_format_like_circleci)
{
        char buf[32];
        step_format_duration(600, buf, sizeof(buf));
        CHECK_STREQ(buf, "10m0s");
        step_format_duration(3725, buf, sizeof(buf));
        CHECK_STREQ(buf, "1h2m5s");
        step_format_duration(2, buf, sizeof(buf));
        CHECK_STREQ(buf, "2s");
        step_format_duration(90, buf, sizeof(buf));
        CHECK_STREQ(buf, "1m30s");
        step_format_duration(3600, buf, sizeof(buf));
        CHECK_STREQ(buf, "1h0m0s");
}

TEST(step_env_later_wins_and_secrets_listed)
{
        struct js_env jenv[] = {{"A", "job", false}, {"S", "topsecret", true}};
        struct js_env senv[] = {{"A", "step", false}};
        struct js_step st = {.type = JS_STEP_RUN, .env = senv, .n_env = 1};
        struct jobspec spec = {.job_name = "build",
                               .working_directory = "~/project",
                               .env = jenv,
                               .n_env = 2,
                               .node_total = 2,
                               .node_index = 1};
        _cleanup_strv_ char **env =
            stepenv_build(&spec, &st, "/home/circleci", "circleci", "/tmp/.bash_env-x");
        bool a = false, idx = false, bash = false;
        for (size_t i = 0; env && env[i]; i++) {
                a |= strcmp(env[i], "A=step") == 0;
                CHECK(strcmp(env[i], "A=job") != 0);
                idx |= strcmp(env[i], "CIRCLE_NODE_INDEX=1") == 0;
                bash |= strcmp(env[i], "BASH_ENV=/tmp/.bash_env-x") == 0;
        }
        CHECK(a && idx && bash);
        _cleanup_strv_ char **sec = stepenv_secrets(&spec);
        CHECK(sec && drv_strv_len(sec) == 1 && strcmp(sec[0], "topsecret") == 0);
}

TEST(step_results_map_to_statuses_and_reasons)
{
        char r[256];
        struct step_end_facts f = {.wait_status = 0};
        CHECK(step_classify(&f, r, sizeof(r)) == STEP_SUCCESS && r[0] == '\0');
        f.wait_status = 3 << 8; /* exit 3 */
        CHECK(step_classify(&f, r, sizeof(r)) == STEP_FAILED);
        CHECK_STREQ(r, "exited with code 3");
        f.wait_status = SIGSEGV; /* killed by a signal */
        CHECK(step_classify(&f, r, sizeof(r)) == STEP_FAILED);
        CHECK(strncmp(r, "killed by signal 11", 19) == 0);
        f = (struct step_end_facts){.wait_status = SIGKILL, .oom = true, .memory_limit = 64 << 20};
        CHECK(step_classify(&f, r, sizeof(r)) == STEP_OOM);
        CHECK_STREQ(r, "out of memory (limit 64 MiB)");
        f = (struct step_end_facts){
            .wait_status = SIGTERM, .no_output_timed_out = true, .no_output_timeout_s = 600};
        CHECK(step_classify(&f, r, sizeof(r)) == STEP_TIMEDOUT);
        CHECK_STREQ(r, "Too long with no output (exceeded 10m0s)");
        f.canceled = true; /* a cancel wins over what the process did */
        CHECK(step_classify(&f, r, sizeof(r)) == STEP_CANCELED);
        CHECK_STREQ(r, "canceled");
        f.job_timed_out = true;
        CHECK(step_classify(&f, r, sizeof(r)) == STEP_TIMEDOUT);
        CHECK_STREQ(r, "job timeout reached");
        CHECK(job_classify(true, true, true, true) == JOB_INFRA_FAIL);
        CHECK(job_classify(false, true, true, true) == JOB_TIMEDOUT);
        CHECK(job_classify(false, false, true, true) == JOB_CANCELED);
        CHECK(job_classify(false, false, false, true) == JOB_FAILED);
        CHECK(job_classify(false, false, false, false) == JOB_SUCCESS);
        CHECK_STREQ(job_status_name(JOB_INFRA_FAIL), "infrastructure_fail");
        CHECK_STREQ(step_status_name(STEP_OOM), "oom");
}

TEST(glob_matching)
{
        CHECK(testsplit_match("**/*_test.py", "a/b/c_test.py"));
        CHECK(testsplit_match("**/*_test.py", "c_test.py"));
        CHECK(!testsplit_match("*_test.py", "a/c_test.py"));
        CHECK(testsplit_match("src/*.{c,h}", "src/x.h"));
        CHECK(!testsplit_match("src/*.{c,h}", "src/x.o"));
        CHECK(testsplit_match("t/[ab]?.rb", "t/a1.rb"));
        CHECK(!testsplit_match("t/[ab]?.rb", "t/c1.rb"));
}

TEST(split_by_name_deals_sorted_round_robin)
{
        char *items[] = {"d", "a", "c", "b", "e", NULL};
        _cleanup_strv_ char **n0 = NULL, **n1 = NULL;
        CHECK(testsplit_split(items, TESTSPLIT_NAME, NULL, "filename", 0, 2, &n0) == 0);
        CHECK(testsplit_split(items, TESTSPLIT_NAME, NULL, "filename", 1, 2, &n1) == 0);
        CHECK(n0 && drv_strv_len(n0) == 3 && strcmp(n0[0], "a") == 0 && strcmp(n0[1], "c") == 0);
        CHECK(n1 && drv_strv_len(n1) == 2 && strcmp(n1[0], "b") == 0);
}

TEST(split_by_timings_balances_load)
{
        char *items[] = {"slow", "fast1", "fast2", "fast3", "unknown", NULL};
        json_t *t = json_pack("{s:f, s:f, s:f, s:f}", "slow", 10.0, "fast1", 3.0, "fast2", 3.0,
                              "fast3", 3.0);
        _cleanup_strv_ char **n0 = NULL, **n1 = NULL;
        CHECK(testsplit_split(items, TESTSPLIT_TIMINGS, t, "filename", 0, 2, &n0) == 0);
        CHECK(testsplit_split(items, TESTSPLIT_TIMINGS, t, "filename", 1, 2, &n1) == 0);
        /* slow (10) alone on one node; the three fast ones + unknown (avg 4.75) on the other */
        CHECK(n0 && drv_strv_len(n0) + drv_strv_len(n1) == 5);
        /* longest first into the least loaded node: slow | unknown(4.75), fast, fast | fast */
        char **with_slow = n0 && strv_has(n0, "slow") ? n0 : n1;
        CHECK(with_slow && drv_strv_len(with_slow) == 2);
        CHECK(!(strv_has(n0, "slow") && strv_has(n1, "slow")));
        CHECK(strv_has(with_slow == n0 ? n1 : n0, "unknown"));
        json_decref(t);
}

TEST(split_by_stored_timings_per_type)
{
        /* the stored test-results format; classname timings add up per class */
        json_t *t = json_pack("{s:[{s:s, s:s, s:s, s:f}, {s:s, s:s, s:s, s:f}, {s:s, s:s, s:s, "
                              "s:f}]}",
                              "tests", "file", "a.py", "classname", "A", "name", "t1", "time", 1.0,
                              "file", "b.py", "classname", "B", "name", "t2", "time", 5.0, "file",
                              "b.py", "classname", "B", "name", "t3", "time", 5.0);
        char *files[] = {"a.py", "b.py", "c.py", NULL};
        _cleanup_strv_ char **f0 = NULL, **f1 = NULL;
        CHECK(testsplit_split(files, TESTSPLIT_TIMINGS, t, "filename", 0, 2, &f0) == 0);
        CHECK(testsplit_split(files, TESTSPLIT_TIMINGS, t, "filename", 1, 2, &f1) == 0);
        char **with_b = strv_has(f0, "b.py") ? f0 : f1;
        CHECK(drv_strv_len(with_b) == 1); /* b.py (10s) alone: a.py + c.py (avg) elsewhere */
        char *classes[] = {"A", "B", NULL};
        _cleanup_strv_ char **c0 = NULL, **c1 = NULL;
        CHECK(testsplit_split(classes, TESTSPLIT_TIMINGS, t, "classname", 0, 2, &c0) == 0);
        CHECK(testsplit_split(classes, TESTSPLIT_TIMINGS, t, "classname", 1, 2, &c1) == 0);
        CHECK(drv_strv_len(c0) == 1 && drv_strv_len(c1) == 1);
        json_decref(t);
}

TEST(split_by_filesize_puts_the_biggest_alone)
{
        char dir[] = "/tmp/drover-split-XXXXXX";
        CHECK(mkdtemp(dir) != NULL);
        const size_t sizes[] = {9000, 1000, 2000, 3000};
        char *items[5] = {0};
        for (size_t i = 0; i < 4; i++) {
                items[i] = drv_asprintf("%s/f%zu", dir, i);
                FILE *f = fopen(items[i], "we");
                CHECK(f != NULL);
                for (size_t k = 0; f && k < sizes[i]; k++)
                        fputc('x', f);
                if (f)
                        fclose(f);
        }
        _cleanup_strv_ char **n0 = NULL, **n1 = NULL;
        CHECK(testsplit_split(items, TESTSPLIT_FILESIZE, NULL, NULL, 0, 2, &n0) == 0);
        CHECK(testsplit_split(items, TESTSPLIT_FILESIZE, NULL, NULL, 1, 2, &n1) == 0);
        char **big = strv_has(n0, items[0]) ? n0 : n1;
        CHECK(drv_strv_len(big) == 1 && drv_strv_len(n0) + drv_strv_len(n1) == 4);
        for (size_t i = 0; i < 4; i++) {
                unlink(items[i]);
                free(items[i]);
        }
        rmdir(dir);
}

TEST(environment_is_built_from_scratch)
{
        setenv("DROVER_TEST_LEAK", "leaked", 1);
        struct jobspec spec = {.job_name = "j",
                               .project = "gh/acme/widgets",
                               .working_directory = "~/project",
                               .node_total = 1};
        spec.vcs.branch = "main";
        _cleanup_strv_ char **env = stepenv_build(&spec, NULL, "/home/circleci", "circleci", "/b");
        bool path = false, user = false, repo = false, ci = false;
        for (size_t i = 0; env && env[i]; i++) {
                CHECK(strstr(env[i], "leaked") == NULL);
                path |= strncmp(env[i], "PATH=/run/drover/bin:", 21) == 0;
                user |= strcmp(env[i], "CIRCLE_PROJECT_USERNAME=acme") == 0;
                repo |= strcmp(env[i], "CIRCLE_PROJECT_REPONAME=widgets") == 0;
                ci |= strcmp(env[i], "CIRCLECI=true") == 0;
                CHECK(strncmp(env[i], "CIRCLE_TAG=", 11) != 0); /* unset values stay unset */
        }
        CHECK(path && user && repo && ci);
        unsetenv("DROVER_TEST_LEAK");
}

static void write_file(const char *dir, const char *name, const char *text)
{
        _cleanup_free_ char *p = drv_path_join(dir, name);
        FILE *f = fopen(p, "we");
        if (f) {
                fputs(text, f);
                fclose(f);
        }
}

TEST(local_repository_head_from_git_files)
{
        char dir[] = "/tmp/drover-repo-XXXXXX";
        CHECK(mkdtemp(dir) != NULL);
        _cleanup_free_ char *git = drv_path_join(dir, ".git");
        _cleanup_free_ char *sub = drv_path_join(dir, "a/b");
        _cleanup_free_ char *heads = drv_path_join(dir, ".git/refs/heads");
        struct drv_error e;
        CHECK(drv_mkdir_p(sub, 0755, &e) == 0 && drv_mkdir_p(heads, 0755, &e) == 0);
        const char *sha = "0123456789abcdef0123456789abcdef01234567";
        /* a packed branch, found from a subdirectory */
        write_file(git, "HEAD", "ref: refs/heads/feature/x\n");
        write_file(git, "packed-refs",
                   "# pack-refs with: peeled\n0123456789abcdef0123456789abcdef01234567 "
                   "refs/heads/feature/x\n");
        struct localrepo r;
        CHECK(localrepo_find(sub, &r) == 1);
        CHECK_STREQ(r.branch, "feature/x");
        CHECK_STREQ(r.revision, sha);
        CHECK(r.toplevel && strcmp(r.toplevel, dir) == 0);
        localrepo_release(&r);
        /* detached HEAD */
        write_file(git, "HEAD", "89abcdef0123456789abcdef0123456789abcdef\n");
        CHECK(localrepo_find(dir, &r) == 1);
        CHECK(r.branch == NULL);
        CHECK_STREQ(r.revision, "89abcdef0123456789abcdef0123456789abcdef");
        localrepo_release(&r);
        /* no repository */
        CHECK(localrepo_find("/proc/self", &r) == 0);
        drv_rm_rf(dir, &e);
}

TEST(split_rejects_bad_index)
{
        char *items[] = {"a", NULL};
        char **out = NULL;
        CHECK(testsplit_split(items, TESTSPLIT_NAME, NULL, "filename", 2, 2, &out) == -EINVAL);
}

int main(void)
{
        RUN(when_conditions);
        RUN(shell_argv_and_default_shell);
        RUN(working_directories_resolve_against_home_and_base);
        RUN(durations_format_like_circleci);
        RUN(step_env_later_wins_and_secrets_listed);
        RUN(step_results_map_to_statuses_and_reasons);
        RUN(glob_matching);
        RUN(split_by_name_deals_sorted_round_robin);
        RUN(split_by_timings_balances_load);
        RUN(split_by_stored_timings_per_type);
        RUN(split_by_filesize_puts_the_biggest_alone);
        RUN(split_rejects_bad_index);
        RUN(environment_is_built_from_scratch);
        RUN(local_repository_head_from_git_files);
        TEST_DONE();
}

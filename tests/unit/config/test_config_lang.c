/* test_config_lang.c: the config compiler — the language real configs use (issue 13): any
 * top-level key, unrunnable jobs, scheduled workflows, resource classes, pipeline values,
 * executor environment merge order, requires statuses, auto-naming, serial-group, no-op jobs,
 * machine keys, expressions, the deploy step. */
#include "cfgtest.h"

#define JOB_OF(cmd)                                                                                \
        "version: 2.1\njobs:\n  a:\n    machine: true\n    steps:\n      - run: " cmd "\n"

static const struct config_job *wjob(const struct config *c, const char *wf, const char *name)
{
        const struct config_workflow *w = c ? config_find_workflow(c, wf) : NULL;
        for (size_t i = 0; w && i < w->n_jobs; i++)
                if (strcmp(w->jobs[i].name, name) == 0)
                        return &w->jobs[i];
        return NULL;
}

static const char *env_value(const struct config_job *j, const char *name)
{
        size_t i;
        json_t *e;
        const char *v = NULL;
        json_array_foreach (json_object_get(j->spec, "environment"), i, e)
                if (strcmp(sget(e, "name"), name) == 0)
                        v = sget(e, "value");
        return v;
}

static size_t n_warnings_with(const struct config *c, const char *frag)
{
        size_t n = 0;
        for (size_t i = 0; c && c->warnings && c->warnings[i]; i++)
                n += strstr(c->warnings[i], frag) != NULL;
        return n;
}

TEST(any_top_level_key_is_accepted_for_anchors)
{
        struct config *c = must_load("version: 2.1\n"
                                     "x-docker: &img [{image: cimg/base:stable}]\n"
                                     "var_1: &defaults {working_directory: ~/w}\n"
                                     "_imageconfig: {a: 1}\n"
                                     "job_defaults: &jd {resource_class: large}\n"
                                     "filters: &f {branches: {only: main}}\n"
                                     "jobs:\n  a:\n    <<: [*defaults, *jd]\n    docker: *img\n"
                                     "    steps: [checkout]\n",
                                     NULL);
        const struct config_job *j = c ? config_find_job(c, "a") : NULL;
        CHECK(j != NULL);
        if (j) {
                CHECK_STREQ(sget(j->spec, "working_directory"), "~/w");
                CHECK_STREQ(sget(json_object_get(j->spec, "executor"), "resource_class"), "large");
        }
        config_free(c);
}

TEST(unrunnable_jobs_compile_as_not_run_each_listed_once)
{
        const char *yaml = "version: 2.1\njobs:\n"
                           "  linux: {docker: [{image: cimg/base:stable}], steps: [checkout]}\n"
                           "  mac:\n    parameters: {v: {type: string, default: x}}\n"
                           "    macos: {xcode: 15.0.0}\n    resource_class: macos.m1.medium.gen1\n"
                           "    steps: [checkout]\n"
                           "  win:\n    machine: {image: windows-server-2022-gui:current, "
                           "shell: powershell.exe}\n    resource_class: windows.medium\n"
                           "    steps: [checkout]\n"
                           "  gpu: {machine: {image: linux-cuda-12:default}, "
                           "resource_class: gpu.nvidia.medium, steps: [checkout]}\n"
                           "  arm: {machine: {image: ubuntu-2204:current}, "
                           "resource_class: arm.medium, steps: [checkout]}\n"
                           "workflows:\n  w:\n    jobs:\n      - linux\n"
                           "      - mac: {matrix: {parameters: {v: [a, b, c]}}}\n"
                           "      - win: {requires: [linux]}\n      - gpu\n      - arm\n";
        struct config_opts o = {.arch = "x86_64"};
        struct config *c = must_load(yaml, &o);
        if (!c)
                return;
        CHECK(wjob(c, "w", "linux") && wjob(c, "w", "linux")->spec &&
              !wjob(c, "w", "linux")->unrunnable);
        const struct config_job *m = wjob(c, "w", "mac-b");
        CHECK(m && m->spec == NULL && m->unrunnable && strstr(m->unrunnable, "macOS"));
        const struct config_job *w = wjob(c, "w", "win");
        CHECK(w && !w->spec && strstr(w->unrunnable, "Windows"));
        CHECK(w && w->requires[0] && strcmp(w->requires[0], "linux") == 0);
        CHECK(wjob(c, "w", "gpu") && strstr(wjob(c, "w", "gpu")->unrunnable, "GPU"));
        CHECK(wjob(c, "w", "arm") && strstr(wjob(c, "w", "arm")->unrunnable, "Arm"));
        /* one message per job, however many matrix instances and standalone compiles */
        CHECK_INTEQ(n_warnings_with(c, "job 'mac' cannot run"), 1);
        CHECK_INTEQ(n_warnings_with(c, "cannot run on this builder"), 4);
        CHECK_INTEQ(n_warnings_with(c, "no executor"), 0);
        config_free(c);
        /* an Arm builder runs Arm jobs */
        o.arch = "aarch64";
        c = must_load(yaml, &o);
        CHECK(c && wjob(c, "w", "arm") && wjob(c, "w", "arm")->spec &&
              !wjob(c, "w", "arm")->unrunnable);
        config_free(c);
}

#define SCHED                                                                                      \
        "version: 2.1\njobs:\n  a: {machine: true, steps: [checkout]}\nworkflows:\n"               \
        "  push:\n    jobs: [a]\n"                                                                 \
        "  nightly:\n    triggers:\n      - schedule:\n          cron: \"0 2 * * *\"\n"            \
        "          filters: {branches: {only: [main]}}\n    jobs: [a]\n"                           \
        "  by-name:\n    when: {equal: [weekly, << pipeline.schedule.name >>]}\n    jobs: [a]\n"

TEST(scheduled_workflows_run_only_in_scheduled_pipelines)
{
        struct config_opts o = {.branch = "main"};
        struct config *c = must_load(SCHED, &o);
        CHECK(c && config_find_workflow(c, "push") && !config_find_workflow(c, "nightly") &&
              !config_find_workflow(c, "by-name"));
        config_free(c);
        o.trigger = CONFIG_TRIGGER_SCHEDULE;
        c = must_load(SCHED, &o);
        CHECK(c && config_find_workflow(c, "nightly") && !config_find_workflow(c, "by-name"));
        config_free(c);
        o.schedule_name = "weekly";
        c = must_load(SCHED, &o);
        CHECK(c && config_find_workflow(c, "nightly") && config_find_workflow(c, "by-name"));
        config_free(c);
        o.branch = "dev"; /* the schedule's branch filter */
        c = must_load(SCHED, &o);
        CHECK(c && !config_find_workflow(c, "nightly"));
        config_free(c);
        expect_error_opts("version: 2.1\njobs:\n  a: {machine: true, steps: [checkout]}\n"
                          "workflows:\n  n:\n    triggers: [{schedule: {cron: \"0 2 * *\"}}]\n"
                          "    jobs: [a]\n",
                          NULL, "cron of 5 fields");
}

TEST(resource_classes_gen_suffixes_and_self_hosted)
{
        struct config *c = must_load("version: 2.1\njobs:\n"
                                     "  a: {machine: true, resource_class: medium.gen2, "
                                     "steps: [checkout]}\n"
                                     "  b: {machine: true, resource_class: large.gen3, "
                                     "steps: [checkout]}\n"
                                     "  r: {machine: true, resource_class: acme/gpu-box, "
                                     "steps: [checkout]}\n",
                                     NULL);
        if (!c)
                return;
        json_t *ea = json_object_get(config_find_job(c, "a")->spec, "executor");
        json_t *eb = json_object_get(config_find_job(c, "b")->spec, "executor");
        json_t *er = json_object_get(config_find_job(c, "r")->spec, "executor");
        CHECK_INTEQ(
            json_integer_value(json_object_get(json_object_get(ea, "resources"), "memory_mb")),
            4096);
        CHECK_INTEQ(
            json_integer_value(json_object_get(json_object_get(eb, "resources"), "memory_mb")),
            8192);
        /* the self-hosted class is what agents route on */
        CHECK_STREQ(sget(er, "resource_class"), "acme/gpu-box");
        check_specs_valid(c);
        config_free(c);
        expect_error("version: 2.1\njobs:\n  a: {machine: true, resource_class: huge, "
                     "steps: [checkout]}\n",
                     "unknown resource_class 'huge'");
        expect_error("version: 2.1\njobs:\n  a: {machine: true, resource_class: a/b/c, "
                     "steps: [checkout]}\n",
                     "unknown resource_class 'a/b/c'");
}

TEST(pipeline_values_of_issue_13)
{
        json_t *tp = json_pack("{s:{s:s}}", "circleci", "trigger_type", "github_app");
        struct config_opts o = {.branch = "main",
                                .project = "gh/acme/app",
                                .base_revision = "abc123",
                                .trigger = CONFIG_TRIGGER_SCHEDULE,
                                .schedule_name = "nightly",
                                .trigger_parameters = tp};
        struct config *c =
            must_load("version: 2.1\njobs:\n  a:\n    machine: true\n    steps:\n"
                      "      - run: echo << pipeline.trigger_source >> << pipeline.project.type >>"
                      " << pipeline.project.slug >> << pipeline.schedule.name >>"
                      " << pipeline.git.base_revision >> << pipeline.git.branch.is_default >>"
                      " << pipeline.trigger_parameters.circleci.trigger_type >>"
                      " [<< pipeline.trigger_parameters.gitlab.x >>]\n",
                      &o);
        const struct config_job *j = c ? config_find_job(c, "a") : NULL;
        if (j)
                CHECK_STREQ(sget(step(j, 0), "command"), "echo scheduled_pipeline github "
                                                         "gh/acme/app nightly abc123 true "
                                                         "github_app []");
        config_free(c);
        o.branch = "dev";
        o.default_branch = "dev";
        o.trigger = CONFIG_TRIGGER_WEBHOOK;
        c = must_load("version: 2.1\njobs:\n  a:\n    machine: true\n    steps:\n"
                      "      - run: echo << pipeline.git.branch.is_default >> "
                      "<< pipeline.trigger_source >>\n",
                      &o);
        j = c ? config_find_job(c, "a") : NULL;
        if (j)
                CHECK_STREQ(sget(step(j, 0), "command"), "echo true webhook");
        config_free(c);
        json_decref(tp);
        /* pipeline values inside a parameter's value are substituted too */
        c = must_load("version: 2.1\nparameters:\n  env: {type: string, default: staging}\n"
                      "jobs:\n  a:\n    parameters:\n      to: {type: string, default: "
                      "\"<< pipeline.parameters.env >>\"}\n    machine: true\n"
                      "    steps: [run: deploy << parameters.to >>]\n",
                      NULL);
        j = c ? config_find_job(c, "a") : NULL;
        if (j)
                CHECK_STREQ(sget(step(j, 0), "command"), "deploy staging");
        config_free(c);
}

TEST(executor_environment_is_merged_under_the_jobs)
{
        struct config *c =
            must_load("version: 2.1\nexecutors:\n  e:\n    docker: [{image: cimg/base:stable}]\n"
                      "    environment: {A: exec, B: exec}\n"
                      "  l:\n    machine: true\n    environment: [X=1, Y=exec]\n"
                      "jobs:\n  a:\n    executor: e\n    environment: {B: job, C: job}\n"
                      "    steps: [checkout]\n"
                      "  b:\n    executor: l\n    environment: [Y=job]\n    steps: [checkout]\n"
                      "  c:\n    executor: e\n    steps: [checkout]\n",
                      NULL);
        if (!c)
                return;
        const struct config_job *a = config_find_job(c, "a");
        CHECK_STREQ(env_value(a, "A"), "exec");
        CHECK_STREQ(env_value(a, "B"), "job");
        CHECK_STREQ(env_value(a, "C"), "job");
        CHECK_INTEQ(json_array_size(json_object_get(a->spec, "environment")), 3);
        const struct config_job *b = config_find_job(c, "b");
        CHECK_STREQ(env_value(b, "X"), "1");
        CHECK_STREQ(env_value(b, "Y"), "job");
        CHECK_STREQ(env_value(config_find_job(c, "c"), "B"), "exec");
        config_free(c);
}

#define REQ                                                                                        \
        "version: 2.1\njobs:\n"                                                                    \
        "  build: {machine: true, steps: [checkout]}\n"                                            \
        "  deploy: {machine: true, steps: [checkout]}\n"                                           \
        "  cleanup: {machine: true, steps: [checkout]}\n"                                          \
        "  notify: {machine: true, steps: [checkout]}\n"                                           \
        "  gate: {type: no-op}\n"                                                                  \
        "workflows:\n  w:\n    jobs:\n      - build\n"                                             \
        "      - deploy: {requires: [build]}\n"                                                    \
        "      - gate:\n          requires: [{deploy: [success, failed]}]\n"                       \
        "      - cleanup:\n          requires:\n            - build: terminal\n"                   \
        "            - gate\n"                                                                     \
        "      - notify:\n          requires: [{build: canceled}, {deploy: not_run}]\n"

TEST(requires_statuses_are_kept_per_entry_through_no_op_jobs)
{
        struct config *c = must_load(REQ, NULL);
        if (!c)
                return;
        CHECK(wjob(c, "w", "gate") == NULL); /* a no-op job is satisfied at once */
        const struct config_job *cl = wjob(c, "w", "cleanup");
        CHECK(cl && drv_strv_len(cl->requires) == 2);
        if (cl && drv_strv_len(cl->requires) == 2) {
                CHECK_STREQ(cl->requires[0], "build");
                CHECK_INTEQ(config_job_requires_status(cl, 0), CONFIG_REQ_TERMINAL);
                CHECK_STREQ(cl->requires[1], "deploy"); /* through the no-op gate */
                CHECK_INTEQ(config_job_requires_status(cl, 1),
                            CONFIG_REQ_SUCCESS | CONFIG_REQ_FAILED);
        }
        const struct config_job *d = wjob(c, "w", "deploy");
        CHECK(d && config_job_requires_status(d, 0) == CONFIG_REQ_SUCCESS);
        const struct config_job *n = wjob(c, "w", "notify");
        CHECK(n && config_job_requires_status(n, 0) == CONFIG_REQ_CANCELED &&
              config_job_requires_status(n, 1) == CONFIG_REQ_NOT_RUN);
        CHECK_INTEQ(config_req_bit("blocked"), CONFIG_REQ_NOT_RUN);
        CHECK_INTEQ(config_req_bit("timedout"), CONFIG_REQ_FAILED);
        config_free(c);
        expect_error("version: 2.1\njobs:\n  a: {machine: true, steps: [checkout]}\n"
                     "  b: {machine: true, steps: [checkout]}\nworkflows:\n  w:\n    jobs:\n"
                     "      - a\n      - b: {requires: [{a: finished}]}\n",
                     "a requires status is success, failed, canceled, unauthorized, not_run or "
                     "terminal");
}

TEST(a_job_listed_twice_is_named_job_1_and_job_2)
{
        struct config *c = must_load(
            "version: 2.1\njobs:\n  test:\n    parameters: {v: {type: string, default: x}}\n"
            "    machine: true\n    steps: [run: echo << parameters.v >>]\n"
            "  report: {machine: true, steps: [checkout]}\n"
            "workflows:\n  w:\n    jobs:\n      - test\n      - test: {v: y}\n"
            "      - report: {requires: [test]}\n",
            NULL);
        if (!c)
                return;
        const struct config_job *t1 = wjob(c, "w", "test-1"), *t2 = wjob(c, "w", "test-2");
        CHECK(t1 && t2 && !wjob(c, "w", "test"));
        if (t2)
                CHECK_STREQ(sget(step(t2, 0), "command"), "echo y");
        const struct config_job *r = wjob(c, "w", "report");
        CHECK(r && drv_strv_len(r->requires) == 2); /* waits for both */
        config_free(c);
}

TEST(serial_group_is_a_workflow_job_key_not_a_parameter)
{
        struct config_opts o = {.project = "gh/acme/app"};
        struct config *c =
            must_load("version: 2.1\njobs:\n  d: {machine: true, steps: [checkout]}\n"
                      "workflows:\n  w:\n    jobs:\n      - d:\n"
                      "          serial-group: << pipeline.project.slug >>/deploy\n",
                      &o);
        const struct config_job *d = c ? wjob(c, "w", "d") : NULL;
        CHECK(d && d->serial_group && strcmp(d->serial_group, "gh/acme/app/deploy") == 0);
        config_free(c);
        expect_error("version: 2.1\njobs:\n  d: {machine: true, steps: [checkout]}\n"
                     "workflows:\n  w:\n    jobs:\n      - d: {serial-group: 'a b'}\n",
                     "serial-group 'a b' must be");
}

TEST(machine_keys_shell_and_resource_class)
{
        struct config *c = must_load("version: 2.1\njobs:\n  a:\n    machine:\n"
                                     "      image: ubuntu-2204:current\n      shell: /bin/bash -eo "
                                     "pipefail\n      resource_class: large\n      "
                                     "docker_layer_caching: true\n    steps: [checkout]\n",
                                     NULL);
        const struct config_job *j = c ? config_find_job(c, "a") : NULL;
        if (j) {
                CHECK_STREQ(sget(j->spec, "shell"), "/bin/bash -eo pipefail");
                CHECK_STREQ(sget(json_object_get(j->spec, "executor"), "resource_class"), "large");
        }
        config_free(c);
}

TEST(expressions_in_fields_filters_and_when)
{
        const char *yaml =
            "version: 2.1\nparameters:\n  n: {type: integer, default: 3}\n"
            "jobs:\n  a:\n    machine: true\n"
            "    parallelism: << pipeline.git.branch == \"main\" and 10 or 1 >>\n"
            "    steps:\n      - run: echo << pipeline.git.tag or \"no tag\" >> "
            "<< pipeline.parameters.n >= 3 >> << not pipeline.git.tag >>\n"
            "      - run: cat <<EOF >> out\n"
            "  b: {machine: true, steps: [checkout]}\n"
            "workflows:\n  w:\n    jobs:\n      - a\n"
            "      - b:\n          filters: pipeline.git.branch == \"main\" or "
            "pipeline.git.branch starts-with \"release/\"\n"
            "  m:\n    when: pipeline.git.branch matches /^rel.*/ and not (pipeline.number < 1)\n"
            "    jobs: [b]\n";
        struct config_opts o = {.branch = "main", .build_num = 5};
        struct config *c = must_load(yaml, &o);
        const struct config_job *a = c ? wjob(c, "w", "a") : NULL;
        if (a) {
                CHECK_INTEQ(a->parallelism, 10);
                CHECK_STREQ(sget(step(a, 0), "command"), "echo no tag true true");
                CHECK_STREQ(sget(step(a, 1), "command"), "cat <<EOF >> out");
        }
        CHECK(c && wjob(c, "w", "b") && !config_find_workflow(c, "m"));
        config_free(c);
        /* `\<<` is CircleCI's escape for a literal `<<`; a heredoc around shell text that
         * mentions parameters.json is shell text, not an expression */
        c = must_load("version: 2.1\njobs:\n  a:\n    parameters: {f: {type: string, default: "
                      "out}}\n    machine: true\n    steps:\n      - run: |\n"
                      "          cat > x \\<<EOF\n          hi\n          EOF\n"
                      "          cat <<EOF >> parameters.json && echo << parameters.f >>\n",
                      &o);
        const struct config_job *h = c ? config_find_job(c, "a") : NULL;
        if (h)
                CHECK_STREQ(sget(step(h, 0), "command"),
                            "cat > x <<EOF\nhi\nEOF\ncat <<EOF >> parameters.json && echo out\n");
        config_free(c);
        /* a literal that merely mentions a pipeline value is a literal (true: non-empty) */
        c = must_load("version: 2.1\njobs:\n  a: {machine: true, steps: [checkout]}\n"
                      "workflows:\n  w:\n    when: update pipeline.yml\n    jobs: [a]\n",
                      &o);
        CHECK(c && config_find_workflow(c, "w"));
        config_free(c);
        o.branch = "release/1.2";
        c = must_load(yaml, &o);
        CHECK(c && wjob(c, "w", "a") && wjob(c, "w", "a")->parallelism == 1);
        CHECK(c && wjob(c, "w", "b") && config_find_workflow(c, "m"));
        config_free(c);
        o.branch = "dev";
        c = must_load(yaml, &o);
        CHECK(c && !wjob(c, "w", "b"));
        config_free(c);
        /* what the documentation does not have is refused, naming the construct */
        expect_error(JOB_OF("echo << pipeline.git.branch ends-with \"x\" >>"),
                     "operator 'ends-with' is not supported");
        expect_error(JOB_OF("echo << pipeline.git.branch == 'x' >>"),
                     "single-quoted strings are not supported");
        expect_error(JOB_OF("echo << pipeline.git.branch && true >>"),
                     "operator '&&' is not supported");
        expect_error(JOB_OF("echo << pipeline.number starts-with \"1\" >>"),
                     "starts-with takes strings");
        expect_error(JOB_OF("echo << pipeline.nope == 1 >>"), "unknown pipeline value");
        expect_error(JOB_OF("echo << len(pipeline.git.branch) >>"), "not supported");
}

TEST(deploy_step_is_refused_with_use_run)
{
        expect_error("version: 2.1\njobs:\n  a:\n    machine: true\n    steps:\n"
                     "      - deploy: {command: ./deploy.sh}\n",
                     "use `run`");
}

TEST(no_op_job_needs_no_executor_and_is_not_standalone)
{
        struct config *c =
            must_load("version: 2.1\njobs:\n  a: {machine: true, steps: [checkout]}\n"
                      "  hold: {type: no-op}\n"
                      "workflows:\n  w:\n    jobs: [a, {hold: {requires: [a]}}]\n",
                      NULL);
        CHECK(c && !config_find_job(c, "hold") && config_find_job(c, "a"));
        CHECK(c && config_find_workflow(c, "w") && config_find_workflow(c, "w")->n_jobs == 1);
        config_free(c);
}

TEST(accepted_but_unused_keys_warn)
{
        struct config *c =
            must_load("version: 2.1\njobs:\n  a:\n    machine: true\n"
                      "    retention: {caches: 7d}\n    steps: [checkout]\n"
                      "  b:\n    docker: [{image: x, aws_auth: {oidc_role_arn: r}}]\n"
                      "    steps: [checkout]\n"
                      "workflows:\n  w:\n    max_auto_reruns: 2\n    jobs: [a]\n",
                      NULL);
        CHECK_INTEQ(n_warnings_with(c, "retention is accepted and ignored"), 1);
        CHECK_INTEQ(n_warnings_with(c, "max_auto_reruns is accepted and ignored"), 1);
        CHECK_INTEQ(n_warnings_with(c, "aws_auth is accepted and ignored"), 1);
        config_free(c);
}

int main(void)
{
        RUN(any_top_level_key_is_accepted_for_anchors);
        RUN(unrunnable_jobs_compile_as_not_run_each_listed_once);
        RUN(scheduled_workflows_run_only_in_scheduled_pipelines);
        RUN(resource_classes_gen_suffixes_and_self_hosted);
        RUN(pipeline_values_of_issue_13);
        RUN(executor_environment_is_merged_under_the_jobs);
        RUN(requires_statuses_are_kept_per_entry_through_no_op_jobs);
        RUN(a_job_listed_twice_is_named_job_1_and_job_2);
        RUN(serial_group_is_a_workflow_job_key_not_a_parameter);
        RUN(machine_keys_shell_and_resource_class);
        RUN(expressions_in_fields_filters_and_when);
        RUN(deploy_step_is_refused_with_use_run);
        RUN(no_op_job_needs_no_executor_and_is_not_standalone);
        RUN(accepted_but_unused_keys_warn);
        TEST_DONE();
}

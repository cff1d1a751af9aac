/* test_config.c: the CircleCI config compiler — features, and that every error path names
 * FILE:LINE:COL. */
#include "cfgtest.h"

TEST(short_and_long_step_forms)
{
        struct drv_error e = {0};
        struct config *c =
            load("version: 2.1\njobs:\n  b:\n    machine: true\n    steps:\n"
                 "      - checkout\n      - run: make\n"
                 "      - run:\n          name: Test\n          command: make test\n"
                 "          no_output_timeout: 1h30m\n          background: true\n"
                 "      - restore_cache:\n          key: a\n          keys: [b, c]\n",
                 NULL, &e);
        CHECK(c != NULL);
        if (!c) {
                printf("#   %s\n", e.message);
                return;
        }
        const struct config_job *j = config_find_job(c, "b");
        CHECK(j != NULL);
        CHECK_STREQ(sget(step(j, 0), "type"), "checkout");
        CHECK_STREQ(sget(step(j, 1), "command"), "make");
        CHECK_STREQ(sget(step(j, 2), "name"), "Test");
        CHECK_INTEQ(json_integer_value(json_object_get(step(j, 2), "no_output_timeout")), 5400);
        CHECK(json_is_true(json_object_get(step(j, 2), "background")));
        CHECK_INTEQ(json_array_size(json_object_get(step(j, 3), "keys")), 3);
        config_free(c);
}

TEST(commands_with_parameters_and_steps_parameters)
{
        const char *y = "version: 2.1\n"
                        "commands:\n"
                        "  greet:\n"
                        "    parameters:\n"
                        "      who: {type: string, default: world}\n"
                        "      loud: {type: boolean, default: false}\n"
                        "      then: {type: steps, default: []}\n"
                        "    steps:\n"
                        "      - run: echo hello << parameters.who >>\n"
                        "      - when:\n"
                        "          condition: << parameters.loud >>\n"
                        "          steps: [run: echo LOUD]\n"
                        "      - << parameters.then >>\n"
                        "jobs:\n"
                        "  b:\n"
                        "    docker: [{image: cimg/base:2024.01}]\n"
                        "    steps:\n"
                        "      - greet\n"
                        "      - greet:\n"
                        "          who: drover\n"
                        "          loud: true\n"
                        "          then: [run: echo after, checkout]\n";
        struct drv_error e = {0};
        struct config *c = load(y, NULL, &e);
        CHECK(c != NULL);
        if (!c) {
                printf("#   %s\n", e.message);
                return;
        }
        const struct config_job *j = config_find_job(c, "b");
        CHECK_INTEQ(json_array_size(json_object_get(j->spec, "steps")), 5);
        CHECK_STREQ(sget(step(j, 0), "command"), "echo hello world");
        CHECK_STREQ(sget(step(j, 1), "command"), "echo hello drover");
        CHECK_STREQ(sget(step(j, 2), "command"), "echo LOUD");
        CHECK_STREQ(sget(step(j, 3), "command"), "echo after");
        CHECK_STREQ(sget(step(j, 4), "type"), "checkout");
        CHECK_STREQ(sget(json_object_get(j->spec, "executor"), "kind"), "docker");
        config_free(c);
}

TEST(parameter_types_are_checked)
{
        const char *head = "version: 2.1\ncommands:\n  c:\n    parameters:\n";
        char buf[1024];
        snprintf(
            buf, sizeof(buf),
            "%s      n: {type: integer}\n    steps: [run: echo]\njobs:\n  b:\n    machine: true\n"
            "    steps: [c: {n: abc}]\n",
            head);
        expect_error(buf, "parameter 'n' must be an integer");
        snprintf(buf, sizeof(buf),
                 "%s      e: {type: enum, enum: [a, b]}\n    steps: [run: echo]\njobs:\n  b:\n"
                 "    machine: true\n    steps: [c: {e: z}]\n",
                 head);
        expect_error(buf, "'z' is not one of its enum values");
        snprintf(buf, sizeof(buf),
                 "%s      v: {type: env_var_name}\n    steps: [run: echo]\njobs:\n  b:\n"
                 "    machine: true\n    steps: [c: {v: 1BAD}]\n",
                 head);
        expect_error(buf, "must be an environment variable name");
        snprintf(buf, sizeof(buf),
                 "%s      v: {type: string}\n    steps: [run: echo]\njobs:\n  b:\n"
                 "    machine: true\n    steps: [c]\n",
                 head);
        expect_error(buf, "t.yml:10:13: command 'c': missing required parameter 'v'");
        snprintf(buf, sizeof(buf),
                 "%s      v: {type: string, default: x}\n    steps: [run: echo]\njobs:\n  b:\n"
                 "    machine: true\n    steps: [c: {w: 1}]\n",
                 head);
        expect_error(buf, "command 'c' has no parameter 'w'");
}

TEST(executors_and_resource_classes)
{
        const char *y = "version: 2.1\n"
                        "executors:\n"
                        "  py:\n"
                        "    parameters:\n"
                        "      tag: {type: string, default: '3.11'}\n"
                        "    docker:\n"
                        "      - image: cimg/python:<< parameters.tag >>\n"
                        "        auth: {username: u, password: p}\n"
                        "      - image: redis:7\n"
                        "        name: cache\n"
                        "    resource_class: large\n"
                        "    working_directory: /srv/app\n"
                        "jobs:\n"
                        "  t:\n"
                        "    executor: {name: py, tag: '3.12'}\n"
                        "    environment: {A: '1'}\n"
                        "    parallelism: 3\n"
                        "    steps: [checkout]\n";
        struct drv_error e = {0};
        struct config *c = load(y, NULL, &e);
        CHECK(c != NULL);
        if (!c) {
                printf("#   %s\n", e.message);
                return;
        }
        const struct config_job *j = config_find_job(c, "t");
        json_t *ex = json_object_get(j->spec, "executor");
        json_t *imgs = json_object_get(ex, "images");
        CHECK_STREQ(sget(json_array_get(imgs, 0), "image"), "cimg/python:3.12");
        CHECK_STREQ(sget(json_array_get(imgs, 1), "name"), "cache");
        CHECK_INTEQ(
            json_integer_value(json_object_get(json_object_get(ex, "resources"), "memory_mb")),
            8192);
        CHECK_STREQ(sget(j->spec, "working_directory"), "/srv/app");
        CHECK_INTEQ(j->parallelism, 3);
        CHECK_INTEQ(
            json_integer_value(json_object_get(json_object_get(j->spec, "id"), "node_total")), 3);
        config_free(c);
        expect_error("version: 2.1\njobs:\n  t:\n    machine: true\n    resource_class: huge\n"
                     "    steps: [checkout]\n",
                     "t.yml:5:21: unknown resource_class 'huge'");
}

TEST(workflows_requires_matrix_and_filters)
{
        const char *y = "version: 2.1\n"
                        "jobs:\n"
                        "  build: {machine: true, steps: [checkout]}\n"
                        "  test:\n"
                        "    parameters:\n"
                        "      v: {type: string}\n"
                        "    machine: true\n"
                        "    steps: [run: echo << parameters.v >>]\n"
                        "  deploy: {machine: true, steps: [checkout]}\n"
                        "workflows:\n"
                        "  main:\n"
                        "    jobs:\n"
                        "      - build\n"
                        "      - test:\n"
                        "          requires: [build]\n"
                        "          matrix:\n"
                        "            parameters: {v: ['1', '2', '3']}\n"
                        "            exclude: [{v: '2'}]\n"
                        "      - hold: {type: approval, requires: [test]}\n"
                        "      - deploy:\n"
                        "          requires: [hold]\n"
                        "          filters: {branches: {only: [main, /release-.*/]}}\n";
        struct config_opts o = {.branch = "main"};
        struct drv_error e = {0};
        struct config *c = load(y, &o, &e);
        CHECK(c != NULL);
        if (!c) {
                printf("#   %s\n", e.message);
                return;
        }
        const struct config_workflow *w = config_find_workflow(c, "main");
        CHECK(w && w->n_jobs == 4);
        if (w && w->n_jobs == 4) {
                CHECK_STREQ(w->jobs[0].name, "build");
                CHECK_STREQ(w->jobs[1].name, "test-1");
                CHECK_STREQ(w->jobs[2].name, "test-3");
                CHECK_STREQ(w->jobs[3].name, "deploy");
                CHECK_STREQ(w->jobs[1].requires[0], "build");
                /* the approval is satisfied locally: deploy requires what hold required */
                CHECK_INTEQ(drv_strv_len(w->jobs[3].requires), 2);
                CHECK_STREQ(w->jobs[3].requires[0], "test-1");
                CHECK_STREQ(w->jobs[3].requires[1], "test-3");
                CHECK_STREQ(sget(step(&w->jobs[2], 0), "command"), "echo 3");
        }
        CHECK(config_find_job(c, "test") == NULL); /* needs parameters */
        check_specs_valid(c);
        config_free(c);
        struct config_opts o2 = {.branch = "feature"};
        c = load(y, &o2, &e);
        w = c ? config_find_workflow(c, "main") : NULL;
        CHECK(w && w->n_jobs == 3);
        config_free(c);
        struct config_opts o3 = {.tag = "v1.0"};
        c = load(y, &o3, &e);
        w = c ? config_find_workflow(c, "main") : NULL;
        CHECK(w && w->n_jobs == 0); /* no job has a tags filter */
        config_free(c);
}

TEST(anchors_aliases_and_merge_keys)
{
        const char *y = "version: 2.1\n"
                        "defaults: &defaults\n"
                        "  machine: true\n"
                        "  working_directory: /w\n"
                        "jobs:\n"
                        "  a:\n"
                        "    <<: *defaults\n"
                        "    steps: &s [run: echo a]\n"
                        "  b:\n"
                        "    <<: *defaults\n"
                        "    working_directory: /override\n"
                        "    steps: *s\n";
        struct drv_error e = {0};
        struct config *c = load(y, NULL, &e);
        CHECK(c != NULL);
        if (!c) {
                printf("#   %s\n", e.message);
                return;
        }
        CHECK_STREQ(sget(config_find_job(c, "a")->spec, "working_directory"), "/w");
        CHECK_STREQ(sget(config_find_job(c, "b")->spec, "working_directory"), "/override");
        CHECK_STREQ(sget(step(config_find_job(c, "b"), 0), "command"), "echo a");
        config_free(c);
}

TEST(billion_laughs_is_an_error_not_an_oom)
{
        const char *y = "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
                        "b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
                        "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\n"
                        "d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
                        "e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\n"
                        "f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\n"
                        "g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f, *f]\n"
                        "h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g, *g]\n";
        expect_error(y, "alias bomb");
}

TEST(errors_name_file_line_column)
{
        expect_error("version: 2.1\njobs:\n  a:\n    machine: true\n    stepz: []\n",
                     "t.yml:5:5: unknown key 'stepz' in job 'a'");
        expect_error(
            "version: 2.1\norbs:\n  node: drovertest/absent@5\njobs: {a: {machine: true, steps: "
            "[node/install]}}\n",
            "t.yml:3:9: orb 'node' (drovertest/absent@5) is not available offline");
        expect_error("version: 2.1\njobs:\n  a:\n    machine: true\n    steps: [frobnicate]\n",
                     "unknown step or command 'frobnicate'");
        expect_error("version: 3\njobs: {}\n", "version must be 2 or 2.1");
        expect_error("version: 2.1\njobs:\n  a: {machine: true, steps: [checkout]}\nworkflows:\n"
                     "  w:\n    jobs:\n      - a: {requires: [zzz]}\n",
                     "job 'a' requires 'zzz', which is not in workflow 'w'");
        expect_error("version: 2.1\njobs:\n  a: {machine: true, steps: [checkout]}\n"
                     "  b: {machine: true, steps: [checkout]}\nworkflows:\n  w:\n    jobs:\n"
                     "      - a: {requires: [b]}\n      - b: {requires: [a]}\n",
                     "has a cycle");
        expect_error("version: 2.1\njobs:\n  a:\n    machine: true\n    steps:\n      - run:\n"
                     "          command: x\n          no_output_timeout: soon\n",
                     "t.yml:8:30: no_output_timeout must be a duration");
        expect_error("version: 2.1\njobs: [1\n", "t.yml:");
        /* found by fuzz_config: a list as a map key crashed the compiler */
        expect_error("version: 2.1\n? [a]\n: b\n", "t.yml:2:3: a map key must be a string");
        expect_error(
            "version: 2.1\ncommands:\n  c:\n    steps: [c]\njobs:\n  a: {machine: true, steps: [c]}\n",
            "t.yml:4:13: command 'c' calls itself (through 'c')");
}

TEST(validate_reports_every_error)
{
        char path[] = "/tmp/drover-cfg-XXXXXX";
        int fd = mkstemp(path);
        const char *y =
            "version: 2.1\njobs:\n  a:\n    machine: true\n    stepz: []\n    steps: [nope]\n"
            "  b:\n    machine: true\n    resource_class: huge\n    steps: [checkout]\n";
        CHECK(fd >= 0 && drv_write_all(fd, y, strlen(y)) == 0);
        close(fd);
        char **errors = NULL;
        struct drv_error e = {0};
        int n = config_validate(path, NULL, &errors, &e);
        CHECK(n >= 3);
        CHECK(drv_strv_len(errors) == (size_t)n);
        drv_strv_free(errors);
        unlink(path);
}

TEST(pipeline_values_and_when_conditions)
{
        const char *y =
            "version: 2.1\n"
            "parameters:\n"
            "  deploy: {type: boolean, default: false}\n"
            "jobs:\n"
            "  a:\n"
            "    machine: true\n"
            "    steps:\n"
            "      - run: echo << pipeline.git.branch >> << pipeline.number >>\n"
            "      - when:\n"
            "          condition:\n"
            "            and: [<< pipeline.parameters.deploy >>, {equal: [main, << pipeline.git.branch >>]}]\n"
            "          steps: [run: echo DEPLOY]\n"
            "      - unless:\n"
            "          condition: {matches: {pattern: '^feat.*', value: << pipeline.git.branch >>}}\n"
            "          steps: [run: echo NOT-FEATURE]\n";
        json_t *params = json_pack("{s:b}", "deploy", 1);
        struct config_opts o = {.branch = "main", .build_num = 42, .pipeline_parameters = params};
        struct drv_error e = {0};
        struct config *c = load(y, &o, &e);
        CHECK(c != NULL);
        if (c) {
                const struct config_job *j = config_find_job(c, "a");
                CHECK_STREQ(sget(step(j, 0), "command"), "echo main 42");
                CHECK_STREQ(sget(step(j, 1), "command"), "echo DEPLOY");
                CHECK_STREQ(sget(step(j, 2), "command"), "echo NOT-FEATURE");
        } else {
                printf("#   %s\n", e.message);
        }
        config_free(c);
        json_decref(params);
}

int main(void)
{
        RUN(short_and_long_step_forms);
        RUN(commands_with_parameters_and_steps_parameters);
        RUN(parameter_types_are_checked);
        RUN(executors_and_resource_classes);
        RUN(workflows_requires_matrix_and_filters);
        RUN(anchors_aliases_and_merge_keys);
        RUN(billion_laughs_is_an_error_not_an_oom);
        RUN(errors_name_file_line_column);
        RUN(validate_reports_every_error);
        RUN(pipeline_values_and_when_conditions);
        TEST_DONE();
}

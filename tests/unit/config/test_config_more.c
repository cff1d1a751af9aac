/* test_config_more.c: the config compiler — one test per further behaviour (step forms, job
 * keys, environment, workflows, conditions) and per bound (recursion, expansion, matrix). */
#include "cfgtest.h"

#define JOB_HEAD "version: 2.1\njobs:\n  a:\n    machine: true\n"

static size_t n_steps(const struct config_job *j)
{
        return json_array_size(json_object_get(j->spec, "steps"));
}

/* The value of env var name in a job spec env array (NULL when absent). */
static const char *env_get(json_t *env, const char *name)
{
        size_t i;
        json_t *v;
        json_array_foreach (env, i, v)
                if (strcmp(sget(v, "name"), name) == 0)
                        return sget(v, "value");
        return NULL;
}

TEST(steps_key_splices_a_steps_parameter)
{
        struct config *c = must_load("version: 2.1\ncommands:\n  wrap:\n    parameters:\n"
                                     "      body: {type: steps}\n    steps:\n"
                                     "      - run: echo before\n"
                                     "      - steps: << parameters.body >>\n"
                                     "      - run: echo after\n"
                                     "jobs:\n  a:\n    machine: true\n    steps:\n"
                                     "      - wrap:\n          body: [run: one, run: two]\n",
                                     NULL);
        if (!c)
                return;
        const struct config_job *j = config_find_job(c, "a");
        CHECK_INTEQ(n_steps(j), 4);
        CHECK_STREQ(sget(step(j, 1), "command"), "one");
        CHECK_STREQ(sget(step(j, 2), "command"), "two");
        CHECK_STREQ(sget(step(j, 3), "command"), "echo after");
        config_free(c);
}

TEST(recursive_command_is_an_error)
{
        expect_error("version: 2.1\ncommands:\n  c:\n    steps: [d]\n  d:\n    steps: [run: x, c]\n"
                     "jobs:\n  a: {machine: true, steps: [c]}\n",
                     "t.yml:6:21: command 'c' calls itself (through 'd')");
}

TEST(command_nesting_depth_is_bounded)
{
        struct strbuf y = STRBUF_INIT;
        strbuf_puts(&y, "version: 2.1\ncommands:\n");
        for (int i = 0; i < 40; i++)
                strbuf_printf(&y, "  c%d:\n    steps: [c%d]\n", i, i + 1);
        strbuf_puts(&y, "  c40:\n    steps: [run: x]\njobs:\n  a: {machine: true, steps: [c0]}\n");
        expect_error(y.buf, "commands nest deeper than 32");
        strbuf_release(&y);
}

TEST(exponential_command_expansion_is_bounded)
{
        /* each command calls the one below twice: 2^24 steps if nothing stopped it */
        struct strbuf y = STRBUF_INIT;
        strbuf_puts(&y, "version: 2.1\ncommands:\n  c0:\n    steps: [run: x]\n");
        for (int i = 1; i <= 24; i++)
                strbuf_printf(&y, "  c%d:\n    steps: [c%d, c%d]\n", i, i - 1, i - 1);
        strbuf_puts(&y, "jobs:\n  a: {machine: true, steps: [c24]}\n");
        expect_error(y.buf, "the job expands to more than 10000 steps");
        strbuf_release(&y);
}

TEST(matrix_larger_than_bound_is_an_error)
{
        expect_error("version: 2.1\njobs:\n  a:\n    parameters: {x: {type: string}, y: {type: "
                     "string}}\n    machine: true\n    steps: [checkout]\nworkflows:\n  w:\n"
                     "    jobs:\n      - a:\n          matrix:\n            parameters:\n"
                     "              x: [1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,"
                     "23,24,25,26,27,28,29,30,31,32]\n"
                     "              y: [1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,"
                     "23,24,25,26,27,28,29,30,31,32]\n",
                     "t.yml:12:13: matrix of job 'a' expands to more than 1000 jobs");
}

TEST(matrix_name_template_and_alias_requires)
{
        struct config *c =
            must_load("version: 2.1\njobs:\n  t:\n    parameters:\n      os: {type: string}\n"
                      "      n: {type: integer}\n    machine: true\n"
                      "    steps: [run: 'echo << parameters.os >> << parameters.n >>']\n"
                      "  done: {machine: true, steps: [checkout]}\nworkflows:\n  w:\n    jobs:\n"
                      "      - t:\n          name: test-<< matrix.os >>-<< matrix.n >>\n"
                      "          matrix:\n            alias: all-tests\n"
                      "            parameters: {os: [linux, mac], n: [1, 2]}\n"
                      "            exclude: [{os: mac, n: 2}]\n"
                      "      - done: {requires: [all-tests]}\n",
                      NULL);
        if (!c)
                return;
        const struct config_workflow *w = config_find_workflow(c, "w");
        CHECK(w && w->n_jobs == 4);
        if (w && w->n_jobs == 4) {
                CHECK_STREQ(w->jobs[0].name, "test-linux-1");
                CHECK_STREQ(w->jobs[1].name, "test-linux-2");
                CHECK_STREQ(w->jobs[2].name, "test-mac-1");
                CHECK_STREQ(sget(step(&w->jobs[2], 0), "command"), "echo mac 1");
                CHECK_STREQ(w->jobs[3].name, "done");
                CHECK_INTEQ(drv_strv_len(w->jobs[3].requires), 3);
                CHECK_STREQ(sget(json_object_get(w->jobs[0].spec, "id"), "name"), "test-linux-1");
        }
        config_free(c);
}

TEST(job_name_override_in_workflow)
{
        struct config *c =
            must_load(JOB_HEAD "    steps: [checkout]\nworkflows:\n  w:\n    jobs:\n"
                               "      - a\n      - a: {name: again, requires: [a]}\n",
                      NULL);
        if (!c)
                return;
        const struct config_workflow *w = config_find_workflow(c, "w");
        CHECK(w && w->n_jobs == 2 && strcmp(w->jobs[1].name, "again") == 0);
        CHECK(w && w->n_jobs == 2 && strcmp(w->jobs[1].job, "a") == 0);
        CHECK(w && w->n_jobs == 2 && strcmp(w->jobs[1].requires[0], "a") == 0);
        config_free(c);
}

TEST(version_2_config_and_workflows_version_key)
{
        struct config *c = must_load("version: 2\njobs:\n  build:\n    docker:\n      - image: x\n"
                                     "    steps: [checkout, {run: make}]\n"
                                     "workflows:\n  version: 2\n  main:\n    jobs: [build]\n",
                                     NULL);
        if (!c)
                return;
        CHECK(c->n_workflows == 1 && strcmp(c->workflows[0].name, "main") == 0);
        config_free(c);
        expect_error("version: 2\nexecutors:\n  e: {machine: true}\njobs: {}\n",
                     "t.yml:3:3: executors needs version 2.1");
        expect_error("jobs: {}\n", "version");
}

TEST(environment_map_list_and_opts_env)
{
        const char *env[] = {"FROM_OPTS=1", NULL};
        struct config_opts o = {.env = env};
        struct config *c = must_load(JOB_HEAD "    environment:\n      - A=1\n      - B=x=y\n"
                                              "    steps:\n      - run:\n          command: x\n"
                                              "          environment: {C: 3, D: 'true'}\n",
                                     &o);
        if (!c)
                return;
        const struct config_job *j = config_find_job(c, "a");
        json_t *jenv = json_object_get(j->spec, "environment");
        CHECK_STREQ(env_get(jenv, "A"), "1");
        CHECK_STREQ(env_get(jenv, "B"), "x=y");
        CHECK_STREQ(env_get(jenv, "FROM_OPTS"), "1");
        json_t *senv = json_object_get(step(j, 0), "environment");
        CHECK_STREQ(env_get(senv, "C"), "3");
        CHECK_STREQ(env_get(senv, "D"), "true");
        config_free(c);
        expect_error(JOB_HEAD "    environment: [NOEQUALS]\n    steps: [checkout]\n",
                     "t.yml:5:19:");
        expect_error(JOB_HEAD "    environment: {1BAD: x}\n    steps: [checkout]\n",
                     "t.yml:5:19: '1BAD' is not a valid environment variable name");
}

TEST(machine_true_or_object_and_docker_fields)
{
        struct config *c = must_load(
            "version: 2.1\njobs:\n  m:\n    machine: {image: ubuntu-2204:current}\n"
            "    resource_class: xlarge\n    steps: [checkout]\n"
            "  d:\n    docker:\n      - image: cimg/base:1\n        entrypoint: /bin/sh\n"
            "        command: [-c, sleep 1]\n        user: root\n        environment: {E: v}\n"
            "        auth: {username: u, password: p}\n      - image: redis\n        name: cache\n"
            "    steps: [checkout]\n",
            NULL);
        if (!c)
                return;
        json_t *ex = json_object_get(config_find_job(c, "m")->spec, "executor");
        CHECK_STREQ(sget(ex, "kind"), "machine");
        CHECK_INTEQ(
            json_integer_value(json_object_get(json_object_get(ex, "resources"), "memory_mb")),
            16384);
        ex = json_object_get(config_find_job(c, "d")->spec, "executor");
        json_t *im = json_array_get(json_object_get(ex, "images"), 0);
        CHECK_STREQ(sget(ex, "kind"), "docker");
        CHECK_STREQ(json_string_value(json_array_get(json_object_get(im, "entrypoint"), 0)),
                    "/bin/sh");
        CHECK_INTEQ(json_array_size(json_object_get(im, "command")), 2);
        CHECK_STREQ(sget(im, "user"), "root");
        CHECK_STREQ(sget(json_object_get(im, "auth"), "password"), "p");
        CHECK_STREQ(env_get(json_object_get(im, "environment"), "E"), "v");
        config_free(c);
        expect_error("version: 2.1\njobs:\n  a:\n    machine: true\n    docker: [{image: x}]\n"
                     "    steps: [checkout]\n",
                     "t.yml:4:5: a job has one of docker, machine or macos, not more");
        expect_error("version: 2.1\njobs:\n  a:\n    steps: [checkout]\n", "has no executor");
        expect_error("version: 2.1\njobs:\n  a: {machine: false, steps: [checkout]}\n",
                     "t.yml:3:16: machine must be true or a map");
        expect_error("version: 2.1\njobs:\n  a: {machine: {imag: x}, steps: [checkout]}\n",
                     "t.yml:3:17: unknown key 'imag' in machine");
        expect_error("version: 2.1\njobs:\n  a: {docker: [{image: ''}], steps: [checkout]}\n",
                     "t.yml:3:16: each docker entry needs an image");
}

TEST(every_builtin_step_compiles_with_its_options)
{
        struct config *c = must_load(
            JOB_HEAD "    steps:\n      - checkout: {path: src}\n"
                     "      - save_cache: {key: 'v1-{{ checksum \"x\" }}', paths: [a, b]}\n"
                     "      - restore_cache: {key: k1}\n"
                     "      - persist_to_workspace: {root: ., paths: [out]}\n"
                     "      - attach_workspace: {at: /tmp/ws}\n"
                     "      - store_artifacts: {path: out, destination: report}\n"
                     "      - store_test_results: {path: results}\n"
                     "      - setup_remote_docker: {docker_layer_caching: true}\n"
                     "      - add_ssh_keys: {fingerprints: ['aa:bb']}\n"
                     "      - add_ssh_keys: {fingerprints: []}\n"
                     "      - run: {command: x, when: on_fail, name: N, working_directory: w,"
                     " shell: /bin/sh}\n",
            NULL);
        if (!c)
                return;
        const struct config_job *j = config_find_job(c, "a");
        CHECK_INTEQ(n_steps(j), 11);
        CHECK_STREQ(sget(step(j, 0), "path"), "src");
        CHECK_STREQ(sget(step(j, 1), "key"), "v1-{{ checksum \"x\" }}");
        CHECK_STREQ(json_string_value(json_array_get(json_object_get(step(j, 2), "keys"), 0)),
                    "k1");
        CHECK_STREQ(sget(step(j, 3), "root"), ".");
        CHECK_STREQ(sget(step(j, 4), "at"), "/tmp/ws");
        CHECK_STREQ(sget(step(j, 5), "destination"), "report");
        CHECK_STREQ(sget(step(j, 6), "path"), "results");
        CHECK(json_is_true(json_object_get(step(j, 7), "docker_layer_caching")));
        CHECK_INTEQ(json_array_size(json_object_get(step(j, 8), "fingerprints")), 1);
        CHECK_STREQ(sget(step(j, 9), "type"), "add_ssh_keys");
        CHECK_STREQ(sget(step(j, 10), "when"), "on_fail");
        CHECK_STREQ(sget(step(j, 10), "shell"), "/bin/sh");
        config_free(c);
        expect_error(JOB_HEAD "    steps: [save_cache: {paths: [a]}]\n", "t.yml:5:");
        /* found by fuzz_config: a null command made a spec the validator rejects */
        expect_error(JOB_HEAD "    steps:\n      - run:\n          command:\n",
                     "t.yml:7:11: run needs a command");
        expect_error(JOB_HEAD "    steps:\n      - run:\n", "t.yml:6:13: run needs a command");
        expect_error(JOB_HEAD "    steps: [save_cache: {key: k, paths: []}]\n",
                     "t.yml:5:41: save_cache paths must be a non-empty list of strings");
        expect_error(JOB_HEAD "    steps: [persist_to_workspace: {root: ., paths: []}]\n",
                     "persist_to_workspace paths must be a non-empty list");
        expect_error(JOB_HEAD "    steps: [attach_workspace: {at: null}]\n",
                     "attach_workspace needs at");
        expect_error(JOB_HEAD "    steps: [run: {command: x, when: later}]\n",
                     "t.yml:5:37: when must be on_success, on_fail or always");
        expect_error(JOB_HEAD "    steps: [{run: x, checkout: {}}]\n",
                     "a step must be a name or a map with exactly one key");
}

TEST(conditions_literals_not_or_equal)
{
        struct config *c = must_load(
            JOB_HEAD
            "    steps:\n"
            "      - when: {condition: {or: [false, {not: true}, {equal: [1, 1]}]}, steps: [run: A]}\n"
            "      - when: {condition: {and: [true, {not: {equal: [a, b]}}]}, steps: [run: B]}\n"
            "      - when: {condition: '', steps: [run: C]}\n"
            "      - unless: {condition: 0, steps: [run: D]}\n"
            "      - when: {condition: some-string, steps: [run: E]}\n",
            NULL);
        if (!c)
                return;
        const struct config_job *j = config_find_job(c, "a");
        CHECK_INTEQ(n_steps(j), 4);
        CHECK_STREQ(sget(step(j, 0), "command"), "A");
        CHECK_STREQ(sget(step(j, 1), "command"), "B");
        CHECK_STREQ(sget(step(j, 2), "command"), "D");
        CHECK_STREQ(sget(step(j, 3), "command"), "E");
        config_free(c);
        expect_error(JOB_HEAD "    steps: [when: {condition: {xor: [a]}, steps: [run: x]}]\n",
                     "xor");
        expect_error(JOB_HEAD "    steps: [when: {condition: true}]\n",
                     "needs a condition and steps");
}

TEST(job_without_steps_is_an_error)
{
        expect_error(JOB_HEAD "    steps: []\n", "t.yml:5:12: job 'a' has no steps");
        expect_error(JOB_HEAD "    steps: [when: {condition: false, steps: [run: x]}]\n",
                     "t.yml:5:12: job 'a' has no steps left after when/unless");
        expect_error(JOB_HEAD "    environment: {}\n", "job 'a' has no steps");
}

TEST(workflow_when_and_unless)
{
        const char *y = "version: 2.1\nparameters:\n  go: {type: boolean, default: true}\n"
                        "jobs:\n  a: {machine: true, steps: [checkout]}\nworkflows:\n"
                        "  w1:\n    when: << pipeline.parameters.go >>\n    jobs: [a]\n"
                        "  w2:\n    unless: << pipeline.parameters.go >>\n    jobs: [a]\n";
        struct config *c = must_load(y, NULL);
        CHECK(c && config_find_workflow(c, "w1") && !config_find_workflow(c, "w2"));
        config_free(c);
        json_t *p = json_pack("{s:s}", "go", "false");
        struct config_opts o = {.pipeline_parameters = p};
        c = must_load(y, &o);
        CHECK(c && !config_find_workflow(c, "w1") && config_find_workflow(c, "w2"));
        config_free(c);
        json_decref(p);
}

TEST(pipeline_values_and_vcs_from_opts)
{
        struct config_opts o = {.branch = "dev",
                                .tag = NULL,
                                .revision = "abcdef0123",
                                .repo_url = "git@example.com:o/r.git",
                                .project = "gh/o/r",
                                .build_num = 7};
        struct config *c =
            must_load(JOB_HEAD "    steps:\n      - run: echo << pipeline.git.revision >> "
                               "<< pipeline.project.git_url >> << pipeline.number >>\n",
                      &o);
        if (!c)
                return;
        const struct config_job *j = config_find_job(c, "a");
        CHECK_STREQ(sget(step(j, 0), "command"), "echo abcdef0123 git@example.com:o/r.git 7");
        json_t *vcs = json_object_get(j->spec, "vcs");
        CHECK_STREQ(sget(vcs, "revision"), "abcdef0123");
        CHECK_STREQ(sget(vcs, "url"), "git@example.com:o/r.git");
        CHECK_STREQ(sget(vcs, "branch"), "dev");
        config_free(c);
        expect_error(JOB_HEAD "    steps: [run: echo << pipeline.parameters.nope >>]\n", "nope");
        expect_error(JOB_HEAD "    steps: [run: echo << pipeline.bogus >>]\n", "pipeline.bogus");
}

TEST(unknown_keys_are_errors_with_position)
{
        expect_error("version: 2.1\ncommands:\n  c: {description: d, steps: [run: x], bogus: 1}\n"
                     "jobs:\n  a: {description: d, machine: true, steps: [c]}\n",
                     "t.yml:3:40: unknown key 'bogus' in command 'c'");
        expect_error(JOB_HEAD "    steps: [run: {command: x, timeout: 5}]\n",
                     "unknown key 'timeout' in run");
        expect_error(JOB_HEAD "    steps: [checkout]\nworkflows:\n  w:\n    jobs:\n"
                              "      - a: {requirez: [b]}\n",
                     "requirez");
        expect_error(JOB_HEAD "    steps: [checkout]\nworkflows:\n  w:\n    jobs:\n"
                              "      - a: {filters: {branch: {only: main}}}\n",
                     "t.yml:9:23: unknown key 'branch' in filters (branches or tags)");
}

TEST(merge_key_with_a_list_of_maps)
{
        struct config *c = must_load("version: 2.1\nreferences:\n  m: &m {machine: true}\n"
                                     "  w: &w {working_directory: /w, shell: /bin/sh}\n"
                                     "jobs:\n  a:\n    <<: [*w, *m]\n    steps: [checkout]\n",
                                     NULL);
        if (!c)
                return;
        const struct config_job *j = config_find_job(c, "a");
        CHECK_STREQ(sget(j->spec, "working_directory"), "/w");
        CHECK_STREQ(sget(j->spec, "shell"), "/bin/sh");
        config_free(c);
        expect_error("version: 2.1\njobs:\n  a:\n    <<: [1]\n", "t.yml:4:");
        expect_error("version: 2.1\njobs: *nowhere\n", "t.yml:2:");
}

TEST(validate_reports_each_error_once)
{
        char path[] = "/tmp/drover-cfg-XXXXXX";
        int fd = mkstemp(path);
        const char *y = "version: 2.1\njobs:\n  a:\n    machine: true\n    steps: [nope]\n"
                        "workflows:\n  w:\n    jobs: [a, {b: {requires: [q]}}, c]\n";
        CHECK(fd >= 0 && drv_write_all(fd, y, strlen(y)) == 0);
        close(fd);
        char **errors = NULL;
        struct drv_error e = {0};
        int n = config_validate(path, NULL, &errors, &e);
        CHECK_INTEQ(n, 4); /* nope, requires q, unknown b, unknown c */
        for (int i = 0; i < n; i++) {
                CHECK(strncmp(errors[i], path, strlen(path)) == 0);
                for (int k = 0; k < i; k++)
                        CHECK(strcmp(errors[i], errors[k]) != 0);
        }
        drv_strv_free(errors);
        unlink(path);
}

TEST(pipeline_parameters_are_declared_and_typed)
{
        const char *y =
            "version: 2.1\nparameters:\n  b: {type: boolean, default: false}\n"
            "  i: {type: integer, default: 1}\njobs:\n  a: {machine: true, steps: [checkout]}\n";
        json_t *p = json_pack("{s:s}", "nope", "1");
        struct config_opts o = {.pipeline_parameters = p};
        struct drv_error e = {0};
        struct config *c = load(y, &o, &e);
        CHECK(c == NULL &&
              strstr(e.message, "t.yml:3:3: pipeline parameter 'nope' is not declared"));
        config_free(c);
        json_decref(p);
        p = json_pack("{s:s}", "b", "maybe");
        o.pipeline_parameters = p;
        c = load(y, &o, &e);
        CHECK(c == NULL && strstr(e.message, "pipeline parameter 'b' must be true or false"));
        config_free(c);
        json_decref(p);
        p = json_pack("{s:s}", "i", "x1");
        o.pipeline_parameters = p;
        c = load(y, &o, &e);
        CHECK(c == NULL && strstr(e.message, "pipeline parameter 'i' must be an integer"));
        config_free(c);
        json_decref(p);
        p = json_pack("{s:s, s:s}", "i", "-3", "b", "true");
        o.pipeline_parameters = p;
        c = must_load(y, &o);
        config_free(c);
        json_decref(p);
}

TEST(unknown_workflow_and_filter_keys_are_errors)
{
        expect_error(JOB_HEAD
                     "    steps: [checkout]\nworkflows:\n  w:\n    jobz: [a]\n    jobs: [a]\n",
                     "t.yml:8:5: unknown key 'jobz' in workflow 'w'");
        expect_error(JOB_HEAD "    steps: [checkout]\nworkflows:\n  w:\n    jobs:\n"
                              "      - a: {filters: {branches: {onyl: main}}}\n",
                     "unknown key 'onyl' in filters.branches");
}

TEST(anchor_on_a_merge_value_survives_the_merge)
{
        /* found by fuzz_config: the map under `<<` was freed while its anchor still named it */
        struct config *c = must_load("version: 2.1\njobs:\n  a:\n    <<: &d {machine: true}\n"
                                     "    steps: [checkout]\n  b:\n    <<: *d\n"
                                     "    steps: [checkout]\n",
                                     NULL);
        if (!c)
                return;
        CHECK_STREQ(sget(json_object_get(config_find_job(c, "b")->spec, "executor"), "kind"),
                    "machine");
        config_free(c);
}

TEST(parameter_declarations_are_checked)
{
        const char *h = "version: 2.1\ncommands:\n  c:\n    parameters:\n";
        char buf[512];
        snprintf(buf, sizeof(buf),
                 "%s      e: {type: enum}\n    steps: [run: x]\n"
                 "jobs: {a: {machine: true, steps: [c]}}\n",
                 h);
        expect_error(buf, "t.yml:5:10: enum parameter 'e' has no enum list");
        snprintf(buf, sizeof(buf),
                 "%s      s: {type: strin}\n    steps: [run: x]\n"
                 "jobs: {a: {machine: true, steps: [c]}}\n",
                 h);
        expect_error(buf, "t.yml:5:17: parameter 's' has an unknown type 'strin'");
        snprintf(buf, sizeof(buf),
                 "%s      x: {type: string, defualt: 1}\n    steps: [run: x]\n"
                 "jobs: {a: {machine: true, steps: [c]}}\n",
                 h);
        expect_error(buf, "t.yml:5:25: unknown key 'defualt' in parameter 'x'");
        snprintf(buf, sizeof(buf),
                 "%s      x: {default: 1}\n    steps: [run: x]\n"
                 "jobs: {a: {machine: true, steps: [c]}}\n",
                 h);
        expect_error(buf, "parameter 'x' has no type");
}

TEST(pre_steps_and_post_steps_wrap_the_job)
{
        struct config_opts o = {.branch = "dev"};
        struct config *c = must_load(
            JOB_HEAD "    steps: [run: main]\nworkflows:\n  w:\n    jobs:\n      - a:\n"
                     "          pre-steps: [run: pre1, run: 'pre2 << pipeline.git.branch >>']\n"
                     "          post-steps: [run: post]\n",
            &o);
        if (!c)
                return;
        const struct config_job *j = &c->workflows[0].jobs[0];
        CHECK_INTEQ(n_steps(j), 4);
        CHECK_STREQ(sget(step(j, 0), "command"), "pre1");
        CHECK_STREQ(sget(step(j, 1), "command"), "pre2 dev");
        CHECK_STREQ(sget(step(j, 2), "command"), "main");
        CHECK_STREQ(sget(step(j, 3), "command"), "post");
        config_free(c);
        expect_error(JOB_HEAD "    steps: [run: main]\nworkflows:\n  w:\n    jobs:\n"
                              "      - a: {pre-steps: run}\n",
                     "pre-steps must be a list of steps");
}

TEST(duplicate_map_keys_are_errors)
{
        expect_error("version: 2.1\njobs:\n  a: {machine: true, steps: [checkout]}\n"
                     "  a: {machine: true, steps: [run: dup]}\n",
                     "t.yml:4:3: duplicate key 'a' (first at 3:3)");
        expect_error(JOB_HEAD "    steps: [checkout]\n    machine: false\n",
                     "t.yml:6:5: duplicate key 'machine' (first at 4:5)");
}

TEST(jobs_after_an_approval_require_what_it_required)
{
        struct config *c = must_load(
            "version: 2.1\njobs:\n  a: {machine: true, steps: [checkout]}\n"
            "  b: {machine: true, steps: [checkout]}\nworkflows:\n  w:\n    jobs:\n"
            "      - a\n      - hold: {type: approval, requires: [a]}\n"
            "      - h2: {type: approval, requires: [hold]}\n      - b: {requires: [h2, a]}\n",
            NULL);
        if (!c)
                return;
        const struct config_workflow *w = config_find_workflow(c, "w");
        CHECK(w && w->n_jobs == 2);
        if (w && w->n_jobs == 2) {
                CHECK_STREQ(w->jobs[1].name, "b");
                CHECK_INTEQ(drv_strv_len(w->jobs[1].requires), 1);
                CHECK_STREQ(w->jobs[1].requires[0], "a");
        }
        config_free(c);
}

TEST(matrix_values_in_requires)
{
        struct config *c = must_load(
            "version: 2.1\njobs:\n  b: {parameters: {os: {type: string}}, machine: true, steps: "
            "[checkout]}\n  t: {parameters: {os: {type: string}}, machine: true, steps: "
            "[checkout]}\nworkflows:\n  w:\n    jobs:\n"
            "      - b: {name: build-<< matrix.os >>, matrix: {parameters: {os: [linux, mac]}}}\n"
            "      - t: {name: test-<< matrix.os >>, requires: [build-<< matrix.os >>], matrix: "
            "{parameters: {os: [linux, mac]}}}\n",
            NULL);
        if (!c)
                return;
        const struct config_workflow *w = config_find_workflow(c, "w");
        CHECK(w && w->n_jobs == 4);
        if (w && w->n_jobs == 4) {
                CHECK_STREQ(w->jobs[2].name, "test-linux");
                CHECK_INTEQ(drv_strv_len(w->jobs[2].requires), 1);
                CHECK_STREQ(w->jobs[2].requires[0], "build-linux");
                CHECK_STREQ(w->jobs[3].requires[0], "build-mac");
        }
        config_free(c);
}

TEST(error_list_is_capped)
{
        char path[] = "/tmp/drover-cfg-XXXXXX";
        int fd = mkstemp(path);
        struct strbuf y = STRBUF_INIT;
        strbuf_puts(&y, JOB_HEAD "    steps:\n");
        for (int i = 0; i < 3000; i++)
                strbuf_printf(&y, "      - nope%d\n", i);
        CHECK(fd >= 0 && drv_write_all(fd, y.buf, y.len) == 0);
        close(fd);
        char **errors = NULL;
        struct drv_error e = {0};
        int n = config_validate(path, NULL, &errors, &e);
        CHECK_INTEQ(n, 1001);
        CHECK(n == 1001 && strstr(errors[1000], "more than 1000 errors; stopped listing them"));
        drv_strv_free(errors);
        strbuf_release(&y);
        unlink(path);
}

int main(void)
{
        RUN(steps_key_splices_a_steps_parameter);
        RUN(recursive_command_is_an_error);
        RUN(command_nesting_depth_is_bounded);
        RUN(exponential_command_expansion_is_bounded);
        RUN(matrix_larger_than_bound_is_an_error);
        RUN(matrix_name_template_and_alias_requires);
        RUN(matrix_values_in_requires);
        RUN(job_name_override_in_workflow);
        RUN(version_2_config_and_workflows_version_key);
        RUN(environment_map_list_and_opts_env);
        RUN(machine_true_or_object_and_docker_fields);
        RUN(every_builtin_step_compiles_with_its_options);
        RUN(conditions_literals_not_or_equal);
        RUN(job_without_steps_is_an_error);
        RUN(workflow_when_and_unless);
        RUN(pipeline_values_and_vcs_from_opts);
        RUN(unknown_keys_are_errors_with_position);
        RUN(merge_key_with_a_list_of_maps);
        RUN(anchor_on_a_merge_value_survives_the_merge);
        RUN(validate_reports_each_error_once);
        RUN(error_list_is_capped);
        RUN(duplicate_map_keys_are_errors);
        RUN(jobs_after_an_approval_require_what_it_required);
        RUN(parameter_declarations_are_checked);
        RUN(pre_steps_and_post_steps_wrap_the_job);
        RUN(pipeline_parameters_are_declared_and_typed);
        RUN(unknown_workflow_and_filter_keys_are_errors);
        TEST_DONE();
}

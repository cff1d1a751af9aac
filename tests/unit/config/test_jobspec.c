/* test_jobspec.c: job spec validation — every error names the JSON path; round trips exact. */
#include "executor/jobspec.h"
#include "testlib.h"

#define BASE_HEAD "{\"version\":1,\"id\":{\"job\":\"j\",\"name\":\"n\",\"build_num\":1},"
#define BASE_EXEC "\"executor\":{\"runtime\":\"sandbox\",\"kind\":\"machine\"},"

static int parse(const char *text, struct jobspec **out, struct drv_error *err)
{
        return jobspec_parse(text, strlen(text), out, err);
}

static void expect_error(const char *text, const char *fragment)
{
        struct jobspec *s = NULL;
        struct drv_error e = {0};
        int r = parse(text, &s, &e);
        CHECK(r < 0);
        CHECK(s == NULL);
        if (!strstr(e.message, fragment)) {
                printf("#   error '%s' lacks '%s'\n", e.message, fragment);
                tl_cur_failed = 1;
        }
        jobspec_free(s);
}

TEST(minimal_spec_gets_defaults)
{
        struct jobspec *s = NULL;
        struct drv_error e = {0};
        CHECK(parse(BASE_HEAD BASE_EXEC
                    "\"steps\":[{\"type\":\"run\",\"command\":\"make test\\nmore\"},"
                    "{\"type\":\"checkout\"}]}",
                    &s, &e) == 0);
        if (!s)
                return;
        CHECK_STREQ(s->working_directory, "~/project");
        CHECK_INTEQ(s->job_timeout, 18000);
        CHECK_INTEQ(s->no_output_timeout, 600);
        CHECK_INTEQ(s->node_total, 1);
        CHECK_STREQ(s->steps[0].name, "make test");
        CHECK_STREQ(s->steps[1].name, "Checkout code");
        CHECK(s->steps[0].when == JS_WHEN_ON_SUCCESS);
        jobspec_free(s);
}

TEST(wrong_type_names_the_path)
{
        expect_error(BASE_HEAD BASE_EXEC
                     "\"steps\":[{\"type\":\"run\"},{\"type\":\"run\",\"command\":42}]}",
                     "$.steps[0].command: required field is missing");
        expect_error(BASE_HEAD BASE_EXEC "\"steps\":[{\"type\":\"run\",\"command\":42}]}",
                     "$.steps[0].command: expected a string, got integer");
}

TEST(unknown_fields_are_rejected)
{
        expect_error(BASE_HEAD BASE_EXEC "\"stepz\":[],\"steps\":[{\"type\":\"checkout\"}]}",
                     "$.stepz: unknown field");
        expect_error(BASE_HEAD BASE_EXEC "\"steps\":[{\"type\":\"checkout\",\"command\":\"x\"}]}",
                     "$.steps[0].command: unknown field");
        expect_error(BASE_HEAD BASE_EXEC "\"steps\":[{\"type\":\"teleport\"}]}",
                     "$.steps[0].type: 'teleport' is not one of");
}

TEST(version_is_checked)
{
        expect_error("{\"version\":2}", "unsupported job spec version 2 (this drover speaks 1)");
        expect_error("{\"id\":{}}", "$.version: required field is missing");
        expect_error("[1]", "$: expected an object, got array");
        expect_error("{\"version\":1,", "not valid JSON");
}

TEST(values_are_range_checked)
{
        expect_error(
            "{\"version\":1,\"id\":{\"job\":\"j\",\"name\":\"n\",\"build_num\":1,\"node_index\":"
            "2,\"node_total\":2}," BASE_EXEC "\"steps\":[{\"type\":\"checkout\"}]}",
            "$.id.node_index: 2 must be below node_total 2");
        expect_error(BASE_HEAD BASE_EXEC "\"environment\":[{\"name\":\"1BAD\",\"value\":\"x\"}],"
                                         "\"steps\":[{\"type\":\"checkout\"}]}",
                     "$.environment[0].name: '1BAD' is not a valid variable name");
        expect_error(BASE_HEAD BASE_EXEC "\"steps\":[]}", "$.steps: expected a non-empty array");
        expect_error(BASE_HEAD
                     "\"executor\":{\"kind\":\"docker\"},\"steps\":[{\"type\":\"checkout\"}]}",
                     "$.executor.images: a docker executor needs at least one image");
        expect_error(BASE_HEAD BASE_EXEC
                     "\"storage\":{\"url\":\"ftp://x\"},\"steps\":[{\"type\":\"checkout\"}]}",
                     "$.storage.url: 'ftp://x' is neither");
        expect_error(BASE_HEAD BASE_EXEC
                     "\"vcs\":{\"revision\":\"xyz\"},\"steps\":[{\"type\":\"checkout\"}]}",
                     "$.vcs.revision: 'xyz' is not a 7-40 digit hex sha");
        expect_error(BASE_HEAD BASE_EXEC
                     "\"steps\":[{\"type\":\"save_cache\",\"key\":\"k\",\"paths\":[]}]}",
                     "$.steps[0].paths: must not be empty");
        expect_error(BASE_HEAD BASE_EXEC
                     "\"steps\":[{\"type\":\"run\",\"command\":\"x\",\"no_output_timeout\":0}]}",
                     "$.steps[0].no_output_timeout: 0 is out of range");
}

TEST(round_trip_is_exact)
{
        const char *text = BASE_HEAD
            "\"executor\":{\"runtime\":\"sandbox\",\"kind\":\"docker\",\"images\":[{\"image\":"
            "\"cimg/base:1\",\"auth\":{\"username\":\"u\",\"password\":\"p\"}},{\"image\":\"redis\","
            "\"name\":\"cache\"}],\"resources\":{\"cpus\":1.5,\"memory_mb\":2048}},"
            "\"environment\":[{\"name\":\"A\",\"value\":\"1\",\"secret\":true}],"
            "\"vcs\":{\"url\":\"git@x:y.git\",\"revision\":\"abcdef0\",\"branch\":\"main\"},"
            "\"storage\":{\"url\":\"s3://bucket/p\",\"endpoint\":\"http://127.0.0.1:7480\"},"
            "\"workspace\":{\"layers\":[{\"job\":\"build\",\"key\":\"workspaces/w/build/0.tar.zst\"}]},"
            "\"steps\":[{\"type\":\"run\",\"command\":\"x\",\"background\":true,\"when\":\"always\","
            "\"environment\":[{\"name\":\"B\",\"value\":\"2\"}]},{\"type\":\"restore_cache\","
            "\"keys\":[\"a\",\"b\"]},{\"type\":\"store_artifacts\",\"path\":\"out\",\"destination\":\"o\"}]}";
        struct jobspec *a = NULL, *b = NULL;
        struct drv_error e = {0};
        CHECK(parse(text, &a, &e) == 0);
        if (!a) {
                printf("#   %s\n", e.message);
                return;
        }
        json_t *ja = jobspec_to_json(a);
        CHECK(jobspec_from_json(ja, &b, &e) == 0);
        json_t *jb = b ? jobspec_to_json(b) : NULL;
        CHECK(jb && json_equal(ja, jb));
        CHECK(b && b->executor.n_images == 2 && strcmp(b->executor.images[1].name, "cache") == 0);
        CHECK(b && b->executor.cpus == 1.5 && b->env[0].secret);
        CHECK(b && b->n_layers == 1 && b->steps[0].background &&
              b->steps[0].when == JS_WHEN_ALWAYS);
        json_decref(ja);
        json_decref(jb);
        jobspec_free(a);
        jobspec_free(b);
}

TEST(step_names_are_derived_from_type_and_command)
{
        struct jobspec *s = NULL;
        struct drv_error e = {0};
        CHECK(parse(BASE_HEAD BASE_EXEC
                    "\"steps\":[{\"type\":\"run\",\"command\":\"\\n  first line\\nsecond\"},"
                    "{\"type\":\"run\",\"name\":\"Mine\",\"command\":\"x\"},"
                    "{\"type\":\"save_cache\",\"key\":\"k\",\"paths\":[\"a\"]},"
                    "{\"type\":\"restore_cache\",\"keys\":[\"k\"]},"
                    "{\"type\":\"persist_to_workspace\",\"root\":\".\",\"paths\":[\"a\"]},"
                    "{\"type\":\"attach_workspace\",\"at\":\"w\"},"
                    "{\"type\":\"store_artifacts\",\"path\":\"p\"},"
                    "{\"type\":\"store_test_results\",\"path\":\"p\"},"
                    "{\"type\":\"add_ssh_keys\"},{\"type\":\"setup_remote_docker\"},"
                    "{\"type\":\"run\",\"command\":\" \\n\"},{\"type\":\"checkout\"}]}",
                    &s, &e) == 0);
        if (!s) {
                printf("#   %s\n", e.message);
                return;
        }
        const char *want[] = {NULL,
                              "Mine",
                              "Saving cache",
                              "Restoring cache",
                              "Persisting to workspace",
                              "Attaching workspace",
                              "Uploading artifacts",
                              "Uploading test results",
                              "Installing additional ssh keys",
                              NULL};
        CHECK(s->n_steps == 12);
        CHECK(strstr(s->steps[0].name, "first line") != NULL);
        CHECK(strstr(s->steps[0].name, "second") == NULL);
        for (size_t i = 1; i < 9; i++)
                CHECK_STREQ(s->steps[i].name, want[i]);
        CHECK_STREQ(s->steps[9].name, "Setup a remote Docker engine");
        CHECK_STREQ(s->steps[10].name, "Run");
        CHECK_STREQ(s->steps[11].name, "Checkout code");
        jobspec_free(s);
}

TEST(enums_are_checked)
{
        expect_error(BASE_HEAD BASE_EXEC
                     "\"steps\":[{\"type\":\"run\",\"command\":\"x\",\"when\":\"sometimes\"}]}",
                     "$.steps[0].when: 'sometimes' is not one of");
        expect_error(BASE_HEAD "\"executor\":{\"runtime\":\"vm\",\"kind\":\"machine\"},"
                               "\"steps\":[{\"type\":\"checkout\"}]}",
                     "$.executor.runtime: 'vm' is not one of");
        expect_error(BASE_HEAD "\"executor\":{\"kind\":\"cloud\"},"
                               "\"steps\":[{\"type\":\"checkout\"}]}",
                     "$.executor.kind: 'cloud' is not one of");
        expect_error(BASE_HEAD "\"executor\":{\"kind\":\"machine\",\"network\":\"host\"},"
                               "\"steps\":[{\"type\":\"checkout\"}]}",
                     "$.executor.network: 'host' is not one of");
        /* a value quoted in an error keeps the message on one line */
        expect_error(BASE_HEAD BASE_EXEC
                     "\"steps\":[{\"type\":\"run\",\"command\":\"x\",\"when\":\"a\\nb\\u001b\"}]}",
                     "$.steps[0].when: 'a\\x0ab\\x1b' is not one of");
}

TEST(nested_types_name_the_path)
{
        expect_error(BASE_HEAD "\"executor\":{\"kind\":\"docker\",\"images\":[{\"image\":\"a\","
                               "\"entrypoint\":[\"sh\",3]}]},\"steps\":[{\"type\":\"checkout\"}]}",
                     "$.executor.images[0].entrypoint[1]: expected a string, got integer");
        expect_error(BASE_HEAD BASE_EXEC "\"environment\":[{\"name\":\"A\",\"value\":1}],"
                                         "\"steps\":[{\"type\":\"checkout\"}]}",
                     "$.environment[0].value: expected a string, got integer");
        expect_error(BASE_HEAD BASE_EXEC
                     "\"steps\":[{\"type\":\"run\",\"command\":\"x\",\"background\":\"yes\"}]}",
                     "$.steps[0].background: expected a boolean, got string");
        expect_error(BASE_HEAD BASE_EXEC "\"steps\":[{\"type\":\"restore_cache\",\"keys\":[]}]}",
                     "$.steps[0].keys");
        expect_error("{\"version\":1,\"id\":{\"job\":\"j\",\"name\":\"n\"}," BASE_EXEC
                     "\"steps\":[{\"type\":\"checkout\"}]}",
                     "$.id.build_num: required field is missing");
        expect_error(
            "{\"version\":1,\"id\":{\"job\":\"j\",\"name\":\"n\",\"build_num\":-1}," BASE_EXEC
            "\"steps\":[{\"type\":\"checkout\"}]}",
            "$.id.build_num");
        expect_error(BASE_HEAD "\"steps\":[{\"type\":\"checkout\"}]}",
                     "$.executor: required field is missing");
}

TEST(storage_and_output_urls_are_checked)
{
        expect_error(BASE_HEAD BASE_EXEC
                     "\"storage\":{\"url\":\"s3://b\"},\"steps\":[{\"type\":\"checkout\"}]}",
                     "$.storage.endpoint");
        expect_error(
            BASE_HEAD BASE_EXEC
            "\"storage\":{\"url\":\"file://relative\"},\"steps\":[{\"type\":\"checkout\"}]}",
            "$.storage.url");
        expect_error(BASE_HEAD BASE_EXEC
                     "\"output\":{\"url\":\"gopher://x\"},\"steps\":[{\"type\":\"checkout\"}]}",
                     "$.output.url");
}

TEST(timeouts_and_ssh_defaults)
{
        struct jobspec *s = NULL;
        struct drv_error e = {0};
        CHECK(parse(BASE_HEAD BASE_EXEC
                    "\"timeouts\":{\"job\":60,\"no_output\":5},"
                    "\"ssh\":{\"enabled\":true,\"authorized_keys\":[\"ssh-ed25519 AAAA x\"]},"
                    "\"steps\":[{\"type\":\"checkout\"}]}",
                    &s, &e) == 0);
        if (!s) {
                printf("#   %s\n", e.message);
                return;
        }
        CHECK_INTEQ(s->job_timeout, 60);
        CHECK_INTEQ(s->no_output_timeout, 5);
        CHECK(s->ssh.enabled);
        CHECK_INTEQ(s->ssh.idle_timeout, 600);
        CHECK_INTEQ(s->ssh.max_duration, 7200);
        CHECK(s->executor.network == JS_NET_PRIVATE);
        jobspec_free(s);
        expect_error(BASE_HEAD BASE_EXEC
                     "\"timeouts\":{\"job\":0},\"steps\":[{\"type\":\"checkout\"}]}",
                     "$.timeouts.job");
        expect_error(BASE_HEAD BASE_EXEC
                     "\"timeouts\":{\"jobs\":1},\"steps\":[{\"type\":\"checkout\"}]}",
                     "$.timeouts.jobs: unknown field");
}

TEST(round_trip_keeps_every_section)
{
        const char *text = BASE_HEAD
            "\"executor\":{\"runtime\":\"docker\",\"kind\":\"machine\",\"network\":\"none\","
            "\"resources\":{\"cpus\":2,\"memory_mb\":512,\"pids\":100,\"disk_mb\":1000},"
            "\"docker_host\":{\"url\":\"tcp://127.0.0.1:2376\",\"ca\":\"C\",\"cert\":\"T\",\"key\":\"K\"}},"
            "\"shell\":\"/bin/sh\",\"working_directory\":\"/w\","
            "\"vcs\":{\"url\":\"u\",\"tag\":\"v1\",\"pr_number\":\"12\",\"known_hosts\":\"h\","
            "\"checkout_key\":{\"fingerprint\":\"f\",\"private_key\":\"p\"}},"
            "\"ssh\":{\"enabled\":true,\"authorized_keys\":[\"k\"],\"idle_timeout\":5,\"max_duration\":9},"
            "\"ssh_keys\":[{\"fingerprint\":\"aa\",\"private_key\":\"pk\"}],"
            "\"output\":{\"url\":\"http://127.0.0.1:8585\",\"token\":\"t\"},"
            "\"timeouts\":{\"job\":100,\"no_output\":10},"
            "\"steps\":[{\"type\":\"checkout\",\"path\":\"src\"},{\"type\":\"add_ssh_keys\","
            "\"fingerprints\":[\"aa\"]},{\"type\":\"setup_remote_docker\",\"docker_layer_caching\":true},"
            "{\"type\":\"run\",\"command\":\"x\",\"when\":\"on_fail\",\"shell\":\"sh\","
            "\"working_directory\":\"d\",\"no_output_timeout\":3}]}";
        struct jobspec *a = NULL, *b = NULL;
        struct drv_error e = {0};
        CHECK(parse(text, &a, &e) == 0);
        if (!a) {
                printf("#   %s\n", e.message);
                return;
        }
        json_t *ja = jobspec_to_json(a);
        CHECK(jobspec_from_json(ja, &b, &e) == 0);
        json_t *jb = b ? jobspec_to_json(b) : NULL;
        CHECK(jb && json_equal(ja, jb));
        CHECK(b && b->executor.network == JS_NET_NONE && b->executor.pids == 100);
        CHECK(b && strcmp(b->vcs.checkout_key.private_key, "p") == 0 && b->ssh.idle_timeout == 5);
        CHECK(b && b->n_ssh_keys == 1 && b->steps[2].docker_layer_caching);
        CHECK(b && b->steps[3].when == JS_WHEN_ON_FAIL && b->steps[3].no_output_timeout == 3);
        json_decref(ja);
        json_decref(jb);
        jobspec_free(a);
        jobspec_free(b);
}

TEST(documented_limits_are_enforced)
{
        expect_error("{\"version\":1,\"id\":{\"job\":\"j\",\"name\":\"n\",\"build_num\":1,"
                     "\"node_total\":1001}," BASE_EXEC "\"steps\":[{\"type\":\"checkout\"}]}",
                     "$.id.node_total");
        expect_error(
            "{\"version\":1,\"id\":{\"job\":\"j\",\"name\":\"n\",\"build_num\":4294967296}," BASE_EXEC
            "\"steps\":[{\"type\":\"checkout\"}]}",
            "$.id.build_num");
        expect_error(BASE_HEAD BASE_EXEC "\"steps\":[{\"type\":\"run\",\"command\":\"x\","
                                         "\"no_output_timeout\":604801}]}",
                     "$.steps[0].no_output_timeout");
        expect_error(BASE_HEAD BASE_EXEC
                     "\"ssh\":{\"idle_timeout\":0},\"steps\":[{\"type\":\"checkout\"}]}",
                     "$.ssh.idle_timeout");
        expect_error(BASE_HEAD BASE_EXEC
                     "\"timeouts\":{\"no_output\":604801},\"steps\":[{\"type\":\"checkout\"}]}",
                     "$.timeouts.no_output");
}

#define DOCKER_EXEC(IMAGES)                                                                        \
        "\"executor\":{\"runtime\":\"sandbox\",\"kind\":\"docker\",\"images\":[" IMAGES "],"       \
        "\"resources\":{\"cpus\":2,\"memory_mb\":4096,\"pids\":500}},"                             \
        "\"steps\":[{\"type\":\"checkout\"}]}"

TEST(service_images_take_resources_of_their_own)
{
        struct jobspec *s = NULL;
        struct drv_error e = {0};
        CHECK(parse(BASE_HEAD DOCKER_EXEC("{\"image\":\"a\"},{\"image\":\"redis\",\"resources\":"
                                          "{\"memory_mb\":64,\"cpus\":0.5}},{\"image\":\"pg\"}"),
                    &s, &e) == 0);
        if (!s) {
                printf("#   %s\n", e.message);
                return;
        }
        double cpus;
        uint64_t mem, pids;
        jobspec_service_limits(&s->executor, 1, &cpus, &mem, &pids);
        CHECK(cpus == 0.5 && mem == 64 && pids == 500); /* pids: the executor's */
        jobspec_service_limits(&s->executor, 2, &cpus, &mem, &pids);
        CHECK(cpus == 2 && mem == 4096 && pids == 500); /* none given: the executor's */
        json_t *j = jobspec_to_json(s);
        struct jobspec *b = NULL;
        CHECK(jobspec_from_json(j, &b, &e) == 0);
        CHECK(b && b->executor.images[1].memory_mb == 64 && b->executor.images[1].cpus == 0.5 &&
              b->executor.images[2].memory_mb == 0);
        json_decref(j);
        jobspec_free(b);
        jobspec_free(s);
        expect_error(BASE_HEAD DOCKER_EXEC("{\"image\":\"a\",\"resources\":{\"memory_mb\":64}}"),
                     "$.executor.images[0].resources: the primary image runs with the executor's");
        expect_error(BASE_HEAD DOCKER_EXEC("{\"image\":\"a\"},{\"image\":\"b\",\"resources\":"
                                           "{\"disk_mb\":64}}"),
                     "$.executor.images[1].resources.disk_mb: unknown field");
        expect_error(BASE_HEAD DOCKER_EXEC("{\"image\":\"a\"},{\"image\":\"b\",\"resources\":"
                                           "{\"memory_mb\":\"64M\"}}"),
                     "$.executor.images[1].resources.memory_mb: expected an integer");
        expect_error(BASE_HEAD DOCKER_EXEC("{\"image\":\"a\"},{\"image\":\"b\",\"resources\":"
                                           "{\"cpus\":-1}}"),
                     "$.executor.images[1].resources.cpus: expected a number");
}

int main(void)
{
        RUN(minimal_spec_gets_defaults);
        RUN(wrong_type_names_the_path);
        RUN(unknown_fields_are_rejected);
        RUN(version_is_checked);
        RUN(values_are_range_checked);
        RUN(round_trip_is_exact);
        RUN(step_names_are_derived_from_type_and_command);
        RUN(enums_are_checked);
        RUN(nested_types_name_the_path);
        RUN(storage_and_output_urls_are_checked);
        RUN(timeouts_and_ssh_defaults);
        RUN(round_trip_keeps_every_section);
        RUN(documented_limits_are_enforced);
        RUN(service_images_take_resources_of_their_own);
        TEST_DONE();
}

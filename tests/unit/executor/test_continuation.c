/* test_continuation.c: dynamic config — `setup:` in the compiler and the continuation request
 * drover accepts from a setup workflow's job (executor/continuation.h). */
#include "executor/config/config.h"
#include "executor/continuation.h"
#include "testlib.h"

static const char *const JOBS = "jobs:\n"
                                "  a:\n"
                                "    machine: true\n"
                                "    steps: [{run: 'true'}]\n"
                                "workflows:\n"
                                "  w:\n"
                                "    jobs: [a]\n";

/* Compile "version: V\nsetup: S\n" + JOBS; returns the config (NULL: error in e). */
static struct config *compile_setup(const char *version, const char *setup, struct drv_error *e)
{
        _cleanup_free_ char *y =
            drv_asprintf("version: %s\n%s%s%s%s", version, setup ? "setup: " : "",
                         setup ? setup : "", setup ? "\n" : "", JOBS);
        struct config *c = NULL;
        if (config_load_text("t.yml", y, strlen(y), NULL, &c, e) < 0)
                return NULL;
        return c;
}

TEST(setup_true_marks_a_setup_config)
{
        struct drv_error e = {0};
        struct config *c = compile_setup("2.1", "true", &e);
        CHECK(c && c->setup);
        config_free(c);
        c = compile_setup("2.1", "false", &e);
        CHECK(c && !c->setup);
        config_free(c);
        c = compile_setup("2.1", NULL, &e);
        CHECK(c && !c->setup);
        config_free(c);
}

TEST(setup_must_be_a_boolean_and_needs_version_2_1)
{
        struct drv_error e = {0};
        CHECK(compile_setup("2.1", "yes please", &e) == NULL);
        CHECK(strstr(e.message, "setup must be true or false") != NULL);
        CHECK(compile_setup("2.1", "[true]", &e) == NULL);
        CHECK(strstr(e.message, "setup must be true or false") != NULL);
        CHECK(compile_setup("2", "true", &e) == NULL);
        CHECK(strstr(e.message, "setup: true needs version 2.1") != NULL);
}

static int parse(const char *body, const char *key, json_t **ev, struct drv_error *e)
{
        return continuation_parse(body, strlen(body), key, ev, e);
}

TEST(request_with_the_key_gives_configuration_and_parameters)
{
        struct drv_error e = {0};
        json_t *ev = NULL;
        CHECK(parse("{\"continuation-key\":\"k1\",\"configuration\":\"version: 2.1\\n\","
                    "\"parameters\":{\"s\":\"x\",\"n\":3,\"b\":true}}",
                    "k1", &ev, &e) == 0);
        CHECK_STREQ(json_string_value(json_object_get(ev, "configuration")), "version: 2.1\n");
        CHECK(json_integer_value(json_object_get(json_object_get(ev, "parameters"), "n")) == 3);
        CHECK(json_object_get(ev, "continuation-key") == NULL); /* the key never travels on */
        json_decref(ev);
        ev = NULL;
        CHECK(parse("{\"continuation-key\":\"k1\",\"configuration\":\"x: 1\"}", "k1", &ev, &e) ==
              0);
        CHECK(json_object_size(json_object_get(ev, "parameters")) == 0);
        json_decref(ev);
}

TEST(request_with_another_key_or_bad_fields_is_refused)
{
        struct drv_error e = {0};
        json_t *ev = NULL;
        CHECK(parse("{\"continuation-key\":\"k2\",\"configuration\":\"x\"}", "k1", &ev, &e) ==
              -EPERM);
        CHECK(strstr(e.message, "key is not this job's") != NULL);
        CHECK(parse("{\"configuration\":\"x\"}", "k1", &ev, &e) == -EPERM);
        CHECK(parse("{\"continuation-key\":\"k1\",\"configuration\":\"x\"}", NULL, &ev, &e) ==
              -EPERM);
        CHECK(parse("{\"continuation-key\":\"k1\",\"configuration\":\"\"}", "k1", &ev, &e) ==
              -EINVAL);
        CHECK(parse("{\"continuation-key\":\"k1\",\"configuration\":{}}", "k1", &ev, &e) ==
              -EINVAL);
        CHECK(parse("{\"continuation-key\":\"k1\",\"configuration\":\"x\",\"parameters\":[]}", "k1",
                    &ev, &e) == -EINVAL);
        CHECK(parse("{\"continuation-key\":\"k1\",\"configuration\":\"x\",\"parameters\":"
                    "{\"p\":{\"deep\":1}}}",
                    "k1", &ev, &e) == -EINVAL);
        CHECK(strstr(e.message, "parameter 'p'") != NULL);
        CHECK(parse("[1]", "k1", &ev, &e) == -EINVAL);
        CHECK(parse("{\"continuation-key\":\"k1\",", "k1", &ev, &e) == -EINVAL);
        CHECK(ev == NULL);
}

TEST(keys_are_random_hex_and_go_into_the_spec_as_a_secret)
{
        char a[65], b[65];
        CHECK(continuation_new_key(a) == 0 && continuation_new_key(b) == 0);
        CHECK(strlen(a) == 64 && strspn(a, "0123456789abcdef") == 64);
        CHECK(strcmp(a, b) != 0);
        json_t *spec = json_pack("{s:[{s:s, s:s}]}", "environment", "name", "X", "value", "1");
        CHECK(continuation_spec_add_key(spec, a) == 0);
        json_t *env = json_array_get(json_object_get(spec, "environment"), 1);
        CHECK_STREQ(json_string_value(json_object_get(env, "name")), "CIRCLE_CONTINUATION_KEY");
        CHECK_STREQ(json_string_value(json_object_get(env, "value")), a);
        CHECK(json_is_true(json_object_get(env, "secret")));
        json_decref(spec);
        spec = json_object();
        CHECK(continuation_spec_add_key(spec, a) == 0);
        CHECK(json_array_size(json_object_get(spec, "environment")) == 1);
        json_decref(spec);
}

int main(void)
{
        RUN(setup_true_marks_a_setup_config);
        RUN(setup_must_be_a_boolean_and_needs_version_2_1);
        RUN(request_with_the_key_gives_configuration_and_parameters);
        RUN(request_with_another_key_or_bad_fields_is_refused);
        RUN(keys_are_random_hex_and_go_into_the_spec_as_a_secret);
        TEST_DONE();
}

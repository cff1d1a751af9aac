/* test_orbs.c: orbs in the config compiler — scoping of inline and nested orbs, orb-level
 * parameters, lazy resolution, version resolution and the search order of orb directories and
 * the cache (orb_store.c). */
#include "cfgtest.h"
#include "executor/config/orb.h"

#include <sys/stat.h>

static char tmp[] = "/tmp/drover-test-orbs-XXXXXX";

static void put(const char *rel, const char *text)
{
        _cleanup_free_ char *p = drv_asprintf("%s/%s", tmp, rel);
        _cleanup_free_ char *dir = strdup(p);
        struct drv_error e = {0};
        *strrchr(dir, '/') = '\0';
        CHECK(drv_mkdir_p(dir, 0755, &e) == 0);
        CHECK(drv_write_file_atomic(p, text, strlen(text), 0644, &e) == 0);
}

static const char *cmd_of(const struct config_job *j, size_t i)
{
        return sget(step(j, i), "command");
}

static const struct config_job *wf_job(const struct config *c, const char *name)
{
        const struct config_workflow *w = c ? config_find_workflow(c, "w") : NULL;
        for (size_t i = 0; w && i < w->n_jobs; i++)
                if (strcmp(w->jobs[i].name, name) == 0)
                        return &w->jobs[i];
        return NULL;
}

static const char *const SCOPES = "version: 2.1\n"
                                  "orbs:\n"
                                  "  o:\n"
                                  "    executors:\n"
                                  "      box: {docker: [{image: orb-image}]}\n"
                                  "    commands:\n"
                                  "      mark: {steps: [run: echo orb-mark]}\n"
                                  "      wrap:\n"
                                  "        parameters: {body: {type: steps}}\n"
                                  "        steps: [mark, steps: << parameters.body >>, mark]\n"
                                  "    jobs:\n"
                                  "      j:\n"
                                  "        parameters:\n"
                                  "          e: {type: executor, default: box}\n"
                                  "          s: {type: steps, default: [mark]}\n"
                                  "        executor: << parameters.e >>\n"
                                  "        steps: [wrap: {body: << parameters.s >>}]\n"
                                  "commands:\n"
                                  "  mark: {steps: [run: echo config-mark]}\n"
                                  "executors:\n"
                                  "  box: {docker: [{image: config-image}]}\n"
                                  "workflows:\n"
                                  "  w:\n"
                                  "    jobs:\n"
                                  "      - o/j\n"
                                  "      - o/j: {name: mine, e: box, s: [mark]}\n";

TEST(orb_elements_use_their_orb_and_arguments_keep_the_callers_scope)
{
        struct drv_error e = {0};
        struct config *c = load(SCOPES, NULL, &e);
        if (!c)
                printf("#   %s\n", e.message);
        const struct config_job *d = wf_job(c, "o/j"), *m = wf_job(c, "mine");
        CHECK(d && m);
        if (d && m) {
                /* defaults are the orb's own: its executor and its mark */
                CHECK_STREQ(
                    sget(json_array_get(
                             json_object_get(json_object_get(d->spec, "executor"), "images"), 0),
                         "image"),
                    "orb-image");
                CHECK_STREQ(cmd_of(d, 0), "echo orb-mark");
                CHECK_STREQ(cmd_of(d, 1), "echo orb-mark");
                /* what the config passes names the config's executor and command */
                CHECK_STREQ(
                    sget(json_array_get(
                             json_object_get(json_object_get(m->spec, "executor"), "images"), 0),
                         "image"),
                    "config-image");
                CHECK_STREQ(cmd_of(m, 0), "echo orb-mark");
                CHECK_STREQ(cmd_of(m, 1), "echo config-mark");
                CHECK_STREQ(cmd_of(m, 2), "echo orb-mark");
                check_specs_valid(c);
        }
        config_free(c);
}

TEST(nested_orbs_and_orb_level_parameters)
{
        const char *y = "version: 2.1\n"
                        "orbs:\n"
                        "  outer:\n"
                        "    parameters:\n"
                        "      who: {type: string, default: orb-level}\n"
                        "    orbs:\n"
                        "      inner:\n"
                        "        commands:\n"
                        "          deep: {steps: [run: echo deep]}\n"
                        "    commands:\n"
                        "      a: {steps: [run: echo << parameters.who >>, inner/deep]}\n"
                        "      b:\n"
                        "        parameters: {who: {type: string, default: own}}\n"
                        "        steps: [run: echo << parameters.who >>]\n"
                        "jobs:\n"
                        "  t:\n"
                        "    machine: true\n"
                        "    steps: [outer/a, outer/b, outer/inner/deep, outer/b: {who: arg}]\n";
        struct drv_error e = {0};
        struct config *c = load(y, NULL, &e);
        if (!c)
                printf("#   %s\n", e.message);
        const struct config_job *t = c ? config_find_job(c, "t") : NULL;
        CHECK(t != NULL);
        if (t) {
                CHECK_STREQ(cmd_of(t, 0), "echo orb-level");
                CHECK_STREQ(cmd_of(t, 1), "echo deep");
                CHECK_STREQ(cmd_of(t, 2), "echo own"); /* the element's own parameter wins */
                CHECK_STREQ(cmd_of(t, 3), "echo deep");
                CHECK_STREQ(cmd_of(t, 4), "echo arg");
        }
        config_free(c);
}

TEST(orb_reference_errors)
{
        expect_error("version: 2.1\njobs:\n  t:\n    machine: true\n    steps: [nope/x]\n",
                     "t.yml:5:13: 'nope/x': no orb 'nope' is declared in orbs");
        expect_error("version: 2.1\norbs:\n  o: {commands: {a: {steps: [run: x]}}}\njobs:\n  t:\n"
                     "    machine: true\n    steps: [o/zz]\n",
                     "unknown step or command 'o/zz'");
        expect_error("version: 2\norbs:\n  o: {commands: {}}\njobs:\n  t:\n    machine: true\n"
                     "    steps: [run: x]\n",
                     "orbs need version 2.1");
        expect_error("version: 2.1\norbs:\n  o: circleci/node\n  p: bad ref\njobs:\n  t:\n"
                     "    machine: true\n    steps: [run: x]\n",
                     "orb 'p': 'bad ref' is not an orb reference");
        expect_error("version: 2.1\norbs:\n  o: {comands: {}}\njobs:\n  t:\n    machine: true\n"
                     "    steps: [o/x]\n",
                     "unknown key 'comands' in orb 'o'");
}

TEST(versions_are_parsed_and_matched)
{
        struct orb_ref r;
        struct drv_error e = {0};
        CHECK(orb_ref_parse("circleci/node@5.1.0", &r, &e) == 0);
        CHECK_STREQ(r.ns, "circleci");
        CHECK_STREQ(r.name, "node");
        CHECK_STREQ(r.version, "5.1.0");
        CHECK(orb_ref_parse("circleci/node", &r, &e) == 0);
        CHECK_STREQ(r.version, "volatile");
        CHECK(orb_ref_parse("circleci/node@dev:alpha", &r, &e) == 0);
        CHECK(orb_ref_parse("../x@1", &r, &e) < 0);
        CHECK(orb_ref_parse("a/b@1.2.3.4", &r, &e) < 0);
        CHECK(orb_ref_parse("a/b@1.x", &r, &e) < 0);
        CHECK(orb_ref_parse("a/b/c@1", &r, &e) < 0);
        CHECK(orb_version_matches("1", "1.9.0"));
        CHECK(orb_version_matches("1.2", "1.2.7"));
        CHECK(!orb_version_matches("1.2", "1.20.0"));
        CHECK(!orb_version_matches("1", "10.0.0"));
        CHECK(orb_version_matches("1.2.3", "1.2.3"));
        CHECK(!orb_version_matches("1.2.3", "1.2.30"));
        CHECK(orb_version_matches("volatile", "7.0.0"));
        CHECK(!orb_version_matches("volatile", "dev:x"));
        CHECK(orb_version_cmp("1.10.0", "1.9.9") > 0);
        CHECK(orb_version_cmp("2.0.0", "10.0.0") < 0);
        CHECK(orb_version_cmp("1.2.3", "1.2.3") == 0);
        CHECK(orb_version_cmp("dev:a", "0.0.1") < 0);
}

static const char *orb_src(const char *word)
{
        static char buf[512];
        snprintf(buf, sizeof(buf),
                 "version: 2.1\ncommands:\n  say: {steps: [run: echo %s]}\n"
                 "executors:\n  ex: {machine: true}\n",
                 word);
        return buf;
}

TEST(the_first_directory_with_a_match_wins_then_the_highest_in_it)
{
        put("d1/ns/o@1.0.0.yml", orb_src("d1-100"));
        put("d1/ns/o@1.1.0.yml", orb_src("d1-110"));
        put("d1/ns/o@2.0.0.yml", orb_src("d1-200"));
        put("d2/ns/o@1.9.0.yml", orb_src("d2-190"));
        put("d2/ns/o@3.0.0.yml", orb_src("d2-300"));
        put("cache/ns/o@4.0.0.yml", orb_src("cache-400"));
        put("d1/ns/o@1.bogus.yml", orb_src("bogus"));
        _cleanup_free_ char *d1 = drv_asprintf("%s/d1", tmp), *d2 = drv_asprintf("%s/d2", tmp),
                            *cache = drv_asprintf("%s/cache", tmp);
        const char *dirs[] = {d1, d2, NULL};
        static const struct {
                const char *ref, *word;
        } cases[] = {{"ns/o@1", "d1-110"},        {"ns/o@1.0", "d1-100"},
                     {"ns/o@3", "d2-300"},        {"ns/o@4", "cache-400"},
                     {"ns/o@volatile", "d1-200"}, {"ns/o@1.9.0", "d2-190"}};
        for (size_t i = 0; i < DRV_ARRAY_SIZE(cases); i++) {
                _cleanup_free_ char *y =
                    drv_asprintf("version: 2.1\norbs:\n  x: %s\njobs:\n  t:\n    executor: x/ex\n"
                                 "    steps: [x/say]\n",
                                 cases[i].ref);
                struct config_opts o = {.orb_dirs = dirs, .orb_cache = cache};
                struct drv_error e = {0};
                struct config *c = load(y, &o, &e);
                if (!c)
                        printf("#   %s: %s\n", cases[i].ref, e.message);
                const struct config_job *t = c ? config_find_job(c, "t") : NULL;
                _cleanup_free_ char *want = drv_asprintf("echo %s", cases[i].word);
                CHECK(t && strcmp(cmd_of(t, 0), want) == 0);
                config_free(c);
        }
        struct orb_ref r;
        struct drv_error e = {0};
        _cleanup_free_ char *path = NULL, *ver = NULL;
        CHECK(orb_ref_parse("ns/o@5", &r, &e) == 0);
        CHECK(orb_find(dirs, cache, &r, &path, &ver, &e) == -ENOENT);
}

TEST(registry_orbs_are_resolved_lazily_and_missing_ones_reported_once)
{
        _cleanup_free_ char *d1 = drv_asprintf("%s/d1", tmp);
        const char *dirs[] = {d1, NULL};
        const char *y = "version: 2.1\n"
                        "orbs:\n"
                        "  here: ns/o@1\n"
                        "  gone: ns/missing@1.2.3\n"
                        "  idle: ns/alsomissing@1\n"
                        "jobs:\n"
                        "  a: {machine: true, steps: [here/say, gone/x]}\n"
                        "  b: {machine: true, steps: [gone/x, gone/y]}\n";
        struct config_opts o = {.orb_dirs = dirs, .orb_cache = ""};
        char **errors = NULL;
        put("lazy.yml", y);
        _cleanup_free_ char *path = drv_asprintf("%s/lazy.yml", tmp);
        struct drv_error e = {0};
        int n = config_validate(path, &o, &errors, &e);
        CHECK_INTEQ(n, 1);
        CHECK(errors && errors[0] &&
              strstr(errors[0], "lazy.yml:4:9: orb 'gone' (ns/missing@1.2.3)"
                                " is not available offline") &&
              strstr(errors[0], "/d1/ns/missing@1.2.3.yml") &&
              strstr(errors[0], "`drover orb pull ns/missing@1.2.3`"));
        drv_strv_free(errors);
        /* without gone's uses: it compiles, and the two unused orbs are warnings */
        struct config *c = load("version: 2.1\norbs:\n  here: ns/o@1\n  gone: ns/missing@1.2.3\n"
                                "jobs:\n  a: {machine: true, steps: [here/say]}\n",
                                &o, &e);
        CHECK(c && drv_strv_len(c->warnings) == 1 &&
              strstr(c->warnings[0], "t.yml:4:9: orb 'gone' is declared but"));
        config_free(c);
}

static int fetch_calls;
static int fake_fetch(void *arg, const char *ref, struct drv_error *err)
{
        (void)err;
        fetch_calls++;
        CHECK_STREQ(ref, "ns/fetched@2");
        put("cache/ns/fetched@2.1.0.yml", orb_src((const char *)arg));
        return 0;
}

TEST(a_fetch_hook_fills_the_cache_then_the_orb_is_found_there)
{
        _cleanup_free_ char *cache = drv_asprintf("%s/cache", tmp);
        struct config_opts o = {
            .orb_cache = cache, .orb_fetch = fake_fetch, .orb_fetch_arg = "fetched-210"};
        struct drv_error e = {0};
        struct config *c = load("version: 2.1\norbs:\n  f: ns/fetched@2\njobs:\n"
                                "  t: {machine: true, steps: [f/say, f/say]}\n",
                                &o, &e);
        if (!c)
                printf("#   %s\n", e.message);
        CHECK_INTEQ(fetch_calls, 1);
        const struct config_job *t = c ? config_find_job(c, "t") : NULL;
        CHECK(t && strcmp(cmd_of(t, 1), "echo fetched-210") == 0);
        config_free(c);
}

TEST(a_cached_source_that_changed_since_its_pull_is_refused)
{
        _cleanup_free_ char *cache = drv_asprintf("%s/cache", tmp);
        char digest[80];
        const char *src = orb_src("pulled");
        orb_digest(src, strlen(src), digest);
        put("cache/ns/pinned@1.0.0.yml", src);
        put("cache/ns/pinned@1.0.0.yml.sha256", digest);
        struct config_opts o = {.orb_cache = cache};
        struct drv_error e = {0};
        const char *y = "version: 2.1\norbs:\n  p: ns/pinned@1.0.0\njobs:\n"
                        "  t: {machine: true, steps: [p/say]}\n";
        struct config *c = load(y, &o, &e);
        CHECK(c != NULL);
        config_free(c);
        put("cache/ns/pinned@1.0.0.yml", orb_src("changed"));
        c = load(y, &o, &e);
        CHECK(c == NULL && strstr(e.message, "was recorded when it was fetched"));
        config_free(c);
}

TEST(an_orb_using_itself_is_bounded)
{
        put("d3/ns/self@1.0.0.yml", "version: 2.1\norbs:\n  me: ns/self@1\n"
                                    "commands:\n  loop: {steps: [me/loop]}\n");
        _cleanup_free_ char *d3 = drv_asprintf("%s/d3", tmp);
        const char *dirs[] = {d3, NULL};
        struct config_opts o = {.orb_dirs = dirs, .orb_cache = ""};
        struct drv_error e = {0};
        struct config *c = load("version: 2.1\norbs:\n  s: ns/self@1\njobs:\n"
                                "  t: {machine: true, steps: [s/loop]}\n",
                                &o, &e);
        CHECK(c == NULL && (strstr(e.message, "deeper than") || strstr(e.message, "nest")));
        config_free(c);
}

TEST(search_dirs_are_cli_then_env_then_the_project)
{
        setenv("DROVER_ORB_PATH", "/e1::/e2", 1);
        char *cli[] = {"/c1", "/c2", NULL};
        _cleanup_strv_ char **v = orb_search_dirs(cli, "proj/.circleci/config.yml");
        CHECK(v && drv_strv_len(v) == 5);
        if (v && drv_strv_len(v) == 5) {
                CHECK_STREQ(v[0], "/c1");
                CHECK_STREQ(v[2], "/e1");
                CHECK_STREQ(v[3], "/e2");
                CHECK_STREQ(v[4], "proj/.circleci/orbs");
        }
        unsetenv("DROVER_ORB_PATH");
}

int main(void)
{
        if (!mkdtemp(tmp))
                return 1;
        RUN(orb_elements_use_their_orb_and_arguments_keep_the_callers_scope);
        RUN(nested_orbs_and_orb_level_parameters);
        RUN(orb_reference_errors);
        RUN(versions_are_parsed_and_matched);
        RUN(the_first_directory_with_a_match_wins_then_the_highest_in_it);
        RUN(registry_orbs_are_resolved_lazily_and_missing_ones_reported_once);
        RUN(a_fetch_hook_fills_the_cache_then_the_orb_is_found_there);
        RUN(a_cached_source_that_changed_since_its_pull_is_refused);
        RUN(an_orb_using_itself_is_bounded);
        RUN(search_dirs_are_cli_then_env_then_the_project);
        struct drv_error e = {0};
        drv_rm_rf(tmp, &e);
        TEST_DONE();
}

/* test_checkout.c: the checkout / add_ssh_keys scripts drover generates, failure reasons, key file
 * names, and the vcs fields of the job spec they read (depth, filter, pr_ref). */
#include "executor/checkout.h"
#include "executor/localsrc.h"
#include "executor/stepenv.h"
#include "testlib.h"

static struct jobspec *parse(const char *vcs, const char *steps, const char *extra)
{
        _cleanup_free_ char *text =
            drv_asprintf("{\"version\":1,\"id\":{\"job\":\"j\",\"name\":\"n\",\"build_num\":1},"
                         "\"executor\":{\"runtime\":\"sandbox\",\"kind\":\"machine\"},\"vcs\":%s,"
                         "\"steps\":%s%s}",
                         vcs, steps, extra ? extra : "");
        struct jobspec *s = NULL;
        struct drv_error err = {0};
        if (!text || jobspec_parse(text, strlen(text), &s, &err) < 0) {
                printf("#   parse: %s\n", err.message);
                return NULL;
        }
        return s;
}

/* The script of the spec's first step, a checkout of vcs.url (a local path here: no keys). */
static char *script_of(struct jobspec *s)
{
        char *script = NULL;
        struct drv_error err = {0};
        if (!s || checkout_prepare(NULL, s, &s->steps[0], "/home/circleci/project",
                                   "/home/circleci", NULL, &script, &err) < 0) {
                printf("#   prepare: %s\n", err.message);
                return NULL;
        }
        return script;
}

TEST(full_fetch_of_a_branch_at_a_sha)
{
        _cleanup_(jobspec_freep) struct jobspec *s =
            parse("{\"url\":\"/src\",\"branch\":\"main\",\"revision\":\"0123456789abcdef\"}",
                  "[{\"type\":\"checkout\",\"path\":\"~/app\"}]", NULL);
        _cleanup_free_ char *sc = script_of(s);
        CHECK(sc &&
              strstr(sc, "\nset -- '--tags' 'origin' '+refs/heads/*:refs/remotes/origin/*'\n"));
        CHECK(sc && strstr(sc, "\ntarget='0123456789abcdef'\n"));
        CHECK(sc && strstr(sc, "\ndir='/home/circleci/app'\n"));
        CHECK(sc && strstr(sc, "\nlocal='1'\n") && strstr(sc, "\nopts=''\n"));
        CHECK(sc && strstr(sc, "\nkey=''\n"));
}

TEST(shallow_tag_fetches_only_the_tag)
{
        _cleanup_(jobspec_freep) struct jobspec *s =
            parse("{\"url\":\"/src\",\"tag\":\"v1.0\",\"depth\":1,\"filter\":\"blob:none\"}",
                  "[{\"type\":\"checkout\"}]", NULL);
        _cleanup_free_ char *sc = script_of(s);
        CHECK(sc && strstr(sc, "\nset -- 'origin' '+refs/tags/v1.0:refs/tags/v1.0'\n"));
        CHECK(sc && strstr(sc, "\ntarget='refs/tags/v1.0'\n"));
        CHECK(sc && strstr(sc, "\nopts='--depth=1 --filter=blob:none'\n"));
}

TEST(pull_request_merge_ref)
{
        _cleanup_(jobspec_freep) struct jobspec *s =
            parse("{\"url\":\"/src\",\"pr_number\":\"7\",\"pr_ref\":\"merge\"}",
                  "[{\"type\":\"checkout\"}]", NULL);
        _cleanup_free_ char *sc = script_of(s);
        CHECK(sc && strstr(sc, "'+refs/pull/7/merge:refs/remotes/origin/pull/7'\n"));
        CHECK(sc && strstr(sc, "\ntarget='refs/remotes/origin/pull/7'\n"));
}

TEST(nothing_named_fetches_the_remote_head)
{
        _cleanup_(jobspec_freep) struct jobspec *s =
            parse("{\"url\":\"/src\"}", "[{\"type\":\"checkout\"}]", NULL);
        _cleanup_free_ char *sc = script_of(s);
        CHECK(sc && strstr(sc, "'+HEAD:refs/drover/head'\n"));
        CHECK(sc && strstr(sc, "\ntarget='refs/drover/head'\n"));
}

TEST(local_source_snapshot_is_copied_not_fetched_from_the_work_tree)
{
        _cleanup_(jobspec_freep) struct jobspec *s = parse(
            "{\"url\":\"/home/dev/app\",\"branch\":\"main\",\"revision\":\"0123456789abcdef\"}",
            "[{\"type\":\"checkout\",\"path\":\"~/app\"}]", NULL);
        char *sc = NULL;
        struct drv_error err = {0};
        CHECK(s && checkout_prepare(NULL, s, &s->steps[0], "/home/circleci/project",
                                    "/home/circleci", "/run/drover/source", &sc, &err) == 0);
        CHECK(sc && strstr(sc, "\nsrc='/run/drover/source'\n"));
        CHECK(sc && strstr(sc, "\ndir='/home/circleci/app'\n"));
        CHECK(sc && strstr(sc, "url=\"$src/repo.git\""));
        CHECK(sc && strstr(sc, "cp -R -P \"$src/tree/.\" ."));
        CHECK(sc && !strstr(sc, "/home/dev/app'\nshown") && !strstr(sc, "url='/home/dev/app'"));
        free(sc);
}

TEST(clean_url_drops_credentials)
{
        static const char *const cases[][2] = {
            {"https://user:tok@github.com/o/r.git", "https://github.com/o/r.git"},
            {"https://ghp_token@github.com/o/r.git", "https://github.com/o/r.git"},
            {"ssh://git:pw@host:22/r.git", "ssh://git@host:22/r.git"},
            {"ssh://git@host/r.git", "ssh://git@host/r.git"},
            {"git@github.com:o/r.git", "git@github.com:o/r.git"},
            {"https://github.com/o/r@v1.git", "https://github.com/o/r@v1.git"},
            {"/srv/repo.git", "/srv/repo.git"},
        };
        for (size_t i = 0; i < DRV_ARRAY_SIZE(cases); i++) {
                _cleanup_free_ char *c = localsrc_clean_url(cases[i][0]);
                CHECK(c && strcmp(c, cases[i][1]) == 0);
        }
}

TEST(password_in_the_url_is_not_shown)
{
        _cleanup_(jobspec_freep) struct jobspec *s =
            parse("{\"url\":\"file://bot:s3cr3t@git.example.com/o/r.git\",\"branch\":\"x'y\"}",
                  "[{\"type\":\"checkout\"}]", NULL);
        _cleanup_free_ char *sc = script_of(s);
        CHECK(sc && strstr(sc, "\nshown='file://bot@git.example.com/o/r.git'\n"));
        CHECK(sc && strstr(sc, "\nbranch='x'\\''y'\n")); /* quoted for the shell */
}

TEST(no_url_is_an_error)
{
        _cleanup_(jobspec_freep) struct jobspec *s =
            parse("{\"branch\":\"main\"}", "[{\"type\":\"checkout\"}]", NULL);
        char *sc = NULL;
        struct drv_error err = {0};
        CHECK(s && checkout_prepare(NULL, s, &s->steps[0], "/w", "/h", NULL, &sc, &err) < 0);
        CHECK(strstr(err.message, "vcs.url") != NULL && sc == NULL);
}

TEST(vcs_fields_are_validated_and_round_trip)
{
        _cleanup_(jobspec_freep) struct jobspec *bad =
            parse("{\"url\":\"/src\",\"filter\":\"blob:none; rm -rf /\"}",
                  "[{\"type\":\"checkout\"}]", NULL);
        CHECK(bad == NULL);
        _cleanup_(jobspec_freep) struct jobspec *bad2 =
            parse("{\"url\":\"/src\",\"pr_ref\":\"tail\"}", "[{\"type\":\"checkout\"}]", NULL);
        CHECK(bad2 == NULL);
        _cleanup_(jobspec_freep) struct jobspec *bad3 =
            parse("{\"url\":\"/src\"}", "[{\"type\":\"checkout\"}]",
                  ",\"ssh_keys\":[{\"private_key\":\"k\",\"hostname\":\"a\\nHost *\"}]");
        CHECK(bad3 == NULL); /* no ssh config injection through a host name */
        _cleanup_(jobspec_freep) struct jobspec *s =
            parse("{\"url\":\"/src\",\"depth\":5,\"filter\":\"tree:0\",\"pr_ref\":\"merge\"}",
                  "[{\"type\":\"checkout\"}]", NULL);
        CHECK(s && s->vcs.depth == 5 && s->vcs.pr_merge && strcmp(s->vcs.filter, "tree:0") == 0);
        json_t *j = s ? jobspec_to_json(s) : NULL;
        struct jobspec *back = NULL;
        struct drv_error err = {0};
        CHECK(j && jobspec_from_json(j, &back, &err) == 0);
        CHECK(back && back->vcs.depth == 5 && back->vcs.pr_merge &&
              strcmp(back->vcs.filter, "tree:0") == 0);
        if (back)
                jobspec_free(back);
        json_decref(j);
}

TEST(add_ssh_keys_unknown_fingerprint_and_no_keys)
{
        _cleanup_(jobspec_freep) struct jobspec *s =
            parse("{\"url\":\"/src\"}",
                  "[{\"type\":\"add_ssh_keys\",\"fingerprints\":[\"de:ad\"]},"
                  "{\"type\":\"add_ssh_keys\"}]",
                  NULL);
        char *sc = NULL;
        struct drv_error err = {0};
        CHECK(s && sshkeys_prepare(NULL, s, &s->steps[0], "/h", &sc, &err) < 0);
        CHECK(strstr(err.message, "no SSH key with fingerprint de:ad") != NULL);
        CHECK(s && sshkeys_prepare(NULL, s, &s->steps[1], "/h", &sc, &err) == 0);
        CHECK(sc && strstr(sc, "no SSH keys to add"));
        free(sc);
}

TEST(url_password_is_a_secret_and_redacted)
{
        _cleanup_free_ char *pw = checkout_url_password("https://bot:s3cr3t@h.example/r.git");
        CHECK_STREQ(pw, "s3cr3t");
        CHECK(checkout_url_password("https://bot@h.example/r.git") == NULL);
        CHECK(checkout_url_password("git@github.com:o/r.git") == NULL);
        CHECK(checkout_url_password("ssh://h.example/a:b@c") == NULL);
        CHECK(checkout_url_password(NULL) == NULL);
        _cleanup_(jobspec_freep) struct jobspec *s = parse(
            "{\"url\":\"https://bot:s3cr3t@h.example/r.git\"}", "[{\"type\":\"checkout\"}]", NULL);
        char text[] = "fatal: 'https://bot:s3cr3t@h.example/r.git' s3cr3t!";
        if (s)
                checkout_redact(s, text);
        CHECK_STREQ(text, "fatal: 'https://bot:****@h.example/r.git' ****!");
        _cleanup_strv_ char **secrets = s ? stepenv_secrets(s) : NULL;
        bool found = false;
        for (size_t i = 0; secrets && secrets[i]; i++)
                found = found || strcmp(secrets[i], "s3cr3t") == 0;
        CHECK(found);
}

TEST(key_file_names)
{
        _cleanup_free_ char *a = sshkeys_file_name("aa:BB:0f");
        _cleanup_free_ char *b = sshkeys_file_name("SHA256:ab/c+d");
        CHECK_STREQ(a, "id_rsa_aaBB0f");
        CHECK_STREQ(b, "id_rsa_SHA256ab_c_d");
}

TEST(failure_reason_is_the_last_drover_line)
{
        char r[128];
        const char *out = "Cloning\ndrover: first\nnoise drover: not this\n"
                          "drover: checkout of X failed: denied\r\n";
        CHECK(checkout_failure_reason(out, strlen(out), r, sizeof(r)));
        CHECK_STREQ(r, "checkout of X failed: denied");
        const char *none = "fatal: nope\nxdrover: no\n";
        CHECK(!checkout_failure_reason(none, strlen(none), r, sizeof(r)));
        const char *cut = "drover: a very long line that is cut";
        CHECK(checkout_failure_reason(cut, strlen(cut), r, 10) && strlen(r) == 9);
}

int main(void)
{
        RUN(full_fetch_of_a_branch_at_a_sha);
        RUN(shallow_tag_fetches_only_the_tag);
        RUN(pull_request_merge_ref);
        RUN(nothing_named_fetches_the_remote_head);
        RUN(local_source_snapshot_is_copied_not_fetched_from_the_work_tree);
        RUN(clean_url_drops_credentials);
        RUN(password_in_the_url_is_not_shown);
        RUN(no_url_is_an_error);
        RUN(vcs_fields_are_validated_and_round_trip);
        RUN(add_ssh_keys_unknown_fingerprint_and_no_keys);
        RUN(url_password_is_a_secret_and_redacted);
        RUN(key_file_names);
        RUN(failure_reason_is_the_last_drover_line);
        TEST_DONE();
}

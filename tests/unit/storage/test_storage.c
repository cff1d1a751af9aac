/* test_storage.c: cache key templates, object keys, content types, JUnit parsing, file store. */
#include "artifacts/artifacts.h"
#include "artifacts/objstore.h"
#include "cache/cache.h"
#include "cache/jobfs.h"
#include "executor/stephelper.h"
#include "executor/testsplit.h"
#include "testlib.h"

#include <fcntl.h>
#include <sys/stat.h>

static char root[64];

static struct step_ctx make_ctx(struct jobspec *spec, int root_fd)
{
        struct step_ctx c = {.spec = spec,
                             .root_fd = root_fd,
                             .home = "/home/u",
                             .workdir = "/home/u/project",
                             .uid = getuid(),
                             .gid = getgid()};
        return c;
}

TEST(key_templates_render_like_circleci)
{
        char path[128];
        snprintf(path, sizeof(path), "%s/home/u/project", root);
        struct drv_error e = {0};
        CHECK(drv_mkdir_p(path, 0755, &e) == 0);
        snprintf(path, sizeof(path), "%s/home/u/project/lock", root);
        CHECK(drv_write_file_atomic(path, "abc", 3, 0644, &e) == 0);
        int rfd = open(root, O_PATH | O_DIRECTORY | O_CLOEXEC);
        struct js_env env[] = {{"NODE", "20", false}};
        struct jobspec spec = {.build_num = 12, .env = env, .n_env = 1};
        spec.vcs.branch = "main";
        spec.vcs.revision = "abc123";
        struct step_ctx ctx = make_ctx(&spec, rfd);
        /* the helper that reads job files, here on the directory as this user (as for the
         * remote Docker runtime's home copy) */
        const char *drover = getenv("DROVER");
        CHECK(drover != NULL);
        struct step_helper *sh = step_helper_new(NULL, true, drover, rfd, getuid(), getgid());
        ctx.runner = step_helper_runner(sh);
        char *k = NULL;
        CHECK(cache_key_render(
                  &ctx, "v1-{{ .Branch }}-{{.Revision}}-{{ .BuildNum }}-{{ .Environment.NODE }}",
                  &k, &e) == 0);
        CHECK_STREQ(k, "v1-main-abc123-12-20");
        free(k);
        k = NULL;
        /* sha256("abc") base64 */
        CHECK(cache_key_render(&ctx, "deps-{{ checksum \"lock\" }}", &k, &e) == 0);
        CHECK_STREQ(k, "deps-ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0=");
        free(k);
        k = NULL;
        CHECK(cache_key_render(&ctx, "x-{{ .Unknown }}", &k, &e) < 0);
        CHECK(strstr(e.message, "unknown template {{ .Unknown }}") != NULL);
        CHECK(cache_key_render(&ctx, "x-{{ checksum \"missing\" }}", &k, &e) < 0);
        CHECK(cache_key_render(&ctx, "x-{{ .Branch", &k, &e) < 0);
        CHECK(cache_key_render(&ctx, "../{{ .Branch }}", &k, &e) < 0);
        step_helper_free(sh);
        close(rfd);
}

TEST(object_keys_are_checked)
{
        CHECK(objstore_key_ok("caches/p/key-1"));
        CHECK(!objstore_key_ok(""));
        CHECK(!objstore_key_ok("/abs"));
        CHECK(!objstore_key_ok("a/../b"));
        CHECK(!objstore_key_ok("a//b"));
        CHECK(!objstore_key_ok("a/./b"));
}

TEST(content_types_follow_the_safe_list)
{
        CHECK_STREQ(artifacts_content_type("a.png", false), "image/png");
        CHECK_STREQ(artifacts_content_type("a.json", false), "application/json");
        CHECK_STREQ(artifacts_content_type("a.html", false), "text/plain");
        CHECK_STREQ(artifacts_content_type("a.html", true), "text/html");
        CHECK_STREQ(artifacts_content_type("a.bin", true), "application/octet-stream");
        CHECK_STREQ(artifacts_content_type("noext", false), "text/plain");
}

TEST(junit_summary_and_malformed_input)
{
        const char *x = "<testsuite><testcase classname='c' name='a &amp; b' time='1.5'/>"
                        "<testcase name='f' time='2'><failure/></testcase>"
                        "<testcase name='e'><error/></testcase></testsuite>";
        json_t *o = NULL;
        struct drv_error e = {0};
        CHECK(testresults_parse_junit(x, strlen(x), &o, &e) == 0);
        CHECK_INTEQ(json_integer_value(json_object_get(o, "tests")), 3);
        CHECK_INTEQ(json_integer_value(json_object_get(o, "failures")), 1);
        CHECK_INTEQ(json_integer_value(json_object_get(o, "errors")), 1);
        CHECK(json_number_value(json_object_get(o, "time")) == 3.5);
        CHECK_STREQ(json_string_value(
                        json_object_get(json_array_get(json_object_get(o, "cases"), 0), "name")),
                    "a & b");
        json_decref(o);
        CHECK(testresults_parse_junit("hello", 5, &o, &e) < 0);
        CHECK(testresults_parse_junit("<testsuite><testcase name='x'>", 30, &o, &e) < 0);
}

TEST(file_store_is_atomic_and_lists_by_prefix)
{
        char dir[128], url[160];
        snprintf(dir, sizeof(dir), "%s/store", root);
        snprintf(url, sizeof(url), "file://%s", dir);
        struct js_storage cfg = {.url = url};
        struct objstore *s = NULL;
        struct drv_error e = {0};
        CHECK(objstore_open(&cfg, &s, &e) == 0);
        if (!s)
                return;
        int fd;
        CHECK(objstore_begin(s, "caches/p/k1", &fd, &e) == 0);
        CHECK(drv_write_all(fd, "hello", 5) == 0);
        bool ex = true;
        CHECK(objstore_exists(s, "caches/p/k1", &ex, &e) == 0 && !ex); /* not before commit */
        CHECK(objstore_commit(s, "caches/p/k1", fd, &e) == 0);
        CHECK(objstore_exists(s, "caches/p/k1", &ex, &e) == 0 && ex);
        CHECK(objstore_begin(s, "caches/p/k2", &fd, &e) == 0);
        objstore_abort(s, "caches/p/k2", fd);
        CHECK(objstore_exists(s, "caches/p/k2", &ex, &e) == 0 && !ex);
        struct objstore_entry *ents = NULL;
        size_t n = 0;
        CHECK(objstore_list(s, "caches/p/k", &ents, &n, &e) == 0 && n == 1);
        CHECK(n == 1 && strcmp(ents[0].key, "caches/p/k1") == 0 && ents[0].size == 5);
        objstore_entries_free(ents, n);
        CHECK(objstore_get(s, "caches/p/none", &fd, &e) == -ENOENT);
        CHECK(objstore_begin(s, "../x", &fd, &e) < 0);
        objstore_free(s);
        struct js_storage s3 = {.url = "s3://Bad_Bucket"};
        CHECK(objstore_open(&s3, &s, &e) == -EINVAL);
        struct js_storage s3b = {.url = "s3://b/p", .endpoint = "ftp://x"};
        CHECK(objstore_open(&s3b, &s, &e) == -EINVAL);
        struct js_storage s3c = {.url = "s3://b/p", .endpoint = "http://127.0.0.1:1"};
        CHECK(objstore_open(&s3c, &s, &e) == 0);
        CHECK_STREQ(objstore_name(s), "s3://b/p");
        objstore_free(s);
}

/* Sorted matches joined by spaces. */
static char *joined(char **v)
{
        struct strbuf sb = STRBUF_INIT;
        size_t n = drv_strv_len(v);
        if (n)
                qsort(v, n, sizeof(char *), testsplit_strcmp);
        for (size_t i = 0; i < n; i++)
                strbuf_printf(&sb, "%s%s", i ? " " : "", v[i]);
        return sb.buf ? strbuf_detach(&sb) : strdup("");
}

TEST(one_glob_walker_never_follows_symlinks)
{
        char path[160];
        struct drv_error e = {0};
        snprintf(path, sizeof(path), "%s/g/a/b", root);
        CHECK(drv_mkdir_p(path, 0755, &e) == 0);
        const char *files[] = {"g/top.py", "g/a/x.py", "g/a/b/y.py", "g/a/b/z.txt"};
        for (size_t i = 0; i < DRV_ARRAY_SIZE(files); i++) {
                snprintf(path, sizeof(path), "%s/%s", root, files[i]);
                CHECK(drv_write_file_atomic(path, "1", 1, 0644, &e) == 0);
        }
        snprintf(path, sizeof(path), "%s/g/a/out", root);
        CHECK(symlink("/etc", path) == 0); /* leads out of the tree */
        snprintf(path, sizeof(path), "%s/g/a/loop", root);
        CHECK(symlink(".", path) == 0); /* a cycle */
        snprintf(path, sizeof(path), "%s/g", root);
        _cleanup_close_ int g = open(path, O_DIRECTORY | O_RDONLY | O_CLOEXEC);
        CHECK(g >= 0);
        char **v = NULL;
        /* jobfs (cache and workspace paths): relative to the job's directory */
        CHECK(jobfs_glob(g, "**/*.py", &v, &e) == 0);
        char *s = joined(v);
        CHECK_STREQ(s, "a/b/y.py a/x.py top.py");
        free(s);
        drv_strv_free(v), v = NULL;
        CHECK(jobfs_glob(g, "./a/**", &v, &e) == 0); /* symlinks listed, not entered */
        s = joined(v);
        CHECK_STREQ(s, "a/b a/b/y.py a/b/z.txt a/loop a/out a/x.py");
        free(s);
        drv_strv_free(v), v = NULL;
        CHECK(jobfs_glob(g, "a/out/*", &v, &e) == 0 && !v); /* not even in the fixed prefix */
        CHECK(jobfs_glob(g, "a/out/passwd", &v, &e) == 0 && !v);
        CHECK(jobfs_glob(g, "a/b/z.txt", &v, &e) == 0 && v && drv_strv_len(v) == 1);
        drv_strv_free(v), v = NULL;
        /* circleci tests glob: absolute patterns, named as given */
        char pat[200];
        snprintf(pat, sizeof(pat), "%s/g/**/*.{py,txt}", root);
        CHECK(testsplit_glob(pat, &v) == 0);
        CHECK(drv_strv_len(v) == 4);
        for (size_t i = 0; v && v[i]; i++)
                CHECK(drv_startswith(v[i], path) && !strstr(v[i], "loop") && !strstr(v[i], "out"));
        drv_strv_free(v), v = NULL;
        snprintf(pat, sizeof(pat), "%s/g/a/loop/loop/*.py", root); /* a fixed prefix is followed */
        CHECK(testsplit_glob(pat, &v) == 0 && drv_strv_len(v) == 1);
        drv_strv_free(v);
}

int main(void)
{
        snprintf(root, sizeof(root), "/tmp/drover-unit-storage-%d", (int)getpid());
        RUN(key_templates_render_like_circleci);
        RUN(object_keys_are_checked);
        RUN(content_types_follow_the_safe_list);
        RUN(junit_summary_and_malformed_input);
        RUN(file_store_is_atomic_and_lists_by_prefix);
        RUN(one_glob_walker_never_follows_symlinks);
        struct drv_error e;
        drv_rm_rf(root, &e);
        TEST_DONE();
}

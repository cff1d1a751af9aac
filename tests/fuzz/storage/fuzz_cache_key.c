/* fuzz_cache_key: cache key template rendering ({{ .Branch }}, {{ checksum "F" }}, ...) on any
 * input: never crashes, and a rendered key is bounded and a valid object key. */
#include "artifacts/objstore.h"
#include "cache/cache.h"

#include <fcntl.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int root_fd = -1;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        if (root_fd < 0) {
                char dir[] = "/tmp/drover-fuzz-key-XXXXXX";
                struct drv_error e = {0};
                if (!mkdtemp(dir))
                        abort();
                char p[128];
                snprintf(p, sizeof(p), "%s/w", dir);
                drv_mkdir_p(p, 0755, &e);
                snprintf(p, sizeof(p), "%s/w/lock", dir);
                drv_write_file_atomic(p, "abc", 3, 0644, &e);
                root_fd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
                drv_log_set_level(DRV_LOG_ERROR);
        }
        char *tmpl = strndup((const char *)data, size);
        if (!tmpl)
                return 0;
        static struct js_env env[] = {{.name = "A", .value = "va"}};
        struct jobspec spec = {0};
        spec.vcs.branch = "main";
        spec.vcs.revision = "0123abc";
        spec.build_num = 7;
        spec.env = env;
        spec.n_env = 1;
        char *envp[] = {"B=vb", NULL};
        struct step_ctx ctx = {.spec = &spec,
                               .root_fd = root_fd,
                               .home = "/h",
                               .workdir = "/w",
                               .uid = getuid(),
                               .gid = getgid(),
                               .envp = envp};
        char *out = NULL;
        struct drv_error e = {0};
        if (cache_key_render(&ctx, tmpl, &out, &e) == 0) {
                if (!out || strlen(out) > CACHE_MAX_KEY)
                        abort();
                free(out);
        } else if (!e.message[0]) {
                abort(); /* every failure names its cause */
        }
        free(tmpl);
        return 0;
}

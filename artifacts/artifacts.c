/* artifacts.c: artifacts and test results: per-file uploads from the job (never following a
 * symlink out of it), content types, JUnit summaries and the timings index. */
#include "artifacts/artifacts.h"
#include "artifacts/objstore.h"
#include "cache/cache.h"
#include "cache/jobfs.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>

const char *artifacts_content_type(const char *name, bool allow_unsafe)
{
        static const char *const safe[][2] = {
            {".txt", "text/plain"},  {".log", "text/plain"}, {".json", "application/json"},
            {".png", "image/png"},   {".jpg", "image/jpeg"}, {".jpeg", "image/jpeg"},
            {".gif", "image/gif"},   {".bmp", "image/bmp"},  {".webm", "video/webm"},
            {".ogg", "audio/ogg"},   {".mp4", "video/mp4"},  {".aac", "audio/aac"},
            {".mpeg", "audio/mpeg"}, {".mp3", "audio/mpeg"}, {".wav", "audio/wav"}};
        static const char *const unsafe[][2] = {
            {".html", "text/html"},     {".htm", "text/html"},
            {".css", "text/css"},       {".js", "application/javascript"},
            {".svg", "image/svg+xml"},  {".xml", "application/xml"},
            {".pdf", "application/pdf"}};
        const char *dot = strrchr(name, '.');
        if (!dot || strchr(dot, '/'))
                return "text/plain";
        for (size_t i = 0; i < DRV_ARRAY_SIZE(safe); i++)
                if (strcasecmp(dot, safe[i][0]) == 0)
                        return safe[i][1];
        if (!allow_unsafe)
                return "text/plain";
        for (size_t i = 0; i < DRV_ARRAY_SIZE(unsafe); i++)
                if (strcasecmp(dot, unsafe[i][0]) == 0)
                        return unsafe[i][1];
        return "application/octet-stream";
}

typedef int (*file_fn)(const struct step_ctx *ctx, int fd, const char *rel, uint64_t size,
                       void *data, struct drv_error *err);

/* Call fn for every regular file below dirfd (symlinks are neither followed nor stored). */
static int each_file(const struct step_ctx *ctx, int dirfd, const char *rel, file_fn fn, void *data,
                     int depth, struct drv_error *err)
{
        struct open_how how = {.flags = O_RDONLY | O_NOFOLLOW | O_CLOEXEC | 0100000,
                               .resolve = RESOLVE_NO_SYMLINKS | RESOLVE_BENEATH};
        struct stat st;
        if (depth > 128)
                return 0;
        if (fstatat(dirfd, rel[0] ? rel : ".", &st, AT_SYMLINK_NOFOLLOW) < 0)
                return drv_err_errno(err, "cannot stat %s", rel);
        if (S_ISREG(st.st_mode)) {
                int fd = (int)syscall(SYS_openat2, dirfd, rel, &how, sizeof(how));
                if (fd < 0)
                        return drv_err_errno(err, "cannot open %s", rel);
                int r = fn(ctx, fd, rel, (uint64_t)st.st_size, data, err);
                close(fd);
                return r;
        }
        if (!S_ISDIR(st.st_mode))
                return 0;
        how.flags |= O_DIRECTORY;
        int dfd = (int)syscall(SYS_openat2, dirfd, rel[0] ? rel : ".", &how, sizeof(how));
        if (dfd < 0)
                return drv_err_errno(err, "cannot open %s", rel);
        DIR *d = fdopendir(dfd);
        if (!d) {
                close(dfd);
                return drv_err_errno(err, "cannot read %s", rel);
        }
        struct dirent *de;
        int r = 0;
        while (r == 0 && (de = readdir(d))) {
                if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
                        continue;
                _cleanup_free_ char *child =
                    rel[0] ? drv_asprintf("%s/%s", rel, de->d_name) : strdup(de->d_name);
                r = child ? each_file(ctx, dirfd, child, fn, data, depth + 1, err)
                          : drv_err(err, ENOMEM, "out of memory");
        }
        closedir(d);
        return r;
}

/* Open the step's path: the directory that holds it and the name within (or "" for a dir). */
static int open_step_path(const struct step_ctx *ctx, const char *path, int *dirfd, char **rel,
                          bool *is_dir, struct drv_error *err)
{
        struct jobfs fs = {ctx->root_fd, ctx->uid, ctx->gid};
        _cleanup_free_ char *abs = cache_inside_path(ctx, path);
        if (!abs)
                return drv_err(err, ENOMEM, "out of memory");
        int fd;
        if (jobfs_open_dir(&fs, abs, false, &fd, NULL) == 0) {
                *dirfd = fd;
                *rel = strdup("");
                *is_dir = true;
                return *rel ? 0 : drv_err(err, ENOMEM, "out of memory");
        }
        char *slash = strrchr(abs, '/');
        *slash = '\0';
        int r = jobfs_open_dir(&fs, abs[0] ? abs : "/", false, &fd, err);
        if (r < 0)
                return drv_err(err, ENOENT, "%s does not exist in the job", path);
        *dirfd = fd;
        *rel = strdup(slash + 1);
        *is_dir = false;
        return *rel ? 0 : drv_err(err, ENOMEM, "out of memory");
}

#define ART_BATCH 1024 /* files uploaded together (in parallel over reused connections) */

struct art_pending {
        char *key, *dest;
        int fd;
        uint64_t size;
        const char *ct;
};

struct art_ctx {
        const char *dest;
        const char *rel_base;
        unsigned count;
        uint64_t bytes;
        struct art_pending p[ART_BATCH];
        size_t n;
};

static void art_release(struct art_ctx *a)
{
        for (size_t i = 0; i < a->n; i++) {
                free(a->p[i].key);
                free(a->p[i].dest);
                if (a->p[i].fd >= 0)
                        close(a->p[i].fd);
        }
        a->n = 0;
}

/* Upload the pending files, then report each as an event. */
static int art_flush(const struct step_ctx *ctx, struct art_ctx *a, struct drv_error *err)
{
        struct objstore_item items[ART_BATCH];
        for (size_t i = 0; i < a->n; i++)
                items[i] = (struct objstore_item){
                    .key = a->p[i].key, .fd = a->p[i].fd, .content_type = a->p[i].ct};
        int r = a->n ? objstore_put_many(ctx->store, items, a->n, err) : 0;
        for (size_t i = 0; r == 0 && i < a->n; i++) {
                job_events_emit(ctx->events, "artifact",
                                json_pack("{s:s, s:s, s:I, s:s}", "path", a->p[i].dest, "key",
                                          a->p[i].key, "size", (json_int_t)a->p[i].size,
                                          "content_type", a->p[i].ct));
                a->count++;
                a->bytes += a->p[i].size;
        }
        art_release(a);
        return r;
}

static int upload_artifact(const struct step_ctx *ctx, int fd, const char *rel, uint64_t size,
                           void *data, struct drv_error *err)
{
        struct art_ctx *a = data;
        const char *name = rel + strlen(a->rel_base);
        while (*name == '/')
                name++;
        _cleanup_free_ char *dest = name[0] ? drv_path_join(a->dest, name) : strdup(a->dest);
        _cleanup_free_ char *key = dest ? drv_asprintf("artifacts/%s/%s", ctx->spec->job_id,
                                                       dest[0] == '/' ? dest + 1 : dest)
                                        : NULL;
        int dfd = key ? fcntl(fd, F_DUPFD_CLOEXEC, 3) : -1;
        if (dfd < 0)
                return key ? drv_err_errno(err, "%s", rel) : drv_err(err, ENOMEM, "out of memory");
        const char *ct =
            artifacts_content_type(dest, ctx->spec->storage.allow_unsafe_content_types);
        a->p[a->n++] = (struct art_pending){
            .key = TAKE_PTR(key), .dest = TAKE_PTR(dest), .fd = dfd, .size = size, .ct = ct};
        return a->n == ART_BATCH ? art_flush(ctx, a, err) : 0;
}

int artifacts_step_store(const struct step_ctx *ctx, const struct js_step *step,
                         struct drv_error *err)
{
        if (!ctx->store)
                return drv_err(err, EINVAL, "store_artifacts: the job has no storage");
        _cleanup_close_ int dirfd = -1;
        _cleanup_free_ char *rel = NULL;
        bool is_dir;
        int r = open_step_path(ctx, step->path, &dirfd, &rel, &is_dir, err);
        if (r < 0)
                return drv_err_prefix(err, "store_artifacts");
        struct art_ctx a = {.dest = step->destination ? step->destination : step->path,
                            .rel_base = rel};
        r = each_file(ctx, dirfd, rel, upload_artifact, &a, 0, err);
        if (r == 0)
                r = art_flush(ctx, &a, err);
        art_release(&a);
        if (r < 0)
                return drv_err_prefix(err, "store_artifacts %s", step->path);
        output_step_printf(ctx->out, ctx->step_index, "Uploaded %u artifacts (%llu bytes) from %s",
                           a.count, (unsigned long long)a.bytes, step->path);
        return 0;
}

struct tr_ctx {
        json_t *summary;
        unsigned files;
};

static int store_result(const struct step_ctx *ctx, int fd, const char *rel, uint64_t size,
                        void *data, struct drv_error *err)
{
        struct tr_ctx *t = data;
        _cleanup_free_ char *text = NULL;
        size_t len = 0;
        int r = drv_read_fd(fd, &text, &len, 256u << 20, err);
        if (r < 0)
                return drv_err_prefix(err, "%s", rel);
        _cleanup_free_ char *key = drv_asprintf("test-results/%s/%s", ctx->spec->job_id, rel);
        if (!key)
                return drv_err(err, ENOMEM, "out of memory");
        int wfd;
        if ((r = objstore_begin(ctx->store, key, &wfd, err)) < 0)
                return r;
        if ((r = drv_write_all(wfd, text, len)) < 0 ||
            (r = objstore_commit(ctx->store, key, wfd, err)) < 0) {
                objstore_abort(ctx->store, key, wfd);
                return r < 0 && !err->code ? drv_err(err, -r, "storing %s", rel) : r;
        }
        t->files++;
        (void)size;
        if (!drv_endswith(rel, ".xml"))
                return 0;
        json_t *one = NULL;
        struct drv_error e2 = {0};
        if (testresults_parse_junit(text, len, &one, &e2) < 0) {
                output_step_printf(ctx->out, ctx->step_index, "Warning: %s is not JUnit XML (%s)",
                                   rel, e2.message);
                return 0;
        }
        static const char *const counts[] = {"tests", "failures", "errors", "skipped"};
        for (size_t i = 0; i < DRV_ARRAY_SIZE(counts); i++)
                json_object_set_new(
                    t->summary, counts[i],
                    json_integer(json_integer_value(json_object_get(t->summary, counts[i])) +
                                 json_integer_value(json_object_get(one, counts[i]))));
        json_object_set_new(t->summary, "time",
                            json_real(json_number_value(json_object_get(t->summary, "time")) +
                                      json_number_value(json_object_get(one, "time"))));
        json_array_extend(json_object_get(t->summary, "cases"), json_object_get(one, "cases"));
        json_decref(one);
        return 0;
}

int testresults_step_store(const struct step_ctx *ctx, const struct js_step *step,
                           struct drv_error *err)
{
        if (!ctx->store)
                return drv_err(err, EINVAL, "store_test_results: the job has no storage");
        _cleanup_close_ int dirfd = -1;
        _cleanup_free_ char *rel = NULL;
        bool is_dir;
        int r = open_step_path(ctx, step->path, &dirfd, &rel, &is_dir, err);
        if (r < 0)
                return drv_err_prefix(err, "store_test_results");
        struct tr_ctx t = {.summary =
                               json_pack("{s:i, s:i, s:i, s:i, s:f, s:[]}", "tests", 0, "failures",
                                         0, "errors", 0, "skipped", 0, "time", 0.0, "cases")};
        r = each_file(ctx, dirfd, rel, store_result, &t, 0, err);
        if (r == 0) {
                /* the timings index that `circleci tests split --split-by=timings` reads */
                _cleanup_free_ char *key = drv_asprintf(
                    "timings/%s/%s.json", ctx->spec->project ? ctx->spec->project : "default",
                    ctx->spec->job_name);
                json_t *index = json_pack("{s:O}", "tests", json_object_get(t.summary, "cases"));
                char *text = json_dumps(index, JSON_COMPACT);
                json_decref(index);
                int wfd;
                if (key && text && objstore_begin(ctx->store, key, &wfd, err) == 0) {
                        if (drv_write_all(wfd, text, strlen(text)) < 0 ||
                            objstore_commit(ctx->store, key, wfd, err) < 0)
                                objstore_abort(ctx->store, key, wfd);
                }
                free(text);
                json_t *ev = json_deep_copy(t.summary);
                json_object_del(ev, "cases");
                json_object_set_new(ev, "files", json_integer(t.files));
                output_step_printf(
                    ctx->out, ctx->step_index,
                    "Stored %u test result files: %lld tests, %lld failures, %lld errors, %lld skipped",
                    t.files, json_integer_value(json_object_get(ev, "tests")),
                    json_integer_value(json_object_get(ev, "failures")),
                    json_integer_value(json_object_get(ev, "errors")),
                    json_integer_value(json_object_get(ev, "skipped")));
                job_events_emit(ctx->events, "test_results", ev);
        }
        json_decref(t.summary);
        return r < 0 ? drv_err_prefix(err, "store_test_results %s", step->path) : 0;
}

int testresults_timings(struct objstore *store, const char *project, const char *job_name,
                        json_t **out, struct drv_error *err)
{
        *out = NULL;
        _cleanup_free_ char *key =
            drv_asprintf("timings/%s/%s.json", project ? project : "default", job_name);
        int fd;
        if (!key)
                return drv_err(err, ENOMEM, "out of memory");
        int r = objstore_get(store, key, &fd, err);
        if (r == -ENOENT)
                return 0;
        if (r < 0)
                return r;
        json_error_t je;
        *out = json_loadfd(fd, 0, &je);
        close(fd);
        return 0;
}

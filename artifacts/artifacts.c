/* artifacts.c: artifacts and test results: per-file uploads of what the in-job helper reads as
 * the job (cache/jobhelper.h), content types, JUnit summaries and the timings index. */
#include "artifacts/artifacts.h"
#include "artifacts/objstore.h"
#include "cache/cache.h"
#include "cache/jobhelper.h"

#include <fcntl.h>
#include <sys/mman.h>

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

/* Called for each file the in-job helper sends: fd holds its bytes (positioned at 0), rel names
 * it for messages and results (the step path's last part when it is a file), sub is its name
 * below the step path ("" when the path is the file). */
typedef int (*file_fn)(const struct step_ctx *ctx, int fd, const char *rel, const char *sub,
                       uint64_t size, void *data, struct drv_error *err);

/* A file for the bytes of one job file: in memory when small, else an unlinked temporary file
 * (the per-file cap bounds it). */
static int spool_open(uint64_t size, struct drv_error *err)
{
        int fd = -1;
        if (size > (4u << 20)) {
                const char *dir = getenv("TMPDIR");
                fd = open(dir && dir[0] ? dir : "/tmp", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
        }
        if (fd < 0)
                fd = memfd_create("drover-spool", MFD_CLOEXEC);
        return fd < 0 ? drv_err_errno(err, "cannot spool a file") : fd;
}

/* A name the helper sent: relative, no empty, "." or ".." part. */
static bool sub_ok(const char *sub)
{
        if (!sub[0])
                return true;
        _cleanup_free_ char *key = drv_asprintf("x/%s", sub);
        return key && objstore_key_ok(key);
}

/* Receive one file ('D' frames up to 'E') into a spool and hand it to fn. */
static int take_file(const struct step_ctx *ctx, struct jobhelper *h, const char *head,
                     const char *path, const struct jh_caps *caps, uint64_t *total, file_fn fn,
                     void *data, struct drv_error *err)
{
        char *end;
        uint64_t size = strtoull(head, &end, 10);
        if (*end != ' ' || size > caps->max_file || *total + size > caps->max_step ||
            !sub_ok(end + 1))
                return drv_err(err, EPROTO, "the in-job helper sent a bad file (%.200s)", head);
        _cleanup_free_ char *sub = strdup(end + 1);
        const char *last = strrchr(path, '/');
        _cleanup_free_ char *rel = !sub     ? NULL
                                   : sub[0] ? strdup(sub)
                                            : strdup(last ? last + 1 : path);
        if (!rel)
                return drv_err(err, ENOMEM, "out of memory");
        _cleanup_close_ int fd = spool_open(size, err);
        if (fd < 0)
                return fd;
        uint64_t got = 0;
        for (;;) {
                char type;
                const char *p;
                size_t n;
                int r = jobhelper_next(h, &type, &p, &n, err);
                if (r < 0)
                        return r;
                if (type == 'E')
                        break;
                if (type == 'X')
                        return jobhelper_unexpected(type, p, err);
                if (type != 'D' || (got += n) > size)
                        return drv_err(err, EPROTO, "the in-job helper broke the protocol (%s)",
                                       rel);
                if (drv_write_all(fd, p, n) < 0)
                        return drv_err_errno(err, "spooling %s", rel);
        }
        *total += got;
        if (lseek(fd, 0, SEEK_SET) < 0)
                return drv_err_errno(err, "spooling %s", rel);
        return fn(ctx, fd, rel, sub, got, data, err);
}

/* Have the in-job helper read the step's path (a file, or every regular file below a directory;
 * no symlink followed) and call fn for each file. */
static int each_file(const struct step_ctx *ctx, const char *path, file_fn fn, void *data,
                     struct drv_error *err)
{
        _cleanup_free_ char *abs = cache_inside_path(ctx, path);
        struct jh_caps caps = jobhelper_caps(ctx);
        char mf[32], ms[32];
        snprintf(mf, sizeof(mf), "%llu", (unsigned long long)caps.max_file);
        snprintf(ms, sizeof(ms), "%llu", (unsigned long long)caps.max_step);
        if (!abs)
                return drv_err(err, ENOMEM, "out of memory");
        const char *args[] = {"files", abs, mf, ms, NULL};
        struct jobhelper *h = NULL;
        int r = jobhelper_start(ctx, args, &h, err);
        uint64_t total = 0;
        char type = 0;
        while (r == 0) {
                const char *p;
                size_t n;
                if ((r = jobhelper_next(h, &type, &p, &n, err)) < 0)
                        break;
                if (type == 'S')
                        break;
                if (type == 'W')
                        output_step_printf(ctx->out, ctx->step_index, "Warning: %s", p);
                else if (type == 'F')
                        r = take_file(ctx, h, p, abs, &caps, &total, fn, data, err);
                else
                        r = jobhelper_unexpected(type, p, err);
        }
        return jobhelper_end(h, r, err);
}

#define ART_BATCH 1024 /* files uploaded together (in parallel over reused connections) */

struct art_pending {
        char *key, *dest;
        int fd;
        uint64_t size;
        const char *ct;
};

#define ART_BATCH_BYTES (256u << 20) /* spooled bytes uploaded together at most */

struct art_ctx {
        const char *dest;
        unsigned count;
        uint64_t bytes;
        uint64_t batch_bytes;
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
        a->batch_bytes = 0;
        return r;
}

static int upload_artifact(const struct step_ctx *ctx, int fd, const char *rel, const char *sub,
                           uint64_t size, void *data, struct drv_error *err)
{
        struct art_ctx *a = data;
        const char *name = sub;
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
        a->batch_bytes += size;
        return a->n == ART_BATCH || a->batch_bytes >= ART_BATCH_BYTES ? art_flush(ctx, a, err) : 0;
}

int artifacts_step_store(const struct step_ctx *ctx, const struct js_step *step,
                         struct drv_error *err)
{
        if (!ctx->store)
                return drv_err(err, EINVAL, "store_artifacts: the job has no storage");
        struct art_ctx a = {.dest = step->destination ? step->destination : step->path};
        int r = each_file(ctx, step->path, upload_artifact, &a, err);
        if (r == 0)
                r = art_flush(ctx, &a, err);
        art_release(&a);
        if (r < 0)
                return drv_err_prefix(err, "store_artifacts %s", step->path);
        output_step_printf(ctx->out, ctx->step_index,
                           "Uploaded %u artifacts (%llu bytes) from %s to %s", a.count,
                           (unsigned long long)a.bytes, step->path, objstore_name(ctx->store));
        return 0;
}

struct tr_ctx {
        json_t *summary;
        unsigned files;
};

static int store_result(const struct step_ctx *ctx, int fd, const char *rel, const char *sub,
                        uint64_t size, void *data, struct drv_error *err)
{
        (void)sub;
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

#define FAILED_TESTS_MAX 50 /* failing test names in the test_results event */

/* "classname.name" of the failing and erroring cases, at most FAILED_TESTS_MAX. */
static json_t *failed_tests(json_t *cases)
{
        json_t *names = json_array();
        size_t i;
        json_t *c;
        json_array_foreach (cases, i, c) {
                const char *res = json_string_value(json_object_get(c, "result"));
                if (!res || (strcmp(res, "failure") && strcmp(res, "error")))
                        continue;
                if (json_array_size(names) == FAILED_TESTS_MAX)
                        break;
                const char *cls = json_string_value(json_object_get(c, "classname"));
                const char *name = json_string_value(json_object_get(c, "name"));
                _cleanup_free_ char *full =
                    cls && cls[0] ? drv_asprintf("%s.%s", cls, name) : strdup(name ? name : "");
                if (full)
                        json_array_append_new(names, json_string(full));
        }
        return names;
}

int testresults_step_store(const struct step_ctx *ctx, const struct js_step *step,
                           struct drv_error *err)
{
        if (!ctx->store)
                return drv_err(err, EINVAL, "store_test_results: the job has no storage");
        struct tr_ctx t = {.summary =
                               json_pack("{s:i, s:i, s:i, s:i, s:f, s:[]}", "tests", 0, "failures",
                                         0, "errors", 0, "skipped", 0, "time", 0.0, "cases")};
        int r = each_file(ctx, step->path, store_result, &t, err);
        if (r == 0) {
                /* this node's timings for the next runs (timings.c) */
                struct drv_error e2 = {0};
                if (testresults_timings_store(ctx->store, ctx->spec, ctx->step_index,
                                              json_object_get(t.summary, "cases"), &e2) < 0)
                        output_step_printf(ctx->out, ctx->step_index,
                                           "Warning: timings not stored: %s", e2.message);
                json_t *ev = json_deep_copy(t.summary);
                json_object_del(ev, "cases");
                json_object_set_new(ev, "files", json_integer(t.files));
                json_t *failed = failed_tests(json_object_get(t.summary, "cases"));
                json_object_set_new(ev, "failed_tests", failed);
                output_step_printf(
                    ctx->out, ctx->step_index,
                    "Stored %u test result files in %s: %lld tests, %lld failures, %lld errors, "
                    "%lld skipped",
                    t.files, objstore_name(ctx->store),
                    json_integer_value(json_object_get(ev, "tests")),
                    json_integer_value(json_object_get(ev, "failures")),
                    json_integer_value(json_object_get(ev, "errors")),
                    json_integer_value(json_object_get(ev, "skipped")));
                job_events_emit(ctx->events, "test_results", ev);
        }
        json_decref(t.summary);
        return r < 0 ? drv_err_prefix(err, "store_test_results %s", step->path) : 0;
}

/* cache.c: cache keys, save/restore with prefix fallback, workspace layers. */
#include "cache/cache.h"
#include "artifacts/objstore.h"
#include "cache/jobfs.h"
#include "cache/jobhelper.h"

#include <ctype.h>
#include <openssl/evp.h>
#include <sys/utsname.h>
#include <time.h>

char *cache_inside_path(const struct step_ctx *ctx, const char *path)
{
        if (path[0] == '~' && (path[1] == '/' || path[1] == '\0'))
                return drv_path_join(ctx->home, path + 1);
        if (path[0] == '/')
                return strdup(path);
        return drv_path_join(ctx->workdir, path);
}

static const char *env_value(const struct step_ctx *ctx, const char *name)
{
        for (size_t i = 0; ctx->envp && ctx->envp[i]; i++) {
                size_t l = strlen(name);
                if (strncmp(ctx->envp[i], name, l) == 0 && ctx->envp[i][l] == '=')
                        return ctx->envp[i] + l + 1;
        }
        for (size_t i = 0; i < ctx->spec->n_env; i++)
                if (strcmp(ctx->spec->env[i].name, name) == 0)
                        return ctx->spec->env[i].value;
        return NULL;
}

/* {{ checksum "FILE" }}: hashed by the in-job helper, as the job. */
static int checksum(const struct step_ctx *ctx, const char *file, struct strbuf *out,
                    struct drv_error *err)
{
        _cleanup_free_ char *p = cache_inside_path(ctx, file);
        char cap[32];
        snprintf(cap, sizeof(cap), "%llu", (unsigned long long)jobhelper_caps(ctx).max_file);
        if (!p)
                return drv_err(err, ENOMEM, "out of memory");
        const char *args[] = {"sum", p, cap, NULL};
        _cleanup_free_ char *sum = NULL;
        int r = jobhelper_run(ctx, args, &sum, err);
        if (r < 0)
                return drv_err_prefix(err, "{{ checksum \"%s\" }}", file);
        /* from the job's side: only what a SHA-256 in base64 looks like goes into a key */
        size_t n = strlen(sum);
        if (n != 44 ||
            strspn(sum, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=") != n)
                return drv_err(err, EPROTO,
                               "{{ checksum \"%s\" }}: the in-job helper sent no digest", file);
        return strbuf_puts(out, sum) < 0 ? drv_err(err, ENOMEM, "out of memory") : 0;
}

int cache_key_render(const struct step_ctx *ctx, const char *tmpl, char **out,
                     struct drv_error *err)
{
        struct strbuf sb = STRBUF_INIT;
        const char *p = tmpl;
        int r = 0;
        while (r == 0 && *p) {
                const char *open = strstr(p, "{{");
                if (!open) {
                        r = strbuf_puts(&sb, p);
                        break;
                }
                const char *close = strstr(open, "}}");
                if (!close) {
                        r = drv_err(err, EINVAL, "cache key '%s': unclosed {{", tmpl);
                        break;
                }
                r = strbuf_append(&sb, p, (size_t)(open - p));
                char expr[512];
                const char *a = open + 2, *b = close;
                while (a < b && isspace((unsigned char)*a))
                        a++;
                while (b > a && isspace((unsigned char)b[-1]))
                        b--;
                snprintf(expr, sizeof(expr), "%.*s", (int)(b - a), a);
                const struct jobspec *s = ctx->spec;
                char num[32];
                if (strcmp(expr, ".Branch") == 0)
                        r = r ?: strbuf_puts(&sb, s->vcs.branch ? s->vcs.branch : "");
                else if (strcmp(expr, ".Revision") == 0)
                        r = r ?: strbuf_puts(&sb, s->vcs.revision ? s->vcs.revision : "");
                else if (strcmp(expr, ".BuildNum") == 0) {
                        snprintf(num, sizeof(num), "%llu", (unsigned long long)s->build_num);
                        r = r ?: strbuf_puts(&sb, num);
                } else if (strcmp(expr, "epoch") == 0) {
                        snprintf(num, sizeof(num), "%lld", (long long)time(NULL));
                        r = r ?: strbuf_puts(&sb, num);
                } else if (strcmp(expr, "arch") == 0) {
                        struct utsname u;
                        uname(&u);
                        r = r
                                ?: strbuf_printf(&sb, "arch1/linux-%s",
                                                 strcmp(u.machine, "x86_64") == 0 ? "amd64"
                                                                                  : u.machine);
                } else if (strcmp(expr, ".CheckoutKey") == 0) {
                        r = r
                                ?: strbuf_puts(&sb, s->vcs.checkout_key.fingerprint
                                                        ? s->vcs.checkout_key.fingerprint
                                                        : "");
                } else if (drv_startswith(expr, ".Environment.")) {
                        const char *v = env_value(ctx, expr + strlen(".Environment."));
                        r = r ?: strbuf_puts(&sb, v ? v : "<no value>");
                } else if (drv_startswith(expr, "checksum ")) {
                        char file[512];
                        const char *q = expr + strlen("checksum ");
                        size_t l = strlen(q);
                        if (l < 2 || q[0] != '"' || q[l - 1] != '"') {
                                r = drv_err(err, EINVAL,
                                            "cache key '%s': checksum needs a \"FILE\"", tmpl);
                                break;
                        }
                        snprintf(file, sizeof(file), "%.*s", (int)l - 2, q + 1);
                        r = r ?: checksum(ctx, file, &sb, err);
                } else {
                        r = drv_err(err, EINVAL, "cache key '%s': unknown template {{ %s }}", tmpl,
                                    expr);
                }
                p = close + 2;
        }
        if (r == 0 && sb.len > CACHE_MAX_KEY)
                r = drv_err(err, ENAMETOOLONG, "cache key is longer than %d characters",
                            CACHE_MAX_KEY);
        if (r == 0 && (!sb.buf || !objstore_key_ok(sb.buf)))
                r = drv_err(err, EINVAL, "cache key '%s' is empty or has an empty, . or .. part",
                            sb.buf ? sb.buf : "");
        if (r < 0) {
                strbuf_release(&sb);
                return r == -ENOMEM ? drv_err(err, ENOMEM, "out of memory") : r;
        }
        *out = strbuf_detach(&sb);
        return 0;
}

static char *object_key(const char *kind, const char *project, const char *key)
{
        return drv_asprintf("%s/%s/%s", kind, project && project[0] ? project : "default", key);
}

/* Parse the helper's "files dirs links bytes skipped". */
static int parse_stats(const char *p, struct archive_stats *st, struct drv_error *err)
{
        unsigned long long v[5];
        if (sscanf(p, "%llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3], &v[4]) != 5)
                return drv_err(err, EPROTO, "the in-job helper sent bad statistics");
        *st = (struct archive_stats){v[0], v[1], v[2], v[3], v[4]};
        return 0;
}

/* The in-job helper archives patterns (relative to the inside dir base) into key; *stored is
 * false when nothing matched and !keep_empty (then nothing is stored). */
static int pack_to_store(const struct step_ctx *ctx, const char *base, char *const *patterns,
                         const char *key, bool keep_empty, struct archive_stats *st, bool *stored,
                         struct drv_error *err)
{
        struct jh_caps caps = jobhelper_caps(ctx);
        char mf[32], ms[32];
        snprintf(mf, sizeof(mf), "%llu", (unsigned long long)caps.max_file);
        snprintf(ms, sizeof(ms), "%llu", (unsigned long long)caps.max_step);
        _cleanup_free_ const char **args = calloc(drv_strv_len(patterns) + 5, sizeof(char *));
        if (!args)
                return drv_err(err, ENOMEM, "out of memory");
        size_t n = 0;
        args[n++] = "pack", args[n++] = base, args[n++] = mf, args[n++] = ms;
        for (size_t i = 0; patterns && patterns[i]; i++)
                args[n++] = patterns[i];
        struct jobhelper *h = NULL;
        int r = jobhelper_start(ctx, args, &h, err), fd = -1;
        /* the compressed archive of at most max_step file bytes (zstd's worst case is below) */
        uint64_t sent = 0, limit = caps.max_step + caps.max_step / 64 + (1u << 20);
        char type = 0;
        const char *p;
        *stored = false;
        while (r == 0 && (r = jobhelper_next(h, &type, &p, &n, err)) == 0) {
                if (type == 'W') {
                        output_step_printf(ctx->out, ctx->step_index, "Warning: %s", p);
                } else if (type == 'D') {
                        if ((sent += n) > limit)
                                r = drv_err(err, EFBIG, "the archive exceeds %llu bytes",
                                            (unsigned long long)limit);
                        else if (fd < 0)
                                r = objstore_begin(ctx->store, key, &fd, err);
                        if (r == 0 && drv_write_all(fd, p, n) < 0)
                                r = drv_err_errno(err, "storing %s", key);
                } else if (type == 'S') {
                        r = parse_stats(p, st, err);
                        break;
                } else {
                        r = jobhelper_unexpected(type, p, err);
                }
        }
        r = jobhelper_end(h, r, err);
        bool empty = st->files + st->dirs + st->links == 0;
        if (r == 0 && fd < 0)
                r = drv_err(err, EPROTO, "the in-job helper sent no archive");
        if (r == 0 && (keep_empty || !empty))
                r = objstore_commit(ctx->store, key, fd, err);
        else if (fd >= 0)
                objstore_abort(ctx->store, key, fd);
        *stored = r == 0 && (keep_empty || !empty);
        return r;
}

/* Download key and have the in-job helper extract it into the inside dir dest as it comes;
 * -ENOENT when absent. The helper keeps it only when the download came whole and intact, else
 * (and on any refused entry) it undoes the extraction. */
/* Have a new helper replay the undo log of one that was killed. */
static void undo_unpack(const struct step_ctx *ctx, const char *dest, const char *log)
{
        const char *args[] = {"undo", dest, log, NULL};
        _cleanup_free_ char *res = NULL;
        struct drv_error e = {0};
        if (jobhelper_run(ctx, args, &res, &e) < 0)
                output_step_printf(ctx->out, ctx->step_index,
                                   "Warning: what the killed restore wrote stays in the job (%s)",
                                   e.message);
        else
                output_step_printf(ctx->out, ctx->step_index,
                                   "Removed what the killed restore had written");
}

static int unpack_from_store(const struct step_ctx *ctx, const char *dest, bool create,
                             const char *key, struct archive_stats *st, struct drv_error *err)
{
        int fd;
        void *rh = NULL;
        int r = objstore_read_begin(ctx->store, key, &fd, &rh, err);
        if (r < 0)
                return r;
        /* the undo log, in the job's /tmp, for when the helper is killed midway */
        char log[96];
        snprintf(log, sizeof(log), "/tmp/.drover-undo-%u-%lld", ctx->step_index,
                 (long long)drv_now_ns());
        const char *args[] = {"unpack", dest, create ? "1" : "0", log, NULL};
        struct jobhelper *h = NULL;
        r = jobhelper_start(ctx, args, &h, err);
        _cleanup_free_ char *buf = r == 0 ? malloc(JH_MAX_FRAME) : NULL;
        if (r == 0 && !buf)
                r = drv_err(err, ENOMEM, "out of memory");
        struct drv_error e2 = {0};
        bool whole = false, sent = r == 0;
        while (sent) {
                ssize_t k = DRV_RETRY(read(fd, buf, JH_MAX_FRAME));
                if (k <= 0) {
                        whole = k == 0;
                        break;
                }
                /* a helper that stopped reading has refused the archive: its answer says why */
                sent = jobhelper_send(h, 'D', buf, (size_t)k, &e2) == 0;
        }
        int re = objstore_read_end(ctx->store, rh, fd, &e2);
        if (sent)
                jobhelper_send(h, whole && re == 0 ? 'C' : 'A', NULL, 0, &e2);
        char type = 0;
        const char *p;
        size_t n;
        if (r == 0)
                r = jobhelper_next(h, &type, &p, &n, err);
        if (r == 0)
                r = type == 'S' ? parse_stats(p, st, err) : jobhelper_unexpected(type, p, err);
        bool answered = type == 'S' || type == 'X';
        r = jobhelper_end(h, r, err);
        if (r < 0 && h && !answered) /* killed midway (out of memory): undo what it did */
                undo_unpack(ctx, dest, log);
        if (r == 0 && re < 0)
                r = drv_err(err, EIO, "the download did not come whole");
        return r;
}

int cache_step_save(const struct step_ctx *ctx, const struct js_step *step, struct drv_error *err)
{
        _cleanup_free_ char *key = NULL;
        if (!ctx->store)
                return drv_err(err, EINVAL, "save_cache: the job has no storage");
        int r = cache_key_render(ctx, step->key, &key, err);
        if (r < 0)
                return r;
        _cleanup_free_ char *okey = object_key("caches", ctx->spec->project, key);
        bool exists = false;
        if (!okey || objstore_exists(ctx->store, okey, &exists, err) < 0)
                return okey ? -EIO : drv_err(err, ENOMEM, "out of memory");
        if (exists) {
                output_step_printf(ctx->out, ctx->step_index,
                                   "Skipping cache generation, cache already exists for key: %s",
                                   key);
                return 0;
        }
        _cleanup_strv_ char **patterns = NULL; /* absolute names, below the job's root */
        for (size_t i = 0; step->paths && step->paths[i]; i++) {
                char *abs = cache_inside_path(ctx, step->paths[i]);
                if (!abs || drv_strv_push(&patterns, abs + 1) < 0) {
                        free(abs);
                        return drv_err(err, ENOMEM, "out of memory");
                }
                free(abs);
        }
        output_step_printf(ctx->out, ctx->step_index, "Creating cache archive for key %s...", key);
        struct archive_stats st = {0};
        bool stored;
        r = pack_to_store(ctx, "/", patterns, okey, false, &st, &stored, err);
        if (r < 0)
                return drv_err_prefix(err, "save_cache %s", key);
        if (!stored) {
                output_step_printf(ctx->out, ctx->step_index,
                                   "No files to cache for key %s; nothing stored", key);
                return 0;
        }
        output_step_printf(
            ctx->out, ctx->step_index, "Stored cache %s: %llu files, %llu bytes, to %s", key,
            (unsigned long long)st.files, (unsigned long long)st.bytes, objstore_name(ctx->store));
        return 0;
}

int cache_step_restore(const struct step_ctx *ctx, const struct js_step *step,
                       struct drv_error *err)
{
        if (!ctx->store)
                return drv_err(err, EINVAL, "restore_cache: the job has no storage");
        for (size_t i = 0; step->keys && step->keys[i]; i++) {
                _cleanup_free_ char *key = NULL;
                int r = cache_key_render(ctx, step->keys[i], &key, err);
                if (r < 0)
                        return r;
                _cleanup_free_ char *prefix = object_key("caches", ctx->spec->project, key);
                struct objstore_entry *ents = NULL;
                size_t n = 0;
                if (!prefix || objstore_list(ctx->store, prefix, &ents, &n, err) < 0)
                        return prefix ? -EIO : drv_err(err, ENOMEM, "out of memory");
                size_t best = n;
                for (size_t k = 0; k < n; k++)
                        if (best == n || ents[k].mtime_ns > ents[best].mtime_ns)
                                best = k;
                if (best == n) {
                        objstore_entries_free(ents, n);
                        continue;
                }
                struct archive_stats st = {0};
                struct drv_error e2 = {0};
                /* streamed: downloaded while the helper unpacks it inside the job */
                r = unpack_from_store(ctx, "/", false, ents[best].key, &st, &e2);
                const char *found = ents[best].key + strlen(prefix) - strlen(key);
                if (r < 0) {
                        output_step_printf(ctx->out, ctx->step_index,
                                           "Warning: the cache %s could not be restored (%s); "
                                           "treating it as a miss",
                                           found, e2.message);
                        objstore_entries_free(ents, n);
                        continue;
                }
                output_step_printf(ctx->out, ctx->step_index,
                                   "Found a cache at key %s: restored %llu files, %llu bytes",
                                   found, (unsigned long long)st.files,
                                   (unsigned long long)st.bytes);
                if (ctx->events) /* for the agent's cache hit/miss metric */
                        job_events_emit(ctx->events, "cache",
                                        json_pack("{s:s, s:b, s:s, s:I}", "action", "restore",
                                                  "hit", 1, "key", found, "bytes",
                                                  (json_int_t)st.bytes));
                objstore_entries_free(ents, n);
                return 0;
        }
        output_step_printf(ctx->out, ctx->step_index, "No cache is found for the given keys");
        if (ctx->events)
                job_events_emit(ctx->events, "cache",
                                json_pack("{s:s, s:b}", "action", "restore", "hit", 0));
        return 0;
}

int workspace_step_persist(const struct step_ctx *ctx, const struct js_step *step,
                           struct drv_error *err)
{
        if (!ctx->store)
                return drv_err(err, EINVAL, "persist_to_workspace: the job has no storage");
        _cleanup_free_ char *root = cache_inside_path(ctx, step->root);
        const struct jobspec *s = ctx->spec;
        _cleanup_free_ char *key =
            drv_asprintf("workspaces/%s/%s/%u-%u.tar.zst", s->workflow_id ? s->workflow_id : "none",
                         s->job_name, s->node_index, ctx->step_index);
        if (!root || !key)
                return drv_err(err, ENOMEM, "out of memory");
        struct archive_stats st = {0};
        bool stored;
        int r = pack_to_store(ctx, root, step->paths, key, true, &st, &stored, err);
        if (r < 0)
                return drv_err_prefix(err, "persist_to_workspace");
        output_step_printf(ctx->out, ctx->step_index,
                           "Persisted %llu files (%llu bytes) from %s to the workspace",
                           (unsigned long long)st.files, (unsigned long long)st.bytes, root);
        job_events_emit(ctx->events, "workspace_layer",
                        json_pack("{s:s, s:s}", "key", key, "job", s->job_name));
        return 0;
}

int workspace_step_attach(const struct step_ctx *ctx, const struct js_step *step,
                          struct drv_error *err)
{
        const struct jobspec *s = ctx->spec;
        if (s->n_layers && !ctx->store)
                return drv_err(err, EINVAL, "attach_workspace: the job has no storage");
        _cleanup_free_ char *at = cache_inside_path(ctx, step->at);
        if (!at)
                return drv_err(err, ENOMEM, "out of memory");
        if (s->n_layers == 0)
                output_step_printf(ctx->out, ctx->step_index,
                                   "No workspace layers: no upstream job persisted one");
        for (size_t i = 0; i < s->n_layers; i++) {
                struct archive_stats st = {0};
                /* streamed: downloaded, decompressed and extracted as it comes, in the job */
                int r = unpack_from_store(ctx, at, true, s->layers[i].key, &st, err);
                if (r == -ENOENT)
                        return drv_err(err, ENOENT,
                                       "attach_workspace: layer %s of job %s is "
                                       "missing from %s",
                                       s->layers[i].key, s->layers[i].job,
                                       objstore_name(ctx->store));
                if (r < 0)
                        return drv_err_prefix(err, "attach_workspace: layer %s of job %s",
                                              s->layers[i].key, s->layers[i].job);
                output_step_printf(
                    ctx->out, ctx->step_index, "Applied the layer of %s: %llu files, %llu bytes",
                    s->layers[i].job, (unsigned long long)st.files, (unsigned long long)st.bytes);
        }
        return 0;
}

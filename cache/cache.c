/* cache.c: cache keys, save/restore with prefix fallback, workspace layers. */
#include "cache/cache.h"
#include "artifacts/objstore.h"
#include "cache/jobfs.h"

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

static int checksum(const struct step_ctx *ctx, const char *file, struct strbuf *out,
                    struct drv_error *err)
{
        struct jobfs fs = {ctx->root_fd, ctx->uid, ctx->gid};
        _cleanup_free_ char *p = cache_inside_path(ctx, file);
        int fd;
        if (!p)
                return drv_err(err, ENOMEM, "out of memory");
        int r = jobfs_open_file(&fs, p, &fd, err);
        if (r < 0)
                return drv_err_prefix(err, "{{ checksum \"%s\" }}", file);
        EVP_MD_CTX *md = EVP_MD_CTX_new();
        unsigned char dig[EVP_MAX_MD_SIZE], b64[128];
        unsigned int dl = 0;
        char buf[65536];
        EVP_DigestInit_ex(md, EVP_sha256(), NULL);
        for (;;) {
                ssize_t n = read(fd, buf, sizeof(buf));
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0) {
                        r = n < 0 ? drv_err_errno(err, "{{ checksum \"%s\" }}", file) : 0;
                        break;
                }
                EVP_DigestUpdate(md, buf, (size_t)n);
        }
        close(fd);
        EVP_DigestFinal_ex(md, dig, &dl);
        EVP_MD_CTX_free(md);
        if (r < 0)
                return r;
        int bl = EVP_EncodeBlock(b64, dig, (int)dl);
        return strbuf_append(out, b64, (size_t)bl) < 0 ? drv_err(err, ENOMEM, "out of memory") : 0;
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

/* Resolve step paths (with ~ and globs) to names relative to the job's root. */
static int resolve_paths(const struct step_ctx *ctx, int base_fd, const char *base_inside,
                         char *const *paths, char ***out, struct drv_error *err)
{
        for (size_t i = 0; paths && paths[i]; i++) {
                _cleanup_free_ char *abs = NULL;
                const char *pattern = paths[i];
                if (base_inside == NULL) { /* caches: absolute names */
                        abs = cache_inside_path(ctx, paths[i]);
                        if (!abs)
                                return drv_err(err, ENOMEM, "out of memory");
                        pattern = abs + 1;
                }
                size_t before = drv_strv_len(*out);
                int r = jobfs_glob(base_fd, pattern, out, err);
                if (r < 0)
                        return r;
                if (drv_strv_len(*out) == before)
                        output_step_printf(ctx->out, ctx->step_index,
                                           "Warning: could not find %s; skipping", paths[i]);
        }
        return 0;
}

/* Download key and extract it into dirfd as it comes (objstore_read_begin/end): -ENOENT when
 * absent; an error also when the stream did not come whole and intact. */
static int read_extract(const struct step_ctx *ctx, const struct jobfs *fs, int dirfd,
                        const char *key, struct archive_stats *st, struct drv_error *err)
{
        int fd;
        void *rh = NULL;
        int r = objstore_read_begin(ctx->store, key, &fd, &rh, err);
        if (r < 0)
                return r;
        r = archive_extract(fs, dirfd, fd, NULL, st, err);
        if (r == 0) { /* the rest (tar padding) must be read for the checksum */
                char sink[65536];
                while (DRV_RETRY(read(fd, sink, sizeof(sink))) > 0)
                        ;
        }
        struct drv_error e2 = {0};
        int r2 = objstore_read_end(ctx->store, rh, fd, &e2);
        if (r == 0 && r2 < 0) {
                *err = e2;
                r = r2;
        }
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
        struct jobfs fs = {ctx->root_fd, ctx->uid, ctx->gid};
        _cleanup_close_ int rootdir = -1;
        _cleanup_strv_ char **names = NULL;
        if ((r = jobfs_open_dir(&fs, "/", false, &rootdir, err)) < 0 ||
            (r = resolve_paths(ctx, rootdir, NULL, step->paths, &names, err)) < 0)
                return r;
        if (!names) {
                output_step_printf(ctx->out, ctx->step_index,
                                   "No files to cache for key %s; nothing stored", key);
                return 0;
        }
        output_step_printf(ctx->out, ctx->step_index, "Creating cache archive for key %s...", key);
        int fd;
        if ((r = objstore_begin(ctx->store, okey, &fd, err)) < 0)
                return r;
        struct archive_stats st = {0};
        r = archive_write_paths(rootdir, names, "", fd, &st, err);
        if (r == 0)
                r = objstore_commit(ctx->store, okey, fd, err);
        if (r < 0) {
                objstore_abort(ctx->store, okey, fd);
                return drv_err_prefix(err, "save_cache %s", key);
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
        struct jobfs fs = {ctx->root_fd, ctx->uid, ctx->gid};
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
                _cleanup_close_ int rootdir = -1;
                struct archive_stats st = {0};
                struct drv_error e2 = {0};
                /* streamed: downloaded while it is unpacked */
                r = jobfs_open_dir(&fs, "/", false, &rootdir, &e2);
                if (r == 0)
                        r = read_extract(ctx, &fs, rootdir, ents[best].key, &st, &e2);
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
        struct jobfs fs = {ctx->root_fd, ctx->uid, ctx->gid};
        _cleanup_free_ char *root = cache_inside_path(ctx, step->root);
        _cleanup_close_ int rootfd = -1;
        _cleanup_strv_ char **names = NULL;
        if (!root)
                return drv_err(err, ENOMEM, "out of memory");
        int r = jobfs_open_dir(&fs, root, false, &rootfd, err);
        if (r < 0)
                return drv_err_prefix(err, "persist_to_workspace root");
        if ((r = resolve_paths(ctx, rootfd, root, step->paths, &names, err)) < 0)
                return r;
        const struct jobspec *s = ctx->spec;
        _cleanup_free_ char *key =
            drv_asprintf("workspaces/%s/%s/%u-%u.tar.zst", s->workflow_id ? s->workflow_id : "none",
                         s->job_name, s->node_index, ctx->step_index);
        int fd;
        if (!key)
                return drv_err(err, ENOMEM, "out of memory");
        if ((r = objstore_begin(ctx->store, key, &fd, err)) < 0)
                return r;
        struct archive_stats st = {0};
        r = archive_write_paths(rootfd, names, "", fd, &st, err);
        if (r == 0)
                r = objstore_commit(ctx->store, key, fd, err);
        if (r < 0) {
                objstore_abort(ctx->store, key, fd);
                return drv_err_prefix(err, "persist_to_workspace");
        }
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
        struct jobfs fs = {ctx->root_fd, ctx->uid, ctx->gid};
        _cleanup_free_ char *at = cache_inside_path(ctx, step->at);
        _cleanup_close_ int atfd = -1;
        if (!at)
                return drv_err(err, ENOMEM, "out of memory");
        int r = jobfs_open_dir(&fs, at, true, &atfd, err);
        if (r < 0)
                return drv_err_prefix(err, "attach_workspace");
        if (s->n_layers == 0)
                output_step_printf(ctx->out, ctx->step_index,
                                   "No workspace layers: no upstream job persisted one");
        for (size_t i = 0; i < s->n_layers; i++) {
                struct archive_stats st = {0};
                /* streamed: downloaded, decompressed and extracted as it comes, never held whole */
                r = read_extract(ctx, &fs, atfd, s->layers[i].key, &st, err);
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

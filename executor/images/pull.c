/* pull.c: img_pull — reference -> (mirror or registry) manifest -> platform manifest -> config
 * + layers in the store, leased; image records ROOT/images/<sha256(name)>.json let the
 * "missing" and "never" policies work without the registry. A record says whether the image is
 * public (pulled or checked without credentials): a private one is used from the store only by a
 * job whose credentials the registry accepts for it — checked with a GET of its manifest by
 * digest, the positive answer remembered AUTH_TTL_S under a keyed hash of the credentials
 * (ROOT/auth/<hmac>, never the secret). */
#include "executor/images/store_int.h"

#include <jansson.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <sys/random.h>
#include <sys/stat.h>

#define PULL_THREADS 3   /* layers downloaded and unpacked at once, as docker does */
#define AUTH_TTL_S   300 /* a registry's yes to a job's credentials is trusted so long */

struct resolved {
        char *digest;      /* manifest digest */
        char *config_json; /* raw image config */
        struct img_manifest man;
        bool public;  /* from a record: pulled or checked without credentials */
        char *source; /* from a record: the registry (or mirror) it came from */
};

static void resolved_free(struct resolved *r)
{
        free(r->source);
        free(r->digest);
        free(r->config_json);
        img_manifest_free(&r->man);
}

/* one record per name and platform */
static char *record_path(struct img_store *st, const char *name, const char *arch)
{
        unsigned char md[32];
        char hex[65];
        _cleanup_free_ char *key = drv_asprintf("%s\n%s", name, arch ? arch : img_host_arch());
        if (!key)
                return NULL;
        EVP_Digest(key, strlen(key), md, NULL, EVP_sha256(), NULL);
        drv_hex(md, sizeof(md), hex);
        return drv_asprintf("%s/images/%s.json", st->root, hex);
}

static int record_write(struct img_store *st, const char *name, const char *arch,
                        const struct resolved *res, bool public, const char *source,
                        struct drv_error *err)
{
        json_t *layers = json_array();
        for (size_t i = 0; layers && i < res->man.n_layers; i++)
                json_array_append_new(layers, json_pack("{s:s, s:s?, s:I}", "digest",
                                                        res->man.layers[i].digest, "mediaType",
                                                        res->man.layers[i].media_type, "size",
                                                        (json_int_t)res->man.layers[i].size));
        json_t *j = json_pack("{s:s, s:s, s:s, s:o, s:b, s:s}", "name", name, "digest", res->digest,
                              "config", res->config_json, "layers", layers, "public", public,
                              "source", source);
        char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
        if (j)
                json_decref(j);
        _cleanup_free_ char *p = record_path(st, name, arch);
        int r = s && p ? drv_write_file_atomic(p, s, strlen(s), 0644, err)
                       : drv_err(err, ENOMEM, "out of memory");
        free(s);
        return r;
}

/* 0 and *res filled, -ENOENT when there is no record. */
static int record_read(struct img_store *st, const char *name, const char *arch,
                       struct resolved *res, struct drv_error *err)
{
        _cleanup_free_ char *p = record_path(st, name, arch);
        _cleanup_free_ char *s = NULL;
        size_t len;
        if (!p)
                return drv_err(err, ENOMEM, "out of memory");
        if (drv_read_file(p, &s, &len, 64u << 20, NULL) < 0)
                return -ENOENT;
        json_t *j = json_loadb(s, len, 0, NULL);
        const char *d = json_string_value(json_object_get(j, "digest"));
        const char *c = json_string_value(json_object_get(j, "config"));
        json_t *layers = json_object_get(j, "layers");
        int r = 0;
        memset(res, 0, sizeof(*res));
        if (!img_digest_valid(d) || !c || !json_is_array(layers)) {
                r = drv_err(err, EINVAL, "image record %s is damaged", p);
        } else {
                const char *src = json_string_value(json_object_get(j, "source"));
                res->public = json_is_true(json_object_get(j, "public"));
                res->source = src ? strdup(src) : NULL;
                res->digest = strdup(d);
                res->config_json = strdup(c);
                res->man.layers = calloc(json_array_size(layers) + 1, sizeof(*res->man.layers));
                size_t i;
                json_t *l;
                json_array_foreach (layers, i, l) {
                        const char *ld = json_string_value(json_object_get(l, "digest"));
                        if (!img_digest_valid(ld) || !res->man.layers) {
                                r = drv_err(err, EINVAL, "image record %s is damaged", p);
                                break;
                        }
                        res->man.layers[i].digest = strdup(ld);
                        res->man.n_layers = i + 1;
                }
        }
        if (j)
                json_decref(j);
        if (r < 0)
                resolved_free(res);
        return r;
}

/* ---- credentials gate the store: ROOT/auth ---- */

/* The store's secret key for the credential hashes (32 random bytes, created once). */
static int auth_secret(struct img_store *st, unsigned char key[32], struct drv_error *err)
{
        _cleanup_free_ char *p = drv_asprintf("%s/auth/key", st->root);
        _cleanup_free_ char *s = NULL;
        size_t len = 0;
        if (!p)
                return drv_err(err, ENOMEM, "out of memory");
        if (drv_read_file(p, &s, &len, 64, NULL) < 0 || len != 32) {
                unsigned char k[32];
                if (getrandom(k, sizeof(k), 0) != (ssize_t)sizeof(k))
                        return drv_err_errno(err, "getrandom");
                int r = drv_write_file_atomic(p, (const char *)k, sizeof(k), 0600, err);
                free(s);
                s = NULL;
                if (r < 0 || drv_read_file(p, &s, &len, 64, err) < 0 || len != 32)
                        return r < 0 ? r : drv_err(err, EIO, "image store key %s is damaged", p);
        }
        memcpy(key, s, 32);
        return 0;
}

/* ROOT/auth/<hex of sha256(secret, registry, name, digest, username, password)>. */
static char *auth_path(struct img_store *st, const char *source, const char *name,
                       const char *digest, const struct img_pull_opts *o, struct drv_error *err)
{
        unsigned char key[32], md[32];
        char hex[65];
        if (auth_secret(st, key, err) < 0)
                return NULL;
        EVP_MD_CTX *c = EVP_MD_CTX_new();
        const char *parts[] = {source, name, digest, o->username, o->password ? o->password : ""};
        bool ok = c && EVP_DigestInit_ex(c, EVP_sha256(), NULL) == 1 &&
                  EVP_DigestUpdate(c, key, sizeof(key)) == 1;
        for (size_t i = 0; ok && i < DRV_ARRAY_SIZE(parts); i++)
                ok = EVP_DigestUpdate(c, parts[i], strlen(parts[i]) + 1) == 1; /* with the NUL */
        ok = ok && EVP_DigestFinal_ex(c, md, NULL) == 1;
        EVP_MD_CTX_free(c);
        explicit_bzero(key, sizeof(key));
        if (!ok) {
                drv_err(err, EIO, "sha256 failed");
                return NULL;
        }
        drv_hex(md, sizeof(md), hex);
        char *p = drv_asprintf("%s/auth/%s", st->root, hex);
        if (!p)
                drv_err(err, ENOMEM, "out of memory");
        return p;
}

/* Did the registry accept these credentials for this image within AUTH_TTL_S? */
static bool auth_fresh(const char *p)
{
        struct stat s;
        struct timespec now;
        clock_gettime(CLOCK_REALTIME, &now);
        return p && stat(p, &s) == 0 && s.st_mtim.tv_sec <= now.tv_sec &&
               now.tv_sec - s.st_mtim.tv_sec < AUTH_TTL_S;
}

static void auth_remember(const char *p)
{
        struct drv_error e = {0};
        if (p && drv_write_file_atomic(p, "", 0, 0600, &e) < 0)
                log_warn("image_auth_cache_failed", "error=\"%s\"", e.message);
}

/* A private image from the store: only when the registry accepts the job's credentials (or,
 * without any, its anonymous access) for it; an anonymous yes makes the record public. */
static int gate_private(struct img_store *st, const struct img_ref *ref, const char *name,
                        struct resolved *res, const struct img_pull_opts *o,
                        enum img_pull_policy pol, struct drv_error *err)
{
        const char *source = res->source ? res->source : ref->registry;
        bool creds = o && o->username;
        _cleanup_free_ char *ap = creds ? auth_path(st, source, name, res->digest, o, err) : NULL;
        if (creds && !ap)
                return -err->code;
        if (res->public || (creds && auth_fresh(ap)))
                return 0;
        if (pol == IMG_PULL_NEVER)
                return drv_err(err, EACCES, "image %s is private and the pull policy is never: %s",
                               name,
                               creds ? "the registry has not accepted these credentials for it "
                                       "lately"
                                     : "give the registry's credentials (auth:)");
        struct reg *reg = NULL;
        _cleanup_free_ char *body = NULL, *ctype = NULL, *dg = NULL;
        size_t len;
        int r = reg_open(source, ref->repository, o, &reg, err);
        if (r == 0)
                r = reg_get_manifest(reg, res->digest, &body, &len, &ctype, &dg, err);
        reg_close(reg);
        if (r == -EACCES || r == -ENOENT)
                return drv_err(err, EACCES,
                               "image %s is in the image store but private: the registry refuses "
                               "it %s (%s)",
                               name, creds ? "with the job's credentials" : "without credentials",
                               err->message);
        if (r < 0)
                return drv_err_prefix(err, "image %s is private: checking the job's access", name);
        log_info("image_access_checked", "image=%s digest=%s credentials=%s", name, res->digest,
                 creds ? "yes" : "none");
        if (creds) {
                auth_remember(ap);
        } else {
                struct drv_error e2 = {0};
                if (record_write(st, name, o ? o->arch : NULL, res, true, source, &e2) < 0)
                        log_warn("image_record_failed", "image=%s error=\"%s\"", name, e2.message);
        }
        return 0;
}

/* Manifest (following an index to the platform's manifest) and config from one registry. */
static int resolve_remote(struct reg *reg, struct img_store *st, const struct img_ref *ref,
                          const char *arch, struct resolved *res, struct drv_error *err)
{
        _cleanup_free_ char *body = NULL, *ctype = NULL;
        size_t len;
        const char *want = ref->digest ? ref->digest : ref->tag;
        int r = reg_get_manifest(reg, want, &body, &len, &ctype, &res->digest, err);
        if (r < 0)
                return r;
        r = img_manifest_parse(body, len, ctype, arch, &res->man, err);
        if (r == 0 && res->man.kind == IMG_MANIFEST_INDEX) {
                _cleanup_free_ char *pick = TAKE_PTR(res->man.platform_pick);
                img_manifest_free(&res->man);
                free(body);
                free(ctype);
                body = ctype = NULL;
                _cleanup_free_ char *pd = NULL;
                r = reg_get_manifest(reg, pick, &body, &len, &ctype, &pd, err);
                if (r == 0)
                        r = img_manifest_parse(body, len, ctype, arch, &res->man, err);
                if (r == 0 && res->man.kind != IMG_MANIFEST_IMAGE)
                        r = drv_err(err, EINVAL, "manifest list points at another list");
                /* the image's digest stays the one asked for (the index's), as docker does */
        }
        if (r < 0)
                return drv_err_prefix(err, "%s/%s", ref->registry, ref->repository);
        size_t clen;
        return store_small_blob(st, reg, res->man.config_digest, &res->config_json, &clen, err);
}

static void img_free(struct img *im)
{
        if (!im)
                return;
        for (size_t i = 0; i < im->n_layers; i++)
                if (im->lease_fds && im->lease_fds[i] >= 0)
                        close(im->lease_fds[i]);
        free(im->lease_fds);
        /* not drv_strv_free: after a failed pull any slot may be NULL (layers fill in any order) */
        for (size_t i = 0; im->layer_dirs && i < im->n_layers; i++)
                free(im->layer_dirs[i]);
        free(im->layer_dirs);
        img_config_free(&im->config);
        free(im->name);
        free(im->digest);
        free(im);
}

void img_release(struct img *im)
{
        img_free(im);
}

/* Layers fetched by up to PULL_THREADS threads, each with its own registry connection. */
struct fetch_job {
        struct img_store *st;
        const struct img_pull_opts *o;
        const struct resolved *res;
        struct img *im;
        pthread_mutex_t lock;
        size_t next;
        bool failed;
        struct drv_error err;
};

struct fetch_worker {
        struct fetch_job *job;
        struct reg *reg;
        pthread_t tid;
        bool started;
};

static void *fetch_worker(void *arg)
{
        struct fetch_worker *w = arg;
        struct fetch_job *job = w->job;
        size_t n = job->res->man.n_layers;
        for (;;) {
                pthread_mutex_lock(&job->lock);
                size_t i = job->next++;
                bool stop = job->failed || i >= n;
                pthread_mutex_unlock(&job->lock);
                if (stop)
                        return NULL;
                /* manifest order is bottom first; layer_dirs are top first */
                size_t slot = n - 1 - i;
                const struct img_layer_desc *desc = &job->res->man.layers[i];
                struct drv_error e = {0};
                unsigned gets = w->reg ? reg_blob_gets(w->reg) : 0;
                uint64_t t0 = drv_now_ns();
                int r = img_canceled(job->o)
                            ? drv_err(&e, ECANCELED, "canceled")
                            : store_layer_get(job->st, w->reg, desc, &job->im->lease_fds[slot],
                                              &job->im->layer_dirs[slot], &e);
                if (r == 0 && job->o && job->o->layer_done)
                        job->o->layer_done(job->o->ud, desc->digest,
                                           w->reg && reg_blob_gets(w->reg) != gets, desc->size,
                                           (drv_now_ns() - t0) / 1000000);
                if (r < 0) {
                        pthread_mutex_lock(&job->lock);
                        if (!job->failed) {
                                job->failed = true;
                                job->err = e;
                        }
                        pthread_mutex_unlock(&job->lock);
                        return NULL;
                }
        }
}

/* Lease every layer of res into im: without reg (store only) one by one, else in parallel. */
static int fetch_layers(struct img_store *st, struct reg *reg, const struct img_pull_opts *o,
                        const struct resolved *res, struct img *im, unsigned *gets,
                        struct drv_error *err)
{
        struct fetch_job job = {.st = st, .o = o, .res = res, .im = im};
        struct fetch_worker w[PULL_THREADS] = {{0}};
        size_t n = res->man.n_layers;
        size_t nw = reg ? (n < PULL_THREADS ? n : PULL_THREADS) : 1;
        pthread_mutex_init(&job.lock, NULL);
        for (size_t k = 0; k < nw; k++) {
                w[k].job = &job;
                if (k == 0)
                        w[k].reg = reg;
                else if (reg_clone(reg, &w[k].reg, NULL) < 0)
                        break;
                if (k > 0 && pthread_create(&w[k].tid, NULL, fetch_worker, &w[k]) == 0)
                        w[k].started = true;
        }
        fetch_worker(&w[0]); /* the calling thread works too */
        for (size_t k = 1; k < nw; k++) {
                if (w[k].started)
                        pthread_join(w[k].tid, NULL);
                if (w[k].reg) {
                        if (gets)
                                *gets += reg_blob_gets(w[k].reg);
                        reg_close(w[k].reg);
                }
        }
        if (gets && reg)
                *gets += reg_blob_gets(reg);
        pthread_mutex_destroy(&job.lock);
        if (job.failed) {
                *err = job.err;
                return -job.err.code;
        }
        return 0;
}

/* Lease (and fetch when reg) every layer of res into a new struct img. */
static int build_img(struct img_store *st, struct reg *reg, const struct img_pull_opts *o,
                     const char *name, const struct resolved *res, struct img **out, unsigned *gets,
                     struct drv_error *err)
{
        struct img *im = calloc(1, sizeof(*im));
        size_t n = res->man.n_layers;
        if (!im)
                return drv_err(err, ENOMEM, "out of memory");
        im->name = strdup(name);
        im->digest = strdup(res->digest);
        im->layer_dirs = calloc(n + 1, sizeof(char *));
        im->lease_fds = calloc(n + 1, sizeof(int));
        if (!im->name || !im->digest || !im->layer_dirs || !im->lease_fds) {
                img_free(im);
                return drv_err(err, ENOMEM, "out of memory");
        }
        for (size_t i = 0; i < n; i++)
                im->lease_fds[i] = -1;
        im->n_layers = n;
        int r = img_config_parse(res->config_json, strlen(res->config_json), &im->config, err);
        if (r == 0)
                r = fetch_layers(st, reg, o, res, im, gets, err);
        if (r < 0) {
                img_free(im);
                return drv_err_prefix(err, "image %s", name);
        }
        *out = im;
        return 0;
}

/* Pull from one registry (or mirror) host. */
static int pull_from(struct img_store *st, const char *host, const struct img_ref *ref,
                     const char *name, const struct img_pull_opts *o, struct img **out,
                     struct drv_error *err)
{
        struct reg *reg = NULL;
        unsigned gets = 0;
        int r = reg_open(host, ref->repository, o, &reg, err);
        if (r < 0)
                return r;
        struct resolved res = {0};
        r = resolve_remote(reg, st, ref, o ? o->arch : NULL, &res, err);
        if (r == 0)
                r = build_img(st, reg, o, name, &res, out, &gets, err);
        if (r == 0) {
                struct drv_error e2 = {0};
                bool creds = o && o->username;
                if (record_write(st, name, o ? o->arch : NULL, &res, !creds, host, &e2) < 0)
                        log_warn("image_record_failed", "image=%s error=\"%s\"", name, e2.message);
                _cleanup_free_ char *ap =
                    creds ? auth_path(st, host, name, res.digest, o, &e2) : NULL;
                auth_remember(ap); /* the registry just accepted the credentials */
                log_info("image_pulled", "image=%s digest=%s layers=%zu registry=%s blob_gets=%u",
                         name, res.digest, res.man.n_layers, host, gets);
        }
        resolved_free(&res);
        reg_close(reg);
        return r;
}

int img_pull(struct img_store *st, const char *name_in, const struct img_pull_opts *o,
             struct img **out, struct drv_error *err)
{
        struct img_ref ref;
        *out = NULL;
        int r = img_ref_parse(name_in, &ref, err);
        if (r < 0)
                return r;
        _cleanup_free_ char *name = img_ref_format(&ref);
        enum img_pull_policy pol = o ? o->policy : IMG_PULL_MISSING;
        st->cancel = o ? o->cancel : NULL; /* a wait for another process's download too */
        if (!name) {
                img_ref_free(&ref);
                return drv_err(err, ENOMEM, "out of memory");
        }
        if (pol != IMG_PULL_ALWAYS) {
                struct resolved res;
                struct drv_error e2 = {0};
                r = record_read(st, name, o ? o->arch : NULL, &res, &e2);
                if (r == 0) {
                        r = gate_private(st, &ref, name, &res, o, pol, err);
                        if (r < 0) {
                                resolved_free(&res);
                                img_ref_free(&ref);
                                return r;
                        }
                        r = build_img(st, NULL, o, name, &res, out, NULL, &e2);
                        resolved_free(&res);
                        if (r == 0) {
                                log_info("image_cached", "image=%s digest=%s", name,
                                         (*out)->digest);
                                img_ref_free(&ref);
                                goto gc;
                        }
                }
                if (pol == IMG_PULL_NEVER) {
                        img_ref_free(&ref);
                        if (r == -ENOENT && !e2.message[0])
                                return drv_err(err, ENOENT,
                                               "image %s is not in the image store and the pull "
                                               "policy is never",
                                               name);
                        return drv_err(err, -r,
                                       "image %s is not complete in the image store "
                                       "and the pull policy is never: %s",
                                       name, e2.message);
                }
        }
        r = -ENOENT;
        if (strcmp(ref.registry, "docker.io") == 0 && o && o->mirrors) {
                for (size_t i = 0; o->mirrors[i] && r < 0 && r != -ECANCELED; i++) {
                        struct drv_error me = {0};
                        r = pull_from(st, o->mirrors[i], &ref, name, o, out, &me);
                        if (r < 0)
                                log_warn("image_mirror_failed", "mirror=%s image=%s error=\"%s\"",
                                         o->mirrors[i], name, me.message);
                }
        }
        if (r == -ECANCELED)
                r = drv_err(err, ECANCELED, "image %s: pull canceled", name);
        else if (r < 0)
                r = pull_from(st, ref.registry, &ref, name, o, out, err);
        img_ref_free(&ref);
        if (r < 0)
                return r;
gc:
        if (st->max_bytes) {
                struct drv_error ge = {0};
                uint64_t freed;
                if (img_store_gc(st, st->max_bytes, &freed, &ge) < 0)
                        log_warn("image_gc_failed", "error=\"%s\"", ge.message);
        }
        return 0;
}

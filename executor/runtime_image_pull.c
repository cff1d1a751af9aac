/* runtime_image_pull.c: pulling a `docker:` job's images into drover's layer store — the
 * operator's settings from the environment, every image in a thread of its own, progress as lines
 * of the job's output (one per layer pulled, one per image ready, at most one every 10 s per
 * image while a blob downloads), and a cancel of the job stopping the pulls promptly. */
#include "executor/runtime_image.h"
#include "executor/images/images.h"

#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <time.h>

#define DEFAULT_STORE     "/var/lib/drover/images"
#define DEFAULT_STORE_MAX "20G" /* a bound (and GC after each job's pulls) by default */
#define PROGRESS_EVERY_NS (10ULL * 1000000000ULL)
#define CANCEL_POLL_NS    (100ULL * 1000000ULL)

struct pulls;

/* One image's pull, in its own thread. */
struct pull_task {
        struct pulls *ps;
        const char *image; /* as the job spec names it */
        struct img_pull_opts o;
        bool insecure_ok;
        struct img_store *store;
        struct img *img;
        int r;
        struct drv_error err;
        uint64_t t0, ms, last_line_ns;
        unsigned fetched, reused; /* layers */
        uint64_t bytes;           /* of the blobs fetched */
};

struct pulls {
        const struct runtime_hooks *hooks;
        pthread_mutex_t lock; /* the tasks' counters and the notice lines */
        pthread_cond_t done;
        size_t running;
        atomic_bool cancel;
        uint64_t deadline_ns; /* the job's timeout, armed from the job's start */
        bool timed_out;
};

void rtimg_say(const struct runtime_hooks *h, const char *fmt, ...)
{
        _cleanup_free_ char *line = NULL;
        va_list ap;
        va_start(ap, fmt);
        int n = vasprintf(&line, fmt, ap);
        va_end(ap);
        if (n < 0)
                return;
        if (h && h->notice)
                h->notice(h->ud, line);
        else
                fprintf(stderr, "%s\n", line);
}

/* A blob downloading for long: a line every PROGRESS_EVERY_NS per image, no more. */
static void on_progress(void *ud, const char *digest, uint64_t done, uint64_t total)
{
        struct pull_task *t = ud;
        uint64_t now = drv_now_ns();
        pthread_mutex_lock(&t->ps->lock);
        if (total > done && now - t->last_line_ns >= PROGRESS_EVERY_NS) {
                t->last_line_ns = now;
                rtimg_say(t->ps->hooks, "%s: downloading %.19s: %.1f of %.1f MB", t->image,
                          digest ? digest : "?", (double)done / 1e6, (double)total / 1e6);
        }
        pthread_mutex_unlock(&t->ps->lock);
}

static void on_layer(void *ud, const char *digest, bool fetched, uint64_t bytes, uint64_t ms)
{
        struct pull_task *t = ud;
        pthread_mutex_lock(&t->ps->lock);
        if (fetched) {
                t->fetched++;
                t->bytes += bytes;
                t->last_line_ns = drv_now_ns();
                rtimg_say(t->ps->hooks, "%s: layer %.19s pulled (%.1f MB in %.1f s)", t->image,
                          digest, (double)bytes / 1e6, (double)ms / 1e3);
        } else {
                t->reused++;
        }
        pthread_mutex_unlock(&t->ps->lock);
}

/* Is the registry of an image reference on this host (127.*, localhost, [::1])? */
static bool loopback_registry(const char *ref)
{
        const char *slash = strchr(ref, '/');
        if (!slash)
                return false;
        size_t n = (size_t)(slash - ref);
        char host[256];
        if (n >= sizeof(host))
                return false;
        memcpy(host, ref, n);
        host[n] = '\0';
        if (!strchr(host, '.') && !strchr(host, ':') && strcmp(host, "localhost") != 0)
                return false;              /* a docker.io name like library/alpine */
        return img_host_is_loopback(host); /* by address, never a name prefix */
}

/* As Docker with registries on loopback: https first; when TLS fails there, plain http. */
static int pull_one(struct img_store *st, const char *name, struct img_pull_opts *o,
                    bool insecure_ok, struct img **out, struct drv_error *err)
{
        o->insecure_http = false;
        int r = img_pull(st, name, o, out, err);
        if (r != -EPROTO || !insecure_ok || !loopback_registry(name))
                return r;
        struct drv_error e2 = {0};
        o->insecure_http = true;
        r = img_pull(st, name, o, out, &e2);
        if (r < 0 && e2.code != EIO) {
                *err = e2; /* the registry answered over http: its answer is what matters */
        } else if (r < 0) {
                char first[sizeof(err->message)];
                snprintf(first, sizeof(first), "%s", err->message);
                drv_err(err, err->code, "%s (over plain http: %s)", first, e2.message);
        }
        return r;
}

static void *pull_thread(void *arg)
{
        struct pull_task *t = arg;
        t->r = pull_one(t->store, t->image, &t->o, t->insecure_ok, &t->img, &t->err);
        t->ms = (drv_now_ns() - t->t0) / 1000000;
        double s = (double)t->ms / 1e3;
        pthread_mutex_lock(&t->ps->lock);
        if (t->r == 0 && t->fetched)
                rtimg_say(t->ps->hooks,
                          "%s: ready, %.19s: %u of %zu layers pulled (%.1f MB in %.1f s)", t->image,
                          t->img->digest, t->fetched, t->img->n_layers, (double)t->bytes / 1e6, s);
        else if (t->r == 0)
                rtimg_say(t->ps->hooks, "%s: ready, %.19s: all %zu layers in the image store",
                          t->image, t->img->digest, t->img->n_layers);
        t->ps->running--;
        pthread_cond_signal(&t->ps->done);
        pthread_mutex_unlock(&t->ps->lock);
        return NULL;
}

/* Wait for every pull, polling the job's cancel: a cancel makes the pulls stop. */
static void wait_pulls(struct pulls *ps)
{
        pthread_mutex_lock(&ps->lock);
        while (ps->running) {
                const struct runtime_hooks *h = ps->hooks;
                if (!atomic_load(&ps->cancel) && drv_now_ns() >= ps->deadline_ns) {
                        ps->timed_out = true;
                        atomic_store(&ps->cancel, true);
                        log_info("image_pull_timeout", "running=%zu", ps->running);
                        rtimg_say(h, "the job's timeout was reached: stopping the image pulls");
                }
                if (!atomic_load(&ps->cancel) && h && h->canceled && h->canceled(h->ud)) {
                        atomic_store(&ps->cancel, true);
                        log_info("image_pull_cancel", "running=%zu", ps->running);
                        rtimg_say(h, "canceled: stopping the image pulls");
                }
                struct timespec ts;
                clock_gettime(CLOCK_MONOTONIC, &ts);
                uint64_t ns = (uint64_t)ts.tv_nsec + CANCEL_POLL_NS;
                ts.tv_sec += (time_t)(ns / 1000000000ULL);
                ts.tv_nsec = (long)(ns % 1000000000ULL);
                pthread_cond_timedwait(&ps->done, &ps->lock, &ts);
        }
        pthread_mutex_unlock(&ps->lock);
}

static int pull_policy(enum img_pull_policy *out, struct drv_error *err)
{
        const char *p = getenv("DROVER_IMAGE_PULL");
        *out = IMG_PULL_MISSING;
        if (!p || !*p || strcmp(p, "missing") == 0)
                return 0;
        if (strcmp(p, "never") == 0)
                *out = IMG_PULL_NEVER;
        else if (strcmp(p, "always") == 0)
                *out = IMG_PULL_ALWAYS;
        else
                return drv_err(err, EINVAL, "DROVER_IMAGE_PULL=%s: want never, missing or always",
                               p);
        return 0;
}

/* The operator's settings (runtime_image.h) into o; *root and *max of the store. */
static int pull_settings(struct img_pull_opts *o, char ***mirrors, bool *insecure_ok,
                         const char **root, uint64_t *max, struct drv_error *err)
{
        const char *store = getenv("DROVER_IMAGE_STORE");
        const char *max_s = getenv("DROVER_IMAGE_STORE_MAX");
        const char *mirrors_s = getenv("DROVER_IMAGE_MIRRORS");
        const char *insecure = getenv("DROVER_IMAGE_INSECURE_HTTP");
        const char *stall = getenv("DROVER_IMAGE_STALL_TIMEOUT");
        *max = 0;
        if (!max_s || !*max_s)
                max_s = DEFAULT_STORE_MAX;
        if (strcmp(max_s, "0") != 0 && drv_parse_size(max_s, max) < 0)
                return drv_err(err, EINVAL, "DROVER_IMAGE_STORE_MAX '%s' is not a size", max_s);
        uint64_t st_s = 0;
        if (stall && *stall && (drv_parse_duration(stall, &st_s) < 0 || !st_s || st_s > 3600))
                return drv_err(err, EINVAL, "DROVER_IMAGE_STALL_TIMEOUT '%s': want 1s to 1h",
                               stall);
        o->stall_timeout_s = (unsigned)st_s;
        *insecure_ok = !insecure || strcmp(insecure, "0") != 0;
        o->ca_file = getenv("DROVER_IMAGE_CA_FILE");
        if (o->ca_file && !*o->ca_file)
                o->ca_file = NULL;
        int r = pull_policy(&o->policy, err);
        if (r < 0)
                return r;
        if (mirrors_s && *mirrors_s) {
                _cleanup_free_ char *copy = strdup(mirrors_s);
                char *save = NULL;
                for (char *m = copy ? strtok_r(copy, ",", &save) : NULL; m;
                     m = strtok_r(NULL, ",", &save))
                        if (drv_strv_push(mirrors, m) < 0)
                                return drv_err(err, ENOMEM, "out of memory");
                o->mirrors = (const char *const *)*mirrors;
        }
        *root = store && *store ? store : DEFAULT_STORE;
        if (!(store && *store) && drv_rootless()) { /* the user's layer store (rootless.md) */
                static char user_store[PATH_MAX];
                _cleanup_free_ char *cache = drv_cache_root();
                if (!cache)
                        return drv_err(err, ENOENT,
                                       "no layer store: set HOME or "
                                       "DROVER_IMAGE_STORE");
                snprintf(user_store, sizeof(user_store), "%s/images", cache);
                *root = user_store;
        }
        return 0;
}

/* Start every pull (a thread each), wait for them all, note what each gave. */
static void run_pulls(struct pulls *ps, struct pull_task *t, size_t n)
{
        _cleanup_free_ pthread_t *th = calloc(n, sizeof(*th));
        _cleanup_free_ bool *started = calloc(n, sizeof(*started));
        for (size_t i = 0; i < n; i++) {
                pthread_mutex_lock(&ps->lock);
                ps->running++;
                pthread_mutex_unlock(&ps->lock);
                bool ok = th && started && pthread_create(&th[i], NULL, pull_thread, &t[i]) == 0;
                if (started)
                        started[i] = ok;
                if (!ok)
                        pull_thread(&t[i]); /* no thread: here, uncancelable */
        }
        wait_pulls(ps);
        for (size_t i = 0; i < n; i++)
                if (started && started[i])
                        pthread_join(th[i], NULL);
}

int rtimg_pull_all(const struct jobspec *spec, const struct runtime_hooks *hooks,
                   struct img_store **gc_store, struct img_store **stores, struct img **imgs,
                   struct drv_error *err)
{
        const struct js_executor *e = &spec->executor;
        struct img_pull_opts o = {.progress = on_progress, .layer_done = on_layer};
        _cleanup_strv_ char **mirrors = NULL;
        const char *root = NULL;
        uint64_t max = 0;
        bool insecure_ok = true;
        int r = pull_settings(&o, &mirrors, &insecure_ok, &root, &max, err);
        if (r < 0)
                return r;
        if ((r = img_store_open(root, max, gc_store, err)) < 0)
                return drv_err_prefix(err, "image store");
        /* the job's clock starts with the job: this is its first work (stepmachine.c arms the
         * same timeout for the steps) */
        uint64_t t0 = drv_now_ns();
        struct pulls ps = {.hooks = hooks, .deadline_ns = t0 + spec->job_timeout * 1000000000ULL};
        _cleanup_free_ struct pull_task *t = calloc(e->n_images, sizeof(*t));
        if (!t)
                return drv_err(err, ENOMEM, "out of memory");
        for (size_t i = 0; i < e->n_images; i++) {
                if ((r = img_store_open(root, max, &stores[i], err)) < 0)
                        return drv_err_prefix(err, "image store");
                t[i] = (struct pull_task){.ps = &ps,
                                          .image = e->images[i].image,
                                          .o = o,
                                          .insecure_ok = insecure_ok,
                                          .store = stores[i],
                                          .t0 = drv_now_ns()};
                t[i].last_line_ns = t[i].t0;
                t[i].o.username = e->images[i].auth.username;
                t[i].o.password = e->images[i].auth.password;
                t[i].o.ud = &t[i];
                t[i].o.cancel = &ps.cancel;
        }
        pthread_condattr_t ca;
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&ps.done, &ca);
        pthread_condattr_destroy(&ca);
        pthread_mutex_init(&ps.lock, NULL);
        run_pulls(&ps, t, e->n_images);
        pthread_cond_destroy(&ps.done);
        pthread_mutex_destroy(&ps.lock);
        for (size_t i = 0; i < e->n_images; i++)
                imgs[i] = t[i].img; /* released by the caller, whatever happened */
        if (ps.timed_out)
                return drv_err(err, ETIME,
                               "the job's timeout (%llu s) was reached during the image pull",
                               (unsigned long long)spec->job_timeout);
        if (atomic_load(&ps.cancel))
                return drv_err(err, ECANCELED, "the job was canceled during the image pull");
        for (size_t i = 0; i < e->n_images; i++) {
                if (t[i].r < 0) {
                        *err = t[i].err;
                        return drv_err_prefix(err, "%s image %s", i ? "service" : "primary",
                                              e->images[i].image);
                }
                log_info("image_ready", "image=%s digest=%s layers=%zu fetched=%u ms=%llu",
                         imgs[i]->name, imgs[i]->digest, imgs[i]->n_layers, t[i].fetched,
                         (unsigned long long)t[i].ms);
        }
        if (max) {
                uint64_t freed = 0;
                struct drv_error e2 = {0};
                if (img_store_gc(*gc_store, max, &freed, &e2) < 0)
                        log_warn("image_gc_failed", "error=\"%s\"", e2.message);
        }
        return 0;
}

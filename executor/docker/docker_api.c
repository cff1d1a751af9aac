/* docker_api.c: the docker client's objects — images (pull with registry auth), networks,
 * containers, execs, archives, and cleanup of everything labelled as drover's. */
#include "executor/docker/docker_int.h"

#include <openssl/evp.h>
#include <time.h>

/* ---- images ---- */

/* Registry host of an image reference, as the engine's auth config wants it. */
static char *registry_of(const char *image)
{
        const char *slash = strchr(image, '/');
        if (slash) {
                size_t n = (size_t)(slash - image);
                if (memchr(image, '.', n) || memchr(image, ':', n) ||
                    (n == 9 && strncmp(image, "localhost", 9) == 0))
                        return strndup(image, n);
        }
        return strdup("https://index.docker.io/v1/");
}

/* base64url of the auth JSON (X-Registry-Auth). */
static char *auth_header(const struct js_auth *auth, const char *image)
{
        _cleanup_free_ char *server = registry_of(image);
        json_t *j =
            json_pack("{s:s, s:s, s:s}", "username", auth->username, "password",
                      auth->password ? auth->password : "", "serveraddress", server ? server : "");
        if (!j)
                return NULL;
        _cleanup_free_ char *text = json_dumps(j, JSON_COMPACT);
        json_decref(j);
        if (!text)
                return NULL;
        size_t n = strlen(text);
        _cleanup_free_ char *b64 = malloc(4 * ((n + 2) / 3) + 1);
        if (!b64)
                return NULL;
        EVP_EncodeBlock((unsigned char *)b64, (const unsigned char *)text, (int)n);
        explicit_bzero(text, n);
        for (char *c = b64; *c; c++)
                *c = *c == '+' ? '-' : *c == '/' ? '_' : *c;
        char *h = drv_asprintf("X-Registry-Auth: %s", b64);
        explicit_bzero(b64, strlen(b64));
        return h;
}

struct pull_ctx {
        struct strbuf line;
        char *error;
        docker_progress_fn progress;
        void *ud;
        struct strbuf all; /* the whole answer, for a status >= 400 */
};

static void pull_line(struct pull_ctx *pc, const char *s, size_t n)
{
        json_t *j = json_loadb(s, n, 0, NULL);
        if (!j)
                return;
        const char *e = json_string_value(json_object_get(j, "error"));
        if (e && !pc->error)
                pc->error = strdup(e);
        const char *st = json_string_value(json_object_get(j, "status"));
        if (st && pc->progress)
                pc->progress(pc->ud, json_string_value(json_object_get(j, "id")), st);
        json_decref(j);
}

static size_t pull_sink(void *ud, const char *p, size_t n)
{
        struct pull_ctx *pc = ud;
        if (strbuf_append(&pc->line, p, n) < 0 ||
            (pc->all.len < 4096 && strbuf_append(&pc->all, p, n) < 0))
                return 0;
        char *nl;
        while (pc->line.len > 0 && (nl = memchr(pc->line.buf, '\n', pc->line.len))) {
                size_t len = (size_t)(nl - pc->line.buf);
                pull_line(pc, pc->line.buf, len);
                memmove(pc->line.buf, nl + 1, pc->line.len - len - 1);
                pc->line.len -= len + 1;
                pc->line.buf[pc->line.len] = 0;
        }
        return n;
}

static bool retry_helps(const char *msg)
{
        return !(strstr(msg, "unauthorized") || strstr(msg, "not found") || strstr(msg, "denied") ||
                 strstr(msg, "auth") || strstr(msg, "manifest unknown") ||
                 strstr(msg, "invalid reference"));
}

int docker_pull(struct docker *d, const char *image, const struct js_auth *auth,
                docker_progress_fn progress, void *ud, struct drv_error *err)
{
        /* split name[:tag] (a ':' after the last '/'), keep digests whole */
        const char *slash = strrchr(image, '/');
        const char *colon = strrchr(slash ? slash : image, ':');
        _cleanup_free_ char *name =
            colon && !strchr(image, '@') ? strndup(image, (size_t)(colon - image)) : strdup(image);
        _cleanup_free_ char *ename = name ? docker_escape(d, name) : NULL;
        _cleanup_free_ char *etag =
            colon && !strchr(image, '@') ? docker_escape(d, colon + 1) : strdup("latest");
        _cleanup_free_ char *path =
            ename && etag ? drv_asprintf("/images/create?fromImage=%s&tag=%s", ename, etag) : NULL;
        _cleanup_free_ char *ah =
            auth && auth->username ? auth_header(auth, image) : strdup("X-Registry-Auth: e30=");
        if (!path || !ah)
                return drv_err(err, ENOMEM, "out of memory");
        const char *hdrs[] = {ah, NULL};
        long delay_ms = 500;
        for (int attempt = 0;; attempt++) {
                struct pull_ctx pc = {STRBUF_INIT, NULL, progress, ud, STRBUF_INIT};
                struct docker_req rq = {.method = "POST",
                                        .path = path,
                                        .versioned = true,
                                        .headers = hdrs,
                                        .body_fd = -1,
                                        .sink = pull_sink,
                                        .sink_ud = &pc,
                                        .retries = 2};
                _cleanup_strbuf_ struct strbuf resp = STRBUF_INIT;
                long st = 0;
                int r = docker_do(d, &rq, &resp, &st, err);
                if (r == 0 && pc.line.len > 0)
                        pull_line(&pc, pc.line.buf, pc.line.len);
                if (r == 0 && st >= 400)
                        r = docker_status_err(d, "POST", "/images/create", st, pc.all.buf, err);
                else if (r == 0 && pc.error)
                        r = drv_err(err, strstr(pc.error, "not found") ? ENOENT : EIO,
                                    "docker %s: POST /images/create: pulling %s: %s", d->host,
                                    image, pc.error);
                strbuf_release(&pc.line);
                strbuf_release(&pc.all);
                free(pc.error);
                if (r == 0)
                        return 0;
                bool again =
                    (st >= 500 || err->code == EIO) && attempt < 2 && retry_helps(err->message);
                if (!again &&
                    (strstr(err->message, "unauthorized") || strstr(err->message, "no basic auth")))
                        return drv_err_prefix(err, "pull %s: registry authentication failed (%s)",
                                              image,
                                              auth && auth->username ? "user and password refused"
                                                                     : "no credentials given");
                if (!again)
                        return drv_err_prefix(err, "pull %s", image);
                log_warn("docker_pull_retry", "host=%s image=%s attempt=%d error=\"%s\"", d->host,
                         image, attempt + 1, err->message);
                usleep((useconds_t)delay_ms * 1000);
                delay_ms *= 3;
        }
}

int docker_image_exists(struct docker *d, const char *image, struct drv_error *err)
{
        _cleanup_free_ char *e = docker_escape(d, image);
        _cleanup_free_ char *path = e ? drv_asprintf("/images/%s/json", e) : NULL;
        if (!path)
                return drv_err(err, ENOMEM, "out of memory");
        json_t *j = NULL;
        int r = docker_call(d, "GET", path, NULL, &j, NULL, err);
        json_decref(j);
        if (r == -ENOENT) {
                drv_err_clear(err);
                return 0;
        }
        return r < 0 ? r : 1;
}

/* ---- networks ---- */

int docker_set_node(struct docker *d, const char *node)
{
        if (node && strlen(node) >= sizeof(d->node))
                return -EINVAL;
        snprintf(d->node, sizeof(d->node), "%s", node ? node : "");
        return 0;
}

static json_t *labels_for(struct docker *d, const char *job)
{
        json_t *l =
            json_pack("{s:s, s:s}", DOCKER_LABEL_MANAGED, "true", DOCKER_LABEL_JOB, job ? job : "");
        if (l && d->node[0])
                json_object_set_new(l, DOCKER_LABEL_NODE, json_string(d->node));
        return l;
}

static int take_id(json_t *j, const char *key, char **id, struct docker *d, const char *what,
                   struct drv_error *err)
{
        const char *s = j ? json_string_value(json_object_get(j, key)) : NULL;
        if (!s)
                return drv_err(err, EPROTO, "docker %s: %s: no %s in the answer", d->host, what,
                               key);
        *id = strdup(s);
        return *id ? 0 : drv_err(err, ENOMEM, "out of memory");
}

int docker_network_create(struct docker *d, const char *name, const char *job, char **id,
                          struct drv_error *err)
{
        json_t *body = json_pack("{s:s, s:s, s:b, s:o}", "Name", name, "Driver", "bridge",
                                 "CheckDuplicate", 1, "Labels", labels_for(d, job));
        if (!body)
                return drv_err(err, ENOMEM, "out of memory");
        json_t *ans = NULL;
        int r = docker_call(d, "POST", "/networks/create", body, &ans, NULL, err);
        json_decref(body);
        if (r == 0)
                r = take_id(ans, "Id", id, d, "POST /networks/create", err);
        json_decref(ans);
        return r;
}

int docker_network_remove(struct docker *d, const char *id, struct drv_error *err)
{
        _cleanup_free_ char *path = drv_asprintf("/networks/%s", id);
        if (!path)
                return drv_err(err, ENOMEM, "out of memory");
        int r = docker_call(d, "DELETE", path, NULL, NULL, NULL, err);
        if (r == -ENOENT) {
                drv_err_clear(err);
                return 0;
        }
        return r;
}

/* ---- containers ---- */

static json_t *strv_json(char *const *v)
{
        json_t *a = json_array();
        for (; a && v && *v; v++)
                json_array_append_new(a, json_string(*v));
        return a;
}

int docker_container_create(struct docker *d, const struct docker_container_spec *s, char **id,
                            struct drv_error *err)
{
        json_t *host = json_object();
        json_t *body = json_object();
        if (!host || !body) {
                json_decref(host);
                json_decref(body);
                return drv_err(err, ENOMEM, "out of memory");
        }
        json_object_set_new(body, "Image", json_string(s->image));
        json_object_set_new(body, "Labels", labels_for(d, s->job));
        json_object_set_new(body, "AttachStdin", json_false());
        json_object_set_new(body, "OpenStdin", json_boolean(s->open_stdin));
        if (s->entrypoint)
                json_object_set_new(body, "Entrypoint", strv_json(s->entrypoint));
        if (s->cmd)
                json_object_set_new(body, "Cmd", strv_json(s->cmd));
        if (s->env)
                json_object_set_new(body, "Env", strv_json(s->env));
        if (s->user)
                json_object_set_new(body, "User", json_string(s->user));
        if (s->workdir)
                json_object_set_new(body, "WorkingDir", json_string(s->workdir));
        if (s->memory_bytes) {
                /* a hard limit, as in the sandbox: no swap beyond it */
                json_object_set_new(host, "Memory", json_integer((json_int_t)s->memory_bytes));
                json_object_set_new(host, "MemorySwap", json_integer((json_int_t)s->memory_bytes));
        }
        if (s->nano_cpus)
                json_object_set_new(host, "NanoCpus", json_integer((json_int_t)s->nano_cpus));
        if (s->pids_limit)
                json_object_set_new(host, "PidsLimit", json_integer((json_int_t)s->pids_limit));
        if (s->network) {
                json_object_set_new(host, "NetworkMode", json_string(s->network));
                if (!drv_startswith(s->network, "container:")) {
                        json_t *ep = json_pack("{s:o}", "Aliases", strv_json(s->aliases));
                        json_object_set_new(
                            body, "NetworkingConfig",
                            json_pack("{s:{s:o}}", "EndpointsConfig", s->network, ep));
                }
        }
        json_object_set_new(body, "HostConfig", host);
        _cleanup_free_ char *ename = s->name ? docker_escape(d, s->name) : NULL;
        _cleanup_free_ char *path = ename ? drv_asprintf("/containers/create?name=%s", ename)
                                          : strdup("/containers/create");
        json_t *ans = NULL;
        int r = path ? docker_call(d, "POST", path, body, &ans, NULL, err)
                     : drv_err(err, ENOMEM, "out of memory");
        json_decref(body);
        if (r == 0)
                r = take_id(ans, "Id", id, d, "POST /containers/create", err);
        json_decref(ans);
        if (r < 0)
                return drv_err_prefix(err, "container from image %s", s->image);
        return 0;
}

static int simple_post(struct docker *d, const char *fmt, const char *id, struct drv_error *err)
{
        _cleanup_free_ char *path = drv_asprintf(fmt, id);
        if (!path)
                return drv_err(err, ENOMEM, "out of memory");
        return docker_call(d, "POST", path, NULL, NULL, NULL, err);
}

int docker_container_start(struct docker *d, const char *id, struct drv_error *err)
{
        return simple_post(d, "/containers/%s/start", id, err);
}

int docker_container_kill(struct docker *d, const char *id, int sig, struct drv_error *err)
{
        _cleanup_free_ char *path = drv_asprintf("/containers/%s/kill?signal=%d", id, sig);
        if (!path)
                return drv_err(err, ENOMEM, "out of memory");
        return docker_call(d, "POST", path, NULL, NULL, NULL, err);
}

int docker_container_remove(struct docker *d, const char *id, struct drv_error *err)
{
        _cleanup_free_ char *path = drv_asprintf("/containers/%s?force=1&v=1", id);
        if (!path)
                return drv_err(err, ENOMEM, "out of memory");
        for (int i = 0;; i++) {
                int r = docker_call(d, "DELETE", path, NULL, NULL, NULL, err);
                if (r == -ENOENT) {
                        drv_err_clear(err);
                        return 0;
                }
                /* 409 "removal already in progress": wait for it to finish */
                if (r != -EEXIST || i >= 50)
                        return r;
                usleep(100000);
        }
}

/* ---- execs ---- */

static int exec_create(struct docker *d, const char *container, char *const *argv, char *const *env,
                       const char *workdir, const char *user, bool in, bool tty, char **exec_id,
                       struct drv_error *err)
{
        json_t *body = json_pack("{s:b, s:b, s:b, s:b, s:o}", "AttachStdin", in, "AttachStdout", 1,
                                 "AttachStderr", 1, "Tty", tty, "Cmd", strv_json(argv));
        if (!body)
                return drv_err(err, ENOMEM, "out of memory");
        if (env)
                json_object_set_new(body, "Env", strv_json(env));
        if (workdir)
                json_object_set_new(body, "WorkingDir", json_string(workdir));
        if (user)
                json_object_set_new(body, "User", json_string(user));
        _cleanup_free_ char *path = drv_asprintf("/containers/%s/exec", container);
        json_t *ans = NULL;
        int r = path ? docker_call(d, "POST", path, body, &ans, NULL, err)
                     : drv_err(err, ENOMEM, "out of memory");
        json_decref(body);
        if (r == 0)
                r = take_id(ans, "Id", exec_id, d, "POST /containers/{id}/exec", err);
        json_decref(ans);
        return r;
}

int docker_exec_create(struct docker *d, const char *container, char *const *argv, char *const *env,
                       const char *workdir, const char *user, char **exec_id, struct drv_error *err)
{
        return exec_create(d, container, argv, env, workdir, user, false, false, exec_id, err);
}

int docker_exec_create_attached(struct docker *d, const char *container, char *const *argv,
                                char *const *env, bool tty, char **exec_id, struct drv_error *err)
{
        return exec_create(d, container, argv, env, NULL, NULL, true, tty, exec_id, err);
}

struct exec_sink {
        struct docker_demux dm;
        int fd;
        int werr;
};

static int exec_out(void *ud, int stream, const void *p, size_t n)
{
        struct exec_sink *es = ud;
        (void)stream;
        if (es->fd < 0)
                return 0;
        int r = drv_write_all(es->fd, p, n);
        if (r < 0)
                es->werr = r;
        return r;
}

static size_t exec_sink_fn(void *ud, const char *p, size_t n)
{
        struct exec_sink *es = ud;
        return docker_demux_feed(&es->dm, p, n, exec_out, es) < 0 ? 0 : n;
}

int docker_exec_start(struct docker *d, const char *exec_id, int out_fd, struct drv_error *err)
{
        _cleanup_free_ char *path = drv_asprintf("/exec/%s/start", exec_id);
        if (!path)
                return drv_err(err, ENOMEM, "out of memory");
        static const char body[] = "{\"Detach\":false,\"Tty\":false}";
        const char *hdrs[] = {"Content-Type: application/json", NULL};
        struct exec_sink es = {.fd = out_fd};
        struct docker_req rq = {.method = "POST",
                                .path = path,
                                .versioned = true,
                                .headers = hdrs,
                                .body = body,
                                .body_len = sizeof(body) - 1,
                                .body_fd = -1,
                                .sink = exec_sink_fn,
                                .sink_ud = &es};
        _cleanup_strbuf_ struct strbuf resp = STRBUF_INIT;
        long st = 0;
        int r = docker_do(d, &rq, &resp, &st, err);
        if (r < 0 && es.werr < 0)
                return drv_err(err, -es.werr, "exec output: %s", strerror(-es.werr));
        if (r < 0)
                return r;
        if (st >= 400)
                return docker_status_err(d, "POST", "/exec/{id}/start", st, NULL, err);
        return 0;
}

int docker_exec_inspect(struct docker *d, const char *exec_id, struct docker_exec_state *st,
                        struct drv_error *err)
{
        _cleanup_free_ char *path = drv_asprintf("/exec/%s/json", exec_id);
        if (!path)
                return drv_err(err, ENOMEM, "out of memory");
        json_t *j = NULL;
        int r = docker_call(d, "GET", path, NULL, &j, NULL, err);
        if (r < 0)
                return r;
        st->running = json_is_true(json_object_get(j, "Running"));
        st->exit_code = (int)json_integer_value(json_object_get(j, "ExitCode"));
        st->pid = (long)json_integer_value(json_object_get(j, "Pid"));
        json_decref(j);
        return 0;
}

int docker_exec_wait(struct docker *d, const char *exec_id, struct docker_exec_state *st,
                     struct drv_error *err)
{
        /* the stream can end a moment before the engine records the exit code */
        for (int i = 0;; i++) {
                int r = docker_exec_inspect(d, exec_id, st, err);
                if (r < 0 || !st->running || i >= 500)
                        return r;
                usleep(i < 20 ? 2000 : 10000);
        }
}

int docker_exec_run(struct docker *d, const char *container, char *const *argv, const char *user,
                    int out_fd, int *exit_code, struct drv_error *err)
{
        _cleanup_free_ char *id = NULL;
        int r = docker_exec_create(d, container, argv, NULL, NULL, user, &id, err);
        if (r < 0)
                return r;
        r = docker_exec_start(d, id, out_fd, err);
        if (r < 0)
                return r;
        struct docker_exec_state st;
        r = docker_exec_wait(d, id, &st, err);
        if (r < 0)
                return r;
        *exit_code = st.exit_code;
        return 0;
}

/* ---- archives ---- */

static char *archive_path(struct docker *d, const char *container, const char *path)
{
        _cleanup_free_ char *e = docker_escape(d, path);
        return e ? drv_asprintf("/containers/%s/archive?path=%s", container, e) : NULL;
}

int docker_archive_put(struct docker *d, const char *container, const char *path, int tar_fd,
                       struct drv_error *err)
{
        _cleanup_free_ char *p = archive_path(d, container, path);
        if (!p)
                return drv_err(err, ENOMEM, "out of memory");
        const char *hdrs[] = {"Content-Type: application/x-tar", NULL};
        struct docker_req rq = {
            .method = "PUT", .path = p, .versioned = true, .headers = hdrs, .body_fd = tar_fd};
        _cleanup_strbuf_ struct strbuf resp = STRBUF_INIT;
        long st = 0;
        int r = docker_do(d, &rq, &resp, &st, err);
        if (r < 0)
                return r;
        if (st >= 400)
                return docker_status_err(d, "PUT", p, st, resp.buf, err);
        return 0;
}

struct fd_sink {
        int fd;
        int werr;
        uint64_t written, max; /* max 0: no bound */
        long *status;
        struct strbuf *errbody;
        struct docker *d;
};

static size_t fd_sink_fn(void *ud, const char *p, size_t n)
{
        struct fd_sink *fs = ud;
        long st = 0;
        curl_easy_getinfo(fs->d->curl, CURLINFO_RESPONSE_CODE, &st);
        if (st >= 400)
                return strbuf_append(fs->errbody, p, n) < 0 ? 0 : n;
        fs->written += n;
        int r = fs->max && fs->written > fs->max ? -EFBIG : drv_write_all(fs->fd, p, n);
        if (r < 0) {
                fs->werr = r;
                return 0;
        }
        return n;
}

int docker_archive_get(struct docker *d, const char *container, const char *path, int out_fd,
                       uint64_t max, struct drv_error *err)
{
        _cleanup_free_ char *p = archive_path(d, container, path);
        if (!p)
                return drv_err(err, ENOMEM, "out of memory");
        _cleanup_strbuf_ struct strbuf errbody = STRBUF_INIT;
        struct fd_sink fs = {.fd = out_fd, .errbody = &errbody, .d = d, .max = max};
        struct docker_req rq = {.method = "GET",
                                .path = p,
                                .versioned = true,
                                .body_fd = -1,
                                .sink = fd_sink_fn,
                                .sink_ud = &fs,
                                .retries = 2};
        _cleanup_strbuf_ struct strbuf resp = STRBUF_INIT;
        long st = 0;
        int r = docker_do(d, &rq, &resp, &st, err);
        if (r < 0 && fs.werr == -EFBIG)
                return drv_err(err, EFBIG, "archive of %s: larger than %llu bytes", path,
                               (unsigned long long)max);
        if (r < 0 && fs.werr < 0)
                return drv_err(err, -fs.werr, "archive of %s: write: %s", path, strerror(-fs.werr));
        if (r < 0)
                return r;
        if (st >= 400)
                return docker_status_err(d, "GET", p, st, errbody.buf, err);
        return 0;
}

int docker_path_exists(struct docker *d, const char *container, const char *path,
                       struct drv_error *err)
{
        _cleanup_free_ char *p = archive_path(d, container, path);
        if (!p)
                return drv_err(err, ENOMEM, "out of memory");
        struct docker_req rq = {
            .method = "HEAD", .path = p, .versioned = true, .body_fd = -1, .retries = 2};
        _cleanup_strbuf_ struct strbuf resp = STRBUF_INIT;
        long st = 0;
        int r = docker_do(d, &rq, &resp, &st, err);
        if (r < 0)
                return r;
        if (st == 404)
                return 0;
        if (st >= 400)
                return docker_status_err(d, "HEAD", p, st, NULL, err);
        return 1;
}

/* ---- oom ---- */

/* The engine's clock as "SECONDS.NANOS" (from GET /info SystemTime, RFC 3339 UTC). */
static int engine_now(struct docker *d, char *buf, size_t n, struct drv_error *err)
{
        json_t *info = NULL;
        int r = docker_call(d, "GET", "/info", NULL, &info, NULL, err);
        if (r < 0)
                return r;
        const char *t = json_string_value(json_object_get(info, "SystemTime"));
        struct tm tm = {0};
        const char *rest = t ? strptime(t, "%Y-%m-%dT%H:%M:%S", &tm) : NULL;
        if (!rest) {
                json_decref(info);
                return drv_err(err, EPROTO, "docker %s: GET /info: no SystemTime", d->host);
        }
        char frac[10] = "0";
        if (*rest == '.') {
                size_t k = strspn(rest + 1, "0123456789");
                snprintf(frac, sizeof(frac), "%.*s", (int)(k < 9 ? k : 9), rest + 1);
        }
        json_decref(info);
        snprintf(buf, n, "%lld.%s", (long long)timegm(&tm), frac);
        return 0;
}

int docker_container_oom_count(struct docker *d, const char *id, unsigned *count,
                               struct drv_error *err)
{
        char now[48];
        int r = engine_now(d, now, sizeof(now), err);
        if (r < 0)
                return r;
        json_t *f = json_pack("{s:[s], s:[s], s:[s]}", "container", id, "event", "oom", "type",
                              "container");
        _cleanup_free_ char *ftext = f ? json_dumps(f, JSON_COMPACT) : NULL;
        json_decref(f);
        _cleanup_free_ char *fesc = ftext ? docker_escape(d, ftext) : NULL;
        _cleanup_free_ char *path =
            fesc ? drv_asprintf("/events?since=1&until=%s&filters=%s", now, fesc) : NULL;
        if (!path)
                return drv_err(err, ENOMEM, "out of memory");
        struct docker_req rq = {
            .method = "GET", .path = path, .versioned = true, .body_fd = -1, .retries = 2};
        _cleanup_strbuf_ struct strbuf resp = STRBUF_INIT;
        long st = 0;
        if ((r = docker_do(d, &rq, &resp, &st, err)) < 0)
                return r;
        if (st >= 400)
                return docker_status_err(d, "GET", "/events", st, resp.buf, err);
        /* a stream of JSON objects, one per line */
        unsigned c = 0;
        for (char *line = resp.buf, *next; line && *line; line = next) {
                next = strchr(line, '\n');
                if (next)
                        *next++ = 0;
                json_t *ev = json_loads(line, 0, NULL);
                const char *act = json_string_value(json_object_get(ev, "Action"));
                if (act && strcmp(act, "oom") == 0)
                        c++;
                json_decref(ev);
        }
        *count = c;
        return 0;
}

/* ---- cleanup ---- */

static char *label_filter(struct docker *d, const char *job)
{
        json_t *labels = json_array();
        json_array_append_new(labels, json_string(DOCKER_LABEL_MANAGED "=true"));
        if (job) {
                _cleanup_free_ char *l = drv_asprintf(DOCKER_LABEL_JOB "=%s", job);
                json_array_append_new(labels, json_string(l ? l : ""));
        }
        if (d->node[0]) {
                _cleanup_free_ char *l = drv_asprintf(DOCKER_LABEL_NODE "=%s", d->node);
                json_array_append_new(labels, json_string(l ? l : ""));
        }
        json_t *f = json_pack("{s:o}", "label", labels);
        _cleanup_free_ char *text = f ? json_dumps(f, JSON_COMPACT) : NULL;
        json_decref(f);
        return text ? docker_escape(d, text) : NULL;
}

int docker_cleanup(struct docker *d, const char *job, unsigned *removed, struct drv_error *err)
{
        _cleanup_free_ char *f = label_filter(d, job);
        _cleanup_free_ char *cpath =
            f ? drv_asprintf("/containers/json?all=1&filters=%s", f) : NULL;
        _cleanup_free_ char *npath = f ? drv_asprintf("/networks?filters=%s", f) : NULL;
        _cleanup_free_ char *vpath = f ? drv_asprintf("/volumes?filters=%s", f) : NULL;
        _cleanup_free_ char *ipath = f ? drv_asprintf("/images/json?filters=%s", f) : NULL;
        if (!cpath || !npath || !vpath || !ipath)
                return drv_err(err, ENOMEM, "out of memory");
        unsigned n = 0;
        int first = 0;
        json_t *list = NULL, *it;
        size_t i;
        int r = docker_call(d, "GET", cpath, NULL, &list, NULL, err);
        if (r < 0)
                return r;
        json_array_foreach (list, i, it) {
                const char *id = json_string_value(json_object_get(it, "Id"));
                struct drv_error e = {0};
                if (id && (r = docker_container_remove(d, id, &e)) < 0 && !first)
                        first = drv_err(err, e.code, "%s", e.message);
                else if (id)
                        n++;
        }
        json_decref(list);
        list = NULL;
        /* images a job built through the API proxy (docker_proxy.h) carry the labels too */
        if ((r = docker_call(d, "GET", ipath, NULL, &list, NULL, err)) < 0)
                return r;
        json_array_foreach (list, i, it) {
                const char *id = json_string_value(json_object_get(it, "Id"));
                _cleanup_free_ char *p = id ? drv_asprintf("/images/%s?force=1", id) : NULL;
                struct drv_error e = {0};
                if (p && (r = docker_call(d, "DELETE", p, NULL, NULL, NULL, &e)) < 0 && !first &&
                    e.code != ENOENT)
                        first = drv_err(err, e.code, "%s", e.message);
                else if (p)
                        n++;
        }
        json_decref(list);
        list = NULL;
        if ((r = docker_call(d, "GET", npath, NULL, &list, NULL, err)) < 0)
                return r;
        json_array_foreach (list, i, it) {
                const char *id = json_string_value(json_object_get(it, "Id"));
                struct drv_error e = {0};
                if (id && (r = docker_network_remove(d, id, &e)) < 0 && !first)
                        first = drv_err(err, e.code, "%s", e.message);
                else if (id)
                        n++;
        }
        json_decref(list);
        list = NULL;
        if ((r = docker_call(d, "GET", vpath, NULL, &list, NULL, err)) < 0)
                return r;
        json_array_foreach (json_object_get(list, "Volumes"), i, it) {
                const char *name = json_string_value(json_object_get(it, "Name"));
                _cleanup_free_ char *p = name ? drv_asprintf("/volumes/%s?force=1", name) : NULL;
                struct drv_error e = {0};
                if (p && (r = docker_call(d, "DELETE", p, NULL, NULL, NULL, &e)) < 0 && !first)
                        first = drv_err(err, e.code, "%s", e.message);
                else if (p)
                        n++;
        }
        json_decref(list);
        if (removed)
                *removed = n;
        if (n)
                log_info("docker_cleanup", "host=%s node=%s job=%s removed=%u", d->host,
                         d->node[0] ? d->node : "(any)", job ? job : "(all)", n);
        return first;
}

int docker_cleanup_leftovers(const struct js_docker_host *host, const char *node, unsigned *removed,
                             struct drv_error *err)
{
        struct docker_endpoint ep = {host->url, host->ca_pem, host->cert_pem, host->key_pem};
        _cleanup_(docker_closep) struct docker *d = NULL;
        int r = docker_open(&ep, &d, err);
        if (r < 0)
                return r;
        if (docker_set_node(d, node) < 0)
                return drv_err(err, EINVAL, "node name too long for a label: %s", node);
        return docker_cleanup(d, NULL, removed, err);
}

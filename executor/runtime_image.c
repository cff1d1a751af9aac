/* runtime_image.c: `docker:` jobs in the local sandbox — pull the images into drover's layer store,
 * stack their layers under a per-job writable overlay, apply the image config as CircleCI does
 * (image env under the job's, the job's working directory, user from the image entry else the
 * image's USER else root, steps in the job's shell), and run service images as sibling sandboxes
 * sharing the primary's network namespace (localhost, and their names via /etc/hosts). */
#include "executor/runtime_image.h"
#include "executor/images/images.h"
#include "executor/stepenv.h"

#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/epoll.h>
#include <sys/fsuid.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <sys/xattr.h>

#define DOCKER_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

struct service {
        struct sandbox *sb;
        size_t index; /* in the executor's images */
        char name[72];
        bool reported; /* its end was reported */
        int log_fd;    /* its output: an unlinked file in its own /tmp (service_log_open) */
};

struct rtimg {
        const struct jobspec *spec;
        char name[65];
        struct img_store *store;   /* for the GC */
        struct img_store **stores; /* per image: its pull's own handle */
        struct img **imgs;         /* one per executor image, [0] primary; NULL if not pulled */
        size_t n;                  /* all pulled: the executor's image count */
        struct rtimg_user user;
        char *dir;   /* host dir of this job's generated files (hosts, service logs) */
        char *hosts; /* dir/hosts */
        struct service *svcs;
        size_t n_svcs;
        int ep; /* the services' event fds until their ends were reported (rtimg_poll_fd) */
        const struct sandbox_group *group; /* the job's cgroup over primary and services */
        struct runtime_hooks hooks;        /* the job's output for notices */
        struct rtimg_tools tools;          /* the circleci tools' binds */
};

void rtimg_user_release(struct rtimg_user *u)
{
        free(u->name);
        free(u->home);
        u->name = u->home = NULL;
}

/* ---- reading a file of the image (top layer first, whiteouts and opaque dirs honoured) ---- */

static int open_in_layer(const char *layer, const char *path, int flags)
{
        _cleanup_close_ int root = open(layer, O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (root < 0)
                return -1;
        struct open_how how = {.flags = (uint64_t)(flags | O_CLOEXEC | O_NOFOLLOW),
                               .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS};
        return (int)syscall(SYS_openat2, root, path, &how, sizeof(how));
}

static bool dir_opaque(const char *layer, const char *dir)
{
        _cleanup_close_ int fd = open_in_layer(layer, dir, O_RDONLY | O_DIRECTORY);
        char v[4];
        if (fd < 0)
                return false;
        ssize_t n = fgetxattr(fd, "trusted.overlay.opaque", v, sizeof(v));
        if (n < 0)
                n = fgetxattr(fd, "user.overlay.opaque", v, sizeof(v));
        return n == 1 && v[0] == 'y';
}

/* 1 and the text when the image has path, 0 when not. */
static int image_read(char *const *layers, const char *dir, const char *file, char **out)
{
        char path[256];
        snprintf(path, sizeof(path), "%s/%s", dir, file);
        for (char *const *l = layers; l && *l; l++) {
                /* O_NONBLOCK: a FIFO there must not hang the job's start */
                _cleanup_close_ int fd = open_in_layer(*l, path, O_RDONLY | O_NONBLOCK);
                struct stat st;
                if (fd >= 0 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode))
                        return drv_read_fd(fd, out, NULL, 16 << 20, NULL) < 0 ? 0 : 1;
                _cleanup_close_ int p = open_in_layer(*l, path, O_PATH);
                if (p >= 0)
                        return 0; /* a whiteout (char dev) or something else: no such file */
                _cleanup_close_ int d = open_in_layer(*l, dir, O_PATH);
                if (d >= 0 && (fstat(d, &st) < 0 || !S_ISDIR(st.st_mode)))
                        return 0; /* the directory itself is whited out (or not one) here */
                if (dir_opaque(*l, dir))
                        return 0;
        }
        return 0;
}

/* Find the line of a passwd/group file whose field key_field (0 = name, 2 = id) is key. */
static bool find_entry(const char *text, int key_field, const char *key, char *fields[7],
                       char *line, size_t n)
{
        for (const char *p = text; p && *p;) {
                const char *e = strchr(p, '\n');
                size_t len = e ? (size_t)(e - p) : strlen(p);
                if (len < n && *p != '#') {
                        memcpy(line, p, len);
                        line[len] = '\0';
                        char *s = line;
                        int nf = 0;
                        for (; nf < 7; nf++) {
                                fields[nf] = s;
                                s = s ? strchr(s, ':') : NULL;
                                if (s)
                                        *s++ = '\0';
                        }
                        if (fields[2] && strcmp(fields[key_field], key) == 0)
                                return true;
                }
                p = e ? e + 1 : NULL;
        }
        return false;
}

static bool numeric(const char *s)
{
        uint64_t v;
        return drv_parse_u64(s, &v) == 0;
}

int rtimg_resolve_user(char *const *layer_dirs, const char *user, struct rtimg_user *out,
                       struct drv_error *err)
{
        memset(out, 0, sizeof(*out));
        char u[256], *g = NULL;
        snprintf(u, sizeof(u), "%s", user && *user ? user : "root");
        if ((g = strchr(u, ':')))
                *g++ = '\0';
        _cleanup_free_ char *passwd = NULL, *group = NULL;
        image_read(layer_dirs, "etc", "passwd", &passwd);
        char line[1024], *f[7];
        uint64_t uid = 0, gid = 0;
        bool found = find_entry(passwd, numeric(u) ? 2 : 0, u, f, line, sizeof(line));
        if (found) {
                if (drv_parse_u64(f[2], &uid) < 0 || !f[3] || drv_parse_u64(f[3], &gid) < 0)
                        return drv_err(err, EINVAL, "user %s: bad /etc/passwd entry in the image",
                                       u);
                out->name = strdup(f[0]);
                out->home = strdup(f[5] && f[5][0] == '/' ? f[5] : "/");
        } else if (numeric(u)) {
                drv_parse_u64(u, &uid);
                out->name = strdup(u);
                out->home = strdup(uid == 0 ? "/root" : "/");
        } else {
                return drv_err(err, ENOENT,
                               "unable to find user %s: no matching entries in the image's "
                               "/etc/passwd",
                               u);
        }
        if (g && *g) {
                if (numeric(g)) {
                        drv_parse_u64(g, &gid);
                } else {
                        image_read(layer_dirs, "etc", "group", &group);
                        if (!find_entry(group, 0, g, f, line, sizeof(line)) ||
                            drv_parse_u64(f[2], &gid) < 0) {
                                rtimg_user_release(out);
                                return drv_err(err, ENOENT,
                                               "unable to find group %s: no matching entries in "
                                               "the image's /etc/group",
                                               g);
                        }
                }
        }
        if (!out->name || !out->home) {
                rtimg_user_release(out);
                return drv_err(err, ENOMEM, "out of memory");
        }
        if (uid >= 65536 || gid >= 65536) {
                rtimg_user_release(out);
                return drv_err(err, ERANGE,
                               "user %s: uid %llu / gid %llu: drover's sandbox maps ids below "
                               "65536 only",
                               user, (unsigned long long)uid, (unsigned long long)gid);
        }
        out->uid = (uid_t)uid;
        out->gid = (gid_t)gid;
        return 0;
}

/* ---- environment ---- */

static const char *env_get(char *const *env, const char *name)
{
        size_t l = strlen(name);
        for (char *const *e = env; e && *e; e++)
                if (strncmp(*e, name, l) == 0 && (*e)[l] == '=')
                        return *e + l + 1;
        return NULL;
}

/* Set "K=V" in *env (replacing K). */
static int env_put(char ***env, const char *kv)
{
        const char *eq = strchr(kv, '=');
        if (!eq || eq == kv)
                return 0;
        size_t l = (size_t)(eq - kv);
        for (char **e = *env; e && *e; e++)
                if (strncmp(*e, kv, l + 1) == 0) {
                        char *c = strdup(kv);
                        if (!c)
                                return -ENOMEM;
                        free(*e);
                        *e = c;
                        return 0;
                }
        return drv_strv_push(env, kv);
}

/* The image's env, then the image entry's environment. */
static char **image_env(const struct img *im, const struct js_image *ji)
{
        char **env = calloc(1, sizeof(char *));
        for (char *const *e = im->config.env; env && e && *e; e++)
                if (env_put(&env, *e) < 0)
                        goto oom;
        for (size_t i = 0; env && i < ji->n_env; i++) {
                _cleanup_free_ char *kv = drv_asprintf("%s=%s", ji->env[i].name, ji->env[i].value);
                if (!kv || env_put(&env, kv) < 0)
                        goto oom;
        }
        return env;
oom:
        drv_strv_free(env);
        return NULL;
}

char **rtimg_step_env(const struct rtimg *ri, const char *const *envp)
{
        char **env = image_env(ri->imgs[0], &ri->spec->executor.images[0]);
        _cleanup_free_ char *image_path = NULL;
        const char *ip = env_get(env, "PATH");
        if (ip && !(image_path = strdup(ip)))
                goto oom;
        for (const char *const *e = envp; env && e && *e; e++) {
                if (image_path && strcmp(*e, "PATH=" STEPENV_DEFAULT_PATH) == 0) {
                        /* nobody set PATH: the image's, behind drover's tools */
                        _cleanup_free_ char *p =
                            drv_asprintf("PATH=" STEPENV_TOOLS_DIR ":%s", image_path);
                        if (!p || env_put(&env, p) < 0)
                                goto oom;
                        continue;
                }
                if (env_put(&env, *e) < 0)
                        goto oom;
        }
        return env;
oom:
        drv_strv_free(env);
        return NULL;
}

const struct rtimg_user *rtimg_job_user(const struct rtimg *ri)
{
        return &ri->user;
}

/* ---- the job's /etc/hosts ---- */

static char *short_name(const char *image)
{
        const char *s = strrchr(image, '/');
        s = s ? s + 1 : image;
        return strndup(s, strcspn(s, ":@"));
}

/* Is name one of the blank-separated words of line? */
static bool has_word(const char *line, const char *name)
{
        size_t n = strlen(name);
        for (const char *p = strstr(line, name); p; p = strstr(p + 1, name))
                if ((p == line || p[-1] == ' ' || p[-1] == '\t') && (p[n] == ' ' || p[n] == '\0'))
                        return true;
        return false;
}

static int write_hosts(struct rtimg *ri, struct drv_error *err)
{
        const struct js_executor *e = &ri->spec->executor;
        _cleanup_strbuf_ struct strbuf sb = STRBUF_INIT;
        int r = strbuf_puts(&sb, "127.0.0.1\tlocalhost drover");
        for (size_t i = 1; r == 0 && i < e->n_images; i++) {
                _cleanup_free_ char *sn = short_name(e->images[i].image);
                if (e->images[i].name && !has_word(sb.buf, e->images[i].name))
                        r = strbuf_printf(&sb, " %s", e->images[i].name);
                if (r == 0 && sn && *sn && !has_word(sb.buf, sn))
                        r = strbuf_printf(&sb, " %s", sn);
        }
        r = r ?: strbuf_puts(&sb, "\n::1\tlocalhost ip6-localhost ip6-loopback\n");
        if (r < 0)
                return drv_err(err, ENOMEM, "out of memory");
        ri->hosts = drv_path_join(ri->dir, "hosts");
        if (!ri->hosts)
                return drv_err(err, ENOMEM, "out of memory");
        return drv_write_file_atomic(ri->hosts, sb.buf, sb.len, 0644, err);
}

/* Each service is a sandbox and takes one of the host's SANDBOX_SLOTS: a job has at most
 * DROVER_MAX_SERVICES (the agent's max_services_per_job; default 16) so that one job cannot take
 * them all (issue 20). */
static int check_services(const struct js_executor *e, struct drv_error *err)
{
        uint64_t max = RTIMG_MAX_SERVICES_DEFAULT;
        const char *s = getenv("DROVER_MAX_SERVICES");
        if (s && *s && (drv_parse_u64(s, &max) < 0 || max >= SANDBOX_SLOTS))
                return drv_err(err, EINVAL, "DROVER_MAX_SERVICES '%s': want 0 to %d", s,
                               SANDBOX_SLOTS - 1);
        if (e->n_images - 1 > max)
                return drv_err(err, EINVAL,
                               "$.executor.images: %zu services, more than the %llu a job may "
                               "have on this host (the agent's max_services_per_job; "
                               "DROVER_MAX_SERVICES for drover job/run)",
                               e->n_images - 1, (unsigned long long)max);
        return 0;
}

int rtimg_open(const struct jobspec *spec, const char *name, const struct runtime_hooks *hooks,
               struct rtimg **out, struct drv_error *err)
{
        const struct js_executor *e = &spec->executor;
        if (e->n_images == 0)
                return drv_err(err, EINVAL, "$.executor.images: a docker job needs an image");
        int r = check_services(e, err);
        if (r < 0)
                return r;
        struct rtimg *ri = calloc(1, sizeof(*ri));
        if (!ri)
                return drv_err(err, ENOMEM, "out of memory");
        _cleanup_(rtimg_closep) struct rtimg *guard = ri;
        ri->spec = spec;
        ri->ep = -1;
        snprintf(ri->name, sizeof(ri->name), "%s", name);
        if (hooks)
                ri->hooks = *hooks;
        ri->imgs = calloc(e->n_images, sizeof(*ri->imgs));
        ri->stores = calloc(e->n_images, sizeof(*ri->stores));
        ri->svcs = calloc(e->n_images, sizeof(*ri->svcs));
        char tmpl[128];
        snprintf(tmpl, sizeof(tmpl), "/tmp/drover-imgjob-%s-XXXXXX", ri->name);
        if (!ri->imgs || !ri->stores || !ri->svcs || !mkdtemp(tmpl) || !(ri->dir = strdup(tmpl)))
                return drv_err_errno(err, "job dir");
        chmod(ri->dir, 0755);
        r = rtimg_pull_all(spec, &ri->hooks, &ri->store, ri->stores, ri->imgs, err);
        if (r < 0)
                return r;
        ri->n = e->n_images;
        const struct js_image *p = &e->images[0];
        const struct img *pi = ri->imgs[0];
        r = rtimg_resolve_user(pi->layer_dirs, p->user ? p->user : pi->config.user, &ri->user, err);
        if (r < 0)
                return drv_err_prefix(err, "image %s", p->image);
        if ((r = write_hosts(ri, err)) < 0)
                return r;
        *out = TAKE_PTR(guard);
        return 0;
}

int rtimg_primary_config(struct rtimg *ri, const char *self_exe, struct sandbox_config *sc,
                         struct sandbox_bind *binds, size_t *n_binds, size_t max,
                         struct drv_error *err)
{
        sc->lowerdirs = (const char *const *)ri->imgs[0]->layer_dirs;
        sc->uid = ri->user.uid;
        sc->gid = ri->user.gid;
        sc->ids_given = true;
        sc->user_name = ri->user.name;
        sc->home = ri->user.home;
        if (*n_binds + 1 > max)
                return drv_err(err, E2BIG, "too many binds");
        binds[(*n_binds)++] = (struct sandbox_bind){ri->hosts, "/etc/hosts", true};
        return self_exe ? rtimg_tools_binds(&ri->tools, ri->name, ri->dir, self_exe, binds, n_binds,
                                            max, err)
                        : 0;
}

/* ---- services ---- */

/* Docker's rules: entry's entrypoint replaces the image's and drops its cmd; entry's command
 * replaces the cmd. */
static char **service_argv(const struct img *im, const struct js_image *ji)
{
        char **argv = calloc(1, sizeof(char *));
        char *const *ep = ji->entrypoint ? ji->entrypoint : im->config.entrypoint;
        char *const *cmd = ji->command ? ji->command : ji->entrypoint ? NULL : im->config.cmd;
        for (char *const *a = ep; argv && a && *a; a++)
                if (drv_strv_push(&argv, *a) < 0)
                        goto oom;
        for (char *const *a = cmd; argv && a && *a; a++)
                if (drv_strv_push(&argv, *a) < 0)
                        goto oom;
        return argv;
oom:
        drv_strv_free(argv);
        return NULL;
}

/* "memory 64 MiB, cpus 0.5, pids 4096" (0 = unlimited; pids 0 = the sandbox's default) */
static void limits_text(uint64_t mem_mb, double cpus, uint64_t pids, char *buf, size_t n)
{
        char m[32] = "no memory limit", c[32] = "no cpu limit";
        if (mem_mb)
                snprintf(m, sizeof(m), "memory %llu MiB", (unsigned long long)mem_mb);
        if (cpus > 0)
                snprintf(c, sizeof(c), "cpus %g", cpus);
        snprintf(buf, n, "%s, %s, pids %llu", m, c,
                 (unsigned long long)(pids ? pids : SANDBOX_PIDS_DEFAULT));
}

/* A service's stdout and stderr: a file made in the service's own /tmp before anything of it
 * runs, unlinked at once — in its size-bounded work area (the job's disk bound, its pages
 * charged to the job's memory), named by no path, nothing in the host's /tmp (issue 20). It is
 * made with the file system ids of the sandbox's root (the owner of its /tmp): the job's rights,
 * not the supervisor's (whose ids the sandbox's tmpfs could not even store: EOVERFLOW). */
static int service_log_open(struct sandbox *sb, struct drv_error *err)
{
        static const char name[] = ".drover-service.log";
        struct open_how how = {.flags = O_PATH | O_DIRECTORY | O_CLOEXEC,
                               .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS};
        struct stat st;
        _cleanup_close_ int dir =
            (int)syscall(SYS_openat2, sandbox_root_fd(sb), "/tmp", &how, sizeof(how));
        if (dir < 0 || fstat(dir, &st) < 0)
                return drv_err_errno(err, "service log: the service's /tmp");
        /* setfsuid/setfsgid: this thread only; back to ours right after */
        int old_gid = setfsgid(st.st_gid), old_uid = setfsuid(st.st_uid);
        int fd = openat(dir, name, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        int e = errno;
        if (fd >= 0 && unlinkat(dir, name, 0) < 0)
                log_warn("service_log_unlink", "error=\"%s\"", strerror(errno));
        setfsuid((uid_t)old_uid);
        setfsgid((gid_t)old_gid);
        if (fd < 0)
                return drv_err(err, e, "service log: /tmp/%s: %s", name, strerror(e));
        return fd;
}

static int start_service(struct rtimg *ri, size_t i, struct sandbox *primary, struct drv_error *err)
{
        const struct js_image *ji = &ri->spec->executor.images[i];
        const struct img *im = ri->imgs[i];
        struct service *s = &ri->svcs[ri->n_svcs];
        s->log_fd = -1;
        _cleanup_(rtimg_user_release) struct rtimg_user u = {0};
        int r = rtimg_resolve_user(im->layer_dirs, ji->user ? ji->user : im->config.user, &u, err);
        if (r < 0)
                return r;
        _cleanup_strv_ char **argv = service_argv(im, ji);
        _cleanup_strv_ char **env = image_env(im, ji);
        if (!argv || !env)
                return drv_err(err, ENOMEM, "out of memory");
        if (!argv[0])
                return drv_err(err, EINVAL, "the image has no entrypoint or command to run");
        _cleanup_free_ char *home = drv_asprintf("HOME=%s", u.home);
        _cleanup_free_ char *host = drv_asprintf("HOSTNAME=%s", ji->name ? ji->name : "drover");
        if (!home || !host || (!env_get(env, "PATH") && env_put(&env, "PATH=" DOCKER_PATH) < 0) ||
            (!env_get(env, "HOME") && env_put(&env, home) < 0) || env_put(&env, host) < 0)
                return drv_err(err, ENOMEM, "out of memory");
        snprintf(s->name, sizeof(s->name), "%.56s-svc%zu", ri->name, i);
        struct sandbox_bind binds[1] = {{ri->hosts, "/etc/hosts", true}};
        double cpus;
        uint64_t mem_mb, pids;
        jobspec_service_limits(&ri->spec->executor, i, &cpus, &mem_mb, &pids);
        struct sandbox_config sc = {.name = s->name,
                                    .memory_bytes = mem_mb << 20,
                                    .cpus = cpus,
                                    .pids_max = pids,
                                    .lowerdirs = (const char *const *)im->layer_dirs,
                                    .hostname = ji->name ? ji->name : "drover",
                                    .net = SANDBOX_NET_NONE,
                                    .join_netns_of = primary,
                                    .group = ri->group,
                                    .uid = u.uid,
                                    .gid = u.gid,
                                    .ids_given = true,
                                    .user_name = u.name,
                                    .home = u.home,
                                    .binds = binds,
                                    .n_binds = 1,
                                    .disk_bytes = ri->spec->executor.disk_mb << 20};
        if ((r = sandbox_create(&sc, &s->sb, err)) < 0)
                return r;
        s->index = i;
        ri->n_svcs++;
        struct epoll_event ev = {.events = EPOLLIN, .data.u64 = ri->n_svcs - 1};
        if (epoll_ctl(ri->ep, EPOLL_CTL_ADD, sandbox_event_fd(s->sb), &ev) < 0)
                return drv_err_errno(err, "epoll_ctl");
        if ((s->log_fd = service_log_open(s->sb, err)) < 0)
                return s->log_fd;
        int log_fd = s->log_fd;
        struct sandbox_exec ex = {
            .argv = (const char *const *)argv,
            .envp = (const char *const *)env,
            .cwd = im->config.workdir && *im->config.workdir ? im->config.workdir : "/",
            .stdin_fd = -1,
            .stdout_fd = log_fd,
            .stderr_fd = log_fd,
            .as_root = u.uid == 0,
            .new_session = true};
        int proc;
        if ((r = sandbox_spawn(s->sb, &ex, &proc, err)) < 0)
                return r;
        log_info("service_started",
                 "job=%s image=%s name=%s argv0=%s user=%u memory_mb=%llu cpus=%g pids=%llu",
                 ri->name, ji->image, ji->name ? ji->name : "-", argv[0], (unsigned)u.uid,
                 (unsigned long long)mem_mb, cpus, (unsigned long long)pids);
        char lim[96], total[96];
        const struct js_executor *e = &ri->spec->executor;
        limits_text(mem_mb, cpus, pids, lim, sizeof(lim));
        limits_text(e->memory_mb, e->cpus, e->pids, total, sizeof(total));
        rtimg_say(&ri->hooks, "service %s%s%s started: %s (the job's total with the primary: %s)",
                  ji->name ? ji->name : "", ji->name ? " " : "", ji->image, lim, total);
        return 0;
}

int rtimg_start_services(struct rtimg *ri, struct sandbox *primary,
                         const struct sandbox_group *group, struct drv_error *err)
{
        ri->group = group;
        if (ri->n > 1 && (ri->ep = epoll_create1(EPOLL_CLOEXEC)) < 0)
                return drv_err_errno(err, "epoll_create1");
        for (size_t i = 1; i < ri->n; i++) {
                int r = start_service(ri, i, primary, err);
                if (r < 0)
                        return drv_err_prefix(err, "service image %s",
                                              ri->spec->executor.images[i].image);
        }
        return 0;
}

/* A service that ended during the job (CircleCI shows its container's log): say how — its exit
 * code, or killed by the OOM killer of its own memory limit — with the end of its output, as a
 * line of the job's output. */
static void report_service_end(struct rtimg *ri, size_t i)
{
        struct sandbox_exit ev;
        struct drv_error e = {0};
        if (ri->svcs[i].reported)
                return;
        int r = sandbox_next_exit(ri->svcs[i].sb, &ev, &e);
        if (r == -EAGAIN)
                return; /* still running as it should */
        ri->svcs[i].reported = true;
        /* told (or untellable): its event fd may stay readable (its pid 1 gone), so it is no
         * longer watched — the step machine's loop must not spin on it */
        epoll_ctl(ri->ep, EPOLL_CTL_DEL, sandbox_event_fd(ri->svcs[i].sb), NULL);
        if (r < 0) {
                log_warn("service_exit_unknown", "job=%s svc=%s error=\"%s\"", ri->name,
                         ri->svcs[i].name, e.message);
                return;
        }
        const struct js_image *ji = &ri->spec->executor.images[ri->svcs[i].index];
        char text[2049] = ""; /* the end of its log, never the whole */
        struct stat st;
        int lf = ri->svcs[i].log_fd;
        if (lf >= 0 && fstat(lf, &st) == 0) {
                off_t from = st.st_size > 2048 ? st.st_size - 2048 : 0;
                ssize_t got = pread(lf, text, (size_t)(st.st_size - from), from);
                text[got > 0 ? got : 0] = 0;
        }
        const char *tail = text;
        int code = WIFEXITED(ev.status) ? WEXITSTATUS(ev.status) : 128 + WTERMSIG(ev.status);
        char how[128];
        if (ev.oom)
                snprintf(how, sizeof(how),
                         "was killed: out of memory (its limit: %llu MiB, the job's total: %llu "
                         "MiB; the job's steps went on)",
                         (unsigned long long)(sandbox_memory_limit(ri->svcs[i].sb) >> 20),
                         (unsigned long long)(ri->group
                                                  ? sandbox_group_memory_limit(ri->group) >> 20
                                                  : 0));
        else if (WIFSIGNALED(ev.status))
                snprintf(how, sizeof(how), "was killed by signal %d (code %d)", WTERMSIG(ev.status),
                         code);
        else
                snprintf(how, sizeof(how), "exited during the job with code %d", code);
        log_warn("service_exited", "job=%s image=%s code=%d oom=%d", ri->name, ji->image, code,
                 (int)ev.oom);
        size_t tl = strlen(tail);
        _cleanup_free_ char *t = strndup(tail, tl && tail[tl - 1] == '\n' ? tl - 1 : tl);
        rtimg_say(&ri->hooks, "service %s%s%s %s; %s%s", ji->name ? ji->name : "",
                  ji->name ? " " : "", ji->image, how,
                  *tail ? "the end of its output:\n" : "it wrote nothing", t ? t : "");
}

void rtimg_poll_services(struct rtimg *ri)
{
        for (size_t i = 0; i < ri->n_svcs; i++)
                report_service_end(ri, i);
}

int rtimg_poll_fd(struct rtimg *ri)
{
        return ri->ep;
}

void rtimg_close(struct rtimg *ri)
{
        if (!ri)
                return;
        for (size_t i = 0; i < ri->n_svcs; i++) {
                report_service_end(ri, i);
                sandbox_destroy(ri->svcs[i].sb);
                if (ri->svcs[i].log_fd >= 0)
                        close(ri->svcs[i].log_fd);
        }
        for (size_t i = 0; ri->imgs && i < ri->spec->executor.n_images; i++)
                if (ri->imgs[i])
                        img_release(ri->imgs[i]);
        for (size_t i = 0; ri->stores && i < ri->spec->executor.n_images; i++)
                if (ri->stores[i])
                        img_store_close(ri->stores[i]);
        if (ri->store)
                img_store_close(ri->store);
        if (ri->dir) {
                struct drv_error e = {0};
                if (drv_rm_rf(ri->dir, &e) < 0)
                        log_warn("image_job_dir", "dir=%s error=\"%s\"", ri->dir, e.message);
        }
        rtimg_user_release(&ri->user);
        rtimg_tools_release(&ri->tools);
        if (ri->ep >= 0)
                close(ri->ep);
        free(ri->imgs);
        free(ri->stores);
        free(ri->svcs);
        free(ri->dir);
        free(ri->hosts);
        free(ri);
}

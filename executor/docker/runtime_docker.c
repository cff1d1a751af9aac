/* runtime_docker.c: the job runtime on a remote Docker engine — a primary container and service
 * containers per job, each step an exec pumped by a child process into the step's output fd. */
#include "executor/docker/runtime_docker_int.h"
#include "sandbox/sandbox.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/wait.h>

#define exit_rec rtdocker_exit_rec

static char *short_name(const char *image)
{
        const char *s = strrchr(image, '/');
        s = s ? s + 1 : image;
        size_t n = strcspn(s, ":@");
        return strndup(s, n);
}

static void on_pull_progress(void *ud, const char *id, const char *status)
{
        (void)ud;
        log_debug("docker_pull_progress", "layer=%s status=\"%s\"", id ? id : "-", status);
}

static int ensure_image(struct rtdocker *rt, const struct js_image *im, struct drv_error *err)
{
        int r = docker_image_exists(rt->d, im->image, err);
        if (r != 0)
                return r < 0 ? r : 0;
        log_info("docker_pull", "host=%s image=%s", docker_host_name(rt->d), im->image);
        return docker_pull(rt->d, im->image, &im->auth, on_pull_progress, NULL, err);
}

static char **image_env(const struct js_image *im)
{
        char **v = NULL;
        for (size_t i = 0; i < im->n_env; i++)
                if (drv_strv_push_take(
                        &v, drv_asprintf("%s=%s", im->env[i].name, im->env[i].value)) < 0)
                        break;
        return v;
}

static int create_containers(struct rtdocker *rt, const struct js_executor *e,
                             struct drv_error *err)
{
        int r = docker_network_create(rt->d, rt->net_name, rt->job, &rt->net_id, err);
        if (r < 0)
                return r;
        _cleanup_strv_ char **aliases = NULL;
        for (size_t i = 1; i < e->n_images; i++) {
                if (e->images[i].name)
                        drv_strv_push(&aliases, e->images[i].name);
                char *sn = short_name(e->images[i].image);
                if (sn && (!e->images[i].name || strcmp(sn, e->images[i].name) != 0))
                        drv_strv_push_take(&aliases, sn);
                else
                        free(sn);
        }
        const struct js_image *p = &e->images[0];
        static char *const sh[] = {(char *)"/bin/sh", NULL};
        _cleanup_strv_ char **penv = image_env(p);
        struct docker_container_spec ps = {
            .image = p->image,
            .job = rt->job,
            .entrypoint = p->entrypoint ? p->entrypoint
                          : p->command  ? NULL
                                        : sh,
            .cmd = p->command,
            .env = penv,
            .user = p->user,
            .network = rt->net_name,
            .aliases = aliases,
            .open_stdin = true,
            .memory_bytes = e->memory_mb << 20,
            .nano_cpus = (uint64_t)(e->cpus * 1e9),
        };
        r = docker_container_create(rt->d, &ps, &rt->primary, err);
        if (r < 0)
                return r;
        if ((r = docker_container_start(rt->d, rt->primary, err)) < 0)
                return r;
        _cleanup_free_ char *mode = drv_asprintf("container:%s", rt->primary);
        if (!mode)
                return drv_err(err, ENOMEM, "out of memory");
        for (size_t i = 1; i < e->n_images; i++) {
                const struct js_image *s = &e->images[i];
                _cleanup_strv_ char **senv = image_env(s);
                /* the image's resources, else the job's; pids as a service sandbox has them */
                double cpus;
                uint64_t mem_mb, pids;
                jobspec_service_limits(e, i, &cpus, &mem_mb, &pids);
                struct docker_container_spec ss = {.image = s->image,
                                                   .job = rt->job,
                                                   .entrypoint = s->entrypoint,
                                                   .cmd = s->command,
                                                   .env = senv,
                                                   .user = s->user,
                                                   .network = mode,
                                                   .memory_bytes = mem_mb << 20,
                                                   .nano_cpus = (uint64_t)(cpus * 1e9),
                                                   .pids_limit =
                                                       pids ? pids : SANDBOX_PIDS_DEFAULT};
                char *id = NULL;
                r = docker_container_create(rt->d, &ss, &id, err);
                if (r < 0)
                        return r;
                drv_strv_push_take(&rt->services, id);
                if ((r = docker_container_start(rt->d, id, err)) < 0)
                        return drv_err_prefix(err, "service container %s", s->image);
        }
        return 0;
}

/* Who the job user is inside: uid, gid, name, home (as the engine sets HOME for execs). */
static int probe_user(struct rtdocker *rt, struct drv_error *err)
{
        _cleanup_close_ int fd = memfd_create("probe", MFD_CLOEXEC);
        if (fd < 0)
                return drv_err_errno(err, "memfd_create");
        char *argv[] = {(char *)"/bin/sh", (char *)"-c",
                        (char *)"echo $(id -u) $(id -g) $(id -un 2>/dev/null || id -u) ${HOME:-/} "
                                "$(test -e /bin/bash && echo 1 || echo 0)",
                        NULL};
        int code = -1;
        int r = docker_exec_run(rt->d, rt->primary, argv, NULL, fd, &code, err);
        if (r < 0)
                return drv_err_prefix(err, "probing the job user in %s", rt->image0);
        _cleanup_free_ char *text = NULL;
        lseek(fd, 0, SEEK_SET);
        if (drv_read_fd(fd, &text, NULL, 4096, err) < 0)
                return -EIO;
        unsigned u, g;
        int bash = 0;
        char name[256], home[1024];
        if (code != 0 || sscanf(text, "%u %u %255s %1023s %d", &u, &g, name, home, &bash) != 5)
                return drv_err(err, EPROTO,
                               "docker %s: image %s: cannot learn the job user (needs /bin/sh "
                               "and id): %s",
                               docker_host_name(rt->d), rt->image0, text ? text : "");
        rt->uid = u;
        rt->gid = g;
        rt->have_bash = bash == 1;
        rt->user = strdup(name);
        rt->home = strdup(home);
        return rt->user && rt->home ? 0 : drv_err(err, ENOMEM, "out of memory");
}

int rtdocker_open(const struct runtime_config *cfg, struct rtdocker **out, struct drv_error *err)
{
        const struct jobspec *spec = cfg->spec;
        const struct js_executor *e = &spec->executor;
        if (!e->docker_host.url)
                return drv_err(err, EINVAL,
                               "$.executor.docker_host: the docker runtime needs an engine");
        if (e->n_images == 0)
                return drv_err(err, EINVAL, "$.executor.images: the docker runtime needs an image");
        struct rtdocker *rt = calloc(1, sizeof(*rt));
        if (!rt)
                return drv_err(err, ENOMEM, "out of memory");
        rt->exit_rd = rt->exit_wr = rt->mirror_fd = rt->self_fd = -1;
        pthread_mutex_init(&rt->helper_lock, NULL);
        _cleanup_(rtdocker_closep) struct rtdocker *guard = rt;
        if ((rt->self_fd = rtdocker_self_open(err)) < 0)
                return rt->self_fd;
        uint32_t rnd = 0;
        if (getrandom(&rnd, sizeof(rnd), 0) < 0)
                rnd = (uint32_t)getpid() ^ (uint32_t)drv_now_ns();
        rt->job =
            drv_asprintf("%s.%u.%08x", spec->job_id ? spec->job_id : "job", spec->node_index, rnd);
        rt->net_name = drv_asprintf("drover-%08x", rnd);
        rt->image0 = strdup(e->images[0].image);
        rt->memory = e->memory_mb << 20;
        if (!rt->job || !rt->net_name || !rt->image0)
                return drv_err(err, ENOMEM, "out of memory");
        int pfd[2];
        if (pipe2(pfd, O_CLOEXEC | O_NONBLOCK) < 0)
                return drv_err_errno(err, "pipe");
        rt->exit_rd = pfd[0];
        rt->exit_wr = pfd[1];
        struct docker_endpoint ep = {e->docker_host.url, e->docker_host.ca_pem,
                                     e->docker_host.cert_pem, e->docker_host.key_pem};
        int r = docker_open(&ep, &rt->d, err);
        if (r < 0)
                return r;
        const char *node = getenv(RTDOCKER_NODE_ENV);
        if (node && docker_set_node(rt->d, node) < 0)
                return drv_err(err, EINVAL, "%s too long for a label", RTDOCKER_NODE_ENV);
        uint64_t t0 = drv_now_ns();
        for (size_t i = 0; i < e->n_images; i++)
                if ((r = ensure_image(rt, &e->images[i], err)) < 0)
                        return r;
        if ((r = create_containers(rt, e, err)) < 0 || (r = probe_user(rt, err)) < 0)
                return r;
        log_info("docker_job_ready", "host=%s job=%s primary=%.12s services=%zu user=%s ms=%llu",
                 docker_host_name(rt->d), rt->job, rt->primary, drv_strv_len(rt->services),
                 rt->user, (unsigned long long)((drv_now_ns() - t0) / 1000000));
        *out = TAKE_PTR(guard);
        return 0;
}

/* The step pump (a pump process): the exec's stream into out, then its exit code on report. */
void rtdocker_pump_step(struct docker *base, const struct rtdocker_pump *p)
{
        struct exit_rec rec = {p->proc, -1};
        struct docker *d = NULL;
        struct drv_error e = {0};
        signal(SIGPIPE, SIG_IGN);
        if (docker_dup(base, &d, &e) == 0 && docker_exec_start(d, p->exec_id, p->out, &e) == 0) {
                struct docker_exec_state st;
                if (docker_exec_wait(d, p->exec_id, &st, &e) == 0)
                        rec.code = st.exit_code;
        }
        if (rec.code < 0) {
                dprintf(p->out, "drover: %s\n", e.message);
                log_error("docker_exec_failed", "host=%s error=\"%s\"", docker_host_name(base),
                          e.message);
        }
        docker_close(d);
        (void)drv_write_all(p->report, &rec, sizeof(rec));
}

int rtdocker_spawn(struct rtdocker *rt, const struct runtime_exec *ex, int *proc,
                   struct drv_error *err)
{
        int r = rtdocker_sync_back(rt, err);
        if (r < 0)
                return r;
        if (rt->n_procs >= DRV_ARRAY_SIZE(rt->procs))
                return drv_err(err, EMFILE, "too many processes in one job");
        int id = (int)rt->n_procs + 1;
        /* the wrapper creates pending files (content in $2..), records the in-container pid (for
         * signals), enters the working directory (created like CircleCI does) and becomes the
         * step's shell */
        _cleanup_strbuf_ struct strbuf sc = STRBUF_INIT;
        for (size_t i = 0; i < rt->n_pending; i++) {
                struct rtdocker_pending *pf = &rt->pending[i];
                strbuf_printf(&sc, "printf '%%s' \"$%zu\" >'%s' && chmod %o '%s' && ", i + 2,
                              pf->path, (unsigned)(pf->mode & 07777), pf->path);
                if (ex->as_root)
                        strbuf_printf(&sc, "chown %u:%u '%s' && ", (unsigned)rt->uid,
                                      (unsigned)rt->gid, pf->path);
        }
        strbuf_printf(&sc,
                      "echo $$ >/tmp/.drover-pid-%d || exit 1; mkdir -p \"$1\" 2>/dev/null; "
                      "cd \"$1\" || exit 1; shift %zu; exec \"$@\"",
                      id, rt->n_pending + 1);
        _cleanup_strv_ char **argv = NULL;
        if (!sc.buf || drv_strv_push(&argv, "/bin/sh") < 0 || drv_strv_push(&argv, "-c") < 0 ||
            drv_strv_push(&argv, sc.buf) < 0 || drv_strv_push(&argv, "drover-step") < 0 ||
            drv_strv_push(&argv, ex->cwd ? ex->cwd : rt->home) < 0)
                return drv_err(err, ENOMEM, "out of memory");
        for (size_t i = 0; i < rt->n_pending; i++)
                if (drv_strv_push(&argv, rt->pending[i].data) < 0)
                        return drv_err(err, ENOMEM, "out of memory");
        for (const char *const *a = ex->argv; *a; a++)
                if (drv_strv_push(&argv, *a) < 0)
                        return drv_err(err, ENOMEM, "out of memory");
        _cleanup_free_ char *exec_id = NULL;
        r = docker_exec_create(rt->d, rt->primary, argv, (char *const *)ex->envp, NULL,
                               ex->as_root ? "0" : NULL, &exec_id, err);
        if (r < 0)
                return r;
        struct exit_rec fail = {id, -1};
        struct rtdocker_pump pp = {.kind = "step",
                                   .proc = id,
                                   .exec_id = exec_id,
                                   .report = rt->exit_wr,
                                   .in = -1,
                                   .out = ex->out_fd,
                                   .err = -1,
                                   .fail = &fail,
                                   .fail_len = sizeof(fail),
                                   .fail_out = "drover: cannot start the pump process\n"};
        pid_t pid;
        if ((r = rtdocker_pump_spawn(rt, &pp, &pid, err)) < 0)
                return r;
        rtdocker_drop_pending(rt);
        rt->procs[rt->n_procs++] = (struct rtdocker_proc){.id = id, .child = pid};
        *proc = id;
        return 0;
}

int rtdocker_event_fd(struct rtdocker *rt)
{
        return rt->exit_rd;
}

bool rtdocker_has_pending_exit(struct rtdocker *rt)
{
        struct pollfd p = {rt->exit_rd, POLLIN, 0};
        return DRV_RETRY(poll(&p, 1, 0)) > 0;
}

/* An exec killed by SIGKILL in a container with a memory limit: was it the limit? First the
 * container cgroup's own oom_kill counter (read inside by drover-docker-helper): a rise since the
 * last attributed means yes, and no rise means no. Where it cannot be read (another machine's
 * engine, an old kernel), the engine's `oom` events of the container — which the engine keeps in
 * a bounded in-memory log, and which can trail the exit by a moment: one retry. */
static bool killed_by_oom(struct rtdocker *rt)
{
        uint64_t kills = 0;
        struct drv_error ce = {0};
        const char *src = "cgroup";
        bool oom = false;
        if (rtdocker_oom_kills(rt, &kills, &ce) == 0) {
                oom = kills > rt->oom_kills_seen;
                rt->oom_kills_seen = kills;
        } else {
                log_debug("docker_oom_counter_unavailable", "error=\"%s\"", ce.message);
                src = "events";
                for (int attempt = 0; attempt < 2 && !oom; attempt++) {
                        unsigned n = 0;
                        struct drv_error e = {0};
                        if (docker_container_oom_count(rt->d, rt->primary, &n, &e) < 0) {
                                log_warn("docker_oom_check_failed", "error=\"%s\"", e.message);
                                return false;
                        }
                        oom = n > rt->oom_seen;
                        rt->oom_seen = n > rt->oom_seen ? n : rt->oom_seen;
                        if (!oom && attempt == 0)
                                usleep(150000);
                }
        }
        if (oom)
                log_info("docker_oom", "host=%s container=%.12s limit_mb=%llu source=%s",
                         docker_host_name(rt->d), rt->primary,
                         (unsigned long long)(rt->memory >> 20), src);
        return oom;
}

int rtdocker_next_exit(struct rtdocker *rt, struct runtime_exit *ev, struct drv_error *err)
{
        struct exit_rec rec;
        ssize_t n = DRV_RETRY(read(rt->exit_rd, &rec, sizeof(rec)));
        if (n < 0 && errno == EAGAIN)
                return -EAGAIN;
        if (n != (ssize_t)sizeof(rec))
                return drv_err(err, EIO, "docker runtime: short exit record");
        for (size_t i = 0; i < rt->n_procs; i++) {
                struct rtdocker_proc *p = &rt->procs[i];
                if (p->id != rec.proc)
                        continue;
                int st;
                (void)DRV_RETRY(waitpid(p->child, &st, 0));
                p->done = true;
        }
        *ev = (struct runtime_exit){.proc = rec.proc};
        /* a failed stream counts as exit 255, with the reason already written to the output */
        int code = rec.code < 0 ? 255 : rec.code;
        if (code == 128 + SIGKILL && rt->memory)
                ev->oom = killed_by_oom(rt);
        ev->status = (code & 0xff) << 8;
        return 0;
}

static int root_exec(struct rtdocker *rt, const char *script, struct drv_error *err)
{
        char *argv[] = {(char *)"/bin/sh", (char *)"-c", (char *)script, NULL};
        int code = -1;
        return docker_exec_run(rt->d, rt->primary, argv, "0", -1, &code, err);
}

int rtdocker_signal(struct rtdocker *rt, int proc, int sig)
{
        /* the whole tree under the step's shell, collected before any of it dies */
        _cleanup_free_ char *script = drv_asprintf(
            "t() { for c in $(cat /proc/$1/task/*/children 2>/dev/null); do t $c; done; "
            "echo $1; }; p=$(cat /tmp/.drover-pid-%d 2>/dev/null) || exit 0; "
            "kill -%d $(t $p) 2>/dev/null; exit 0",
            proc, sig);
        struct drv_error e = {0};
        int r = script ? root_exec(rt, script, &e) : -ENOMEM;
        if (r < 0)
                log_warn("docker_signal_failed", "proc=%d sig=%d error=\"%s\"", proc, sig,
                         e.message);
        return r;
}

int rtdocker_kill_all(struct rtdocker *rt, struct drv_error *err)
{
        /* in the container's pid namespace, kill -1 spares only pid 1 (the keeper) and itself */
        return root_exec(rt, "kill -9 -1 2>/dev/null; exit 0", err);
}

uid_t rtdocker_uid(struct rtdocker *rt)
{
        return rt->uid;
}
gid_t rtdocker_gid(struct rtdocker *rt)
{
        return rt->gid;
}
const char *rtdocker_home(struct rtdocker *rt)
{
        return rt->home;
}
const char *rtdocker_user(struct rtdocker *rt)
{
        return rt->user;
}
uint64_t rtdocker_memory_limit(struct rtdocker *rt)
{
        return rt->memory;
}

bool rtdocker_path_exists(struct rtdocker *rt, const char *inside_path)
{
        if (strcmp(inside_path, "/bin/bash") == 0)
                return rt->have_bash;
        struct drv_error fe = {0};
        if (rtdocker_flush_pending(rt, &fe) < 0)
                log_warn("docker_write_failed", "error=\"%s\"", fe.message);
        struct drv_error e = {0};
        return docker_path_exists(rt->d, rt->primary, inside_path, &e) == 1;
}

void rtdocker_close(struct rtdocker *rt)
{
        if (!rt)
                return;
        bool running = false;
        for (size_t i = 0; i < rt->n_procs; i++)
                running |= !rt->procs[i].done;
        if (rt->d && rt->primary && running) {
                struct drv_error e = {0};
                (void)rtdocker_kill_all(rt, &e);
        }
        rtdocker_fwd_stop(rt);
        /* pumps end when their stream does; any left is stopped here */
        for (size_t i = 0; i < rt->n_procs; i++) {
                struct rtdocker_proc *p = &rt->procs[i];
                if (p->done)
                        continue;
                int st;
                for (int k = 0; k < 100; k++) {
                        if (DRV_RETRY(waitpid(p->child, &st, WNOHANG)) != 0)
                                goto reaped;
                        usleep(10000);
                }
                kill(p->child, SIGKILL);
                (void)DRV_RETRY(waitpid(p->child, &st, 0));
        reaped:
                p->done = true;
        }
        for (size_t i = 0; i < rt->n_procs; i++)
                free(rt->procs[i].exec_id);
        if (rt->d) {
                struct drv_error e = {0};
                unsigned n = 0;
                if (docker_cleanup(rt->d, rt->job, &n, &e) < 0)
                        log_error("docker_cleanup_failed", "job=%s error=\"%s\"", rt->job,
                                  e.message);
        }
        rtdocker_drop_pending(rt);
        rtdocker_mirror_free(rt);
        docker_close(rt->d);
        drv_closep(&rt->exit_rd);
        drv_closep(&rt->exit_wr);
        drv_closep(&rt->self_fd);
        drv_strv_free(rt->services);
        free(rt->primary);
        free(rt->net_id);
        free(rt->net_name);
        free(rt->job);
        free(rt->image0);
        free(rt->user);
        free(rt->home);
        pthread_mutex_destroy(&rt->helper_lock);
        free(rt);
}

/* ---- the runtime_ops table runtime.c dispatches to for executor.runtime "docker" ---- */
static int op_open(const struct runtime_config *cfg, void **impl, struct drv_error *err)
{
        struct rtdocker *rt = NULL;
        int r = rtdocker_open(cfg, &rt, err);
        if (r == 0)
                *impl = rt;
        return r;
}
static int op_spawn(void *impl, const struct runtime_exec *ex, int *proc, struct drv_error *err)
{
        return rtdocker_spawn(impl, ex, proc, err);
}
static int op_event_fd(void *impl)
{
        return rtdocker_event_fd(impl);
}
static int op_next_exit(void *impl, struct runtime_exit *ev, struct drv_error *err)
{
        return rtdocker_next_exit(impl, ev, err);
}
static bool op_has_pending_exit(void *impl)
{
        return rtdocker_has_pending_exit(impl);
}
static int op_signal(void *impl, int proc, int sig)
{
        return rtdocker_signal(impl, proc, sig);
}
static int op_kill_all(void *impl, struct drv_error *err)
{
        return rtdocker_kill_all(impl, err);
}
static int op_root_fd(void *impl)
{
        return rtdocker_root_fd(impl);
}
static uid_t op_host_uid(void *impl)
{
        return rtdocker_uid(impl);
}
static gid_t op_host_gid(void *impl)
{
        return rtdocker_gid(impl);
}
static const char *op_home(void *impl)
{
        return rtdocker_home(impl);
}
static const char *op_user(void *impl)
{
        return rtdocker_user(impl);
}
static uint64_t op_memory_limit(void *impl)
{
        return rtdocker_memory_limit(impl);
}
static bool op_path_exists(void *impl, const char *inside_path)
{
        return rtdocker_path_exists(impl, inside_path);
}
static int op_write_file(void *impl, const char *inside_path, const void *data, size_t n,
                         mode_t mode, struct drv_error *err)
{
        return rtdocker_write_file(impl, inside_path, data, n, mode, err);
}
static void op_close(void *impl)
{
        rtdocker_close(impl);
}

static int op_spawn_session(void *impl, const struct runtime_session_exec *ex, int *proc,
                            int *pty_master, struct drv_error *err)
{
        return rtdocker_spawn_session(impl, ex, proc, pty_master, err);
}

static int op_connect_tcp(void *impl, const char *host, uint16_t port, int *fd,
                          struct drv_error *err)
{
        return rtdocker_connect_tcp(impl, host, port, fd, err);
}

static int op_resize_session(void *impl, int proc, int pty_master, unsigned short rows,
                             unsigned short cols)
{
        (void)pty_master;
        return rtdocker_resize_session(impl, proc, rows, cols);
}

const struct runtime_ops runtime_docker_ops = {
    .name = "docker",
    .open = op_open,
    .spawn = op_spawn,
    .event_fd = op_event_fd,
    .next_exit = op_next_exit,
    .has_pending_exit = op_has_pending_exit,
    .signal = op_signal,
    .kill_all = op_kill_all,
    .root_fd = op_root_fd,
    .host_uid = op_host_uid,
    .host_gid = op_host_gid,
    .home = op_home,
    .user = op_user,
    .memory_limit = op_memory_limit,
    .path_exists = op_path_exists,
    .write_file = op_write_file,
    .close = op_close,
    .spawn_session = op_spawn_session,
    .connect_tcp = op_connect_tcp,
    .resize_session = op_resize_session,
};

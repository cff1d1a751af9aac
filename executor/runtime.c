/* runtime.c: the runtime-neutral calls of runtime.h, dispatched to the implementation that the
 * spec's executor.runtime names. */
#include "executor/runtime.h"

#include <pthread.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>

struct route {
        int proc;
        runtime_exit_fn fn;
        void *ctx;
};

struct runtime {
        const struct runtime_ops *ops;
        void *impl;
        pthread_mutex_t lock; /* SSH sessions spawn and signal from their own threads */
        struct route *routes;
        size_t n_routes;
        /* exits drained by a session thread (runtime_drain_exits) for the step machine: held
         * here, announced by the wake eventfd; runtime_event_fd is an epoll of the
         * implementation's event fd and wake */
        struct runtime_exit *held;
        size_t n_held;
        int wake;
        int ep;
};

static const struct runtime_ops *ops_for(enum js_runtime kind)
{
        switch (kind) {
        case JS_RUNTIME_SANDBOX:
                return &runtime_sandbox_ops;
        case JS_RUNTIME_DOCKER:
                return &runtime_docker_ops;
        }
        return NULL;
}

int runtime_open(const struct runtime_config *cfg, struct runtime **out, struct drv_error *err)
{
        const struct runtime_ops *ops = ops_for(cfg->spec->executor.runtime);
        if (!ops)
                return drv_err(
                    err, ENOTSUP, "$.executor.runtime: this drover has no %s runtime yet",
                    cfg->spec->executor.runtime == JS_RUNTIME_DOCKER ? "docker" : "such");
        struct runtime *rt = calloc(1, sizeof(*rt));
        if (!rt)
                return drv_err(err, ENOMEM, "out of memory");
        rt->ops = ops;
        rt->wake = rt->ep = -1;
        pthread_mutex_init(&rt->lock, NULL);
        int r = ops->open(cfg, &rt->impl, err);
        if (r == 0) {
                rt->wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
                rt->ep = epoll_create1(EPOLL_CLOEXEC);
                struct epoll_event a = {.events = EPOLLIN, .data.u32 = 0};
                struct epoll_event b = {.events = EPOLLIN, .data.u32 = 1};
                struct epoll_event c = {.events = EPOLLIN, .data.u32 = 2};
                if (rt->wake < 0 || rt->ep < 0 ||
                    epoll_ctl(rt->ep, EPOLL_CTL_ADD, ops->event_fd(rt->impl), &a) < 0 ||
                    epoll_ctl(rt->ep, EPOLL_CTL_ADD, rt->wake, &b) < 0 ||
                    (ops->poll_fd && ops->poll_fd(rt->impl) >= 0 &&
                     epoll_ctl(rt->ep, EPOLL_CTL_ADD, ops->poll_fd(rt->impl), &c) < 0)) {
                        r = drv_err_errno(err, "runtime: epoll");
                        ops->close(rt->impl);
                }
        }
        if (r < 0) {
                if (rt->wake >= 0)
                        close(rt->wake);
                if (rt->ep >= 0)
                        close(rt->ep);
                free(rt);
                return r;
        }
        *out = rt;
        return 0;
}

int runtime_spawn(struct runtime *rt, const struct runtime_exec *ex, int *proc,
                  struct drv_error *err)
{
        pthread_mutex_lock(&rt->lock);
        int r = rt->ops->spawn(rt->impl, ex, proc, err);
        pthread_mutex_unlock(&rt->lock);
        return r;
}

int runtime_event_fd(struct runtime *rt)
{
        return rt->ep;
}

/* Under the lock: the implementation's next exit that is not a session's (those go to their
 * callbacks), or -EAGAIN. */
static int next_unrouted(struct runtime *rt, struct runtime_exit *ev, struct drv_error *err)
{
        for (;;) {
                int r = rt->ops->next_exit(rt->impl, ev, err);
                if (r < 0)
                        return r;
                size_t i = 0;
                while (i < rt->n_routes && rt->routes[i].proc != ev->proc)
                        i++;
                if (i == rt->n_routes)
                        return 0;
                struct route ro = rt->routes[i];
                rt->routes[i] = rt->routes[--rt->n_routes];
                if (ro.fn)
                        ro.fn(ro.ctx, ev);
        }
}

int runtime_next_exit(struct runtime *rt, struct runtime_exit *ev, struct drv_error *err)
{
        pthread_mutex_lock(&rt->lock);
        int r = 0;
        if (rt->n_held) {
                *ev = rt->held[0];
                memmove(rt->held, rt->held + 1, --rt->n_held * sizeof(*rt->held));
        } else {
                uint64_t v;
                (void)!read(rt->wake, &v, sizeof(v)); /* nothing held: quiet the wake fd */
                r = next_unrouted(rt, ev, err);
        }
        pthread_mutex_unlock(&rt->lock);
        return r;
}

void runtime_drain_exits(struct runtime *rt)
{
        struct runtime_exit ev;
        struct drv_error e;
        pthread_mutex_lock(&rt->lock);
        while (next_unrouted(rt, &ev, &e) == 0) {
                struct runtime_exit *nh = realloc(rt->held, (rt->n_held + 1) * sizeof(*nh));
                if (!nh)
                        break; /* out of memory: that exit is lost like any other */
                rt->held = nh;
                rt->held[rt->n_held++] = ev;
                uint64_t one = 1;
                (void)!write(rt->wake, &one, sizeof(one));
        }
        pthread_mutex_unlock(&rt->lock);
}

bool runtime_has_pending_exit(struct runtime *rt)
{
        pthread_mutex_lock(&rt->lock);
        bool v = rt->n_held > 0 || rt->ops->has_pending_exit(rt->impl);
        pthread_mutex_unlock(&rt->lock);
        return v;
}

int runtime_signal(struct runtime *rt, int proc, int sig)
{
        pthread_mutex_lock(&rt->lock);
        int r = rt->ops->signal(rt->impl, proc, sig);
        pthread_mutex_unlock(&rt->lock);
        return r;
}

int runtime_kill_all(struct runtime *rt, struct drv_error *err)
{
        pthread_mutex_lock(&rt->lock);
        int r = rt->ops->kill_all(rt->impl, err);
        pthread_mutex_unlock(&rt->lock);
        return r;
}

void runtime_poll(struct runtime *rt)
{
        if (!rt->ops->poll)
                return;
        pthread_mutex_lock(&rt->lock);
        rt->ops->poll(rt->impl);
        pthread_mutex_unlock(&rt->lock);
}

bool runtime_has_sessions(struct runtime *rt)
{
        return rt->ops->spawn_session && rt->ops->resize_session;
}

int runtime_resize_session(struct runtime *rt, int proc, int pty_master, unsigned short rows,
                           unsigned short cols)
{
        if (!rt->ops->resize_session)
                return -ENOTSUP;
        pthread_mutex_lock(&rt->lock);
        int r = rt->ops->resize_session(rt->impl, proc, pty_master, rows, cols);
        pthread_mutex_unlock(&rt->lock);
        return r;
}

int runtime_spawn_session(struct runtime *rt, const struct runtime_session_exec *ex, int *proc,
                          int *pty_master, runtime_exit_fn on_exit, void *ctx,
                          struct drv_error *err)
{
        if (!rt->ops->spawn_session)
                return drv_err(err, ENOTSUP, "the %s runtime does not run SSH sessions",
                               rt->ops->name);
        pthread_mutex_lock(&rt->lock);
        struct route *nr = realloc(rt->routes, (rt->n_routes + 1) * sizeof(*nr));
        int r = nr ? 0 : drv_err(err, ENOMEM, "out of memory");
        if (nr)
                rt->routes = nr;
        if (r == 0)
                r = rt->ops->spawn_session(rt->impl, ex, proc, pty_master, err);
        if (r == 0)
                rt->routes[rt->n_routes++] = (struct route){*proc, on_exit, ctx};
        pthread_mutex_unlock(&rt->lock);
        return r;
}

void runtime_forget_session(struct runtime *rt, int proc)
{
        pthread_mutex_lock(&rt->lock);
        for (size_t i = 0; i < rt->n_routes; i++)
                if (rt->routes[i].proc == proc) {
                        rt->routes[i].fn = NULL; /* still swallowed, never delivered */
                        break;
                }
        pthread_mutex_unlock(&rt->lock);
}

int runtime_connect_tcp(struct runtime *rt, const char *host, uint16_t port, int *fd,
                        struct drv_error *err)
{
        if (!rt->ops->connect_tcp)
                return drv_err(err, ENOTSUP, "the %s runtime does not forward ports",
                               rt->ops->name);
        /* no lock: the implementation guards what it shares (a connect can take seconds) */
        return rt->ops->connect_tcp(rt->impl, host, port, fd, err);
}

int runtime_root_fd(struct runtime *rt)
{
        pthread_mutex_lock(&rt->lock);
        int v = rt->ops->root_fd(rt->impl);
        pthread_mutex_unlock(&rt->lock);
        return v;
}

uid_t runtime_host_uid(struct runtime *rt)
{
        pthread_mutex_lock(&rt->lock);
        uid_t v = rt->ops->host_uid(rt->impl);
        pthread_mutex_unlock(&rt->lock);
        return v;
}

gid_t runtime_host_gid(struct runtime *rt)
{
        pthread_mutex_lock(&rt->lock);
        gid_t v = rt->ops->host_gid(rt->impl);
        pthread_mutex_unlock(&rt->lock);
        return v;
}

const char *runtime_home(struct runtime *rt)
{
        pthread_mutex_lock(&rt->lock);
        const char *v = rt->ops->home(rt->impl);
        pthread_mutex_unlock(&rt->lock);
        return v;
}

const char *runtime_user(struct runtime *rt)
{
        pthread_mutex_lock(&rt->lock);
        const char *v = rt->ops->user(rt->impl);
        pthread_mutex_unlock(&rt->lock);
        return v;
}

uint64_t runtime_memory_limit(struct runtime *rt)
{
        pthread_mutex_lock(&rt->lock);
        uint64_t v = rt->ops->memory_limit(rt->impl);
        pthread_mutex_unlock(&rt->lock);
        return v;
}

bool runtime_path_exists(struct runtime *rt, const char *inside_path)
{
        pthread_mutex_lock(&rt->lock);
        bool v = rt->ops->path_exists(rt->impl, inside_path);
        pthread_mutex_unlock(&rt->lock);
        return v;
}

int runtime_write_file(struct runtime *rt, const char *inside_path, const void *data, size_t n,
                       mode_t mode, struct drv_error *err)
{
        pthread_mutex_lock(&rt->lock);
        int v = rt->ops->write_file(rt->impl, inside_path, data, n, mode, err);
        pthread_mutex_unlock(&rt->lock);
        return v;
}

int runtime_write_script(struct runtime *rt, const char *name, const void *data, size_t n,
                         char **inside_path, struct drv_error *err)
{
        *inside_path = NULL;
        if (!rt->ops->write_script) {
                _cleanup_free_ char *path = drv_asprintf("/tmp/%s", name);
                if (!path)
                        return drv_err(err, ENOMEM, "out of memory");
                int r = runtime_write_file(rt, path, data, n, 0700, err);
                if (r == 0)
                        *inside_path = TAKE_PTR(path);
                return r;
        }
        pthread_mutex_lock(&rt->lock);
        int v = rt->ops->write_script(rt->impl, name, data, n, inside_path, err);
        pthread_mutex_unlock(&rt->lock);
        return v;
}

bool runtime_broken(struct runtime *rt, char *reason, size_t n)
{
        if (!rt->ops->broken)
                return false;
        pthread_mutex_lock(&rt->lock);
        bool v = rt->ops->broken(rt->impl, reason, n);
        pthread_mutex_unlock(&rt->lock);
        return v;
}

void runtime_close(struct runtime *rt)
{
        if (!rt)
                return;
        rt->ops->close(rt->impl);
        pthread_mutex_destroy(&rt->lock);
        close(rt->wake);
        close(rt->ep);
        free(rt->held);
        free(rt->routes);
        free(rt);
}

/* setup_remote.c: the setup_remote_docker step — hand a sandbox job a remote Docker engine. */
#include "executor/docker/setup_remote.h"
#include "cache/jobfs.h"
#include "executor/docker/docker.h"
#include "executor/docker/docker_proxy.h"
#include "executor/docker/runtime_docker.h"

#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/random.h>
#include <sys/un.h>
#include <sys/stat.h>
#include <sys/syscall.h>

#define CERT_DIR_NAME ".drover-remote-docker"

static const char *env_get(char *const *envp, const char *name)
{
        size_t n = strlen(name);
        for (; envp && *envp; envp++)
                if (strncmp(*envp, name, n) == 0 && (*envp)[n] == '=')
                        return *envp + n + 1;
        return NULL;
}

/* Start the job's API proxy (once per job) with its socket in dfd. */
static int start_proxy(const struct step_ctx *ctx, struct docker *d, int dfd, struct drv_error *err)
{
        if (*ctx->docker_proxy)
                return 0;
        const char *node = getenv(RTDOCKER_NODE_ENV);
        if (node && docker_set_node(d, node) < 0)
                return drv_err(err, EINVAL, "%s too long for a label", RTDOCKER_NODE_ENV);
        uint32_t rnd = 0;
        if (getrandom(&rnd, sizeof(rnd), 0) < 0)
                rnd = (uint32_t)getpid() ^ (uint32_t)drv_now_ns();
        const struct jobspec *spec = ctx->spec;
        _cleanup_free_ char *label = drv_asprintf(
            "%s.%u.rd%08x", spec->job_id ? spec->job_id : "job", spec->node_index, rnd);
        if (!label)
                return drv_err(err, ENOMEM, "out of memory");
        struct docker_proxy_opts o = {
            .engine = d, .label = label, .dirfd = dfd, .uid = ctx->uid, .gid = ctx->gid};
        int r = docker_proxy_start(&o, ctx->docker_proxy, err);
        return r < 0 ? drv_err_prefix(err, "setup_remote_docker") : 0;
}

int docker_setup_remote(const struct step_ctx *ctx, const struct js_step *step,
                        struct drv_error *err)
{
        (void)step;
        const struct js_docker_host *h = &ctx->spec->executor.docker_host;
        if (!h->url || !h->ca_pem || !h->cert_pem || !h->key_pem)
                return drv_err(err, EINVAL,
                               "setup_remote_docker: this job has no remote Docker engine "
                               "(executor.docker_host with url, ca, cert and key)");
        if (ctx->spec->executor.runtime == JS_RUNTIME_DOCKER)
                return drv_err(err, ENOTSUP,
                               "setup_remote_docker: not served to jobs of the docker runtime yet "
                               "(their containers run on the engine; the job's API proxy socket "
                               "cannot reach them there; docs/docker.md)");
        if (ctx->root_fd < 0 || !ctx->docker_proxy)
                return drv_err(err, ENOTSUP, "setup_remote_docker: the job has no file access");
        struct docker_endpoint ep = {h->url, h->ca_pem, h->cert_pem, h->key_pem};
        _cleanup_(docker_closep) struct docker *d = NULL;
        int r = docker_open(&ep, &d, err);
        if (r < 0)
                return drv_err_prefix(err, "setup_remote_docker");
        if (ctx->out)
                output_step_printf(
                    ctx->out, ctx->step_index, "Remote Docker engine %s (Docker %s, API %s)\n",
                    docker_host_name(d), docker_engine_version(d), docker_api_version(d));
        struct jobfs fs = {ctx->root_fd, ctx->uid, ctx->gid};
        _cleanup_free_ char *dir = drv_path_join(ctx->home, CERT_DIR_NAME);
        _cleanup_free_ char *sock = dir ? drv_path_join(dir, "docker.sock") : NULL;
        if (!dir || !sock)
                return drv_err(err, ENOMEM, "out of memory");
        if (strlen(sock) >= sizeof(((struct sockaddr_un *)0)->sun_path))
                return drv_err(err, ENAMETOOLONG,
                               "setup_remote_docker: %s is too long for a "
                               "socket",
                               sock);
        _cleanup_close_ int dfd = -1;
        if ((r = jobfs_open_dir(&fs, dir, true, &dfd, err)) < 0)
                return drv_err_prefix(err, "setup_remote_docker");
        if (fchmod(dfd, 0700) < 0)
                return drv_err_errno(err, "setup_remote_docker: ~/%s", CERT_DIR_NAME);
        if ((r = start_proxy(ctx, d, dfd, err)) < 0)
                return r;
        const char *bash_env = env_get(ctx->envp, "BASH_ENV");
        if (!bash_env)
                return drv_err(err, EINVAL,
                               "setup_remote_docker: no BASH_ENV in the step's environment to "
                               "carry DOCKER_HOST to later steps");
        struct open_how how = {.flags = O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW | O_CLOEXEC,
                               .mode = 0644,
                               .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS};
        const char *rel = bash_env;
        while (*rel == '/')
                rel++;
        _cleanup_close_ int efd = (int)syscall(SYS_openat2, ctx->root_fd, rel, &how, sizeof(how));
        if (efd < 0)
                return drv_err_errno(err, "setup_remote_docker: cannot open %s", bash_env);
        /* the job's own socket: no key, no certificate; the classic builder (BuildKit's session
         * is not served) */
        _cleanup_free_ char *lines =
            drv_asprintf("export DOCKER_HOST=unix://%s\nexport DOCKER_BUILDKIT=0\n"
                         "unset DOCKER_TLS_VERIFY DOCKER_CERT_PATH\n",
                         sock);
        if (!lines)
                return drv_err(err, ENOMEM, "out of memory");
        if ((r = drv_write_all(efd, lines, strlen(lines))) < 0) {
                errno = -r;
                return drv_err_errno(err, "setup_remote_docker: cannot write %s", bash_env);
        }
        if (ctx->out)
                output_step_printf(ctx->out, ctx->step_index,
                                   "DOCKER_HOST=unix://%s (this job's own API endpoint: its "
                                   "containers, images, networks and volumes only)\n",
                                   sock);
        log_info("setup_remote_docker", "host=%s socket=%s", docker_host_name(d), sock);
        return 0;
}

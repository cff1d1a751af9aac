/* setup_remote.c: the setup_remote_docker step — hand a sandbox job a remote Docker engine. */
#include "executor/docker/setup_remote.h"
#include "cache/jobfs.h"
#include "executor/docker/docker.h"

#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/fsuid.h>
#include <sys/stat.h>
#include <sys/syscall.h>

#define CERT_DIR_NAME ".drover-remote-docker"

static int write_pem(int dirfd, const char *name, const char *pem, mode_t mode, uid_t uid,
                     gid_t gid, struct drv_error *err)
{
        (void)unlinkat(dirfd, name, 0);
        /* a sandbox job's files belong to its user namespace: create them as the job user */
        int ofsuid = setfsuid(uid), ofsgid = setfsgid(gid);
        _cleanup_close_ int fd =
            openat(dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
        int saved = errno;
        setfsuid((uid_t)ofsuid);
        setfsgid((gid_t)ofsgid);
        errno = saved;
        if (fd < 0)
                return drv_err_errno(err, "setup_remote_docker: cannot create ~/%s/%s",
                                     CERT_DIR_NAME, name);
        int r = drv_write_all(fd, pem, strlen(pem));
        if (r < 0 || fchmod(fd, mode) < 0)
                return drv_err_errno(err, "setup_remote_docker: cannot write ~/%s/%s",
                                     CERT_DIR_NAME, name);
        return 0;
}

static const char *env_get(char *const *envp, const char *name)
{
        size_t n = strlen(name);
        for (; envp && *envp; envp++)
                if (strncmp(*envp, name, n) == 0 && (*envp)[n] == '=')
                        return *envp + n + 1;
        return NULL;
}

/* The engine's address for the docker CLI: tcp://HOST:PORT. */
static char *cli_host(const char *url)
{
        const char *rest = drv_startswith(url, "https://") ? url + 8
                           : drv_startswith(url, "tcp://") ? url + 6
                                                           : NULL;
        if (!rest)
                return strdup(url);
        return drv_asprintf("tcp://%.*s", (int)strcspn(rest, "/"), rest);
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
        if (ctx->root_fd < 0)
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
        _cleanup_free_ char *host = cli_host(h->url);
        if (!dir || !host)
                return drv_err(err, ENOMEM, "out of memory");
        _cleanup_close_ int dfd = -1;
        if ((r = jobfs_open_dir(&fs, dir, true, &dfd, err)) < 0)
                return drv_err_prefix(err, "setup_remote_docker");
        if (fchmod(dfd, 0700) < 0)
                return drv_err_errno(err, "setup_remote_docker: ~/%s", CERT_DIR_NAME);
        if ((r = write_pem(dfd, "ca.pem", h->ca_pem, 0644, ctx->uid, ctx->gid, err)) < 0 ||
            (r = write_pem(dfd, "cert.pem", h->cert_pem, 0644, ctx->uid, ctx->gid, err)) < 0 ||
            (r = write_pem(dfd, "key.pem", h->key_pem, 0600, ctx->uid, ctx->gid, err)) < 0)
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
        _cleanup_free_ char *lines = drv_asprintf(
            "export DOCKER_HOST=%s\nexport DOCKER_TLS_VERIFY=1\nexport DOCKER_CERT_PATH=%s\n", host,
            dir);
        if (!lines)
                return drv_err(err, ENOMEM, "out of memory");
        if ((r = drv_write_all(efd, lines, strlen(lines))) < 0) {
                errno = -r;
                return drv_err_errno(err, "setup_remote_docker: cannot write %s", bash_env);
        }
        if (ctx->out)
                output_step_printf(ctx->out, ctx->step_index,
                                   "DOCKER_HOST=%s DOCKER_TLS_VERIFY=1 DOCKER_CERT_PATH=%s\n", host,
                                   dir);
        log_info("setup_remote_docker", "host=%s cert_path=%s", docker_host_name(d), dir);
        return 0;
}

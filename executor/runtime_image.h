/* runtime_image.h: `docker:` jobs in the local sandbox (no Docker daemon) — the images pulled into
 * drover's layer store, the job user of the primary image, service containers as sibling
 * sandboxes sharing the primary's network namespace. Used by runtime_sandbox.c only.
 *
 * Operator settings come from the environment (`drover run` sets them from its flags; the agent's
 * environment is inherited by its jobs): DROVER_IMAGE_STORE (default /var/lib/drover/images),
 * DROVER_IMAGE_STORE_MAX (size bound, GC after each pull; default none), DROVER_IMAGE_PULL
 * (never|missing|always, default missing), DROVER_IMAGE_MIRRORS (comma-separated URLs),
 * DROVER_IMAGE_CA_FILE, DROVER_IMAGE_INSECURE_HTTP (0: no plain-http retry for loopback registries
 * whose https fails with a TLS error), DROVER_MAX_SERVICES (services per job, default 16). */
#pragma once

#include "executor/jobspec.h"
#include "executor/runtime.h"
#include "sandbox/sandbox.h"

/* Services a docker job may have unless DROVER_MAX_SERVICES (the agent's max_services_per_job)
 * says otherwise: each takes one of the host's SANDBOX_SLOTS. */
#define RTIMG_MAX_SERVICES_DEFAULT 16

struct rtimg;

/* The job user of an image: uid/gid inside, name (USER) and home. */
struct rtimg_user {
        uid_t uid;
        gid_t gid;
        char *name;
        char *home;
};

/* Pull every image of the spec's executor, leases held until rtimg_close. name: the job's
 * sandbox name (services are named after it). hooks (may be NULL): the pull progress and the
 * services' starts and ends go to hooks->notice; hooks->canceled stops the pulls (-ECANCELED). */
int rtimg_open(const struct jobspec *spec, const char *name, const struct runtime_hooks *hooks,
               struct rtimg **out, struct drv_error *err);
/* Fill the primary's sandbox config: layers as lowerdirs, the job user, and binds appended
 * (up to max in all): /etc/hosts naming the services, and — when self_exe is given — the
 * `circleci` / `circleci-agent` tools: the host's drover run by the host's dynamic loader with
 * the host's libraries, all bound read-only under /run/drover/lib (the image has other libs). */
int rtimg_primary_config(struct rtimg *ri, const char *self_exe, struct sandbox_config *sc,
                         struct sandbox_bind *binds, size_t *n_binds, size_t max,
                         struct drv_error *err);
/* Start the service images as sibling sandboxes in the primary's network namespace, in the
 * job's group (NULL: none) with the primary. */
int rtimg_start_services(struct rtimg *ri, struct sandbox *primary,
                         const struct sandbox_group *group, struct drv_error *err);
/* The environment of a step: the image's env and the image entry's environment under envp.
 * PATH: the image's (behind /run/drover/bin) unless the job or step set one. Caller frees. */
char **rtimg_step_env(const struct rtimg *ri, const char *const *envp);
const struct rtimg_user *rtimg_job_user(const struct rtimg *ri);
/* Report (hooks->notice) every service that ended since the last call: how (exit code, signal,
 * out of memory of its own limit) and the end of its output. Each is reported once. */
void rtimg_poll_services(struct rtimg *ri);
/* An epoll fd readable while a service's end waits to be reported (each service's sandbox event
 * fd until its end was reported), or -1 without services. */
int rtimg_poll_fd(struct rtimg *ri);
/* Stop the services (reporting those that ended), release the images. */
void rtimg_close(struct rtimg *ri);
static inline void rtimg_closep(struct rtimg **p)
{
        if (*p)
                rtimg_close(*p);
}

/* ---- internal: pulling the images (runtime_image_pull.c) ---- */
struct img;
struct img_store;
/* Pull every image of spec's executor (each in a thread; settings from the environment above),
 * progress to hooks->notice, stopped by hooks->canceled (-ECANCELED). *gc_store: a handle for
 * the GC; stores[i] and imgs[i] (arrays of n_images): each image's store handle and image, set
 * even on failure for the caller to release. */
int rtimg_pull_all(const struct jobspec *spec, const struct runtime_hooks *hooks,
                   struct img_store **gc_store, struct img_store **stores, struct img **imgs,
                   struct drv_error *err);
/* One line to hooks->notice (stderr without one). */
void rtimg_say(const struct runtime_hooks *hooks, const char *fmt, ...) DRV_PRINTF(2, 3);

/* ---- internal: the circleci tools inside an image (runtime_image_tools.c) ---- */
#define TOOL_LIB_DIR     "/run/drover/lib"
#define TOOL_MAX_LIBDIRS 6
struct rtimg_tools {
        char *lib_host[TOOL_MAX_LIBDIRS + 1], *lib_inside[TOOL_MAX_LIBDIRS + 1];
        char *tool_host[2], *tool_inside[2];
};
/* Append the binds of the tools (up to max in all); the wrapper scripts are written into the
 * job's host dir. Logs and binds nothing when drover is not dynamically linked. */
int rtimg_tools_binds(struct rtimg_tools *tt, const char *job, const char *dir,
                      const char *self_exe, struct sandbox_bind *binds, size_t *nb, size_t max,
                      struct drv_error *err);
void rtimg_tools_release(struct rtimg_tools *tt);

/* Resolve a Docker USER ("", "name", "uid", "name:group", "uid:gid") against the image whose
 * layers are given top first (its /etc/passwd and /etc/group). Exposed for unit tests. */
int rtimg_resolve_user(char *const *layer_dirs, const char *user, struct rtimg_user *out,
                       struct drv_error *err);
void rtimg_user_release(struct rtimg_user *u);

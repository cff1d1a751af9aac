/* docker.h: a Docker Engine API client over libcurl (TLS with client certificates from PEM text,
 * or a unix socket): version negotiation, pulls with registry auth, containers, networks, execs
 * with the multiplexed stream demultiplexed, archives, and cleanup by drover's labels. */
#pragma once

#include "executor/jobspec.h"
#include "lib/drv.h"

#include <jansson.h>

struct docker;

/* Where the engine is: url is tcp://HOST:PORT (TLS when PEMs are given), https://..., or
 * unix:///path. PEMs are text, never paths. */
struct docker_endpoint {
        const char *url;
        const char *ca_pem;
        const char *cert_pem;
        const char *key_pem;
};

/* Connect and negotiate the API version from GET /version (retries connect errors with backoff). */
int docker_open(const struct docker_endpoint *ep, struct docker **out, struct drv_error *err);
/* A second connection to the same engine (own curl handle, no new negotiation), e.g. for a child
 * process that pumps an exec's stream. */
int docker_dup(const struct docker *d, struct docker **out, struct drv_error *err);
/* What a connection to the engine consists of (strings borrowed from a struct docker): enough to
 * open a second connection in another process without a new negotiation. */
struct docker_conn {
        const char *base; /* https://HOST:PORT, http://HOST:PORT or http://localhost (socket) */
        const char *host; /* for messages */
        const char *sock; /* unix socket path or NULL */
        const char *ca_pem, *cert_pem, *key_pem; /* NULL when not used */
        const char *api, *engine, *arch, *node;  /* as negotiated / set */
};
/* Describe d (the strings stay d's). */
void docker_describe(const struct docker *d, struct docker_conn *c);
/* A connection from a description (no request made: nothing is negotiated again). */
int docker_from_conn(const struct docker_conn *c, struct docker **out, struct drv_error *err);
void docker_close(struct docker *d);
static inline void docker_closep(struct docker **p)
{
        if (*p)
                docker_close(*p);
}
/* The negotiated API version ("1.41") and the engine's version ("20.10.24"). */
const char *docker_api_version(const struct docker *d);
const char *docker_engine_version(const struct docker *d);
/* The engine's machine in Go's names ("amd64", "arm64"; "" if it did not say). */
const char *docker_engine_arch(const struct docker *d);
/* host:port (or socket path) for messages. */
const char *docker_host_name(const struct docker *d);

/* One API call: method, path (without the /vX.Y prefix; query included), optional JSON body.
 * *out (optional) gets the parsed JSON answer (NULL when empty). A status >= 400 is an error
 * naming host, endpoint and Docker's message; *status (optional) gets the HTTP status. */
int docker_call(struct docker *d, const char *method, const char *path, json_t *body, json_t **out,
                long *status, struct drv_error *err);

/* Progress of a pull: one call per status line ("Pulling fs layer", "Downloading" ...). */
typedef void (*docker_progress_fn)(void *ud, const char *id, const char *status);
/* Pull image (name[:tag]) with optional registry auth; an error in the stream is an error. */
int docker_pull(struct docker *d, const char *image, const struct js_auth *auth,
                docker_progress_fn progress, void *ud, struct drv_error *err);
/* Is the image present on the engine? 1 yes, 0 no, <0 error. */
int docker_image_exists(struct docker *d, const char *image, struct drv_error *err);

/* Labels put on everything drover creates. */
#define DOCKER_LABEL_MANAGED "drover.managed"
#define DOCKER_LABEL_JOB     "drover.job"
#define DOCKER_LABEL_NODE    "drover.node"

/* The agent node (its name) everything created from now on is labelled with (drover.node=NODE),
 * and that docker_cleanup then also requires. NULL or "" = none. -EINVAL when longer than 127. */
int docker_set_node(struct docker *d, const char *node);

/* Create a user-defined bridge network labelled for job; *id is malloc'd. */
int docker_network_create(struct docker *d, const char *name, const char *job, char **id,
                          struct drv_error *err);
int docker_network_remove(struct docker *d, const char *id, struct drv_error *err);

/* A container to create (labels for job are added). */
struct docker_container_spec {
        const char *name; /* may be NULL */
        const char *image;
        const char *job;
        char *const *entrypoint; /* NULL = image's */
        char *const *cmd;        /* NULL = image's */
        char *const *env;        /* NAME=value, NULL-terminated or NULL */
        const char *user;        /* NULL = image's */
        const char *workdir;     /* NULL = image's */
        const char *network;     /* network name, or "container:<id>" to share one's namespace */
        char *const *aliases;    /* network aliases (not with container: mode) */
        bool open_stdin;         /* keep stdin open (a shell entrypoint then waits forever) */
        uint64_t memory_bytes;   /* 0 = no limit */
        uint64_t nano_cpus;      /* 0 = no limit */
        uint64_t pids_limit;     /* 0 = no limit */
};
/* Create; *id is malloc'd. */
int docker_container_create(struct docker *d, const struct docker_container_spec *spec, char **id,
                            struct drv_error *err);
int docker_container_start(struct docker *d, const char *id, struct drv_error *err);
/* Remove with force and its anonymous volumes; a missing container is fine. */
int docker_container_remove(struct docker *d, const char *id, struct drv_error *err);
/* Send a signal to the container's main process. */
int docker_container_kill(struct docker *d, const char *id, int sig, struct drv_error *err);

/* How many times the engine saw the memory limit of container hit (its `oom` events up to the
 * engine's current time; the engine keeps a bounded in-memory event log). */
int docker_container_oom_count(struct docker *d, const char *id, unsigned *count,
                               struct drv_error *err);

/* Create an exec in container: argv, env (NULL ok), workdir, user (NULL = container's). */
int docker_exec_create(struct docker *d, const char *container, char *const *argv, char *const *env,
                       const char *workdir, const char *user, char **exec_id,
                       struct drv_error *err);
/* The same with stdin attached (for docker_attach_start), on the engine's terminal when tty, as
 * the container's user. */
int docker_exec_create_attached(struct docker *d, const char *container, char *const *argv,
                                char *const *env, bool tty, char **exec_id, struct drv_error *err);
/* Start the exec and copy its demultiplexed stdout+stderr into out_fd until it ends. Blocking:
 * callers that must not block run it in a child process (see runtime_docker.c). */
int docker_exec_start(struct docker *d, const char *exec_id, int out_fd, struct drv_error *err);
struct docker_exec_state {
        bool running;
        int exit_code;
        long pid; /* host pid on the engine's machine */
};
int docker_exec_inspect(struct docker *d, const char *exec_id, struct docker_exec_state *st,
                        struct drv_error *err);
/* Inspect until the exec is no longer running (its output stream ended). */
int docker_exec_wait(struct docker *d, const char *exec_id, struct docker_exec_state *st,
                     struct drv_error *err);
/* Run argv in container to completion; output (demultiplexed) to out_fd (-1 = discard). */
int docker_exec_run(struct docker *d, const char *container, char *const *argv, const char *user,
                    int out_fd, int *exit_code, struct drv_error *err);

/* Start exec_id attached (created with AttachStdin) over a raw upgraded connection on d's own
 * handle (d is then used for nothing else): tty streams are raw, others multiplexed
 * (docker_demux_feed). Stream bytes that came with the answer go to early. */
int docker_attach_start(struct docker *d, const char *exec_id, bool tty, struct strbuf *early,
                        struct drv_error *err);
/* Open a raw connection to the engine on d's own handle (TLS when d has it; d is then used for
 * nothing else): bytes go with docker_attach_send*, come with docker_attach_recv. */
int docker_raw_connect(struct docker *d, struct drv_error *err);
/* The stream's socket (for poll), -1 if none. */
int docker_attach_fd(struct docker *d);
/* Receive: > 0 bytes, 0 at the end of the stream, -EAGAIN, or -EIO. */
ssize_t docker_attach_recv(struct docker *d, void *buf, size_t n);
/* Send all of buf (waits for room up to 30 s); 0 or -errno. */
int docker_attach_send(struct docker *d, const void *buf, size_t n);
/* Send what the connection takes now: bytes sent (> 0), -EAGAIN (poll for POLLOUT), or -EPIPE. */
ssize_t docker_attach_send_some(struct docker *d, const void *buf, size_t n);
/* End the exec's stdin (half-close). */
void docker_attach_close_write(struct docker *d);

/* Demultiplexer state for the 8-byte-header stream (exposed for unit tests). */
struct docker_demux {
        unsigned char hdr[8];
        size_t hdr_len;
        size_t left; /* payload bytes left of the current frame */
        int stream;
};
/* Feed n bytes; payload goes to out(ud, stream, data, len). Returns 0 or the first <0 of out. */
int docker_demux_feed(struct docker_demux *dm, const void *data, size_t n,
                      int (*out)(void *ud, int stream, const void *p, size_t len), void *ud);

/* PUT a tar stream (read from tar_fd to EOF) and extract it at path in the container. */
int docker_archive_put(struct docker *d, const char *container, const char *path, int tar_fd,
                       struct drv_error *err);
/* GET path of the container as a tar stream written into out_fd; -ENOENT when missing;
 * -EFBIG (the transfer stopped) once the stream passes max bytes (0 = no bound). */
int docker_archive_get(struct docker *d, const char *container, const char *path, int out_fd,
                       uint64_t max, struct drv_error *err);

/* Does path exist in the container (HEAD of the archive endpoint: a stat, no exec)? 1, 0 or <0. */
int docker_path_exists(struct docker *d, const char *container, const char *path,
                       struct drv_error *err);

/* Remove every container, network and volume labelled drover.managed=true (and, when job is
 * not NULL, drover.job=job; when a node is set, drover.node=node). *removed (optional) counts what
 * was removed. */
int docker_cleanup(struct docker *d, const char *job, unsigned *removed, struct drv_error *err);

/* `drover agent` start: on the engine at host, remove leftovers of crashed runs — everything
 * labelled drover.managed=true and drover.node=node (node NULL: every drover.managed=true object,
 * whatever its node). */
int docker_cleanup_leftovers(const struct js_docker_host *host, const char *node, unsigned *removed,
                             struct drv_error *err);

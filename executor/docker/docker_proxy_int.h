/* docker_proxy_int.h: internals of the API proxy that setup_remote_docker gives a job
 * (docker_proxy.c: the process; docker_proxy_conn.c: one connection; docker_proxy_rules.c: what a
 * request may do). Not a contract. */
#pragma once

#include "executor/docker/docker_proxy.h"
#include "executor/docker/docker_int.h"
#include "executor/docker/runtime_docker_int.h"

/* The hidden command, and its fds (0-2 stay drover's; every other fd is closed). */
#define DPROXY_CMD "__docker-proxy"
enum {
        DPROXY_FD_DESC = 3,  /* memfd: the engine connection + label, node, net, uid, gid, log */
        DPROXY_FD_DIR = 4,   /* the job's directory the socket is bound in */
        DPROXY_FD_READY = 5, /* pipe: "ok\n" once listening, else the error's message */
        DPROXY_FD_OWN = 6,   /* memfd shared with the supervisor: "i ID\n" pulled, "t REF\n" tags */
        DPROXY_FD_EXE = 7,   /* only in the forked child: drover's image, execveat'd */
};
#define DPROXY_SOCK_NAME "docker.sock"
#define DPROXY_MAX_CONNS 64
#define DPROXY_JSON_MAX  (1u << 20) /* request bodies the proxy reads */

/* What every connection of the proxy process knows. */
struct dproxy {
        struct docker_conn conn;
        const char *label; /* drover.job value of everything the job creates */
        const char *node;  /* drover.node value ("" none) */
        const char *net;   /* the job's own bridge network: its containers' default */
        int own_fd;        /* DPROXY_FD_OWN */
};

/* One request of the job, as the rules see it. */
struct dproxy_req {
        const char *method;
        const char *path;  /* without the /vX.Y prefix and the query */
        const char *query; /* after '?' ("" none) */
        json_t *body;      /* the JSON body when dproxy_wants_json said so (may be changed) */
        /* the rules' answer */
        char *target;      /* path?query to send instead (malloc'd; NULL: unchanged) */
        bool body_changed; /* send body (re-encoded) */
        bool hijack;       /* attach / exec start: both ways raw after the answer's head */
        char *pulled;      /* an image pull: the reference to record as the job's when done */
        int status;        /* refused: the HTTP status ... */
        char msg[512];     /* ... and the message */
};

/* Does this request carry a JSON body the rules must read (create, exec, network, volume)? */
bool dproxy_wants_json(const char *method, const char *path);
/* Decide: 0 forward (maybe rewritten), 1 refused (rq->status, rq->msg), <0 the engine failed
 * (err). d: a connection of this proxy's own for the ownership look-ups. */
int dproxy_route(const struct dproxy *px, struct docker *d, struct dproxy_req *rq,
                 struct drv_error *err);
/* After a pull went through: record the image it left as the job's. */
void dproxy_record_pull(const struct dproxy *px, struct docker *d, const char *ref);
/* Serve one accepted connection to its end (in a child of the proxy process). */
void dproxy_serve(const struct dproxy *px, int cfd);

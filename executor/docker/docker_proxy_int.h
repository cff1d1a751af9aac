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
/* Look-ups (docker_proxy_own.c). Ownership: 1 the job's (*id, optional: its full id, malloc'd),
 * 0 not the job's or missing, <0 the engine failed. */
int dproxy_own_container(const struct dproxy *px, struct docker *d, const char *ref, char **id,
                         struct drv_error *err);
int dproxy_own_network(const struct dproxy *px, struct docker *d, const char *ref, char **id,
                       struct drv_error *err);
int dproxy_own_volume(const struct dproxy *px, struct docker *d, const char *ref, char **id,
                      struct drv_error *err);
/* An exec is the job's when its container is. */
int dproxy_own_exec(const struct dproxy *px, struct docker *d, const char *ref, char **id,
                    struct drv_error *err);
/* An image is the job's when it built it (label) or pulled it through this proxy. */
int dproxy_own_image(const struct dproxy *px, struct docker *d, const char *ref, char **id,
                     struct drv_error *err);
/* GET fmt (one %s: ref) into *out: 1 found, 0 missing (404), <0 error. */
int dproxy_lookup(struct docker *d, const char *fmt, const char *ref, json_t **out,
                  struct drv_error *err);
/* The shared file: is "<kind> <value>" a line of it; append one ('i' image id, 't' tag made). */
bool dproxy_own_line(const struct dproxy *px, char kind, const char *value);
void dproxy_own_add(const struct dproxy *px, char kind, const char *value);
/* After a pull went through: record the image it left as the job's. */
void dproxy_record_pull(const struct dproxy *px, struct docker *d, const char *ref);
/* Does labels carry drover.job=LABEL; set drover's labels on obj[key] (an object, made if absent).
 */
bool dproxy_labelled(const struct dproxy *px, json_t *labels);
int dproxy_add_labels(const struct dproxy *px, json_t *obj, const char *key);
/* A container, network or volume name or id (image: an image reference) the router passes on. */
bool dproxy_ref_ok(const char *s, bool image);
/* Is s in list (ignoring case: JSON field names are matched so by the engine)? */
bool dproxy_in_list(const char *s, const char *const *list);
/* JSON as the engine (Go) reads it: a field by name ignoring case; set one (value stolen), its
 * other spellings removed; does any object in j name a field twice in different cases? */
json_t *dproxy_jget(json_t *obj, const char *key);
int dproxy_jset(json_t *obj, const char *key, json_t *value);
bool dproxy_ci_dups(json_t *j);
/* Query strings: key's decoded value (malloc'd; NULL absent); the first key not in allowed
 * (NULL: none); path?query with key set to value (encoded; malloc'd). */
char *dproxy_qget(const char *query, const char *key);
const char *dproxy_qunknown(const char *query, const char *const *allowed);
char *dproxy_qset(struct docker *d, const char *path, const char *query, const char *key,
                  const char *value);
/* Serve one accepted connection to its end (in a child of the proxy process). */
void dproxy_serve(const struct dproxy *px, int cfd);

/* runtime_docker_int.h: the docker runtime's state, shared by its files (not a contract). */
#pragma once

#include "executor/docker/helper_proto.h"
#include "executor/docker/runtime_docker.h"

#include <pthread.h>

struct rtdocker_proc {
        int id;
        pid_t child;
        bool done;
        char *exec_id; /* SSH sessions (for resizes), else NULL */
};

/* What a pump child reports on exit_wr when its exec ended. */
struct rtdocker_exit_rec {
        int proc;
        int code; /* exit code, or -1 when the exec's stream or inspect failed */
};

/* A small file written into the job, created by the next exec's wrapper (saves a round trip). */
struct rtdocker_pending {
        char *path;
        char *data;
        mode_t mode;
};

struct rtdocker {
        struct docker *d;
        char *job; /* value of the drover.job label: job id, node, random */
        char *net_name, *net_id;
        char *primary;
        char **services;
        char *image0;
        int exit_rd, exit_wr;
        int self_fd; /* drover's image (O_PATH), exec'd for pump processes */
        struct rtdocker_proc procs[256];
        size_t n_procs;
        uid_t uid;
        gid_t gid;
        char *user, *home;
        uint64_t memory;
        unsigned oom_seen;       /* the primary's oom events already attributed to a step */
        uint64_t oom_kills_seen; /* the cgroup's oom_kill counter, as far as attributed */
        bool have_bash;          /* /bin/bash exists (learned with the user probe) */
        struct rtdocker_pending pending[16];
        size_t n_pending;
        /* local mirror for built-in steps (runtime_docker_files.c) */
        char *mirror;    /* temp dir */
        int mirror_fd;   /* O_PATH of it, handed out by rtdocker_root_fd */
        bool mirror_out; /* handed out since the last copy back */
        /* drover-docker-helper and `ssh -L` forwards (runtime_docker_helper.c, _fwd.c):
         * connect_tcp runs without the runtime's lock, so these have their own */
        pthread_mutex_t helper_lock;
        bool helper_ready; /* copied into the primary */
        pid_t fwd[64];     /* forward pump children */
        size_t n_fwd;
};

static inline void rtdocker_closep(struct rtdocker **p)
{
        if (*p)
                rtdocker_close(*p);
}
/* Create pending files now (archive PUTs), e.g. before a path check or the mirror. */
int rtdocker_flush_pending(struct rtdocker *rt, struct drv_error *err);
void rtdocker_drop_pending(struct rtdocker *rt);
/* SSH rerun sessions (runtime_docker_ssh.c): an attached exec, on a terminal when asked. */
int rtdocker_spawn_session(struct rtdocker *rt, const struct runtime_session_exec *ex, int *proc,
                           int *pty_master, struct drv_error *err);
int rtdocker_resize_session(struct rtdocker *rt, int proc, unsigned short rows,
                            unsigned short cols);
/* Bytes from a local fd on their way into an attached exec's stdin (runtime_docker_ssh.c). */
struct rtdocker_stdin {
        char buf[32768];
        size_t len, off;
        bool eof;
};
/* One step of a pump: with nothing pending, read in_fd once (only when poll said it is readable);
 * then hand the engine what its connection takes now, never waiting for it — the engine's output
 * may be waiting for the pump. At in_fd's end: eof, and the exec's stdin ends when half_close.
 * 0; -ECONNRESET when in_fd failed (eof then set); -EPIPE when the engine's side failed. Poll the
 * attach fd for POLLOUT while len > 0. */
int rtdocker_stdin_step(struct docker *d, int in_fd, struct rtdocker_stdin *si, bool half_close);

/* Pump processes (runtime_docker_pump.c): `drover __docker-pump KIND` (not in the help), started
 * with fd 3 a memfd describing the pump — records "NAME LEN\n" + LEN bytes + "\n": base, host,
 * sock, ca, cert, key, api, engine, arch, node (the engine connection, docker_conn), proc, exec,
 * container, tty, rows, cols, log (the log level), fds (bit i: PUMP_FD_REPORT + i given) — and
 * the fds below; 0-2 stay drover's (2: the log), every other fd is closed. */
#define RTDOCKER_PUMP_CMD "__docker-pump"
enum {
        PUMP_FD_DESC = 3,   /* the description */
        PUMP_FD_REPORT = 4, /* exit records (rtdocker_exit_rec) or a forward's status */
        PUMP_FD_IN = 5,     /* bytes for the exec's stdin (session in; forward socket) */
        PUMP_FD_OUT = 6,    /* the exec's output (session: stdout; tty: the socketpair end) */
        PUMP_FD_ERR = 7,    /* session stderr (non-tty) */
        PUMP_FD_EXE = 8,    /* only in the forked child: drover's image, execveat'd */
};
struct rtdocker_pump {
        const char *kind; /* "step", "session", "fwd" */
        int proc;
        const char *exec_id;
        const char *container; /* fwd: the primary (to kill a relay whose channel is gone) */
        bool tty;
        unsigned short rows, cols;
        int report, in, out, err; /* fds (-1 = none): the parent's, or PUMP_FD_* in the pump */
        /* parent side: written to report (and fail_out to out) when drover cannot be exec'd */
        const void *fail;
        size_t fail_len;
        const char *fail_out;
};
/* Descriptions (the pump's fd 3; also the API proxy's): append one record "NAME LEN\n", LEN
 * bytes, "\n" (a NULL value is left out); split a description in place into records (0 or
 * -EINVAL); a record's value by name (NULL when absent). */
struct rtdocker_desc_rec {
        const char *name, *value;
};
int rtdocker_desc_put(struct strbuf *sb, const char *name, const char *value);
int rtdocker_desc_parse(char *text, size_t len, struct rtdocker_desc_rec *rec, size_t cap,
                        size_t *n);
const char *rtdocker_desc_get(const struct rtdocker_desc_rec *rec, size_t n, const char *name);
/* The engine connection as records (base, host, sock, ca, cert, key, api, engine, arch, node) and
 * back (strings borrowed from rec). */
int rtdocker_desc_put_conn(struct strbuf *sb, const struct docker *d);
void rtdocker_desc_conn(const struct rtdocker_desc_rec *rec, size_t n, struct docker_conn *c);
/* drover's own image as an O_PATH fd (rt->self_fd), or -errno. */
int rtdocker_self_open(struct drv_error *err);
/* Fork and exec a pump process for p; *pid is the child's. Any thread. */
int rtdocker_pump_spawn(struct rtdocker *rt, const struct rtdocker_pump *p, pid_t *pid,
                        struct drv_error *err);
/* The pumps themselves, in the pump process (d: a fresh connection, p: fds PUMP_FD_*). */
void rtdocker_pump_step(struct docker *d, const struct rtdocker_pump *p);
void rtdocker_pump_session(struct docker *d, const struct rtdocker_pump *p);
void rtdocker_pump_fwd(struct docker *d, const struct rtdocker_pump *p);

/* One entry of a tar stream PUT into a container (runtime_docker_files.c). */
struct rtdocker_tar_entry {
        const char *name; /* relative to the directory it is PUT at */
        const void *data; /* file contents; NULL: a directory */
        size_t len;
        mode_t mode;
        uid_t uid;
        gid_t gid;
};
/* Pack entries into one tar stream and PUT it at dir in container, over connection d. */
int rtdocker_put_entries(struct docker *d, const char *container, const char *dir,
                         const struct rtdocker_tar_entry *en, size_t n, struct drv_error *err);

/* drover-docker-helper (executor/docker/helper_proto.h), runtime_docker_helper.c */
/* Copy the helper into the primary once (over d; any thread). -ENOEXEC when the engine's machine
 * is not the one drover was built for. */
int rtdocker_helper_install(struct rtdocker *rt, struct docker *d, struct drv_error *err);
/* The primary container cgroup's OOM-kill counter, read by the helper (`oom-kills`). */
int rtdocker_oom_kills(struct rtdocker *rt, uint64_t *kills, struct drv_error *err);
/* The "oom_kill N" line of cgroup v2 memory.events or v1 memory.oom_control; 0, -ENOENT when
 * there is none, -EINVAL when N is not a number. */
int rtdocker_parse_oom_kill(const char *text, uint64_t *kills);
/* Decoder of the helper's `connect` frames (helper_proto.h). */
struct rtdocker_frames {
        unsigned char hdr[DKH_HDR];
        size_t hdr_len;
        size_t left; /* payload bytes left of the current frame */
        int type;
};
/* Feed n bytes: out(ud, type, p, len, end) gets each frame's payload in pieces, end on its last
 * (an empty frame: once, len 0). 0, -EPROTO on a frame that is not the helper's, or the first
 * <0 of out. */
int rtdocker_frames_feed(struct rtdocker_frames *fr, const void *data, size_t n,
                         int (*out)(void *ud, int type, const void *p, size_t len, bool end),
                         void *ud);

/* `ssh -L` (runtime_docker_fwd.c): a socket whose other end is a relay inside the primary. */
int rtdocker_connect_tcp(struct rtdocker *rt, const char *host, uint16_t port, int *fd,
                         struct drv_error *err);
/* Stop every forward's pump (runtime close). */
void rtdocker_fwd_stop(struct rtdocker *rt);

/* Copy the mirror back into the container if it was handed out. */
int rtdocker_sync_back(struct rtdocker *rt, struct drv_error *err);
void rtdocker_mirror_free(struct rtdocker *rt);

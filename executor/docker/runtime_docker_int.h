/* runtime_docker_int.h: the docker runtime's state, shared by its files (not a contract). */
#pragma once

#include "executor/docker/runtime_docker.h"

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
        struct rtdocker_proc procs[256];
        size_t n_procs;
        uid_t uid;
        gid_t gid;
        char *user, *home;
        uint64_t memory;
        unsigned oom_seen; /* the primary's oom events already attributed to a step */
        bool have_bash;    /* /bin/bash exists (learned with the user probe) */
        struct rtdocker_pending pending[16];
        size_t n_pending;
        /* local mirror for built-in steps (runtime_docker_files.c) */
        char *mirror;    /* temp dir */
        int mirror_fd;   /* O_PATH of it, handed out by rtdocker_root_fd */
        bool mirror_out; /* handed out since the last copy back */
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
/* Copy the mirror back into the container if it was handed out. */
int rtdocker_sync_back(struct rtdocker *rt, struct drv_error *err);
void rtdocker_mirror_free(struct rtdocker *rt);

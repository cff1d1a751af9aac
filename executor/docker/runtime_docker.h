/* runtime_docker.h: the job runtime on a remote Docker engine — the same calls as
 * executor/runtime.h, which dispatches here when the spec's executor.runtime is "docker". */
#pragma once

#include "executor/docker/docker.h"
#include "executor/runtime.h"

struct rtdocker;

/* Connect (spec's executor.docker_host), pull missing images, create the job's network, the
 * primary container and the service containers (which share the primary's network namespace:
 * services answer on localhost, and by their name / image short name as network aliases). */
int rtdocker_open(const struct runtime_config *cfg, struct rtdocker **out, struct drv_error *err);
/* Each process is an exec in the primary, pumped by a child process into ex->out_fd. */
int rtdocker_spawn(struct rtdocker *rt, const struct runtime_exec *ex, int *proc,
                   struct drv_error *err);
int rtdocker_event_fd(struct rtdocker *rt);
int rtdocker_next_exit(struct rtdocker *rt, struct runtime_exit *ev, struct drv_error *err);
bool rtdocker_has_pending_exit(struct rtdocker *rt);
/* Signal the process tree of one exec inside the container. */
int rtdocker_signal(struct rtdocker *rt, int proc, int sig);
int rtdocker_kill_all(struct rtdocker *rt, struct drv_error *err);
/* A local mirror of the job's home (and working directory) for built-in steps: filled from the
 * container through the archive endpoint on each call, copied back before the next exec. */
int rtdocker_root_fd(struct rtdocker *rt);
uid_t rtdocker_uid(struct rtdocker *rt);
gid_t rtdocker_gid(struct rtdocker *rt);
const char *rtdocker_home(struct rtdocker *rt);
const char *rtdocker_user(struct rtdocker *rt);
uint64_t rtdocker_memory_limit(struct rtdocker *rt);
bool rtdocker_path_exists(struct rtdocker *rt, const char *inside_path);
int rtdocker_write_file(struct rtdocker *rt, const char *inside_path, const void *data, size_t n,
                        mode_t mode, struct drv_error *err);
/* Remove every container, network and volume of the job; free everything. */
void rtdocker_close(struct rtdocker *rt);

/* The environment variable `drover agent` sets for its job supervisors: the node name that the
 * job's containers, networks and volumes are labelled with (drover.node=NAME). */
#define RTDOCKER_NODE_ENV "DROVER_AGENT_NODE"

/* stephelper.h: the launchers of the in-job storage helper (struct step_runner, cache/jobhelper.h)
 * that the step machine hands to built-in steps. */
#pragma once

#include "executor/runtime.h"
#include "executor/stepctx.h"

struct step_helper;

/* A runner for rt's job: the sandbox runtime (host root or image) starts the helper inside the
 * job like a step (runtime_spawn_session: the job user, its namespaces, seccomp, cgroup). The
 * remote Docker runtime's built-in steps work on a local copy of the container's home (root_fd):
 * there the helper runs on this host as the job's host uid/gid, without capabilities and with
 * no_new_privs, confined to root_fd (`--root-fd`): local. self_exe: the drover binary on this
 * host. NULL when out of memory. Free it before runtime_close. */
struct step_helper *step_helper_new(struct runtime *rt, bool local, const char *self_exe,
                                    int root_fd, uid_t uid, gid_t gid);
const struct step_runner *step_helper_runner(struct step_helper *sh);
void step_helper_free(struct step_helper *sh);

/* runopts.h: the options of `drover run` (cmd_run.c) and their parsing (runopts.c). */
#pragma once

#include "executor/config/config.h"
#include "executor/localrepo.h"
#include "executor/localsrc.h"

#include <jansson.h>

struct run_opts {
        const char *config;
        const char *job;
        const char *workflow;
        const char *store;
        unsigned max_parallel; /* -j: job nodes at once, >= 1 */
        char **env;
        char **secrets;      /* -s, --secret-env, --secret-file: "K=V", masked */
        bool ssh;            /* --ssh: rerun with SSH (docs/ssh.md) */
        const char *ssh_key; /* --ssh=FILE; NULL: the user's public keys */
        char **ssh_keys;
        struct config_opts copts;
        bool committed;        /* --committed: checkout gives exactly HEAD */
        char **orb_dirs;       /* --orb-dir */
        bool pull_orbs;        /* --pull-orbs: fetch missing registry orbs into the cache */
        struct localrepo repo; /* the git work tree around the config, for checkout */
        struct localsrc src;   /* what checkout steps get (localsrc.h) */
        json_t *params;        /* --param NAME=VALUE: pipeline parameters */
        bool list;             /* --list: the config's workflows and jobs */
        bool with_upstream;    /* --with-upstream: JOB and the jobs it requires */
        json_t *stored_layers; /* a single job's upstream workspace from an earlier run */

        /* dynamic config (executor/continuation.h), a setup config's run: every job gets the
         * key; *continuation receives the run's continuation */
        const char *continuation_key;
        json_t **continuation;
};

/* Free what the options own. */
void run_opts_release(struct run_opts *o);
/* Parse argv into o: 0, 1 after --help (printed), -errno on a usage error (told on stderr). */
int run_opts_parse(int argc, char **argv, struct run_opts *o);
/* The default store directory ($XDG_CACHE_HOME/drover/store or ~/.cache/drover/store; caller
 * frees). */
char *run_default_store(void);

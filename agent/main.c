/* main.c: the `drover` binary — dispatch to subcommands; `circleci` when invoked by that name. */
#include "agent/commands.h"
#include "drover_version.h"
#include "lib/drv.h"

#include <libgen.h>

struct command {
        const char *name;
        int (*fn)(int argc, char **argv);
        const char *help;
};

static const struct command commands[] = {
    {"run", cmd_run, "run a job or workflow of .circleci/config.yml on this machine"},
    {"config", cmd_config, "validate or process (compile) a .circleci/config.yml"},
    {"orb", cmd_orb, "pull orbs into the orb cache, list it, print an orb's source"},
    {"sandbox", cmd_sandbox, "run one command in a fresh sandbox"},
    {"job", cmd_job, "run one job spec (the per-job supervisor)"},
    {"agent", cmd_agent, "the builder daemon: register, claim and run jobs"},
    {"check", cmd_check, "preflight: can this machine run jobs?"},
    {"circleci", cmd_circleci, "the in-job `circleci` helper (tests glob/split, step halt)"},
    {"image", cmd_image, "pull images into the layer store, list it, garbage-collect it"},
};

static void usage(FILE *f)
{
        fprintf(f, "usage: drover COMMAND [ARGS...]\n\ncommands:\n");
        for (size_t i = 0; i < DRV_ARRAY_SIZE(commands); i++)
                fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].help);
        fprintf(f, "  %-10s %s\n", "version", "print the version");
        fprintf(f, "\n`drover COMMAND --help` describes each command.\n");
}

int main(int argc, char **argv)
{
        const char *env_level = getenv("DROVER_LOG_LEVEL");
        enum drv_log_level lvl;
        if (env_level && drv_log_parse_level(env_level, &lvl) == 0)
                drv_log_set_level(lvl);

        /* Invoked as `circleci` or `circleci-agent` inside a job. */
        _cleanup_free_ char *self = strdup(argv[0] ? argv[0] : "drover");
        const char *base = self ? basename(self) : "drover";
        if (strcmp(base, "circleci") == 0 || strcmp(base, "circleci-agent") == 0)
                return cmd_circleci(argc, argv);

        if (argc < 2) {
                usage(stderr);
                return 2;
        }
        if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
            strcmp(argv[1], "help") == 0) {
                usage(stdout);
                return 0;
        }
        if (strcmp(argv[1], "version") == 0 || strcmp(argv[1], "--version") == 0) {
                printf("drover %s\n", DROVER_VERSION);
                return 0;
        }
        if (strcmp(argv[1], "__docker-pump") == 0) /* internal, hence not in commands[] */
                return cmd_docker_pump(argc - 1, argv + 1);
        if (strcmp(argv[1], "__docker-proxy") == 0) /* internal too: setup_remote_docker's */
                return cmd_docker_proxy(argc - 1, argv + 1);
        for (size_t i = 0; i < DRV_ARRAY_SIZE(commands); i++) {
                if (strcmp(argv[1], commands[i].name) == 0)
                        return commands[i].fn(argc - 1, argv + 1);
        }
        fprintf(stderr, "drover: unknown command '%s'\n\n", argv[1]);
        usage(stderr);
        return 2;
}

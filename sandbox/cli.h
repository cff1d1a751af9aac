/* cli.h: internal — option parsing of `drover sandbox`, split out for unit tests. */
#pragma once

#include "sandbox/sandbox.h"

struct sb_cli {
        struct sandbox_config cfg; /* points into the fields below and into argv */
        char **env;                /* --env K=V */
        char **masks;              /* --mask */
        char **lowers;             /* --lower */
        struct sandbox_bind *binds;
        char *name;
        bool as_root;
        const char *cwd;
        char **cmd; /* into argv */
        bool help;
};

/* Parse argv (argv[0] is "sandbox"). 0 or -EINVAL with a message; free with sb_cli_free either
 * way. */
int sb_cli_parse(int argc, char **argv, struct sb_cli *o, struct drv_error *err);
void sb_cli_free(struct sb_cli *o);

/* main.c: `drover-sandbox [opts] -- CMD...`, the lean entry point of `drover sandbox` (the same
 * code: sandbox/cli.c). Built from sandbox/ and lib/ only, so that starting a sandbox does not
 * first load drover's ~47 shared libraries (libcurl, libssh, OpenSSL...). */
#include "lib/drv.h"
#include "sandbox/sandbox.h"

int main(int argc, char **argv)
{
        const char *env_level = getenv("DROVER_LOG_LEVEL");
        enum drv_log_level lvl;
        if (env_level && drv_log_parse_level(env_level, &lvl) == 0)
                drv_log_set_level(lvl);
        return cmd_sandbox(argc, argv);
}

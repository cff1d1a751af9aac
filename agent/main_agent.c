/* main_agent.c: the lean `drover-agent` binary — only the daemon (HTTP over mbedTLS, jansson and
 * libyaml linked statically: the process maps libc alone); each job runs in `drover job` of the
 * full `drover` binary installed next to it, Docker leftovers at start in a `drover agent` child.
 */
#include "agent/commands.h"
#include "lib/drv.h"

int main(int argc, char **argv)
{
        const char *env_level = getenv("DROVER_LOG_LEVEL");
        enum drv_log_level lvl;
        if (env_level && drv_log_parse_level(env_level, &lvl) == 0)
                drv_log_set_level(lvl);
        return cmd_agent(argc, argv);
}

/* docker_cleanup_lean.c: the lean drover-agent maps no libcurl, so the removal of this node's
 * Docker leftovers at start runs in a one-shot child: the `drover` binary next to it, as
 * `drover agent ARGS...` (the same configuration) with DROVER_AGENT_ONESHOT=docker-cleanup. */
#include "agent/agent.h"

#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>

extern char **environ;

void agent_docker_cleanup(struct agent *a)
{
        if (!a->n_docker)
                return;
        _cleanup_free_ char *self = drv_self_exe();
        char *slash = self ? strrchr(self, '/') : NULL;
        _cleanup_free_ char *exe =
            slash ? drv_asprintf("%.*s/drover", (int)(slash - self), self) : NULL;
        size_t n = (size_t)(a->argc > 0 ? a->argc : 1);
        _cleanup_free_ char **argv = calloc(n + 2, sizeof(char *));
        if (!exe || !argv) {
                log_warn("docker_leftovers_failed", "error=\"out of memory\"");
                return;
        }
        argv[0] = (char *)"drover";
        argv[1] = (char *)"agent";
        for (size_t i = 1; i < n; i++)
                argv[i + 1] = a->argv[i];
        setenv(AGENT_ONESHOT_ENV, "docker-cleanup", 1);
        /* the daemon blocks the signals it reads from its signalfd: not the child */
        posix_spawnattr_t at;
        sigset_t none;
        sigemptyset(&none);
        posix_spawnattr_init(&at);
        posix_spawnattr_setsigmask(&at, &none);
        posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGMASK);
        pid_t pid;
        int r = posix_spawn(&pid, exe, NULL, &at, argv, environ);
        posix_spawnattr_destroy(&at);
        unsetenv(AGENT_ONESHOT_ENV);
        if (r != 0) {
                log_warn("docker_leftovers_failed", "exe=%s error=\"%s\"", exe, strerror(r));
                return;
        }
        int st = 0;
        while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
                ;
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
                log_warn("docker_leftovers_failed", "exe=%s status=0x%x", exe, (unsigned)st);
}

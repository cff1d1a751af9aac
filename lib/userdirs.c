/* userdirs.c: where drover keeps its state — root's system paths, or a user's own (rootless). */
#include "lib/drv.h"

#include <sys/stat.h>

/* The user's home: $HOME when absolute (runuser, su -, sudo -i, login and ssh set it), else NULL:
 * no passwd lookup (drover-sandbox is a static binary). */
static const char *home_dir(void)
{
        const char *h = getenv("HOME");
        return h && h[0] == '/' ? h : NULL;
}

bool drv_rootless(void)
{
        return geteuid() != 0;
}

char *drv_run_root(void)
{
        if (!drv_rootless())
                return strdup("/run/drover");
        /* $XDG_RUNTIME_DIR only when it is ours and private (pam_systemd makes it so) */
        const char *x = getenv("XDG_RUNTIME_DIR");
        struct stat st;
        if (x && x[0] == '/' && stat(x, &st) == 0 && S_ISDIR(st.st_mode) &&
            st.st_uid == geteuid() && (st.st_mode & 077) == 0)
                return drv_asprintf("%s/drover", x);
        char *cache = drv_cache_root();
        char *run = cache ? drv_asprintf("%s/run", cache) : NULL;
        free(cache);
        return run;
}

char *drv_cache_root(void)
{
        if (!drv_rootless())
                return strdup("/var/lib/drover");
        const char *xdg = getenv("XDG_CACHE_HOME");
        if (xdg && xdg[0] == '/')
                return drv_asprintf("%s/drover", xdg);
        const char *home = home_dir();
        return home ? drv_asprintf("%s/.cache/drover", home) : NULL;
}

/* group.c: a job's parent cgroup over several sibling sandboxes (a docker job's primary and its
 * services): its limits cap their sum, whatever each member's own limits are. */
#include "sandbox/cgroup.h"
#include "sandbox/internal.h"

#define CGROUP_FS "/sys/fs/cgroup"

struct sandbox_group {
        char *name; /* of its cgroup; members are made below it as "name/member" */
        struct cgroup *cg;
};

int sb_cg_place(struct cg_place *pl, struct drv_error *err)
{
        /* DROVER_CGROUP_FS: another cgroup mount (tests drive the real cgroup2 "unified" of a
         * hybrid host with it) */
        const char *cgfs = getenv("DROVER_CGROUP_FS");
        if (!cgfs || !*cgfs)
                cgfs = CGROUP_FS;
        pl->root = cgfs;
        pl->parent = getenv("DROVER_CGROUP_PARENT");
        int r = cg_detect(cgfs, &pl->mode, err);
        if (r == 0 && drv_rootless() && !cg_delegated(pl))
                return drv_err(err, EPERM, "no delegated cgroup");
        return r;
}

int sandbox_group_create(const char *name, uint64_t memory_bytes, double cpus, uint64_t pids_max,
                         struct sandbox_group **out, struct drv_error *err)
{
        if (!sb_name_ok(name))
                return drv_err(err, EINVAL, "sandbox group name '%s': use [A-Za-z0-9._-]", name);
        struct cg_place pl;
        int r = sb_cg_place(&pl, err);
        if (r < 0 && !(r == -EPERM && drv_rootless()))
                return r;
        bool no_cgroup = r < 0; /* rootless without delegation: a group without limits */
        struct sandbox_group *g = calloc(1, sizeof(*g));
        if (!g || !(g->name = strdup(name))) {
                free(g);
                return drv_err(err, ENOMEM, "out of memory");
        }
        if (no_cgroup) {
                *out = g;
                return 0;
        }
        struct cg_limits lim = {.memory_bytes = memory_bytes,
                                .cpus = cpus,
                                .pids_max = pids_max ? pids_max : SANDBOX_PIDS_DEFAULT,
                                .pids_default = pids_max == 0,
                                .parent = true};
        r = cg_create(&pl, g->name, &lim, &g->cg, err);
        if (r == -EEXIST) { /* the same job name twice on this host: our pid makes it unique */
                free(g->name);
                g->name = drv_asprintf("%s-g%d", name, (int)getpid());
                r = g->name ? cg_create(&pl, g->name, &lim, &g->cg, err)
                            : drv_err(err, ENOMEM, "out of memory");
        }
        if (r < 0) {
                free(g->name);
                free(g);
                return drv_err_prefix(err, "cgroup of the job");
        }
        *out = g;
        return 0;
}

const char *sb_group_name(const struct sandbox_group *g)
{
        return g->name;
}

uint64_t sandbox_group_memory_limit(const struct sandbox_group *g)
{
        return cg_memory_limit(g->cg);
}

void sandbox_group_destroy(struct sandbox_group *g)
{
        if (!g)
                return;
        struct drv_error err = {0};
        /* the members were destroyed (their groups removed): nothing is left to kill */
        if (cg_kill_all(g->cg, true, &err) < 0)
                log_warn("sandbox_group_kill", "name=%s error=\"%s\"", g->name, err.message);
        if (cg_destroy(g->cg, &err) < 0)
                log_warn("sandbox_group_remove", "name=%s error=\"%s\"", g->name, err.message);
        free(g->name);
        free(g);
}

/* localrepo.h: `drover run` finds the git repository around the project so that `checkout` steps
 * clone it (at its HEAD commit) — read from .git files, no git process on the host. */
#pragma once

#include "lib/drv.h"

struct localrepo {
        char *toplevel; /* absolute host path of the work tree */
        char *branch;   /* NULL when HEAD is detached */
        char *revision; /* 40 hex digits; NULL when HEAD names a branch without commits */
};

/* Look for a repository at dir or above. Returns 1 and fills *out when found, 0 when there is
 * none, -errno on a real error. */
int localrepo_find(const char *dir, struct localrepo *out);
void localrepo_release(struct localrepo *r);

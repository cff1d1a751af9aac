/* localsrc.h: `drover run` hands a `checkout` step a filtered snapshot of the local source, never
 * the work tree itself (docs/checkout.md). The snapshot is made on the host, before any job
 * starts, in a private staging directory (0700); only its `src` directory is bound read-only
 * into jobs that have a checkout step, at INJOB_SOURCE_DIR. Layout of `src`:
 *   describe  one line for the job's output: what the checkout gets
 *   repo.git  a bare clone of the repository: objects and refs, a fresh config (no remote
 *             credentials, helpers, extra headers or includes); absent for a plain directory
 *   tree/     the work tree as the developer sees it: tracked files with their changes plus
 *             untracked files git does not ignore; absent with --committed
 *   deleted   NUL-separated tracked paths missing from the work tree
 *   origin    the repository's origin URL without credentials (absent when none)
 * git runs on the host only to list files and clone (hooks, fsmonitor and other configured
 * commands turned off); files are copied without following any symlink. */
#pragma once

#include "executor/localrepo.h"

struct localsrc {
        char *stage; /* private staging directory, removed by localsrc_release */
        char *src;   /* stage/src: what jobs get at INJOB_SOURCE_DIR */
        size_t files;
};

/* Snapshot root (the work tree of repo, or a plain directory when repo is NULL); committed:
 * HEAD only. Errors name what failed. */
int localsrc_prepare(const char *root, const struct localrepo *repo, bool committed,
                     struct localsrc *out, struct drv_error *err);
void localsrc_release(struct localsrc *s);
/* url without credentials: the userinfo of scheme://userinfo@host URLs goes, except a user name
 * alone on ssh://; scp-like user@host:path stays. Caller frees; NULL on OOM. */
char *localsrc_clean_url(const char *url);

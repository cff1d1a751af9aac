/* jobfs_int.h: what jobfs.c (paths, archives written) and archive_extract.c (safe extraction,
 * undo log) share. Internal to cache/. */
#pragma once

#include "cache/jobfs.h"

#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/fsuid.h>
#include <sys/syscall.h>

#define O_LARGEFILE_K 0100000

/* openat2 below dirfd (a leading '/' is dropped; "" is dirfd itself). */
static inline int openat2_in(int dirfd, const char *path, uint64_t flags, uint64_t resolve)
{
        struct open_how how = {.flags = flags | O_CLOEXEC | O_LARGEFILE_K, .resolve = resolve};
        while (*path == '/')
                path++;
        if (!*path)
                path = ".";
        return (int)syscall(SYS_openat2, dirfd, path, &how, sizeof(how));
}

struct fsid {
        int uid, gid;
};

static inline struct fsid as_job(const struct jobfs *fs)
{
        struct fsid old = {setfsuid(fs->uid), setfsgid(fs->gid)};
        return old;
}

static inline void as_self(struct fsid old)
{
        int e = errno;
        setfsuid((uid_t)old.uid);
        setfsgid((gid_t)old.gid);
        errno = e;
}

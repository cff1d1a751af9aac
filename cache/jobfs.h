/* jobfs.h: safe access to a job's files from outside its sandbox, and tar+zstd archives of them.
 * Every path is resolved inside the job's root (openat2 RESOLVE_IN_ROOT) and below that no
 * symlink is ever followed, so a hostile job cannot make drover read or write outside it. */
#pragma once

#include "lib/drv.h"

struct jobfs {
        int root_fd; /* O_PATH dirfd of the job's root */
        uid_t uid;   /* files created get this owner (setfsuid while creating) */
        gid_t gid;
};

struct archive_limits {
        uint64_t max_bytes;   /* total file bytes; 0 = 32 GiB */
        uint64_t max_entries; /* 0 = 2 000 000 */
};

struct archive_stats {
        uint64_t files, dirs, links, bytes, skipped;
};

/* Open (O_DIRECTORY) an inside path, creating missing directories when create. */
int jobfs_open_dir(const struct jobfs *fs, const char *inside, bool create, int *out,
                   struct drv_error *err);
/* Open an inside file for reading (no symlink at the last component). */
int jobfs_open_file(const struct jobfs *fs, const char *inside, int *out, struct drv_error *err);
/* Expand `*`, `?`, `[..]` and `**` patterns relative to the directory dirfd (no symlink is
 * followed, not even in the fixed prefix: drv_glob_walk with DRV_GLOB_BENEATH); appends matching
 * relative paths to *out (a pattern without wildcards is kept as is when it exists). */
int jobfs_glob(int dirfd, const char *pattern, char ***out, struct drv_error *err);

/* Write a tar+zstd archive of paths (relative to the directory base_fd, each a file, symlink or
 * directory tree) to out_fd. Names in the archive are prefix + path ("" or "home/x/"). */
int archive_write_paths(int base_fd, char *const *paths, const char *prefix, int out_fd,
                        struct archive_stats *st, struct drv_error *err);
/* Extract an archive (tar, any compression libarchive knows) read from in_fd into the directory
 * dest_fd of the job. Refuses absolute names, `..`, links out of the tree, device nodes; bounded
 * by limits. A bad archive stops with an error naming the entry. */
int archive_extract(const struct jobfs *fs, int dest_fd, int in_fd,
                    const struct archive_limits *lim, struct archive_stats *st,
                    struct drv_error *err);

/* Helpers of the safe extractor, shared with the image layer unpacker. */
/* Normalise an archive entry name into out (strip "./" and trailing '/'): -EPERM for absolute
 * names or "..", -ENOENT for the root itself, -ENAMETOOLONG. */
int jobfs_clean_name(const char *in, char *out, size_t n);
/* Open (creating, as fs->uid) the parent directory of the clean name below dest without following
 * any symlink; *base points at the last component. Returns the fd, -EXDEV when a parent is a
 * symlink or not a directory, or -errno. */
int jobfs_open_parent(const struct jobfs *fs, int dest, const char *name, const char **base);
/* openat2(path, flags | O_CLOEXEC | O_NOFOLLOW) beneath dirfd, following no symlink. */
int jobfs_openat_beneath(int dirfd, const char *path, int flags);

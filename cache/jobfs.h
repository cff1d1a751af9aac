/* jobfs.h: safe access to a job's files and tar+zstd archives of them, for the in-job helper
 * (cache/jobhelper_main.c: as the job, inside it) and the image layer unpacker. Paths resolve
 * below a root fd — strictly (no symlink anywhere: jobfs_open_dir_strict, jobfs_open_regular) in
 * the helper — and no symlink is followed below it. */
#pragma once

#include "lib/drv.h"

#include <sys/stat.h>

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

/* Where archive_write_paths_to sends the archive's bytes, and the caps of what it reads. */
struct archive_sink {
        int (*write)(void *ud, const void *buf, size_t n); /* 0 or -errno */
        void *ud;
        uint64_t max_file;  /* bytes of one file (its size, allocated or not); 0 = none */
        uint64_t max_total; /* file bytes of the whole archive; 0 = none */
        /* a skipped entry (not a file, directory or symlink; a pseudo-file): told, not fatal */
        void (*skipped)(void *ud, const char *rel, const char *why);
};

/* Undo log of an extraction: what it created or replaced, so that a refused archive leaves the
 * tree as it was. */
struct archive_journal;

/* Open (O_DIRECTORY) an inside path, creating missing directories when create. */
int jobfs_open_dir(const struct jobfs *fs, const char *inside, bool create, int *out,
                   struct drv_error *err);
/* jobfs_open_dir following no symlink anywhere in the path (the in-job helper): -ELOOP, with a
 * message, when one is there. */
int jobfs_open_dir_strict(const struct jobfs *fs, const char *inside, bool create, int *out,
                          struct drv_error *err);
/* Open an inside file for reading (no symlink at the last component). */
int jobfs_open_file(const struct jobfs *fs, const char *inside, int *out, struct drv_error *err);
/* Open a regular file below dirfd for reading without blocking or following a symlink: refuses
 * FIFOs, devices, sockets (-EINVAL) and files of /proc, /sys and other pseudo filesystems
 * (-EPERM), each with a message naming rel; *st receives its fstat. */
int jobfs_open_regular(int dirfd, const char *rel, int *out, struct stat *st,
                       struct drv_error *err);
/* Expand `*`, `?`, `[..]` and `**` patterns relative to the directory dirfd (no symlink is
 * followed, not even in the fixed prefix: drv_glob_walk with DRV_GLOB_BENEATH); appends matching
 * relative paths to *out (a pattern without wildcards is kept as is when it exists). */
int jobfs_glob(int dirfd, const char *pattern, char ***out, struct drv_error *err);

/* Write a tar+zstd archive of paths (relative to the directory base_fd, each a file, symlink or
 * directory tree) to out_fd. Names in the archive are prefix + path ("" or "home/x/"). */
int archive_write_paths(int base_fd, char *const *paths, const char *prefix, int out_fd,
                        struct archive_stats *st, struct drv_error *err);
/* archive_write_paths to a sink, bounded by its caps (-EFBIG naming the file). */
int archive_write_paths_to(int base_fd, char *const *paths, const char *prefix,
                           const struct archive_sink *sink, struct archive_stats *st,
                           struct drv_error *err);
/* Extract an archive (tar, any compression libarchive knows) read from in_fd into the directory
 * dest_fd of the job. Refuses absolute names, `..`, links out of the tree, device nodes; bounded
 * by limits. A bad archive stops with an error naming the entry. */
int archive_extract(const struct jobfs *fs, int dest_fd, int in_fd,
                    const struct archive_limits *lim, struct archive_stats *st,
                    struct drv_error *err);
/* archive_extract reading through rd (as read(2)), keeping the undo log in *journal (the caller
 * ends it with archive_journal_end; a journal of archive_journal_new when *journal is set): a
 * failure leaves the log to be rolled back. archive_extract
 * itself rolls back on failure: a refused archive leaves nothing of it behind. */
int archive_extract_from(const struct jobfs *fs, int dest_fd,
                         ssize_t (*rd)(void *ud, void *buf, size_t n), void *ud,
                         const struct archive_limits *lim, struct archive_stats *st,
                         struct archive_journal **journal, struct drv_error *err);
/* A journal for archive_extract_from (*journal set before the call) that also appends each
 * record to log_fd as it is made: archive_journal_replay of that log undoes the extraction even
 * when the extracting process was killed midway. */
struct archive_journal *archive_journal_new(int log_fd);
/* Undo what the log of a killed extraction into dest_fd records (names outside dest_fd are
 * ignored); 0 or -errno. */
int archive_journal_replay(int dest_fd, const char *log, size_t len);
/* Keep (commit: drop the saved copies of replaced entries) or undo (remove what was created, put
 * back what was replaced) the extraction, and free the log. */
void archive_journal_end(struct archive_journal *j, int dest_fd, bool commit);

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

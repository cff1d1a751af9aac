/* unpack.c: unpack one image layer (tar, gzip/zstd/plain) into a directory for overlayfs:
 * image uids/gids/modes kept, OCI whiteouts turned into overlayfs whiteouts (char dev 0/0) and
 * opaque directories (trusted.overlay.opaque=y), escapes refused (`..`, absolute names, parents
 * that are symlinks, hard links out of the tree), device nodes never created. The path-safety
 * helpers are cache/jobfs.c's. */
#include "cache/jobfs.h"
#include "executor/images/images_int.h"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>

#define WH_PREFIX   ".wh."
#define WH_OPAQUE   ".wh..wh..opq"
#define MAX_ENTRIES 5000000ULL

static void free_archive(struct archive **a)
{
        if (*a)
                archive_read_free(*a);
}

/* Remove whatever is at pfd/base (an earlier entry of the same name in this layer). */
static int remove_existing(int pfd, const char *base, bool keep_dir)
{
        struct stat st;
        if (fstatat(pfd, base, &st, AT_SYMLINK_NOFOLLOW) < 0)
                return errno == ENOENT ? 0 : -errno;
        if (S_ISDIR(st.st_mode)) {
                if (keep_dir)
                        return 1;
                return unlinkat(pfd, base, AT_REMOVEDIR) < 0 ? -errno : 0;
        }
        return unlinkat(pfd, base, 0) < 0 ? -errno : 0;
}

/* An entry's owner. Rootless (docs/rootless.md) the user cannot give files away: everything
 * stays the user's, which the sandbox shows as the job user, and set-id bits are dropped. */
static int entry_chown(int dfd, const char *path, uid_t uid, gid_t gid, int flags)
{
        if (drv_rootless())
                return 0;
        return fchownat(dfd, path, uid, gid, flags);
}

static mode_t entry_perm(struct archive_entry *e)
{
        mode_t perm = archive_entry_perm(e);
        return drv_rootless() ? perm & ~(mode_t)(S_ISUID | S_ISGID) : perm;
}

static int write_file(struct archive *a, struct archive_entry *e, int pfd, const char *base,
                      const char *name, struct img_unpack_stats *st, struct drv_error *err)
{
        _cleanup_close_ int fd = -1;
        fd = jobfs_openat_beneath(pfd, base, O_WRONLY | O_CREAT | O_EXCL);
        if (fd < 0)
                return drv_err_errno(err, "layer entry %s", name);
        const void *buf;
        size_t size;
        la_int64_t off;
        int ar;
        while ((ar = archive_read_data_block(a, &buf, &size, &off)) == ARCHIVE_OK) {
                /* the entry's declared size was charged before (entry_charge) */
                if ((uint64_t)off + size > (uint64_t)archive_entry_size(e))
                        return drv_err(err, EFBIG, "layer entry %s: more data than declared", name);
                if (pwrite(fd, buf, size, off) != (ssize_t)size)
                        return drv_err_errno(err, "writing layer entry %s", name);
        }
        if (ar != ARCHIVE_EOF)
                return drv_err(err, EIO, "layer entry %s: %s", name, archive_error_string(a));
        if (ftruncate(fd, archive_entry_size(e)) < 0)
                return drv_err_errno(err, "layer entry %s", name);
        /* owner first: chown clears setuid bits and file capabilities */
        if (entry_chown(fd, "", archive_entry_uid(e), archive_entry_gid(e), AT_EMPTY_PATH) < 0 ||
            fchmod(fd, entry_perm(e)) < 0)
                return drv_err_errno(err, "layer entry %s: owner/mode", name);
        /* capabilities and user xattrs travel with files (never trusted.* nor user.overlay.*:
         * overlayfs' own, a layer must not forge whiteouts, redirects or opaque dirs) */
        const char *xn;
        const void *xv;
        size_t xl;
        archive_entry_xattr_reset(e);
        while (archive_entry_xattr_next(e, &xn, &xv, &xl) == ARCHIVE_OK)
                if (strcmp(xn, "security.capability") == 0 ||
                    (drv_startswith(xn, "user.") && !drv_startswith(xn, "user.overlay.")))
                        if (fsetxattr(fd, xn, xv, xl, 0) < 0)
                                log_debug("layer_xattr_skipped", "entry=%s xattr=%s errno=%d", name,
                                          xn, errno);
        struct timespec ts[2] = {{archive_entry_mtime(e), archive_entry_mtime_nsec(e)},
                                 {archive_entry_mtime(e), archive_entry_mtime_nsec(e)}};
        futimens(fd, ts);
        return 0;
}

static int hard_link(int dest, int pfd, const char *base, const char *name, const char *target,
                     const struct jobfs *fs, struct drv_error *err)
{
        char clean[4096];
        if (jobfs_clean_name(target, clean, sizeof(clean)) < 0)
                return drv_err(err, EPERM,
                               "layer entry %s refused: hard link to %s leaves the tree", name,
                               target);
        const char *tb;
        _cleanup_close_ int tfd = jobfs_open_parent(fs, dest, clean, &tb);
        struct stat ts;
        if (tfd < 0 || fstatat(tfd, tb, &ts, AT_SYMLINK_NOFOLLOW) < 0 || S_ISDIR(ts.st_mode))
                return drv_err(err, EPERM, "layer entry %s refused: bad hard link to %s", name,
                               target);
        int r = remove_existing(pfd, base, false);
        if (r < 0 || linkat(tfd, tb, pfd, base, 0) < 0)
                return drv_err_errno(err, "layer entry %s: hard link to %s", name, target);
        return 0;
}

static int unpack_entry(struct archive *a, struct archive_entry *e, int dest, const char *name,
                        const struct jobfs *fs, struct img_unpack_stats *st, struct drv_error *err)
{
        const char *base;
        _cleanup_close_ int pfd = jobfs_open_parent(fs, dest, name, &base);
        if (pfd == -EXDEV)
                return drv_err(err, EXDEV,
                               "layer entry %s refused: a parent is a symlink or not a directory",
                               name);
        if (pfd < 0)
                return drv_err(err, -pfd, "layer entry %s: %s", name, strerror(-pfd));
        /* whiteouts */
        if (strcmp(base, WH_OPAQUE) == 0) {
                st->whiteouts++;
                /* trusted.* for overlays mounted by real root, user.* for overlays mounted
                 * inside a user namespace with `userxattr` (the job sandbox) */
                if (fsetxattr(pfd, "trusted.overlay.opaque", "y", 1, 0) < 0 ||
                    fsetxattr(pfd, "user.overlay.opaque", "y", 1, 0) < 0)
                        return drv_err_errno(err, "layer entry %s: opaque directory", name);
                return 0;
        }
        if (drv_startswith(base, WH_PREFIX)) {
                const char *victim = base + strlen(WH_PREFIX);
                if (drv_startswith(base, ".wh..wh.") || !*victim || strcmp(victim, ".") == 0 ||
                    strcmp(victim, "..") == 0) {
                        st->skipped++; /* aufs metadata (.wh..wh.plnk ...) */
                        return 0;
                }
                st->whiteouts++;
                int r = remove_existing(pfd, victim, false);
                if (r < 0 || mknodat(pfd, victim, S_IFCHR | 0, makedev(0, 0)) < 0)
                        return drv_err_errno(err, "layer entry %s: whiteout", name);
                return 0;
        }
        const char *hl = archive_entry_hardlink(e);
        if (hl)
                return hard_link(dest, pfd, base, name, hl, fs, err);
        uid_t uid = (uid_t)archive_entry_uid(e);
        gid_t gid = (gid_t)archive_entry_gid(e);
        mode_t perm = entry_perm(e);
        int r;
        switch (archive_entry_filetype(e)) {
        case AE_IFDIR: {
                r = remove_existing(pfd, base, true);
                if (r < 0 || (r == 0 && mkdirat(pfd, base, 0700) < 0))
                        return drv_err_errno(err, "layer entry %s", name);
                _cleanup_close_ int dfd = jobfs_openat_beneath(pfd, base, O_DIRECTORY | O_RDONLY);
                if (dfd < 0 || entry_chown(dfd, "", uid, gid, AT_EMPTY_PATH) < 0 ||
                    fchmod(dfd, perm) < 0)
                        return drv_err_errno(err, "layer entry %s: owner/mode", name);
                return 0;
        }
        case AE_IFREG:
                if ((r = remove_existing(pfd, base, false)) < 0)
                        return drv_err(err, -r, "layer entry %s: %s", name, strerror(-r));
                return write_file(a, e, pfd, base, name, st, err);
        case AE_IFLNK: {
                /* NULL: no link name in the header, or one libarchive cannot convert */
                const char *target = archive_entry_symlink(e);
                if (!target || !*target)
                        return drv_err(err, EPERM,
                                       "layer entry %s refused: symlink without a target", name);
                if ((r = remove_existing(pfd, base, false)) < 0 ||
                    symlinkat(target, pfd, base) < 0 ||
                    entry_chown(pfd, base, uid, gid, AT_SYMLINK_NOFOLLOW) < 0)
                        return drv_err_errno(err, "layer entry %s: symlink", name);
                return 0;
        }
        case AE_IFIFO:
                if ((r = remove_existing(pfd, base, false)) < 0 ||
                    mknodat(pfd, base, S_IFIFO | perm, 0) < 0 ||
                    entry_chown(pfd, base, uid, gid, AT_SYMLINK_NOFOLLOW) < 0)
                        return drv_err_errno(err, "layer entry %s: fifo", name);
                return 0;
        default:
                /* devices and sockets are never created from an image */
                st->skipped++;
                log_warn("layer_entry_refused", "entry=%s type=0%o reason=device", name,
                         (unsigned)archive_entry_filetype(e));
                return 0;
        }
}

/* What an entry costs against the bound: its declared size for a regular file, and at least
 * one block (IMG_ENTRY_MIN_BYTES) for every entry: inodes count, not only bytes. */
static uint64_t entry_charge(struct archive_entry *e)
{
        uint64_t size = archive_entry_filetype(e) == AE_IFREG && !archive_entry_hardlink(e) &&
                                archive_entry_size(e) > 0
                            ? (uint64_t)archive_entry_size(e)
                            : 0;
        size = (size + IMG_ENTRY_MIN_BYTES - 1) / IMG_ENTRY_MIN_BYTES * IMG_ENTRY_MIN_BYTES;
        return size ? size : IMG_ENTRY_MIN_BYTES;
}

int img_unpack_layer(int in_fd, int dest_fd, uint64_t max_bytes, struct img_unpack_stats *st,
                     struct drv_error *err)
{
        struct img_unpack_stats dummy;
        if (!st)
                st = &dummy;
        memset(st, 0, sizeof(*st));
        st->max_bytes = max_bytes;
        const struct jobfs fs = {.root_fd = dest_fd, .uid = geteuid(), .gid = getegid()};
        _cleanup_(free_archive) struct archive *a = archive_read_new();
        if (!a)
                return drv_err(err, ENOMEM, "out of memory");
        archive_read_support_filter_gzip(a);
        archive_read_support_filter_zstd(a);
        archive_read_support_filter_none(a);
        archive_read_support_format_tar(a);
        archive_read_support_format_gnutar(a);
        if (archive_read_open_fd(a, in_fd, 1 << 16) != ARCHIVE_OK)
                return drv_err(err, EINVAL, "layer is not a tar archive: %s",
                               archive_error_string(a));
        struct archive_entry *e;
        for (;;) {
                int ar = archive_read_next_header(a, &e);
                if (ar == ARCHIVE_EOF)
                        return 0;
                if (ar != ARCHIVE_OK && ar != ARCHIVE_WARN)
                        return drv_err(err, EINVAL, "corrupt layer archive: %s",
                                       archive_error_string(a));
                if (++st->entries > MAX_ENTRIES)
                        return drv_err(err, EFBIG, "layer has more than %llu entries", MAX_ENTRIES);
                st->bytes += entry_charge(e);
                if (st->max_bytes && st->bytes > st->max_bytes)
                        return drv_err(err, EFBIG,
                                       "the layer unpacks to more than %llu bytes (its bound; "
                                       "every entry counts at least %u bytes) at entry %llu",
                                       (unsigned long long)st->max_bytes, IMG_ENTRY_MIN_BYTES,
                                       (unsigned long long)st->entries);
                char name[4096];
                const char *raw = archive_entry_pathname(e);
                int c = raw ? jobfs_clean_name(raw, name, sizeof(name)) : -EINVAL;
                if (c == -ENOENT)
                        continue; /* "./" itself */
                if (c < 0)
                        return drv_err(err, EPERM, "layer entry '%s' refused: %s", raw ? raw : "",
                                       c == -EPERM ? "absolute or .. path" : "bad name");
                int r = unpack_entry(a, e, dest_fd, name, &fs, st, err);
                if (r < 0)
                        return r;
        }
}

/* runtime_docker_files.c: files in and out of the docker runtime's primary container through the
 * archive endpoints — step scripts, and a local mirror of the job's home for built-in steps. */
#include "executor/docker/runtime_docker_int.h"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <libgen.h>
#include <sys/mman.h>

static char *dir_of(const char *path)
{
        _cleanup_free_ char *c = strdup(path);
        return c ? strdup(dirname(c)) : NULL;
}

static char *base_of(const char *path)
{
        _cleanup_free_ char *c = strdup(path);
        return c ? strdup(basename(c)) : NULL;
}

int rtdocker_put_entries(struct docker *d, const char *container, const char *dir,
                         const struct rtdocker_tar_entry *en, size_t n, struct drv_error *err)
{
        _cleanup_close_ int fd = memfd_create("file-tar", MFD_CLOEXEC);
        if (fd < 0)
                return drv_err_errno(err, "memfd_create");
        struct archive *a = archive_write_new();
        struct archive_entry *ae = archive_entry_new();
        if (!a || !ae) {
                archive_write_free(a);
                archive_entry_free(ae);
                return drv_err(err, ENOMEM, "out of memory");
        }
        archive_write_set_format_pax_restricted(a);
        int ok = archive_write_open_fd(a, fd) == ARCHIVE_OK;
        for (size_t i = 0; ok && i < n; i++) {
                const struct rtdocker_tar_entry *e = &en[i];
                archive_entry_clear(ae);
                archive_entry_set_pathname(ae, e->name);
                archive_entry_set_size(ae, e->data ? (la_int64_t)e->len : 0);
                archive_entry_set_filetype(ae, e->data ? AE_IFREG : AE_IFDIR);
                archive_entry_set_perm(ae, e->mode & 07777);
                archive_entry_set_uid(ae, e->uid);
                archive_entry_set_gid(ae, e->gid);
                ok = archive_write_header(a, ae) == ARCHIVE_OK;
                ok = ok && (!e->data || e->len == 0 ||
                            archive_write_data(a, e->data, e->len) == (la_ssize_t)e->len);
        }
        ok = ok && archive_write_close(a) == ARCHIVE_OK;
        archive_entry_free(ae);
        archive_write_free(a);
        if (!ok)
                return drv_err(err, EIO, "cannot pack %s for the container", n ? en[0].name : "");
        lseek(fd, 0, SEEK_SET);
        return docker_archive_put(d, container, dir, fd, err);
}

static int put_file(struct rtdocker *rt, const char *inside_path, const void *data, size_t n,
                    mode_t mode, struct drv_error *err)
{
        _cleanup_free_ char *dir = dir_of(inside_path), *name = base_of(inside_path);
        if (!dir || !name)
                return drv_err(err, ENOMEM, "out of memory");
        /* data is never NULL for a file, even an empty one */
        struct rtdocker_tar_entry en = {name, data ? data : "", n, mode, rt->uid, rt->gid};
        int r = rtdocker_put_entries(rt->d, rt->primary, dir, &en, 1, err);
        return r < 0 ? drv_err_prefix(err, "writing %s in the job", inside_path) : 0;
}

void rtdocker_drop_pending(struct rtdocker *rt)
{
        for (size_t i = 0; i < rt->n_pending; i++) {
                free(rt->pending[i].path);
                free(rt->pending[i].data);
        }
        rt->n_pending = 0;
}

/* Small text files (step scripts, BASH_ENV) wait for the next exec, which creates them: one
 * round trip less each. The wrapper passes them as arguments: no NUL bytes, no quote in the
 * path, and well under the kernel's limit for one argument. Private files (mode 0600: keys)
 * never travel in an exec's argv, which the engine keeps and shows. */
static bool can_defer(struct rtdocker *rt, const char *path, const void *data, size_t n,
                      mode_t mode)
{
        return (mode & 07777) != 0600 && rt->n_pending < DRV_ARRAY_SIZE(rt->pending) && n < 65536 &&
               !memchr(data, 0, n) && !strchr(path, '\'') && path[0] == '/';
}

int rtdocker_flush_pending(struct rtdocker *rt, struct drv_error *err)
{
        int r = 0;
        for (size_t i = 0; i < rt->n_pending && r == 0; i++) {
                struct rtdocker_pending *pf = &rt->pending[i];
                r = put_file(rt, pf->path, pf->data, strlen(pf->data), pf->mode, err);
        }
        rtdocker_drop_pending(rt);
        return r;
}

int rtdocker_write_file(struct rtdocker *rt, const char *inside_path, const void *data, size_t n,
                        mode_t mode, struct drv_error *err)
{
        if (rt->n_pending > 0 || can_defer(rt, inside_path, data, n, mode)) {
                /* replace an earlier pending write of the same path */
                size_t i = 0;
                while (i < rt->n_pending && strcmp(rt->pending[i].path, inside_path) != 0)
                        i++;
                if ((i < rt->n_pending && (mode & 07777) != 0600) ||
                    can_defer(rt, inside_path, data, n, mode)) {
                        char *p = strdup(inside_path), *d = strndup(data, n);
                        if (!p || !d) {
                                free(p);
                                free(d);
                                return drv_err(err, ENOMEM, "out of memory");
                        }
                        if (i == rt->n_pending)
                                rt->n_pending++;
                        else
                                free(rt->pending[i].path), free(rt->pending[i].data);
                        rt->pending[i] = (struct rtdocker_pending){p, d, mode};
                        return 0;
                }
                int r = rtdocker_flush_pending(rt, err);
                if (r < 0)
                        return r;
        }
        return put_file(rt, inside_path, data, n, mode, err);
}

void rtdocker_mirror_free(struct rtdocker *rt)
{
        drv_closep(&rt->mirror_fd);
        if (rt->mirror) {
                struct drv_error e = {0};
                (void)drv_rm_rf(rt->mirror, &e);
                free(rt->mirror);
                rt->mirror = NULL;
        }
}

/* The job's home copied to the agent for built-in steps is the job's to choose: bounded (its
 * tar stream, the sum of its files' sizes, its entries; DROVER_DOCKER_HOME_MAX overrides the
 * byte bound), written to disk as it arrives (never held in memory), and only regular files,
 * directories and symlinks are made, owned by the supervisor, without setuid/setgid/sticky bits
 * (issue 20). A symlink is made as a symlink: its target is text, never resolved on the agent
 * (caches keep node_modules/.bin); later entries are not written through it (SECURE_SYMLINKS),
 * and the in-job helper that reads the copy resolves every path inside it. */
#define HOME_MAX_DEFAULT (2ULL << 30)
#define HOME_MAX_ENTRIES 200000

static uint64_t home_max(void)
{
        const char *s = getenv("DROVER_DOCKER_HOME_MAX");
        uint64_t v;
        return s && *s && drv_parse_size(s, &v) == 0 && v ? v : HOME_MAX_DEFAULT;
}

/* Is this entry one to make, and is it within the bounds? 1 make, 0 skip, <0 error. */
static int entry_ok(struct archive_entry *en, const char *p, uint64_t *bytes, size_t *n,
                    uint64_t max, struct drv_error *err)
{
        if (!p || p[0] == '/' || strstr(p, ".."))
                return drv_err(err, EPERM, "the container's archive has a bad path: %s",
                               p ? p : "(none)");
        if (++*n > HOME_MAX_ENTRIES)
                return drv_err(err, EFBIG, "the job's home has more than %d entries",
                               HOME_MAX_ENTRIES);
        mode_t t = archive_entry_filetype(en);
        if (archive_entry_hardlink(en) || (t != AE_IFREG && t != AE_IFDIR && t != AE_IFLNK))
                return 0; /* hard links, devices, fifos, sockets: not copied */
        la_int64_t size = archive_entry_size(en);
        *bytes += size > 0 ? (uint64_t)size : 0;
        if (*bytes > max)
                return drv_err(err, EFBIG,
                               "the job's home holds more than %llu bytes (at %s): too large to "
                               "copy for a built-in step (DROVER_DOCKER_HOME_MAX)",
                               (unsigned long long)max, p);
        archive_entry_set_perm(en, archive_entry_perm(en) & 0777);
        return 1;
}

/* Extract the tar in fd below dest (absolute): regular files, directories and symlinks, modes
 * without special bits, owned by us, within the bounds, refusing escapes. */
static int extract_to(int fd, const char *dest, uint64_t max, struct drv_error *err)
{
        struct archive *a = archive_read_new();
        struct archive *w = archive_write_disk_new();
        if (!a || !w) {
                archive_read_free(a);
                archive_write_free(w);
                return drv_err(err, ENOMEM, "out of memory");
        }
        archive_read_support_format_tar(a);
        archive_write_disk_set_options(w, ARCHIVE_EXTRACT_PERM | ARCHIVE_EXTRACT_TIME |
                                              ARCHIVE_EXTRACT_SECURE_NODOTDOT |
                                              ARCHIVE_EXTRACT_SECURE_SYMLINKS);
        int r = 0;
        if (archive_read_open_fd(a, fd, 65536) != ARCHIVE_OK)
                r = drv_err(err, EIO, "reading the container's archive: %s",
                            archive_error_string(a));
        struct archive_entry *en;
        uint64_t bytes = 0;
        size_t n = 0, skipped = 0;
        while (r == 0 && archive_read_next_header(a, &en) == ARCHIVE_OK) {
                const char *p = archive_entry_pathname(en);
                int ok = entry_ok(en, p, &bytes, &n, max, err);
                if (ok <= 0) {
                        r = ok;
                        skipped += ok == 0;
                        continue;
                }
                _cleanup_free_ char *full = drv_path_join(dest, p);
                archive_entry_set_pathname(en, full);
                if (archive_write_header(w, en) != ARCHIVE_OK) {
                        r = drv_err(err, EIO, "extracting %s: %s", p, archive_error_string(w));
                        break;
                }
                const void *buf;
                size_t len;
                la_int64_t off;
                while (archive_read_data_block(a, &buf, &len, &off) == ARCHIVE_OK)
                        if (archive_write_data_block(w, buf, len, off) != ARCHIVE_OK)
                                break;
                archive_write_finish_entry(w);
        }
        if (skipped)
                log_info("docker_mirror_skipped", "entries=%zu reason=not_a_file_or_directory",
                         skipped);
        archive_read_free(a);
        archive_write_free(w);
        return r;
}

/* A file for a tar stream in the (private, 0700) mirror dir, unlinked at once: on disk, not in
 * memory, and gone with its fd. */
static int mirror_tmpfile(struct rtdocker *rt, struct drv_error *err)
{
        _cleanup_free_ char *p = drv_path_join(rt->mirror, ".home.tar");
        if (!p)
                return drv_err(err, ENOMEM, "out of memory");
        int fd = open(p, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0)
                return drv_err_errno(err, "create %s", p);
        (void)unlink(p);
        return fd;
}

int rtdocker_root_fd(struct rtdocker *rt)
{
        struct drv_error e = {0};
        _cleanup_close_ int fd = -1;
        if (rtdocker_flush_pending(rt, &e) < 0) {
                log_error("docker_mirror_failed", "home=%s error=\"%s\"", rt->home, e.message);
                return -1;
        }
        if (!rt->mirror) {
                char tmpl[] = "/tmp/drover-docker-XXXXXX"; /* 0700 */
                if (!mkdtemp(tmpl))
                        return -1;
                rt->mirror = strdup(tmpl);
                if (!rt->mirror)
                        return -1;
        }
        drv_closep(&rt->mirror_fd);
        _cleanup_free_ char *parent = dir_of(rt->home);
        _cleanup_free_ char *local_parent = parent ? drv_path_join(rt->mirror, parent) : NULL;
        _cleanup_free_ char *local_home = drv_path_join(rt->mirror, rt->home);
        if (!local_parent || !local_home)
                return -1;
        (void)drv_rm_rf(local_home, &e);
        if (drv_mkdir_p(local_parent, 0755, &e) < 0)
                goto fail;
        uint64_t max = home_max();
        fd = mirror_tmpfile(rt, &e);
        /* the tar stream's headers and padding come on top of the files' bytes */
        if (fd < 0 ||
            docker_archive_get(rt->d, rt->primary, rt->home, fd, max + (max >> 3), &e) < 0)
                goto fail;
        lseek(fd, 0, SEEK_SET);
        if (extract_to(fd, local_parent, max, &e) < 0)
                goto fail;
        rt->mirror_fd = open(rt->mirror, O_PATH | O_DIRECTORY | O_CLOEXEC);
        rt->mirror_out = rt->mirror_fd >= 0;
        return rt->mirror_fd;
fail:
        log_error("docker_mirror_failed", "home=%s error=\"%s\"", rt->home, e.message);
        return -1;
}

/* Pack the mirror's copy of home (paths relative to its parent) into fd. */
static int pack_home(struct rtdocker *rt, const char *local_home, int fd, struct drv_error *err)
{
        struct archive *disk = archive_read_disk_new();
        struct archive *w = archive_write_new();
        if (!disk || !w) {
                archive_read_free(disk);
                archive_write_free(w);
                return drv_err(err, ENOMEM, "out of memory");
        }
        archive_read_disk_set_symlink_physical(disk);
        archive_read_disk_set_standard_lookup(disk);
        archive_write_set_format_pax_restricted(w);
        int r = 0;
        if (archive_write_open_fd(w, fd) != ARCHIVE_OK ||
            archive_read_disk_open(disk, local_home) != ARCHIVE_OK)
                r = drv_err(err, EIO, "packing %s: %s", local_home, archive_error_string(disk));
        _cleanup_free_ char *parent_local = dir_of(local_home);
        size_t skip = parent_local ? strlen(parent_local) + 1 : 0;
        struct archive_entry *en = archive_entry_new();
        while (r == 0 && en && archive_read_next_header2(disk, en) == ARCHIVE_OK) {
                archive_read_disk_descend(disk);
                const char *p = archive_entry_pathname(en);
                if (!p || strlen(p) < skip)
                        continue;
                _cleanup_free_ char *rel = strdup(p + skip);
                archive_entry_set_pathname(en, rel);
                archive_entry_set_uname(en, NULL);
                archive_entry_set_gname(en, NULL);
                /* the copy is ours: back in the container it is the job user's */
                archive_entry_set_uid(en, rt->uid);
                archive_entry_set_gid(en, rt->gid);
                if (archive_write_header(w, en) != ARCHIVE_OK) {
                        r = drv_err(err, EIO, "packing %s: %s", p, archive_error_string(w));
                        break;
                }
                if (archive_entry_filetype(en) == AE_IFREG && archive_entry_size(en) > 0) {
                        _cleanup_close_ int in =
                            open(archive_entry_sourcepath(en), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
                        char buf[65536];
                        ssize_t n;
                        while (in >= 0 && (n = DRV_RETRY(read(in, buf, sizeof(buf)))) > 0)
                                archive_write_data(w, buf, (size_t)n);
                }
        }
        archive_entry_free(en);
        archive_write_close(w);
        archive_write_free(w);
        archive_read_free(disk);
        return r;
}

int rtdocker_sync_back(struct rtdocker *rt, struct drv_error *err)
{
        if (!rt->mirror_out)
                return 0;
        rt->mirror_out = false;
        drv_closep(&rt->mirror_fd);
        _cleanup_free_ char *parent = dir_of(rt->home);
        _cleanup_free_ char *local_home = drv_path_join(rt->mirror, rt->home);
        if (!parent || !local_home)
                return drv_err(err, ENOMEM, "out of memory");
        _cleanup_close_ int fd = mirror_tmpfile(rt, err);
        if (fd < 0)
                return fd;
        int r = pack_home(rt, local_home, fd, err);
        if (r < 0)
                return r;
        lseek(fd, 0, SEEK_SET);
        r = docker_archive_put(rt->d, rt->primary, parent, fd, err);
        if (r < 0)
                return drv_err_prefix(err, "copying %s back into the container", rt->home);
        return 0;
}

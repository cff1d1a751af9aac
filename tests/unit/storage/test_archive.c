/* test_archive.c: hostile-archive guards of archive_extract, each case on its own: setuid bits,
 * size and entry-count limits, fifos and devices, `..`, absolute names, escaping links; and a
 * round trip through archive_write_paths keeping modes, mtimes and symlinks; entries whose
 * names libarchive returns as NULL (no link name, no path, a pax name it cannot convert). */
#include "cache/jobfs.h"
#include "rawtar.h"
#include "testlib.h"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>

static char base[64];

struct ent {
        const char *name;
        mode_t type; /* AE_IFREG ... */
        mode_t perm;
        const char *data;
        const char *link;
        bool hard;
        int64_t size; /* declared size (data length when 0) */
};

static int make_tar(const struct ent *es, size_t n)
{
        int fd = memfd_create("t", MFD_CLOEXEC);
        struct archive *a = archive_write_new();
        archive_write_set_format_pax_restricted(a);
        archive_write_set_bytes_in_last_block(a, 1);
        archive_write_open_fd(a, fd);
        for (size_t i = 0; i < n; i++) {
                struct archive_entry *e = archive_entry_new();
                archive_entry_set_pathname(e, es[i].name);
                archive_entry_set_filetype(e, es[i].type);
                archive_entry_set_perm(e, es[i].perm ? es[i].perm : 0644);
                archive_entry_set_mtime(e, 1600000000, 0);
                size_t dl = es[i].data ? strlen(es[i].data) : 0;
                archive_entry_set_size(e, es[i].size ? es[i].size : (int64_t)dl);
                if (es[i].link && es[i].hard)
                        archive_entry_set_hardlink(e, es[i].link);
                else if (es[i].link)
                        archive_entry_set_symlink(e, es[i].link);
                archive_write_header(a, e);
                if (dl)
                        archive_write_data(a, es[i].data, dl);
                archive_entry_free(e);
        }
        archive_write_close(a);
        archive_write_free(a);
        lseek(fd, 0, SEEK_SET);
        return fd;
}

static int extract_fd(int in, const struct archive_limits *lim, struct archive_stats *st,
                      struct drv_error *e);

/* Extract into BASE/root/w; returns archive_extract's result. */
static int extract(const struct ent *es, size_t n, const struct archive_limits *lim,
                   struct archive_stats *st, struct drv_error *e)
{
        int in = make_tar(es, n);
        int r = extract_fd(in, lim, st, e);
        close(in);
        return r;
}

/* Extract the archive in into BASE/root/w (made anew). */
static int extract_fd(int in, const struct archive_limits *lim, struct archive_stats *st,
                      struct drv_error *e)
{
        char p[128];
        drv_rm_rf(base, e);
        snprintf(p, sizeof(p), "%s/root/w", base);
        drv_mkdir_p(p, 0755, e);
        snprintf(p, sizeof(p), "%s/outside", base);
        drv_mkdir_p(p, 0755, e);
        snprintf(p, sizeof(p), "%s/root", base);
        int rfd = open(p, O_PATH | O_DIRECTORY | O_CLOEXEC);
        struct jobfs fs = {.root_fd = rfd, .uid = getuid(), .gid = getgid()};
        int dfd = -1;
        jobfs_open_dir(&fs, "/w", false, &dfd, e);
        memset(st, 0, sizeof(*st));
        drv_err_clear(e);
        int r = archive_extract(&fs, dfd, in, lim, st, e);
        close(dfd);
        close(rfd);
        return r;
}

static bool exists(const char *rel)
{
        char p[256];
        struct stat st;
        snprintf(p, sizeof(p), "%s/%s", base, rel);
        return lstat(p, &st) == 0;
}

static mode_t mode_of(const char *rel)
{
        char p[256];
        struct stat st;
        snprintf(p, sizeof(p), "%s/%s", base, rel);
        return lstat(p, &st) == 0 ? st.st_mode : 0;
}

TEST(setuid_and_setgid_bits_are_dropped)
{
        struct ent es[] = {{"suid", AE_IFREG, 06755, "x", NULL, false, 0}};
        struct archive_stats st;
        struct drv_error e = {0};
        CHECK(extract(es, 1, NULL, &st, &e) == 0);
        CHECK_INTEQ(mode_of("root/w/suid") & 07777, 0755);
}

TEST(entry_count_limit)
{
        struct ent es[] = {{"a", AE_IFREG, 0, "1", NULL, false, 0},
                           {"b", AE_IFREG, 0, "2", NULL, false, 0},
                           {"c", AE_IFREG, 0, "3", NULL, false, 0}};
        struct archive_limits lim = {.max_entries = 2};
        struct archive_stats st;
        struct drv_error e = {0};
        CHECK(extract(es, 3, &lim, &st, &e) < 0);
        printf("# %s\n", e.message);
        CHECK(!exists("root/w/c"));
}

TEST(total_size_limit)
{
        struct ent es[] = {{"big", AE_IFREG, 0, "0123456789abcdef0123456789", NULL, false, 0}};
        struct archive_limits lim = {.max_bytes = 10};
        struct archive_stats st;
        struct drv_error e = {0};
        CHECK(extract(es, 1, &lim, &st, &e) < 0);
        printf("# %s\n", e.message);
}

TEST(fifos_and_devices_are_never_created)
{
        struct ent es[] = {{"fifo", AE_IFIFO, 0, NULL, NULL, false, 0},
                           {"dev", AE_IFCHR, 0, NULL, NULL, false, 0},
                           {"blk", AE_IFBLK, 0, NULL, NULL, false, 0},
                           {"ok", AE_IFREG, 0, "y", NULL, false, 0}};
        struct archive_stats st;
        struct drv_error e = {0};
        CHECK(extract(es, 4, NULL, &st, &e) == 0);
        CHECK(!exists("root/w/fifo") && !exists("root/w/dev") && !exists("root/w/blk"));
        CHECK(exists("root/w/ok"));
        CHECK_INTEQ(st.skipped, 3);
}

TEST(dotdot_is_refused)
{
        struct ent es[] = {{"../../outside/x", AE_IFREG, 0, "x", NULL, false, 0}};
        struct archive_stats st;
        struct drv_error e = {0};
        CHECK(extract(es, 1, NULL, &st, &e) < 0);
        CHECK(!exists("outside/x"));
}

TEST(absolute_name_is_refused)
{
        char abs[128];
        snprintf(abs, sizeof(abs), "%s/outside/abs", base);
        struct ent es[] = {{abs, AE_IFREG, 0, "x", NULL, false, 0}};
        struct archive_stats st;
        struct drv_error e = {0};
        CHECK(extract(es, 1, NULL, &st, &e) < 0);
        CHECK(!exists("outside/abs"));
}

TEST(writing_through_an_escaping_symlink_is_refused)
{
        char abs[128];
        snprintf(abs, sizeof(abs), "%s/outside", base);
        struct ent es[] = {{"l", AE_IFLNK, 0777, NULL, abs, false, 0},
                           {"l/x", AE_IFREG, 0, "x", NULL, false, 0},
                           {"r", AE_IFLNK, 0777, NULL, "../../outside", false, 0},
                           {"r/y", AE_IFREG, 0, "y", NULL, false, 0}};
        struct archive_stats st;
        struct drv_error e = {0};
        extract(es, 4, NULL, &st, &e);
        CHECK(!exists("outside/x") && !exists("outside/y"));
}

TEST(hardlink_out_of_the_tree_is_refused)
{
        struct ent es[] = {{"h", AE_IFREG, 0, NULL, "../../outside/secret", true, 0}};
        struct archive_stats st;
        struct drv_error e = {0};
        char p[128];
        CHECK(extract(es, 1, NULL, &st, &e) < 0);
        snprintf(p, sizeof(p), "%s/outside/secret", base);
        CHECK(!exists("root/w/h"));
        (void)p;
}

/* Extract hand-made headers (rawtar.h); prints the result for the log. */
static int extract_raw(const struct rawtar *es, size_t n, struct archive_stats *st,
                       struct drv_error *e)
{
        int in = rawtar_fd(es, n);
        int r = extract_fd(in, NULL, st, e);
        close(in);
        printf("# r=%d %s\n", r, e->message);
        return r;
}

/* The fuzzer's find (issue 15): a symlink header with an empty link name, for which
 * archive_entry_symlink() returns NULL; symlinkat(NULL, ...) was undefined behaviour. */
TEST(symlink_without_a_target_is_refused)
{
        const struct rawtar es[] = {{"s", '2', NULL, NULL}};
        struct archive_stats st;
        struct drv_error e = {0};
        CHECK(extract_raw(es, 1, &st, &e) == -EPERM);
        CHECK(strstr(e.message, "symlink without a target") != NULL);
        CHECK(!exists("root/w/s"));
}

/* A pax linkpath that is not UTF-8: libarchive warns and may hand back no link name at all */
TEST(symlink_with_an_unconvertible_pax_target_never_crashes)
{
        const struct rawtar es[] = {{"PaxHeader/l", 'x', NULL, "16 linkpath=t\xff\xfe\n"},
                                    {"l", '2', "t", NULL}};
        struct archive_stats st;
        struct drv_error e = {0};
        int r = extract_raw(es, 2, &st, &e);
        CHECK(r == 0 || e.message[0]);
        CHECK(r < 0 || (mode_of("root/w/l") & S_IFMT) == S_IFLNK);
}

/* A hard link header with an empty link name: refused or a plain empty file, never a link out */
TEST(hardlink_without_a_target_never_links)
{
        const struct rawtar es[] = {{"h", '1', NULL, NULL}};
        struct archive_stats st;
        struct drv_error e = {0};
        int r = extract_raw(es, 1, &st, &e);
        CHECK(r == 0 || e.message[0]);
        CHECK(!exists("root/w/h") || (mode_of("root/w/h") & S_IFMT) == S_IFREG);
}

/* No path at all: refused (or skipped as "."), nothing written */
TEST(entry_without_a_path_is_refused)
{
        const struct rawtar es[] = {{"", '0', NULL, "data"}};
        struct archive_stats st;
        struct drv_error e = {0};
        int r = extract_raw(es, 1, &st, &e);
        CHECK(r == 0 || e.message[0]);
        CHECK(st.files == 0);
}

/* An fd holding the first n bytes of src (all: n = -1). */
static int copy_prefix(int src, off_t n)
{
        int fd = memfd_create("c", MFD_CLOEXEC);
        char buf[65536];
        off_t done = 0;
        lseek(src, 0, SEEK_SET);
        for (ssize_t k; (n < 0 || done < n) && (k = read(src, buf, sizeof(buf))) > 0; done += k)
                drv_write_all(fd, buf, n < 0 || done + k <= n ? (size_t)k : (size_t)(n - done));
        lseek(fd, 0, SEEK_SET);
        return fd;
}

TEST(zstd_streams_decompress_on_their_thread_and_truncation_is_an_error)
{
        struct drv_error e = {0};
        struct archive_stats st = {0};
        char p[128];
        snprintf(p, sizeof(p), "%s-src/d", base);
        CHECK(drv_mkdir_p(p, 0755, &e) == 0);
        char big[300000];
        for (size_t i = 0; i < sizeof(big); i++)
                big[i] = (char)('a' + (i * 7919 % 26));
        snprintf(p, sizeof(p), "%s-src/d/big", base);
        CHECK(drv_write_file_atomic(p, big, sizeof(big), 0644, &e) == 0);
        snprintf(p, sizeof(p), "%s-src", base);
        int src = open(p, O_DIRECTORY | O_RDONLY | O_CLOEXEC);
        int ar = memfd_create("a", MFD_CLOEXEC);
        char *paths[] = {"d", NULL};
        CHECK(archive_write_paths(src, paths, "", ar, &st, &e) == 0);
        off_t size = lseek(ar, 0, SEEK_END);
        unsigned char magic[4] = {0};
        CHECK(pread(ar, magic, 4, 0) == 4 && magic[0] == 0x28 && magic[3] == 0xfd); /* zstd */
        int whole = copy_prefix(ar, -1);
        CHECK(extract_fd(whole, NULL, &st, &e) == 0 && st.bytes == sizeof(big));
        CHECK(mode_of("root/w/d/big") != 0);
        close(whole);
        int cut = copy_prefix(ar, size / 2);
        CHECK(extract_fd(cut, NULL, &st, &e) < 0 && e.message[0]);
        close(cut);
        int junk = memfd_create("j", MFD_CLOEXEC); /* shorter than any magic: no hang */
        CHECK(drv_write_all(junk, "\x28\xb4\n", 3) == 0 && lseek(junk, 0, SEEK_SET) == 0);
        CHECK(extract_fd(junk, NULL, &st, &e) < 0);
        close(junk);
        close(ar);
        close(src);
        snprintf(p, sizeof(p), "%s-src", base);
        drv_rm_rf(p, &e);
}

int main(void)
{
        snprintf(base, sizeof(base), "/tmp/drover-unit-archive-%d", (int)getpid());
        RUN(setuid_and_setgid_bits_are_dropped);
        RUN(entry_count_limit);
        RUN(total_size_limit);
        RUN(fifos_and_devices_are_never_created);
        RUN(dotdot_is_refused);
        RUN(absolute_name_is_refused);
        RUN(writing_through_an_escaping_symlink_is_refused);
        RUN(hardlink_out_of_the_tree_is_refused);
        RUN(zstd_streams_decompress_on_their_thread_and_truncation_is_an_error);
        RUN(symlink_without_a_target_is_refused);
        RUN(symlink_with_an_unconvertible_pax_target_never_crashes);
        RUN(hardlink_without_a_target_never_links);
        RUN(entry_without_a_path_is_refused);
        struct drv_error e = {0};
        drv_rm_rf(base, &e);
        TEST_DONE();
}

/* fuzz_archive: extraction of any (hostile) archive into a job root. Never crashes, stays within
 * its limits, and never writes outside the target: a sibling folder must stay empty. */
#include "cache/jobfs.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/mman.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char base[64];

static bool empty_dir(const char *p)
{
        DIR *d = opendir(p);
        struct dirent *de;
        bool empty = true;
        if (!d)
                return false;
        while ((de = readdir(d)))
                if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
                        empty = false;
        closedir(d);
        return empty;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct drv_error e = {0};
        char root[96], outside[96], dest[128];
        if (!base[0]) {
                snprintf(base, sizeof(base), "/tmp/drover-fuzz-ar-%d", (int)getpid());
                drv_log_set_level(DRV_LOG_ERROR);
        }
        snprintf(root, sizeof(root), "%s/root", base);
        snprintf(outside, sizeof(outside), "%s/outside", base);
        snprintf(dest, sizeof(dest), "%s/root/w", base);
        drv_rm_rf(base, &e);
        if (drv_mkdir_p(dest, 0755, &e) < 0 || drv_mkdir_p(outside, 0755, &e) < 0)
                abort();
        int in = memfd_create("archive", MFD_CLOEXEC);
        if (in < 0 || drv_write_all(in, data, size) < 0 || lseek(in, 0, SEEK_SET) < 0)
                abort();
        int rfd = open(root, O_PATH | O_DIRECTORY | O_CLOEXEC);
        struct jobfs fs = {.root_fd = rfd, .uid = getuid(), .gid = getgid()};
        int dfd = -1;
        if (jobfs_open_dir(&fs, "/w", false, &dfd, &e) < 0)
                abort();
        struct archive_limits lim = {.max_bytes = 1u << 20, .max_entries = 200};
        struct archive_stats st = {0};
        int r = archive_extract(&fs, dfd, in, &lim, &st, &e);
        if (r == 0 && (st.bytes > lim.max_bytes || st.files + st.dirs + st.links > lim.max_entries))
                abort();
        if (r < 0 && !e.message[0])
                abort();
        if (!empty_dir(outside))
                abort(); /* wrote outside the job root */
        close(dfd);
        close(rfd);
        close(in);
        return 0;
}

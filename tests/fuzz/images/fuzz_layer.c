/* fuzz_layer: unpacking any (hostile) layer blob: never crashes and never writes outside the
 * layer directory (a sibling folder must stay empty). Run as root to exercise owners, whiteouts
 * (mknod) and opaque xattrs as in production. */
#include "executor/images/images_int.h"

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
        char dest[96], outside[96];
        if (!base[0]) {
                snprintf(base, sizeof(base), "/tmp/drover-fuzz-layer-%d", (int)getpid());
                drv_log_set_level(DRV_LOG_ERROR);
        }
        snprintf(dest, sizeof(dest), "%s/layer/root", base);
        snprintf(outside, sizeof(outside), "%s/outside", base);
        drv_rm_rf(base, &e);
        if (drv_mkdir_p(dest, 0755, &e) < 0 || drv_mkdir_p(outside, 0755, &e) < 0)
                abort();
        int in = memfd_create("layer", MFD_CLOEXEC);
        if (in < 0 || drv_write_all(in, data, size) < 0 || lseek(in, 0, SEEK_SET) < 0)
                abort();
        int dfd = open(dest, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0)
                abort();
        struct img_unpack_stats st;
        if (img_unpack_layer(in, dfd, 1u << 20, &st, &e) < 0 && !e.message[0])
                abort();
        close(dfd);
        close(in);
        if (!empty_dir(outside))
                abort();
        return 0;
}

/* fuzz_tree.h: the scratch tree of the extraction fuzz targets (header-only, one copy for all):
 * BASE/<sub> is written into, BASE/outside must stay empty; the input arrives as a memfd. */
#ifndef DROVER_FUZZ_TREE_H
#define DROVER_FUZZ_TREE_H

#include "lib/drv.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

struct fuzz_tree {
        char base[64];
        char dest[128];
        char outside[96];
};

/* Empty BASE (/tmp/drover-fuzz-<name>-<pid>), then make BASE/<sub> and BASE/outside. */
static inline void fuzz_tree_reset(struct fuzz_tree *t, const char *name, const char *sub)
{
        struct drv_error e = {0};
        if (!t->base[0]) {
                snprintf(t->base, sizeof(t->base), "/tmp/drover-fuzz-%s-%d", name, (int)getpid());
                snprintf(t->dest, sizeof(t->dest), "%s/%s", t->base, sub);
                snprintf(t->outside, sizeof(t->outside), "%s/outside", t->base);
                drv_log_set_level(DRV_LOG_ERROR);
        }
        drv_rm_rf(t->base, &e);
        if (drv_mkdir_p(t->dest, 0755, &e) < 0 || drv_mkdir_p(t->outside, 0755, &e) < 0)
                abort();
}

/* The input as a readable fd at offset 0 (the extractors read fds, not buffers). */
static inline int fuzz_input_fd(const uint8_t *data, size_t size)
{
        int in = memfd_create("fuzz-input", MFD_CLOEXEC);
        if (in < 0 || drv_write_all(in, data, size) < 0 || lseek(in, 0, SEEK_SET) < 0)
                abort();
        return in;
}

/* abort() when anything was written next to the target: the one thing that must never happen. */
static inline void fuzz_tree_check_outside(const struct fuzz_tree *t)
{
        DIR *d = opendir(t->outside);
        struct dirent *de;
        if (!d)
                abort();
        while ((de = readdir(d)))
                if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
                        abort();
        closedir(d);
}

#endif

/* fuzz_archive: extraction of any (hostile) archive into a job root. Never crashes, stays within
 * its limits, and never writes outside the target: a sibling folder must stay empty. */
#include "cache/jobfs.h"
#include "tests/fuzz/fuzz_tree.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct fuzz_tree tree;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct drv_error e = {0};
        fuzz_tree_reset(&tree, "ar", "root/w");
        int in = fuzz_input_fd(data, size);
        char root[96];
        snprintf(root, sizeof(root), "%s/root", tree.base);
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
        fuzz_tree_check_outside(&tree); /* wrote outside the job root */
        close(dfd);
        close(rfd);
        close(in);
        return 0;
}

/* fuzz_layer: unpacking any (hostile) layer blob: never crashes and never writes outside the
 * layer directory (a sibling folder must stay empty). Run as root to exercise owners, whiteouts
 * (mknod) and opaque xattrs as in production. */
#include "executor/images/images_int.h"
#include "tests/fuzz/fuzz_tree.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct fuzz_tree tree;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct drv_error e = {0};
        fuzz_tree_reset(&tree, "layer", "layer/root");
        int in = fuzz_input_fd(data, size);
        int dfd = open(tree.dest, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0)
                abort();
        struct img_unpack_stats st;
        if (img_unpack_layer(in, dfd, 1u << 20, &st, &e) < 0 && !e.message[0])
                abort();
        close(dfd);
        close(in);
        fuzz_tree_check_outside(&tree);
        return 0;
}

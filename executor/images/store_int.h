/* store_int.h: the layer store's internals shared by store.c (layers, leases, GC) and pull.c. */
#pragma once
#include "executor/images/images_int.h"

struct img_store {
        char *root;
        uint64_t max_bytes;
        const atomic_bool *cancel; /* of the pull under way (img_pull_opts.cancel), or NULL */
};

/* Make sure layer desc is unpacked in the store (downloading it with reg unless NULL, at most
 * once across processes) and take a shared lease on it: *lease_fd. *dir gets the layer's root
 * directory (allocated). */
int store_layer_get(struct img_store *st, struct reg *reg, const struct img_layer_desc *desc,
                    int *lease_fd, char **dir, struct drv_error *err);
/* Download a small blob (image config) verified into memory. */
int store_small_blob(struct img_store *st, struct reg *reg, const char *digest, char **body,
                     size_t *len, struct drv_error *err);

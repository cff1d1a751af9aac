/* fuzz_manifest: any registry answer as a manifest, index or image config: never crashes, and
 * what is accepted is well formed (valid digests, a platform pick for an index). */
#include "executor/images/images_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        static const char *types[] = {NULL, "application/vnd.oci.image.index.v1+json",
                                      "application/vnd.docker.distribution.manifest.v2+json"};
        const char *body = (const char *)data;
        struct drv_error e = {0};
        struct img_manifest m;
        const char *ct = types[size % 3];
        if (img_manifest_parse(body, size, ct, size % 2 ? "arm64" : "amd64", &m, &e) == 0) {
                if (m.kind == IMG_MANIFEST_INDEX) {
                        if (!img_digest_valid(m.platform_pick))
                                abort();
                } else {
                        if (!img_digest_valid(m.config_digest))
                                abort();
                        for (size_t i = 0; i < m.n_layers; i++)
                                if (!img_digest_valid(m.layers[i].digest))
                                        abort();
                }
                img_manifest_free(&m);
        } else if (!e.message[0]) {
                abort();
        }
        struct img_config c;
        if (img_config_parse(body, size, &c, &e) == 0) {
                if (!c.env || !c.user)
                        abort();
                img_config_free(&c);
        }
        /* the same bytes as an image reference */
        char ref[256];
        size_t n = size < sizeof(ref) - 1 ? size : sizeof(ref) - 1;
        memcpy(ref, data, n);
        ref[n] = '\0';
        struct img_ref r;
        if (img_ref_parse(ref, &r, &e) == 0) {
                char *s = img_ref_format(&r);
                if (!s || !r.registry[0] || !r.repository[0])
                        abort();
                free(s);
                img_ref_free(&r);
        }
        return 0;
}

/* manifest.c: parse registry manifests (Docker v2 schema 2, OCI manifest, manifest list / OCI
 * index -> one platform) with jansson; image configs are config.c. */
#include "executor/images/images_int.h"

#include <jansson.h>

#define MT_DOCKER_V2   "application/vnd.docker.distribution.manifest.v2+json"
#define MT_DOCKER_LIST "application/vnd.docker.distribution.manifest.list.v2+json"
#define MT_OCI_MAN     "application/vnd.oci.image.manifest.v1+json"
#define MT_OCI_INDEX   "application/vnd.oci.image.index.v1+json"

static void json_decref_p(json_t **j)
{
        if (*j)
                json_decref(*j);
}

void img_manifest_free(struct img_manifest *m)
{
        free(m->config_digest);
        for (size_t i = 0; i < m->n_layers; i++) {
                free(m->layers[i].digest);
                free(m->layers[i].media_type);
        }
        free(m->layers);
        free(m->platform_pick);
        memset(m, 0, sizeof(*m));
}

/* Media type without parameters ("; charset=..."), lowercase compare. */
static bool mt_is(const char *ct, const char *want)
{
        size_t n = strcspn(ct, "; \t");
        return n == strlen(want) && strncasecmp(ct, want, n) == 0;
}

static bool layer_type_ok(const char *mt)
{
        return !mt ||
               strstr(mt, "tar") != NULL; /* docker rootfs.diff.tar.gzip, oci tar(+gzip|zstd) */
}

static int parse_index(json_t *root, const char *arch, struct img_manifest *out,
                       struct drv_error *err)
{
        json_t *list = json_object_get(root, "manifests");
        if (!json_is_array(list))
                return drv_err(err, EINVAL, "manifest list has no 'manifests' array");
        const char *pick = NULL;
        int best = -1;
        size_t i;
        json_t *m;
        json_array_foreach (list, i, m) {
                json_t *p = json_object_get(m, "platform");
                const char *d = json_string_value(json_object_get(m, "digest"));
                const char *os = json_string_value(json_object_get(p, "os"));
                const char *a = json_string_value(json_object_get(p, "architecture"));
                const char *v = json_string_value(json_object_get(p, "variant"));
                if (!d || !os || !a || strcmp(os, "linux") != 0 || strcmp(a, arch) != 0)
                        continue;
                if (!img_digest_valid(d))
                        return drv_err(err, EINVAL, "manifest list entry has a bad digest");
                /* prefer no variant, or the usual one for the arch */
                int score = !v ? 2 : (strcmp(v, "v8") == 0 || strcmp(v, "v7") == 0) ? 1 : 0;
                if (score > best) {
                        best = score;
                        pick = d;
                }
        }
        if (!pick)
                return drv_err(err, ENOENT, "manifest list has no image for linux/%s", arch);
        out->kind = IMG_MANIFEST_INDEX;
        out->platform_pick = strdup(pick);
        return out->platform_pick ? 0 : drv_err(err, ENOMEM, "out of memory");
}

static int parse_image(json_t *root, struct img_manifest *out, struct drv_error *err)
{
        json_t *cfg = json_object_get(root, "config");
        const char *cd = json_string_value(json_object_get(cfg, "digest"));
        const char *cmt = json_string_value(json_object_get(cfg, "mediaType"));
        if (!img_digest_valid(cd))
                return drv_err(err, EINVAL, "manifest has no valid config digest");
        if (cmt && !mt_is(cmt, "application/vnd.docker.container.image.v1+json") &&
            !mt_is(cmt, "application/vnd.oci.image.config.v1+json"))
                return drv_err(err, ENOTSUP, "not a container image: its config has media type %s",
                               cmt);
        json_t *layers = json_object_get(root, "layers");
        if (!json_is_array(layers))
                return drv_err(err, EINVAL, "manifest has no 'layers' array");
        size_t n = json_array_size(layers);
        if (n > 1000)
                return drv_err(err, EINVAL, "manifest has %zu layers (at most 1000)", n);
        out->kind = IMG_MANIFEST_IMAGE;
        out->config_digest = strdup(cd);
        out->layers = calloc(n ? n : 1, sizeof(*out->layers));
        if (!out->config_digest || !out->layers)
                return drv_err(err, ENOMEM, "out of memory");
        for (size_t i = 0; i < n; i++) {
                json_t *l = json_array_get(layers, i);
                const char *d = json_string_value(json_object_get(l, "digest"));
                const char *mt = json_string_value(json_object_get(l, "mediaType"));
                json_t *sz = json_object_get(l, "size");
                if (!img_digest_valid(d))
                        return drv_err(err, EINVAL, "manifest layer %zu has no valid digest", i);
                if (!layer_type_ok(mt))
                        return drv_err(err, ENOTSUP,
                                       "manifest layer %zu has media type %s (not a tar)", i, mt);
                struct img_layer_desc *ld = &out->layers[out->n_layers++];
                ld->digest = strdup(d);
                ld->media_type = mt ? strdup(mt) : NULL;
                ld->size = json_is_integer(sz) && json_integer_value(sz) > 0
                               ? (uint64_t)json_integer_value(sz)
                               : 0;
                if (!ld->digest || (mt && !ld->media_type))
                        return drv_err(err, ENOMEM, "out of memory");
        }
        return 0;
}

int img_manifest_parse(const char *body, size_t len, const char *content_type, const char *arch,
                       struct img_manifest *out, struct drv_error *err)
{
        memset(out, 0, sizeof(*out));
        json_error_t je;
        _cleanup_(json_decref_p) json_t *root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
        if (!json_is_object(root))
                return drv_err(err, EINVAL, "manifest is not a JSON object (%s)",
                               root ? "not an object" : "not JSON"); /* never echo the answer */
        const char *mt = json_string_value(json_object_get(root, "mediaType"));
        if (!mt || !*mt)
                mt = content_type;
        json_t *sv = json_object_get(root, "schemaVersion");
        if (json_is_integer(sv) && json_integer_value(sv) == 1)
                return drv_err(err, ENOTSUP,
                               "manifest schema 1 is not supported (push the image "
                               "again with a current docker)");
        int r;
        if (mt && (mt_is(mt, MT_DOCKER_LIST) || mt_is(mt, MT_OCI_INDEX)))
                r = parse_index(root, arch ? arch : img_host_arch(), out, err);
        else if (mt && (mt_is(mt, MT_DOCKER_V2) || mt_is(mt, MT_OCI_MAN)))
                r = parse_image(root, out, err);
        else if (!mt && json_object_get(root, "manifests"))
                r = parse_index(root, arch ? arch : img_host_arch(), out, err);
        else if (!mt && json_object_get(root, "layers"))
                r = parse_image(root, out, err);
        else
                r = drv_err(err, ENOTSUP, "unsupported manifest media type %s", mt ? mt : "(none)");
        if (r < 0)
                img_manifest_free(out);
        return r;
}

/* ref.c: image references ("alpine", "host:5000/a/b:tag", "a/b@sha256:...") and digests. */
#include "executor/images/images_int.h"

#include <sys/utsname.h>

bool img_digest_valid(const char *d)
{
        if (!d || strncmp(d, "sha256:", 7) != 0 || strlen(d) != 7 + 64)
                return false;
        for (const char *p = d + 7; *p; p++)
                if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
                        return false;
        return true;
}

static bool repo_valid(const char *s)
{
        if (!*s || *s == '/' || s[strlen(s) - 1] == '/' || strstr(s, "//"))
                return false;
        for (const char *p = s; *p; p++)
                if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || strchr("._-/", *p)))
                        return false;
        return !strstr(s, "..");
}

static bool tag_valid(const char *s)
{
        size_t n = strlen(s);
        if (n == 0 || n > 128 || *s == '.' || *s == '-')
                return false;
        for (const char *p = s; *p; p++)
                if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                      (*p >= '0' && *p <= '9') || strchr("._-", *p)))
                        return false;
        return true;
}

void img_ref_free(struct img_ref *r)
{
        free(r->registry);
        free(r->repository);
        free(r->tag);
        free(r->digest);
        memset(r, 0, sizeof(*r));
}

int img_ref_parse(const char *s, struct img_ref *out, struct drv_error *err)
{
        memset(out, 0, sizeof(*out));
        if (!s || !*s || strlen(s) > 1024)
                return drv_err(err, EINVAL, "image name '%s' is empty or too long", s ? s : "");
        _cleanup_free_ char *copy = strdup(s);
        if (!copy)
                return drv_err(err, ENOMEM, "out of memory");
        char *at = strchr(copy, '@');
        if (at) {
                *at = '\0';
                if (!img_digest_valid(at + 1))
                        return drv_err(err, EINVAL,
                                       "image %s: digest must be sha256:<64 lowercase hex>", s);
                out->digest = strdup(at + 1);
        }
        char *name = copy;
        char *slash = strchr(name, '/');
        if (slash && (memchr(name, '.', (size_t)(slash - name)) ||
                      memchr(name, ':', (size_t)(slash - name)) ||
                      (slash - name == 9 && strncmp(name, "localhost", 9) == 0))) {
                *slash = '\0';
                /* docker's aliases of Docker Hub */
                bool hub = strcmp(name, "index.docker.io") == 0 ||
                           strcmp(name, "registry-1.docker.io") == 0;
                out->registry = strdup(hub ? "docker.io" : name);
                name = slash + 1;
        } else {
                out->registry = strdup("docker.io");
        }
        char *last = strrchr(name, '/');
        char *colon = strchr(last ? last : name, ':');
        if (colon) {
                *colon = '\0';
                if (!tag_valid(colon + 1)) {
                        img_ref_free(out);
                        return drv_err(err, EINVAL, "image %s: bad tag '%s'", s, colon + 1);
                }
                out->tag = strdup(colon + 1);
        } else if (!out->digest) {
                out->tag = strdup("latest");
        }
        if (out->registry && strcmp(out->registry, "docker.io") == 0 && !strchr(name, '/'))
                out->repository = drv_asprintf("library/%s", name);
        else
                out->repository = strdup(name);
        if (!out->registry || !out->repository || (!out->tag && !out->digest)) {
                img_ref_free(out);
                return drv_err(err, ENOMEM, "out of memory");
        }
        if (!repo_valid(out->repository) || !*out->registry) {
                img_ref_free(out);
                return drv_err(err, EINVAL,
                               "image %s: bad repository name (lowercase letters, digits, "
                               "'.', '_', '-', '/')",
                               s);
        }
        return 0;
}

char *img_ref_format(const struct img_ref *r)
{
        if (r->digest && r->tag)
                return drv_asprintf("%s/%s:%s@%s", r->registry, r->repository, r->tag, r->digest);
        if (r->digest)
                return drv_asprintf("%s/%s@%s", r->registry, r->repository, r->digest);
        return drv_asprintf("%s/%s:%s", r->registry, r->repository, r->tag);
}

const char *img_host_arch(void)
{
        struct utsname u;
        if (uname(&u) < 0)
                return "amd64";
        static const struct {
                const char *k, *oci;
        } map[] = {{"x86_64", "amd64"},   {"aarch64", "arm64"},   {"armv7l", "arm"},
                   {"i686", "386"},       {"ppc64le", "ppc64le"}, {"s390x", "s390x"},
                   {"riscv64", "riscv64"}};
        for (size_t i = 0; i < DRV_ARRAY_SIZE(map); i++)
                if (strcmp(u.machine, map[i].k) == 0)
                        return map[i].oci;
        return "amd64";
}

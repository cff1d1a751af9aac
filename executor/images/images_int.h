/* images_int.h: internals of the images module shared by its files (not a contract). */
#pragma once
#include "executor/images/images.h"

#include <sys/socket.h>

/* ---- ref.c: image references ---- */
struct img_ref {
        char *registry;   /* "docker.io", "127.0.0.1:5443" */
        char *repository; /* "library/alpine" */
        char *tag;        /* "3.19" (NULL when only a digest is given) */
        char *digest;     /* "sha256:..." or NULL */
};
/* Parse and normalise "alpine", "host:5000/a/b:tag", "a/b@sha256:...". */
int img_ref_parse(const char *s, struct img_ref *out, struct drv_error *err);
void img_ref_free(struct img_ref *r);
/* "registry/repository:tag" or "...@digest" (allocated). */
char *img_ref_format(const struct img_ref *r);
/* A digest "sha256:<64 hex>" is valid (only sha256 is supported). */
bool img_digest_valid(const char *d);
/* The host arch as OCI names it ("amd64", "arm64", ...). */
const char *img_host_arch(void);

/* ---- manifest.c, config.c: manifests and image configs (jansson) ---- */
enum img_manifest_kind { IMG_MANIFEST_IMAGE, IMG_MANIFEST_INDEX };
struct img_layer_desc {
        char *digest;
        char *media_type;
        uint64_t size;
};
struct img_manifest {
        enum img_manifest_kind kind;
        char *config_digest; /* image manifests */
        struct img_layer_desc *layers;
        size_t n_layers;     /* bottom first, as in the manifest */
        char *platform_pick; /* index: the digest of the manifest for the wanted platform */
};
/* Parse a manifest body; content_type may be NULL (then mediaType of the body decides). For an
 * index, picks linux/arch (variant-less first, then any variant). */
int img_manifest_parse(const char *body, size_t len, const char *content_type, const char *arch,
                       struct img_manifest *out, struct drv_error *err);
void img_manifest_free(struct img_manifest *m);
/* Parse an image config JSON into cfg. */
int img_config_parse(const char *body, size_t len, struct img_config *cfg, struct drv_error *err);
void img_config_free(struct img_config *cfg);

/* ---- egress.c: where the puller may connect on a job's behalf ---- */
#define IMG_EGRESS_MAX_ADDRS 16
struct sockaddr;
struct img_egress { /* the addresses of the registry the job named */
        size_t n;
        struct sockaddr_storage addrs[IMG_EGRESS_MAX_ADDRS];
};
/* Resolve the registry of base ("https://host:port"); for a job (trusted false: not the
 * operator's own pull or mirror) a loopback, link-local, private or reserved registry address is
 * refused (-EPERM) unless the operator lists the registry (DROVER_IMAGE_REGISTRY_ALLOW) or the
 * address (DROVER_IMAGE_EGRESS_ALLOW, DROVER_SANDBOX_EGRESS_ALLOW). */
int img_egress_init(struct img_egress *eg, const char *base, bool trusted, struct drv_error *err);
/* May a connection go to sa? The registry's own addresses (any port), public addresses and the
 * operator's DROVER_IMAGE_EGRESS_ALLOW pass; else false and why gets "ADDR (class)". */
bool img_egress_allowed(const struct img_egress *eg, const struct sockaddr *sa, char *why,
                        size_t n);

/* ---- registry.c: distribution v2 client (libcurl) ---- */
struct reg;
/* A client for one repository of one registry (host as in the reference; docker.io maps to
 * registry-1.docker.io). */
int reg_open(const char *registry, const char *repository, const struct img_pull_opts *o,
             struct reg **out, struct drv_error *err);
void reg_close(struct reg *r);
/* Another client for the same repository (own connection) sharing r's credentials and token:
 * one per pulling thread. */
int reg_clone(const struct reg *r, struct reg **out, struct drv_error *err);
/* GET a manifest by tag or digest. Returns the body, its content type and its digest
 * (computed; checked against ref when ref is a digest). */
int reg_get_manifest(struct reg *r, const char *ref, char **body, size_t *len, char **ctype,
                     char **digest, struct drv_error *err);
/* GET a blob into fd, verifying its sha256 against digest while streaming; a mismatch is an
 * error and fd's content must then be discarded. At most size bytes (the size the manifest
 * declares; 0 = no bound): a longer answer is cut at once and refused (-EFBIG). */
int reg_get_blob(struct reg *r, const char *digest, int fd, uint64_t size, struct drv_error *err);
/* Number of blob GETs sent so far (for logs and tests). */
unsigned reg_blob_gets(const struct reg *r);
/* The registry as named (host[:port] or a mirror's URL); whether the job gave credentials. */
const char *reg_name(const struct reg *r);
bool reg_has_credentials(const struct reg *r);

/* Has the pull been canceled (o->cancel set)? */
static inline bool img_canceled(const struct img_pull_opts *o)
{
        return o && o->cancel && atomic_load(o->cancel);
}

/* ---- unpack.c: one layer tar -> directory ---- */
struct img_unpack_stats {
        uint64_t entries, bytes, whiteouts, skipped;
        uint64_t max_bytes; /* the bound it ran with */
};
#define IMG_ENTRY_MIN_BYTES 4096u /* what any entry (an inode) counts against a bound, at least */
/* Unpack the (gzip/zstd/plain) tar read from in_fd into the empty directory dest_fd, keeping
 * uids, gids and modes, converting whiteouts to overlayfs form, refusing escapes. Entries count
 * their declared size rounded up to IMG_ENTRY_MIN_BYTES, at least IMG_ENTRY_MIN_BYTES each (so
 * inodes count); above max_bytes (0 = no bound) it stops with -EFBIG before writing the entry.
 * On an error dest_fd holds a partial tree: the caller removes it. */
int img_unpack_layer(int in_fd, int dest_fd, uint64_t max_bytes, struct img_unpack_stats *st,
                     struct drv_error *err);

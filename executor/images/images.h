/* images.h: OCI / Docker images for drover's own sandbox — registry client, verified
 * content-addressed layer store shared by jobs, unpacked layers for overlayfs. */
#pragma once
#include "lib/drv.h"

#include <stdatomic.h>

enum img_pull_policy { IMG_PULL_MISSING = 0, IMG_PULL_NEVER, IMG_PULL_ALWAYS };

struct img_pull_opts {
        enum img_pull_policy policy;
        const char *username; /* basic / bearer-token credentials, NULL = anonymous */
        const char *password;
        const char *ca_file; /* extra CA for registry TLS, NULL = system store */
        const char *const
            *mirrors;             /* "https://host:port" tried before docker.io, NULL-terminated */
        const char *arch;         /* NULL = host arch ("amd64", "arm64", ...) */
        bool insecure_http;       /* allow plain http for 127.0.0.1/localhost registries */
        bool operator_pull;       /* the operator's own pull (drover image), not a job's: any
                                     registry address (egress.c) */
        unsigned stall_timeout_s; /* a transfer with nothing received for so long fails
                                     (and is retried); 0 = 60 */
        /* progress: called from the pulling threads (up to 3 layers at once: must be
         * thread-safe); total 0 = unknown */
        void (*progress)(void *ud, const char *digest, uint64_t done, uint64_t total);
        /* a layer is in the store and leased: fetched now (blob_bytes downloaded, verified,
         * unpacked) or found there (fetched false); same threads as progress */
        void (*layer_done)(void *ud, const char *digest, bool fetched, uint64_t blob_bytes,
                           uint64_t ms);
        void *ud;
        /* set from any thread to abort the pull promptly (the transfer under way included):
         * img_pull then fails with -ECANCELED; a blob not completely downloaded and verified is
         * never counted as present in the store */
        const atomic_bool *cancel;
};

/* The parts of the image config a CircleCI job uses. */
struct img_config {
        char **env;        /* "K=V", NULL-terminated */
        char *user;        /* "" or "name" or "uid[:gid]" */
        char *workdir;     /* may be NULL */
        char **entrypoint; /* may be NULL */
        char **cmd;        /* may be NULL */
};

struct img {
        char *name;        /* as asked, normalised: "docker.io/library/alpine:3.19" */
        char *digest;      /* manifest digest "sha256:..." */
        char **layer_dirs; /* unpacked read-only layer dirs, TOP FIRST (= sandbox lowerdirs
                              order), NULL-terminated; whiteouts already in overlayfs form
                              (char dev 0/0, trusted.overlay.opaque=y) */
        size_t n_layers;
        struct img_config config;
        /* private: leases (flock) keeping every layer safe from GC until img_release */
        int *lease_fds;
};

struct img_store;

/* Is "host", "host:port" or "[v6]:port" exactly loopback: the name localhost, 127.0.0.0/8 or ::1
 * by address (never a name prefix: localhost.example.com is not)? */
bool img_host_is_loopback(const char *hostport);

/* Open (create) the layer store at root (e.g. /var/lib/drover/images); max_bytes 0 = no bound. */
int img_store_open(const char *root, uint64_t max_bytes, struct img_store **out,
                   struct drv_error *err);
void img_store_close(struct img_store *st);

/* Resolve name -> manifest (index -> platform) -> config + layers; download each blob once
 * (concurrent pulls of one layer by other processes wait and reuse it), verify its digest
 * BEFORE use, unpack (gzip/zstd/plain tar) refusing escapes, apply whiteouts. Returns the image
 * with leases held on all its layers. Errors name the registry, the repository and the reason
 * (not found, auth failed, digest mismatch, TLS). */
int img_pull(struct img_store *st, const char *name, const struct img_pull_opts *o,
             struct img **out, struct drv_error *err);
void img_release(struct img *im); /* drops the leases and frees */

/* Remove least-recently-used layers not leased by anybody until the store is under max_bytes. */
int img_store_gc(struct img_store *st, uint64_t max_bytes, uint64_t *freed, struct drv_error *err);

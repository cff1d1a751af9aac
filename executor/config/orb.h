/* orb.h: CircleCI registry orbs outside a config — references (`ns/name@version`), where their
 * sources are found (orb directories, then drover's orb cache) and the registry client that
 * fills the cache (`drover orb pull`). docs/config.md, section "Orbs". */
#pragma once

#include "lib/drv.h"

#define ORB_PART_MAX 128 /* namespace, name and version are each shorter */

/* A parsed reference. version is "1.2.3" (exact), "1" or "1.2" (the highest matching),
 * "volatile" (the highest) or a dev version "dev:LABEL" (exact). */
struct orb_ref {
        char ns[ORB_PART_MAX];
        char name[ORB_PART_MAX];
        char version[ORB_PART_MAX];
};

/* Parse "ns/name@version" ("ns/name" means @volatile); -EINVAL (err says why) when not one. */
int orb_ref_parse(const char *s, struct orb_ref *out, struct drv_error *err);
/* True when the full version have ("1.2.3" or "dev:x") satisfies the wanted one. */
bool orb_version_matches(const char *want, const char *have);
/* Order of two full versions (numeric by part); dev versions sort below every release. */
int orb_version_cmp(const char *a, const char *b);
/* The orb cache directory: $DROVER_ORB_CACHE, else $XDG_CACHE_HOME/drover/orbs, else
 * $HOME/.cache/drover/orbs, else /var/cache/drover/orbs (the agent's, which runs without a
 * home). Caller frees; NULL on OOM. */
char *orb_cache_dir(void);
/* Look for r's source: in each of dirs (NULL-terminated, may be NULL) in order, then in cache (may
 * be NULL), as DIR/NS/NAME@VERSION.yml. The first directory that has a matching version wins,
 * and in it the highest matching version. On success *path and *version are new strings the
 * caller frees. -ENOENT (no message) when none has it; other errors with a message. */
int orb_find(const char *const *dirs, const char *cache, const struct orb_ref *r, char **path,
             char **version, struct drv_error *err);
/* Check a cached source against the digest recorded next to it (PATH.sha256) when there is one:
 * -EBADMSG with a message when they differ. */
int orb_verify_digest(const char *path, const char *text, size_t len, struct drv_error *err);
/* "sha256:HEX" of text into out (at least 72 bytes). */
void orb_digest(const char *text, size_t len, char *out);

/* The registry: CircleCI's public API (the requests `circleci orb source` makes). */
struct orb_registry {
        const char *endpoint; /* base URL, default "https://circleci.com" ($DROVER_ORB_REGISTRY) */
        const char *token;    /* Circle-Token header for private orbs; may be NULL; never logged */
        long timeout_s;       /* per request; 0: 30 */
};
/* Resolve r to a full version through the registry (the versions list for "1", "1.2",
 * "volatile"), fetch its source into cache/NS/NAME@VERSION.yml with its digest in
 * NAME@VERSION.yml.sha256. *version (may be NULL) receives the version; caller frees. Honours
 * the usual proxy variables (libcurl). */
int orb_pull(const struct orb_registry *reg, const char *cache, const struct orb_ref *r,
             char **version, struct drv_error *err);
/* Fetch the source of r from the registry into *text (caller frees), without the cache. */
int orb_registry_source(const struct orb_registry *reg, const struct orb_ref *r, char **version,
                        char **text, struct drv_error *err);
/* The orb directories of a run, in search order: cli_dirs (--orb-dir; may be NULL), the entries
 * of $DROVER_ORB_PATH (colon-separated), then the project's: the `orbs` directory beside the
 * config file (.circleci/orbs). NULL-terminated; caller frees (drv_strv_free); NULL on OOM. */
char **orb_search_dirs(char *const *cli_dirs, const char *config_path);

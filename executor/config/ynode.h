/* ynode.h: a YAML document as a tree of nodes with positions (libyaml), anchors, aliases and
 * `<<` merge keys resolved, with bounds against alias bombs. Internal to the config compiler. */
#pragma once

#include "lib/drv.h"

enum ynode_kind { Y_SCALAR, Y_SEQ, Y_MAP };

struct ynode {
        enum ynode_kind kind;
        char *value;          /* scalar text */
        bool quoted;          /* scalar was quoted (never a bool/int/null) */
        struct ynode **items; /* seq: items; map: keys and values interleaved (k0, v0, k1, v1..) */
        size_t n;             /* number of items (map: 2 x pairs) */
        unsigned line, col;   /* 1-based position in the file */
        const char *file;     /* the file it comes from when not the config (an orb's source);
                                 borrowed from whoever parsed it, NULL: the config */
};

#define YAML_MAX_NODES (500000u) /* after alias expansion */
#define YAML_MAX_DEPTH (128u)
#define YAML_MAX_BYTES (8u << 20)

/* Parse text into a tree. name is used in messages ("FILE:LINE:COL: ..."). */
int ynode_parse(const char *name, const char *text, size_t len, struct ynode **out,
                struct drv_error *err);
void ynode_free(struct ynode *n);
static inline void ynode_freep(struct ynode **p)
{
        ynode_free(*p);
}
/* Deep copy (NULL on OOM). */
struct ynode *ynode_copy(const struct ynode *n);
/* Map lookup (last wins); NULL when absent or n is not a map. */
struct ynode *ynode_get(const struct ynode *map, const char *key);
/* Number of pairs of a map. */
static inline size_t ynode_pairs(const struct ynode *map)
{
        return map && map->kind == Y_MAP ? map->n / 2 : 0;
}
/* Scalar helpers. */
bool ynode_is_null(const struct ynode *n);
/* Parse a YAML boolean (true/false/yes/no/on/off); -EINVAL when not one. */
int ynode_bool(const struct ynode *n, bool *out);
/* New scalar / empty seq / empty map (NULL on OOM). */
struct ynode *ynode_scalar(const char *value, unsigned line, unsigned col);
struct ynode *ynode_new(enum ynode_kind kind, unsigned line, unsigned col);
/* Append an item (seq) or a pair (map, two calls: key then value); takes ownership. */
int ynode_append(struct ynode *parent, struct ynode *child);

/* ynode.c: build a positioned node tree from libyaml events; anchors, aliases (copied, with a
 * bound on total nodes), `<<` merge keys (a map or a list of maps). */
#include "executor/config/ynode.h"

#include <strings.h>
#include <yaml.h>

struct anchor {
        char *name;
        struct ynode *node;
};

struct builder {
        const char *name;
        yaml_parser_t parser;
        struct anchor *anchors;
        size_t n_anchors;
        size_t nodes; /* total nodes built, aliases counted as expanded */
        /* `<<` keys and values taken out of maps: kept until the end of the parse because an
         * anchor may name them (found by fuzz_config: a use after free) */
        struct ynode *graveyard;
        struct drv_error *err;
};

static size_t ynode_count(const struct ynode *n)
{
        size_t c = 1;
        for (size_t i = 0; i < n->n; i++)
                c += ynode_count(n->items[i]);
        return c;
}

struct ynode *ynode_new(enum ynode_kind kind, unsigned line, unsigned col)
{
        struct ynode *n = calloc(1, sizeof(*n));
        if (n) {
                n->kind = kind;
                n->line = line;
                n->col = col;
        }
        return n;
}

struct ynode *ynode_scalar(const char *value, unsigned line, unsigned col)
{
        struct ynode *n = ynode_new(Y_SCALAR, line, col);
        if (n && !(n->value = strdup(value))) {
                free(n);
                return NULL;
        }
        return n;
}

int ynode_append(struct ynode *parent, struct ynode *child)
{
        struct ynode **items = realloc(parent->items, (parent->n + 1) * sizeof(*items));
        if (!items)
                return -ENOMEM;
        parent->items = items;
        parent->items[parent->n++] = child;
        return 0;
}

void ynode_free(struct ynode *n)
{
        if (!n)
                return;
        for (size_t i = 0; i < n->n; i++)
                ynode_free(n->items[i]);
        free(n->items);
        free(n->value);
        free(n);
}

struct ynode *ynode_copy(const struct ynode *n)
{
        struct ynode *c = ynode_new(n->kind, n->line, n->col);
        if (!c)
                return NULL;
        c->quoted = n->quoted;
        c->file = n->file;
        if (n->value && !(c->value = strdup(n->value)))
                goto fail;
        if (n->n) {
                c->items = calloc(n->n, sizeof(*c->items));
                if (!c->items)
                        goto fail;
                for (size_t i = 0; i < n->n; i++) {
                        c->items[i] = ynode_copy(n->items[i]);
                        if (!c->items[i])
                                goto fail;
                        c->n = i + 1;
                }
        }
        return c;
fail:
        ynode_free(c);
        return NULL;
}

struct ynode *ynode_get(const struct ynode *map, const char *key)
{
        struct ynode *found = NULL;
        if (!map || map->kind != Y_MAP)
                return NULL;
        for (size_t i = 0; i + 1 < map->n; i += 2)
                if (map->items[i]->kind == Y_SCALAR && strcmp(map->items[i]->value, key) == 0)
                        found = map->items[i + 1];
        return found;
}

bool ynode_is_null(const struct ynode *n)
{
        return !n || (n->kind == Y_SCALAR && !n->quoted &&
                      (n->value[0] == '\0' || strcmp(n->value, "~") == 0 ||
                       strcasecmp(n->value, "null") == 0));
}

int ynode_bool(const struct ynode *n, bool *out)
{
        static const char *const yes[] = {"true", "yes", "on", "y"};
        static const char *const no[] = {"false", "no", "off", "n"};
        if (!n || n->kind != Y_SCALAR)
                return -EINVAL;
        for (size_t i = 0; i < DRV_ARRAY_SIZE(yes); i++) {
                if (strcasecmp(n->value, yes[i]) == 0) {
                        *out = true;
                        return 0;
                }
                if (strcasecmp(n->value, no[i]) == 0) {
                        *out = false;
                        return 0;
                }
        }
        return -EINVAL;
}

static int fail(struct builder *b, const yaml_mark_t *m, const char *fmt, ...) DRV_PRINTF(3, 4);
static int fail(struct builder *b, const yaml_mark_t *m, const char *fmt, ...)
{
        char msg[512];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        return drv_err(b->err, EINVAL, "%s:%zu:%zu: %s", b->name, m->line + 1, m->column + 1, msg);
}

static int count(struct builder *b, const yaml_mark_t *m, size_t n)
{
        b->nodes += n;
        if (b->nodes > YAML_MAX_NODES)
                return fail(b, m,
                            "the document expands to more than %u nodes (an alias bomb?); refusing",
                            YAML_MAX_NODES);
        return 0;
}

static int remember(struct builder *b, const yaml_char_t *anchor, struct ynode *n)
{
        if (!anchor)
                return 0;
        struct anchor *a = realloc(b->anchors, (b->n_anchors + 1) * sizeof(*a));
        if (!a)
                return -ENOMEM;
        b->anchors = a;
        b->anchors[b->n_anchors].name = strdup((const char *)anchor);
        b->anchors[b->n_anchors].node = n; /* borrowed: the node lives in the tree */
        if (!b->anchors[b->n_anchors].name)
                return -ENOMEM;
        b->n_anchors++;
        return 0;
}

/* Apply `<<` merge keys of a finished map: merged pairs come first, explicit keys override. */
static int key_cmp(const void *x, const void *y)
{
        const struct ynode *a = *(const struct ynode *const *)x,
                           *b = *(const struct ynode *const *)y;
        int r = strcmp(a->value, b->value);
        if (r)
                return r;
        return a->line != b->line ? (a->line < b->line ? -1 : 1)
                                  : (a->col < b->col ? -1 : a->col > b->col);
}

/* A key given twice in one map is an error (YAML says so; CircleCI too). Sorting keeps this
 * O(n log n) for huge maps. */
static int check_duplicate_keys(struct builder *b, const struct ynode *map)
{
        size_t n = map->n / 2;
        if (n < 2)
                return 0;
        const struct ynode **keys = malloc(n * sizeof(*keys));
        if (!keys)
                return drv_err(b->err, ENOMEM, "out of memory");
        for (size_t i = 0; i < n; i++)
                keys[i] = map->items[2 * i];
        qsort(keys, n, sizeof(*keys), key_cmp);
        int r = 0;
        for (size_t i = 1; i < n && r == 0; i++)
                if (strcmp(keys[i]->value, keys[i - 1]->value) == 0 &&
                    strcmp(keys[i]->value, "<<") != 0)
                        r = drv_err(b->err, EINVAL, "%s:%u:%u: duplicate key '%s' (first at %u:%u)",
                                    b->name, keys[i]->line, keys[i]->col, keys[i]->value,
                                    keys[i - 1]->line, keys[i - 1]->col);
        free(keys);
        return r;
}

static int apply_merges(struct builder *b, struct ynode *map)
{
        int dr = check_duplicate_keys(b, map);
        if (dr < 0)
                return dr;
        bool any = false;
        for (size_t i = 0; i + 1 < map->n; i += 2)
                if (map->items[i]->kind == Y_SCALAR && !map->items[i]->quoted &&
                    strcmp(map->items[i]->value, "<<") == 0)
                        any = true;
        if (!any)
                return 0;
        struct ynode *out = ynode_new(Y_MAP, map->line, map->col);
        if (!out)
                return -ENOMEM;
        int r = 0;
        for (size_t i = 0; r == 0 && i + 1 < map->n; i += 2) {
                struct ynode *k = map->items[i], *v = map->items[i + 1];
                if (!(k->kind == Y_SCALAR && !k->quoted && strcmp(k->value, "<<") == 0))
                        continue;
                struct ynode *single[1] = {v};
                struct ynode **srcs = v->kind == Y_SEQ ? v->items : single;
                size_t ns = v->kind == Y_SEQ ? v->n : 1;
                for (size_t s = 0; r == 0 && s < ns; s++) {
                        if (srcs[s]->kind != Y_MAP) {
                                r = drv_err(b->err, EINVAL,
                                            "%s:%u:%u: a << merge needs a map or a list of maps",
                                            b->name, srcs[s]->line, srcs[s]->col);
                                break;
                        }
                        for (size_t j = 0; r == 0 && j + 1 < srcs[s]->n; j += 2) {
                                const char *key = srcs[s]->items[j]->value;
                                if (key && (ynode_get(map, key) || ynode_get(out, key)))
                                        continue; /* explicit keys and earlier merges win */
                                struct ynode *kc = ynode_copy(srcs[s]->items[j]);
                                struct ynode *vc = ynode_copy(srcs[s]->items[j + 1]);
                                if (!kc || !vc || ynode_append(out, kc) < 0 ||
                                    ynode_append(out, vc) < 0) {
                                        ynode_free(kc);
                                        ynode_free(vc);
                                        r = -ENOMEM;
                                }
                        }
                }
        }
        /* the explicit pairs, moved */
        for (size_t i = 0; r == 0 && i + 1 < map->n; i += 2) {
                struct ynode *k = map->items[i];
                if (k->kind == Y_SCALAR && !k->quoted && strcmp(k->value, "<<") == 0)
                        continue;
                if (ynode_append(out, k) < 0 || ynode_append(out, map->items[i + 1]) < 0) {
                        r = -ENOMEM;
                        break;
                }
                map->items[i] = map->items[i + 1] = NULL;
        }
        if (r < 0) {
                ynode_free(out);
                return r == -ENOMEM ? drv_err(b->err, ENOMEM, "out of memory") : r;
        }
        for (size_t i = 0; i < map->n; i++)
                if (map->items[i])
                        (void)ynode_append(b->graveyard, map->items[i]); /* OOM: leaked, not
                                                                             freed while named */
        free(map->items);
        map->items = out->items;
        map->n = out->n;
        out->items = NULL;
        out->n = 0;
        ynode_free(out);
        return 0;
}

static int build(struct builder *b, yaml_event_t *ev, unsigned depth, struct ynode **out);

static int build_children(struct builder *b, struct ynode *n, yaml_event_type_t end, unsigned depth)
{
        for (;;) {
                yaml_event_t ev;
                if (!yaml_parser_parse(&b->parser, &ev))
                        return fail(b, &b->parser.problem_mark, "%s",
                                    b->parser.problem ? b->parser.problem : "invalid YAML");
                if (ev.type == end) {
                        yaml_event_delete(&ev);
                        return 0;
                }
                struct ynode *child = NULL;
                int r = build(b, &ev, depth + 1, &child);
                yaml_event_delete(&ev);
                if (r < 0)
                        return r;
                /* the compiler reads keys as strings: a list or map as a key is refused here */
                if (n->kind == Y_MAP && n->n % 2 == 0 && child->kind != Y_SCALAR) {
                        r = drv_err(b->err, EINVAL, "%s:%u:%u: a map key must be a string", b->name,
                                    child->line, child->col);
                        ynode_free(child);
                        return r;
                }
                if (ynode_append(n, child) < 0) {
                        ynode_free(child);
                        return drv_err(b->err, ENOMEM, "out of memory");
                }
        }
}

static int build(struct builder *b, yaml_event_t *ev, unsigned depth, struct ynode **out)
{
        const yaml_mark_t *m = &ev->start_mark;
        unsigned line = (unsigned)m->line + 1, col = (unsigned)m->column + 1;
        int r;
        if (depth > YAML_MAX_DEPTH)
                return fail(b, m, "nesting deeper than %u levels", YAML_MAX_DEPTH);
        switch (ev->type) {
        case YAML_SCALAR_EVENT: {
                if ((r = count(b, m, 1)) < 0)
                        return r;
                struct ynode *n = ynode_new(Y_SCALAR, line, col);
                if (!n || !(n->value = strndup((const char *)ev->data.scalar.value,
                                               ev->data.scalar.length))) {
                        ynode_free(n);
                        return drv_err(b->err, ENOMEM, "out of memory");
                }
                n->quoted = ev->data.scalar.style != YAML_PLAIN_SCALAR_STYLE;
                if ((r = remember(b, ev->data.scalar.anchor, n)) < 0) {
                        ynode_free(n);
                        return drv_err(b->err, ENOMEM, "out of memory");
                }
                *out = n;
                return 0;
        }
        case YAML_SEQUENCE_START_EVENT:
        case YAML_MAPPING_START_EVENT: {
                bool seq = ev->type == YAML_SEQUENCE_START_EVENT;
                if ((r = count(b, m, 1)) < 0)
                        return r;
                struct ynode *n = ynode_new(seq ? Y_SEQ : Y_MAP, line, col);
                if (!n)
                        return drv_err(b->err, ENOMEM, "out of memory");
                const yaml_char_t *anchor =
                    seq ? ev->data.sequence_start.anchor : ev->data.mapping_start.anchor;
                r = build_children(b, n, seq ? YAML_SEQUENCE_END_EVENT : YAML_MAPPING_END_EVENT,
                                   depth);
                if (r == 0 && !seq)
                        r = apply_merges(b, n);
                /* the anchor names the finished node (an alias inside itself is refused below
                 * because the anchor is not known yet) */
                if (r == 0 && remember(b, anchor, n) < 0)
                        r = drv_err(b->err, ENOMEM, "out of memory");
                if (r < 0) {
                        ynode_free(n);
                        return r;
                }
                *out = n;
                return 0;
        }
        case YAML_ALIAS_EVENT: {
                const char *name = (const char *)ev->data.alias.anchor;
                for (size_t i = b->n_anchors; i-- > 0;) {
                        if (strcmp(b->anchors[i].name, name) != 0)
                                continue;
                        if ((r = count(b, m, ynode_count(b->anchors[i].node))) < 0)
                                return r;
                        struct ynode *c = ynode_copy(b->anchors[i].node);
                        if (!c)
                                return drv_err(b->err, ENOMEM, "out of memory");
                        c->line = line;
                        c->col = col;
                        *out = c;
                        return 0;
                }
                return fail(b, m, "unknown alias *%s", name);
        }
        default:
                return fail(b, m, "unexpected YAML event");
        }
}

int ynode_parse(const char *name, const char *text, size_t len, struct ynode **out,
                struct drv_error *err)
{
        struct builder b = {.name = name, .err = err};
        struct ynode *root = NULL;
        int r = 0;
        if (len > YAML_MAX_BYTES)
                return drv_err(err, EFBIG, "%s: larger than %u bytes", name, YAML_MAX_BYTES);
        if (!(b.graveyard = ynode_new(Y_SEQ, 0, 0)))
                return drv_err(err, ENOMEM, "out of memory");
        if (!yaml_parser_initialize(&b.parser)) {
                ynode_free(b.graveyard);
                return drv_err(err, ENOMEM, "out of memory");
        }
        yaml_parser_set_input_string(&b.parser, (const unsigned char *)text, len);
        bool in_doc = false, done = false;
        while (!done && r == 0) {
                yaml_event_t ev;
                if (!yaml_parser_parse(&b.parser, &ev)) {
                        r = fail(&b, &b.parser.problem_mark, "%s",
                                 b.parser.problem ? b.parser.problem : "invalid YAML");
                        break;
                }
                switch (ev.type) {
                case YAML_STREAM_START_EVENT:
                        break;
                case YAML_DOCUMENT_START_EVENT:
                        if (root)
                                r = fail(&b, &ev.start_mark, "only one YAML document is allowed");
                        in_doc = true;
                        break;
                case YAML_DOCUMENT_END_EVENT:
                        in_doc = false;
                        break;
                case YAML_STREAM_END_EVENT:
                        done = true;
                        break;
                default:
                        if (!in_doc || root)
                                r = fail(&b, &ev.start_mark, "unexpected content");
                        else
                                r = build(&b, &ev, 0, &root);
                }
                yaml_event_delete(&ev);
        }
        yaml_parser_delete(&b.parser);
        ynode_free(b.graveyard);
        for (size_t i = 0; i < b.n_anchors; i++)
                free(b.anchors[i].name);
        free(b.anchors);
        if (r < 0) {
                ynode_free(root);
                return r;
        }
        if (!root)
                root = ynode_new(Y_MAP, 1, 1);
        if (!root)
                return drv_err(err, ENOMEM, "out of memory");
        *out = root;
        return 0;
}

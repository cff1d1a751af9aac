/* orbs.c: orbs in a config — inline (`orbs: {name: {commands, executors, jobs, orbs}}`) and from
 * the registry (`name: ns/orb@version`, found in orb directories or the cache, orb_store.c).
 * An orb is loaded on the first use of one of its elements (`name/element`). Its body is copied
 * once with every reference to its own elements qualified by its name (`greet` -> `name/greet`,
 * `nested/x` -> `name/nested/x`), so that elements refer to their own orb wherever they are
 * expanded, while what the config passes in (steps and executor arguments) keeps the config's
 * scope: CircleCI's scoping ("everything directly inside an orb is local to that orb"). */
#include "executor/config/internal.h"
#include "executor/config/orb.h"
#include "executor/jobspec.h"

#define MAX_ORBS      256 /* orbs loaded, nested ones included */
#define MAX_ORB_DEPTH 8   /* orbs using orbs */

struct orb {
        char *prefix;             /* "node", or "node/nested" for an orb that orb declares */
        unsigned depth;           /* 0 for the config's own orbs */
        const struct ynode *decl; /* "ns/name@version" or an inline map; borrowed */
        char *file;               /* a registry orb's source file (node positions), else NULL */
        struct ynode *source;     /* a registry orb's parsed source */
        struct ynode *body;       /* the orb with its references qualified */
        bool loaded, failed, used;
};

struct orb_table {
        struct orb **v;
        size_t n;
};

static struct orb *orb_find_prefix(struct cctx *c, const char *prefix, size_t len)
{
        for (size_t i = 0; c->orbs && i < c->orbs->n; i++)
                if (strlen(c->orbs->v[i]->prefix) == len &&
                    strncmp(c->orbs->v[i]->prefix, prefix, len) == 0)
                        return c->orbs->v[i];
        return NULL;
}

static bool orb_name_ok(const char *s)
{
        if (!s[0] || !((s[0] >= 'a' && s[0] <= 'z') || (s[0] >= 'A' && s[0] <= 'Z')))
                return false;
        return strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_") ==
               strlen(s);
}

/* Register the orbs declared in the map decls under prefix (NULL: the config's). */
static int orbs_register(struct cctx *c, const struct ynode *decls, const char *prefix,
                         unsigned depth)
{
        if (!decls)
                return 0;
        if (decls->kind != Y_MAP)
                return cerr(c, decls, "orbs must be a map of names to orbs");
        int r = 0;
        for (size_t i = 0; i < ynode_pairs(decls); i++) {
                const struct ynode *k = decls->items[2 * i], *v = decls->items[2 * i + 1];
                struct orb_ref ref;
                struct drv_error e = {0};
                if (!orb_name_ok(k->value)) {
                        r = cerr(c, k, "'%s' is not an orb name (letters, digits, - and _)",
                                 k->value);
                        continue;
                }
                if (v->kind == Y_SCALAR ? orb_ref_parse(v->value, &ref, &e) < 0
                                        : v->kind != Y_MAP) {
                        r = cerr(c, v, "orb '%s': %s", k->value,
                                 v->kind == Y_SCALAR ? e.message
                                                     : "must be a reference (namespace/name@"
                                                       "version) or an inline orb (a map)");
                        continue;
                }
                if (c->orbs->n >= MAX_ORBS)
                        return cerr(c, k, "more than %d orbs", MAX_ORBS);
                struct orb *o = calloc(1, sizeof(*o));
                struct orb **nv = realloc(c->orbs->v, (c->orbs->n + 1) * sizeof(*nv));
                if (!o || !nv) {
                        free(o);
                        if (nv)
                                c->orbs->v = nv;
                        return -ENOMEM;
                }
                c->orbs->v = nv;
                o->prefix = prefix ? drv_asprintf("%s/%s", prefix, k->value) : strdup(k->value);
                o->decl = v;
                o->depth = depth;
                if (!o->prefix) {
                        free(o);
                        return -ENOMEM;
                }
                c->orbs->v[c->orbs->n++] = o;
        }
        return r;
}

int orbs_init(struct cctx *c)
{
        c->orbs = calloc(1, sizeof(*c->orbs));
        if (!c->orbs)
                return -ENOMEM;
        const struct ynode *decls = ynode_get(c->root, "orbs");
        if (decls && !c->v21)
                return cerr(c, decls, "orbs need version 2.1");
        return orbs_register(c, decls, NULL, 0);
}

void orbs_mark_used(struct cctx *c, const char *name)
{
        const char *slash = strchr(name, '/');
        struct orb *o = slash ? orb_find_prefix(c, name, (size_t)(slash - name)) : NULL;
        if (o)
                o->used = true;
}

void orbs_finish(struct cctx *c)
{
        for (size_t i = 0; c->orbs && i < c->orbs->n; i++) {
                const struct orb *o = c->orbs->v[i];
                if (o->depth == 0 && !o->used)
                        cwarn(c, o->decl, "orb '%s' is declared but none of its elements is used",
                              o->prefix);
        }
}

void orbs_free(struct cctx *c)
{
        for (size_t i = 0; c->orbs && i < c->orbs->n; i++) {
                struct orb *o = c->orbs->v[i];
                ynode_free(o->body);
                ynode_free(o->source);
                free(o->file);
                free(o->prefix);
                free(o);
        }
        if (c->orbs)
                free(c->orbs->v);
        free(c->orbs);
        c->orbs = NULL;
}

static void set_file(struct ynode *n, const char *file)
{
        n->file = file;
        for (size_t i = 0; i < n->n; i++)
                set_file(n->items[i], file);
}

/* --- qualifying an orb's references to its own elements --- */

/* The qualified name of a reference inside orb src (prefix), or NULL when it is not local. */
static char *qualify(const struct ynode *src, const char *prefix, const char *kind,
                     const char *name)
{
        const char *slash = strchr(name, '/');
        if (!slash && !ynode_get(ynode_get(src, kind), name))
                return NULL;
        if (slash) {
                char first[ORB_PART_MAX];
                size_t n = (size_t)(slash - name);
                if (n >= sizeof(first))
                        return NULL;
                memcpy(first, name, n);
                first[n] = '\0';
                if (!ynode_get(ynode_get(src, "orbs"), first))
                        return NULL;
        }
        return drv_asprintf("%s/%s", prefix, name);
}

static int rename_scalar(struct ynode *n, const struct ynode *src, const char *prefix,
                         const char *kind)
{
        if (!n || n->kind != Y_SCALAR)
                return 0;
        char *q = qualify(src, prefix, kind, n->value);
        if (!q)
                return 0;
        free(n->value);
        n->value = q;
        return 0;
}

static void qualify_steps(struct ynode *steps, const struct ynode *src, const char *prefix);

static void qualify_executor(struct ynode *ex, const struct ynode *src, const char *prefix)
{
        rename_scalar(ex && ex->kind == Y_MAP ? ynode_get(ex, "name") : ex, src, prefix,
                      "executors");
}

static void qualify_step(struct ynode *s, const struct ynode *src, const char *prefix)
{
        struct ynode *key = s->kind == Y_MAP && s->n == 2 ? s->items[0] : s;
        if (key->kind != Y_SCALAR)
                return;
        if (strcmp(key->value, "when") == 0 || strcmp(key->value, "unless") == 0) {
                qualify_steps(ynode_get(s->items[1], "steps"), src, prefix);
                return;
        }
        if (jobspec_step_type_from_name(key->value) >= 0 || strcmp(key->value, "steps") == 0)
                return;
        rename_scalar(key, src, prefix, "commands");
}

static void qualify_steps(struct ynode *steps, const struct ynode *src, const char *prefix)
{
        for (size_t i = 0; steps && steps->kind == Y_SEQ && i < steps->n; i++)
                qualify_step(steps->items[i], src, prefix);
}

/* Defaults of steps and executor parameters are the orb's own too. */
static void qualify_params(struct ynode *decl, const struct ynode *src, const char *prefix)
{
        for (size_t i = 0; i < ynode_pairs(decl); i++) {
                struct ynode *d = decl->items[2 * i + 1];
                const struct ynode *t = ynode_get(d, "type");
                struct ynode *def = ynode_get(d, "default");
                if (!t || t->kind != Y_SCALAR || !def)
                        continue;
                if (strcmp(t->value, "steps") == 0)
                        qualify_steps(def, src, prefix);
                else if (strcmp(t->value, "executor") == 0)
                        qualify_executor(def, src, prefix);
        }
}

static void qualify_body(struct ynode *body, const struct ynode *src, const char *prefix)
{
        static const char *const kinds[] = {"commands", "executors", "jobs"};
        for (size_t k = 0; k < DRV_ARRAY_SIZE(kinds); k++) {
                struct ynode *m = ynode_get(body, kinds[k]);
                for (size_t i = 0; i < ynode_pairs(m); i++) {
                        struct ynode *el = m->items[2 * i + 1];
                        qualify_params(ynode_get(el, "parameters"), src, prefix);
                        qualify_steps(ynode_get(el, "steps"), src, prefix);
                        if (k == 2)
                                qualify_executor(ynode_get(el, "executor"), src, prefix);
                }
        }
}

/* --- loading --- */

static int orb_missing(struct cctx *c, const struct orb *o, const struct orb_ref *ref)
{
        const struct config_opts *op = c->opts;
        const char *first = op->orb_dirs && op->orb_dirs[0] ? op->orb_dirs[0] : NULL;
        _cleanup_free_ char *cache = op->orb_cache ? strdup(op->orb_cache) : orb_cache_dir();
        bool exact = strchr(ref->version, '.') && strchr(strchr(ref->version, '.') + 1, '.');
        return cerr(c, o->decl,
                    "orb '%s' (%s) is not available offline: put its source (what `circleci "
                    "orb source %s/%s@%s` prints) in %s/%s/%s@%s.yml, or run `drover orb pull "
                    "%s` (it goes to %s), or `drover run --pull-orbs`",
                    o->prefix, o->decl->value, ref->ns, ref->name, exact ? ref->version : "VERSION",
                    first ? first : ".circleci/orbs", ref->ns, ref->name,
                    exact ? ref->version : "VERSION", o->decl->value,
                    cache ? cache : "the orb cache");
}

/* Read and parse a registry orb's source into o->source. */
static int orb_read(struct cctx *c, struct orb *o)
{
        struct orb_ref ref;
        struct drv_error e = {0};
        if (orb_ref_parse(o->decl->value, &ref, &e) < 0)
                return cerr(c, o->decl, "%s", e.message);
        const struct config_opts *op = c->opts;
        _cleanup_free_ char *cache = op->orb_cache ? strdup(op->orb_cache) : orb_cache_dir();
        _cleanup_free_ char *version = NULL;
        int r = orb_find(op->orb_dirs, cache, &ref, &o->file, &version, &e);
        if (r == -ENOENT && op->orb_fetch) {
                r = op->orb_fetch(op->orb_fetch_arg, o->decl->value, &e);
                if (r < 0)
                        return cerr(c, o->decl, "orb '%s' (%s): %s", o->prefix, o->decl->value,
                                    e.message);
                r = orb_find(op->orb_dirs, cache, &ref, &o->file, &version, &e);
        }
        if (r == -ENOENT)
                return orb_missing(c, o, &ref);
        if (r < 0)
                return cerr(c, o->decl, "orb '%s': %s", o->prefix, e.message);
        _cleanup_free_ char *text = NULL;
        size_t len;
        if ((r = drv_read_file(o->file, &text, &len, YAML_MAX_BYTES, &e)) < 0 ||
            (r = orb_verify_digest(o->file, text, len, &e)) < 0 ||
            (r = ynode_parse(o->file, text, len, &o->source, &e)) < 0)
                return cerr(c, o->decl, "orb '%s' (%s): %s", o->prefix, o->decl->value, e.message);
        set_file(o->source, o->file);
        return 0;
}

static int orb_load(struct cctx *c, struct orb *o)
{
        static const char *const keys[] = {"version",    "description", "display", "orbs",
                                           "commands",   "executors",   "jobs",    "examples",
                                           "parameters", NULL};
        o->loaded = true;
        o->failed = true; /* until the end */
        if (o->depth >= MAX_ORB_DEPTH)
                return cerr(c, o->decl, "orbs use orbs deeper than %d", MAX_ORB_DEPTH);
        if (o->decl->kind == Y_SCALAR && orb_read(c, o) < 0)
                return -EINVAL;
        const struct ynode *src = o->source ? o->source : o->decl;
        if (src->kind != Y_MAP)
                return cerr(c, src, "orb '%s' must be a map", o->prefix);
        int r = 0;
        for (size_t i = 0; i < ynode_pairs(src); i++) {
                bool ok = false;
                for (size_t k = 0; keys[k]; k++)
                        ok = ok || strcmp(src->items[2 * i]->value, keys[k]) == 0;
                if (!ok)
                        r = cerr(c, src->items[2 * i], "unknown key '%s' in orb '%s'",
                                 src->items[2 * i]->value, o->prefix);
        }
        static const char *const maps[] = {"commands", "executors", "jobs", "parameters"};
        for (size_t k = 0; k < DRV_ARRAY_SIZE(maps); k++) {
                const struct ynode *m = ynode_get(src, maps[k]);
                if (m && m->kind != Y_MAP && !ynode_is_null(m))
                        r = cerr(c, m, "%s of orb '%s' must be a map", maps[k], o->prefix);
        }
        if (r < 0 || orbs_register(c, ynode_get(src, "orbs"), o->prefix, o->depth + 1) < 0)
                return -EINVAL;
        if (!(o->body = ynode_copy(src)))
                return -ENOMEM;
        qualify_body(o->body, src, o->prefix);
        o->failed = false;
        return 0;
}

/* The orb that defines name ("a/b/x" -> orb "a/b"), loading it and those it is nested in. */
static int orb_of(struct cctx *c, const char *name, const struct ynode *where, struct orb **out)
{
        struct orb *o = NULL;
        for (const char *s = strchr(name, '/'); s; s = strchr(s + 1, '/')) {
                struct orb *next = orb_find_prefix(c, name, (size_t)(s - name));
                if (!next) {
                        if (o)
                                break; /* "a/x/y": x is not an orb of a */
                        return cerr(c, where, "'%s': no orb '%.*s' is declared in orbs", name,
                                    (int)(s - name), name);
                }
                o = next;
                o->used = true;
                if (!o->loaded)
                        orb_load(c, o);
                if (o->failed)
                        return -EINVAL; /* reported when it was loaded */
        }
        *out = o;
        return 0;
}

int config_lookup(struct cctx *c, const char *kind, const char *name, const struct ynode *where,
                  const struct ynode **out)
{
        *out = NULL;
        if (!strchr(name, '/')) {
                *out = ynode_get(ynode_get(c->root, kind), name);
                return *out ? 0 : -ENOENT;
        }
        struct orb *o = NULL;
        int r = orb_of(c, name, where, &o);
        if (r < 0)
                return r;
        *out = ynode_get(ynode_get(o->body, kind), name + strlen(o->prefix) + 1);
        return *out ? 0 : -ENOENT;
}

int params_bind_element(struct cctx *c, const char *name, const struct ynode *decl,
                        const struct ynode *args, const char *what, const struct ynode *where,
                        struct cparams *out)
{
        int r = params_bind(c, decl, args, what, where, out);
        struct orb *o = NULL;
        if (r < 0 || !strchr(name, '/') || orb_of(c, name, where, &o) < 0 || !o)
                return r;
        /* orb-level parameters: their defaults, under the element's own of the same name */
        const struct ynode *od = ynode_get(o->body, "parameters");
        for (size_t i = 0; i < ynode_pairs(od); i++) {
                const char *pn = od->items[2 * i]->value;
                const struct ynode *def = ynode_get(od->items[2 * i + 1], "default");
                bool have = false;
                for (size_t k = 0; k < out->n; k++)
                        have = have || strcmp(out->v[k].name, pn) == 0;
                if (have || !def)
                        continue;
                struct cparam *nv = realloc(out->v, (out->n + 2) * sizeof(*nv));
                if (!nv)
                        return -ENOMEM;
                out->v = nv;
                out->v[out->n++] = (struct cparam){pn, def};
        }
        return r;
}

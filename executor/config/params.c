/* params.c: parameters of commands, jobs and executors — binding with type checks, and
 * `<< parameters.x >>` / `<< pipeline.x >>` / `<< matrix.x >>` substitution. */
#include "executor/config/internal.h"

#include <ctype.h>
#include <regex.h>

/* "FILE:LINE:COL: message" (caller frees; NULL on OOM). */
static char *located(const struct cctx *c, const struct ynode *n, const char *fmt, va_list ap)
{
        char msg[768];
        vsnprintf(msg, sizeof(msg), fmt, ap);
        return n ? drv_asprintf("%s:%u:%u: %s", n->file ? n->file : c->file, n->line, n->col, msg)
                 : drv_asprintf("%s: %s", c->file, msg);
}

void cwarn(struct cctx *c, const struct ynode *n, const char *fmt, ...)
{
        va_list ap;
        va_start(ap, fmt);
        char *line = located(c, n, fmt, ap);
        va_end(ap);
        for (size_t i = 0; line && c->warnings && c->warnings[i]; i++)
                if (strcmp(c->warnings[i], line) == 0) {
                        free(line);
                        return;
                }
        if (line && drv_strv_len(c->warnings) < MAX_ERRORS)
                drv_strv_push_take(&c->warnings, line);
        else
                free(line);
}

int cerr(struct cctx *c, const struct ynode *n, const char *fmt, ...)
{
        if (c->n_errors > MAX_ERRORS)
                return -EINVAL;
        if (c->n_errors == MAX_ERRORS) {
                char *last = drv_asprintf("%s: more than %d errors; stopped listing them", c->file,
                                          MAX_ERRORS);
                if (last && drv_strv_push_take(&c->errors, last) == 0)
                        c->n_errors++;
                return -EINVAL;
        }
        va_list ap;
        va_start(ap, fmt);
        char *line = located(c, n, fmt, ap);
        va_end(ap);
        /* the same node can be compiled more than once (a job standalone and in a workflow) */
        for (size_t i = 0; line && c->errors && c->errors[i]; i++)
                if (strcmp(c->errors[i], line) == 0) {
                        free(line);
                        line = NULL;
                }
        if (line && drv_strv_push_take(&c->errors, line) == 0)
                c->n_errors++;
        return -EINVAL;
}

const char *cscalar(struct cctx *c, const struct ynode *n, const char *what)
{
        if (!n || n->kind != Y_SCALAR) {
                cerr(c, n, "%s must be a string", what);
                return NULL;
        }
        return n->value;
}

void params_free(struct cparams *p)
{
        free(p->v);
        p->v = NULL;
        p->n = 0;
}

static bool is_env_var_name(const char *s)
{
        if (!(isalpha((unsigned char)s[0]) || s[0] == '_'))
                return false;
        for (; *s; s++)
                if (!isalnum((unsigned char)*s) && *s != '_')
                        return false;
        return true;
}

static int check_type(struct cctx *c, const char *name, const struct ynode *decl,
                      const struct ynode *v)
{
        const struct ynode *t = ynode_get(decl, "type");
        const char *type = t && t->kind == Y_SCALAR ? t->value : NULL;
        bool b;
        if (!type)
                return cerr(c, decl, "parameter '%s' has no type", name);
        if (strcmp(type, "string") == 0) {
                if (v->kind != Y_SCALAR)
                        return cerr(c, v, "parameter '%s' must be a string", name);
        } else if (strcmp(type, "boolean") == 0) {
                if (ynode_bool(v, &b) < 0)
                        return cerr(c, v, "parameter '%s' must be a boolean", name);
        } else if (strcmp(type, "integer") == 0) {
                uint64_t u;
                const char *s = v->kind == Y_SCALAR ? v->value : "";
                if (drv_parse_u64(s[0] == '-' ? s + 1 : s, &u) < 0)
                        return cerr(c, v, "parameter '%s' must be an integer", name);
        } else if (strcmp(type, "enum") == 0) {
                const struct ynode *e = ynode_get(decl, "enum");
                if (!e || e->kind != Y_SEQ)
                        return cerr(c, decl, "enum parameter '%s' has no enum list", name);
                bool ok = false;
                for (size_t i = 0; v->kind == Y_SCALAR && i < e->n; i++)
                        if (e->items[i]->kind == Y_SCALAR &&
                            strcmp(e->items[i]->value, v->value) == 0)
                                ok = true;
                if (!ok)
                        return cerr(c, v, "parameter '%s': '%s' is not one of its enum values",
                                    name, v->kind == Y_SCALAR ? v->value : "(not a string)");
        } else if (strcmp(type, "env_var_name") == 0) {
                if (v->kind != Y_SCALAR || !is_env_var_name(v->value))
                        return cerr(c, v, "parameter '%s' must be an environment variable name",
                                    name);
        } else if (strcmp(type, "steps") == 0) {
                if (v->kind != Y_SEQ)
                        return cerr(c, v, "parameter '%s' must be a list of steps", name);
        } else if (strcmp(type, "executor") == 0) {
                if (v->kind != Y_SCALAR && v->kind != Y_MAP)
                        return cerr(c, v, "parameter '%s' must name an executor", name);
        } else {
                return cerr(c, t, "parameter '%s' has an unknown type '%s'", name, type);
        }
        return 0;
}

/* A parameter declaration: a map of type (known), default, description, enum (for enum). */
static int check_decl(struct cctx *c, const char *name, const struct ynode *d)
{
        static const char *const keys[] = {"type", "default", "description", "enum", NULL};
        static const char *const types[] = {"string",       "boolean", "integer",  "enum",
                                            "env_var_name", "steps",   "executor", NULL};
        if (!d || d->kind != Y_MAP)
                return cerr(c, d, "parameter '%s' must be a map with a type", name);
        int r = 0;
        for (size_t i = 0; i < ynode_pairs(d); i++) {
                bool ok = false;
                for (size_t k = 0; keys[k]; k++)
                        ok = ok || strcmp(d->items[2 * i]->value, keys[k]) == 0;
                if (!ok)
                        r = cerr(c, d->items[2 * i], "unknown key '%s' in parameter '%s'",
                                 d->items[2 * i]->value, name);
        }
        const struct ynode *t = ynode_get(d, "type");
        bool known = false;
        for (size_t k = 0; t && t->kind == Y_SCALAR && types[k]; k++)
                known = known || strcmp(t->value, types[k]) == 0;
        if (!t)
                return cerr(c, d, "parameter '%s' has no type", name);
        if (!known)
                return cerr(c, t, "parameter '%s' has an unknown type '%s'", name,
                            t->kind == Y_SCALAR ? t->value : "(not a string)");
        const struct ynode *e = ynode_get(d, "enum");
        if (strcmp(t->value, "enum") == 0 && (!e || e->kind != Y_SEQ || e->n == 0))
                return cerr(c, d, "enum parameter '%s' has no enum list", name);
        return r;
}

int params_bind(struct cctx *c, const struct ynode *decl, const struct ynode *args,
                const char *what, const struct ynode *where, struct cparams *out)
{
        size_t n = ynode_pairs(decl);
        int r = 0;
        out->v = calloc(n + 1, sizeof(*out->v));
        out->n = 0;
        if (!out->v)
                return -ENOMEM;
        if (decl && decl->kind != Y_MAP)
                return cerr(c, decl, "parameters of %s must be a map", what);
        for (size_t i = 0; i < n; i++) {
                const char *name = decl->items[2 * i]->value;
                const struct ynode *d = decl->items[2 * i + 1];
                if (check_decl(c, name, d) < 0) {
                        r = -EINVAL;
                        continue;
                }
                const struct ynode *v = ynode_get(args, name);
                if (!v)
                        v = ynode_get(d, "default");
                if (!v) {
                        r = cerr(c, where, "%s: missing required parameter '%s'", what, name);
                        continue;
                }
                if (check_type(c, name, d, v) < 0) {
                        r = -EINVAL;
                        continue;
                }
                out->v[out->n++] = (struct cparam){name, v};
        }
        /* every argument must be a declared parameter (a few keys are not parameters) */
        static const char *const reserved[] = {
            "name", "requires",  "context",    "filters",      "matrix",
            "type", "pre-steps", "post-steps", "serial-group", NULL};
        for (size_t i = 0; i < ynode_pairs(args); i++) {
                const char *k = args->items[2 * i]->value;
                bool ok = ynode_get(decl, k) != NULL;
                for (size_t j = 0; !ok && reserved[j]; j++)
                        ok = strcmp(k, reserved[j]) == 0;
                if (!ok)
                        r = cerr(c, args->items[2 * i], "%s has no parameter '%s'", what, k);
        }
        return r;
}

const struct ynode *cparams_get(const struct cparams *p, const char *name)
{
        for (size_t i = 0; p && i < p->n; i++)
                if (strcmp(p->v[i].name, name) == 0)
                        return p->v[i].value;
        return NULL;
}

static void xstr(struct xval *out, const char *s)
{
        *out = s ? (struct xval){.t = X_STR, .s = strdup(s)} : (struct xval){0};
}

static void xjson(struct xval *out, json_t *v)
{
        if (json_is_string(v))
                xstr(out, json_string_value(v));
        else if (json_is_boolean(v))
                *out = (struct xval){.t = X_BOOL, .b = json_is_true(v)};
        else if (json_is_number(v))
                *out = (struct xval){.t = X_NUM, .n = json_number_value(v)};
        else
                *out = (struct xval){0};
}

/* pipeline.project.type: the VCS of the project slug (gh/ORG/REPO -> github). */
static const char *project_type(const char *slug)
{
        static const char *const map[][2] = {{"gh/", "github"},        {"github/", "github"},
                                             {"bb/", "bitbucket"},     {"bitbucket/", "bitbucket"},
                                             {"gl/", "gitlab"},        {"gitlab/", "gitlab"},
                                             {"circleci/", "circleci"}};
        for (size_t i = 0; slug && i < DRV_ARRAY_SIZE(map); i++)
                if (drv_startswith(slug, map[i][0]))
                        return map[i][1];
        return "local";
}

int pipeline_lookup(struct cctx *c, const char *key, struct xval *out)
{
        const struct config_opts *o = c->opts;
        *out = (struct xval){0};
        const struct {
                const char *key;
                const char *value;
        } strs[] = {{"git.branch", o->branch},
                    {"git.tag", o->tag},
                    {"git.revision", o->revision},
                    {"git.base_revision", o->base_revision ? o->base_revision : ""},
                    {"project.git_url", o->repo_url},
                    {"project.slug", o->project ? o->project : ""},
                    {"project.type", project_type(o->project)},
                    {"id", o->workflow_id},
                    {"trigger_source", config_trigger_source(o->trigger)},
                    {"schedule.name", o->schedule_name ? o->schedule_name : ""},
                    {"schedule.id", ""}};
        for (size_t i = 0; i < DRV_ARRAY_SIZE(strs); i++)
                if (strcmp(key, strs[i].key) == 0) {
                        /* "Empty if ..." (CircleCI's pipeline values): never null */
                        xstr(out, strs[i].value ? strs[i].value : "");
                        return 0;
                }
        if (strcmp(key, "number") == 0) {
                *out = (struct xval){.t = X_NUM, .n = (double)o->build_num};
                return 0;
        }
        if (strcmp(key, "git.branch.is_default") == 0) {
                const char *def = o->default_branch ? o->default_branch : "main";
                *out = (struct xval){.t = X_BOOL, .b = o->branch && strcmp(o->branch, def) == 0};
                return 0;
        }
        if (drv_startswith(key, "trigger_parameters.")) {
                /* what a trigger sends depends on the trigger: unknown ones are null (empty) */
                json_t *v = o->trigger_parameters;
                _cleanup_free_ char *path = strdup(key + strlen("trigger_parameters."));
                char *save = NULL;
                for (char *t = path ? strtok_r(path, ".", &save) : NULL; t && v;
                     t = strtok_r(NULL, ".", &save))
                        v = json_object_get(v, t);
                xjson(out, v);
                return 0;
        }
        if (drv_startswith(key, "parameters.")) {
                const char *name = key + strlen("parameters.");
                json_t *v = json_object_get(o->pipeline_parameters, name);
                if (v) {
                        xjson(out, v);
                        return 0;
                }
                /* declared defaults of the top-level `parameters:` */
                const struct ynode *decl = ynode_get(ynode_get(c->root, "parameters"), name);
                const struct ynode *def = ynode_get(decl, "default");
                if (def && def->kind == Y_SCALAR) {
                        xval_from_scalar(def, out);
                        if (out->t == X_NULL)
                                xstr(out, def->value);
                        return 0;
                }
        }
        return -ENOENT;
}

/* Value of a pipeline reference as text (caller frees), NULL when unknown. */
static char *pipeline_value(struct cctx *c, const char *key)
{
        struct xval v;
        if (pipeline_lookup(c, key, &v) < 0)
                return NULL;
        char *s = v.t == X_STR ? TAKE_PTR(v.s) : expr_render(&v);
        xval_release(&v);
        return s;
}

/* A plain reference: parameters.x, pipeline.x.y or matrix.x and nothing else. */
static bool plain_ref(const char *a, size_t n)
{
        if (!(drv_startswith(a, "parameters.") || drv_startswith(a, "pipeline.") ||
              drv_startswith(a, "matrix.")))
                return false;
        for (size_t i = 0; i < n; i++)
                if (!isalnum((unsigned char)a[i]) && !strchr("_-.", a[i]))
                        return false;
        return true;
}

/* Find the next `<< ... >>` in s that is a reference or an expression (it names a pipeline
 * value, parameter or matrix value: a shell heredoc `<< EOF >>` is neither); returns its start
 * and sets ref (trimmed), end and *expr (not a plain reference). */
static const char *next_ref(const char *s, char *ref, size_t rn, const char **end, bool *expr)
{
        const char *open = strstr(s, "<<");
        while (open) {
                if (open > s && open[-1] == '\\') { /* `\<<` is a literal `<<` */
                        open = strstr(open + 2, "<<");
                        continue;
                }
                const char *close = strstr(open + 2, ">>");
                if (!close)
                        return NULL;
                const char *a = open + 2, *b = close;
                while (a < b && isspace((unsigned char)*a))
                        a++;
                while (b > a && isspace((unsigned char)b[-1]))
                        b--;
                if ((size_t)(b - a) < rn) {
                        snprintf(ref, rn, "%.*s", (int)(b - a), a);
                        *expr = !plain_ref(a, (size_t)(b - a));
                        /* an expression is one line that names a variable: a heredoc
                         * `cat <<EOF` ... `>> f` around shell text is not */
                        if (!*expr || (!strchr(ref, '\n') && expr_mentions_vars(ref))) {
                                *end = close + 2;
                                return open;
                        }
                }
                open = strstr(open + 2, "<<");
        }
        return NULL;
}

/* Text of one `<< ... >>`: NULL with *defer when it is a matrix value bound later (p is NULL),
 * NULL with an error recorded otherwise. Caller frees. */
static char *ref_value(struct cctx *c, const struct ynode *where, const char *ref, bool expr,
                       const struct cparams *p, bool *defer)
{
        *defer = false;
        if (!p && strstr(ref, "matrix.")) {
                *defer = true; /* matrix values are substituted by the workflow pass */
                return NULL;
        }
        if (expr) {
                struct xval v;
                if (expr_eval(c, where, ref, p, &v) < 0)
                        return NULL;
                char *s = expr_render(&v);
                xval_release(&v);
                return s;
        }
        if (drv_startswith(ref, "pipeline.")) {
                char *val = pipeline_value(c, ref + strlen("pipeline."));
                if (!val)
                        cerr(c, where, "unknown pipeline value '%s'", ref);
                return val;
        }
        const struct ynode *v = cparams_get(p, strchr(ref, '.') + 1);
        if (v && v->kind != Y_SCALAR) {
                cerr(c, where, "<< %s >> is not a string and cannot be part of one", ref);
                return NULL;
        }
        if (!v) {
                cerr(c, where, "unknown parameter '%s'", ref);
                return NULL;
        }
        /* pipeline values are substituted everywhere first in CircleCI, so also in a value
         * that came from a parameter (a default `<< pipeline.parameters.env >>`) */
        if (strstr(v->value, "<<") && strstr(v->value, "pipeline.")) {
                static const struct cparams none = {0};
                return params_subst_str(c, where, v->value, &none);
        }
        return strdup(v->value);
}

/* Text with each `\<<` written as `<<` (CircleCI's escape for a literal `<<`). */
static int append_unescaped(struct strbuf *sb, const char *s, size_t n)
{
        int r = 0;
        for (const char *e; r == 0 && n && (e = memmem(s, n, "\\<<", 3));) {
                r = strbuf_append(sb, s, (size_t)(e - s));
                n -= (size_t)(e + 1 - s);
                s = e + 1;
        }
        return r ?: strbuf_append(sb, s, n);
}

char *params_subst_str(struct cctx *c, const struct ynode *where, const char *s,
                       const struct cparams *p)
{
        struct strbuf sb = STRBUF_INIT;
        char ref[512];
        const char *end;
        bool expr, defer;
        int r = 0;
        for (const char *at; r == 0 && (at = next_ref(s, ref, sizeof(ref), &end, &expr));) {
                r = append_unescaped(&sb, s, (size_t)(at - s));
                _cleanup_free_ char *val = ref_value(c, where, ref, expr, p, &defer);
                if (defer)
                        r = r ?: strbuf_append(&sb, at, (size_t)(end - at));
                else if (!val)
                        r = -EINVAL;
                else
                        r = r ?: strbuf_puts(&sb, val);
                s = end;
        }
        r = r ?: append_unescaped(&sb, s, strlen(s));
        if (r < 0) {
                strbuf_release(&sb);
                return NULL;
        }
        return strbuf_detach(&sb);
}

struct ynode *params_subst(struct cctx *c, const struct ynode *n, const struct cparams *p)
{
        if (n->kind == Y_SCALAR) {
                char ref[512];
                const char *end;
                bool expr;
                const char *at = next_ref(n->value, ref, sizeof(ref), &end, &expr);
                if (!at && !strstr(n->value, "\\<<"))
                        return ynode_copy(n);
                /* a whole-scalar reference to a list or map parameter becomes that value */
                if (at && at == n->value && *end == '\0' && !expr &&
                    !drv_startswith(ref, "pipeline.")) {
                        const struct ynode *v = cparams_get(p, strchr(ref, '.') + 1);
                        if (v && v->kind != Y_SCALAR)
                                return params_subst(c, v, NULL);
                }
                char *s = params_subst_str(c, n, n->value, p);
                if (!s)
                        return NULL;
                struct ynode *out = ynode_scalar(s, n->line, n->col);
                free(s);
                if (out)
                        out->quoted = n->quoted;
                return out;
        }
        struct ynode *out = ynode_new(n->kind, n->line, n->col);
        if (!out)
                return NULL;
        for (size_t i = 0; i < n->n; i++) {
                struct ynode *ch = params_subst(c, n->items[i], p);
                if (!ch) {
                        ynode_free(out);
                        return NULL;
                }
                /* a steps parameter inside a list of steps is spliced in */
                if (n->kind == Y_SEQ && ch->kind == Y_SEQ && n->items[i]->kind == Y_SCALAR) {
                        for (size_t j = 0; j < ch->n; j++) {
                                if (ynode_append(out, ch->items[j]) < 0) {
                                        ynode_free(ch);
                                        ynode_free(out);
                                        return NULL;
                                }
                                ch->items[j] = NULL;
                        }
                        ch->n = 0;
                        ynode_free(ch);
                        continue;
                }
                if (ynode_append(out, ch) < 0) {
                        ynode_free(ch);
                        ynode_free(out);
                        return NULL;
                }
        }
        return out;
}

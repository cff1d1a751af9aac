/* expr.c: CircleCI config expressions — `<< pipeline.git.branch == "main" and 10 or 1 >>`,
 * string `filters:` and workflow `when:` — with the documented grammar only:
 * literals (double-quoted strings, numbers, true, false, null, /regex/ after matches),
 * pipeline values and parameters, parentheses, and the operators or, and, ==, !=, starts-with,
 * matches, >=, >, <=, <, not. Anything else is an error that names the construct. */
#include "executor/config/internal.h"

#include <ctype.h>
#include <math.h>
#include <regex.h>

#define EXPR_MAX_DEPTH 64

struct xp {
        struct cctx *c;
        const struct ynode *where;
        const struct cparams *p;
        const char *text;
        const char *s; /* cursor */
        unsigned depth;
        int err;
};

#define OPERATORS "and, or, not, ==, !=, starts-with, matches, >=, >, <=, < and parentheses"

void xval_release(struct xval *v)
{
        free(v->s);
        *v = (struct xval){0};
}

bool expr_truthy(const struct xval *v)
{
        switch (v->t) {
        case X_BOOL:
                return v->b;
        case X_NUM:
                return v->n != 0 && !isnan(v->n);
        case X_STR:
                return v->s && v->s[0];
        default:
                return false;
        }
}

char *expr_render(const struct xval *v)
{
        switch (v->t) {
        case X_BOOL:
                return strdup(v->b ? "true" : "false");
        case X_NUM:
                if (v->n == floor(v->n) && fabs(v->n) < 1e15)
                        return drv_asprintf("%lld", (long long)v->n);
                return drv_asprintf("%g", v->n);
        case X_STR:
                return strdup(v->s ? v->s : "");
        default:
                return strdup("");
        }
}

static int fail(struct xp *x, const char *fmt, const char *what)
{
        if (x->err == 0) {
                char msg[300];
                snprintf(msg, sizeof(msg), fmt, what);
                x->err = cerr(x->c, x->where, "expression '%s': %s", x->text, msg);
        }
        return -EINVAL;
}

static void skip_ws(struct xp *x)
{
        while (isspace((unsigned char)*x->s))
                x->s++;
}

static bool ident_char(char ch)
{
        return isalnum((unsigned char)ch) || ch == '_' || ch == '-' || ch == '.';
}

/* The keyword at the cursor (a whole word), without consuming it. */
static bool at_word(struct xp *x, const char *w)
{
        size_t n = strlen(w);
        return strncmp(x->s, w, n) == 0 && !ident_char(x->s[n]);
}

static bool take(struct xp *x, const char *tok, bool word)
{
        skip_ws(x);
        if (word ? !at_word(x, tok) : strncmp(x->s, tok, strlen(tok)) != 0)
                return false;
        x->s += strlen(tok);
        return true;
}

/* A YAML scalar as an expression value: unquoted booleans and numbers keep their type. */
void xval_from_scalar(const struct ynode *n, struct xval *out)
{
        bool b;
        *out = (struct xval){0};
        if (!n || ynode_is_null(n))
                return;
        if (!n->quoted && ynode_bool(n, &b) == 0) {
                *out = (struct xval){.t = X_BOOL, .b = b};
                return;
        }
        char *end = NULL;
        double d = strtod(n->value, &end);
        if (!n->quoted && n->value[0] && end && *end == '\0' &&
            !isspace((unsigned char)n->value[0])) {
                *out = (struct xval){.t = X_NUM, .n = d};
                return;
        }
        *out = (struct xval){.t = X_STR, .s = strdup(n->value)};
}

static int parse_or(struct xp *x, struct xval *out);

static int string_lit(struct xp *x, char close, struct xval *out)
{
        struct strbuf sb = STRBUF_INIT;
        x->s++;
        while (*x->s && *x->s != close) {
                if (*x->s == '\\' && x->s[1])
                        x->s++;
                strbuf_append(&sb, x->s, 1);
                x->s++;
        }
        if (*x->s != close) {
                strbuf_release(&sb);
                return fail(x, "%s", "unterminated string or regex");
        }
        x->s++;
        *out = (struct xval){.t = X_STR, .s = strbuf_detach(&sb)};
        if (!out->s)
                out->s = strdup("");
        return 0;
}

static int variable(struct xp *x, struct xval *out)
{
        const char *start = x->s;
        while (ident_char(*x->s))
                x->s++;
        _cleanup_free_ char *name = strndup(start, (size_t)(x->s - start));
        if (!name)
                return -ENOMEM;
        if (*x->s == '(')
                return fail(x, "function calls ('%s(...)') are not supported", name);
        static const char *const words[] = {"true", "false", "null"};
        for (int i = 0; i < 3; i++)
                if (strcmp(name, words[i]) == 0) {
                        *out = i < 2 ? (struct xval){.t = X_BOOL, .b = i == 0} : (struct xval){0};
                        return 0;
                }
        if (drv_startswith(name, "pipeline.")) {
                if (pipeline_lookup(x->c, name + strlen("pipeline."), out) < 0)
                        return fail(x, "unknown pipeline value '%s'", name);
                return 0;
        }
        if (drv_startswith(name, "parameters.") || drv_startswith(name, "matrix.")) {
                const struct ynode *v = cparams_get(x->p, strchr(name, '.') + 1);
                if (!v || v->kind != Y_SCALAR)
                        return fail(x, "unknown or non-string parameter '%s'", name);
                xval_from_scalar(v, out);
                return 0;
        }
        return fail(x, "'%s' is not supported (expressions read pipeline values and parameters)",
                    name);
}

static int primary(struct xp *x, struct xval *out)
{
        skip_ws(x);
        if (++x->depth > EXPR_MAX_DEPTH)
                return fail(x, "%s", "nested too deeply");
        int r;
        if (take(x, "not", true)) {
                struct xval v = {0};
                r = primary(x, &v);
                *out = (struct xval){.t = X_BOOL, .b = !expr_truthy(&v)};
                xval_release(&v);
        } else if (*x->s == '(') {
                x->s++;
                r = parse_or(x, out);
                if (r == 0 && !take(x, ")", false))
                        r = fail(x, "%s", "missing ')'");
        } else if (*x->s == '"' || *x->s == '/') {
                r = string_lit(x, *x->s, out);
        } else if (isdigit((unsigned char)*x->s) ||
                   (*x->s == '-' && isdigit((unsigned char)x->s[1]))) {
                char *end;
                double d = strtod(x->s, &end);
                x->s = end;
                *out = (struct xval){.t = X_NUM, .n = d};
                r = 0;
        } else if (isalpha((unsigned char)*x->s)) {
                r = variable(x, out);
        } else if (*x->s == '\'') {
                r = fail(x, "%s", "single-quoted strings are not supported (use double quotes)");
        } else if (*x->s == '\0') {
                r = fail(x, "%s", "ends where a value was expected");
        } else {
                char tok[8];
                snprintf(tok, sizeof(tok), "%.4s", x->s);
                r = fail(x, "'%s' is not supported", tok);
        }
        x->depth--;
        return r;
}

static bool same(const struct xval *a, const struct xval *b)
{
        if (a->t != b->t)
                return false;
        switch (a->t) {
        case X_BOOL:
                return a->b == b->b;
        case X_NUM:
                return a->n == b->n;
        case X_STR:
                return strcmp(a->s ? a->s : "", b->s ? b->s : "") == 0;
        default:
                return true;
        }
}

static int compare(struct xp *x, const char *op, struct xval *a, struct xval *b, bool *res)
{
        if (op[0] == '=' || op[0] == '!') {
                *res = same(a, b) == (op[0] == '=');
                return 0;
        }
        if (op[0] == 's' || op[0] == 'm') {
                if (a->t != X_STR || b->t != X_STR)
                        return fail(x, "%s takes strings", op);
                if (op[0] == 's') {
                        *res = drv_startswith(a->s, b->s);
                        return 0;
                }
                regex_t re;
                if (regcomp(&re, b->s, REG_EXTENDED | REG_NOSUB) != 0)
                        return fail(x, "invalid regex /%s/", b->s);
                *res = regexec(&re, a->s, 0, NULL, 0) == 0;
                regfree(&re);
                return 0;
        }
        if (a->t != X_NUM || b->t != X_NUM)
                return fail(x, "%s compares numbers", op);
        *res = op[0] == '>' ? (op[1] ? a->n >= b->n : a->n > b->n)
                            : (op[1] ? a->n <= b->n : a->n < b->n);
        return 0;
}

static int parse_cmp(struct xp *x, struct xval *out)
{
        static const char *const ops[] = {"==", "!=", ">=", "<=", ">", "<"};
        int r = primary(x, out);
        if (r < 0)
                return r;
        skip_ws(x);
        const char *op = NULL;
        for (size_t i = 0; !op && i < DRV_ARRAY_SIZE(ops); i++)
                if (take(x, ops[i], false))
                        op = ops[i];
        if (!op && take(x, "starts-with", true))
                op = "starts-with";
        if (!op && take(x, "matches", true))
                op = "matches";
        if (!op) {
                static const char *const unsupported[] = {"ends-with", "contains", "in", "&&",
                                                          "||",        "!",        "=~", "~"};
                for (size_t i = 0; i < DRV_ARRAY_SIZE(unsupported); i++)
                        if (strncmp(x->s, unsupported[i], strlen(unsupported[i])) == 0 &&
                            (ispunct((unsigned char)unsupported[i][0]) ||
                             at_word(x, unsupported[i])))
                                return fail(x,
                                            "operator '%s' is not supported (CircleCI "
                                            "expressions have " OPERATORS ")",
                                            unsupported[i]);
                return 0;
        }
        struct xval b = {0};
        bool res = false;
        r = primary(x, &b);
        if (r == 0)
                r = compare(x, op, out, &b, &res);
        xval_release(&b);
        xval_release(out);
        *out = (struct xval){.t = X_BOOL, .b = res};
        return r;
}

/* and/or give one of their operands (so `cond and 10 or 1` picks a value), short-circuiting. */
static int parse_and(struct xp *x, struct xval *out)
{
        int r = parse_cmp(x, out);
        while (r == 0 && take(x, "and", true)) {
                struct xval b = {0};
                r = parse_cmp(x, &b);
                if (expr_truthy(out)) {
                        xval_release(out);
                        *out = b;
                } else {
                        xval_release(&b);
                }
        }
        return r;
}

static int parse_or(struct xp *x, struct xval *out)
{
        int r = parse_and(x, out);
        while (r == 0 && take(x, "or", true)) {
                struct xval b = {0};
                r = parse_and(x, &b);
                if (!expr_truthy(out)) {
                        xval_release(out);
                        *out = b;
                } else {
                        xval_release(&b);
                }
        }
        return r;
}

int expr_eval(struct cctx *c, const struct ynode *where, const char *text, const struct cparams *p,
              struct xval *out)
{
        struct xp x = {.c = c, .where = where, .p = p, .text = text, .s = text};
        *out = (struct xval){0};
        int r = parse_or(&x, out);
        skip_ws(&x);
        if (r == 0 && *x.s) {
                char tok[24];
                snprintf(tok, sizeof(tok), "%.16s", x.s);
                r = fail(&x, "unexpected '%s' (CircleCI expressions have " OPERATORS ")", tok);
        }
        if (r < 0)
                xval_release(out);
        return r;
}

bool expr_mentions_vars(const char *s)
{
        static const char *const prefixes[] = {"pipeline.", "parameters.", "matrix."};
        for (const char *q = s; *q; q++) {
                if (q != s && ident_char(q[-1]))
                        continue;
                for (size_t i = 0; i < DRV_ARRAY_SIZE(prefixes); i++)
                        if (strncmp(q, prefixes[i], strlen(prefixes[i])) == 0)
                                return true;
        }
        return false;
}

bool expr_is_condition(const char *s)
{
        while (isspace((unsigned char)*s))
                s++;
        return expr_mentions_vars(s) &&
               (drv_startswith(s, "pipeline.") || drv_startswith(s, "parameters.") ||
                drv_startswith(s, "matrix.") || drv_startswith(s, "not ") ||
                drv_startswith(s, "not(") || s[0] == '(' || s[0] == '"');
}

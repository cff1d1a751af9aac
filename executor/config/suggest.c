/* suggest.c: the config compiler's error layer beyond cerr — "did you mean" for a name one edit
 * away from a known one, and the collected errors in file order. */
#include "executor/config/internal.h"
#include "executor/jobspec.h"

#include <limits.h>

/* Is a one edit (insert, delete, substitute, swap of neighbours) away from b? */
static bool one_edit(const char *a, const char *b)
{
        size_t la = strlen(a), lb = strlen(b);
        if (la > lb) {
                const char *t = a;
                a = b, b = t;
                size_t tl = la;
                la = lb, lb = tl;
        }
        if (lb - la > 1 || strcmp(a, b) == 0)
                return false;
        size_t i = 0;
        while (i < la && a[i] == b[i])
                i++;
        if (la == lb) /* substitute a[i], or swap a[i] and a[i+1] */
                return strcmp(a + i + 1, b + i + 1) == 0 ||
                       (i + 1 < la && a[i] == b[i + 1] && a[i + 1] == b[i] &&
                        strcmp(a + i + 2, b + i + 2) == 0);
        return strcmp(a + i, b + i + 1) == 0; /* b has one more character at i */
}

static void consider(const char *bad, const char *cand, const char **found, unsigned *n)
{
        if (cand && one_edit(bad, cand) && (!*found || strcmp(*found, cand))) {
                *found = cand;
                (*n)++;
        }
}

const char *csuggest(struct cctx *c, const char *bad, const char *const *cands,
                     const struct ynode *map)
{
        const char *found = NULL;
        unsigned n = 0;
        c->hint[0] = '\0';
        if (!bad)
                return c->hint;
        for (size_t i = 0; cands && cands[i]; i++)
                consider(bad, cands[i], &found, &n);
        for (size_t i = 0; map && map->kind == Y_MAP && i < ynode_pairs(map); i++)
                consider(bad, map->items[2 * i]->value, &found, &n);
        if (n == 1) /* more than one: no guess */
                snprintf(c->hint, sizeof(c->hint), " (did you mean '%s'?)", found);
        return c->hint;
}

const char *csuggest_step(struct cctx *c, const char *bad)
{
        const char *builtin[JS_STEP_SETUP_REMOTE_DOCKER + 2];
        size_t n = 0;
        for (int t = 0; t <= JS_STEP_SETUP_REMOTE_DOCKER; t++)
                builtin[n++] = jobspec_step_type_name((enum js_step_type)t);
        builtin[n] = NULL;
        return csuggest(c, bad, builtin, ynode_get(c->root, "commands"));
}

/* LINE and COL of "FILE:LINE:COL: message" (ULONG_MAX when the error names no place: those
 * come last, like "more than N errors"). */
static void place(const char *e, const char *file, unsigned long *line, unsigned long *col)
{
        *line = *col = ULONG_MAX;
        size_t fl = strlen(file);
        if (strncmp(e, file, fl) || e[fl] != ':')
                return;
        char *end;
        unsigned long l = strtoul(e + fl + 1, &end, 10);
        if (end == e + fl + 1 || *end != ':')
                return;
        *line = l;
        *col = strtoul(end + 1, NULL, 10);
}

static const char *sort_file;

static int cmp_place(const void *a, const void *b)
{
        unsigned long la, ca, lb, cb;
        place(*(char *const *)a, sort_file, &la, &ca);
        place(*(char *const *)b, sort_file, &lb, &cb);
        if (la != lb)
                return la < lb ? -1 : 1;
        return ca < cb ? -1 : ca > cb;
}

void cerr_sort(struct cctx *c)
{
        size_t n = drv_strv_len(c->errors);
        if (n < 2)
                return;
        sort_file = c->file;
        for (size_t i = 1; i < n; i++) /* insertion sort: stable, and error lists are short */
                for (size_t k = i; k > 0 && cmp_place(&c->errors[k - 1], &c->errors[k]) > 0; k--) {
                        char *t = c->errors[k];
                        c->errors[k] = c->errors[k - 1];
                        c->errors[k - 1] = t;
                }
        sort_file = NULL;
}

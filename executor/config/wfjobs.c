/* wfjobs.c: workflow job options of CircleCI's language: requires entries with statuses
 * (`- build: [success, failed]`, `- build: terminal`), serial-group, and the trigger and
 * status names the front doors share. */
#include "executor/config/internal.h"

unsigned *requires_status_dup(const unsigned *st, size_t n)
{
        unsigned *d = calloc(n + 1, sizeof(unsigned));
        if (d && st)
                memcpy(d, st, n * sizeof(unsigned));
        return d;
}

static int status_bits(struct cctx *c, const struct ynode *v, unsigned *bits)
{
        static const struct {
                const char *name;
                unsigned bit;
        } st[] = {{"success", CONFIG_REQ_SUCCESS},   {"failed", CONFIG_REQ_FAILED},
                  {"canceled", CONFIG_REQ_CANCELED}, {"unauthorized", CONFIG_REQ_UNAUTHORIZED},
                  {"not_run", CONFIG_REQ_NOT_RUN},   {"terminal", CONFIG_REQ_TERMINAL}};
        const struct ynode *one[1] = {v};
        const struct ynode *const *items =
            v->kind == Y_SEQ ? (const struct ynode *const *)v->items : one;
        size_t n = v->kind == Y_SEQ ? v->n : 1;
        *bits = 0;
        for (size_t i = 0; i < n; i++) {
                unsigned b = 0;
                for (size_t k = 0; items[i]->kind == Y_SCALAR && k < DRV_ARRAY_SIZE(st); k++)
                        if (strcmp(items[i]->value, st[k].name) == 0)
                                b = st[k].bit;
                if (!b)
                        return cerr(c, items[i],
                                    "a requires status is success, failed, canceled, "
                                    "unauthorized, not_run or terminal");
                *bits |= b;
        }
        return n ? 0 : cerr(c, v, "a requires entry needs at least one status");
}

/* requires: names, or one-pair maps NAME: STATUS / NAME: [STATUS...]. */
int requires_parse(struct cctx *c, const struct ynode *req, char ***names, unsigned **status)
{
        size_t n = req && req->kind == Y_SEQ ? req->n : 0;
        *names = calloc(1, sizeof(char *));
        *status = calloc(n + 1, sizeof(unsigned));
        if (!*names || !*status)
                return -ENOMEM;
        if (req && req->kind != Y_SEQ && !ynode_is_null(req))
                cerr(c, req, "requires must be a list of job names");
        size_t k = 0;
        for (size_t i = 0; i < n; i++) {
                const struct ynode *it = req->items[i];
                unsigned bits = CONFIG_REQ_SUCCESS;
                const char *name = it->kind == Y_SCALAR ? it->value : NULL;
                if (it->kind == Y_MAP && ynode_pairs(it) == 1) {
                        name = it->items[0]->value;
                        if (status_bits(c, it->items[1], &bits) < 0)
                                continue;
                } else if (!name) {
                        cerr(c, it, "a requires entry is a job name or NAME: STATUS(ES)");
                        continue;
                }
                if (drv_strv_push(names, name) < 0)
                        return -ENOMEM;
                (*status)[k++] = bits;
        }
        return 0;
}

/* serial-group: a string of [A-Za-z0-9./_-], at most 512 characters (after substitution). */
char *serial_group_parse(struct cctx *c, const struct ynode *v)
{
        static const struct cparams none = {0};
        if (!v)
                return NULL;
        if (v->kind != Y_SCALAR || ynode_is_null(v)) {
                cerr(c, v, "serial-group must be a string");
                return NULL;
        }
        char *s = params_subst_str(c, v, v->value, &none);
        if (!s)
                return NULL;
        size_t len = strlen(s);
        if (len == 0 || len > 512 ||
            strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789./_-") !=
                len) {
                cerr(c, v, "serial-group '%s' must be 1 to 512 characters of A-Z a-z 0-9 . - _ /",
                     s);
                free(s);
                return NULL;
        }
        return s;
}

unsigned config_job_requires_status(const struct config_job *j, size_t k)
{
        return j->requires_status && j->requires_status[k] ? j->requires_status[k]
                                                           : CONFIG_REQ_SUCCESS;
}

unsigned config_req_bit(const char *st)
{
        if (!st || strcmp(st, "success") == 0)
                return CONFIG_REQ_SUCCESS;
        if (strcmp(st, "canceled") == 0)
                return CONFIG_REQ_CANCELED;
        if (strcmp(st, "unauthorized") == 0)
                return CONFIG_REQ_UNAUTHORIZED;
        if (strcmp(st, "not_run") == 0 || strcmp(st, "blocked") == 0)
                return CONFIG_REQ_NOT_RUN;
        return CONFIG_REQ_FAILED; /* failed, timedout, infrastructure_fail, ... */
}

const char *config_trigger_source(enum config_trigger t)
{
        return t == CONFIG_TRIGGER_SCHEDULE ? "scheduled_pipeline"
               : t == CONFIG_TRIGGER_API    ? "api"
                                            : "webhook";
}

int config_trigger_parse(const char *s, enum config_trigger *out)
{
        if (strcmp(s, "webhook") == 0 || strcmp(s, "push") == 0)
                *out = CONFIG_TRIGGER_WEBHOOK;
        else if (strcmp(s, "api") == 0)
                *out = CONFIG_TRIGGER_API;
        else if (strcmp(s, "schedule") == 0 || strcmp(s, "scheduled_pipeline") == 0)
                *out = CONFIG_TRIGGER_SCHEDULE;
        else
                return -EINVAL;
        return 0;
}

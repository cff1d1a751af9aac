/* steps.c: compile config steps (short and long forms, built-ins, custom commands with
 * parameters, when/unless logic) into job spec steps. */
#include "executor/config/internal.h"
#include "executor/jobspec.h"

#include <ctype.h>

#include <regex.h>
#include <strings.h>

#define MAX_JOB_STEPS (10000u) /* after command expansion */

static int truthy(const struct ynode *n)
{
        bool b;
        if (ynode_is_null(n))
                return 0;
        if (n->kind != Y_SCALAR)
                return 1;
        if (ynode_bool(n, &b) == 0)
                return b;
        return strcmp(n->value, "0") != 0 && n->value[0] != '\0';
}

static bool scalar_equal(const struct ynode *a, const struct ynode *b)
{
        bool x, y;
        if (a->kind != Y_SCALAR || b->kind != Y_SCALAR)
                return false;
        if (ynode_bool(a, &x) == 0 && ynode_bool(b, &y) == 0)
                return x == y;
        return strcmp(a->value, b->value) == 0;
}

int condition_eval(struct cctx *c, const struct ynode *cond, bool *out)
{
        if (cond && cond->kind == Y_SCALAR && !cond->quoted && expr_is_condition(cond->value)) {
                /* an expression: `when: pipeline.git.branch == "main"` */
                struct xval v;
                if (expr_eval(c, cond, cond->value, NULL, &v) < 0)
                        return -EINVAL;
                *out = expr_truthy(&v);
                xval_release(&v);
                return 0;
        }
        if (!cond || cond->kind != Y_MAP) {
                *out = cond ? truthy(cond) : false;
                return 0;
        }
        if (ynode_pairs(cond) != 1)
                return cerr(c, cond,
                            "a condition map must have exactly one of and, or, not, "
                            "equal, matches");
        const char *op = cond->items[0]->value;
        const struct ynode *arg = cond->items[1];
        if (strcmp(op, "not") == 0) {
                bool v = false;
                int r = condition_eval(c, arg, &v);
                if (r < 0) /* v was never set (found by fuzz_config) */
                        return r;
                *out = !v;
                return 0;
        }
        if (strcmp(op, "and") == 0 || strcmp(op, "or") == 0) {
                bool and = op[0] == 'a', acc = and;
                if (arg->kind != Y_SEQ)
                        return cerr(c, arg, "'%s' takes a list of conditions", op);
                for (size_t i = 0; i < arg->n; i++) {
                        bool v;
                        int r = condition_eval(c, arg->items[i], &v);
                        if (r < 0)
                                return r;
                        acc = and? acc && v : acc || v;
                }
                *out = acc;
                return 0;
        }
        if (strcmp(op, "equal") == 0) {
                if (arg->kind != Y_SEQ || arg->n < 2)
                        return cerr(c, arg, "'equal' takes a list of at least two values");
                bool eq = true;
                for (size_t i = 1; i < arg->n; i++)
                        if (!scalar_equal(arg->items[0], arg->items[i]))
                                eq = false;
                *out = eq;
                return 0;
        }
        if (strcmp(op, "matches") == 0) {
                const struct ynode *pat = ynode_get(arg, "pattern"), *val = ynode_get(arg, "value");
                if (!pat || !val || pat->kind != Y_SCALAR || val->kind != Y_SCALAR)
                        return cerr(c, arg, "'matches' takes a pattern and a value");
                regex_t re;
                _cleanup_free_ char *anch = drv_asprintf("^(%s)$", pat->value);
                if (!anch || regcomp(&re, anch, REG_EXTENDED | REG_NOSUB) != 0)
                        return cerr(c, pat, "invalid pattern '%s'", pat->value);
                *out = regexec(&re, val->value, 0, NULL, 0) == 0;
                regfree(&re);
                return 0;
        }
        return cerr(c, cond, "unknown condition operator '%s'", op);
}

/* key is in map m with a non-null value */
static bool present(const struct ynode *m, const char *key)
{
        const struct ynode *v = ynode_get(m, key);
        return v && !ynode_is_null(v);
}

static void set_opt_str(struct cctx *c, json_t *o, const struct ynode *m, const char *key,
                        const char *jkey)
{
        const struct ynode *v = ynode_get(m, key);
        if (!v || ynode_is_null(v))
                return;
        const char *s = cscalar(c, v, key);
        if (s)
                json_object_set_new(o, jkey ? jkey : key, json_string(s));
}

static json_t *str_list(struct cctx *c, const struct ynode *v, const char *what)
{
        json_t *a = json_array();
        if (v && v->kind == Y_SCALAR) {
                json_array_append_new(a, json_string(v->value));
                return a;
        }
        if (!v || v->kind != Y_SEQ || v->n == 0) {
                cerr(c, v, "%s must be a non-empty list of strings", what);
                json_decref(a);
                return NULL;
        }
        for (size_t i = 0; i < v->n; i++) {
                const char *s = cscalar(c, v->items[i], what);
                if (!s) {
                        json_decref(a);
                        return NULL;
                }
                json_array_append_new(a, json_string(s));
        }
        return a;
}

/* environment: a map, or a list of "K=V" strings or one-pair maps -> job spec env array. */
static bool env_name_ok(const char *s, size_t n)
{
        if (n == 0 || !(isalpha((unsigned char)s[0]) || s[0] == '_'))
                return false;
        for (size_t i = 1; i < n; i++)
                if (!(isalnum((unsigned char)s[i]) || s[i] == '_'))
                        return false;
        return true;
}

static void env_add(struct cctx *c, json_t *a, const struct ynode *where, const char *name,
                    size_t n, const char *value)
{
        if (!env_name_ok(name, n)) {
                cerr(c, where, "'%.*s' is not a valid environment variable name", (int)n, name);
                return;
        }
        /* a name given twice (an executor's and the job's environment merged): the last wins */
        for (size_t i = json_array_size(a); i-- > 0;) {
                const char *have = json_string_value(json_object_get(json_array_get(a, i), "name"));
                if (have && strlen(have) == n && strncmp(have, name, n) == 0)
                        json_array_remove(a, i);
        }
        json_array_append_new(a, json_pack("{s:s#, s:s}", "name", name, (int)n, "value", value));
}

json_t *config_env(struct cctx *c, const struct ynode *env)
{
        json_t *a = json_array();
        if (!env || ynode_is_null(env))
                return a;
        if (env->kind == Y_MAP) {
                for (size_t i = 0; i + 1 < env->n; i += 2) {
                        const char *v =
                            env->items[i + 1]->kind == Y_SCALAR ? env->items[i + 1]->value : NULL;
                        if (!v) {
                                cerr(c, env->items[i + 1],
                                     "environment value of %s must be a string",
                                     env->items[i]->value);
                                continue;
                        }
                        env_add(c, a, env->items[i], env->items[i]->value,
                                strlen(env->items[i]->value), v);
                }
        } else if (env->kind == Y_SEQ) {
                for (size_t i = 0; i < env->n; i++) {
                        const struct ynode *e = env->items[i];
                        if (e->kind == Y_MAP && ynode_pairs(e) == 1 &&
                            e->items[1]->kind == Y_SCALAR) {
                                env_add(c, a, e->items[0], e->items[0]->value,
                                        strlen(e->items[0]->value), e->items[1]->value);
                        } else if (e->kind == Y_SCALAR && strchr(e->value, '=')) {
                                char *eq = strchr(e->value, '=');
                                env_add(c, a, e, e->value, (size_t)(eq - e->value), eq + 1);
                        } else {
                                cerr(c, e, "environment entries must be KEY=VALUE or KEY: VALUE");
                        }
                }
        } else {
                cerr(c, env, "environment must be a map");
        }
        return a;
}

static int check_keys(struct cctx *c, const struct ynode *m, const char *what,
                      const char *const *allowed)
{
        int r = 0;
        for (size_t i = 0; i < ynode_pairs(m); i++) {
                const char *k = m->items[2 * i]->value;
                bool ok = false;
                for (size_t j = 0; allowed[j]; j++)
                        ok = ok || strcmp(k, allowed[j]) == 0;
                if (!ok)
                        r = cerr(c, m->items[2 * i], "unknown key '%s' in %s%s", k, what,
                                 csuggest(c, k, allowed, NULL));
        }
        return r;
}

static int builtin_step(struct cctx *c, const char *type, const struct ynode *v, json_t *out)
{
        static const char *const common[] = {"name", "when", NULL};
        json_t *st = json_pack("{s:s}", "type", type);
        int r = 0;
        const struct ynode *m = v && v->kind == Y_MAP ? v : NULL;
        if (v && !ynode_is_null(v) && !m && strcmp(type, "run") != 0) {
                json_decref(st);
                return cerr(c, v, "%s takes a map of options", type);
        }
        set_opt_str(c, st, m, "name", NULL);
        set_opt_str(c, st, m, "when", NULL);
        const char *when = json_string_value(json_object_get(st, "when"));
        if (when && strcmp(when, "on_success") && strcmp(when, "on_fail") && strcmp(when, "always"))
                r = cerr(c, ynode_get(m, "when"),
                         "when must be on_success, on_fail or always, not '%s'%s", when,
                         csuggest(c, when,
                                  (const char *const[]){"on_success", "on_fail", "always", NULL},
                                  NULL));
        (void)common;
        if (strcmp(type, "run") == 0) {
                static const char *const k[] = {"name",        "when",
                                                "command",     "shell",
                                                "environment", "working_directory",
                                                "background",  "no_output_timeout",
                                                NULL};
                if (v && v->kind == Y_SCALAR && ynode_is_null(v)) {
                        r = cerr(c, v, "run needs a command");
                } else if (v && v->kind == Y_SCALAR) {
                        json_object_set_new(st, "command", json_string(v->value));
                } else {
                        r = r ?: check_keys(c, m, "run", k);
                        if (!present(m, "command"))
                                r = cerr(c, v, "run needs a command");
                        set_opt_str(c, st, m, "command", NULL);
                        set_opt_str(c, st, m, "shell", NULL);
                        set_opt_str(c, st, m, "working_directory", NULL);
                        const struct ynode *env = ynode_get(m, "environment");
                        if (env)
                                json_object_set_new(st, "environment", config_env(c, env));
                        const struct ynode *bg = ynode_get(m, "background");
                        bool b;
                        if (bg && ynode_bool(bg, &b) < 0)
                                r = cerr(c, bg, "background must be true or false");
                        else if (bg && b)
                                json_object_set_new(st, "background", json_true());
                        const struct ynode *not = ynode_get(m, "no_output_timeout");
                        uint64_t secs;
                        if (not &&(not ->kind != Y_SCALAR ||
                                   drv_parse_duration(not ->value, &secs) < 0 || secs == 0))
                                r = cerr(
                                    c, not,
                                    "no_output_timeout must be a duration like 10m, 1h30m or 90s");
                        else if (not )
                                json_object_set_new(st, "no_output_timeout",
                                                    json_integer((json_int_t)secs));
                }
        } else if (strcmp(type, "checkout") == 0) {
                static const char *const k[] = {"name", "when", "path", "method", NULL};
                r = r ?: check_keys(c, m, "checkout", k);
                set_opt_str(c, st, m, "path", NULL);
        } else if (strcmp(type, "save_cache") == 0) {
                static const char *const k[] = {"name", "when", "key", "paths", NULL};
                r = r ?: check_keys(c, m, "save_cache", k);
                if (!present(m, "key") || !present(m, "paths"))
                        r = cerr(c, v, "save_cache needs key and paths");
                set_opt_str(c, st, m, "key", NULL);
                json_t *p = str_list(c, ynode_get(m, "paths"), "save_cache paths");
                if (p)
                        json_object_set_new(st, "paths", p);
        } else if (strcmp(type, "restore_cache") == 0) {
                static const char *const k[] = {"name", "when", "key", "keys", NULL};
                r = r ?: check_keys(c, m, "restore_cache", k);
                json_t *keys = json_array();
                const struct ynode *key = ynode_get(m, "key"), *ks = ynode_get(m, "keys");
                if (key && key->kind == Y_SCALAR)
                        json_array_append_new(keys, json_string(key->value));
                json_t *more = ks ? str_list(c, ks, "restore_cache keys") : NULL;
                if (more)
                        json_array_extend(keys, more);
                json_decref(more);
                if (json_array_size(keys) == 0)
                        r = cerr(c, v, "restore_cache needs key or keys");
                json_object_set_new(st, "keys", keys);
        } else if (strcmp(type, "persist_to_workspace") == 0) {
                static const char *const k[] = {"name", "when", "root", "paths", NULL};
                r = r ?: check_keys(c, m, "persist_to_workspace", k);
                if (!present(m, "root") || !present(m, "paths"))
                        r = cerr(c, v, "persist_to_workspace needs root and paths");
                set_opt_str(c, st, m, "root", NULL);
                json_t *p = str_list(c, ynode_get(m, "paths"), "persist_to_workspace paths");
                if (p)
                        json_object_set_new(st, "paths", p);
        } else if (strcmp(type, "attach_workspace") == 0) {
                static const char *const k[] = {"name", "when", "at", NULL};
                r = r ?: check_keys(c, m, "attach_workspace", k);
                if (!present(m, "at"))
                        r = cerr(c, v, "attach_workspace needs at");
                set_opt_str(c, st, m, "at", NULL);
        } else if (strcmp(type, "store_artifacts") == 0) {
                static const char *const k[] = {"name", "when", "path", "destination", NULL};
                r = r ?: check_keys(c, m, "store_artifacts", k);
                if (!present(m, "path"))
                        r = cerr(c, v, "store_artifacts needs path");
                set_opt_str(c, st, m, "path", NULL);
                set_opt_str(c, st, m, "destination", NULL);
        } else if (strcmp(type, "store_test_results") == 0) {
                static const char *const k[] = {"name", "when", "path", NULL};
                r = r ?: check_keys(c, m, "store_test_results", k);
                if (!present(m, "path"))
                        r = cerr(c, v, "store_test_results needs path");
                set_opt_str(c, st, m, "path", NULL);
        } else if (strcmp(type, "add_ssh_keys") == 0) {
                static const char *const k[] = {"name", "when", "fingerprints", NULL};
                r = r ?: check_keys(c, m, "add_ssh_keys", k);
                const struct ynode *f = ynode_get(m, "fingerprints");
                bool none = !f || ynode_is_null(f) || (f->kind == Y_SEQ && f->n == 0);
                json_t *fp = none ? NULL : str_list(c, f, "fingerprints"); /* none: all keys */
                if (fp)
                        json_object_set_new(st, "fingerprints", fp);
        } else if (strcmp(type, "setup_remote_docker") == 0) {
                static const char *const k[] = {"name", "when", "docker_layer_caching", "version",
                                                NULL};
                r = r ?: check_keys(c, m, "setup_remote_docker", k);
                const struct ynode *d = ynode_get(m, "docker_layer_caching");
                bool b;
                if (d && ynode_bool(d, &b) == 0 && b)
                        json_object_set_new(st, "docker_layer_caching", json_true());
        }
        if (r < 0) {
                json_decref(st);
                return r;
        }
        json_array_append_new(out, st);
        return 0;
}

static bool is_builtin(const char *name)
{
        return jobspec_step_type_from_name(name) >= 0;
}

static int custom_command(struct cctx *c, const char *name, const struct ynode *args,
                          const struct ynode *where, json_t *out)
{
        if (strcmp(name, "deploy") == 0 && !ynode_get(ynode_get(c->root, "commands"), name))
                return cerr(c, where,
                            "the deploy step is deprecated and not supported: use `run` (it "
                            "takes the same keys)");
        const struct ynode *cmd = NULL;
        int lr = config_lookup(c, "commands", name, where, &cmd);
        if (lr < 0)
                return lr == -ENOENT ? cerr(c, where, "unknown step or command '%s'%s", name,
                                            csuggest_step(c, name))
                                     : lr;
        if (cmd->kind != Y_MAP)
                return cerr(c, cmd, "command '%s' must be a map", name);
        static const char *const ckeys[] = {"description", "parameters", "steps", NULL};
        for (size_t i = 0; i < ynode_pairs(cmd); i++) {
                bool ok = false;
                for (size_t k = 0; ckeys[k]; k++)
                        ok = ok || strcmp(cmd->items[2 * i]->value, ckeys[k]) == 0;
                if (!ok)
                        cerr(c, cmd->items[2 * i], "unknown key '%s' in command '%s'",
                             cmd->items[2 * i]->value, name);
        }
        for (unsigned i = 0; i < c->depth && i < MAX_COMMAND_DEPTH; i++)
                if (strcmp(c->calling[i], name) == 0)
                        return cerr(c, where, "command '%s' calls itself (through '%s')", name,
                                    c->calling[c->depth - 1]);
        if (c->depth >= MAX_COMMAND_DEPTH)
                return cerr(c, where, "commands nest deeper than %d (a command calling itself?)",
                            MAX_COMMAND_DEPTH);
        if (args && !ynode_is_null(args) && args->kind != Y_MAP)
                return cerr(c, args, "arguments of command '%s' must be a map", name);
        struct cparams p = {0};
        char what[300];
        snprintf(what, sizeof(what), "command '%s'", name);
        int r = params_bind_element(c, name, ynode_get(cmd, "parameters"),
                                    ynode_is_null(args) ? NULL : args, what, where, &p);
        const struct ynode *steps = ynode_get(cmd, "steps");
        if (r == 0 && !steps)
                r = cerr(c, cmd, "command '%s' has no steps", name);
        struct ynode *body = r == 0 ? params_subst(c, steps, &p) : NULL;
        if (r == 0 && !body)
                r = -EINVAL;
        if (r == 0) {
                c->calling[c->depth++] = name;
                r = steps_compile(c, body, out);
                c->depth--;
        }
        ynode_free(body);
        params_free(&p);
        return r;
}

static int one_step(struct cctx *c, const struct ynode *s, json_t *out)
{
        /* commands calling commands can expand exponentially: bound the steps of one job */
        if (++c->expanded > MAX_JOB_STEPS) {
                if (c->expanded == MAX_JOB_STEPS + 1)
                        cerr(c, s,
                             "the job expands to more than %u steps (commands nested "
                             "too much?)",
                             MAX_JOB_STEPS);
                return -EINVAL;
        }
        if (s->kind == Y_SCALAR) {
                if (is_builtin(s->value)) {
                        if (strcmp(s->value, "run") == 0)
                                return cerr(c, s, "run needs a command");
                        return builtin_step(c, s->value, NULL, out);
                }
                return custom_command(c, s->value, NULL, s, out);
        }
        if (s->kind != Y_MAP || ynode_pairs(s) != 1)
                return cerr(c, s, "a step must be a name or a map with exactly one key");
        const char *type = s->items[0]->value;
        const struct ynode *v = s->items[1];
        if (strcmp(type, "when") == 0 || strcmp(type, "unless") == 0) {
                static const char *const k[] = {"condition", "steps", NULL};
                if (v->kind != Y_MAP || !ynode_get(v, "steps") || check_keys(c, v, type, k) < 0)
                        return cerr(c, v, "%s needs a condition and steps", type);
                bool cond;
                int r = condition_eval(c, ynode_get(v, "condition"), &cond);
                if (r < 0)
                        return r;
                if (type[0] == 'u')
                        cond = !cond;
                return cond ? steps_compile(c, ynode_get(v, "steps"), out) : 0;
        }
        if (strcmp(type, "steps") == 0) /* `- steps: << parameters.x >>` (a steps parameter) */
                return v->kind == Y_SEQ ? steps_compile(c, v, out)
                                        : cerr(c, v, "steps must be a list of steps");
        if (is_builtin(type))
                return builtin_step(c, type, v, out);
        return custom_command(c, type, v, s, out);
}

int steps_compile(struct cctx *c, const struct ynode *steps, json_t *out)
{
        if (!steps || steps->kind != Y_SEQ)
                return cerr(c, steps, "steps must be a list");
        int r = 0;
        for (size_t i = 0; i < steps->n; i++)
                if (one_step(c, steps->items[i], out) < 0)
                        r = -EINVAL;
        return r;
}

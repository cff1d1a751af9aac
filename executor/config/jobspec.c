/* jobspec.c: parse and fully validate a job spec (docs/jobspec.md); errors name the JSON path. */
#include "executor/jobspec.h"
#include "executor/output/spool.h"

#include <ctype.h>
#include <math.h>

struct jp {
        struct drv_error *err;
};

static const char *json_kind(const json_t *v)
{
        switch (json_typeof(v)) {
        case JSON_OBJECT:
                return "object";
        case JSON_ARRAY:
                return "array";
        case JSON_STRING:
                return "string";
        case JSON_INTEGER:
                return "integer";
        case JSON_REAL:
                return "number";
        case JSON_TRUE:
        case JSON_FALSE:
                return "boolean";
        case JSON_NULL:
                return "null";
        }
        return "?";
}

static int bad(struct jp *j, const char *path, const char *key, const char *fmt, ...)
    DRV_PRINTF(4, 5);
static int bad(struct jp *j, const char *path, const char *key, const char *fmt, ...)
{
        char raw[512], msg[512 * 4];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(raw, sizeof(raw), fmt, ap);
        va_end(ap);
        /* values quoted in the message come from the spec: control characters are shown
         * escaped, so an error stays one line in logs and events */
        size_t o = 0;
        for (const unsigned char *c = (const unsigned char *)raw; *c; c++)
                if (*c < 0x20 || *c == 0x7f)
                        o += (size_t)snprintf(msg + o, sizeof(msg) - o, "\\x%02x", *c);
                else
                        msg[o++] = (char)*c;
        msg[o] = '\0';
        if (key)
                return drv_err(j->err, EINVAL, "%s.%s: %s", path, key, msg);
        return drv_err(j->err, EINVAL, "%s: %s", path, msg);
}

/* Reject keys of obj not in allowed (NULL-terminated). */
static int only_keys(struct jp *j, json_t *obj, const char *path, const char *const *allowed)
{
        const char *k;
        json_t *v;
        json_object_foreach (obj, k, v) {
                bool ok = false;
                for (size_t i = 0; allowed[i]; i++)
                        if (strcmp(k, allowed[i]) == 0)
                                ok = true;
                if (!ok)
                        return bad(j, path, k, "unknown field");
        }
        return 0;
}

static int need_object(struct jp *j, json_t *v, const char *path)
{
        if (!json_is_object(v))
                return bad(j, path, NULL, "expected an object, got %s", json_kind(v));
        return 0;
}

static int get_str(struct jp *j, json_t *obj, const char *path, const char *key, bool required,
                   char **out)
{
        json_t *v = json_object_get(obj, key);
        if (!v || json_is_null(v)) {
                if (required)
                        return bad(j, path, key, "required field is missing");
                return 0;
        }
        if (!json_is_string(v))
                return bad(j, path, key, "expected a string, got %s", json_kind(v));
        if (strlen(json_string_value(v)) != json_string_length(v))
                return bad(j, path, key, "string contains a NUL byte");
        *out = strdup(json_string_value(v));
        return *out ? 0 : drv_err(j->err, ENOMEM, "out of memory");
}

static int get_bool(struct jp *j, json_t *obj, const char *path, const char *key, bool *out)
{
        json_t *v = json_object_get(obj, key);
        if (!v)
                return 0;
        if (!json_is_boolean(v))
                return bad(j, path, key, "expected a boolean, got %s", json_kind(v));
        *out = json_is_true(v);
        return 0;
}

static int get_u64(struct jp *j, json_t *obj, const char *path, const char *key, bool required,
                   uint64_t min, uint64_t max, uint64_t *out)
{
        json_t *v = json_object_get(obj, key);
        if (!v) {
                if (required)
                        return bad(j, path, key, "required field is missing");
                return 0;
        }
        if (!json_is_integer(v))
                return bad(j, path, key, "expected an integer, got %s", json_kind(v));
        json_int_t i = json_integer_value(v);
        if (i < 0 || (uint64_t)i < min || (uint64_t)i > max)
                return bad(j, path, key, "%lld is out of range [%llu, %llu]", (long long)i,
                           (unsigned long long)min, (unsigned long long)max);
        *out = (uint64_t)i;
        return 0;
}

static int get_strv(struct jp *j, json_t *obj, const char *path, const char *key, bool required,
                    bool nonempty, char ***out)
{
        json_t *v = json_object_get(obj, key);
        size_t i;
        json_t *e;
        if (!v) {
                if (required)
                        return bad(j, path, key, "required field is missing");
                return 0;
        }
        if (!json_is_array(v))
                return bad(j, path, key, "expected an array of strings, got %s", json_kind(v));
        if (nonempty && json_array_size(v) == 0)
                return bad(j, path, key, "must not be empty");
        char **vec = calloc(json_array_size(v) + 1, sizeof(char *));
        if (!vec)
                return drv_err(j->err, ENOMEM, "out of memory");
        json_array_foreach (v, i, e) {
                if (!json_is_string(e)) {
                        drv_strv_free(vec);
                        return drv_err(j->err, EINVAL, "%s.%s[%zu]: expected a string, got %s",
                                       path, key, i, json_kind(e));
                }
                vec[i] = strdup(json_string_value(e));
                if (!vec[i]) {
                        drv_strv_free(vec);
                        return drv_err(j->err, ENOMEM, "out of memory");
                }
        }
        *out = vec;
        return 0;
}

static bool valid_env_name(const char *s)
{
        if (!s[0] || !(isalpha((unsigned char)s[0]) || s[0] == '_'))
                return false;
        for (const char *p = s; *p; p++)
                if (!isalnum((unsigned char)*p) && *p != '_')
                        return false;
        return true;
}

static int get_env(struct jp *j, json_t *obj, const char *path, const char *key,
                   struct js_env **out, size_t *n_out)
{
        static const char *const keys[] = {"name", "value", "secret", NULL};
        json_t *v = json_object_get(obj, key);
        size_t i;
        json_t *e;
        char p[600];
        if (!v)
                return 0;
        if (!json_is_array(v))
                return bad(j, path, key, "expected an array of {name, value, secret}, got %s",
                           json_kind(v));
        struct js_env *env = calloc(json_array_size(v) + 1, sizeof(*env));
        if (!env)
                return drv_err(j->err, ENOMEM, "out of memory");
        *out = env;
        json_array_foreach (v, i, e) {
                int r;
                snprintf(p, sizeof(p), "%s.%s[%zu]", path, key, i);
                *n_out = i + 1;
                if ((r = need_object(j, e, p)) < 0 || (r = only_keys(j, e, p, keys)) < 0 ||
                    (r = get_str(j, e, p, "name", true, &env[i].name)) < 0 ||
                    (r = get_str(j, e, p, "value", true, &env[i].value)) < 0 ||
                    (r = get_bool(j, e, p, "secret", &env[i].secret)) < 0)
                        return r;
                if (!valid_env_name(env[i].name))
                        return bad(j, p, "name", "'%s' is not a valid variable name", env[i].name);
        }
        return 0;
}

static int get_enum(struct jp *j, json_t *obj, const char *path, const char *key,
                    const char *const *names, int *out)
{
        _cleanup_free_ char *s = NULL;
        int r = get_str(j, obj, path, key, false, &s);
        if (r < 0 || !s)
                return r;
        for (int i = 0; names[i]; i++)
                if (strcmp(s, names[i]) == 0) {
                        *out = i;
                        return 0;
                }
        struct strbuf sb = STRBUF_INIT;
        for (int i = 0; names[i]; i++)
                strbuf_printf(&sb, "%s%s", i ? ", " : "", names[i]);
        r = bad(j, path, key, "'%s' is not one of %s", s, sb.buf ? sb.buf : "");
        strbuf_release(&sb);
        return r;
}

static const char *const step_names[] = {"run",
                                         "checkout",
                                         "save_cache",
                                         "restore_cache",
                                         "persist_to_workspace",
                                         "attach_workspace",
                                         "store_artifacts",
                                         "store_test_results",
                                         "add_ssh_keys",
                                         "setup_remote_docker",
                                         NULL};
static const char *const when_names[] = {"on_success", "on_fail", "always", NULL};

const char *jobspec_step_type_name(enum js_step_type t)
{
        return (unsigned)t < DRV_ARRAY_SIZE(step_names) - 1 ? step_names[t] : "?";
}

const char *jobspec_when_name(enum js_when w)
{
        return (unsigned)w < DRV_ARRAY_SIZE(when_names) - 1 ? when_names[w] : "?";
}

int jobspec_step_type_from_name(const char *name)
{
        for (int i = 0; step_names[i]; i++)
                if (strcmp(step_names[i], name) == 0)
                        return i;
        return -1;
}

static const char *default_step_name(const struct js_step *st)
{
        switch (st->type) {
        case JS_STEP_CHECKOUT:
                return "Checkout code";
        case JS_STEP_SAVE_CACHE:
                return "Saving cache";
        case JS_STEP_RESTORE_CACHE:
                return "Restoring cache";
        case JS_STEP_PERSIST_TO_WORKSPACE:
                return "Persisting to workspace";
        case JS_STEP_ATTACH_WORKSPACE:
                return "Attaching workspace";
        case JS_STEP_STORE_ARTIFACTS:
                return "Uploading artifacts";
        case JS_STEP_STORE_TEST_RESULTS:
                return "Uploading test results";
        case JS_STEP_ADD_SSH_KEYS:
                return "Installing additional ssh keys";
        case JS_STEP_SETUP_REMOTE_DOCKER:
                return "Setup a remote Docker engine";
        case JS_STEP_RUN:
                break;
        }
        return "Run";
}

/* A shell (job's or step's) must name a program: "" would leave nothing to run. */
static int check_shell(struct jp *j, const char *path, const char *shell)
{
        if (shell && !shell[strspn(shell, " \t")])
                return bad(j, path, "shell", "must name a program (e.g. /bin/bash -eo pipefail)");
        return 0;
}

static int parse_step(struct jp *j, json_t *v, const char *p, struct js_step *st)
{
        static const char *const by_type[][12] = {
            [JS_STEP_RUN] = {"command", "shell", "environment", "working_directory", "background",
                             "no_output_timeout", NULL},
            [JS_STEP_CHECKOUT] = {"path", NULL},
            [JS_STEP_SAVE_CACHE] = {"key", "paths", NULL},
            [JS_STEP_RESTORE_CACHE] = {"keys", NULL},
            [JS_STEP_PERSIST_TO_WORKSPACE] = {"root", "paths", NULL},
            [JS_STEP_ATTACH_WORKSPACE] = {"at", NULL},
            [JS_STEP_STORE_ARTIFACTS] = {"path", "destination", NULL},
            [JS_STEP_STORE_TEST_RESULTS] = {"path", NULL},
            [JS_STEP_ADD_SSH_KEYS] = {"fingerprints", NULL},
            [JS_STEP_SETUP_REMOTE_DOCKER] = {"docker_layer_caching", NULL},
        };
        int r, t = -1, w = 0;
        if ((r = need_object(j, v, p)) < 0)
                return r;
        json_t *type = json_object_get(v, "type");
        if (!type)
                return bad(j, p, "type", "required field is missing");
        if ((r = get_enum(j, v, p, "type", step_names, &t)) < 0)
                return r;
        st->type = (enum js_step_type)t;
        const char *allowed[16] = {"type", "name", "when"};
        size_t na = 3;
        for (size_t i = 0; by_type[t][i]; i++)
                allowed[na++] = by_type[t][i];
        allowed[na] = NULL;
        if ((r = only_keys(j, v, p, allowed)) < 0 ||
            (r = get_str(j, v, p, "name", false, &st->name)) < 0 ||
            (r = get_enum(j, v, p, "when", when_names, &w)) < 0)
                return r;
        st->when = (enum js_when)w;
        switch (st->type) {
        case JS_STEP_RUN:
                if ((r = get_str(j, v, p, "command", true, &st->command)) < 0 ||
                    (r = get_str(j, v, p, "shell", false, &st->shell)) < 0 ||
                    (r = get_env(j, v, p, "environment", &st->env, &st->n_env)) < 0 ||
                    (r = get_str(j, v, p, "working_directory", false, &st->working_directory)) <
                        0 ||
                    (r = get_bool(j, v, p, "background", &st->background)) < 0 ||
                    (r = get_u64(j, v, p, "no_output_timeout", false, 1, 7 * 86400,
                                 &st->no_output_timeout)) < 0 ||
                    (r = check_shell(j, p, st->shell)) < 0)
                        return r;
                if (!st->name) { /* the first non-blank line, trimmed; "Run" when none */
                        const char *c = st->command + strspn(st->command, " \t\r\n");
                        size_t n = strcspn(c, "\r\n");
                        while (n > 0 && (c[n - 1] == ' ' || c[n - 1] == '\t'))
                                n--;
                        st->name = n ? strndup(c, n) : strdup("Run");
                }
                break;
        case JS_STEP_CHECKOUT:
                r = get_str(j, v, p, "path", false, &st->path);
                break;
        case JS_STEP_SAVE_CACHE:
                if ((r = get_str(j, v, p, "key", true, &st->key)) == 0)
                        r = get_strv(j, v, p, "paths", true, true, &st->paths);
                break;
        case JS_STEP_RESTORE_CACHE:
                r = get_strv(j, v, p, "keys", true, true, &st->keys);
                break;
        case JS_STEP_PERSIST_TO_WORKSPACE:
                if ((r = get_str(j, v, p, "root", true, &st->root)) == 0)
                        r = get_strv(j, v, p, "paths", true, true, &st->paths);
                break;
        case JS_STEP_ATTACH_WORKSPACE:
                r = get_str(j, v, p, "at", true, &st->at);
                break;
        case JS_STEP_STORE_ARTIFACTS:
                if ((r = get_str(j, v, p, "path", true, &st->path)) == 0)
                        r = get_str(j, v, p, "destination", false, &st->destination);
                break;
        case JS_STEP_STORE_TEST_RESULTS:
                r = get_str(j, v, p, "path", true, &st->path);
                break;
        case JS_STEP_ADD_SSH_KEYS:
                r = get_strv(j, v, p, "fingerprints", false, false, &st->fingerprints);
                break;
        case JS_STEP_SETUP_REMOTE_DOCKER:
                r = get_bool(j, v, p, "docker_layer_caching", &st->docker_layer_caching);
                break;
        }
        if (r < 0)
                return r;
        if (!st->name)
                st->name = strdup(default_step_name(st));
        return st->name ? 0 : drv_err(j->err, ENOMEM, "out of memory");
}

/* steps + SSH (2) + environment (2) output streams must fit the spool */
_Static_assert(JS_MAX_STEPS + 4 <= SPOOL_MAX_STEPS, "JS_MAX_STEPS outgrows the output spool");

/* id.job names files (the output spool, the sandbox's cgroup): no path separators or dot names,
 * no control characters, at most JS_MAX_JOB_ID bytes. */
static int check_job_id(struct jp *j, const char *id)
{
        if (strlen(id) > JS_MAX_JOB_ID)
                return bad(j, "$.id", "job", "longer than %d bytes", JS_MAX_JOB_ID);
        if (id[0] == '.' || strchr(id, '/'))
                return bad(j, "$.id", "job", "must not contain '/' nor start with '.'");
        for (const unsigned char *c = (const unsigned char *)id; *c; c++)
                if (*c < 0x20 || *c == 0x7f)
                        return bad(j, "$.id", "job", "must not contain control characters");
        return 0;
}

static int parse_ids(struct jp *j, json_t *root, struct jobspec *s)
{
        static const char *const keys[] = {"job",           "name",    "build_num", "workflow",
                                           "workflow_name", "project", "pipeline",  "node_index",
                                           "node_total",    "attempt", NULL};
        json_t *v = json_object_get(root, "id");
        uint64_t idx = 0, total = 1;
        int r;
        if (!v)
                return bad(j, "$", "id", "required field is missing");
        if ((r = need_object(j, v, "$.id")) < 0 || (r = only_keys(j, v, "$.id", keys)) < 0 ||
            (r = get_str(j, v, "$.id", "job", true, &s->job_id)) < 0 ||
            (r = get_str(j, v, "$.id", "attempt", false, &s->attempt)) < 0 ||
            (r = get_str(j, v, "$.id", "name", true, &s->job_name)) < 0 ||
            (r = get_u64(j, v, "$.id", "build_num", true, 0, UINT32_MAX, &s->build_num)) < 0 ||
            (r = get_str(j, v, "$.id", "workflow", false, &s->workflow_id)) < 0 ||
            (r = get_str(j, v, "$.id", "workflow_name", false, &s->workflow_name)) < 0 ||
            (r = get_str(j, v, "$.id", "project", false, &s->project)) < 0 ||
            (r = get_str(j, v, "$.id", "pipeline", false, &s->pipeline_id)) < 0 ||
            (r = get_u64(j, v, "$.id", "node_total", false, 1, 1000, &total)) < 0 ||
            (r = get_u64(j, v, "$.id", "node_index", false, 0, 999, &idx)) < 0)
                return r;
        if (!s->job_id[0])
                return bad(j, "$.id", "job", "must not be empty");
        if (s->attempt && !jobspec_attempt_valid(s->attempt))
                return bad(j, "$.id", "attempt", "want 1..64 of A-Z a-z 0-9 . _ -");
        if ((r = check_job_id(j, s->job_id)) < 0)
                return r;
        if (idx >= total)
                return bad(j, "$.id", "node_index", "%llu must be below node_total %llu",
                           (unsigned long long)idx, (unsigned long long)total);
        s->node_index = (unsigned)idx;
        s->node_total = (unsigned)total;
        return 0;
}

static int parse_key(struct jp *j, json_t *v, const char *p, struct js_ssh_key *k)
{
        static const char *const keys[] = {"fingerprint", "private_key", "hostname", NULL};
        int r;
        if ((r = need_object(j, v, p)) < 0 || (r = only_keys(j, v, p, keys)) < 0 ||
            (r = get_str(j, v, p, "fingerprint", false, &k->fingerprint)) < 0 ||
            (r = get_str(j, v, p, "hostname", false, &k->hostname)) < 0)
                return r;
        if (k->hostname &&
            (!k->hostname[0] ||
             strspn(k->hostname,
                    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_*?[]:") !=
                 strlen(k->hostname)))
                return bad(j, p, "hostname", "'%s' is not a host name or pattern", k->hostname);
        return get_str(j, v, p, "private_key", true, &k->private_key);
}

static int parse_vcs(struct jp *j, json_t *root, struct jobspec *s)
{
        static const char *const keys[] = {"url",       "revision",     "branch",      "tag",
                                           "pr_number", "checkout_key", "known_hosts", "depth",
                                           "filter",    "pr_ref",       NULL};
        static const char *const pr_refs[] = {"head", "merge", NULL};
        int pr_ref = 0;
        json_t *v = json_object_get(root, "vcs");
        int r;
        if (!v)
                return 0;
        if ((r = need_object(j, v, "$.vcs")) < 0 || (r = only_keys(j, v, "$.vcs", keys)) < 0 ||
            (r = get_str(j, v, "$.vcs", "url", false, &s->vcs.url)) < 0 ||
            (r = get_str(j, v, "$.vcs", "revision", false, &s->vcs.revision)) < 0 ||
            (r = get_str(j, v, "$.vcs", "branch", false, &s->vcs.branch)) < 0 ||
            (r = get_str(j, v, "$.vcs", "tag", false, &s->vcs.tag)) < 0 ||
            (r = get_str(j, v, "$.vcs", "pr_number", false, &s->vcs.pr_number)) < 0 ||
            (r = get_str(j, v, "$.vcs", "known_hosts", false, &s->vcs.known_hosts)) < 0 ||
            (r = get_u64(j, v, "$.vcs", "depth", false, 0, 1000000, &s->vcs.depth)) < 0 ||
            (r = get_str(j, v, "$.vcs", "filter", false, &s->vcs.filter)) < 0 ||
            (r = get_enum(j, v, "$.vcs", "pr_ref", pr_refs, &pr_ref)) < 0)
                return r;
        s->vcs.pr_merge = pr_ref == 1;
        if (s->vcs.filter && (!s->vcs.filter[0] ||
                              strspn(s->vcs.filter, "abcdefghijklmnopqrstuvwxyz0123456789:=+.-") !=
                                  strlen(s->vcs.filter)))
                return bad(j, "$.vcs", "filter", "'%s' is not a git object filter (blob:none)",
                           s->vcs.filter);
        if (s->vcs.revision) {
                size_t n = strlen(s->vcs.revision);
                if (n < 7 || n > 40 || strspn(s->vcs.revision, "0123456789abcdefABCDEF") != n)
                        return bad(j, "$.vcs", "revision", "'%s' is not a 7-40 digit hex sha",
                                   s->vcs.revision);
        }
        if (s->vcs.pr_number && (!s->vcs.pr_number[0] || strspn(s->vcs.pr_number, "0123456789") !=
                                                             strlen(s->vcs.pr_number)))
                return bad(j, "$.vcs", "pr_number", "expected digits");
        json_t *k = json_object_get(v, "checkout_key");
        if (k)
                return parse_key(j, k, "$.vcs.checkout_key", &s->vcs.checkout_key);
        return 0;
}

/* {"cpus", "memory_mb", "pids"} and, when disk_mb is given, "disk_mb" (0 or absent = default) */
static int parse_resources(struct jp *j, json_t *res, const char *rp, double *cpus,
                           uint64_t *memory_mb, uint64_t *pids, uint64_t *disk_mb)
{
        static const char *const rkeys[] = {"cpus", "memory_mb", "pids", "disk_mb", NULL};
        static const char *const skeys[] = {"cpus", "memory_mb", "pids", NULL};
        int r;
        if ((r = need_object(j, res, rp)) < 0 ||
            (r = only_keys(j, res, rp, disk_mb ? rkeys : skeys)) < 0 ||
            (r = get_u64(j, res, rp, "memory_mb", false, 0, 1ULL << 30, memory_mb)) < 0 ||
            (r = get_u64(j, res, rp, "pids", false, 0, 1ULL << 22, pids)) < 0 ||
            (disk_mb && (r = get_u64(j, res, rp, "disk_mb", false, 0, 1ULL << 30, disk_mb)) < 0))
                return r;
        json_t *c = json_object_get(res, "cpus");
        if (c) {
                if (!json_is_number(c) || json_number_value(c) < 0 || json_number_value(c) > 1024 ||
                    isnan(json_number_value(c)))
                        return bad(j, rp, "cpus", "expected a number in [0, 1024]");
                *cpus = json_number_value(c);
        }
        return 0;
}

static int parse_image(struct jp *j, json_t *v, const char *p, bool primary, struct js_image *im)
{
        static const char *const keys[] = {"image",       "name", "entrypoint", "command", "user",
                                           "environment", "auth", "resources",  NULL};
        static const char *const akeys[] = {"username", "password", NULL};
        int r;
        if ((r = need_object(j, v, p)) < 0 || (r = only_keys(j, v, p, keys)) < 0 ||
            (r = get_str(j, v, p, "image", true, &im->image)) < 0 ||
            (r = get_str(j, v, p, "name", false, &im->name)) < 0 ||
            (r = get_strv(j, v, p, "entrypoint", false, false, &im->entrypoint)) < 0 ||
            (r = get_strv(j, v, p, "command", false, false, &im->command)) < 0 ||
            (r = get_str(j, v, p, "user", false, &im->user)) < 0 ||
            (r = get_env(j, v, p, "environment", &im->env, &im->n_env)) < 0)
                return r;
        if (!im->image[0])
                return bad(j, p, "image", "must not be empty");
        json_t *a = json_object_get(v, "auth");
        if (a) {
                char ap[600];
                snprintf(ap, sizeof(ap), "%s.auth", p);
                if ((r = need_object(j, a, ap)) < 0 || (r = only_keys(j, a, ap, akeys)) < 0 ||
                    (r = get_str(j, a, ap, "username", true, &im->auth.username)) < 0 ||
                    (r = get_str(j, a, ap, "password", true, &im->auth.password)) < 0)
                        return r;
        }
        json_t *res = json_object_get(v, "resources");
        if (!res)
                return 0;
        if (primary)
                return bad(j, p, "resources",
                           "the primary image runs with the executor's resources; only service "
                           "images (images[1] and later) take resources of their own");
        char rp[600];
        snprintf(rp, sizeof(rp), "%s.resources", p);
        return parse_resources(j, res, rp, &im->cpus, &im->memory_mb, &im->pids, NULL);
}

static int parse_executor(struct jp *j, json_t *root, struct jobspec *s)
{
        static const char *const keys[] = {"runtime",   "kind",    "images",      "resource_class",
                                           "resources", "network", "docker_host", NULL};
        static const char *const dkeys[] = {"url", "ca", "cert", "key", NULL};
        static const char *const runtimes[] = {"sandbox", "docker", NULL};
        static const char *const kinds[] = {"machine", "docker", NULL};
        static const char *const nets[] = {"none", "private", NULL};
        struct js_executor *e = &s->executor;
        json_t *v = json_object_get(root, "executor");
        int r, rt = 0, kind = 0, net = 1;
        const char *p = "$.executor";
        if (!v)
                return bad(j, "$", "executor", "required field is missing");
        if ((r = need_object(j, v, p)) < 0 || (r = only_keys(j, v, p, keys)) < 0 ||
            (r = get_enum(j, v, p, "runtime", runtimes, &rt)) < 0 ||
            (r = get_enum(j, v, p, "kind", kinds, &kind)) < 0 ||
            (r = get_enum(j, v, p, "network", nets, &net)) < 0 ||
            (r = get_str(j, v, p, "resource_class", false, &e->resource_class)) < 0)
                return r;
        e->runtime = (enum js_runtime)rt;
        e->kind = (enum js_kind)kind;
        e->network = (enum js_network)net;
        json_t *imgs = json_object_get(v, "images");
        if (imgs) {
                size_t i;
                json_t *im;
                if (!json_is_array(imgs))
                        return bad(j, p, "images", "expected an array, got %s", json_kind(imgs));
                e->images = calloc(json_array_size(imgs) + 1, sizeof(*e->images));
                if (!e->images)
                        return drv_err(j->err, ENOMEM, "out of memory");
                json_array_foreach (imgs, i, im) {
                        char ip[600];
                        snprintf(ip, sizeof(ip), "%s.images[%zu]", p, i);
                        e->n_images = i + 1;
                        if ((r = parse_image(j, im, ip, i == 0, &e->images[i])) < 0)
                                return r;
                }
        }
        if (e->kind == JS_KIND_DOCKER && e->n_images == 0)
                return bad(j, p, "images", "a docker executor needs at least one image");
        json_t *res = json_object_get(v, "resources");
        if (res && (r = parse_resources(j, res, "$.executor.resources", &e->cpus, &e->memory_mb,
                                        &e->pids, &e->disk_mb)) < 0)
                return r;
        json_t *d = json_object_get(v, "docker_host");
        if (d) {
                const char *dp = "$.executor.docker_host";
                if ((r = need_object(j, d, dp)) < 0 || (r = only_keys(j, d, dp, dkeys)) < 0 ||
                    (r = get_str(j, d, dp, "url", true, &e->docker_host.url)) < 0 ||
                    (r = get_str(j, d, dp, "ca", false, &e->docker_host.ca_pem)) < 0 ||
                    (r = get_str(j, d, dp, "cert", false, &e->docker_host.cert_pem)) < 0 ||
                    (r = get_str(j, d, dp, "key", false, &e->docker_host.key_pem)) < 0)
                        return r;
        }
        if (e->runtime == JS_RUNTIME_DOCKER && !e->docker_host.url)
                return bad(j, p, "docker_host", "the docker runtime needs a docker_host");
        return 0;
}

static int parse_storage(struct jp *j, json_t *root, struct jobspec *s)
{
        static const char *const keys[] = {
            "url",         "endpoint",    "region",
            "access_key",  "secret_key",  "session_token",
            "path_style",  "ca",          "allow_unsafe_content_types",
            "max_file_mb", "max_step_mb", NULL};
        struct js_storage *st = &s->storage;
        json_t *v = json_object_get(root, "storage");
        const char *p = "$.storage";
        int r;
        if (!v)
                return 0;
        st->path_style = true;
        if ((r = need_object(j, v, p)) < 0 || (r = only_keys(j, v, p, keys)) < 0 ||
            (r = get_str(j, v, p, "url", true, &st->url)) < 0 ||
            (r = get_str(j, v, p, "endpoint", false, &st->endpoint)) < 0 ||
            (r = get_str(j, v, p, "region", false, &st->region)) < 0 ||
            (r = get_str(j, v, p, "access_key", false, &st->access_key)) < 0 ||
            (r = get_str(j, v, p, "secret_key", false, &st->secret_key)) < 0 ||
            (r = get_str(j, v, p, "session_token", false, &st->session_token)) < 0 ||
            (r = get_bool(j, v, p, "path_style", &st->path_style)) < 0 ||
            (r = get_str(j, v, p, "ca", false, &st->ca_pem)) < 0 ||
            (r = get_bool(j, v, p, "allow_unsafe_content_types", &st->allow_unsafe_content_types)) <
                0 ||
            (r = get_u64(j, v, p, "max_file_mb", false, 1, 1ULL << 30, &st->max_file_mb)) < 0 ||
            (r = get_u64(j, v, p, "max_step_mb", false, 1, 1ULL << 30, &st->max_step_mb)) < 0)
                return r;
        if (drv_startswith(st->url, "s3://")) {
                if (strlen(st->url) <= 5 || st->url[5] == '/')
                        return bad(j, p, "url", "'%s' names no bucket", st->url);
                if (!st->endpoint)
                        return bad(j, p, "endpoint", "required for an s3:// url");
                if (!drv_startswith(st->endpoint, "http://") &&
                    !drv_startswith(st->endpoint, "https://"))
                        return bad(j, p, "endpoint", "'%s' is not an http(s):// url", st->endpoint);
        } else if (drv_startswith(st->url, "file:///")) {
                if (strstr(st->url, "/../") || drv_endswith(st->url, "/.."))
                        return bad(j, p, "url", "'%s' must not contain ..", st->url);
        } else {
                return bad(j, p, "url", "'%s' is neither s3://BUCKET nor file:///DIR", st->url);
        }
        if (!st->region)
                st->region = strdup("us-east-1");
        return st->region ? 0 : drv_err(j->err, ENOMEM, "out of memory");
}

static int parse_misc(struct jp *j, json_t *root, struct jobspec *s)
{
        static const char *const okeys[] = {"url", "token", "ca", NULL};
        static const char *const skeys[] = {
            "enabled", "authorized_keys", "idle_timeout", "max_duration", "port_min", "port_max",
            NULL};
        static const char *const tkeys[] = {"job", "no_output", NULL};
        static const char *const wkeys[] = {"layers", NULL};
        static const char *const lkeys[] = {"job", "key", NULL};
        json_t *v;
        int r;
        if ((v = json_object_get(root, "output"))) {
                if ((r = need_object(j, v, "$.output")) < 0 ||
                    (r = only_keys(j, v, "$.output", okeys)) < 0 ||
                    (r = get_str(j, v, "$.output", "url", true, &s->output.url)) < 0 ||
                    (r = get_str(j, v, "$.output", "token", false, &s->output.token)) < 0 ||
                    (r = get_str(j, v, "$.output", "ca", false, &s->output.ca_pem)) < 0)
                        return r;
                if (s->output.ca_pem && !drv_startswith(s->output.ca_pem, "-----BEGIN "))
                        return bad(j, "$.output", "ca",
                                   "want PEM text (-----BEGIN CERTIFICATE-----)");
                if (strcmp(s->output.url, "terminal") != 0 &&
                    !drv_startswith(s->output.url, "http://") &&
                    !drv_startswith(s->output.url, "https://"))
                        return bad(j, "$.output", "url", "'%s' is neither terminal nor http(s)://",
                                   s->output.url);
        }
        s->ssh.idle_timeout = 600;
        s->ssh.max_duration = 7200;
        if ((v = json_object_get(root, "ssh"))) {
                if ((r = need_object(j, v, "$.ssh")) < 0 ||
                    (r = only_keys(j, v, "$.ssh", skeys)) < 0 ||
                    (r = get_bool(j, v, "$.ssh", "enabled", &s->ssh.enabled)) < 0 ||
                    (r = get_strv(j, v, "$.ssh", "authorized_keys", false, false,
                                  &s->ssh.authorized_keys)) < 0 ||
                    (r = get_u64(j, v, "$.ssh", "idle_timeout", false, 1, 86400,
                                 &s->ssh.idle_timeout)) < 0 ||
                    (r = get_u64(j, v, "$.ssh", "max_duration", false, 1, 7 * 86400,
                                 &s->ssh.max_duration)) < 0 ||
                    (r = get_u64(j, v, "$.ssh", "port_min", false, 1, 65535, &s->ssh.port_min)) <
                        0 ||
                    (r = get_u64(j, v, "$.ssh", "port_max", false, 1, 65535, &s->ssh.port_max)) < 0)
                        return r;
                if (s->ssh.port_min && s->ssh.port_max && s->ssh.port_min > s->ssh.port_max)
                        return bad(j, "$.ssh", "port_max", "is below port_min");
                if (s->ssh.enabled && drv_strv_len(s->ssh.authorized_keys) == 0)
                        return bad(j, "$.ssh", "authorized_keys",
                                   "SSH is enabled but no key is given");
        }
        s->job_timeout = 18000;
        s->no_output_timeout = 600;
        if ((v = json_object_get(root, "timeouts"))) {
                if ((r = need_object(j, v, "$.timeouts")) < 0 ||
                    (r = only_keys(j, v, "$.timeouts", tkeys)) < 0 ||
                    (r = get_u64(j, v, "$.timeouts", "job", false, 1, 7 * 86400, &s->job_timeout)) <
                        0 ||
                    (r = get_u64(j, v, "$.timeouts", "no_output", false, 1, 7 * 86400,
                                 &s->no_output_timeout)) < 0)
                        return r;
        }
        if ((v = json_object_get(root, "workspace"))) {
                json_t *layers, *l;
                size_t i;
                if ((r = need_object(j, v, "$.workspace")) < 0 ||
                    (r = only_keys(j, v, "$.workspace", wkeys)) < 0)
                        return r;
                layers = json_object_get(v, "layers");
                if (layers && !json_is_array(layers))
                        return bad(j, "$.workspace", "layers", "expected an array");
                s->layers = calloc(json_array_size(layers) + 1, sizeof(*s->layers));
                if (!s->layers)
                        return drv_err(j->err, ENOMEM, "out of memory");
                json_array_foreach (layers, i, l) {
                        char lp[64];
                        snprintf(lp, sizeof(lp), "$.workspace.layers[%zu]", i);
                        s->n_layers = i + 1;
                        if ((r = need_object(j, l, lp)) < 0 ||
                            (r = only_keys(j, l, lp, lkeys)) < 0 ||
                            (r = get_str(j, l, lp, "job", true, &s->layers[i].job)) < 0 ||
                            (r = get_str(j, l, lp, "key", true, &s->layers[i].key)) < 0)
                                return r;
                }
        }
        if ((v = json_object_get(root, "ssh_keys"))) {
                json_t *k;
                size_t i;
                if (!json_is_array(v))
                        return bad(j, "$", "ssh_keys", "expected an array");
                s->ssh_keys = calloc(json_array_size(v) + 1, sizeof(*s->ssh_keys));
                if (!s->ssh_keys)
                        return drv_err(j->err, ENOMEM, "out of memory");
                json_array_foreach (v, i, k) {
                        char kp[64];
                        snprintf(kp, sizeof(kp), "$.ssh_keys[%zu]", i);
                        s->n_ssh_keys = i + 1;
                        if ((r = parse_key(j, k, kp, &s->ssh_keys[i])) < 0)
                                return r;
                }
        }
        return 0;
}

int jobspec_from_json(json_t *root, struct jobspec **out, struct drv_error *err)
{
        static const char *const keys[] = {
            "version",           "id",       "vcs",       "executor", "environment", "shell",
            "working_directory", "steps",    "workspace", "storage",  "output",      "ssh",
            "ssh_keys",          "timeouts", NULL};
        struct jp j = {.err = err};
        uint64_t version = 0;
        int r;
        if (!json_is_object(root))
                return drv_err(err, EINVAL, "$: expected an object, got %s", json_kind(root));
        json_t *ver = json_object_get(root, "version");
        if (!ver)
                return drv_err(err, EINVAL, "$.version: required field is missing");
        if (!json_is_integer(ver))
                return drv_err(err, EINVAL, "$.version: expected an integer, got %s",
                               json_kind(ver));
        version = (uint64_t)json_integer_value(ver);
        if (json_integer_value(ver) != JOBSPEC_VERSION)
                return drv_err(
                    err, EPROTONOSUPPORT,
                    "$.version: unsupported job spec version %lld (this drover speaks %d)",
                    (long long)json_integer_value(ver), JOBSPEC_VERSION);
        _cleanup_(jobspec_freep) struct jobspec *s = calloc(1, sizeof(*s));
        if (!s)
                return drv_err(err, ENOMEM, "out of memory");
        s->version = (int)version;
        if ((r = only_keys(&j, root, "$", keys)) < 0 || (r = parse_ids(&j, root, s)) < 0 ||
            (r = parse_vcs(&j, root, s)) < 0 || (r = parse_executor(&j, root, s)) < 0 ||
            (r = get_env(&j, root, "$", "environment", &s->env, &s->n_env)) < 0 ||
            (r = get_str(&j, root, "$", "shell", false, &s->shell)) < 0 ||
            (r = get_str(&j, root, "$", "working_directory", false, &s->working_directory)) < 0 ||
            (r = parse_storage(&j, root, s)) < 0 || (r = parse_misc(&j, root, s)) < 0)
                return r;
        if (!s->working_directory && !(s->working_directory = strdup("~/project")))
                return drv_err(err, ENOMEM, "out of memory");
        json_t *steps = json_object_get(root, "steps");
        if (!steps)
                return drv_err(err, EINVAL, "$.steps: required field is missing");
        if (!json_is_array(steps) || json_array_size(steps) == 0)
                return drv_err(err, EINVAL, "$.steps: expected a non-empty array of steps");
        if (json_array_size(steps) > JS_MAX_STEPS)
                return drv_err(err, EINVAL, "$.steps: %zu steps, at most %d",
                               json_array_size(steps), JS_MAX_STEPS);
        if ((r = check_shell(&j, "$", s->shell)) < 0)
                return r;
        s->steps = calloc(json_array_size(steps), sizeof(*s->steps));
        if (!s->steps)
                return drv_err(err, ENOMEM, "out of memory");
        size_t i;
        json_t *st;
        json_array_foreach (steps, i, st) {
                char p[64];
                snprintf(p, sizeof(p), "$.steps[%zu]", i);
                s->n_steps = i + 1;
                if ((r = parse_step(&j, st, p, &s->steps[i])) < 0)
                        return r;
        }
        *out = TAKE_PTR(s);
        return 0;
}

int jobspec_parse(const char *text, size_t len, struct jobspec **out, struct drv_error *err)
{
        json_error_t je;
        json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
        if (!root)
                return drv_err(err, EINVAL, "job spec is not valid JSON (line %d, column %d): %s",
                               je.line, je.column, je.text);
        int r = jobspec_from_json(root, out, err);
        json_decref(root);
        return r;
}

/* ---- encoding ---- */

/* continuation.c: dynamic config — the in-job `circleci continue` tool, and the supervisor's side
 * that reads the job's request through the in-job helper and emits the `continuation` event. */
#include "executor/continuation.h"
#include "cache/jobhelper.h"
#include "lib/drv.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <sys/random.h>
#include <sys/stat.h>

const char *continuation_key(const struct jobspec *spec)
{
        for (size_t i = 0; i < spec->n_env; i++)
                if (strcmp(spec->env[i].name, CONTINUATION_KEY_ENV) == 0 && spec->env[i].value[0])
                        return spec->env[i].value;
        return NULL;
}

/* parameters: an object whose values are strings, numbers or booleans (pipeline parameters). */
static int check_parameters(json_t *params, struct drv_error *err)
{
        const char *name;
        json_t *v;
        if (!json_is_object(params))
                return drv_err(err, EINVAL, "continuation: parameters must be a JSON object");
        json_object_foreach (params, name, v)
                if (!json_is_string(v) && !json_is_number(v) && !json_is_boolean(v))
                        return drv_err(err, EINVAL,
                                       "continuation: parameter '%.100s' must be a string, a "
                                       "number or a boolean",
                                       name);
        return 0;
}

int continuation_parse(const char *body, size_t len, const char *key, json_t **event,
                       struct drv_error *err)
{
        json_error_t je;
        _cleanup_(json_decrefp) json_t *doc = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
        if (!json_is_object(doc))
                return drv_err(err, EINVAL, "continuation: the request is not a JSON object (%s)",
                               doc ? "another JSON value" : je.text);
        const char *k = json_string_value(json_object_get(doc, "continuation-key"));
        if (!k || !key || strcmp(k, key) != 0)
                return drv_err(err, EPERM,
                               "continuation: refused: the continuation key is not this job's");
        json_t *conf = json_object_get(doc, "configuration");
        if (!json_is_string(conf) || json_string_length(conf) == 0)
                return drv_err(err, EINVAL,
                               "continuation: configuration must be a non-empty string (the "
                               "YAML text of the config)");
        json_t *params = json_object_get(doc, "parameters");
        if (params && check_parameters(params, err) < 0)
                return -EINVAL;
        *event = json_pack("{s:O, s:o}", "configuration", conf, "parameters",
                           params ? json_deep_copy(params) : json_object());
        return *event ? 0 : drv_err(err, ENOMEM, "out of memory");
}

/* Read the request file through the in-job helper (as the job) into *body. */
static int read_request(const struct step_ctx *ctx, struct strbuf *body, struct drv_error *err)
{
        char max[32];
        snprintf(max, sizeof(max), "%u", CONTINUATION_MAX_BYTES);
        const char *args[] = {"files", INJOB_CONTINUATION_FILE, max, max, NULL};
        struct jobhelper *h = NULL;
        int r = jobhelper_start(ctx, args, &h, err);
        bool in_file = false;
        while (r == 0) {
                char type;
                const char *p;
                size_t n;
                if ((r = jobhelper_next(h, &type, &p, &n, err)) < 0)
                        break;
                if (type == 'S')
                        break;
                if (type == 'F' && !in_file && body->len == 0) {
                        in_file = true;
                } else if (type == 'D' && in_file) {
                        if (body->len + n > CONTINUATION_MAX_BYTES)
                                r = drv_err(err, EFBIG,
                                            "continuation: the request is over %u "
                                            "bytes",
                                            CONTINUATION_MAX_BYTES);
                        else if (strbuf_append(body, p, n) < 0)
                                r = drv_err(err, ENOMEM, "out of memory");
                } else if (type == 'E' && in_file) {
                        in_file = false;
                } else {
                        r = jobhelper_unexpected(type, p, err);
                }
        }
        return jobhelper_end(h, r, err);
}

static int sha256_hex(const void *data, size_t n, char out[65])
{
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned int len = 0;
        if (!EVP_Digest(data, n, md, &len, EVP_sha256(), NULL) || len != 32)
                return -EIO;
        drv_hex(md, len, out);
        return 0;
}

int continuation_collect(const struct step_ctx *ctx, const char *key, struct continuation_state *st,
                         struct drv_error *err)
{
        struct strbuf body = STRBUF_INIT;
        int r = read_request(ctx, &body, err);
        char digest[65] = "";
        if (r == 0 && sha256_hex(body.buf ? body.buf : "", body.len, digest) < 0)
                r = drv_err(err, EIO, "continuation: cannot hash the request");
        if (r == 0 && st->used && strcmp(digest, st->digest) != 0)
                r = drv_err(err, EPERM,
                            "continuation: refused: this job has continued the pipeline "
                            "already (a continuation key is used once)");
        if (r < 0 || st->used) {
                strbuf_release(&body);
                return r;
        }
        json_t *ev = NULL;
        r = continuation_parse(body.buf ? body.buf : "", body.len, key, &ev, err);
        strbuf_release(&body);
        if (r < 0)
                return r;
        st->used = true;
        memcpy(st->digest, digest, sizeof(st->digest));
        size_t nparams = json_object_size(json_object_get(ev, "parameters"));
        size_t nconf = json_string_length(json_object_get(ev, "configuration"));
        if (job_events_emit(ctx->events, "continuation", ev) < 0)
                return drv_err(err, EIO, "continuation: cannot record the event");
        output_step_printf(ctx->out, ctx->step_index,
                           "drover: the pipeline continues with the configuration given "
                           "(%zu bytes, %zu parameter%s)",
                           nconf, nparams, nparams == 1 ? "" : "s");
        return 0;
}

int continuation_spec_add_key(json_t *spec, const char *key)
{
        json_t *env = json_object_get(spec, "environment");
        if (!env) {
                env = json_array();
                if (!env || json_object_set_new(spec, "environment", env) < 0)
                        return -ENOMEM;
        }
        if (!json_is_array(env))
                return -EINVAL;
        return json_array_append_new(env, json_pack("{s:s, s:s, s:b}", "name", CONTINUATION_KEY_ENV,
                                                    "value", key, "secret", 1)) < 0
                   ? -ENOMEM
                   : 0;
}

int continuation_new_key(char buf[65])
{
        unsigned char raw[32];
        size_t got = 0;
        while (got < sizeof(raw)) {
                ssize_t n = getrandom(raw + got, sizeof(raw) - got, 0);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return -errno;
                got += (size_t)n;
        }
        drv_hex(raw, sizeof(raw), buf);
        return 0;
}

/* --parameters: a JSON object, or the path of a file holding one (the continuation orb's
 * `parameters` takes either). */
static json_t *tool_parameters(const char *arg, struct drv_error *err)
{
        json_error_t je;
        _cleanup_free_ char *text = NULL;
        size_t len = strlen(arg);
        const char *src = arg;
        if (arg[strspn(arg, " \t\n")] != '{') {
                if (drv_read_file(arg, &text, &len, CONTINUATION_MAX_BYTES, err) < 0)
                        return NULL;
                src = text;
        }
        json_t *p = json_loadb(src, len, JSON_REJECT_DUPLICATES, &je);
        if (!p) {
                drv_err(err, EINVAL, "--parameters: not JSON: %s (line %d)", je.text, je.line);
                return NULL;
        }
        if (check_parameters(p, err) < 0) {
                json_decref(p);
                return NULL;
        }
        return p;
}

/* Write the request once (O_EXCL: a second continue in the same job is refused). */
static int tool_write(json_t *req, struct drv_error *err)
{
        _cleanup_free_ char *text = json_dumps(req, JSON_COMPACT);
        if (!text)
                return drv_err(err, ENOMEM, "out of memory");
        int fd = open(INJOB_CONTINUATION_FILE, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                      0600);
        if (fd < 0 && errno == EEXIST)
                return drv_err(err, EEXIST,
                               "this job has continued the pipeline already (a continuation "
                               "key is used once)");
        if (fd < 0)
                return drv_err_errno(err, "cannot write %s", INJOB_CONTINUATION_FILE);
        int r = drv_write_all(fd, text, strlen(text));
        if (close(fd) < 0 || r < 0) {
                unlink(INJOB_CONTINUATION_FILE);
                return drv_err(err, EIO, "cannot write %s", INJOB_CONTINUATION_FILE);
        }
        return 0;
}

int continuation_tool(int argc, char **argv)
{
        /* argv: continue FILE [--parameters JSON|FILE] */
        const char *file = NULL, *params_arg = NULL;
        for (int i = 1; i < argc; i++) {
                if (strcmp(argv[i], "--parameters") == 0 && i + 1 < argc)
                        params_arg = argv[++i];
                else if (strncmp(argv[i], "--parameters=", 13) == 0)
                        params_arg = argv[i] + 13;
                else if (!file && argv[i][0] != '-')
                        file = argv[i];
                else
                        file = NULL, i = argc;
        }
        if (!file) {
                fprintf(stderr, "usage: circleci continue CONFIG_FILE [--parameters "
                                "JSON|FILE]\n");
                return 2;
        }
        const char *key = getenv(CONTINUATION_KEY_ENV);
        if (!key || !key[0]) {
                fprintf(stderr,
                        "circleci continue: %s is not set: only a job of a setup "
                        "workflow (setup: true) can continue the pipeline\n",
                        CONTINUATION_KEY_ENV);
                return 1;
        }
        struct drv_error err = {0};
        _cleanup_free_ char *conf = NULL;
        size_t len;
        _cleanup_(json_decrefp) json_t *params =
            params_arg ? tool_parameters(params_arg, &err) : json_object();
        if (!params || drv_read_file(file, &conf, &len, CONTINUATION_MAX_BYTES, &err) < 0) {
                fprintf(stderr, "circleci continue: %s\n", err.message);
                return 1;
        }
        _cleanup_(json_decrefp) json_t *req =
            json_pack("{s:s, s:s%, s:O}", "continuation-key", key, "configuration", conf, len,
                      "parameters", params);
        if (!req) {
                fprintf(stderr, "circleci continue: %s is not UTF-8 text\n", file);
                return 1;
        }
        if (tool_write(req, &err) < 0) {
                fprintf(stderr, "circleci continue: %s\n", err.message);
                return 1;
        }
        printf("Continuing the pipeline with %s (%zu bytes).\n", file, len);
        return 0;
}

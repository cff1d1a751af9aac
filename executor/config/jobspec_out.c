/* jobspec_out.c: a parsed job spec back to JSON (exact round trip of everything jobspec.c
 * accepts) and freeing it. */
#include "executor/jobspec.h"

static void set_str(json_t *o, const char *k, const char *v)
{
        if (v)
                json_object_set_new(o, k, json_string(v));
}

static json_t *strv_json(char **v)
{
        json_t *a = json_array();
        for (size_t i = 0; v && v[i]; i++)
                json_array_append_new(a, json_string(v[i]));
        return a;
}

static json_t *env_json(const struct js_env *env, size_t n)
{
        json_t *a = json_array();
        for (size_t i = 0; i < n; i++)
                json_array_append_new(a, json_pack("{s:s, s:s, s:b}", "name", env[i].name, "value",
                                                   env[i].value, "secret", env[i].secret));
        return a;
}

static json_t *key_json(const struct js_ssh_key *k)
{
        json_t *o = json_object();
        set_str(o, "fingerprint", k->fingerprint);
        set_str(o, "private_key", k->private_key);
        set_str(o, "hostname", k->hostname);
        return o;
}

static json_t *step_json(const struct js_step *st)
{
        json_t *o = json_object();
        set_str(o, "type", jobspec_step_type_name(st->type));
        set_str(o, "name", st->name);
        set_str(o, "when", jobspec_when_name(st->when));
        switch (st->type) {
        case JS_STEP_RUN:
                set_str(o, "command", st->command);
                set_str(o, "shell", st->shell);
                if (st->n_env)
                        json_object_set_new(o, "environment", env_json(st->env, st->n_env));
                set_str(o, "working_directory", st->working_directory);
                if (st->background)
                        json_object_set_new(o, "background", json_true());
                if (st->no_output_timeout)
                        json_object_set_new(o, "no_output_timeout",
                                            json_integer((json_int_t)st->no_output_timeout));
                break;
        case JS_STEP_CHECKOUT:
                set_str(o, "path", st->path);
                break;
        case JS_STEP_SAVE_CACHE:
                set_str(o, "key", st->key);
                json_object_set_new(o, "paths", strv_json(st->paths));
                break;
        case JS_STEP_RESTORE_CACHE:
                json_object_set_new(o, "keys", strv_json(st->keys));
                break;
        case JS_STEP_PERSIST_TO_WORKSPACE:
                set_str(o, "root", st->root);
                json_object_set_new(o, "paths", strv_json(st->paths));
                break;
        case JS_STEP_ATTACH_WORKSPACE:
                set_str(o, "at", st->at);
                break;
        case JS_STEP_STORE_ARTIFACTS:
                set_str(o, "path", st->path);
                set_str(o, "destination", st->destination);
                break;
        case JS_STEP_STORE_TEST_RESULTS:
                set_str(o, "path", st->path);
                break;
        case JS_STEP_ADD_SSH_KEYS:
                if (st->fingerprints)
                        json_object_set_new(o, "fingerprints", strv_json(st->fingerprints));
                break;
        case JS_STEP_SETUP_REMOTE_DOCKER:
                if (st->docker_layer_caching)
                        json_object_set_new(o, "docker_layer_caching", json_true());
                break;
        }
        return o;
}

static json_t *executor_json(const struct js_executor *e)
{
        static const char *const runtimes[] = {"sandbox", "docker"};
        static const char *const kinds[] = {"machine", "docker"};
        static const char *const nets[] = {"none", "private"};
        json_t *o = json_object();
        set_str(o, "runtime", runtimes[e->runtime]);
        set_str(o, "kind", kinds[e->kind]);
        set_str(o, "network", nets[e->network]);
        set_str(o, "resource_class", e->resource_class);
        if (e->n_images) {
                json_t *a = json_array();
                for (size_t i = 0; i < e->n_images; i++) {
                        const struct js_image *im = &e->images[i];
                        json_t *io = json_object();
                        set_str(io, "image", im->image);
                        set_str(io, "name", im->name);
                        if (im->entrypoint)
                                json_object_set_new(io, "entrypoint", strv_json(im->entrypoint));
                        if (im->command)
                                json_object_set_new(io, "command", strv_json(im->command));
                        set_str(io, "user", im->user);
                        if (im->n_env)
                                json_object_set_new(io, "environment",
                                                    env_json(im->env, im->n_env));
                        if (im->auth.username)
                                json_object_set_new(io, "auth",
                                                    json_pack("{s:s, s:s}", "username",
                                                              im->auth.username, "password",
                                                              im->auth.password));
                        json_t *ir = json_object();
                        if (im->cpus > 0)
                                json_object_set_new(ir, "cpus", json_real(im->cpus));
                        if (im->memory_mb)
                                json_object_set_new(ir, "memory_mb",
                                                    json_integer((json_int_t)im->memory_mb));
                        if (im->pids)
                                json_object_set_new(ir, "pids", json_integer((json_int_t)im->pids));
                        if (json_object_size(ir))
                                json_object_set_new(io, "resources", ir);
                        else
                                json_decref(ir);
                        json_array_append_new(a, io);
                }
                json_object_set_new(o, "images", a);
        }
        json_t *res = json_object();
        if (e->cpus > 0)
                json_object_set_new(res, "cpus", json_real(e->cpus));
        if (e->memory_mb)
                json_object_set_new(res, "memory_mb", json_integer((json_int_t)e->memory_mb));
        if (e->pids)
                json_object_set_new(res, "pids", json_integer((json_int_t)e->pids));
        if (e->disk_mb)
                json_object_set_new(res, "disk_mb", json_integer((json_int_t)e->disk_mb));
        json_object_set_new(o, "resources", res);
        if (e->docker_host.url) {
                json_t *d = json_object();
                set_str(d, "url", e->docker_host.url);
                set_str(d, "ca", e->docker_host.ca_pem);
                set_str(d, "cert", e->docker_host.cert_pem);
                set_str(d, "key", e->docker_host.key_pem);
                json_object_set_new(o, "docker_host", d);
        }
        return o;
}

json_t *jobspec_to_json(const struct jobspec *s)
{
        json_t *o = json_object();
        json_object_set_new(o, "version", json_integer(s->version));
        json_t *id = json_object();
        set_str(id, "job", s->job_id);
        set_str(id, "attempt", s->attempt);
        set_str(id, "name", s->job_name);
        json_object_set_new(id, "build_num", json_integer((json_int_t)s->build_num));
        set_str(id, "workflow", s->workflow_id);
        set_str(id, "workflow_name", s->workflow_name);
        set_str(id, "project", s->project);
        set_str(id, "pipeline", s->pipeline_id);
        json_object_set_new(id, "node_index", json_integer(s->node_index));
        json_object_set_new(id, "node_total", json_integer(s->node_total));
        json_object_set_new(o, "id", id);
        if (s->vcs.url || s->vcs.revision || s->vcs.branch || s->vcs.tag) {
                json_t *v = json_object();
                set_str(v, "url", s->vcs.url);
                set_str(v, "revision", s->vcs.revision);
                set_str(v, "branch", s->vcs.branch);
                set_str(v, "tag", s->vcs.tag);
                set_str(v, "pr_number", s->vcs.pr_number);
                set_str(v, "known_hosts", s->vcs.known_hosts);
                if (s->vcs.depth)
                        json_object_set_new(v, "depth", json_integer((json_int_t)s->vcs.depth));
                set_str(v, "filter", s->vcs.filter);
                if (s->vcs.pr_merge)
                        json_object_set_new(v, "pr_ref", json_string("merge"));
                if (s->vcs.checkout_key.private_key)
                        json_object_set_new(v, "checkout_key", key_json(&s->vcs.checkout_key));
                json_object_set_new(o, "vcs", v);
        }
        json_object_set_new(o, "executor", executor_json(&s->executor));
        json_object_set_new(o, "environment", env_json(s->env, s->n_env));
        set_str(o, "shell", s->shell);
        set_str(o, "working_directory", s->working_directory);
        json_t *steps = json_array();
        for (size_t i = 0; i < s->n_steps; i++)
                json_array_append_new(steps, step_json(&s->steps[i]));
        json_object_set_new(o, "steps", steps);
        if (s->n_layers) {
                json_t *a = json_array();
                for (size_t i = 0; i < s->n_layers; i++)
                        json_array_append_new(a, json_pack("{s:s, s:s}", "job", s->layers[i].job,
                                                           "key", s->layers[i].key));
                json_object_set_new(o, "workspace", json_pack("{s:o}", "layers", a));
        }
        if (s->storage.url) {
                const struct js_storage *st = &s->storage;
                json_t *so = json_object();
                set_str(so, "url", st->url);
                set_str(so, "endpoint", st->endpoint);
                set_str(so, "region", st->region);
                set_str(so, "access_key", st->access_key);
                set_str(so, "secret_key", st->secret_key);
                set_str(so, "session_token", st->session_token);
                json_object_set_new(so, "path_style", json_boolean(st->path_style));
                set_str(so, "ca", st->ca_pem);
                json_object_set_new(so, "allow_unsafe_content_types",
                                    json_boolean(st->allow_unsafe_content_types));
                if (st->max_file_mb)
                        json_object_set_new(so, "max_file_mb",
                                            json_integer((json_int_t)st->max_file_mb));
                if (st->max_step_mb)
                        json_object_set_new(so, "max_step_mb",
                                            json_integer((json_int_t)st->max_step_mb));
                json_object_set_new(o, "storage", so);
        }
        if (s->output.url) {
                json_t *oo = json_object();
                set_str(oo, "url", s->output.url);
                set_str(oo, "token", s->output.token);
                set_str(oo, "ca", s->output.ca_pem);
                json_object_set_new(o, "output", oo);
        }
        json_t *ssh = json_object();
        json_object_set_new(ssh, "enabled", json_boolean(s->ssh.enabled));
        json_object_set_new(ssh, "authorized_keys", strv_json(s->ssh.authorized_keys));
        json_object_set_new(ssh, "idle_timeout", json_integer((json_int_t)s->ssh.idle_timeout));
        json_object_set_new(ssh, "max_duration", json_integer((json_int_t)s->ssh.max_duration));
        if (s->ssh.port_min)
                json_object_set_new(ssh, "port_min", json_integer((json_int_t)s->ssh.port_min));
        if (s->ssh.port_max)
                json_object_set_new(ssh, "port_max", json_integer((json_int_t)s->ssh.port_max));
        json_object_set_new(o, "ssh", ssh);
        if (s->n_ssh_keys) {
                json_t *a = json_array();
                for (size_t i = 0; i < s->n_ssh_keys; i++)
                        json_array_append_new(a, key_json(&s->ssh_keys[i]));
                json_object_set_new(o, "ssh_keys", a);
        }
        json_object_set_new(o, "timeouts",
                            json_pack("{s:I, s:I}", "job", (json_int_t)s->job_timeout, "no_output",
                                      (json_int_t)s->no_output_timeout));
        return o;
}

/* ---- freeing ---- */

static void env_free(struct js_env *env, size_t n)
{
        for (size_t i = 0; i < n; i++) {
                free(env[i].name);
                free(env[i].value);
        }
        free(env);
}

static void key_free(struct js_ssh_key *k)
{
        free(k->fingerprint);
        free(k->private_key);
        free(k->hostname);
}

void jobspec_free(struct jobspec *s)
{
        if (!s)
                return;
        free(s->job_id);
        free(s->attempt);
        free(s->job_name);
        free(s->workflow_id);
        free(s->workflow_name);
        free(s->project);
        free(s->pipeline_id);
        free(s->vcs.url);
        free(s->vcs.revision);
        free(s->vcs.branch);
        free(s->vcs.tag);
        free(s->vcs.pr_number);
        free(s->vcs.known_hosts);
        free(s->vcs.filter);
        key_free(&s->vcs.checkout_key);
        for (size_t i = 0; i < s->executor.n_images; i++) {
                struct js_image *im = &s->executor.images[i];
                free(im->image);
                free(im->name);
                drv_strv_free(im->entrypoint);
                drv_strv_free(im->command);
                free(im->user);
                env_free(im->env, im->n_env);
                free(im->auth.username);
                free(im->auth.password);
        }
        free(s->executor.images);
        free(s->executor.resource_class);
        free(s->executor.docker_host.url);
        free(s->executor.docker_host.ca_pem);
        free(s->executor.docker_host.cert_pem);
        free(s->executor.docker_host.key_pem);
        env_free(s->env, s->n_env);
        free(s->shell);
        free(s->working_directory);
        for (size_t i = 0; i < s->n_steps; i++) {
                struct js_step *st = &s->steps[i];
                free(st->name);
                free(st->command);
                free(st->shell);
                env_free(st->env, st->n_env);
                free(st->working_directory);
                free(st->path);
                free(st->destination);
                free(st->root);
                free(st->at);
                drv_strv_free(st->paths);
                free(st->key);
                drv_strv_free(st->keys);
                drv_strv_free(st->fingerprints);
        }
        free(s->steps);
        for (size_t i = 0; i < s->n_layers; i++) {
                free(s->layers[i].job);
                free(s->layers[i].key);
        }
        free(s->layers);
        free(s->storage.url);
        free(s->storage.endpoint);
        free(s->storage.region);
        free(s->storage.access_key);
        free(s->storage.secret_key);
        free(s->storage.session_token);
        free(s->storage.ca_pem);
        free(s->output.url);
        free(s->output.token);
        free(s->output.ca_pem);
        drv_strv_free(s->ssh.authorized_keys);
        for (size_t i = 0; i < s->n_ssh_keys; i++)
                key_free(&s->ssh_keys[i]);
        free(s->ssh_keys);
        free(s);
}

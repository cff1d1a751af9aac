/* compile.c: .circleci/config.yml -> job specs: jobs, executors, resource classes, workflows
 * with requires, matrix and branch/tag filters. */
#include "executor/config/internal.h"
#include "executor/jobspec.h"

#include <ctype.h>
#include <regex.h>
#include <sys/utsname.h>

struct rclass {
        const char *name;
        double cpus;
        unsigned memory_mb;
};

static const struct rclass rclasses[] = {
    {"small", 1, 2048},   {"medium", 2, 4096},    {"medium+", 3, 6144},    {"large", 4, 8192},
    {"xlarge", 8, 16384}, {"2xlarge", 16, 32768}, {"2xlarge+", 20, 40960},
};

static const char *const top_keys[] = {"version",    "jobs",    "workflows",  "commands",
                                       "executors",  "orbs",    "parameters", "setup",
                                       "references", "aliases", "defaults",   NULL};

bool config_top_key_ok(const char *key)
{
        for (size_t i = 0; top_keys[i]; i++)
                if (strcmp(top_keys[i], key) == 0)
                        return true;
        return false;
}

static const struct rclass *find_rclass(const char *name)
{
        /* "large", "arm.medium", "medium.gen2", "large.gen3": the size is the word before a
         * ".genN" suffix and after a platform prefix */
        char buf[64];
        snprintf(buf, sizeof(buf), "%s", name);
        char *gen = strstr(buf, ".gen");
        if (gen && gen[4] && strspn(gen + 4, "0123456789") == strlen(gen + 4))
                *gen = '\0';
        const char *dot = strrchr(buf, '.');
        const char *n = dot ? dot + 1 : buf;
        for (size_t i = 0; i < DRV_ARRAY_SIZE(rclasses); i++)
                if (strcmp(rclasses[i].name, n) == 0)
                        return &rclasses[i];
        return NULL;
}

/* A self-hosted runner class: NAMESPACE/NAME (how CircleCI routes jobs to self-hosted
 * builders; drover's agents take jobs of the classes they are configured with). */
static bool self_hosted_class(const char *s)
{
        const char *slash = strchr(s, '/');
        if (!slash || slash == s || !slash[1] || strchr(slash + 1, '/'))
                return false;
        for (const char *q = s; *q; q++)
                if (!isalnum((unsigned char)*q) && !strchr("_-./", *q))
                        return false;
        return true;
}

static bool host_is_arm(const struct config_opts *o)
{
        struct utsname u;
        const char *m = o->arch;
        if (!m && uname(&u) == 0)
                m = u.machine;
        return m && (drv_startswith(m, "aarch64") || drv_startswith(m, "arm"));
}

/* Why this builder cannot run a job with this resource class / machine image; NULL: it can. */
static const char *unrunnable_reason(struct cctx *c, const char *rc, const char *image)
{
        if (rc && drv_startswith(rc, "macos."))
                return "macOS resource class: a Linux builder cannot run macOS jobs";
        if (rc && drv_startswith(rc, "windows."))
                return "Windows resource class: a Linux builder cannot run Windows jobs";
        if (image && drv_startswith(image, "windows-"))
                return "Windows machine image: a Linux builder cannot run Windows jobs";
        if (rc && drv_startswith(rc, "gpu."))
                return "GPU resource class: drover builders have no GPU";
        if (rc && drv_startswith(rc, "arm.") && !host_is_arm(c->opts))
                return "Arm resource class: this builder is not Arm";
        return NULL;
}

static json_t *image_json(struct cctx *c, const struct ynode *im)
{
        static const char *const keys[] = {"image",       "name", "entrypoint", "command", "user",
                                           "environment", "auth", "aws_auth",   NULL};
        const struct ynode *img = ynode_get(im, "image");
        if (im->kind != Y_MAP || !img || img->kind != Y_SCALAR || ynode_is_null(img) ||
            !img->value[0]) {
                cerr(c, im, "each docker entry needs an image");
                return NULL;
        }
        for (size_t i = 0; i < ynode_pairs(im); i++) {
                const char *k = im->items[2 * i]->value;
                bool ok = false;
                for (size_t j = 0; keys[j]; j++)
                        ok = ok || strcmp(k, keys[j]) == 0;
                if (!ok)
                        cerr(c, im->items[2 * i], "unknown key '%s' in a docker image", k);
        }
        if (ynode_get(im, "aws_auth"))
                cwarn(c, ynode_get(im, "aws_auth"),
                      "aws_auth is accepted and ignored: drover pulls with `auth` "
                      "(username and password) or the builder's own registry credentials");
        json_t *o = json_pack("{s:s}", "image", img->value);
        const struct ynode *v;
        if ((v = ynode_get(im, "name")) && v->kind == Y_SCALAR)
                json_object_set_new(o, "name", json_string(v->value));
        if ((v = ynode_get(im, "user")) && v->kind == Y_SCALAR)
                json_object_set_new(o, "user", json_string(v->value));
        static const char *const lists[] = {"entrypoint", "command"};
        for (size_t i = 0; i < 2; i++) {
                v = ynode_get(im, lists[i]);
                if (!v)
                        continue;
                json_t *a = json_array();
                if (v->kind == Y_SCALAR)
                        json_array_append_new(a, json_string(v->value));
                for (size_t j = 0; v->kind == Y_SEQ && j < v->n; j++)
                        if (v->items[j]->kind == Y_SCALAR)
                                json_array_append_new(a, json_string(v->items[j]->value));
                json_object_set_new(o, lists[i], a);
        }
        if ((v = ynode_get(im, "environment")))
                json_object_set_new(o, "environment", config_env(c, v));
        if ((v = ynode_get(im, "auth"))) {
                const struct ynode *u = ynode_get(v, "username"), *p = ynode_get(v, "password");
                if (!u || !p || u->kind != Y_SCALAR || p->kind != Y_SCALAR)
                        cerr(c, v, "auth needs username and password");
                else
                        json_object_set_new(
                            o, "auth",
                            json_pack("{s:s, s:s}", "username", u->value, "password", p->value));
        }
        return o;
}

/* Entries of an environment (map, or list of K=V / one-pair maps) appended to seq as one-pair
 * maps or K=V strings (copies). */
static void env_entries(struct ynode *seq, const struct ynode *env)
{
        for (size_t i = 0; env && env->kind == Y_MAP && i + 1 < env->n; i += 2) {
                struct ynode *m = ynode_new(Y_MAP, env->items[i]->line, env->items[i]->col);
                struct ynode *k = ynode_copy(env->items[i]), *v = ynode_copy(env->items[i + 1]);
                if (!m || !k || !v || ynode_append(m, k) < 0 || ynode_append(m, v) < 0 ||
                    ynode_append(seq, m) < 0) {
                        ynode_free(m);
                        continue;
                }
        }
        for (size_t i = 0; env && env->kind == Y_SEQ && i < env->n; i++) {
                struct ynode *e = ynode_copy(env->items[i]);
                if (e && ynode_append(seq, e) < 0)
                        ynode_free(e);
        }
}

/* The executor's `environment` goes under the job's (CircleCI merges them; the job's value wins
 * for a name both set: config_env keeps the last one). */
static void merge_environment(struct ynode *body, const struct ynode *edef)
{
        const struct ynode *eenv = ynode_get(edef, "environment");
        struct ynode *jenv = ynode_get(body, "environment");
        if (!eenv || !jenv || ynode_is_null(eenv) || eenv->kind == Y_SCALAR ||
            jenv->kind == Y_SCALAR)
                return;
        struct ynode *seq = ynode_new(Y_SEQ, jenv->line, jenv->col);
        if (!seq)
                return;
        env_entries(seq, eenv);
        env_entries(seq, jenv);
        /* replace the job's value in place (the map keeps its key) */
        for (size_t i = 0; i + 1 < body->n; i += 2)
                if (body->items[i + 1] == jenv) {
                        ynode_free(jenv);
                        body->items[i + 1] = seq;
                        return;
                }
        ynode_free(seq);
}

/* The job body with a named executor merged in (job keys win). Returns a new node. */
static struct ynode *with_executor(struct cctx *c, const struct ynode *job)
{
        const struct ynode *ex = ynode_get(job, "executor");
        struct ynode *body = ynode_copy(job);
        if (!ex || !body)
                return body;
        const char *name = ex->kind == Y_SCALAR ? ex->value : NULL;
        const struct ynode *args = NULL;
        if (ex->kind == Y_MAP) {
                const struct ynode *n = ynode_get(ex, "name");
                name = n && n->kind == Y_SCALAR ? n->value : NULL;
                args = ex;
        }
        if (!name) {
                cerr(c, ex, "executor must name an executor");
                ynode_free(body);
                return NULL;
        }
        const struct ynode *def = NULL;
        int lr = config_lookup(c, "executors", name, ex, &def);
        if (lr < 0) {
                if (lr == -ENOENT)
                        cerr(c, ex, "unknown executor '%s'", name);
                ynode_free(body);
                return NULL;
        }
        struct cparams p = {0};
        char what[300];
        snprintf(what, sizeof(what), "executor '%s'", name);
        int r = params_bind_element(c, name, ynode_get(def, "parameters"), args, what, ex, &p);
        struct ynode *edef = r == 0 ? params_subst(c, def, &p) : NULL;
        params_free(&p);
        if (!edef) {
                ynode_free(body);
                return NULL;
        }
        merge_environment(body, edef);
        for (size_t i = 0; i + 1 < edef->n; i += 2) {
                const char *k = edef->items[i]->value;
                if (strcmp(k, "parameters") == 0 || ynode_get(body, k))
                        continue;
                if (ynode_append(body, edef->items[i]) == 0 &&
                    ynode_append(body, edef->items[i + 1]) == 0)
                        edef->items[i] = edef->items[i + 1] = NULL;
        }
        ynode_free(edef);
        return body;
}

/* machine: true, or a map of image, docker_layer_caching, shell, resource_class. */
static int machine_keys(struct cctx *c, const struct ynode *machine)
{
        static const char *const mkeys[] = {"image", "docker_layer_caching", "shell",
                                            "resource_class", NULL};
        bool on = false;
        int r = 0;
        if ((machine->kind == Y_SCALAR && (ynode_bool(machine, &on) < 0 || !on)) ||
            machine->kind == Y_SEQ)
                r = cerr(c, machine,
                         "machine must be true or a map (image, docker_layer_caching, shell, "
                         "resource_class)");
        for (size_t i = 0; machine->kind == Y_MAP && i < ynode_pairs(machine); i++) {
                const char *k = machine->items[2 * i]->value;
                bool ok = false;
                for (size_t j = 0; mkeys[j]; j++)
                        ok = ok || strcmp(k, mkeys[j]) == 0;
                if (!ok)
                        r = cerr(c, machine->items[2 * i], "unknown key '%s' in machine", k);
        }
        const struct ynode *img = ynode_get(machine, "image");
        if (img && img->kind == Y_SCALAR && !drv_startswith(img->value, "windows-"))
                cwarn(c, img,
                      "machine image '%s' is not used: drover runs machine jobs in its sandbox "
                      "on this host's own OS (read-only), not in a VM image",
                      img->value);
        return r;
}

static int job_executor(struct cctx *c, const struct ynode *job, json_t *spec)
{
        json_t *ex = json_pack("{s:s, s:s, s:s}", "runtime", "sandbox", "kind", "machine",
                               "network", "private");
        json_object_set_new(spec, "executor", ex);
        const struct ynode *docker = ynode_get(job, "docker");
        const struct ynode *machine = ynode_get(job, "machine");
        const struct ynode *macos = ynode_get(job, "macos");
        int r = 0;
        if ((docker != NULL) + (machine != NULL) + (macos != NULL) > 1)
                r = cerr(c, job, "a job has one of docker, machine or macos, not more");
        if (docker) {
                if (docker->kind != Y_SEQ || docker->n == 0)
                        return cerr(c, docker, "docker must be a list of images");
                json_t *imgs = json_array();
                for (size_t i = 0; i < docker->n; i++) {
                        json_t *im = image_json(c, docker->items[i]);
                        if (!im)
                                r = -EINVAL;
                        else
                                json_array_append_new(imgs, im);
                }
                json_object_set_new(ex, "kind", json_string("docker"));
                json_object_set_new(ex, "images", imgs);
        } else if (machine) {
                r = machine_keys(c, machine) ?: r;
        } else if (!macos) {
                r = cerr(c, job, "the job has no executor (docker, machine, macos or executor)");
        }
        const struct ynode *rc = ynode_get(job, "resource_class");
        if (!rc)
                rc = ynode_get(machine, "resource_class");
        const struct ynode *img = ynode_get(machine, "image");
        const char *rcname = rc && rc->kind == Y_SCALAR ? rc->value : "medium";
        const char *why =
            macos ? "macOS executor: a Linux builder cannot run macOS jobs"
                  : unrunnable_reason(c, rcname, img && img->kind == Y_SCALAR ? img->value : NULL);
        if (why && !c->unrunnable)
                c->unrunnable = strdup(why);
        const struct rclass *cls = find_rclass(rcname);
        static const struct rclass self_hosted = {"self-hosted", 2, 4096};
        if (!cls && self_hosted_class(rcname))
                cls = &self_hosted; /* the runner's machine: sized as medium here */
        if (!cls && !why)
                return cerr(c, rc, "unknown resource_class '%s'", rcname);
        if (!cls)
                cls = &rclasses[1];
        json_object_set_new(ex, "resource_class", json_string(rcname));
        json_object_set_new(
            ex, "resources",
            json_pack("{s:f, s:i}", "cpus", cls->cpus, "memory_mb", (int)cls->memory_mb));
        return r;
}

static json_t *vcs_json(const struct config_opts *o)
{
        json_t *v = json_object();
        if (o->repo_url)
                json_object_set_new(v, "url", json_string(o->repo_url));
        if (o->revision)
                json_object_set_new(v, "revision", json_string(o->revision));
        if (o->branch)
                json_object_set_new(v, "branch", json_string(o->branch));
        if (o->tag)
                json_object_set_new(v, "tag", json_string(o->tag));
        return v;
}

/* Compile one job (already parameter-bound) into a spec. */
static json_t *job_spec(struct cctx *c, const char *name, const struct ynode *job,
                        const char *workflow, unsigned *parallelism)
{
        static const char *const keys[] = {"docker",
                                           "machine",
                                           "macos",
                                           "executor",
                                           "resource_class",
                                           "environment",
                                           "working_directory",
                                           "shell",
                                           "parallelism",
                                           "steps",
                                           "parameters",
                                           "circleci_ip_ranges",
                                           "description",
                                           "type",
                                           "retention",
                                           "branches",
                                           NULL};
        for (size_t i = 0; i < ynode_pairs(job); i++) {
                const char *k = job->items[2 * i]->value;
                bool ok = false;
                for (size_t j = 0; keys[j]; j++)
                        ok = ok || strcmp(k, keys[j]) == 0;
                if (!ok)
                        cerr(c, job->items[2 * i], "unknown key '%s' in job '%s'%s", k, name,
                             csuggest(c, k, keys, NULL));
        }
        static const char *const ignored[] = {"retention", "branches", "circleci_ip_ranges"};
        for (size_t i = 0; i < DRV_ARRAY_SIZE(ignored); i++)
                if (ynode_get(job, ignored[i]))
                        cwarn(c, ynode_get(job, ignored[i]), "%s is accepted and ignored: %s",
                              ignored[i],
                              i == 0   ? "drover's store keeps caches by its own expiry"
                              : i == 1 ? "deprecated by CircleCI; use workflow filters"
                                       : "a drover builder's addresses are its own");
        json_t *spec = json_object();
        json_object_set_new(spec, "version", json_integer(JOBSPEC_VERSION));
        char id[512];
        snprintf(id, sizeof(id), "%s-%s", c->opts->workflow_id ? c->opts->workflow_id : "local",
                 name);
        for (char *q = id; *q; q++) /* orb jobs are named "orb/job"; an id is one path segment */
                if (*q == '/')
                        *q = '-';
        *parallelism = 1;
        const struct ynode *par = ynode_get(job, "parallelism");
        uint64_t pv = 1;
        if (par &&
            (par->kind != Y_SCALAR || drv_parse_u64(par->value, &pv) < 0 || pv < 1 || pv > 1000))
                cerr(c, par, "parallelism must be a whole number from 1 to 1000");
        *parallelism = (unsigned)pv;
        json_t *ids =
            json_pack("{s:s, s:s, s:I, s:i, s:i}", "job", id, "name", name, "build_num",
                      (json_int_t)c->opts->build_num, "node_index", 0, "node_total", (int)pv);
        if (workflow)
                json_object_set_new(ids, "workflow_name", json_string(workflow));
        if (c->opts->workflow_id)
                json_object_set_new(ids, "workflow", json_string(c->opts->workflow_id));
        if (c->opts->project)
                json_object_set_new(ids, "project", json_string(c->opts->project));
        json_object_set_new(spec, "id", ids);
        json_object_set_new(spec, "vcs", vcs_json(c->opts));
        job_executor(c, job, spec);
        json_t *env = json_array();
        for (int secret = 0; secret < 2; secret++) {
                const char *const *kvs = secret ? c->opts->secret_env : c->opts->env;
                for (size_t i = 0; kvs && kvs[i]; i++) {
                        const char *kv = kvs[i], *eq = strchr(kv, '=');
                        json_t *e = eq ? json_pack("{s:s#, s:s}", "name", kv, (int)(eq - kv),
                                                   "value", eq + 1)
                                       : NULL;
                        if (e && secret)
                                json_object_set_new(e, "secret", json_true());
                        if (e)
                                json_array_append_new(env, e);
                }
        }
        json_t *jenv = config_env(c, ynode_get(job, "environment"));
        json_array_extend(env, jenv);
        json_decref(jenv);
        json_object_set_new(spec, "environment", env);
        const struct ynode *wd = ynode_get(job, "working_directory");
        if (wd && wd->kind == Y_SCALAR)
                json_object_set_new(spec, "working_directory", json_string(wd->value));
        const struct ynode *sh = ynode_get(job, "shell");
        if (!sh)
                sh = ynode_get(ynode_get(job, "machine"), "shell");
        if (sh && sh->kind == Y_SCALAR)
                json_object_set_new(spec, "shell", json_string(sh->value));
        json_t *steps = json_array();
        const struct ynode *st = ynode_get(job, "steps");
        if (!st)
                cerr(c, job, "job '%s' has no steps", name);
        else if (steps_compile(c, st, steps) == 0 && json_array_size(steps) == 0)
                cerr(c, st, "job '%s' has no steps%s", name,
                     st->kind == Y_SEQ && st->n ? " left after when/unless" : "");
        json_object_set_new(spec, "steps", steps);
        return spec;
}

/* A workflow job's `pre-steps` / `post-steps` go before / after the job's steps. */
static int add_pre_post_steps(struct cctx *c, struct ynode *body, const struct ynode *args)
{
        static const struct cparams none = {0};
        const struct ynode *pre = ynode_get(args, "pre-steps"),
                           *post = ynode_get(args, "post-steps");
        if (!pre && !post)
                return 0;
        struct ynode *steps = ynode_get(body, "steps");
        if (!steps || steps->kind != Y_SEQ)
                return 0; /* job_spec reports it */
        const struct ynode *parts[2] = {pre, post};
        for (int k = 0; k < 2; k++) {
                if (!parts[k])
                        continue;
                if (parts[k]->kind != Y_SEQ)
                        return cerr(c, parts[k], "%s must be a list of steps",
                                    k ? "post-steps" : "pre-steps");
                struct ynode *add = params_subst(c, parts[k], &none);
                if (!add)
                        return -EINVAL;
                size_t old_n = steps->n;
                for (size_t i = 0; i < add->n; i++)
                        if (ynode_append(steps, add->items[i]) < 0) {
                                ynode_free(add);
                                return -ENOMEM;
                        } else {
                                add->items[i] = NULL;
                        }
                if (k == 0 && add->n) { /* rotate the new items to the front */
                        size_t na = add->n;
                        struct ynode **tmp = malloc(na * sizeof(*tmp));
                        if (!tmp) {
                                ynode_free(add);
                                return -ENOMEM;
                        }
                        memcpy(tmp, steps->items + old_n, na * sizeof(*tmp));
                        memmove(steps->items + na, steps->items, old_n * sizeof(*tmp));
                        memcpy(steps->items, tmp, na * sizeof(*tmp));
                        free(tmp);
                }
                add->n = 0;
                ynode_free(add);
        }
        return 0;
}

json_t *compile_job(struct cctx *c, const char *jobname, const char *name, const struct ynode *args,
                    const struct ynode *where, const char *wf, unsigned *parallelism)
{
        const struct ynode *job = NULL;
        int lr = config_lookup(c, "jobs", jobname, where, &job);
        if (lr < 0) {
                if (lr == -ENOENT)
                        cerr(c, where, "unknown job '%s'%s", jobname,
                             csuggest(c, jobname, NULL, ynode_get(c->root, "jobs")));
                return NULL;
        }
        if (job->kind != Y_MAP) {
                cerr(c, job, "job '%s' must be a map", jobname);
                return NULL;
        }
        struct cparams p = {0};
        char what[300];
        snprintf(what, sizeof(what), "job '%s'", jobname);
        if (params_bind_element(c, jobname, ynode_get(job, "parameters"), args, what, where, &p) <
            0) {
                params_free(&p);
                return NULL;
        }
        struct ynode *bound = params_subst(c, job, &p);
        params_free(&p);
        struct ynode *body = bound ? with_executor(c, bound) : NULL;
        ynode_free(bound);
        if (!body || add_pre_post_steps(c, body, args) < 0) {
                ynode_free(body);
                return NULL;
        }
        c->expanded = 0;
        free(c->unrunnable);
        c->unrunnable = NULL;
        if (strcmp(job_kind(c, jobname), "release") == 0)
                c->unrunnable = strdup("release job: it records a deploy in CircleCI's deploys "
                                       "view, which drover does not have");
        json_t *spec = job_spec(c, name, body, wf, parallelism);
        ynode_free(body);
        if (c->unrunnable) {
                cwarn(c, job, "job '%s' cannot run on this builder (%s); it is reported as not run",
                      jobname, c->unrunnable);
                json_decref(spec);
                return NULL;
        }
        return spec;
}

const char *job_kind(struct cctx *c, const char *jobname)
{
        static const char *const kinds[] = {"build", "no-op", "approval", "release"};
        const struct ynode *job = NULL;
        config_lookup(c, "jobs", jobname, NULL, &job); /* compile_job reports a missing one */
        const struct ynode *t = ynode_get(job, "type");
        if (!t)
                return "build";
        for (size_t i = 0; t->kind == Y_SCALAR && i < DRV_ARRAY_SIZE(kinds); i++)
                if (strcmp(t->value, kinds[i]) == 0)
                        return kinds[i];
        cerr(c, t, "job type must be build, no-op, approval or release");
        return "build";
}

/* docker_proxy_rules.c: what a job may ask of a shared engine through its API proxy. Deny by
 * default: a known route, on objects labelled drover.job=LABEL (looked up on every by-id call; the
 * call then names the full id, so a prefix or a name cannot change its target meanwhile), with
 * bodies whose every non-empty field is known to be harmless to the engine host and other jobs;
 * list calls are filtered by the label; everything created gets the labels. */
#include "executor/docker/docker_proxy_int.h"

/* ---- small helpers ---- */

static int refuse(struct dproxy_req *rq, int status, const char *fmt, ...) DRV_PRINTF(3, 4);
static int refuse(struct dproxy_req *rq, int status, const char *fmt, ...)
{
        va_list ap;
        va_start(ap, fmt);
        int n = snprintf(rq->msg, sizeof(rq->msg), "drover: ");
        vsnprintf(rq->msg + n, sizeof(rq->msg) - (size_t)n, fmt, ap);
        va_end(ap);
        rq->status = status;
        return 1;
}

/* null, false, 0, "", [], {} (the CLI sends every field, most of them empty) */
static bool empty(json_t *v)
{
        if (!v)
                return true; /* absent */
        switch (json_typeof(v)) {
        case JSON_NULL:
        case JSON_FALSE:
                return true;
        case JSON_INTEGER:
                return json_integer_value(v) == 0;
        case JSON_REAL:
                return json_real_value(v) == 0;
        case JSON_STRING:
                return json_string_length(v) == 0;
        case JSON_ARRAY:
                return json_array_size(v) == 0;
        case JSON_OBJECT:
                return json_object_size(v) == 0;
        default:
                return false;
        }
}

static int filter_mine(const struct dproxy *px, struct docker *d, struct dproxy_req *rq)
{
        _cleanup_free_ char *f = dproxy_qget(rq->query, "filters");
        json_t *j = f && f[0] ? json_loads(f, 0, NULL) : json_object();
        if (!json_is_object(j)) {
                json_decref(j);
                return refuse(rq, 400, "filters is not a JSON object");
        }
        _cleanup_free_ char *lbl = drv_asprintf(DOCKER_LABEL_JOB "=%s", px->label);
        json_t *cur = json_object_get(j, "label");
        bool map = json_is_object(cur) || !cur;
        const char *k;
        json_t *v;
        json_object_foreach (j, k, v)
                map = map && !json_is_array(v); /* one format for all keys */
        if (!cur)
                json_object_set_new(j, "label", cur = map ? json_object() : json_array());
        if (json_is_object(cur))
                json_object_set_new(cur, lbl, json_true());
        else if (json_is_array(cur))
                json_array_append_new(cur, json_string(lbl));
        _cleanup_free_ char *text = json_dumps(j, JSON_COMPACT);
        json_decref(j);
        if (!text || !(rq->target = dproxy_qset(d, rq->path, rq->query, "filters", text)))
                return -ENOMEM;
        return 0;
}

/* ---- bodies ---- */

/* "NAME", "container:REF": the job's own, or its default network for "", default, bridge. */
static int network_mode(const struct dproxy *px, struct docker *d, json_t *hc, const char *key,
                        bool allow_none, struct dproxy_req *rq, struct drv_error *err)
{
        const char *m = json_string_value(dproxy_jget(hc, key)) ?: "";
        _cleanup_free_ char *id = NULL;
        int r;
        bool net = strcmp(key, "NetworkMode") == 0;
        if (net && (!m[0] || strcmp(m, "default") == 0 || strcmp(m, "bridge") == 0))
                return dproxy_jset(hc, key, json_string(px->net)) < 0 ? -ENOMEM : 0;
        if (!m[0])
                return 0;
        if (allow_none &&
            (strcmp(m, "none") == 0 || strcmp(m, "private") == 0 || strcmp(m, "shareable") == 0))
                return 0;
        if (drv_startswith(m, "container:")) {
                if ((r = dproxy_own_container(px, d, m + 10, &id, err)) < 0)
                        return r;
                if (!r)
                        return refuse(rq, 403, "HostConfig.%s %s: not a container of this job", key,
                                      m);
                _cleanup_free_ char *v = drv_asprintf("container:%s", id);
                return !v || dproxy_jset(hc, key, json_string(v)) < 0 ? -ENOMEM : 0;
        }
        if (net) {
                if ((r = dproxy_own_network(px, d, m, NULL, err)) < 0)
                        return r;
                if (r)
                        return 0;
        }
        return refuse(rq, 403, "HostConfig.%s %s is not allowed on a shared engine", key, m);
}

/* A named volume: the job's (made, labelled, when it does not exist yet). */
static int volume_named(const struct dproxy *px, struct docker *d, const char *name,
                        struct dproxy_req *rq, struct drv_error *err)
{
        if (!dproxy_ref_ok(name, false))
                return refuse(rq, 403,
                              "volume %s: only named volumes of this job can be mounted "
                              "(no host paths)",
                              name);
        json_t *j = NULL;
        int r = dproxy_lookup(d, "/volumes/%s", name, &j, err);
        bool mine = r > 0 && dproxy_labelled(px, dproxy_jget(j, "Labels"));
        json_decref(j);
        if (r != 0)
                return r < 0 ? r : mine ? 0 : refuse(rq, 403, "volume %s is not this job's", name);
        json_t *body = json_pack("{s:s}", "Name", name);
        if (!body || dproxy_add_labels(px, body, "Labels") < 0) {
                json_decref(body);
                return -ENOMEM;
        }
        r = docker_call(d, "POST", "/volumes/create", body, NULL, NULL, err);
        json_decref(body);
        return r;
}

static int binds(const struct dproxy *px, struct docker *d, json_t *hc, struct dproxy_req *rq,
                 struct drv_error *err)
{
        size_t i;
        json_t *b;
        json_array_foreach (dproxy_jget(hc, "Binds"), i, b) {
                const char *s = json_string_value(b);
                if (!s)
                        return refuse(rq, 400, "HostConfig.Binds: not a string");
                _cleanup_free_ char *src = strndup(s, strcspn(s, ":"));
                int r = src ? volume_named(px, d, src, rq, err) : -ENOMEM;
                if (r != 0)
                        return r;
        }
        json_array_foreach (dproxy_jget(hc, "Mounts"), i, b) {
                const char *type = json_string_value(dproxy_jget(b, "Type")) ?: "";
                const char *src = json_string_value(dproxy_jget(b, "Source")) ?: "";
                json_t *vo = dproxy_jget(b, "VolumeOptions");
                if (!empty(dproxy_jget(b, "BindOptions")) ||
                    !empty(dproxy_jget(vo, "DriverConfig")))
                        return refuse(rq, 403,
                                      "HostConfig.Mounts: bind and driver options are "
                                      "not allowed on a shared engine");
                if (strcmp(type, "tmpfs") == 0 && !src[0])
                        continue;
                if (strcmp(type, "volume") != 0)
                        return refuse(rq, 403,
                                      "HostConfig.Mounts: type %s is not allowed on a "
                                      "shared engine (volume and tmpfs are)",
                                      type);
                int r = src[0] ? volume_named(px, d, src, rq, err) : 0;
                if (r != 0)
                        return r;
        }
        json_array_foreach (dproxy_jget(hc, "VolumesFrom"), i, b) {
                const char *s = json_string_value(b) ?: "";
                _cleanup_free_ char *c = strndup(s, strcspn(s, ":"));
                int r = c ? dproxy_own_container(px, d, c, NULL, err) : -ENOMEM;
                if (r <= 0)
                        return r
                                   ?: refuse(rq, 403,
                                             "HostConfig.VolumesFrom %s: not a container "
                                             "of this job",
                                             s);
        }
        return 0;
}

/* HostConfig fields a job may set to anything (the rest: empty, or checked below). */
static const char *const hc_free[] = {"Memory",
                                      "MemoryReservation",
                                      "MemorySwap",
                                      "MemorySwappiness",
                                      "NanoCpus",
                                      "CpuShares",
                                      "CpuPeriod",
                                      "CpuQuota",
                                      "CpusetCpus",
                                      "CpusetMems",
                                      "PidsLimit",
                                      "Ulimits",
                                      "ShmSize",
                                      "AutoRemove",
                                      "RestartPolicy",
                                      "PortBindings",
                                      "PublishAllPorts",
                                      "Dns",
                                      "DnsOptions",
                                      "DnsSearch",
                                      "ExtraHosts",
                                      "Init",
                                      "ReadonlyRootfs",
                                      "Tmpfs",
                                      "ConsoleSize",
                                      "CapDrop",
                                      "GroupAdd",
                                      "BlkioWeight",
                                      "ContainerIDFile",
                                      "Binds",
                                      "Mounts",
                                      "VolumesFrom",
                                      "NetworkMode",
                                      "PidMode",
                                      "IpcMode",
                                      "CgroupnsMode",
                                      "Runtime",
                                      "Isolation",
                                      "LogConfig",
                                      "SecurityOpt",
                                      NULL};

static int host_config(const struct dproxy *px, struct docker *d, json_t *hc, struct dproxy_req *rq,
                       struct drv_error *err)
{
        const char *k;
        json_t *v;
        /* an empty list here unmasks /proc and /sys paths (systempaths=unconfined): only null */
        static const char *const null_only[] = {"MaskedPaths", "ReadonlyPaths", NULL};
        json_object_foreach (hc, k, v)
                if ((dproxy_in_list(k, null_only) ? !json_is_null(v) : !empty(v)) &&
                    !dproxy_in_list(k, hc_free))
                        return refuse(rq, 403, "HostConfig.%s is not allowed on a shared engine",
                                      k);
        const char *s;
        if ((s = json_string_value(dproxy_jget(hc, "CgroupnsMode"))) && s[0] &&
            strcmp(s, "private") != 0)
                return refuse(rq, 403, "HostConfig.CgroupnsMode %s is not allowed", s);
        if ((s = json_string_value(dproxy_jget(hc, "Runtime"))) && s[0] && strcmp(s, "runc") != 0)
                return refuse(rq, 403, "HostConfig.Runtime %s is not allowed", s);
        if ((s = json_string_value(dproxy_jget(hc, "Isolation"))) && s[0] &&
            strcmp(s, "default") != 0)
                return refuse(rq, 403, "HostConfig.Isolation %s is not allowed", s);
        s = json_string_value(dproxy_jget(dproxy_jget(hc, "LogConfig"), "Type"));
        static const char *const logs[] = {"", "json-file", "local", "none", NULL};
        if (s && !dproxy_in_list(s, logs))
                return refuse(rq, 403,
                              "HostConfig.LogConfig.Type %s is not allowed (the engine "
                              "would send logs where the job says)",
                              s);
        size_t i;
        json_array_foreach (dproxy_jget(hc, "SecurityOpt"), i, v) {
                static const char *const nnp[] = {"no-new-privileges", "no-new-privileges:true",
                                                  "no-new-privileges=true", NULL};
                if (!json_is_string(v) || !dproxy_in_list(json_string_value(v), nnp))
                        return refuse(rq, 403,
                                      "HostConfig.SecurityOpt %s is not allowed on a "
                                      "shared engine",
                                      json_string_value(v) ?: "?");
        }
        int r = binds(px, d, hc, rq, err);
        r = r ?: network_mode(px, d, hc, "NetworkMode", true, rq, err);
        if (!r && !empty(dproxy_jget(hc, "PidMode")))
                r = network_mode(px, d, hc, "PidMode", false, rq, err);
        if (!r && !empty(dproxy_jget(hc, "IpcMode")))
                r = network_mode(px, d, hc, "IpcMode", true, rq, err);
        return r;
}

static const char *const create_keys[] = {"Hostname",
                                          "Domainname",
                                          "User",
                                          "AttachStdin",
                                          "AttachStdout",
                                          "AttachStderr",
                                          "ExposedPorts",
                                          "Tty",
                                          "OpenStdin",
                                          "StdinOnce",
                                          "Env",
                                          "Cmd",
                                          "Healthcheck",
                                          "ArgsEscaped",
                                          "Image",
                                          "Volumes",
                                          "WorkingDir",
                                          "Entrypoint",
                                          "NetworkDisabled",
                                          "MacAddress",
                                          "OnBuild",
                                          "Labels",
                                          "StopSignal",
                                          "StopTimeout",
                                          "Shell",
                                          "HostConfig",
                                          "NetworkingConfig",
                                          "Platform",
                                          NULL};

static int container_create(const struct dproxy *px, struct docker *d, struct dproxy_req *rq,
                            struct drv_error *err)
{
        json_t *b = rq->body;
        const char *k;
        json_t *v;
        if (!json_is_object(b))
                return refuse(rq, 400, "a container needs a JSON body");
        json_object_foreach (b, k, v)
                if (!empty(v) && !dproxy_in_list(k, create_keys))
                        return refuse(rq, 403, "%s is not allowed on a shared engine", k);
        const char *image = json_string_value(dproxy_jget(b, "Image"));
        int r = image ? dproxy_own_image(px, d, image, NULL, err) : 0;
        if (r < 0)
                return r;
        if (!r) /* the CLI then pulls it: with the job's own registry credentials */
                return refuse(rq, 404, "No such image: %s", image ?: "(none)");
        json_t *hc = dproxy_jget(b, "HostConfig");
        if (!hc) {
                if (dproxy_jset(b, "HostConfig", hc = json_object()) < 0)
                        return -ENOMEM;
        }
        if ((r = host_config(px, d, hc, rq, err)) != 0)
                return r;
        /* networks named for the endpoints: the job's; the default one is its own network */
        json_t *nc = dproxy_jget(b, "NetworkingConfig");
        json_object_foreach (nc, k, v)
                if (!empty(v) && strcasecmp(k, "EndpointsConfig") != 0)
                        return refuse(rq, 403, "NetworkingConfig.%s is not allowed", k);
        json_t *ec = dproxy_jget(nc, "EndpointsConfig");
        void *tmp;
        json_object_foreach_safe (ec, tmp, k, v) {
                if (strcmp(k, "default") == 0 || strcmp(k, "bridge") == 0) {
                        json_incref(v);
                        json_object_del(ec, k);
                        dproxy_jset(ec, px->net, v);
                        continue;
                }
                if (strcmp(k, px->net) == 0)
                        continue;
                if ((r = dproxy_own_network(px, d, k, NULL, err)) <= 0)
                        return r ?: refuse(rq, 403, "network %s is not this job's", k);
        }
        return dproxy_add_labels(px, b, "Labels");
}

static int exec_create(struct dproxy_req *rq)
{
        static const char *const keys[] = {
            "AttachStdin", "AttachStdout", "AttachStderr", "DetachKeys", "Tty", "ConsoleSize",
            "Env",         "Cmd",          "User",         "WorkingDir", NULL};
        const char *k;
        json_t *v;
        if (!json_is_object(rq->body))
                return refuse(rq, 400, "an exec needs a JSON body");
        json_object_foreach (rq->body, k, v)
                if (!empty(v) && !dproxy_in_list(k, keys))
                        return refuse(rq, 403, "%s execs are not allowed on a shared engine", k);
        return 0;
}

static int network_create(const struct dproxy *px, struct dproxy_req *rq)
{
        static const char *const keys[] = {"Name",     "CheckDuplicate", "Driver",
                                           "Internal", "Attachable",     "EnableIPv6",
                                           "IPAM",     "Labels",         NULL};
        const char *k;
        json_t *v;
        if (!json_is_object(rq->body))
                return refuse(rq, 400, "a network needs a JSON body");
        json_object_foreach (rq->body, k, v)
                if (!empty(v) && !dproxy_in_list(k, keys))
                        return refuse(rq, 403, "network %s is not allowed on a shared engine", k);
        const char *drv = json_string_value(dproxy_jget(rq->body, "Driver"));
        json_t *ipam = dproxy_jget(rq->body, "IPAM");
        static const char *const ipam_keys[] = {"Driver", "Config", "Options", NULL};
        json_object_foreach (ipam, k, v)
                if (!dproxy_in_list(k, ipam_keys))
                        return refuse(rq, 403, "network IPAM.%s is not allowed", k);
        const char *idrv = json_string_value(dproxy_jget(ipam, "Driver"));
        if (drv && drv[0] && strcmp(drv, "bridge") != 0)
                return refuse(rq, 403, "network driver %s is not allowed (bridge is)", drv);
        if ((idrv && idrv[0] && strcmp(idrv, "default") != 0) ||
            !empty(dproxy_jget(ipam, "Config")) || !empty(dproxy_jget(ipam, "Options")))
                return refuse(rq, 403,
                              "network IPAM settings are not allowed on a shared engine "
                              "(a subnet could collide with the engine host's)");
        return dproxy_add_labels(px, rq->body, "Labels");
}

static int volume_create(const struct dproxy *px, struct dproxy_req *rq)
{
        const char *k;
        json_t *v;
        if (!json_is_object(rq->body))
                return refuse(rq, 400, "a volume needs a JSON body");
        json_object_foreach (rq->body, k, v)
                if (!empty(v) && strcmp(k, "Name") != 0 && strcmp(k, "Labels") != 0 &&
                    !(strcmp(k, "Driver") == 0 && strcmp(json_string_value(v) ?: "", "local") == 0))
                        return refuse(rq, 403,
                                      "volume %s is not allowed on a shared engine (a "
                                      "driver option can mount a host path)",
                                      k);
        return dproxy_add_labels(px, rq->body, "Labels");
}

/* A tag the job makes (build -t, tag): never over a name that holds another's image. */
static int tag_free(const struct dproxy *px, struct docker *d, const char *ref,
                    struct dproxy_req *rq, struct drv_error *err)
{
        if (!dproxy_ref_ok(ref, true))
                return refuse(rq, 400, "bad image reference %s", ref);
        json_t *j = NULL;
        int r = dproxy_lookup(d, "/images/%s/json", ref, &j, err);
        json_decref(j);
        if (r <= 0)
                return r;
        r = dproxy_own_image(px, d, ref, NULL, err);
        return r != 0 ? (r < 0 ? r : 0)
                      : refuse(rq, 403, "%s names an image this job did not make or pull", ref);
}

static int build(const struct dproxy *px, struct docker *d, struct dproxy_req *rq,
                 struct drv_error *err)
{
        static const char *const keys[] = {
            "t",         "dockerfile", "q",         "nocache",     "cachefrom",
            "pull",      "rm",         "forcerm",   "memory",      "memswap",
            "cpushares", "cpusetcpus", "cpuperiod", "cpuquota",    "buildargs",
            "shmsize",   "squash",     "labels",    "networkmode", "platform",
            "target",    "extrahosts", "version",   "ulimits",     NULL};
        const char *bad = dproxy_qunknown(rq->query, keys);
        if (bad)
                return refuse(rq, 403,
                              "build parameter %s is not allowed on a shared engine "
                              "(BuildKit sessions and remote contexts are not served)",
                              bad);
        _cleanup_free_ char *ver = dproxy_qget(rq->query, "version");
        _cleanup_free_ char *nm = dproxy_qget(rq->query, "networkmode");
        _cleanup_free_ char *lbl = dproxy_qget(rq->query, "labels");
        if (ver && strcmp(ver, "1") != 0)
                return refuse(rq, 403, "BuildKit builds are not served (DOCKER_BUILDKIT=0)");
        if (nm && nm[0] && strcmp(nm, "default") != 0 && strcmp(nm, "bridge") != 0 &&
            strcmp(nm, "none") != 0)
                return refuse(rq, 403, "build network %s is not allowed on a shared engine", nm);
        for (const char *p = rq->query; p && *p; p = strchr(p, '&') ? strchr(p, '&') + 1 : NULL) {
                if (!drv_startswith(p, "t="))
                        continue;
                _cleanup_free_ char *one = strndup(p, strcspn(p, "&"));
                _cleanup_free_ char *t = one ? dproxy_qget(one, "t") : NULL;
                int r = t ? tag_free(px, d, t, rq, err) : -ENOMEM;
                if (r != 0)
                        return r;
        }
        json_t *l = lbl && lbl[0] ? json_loads(lbl, 0, NULL) : json_object();
        json_t *wrap = json_pack("{s:o}", "l", l ? l : json_null());
        if (!json_is_object(l) || dproxy_add_labels(px, wrap, "l") < 0) {
                json_decref(wrap);
                return refuse(rq, 400, "build labels are not a JSON object");
        }
        _cleanup_free_ char *text = json_dumps(dproxy_jget(wrap, "l"), JSON_COMPACT);
        json_decref(wrap);
        _cleanup_free_ char *q1 = text ? dproxy_qset(d, rq->path, rq->query, "labels", text) : NULL;
        /* base images come from their registry with the job's credentials, never from the
         * shared cache (another job's private image); the build runs on the job's network */
        _cleanup_free_ char *q2 = q1 ? dproxy_qset(d, "", strchr(q1, '?') + 1, "pull", "1") : NULL;
        rq->target = q2 && (!nm || strcmp(nm, "none") != 0)
                         ? dproxy_qset(d, rq->path, q2 + 1, "networkmode", px->net)
                         : (q2 ? drv_asprintf("%s%s", rq->path, q2) : NULL);
        return rq->target ? 0 : -ENOMEM;
}

/* ---- routes ---- */

static bool is(const struct dproxy_req *rq, const char *method, const char *path)
{
        return strcmp(rq->method, method) == 0 && strcmp(rq->path, path) == 0;
}

/* "/containers/REF/OP" -> REF and OP ("" none), malloc'd REF. */
static char *split_ref(const char *rest, const char **op)
{
        size_t n = strcspn(rest, "/");
        *op = rest[n] ? rest + n + 1 : "";
        return strndup(rest, n);
}

static bool op_allowed(const char *method, const char *op, const char *const *get,
                       const char *const *post)
{
        if (strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0)
                return dproxy_in_list(op, get);
        if (strcmp(method, "POST") == 0)
                return dproxy_in_list(op, post);
        if (strcmp(method, "PUT") == 0)
                return strcmp(op, "archive") == 0 && dproxy_in_list(op, get);
        return strcmp(method, "DELETE") == 0 && !op[0];
}

static int retarget(struct dproxy_req *rq, const char *kind, const char *id, const char *op)
{
        rq->target = drv_asprintf("/%s/%s%s%s%s%s", kind, id, op[0] ? "/" : "", op,
                                  rq->query[0] ? "?" : "", rq->query);
        return rq->target ? 0 : -ENOMEM;
}

static int container_call(const struct dproxy *px, struct docker *d, struct dproxy_req *rq,
                          struct drv_error *err)
{
        static const char *const get[] = {"json",  "logs",   "top",     "changes",
                                          "stats", "export", "archive", NULL};
        static const char *const post[] = {"start",  "stop",    "restart", "kill",
                                           "pause",  "unpause", "wait",    "resize",
                                           "rename", "attach",  "exec",    NULL};
        const char *op;
        _cleanup_free_ char *ref = split_ref(rq->path + strlen("/containers/"), &op);
        _cleanup_free_ char *id = NULL;
        if (!ref)
                return -ENOMEM;
        if (!op_allowed(rq->method, op, get, post))
                return refuse(rq, 403, "%s %s is not served to jobs on a shared engine", rq->method,
                              rq->path);
        int r = dproxy_own_container(px, d, ref, &id, err);
        if (r <= 0)
                return r ?: refuse(rq, 404, "No such container: %s", ref);
        if (strcmp(op, "exec") == 0 && (r = exec_create(rq)) != 0)
                return r;
        rq->hijack = strcmp(op, "attach") == 0;
        return retarget(rq, "containers", id, op);
}

static int exec_call(const struct dproxy *px, struct docker *d, struct dproxy_req *rq,
                     struct drv_error *err)
{
        static const char *const get[] = {"json", NULL}, *const post[] = {"start", "resize", NULL};
        const char *op;
        _cleanup_free_ char *ref = split_ref(rq->path + strlen("/exec/"), &op);
        _cleanup_free_ char *id = NULL;
        if (!ref)
                return -ENOMEM;
        if (!op_allowed(rq->method, op, get, post) || strcmp(rq->method, "DELETE") == 0)
                return refuse(rq, 403, "%s %s is not served to jobs on a shared engine", rq->method,
                              rq->path);
        int r = dproxy_own_exec(px, d, ref, &id, err);
        if (r <= 0)
                return r ?: refuse(rq, 404, "No such exec instance: %s", ref);
        rq->hijack = strcmp(op, "start") == 0;
        return retarget(rq, "exec", id, op);
}

static int pull(struct dproxy_req *rq)
{
        static const char *const keys[] = {"fromImage", "tag", "platform", NULL};
        const char *bad = dproxy_qunknown(rq->query, keys);
        if (bad)
                return refuse(rq, 403,
                              "image parameter %s is not allowed on a shared engine "
                              "(pulls only)",
                              bad);
        _cleanup_free_ char *from = dproxy_qget(rq->query, "fromImage");
        _cleanup_free_ char *tag = dproxy_qget(rq->query, "tag");
        if (!from || !dproxy_ref_ok(from, true) || (tag && tag[0] && !dproxy_ref_ok(tag, true)))
                return refuse(rq, 400, "bad image reference");
        rq->pulled =
            strchr(from, '@')
                ? strdup(from)
                : drv_asprintf("%s%s%s", from, drv_startswith(tag ?: "", "sha256:") ? "@" : ":",
                               tag && tag[0] ? tag : "latest");
        return rq->pulled ? 0 : -ENOMEM;
}

static int image_call(const struct dproxy *px, struct docker *d, struct dproxy_req *rq,
                      struct drv_error *err)
{
        static const char *const ops[] = {"/json", "/history", "/tag", "/push", NULL};
        const char *rest = rq->path + strlen("/images/"), *op = "";
        for (size_t i = 0; ops[i] && strcmp(rq->method, "DELETE") != 0; i++)
                if (drv_endswith(rest, ops[i]))
                        op = ops[i];
        bool get = strcmp(rq->method, "GET") == 0, post = strcmp(rq->method, "POST") == 0;
        if (!(get && (strcmp(op, "/json") == 0 || strcmp(op, "/history") == 0)) &&
            !(post && (strcmp(op, "/tag") == 0 || strcmp(op, "/push") == 0)) &&
            strcmp(rq->method, "DELETE") != 0)
                return refuse(rq, 403, "%s %s is not served to jobs on a shared engine", rq->method,
                              rq->path);
        _cleanup_free_ char *name = strndup(rest, strlen(rest) - strlen(op));
        _cleanup_free_ char *tag = dproxy_qget(rq->query, "tag");
        _cleanup_free_ char *full = name && strcmp(op, "/push") == 0 && tag && tag[0]
                                        ? drv_asprintf("%s:%s", name, tag)
                                        : NULL;
        if (!name)
                return -ENOMEM;
        int r = dproxy_own_image(px, d, full ?: name, NULL, err);
        if (r == 0 && strcmp(rq->method, "DELETE") == 0 && dproxy_own_line(px, 't', name))
                r = 1; /* a tag it made */
        if (r <= 0)
                return r ?: refuse(rq, 404, "No such image: %s", full ?: name);
        if (strcmp(op, "/tag") == 0) {
                _cleanup_free_ char *repo = dproxy_qget(rq->query, "repo");
                _cleanup_free_ char *to =
                    repo ? drv_asprintf("%s:%s", repo, tag && tag[0] ? tag : "latest") : NULL;
                if (!to)
                        return refuse(rq, 400, "a tag needs repo");
                if ((r = tag_free(px, d, to, rq, err)) != 0)
                        return r;
                dproxy_own_add(px, 't', to);
        }
        return 0;
}

static int network_call(const struct dproxy *px, struct docker *d, struct dproxy_req *rq,
                        struct drv_error *err)
{
        static const char *const get[] = {"", NULL}, *const post[] = {"connect", "disconnect",
                                                                      NULL};
        const char *op;
        _cleanup_free_ char *ref = split_ref(rq->path + strlen("/networks/"), &op);
        _cleanup_free_ char *id = NULL, *cid = NULL;
        if (!ref)
                return -ENOMEM;
        if (!op_allowed(rq->method, op, get, post))
                return refuse(rq, 403, "%s %s is not served to jobs on a shared engine", rq->method,
                              rq->path);
        int r = dproxy_own_network(px, d, ref, &id, err);
        if (r <= 0)
                return r ?: refuse(rq, 404, "network %s not found", ref);
        if (op[0]) {
                const char *c = json_string_value(dproxy_jget(rq->body, "Container"));
                if ((r = c ? dproxy_own_container(px, d, c, &cid, err) : 0) <= 0)
                        return r ?: refuse(rq, 404, "No such container: %s", c ?: "(none)");
                if (dproxy_jset(rq->body, "Container", json_string(cid)) < 0)
                        return -ENOMEM;
        }
        return retarget(rq, "networks", id, op);
}

static int volume_call(const struct dproxy *px, struct docker *d, struct dproxy_req *rq,
                       struct drv_error *err)
{
        const char *name = rq->path + strlen("/volumes/");
        if (strcmp(rq->method, "GET") != 0 && strcmp(rq->method, "DELETE") != 0)
                return refuse(rq, 403, "%s %s is not served to jobs on a shared engine", rq->method,
                              rq->path);
        int r = dproxy_own_volume(px, d, name, NULL, err);
        return r <= 0 ? (r ?: refuse(rq, 404, "get %s: no such volume", name)) : 0;
}

bool dproxy_wants_json(const char *method, const char *path)
{
        if (strcmp(method, "POST") != 0)
                return false;
        if (strcmp(path, "/containers/create") == 0 || strcmp(path, "/networks/create") == 0 ||
            strcmp(path, "/volumes/create") == 0)
                return true;
        return (drv_startswith(path, "/containers/") && drv_endswith(path, "/exec")) ||
               (drv_startswith(path, "/networks/") &&
                (drv_endswith(path, "/connect") || drv_endswith(path, "/disconnect")));
}

int dproxy_route(const struct dproxy *px, struct docker *d, struct dproxy_req *rq,
                 struct drv_error *err)
{
        const char *p = rq->path;
        /* the engine matches JSON field names case-insensitively (Go): one spelling per name,
         * and every check above reads them the same way (dproxy_jget) */
        if (rq->body && dproxy_ci_dups(rq->body))
                return refuse(rq, 400, "a JSON object names a field twice (in different cases)");
        if (is(rq, "GET", "/_ping") || is(rq, "HEAD", "/_ping") || is(rq, "GET", "/version") ||
            is(rq, "GET", "/info") || is(rq, "POST", "/auth"))
                return 0;
        if (is(rq, "GET", "/events") || is(rq, "GET", "/containers/json") ||
            is(rq, "GET", "/images/json") || is(rq, "GET", "/networks") ||
            is(rq, "GET", "/volumes"))
                return filter_mine(px, d, rq);
        if (is(rq, "POST", "/containers/create"))
                return container_create(px, d, rq, err);
        if (is(rq, "POST", "/networks/create"))
                return network_create(px, rq);
        if (is(rq, "POST", "/volumes/create"))
                return volume_create(px, rq);
        if (is(rq, "POST", "/images/create"))
                return pull(rq);
        if (is(rq, "POST", "/build"))
                return build(px, d, rq, err);
        if (drv_startswith(p, "/containers/"))
                return container_call(px, d, rq, err);
        if (drv_startswith(p, "/exec/"))
                return exec_call(px, d, rq, err);
        if (drv_startswith(p, "/images/"))
                return image_call(px, d, rq, err);
        if (drv_startswith(p, "/networks/"))
                return network_call(px, d, rq, err);
        if (drv_startswith(p, "/volumes/"))
                return volume_call(px, d, rq, err);
        return refuse(rq, 403, "%s %s is not served to jobs on a shared engine", rq->method, p);
}

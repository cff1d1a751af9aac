/* docker_proxy_own.c: the API proxy's look-ups — which objects on the engine are the job's (its
 * label; images it pulled through the proxy or built), the shared file of pulls and tags, and the
 * query-string helpers the rules use. */
#include "executor/docker/docker_proxy_int.h"

#include <sys/stat.h>

bool dproxy_in_list(const char *s, const char *const *list)
{
        for (; *list; list++)
                if (strcasecmp(s, *list) == 0)
                        return true;
        return false;
}

/* A container, network or volume name or id; an image reference. */
bool dproxy_ref_ok(const char *s, bool image)
{
        const char *chars =
            image ? "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-:/@"
                  : "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-";
        return s && s[0] && s[0] != '.' && s[0] != '-' && strlen(s) < 256 &&
               strspn(s, chars) == strlen(s) && !strstr(s, "..");
}

bool dproxy_labelled(const struct dproxy *px, json_t *labels)
{
        const char *v = json_string_value(json_object_get(labels, DOCKER_LABEL_JOB));
        return v && strcmp(v, px->label) == 0;
}

int dproxy_add_labels(const struct dproxy *px, json_t *obj, const char *key)
{
        json_t *l = dproxy_jget(obj, key);
        if (!json_is_object(l)) {
                l = json_object();
                if (!l || dproxy_jset(obj, key, l) < 0)
                        return -ENOMEM;
        }
        if (json_object_set_new(l, DOCKER_LABEL_MANAGED, json_string("true")) < 0 ||
            json_object_set_new(l, DOCKER_LABEL_JOB, json_string(px->label)) < 0 ||
            (px->node[0] && json_object_set_new(l, DOCKER_LABEL_NODE, json_string(px->node)) < 0))
                return -ENOMEM;
        return 0;
}

/* ---- ownership: 1 the job's (*id: its full id, malloc'd), 0 not (or missing), <0 error ---- */

int dproxy_lookup(struct docker *d, const char *fmt, const char *ref, json_t **out,
                  struct drv_error *err)
{
        _cleanup_free_ char *path = drv_asprintf(fmt, ref);
        if (!path)
                return drv_err(err, ENOMEM, "out of memory");
        struct drv_error e = {0};
        int r = docker_call(d, "GET", path, NULL, out, NULL, &e);
        if (r == -ENOENT)
                return 0;
        if (r < 0)
                return drv_err(err, e.code, "%s", e.message);
        return 1;
}

static int own_obj(const struct dproxy *px, struct docker *d, const char *fmt, const char *ref,
                   const char *labels_at, const char *id_key, char **id, struct drv_error *err)
{
        if (!dproxy_ref_ok(ref, false))
                return 0;
        json_t *j = NULL;
        int r = dproxy_lookup(d, fmt, ref, &j, err);
        if (r <= 0)
                return r;
        json_t *labels = labels_at ? json_object_get(json_object_get(j, labels_at), "Labels")
                                   : json_object_get(j, "Labels");
        const char *full = json_string_value(json_object_get(j, id_key));
        r = dproxy_labelled(px, labels) && full;
        if (r && id && !(*id = strdup(full)))
                r = drv_err(err, ENOMEM, "out of memory");
        json_decref(j);
        return r;
}

int dproxy_own_container(const struct dproxy *px, struct docker *d, const char *ref, char **id,
                         struct drv_error *err)
{
        return own_obj(px, d, "/containers/%s/json", ref, "Config", "Id", id, err);
}
int dproxy_own_network(const struct dproxy *px, struct docker *d, const char *ref, char **id,
                       struct drv_error *err)
{
        return own_obj(px, d, "/networks/%s", ref, NULL, "Id", id, err);
}
int dproxy_own_volume(const struct dproxy *px, struct docker *d, const char *ref, char **id,
                      struct drv_error *err)
{
        return own_obj(px, d, "/volumes/%s", ref, NULL, "Name", id, err);
}

int dproxy_own_exec(const struct dproxy *px, struct docker *d, const char *ref, char **id,
                    struct drv_error *err)
{
        if (!dproxy_ref_ok(ref, false))
                return 0;
        json_t *j = NULL;
        int r = dproxy_lookup(d, "/exec/%s/json", ref, &j, err);
        if (r <= 0)
                return r;
        const char *ctr = json_string_value(json_object_get(j, "ContainerID"));
        const char *full = json_string_value(json_object_get(j, "ID"));
        r = ctr && full ? dproxy_own_container(px, d, ctr, NULL, err) : 0;
        if (r > 0 && !(*id = strdup(full)))
                r = drv_err(err, ENOMEM, "out of memory");
        json_decref(j);
        return r;
}

/* Is "<kind> <value>" a line of the shared file (images pulled, tags made)? */
bool dproxy_own_line(const struct dproxy *px, char kind, const char *value)
{
        struct stat st;
        if (fstat(px->own_fd, &st) < 0 || st.st_size <= 0 || st.st_size > (16 << 20))
                return false;
        _cleanup_free_ char *buf = malloc((size_t)st.st_size + 1);
        size_t len = 0;
        while (buf && len < (size_t)st.st_size) {
                ssize_t n = pread(px->own_fd, buf + len, (size_t)st.st_size - len, (off_t)len);
                if (n <= 0)
                        break;
                len += (size_t)n;
        }
        if (!buf)
                return false;
        buf[len] = 0;
        size_t vl = strlen(value);
        for (char *p = buf; (p = strstr(p, value)); p += vl)
                if (p >= buf + 2 && p[-1] == ' ' && p[-2] == kind &&
                    (p == buf + 2 || p[-3] == '\n') && p[vl] == '\n')
                        return true;
        return false;
}

void dproxy_own_add(const struct dproxy *px, char kind, const char *value)
{
        _cleanup_free_ char *line = drv_asprintf("%c %s\n", kind, value);
        if (line && drv_write_all(px->own_fd, line, strlen(line)) < 0)
                log_warn("docker_proxy_record_failed", "value=%s", value);
}

/* An image is the job's when it built it (label) or pulled it through this proxy. */
int dproxy_own_image(const struct dproxy *px, struct docker *d, const char *ref, char **id,
                     struct drv_error *err)
{
        if (!dproxy_ref_ok(ref, true))
                return 0;
        json_t *j = NULL;
        int r = dproxy_lookup(d, "/images/%s/json", ref, &j, err);
        if (r <= 0)
                return r;
        const char *full = json_string_value(json_object_get(j, "Id"));
        r = full && (dproxy_labelled(px, json_object_get(json_object_get(j, "Config"), "Labels")) ||
                     dproxy_own_line(px, 'i', full));
        if (r && id && !(*id = strdup(full)))
                r = drv_err(err, ENOMEM, "out of memory");
        json_decref(j);
        return r;
}

void dproxy_record_pull(const struct dproxy *px, struct docker *d, const char *ref)
{
        json_t *j = NULL;
        struct drv_error e = {0};
        if (dproxy_lookup(d, "/images/%s/json", ref, &j, &e) > 0) {
                const char *id = json_string_value(json_object_get(j, "Id"));
                if (id && !dproxy_own_line(px, 'i', id))
                        dproxy_own_add(px, 'i', id);
        }
        json_decref(j);
}

/* ---- query strings ---- */

static int unhex(char c)
{
        return c >= '0' && c <= '9'   ? c - '0'
               : c >= 'a' && c <= 'f' ? c - 'a' + 10
               : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                      : -1;
}

/* The decoded value of key in query (malloc'd), NULL when absent. */
char *dproxy_qget(const char *query, const char *key)
{
        size_t kl = strlen(key);
        for (const char *p = query; p && *p; p = strchr(p, '&') ? strchr(p, '&') + 1 : NULL) {
                if (strncmp(p, key, kl) != 0 || (p[kl] != '=' && p[kl] != '&' && p[kl]))
                        continue;
                const char *v = p[kl] == '=' ? p + kl + 1 : p + kl;
                size_t n = strcspn(v, "&");
                char *out = malloc(n + 1), *o = out;
                if (!out)
                        return NULL;
                for (size_t i = 0; i < n; i++) {
                        int a, b;
                        if (v[i] == '%' && i + 2 < n + 1 && (a = unhex(v[i + 1])) >= 0 &&
                            (b = unhex(v[i + 2])) >= 0) {
                                *o++ = (char)(a * 16 + b);
                                i += 2;
                        } else {
                                *o++ = v[i] == '+' ? ' ' : v[i];
                        }
                }
                *o = 0;
                return out;
        }
        return NULL;
}

/* The query's keys must all be in allowed (deny what is not known). */
const char *dproxy_qunknown(const char *query, const char *const *allowed)
{
        static char key[64];
        for (const char *p = query; p && *p; p = strchr(p, '&') ? strchr(p, '&') + 1 : NULL) {
                size_t n = strcspn(p, "=&");
                snprintf(key, sizeof(key), "%.*s", (int)(n < 63 ? n : 63), p);
                if (n && !dproxy_in_list(key, allowed))
                        return key;
        }
        return NULL;
}

/* query with key's value replaced by (or set to) value (encoded here); malloc'd path?query. */
char *dproxy_qset(struct docker *d, const char *path, const char *query, const char *key,
                  const char *value)
{
        _cleanup_strbuf_ struct strbuf sb = STRBUF_INIT;
        _cleanup_free_ char *enc = docker_escape(d, value);
        size_t kl = strlen(key);
        if (!enc || strbuf_puts(&sb, path) < 0 || strbuf_printf(&sb, "?%s=%s", key, enc) < 0)
                return NULL;
        for (const char *p = query; p && *p; p = strchr(p, '&') ? strchr(p, '&') + 1 : NULL) {
                size_t n = strcspn(p, "&");
                if (strncmp(p, key, kl) == 0 && (p[kl] == '=' || p[kl] == '&' || !p[kl]))
                        continue;
                if (n && strbuf_printf(&sb, "&%.*s", (int)n, p) < 0)
                        return NULL;
        }
        return strbuf_detach(&sb);
}

/* List calls: the label filter joins whatever filters the job gave. */

json_t *dproxy_jget(json_t *obj, const char *key)
{
        const char *k;
        json_t *v;
        json_object_foreach (obj, k, v)
                if (strcasecmp(k, key) == 0)
                        return v;
        return NULL;
}

int dproxy_jset(json_t *obj, const char *key, json_t *value)
{
        const char *k;
        json_t *v;
        void *tmp;
        json_object_foreach_safe (obj, tmp, k, v)
                if (strcasecmp(k, key) == 0)
                        json_object_del(obj, k);
        return json_object_set_new(obj, key, value);
}

bool dproxy_ci_dups(json_t *j)
{
        const char *k, *k2;
        json_t *v, *v2;
        size_t i;
        if (json_is_array(j)) {
                json_array_foreach (j, i, v)
                        if (dproxy_ci_dups(v))
                                return true;
                return false;
        }
        json_object_foreach (j, k, v) {
                if (dproxy_ci_dups(v))
                        return true;
                json_object_foreach (j, k2, v2)
                        if (k2 != k && strcasecmp(k, k2) == 0)
                                return true;
        }
        return false;
}

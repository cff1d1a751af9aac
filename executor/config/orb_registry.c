/* orb_registry.c: fetch orb sources from CircleCI's orb registry — the requests `circleci orb
 * source` makes (API v3): GET /api/v3/orb/versions?filter[ref]=NS/NAME@VERSION for a version's id,
 * GET /api/v3/orb/versions/ID/source for its source; for "1" / "1.2" the orb's id
 * (GET /api/v3/orb/packages?filter[name]=NS/NAME) and its versions list
 * (GET /api/v3/orb/versions?filter[orb_id]=ID, paged by page[cursor]). libcurl easy handles:
 * `drover orb pull` runs outside any event loop, before a compile. */
#include "executor/config/orb.h"

#include <curl/curl.h>
#include <jansson.h>

#define MAX_ANSWER (8u << 20) /* an orb source or a page of versions */
#define MAX_PAGES  100

struct answer {
        struct strbuf body;
        bool too_big;
};

static size_t on_data(char *p, size_t size, size_t n, void *arg)
{
        struct answer *a = arg;
        if (a->body.len + size * n > MAX_ANSWER) {
                a->too_big = true;
                return 0;
        }
        return strbuf_append(&a->body, p, size * n) < 0 ? 0 : size * n;
}

static const char *endpoint(const struct orb_registry *reg)
{
        const char *e = reg && reg->endpoint && *reg->endpoint ? reg->endpoint : NULL;
        return e ? e : "https://circleci.com";
}

/* GET endpoint + path; the answer's body in *body (caller frees), its status in *status. */
static int http_get(const struct orb_registry *reg, const char *path, long *status, char **body,
                    struct drv_error *err)
{
        _cleanup_free_ char *url = drv_asprintf("%s%s", endpoint(reg), path);
        _cleanup_free_ char *tok =
            reg && reg->token ? drv_asprintf("Circle-Token: %s", reg->token) : NULL;
        CURL *h = curl_easy_init();
        struct curl_slist *hdrs = curl_slist_append(NULL, "Accept: application/json");
        if (tok)
                hdrs = curl_slist_append(hdrs, tok);
        if (!url || !h || !hdrs) {
                curl_easy_cleanup(h);
                curl_slist_free_all(hdrs);
                return drv_err(err, ENOMEM, "out of memory");
        }
        struct answer a = {.body = STRBUF_INIT};
        char cerrbuf[CURL_ERROR_SIZE] = "";
        curl_easy_setopt(h, CURLOPT_URL, url);
        curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
        curl_easy_setopt(h, CURLOPT_USERAGENT, "drover-orb");
        curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
        curl_easy_setopt(h, CURLOPT_WRITEDATA, &a);
        curl_easy_setopt(h, CURLOPT_ERRORBUFFER, cerrbuf);
        curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, 15L);
        curl_easy_setopt(h, CURLOPT_TIMEOUT, reg && reg->timeout_s ? reg->timeout_s : 30L);
        curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
        CURLcode cc = curl_easy_perform(h);
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, status);
        curl_easy_cleanup(h);
        curl_slist_free_all(hdrs);
        if (cc != CURLE_OK) {
                strbuf_release(&a.body);
                if (a.too_big)
                        return drv_err(err, EFBIG, "%s%s: the answer is larger than %u bytes",
                                       endpoint(reg), path, MAX_ANSWER);
                return drv_err(err, EIO, "%s%s: %s", endpoint(reg), path,
                               cerrbuf[0] ? cerrbuf : curl_easy_strerror(cc));
        }
        *body = a.body.buf ? strbuf_detach(&a.body) : strdup("");
        return *body ? 0 : drv_err(err, ENOMEM, "out of memory");
}

/* GET a JSON list answer ({"data": [...], "page": {"next": ...}}). */
static int get_list(const struct orb_registry *reg, const char *path, json_t **out,
                    struct drv_error *err)
{
        _cleanup_free_ char *body = NULL;
        long status = 0;
        int r = http_get(reg, path, &status, &body, err);
        if (r < 0)
                return r;
        if (status != 200)
                return drv_err(err, EIO, "%s%s: the registry answered %ld", endpoint(reg), path,
                               status);
        json_t *j = json_loads(body, 0, NULL);
        if (!json_is_array(json_object_get(j, "data"))) {
                json_decref(j);
                return drv_err(err, EPROTO, "%s%s: the answer is not a list (no data array)",
                               endpoint(reg), path);
        }
        *out = j;
        return 0;
}

static char *escape(const char *s)
{
        char *e = curl_easy_escape(NULL, s, 0);
        char *out = e ? strdup(e) : NULL;
        curl_free(e);
        return out;
}

/* GET what?filter[key]=value (value escaped) as a list. */
static int get_filtered(const struct orb_registry *reg, const char *what, const char *key,
                        const char *value, json_t **out, struct drv_error *err)
{
        _cleanup_free_ char *q = escape(value);
        _cleanup_free_ char *path = q ? drv_asprintf("%s?filter%%5B%s%%5D=%s", what, key, q) : NULL;
        if (!path)
                return drv_err(err, ENOMEM, "out of memory");
        return get_list(reg, path, out, err);
}

/* The highest version of the orb that matches want: (id, version) of it. */
static int resolve_partial(const struct orb_registry *reg, const struct orb_ref *r, char **id,
                           char **version, struct drv_error *err)
{
        _cleanup_free_ char *full = drv_asprintf("%s/%s", r->ns, r->name);
        json_t *pk = NULL;
        if (!full)
                return drv_err(err, ENOMEM, "out of memory");
        int rc = get_filtered(reg, "/api/v3/orb/packages", "name", full, &pk, err);
        if (rc < 0)
                return rc;
        const char *orb_id = json_string_value(
            json_object_get(json_array_get(json_object_get(pk, "data"), 0), "id"));
        _cleanup_free_ char *oid = orb_id ? escape(orb_id) : NULL;
        json_decref(pk);
        if (!oid)
                return drv_err(err, ENOENT, "the registry at %s has no orb %s", endpoint(reg),
                               full);
        _cleanup_free_ char *cursor = NULL;
        for (int page = 0; page < MAX_PAGES; page++) {
                _cleanup_free_ char *cq = cursor ? escape(cursor) : NULL;
                _cleanup_free_ char *vp =
                    drv_asprintf("/api/v3/orb/versions?filter%%5Borb_id%%5D=%s%s%s", oid,
                                 cq ? "&page%5Bcursor%5D=" : "", cq ? cq : "");
                json_t *vl = NULL;
                if (!vp)
                        return drv_err(err, ENOMEM, "out of memory");
                if ((rc = get_list(reg, vp, &vl, err)) < 0)
                        return rc;
                size_t i;
                json_t *v;
                json_array_foreach (json_object_get(vl, "data"), i, v) {
                        const char *ver = json_string_value(
                            json_object_get(json_object_get(v, "attributes"), "version"));
                        const char *vid = json_string_value(json_object_get(v, "id"));
                        if (!ver || !vid || !orb_version_matches(r->version, ver) ||
                            (*version && orb_version_cmp(ver, *version) <= 0))
                                continue;
                        free(*version);
                        free(*id);
                        *version = strdup(ver);
                        *id = strdup(vid);
                }
                const char *next =
                    json_string_value(json_object_get(json_object_get(vl, "page"), "next"));
                free(cursor);
                cursor = next && *next ? strdup(next) : NULL;
                json_decref(vl);
                if (!cursor)
                        break;
        }
        if (!*version)
                return drv_err(err, ENOENT, "the registry at %s has no version %s of %s",
                               endpoint(reg), r->version, full);
        return 0;
}

static int resolve_ref(const struct orb_registry *reg, const struct orb_ref *r, char **id,
                       char **version, struct drv_error *err)
{
        bool exact = strcmp(r->version, "volatile") == 0 || drv_startswith(r->version, "dev:") ||
                     (strchr(r->version, '.') && strchr(strchr(r->version, '.') + 1, '.'));
        if (!exact)
                return resolve_partial(reg, r, id, version, err);
        _cleanup_free_ char *full = drv_asprintf("%s/%s@%s", r->ns, r->name, r->version);
        json_t *l = NULL;
        if (!full)
                return drv_err(err, ENOMEM, "out of memory");
        int rc = get_filtered(reg, "/api/v3/orb/versions", "ref", full, &l, err);
        if (rc < 0)
                return rc;
        json_t *v = json_array_get(json_object_get(l, "data"), 0);
        const char *vid = json_string_value(json_object_get(v, "id"));
        const char *ver =
            json_string_value(json_object_get(json_object_get(v, "attributes"), "version"));
        if (vid && ver) {
                *id = strdup(vid);
                *version = strdup(ver);
        }
        json_decref(l);
        if (!vid || !ver)
                return drv_err(err, ENOENT,
                               "the registry at %s has no orb version %s (unknown orb or version)",
                               endpoint(reg), full);
        return *id && *version ? 0 : drv_err(err, ENOMEM, "out of memory");
}

int orb_registry_source(const struct orb_registry *reg, const struct orb_ref *r, char **version,
                        char **text, struct drv_error *err)
{
        _cleanup_free_ char *id = NULL, *ver = NULL;
        int rc = resolve_ref(reg, r, &id, &ver, err);
        if (rc < 0)
                return rc;
        /* a version must be usable as a file name: the registry's answer is not trusted */
        struct orb_ref check;
        struct drv_error e = {0};
        _cleanup_free_ char *full = drv_asprintf("%s/%s@%s", r->ns, r->name, ver);
        if (!full || orb_ref_parse(full, &check, &e) < 0 || strcmp(check.version, ver) != 0 ||
            strcmp(ver, "volatile") == 0)
                return drv_err(err, EPROTO, "the registry at %s named a bad version '%s'",
                               endpoint(reg), ver);
        _cleanup_free_ char *qid = escape(id);
        _cleanup_free_ char *path =
            qid ? drv_asprintf("/api/v3/orb/versions/%s/source", qid) : NULL;
        long status = 0;
        if (!path)
                return drv_err(err, ENOMEM, "out of memory");
        if ((rc = http_get(reg, path, &status, text, err)) < 0)
                return rc;
        if (status != 200) {
                free(*text);
                *text = NULL;
                return drv_err(err, status == 404 ? ENOENT : EIO,
                               "%s%s: the registry answered %ld for the source of %s",
                               endpoint(reg), path, status, full);
        }
        if (version)
                *version = TAKE_PTR(ver);
        return 0;
}

int orb_pull(const struct orb_registry *reg, const char *cache, const struct orb_ref *r,
             char **version, struct drv_error *err)
{
        _cleanup_free_ char *text = NULL, *ver = NULL;
        int rc = orb_registry_source(reg, r, &ver, &text, err);
        if (rc < 0)
                return rc;
        _cleanup_free_ char *dir = drv_asprintf("%s/%s", cache, r->ns);
        _cleanup_free_ char *file = drv_asprintf("%s/%s@%s.yml", dir, r->name, ver);
        _cleanup_free_ char *dfile = file ? drv_asprintf("%s.sha256", file) : NULL;
        if (!dfile)
                return drv_err(err, ENOMEM, "out of memory");
        char digest[80];
        orb_digest(text, strlen(text), digest);
        size_t dl = strlen(digest); /* "sha256:" + 64 hex: room for the newline */
        digest[dl] = '\n';
        digest[dl + 1] = 0;
        if ((rc = drv_mkdir_p(dir, 0755, err)) < 0 ||
            (rc = drv_write_file_atomic(dfile, digest, strlen(digest), 0644, err)) < 0 ||
            (rc = drv_write_file_atomic(file, text, strlen(text), 0644, err)) < 0)
                return rc;
        if (version)
                *version = TAKE_PTR(ver);
        return 0;
}

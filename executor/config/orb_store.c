/* orb_store.c: orb references, version matching and the search of orb directories and the cache
 * for a source file DIR/NS/NAME@VERSION.yml. */
#include "executor/config/orb.h"

#include <ctype.h>
#include <dirent.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <sys/stat.h>

/* Names of orbs and namespaces: letters, digits, '-', '_' (and no path separators). */
static bool part_ok(const char *s, size_t n)
{
        if (n == 0 || n >= ORB_PART_MAX || s[0] == '.' || s[0] == '-')
                return false;
        for (size_t i = 0; i < n; i++)
                if (!isalnum((unsigned char)s[i]) && s[i] != '-' && s[i] != '_')
                        return false;
        return true;
}

static bool release_ok(const char *v)
{
        /* 1, 1.2 or 1.2.3: digits separated by dots */
        int parts = 0;
        for (const char *p = v;; p++) {
                if (!isdigit((unsigned char)*p))
                        return false;
                while (isdigit((unsigned char)p[1]))
                        p++;
                parts++;
                if (p[1] == '\0')
                        return parts <= 3;
                if (p[1] != '.')
                        return false;
                p++;
        }
}

/* 1.2.3: three parts (what a file or the registry names) */
static bool is_full_release(const char *v)
{
        const char *d1 = strchr(v, '.');
        return release_ok(v) && d1 && strchr(d1 + 1, '.');
}

static bool version_ok(const char *v)
{
        if (strcmp(v, "volatile") == 0)
                return true;
        if (drv_startswith(v, "dev:"))
                return part_ok(v + 4, strlen(v + 4)) || (v[4] && !strpbrk(v + 4, "/\\ \t\n"));
        return release_ok(v);
}

int orb_ref_parse(const char *s, struct orb_ref *out, struct drv_error *err)
{
        memset(out, 0, sizeof(*out));
        const char *slash = strchr(s, '/');
        const char *at = slash ? strchr(slash, '@') : NULL;
        size_t nlen = at ? (size_t)(at - slash - 1) : (slash ? strlen(slash + 1) : 0);
        if (!slash || !part_ok(s, (size_t)(slash - s)) || !part_ok(slash + 1, nlen))
                return drv_err(err, EINVAL, "'%s' is not an orb reference (namespace/name@version)",
                               s);
        const char *ver = at ? at + 1 : "volatile";
        if (strlen(ver) >= ORB_PART_MAX || !version_ok(ver))
                return drv_err(err, EINVAL,
                               "'%s': '%s' is not an orb version (1.2.3, 1.2, 1, volatile or "
                               "dev:LABEL)",
                               s, ver);
        memcpy(out->ns, s, (size_t)(slash - s));
        memcpy(out->name, slash + 1, nlen);
        snprintf(out->version, sizeof(out->version), "%s", ver);
        return 0;
}

bool orb_version_matches(const char *want, const char *have)
{
        if (strcmp(want, "volatile") == 0)
                return !drv_startswith(have, "dev:");
        if (drv_startswith(want, "dev:") || drv_startswith(have, "dev:"))
                return strcmp(want, have) == 0;
        size_t n = strlen(want);
        /* "1.2" matches "1.2.x"; "1.2.3" matches itself only */
        return strncmp(want, have, n) == 0 && (have[n] == '\0' || have[n] == '.');
}

int orb_version_cmp(const char *a, const char *b)
{
        bool da = drv_startswith(a, "dev:"), db = drv_startswith(b, "dev:");
        if (da || db)
                return da && db ? strcmp(a, b) : (da ? -1 : 1);
        while (*a || *b) {
                unsigned long x = strtoul(a, (char **)&a, 10), y = strtoul(b, (char **)&b, 10);
                if (x != y)
                        return x < y ? -1 : 1;
                a += *a == '.';
                b += *b == '.';
                if (!isdigit((unsigned char)*a) || !isdigit((unsigned char)*b))
                        return (int)(*a != '\0') - (int)(*b != '\0');
        }
        return 0;
}

char *orb_cache_dir(void)
{
        const char *e = getenv("DROVER_ORB_CACHE");
        if (e && *e)
                return strdup(e);
        if ((e = getenv("XDG_CACHE_HOME")) && *e == '/')
                return drv_asprintf("%s/drover/orbs", e);
        if ((e = getenv("HOME")) && *e == '/' && strcmp(e, "/") != 0)
                return drv_asprintf("%s/.cache/drover/orbs", e);
        return strdup("/var/cache/drover/orbs");
}

/* The highest version of r in dir (NULL when none). */
static char *best_in_dir(const char *dir, const struct orb_ref *r)
{
        _cleanup_free_ char *nsdir = drv_asprintf("%s/%s", dir, r->ns);
        if (!nsdir)
                return NULL;
        DIR *d = opendir(nsdir);
        if (!d)
                return NULL;
        char *best = NULL;
        size_t nl = strlen(r->name);
        struct dirent *de;
        while ((de = readdir(d))) {
                const char *f = de->d_name;
                if (strncmp(f, r->name, nl) != 0 || f[nl] != '@' || !drv_endswith(f, ".yml"))
                        continue;
                size_t vl = strlen(f) - nl - 1 - 4;
                char v[ORB_PART_MAX];
                if (vl == 0 || vl >= sizeof(v))
                        continue;
                memcpy(v, f + nl + 1, vl);
                v[vl] = '\0';
                bool full = drv_startswith(v, "dev:") || is_full_release(v);
                if (!full || !orb_version_matches(r->version, v))
                        continue;
                if (!best || orb_version_cmp(v, best) > 0) {
                        free(best);
                        best = strdup(v);
                }
        }
        closedir(d);
        return best;
}

int orb_find(const char *const *dirs, const char *cache, const struct orb_ref *r, char **path,
             char **version, struct drv_error *err)
{
        size_t n = 0;
        while (dirs && dirs[n])
                n++;
        for (size_t i = 0; i <= n; i++) {
                const char *dir = i < n ? dirs[i] : cache;
                if (!dir || !*dir)
                        continue;
                char *best = best_in_dir(dir, r);
                if (!best)
                        continue;
                *path = drv_asprintf("%s/%s/%s@%s.yml", dir, r->ns, r->name, best);
                if (!*path) {
                        free(best);
                        return drv_err(err, ENOMEM, "out of memory");
                }
                *version = best;
                return 0;
        }
        return -ENOENT;
}

void orb_digest(const char *text, size_t len, char *out)
{
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned int mdlen = 0;
        EVP_Digest(text, len, md, &mdlen, EVP_sha256(), NULL);
        memcpy(out, "sha256:", 7);
        drv_hex(md, mdlen, out + 7);
}

int orb_verify_digest(const char *path, const char *text, size_t len, struct drv_error *err)
{
        _cleanup_free_ char *dpath = drv_asprintf("%s.sha256", path);
        _cleanup_free_ char *want = NULL;
        size_t wl;
        struct drv_error e = {0};
        if (!dpath)
                return drv_err(err, ENOMEM, "out of memory");
        int r = drv_read_file(dpath, &want, &wl, 4096, &e);
        if (r == -ENOENT)
                return 0; /* not fetched by drover (an orb directory): nothing recorded */
        if (r < 0)
                return drv_err(err, -r, "%s", e.message);
        while (wl && isspace((unsigned char)want[wl - 1]))
                want[--wl] = '\0';
        char have[80];
        orb_digest(text, len, have);
        if (strcmp(want, have) != 0)
                return drv_err(err, EBADMSG,
                               "%s: its digest is %s, but %s was recorded when it was fetched (the "
                               "file changed since: pull it again)",
                               path, have, want);
        return 0;
}

char **orb_search_dirs(char *const *cli_dirs, const char *config_path)
{
        char **v = calloc(1, sizeof(char *));
        int r = v ? 0 : -ENOMEM;
        for (size_t i = 0; r == 0 && cli_dirs && cli_dirs[i]; i++)
                r = drv_strv_push(&v, cli_dirs[i]);
        const char *env = getenv("DROVER_ORB_PATH");
        for (const char *p = env; r == 0 && p && *p;) {
                size_t n = strcspn(p, ":");
                char *d = n ? strndup(p, n) : NULL;
                if (n)
                        r = d ? drv_strv_push_take(&v, d) : -ENOMEM;
                p += n + (p[n] == ':');
        }
        const char *slash = config_path ? strrchr(config_path, '/') : NULL;
        char *proj = slash ? drv_asprintf("%.*s/orbs", (int)(slash - config_path), config_path)
                           : strdup("orbs");
        if (r == 0)
                r = proj ? drv_strv_push_take(&v, proj) : -ENOMEM;
        if (r < 0) {
                drv_strv_free(v);
                return NULL;
        }
        return v;
}

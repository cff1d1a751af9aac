/* runsecrets.c: `drover run`'s secret values from arguments, its environment and dotenv files. */
#include "executor/runsecrets.h"

static bool var_name(const char *s, size_t n)
{
        if (n == 0 || (s[0] >= '0' && s[0] <= '9'))
                return false;
        for (size_t i = 0; i < n; i++)
                if (!((s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= 'a' && s[i] <= 'z') ||
                      (s[i] >= '0' && s[i] <= '9') || s[i] == '_'))
                        return false;
        return true;
}

static int push_kv(char ***kv, const char *name, size_t nlen, const char *val, size_t vlen)
{
        char *s = NULL;
        if (asprintf(&s, "%.*s=%.*s", (int)nlen, name, (int)vlen, val) < 0)
                return -ENOMEM;
        return drv_strv_push_take(kv, s);
}

int runsecrets_add_arg(char ***kv, const char *arg, struct drv_error *err)
{
        const char *eq = strchr(arg, '=');
        if (!eq || !var_name(arg, (size_t)(eq - arg)))
                return drv_err(err, EINVAL, "--secret takes NAME=VALUE with NAME a variable name");
        return push_kv(kv, arg, (size_t)(eq - arg), eq + 1, strlen(eq + 1)) < 0
                   ? drv_err(err, ENOMEM, "out of memory")
                   : 0;
}

int runsecrets_add_env(char ***kv, const char *name, struct drv_error *err)
{
        if (!var_name(name, strlen(name)))
                return drv_err(err, EINVAL, "--secret-env %s: not a variable name", name);
        const char *v = getenv(name);
        if (!v)
                return drv_err(err, ENOENT,
                               "--secret-env %s: %s is not set in drover's environment", name,
                               name);
        return push_kv(kv, name, strlen(name), v, strlen(v)) < 0
                   ? drv_err(err, ENOMEM, "out of memory")
                   : 0;
}

/* One line (without its \n) of a secret file: 0 (pushed or skipped) or a reason it is bad. */
static const char *file_line(char ***kv, const char *p, size_t n, int *r)
{
        while (n && (*p == ' ' || *p == '\t'))
                p++, n--;
        if (n && p[n - 1] == '\r')
                n--;
        if (n == 0 || *p == '#')
                return NULL;
        if (n > 7 && strncmp(p, "export ", 7) == 0)
                p += 7, n -= 7;
        const char *eq = memchr(p, '=', n);
        if (!eq)
                return "expected NAME=VALUE (no '=')";
        size_t nlen = (size_t)(eq - p);
        while (nlen && (p[nlen - 1] == ' ' || p[nlen - 1] == '\t'))
                nlen--;
        if (!var_name(p, nlen))
                return "expected NAME=VALUE with NAME a variable name";
        const char *v = eq + 1;
        size_t vlen = n - (size_t)(v - p);
        while (vlen && (*v == ' ' || *v == '\t'))
                v++, vlen--;
        if (vlen && *v != '"' && *v != '\'')
                while (vlen && (v[vlen - 1] == ' ' || v[vlen - 1] == '\t'))
                        vlen--;
        if (vlen && (*v == '"' || *v == '\'')) {
                if (vlen < 2 || v[vlen - 1] != *v)
                        return "a quoted value has no closing quote on its line";
                v++;
                vlen -= 2;
        }
        if (memchr(v, '\0', vlen))
                return "a NUL byte in the value";
        *r = push_kv(kv, p, nlen, v, vlen);
        return NULL;
}

int runsecrets_add_file(char ***kv, const char *path, struct drv_error *err)
{
        _cleanup_free_ char *text = NULL;
        size_t len = 0;
        if (drv_read_file(path, &text, &len, 1 << 20, err) < 0)
                return drv_err_prefix(err, "--secret-file");
        const char *p = text, *end = text + len;
        for (unsigned line = 1; p < end; line++) {
                const char *nl = memchr(p, '\n', (size_t)(end - p));
                size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
                int r = 0;
                const char *bad = file_line(kv, p, n, &r);
                if (bad)
                        return drv_err(err, EINVAL, "%s:%u: %s", path, line, bad);
                if (r < 0)
                        return drv_err(err, ENOMEM, "out of memory");
                p += n + (nl ? 1 : 0);
        }
        return 0;
}

/* globmatch.c: shell-style glob matching of paths: `*`, `?`, `[..]`, `{a,b}` and `**`. */
#include "drv.h"

#include <fnmatch.h>

/* Expand the first {a,b} group of pattern; calls match for each alternative. */
static bool match_braces(const char *pattern, const char *path);

static bool match_seg(const char *p, const char *s)
{
        /* p and s without braces; ** spans '/' */
        while (*p) {
                if (p[0] == '*' && p[1] == '*') {
                        p += 2;
                        if (*p == '/')
                                p++;
                        for (const char *t = s;; t++) {
                                if (match_seg(p, t))
                                        return true;
                                if (!*t)
                                        return false;
                        }
                }
                if (*p == '*') {
                        p++;
                        for (const char *t = s;; t++) {
                                if (match_seg(p, t))
                                        return true;
                                if (!*t || *t == '/')
                                        return false;
                        }
                }
                if (*p == '[') {
                        const char *end = strchr(p + 1, ']');
                        if (!end || !*s || *s == '/')
                                return false;
                        char cls[256];
                        size_t n = (size_t)(end - p + 1);
                        if (n >= sizeof(cls))
                                return false;
                        memcpy(cls, p, n);
                        cls[n] = '\0';
                        char c[2] = {*s, 0};
                        if (fnmatch(cls, c, 0) != 0)
                                return false;
                        p = end + 1;
                        s++;
                        continue;
                }
                if (*p == '?') {
                        if (!*s || *s == '/')
                                return false;
                        p++;
                        s++;
                        continue;
                }
                if (*p != *s)
                        return false;
                p++;
                s++;
        }
        return *s == '\0';
}

static bool match_braces(const char *pattern, const char *path)
{
        const char *open = strchr(pattern, '{');
        const char *close = open ? strchr(open, '}') : NULL;
        if (!open || !close)
                return match_seg(pattern, path);
        const char *alt = open + 1;
        while (alt <= close) {
                const char *end = alt;
                while (end < close && *end != ',')
                        end++;
                _cleanup_free_ char *p = drv_asprintf("%.*s%.*s%s", (int)(open - pattern), pattern,
                                                      (int)(end - alt), alt, close + 1);
                if (p && match_braces(p, path))
                        return true;
                alt = end + 1;
        }
        return false;
}

bool drv_glob_match(const char *pattern, const char *path)
{
        if (pattern[0] == '.' && pattern[1] == '/')
                pattern += 2;
        if (path[0] == '.' && path[1] == '/')
                path += 2;
        return match_braces(pattern, path);
}

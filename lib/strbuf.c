/* strbuf.c: growable byte buffers and NULL-terminated string vectors. */
#include "drv.h"

int strbuf_grow(struct strbuf *sb, size_t extra)
{
        size_t need;
        if (__builtin_add_overflow(sb->len, extra, &need) || __builtin_add_overflow(need, 1, &need))
                return -ENOMEM;
        if (need <= sb->cap)
                return 0;
        size_t cap = sb->cap ? sb->cap : 64;
        while (cap < need) {
                if (__builtin_mul_overflow(cap, 2, &cap))
                        return -ENOMEM;
        }
        char *p = realloc(sb->buf, cap);
        if (!p)
                return -ENOMEM;
        sb->buf = p;
        sb->cap = cap;
        return 0;
}

int strbuf_append(struct strbuf *sb, const void *data, size_t n)
{
        int r = strbuf_grow(sb, n);
        if (r < 0)
                return r;
        if (n)
                memcpy(sb->buf + sb->len, data, n);
        sb->len += n;
        sb->buf[sb->len] = '\0';
        return 0;
}

int strbuf_puts(struct strbuf *sb, const char *s)
{
        return strbuf_append(sb, s, strlen(s));
}

int strbuf_putc(struct strbuf *sb, char c)
{
        return strbuf_append(sb, &c, 1);
}

int strbuf_vprintf(struct strbuf *sb, const char *fmt, va_list ap)
{
        va_list cp;
        va_copy(cp, ap);
        int n = vsnprintf(NULL, 0, fmt, cp);
        va_end(cp);
        if (n < 0)
                return -EINVAL;
        int r = strbuf_grow(sb, (size_t)n);
        if (r < 0)
                return r;
        vsnprintf(sb->buf + sb->len, (size_t)n + 1, fmt, ap);
        sb->len += (size_t)n;
        return 0;
}

int strbuf_printf(struct strbuf *sb, const char *fmt, ...)
{
        va_list ap;
        va_start(ap, fmt);
        int r = strbuf_vprintf(sb, fmt, ap);
        va_end(ap);
        return r;
}

char *strbuf_detach(struct strbuf *sb)
{
        if (!sb->buf && strbuf_grow(sb, 0) < 0)
                return NULL;
        sb->buf[sb->len] = '\0';
        char *p = sb->buf;
        sb->buf = NULL;
        sb->len = sb->cap = 0;
        return p;
}

void strbuf_reset(struct strbuf *sb)
{
        sb->len = 0;
        if (sb->buf)
                sb->buf[0] = '\0';
}

void strbuf_release(struct strbuf *sb)
{
        free(sb->buf);
        sb->buf = NULL;
        sb->len = sb->cap = 0;
}

void drv_strv_free(char **v)
{
        if (!v)
                return;
        for (char **p = v; *p; p++)
                free(*p);
        free(v);
}

size_t drv_strv_len(char *const *v)
{
        size_t n = 0;
        while (v && v[n])
                n++;
        return n;
}

int drv_strv_push_take(char ***v, char *s)
{
        size_t n = drv_strv_len(*v);
        char **nv = realloc(*v, (n + 2) * sizeof(char *));
        if (!nv) {
                free(s);
                return -ENOMEM;
        }
        nv[n] = s;
        nv[n + 1] = NULL;
        *v = nv;
        return 0;
}

int drv_strv_push(char ***v, const char *s)
{
        char *c = strdup(s);
        if (!c)
                return -ENOMEM;
        return drv_strv_push_take(v, c);
}

char **drv_strv_copy(char *const *v)
{
        size_t n = drv_strv_len(v);
        char **c = calloc(n + 1, sizeof(char *));
        if (!c)
                return NULL;
        for (size_t i = 0; i < n; i++) {
                c[i] = strdup(v[i]);
                if (!c[i]) {
                        drv_strv_free(c);
                        return NULL;
                }
        }
        return c;
}

/* mask_forms.c: the byte strings masked for a job's secrets — each value and the encoded forms a
 * step may print it in (base64, percent-encoding, JSON string escaping); see mask.h. */
#include "executor/output/mask.h"

#define MASK_MIN_PATTERN 4 /* no pattern shorter than the shortest maskable value */
/* Bytes of encoded forms at most: each is a DFA state of 1 KiB (mask.c), so the forms cost at
 * most 64 MiB; the values themselves are always masked (up to MASK_MAX_STATES). */
#define MASK_FORMS_BUDGET 65536

static int push_form(char ***v, struct strbuf *sb, const char *raw)
{
        if (!sb->buf || sb->len < MASK_MIN_PATTERN || strcmp(sb->buf, raw) == 0)
                return 0; /* other duplicates end in the same automaton state */
        return drv_strv_push(v, sb->buf);
}

/* The base64 characters that depend only on the secret's bytes, with the secret at offset a
 * (0, 1, 2) of a 3-byte group: from the first character whose 6 bits lie after the a unknown
 * bytes before it, to the last whose 6 bits lie before the unknown bytes after it. */
static int base64_inner(struct strbuf *sb, const unsigned char *s, size_t n, unsigned a)
{
        static const char alphabet[] =
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        size_t len = a + n, first = (8 * a + 5) / 6, end = 8 * len / 6;
        strbuf_reset(sb);
        for (size_t k = first; k < end; k++) {
                size_t bit = 6 * k;
                unsigned v = 0;
                for (unsigned b = 0; b < 6; b++, bit++) {
                        size_t byte = bit / 8;
                        unsigned c = byte >= a ? s[byte - a] : 0;
                        v = v << 1 | ((c >> (7 - bit % 8)) & 1u);
                }
                if (strbuf_putc(sb, alphabet[v]) < 0)
                        return -ENOMEM;
        }
        return 0;
}

/* RFC 3986 percent-encoding: every byte but the unreserved ones as %XX (upper-case hex). */
static int url_encode(struct strbuf *sb, const unsigned char *s, size_t n)
{
        strbuf_reset(sb);
        for (size_t i = 0; i < n; i++) {
                unsigned c = s[i];
                bool keep = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
                            (c >= '0' && c <= '9') || (c && strchr("-._~", (int)c));
                int r = keep ? strbuf_putc(sb, (char)c) : strbuf_printf(sb, "%%%02X", c);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* A JSON string's body: \" \\ and the control characters escaped (\b \f \n \r \t, else
 * \u00xx), everything else as is (UTF-8 stays UTF-8, '/' is not escaped). */
static int json_escape(struct strbuf *sb, const unsigned char *s, size_t n)
{
        strbuf_reset(sb);
        for (size_t i = 0; i < n; i++) {
                char e = 0;
                switch (s[i]) {
                case '\b':
                        e = 'b';
                        break;
                case '\f':
                        e = 'f';
                        break;
                case '\n':
                        e = 'n';
                        break;
                case '\r':
                        e = 'r';
                        break;
                case '\t':
                        e = 't';
                        break;
                case '"':
                        e = '"';
                        break;
                case '\\':
                        e = '\\';
                        break;
                default:
                        break;
                }
                int r;
                if (e)
                        r = strbuf_printf(sb, "\\%c", e);
                else if (s[i] < 0x20)
                        r = strbuf_printf(sb, "\\u%04x", s[i]);
                else
                        r = strbuf_putc(sb, (char)s[i]);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int add_forms(char ***v, const char *raw)
{
        const unsigned char *s = (const unsigned char *)raw;
        size_t n = strlen(raw);
        _cleanup_strbuf_ struct strbuf sb = STRBUF_INIT;
        int r = 0;
        for (unsigned a = 0; a < 3 && r == 0; a++)
                if ((r = base64_inner(&sb, s, n, a)) == 0)
                        r = push_form(v, &sb, raw);
        if (r == 0 && (r = url_encode(&sb, s, n)) == 0)
                r = push_form(v, &sb, raw);
        if (r == 0 && (r = json_escape(&sb, s, n)) == 0)
                r = push_form(v, &sb, raw);
        return r;
}

static int by_length(const void *a, const void *b)
{
        size_t la = strlen(*(char *const *)a), lb = strlen(*(char *const *)b);
        return la < lb ? -1 : la > lb;
}

/* The forms of the values (shortest first) while their bytes stay within MASK_FORMS_BUDGET. */
static int add_forms_within_budget(char ***v, size_t n_values)
{
        _cleanup_free_ char **order = malloc((n_values + 1) * sizeof(char *));
        if (!order)
                return -ENOMEM;
        memcpy(order, *v, n_values * sizeof(char *));
        qsort(order, n_values, sizeof(char *), by_length);
        size_t used = 0;
        for (size_t i = 0; i < n_values; i++) {
                _cleanup_strv_ char **f = calloc(1, sizeof(char *));
                if (!f || add_forms(&f, order[i]) < 0)
                        return -ENOMEM;
                size_t bytes = 0;
                for (char **p = f; *p; p++)
                        bytes += strlen(*p);
                if (used + bytes > MASK_FORMS_BUDGET)
                        break; /* the longer values after it would not fit either */
                used += bytes;
                for (char **p = f; *p; p++)
                        if (drv_strv_push_take(v, TAKE_PTR(*p)) < 0)
                                return -ENOMEM;
        }
        return 0;
}

char **mask_patterns(const char *const *secrets)
{
        _cleanup_strv_ char **v = calloc(1, sizeof(char *));
        if (!v)
                return NULL;
        size_t n_values = 0;
        for (size_t i = 0; secrets && secrets[i]; i++) {
                if (!mask_value_maskable(secrets[i]))
                        continue;
                bool seen = false;
                for (size_t k = 0; k < i && !seen; k++)
                        seen = strcmp(secrets[k], secrets[i]) == 0;
                if (seen)
                        continue;
                if (drv_strv_push(&v, secrets[i]) < 0)
                        return NULL;
                n_values++;
        }
        if (add_forms_within_budget(&v, n_values) < 0)
                return NULL;
        return TAKE_PTR(v);
}

struct text_sink {
        struct strbuf sb;
};

static int text_emit(void *ctx, const void *buf, size_t n)
{
        return strbuf_append(&((struct text_sink *)ctx)->sb, buf, n);
}

char *mask_text(const struct masker *m, const char *text)
{
        struct mask_stream s;
        struct text_sink k = {STRBUF_INIT};
        mask_stream_init(&s);
        size_t n = text ? strlen(text) : 0;
        int r = mask_feed(m, &s, text, n, text_emit, &k);
        if (r == 0)
                r = mask_flush(m, &s, text_emit, &k);
        mask_stream_release(&s);
        if (r < 0) {
                strbuf_release(&k.sb);
                return NULL;
        }
        return strbuf_detach(&k.sb);
}

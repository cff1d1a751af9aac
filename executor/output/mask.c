/* mask.c: Aho-Corasick streaming masker (see mask.h). */
#include "executor/output/mask.h"

#define MASK_MAX_STATES (1u << 18) /* 256 Ki states (256 MiB of table): refuse beyond */

struct masker {
        uint32_t n_states;
        size_t n_secrets;
        uint32_t *delta;    /* n_states * 256: the complete DFA, entries next * 256 | has-output */
        uint32_t *depth;    /* length of the prefix a state stands for */
        uint32_t *outlen;   /* length of the longest secret ending in this state (0 = none) */
        uint8_t *leaf;      /* the trie node has no children: no longer secret can extend it */
        uint8_t pair[8192]; /* bit b0 | b1 << 8: some secret starts with the bytes b0 b1 */
        /* Wu-Manber skip over text no secret can start in: a window of wm bytes (the shortest
         * secret, at most 32) and the 2-byte block at its end; shift[block] is how far the window
         * may move before a secret's first wm bytes could contain that block (0 = candidate) */
        unsigned wm;
        uint8_t shift[65536];
};

bool mask_value_maskable(const char *v)
{
        static const char *const trivial[] = {"true", "True", "false", "False"};
        if (!v || strlen(v) < 4)
                return false;
        for (size_t i = 0; i < DRV_ARRAY_SIZE(trivial); i++)
                if (strcmp(v, trivial[i]) == 0)
                        return false;
        return true;
}

size_t masker_count(const struct masker *m)
{
        return m ? m->n_secrets : 0;
}

void masker_free(struct masker *m)
{
        if (!m)
                return;
        free(m->delta);
        free(m->depth);
        free(m->outlen);
        free(m->leaf);
        free(m);
}

static struct masker *masker_build(char *const *pats, size_t n_values);

struct masker *masker_new(const char *const *secrets)
{
        _cleanup_strv_ char **pats = mask_patterns(secrets);
        if (!pats) {
                errno = ENOMEM;
                return NULL;
        }
        size_t values = 0; /* mask_patterns: each distinct value once, then the forms */
        for (size_t i = 0; secrets && secrets[i]; i++) {
                bool seen = !mask_value_maskable(secrets[i]);
                for (size_t k = 0; k < i && !seen; k++)
                        seen = strcmp(secrets[k], secrets[i]) == 0;
                values += !seen;
        }
        return masker_build(pats, values);
}

static struct masker *masker_build(char *const *pats, size_t n_values)
{
        size_t total = 1;
        for (size_t i = 0; pats[i]; i++)
                total += strlen(pats[i]);
        if (total > MASK_MAX_STATES) {
                errno = E2BIG;
                return NULL;
        }
        struct masker *m = calloc(1, sizeof(*m));
        if (!m)
                return NULL;
        m->n_secrets = n_values;
        m->delta = calloc(total * 256, sizeof(uint32_t));
        m->depth = calloc(total, sizeof(uint32_t));
        m->outlen = calloc(total, sizeof(uint32_t));
        m->leaf = calloc(total, 1);
        uint32_t *fail = calloc(total, sizeof(uint32_t));
        uint32_t *queue = calloc(total, sizeof(uint32_t));
        if (!m->delta || !m->depth || !m->outlen || !m->leaf || !fail || !queue)
                goto oom;
        /* trie: delta entries 0 mean "no child" while building (state 0 is the root) */
        m->n_states = 1;
        for (size_t i = 0; pats[i]; i++) {
                const unsigned char *p = (const unsigned char *)pats[i];
                uint32_t s = 0;
                for (; *p; p++) {
                        uint32_t *t = &m->delta[(size_t)s * 256 + *p];
                        if (!*t) {
                                *t = m->n_states++;
                                m->depth[*t] = m->depth[s] + 1;
                        }
                        s = *t;
                }
                m->outlen[s] = m->depth[s];
        }
        for (uint32_t s = 0; s < m->n_states; s++) {
                m->leaf[s] = 1;
                for (int c = 0; c < 256; c++)
                        if (m->delta[(size_t)s * 256 + c])
                                m->leaf[s] = 0;
        }
        /* BFS: failure links, complete the DFA, inherit the longest output along the links */
        size_t qh = 0, qt = 0;
        for (int c = 0; c < 256; c++) {
                uint32_t t = m->delta[c];
                if (t) {
                        fail[t] = 0;
                        queue[qt++] = t;
                }
        }
        while (qh < qt) {
                uint32_t s = queue[qh++];
                if (!m->outlen[s])
                        m->outlen[s] = m->outlen[fail[s]];
                for (int c = 0; c < 256; c++) {
                        uint32_t *t = &m->delta[(size_t)s * 256 + c];
                        uint32_t f = m->delta[(size_t)fail[s] * 256 + c];
                        if (*t) {
                                fail[*t] = f;
                                queue[qt++] = *t;
                        } else {
                                *t = f;
                        }
                }
        }
        m->wm = 32;
        for (size_t i = 0; pats[i]; i++)
                if (strlen(pats[i]) < m->wm)
                        m->wm = (unsigned)strlen(pats[i]); /* every pattern: >= 4 bytes */
        memset(m->shift, (int)m->wm - 1, sizeof(m->shift));
        for (size_t i = 0; pats[i]; i++) {
                const unsigned char *p = (const unsigned char *)pats[i];
                unsigned k = p[0] | (unsigned)p[1] << 8;
                m->pair[k >> 3] |= (uint8_t)(1u << (k & 7));
                for (unsigned j = 1; j < m->wm; j++) {
                        k = p[j - 1] | (unsigned)p[j] << 8;
                        if (m->shift[k] > m->wm - 1 - j)
                                m->shift[k] = (uint8_t)(m->wm - 1 - j);
                }
        }
        /* encode for the hot loop: entry = next state * 256 (its row), bit 0 = has an
         * output, bit 1 = shallow (depth <= 1: the state depends on the last byte only) */
        for (size_t i = 0; i < (size_t)m->n_states * 256; i++) {
                uint32_t t = m->delta[i];
                m->delta[i] = (t << 8) | (m->outlen[t] ? 1u : 0u) | (m->depth[t] <= 1 ? 2u : 0u);
        }
        free(fail);
        free(queue);
        return m;
oom:
        free(fail);
        free(queue);
        masker_free(m);
        errno = ENOMEM;
        return NULL;
}

void mask_stream_init(struct mask_stream *s)
{
        memset(s, 0, sizeof(*s));
        s->held = (struct strbuf)STRBUF_INIT;
}

void mask_stream_release(struct mask_stream *s)
{
        strbuf_release(&s->held);
}

/* The stream is the held bytes [base, base+held.len) followed by the new input [in0,
 * in0+n). */
struct view {
        const struct mask_stream *s;
        const unsigned char *in;
        uint64_t in0;
};

static unsigned char view_at(const struct view *v, uint64_t pos)
{
        if (pos < v->in0)
                return (unsigned char)v->s->held.buf[pos - v->s->base];
        return v->in[pos - v->in0];
}

/* Emit the bytes [from, to) of the view. */
static int view_emit(const struct view *v, uint64_t from, uint64_t to, mask_emit_fn emit, void *ctx)
{
        int r;
        if (from >= to)
                return 0;
        if (from < v->in0) {
                uint64_t e = to < v->in0 ? to : v->in0;
                r = emit(ctx, v->s->held.buf + (from - v->s->base), e - from);
                if (r < 0)
                        return r;
                from = e;
        }
        if (from < to) {
                r = emit(ctx, v->in + (from - v->in0), to - from);
                if (r < 0)
                        return r;
        }
        return 0;
}

static inline bool pair_hit(const uint8_t *pair, const unsigned char *q)
{
        unsigned k = q[0] | (unsigned)q[1] << 8;
        return pair[k >> 3] & (1u << (k & 7));
}

/* The first position in [q, e) where a secret may start (e - 1 at worst; q < e). */
static inline const unsigned char *skip(const struct masker *m, const unsigned char *q,
                                        const unsigned char *e)
{
        const unsigned wm = m->wm;
        const uint8_t *shift = m->shift;
        while ((size_t)(e - q) >= wm) {
                const unsigned char *t = q + wm - 2;
                unsigned sh = shift[t[0] | (unsigned)t[1] << 8];
                if (sh) {
                        q += sh;
                        continue;
                }
                if (pair_hit(m->pair, q))
                        return q;
                q++;
        }
        while (q + 1 < e && !pair_hit(m->pair, q))
                q++;
        return q;
}

/* Scan [s->pos, end) of the view; commit matches as soon as they are final; then keep as
 * held only the bytes from the first one that could still belong to a secret. */
static int scan(const struct masker *m, struct mask_stream *s, struct view *v, uint64_t end,
                bool final, mask_emit_fn emit, void *ctx)
{
        uint64_t emitted = s->base; /* everything before this offset has been emitted */
        int r;
        for (;;) {
                uint32_t st = s->state;
                uint64_t pos = s->pos;
                const uint32_t *delta = m->delta;
                /* hot loop over the new input while no match is pending */
                if (!s->pending && pos >= v->in0) {
                        const unsigned char *p0 = v->in + (pos - v->in0), *p = p0;
                        const unsigned char *e = v->in + (end - v->in0);
                        uint32_t ev = st << 8 | (m->depth[st] <= 1 ? 2u : 0u);
                        while (p < e) {
                                /* shallow: the state is the root at q (depth 0) or the
                                 * root's step on q[0] (depth 1). Every secret is >= 4
                                 * bytes, so a position where no secret can start is passed
                                 * over at the root: skip those (Wu-Manber, pair filter) */
                                const unsigned char *q = ev >> 8 ? p - 1 : p;
                                if ((ev & 2) && q >= p0) {
                                        q = skip(m, q, e);
                                        ev = delta[*q];
                                        p = q + 1;
                                        if (p == e || (ev & 1))
                                                break;
                                }
                                ev = delta[(ev & ~0xffu) + *p++];
                                if (ev & 1)
                                        break;
                        }
                        st = ev >> 8;
                        pos = (uint64_t)(p - v->in) + v->in0;
                } else if (pos < end) {
                        st = delta[(size_t)st * 256 + view_at(v, pos)] >> 8;
                        pos++;
                }
                s->state = st;
                s->pos = pos;
                if (m->outlen[st]) {
                        uint64_t ms = pos - m->outlen[st];
                        if (!s->pending || ms <= s->mstart) {
                                s->pending = true;
                                s->mstart = ms;
                                s->mlen = m->outlen[st];
                        }
                }
                bool at_end = pos >= end;
                if (s->pending) {
                        uint64_t live =
                            pos - m->depth[st]; /* first byte a secret may still start at */
                        bool done = live > s->mstart ||
                                    (live == s->mstart && m->depth[st] == s->mlen && m->leaf[st]) ||
                                    (final && at_end);
                        if (done) {
                                r = view_emit(v, emitted, s->mstart, emit, ctx);
                                if (r == 0)
                                        r = emit(ctx, MASK_TEXT, sizeof(MASK_TEXT) - 1);
                                if (r < 0)
                                        return r;
                                emitted = s->mstart + s->mlen;
                                /* rescan what follows the match from the root */
                                s->pending = false;
                                s->state = 0;
                                s->pos = emitted;
                                continue;
                        }
                }
                if (at_end)
                        break;
        }
        /* a pending match is never before the first live byte (else it was committed) */
        uint64_t keep = final ? s->pos : s->pos - m->depth[s->state];
        if (s->pending && s->mstart < keep)
                keep = s->mstart;
        if (keep < emitted)
                keep = emitted;
        r = view_emit(v, emitted, keep, emit, ctx);
        if (r < 0)
                return r;
        /* new held = [keep, end) */
        struct strbuf nh = STRBUF_INIT;
        if (end > keep) {
                if (strbuf_grow(&nh, end - keep) < 0)
                        return -ENOMEM;
                for (uint64_t p = keep; p < end; p++)
                        nh.buf[nh.len++] = (char)view_at(v, p);
                nh.buf[nh.len] = 0;
        }
        strbuf_release(&s->held);
        s->held = nh;
        s->base = keep;
        if (final) {
                s->state = 0;
                s->pending = false;
        }
        return 0;
}

int mask_feed(const struct masker *m, struct mask_stream *s, const void *buf, size_t n,
              mask_emit_fn emit, void *ctx)
{
        if (!m || m->n_secrets == 0)
                return n ? emit(ctx, buf, n) : 0;
        struct view v = {.s = s, .in = buf, .in0 = s->base + s->held.len};
        if (n == 0)
                return 0;
        return scan(m, s, &v, v.in0 + n, false, emit, ctx);
}

int mask_flush(const struct masker *m, struct mask_stream *s, mask_emit_fn emit, void *ctx)
{
        if (!m || m->n_secrets == 0)
                return 0;
        struct view v = {.s = s, .in = NULL, .in0 = s->base + s->held.len};
        return scan(m, s, &v, v.in0, true, emit, ctx);
}

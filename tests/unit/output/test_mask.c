/* test_mask.c: streaming secret masking — every split point, many secrets, binary, big lines. */
#include "executor/output/mask.h"
#include "testlib.h"

struct sink {
        struct strbuf sb;
};

static int sink_emit(void *ctx, const void *buf, size_t n)
{
        return strbuf_append(&((struct sink *)ctx)->sb, buf, n);
}

/* Reference: leftmost-longest non-overlapping replacement of every pattern (the values and their
 * encoded forms), the obvious quadratic way; the patterns from mask_patterns, computed once. */
struct ref {
        char **pats;
        size_t *len;
};

static struct ref ref_new(const char *const *secrets)
{
        struct ref r = {mask_patterns(secrets), NULL};
        size_t n = drv_strv_len(r.pats);
        r.len = calloc(n + 1, sizeof(size_t));
        for (size_t k = 0; k < n; k++)
                r.len[k] = strlen(r.pats[k]);
        return r;
}

static void ref_free(struct ref *r)
{
        drv_strv_free(r->pats);
        free(r->len);
}

static void reference(const struct ref *r, const char *in, size_t n, struct strbuf *out)
{
        size_t i = 0;
        while (i < n) {
                size_t best = 0;
                for (size_t k = 0; r->pats[k]; k++) {
                        size_t l = r->len[k];
                        if (l > best && l <= n - i && r->pats[k][0] == in[i] &&
                            memcmp(in + i, r->pats[k], l) == 0)
                                best = l;
                }
                if (best) {
                        strbuf_puts(out, MASK_TEXT);
                        i += best;
                } else {
                        strbuf_putc(out, in[i++]);
                }
        }
}

/* Mask in with the input cut at the given cut points (sorted, within [0, n]). */
static void masked_cut(const struct masker *m, const char *in, size_t n, const size_t *cuts,
                       size_t ncuts, struct strbuf *out)
{
        struct mask_stream s;
        struct sink k = {STRBUF_INIT};
        mask_stream_init(&s);
        size_t prev = 0;
        for (size_t c = 0; c <= ncuts; c++) {
                size_t at = c < ncuts ? cuts[c] : n;
                mask_feed(m, &s, in + prev, at - prev, sink_emit, &k);
                prev = at;
        }
        mask_flush(m, &s, sink_emit, &k);
        mask_stream_release(&s);
        *out = k.sb;
}

static const char *const SECRETS[] = {"hunter2secret", "hunter2", "abcd", "abcdef", "xabcdy",
                                      "bcde12",        "s3cr3t!", "aaaa", "aaab",   "ok",
                                      "true",          "False",   "TRUE", NULL};

TEST(rule_short_and_trivial)
{
        CHECK(!mask_value_maskable("abc"));
        CHECK(!mask_value_maskable(""));
        CHECK(!mask_value_maskable("true"));
        CHECK(!mask_value_maskable("True"));
        CHECK(!mask_value_maskable("false"));
        CHECK(!mask_value_maskable("False"));
        CHECK(mask_value_maskable("TRUE")); /* only the four listed spellings are trivial */
        CHECK(mask_value_maskable("abcd"));
        struct masker *m = masker_new(SECRETS);
        CHECK(m != NULL);
        CHECK_INTEQ(masker_count(m), 10);
        struct strbuf out;
        const char *in = "ok true False abc TRUE";
        masked_cut(m, in, strlen(in), NULL, 0, &out);
        CHECK_STREQ(out.buf, "ok true False abc ********");
        strbuf_release(&out);
        masker_free(m);
}

/* Every single split point and every pair of split points, against the reference. */
TEST(every_split_point)
{
        const char *inputs[] = {"pw=hunter2secret; hunter2 hunter2secre hunter2secrett",
                                "xabcdy abcdef abcde abcd12 abcde12 bcde12 aaaaab aaaab aaaaaaaa",
                                "s3cr3t!s3cr3t!abcdabcd-huntehunter2-xabcdxabcdy",
                                "a",
                                "abc",
                                "abcd",
                                "hunter2secre",
                                ""};
        struct masker *m = masker_new(SECRETS);
        int bad = 0;
        for (size_t t = 0; t < DRV_ARRAY_SIZE(inputs); t++) {
                const char *in = inputs[t];
                size_t n = strlen(in);
                struct strbuf want = STRBUF_INIT, got;
                struct ref ref = ref_new(SECRETS);
                reference(&ref, in, n, &want);
                ref_free(&ref);
                if (!want.buf)
                        strbuf_puts(&want, "");
                for (size_t a = 0; a <= n; a++)
                        for (size_t b = a; b <= n; b++) {
                                size_t cuts[2] = {a, b};
                                masked_cut(m, in, n, cuts, 2, &got);
                                if (!got.buf)
                                        strbuf_puts(&got, "");
                                if (strcmp(got.buf, want.buf) != 0 && bad++ < 5)
                                        printf("# cut %zu,%zu of '%s': got '%s' want '%s'\n", a, b,
                                               in, got.buf, want.buf);
                                strbuf_release(&got);
                        }
                /* byte by byte */
                size_t *cuts = calloc(n + 1, sizeof(size_t));
                for (size_t i = 0; i < n; i++)
                        cuts[i] = i;
                masked_cut(m, in, n, cuts, n, &got);
                if (!got.buf)
                        strbuf_puts(&got, "");
                CHECK_STREQ(got.buf, want.buf);
                strbuf_release(&got);
                free(cuts);
                strbuf_release(&want);
        }
        CHECK_INTEQ(bad, 0);
        masker_free(m);
}

TEST(longest_and_overlaps)
{
        struct masker *m = masker_new(SECRETS);
        struct strbuf out;
        const char *in = "hunter2secret|hunter2|abcdef|xabcdy|abcde12";
        masked_cut(m, in, strlen(in), NULL, 0, &out);
        /* abcde12: abcd starts first (leftmost) so bcde12 is not masked as a whole */
        CHECK_STREQ(out.buf, "********|********|********|********|********e12");
        strbuf_release(&out);
        masker_free(m);
}

/* Hold back only a possible secret prefix, and nothing once it cannot be one. */
TEST(hold_back_minimal)
{
        struct masker *m = masker_new(SECRETS);
        struct mask_stream s;
        struct sink k = {STRBUF_INIT};
        mask_stream_init(&s);
        mask_feed(m, &s, "hello hun", 9, sink_emit, &k);
        CHECK_INTEQ(k.sb.len, 6);
        CHECK_INTEQ(mask_held(&s), 3);
        mask_feed(m, &s, "gry\n", 4, sink_emit, &k);
        CHECK_INTEQ(mask_held(&s), 0);
        CHECK_STREQ(k.sb.buf, "hello hungry\n");
        /* a complete secret that nothing longer can extend is emitted at once */
        mask_feed(m, &s, "s3cr3t!", 7, sink_emit, &k);
        CHECK_INTEQ(mask_held(&s), 0);
        CHECK_STREQ(k.sb.buf, "hello hungry\n********");
        /* "abcd" may still grow into "abcdef": held until decided or flushed */
        mask_feed(m, &s, "abcd", 4, sink_emit, &k);
        CHECK_INTEQ(mask_held(&s), 4);
        mask_flush(m, &s, sink_emit, &k);
        CHECK_INTEQ(mask_held(&s), 0);
        CHECK_STREQ(k.sb.buf, "hello hungry\n****************");
        strbuf_release(&k.sb);
        mask_stream_release(&s);
        masker_free(m);
}

/* NS random secrets of minlen .. minlen+span-1 bytes, random binary-ish text with secrets
 * embedded, random cuts; compared with the reference. The secrets' shortest length sets the skip
 * window (4 .. 32), so the lengths below cover the pair filter and the Wu-Manber skip. */
static void random_case(unsigned seed, size_t minlen, size_t span)
{
        enum { NS = 200 };
        char *sec[NS + 1];
        for (int i = 0; i < NS; i++) {
                size_t l = minlen + (size_t)(rand_r(&seed) % span);
                sec[i] = malloc(l + 1);
                for (size_t j = 0; j < l; j++)
                        sec[i][j] = (char)(1 + rand_r(&seed) % 6); /* tiny alphabet: overlaps */
                sec[i][l] = 0;
        }
        sec[NS] = NULL;
        struct masker *m = masker_new((const char *const *)sec);
        struct ref ref = ref_new((const char *const *)sec);
        CHECK(m != NULL);
        for (int round = 0; round < 5; round++) {
                size_t n = 20000;
                char *in = malloc(n + 1);
                for (size_t i = 0; i < n; i++)
                        in[i] =
                            (char)(rand_r(&seed) % 7 ? 1 + rand_r(&seed) % 6 : rand_r(&seed) % 256);
                for (int j = 0; j < 30; j++) {
                        const char *x = sec[rand_r(&seed) % NS];
                        size_t at = (size_t)rand_r(&seed) % (n - 60);
                        memcpy(in + at, x, strlen(x));
                }
                in[n] = 0;
                /* the reference works on C strings: keep NULs out of this comparison */
                for (size_t i = 0; i < n; i++)
                        if (!in[i])
                                in[i] = (char)0x80;
                size_t cuts[64];
                size_t nc = 1 + (size_t)rand_r(&seed) % 63;
                for (size_t c = 0; c < nc; c++)
                        cuts[c] = (size_t)rand_r(&seed) % (n + 1);
                for (size_t a = 0; a < nc; a++)
                        for (size_t b = a + 1; b < nc; b++)
                                if (cuts[b] < cuts[a]) {
                                        size_t t = cuts[a];
                                        cuts[a] = cuts[b];
                                        cuts[b] = t;
                                }
                struct strbuf want = STRBUF_INIT, got;
                reference(&ref, in, n, &want);
                masked_cut(m, in, n, cuts, nc, &got);
                CHECK_INTEQ(got.len, want.len);
                CHECK(got.len == want.len && memcmp(got.buf, want.buf, got.len) == 0);
                strbuf_release(&want);
                strbuf_release(&got);
                free(in);
        }
        ref_free(&ref);
        masker_free(m);
        for (int i = 0; i < NS; i++)
                free(sec[i]);
}

TEST(many_secrets_binary_random)
{
        random_case(12345, 4, 20);
        random_case(777, 6, 5);
        random_case(4242, 16, 25);
        random_case(99, 9, 3);
        random_case(5, 40, 20);
}

/* A 16 MiB line with no newline and NUL bytes passes with O(secret) memory held. */
TEST(big_line_and_nul)
{
        const char *const sec[] = {"TOPSECRETVALUE", NULL};
        struct masker *m = masker_new(sec);
        struct mask_stream s;
        struct sink k = {STRBUF_INIT};
        mask_stream_init(&s);
        char chunk[65536];
        memset(chunk, 'x', sizeof(chunk));
        chunk[100] = 0;
        memcpy(chunk + sizeof(chunk) - 7, "TOPSECR", 7);
        size_t maxheld = 0;
        for (int i = 0; i < 256; i++) {
                if (i > 0)
                        memcpy(chunk, "ETVALUE", 7);
                mask_feed(m, &s, chunk, sizeof(chunk), sink_emit, &k);
                if (mask_held(&s) > maxheld)
                        maxheld = mask_held(&s);
        }
        mask_flush(m, &s, sink_emit, &k);
        CHECK(maxheld <= 14);
        /* 255 secrets split across reads, each 14 bytes -> 8 */
        CHECK_INTEQ(k.sb.len, 256u * 65536u - 255u * 6u);
        CHECK(memmem(k.sb.buf, k.sb.len, "TOPSECR", 7) ==
              k.sb.buf + k.sb.len - 7); /* only the unfinished last one */
        strbuf_release(&k.sb);
        mask_stream_release(&s);
        masker_free(m);
}

/* Independent of mask_forms.c: plain base64 of n bytes. */
static void b64(const unsigned char *s, size_t n, struct strbuf *out)
{
        static const char al[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        for (size_t i = 0; i < n; i += 3) {
                unsigned v = (unsigned)s[i] << 16 | (i + 1 < n ? (unsigned)s[i + 1] << 8 : 0) |
                             (i + 2 < n ? s[i + 2] : 0);
                strbuf_putc(out, al[v >> 18 & 63]);
                strbuf_putc(out, al[v >> 12 & 63]);
                strbuf_putc(out, i + 1 < n ? al[v >> 6 & 63] : '=');
                strbuf_putc(out, i + 2 < n ? al[v & 63] : '=');
        }
}

/* in masked with every single split point and byte by byte: all give want */
static void check_every_split(const struct masker *m, const char *in, const char *want)
{
        size_t n = strlen(in);
        int bad = 0;
        for (size_t a = 0; a <= n; a++) {
                struct strbuf got;
                size_t cuts[1] = {a};
                masked_cut(m, in, n, cuts, 1, &got);
                if (strcmp(got.buf ? got.buf : "", want) != 0 && bad++ < 3)
                        printf("# cut %zu of '%s': got '%s' want '%s'\n", a, in, got.buf, want);
                strbuf_release(&got);
        }
        size_t *cuts = calloc(n + 1, sizeof(size_t));
        for (size_t i = 0; i < n; i++)
                cuts[i] = i;
        struct strbuf got;
        masked_cut(m, in, n, cuts, n, &got);
        if (strcmp(got.buf ? got.buf : "", want) != 0 && bad++ < 3)
                printf("# bytewise '%s': got '%s' want '%s'\n", in, got.buf, want);
        strbuf_release(&got);
        free(cuts);
        CHECK_INTEQ(bad, 0);
}

/* The stable inner part of the base64 encoding at each alignment (values checked with Python's
 * base64 module), masked wherever the secret sits in the encoded data and however it is split. */
TEST(base64_three_alignments)
{
        const char *const sec[] = {"hunter2secret", NULL};
        struct masker *m = masker_new(sec);
        CHECK_INTEQ(masker_count(m), 1);
        char **pats = mask_patterns(sec);
        static const char *const inner[3] = {"aHVudGVyMnNlY3Jld", "h1bnRlcjJzZWNyZX",
                                             "odW50ZXIyc2VjcmV0"};
        for (int a = 0; a < 3; a++) {
                bool found = false;
                for (char **p = pats; *p; p++)
                        found = found || strcmp(*p, inner[a]) == 0;
                CHECK(found);
        }
        drv_strv_free(pats);
        /* echo "$S" | base64, with 0..5 bytes before and after (every alignment, with padding
         * and without, a newline after as echo adds) */
        const char *around[] = {"", "x", "ab", "XYZ", "\n", "1234", "qrstu"};
        for (size_t b = 0; b < DRV_ARRAY_SIZE(around); b++)
                for (size_t e = 0; e < DRV_ARRAY_SIZE(around); e++) {
                        struct strbuf raw = STRBUF_INIT, enc = STRBUF_INIT, got;
                        strbuf_printf(&raw, "%shunter2secret%s", around[b], around[e]);
                        b64((const unsigned char *)raw.buf, raw.len, &enc);
                        strbuf_puts(&enc, "\n");
                        masked_cut(m, enc.buf, enc.len, NULL, 0, &got);
                        const char *stable = inner[strlen(around[b]) % 3];
                        if (!strstr(got.buf, MASK_TEXT) || strstr(got.buf, stable))
                                printf("# %s -> %s\n", enc.buf, got.buf);
                        CHECK(strstr(got.buf, MASK_TEXT) != NULL);
                        CHECK(strstr(got.buf, stable) == NULL);
                        strbuf_release(&got);
                        strbuf_release(&raw);
                        strbuf_release(&enc);
                }
        /* split across chunk boundaries, each alignment */
        check_every_split(m, "token: aHVudGVyMnNlY3JldA==\n", "token: ********A==\n");
        check_every_split(m, "AGh1bnRlcjJzZWNyZXQ=", "AG********Q=");
        check_every_split(m, "AABodW50ZXIyc2VjcmV0 end", "AAB******** end");
        masker_free(m);
}

TEST(url_encoded_form)
{
        const char *const sec[] = {"p@ss w/rd:1~", NULL};
        struct masker *m = masker_new(sec);
        /* urllib.parse.quote(s, safe='-._~') */
        check_every_split(m, "GET /login?pw=p%40ss%20w%2Frd%3A1~&x=1",
                          "GET /login?pw=********&x=1");
        check_every_split(m, "raw p@ss w/rd:1~.", "raw ********.");
        masker_free(m);
}

TEST(json_escaped_form)
{
        const char *const sec[] = {"ln1\nq\"b\\x\x01", NULL};
        struct masker *m = masker_new(sec);
        /* json.dumps of the value: "ln1\nq\"b\\x\u0001" */
        check_every_split(m, "{\"token\": \"ln1\\nq\\\"b\\\\x\\u0001\"}",
                          "{\"token\": \"********\"}");
        masker_free(m);
}

/* Short or trivial values give no forms either; a form shorter than 4 bytes is never a pattern. */
TEST(forms_follow_the_rule)
{
        const char *const sec[] = {"abc", "true", "a b", NULL};
        char **pats = mask_patterns(sec);
        CHECK_INTEQ(drv_strv_len(pats), 0);
        drv_strv_free(pats);
        struct masker *m = masker_new(sec);
        check_every_split(m, "a%20b YWJj dHJ1ZQ== abc true", "a%20b YWJj dHJ1ZQ== abc true");
        masker_free(m);
        /* 4 bytes: base64 inner parts of 5 characters are masked */
        const char *const four[] = {"k3y!", NULL};
        m = masker_new(four);
        check_every_split(m, "azN5IQ==", "********Q==");
        masker_free(m);
}

/* The forms are bounded (64 KiB, shortest values first): a 40 KiB key is masked as itself only,
 * a short token next to it keeps all its forms; the values themselves are always there. */
TEST(forms_within_budget)
{
        char *big = malloc(40001);
        for (int i = 0; i < 40000; i++)
                big[i] = (char)('a' + i % 26);
        big[40000] = 0;
        const char *const sec[] = {big, "hunter2secret", NULL};
        char **pats = mask_patterns(sec);
        CHECK_STREQ(pats[0], big);
        CHECK_STREQ(pats[1], "hunter2secret");
        size_t forms = 0, bytes = 0;
        for (char **p = pats + 2; *p; p++) {
                forms++;
                bytes += strlen(*p);
                CHECK(strlen(*p) < 100); /* only the short value's forms */
        }
        CHECK_INTEQ(forms, 3);
        drv_strv_free(pats);
        /* many mid-sized values: forms up to the budget, every value still masked */
        char *many[201];
        for (int i = 0; i < 200; i++) {
                many[i] = malloc(301);
                for (int j = 0; j < 300; j++)
                        many[i][j] = (char)('A' + (i * 7 + j) % 26);
                many[i][300] = 0;
                snprintf(many[i], 8, "v%03d-", i);
                many[i][5] = 'x';
        }
        many[200] = NULL;
        pats = mask_patterns((const char *const *)many);
        bytes = 0;
        for (size_t k = 200; pats[k]; k++)
                bytes += strlen(pats[k]);
        CHECK(drv_strv_len(pats) > 200);
        CHECK(bytes <= 65536);
        for (int i = 0; i < 200; i++)
                CHECK(pats[i] == NULL ? false : strcmp(pats[i], many[i]) == 0);
        drv_strv_free(pats);
        struct masker *m = masker_new(sec);
        CHECK(m != NULL);
        struct strbuf out;
        masked_cut(m, big, 40000, NULL, 0, &out);
        CHECK_STREQ(out.buf, MASK_TEXT);
        strbuf_release(&out);
        masker_free(m);
        for (int i = 0; i < 200; i++)
                free(many[i]);
        free(big);
}

/* The one-shot form used for step names, reasons and events. */
TEST(mask_text_whole_string)
{
        const char *const sec[] = {"hunter2secret", "abcd", NULL};
        struct masker *m = masker_new(sec);
        char *t = mask_text(m, "deploy with hunter2secret (aHVudGVyMnNlY3JldA==) abc");
        CHECK_STREQ(t, "deploy with ******** (********A==) abc");
        free(t);
        t = mask_text(m, "ends in abcd");
        CHECK_STREQ(t, "ends in ********");
        free(t);
        t = mask_text(NULL, "no masker");
        CHECK_STREQ(t, "no masker");
        free(t);
        masker_free(m);
}

int main(void)
{
        RUN(rule_short_and_trivial);
        RUN(every_split_point);
        RUN(longest_and_overlaps);
        RUN(hold_back_minimal);
        RUN(many_secrets_binary_random);
        RUN(big_line_and_nul);
        RUN(base64_three_alignments);
        RUN(url_encoded_form);
        RUN(json_escaped_form);
        RUN(forms_follow_the_rule);
        RUN(forms_within_budget);
        RUN(mask_text_whole_string);
        TEST_DONE();
}

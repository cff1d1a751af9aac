/* mask.h: streaming secret masking (internal to the output pipeline; output_mask() in
 * executor/output.h is the way for everything else).
 *
 * What is masked (docs/executor.md "Secret masking"): every maskable secret value and its encoded
 * forms (mask_patterns). One Aho-Corasick automaton (a dense DFA) over all those patterns;
 * leftmost-longest, non-overlapping matches are replaced by "********". Bytes are held back only
 * while they could still be part of a secret: the longest suffix of the stream that is a prefix of
 * some secret, or a found match that a longer secret starting at the same byte could still extend.
 */
#pragma once

#include "lib/drv.h"

#define MASK_TEXT "********"

struct masker;
struct mask_stream {
        uint32_t state;     /* DFA state after the last byte scanned */
        uint64_t base;      /* absolute offset of held[0] */
        struct strbuf held; /* bytes not emitted yet (held back) */
        bool pending;       /* a match [mstart, mstart+mlen) waits to be committed */
        uint64_t mstart;
        uint32_t mlen;
        uint64_t pos; /* absolute offset of the next byte */
};

/* CircleCI's rule: values shorter than 4 characters and true/True/false/False are not masked. */
bool mask_value_maskable(const char *v);
/* The patterns masked for secrets (NULL-terminated; may be NULL): for each maskable value, the
 * value itself; the stable inner part of its base64 encoding at each of the three alignments
 * (the value at offset 0, 1 or 2 of a 3-byte group: the characters that depend on its bytes
 * only); its percent-encoding (RFC 3986: all but A-Z a-z 0-9 - . _ ~ as %XX, upper-case hex);
 * its JSON string escaping (\" \\ \b \f \n \r \t, other control bytes \u00xx). A form is
 * added when it differs from the value and has at least 4 bytes. The values come first (each
 * distinct one once, in order), then the forms, shortest value first, while all forms together
 * stay within 64 KiB (the DFA's memory: a long key or many large values get their raw form
 * only). Returns a vector the caller frees (drv_strv_free), NULL on ENOMEM. */
char **mask_patterns(const char *const *secrets);
/* Build the automaton over mask_patterns(secrets).
 * Returns NULL on ENOMEM or when the total size is too large (errno set). */
struct masker *masker_new(const char *const *secrets);
void masker_free(struct masker *m);
/* Number of distinct secrets actually masked (values, not their forms). */
size_t masker_count(const struct masker *m);
/* text with every pattern masked: one whole stream fed and flushed. m may be NULL (a copy).
 * Returns a new string the caller frees, NULL on ENOMEM. */
char *mask_text(const struct masker *m, const char *text);

/* Callback receiving masked output; returns 0 or -errno (which aborts the feed). */
typedef int (*mask_emit_fn)(void *ctx, const void *buf, size_t n);

void mask_stream_init(struct mask_stream *s);
void mask_stream_release(struct mask_stream *s);
/* Feed n raw bytes; emit all masked bytes that can no longer be part of a secret. */
int mask_feed(const struct masker *m, struct mask_stream *s, const void *buf, size_t n,
              mask_emit_fn emit, void *ctx);
/* End of stream: commit a pending match and emit every held byte. */
int mask_flush(const struct masker *m, struct mask_stream *s, mask_emit_fn emit, void *ctx);
/* Bytes held back right now. */
static inline size_t mask_held(const struct mask_stream *s)
{
        return s->held.len;
}

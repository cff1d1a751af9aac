/* mask.h: streaming secret masking (internal to the output pipeline).
 *
 * One Aho-Corasick automaton (a dense DFA) over all secrets; leftmost-longest, non-overlapping
 * matches are replaced by "********". Bytes are held back only while they could still be part of a
 * secret: the longest suffix of the stream that is a prefix of some secret, or a found match that
 * a longer secret starting at the same byte could still extend. */
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
/* Build the automaton over the maskable values of secrets (NULL-terminated; may be NULL).
 * Returns NULL on ENOMEM or when the total size is too large (errno set). */
struct masker *masker_new(const char *const *secrets);
void masker_free(struct masker *m);
/* Number of distinct secrets actually masked. */
size_t masker_count(const struct masker *m);

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

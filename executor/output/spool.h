/* spool.h: the on-disk spool shared by the writer (output.c) and the shipper (shipper.c).
 *
 * <spool>/state   fixed-size map (struct spool_state), mmap'ed MAP_SHARED by both processes:
 *                 masked bytes written and acknowledged per step, step states; it persists the
 *                 acknowledged offsets, so a restarted shipper resends only what is missing.
 * <spool>/N.data  step N's masked bytes; file offset == stream offset (acknowledged ranges are
 *                 punched out, 4 KiB pages, a MiB at a time or all once all is acknowledged)
 * <spool>/N.ts    16-byte records {u64 offset, u64 unix ns}: the chunk starting at offset was
 *                 written at that time (writes within 1 ms join one chunk); records before the
 *                 one covering the acknowledged offset are punched out too
 * <spool>/N.json  {"name", "background", "begin_ns"[, "end": {...}]} for begin/end records
 * <spool>/writer.lock  flock'ed by the writer (drover job) for its lifetime
 * The shipper flocks <spool>/state while it runs. A writer that finds a spool of the same job
 * (drover job crashed and was started again) takes it over: it stops a shipper still running,
 * ends the steps left open as "canceled", and numbers its own steps after the old ones; the new
 * shipper delivers the old steps' remaining bytes first (docs/protocol-output.md). */
#pragma once

#include "lib/drv.h"

#define SPOOL_MAX_STEPS 4096
#define SPOOL_MAGIC     0x4452564f55545032ULL /* "DRVOUTP2" */

enum spool_step_state { SPOOL_UNUSED = 0, SPOOL_OPEN = 1, SPOOL_ENDED = 2 };
/* SPOOL_SENT_LOST: the processor lost acknowledged bytes the spool no longer has; the step is
 * given up (docs/protocol-output.md "A processor that lost data") */
enum spool_sent { SPOOL_SENT_BEGIN = 1, SPOOL_SENT_END = 2, SPOOL_SENT_LOST = 4 };

struct spool_state {
        uint64_t magic;
        uint32_t closing;      /* the writer is closing: send everything now */
        uint32_t n_steps;      /* highest step index used + 1 */
        uint64_t shipper_pid;  /* for a restarted supervisor */
        uint64_t backlog_peak; /* the largest unacknowledged byte count seen (reported) */
        uint64_t written[SPOOL_MAX_STEPS];
        uint64_t acked[SPOOL_MAX_STEPS];
        uint64_t ts_pos[SPOOL_MAX_STEPS]; /* N.ts position of the record covering acked */
        uint8_t state[SPOOL_MAX_STEPS];
        uint8_t sent[SPOOL_MAX_STEPS];
};

struct spool_ts {
        uint64_t offset;
        uint64_t ns;
};

struct output_config;
/* The shipper: runs in a forked child until everything is acknowledged after closing (or the
 * parent is gone and everything written is acknowledged). Never returns. */
_Noreturn void shipper_main(const struct output_config *cfg, int spool_fd, struct spool_state *st,
                            int wake_fd);

static inline uint64_t spool_load(const uint64_t *p)
{
        return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}
static inline void spool_store(uint64_t *p, uint64_t v)
{
        __atomic_store_n(p, v, __ATOMIC_RELEASE);
}

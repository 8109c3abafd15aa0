/*
 * shmpath/holdoff.h — a subscriber's hold-off timer: interrupt coalescing
 * for a reader that polls shared-memory logs.
 *
 * A reader that keeps up with a writer streaming small records reads each
 * record's cache line while the writer is still filling it: the line moves
 * between the two cores once or twice per record (the writer's
 * read-for-ownership, the reader's re-read), and both sides stall on it.
 * Once the reader sees a stream - records arriving back to back - it is
 * better for it to stop looking at the log for a moment after it has
 * caught up, so the writer fills whole lines undisturbed and the reader
 * then takes them in one batch. A reader that is not in a stream, e.g.
 * one waiting for a lone message after a quiet gap, never holds off: it
 * spins and sleeps as before, so unloaded latency is unchanged.
 *
 * The rule (docs/shm-protocol.md §8, "Hold-off"):
 * - a poll that finds n messages continues the stream when at most
 *   n * gap_ns passed since the end of the previous poll that found some
 *   (or of the hold that followed it): messages kept arriving at least one
 *   per gap_ns on average. Otherwise it starts a new one (streak 1);
 * - when a poll that found messages left the logs empty, and the stream
 *   has reached streak_min such polls, the reader holds off: it does not
 *   look at the logs for hold_ns;
 * - the hold is skipped when, as it would begin, the reader is already
 *   behind_bytes or more behind its writers: it would only fall further
 *   behind, and what it reads is far from the lines being written;
 * - the first poll after a hold that finds nothing ends the stream: the
 *   next hold needs streak_min polls with messages again.
 * A message therefore waits at most hold_ns longer than it would without
 * the timer, and only while they have been arriving faster than one per
 * gap_ns.
 *
 * Sans-IO: the caller passes the clock (CLOCK_MONOTONIC ns) and does the
 * waiting. Storage is the caller's (init, no fini); no allocation, no
 * syscalls. Thread model: one reader thread at a time.
 */
#ifndef SHIMMY_SHMPATH_HOLDOFF_H
#define SHIMMY_SHMPATH_HOLDOFF_H

#include <stdint.h>

/* Defaults (measured on the 16 B 1 -> 1 stream, docs/shm-protocol.md §8):
 * hold 10 us; a stream is >= 1 message per us over 8 polls; no hold when
 * 8 KiB or more behind (beyond the reach of hardware prefetchers). */
#define SHIMMY_HOLDOFF_HOLD_NS 10000
#define SHIMMY_HOLDOFF_GAP_NS 1000
#define SHIMMY_HOLDOFF_STREAK 8u
#define SHIMMY_HOLDOFF_BEHIND 8192u
/* Largest hold_ns and gap_ns (keeps n * gap_ns and now + hold_ns far
 * from overflow). */
#define SHIMMY_HOLDOFF_MAX_NS 1000000000

/* Invariants: streak == 0 when hold_ns == 0; held implies streak > 0. */
typedef struct shimmy_holdoff {
	int64_t hold_ns, gap_ns; /* parameters; hold_ns 0: never hold */
	uint32_t streak_min;
	uint64_t behind_bytes;   /* no hold this far behind */
	uint32_t streak;  /* polls with messages in this stream */
	int64_t last_ns;  /* end of the last one, or of the hold after it */
	int held;         /* the last poll with messages started a hold */
} shimmy_holdoff;

/* Sets the parameters (defaults: SHIMMY_HOLDOFF_*) and forgets any
 * stream. hold_ns <= 0 turns the timer off (shimmy_holdoff_polled() then
 * always returns 0); both times are clamped to SHIMMY_HOLDOFF_MAX_NS, and
 * streak_min 0 counts as 1. */
void shimmy_holdoff_init(shimmy_holdoff *h, int64_t hold_ns, int64_t gap_ns,
			 uint32_t streak_min, uint64_t behind_bytes);

/* Flags of shimmy_holdoff_polled(). */
enum {
	/* The poll stopped because the logs were empty, not at its limit. */
	SHIMMY_HOLDOFF_EMPTIED = 1u << 0,
};

/*
 * Reports one poll of the reader's logs, ended at now_ns, that took n
 * messages (0: found nothing). Returns how many ns from now the reader
 * should not look at its logs (0: poll, spin and sleep as usual). Never
 * blocks.
 */
int64_t shimmy_holdoff_polled(shimmy_holdoff *h, int64_t now_ns, unsigned n,
			      unsigned flags);

/*
 * Called as a hold shimmy_holdoff_polled() asked for begins, with the bytes
 * the writers have committed that the reader has not read (the sum of
 * shimmy_ring_reader_bound()'s results): 1 to hold, 0 to read on at once.
 */
int shimmy_holdoff_hold(const shimmy_holdoff *h, uint64_t behind);

/*
 * 1 while the reader is in a stream (streak_min polls with messages, and
 * no hold since that came up empty). Such a reader should also bound each
 * poll to where the writers were when it started (shimmy_ring_reader_bound
 * with SHIMMY_RING_BOUND_TAIL): a reader that follows a writer record by
 * record keeps finding messages, never empties the log, and so would
 * never hold off, while it fetches every line the writer is filling.
 */
int shimmy_holdoff_streaming(const shimmy_holdoff *h);

#endif

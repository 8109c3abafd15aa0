/*
 * shmpath/tether.h — the broker's hold on the readers of reliable (QoS 1/2)
 * logs: it tethers a reader to the writer from the moment it is attached,
 * and decides when a reader that holds the writer back is cut loose
 * (docs/shm-protocol.md §6).
 *
 * Why the broker and not the writer: the broker creates every slot page
 * and keeps a mapping of each, it alone can tell the reader (LOG_DETACH)
 * and the writer (READER_DROP), and a publisher that reaped its own
 * readers could cut any subscriber it liked. The writer only ever obeys
 * the reader table (ring.h).
 *
 * shimmy_tether_seed() and shimmy_tether_read() touch shared memory: the
 * log header is writable by its publisher, so what they read is
 * validated and clamped, never trusted. shimmy_tether_check() is pure.
 *
 * Thread model: the broker's loop thread; no allocation, no blocking.
 */
#ifndef SHIMMY_SHMPATH_TETHER_H
#define SHIMMY_SHMPATH_TETHER_H

#include <stddef.h>
#include <stdint.h>

/*
 * Writes a start position and gen into a freshly formatted reader slot
 * page, before its reader maps the log: the log's head (flags
 * SHIMMY_RING_FROM_HEAD) or its tail (SHIMMY_RING_FROM_TAIL). Call it
 * before the table entry is set ATTACHED; from then on the reader holds
 * a reliable writer back even while its client has not yet mapped the
 * log. The reader's own shimmy_ring_reader_create() later moves the
 * position forward (never back: head and tail only grow). The position
 * itself only moves forward (CAS), so this also re-tethers a share
 * page (§7) whose members are claiming. log/len: the ring region;
 * slot/slot_len: the slot page (broker's RW mapping). Returns 0,
 * MQTT_ERR_INVALID or MQTT_ERR_MALFORMED (header, or a misaligned
 * head/tail).
 */
int shimmy_tether_seed(const void *log, size_t len, void *slot,
		       size_t slot_len, uint64_t gen, unsigned flags);

/*
 * Reads reader gen's published position and the log's tail. *pos is
 * clamped to *tail (a reader claiming to be ahead only hurts itself).
 * Returns 0, 1 when the slot does not show gen (no position to judge:
 * the reader holds nobody back), MQTT_ERR_INVALID or MQTT_ERR_MALFORMED.
 */
int shimmy_tether_read(const void *log, size_t len, const void *slot,
		       size_t slot_len, uint64_t gen, uint64_t *pos,
		       uint64_t *tail);

/* The broker's memory of one reader between two checks; zeroed at
 * attach. */
typedef struct shimmy_tether {
	uint64_t pos;      /* position at the last check */
	uint64_t since_ms; /* first seen lagging at pos */
	int seen;          /* pos/since_ms are valid */
} shimmy_tether;

/*
 * One observation of a reader at now_ms: pos and tail from
 * shimmy_tether_read(), cap the log's data capacity. Returns 1 when the
 * reader is stuck: it lags the tail by at least cap / 2 bytes and its
 * position has not moved for timeout_ms. (A writer waits only for a
 * reader more than cap - cap/16 - max_record >= 11/16 cap behind, so a
 * reader behind by less holds nobody back, and its clock restarts.)
 * Pure: no shared memory, no clock.
 */
int shimmy_tether_check(shimmy_tether *t, uint64_t pos, uint64_t tail,
			uint64_t cap, uint64_t now_ms, uint64_t timeout_ms);

#endif

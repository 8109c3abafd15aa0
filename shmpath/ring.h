/*
 * shmpath/ring.h — the SPMC broadcast log: one writer, many readers, across
 * processes, over memory the caller provides (a log segment's body).
 *
 * Records are 32-byte aligned: a 32-byte header {commit, seq, flags,
 * props_len, payload_len, rec_len}, the MQTT 5 property bytes, the payload;
 * a message without properties and with at most 16 payload bytes takes a
 * short 32-byte record instead (16-byte header {commit, meta}, two records
 * per cache line).
 * The writer reserves, fills and commits with a release store of the commit
 * word (loan API), or copies (shimmy_ring_publish). A record never wraps: a
 * PAD record fills the end of the data area. No syscall per message: the
 * writer touches the shared control line it owns, the records, and - every
 * cap/16 bytes - the intent line readers validate against; futex wakes are
 * made only for sleeping readers and can be batched (SHIMMY_RING_NOWAKE +
 * shimmy_ring_wake()).
 *
 * Readers keep their own position in a reader slot page of their own (a
 * separate 4 KiB segment, writable by that reader only, mapped read-only by
 * the writer), so no reader can move another's. They borrow (pointer into
 * the ring, valid until release) or receive (copy).
 *
 * Lossy mode (QoS 0): the writer never blocks; a lapped reader sees the
 * gap, counts the lost messages from sequence numbers, resyncs to the
 * oldest intact record and reports the loss in shimmy_ring_msg.lost.
 * Reliable mode (QoS 1/2): the writer waits, bounded, for the slowest
 * attached reader; a stuck reader can be detached, after which it reads
 * -ENOLINK. Effective capacity is data_cap - data_cap/16 in both modes.
 *
 * Trust: readers validate the header once, copy what they need, and bound
 * every length and offset they read; a hostile writer can make a reader
 * drop the log (MQTT_ERR_MALFORMED), never crash, hang or read outside the
 * mapping. Borrowed bytes can still change under a hostile writer: parse
 * them defensively, or receive a copy.
 *
 * Thread model: a writer handle or a reader handle is used by one thread at
 * a time; any number of reader handles, in any processes, share one log.
 * Handles are allocated once by *_create; nothing allocates per message.
 */
#ifndef SHIMMY_SHMPATH_RING_H
#define SHIMMY_SHMPATH_RING_H

#include <stddef.h>
#include <stdint.h>

#include "shmpath/notify.h"

/* Bytes of the ring header page before the data area. */
#define SHIMMY_RING_HDR_SIZE 4096u
/* Size of one reader slot page (a SHIMMY_SEG_SLOT segment's body). */
#define SHIMMY_RING_SLOT_SIZE 4096u
/* Default and largest number of reader slots in a log's table. */
#define SHIMMY_RING_READERS 64u
#define SHIMMY_RING_READERS_MAX 192u

/* shimmy_ring_params.flags */
enum {
	SHIMMY_RING_RELIABLE = 1u << 0, /* QoS 1/2: writer held back by readers */
};

/* Message flags carried in a record (shimmy_ring_msg.flags, commit's
 * msg_flags). */
enum {
	SHIMMY_MSG_QOS_MASK = 0x3u,
	SHIMMY_MSG_RETAIN = 0x4u,
};

/* shimmy_ring_commit() / shimmy_ring_publish() flags */
enum {
	SHIMMY_RING_NOWAKE = 1u << 0, /* skip waking sleepers; see ring_wake */
};

/* shimmy_ring_reader_create() flags */
enum {
	SHIMMY_RING_FROM_TAIL = 0,      /* only messages committed from now on */
	SHIMMY_RING_FROM_HEAD = 1u << 0, /* also what is still in the ring */
};

typedef struct shimmy_ring_params {
	uint32_t flags;       /* SHIMMY_RING_RELIABLE */
	uint32_t readers_max; /* 0 = SHIMMY_RING_READERS */
	uint32_t max_record;  /* 0 = data_cap / 4 (also the ceiling) */
	uint64_t log_id;
} shimmy_ring_params;

/* A reserved record; fill props[0..props_len) and payload[0..payload_len). */
typedef struct shimmy_ring_loan {
	uint8_t *props;
	uint8_t *payload;
	uint32_t props_len, payload_len;
	uint64_t seq; /* the sequence number this record will carry */
	uint64_t pos; /* private to the ring */
} shimmy_ring_loan;

/* A received or borrowed message. For borrow, the pointers are into the
 * ring and valid until shimmy_ring_release(); for receive, into the
 * caller's buffer. */
typedef struct shimmy_ring_msg {
	const uint8_t *props;
	const uint8_t *payload;
	uint32_t props_len, payload_len;
	uint32_t flags;  /* SHIMMY_MSG_* */
	uint64_t seq;
	uint64_t lost;   /* messages lost just before this one (lapping) */
	uint64_t pos;    /* private to the ring */
	uint32_t rec_len;/* private to the ring */
} shimmy_ring_msg;

typedef struct shimmy_ring_writer shimmy_ring_writer;
typedef struct shimmy_ring_reader shimmy_ring_reader;

/* Bytes of ring region needed for a data capacity (cap: power of two). */
size_t shimmy_ring_region_size(size_t cap);

/*
 * Broker side: lays out an empty log in mem[0..len): header page plus a
 * data area of the largest power of two that fits. mem must be 4096-byte
 * aligned and zeroed (a fresh memfd is). Returns 0 or MQTT_ERR_INVALID.
 */
int shimmy_ring_format(void *mem, size_t len, const shimmy_ring_params *p);

/*
 * Broker (or writer) side: sets reader table entry idx to ATTACHED with gen
 * (call after the reader's slot page shows gen), FREE (dead reader: it stops
 * holding the writer back) or DETACHED. Returns 0, MQTT_ERR_INVALID or
 * MQTT_ERR_MALFORMED.
 */
enum { SHIMMY_RING_SLOT_FREE = 0, SHIMMY_RING_SLOT_ATTACHED = 1,
       SHIMMY_RING_SLOT_DETACHED = 2 };
int shimmy_ring_slot_set(void *mem, size_t len, uint32_t idx, uint32_t state,
			 uint64_t gen);

/* Broker side: formats a reader slot page (>= SHIMMY_RING_SLOT_SIZE). */
int shimmy_ring_slot_format(void *slot, size_t len);

/* Broker side: the cumulative loss the reader of slot (a formatted slot
 * page, len >= SHIMMY_RING_SLOT_SIZE) published; 0 if slot is not one.
 * The reader's process may write it at any moment: one atomic load, and
 * the value is the reader's word only. */
uint64_t shimmy_ring_slot_lost(const void *slot, size_t len);

/* Bytes a record of props_len + payload_len takes in a log, at most (a
 * small one may take less): a log holds it if this is <= its max_record,
 * a quarter of its capacity. */
uint64_t shimmy_ring_record_len(uint32_t props_len, uint32_t payload_len);

/* Broker side: marks the log closed (publisher gone); readers drain what
 * is committed and then read -EPIPE. */
int shimmy_ring_mark_closed(void *mem, size_t len);

/*
 * Writer. Wraps mem (borrowed until destroy; the publisher's writable
 * mapping). Resumes from the control words, so a reconnecting publisher
 * continues the sequence. Allocates the handle. Returns 0, MQTT_ERR_NOMEM
 * or MQTT_ERR_MALFORMED.
 */
int shimmy_ring_writer_create(shimmy_ring_writer **out, void *mem, size_t len);
void shimmy_ring_writer_destroy(shimmy_ring_writer *w);

/*
 * Tells the writer where the slot page of reader idx, attached with gen
 * (READER_ADD's), is mapped (read-only is enough; borrowed until
 * untrack/destroy) and which bell to ring for it (may be NULL; borrowed
 * likewise). A reliable writer is held back by a table entry ATTACHED
 * under a gen it does not track (the reader's READER_ADD is not processed
 * yet; it cannot read its position): it gives up nothing beyond its head
 * until it tracks it. Returns 0 or MQTT_ERR_INVALID.
 */
int shimmy_ring_writer_track(shimmy_ring_writer *w, uint32_t idx,
			     uint64_t gen, const void *slot, size_t slot_len,
			     shimmy_bell *bell);
void shimmy_ring_writer_untrack(shimmy_ring_writer *w, uint32_t idx);

/*
 * Reserves a record. Lossy: never blocks. Reliable: waits up to timeout_ns
 * for the slowest attached reader, and for attached readers it does not
 * track yet (see track), spinning then yielding; 0 = don't wait.
 * Returns 0, -EAGAIN (no space, timeout 0), -ETIMEDOUT, -EBUSY (a loan is
 * outstanding) or MQTT_ERR_TOO_LARGE (record over max_record).
 */
int shimmy_ring_reserve(shimmy_ring_writer *w, uint32_t props_len,
			uint32_t payload_len, int64_t timeout_ns,
			shimmy_ring_loan *loan);

/* Publishes the loan: release store of its commit word. msg_flags:
 * SHIMMY_MSG_*. flags: SHIMMY_RING_NOWAKE. Returns 0 or MQTT_ERR_INVALID. */
int shimmy_ring_commit(shimmy_ring_writer *w, shimmy_ring_loan *loan,
		       uint32_t msg_flags, unsigned flags);

/*
 * Batch reserve: up to n (>= 1) records for messages of the same sizes,
 * contiguous, in loans[0..k). Returns k >= 1, or an error as
 * shimmy_ring_reserve() (which the first record goes through, waiting as it
 * does). The others never wait: k stops short at the end of the data area
 * or, in a reliable log, where the first one's wait left no room.
 * shimmy_ring_abort(loans) drops them all.
 */
int shimmy_ring_reserve_many(shimmy_ring_writer *w, uint32_t props_len,
			     uint32_t payload_len, unsigned n,
			     int64_t timeout_ns, shimmy_ring_loan *loans);

/* Publishes all k loans of a reserve_many() (n = k): the release store of
 * each commit word, in order; the tail and the bells once. Returns 0 or
 * MQTT_ERR_INVALID. */
int shimmy_ring_commit_many(shimmy_ring_writer *w, shimmy_ring_loan *loans,
			    unsigned n, uint32_t msg_flags, unsigned flags);

/* Drops an uncommitted loan; readers never see it. */
void shimmy_ring_abort(shimmy_ring_writer *w, shimmy_ring_loan *loan);

/* reserve + copy + commit. Same returns as shimmy_ring_reserve(). */
int shimmy_ring_publish(shimmy_ring_writer *w, const void *props,
			uint32_t props_len, const void *payload,
			uint32_t payload_len, uint32_t msg_flags,
			int64_t timeout_ns, unsigned flags);

/* Rings the bells of sleeping readers (after NOWAKE commits). */
void shimmy_ring_wake(shimmy_ring_writer *w);

/* Detaches reader idx (cut loose): it stops holding the writer back and
 * reads -ENOLINK once the writer overruns it. Returns 0 or MQTT_ERR_INVALID.*/
int shimmy_ring_writer_detach(shimmy_ring_writer *w, uint32_t idx);

/* Marks the log closed after the last commit. */
void shimmy_ring_writer_close(shimmy_ring_writer *w);

/*
 * Reader. Wraps mem (read-only mapping, borrowed until destroy) and slot
 * (this reader's writable slot page, borrowed likewise) as table entry idx
 * with generation gen; writes gen, pid and the start position into the slot
 * page. flags: SHIMMY_RING_FROM_TAIL / FROM_HEAD. FROM_HEAD with the slot
 * seeded at 0 under gen (shimmy_tether_seed(), the log was new) starts at
 * the log's first record, seq 1, so whatever was lapped before this call
 * counts as lost; otherwise at the current head, with no loss counted
 * before the first message read. Allocates the handle.
 * Returns 0, MQTT_ERR_NOMEM, MQTT_ERR_INVALID or MQTT_ERR_MALFORMED.
 */
int shimmy_ring_reader_create(shimmy_ring_reader **out, const void *mem,
			      size_t len, void *slot, size_t slot_len,
			      uint32_t idx, uint64_t gen, unsigned flags);
void shimmy_ring_reader_destroy(shimmy_ring_reader *r);

/*
 * Borrows the next message without copying. Returns 1 (msg filled; the
 * pointers stay valid until shimmy_ring_release()), 0 (nothing new), -EBUSY
 * (a borrow is outstanding), -ENOLINK (detached by the writer), -EPIPE (log
 * closed and drained) or MQTT_ERR_MALFORMED (drop the log). Never blocks;
 * does a bounded amount of work.
 */
int shimmy_ring_borrow(shimmy_ring_reader *r, shimmy_ring_msg *msg);

/*
 * Ends a borrow and advances. Returns 0 if the bytes were intact for the
 * whole borrow, -ESTALE if the writer overran them meanwhile (lossy mode
 * only; discard what you read; counted as lost), MQTT_ERR_INVALID if no
 * single message is on loan (a borrow_many() of more: release_many()).
 */
int shimmy_ring_release(shimmy_ring_reader *r, const shimmy_ring_msg *msg);

/*
 * Batch borrow: up to max (>= 1) consecutive messages into msgs[0..n), as
 * shimmy_ring_borrow() would return them one by one; all stay valid until
 * shimmy_ring_release_many(). Returns n >= 1, or what shimmy_ring_borrow()
 * returns when there is no first message (0 or a negative; MQTT_ERR_INVALID
 * for max 0). It may stop before max at anything but a plain next record
 * (padding, not yet committed, a gap); the next call deals with that.
 * Per message it costs one header check, no shared control words: the
 * overrun test is made once, at release. Never blocks; bounded work.
 */
int shimmy_ring_borrow_many(shimmy_ring_reader *r, shimmy_ring_msg *msgs,
			    unsigned max);

/*
 * Ends a borrow_many() (msgs and n as it returned them) or a borrow() (n =
 * 1) and advances past all of it. Returns the number of messages whose
 * bytes the writer overran meanwhile (lossy mode only): always the first
 * ones, to be discarded, counted as lost; 0 when all were intact. Returns
 * MQTT_ERR_INVALID if msgs/n is not what is on loan.
 */
int shimmy_ring_release_many(shimmy_ring_reader *r, const shimmy_ring_msg *msgs,
			     unsigned n);

/*
 * Copies the next message into buf[0..cap) (props, then payload); msg's
 * pointers point into buf. Returns as borrow, plus MQTT_ERR_NOSPACE when
 * cap is too small (msg->props_len/payload_len then say what is needed and
 * the message is not consumed).
 */
int shimmy_ring_receive(shimmy_ring_reader *r, shimmy_ring_msg *msg,
			void *buf, size_t cap);

/* 1 when borrow/receive would return something other than 0. No side
 * effects; usable as a shimmy_bell_ready_fn (ctx = reader). */
int shimmy_ring_reader_ready(void *reader);

/*
 * Position batching: publish this reader's position (the line the writer
 * polls for flow control) only every n consumed records, and whenever the
 * reader finds the log empty or resyncs, instead of at every release.
 * n = 0 or 1: every release (the default). A batching reader holds a
 * reliable writer back by at most n records while it is busy.
 * shimmy_ring_reader_sync() publishes now. No allocation, no blocking.
 */
void shimmy_ring_reader_set_batch(shimmy_ring_reader *r, uint32_t n);
void shimmy_ring_reader_sync(shimmy_ring_reader *r);

/*
 * Horizon (hold-off, docs/shm-protocol.md §8): with SHIMMY_RING_BOUND_TAIL,
 * snapshots the writer's tail (one load of a line the writer stores at
 * every commit) and makes borrow/receive return 0 at that position, as if
 * the log ended there, until the next call; flags 0 lifts the bound. A
 * reader that keeps up with a stream reads only records whose lines the
 * writer has left, instead of following it line by line. Lapping is
 * detected and counted as ever (the loss is reported with the next message
 * read). shimmy_ring_reader_ready() ignores the bound. Returns the bytes
 * between the reader and the snapshot (0 with flags 0; a hostile tail can
 * make it anything, and only bounds this reader). No blocking.
 */
enum { SHIMMY_RING_BOUND_TAIL = 1u << 0 };
uint64_t shimmy_ring_reader_bound(shimmy_ring_reader *r, unsigned flags);

/* Cumulative messages lost by this reader. */
uint64_t shimmy_ring_reader_lost(const shimmy_ring_reader *r);

#endif

/*
 * shmpath/ring_int.h — byte layouts of the broadcast log, shared by ring.c,
 * share.c and their tests. Not part of the public API; docs/shm-protocol.md
 * is the normative copy of these tables.
 */
#ifndef SHIMMY_SHMPATH_RING_INT_H
#define SHIMMY_SHMPATH_RING_INT_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "shmpath/ring.h"

#define RING_MAGIC 0x474e495259594853ull /* "SHYYRING" */
#define RING_VERSION 2u
#define RING_HDR_SIZE 4096u
#define RING_ALIGN 32u /* record alignment */
#define RING_TABLE_OFF 1024u
#define RING_TABLE_MAX ((RING_HDR_SIZE - RING_TABLE_OFF) / 16u) /* 192 */
#define SLOT_MAGIC 0x544f4c5359594853ull /* "SHYYSLOT" */

/* Ring header flags. */
#define RING_F_RELIABLE 1u
/* Control state bits. */
#define RING_S_CLOSED 1u

/*
 * Ring header, page 0 of the ring region (offsets from the region start).
 * Line 0 is static after shimmy_ring_format(); line 1 is written by the
 * writer at each commit and read by readers only to attach, to resync and
 * once per poll while holding off (shimmy_ring_reader_bound); line
 * 2 holds intent and state, which readers load when a record is not there
 * and per batch (written every lookahead bytes and at close only, so it
 * stays shared in their caches).
 *
 * | off  | size | field       | notes                                   |
 * |------|------|-------------|-----------------------------------------|
 * | 0    | 8    | magic       | "SHYYRING"                              |
 * | 8    | 4    | version     | 2                                       |
 * | 12   | 4    | flags       | bit 0 RELIABLE                          |
 * | 16   | 8    | data_off    | 4096                                    |
 * | 24   | 8    | data_cap    | power of two, >= 4096                   |
 * | 32   | 4    | align       | 32                                      |
 * | 36   | 4    | max_record  | <= data_cap / 4, multiple of 32         |
 * | 40   | 4    | readers_max | <= 192                                  |
 * | 44   | 4    | table_off   | 1024                                    |
 * | 48   | 8    | lookahead   | data_cap / 16                           |
 * | 56   | 8    | log_id      | broker's id of the log                  |
 * | 64   | 4    | ctl_ver     | seqlock over tail/next_seq (odd = busy) |
 * | 68   | 4    | reserved    | 0                                       |
 * | 72   | 8    | tail        | end of the last committed record        |
 * | 80   | 8    | next_seq    | seq of the record that will start at tail|
 * | 88   | 8    | head        | oldest record not yet overwritten       |
 * | 128  | 8    | intent      | writer may be writing below this        |
 * | 136  | 4    | state       | bit 0 CLOSED                            |
 * | 1024 | 16*N | table       | reader table, below                     |
 */
struct ring_hdr {
	uint64_t magic;
	uint32_t version;
	uint32_t flags;
	uint64_t data_off;
	uint64_t data_cap;
	uint32_t align;
	uint32_t max_record;
	uint32_t readers_max;
	uint32_t table_off;
	uint64_t lookahead;
	uint64_t log_id;
	/* line 1 */
	_Atomic uint32_t ctl_ver;
	uint32_t reserved1;
	_Atomic uint64_t tail;
	_Atomic uint64_t next_seq;
	_Atomic uint64_t head;
	uint8_t pad1[32];
	/* line 2: what readers poll (state at every empty poll), written
	 * rarely, so it stays shared in their caches and never takes the
	 * writer's per-commit line 1 away from it */
	_Atomic uint64_t intent;
	_Atomic uint32_t state;
	uint8_t pad2[52];
};
_Static_assert(sizeof(struct ring_hdr) == 192, "ring header lines");

/* Reader table entry (16 B), written by the broker and the writer only:
 * | 0 | 4 | state | RT_FREE / RT_ATTACHED / RT_DETACHED |
 * | 4 | 4 | -     | 0                                   |
 * | 8 | 8 | gen   | attachment generation                |  */
enum { RT_FREE = 0, RT_ATTACHED = 1, RT_DETACHED = 2 };
struct ring_entry {
	_Atomic uint32_t state;
	uint32_t reserved;
	_Atomic uint64_t gen;
};
_Static_assert(sizeof(struct ring_entry) == 16, "table entry");

/*
 * Records start at every 32-aligned position; the commit word at offset 0
 * says which of two layouts follows. A long record (commit = pos | 1):
 *
 * | off | size | field       | notes                                    |
 * |-----|------|-------------|------------------------------------------|
 * | 0   | 8    | commit      | pos | 1 once committed (release store)   |
 * | 8   | 8    | seq         | message sequence, 1-based; 0 for PAD     |
 * | 16  | 4    | flags       | bits 0-1 qos, bit 2 retain, bit 31 PAD   |
 * | 20  | 4    | props_len   | MQTT 5 property bytes after the header   |
 * | 24  | 4    | payload_len | payload bytes after the properties       |
 * | 28  | 4    | rec_len     | bytes to the next record, multiple of 32 |
 *
 * A short record (commit = pos | 3) is exactly 32 bytes, two to a cache
 * line: no properties, a payload of at most 16 bytes, seq below 2^56.
 *
 * | off | size | field   | notes                                         |
 * |-----|------|---------|-----------------------------------------------|
 * | 0   | 8    | commit  | pos | 3 once committed (release store)        |
 * | 8   | 8    | meta    | bits 0-55 seq, 56-60 payload_len (<= 16),     |
 * |     |      |         | 61-62 qos, 63 retain                          |
 * | 16  | 16   | payload | payload_len bytes used                        |
 *
 * commit carries the record's own 64-bit stream position, so a header left
 * from an earlier lap (or payload bytes of a later one) never matches the
 * position a reader expects: no ABA.
 */
#define REC_HDR 32u
#define REC_COMMITTED 1ull
#define REC_C_SHORT 2ull /* commit bit: short layout */
#define REC_SHORT_HDR 16u
#define REC_SHORT_LEN 32u
#define REC_SHORT_MAX 16u /* payload bytes */
#define REC_M_SEQ ((1ull << 56) - 1)
#define REC_M_LEN_SHIFT 56
#define REC_M_LEN_MASK 0x1fu
#define REC_M_QOS_SHIFT 61
#define REC_M_RETAIN (1ull << 63)
#define REC_F_QOS 0x3u
#define REC_F_RETAIN 0x4u
#define REC_F_PAD 0x80000000u
#define REC_F_KNOWN (REC_F_QOS | REC_F_RETAIN | REC_F_PAD)
struct rec_hdr {
	_Atomic uint64_t commit;
	uint64_t seq;
	uint32_t flags;
	uint32_t props_len;
	uint32_t payload_len;
	uint32_t rec_len;
};
_Static_assert(sizeof(struct rec_hdr) == REC_HDR, "record header");
struct rec_short {
	_Atomic uint64_t commit;
	uint64_t meta;
};
_Static_assert(sizeof(struct rec_short) == REC_SHORT_HDR, "short header");

/*
 * Reader slot page (4 KiB, its own memfd), written by its reader only; the
 * writer maps it read-only for flow control. Fields on separate lines so
 * the position line moves only between this reader and the writer.
 *
 * | off | size | field        | notes                                |
 * |-----|------|--------------|--------------------------------------|
 * | 0   | 8    | magic        | "SHYYSLOT"                           |
 * | 8   | 8    | gen          | must equal the table entry's gen     |
 * | 16  | 4    | pid          | reader's pid (diagnostics)           |
 * | 64  | 8    | position     | next byte the reader will read       |
 * | 128 | 8    | heartbeat_ns | reader's CLOCK_MONOTONIC at last poll|
 * | 136 | 8    | lost         | messages lost so far (for $SYS)      |
 */
struct slot_page {
	uint64_t magic;
	_Atomic uint64_t gen;
	_Atomic uint32_t pid;
	uint8_t pad0[44];
	_Atomic uint64_t position;
	uint8_t pad1[56];
	_Atomic uint64_t heartbeat_ns;
	_Atomic uint64_t lost;
};

/* Single-fetch loads of plain fields in shared memory another process may
 * change under us: the compiler may not re-read them (no double fetch). */
#define SHM_LD(p) __atomic_load_n((p), __ATOMIC_RELAXED)
/* The writer's side of the same fields: readers may load them while they
 * are rewritten for a later lap (they validate after), so the stores are
 * atomic too (plain moves on x86-64 and aarch64). */
#define SHM_ST(p, v) __atomic_store_n((p), (v), __ATOMIC_RELAXED)

/* A validated view of a ring region, copied out of the header once, so
 * later header writes by a hostile writer change nothing we rely on. */
struct ring_view {
	const uint8_t *base; /* region start */
	uint8_t *data;       /* base + data_off */
	uint64_t cap, mask, lookahead;
	uint32_t max_record, readers_max, flags;
	struct ring_hdr *hdr;
	struct ring_entry *table;
};

/* Validates the header of a region of len bytes and fills *v. Returns 0 or
 * MQTT_ERR_MALFORMED. */
int ring_view_init(struct ring_view *v, const void *mem, size_t len);

/* Outcome of reading the record at pos. */
enum rec_rc {
	REC_OK = 1,      /* data record, *out filled, bounds checked */
	REC_PAD = 2,     /* padding to the end of the data area */
	REC_EMPTY = 0,   /* not committed yet */
	REC_LAPPED = -1, /* overwritten or about to be: resync */
	REC_BAD = -2,    /* malformed: header or lengths out of bounds */
};
struct rec_view {
	uint64_t seq;
	uint32_t flags, props_len, payload_len, rec_len;
	const uint8_t *props, *payload;
};

/* The message of record rv at pos, as borrow/receive/claim return it;
 * msg->lost is the caller's. Inline: on the reader's per-record path. */
static inline void ring_msg_from_rec(shimmy_ring_msg *msg,
				     const struct rec_view *rv, uint64_t pos)
{
	msg->props = rv->props;
	msg->payload = rv->payload;
	msg->props_len = rv->props_len;
	msg->payload_len = rv->payload_len;
	msg->flags = rv->flags & (SHIMMY_MSG_QOS_MASK | SHIMMY_MSG_RETAIN);
	msg->seq = rv->seq;
	msg->pos = pos;
	msg->rec_len = rv->rec_len;
}

/* Reads and bounds-checks the header at pos (acquire on commit). Does not
 * check for overwrite after the caller's copy: call ring_overrun(). */
int ring_rec_peek(const struct ring_view *v, uint64_t pos, struct rec_view *out);

/* After reading a record at pos: 1 if the writer may have overwritten any
 * of it (acquire fence, then intent). */
int ring_overrun(const struct ring_view *v, uint64_t pos);

/* Where a lapped reader resumes: head if usable, else tail; never below
 * from. Returns MQTT_ERR_MALFORMED if the writer's control words make no
 * sense. */
int ring_resync_pos(const struct ring_view *v, uint64_t from, uint64_t *pos);

#endif

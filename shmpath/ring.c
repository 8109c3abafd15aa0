/*
 * shmpath/ring.c — SPMC broadcast log over caller-provided shared memory.
 * Thread model: see ring.h. Layouts: ring_int.h and docs/shm-protocol.md.
 *
 * Validation of a record a reader is looking at is a seqlock in disguise:
 * the writer raises intent (release store + release fence) before it
 * writes any byte of a region, and commits each record with a release
 * store of a commit word holding the record's own position. A reader
 * acquire-loads the commit word, copies, issues an acquire fence and
 * reloads intent: if intent - pos > cap the writer may have overwritten
 * what it read, and the reader discards it as lapped. Payload bytes are
 * read and written with memcpy, not atomics, as in every seqlock in
 * practice (Linux, Aeron); the protocol decides validity, never the bytes.
 */
#include "shmpath/ring.h"

#include <errno.h>
#include <stdbool.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "mqtt/error.h"
#include "shmpath/ring_int.h"
#include "shmpath/spin_int.h"

/* Records a reader walks per call (pads, resyncs) before it gives up and
 * returns 0: bounds the work a hostile writer can cause. */
#define READ_STEPS 8
/* Tries of the attach-time seqlock before falling back to an unknown seq. */
#define ATTACH_TRIES 1000
#define SPIN_BEFORE_YIELD 256
/* Bytes ahead of the tail the writer prefetches for writing: far enough
 * that a reader close behind the writer (and its hardware prefetcher) is
 * not reading those lines yet (1024 measured ~10% slower one by one). */
#define WRITE_AHEAD 4096u
/* A short record fills one alignment unit: it never needs a pad. */
_Static_assert(REC_SHORT_LEN == RING_ALIGN, "short record size");
/* Bytes ahead of a batch borrow the reader prefetches. */
#define READ_AHEAD 512u
/* Empty polls between two heartbeat updates (power of two). */
#define HEARTBEAT_POLLS 256u


static inline uint64_t align_up(uint64_t x)
{
	return (x + RING_ALIGN - 1) & ~(uint64_t)(RING_ALIGN - 1);
}

/* Fetches the line at p for writing (exclusive). x86's __builtin_prefetch
 * only emits PREFETCHW with -mprfchw (otherwise a read prefetch, which
 * leaves the RFO to the store); the instruction itself is a NOP on cores
 * without it. */
static inline void prefetch_write(const void *p)
{
#if defined(__x86_64__)
	__asm__ volatile("prefetchw %0" : : "m"(*(const char *)p));
#else
	__builtin_prefetch(p, 1, 3);
#endif
}

static inline struct rec_hdr *rec_at(const struct ring_view *v, uint64_t pos)
{
	return (struct rec_hdr *)(void *)(v->data + (pos & v->mask));
}

/* ---- validated view ------------------------------------------------- */

int ring_view_init(struct ring_view *v, const void *mem, size_t len)
{
	const struct ring_hdr *h = mem;
	uint64_t data_off, cap, la;
	uint32_t align, maxrec, nread, toff, flags;

	if (!mem || ((uintptr_t)mem & (RING_ALIGN - 1)) ||
	    len < RING_HDR_SIZE + 4096u)
		return MQTT_ERR_MALFORMED;
	if (SHM_LD(&h->magic) != RING_MAGIC ||
	    SHM_LD(&h->version) != RING_VERSION)
		return MQTT_ERR_MALFORMED;
	flags = SHM_LD(&h->flags);
	data_off = SHM_LD(&h->data_off);
	cap = SHM_LD(&h->data_cap);
	align = SHM_LD(&h->align);
	maxrec = SHM_LD(&h->max_record);
	nread = SHM_LD(&h->readers_max);
	toff = SHM_LD(&h->table_off);
	la = SHM_LD(&h->lookahead);
	if ((flags & ~RING_F_RELIABLE) || data_off != RING_HDR_SIZE ||
	    cap < 4096u || (cap & (cap - 1)) || cap > len - data_off ||
	    align != RING_ALIGN || maxrec < RING_ALIGN ||
	    maxrec % RING_ALIGN || maxrec > cap / 4 || nread == 0 ||
	    nread > RING_TABLE_MAX || toff != RING_TABLE_OFF ||
	    la != cap / 16)
		return MQTT_ERR_MALFORMED;
	v->base = mem;
	v->data = (uint8_t *)(uintptr_t)mem + data_off;
	v->cap = cap;
	v->mask = cap - 1;
	v->lookahead = la;
	v->max_record = maxrec;
	v->readers_max = nread;
	v->flags = flags;
	v->hdr = (struct ring_hdr *)(uintptr_t)mem;
	v->table = (struct ring_entry *)((uintptr_t)mem + toff);
	return 0;
}

static inline int lapped_at(const struct ring_view *v, uint64_t intent,
			    uint64_t pos)
{
	return intent > pos && intent - pos > v->cap;
}

int ring_overrun(const struct ring_view *v, uint64_t pos)
{
	/* Acquire fence after our reads of the record, pairing with the
	 * release fence in advance_intent(): if we read any byte the writer
	 * wrote for a later lap, the intent load below sees the raise that
	 * preceded that write. */
	atomic_thread_fence(memory_order_acquire);
	return lapped_at(v, atomic_load_explicit(&v->hdr->intent,
						 memory_order_relaxed), pos);
}

int ring_rec_peek(const struct ring_view *v, uint64_t pos, struct rec_view *out)
{
	const struct rec_hdr *h = rec_at(v, pos);
	const struct rec_short *sh = (const void *)h;
	uint64_t idx = pos & v->mask, c, need, meta;
	uint32_t flags, plen, ylen, rlen;

	/* Acquire pairs with the release store of commit in commit_rec() or
	 * commit_short(): the header fields and bytes of this record are
	 * visible. */
	c = atomic_load_explicit(&((struct rec_hdr *)(uintptr_t)h)->commit,
				 memory_order_acquire);
	if (c == (pos | REC_COMMITTED | REC_C_SHORT)) {
		/* Short record: 32 bytes from a 32-aligned index, so always
		 * inside the data area; only meta needs checking. */
		meta = SHM_LD(&sh->meta);
		ylen = (uint32_t)(meta >> REC_M_LEN_SHIFT) & REC_M_LEN_MASK;
		flags = (uint32_t)(meta >> REC_M_QOS_SHIFT) & REC_F_QOS;
		if (meta & REC_M_RETAIN)
			flags |= REC_F_RETAIN;
		out->seq = meta & REC_M_SEQ;
		if (ylen > REC_SHORT_MAX || flags == REC_F_QOS || out->seq == 0)
			goto bad;
		out->flags = flags;
		out->props_len = 0;
		out->payload_len = ylen;
		out->rec_len = REC_SHORT_LEN;
		out->props = (const uint8_t *)h + REC_SHORT_HDR;
		out->payload = out->props;
		return REC_OK;
	}
	if (c != (pos | REC_COMMITTED)) {
		/* Acquire pairs with the release store of intent: a lapped
		 * reader then sees head/tail/table as of that raise. */
		uint64_t it = atomic_load_explicit(&v->hdr->intent,
						   memory_order_acquire);
		return lapped_at(v, it, pos) ? REC_LAPPED : REC_EMPTY;
	}
	out->seq = SHM_LD(&h->seq);
	flags = SHM_LD(&h->flags);
	plen = SHM_LD(&h->props_len);
	ylen = SHM_LD(&h->payload_len);
	rlen = SHM_LD(&h->rec_len);
	if (rlen < RING_ALIGN || rlen % RING_ALIGN || rlen > v->cap - idx)
		goto bad;
	if (flags & REC_F_PAD) {
		if (flags != REC_F_PAD || idx + rlen != v->cap)
			goto bad;
		out->rec_len = rlen;
		return REC_PAD;
	}
	need = (uint64_t)REC_HDR + plen + ylen;
	if ((flags & ~REC_F_KNOWN) || (flags & REC_F_QOS) == REC_F_QOS ||
	    rlen > v->max_record || need > rlen || out->seq == 0)
		goto bad;
	out->flags = flags;
	out->props_len = plen;
	out->payload_len = ylen;
	out->rec_len = rlen;
	out->props = (const uint8_t *)h + REC_HDR;
	out->payload = out->props + plen;
	return REC_OK;
bad:
	/* A torn header from a concurrent overwrite is a lap, not malice. */
	return ring_overrun(v, pos) ? REC_LAPPED : REC_BAD;
}

int ring_resync_pos(const struct ring_view *v, uint64_t from, uint64_t *pos)
{
	/* Acquire pairs with the writer's stores of head (release in
	 * advance_intent) and tail (release in commit_rec); each candidate is
	 * validated again through its commit word before use. */
	uint64_t head = atomic_load_explicit(&v->hdr->head, memory_order_acquire);
	uint64_t tail = atomic_load_explicit(&v->hdr->tail, memory_order_acquire);
	uint64_t it = atomic_load_explicit(&v->hdr->intent, memory_order_acquire);

	if ((head | tail) & (RING_ALIGN - 1))
		return MQTT_ERR_MALFORMED;
	if (head > from && head <= tail && !lapped_at(v, it, head)) {
		*pos = head;
		return 0;
	}
	if (tail > from) {
		*pos = tail;
		return 0;
	}
	return MQTT_ERR_MALFORMED;
}

/* ---- broker-side formatting ----------------------------------------- */

size_t shimmy_ring_region_size(size_t cap)
{
	return RING_HDR_SIZE + cap;
}

int shimmy_ring_format(void *mem, size_t len, const shimmy_ring_params *p)
{
	struct ring_hdr *h = mem;
	uint64_t cap = 4096;
	uint32_t nread = p && p->readers_max ? p->readers_max : SHIMMY_RING_READERS;
	uint32_t maxrec;

	if (!mem || ((uintptr_t)mem & 4095) || len < RING_HDR_SIZE + 4096u ||
	    nread > RING_TABLE_MAX || (p && (p->flags & ~SHIMMY_RING_RELIABLE)))
		return MQTT_ERR_INVALID;
	while (cap * 2 <= len - RING_HDR_SIZE && cap * 2 <= (1ull << 40))
		cap *= 2;
	maxrec = cap / 4 > UINT32_MAX ? UINT32_MAX & ~(RING_ALIGN - 1)
				      : (uint32_t)(cap / 4);
	if (p && p->max_record) {
		if (align_up(p->max_record) > maxrec)
			return MQTT_ERR_INVALID;
		maxrec = (uint32_t)align_up(p->max_record);
	}
	memset(h, 0, RING_HDR_SIZE);
	h->magic = RING_MAGIC;
	h->version = RING_VERSION;
	h->flags = p && (p->flags & SHIMMY_RING_RELIABLE) ? RING_F_RELIABLE : 0;
	h->data_off = RING_HDR_SIZE;
	h->data_cap = cap;
	h->align = RING_ALIGN;
	h->max_record = maxrec;
	h->readers_max = nread;
	h->table_off = RING_TABLE_OFF;
	h->lookahead = cap / 16;
	h->log_id = p ? p->log_id : 0;
	atomic_store_explicit(&h->next_seq, 1, memory_order_relaxed);
	return 0;
}

int shimmy_ring_slot_set(void *mem, size_t len, uint32_t idx, uint32_t state,
			 uint64_t gen)
{
	struct ring_view v;
	int rc = ring_view_init(&v, mem, len);

	if (rc)
		return rc;
	if (idx >= v.readers_max || state > RT_DETACHED)
		return MQTT_ERR_INVALID;
	atomic_store_explicit(&v.table[idx].gen, gen, memory_order_relaxed);
	/* Release pairs with the writer's acquire load of state in
	 * scan_readers(): it then reads this entry's gen. */
	atomic_store_explicit(&v.table[idx].state, state, memory_order_release);
	return 0;
}

int shimmy_ring_slot_format(void *slot, size_t len)
{
	struct slot_page *s = slot;

	if (!slot || len < SHIMMY_RING_SLOT_SIZE || ((uintptr_t)slot & 63))
		return MQTT_ERR_INVALID;
	memset(slot, 0, SHIMMY_RING_SLOT_SIZE);
	s->magic = SLOT_MAGIC;
	return 0;
}

uint64_t shimmy_ring_slot_lost(const void *slot, size_t len)
{
	const struct slot_page *s = slot;

	if (!slot || len < SHIMMY_RING_SLOT_SIZE || ((uintptr_t)slot & 63))
		return 0;
	return atomic_load_explicit(&s->lost, memory_order_relaxed);
}

uint64_t shimmy_ring_record_len(uint32_t props_len, uint32_t payload_len)
{
	return align_up((uint64_t)REC_HDR + props_len + payload_len);
}

int shimmy_ring_mark_closed(void *mem, size_t len)
{
	struct ring_view v;
	int rc = ring_view_init(&v, mem, len);

	if (rc)
		return rc;
	/* Release pairs with the reader's acquire load in reader_empty(). */
	atomic_fetch_or_explicit(&v.hdr->state, RING_S_CLOSED,
				 memory_order_release);
	return 0;
}

/* ---- writer ---------------------------------------------------------- */

struct wr_track {
	const struct slot_page *slot; /* NULL when untracked */
	uint64_t gen;                 /* the attachment READER_ADD named */
	shimmy_bell *bell;
};

/* Invariants: head <= tail <= intent; intent - head <= cap; tail, head and
 * intent are multiples of RING_ALIGN; min_cache <= every attached reader's
 * position (a lower bound, never stale upward). */
struct shimmy_ring_writer {
	struct ring_view v;
	uint64_t tail, next_seq, head, intent;
	uint64_t short_since;   /* every record from here on is short */
	uint64_t min_cache;
	uint64_t pend_pos;
	uint32_t pend_rec;
	unsigned pending;       /* records on loan, from pend_pos, pend_rec each */
	int pend_short;         /* they are short records */
	int reliable;
	int fenceless;          /* shimmy_bell_fenceless() */
	unsigned nbells;
	shimmy_bell **bells;    /* [nbells]: the tracked bells, compact */
	struct wr_track tr[];
};

static int writer_check(const shimmy_ring_writer *w)
{
	return w->head <= w->tail && w->tail <= w->intent &&
	       w->intent - w->head <= w->v.cap &&
	       ((w->head | w->tail | w->intent) & (RING_ALIGN - 1)) == 0;
}

int shimmy_ring_writer_create(shimmy_ring_writer **out, void *mem, size_t len)
{
	struct ring_view v;
	shimmy_ring_writer *w;
	int rc = ring_view_init(&v, mem, len);

	if (rc)
		return rc;
	w = calloc(1, sizeof(*w) + v.readers_max * sizeof(w->tr[0]) +
			      v.readers_max * sizeof(shimmy_bell *));
	if (!w)
		return MQTT_ERR_NOMEM;
	w->bells = (shimmy_bell **)(void *)&w->tr[v.readers_max];
	w->fenceless = shimmy_bell_fenceless();
	w->v = v;
	w->reliable = !!(v.flags & RING_F_RELIABLE);
	w->tail = atomic_load_explicit(&v.hdr->tail, memory_order_relaxed);
	w->head = atomic_load_explicit(&v.hdr->head, memory_order_relaxed);
	w->intent = atomic_load_explicit(&v.hdr->intent, memory_order_relaxed);
	w->next_seq = atomic_load_explicit(&v.hdr->next_seq,
					   memory_order_relaxed);
	if (!writer_check(w) || w->next_seq == 0) {
		free(w);
		return MQTT_ERR_MALFORMED;
	}
	w->short_since = w->tail; /* what is already in the ring: unknown */
	*out = w;
	return 0;
}

void shimmy_ring_writer_destroy(shimmy_ring_writer *w)
{
	free(w);
}

int shimmy_ring_writer_track(shimmy_ring_writer *w, uint32_t idx,
			     uint64_t gen, const void *slot, size_t slot_len,
			     shimmy_bell *bell)
{
	if (idx >= w->v.readers_max || !slot ||
	    slot_len < SHIMMY_RING_SLOT_SIZE || ((uintptr_t)slot & 63))
		return MQTT_ERR_INVALID;
	shimmy_ring_writer_untrack(w, idx);
	w->tr[idx].slot = slot;
	w->tr[idx].gen = gen;
	w->tr[idx].bell = bell;
	if (bell)
		w->bells[w->nbells++] = bell;
	w->min_cache = 0; /* a new reader may be behind: rescan */
	return 0;
}

void shimmy_ring_writer_untrack(shimmy_ring_writer *w, uint32_t idx)
{
	if (idx >= w->v.readers_max || !w->tr[idx].slot)
		return;
	for (unsigned i = 0; w->tr[idx].bell && i < w->nbells; i++)
		if (w->bells[i] == w->tr[idx].bell) {
			w->bells[i] = w->bells[--w->nbells];
			break;
		}
	memset(&w->tr[idx], 0, sizeof(w->tr[idx]));
}

/* Position of tracked reader i if it is attached, under the gen we track
 * it with, and holds the writer back, else UINT64_MAX. */
static uint64_t reader_pos(shimmy_ring_writer *w, uint32_t i)
{
	const struct ring_entry *e = &w->v.table[i];
	const struct slot_page *s = w->tr[i].slot;
	uint64_t p, gen;

	if (!s)
		return UINT64_MAX;
	/* Acquire pairs with the release store of state in slot_set(). */
	if (atomic_load_explicit(&e->state, memory_order_acquire) != RT_ATTACHED)
		return UINT64_MAX;
	gen = atomic_load_explicit(&e->gen, memory_order_relaxed);
	/* Acquire pairs with the reader's release store of gen in
	 * reader_create() (or the broker's in tether_seed()): its start
	 * position is stored before gen. A slot showing another gen is a
	 * liar or not seeded yet (lossy logs): it holds nobody back. */
	if (gen != w->tr[i].gen ||
	    atomic_load_explicit(&s->gen, memory_order_acquire) != gen)
		return UINT64_MAX;
	/* Acquire pairs with the reader's release store in publish_pos(): the
	 * reader's loads of everything below p are done before we overwrite
	 * it. */
	p = atomic_load_explicit(&s->position, memory_order_acquire);
	/* A reader claiming to be ahead of us only hurts itself. */
	return p > w->tail ? w->tail : p;
}

/* 1 when table entry i is ATTACHED under a gen we do not track it with:
 * a reader the broker attached whose READER_ADD we have not processed. */
static int reader_unseen(const shimmy_ring_writer *w, uint32_t i)
{
	const struct ring_entry *e = &w->v.table[i];

	/* Acquire pairs with the release store of state in slot_set(),
	 * which publishes the gen stored before it. */
	return atomic_load_explicit(&e->state, memory_order_acquire) ==
		       RT_ATTACHED &&
	       (!w->tr[i].slot ||
		atomic_load_explicit(&e->gen, memory_order_relaxed) !=
			w->tr[i].gen);
}

/* The lowest position of an attached reader, at most tail. Bounded:
 * readers_max (<= 192) table entries, written by the broker and us. */
static uint64_t scan_readers(shimmy_ring_writer *w)
{
	uint64_t min = w->tail, p;

	for (uint32_t i = 0; i < w->v.readers_max; i++) {
		if (reader_unseen(w, i)) {
			/* Its slot was seeded at the head or tail before the
			 * entry became ATTACHED, so it is at or past our head
			 * unless we lapped it before we could see it: give up
			 * nothing more until we track it (docs §6). */
			if (w->head < min)
				min = w->head;
			continue;
		}
		if (!w->tr[i].slot)
			continue;
		p = reader_pos(w, i);
		if (p == UINT64_MAX)
			continue;
		if (p < min)
			min = p;
	}
	return min;
}

/* Reliable mode: waits until every attached reader is at or past req. */
static int wait_space(shimmy_ring_writer *w, uint64_t req, int64_t timeout_ns)
{
	int64_t start = 0, now;
	unsigned n = 0;

	if (w->min_cache >= req)
		return 0;
	/* Readers may be asleep on commits we made with NOWAKE; they cannot
	 * free space for us unless woken. */
	shimmy_ring_wake(w);
	for (;;) {
		now = now_ns();
		if (!start)
			start = now;
		w->min_cache = scan_readers(w);
		if (w->min_cache >= req)
			return 0;
		if (timeout_ns <= 0)
			return -EAGAIN;
		if (now - start >= timeout_ns)
			return -ETIMEDOUT;
		if (++n < SPIN_BEFORE_YIELD)
			cpu_relax();
		else
			sched_yield();
	}
}

/* Raises intent so that [.., end) may be written, and moves head past the
 * records that the raise gives up. */
static void advance_intent(shimmy_ring_writer *w, uint64_t end)
{
	struct ring_view *v = &w->v;
	uint64_t ni, lim, idx;
	uint32_t rl;

	if (end <= w->intent)
		return;
	ni = end + v->lookahead;
	w->intent = ni;
	/* Release: a reader whose acquire load sees this intent also sees the
	 * table entries (detach) and control words stored before it. */
	atomic_store_explicit(&v->hdr->intent, ni, memory_order_release);
	/* Seqlock writer fence: the intent store above is ordered before the
	 * record bytes written after this point; pairs with the acquire fence
	 * in ring_overrun(). */
	atomic_thread_fence(memory_order_release);
	lim = ni > v->cap ? ni - v->cap : 0;
	while (w->head < lim && w->head < w->tail) {
		const struct rec_hdr *h;

		if (w->head >= w->short_since) {
			/* Short records only from here: every RING_ALIGN
			 * position is one's start, no need to read them. */
			w->head = align_up(lim);
			break;
		}
		h = rec_at(v, w->head);
		idx = w->head & v->mask;
		if (atomic_load_explicit(&h->commit, memory_order_relaxed) ==
		    (w->head | REC_COMMITTED | REC_C_SHORT))
			rl = REC_SHORT_LEN;
		else
			rl = SHM_LD(&h->rec_len);
		if (rl < RING_ALIGN || rl % RING_ALIGN || rl > v->cap - idx) {
			w->head = w->tail; /* our own log was corrupted */
			break;
		}
		w->head += rl;
	}
	if (w->head > w->tail)
		w->head = w->tail;
	/* Release pairs with the acquire load in ring_resync_pos(); readers
	 * still validate the record at head through its commit word. */
	atomic_store_explicit(&v->hdr->head, w->head, memory_order_release);
}

/* Publishes tail and next_seq under the control seqlock (reader side:
 * reader_create). Writer-only cache line: cheap. */
static void publish_tail(shimmy_ring_writer *w)
{
	struct ring_hdr *h = w->v.hdr;
	uint32_t ver = atomic_load_explicit(&h->ctl_ver, memory_order_relaxed);

	atomic_store_explicit(&h->ctl_ver, ver + 1, memory_order_relaxed);
	/* Orders the odd ver before the field stores (seqlock writer). */
	atomic_thread_fence(memory_order_release);
	atomic_store_explicit(&h->next_seq, w->next_seq, memory_order_relaxed);
	/* Release pairs with the acquire load in ring_resync_pos(). */
	atomic_store_explicit(&h->tail, w->tail, memory_order_release);
	/* Release pairs with the acquire load of ctl_ver in reader_create():
	 * the even ver publishes the fields above. */
	atomic_store_explicit(&h->ctl_ver, ver + 2, memory_order_release);
}

static void commit_rec(shimmy_ring_writer *w, uint64_t pos, uint64_t seq,
		       uint32_t flags, uint32_t plen, uint32_t ylen,
		       uint32_t rlen)
{
	struct rec_hdr *h = rec_at(&w->v, pos);

	SHM_ST(&h->seq, seq);
	SHM_ST(&h->flags, flags);
	SHM_ST(&h->props_len, plen);
	SHM_ST(&h->payload_len, ylen);
	SHM_ST(&h->rec_len, rlen);
	/* Release pairs with the acquire load of commit in ring_rec_peek():
	 * publishes the header fields above and the record's bytes. */
	atomic_store_explicit(&h->commit, pos | REC_COMMITTED,
			      memory_order_release);
}

/* seq < 2^56, ylen <= REC_SHORT_MAX, flags: qos and retain only. */
static void commit_short(shimmy_ring_writer *w, uint64_t pos, uint64_t seq,
			 uint32_t flags, uint32_t ylen)
{
	struct rec_short *h = (struct rec_short *)(void *)rec_at(&w->v, pos);

	SHM_ST(&h->meta, seq | (uint64_t)ylen << REC_M_LEN_SHIFT |
				 (uint64_t)(flags & REC_F_QOS) << REC_M_QOS_SHIFT |
				 (flags & REC_F_RETAIN ? REC_M_RETAIN : 0));
	/* Release pairs with the acquire load of commit in ring_rec_peek():
	 * publishes meta and the payload bytes. */
	atomic_store_explicit(&h->commit, pos | REC_COMMITTED | REC_C_SHORT,
			      memory_order_release);
}

/* Lends [start, start + rec) and asks for ownership of the line a few
 * records ahead now, so that the read-for-ownership of lines readers
 * still hold overlaps with our work instead of stalling the stores of a
 * later record. */
static inline void lend(shimmy_ring_writer *w, uint64_t start, uint64_t rec,
			uint32_t props_len, uint32_t payload_len,
			shimmy_ring_loan *loan)
{
	struct ring_view *v = &w->v;
	uint8_t *p = v->data + (start & v->mask) +
		     (w->pend_short ? REC_SHORT_HDR : REC_HDR);

	prefetch_write(v->data + ((start + WRITE_AHEAD) & v->mask));
	*loan = (shimmy_ring_loan){ .props = p, .payload = p + props_len,
				    .props_len = props_len,
				    .payload_len = payload_len,
				    .seq = w->next_seq, .pos = start };
	w->pend_pos = start;
	w->pend_rec = (uint32_t)rec;
	w->pending = 1;
}

/* shimmy_ring_reserve() past intent, or of a long record: waits for room
 * (reliable), raises intent and pads to the ring's end if needed. Kept
 * out of line so that the common case stays a few instructions. */
static __attribute__((noinline)) int
reserve_slow(shimmy_ring_writer *w, uint32_t props_len, uint32_t payload_len,
	     int64_t timeout_ns, shimmy_ring_loan *loan)
{
	struct ring_view *v = &w->v;
	uint64_t need = (uint64_t)REC_HDR + props_len + payload_len;
	uint64_t rec, idx, pad, start, end;
	int rc;

	rec = w->pend_short ? REC_SHORT_LEN : align_up(need);
	if (rec > v->max_record)
		return MQTT_ERR_TOO_LARGE;
	idx = w->tail & v->mask;
	pad = v->cap - idx < rec ? v->cap - idx : 0;
	start = w->tail + pad;
	end = start + rec;
	/* A long record (and its pad, only long records need one) ends the
	 * run of short ones the head may skip over without reading. */
	if (!w->pend_short)
		w->short_since = end;
	if (w->reliable && end > w->intent) {
		uint64_t ni = end + v->lookahead;

		rc = wait_space(w, ni > v->cap ? ni - v->cap : 0, timeout_ns);
		if (rc)
			return rc;
	}
	advance_intent(w, end);
	if (pad) {
		commit_rec(w, w->tail, 0, REC_F_PAD, 0, 0, (uint32_t)pad);
		w->tail = start;
		publish_tail(w);
	}
	lend(w, start, rec, props_len, payload_len, loan);
	return 0;
}

int shimmy_ring_reserve(shimmy_ring_writer *w, uint32_t props_len,
			uint32_t payload_len, int64_t timeout_ns,
			shimmy_ring_loan *loan)
{
	if (w->pending)
		return -EBUSY;
	/* Small messages take the 32-byte short layout: two per line. */
	w->pend_short = props_len == 0 && payload_len <= REC_SHORT_MAX &&
			w->next_seq <= REC_M_SEQ;
	/* The common case: a short record inside the current intent. It
	 * needs no pad (tail and cap are multiples of RING_ALIGN =
	 * REC_SHORT_LEN), no wait (a reliable writer made room up to intent
	 * when it raised it) and no intent raise. */
	if (w->pend_short && w->tail + REC_SHORT_LEN <= w->intent) {
		lend(w, w->tail, REC_SHORT_LEN, 0, payload_len, loan);
		return 0;
	}
	return reserve_slow(w, props_len, payload_len, timeout_ns, loan);
}

void shimmy_ring_wake(shimmy_ring_writer *w)
{
	if (!w->nbells)
		return;
	/* One seq_cst fence for all bells: the notifier half of the Dekker
	 * pair in notify.c, ordering our commits before the waiters loads.
	 * Registered for membarrier, the sleepers' arm() supplies that
	 * barrier instead; the compiler barrier keeps the commit stores in
	 * program order before the loads. */
	if (w->fenceless)
		atomic_signal_fence(memory_order_seq_cst);
	else
		atomic_thread_fence(memory_order_seq_cst);
	for (unsigned i = 0; i < w->nbells; i++)
		shimmy_bell_notify(w->bells[i], SHIMMY_BELL_FENCED);
}

int shimmy_ring_reserve_many(shimmy_ring_writer *w, uint32_t props_len,
			     uint32_t payload_len, unsigned n,
			     int64_t timeout_ns, shimmy_ring_loan *loans)
{
	struct ring_view *v = &w->v;
	uint64_t pos, idx;
	unsigned k = 1;
	uint8_t *p;
	int rc;

	if (n == 0)
		return MQTT_ERR_INVALID;
	rc = shimmy_ring_reserve(w, props_len, payload_len, timeout_ns,
				 &loans[0]);
	if (rc)
		return rc;
	/* The others follow the first directly, in its layout: they stop
	 * where a pad would be needed, where a short seq would overflow,
	 * and, for a reliable writer, at intent (no second wait). */
	pos = loans[0].pos + w->pend_rec;
	for (; k < n; k++, pos += w->pend_rec) {
		idx = pos & v->mask;
		if (v->cap - idx < w->pend_rec ||
		    (w->pend_short && loans[0].seq + k > REC_M_SEQ) ||
		    (w->reliable && pos + w->pend_rec > w->intent))
			break;
		advance_intent(w, pos + w->pend_rec);
		prefetch_write(v->data + ((pos + WRITE_AHEAD) & v->mask));
		p = v->data + idx + (w->pend_short ? REC_SHORT_HDR : REC_HDR);
		loans[k].props = p;
		loans[k].payload = p + props_len;
		loans[k].props_len = props_len;
		loans[k].payload_len = payload_len;
		loans[k].seq = loans[0].seq + k;
		loans[k].pos = pos;
	}
	w->pending = k;
	if (!w->pend_short) /* the run of short records starts past them all */
		w->short_since = loans[0].pos + (uint64_t)k * w->pend_rec;
	return (int)k;
}

/* What a record may carry: a QoS of 0..2 and retain. */
static bool msg_flags_ok(uint32_t msg_flags)
{
	return !(msg_flags & ~(uint32_t)(SHIMMY_MSG_QOS_MASK | SHIMMY_MSG_RETAIN)) &&
	       (msg_flags & SHIMMY_MSG_QOS_MASK) != SHIMMY_MSG_QOS_MASK;
}

/* Commits the loaned record at pos as seq, in the layout of the loan. */
static inline void commit_loan(shimmy_ring_writer *w, uint64_t pos,
			       uint64_t seq, uint32_t msg_flags,
			       const shimmy_ring_loan *loan)
{
	if (w->pend_short)
		commit_short(w, pos, seq, msg_flags, loan->payload_len);
	else
		commit_rec(w, pos, seq, msg_flags, loan->props_len,
			   loan->payload_len, w->pend_rec);
}

/* After n commits ending at tail: tail, next_seq and the bells, once. */
static inline void commit_end(shimmy_ring_writer *w, uint64_t tail,
			      unsigned n, unsigned flags)
{
	w->pending = 0;
	w->tail = tail;
	w->next_seq += n;
	publish_tail(w);
	if (!(flags & SHIMMY_RING_NOWAKE))
		shimmy_ring_wake(w);
}

int shimmy_ring_commit_many(shimmy_ring_writer *w, shimmy_ring_loan *loans,
			    unsigned n, uint32_t msg_flags, unsigned flags)
{
	uint64_t pos = w->pend_pos;

	if (!n || w->pending != n || loans[0].pos != pos || !msg_flags_ok(msg_flags))
		return MQTT_ERR_INVALID;
	/* One release store of a commit word per record, in order. */
	for (unsigned i = 0; i < n; i++, pos += w->pend_rec)
		commit_loan(w, pos, w->next_seq + i, msg_flags, &loans[i]);
	commit_end(w, pos, n, flags);
	return 0;
}

int shimmy_ring_commit(shimmy_ring_writer *w, shimmy_ring_loan *loan,
		       uint32_t msg_flags, unsigned flags)
{
	uint64_t pos = w->pend_pos;

	/* shimmy_ring_commit_many() for one record, without its loop. */
	if (w->pending != 1 || loan->pos != pos || !msg_flags_ok(msg_flags))
		return MQTT_ERR_INVALID;
	commit_loan(w, pos, w->next_seq, msg_flags, loan);
	commit_end(w, pos + w->pend_rec, 1, flags);
	return 0;
}

void shimmy_ring_abort(shimmy_ring_writer *w, shimmy_ring_loan *loan)
{
	if (w->pending && loan->pos == w->pend_pos)
		w->pending = 0;
}

int shimmy_ring_publish(shimmy_ring_writer *w, const void *props,
			uint32_t props_len, const void *payload,
			uint32_t payload_len, uint32_t msg_flags,
			int64_t timeout_ns, unsigned flags)
{
	shimmy_ring_loan loan;
	int rc = shimmy_ring_reserve(w, props_len, payload_len, timeout_ns,
				     &loan);

	if (rc)
		return rc;
	if (props_len)
		memcpy(loan.props, props, props_len);
	if (payload_len)
		memcpy(loan.payload, payload, payload_len);
	rc = shimmy_ring_commit(w, &loan, msg_flags, flags);
	if (rc)
		shimmy_ring_abort(w, &loan);
	return rc;
}

int shimmy_ring_writer_detach(shimmy_ring_writer *w, uint32_t idx)
{
	if (idx >= w->v.readers_max)
		return MQTT_ERR_INVALID;
	/* Release; readers are also ordered by the next intent raise, whose
	 * release store follows this one. */
	atomic_store_explicit(&w->v.table[idx].state, RT_DETACHED,
			      memory_order_release);
	w->min_cache = 0;
	return 0;
}

void shimmy_ring_writer_close(shimmy_ring_writer *w)
{
	/* Release pairs with the reader's acquire load in reader_empty(): all
	 * commits are visible to a reader that sees CLOSED. */
	atomic_fetch_or_explicit(&w->v.hdr->state, RING_S_CLOSED,
				 memory_order_release);
	shimmy_ring_wake(w);
}

/* ---- reader ---------------------------------------------------------- */

/* Invariants: pos is a multiple of RING_ALIGN; next_seq is 0 (unknown) or
 * the seq the next data record should carry; borrowed = n > 0 => the n
 * records in [pos, borrow_end) are out on loan. */
struct shimmy_ring_reader {
	struct ring_view v;
	struct slot_page *slot;
	uint64_t gen;
	uint64_t pos, next_seq;
	uint64_t lost_total, lost_pending;
	uint32_t idx;
	uint64_t borrow_end; /* end of the records on loan */
	uint32_t batch, unpub; /* publish position every batch advances */
	uint32_t empty_polls;  /* heartbeat every HEARTBEAT_POLLS of them */
	uint64_t horizon;      /* read nothing at or past it (UINT64_MAX:
				* unbounded) */
	int reliable;
	unsigned borrowed;   /* records on loan */
};

static void publish_pos(shimmy_ring_reader *r)
{
	/* Release pairs with the writer's acquire load in reader_pos(): our
	 * reads of everything below pos happen before it overwrites it. */
	atomic_store_explicit(&r->slot->position, r->pos, memory_order_release);
	r->unpub = 0;
}

/* After consuming a record: publishes the position every r->batch. */
static inline void advance_pos(shimmy_ring_reader *r, uint32_t n)
{
	r->unpub += n;
	if (r->unpub >= r->batch)
		publish_pos(r);
}

void shimmy_ring_reader_set_batch(shimmy_ring_reader *r, uint32_t n)
{
	r->batch = n ? n : 1;
	if (r->unpub)
		publish_pos(r);
}

void shimmy_ring_reader_sync(shimmy_ring_reader *r)
{
	if (r->unpub)
		publish_pos(r);
}

int shimmy_ring_reader_create(shimmy_ring_reader **out, const void *mem,
			      size_t len, void *slot, size_t slot_len,
			      uint32_t idx, uint64_t gen, unsigned flags)
{
	struct ring_view v;
	shimmy_ring_reader *r;
	struct slot_page *s = slot;
	uint64_t pos = 0, seq = 0;
	uint32_t v1, v2;
	int rc = ring_view_init(&v, mem, len), i;

	if (rc)
		return rc;
	if (!slot || slot_len < SHIMMY_RING_SLOT_SIZE || ((uintptr_t)slot & 63) ||
	    idx >= v.readers_max || s->magic != SLOT_MAGIC ||
	    (flags & ~(unsigned)SHIMMY_RING_FROM_HEAD))
		return MQTT_ERR_INVALID;
	if (flags & SHIMMY_RING_FROM_HEAD) {
		pos = atomic_load_explicit(&v.hdr->head, memory_order_acquire);
		/* Seeded at 0 for this attachment (shimmy_tether_seed(): the
		 * log was new, or not yet lapped, when the broker attached
		 * us): start there, where the first record (seq 1) went.
		 * Whatever the writer lapped before we came is then counted
		 * as lost when we resync, instead of starting blind at
		 * today's head. Acquire pairs with the seed's release of gen. */
		if (!(pos & (RING_ALIGN - 1)) &&
		    atomic_load_explicit(&s->gen, memory_order_acquire) == gen &&
		    atomic_load_explicit(&s->position, memory_order_relaxed) == 0) {
			pos = 0;
			seq = 1;
		}
	} else {
		for (i = 0; i < ATTACH_TRIES; i++) {
			/* Acquire pairs with the even ver release store in
			 * publish_tail(). */
			v1 = atomic_load_explicit(&v.hdr->ctl_ver,
						  memory_order_acquire);
			pos = atomic_load_explicit(&v.hdr->tail,
						   memory_order_relaxed);
			seq = atomic_load_explicit(&v.hdr->next_seq,
						   memory_order_relaxed);
			/* Seqlock reader fence: field loads before the
			 * re-check of ver; pairs with publish_tail()'s fence. */
			atomic_thread_fence(memory_order_acquire);
			v2 = atomic_load_explicit(&v.hdr->ctl_ver,
						  memory_order_relaxed);
			if (v1 == v2 && !(v1 & 1))
				break;
			cpu_relax();
		}
		if (i == ATTACH_TRIES)
			seq = 0;
	}
	if (pos & (RING_ALIGN - 1))
		return MQTT_ERR_MALFORMED;
	r = calloc(1, sizeof(*r));
	if (!r)
		return MQTT_ERR_NOMEM;
	r->v = v;
	r->slot = s;
	r->idx = idx;
	r->gen = gen;
	r->pos = pos;
	r->next_seq = seq;
	r->horizon = UINT64_MAX;
	r->batch = 1;
	r->reliable = !!(v.flags & RING_F_RELIABLE);
	atomic_store_explicit(&s->pid, (uint32_t)getpid(), memory_order_relaxed);
	atomic_store_explicit(&s->position, pos, memory_order_relaxed);
	atomic_store_explicit(&s->heartbeat_ns, (uint64_t)now_ns(),
			      memory_order_relaxed);
	/* Release pairs with the writer's acquire load of gen in
	 * reader_pos(): position is valid once gen matches. */
	atomic_store_explicit(&s->gen, gen, memory_order_release);
	*out = r;
	return 0;
}

void shimmy_ring_reader_destroy(shimmy_ring_reader *r)
{
	free(r);
}

static int reader_detached(const shimmy_ring_reader *r)
{
	const struct ring_entry *e = &r->v.table[r->idx];

	/* Acquire pairs with the release store in writer_detach()/slot_set. */
	return r->reliable &&
	       atomic_load_explicit(&e->state, memory_order_acquire) ==
		       RT_DETACHED &&
	       atomic_load_explicit(&e->gen, memory_order_relaxed) == r->gen;
}

static int reader_closed(const shimmy_ring_reader *r)
{
	/* Acquire pairs with the release RMW in writer_close()/mark_closed. */
	return atomic_load_explicit(&r->v.hdr->state, memory_order_acquire) &
	       RING_S_CLOSED;
}

/* Nothing committed at pos. */
static int reader_empty(shimmy_ring_reader *r)
{
	struct rec_view rv;

	if (r->unpub)
		publish_pos(r); /* caught up: let the writer see it */
	if (reader_detached(r))
		return -ENOLINK;
	if (reader_closed(r)) {
		/* Re-check after seeing CLOSED: the last commit may have
		 * landed between our peek and the state load. */
		if (ring_rec_peek(&r->v, r->pos, &rv) == REC_EMPTY)
			return -EPIPE;
		return 0;
	}
	/* A busy-polling reader would otherwise read the clock on every
	 * empty poll; the heartbeat is diagnostics, coarse is enough. */
	if ((r->empty_polls++ & (HEARTBEAT_POLLS - 1)) == 0)
		atomic_store_explicit(&r->slot->heartbeat_ns,
				      (uint64_t)now_ns(), memory_order_relaxed);
	return 0;
}

static int reader_lapped(shimmy_ring_reader *r)
{
	uint64_t np;

	if (reader_detached(r))
		return -ENOLINK;
	if (ring_resync_pos(&r->v, r->pos, &np))
		return MQTT_ERR_MALFORMED;
	r->pos = np;
	publish_pos(r);
	return 0;
}

static int reader_next(shimmy_ring_reader *r, shimmy_ring_msg *msg,
		       uint8_t *buf, size_t cap, int borrow)
{
	struct rec_view rv;
	uint64_t lost;
	int rc;

	if (r->borrowed)
		return -EBUSY;
	for (int step = 0; step < READ_STEPS; step++) {
		if (r->pos >= r->horizon)
			return 0;
		rc = ring_rec_peek(&r->v, r->pos, &rv);
		if (rc == REC_EMPTY)
			return reader_empty(r);
		if (rc == REC_BAD)
			return MQTT_ERR_MALFORMED;
		if (rc == REC_PAD) {
			if (ring_overrun(&r->v, r->pos))
				rc = REC_LAPPED;
			else {
				r->pos += rv.rec_len;
				advance_pos(r, 1);
				continue;
			}
		}
		if (rc == REC_LAPPED) {
			rc = reader_lapped(r);
			if (rc)
				return rc;
			continue;
		}
		if (!borrow) {
			if ((uint64_t)rv.props_len + rv.payload_len > cap) {
				msg->props_len = rv.props_len;
				msg->payload_len = rv.payload_len;
				return MQTT_ERR_NOSPACE;
			}
			memcpy(buf, rv.props, rv.props_len);
			memcpy(buf + rv.props_len, rv.payload, rv.payload_len);
			rv.props = buf;
			rv.payload = buf + rv.props_len;
		}
		if (ring_overrun(&r->v, r->pos)) {
			rc = reader_lapped(r);
			if (rc)
				return rc;
			continue;
		}
		if (r->next_seq && rv.seq < r->next_seq)
			return MQTT_ERR_MALFORMED; /* sequence went backwards */
		lost = r->next_seq ? rv.seq - r->next_seq : 0;
		r->lost_total += lost;
		msg->lost = r->lost_pending + lost;
		r->lost_pending = 0;
		r->next_seq = rv.seq + 1;
		ring_msg_from_rec(msg, &rv, r->pos);
		if (borrow) {
			r->borrowed = 1;
			r->borrow_end = r->pos + rv.rec_len;
		} else {
			r->pos += rv.rec_len;
			advance_pos(r, 1);
		}
		if (lost)
			atomic_store_explicit(&r->slot->lost, r->lost_total,
					      memory_order_relaxed);
		return 1;
	}
	return 0;
}

int shimmy_ring_borrow(shimmy_ring_reader *r, shimmy_ring_msg *msg)
{
	return reader_next(r, msg, NULL, 0, 1);
}

int shimmy_ring_receive(shimmy_ring_reader *r, shimmy_ring_msg *msg,
			void *buf, size_t cap)
{
	return reader_next(r, msg, buf, cap, 0);
}

int shimmy_ring_borrow_many(shimmy_ring_reader *r, shimmy_ring_msg *msgs,
			    unsigned max)
{
	struct rec_view rv;
	uint64_t pos;
	unsigned n = 1;
	int rc;

	if (max == 0)
		return MQTT_ERR_INVALID;
	/* The first record takes the general path (pads, laps, resyncs,
	 * loss accounting, empty and closed logs). */
	rc = reader_next(r, &msgs[0], NULL, 0, 1);
	if (rc != 1)
		return rc;
	/* Then only what follows it directly: committed data records whose
	 * seq runs on without a gap. Anything else (a pad, an empty or torn
	 * header, a jump) ends the batch and is the next call's business, so
	 * this loop needs no error paths. A record overrun after its peek is
	 * caught by the intent check in shimmy_ring_release_many(). */
	pos = r->borrow_end;
	while (n < max && pos < r->horizon &&
	       ring_rec_peek(&r->v, pos, &rv) == REC_OK &&
	       rv.seq == r->next_seq) {
		shimmy_ring_msg *m = &msgs[n++];

		/* Fetch lines ahead: each record's position depends on the
		 * one before it, so the hardware sees a chain of misses. */
		__builtin_prefetch(rec_at(&r->v, pos + READ_AHEAD), 0, 3);

		ring_msg_from_rec(m, &rv, pos);
		m->lost = 0;
		r->next_seq = rv.seq + 1;
		pos += rv.rec_len;
	}
	r->borrowed = n;
	r->borrow_end = pos;
	return (int)n;
}

int shimmy_ring_release_many(shimmy_ring_reader *r, const shimmy_ring_msg *msgs,
			     unsigned n)
{
	uint64_t it;
	unsigned stale = 0;

	if (!r->borrowed || n != r->borrowed || msgs[0].pos != r->pos)
		return MQTT_ERR_INVALID;
	/* One overrun test for the whole batch: acquire fence after our
	 * reads of the records, pairing with the release fence in
	 * advance_intent(), then intent. Positions grow, so the overrun
	 * records are a prefix. */
	atomic_thread_fence(memory_order_acquire);
	it = atomic_load_explicit(&r->v.hdr->intent, memory_order_relaxed);
	while (stale < n && lapped_at(&r->v, it, msgs[stale].pos))
		stale++;
	r->borrowed = 0;
	r->pos = r->borrow_end;
	advance_pos(r, n);
	if (stale) {
		r->lost_total += stale;
		r->lost_pending += stale;
		atomic_store_explicit(&r->slot->lost, r->lost_total,
				      memory_order_relaxed);
	}
	return (int)stale;
}

int shimmy_ring_release(shimmy_ring_reader *r, const shimmy_ring_msg *msg)
{
	int rc;

	if (r->borrowed != 1)
		return MQTT_ERR_INVALID;
	rc = shimmy_ring_release_many(r, msg, 1);
	return rc > 0 ? -ESTALE : rc;
}

int shimmy_ring_reader_ready(void *reader)
{
	shimmy_ring_reader *r = reader;
	struct rec_view rv;

	if (r->borrowed)
		return 1;
	if (ring_rec_peek(&r->v, r->pos, &rv) != REC_EMPTY)
		return 1;
	return reader_detached(r) || reader_closed(r);
}

uint64_t shimmy_ring_reader_bound(shimmy_ring_reader *r, unsigned flags)
{
	uint64_t tail;

	r->horizon = UINT64_MAX;
	if (!(flags & SHIMMY_RING_BOUND_TAIL))
		return 0;
	/* Acquire pairs with the release store of tail in publish_tail():
	 * every record below it is committed. A hostile tail only bounds
	 * this reader's own reads; the records are validated as ever. */
	tail = atomic_load_explicit(&r->v.hdr->tail, memory_order_acquire);
	r->horizon = tail > r->pos ? tail : r->pos;
	return r->horizon - r->pos;
}

uint64_t shimmy_ring_reader_lost(const shimmy_ring_reader *r)
{
	return r->lost_total;
}

/*
 * shmpath/share.c — shared-subscription claims over a broadcast log.
 * Thread model: see share.h.
 */
#include "shmpath/share.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "mqtt/error.h"
#include "shmpath/ring_int.h"

#define CLAIM_STEPS 16

/*
 * Share page: a reader slot page (ring_int.h; position = claim cursor)
 * followed by group counters on a line of their own:
 *
 * | off | size | field     | notes                                  |
 * |-----|------|-----------|----------------------------------------|
 * | 0   | 192  | slot      | struct slot_page; position = cursor    |
 * | 256 | 8    | claimed   | messages claimed by the group          |
 * | 264 | 8    | first_seq | seq of the group's first claim (0=none)|
 * | 272 | 8    | max_seq   | highest seq claimed                    |
 */
struct share_page {
	struct slot_page slot;
	uint8_t pad[256 - sizeof(struct slot_page)];
	_Atomic uint64_t claimed;
	_Atomic uint64_t first_seq;
	_Atomic uint64_t max_seq;
};
_Static_assert(sizeof(struct slot_page) <= 256, "slot fits");

struct shimmy_share_member {
	struct ring_view v;
	struct share_page *page;
	uint32_t idx;
};

int shimmy_share_format(void *page, size_t page_len, const void *ring_mem,
			size_t ring_len, uint64_t gen)
{
	struct share_page *s = page;
	struct ring_view v;
	int rc;

	if (!page || page_len < SHIMMY_SHARE_PAGE_SIZE || ((uintptr_t)page & 63))
		return MQTT_ERR_INVALID;
	rc = ring_view_init(&v, ring_mem, ring_len);
	if (rc)
		return rc;
	rc = shimmy_ring_slot_format(page, page_len);
	if (rc)
		return rc;
	atomic_store_explicit(&s->slot.position,
			      atomic_load_explicit(&v.hdr->tail,
						   memory_order_acquire),
			      memory_order_relaxed);
	/* Release pairs with the writer's acquire load of gen: the cursor is
	 * valid once gen matches the table entry. */
	atomic_store_explicit(&s->slot.gen, gen, memory_order_release);
	return 0;
}

int shimmy_share_member_create(shimmy_share_member **out, const void *ring_mem,
			       size_t ring_len, void *page, size_t page_len,
			       uint32_t idx)
{
	struct share_page *s = page;
	shimmy_share_member *m;
	struct ring_view v;
	int rc = ring_view_init(&v, ring_mem, ring_len);

	if (rc)
		return rc;
	if (!page || page_len < SHIMMY_SHARE_PAGE_SIZE || ((uintptr_t)page & 63) ||
	    s->slot.magic != SLOT_MAGIC || idx >= v.readers_max)
		return MQTT_ERR_INVALID;
	m = calloc(1, sizeof(*m));
	if (!m)
		return MQTT_ERR_NOMEM;
	m->v = v;
	m->page = s;
	m->idx = idx;
	*out = m;
	return 0;
}

void shimmy_share_member_destroy(shimmy_share_member *m)
{
	free(m);
}

static int group_detached(const shimmy_share_member *m)
{
	const struct ring_entry *e = &m->v.table[m->idx];

	/* Acquire pairs with the writer's release store in writer_detach(). */
	return (m->v.flags & RING_F_RELIABLE) &&
	       atomic_load_explicit(&e->state, memory_order_acquire) ==
		       RT_DETACHED &&
	       atomic_load_explicit(&e->gen, memory_order_relaxed) ==
		       atomic_load_explicit(&m->page->slot.gen,
					    memory_order_relaxed);
}

static int log_closed(const shimmy_share_member *m)
{
	/* Acquire pairs with the release RMW of state in close. */
	return (atomic_load_explicit(&m->v.hdr->state, memory_order_acquire) &
		RING_S_CLOSED) != 0;
}

/* Moves the cursor from c to to; losing the race is fine (someone else
 * moved it). acq_rel: the release half orders our reads of the records
 * below `to` before the writer's acquire load of the cursor (reader_pos);
 * the acquire half pairs with other members' releases. */
static int move_cursor(shimmy_share_member *m, uint64_t c, uint64_t to)
{
	return atomic_compare_exchange_strong_explicit(
		&m->page->slot.position, &c, to, memory_order_acq_rel,
		memory_order_acquire);
}

static void note_claim(shimmy_share_member *m, uint64_t seq)
{
	struct share_page *s = m->page;
	uint64_t zero = 0, cur;

	atomic_fetch_add_explicit(&s->claimed, 1, memory_order_relaxed);
	atomic_compare_exchange_strong_explicit(&s->first_seq, &zero, seq,
						memory_order_relaxed,
						memory_order_relaxed);
	cur = atomic_load_explicit(&s->max_seq, memory_order_relaxed);
	while (cur < seq &&
	       !atomic_compare_exchange_weak_explicit(&s->max_seq, &cur, seq,
						      memory_order_relaxed,
						      memory_order_relaxed))
		;
}

int shimmy_share_claim(shimmy_share_member *m, shimmy_ring_msg *msg,
		       void *buf, size_t cap)
{
	struct rec_view rv;
	uint64_t c, np;
	uint8_t *out = buf;
	int rc;

	for (int step = 0; step < CLAIM_STEPS; step++) {
		/* Acquire pairs with other members' release CAS. */
		c = atomic_load_explicit(&m->page->slot.position,
					 memory_order_acquire);
		if (c & (RING_ALIGN - 1))
			return MQTT_ERR_MALFORMED;
		rc = ring_rec_peek(&m->v, c, &rv);
		if (rc == REC_EMPTY) {
			if (group_detached(m))
				return -ENOLINK;
			if (log_closed(m) &&
			    ring_rec_peek(&m->v, c, &rv) == REC_EMPTY)
				return -EPIPE;
			return 0;
		}
		if (rc == REC_BAD)
			return MQTT_ERR_MALFORMED;
		if (rc == REC_PAD && !ring_overrun(&m->v, c)) {
			move_cursor(m, c, c + rv.rec_len);
			continue;
		}
		if (rc == REC_OK) {
			if ((uint64_t)rv.props_len + rv.payload_len > cap) {
				msg->props_len = rv.props_len;
				msg->payload_len = rv.payload_len;
				return MQTT_ERR_NOSPACE;
			}
			memcpy(out, rv.props, rv.props_len);
			memcpy(out + rv.props_len, rv.payload, rv.payload_len);
			if (!ring_overrun(&m->v, c)) {
				if (!move_cursor(m, c, c + rv.rec_len))
					continue; /* another member won it */
				note_claim(m, rv.seq);
				rv.props = out;
				rv.payload = out + rv.props_len;
				ring_msg_from_rec(msg, &rv, c);
				msg->lost = 0;
				return 1;
			}
		}
		/* Lapped (or overrun during the copy). */
		if (group_detached(m))
			return -ENOLINK;
		if (ring_resync_pos(&m->v, c, &np))
			return MQTT_ERR_MALFORMED;
		move_cursor(m, c, np);
	}
	return 0;
}

int shimmy_share_ready(void *member)
{
	shimmy_share_member *m = member;
	struct rec_view rv;
	/* Acquire pairs with other members' release CAS of the cursor. */
	uint64_t c = atomic_load_explicit(&m->page->slot.position,
					  memory_order_acquire);

	if (c & (RING_ALIGN - 1))
		return 1; /* claim reports it as malformed */
	if (ring_rec_peek(&m->v, c, &rv) != REC_EMPTY)
		return 1;
	return group_detached(m) || log_closed(m);
}

uint64_t shimmy_share_claimed(const shimmy_share_member *m)
{
	return atomic_load_explicit(&m->page->claimed, memory_order_relaxed);
}

uint64_t shimmy_share_lost(const shimmy_share_member *m)
{
	const struct share_page *s = m->page;
	uint64_t first = atomic_load_explicit(&s->first_seq, memory_order_relaxed);
	uint64_t max = atomic_load_explicit(&s->max_seq, memory_order_relaxed);
	uint64_t n = atomic_load_explicit(&s->claimed, memory_order_relaxed);

	if (!first || max < first || max - first + 1 < n)
		return 0;
	return max - first + 1 - n;
}

/*
 * shmpath/tether.c — see tether.h. Layouts: ring_int.h.
 */
#include "shmpath/tether.h"

#include <stdatomic.h>

#include "mqtt/error.h"
#include "shmpath/ring.h"
#include "shmpath/ring_int.h"

/* CAS attempts to move a position forward in shimmy_tether_seed(). */
#define SEED_TRIES 64

static int slot_ok(const void *slot, size_t slot_len)
{
	const struct slot_page *s = slot;

	return slot && slot_len >= SHIMMY_RING_SLOT_SIZE &&
	       !((uintptr_t)slot & (RING_ALIGN - 1)) &&
	       SHM_LD(&s->magic) == SLOT_MAGIC;
}

int shimmy_tether_seed(const void *log, size_t len, void *slot,
		       size_t slot_len, uint64_t gen, unsigned flags)
{
	struct ring_view v;
	struct slot_page *s = slot;
	uint64_t pos, cur;
	int rc = ring_view_init(&v, log, len);

	if (rc)
		return rc;
	if (!slot_ok(slot, slot_len) || gen == 0 ||
	    (flags & ~(unsigned)SHIMMY_RING_FROM_HEAD))
		return MQTT_ERR_INVALID;
	/* Acquire pairs with the writer's release stores of head
	 * (advance_intent) and tail (publish_tail); the values are only a
	 * floor for the writer, and the reader re-reads them at create. */
	pos = atomic_load_explicit((flags & SHIMMY_RING_FROM_HEAD)
					   ? &v.hdr->head
					   : &v.hdr->tail,
				   memory_order_acquire);
	if (pos & (RING_ALIGN - 1))
		return MQTT_ERR_MALFORMED;
	/* Forward only: a share page's cursor may be moving under its
	 * members' claims (CAS), and must never go back over a record one
	 * of them claimed. Bounded: members racing us move it forward too. */
	cur = atomic_load_explicit(&s->position, memory_order_relaxed);
	for (int i = 0; i < SEED_TRIES && cur < pos; i++)
		if (atomic_compare_exchange_weak_explicit(
			    &s->position, &cur, pos, memory_order_relaxed,
			    memory_order_relaxed))
			break;
	/* Release pairs with the writer's acquire load of gen in
	 * reader_pos(): the position above is valid once gen matches. */
	atomic_store_explicit(&s->gen, gen, memory_order_release);
	return 0;
}

int shimmy_tether_read(const void *log, size_t len, const void *slot,
		       size_t slot_len, uint64_t gen, uint64_t *pos,
		       uint64_t *tail)
{
	struct ring_view v;
	struct slot_page *s = (struct slot_page *)(uintptr_t)slot;
	uint64_t p, t;
	int rc = ring_view_init(&v, log, len);

	if (rc)
		return rc;
	if (!slot_ok(slot, slot_len))
		return MQTT_ERR_INVALID;
	/* Acquire pairs with the reader's release store of gen (create). */
	if (atomic_load_explicit(&s->gen, memory_order_acquire) != gen)
		return 1;
	/* Acquire pairs with the reader's release store in publish_pos(). */
	p = atomic_load_explicit(&s->position, memory_order_acquire);
	/* Acquire pairs with the release store of tail in publish_tail(). */
	t = atomic_load_explicit(&v.hdr->tail, memory_order_acquire);
	*tail = t;
	*pos = p > t ? t : p;
	return 0;
}

int shimmy_tether_check(shimmy_tether *t, uint64_t pos, uint64_t tail,
			uint64_t cap, uint64_t now_ms, uint64_t timeout_ms)
{
	uint64_t lag = tail > pos ? tail - pos : 0;

	if (lag < cap / 2) {
		t->seen = 0; /* the clock starts when it next lags */
		return 0;
	}
	if (!t->seen || pos != t->pos) {
		t->seen = 1;
		t->pos = pos;
		t->since_ms = now_ms;
		return 0;
	}
	return now_ms >= t->since_ms && now_ms - t->since_ms >= timeout_ms;
}

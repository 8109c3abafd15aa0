/*
 * shmpath/holdoff.c — the hold-off timer. Thread model: see holdoff.h.
 */
#include "shmpath/holdoff.h"

#include <assert.h>

static inline int holdoff_check(const shimmy_holdoff *h)
{
	return (h->hold_ns > 0 || h->streak == 0) && (!h->held || h->streak);
}

static int64_t clamp_ns(int64_t ns)
{
	return ns < 0 ? 0 : ns > SHIMMY_HOLDOFF_MAX_NS ? SHIMMY_HOLDOFF_MAX_NS : ns;
}

void shimmy_holdoff_init(shimmy_holdoff *h, int64_t hold_ns, int64_t gap_ns,
			 uint32_t streak_min, uint64_t behind_bytes)
{
	*h = (shimmy_holdoff){
		.hold_ns = clamp_ns(hold_ns),
		.gap_ns = clamp_ns(gap_ns),
		.streak_min = streak_min ? streak_min : 1,
		.behind_bytes = behind_bytes,
	};
	assert(holdoff_check(h));
}

int64_t shimmy_holdoff_polled(shimmy_holdoff *h, int64_t now_ns, unsigned n,
			      unsigned flags)
{
	if (h->hold_ns == 0)
		return 0;
	if (n == 0) {
		/* Nothing came during a hold: the stream is over, and the
		 * next message may be a lone one - don't make it wait. An
		 * empty poll without a hold just waits for the next one. */
		if (h->held)
			h->streak = 0;
		h->held = 0;
		return 0;
	}
	h->held = 0;
	/* At least one message per gap_ns on average since the last poll
	 * that found some (a hold not counted). */
	if (h->streak && now_ns - h->last_ns <= (int64_t)n * h->gap_ns) {
		if (h->streak < UINT32_MAX)
			h->streak++;
	} else {
		h->streak = 1; /* after a quiet gap: a new stream, maybe */
	}
	h->last_ns = now_ns;
	if (!(flags & SHIMMY_HOLDOFF_EMPTIED) || h->streak < h->streak_min)
		return 0;
	/* The gap to the next poll is measured from the end of the hold. */
	h->held = 1;
	h->last_ns = now_ns + h->hold_ns;
	assert(holdoff_check(h));
	return h->hold_ns;
}

int shimmy_holdoff_hold(const shimmy_holdoff *h, uint64_t behind)
{
	return behind < h->behind_bytes;
}

int shimmy_holdoff_streaming(const shimmy_holdoff *h)
{
	return h->hold_ns > 0 && h->streak >= h->streak_min;
}

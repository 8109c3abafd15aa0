/*
 * clients/outq.c — outgoing byte queue (see outq.h).
 */
#include "clients/outq.h"

#include <stdlib.h>
#include <string.h>

#include "clients/include/shimmy.h"

void outq_init(outq *q, outq_release_fn release, void *ctx)
{
	memset(q, 0, sizeof(*q));
	q->release = release;
	q->release_ctx = ctx;
}

void outq_fini(outq *q)
{
	outq_reset(q);
	free(q->buf);
	free(q->segs);
	memset(q, 0, sizeof(*q));
}

/* Makes room for one more segment; 0 or SHIMMY_ERR_NOMEM. */
static int seg_room(outq *q)
{
	if (q->nseg == q->segcap) {
		/* Slide the live window down before growing. */
		if (q->head > 0) {
			memmove(q->segs, q->segs + q->head,
				(q->nseg - q->head) * sizeof(*q->segs));
			q->nseg -= q->head;
			q->head = 0;
		}
		if (q->nseg == q->segcap) {
			size_t nc = q->segcap ? q->segcap * 2 : 64;
			outq_seg *ns = realloc(q->segs, nc * sizeof(*ns));
			if (!ns)
				return SHIMMY_ERR_NOMEM;
			q->segs = ns;
			q->segcap = nc;
		}
	}
	return 0;
}

uint8_t *outq_reserve(outq *q, size_t n)
{
	/* Compact: everything written can be dropped once the queue is idle. */
	if (q->pending == 0) {
		q->used = 0;
		q->head = q->nseg = 0;
		q->done = 0;
	}
	if (n > SIZE_MAX / 2 - q->used || seg_room(q))
		return NULL;
	if (q->used + n > q->cap) {
		size_t nc = q->cap ? q->cap : 4096;
		while (nc < q->used + n)
			nc *= 2;
		uint8_t *nb = realloc(q->buf, nc);
		if (!nb)
			return NULL;
		q->buf = nb;
		q->cap = nc;
	}
	return q->buf + q->used;
}

void outq_commit(outq *q, size_t n)
{
	outq_seg *last;

	if (n == 0)
		return;
	last = q->nseg > q->head ? &q->segs[q->nseg - 1] : NULL;
	if (last && !last->ext && last->off + last->len == q->used) {
		last->len += n; /* extend the tail inline segment */
	} else {
		/* outq_reserve() made room for this segment. */
		q->segs[q->nseg++] = (outq_seg){ NULL, q->used, n, NULL };
	}
	q->used += n;
	q->pending += n;
}

int outq_append(outq *q, const void *p, size_t n)
{
	uint8_t *w = outq_reserve(q, n);

	if (!w)
		return SHIMMY_ERR_NOMEM;
	memcpy(w, p, n);
	outq_commit(q, n);
	return 0;
}

int outq_append_ext(outq *q, const uint8_t *p, size_t n, void *obj)
{
	outq_seg *s;

	if (q->pending == 0) {
		q->used = 0;
		q->head = q->nseg = 0;
		q->done = 0;
	}
	if (seg_room(q))
		return SHIMMY_ERR_NOMEM;
	s = &q->segs[q->nseg++];
	*s = (outq_seg){ p, 0, n, obj };
	q->pending += n;
	return 0;
}

int outq_iov(const outq *q, struct iovec *iov, int max)
{
	int k = 0;

	for (size_t i = q->head; i < q->nseg && k < max; i++) {
		const outq_seg *s = &q->segs[i];
		if (s->ext) {
			iov[k].iov_base = (void *)(s->ext + s->off);
			iov[k].iov_len = s->len - s->off;
		} else {
			size_t skip = i == q->head ? q->done : 0;
			iov[k].iov_base = q->buf + s->off + skip;
			iov[k].iov_len = s->len - skip;
		}
		k++;
	}
	return k;
}

void outq_consume(outq *q, size_t n)
{
	while (n > 0 && q->head < q->nseg) {
		outq_seg *s = &q->segs[q->head];
		size_t *pos = s->ext ? &s->off : &q->done;
		size_t left = s->len - *pos;
		size_t k = n < left ? n : left;

		*pos += k;
		n -= k;
		q->pending -= k;
		if (*pos == s->len) {
			if (s->ext && q->release)
				q->release(s->obj, q->release_ctx);
			q->done = 0;
			q->head++;
		}
	}
	if (q->pending == 0) {
		q->used = 0;
		q->head = q->nseg = 0;
		q->done = 0;
	}
}

void outq_reset(outq *q)
{
	for (size_t i = q->head; i < q->nseg; i++)
		if (q->segs[i].ext && q->release)
			q->release(q->segs[i].obj, q->release_ctx);
	q->used = 0;
	q->head = q->nseg = 0;
	q->done = 0;
	q->pending = 0;
}

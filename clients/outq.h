/*
 * clients/outq.h — the client's queue of bytes waiting for the socket.
 *
 * Small packets (acks, PINGREQ, SUBSCRIBE, copied QoS 0 publishes) are
 * appended inline into one growable byte buffer. Large or loaned packets
 * are queued by reference (an external segment), so a payload the caller
 * wrote in place reaches writev() without being copied. An external
 * segment may carry a release hook, run once its last byte is written or
 * the queue is reset. outq_iov() hands the pending bytes out as iovecs, so
 * the I/O layer batches many packets into one writev().
 *
 * Owns the inline buffer and the segment array; never owns external bytes.
 * No syscalls. Thread model: one thread at a time (the client's lock).
 */
#ifndef SHIMMY_CLIENTS_OUTQ_H
#define SHIMMY_CLIENTS_OUTQ_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

/* Called when an external segment has been written or dropped. */
typedef void (*outq_release_fn)(void *obj, void *ctx);

typedef struct outq_seg {
	const uint8_t *ext; /* NULL: inline bytes at buf[off..off+len) */
	size_t off;         /* inline offset, or bytes of ext already written */
	size_t len;
	void *obj;          /* passed to release */
} outq_seg;

/*
 * Invariants: segs[head..nseg) are pending, in order; inline segments
 * reference buf[0..used) in increasing offsets; a consumed prefix of the
 * first segment is recorded in done (inline) or off (external).
 */
typedef struct outq {
	uint8_t *buf;
	size_t used, cap;
	outq_seg *segs;
	size_t head, nseg, segcap;
	size_t done;        /* bytes of segs[head] already written (inline) */
	size_t pending;     /* total bytes not yet written */
	outq_release_fn release;
	void *release_ctx;
} outq;

void outq_init(outq *q, outq_release_fn release, void *ctx);
/* Runs the release hook of every external segment still queued. */
void outq_fini(outq *q);

/*
 * Reserves n inline bytes at the tail and returns where to write them, or
 * NULL when out of memory. The pointer is valid until the next call on q.
 * outq_commit(q, k) then appends the first k (<= n) of them.
 */
uint8_t *outq_reserve(outq *q, size_t n);
void outq_commit(outq *q, size_t n);
/* Reserve + copy + commit. 0 or SHIMMY_ERR_NOMEM. */
int outq_append(outq *q, const void *p, size_t n);
/* Queues p[0..n) by reference; obj goes to the release hook. 0 or NOMEM
 * (then the hook is not run). */
int outq_append_ext(outq *q, const uint8_t *p, size_t n, void *obj);

/* Fills up to max iovecs with pending bytes in order; returns the count. */
int outq_iov(const outq *q, struct iovec *iov, int max);
/* Marks n pending bytes written (n <= pending). */
void outq_consume(outq *q, size_t n);
/* Drops everything pending (connection lost), running release hooks. */
void outq_reset(outq *q);

static inline size_t outq_pending(const outq *q)
{
	return q->pending;
}

#endif

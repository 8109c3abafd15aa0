/*
 * shmpath/notify.c — futex eventcount in shared memory.
 * Thread model: see notify.h.
 */
#include "shmpath/notify.h"

#include <errno.h>
#include <linux/futex.h>
#include <linux/membarrier.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "shmpath/spin_int.h"

/*
 * Bell layout (64 bytes, one cache line):
 *
 * | off | size | field   | written by                         |
 * |-----|------|---------|------------------------------------|
 * | 0   | 4    | seq     | notifiers (futex word)             |
 * | 4   | 4    | waiters | sleepers (armed count)             |
 * | 8   | 4    | magic   | "BELL", at init                    |
 * | 12  | 4    | rung    | notifiers set, sleepers' arm clears|
 * | 16  | 48   | reserved| 0                                  |
 */
struct shimmy_bell {
	_Atomic uint32_t seq;
	_Atomic uint32_t waiters;
	uint32_t magic;
	_Atomic uint32_t rung;
	uint8_t reserved[48];
};
_Static_assert(sizeof(struct shimmy_bell) == SHIMMY_BELL_SIZE, "bell size");

#define BELL_MAGIC 0x4c4c4542u /* "BELL" */


/* 0 unknown, 1 registered, -1 unsupported. */
static _Atomic int fenceless_state;

int shimmy_bell_fenceless(void)
{
	int st = atomic_load_explicit(&fenceless_state, memory_order_acquire);
	long q;

	if (st)
		return st > 0;
	q = syscall(SYS_membarrier, MEMBARRIER_CMD_QUERY, 0, 0);
	st = -1;
	if (q > 0 && (q & MEMBARRIER_CMD_GLOBAL_EXPEDITED) &&
	    (q & MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED) &&
	    syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED,
		    0, 0) == 0)
		st = 1;
	atomic_store_explicit(&fenceless_state, st, memory_order_release);
	return st > 0;
}

shimmy_bell *shimmy_bell_init(void *mem, size_t len)
{
	shimmy_bell *b = mem;

	if (!mem || len < SHIMMY_BELL_SIZE || ((uintptr_t)mem & 63))
		return NULL;
	memset(mem, 0, SHIMMY_BELL_SIZE);
	b->magic = BELL_MAGIC;
	return b;
}

shimmy_bell *shimmy_bell_at(void *mem, size_t len)
{
	shimmy_bell *b = mem;

	if (!mem || len < SHIMMY_BELL_SIZE || ((uintptr_t)mem & 63))
		return NULL;
	if (__atomic_load_n(&b->magic, __ATOMIC_RELAXED) != BELL_MAGIC)
		return NULL;
	return b;
}

void shimmy_bell_notify(shimmy_bell *b, unsigned flags)
{
	/* Dekker with shimmy_bell_arm(): our data stores, this fence, then the
	 * waiters load; the sleeper's waiters RMW (seq_cst), then its re-check
	 * of the data. One of the two must see the other's write, so either we
	 * see waiters != 0 or the sleeper sees our data and does not sleep. */
	if (!(flags & SHIMMY_BELL_FENCED))
		atomic_thread_fence(memory_order_seq_cst);
	/* Acquire pairs with the sleeper's seq_cst waiters RMW in arm(),
	 * which follows its store of rung = 0. */
	if (atomic_load_explicit(&b->waiters, memory_order_acquire) == 0)
		return;
	/* One wake per sleep: the first notifier after an arm rings, the
	 * commits that follow until the sleeper disarms cost a load. A
	 * forged rung only delays a sleeper by its slice. */
	if (atomic_load_explicit(&b->rung, memory_order_relaxed) ||
	    atomic_exchange_explicit(&b->rung, 1, memory_order_relaxed))
		return;
	/* Release: a sleeper that reads the new seq (FUTEX_WAIT's value check
	 * or shimmy_bell_forward()'s load) also sees the data published before
	 * this call. */
	atomic_fetch_add_explicit(&b->seq, 1, memory_order_release);
	syscall(SYS_futex, &b->seq, FUTEX_WAKE, 0x7fffffff, NULL, NULL, 0);
}

uint32_t shimmy_bell_arm(shimmy_bell *b)
{
	/* seq_cst RMW: the sleeper half of the Dekker pair described in
	 * shimmy_bell_notify(); the following seq load and the caller's
	 * re-check of its data cannot move above it. */
	atomic_store_explicit(&b->rung, 0, memory_order_relaxed);
	atomic_fetch_add_explicit(&b->waiters, 1, memory_order_seq_cst);
	/* Heavy half of the asymmetric Dekker (shimmy_bell_fenceless()):
	 * a full barrier on every CPU running a registered notifier, so a
	 * notifier that skipped its fence has its data stores visible to
	 * our re-check, or sees waiters != 0. Harmless when nobody is
	 * registered; if it fails, the sleep slice bounds a missed wake. */
	(void)syscall(SYS_membarrier, MEMBARRIER_CMD_GLOBAL_EXPEDITED, 0, 0);
	/* Acquire pairs with the notifier's release increment of seq. */
	return atomic_load_explicit(&b->seq, memory_order_acquire);
}

void shimmy_bell_disarm(shimmy_bell *b)
{
	/* A peer may have zeroed the count; never wrap it below zero, or every
	 * notifier would pay a FUTEX_WAKE forever. */
	uint32_t w = atomic_load_explicit(&b->waiters, memory_order_relaxed);

	while (w != 0 &&
	       !atomic_compare_exchange_weak_explicit(&b->waiters, &w, w - 1,
						      memory_order_relaxed,
						      memory_order_relaxed))
		;
}

int shimmy_bell_sleep(shimmy_bell *b, uint32_t seq, int64_t timeout_ns)
{
	struct timespec ts;
	int64_t slice = (int64_t)SHIMMY_BELL_SLICE_MS * 1000000;
	long rc;

	if (timeout_ns <= 0)
		return 0;
	if (timeout_ns < slice)
		slice = timeout_ns;
	ts.tv_sec = (time_t)(slice / 1000000000);
	ts.tv_nsec = (long)(slice % 1000000000);
	/* Shared futex (no FUTEX_PRIVATE_FLAG): the key is the page of the
	 * shared file mapping, so waker and sleeper may be in different
	 * processes with different addresses. */
	rc = syscall(SYS_futex, &b->seq, FUTEX_WAIT, seq, &ts, NULL, 0);
	if (rc == 0)
		return 1;
	switch (errno) {
	case EAGAIN: return 1; /* seq already moved */
	case EINTR: return 1;  /* let the caller re-check */
	case ETIMEDOUT: return 0;
	default: return -errno;
	}
}

int shimmy_bell_wait(shimmy_bell *b, shimmy_bell_ready_fn ready,
		     int64_t spin_ns, int64_t timeout_ns, void *ctx)
{
	int64_t start = now_ns(), now = start;
	unsigned n = 0;
	uint32_t seq;
	int rc = 0;

	while (now - start < spin_ns) {
		if (ready(ctx))
			return 1;
		cpu_relax();
		if ((++n & 63) == 0)
			now = now_ns();
	}
	for (;;) {
		seq = shimmy_bell_arm(b);
		if (ready(ctx)) {
			rc = 1;
			break;
		}
		now = now_ns();
		if (now - start >= timeout_ns) {
			rc = 0;
			break;
		}
		rc = shimmy_bell_sleep(b, seq, timeout_ns - (now - start));
		shimmy_bell_disarm(b);
		if (rc < 0)
			return rc;
	}
	shimmy_bell_disarm(b);
	return rc;
}

int shimmy_bell_forward(shimmy_bell *b, uint32_t *seen, int efd,
			int64_t timeout_ns)
{
	int64_t start = now_ns(), now = start;
	uint64_t one = 1;
	uint32_t s;
	int rc;

	for (;;) {
		/* Acquire pairs with the notifier's release increment. */
		s = atomic_load_explicit(&b->seq, memory_order_acquire);
		if (s != *seen)
			break;
		if (now - start >= timeout_ns)
			return 0;
		rc = shimmy_bell_sleep(b, s, timeout_ns - (now - start));
		if (rc < 0)
			return rc;
		now = now_ns();
	}
	*seen = s;
	if (write(efd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		return -errno;
	return 1;
}

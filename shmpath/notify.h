/*
 * shmpath/notify.h — futex doorbells in shared memory.
 *
 * A bell is a 64-byte word pair {seq, waiters} in a segment mapped by the
 * sleeper and by everyone who may wake it. It is an eventcount: a sleeper
 * announces itself (arm: waiters++), re-checks its condition, then sleeps
 * on seq with FUTEX_WAIT (shared, not FUTEX_PRIVATE, so it works between
 * processes on a MAP_SHARED file mapping). A notifier publishes its data,
 * issues a seq_cst fence, and only when waiters != 0 bumps seq and calls
 * FUTEX_WAKE; with no sleeper a notify costs one fence and one load, or
 * just the load in a process registered by shimmy_bell_fenceless().
 *
 * One bell per subscriber: a subscriber reading many logs sleeps once, on
 * its own bell, and every log writer it reads from rings that bell.
 *
 * Trust: the bell is writable by the subscriber and by the publishers of
 * the logs it reads, so its contents are advisory. A forged or reset value
 * can only cause a spurious wakeup (the sleeper re-checks its logs) or a
 * missed one, which the bounded sleep slice (SHIMMY_BELL_SLICE_MS) turns into
 * latency, never into a hang or a crash.
 *
 * Pollable fd: eventfds are process-local, so writers are never handed one.
 * The subscriber runs a forwarding thread in shimmy_bell_forward(), which
 * sleeps on the futex and writes 1 to the subscriber's own eventfd each
 * time seq moves; the epoll user arms the bell before epoll_wait and
 * disarms after (see docs/shm-protocol.md, "Notification").
 * Thread model: any thread, any process; no allocation.
 */
#ifndef SHIMMY_SHMPATH_NOTIFY_H
#define SHIMMY_SHMPATH_NOTIFY_H

#include <stddef.h>
#include <stdint.h>

/* Bytes a bell occupies; it must be 64-byte aligned (own cache line). */
#define SHIMMY_BELL_SIZE 64u
/* Longest single futex sleep, so a lost wakeup costs bounded latency. */
#define SHIMMY_BELL_SLICE_MS 100

typedef struct shimmy_bell shimmy_bell;

/* Flags of shimmy_bell_notify(). */
enum {
	/* The caller already issued atomic_thread_fence(seq_cst) after
	 * publishing its data (lets one fence cover many bells). */
	SHIMMY_BELL_FENCED = 1u << 0,
};

/*
 * Asymmetric Dekker (membarrier(2)). Registers the calling process with
 * MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED (once per process) and returns 1
 * when that worked: the process may then notify with SHIMMY_BELL_FENCED
 * without issuing the seq_cst fence, because every sleeper's arm() runs
 * MEMBARRIER_CMD_GLOBAL_EXPEDITED, which puts a full barrier on every CPU
 * running a registered thread. The per-message notify becomes one plain
 * load; the barrier cost moves to the side that is about to sleep anyway.
 * Returns 0 when unsupported (keep fencing). Thread-safe.
 */
int shimmy_bell_fenceless(void);

/* Formats a bell in mem (>= SHIMMY_BELL_SIZE bytes, 64-byte aligned) and
 * returns it, or NULL when mem is too small or misaligned. */
shimmy_bell *shimmy_bell_init(void *mem, size_t len);

/* Returns mem as a bell after checking size, alignment and magic, or NULL.
 * The pointer is valid as long as the mapping. */
shimmy_bell *shimmy_bell_at(void *mem, size_t len);

/* Wakes every sleeper if any are armed. Publish data before calling. Never
 * blocks; makes a syscall only when someone sleeps. */
void shimmy_bell_notify(shimmy_bell *b, unsigned flags);

/* Sleeper side, step by step. arm() returns the seq snapshot to sleep on;
 * after arming, re-check the condition, then sleep(seq) unless it holds;
 * always disarm() once. sleep() returns 1 if seq moved or a wake arrived, 0
 * on timeout (at most SHIMMY_BELL_SLICE_MS per call), -errno otherwise. */
uint32_t shimmy_bell_arm(shimmy_bell *b);
int shimmy_bell_sleep(shimmy_bell *b, uint32_t seq, int64_t timeout_ns);
void shimmy_bell_disarm(shimmy_bell *b);

/* Returns nonzero when the waited-for condition holds. */
typedef int (*shimmy_bell_ready_fn)(void *ctx);

/*
 * Waits until ready(ctx) != 0: spins for spin_ns calling ready, then arms,
 * re-checks, and sleeps in slices until timeout_ns has passed. Blocks.
 * Returns 1 when ready, 0 on timeout, or -errno.
 */
int shimmy_bell_wait(shimmy_bell *b, shimmy_bell_ready_fn ready,
		     int64_t spin_ns, int64_t timeout_ns, void *ctx);

/*
 * One step of the futex -> eventfd bridge: sleeps until seq differs from
 * *seen (or timeout_ns), then stores the new seq in *seen and writes 1 to
 * efd. Run it in a loop on a thread of the subscriber's own. Returns 1 when
 * it forwarded, 0 on timeout, -errno on error. Blocks.
 */
int shimmy_bell_forward(shimmy_bell *b, uint32_t *seen, int efd,
			int64_t timeout_ns);

#endif

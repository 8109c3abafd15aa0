/*
 * tests/unit/test_shm_notify.c — futex doorbell: wake only when armed,
 * cross-process wake through a shared mapping, futex -> eventfd bridge.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "shmpath/notify.h"
#include "shmpath/segment.h"

struct shared {
	uint8_t bell[64] __attribute__((aligned(64)));
	_Atomic int flag;
};

static int flag_ready(void *ctx)
{
	return atomic_load_explicit((_Atomic int *)ctx, memory_order_acquire);
}

static void test_init_checks(void **state)
{
	static uint8_t mem[128] __attribute__((aligned(64)));

	(void)state;
	assert_null(shimmy_bell_init(mem + 8, 64));
	assert_null(shimmy_bell_init(mem, 32));
	assert_null(shimmy_bell_at(mem, 64)); /* no magic yet */
	assert_non_null(shimmy_bell_init(mem, 64));
	assert_non_null(shimmy_bell_at(mem, 64));
}

static void test_wait_timeout_and_ready(void **state)
{
	static struct shared s;
	shimmy_bell *b = shimmy_bell_init(s.bell, sizeof(s.bell));

	(void)state;
	atomic_store(&s.flag, 0);
	assert_int_equal(shimmy_bell_wait(b, flag_ready, 1000, 2000000, &s.flag), 0);
	atomic_store(&s.flag, 1);
	assert_int_equal(shimmy_bell_wait(b, flag_ready, 0, 2000000, &s.flag), 1);
	/* Nobody armed: notify is a fence and a load, seq does not move. */
	uint32_t seq = shimmy_bell_arm(b);
	shimmy_bell_disarm(b);
	shimmy_bell_notify(b, 0);
	assert_int_equal(shimmy_bell_arm(b), seq);
	/* Armed: notify moves seq, so a sleep on the old value returns. */
	shimmy_bell_notify(b, 0);
	assert_int_equal(shimmy_bell_sleep(b, seq, 1000000000), 1);
	shimmy_bell_disarm(b);
	shimmy_bell_disarm(b);
	shimmy_bell_disarm(b); /* never wraps below zero */
	assert_int_equal(shimmy_bell_arm(b), seq + 1);
	shimmy_bell_disarm(b);
}

/* One wake per sleep: after the first notify of an armed episode, more
 * notifies do not move seq (no FUTEX_WAKE); a new arm starts a new one. */
static void test_one_wake_per_sleep(void **state)
{
	static struct shared s;
	shimmy_bell *b = shimmy_bell_init(s.bell, sizeof(s.bell));

	(void)state;
	uint32_t seq = shimmy_bell_arm(b);
	shimmy_bell_notify(b, 0);
	shimmy_bell_notify(b, 0);
	shimmy_bell_notify(b, SHIMMY_BELL_FENCED);
	shimmy_bell_disarm(b);
	assert_int_equal(shimmy_bell_arm(b), seq + 1);
	shimmy_bell_notify(b, 0);
	shimmy_bell_notify(b, 0);
	shimmy_bell_disarm(b);
	assert_int_equal(shimmy_bell_arm(b), seq + 2);
	shimmy_bell_disarm(b);
	/* Registering twice answers the same; either answer is valid. */
	int f = shimmy_bell_fenceless();
	assert_true(f == 0 || f == 1);
	assert_int_equal(shimmy_bell_fenceless(), f);
}

static void test_cross_process_wake(void **state)
{
	shimmy_seg seg;
	struct shared *s;
	size_t len;
	shimmy_bell *b;
	pid_t pid;
	int st, round;

	(void)state;
	assert_int_equal(shimmy_seg_create(&seg, SHIMMY_SEG_BELL, 4096, 1), 0);
	s = shimmy_seg_body(&seg, &len);
	b = shimmy_bell_init(s->bell, sizeof(s->bell));
	assert_non_null(b);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		/* Sleeper: waits for each flag value in turn, mostly asleep. */
		for (round = 1; round <= 50; round++) {
			while (atomic_load_explicit(&s->flag,
						    memory_order_acquire) < round)
				if (shimmy_bell_wait(b, flag_ready, 0,
						     2000000000LL, &s->flag) < 0)
					_exit(2);
			(void)round;
		}
		_exit(0);
	}
	for (round = 1; round <= 50; round++) {
		struct timespec d = { 0, 200000 };

		nanosleep(&d, NULL);
		atomic_store_explicit(&s->flag, round, memory_order_release);
		shimmy_bell_notify(b, 0);
	}
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
	shimmy_seg_unmap(&seg);
}

static void test_forward_eventfd(void **state)
{
	static struct shared s;
	shimmy_bell *b = shimmy_bell_init(s.bell, sizeof(s.bell));
	int efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	uint32_t seen = shimmy_bell_arm(b);
	uint64_t v = 0;

	(void)state;
	assert_true(efd >= 0);
	assert_int_equal(shimmy_bell_forward(b, &seen, efd, 1000000), 0);
	assert_int_equal(read(efd, &v, sizeof(v)), -1);
	shimmy_bell_notify(b, 0); /* armed above, so seq moves */
	assert_int_equal(shimmy_bell_forward(b, &seen, efd, 1000000000), 1);
	assert_int_equal(read(efd, &v, sizeof(v)), sizeof(v));
	assert_int_equal(v, 1);
	shimmy_bell_disarm(b);
	close(efd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_init_checks),
		cmocka_unit_test(test_wait_timeout_and_ready),
		cmocka_unit_test(test_one_wake_per_sleep),
		cmocka_unit_test(test_cross_process_wake),
		cmocka_unit_test(test_forward_eventfd),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * tests/unit/test_shm_holdoff.c — the subscriber's hold-off timer, driven
 * by a made-up clock: it never holds a lone message after a quiet gap or a
 * paced stream, it does hold in a stream of back-to-back messages (not
 * when already far behind), a hold that comes up empty ends the stream,
 * and it can be turned off.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "shmpath/holdoff.h"

#define HOLD 10000
#define GAP 1000
#define STREAK 8u
#define BEHIND 8192u
#define E SHIMMY_HOLDOFF_EMPTIED

/* A reader that keeps up with a writer streaming a message every 100 ns:
 * each poll takes one and empties the log. Returns the first hold. */
static int64_t stream(shimmy_holdoff *h, int64_t *now, unsigned polls)
{
	int64_t ns = 0;

	for (unsigned i = 0; i < polls && !ns; i++) {
		*now += 100;
		ns = shimmy_holdoff_polled(h, *now, 1, E);
	}
	return ns;
}

static void test_paced_never_holds(void **state)
{
	shimmy_holdoff h;
	int64_t now = 1000000000;

	(void)state;
	shimmy_holdoff_init(&h, HOLD, GAP, STREAK, BEHIND);
	/* 10k msgs/s (the latency benchmark): one message per poll, 100 us
	 * apart, with empty polls between them. */
	for (int i = 0; i < 10000; i++) {
		now += 100000;
		assert_int_equal(shimmy_holdoff_polled(&h, now, 1, E), 0);
		assert_false(shimmy_holdoff_streaming(&h));
		for (int k = 0; k < 3; k++)
			assert_int_equal(shimmy_holdoff_polled(&h, now + k, 0, E), 0);
	}
	/* 500k msgs/s, still slower than one per gap: never a stream. */
	for (int i = 0; i < 10000; i++) {
		now += 2000;
		assert_int_equal(shimmy_holdoff_polled(&h, now, 1, E), 0);
	}
	assert_false(shimmy_holdoff_streaming(&h));
}

static void test_stream_holds(void **state)
{
	shimmy_holdoff h;
	int64_t now = 5000, ns;
	unsigned i;

	(void)state;
	shimmy_holdoff_init(&h, HOLD, GAP, STREAK, BEHIND);
	/* The first STREAK - 1 polls of a stream don't hold yet. */
	for (i = 1; i < STREAK; i++) {
		now += 100;
		assert_int_equal(shimmy_holdoff_polled(&h, now, 1, E), 0);
	}
	assert_false(shimmy_holdoff_streaming(&h));
	now += 100;
	assert_int_equal(shimmy_holdoff_polled(&h, now, 1, E), HOLD);
	assert_true(shimmy_holdoff_streaming(&h));
	/* After the hold the reader finds what came meanwhile and empties
	 * the log again: hold again, poll after poll. */
	for (i = 0; i < 100; i++) {
		now += HOLD + 3000; /* held, then a 3 us drain */
		ns = shimmy_holdoff_polled(&h, now, 100, E);
		assert_int_equal(ns, HOLD);
	}
	/* A poll that stopped at its limit, not at an empty log: no hold
	 * (there is more to read), but the stream goes on. */
	now += HOLD + 3000;
	assert_int_equal(shimmy_holdoff_polled(&h, now, 4096, 0), 0);
	assert_true(shimmy_holdoff_streaming(&h));
	now += 3000;
	assert_int_equal(shimmy_holdoff_polled(&h, now, 100, E), HOLD);
	/* A long drain (a reader that fell behind) continues the stream as
	 * long as it averaged one message per gap. */
	now += HOLD + 1000000;
	assert_int_equal(shimmy_holdoff_polled(&h, now, 2000, E), HOLD);
	/* The hold is worth it only close behind the writers. */
	assert_true(shimmy_holdoff_hold(&h, 0));
	assert_true(shimmy_holdoff_hold(&h, BEHIND - 32));
	assert_false(shimmy_holdoff_hold(&h, BEHIND));
	assert_false(shimmy_holdoff_hold(&h, UINT64_MAX));
}

static void test_hold_ends_on_empty(void **state)
{
	shimmy_holdoff h;
	int64_t now = 0;

	(void)state;
	shimmy_holdoff_init(&h, HOLD, GAP, STREAK, BEHIND);
	assert_int_equal(stream(&h, &now, 100), HOLD);
	/* The writer stopped: the poll after the hold finds nothing. */
	now += HOLD;
	assert_int_equal(shimmy_holdoff_polled(&h, now, 0, E), 0);
	assert_false(shimmy_holdoff_streaming(&h));
	/* A lone message after the quiet gap: read at once, no hold, and
	 * the ones that follow it at a gentle pace neither. */
	for (int i = 0; i < 100; i++) {
		now += 50000;
		assert_int_equal(shimmy_holdoff_polled(&h, now, 1, E), 0);
		assert_false(shimmy_holdoff_streaming(&h));
	}
	/* Nor does a burst after a long idle (a reader that slept: many
	 * messages, but over a long time). */
	now += 1000000000;
	assert_int_equal(shimmy_holdoff_polled(&h, now, 1000, E), 0);
	/* Empty polls that follow no hold (a poll stopped at its limit,
	 * then the reader spun) end nothing. */
	assert_int_equal(stream(&h, &now, 100), HOLD);
	now += HOLD;
	assert_int_equal(shimmy_holdoff_polled(&h, now, 4096, 0), 0);
	for (int i = 1; i <= 3; i++) {
		assert_int_equal(shimmy_holdoff_polled(&h, now + i, 0, E), 0);
		assert_true(shimmy_holdoff_streaming(&h));
	}
	now += 500;
	assert_int_equal(shimmy_holdoff_polled(&h, now, 5, E), HOLD);
}

static void test_quiet_gap_restarts(void **state)
{
	shimmy_holdoff h;
	int64_t now = 0;

	(void)state;
	shimmy_holdoff_init(&h, HOLD, GAP, STREAK, BEHIND);
	/* STREAK - 1 polls of a stream, a pause, STREAK - 1 more: never
	 * STREAK in a row, so never a hold. */
	for (int round = 0; round < 50; round++) {
		for (unsigned i = 1; i < STREAK; i++) {
			now += 100;
			assert_int_equal(shimmy_holdoff_polled(&h, now, 1, E), 0);
		}
		now += 100000;
		assert_int_equal(shimmy_holdoff_polled(&h, now, 0, E), 0);
	}
	assert_false(shimmy_holdoff_streaming(&h));
}

static void test_off_and_clamps(void **state)
{
	shimmy_holdoff h;
	int64_t now = 0;

	(void)state;
	shimmy_holdoff_init(&h, 0, GAP, STREAK, BEHIND);
	assert_int_equal(stream(&h, &now, 1000), 0);
	assert_false(shimmy_holdoff_streaming(&h));
	shimmy_holdoff_init(&h, -5, -5, 0, BEHIND);
	assert_int_equal(stream(&h, &now, 1000), 0);
	/* Huge values are clamped: no overflow in n * gap or now + hold. */
	shimmy_holdoff_init(&h, INT64_MAX, INT64_MAX, 1, BEHIND);
	now = INT64_MAX / 2;
	assert_int_equal(shimmy_holdoff_polled(&h, now, UINT32_MAX, E),
			 SHIMMY_HOLDOFF_MAX_NS);
	now += SHIMMY_HOLDOFF_MAX_NS;
	assert_int_equal(shimmy_holdoff_polled(&h, now, UINT32_MAX, E),
			 SHIMMY_HOLDOFF_MAX_NS);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_paced_never_holds),
		cmocka_unit_test(test_stream_holds),
		cmocka_unit_test(test_hold_ends_on_empty),
		cmocka_unit_test(test_quiet_gap_restarts),
		cmocka_unit_test(test_off_and_clamps),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

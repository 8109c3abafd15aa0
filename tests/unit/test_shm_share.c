/*
 * tests/unit/test_shm_share.c — shared-subscription claims: each message
 * goes to exactly one member; the group holds a reliable writer back as one
 * reader; loss is counted per group.
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <cmocka.h>

#include "mqtt/error.h"
#include "shmpath/ring.h"
#include "shmpath/share.h"

#define PG 4096u

struct group {
	uint8_t *ring;
	size_t ring_len;
	uint8_t *page;
	shimmy_ring_writer *w;
	_Atomic uint8_t *seen;
	uint64_t total;
	_Atomic uint64_t dup;
};

static void group_init(struct group *g, uint32_t flags, uint64_t total)
{
	shimmy_ring_params p = { .flags = flags, .readers_max = 4 };

	g->ring_len = shimmy_ring_region_size(64 << 10);
	g->ring = mmap(NULL, g->ring_len + PG, PROT_READ | PROT_WRITE,
		       MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	assert_true(g->ring != MAP_FAILED);
	g->page = g->ring + g->ring_len;
	assert_int_equal(shimmy_ring_format(g->ring, g->ring_len, &p), 0);
	assert_int_equal(shimmy_ring_writer_create(&g->w, g->ring, g->ring_len), 0);
	assert_int_equal(shimmy_share_format(g->page, PG, g->ring, g->ring_len, 7), 0);
	assert_int_equal(shimmy_ring_slot_set(g->ring, g->ring_len, 2,
					      SHIMMY_RING_SLOT_ATTACHED, 7), 0);
	assert_int_equal(shimmy_ring_writer_track(g->w, 2, 7, g->page, PG, NULL), 0);
	g->total = total;
	g->seen = calloc(total + 1, 1);
	atomic_store(&g->dup, 0);
}

/* A member of g's group (table entry 2), asserted created. */
static shimmy_share_member *group_member(struct group *g)
{
	shimmy_share_member *m;

	assert_int_equal(shimmy_share_member_create(&m, g->ring, g->ring_len,
						    g->page, PG, 2), 0);
	return m;
}

static void group_fini(struct group *g)
{
	shimmy_ring_writer_destroy(g->w);
	munmap(g->ring, g->ring_len + PG);
	free((void *)g->seen);
}

static void test_claim_basic(void **state)
{
	struct group g;
	shimmy_share_member *a, *b;
	shimmy_ring_msg m;
	uint8_t buf[64];

	(void)state;
	group_init(&g, 0, 1);
	a = group_member(&g);
	b = group_member(&g);
	assert_int_equal(shimmy_share_claim(a, &m, buf, sizeof(buf)), 0);
	assert_int_equal(shimmy_ring_publish(g.w, NULL, 0, "one", 3, 1, 0, 0), 0);
	assert_int_equal(shimmy_ring_publish(g.w, NULL, 0, "two", 3, 1, 0, 0), 0);
	assert_int_equal(shimmy_share_claim(a, &m, buf, 2), MQTT_ERR_NOSPACE);
	assert_int_equal(shimmy_share_claim(b, &m, buf, sizeof(buf)), 1);
	assert_memory_equal(m.payload, "one", 3);
	assert_int_equal(shimmy_share_claim(a, &m, buf, sizeof(buf)), 1);
	assert_memory_equal(m.payload, "two", 3);
	assert_int_equal(m.seq, 2);
	assert_int_equal(shimmy_share_claim(a, &m, buf, sizeof(buf)), 0);
	assert_int_equal(shimmy_share_claim(b, &m, buf, sizeof(buf)), 0);
	assert_int_equal(shimmy_share_claimed(a), 2);
	assert_int_equal(shimmy_share_lost(a), 0);
	shimmy_ring_writer_close(g.w);
	assert_int_equal(shimmy_share_claim(b, &m, buf, sizeof(buf)), -EPIPE);
	shimmy_share_member_destroy(a);
	shimmy_share_member_destroy(b);
	group_fini(&g);
}

static void test_lossy_group_counts_loss(void **state)
{
	struct group g;
	shimmy_share_member *a;
	shimmy_ring_msg m;
	uint8_t buf[256], pay[96] = { 0 };
	uint64_t got = 0;

	(void)state;
	group_init(&g, 0, 1);
	a = group_member(&g);
	assert_int_equal(shimmy_ring_publish(g.w, NULL, 0, pay, 96, 0, 0, 0), 0);
	assert_int_equal(shimmy_share_claim(a, &m, buf, sizeof(buf)), 1);
	for (int i = 0; i < 2000; i++)
		assert_int_equal(shimmy_ring_publish(g.w, NULL, 0, pay, 96, 0, 0, 0), 0);
	while (shimmy_share_claim(a, &m, buf, sizeof(buf)) == 1)
		got++;
	assert_int_equal(m.seq, 2001);
	assert_int_equal(shimmy_share_claimed(a), got + 1);
	assert_int_equal(shimmy_share_lost(a), 2000 - got);
	assert_true(got > 400);
	shimmy_share_member_destroy(a);
	group_fini(&g);
}

/* shimmy_share_ready() says 1 exactly when a claim would not return 0. */
static void test_ready(void **state)
{
	struct group g;
	shimmy_share_member *a;
	shimmy_ring_msg m;
	uint8_t buf[64];

	(void)state;
	group_init(&g, 0, 1);
	a = group_member(&g);
	assert_int_equal(shimmy_share_ready(a), 0);
	assert_int_equal(shimmy_ring_publish(g.w, NULL, 0, "x", 1, 0, 0, 0), 0);
	assert_int_equal(shimmy_share_ready(a), 1);
	assert_int_equal(shimmy_share_claim(a, &m, buf, sizeof(buf)), 1);
	assert_int_equal(shimmy_share_ready(a), 0);
	shimmy_ring_writer_close(g.w);
	assert_int_equal(shimmy_share_ready(a), 1);
	assert_int_equal(shimmy_share_claim(a, &m, buf, sizeof(buf)), -EPIPE);
	shimmy_share_member_destroy(a);
	group_fini(&g);
}

/* A member scribbling on the shared page (cursor, counters) cannot make
 * another member crash, hang or read outside the log: claims stay bounded
 * and return 0, 1 or an error. */
static void test_scribbled_page(void **state)
{
	static const uint64_t cursors[] = { 1, 63, 64 * 3, UINT64_MAX - 63,
					    (uint64_t)1 << 40, 0 };
	struct group g;
	shimmy_share_member *a;
	shimmy_ring_msg m;
	uint8_t buf[256];

	(void)state;
	group_init(&g, 0, 1);
	a = group_member(&g);
	for (int i = 0; i < 50; i++)
		assert_int_equal(shimmy_ring_publish(g.w, NULL, 0, "abc", 3, 0,
						     0, 0), 0);
	for (size_t i = 0; i < sizeof(cursors) / sizeof(cursors[0]); i++) {
		/* Offset 64 is the cursor (the slot's position). */
		memcpy(g.page + 64, &cursors[i], sizeof(cursors[i]));
		memset(g.page + 256, 0xff, 24); /* counters */
		for (int k = 0; k < 100; k++) {
			int rc = shimmy_share_claim(a, &m, buf, sizeof(buf));
			assert_true(rc == 0 || rc == 1 || rc < 0);
			if (rc == 1)
				assert_memory_equal(m.payload, "abc", 3);
			(void)shimmy_share_ready(a);
			if (rc != 1)
				break;
		}
		(void)shimmy_share_lost(a);
	}
	shimmy_share_member_destroy(a);
	group_fini(&g);
}

struct member_arg {
	struct group *g;
	uint64_t got;
};

static void *member_thread(void *arg)
{
	struct member_arg *ma = arg;
	struct group *g = ma->g;
	shimmy_share_member *m;
	shimmy_ring_msg msg;
	uint8_t buf[64];
	int rc;

	if (shimmy_share_member_create(&m, g->ring, g->ring_len, g->page, PG, 2))
		return NULL;
	for (;;) {
		rc = shimmy_share_claim(m, &msg, buf, sizeof(buf));
		if (rc == 0) {
			sched_yield();
			continue;
		}
		if (rc != 1)
			break;
		if (msg.seq == 0 || msg.seq > g->total ||
		    atomic_exchange(&g->seen[msg.seq], 1))
			atomic_fetch_add(&g->dup, 1);
		ma->got++;
	}
	shimmy_share_member_destroy(m);
	return NULL;
}

/* Reliable group, three members: every message claimed exactly once. */
static void test_exactly_once_threads(void **state)
{
	const uint64_t total = 100000;
	struct group g;
	struct member_arg ma[3];
	pthread_t th[3];
	uint64_t sum = 0;

	(void)state;
	group_init(&g, SHIMMY_RING_RELIABLE, total);
	for (int i = 0; i < 3; i++) {
		ma[i] = (struct member_arg){ .g = &g };
		assert_int_equal(pthread_create(&th[i], NULL, member_thread,
						&ma[i]), 0);
	}
	for (uint64_t s = 1; s <= total; s++)
		assert_int_equal(shimmy_ring_publish(g.w, NULL, 0, &s, sizeof(s),
						     1, 2000000000LL, 0), 0);
	shimmy_ring_writer_close(g.w);
	for (int i = 0; i < 3; i++) {
		pthread_join(th[i], NULL);
		sum += ma[i].got;
	}
	assert_int_equal(atomic_load(&g.dup), 0);
	assert_int_equal(sum, total);
	for (uint64_t s = 1; s <= total; s++)
		assert_int_equal(g.seen[s], 1);
	group_fini(&g);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_claim_basic),
		cmocka_unit_test(test_lossy_group_counts_loss),
		cmocka_unit_test(test_ready),
		cmocka_unit_test(test_scribbled_page),
		cmocka_unit_test(test_exactly_once_threads),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

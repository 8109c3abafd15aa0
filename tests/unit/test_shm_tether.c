/* Unit tests for shmpath/tether: the stuck-reader decision (pure), and the
 * seeding of a reader slot that tethers a reliable writer before the
 * reader has mapped the log. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>

#include <cmocka.h>

#include "mqtt/error.h"
#include "shmpath/ring.h"
#include "shmpath/tether.h"

#define CAP 65536u

static void test_check_needs_lag_and_stillness(void **state)
{
	(void)state;
	shimmy_tether t = { 0 };
	/* Far behind and still: stuck only once the timeout has passed. */
	assert_int_equal(shimmy_tether_check(&t, 0, CAP, CAP, 1000, 500), 0);
	assert_int_equal(shimmy_tether_check(&t, 0, CAP, CAP, 1499, 500), 0);
	assert_int_equal(shimmy_tether_check(&t, 0, CAP, CAP, 1500, 500), 1);
	/* Moving restarts the clock, however far behind. */
	assert_int_equal(shimmy_tether_check(&t, 64, CAP, CAP, 1600, 500), 0);
	assert_int_equal(shimmy_tether_check(&t, 64, CAP, CAP, 2099, 500), 0);
	assert_int_equal(shimmy_tether_check(&t, 64, CAP, CAP, 2100, 500), 1);
	/* Still but less than half a ring behind: holds nobody back. */
	shimmy_tether u = { 0 };
	uint64_t tail = 10 * CAP, pos = tail - CAP / 2 + 64;
	assert_int_equal(shimmy_tether_check(&u, pos, tail, CAP, 0, 100), 0);
	assert_int_equal(shimmy_tether_check(&u, pos, tail, CAP, 10000, 100), 0);
	/* The writer moves on: now it lags enough, and the clock starts
	 * there, not at the first sighting. */
	tail += 64;
	assert_int_equal(shimmy_tether_check(&u, pos, tail, CAP, 20000, 100), 0);
	assert_int_equal(shimmy_tether_check(&u, pos, tail, CAP, 20099, 100), 0);
	assert_int_equal(shimmy_tether_check(&u, pos, tail, CAP, 20100, 100), 1);
	/* Caught up: never stuck. */
	shimmy_tether c = { 0 };
	assert_int_equal(shimmy_tether_check(&c, tail, tail, CAP, 0, 0), 0);
	assert_int_equal(shimmy_tether_check(&c, tail, tail, CAP, 99999, 0), 0);
	/* A clock going backwards does not cut anyone. */
	shimmy_tether b = { 0 };
	assert_int_equal(shimmy_tether_check(&b, 0, CAP, CAP, 5000, 10), 0);
	assert_int_equal(shimmy_tether_check(&b, 0, CAP, CAP, 100, 10), 0);
}

struct fx {
	uint8_t *log;
	size_t log_len;
	uint8_t *slot;
};

static void fx_init(struct fx *f)
{
	f->log_len = shimmy_ring_region_size(CAP);
	f->log = mmap(NULL, f->log_len, PROT_READ | PROT_WRITE,
		      MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	f->slot = mmap(NULL, SHIMMY_RING_SLOT_SIZE, PROT_READ | PROT_WRITE,
		       MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	assert_true(f->log != MAP_FAILED && f->slot != MAP_FAILED);
	shimmy_ring_params p = { .flags = SHIMMY_RING_RELIABLE, .log_id = 1 };
	assert_int_equal(shimmy_ring_format(f->log, f->log_len, &p), 0);
	assert_int_equal(shimmy_ring_slot_format(f->slot, SHIMMY_RING_SLOT_SIZE), 0);
}

/* What the broker does to attach a reader: seed the slot with gen, then
 * set table entry idx ATTACHED. */
static void fx_attach(struct fx *f, uint32_t idx, uint64_t gen, unsigned flags)
{
	assert_int_equal(shimmy_tether_seed(f->log, f->log_len, f->slot,
					    SHIMMY_RING_SLOT_SIZE, gen, flags), 0);
	assert_int_equal(shimmy_ring_slot_set(f->log, f->log_len, idx,
					      SHIMMY_RING_SLOT_ATTACHED, gen), 0);
}

static void fx_fini(struct fx *f)
{
	munmap(f->log, f->log_len);
	munmap(f->slot, SHIMMY_RING_SLOT_SIZE);
}

static void test_seed_holds_reliable_writer(void **state)
{
	(void)state;
	struct fx f;
	fx_init(&f);
	shimmy_ring_writer *w;
	assert_int_equal(shimmy_ring_writer_create(&w, f.log, f.log_len), 0);
	/* Seeded at the head (0) and attached: nobody has created a reader
	 * on the slot, yet the writer must stop before lapping position 0. */
	fx_attach(&f, 3, 7, SHIMMY_RING_FROM_HEAD);
	assert_int_equal(shimmy_ring_writer_track(w, 3, 7, f.slot,
						  SHIMMY_RING_SLOT_SIZE, NULL), 0);
	uint8_t pay[1000] = { 0 };
	int n = 0, rc;
	while ((rc = shimmy_ring_publish(w, NULL, 0, pay, sizeof(pay), 1, 0,
					 0)) == 0)
		n++;
	assert_int_equal(rc, -EAGAIN);
	assert_true(n > 0 && (uint64_t)n * 1024 <= CAP);

	uint64_t pos = 1, tail = 0;
	assert_int_equal(shimmy_tether_read(f.log, f.log_len, f.slot,
					    SHIMMY_RING_SLOT_SIZE, 7, &pos,
					    &tail), 0);
	assert_int_equal(pos, 0);
	assert_true(tail >= CAP / 2);
	/* Another gen: no position to judge. */
	assert_int_equal(shimmy_tether_read(f.log, f.log_len, f.slot,
					    SHIMMY_RING_SLOT_SIZE, 8, &pos,
					    &tail), 1);

	/* The reader maps it later and reads everything: no loss. */
	shimmy_ring_reader *r;
	assert_int_equal(shimmy_ring_reader_create(&r, f.log, f.log_len, f.slot,
						   SHIMMY_RING_SLOT_SIZE, 3, 7,
						   SHIMMY_RING_FROM_HEAD), 0);
	shimmy_ring_msg m;
	uint8_t buf[2048];
	int got = 0;
	while ((rc = shimmy_ring_receive(r, &m, buf, sizeof(buf))) == 1) {
		assert_int_equal(m.lost, 0);
		assert_int_equal(m.flags & SHIMMY_MSG_QOS_MASK, 1);
		got++;
	}
	assert_int_equal(got, n);
	assert_int_equal(shimmy_ring_reader_lost(r), 0);
	/* And the writer has room again. */
	assert_int_equal(shimmy_ring_publish(w, NULL, 0, pay, sizeof(pay), 1, 0, 0), 0);

	/* A FROM_TAIL seed starts at the tail: far ahead of an old reader. */
	assert_int_equal(shimmy_tether_seed(f.log, f.log_len, f.slot,
					    SHIMMY_RING_SLOT_SIZE, 9,
					    SHIMMY_RING_FROM_TAIL), 0);
	assert_int_equal(shimmy_tether_read(f.log, f.log_len, f.slot,
					    SHIMMY_RING_SLOT_SIZE, 9, &pos,
					    &tail), 0);
	assert_int_equal(pos, tail);
	shimmy_ring_reader_destroy(r);
	shimmy_ring_writer_destroy(w);
	fx_fini(&f);
}

/* A reader attached to a running reliable log is held for from the moment
 * its entry is ATTACHED, before the writer has processed its READER_ADD
 * (docs/shm-protocol.md §6). */
static void test_attached_untracked_reader_is_not_lapped(void **state)
{
	(void)state;
	struct fx f;
	fx_init(&f);
	shimmy_ring_writer *w;
	assert_int_equal(shimmy_ring_writer_create(&w, f.log, f.log_len), 0);
	uint8_t pay[1000] = { 0 };
	int n, rc = 0;
	/* Running: three laps with nobody attached. */
	for (n = 0; n < 3 * (int)(CAP / 1024); n++)
		assert_int_equal(shimmy_ring_publish(w, NULL, 0, pay, sizeof(pay),
						     1, 0, 0), 0);
	/* The broker attaches a reader (seed, then ATTACHED) and its client
	 * maps the log; the writer never hears READER_ADD. */
	fx_attach(&f, 4, 5, SHIMMY_RING_FROM_TAIL);
	shimmy_ring_reader *r;
	assert_int_equal(shimmy_ring_reader_create(&r, f.log, f.log_len, f.slot,
						   SHIMMY_RING_SLOT_SIZE, 4, 5,
						   SHIMMY_RING_FROM_TAIL), 0);
	/* The writer may fill what is free, never lap the reader. */
	for (n = 0; n < 2 * (int)(CAP / 1024); n++) {
		rc = shimmy_ring_publish(w, NULL, 0, pay, sizeof(pay), 1, 0, 0);
		if (rc)
			break;
	}
	assert_int_equal(rc, -EAGAIN);
	assert_true(n > 0 && (uint64_t)n * 1024 <= CAP);
	shimmy_ring_msg m;
	uint8_t buf[2048];
	int got = 0;
	while ((rc = shimmy_ring_receive(r, &m, buf, sizeof(buf))) == 1) {
		assert_int_equal(m.lost, 0);
		got++;
	}
	assert_int_equal(rc, 0);
	assert_int_equal(got, n);
	assert_int_equal(shimmy_ring_reader_lost(r), 0);
	/* Still unseen (it has read everything, but the writer cannot know):
	 * no room, also when tracking the entry under a stale gen. */
	assert_int_equal(shimmy_ring_publish(w, NULL, 0, pay, sizeof(pay), 1, 0,
					     0), -EAGAIN);
	assert_int_equal(shimmy_ring_writer_track(w, 4, 4, f.slot,
						  SHIMMY_RING_SLOT_SIZE, NULL), 0);
	assert_int_equal(shimmy_ring_publish(w, NULL, 0, pay, sizeof(pay), 1, 0,
					     0), -EAGAIN);
	/* READER_ADD processed: room again. */
	assert_int_equal(shimmy_ring_writer_track(w, 4, 5, f.slot,
						  SHIMMY_RING_SLOT_SIZE, NULL), 0);
	assert_int_equal(shimmy_ring_publish(w, NULL, 0, pay, sizeof(pay), 1, 0,
					     0), 0);
	/* Cut loose (DETACHED) or gone (FREE): nobody to wait for. */
	shimmy_ring_writer_untrack(w, 4);
	assert_int_equal(shimmy_ring_slot_set(f.log, f.log_len, 4,
					      SHIMMY_RING_SLOT_DETACHED, 5), 0);
	for (n = 0; n < 3 * (int)(CAP / 1024); n++)
		assert_int_equal(shimmy_ring_publish(w, NULL, 0, pay, sizeof(pay),
						     1, 0, 0), 0);
	shimmy_ring_reader_destroy(r);
	shimmy_ring_writer_destroy(w);
	fx_fini(&f);
}

static void test_seed_and_read_validate(void **state)
{
	(void)state;
	struct fx f;
	fx_init(&f);
	uint64_t pos, tail;
	/* Bad arguments. */
	assert_int_equal(shimmy_tether_seed(f.log, f.log_len, f.slot, 100, 1, 0),
			 MQTT_ERR_INVALID);
	assert_int_equal(shimmy_tether_seed(f.log, f.log_len, f.slot,
					    SHIMMY_RING_SLOT_SIZE, 0, 0),
			 MQTT_ERR_INVALID);
	assert_int_equal(shimmy_tether_seed(f.log, f.log_len, f.slot,
					    SHIMMY_RING_SLOT_SIZE, 1, 0x80),
			 MQTT_ERR_INVALID);
	/* A publisher scribbled over its header: refused, nothing written. */
	uint8_t saved[64];
	memcpy(saved, f.log, sizeof(saved));
	memset(f.log, 0xee, 16);
	assert_int_equal(shimmy_tether_seed(f.log, f.log_len, f.slot,
					    SHIMMY_RING_SLOT_SIZE, 1, 0),
			 MQTT_ERR_MALFORMED);
	assert_int_equal(shimmy_tether_read(f.log, f.log_len, f.slot,
					    SHIMMY_RING_SLOT_SIZE, 1, &pos,
					    &tail),
			 MQTT_ERR_MALFORMED);
	memcpy(f.log, saved, sizeof(saved));
	/* A misaligned tail (offset 72) is malformed, not a position. */
	uint64_t bad = 65;
	memcpy(f.log + 72, &bad, sizeof(bad));
	assert_int_equal(shimmy_tether_seed(f.log, f.log_len, f.slot,
					    SHIMMY_RING_SLOT_SIZE, 1,
					    SHIMMY_RING_FROM_TAIL),
			 MQTT_ERR_MALFORMED);
	/* A reader claiming to be ahead of the tail is clamped to it. */
	uint64_t t = 128, ahead = 1u << 20;
	memcpy(f.log + 72, &t, sizeof(t));
	assert_int_equal(shimmy_tether_seed(f.log, f.log_len, f.slot,
					    SHIMMY_RING_SLOT_SIZE, 2,
					    SHIMMY_RING_FROM_TAIL), 0);
	memcpy(f.slot + 64, &ahead, sizeof(ahead)); /* slot position */
	assert_int_equal(shimmy_tether_read(f.log, f.log_len, f.slot,
					    SHIMMY_RING_SLOT_SIZE, 2, &pos,
					    &tail), 0);
	assert_int_equal(tail, 128);
	assert_int_equal(pos, 128);
	/* Not a slot page. */
	memset(f.slot, 0, 8);
	assert_int_equal(shimmy_tether_read(f.log, f.log_len, f.slot,
					    SHIMMY_RING_SLOT_SIZE, 2, &pos,
					    &tail),
			 MQTT_ERR_INVALID);
	fx_fini(&f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_check_needs_lag_and_stillness),
		cmocka_unit_test(test_seed_holds_reliable_writer),
		cmocka_unit_test(test_attached_untracked_reader_is_not_lapped),
		cmocka_unit_test(test_seed_and_read_validate),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

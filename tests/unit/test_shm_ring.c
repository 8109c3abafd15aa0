/*
 * tests/unit/test_shm_ring.c — the SPMC broadcast log: copy and zero-copy
 * paths, wrap-around, lapping with exact loss counts, reliable mode flow
 * control and detach, closing, hostile segment contents, and stress across
 * threads and processes.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "mqtt/error.h"
#include "shmpath/notify.h"
#include "shmpath/ring.h"
#include "shmpath/ring_int.h"
#include "shmpath/segment.h"
#include "shmpath/tether.h"

#define NSLOTS 8
#define PG 4096u

/* A log, NSLOTS reader slot pages and NSLOTS bells in one MAP_SHARED
 * anonymous mapping, so forked children share it. */
struct fx {
	uint8_t *mem;
	size_t mem_len;
	uint8_t *ring;
	size_t ring_len;
	uint8_t *slots;
	uint8_t *bells;
	shimmy_ring_writer *w;
};

static void fx_init(struct fx *f, size_t cap, uint32_t flags)
{
	shimmy_ring_params p = { .flags = flags, .readers_max = NSLOTS };

	f->ring_len = shimmy_ring_region_size(cap);
	f->mem_len = f->ring_len + (NSLOTS + 1) * PG;
	f->mem = mmap(NULL, f->mem_len, PROT_READ | PROT_WRITE,
		      MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	assert_true(f->mem != MAP_FAILED);
	f->ring = f->mem;
	f->slots = f->mem + f->ring_len;
	f->bells = f->slots + NSLOTS * PG;
	assert_int_equal(shimmy_ring_format(f->ring, f->ring_len, &p), 0);
	assert_int_equal(shimmy_ring_writer_create(&f->w, f->ring, f->ring_len), 0);
}

static void fx_fini(struct fx *f)
{
	shimmy_ring_writer_destroy(f->w);
	munmap(f->mem, f->mem_len);
}

static shimmy_bell *fx_bell(struct fx *f, uint32_t idx)
{
	return (shimmy_bell *)(void *)(f->bells + idx * 64);
}

/* Broker steps of an attach: slot page, reader, table entry, tracking. */
static shimmy_ring_reader *fx_reader(struct fx *f, uint32_t idx, unsigned flags)
{
	shimmy_ring_reader *r;
	uint8_t *slot = f->slots + idx * PG;

	assert_int_equal(shimmy_ring_slot_format(slot, PG), 0);
	assert_int_equal(shimmy_ring_reader_create(&r, f->ring, f->ring_len,
						   slot, PG, idx, 100 + idx,
						   flags), 0);
	assert_int_equal(shimmy_ring_slot_set(f->ring, f->ring_len, idx,
					      SHIMMY_RING_SLOT_ATTACHED,
					      100 + idx), 0);
	assert_non_null(shimmy_bell_init(fx_bell(f, idx), 64));
	assert_int_equal(shimmy_ring_writer_track(f->w, idx, 100 + idx,
						  slot, PG, fx_bell(f, idx)), 0);
	return r;
}

static void fill(uint8_t *p, uint32_t n, uint64_t seq)
{
	for (uint32_t i = 0; i < n; i++)
		p[i] = (uint8_t)(seq * 31 + i);
}

static int check_fill(const uint8_t *p, uint32_t n, uint64_t seq)
{
	for (uint32_t i = 0; i < n; i++)
		if (p[i] != (uint8_t)(seq * 31 + i))
			return 0;
	return 1;
}

static int pub(shimmy_ring_writer *w, uint64_t seq, uint32_t n, int64_t to)
{
	uint8_t buf[8192];

	fill(buf, n, seq);
	return shimmy_ring_publish(w, NULL, 0, buf, n, 0, to, 0);
}

static void test_publish_receive(void **state)
{
	struct fx f;
	shimmy_ring_reader *r;
	shimmy_ring_msg m;
	uint8_t buf[256];
	const uint8_t props[] = { 0x01, 0x01 }; /* payload format: utf8 */

	(void)state;
	fx_init(&f, 64 << 10, 0);
	r = fx_reader(&f, 0, SHIMMY_RING_FROM_TAIL);
	assert_int_equal(shimmy_ring_receive(r, &m, buf, sizeof(buf)), 0);
	assert_int_equal(shimmy_ring_publish(f.w, props, 2, "hello", 5,
					     1 | SHIMMY_MSG_RETAIN, 0, 0), 0);
	assert_int_equal(shimmy_ring_reader_ready(r), 1);
	/* Too small a buffer: told the sizes, nothing consumed. */
	assert_int_equal(shimmy_ring_receive(r, &m, buf, 3), MQTT_ERR_NOSPACE);
	assert_int_equal(m.props_len, 2);
	assert_int_equal(m.payload_len, 5);
	assert_int_equal(shimmy_ring_receive(r, &m, buf, sizeof(buf)), 1);
	assert_int_equal(m.seq, 1);
	assert_int_equal(m.lost, 0);
	assert_int_equal(m.flags, 1 | SHIMMY_MSG_RETAIN);
	assert_memory_equal(m.props, props, 2);
	assert_memory_equal(m.payload, "hello", 5);
	assert_ptr_equal(m.props, buf);
	assert_int_equal(shimmy_ring_receive(r, &m, buf, sizeof(buf)), 0);
	assert_int_equal(shimmy_ring_reader_ready(r), 0);
	/* Empty message. */
	assert_int_equal(shimmy_ring_publish(f.w, NULL, 0, NULL, 0, 0, 0, 0), 0);
	assert_int_equal(shimmy_ring_receive(r, &m, buf, sizeof(buf)), 1);
	assert_int_equal(m.seq, 2);
	assert_int_equal(m.payload_len, 0);
	/* Bad flags and oversize records are refused by the writer. */
	assert_int_equal(shimmy_ring_publish(f.w, NULL, 0, "x", 1, 3, 0, 0),
			 MQTT_ERR_INVALID);
	assert_int_equal(shimmy_ring_publish(f.w, NULL, 0, buf, 20000, 0, 0, 0),
			 MQTT_ERR_TOO_LARGE);
	assert_int_equal(pub(f.w, 3, 10, 0), 0);
	assert_int_equal(shimmy_ring_receive(r, &m, buf, sizeof(buf)), 1);
	assert_int_equal(m.seq, 3);
	assert_true(check_fill(m.payload, 10, 3));
	shimmy_ring_reader_destroy(r);
	fx_fini(&f);
}

static void test_loan_borrow(void **state)
{
	struct fx f;
	shimmy_ring_reader *r;
	shimmy_ring_loan l, l2;
	shimmy_ring_msg m;

	(void)state;
	fx_init(&f, 64 << 10, 0);
	r = fx_reader(&f, 0, SHIMMY_RING_FROM_TAIL);
	/* An aborted loan is never seen and does not use a seq. */
	assert_int_equal(shimmy_ring_reserve(f.w, 0, 100, 0, &l), 0);
	assert_int_equal(shimmy_ring_reserve(f.w, 0, 100, 0, &l2), -EBUSY);
	shimmy_ring_abort(f.w, &l);
	assert_int_equal(shimmy_ring_borrow(r, &m), 0);
	assert_int_equal(shimmy_ring_reserve(f.w, 3, 1000, 0, &l), 0);
	assert_int_equal(l.seq, 1);
	assert_true(l.props >= f.ring + SHIMMY_RING_HDR_SIZE &&
		    l.payload + 1000 <= f.ring + f.ring_len);
	memcpy(l.props, "\x01\x00\x00", 3);
	fill(l.payload, 1000, 1);
	/* Not visible before commit. */
	assert_int_equal(shimmy_ring_borrow(r, &m), 0);
	assert_int_equal(shimmy_ring_commit(f.w, &l, 1, 0), 0);
	assert_int_equal(shimmy_ring_commit(f.w, &l, 1, 0), MQTT_ERR_INVALID);
	assert_int_equal(shimmy_ring_borrow(r, &m), 1);
	/* Zero copy: the message is where the writer put it. */
	assert_ptr_equal(m.payload, l.payload);
	assert_int_equal(m.props_len, 3);
	assert_true(check_fill(m.payload, 1000, 1));
	assert_int_equal(shimmy_ring_borrow(r, &m), -EBUSY);
	assert_int_equal(shimmy_ring_release(r, &m), 0);
	assert_int_equal(shimmy_ring_release(r, &m), MQTT_ERR_INVALID);
	assert_int_equal(shimmy_ring_borrow(r, &m), 0);
	shimmy_ring_reader_destroy(r);
	fx_fini(&f);
}

/* Position batching: the slot's position moves every n records, and at
 * once when the reader finds the log empty or calls sync. */
static void test_position_batching(void **state)
{
	struct fx f;
	shimmy_ring_reader *r;
	shimmy_ring_msg m;
	const struct slot_page *sp;
	uint64_t p0;

	(void)state;
	fx_init(&f, 64 << 10, SHIMMY_RING_RELIABLE);
	r = fx_reader(&f, 0, SHIMMY_RING_FROM_TAIL);
	sp = (const struct slot_page *)(const void *)f.slots;
	shimmy_ring_reader_set_batch(r, 4);
	p0 = atomic_load(&sp->position);
	/* 10-byte payloads: short records of 32 bytes. */
	for (uint64_t i = 1; i <= 6; i++)
		assert_int_equal(pub(f.w, i, 10, 0), 0);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(shimmy_ring_borrow(r, &m), 1);
		assert_int_equal(shimmy_ring_release(r, &m), 0);
	}
	assert_int_equal(atomic_load(&sp->position), p0); /* 3 < 4 */
	assert_int_equal(shimmy_ring_borrow(r, &m), 1);
	assert_int_equal(shimmy_ring_release(r, &m), 0);
	assert_int_equal(atomic_load(&sp->position), p0 + 4 * 32);
	assert_int_equal(shimmy_ring_borrow(r, &m), 1);
	assert_int_equal(shimmy_ring_release(r, &m), 0);
	assert_int_equal(atomic_load(&sp->position), p0 + 4 * 32);
	shimmy_ring_reader_sync(r);
	assert_int_equal(atomic_load(&sp->position), p0 + 5 * 32);
	assert_int_equal(shimmy_ring_borrow(r, &m), 1);
	assert_int_equal(shimmy_ring_release(r, &m), 0);
	assert_int_equal(shimmy_ring_borrow(r, &m), 0); /* empty: published */
	assert_int_equal(atomic_load(&sp->position), p0 + 6 * 32);
	shimmy_ring_reader_destroy(r);
	fx_fini(&f);
}

static void test_wrap_around(void **state)
{
	struct fx f;
	shimmy_ring_reader *r;
	shimmy_ring_msg m;
	uint8_t buf[8192];
	uint64_t seq;
	uint32_t n;

	(void)state;
	fx_init(&f, 64 << 10, 0);
	r = fx_reader(&f, 0, SHIMMY_RING_FROM_TAIL);
	/* Sizes that land records at every alignment near the end, over
	 * many laps; the reader keeps pace so nothing is lost. */
	for (seq = 1; seq <= 3000; seq++) {
		n = (uint32_t)((seq * 977) % 4000);
		assert_int_equal(pub(f.w, seq, n, 0), 0);
		assert_int_equal(shimmy_ring_receive(r, &m, buf, sizeof(buf)), 1);
		assert_int_equal(m.seq, seq);
		assert_int_equal(m.lost, 0);
		assert_int_equal(m.payload_len, n);
		assert_true(check_fill(m.payload, n, seq));
	}
	/* The same with borrow, and with a backlog of half the ring. */
	for (seq = 3001; seq <= 6000; seq += 10) {
		for (uint64_t k = 0; k < 10; k++)
			assert_int_equal(pub(f.w, seq + k, 2500, 0), 0);
		for (uint64_t k = 0; k < 10; k++) {
			assert_int_equal(shimmy_ring_borrow(r, &m), 1);
			assert_int_equal(m.seq, seq + k);
			assert_true(check_fill(m.payload, 2500, seq + k));
			assert_int_equal(shimmy_ring_release(r, &m), 0);
		}
	}
	assert_int_equal(shimmy_ring_reader_lost(r), 0);
	shimmy_ring_reader_destroy(r);
	fx_fini(&f);
}

static void test_lapping_exact_loss(void **state)
{
	struct fx f;
	shimmy_ring_reader *r, *late;
	shimmy_ring_msg m;
	uint8_t buf[256];
	uint64_t got = 0, lost = 0, last = 0, first = 0;
	const uint64_t total = 2000; /* 2000 x 128 B = 4 laps of 64 KiB */
	int rc;

	(void)state;
	fx_init(&f, 64 << 10, 0);
	r = fx_reader(&f, 0, SHIMMY_RING_FROM_TAIL);
	for (uint64_t s = 1; s <= total; s++)
		assert_int_equal(pub(f.w, s, 96, 0), 0); /* 32 + 96 = 128 B */
	late = fx_reader(&f, 1, SHIMMY_RING_FROM_HEAD);
	while ((rc = shimmy_ring_receive(r, &m, buf, sizeof(buf))) == 1) {
		if (!first) {
			first = m.seq;
			/* Everything before the first survivor was lost. */
			assert_int_equal(m.lost, m.seq - 1);
		} else {
			assert_int_equal(m.seq, last + 1);
			assert_int_equal(m.lost, 0);
		}
		assert_true(check_fill(m.payload, 96, m.seq));
		lost += m.lost;
		last = m.seq;
		got++;
	}
	assert_int_equal(rc, 0);
	assert_int_equal(last, total);
	assert_int_equal(got + lost, total);
	assert_int_equal(shimmy_ring_reader_lost(r), lost);
	/* Resync went to the oldest intact record: at least the effective
	 * capacity (cap - cap/16 - one record) is still delivered. */
	assert_true(got * 128 >= (64 << 10) - (4 << 10) - 256);
	/* A reader attached from head sees the same survivors, no loss. */
	assert_int_equal(shimmy_ring_receive(late, &m, buf, sizeof(buf)), 1);
	assert_int_equal(m.seq, first);
	assert_int_equal(m.lost, 0);
	/* Lapped again mid-stream: loss reported on the next message. */
	for (uint64_t s = total + 1; s <= total + 1000; s++)
		assert_int_equal(pub(f.w, s, 96, 0), 0);
	assert_int_equal(shimmy_ring_receive(late, &m, buf, sizeof(buf)), 1);
	assert_true(m.lost > 0);
	assert_int_equal(m.seq, first + 1 + m.lost);
	shimmy_ring_reader_destroy(late);
	shimmy_ring_reader_destroy(r);
	fx_fini(&f);
}

/* A reader of a new lossy log, attached from the head (the broker seeded
 * its slot at 0) but created only after the writer lapped the ring,
 * counts everything from seq 1 it missed: delivered + lost = published.
 * A slot not seeded for this gen starts blind at the head, as before. */
static void test_late_reader_of_new_log_counts_loss(void **state)
{
	struct fx f;
	shimmy_ring_reader *r, *blind;
	shimmy_ring_msg m;
	uint8_t buf[256];
	uint8_t *slot = NULL;
	uint64_t got = 0, lost = 0, last = 0;
	const uint64_t total = 2000; /* 4 laps of 64 KiB */
	int rc;

	(void)state;
	fx_init(&f, 64 << 10, 0);
	slot = f.slots;
	assert_int_equal(shimmy_ring_slot_format(slot, PG), 0);
	assert_int_equal(shimmy_tether_seed(f.ring, f.ring_len, slot, PG, 7,
					    SHIMMY_RING_FROM_HEAD), 0);
	for (uint64_t s = 1; s <= total; s++)
		assert_int_equal(pub(f.w, s, 96, 0), 0);
	assert_int_equal(shimmy_ring_reader_create(&r, f.ring, f.ring_len, slot,
						   PG, 0, 7, SHIMMY_RING_FROM_HEAD), 0);
	while ((rc = shimmy_ring_receive(r, &m, buf, sizeof(buf))) == 1) {
		if (!got)
			assert_int_equal(m.lost, m.seq - 1);
		lost += m.lost;
		last = m.seq;
		got++;
	}
	assert_int_equal(rc, 0);
	assert_int_equal(last, total);
	assert_true(lost > 0);
	assert_int_equal(got + lost, total);
	assert_int_equal(shimmy_ring_reader_lost(r), lost);
	/* Seeded under another gen: not ours, so no claim on seq 1. */
	assert_int_equal(shimmy_ring_reader_create(&blind, f.ring, f.ring_len,
						   slot, PG, 0, 8,
						   SHIMMY_RING_FROM_HEAD), 0);
	assert_int_equal(shimmy_ring_receive(blind, &m, buf, sizeof(buf)), 1);
	assert_int_equal(m.lost, 0);
	shimmy_ring_reader_destroy(blind);
	shimmy_ring_reader_destroy(r);
	fx_fini(&f);
}

/* The head the writer publishes for lapped readers' resync stays on a
 * record start while it skips runs of short records without reading
 * them: short records mixed with long ones, singly and by reserve_many,
 * over many laps; a reader lapped again and again still counts exactly. */
static void test_head_over_short_runs(void **state)
{
	struct fx f;
	struct ring_view v;
	struct rec_view rv;
	shimmy_ring_reader *r;
	shimmy_ring_msg m;
	shimmy_ring_loan loans[8];
	uint8_t buf[4096];
	uint64_t seq = 1, got = 0, lost = 0;
	int rc;

	(void)state;
	fx_init(&f, 64 << 10, 0);
	assert_int_equal(ring_view_init(&v, f.ring, f.ring_len), 0);
	r = fx_reader(&f, 0, SHIMMY_RING_FROM_TAIL);
	/* Runs of short records longer than the ring (2048 of them fill
	 * 64 KiB), between them long records, singly and by reserve_many,
	 * at different offsets; short batches now and then. */
	for (int round = 0; round < 60000; round++) {
		int phase = round % 6000;
		if (phase == 5999 || phase == 3301) {
			int k = shimmy_ring_reserve_many(f.w, 0, 900 + round % 7 * 32,
							 4, 0, loans);
			assert_true(k >= 1);
			for (int i = 0; i < k; i++)
				fill(loans[i].payload, loans[i].payload_len,
				     seq + (uint64_t)i);
			assert_int_equal(shimmy_ring_commit_many(f.w, loans, (unsigned)k, 0, 0), 0);
			seq += (uint64_t)k;
		} else if (round % 5 == 2) {
			int k = shimmy_ring_reserve_many(f.w, 0, 16, 8, 0, loans);
			assert_true(k >= 1);
			for (int i = 0; i < k; i++)
				fill(loans[i].payload, 16, seq + (uint64_t)i);
			assert_int_equal(shimmy_ring_commit_many(f.w, loans, (unsigned)k, 0, 0), 0);
			seq += (uint64_t)k;
		} else {
			assert_int_equal(pub(f.w, seq, phase == 700 ? 3000 + round % 11 * 8 : 16, 0),
					 0);
			seq++;
		}
		uint64_t head = atomic_load(&((struct ring_hdr *)(void *)f.ring)->head);
		uint64_t tail = atomic_load(&((struct ring_hdr *)(void *)f.ring)->tail);
		if (head < tail) {
			rc = ring_rec_peek(&v, head, &rv);
			assert_true(rc == REC_OK || rc == REC_PAD);
		}
		/* The reader reads now and then: lapped in between. */
		if (round % 3001 == 3000)
			while ((rc = shimmy_ring_receive(r, &m, buf, sizeof(buf))) == 1) {
				assert_true(check_fill(m.payload, m.payload_len, m.seq));
				lost += m.lost;
				got++;
			}
	}
	while ((rc = shimmy_ring_receive(r, &m, buf, sizeof(buf))) == 1) {
		lost += m.lost;
		got++;
	}
	assert_int_equal(rc, 0);
	assert_true(lost > 0);
	assert_int_equal(got + lost, seq - 1);
	shimmy_ring_reader_destroy(r);
	fx_fini(&f);
}

static void test_reliable_blocks(void **state)
{
	struct fx f;
	shimmy_ring_reader *r;
	shimmy_ring_msg m;
	uint8_t buf[256];
	uint64_t s = 1;
	struct timespec t0, t1;
	int64_t waited;

	(void)state;
	fx_init(&f, 64 << 10, SHIMMY_RING_RELIABLE);
	r = fx_reader(&f, 0, SHIMMY_RING_FROM_TAIL);
	while (pub(f.w, s, 96, 0) == 0)
		s++;
	/* Held back by the reader: roughly cap - cap/16 of 128 B records. */
	assert_true((s - 1) * 128 >= (64 << 10) - (4 << 10) - 128);
	assert_true((s - 1) * 128 <= (64 << 10));
	assert_int_equal(pub(f.w, s, 96, 0), -EAGAIN);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	assert_int_equal(pub(f.w, s, 96, 5000000), -ETIMEDOUT);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	waited = (t1.tv_sec - t0.tv_sec) * 1000000000LL + t1.tv_nsec - t0.tv_nsec;
	assert_true(waited >= 5000000);
	/* The reader moves on: the writer may proceed, nothing was lost. */
	for (int i = 0; i < 64; i++) {
		assert_int_equal(shimmy_ring_receive(r, &m, buf, sizeof(buf)), 1);
		assert_int_equal(m.seq, (uint64_t)i + 1);
	}
	assert_int_equal(pub(f.w, s, 96, 0), 0);
	s++;
	/* A dead reader (slot freed by the broker) stops holding it back. */
	while (pub(f.w, s, 96, 0) == 0)
		s++;
	assert_int_equal(shimmy_ring_slot_set(f.ring, f.ring_len, 0,
					      SHIMMY_RING_SLOT_FREE, 100), 0);
	for (int i = 0; i < 2000; i++, s++)
		assert_int_equal(pub(f.w, s, 96, 0), 0);
	shimmy_ring_reader_destroy(r);
	fx_fini(&f);
}

static void test_reliable_detach(void **state)
{
	struct fx f;
	shimmy_ring_reader *r, *ok;
	shimmy_ring_msg m;
	uint8_t buf[256];
	uint64_t s = 1;
	int rc = 1, n;

	(void)state;
	fx_init(&f, 64 << 10, SHIMMY_RING_RELIABLE);
	r = fx_reader(&f, 0, SHIMMY_RING_FROM_TAIL);
	ok = fx_reader(&f, 1, SHIMMY_RING_FROM_TAIL);
	while (pub(f.w, s, 96, 0) == 0)
		s++;
	while (shimmy_ring_receive(ok, &m, buf, sizeof(buf)) == 1)
		;
	/* The stuck reader is cut loose (the broker's tether decides when,
	 * shmpath/tether.h); the caught-up one reads on. */
	assert_int_equal(shimmy_ring_writer_detach(f.w, 0), 0);
	for (int i = 0; i < 1500; i++, s++) {
		assert_int_equal(pub(f.w, s, 96, 0), 0);
		assert_int_equal(shimmy_ring_receive(ok, &m, buf, sizeof(buf)), 1);
		assert_int_equal(m.seq, s);
	}
	/* The detached reader drains what was intact, then learns it. */
	for (n = 0; n < 10000 && rc == 1; n++)
		rc = shimmy_ring_receive(r, &m, buf, sizeof(buf));
	assert_int_equal(rc, -ENOLINK);
	assert_int_equal(shimmy_ring_receive(r, &m, buf, sizeof(buf)), -ENOLINK);
	assert_int_equal(shimmy_ring_reader_ready(r), 1);
	/* An explicit detach works the same way. */
	assert_int_equal(shimmy_ring_writer_detach(f.w, 1), 0);
	assert_int_equal(shimmy_ring_receive(ok, &m, buf, sizeof(buf)), -ENOLINK);
	shimmy_ring_reader_destroy(ok);
	shimmy_ring_reader_destroy(r);
	fx_fini(&f);
}

static void test_many_readers_and_close(void **state)
{
	struct fx f;
	shimmy_ring_reader *r[NSLOTS];
	shimmy_ring_msg m;
	uint8_t buf[2048];

	(void)state;
	fx_init(&f, 64 << 10, SHIMMY_RING_RELIABLE);
	for (uint32_t i = 0; i < NSLOTS; i++)
		r[i] = fx_reader(&f, i, SHIMMY_RING_FROM_TAIL);
	for (uint64_t s = 1; s <= 5000; s++) {
		assert_int_equal(pub(f.w, s, (uint32_t)(s % 1500), 0), 0);
		for (uint32_t i = 0; i < NSLOTS; i++) {
			if ((s + i) % 3)
				continue; /* readers drain at different times */
			while (shimmy_ring_receive(r[i], &m, buf, sizeof(buf)) == 1)
				assert_true(check_fill(m.payload, m.payload_len,
						       m.seq));
		}
	}
	shimmy_ring_writer_close(f.w);
	for (uint32_t i = 0; i < NSLOTS; i++) {
		int rc;

		while ((rc = shimmy_ring_receive(r[i], &m, buf, sizeof(buf))) == 1)
			;
		assert_int_equal(rc, -EPIPE);
		assert_int_equal(shimmy_ring_reader_lost(r[i]), 0);
		shimmy_ring_reader_destroy(r[i]);
	}
	fx_fini(&f);
}

/* A writer that resumes an existing log continues its sequence. */
static void test_writer_resume(void **state)
{
	struct fx f;
	shimmy_ring_reader *r;
	shimmy_ring_msg m;
	uint8_t buf[256];

	(void)state;
	fx_init(&f, 64 << 10, 0);
	r = fx_reader(&f, 0, SHIMMY_RING_FROM_TAIL);
	assert_int_equal(pub(f.w, 1, 10, 0), 0);
	shimmy_ring_writer_destroy(f.w);
	assert_int_equal(shimmy_ring_writer_create(&f.w, f.ring, f.ring_len), 0);
	assert_int_equal(pub(f.w, 2, 10, 0), 0);
	assert_int_equal(shimmy_ring_receive(r, &m, buf, sizeof(buf)), 1);
	assert_int_equal(shimmy_ring_receive(r, &m, buf, sizeof(buf)), 1);
	assert_int_equal(m.seq, 2);
	shimmy_ring_reader_destroy(r);
	fx_fini(&f);
}

/* ---- hostile segment contents ---------------------------------------- */

static void test_garbage_header_rejected(void **state)
{
	struct fx f;
	shimmy_ring_reader *r;
	uint8_t slot[PG] __attribute__((aligned(64)));
	struct ring_hdr *h;
	struct ring_hdr saved;

	(void)state;
	fx_init(&f, 64 << 10, 0);
	h = (struct ring_hdr *)(void *)f.ring;
	memcpy(&saved, h, sizeof(saved));
	assert_int_equal(shimmy_ring_slot_format(slot, sizeof(slot)), 0);
#define REJECT(stmt)                                                         \
	do {                                                                 \
		stmt;                                                        \
		assert_int_equal(shimmy_ring_reader_create(&r, f.ring,       \
				 f.ring_len, slot, sizeof(slot), 0, 1, 0),    \
				 MQTT_ERR_MALFORMED);                         \
		memcpy(h, &saved, sizeof(saved));                            \
	} while (0)
	REJECT(h->magic = 0);
	REJECT(h->version = 1);             /* shm/1: 64-byte records only */
	REJECT(h->version = 3);
	REJECT(h->align = 64);
	REJECT(h->data_cap = 1ull << 40);   /* beyond the mapping */
	REJECT(h->data_cap = 3 << 14);      /* not a power of two */
	REJECT(h->data_off = 0);
	REJECT(h->max_record = 1 << 30);
	REJECT(h->max_record = 100);
	REJECT(h->readers_max = 100000);
	REJECT(h->lookahead = 0);
	REJECT(h->flags = 0x80);
	REJECT(atomic_store(&h->head, 13); h->flags = 0;
	       assert_int_equal(shimmy_ring_reader_create(&r, f.ring, f.ring_len,
				slot, sizeof(slot), 0, 1, SHIMMY_RING_FROM_HEAD),
				MQTT_ERR_MALFORMED); h->magic = 0);
#undef REJECT
	/* Too short a region or a misaligned one. */
	assert_int_equal(shimmy_ring_reader_create(&r, f.ring, 4096, slot,
						   sizeof(slot), 0, 1, 0),
			 MQTT_ERR_MALFORMED);
	assert_int_equal(shimmy_ring_reader_create(&r, f.ring + 8, f.ring_len - 8,
						   slot, sizeof(slot), 0, 1, 0),
			 MQTT_ERR_MALFORMED);
	fx_fini(&f);
}

/* A corrupt record at the reader's position: both read paths reject it. */
static void assert_both_malformed(shimmy_ring_reader *r)
{
	shimmy_ring_msg m;
	uint8_t buf[256];

	assert_int_equal(shimmy_ring_receive(r, &m, buf, sizeof(buf)),
			 MQTT_ERR_MALFORMED);
	assert_int_equal(shimmy_ring_borrow(r, &m), MQTT_ERR_MALFORMED);
}

static void test_corrupt_records_rejected(void **state)
{
	struct fx f;
	shimmy_ring_reader *r;
	shimmy_ring_msg m;
	uint8_t buf[256];
	struct rec_hdr *rec;
	struct rec_hdr saved;

	(void)state;
	fx_init(&f, 64 << 10, 0);
	r = fx_reader(&f, 0, SHIMMY_RING_FROM_TAIL);
	assert_int_equal(pub(f.w, 1, 32, 0), 0); /* long: 32 + 32 = 64 B */
	rec = (struct rec_hdr *)(void *)(f.ring + SHIMMY_RING_HDR_SIZE);
	memcpy(&saved, rec, sizeof(saved));
#define BAD(stmt)                                                            \
	do {                                                                 \
		stmt;                                                        \
		assert_both_malformed(r);                                    \
		memcpy(rec, &saved, sizeof(saved));                          \
	} while (0)
	BAD(rec->rec_len = 0);
	BAD(rec->rec_len = 65);
	BAD(rec->rec_len = 0xffffffc0u);           /* past the data area */
	BAD(rec->payload_len = 0xffffffffu);       /* overflow if 32-bit sum */
	BAD(rec->props_len = 1000);                /* over rec_len */
	BAD(rec->flags = 3);                       /* qos 3 */
	BAD(rec->flags = 0x100);                   /* unknown flag */
	BAD(rec->flags = REC_F_PAD);               /* pad not at the end */
	BAD(rec->seq = 0);
	BAD(rec->rec_len = 32768);                 /* over max_record */
#undef BAD
	/* Intact again: readable. Then a sequence that goes backwards. */
	assert_int_equal(shimmy_ring_receive(r, &m, buf, sizeof(buf)), 1);
	assert_int_equal(pub(f.w, 2, 32, 0), 0);
	rec = (struct rec_hdr *)(void *)(f.ring + SHIMMY_RING_HDR_SIZE + 64);
	rec->seq = 1;
	assert_int_equal(shimmy_ring_receive(r, &m, buf, sizeof(buf)),
			 MQTT_ERR_MALFORMED);
	/* A garbage intent makes every record look lapped; bounded work. */
	atomic_store(&((struct ring_hdr *)(void *)f.ring)->intent, UINT64_MAX);
	assert_true(shimmy_ring_receive(r, &m, buf, sizeof(buf)) <= 0);
	shimmy_ring_reader_destroy(r);
	fx_fini(&f);
}

/* Messages without properties of up to 16 bytes take a short 32-byte
 * record (two to a cache line); anything else a long one. */
static void test_short_records(void **state)
{
	struct fx f;
	shimmy_ring_reader *r;
	shimmy_ring_msg m;
	uint8_t buf[256];
	const uint8_t *d;
	struct rec_short *sr, saved;

	(void)state;
	fx_init(&f, 64 << 10, 0);
	r = fx_reader(&f, 0, SHIMMY_RING_FROM_TAIL);
	d = f.ring + SHIMMY_RING_HDR_SIZE;
	assert_int_equal(shimmy_ring_publish(f.w, NULL, 0, "0123456789abcdef", 16,
					     SHIMMY_MSG_RETAIN | 1, 0, 0), 0);
	assert_int_equal(pub(f.w, 2, 0, 0), 0);
	assert_int_equal(pub(f.w, 3, 17, 0), 0);      /* 32 + 17: 64 B */
	assert_int_equal(shimmy_ring_publish(f.w, "\x01\x01", 2, "x", 1, 2, 0, 0), 0);
	assert_int_equal(*(const uint64_t *)(const void *)d, 0 | 3);
	assert_int_equal(*(const uint64_t *)(const void *)(d + 32), 32 | 3);
	assert_int_equal(*(const uint64_t *)(const void *)(d + 64), 64 | 1);
	assert_int_equal(*(const uint64_t *)(const void *)(d + 128), 128 | 1);
	assert_int_equal(shimmy_ring_receive(r, &m, buf, sizeof(buf)), 1);
	assert_int_equal(m.seq, 1);
	assert_int_equal(m.flags, SHIMMY_MSG_RETAIN | 1);
	assert_int_equal(m.props_len, 0);
	assert_int_equal(m.payload_len, 16);
	assert_memory_equal(m.payload, "0123456789abcdef", 16);
	assert_int_equal(shimmy_ring_borrow(r, &m), 1);
	assert_int_equal(m.seq, 2);
	assert_int_equal(m.payload_len, 0);
	assert_int_equal(m.rec_len, 32);
	assert_int_equal(shimmy_ring_release(r, &m), 0);
	assert_int_equal(shimmy_ring_receive(r, &m, buf, sizeof(buf)), 1);
	assert_int_equal(m.seq, 3);
	assert_true(check_fill(m.payload, 17, 3));
	assert_int_equal(shimmy_ring_receive(r, &m, buf, sizeof(buf)), 1);
	assert_int_equal(m.flags, 2);
	assert_int_equal(m.props_len, 2);
	assert_int_equal(shimmy_ring_receive(r, &m, buf, sizeof(buf)), 0);
	shimmy_ring_reader_destroy(r);
	fx_fini(&f);

	/* Hostile meta words. */
	fx_init(&f, 64 << 10, 0);
	r = fx_reader(&f, 0, SHIMMY_RING_FROM_TAIL);
	assert_int_equal(pub(f.w, 1, 10, 0), 0);
	sr = (struct rec_short *)(void *)(f.ring + SHIMMY_RING_HDR_SIZE);
	memcpy(&saved, sr, sizeof(saved));
#define BAD(stmt)                                                            \
	do {                                                                 \
		stmt;                                                        \
		assert_both_malformed(r);                                    \
		memcpy(sr, &saved, sizeof(saved));                           \
	} while (0)
	BAD(sr->meta = (saved.meta & REC_M_SEQ) | 17ull << REC_M_LEN_SHIFT);
	BAD(sr->meta = (saved.meta & REC_M_SEQ) | 31ull << REC_M_LEN_SHIFT);
	BAD(sr->meta |= 3ull << REC_M_QOS_SHIFT);     /* qos 3 */
	BAD(sr->meta &= ~REC_M_SEQ);                  /* seq 0 */
#undef BAD
	assert_int_equal(shimmy_ring_receive(r, &m, buf, sizeof(buf)), 1);
	assert_true(check_fill(m.payload, 10, 1));
	/* A sequence that goes backwards. */
	assert_int_equal(pub(f.w, 2, 10, 0), 0);
	sr = (struct rec_short *)(void *)(f.ring + SHIMMY_RING_HDR_SIZE + 32);
	sr->meta = (sr->meta & ~REC_M_SEQ) | 1;
	assert_int_equal(shimmy_ring_receive(r, &m, buf, sizeof(buf)),
			 MQTT_ERR_MALFORMED);
	shimmy_ring_reader_destroy(r);
	fx_fini(&f);
}

/* Batch borrow: the same messages in the same order as one by one, with
 * one overrun test per batch. */
static void test_borrow_many(void **state)
{
	struct fx f;
	shimmy_ring_reader *r;
	shimmy_ring_msg ms[8];
	uint64_t seq = 1, next = 1, it;
	unsigned expect;
	int n;

	(void)state;
	fx_init(&f, 64 << 10, 0);
	r = fx_reader(&f, 0, SHIMMY_RING_FROM_TAIL);
	/* Mixed short and long records over several laps (pads included). */
	for (int round = 0; round < 200; round++) {
		for (int k = 0; k < 37; k++, seq++)
			assert_int_equal(pub(f.w, seq, seq % 5 ? (uint32_t)(seq % 17)
							      : 300, 0), 0);
		while ((n = shimmy_ring_borrow_many(r, ms, 8)) > 0) {
			assert_true(n <= 8);
			for (int i = 0; i < n; i++, next++) {
				assert_int_equal(ms[i].seq, next);
				assert_int_equal(ms[i].lost, 0);
				assert_true(check_fill(ms[i].payload,
						       ms[i].payload_len, next));
			}
			assert_int_equal(shimmy_ring_release_many(r, ms, (unsigned)n), 0);
		}
		assert_int_equal(n, 0);
	}
	assert_int_equal(next, seq);
	assert_int_equal(shimmy_ring_reader_lost(r), 0);
	/* Misuse. */
	assert_int_equal(shimmy_ring_borrow_many(r, ms, 0), MQTT_ERR_INVALID);
	for (int k = 0; k < 3; k++, seq++)
		assert_int_equal(pub(f.w, seq, 8, 0), 0);
	assert_int_equal(shimmy_ring_borrow_many(r, ms, 8), 3);
	assert_int_equal(shimmy_ring_borrow(r, ms), -EBUSY);
	assert_int_equal(shimmy_ring_release(r, &ms[0]), MQTT_ERR_INVALID);
	assert_int_equal(shimmy_ring_release_many(r, ms, 2), MQTT_ERR_INVALID);
	assert_int_equal(shimmy_ring_release_many(r, ms, 3), 0);
	/* Overrun while borrowed (lossy): the stale ones, a prefix, count as
	 * lost. */
	for (int k = 0; k < 4; k++, seq++)
		assert_int_equal(pub(f.w, seq, 2000, 0), 0);
	n = shimmy_ring_borrow_many(r, ms, 8); /* a pad may end it early */
	assert_true(n >= 1 && n <= 4);
	for (int k = 0; k < 31; k++, seq++)
		assert_int_equal(pub(f.w, seq, 2000, 0), 0);
	it = atomic_load(&((struct ring_hdr *)(void *)f.ring)->intent);
	for (expect = 0; expect < (unsigned)n && it - ms[expect].pos > (64u << 10);
	     expect++)
		;
	assert_true(expect >= 1);
	assert_int_equal(shimmy_ring_release_many(r, ms, (unsigned)n), (int)expect);
	assert_int_equal(shimmy_ring_reader_lost(r), expect);
	shimmy_ring_reader_destroy(r);
	fx_fini(&f);
}

/* Horizon (hold-off): a bounded reader stops at the writer's tail as of
 * the bound, whatever is committed after it; lifting the bound reads on;
 * a lap while bounded is counted exactly, on the next message. */
static void test_reader_bound(void **state)
{
	struct fx f;
	shimmy_ring_reader *r;
	shimmy_ring_msg ms[64];
	uint64_t seq = 1, next = 1;
	int n;

	(void)state;
	fx_init(&f, 64 << 10, 0);
	r = fx_reader(&f, 0, SHIMMY_RING_FROM_TAIL);
	/* Nothing committed: a bound at the reader's own position. */
	assert_int_equal(shimmy_ring_reader_bound(r, SHIMMY_RING_BOUND_TAIL), 0);
	assert_int_equal(pub(f.w, seq++, 8, 0), 0);
	assert_int_equal(shimmy_ring_borrow_many(r, ms, 64), 0);
	assert_int_equal(shimmy_ring_borrow(r, ms), 0);
	assert_int_equal(shimmy_ring_reader_bound(r, 0), 0);
	assert_int_equal(shimmy_ring_borrow(r, ms), 1);
	assert_int_equal(ms[0].seq, next++);
	assert_int_equal(shimmy_ring_release(r, ms), 0);
	/* Ten short records, bound, five more: ten, then nothing. */
	for (int k = 0; k < 10; k++)
		assert_int_equal(pub(f.w, seq++, 16, 0), 0);
	assert_int_equal(shimmy_ring_reader_bound(r, SHIMMY_RING_BOUND_TAIL),
			 10 * 32);
	for (int k = 0; k < 5; k++)
		assert_int_equal(pub(f.w, seq++, 300, 0), 0);
	assert_int_equal(shimmy_ring_borrow_many(r, ms, 64), 10);
	for (int i = 0; i < 10; i++)
		assert_int_equal(ms[i].seq, next++);
	assert_int_equal(shimmy_ring_release_many(r, ms, 10), 0);
	assert_int_equal(shimmy_ring_borrow_many(r, ms, 64), 0);
	/* A new bound takes in the five; receive obeys it too. */
	assert_true(shimmy_ring_reader_bound(r, SHIMMY_RING_BOUND_TAIL) > 0);
	assert_int_equal(pub(f.w, seq++, 8, 0), 0);
	for (int k = 0; k < 5; k++) {
		uint8_t buf[512];

		assert_int_equal(shimmy_ring_receive(r, ms, buf, sizeof(buf)), 1);
		assert_int_equal(ms[0].seq, next++);
		assert_true(check_fill(ms[0].payload, 300, ms[0].seq));
	}
	assert_int_equal(shimmy_ring_borrow(r, ms), 0);
	assert_int_equal(shimmy_ring_reader_bound(r, 0), 0);
	assert_int_equal(shimmy_ring_borrow(r, ms), 1);
	assert_int_equal(ms[0].seq, next++);
	assert_int_equal(shimmy_ring_release(r, ms), 0);
	/* Lapped while bounded: the loss is counted exactly and reported
	 * with the next message, once the bound is lifted. */
	assert_int_equal(pub(f.w, seq++, 8, 0), 0);
	assert_true(shimmy_ring_reader_bound(r, SHIMMY_RING_BOUND_TAIL) > 0);
	for (int k = 0; k < 400; k++)
		assert_int_equal(pub(f.w, seq++, 1000, 0), 0);
	while ((n = shimmy_ring_borrow_many(r, ms, 64)) > 0) {
		for (int i = 0; i < n; i++)
			next = ms[i].seq + 1;
		shimmy_ring_release_many(r, ms, (unsigned)n);
	}
	assert_int_equal(n, 0);
	assert_int_equal(shimmy_ring_reader_bound(r, 0), 0);
	assert_int_equal(shimmy_ring_borrow(r, ms), 1);
	assert_true(ms[0].seq > next);
	assert_int_equal(ms[0].lost, ms[0].seq - next);
	assert_int_equal(shimmy_ring_reader_lost(r), ms[0].seq - next);
	assert_int_equal(shimmy_ring_release(r, ms), 0);
	shimmy_ring_reader_destroy(r);
	fx_fini(&f);
}

/* Batch reserve/commit: consecutive records, one commit word each, in
 * order; stops short at the end of the data area. */
static void test_reserve_many(void **state)
{
	struct fx f;
	shimmy_ring_reader *r;
	shimmy_ring_loan loans[16];
	shimmy_ring_msg m;
	uint8_t buf[256];
	uint64_t seq = 1;
	int k;

	(void)state;
	for (int reliable = 0; reliable < 2; reliable++) {
		fx_init(&f, 64 << 10, reliable ? SHIMMY_RING_RELIABLE : 0);
		r = fx_reader(&f, 0, SHIMMY_RING_FROM_TAIL);
		seq = 1;
		/* Short and long records, over several laps. */
		for (int round = 0; round < 300; round++) {
			uint32_t len = round & 1 ? 16 : 200;
			k = shimmy_ring_reserve_many(f.w, 0, len, 16, 0, loans);
			assert_true(k >= 1 && k <= 16);
			assert_int_equal(shimmy_ring_reserve_many(f.w, 0, len, 4, 0,
								  loans + k / 2),
					 -EBUSY);
			for (int i = 0; i < k; i++) {
				assert_int_equal(loans[i].seq, seq + (uint64_t)i);
				assert_true(i == 0 || loans[i].pos > loans[i - 1].pos);
				fill(loans[i].payload, len, seq + (uint64_t)i);
			}
			assert_int_equal(shimmy_ring_commit(f.w, &loans[0], 0, 0),
					 k == 1 ? 0 : MQTT_ERR_INVALID);
			if (k > 1) {
				assert_int_equal(shimmy_ring_commit_many(f.w, loans,
						 (unsigned)k - 1, 0, 0), MQTT_ERR_INVALID);
				assert_int_equal(shimmy_ring_commit_many(f.w, loans,
						 (unsigned)k, SHIMMY_MSG_RETAIN, 0), 0);
			}
			for (int i = 0; i < k; i++, seq++) {
				assert_int_equal(shimmy_ring_receive(r, &m, buf,
								     sizeof(buf)), 1);
				assert_int_equal(m.seq, seq);
				assert_int_equal(m.lost, 0);
				assert_int_equal(m.payload_len, len);
				assert_true(check_fill(m.payload, len, seq));
			}
			assert_int_equal(shimmy_ring_receive(r, &m, buf, sizeof(buf)), 0);
		}
		/* Abort drops the whole batch; readers never see it. */
		k = shimmy_ring_reserve_many(f.w, 0, 8, 16, 0, loans);
		assert_true(k >= 1);
		shimmy_ring_abort(f.w, &loans[0]);
		assert_int_equal(shimmy_ring_receive(r, &m, buf, sizeof(buf)), 0);
		assert_int_equal(shimmy_ring_reserve_many(f.w, 0, 8, 0, 0, loans),
				 MQTT_ERR_INVALID);
		assert_int_equal(shimmy_ring_reader_lost(r), 0);
		shimmy_ring_reader_destroy(r);
		fx_fini(&f);
	}
}

/* Readers work over the subscriber's read-only segment mapping. */
static void test_reader_on_readonly_segment(void **state)
{
	shimmy_seg w, ro;
	shimmy_ring_writer *wr;
	shimmy_ring_reader *r;
	shimmy_ring_msg m;
	uint8_t slot[PG] __attribute__((aligned(64)));
	uint8_t buf[64];
	size_t wl, rl;
	void *wm, *rm;
	int fd;

	(void)state;
	assert_int_equal(shimmy_seg_create(&w, SHIMMY_SEG_LOG,
					   shimmy_ring_region_size(64 << 10), 9), 0);
	wm = shimmy_seg_body(&w, &wl);
	assert_int_equal(shimmy_ring_format(wm, wl, NULL), 0);
	assert_int_equal(shimmy_ring_writer_create(&wr, wm, wl), 0);
	fd = shimmy_seg_open_ro(&w);
	assert_true(fd >= 0);
	assert_int_equal(shimmy_seg_map(&ro, fd, SHIMMY_SEG_LOG,
					SHIMMY_SEG_RDONLY), 0);
	rm = shimmy_seg_body(&ro, &rl);
	assert_int_equal(mprotect(ro.base, ro.size, PROT_READ | PROT_WRITE), -1);
	assert_int_equal(errno, EACCES);
	assert_int_equal(shimmy_ring_slot_format(slot, sizeof(slot)), 0);
	assert_int_equal(shimmy_ring_reader_create(&r, rm, rl, slot, sizeof(slot),
						   0, 1, 0), 0);
	assert_int_equal(shimmy_ring_publish(wr, NULL, 0, "ro", 2, 0, 0, 0), 0);
	assert_int_equal(shimmy_ring_receive(r, &m, buf, sizeof(buf)), 1);
	assert_memory_equal(m.payload, "ro", 2);
	shimmy_ring_reader_destroy(r);
	shimmy_ring_writer_destroy(wr);
	shimmy_seg_unmap(&ro);
	shimmy_seg_unmap(&w);
}

/* ---- stress ------------------------------------------------------------ */

struct stress {
	struct fx *f;
	uint32_t idx;
	uint64_t total;
	uint64_t got, lost, bad;
	shimmy_ring_reader *r;
};

/* Drains until the log closes, sleeping on the reader's bell. Counts
 * messages, losses and any sequence or content error. */
static void stress_drain(struct stress *st)
{
	shimmy_ring_msg m;
	uint8_t buf[512];
	uint64_t last = 0;
	shimmy_bell *b = fx_bell(st->f, st->idx);
	int rc;

	for (;;) {
		rc = shimmy_ring_receive(st->r, &m, buf, sizeof(buf));
		if (rc == 0) {
			shimmy_bell_wait(b, shimmy_ring_reader_ready, 20000,
					 1000000000, st->r);
			continue;
		}
		if (rc != 1)
			break;
		if (m.seq != last + 1 + m.lost ||
		    !check_fill(m.payload, m.payload_len, m.seq))
			st->bad++;
		last = m.seq;
		st->got++;
		st->lost += m.lost;
	}
	if (rc != -EPIPE || last != st->total)
		st->bad++;
}

static void *stress_thread(void *arg)
{
	stress_drain(arg);
	return NULL;
}

static void stress_write(struct fx *f, uint64_t total, uint32_t len_mod)
{
	uint8_t buf[512];
	shimmy_ring_loan l;
	int rc;

	for (uint64_t s = 1; s <= total; s++) {
		uint32_t n = len_mod ? (uint32_t)(s % len_mod) : 16;

		rc = shimmy_ring_reserve(f->w, 0, n, 2000000000LL, &l);
		assert_int_equal(rc, 0);
		fill(buf, n, s);
		memcpy(l.payload, buf, n);
		/* Batch wakes: one bell check per 32 messages. */
		assert_int_equal(shimmy_ring_commit(f->w, &l, 0,
						    s % 32 ? SHIMMY_RING_NOWAKE : 0), 0);
	}
	shimmy_ring_writer_close(f->w);
}

static void run_thread_stress(uint32_t flags, uint64_t total)
{
	struct fx f;
	struct stress st[3];
	pthread_t th[3];

	fx_init(&f, 64 << 10, flags);
	for (uint32_t i = 0; i < 3; i++) {
		st[i] = (struct stress){ .f = &f, .idx = i, .total = total };
		st[i].r = fx_reader(&f, i, SHIMMY_RING_FROM_TAIL);
		assert_int_equal(pthread_create(&th[i], NULL, stress_thread,
						&st[i]), 0);
	}
	stress_write(&f, total, 300);
	for (uint32_t i = 0; i < 3; i++) {
		pthread_join(th[i], NULL);
		assert_int_equal(st[i].bad, 0);
		assert_int_equal(st[i].got + st[i].lost, total);
		if (flags & SHIMMY_RING_RELIABLE)
			assert_int_equal(st[i].lost, 0);
		shimmy_ring_reader_destroy(st[i].r);
	}
	fx_fini(&f);
}

static void test_thread_stress_lossy(void **state)
{
	(void)state;
	run_thread_stress(0, 200000);
}

static void test_thread_stress_reliable(void **state)
{
	(void)state;
	run_thread_stress(SHIMMY_RING_RELIABLE, 200000);
}

/* Writer in this process, two readers in forked processes, 1M 16-byte
 * messages, reliable: every reader sees every message, in order, intact. */
static void test_process_stress(void **state)
{
	const uint64_t total = 1000000;
	struct fx f;
	pid_t pid[2];
	int status;

	(void)state;
	fx_init(&f, 1 << 20, SHIMMY_RING_RELIABLE);
	for (uint32_t i = 0; i < 2; i++) {
		struct stress st = { .f = &f, .idx = i, .total = total };

		st.r = fx_reader(&f, i, SHIMMY_RING_FROM_TAIL);
		pid[i] = fork();
		assert_true(pid[i] >= 0);
		if (pid[i] == 0) {
			stress_drain(&st);
			_exit(st.bad || st.lost || st.got != total ? 1 : 0);
		}
		shimmy_ring_reader_destroy(st.r);
	}
	stress_write(&f, total, 0);
	for (uint32_t i = 0; i < 2; i++) {
		assert_int_equal(waitpid(pid[i], &status, 0), pid[i]);
		assert_true(WIFEXITED(status));
		assert_int_equal(WEXITSTATUS(status), 0);
	}
	fx_fini(&f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_publish_receive),
		cmocka_unit_test(test_loan_borrow),
		cmocka_unit_test(test_wrap_around),
		cmocka_unit_test(test_lapping_exact_loss),
		cmocka_unit_test(test_late_reader_of_new_log_counts_loss),
		cmocka_unit_test(test_head_over_short_runs),
		cmocka_unit_test(test_reliable_blocks),
		cmocka_unit_test(test_reliable_detach),
		cmocka_unit_test(test_many_readers_and_close),
		cmocka_unit_test(test_writer_resume),
		cmocka_unit_test(test_garbage_header_rejected),
		cmocka_unit_test(test_corrupt_records_rejected),
		cmocka_unit_test(test_short_records),
		cmocka_unit_test(test_borrow_many),
		cmocka_unit_test(test_reserve_many),
		cmocka_unit_test(test_reader_bound),
		cmocka_unit_test(test_reader_on_readonly_segment),
		cmocka_unit_test(test_position_batching),
		cmocka_unit_test(test_thread_stress_lossy),
		cmocka_unit_test(test_thread_stress_reliable),
		cmocka_unit_test(test_process_stress),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

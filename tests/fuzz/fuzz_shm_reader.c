/*
 * tests/fuzz/fuzz_shm_reader.c — libFuzzer harness for the shm reader
 * against arbitrary segment contents (a hostile publisher).
 *
 * The first input byte picks a mode: raw (the bytes are the whole ring
 * region, zero-padded) or overlay (a valid ring is formatted and written
 * to, then the input overwrites everything from the control line on, so
 * the fuzzer starts past the header checks). A reader, and a share-group
 * member (whose page a fellow member may have scribbled on), then drain
 * with receive, borrow and claims. They must never crash, hang
 * or read out of bounds; errors are fine.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "shmpath/ring.h"
#include "shmpath/share.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define REGION (4096u + 8192u)
#define CHECK(c) do { if (!(c)) abort(); } while (0)

static uint8_t region[REGION] __attribute__((aligned(4096)));
static uint8_t slot[SHIMMY_RING_SLOT_SIZE] __attribute__((aligned(4096)));
static uint8_t page[SHIMMY_SHARE_PAGE_SIZE] __attribute__((aligned(4096)));

static void drain(shimmy_ring_reader *r, unsigned borrow)
{
	shimmy_ring_msg m, ms[8];
	uint8_t buf[2048];
	int rc;

	for (int i = 0; i < 512; i++) {
		/* Hold-off's horizon at the (hostile) tail, now and then. */
		if ((i & 3) == 2)
			(void)shimmy_ring_reader_bound(r, i & 4 ? SHIMMY_RING_BOUND_TAIL
								: 0);
		if (borrow && (i & 1)) {
			/* Batch borrow: every message in the data area. */
			rc = shimmy_ring_borrow_many(r, ms, 8);
			for (int k = 0; k < rc; k++) {
				CHECK(ms[k].props >= region + 4096 &&
				      ms[k].payload + ms[k].payload_len <=
					      region + REGION);
				CHECK(k == 0 || ms[k].pos > ms[k - 1].pos);
				volatile uint8_t sink = 0;
				for (uint32_t j = 0; j < ms[k].payload_len; j++)
					sink ^= ms[k].payload[j];
				(void)sink;
			}
			if (rc > 0)
				CHECK(shimmy_ring_release_many(r, ms, (unsigned)rc) >= 0);
		} else if (borrow) {
			rc = shimmy_ring_borrow(r, &m);
			if (rc == 1) {
				/* The whole message must lie in the data area. */
				CHECK(m.props >= region + 4096 &&
				      m.payload + m.payload_len <= region + REGION);
				volatile uint8_t sink = 0;
				for (uint32_t k = 0; k < m.payload_len; k++)
					sink ^= m.payload[k];
				(void)sink;
				shimmy_ring_release(r, &m);
			}
		} else {
			rc = shimmy_ring_receive(r, &m, buf, sizeof(buf));
			if (rc == 1)
				CHECK((uint64_t)m.props_len + m.payload_len <= sizeof(buf));
		}
		if (rc < 0 || (rc == 0 && i > 8))
			break;
		(void)shimmy_ring_reader_ready(r);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	shimmy_ring_params p = { .readers_max = 4 };
	shimmy_ring_reader *r;
	shimmy_share_member *sm;
	shimmy_ring_msg m;
	uint8_t buf[2048];
	unsigned mode;

	if (size < 1)
		return 0;
	mode = data[0];
	data++;
	size--;
	memset(region, 0, sizeof(region));
	if (mode & 1) {
		shimmy_ring_writer *w;

		p.flags = mode & 2 ? SHIMMY_RING_RELIABLE : 0;
		CHECK(shimmy_ring_format(region, sizeof(region), &p) == 0);
		CHECK(shimmy_ring_writer_create(&w, region, sizeof(region)) == 0);
		/* Long records (with properties) and short ones (none, <= 16
		 * payload bytes), so mutations start from both layouts. */
		for (unsigned i = 0; i < (mode >> 4); i++)
			if (i & 1)
				shimmy_ring_publish(w, NULL, 0, "short", 5, 1, 0, 0);
			else
				shimmy_ring_publish(w, "\x01\x01", 2, "payload", 7,
						    1, 0, 0);
		shimmy_ring_writer_destroy(w);
		if (size > sizeof(region) - 64)
			size = sizeof(region) - 64;
		memcpy(region + 64, data, size);
	} else {
		if (size > sizeof(region))
			size = sizeof(region);
		memcpy(region, data, size);
	}
	CHECK(shimmy_ring_slot_format(slot, sizeof(slot)) == 0);
	if (shimmy_ring_reader_create(&r, region, sizeof(region), slot,
				      sizeof(slot), mode >> 6 & 3, 1,
				      mode & 4 ? SHIMMY_RING_FROM_HEAD : 0) == 0) {
		drain(r, mode & 8);
		shimmy_ring_reader_destroy(r);
	}
	if (shimmy_share_format(page, sizeof(page), region, sizeof(region), 1) == 0 &&
	    shimmy_share_member_create(&sm, region, sizeof(region), page,
				       sizeof(page), 0) == 0) {
		/* A hostile fellow member: the claim cursor (slot offset 64)
		 * and the group counters (256..279) come from the input too. */
		if ((mode & 0x10) && size >= 32) {
			memcpy(page + 64, data + size - 32, 8);
			memcpy(page + 256, data + size - 24, 24);
		}
		for (int i = 0; i < 64; i++) {
			(void)shimmy_share_ready(sm);
			if (shimmy_share_claim(sm, &m, buf, sizeof(buf)) < 0)
				break;
		}
		(void)shimmy_share_lost(sm);
		shimmy_share_member_destroy(sm);
	}
	return 0;
}

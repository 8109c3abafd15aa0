/*
 * tests/unit/test_shm_segment.c — memfd segments: seals, read-only reopen,
 * header validation on map.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "mqtt/error.h"
#include "shmpath/segment.h"

static void test_classes(void **state)
{
	(void)state;
	assert_int_equal(shimmy_seg_class_cap(0), 64 << 10);
	assert_int_equal(shimmy_seg_class_cap(3), 128 << 20);
	assert_int_equal(shimmy_seg_class_cap(4), 0);
	assert_int_equal(shimmy_seg_class_for(1), 0);
	assert_int_equal(shimmy_seg_class_for((64 << 10) + 1), 1);
	assert_int_equal(shimmy_seg_class_for((size_t)1 << 30), -1);
}

static void test_create_sealed(void **state)
{
	shimmy_seg s;
	struct stat st;
	size_t len;
	int seals;

	(void)state;
	assert_int_equal(shimmy_seg_create(&s, SHIMMY_SEG_LOG, 10000, 42), 0);
	assert_true(s.size >= SHIMMY_SEG_HDR_SIZE + 10000);
	assert_int_equal(s.size % 4096, 0);
	seals = fcntl(s.fd, F_GET_SEALS);
	assert_true(seals & F_SEAL_SHRINK);
	assert_true(seals & F_SEAL_GROW);
	assert_true(seals & F_SEAL_SEAL);
	/* The size cannot change under a reader. */
	assert_int_equal(ftruncate(s.fd, 4096), -1);
	assert_int_equal(errno, EPERM);
	assert_int_equal(fcntl(s.fd, F_ADD_SEALS, F_SEAL_WRITE), -1);
	assert_int_equal(fstat(s.fd, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0400);
	assert_non_null(shimmy_seg_body(&s, &len));
	assert_int_equal(len, s.size - SHIMMY_SEG_HDR_SIZE);
	shimmy_seg_unmap(&s);
	shimmy_seg_unmap(&s); /* idempotent */
}

static void test_readonly_reopen(void **state)
{
	shimmy_seg w, r;
	size_t len;
	uint8_t *wb, *rb;
	int fd;

	(void)state;
	assert_int_equal(shimmy_seg_create(&w, SHIMMY_SEG_LOG, 8192, 7), 0);
	fd = shimmy_seg_open_ro(&w);
	assert_true(fd >= 0);
	assert_int_equal(fcntl(fd, F_GETFL) & O_ACCMODE, O_RDONLY);
	/* Asking for a writable mapping of a read-only fd fails. */
	assert_int_equal(shimmy_seg_map(&r, fd, SHIMMY_SEG_LOG, SHIMMY_SEG_RDWR),
			 -EACCES);
	assert_int_equal(shimmy_seg_map(&r, fd, SHIMMY_SEG_LOG,
					SHIMMY_SEG_RDONLY), 0);
	assert_int_equal(r.id, 7);
	assert_int_equal(r.size, w.size);
	/* The subscriber cannot make its mapping writable. */
	assert_int_equal(mprotect(r.base, r.size, PROT_READ | PROT_WRITE), -1);
	assert_int_equal(errno, EACCES);
	/* Nor map it writable afresh. */
	assert_true(mmap(NULL, r.size, PROT_READ | PROT_WRITE, MAP_SHARED,
			 r.fd, 0) == MAP_FAILED);
	assert_int_equal(errno, EACCES);
	/* Writes by the broker are seen by the subscriber. */
	wb = shimmy_seg_body(&w, &len);
	rb = shimmy_seg_body(&r, &len);
	wb[100] = 0x5a;
	assert_int_equal(rb[100], 0x5a);
	shimmy_seg_unmap(&r);
	shimmy_seg_unmap(&w);
}

static void test_map_rejects(void **state)
{
	shimmy_seg w, r;
	int fd, plain;
	uint8_t *h;

	(void)state;
	assert_int_equal(shimmy_seg_create(&w, SHIMMY_SEG_SLOT, 4096, 1), 0);
	fd = shimmy_seg_open_ro(&w);
	assert_true(fd >= 0);
	/* Wrong kind. */
	assert_int_equal(shimmy_seg_map(&r, fd, SHIMMY_SEG_LOG,
					SHIMMY_SEG_RDONLY), MQTT_ERR_MALFORMED);
	h = w.base;
	/* Garbage magic, version, size field. */
	h[0] ^= 0xff;
	assert_int_equal(shimmy_seg_map(&r, fd, SHIMMY_SEG_SLOT,
					SHIMMY_SEG_RDONLY), MQTT_ERR_MALFORMED);
	h[0] ^= 0xff;
	h[8] = 9;
	assert_int_equal(shimmy_seg_map(&r, fd, SHIMMY_SEG_SLOT,
					SHIMMY_SEG_RDONLY), MQTT_ERR_MALFORMED);
	h[8] = 1;
	h[16] ^= 0x10;
	assert_int_equal(shimmy_seg_map(&r, fd, SHIMMY_SEG_SLOT,
					SHIMMY_SEG_RDONLY), MQTT_ERR_MALFORMED);
	h[16] ^= 0x10;
	assert_int_equal(shimmy_seg_map(&r, fd, SHIMMY_SEG_SLOT,
					SHIMMY_SEG_RDONLY), 0);
	shimmy_seg_unmap(&r);
	/* An unsealed memfd is refused (a writer could shrink it: SIGBUS). */
	plain = memfd_create("plain", MFD_CLOEXEC);
	assert_true(plain >= 0);
	assert_int_equal(ftruncate(plain, 8192), 0);
	assert_int_equal(shimmy_seg_map(&r, plain, SHIMMY_SEG_SLOT,
					SHIMMY_SEG_RDONLY), -EPERM);
	close(plain);
	assert_int_equal(shimmy_seg_map(&r, 12345, SHIMMY_SEG_SLOT,
					SHIMMY_SEG_RDONLY), -EBADF);
	shimmy_seg_unmap(&w);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_classes),
		cmocka_unit_test(test_create_sealed),
		cmocka_unit_test(test_readonly_reopen),
		cmocka_unit_test(test_map_rejects),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

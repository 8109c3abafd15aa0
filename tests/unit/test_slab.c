/*
 * tests/unit/test_slab.c — the fixed-size block cache: reuse, the bound on
 * cached blocks, foreign malloc blocks, and fini.
 */
#include "broker/slab.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

static void test_reuse(void **state)
{
	(void)state;
	slab s;
	slab_init(&s, 64, 4);
	void *a = slab_alloc(&s);
	assert_non_null(a);
	memset(a, 0xAB, 64); /* the whole block is usable */
	slab_free(&s, a);
	assert_int_equal(s.count, 1);
	void *b = slab_alloc(&s); /* LIFO: the same block comes back */
	assert_ptr_equal(a, b);
	assert_int_equal(s.count, 0);
	slab_free(&s, b);
	slab_free(&s, NULL);
	assert_int_equal(s.count, 1);
	slab_fini(&s);
	assert_int_equal(s.count, 0);
	assert_null(s.free);
}

static void test_bound(void **state)
{
	(void)state;
	slab s = SLAB_INIT(32, 3);
	void *p[8];
	for (int i = 0; i < 8; i++) {
		p[i] = slab_alloc(&s);
		assert_non_null(p[i]);
	}
	for (int i = 0; i < 8; i++)
		slab_free(&s, p[i]); /* beyond 3 they go back to the heap */
	assert_int_equal(s.count, 3);
	/* Blocks are distinct and all come back before new ones. */
	void *q[3];
	for (int i = 0; i < 3; i++) {
		q[i] = slab_alloc(&s);
		for (int j = 0; j < i; j++)
			assert_ptr_not_equal(q[i], q[j]);
	}
	assert_int_equal(s.count, 0);
	for (int i = 0; i < 3; i++)
		slab_free(&s, q[i]);
	slab_fini(&s);
}

static void test_foreign_and_tiny(void **state)
{
	(void)state;
	slab s;
	slab_init(&s, 1, 2); /* rounded up to hold the link */
	assert_true(s.block >= sizeof(void *));
	slab_fini(&s);
	slab_init(&s, 48, 2);
	/* A larger malloc block may join the cache and serve as a block. */
	void *big = malloc(500);
	assert_non_null(big);
	slab_free(&s, big);
	void *p = slab_alloc(&s);
	assert_ptr_equal(p, big);
	memset(p, 0, 48);
	slab_free(&s, p);
	slab_fini(&s);
	/* Usable again after fini. */
	p = slab_alloc(&s);
	assert_non_null(p);
	slab_free(&s, p);
	slab_fini(&s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_reuse),
		cmocka_unit_test(test_bound),
		cmocka_unit_test(test_foreign_and_tiny),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

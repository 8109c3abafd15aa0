/*
 * tests/unit/test_subtree.c — the subscription tree: wildcards, the '$'
 * rule, overlapping and shared subscriptions, removal and pruning.
 */
#include "broker/subtree.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

typedef struct hits {
	int n;
	void *owners[32];
	uint8_t opts[32];
	uint32_t ids[32];
	unsigned flags[32];
} hits;

static void cb(void *owner, uint8_t options, uint32_t sub_id, unsigned flags,
	       void *ctx)
{
	hits *h = ctx;
	assert_true(h->n < 32);
	h->owners[h->n] = owner;
	h->opts[h->n] = options;
	h->ids[h->n] = sub_id;
	h->flags[h->n] = flags;
	h->n++;
}

static int match(subtree *t, const char *topic, hits *h)
{
	memset(h, 0, sizeof(*h));
	return subtree_match(t, mqtt_str_c(topic), cb, h);
}

static void add(subtree *t, const char *f, void *owner, uint8_t opts)
{
	assert_int_equal(subtree_add(t, mqtt_str_c(f), owner, opts, 0, NULL), 0);
}

static int owner_a, owner_b, owner_c;
#define A ((void *)&owner_a)
#define B ((void *)&owner_b)
#define C ((void *)&owner_c)

static void test_exact_and_wildcards(void **state)
{
	(void)state;
	subtree *t = subtree_create();
	hits h;
	add(t, "a/b/c", A, 0);
	add(t, "a/+/c", A, 1);
	add(t, "a/#", B, 2);
	add(t, "#", C, 0);
	add(t, "+/+", C, 1);
	assert_int_equal(match(t, "a/b/c", &h), 4);
	assert_int_equal(match(t, "a/x/c", &h), 3);
	/* "a/#" matches "a" [MQTT-4.7.1-2] */
	assert_int_equal(match(t, "a", &h), 2);
	assert_int_equal(match(t, "a/b", &h), 3);
	assert_int_equal(match(t, "x/y/z", &h), 1);
	assert_int_equal(subtree_count(t), 5);
	subtree_destroy(t);
}

static void test_empty_levels(void **state)
{
	(void)state;
	subtree *t = subtree_create();
	hits h;
	add(t, "a//b", A, 0);
	add(t, "+/+/+", B, 0);
	add(t, "/#", C, 0);
	assert_int_equal(match(t, "a//b", &h), 2);
	assert_int_equal(match(t, "/x", &h), 1);
	assert_ptr_equal(h.owners[0], C);
	assert_int_equal(match(t, "//", &h), 2);
	subtree_destroy(t);
}

/* [MQTT-4.7.2-1] wildcards at the first level do not match '$' topics. */
static void test_MQTT_4_7_2_1_dollar(void **state)
{
	(void)state;
	subtree *t = subtree_create();
	hits h;
	add(t, "#", A, 0);
	add(t, "+/broker/uptime", A, 0);
	add(t, "$SYS/#", B, 0);
	add(t, "$SYS/+/uptime", C, 0);
	assert_int_equal(match(t, "$SYS/broker/uptime", &h), 2);
	assert_int_equal(match(t, "x/broker/uptime", &h), 2);
	subtree_destroy(t);
}

static void test_replace_and_remove(void **state)
{
	(void)state;
	subtree *t = subtree_create();
	hits h;
	bool existed = true;
	assert_int_equal(subtree_add(t, mqtt_str_c("a/b"), A, 1, 7, &existed), 0);
	assert_false(existed);
	assert_int_equal(subtree_add(t, mqtt_str_c("a/b"), A, 2, 9, &existed), 0);
	assert_true(existed);
	assert_int_equal(match(t, "a/b", &h), 1);
	assert_int_equal(h.opts[0], 2);
	assert_int_equal(h.ids[0], 9);
	assert_true(subtree_remove(t, mqtt_str_c("a/b"), A));
	assert_false(subtree_remove(t, mqtt_str_c("a/b"), A));
	assert_false(subtree_remove(t, mqtt_str_c("x/y"), A));
	assert_int_equal(match(t, "a/b", &h), 0);
	assert_int_equal(subtree_count(t), 0);
	subtree_destroy(t);
}

static void test_shared_round_robin(void **state)
{
	(void)state;
	subtree *t = subtree_create();
	hits h;
	add(t, "$share/g/a/+", A, 1);
	add(t, "$share/g/a/+", B, 1);
	add(t, "$share/h/a/#", C, 0);
	add(t, "a/b", C, 0);
	int seen_a = 0, seen_b = 0;
	for (int i = 0; i < 4; i++) {
		assert_int_equal(match(t, "a/b", &h), 3);
		int g = 0;
		for (int k = 0; k < h.n; k++) {
			if (h.owners[k] == A) {
				seen_a++;
				g++;
				assert_int_equal(h.flags[k], SUBTREE_SHARED);
			}
			if (h.owners[k] == B) {
				seen_b++;
				g++;
			}
		}
		assert_int_equal(g, 1);
	}
	assert_int_equal(seen_a, 2);
	assert_int_equal(seen_b, 2);
	assert_true(subtree_remove(t, mqtt_str_c("$share/g/a/+"), A));
	assert_int_equal(match(t, "a/b", &h), 3);
	assert_true(subtree_remove(t, mqtt_str_c("$share/g/a/+"), B));
	assert_int_equal(match(t, "a/b", &h), 2);
	subtree_destroy(t);
}

static void test_share_split(void **state)
{
	(void)state;
	mqtt_str g, f;
	assert_true(subtree_share_split(mqtt_str_c("$share/grp/a/b"), &g, &f));
	assert_int_equal(g.len, 3);
	assert_memory_equal(f.ptr, "a/b", 3);
	assert_false(subtree_share_split(mqtt_str_c("$share/grp"), &g, &f));
	assert_false(subtree_share_split(mqtt_str_c("$SYS/x"), &g, &f));
}

static void test_many(void **state)
{
	(void)state;
	subtree *t = subtree_create();
	static int owners[200];
	char f[32];
	for (int i = 0; i < 200; i++) {
		snprintf(f, sizeof(f), "x/%d/+", i % 50);
		add(t, f, &owners[i], 0);
	}
	hits h;
	memset(&h, 0, sizeof(h));
	/* 4 owners per filter "x/7/+". */
	assert_int_equal(match(t, "x/7/z", &h), 4);
	for (int i = 0; i < 200; i++) {
		snprintf(f, sizeof(f), "x/%d/+", i % 50);
		assert_true(subtree_remove(t, mqtt_str_c(f), &owners[i]));
	}
	assert_int_equal(subtree_count(t), 0);
	subtree_destroy(t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_exact_and_wildcards),
		cmocka_unit_test(test_empty_levels),
		cmocka_unit_test(test_MQTT_4_7_2_1_dollar),
		cmocka_unit_test(test_replace_and_remove),
		cmocka_unit_test(test_shared_round_robin),
		cmocka_unit_test(test_share_split),
		cmocka_unit_test(test_many),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * tests/unit/test_retain.c — retained store: set, replace, clear by empty
 * payload, lookup by filter with wildcards and the '$' rule.
 */
#include "broker/retain.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

/* The messages of every test come from this pool (main sets it up). */
static msg_pool pool;

static broker_msg *mk(const char *topic, const char *payload)
{
	mqtt_bytes pl = { (const uint8_t *)payload, (uint32_t)strlen(payload) };
	mqtt_bytes none = { NULL, 0 };
	broker_msg *m = msg_create(&pool, mqtt_str_c(topic), pl, none, 1, true, 0, 0);
	assert_non_null(m);
	return m;
}

static void put(retain_store *r, const char *topic, const char *payload)
{
	broker_msg *m = mk(topic, payload);
	assert_int_equal(retain_set(r, m), 0);
	msg_unref(m);
}

static void count_cb(broker_msg *m, void *ctx)
{
	(void)m;
	(*(int *)ctx)++;
}

static int nmatch(retain_store *r, const char *filter)
{
	int n = 0;
	int rc = retain_match(r, mqtt_str_c(filter), count_cb, &n);
	assert_int_equal(rc, n);
	return n;
}

static void test_set_replace_clear(void **state)
{
	(void)state;
	retain_store *r = retain_create();
	put(r, "a/b", "1");
	put(r, "a/b", "2");
	assert_int_equal(retain_count(r), 1);
	broker_msg *m = retain_get(r, mqtt_str_c("a/b"));
	assert_non_null(m);
	assert_memory_equal(m->payload, "2", 1);
	/* [MQTT-3.3.1-10] a zero-length retained payload clears. */
	put(r, "a/b", "");
	assert_null(retain_get(r, mqtt_str_c("a/b")));
	assert_int_equal(retain_count(r), 0);
	put(r, "never/set", "");
	assert_int_equal(retain_count(r), 0);
	retain_destroy(r);
}

static void test_match(void **state)
{
	(void)state;
	retain_store *r = retain_create();
	put(r, "a", "x");
	put(r, "a/b", "x");
	put(r, "a/b/c", "x");
	put(r, "a/c", "x");
	put(r, "b//c", "x");
	put(r, "$SYS/broker/uptime", "x");
	assert_int_equal(nmatch(r, "#"), 5);
	assert_int_equal(nmatch(r, "a/#"), 4);
	assert_int_equal(nmatch(r, "a/+"), 2);
	assert_int_equal(nmatch(r, "+"), 1);
	assert_int_equal(nmatch(r, "+/+/c"), 2);
	assert_int_equal(nmatch(r, "a/b"), 1);
	assert_int_equal(nmatch(r, "a/b/c/d"), 0);
	assert_int_equal(nmatch(r, "b/+/c"), 1);
	assert_int_equal(nmatch(r, "$SYS/#"), 1);
	assert_int_equal(nmatch(r, "+/broker/uptime"), 0);
	put(r, "a", "");
	assert_int_equal(nmatch(r, "a/#"), 3);
	retain_destroy(r);
}

static void test_refcount(void **state)
{
	(void)state;
	retain_store *r = retain_create();
	broker_msg *m = mk("t", "p");
	assert_int_equal(retain_set(r, m), 0);
	assert_int_equal(m->refs, 2);
	put(r, "t", "");
	assert_int_equal(m->refs, 1);
	msg_unref(m);
	retain_destroy(r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_set_replace_clear),
		cmocka_unit_test(test_match),
		cmocka_unit_test(test_refcount),
	};
	msg_pool_init(&pool);
	int rc = cmocka_run_group_tests(tests, NULL, NULL);
	msg_pool_fini(&pool);
	return rc;
}

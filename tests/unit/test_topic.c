/*
 * tests/unit/test_topic.c — topic names, filters, matching and shared
 * subscriptions [MQTT-4.7], [MQTT-4.8.2].
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "mqtt/error.h"
#include "mqtt/topic.h"

static mqtt_str S(const char *s)
{
	return mqtt_str_c(s);
}

/* A view that may hold a NUL byte. */
static mqtt_str SN(const char *s, uint32_t n)
{
	mqtt_str v = { s, n };
	return v;
}

static void test_MQTT_4_7_3_1_empty_name_rejected(void **state)
{
	(void)state;
	assert_int_equal(mqtt_topic_validate_name(SN(NULL, 0)), MQTT_ERR_TOPIC_NAME);
}

static void test_MQTT_3_3_2_2_wildcard_topic_rejected(void **state)
{
	(void)state;
	assert_int_equal(mqtt_topic_validate_name(S("a/+/b")), MQTT_ERR_TOPIC_NAME);
	assert_int_equal(mqtt_topic_validate_name(S("a/#")), MQTT_ERR_TOPIC_NAME);
	assert_int_equal(mqtt_topic_validate_name(S("#")), MQTT_ERR_TOPIC_NAME);
	assert_int_equal(mqtt_topic_validate_name(S("a+")), MQTT_ERR_TOPIC_NAME);
}

static void test_MQTT_4_7_3_2_nul_rejected(void **state)
{
	(void)state;
	assert_int_equal(mqtt_topic_validate_name(SN("a\0b", 3)), MQTT_ERR_TOPIC_NAME);
	assert_int_equal(mqtt_topic_validate_filter(SN("a\0b", 3), false),
			 MQTT_ERR_TOPIC_FILTER);
}

static void test_valid_names(void **state)
{
	static const char *ok[] = { "a", "/", "a/b", "/a/", "$SYS/x", "a//b",
				    " ", "sport/tennis/player1" };
	(void)state;
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
		if (mqtt_topic_validate_name(S(ok[i])) != 0)
			fail_msg("%s", ok[i]);
}

struct filter_case {
	const char *f;
	bool share_ok;
	int want;
};

static void test_MQTT_4_7_1_filter_table(void **state)
{
	static const struct filter_case cases[] = {
		{ "a", false, 0 }, { "#", false, 0 }, { "+", false, 0 },
		{ "a/#", false, 0 }, { "a/+/b", false, 0 }, { "+/+", false, 0 },
		{ "/+", false, 0 }, { "+/", false, 0 }, { "/", false, 0 },
		{ "$SYS/#", false, 0 }, { "a//b", false, 0 },
		{ "", false, MQTT_ERR_TOPIC_FILTER },        /* [MQTT-4.7.3-1] */
		{ "a/#/b", false, MQTT_ERR_TOPIC_FILTER },   /* [MQTT-4.7.1-2] */
		{ "a#", false, MQTT_ERR_TOPIC_FILTER },      /* [MQTT-4.7.1-2] */
		{ "#/", false, MQTT_ERR_TOPIC_FILTER },
		{ "a/b#", false, MQTT_ERR_TOPIC_FILTER },
		{ "a+", false, MQTT_ERR_TOPIC_FILTER },      /* [MQTT-4.7.1-3] */
		{ "+a/b", false, MQTT_ERR_TOPIC_FILTER },
		{ "a/+b", false, MQTT_ERR_TOPIC_FILTER },
		{ "++", false, MQTT_ERR_TOPIC_FILTER },
		{ "$share/g/a/#", true, 0 },
		{ "$share/g/#", true, 0 },
		{ "$share/g/a/#", false, MQTT_ERR_TOPIC_FILTER },
		{ "$share//a", true, MQTT_ERR_TOPIC_FILTER },   /* [MQTT-4.8.2-1] */
		{ "$share/g+/a", true, MQTT_ERR_TOPIC_FILTER }, /* [MQTT-4.8.2-2] */
		{ "$share/g#/a", true, MQTT_ERR_TOPIC_FILTER },
		{ "$share/g", true, MQTT_ERR_TOPIC_FILTER },
		{ "$share/g/", true, MQTT_ERR_TOPIC_FILTER },
		{ "$share/g/a#", true, MQTT_ERR_TOPIC_FILTER },
		{ "$sharex/g/a", false, 0 },
		{ "$share", false, 0 },
	};
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int rc = mqtt_topic_validate_filter(S(cases[i].f), cases[i].share_ok);
		if (rc != cases[i].want)
			fail_msg("'%s' share_ok=%d: got %d want %d", cases[i].f,
				 cases[i].share_ok, rc, cases[i].want);
	}
}

struct match_case {
	const char *f;
	const char *t;
	bool want;
};

static void test_MQTT_4_7_match_table(void **state)
{
	static const struct match_case cases[] = {
		{ "a/b", "a/b", true }, { "a/b", "a/c", false },
		{ "a/b", "a/b/c", false }, { "a/b/c", "a/b", false },
		{ "a/b", "a", false }, { "a", "ab", false }, { "ab", "a", false },
		{ "#", "a", true }, { "#", "a/b/c", true }, { "#", "/", true },
		{ "a/#", "a", true },        /* [MQTT-4.7.1-2] parent level */
		{ "a/#", "a/b", true }, { "a/#", "a/b/c", true },
		{ "a/#", "ab", false }, { "a/#", "b", false },
		{ "a/b/#", "a", false },
		{ "+", "a", true }, { "+", "a/b", false }, { "+", "/", false },
		{ "+/+", "/", true },        /* "+" matches an empty level */
		{ "a/+", "a/", true }, { "+/b", "/b", true },
		{ "a/+/c", "a/b/c", true }, { "a/+/c", "a/b/d", false },
		{ "a/+", "a", false }, { "a/+/#", "a/b", true },
		{ "/+", "/a", true }, { "/+", "a", false },
		{ "a//b", "a//b", true }, { "a/+/b", "a//b", true },
		/* [MQTT-4.7.2-1] wildcards first never match "$" topics. */
		{ "#", "$SYS/x", false }, { "+/x", "$SYS/x", false },
		{ "+", "$SYS", false },
		{ "$SYS/#", "$SYS/x", true }, { "$SYS/+", "$SYS/x", true },
		{ "a/$x", "a/$x", true }, { "a/+", "a/$x", true },
	};
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		bool m = mqtt_topic_match(S(cases[i].f), S(cases[i].t));
		if (m != cases[i].want)
			fail_msg("'%s' vs '%s': got %d", cases[i].f, cases[i].t, m);
	}
}

static void test_MQTT_4_8_2_share_split(void **state)
{
	mqtt_str full = S("$share/grp/a/+/b"), g = { 0 }, f = { 0 };
	(void)state;
	assert_true(mqtt_topic_share_split(full, &g, &f));
	assert_int_equal(g.len, 3);
	assert_memory_equal(g.ptr, "grp", 3);
	assert_int_equal(f.len, 5);
	assert_memory_equal(f.ptr, "a/+/b", 5);
	assert_ptr_equal(g.ptr, full.ptr + 7);

	g.len = 99;
	assert_false(mqtt_topic_share_split(S("a/b"), &g, &f));
	assert_false(mqtt_topic_share_split(S("$share/grp"), &g, &f));
	assert_false(mqtt_topic_share_split(S("$shar"), &g, &f));
	assert_int_equal(g.len, 99); /* untouched */
	assert_true(mqtt_topic_share_split(S("$share//x"), &g, &f));
	assert_int_equal(g.len, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_MQTT_4_7_3_1_empty_name_rejected),
		cmocka_unit_test(test_MQTT_3_3_2_2_wildcard_topic_rejected),
		cmocka_unit_test(test_MQTT_4_7_3_2_nul_rejected),
		cmocka_unit_test(test_valid_names),
		cmocka_unit_test(test_MQTT_4_7_1_filter_table),
		cmocka_unit_test(test_MQTT_4_7_match_table),
		cmocka_unit_test(test_MQTT_4_8_2_share_split),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

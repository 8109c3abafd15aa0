/*
 * tests/unit/test_utf8.c — UTF-8 Encoded String rules [MQTT-1.5.4].
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>

#include "mqtt/error.h"
#include "mqtt/utf8.h"

struct utf8_case {
	const char *name;
	const char *bytes;
	size_t len;
	int want;
};

#define C(name, s, want) { name, s, sizeof(s) - 1, want }

static const struct utf8_case cases[] = {
	C("empty", "", 0),
	C("ascii", "hello/world", 0),
	C("2-byte e-acute", "\xC3\xA9", 0),
	C("3-byte euro", "\xE2\x82\xAC", 0),
	C("4-byte U+1F600", "\xF0\x9F\x98\x80", 0),
	C("U+10FFFF max", "\xF4\x8F\xBF\xBF", 0),
	C("U+FEFF BOM kept [MQTT-1.5.4-3]", "\xEF\xBB\xBF", 0),
	C("U+D7FF before surrogates", "\xED\x9F\xBF", 0),
	C("U+E000 after surrogates", "\xEE\x80\x80", 0),
	C("U+0000 [MQTT-1.5.4-2]", "a\x00" "b", MQTT_ERR_UTF8),
	C("surrogate U+D800 [MQTT-1.5.4-1]", "\xED\xA0\x80", MQTT_ERR_UTF8),
	C("surrogate U+DFFF [MQTT-1.5.4-1]", "\xED\xBF\xBF", MQTT_ERR_UTF8),
	C("overlong C0 80", "\xC0\x80", MQTT_ERR_UTF8),
	C("overlong C1 BF", "\xC1\xBF", MQTT_ERR_UTF8),
	C("overlong E0 80 80", "\xE0\x80\x80", MQTT_ERR_UTF8),
	C("overlong F0 80 80 80", "\xF0\x80\x80\x80", MQTT_ERR_UTF8),
	C("above U+10FFFF", "\xF4\x90\x80\x80", MQTT_ERR_UTF8),
	C("F5 lead", "\xF5\x80\x80\x80", MQTT_ERR_UTF8),
	C("FF byte", "\xFF", MQTT_ERR_UTF8),
	C("stray continuation", "\x80", MQTT_ERR_UTF8),
	C("truncated 2-byte", "\xC3", MQTT_ERR_UTF8),
	C("truncated 4-byte", "\xF0\x9F\x98", MQTT_ERR_UTF8),
	C("bad continuation", "\xE2\x28\xA1", MQTT_ERR_UTF8),
};

/* Places s against a PROT_NONE page so any over-read faults. */
static void check_guarded(const struct utf8_case *c)
{
	long pg = sysconf(_SC_PAGESIZE);
	uint8_t *m = mmap(NULL, (size_t)pg * 2, PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	uint8_t *at;
	int rc;

	assert_true(m != MAP_FAILED);
	assert_int_equal(mprotect(m + pg, (size_t)pg, PROT_NONE), 0);
	at = m + pg - c->len;
	memcpy(at, c->bytes, c->len);
	rc = mqtt_utf8_validate(at, c->len);
	if (rc != c->want)
		fail_msg("%s: got %d want %d", c->name, rc, c->want);
	munmap(m, (size_t)pg * 2);
}

static void test_MQTT_1_5_4_table(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		check_guarded(&cases[i]);
}

static void test_MQTT_1_5_4_1_surrogate_rejected(void **state)
{
	(void)state;
	assert_int_equal(mqtt_utf8_validate((const uint8_t *)"\xED\xA0\x80", 3),
			 MQTT_ERR_UTF8);
}

static void test_MQTT_1_5_4_2_nul_rejected(void **state)
{
	(void)state;
	assert_int_equal(mqtt_utf8_validate((const uint8_t *)"\0", 1), MQTT_ERR_UTF8);
}

/* Every code point's own encoding is accepted except surrogates. */
static void test_all_code_points(void **state)
{
	(void)state;
	for (uint32_t cp = 1; cp <= 0x10FFFF; cp++) {
		uint8_t b[4];
		size_t n;

		if (cp < 0x80) {
			b[0] = (uint8_t)cp, n = 1;
		} else if (cp < 0x800) {
			b[0] = (uint8_t)(0xC0 | cp >> 6);
			b[1] = (uint8_t)(0x80 | (cp & 0x3F)), n = 2;
		} else if (cp < 0x10000) {
			b[0] = (uint8_t)(0xE0 | cp >> 12);
			b[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
			b[2] = (uint8_t)(0x80 | (cp & 0x3F)), n = 3;
		} else {
			b[0] = (uint8_t)(0xF0 | cp >> 18);
			b[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3F));
			b[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
			b[3] = (uint8_t)(0x80 | (cp & 0x3F)), n = 4;
		}
		int want = (cp >= 0xD800 && cp <= 0xDFFF) ? MQTT_ERR_UTF8 : 0;
		if (mqtt_utf8_validate(b, n) != want)
			fail_msg("U+%04X", cp);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_MQTT_1_5_4_table),
		cmocka_unit_test(test_MQTT_1_5_4_1_surrogate_rejected),
		cmocka_unit_test(test_MQTT_1_5_4_2_nul_rejected),
		cmocka_unit_test(test_all_code_points),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

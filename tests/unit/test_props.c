/*
 * tests/unit/test_props.c — MQTT 5.0 properties [MQTT-2.2.2] and Variable
 * Byte Integers [MQTT-1.5.5].
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
#include "mqtt/props.h"

/* Copies len bytes against a PROT_NONE page; release with guard_free(). */
static uint8_t *guard_copy(const uint8_t *b, size_t len, uint8_t **base)
{
	long pg = sysconf(_SC_PAGESIZE);
	uint8_t *m = mmap(NULL, (size_t)pg * 2, PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	assert_true(m != MAP_FAILED);
	assert_true(len <= (size_t)pg);
	assert_int_equal(mprotect(m + pg, (size_t)pg, PROT_NONE), 0);
	if (len)
		memcpy(m + pg - len, b, len);
	*base = m;
	return m + pg - len;
}

static void guard_free(uint8_t *base)
{
	munmap(base, (size_t)sysconf(_SC_PAGESIZE) * 2);
}

/* Decodes a block whose contents are b[0..n), length VBI prepended. */
static int decode_block(const uint8_t *b, size_t n, mqtt_prop_ctx ctx,
			mqtt_props *out)
{
	uint8_t tmp[512], *base, *at;
	size_t hl = mqtt_vbi_encode(tmp, (uint32_t)n);
	int rc;

	memcpy(tmp + hl, b, n);
	at = guard_copy(tmp, hl + n, &base);
	rc = mqtt_props_decode(at, hl + n, ctx, out);
	guard_free(base);
	return rc;
}

/* A valid value for every property id, as wire bytes after the id. */
struct prop_sample {
	uint8_t id;
	uint8_t len;
	uint8_t bytes[8];
};

static const struct prop_sample samples[] = {
	{ 0x01, 1, { 1 } },
	{ 0x02, 4, { 0, 0, 0, 9 } },
	{ 0x03, 4, { 0, 2, 't', 'x' } },
	{ 0x08, 5, { 0, 3, 'a', '/', 'b' } },
	{ 0x09, 3, { 0, 1, 0xFF } },
	{ 0x0B, 1, { 5 } },
	{ 0x11, 4, { 0, 0, 1, 0 } },
	{ 0x12, 3, { 0, 1, 'c' } },
	{ 0x13, 2, { 0, 30 } },
	{ 0x15, 3, { 0, 1, 'm' } },
	{ 0x16, 3, { 0, 1, 0 } },
	{ 0x17, 1, { 1 } },
	{ 0x18, 4, { 0, 0, 0, 5 } },
	{ 0x19, 1, { 1 } },
	{ 0x1A, 3, { 0, 1, 'r' } },
	{ 0x1C, 3, { 0, 1, 's' } },
	{ 0x1F, 3, { 0, 1, 'x' } },
	{ 0x21, 2, { 0, 10 } },
	{ 0x22, 2, { 0, 10 } },
	{ 0x23, 2, { 0, 1 } },
	{ 0x24, 1, { 1 } },
	{ 0x25, 1, { 0 } },
	{ 0x26, 6, { 0, 1, 'k', 0, 1, 'v' } },
	{ 0x27, 4, { 0, 0, 4, 0 } },
	{ 0x28, 1, { 1 } },
	{ 0x29, 1, { 0 } },
	{ 0x2A, 1, { 1 } },
};

#define NSAMPLES (sizeof(samples) / sizeof(samples[0]))
#define CTX_N 11

/* Every property in every context: accepted where allowed, else
 * MQTT_ERR_PROPERTY (2.2.2.2). */
static void test_MQTT_2_2_2_2_allowed_matrix(void **state)
{
	static const mqtt_prop_ctx ctxs[CTX_N] = {
		MQTT_PCTX_CONNECT, MQTT_PCTX_CONNACK, MQTT_PCTX_PUBLISH,
		MQTT_PCTX_WILL, MQTT_PCTX_PUBACK, MQTT_PCTX_SUBSCRIBE,
		MQTT_PCTX_SUBACK, MQTT_PCTX_UNSUBSCRIBE, MQTT_PCTX_UNSUBACK,
		MQTT_PCTX_DISCONNECT, MQTT_PCTX_AUTH,
	};
	(void)state;
	for (size_t i = 0; i < NSAMPLES; i++) {
		for (int c = 0; c < CTX_N; c++) {
			uint8_t b[16];
			mqtt_props p;
			size_t n = 0;
			int want, rc;
			uint8_t id = samples[i].id;
			mqtt_prop_ctx ctx = ctxs[c];
			bool ok;

			/* Table 2.2.2.2, transcribed independently of props.c. */
			switch (id) {
			case 0x01: case 0x02: case 0x03: case 0x08: case 0x09:
				ok = ctx == MQTT_PCTX_PUBLISH || ctx == MQTT_PCTX_WILL; break;
			case 0x0B: ok = ctx == MQTT_PCTX_PUBLISH || ctx == MQTT_PCTX_SUBSCRIBE; break;
			case 0x11: ok = ctx == MQTT_PCTX_CONNECT || ctx == MQTT_PCTX_CONNACK ||
				       ctx == MQTT_PCTX_DISCONNECT; break;
			case 0x12: case 0x13: case 0x1A: case 0x24: case 0x25:
			case 0x28: case 0x29: case 0x2A:
				ok = ctx == MQTT_PCTX_CONNACK; break;
			case 0x15: case 0x16:
				ok = ctx == MQTT_PCTX_CONNECT || ctx == MQTT_PCTX_CONNACK ||
				     ctx == MQTT_PCTX_AUTH; break;
			case 0x17: case 0x19: ok = ctx == MQTT_PCTX_CONNECT; break;
			case 0x18: ok = ctx == MQTT_PCTX_WILL; break;
			case 0x1C: ok = ctx == MQTT_PCTX_CONNACK || ctx == MQTT_PCTX_DISCONNECT; break;
			case 0x1F: ok = ctx == MQTT_PCTX_CONNACK || ctx == MQTT_PCTX_PUBACK ||
				       ctx == MQTT_PCTX_SUBACK || ctx == MQTT_PCTX_UNSUBACK ||
				       ctx == MQTT_PCTX_DISCONNECT || ctx == MQTT_PCTX_AUTH; break;
			case 0x21: case 0x22: case 0x27:
				ok = ctx == MQTT_PCTX_CONNECT || ctx == MQTT_PCTX_CONNACK; break;
			case 0x23: ok = ctx == MQTT_PCTX_PUBLISH; break;
			case 0x26: ok = true; break;
			default: ok = false; break;
			}
			/* Authentication Data needs a Method beside it. */
			if (id == 0x16) {
				b[n++] = 0x15, b[n++] = 0, b[n++] = 1, b[n++] = 'm';
			}
			b[n++] = id;
			memcpy(b + n, samples[i].bytes, samples[i].len);
			n += samples[i].len;
			want = ok ? (int)(n + 1) : MQTT_ERR_PROPERTY;
			rc = decode_block(b, n, ctx, &p);
			if (rc != want)
				fail_msg("id 0x%02X ctx %d: got %d want %d", id, ctx, rc, want);
			if (ok)
				assert_true(p.present & MQTT_PROP_BIT(id));
		}
	}
}

static mqtt_prop_ctx ctx_for(uint8_t id)
{
	switch (id) {
	case 0x01: case 0x02: case 0x03: case 0x08: case 0x09: case 0x0B:
	case 0x23:
		return MQTT_PCTX_PUBLISH;
	case 0x18:
		return MQTT_PCTX_WILL;
	case 0x17: case 0x19:
		return MQTT_PCTX_CONNECT;
	default:
		return MQTT_PCTX_CONNACK;
	}
}

/* "It is a Protocol Error to include X more than once" (3.x.2.x). */
static void test_MQTT_2_2_2_2_duplicate_property_rejected(void **state)
{
	(void)state;
	for (size_t i = 0; i < NSAMPLES; i++) {
		uint8_t b[32];
		size_t n = 0;
		mqtt_props p;
		uint8_t id = samples[i].id;
		mqtt_prop_ctx ctx = ctx_for(id);
		int want, rc;

		if (id == 0x16) /* Authentication Data needs a Method */
			b[n++] = 0x15, b[n++] = 0, b[n++] = 1, b[n++] = 'm';
		for (int k = 0; k < 2; k++) {
			b[n++] = id;
			memcpy(b + n, samples[i].bytes, samples[i].len);
			n += samples[i].len;
		}
		/* User Property repeats anywhere; Subscription Identifier in
		 * PUBLISH (3.3.2.3.8). */
		want = (id == 0x26 || id == 0x0B) ? (int)(n + 1) : MQTT_ERR_PROPERTY;
		rc = decode_block(b, n, ctx, &p);
		if (rc != want)
			fail_msg("id 0x%02X: got %d want %d", id, rc, want);
	}
}

static void test_MQTT_3_8_2_1_2_one_sub_id_in_subscribe(void **state)
{
	static const uint8_t two[] = { 0x0B, 1, 0x0B, 2 };
	mqtt_props p;
	(void)state;
	assert_int_equal(decode_block(two, sizeof(two), MQTT_PCTX_SUBSCRIBE, &p),
			 MQTT_ERR_PROPERTY);
	assert_int_equal(decode_block(two, sizeof(two), MQTT_PCTX_PUBLISH, &p), 5);
	assert_int_equal(p.sub_id_count, 2);
	assert_int_equal(p.sub_id, 1);
}

struct bad_case {
	const char *name;
	mqtt_prop_ctx ctx;
	uint8_t len;
	uint8_t b[12];
	int want;
};

static void test_MQTT_2_2_2_bad_values(void **state)
{
	static const struct bad_case cases[] = {
		{ "Receive Maximum 0", MQTT_PCTX_CONNECT, 3, { 0x21, 0, 0 }, MQTT_ERR_PROTOCOL },
		{ "Maximum Packet Size 0", MQTT_PCTX_CONNECT, 5, { 0x27, 0, 0, 0, 0 }, MQTT_ERR_PROTOCOL },
		{ "Topic Alias 0 [MQTT-3.3.2-8]", MQTT_PCTX_PUBLISH, 3, { 0x23, 0, 0 }, MQTT_ERR_PROTOCOL },
		{ "Subscription Identifier 0", MQTT_PCTX_SUBSCRIBE, 2, { 0x0B, 0 }, MQTT_ERR_PROTOCOL },
		{ "Payload Format 2", MQTT_PCTX_PUBLISH, 2, { 0x01, 2 }, MQTT_ERR_PROTOCOL },
		{ "Request Problem Info 2", MQTT_PCTX_CONNECT, 2, { 0x17, 2 }, MQTT_ERR_PROTOCOL },
		{ "Request Response Info 2", MQTT_PCTX_CONNECT, 2, { 0x19, 2 }, MQTT_ERR_PROTOCOL },
		{ "Maximum QoS 2", MQTT_PCTX_CONNACK, 2, { 0x24, 2 }, MQTT_ERR_PROTOCOL },
		{ "Retain Available 2", MQTT_PCTX_CONNACK, 2, { 0x25, 2 }, MQTT_ERR_PROTOCOL },
		{ "Wildcard Sub Available 2", MQTT_PCTX_CONNACK, 2, { 0x28, 2 }, MQTT_ERR_PROTOCOL },
		{ "Sub Id Available 2", MQTT_PCTX_CONNACK, 2, { 0x29, 2 }, MQTT_ERR_PROTOCOL },
		{ "Shared Sub Available 2", MQTT_PCTX_CONNACK, 2, { 0x2A, 2 }, MQTT_ERR_PROTOCOL },
		{ "Auth Data without Method", MQTT_PCTX_CONNECT, 3, { 0x16, 0, 0 }, MQTT_ERR_PROTOCOL },
		{ "Response Topic wildcard [MQTT-3.3.2-14]", MQTT_PCTX_PUBLISH, 4, { 0x08, 0, 1, '#' }, MQTT_ERR_PROTOCOL },
		{ "unknown id 0x00", MQTT_PCTX_PUBLISH, 2, { 0x00, 0 }, MQTT_ERR_PROPERTY },
		{ "unknown id 0x04", MQTT_PCTX_PUBLISH, 2, { 0x04, 0 }, MQTT_ERR_PROPERTY },
		{ "unknown id 0x7F", MQTT_PCTX_PUBLISH, 2, { 0x7F, 0 }, MQTT_ERR_PROPERTY },
		{ "id VBI 2 bytes", MQTT_PCTX_PUBLISH, 3, { 0x81, 0x01, 0 }, MQTT_ERR_PROPERTY },
		{ "id VBI padded", MQTT_PCTX_PUBLISH, 3, { 0x81, 0x00, 1 }, MQTT_ERR_MALFORMED },
		{ "truncated u32", MQTT_PCTX_PUBLISH, 3, { 0x02, 0, 0 }, MQTT_ERR_MALFORMED },
		{ "truncated u16", MQTT_PCTX_PUBLISH, 2, { 0x23, 0 }, MQTT_ERR_MALFORMED },
		{ "truncated byte", MQTT_PCTX_PUBLISH, 1, { 0x01 }, MQTT_ERR_MALFORMED },
		{ "truncated string", MQTT_PCTX_PUBLISH, 4, { 0x03, 0, 2, 'a' }, MQTT_ERR_MALFORMED },
		{ "truncated pair", MQTT_PCTX_PUBLISH, 5, { 0x26, 0, 1, 'k', 0 }, MQTT_ERR_MALFORMED },
		{ "truncated vbi", MQTT_PCTX_PUBLISH, 2, { 0x0B, 0x80 }, MQTT_ERR_MALFORMED },
		{ "string surrogate", MQTT_PCTX_PUBLISH, 6, { 0x03, 0, 3, 0xED, 0xA0, 0x80 }, MQTT_ERR_UTF8 },
		{ "string overlong", MQTT_PCTX_PUBLISH, 5, { 0x03, 0, 2, 0xC0, 0x80 }, MQTT_ERR_UTF8 },
		{ "string U+0000", MQTT_PCTX_PUBLISH, 4, { 0x03, 0, 1, 0 }, MQTT_ERR_UTF8 },
		{ "user value bad utf8", MQTT_PCTX_PUBLISH, 7, { 0x26, 0, 1, 'k', 0, 1, 0xFF }, MQTT_ERR_UTF8 },
		{ "binary may hold anything", MQTT_PCTX_PUBLISH, 5, { 0x09, 0, 2, 0, 0xFF }, 6 },
	};
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		mqtt_props p;
		int rc = decode_block(cases[i].b, cases[i].len, cases[i].ctx, &p);
		if (rc != cases[i].want)
			fail_msg("%s: got %d want %d", cases[i].name, rc, cases[i].want);
	}
}

static void test_block_length_overrun(void **state)
{
	static const uint8_t over[] = { 5, 0x01, 1 };
	static const uint8_t vbi5[] = { 0x80, 0x80, 0x80, 0x80, 0x01 };
	mqtt_props p;
	uint8_t *base, *at;
	(void)state;
	at = guard_copy(over, sizeof(over), &base);
	assert_int_equal(mqtt_props_decode(at, sizeof(over), MQTT_PCTX_PUBLISH, &p),
			 MQTT_ERR_MALFORMED);
	guard_free(base);
	at = guard_copy(vbi5, sizeof(vbi5), &base);
	assert_int_equal(mqtt_props_decode(at, sizeof(vbi5), MQTT_PCTX_PUBLISH, &p),
			 MQTT_ERR_MALFORMED);
	assert_int_equal(mqtt_props_decode(at, 0, MQTT_PCTX_PUBLISH, &p),
			 MQTT_ERR_MALFORMED);
	guard_free(base);
}

static void test_MQTT_1_5_5_vbi(void **state)
{
	static const struct { uint32_t v; uint8_t n; uint8_t b[4]; } t[] = {
		{ 0, 1, { 0x00 } }, { 127, 1, { 0x7F } },
		{ 128, 2, { 0x80, 0x01 } }, { 16383, 2, { 0xFF, 0x7F } },
		{ 16384, 3, { 0x80, 0x80, 0x01 } }, { 2097151, 3, { 0xFF, 0xFF, 0x7F } },
		{ 2097152, 4, { 0x80, 0x80, 0x80, 0x01 } },
		{ 268435455, 4, { 0xFF, 0xFF, 0xFF, 0x7F } },
	};
	uint8_t b[4];
	uint32_t v;
	(void)state;
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		assert_int_equal(mqtt_vbi_size(t[i].v), t[i].n);
		assert_int_equal(mqtt_vbi_encode(b, t[i].v), t[i].n);
		assert_memory_equal(b, t[i].b, t[i].n);
		assert_int_equal(mqtt_vbi_decode(t[i].b, t[i].n, &v), t[i].n);
		assert_int_equal(v, t[i].v);
		for (size_t k = 0; k < t[i].n; k++)
			assert_int_equal(mqtt_vbi_decode(t[i].b, k, &v), MQTT_ERR_NEED_MORE);
	}
	/* More than four bytes. */
	assert_int_equal(mqtt_vbi_decode((const uint8_t *)"\xFF\xFF\xFF\xFF\x7F", 5, &v),
			 MQTT_ERR_MALFORMED);
	/* [MQTT-1.5.5-1] the minimum number of bytes. */
	assert_int_equal(mqtt_vbi_decode((const uint8_t *)"\x80\x00", 2, &v),
			 MQTT_ERR_MALFORMED);
}

static bool str_eq(mqtt_str a, const char *s)
{
	return a.len == strlen(s) && (a.len == 0 || memcmp(a.ptr, s, a.len) == 0);
}

/* Every single-valued property, the repeating ones from both sources,
 * encoded and decoded back. */
static void test_encode_decode_round_trip(void **state)
{
	static const mqtt_user_prop users[] = {
		{ { "k1", 2 }, { "v1", 2 } }, { { "k2", 2 }, { "", 0 } },
	};
	static const uint32_t ids[] = { 1, 268435455 };
	mqtt_props in, out;
	uint8_t buf[512], raw_block[64];
	size_t need, rawn;
	uint32_t off = 0, nusers = 0;
	mqtt_prop pr;
	(void)state;

	/* A raw block with one user property and one other id, for user_raw. */
	memcpy(raw_block, "\x26\x00\x01r\x00\x01s\x01\x01", 9);
	rawn = 9;

	memset(&in, 0, sizeof(in));
	in.present = MQTT_PROP_BIT(0x01) | MQTT_PROP_BIT(0x02) | MQTT_PROP_BIT(0x03) |
		     MQTT_PROP_BIT(0x08) | MQTT_PROP_BIT(0x09) | MQTT_PROP_BIT(0x23);
	in.payload_format = 1;
	in.message_expiry = 0xDEADBEEF;
	in.content_type = mqtt_str_c("text/plain");
	in.response_topic = mqtt_str_c("re/ply");
	in.correlation_data = (mqtt_bytes){ (const uint8_t *)"\x00\x01\x02", 3 };
	in.topic_alias = 7;
	in.user = users;
	in.user_count = 2;
	in.user_raw = (mqtt_bytes){ raw_block, (uint32_t)rawn };
	in.sub_ids = ids;
	in.sub_id_count = 2;
	assert_int_equal(mqtt_props_check(&in), 0);

	need = mqtt_props_encode(buf, 0, &in);
	assert_true(need > 1 && need < sizeof(buf));
	assert_int_equal(need, mqtt_vbi_size((uint32_t)mqtt_props_size(&in)) +
			 mqtt_props_size(&in));
	memset(buf, 0xAA, sizeof(buf));
	assert_int_equal(mqtt_props_encode(buf, need - 1, &in), need);
	assert_int_equal(buf[0], 0xAA); /* nothing written when too small */
	assert_int_equal(mqtt_props_encode(buf, need, &in), need);
	assert_int_equal(mqtt_props_decode(buf, need, MQTT_PCTX_PUBLISH, &out), (int)need);
	assert_int_equal(out.payload_format, 1);
	assert_int_equal(out.message_expiry, 0xDEADBEEF);
	assert_true(str_eq(out.content_type, "text/plain"));
	assert_true(str_eq(out.response_topic, "re/ply"));
	assert_int_equal(out.correlation_data.len, 3);
	assert_memory_equal(out.correlation_data.ptr, "\x00\x01\x02", 3);
	assert_int_equal(out.topic_alias, 7);
	assert_int_equal(out.user_count, 3);
	assert_int_equal(out.sub_id_count, 2);
	assert_int_equal(out.sub_id, 1);
	while (mqtt_props_next(out.raw, &off, &pr) == 1) {
		if (pr.id == MQTT_PROP_USER_PROPERTY) {
			static const char *const k[] = { "r", "k1", "k2" };
			static const char *const v[] = { "s", "v1", "" };
			assert_true(str_eq(pr.str, k[nusers]));
			assert_true(str_eq(pr.str2, v[nusers]));
			nusers++;
		}
	}
	assert_int_equal(off, out.raw.len);
	assert_int_equal(nusers, 3);

	/* CONNACK's properties. */
	memset(&in, 0, sizeof(in));
	in.present = MQTT_PROP_BIT(0x11) | MQTT_PROP_BIT(0x12) | MQTT_PROP_BIT(0x13) |
		     MQTT_PROP_BIT(0x15) | MQTT_PROP_BIT(0x16) | MQTT_PROP_BIT(0x1A) |
		     MQTT_PROP_BIT(0x1C) | MQTT_PROP_BIT(0x1F) | MQTT_PROP_BIT(0x21) |
		     MQTT_PROP_BIT(0x22) | MQTT_PROP_BIT(0x24) | MQTT_PROP_BIT(0x25) |
		     MQTT_PROP_BIT(0x27) | MQTT_PROP_BIT(0x28) | MQTT_PROP_BIT(0x29) |
		     MQTT_PROP_BIT(0x2A);
	in.session_expiry = 0xFFFFFFFF;
	in.assigned_client_id = mqtt_str_c("auto-1");
	in.server_keep_alive = 60;
	in.auth_method = mqtt_str_c("SCRAM");
	in.auth_data = (mqtt_bytes){ (const uint8_t *)"\x01", 1 };
	in.response_info = mqtt_str_c("ri");
	in.server_reference = mqtt_str_c("other:1883");
	in.reason_string = mqtt_str_c("why");
	in.receive_maximum = 65535;
	in.topic_alias_maximum = 10;
	in.maximum_qos = 1;
	in.retain_available = 0;
	in.maximum_packet_size = 1u << 20;
	in.wildcard_sub_available = 1;
	in.sub_id_available = 1;
	in.shared_sub_available = 0;
	need = mqtt_props_encode(buf, sizeof(buf), &in);
	assert_int_equal(mqtt_props_decode(buf, need, MQTT_PCTX_CONNACK, &out), (int)need);
	assert_int_equal(out.present, in.present);
	assert_int_equal(out.session_expiry, 0xFFFFFFFF);
	assert_true(str_eq(out.assigned_client_id, "auto-1"));
	assert_int_equal(out.server_keep_alive, 60);
	assert_true(str_eq(out.auth_method, "SCRAM"));
	assert_int_equal(out.auth_data.len, 1);
	assert_true(str_eq(out.response_info, "ri"));
	assert_true(str_eq(out.server_reference, "other:1883"));
	assert_true(str_eq(out.reason_string, "why"));
	assert_int_equal(out.receive_maximum, 65535);
	assert_int_equal(out.topic_alias_maximum, 10);
	assert_int_equal(out.maximum_qos, 1);
	assert_int_equal(out.maximum_packet_size, 1u << 20);
	assert_int_equal(out.wildcard_sub_available, 1);
	assert_int_equal(out.sub_id_available, 1);

	/* CONNECT-only and Will-only bytes. */
	memset(&in, 0, sizeof(in));
	in.present = MQTT_PROP_BIT(0x17) | MQTT_PROP_BIT(0x19);
	in.request_problem_info = 0;
	in.request_response_info = 1;
	need = mqtt_props_encode(buf, sizeof(buf), &in);
	assert_int_equal(mqtt_props_decode(buf, need, MQTT_PCTX_CONNECT, &out), (int)need);
	assert_int_equal(out.request_response_info, 1);
	memset(&in, 0, sizeof(in));
	in.present = MQTT_PROP_BIT(0x18);
	in.will_delay = 300;
	need = mqtt_props_encode(buf, sizeof(buf), &in);
	assert_int_equal(mqtt_props_decode(buf, need, MQTT_PCTX_WILL, &out), (int)need);
	assert_int_equal(out.will_delay, 300);

	/* NULL and empty encode as one zero byte. */
	assert_int_equal(mqtt_props_encode(buf, sizeof(buf), NULL), 1);
	assert_int_equal(buf[0], 0);
	assert_int_equal(mqtt_props_decode(buf, 1, MQTT_PCTX_AUTH, &out), 1);
	assert_int_equal(out.present, 0);
}

static void test_props_check_invalid(void **state)
{
	static const uint32_t zero[] = { 0 };
	mqtt_props p;
	(void)state;
	memset(&p, 0, sizeof(p));
	p.sub_ids = zero;
	p.sub_id_count = 1;
	assert_int_equal(mqtt_props_check(&p), MQTT_ERR_INVALID);
	memset(&p, 0, sizeof(p));
	p.present = MQTT_PROP_BIT(0x0B);
	p.sub_id = MQTT_VBI_MAX + 1;
	assert_int_equal(mqtt_props_check(&p), MQTT_ERR_INVALID);
	memset(&p, 0, sizeof(p));
	p.reason_string.len = 70000;
	p.reason_string.ptr = "";
	assert_int_equal(mqtt_props_check(&p), MQTT_ERR_INVALID);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_MQTT_2_2_2_2_allowed_matrix),
		cmocka_unit_test(test_MQTT_2_2_2_2_duplicate_property_rejected),
		cmocka_unit_test(test_MQTT_3_8_2_1_2_one_sub_id_in_subscribe),
		cmocka_unit_test(test_MQTT_2_2_2_bad_values),
		cmocka_unit_test(test_block_length_overrun),
		cmocka_unit_test(test_MQTT_1_5_5_vbi),
		cmocka_unit_test(test_encode_decode_round_trip),
		cmocka_unit_test(test_props_check_invalid),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

/* Unit tests for shmpath/ctl: control message codec, MQTT framing, fd FIFO. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "mqtt/error.h"
#include "mqtt/packet.h"
#include "shmpath/ctl.h"

static shimmy_ctl sample(void)
{
	shimmy_ctl m = { 0 };
	m.type = SHIMMY_CTL_LOG_ATTACH;
	m.log_id = 0x1122334455667788ull;
	m.gen = 42;
	m.idx = 7;
	m.flags = SHIMMY_CTL_F_FROM_HEAD;
	m.req_id = 9;
	m.arg = 3;
	m.topic = "sensors/a";
	m.topic_len = 9;
	return m;
}

static void test_roundtrip(void **state)
{
	(void)state;
	shimmy_ctl m = sample(), d;
	uint8_t buf[128];
	int n = shimmy_ctl_encode(&m, buf, sizeof(buf));
	assert_int_equal(n, SHIMMY_CTL_HDR + 9);
	assert_int_equal(shimmy_ctl_decode(buf, (size_t)n, &d), 0);
	assert_int_equal(d.type, m.type);
	assert_int_equal(d.nfds, 2);
	assert_true(d.log_id == m.log_id);
	assert_true(d.gen == 42);
	assert_int_equal(d.idx, 7);
	assert_int_equal(d.flags, m.flags);
	assert_int_equal(d.req_id, 9);
	assert_int_equal(d.arg, 3);
	assert_int_equal(d.topic_len, 9);
	assert_memory_equal(d.topic, "sensors/a", 9);
	/* Too small a buffer: size returned, nothing written past cap. */
	assert_int_equal(shimmy_ctl_encode(&m, buf, 10), n);
}

static void test_decode_rejects(void **state)
{
	(void)state;
	shimmy_ctl m = sample(), d;
	uint8_t buf[128];
	int n = shimmy_ctl_encode(&m, buf, sizeof(buf));
	/* Every truncation is malformed. */
	for (int i = 0; i < n; i++)
		assert_int_not_equal(shimmy_ctl_decode(buf, (size_t)i, &d), 0);
	/* Trailing garbage. */
	assert_int_equal(shimmy_ctl_decode(buf, (size_t)n + 1, &d),
			 MQTT_ERR_MALFORMED);
	uint8_t bad[128];
	memcpy(bad, buf, (size_t)n);
	bad[0] ^= 1; /* magic */
	assert_int_equal(shimmy_ctl_decode(bad, (size_t)n, &d), MQTT_ERR_MALFORMED);
	memcpy(bad, buf, (size_t)n);
	bad[4] = 2; /* version */
	assert_int_equal(shimmy_ctl_decode(bad, (size_t)n, &d), MQTT_ERR_PROTOCOL);
	memcpy(bad, buf, (size_t)n);
	bad[6] = 99; /* type */
	assert_int_equal(shimmy_ctl_decode(bad, (size_t)n, &d), MQTT_ERR_MALFORMED);
	memcpy(bad, buf, (size_t)n);
	bad[8] = 3; /* nfds disagrees with the type */
	assert_int_equal(shimmy_ctl_decode(bad, (size_t)n, &d), MQTT_ERR_MALFORMED);
	memcpy(bad, buf, (size_t)n);
	bad[10] = 200; /* topic length past the end */
	assert_int_equal(shimmy_ctl_decode(bad, (size_t)n, &d), MQTT_ERR_MALFORMED);
	/* A refused grant carries no fd. */
	m.type = SHIMMY_CTL_LOG_GRANT;
	m.status = 0x87;
	n = shimmy_ctl_encode(&m, buf, sizeof(buf));
	assert_int_equal(shimmy_ctl_decode(buf, (size_t)n, &d), 0);
	assert_int_equal(d.nfds, 0);
	m.type = 77;
	assert_int_equal(shimmy_ctl_encode(&m, buf, sizeof(buf)), MQTT_ERR_INVALID);
}

static void test_frame_decodes_as_publish(void **state)
{
	(void)state;
	shimmy_ctl m = sample(), d;
	uint8_t buf[256];
	for (int v5 = 0; v5 <= 1; v5++) {
		int n = shimmy_ctl_frame(&m, v5, buf, sizeof(buf));
		assert_true(n > 0 && n <= (int)sizeof(buf));
		assert_true((size_t)n <= SHIMMY_CTL_FRAME_MAX(9));
		mqtt_packet pkt;
		int rc = mqtt_decode(buf, (size_t)n, v5 ? MQTT_V5 : MQTT_V311, 0,
				     &pkt);
		assert_int_equal(rc, n);
		assert_int_equal(pkt.type, MQTT_PUBLISH);
		assert_int_equal(pkt.u.publish.qos, 0);
		assert_int_equal(pkt.u.publish.topic.len, SHIMMY_CTL_TOPIC_LEN);
		assert_memory_equal(pkt.u.publish.topic.ptr, SHIMMY_CTL_TOPIC,
				    SHIMMY_CTL_TOPIC_LEN);
		assert_true(shimmy_ctl_is_reserved(pkt.u.publish.topic.ptr,
						   pkt.u.publish.topic.len));
		assert_int_equal(shimmy_ctl_decode(pkt.u.publish.payload.ptr,
						   pkt.u.publish.payload.len, &d),
				 0);
		assert_int_equal(d.idx, 7);
	}
	assert_false(shimmy_ctl_is_reserved("$SYS/x", 6));
	assert_false(shimmy_ctl_is_reserved("$shimmy", 7));
}

static void test_fdq(void **state)
{
	(void)state;
	shimmy_fdq q;
	shimmy_fdq_init(&q);
	int out[4];
	assert_int_equal(shimmy_fdq_pop(&q, out, 1), -ENOENT);
	for (unsigned i = 0; i < SHIMMY_FDQ_CAP; i++)
		assert_int_equal(shimmy_fdq_push(&q, open("/dev/null", O_RDONLY)), 0);
	int extra = open("/dev/null", O_RDONLY);
	assert_int_equal(shimmy_fdq_push(&q, extra), -ENOSPC);
	assert_int_equal(fcntl(extra, F_GETFD), -1); /* closed */
	int first = q.fds[0];
	assert_int_equal(shimmy_fdq_pop(&q, out, 2), 0);
	assert_int_equal(out[0], first);
	close(out[0]);
	close(out[1]);
	assert_int_equal(shimmy_fdq_count(&q), SHIMMY_FDQ_CAP - 2);
	shimmy_fdq_fini(&q);
	assert_int_equal(shimmy_fdq_count(&q), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_roundtrip),
		cmocka_unit_test(test_decode_rejects),
		cmocka_unit_test(test_frame_decodes_as_publish),
		cmocka_unit_test(test_fdq),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

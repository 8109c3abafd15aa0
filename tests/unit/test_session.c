/*
 * tests/unit/test_session.c — session state: subscriptions and their ids,
 * packet identifiers, inflight, the queue with its limits, QoS 2 ids.
 */
#include "broker/session.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

/* The messages of every test come from this pool (main sets it up). */
static msg_pool pool;

static broker_msg *mk(const char *topic, uint32_t len)
{
	static uint8_t zeros[4096];
	mqtt_bytes pl = { zeros, len };
	mqtt_bytes none = { NULL, 0 };
	return msg_create(&pool, mqtt_str_c(topic), pl, none, 1, false, 0, 0);
}

static void test_subs(void **state)
{
	(void)state;
	session *s = session_create("c1", 2, 1);
	bool ex;
	assert_int_equal(session_sub_set(s, mqtt_str_c("a/+"), 1, 5, &ex), 0);
	assert_false(ex);
	assert_int_equal(session_sub_set(s, mqtt_str_c("a/#"), 0, 6, &ex), 0);
	assert_int_equal(session_sub_set(s, mqtt_str_c("$share/g/a/b"), 0, 7, &ex), 0);
	assert_int_equal(session_sub_set(s, mqtt_str_c("x"), 0, 0, &ex), 0);
	assert_int_equal(session_sub_set(s, mqtt_str_c("a/+"), 2, 5, &ex), 0);
	assert_true(ex);
	uint32_t ids[8];
	assert_int_equal(session_sub_ids(s, mqtt_str_c("a/b"), ids, 8), 3);
	assert_int_equal(session_sub_ids(s, mqtt_str_c("x"), ids, 8), 0);
	assert_true(session_sub_del(s, mqtt_str_c("a/#")));
	assert_false(session_sub_del(s, mqtt_str_c("a/#")));
	assert_int_equal(session_sub_ids(s, mqtt_str_c("a/b"), ids, 8), 2);
	assert_int_equal(s->sub_count, 3);
	session_destroy(s);
}

/* [MQTT-2.3.1-2] a new id is not one in use; never 0. */
static void test_MQTT_2_3_1_2_pids(void **state)
{
	(void)state;
	session *s = session_create("c", 1, 1);
	s->next_pid = 65534;
	broker_msg *m = mk("t", 1);
	sess_out e = { msg_ref(m), 0, 1, SESS_OUT_WAIT_PUBACK, false, false };
	e.pid = session_next_pid(s);
	assert_int_equal(e.pid, 65534);
	assert_int_equal(session_inflight_add(s, &e), 0);
	assert_int_equal(session_next_pid(s), 65535);
	assert_int_equal(session_next_pid(s), 1);
	s->next_pid = 65534;
	assert_int_equal(session_next_pid(s), 65535);
	assert_int_equal(session_inflight_find(s, 65534), 0);
	session_inflight_remove(s, 0);
	assert_int_equal(session_inflight_find(s, 65534), -1);
	msg_unref(m);
	session_destroy(s);
}

static void test_queue_limits(void **state)
{
	(void)state;
	session *s = session_create("c", 1, 1);
	broker_msg *m = mk("t", 100);
	for (int i = 0; i < 3; i++) {
		sess_out e = { msg_ref(m), 0, 1, SESS_OUT_QUEUED, false, false };
		assert_int_equal(session_queue_push(s, &e, 3, 0), 0);
	}
	sess_out e = { m, 0, 1, SESS_OUT_QUEUED, false, false };
	assert_int_not_equal(session_queue_push(s, &e, 3, 0), 0);
	assert_int_not_equal(session_queue_push(s, &e, 0, 350), 0);
	assert_int_equal(s->q_bytes, 300);
	for (int i = 0; i < 20; i++) { /* wraps and grows the ring */
		sess_out o;
		assert_true(session_queue_pop(s, &o));
		msg_unref(o.msg);
		sess_out n1 = { msg_ref(m), 0, 1, SESS_OUT_QUEUED, false, false };
		sess_out n2 = { msg_ref(m), 0, 1, SESS_OUT_QUEUED, false, false };
		assert_int_equal(session_queue_push(s, &n1, 0, 0), 0);
		assert_int_equal(session_queue_push(s, &n2, 0, 0), 0);
	}
	assert_int_equal(s->q_count, 23);
	assert_int_equal(m->refs, 24);
	session_destroy(s);
	assert_int_equal(m->refs, 1);
	msg_unref(m);
}

static void test_qos2_in(void **state)
{
	(void)state;
	session *s = session_create("c", 1, 1);
	for (uint16_t i = 1; i <= 10; i++)
		assert_int_equal(session_qos2_add(s, i), 0);
	assert_int_equal(session_qos2_add(s, 3), 0);
	assert_int_equal(s->qos2_count, 10);
	assert_true(session_qos2_has(s, 7));
	assert_true(session_qos2_del(s, 7));
	assert_false(session_qos2_has(s, 7));
	assert_false(session_qos2_del(s, 7));
	session_destroy(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_subs),
		cmocka_unit_test(test_MQTT_2_3_1_2_pids),
		cmocka_unit_test(test_queue_limits),
		cmocka_unit_test(test_qos2_in),
	};
	msg_pool_init(&pool);
	int rc = cmocka_run_group_tests(tests, NULL, NULL);
	msg_pool_fini(&pool);
	return rc;
}

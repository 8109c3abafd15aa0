/* Unit tests for clients/shm (libshimmy's shm side), driven by the real
 * broker module (broker/shm.c) through a fake core that hands each control
 * packet and its fds to the client state of the connection it is for. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include "broker/shm.h"
#include "clients/include/shimmy.h"
#include "clients/shm.h"
#include "mqtt/packet.h"
#include "mqtt/topic.h"
#include "shmpath/ctl.h"

typedef struct fconn {
	cshm *cs;
	shimmy_fdq q;
	const char *filter;
	int ctl_errors;
} fconn;

static int f_send(void *conn, const uint8_t *pkt, size_t len, int *fds,
		  unsigned nfds, void *ctx)
{
	(void)ctx;
	fconn *c = conn;
	mqtt_packet p;
	assert_int_equal(mqtt_decode(pkt, len, MQTT_V5, 0, &p), (int)len);
	for (unsigned i = 0; i < nfds; i++)
		shimmy_fdq_push(&c->q, fds[i]);
	if (cshm_on_ctl(c->cs, p.u.publish.payload.ptr, p.u.publish.payload.len,
			&c->q) < 0)
		c->ctl_errors++;
	return 0;
}

static bool f_may(void *conn, const char *t, size_t len, bool w, void *ctx)
{
	(void)conn; (void)t; (void)len; (void)w; (void)ctx;
	return true;
}

static bool f_wants(void *conn, const char *t, size_t len, void *from, void *ctx)
{
	(void)from; (void)ctx;
	fconn *c = conn;
	return c->filter && mqtt_topic_match(mqtt_str_c(c->filter),
					     (mqtt_str){ t, (uint32_t)len });
}

static bool f_others(const char *t, size_t len, void *ctx)
{
	(void)t; (void)len; (void)ctx;
	return false;
}

static void f_route(void *from, const char *t, size_t len,
		    const shimmy_ring_msg *m, void *ctx)
{
	(void)from; (void)t; (void)len; (void)m; (void)ctx;
}

static shm_broker *mk(void)
{
	static shm_env env = { f_send, f_may, f_wants, f_others, f_route, NULL };
	shm_limits lim = { 1ull << 30, 10, 1000 };
	int err;
	shm_broker *sb = shm_broker_create(&env, &lim, &err);
	assert_non_null(sb);
	return sb;
}

static void conn_init(fconn *c, const char *filter)
{
	memset(c, 0, sizeof(*c));
	c->cs = cshm_create();
	assert_non_null(c->cs);
	shimmy_fdq_init(&c->q);
	c->filter = filter;
}

static void conn_fini(fconn *c)
{
	cshm_destroy(c->cs);
	shimmy_fdq_fini(&c->q);
}

/* The publisher side of the request/grant exchange. */
static void request_log(shm_broker *sb, shm_client *bc, fconn *c, const char *topic)
{
	uint8_t buf[256];
	int n = cshm_log_request(c->cs, topic, strlen(topic), UINT32_MAX, buf, sizeof(buf));
	assert_true(n > 0);
	assert_int_equal(cshm_log_state(c->cs, topic, strlen(topic)), CSHM_LOG_PENDING);
	assert_int_equal(shm_client_ctl(sb, bc, buf, (size_t)n), 0);
}

static void test_publish_receive_loan_inbound(void **state)
{
	(void)state;
	shm_broker *sb = mk();
	fconn P, S;
	conn_init(&P, NULL);
	conn_init(&S, "a/#");
	shm_client *bp = shm_client_open(sb, &P), *bs = shm_client_open(sb, &S);
	assert_non_null(bp);
	assert_non_null(bs);
	assert_true(cshm_ready_session(P.cs) && cshm_ready_session(S.cs));
	assert_int_equal(cshm_spin_us(S.cs), 10);

	/* No log yet: the caller must use MQTT. */
	assert_int_equal(cshm_publish(P.cs, "a/b", 3, NULL, 0, "x", 1), -ENOENT);
	request_log(sb, bp, &P, "a/b");
	assert_int_equal(cshm_log_state(P.cs, "a/b", 3), CSHM_LOG_READY);
	assert_int_equal(cshm_readers(S.cs), 1);

	static const uint8_t props[] = { 0x03, 0x00, 0x01, 't' }; /* content type */
	assert_int_equal(cshm_publish(P.cs, "a/b", 3, props, sizeof(props), "hello", 5), 0);
	assert_true(cshm_has_data(S.cs));
	assert_int_equal(cshm_wait(S.cs, 0, 1000000), 1);
	cshm_msg m;
	assert_int_equal(cshm_next(S.cs, &m), 1);
	assert_int_equal(m.topic_len, 3);
	assert_memory_equal(m.topic, "a/b", 3);
	assert_int_equal(m.len, 5);
	assert_memory_equal(m.payload, "hello", 5);
	assert_int_equal(m.props_len, sizeof(props));
	cshm_msg m2;
	assert_int_equal(cshm_next(S.cs, &m2), SHIMMY_ERR_BUSY); /* one borrow */
	assert_int_equal(cshm_release(S.cs), 0);
	assert_int_equal(cshm_next(S.cs, &m), 0);

	/* Loan: fill in place, commit. */
	void *buf;
	assert_int_equal(cshm_loan(P.cs, "a/b", 3, 4, &buf), 0);
	assert_true(cshm_is_loan(P.cs, buf));
	assert_int_equal(cshm_loan(P.cs, "a/b", 3, 4, &buf), SHIMMY_ERR_BUSY);
	memcpy(buf, "loan", 4);
	assert_int_equal(cshm_commit(P.cs, buf), 0);
	assert_int_equal(cshm_next(S.cs, &m), 1);
	assert_memory_equal(m.payload, "loan", 4);
	cshm_release(S.cs);

	/* Inbound log: the broker writes, the topic rides in the record. */
	assert_int_equal(shm_client_deliver(sb, bs, "x/y", 3, NULL, 0,
					    (const uint8_t *)"tcp", 3, SHIMMY_MSG_RETAIN), 0);
	assert_int_equal(cshm_next(S.cs, &m), 1);
	assert_memory_equal(m.topic, "x/y", 3);
	assert_int_equal(m.retain, 1);
	cshm_release(S.cs);

	/* Lapping: the subscriber sleeps through more than a ring. */
	for (int i = 0; i < 40000; i++)
		assert_int_equal(cshm_publish(P.cs, "a/b", 3, NULL, 0, "z", 1), 0);
	int got = 0;
	while (cshm_next(S.cs, &m) == 1) {
		got++;
		cshm_release(S.cs);
	}
	assert_true(got > 0 && got < 40000);
	assert_int_equal(cshm_lost(S.cs) + (uint64_t)got, 40000);

	/* Publisher gone: its log closes, the reader drains and drops it. */
	assert_int_equal(cshm_publish(P.cs, "a/b", 3, NULL, 0, "last", 4), 0);
	cshm_conn_lost(P.cs);
	shm_client_close(sb, bp);
	assert_int_equal(cshm_next(S.cs, &m), 1);
	assert_memory_equal(m.payload, "last", 4);
	cshm_release(S.cs);
	assert_int_equal(cshm_next(S.cs, &m), 0);
	assert_int_equal(cshm_readers(S.cs), 0);
	/* After a loss, publishing needs a new session and log. */
	assert_int_equal(cshm_publish(P.cs, "a/b", 3, NULL, 0, "x", 1), -ENOENT);
	assert_int_equal(P.ctl_errors + S.ctl_errors, 0);

	shm_client_close(sb, bs);
	shm_broker_destroy(sb);
	conn_fini(&P);
	conn_fini(&S);
}

static void test_bad_control_messages(void **state)
{
	(void)state;
	fconn c;
	conn_init(&c, NULL);
	uint8_t junk[64] = { 0 };
	assert_true(cshm_on_ctl(c.cs, junk, sizeof(junk), &c.q) < 0);
	/* A message announcing fds that never came. */
	shimmy_ctl m = { .type = SHIMMY_CTL_BELL_SETUP };
	uint8_t buf[128];
	int n = shimmy_ctl_encode(&m, buf, sizeof(buf));
	assert_true(cshm_on_ctl(c.cs, buf, (size_t)n, &c.q) < 0);
	/* Client-to-broker types are refused. */
	m.type = SHIMMY_CTL_LOG_CREATE;
	n = shimmy_ctl_encode(&m, buf, sizeof(buf));
	assert_true(cshm_on_ctl(c.cs, buf, (size_t)n, &c.q) < 0);
	assert_int_equal(cshm_ready_session(c.cs), 0);
	conn_fini(&c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_publish_receive_loan_inbound),
		cmocka_unit_test(test_bad_control_messages),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

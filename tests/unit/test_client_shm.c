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
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "broker/shm.h"
#include "clients/include/shimmy.h"
#include "clients/session.h"
#include "clients/shm.h"
#include "mqtt/error.h"
#include "mqtt/packet.h"
#include "mqtt/topic.h"
#include "shmpath/ctl.h"
#include "shm_fakes.h"

static shm_broker *mk(void)
{
	shm_env env = fake_env(NULL);
	return fake_broker(&env);
}

static void request_log(shm_broker *sb, shm_client *bc, fconn *c, const char *topic)
{
	fake_request_log(sb, bc, c, topic, 0);
}

static void test_publish_receive_loan_inbound(void **state)
{
	(void)state;
	shm_broker *sb = mk();
	fconn P, S;
	fconn_init(&P, NULL, NULL);
	fconn_init(&S, "a/#", NULL);
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

	/* Batch receive: the same messages in order, a batch from one log;
	 * then lapped again, losses still exact. */
	cshm_msg mb[CSHM_NEXT_MANY_MAX];
	char want[8];
	for (int i = 0; i < 100; i++) {
		snprintf(want, sizeof(want), "%d", i);
		assert_int_equal(cshm_publish(P.cs, "a/b", 3, NULL, 0, want,
					      strlen(want)), 0);
	}
	int k, next = 0;
	while ((k = cshm_next_many(S.cs, mb, 1000)) > 0) {
		assert_true(k <= (int)CSHM_NEXT_MANY_MAX);
		assert_int_equal(cshm_next(S.cs, &m2), SHIMMY_ERR_BUSY);
		for (int i = 0; i < k; i++, next++) {
			snprintf(want, sizeof(want), "%d", next);
			assert_memory_equal(mb[i].topic, "a/b", 3);
			assert_int_equal(mb[i].len, strlen(want));
			assert_memory_equal(mb[i].payload, want, mb[i].len);
		}
		assert_int_equal(cshm_release(S.cs), 0);
	}
	assert_int_equal(next, 100);
	uint64_t lost0 = cshm_lost(S.cs);
	for (int i = 0; i < 40000; i++)
		assert_int_equal(cshm_publish(P.cs, "a/b", 3, NULL, 0, "z", 1), 0);
	got = 0;
	while ((k = cshm_next_many(S.cs, mb, 7)) > 0) {
		assert_true(k <= 7);
		got += k;
		cshm_release(S.cs);
	}
	assert_true(got > 0 && got < 40000);
	assert_int_equal(cshm_lost(S.cs) - lost0 + (uint64_t)got, 40000);

	/* A lossy log's messages are handed out as checked copies: what the
	 * application holds stays intact while the writer laps the reader. */
	assert_int_equal(cshm_publish(P.cs, "a/b", 3, NULL, 0, "held", 4), 0);
	assert_int_equal(cshm_next(S.cs, &m), 1);
	assert_memory_equal(m.payload, "held", 4);
	for (int i = 0; i < 40000; i++)
		assert_int_equal(cshm_publish(P.cs, "a/b", 3, NULL, 0, "over", 4), 0);
	assert_memory_equal(m.payload, "held", 4);
	assert_int_equal(cshm_release(S.cs), 0);
	while (cshm_next_many(S.cs, mb, 64) > 0)
		cshm_release(S.cs);
	for (int i = 0; i < 10; i++) {
		snprintf(want, sizeof(want), "b%d", i);
		assert_int_equal(cshm_publish(P.cs, "a/b", 3, NULL, 0, want,
					      strlen(want)), 0);
	}
	assert_int_equal(cshm_next_many(S.cs, mb, 64), 10);
	for (int i = 0; i < 40000; i++)
		assert_int_equal(cshm_publish(P.cs, "a/b", 3, NULL, 0, "over", 4), 0);
	for (int i = 0; i < 10; i++) {
		snprintf(want, sizeof(want), "b%d", i);
		assert_memory_equal(mb[i].payload, want, strlen(want));
	}
	assert_int_equal(cshm_release(S.cs), 0);
	while (cshm_next_many(S.cs, mb, 64) > 0)
		cshm_release(S.cs);

	/* Batches across the end of the ring (two runs copied): several
	 * laps' worth, read without lapping, every message in order. */
	lost0 = cshm_lost(S.cs);
	for (int chunk = 0, sent = 0, seen = 0; chunk < 100; chunk++) {
		for (int i = 0; i < 1000; i++, sent++) {
			snprintf(want, sizeof(want), "%d", sent);
			assert_int_equal(cshm_publish(P.cs, "a/b", 3, NULL, 0, want,
						      strlen(want)), 0);
		}
		while ((k = cshm_next_many(S.cs, mb, 64)) > 0) {
			for (int i = 0; i < k; i++, seen++) {
				snprintf(want, sizeof(want), "%d", seen);
				assert_int_equal(mb[i].len, strlen(want));
				assert_memory_equal(mb[i].payload, want, mb[i].len);
			}
			assert_int_equal(cshm_release(S.cs), 0);
		}
		assert_int_equal(seen, sent);
	}
	assert_int_equal(cshm_lost(S.cs), lost0);

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
	fconn_fini(&P);
	fconn_fini(&S);
}

static void test_bad_control_messages(void **state)
{
	(void)state;
	fconn c;
	fconn_init(&c, NULL, NULL);
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
	fconn_fini(&c);
}

/* Every LOG_RELEASE owed is sent, in order, however many pile up before
 * the client answers (cut loose from many logs at once). */
static void test_owed_releases_not_dropped(void **state)
{
	(void)state;
	fconn c;
	fconn_init(&c, NULL, NULL);
	uint8_t buf[128];
	for (uint64_t id = 1; id <= 20; id++) {
		shimmy_ctl m = { .type = SHIMMY_CTL_LOG_DETACH, .log_id = id,
				 .arg = SHIMMY_CTL_DETACH_STUCK };
		int n = shimmy_ctl_encode(&m, buf, sizeof(buf));
		assert_true(n > 0);
		assert_int_equal(cshm_on_ctl(c.cs, buf, (size_t)n, &c.q), 0);
	}
	assert_int_equal(cshm_detached(c.cs), 20);
	for (uint64_t id = 1; id <= 20; id++) {
		shimmy_ctl m;
		int n = cshm_pending_ctl(c.cs, buf, sizeof(buf));
		assert_true(n > 0);
		assert_int_equal(shimmy_ctl_decode(buf, (size_t)n, &m), 0);
		assert_int_equal(m.type, SHIMMY_CTL_LOG_RELEASE);
		assert_int_equal(m.log_id, id);
	}
	assert_int_equal(cshm_pending_ctl(c.cs, buf, sizeof(buf)), 0);
	fconn_fini(&c);
}

/* Drains S, checking that the messages carry QoS 1 and the payloads
 * "%06d" from *next on, in order. Returns how many it read. */
static int drain_in_order(fconn *s, int *next)
{
	cshm_msg m;
	int got = 0;
	while (cshm_next(s->cs, &m) == 1) {
		char want[16];
		snprintf(want, sizeof(want), "%06d", (*next)++);
		assert_int_equal(m.qos, 1);
		assert_int_equal(m.len, 6);
		assert_memory_equal(m.payload, want, 6);
		assert_int_equal(cshm_release(s->cs), 0);
		got++;
	}
	return got;
}

/* Publishes "%06d" payloads at QoS 1 from *next on until the log is full
 * (timeout 0). Returns how many went in. */
static int fill(fconn *p, const char *topic, int *next)
{
	int n = 0, rc;
	char pay[16];
	for (;;) {
		snprintf(pay, sizeof(pay), "%06d", *next);
		rc = cshm_publish_qos(p->cs, topic, strlen(topic), NULL, 0, pay, 6, 1, 0);
		if (rc != 0)
			break;
		(*next)++;
		n++;
	}
	assert_int_equal(rc, -EAGAIN);
	return n;
}

/* QoS 1 over shm: a reliable log holds its writer back for the slowest
 * reader (no loss, in order), a stuck reader is cut loose after the
 * reader timeout and told so, rejoins at the tail after its LOG_RELEASE,
 * and a dead reader stops holding the writer at once. */
static void test_reliable_log(void **state)
{
	(void)state;
	shm_broker *sb = mk(); /* reader timeout 1000 ms */
	fconn P, S, T;
	fconn_init(&P, NULL, NULL);
	fconn_init(&S, "r/#", NULL);
	fconn_init(&T, "r/#", NULL);
	shm_client *bp = shm_client_open(sb, &P), *bs = shm_client_open(sb, &S),
		   *bt = shm_client_open(sb, &T);
	assert_true(bp && bs && bt);

	/* QoS 1 needs a reliable log: not into a lossy one. */
	request_log(sb, bp, &P, "lossy/x");
	assert_int_equal(cshm_log_reliable(P.cs, "lossy/x", 7), 0);
	assert_int_equal(cshm_publish_qos(P.cs, "lossy/x", 7, NULL, 0, "q", 1, 1, 0), -ENOENT);

	fake_request_log(sb, bp, &P, "r/x", SHIMMY_CTL_F_RELIABLE);
	assert_int_equal(cshm_log_state(P.cs, "r/x", 3), CSHM_LOG_READY);
	assert_int_equal(cshm_log_reliable(P.cs, "r/x", 3), 1);
	assert_int_equal(cshm_readers(S.cs), 1);
	assert_int_equal(cshm_readers(T.cs), 1);

	/* Nobody reads: the writer stops at a ring's worth, laps no one. */
	int sent = 0, s_next = 0, t_next = 0;
	int n1 = fill(&P, "r/x", &sent);
	assert_true(n1 > 1000);
	assert_int_equal(cshm_publish_qos(P.cs, "r/x", 3, NULL, 0, "x", 1, 1, 2000000),
			 -ETIMEDOUT);
	/* S reads everything; T still holds the writer back. */
	assert_int_equal(drain_in_order(&S, &s_next), n1);
	assert_int_equal(cshm_lost(S.cs), 0);
	assert_int_equal(cshm_publish_qos(P.cs, "r/x", 3, NULL, 0, "x", 1, 1, 0), -EAGAIN);
	/* T reads half, then sticks; S keeps up with more. */
	cshm_msg m;
	for (int i = 0; i < n1 / 2; i++) {
		assert_int_equal(cshm_next(T.cs, &m), 1);
		cshm_release(T.cs);
		t_next++;
	}
	int n2 = fill(&P, "r/x", &sent);
	/* Room for what T read, plus at most the writer's lookahead (1/16
	 * of the 1 MiB ring, 64 B records): T still holds it back. */
	assert_true(n2 > 0 && n2 <= n1 / 2 + (1 << 20) / 16 / 64 + 1);
	assert_int_equal(drain_in_order(&S, &s_next), n2);

	/* The broker's clock: T lags by more than half the ring and does
	 * not move. Cut only once the reader timeout (1000 ms) has passed. */
	shm_broker_tick(sb, 10000);
	shm_broker_tick(sb, 10999);
	assert_int_equal(cshm_detached(T.cs), 0);
	shm_stats st;
	shm_broker_stats(sb, &st);
	assert_int_equal(st.readers_cut, 0);
	shm_broker_tick(sb, 11000);
	shm_broker_stats(sb, &st);
	assert_int_equal(st.readers_cut, 1);
	assert_int_equal(cshm_detached(T.cs), 1);
	assert_int_equal(cshm_detached(S.cs), 0); /* S kept up */
	/* The writer is free again. */
	int n3 = fill(&P, "r/x", &sent);
	assert_true(n3 > 0);
	assert_int_equal(drain_in_order(&S, &s_next), n3);
	assert_int_equal(s_next, sent);
	assert_int_equal(cshm_lost(S.cs), 0);

	/* T wakes up: it reads -ENOLINK at the cut and owes a LOG_RELEASE,
	 * which attaches it anew at the tail. */
	while (cshm_next(T.cs, &m) == 1)
		cshm_release(T.cs);
	assert_int_equal(cshm_readers(T.cs), 0);
	uint8_t buf[128];
	int n = cshm_pending_ctl(T.cs, buf, sizeof(buf));
	assert_true(n > 0);
	assert_int_equal(cshm_pending_ctl(T.cs, buf, sizeof(buf)), 0); /* once */
	assert_int_equal(shm_client_ctl(sb, bt, buf, (size_t)n), 0);
	assert_int_equal(cshm_readers(T.cs), 1);
	assert_int_equal(cshm_publish_qos(P.cs, "r/x", 3, NULL, 0, "after!", 6, 1, 0), 0);
	assert_int_equal(cshm_next(T.cs, &m), 1);
	assert_memory_equal(m.payload, "after!", 6);
	cshm_release(T.cs);
	assert_int_equal(cshm_next(S.cs, &m), 1);
	cshm_release(S.cs);

	/* A dead reader (socket closed) stops holding the writer at once. */
	sent = 0;
	int n4 = fill(&P, "r/x", &sent);
	assert_true(n4 > 1000);
	s_next = 0;
	assert_int_equal(drain_in_order(&S, &s_next), n4);
	assert_int_equal(cshm_publish_qos(P.cs, "r/x", 3, NULL, 0, "x", 1, 1, 0), -EAGAIN);
	shm_client_close(sb, bt);
	assert_int_equal(cshm_publish_qos(P.cs, "r/x", 3, NULL, 0, "x", 1, 1, 0), 0);
	assert_int_equal(P.ctl_errors + S.ctl_errors + T.ctl_errors, 0);

	shm_client_close(sb, bs);
	shm_client_close(sb, bp);
	shm_broker_destroy(sb);
	fconn_fini(&P);
	fconn_fini(&S);
	fconn_fini(&T);
}

/* Reads S's next message; returns its QoS. */
static int next_qos(fconn *s, const char *payload)
{
	cshm_msg m;
	assert_int_equal(cshm_next(s->cs, &m), 1);
	assert_int_equal(m.len, strlen(payload));
	assert_memory_equal(m.payload, payload, m.len);
	int qos = m.qos;
	assert_int_equal(cshm_release(s->cs), 0);
	return qos;
}

/* [MQTT-3.8.4-8] on the shm path, where the broker does not route: a
 * record reaches the application at the QoS it was published with, at
 * most the highest QoS of the subscriptions that match its topic. */
static void test_qos_capped_by_subscription(void **state)
{
	(void)state;
	shm_broker *sb = mk();
	session ss;
	session_cfg cfg = { .version = MQTT_V5, .clean_start = true,
			    .keepalive_s = 10, .window = 8, .client_id = "s" };
	assert_int_equal(session_init(&ss, &cfg), 0);
	ss.state = SESS_CONNECTED; /* as after CONNACK: SUBSCRIBE may go */
	uint16_t pid;
	assert_int_equal(session_subscribe(&ss, "q/#", 0, 0, &pid), 0);
	fconn P, S;
	fconn_init(&P, NULL, NULL);
	fconn_init(&S, "q/#", NULL);
	cshm_destroy(S.cs);
	S.cs = cshm_create(&ss);
	assert_non_null(S.cs);
	shm_client *bp = shm_client_open(sb, &P), *bs = shm_client_open(sb, &S);
	assert_true(bp && bs);
	fake_request_log(sb, bp, &P, "q/x", SHIMMY_CTL_F_RELIABLE);
	assert_int_equal(cshm_readers(S.cs), 1);

	/* Subscribed at QoS 0: a QoS 1 record arrives at QoS 0. */
	assert_int_equal(cshm_publish_qos(P.cs, "q/x", 3, NULL, 0, "a", 1, 1, 0), 0);
	assert_int_equal(next_qos(&S, "a"), 0);
	/* A QoS 1 subscription that matches too: the highest one counts. */
	assert_int_equal(session_subscribe(&ss, "q/x", 1, 0, &pid), 0);
	assert_int_equal(cshm_publish_qos(P.cs, "q/x", 3, NULL, 0, "b", 1, 1, 0), 0);
	assert_int_equal(cshm_publish_qos(P.cs, "q/x", 3, NULL, 0, "c", 1, 0, 0), 0);
	assert_int_equal(next_qos(&S, "b"), 1);
	assert_int_equal(next_qos(&S, "c"), 0); /* never raised */
	/* Gone again: back to QoS 0, in a batch read too. */
	assert_int_equal(session_unsubscribe(&ss, "q/x", 0, &pid), 0);
	assert_int_equal(cshm_publish_qos(P.cs, "q/x", 3, NULL, 0, "d", 1, 1, 0), 0);
	assert_int_equal(cshm_publish_qos(P.cs, "q/x", 3, NULL, 0, "e", 1, 1, 0), 0);
	cshm_msg m[4];
	assert_int_equal(cshm_next_many(S.cs, m, 4), 2);
	assert_int_equal(m[0].qos, 0);
	assert_int_equal(m[1].qos, 0);
	assert_int_equal(cshm_release(S.cs), 0);
	/* No subscription matches at all (a resumed session): as published. */
	assert_int_equal(session_unsubscribe(&ss, "q/#", 0, &pid), 0);
	assert_int_equal(cshm_publish_qos(P.cs, "q/x", 3, NULL, 0, "f", 1, 1, 0), 0);
	assert_int_equal(next_qos(&S, "f"), 1);
	assert_int_equal(P.ctl_errors + S.ctl_errors, 0);

	shm_client_close(sb, bs);
	shm_client_close(sb, bp);
	shm_broker_destroy(sb);
	fconn_fini(&P);
	fconn_fini(&S);
	session_fini(&ss);
}

/* What the broker's own reader routed (the TCP path), in order: each
 * payload's first byte and its length. */
typedef struct groute {
	bool others;
	int n;
	uint8_t first[64];
	size_t len[64];
} groute;

static bool g_others(const char *t, size_t len, void *ctx)
{
	(void)t; (void)len;
	return ((groute *)ctx)->others;
}

static void g_route(void *from, const char *t, size_t len,
		    const shimmy_ring_msg *m, void *ctx)
{
	(void)from; (void)t; (void)len;
	groute *r = ctx;
	assert_true(r->n < 64);
	r->first[r->n] = m->payload_len ? m->payload[0] : 0;
	r->len[r->n++] = m->payload_len;
}

static shm_broker *mk_routed(groute *r)
{
	shm_env env = fake_env(r);
	env.others_want = g_others;
	env.route = g_route;
	return fake_broker(&env);
}

/* Message i of the growth test: small ones of 8 bytes, i == 5 and i == 9
 * of 100 KB (over the 64 KiB class's 16 KiB records); first byte i. */
static size_t grow_len(int i)
{
	return i == 5 || i == 9 ? 100000 : 8;
}

/* Growth (§2, [MQTT-4.6.0-6]): a publisher on a 64 KiB log publishes
 * small messages, a 100 KB one, small ones, another large one: it asks
 * for a larger log, its reader gets LOG_REPLACE and drains the old log
 * before it reads the new one; the broker's own reader (the TCP path)
 * alike. Everything goes through the logs, in order, and the old log is
 * freed once given up and drained. */
static void log_growth_case(unsigned flags)
{
	groute r = { .others = true };
	shm_broker *sb = mk_routed(&r);
	fconn P, S;
	fconn_init(&P, NULL, NULL);
	fconn_init(&S, "g/#", NULL);
	shm_client *bp = shm_client_open(sb, &P), *bs = shm_client_open(sb, &S);
	assert_non_null(bp);
	assert_non_null(bs);
	uint8_t buf[256];
	int n = cshm_log_request(P.cs, "g/t", 3, 0, flags, buf, sizeof(buf));
	assert_true(n > 0);
	assert_int_equal(shm_client_ctl(sb, bp, buf, (size_t)n), 0);
	assert_int_equal(cshm_log_state(P.cs, "g/t", 3), CSHM_LOG_READY);
	assert_int_equal(cshm_log_reliable(P.cs, "g/t", 3),
			 (flags & SHIMMY_CTL_F_RELIABLE) != 0);
	uint64_t one_log = shm_client_bytes(bp);

	static uint8_t pay[100000];
	int sub_next = 0;
	cshm_msg m;
	for (int i = 0; i < 12; i++) {
		memset(pay, 'a' + i, sizeof(pay));
		pay[0] = (uint8_t)i;
		int rc = cshm_publish(P.cs, "g/t", 3, NULL, 0, pay, grow_len(i));
		if (rc == MQTT_ERR_TOO_LARGE) {
			n = cshm_log_grow(P.cs, "g/t", 3, 0, grow_len(i), buf,
					  sizeof(buf));
			assert_true(n > 0);
			assert_int_equal(cshm_log_growing(P.cs, "g/t", 3), 1);
			/* Only one request at a time. */
			assert_int_equal(cshm_log_grow(P.cs, "g/t", 3, 0, grow_len(i),
						       buf, sizeof(buf)), 0);
			assert_int_equal(shm_client_ctl(sb, bp, buf, (size_t)n), 0);
			assert_int_equal(S.ctl_errors, 0);
			/* Both logs count against the publisher meanwhile. */
			assert_true(shm_client_bytes(bp) > one_log);
			assert_int_equal(cshm_log_growing(P.cs, "g/t", 3), 0);
			rc = cshm_publish(P.cs, "g/t", 3, NULL, 0, pay, grow_len(i));
			/* The old log is given up after its last record. */
			n = cshm_pending_ctl(P.cs, buf, sizeof(buf));
			assert_true(n > 0);
			assert_int_equal(shm_client_ctl(sb, bp, buf, (size_t)n), 0);
			assert_int_equal(cshm_pending_ctl(P.cs, buf, sizeof(buf)), 0);
		}
		assert_int_equal(rc, 0); /* never MQTT */
		/* The subscriber reads now and then, never out of order. */
		if (i % 4 == 2)
			while (cshm_next(S.cs, &m) == 1) {
				assert_int_equal(m.payload[0], sub_next);
				assert_int_equal(m.len, grow_len(sub_next));
				assert_int_equal(m.topic_len, 3);
				assert_int_equal(cshm_release(S.cs), 0);
				sub_next++;
			}
	}
	/* Past the largest class: MQTT carries it (nothing to ask for). */
	assert_int_equal(cshm_log_grow(P.cs, "g/t", 3, 0, (size_t)1 << 30, buf,
				       sizeof(buf)), 0);
	while (cshm_next(S.cs, &m) == 1) {
		assert_int_equal(m.payload[0], sub_next);
		assert_int_equal(m.len, grow_len(sub_next));
		assert_int_equal(cshm_release(S.cs), 0);
		sub_next++;
	}
	assert_int_equal(sub_next, 12);
	assert_int_equal(cshm_readers(S.cs), 1); /* the old logs dropped */
	assert_int_equal(cshm_lost(S.cs), 0);

	for (int k = 0; k < 20; k++)
		shm_broker_poll(sb, 0);
	assert_int_equal(r.n, 12);
	for (int i = 0; i < 12; i++) {
		assert_int_equal(r.first[i], i);
		assert_int_equal(r.len[i], grow_len(i));
	}
	shm_stats st;
	shm_broker_stats(sb, &st);
	assert_int_equal(st.logs, 1); /* grown-out logs freed once drained */
	/* The grown log is of the same kind. */
	assert_int_equal(cshm_log_reliable(P.cs, "g/t", 3),
			 (flags & SHIMMY_CTL_F_RELIABLE) != 0);

	shm_client_close(sb, bs);
	shm_client_close(sb, bp);
	shm_broker_destroy(sb);
	fconn_fini(&P);
	fconn_fini(&S);
}

static void test_log_growth_keeps_order(void **state)
{
	(void)state;
	log_growth_case(0);
}

/* The same for a reliable (QoS 1/2) log: its successor is reliable too,
 * and the readers tethered to it hold the writer from the start. */
static void test_reliable_log_growth_keeps_order(void **state)
{
	(void)state;
	log_growth_case(SHIMMY_CTL_F_RELIABLE);
}

/* Bad growth input: a LOG_REPLACE with a bad fd or naming a log nobody
 * reads is refused or harmless; a growth request naming a log that is
 * not the client's own, or not smaller, is a protocol error; a client
 * sending LOG_REPLACE itself too. */
static void test_bad_log_replace(void **state)
{
	(void)state;
	shm_broker *sb = mk();
	fconn P, Q, S;
	fconn_init(&P, NULL, NULL);
	fconn_init(&Q, NULL, NULL);
	fconn_init(&S, "b/#", NULL);
	shm_client *bp = shm_client_open(sb, &P), *bq = shm_client_open(sb, &Q),
		   *bs = shm_client_open(sb, &S);
	assert_non_null(bp);
	assert_non_null(bq);
	assert_non_null(bs);
	request_log(sb, bp, &P, "b/t");
	assert_int_equal(cshm_readers(S.cs), 1);
	assert_int_equal(cshm_publish(P.cs, "b/t", 3, NULL, 0, "one", 3), 0);

	/* To the client: fds that are no segments (a pipe), an unknown old
	 * log id: refused, fds closed, the existing reader unharmed. */
	int pfd[2];
	assert_int_equal(pipe(pfd), 0);
	shimmy_ctl m = { .type = SHIMMY_CTL_LOG_REPLACE, .log_id = 777,
			 .topic = "b/t", .topic_len = 3 };
	shimmy_ctl_set_replaced(&m, 12345);
	uint8_t buf[256];
	int n = shimmy_ctl_encode(&m, buf, sizeof(buf));
	shimmy_fdq_push(&S.q, pfd[0]);
	shimmy_fdq_push(&S.q, pfd[1]);
	assert_true(cshm_on_ctl(S.cs, buf, (size_t)n, &S.q) < 0);
	assert_int_equal(shimmy_fdq_count(&S.q), 0);
	/* Fds that never came. */
	assert_true(cshm_on_ctl(S.cs, buf, (size_t)n, &S.q) < 0);
	assert_int_equal(cshm_readers(S.cs), 1);
	cshm_msg cm;
	assert_int_equal(cshm_next(S.cs, &cm), 1);
	assert_memory_equal(cm.payload, "one", 3);
	assert_int_equal(cshm_release(S.cs), 0);

	/* To the broker: LOG_REPLACE is broker-to-client. */
	n = shimmy_ctl_encode(&m, buf, sizeof(buf));
	assert_int_equal(shm_client_ctl(sb, bp, buf, (size_t)n), MQTT_ERR_PROTOCOL);
	/* Growth requests: unknown log, another client's log, not larger. */
	shm_stats st;
	shm_broker_stats(sb, &st);
	uint64_t id = 0;
	for (uint64_t i = 1; i < 64 && !id; i++) {
		shimmy_ctl g = { .type = SHIMMY_CTL_LOG_CREATE, .req_id = 9,
				 .log_id = i, .arg = 3, .topic = "b/t",
				 .topic_len = 3 };
		n = shimmy_ctl_encode(&g, buf, sizeof(buf));
		/* Never Q's: whatever the id, Q owns no log. */
		assert_int_equal(shm_client_ctl(sb, bq, buf, (size_t)n),
				 MQTT_ERR_PROTOCOL);
		g.arg = 0; /* not larger than P's 1 MiB log */
		n = shimmy_ctl_encode(&g, buf, sizeof(buf));
		int rc = shm_client_ctl(sb, bp, buf, (size_t)n);
		assert_int_equal(rc, MQTT_ERR_PROTOCOL);
	}
	shm_stats st2;
	shm_broker_stats(sb, &st2);
	assert_int_equal(st2.logs, st.logs);
	assert_int_equal(st2.segment_bytes, st.segment_bytes);
	assert_int_equal(cshm_publish(P.cs, "b/t", 3, NULL, 0, "two", 3), 0);
	assert_int_equal(cshm_next(S.cs, &cm), 1);
	assert_memory_equal(cm.payload, "two", 3);
	assert_int_equal(cshm_release(S.cs), 0);

	shm_client_close(sb, bs);
	shm_client_close(sb, bq);
	shm_client_close(sb, bp);
	shm_broker_destroy(sb);
	fconn_fini(&P);
	fconn_fini(&Q);
	fconn_fini(&S);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_publish_receive_loan_inbound),
		cmocka_unit_test(test_bad_control_messages),
		cmocka_unit_test(test_reliable_log),
		cmocka_unit_test(test_qos_capped_by_subscription),
		cmocka_unit_test(test_owed_releases_not_dropped),
		cmocka_unit_test(test_log_growth_keeps_order),
		cmocka_unit_test(test_reliable_log_growth_keeps_order),
		cmocka_unit_test(test_bad_log_replace),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

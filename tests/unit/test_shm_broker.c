/* Unit tests for broker/shm: the broker's shm state machine against a fake
 * core (shm_env) that decodes the control packets and keeps the fds, and
 * real memfd segments mapped as a client would map them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "broker/shm.h"
#include "mqtt/error.h"
#include "mqtt/packet.h"
#include "mqtt/topic.h"
#include "shmpath/ctl.h"
#include "shmpath/segment.h"

#define MAXQ 32

typedef struct fake_conn {
	const char *filter;      /* its one subscription, or NULL */
	bool deny_write, deny_read;
	shimmy_ctl q[MAXQ];
	char topics[MAXQ][64];
	int fds[MAXQ][4];
	int n, head;
} fake_conn;

typedef struct fake_core {
	bool others;
	int routed;
	char last_topic[64];
	char last_payload[64];
} fake_core;

static int f_send(void *conn, const uint8_t *pkt, size_t len, int *fds,
		  unsigned nfds, void *ctx)
{
	(void)ctx;
	fake_conn *c = conn;
	mqtt_packet p;
	assert_int_equal(mqtt_decode(pkt, len, MQTT_V5, 0, &p), (int)len);
	assert_int_equal(p.type, MQTT_PUBLISH);
	assert_int_equal(c->n < MAXQ, 1);
	shimmy_ctl *m = &c->q[c->n];
	assert_int_equal(shimmy_ctl_decode(p.u.publish.payload.ptr,
					   p.u.publish.payload.len, m), 0);
	assert_int_equal(m->nfds, nfds);
	memcpy(c->topics[c->n], m->topic, m->topic_len);
	c->topics[c->n][m->topic_len] = '\0';
	m->topic = c->topics[c->n];
	for (unsigned i = 0; i < nfds; i++)
		c->fds[c->n][i] = fds[i];
	c->n++;
	return 0;
}

static bool f_may(void *conn, const char *t, size_t len, bool write, void *ctx)
{
	(void)t; (void)len; (void)ctx;
	fake_conn *c = conn;
	return write ? !c->deny_write : !c->deny_read;
}

static bool f_wants(void *conn, const char *t, size_t len, void *from, void *ctx)
{
	(void)from; (void)ctx;
	fake_conn *c = conn;
	return c->filter && mqtt_topic_match(mqtt_str_c(c->filter),
					     (mqtt_str){ t, (uint32_t)len });
}

static bool f_others(const char *t, size_t len, void *ctx)
{
	(void)t; (void)len;
	return ((fake_core *)ctx)->others;
}

static void f_route(void *from, const char *t, size_t len,
		    const shimmy_ring_msg *msg, void *ctx)
{
	(void)from;
	fake_core *fc = ctx;
	fc->routed++;
	snprintf(fc->last_topic, sizeof(fc->last_topic), "%.*s", (int)len, t);
	snprintf(fc->last_payload, sizeof(fc->last_payload), "%.*s",
		 (int)msg->payload_len, (const char *)msg->payload);
}

static fake_core core;

static shm_broker *mk(uint64_t max_bytes)
{
	static shm_env env;
	env = (shm_env){ .send = f_send, .may = f_may, .wants = f_wants,
			 .others_want = f_others, .route = f_route,
			 .ctx = &core };
	shm_limits lim = { max_bytes, 50, 1000 };
	int err = 0;
	shm_broker *sb = shm_broker_create(&env, &lim, &err);
	assert_non_null(sb);
	return sb;
}

/* Pops the next control message of c, checking its type. */
static shimmy_ctl *pop(fake_conn *c, uint16_t type)
{
	assert_true(c->head < c->n);
	shimmy_ctl *m = &c->q[c->head++];
	assert_int_equal(m->type, type);
	return m;
}

static void close_fds(fake_conn *c, shimmy_ctl *m)
{
	int i = (int)(m - c->q);
	for (unsigned k = 0; k < m->nfds; k++)
		close(c->fds[i][k]);
}

static void test_pub_sub_route_close(void **state)
{
	(void)state;
	memset(&core, 0, sizeof(core));
	core.others = true;
	shm_broker *sb = mk(64u << 20);
	fake_conn P = { 0 }, S = { .filter = "a/#" };
	shm_client *cp = shm_client_open(sb, &P);
	shm_client *cs = shm_client_open(sb, &S);
	assert_non_null(cp);
	assert_non_null(cs);
	shimmy_ctl *m = pop(&S, SHIMMY_CTL_BELL_SETUP);
	int s_bell_fd = S.fds[S.head - 1][0];
	m = pop(&S, SHIMMY_CTL_LOG_ATTACH);
	assert_true(m->flags & SHIMMY_CTL_F_INBOUND);
	int in_fds[2] = { S.fds[S.head - 1][0], S.fds[S.head - 1][1] };
	uint32_t in_idx = m->idx;
	uint64_t in_gen = m->gen;
	close_fds(&P, pop(&P, SHIMMY_CTL_BELL_SETUP));
	close_fds(&P, pop(&P, SHIMMY_CTL_LOG_ATTACH));

	/* Publisher asks for a log on a/b. */
	shimmy_ctl req = { .type = SHIMMY_CTL_LOG_CREATE, .req_id = 5,
			   .topic = "a/b", .topic_len = 3 };
	uint8_t buf[256];
	int n = shimmy_ctl_encode(&req, buf, sizeof(buf));
	assert_int_equal(shm_client_ctl(sb, cp, buf, (size_t)n), 0);
	/* The publisher learns about both readers (subscriber, broker)
	 * before its grant, so it tracks them from its first record. */
	m = pop(&P, SHIMMY_CTL_READER_ADD);
	assert_int_equal(m->req_id, 5);
	close_fds(&P, m);
	m = pop(&P, SHIMMY_CTL_READER_ADD);
	assert_int_equal(m->req_id, 5);
	close_fds(&P, m);
	m = pop(&P, SHIMMY_CTL_LOG_GRANT);
	assert_int_equal(m->status, 0);
	assert_int_equal(m->req_id, 5);
	int log_fd = P.fds[P.head - 1][0];
	uint64_t log_id = m->log_id;
	/* Subscriber gets it read-only, plus its slot. */
	m = pop(&S, SHIMMY_CTL_LOG_ATTACH);
	assert_int_equal(m->log_id, log_id);
	assert_string_equal(m->topic, "a/b");
	assert_true(m->flags & SHIMMY_CTL_F_FROM_HEAD);
	int ro_fd = S.fds[S.head - 1][0], slot_fd = S.fds[S.head - 1][1];
	uint32_t idx = m->idx;
	uint64_t gen = m->gen;

	shimmy_seg wlog, rlog, slot, bell;
	assert_int_equal(shimmy_seg_map(&wlog, log_fd, SHIMMY_SEG_LOG, SHIMMY_SEG_RDWR), 0);
	assert_int_equal(shimmy_seg_map(&rlog, ro_fd, SHIMMY_SEG_LOG, SHIMMY_SEG_RDONLY), 0);
	assert_int_equal(shimmy_seg_map(&slot, slot_fd, SHIMMY_SEG_SLOT, SHIMMY_SEG_RDWR), 0);
	assert_int_equal(shimmy_seg_map(&bell, s_bell_fd, SHIMMY_SEG_BELL, SHIMMY_SEG_RDWR), 0);
	/* A subscriber cannot make its log mapping writable. */
	assert_int_equal(mprotect(rlog.base, rlog.size, PROT_READ | PROT_WRITE), -1);
	assert_int_equal(errno, EACCES);

	size_t wl, rl, sl;
	void *wm = shimmy_seg_body(&wlog, &wl);
	shimmy_ring_writer *w;
	assert_int_equal(shimmy_ring_writer_create(&w, wm, wl), 0);
	assert_int_equal(shimmy_ring_publish(w, NULL, 0, "hello", 5, 0, 0, 0), 0);
	shimmy_ring_reader *r;
	void *rlm = shimmy_seg_body(&rlog, &rl), *slm = shimmy_seg_body(&slot, &sl);
	assert_int_equal(shimmy_ring_reader_create(&r, rlm, rl, slm, sl,
						   idx, gen, SHIMMY_RING_FROM_HEAD), 0);
	shimmy_ring_msg msg;
	char rx[256];
	assert_int_equal(shimmy_ring_receive(r, &msg, rx, sizeof(rx)), 1);
	assert_memory_equal(msg.payload, "hello", 5);
	/* The broker reads it too, for the subscribers it serves. */
	shm_broker_poll(sb, 0);
	assert_int_equal(core.routed, 1);
	assert_string_equal(core.last_topic, "a/b");
	assert_string_equal(core.last_payload, "hello");

	/* Inbound log: topic per record, written by the broker. */
	assert_int_equal(shm_client_deliver(sb, cs, "x/y", 3, NULL, 0,
					    (const uint8_t *)"tcp", 3, 0), 0);
	shimmy_seg ilog, islot;
	assert_int_equal(shimmy_seg_map(&ilog, in_fds[0], SHIMMY_SEG_LOG, SHIMMY_SEG_RDONLY), 0);
	assert_int_equal(shimmy_seg_map(&islot, in_fds[1], SHIMMY_SEG_SLOT, SHIMMY_SEG_RDWR), 0);
	shimmy_ring_reader *ir;
	void *ilm = shimmy_seg_body(&ilog, &rl), *islm = shimmy_seg_body(&islot, &sl);
	assert_int_equal(shimmy_ring_reader_create(&ir, ilm, rl, islm, sl,
						   in_idx, in_gen, SHIMMY_RING_FROM_HEAD), 0);
	assert_int_equal(shimmy_ring_receive(ir, &msg, rx, sizeof(rx)), 1);
	assert_int_equal(msg.props_len, 5);
	assert_memory_equal(msg.props, "\0\3x/y", 5);
	assert_memory_equal(msg.payload, "tcp", 3);

	/* Publisher dies: subscriber told, log closed, drains to -EPIPE. */
	assert_int_equal(shimmy_ring_publish(w, NULL, 0, "last", 4, 0, 0, 0), 0);
	shm_client_close(sb, cp);
	m = pop(&S, SHIMMY_CTL_LOG_CLOSED);
	assert_int_equal(m->log_id, log_id);
	assert_int_equal(shimmy_ring_receive(r, &msg, rx, sizeof(rx)), 1);
	assert_int_equal(shimmy_ring_receive(r, &msg, rx, sizeof(rx)), -EPIPE);
	shm_broker_poll(sb, 0);
	assert_int_equal(core.routed, 2);
	shm_stats st;
	shm_broker_stats(sb, &st);
	assert_int_equal(st.logs, 0);

	shimmy_ring_reader_destroy(r);
	shimmy_ring_reader_destroy(ir);
	shimmy_ring_writer_destroy(w);
	shimmy_seg_unmap(&wlog);
	shimmy_seg_unmap(&rlog);
	shimmy_seg_unmap(&slot);
	shimmy_seg_unmap(&bell);
	shimmy_seg_unmap(&ilog);
	shimmy_seg_unmap(&islot);
	shm_client_close(sb, cs);
	shm_broker_destroy(sb);
}

static void test_acl_quota_garbage(void **state)
{
	(void)state;
	memset(&core, 0, sizeof(core));
	shm_broker *sb = mk(1u << 20); /* too small for a 1 MiB log */
	fake_conn P = { .deny_write = true };
	shm_client *cp = shm_client_open(sb, &P);
	assert_non_null(cp);
	while (P.head < P.n)
		close_fds(&P, &P.q[P.head++]);
	shimmy_ctl req = { .type = SHIMMY_CTL_LOG_CREATE, .topic = "t",
			   .topic_len = 1, .arg = UINT32_MAX };
	uint8_t buf[256];
	int n = shimmy_ctl_encode(&req, buf, sizeof(buf));
	assert_int_equal(shm_client_ctl(sb, cp, buf, (size_t)n), 0);
	assert_int_equal(pop(&P, SHIMMY_CTL_LOG_GRANT)->status, 0x87);
	P.deny_write = false;
	assert_int_equal(shm_client_ctl(sb, cp, buf, (size_t)n), 0);
	assert_int_equal(pop(&P, SHIMMY_CTL_LOG_GRANT)->status, 0x97);
	/* Reserved and invalid topics. */
	req.topic = "$shimmy/ctl";
	req.topic_len = 11;
	n = shimmy_ctl_encode(&req, buf, sizeof(buf));
	assert_int_equal(shm_client_ctl(sb, cp, buf, (size_t)n), 0);
	assert_int_equal(pop(&P, SHIMMY_CTL_LOG_GRANT)->status, 0x90);
	req.topic = "a/+";
	req.topic_len = 3;
	n = shimmy_ctl_encode(&req, buf, sizeof(buf));
	assert_int_equal(shm_client_ctl(sb, cp, buf, (size_t)n), 0);
	assert_int_equal(pop(&P, SHIMMY_CTL_LOG_GRANT)->status, 0x90);
	/* Garbage and broker-only types are errors. */
	assert_int_not_equal(shm_client_ctl(sb, cp, buf, 10), 0);
	req.type = SHIMMY_CTL_READER_DROP;
	n = shimmy_ctl_encode(&req, buf, sizeof(buf));
	assert_int_equal(shm_client_ctl(sb, cp, buf, (size_t)n), MQTT_ERR_PROTOCOL);
	shm_broker_destroy(sb); /* closes the client */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pub_sub_route_close),
		cmocka_unit_test(test_acl_quota_garbage),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

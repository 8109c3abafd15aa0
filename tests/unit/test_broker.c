/*
 * tests/unit/test_broker.c — drives the protocol core through broker.h with
 * packets built by mqtt_encode(), and checks what it writes back by
 * decoding it with mqtt_decode(). No sockets: "now" is a number we move.
 */
#include "broker/broker.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "broker/authn.h"
#include "broker/scram.h"
#include "mqtt/packet.h"

static broker_cfg cfg;
static shimmy_log lg;
static uint64_t now = 1000000;

typedef struct client {
	broker_conn *c;
	mqtt_version v;
	uint8_t rx[1 << 16];
	size_t rx_len, rx_off;
	uint8_t last[1 << 16]; /* bytes of the last packet returned */
} client;

static void cfg_reset(void)
{
	memset(&cfg, 0, sizeof(cfg));
	cfg.allow_anonymous = true;
	cfg.max_inflight_messages = 20;
	cfg.max_queued_messages = 1000;
	cfg.max_keepalive = 65535;
	cfg.retain_available = true;
	cfg.sys_interval = 0;
	log_init(&lg);
	lg.mask = getenv("SHIMMY_TEST_LOG") ? LOG_ALL : 0;
}

static broker *mkbroker(void)
{
	broker *b = broker_create(&cfg, &lg, now);
	assert_non_null(b);
	return b;
}

static client *cl_open(broker *b, mqtt_version v)
{
	client *cl = calloc(1, sizeof(*cl));
	assert_non_null(cl);
	cl->v = v;
	cl->c = broker_conn_open(b, BROKER_TRANSPORT_TCP, "127.0.0.1:1", cl, now);
	assert_non_null(cl->c);
	return cl;
}

static void cl_raw(broker *b, client *cl, const uint8_t *buf, size_t n)
{
	size_t used = broker_conn_input(b, cl->c, buf, n, now);
	assert_int_equal(used, n);
}

static void cl_send(broker *b, client *cl, const mqtt_packet *pkt)
{
	uint8_t buf[4096];
	long n = mqtt_encode(buf, sizeof(buf), cl->v, pkt);
	assert_true(n > 0 && (size_t)n <= sizeof(buf));
	/* Split in two to exercise partial input. */
	size_t half = (size_t)n / 2;
	size_t used = broker_conn_input(b, cl->c, buf, half, now);
	assert_true(used == 0 || used == half);
	if (used == half) { /* conn closing: all consumed */
		used = broker_conn_input(b, cl->c, buf + half, (size_t)n - half, now);
		assert_int_equal(used, (size_t)n - half);
		return;
	}
	assert_int_equal(broker_conn_input_need(cl->c, buf, half > 5 ? half : 0) == 0 ||
			 broker_conn_input_need(cl->c, buf, half) == (size_t)n, 1);
	cl_raw(b, cl, buf, (size_t)n);
}

/* Moves pending output into cl->rx, one contiguous piece at a time (large
 * payloads are separate pieces). */
static void cl_pull(client *cl)
{
	if (cl->rx_off == cl->rx_len)
		cl->rx_off = cl->rx_len = 0;
	for (;;) {
		const uint8_t *d;
		size_t n;
		broker_conn_output(cl->c, &d, &n);
		if (n == 0)
			break;
		assert_true(cl->rx_len + n <= sizeof(cl->rx));
		memcpy(cl->rx + cl->rx_len, d, n);
		cl->rx_len += n;
		broker_conn_written(cl->c, n);
	}
}

/* All of c's pending output, gathered from its segments (caller frees);
 * nothing is marked written. */
static uint8_t *conn_output_all(broker_conn *c, size_t *len)
{
	enum { MAX_IOV = 1024 };
	struct iovec iov[MAX_IOV];
	int n = broker_conn_output_iov(c, iov, MAX_IOV);
	size_t total = 0;
	for (int i = 0; i < n; i++)
		total += iov[i].iov_len;
	assert_int_equal(total, broker_conn_pending(c));
	uint8_t *buf = malloc(total ? total : 1);
	assert_non_null(buf);
	size_t off = 0;
	for (int i = 0; i < n; i++) {
		memcpy(buf + off, iov[i].iov_base, iov[i].iov_len);
		off += iov[i].iov_len;
	}
	*len = total;
	return buf;
}

/* Next packet the broker sent cl; false if none. */
static bool cl_recv(client *cl, mqtt_packet *pkt)
{
	cl_pull(cl);
	if (cl->rx_off == cl->rx_len)
		return false;
	size_t n = cl->rx_len - cl->rx_off;
	memcpy(cl->last, cl->rx + cl->rx_off, n);
	int rc = mqtt_decode(cl->last, n, cl->v, 0, pkt);
	assert_true(rc > 0);
	cl->rx_off += (size_t)rc;
	return true;
}

static void cl_expect(client *cl, mqtt_type t, mqtt_packet *pkt)
{
	mqtt_packet tmp;
	if (!pkt)
		pkt = &tmp;
	assert_true(cl_recv(cl, pkt));
	assert_int_equal(pkt->type, t);
}

static void cl_none(client *cl)
{
	mqtt_packet p;
	assert_false(cl_recv(cl, &p));
}

static bool cl_closing(client *cl)
{
	return broker_conn_flags(cl->c) & BROKER_CONN_WANT_CLOSE;
}

static void cl_close(broker *b, client *cl)
{
	broker_conn_closed(b, cl->c, now);
	free(cl);
}

static void drain_dirty(broker *b)
{
	while (broker_next_dirty(b))
		;
}

typedef struct conn_opts {
	const char *id;
	bool clean;
	uint16_t ka;
	const char *will_topic;
	const char *will_payload;
	uint8_t will_qos;
	bool will_retain;
	uint32_t will_delay;
	int64_t session_expiry; /* <0: absent */
	const char *username;
} conn_opts;

static void cl_connect(broker *b, client *cl, const conn_opts *o)
{
	mqtt_packet p;
	memset(&p, 0, sizeof(p));
	p.type = MQTT_CONNECT;
	mqtt_connect *c = &p.u.connect;
	c->version = cl->v;
	c->clean_start = o->clean;
	c->keep_alive = o->ka;
	c->client_id = mqtt_str_c(o->id ? o->id : "");
	if (o->session_expiry >= 0 && cl->v == MQTT_V5) {
		c->props.present |= MQTT_PROP_BIT(MQTT_PROP_SESSION_EXPIRY_INTERVAL);
		c->props.session_expiry = (uint32_t)o->session_expiry;
	}
	if (o->will_topic) {
		c->will = true;
		c->will_topic = mqtt_str_c(o->will_topic);
		c->will_payload = (mqtt_bytes){ (const uint8_t *)o->will_payload,
						(uint32_t)strlen(o->will_payload) };
		c->will_qos = o->will_qos;
		c->will_retain = o->will_retain;
		if (o->will_delay) {
			c->will_props.present |= MQTT_PROP_BIT(MQTT_PROP_WILL_DELAY_INTERVAL);
			c->will_props.will_delay = o->will_delay;
		}
	}
	if (o->username) {
		c->has_username = true;
		c->username = mqtt_str_c(o->username);
	}
	cl_send(b, cl, &p);
}

/* Opens, connects and checks a successful CONNACK; returns session present. */
static client *cl_up(broker *b, mqtt_version v, const char *id, bool clean,
		     bool *present)
{
	client *cl = cl_open(b, v);
	conn_opts o = { .id = id, .clean = clean, .ka = 60, .session_expiry = -1 };
	if (v == MQTT_V5 && !clean)
		o.session_expiry = 3600;
	cl_connect(b, cl, &o);
	mqtt_packet p;
	cl_expect(cl, MQTT_CONNACK, &p);
	assert_int_equal(p.u.connack.reason, 0);
	if (present)
		*present = p.u.connack.session_present;
	return cl;
}

static void cl_sub(broker *b, client *cl, const char *filter, uint8_t opts,
		   uint32_t sub_id, uint8_t expect_rc)
{
	uint8_t buf[1024];
	mqtt_topic_entry e = { mqtt_str_c(filter), opts };
	mqtt_props props;
	memset(&props, 0, sizeof(props));
	if (sub_id) {
		props.present = MQTT_PROP_BIT(MQTT_PROP_SUBSCRIPTION_IDENTIFIER);
		props.sub_id = sub_id;
	}
	long n = mqtt_encode_subscribe(buf, sizeof(buf), cl->v, MQTT_SUBSCRIBE, 7,
				       &props, &e, 1);
	assert_true(n > 0);
	cl_raw(b, cl, buf, (size_t)n);
	mqtt_packet p;
	cl_expect(cl, MQTT_SUBACK, &p);
	assert_int_equal(p.u.suback.packet_id, 7);
	assert_int_equal(p.u.suback.reasons.len, 1);
	assert_int_equal(p.u.suback.reasons.ptr[0], expect_rc);
}

static void cl_pub(broker *b, client *cl, const char *topic, const char *payload,
		   uint8_t qos, bool retain, uint16_t pid)
{
	mqtt_packet p;
	memset(&p, 0, sizeof(p));
	p.type = MQTT_PUBLISH;
	p.u.publish.topic = mqtt_str_c(topic);
	p.u.publish.payload = (mqtt_bytes){ (const uint8_t *)payload,
					    (uint32_t)strlen(payload) };
	p.u.publish.qos = qos;
	p.u.publish.retain = retain;
	p.u.publish.packet_id = qos ? pid : 0;
	cl_send(b, cl, &p);
}

static void cl_ack(broker *b, client *cl, mqtt_type t, uint16_t pid)
{
	mqtt_packet p;
	memset(&p, 0, sizeof(p));
	p.type = t;
	p.u.ack.packet_id = pid;
	cl_send(b, cl, &p);
}

static void expect_pub(client *cl, const char *topic, const char *payload,
		       uint8_t qos, bool retain, mqtt_packet *out)
{
	mqtt_packet tmp;
	mqtt_packet *p = out ? out : &tmp;
	cl_expect(cl, MQTT_PUBLISH, p);
	assert_int_equal(p->u.publish.topic.len, strlen(topic));
	assert_memory_equal(p->u.publish.topic.ptr, topic, strlen(topic));
	assert_int_equal(p->u.publish.payload.len, strlen(payload));
	if (*payload)
		assert_memory_equal(p->u.publish.payload.ptr, payload,
				    strlen(payload));
	assert_int_equal(p->u.publish.qos, qos);
	assert_int_equal(p->u.publish.retain, retain);
}

static void cl_disconnect(broker *b, client *cl, uint8_t reason)
{
	mqtt_packet p;
	memset(&p, 0, sizeof(p));
	p.type = MQTT_DISCONNECT;
	p.u.disconnect.reason = reason;
	cl_send(b, cl, &p);
	assert_true(cl_closing(cl));
	cl_close(b, cl);
}

/* ---- tests ------------------------------------------------------------ */

static void test_connect_pub_sub_qos1(void **state)
{
	(void)state;
	broker *b = mkbroker();
	bool present = true;
	client *s = cl_up(b, MQTT_V311, "sub", true, &present);
	assert_false(present);
	client *p = cl_up(b, MQTT_V311, "pub", true, NULL);
	cl_sub(b, s, "a/+", 1, 0, 1);
	cl_pub(b, p, "a/b", "hello", 1, false, 10);
	mqtt_packet ack;
	cl_expect(p, MQTT_PUBACK, &ack);
	assert_int_equal(ack.u.ack.packet_id, 10);
	mqtt_packet m;
	expect_pub(s, "a/b", "hello", 1, false, &m);
	assert_int_not_equal(m.u.publish.packet_id, 0);
	cl_ack(b, s, MQTT_PUBACK, m.u.publish.packet_id);
	/* QoS 0 publish, QoS 1 sub: min is 0. */
	cl_pub(b, p, "a/c", "x", 0, false, 0);
	expect_pub(s, "a/c", "x", 0, false, NULL);
	cl_none(s);
	/* PINGREQ */
	mqtt_packet ping;
	memset(&ping, 0, sizeof(ping));
	ping.type = MQTT_PINGREQ;
	cl_send(b, s, &ping);
	cl_expect(s, MQTT_PINGRESP, NULL);
	assert_int_equal(broker_conn_count(b), 2);
	drain_dirty(b);
	cl_disconnect(b, s, 0);
	cl_close(b, p);
	assert_int_equal(broker_conn_count(b), 0);
	broker_destroy(b);
}

/* [MQTT-3.1.0-1] the first packet must be CONNECT. */
static void test_MQTT_3_1_0_1_first_packet(void **state)
{
	(void)state;
	broker *b = mkbroker();
	client *c = cl_open(b, MQTT_V311);
	mqtt_packet p;
	memset(&p, 0, sizeof(p));
	p.type = MQTT_PINGREQ;
	cl_send(b, c, &p);
	assert_true(cl_closing(c));
	cl_none(c);
	assert_ptr_equal(broker_next_dirty(b), c->c);
	assert_null(broker_next_dirty(b));
	cl_close(b, c);
	broker_destroy(b);
}

/* [MQTT-3.1.0-2] a second CONNECT is a protocol error. */
static void test_MQTT_3_1_0_2_second_connect(void **state)
{
	(void)state;
	broker *b = mkbroker();
	client *c = cl_up(b, MQTT_V5, "c", true, NULL);
	conn_opts o = { .id = "c", .clean = true, .session_expiry = -1 };
	cl_connect(b, c, &o);
	mqtt_packet p;
	cl_expect(c, MQTT_DISCONNECT, &p);
	assert_int_equal(p.u.disconnect.reason, MQTT_RC_PROTOCOL_ERROR);
	assert_true(cl_closing(c));
	cl_close(b, c);
	broker_destroy(b);
}

static void test_bad_version(void **state)
{
	(void)state;
	broker *b = mkbroker();
	client *c = cl_open(b, MQTT_V311);
	static const uint8_t conn[] = { 0x10, 13, 0, 4, 'M', 'Q', 'T', 'T', 9,
					2, 0, 60, 0, 1, 'x' };
	cl_raw(b, c, conn, sizeof(conn));
	mqtt_packet p;
	cl_expect(c, MQTT_CONNACK, &p);
	assert_int_equal(p.u.connack.reason, MQTT_CONNACK_V3_BAD_PROTOCOL);
	assert_true(cl_closing(c));
	cl_close(b, c);
	broker_destroy(b);
}

static void test_empty_client_id(void **state)
{
	(void)state;
	broker *b = mkbroker();
	mqtt_packet p;
	/* 3.1.1 with clean session 0: identifier rejected [MQTT-3.1.3-8]. */
	client *c = cl_open(b, MQTT_V311);
	conn_opts o = { .id = "", .clean = false, .session_expiry = -1 };
	cl_connect(b, c, &o);
	cl_expect(c, MQTT_CONNACK, &p);
	assert_int_equal(p.u.connack.reason, MQTT_CONNACK_V3_ID_REJECTED);
	assert_true(cl_closing(c));
	cl_close(b, c);
	/* 3.1: rejected even with clean session. */
	c = cl_open(b, MQTT_V31);
	o.clean = true;
	cl_connect(b, c, &o);
	cl_expect(c, MQTT_CONNACK, &p);
	assert_int_equal(p.u.connack.reason, MQTT_CONNACK_V3_ID_REJECTED);
	cl_close(b, c);
	/* 3.1.1 clean: accepted. */
	c = cl_open(b, MQTT_V311);
	cl_connect(b, c, &o);
	cl_expect(c, MQTT_CONNACK, &p);
	assert_int_equal(p.u.connack.reason, 0);
	cl_close(b, c);
	/* 5.0: Assigned Client Identifier. */
	c = cl_open(b, MQTT_V5);
	cl_connect(b, c, &o);
	cl_expect(c, MQTT_CONNACK, &p);
	assert_int_equal(p.u.connack.reason, 0);
	assert_true(p.u.connack.props.present &
		    MQTT_PROP_BIT(MQTT_PROP_ASSIGNED_CLIENT_IDENTIFIER));
	assert_true(p.u.connack.props.assigned_client_id.len > 5);
	assert_true(p.u.connack.props.present &
		    MQTT_PROP_BIT(MQTT_PROP_RECEIVE_MAXIMUM));
	assert_int_equal(p.u.connack.props.receive_maximum, 20);
	assert_int_equal(p.u.connack.props.topic_alias_maximum, 10);
	cl_close(b, c);
	broker_destroy(b);
}

static void test_anonymous_refused(void **state)
{
	(void)state;
	cfg.allow_anonymous = false;
	broker *b = mkbroker();
	mqtt_packet p;
	client *c = cl_open(b, MQTT_V311);
	conn_opts o = { .id = "x", .clean = true, .session_expiry = -1 };
	cl_connect(b, c, &o);
	cl_expect(c, MQTT_CONNACK, &p);
	assert_int_equal(p.u.connack.reason, MQTT_CONNACK_V3_NOT_AUTHORIZED);
	cl_close(b, c);
	c = cl_open(b, MQTT_V5);
	cl_connect(b, c, &o);
	cl_expect(c, MQTT_CONNACK, &p);
	assert_int_equal(p.u.connack.reason, MQTT_RC_NOT_AUTHORIZED);
	cl_close(b, c);
	c = cl_open(b, MQTT_V5);
	o.username = "u";
	cl_connect(b, c, &o);
	cl_expect(c, MQTT_CONNACK, &p);
	assert_int_equal(p.u.connack.reason, 0);
	cl_close(b, c);
	broker_destroy(b);
}

static void test_overlapping_one_copy(void **state)
{
	(void)state;
	broker *b = mkbroker();
	client *s = cl_up(b, MQTT_V5, "s", true, NULL);
	client *p = cl_up(b, MQTT_V5, "p", true, NULL);
	cl_sub(b, s, "a/+", 1, 11, 1);
	cl_sub(b, s, "a/#", 2, 12, 2);
	cl_sub(b, s, "x/#", 0, 0, 0);
	cl_pub(b, p, "a/b", "m", 2, false, 1);
	mqtt_packet rec;
	cl_expect(p, MQTT_PUBREC, &rec);
	assert_int_equal(rec.u.ack.reason, 0);
	mqtt_packet m;
	expect_pub(s, "a/b", "m", 2, false, &m);
	assert_int_equal(m.u.publish.props.sub_id_count, 2);
	cl_none(s);
	/* No subscribers: v5 PUBACK 0x10. */
	cl_pub(b, p, "zzz", "m", 1, false, 2);
	mqtt_packet ack;
	cl_expect(p, MQTT_PUBACK, &ack);
	assert_int_equal(ack.u.ack.reason, MQTT_RC_NO_MATCHING_SUBSCRIBERS);
	cl_close(b, s);
	cl_close(b, p);
	broker_destroy(b);
}

static void test_qos2_inbound_exactly_once(void **state)
{
	(void)state;
	broker *b = mkbroker();
	client *s = cl_up(b, MQTT_V5, "s", true, NULL);
	client *p = cl_up(b, MQTT_V5, "p", true, NULL);
	cl_sub(b, s, "q", 0, 0, 0);
	cl_pub(b, p, "q", "1", 2, false, 5);
	cl_expect(p, MQTT_PUBREC, NULL);
	expect_pub(s, "q", "1", 0, false, NULL);
	/* Duplicate before PUBREL: PUBREC again, not delivered again. */
	cl_pub(b, p, "q", "1", 2, false, 5);
	cl_expect(p, MQTT_PUBREC, NULL);
	cl_none(s);
	cl_ack(b, p, MQTT_PUBREL, 5);
	mqtt_packet c;
	cl_expect(p, MQTT_PUBCOMP, &c);
	assert_int_equal(c.u.ack.reason, 0);
	cl_ack(b, p, MQTT_PUBREL, 5);
	cl_expect(p, MQTT_PUBCOMP, &c);
	assert_int_equal(c.u.ack.reason, MQTT_RC_PACKET_IDENTIFIER_NOT_FOUND);
	cl_close(b, s);
	cl_close(b, p);
	broker_destroy(b);
}

static void test_qos2_outbound(void **state)
{
	(void)state;
	broker *b = mkbroker();
	client *s = cl_up(b, MQTT_V311, "s", true, NULL);
	client *p = cl_up(b, MQTT_V311, "p", true, NULL);
	cl_sub(b, s, "q", 2, 0, 2);
	cl_pub(b, p, "q", "1", 2, false, 5);
	cl_expect(p, MQTT_PUBREC, NULL);
	mqtt_packet m;
	expect_pub(s, "q", "1", 2, false, &m);
	uint16_t pid = m.u.publish.packet_id;
	cl_ack(b, s, MQTT_PUBREC, pid);
	mqtt_packet rel;
	cl_expect(s, MQTT_PUBREL, &rel);
	assert_int_equal(rel.u.ack.packet_id, pid);
	cl_ack(b, s, MQTT_PUBCOMP, pid);
	cl_none(s);
	cl_close(b, s);
	cl_close(b, p);
	broker_destroy(b);
}

static void test_inflight_window_and_order(void **state)
{
	(void)state;
	cfg.max_inflight_messages = 2;
	broker *b = mkbroker();
	client *s = cl_up(b, MQTT_V311, "s", true, NULL);
	client *p = cl_up(b, MQTT_V311, "p", true, NULL);
	cl_sub(b, s, "t", 1, 0, 1);
	char pl[8];
	for (int i = 0; i < 5; i++) {
		snprintf(pl, sizeof(pl), "%d", i);
		cl_pub(b, p, "t", pl, 1, false, (uint16_t)(i + 1));
		cl_expect(p, MQTT_PUBACK, NULL);
	}
	mqtt_packet m0, m1, m;
	expect_pub(s, "t", "0", 1, false, &m0);
	uint16_t pid0 = m0.u.publish.packet_id;
	expect_pub(s, "t", "1", 1, false, &m1);
	uint16_t pid1 = m1.u.publish.packet_id;
	assert_int_not_equal(pid0, pid1);
	cl_none(s);
	cl_ack(b, s, MQTT_PUBACK, pid0);
	expect_pub(s, "t", "2", 1, false, &m);
	cl_none(s);
	cl_ack(b, s, MQTT_PUBACK, pid1);
	cl_ack(b, s, MQTT_PUBACK, m.u.publish.packet_id);
	expect_pub(s, "t", "3", 1, false, NULL);
	expect_pub(s, "t", "4", 1, false, NULL);
	cl_none(s);
	cl_close(b, s);
	cl_close(b, p);
	broker_destroy(b);
}

static void test_persistent_session_queue_and_resend(void **state)
{
	(void)state;
	broker *b = mkbroker();
	bool present;
	client *s = cl_up(b, MQTT_V311, "s", false, &present);
	assert_false(present);
	client *p = cl_up(b, MQTT_V311, "p", true, NULL);
	cl_sub(b, s, "t", 1, 0, 1);
	cl_pub(b, p, "t", "inflight", 1, false, 1);
	cl_expect(p, MQTT_PUBACK, NULL);
	mqtt_packet m;
	expect_pub(s, "t", "inflight", 1, false, &m);
	uint16_t pid = m.u.publish.packet_id;
	/* Drop without acking or DISCONNECT. */
	cl_close(b, s);
	cl_pub(b, p, "t", "q1", 1, false, 2);
	cl_expect(p, MQTT_PUBACK, NULL);
	cl_pub(b, p, "t", "q0", 0, false, 0); /* QoS 0 not queued offline */
	s = cl_up(b, MQTT_V311, "s", false, &present);
	assert_true(present);
	expect_pub(s, "t", "inflight", 1, false, &m);
	assert_true(m.u.publish.dup);
	assert_int_equal(m.u.publish.packet_id, pid);
	expect_pub(s, "t", "q1", 1, false, &m);
	assert_false(m.u.publish.dup);
	cl_none(s);
	cl_close(b, s);
	/* Clean session discards it. */
	s = cl_up(b, MQTT_V311, "s", true, &present);
	assert_false(present);
	cl_close(b, s);
	cl_close(b, p);
	broker_destroy(b);
}

static void test_queue_limit(void **state)
{
	(void)state;
	cfg.max_queued_messages = 2;
	broker *b = mkbroker();
	client *s = cl_up(b, MQTT_V311, "s", false, NULL);
	cl_sub(b, s, "t", 1, 0, 1);
	cl_close(b, s);
	client *p = cl_up(b, MQTT_V311, "p", true, NULL);
	for (int i = 0; i < 4; i++) {
		cl_pub(b, p, "t", "x", 1, false, (uint16_t)(i + 1));
		cl_expect(p, MQTT_PUBACK, NULL);
	}
	s = cl_up(b, MQTT_V311, "s", false, NULL);
	expect_pub(s, "t", "x", 1, false, NULL);
	expect_pub(s, "t", "x", 1, false, NULL);
	cl_none(s);
	cl_close(b, s);
	cl_close(b, p);
	broker_destroy(b);
}

static void test_retained(void **state)
{
	(void)state;
	broker *b = mkbroker();
	client *p = cl_up(b, MQTT_V311, "p", true, NULL);
	cl_pub(b, p, "r/1", "one", 1, true, 1);
	cl_expect(p, MQTT_PUBACK, NULL);
	cl_pub(b, p, "r/2", "two", 0, true, 0);
	client *s = cl_up(b, MQTT_V311, "s", true, NULL);
	cl_sub(b, s, "r/+", 2, 0, 2);
	mqtt_packet a, c;
	cl_expect(s, MQTT_PUBLISH, &a);
	cl_expect(s, MQTT_PUBLISH, &c);
	assert_true(a.u.publish.retain && c.u.publish.retain);
	assert_int_equal(a.u.publish.qos + c.u.publish.qos, 1);
	cl_ack(b, s, MQTT_PUBACK,
	       a.u.publish.qos ? a.u.publish.packet_id : c.u.publish.packet_id);
	/* Live retained publish: RETAIN 0 to existing subscribers. */
	cl_pub(b, p, "r/1", "uno", 0, true, 0);
	expect_pub(s, "r/1", "uno", 0, false, NULL);
	/* Clear: delivered as a normal (empty) message, then gone. */
	cl_pub(b, p, "r/1", "", 0, true, 0);
	expect_pub(s, "r/1", "", 0, false, NULL);
	/* Re-subscribe resends retained (only r/2 left). */
	cl_sub(b, s, "r/+", 0, 0, 0);
	expect_pub(s, "r/2", "two", 0, true, NULL);
	cl_none(s);
	cl_close(b, s);
	cl_close(b, p);
	broker_destroy(b);
}

static void test_v5_sub_options(void **state)
{
	(void)state;
	broker *b = mkbroker();
	client *c = cl_up(b, MQTT_V5, "c", true, NULL);
	cl_pub(b, c, "k", "keep", 0, true, 0);
	/* Retain Handling 2: none on subscribe. No Local: own messages skipped. */
	cl_sub(b, c, "k", MQTT_SUBOPT_NO_LOCAL | (2 << 4), 0, 0);
	cl_none(c);
	cl_pub(b, c, "k", "own", 0, false, 0);
	cl_none(c);
	/* Retain Handling 1: only when new. */
	cl_sub(b, c, "k2/#", 1 | (1 << 4), 0, 1);
	cl_sub(b, c, "k", 1 | (1 << 4), 0, 1);
	cl_none(c);
	cl_sub(b, c, "k/#", 1 | (1 << 4) | MQTT_SUBOPT_RETAIN_AS_PUBLISHED, 0, 1);
	mqtt_packet m;
	expect_pub(c, "k", "keep", 0, true, &m);
	/* Retain As Published on a live retained message. */
	client *p = cl_up(b, MQTT_V5, "p", true, NULL);
	cl_pub(b, p, "k", "again", 0, true, 0);
	expect_pub(c, "k", "again", 0, true, NULL);
	cl_none(c);
	/* Invalid filter: 0x8F. */
	cl_sub(b, c, "a/#/b", 0, 0, MQTT_RC_TOPIC_FILTER_INVALID);
	cl_close(b, c);
	cl_close(b, p);
	broker_destroy(b);
}

static void test_v311_invalid_filter(void **state)
{
	(void)state;
	broker *b = mkbroker();
	client *c = cl_up(b, MQTT_V311, "c", true, NULL);
	cl_sub(b, c, "a/b#", 0, 0, 0x80);
	cl_close(b, c);
	broker_destroy(b);
}

static void test_shared_subscription(void **state)
{
	(void)state;
	broker *b = mkbroker();
	client *s1 = cl_up(b, MQTT_V5, "s1", true, NULL);
	client *s2 = cl_up(b, MQTT_V5, "s2", true, NULL);
	client *p = cl_up(b, MQTT_V5, "p", true, NULL);
	cl_pub(b, p, "job", "retained", 0, true, 0);
	cl_sub(b, s1, "$share/g/job", 0, 0, 0);
	cl_sub(b, s2, "$share/g/job", 0, 0, 0);
	cl_none(s1); /* no retained on shared subscribe */
	for (int i = 0; i < 4; i++)
		cl_pub(b, p, "job", "w", 0, false, 0);
	int n1 = 0, n2 = 0;
	mqtt_packet m;
	while (cl_recv(s1, &m))
		n1++;
	while (cl_recv(s2, &m))
		n2++;
	assert_int_equal(n1, 2);
	assert_int_equal(n2, 2);
	cl_close(b, s1);
	cl_close(b, s2);
	cl_close(b, p);
	broker_destroy(b);
}

/* The route cache replays matches for a repeated topic; subscribe and
 * session end invalidate it, and No Local still applies per delivery. */
static int cl_count(client *cl)
{
	int n = 0;
	mqtt_packet m;
	while (cl_recv(cl, &m)) {
		assert_int_equal(m.type, MQTT_PUBLISH);
		n++;
	}
	return n;
}

static void test_route_cache(void **state)
{
	(void)state;
	broker *b = mkbroker();
	client *s = cl_up(b, MQTT_V5, "s", true, NULL);
	client *s2 = cl_up(b, MQTT_V5, "s2", true, NULL);
	client *p = cl_up(b, MQTT_V5, "p", true, NULL);
	cl_sub(b, s, "a/+", 0, 0, 0);
	cl_pub(b, p, "a/b", "1", 0, false, 0);
	cl_pub(b, p, "a/b", "2", 0, false, 0);
	assert_int_equal(cl_count(s), 2);
	cl_sub(b, s2, "a/b", 0, 0, 0);
	cl_pub(b, p, "a/b", "3", 0, false, 0);
	assert_int_equal(cl_count(s), 1);
	assert_int_equal(cl_count(s2), 1);
	cl_sub(b, p, "a/#", MQTT_SUBOPT_NO_LOCAL, 0, 0);
	cl_pub(b, p, "a/b", "4", 0, false, 0);
	cl_pub(b, p, "a/b", "5", 0, false, 0);
	assert_int_equal(cl_count(p), 0);
	assert_int_equal(cl_count(s), 2);
	assert_int_equal(cl_count(s2), 2);
	/* s2's session ends with its connection: no delivery to freed state. */
	cl_close(b, s2);
	cl_pub(b, p, "a/b", "6", 0, false, 0);
	assert_int_equal(cl_count(s), 1);
	/* Another publisher on the cached topic gets its own No Local. */
	client *q = cl_up(b, MQTT_V5, "q", true, NULL);
	cl_pub(b, q, "a/b", "7", 0, false, 0);
	assert_int_equal(cl_count(p), 1);
	assert_int_equal(cl_count(s), 1);
	cl_close(b, q);
	cl_close(b, s);
	cl_close(b, p);
	broker_destroy(b);
}

static void test_will(void **state)
{
	(void)state;
	broker *b = mkbroker();
	client *s = cl_up(b, MQTT_V311, "s", true, NULL);
	cl_sub(b, s, "will/#", 1, 0, 1);
	/* Abnormal close: will sent. */
	client *w = cl_open(b, MQTT_V311);
	conn_opts o = { .id = "w", .clean = true, .ka = 10, .will_topic = "will/w",
			.will_payload = "gone", .will_qos = 1, .session_expiry = -1 };
	cl_connect(b, w, &o);
	cl_expect(w, MQTT_CONNACK, NULL);
	cl_close(b, w);
	mqtt_packet m;
	expect_pub(s, "will/w", "gone", 1, false, &m);
	cl_ack(b, s, MQTT_PUBACK, m.u.publish.packet_id);
	/* Normal DISCONNECT: no will. */
	w = cl_open(b, MQTT_V311);
	cl_connect(b, w, &o);
	cl_expect(w, MQTT_CONNACK, NULL);
	cl_disconnect(b, w, 0);
	cl_none(s);
	/* v5 DISCONNECT 0x04: will sent. */
	w = cl_open(b, MQTT_V5);
	cl_connect(b, w, &o);
	cl_expect(w, MQTT_CONNACK, NULL);
	cl_disconnect(b, w, MQTT_RC_DISCONNECT_WITH_WILL);
	expect_pub(s, "will/w", "gone", 1, false, &m);
	cl_ack(b, s, MQTT_PUBACK, m.u.publish.packet_id);
	/* Keepalive timeout: v5 DISCONNECT 0x8D, then will on close. */
	w = cl_open(b, MQTT_V5);
	cl_connect(b, w, &o);
	cl_expect(w, MQTT_CONNACK, NULL);
	now += 14000;
	broker_tick(b, now);
	assert_false(cl_closing(w));
	now += 2000;
	broker_tick(b, now);
	assert_true(cl_closing(w));
	mqtt_packet d;
	cl_expect(w, MQTT_DISCONNECT, &d);
	assert_int_equal(d.u.disconnect.reason, MQTT_RC_KEEP_ALIVE_TIMEOUT);
	cl_close(b, w);
	expect_pub(s, "will/w", "gone", 1, false, &m);
	cl_ack(b, s, MQTT_PUBACK, m.u.publish.packet_id);
	cl_none(s);
	cl_close(b, s);
	broker_destroy(b);
}

static void test_will_delay(void **state)
{
	(void)state;
	broker *b = mkbroker();
	client *s = cl_up(b, MQTT_V5, "s", true, NULL);
	cl_sub(b, s, "will", 0, 0, 0);
	conn_opts o = { .id = "w", .clean = false, .ka = 0, .will_topic = "will",
			.will_payload = "late", .will_delay = 5,
			.session_expiry = 100 };
	client *w = cl_open(b, MQTT_V5);
	cl_connect(b, w, &o);
	cl_expect(w, MQTT_CONNACK, NULL);
	cl_close(b, w);
	cl_none(s);
	/* Reconnect within the delay cancels it. */
	now += 2000;
	broker_tick(b, now);
	w = cl_open(b, MQTT_V5);
	o.will_topic = NULL;
	cl_connect(b, w, &o);
	cl_expect(w, MQTT_CONNACK, NULL);
	now += 10000;
	broker_tick(b, now);
	cl_none(s);
	cl_close(b, w);
	/* Again with a will; this time it fires after the delay. */
	w = cl_open(b, MQTT_V5);
	o.will_topic = "will";
	cl_connect(b, w, &o);
	cl_expect(w, MQTT_CONNACK, NULL);
	cl_close(b, w);
	now += 3000;
	broker_tick(b, now);
	cl_none(s);
	now += 3000;
	broker_tick(b, now);
	expect_pub(s, "will", "late", 0, false, NULL);
	cl_close(b, s);
	broker_destroy(b);
}

static void test_takeover(void **state)
{
	(void)state;
	broker *b = mkbroker();
	client *s = cl_up(b, MQTT_V5, "s", true, NULL);
	cl_sub(b, s, "will", 0, 0, 0);
	client *a = cl_open(b, MQTT_V5);
	conn_opts o = { .id = "dup", .clean = false, .will_topic = "will",
			.will_payload = "old", .session_expiry = 60 };
	cl_connect(b, a, &o);
	cl_expect(a, MQTT_CONNACK, NULL);
	cl_sub(b, a, "t", 1, 0, 1);
	bool present;
	client *a2 = cl_up(b, MQTT_V5, "dup", false, &present);
	assert_true(present);
	mqtt_packet d;
	cl_expect(a, MQTT_DISCONNECT, &d);
	assert_int_equal(d.u.disconnect.reason, MQTT_RC_SESSION_TAKEN_OVER);
	assert_true(cl_closing(a));
	expect_pub(s, "will", "old", 0, false, NULL);
	cl_close(b, a); /* late close of the old transport: no effect */
	/* The subscription moved with the session. */
	cl_pub(b, s, "t", "hi", 0, false, 0);
	expect_pub(a2, "t", "hi", 0, false, NULL);
	cl_none(s);
	cl_close(b, a2);
	cl_close(b, s);
	broker_destroy(b);
}

static void test_topic_alias(void **state)
{
	(void)state;
	broker *b = mkbroker();
	client *s = cl_up(b, MQTT_V5, "s", true, NULL);
	client *p = cl_up(b, MQTT_V5, "p", true, NULL);
	cl_sub(b, s, "long/topic", 0, 0, 0);
	mqtt_packet pk;
	memset(&pk, 0, sizeof(pk));
	pk.type = MQTT_PUBLISH;
	pk.u.publish.topic = mqtt_str_c("long/topic");
	pk.u.publish.props.present = MQTT_PROP_BIT(MQTT_PROP_TOPIC_ALIAS);
	pk.u.publish.props.topic_alias = 3;
	pk.u.publish.payload = (mqtt_bytes){ (const uint8_t *)"1", 1 };
	cl_send(b, p, &pk);
	mqtt_packet m;
	expect_pub(s, "long/topic", "1", 0, false, &m);
	assert_false(m.u.publish.props.present & MQTT_PROP_BIT(MQTT_PROP_TOPIC_ALIAS));
	pk.u.publish.topic = mqtt_str_c("");
	cl_send(b, p, &pk);
	expect_pub(s, "long/topic", "1", 0, false, NULL);
	pk.u.publish.props.topic_alias = 11;
	cl_send(b, p, &pk);
	mqtt_packet d;
	cl_expect(p, MQTT_DISCONNECT, &d);
	assert_int_equal(d.u.disconnect.reason, MQTT_RC_TOPIC_ALIAS_INVALID);
	cl_close(b, p);
	cl_close(b, s);
	broker_destroy(b);
}

static void test_props_pass_through(void **state)
{
	(void)state;
	broker *b = mkbroker();
	client *s = cl_up(b, MQTT_V5, "s", true, NULL);
	client *p = cl_up(b, MQTT_V5, "p", true, NULL);
	cl_sub(b, s, "rr", 0, 42, 0);
	mqtt_packet pk;
	memset(&pk, 0, sizeof(pk));
	pk.type = MQTT_PUBLISH;
	pk.u.publish.topic = mqtt_str_c("rr");
	mqtt_props *pp = &pk.u.publish.props;
	pp->present = MQTT_PROP_BIT(MQTT_PROP_RESPONSE_TOPIC) |
		      MQTT_PROP_BIT(MQTT_PROP_CONTENT_TYPE) |
		      MQTT_PROP_BIT(MQTT_PROP_MESSAGE_EXPIRY_INTERVAL);
	pp->response_topic = mqtt_str_c("reply/here");
	pp->content_type = mqtt_str_c("text/plain");
	pp->message_expiry = 60;
	mqtt_user_prop up = { mqtt_str_c("k"), mqtt_str_c("v") };
	pp->user = &up;
	pp->user_count = 1;
	pk.u.publish.payload = (mqtt_bytes){ (const uint8_t *)"x", 1 };
	cl_send(b, p, &pk);
	mqtt_packet m;
	expect_pub(s, "rr", "x", 0, false, &m);
	const mqtt_props *mp = &m.u.publish.props;
	assert_int_equal(mp->response_topic.len, 10);
	assert_int_equal(mp->content_type.len, 10);
	assert_int_equal(mp->user_count, 1);
	assert_int_equal(mp->sub_id, 42);
	assert_true(mp->message_expiry <= 60 && mp->message_expiry >= 59);
	/* v3.1.1 subscriber: no properties at all. */
	client *s3 = cl_up(b, MQTT_V311, "s3", true, NULL);
	cl_sub(b, s3, "rr", 0, 0, 0);
	cl_send(b, p, &pk);
	expect_pub(s3, "rr", "x", 0, false, NULL);
	cl_close(b, s3);
	cl_close(b, s);
	cl_close(b, p);
	broker_destroy(b);
}

static void test_message_expiry_in_queue(void **state)
{
	(void)state;
	broker *b = mkbroker();
	client *s = cl_up(b, MQTT_V5, "s", false, NULL);
	cl_sub(b, s, "e", 1, 0, 1);
	cl_close(b, s);
	client *p = cl_up(b, MQTT_V5, "p", true, NULL);
	mqtt_packet pk;
	memset(&pk, 0, sizeof(pk));
	pk.type = MQTT_PUBLISH;
	pk.u.publish.topic = mqtt_str_c("e");
	pk.u.publish.qos = 1;
	pk.u.publish.packet_id = 1;
	pk.u.publish.props.present = MQTT_PROP_BIT(MQTT_PROP_MESSAGE_EXPIRY_INTERVAL);
	pk.u.publish.props.message_expiry = 2;
	pk.u.publish.payload = (mqtt_bytes){ (const uint8_t *)"old", 3 };
	cl_send(b, p, &pk);
	cl_expect(p, MQTT_PUBACK, NULL);
	cl_pub(b, p, "e", "new", 1, false, 2);
	cl_expect(p, MQTT_PUBACK, NULL);
	now += 5000;
	s = cl_up(b, MQTT_V5, "s", false, NULL);
	expect_pub(s, "e", "new", 1, false, NULL);
	cl_none(s);
	cl_close(b, s);
	cl_close(b, p);
	broker_destroy(b);
}

static void test_malformed_and_limits(void **state)
{
	(void)state;
	cfg.max_packet_size = 64;
	cfg.retain_available = false;
	broker *b = mkbroker();
	/* Garbage after CONNACK: v5 DISCONNECT 0x81 (malformed). */
	client *c = cl_up(b, MQTT_V5, "c", true, NULL);
	static const uint8_t bad[] = { 0x30, 0x02, 0x00, 0x05 };
	cl_raw(b, c, bad, sizeof(bad));
	mqtt_packet d;
	cl_expect(c, MQTT_DISCONNECT, &d);
	assert_true(d.u.disconnect.reason >= 0x80);
	assert_true(cl_closing(c));
	/* Input after the error is ignored. */
	cl_raw(b, c, bad, sizeof(bad));
	cl_close(b, c);
	/* Too large: 0x95. */
	c = cl_up(b, MQTT_V5, "c", true, NULL);
	static const uint8_t big[] = { 0x30, 0xc8, 0x01 };
	cl_raw(b, c, big, sizeof(big));
	cl_expect(c, MQTT_DISCONNECT, &d);
	assert_int_equal(d.u.disconnect.reason, MQTT_RC_PACKET_TOO_LARGE);
	cl_close(b, c);
	/* Retain not available: 0x9A. */
	c = cl_up(b, MQTT_V5, "c", true, NULL);
	cl_pub(b, c, "r", "x", 0, true, 0);
	cl_expect(c, MQTT_DISCONNECT, &d);
	assert_int_equal(d.u.disconnect.reason, MQTT_RC_RETAIN_NOT_SUPPORTED);
	cl_close(b, c);
	/* Session expiry 0 -> nonzero on DISCONNECT: protocol error. */
	c = cl_up(b, MQTT_V5, "c", true, NULL);
	mqtt_packet p;
	memset(&p, 0, sizeof(p));
	p.type = MQTT_DISCONNECT;
	p.u.disconnect.props.present =
		MQTT_PROP_BIT(MQTT_PROP_SESSION_EXPIRY_INTERVAL);
	p.u.disconnect.props.session_expiry = 10;
	cl_send(b, c, &p);
	cl_expect(c, MQTT_DISCONNECT, &d);
	assert_int_equal(d.u.disconnect.reason, MQTT_RC_PROTOCOL_ERROR);
	cl_close(b, c);
	broker_destroy(b);
}

static void test_keepalive_override(void **state)
{
	(void)state;
	cfg.max_keepalive = 30;
	broker *b = mkbroker();
	client *c = cl_open(b, MQTT_V5);
	conn_opts o = { .id = "k", .clean = true, .ka = 100, .session_expiry = -1 };
	cl_connect(b, c, &o);
	mqtt_packet p;
	cl_expect(c, MQTT_CONNACK, &p);
	assert_true(p.u.connack.props.present &
		    MQTT_PROP_BIT(MQTT_PROP_SERVER_KEEP_ALIVE));
	assert_int_equal(p.u.connack.props.server_keep_alive, 30);
	now += 46000;
	broker_tick(b, now);
	assert_true(cl_closing(c));
	cl_close(b, c);
	broker_destroy(b);
}

static void test_session_expiry(void **state)
{
	(void)state;
	broker *b = mkbroker();
	client *c = cl_open(b, MQTT_V5);
	conn_opts o = { .id = "x", .clean = false, .session_expiry = 3 };
	cl_connect(b, c, &o);
	cl_expect(c, MQTT_CONNACK, NULL);
	cl_close(b, c);
	now += 2000;
	broker_tick(b, now);
	bool present;
	c = cl_up(b, MQTT_V5, "x", false, &present);
	assert_true(present);
	cl_close(b, c); /* expiry 3600 now */
	c = cl_open(b, MQTT_V5);
	cl_connect(b, c, &o);
	cl_expect(c, MQTT_CONNACK, NULL);
	cl_close(b, c);
	now += 4000;
	broker_tick(b, now);
	c = cl_up(b, MQTT_V5, "x", false, &present);
	assert_false(present);
	cl_close(b, c);
	broker_destroy(b);
}

static void test_sys(void **state)
{
	(void)state;
	cfg.sys_interval = 10;
	broker *b = mkbroker();
	client *s = cl_up(b, MQTT_V311, "s", true, NULL);
	cl_sub(b, s, "#", 0, 0, 0);
	uint64_t wait = broker_tick(b, now);
	assert_true(wait <= 1000);
	cl_none(s); /* '#' does not match $SYS */
	cl_sub(b, s, "$SYS/broker/version", 0, 0, 0);
	expect_pub(s, "$SYS/broker/version", "shimmy 0.1.0", 0, true, NULL);
	now += 10000;
	broker_tick(b, now);
	expect_pub(s, "$SYS/broker/version", "shimmy 0.1.0", 0, false, NULL);
	cl_close(b, s);
	broker_destroy(b);
}

static void test_client_max_packet(void **state)
{
	(void)state;
	broker *b = mkbroker();
	client *s = cl_open(b, MQTT_V5);
	mqtt_packet p;
	memset(&p, 0, sizeof(p));
	p.type = MQTT_CONNECT;
	p.u.connect.version = MQTT_V5;
	p.u.connect.clean_start = true;
	p.u.connect.client_id = mqtt_str_c("s");
	p.u.connect.props.present = MQTT_PROP_BIT(MQTT_PROP_MAXIMUM_PACKET_SIZE);
	p.u.connect.props.maximum_packet_size = 20;
	cl_send(b, s, &p);
	cl_expect(s, MQTT_CONNACK, NULL);
	cl_sub(b, s, "t", 1, 0, 1);
	client *pub = cl_up(b, MQTT_V5, "p", true, NULL);
	cl_pub(b, pub, "t", "this payload is far too long", 1, false, 1);
	cl_pub(b, pub, "t", "ok", 1, false, 2);
	expect_pub(s, "t", "ok", 1, false, NULL);
	cl_none(s);
	cl_close(b, s);
	cl_close(b, pub);
	broker_destroy(b);
}

/* A v5 CONNECT with extra properties set by the caller. */
static void cl_connect_props(broker *b, client *cl, const char *id,
			     const mqtt_props *props)
{
	mqtt_packet p;
	memset(&p, 0, sizeof(p));
	p.type = MQTT_CONNECT;
	p.u.connect.version = MQTT_V5;
	p.u.connect.clean_start = true;
	p.u.connect.keep_alive = 60;
	p.u.connect.client_id = mqtt_str_c(id);
	p.u.connect.props = *props;
	cl_send(b, cl, &p);
}

static void test_outbound_topic_alias(void **state)
{
	(void)state;
	broker *b = mkbroker();
	client *s = cl_open(b, MQTT_V5);
	mqtt_props pr;
	memset(&pr, 0, sizeof(pr));
	pr.present = MQTT_PROP_BIT(MQTT_PROP_TOPIC_ALIAS_MAXIMUM);
	pr.topic_alias_maximum = 1;
	cl_connect_props(b, s, "s", &pr);
	cl_expect(s, MQTT_CONNACK, NULL);
	cl_sub(b, s, "a/#", 1, 0, 1);
	client *p = cl_up(b, MQTT_V5, "p", true, NULL);
	mqtt_packet m;
	cl_pub(b, p, "a/1", "x", 1, false, 1);
	/* First use: topic and alias 1 [MQTT-3.3.2-12]. */
	cl_expect(s, MQTT_PUBLISH, &m);
	assert_true(m.u.publish.props.present &
		    MQTT_PROP_BIT(MQTT_PROP_TOPIC_ALIAS));
	assert_int_equal(m.u.publish.props.topic_alias, 1);
	assert_int_equal(m.u.publish.topic.len, 3);
	cl_ack(b, s, MQTT_PUBACK, m.u.publish.packet_id);
	cl_pub(b, p, "a/1", "y", 0, false, 0);
	cl_expect(s, MQTT_PUBLISH, &m);
	assert_int_equal(m.u.publish.props.topic_alias, 1);
	assert_int_equal(m.u.publish.topic.len, 0);
	/* Maximum reached: a second topic goes out in full, no alias. */
	cl_pub(b, p, "a/2", "z", 0, false, 0);
	cl_expect(s, MQTT_PUBLISH, &m);
	assert_false(m.u.publish.props.present &
		     MQTT_PROP_BIT(MQTT_PROP_TOPIC_ALIAS));
	assert_int_equal(m.u.publish.topic.len, 3);
	/* A client without Topic Alias Maximum never gets aliases. */
	client *s2 = cl_up(b, MQTT_V5, "s2", true, NULL);
	cl_sub(b, s2, "a/#", 0, 0, 0);
	cl_pub(b, p, "a/1", "w", 0, false, 0);
	cl_expect(s2, MQTT_PUBLISH, &m);
	assert_false(m.u.publish.props.present &
		     MQTT_PROP_BIT(MQTT_PROP_TOPIC_ALIAS));
	cl_close(b, s);
	cl_close(b, s2);
	cl_close(b, p);
	broker_destroy(b);
}

static void cl_pub_pfi(broker *b, client *cl, const char *topic,
		       const uint8_t *pl, uint32_t len, uint8_t qos,
		       uint16_t pid)
{
	mqtt_packet p;
	memset(&p, 0, sizeof(p));
	p.type = MQTT_PUBLISH;
	p.u.publish.topic = mqtt_str_c(topic);
	p.u.publish.payload = (mqtt_bytes){ pl, len };
	p.u.publish.qos = qos;
	p.u.publish.packet_id = pid;
	p.u.publish.props.present =
		MQTT_PROP_BIT(MQTT_PROP_PAYLOAD_FORMAT_INDICATOR);
	p.u.publish.props.payload_format = 1;
	cl_send(b, cl, &p);
}

static void test_payload_format_invalid(void **state)
{
	(void)state;
	broker *b = mkbroker();
	client *s = cl_up(b, MQTT_V5, "s", true, NULL);
	cl_sub(b, s, "t", 1, 0, 1);
	client *p = cl_up(b, MQTT_V5, "p", true, NULL);
	static const uint8_t bad[] = { 'a', 0xC3, 0x28 };
	static const uint8_t good[] = { 'h', 0xC3, 0xA9 };
	mqtt_packet m;
	cl_pub_pfi(b, p, "t", bad, sizeof(bad), 1, 5);
	cl_expect(p, MQTT_PUBACK, &m);
	assert_int_equal(m.u.ack.reason, MQTT_RC_PAYLOAD_FORMAT_INVALID);
	assert_true(m.u.ack.props.present &
		    MQTT_PROP_BIT(MQTT_PROP_REASON_STRING));
	cl_none(s);
	cl_pub_pfi(b, p, "t", good, sizeof(good), 1, 6);
	cl_expect(p, MQTT_PUBACK, &m);
	assert_int_equal(m.u.ack.reason, 0);
	cl_expect(s, MQTT_PUBLISH, &m);
	assert_int_equal(m.u.publish.props.payload_format, 1);
	cl_ack(b, s, MQTT_PUBACK, m.u.publish.packet_id);
	/* QoS 0: no ack to carry it, so DISCONNECT 0x99. */
	cl_pub_pfi(b, p, "t", bad, sizeof(bad), 0, 0);
	cl_expect(p, MQTT_DISCONNECT, &m);
	assert_int_equal(m.u.disconnect.reason, MQTT_RC_PAYLOAD_FORMAT_INVALID);
	assert_true(cl_closing(p));
	cl_none(s);
	cl_close(b, s);
	cl_close(b, p);
	broker_destroy(b);
}

static void test_problem_and_response_info(void **state)
{
	(void)state;
	broker *b = mkbroker();
	client *c = cl_open(b, MQTT_V5);
	mqtt_props pr;
	memset(&pr, 0, sizeof(pr));
	pr.present = MQTT_PROP_BIT(MQTT_PROP_REQUEST_RESPONSE_INFORMATION) |
		     MQTT_PROP_BIT(MQTT_PROP_REQUEST_PROBLEM_INFORMATION);
	pr.request_response_info = 1;
	pr.request_problem_info = 0;
	cl_connect_props(b, c, "rr", &pr);
	mqtt_packet m;
	cl_expect(c, MQTT_CONNACK, &m);
	assert_true(m.u.connack.props.present &
		    MQTT_PROP_BIT(MQTT_PROP_RESPONSE_INFORMATION));
	assert_int_equal(m.u.connack.props.response_info.len, 11);
	assert_memory_equal(m.u.connack.props.response_info.ptr,
			    "response/rr", 11);
	/* Request Problem Information 0: no Reason String on an ack
	 * [MQTT-3.1.2-29]. */
	static const uint8_t bad[] = { 0xFF };
	cl_pub_pfi(b, c, "t", bad, 1, 1, 9);
	cl_expect(c, MQTT_PUBACK, &m);
	assert_int_equal(m.u.ack.reason, MQTT_RC_PAYLOAD_FORMAT_INVALID);
	assert_false(m.u.ack.props.present &
		     MQTT_PROP_BIT(MQTT_PROP_REASON_STRING));
	cl_close(b, c);
	broker_destroy(b);
}

static void test_shared_prefers_online_and_hands_off(void **state)
{
	(void)state;
	broker *b = mkbroker();
	client *s1 = cl_up(b, MQTT_V5, "m1", false, NULL); /* persistent */
	client *s2 = cl_up(b, MQTT_V5, "m2", true, NULL);
	client *p = cl_up(b, MQTT_V5, "p", true, NULL);
	cl_sub(b, s1, "$share/g/job", 1, 0, 1);
	cl_sub(b, s2, "$share/g/job", 1, 0, 1);
	/* m1 goes offline (session kept): every message goes to m2. */
	cl_close(b, s1);
	for (int i = 0; i < 3; i++)
		cl_pub(b, p, "job", "a", 1, false, (uint16_t)(10 + i));
	mqtt_packet m;
	int n2 = 0;
	while (cl_recv(s2, &m))
		if (m.type == MQTT_PUBLISH)
			n2++;
	assert_int_equal(n2, 3);
	/* m2 leaves with unacknowledged messages (session ends with the
	 * connection): they go to m1's session, the only member left. */
	cl_close(b, s2);
	bool present = false;
	s1 = cl_up(b, MQTT_V5, "m1", false, &present);
	assert_true(present);
	int n1 = 0;
	while (cl_recv(s1, &m))
		if (m.type == MQTT_PUBLISH)
			n1++;
	assert_int_equal(n1, 3);
	cl_close(b, s1);
	cl_close(b, p);
	broker_destroy(b);
}

static void test_receive_maximum_exceeded(void **state)
{
	(void)state;
	cfg.max_inflight_messages = 2;
	broker *b = mkbroker();
	client *c = cl_up(b, MQTT_V5, "c", true, NULL);
	cl_pub(b, c, "t", "1", 2, false, 1);
	cl_pub(b, c, "t", "2", 2, false, 2);
	cl_expect(c, MQTT_PUBREC, NULL);
	cl_expect(c, MQTT_PUBREC, NULL);
	cl_pub(b, c, "t", "3", 2, false, 3);
	mqtt_packet m;
	cl_expect(c, MQTT_DISCONNECT, &m);
	assert_int_equal(m.u.disconnect.reason,
			 MQTT_RC_RECEIVE_MAXIMUM_EXCEEDED);
	/* The conn lingers (input ignored) and closes at the next scan. */
	assert_false(cl_closing(c));
	cl_pub(b, c, "t", "4", 2, false, 4);
	cl_none(c);
	now += 2000;
	broker_tick(b, now);
	assert_true(cl_closing(c));
	cl_close(b, c);
	broker_destroy(b);
}

/* Decodes the PUBLISH stream in buf[0..len) and checks its payloads are
 * exactly exp[0..n) (each of exp_len bytes, filled with its index + 'a'). */
static void check_publishes(const uint8_t *buf, size_t len,
			    const size_t *exp_len, size_t n)
{
	size_t off = 0, i = 0;
	while (off < len) {
		mqtt_packet pkt;
		int rc = mqtt_decode(buf + off, len - off, MQTT_V311, 0, &pkt);
		assert_true(rc > 0);
		assert_int_equal(pkt.type, MQTT_PUBLISH);
		assert_true(i < n);
		assert_int_equal(pkt.u.publish.payload.len, exp_len[i]);
		for (size_t k = 0; k < exp_len[i]; k++)
			assert_int_equal(pkt.u.publish.payload.ptr[k], 'a' + i);
		off += (size_t)rc;
		i++;
	}
	assert_int_equal(i, n);
}

/* Output segments: large payloads go out by reference between inline
 * bytes, in order, across partial writes and buffer compaction. */
static void test_output_segments(void **state)
{
	(void)state;
	broker *b = mkbroker();
	client *s = cl_up(b, MQTT_V311, "s", true, NULL);
	cl_sub(b, s, "t", 0, 0, 0);
	static const size_t lens[] = { 16, 10000, 1500, 5000, 2047, 2048, 1800,
				       3000, 40 };
	enum { N = sizeof(lens) / sizeof(lens[0]) };
	char *pl = malloc(10000);
	assert_non_null(pl);
	uint8_t *all = NULL;
	size_t all_len = 0;
	for (size_t i = 0; i < N; i++) {
		memset(pl, (int)('a' + i), lens[i]);
		broker_publish(b, "t", pl, lens[i], 0, 0, now);
		if (i == 3) {
			/* Write part of the inline head: the next inline bytes
			 * force a compaction under the pending references. */
			all = malloc(20000);
			assert_non_null(all);
			for (int piece = 0; piece < 3; piece++) {
				const uint8_t *d;
				size_t n;
				broker_conn_output(s->c, &d, &n);
				assert_true(n > (piece == 2 ? 100u : 0u));
				if (piece == 2)
					n = 100;
				memcpy(all + all_len, d, n);
				all_len += n;
				broker_conn_written(s->c, n);
			}
		}
	}
	free(pl);
	struct iovec iov[16];
	int niov = broker_conn_output_iov(s->c, iov, 16);
	/* Rest of inline | ref 5000 | inline | ref 2048 | inline | ref 3000 |
	 * inline (the first inline piece and ref 10000 are written). */
	assert_int_equal(niov, 7);
	assert_int_equal(iov[1].iov_len, 5000);
	assert_int_equal(iov[3].iov_len, 2048);
	assert_int_equal(iov[5].iov_len, 3000);
	/* A short iov array gets a prefix. */
	assert_int_equal(broker_conn_output_iov(s->c, iov, 2), 2);
	assert_int_equal(iov[1].iov_len, 5000);
	/* Drain in odd-sized writes through broker_conn_output(). */
	size_t rest;
	uint8_t *snap = conn_output_all(s->c, &rest);
	all = realloc(all, all_len + rest);
	assert_non_null(all);
	size_t got = 0;
	while (broker_conn_pending(s->c)) {
		const uint8_t *d;
		size_t n;
		broker_conn_output(s->c, &d, &n);
		assert_true(n > 0);
		if (n > 777)
			n = 777;
		memcpy(all + all_len + got, d, n);
		got += n;
		broker_conn_written(s->c, n);
	}
	assert_int_equal(got, rest);
	assert_memory_equal(all + all_len, snap, rest);
	check_publishes(all, all_len + rest, lens, N);
	assert_int_equal(broker_conn_output_iov(s->c, iov, 16), 0);
	free(snap);
	free(all);
	cl_close(b, s);
	broker_destroy(b);
}


/* Output handed out and not yet confirmed written stays in place while
 * more output is appended (the I/O layer writes it without its lock):
 * growth copies instead of moving, and the old buffer lives until
 * broker_conn_written(). Under ASan a freed or moved buffer fails here. */
static void test_output_stays_put_while_busy(void **state)
{
	(void)state;
	broker *b = mkbroker();
	client *s = cl_up(b, MQTT_V311, "s", true, NULL);
	cl_sub(b, s, "t", 0, 0, 0);
	enum { N = 20, LEN = 1000 }; /* inline (< 2 KB), 20 KB in all */
	size_t lens[N];
	char pl[LEN];
	for (size_t i = 0; i < N; i++)
		lens[i] = LEN;
	memset(pl, 'a', LEN);
	broker_publish(b, "t", pl, LEN, 0, 0, now);
	struct iovec iov[4];
	assert_int_equal(broker_conn_output_iov(s->c, iov, 4), 1);
	const uint8_t *held = iov[0].iov_base;
	size_t held_len = iov[0].iov_len;
	uint8_t *copy = malloc(held_len);
	assert_non_null(copy);
	memcpy(copy, held, held_len);
	for (size_t i = 1; i < N; i++) {
		memset(pl, (int)('a' + i), LEN);
		broker_publish(b, "t", pl, LEN, 0, 0, now);
	}
	/* Grown several times meanwhile: the held bytes are intact. */
	assert_memory_equal(held, copy, held_len);
	/* Half of them written: the rest, then everything appended since,
	 * come out in order. */
	size_t half = held_len / 2;
	broker_conn_written(s->c, half);
	size_t rest;
	uint8_t *tail = conn_output_all(s->c, &rest);
	broker_conn_written(s->c, rest);
	uint8_t *all = malloc(half + rest);
	assert_non_null(all);
	memcpy(all, copy, half);
	memcpy(all + half, tail, rest);
	check_publishes(all, half + rest, lens, N);
	assert_int_equal(broker_conn_pending(s->c), 0);
	free(all);
	free(tail);
	free(copy);
	cl_close(b, s);
	broker_destroy(b);
}

/* A connection closed with references pending drops them (no leak). */
static void test_output_segments_close(void **state)
{
	(void)state;
	broker *b = mkbroker();
	client *s = cl_up(b, MQTT_V311, "s", true, NULL);
	cl_sub(b, s, "t", 0, 0, 0);
	char pl[4096];
	memset(pl, 'x', sizeof(pl));
	broker_publish(b, "t", pl, sizeof(pl), 0, 0, now);
	broker_publish(b, "t", pl, sizeof(pl), 0, 0, now);
	assert_true(broker_conn_pending(s->c) > 2 * sizeof(pl));
	broker_conn_written(s->c, 10);
	cl_close(b, s);
	broker_destroy(b);
}

/* broker_conn_input_owned(): one whole large PUBLISH is adopted as the
 * message's payload; anything else stays the caller's. */
static void test_input_owned(void **state)
{
	(void)state;
	broker *b = mkbroker();
	client *s = cl_up(b, MQTT_V311, "s", true, NULL);
	client *p = cl_up(b, MQTT_V311, "p", true, NULL);
	cl_sub(b, s, "big", 0, 0, 0);
	size_t plen = 20000;
	uint8_t *pl = malloc(plen);
	assert_non_null(pl);
	for (size_t i = 0; i < plen; i++)
		pl[i] = (uint8_t)(i * 7);
	mqtt_packet pkt;
	memset(&pkt, 0, sizeof(pkt));
	pkt.type = MQTT_PUBLISH;
	pkt.u.publish.topic = mqtt_str_c("big");
	pkt.u.publish.payload = (mqtt_bytes){ pl, (uint32_t)plen };
	long n = mqtt_encode(NULL, 0, MQTT_V311, &pkt);
	assert_true(n > (long)plen);
	for (int round = 0; round < 3; round++) {
		/* Round 1 has the first byte of another packet after this
		 * one: not one whole packet, so not adopted. */
		size_t len = (size_t)n + (round == 1 ? 1 : 0);
		uint8_t *buf = malloc(len);
		assert_non_null(buf);
		assert_int_equal(mqtt_encode(buf, (size_t)n, MQTT_V311, &pkt), n);
		if (round == 1)
			buf[n] = 0xC0; /* PINGREQ, incomplete */
		int taken = -1;
		size_t used = broker_conn_input_owned(b, p->c, buf, len, now,
						      &taken);
		assert_int_equal(used, (size_t)n);
		assert_int_equal(taken, round == 1 ? 0 : 1);
		if (!taken)
			free(buf);
		/* The subscriber gets the payload intact (by reference). */
		mqtt_packet got;
		assert_true(cl_recv(s, &got));
		assert_int_equal(got.type, MQTT_PUBLISH);
		assert_int_equal(got.u.publish.payload.len, plen);
		assert_memory_equal(got.u.publish.payload.ptr, pl, plen);
	}
	/* A retained large message keeps its adopted block alive. */
	pkt.u.publish.retain = true;
	uint8_t *buf = malloc((size_t)n);
	assert_non_null(buf);
	assert_int_equal(mqtt_encode(buf, (size_t)n, MQTT_V311, &pkt), n);
	int taken = 0;
	broker_conn_input_owned(b, p->c, buf, (size_t)n, now, &taken);
	assert_int_equal(taken, 1);
	mqtt_packet got;
	assert_true(cl_recv(s, &got));
	client *late = cl_up(b, MQTT_V311, "late", true, NULL);
	cl_sub(b, late, "big", 0, 0, 0);
	assert_true(cl_recv(late, &got));
	assert_int_equal(got.type, MQTT_PUBLISH);
	assert_true(got.u.publish.retain);
	assert_memory_equal(got.u.publish.payload.ptr, pl, plen);
	free(pl);
	cl_close(b, late);
	cl_close(b, s);
	cl_close(b, p);
	broker_destroy(b);
}

static void test_quota_exceeded(void **state)
{
	(void)state;
	cfg.max_inflight_messages = 200;
	broker *b = mkbroker();
	client *s = cl_up(b, MQTT_V5, "s", true, NULL);
	cl_sub(b, s, "big", 1, 0, 1);
	size_t len = 1u << 20;
	char *pl = malloc(len);
	assert_non_null(pl);
	memset(pl, 'x', len);
	/* Never read: after 64 MiB pending the client is cut off. */
	for (int i = 0; i < 70; i++)
		broker_publish(b, "big", pl, len, 1, 0, now);
	free(pl);
	assert_true(cl_closing(s));
	size_t n;
	uint8_t *d = conn_output_all(s->c, &n);
	/* The last packet is DISCONNECT 0x97 (with a Reason String). */
	size_t off = 0, last = 0;
	while (off < n) {
		uint32_t sz;
		assert_true(mqtt_packet_size(d + off, n - off, &sz) >= 0);
		last = off;
		off += sz;
	}
	assert_int_equal(d[last], 0xE0);
	assert_int_equal(d[last + 2], MQTT_RC_QUOTA_EXCEEDED);
	free(d);
	broker_conn_written(s->c, n);
	assert_int_equal(broker_conn_pending(s->c), 0);
	cl_close(b, s);
	broker_destroy(b);
}

static void test_unknown_auth_method(void **state)
{
	(void)state;
	broker *b = mkbroker();
	client *c = cl_open(b, MQTT_V5);
	mqtt_props pr;
	memset(&pr, 0, sizeof(pr));
	pr.present = MQTT_PROP_BIT(MQTT_PROP_AUTHENTICATION_METHOD);
	pr.auth_method = mqtt_str_c("NOPE");
	cl_connect_props(b, c, "c", &pr);
	mqtt_packet m;
	cl_expect(c, MQTT_CONNACK, &m);
	assert_int_equal(m.u.connack.reason, MQTT_RC_BAD_AUTHENTICATION_METHOD);
	assert_true(cl_closing(c));
	cl_close(b, c);
	broker_destroy(b);
}

/* An authn method over scram_exchange with the RFC 7677 server nonce, so
 * that the RFC's messages can be replayed through the broker. */
static authn_status fixed_start(void **st, authn_io *io, void *ctx)
{
	scram_exchange *x =
		scram_exchange_create(ctx, "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0");
	*st = x;
	return scram_exchange_step(x, io->in.ptr, io->in.len, io->out,
				   io->out_cap, &io->out_len);
}

static authn_status fixed_step(void *st, authn_io *io, void *ctx)
{
	(void)ctx;
	authn_status r = scram_exchange_step(st, io->in.ptr, io->in.len,
					     io->out, io->out_cap,
					     &io->out_len);
	if (r == AUTHN_SUCCESS)
		snprintf(io->user, sizeof(io->user), "%s",
			 scram_exchange_user(st));
	return r;
}

static void fixed_end(void *st, void *ctx)
{
	(void)ctx;
	scram_exchange_destroy(st);
}

static void cl_auth(broker *b, client *cl, const char *data)
{
	mqtt_packet p;
	memset(&p, 0, sizeof(p));
	p.type = MQTT_AUTH;
	p.u.disconnect.reason = MQTT_RC_CONTINUE_AUTHENTICATION;
	p.u.disconnect.props.present =
		MQTT_PROP_BIT(MQTT_PROP_AUTHENTICATION_METHOD) |
		MQTT_PROP_BIT(MQTT_PROP_AUTHENTICATION_DATA);
	p.u.disconnect.props.auth_method = mqtt_str_c(SCRAM_METHOD_NAME);
	p.u.disconnect.props.auth_data =
		(mqtt_bytes){ (const uint8_t *)data, (uint32_t)strlen(data) };
	cl_send(b, cl, &p);
}

static void test_enhanced_auth_scram(void **state)
{
	(void)state;
	broker *b = mkbroker();
	scram_db *db = scram_db_create();
	assert_int_equal(scram_db_add_line(db,
		"user:W22ZaJ0SNY7soEsUEjb6gQ==:4096:"
		"WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:"
		"wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU="), 0);
	authn reg;
	authn_init(&reg);
	authn_method am = { SCRAM_METHOD_NAME, fixed_start, fixed_step,
			    fixed_end, db };
	assert_int_equal(authn_add(&reg, &am), 0);
	assert_int_not_equal(authn_add(&reg, &am), 0); /* name taken */
	broker_set_authn(b, &reg);

	for (int round = 0; round < 2; round++) {
		client *c = cl_open(b, MQTT_V5);
		mqtt_props pr;
		memset(&pr, 0, sizeof(pr));
		pr.present = MQTT_PROP_BIT(MQTT_PROP_AUTHENTICATION_METHOD) |
			     MQTT_PROP_BIT(MQTT_PROP_AUTHENTICATION_DATA);
		pr.auth_method = mqtt_str_c(SCRAM_METHOD_NAME);
		static const char c1[] = "n,,n=user,r=rOprNGfwEbeRWgbNEkqO";
		pr.auth_data = (mqtt_bytes){ (const uint8_t *)c1,
					     (uint32_t)strlen(c1) };
		cl_connect_props(b, c, "sc", &pr);
		mqtt_packet m;
		cl_expect(c, MQTT_AUTH, &m);
		assert_int_equal(m.u.disconnect.reason,
				 MQTT_RC_CONTINUE_AUTHENTICATION);
		assert_int_equal(m.u.disconnect.props.auth_data.len, 86);
		/* Anything but AUTH now is a protocol error; round 1 sends
		 * a bad proof instead. */
		if (round == 1) {
			cl_auth(b, c, "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
				      "p=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=");
			cl_expect(c, MQTT_CONNACK, &m);
			assert_int_equal(m.u.connack.reason,
					 MQTT_RC_NOT_AUTHORIZED);
			assert_true(cl_closing(c));
			cl_close(b, c);
			break;
		}
		cl_auth(b, c, "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
			      "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=");
		cl_expect(c, MQTT_CONNACK, &m);
		assert_int_equal(m.u.connack.reason, 0);
		assert_true(m.u.connack.props.present &
			    MQTT_PROP_BIT(MQTT_PROP_AUTHENTICATION_DATA));
		assert_memory_equal(m.u.connack.props.auth_data.ptr,
				    "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=",
				    46);
		/* Usable afterwards. */
		cl_sub(b, c, "x", 0, 0, 0);
		cl_close(b, c);
	}
	broker_destroy(b);
	scram_db_destroy(db);
}

static void test_sys_counters(void **state)
{
	(void)state;
	cfg.sys_interval = 10;
	broker *b = mkbroker();
	broker_tick(b, now);
	client *s = cl_up(b, MQTT_V311, "s", true, NULL);
	cl_sub(b, s, "$SYS/broker/clients/connected", 0, 0, 0);
	expect_pub(s, "$SYS/broker/clients/connected", "0", 0, true, NULL);
	cl_sub(b, s, "$SYS/broker/subscriptions/count", 0, 0, 0);
	expect_pub(s, "$SYS/broker/subscriptions/count", "0", 0, true, NULL);
	cl_sub(b, s, "$SYS/broker/load/publish/received/1min", 0, 0, 0);
	cl_none(s); /* first interval: no load sample yet */
	cl_sub(b, s, "$SYS/broker/publish/messages/received", 0, 0, 0);
	expect_pub(s, "$SYS/broker/publish/messages/received", "0", 0, true,
		   NULL);
	for (int i = 0; i < 6; i++)
		cl_pub(b, s, "t", "x", 0, false, 0);
	now += 10000;
	broker_tick(b, now);
	static const char *const want[][2] = {
		{ "$SYS/broker/clients/connected", "1" },
		{ "$SYS/broker/publish/messages/received", "6" },
		{ "$SYS/broker/subscriptions/count", "4" },
		/* 6 per 10 s = 36/min, decayed with exp(-10/60) from 0. */
		{ "$SYS/broker/load/publish/received/1min", "5.53" },
	};
	bool seen[4] = { false };
	mqtt_packet m;
	while (cl_recv(s, &m)) {
		assert_int_equal(m.type, MQTT_PUBLISH);
		for (int i = 0; i < 4; i++) {
			if (m.u.publish.topic.len == strlen(want[i][0]) &&
			    memcmp(m.u.publish.topic.ptr, want[i][0],
				   m.u.publish.topic.len) == 0) {
				assert_int_equal(m.u.publish.payload.len,
						 strlen(want[i][1]));
				assert_memory_equal(m.u.publish.payload.ptr,
						    want[i][1],
						    strlen(want[i][1]));
				seen[i] = true;
			}
		}
	}
	for (int i = 0; i < 4; i++)
		assert_true(seen[i]);
	cl_close(b, s);
	broker_destroy(b);
}

static int setup(void **state)
{
	(void)state;
	cfg_reset();
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_connect_pub_sub_qos1, setup),
		cmocka_unit_test_setup(test_MQTT_3_1_0_1_first_packet, setup),
		cmocka_unit_test_setup(test_MQTT_3_1_0_2_second_connect, setup),
		cmocka_unit_test_setup(test_bad_version, setup),
		cmocka_unit_test_setup(test_empty_client_id, setup),
		cmocka_unit_test_setup(test_anonymous_refused, setup),
		cmocka_unit_test_setup(test_overlapping_one_copy, setup),
		cmocka_unit_test_setup(test_qos2_inbound_exactly_once, setup),
		cmocka_unit_test_setup(test_qos2_outbound, setup),
		cmocka_unit_test_setup(test_inflight_window_and_order, setup),
		cmocka_unit_test_setup(test_persistent_session_queue_and_resend, setup),
		cmocka_unit_test_setup(test_queue_limit, setup),
		cmocka_unit_test_setup(test_retained, setup),
		cmocka_unit_test_setup(test_v5_sub_options, setup),
		cmocka_unit_test_setup(test_v311_invalid_filter, setup),
		cmocka_unit_test_setup(test_shared_subscription, setup),
		cmocka_unit_test_setup(test_will, setup),
		cmocka_unit_test_setup(test_will_delay, setup),
		cmocka_unit_test_setup(test_takeover, setup),
		cmocka_unit_test_setup(test_topic_alias, setup),
		cmocka_unit_test_setup(test_props_pass_through, setup),
		cmocka_unit_test_setup(test_message_expiry_in_queue, setup),
		cmocka_unit_test_setup(test_malformed_and_limits, setup),
		cmocka_unit_test_setup(test_keepalive_override, setup),
		cmocka_unit_test_setup(test_session_expiry, setup),
		cmocka_unit_test_setup(test_sys, setup),
		cmocka_unit_test_setup(test_client_max_packet, setup),
		cmocka_unit_test_setup(test_outbound_topic_alias, setup),
		cmocka_unit_test_setup(test_payload_format_invalid, setup),
		cmocka_unit_test_setup(test_problem_and_response_info, setup),
		cmocka_unit_test_setup(test_shared_prefers_online_and_hands_off, setup),
		cmocka_unit_test_setup(test_receive_maximum_exceeded, setup),
		cmocka_unit_test_setup(test_quota_exceeded, setup),
		cmocka_unit_test_setup(test_output_segments, setup),
		cmocka_unit_test_setup(test_route_cache, setup),
		cmocka_unit_test_setup(test_input_owned, setup),
		cmocka_unit_test_setup(test_output_stays_put_while_busy, setup),
		cmocka_unit_test_setup(test_output_segments_close, setup),
		cmocka_unit_test_setup(test_unknown_auth_method, setup),
		cmocka_unit_test_setup(test_enhanced_auth_scram, setup),
		cmocka_unit_test_setup(test_sys_counters, setup),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

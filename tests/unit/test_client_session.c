/*
 * Unit tests of clients/session (sans-IO client protocol) and clients/outq.
 * No sockets: bytes go in through session_input(), come out of the outq,
 * and are checked with the codec's own decoder.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "clients/include/shimmy.h"
#include "clients/outq.h"
#include "clients/session.h"

/* ---- helpers ---- */

typedef struct wire {
	uint8_t buf[1 << 18];
	size_t len, off;
} wire;

/* Moves everything queued in s->out to w (as the socket would). */
static void drain(session *s, wire *w)
{
	struct iovec iov[16];

	while (outq_pending(&s->out)) {
		int k = outq_iov(&s->out, iov, 16);
		size_t n = 0;
		for (int i = 0; i < k; i++) {
			assert_true(w->len + iov[i].iov_len <= sizeof(w->buf));
			memcpy(w->buf + w->len, iov[i].iov_base, iov[i].iov_len);
			w->len += iov[i].iov_len;
			n += iov[i].iov_len;
		}
		outq_consume(&s->out, n);
	}
}

/* Next packet the client sent; its views point into w. */
static void next_pkt(wire *w, mqtt_version v, mqtt_packet *p)
{
	int n = mqtt_decode(w->buf + w->off, w->len - w->off, v, 0, p);
	assert_true(n > 0);
	w->off += (size_t)n;
}

static void no_more(wire *w)
{
	assert_int_equal(w->off, w->len);
}

static size_t enc(uint8_t *buf, mqtt_version v, const mqtt_packet *p)
{
	long n = mqtt_encode(buf, 4096, v, p);
	assert_true(n > 0 && n <= 4096);
	return (size_t)n;
}

/* Feeds one whole packet to the session; returns the event. */
static session_event feed(session *s, mqtt_version v, const mqtt_packet *p, uint64_t now)
{
	uint8_t buf[4096];
	session_event ev;
	size_t n = enc(buf, v, p);
	long k = session_input(s, buf, n, now, &ev);

	assert_int_equal(k, (long)n);
	return ev;
}

static session_cfg cfg_of(mqtt_version v)
{
	session_cfg c;

	memset(&c, 0, sizeof(c));
	c.version = v;
	c.clean_start = true;
	c.keepalive_s = 10;
	c.window = 8;
	c.client_id = "cid";
	return c;
}

static mqtt_packet connack(uint8_t reason, bool sp, const mqtt_props *props)
{
	mqtt_packet p;

	memset(&p, 0, sizeof(p));
	p.type = MQTT_CONNACK;
	p.u.connack.reason = reason;
	p.u.connack.session_present = sp;
	if (props)
		p.u.connack.props = *props;
	return p;
}

static mqtt_packet ack(mqtt_type t, uint16_t pid)
{
	mqtt_packet p;

	memset(&p, 0, sizeof(p));
	p.type = t;
	p.u.ack.packet_id = pid;
	return p;
}

/* Starts s and answers CONNACK (reason 0). */
static void up(session *s, wire *w, bool sp)
{
	mqtt_packet p;
	session_event ev;

	assert_int_equal(session_start(s, 0), 0);
	drain(s, w);
	next_pkt(w, s->cfg.version, &p);
	assert_int_equal(p.type, MQTT_CONNECT);
	p = connack(0, sp, NULL);
	ev = feed(s, s->cfg.version, &p, 0);
	assert_int_equal(ev.type, SEV_CONNACK);
	assert_int_equal(s->state, SESS_CONNECTED);
}

static bool has_shm_prop(const mqtt_props *p)
{
	uint32_t off = 0;
	mqtt_prop pr;

	while (mqtt_props_next(p->raw, &off, &pr) == 1)
		if (pr.id == MQTT_PROP_USER_PROPERTY && pr.str.len == 6 &&
		    !memcmp(pr.str.ptr, "shimmy", 6) && pr.str2.len == 5 &&
		    !memcmp(pr.str2.ptr, "shm/2", 5))
			return true;
	return false;
}

/* ---- connect and the shm negotiation ---- */

static void test_connect_offers_shm(void **state)
{
	session s;
	session_cfg c = cfg_of(MQTT_V5);
	wire *w = calloc(1, sizeof(*w));
	mqtt_packet p;
	mqtt_user_prop echo = { mqtt_str_c("shimmy"), mqtt_str_c("shm/2") };
	mqtt_props cp;
	session_event ev;

	c.offer_shm = true;
	c.session_expiry = 300;
	assert_int_equal(session_init(&s, &c), 0);
	assert_int_equal(session_start(&s, 0), 0);
	drain(&s, w);
	next_pkt(w, MQTT_V5, &p);
	assert_int_equal(p.type, MQTT_CONNECT);
	assert_int_equal(p.u.connect.version, MQTT_V5);
	assert_true(p.u.connect.clean_start);
	assert_int_equal(p.u.connect.keep_alive, 10);
	assert_int_equal(p.u.connect.props.session_expiry, 300);
	assert_true(has_shm_prop(&p.u.connect.props));
	assert_int_equal(p.u.connect.props.user_count, 1);

	/* The broker echoes it: the extension is active. */
	memset(&cp, 0, sizeof(cp));
	cp.user = &echo;
	cp.user_count = 1;
	cp.receive_maximum = 3;
	cp.present = MQTT_PROP_BIT(MQTT_PROP_RECEIVE_MAXIMUM);
	p = connack(0, false, &cp);
	ev = feed(&s, MQTT_V5, &p, 0);
	assert_int_equal(ev.type, SEV_CONNACK);
	assert_int_equal(ev.reason, 0);
	assert_true(s.shm_echoed);
	assert_int_equal(s.server_rm, 3);
	session_fini(&s);
	free(w);
}

static void test_connack_without_echo(void **state)
{
	session s;
	session_cfg c = cfg_of(MQTT_V5);
	wire *w = calloc(1, sizeof(*w));
	mqtt_user_prop other = { mqtt_str_c("shimmy"), mqtt_str_c("shm/9") };
	mqtt_props cp;
	mqtt_packet p;

	c.offer_shm = true;
	assert_int_equal(session_init(&s, &c), 0);
	assert_int_equal(session_start(&s, 0), 0);
	memset(&cp, 0, sizeof(cp));
	cp.user = &other; /* a version we did not offer is not an echo */
	cp.user_count = 1;
	p = connack(0, false, &cp);
	feed(&s, MQTT_V5, &p, 0);
	assert_int_equal(s.state, SESS_CONNECTED);
	assert_false(s.shm_echoed);
	session_fini(&s);
	free(w);
}

static void test_connect_v311_no_props(void **state)
{
	session s;
	session_cfg c = cfg_of(MQTT_V311);
	wire *w = calloc(1, sizeof(*w));
	mqtt_packet p;

	c.offer_shm = true; /* ignored: 3.1.1 has no properties */
	c.username = "u";
	c.password = (const uint8_t *)"pw";
	c.password_len = 2;
	c.will = true;
	c.will_topic = "w/t";
	c.will_payload = (const uint8_t *)"bye";
	c.will_len = 3;
	c.will_qos = 1;
	assert_int_equal(session_init(&s, &c), 0);
	assert_int_equal(session_start(&s, 0), 0);
	drain(&s, w);
	next_pkt(w, MQTT_V311, &p);
	assert_int_equal(p.u.connect.version, MQTT_V311);
	assert_true(p.u.connect.will);
	assert_int_equal(p.u.connect.will_qos, 1);
	assert_memory_equal(p.u.connect.will_topic.ptr, "w/t", 3);
	assert_true(p.u.connect.has_username && p.u.connect.has_password);
	assert_memory_equal(p.u.connect.client_id.ptr, "cid", 3);
	session_fini(&s);
	free(w);
}

static void test_connack_refused(void **state)
{
	session s;
	session_cfg c = cfg_of(MQTT_V311);
	mqtt_packet p;
	session_event ev;

	assert_int_equal(session_init(&s, &c), 0);
	assert_int_equal(session_start(&s, 0), 0);
	p = connack(MQTT_CONNACK_V3_NOT_AUTHORIZED, false, NULL);
	ev = feed(&s, MQTT_V311, &p, 0);
	assert_int_equal(ev.type, SEV_CONNACK);
	assert_int_equal(ev.reason, 5);
	assert_int_equal(s.state, SESS_IDLE);
	session_fini(&s);
}

/* [MQTT-3.2.0-1]: the first packet from the server is CONNACK. */
static void test_publish_before_connack_is_error(void **state)
{
	session s;
	session_cfg c = cfg_of(MQTT_V5);
	uint8_t buf[64];
	session_event ev;
	mqtt_packet p;

	assert_int_equal(session_init(&s, &c), 0);
	assert_int_equal(session_start(&s, 0), 0);
	memset(&p, 0, sizeof(p));
	p.type = MQTT_PUBLISH;
	p.u.publish.topic = mqtt_str_c("t");
	size_t n = enc(buf, MQTT_V5, &p);
	assert_int_equal(session_input(&s, buf, n, 0, &ev), SHIMMY_ERR_PROTOCOL);
	assert_int_equal(ev.reason, MQTT_RC_PROTOCOL_ERROR);
	session_fini(&s);
}

/* [MQTT-3.3.2-9]: no Topic Alias beyond the maximum we sent (0). */
static void test_topic_alias_rejected(void **state)
{
	session s;
	session_cfg c = cfg_of(MQTT_V5);
	wire *w = calloc(1, sizeof(*w));
	uint8_t buf[64];
	session_event ev;
	mqtt_packet p;

	assert_int_equal(session_init(&s, &c), 0);
	up(&s, w, false);
	memset(&p, 0, sizeof(p));
	p.type = MQTT_PUBLISH;
	p.u.publish.topic = mqtt_str_c("t");
	p.u.publish.props.topic_alias = 1;
	p.u.publish.props.present = MQTT_PROP_BIT(MQTT_PROP_TOPIC_ALIAS);
	size_t n = enc(buf, MQTT_V5, &p);
	assert_int_equal(session_input(&s, buf, n, 0, &ev), SHIMMY_ERR_PROTOCOL);
	assert_int_equal(ev.reason, MQTT_RC_TOPIC_ALIAS_INVALID);
	session_fini(&s);
	free(w);
}

/* ---- publishing ---- */

static void test_publish_qos0(void **state)
{
	session s;
	session_cfg c = cfg_of(MQTT_V5);
	wire *w = calloc(1, sizeof(*w));
	mqtt_packet p;

	assert_int_equal(session_init(&s, &c), 0);
	assert_int_equal(session_publish(&s, "a/b", "x", 1, 0, 0, NULL, 0),
			 SHIMMY_ERR_NOT_CONNECTED);
	up(&s, w, false);
	assert_int_equal(session_publish(&s, "a/+", "x", 1, 0, 0, NULL, 0), SHIMMY_ERR_INVALID);
	assert_int_equal(session_publish(&s, "", "x", 1, 0, 0, NULL, 0), SHIMMY_ERR_INVALID);
	assert_int_equal(session_publish(&s, "a/b", "x", 1, 3, 0, NULL, 0), SHIMMY_ERR_INVALID);
	assert_int_equal(session_publish(&s, "a/b", "hello", 5, 0, SHIMMY_PUB_RETAIN, NULL, 0), 0);
	drain(&s, w);
	next_pkt(w, MQTT_V5, &p);
	assert_int_equal(p.type, MQTT_PUBLISH);
	assert_int_equal(p.u.publish.qos, 0);
	assert_true(p.u.publish.retain);
	assert_memory_equal(p.u.publish.topic.ptr, "a/b", 3);
	assert_int_equal(p.u.publish.payload.len, 5);
	assert_memory_equal(p.u.publish.payload.ptr, "hello", 5);
	no_more(w);
	session_fini(&s);
	free(w);
}

static void test_publish_qos1_flow(void **state)
{
	session s;
	session_cfg c = cfg_of(MQTT_V311);
	wire *w = calloc(1, sizeof(*w));
	mqtt_packet p;
	session_event ev;

	assert_int_equal(session_init(&s, &c), 0);
	up(&s, w, false);
	assert_int_equal(session_publish(&s, "t", "abc", 3, 1, 0, NULL, 0), 0);
	assert_int_equal(s.inflight, 1);
	drain(&s, w);
	next_pkt(w, MQTT_V311, &p);
	assert_int_equal(p.u.publish.qos, 1);
	assert_false(p.u.publish.dup);
	uint16_t pid = p.u.publish.packet_id;
	assert_int_not_equal(pid, 0);
	/* A PUBACK for another id changes nothing. */
	p = ack(MQTT_PUBACK, (uint16_t)(pid + 1));
	ev = feed(&s, MQTT_V311, &p, 0);
	assert_int_equal(ev.type, SEV_NONE);
	assert_int_equal(s.inflight, 1);
	p = ack(MQTT_PUBACK, pid);
	ev = feed(&s, MQTT_V311, &p, 0);
	assert_int_equal(ev.type, SEV_PUBDONE);
	assert_int_equal(ev.pid, pid);
	assert_int_equal(s.inflight, 0);
	session_fini(&s);
	free(w);
}

static void test_publish_qos2_flow(void **state)
{
	session s;
	session_cfg c = cfg_of(MQTT_V5);
	wire *w = calloc(1, sizeof(*w));
	mqtt_packet p;
	session_event ev;

	assert_int_equal(session_init(&s, &c), 0);
	up(&s, w, false);
	assert_int_equal(session_publish(&s, "t", "abc", 3, 2, 0, NULL, 0), 0);
	drain(&s, w);
	next_pkt(w, MQTT_V5, &p);
	assert_int_equal(p.u.publish.qos, 2);
	uint16_t pid = p.u.publish.packet_id;
	p = ack(MQTT_PUBREC, pid);
	ev = feed(&s, MQTT_V5, &p, 0);
	assert_int_equal(ev.type, SEV_NONE);
	drain(&s, w);
	next_pkt(w, MQTT_V5, &p);
	assert_int_equal(p.type, MQTT_PUBREL);
	assert_int_equal(p.u.ack.packet_id, pid);
	p = ack(MQTT_PUBCOMP, pid);
	ev = feed(&s, MQTT_V5, &p, 0);
	assert_int_equal(ev.type, SEV_PUBDONE);
	assert_int_equal(s.inflight, 0);
	/* The lbuf went back to the pool: nothing leaks (ASan checks). */
	assert_int_equal(s.npool, 1);
	session_fini(&s);
	free(w);
}

static void test_window_full(void **state)
{
	session s;
	session_cfg c = cfg_of(MQTT_V5);
	wire *w = calloc(1, sizeof(*w));
	mqtt_packet p;
	mqtt_props cp;

	c.window = 8;
	assert_int_equal(session_init(&s, &c), 0);
	assert_int_equal(session_start(&s, 0), 0);
	drain(&s, w);
	next_pkt(w, MQTT_V5, &p);
	/* The broker's Receive Maximum (2) lowers our window (8). */
	memset(&cp, 0, sizeof(cp));
	cp.receive_maximum = 2;
	cp.present = MQTT_PROP_BIT(MQTT_PROP_RECEIVE_MAXIMUM);
	p = connack(0, false, &cp);
	feed(&s, MQTT_V5, &p, 0);
	assert_int_equal(session_publish(&s, "t", "1", 1, 1, 0, NULL, 0), 0);
	assert_int_equal(session_publish(&s, "t", "2", 1, 2, 0, NULL, 0), 0);
	assert_false(session_window_open(&s));
	assert_int_equal(session_publish(&s, "t", "3", 1, 1, 0, NULL, 0), SHIMMY_ERR_AGAIN);
	/* QoS 0 is not limited by the window. */
	assert_int_equal(session_publish(&s, "t", "4", 1, 0, 0, NULL, 0), 0);
	drain(&s, w);
	next_pkt(w, MQTT_V5, &p);
	uint16_t pid1 = p.u.publish.packet_id;
	next_pkt(w, MQTT_V5, &p);
	next_pkt(w, MQTT_V5, &p);
	no_more(w);
	p = ack(MQTT_PUBACK, pid1);
	feed(&s, MQTT_V5, &p, 0);
	assert_true(session_window_open(&s));
	session_fini(&s);
	free(w);
}

/* Maximum QoS and Retain Available from CONNACK [MQTT-3.2.2-11,14]. */
static void test_server_limits(void **state)
{
	session s;
	session_cfg c = cfg_of(MQTT_V5);
	wire *w = calloc(1, sizeof(*w));
	mqtt_packet p;
	mqtt_props cp;

	assert_int_equal(session_init(&s, &c), 0);
	assert_int_equal(session_start(&s, 0), 0);
	memset(&cp, 0, sizeof(cp));
	cp.maximum_qos = 1;
	cp.retain_available = 0;
	cp.maximum_packet_size = 64;
	cp.present = MQTT_PROP_BIT(MQTT_PROP_MAXIMUM_QOS) |
		     MQTT_PROP_BIT(MQTT_PROP_RETAIN_AVAILABLE) |
		     MQTT_PROP_BIT(MQTT_PROP_MAXIMUM_PACKET_SIZE);
	p = connack(0, false, &cp);
	feed(&s, MQTT_V5, &p, 0);
	assert_int_equal(session_publish(&s, "t", "x", 1, 2, 0, NULL, 0), SHIMMY_ERR_UNSUPPORTED);
	assert_int_equal(session_publish(&s, "t", "x", 1, 0, SHIMMY_PUB_RETAIN, NULL, 0),
			 SHIMMY_ERR_UNSUPPORTED);
	char big[100] = { 0 };
	assert_int_equal(session_publish(&s, "t", big, sizeof(big), 0, 0, NULL, 0),
			 SHIMMY_ERR_TOO_LARGE);
	assert_int_equal(session_publish(&s, "t", big, sizeof(big), 1, 0, NULL, 0),
			 SHIMMY_ERR_TOO_LARGE);
	assert_int_equal(s.inflight, 0);
	assert_int_equal(session_publish(&s, "t", big, 10, 1, 0, NULL, 0), 0);
	session_fini(&s);
	free(w);
}

/* The loan path must produce exactly what the codec encodes. */
static void check_loan_bytes(mqtt_version v, int qos, const mqtt_props *props, size_t len)
{
	session s;
	session_cfg c = cfg_of(v);
	wire *w = calloc(1, sizeof(*w));
	uint8_t *buf, *payload = malloc(len ? len : 1), *ref = malloc(len + 4096);
	mqtt_packet p;

	for (size_t i = 0; i < len; i++)
		payload[i] = (uint8_t)(i * 7 + 1);
	assert_int_equal(session_init(&s, &c), 0);
	up(&s, w, false);
	w->len = w->off = 0;
	assert_int_equal(session_loan(&s, "loan/topic", len, props, &buf), 0);
	assert_int_equal((uintptr_t)buf % 8, 0);
	memcpy(buf, payload, len);
	assert_int_equal(session_commit(&s, buf, qos, SHIMMY_PUB_RETAIN, 0), 0);
	drain(&s, w);

	memset(&p, 0, sizeof(p));
	p.type = MQTT_PUBLISH;
	p.u.publish.qos = (uint8_t)qos;
	p.u.publish.retain = true;
	p.u.publish.packet_id = qos ? 1 : 0;
	p.u.publish.topic = mqtt_str_c("loan/topic");
	p.u.publish.payload = (mqtt_bytes){ payload, (uint32_t)len };
	if (props)
		p.u.publish.props = *props;
	long n = mqtt_encode(ref, len + 4096, v, &p);
	assert_int_equal((long)w->len, n);
	assert_memory_equal(w->buf, ref, (size_t)n);
	session_fini(&s);
	free(payload);
	free(ref);
	free(w);
}

static void test_loan_matches_encoder(void **state)
{
	mqtt_props pr;
	mqtt_user_prop up1 = { mqtt_str_c("k"), mqtt_str_c("v") };
	static const size_t lens[] = { 0, 1, 100, 127 - 14, 200, 16383, 16384, 100000 };

	memset(&pr, 0, sizeof(pr));
	pr.user = &up1;
	pr.user_count = 1;
	pr.content_type = mqtt_str_c("text/plain");
	pr.present = MQTT_PROP_BIT(MQTT_PROP_CONTENT_TYPE);
	for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		for (int qos = 0; qos <= 2; qos++) {
			check_loan_bytes(MQTT_V311, qos, NULL, lens[i]);
			check_loan_bytes(MQTT_V5, qos, NULL, lens[i]);
			check_loan_bytes(MQTT_V5, qos, &pr, lens[i]);
		}
	}
}

static void test_loan_abort_and_unknown(void **state)
{
	session s;
	session_cfg c = cfg_of(MQTT_V5);
	wire *w = calloc(1, sizeof(*w));
	uint8_t *a, *b, other[8];

	assert_int_equal(session_init(&s, &c), 0);
	up(&s, w, false);
	assert_int_equal(session_loan(&s, "t", 10, NULL, &a), 0);
	assert_int_equal(session_loan(&s, "t", 20, NULL, &b), 0); /* two open at once */
	assert_int_equal(session_commit(&s, other, 0, 0, 0), SHIMMY_ERR_INVALID);
	session_loan_abort(&s, a);
	assert_int_equal(session_commit(&s, a, 0, 0, 0), SHIMMY_ERR_INVALID);
	memset(b, 'x', 20);
	assert_int_equal(session_commit(&s, b, 1, 0, 0), 0);
	assert_int_equal(session_loan(&s, "a/#", 1, NULL, &a), SHIMMY_ERR_INVALID);
	session_fini(&s);
	free(w);
}

/* ---- receiving ---- */

static void test_receive_qos1_acked(void **state)
{
	session s;
	session_cfg c = cfg_of(MQTT_V311);
	wire *w = calloc(1, sizeof(*w));
	mqtt_packet p;
	session_event ev;

	assert_int_equal(session_init(&s, &c), 0);
	up(&s, w, false);
	memset(&p, 0, sizeof(p));
	p.type = MQTT_PUBLISH;
	p.u.publish.qos = 1;
	p.u.publish.packet_id = 77;
	p.u.publish.topic = mqtt_str_c("in/t");
	p.u.publish.payload = (mqtt_bytes){ (const uint8_t *)"pl", 2 };
	ev = feed(&s, MQTT_V311, &p, 0);
	assert_int_equal(ev.type, SEV_MESSAGE);
	assert_int_equal(ev.msg.payload.len, 2);
	drain(&s, w);
	next_pkt(w, MQTT_V311, &p);
	assert_int_equal(p.type, MQTT_PUBACK);
	assert_int_equal(p.u.ack.packet_id, 77);
	session_fini(&s);
	free(w);
}

/* QoS 2 receive: delivered once even when the broker resends [MQTT-4.3.3]. */
static void test_receive_qos2_once(void **state)
{
	session s;
	session_cfg c = cfg_of(MQTT_V5);
	wire *w = calloc(1, sizeof(*w));
	mqtt_packet p, pub;
	session_event ev;

	assert_int_equal(session_init(&s, &c), 0);
	up(&s, w, false);
	memset(&pub, 0, sizeof(pub));
	pub.type = MQTT_PUBLISH;
	pub.u.publish.qos = 2;
	pub.u.publish.packet_id = 9;
	pub.u.publish.topic = mqtt_str_c("q2");
	ev = feed(&s, MQTT_V5, &pub, 0);
	assert_int_equal(ev.type, SEV_MESSAGE);
	pub.u.publish.dup = true;
	ev = feed(&s, MQTT_V5, &pub, 0);
	assert_int_equal(ev.type, SEV_NONE); /* duplicate: not delivered */
	drain(&s, w);
	next_pkt(w, MQTT_V5, &p);
	assert_int_equal(p.type, MQTT_PUBREC);
	next_pkt(w, MQTT_V5, &p);
	assert_int_equal(p.type, MQTT_PUBREC);
	p = ack(MQTT_PUBREL, 9);
	feed(&s, MQTT_V5, &p, 0);
	drain(&s, w);
	next_pkt(w, MQTT_V5, &p);
	assert_int_equal(p.type, MQTT_PUBCOMP);
	assert_int_equal(p.u.ack.reason, 0);
	/* After PUBREL the id is free: a new message with it is delivered. */
	pub.u.publish.dup = false;
	ev = feed(&s, MQTT_V5, &pub, 0);
	assert_int_equal(ev.type, SEV_MESSAGE);
	/* An unknown PUBREL gets PUBCOMP 0x92 (v5). */
	p = ack(MQTT_PUBREL, 1234);
	feed(&s, MQTT_V5, &p, 0);
	drain(&s, w);
	next_pkt(w, MQTT_V5, &p); /* PUBREC of the last publish */
	next_pkt(w, MQTT_V5, &p);
	assert_int_equal(p.type, MQTT_PUBCOMP);
	assert_int_equal(p.u.ack.reason, MQTT_RC_PACKET_IDENTIFIER_NOT_FOUND);
	session_fini(&s);
	free(w);
}

/* Input split at every byte boundary: need-more until whole. */
static void test_input_split_every_byte(void **state)
{
	session s;
	session_cfg c = cfg_of(MQTT_V5);
	uint8_t stream[512];
	size_t total = 0, n;
	mqtt_packet p;
	session_event ev;

	memset(&p, 0, sizeof(p));
	p = connack(0, false, NULL);
	total += enc(stream + total, MQTT_V5, &p);
	memset(&p, 0, sizeof(p));
	p.type = MQTT_PUBLISH;
	p.u.publish.topic = mqtt_str_c("split/topic");
	p.u.publish.payload = (mqtt_bytes){ (const uint8_t *)"payload-bytes", 13 };
	total += enc(stream + total, MQTT_V5, &p);
	n = total;

	for (size_t cut = 0; cut <= n; cut++) {
		int msgs = 0;
		size_t have = 0, off = 0;
		assert_int_equal(session_init(&s, &c), 0);
		assert_int_equal(session_start(&s, 0), 0);
		/* deliver [0,cut) then [cut,n) */
		for (int step = 0; step < 2; step++) {
			have = step == 0 ? cut : n;
			for (;;) {
				long k = session_input(&s, stream + off, have - off, 0, &ev);
				assert_true(k >= 0);
				if (k == 0)
					break;
				off += (size_t)k;
				if (ev.type == SEV_MESSAGE) {
					msgs++;
					assert_int_equal(ev.msg.payload.len, 13);
				}
			}
		}
		assert_int_equal(off, n);
		assert_int_equal(msgs, 1);
		session_fini(&s);
	}
}

/* ---- reconnect: resend and resubscribe ---- */

static void test_resend_after_reconnect(void **state)
{
	session s;
	session_cfg c = cfg_of(MQTT_V311);
	wire *w = calloc(1, sizeof(*w));
	mqtt_packet p;
	uint16_t pid1, pid2;

	c.clean_start = false;
	assert_int_equal(session_init(&s, &c), 0);
	up(&s, w, false);
	assert_int_equal(session_publish(&s, "r", "one", 3, 1, 0, NULL, 0), 0);
	assert_int_equal(session_publish(&s, "r", "two", 3, 2, 0, NULL, 0), 0);
	drain(&s, w);
	next_pkt(w, MQTT_V311, &p);
	pid1 = p.u.publish.packet_id;
	next_pkt(w, MQTT_V311, &p);
	pid2 = p.u.publish.packet_id;
	session_lost(&s);
	/* Made while down: kept and sent after CONNACK, without DUP. */
	assert_int_equal(session_publish(&s, "r", "three", 5, 1, 0, NULL, 0), 0);
	assert_int_equal(session_publish(&s, "r", "zero", 4, 0, 0, NULL, 0),
			 SHIMMY_ERR_NOT_CONNECTED);

	up(&s, w, true); /* session resumed */
	drain(&s, w);
	next_pkt(w, MQTT_V311, &p);
	assert_int_equal(p.u.publish.packet_id, pid1);
	assert_true(p.u.publish.dup); /* [MQTT-3.3.1-1] */
	assert_memory_equal(p.u.publish.payload.ptr, "one", 3);
	next_pkt(w, MQTT_V311, &p);
	assert_int_equal(p.u.publish.packet_id, pid2);
	assert_true(p.u.publish.dup);
	next_pkt(w, MQTT_V311, &p);
	assert_false(p.u.publish.dup);
	assert_memory_equal(p.u.publish.payload.ptr, "three", 5);
	no_more(w);

	/* PUBREC for pid2, then the connection drops: PUBREL is resent. */
	p = ack(MQTT_PUBREC, pid2);
	feed(&s, MQTT_V311, &p, 0);
	drain(&s, w);
	next_pkt(w, MQTT_V311, &p);
	assert_int_equal(p.type, MQTT_PUBREL);
	session_lost(&s);
	up(&s, w, true);
	drain(&s, w);
	next_pkt(w, MQTT_V311, &p);
	assert_int_equal(p.type, MQTT_PUBLISH); /* pid1, still unacked */
	next_pkt(w, MQTT_V311, &p);
	assert_int_equal(p.type, MQTT_PUBREL);
	assert_int_equal(p.u.ack.packet_id, pid2);
	next_pkt(w, MQTT_V311, &p);
	assert_int_equal(p.type, MQTT_PUBLISH); /* three */
	no_more(w);
	session_fini(&s);
	free(w);
}

static void test_resubscribe_when_not_resumed(void **state)
{
	session s;
	session_cfg c = cfg_of(MQTT_V5);
	wire *w = calloc(1, sizeof(*w));
	mqtt_packet p;
	mqtt_topic_entry e;
	uint16_t pid;
	uint32_t off = 0;
	session_event ev;

	c.resubscribe = true;
	assert_int_equal(session_init(&s, &c), 0);
	assert_int_equal(session_subscribe(&s, "a/#", 1, 0, &pid), SHIMMY_ERR_NOT_CONNECTED);
	up(&s, w, false);
	assert_int_equal(session_subscribe(&s, "a/#", 1, 0, &pid), 0);
	assert_int_equal(session_subscribe(&s, "b/+", 2 | MQTT_SUBOPT_NO_LOCAL, 0, &pid), 0);
	assert_int_equal(session_unsubscribe(&s, "a/#", 0, &pid), 0);
	assert_int_equal(session_subscribe(&s, "a/#/x", 0, 0, &pid), SHIMMY_ERR_INVALID);
	drain(&s, w);
	next_pkt(w, MQTT_V5, &p);
	assert_int_equal(p.type, MQTT_SUBSCRIBE);
	next_pkt(w, MQTT_V5, &p);
	assert_int_equal(p.type, MQTT_SUBSCRIBE);
	next_pkt(w, MQTT_V5, &p);
	assert_int_equal(p.type, MQTT_UNSUBSCRIBE);
	uint16_t unsub_pid = p.u.subscribe.packet_id;
	memset(&p, 0, sizeof(p));
	p.type = MQTT_UNSUBACK;
	p.u.suback.packet_id = unsub_pid;
	p.u.suback.reasons = (mqtt_bytes){ (const uint8_t *)"\x00", 1 };
	ev = feed(&s, MQTT_V5, &p, 0);
	assert_int_equal(ev.type, SEV_UNSUBACK);
	assert_int_equal(ev.pid, unsub_pid);

	session_lost(&s);
	up(&s, w, false);
	drain(&s, w);
	next_pkt(w, MQTT_V5, &p);
	assert_int_equal(p.type, MQTT_SUBSCRIBE);
	assert_int_equal(p.u.subscribe.count, 1);
	assert_int_equal(mqtt_topic_entry_next(&p.u.subscribe, MQTT_SUBSCRIBE, &off, &e), 1);
	assert_memory_equal(e.filter.ptr, "b/+", 3);
	assert_int_equal(e.options, 2 | MQTT_SUBOPT_NO_LOCAL);
	/* The SUBACK of an internal resubscribe raises no event. */
	uint16_t rpid = p.u.subscribe.packet_id;
	memset(&p, 0, sizeof(p));
	p.type = MQTT_SUBACK;
	p.u.suback.packet_id = rpid;
	p.u.suback.reasons = (mqtt_bytes){ (const uint8_t *)"\x02", 1 };
	ev = feed(&s, MQTT_V5, &p, 0);
	assert_int_equal(ev.type, SEV_NONE);

	/* A resumed session is not resubscribed. */
	session_lost(&s);
	s.cfg.clean_start = false;
	up(&s, w, true);
	drain(&s, w);
	no_more(w);
	session_fini(&s);
	free(w);
}

/* ---- keepalive ---- */

static void test_keepalive(void **state)
{
	session s;
	session_cfg c = cfg_of(MQTT_V311);
	wire *w = calloc(1, sizeof(*w));
	mqtt_packet p;

	c.keepalive_s = 2;
	assert_int_equal(session_init(&s, &c), 0);
	up(&s, w, false);
	assert_int_equal(session_next_timeout(&s, 0), 2000);
	assert_int_equal(session_tick(&s, 1999), 0);
	drain(&s, w);
	no_more(w);
	assert_int_equal(session_tick(&s, 2000), 0);
	drain(&s, w);
	next_pkt(w, MQTT_V311, &p);
	assert_int_equal(p.type, MQTT_PINGREQ);
	assert_int_equal(session_next_timeout(&s, 2500), 1500);
	memset(&p, 0, sizeof(p));
	p.type = MQTT_PINGRESP;
	feed(&s, MQTT_V311, &p, 2100);
	assert_false(s.ping_out);
	assert_int_equal(session_tick(&s, 4000), 0); /* second PINGREQ */
	assert_int_equal(session_tick(&s, 5999), 0);
	assert_int_equal(session_tick(&s, 6000), SHIMMY_ERR_TIMEOUT);
	session_fini(&s);
	free(w);
}

/* ---- outq ---- */

static int released;

static void count_release(void *obj, void *ctx)
{
	released++;
}

static void test_outq_mixed_segments(void **state)
{
	outq q;
	struct iovec iov[8];
	static const uint8_t ext[] = "EXTERNAL";

	released = 0;
	outq_init(&q, count_release, NULL);
	assert_int_equal(outq_append(&q, "ab", 2), 0);
	assert_int_equal(outq_append(&q, "cd", 2), 0); /* merges with "ab" */
	assert_int_equal(outq_append_ext(&q, ext, 8, (void *)ext), 0);
	assert_int_equal(outq_append(&q, "ef", 2), 0);
	assert_int_equal(outq_pending(&q), 14);
	assert_int_equal(outq_iov(&q, iov, 8), 3);
	assert_int_equal(iov[0].iov_len, 4);
	assert_memory_equal(iov[0].iov_base, "abcd", 4);
	assert_ptr_equal(iov[1].iov_base, ext);
	/* A partial write through the middle of the external segment. */
	outq_consume(&q, 7);
	assert_int_equal(released, 0);
	assert_int_equal(outq_iov(&q, iov, 8), 2);
	assert_int_equal(iov[0].iov_len, 5);
	assert_memory_equal(iov[0].iov_base, "ERNAL", 5);
	assert_memory_equal(iov[1].iov_base, "ef", 2);
	outq_consume(&q, 5);
	assert_int_equal(released, 1);
	assert_int_equal(outq_pending(&q), 2);
	outq_consume(&q, 2);
	assert_int_equal(outq_pending(&q), 0);
	/* Reset runs the hooks of what was never written. */
	assert_int_equal(outq_append_ext(&q, ext, 8, (void *)ext), 0);
	outq_reset(&q);
	assert_int_equal(released, 2);
	for (int i = 0; i < 1000; i++)
		assert_int_equal(outq_append(&q, "0123456789", 10), 0);
	assert_int_equal(outq_pending(&q), 10000);
	outq_fini(&q);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_connect_offers_shm),
		cmocka_unit_test(test_connack_without_echo),
		cmocka_unit_test(test_connect_v311_no_props),
		cmocka_unit_test(test_connack_refused),
		cmocka_unit_test(test_publish_before_connack_is_error),
		cmocka_unit_test(test_topic_alias_rejected),
		cmocka_unit_test(test_publish_qos0),
		cmocka_unit_test(test_publish_qos1_flow),
		cmocka_unit_test(test_publish_qos2_flow),
		cmocka_unit_test(test_window_full),
		cmocka_unit_test(test_server_limits),
		cmocka_unit_test(test_loan_matches_encoder),
		cmocka_unit_test(test_loan_abort_and_unknown),
		cmocka_unit_test(test_receive_qos1_acked),
		cmocka_unit_test(test_receive_qos2_once),
		cmocka_unit_test(test_input_split_every_byte),
		cmocka_unit_test(test_resend_after_reconnect),
		cmocka_unit_test(test_resubscribe_when_not_resumed),
		cmocka_unit_test(test_keepalive),
		cmocka_unit_test(test_outq_mixed_segments),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

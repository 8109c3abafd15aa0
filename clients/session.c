/*
 * clients/session.c — sans-IO client protocol state (see session.h).
 *
 * Decode (mqtt_decode), validate against the session state, apply: each
 * packet type has its own small handler; output goes to s->out.
 */
#include "clients/session.h"

#include <stdlib.h>
#include <string.h>

#include "clients/include/shimmy.h"
#include "mqtt/topic.h"

#define POOL_KEEP 16
#define SHM_KEY "shimmy"
#define SHM_VALUE "shm/2" /* shmpath/segment.h SHIMMY_SHM_PROTOCOL */

/* ------------------------------------------------------------ lbuf pool */

static session_lbuf *lbuf_get(session *s, size_t need)
{
	session_lbuf **pp = &s->pool, *lb;

	for (; *pp; pp = &(*pp)->next)
		if ((*pp)->cap >= need)
			break;
	if (!*pp)
		pp = s->pool ? &s->pool : NULL;
	if (pp) {
		lb = *pp;
		*pp = lb->next;
		s->npool--;
	} else {
		lb = calloc(1, sizeof(*lb));
		if (!lb)
			return NULL;
	}
	if (lb->cap < need) {
		uint8_t *m = realloc(lb->mem, need);
		if (!m) {
			free(lb->mem);
			free(lb);
			return NULL;
		}
		lb->mem = m;
		lb->cap = need;
	}
	lb->next = NULL;
	lb->refs = 0;
	return lb;
}

static void lbuf_put(session *s, session_lbuf *lb)
{
	if (s->npool >= POOL_KEEP) {
		free(lb->mem);
		free(lb);
		return;
	}
	lb->next = s->pool;
	s->pool = lb;
	s->npool++;
}

static void lbuf_unref(session *s, session_lbuf *lb)
{
	if (lb && --lb->refs == 0)
		lbuf_put(s, lb);
}

/* outq release hook: the socket is done with an lbuf. */
static void on_out_release(void *obj, void *ctx)
{
	lbuf_unref(ctx, obj);
}

/* ------------------------------------------------------------ lifecycle */

int session_init(session *s, const session_cfg *cfg)
{
	memset(s, 0, sizeof(*s));
	if (!cfg || cfg->window == 0 ||
	    (cfg->version != MQTT_V311 && cfg->version != MQTT_V5))
		return SHIMMY_ERR_INVALID;
	s->cfg = *cfg;
	s->flights = calloc(cfg->window, sizeof(*s->flights));
	s->rx_qos2 = calloc(65536 / 64, sizeof(uint64_t));
	if (!s->flights || !s->rx_qos2) {
		free(s->flights);
		free(s->rx_qos2);
		return SHIMMY_ERR_NOMEM;
	}
	outq_init(&s->out, on_out_release, s);
	s->next_pid = 0;
	return 0;
}

static void free_list(session_lbuf *lb)
{
	while (lb) {
		session_lbuf *n = lb->next;
		free(lb->mem);
		free(lb);
		lb = n;
	}
}

void session_fini(session *s)
{
	outq_fini(&s->out);
	for (uint16_t i = 0; s->flights && i < s->cfg.window; i++)
		if (s->flights[i].pid)
			lbuf_unref(s, s->flights[i].lb);
	free(s->flights);
	free(s->rx_qos2);
	for (size_t i = 0; i < s->nsubs; i++)
		free(s->subs[i].filter);
	free(s->subs);
	free_list(s->pool);
	free_list(s->open);
	memset(s, 0, sizeof(*s));
}

/* ------------------------------------------------------------- encoding */

static int send_pkt(session *s, const mqtt_packet *pkt, uint64_t now_ms)
{
	long n = mqtt_encode(NULL, 0, s->cfg.version, pkt);
	uint8_t *w;

	if (n < 0)
		return SHIMMY_ERR_INVALID;
	if (s->server_max_packet && (unsigned long)n > s->server_max_packet)
		return SHIMMY_ERR_TOO_LARGE;
	w = outq_reserve(&s->out, (size_t)n);
	if (!w)
		return SHIMMY_ERR_NOMEM;
	mqtt_encode(w, (size_t)n, s->cfg.version, pkt);
	outq_commit(&s->out, (size_t)n);
	s->last_tx_ms = now_ms;
	return 0;
}

static int send_ack(session *s, mqtt_type t, uint16_t pid, uint8_t reason, uint64_t now_ms)
{
	mqtt_packet p;

	memset(&p, 0, sizeof(p));
	p.type = t;
	p.u.ack.packet_id = pid;
	p.u.ack.reason = s->cfg.version == MQTT_V5 ? reason : 0;
	return send_pkt(s, &p, now_ms);
}

int session_start(session *s, uint64_t now_ms)
{
	mqtt_packet p;
	mqtt_connect *c = &p.u.connect;
	mqtt_user_prop shm = { mqtt_str_c(SHM_KEY), mqtt_str_c(SHM_VALUE) };

	outq_reset(&s->out);
	s->state = SESS_IDLE;
	s->shm_echoed = false;
	s->session_present = false;
	s->server_rm = 65535;
	s->server_max_qos = 2;
	s->server_retain = true;
	s->server_max_packet = 0;
	s->keepalive_s = s->cfg.keepalive_s;
	s->ping_out = false;
	for (int i = 0; i < s->nops; i++)
		s->ops[i].pid = 0;
	s->nops = 0;

	memset(&p, 0, sizeof(p));
	p.type = MQTT_CONNECT;
	c->version = s->cfg.version;
	c->clean_start = s->cfg.clean_start;
	c->keep_alive = s->cfg.keepalive_s;
	if (s->cfg.version == MQTT_V5) {
		if (s->cfg.session_expiry) {
			c->props.session_expiry = s->cfg.session_expiry;
			c->props.present |= MQTT_PROP_BIT(MQTT_PROP_SESSION_EXPIRY_INTERVAL);
		}
		if (s->cfg.offer_shm) {
			c->props.user = &shm;
			c->props.user_count = 1;
		}
	}
	c->client_id = mqtt_str_c(s->cfg.client_id ? s->cfg.client_id : "");
	if (s->cfg.will) {
		c->will = true;
		c->will_qos = s->cfg.will_qos;
		c->will_retain = s->cfg.will_retain;
		c->will_topic = mqtt_str_c(s->cfg.will_topic);
		c->will_payload = (mqtt_bytes){ s->cfg.will_payload, (uint32_t)s->cfg.will_len };
		if (s->cfg.will_props)
			c->will_props = *s->cfg.will_props;
	}
	if (s->cfg.username) {
		c->has_username = true;
		c->username = mqtt_str_c(s->cfg.username);
	}
	if (s->cfg.password) {
		c->has_password = true;
		c->password = (mqtt_bytes){ s->cfg.password, (uint32_t)s->cfg.password_len };
	}
	int rc = send_pkt(s, &p, now_ms);
	if (rc == 0)
		s->state = SESS_CONNECTING;
	return rc;
}

void session_lost(session *s)
{
	outq_reset(&s->out);
	s->state = SESS_IDLE;
	s->ping_out = false;
	s->nops = 0;
}

int session_disconnect(session *s, uint8_t reason)
{
	mqtt_packet p;
	int rc = 0;

	if (s->state == SESS_CONNECTED) {
		memset(&p, 0, sizeof(p));
		p.type = MQTT_DISCONNECT;
		p.u.disconnect.reason = reason;
		rc = send_pkt(s, &p, s->last_tx_ms);
	}
	s->state = SESS_IDLE;
	return rc;
}

/* ------------------------------------------------------- packet ids */

static bool op_uses(const session *s, uint16_t pid)
{
	for (int i = 0; i < s->nops; i++)
		if (s->ops[i].pid == pid)
			return true;
	return false;
}

static uint16_t alloc_pid(session *s)
{
	for (unsigned tries = 0; tries < 65535u; tries++) {
		uint16_t pid = ++s->next_pid;
		if (pid == 0)
			pid = s->next_pid = 1;
		if (s->flights[pid % s->cfg.window].pid == 0 && !op_uses(s, pid))
			return pid;
	}
	return 0;
}

/* Like alloc_pid, but the flight slot may be busy (SUBSCRIBE ids). */
static uint16_t alloc_op_pid(session *s)
{
	for (unsigned tries = 0; tries < 65535u; tries++) {
		uint16_t pid = ++s->next_pid;
		if (pid == 0)
			pid = s->next_pid = 1;
		if (s->flights[pid % s->cfg.window].pid != pid && !op_uses(s, pid))
			return pid;
	}
	return 0;
}

static session_flight *flight_find(session *s, uint16_t pid)
{
	session_flight *f = &s->flights[pid % s->cfg.window];
	return f->pid == pid && pid != 0 ? f : NULL;
}

static void flight_free(session *s, session_flight *f)
{
	lbuf_unref(s, f->lb);
	memset(f, 0, sizeof(*f));
	s->inflight--;
}

bool session_window_open(const session *s)
{
	uint16_t w = s->cfg.window;

	if (s->state == SESS_CONNECTED && s->server_rm < w)
		w = s->server_rm;
	return s->inflight < w;
}

/* -------------------------------------------------------- resume */

static int send_flight(session *s, session_flight *f, bool dup, uint64_t now_ms)
{
	session_lbuf *lb = f->lb;

	if (f->state == FL_WAIT_COMP)
		return send_ack(s, MQTT_PUBREL, f->pid, 0, now_ms);
	if (dup)
		lb->mem[lb->pkt_off] |= 0x08;
	else
		lb->mem[lb->pkt_off] &= (uint8_t)~0x08;
	if (outq_append_ext(&s->out, lb->mem + lb->pkt_off,
			    lb->room + lb->len - lb->pkt_off, lb))
		return SHIMMY_ERR_NOMEM;
	lb->refs++;
	f->sent = true;
	s->last_tx_ms = now_ms;
	return 0;
}

/* Resends inflight publishes in publication order [MQTT-4.6.0-1]. */
static int resend_flights(session *s, uint64_t now_ms)
{
	uint64_t after = 0;
	bool first = true;

	for (;;) {
		session_flight *best = NULL;
		for (uint16_t i = 0; i < s->cfg.window; i++) {
			session_flight *f = &s->flights[i];
			if (f->pid && (first || f->seq > after) && (!best || f->seq < best->seq))
				best = f;
		}
		if (!best)
			return 0;
		first = false;
		after = best->seq;
		if (!s->session_present && best->state == FL_WAIT_COMP) {
			/* The broker has the message already; a new session
			 * has nothing to release. */
			flight_free(s, best);
			continue;
		}
		int rc = send_flight(s, best, s->session_present && best->sent, now_ms);
		if (rc)
			return rc;
	}
}

static int resubscribe(session *s, uint64_t now_ms)
{
	mqtt_topic_entry *e;
	uint16_t pid;
	long n;
	uint8_t *w;

	if (!s->cfg.resubscribe || s->session_present || s->nsubs == 0)
		return 0;
	if (s->nops >= SESSION_OPS_MAX || !(pid = alloc_op_pid(s)))
		return SHIMMY_ERR_AGAIN;
	e = calloc(s->nsubs, sizeof(*e));
	if (!e)
		return SHIMMY_ERR_NOMEM;
	for (size_t i = 0; i < s->nsubs; i++) {
		e[i].filter = mqtt_str_c(s->subs[i].filter);
		e[i].options = s->subs[i].options;
	}
	n = mqtt_encode_subscribe(NULL, 0, s->cfg.version, MQTT_SUBSCRIBE, pid, NULL,
				  e, (uint32_t)s->nsubs);
	if (n < 0 || !(w = outq_reserve(&s->out, (size_t)n))) {
		free(e);
		return n < 0 ? SHIMMY_ERR_INVALID : SHIMMY_ERR_NOMEM;
	}
	mqtt_encode_subscribe(w, (size_t)n, s->cfg.version, MQTT_SUBSCRIBE, pid, NULL,
			      e, (uint32_t)s->nsubs);
	outq_commit(&s->out, (size_t)n);
	free(e);
	s->ops[s->nops].pid = pid;
	s->ops[s->nops].type = MQTT_SUBSCRIBE;
	s->ops[s->nops].internal = true;
	s->nops++;
	s->last_tx_ms = now_ms;
	return 0;
}

/* ------------------------------------------------------- input */

static void apply_connack_props(session *s, const mqtt_props *p)
{
	uint32_t off = 0;
	mqtt_prop pr;

	if (p->present & MQTT_PROP_BIT(MQTT_PROP_RECEIVE_MAXIMUM))
		s->server_rm = p->receive_maximum;
	if (p->present & MQTT_PROP_BIT(MQTT_PROP_MAXIMUM_QOS))
		s->server_max_qos = p->maximum_qos;
	if (p->present & MQTT_PROP_BIT(MQTT_PROP_RETAIN_AVAILABLE))
		s->server_retain = p->retain_available != 0;
	if (p->present & MQTT_PROP_BIT(MQTT_PROP_MAXIMUM_PACKET_SIZE))
		s->server_max_packet = p->maximum_packet_size;
	if (p->present & MQTT_PROP_BIT(MQTT_PROP_SERVER_KEEP_ALIVE))
		s->keepalive_s = p->server_keep_alive;
	while (mqtt_props_next(p->raw, &off, &pr) == 1) {
		if (pr.id == MQTT_PROP_USER_PROPERTY &&
		    pr.str.len == sizeof(SHM_KEY) - 1 &&
		    memcmp(pr.str.ptr, SHM_KEY, pr.str.len) == 0 &&
		    pr.str2.len == sizeof(SHM_VALUE) - 1 &&
		    memcmp(pr.str2.ptr, SHM_VALUE, pr.str2.len) == 0)
			s->shm_echoed = true;
	}
}

static long on_connack(session *s, const mqtt_packet *pkt, uint64_t now_ms, session_event *ev)
{
	const mqtt_connack *ca = &pkt->u.connack;

	if (s->state != SESS_CONNECTING) {
		ev->reason = MQTT_RC_PROTOCOL_ERROR; /* [MQTT-3.2.0-2]: only one */
		return SHIMMY_ERR_PROTOCOL;
	}
	ev->type = SEV_CONNACK;
	ev->reason = ca->reason;
	ev->session_present = ca->session_present;
	s->last_reason = ca->reason;
	if (ca->reason != 0) {
		s->state = SESS_IDLE;
		return 0;
	}
	/* A clean start always gets a new session [MQTT-3.2.2-2]. */
	s->session_present = ca->session_present && !s->cfg.clean_start;
	if (s->cfg.version == MQTT_V5)
		apply_connack_props(s, &ca->props);
	if (!s->session_present)
		memset(s->rx_qos2, 0, 65536 / 8);
	s->state = SESS_CONNECTED;
	int rc = resend_flights(s, now_ms);
	if (rc == 0)
		rc = resubscribe(s, now_ms);
	return rc;
}

static long on_publish(session *s, const mqtt_packet *pkt, uint64_t now_ms, session_event *ev)
{
	const mqtt_publish *p = &pkt->u.publish;
	uint16_t pid = p->packet_id;
	uint64_t bit = 1ull << (pid % 64);
	int rc = 0;

	if (s->state != SESS_CONNECTED) {
		ev->reason = MQTT_RC_PROTOCOL_ERROR;
		return SHIMMY_ERR_PROTOCOL;
	}
	/* We advertise no Topic Alias Maximum, so the broker may send none
	 * [MQTT-3.3.2-9]. */
	if (p->props.present & MQTT_PROP_BIT(MQTT_PROP_TOPIC_ALIAS)) {
		ev->reason = MQTT_RC_TOPIC_ALIAS_INVALID;
		return SHIMMY_ERR_PROTOCOL;
	}
	ev->msg = *p;
	switch (p->qos) {
	case 0:
		ev->type = SEV_MESSAGE;
		break;
	case 1:
		ev->type = SEV_MESSAGE;
		rc = send_ack(s, MQTT_PUBACK, pid, 0, now_ms);
		break;
	default:
		/* Method B of [MQTT-4.3.3]: deliver on the first PUBLISH,
		 * remember the id until PUBREL so a resend is not delivered
		 * twice. */
		if (!(s->rx_qos2[pid / 64] & bit)) {
			s->rx_qos2[pid / 64] |= bit;
			ev->type = SEV_MESSAGE;
		}
		rc = send_ack(s, MQTT_PUBREC, pid, 0, now_ms);
		break;
	}
	return rc;
}

static long on_ack(session *s, const mqtt_packet *pkt, uint64_t now_ms, session_event *ev)
{
	uint16_t pid = pkt->u.ack.packet_id;
	uint8_t reason = pkt->u.ack.reason;
	session_flight *f = flight_find(s, pid);

	switch (pkt->type) {
	case MQTT_PUBACK:
		if (f && f->qos == 1 && f->state == FL_WAIT_ACK) {
			flight_free(s, f);
			*ev = (session_event){ .type = SEV_PUBDONE, .pid = pid, .reason = reason };
		}
		return 0;
	case MQTT_PUBREC:
		if (!f || f->qos != 2 || f->state != FL_WAIT_ACK) {
			if (f && f->state == FL_WAIT_COMP) /* duplicate PUBREC */
				return send_ack(s, MQTT_PUBREL, pid, 0, now_ms);
			return send_ack(s, MQTT_PUBREL, pid,
					MQTT_RC_PACKET_IDENTIFIER_NOT_FOUND, now_ms);
		}
		if (reason >= 0x80) { /* [MQTT-4.3.3]: the flow ends here */
			flight_free(s, f);
			*ev = (session_event){ .type = SEV_PUBDONE, .pid = pid, .reason = reason };
			return 0;
		}
		lbuf_unref(s, f->lb); /* the message itself is never resent now */
		f->lb = NULL;
		f->state = FL_WAIT_COMP;
		return send_ack(s, MQTT_PUBREL, pid, 0, now_ms);
	case MQTT_PUBREL: {
		uint64_t bit = 1ull << (pid % 64);
		bool known = s->rx_qos2[pid / 64] & bit;
		s->rx_qos2[pid / 64] &= ~bit;
		return send_ack(s, MQTT_PUBCOMP, pid,
				known ? 0 : MQTT_RC_PACKET_IDENTIFIER_NOT_FOUND, now_ms);
	}
	default: /* PUBCOMP */
		if (f && f->state == FL_WAIT_COMP) {
			flight_free(s, f);
			*ev = (session_event){ .type = SEV_PUBDONE, .pid = pid, .reason = reason };
		}
		return 0;
	}
}

static long on_suback(session *s, const mqtt_packet *pkt, session_event *ev)
{
	const mqtt_suback *sa = &pkt->u.suback;

	for (int i = 0; i < s->nops; i++) {
		if (s->ops[i].pid != sa->packet_id || s->ops[i].type + 1 != (int)pkt->type)
			continue;
		bool internal = s->ops[i].internal;
		s->ops[i] = s->ops[--s->nops];
		if (!internal) {
			ev->type = pkt->type == MQTT_SUBACK ? SEV_SUBACK : SEV_UNSUBACK;
			ev->pid = sa->packet_id;
			ev->reason = sa->reasons.len ? sa->reasons.ptr[0] : 0;
		}
		return 0;
	}
	return 0; /* an answer to nothing we asked: ignored */
}

long session_input(session *s, const uint8_t *buf, size_t len, uint64_t now_ms,
		   session_event *ev)
{
	mqtt_packet pkt;
	int n;
	long rc = 0;

	memset(ev, 0, sizeof(*ev));
	n = mqtt_decode(buf, len, s->cfg.version, 0, &pkt);
	if (n == MQTT_ERR_NEED_MORE)
		return 0;
	if (n < 0) {
		ev->reason = mqtt_reason_from_err(n);
		return SHIMMY_ERR_PROTOCOL;
	}
	if (s->state == SESS_CONNECTING && pkt.type != MQTT_CONNACK) {
		/* [MQTT-3.2.0-1]: CONNACK comes first. */
		ev->reason = MQTT_RC_PROTOCOL_ERROR;
		return SHIMMY_ERR_PROTOCOL;
	}
	switch (pkt.type) {
	case MQTT_CONNACK:
		rc = on_connack(s, &pkt, now_ms, ev);
		break;
	case MQTT_PUBLISH:
		rc = on_publish(s, &pkt, now_ms, ev);
		break;
	case MQTT_PUBACK:
	case MQTT_PUBREC:
	case MQTT_PUBREL:
	case MQTT_PUBCOMP:
		rc = on_ack(s, &pkt, now_ms, ev);
		break;
	case MQTT_SUBACK:
	case MQTT_UNSUBACK:
		rc = on_suback(s, &pkt, ev);
		break;
	case MQTT_PINGRESP:
		s->ping_out = false;
		break;
	case MQTT_DISCONNECT:
		ev->type = SEV_DISCONNECT;
		ev->reason = pkt.u.disconnect.reason;
		s->last_reason = ev->reason;
		s->state = SESS_IDLE;
		break;
	default: /* CONNECT, SUBSCRIBE, PINGREQ, AUTH (never asked for) ... */
		ev->reason = MQTT_RC_PROTOCOL_ERROR;
		return SHIMMY_ERR_PROTOCOL;
	}
	if (rc < 0 && rc != SHIMMY_ERR_PROTOCOL) {
		/* Out of memory while queueing an answer: treat as a lost
		 * connection; the session state is still consistent. */
		ev->reason = MQTT_RC_UNSPECIFIED_ERROR;
		return rc;
	}
	return rc < 0 ? rc : n;
}

/* ------------------------------------------------------- keepalive */

int session_tick(session *s, uint64_t now_ms)
{
	uint64_t ka = (uint64_t)s->keepalive_s * 1000;
	mqtt_packet p;

	if (s->state != SESS_CONNECTED || ka == 0)
		return 0;
	if (s->ping_out) {
		if (now_ms - s->ping_sent_ms >= ka)
			return SHIMMY_ERR_TIMEOUT;
		return 0;
	}
	if (now_ms - s->last_tx_ms >= ka) {
		memset(&p, 0, sizeof(p));
		p.type = MQTT_PINGREQ;
		int rc = send_pkt(s, &p, now_ms);
		if (rc)
			return rc;
		s->ping_out = true;
		s->ping_sent_ms = now_ms;
	}
	return 0;
}

int session_next_timeout(const session *s, uint64_t now_ms)
{
	uint64_t ka = (uint64_t)s->keepalive_s * 1000, due;

	if (s->state != SESS_CONNECTED || ka == 0)
		return -1;
	due = (s->ping_out ? s->ping_sent_ms : s->last_tx_ms) + ka;
	if (due <= now_ms)
		return 0;
	return due - now_ms > 86400000u ? 86400000 : (int)(due - now_ms);
}

/* ------------------------------------------------------- publishing */

static int check_topic(const char *topic, size_t *tl)
{
	if (!topic)
		return SHIMMY_ERR_INVALID;
	*tl = strlen(topic);
	if (*tl > 65535 || mqtt_topic_validate_name((mqtt_str){ topic, (uint32_t)*tl }))
		return SHIMMY_ERR_INVALID;
	return 0;
}

static int check_pub(const session *s, int qos, unsigned flags)
{
	if (qos < 0 || qos > 2)
		return SHIMMY_ERR_INVALID;
	if (s->state == SESS_CONNECTED &&
	    (qos > s->server_max_qos || ((flags & SHIMMY_PUB_RETAIN) && !s->server_retain)))
		return SHIMMY_ERR_UNSUPPORTED; /* [MQTT-3.2.2-11], [MQTT-3.2.2-14] */
	if (qos == 0 && s->state != SESS_CONNECTED)
		return SHIMMY_ERR_NOT_CONNECTED;
	return 0;
}

int session_publish(session *s, const char *topic, const void *payload, size_t len,
		    int qos, unsigned flags, const mqtt_props *props, uint64_t now_ms)
{
	size_t tl;
	uint8_t *buf;
	int rc;

	if ((rc = check_topic(topic, &tl)) || (rc = check_pub(s, qos, flags)))
		return rc;
	if (len && !payload)
		return SHIMMY_ERR_INVALID;
	if (qos == 0) {
		mqtt_packet p;
		if (len > MQTT_VBI_MAX)
			return SHIMMY_ERR_TOO_LARGE;
		memset(&p, 0, sizeof(p));
		p.type = MQTT_PUBLISH;
		p.u.publish.retain = flags & SHIMMY_PUB_RETAIN;
		p.u.publish.topic = (mqtt_str){ topic, (uint32_t)tl };
		p.u.publish.payload = (mqtt_bytes){ payload, (uint32_t)len };
		if (props)
			p.u.publish.props = *props;
		return send_pkt(s, &p, now_ms);
	}
	if (!session_window_open(s))
		return SHIMMY_ERR_AGAIN;
	rc = session_loan(s, topic, len, props, &buf);
	if (rc)
		return rc;
	if (len)
		memcpy(buf, payload, len);
	rc = session_commit(s, buf, qos, flags, now_ms);
	if (rc)
		session_loan_abort(s, buf);
	return rc;
}

static void put_u16(uint8_t *p, size_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

/*
 * lbuf layout while loaned (room bytes before the payload):
 *   | slack | topic len (2) | topic | packet id (2) | props (v5) | payload |
 * At commit the fixed header goes right before the topic (QoS 1/2), or the
 * topic moves up over the packet id first (QoS 0).
 */
int session_loan(session *s, const char *topic, size_t len, const mqtt_props *props,
		 uint8_t **buf)
{
	size_t tl, pl = 0, var, room;
	session_lbuf *lb;

	if (check_topic(topic, &tl) || !buf)
		return SHIMMY_ERR_INVALID;
	if (s->cfg.version == MQTT_V5) {
		if (props && mqtt_props_check(props))
			return SHIMMY_ERR_INVALID;
		pl = mqtt_props_size(props);
		pl += mqtt_vbi_size((uint32_t)pl);
	}
	var = 2 + tl + 2 + pl;
	if (len > MQTT_VBI_MAX - var)
		return SHIMMY_ERR_TOO_LARGE;
	room = 1 + mqtt_vbi_size((uint32_t)(var + len)) + var;
	room = (room + 7) & ~(size_t)7; /* payload 8-aligned */
	lb = lbuf_get(s, room + len);
	if (!lb)
		return SHIMMY_ERR_NOMEM;
	lb->room = room;
	lb->len = len;
	lb->topic_len = tl;
	lb->props_len = pl;
	if (pl)
		mqtt_props_encode(lb->mem + room - pl, pl, props);
	put_u16(lb->mem + room - pl - 2 - tl - 2, tl);
	memcpy(lb->mem + room - pl - 2 - tl, topic, tl);
	lb->next = s->open;
	s->open = lb;
	*buf = lb->mem + room;
	return 0;
}

static session_lbuf *open_find(session *s, const uint8_t *buf, bool unlink)
{
	for (session_lbuf **pp = &s->open; *pp; pp = &(*pp)->next) {
		session_lbuf *lb = *pp;
		if (lb->mem + lb->room == buf) {
			if (unlink) {
				*pp = lb->next;
				lb->next = NULL;
			}
			return lb;
		}
	}
	return NULL;
}

void session_loan_abort(session *s, uint8_t *buf)
{
	session_lbuf *lb = open_find(s, buf, true);

	if (lb)
		lbuf_put(s, lb);
}

int session_commit(session *s, uint8_t *buf, int qos, unsigned flags, uint64_t now_ms)
{
	session_lbuf *lb = open_find(s, buf, false);
	size_t tstart, vstart, rem, hl, end;
	int rc;

	if (!lb)
		return SHIMMY_ERR_INVALID;
	if ((rc = check_pub(s, qos, flags)))
		return rc;
	if (qos > 0 && !session_window_open(s))
		return SHIMMY_ERR_AGAIN;
	end = lb->room + lb->len;
	tstart = lb->room - lb->props_len - 2 - lb->topic_len - 2;
	if (qos == 0) {
		memmove(lb->mem + tstart + 2, lb->mem + tstart, 2 + lb->topic_len);
		vstart = tstart + 2;
	} else {
		vstart = tstart;
	}
	rem = end - vstart;
	hl = 1 + mqtt_vbi_size((uint32_t)rem);
	if (s->server_max_packet && rem + hl > s->server_max_packet) {
		if (qos == 0) /* undo, so the loan can be retried or aborted */
			memmove(lb->mem + tstart, lb->mem + tstart + 2, 2 + lb->topic_len);
		return SHIMMY_ERR_TOO_LARGE;
	}
	lb->pkt_off = vstart - hl;
	lb->mem[lb->pkt_off] = (uint8_t)(MQTT_PUBLISH << 4 | qos << 1 |
					 ((flags & SHIMMY_PUB_RETAIN) ? 1 : 0));
	mqtt_vbi_encode(lb->mem + lb->pkt_off + 1, (uint32_t)rem);
	open_find(s, buf, true);

	if (qos == 0) {
		if (outq_append_ext(&s->out, lb->mem + lb->pkt_off, end - lb->pkt_off, lb)) {
			lbuf_put(s, lb);
			return SHIMMY_ERR_NOMEM;
		}
		lb->refs = 1;
		s->last_tx_ms = now_ms;
		return 0;
	}
	uint16_t pid = alloc_pid(s);
	session_flight *f = &s->flights[pid % s->cfg.window];
	put_u16(lb->mem + lb->room - lb->props_len - 2, pid);
	*f = (session_flight){ .pid = pid, .qos = (uint8_t)qos, .state = FL_WAIT_ACK,
			       .seq = ++s->next_seq, .lb = lb };
	lb->refs = 1;
	s->inflight++;
	if (s->state == SESS_CONNECTED)
		return send_flight(s, f, false, now_ms);
	return 0;
}

/* ------------------------------------------------------- subscribing */

static int remember_sub(session *s, const char *filter, uint8_t options)
{
	char *d;

	s->subs_ver++;
	for (size_t i = 0; i < s->nsubs; i++) {
		if (strcmp(s->subs[i].filter, filter) == 0) {
			s->subs[i].options = options;
			return 0;
		}
	}
	if (s->nsubs == s->capsubs) {
		size_t nc = s->capsubs ? s->capsubs * 2 : 8;
		session_sub *n = realloc(s->subs, nc * sizeof(*n));
		if (!n)
			return SHIMMY_ERR_NOMEM;
		s->subs = n;
		s->capsubs = nc;
	}
	d = strdup(filter);
	if (!d)
		return SHIMMY_ERR_NOMEM;
	s->subs[s->nsubs++] = (session_sub){ d, options };
	return 0;
}

static void forget_sub(session *s, const char *filter)
{
	s->subs_ver++;
	for (size_t i = 0; i < s->nsubs; i++) {
		if (strcmp(s->subs[i].filter, filter) == 0) {
			free(s->subs[i].filter);
			s->subs[i] = s->subs[--s->nsubs];
			return;
		}
	}
}

static int sub_op(session *s, mqtt_type type, const char *filter, uint8_t options,
		  uint64_t now_ms, uint16_t *pid_out)
{
	mqtt_topic_entry e;
	uint16_t pid;
	long n;
	uint8_t *w;
	size_t fl;

	if (!filter)
		return SHIMMY_ERR_INVALID;
	fl = strlen(filter);
	if (fl > 65535 || mqtt_topic_validate_filter((mqtt_str){ filter, (uint32_t)fl }, true))
		return SHIMMY_ERR_INVALID;
	if (s->state != SESS_CONNECTED)
		return SHIMMY_ERR_NOT_CONNECTED;
	if (s->nops >= SESSION_OPS_MAX || !(pid = alloc_op_pid(s)))
		return SHIMMY_ERR_AGAIN;
	e.filter = (mqtt_str){ filter, (uint32_t)fl };
	e.options = options;
	n = mqtt_encode_subscribe(NULL, 0, s->cfg.version, type, pid, NULL, &e, 1);
	if (n < 0)
		return SHIMMY_ERR_INVALID;
	if (type == MQTT_SUBSCRIBE ? remember_sub(s, filter, options) : 0)
		return SHIMMY_ERR_NOMEM;
	if (!(w = outq_reserve(&s->out, (size_t)n)))
		return SHIMMY_ERR_NOMEM;
	mqtt_encode_subscribe(w, (size_t)n, s->cfg.version, type, pid, NULL, &e, 1);
	outq_commit(&s->out, (size_t)n);
	if (type == MQTT_UNSUBSCRIBE)
		forget_sub(s, filter);
	s->ops[s->nops].pid = pid;
	s->ops[s->nops].type = (uint8_t)type;
	s->ops[s->nops].internal = false;
	s->nops++;
	s->last_tx_ms = now_ms;
	*pid_out = pid;
	return 0;
}

int session_subscribe(session *s, const char *filter, uint8_t options, uint64_t now_ms,
		      uint16_t *pid)
{
	if ((options & MQTT_SUBOPT_QOS_MASK) > 2 || (options & 0xC0) ||
	    (options & MQTT_SUBOPT_RETAIN_HANDLING_MASK) == MQTT_SUBOPT_RETAIN_HANDLING_MASK)
		return SHIMMY_ERR_INVALID;
	return sub_op(s, MQTT_SUBSCRIBE, filter, options, now_ms, pid);
}

int session_unsubscribe(session *s, const char *filter, uint64_t now_ms, uint16_t *pid)
{
	return sub_op(s, MQTT_UNSUBSCRIBE, filter, 0, now_ms, pid);
}

int session_sub_qos(const session *s, const char *topic, size_t len,
		    unsigned flags)
{
	mqtt_str t = { topic, (uint32_t)len }, group, f;
	int best = -1;

	for (size_t i = 0; i < s->nsubs; i++) {
		mqtt_str full = mqtt_str_c(s->subs[i].filter);
		int q = s->subs[i].options & MQTT_SUBOPT_QOS_MASK;

		if (mqtt_topic_share_split(full, &group, &f) !=
		    !!(flags & SESSION_SUB_SHARED))
			continue;
		if (!(flags & SESSION_SUB_SHARED))
			f = full;
		if (q > best && mqtt_topic_match(f, t))
			best = q;
	}
	return best;
}

int session_deliver_qos(const session *s, session_qos_cache *c,
			const char *topic, size_t len, unsigned flags, int qos)
{
	if (!s)
		return qos;
	if (!c->valid || c->ver != s->subs_ver) {
		c->qos = session_sub_qos(s, topic, len, flags);
		c->ver = s->subs_ver;
		c->valid = true;
	}
	return c->qos >= 0 && c->qos < qos ? c->qos : qos;
}

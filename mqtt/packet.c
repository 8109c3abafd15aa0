/*
 * mqtt/packet.c — decoder and encoder for the control packets of MQTT 3.1,
 * 3.1.1 and 5.0.
 *
 * Decoding is in three steps: the fixed header (type, flags, remaining
 * length, size limit) is checked as soon as its bytes are present, so an
 * oversized or misflagged packet is refused before it is buffered; then the
 * whole packet must be present; then one function per packet type reads the
 * variable header and payload through a bounds-checked cursor and must end
 * exactly at the remaining length. Outputs are views into the input.
 *
 * Encoding runs the same body writer twice: once counting, to learn the
 * remaining length and the size to return, then writing, only when the
 * caller's buffer is large enough.
 * Thread model: pure functions, any thread.
 */
#include "mqtt/packet.h"

#include <string.h>

#include "mqtt/topic.h"
#include "mqtt/utf8.h"

/* ---- decoding ---- */

/* Cursor over the variable header and payload; never passes end. */
typedef struct rd {
	const uint8_t *p;
	const uint8_t *end;
} rd;

static size_t rd_left(const rd *r)
{
	return (size_t)(r->end - r->p);
}

static int rd_u8(rd *r, uint8_t *v)
{
	if (rd_left(r) < 1)
		return MQTT_ERR_MALFORMED;
	*v = *r->p++;
	return 0;
}

static int rd_u16(rd *r, uint16_t *v)
{
	if (rd_left(r) < 2)
		return MQTT_ERR_MALFORMED;
	*v = (uint16_t)(r->p[0] << 8 | r->p[1]);
	r->p += 2;
	return 0;
}

/* Binary Data [MQTT-1.5.6]: two-byte length, then bytes. */
static int rd_bin(rd *r, mqtt_bytes *v)
{
	uint16_t n;

	if (rd_u16(r, &n))
		return MQTT_ERR_MALFORMED;
	if (rd_left(r) < n)
		return MQTT_ERR_MALFORMED;
	v->ptr = r->p;
	v->len = n;
	r->p += n;
	return 0;
}

/* UTF-8 Encoded String [MQTT-1.5.4]. */
static int rd_str(rd *r, mqtt_str *v)
{
	mqtt_bytes b;

	if (rd_bin(r, &b))
		return MQTT_ERR_MALFORMED;
	if (mqtt_utf8_validate(b.ptr, b.len))
		return MQTT_ERR_UTF8; /* [MQTT-1.5.4-1,2] */
	v->ptr = (const char *)b.ptr;
	v->len = b.len;
	return 0;
}

/* Packet Identifier: non-zero [MQTT-2.3.1-1]. */
static int rd_pid(rd *r, uint16_t *v)
{
	if (rd_u16(r, v))
		return MQTT_ERR_MALFORMED;
	return *v == 0 ? MQTT_ERR_PROTOCOL : 0;
}

static int rd_props(rd *r, mqtt_prop_ctx ctx, mqtt_props *out)
{
	int n = mqtt_props_decode(r->p, rd_left(r), ctx, out);

	if (n < 0)
		return n;
	r->p += n;
	return 0;
}

/* Remaining length must match the contents exactly. */
static int rd_done(const rd *r)
{
	return rd_left(r) == 0 ? 0 : MQTT_ERR_MALFORMED;
}

/*
 * Fixed header byte 1 [MQTT-2.2.2]: reserved flag bits and PUBLISH flags,
 * checked from the first byte alone.
 */
static int check_fixed(uint8_t type, uint8_t flags, mqtt_version version)
{
	switch (type) {
	case MQTT_PUBLISH:
		if ((flags & 0x06) == 0x06)
			return MQTT_ERR_MALFORMED; /* QoS 3 [MQTT-3.3.1-4] */
		if ((flags & 0x08) && (flags & 0x06) == 0)
			return MQTT_ERR_PROTOCOL; /* DUP on QoS 0 [MQTT-3.3.1-2] */
		return 0;
	case MQTT_PUBREL:
	case MQTT_SUBSCRIBE:
	case MQTT_UNSUBSCRIBE:
		/* [MQTT-3.6.1-1], [MQTT-3.8.1-1], [MQTT-3.10.1-1] */
		return flags == 0x2 ? 0 : MQTT_ERR_MALFORMED;
	case MQTT_AUTH:
		if (version != MQTT_V5)
			return MQTT_ERR_MALFORMED; /* type 15 is reserved before 5.0 */
		return flags == 0 ? 0 : MQTT_ERR_MALFORMED;
	case 0:
		return MQTT_ERR_MALFORMED; /* type 0 is reserved */
	default:
		/* [MQTT-2.2.2-1] reserved flags are 0; [MQTT-2.2.2-2]. */
		return flags == 0 ? 0 : MQTT_ERR_MALFORMED;
	}
}

static int dec_connect(rd *r, mqtt_connect *c)
{
	mqtt_bytes name;
	uint8_t level, fl;
	int rc;

	/* Protocol Name and Level [MQTT-3.1.2-1,2]. */
	if ((rc = rd_bin(r, &name)) != 0)
		return rc;
	if ((rc = rd_u8(r, &level)) != 0)
		return rc;
	c->version = (mqtt_version)level;
	if (name.len == 4 && memcmp(name.ptr, "MQTT", 4) == 0) {
		if (level != MQTT_V311 && level != MQTT_V5)
			return MQTT_ERR_BAD_VERSION;
	} else if (name.len == 6 && memcmp(name.ptr, "MQIsdp", 6) == 0) {
		if (level != MQTT_V31)
			return MQTT_ERR_BAD_VERSION;
	} else {
		return MQTT_ERR_BAD_VERSION;
	}

	if ((rc = rd_u8(r, &fl)) != 0)
		return rc;
	if (fl & 0x01)
		return MQTT_ERR_MALFORMED; /* reserved flag [MQTT-3.1.2-3] */
	c->clean_start = fl & 0x02;
	c->will = fl & 0x04;
	c->will_qos = (fl >> 3) & 0x03;
	c->will_retain = fl & 0x20;
	c->has_password = fl & 0x40;
	c->has_username = fl & 0x80;
	if (c->will_qos == 3)
		return MQTT_ERR_MALFORMED; /* [MQTT-3.1.2-14] */
	if (!c->will && (c->will_qos || c->will_retain))
		return MQTT_ERR_MALFORMED; /* [MQTT-3.1.2-13], [MQTT-3.1.2-15] */
	if (level != MQTT_V5 && c->has_password && !c->has_username)
		return MQTT_ERR_MALFORMED; /* [MQTT-3.1.2-22]; 5.0 allows it */
	if ((rc = rd_u16(r, &c->keep_alive)) != 0)
		return rc;
	if (level == MQTT_V5 &&
	    (rc = rd_props(r, MQTT_PCTX_CONNECT, &c->props)) != 0)
		return rc;

	/* Payload order [MQTT-3.1.3-1]; Client Identifier [MQTT-3.1.3-4]. */
	if ((rc = rd_str(r, &c->client_id)) != 0)
		return rc;
	if (c->will) {
		if (level == MQTT_V5 &&
		    (rc = rd_props(r, MQTT_PCTX_WILL, &c->will_props)) != 0)
			return rc;
		if ((rc = rd_str(r, &c->will_topic)) != 0)
			return rc; /* [MQTT-3.1.3-10] */
		if ((rc = mqtt_topic_validate_name(c->will_topic)) != 0)
			return rc;
		if ((rc = rd_bin(r, &c->will_payload)) != 0)
			return rc;
	}
	if (c->has_username &&
	    (rc = rd_str(r, &c->username)) != 0)
		return rc; /* [MQTT-3.1.3-11] */
	if (c->has_password &&
	    (rc = rd_bin(r, &c->password)) != 0)
		return rc;
	return rd_done(r);
}

/* v5 reason codes each packet may carry (sections 3.x.2.1). */
static bool reason_ok(mqtt_type t, uint8_t rc)
{
	static const uint8_t connack[] = { 0x00, 0x80, 0x81, 0x82, 0x83, 0x84,
		0x85, 0x86, 0x87, 0x88, 0x89, 0x8A, 0x8C, 0x90, 0x95, 0x97,
		0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9F };
	static const uint8_t puback[] = { 0x00, 0x10, 0x80, 0x83, 0x87, 0x90,
		0x91, 0x97, 0x99 };
	static const uint8_t pubrel[] = { 0x00, 0x92 };
	static const uint8_t suback[] = { 0x00, 0x01, 0x02, 0x80, 0x83, 0x87,
		0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2 };
	static const uint8_t unsuback[] = { 0x00, 0x11, 0x80, 0x83, 0x87, 0x8F,
		0x91 };
	static const uint8_t disconnect[] = { 0x00, 0x04, 0x80, 0x81, 0x82,
		0x83, 0x87, 0x89, 0x8B, 0x8D, 0x8E, 0x8F, 0x90, 0x93, 0x94, 0x95,
		0x96, 0x97, 0x98, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9E, 0x9F, 0xA0,
		0xA1, 0xA2 };
	static const uint8_t auth[] = { 0x00, 0x18, 0x19 };
	const uint8_t *set;
	size_t n;

	switch (t) {
	case MQTT_CONNACK: set = connack, n = sizeof(connack); break;
	case MQTT_PUBACK:
	case MQTT_PUBREC: set = puback, n = sizeof(puback); break;
	case MQTT_PUBREL:
	case MQTT_PUBCOMP: set = pubrel, n = sizeof(pubrel); break;
	case MQTT_SUBACK: set = suback, n = sizeof(suback); break;
	case MQTT_UNSUBACK: set = unsuback, n = sizeof(unsuback); break;
	case MQTT_DISCONNECT: set = disconnect, n = sizeof(disconnect); break;
	case MQTT_AUTH: set = auth, n = sizeof(auth); break;
	default: return false;
	}
	return memchr(set, rc, n) != NULL;
}

static int dec_connack(rd *r, mqtt_version v, mqtt_connack *c)
{
	int rc;
	uint8_t fl;

	if ((rc = rd_u8(r, &fl)) != 0)
		return rc;
	/* 3.1 left byte 1 unused; 3.1.1 and 5.0 reserve bits 7-1
	 * [MQTT-3.2.2-1]. */
	if (v != MQTT_V31 && (fl & 0xFE))
		return MQTT_ERR_MALFORMED;
	c->session_present = v != MQTT_V31 && (fl & 0x01);
	if ((rc = rd_u8(r, &c->reason)) != 0)
		return rc;
	if (v == MQTT_V5) {
		if (!reason_ok(MQTT_CONNACK, c->reason))
			return MQTT_ERR_PROTOCOL;
		if ((rc = rd_props(r, MQTT_PCTX_CONNACK, &c->props)) != 0)
			return rc;
	} else if (c->reason > MQTT_CONNACK_V3_NOT_AUTHORIZED) {
		return MQTT_ERR_MALFORMED; /* 6-255 reserved [MQTT-3.2.2.3] */
	}
	return rd_done(r);
}

static int dec_publish(rd *r, mqtt_version v, uint8_t flags, mqtt_publish *p)
{
	int rc;

	p->retain = flags & 0x01;
	p->qos = (flags >> 1) & 0x03;
	p->dup = flags & 0x08;
	if ((rc = rd_str(r, &p->topic)) != 0)
		return rc; /* [MQTT-3.3.2-1] */
	if (p->qos > 0 &&
	    (rc = rd_pid(r, &p->packet_id)) != 0)
		return rc;
	if (v == MQTT_V5 &&
	    (rc = rd_props(r, MQTT_PCTX_PUBLISH, &p->props)) != 0)
		return rc;
	if (p->topic.len == 0) {
		/* 5.0 3.3.2.1: empty only with a Topic Alias, else a Protocol
		 * Error; before 5.0 always invalid [MQTT-4.7.3-1]. */
		if (v != MQTT_V5)
			return MQTT_ERR_TOPIC_NAME;
		if (!(p->props.present & MQTT_PROP_BIT(MQTT_PROP_TOPIC_ALIAS)))
			return MQTT_ERR_PROTOCOL;
	} else {
		rc = mqtt_topic_validate_name(p->topic); /* [MQTT-3.3.2-2] */
		if (rc)
			return rc;
	}
	p->payload.ptr = r->p;
	p->payload.len = (uint32_t)rd_left(r);
	r->p = r->end;
	return 0;
}

/* PUBACK, PUBREC, PUBREL, PUBCOMP. */
static int dec_ack(rd *r, mqtt_version v, mqtt_type t, mqtt_ack *a)
{
	int rc;

	if ((rc = rd_pid(r, &a->packet_id)) != 0)
		return rc;
	/* 5.0 3.4.2.1: reason and properties may be omitted (length 2 means
	 * Success); length 3 carries a reason and no properties. */
	if (v == MQTT_V5 && rd_left(r) > 0) {
		if ((rc = rd_u8(r, &a->reason)) != 0)
			return rc;
		if (!reason_ok(t, a->reason))
			return MQTT_ERR_PROTOCOL;
		if (rd_left(r) > 0 &&
		    (rc = rd_props(r, MQTT_PCTX_PUBACK, &a->props)) != 0)
			return rc;
	}
	return rd_done(r);
}

/* Checks one SUBSCRIBE Subscription Options byte. */
static int check_subopts(mqtt_version v, uint8_t o)
{
	if (v != MQTT_V5) {
		if (o & 0xFC)
			return MQTT_ERR_MALFORMED; /* [MQTT-3-8.3-4] reserved bits */
		return (o & 0x03) == 3 ? MQTT_ERR_MALFORMED : 0; /* [MQTT-3-8.3-4] */
	}
	if (o & 0xC0)
		return MQTT_ERR_MALFORMED; /* [MQTT-3.8.3-5] reserved bits */
	/* 5.0 3.8.3.1: Maximum QoS 3 and Retain Handling 3 are each "a
	 * Protocol Error". */
	if ((o & MQTT_SUBOPT_QOS_MASK) == 3)
		return MQTT_ERR_PROTOCOL;
	if ((o & MQTT_SUBOPT_RETAIN_HANDLING_MASK) == MQTT_SUBOPT_RETAIN_HANDLING_MASK)
		return MQTT_ERR_PROTOCOL;
	return 0;
}

static int dec_subscribe(rd *r, mqtt_version v, mqtt_type t, mqtt_subscribe *s)
{
	mqtt_prop_ctx ctx;
	int rc;

	if ((rc = rd_pid(r, &s->packet_id)) != 0)
		return rc;
	ctx = t == MQTT_SUBSCRIBE ? MQTT_PCTX_SUBSCRIBE : MQTT_PCTX_UNSUBSCRIBE;
	if (v == MQTT_V5 && (rc = rd_props(r, ctx, &s->props)) != 0)
		return rc;
	s->entries.ptr = r->p;
	s->entries.len = (uint32_t)rd_left(r);
	while (rd_left(r) > 0) {
		mqtt_str f;
		uint8_t o;

		if ((rc = rd_str(r, &f)) != 0)
			return rc; /* [MQTT-3.8.3-1], [MQTT-3.10.3-1] */
		if (t == MQTT_SUBSCRIBE) {
			if ((rc = rd_u8(r, &o)) != 0)
				return rc;
			if ((rc = check_subopts(v, o)) != 0)
				return rc;
		}
		s->count++;
	}
	/* At least one entry [MQTT-3.8.3-3], [MQTT-3.10.3-2]. */
	return s->count ? 0 : MQTT_ERR_PROTOCOL;
}

static int dec_suback(rd *r, mqtt_version v, mqtt_type t, mqtt_suback *s)
{
	mqtt_prop_ctx ctx;
	int rc;

	if ((rc = rd_pid(r, &s->packet_id)) != 0)
		return rc;
	ctx = t == MQTT_SUBACK ? MQTT_PCTX_SUBACK : MQTT_PCTX_UNSUBACK;
	if (v == MQTT_V5 && (rc = rd_props(r, ctx, &s->props)) != 0)
		return rc;
	s->reasons.ptr = r->p;
	s->reasons.len = (uint32_t)rd_left(r);
	if (t == MQTT_UNSUBACK && v != MQTT_V5)
		return rd_done(r); /* 3.1.1 UNSUBACK has no payload */
	if (s->reasons.len == 0)
		return MQTT_ERR_PROTOCOL; /* one code per filter [MQTT-3.9.3-1] */
	for (uint32_t i = 0; i < s->reasons.len; i++) {
		uint8_t code = s->reasons.ptr[i];
		if (v == MQTT_V5 ? !reason_ok(t, code)
				 : (code > 2 && code != 0x80))
			return MQTT_ERR_PROTOCOL; /* [MQTT-3.9.3-2] */
	}
	r->p = r->end;
	return 0;
}

/* DISCONNECT and AUTH: 5.0 3.14.2.1 / 3.15.2.1: remaining length 0 means
 * reason 0 and no properties; length 1 carries only the reason. */
static int dec_disconnect(rd *r, mqtt_version v, mqtt_type t,
			  mqtt_disconnect *d)
{
	mqtt_prop_ctx ctx;
	int rc;

	if (v == MQTT_V5 && rd_left(r) > 0) {
		if ((rc = rd_u8(r, &d->reason)) != 0)
			return rc;
		if (!reason_ok(t, d->reason))
			return MQTT_ERR_PROTOCOL;
		ctx = t == MQTT_AUTH ? MQTT_PCTX_AUTH : MQTT_PCTX_DISCONNECT;
		if (rd_left(r) > 0 && (rc = rd_props(r, ctx, &d->props)) != 0)
			return rc;
	}
	return rd_done(r);
}

int mqtt_packet_size(const uint8_t *buf, size_t len, uint32_t *out)
{
	uint32_t rl;
	int n;

	if (len < 1)
		return MQTT_ERR_NEED_MORE;
	n = mqtt_vbi_decode(buf + 1, len - 1, &rl);
	if (n < 0)
		return n;
	if (out)
		*out = 1u + (uint32_t)n + rl;
	return (int)(1u + (uint32_t)n + rl);
}

int mqtt_decode(const uint8_t *buf, size_t len, mqtt_version version,
		uint32_t max_len, mqtt_packet *pkt)
{
	uint8_t type, flags;
	uint32_t rl, total;
	mqtt_version v = version;
	rd r;
	int n, rc;

	if (len < 1)
		return MQTT_ERR_NEED_MORE;
	type = buf[0] >> 4;
	flags = buf[0] & 0x0F;
	if (type != MQTT_CONNECT && version != MQTT_V31 &&
	    version != MQTT_V311 && version != MQTT_V5)
		return MQTT_ERR_INVALID;
	rc = check_fixed(type, flags, version);
	if (rc)
		return rc;
	n = mqtt_vbi_decode(buf + 1, len - 1, &rl); /* [MQTT-1.5.5] */
	if (n < 0)
		return n;
	total = 1u + (uint32_t)n + rl;
	/* Decided from the fixed header alone, before the body is buffered. */
	if (total > (max_len ? max_len : MQTT_PACKET_MAX))
		return MQTT_ERR_TOO_LARGE;
	if (len < total)
		return MQTT_ERR_NEED_MORE;

	memset(pkt, 0, sizeof(*pkt));
	pkt->type = (mqtt_type)type;
	pkt->flags = flags;
	pkt->remaining_len = rl;
	r.p = buf + 1 + n;
	r.end = buf + total;
	switch (pkt->type) {
	case MQTT_CONNECT:
		rc = dec_connect(&r, &pkt->u.connect);
		break;
	case MQTT_CONNACK:
		rc = dec_connack(&r, v, &pkt->u.connack);
		break;
	case MQTT_PUBLISH:
		rc = dec_publish(&r, v, flags, &pkt->u.publish);
		break;
	case MQTT_PUBACK:
	case MQTT_PUBREC:
	case MQTT_PUBREL:
	case MQTT_PUBCOMP:
		rc = dec_ack(&r, v, pkt->type, &pkt->u.ack);
		break;
	case MQTT_SUBSCRIBE:
	case MQTT_UNSUBSCRIBE:
		rc = dec_subscribe(&r, v, pkt->type, &pkt->u.subscribe);
		break;
	case MQTT_SUBACK:
	case MQTT_UNSUBACK:
		rc = dec_suback(&r, v, pkt->type, &pkt->u.suback);
		break;
	case MQTT_PINGREQ:
	case MQTT_PINGRESP:
		rc = rd_done(&r); /* no variable header or payload */
		break;
	case MQTT_DISCONNECT:
	case MQTT_AUTH:
		rc = dec_disconnect(&r, v, pkt->type, &pkt->u.disconnect);
		break;
	default:
		rc = MQTT_ERR_MALFORMED;
		break;
	}
	return rc ? rc : (int)total;
}

int mqtt_topic_entry_next(const mqtt_subscribe *s, mqtt_type type,
			  uint32_t *off, mqtt_topic_entry *out)
{
	mqtt_bytes f;
	rd r;

	if (*off >= s->entries.len)
		return 0;
	r.p = s->entries.ptr + *off;
	r.end = s->entries.ptr + s->entries.len;
	memset(out, 0, sizeof(*out));
	if (rd_bin(&r, &f) != 0)
		return 0; /* validated by the decoder; stop, never overrun */
	out->filter.ptr = (const char *)f.ptr;
	out->filter.len = f.len;
	if (type == MQTT_SUBSCRIBE && rd_u8(&r, &out->options) != 0)
		return 0;
	*off = (uint32_t)(r.p - s->entries.ptr);
	return 1;
}

/* ---- encoding ---- */

/* Body writer: counts only when buf is NULL; err latches the first error. */
typedef struct wr {
	uint8_t *buf;
	size_t pos;
	int err;
} wr;

static void w_u8(wr *w, uint8_t v)
{
	if (w->buf)
		w->buf[w->pos] = v;
	w->pos++;
}

static void w_u16(wr *w, uint16_t v)
{
	w_u8(w, (uint8_t)(v >> 8));
	w_u8(w, (uint8_t)v);
}

static void w_mem(wr *w, const void *p, size_t n)
{
	if (w->buf && n)
		memcpy(w->buf + w->pos, p, n);
	w->pos += n;
}

static void w_bin(wr *w, const void *p, uint32_t n)
{
	if (n > 65535) {
		w->err = MQTT_ERR_INVALID;
		return;
	}
	w_u16(w, (uint16_t)n);
	w_mem(w, p, n);
}

static void w_str(wr *w, mqtt_str s)
{
	w_bin(w, s.ptr, s.len);
}

static void w_pid(wr *w, uint16_t id)
{
	if (id == 0)
		w->err = MQTT_ERR_INVALID; /* [MQTT-2.3.1-1] */
	w_u16(w, id);
}

static void w_props(wr *w, mqtt_version v, const mqtt_props *p)
{
	size_t n;

	if (v != MQTT_V5)
		return;
	if (p && mqtt_props_check(p)) {
		w->err = MQTT_ERR_INVALID;
		return;
	}
	n = mqtt_props_size(p);
	n += mqtt_vbi_size((uint32_t)n);
	if (w->buf)
		mqtt_props_encode(w->buf + w->pos, n, p);
	w->pos += n;
}

static bool props_empty(const mqtt_props *p)
{
	return mqtt_props_size(p) == 0;
}

static void enc_connect(wr *w, mqtt_version v, const mqtt_connect *c)
{
	uint8_t fl = 0;

	if (v == MQTT_V31)
		w_bin(w, "MQIsdp", 6);
	else
		w_bin(w, "MQTT", 4);
	w_u8(w, (uint8_t)v);
	if (c->will_qos > 2 || (!c->will && (c->will_qos || c->will_retain)) ||
	    (v != MQTT_V5 && c->has_password && !c->has_username))
		w->err = MQTT_ERR_INVALID;
	fl |= c->clean_start ? 0x02 : 0;
	if (c->will)
		fl |= (uint8_t)(0x04 | c->will_qos << 3 | (c->will_retain ? 0x20 : 0));
	fl |= c->has_password ? 0x40 : 0;
	fl |= c->has_username ? 0x80 : 0;
	w_u8(w, fl);
	w_u16(w, c->keep_alive);
	w_props(w, v, &c->props);
	w_str(w, c->client_id);
	if (c->will) {
		w_props(w, v, &c->will_props);
		w_str(w, c->will_topic);
		w_bin(w, c->will_payload.ptr, c->will_payload.len);
	}
	if (c->has_username)
		w_str(w, c->username);
	if (c->has_password)
		w_bin(w, c->password.ptr, c->password.len);
}

static void enc_entries(wr *w, mqtt_version v, mqtt_type t,
			const mqtt_topic_entry *e, uint32_t count)
{
	if (count == 0)
		w->err = MQTT_ERR_INVALID; /* [MQTT-3.8.3-3] */
	for (uint32_t i = 0; i < count; i++) {
		w_str(w, e[i].filter);
		if (t == MQTT_SUBSCRIBE)
			w_u8(w, v == MQTT_V5 ? e[i].options
					     : e[i].options & MQTT_SUBOPT_QOS_MASK);
	}
}

/* Writes the variable header and payload of pkt. `arr` replaces the raw
 * entries of a SUBSCRIBE/UNSUBSCRIBE when non-NULL. */
static void enc_body(wr *w, mqtt_version v, const mqtt_packet *pkt,
		     const mqtt_topic_entry *arr, uint32_t arr_n)
{
	switch (pkt->type) {
	case MQTT_CONNECT:
		enc_connect(w, v, &pkt->u.connect);
		break;
	case MQTT_CONNACK:
		w_u8(w, pkt->u.connack.session_present && v != MQTT_V31);
		w_u8(w, pkt->u.connack.reason);
		w_props(w, v, &pkt->u.connack.props);
		break;
	case MQTT_PUBLISH: {
		const mqtt_publish *p = &pkt->u.publish;
		w_str(w, p->topic);
		if (p->qos > 0)
			w_pid(w, p->packet_id);
		w_props(w, v, &p->props);
		w_mem(w, p->payload.ptr, p->payload.len);
		break;
	}
	case MQTT_PUBACK:
	case MQTT_PUBREC:
	case MQTT_PUBREL:
	case MQTT_PUBCOMP: {
		const mqtt_ack *a = &pkt->u.ack;
		w_pid(w, a->packet_id);
		if (v != MQTT_V5)
			break;
		/* 5.0 3.4.2.1: omit what the defaults already say. */
		if (props_empty(&a->props)) {
			if (a->reason != 0)
				w_u8(w, a->reason);
		} else {
			w_u8(w, a->reason);
			w_props(w, v, &a->props);
		}
		break;
	}
	case MQTT_SUBSCRIBE:
	case MQTT_UNSUBSCRIBE: {
		const mqtt_subscribe *s = &pkt->u.subscribe;
		w_pid(w, s->packet_id);
		w_props(w, v, &s->props);
		if (arr)
			enc_entries(w, v, pkt->type, arr, arr_n);
		else if (s->entries.len == 0)
			w->err = MQTT_ERR_INVALID; /* [MQTT-3.8.3-3] */
		else
			w_mem(w, s->entries.ptr, s->entries.len);
		break;
	}
	case MQTT_SUBACK:
	case MQTT_UNSUBACK: {
		const mqtt_suback *s = &pkt->u.suback;
		w_pid(w, s->packet_id);
		w_props(w, v, &s->props);
		if (pkt->type == MQTT_UNSUBACK && v != MQTT_V5)
			break;
		if (s->reasons.len == 0)
			w->err = MQTT_ERR_INVALID;
		w_mem(w, s->reasons.ptr, s->reasons.len);
		break;
	}
	case MQTT_PINGREQ:
	case MQTT_PINGRESP:
		break;
	case MQTT_DISCONNECT:
	case MQTT_AUTH: {
		const mqtt_disconnect *d = &pkt->u.disconnect;
		if (v != MQTT_V5)
			break;
		if (props_empty(&d->props)) {
			if (d->reason != 0)
				w_u8(w, d->reason);
		} else {
			w_u8(w, d->reason);
			w_props(w, v, &d->props);
		}
		break;
	}
	default:
		w->err = MQTT_ERR_INVALID;
		break;
	}
}

static int fixed_byte(mqtt_version v, const mqtt_packet *pkt, uint8_t *out)
{
	uint8_t fl = 0;

	switch (pkt->type) {
	case MQTT_PUBLISH: {
		const mqtt_publish *p = &pkt->u.publish;
		if (p->qos > 2 || (p->dup && p->qos == 0))
			return MQTT_ERR_INVALID; /* [MQTT-3.3.1-4], [MQTT-3.3.1-2] */
		fl = (uint8_t)((p->dup ? 0x08 : 0) | p->qos << 1 | (p->retain ? 1 : 0));
		break;
	}
	case MQTT_PUBREL:
	case MQTT_SUBSCRIBE:
	case MQTT_UNSUBSCRIBE:
		fl = 0x2;
		break;
	case MQTT_AUTH:
		if (v != MQTT_V5)
			return MQTT_ERR_INVALID;
		break;
	default:
		if (pkt->type < MQTT_CONNECT || pkt->type > MQTT_AUTH)
			return MQTT_ERR_INVALID;
		break;
	}
	*out = (uint8_t)(pkt->type << 4 | fl);
	return 0;
}

static long encode(uint8_t *buf, size_t cap, mqtt_version v,
		   const mqtt_packet *pkt, const mqtt_topic_entry *arr,
		   uint32_t arr_n)
{
	wr w = { NULL, 0, 0 };
	uint8_t b0;
	size_t total, hl;
	int rc;

	if (v != MQTT_V31 && v != MQTT_V311 && v != MQTT_V5)
		return MQTT_ERR_INVALID;
	rc = fixed_byte(v, pkt, &b0);
	if (rc)
		return rc;
	enc_body(&w, v, pkt, arr, arr_n);
	if (w.err)
		return w.err;
	if (w.pos > MQTT_VBI_MAX)
		return MQTT_ERR_INVALID;
	hl = 1 + mqtt_vbi_size((uint32_t)w.pos);
	total = hl + w.pos;
	if (total > cap)
		return (long)total;
	buf[0] = b0;
	mqtt_vbi_encode(buf + 1, (uint32_t)w.pos);
	w = (wr){ buf + hl, 0, 0 };
	enc_body(&w, v, pkt, arr, arr_n);
	return (long)total;
}

long mqtt_encode(uint8_t *buf, size_t cap, mqtt_version version,
		 const mqtt_packet *pkt)
{
	return encode(buf, cap, version, pkt, NULL, 0);
}

long mqtt_encode_subscribe(uint8_t *buf, size_t cap, mqtt_version version,
			   mqtt_type type, uint16_t packet_id,
			   const mqtt_props *props,
			   const mqtt_topic_entry *entries, uint32_t count)
{
	mqtt_packet pkt;

	if ((type != MQTT_SUBSCRIBE && type != MQTT_UNSUBSCRIBE) ||
	    !entries || count == 0)
		return MQTT_ERR_INVALID;
	memset(&pkt, 0, sizeof(pkt));
	pkt.type = type;
	pkt.u.subscribe.packet_id = packet_id;
	if (props)
		pkt.u.subscribe.props = *props;
	return encode(buf, cap, version, &pkt, entries, count);
}

const char *mqtt_type_str(mqtt_type t)
{
	static const char *const names[] = {
		"RESERVED", "CONNECT", "CONNACK", "PUBLISH", "PUBACK",
		"PUBREC", "PUBREL", "PUBCOMP", "SUBSCRIBE", "SUBACK",
		"UNSUBSCRIBE", "UNSUBACK", "PINGREQ", "PINGRESP", "DISCONNECT",
		"AUTH",
	};
	return (unsigned)t < 16 ? names[t] : "UNKNOWN";
}

/*
 * mqtt/props.c — MQTT 5.0 property blocks [MQTT-2.2.2] and Variable Byte
 * Integers [MQTT-1.5.5].
 *
 * One table gives each property's value type and the packets that may carry
 * it (MQTT 5.0 section 2.2.2.2); decode, walk, size and encode all read it.
 * Decoding fills views into the caller's buffer and never allocates.
 * Thread model: pure functions, any thread.
 */
#include "mqtt/props.h"

#include <string.h>

#include "mqtt/error.h"
#include "mqtt/topic.h"
#include "mqtt/utf8.h"

enum prop_type { PT_NONE, PT_BYTE, PT_U16, PT_U32, PT_VBI, PT_STR, PT_BIN, PT_PAIR };

#define IN(x) (1u << MQTT_PCTX_##x)
#define ALL_CTX (IN(CONNECT) | IN(CONNACK) | IN(PUBLISH) | IN(WILL) | \
		 IN(PUBACK) | IN(SUBSCRIBE) | IN(SUBACK) | IN(UNSUBSCRIBE) | \
		 IN(UNSUBACK) | IN(DISCONNECT) | IN(AUTH))

/* Indexed by property id; allowed == 0 means the id is unknown. */
static const struct prop_info {
	uint8_t type;
	uint16_t allowed;
} prop_info[MQTT_PROP_SHARED_SUBSCRIPTION_AVAILABLE + 1] = {
	[MQTT_PROP_PAYLOAD_FORMAT_INDICATOR] = { PT_BYTE, IN(PUBLISH) | IN(WILL) },
	[MQTT_PROP_MESSAGE_EXPIRY_INTERVAL] = { PT_U32, IN(PUBLISH) | IN(WILL) },
	[MQTT_PROP_CONTENT_TYPE] = { PT_STR, IN(PUBLISH) | IN(WILL) },
	[MQTT_PROP_RESPONSE_TOPIC] = { PT_STR, IN(PUBLISH) | IN(WILL) },
	[MQTT_PROP_CORRELATION_DATA] = { PT_BIN, IN(PUBLISH) | IN(WILL) },
	[MQTT_PROP_SUBSCRIPTION_IDENTIFIER] = { PT_VBI, IN(PUBLISH) | IN(SUBSCRIBE) },
	[MQTT_PROP_SESSION_EXPIRY_INTERVAL] = { PT_U32, IN(CONNECT) | IN(CONNACK) | IN(DISCONNECT) },
	[MQTT_PROP_ASSIGNED_CLIENT_IDENTIFIER] = { PT_STR, IN(CONNACK) },
	[MQTT_PROP_SERVER_KEEP_ALIVE] = { PT_U16, IN(CONNACK) },
	[MQTT_PROP_AUTHENTICATION_METHOD] = { PT_STR, IN(CONNECT) | IN(CONNACK) | IN(AUTH) },
	[MQTT_PROP_AUTHENTICATION_DATA] = { PT_BIN, IN(CONNECT) | IN(CONNACK) | IN(AUTH) },
	[MQTT_PROP_REQUEST_PROBLEM_INFORMATION] = { PT_BYTE, IN(CONNECT) },
	[MQTT_PROP_WILL_DELAY_INTERVAL] = { PT_U32, IN(WILL) },
	[MQTT_PROP_REQUEST_RESPONSE_INFORMATION] = { PT_BYTE, IN(CONNECT) },
	[MQTT_PROP_RESPONSE_INFORMATION] = { PT_STR, IN(CONNACK) },
	[MQTT_PROP_SERVER_REFERENCE] = { PT_STR, IN(CONNACK) | IN(DISCONNECT) },
	[MQTT_PROP_REASON_STRING] = { PT_STR, IN(CONNACK) | IN(PUBACK) | IN(SUBACK) |
				      IN(UNSUBACK) | IN(DISCONNECT) | IN(AUTH) },
	[MQTT_PROP_RECEIVE_MAXIMUM] = { PT_U16, IN(CONNECT) | IN(CONNACK) },
	[MQTT_PROP_TOPIC_ALIAS_MAXIMUM] = { PT_U16, IN(CONNECT) | IN(CONNACK) },
	[MQTT_PROP_TOPIC_ALIAS] = { PT_U16, IN(PUBLISH) },
	[MQTT_PROP_MAXIMUM_QOS] = { PT_BYTE, IN(CONNACK) },
	[MQTT_PROP_RETAIN_AVAILABLE] = { PT_BYTE, IN(CONNACK) },
	[MQTT_PROP_USER_PROPERTY] = { PT_PAIR, ALL_CTX },
	[MQTT_PROP_MAXIMUM_PACKET_SIZE] = { PT_U32, IN(CONNECT) | IN(CONNACK) },
	[MQTT_PROP_WILDCARD_SUBSCRIPTION_AVAILABLE] = { PT_BYTE, IN(CONNACK) },
	[MQTT_PROP_SUBSCRIPTION_IDENTIFIER_AVAILABLE] = { PT_BYTE, IN(CONNACK) },
	[MQTT_PROP_SHARED_SUBSCRIPTION_AVAILABLE] = { PT_BYTE, IN(CONNACK) },
};

#define PROP_ID_MAX MQTT_PROP_SHARED_SUBSCRIPTION_AVAILABLE

static uint8_t prop_type(uint32_t id)
{
	return id <= PROP_ID_MAX ? prop_info[id].type : PT_NONE;
}

/* ---- Variable Byte Integer [MQTT-1.5.5] ---- */

int mqtt_vbi_decode(const uint8_t *buf, size_t len, uint32_t *out)
{
	uint32_t v = 0;

	for (size_t i = 0; i < 4; i++) {
		if (i >= len)
			return MQTT_ERR_NEED_MORE;
		v |= (uint32_t)(buf[i] & 0x7F) << (7 * i);
		if (!(buf[i] & 0x80)) {
			/* [MQTT-1.5.5-1] minimum number of bytes: a last byte
			 * of 0 after the first means a padded encoding. */
			if (i > 0 && buf[i] == 0)
				return MQTT_ERR_MALFORMED;
			*out = v;
			return (int)i + 1;
		}
	}
	return MQTT_ERR_MALFORMED; /* a fifth byte [MQTT-1.5.5] */
}

size_t mqtt_vbi_size(uint32_t v)
{
	return v < 128u ? 1 : v < 16384u ? 2 : v < 2097152u ? 3 : 4;
}

size_t mqtt_vbi_encode(uint8_t *buf, uint32_t v)
{
	size_t n = 0;

	do {
		uint8_t b = v & 0x7F;
		v >>= 7;
		buf[n++] = (uint8_t)(b | (v ? 0x80 : 0));
	} while (v && n < 4);
	return n;
}

/* ---- reading values ---- */

/* Reads one value of `type` at *pp; checks UTF-8 when check_utf8. */
static int read_value(const uint8_t **pp, const uint8_t *end, uint8_t type,
		      bool check_utf8, mqtt_prop *v)
{
	const uint8_t *p = *pp;
	size_t avail = (size_t)(end - p);
	int n;

	switch (type) {
	case PT_BYTE:
		if (avail < 1)
			return MQTT_ERR_MALFORMED;
		v->u32 = p[0];
		p += 1;
		break;
	case PT_U16:
		if (avail < 2)
			return MQTT_ERR_MALFORMED;
		v->u32 = (uint32_t)p[0] << 8 | p[1];
		p += 2;
		break;
	case PT_U32:
		if (avail < 4)
			return MQTT_ERR_MALFORMED;
		v->u32 = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
			 (uint32_t)p[2] << 8 | p[3];
		p += 4;
		break;
	case PT_VBI:
		n = mqtt_vbi_decode(p, avail, &v->u32);
		if (n < 0)
			return MQTT_ERR_MALFORMED;
		p += n;
		break;
	case PT_STR:
	case PT_BIN:
	case PT_PAIR:
		for (int k = 0; k < (type == PT_PAIR ? 2 : 1); k++) {
			uint32_t l;
			if ((size_t)(end - p) < 2)
				return MQTT_ERR_MALFORMED;
			l = (uint32_t)p[0] << 8 | p[1];
			p += 2;
			if ((size_t)(end - p) < l)
				return MQTT_ERR_MALFORMED;
			if (type != PT_BIN && check_utf8 &&
			    mqtt_utf8_validate(p, l) != 0)
				return MQTT_ERR_UTF8; /* [MQTT-1.5.4-1,2] */
			if (type == PT_BIN) {
				v->bin.ptr = p;
				v->bin.len = l;
			} else if (k == 0) {
				v->str.ptr = (const char *)p;
				v->str.len = l;
			} else {
				v->str2.ptr = (const char *)p;
				v->str2.len = l;
			}
			p += l;
		}
		break;
	default:
		return MQTT_ERR_PROPERTY;
	}
	*pp = p;
	return 0;
}

/* Value-range rules; every violation is a Protocol Error in MQTT 5.0. */
static int check_range(uint32_t id, const mqtt_prop *v)
{
	switch (id) {
	case MQTT_PROP_PAYLOAD_FORMAT_INDICATOR:      /* 3.3.2.3.2: 0 or 1 */
	case MQTT_PROP_REQUEST_PROBLEM_INFORMATION:   /* 3.1.2.11.7 */
	case MQTT_PROP_REQUEST_RESPONSE_INFORMATION:  /* 3.1.2.11.6 */
	case MQTT_PROP_MAXIMUM_QOS:                   /* 3.2.2.3.4 */
	case MQTT_PROP_RETAIN_AVAILABLE:              /* 3.2.2.3.5 */
	case MQTT_PROP_WILDCARD_SUBSCRIPTION_AVAILABLE:
	case MQTT_PROP_SUBSCRIPTION_IDENTIFIER_AVAILABLE:
	case MQTT_PROP_SHARED_SUBSCRIPTION_AVAILABLE:
		return v->u32 > 1 ? MQTT_ERR_PROTOCOL : 0;
	case MQTT_PROP_RECEIVE_MAXIMUM:      /* 3.1.2.11.3: 0 is an error */
	case MQTT_PROP_MAXIMUM_PACKET_SIZE:  /* 3.1.2.11.4: 0 is an error */
	case MQTT_PROP_TOPIC_ALIAS:          /* [MQTT-3.3.2-8]: 0 not allowed */
	case MQTT_PROP_SUBSCRIPTION_IDENTIFIER: /* 3.8.2.1.2: 1..268435455 */
		return v->u32 == 0 ? MQTT_ERR_PROTOCOL : 0;
	case MQTT_PROP_RESPONSE_TOPIC:
		/* [MQTT-3.3.2-14] a Topic Name: no wildcards, non-empty. */
		return mqtt_topic_validate_name(v->str) ? MQTT_ERR_PROTOCOL : 0;
	default:
		return 0;
	}
}

static void store(mqtt_props *o, uint32_t id, const mqtt_prop *v)
{
	switch (id) {
	case MQTT_PROP_PAYLOAD_FORMAT_INDICATOR: o->payload_format = (uint8_t)v->u32; break;
	case MQTT_PROP_MESSAGE_EXPIRY_INTERVAL: o->message_expiry = v->u32; break;
	case MQTT_PROP_CONTENT_TYPE: o->content_type = v->str; break;
	case MQTT_PROP_RESPONSE_TOPIC: o->response_topic = v->str; break;
	case MQTT_PROP_CORRELATION_DATA: o->correlation_data = v->bin; break;
	case MQTT_PROP_SUBSCRIPTION_IDENTIFIER:
		if (o->sub_id_count++ == 0)
			o->sub_id = v->u32;
		break;
	case MQTT_PROP_SESSION_EXPIRY_INTERVAL: o->session_expiry = v->u32; break;
	case MQTT_PROP_ASSIGNED_CLIENT_IDENTIFIER: o->assigned_client_id = v->str; break;
	case MQTT_PROP_SERVER_KEEP_ALIVE: o->server_keep_alive = (uint16_t)v->u32; break;
	case MQTT_PROP_AUTHENTICATION_METHOD: o->auth_method = v->str; break;
	case MQTT_PROP_AUTHENTICATION_DATA: o->auth_data = v->bin; break;
	case MQTT_PROP_REQUEST_PROBLEM_INFORMATION: o->request_problem_info = (uint8_t)v->u32; break;
	case MQTT_PROP_WILL_DELAY_INTERVAL: o->will_delay = v->u32; break;
	case MQTT_PROP_REQUEST_RESPONSE_INFORMATION: o->request_response_info = (uint8_t)v->u32; break;
	case MQTT_PROP_RESPONSE_INFORMATION: o->response_info = v->str; break;
	case MQTT_PROP_SERVER_REFERENCE: o->server_reference = v->str; break;
	case MQTT_PROP_REASON_STRING: o->reason_string = v->str; break;
	case MQTT_PROP_RECEIVE_MAXIMUM: o->receive_maximum = (uint16_t)v->u32; break;
	case MQTT_PROP_TOPIC_ALIAS_MAXIMUM: o->topic_alias_maximum = (uint16_t)v->u32; break;
	case MQTT_PROP_TOPIC_ALIAS: o->topic_alias = (uint16_t)v->u32; break;
	case MQTT_PROP_MAXIMUM_QOS: o->maximum_qos = (uint8_t)v->u32; break;
	case MQTT_PROP_RETAIN_AVAILABLE: o->retain_available = (uint8_t)v->u32; break;
	case MQTT_PROP_USER_PROPERTY: o->user_count++; break;
	case MQTT_PROP_MAXIMUM_PACKET_SIZE: o->maximum_packet_size = v->u32; break;
	case MQTT_PROP_WILDCARD_SUBSCRIPTION_AVAILABLE: o->wildcard_sub_available = (uint8_t)v->u32; break;
	case MQTT_PROP_SUBSCRIPTION_IDENTIFIER_AVAILABLE: o->sub_id_available = (uint8_t)v->u32; break;
	case MQTT_PROP_SHARED_SUBSCRIPTION_AVAILABLE: o->shared_sub_available = (uint8_t)v->u32; break;
	default: break;
	}
}

int mqtt_props_decode(const uint8_t *buf, size_t len, mqtt_prop_ctx ctx,
		      mqtt_props *out)
{
	const uint8_t *p, *end;
	uint32_t plen;
	int n, rc;

	memset(out, 0, sizeof(*out));
	n = mqtt_vbi_decode(buf, len, &plen);
	if (n < 0)
		return MQTT_ERR_MALFORMED; /* the packet is complete here */
	if (plen > len - (size_t)n)
		return MQTT_ERR_MALFORMED; /* block overruns its packet */
	p = buf + n;
	end = p + plen;
	out->raw.ptr = p;
	out->raw.len = plen;
	while (p < end) {
		mqtt_prop v;
		uint32_t id;
		int k = mqtt_vbi_decode(p, (size_t)(end - p), &id);

		if (k < 0)
			return MQTT_ERR_MALFORMED;
		p += k;
		/* Unknown identifier: "a Malformed Packet" (2.2.2.2). */
		if (id > PROP_ID_MAX || prop_info[id].allowed == 0)
			return MQTT_ERR_PROPERTY;
		/* Each property belongs to the packets of table 2.2.2.2. */
		if (!(prop_info[id].allowed & (1u << ctx)))
			return MQTT_ERR_PROPERTY;
		/* Only User Property may repeat, and Subscription Identifier in
		 * PUBLISH (3.3.2.3.8); it is a Protocol Error to include any
		 * other more than once, SUBSCRIBE's identifier included. */
		if ((out->present & MQTT_PROP_BIT(id)) &&
		    id != MQTT_PROP_USER_PROPERTY &&
		    !(id == MQTT_PROP_SUBSCRIPTION_IDENTIFIER &&
		      ctx == MQTT_PCTX_PUBLISH))
			return MQTT_ERR_PROPERTY;
		memset(&v, 0, sizeof(v));
		rc = read_value(&p, end, prop_info[id].type, true, &v);
		if (rc)
			return rc;
		rc = check_range(id, &v);
		if (rc)
			return rc;
		store(out, id, &v);
		out->present |= MQTT_PROP_BIT(id);
	}
	/* 3.1.2.11.10 / 3.2.2.3.18 / 3.15.2.2.3: Authentication Data without
	 * an Authentication Method is a Protocol Error. */
	if ((out->present & MQTT_PROP_BIT(MQTT_PROP_AUTHENTICATION_DATA)) &&
	    !(out->present & MQTT_PROP_BIT(MQTT_PROP_AUTHENTICATION_METHOD)))
		return MQTT_ERR_PROTOCOL;
	return n + (int)plen;
}

int mqtt_props_next(mqtt_bytes raw, uint32_t *off, mqtt_prop *out)
{
	const uint8_t *p, *end;
	uint32_t id;
	int k;

	if (*off >= raw.len)
		return 0;
	p = raw.ptr + *off;
	end = raw.ptr + raw.len;
	k = mqtt_vbi_decode(p, (size_t)(end - p), &id);
	/* The block was validated; stop rather than trust a bad one. */
	if (k < 0 || prop_type(id) == PT_NONE)
		return 0;
	p += k;
	memset(out, 0, sizeof(*out));
	out->id = (uint8_t)id;
	if (read_value(&p, end, prop_type(id), false, out) != 0)
		return 0;
	*off = (uint32_t)(p - raw.ptr);
	return 1;
}

/* ---- encoding ---- */

/* Size of one property of `id` (identifier included). */
static size_t value_size(uint32_t id, const mqtt_prop *v)
{
	switch (prop_type(id)) {
	case PT_BYTE: return 2;
	case PT_U16: return 3;
	case PT_U32: return 5;
	case PT_VBI: return 1 + mqtt_vbi_size(v->u32);
	case PT_STR: return 3 + (size_t)v->str.len;
	case PT_BIN: return 3 + (size_t)v->bin.len;
	case PT_PAIR: return 5 + (size_t)v->str.len + v->str2.len;
	default: return 0;
	}
}

static uint8_t *put_u16(uint8_t *q, uint32_t v)
{
	q[0] = (uint8_t)(v >> 8);
	q[1] = (uint8_t)v;
	return q + 2;
}

static uint8_t *put_value(uint8_t *q, uint32_t id, const mqtt_prop *v)
{
	*q++ = (uint8_t)id;
	switch (prop_type(id)) {
	case PT_BYTE:
		*q++ = (uint8_t)v->u32;
		break;
	case PT_U16:
		q = put_u16(q, v->u32);
		break;
	case PT_U32:
		q = put_u16(q, v->u32 >> 16);
		q = put_u16(q, v->u32 & 0xFFFF);
		break;
	case PT_VBI:
		q += mqtt_vbi_encode(q, v->u32);
		break;
	case PT_BIN:
		q = put_u16(q, v->bin.len);
		if (v->bin.len)
			memcpy(q, v->bin.ptr, v->bin.len);
		q += v->bin.len;
		break;
	case PT_STR:
	case PT_PAIR:
		q = put_u16(q, v->str.len);
		if (v->str.len)
			memcpy(q, v->str.ptr, v->str.len);
		q += v->str.len;
		if (prop_type(id) == PT_PAIR) {
			q = put_u16(q, v->str2.len);
			if (v->str2.len)
				memcpy(q, v->str2.ptr, v->str2.len);
			q += v->str2.len;
		}
		break;
	default:
		break;
	}
	return q;
}

/* Fills v with the single-valued property id of p. */
static void load(const mqtt_props *p, uint32_t id, mqtt_prop *v)
{
	memset(v, 0, sizeof(*v));
	switch (id) {
	case MQTT_PROP_PAYLOAD_FORMAT_INDICATOR: v->u32 = p->payload_format; break;
	case MQTT_PROP_MESSAGE_EXPIRY_INTERVAL: v->u32 = p->message_expiry; break;
	case MQTT_PROP_CONTENT_TYPE: v->str = p->content_type; break;
	case MQTT_PROP_RESPONSE_TOPIC: v->str = p->response_topic; break;
	case MQTT_PROP_CORRELATION_DATA: v->bin = p->correlation_data; break;
	case MQTT_PROP_SUBSCRIPTION_IDENTIFIER: v->u32 = p->sub_id; break;
	case MQTT_PROP_SESSION_EXPIRY_INTERVAL: v->u32 = p->session_expiry; break;
	case MQTT_PROP_ASSIGNED_CLIENT_IDENTIFIER: v->str = p->assigned_client_id; break;
	case MQTT_PROP_SERVER_KEEP_ALIVE: v->u32 = p->server_keep_alive; break;
	case MQTT_PROP_AUTHENTICATION_METHOD: v->str = p->auth_method; break;
	case MQTT_PROP_AUTHENTICATION_DATA: v->bin = p->auth_data; break;
	case MQTT_PROP_REQUEST_PROBLEM_INFORMATION: v->u32 = p->request_problem_info; break;
	case MQTT_PROP_WILL_DELAY_INTERVAL: v->u32 = p->will_delay; break;
	case MQTT_PROP_REQUEST_RESPONSE_INFORMATION: v->u32 = p->request_response_info; break;
	case MQTT_PROP_RESPONSE_INFORMATION: v->str = p->response_info; break;
	case MQTT_PROP_SERVER_REFERENCE: v->str = p->server_reference; break;
	case MQTT_PROP_REASON_STRING: v->str = p->reason_string; break;
	case MQTT_PROP_RECEIVE_MAXIMUM: v->u32 = p->receive_maximum; break;
	case MQTT_PROP_TOPIC_ALIAS_MAXIMUM: v->u32 = p->topic_alias_maximum; break;
	case MQTT_PROP_TOPIC_ALIAS: v->u32 = p->topic_alias; break;
	case MQTT_PROP_MAXIMUM_QOS: v->u32 = p->maximum_qos; break;
	case MQTT_PROP_RETAIN_AVAILABLE: v->u32 = p->retain_available; break;
	case MQTT_PROP_MAXIMUM_PACKET_SIZE: v->u32 = p->maximum_packet_size; break;
	case MQTT_PROP_WILDCARD_SUBSCRIPTION_AVAILABLE: v->u32 = p->wildcard_sub_available; break;
	case MQTT_PROP_SUBSCRIPTION_IDENTIFIER_AVAILABLE: v->u32 = p->sub_id_available; break;
	case MQTT_PROP_SHARED_SUBSCRIPTION_AVAILABLE: v->u32 = p->shared_sub_available; break;
	default: break;
	}
}

/*
 * Visits every property p encodes, in wire order: the single-valued ones by
 * id, then User Properties from user_raw and user[], then Subscription
 * Identifiers from sub_ids[] (or the single sub_id when sub_ids is NULL).
 * With q == NULL it only sums sizes.
 */
static size_t walk_encode(const mqtt_props *p, uint8_t *q)
{
	size_t n = 0;
	mqtt_prop v;

	for (uint32_t id = 1; id <= PROP_ID_MAX; id++) {
		if (prop_info[id].allowed == 0 || id == MQTT_PROP_USER_PROPERTY ||
		    !(p->present & MQTT_PROP_BIT(id)))
			continue;
		if (id == MQTT_PROP_SUBSCRIPTION_IDENTIFIER && p->sub_ids)
			continue;
		load(p, id, &v);
		n += value_size(id, &v);
		if (q)
			q = put_value(q, id, &v);
	}
	if (p->user_raw.len) {
		uint32_t off = 0;
		while (mqtt_props_next(p->user_raw, &off, &v) == 1) {
			if (v.id != MQTT_PROP_USER_PROPERTY)
				continue;
			n += value_size(v.id, &v);
			if (q)
				q = put_value(q, v.id, &v);
		}
	}
	for (uint32_t i = 0; p->user && i < p->user_count; i++) {
		memset(&v, 0, sizeof(v));
		v.str = p->user[i].key;
		v.str2 = p->user[i].value;
		n += value_size(MQTT_PROP_USER_PROPERTY, &v);
		if (q)
			q = put_value(q, MQTT_PROP_USER_PROPERTY, &v);
	}
	for (uint32_t i = 0; p->sub_ids && i < p->sub_id_count; i++) {
		memset(&v, 0, sizeof(v));
		v.u32 = p->sub_ids[i];
		n += value_size(MQTT_PROP_SUBSCRIPTION_IDENTIFIER, &v);
		if (q)
			q = put_value(q, MQTT_PROP_SUBSCRIPTION_IDENTIFIER, &v);
	}
	return n;
}

size_t mqtt_props_size(const mqtt_props *p)
{
	return p ? walk_encode(p, NULL) : 0;
}

size_t mqtt_props_encode(uint8_t *buf, size_t cap, const mqtt_props *p)
{
	size_t body = mqtt_props_size(p);
	size_t total = mqtt_vbi_size((uint32_t)body) + body;

	if (total > cap)
		return total;
	buf += mqtt_vbi_encode(buf, (uint32_t)body);
	if (p)
		walk_encode(p, buf);
	return total;
}

int mqtt_props_check(const mqtt_props *p)
{
	const mqtt_str strs[] = {
		p->content_type, p->response_topic, p->assigned_client_id,
		p->auth_method, p->response_info, p->server_reference,
		p->reason_string,
	};
	uint64_t total = 0;

	for (size_t i = 0; i < sizeof(strs) / sizeof(strs[0]); i++)
		if (strs[i].len > 65535)
			return MQTT_ERR_INVALID;
	if (p->correlation_data.len > 65535 || p->auth_data.len > 65535)
		return MQTT_ERR_INVALID;
	if ((p->present & MQTT_PROP_BIT(MQTT_PROP_SUBSCRIPTION_IDENTIFIER)) &&
	    !p->sub_ids && (p->sub_id == 0 || p->sub_id > MQTT_VBI_MAX))
		return MQTT_ERR_INVALID;
	for (uint32_t i = 0; p->sub_ids && i < p->sub_id_count; i++)
		if (p->sub_ids[i] == 0 || p->sub_ids[i] > MQTT_VBI_MAX)
			return MQTT_ERR_INVALID;
	for (uint32_t i = 0; p->user && i < p->user_count; i++) {
		if (p->user[i].key.len > 65535 || p->user[i].value.len > 65535)
			return MQTT_ERR_INVALID;
		total += 5u + p->user[i].key.len + p->user[i].value.len;
	}
	/* Bound the sum before mqtt_props_size() can wrap on a 32-bit size_t. */
	total += (uint64_t)p->user_raw.len + 9u * 65540u +
		 5u * (uint64_t)(p->sub_ids ? p->sub_id_count : 1);
	if (total > MQTT_VBI_MAX && mqtt_props_size(p) > MQTT_VBI_MAX)
		return MQTT_ERR_INVALID;
	return 0;
}

/*
 * mqtt/props.h — MQTT 5.0 properties [MQTT-2.2.2]: decoding a property
 * block into a flat struct of views, validating which properties each packet
 * may carry, and encoding a struct back.
 *
 * Decoding never allocates: string and binary values are views into the
 * packet buffer; User Properties and Subscription Identifiers, which may
 * repeat, are kept as the raw block and walked with mqtt_props_next().
 * Thread model: pure functions, any thread.
 */
#ifndef SHIMMY_MQTT_PROPS_H
#define SHIMMY_MQTT_PROPS_H

#include "mqtt/types.h"

/* Property identifiers [MQTT-2.2.2.2]. */
typedef enum mqtt_prop_id {
	MQTT_PROP_PAYLOAD_FORMAT_INDICATOR = 0x01,   /* byte */
	MQTT_PROP_MESSAGE_EXPIRY_INTERVAL = 0x02,    /* u32 */
	MQTT_PROP_CONTENT_TYPE = 0x03,               /* utf8 */
	MQTT_PROP_RESPONSE_TOPIC = 0x08,             /* utf8 */
	MQTT_PROP_CORRELATION_DATA = 0x09,           /* binary */
	MQTT_PROP_SUBSCRIPTION_IDENTIFIER = 0x0B,    /* vbi, 1..268435455 */
	MQTT_PROP_SESSION_EXPIRY_INTERVAL = 0x11,    /* u32 */
	MQTT_PROP_ASSIGNED_CLIENT_IDENTIFIER = 0x12, /* utf8 */
	MQTT_PROP_SERVER_KEEP_ALIVE = 0x13,          /* u16 */
	MQTT_PROP_AUTHENTICATION_METHOD = 0x15,      /* utf8 */
	MQTT_PROP_AUTHENTICATION_DATA = 0x16,        /* binary */
	MQTT_PROP_REQUEST_PROBLEM_INFORMATION = 0x17,/* byte 0/1 */
	MQTT_PROP_WILL_DELAY_INTERVAL = 0x18,        /* u32 */
	MQTT_PROP_REQUEST_RESPONSE_INFORMATION = 0x19,/* byte 0/1 */
	MQTT_PROP_RESPONSE_INFORMATION = 0x1A,       /* utf8 */
	MQTT_PROP_SERVER_REFERENCE = 0x1C,           /* utf8 */
	MQTT_PROP_REASON_STRING = 0x1F,              /* utf8 */
	MQTT_PROP_RECEIVE_MAXIMUM = 0x21,            /* u16, != 0 */
	MQTT_PROP_TOPIC_ALIAS_MAXIMUM = 0x22,        /* u16 */
	MQTT_PROP_TOPIC_ALIAS = 0x23,                /* u16, != 0 */
	MQTT_PROP_MAXIMUM_QOS = 0x24,                /* byte 0/1 */
	MQTT_PROP_RETAIN_AVAILABLE = 0x25,           /* byte 0/1 */
	MQTT_PROP_USER_PROPERTY = 0x26,              /* utf8 pair, repeats */
	MQTT_PROP_MAXIMUM_PACKET_SIZE = 0x27,        /* u32, != 0 */
	MQTT_PROP_WILDCARD_SUBSCRIPTION_AVAILABLE = 0x28, /* byte 0/1 */
	MQTT_PROP_SUBSCRIPTION_IDENTIFIER_AVAILABLE = 0x29, /* byte 0/1 */
	MQTT_PROP_SHARED_SUBSCRIPTION_AVAILABLE = 0x2A, /* byte 0/1 */
} mqtt_prop_id;

/* Where a property block sits; selects the allowed set [MQTT-2.2.2.2]. */
typedef enum mqtt_prop_ctx {
	MQTT_PCTX_CONNECT = 1,
	MQTT_PCTX_CONNACK,
	MQTT_PCTX_PUBLISH,
	MQTT_PCTX_WILL,
	MQTT_PCTX_PUBACK, /* also PUBREC, PUBREL, PUBCOMP */
	MQTT_PCTX_SUBSCRIBE,
	MQTT_PCTX_SUBACK,
	MQTT_PCTX_UNSUBSCRIBE,
	MQTT_PCTX_UNSUBACK,
	MQTT_PCTX_DISCONNECT,
	MQTT_PCTX_AUTH,
} mqtt_prop_ctx;

/* Presence bit of a property in mqtt_props.present. */
#define MQTT_PROP_BIT(id) (1ull << (id))

/* One User Property, for encoding. Views borrowed for the encode call. */
typedef struct mqtt_user_prop {
	mqtt_str key;
	mqtt_str value;
} mqtt_user_prop;

/*
 * Flat view of a property block. After decoding, a field is meaningful only
 * if its bit is set in `present`. For encoding, set the fields and bits.
 *
 * Repeating properties:
 *  - decode: `raw` is the whole block (after its length), and `user_count`
 *    and `sub_id_count` count the User Properties and Subscription
 *    Identifiers in it; `sub_id` holds the first Subscription Identifier.
 *    Walk them with mqtt_props_next().
 *  - encode: the encoder writes the User Properties found in `user_raw` (a
 *    raw block such as a decoded `raw`, other property ids in it skipped),
 *    then `user[0..user_count)` (only when `user` is non-NULL), then
 *    `sub_ids[0..sub_id_count)` when `sub_ids` is non-NULL, or else the
 *    single `sub_id` when its bit is set in `present`. `raw` is ignored by
 *    the encoder, as is the User Property bit of `present`. So a decoded
 *    struct re-encodes as is, once `user_raw` is set to its `raw`.
 */
typedef struct mqtt_props {
	uint64_t present;
	uint8_t payload_format;
	uint8_t request_problem_info;
	uint8_t request_response_info;
	uint8_t maximum_qos;
	uint8_t retain_available;
	uint8_t wildcard_sub_available;
	uint8_t sub_id_available;
	uint8_t shared_sub_available;
	uint16_t server_keep_alive;
	uint16_t receive_maximum;
	uint16_t topic_alias_maximum;
	uint16_t topic_alias;
	uint32_t message_expiry;
	uint32_t session_expiry;
	uint32_t will_delay;
	uint32_t maximum_packet_size;
	uint32_t sub_id;
	mqtt_str content_type;
	mqtt_str response_topic;
	mqtt_bytes correlation_data;
	mqtt_str assigned_client_id;
	mqtt_str auth_method;
	mqtt_bytes auth_data;
	mqtt_str response_info;
	mqtt_str server_reference;
	mqtt_str reason_string;

	mqtt_bytes raw;        /* decode: the whole block */
	uint32_t user_count;   /* decode: count in raw; encode: count in user[] */
	uint32_t sub_id_count; /* decode: count in raw; encode: count in sub_ids[] */
	mqtt_bytes user_raw;   /* encode only */
	const mqtt_user_prop *user;   /* encode only */
	const uint32_t *sub_ids;      /* encode only */
} mqtt_props;

/* One property as walked by mqtt_props_next(). */
typedef struct mqtt_prop {
	uint8_t id;
	uint32_t u32;    /* byte, u16, u32 and vbi values */
	mqtt_str str;    /* utf8 values; key of a User Property */
	mqtt_str str2;   /* value of a User Property */
	mqtt_bytes bin;  /* binary values */
} mqtt_prop;

/*
 * Decodes and validates the property block at buf[0..len) (starting with its
 * Property Length VBI) for context ctx. Checks: known ids, ids allowed in ctx,
 * no duplicates except User Property and (PUBLISH only) Subscription
 * Identifier, value ranges ([MQTT-3.1.2-21] etc.), UTF-8 of strings.
 * On success returns bytes consumed (> 0) and fills *out. Errors:
 * MQTT_ERR_MALFORMED, MQTT_ERR_PROTOCOL (value out of range, e.g. Receive
 * Maximum 0), MQTT_ERR_PROPERTY (unknown, not allowed, or duplicate),
 * MQTT_ERR_UTF8. Never reads past buf+len.
 */
int mqtt_props_decode(const uint8_t *buf, size_t len, mqtt_prop_ctx ctx,
		      mqtt_props *out);

/*
 * Walks a raw block previously validated by mqtt_props_decode(). *off starts
 * at 0. Returns 1 and fills *out for each property, 0 at the end.
 */
int mqtt_props_next(mqtt_bytes raw, uint32_t *off, mqtt_prop *out);

/*
 * Checks that p can be encoded: strings and binaries at most 65535 bytes,
 * Subscription Identifiers within 1..MQTT_VBI_MAX, the block at most
 * MQTT_VBI_MAX bytes. Returns 0 or MQTT_ERR_INVALID. mqtt_encode() calls it;
 * mqtt_props_size() and mqtt_props_encode() assume it holds.
 */
int mqtt_props_check(const mqtt_props *p);

/* Bytes the block of p takes when encoded, excluding its length VBI. */
size_t mqtt_props_size(const mqtt_props *p);

/*
 * Encodes p's length VBI and block into buf[0..cap). Returns the total size
 * needed; writes only when that is <= cap (snprintf-style). p may be NULL
 * (an empty block, one byte 0x00).
 */
size_t mqtt_props_encode(uint8_t *buf, size_t cap, const mqtt_props *p);

/* Variable Byte Integer helpers [MQTT-1.5.5]. */
/* Returns bytes read (1..4), MQTT_ERR_NEED_MORE, or MQTT_ERR_MALFORMED. */
int mqtt_vbi_decode(const uint8_t *buf, size_t len, uint32_t *out);
/* Size of v's encoding (1..4); v must be <= MQTT_VBI_MAX. */
size_t mqtt_vbi_size(uint32_t v);
/* Writes v; buf must have mqtt_vbi_size(v) bytes. Returns that size. */
size_t mqtt_vbi_encode(uint8_t *buf, uint32_t v);

#endif

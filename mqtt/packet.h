/*
 * mqtt/packet.h — sans-IO decoder and encoder for every control packet of
 * MQTT 3.1, 3.1.1 and 5.0.
 *
 * mqtt_decode() is a pure function: the packet it fills is a set of views
 * into the caller's buffer, valid while that buffer is. It never allocates,
 * touches a descriptor or reads the clock. Encoders write into the caller's
 * buffer and return the size they need, as snprintf does.
 * Thread model: pure functions, any thread.
 */
#ifndef SHIMMY_MQTT_PACKET_H
#define SHIMMY_MQTT_PACKET_H

#include "mqtt/error.h"
#include "mqtt/props.h"
#include "mqtt/reason.h"
#include "mqtt/types.h"

typedef enum mqtt_type {
	MQTT_CONNECT = 1,
	MQTT_CONNACK = 2,
	MQTT_PUBLISH = 3,
	MQTT_PUBACK = 4,
	MQTT_PUBREC = 5,
	MQTT_PUBREL = 6,
	MQTT_PUBCOMP = 7,
	MQTT_SUBSCRIBE = 8,
	MQTT_SUBACK = 9,
	MQTT_UNSUBSCRIBE = 10,
	MQTT_UNSUBACK = 11,
	MQTT_PINGREQ = 12,
	MQTT_PINGRESP = 13,
	MQTT_DISCONNECT = 14,
	MQTT_AUTH = 15, /* 5.0 only */
} mqtt_type;

typedef struct mqtt_connect {
	mqtt_version version;   /* from the protocol level byte */
	bool clean_start;       /* Clean Session in 3.1.1 */
	uint16_t keep_alive;    /* seconds */
	mqtt_props props;       /* 5.0 only; present == 0 otherwise */
	mqtt_str client_id;     /* may be empty */
	bool will;
	uint8_t will_qos;
	bool will_retain;
	mqtt_props will_props;  /* 5.0 only */
	mqtt_str will_topic;
	mqtt_bytes will_payload;
	bool has_username;
	mqtt_str username;
	bool has_password;
	mqtt_bytes password;
} mqtt_connect;

typedef struct mqtt_connack {
	bool session_present;
	/* 5.0 reason code; for 3.1/3.1.1 the return code (0..5). */
	uint8_t reason;
	mqtt_props props;
} mqtt_connack;

typedef struct mqtt_publish {
	uint8_t qos;
	bool dup;
	bool retain;
	mqtt_str topic;        /* may be empty in 5.0 when a Topic Alias is set */
	uint16_t packet_id;    /* 0 for QoS 0 */
	mqtt_props props;
	mqtt_bytes payload;
} mqtt_publish;

/* PUBACK, PUBREC, PUBREL, PUBCOMP. */
typedef struct mqtt_ack {
	uint16_t packet_id;
	uint8_t reason;        /* 0 when absent */
	mqtt_props props;
} mqtt_ack;

/* Subscription Options byte [MQTT-3.8.3.1]. */
#define MQTT_SUBOPT_QOS_MASK 0x03
#define MQTT_SUBOPT_NO_LOCAL 0x04
#define MQTT_SUBOPT_RETAIN_AS_PUBLISHED 0x08
#define MQTT_SUBOPT_RETAIN_HANDLING_SHIFT 4
#define MQTT_SUBOPT_RETAIN_HANDLING_MASK 0x30

/* One entry of SUBSCRIBE (options) or UNSUBSCRIBE (options == 0). */
typedef struct mqtt_topic_entry {
	mqtt_str filter;
	uint8_t options;
} mqtt_topic_entry;

/*
 * SUBSCRIBE and UNSUBSCRIBE. `entries` is the raw payload; walk it with
 * mqtt_topic_entry_next(). The decoder has checked every entry's UTF-8 and
 * option bits, and that there is at least one [MQTT-3.8.3-3],
 * [MQTT-3.10.3-2]; topic-filter rules are checked separately
 * (mqtt_topic_validate_filter), since 5.0 answers them per entry.
 */
typedef struct mqtt_subscribe {
	uint16_t packet_id;
	mqtt_props props;
	mqtt_bytes entries;
	uint32_t count;
} mqtt_subscribe;

/* SUBACK and UNSUBACK: one reason code per entry (UNSUBACK 3.1.1: none). */
typedef struct mqtt_suback {
	uint16_t packet_id;
	mqtt_props props;
	mqtt_bytes reasons;
} mqtt_suback;

/* DISCONNECT and AUTH (5.0 carries a reason and properties). */
typedef struct mqtt_disconnect {
	uint8_t reason;
	mqtt_props props;
} mqtt_disconnect;

typedef struct mqtt_packet {
	mqtt_type type;
	uint8_t flags;           /* low nibble of the fixed header */
	uint32_t remaining_len;
	union {
		mqtt_connect connect;
		mqtt_connack connack;
		mqtt_publish publish;
		mqtt_ack ack;             /* PUBACK PUBREC PUBREL PUBCOMP */
		mqtt_subscribe subscribe; /* SUBSCRIBE UNSUBSCRIBE */
		mqtt_suback suback;       /* SUBACK UNSUBACK */
		mqtt_disconnect disconnect; /* DISCONNECT AUTH */
	} u;
} mqtt_packet;

/*
 * Decodes one packet from buf[0..len).
 *  - version: the session's protocol version. Ignored for CONNECT, whose
 *    version is read from the packet itself (pkt->u.connect.version).
 *  - max_len: the largest whole packet accepted (fixed header included);
 *    0 means MQTT_PACKET_MAX.
 * Returns bytes consumed (> 0) and fills *pkt, or MQTT_ERR_NEED_MORE when buf
 * holds only part of a packet, or a negative mqtt_err: MQTT_ERR_TOO_LARGE
 * (decided from the fixed header alone, so callers need not buffer it),
 * MQTT_ERR_MALFORMED, MQTT_ERR_PROTOCOL, MQTT_ERR_BAD_VERSION,
 * MQTT_ERR_UTF8, MQTT_ERR_TOPIC_NAME, MQTT_ERR_PROPERTY.
 * Checks reserved flag bits [MQTT-2.2.2-1,2], the remaining length against
 * the contents, QoS 3 [MQTT-3.3.1-4], DUP with QoS 0 [MQTT-3.3.1-2],
 * packet id 0 [MQTT-2.3.1-1], CONNECT reserved flag [MQTT-3.1.2-3] and will
 * flag combinations [MQTT-3.1.2-11..15], username/password flags (3.1.1
 * [MQTT-3.1.2-22]), topic names, UTF-8 everywhere, and properties.
 * A PUBLISH with an empty topic and no Topic Alias is MQTT_ERR_PROTOCOL.
 */
int mqtt_decode(const uint8_t *buf, size_t len, mqtt_version version,
		uint32_t max_len, mqtt_packet *pkt);

/*
 * Returns the size of the packet starting at buf (fixed header + remaining
 * length), MQTT_ERR_NEED_MORE if the fixed header is incomplete, or
 * MQTT_ERR_MALFORMED. Lets a reader size its buffer before decoding.
 */
int mqtt_packet_size(const uint8_t *buf, size_t len, uint32_t *out);

/* Walks the entries of a decoded SUBSCRIBE/UNSUBSCRIBE; *off starts at 0.
 * Returns 1 per entry, 0 at the end. `type` is MQTT_SUBSCRIBE or
 * MQTT_UNSUBSCRIBE. */
int mqtt_topic_entry_next(const mqtt_subscribe *s, mqtt_type type,
			  uint32_t *off, mqtt_topic_entry *out);

/*
 * Encodes pkt for protocol `version` into buf[0..cap). Returns the whole
 * packet's size; writes only when it is <= cap. Returns a negative mqtt_err
 * (MQTT_ERR_INVALID) when pkt cannot be encoded (e.g. remaining length over
 * MQTT_VBI_MAX, a field the version lacks is ignored rather than an error).
 * For SUBSCRIBE/UNSUBSCRIBE pkt->u.subscribe.entries must be a raw payload;
 * see mqtt_encode_subscribe() to build one from an array.
 * Properties are written only for MQTT_V5.
 */
long mqtt_encode(uint8_t *buf, size_t cap, mqtt_version version,
		 const mqtt_packet *pkt);

/* Encodes a SUBSCRIBE (type MQTT_SUBSCRIBE) or UNSUBSCRIBE from an array of
 * entries. Same return convention as mqtt_encode(). */
long mqtt_encode_subscribe(uint8_t *buf, size_t cap, mqtt_version version,
			   mqtt_type type, uint16_t packet_id,
			   const mqtt_props *props,
			   const mqtt_topic_entry *entries, uint32_t count);

/* Static name of a packet type ("PUBLISH"). */
const char *mqtt_type_str(mqtt_type t);

#endif

/*
 * broker/msg.h — the refcounted application message routed by the broker.
 *
 * One msg is created per received PUBLISH (or will, or $SYS update) and is
 * shared by every subscriber it fans out to, by the retained store and by
 * session queues: it is never copied per subscriber. Topic, payload and the
 * forwardable v5 property block live in the same allocation.
 *
 * The stored property block is the publisher's block minus Topic Alias,
 * Subscription Identifier and Message Expiry Interval (per hop, recomputed
 * when the message is sent) and Will Delay Interval (a will's block is a
 * PUBLISH block once that is dropped).
 * Thread model: under the core lock (broker.h); the refcount is not atomic.
 */
#ifndef SHIMMY_BROKER_MSG_H
#define SHIMMY_BROKER_MSG_H

#include <stdbool.h>
#include <stdint.h>

#include "broker/slab.h"
#include "mqtt/types.h"

/*
 * Where a broker's messages come from: small ones (the common case: short
 * topic, small payload) reuse blocks from a bounded cache instead of
 * malloc, and the pool counts what is alive (for $SYS). Owned by the broker
 * and, like the messages, used under the core lock only.
 * Invariant: live == number of messages created from it and not yet freed.
 */
typedef struct msg_pool {
	slab blocks;
	uint64_t live;       /* messages alive */
	uint64_t live_bytes; /* their topic + payload bytes */
} msg_pool;

/* An empty pool. Allocates nothing. */
void msg_pool_init(msg_pool *p);

/* Returns the cached blocks to the heap. Messages still alive keep working
 * (they go back to the heap when freed), so this may run at any time. */
void msg_pool_fini(msg_pool *p);

typedef struct broker_msg {
	msg_pool *pool;       /* the pool it came from and returns to */
	uint32_t refs;
	uint8_t qos;          /* QoS it was published with */
	bool retain;          /* RETAIN flag it was published with */
	uint16_t topic_len;
	uint32_t payload_len;
	uint32_t props_len;   /* forwardable property bytes, no length VBI */
	uint64_t expiry_ms;   /* absolute deadline on the broker clock; 0 = none */
	uint64_t origin;      /* session uid of the publisher (No Local); 0 = broker */
	char *topic;          /* NUL-terminated, inside this allocation */
	uint8_t *payload;     /* inside this allocation, or inside ext */
	uint8_t *props;
	void *ext;            /* owned malloc() block holding the payload
			       * (an adopted input buffer); NULL = none */
} broker_msg;

/*
 * Creates a message with one reference. All inputs are copied. props_raw
 * is a v5 property block (contents, without its length) already validated
 * by mqtt_props_decode(), or empty. Returns NULL on OOM or if the topic is
 * longer than 65535 bytes. Allocates once; small messages reuse a block
 * cached in pool (no malloc). pool is borrowed until the message is freed.
 */
broker_msg *msg_create(msg_pool *pool, mqtt_str topic, mqtt_bytes payload, mqtt_bytes props_raw,
		       uint8_t qos, bool retain, uint64_t expiry_ms,
		       uint64_t origin);

/*
 * As msg_create(), but the payload stays where it is: `ext` (a malloc()
 * block containing payload's bytes) is transferred to the message on
 * success and freed with it; on NULL (OOM) the caller keeps ext.
 */
broker_msg *msg_create_ext(msg_pool *pool, mqtt_str topic, mqtt_bytes payload,
			   mqtt_bytes props_raw, uint8_t qos, bool retain,
			   uint64_t expiry_ms, uint64_t origin, void *ext);

/* Adds a reference; returns m. */
static inline broker_msg *msg_ref(broker_msg *m)
{
	m->refs++;
	return m;
}

/* Drops a reference; frees on the last. NULL ok. */
void msg_unref(broker_msg *m);

/* True when m has a deadline that now_ms has reached. */
static inline bool msg_expired(const broker_msg *m, uint64_t now_ms)
{
	return m->expiry_ms != 0 && now_ms >= m->expiry_ms;
}

/* Messages alive from pool and their topic + payload bytes, for
 * $SYS/broker/store/messages/{count,bytes}. */
void msg_stats(const msg_pool *pool, uint64_t *count, uint64_t *bytes);

/* Whole seconds left before expiry, rounded up, at least 1; for the
 * forwarded Message Expiry Interval [MQTT-3.3.2-6]. */
uint32_t msg_expiry_left_s(const broker_msg *m, uint64_t now_ms);

#endif

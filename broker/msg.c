/*
 * broker/msg.c — see msg.h.
 */
#include "broker/msg.h"

#include <stdlib.h>
#include <string.h>

#include "broker/slab.h"
#include "mqtt/props.h"

/* Small messages are cut from fixed blocks (see msg_pool in msg.h); any
 * message whose allocation fits a block, whether it came from the cache or
 * not, may join the cache when freed (every block is a malloc allocation
 * of >= MSG_BLOCK bytes). */
#define MSG_BLOCK 256
#define MSG_CACHE_MAX 4096 /* blocks kept per pool: 1 MiB */

void msg_pool_init(msg_pool *p)
{
	slab_init(&p->blocks, MSG_BLOCK, MSG_CACHE_MAX);
	p->live = 0;
	p->live_bytes = 0;
}

void msg_pool_fini(msg_pool *p)
{
	slab_fini(&p->blocks);
}

/* Copies the kept properties of raw into dst; returns bytes written. dst
 * must hold raw.len bytes. */
static uint32_t msg_filter_props(uint8_t *dst, mqtt_bytes raw)
{
	uint32_t off = 0, out = 0;
	mqtt_prop p;
	for (;;) {
		uint32_t start = off;
		if (mqtt_props_next(raw, &off, &p) != 1 || off <= start ||
		    off > raw.len)
			break;
		if (p.id == MQTT_PROP_TOPIC_ALIAS ||
		    p.id == MQTT_PROP_SUBSCRIPTION_IDENTIFIER ||
		    p.id == MQTT_PROP_MESSAGE_EXPIRY_INTERVAL ||
		    p.id == MQTT_PROP_WILL_DELAY_INTERVAL)
			continue;
		memcpy(dst + out, raw.ptr + start, off - start);
		out += off - start;
	}
	return out;
}

/* Allocation size of a message (props_len: the unfiltered length at
 * creation, or the stored one: never more). */
static size_t msg_size(size_t topic_len, size_t payload_len, size_t props_len,
		       bool ext)
{
	return sizeof(broker_msg) + topic_len + 1 + (ext ? 0 : payload_len) +
	       props_len;
}

static broker_msg *msg_build(msg_pool *pool, mqtt_str topic, mqtt_bytes payload,
			     mqtt_bytes props_raw, uint8_t qos, bool retain,
			     uint64_t expiry_ms, uint64_t origin, void *ext)
{
	if (topic.len > UINT16_MAX)
		return NULL;
	size_t total = msg_size(topic.len, payload.len, props_raw.len, ext);
	broker_msg *m = total <= MSG_BLOCK ? slab_alloc(&pool->blocks)
					   : malloc(total);
	if (!m)
		return NULL;
	pool->live++;
	pool->live_bytes += (uint64_t)topic.len + payload.len;
	m->pool = pool;
	m->refs = 1;
	m->qos = qos;
	m->retain = retain;
	m->topic_len = (uint16_t)topic.len;
	m->payload_len = payload.len;
	m->expiry_ms = expiry_ms;
	m->origin = origin;
	m->topic = (char *)(m + 1);
	if (topic.len)
		memcpy(m->topic, topic.ptr, topic.len);
	m->topic[topic.len] = '\0';
	m->ext = ext;
	if (ext) {
		m->payload = (uint8_t *)payload.ptr;
		m->props = (uint8_t *)m->topic + topic.len + 1;
	} else {
		m->payload = (uint8_t *)m->topic + topic.len + 1;
		if (payload.len)
			memcpy(m->payload, payload.ptr, payload.len);
		m->props = m->payload + payload.len;
	}
	m->props_len = props_raw.len ? msg_filter_props(m->props, props_raw) : 0;
	return m;
}

broker_msg *msg_create(msg_pool *pool, mqtt_str topic, mqtt_bytes payload,
		       mqtt_bytes props_raw, uint8_t qos, bool retain,
		       uint64_t expiry_ms, uint64_t origin)
{
	return msg_build(pool, topic, payload, props_raw, qos, retain, expiry_ms,
			 origin, NULL);
}

broker_msg *msg_create_ext(msg_pool *pool, mqtt_str topic,
			   mqtt_bytes payload, mqtt_bytes props_raw, uint8_t qos,
			   bool retain, uint64_t expiry_ms, uint64_t origin,
			   void *ext)
{
	return msg_build(pool, topic, payload, props_raw, qos, retain, expiry_ms,
			 origin, ext);
}

void msg_unref(broker_msg *m)
{
	if (m && --m->refs == 0) {
		msg_pool *pool = m->pool;
		pool->live--;
		pool->live_bytes -= (uint64_t)m->topic_len + m->payload_len;
		size_t size = msg_size(m->topic_len, m->payload_len,
				       m->props_len, m->ext != NULL);
		free(m->ext);
		if (size <= MSG_BLOCK)
			slab_free(&pool->blocks, m);
		else
			free(m);
	}
}

void msg_stats(const msg_pool *pool, uint64_t *count, uint64_t *bytes)
{
	*count = pool->live;
	*bytes = pool->live_bytes;
}

uint32_t msg_expiry_left_s(const broker_msg *m, uint64_t now_ms)
{
	if (m->expiry_ms <= now_ms)
		return 1;
	uint64_t left = (m->expiry_ms - now_ms + 999) / 1000;
	return left > UINT32_MAX ? UINT32_MAX : (uint32_t)left;
}

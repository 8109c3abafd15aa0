/*
 * broker/msg.c — see msg.h.
 */
#include "broker/msg.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "mqtt/props.h"

/* Process-wide statistics only (brokers on several threads share them);
 * nothing orders against them, hence relaxed. */
static _Atomic uint64_t msg_live, msg_live_bytes;

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

broker_msg *msg_create(mqtt_str topic, mqtt_bytes payload, mqtt_bytes props_raw,
		       uint8_t qos, bool retain, uint64_t expiry_ms,
		       uint64_t origin)
{
	if (topic.len > UINT16_MAX)
		return NULL;
	size_t total = sizeof(broker_msg) + (size_t)topic.len + 1 +
		       (size_t)payload.len + (size_t)props_raw.len;
	broker_msg *m = malloc(total);
	if (!m)
		return NULL;
	atomic_fetch_add_explicit(&msg_live, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&msg_live_bytes,
				  (uint64_t)topic.len + payload.len,
				  memory_order_relaxed);
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
	m->payload = (uint8_t *)m->topic + topic.len + 1;
	if (payload.len)
		memcpy(m->payload, payload.ptr, payload.len);
	m->props = m->payload + payload.len;
	m->props_len = props_raw.len ? msg_filter_props(m->props, props_raw) : 0;
	return m;
}

void msg_unref(broker_msg *m)
{
	if (m && --m->refs == 0) {
		atomic_fetch_sub_explicit(&msg_live, 1, memory_order_relaxed);
		atomic_fetch_sub_explicit(&msg_live_bytes,
					  (uint64_t)m->topic_len + m->payload_len,
					  memory_order_relaxed);
		free(m);
	}
}

void msg_stats(uint64_t *count, uint64_t *bytes)
{
	*count = atomic_load_explicit(&msg_live, memory_order_relaxed);
	*bytes = atomic_load_explicit(&msg_live_bytes, memory_order_relaxed);
}

uint32_t msg_expiry_left_s(const broker_msg *m, uint64_t now_ms)
{
	if (m->expiry_ms <= now_ms)
		return 1;
	uint64_t left = (m->expiry_ms - now_ms + 999) / 1000;
	return left > UINT32_MAX ? UINT32_MAX : (uint32_t)left;
}

/*
 * tests/fuzz/fuzz_decode.c — libFuzzer harness for mqtt_decode().
 *
 * Each input is decoded as a 3.1, 3.1.1 and 5.0 session would. Every packet
 * that decodes is walked (properties, SUBSCRIBE entries), re-encoded for the
 * same version, and the encoding must decode again to the same type.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mqtt/packet.h"
#include "mqtt/topic.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c) do { if (!(c)) abort(); } while (0)

static void walk_props(const mqtt_props *p)
{
	uint32_t off = 0, users = 0, subs = 0;
	mqtt_prop pr;

	while (mqtt_props_next(p->raw, &off, &pr) == 1) {
		users += pr.id == MQTT_PROP_USER_PROPERTY;
		subs += pr.id == MQTT_PROP_SUBSCRIPTION_IDENTIFIER;
	}
	CHECK(off == p->raw.len);
	CHECK(users == p->user_count && subs == p->sub_id_count);
}

/* Points the encoder at the decoded User Properties. */
static void reuse_props(mqtt_props *p)
{
	p->user_raw = p->raw;
	p->user = NULL;
	p->sub_ids = NULL;
}

static void walk(mqtt_packet *pkt)
{
	mqtt_topic_entry e;
	uint32_t off = 0, n = 0;

	switch (pkt->type) {
	case MQTT_CONNECT:
		walk_props(&pkt->u.connect.props);
		walk_props(&pkt->u.connect.will_props);
		reuse_props(&pkt->u.connect.props);
		reuse_props(&pkt->u.connect.will_props);
		break;
	case MQTT_CONNACK:
		walk_props(&pkt->u.connack.props);
		reuse_props(&pkt->u.connack.props);
		break;
	case MQTT_PUBLISH:
		walk_props(&pkt->u.publish.props);
		reuse_props(&pkt->u.publish.props);
		break;
	case MQTT_PUBACK: case MQTT_PUBREC: case MQTT_PUBREL: case MQTT_PUBCOMP:
		walk_props(&pkt->u.ack.props);
		reuse_props(&pkt->u.ack.props);
		break;
	case MQTT_SUBSCRIBE: case MQTT_UNSUBSCRIBE:
		walk_props(&pkt->u.subscribe.props);
		reuse_props(&pkt->u.subscribe.props);
		while (mqtt_topic_entry_next(&pkt->u.subscribe, pkt->type, &off, &e)) {
			(void)mqtt_topic_validate_filter(e.filter, true);
			n++;
		}
		CHECK(n == pkt->u.subscribe.count);
		break;
	case MQTT_SUBACK: case MQTT_UNSUBACK:
		walk_props(&pkt->u.suback.props);
		reuse_props(&pkt->u.suback.props);
		break;
	case MQTT_DISCONNECT: case MQTT_AUTH:
		walk_props(&pkt->u.disconnect.props);
		reuse_props(&pkt->u.disconnect.props);
		break;
	default:
		break;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const mqtt_version vs[] = { MQTT_V31, MQTT_V311, MQTT_V5 };
	static uint8_t out[70000];

	for (size_t i = 0; i < 3; i++) {
		mqtt_packet pkt, again;
		mqtt_version v = vs[i];
		uint32_t sz;
		int n = mqtt_decode(data, size, v, 65536, &pkt);
		long m;

		if (mqtt_packet_size(data, size, &sz) > 0 && n > 0)
			CHECK((uint32_t)n == sz);
		if (n <= 0)
			continue;
		CHECK((size_t)n <= size);
		if (pkt.type == MQTT_CONNECT)
			v = pkt.u.connect.version;
		walk(&pkt);
		m = mqtt_encode(out, sizeof(out), v, &pkt);
		CHECK(m > 0 && (size_t)m <= sizeof(out));
		CHECK(mqtt_decode(out, (size_t)m, v, 0, &again) == (int)m);
		CHECK(again.type == pkt.type);
	}
	return 0;
}

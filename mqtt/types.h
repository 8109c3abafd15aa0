/*
 * mqtt/types.h — views and small value types shared by the codec modules.
 *
 * A view (mqtt_str, mqtt_bytes) points into a buffer the caller owns; it is
 * valid as long as that buffer is. Decoders fill views and never allocate.
 */
#ifndef SHIMMY_MQTT_TYPES_H
#define SHIMMY_MQTT_TYPES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Protocol level byte of CONNECT. */
typedef enum mqtt_version {
	MQTT_V31 = 3,  /* "MQIsdp" */
	MQTT_V311 = 4, /* "MQTT" */
	MQTT_V5 = 5,   /* "MQTT" */
} mqtt_version;

/* A byte range; not NUL-terminated. ptr may be NULL when len == 0. */
typedef struct mqtt_bytes {
	const uint8_t *ptr;
	uint32_t len;
} mqtt_bytes;

/* A validated UTF-8 string view [MQTT-1.5.4]; not NUL-terminated. */
typedef struct mqtt_str {
	const char *ptr;
	uint32_t len;
} mqtt_str;

/* Builds a view of a C string (borrowed for the view's life). */
static inline mqtt_str mqtt_str_c(const char *s)
{
	mqtt_str v = { s, 0 };
	while (s && s[v.len])
		v.len++;
	return v;
}

/* Largest value a Variable Byte Integer can hold [MQTT-1.5.5]. */
#define MQTT_VBI_MAX 268435455u
/* Largest whole packet: 1 fixed-header byte + 4 length bytes + VBI max. */
#define MQTT_PACKET_MAX (MQTT_VBI_MAX + 5u)

#endif

/*
 * mqtt/error.h — the one internal error enum of Shimmy.
 *
 * 0 is success; every error is negative. Functions that wrap syscalls return
 * -errno, so the range [-4095, -1] is errno and Shimmy's own codes sit below
 * it. MQTT reason codes are protocol data and live in mqtt/reason.h, never
 * here. Thread model: pure functions, any thread.
 */
#ifndef SHIMMY_MQTT_ERROR_H
#define SHIMMY_MQTT_ERROR_H

typedef enum mqtt_err {
	MQTT_OK = 0,
	/* Decoder: the buffer holds only part of a packet; read more and retry. */
	MQTT_ERR_NEED_MORE = -5000,
	/* Bytes that break the packet grammar (maps to reason 0x81). */
	MQTT_ERR_MALFORMED = -5001,
	/* Well-formed but forbidden by the protocol (maps to reason 0x82). */
	MQTT_ERR_PROTOCOL = -5002,
	/* Remaining length over the receiver's maximum (maps to reason 0x95). */
	MQTT_ERR_TOO_LARGE = -5003,
	/* CONNECT names a protocol name/level we do not speak (0x84 / 3.1.1 rc 1). */
	MQTT_ERR_BAD_VERSION = -5004,
	/* A UTF-8 string breaks [MQTT-1.5.4-1..3] (maps to reason 0x81). */
	MQTT_ERR_UTF8 = -5005,
	/* Topic name invalid: empty, wildcard, U+0000 (maps to reason 0x90). */
	MQTT_ERR_TOPIC_NAME = -5006,
	/* Topic filter invalid (maps to reason 0x8F). */
	MQTT_ERR_TOPIC_FILTER = -5007,
	/* A property repeated that may appear once, or unknown id (0x81/0x82). */
	MQTT_ERR_PROPERTY = -5008,
	/* Encoder: caller's buffer too small (encoders return needed size instead). */
	MQTT_ERR_NOSPACE = -5009,
	/* Encoder/validator: a field value out of its range. */
	MQTT_ERR_INVALID = -5010,
	/* Out of memory or a configured limit. */
	MQTT_ERR_NOMEM = -5011,
} mqtt_err;

/* Returns a static, human-readable string for any mqtt_err or -errno. */
const char *mqtt_strerror(int err);

#endif

/*
 * mqtt/error.c — names for mqtt_err and -errno values.
 * Thread model: pure functions, any thread.
 */
#include "mqtt/error.h"

#include <string.h>

const char *mqtt_strerror(int err)
{
	switch (err) {
	case MQTT_OK: return "success";
	case MQTT_ERR_NEED_MORE: return "incomplete packet";
	case MQTT_ERR_MALFORMED: return "malformed packet";
	case MQTT_ERR_PROTOCOL: return "protocol error";
	case MQTT_ERR_TOO_LARGE: return "packet too large";
	case MQTT_ERR_BAD_VERSION: return "unsupported protocol version";
	case MQTT_ERR_UTF8: return "invalid UTF-8 string";
	case MQTT_ERR_TOPIC_NAME: return "invalid topic name";
	case MQTT_ERR_TOPIC_FILTER: return "invalid topic filter";
	case MQTT_ERR_PROPERTY: return "invalid, duplicate or forbidden property";
	case MQTT_ERR_NOSPACE: return "buffer too small";
	case MQTT_ERR_INVALID: return "invalid argument";
	case MQTT_ERR_NOMEM: return "out of memory or over a limit";
	default: break;
	}
	if (err < 0 && err >= -4095) {
		/* strerrordesc_np returns static text and, unlike strerror, never
		 * formats into a shared buffer, so it is safe on any thread. */
		const char *s = strerrordesc_np(-err);
		if (s)
			return s;
	}
	return "unknown error";
}

/*
 * mqtt/utf8.c — UTF-8 Encoded String validation [MQTT-1.5.4].
 * Thread model: pure functions, any thread.
 */
#include "mqtt/utf8.h"

#include "mqtt/error.h"

int mqtt_utf8_validate(const uint8_t *s, size_t len)
{
	size_t i = 0;

	while (i < len) {
		uint8_t c = s[i];
		uint32_t cp, min;
		size_t n;

		if (c < 0x80) {
			if (c == 0)
				return MQTT_ERR_UTF8; /* [MQTT-1.5.4-2] */
			i++;
			continue;
		}
		if ((c & 0xE0) == 0xC0) {
			n = 2, cp = c & 0x1F, min = 0x80;
		} else if ((c & 0xF0) == 0xE0) {
			n = 3, cp = c & 0x0F, min = 0x800;
		} else if ((c & 0xF8) == 0xF0) {
			n = 4, cp = c & 0x07, min = 0x10000;
		} else {
			return MQTT_ERR_UTF8; /* stray continuation, F8..FF */
		}
		if (len - i < n)
			return MQTT_ERR_UTF8; /* truncated sequence */
		for (size_t k = 1; k < n; k++) {
			if ((s[i + k] & 0xC0) != 0x80)
				return MQTT_ERR_UTF8;
			cp = (cp << 6) | (s[i + k] & 0x3F);
		}
		/* RFC 3629 forbids overlongs and code points past U+10FFFF;
		 * [MQTT-1.5.4-1] forbids the surrogates U+D800..U+DFFF. */
		if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
			return MQTT_ERR_UTF8;
		i += n;
	}
	return 0;
}

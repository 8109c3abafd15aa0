/*
 * mqtt/utf8.h — UTF-8 Encoded String rules of MQTT [MQTT-1.5.4].
 * Thread model: pure functions, any thread.
 */
#ifndef SHIMMY_MQTT_UTF8_H
#define SHIMMY_MQTT_UTF8_H

#include <stddef.h>
#include <stdint.h>

/*
 * Checks that s[0..len) is well-formed UTF-8 as RFC 3629 defines it (no
 * overlongs, no surrogates U+D800..U+DFFF [MQTT-1.5.4-1], nothing above
 * U+10FFFF) and holds no U+0000 [MQTT-1.5.4-2].
 * Returns 0, or MQTT_ERR_UTF8.
 */
int mqtt_utf8_validate(const uint8_t *s, size_t len);

#endif

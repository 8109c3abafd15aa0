/*
 * mqtt/topic.h — topic names, topic filters, matching and shared-
 * subscription parsing [MQTT-4.7].
 * Thread model: pure functions, any thread. Inputs are views and are
 * assumed to be valid UTF-8 already (the packet decoder checks that).
 */
#ifndef SHIMMY_MQTT_TOPIC_H
#define SHIMMY_MQTT_TOPIC_H

#include <stdbool.h>
#include "mqtt/types.h"

/*
 * Topic name rules for PUBLISH and will topics: at least one character
 * [MQTT-4.7.3-1], no '+' or '#' [MQTT-3.3.2-2], no U+0000 [MQTT-4.7.3-2],
 * at most 65535 bytes. Returns 0 or MQTT_ERR_TOPIC_NAME.
 */
int mqtt_topic_validate_name(mqtt_str name);

/*
 * Topic filter rules [MQTT-4.7.1-1..3]: non-empty; '#' only as a whole last
 * level; '+' only as a whole level. A "$share/{ShareName}/{filter}" filter is
 * accepted when share_ok is true: ShareName non-empty without '/', '+' or '#'
 * [MQTT-4.8.2-1,2] and the inner filter valid. Returns 0 or
 * MQTT_ERR_TOPIC_FILTER.
 */
int mqtt_topic_validate_filter(mqtt_str filter, bool share_ok);

/*
 * True when topic name `topic` matches `filter` (both already validated and
 * filter not a $share filter). Wildcards at the first level do not match
 * names beginning with '$' [MQTT-4.7.2-1]. "a/#" matches "a" [MQTT-4.7.1-2].
 */
bool mqtt_topic_match(mqtt_str filter, mqtt_str topic);

/*
 * Splits "$share/group/filter". Returns true and fills *group and *filter
 * (views into `full`) when `full` is a shared subscription; false otherwise
 * and leaves the outputs untouched.
 */
bool mqtt_topic_share_split(mqtt_str full, mqtt_str *group, mqtt_str *filter);

#endif

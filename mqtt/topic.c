/*
 * mqtt/topic.c — topic name and filter rules, matching, and shared
 * subscription parsing [MQTT-4.7], [MQTT-4.8.2].
 *
 * Matching walks both strings level by level with no recursion, so its cost
 * is linear in their lengths whatever the peer sends.
 * Thread model: pure functions, any thread.
 */
#include "mqtt/topic.h"

#include <string.h>

#include "mqtt/error.h"

#define SHARE_PREFIX "$share/"
#define SHARE_PREFIX_LEN 7u

int mqtt_topic_validate_name(mqtt_str name)
{
	if (name.len == 0 || name.len > 65535)
		return MQTT_ERR_TOPIC_NAME; /* [MQTT-4.7.3-1], [MQTT-4.7.3-3] */
	for (uint32_t i = 0; i < name.len; i++) {
		char c = name.ptr[i];
		if (c == '+' || c == '#')
			return MQTT_ERR_TOPIC_NAME; /* [MQTT-3.3.2-2] */
		if (c == '\0')
			return MQTT_ERR_TOPIC_NAME; /* [MQTT-4.7.3-2] */
	}
	return 0;
}

/* Plain filter rules [MQTT-4.7.1-1..3], [MQTT-4.7.3-1,2]. */
static int validate_plain_filter(const char *s, uint32_t len)
{
	if (len == 0 || len > 65535)
		return MQTT_ERR_TOPIC_FILTER; /* [MQTT-4.7.3-1] */
	for (uint32_t i = 0; i < len; i++) {
		char c = s[i];
		bool level_start = i == 0 || s[i - 1] == '/';
		bool level_end = i + 1 == len || s[i + 1] == '/';

		if (c == '\0')
			return MQTT_ERR_TOPIC_FILTER; /* [MQTT-4.7.3-2] */
		if (c == '#' && (!level_start || i + 1 != len))
			return MQTT_ERR_TOPIC_FILTER; /* [MQTT-4.7.1-2] */
		if (c == '+' && (!level_start || !level_end))
			return MQTT_ERR_TOPIC_FILTER; /* [MQTT-4.7.1-3] */
	}
	return 0;
}

static bool has_share_prefix(mqtt_str s)
{
	return s.len >= SHARE_PREFIX_LEN &&
	       memcmp(s.ptr, SHARE_PREFIX, SHARE_PREFIX_LEN) == 0;
}

int mqtt_topic_validate_filter(mqtt_str filter, bool share_ok)
{
	mqtt_str group, inner;

	if (!has_share_prefix(filter))
		return validate_plain_filter(filter.ptr, filter.len);
	/* A "$share/" filter is only meaningful as a shared subscription; when
	 * the caller does not accept those it is rejected, not reinterpreted. */
	if (!share_ok || !mqtt_topic_share_split(filter, &group, &inner))
		return MQTT_ERR_TOPIC_FILTER;
	if (group.len == 0)
		return MQTT_ERR_TOPIC_FILTER; /* [MQTT-4.8.2-1] */
	for (uint32_t i = 0; i < group.len; i++) {
		char c = group.ptr[i];
		if (c == '+' || c == '#' || c == '\0')
			return MQTT_ERR_TOPIC_FILTER; /* [MQTT-4.8.2-2] */
	}
	return validate_plain_filter(inner.ptr, inner.len);
}

/* End of the level that starts at i: the next '/' or len. */
static uint32_t level_end(const char *s, uint32_t len, uint32_t i)
{
	while (i < len && s[i] != '/')
		i++;
	return i;
}

bool mqtt_topic_match(mqtt_str filter, mqtt_str topic)
{
	uint32_t f = 0, t = 0;

	/* [MQTT-4.7.2-1]: "#" or "+" first never matches a "$" topic. */
	if (topic.len > 0 && topic.ptr[0] == '$' && filter.len > 0 &&
	    (filter.ptr[0] == '+' || filter.ptr[0] == '#'))
		return false;

	for (;;) {
		uint32_t fe = level_end(filter.ptr, filter.len, f);
		uint32_t te = level_end(topic.ptr, topic.len, t);
		bool f_plus = fe - f == 1 && filter.ptr[f] == '+';

		if (fe - f == 1 && filter.ptr[f] == '#')
			return true; /* [MQTT-4.7.1-2] the rest, parent included */
		if (!f_plus && (fe - f != te - t ||
				(fe > f && memcmp(filter.ptr + f, topic.ptr + t,
						  fe - f) != 0)))
			return false;
		bool f_last = fe == filter.len, t_last = te == topic.len;
		if (f_last && t_last)
			return true;
		if (f_last)
			return false;
		if (t_last) {
			/* "a/#" also matches "a" [MQTT-4.7.1-2]. */
			return filter.len - fe == 2 && filter.ptr[fe + 1] == '#';
		}
		f = fe + 1;
		t = te + 1;
	}
}

bool mqtt_topic_share_split(mqtt_str full, mqtt_str *group, mqtt_str *filter)
{
	uint32_t slash;

	if (!has_share_prefix(full))
		return false;
	slash = level_end(full.ptr, full.len, SHARE_PREFIX_LEN);
	if (slash == full.len)
		return false; /* "$share/group" with no filter */
	group->ptr = full.ptr + SHARE_PREFIX_LEN;
	group->len = slash - SHARE_PREFIX_LEN;
	filter->ptr = full.ptr + slash + 1;
	filter->len = full.len - slash - 1;
	return true;
}

/*
 * broker/session.c — see session.h.
 */
#include "broker/session.h"

#include <stdlib.h>
#include <string.h>

#include "broker/subtree.h"
#include "mqtt/error.h"
#include "mqtt/topic.h"

session *session_create(const char *client_id, uint32_t len, uint64_t uid)
{
	/* The id lives in the same allocation (one heap object per idle
	 * session). */
	session *s = calloc(1, sizeof(*s) + (size_t)len + 1);
	if (!s)
		return NULL;
	s->client_id = s->id_buf;
	if (len)
		memcpy(s->client_id, client_id, len);
	s->client_id[len] = '\0';
	s->client_id_len = len;
	s->uid = uid;
	s->next_pid = 1;
	return s;
}

void session_clear_messages(session *s)
{
	for (uint32_t i = 0; i < s->infl_count; i++)
		msg_unref(s->inflight[i].msg);
	s->infl_count = 0;
	sess_out e;
	while (session_queue_pop(s, &e))
		msg_unref(e.msg);
	s->qos2_count = 0;
}

void session_destroy(session *s)
{
	if (!s)
		return;
	session_clear_messages(s);
	for (uint32_t i = 0; i < s->sub_count; i++)
		free(s->subs[i].filter);
	free(s->subs);
	free(s->inflight);
	free(s->queue);
	free(s->qos2_in);
	msg_unref(s->will);
	free(s->username);
	free(s);
}

static int sess_sub_index(const session *s, mqtt_str filter)
{
	for (uint32_t i = 0; i < s->sub_count; i++)
		if (s->subs[i].filter_len == filter.len &&
		    memcmp(s->subs[i].filter, filter.ptr, filter.len) == 0)
			return (int)i;
	return -1;
}

int session_sub_set(session *s, mqtt_str filter, uint8_t options,
		    uint32_t sub_id, bool *existed)
{
	int i = sess_sub_index(s, filter);
	if (i >= 0) {
		sess_sub *e = &s->subs[i];
		s->sub_id_count += (sub_id != 0) - (e->sub_id != 0);
		e->options = options;
		e->sub_id = sub_id;
		if (existed)
			*existed = true;
		return 0;
	}
	if (s->sub_count == s->sub_cap) {
		uint32_t ncap = s->sub_cap ? s->sub_cap * 2 : 4;
		sess_sub *ns = realloc(s->subs, ncap * sizeof(*ns));
		if (!ns)
			return MQTT_ERR_NOMEM;
		s->subs = ns;
		s->sub_cap = ncap;
	}
	char *f = malloc((size_t)filter.len + 1);
	if (!f)
		return MQTT_ERR_NOMEM;
	memcpy(f, filter.ptr, filter.len);
	f[filter.len] = '\0';
	s->subs[s->sub_count++] =
		(sess_sub){ f, filter.len, sub_id, options };
	if (sub_id)
		s->sub_id_count++;
	if (existed)
		*existed = false;
	return 0;
}

bool session_sub_del(session *s, mqtt_str filter)
{
	int i = sess_sub_index(s, filter);
	if (i < 0)
		return false;
	if (s->subs[i].sub_id)
		s->sub_id_count--;
	free(s->subs[i].filter);
	memmove(&s->subs[i], &s->subs[i + 1],
		(s->sub_count - (uint32_t)i - 1) * sizeof(*s->subs));
	s->sub_count--;
	return true;
}

uint32_t session_sub_ids(const session *s, mqtt_str topic, uint32_t *ids,
			 uint32_t cap)
{
	uint32_t n = 0;
	if (s->sub_id_count == 0)
		return 0;
	for (uint32_t i = 0; i < s->sub_count && n < cap; i++) {
		const sess_sub *e = &s->subs[i];
		if (!e->sub_id)
			continue;
		mqtt_str f = { e->filter, e->filter_len }, g, inner;
		if (subtree_share_split(f, &g, &inner))
			f = inner;
		if (!mqtt_topic_match(f, topic))
			continue;
		bool dup = false;
		for (uint32_t j = 0; j < n; j++)
			dup |= ids[j] == e->sub_id;
		if (!dup)
			ids[n++] = e->sub_id;
	}
	return n;
}

uint16_t session_next_pid(session *s)
{
	/* At most 65535 ids can be in flight; the caller's window keeps the
	 * inflight list far below that, so this loop ends. */
	for (;;) {
		uint16_t pid = s->next_pid;
		s->next_pid = (uint16_t)(pid == UINT16_MAX ? 1 : pid + 1);
		if (pid != 0 && session_inflight_find(s, pid) < 0)
			return pid;
	}
}

int session_inflight_add(session *s, const sess_out *e)
{
	if (s->infl_count == s->infl_cap) {
		uint32_t ncap = s->infl_cap ? s->infl_cap * 2 : 8;
		sess_out *ni = realloc(s->inflight, ncap * sizeof(*ni));
		if (!ni)
			return MQTT_ERR_NOMEM;
		s->inflight = ni;
		s->infl_cap = ncap;
	}
	s->inflight[s->infl_count++] = *e;
	return 0;
}

int session_inflight_find(const session *s, uint16_t pid)
{
	for (uint32_t i = 0; i < s->infl_count; i++)
		if (s->inflight[i].pid == pid)
			return (int)i;
	return -1;
}

void session_inflight_remove(session *s, uint32_t i)
{
	msg_unref(s->inflight[i].msg);
	memmove(&s->inflight[i], &s->inflight[i + 1],
		(s->infl_count - i - 1) * sizeof(*s->inflight));
	s->infl_count--;
}

int session_queue_push(session *s, const sess_out *e, uint32_t max_msgs,
		       uint64_t max_bytes)
{
	if (max_msgs && s->q_count >= max_msgs)
		return MQTT_ERR_NOMEM;
	if (max_bytes && s->q_bytes + e->msg->payload_len > max_bytes)
		return MQTT_ERR_NOMEM;
	if (s->q_count == s->q_cap) {
		uint32_t ncap = s->q_cap ? s->q_cap * 2 : 8;
		sess_out *nq = malloc(ncap * sizeof(*nq));
		if (!nq)
			return MQTT_ERR_NOMEM;
		for (uint32_t i = 0; i < s->q_count; i++)
			nq[i] = s->queue[(s->q_head + i) % s->q_cap];
		free(s->queue);
		s->queue = nq;
		s->q_cap = ncap;
		s->q_head = 0;
	}
	s->queue[(s->q_head + s->q_count) % s->q_cap] = *e;
	s->q_count++;
	s->q_bytes += e->msg->payload_len;
	return 0;
}

bool session_queue_pop(session *s, sess_out *e)
{
	if (s->q_count == 0)
		return false;
	*e = s->queue[s->q_head];
	s->q_head = (s->q_head + 1) % s->q_cap;
	s->q_count--;
	s->q_bytes -= e->msg->payload_len;
	return true;
}

bool session_qos2_has(const session *s, uint16_t pid)
{
	for (uint32_t i = 0; i < s->qos2_count; i++)
		if (s->qos2_in[i] == pid)
			return true;
	return false;
}

int session_qos2_add(session *s, uint16_t pid)
{
	if (session_qos2_has(s, pid))
		return 0;
	if (s->qos2_count == s->qos2_cap) {
		uint32_t ncap = s->qos2_cap ? s->qos2_cap * 2 : 4;
		uint16_t *n = realloc(s->qos2_in, ncap * sizeof(*n));
		if (!n)
			return MQTT_ERR_NOMEM;
		s->qos2_in = n;
		s->qos2_cap = ncap;
	}
	s->qos2_in[s->qos2_count++] = pid;
	return 0;
}

bool session_qos2_del(session *s, uint16_t pid)
{
	for (uint32_t i = 0; i < s->qos2_count; i++) {
		if (s->qos2_in[i] == pid) {
			s->qos2_in[i] = s->qos2_in[--s->qos2_count];
			return true;
		}
	}
	return false;
}

void session_set_will(session *s, broker_msg *will, uint32_t delay_s)
{
	msg_unref(s->will);
	s->will = will;
	s->will_delay_s = delay_s;
	s->will_at_ms = 0;
}

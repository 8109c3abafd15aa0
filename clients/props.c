/*
 * clients/props.c — shimmy_props: owned property sets and borrowed views.
 */
#include "clients/props.h"

#include <stdlib.h>
#include <string.h>

#include "mqtt/utf8.h"

static int check_str(const char *s, size_t *len)
{
	if (!s)
		return SHIMMY_ERR_INVALID;
	*len = strlen(s);
	if (*len > 65535 || mqtt_utf8_validate((const uint8_t *)s, *len) != 0)
		return SHIMMY_ERR_INVALID;
	return 0;
}

const mqtt_props *props_mqtt(const shimmy_props *p)
{
	return p ? &p->p : NULL;
}

void props_view(shimmy_props *v, const mqtt_props *d)
{
	memset(v, 0, sizeof(*v));
	if (d)
		v->p = *d;
	v->view = 1;
}

shimmy_props *shimmy_props_create(void)
{
	return calloc(1, sizeof(shimmy_props));
}

void props_fini(shimmy_props *p)
{
	if (!p || p->view)
		return;
	for (size_t i = 0; i < p->nusers; i++) {
		free((void *)p->users[i].key.ptr);
		free((void *)p->users[i].value.ptr);
	}
	free(p->users);
	free(p->content_type);
	free(p->response_topic);
	free(p->corr);
	memset(p, 0, sizeof(*p));
}

void shimmy_props_destroy(shimmy_props *p)
{
	if (!p || p->view)
		return;
	props_fini(p);
	free(p);
}

static char *dup_n(const void *s, size_t n)
{
	char *d = malloc(n + 1);

	if (d) {
		if (n)
			memcpy(d, s, n);
		d[n] = '\0';
	}
	return d;
}

static int add_user_n(shimmy_props *p, const char *k, size_t kl, const char *v, size_t vl)
{
	char *dk, *dv;

	if (p->nusers == p->capusers) {
		size_t nc = p->capusers ? p->capusers * 2 : 4;
		mqtt_user_prop *nu = realloc(p->users, nc * sizeof(*nu));
		if (!nu)
			return SHIMMY_ERR_NOMEM;
		p->users = nu;
		p->capusers = nc;
	}
	dk = dup_n(k, kl);
	dv = dup_n(v, vl);
	if (!dk || !dv) {
		free(dk);
		free(dv);
		return SHIMMY_ERR_NOMEM;
	}
	p->users[p->nusers].key = (mqtt_str){ dk, (uint32_t)kl };
	p->users[p->nusers].value = (mqtt_str){ dv, (uint32_t)vl };
	p->nusers++;
	p->p.user = p->users;
	p->p.user_count = (uint32_t)p->nusers;
	return 0;
}

int shimmy_props_add_user(shimmy_props *p, const char *key, const char *value)
{
	size_t kl, vl;

	if (!p || check_str(key, &kl) || check_str(value, &vl))
		return SHIMMY_ERR_INVALID;
	if (p->view)
		return SHIMMY_ERR_STATE;
	return add_user_n(p, key, kl, value, vl);
}

static int set_str(shimmy_props *p, char **slot, mqtt_str *field, int id, const char *s)
{
	size_t n;
	char *d;

	if (!p || check_str(s, &n))
		return SHIMMY_ERR_INVALID;
	if (p->view)
		return SHIMMY_ERR_STATE;
	d = dup_n(s, n);
	if (!d)
		return SHIMMY_ERR_NOMEM;
	free(*slot);
	*slot = d;
	*field = (mqtt_str){ d, (uint32_t)n };
	p->p.present |= MQTT_PROP_BIT(id);
	return 0;
}

int shimmy_props_set_content_type(shimmy_props *p, const char *type)
{
	return set_str(p, p ? &p->content_type : NULL, p ? &p->p.content_type : NULL,
		       MQTT_PROP_CONTENT_TYPE, type);
}

int shimmy_props_set_response_topic(shimmy_props *p, const char *topic)
{
	/* A Response Topic is a topic name [MQTT-3.3.2-14]. */
	if (topic && strpbrk(topic, "+#"))
		return SHIMMY_ERR_INVALID;
	return set_str(p, p ? &p->response_topic : NULL, p ? &p->p.response_topic : NULL,
		       MQTT_PROP_RESPONSE_TOPIC, topic);
}

int shimmy_props_set_correlation_data(shimmy_props *p, const void *data, size_t len)
{
	uint8_t *d;

	if (!p || (len && !data) || len > 65535)
		return SHIMMY_ERR_INVALID;
	if (p->view)
		return SHIMMY_ERR_STATE;
	d = malloc(len ? len : 1);
	if (!d)
		return SHIMMY_ERR_NOMEM;
	if (len)
		memcpy(d, data, len);
	free(p->corr);
	p->corr = d;
	p->p.correlation_data = (mqtt_bytes){ d, (uint32_t)len };
	p->p.present |= MQTT_PROP_BIT(MQTT_PROP_CORRELATION_DATA);
	return 0;
}

int shimmy_props_set_message_expiry(shimmy_props *p, uint32_t seconds)
{
	if (!p)
		return SHIMMY_ERR_INVALID;
	if (p->view)
		return SHIMMY_ERR_STATE;
	p->p.message_expiry = seconds;
	p->p.present |= MQTT_PROP_BIT(MQTT_PROP_MESSAGE_EXPIRY_INTERVAL);
	return 0;
}

int shimmy_props_set_payload_format(shimmy_props *p, int utf8)
{
	if (!p)
		return SHIMMY_ERR_INVALID;
	if (p->view)
		return SHIMMY_ERR_STATE;
	p->p.payload_format = utf8 ? 1 : 0;
	p->p.present |= MQTT_PROP_BIT(MQTT_PROP_PAYLOAD_FORMAT_INDICATOR);
	return 0;
}

int props_copy(shimmy_props *dst, const shimmy_props *src)
{
	size_t n;
	const char *k = NULL, *v = NULL;
	size_t kl = 0, vl = 0;

	memset(dst, 0, sizeof(*dst));
	if (!src)
		return 0;
	dst->p.present = src->p.present & ~MQTT_PROP_BIT(MQTT_PROP_USER_PROPERTY);
	dst->p.payload_format = src->p.payload_format;
	dst->p.message_expiry = src->p.message_expiry;
	if (src->p.present & MQTT_PROP_BIT(MQTT_PROP_CONTENT_TYPE)) {
		dst->content_type = dup_n(src->p.content_type.ptr, src->p.content_type.len);
		if (!dst->content_type)
			goto out_fini;
		dst->p.content_type = (mqtt_str){ dst->content_type, src->p.content_type.len };
	}
	if (src->p.present & MQTT_PROP_BIT(MQTT_PROP_RESPONSE_TOPIC)) {
		dst->response_topic = dup_n(src->p.response_topic.ptr, src->p.response_topic.len);
		if (!dst->response_topic)
			goto out_fini;
		dst->p.response_topic = (mqtt_str){ dst->response_topic, src->p.response_topic.len };
	}
	if (src->p.present & MQTT_PROP_BIT(MQTT_PROP_CORRELATION_DATA)) {
		dst->corr = (uint8_t *)dup_n(src->p.correlation_data.ptr, src->p.correlation_data.len);
		if (!dst->corr)
			goto out_fini;
		dst->p.correlation_data = (mqtt_bytes){ dst->corr, src->p.correlation_data.len };
	}
	n = shimmy_props_user_count(src);
	for (size_t i = 0; i < n; i++) {
		if (shimmy_props_user_get(src, i, &k, &kl, &v, &vl) ||
		    add_user_n(dst, k, kl, v, vl))
			goto out_fini;
	}
	return 0;
out_fini:
	props_fini(dst);
	return SHIMMY_ERR_NOMEM;
}

/* ---- getters: work on owned sets and on views ---- */

size_t shimmy_props_user_count(const shimmy_props *p)
{
	if (!p)
		return 0;
	return p->view ? p->p.user_count : p->nusers;
}

int shimmy_props_user_get(const shimmy_props *p, size_t idx,
			  const char **key, size_t *key_len,
			  const char **value, size_t *value_len)
{
	mqtt_str k = { 0 }, v = { 0 };

	if (!p || idx >= shimmy_props_user_count(p))
		return SHIMMY_ERR_INVALID;
	if (p->view) {
		uint32_t off = 0;
		mqtt_prop pr;
		size_t i = 0;
		int found = 0;
		while (mqtt_props_next(p->p.raw, &off, &pr) == 1) {
			if (pr.id != MQTT_PROP_USER_PROPERTY)
				continue;
			if (i++ == idx) {
				k = pr.str;
				v = pr.str2;
				found = 1;
				break;
			}
		}
		if (!found)
			return SHIMMY_ERR_INVALID;
	} else {
		k = p->users[idx].key;
		v = p->users[idx].value;
	}
	if (key)
		*key = k.ptr;
	if (key_len)
		*key_len = k.len;
	if (value)
		*value = v.ptr;
	if (value_len)
		*value_len = v.len;
	return 0;
}

const char *shimmy_props_user_find(const shimmy_props *p, const char *key, size_t *len)
{
	size_t n = shimmy_props_user_count(p), kl = key ? strlen(key) : 0;
	const char *k, *v;
	size_t l1, l2;

	for (size_t i = 0; key && i < n; i++) {
		if (shimmy_props_user_get(p, i, &k, &l1, &v, &l2) == 0 && l1 == kl &&
		    memcmp(k, key, kl) == 0) {
			if (len)
				*len = l2;
			return v ? v : "";
		}
	}
	return NULL;
}

static const char *get_str(const shimmy_props *p, int id, mqtt_str s, size_t *len)
{
	if (!p || !(p->p.present & MQTT_PROP_BIT(id)))
		return NULL;
	if (len)
		*len = s.len;
	return s.ptr ? s.ptr : "";
}

const char *shimmy_props_content_type(const shimmy_props *p, size_t *len)
{
	return p ? get_str(p, MQTT_PROP_CONTENT_TYPE, p->p.content_type, len) : NULL;
}

const char *shimmy_props_response_topic(const shimmy_props *p, size_t *len)
{
	return p ? get_str(p, MQTT_PROP_RESPONSE_TOPIC, p->p.response_topic, len) : NULL;
}

const void *shimmy_props_correlation_data(const shimmy_props *p, size_t *len)
{
	if (!p || !(p->p.present & MQTT_PROP_BIT(MQTT_PROP_CORRELATION_DATA)))
		return NULL;
	if (len)
		*len = p->p.correlation_data.len;
	return p->p.correlation_data.ptr ? (const void *)p->p.correlation_data.ptr : (const void *)"";
}

int shimmy_props_message_expiry(const shimmy_props *p, uint32_t *out)
{
	if (!p || !(p->p.present & MQTT_PROP_BIT(MQTT_PROP_MESSAGE_EXPIRY_INTERVAL)))
		return 0;
	if (out)
		*out = p->p.message_expiry;
	return 1;
}

int shimmy_props_payload_format(const shimmy_props *p, int *out)
{
	if (!p || !(p->p.present & MQTT_PROP_BIT(MQTT_PROP_PAYLOAD_FORMAT_INDICATOR)))
		return 0;
	if (out)
		*out = p->p.payload_format;
	return 1;
}

/*
 * clients/opts.c — shimmy_opts (see opts.h).
 */
#include "clients/opts.h"

#include <stdlib.h>
#include <string.h>

#include "mqtt/topic.h"

void opts_defaults(shimmy_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->version = SHIMMY_MQTT_5;
	o->keepalive_s = 60;
	o->timeout_ms = 10000;
	o->shm_wait_ms = -1; /* the operation timeout */
	o->window = 0; /* auto: see shimmy_client_create() */
}

shimmy_opts *shimmy_opts_create(void)
{
	shimmy_opts *o = malloc(sizeof(*o));

	if (o)
		opts_defaults(o);
	return o;
}

void opts_fini(shimmy_opts *o)
{
	if (!o)
		return;
	free(o->client_id);
	free(o->username);
	free(o->password);
	free(o->will_topic);
	free(o->will_payload);
	props_fini(&o->will_props);
	memset(o, 0, sizeof(*o));
}

void shimmy_opts_destroy(shimmy_opts *o)
{
	opts_fini(o);
	free(o);
}

static void *dup_mem(const void *p, size_t n)
{
	uint8_t *d = malloc(n + 1);

	if (d) {
		if (n)
			memcpy(d, p, n);
		d[n] = 0;
	}
	return d;
}

static int set_string(char **slot, const char *s)
{
	char *d = NULL;

	if (s && !(d = strdup(s)))
		return SHIMMY_ERR_NOMEM;
	free(*slot);
	*slot = d;
	return 0;
}

int shimmy_opts_set_client_id(shimmy_opts *o, const char *id)
{
	if (!o || (id && strlen(id) > 65535))
		return SHIMMY_ERR_INVALID;
	return set_string(&o->client_id, id);
}

int shimmy_opts_set_version(shimmy_opts *o, int version)
{
	if (!o || (version != SHIMMY_MQTT_311 && version != SHIMMY_MQTT_5))
		return SHIMMY_ERR_INVALID;
	o->version = version;
	return 0;
}

int shimmy_opts_set_keepalive(shimmy_opts *o, uint16_t seconds)
{
	if (!o)
		return SHIMMY_ERR_INVALID;
	o->keepalive_s = seconds;
	return 0;
}

int shimmy_opts_set_session_expiry(shimmy_opts *o, uint32_t seconds)
{
	if (!o)
		return SHIMMY_ERR_INVALID;
	o->session_expiry = seconds;
	return 0;
}

int shimmy_opts_set_credentials(shimmy_opts *o, const char *username,
				const void *password, size_t password_len)
{
	uint8_t *pw = NULL;

	if (!o || (password && !username) || password_len > 65535 ||
	    (username && strlen(username) > 65535))
		return SHIMMY_ERR_INVALID;
	if (password && !(pw = dup_mem(password, password_len)))
		return SHIMMY_ERR_NOMEM;
	if (set_string(&o->username, username)) {
		free(pw);
		return SHIMMY_ERR_NOMEM;
	}
	free(o->password);
	o->password = pw;
	o->password_len = password ? password_len : 0;
	return 0;
}

int shimmy_opts_set_will(shimmy_opts *o, const char *topic, const void *payload,
			 size_t len, int qos, unsigned flags, const shimmy_props *props)
{
	shimmy_props np;
	char *t;
	uint8_t *pl;

	if (!o)
		return SHIMMY_ERR_INVALID;
	if (!topic) {
		free(o->will_topic);
		free(o->will_payload);
		props_fini(&o->will_props);
		o->will_topic = NULL;
		o->will_payload = NULL;
		o->has_will = 0;
		return 0;
	}
	if (qos < 0 || qos > 2 || len > 65535 || (len && !payload) || strlen(topic) > 65535 ||
	    mqtt_topic_validate_name(mqtt_str_c(topic)))
		return SHIMMY_ERR_INVALID;
	t = strdup(topic);
	pl = dup_mem(payload, len);
	if (!t || !pl || props_copy(&np, props)) {
		free(t);
		free(pl);
		return SHIMMY_ERR_NOMEM;
	}
	shimmy_opts_set_will(o, NULL, NULL, 0, 0, 0, NULL);
	o->will_topic = t;
	o->will_payload = pl;
	o->will_len = len;
	o->will_qos = qos;
	o->will_flags = flags;
	o->will_props = np;
	o->has_will = 1;
	return 0;
}

int shimmy_opts_set_flags(shimmy_opts *o, unsigned flags)
{
	if (!o || ((flags & SHIMMY_OPT_REQUIRE_SHM) && (flags & SHIMMY_OPT_NO_SHM)))
		return SHIMMY_ERR_INVALID;
	o->flags = flags;
	return 0;
}

int shimmy_opts_set_timeout_ms(shimmy_opts *o, int timeout_ms)
{
	if (!o || timeout_ms <= 0)
		return SHIMMY_ERR_INVALID;
	o->timeout_ms = timeout_ms;
	return 0;
}

int shimmy_opts_set_shm_wait_ms(shimmy_opts *o, int wait_ms)
{
	if (!o)
		return SHIMMY_ERR_INVALID;
	o->shm_wait_ms = wait_ms < 0 ? -1 : wait_ms;
	return 0;
}

int shimmy_opts_set_inflight(shimmy_opts *o, uint16_t window)
{
	if (!o || window == 0)
		return SHIMMY_ERR_INVALID;
	o->window = window;
	return 0;
}

int opts_copy(shimmy_opts *dst, const shimmy_opts *src)
{
	opts_defaults(dst);
	if (!src)
		return 0;
	*dst = *src;
	dst->client_id = NULL;
	dst->username = NULL;
	dst->password = NULL;
	dst->will_topic = NULL;
	dst->will_payload = NULL;
	memset(&dst->will_props, 0, sizeof(dst->will_props));
	if ((src->client_id && !(dst->client_id = strdup(src->client_id))) ||
	    (src->username && !(dst->username = strdup(src->username))) ||
	    (src->password && !(dst->password = dup_mem(src->password, src->password_len))) ||
	    (src->will_topic && !(dst->will_topic = strdup(src->will_topic))) ||
	    (src->will_topic && !(dst->will_payload = dup_mem(src->will_payload, src->will_len))) ||
	    props_copy(&dst->will_props, &src->will_props)) {
		opts_fini(dst);
		return SHIMMY_ERR_NOMEM;
	}
	return 0;
}

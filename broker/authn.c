/*
 * broker/authn.c — see authn.h.
 */
#include "broker/authn.h"

#include <string.h>

#include "mqtt/error.h"

void authn_init(authn *a)
{
	memset(a, 0, sizeof(*a));
}

int authn_add(authn *a, const authn_method *m)
{
	if (a->count == AUTHN_METHODS_MAX || !m->name || !m->start ||
	    !m->step || authn_find(a, mqtt_str_c(m->name)))
		return MQTT_ERR_INVALID;
	a->methods[a->count++] = *m;
	return 0;
}

const authn_method *authn_find(const authn *a, mqtt_str name)
{
	for (uint32_t i = 0; i < a->count; i++) {
		const char *n = a->methods[i].name;
		if (strlen(n) == name.len && memcmp(n, name.ptr, name.len) == 0)
			return &a->methods[i];
	}
	return NULL;
}

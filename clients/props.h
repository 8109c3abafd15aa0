/*
 * clients/props.h — the public shimmy_props object (shimmy.h) and its
 * bridge to the codec's mqtt_props.
 *
 * An owned set keeps copies of every string in heap memory it frees on
 * destroy; a view wraps a decoded block (mqtt_props) of a received packet
 * and owns nothing. Thread model: one thread at a time per object.
 */
#ifndef SHIMMY_CLIENTS_PROPS_H
#define SHIMMY_CLIENTS_PROPS_H

#include "clients/include/shimmy.h"
#include "mqtt/props.h"

struct shimmy_props {
	mqtt_props p;        /* what the encoder reads; views into the fields below */
	int view;            /* 1: borrowed view of a decoded block */
	char *content_type;
	char *response_topic;
	uint8_t *corr;
	mqtt_user_prop *users;
	size_t nusers, capusers;
};

/* The codec form of p (NULL when p is NULL); valid while p is unchanged. */
const mqtt_props *props_mqtt(const shimmy_props *p);

/* Makes *v a borrowed view of the decoded block d (copied by value; its
 * views must outlive *v). */
void props_view(shimmy_props *v, const mqtt_props *d);

/* Deep-copies src into the empty owned set dst. 0 or SHIMMY_ERR_NOMEM. */
int props_copy(shimmy_props *dst, const shimmy_props *src);
/* Frees what an owned set holds (not the struct itself). */
void props_fini(shimmy_props *p);

#endif

/*
 * clients/opts.h — the public shimmy_opts builder (shimmy.h) and the deep
 * copy a client keeps of it. Owns every string it holds.
 * Thread model: one thread at a time per object.
 */
#ifndef SHIMMY_CLIENTS_OPTS_H
#define SHIMMY_CLIENTS_OPTS_H

#include <stdint.h>

#include "clients/include/shimmy.h"
#include "clients/props.h"

struct shimmy_opts {
	char *client_id;
	int version;
	uint16_t keepalive_s;
	uint32_t session_expiry;
	char *username;
	uint8_t *password;
	size_t password_len;
	int has_will;
	char *will_topic;
	uint8_t *will_payload;
	size_t will_len;
	int will_qos;
	unsigned will_flags;
	shimmy_props will_props;
	unsigned flags;
	int timeout_ms;
	int shm_wait_ms;  /* reliable shm log full: wait bound; < 0: timeout_ms */
	uint16_t window;
};

/* Fills o with the defaults (no heap). */
void opts_defaults(shimmy_opts *o);
/* Deep copy of src (NULL: defaults) into dst. 0 or SHIMMY_ERR_NOMEM. */
int opts_copy(shimmy_opts *dst, const shimmy_opts *src);
/* Frees what o holds, not o itself. */
void opts_fini(shimmy_opts *o);

#endif

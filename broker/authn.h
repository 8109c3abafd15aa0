/*
 * broker/authn.h — MQTT 5 enhanced authentication (CONNECT/AUTH exchange,
 * [MQTT-4.12]) behind a pluggable interface.
 *
 * A method is a name (the Authentication Method property) and two steps:
 * start() sees the Authentication Data of CONNECT, step() the data of each
 * AUTH (reason 0x18) that follows. Each returns SUCCESS (CONNACK 0x00, with
 * any output as the CONNACK's Authentication Data), CONTINUE (output goes
 * out in AUTH 0x18 and the client answers) or FAIL (CONNACK 0x87). A
 * registry (authn) holds the methods the broker offers; the broker looks a
 * CONNECT's method up there and answers 0x8C when it is absent.
 *
 * Output is written into the caller's buffer (at most out_cap bytes); the
 * per-connection state is the method's, created by start and freed by end.
 * Thread model: the registry is read-only once built, any thread; a state
 * is used under the core lock (see broker.h).
 */
#ifndef SHIMMY_BROKER_AUTHN_H
#define SHIMMY_BROKER_AUTHN_H

#include <stddef.h>
#include <stdint.h>

#include "mqtt/types.h"

/* Largest authenticated identity a method reports (NUL included). */
#define AUTHN_USER_MAX 256
/* Output buffer the broker offers a step (bytes). */
#define AUTHN_OUT_MAX 1024
/* Most methods one registry holds. */
#define AUTHN_METHODS_MAX 8

typedef enum authn_status {
	AUTHN_SUCCESS = 0,
	AUTHN_CONTINUE = 1,
	AUTHN_FAIL = 2,
} authn_status;

/* One step's input and output. */
typedef struct authn_io {
	const char *client_id; /* borrowed for the call */
	mqtt_bytes in;         /* client's Authentication Data, borrowed */
	uint8_t *out;          /* server's Authentication Data goes here */
	size_t out_cap;
	size_t out_len;        /* set by the step; 0 = no data */
	char user[AUTHN_USER_MAX]; /* on SUCCESS: the identity, "" = none
				    * (then ACLs see the CONNECT user name) */
} authn_io;

typedef struct authn_method {
	const char *name; /* borrowed for the registry's life */
	/* First step. *state (initially NULL) is the method's per-exchange
	 * state; it is passed to step() and end(). */
	authn_status (*start)(void **state, authn_io *io, void *ctx);
	/* Each later step. */
	authn_status (*step)(void *state, authn_io *io, void *ctx);
	/* Frees the state (NULL ok); called once per start(). */
	void (*end)(void *state, void *ctx);
	void *ctx;
} authn_method;

typedef struct authn {
	authn_method methods[AUTHN_METHODS_MAX];
	uint32_t count;
} authn;

/* An empty registry. */
void authn_init(authn *a);

/* Adds a method (copied; its name and ctx are borrowed). Returns 0, or
 * MQTT_ERR_INVALID when the registry is full or the name is taken. */
int authn_add(authn *a, const authn_method *m);

/* The method called `name`, or NULL. Valid until authn_add/authn_init. */
const authn_method *authn_find(const authn *a, mqtt_str name);

#endif

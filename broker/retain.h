/*
 * broker/retain.h — the retained-message store: one message per topic name,
 * kept in a level tree so that a subscription's filter finds its messages
 * without scanning every topic.
 *
 * The store holds a reference on each message it keeps.
 * Thread model: core lock (see broker.h): one caller at a time.
 */
#ifndef SHIMMY_BROKER_RETAIN_H
#define SHIMMY_BROKER_RETAIN_H

#include <stddef.h>
#include <stdint.h>

#include "broker/msg.h"
#include "mqtt/types.h"

typedef struct retain_store retain_store;

/* Returns NULL on OOM. */
retain_store *retain_create(void);
/* Drops every message and frees the store. NULL ok. */
void retain_destroy(retain_store *r);

/*
 * Stores m under m->topic, replacing (and unref'ing) any previous message;
 * a zero-length payload clears the topic instead [MQTT-3.3.1-10]. Takes its
 * own reference on m. Returns 0 or MQTT_ERR_NOMEM. Allocates.
 */
int retain_set(retain_store *r, broker_msg *m);

/* The message retained under exactly `topic`, or NULL (borrowed: valid until
 * the store changes). */
broker_msg *retain_get(retain_store *r, mqtt_str topic);

typedef void (*retain_cb)(broker_msg *m, void *ctx);

/*
 * Calls cb for each retained message whose topic matches `filter` (a valid,
 * non-shared filter; the '$' rule applies). cb must not change the store.
 * Returns the number of calls, or MQTT_ERR_NOMEM (scratch space).
 */
int retain_match(retain_store *r, mqtt_str filter, retain_cb cb, void *ctx);

/* Number of retained messages. */
size_t retain_count(const retain_store *r);

#endif

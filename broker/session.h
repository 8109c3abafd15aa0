/*
 * broker/session.h — per-client session state, independent of any
 * connection: subscriptions (the session's own copy, for unsubscribe,
 * Subscription Identifiers and persistence), the outgoing inflight window
 * with packet identifiers, the queue of messages waiting for the window or
 * for the client to come back, the incoming QoS 2 identifiers awaiting
 * PUBREL, and the will.
 *
 * Entries hold references on broker_msg; nothing is copied per message.
 * Thread model: core lock (see broker.h): one caller at a time.
 */
#ifndef SHIMMY_BROKER_SESSION_H
#define SHIMMY_BROKER_SESSION_H

#include <stdbool.h>
#include <stdint.h>

#include "broker/msg.h"
#include "mqtt/types.h"

/* Session Expiry Interval meaning "never" [MQTT-3.1.2-11 ff]. */
#define SESSION_EXPIRY_NEVER UINT32_MAX

typedef struct sess_sub {
	char *filter;     /* NUL-terminated, owned */
	uint32_t filter_len;
	uint32_t sub_id;  /* 0 = none */
	uint8_t options;  /* SUBSCRIBE options byte (granted QoS in the low bits) */
} sess_sub;

/* State of an outgoing QoS 1/2 message. */
typedef enum sess_out_state {
	SESS_OUT_QUEUED = 0,    /* not sent yet (queue) */
	SESS_OUT_WAIT_PUBACK,   /* QoS 1 sent */
	SESS_OUT_WAIT_PUBREC,   /* QoS 2 sent */
	SESS_OUT_WAIT_PUBCOMP,  /* PUBREC received, PUBREL sent; msg is NULL */
} sess_out_state;

typedef struct sess_out {
	broker_msg *msg;  /* owned reference; NULL in WAIT_PUBCOMP */
	uint16_t pid;     /* 0 while queued */
	uint8_t qos;      /* delivery QoS */
	uint8_t state;    /* sess_out_state */
	bool retain;      /* RETAIN flag to send */
	bool shared;      /* came through a $share subscription: handed to
			   * another member if this session ends with it */
} sess_out;

/* Laid out for size (one per client, online or not); arrays are NULL
 * until first used. */
typedef struct session {
	char *client_id; /* NUL-terminated, = id_buf; also the hash key */
	uint64_t uid;    /* unique per session object, never 0 (No Local) */
	char *username;  /* of the last CONNECT, owned; NULL = anonymous */
	void *conn;      /* the broker_conn while online, else NULL */
	uint64_t expire_at_ms; /* offline: when it ends; 0 = not scheduled */

	sess_sub *subs;

	/* Invariant: inflight entries have pid != 0, pids distinct, in send
	 * order; queue entries are SESS_OUT_QUEUED with msg != NULL. */
	sess_out *inflight;
	sess_out *queue;       /* ring */
	uint64_t q_bytes;      /* payload bytes in the queue */
	uint16_t *qos2_in;     /* incoming QoS 2 ids awaiting PUBREL */

	broker_msg *will;      /* owned; NULL = none */
	uint64_t will_at_ms;   /* delayed will due; 0 = not pending */

	/* Routing scratch owned by the broker: the fan-out generation this
	 * session was last matched in, and its slot in that fan-out. */
	uint64_t route_gen;

	uint64_t dropped;      /* messages dropped by queue limits */
	struct session *prev, *next; /* the broker's list of sessions */

	uint32_t client_id_len;
	uint32_t username_len;
	uint32_t expiry_s;     /* Session Expiry Interval in force */
	uint32_t sub_count, sub_cap;
	uint32_t sub_id_count; /* subs with sub_id != 0 */
	uint32_t infl_count, infl_cap;
	uint32_t q_head, q_count, q_cap;
	uint32_t qos2_count, qos2_cap;
	uint32_t will_delay_s;
	uint32_t will_expiry_s;/* will's Message Expiry Interval; 0 = none */
	uint32_t route_idx;
	uint16_t next_pid;
	bool will_expiry_set;
	bool drop_logged;
	char id_buf[];         /* the client id's bytes */
} session;

/* Creates an empty session; client_id is copied. NULL on OOM. */
session *session_create(const char *client_id, uint32_t len, uint64_t uid);

/* Drops every reference and frees. Does not touch any subscription tree
 * (the caller removes subs first). NULL ok. */
void session_destroy(session *s);

/* Adds or replaces the subscription to filter. *existed tells which.
 * Returns 0 or MQTT_ERR_NOMEM. */
int session_sub_set(session *s, mqtt_str filter, uint8_t options,
		    uint32_t sub_id, bool *existed);
/* Removes the subscription to filter; true if it existed. */
bool session_sub_del(session *s, mqtt_str filter);

/*
 * Writes into ids[0..cap) the Subscription Identifiers of s's
 * subscriptions matching `topic` (a $share filter matches through its inner
 * filter). Returns the number written. Uses mqtt_topic_match().
 */
uint32_t session_sub_ids(const session *s, mqtt_str topic, uint32_t *ids,
			 uint32_t cap);

/* A free packet identifier (never 0, not used by inflight) [MQTT-2.3.1-2]. */
uint16_t session_next_pid(session *s);

/* Appends to the inflight list; takes the msg reference in e.
 * Returns 0 or MQTT_ERR_NOMEM (e not consumed). */
int session_inflight_add(session *s, const sess_out *e);
/* Index of the inflight entry with pid, or -1. */
int session_inflight_find(const session *s, uint16_t pid);
/* Removes inflight entry i, dropping its msg reference. */
void session_inflight_remove(session *s, uint32_t i);

/*
 * Appends e to the queue, taking its msg reference, unless the queue is at
 * max_msgs messages or max_bytes payload bytes (0 = unlimited): then
 * returns MQTT_ERR_NOMEM and e is not consumed (the caller unrefs).
 * QoS 0 messages are not counted against the limits' message count
 * (mosquitto counts them the same; so do we). Allocates when growing.
 */
int session_queue_push(session *s, const sess_out *e, uint32_t max_msgs,
		       uint64_t max_bytes);
/* Pops the oldest queued entry into *e (reference transferred); false when
 * empty. */
bool session_queue_pop(session *s, sess_out *e);

/* Incoming QoS 2 identifiers awaiting PUBREL. */
bool session_qos2_has(const session *s, uint16_t pid);
int session_qos2_add(session *s, uint16_t pid); /* 0 or MQTT_ERR_NOMEM */
bool session_qos2_del(session *s, uint16_t pid);

/* Replaces the will (takes the reference; NULL clears). */
void session_set_will(session *s, broker_msg *will, uint32_t delay_s);

/* Empties inflight, queue and QoS 2 state (clean start on takeover). */
void session_clear_messages(session *s);

#endif

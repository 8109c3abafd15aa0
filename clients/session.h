/*
 * clients/session.h — sans-IO client side of the MQTT protocol.
 *
 * Feed it the broker's bytes (session_input) and the clock (session_tick);
 * it changes state, queues what must be sent in its outq, and reports
 * events (CONNACK, a message to deliver, SUBACK, a completed publish, a
 * DISCONNECT). It never makes a syscall or reads the clock, so the same
 * core runs over a socket, inside unit tests and in fuzzers.
 *
 * Session state (what outlives a connection): QoS 1/2 publishes inflight
 * with the packet bytes kept for retransmission, QoS 2 packet ids received
 * and awaiting PUBREL, and the subscriptions to renew after a reconnect.
 * Connection state (reset by session_start): CONNACK, broker limits,
 * keepalive timers.
 *
 * Outgoing publishes with a retransmission copy, and loans, live in a
 * session_lbuf: [room for the header | payload]. The header is completed
 * right-aligned before the payload at commit, so the payload is written
 * once, by the caller, and queued by reference.
 *
 * Thread model: one thread at a time (the client's lock). Allocates only
 * while its buffers and pools grow.
 */
#ifndef SHIMMY_CLIENTS_SESSION_H
#define SHIMMY_CLIENTS_SESSION_H

#include <stdbool.h>
#include <stdint.h>

#include "clients/outq.h"
#include "mqtt/packet.h"

/* Configuration; pointers are borrowed for the session's life. */
typedef struct session_cfg {
	mqtt_version version;       /* MQTT_V311 or MQTT_V5 */
	bool clean_start;
	bool offer_shm;             /* send User Property shimmy=shm/2 (v5) */
	bool resubscribe;           /* renew subscriptions when not resumed */
	uint16_t keepalive_s;
	uint16_t window;            /* our inflight limit, >= 1 */
	uint32_t session_expiry;
	const char *client_id;
	const char *username;       /* NULL: none */
	const uint8_t *password;    /* NULL: none */
	size_t password_len;
	bool will;
	const char *will_topic;
	const uint8_t *will_payload;
	size_t will_len;
	uint8_t will_qos;
	bool will_retain;
	const mqtt_props *will_props;
} session_cfg;

typedef enum session_state {
	SESS_IDLE = 0,     /* no connection */
	SESS_CONNECTING,   /* CONNECT queued, waiting for CONNACK */
	SESS_CONNECTED,
} session_state;

typedef enum session_ev_type {
	SEV_NONE = 0,
	SEV_CONNACK,    /* reason, session_present; refused when reason != 0 */
	SEV_MESSAGE,    /* msg: views into the input buffer */
	SEV_SUBACK,     /* pid, reason (first entry's) */
	SEV_UNSUBACK,   /* pid, reason */
	SEV_PUBDONE,    /* pid, reason: a QoS 1/2 publish completed */
	SEV_DISCONNECT, /* reason: the broker sent DISCONNECT */
} session_ev_type;

typedef struct session_event {
	session_ev_type type;
	uint16_t pid;
	uint8_t reason;
	bool session_present;
	mqtt_publish msg;
} session_event;

/* A loan / retransmission buffer. refs: the outq and an inflight slot. */
typedef struct session_lbuf {
	struct session_lbuf *next;
	uint8_t *mem;
	size_t cap;
	size_t room;       /* bytes before the payload */
	size_t len;        /* payload bytes */
	size_t topic_len;
	size_t props_len;  /* encoded block incl. its length VBI (v5) */
	size_t pkt_off;    /* after commit: the packet is mem[pkt_off..room+len) */
	int refs;
} session_lbuf;

typedef struct session_flight {
	uint16_t pid;      /* 0: free */
	uint8_t qos;
	uint8_t state;     /* FL_WAIT_ACK (PUBACK/PUBREC) or FL_WAIT_COMP */
	bool sent;         /* on the wire at least once (DUP on resend) */
	uint64_t seq;      /* order of publication, for resending in order */
	session_lbuf *lb;  /* packet bytes; NULL in FL_WAIT_COMP */
} session_flight;

enum { FL_WAIT_ACK = 1, FL_WAIT_COMP = 2 };

typedef struct session_sub {
	char *filter;
	uint8_t options;
} session_sub;

#define SESSION_OPS_MAX 32

/*
 * Invariants: inflight == number of flights with pid != 0; a flight's pid
 * sits in flights[pid % window]; every lbuf is on exactly one of: the free
 * list, the open-loan list, or referenced (refs > 0) by a flight or outq.
 */
typedef struct session {
	session_cfg cfg;
	session_state state;
	outq out;

	/* connection state */
	bool shm_echoed;
	bool session_present;
	uint8_t last_reason;
	uint16_t server_rm;          /* broker's Receive Maximum */
	uint8_t server_max_qos;
	bool server_retain;
	uint32_t server_max_packet;  /* 0: no limit */
	uint16_t keepalive_s;        /* effective (Server Keep Alive) */
	uint64_t last_tx_ms;
	uint64_t ping_sent_ms;
	bool ping_out;

	/* session state */
	session_flight *flights;     /* [cfg.window] */
	uint16_t inflight;
	uint16_t next_pid;
	uint64_t next_seq;
	uint64_t *rx_qos2;           /* bitmap of 65536 ids awaiting PUBREL */
	struct { uint16_t pid; uint8_t type; bool internal; } ops[SESSION_OPS_MAX];
	int nops;
	session_sub *subs;
	size_t nsubs, capsubs;
	uint64_t subs_ver;           /* +1 at every change of subs */

	session_lbuf *pool;          /* free lbufs */
	int npool;
	session_lbuf *open;          /* open loans */
} session;

/* Copies cfg (its pointers stay borrowed). 0 or SHIMMY_ERR_NOMEM/INVALID. */
int session_init(session *s, const session_cfg *cfg);
void session_fini(session *s);

/* Starts a connection: resets connection state, drops unsent output and
 * queues CONNECT. */
int session_start(session *s, uint64_t now_ms);
/* The connection is gone: back to SESS_IDLE, output dropped; inflight
 * publishes are kept for the next connection. */
void session_lost(session *s);
/* Queues DISCONNECT (reason for v5) and goes idle. */
int session_disconnect(session *s, uint8_t reason);

/*
 * Decodes and applies one packet from buf[0..len). Returns the bytes it
 * consumed (> 0) with *ev filled, 0 when buf holds only part of a packet,
 * or SHIMMY_ERR_PROTOCOL (malformed or forbidden; *ev->reason is the v5
 * reason to put in DISCONNECT). Message views in *ev point into buf.
 */
long session_input(session *s, const uint8_t *buf, size_t len, uint64_t now_ms,
		   session_event *ev);

/* Keepalive: queues PINGREQ when due. Returns 0, or SHIMMY_ERR_TIMEOUT when
 * the broker did not answer a PINGREQ within the keepalive. */
int session_tick(session *s, uint64_t now_ms);
/* Milliseconds until session_tick() has work (-1: none). */
int session_next_timeout(const session *s, uint64_t now_ms);

/* Publishing. flags: SHIMMY_PUB_RETAIN. Returns 0 (and *pid for QoS 1/2)
 * or an error: SHIMMY_ERR_AGAIN when the inflight window is full,
 * SHIMMY_ERR_NOT_CONNECTED (QoS 0 while not connected), SHIMMY_ERR_INVALID
 * (bad topic / qos), SHIMMY_ERR_UNSUPPORTED (qos/retain the broker lacks),
 * SHIMMY_ERR_TOO_LARGE. QoS 1/2 publishes made while not connected are
 * kept and sent after the next CONNACK. */
int session_publish(session *s, const char *topic, const void *payload, size_t len,
		    int qos, unsigned flags, const mqtt_props *props, uint64_t now_ms);
int session_loan(session *s, const char *topic, size_t len, const mqtt_props *props,
		 uint8_t **buf);
int session_commit(session *s, uint8_t *buf, int qos, unsigned flags, uint64_t now_ms);
void session_loan_abort(session *s, uint8_t *buf);
/* True when a QoS 1/2 publish would have room now. */
bool session_window_open(const session *s);

/* SUBSCRIBE / UNSUBSCRIBE; *pid identifies the SUBACK / UNSUBACK event. */
int session_subscribe(session *s, const char *filter, uint8_t options, uint64_t now_ms,
		      uint16_t *pid);
int session_unsubscribe(session *s, const char *filter, uint64_t now_ms, uint16_t *pid);

/* session_sub_qos() flags */
enum { SESSION_SUB_SHARED = 1u << 0 };

/*
 * The highest QoS among the subscriptions this session made (SUBSCRIBE
 * options; the broker grants what is asked) that match topic[0..len):
 * non-shared ones, or with SESSION_SUB_SHARED the $share ones, by their
 * inner filter. -1 when none matches (e.g. a session resumed from an
 * earlier process). O(subscriptions), no allocation: callers on a hot
 * path cache it against subs_ver.
 */
int session_sub_qos(const session *s, const char *topic, size_t len,
		    unsigned flags);

/* session_sub_qos() of one topic, remembered for one subs_ver. */
typedef struct session_qos_cache {
	uint64_t ver;
	int qos;
	bool valid;
} session_qos_cache;

/*
 * The QoS a message published at qos reaches the application at when it
 * comes straight from a log, not through the broker (the shm path):
 * min(qos, session_sub_qos()) [MQTT-3.8.4-8], or qos itself when no
 * subscription matches. c caches the lookup for the log (zeroed at
 * first). s == NULL: qos. No allocation.
 */
int session_deliver_qos(const session *s, session_qos_cache *c,
			const char *topic, size_t len, unsigned flags, int qos);

#endif

/*
 * broker/broker.c — the protocol core behind broker.h: connection state,
 * CONNECT/CONNACK, routing, QoS flows, wills, keepalive, takeover and $SYS.
 *
 * Owns: every broker_conn, every session (hash by client id plus a list
 * for timer scans), the subscription tree and the retained store. A
 * connection is attached to at most one session and a session to at most
 * one connection (s->conn / c->s). Messages are refcounted broker_msg
 * shared by all their deliveries; per-connection output is one byte buffer
 * that packets are encoded into directly, except that payloads of at least
 * BROKER_OUT_REF_MIN bytes are not copied: the buffer holds their headers
 * and a ring of out_refs splices the message's payload in (writev). A
 * route cache replays subscription matches for repeated topics.
 * Thread model: one caller at a time (see broker.h).
 */
#include "broker/broker.h"

#include <errno.h>
#include <math.h>
#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "broker/acl.h"
#include "broker/authn.h"
#include "broker/msg.h"
#include "broker/retain.h"
#include "broker/session.h"
#include "broker/shm.h"
#include "broker/strmap.h"
#include "broker/subtree.h"
#include "mqtt/error.h"
#include "mqtt/packet.h"
#include "mqtt/topic.h"
#include "mqtt/utf8.h"
#include "shmpath/ctl.h"
#include "shmpath/segment.h"

#define BROKER_VERSION_STR "shimmy 0.1.0"
/* Inbound topic aliases accepted per connection (CONNACK Topic Alias Maximum). */
#define BROKER_TOPIC_ALIAS_MAX 10
/* Output bytes pending above which QoS 0 messages to that client are
 * dropped instead of buffered (a slow consumer must not eat the heap). */
/* Output buffers up to this size are freed as soon as they drain. */
#define BROKER_OUT_KEEP_SMALL (64u << 10)
#define BROKER_OUT_QOS0_LIMIT (16u << 20)
/* Back-pressure: a connection whose pending output passes THROTTLE_HIGH is
 * congested, and the connections whose input fed it QoS 0 messages are
 * throttled (the I/O layer stops reading them, so TCP holds the
 * publishers back) until no connection is congested (each back under
 * THROTTLE_LOW). A congestion that lasts THROTTLE_MAX_MS is a consumer that
 * does not keep up at all: throttling is then suspended for
 * THROTTLE_OFF_MS and QoS 0 to it is dropped past QOS0_LIMIT instead, so
 * one stuck reader never stalls a publisher's other subscribers for long. */
#define BROKER_OUT_THROTTLE_HIGH (4u << 20)
#define BROKER_OUT_THROTTLE_LOW (1u << 20)
#define BROKER_THROTTLE_MAX_MS 250
#define BROKER_THROTTLE_OFF_MS 5000
/* Most Subscription Identifiers put on one outgoing PUBLISH. */
#define BROKER_MAX_SUB_IDS 32
/* Output bytes pending above which the client is disconnected with 0x97
 * Quota exceeded: it does not read what it asked for (e.g. a window of
 * large QoS 1/2 messages), and its buffer must not grow without bound. */
#define BROKER_OUT_HARD_LIMIT (64u << 20)
/* Outbound topic aliases the broker assigns per connection at most (the
 * client's Topic Alias Maximum caps it further). First come, first
 * served: once they are all taken, other topics go out in full. */
#define BROKER_OUT_ALIAS_MAX 64
/* Longest peer string kept (longer ones are truncated). */
#define BROKER_PEER_MAX 63
/* Payloads at least this large go out by reference to the message (a
 * writev segment) instead of being copied into the output buffer. */
#define BROKER_OUT_REF_MIN 2048
/* Response Information prefix (CONNACK, on Request Response Information
 * = 1): the client may use "response/<client id>/..." as its response
 * topics. A convention only; ACLs decide what may really be used. */
#define BROKER_RESPONSE_PREFIX "response/"

/* $SYS load series (see sys_loads). */
#define SYS_LOAD_SERIES 9

typedef enum conn_state {
	CONN_NEW = 0,  /* waiting for CONNECT */
	CONN_AUTH,     /* CONNECT seen, enhanced authentication under way */
	CONN_ACTIVE,   /* CONNACK sent */
	CONN_CLOSING,  /* WANT_CLOSE set; input ignored */
} conn_state;

/* Outbound topic aliases [MQTT-3.3.2-10 ff], allocated on first use:
 * topics[1..count] own the topics, map maps topic -> alias (uintptr_t). */
typedef struct conn_out_alias {
	uint16_t count;
	char **topics;  /* out_alias_max + 1 entries */
	strmap map;
} conn_out_alias;

/* Enhanced authentication state (CONN_AUTH; method kept for CONNACK),
 * allocated only for clients that use it. */
/* A large payload sent by reference: m's payload bytes [off, len) go out
 * after the inline output byte at position pos (of out[]). */
typedef struct out_ref {
	size_t pos;
	broker_msg *m;   /* owned reference */
	uint32_t off;    /* payload bytes already written */
} out_ref;

/* The ring of a connection's pending payload references, allocated on the
 * first large PUBLISH and released by the idle scan. Invariant: ent[] in
 * output order, positions non-decreasing, every pos >= out_off. */
typedef struct out_refs {
	uint32_t head, count, cap;
	size_t bytes;    /* payload bytes pending in the ring */
	out_ref ent[];
} out_refs;

/* An output buffer replaced while its bytes were being written. */
typedef struct out_retired {
	struct out_retired *next;
	uint8_t *buf;
} out_retired;

typedef struct conn_auth {
	const authn_method *am;
	void *am_state;
	bool am_started;
	uint8_t *pending_connect;   /* copy of the CONNECT, re-decoded */
	size_t pending_len;
} conn_auth;

/*
 * Laid out for size: an idle connection costs this struct plus its peer
 * string, and nothing else (rarely used state hangs off lazily allocated
 * pointers).
 */
struct broker_conn {
	broker *b;
	void *io;
	broker_conn *prev, *next;   /* b->conns */
	broker_conn *dprev, *dnext; /* b->dirty, while in_dirty */
	session *s;             /* NULL before CONNECT and after takeover */
	/* Client id for logs, owned, while no session is attached; with a
	 * session, conn_id() reads the session's copy (stored once). */
	char *id;
	uint64_t last_rx_ms;
	uint64_t linger_until_ms; /* CLOSING without WANT_CLOSE until then */
	shm_client *shm;        /* shm/2 negotiated (broker/shm.h) */
	conn_out_alias *oa;     /* NULL until the first outbound alias */
	conn_auth *auth;        /* NULL unless enhanced authentication */
	char **aliases;         /* inbound, index = alias; NULL until used */
	const uint8_t *cur_raw; /* bytes of the packet being handled */
	size_t cur_raw_len;

	/* Output: inline bytes [out_off, out_len) are pending, with the
	 * payload references of refs spliced in at their positions. */
	uint8_t *out;
	size_t out_off, out_len, out_cap;
	out_refs *refs;         /* NULL until the first large PUBLISH */
	/* Output handed out by broker_conn_output*() and not yet confirmed
	 * by broker_conn_written(): the I/O layer may be writing it without
	 * its lock, so those bytes must not move. Buffers replaced meanwhile
	 * wait on `retired` until then. */
	bool out_busy;
	out_retired *retired;
	bool congested;             /* output above THROTTLE_HIGH (counted) */
	struct broker_conn *tnext;  /* b->throttled, while THROTTLED */

	broker_transport transport;
	conn_state state;
	unsigned flags;
	mqtt_version version;
	uint32_t client_max_packet;  /* client's Maximum Packet Size; 0 = none */
	uint32_t connect_expiry_s;   /* Session Expiry from CONNECT */
	uint16_t keep_alive;    /* seconds in force; 0 = none */
	uint16_t client_recv_max;    /* client's Receive Maximum (v5) */
	uint16_t out_alias_max;      /* min(client's maximum, ours) */
	bool in_dirty;
	bool will_on_close;     /* send the will when the transport goes */
	bool id_assigned;       /* id chosen by us (Assigned Client Id) */
	bool close_logged;
	bool problem_info;      /* v5 Request Problem Information (default 1) */
	char peer[];            /* NUL-terminated, at most BROKER_PEER_MAX */
};

/*
 * Route cache: the subtree_match() result of recently routed topics, so
 * that a stream on one topic skips the tree walk (its per-level hash
 * lookups dominate the small-message path). Direct mapped by topic hash.
 * A slot is valid while subtree_gen() equals its gen (any subscribe,
 * unsubscribe or session end changes it; sessions leave the tree before
 * they are freed). Results with a shared group are not cached: their
 * member choice rotates per message. Everything decided per delivery (No
 * Local, ACL, the shm path, online state, QoS) is still decided per
 * delivery: the cache only replays the match callbacks.
 */
#define ROUTE_CACHE_SLOTS 64    /* power of two */
#define ROUTE_CACHE_MAX_SUBS 1024 /* larger results are not cached */

typedef struct route_ent {
	void *owner;
	uint32_t sub_id;
	uint8_t options;
} route_ent;

typedef struct route_slot {
	uint64_t gen;      /* subtree_gen() when recorded; 0 = empty */
	char *topic;       /* owned, topic_len bytes */
	uint32_t topic_len, topic_cap;
	route_ent *ents;
	uint32_t count, cap;
} route_slot;

/* One subscriber of the message being routed. */
typedef struct route_hit {
	session *s;
	uint8_t qos;
	bool retain;
	bool shared;
} route_hit;

struct broker {
	const broker_cfg *cfg;
	const shimmy_log *log;
	subtree *subs;
	retain_store *retained;
	strmap sessions;          /* client id -> session */
	session *sess_head;       /* all sessions */
	broker_conn *conns;
	size_t conn_count;
	broker_conn *dirty_head, *dirty_tail;
	broker_conn *in_conn;       /* whose input is being applied, or NULL */
	size_t congested;           /* conns with c->congested */
	broker_conn *throttled;     /* conns flagged BROKER_CONN_THROTTLED */
	uint64_t throttle_since_ms; /* when congested last became non-zero */
	uint64_t throttle_off_until_ms;

	uint64_t next_uid;
	uint64_t rng;
	uint64_t now_ms;          /* clock of the current call into the core */
	uint64_t start_ms;
	uint64_t next_scan_ms;
	uint64_t next_sys_ms;
	/* $SYS counters (mosquitto's meanings): messages = MQTT packets,
	 * publish = PUBLISH packets, bytes = transport bytes. */
	uint64_t msgs_received, msgs_sent;
	uint64_t pub_received, pub_sent, pub_dropped;
	uint64_t bytes_received, bytes_sent;
	uint64_t connections_total; /* CONNACK 0 sent */
	uint64_t clients_expired;
	size_t clients_connected;   /* conns past CONNACK */
	size_t clients_max;
	size_t session_count;
	/* Load averages: last sampled values and the 1/5/15 min averages. */
	uint64_t load_last_ms;
	uint64_t sockets_total;     /* broker_conn_open() calls */
	uint64_t load_prev[SYS_LOAD_SERIES];
	double load_avg[SYS_LOAD_SERIES][3];
	bool load_init;

	const authn *authn; /* NULL: no enhanced authentication */

	broker_auth_fn auth_fn;
	void *auth_ctx;
	const acl *acl; /* NULL: no access control */
	msg_pool msgs;  /* every broker_msg of this broker comes from here */

	/* Shared-memory fast path; NULL when off. */
	shm_broker *shm;
	broker_fd_fn fd_hook;
	bool routing_shm;  /* route() of a record read from a shm log */
	bool destroying;   /* broker_destroy(): the I/O layer is gone */
	uint64_t shm_now_ms;

	/* Fan-out scratch of route(), reused. */
	broker_msg *route_msg;
	uint64_t route_gen;
	route_hit *hits;
	uint32_t hit_count, hit_cap;
	bool route_oom;
	route_slot *rec;          /* slot being recorded by route(), or NULL */
	route_slot rcache[ROUTE_CACHE_SLOTS];

	/* broker_conn_input_owned(): the input block handle_publish() may
	 * adopt (set to NULL when it does), and its length. */
	uint8_t *adopt_buf;
	size_t adopt_len;

	/* SUBACK/UNSUBACK scratch. */
	uint8_t *scratch;
	size_t scratch_cap;
};

static void route(broker *b, broker_msg *m, uint64_t now_ms, int *matched);

/* ---- small helpers ---------------------------------------------------- */

/* subtree_pref_fn: shared groups prefer members that are connected. */
static bool session_online(const void *owner, void *ctx)
{
	(void)ctx;
	const session *s = owner;
	const broker_conn *c = s->conn;
	return c && c->state == CONN_ACTIVE;
}

static const char *conn_id(const broker_conn *c)
{
	if (c->s)
		return c->s->client_id;
	return c->id ? c->id : "<unknown>";
}

/* c loses its session but lives on (takeover, session end): it keeps its
 * own copy of the id for logs (none on OOM: "<unknown>"). */
static void conn_detach(broker_conn *c)
{
	if (c->s && !c->id) {
		size_t n = (size_t)c->s->client_id_len + 1;
		c->id = malloc(n);
		if (c->id)
			memcpy(c->id, c->s->client_id, n);
	}
	c->s = NULL;
}

static uint64_t broker_rand(broker *b)
{
	/* splitmix64: only for assigned client ids, not security. */
	uint64_t z = (b->rng += 0x9E3779B97F4A7C15ull);
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}

static void mark_dirty(broker_conn *c)
{
	broker *b = c->b;
	if (c->in_dirty)
		return;
	c->in_dirty = true;
	c->dnext = NULL;
	c->dprev = b->dirty_tail;
	if (b->dirty_tail)
		b->dirty_tail->dnext = c;
	else
		b->dirty_head = c;
	b->dirty_tail = c;
}

static void unmark_dirty(broker_conn *c)
{
	broker *b = c->b;
	if (!c->in_dirty)
		return;
	if (c->dprev)
		c->dprev->dnext = c->dnext;
	else
		b->dirty_head = c->dnext;
	if (c->dnext)
		c->dnext->dprev = c->dprev;
	else
		b->dirty_tail = c->dprev;
	c->in_dirty = false;
	c->dprev = c->dnext = NULL;
}

static void conn_want_close(broker_conn *c)
{
	c->state = CONN_CLOSING;
	c->flags |= BROKER_CONN_WANT_CLOSE;
	mark_dirty(c);
}

/* Returns space for at least n more output bytes, or NULL on OOM. */
/* Frees c's output buffer; only when nothing is pending. */
static void out_release(broker_conn *c)
{
	free(c->out);
	c->out = NULL;
	c->out_cap = 0;
}

static out_ref *out_ref_at(const out_refs *r, uint32_t i)
{
	return (out_ref *)&r->ent[(r->head + i) & (r->cap - 1)];
}

/* The first pending reference, or NULL. */
static out_ref *out_ref_first(const broker_conn *c)
{
	return c->refs && c->refs->count ? out_ref_at(c->refs, 0) : NULL;
}

/* Queues m's payload to go out after the inline bytes written so far.
 * Takes a new reference on m. Returns 0 or MQTT_ERR_NOMEM. */
static int out_ref_push(broker_conn *c, broker_msg *m)
{
	out_refs *r = c->refs;
	if (!r || r->count == r->cap) {
		uint32_t ncap = r ? r->cap * 2 : 8;
		out_refs *nr = malloc(sizeof(*nr) + ncap * sizeof(out_ref));
		if (!nr)
			return MQTT_ERR_NOMEM;
		nr->head = 0;
		nr->count = r ? r->count : 0;
		nr->cap = ncap;
		nr->bytes = r ? r->bytes : 0;
		for (uint32_t i = 0; i < nr->count; i++)
			nr->ent[i] = *out_ref_at(r, i);
		free(r);
		c->refs = r = nr;
	}
	*out_ref_at(r, r->count) = (out_ref){ c->out_len, msg_ref(m), 0 };
	r->count++;
	r->bytes += m->payload_len;
	return 0;
}

/* Frees the buffers out_reserve() replaced while output was busy. */
static void out_retired_free(broker_conn *c)
{
	while (c->retired) {
		out_retired *r = c->retired;
		c->retired = r->next;
		free(r->buf);
		free(r);
	}
}

/* Drops every pending reference and the ring. */
static void out_refs_free(broker_conn *c)
{
	out_refs *r = c->refs;
	if (!r)
		return;
	for (uint32_t i = 0; i < r->count; i++)
		msg_unref(out_ref_at(r, i)->m);
	free(r);
	c->refs = NULL;
}

static uint8_t *out_reserve(broker_conn *c, size_t n)
{
	if (c->out_cap - c->out_len >= n)
		return c->out + c->out_len;
	if (c->out_off && !c->out_busy) {
		memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
		c->out_len -= c->out_off;
		for (uint32_t i = 0; c->refs && i < c->refs->count; i++)
			out_ref_at(c->refs, i)->pos -= c->out_off;
		c->out_off = 0;
		if (c->out_cap - c->out_len >= n)
			return c->out + c->out_len;
	}
	size_t ncap = c->out_cap ? c->out_cap : 4096;
	while (ncap - c->out_len < n) {
		if (ncap > SIZE_MAX / 2)
			return NULL;
		ncap *= 2;
	}
	uint8_t *nb;
	if (c->out_busy && c->out) {
		/* The old bytes may be in a write right now: copy, and keep
		 * the old buffer until broker_conn_written(). */
		out_retired *r = malloc(sizeof(*r));
		nb = r ? malloc(ncap) : NULL;
		if (!nb) {
			free(r);
			return NULL;
		}
		memcpy(nb, c->out, c->out_len);
		r->buf = c->out;
		r->next = c->retired;
		c->retired = r;
	} else {
		nb = realloc(c->out, ncap);
		if (!nb)
			return NULL;
	}
	c->out = nb;
	c->out_cap = ncap;
	return c->out + c->out_len;
}

static void out_oom(broker_conn *c)
{
	log_write(c->b->log, LOG_ERR,
		  "Out of memory buffering output for client %s, disconnecting.",
		  conn_id(c));
	conn_want_close(c);
}

static size_t out_pending(const broker_conn *c)
{
	return c->out_len - c->out_off + (c->refs ? c->refs->bytes : 0);
}

/* The property block of pkt that may carry a Reason String, or NULL. */
static mqtt_props *pkt_props(mqtt_packet *pkt)
{
	switch (pkt->type) {
	case MQTT_CONNACK: return &pkt->u.connack.props;
	case MQTT_PUBACK:
	case MQTT_PUBREC:
	case MQTT_PUBREL:
	case MQTT_PUBCOMP: return &pkt->u.ack.props;
	case MQTT_SUBACK:
	case MQTT_UNSUBACK: return &pkt->u.suback.props;
	case MQTT_DISCONNECT:
	case MQTT_AUTH: return &pkt->u.disconnect.props;
	default: return NULL;
	}
}

static int send_pkt_raw(broker_conn *c, mqtt_version v, const mqtt_packet *pkt);

/*
 * Encodes pkt into c's output. A v5 packet above the client's Maximum
 * Packet Size loses its Reason String and User Properties
 * [MQTT-3.1.2-24/25, MQTT-3.4.2-2 etc.]; if still too large it is not sent.
 * Returns 0 or a negative error (MQTT_ERR_TOO_LARGE when not sent).
 */
static int send_pkt(broker_conn *c, mqtt_version v, const mqtt_packet *pkt)
{
	if (v != MQTT_V5 || !c->client_max_packet)
		return send_pkt_raw(c, v, pkt);
	uint8_t probe[1];
	long n = mqtt_encode(probe, 0, v, pkt);
	if (n >= 0 && (uint64_t)n <= c->client_max_packet)
		return send_pkt_raw(c, v, pkt);
	mqtt_packet copy = *pkt;
	mqtt_props *p = pkt_props(&copy);
	if (p) {
		p->present &= ~MQTT_PROP_BIT(MQTT_PROP_REASON_STRING);
		p->present &= ~MQTT_PROP_BIT(MQTT_PROP_USER_PROPERTY);
		p->user_count = 0;
		p->user = NULL;
		p->user_raw = (mqtt_bytes){ NULL, 0 };
		n = mqtt_encode(probe, 0, v, &copy);
		if (n >= 0 && (uint64_t)n <= c->client_max_packet)
			return send_pkt_raw(c, v, &copy);
	}
	log_write(c->b->log, LOG_DEBUG,
		  "Not sending %s to client %s: above its maximum packet size.",
		  mqtt_type_str(pkt->type), conn_id(c));
	return MQTT_ERR_TOO_LARGE;
}

/* Adds a Reason String (the reason code's text) to a v5 error
 * acknowledgement when the client did not turn them off
 * [MQTT-3.1.2-29]. CONNACK and DISCONNECT always may carry one. */
static void add_reason_string(const broker_conn *c, mqtt_packet *pkt,
			      uint8_t reason)
{
	if (c->version != MQTT_V5 || reason < 0x80)
		return;
	if (!c->problem_info && pkt->type != MQTT_CONNACK &&
	    pkt->type != MQTT_DISCONNECT)
		return;
	mqtt_props *p = pkt_props(pkt);
	if (!p)
		return;
	p->present |= MQTT_PROP_BIT(MQTT_PROP_REASON_STRING);
	p->reason_string = mqtt_str_c(mqtt_reason_str((mqtt_reason)reason));
}

static int send_pkt_raw(broker_conn *c, mqtt_version v, const mqtt_packet *pkt)
{
	if (!out_reserve(c, 64)) {
		out_oom(c);
		return MQTT_ERR_NOMEM;
	}
	long n = mqtt_encode(c->out + c->out_len, c->out_cap - c->out_len, v,
			     pkt);
	if (n < 0) {
		log_write(c->b->log, LOG_ERR,
			  "Cannot encode %s for client %s: %s.",
			  mqtt_type_str(pkt->type), conn_id(c),
			  mqtt_strerror((int)n));
		return (int)n;
	}
	if ((size_t)n > c->out_cap - c->out_len) {
		if (!out_reserve(c, (size_t)n)) {
			out_oom(c);
			return MQTT_ERR_NOMEM;
		}
		n = mqtt_encode(c->out + c->out_len, c->out_cap - c->out_len,
				v, pkt);
		if (n < 0)
			return (int)n;
	}
	c->out_len += (size_t)n;
	c->b->msgs_sent++;
	mark_dirty(c);
	return 0;
}

static void send_ack(broker_conn *c, mqtt_type type, uint16_t pid,
		     uint8_t reason)
{
	mqtt_packet pkt;
	memset(&pkt, 0, sizeof(pkt));
	pkt.type = type;
	pkt.flags = type == MQTT_PUBREL ? 0x2 : 0;
	pkt.u.ack.packet_id = pid;
	pkt.u.ack.reason = c->version == MQTT_V5 ? reason : 0;
	add_reason_string(c, &pkt, reason);
	send_pkt(c, c->version, &pkt);
}

/* Acknowledges an incoming PUBLISH as its QoS asks (PUBACK for 1, PUBREC
 * for 2, nothing for 0) with `reason`. Returns false for QoS 0. */
static bool ack_publish(broker_conn *c, const mqtt_publish *pub,
			uint8_t reason)
{
	if (pub->qos == 0)
		return false;
	send_ack(c, pub->qos == 1 ? MQTT_PUBACK : MQTT_PUBREC, pub->packet_id,
		 reason);
	return true;
}

/*
 * Closes c for a protocol reason: v5 peers past CONNACK get a DISCONNECT
 * with `reason` first. The will is sent when the transport goes.
 */
static void conn_fail(broker_conn *c, uint8_t reason)
{
	if (c->state == CONN_CLOSING)
		return;
	if (c->state == CONN_ACTIVE && c->version == MQTT_V5) {
		mqtt_packet pkt;
		memset(&pkt, 0, sizeof(pkt));
		pkt.type = MQTT_DISCONNECT;
		pkt.u.disconnect.reason = reason;
		add_reason_string(c, &pkt, reason);
		send_pkt(c, MQTT_V5, &pkt);
		if (reason == MQTT_RC_RECEIVE_MAXIMUM_EXCEEDED) {
			/*
			 * The client is pipelining PUBLISHes and will answer
			 * the PUBRECs already sent with PUBRELs. Closing now
			 * would make our kernel answer those with RST, and
			 * the client could fail on that before it reads our
			 * DISCONNECT. So the connection stays open, input
			 * ignored, until the client closes or the next
			 * keepalive scan after a second (broker_tick).
			 */
			c->state = CONN_CLOSING;
			c->linger_until_ms = c->b->now_ms + 1000;
			return;
		}
	}
	conn_want_close(c);
}

/* ---- publishing out --------------------------------------------------- */

static uint32_t conn_window(const broker_conn *c)
{
	uint32_t w = c->b->cfg->max_inflight_messages;
	if (w == 0 || w > UINT16_MAX)
		w = UINT16_MAX;
	if (c->version == MQTT_V5 && c->client_recv_max < w)
		w = c->client_recv_max;
	return w;
}

static uint8_t *put_u16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
	return p + 2;
}

/* Registers topic as outbound alias n (= count + 1) on c. Returns 0 or
 * MQTT_ERR_NOMEM (nothing registered). */
static int out_alias_add(broker_conn *c, const char *topic, uint16_t len)
{
	if (!c->oa) {
		conn_out_alias *oa = calloc(1, sizeof(*oa));
		if (!oa)
			return MQTT_ERR_NOMEM;
		oa->topics = calloc((size_t)c->out_alias_max + 1,
				    sizeof(*oa->topics));
		if (!oa->topics) {
			free(oa);
			return MQTT_ERR_NOMEM;
		}
		strmap_init(&oa->map);
		c->oa = oa;
	}
	conn_out_alias *oa = c->oa;
	char *t = malloc((size_t)len + 1);
	if (!t)
		return MQTT_ERR_NOMEM;
	memcpy(t, topic, len);
	t[len] = '\0';
	uint16_t a = (uint16_t)(oa->count + 1);
	if (strmap_put(&oa->map, t, len, (void *)(uintptr_t)a)) {
		free(t);
		return MQTT_ERR_NOMEM;
	}
	oa->topics[a] = t;
	oa->count = a;
	return 0;
}

static void out_alias_undo(broker_conn *c)
{
	conn_out_alias *oa = c->oa;
	uint16_t a = oa->count--;
	char *t = oa->topics[a];
	strmap_del(&oa->map, t, strlen(t));
	free(t);
	oa->topics[a] = NULL;
}

static void out_alias_free(broker_conn *c)
{
	conn_out_alias *oa = c->oa;
	if (!oa)
		return;
	for (uint32_t i = 1; i <= oa->count; i++)
		free(oa->topics[i]);
	free(oa->topics);
	strmap_fini(&oa->map);
	free(oa);
	c->oa = NULL;
}

/*
 * Encodes a PUBLISH of m straight into c's output. The v5 property block
 * is m's stored block plus this hop's Message Expiry, Subscription
 * Identifiers and Topic Alias. Returns 0, 1 when the packet exceeds the
 * client's Maximum Packet Size (not sent [MQTT-3.1.2-24]), or a negative
 * error (OOM, or the client's output is over BROKER_OUT_HARD_LIMIT: it is
 * being disconnected with 0x97).
 */
static int send_publish(broker_conn *c, broker_msg *m, uint8_t qos,
			bool retain, bool dup, uint16_t pid, uint64_t now_ms)
{
	session *s = c->s;
	uint32_t ids[BROKER_MAX_SUB_IDS];
	uint32_t nids = 0;
	size_t plen = 0;
	bool v5 = c->version == MQTT_V5;
	uint16_t alias = 0;
	bool alias_new = false;
	if (c->state != CONN_ACTIVE)
		return MQTT_ERR_INVALID;
	if (out_pending(c) > BROKER_OUT_HARD_LIMIT) {
		log_write(c->b->log, LOG_NOTICE,
			  "Client %s has %zu bytes of unread output, disconnecting (quota exceeded).",
			  conn_id(c), out_pending(c));
		conn_fail(c, MQTT_RC_QUOTA_EXCEEDED);
		return MQTT_ERR_NOMEM;
	}
	if (v5) {
		mqtt_str topic = { m->topic, m->topic_len };
		if (s)
			nids = session_sub_ids(s, topic, ids, BROKER_MAX_SUB_IDS);
		plen = m->props_len;
		if (m->expiry_ms)
			plen += 5;
		for (uint32_t i = 0; i < nids; i++)
			plen += 1 + mqtt_vbi_size(ids[i]);
		if (c->out_alias_max && m->topic_len) {
			void *v = c->oa ? strmap_get(&c->oa->map, m->topic,
						     m->topic_len)
					: NULL;
			uint16_t count = c->oa ? c->oa->count : 0;
			if (v) {
				alias = (uint16_t)(uintptr_t)v;
			} else if (count < c->out_alias_max &&
				   out_alias_add(c, m->topic, m->topic_len) == 0) {
				alias = c->oa->count;
				alias_new = true;
			}
			if (alias)
				plen += 3;
		}
	}
	/* A known alias replaces the topic [MQTT-3.3.2-12]. */
	uint16_t tlen = alias && !alias_new ? 0 : m->topic_len;
	uint64_t rem = 2 + (uint64_t)tlen + (qos ? 2 : 0) + m->payload_len;
	if (v5)
		rem += mqtt_vbi_size((uint32_t)plen) + plen;
	uint64_t total = rem > MQTT_VBI_MAX
				 ? UINT64_MAX
				 : 1 + mqtt_vbi_size((uint32_t)rem) + rem;
	if (rem > MQTT_VBI_MAX ||
	    (v5 && c->client_max_packet && total > c->client_max_packet)) {
		if (alias_new)
			out_alias_undo(c);
		c->b->pub_dropped++;
		log_write(c->b->log, LOG_DEBUG,
			  "Dropped PUBLISH on %s for client %s: above its maximum packet size.",
			  m->topic, conn_id(c));
		return 1;
	}
	/* A large payload is not copied: the output gets a reference. */
	bool by_ref = m->payload_len >= BROKER_OUT_REF_MIN;
	size_t copy_len = (size_t)total - (by_ref ? m->payload_len : 0);
	uint8_t *p = out_reserve(c, copy_len);
	if (!p) {
		if (alias_new)
			out_alias_undo(c);
		out_oom(c);
		return MQTT_ERR_NOMEM;
	}
	*p++ = (uint8_t)(0x30 | (dup ? 0x08 : 0) | (qos << 1) | (retain ? 1 : 0));
	p += mqtt_vbi_encode(p, (uint32_t)rem);
	p = put_u16(p, tlen);
	memcpy(p, m->topic, tlen);
	p += tlen;
	if (qos)
		p = put_u16(p, pid);
	if (v5) {
		p += mqtt_vbi_encode(p, (uint32_t)plen);
		if (m->expiry_ms) {
			uint32_t left = msg_expiry_left_s(m, now_ms);
			*p++ = MQTT_PROP_MESSAGE_EXPIRY_INTERVAL;
			p[0] = (uint8_t)(left >> 24);
			p[1] = (uint8_t)(left >> 16);
			p[2] = (uint8_t)(left >> 8);
			p[3] = (uint8_t)left;
			p += 4;
		}
		if (alias) {
			*p++ = MQTT_PROP_TOPIC_ALIAS;
			p = put_u16(p, alias);
		}
		for (uint32_t i = 0; i < nids; i++) {
			*p++ = MQTT_PROP_SUBSCRIPTION_IDENTIFIER;
			p += mqtt_vbi_encode(p, ids[i]);
		}
		memcpy(p, m->props, m->props_len);
		p += m->props_len;
	}
	c->out_len += copy_len;
	if (by_ref) {
		if (out_ref_push(c, m)) {
			c->out_len -= copy_len;
			if (alias_new)
				out_alias_undo(c);
			out_oom(c);
			return MQTT_ERR_NOMEM;
		}
	} else {
		memcpy(p, m->payload, m->payload_len);
	}
	c->b->msgs_sent++;
	c->b->pub_sent++;
	mark_dirty(c);
	return 0;
}

static void queue_drop(broker *b, session *s)
{
	s->dropped++;
	b->pub_dropped++;
	if (!s->drop_logged) {
		s->drop_logged = true;
		log_write(b->log, LOG_NOTICE,
			  "Outgoing messages are being dropped for client %s.",
			  s->client_id);
	}
}

/* Starts the flow of an entry that may use the window now; takes e's
 * reference. */
static void out_start(broker_conn *c, sess_out *e, uint64_t now_ms)
{
	session *s = c->s;
	if (e->qos == 0) {
		send_publish(c, e->msg, 0, e->retain, false, 0, now_ms);
		msg_unref(e->msg);
		return;
	}
	e->pid = session_next_pid(s);
	e->state = e->qos == 1 ? SESS_OUT_WAIT_PUBACK : SESS_OUT_WAIT_PUBREC;
	if (send_publish(c, e->msg, e->qos, e->retain, false, e->pid,
			 now_ms) == 1) {
		/* Too large for the client: discarded as if delivered
		 * [MQTT-3.1.2-25]. Other failures close the conn; the entry
		 * stays inflight and is resent if the session resumes. */
		msg_unref(e->msg);
		return;
	}
	if (session_inflight_add(s, e)) {
		msg_unref(e->msg);
		out_oom(c);
	}
}

/* Moves queued messages into the window while it has room. */
static void drain(broker_conn *c, uint64_t now_ms)
{
	session *s = c->s;
	if (!s || c->state != CONN_ACTIVE)
		return;
	uint32_t w = conn_window(c);
	sess_out e;
	while (s->infl_count < w && c->state == CONN_ACTIVE &&
	       session_queue_pop(s, &e)) {
		if (msg_expired(e.msg, now_ms)) {
			msg_unref(e.msg);
			continue;
		}
		out_start(c, &e, now_ms);
	}
}

/* Lets every throttled connection be read again. */
static void throttle_release(broker *b)
{
	while (b->throttled) {
		broker_conn *o = b->throttled;
		b->throttled = o->tnext;
		o->tnext = NULL;
		o->flags &= ~(unsigned)BROKER_CONN_THROTTLED;
		mark_dirty(o); /* the I/O layer resumes reading it */
	}
}

/* sink's output passed THROTTLE_HIGH because of the input being applied:
 * hold that input's connection back. */
static void throttle_origin(broker *b, broker_conn *sink)
{
	broker_conn *o = b->in_conn;
	if (!o || o == sink || b->now_ms < b->throttle_off_until_ms)
		return;
	if (!sink->congested) {
		sink->congested = true;
		if (b->congested++ == 0)
			b->throttle_since_ms = b->now_ms;
	}
	if (!(o->flags & BROKER_CONN_THROTTLED)) {
		o->flags |= BROKER_CONN_THROTTLED;
		o->tnext = b->throttled;
		b->throttled = o;
	}
}

/* c is no longer congested (drained, or gone). */
static void congestion_end(broker *b, broker_conn *c)
{
	if (!c->congested)
		return;
	c->congested = false;
	if (--b->congested == 0)
		throttle_release(b);
}

/* c leaves the throttled list (it is being freed). */
static void throttle_forget(broker *b, broker_conn *c)
{
	for (broker_conn **pp = &b->throttled; *pp; pp = &(*pp)->tnext) {
		if (*pp == c) {
			*pp = c->tnext;
			c->tnext = NULL;
			return;
		}
	}
}

/* deliver() flags. */
enum {
	DELIVER_RETAIN = 1 << 0, /* RETAIN flag to send */
	DELIVER_SHARED = 1 << 1, /* chosen from a $share group */
};

/* Delivers m to s at delivery QoS qos (already min'ed). */
static void deliver(broker *b, session *s, broker_msg *m, uint8_t qos,
		    unsigned flags, uint64_t now_ms)
{
	const broker_cfg *cfg = b->cfg;
	broker_conn *c = s->conn;
	bool retain = flags & DELIVER_RETAIN;
	sess_out e = { m, 0, qos, SESS_OUT_QUEUED, retain,
		       (flags & DELIVER_SHARED) != 0 };
	if (c && c->state == CONN_ACTIVE) {
		if (qos == 0 && c->shm &&
		    shm_client_deliver(b->shm, c->shm, m->topic, m->topic_len,
				       m->props, m->props_len, m->payload,
				       m->payload_len,
				       retain ? SHIMMY_MSG_RETAIN : 0) == 0) {
			b->pub_sent++;
			return;
		}
		if (qos == 0) {
			if (out_pending(c) > BROKER_OUT_QOS0_LIMIT) {
				queue_drop(b, s);
				return;
			}
			send_publish(c, m, 0, retain, false, 0, now_ms);
			if (out_pending(c) > BROKER_OUT_THROTTLE_HIGH)
				throttle_origin(b, c);
			return;
		}
		if (s->q_count == 0 && s->infl_count < conn_window(c)) {
			msg_ref(m);
			out_start(c, &e, now_ms);
			return;
		}
	} else if (qos == 0 && !cfg->queue_qos0_messages) {
		return;
	}
	msg_ref(m);
	if (session_queue_push(s, &e, cfg->max_queued_messages,
			       cfg->max_queued_bytes)) {
		msg_unref(m);
		queue_drop(b, s);
	}
}

/* ---- access control --------------------------------------------------- */

/* True when s may have `access` on topic (name or filter); always true
 * without an ACL. A session whose username could not be stored (OOM) is
 * checked as anonymous, which grants no more than the named user had... or
 * less, never more than the anonymous rules. */
static bool acl_allows(const broker *b, const session *s, mqtt_str topic,
		       acl_access access)
{
	if (!b->acl)
		return true;
	mqtt_str user = { s->username, s->username_len };
	mqtt_str cid = { s->client_id, s->client_id_len };
	return acl_check(b->acl, user, s->username != NULL, cid, topic, access);
}

/* ---- routing ---------------------------------------------------------- */

static void route_cb(void *owner, uint8_t options, uint32_t sub_id,
		     unsigned flags, void *ctx)
{
	broker *b = ctx;
	session *s = owner;
	broker_msg *m = b->route_msg;
	if ((options & MQTT_SUBOPT_NO_LOCAL) && m->origin == s->uid)
		return;
	/* A record from a publisher's log: groups claim from share pages
	 * (shm_env_route_share); an shm subscriber reads the log itself. */
	if (b->routing_shm && ((flags & SUBTREE_SHARED) ||
			       (s->conn && ((broker_conn *)s->conn)->shm)))
		return;
	if (b->acl && !acl_allows(b, s, (mqtt_str){ m->topic, m->topic_len },
				  ACL_READ))
		return;
	uint8_t qos = options & MQTT_SUBOPT_QOS_MASK;
	bool retain = (options & MQTT_SUBOPT_RETAIN_AS_PUBLISHED) && m->retain;
	if (!(flags & SUBTREE_SHARED) && s->route_gen == b->route_gen) {
		/* Overlapping subscriptions: one copy at the highest QoS. */
		route_hit *h = &b->hits[s->route_idx];
		if (qos > h->qos)
			h->qos = qos;
		h->retain |= retain;
		return;
	}
	if (b->hit_count == b->hit_cap) {
		uint32_t ncap = b->hit_cap ? b->hit_cap * 2 : 64;
		route_hit *nh = realloc(b->hits, ncap * sizeof(*nh));
		if (!nh) {
			b->route_oom = true;
			return;
		}
		b->hits = nh;
		b->hit_cap = ncap;
	}
	if (!(flags & SUBTREE_SHARED)) {
		s->route_gen = b->route_gen;
		s->route_idx = b->hit_count;
	}
	b->hits[b->hit_count++] =
		(route_hit){ s, qos, retain, (flags & SUBTREE_SHARED) != 0 };
}

/* subtree_cb while recording a route cache slot: records, then routes. */
static void route_rec_cb(void *owner, uint8_t options, uint32_t sub_id,
			 unsigned flags, void *ctx)
{
	broker *b = ctx;
	route_slot *r = b->rec;
	if (r && (flags & SUBTREE_SHARED)) {
		b->rec = NULL; /* not cacheable */
	} else if (r && r->count == r->cap) {
		uint32_t ncap = r->cap ? r->cap * 2 : 4;
		route_ent *ne = ncap <= ROUTE_CACHE_MAX_SUBS
					? realloc(r->ents, ncap * sizeof(*ne))
					: NULL;
		if (ne) {
			r->ents = ne;
			r->cap = ncap;
		} else {
			b->rec = NULL;
		}
	}
	if (b->rec)
		r->ents[r->count++] = (route_ent){ owner, sub_id, options };
	route_cb(owner, options, sub_id, flags, ctx);
}

static uint32_t route_hash(const char *s, uint32_t len)
{
	uint32_t h = 2166136261u; /* FNV-1a */
	for (uint32_t i = 0; i < len; i++) {
		h ^= (uint8_t)s[i];
		h *= 16777619u;
	}
	return h;
}

/* Calls route_cb for every subscription matching topic: replayed from the
 * route cache, or from the tree (and recorded). Returns the number of
 * calls or a negative error, as subtree_match(). */
static int route_match(broker *b, mqtt_str topic)
{
	uint64_t gen = subtree_gen(b->subs);
	route_slot *r = &b->rcache[route_hash(topic.ptr, topic.len) &
				   (ROUTE_CACHE_SLOTS - 1)];
	if (r->gen == gen && r->topic_len == topic.len &&
	    (topic.len == 0 || memcmp(r->topic, topic.ptr, topic.len) == 0)) {
		for (uint32_t i = 0; i < r->count; i++)
			route_cb(r->ents[i].owner, r->ents[i].options,
				 r->ents[i].sub_id, 0, b);
		return (int)r->count;
	}
	r->gen = 0;
	r->count = 0;
	if (r->topic_cap < topic.len) {
		char *nt = realloc(r->topic, topic.len);
		if (!nt)
			return subtree_match(b->subs, topic, route_cb, b);
		r->topic = nt;
		r->topic_cap = topic.len;
	}
	b->rec = r;
	int rc = subtree_match(b->subs, topic, route_rec_cb, b);
	if (rc >= 0 && b->rec) {
		if (topic.len)
			memcpy(r->topic, topic.ptr, topic.len);
		r->topic_len = topic.len;
		r->gen = gen;
	}
	b->rec = NULL;
	return rc;
}

/* Fans m out to its subscribers. *matched (may be NULL) gets the count. */
static void route(broker *b, broker_msg *m, uint64_t now_ms, int *matched)
{
	mqtt_str topic = { m->topic, m->topic_len };
	b->route_msg = m;
	b->route_gen++;
	b->hit_count = 0;
	b->route_oom = false;
	int rc = route_match(b, topic);
	if (rc < 0 || b->route_oom)
		log_write(b->log, LOG_ERR,
			  "Out of memory routing a message on %s.", m->topic);
	/* deliver() never routes, so the hits array is stable here. */
	for (uint32_t i = 0; i < b->hit_count; i++) {
		route_hit *h = &b->hits[i];
		uint8_t qos = b->cfg->upgrade_outgoing_qos
				      ? h->qos
				      : (m->qos < h->qos ? m->qos : h->qos);
		deliver(b, h->s, m, qos,
			(h->retain ? DELIVER_RETAIN : 0) |
				(h->shared ? DELIVER_SHARED : 0),
			now_ms);
	}
	b->route_msg = NULL;
	if (matched)
		*matched = (int)b->hit_count;
}

/* Retains (if asked and available) and routes m. */
static int publish_msg(broker *b, broker_msg *m, uint64_t now_ms)
{
	int matched = 0;
	if (m->retain && b->cfg->retain_available) {
		if (retain_set(b->retained, m))
			log_write(b->log, LOG_ERR,
				  "Out of memory retaining a message on %s.",
				  m->topic);
	}
	route(b, m, now_ms, &matched);
	return matched;
}

static void publish_will(broker *b, session *s, uint64_t now_ms)
{
	broker_msg *m = s->will;
	if (!m)
		return;
	s->will = NULL;
	s->will_at_ms = 0;
	if (s->will_expiry_set) {
		m->expiry_ms = now_ms + (uint64_t)s->will_expiry_s * 1000;
		if (m->expiry_ms == 0)
			m->expiry_ms = 1;
	}
	publish_msg(b, m, now_ms);
	msg_unref(m);
}

/* ---- sessions --------------------------------------------------------- */

static void session_unsubscribe_all(broker *b, session *s)
{
	for (uint32_t i = 0; i < s->sub_count; i++) {
		mqtt_str f = { s->subs[i].filter, s->subs[i].filter_len };
		subtree_remove(b->subs, f, s);
	}
}

typedef struct handoff_ctx {
	session *to;
	uint8_t options;
} handoff_ctx;

static void handoff_cb(void *owner, uint8_t options, uint32_t sub_id,
		       unsigned flags, void *ctx)
{
	(void)sub_id;
	(void)flags;
	handoff_ctx *hc = ctx;
	hc->to = owner;
	hc->options = options;
}

/*
 * m was outstanding on s through a shared subscription and s is ending:
 * hands it to another member of a group of s whose filter matches (online
 * members first), so that QoS 1/2 messages of a group are not lost when a
 * member leaves. s is already out of the tree.
 */
static void share_handoff(broker *b, session *s, broker_msg *m,
			  uint64_t now_ms)
{
	mqtt_str topic = { m->topic, m->topic_len };
	if (msg_expired(m, now_ms))
		return;
	for (uint32_t i = 0; i < s->sub_count; i++) {
		mqtt_str f = { s->subs[i].filter, s->subs[i].filter_len };
		mqtt_str group, inner;
		if (!subtree_share_split(f, &group, &inner) ||
		    !mqtt_topic_match(inner, topic))
			continue;
		handoff_ctx hc = { NULL, 0 };
		subtree_share_pick(b->subs, f, s, handoff_cb, &hc);
		if (!hc.to || !acl_allows(b, hc.to, topic, ACL_READ))
			continue;
		uint8_t sq = hc.options & MQTT_SUBOPT_QOS_MASK;
		uint8_t qos = b->cfg->upgrade_outgoing_qos
				      ? sq
				      : (m->qos < sq ? m->qos : sq);
		bool rap = hc.options & MQTT_SUBOPT_RETAIN_AS_PUBLISHED;
		deliver(b, hc.to, m, qos,
			DELIVER_SHARED |
				(rap && m->retain ? DELIVER_RETAIN : 0),
			now_ms);
		log_write(b->log, LOG_DEBUG,
			  "Shared message on %s handed from %s to %s.",
			  m->topic, s->client_id, hc.to->client_id);
		return;
	}
}

/* Hands every outstanding shared QoS 1/2 message of s to other members. */
static void share_handoff_all(broker *b, session *s, uint64_t now_ms)
{
	for (uint32_t i = 0; i < s->infl_count; i++) {
		sess_out *e = &s->inflight[i];
		if (e->shared && e->msg && e->qos > 0)
			share_handoff(b, s, e->msg, now_ms);
	}
	sess_out e;
	while (session_queue_pop(s, &e)) {
		if (e.shared && e.qos > 0)
			share_handoff(b, s, e.msg, now_ms);
		msg_unref(e.msg);
	}
}

/* Ends s: hands outstanding shared messages on, sends a pending will,
 * drops subscriptions and frees it. */
static void session_end(broker *b, session *s, uint64_t now_ms)
{
	session_unsubscribe_all(b, s);
	share_handoff_all(b, s, now_ms);
	publish_will(b, s, now_ms);
	b->session_count--;
	strmap_del(&b->sessions, s->client_id, s->client_id_len);
	if (s->prev)
		s->prev->next = s->next;
	else
		b->sess_head = s->next;
	if (s->next)
		s->next->prev = s->prev;
	if (s->conn) {
		conn_detach(s->conn);
		b->clients_connected--;
	}
	session_destroy(s);
}

static session *session_new(broker *b, const char *id, uint32_t len)
{
	session *s = session_create(id, len, b->next_uid++);
	if (!s)
		return NULL;
	if (strmap_put(&b->sessions, s->client_id, s->client_id_len, s)) {
		session_destroy(s);
		return NULL;
	}
	s->next = b->sess_head;
	if (b->sess_head)
		b->sess_head->prev = s;
	b->sess_head = s;
	b->session_count++;
	return s;
}

/* ---- shared-memory glue (broker/shm.h) -------------------------------- */

/* shm_env.send: a control packet, its fds attached to its first byte. */
static int shm_env_send(void *conn, const uint8_t *pkt, size_t len, int *fds,
			unsigned nfds, void *ctx)
{
	broker *b = ctx;
	broker_conn *c = conn;
	int rc = -EPIPE;
	if (b->destroying || c->state != CONN_ACTIVE)
		goto out_close;
	if (nfds) {
		if (!b->fd_hook) {
			rc = -ENOTSUP;
			goto out_close;
		}
		rc = b->fd_hook(c->io, fds, nfds); /* takes the fds */
		if (rc < 0)
			return rc;
	}
	uint8_t *p = out_reserve(c, len);
	if (!p) {
		out_oom(c);
		return -ENOMEM;
	}
	memcpy(p, pkt, len);
	c->out_len += len;
	mark_dirty(c);
	return 0;
out_close:
	for (unsigned i = 0; i < nfds; i++)
		close(fds[i]);
	return rc;
}

static bool shm_env_may(void *conn, const char *topic, size_t len, bool write,
			void *ctx)
{
	broker *b = ctx;
	broker_conn *c = conn;
	if (!c->s)
		return false;
	return acl_allows(b, c->s, (mqtt_str){ topic, (uint32_t)len },
			  write ? ACL_WRITE : ACL_READ);
}

static bool shm_env_wants(void *conn, const char *topic, size_t len,
			  void *from, void *ctx)
{
	(void)ctx;
	broker_conn *c = conn;
	session *s = c->s;
	mqtt_str t = { topic, (uint32_t)len };
	if (!s || c->state != CONN_ACTIVE)
		return false;
	for (uint32_t i = 0; i < s->sub_count; i++) {
		mqtt_str f = { s->subs[i].filter, s->subs[i].filter_len };
		mqtt_str g, inner;
		if (subtree_share_split(f, &g, &inner))
			continue; /* groups are served by the broker */
		if ((s->subs[i].options & MQTT_SUBOPT_NO_LOCAL) && from == conn)
			continue;
		if (mqtt_topic_match(f, t))
			return true;
	}
	return false;
}

static void shm_others_cb(void *owner, uint8_t options, uint32_t sub_id,
			  unsigned flags, void *ctx)
{
	(void)options;
	(void)sub_id;
	const session *s = owner;
	const broker_conn *c = s->conn;
	/* Shared groups claim from share pages (shm_env_share_others). */
	if (!(flags & SUBTREE_SHARED) && (!c || !c->shm))
		*(bool *)ctx = true;
}

static bool shm_env_others_want(const char *topic, size_t len, void *ctx)
{
	broker *b = ctx;
	bool want = false;
	subtree_match(b->subs, (mqtt_str){ topic, (uint32_t)len },
		      shm_others_cb, &want);
	return want;
}

/* A message of a record the broker read from a publisher's log. Its
 * property bytes come from shared memory: validated here, and dropped
 * (the message still goes) if invalid or holding per-hop properties.
 * Returns a new reference, or NULL (logged) on OOM. */
static broker_msg *shm_record_msg(broker *b, void *from, const char *topic,
				  size_t len, const shimmy_ring_msg *rm)
{
	broker_conn *fc = from;
	mqtt_bytes props = { NULL, 0 };
	if (rm->props_len && rm->props_len <= MQTT_VBI_MAX) {
		size_t n = mqtt_vbi_size(rm->props_len) + rm->props_len;
		uint8_t *buf = malloc(n);
		mqtt_props pp;
		if (buf) {
			size_t h = mqtt_vbi_encode(buf, rm->props_len);
			memcpy(buf + h, rm->props, rm->props_len);
			uint64_t per_hop =
				MQTT_PROP_BIT(MQTT_PROP_TOPIC_ALIAS) |
				MQTT_PROP_BIT(MQTT_PROP_SUBSCRIPTION_IDENTIFIER) |
				MQTT_PROP_BIT(MQTT_PROP_MESSAGE_EXPIRY_INTERVAL);
			if (mqtt_props_decode(buf, n, MQTT_PCTX_PUBLISH, &pp) ==
				    (int)n &&
			    !(pp.present & per_hop))
				props = (mqtt_bytes){ rm->props, rm->props_len };
			free(buf);
		}
	}
	uint8_t qos = rm->flags & SHIMMY_MSG_QOS_MASK;
	broker_msg *m = msg_create(&b->msgs, (mqtt_str){ topic, (uint32_t)len },
				   (mqtt_bytes){ rm->payload, rm->payload_len },
				   props, qos > 2 ? 0 : qos, false, 0,
				   fc && fc->s ? fc->s->uid : 0);
	if (!m)
		log_write(b->log, LOG_ERR,
			  "Out of memory routing a shared-memory message on %s.",
			  topic);
	return m;
}

/* shm_env.route: a record the broker read from a publisher's log. */
static void shm_env_route(void *from, const char *topic, size_t len,
			  const shimmy_ring_msg *rm, void *ctx)
{
	broker *b = ctx;
	broker_msg *m = shm_record_msg(b, from, topic, len, rm);
	if (!m)
		return;
	b->routing_shm = true;
	route(b, m, b->shm_now_ms, NULL);
	b->routing_shm = false;
	msg_unref(m);
}

/* ---- shared subscriptions over shm (docs/shm-protocol.md §7) -----------
 *
 * For a log of an shm publisher, every "$share/G/f" group matching its
 * topic claims from one share page: shm members claim themselves, and the
 * broker claims once more for the members it serves itself (non-shm
 * connections, offline sessions), so each message goes to exactly one
 * member of a mixed group. route() therefore skips groups for records read
 * from logs. These scans walk every session: control path only. */

/* s's shared subscriptions whose filter matches t, if it may read t. */
static void shares_of(broker *b, const session *s, mqtt_str t,
		      shm_share_fn fn, void *arg)
{
	for (uint32_t i = 0; i < s->sub_count; i++) {
		mqtt_str f = { s->subs[i].filter, s->subs[i].filter_len };
		mqtt_str g, inner;
		if (subtree_share_split(f, &g, &inner) &&
		    mqtt_topic_match(inner, t) &&
		    acl_allows(b, s, t, ACL_READ))
			fn(f.ptr, f.len, arg);
	}
}

/* shm_env.shares */
static void shm_env_shares(void *conn, const char *topic, size_t len,
			   shm_share_fn fn, void *arg, void *ctx)
{
	broker *b = ctx;
	mqtt_str t = { topic, (uint32_t)len };
	if (conn) {
		const broker_conn *c = conn;
		if (c->s && c->state == CONN_ACTIVE)
			shares_of(b, c->s, t, fn, arg);
		return;
	}
	for (const session *s = b->sess_head; s; s = s->next)
		shares_of(b, s, t, fn, arg);
}

static bool session_has_filter(const session *s, mqtt_str f)
{
	for (uint32_t i = 0; i < s->sub_count; i++)
		if (s->subs[i].filter_len == f.len &&
		    memcmp(s->subs[i].filter, f.ptr, f.len) == 0)
			return true;
	return false;
}

/* A member of a group that the broker, not shared memory, serves. */
static bool share_served(const broker *b, const session *s, mqtt_str t)
{
	const broker_conn *c = s->conn;
	return !(c && c->state == CONN_ACTIVE && c->shm) &&
	       acl_allows(b, s, t, ACL_READ);
}

/* shm_env.share_others: with the groups' preference for connected members
 * (session_online), the broker claims while the group has a connected
 * member it serves, or no connected member at all but an offline one. */
static bool shm_env_share_others(const char *filter, size_t flen,
				 const char *topic, size_t len, void *ctx)
{
	broker *b = ctx;
	mqtt_str f = { filter, (uint32_t)flen }, t = { topic, (uint32_t)len };
	bool online = false, online_served = false, offline_served = false;
	for (const session *s = b->sess_head; s; s = s->next) {
		if (!session_has_filter(s, f))
			continue;
		bool on = session_online(s, NULL);
		bool served = share_served(b, s, t);
		online |= on;
		online_served |= on && served;
		offline_served |= !on && served;
	}
	return online_served || (!online && offline_served);
}

typedef struct share_pick {
	session *s;
	uint8_t options;
} share_pick;

static void share_pick_cb(void *owner, uint8_t options, uint32_t sub_id,
			  unsigned flags, void *ctx)
{
	(void)sub_id;
	(void)flags;
	share_pick *p = ctx;
	p->s = owner;
	p->options = options;
}

/* shm_env.route_share: the next member of the group the broker serves,
 * round robin (shm members are passed over: they claim for themselves).
 * Dropped when there is none (the group changed since share_others). */
static bool shm_env_route_share(void *from, const char *filter, size_t flen,
				const char *topic, size_t len,
				const shimmy_ring_msg *rm, void *ctx)
{
	broker *b = ctx;
	mqtt_str f = { filter, (uint32_t)flen }, t = { topic, (uint32_t)len };
	share_pick p = { 0 }, first = { 0 };
	/* Picks go round the group; at most one lap. */
	for (;;) {
		p.s = NULL;
		if (!subtree_share_pick(b->subs, f, NULL, share_pick_cb, &p) ||
		    !p.s || p.s == first.s) {
			b->pub_dropped++;
			return false;
		}
		if (!first.s)
			first = p;
		if (share_served(b, p.s, t))
			break;
	}
	broker_msg *m = shm_record_msg(b, from, topic, len, rm);
	if (!m)
		return true; /* out of memory, logged: the group is fine */
	uint8_t sq = p.options & MQTT_SUBOPT_QOS_MASK;
	uint8_t qos = b->cfg->upgrade_outgoing_qos ? sq
						   : (m->qos < sq ? m->qos : sq);
	deliver(b, p.s, m, qos, DELIVER_SHARED, b->shm_now_ms);
	msg_unref(m);
	return true;
}

static void shm_setup(broker *b)
{
	shm_env env = { .send = shm_env_send, .may = shm_env_may,
			.wants = shm_env_wants,
			.others_want = shm_env_others_want,
			.route = shm_env_route, .shares = shm_env_shares,
			.share_others = shm_env_share_others,
			.route_share = shm_env_route_share, .ctx = b };
	shm_limits lim = { b->cfg->shm_max_bytes, b->cfg->shm_spin_us,
			   b->cfg->shm_reader_timeout_ms };
	int err = 0;
	b->shm = shm_broker_create(&env, &lim, &err);
	if (!b->shm)
		log_write(b->log, LOG_WARN,
			  "Warning: shared-memory fast path unavailable: %s.",
			  strerror(-err));
}

/* True when c may use shm/2: Unix socket, enabled, and the CONNECT carries
 * User Property shimmy = shm/2. */
static bool shm_offered(const broker *b, const broker_conn *c,
			const mqtt_connect *ct)
{
	if (!b->shm || !b->cfg->shm_enabled ||
	    c->transport != BROKER_TRANSPORT_UNIX || !ct->props.user_count)
		return false;
	uint32_t off = 0;
	mqtt_prop pr;
	while (mqtt_props_next(ct->props.raw, &off, &pr) == 1) {
		if (pr.id == MQTT_PROP_USER_PROPERTY && pr.str.len == 6 &&
		    memcmp(pr.str.ptr, "shimmy", 6) == 0 &&
		    pr.str2.len == sizeof(SHIMMY_SHM_PROTOCOL) - 1 &&
		    memcmp(pr.str2.ptr, SHIMMY_SHM_PROTOCOL, pr.str2.len) == 0)
			return true;
	}
	return false;
}

/* A PUBLISH on a reserved $shimmy/ topic: a control message from a shm
 * client, else dropped (acknowledged as not authorized). Never routed. */
static void handle_shm_ctl(broker *b, broker_conn *c, const mqtt_publish *pub,
			   mqtt_str topic)
{
	if (c->shm && pub->qos == 0 && topic.len == SHIMMY_CTL_TOPIC_LEN &&
	    memcmp(topic.ptr, SHIMMY_CTL_TOPIC, topic.len) == 0) {
		b->shm_now_ms = b->now_ms;
		int rc = shm_client_ctl(b->shm, c->shm, pub->payload.ptr,
					pub->payload.len);
		if (rc < 0) {
			log_write(b->log, LOG_NOTICE,
				  "Client %s sent a bad shared-memory control message (%s), disconnecting.",
				  conn_id(c), mqtt_strerror(rc));
			conn_fail(c, MQTT_RC_PROTOCOL_ERROR);
		}
		return;
	}
	ack_publish(c, pub, MQTT_RC_NOT_AUTHORIZED);
}

/* After SUBSCRIBE/UNSUBSCRIBE of c: shm logs to attach or detach, and
 * logs the broker must (no longer) read for the subscribers it serves. */
static void shm_subs_changed(broker *b, broker_conn *c)
{
	if (!b->shm)
		return;
	if (c->shm)
		shm_client_resubscribed(b->shm, c->shm);
	shm_broker_interest(b->shm);
}

void broker_set_fd_hook(broker *b, broker_fd_fn fn)
{
	b->fd_hook = fn;
}

int broker_shm_fd(const broker *b)
{
	return b->shm ? shm_broker_fd(b->shm) : -1;
}

int broker_shm_poll(broker *b, uint64_t now_ms)
{
	if (!b->shm)
		return 0;
	b->now_ms = b->shm_now_ms = now_ms;
	return shm_broker_poll(b->shm, now_ms);
}

int broker_shm_arm(broker *b)
{
	return b->shm ? shm_broker_arm(b->shm) : 0;
}

void broker_shm_disarm(broker *b)
{
	if (b->shm)
		shm_broker_disarm(b->shm);
}

void broker_shm_reload(broker *b)
{
	if (!b->shm)
		return;
	shm_limits lim = { b->cfg->shm_max_bytes, b->cfg->shm_spin_us,
			   b->cfg->shm_reader_timeout_ms };
	shm_broker_set_limits(b->shm, &lim);
}

/* ---- CONNECT ---------------------------------------------------------- */

static void connack_fail(broker_conn *c, mqtt_version v, uint8_t v5_reason)
{
	mqtt_packet pkt;
	memset(&pkt, 0, sizeof(pkt));
	pkt.type = MQTT_CONNACK;
	pkt.u.connack.reason = v == MQTT_V5
				       ? v5_reason
				       : mqtt_reason_to_v3_connack(v5_reason);
	if (v == MQTT_V5) {
		mqtt_connack *ca = &pkt.u.connack;
		ca->props.present |= MQTT_PROP_BIT(MQTT_PROP_REASON_STRING);
		ca->props.reason_string =
			mqtt_str_c(mqtt_reason_str((mqtt_reason)v5_reason));
	}
	send_pkt(c, v, &pkt);
	conn_want_close(c);
}

static int proto_num(mqtt_version v)
{
	return v == MQTT_V31 ? 1 : v == MQTT_V311 ? 2 : 5;
}

static void connect_accept(broker *b, broker_conn *c, const mqtt_connect *ct,
			   const authn_io *aio, uint64_t now_ms);
static void auth_send(broker_conn *c, uint8_t reason, const authn_io *io);

static void handle_connect(broker *b, broker_conn *c, const mqtt_connect *ct,
			   uint64_t now_ms)
{
	const broker_cfg *cfg = b->cfg;
	mqtt_version v = ct->version;
	bool v5 = v == MQTT_V5;
	char idbuf[32];
	const char *id = ct->client_id.ptr;
	uint32_t idlen = ct->client_id.len;
	bool assigned = false;

	c->version = v;
	c->problem_info = true;
	if (v5 && (ct->props.present &
		   MQTT_PROP_BIT(MQTT_PROP_REQUEST_PROBLEM_INFORMATION)))
		c->problem_info = ct->props.request_problem_info != 0;
	if (v5 && (ct->props.present &
		   MQTT_PROP_BIT(MQTT_PROP_MAXIMUM_PACKET_SIZE)))
		c->client_max_packet = ct->props.maximum_packet_size;
	if (idlen == 0) {
		/* [MQTT-3.1.3-8]: 3.1.1 needs clean session for an empty id;
		 * 3.1 has no empty ids at all. */
		if (v == MQTT_V31 || (v == MQTT_V311 && !ct->clean_start)) {
			log_write(b->log, LOG_NOTICE,
				  "Client <unknown> from %s rejected: empty client id.",
				  c->peer);
			connack_fail(c, v, MQTT_RC_CLIENT_IDENTIFIER_NOT_VALID);
			return;
		}
		do {
			snprintf(idbuf, sizeof(idbuf), "auto-%016llx",
				 (unsigned long long)broker_rand(b));
		} while (strmap_get(&b->sessions, idbuf, strlen(idbuf)));
		id = idbuf;
		idlen = (uint32_t)strlen(idbuf);
		assigned = true;
	}
	c->id = malloc((size_t)idlen + 1);
	if (!c->id) {
		conn_want_close(c);
		return;
	}
	memcpy(c->id, id, idlen);
	c->id[idlen] = '\0';
	c->id_assigned = assigned;

	/* A will declared as UTF-8 text must be [MQTT-3.1.3-...], checked as
	 * for PUBLISH (see handle_publish). */
	if (ct->will && v5 &&
	    (ct->will_props.present &
	     MQTT_PROP_BIT(MQTT_PROP_PAYLOAD_FORMAT_INDICATOR)) &&
	    ct->will_props.payload_format == 1 &&
	    mqtt_utf8_validate(ct->will_payload.ptr, ct->will_payload.len)) {
		log_write(b->log, LOG_NOTICE,
			  "Client %s from %s rejected: will payload is not valid UTF-8.",
			  c->id, c->peer);
		connack_fail(c, v, MQTT_RC_PAYLOAD_FORMAT_INVALID);
		return;
	}

	/* Enhanced authentication [MQTT-4.12]. */
	if (v5 && (ct->props.present &
		   MQTT_PROP_BIT(MQTT_PROP_AUTHENTICATION_METHOD))) {
		const authn_method *am =
			b->authn ? authn_find(b->authn, ct->props.auth_method)
				 : NULL;
		if (!am) {
			log_write(b->log, LOG_NOTICE,
				  "Client %s from %s rejected: unsupported authentication method '%.*s'.",
				  c->id, c->peer, (int)ct->props.auth_method.len,
				  ct->props.auth_method.ptr);
			connack_fail(c, v, MQTT_RC_BAD_AUTHENTICATION_METHOD);
			return;
		}
		c->auth = calloc(1, sizeof(*c->auth));
		if (!c->auth) {
			connack_fail(c, v, MQTT_RC_SERVER_UNAVAILABLE);
			return;
		}
		conn_auth *ca = c->auth;
		ca->am = am;
		uint8_t obuf[AUTHN_OUT_MAX];
		authn_io io;
		memset(&io, 0, sizeof(io));
		io.client_id = c->id;
		io.in = ct->props.auth_data;
		io.out = obuf;
		io.out_cap = sizeof(obuf);
		ca->am_started = true;
		authn_status st = am->start(&ca->am_state, &io, am->ctx);
		if (st == AUTHN_CONTINUE) {
			ca->pending_connect = malloc(c->cur_raw_len);
			if (!ca->pending_connect) {
				connack_fail(c, v, MQTT_RC_SERVER_UNAVAILABLE);
				return;
			}
			memcpy(ca->pending_connect, c->cur_raw, c->cur_raw_len);
			ca->pending_len = c->cur_raw_len;
			c->state = CONN_AUTH;
			auth_send(c, MQTT_RC_CONTINUE_AUTHENTICATION, &io);
			return;
		}
		if (st != AUTHN_SUCCESS) {
			log_write(b->log, LOG_NOTICE,
				  "Client %s from %s disconnected, authentication failed.",
				  c->id, c->peer);
			connack_fail(c, v, MQTT_RC_NOT_AUTHORIZED);
			return;
		}
		connect_accept(b, c, ct, &io, now_ms);
		return;
	}

	/* Authentication hook point. */
	uint8_t auth_rc = 0;
	if (b->auth_fn) {
		auth_rc = b->auth_fn(c->id,
				     ct->has_username ? &ct->username : NULL,
				     ct->has_password ? &ct->password : NULL,
				     b->auth_ctx);
	} else if (!cfg->allow_anonymous && !ct->has_username) {
		auth_rc = MQTT_RC_NOT_AUTHORIZED;
	}
	if (auth_rc) {
		log_write(b->log, LOG_NOTICE,
			  "Client %s from %s disconnected, not authorised.",
			  c->id, c->peer);
		connack_fail(c, v, auth_rc);
		return;
	}
	connect_accept(b, c, ct, NULL, now_ms);
}

/* Sends AUTH with reason and c's method (plus io's output, if any). */
static void auth_send(broker_conn *c, uint8_t reason, const authn_io *io)
{
	mqtt_packet pkt;
	memset(&pkt, 0, sizeof(pkt));
	pkt.type = MQTT_AUTH;
	pkt.u.disconnect.reason = reason;
	mqtt_props *p = &pkt.u.disconnect.props;
	p->present |= MQTT_PROP_BIT(MQTT_PROP_AUTHENTICATION_METHOD);
	p->auth_method = mqtt_str_c(c->auth->am->name);
	if (io && io->out_len) {
		p->present |= MQTT_PROP_BIT(MQTT_PROP_AUTHENTICATION_DATA);
		p->auth_data = (mqtt_bytes){ io->out, (uint32_t)io->out_len };
	}
	send_pkt(c, MQTT_V5, &pkt);
}

static void auth_end(broker_conn *c)
{
	conn_auth *ca = c->auth;
	if (!ca)
		return;
	if (ca->am && ca->am_started && ca->am->end)
		ca->am->end(ca->am_state, ca->am->ctx);
	ca->am_state = NULL;
	ca->am_started = false;
	free(ca->pending_connect);
	ca->pending_connect = NULL;
	ca->pending_len = 0;
}

/* AUTH while CONN_AUTH: the next step of the exchange CONNECT began. */
static void handle_auth(broker *b, broker_conn *c, const mqtt_disconnect *a,
			uint64_t now_ms)
{
	const mqtt_props *ap = &a->props;
	mqtt_str method = { NULL, 0 };
	if (ap->present & MQTT_PROP_BIT(MQTT_PROP_AUTHENTICATION_METHOD))
		method = ap->auth_method;
	conn_auth *ca = c->auth;
	if (a->reason != MQTT_RC_CONTINUE_AUTHENTICATION ||
	    method.len != strlen(ca->am->name) ||
	    memcmp(method.ptr, ca->am->name, method.len) != 0) {
		/* [MQTT-4.12.0-1..5]: same method, Continue only. */
		log_write(b->log, LOG_NOTICE,
			  "Client %s sent a bad AUTH during authentication, closing.",
			  conn_id(c));
		connack_fail(c, MQTT_V5, MQTT_RC_PROTOCOL_ERROR);
		return;
	}
	uint8_t obuf[AUTHN_OUT_MAX];
	authn_io io;
	memset(&io, 0, sizeof(io));
	io.client_id = c->id;
	io.in = ap->auth_data;
	io.out = obuf;
	io.out_cap = sizeof(obuf);
	authn_status st = ca->am->step(ca->am_state, &io, ca->am->ctx);
	if (st == AUTHN_CONTINUE) {
		auth_send(c, MQTT_RC_CONTINUE_AUTHENTICATION, &io);
		return;
	}
	if (st != AUTHN_SUCCESS) {
		log_write(b->log, LOG_NOTICE,
			  "Client %s from %s disconnected, authentication failed.",
			  conn_id(c), c->peer);
		connack_fail(c, MQTT_V5, MQTT_RC_NOT_AUTHORIZED);
		return;
	}
	mqtt_packet pkt;
	int rc = mqtt_decode(ca->pending_connect, ca->pending_len, MQTT_V5,
			     0, &pkt);
	if (rc <= 0 || pkt.type != MQTT_CONNECT) { /* we decoded it before */
		connack_fail(c, MQTT_V5, MQTT_RC_UNSPECIFIED_ERROR);
		return;
	}
	c->state = CONN_NEW;
	connect_accept(b, c, &pkt.u.connect, &io, now_ms);
	/* The CONNECT copy is no longer referenced (sessions copy). */
	free(ca->pending_connect);
	ca->pending_connect = NULL;
}

/* The rest of CONNECT once the client is authenticated: session, will,
 * CONNACK. aio: the enhanced authentication's last step, or NULL. */
static void connect_accept(broker *b, broker_conn *c, const mqtt_connect *ct,
			   const authn_io *aio, uint64_t now_ms)
{
	const broker_cfg *cfg = b->cfg;
	mqtt_version v = ct->version;
	bool v5 = v == MQTT_V5;
	uint32_t idlen = (uint32_t)strlen(c->id);
	bool assigned = c->id_assigned;

	/* Keep alive: v5 gets a Server Keep Alive override; 3.x is accepted
	 * as sent. */
	uint16_t ka = ct->keep_alive;
	bool ka_override = false;
	if (v5 && cfg->max_keepalive && ka > cfg->max_keepalive) {
		ka = cfg->max_keepalive;
		ka_override = true;
	}

	uint32_t expiry;
	if (v5)
		expiry = (ct->props.present &
			  MQTT_PROP_BIT(MQTT_PROP_SESSION_EXPIRY_INTERVAL))
				 ? ct->props.session_expiry
				 : 0;
	else
		expiry = ct->clean_start ? 0 : SESSION_EXPIRY_NEVER;

	session *s = strmap_get(&b->sessions, c->id, idlen);
	if (s && s->conn) {
		broker_conn *old = s->conn;
		log_write(b->log, LOG_NOTICE,
			  "Client %s already connected, closing old connection.",
			  c->id);
		if (old->state == CONN_ACTIVE && old->version == MQTT_V5) {
			mqtt_packet pkt;
			memset(&pkt, 0, sizeof(pkt));
			pkt.type = MQTT_DISCONNECT;
			pkt.u.disconnect.reason = MQTT_RC_SESSION_TAKEN_OVER;
			send_pkt(old, MQTT_V5, &pkt);
		}
		old->close_logged = true;
		conn_want_close(old);
		if (!old->will_on_close)
			session_set_will(s, NULL, 0);
		conn_detach(old);
		s->conn = NULL;
		b->clients_connected--;
		/* The old connection ended abnormally: its will goes now
		 * unless a will delay is still running into a resumed session
		 * (which cancels it) [MQTT-3.1.3-9]. */
		if (old->will_on_close &&
		    (s->will_delay_s == 0 || ct->clean_start))
			publish_will(b, s, now_ms);
	}
	if (s) {
		/* A session that lasts only as long as its network connection
		 * (3.1.1 clean session 1, v5 expiry 0) ends with the one just
		 * taken over: its state is not reused [MQTT-3.1.2-6]. */
		if (ct->clean_start || s->expiry_s == 0) {
			session_end(b, s, now_ms); /* sends a pending will */
			s = NULL;
		} else {
			/* Reconnected within the will delay: cancel it. */
			session_set_will(s, NULL, 0);
		}
	}
	bool session_present = s != NULL;
	if (!s) {
		s = session_new(b, c->id, idlen);
		if (!s) {
			log_write(b->log, LOG_ERR,
				  "Out of memory creating session for %s.",
				  c->id);
			connack_fail(c, v, MQTT_RC_SERVER_UNAVAILABLE);
			return;
		}
	}
	s->expire_at_ms = 0;
	s->expiry_s = expiry;
	s->conn = c;
	if (++b->clients_connected > b->clients_max)
		b->clients_max = b->clients_connected;
	free(s->username);
	s->username = NULL;
	s->username_len = 0;
	if (aio && aio->user[0]) {
		/* The identity the authentication method proved. */
		size_t ulen = strnlen(aio->user, sizeof(aio->user));
		s->username = malloc(ulen + 1);
		if (s->username) {
			memcpy(s->username, aio->user, ulen);
			s->username[ulen] = '\0';
			s->username_len = (uint32_t)ulen;
		}
	} else if (ct->has_username) {
		s->username = malloc((size_t)ct->username.len + 1);
		if (s->username) {
			memcpy(s->username, ct->username.ptr, ct->username.len);
			s->username[ct->username.len] = '\0';
			s->username_len = ct->username.len;
		}
	}
	s->drop_logged = false;
	c->s = s;
	c->connect_expiry_s = expiry;
	c->keep_alive = ka;
	c->client_recv_max = UINT16_MAX;
	c->client_max_packet = 0;
	if (v5 && (ct->props.present &
		   MQTT_PROP_BIT(MQTT_PROP_RECEIVE_MAXIMUM)))
		c->client_recv_max = ct->props.receive_maximum;
	if (v5 && (ct->props.present &
		   MQTT_PROP_BIT(MQTT_PROP_MAXIMUM_PACKET_SIZE)))
		c->client_max_packet = ct->props.maximum_packet_size;
	c->out_alias_max = 0;
	if (v5 && (ct->props.present &
		   MQTT_PROP_BIT(MQTT_PROP_TOPIC_ALIAS_MAXIMUM)))
		c->out_alias_max = ct->props.topic_alias_maximum <
						   BROKER_OUT_ALIAS_MAX
					   ? ct->props.topic_alias_maximum
					   : BROKER_OUT_ALIAS_MAX;

	if (ct->will) {
		mqtt_bytes wprops = { NULL, 0 };
		if (v5)
			wprops = ct->will_props.raw;
		broker_msg *w = msg_create(&b->msgs, ct->will_topic, ct->will_payload,
					   wprops, ct->will_qos,
					   ct->will_retain, 0, s->uid);
		if (!w) {
			connack_fail(c, v, MQTT_RC_SERVER_UNAVAILABLE);
			return;
		}
		uint32_t delay = 0;
		if (v5 && (ct->will_props.present &
			   MQTT_PROP_BIT(MQTT_PROP_WILL_DELAY_INTERVAL)))
			delay = ct->will_props.will_delay;
		session_set_will(s, w, delay);
		s->will_expiry_set =
			v5 && (ct->will_props.present &
			       MQTT_PROP_BIT(MQTT_PROP_MESSAGE_EXPIRY_INTERVAL));
		s->will_expiry_s = s->will_expiry_set
					   ? ct->will_props.message_expiry
					   : 0;
	} else {
		session_set_will(s, NULL, 0);
	}
	c->will_on_close = true;
	c->state = CONN_ACTIVE;

	mqtt_packet pkt;
	char *resp_info = NULL;
	bool shm_ok = v5 && shm_offered(b, c, ct);
	static const mqtt_user_prop shm_echo = {
		{ "shimmy", 6 }, { SHIMMY_SHM_PROTOCOL, 5 }
	};
	memset(&pkt, 0, sizeof(pkt));
	pkt.type = MQTT_CONNACK;
	pkt.u.connack.session_present = session_present;
	if (v5) {
		mqtt_props *p = &pkt.u.connack.props;
		if (cfg->max_inflight_messages &&
		    cfg->max_inflight_messages < UINT16_MAX) {
			p->present |= MQTT_PROP_BIT(MQTT_PROP_RECEIVE_MAXIMUM);
			p->receive_maximum =
				(uint16_t)cfg->max_inflight_messages;
		}
		if (cfg->max_packet_size) {
			p->present |=
				MQTT_PROP_BIT(MQTT_PROP_MAXIMUM_PACKET_SIZE);
			p->maximum_packet_size = cfg->max_packet_size;
		}
		if (!cfg->retain_available) {
			p->present |= MQTT_PROP_BIT(MQTT_PROP_RETAIN_AVAILABLE);
			p->retain_available = 0;
		}
		p->present |= MQTT_PROP_BIT(MQTT_PROP_TOPIC_ALIAS_MAXIMUM);
		p->topic_alias_maximum = BROKER_TOPIC_ALIAS_MAX;
		if (ka_override) {
			p->present |= MQTT_PROP_BIT(MQTT_PROP_SERVER_KEEP_ALIVE);
			p->server_keep_alive = ka;
		}
		if (assigned) {
			p->present |= MQTT_PROP_BIT(
				MQTT_PROP_ASSIGNED_CLIENT_IDENTIFIER);
			p->assigned_client_id = mqtt_str_c(c->id);
		}
		if (shm_ok) {
			p->user = &shm_echo;
			p->user_count = 1;
		}
		if ((ct->props.present &
		     MQTT_PROP_BIT(MQTT_PROP_REQUEST_RESPONSE_INFORMATION)) &&
		    ct->props.request_response_info == 1) {
			/* [MQTT-3.1.2-28]: optional; we offer a per-client
			 * prefix (BROKER_RESPONSE_PREFIX). */
			size_t n = sizeof(BROKER_RESPONSE_PREFIX) + idlen;
			resp_info = malloc(n);
			if (resp_info) {
				snprintf(resp_info, n, "%s%s",
					 BROKER_RESPONSE_PREFIX, c->id);
				p->present |= MQTT_PROP_BIT(
					MQTT_PROP_RESPONSE_INFORMATION);
				p->response_info = mqtt_str_c(resp_info);
			}
		}
		if (c->auth && c->auth->am) {
			p->present |= MQTT_PROP_BIT(
				MQTT_PROP_AUTHENTICATION_METHOD);
			p->auth_method = mqtt_str_c(c->auth->am->name);
			if (aio && aio->out_len) {
				p->present |= MQTT_PROP_BIT(
					MQTT_PROP_AUTHENTICATION_DATA);
				p->auth_data = (mqtt_bytes){
					aio->out, (uint32_t)aio->out_len
				};
			}
		}
	}
	int src = send_pkt(c, v, &pkt);
	free(resp_info);
	if (src)
		return;
	b->connections_total++;
	if (shm_ok) {
		c->shm = shm_client_open(b->shm, c);
		if (!c->shm)
			log_write(b->log, LOG_WARN,
				  "Client %s: shared memory set-up failed; it stays on MQTT.",
				  c->id);
	} else if (b->shm && c->s && c->s->sub_count) {
		/* A returning $share member changes who claims (§7). */
		shm_broker_interest(b->shm);
	}

	if (ct->has_username)
		log_write(b->log, LOG_NOTICE,
			  "New client connected from %s as %s (p%d, c%d, k%u, u'%.*s').",
			  c->peer, c->id, proto_num(v), ct->clean_start ? 1 : 0,
			  (unsigned)ka, (int)ct->username.len,
			  ct->username.ptr ? ct->username.ptr : "");
	else
		log_write(b->log, LOG_NOTICE,
			  "New client connected from %s as %s (p%d, c%d, k%u).",
			  c->peer, c->id, proto_num(v), ct->clean_start ? 1 : 0,
			  (unsigned)ka);
	/* From here on the session's copy of the id serves (conn_id()). */
	free(c->id);
	c->id = NULL;

	if (session_present) {
		/* Resend what was in flight [MQTT-4.4.0-1]. */
		for (uint32_t i = 0; i < s->infl_count && c->state == CONN_ACTIVE;
		     i++) {
			sess_out *e = &s->inflight[i];
			if (e->state == SESS_OUT_WAIT_PUBCOMP)
				send_ack(c, MQTT_PUBREL, e->pid, 0);
			else
				send_publish(c, e->msg, e->qos, e->retain, true,
					     e->pid, now_ms);
		}
		drain(c, now_ms);
	}
}

/* ---- PUBLISH in ------------------------------------------------------- */

static void handle_publish(broker *b, broker_conn *c, const mqtt_publish *pub,
			   uint64_t now_ms)
{
	const broker_cfg *cfg = b->cfg;
	session *s = c->s;
	bool v5 = c->version == MQTT_V5;
	mqtt_str topic = pub->topic;

	if (v5 && (pub->props.present & MQTT_PROP_BIT(MQTT_PROP_TOPIC_ALIAS))) {
		uint16_t a = pub->props.topic_alias;
		if (a == 0 || a > BROKER_TOPIC_ALIAS_MAX) {
			log_write(b->log, LOG_NOTICE,
				  "Client %s sent invalid topic alias %u, disconnecting.",
				  conn_id(c), (unsigned)a);
			conn_fail(c, MQTT_RC_TOPIC_ALIAS_INVALID);
			return;
		}
		if (!c->aliases && topic.len) {
			c->aliases = calloc(BROKER_TOPIC_ALIAS_MAX + 1,
					    sizeof(*c->aliases));
			if (!c->aliases) {
				out_oom(c);
				return;
			}
		}
		if (topic.len) {
			char *t = malloc((size_t)topic.len + 1);
			if (!t) {
				out_oom(c);
				return;
			}
			memcpy(t, topic.ptr, topic.len);
			t[topic.len] = '\0';
			free(c->aliases[a]);
			c->aliases[a] = t;
		} else if (!c->aliases || !c->aliases[a]) {
			conn_fail(c, MQTT_RC_PROTOCOL_ERROR);
			return;
		} else {
			topic = mqtt_str_c(c->aliases[a]);
		}
	}
	if (topic.len == 0) {
		conn_fail(c, MQTT_RC_PROTOCOL_ERROR);
		return;
	}
	if (shimmy_ctl_is_reserved(topic.ptr, topic.len)) {
		handle_shm_ctl(b, c, pub, topic);
		return;
	}
	if (pub->retain && !cfg->retain_available) {
		/* v5: [MQTT-3.3.1-11]; 3.x: mosquitto closes too. */
		log_write(b->log, LOG_NOTICE,
			  "Client %s sent a retained message but retain is not available, disconnecting.",
			  conn_id(c));
		conn_fail(c, MQTT_RC_RETAIN_NOT_SUPPORTED);
		return;
	}
	if (pub->qos == 2 && session_qos2_has(s, pub->packet_id)) {
		/* Duplicate of a message already delivered [MQTT-4.3.3-10]. */
		send_ack(c, MQTT_PUBREC, pub->packet_id, 0);
		return;
	}
	if (pub->qos == 2 && v5) {
		uint32_t rmax = cfg->max_inflight_messages
					? cfg->max_inflight_messages
					: UINT16_MAX;
		if (s->qos2_count >= rmax) {
			conn_fail(c, MQTT_RC_RECEIVE_MAXIMUM_EXCEEDED);
			return;
		}
	}
	if (!acl_allows(b, s, topic, ACL_WRITE)) {
		log_write(b->log, LOG_DEBUG,
			  "Denied PUBLISH from %s (q%d, r%d, '%.*s', ... (%u bytes)).",
			  conn_id(c), pub->qos, pub->retain ? 1 : 0,
			  (int)topic.len, topic.ptr, pub->payload.len);
		ack_publish(c, pub, MQTT_RC_NOT_AUTHORIZED);
		return;
	}
	if (cfg->message_size_limit &&
	    pub->payload.len > cfg->message_size_limit) {
		log_write(b->log, LOG_DEBUG,
			  "Dropped too large PUBLISH from %s (q%d, r%d, '%.*s', ... (%u bytes)).",
			  conn_id(c), pub->qos, pub->retain ? 1 : 0,
			  (int)topic.len, topic.ptr, pub->payload.len);
		ack_publish(c, pub, MQTT_RC_PACKET_TOO_LARGE);
		return;
	}
	if (v5 && (pub->props.present &
		   MQTT_PROP_BIT(MQTT_PROP_PAYLOAD_FORMAT_INDICATOR)) &&
	    pub->props.payload_format == 1 &&
	    mqtt_utf8_validate(pub->payload.ptr, pub->payload.len)) {
		/* [MQTT-3.3.2.3.2]: we validate. QoS 1/2 get their ack with
		 * 0x99 Payload format invalid and the message is dropped; a
		 * QoS 0 one, which has no ack, gets DISCONNECT 0x99. */
		log_write(b->log, LOG_NOTICE,
			  "Client %s sent a PUBLISH on %.*s marked UTF-8 that is not.",
			  conn_id(c), (int)topic.len, topic.ptr);
		if (!ack_publish(c, pub, MQTT_RC_PAYLOAD_FORMAT_INVALID))
			conn_fail(c, MQTT_RC_PAYLOAD_FORMAT_INVALID);
		return;
	}
	uint64_t expiry = 0;
	if (v5 && (pub->props.present &
		   MQTT_PROP_BIT(MQTT_PROP_MESSAGE_EXPIRY_INTERVAL))) {
		expiry = now_ms + (uint64_t)pub->props.message_expiry * 1000;
		if (expiry == 0)
			expiry = 1;
	}
	mqtt_bytes props = { NULL, 0 };
	if (v5)
		props = pub->props.raw;
	broker_msg *m = NULL;
	if (b->adopt_buf && c->cur_raw == b->adopt_buf &&
	    c->cur_raw_len == b->adopt_len &&
	    pub->payload.len >= BROKER_OUT_REF_MIN) {
		/* The whole input block is this packet: keep the payload in
		 * it instead of copying (broker_conn_input_owned). */
		m = msg_create_ext(&b->msgs, topic, pub->payload, props, pub->qos,
				   pub->retain, expiry, s->uid, b->adopt_buf);
		if (m)
			b->adopt_buf = NULL;
	} else {
		m = msg_create(&b->msgs, topic, pub->payload, props, pub->qos,
			       pub->retain, expiry, s->uid);
	}
	if (!m) {
		log_write(b->log, LOG_ERR, "Out of memory on PUBLISH from %s.",
			  conn_id(c));
		conn_fail(c, MQTT_RC_UNSPECIFIED_ERROR);
		return;
	}
	if (pub->qos == 2 && session_qos2_add(s, pub->packet_id)) {
		msg_unref(m);
		out_oom(c);
		return;
	}
	int matched = publish_msg(b, m, now_ms);
	msg_unref(m);
	uint8_t rc = matched ? 0 : MQTT_RC_NO_MATCHING_SUBSCRIBERS;
	ack_publish(c, pub, rc);
}

/* ---- acknowledgements in ---------------------------------------------- */

static void handle_ack(broker *b, broker_conn *c, mqtt_type type,
		       const mqtt_ack *ack, uint64_t now_ms)
{
	session *s = c->s;
	int i = session_inflight_find(s, ack->packet_id);
	sess_out *e = i >= 0 ? &s->inflight[i] : NULL;
	bool v5 = c->version == MQTT_V5;
	switch (type) {
	case MQTT_PUBACK:
		if (e && e->state == SESS_OUT_WAIT_PUBACK) {
			session_inflight_remove(s, (uint32_t)i);
			drain(c, now_ms);
		}
		break;
	case MQTT_PUBREC:
		if (e && e->state == SESS_OUT_WAIT_PUBREC) {
			if (v5 && ack->reason >= 0x80) {
				/* The flow ends here [MQTT-4.3.3-4 note]. */
				session_inflight_remove(s, (uint32_t)i);
				drain(c, now_ms);
				break;
			}
			msg_unref(e->msg);
			e->msg = NULL;
			e->state = SESS_OUT_WAIT_PUBCOMP;
			send_ack(c, MQTT_PUBREL, ack->packet_id, 0);
		} else if (e && e->state == SESS_OUT_WAIT_PUBCOMP) {
			send_ack(c, MQTT_PUBREL, ack->packet_id, 0);
		} else {
			send_ack(c, MQTT_PUBREL, ack->packet_id,
				 MQTT_RC_PACKET_IDENTIFIER_NOT_FOUND);
		}
		break;
	case MQTT_PUBREL:
		if (session_qos2_del(s, ack->packet_id))
			send_ack(c, MQTT_PUBCOMP, ack->packet_id, 0);
		else
			send_ack(c, MQTT_PUBCOMP, ack->packet_id,
				 MQTT_RC_PACKET_IDENTIFIER_NOT_FOUND);
		break;
	case MQTT_PUBCOMP:
		if (e && e->state == SESS_OUT_WAIT_PUBCOMP) {
			session_inflight_remove(s, (uint32_t)i);
			drain(c, now_ms);
		}
		break;
	default:
		break;
	}
}

/* ---- SUBSCRIBE / UNSUBSCRIBE ------------------------------------------ */

static uint8_t *scratch(broker *b, size_t n)
{
	if (n > b->scratch_cap) {
		uint8_t *ns = realloc(b->scratch, n);
		if (!ns)
			return NULL;
		b->scratch = ns;
		b->scratch_cap = n;
	}
	return b->scratch;
}

typedef struct retained_ctx {
	broker *b;
	session *s;
	uint8_t qos;
	uint64_t now_ms;
} retained_ctx;

static void retained_cb(broker_msg *m, void *ctx)
{
	retained_ctx *rc = ctx;
	if (msg_expired(m, rc->now_ms))
		return;
	uint8_t qos = m->qos < rc->qos ? m->qos : rc->qos;
	if (rc->b->cfg->upgrade_outgoing_qos)
		qos = rc->qos;
	/* [MQTT-3.3.1-8]: sent because of a new subscription: RETAIN = 1. */
	deliver(rc->b, rc->s, m, qos, DELIVER_RETAIN, rc->now_ms);
}

static void handle_subscribe(broker *b, broker_conn *c,
			     const mqtt_subscribe *sub, uint64_t now_ms)
{
	session *s = c->s;
	bool v5 = c->version == MQTT_V5;
	uint32_t sub_id = 0;
	if (v5 && (sub->props.present &
		   MQTT_PROP_BIT(MQTT_PROP_SUBSCRIPTION_IDENTIFIER)))
		sub_id = sub->props.sub_id;
	/* reasons[0..count) then send_retained[0..count). */
	uint8_t *reasons = scratch(b, (size_t)sub->count * 2);
	if (!reasons) {
		out_oom(c);
		return;
	}
	uint8_t *want_retained = reasons + sub->count;
	uint32_t off = 0, i = 0;
	mqtt_topic_entry ent;
	while (i < sub->count &&
	       mqtt_topic_entry_next(sub, MQTT_SUBSCRIBE, &off, &ent) == 1) {
		uint8_t qos = ent.options & MQTT_SUBOPT_QOS_MASK;
		mqtt_str group, inner;
		want_retained[i] = 0;
		if (mqtt_topic_validate_filter(ent.filter, true) != 0) {
			reasons[i++] = v5 ? MQTT_RC_TOPIC_FILTER_INVALID
					  : MQTT_RC_UNSPECIFIED_ERROR;
			continue;
		}
		bool shared = subtree_share_split(ent.filter, &group, &inner);
		if (!acl_allows(b, s, shared ? inner : ent.filter,
				ACL_SUBSCRIBE)) {
			log_write(b->log, LOG_NOTICE,
				  "Client %s denied subscription to %.*s.",
				  conn_id(c), (int)ent.filter.len,
				  ent.filter.ptr);
			/* 0x80 in both versions, not v5's 0x87: the Paho
			 * interoperability suite (test_subscribe_failure in
			 * client_test5.py) expects Unspecified error for a
			 * refused filter, and the spec allows either. */
			reasons[i++] = MQTT_RC_UNSPECIFIED_ERROR;
			continue;
		}
		if (shared && v5 && (ent.options & MQTT_SUBOPT_NO_LOCAL)) {
			/* [MQTT-3.8.3-4] */
			conn_fail(c, MQTT_RC_PROTOCOL_ERROR);
			return;
		}
		bool existed = false;
		if (session_sub_set(s, ent.filter, ent.options, sub_id, NULL) ||
		    subtree_add(b->subs, ent.filter, s, ent.options, sub_id,
				&existed)) {
			session_sub_del(s, ent.filter);
			subtree_remove(b->subs, ent.filter, s);
			reasons[i++] = MQTT_RC_UNSPECIFIED_ERROR;
			continue;
		}
		log_write(b->log, LOG_SUBSCRIBE, "%s %u %.*s", conn_id(c),
			  (unsigned)qos, (int)ent.filter.len, ent.filter.ptr);
		reasons[i] = qos;
		unsigned rh = (ent.options & MQTT_SUBOPT_RETAIN_HANDLING_MASK) >>
			      MQTT_SUBOPT_RETAIN_HANDLING_SHIFT;
		if (!shared && (!v5 || rh == 0 || (rh == 1 && !existed)))
			want_retained[i] = 1;
		i++;
	}
	uint32_t n = i;
	/* Before SUBACK: the client maps the logs it now matches before it
	 * learns the subscription is in force. */
	shm_subs_changed(b, c);

	mqtt_packet pkt;
	memset(&pkt, 0, sizeof(pkt));
	pkt.type = MQTT_SUBACK;
	pkt.u.suback.packet_id = sub->packet_id;
	pkt.u.suback.reasons = (mqtt_bytes){ reasons, n };
	if (send_pkt(c, c->version, &pkt))
		return;

	/* Retained messages after the SUBACK, as mosquitto orders them. */
	off = 0;
	for (i = 0; i < n &&
		    mqtt_topic_entry_next(sub, MQTT_SUBSCRIBE, &off, &ent) == 1;
	     i++) {
		if (!b->scratch || !want_retained[i])
			continue;
		retained_ctx rc = { b, s, ent.options & MQTT_SUBOPT_QOS_MASK,
				    now_ms };
		retain_match(b->retained, ent.filter, retained_cb, &rc);
		/* retained_cb never touches b->scratch, so want_retained is
		 * still valid. */
	}
}

static void handle_unsubscribe(broker *b, broker_conn *c,
			       const mqtt_subscribe *uns)
{
	session *s = c->s;
	bool v5 = c->version == MQTT_V5;
	uint8_t *reasons = scratch(b, uns->count ? uns->count : 1);
	if (!reasons) {
		out_oom(c);
		return;
	}
	uint32_t off = 0, i = 0;
	mqtt_topic_entry ent;
	while (i < uns->count &&
	       mqtt_topic_entry_next(uns, MQTT_UNSUBSCRIBE, &off, &ent) == 1) {
		if (mqtt_topic_validate_filter(ent.filter, true) != 0) {
			reasons[i++] = MQTT_RC_TOPIC_FILTER_INVALID;
			continue;
		}
		bool found = session_sub_del(s, ent.filter);
		subtree_remove(b->subs, ent.filter, s);
		log_write(b->log, LOG_UNSUBSCRIBE, "%s %.*s", conn_id(c),
			  (int)ent.filter.len, ent.filter.ptr);
		reasons[i++] = found ? MQTT_RC_SUCCESS
				     : MQTT_RC_NO_SUBSCRIPTION_EXISTED;
	}
	shm_subs_changed(b, c);
	mqtt_packet pkt;
	memset(&pkt, 0, sizeof(pkt));
	pkt.type = MQTT_UNSUBACK;
	pkt.u.suback.packet_id = uns->packet_id;
	if (v5)
		pkt.u.suback.reasons = (mqtt_bytes){ reasons, i };
	send_pkt(c, c->version, &pkt);
}

/* ---- DISCONNECT ------------------------------------------------------- */

static void handle_disconnect(broker *b, broker_conn *c,
			      const mqtt_disconnect *d)
{
	session *s = c->s;
	if (c->version == MQTT_V5 &&
	    (d->props.present &
	     MQTT_PROP_BIT(MQTT_PROP_SESSION_EXPIRY_INTERVAL))) {
		if (c->connect_expiry_s == 0 && d->props.session_expiry != 0) {
			/* [MQTT-3.14.2-2] */
			conn_fail(c, MQTT_RC_PROTOCOL_ERROR);
			return;
		}
		s->expiry_s = d->props.session_expiry;
	}
	/* 0x04 Disconnect with Will Message keeps the will [MQTT-3.14.4-3]. */
	c->will_on_close = c->version == MQTT_V5 &&
			   d->reason == MQTT_RC_DISCONNECT_WITH_WILL;
	if (!c->will_on_close)
		session_set_will(s, NULL, 0);
	log_write(b->log, LOG_NOTICE, "Client %s disconnected.", conn_id(c));
	c->close_logged = true;
	conn_want_close(c);
}

/* ---- dispatch --------------------------------------------------------- */

static void handle_packet(broker *b, broker_conn *c, const mqtt_packet *pkt,
			  uint64_t now_ms)
{
	if (c->state == CONN_NEW) {
		if (pkt->type != MQTT_CONNECT) {
			/* [MQTT-3.1.0-1] */
			log_write(b->log, LOG_NOTICE,
				  "Client %s sent %s before CONNECT, closing.",
				  c->peer, mqtt_type_str(pkt->type));
			conn_want_close(c);
			return;
		}
		handle_connect(b, c, &pkt->u.connect, now_ms);
		return;
	}
	if (c->state == CONN_AUTH) {
		if (pkt->type == MQTT_AUTH) {
			handle_auth(b, c, &pkt->u.disconnect, now_ms);
		} else {
			/* DISCONNECT abandons; anything else is a protocol
			 * error before CONNACK [MQTT-4.12.0-...]. */
			if (pkt->type != MQTT_DISCONNECT)
				connack_fail(c, MQTT_V5,
					     MQTT_RC_PROTOCOL_ERROR);
			conn_want_close(c);
		}
		return;
	}
	if (!c->s) {
		conn_want_close(c);
		return;
	}
	switch (pkt->type) {
	case MQTT_PUBLISH:
		handle_publish(b, c, &pkt->u.publish, now_ms);
		break;
	case MQTT_PUBACK:
	case MQTT_PUBREC:
	case MQTT_PUBREL:
	case MQTT_PUBCOMP:
		handle_ack(b, c, pkt->type, &pkt->u.ack, now_ms);
		break;
	case MQTT_SUBSCRIBE:
		handle_subscribe(b, c, &pkt->u.subscribe, now_ms);
		break;
	case MQTT_UNSUBSCRIBE:
		handle_unsubscribe(b, c, &pkt->u.subscribe);
		break;
	case MQTT_PINGREQ: {
		mqtt_packet resp;
		memset(&resp, 0, sizeof(resp));
		resp.type = MQTT_PINGRESP;
		send_pkt(c, c->version, &resp);
		break;
	}
	case MQTT_DISCONNECT:
		handle_disconnect(b, c, &pkt->u.disconnect);
		break;
	case MQTT_CONNECT: /* second CONNECT [MQTT-3.1.0-2] */
	default:           /* server-to-client packets, AUTH without method */
		log_write(b->log, LOG_NOTICE,
			  "Client %s disconnected due to protocol error (%s).",
			  conn_id(c), mqtt_type_str(pkt->type));
		conn_fail(c, MQTT_RC_PROTOCOL_ERROR);
		break;
	}
}

static void handle_decode_error(broker *b, broker_conn *c, int err)
{
	if (c->state == CONN_NEW) {
		if (err == MQTT_ERR_BAD_VERSION) {
			log_write(b->log, LOG_NOTICE,
				  "Client from %s using unsupported protocol version, closing.",
				  c->peer);
			connack_fail(c, MQTT_V311,
				     MQTT_RC_UNSUPPORTED_PROTOCOL_VERSION);
			return;
		}
		log_write(b->log, LOG_NOTICE,
			  "Client from %s sent an invalid CONNECT (%s), closing.",
			  c->peer, mqtt_strerror(err));
		conn_want_close(c);
		return;
	}
	log_write(b->log, LOG_NOTICE,
		  "Client %s disconnected due to %s.", conn_id(c),
		  mqtt_strerror(err));
	conn_fail(c, mqtt_reason_from_err(err));
}

/* ---- broker.h --------------------------------------------------------- */

broker *broker_create(const broker_cfg *cfg, const shimmy_log *log,
		      uint64_t now_ms)
{
	broker *b = calloc(1, sizeof(*b));
	if (!b)
		return NULL;
	b->cfg = cfg;
	b->log = log;
	msg_pool_init(&b->msgs);
	b->subs = subtree_create();
	b->retained = retain_create();
	if (!b->subs || !b->retained) {
		subtree_destroy(b->subs);
		retain_destroy(b->retained);
		free(b);
		return NULL;
	}
	strmap_init(&b->sessions);
	subtree_set_prefer(b->subs, session_online, NULL);
	if (cfg->shm_enabled)
		shm_setup(b);
	b->next_uid = 1;
	b->rng = now_ms ^ (uint64_t)(uintptr_t)b;
	b->start_ms = now_ms;
	b->now_ms = now_ms;
	b->next_scan_ms = now_ms + 1000;
	b->next_sys_ms = now_ms;
	return b;
}

static void conn_free(broker_conn *c)
{
	if (c->aliases) {
		for (int i = 0; i <= BROKER_TOPIC_ALIAS_MAX; i++)
			free(c->aliases[i]);
		free(c->aliases);
	}
	out_alias_free(c);
	auth_end(c);
	free(c->auth);
	out_refs_free(c);
	out_retired_free(c);
	free(c->out);
	free(c->id);
	free(c);
}

void broker_destroy(broker *b)
{
	if (!b)
		return;
	b->destroying = true;
	shm_broker_destroy(b->shm);
	b->shm = NULL;
	while (b->conns) {
		broker_conn *c = b->conns;
		b->conns = c->next;
		conn_free(c);
	}
	while (b->sess_head) {
		session *s = b->sess_head;
		b->sess_head = s->next;
		session_destroy(s);
	}
	strmap_fini(&b->sessions);
	subtree_destroy(b->subs);
	retain_destroy(b->retained);
	free(b->hits);
	free(b->scratch);
	for (int i = 0; i < ROUTE_CACHE_SLOTS; i++) {
		free(b->rcache[i].topic);
		free(b->rcache[i].ents);
	}
	/* Every message is gone with the conns, sessions and stores above. */
	assert(b->msgs.live == 0);
	msg_pool_fini(&b->msgs);
	free(b);
}

void broker_set_authn(broker *b, const struct authn *a)
{
	b->authn = a;
}

void broker_set_acl(broker *b, const struct acl *a)
{
	b->acl = a;
}

void broker_set_auth(broker *b, broker_auth_fn fn, void *ctx)
{
	b->auth_fn = fn;
	b->auth_ctx = ctx;
}

broker_conn *broker_conn_open(broker *b, broker_transport transport,
			      const char *peer, void *io_ctx, uint64_t now_ms)
{
	if (!peer)
		peer = "?";
	size_t plen = strnlen(peer, BROKER_PEER_MAX);
	broker_conn *c = calloc(1, sizeof(*c) + plen + 1);
	if (!c)
		return NULL;
	c->b = b;
	c->transport = transport;
	memcpy(c->peer, peer, plen);
	c->peer[plen] = '\0';
	c->io = io_ctx;
	c->state = CONN_NEW;
	c->version = MQTT_V311;
	c->last_rx_ms = now_ms;
	c->next = b->conns;
	if (b->conns)
		b->conns->prev = c;
	b->conns = c;
	b->conn_count++;
	b->sockets_total++;
	return c;
}

size_t broker_conn_input(broker *b, broker_conn *c, const uint8_t *buf,
			 size_t len, uint64_t now_ms)
{
	b->now_ms = now_ms;
	if (c->state == CONN_CLOSING) {
		b->bytes_received += len;
		return len;
	}
	size_t off = 0;
	if (len)
		c->last_rx_ms = now_ms;
	while (off < len && c->state != CONN_CLOSING) {
		mqtt_packet pkt;
		int rc = mqtt_decode(buf + off, len - off, c->version,
				     b->cfg->max_packet_size, &pkt);
		if (rc == MQTT_ERR_NEED_MORE)
			break;
		if (rc <= 0) {
			handle_decode_error(b, c, rc ? rc : MQTT_ERR_MALFORMED);
			return len;
		}
		c->cur_raw = buf + off;
		c->cur_raw_len = (size_t)rc;
		off += (size_t)rc;
		b->msgs_received++;
		if (pkt.type == MQTT_PUBLISH)
			b->pub_received++;
		b->in_conn = c;
		handle_packet(b, c, &pkt, now_ms);
		b->in_conn = NULL;
		c->cur_raw = NULL;
		/* Throttled: leave the rest of the input in the socket. */
		if (c->flags & BROKER_CONN_THROTTLED)
			break;
	}
	size_t used = c->state == CONN_CLOSING ? len : off;
	b->bytes_received += used;
	return used;
}

size_t broker_conn_input_owned(broker *b, broker_conn *c, uint8_t *buf,
			       size_t len, uint64_t now_ms, int *taken)
{
	b->adopt_buf = buf;
	b->adopt_len = len;
	size_t used = broker_conn_input(b, c, buf, len, now_ms);
	/* Adopted only when buf was one whole packet: nothing after it was
	 * read from buf. */
	*taken = b->adopt_buf == NULL;
	b->adopt_buf = NULL;
	b->adopt_len = 0;
	return used;
}

size_t broker_conn_input_need(const broker_conn *c, const uint8_t *buf,
			      size_t len)
{
	uint32_t sz;
	if (mqtt_packet_size(buf, len, &sz) < 0)
		return 0;
	uint32_t max = c->b->cfg->max_packet_size ? c->b->cfg->max_packet_size
						  : MQTT_PACKET_MAX;
	return sz > max ? max : sz;
}

void broker_conn_output(broker_conn *c, const uint8_t **data, size_t *len)
{
	static const uint8_t none[1];
	const out_ref *r = out_ref_first(c);
	if (r && r->pos == c->out_off) {
		*data = r->m->payload + r->off;
		*len = r->m->payload_len - r->off;
		c->out_busy = true;
		return;
	}
	*data = c->out ? c->out + c->out_off : none;
	*len = (r ? r->pos : c->out_len) - c->out_off;
	if (*len)
		c->out_busy = true;
}

int broker_conn_output_iov(broker_conn *c, struct iovec *iov, int max)
{
	int n = 0;
	size_t pos = c->out_off;
	uint32_t count = c->refs ? c->refs->count : 0;
	for (uint32_t i = 0; i < count && n < max; i++) {
		const out_ref *r = out_ref_at(c->refs, i);
		if (r->pos > pos) {
			iov[n++] = (struct iovec){ c->out + pos, r->pos - pos };
			pos = r->pos;
			if (n == max)
				return n;
		}
		iov[n++] = (struct iovec){ r->m->payload + r->off,
					   r->m->payload_len - r->off };
	}
	if (n < max && c->out_len > pos)
		iov[n++] = (struct iovec){ c->out + pos, c->out_len - pos };
	if (n)
		c->out_busy = true;
	return n;
}

size_t broker_conn_pending(const broker_conn *c)
{
	return out_pending(c);
}

void broker_conn_written(broker_conn *c, size_t n)
{
	size_t pending = out_pending(c);
	if (n > pending)
		n = pending;
	c->out_busy = false;
	out_retired_free(c);
	c->b->bytes_sent += n;
	if (c->congested && pending - n <= BROKER_OUT_THROTTLE_LOW)
		congestion_end(c->b, c);
	while (n) {
		out_ref *r = out_ref_first(c);
		if (r && r->pos == c->out_off) {
			size_t k = r->m->payload_len - r->off;
			if (k > n)
				k = n;
			r->off += (uint32_t)k;
			c->refs->bytes -= k;
			n -= k;
			if (r->off == r->m->payload_len) {
				msg_unref(r->m);
				c->refs->head = (c->refs->head + 1) &
						(c->refs->cap - 1);
				c->refs->count--;
			}
			continue;
		}
		size_t k = (r ? r->pos : c->out_len) - c->out_off;
		if (k > n)
			k = n;
		c->out_off += k;
		n -= k;
	}
	if (c->out_off == c->out_len && !out_ref_first(c)) {
		c->out_off = c->out_len = 0;
		/* An idle connection should own no output memory; a small
		 * buffer is cheap to get back from the heap, a large one is
		 * kept while traffic flows and released by the idle scan. */
		if (c->out_cap <= BROKER_OUT_KEEP_SMALL)
			out_release(c);
	}
}

unsigned broker_conn_flags(const broker_conn *c)
{
	return c->flags;
}

void *broker_conn_io(const broker_conn *c)
{
	return c->io;
}

broker_transport broker_conn_transport(const broker_conn *c)
{
	return c->transport;
}

broker_conn *broker_next_dirty(broker *b)
{
	broker_conn *c = b->dirty_head;
	if (c)
		unmark_dirty(c);
	return c;
}

void broker_conn_closed(broker *b, broker_conn *c, uint64_t now_ms)
{
	congestion_end(b, c);
	if (c->flags & BROKER_CONN_THROTTLED)
		throttle_forget(b, c);
	if (c->shm) {
		shm_client_close(b->shm, c->shm);
		c->shm = NULL;
	}
	b->now_ms = now_ms;
	session *s = c->s;
	if (s) {
		if (!c->close_logged)
			log_write(b->log, LOG_NOTICE,
				  "Client %s closed its connection.",
				  conn_id(c));
		s->conn = NULL;
		c->s = NULL;
		b->clients_connected--;
		if (!c->will_on_close)
			session_set_will(s, NULL, 0);
		if (s->expiry_s == 0) {
			session_end(b, s, now_ms); /* sends the will */
		} else {
			uint64_t exp_s = s->expiry_s;
			if (exp_s == SESSION_EXPIRY_NEVER)
				exp_s = b->cfg->persistent_client_expiration_s;
			s->expire_at_ms = exp_s ? now_ms + exp_s * 1000 : 0;
			if (s->will) {
				if (s->will_delay_s == 0)
					publish_will(b, s, now_ms);
				else
					s->will_at_ms =
						now_ms +
						(uint64_t)s->will_delay_s * 1000;
			}
		}
	}
	unmark_dirty(c);
	if (c->prev)
		c->prev->next = c->next;
	else
		b->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	b->conn_count--;
	conn_free(c);
	if (b->shm)
		shm_broker_interest(b->shm); /* a subscriber may be gone */
}

uint64_t broker_tick(broker *b, uint64_t now_ms)
{
	b->now_ms = now_ms;
	if (b->congested &&
	    now_ms - b->throttle_since_ms >= BROKER_THROTTLE_MAX_MS) {
		for (broker_conn *c = b->conns; c; c = c->next) {
			if (!c->congested)
				continue;
			log_write(b->log, LOG_WARN,
				  "Client %s is not reading its messages fast enough; publishers are no longer held back for it.",
				  conn_id(c));
			congestion_end(b, c);
		}
		b->throttle_off_until_ms = now_ms + BROKER_THROTTLE_OFF_MS;
	}
	if (now_ms >= b->next_scan_ms) {
		b->next_scan_ms = now_ms + 1000;
		if (b->shm)
			shm_broker_tick(b->shm, now_ms); /* stuck shm readers */
		for (broker_conn *c = b->conns; c; c = c->next) {
			if (c->out && c->out_len == 0)
				out_release(c); /* idle: see broker_conn_written */
			if (c->refs && c->refs->count == 0)
				out_refs_free(c);
			if (c->linger_until_ms && now_ms >= c->linger_until_ms &&
			    !(c->flags & BROKER_CONN_WANT_CLOSE))
				conn_want_close(c);
			if (c->state != CONN_ACTIVE || c->keep_alive == 0)
				continue;
			if (now_ms - c->last_rx_ms >=
			    (uint64_t)c->keep_alive * 1500) {
				log_write(b->log, LOG_NOTICE,
					  "Client %s has exceeded timeout, disconnecting.",
					  conn_id(c));
				conn_fail(c, MQTT_RC_KEEP_ALIVE_TIMEOUT);
			}
		}
		session *next;
		for (session *s = b->sess_head; s; s = next) {
			next = s->next;
			if (s->conn)
				continue;
			if (s->will_at_ms && now_ms >= s->will_at_ms)
				publish_will(b, s, now_ms);
			if (s->expire_at_ms && now_ms >= s->expire_at_ms) {
				log_write(b->log, LOG_NOTICE,
					  "Expiring client %s.", s->client_id);
				b->clients_expired++;
				/* publish_will() may have routed into
				 * sessions, never freed one: next is valid. */
				session_end(b, s, now_ms);
			}
		}
	}
	uint64_t due = b->next_scan_ms;
	if (b->cfg->sys_interval) {
		if (now_ms >= b->next_sys_ms) {
			broker_sys_publish(b, now_ms);
			b->next_sys_ms =
				now_ms + (uint64_t)b->cfg->sys_interval * 1000;
		}
		if (b->next_sys_ms < due)
			due = b->next_sys_ms;
	}
	if (b->congested &&
	    b->throttle_since_ms + BROKER_THROTTLE_MAX_MS < due)
		due = b->throttle_since_ms + BROKER_THROTTLE_MAX_MS;
	uint64_t wait = due > now_ms ? due - now_ms : 0;
	return wait > 1000 ? 1000 : wait;
}

size_t broker_conn_count(const broker *b)
{
	return b->conn_count;
}

int broker_publish(broker *b, const char *topic, const void *payload,
		   size_t len, uint8_t qos, int retain, uint64_t now_ms)
{
	if (len > UINT32_MAX || qos > 2)
		return MQTT_ERR_INVALID;
	mqtt_bytes pl = { payload, (uint32_t)len };
	mqtt_bytes none = { NULL, 0 };
	broker_msg *m = msg_create(&b->msgs, mqtt_str_c(topic), pl, none, qos,
				   retain != 0, 0, 0);
	if (!m)
		return MQTT_ERR_NOMEM;
	int matched = publish_msg(b, m, now_ms);
	msg_unref(m);
	return matched;
}

static void sys_pub(broker *b, uint64_t now_ms, const char *topic,
		    const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static void sys_pub(broker *b, uint64_t now_ms, const char *topic,
		    const char *fmt, ...)
{
	char buf[64];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	broker_publish(b, topic, buf, strlen(buf), 0, 1, now_ms);
}

/*
 * Load averages as mosquitto computes them: each series' per-minute rate
 * over the last interval, folded into exponentially decaying 1, 5 and 15
 * minute averages (decay exp(-interval / window)), printed "%.2f".
 */
static void sys_loads(broker *b, uint64_t now_ms)
{
	static const char *const names[SYS_LOAD_SERIES] = {
		"messages/received", "messages/sent", "publish/received",
		"publish/sent",      "publish/dropped", "bytes/received",
		"bytes/sent",        "connections",   "sockets",
	};
	static const char *const windows[3] = { "1min", "5min", "15min" };
	static const double window_s[3] = { 60.0, 300.0, 900.0 };
	const uint64_t now_vals[SYS_LOAD_SERIES] = {
		b->msgs_received,  b->msgs_sent,      b->pub_received,
		b->pub_sent,       b->pub_dropped,    b->bytes_received,
		b->bytes_sent,     b->connections_total, b->sockets_total,
	};
	if (!b->load_init) {
		memcpy(b->load_prev, now_vals, sizeof(b->load_prev));
		b->load_last_ms = now_ms;
		b->load_init = true;
		return;
	}
	double interval_s = (double)(now_ms - b->load_last_ms) / 1000.0;
	if (interval_s <= 0.0)
		return;
	for (int i = 0; i < SYS_LOAD_SERIES; i++) {
		double rate = (double)(now_vals[i] - b->load_prev[i]) * 60.0 /
			      interval_s;
		for (int w = 0; w < 3; w++) {
			double e = exp(-interval_s / window_s[w]);
			double *avg = &b->load_avg[i][w];
			*avg = rate + e * (*avg - rate);
			char topic[96];
			snprintf(topic, sizeof(topic), "$SYS/broker/load/%s/%s",
				 names[i], windows[w]);
			sys_pub(b, now_ms, topic, "%.2f", *avg);
		}
	}
	memcpy(b->load_prev, now_vals, sizeof(b->load_prev));
	b->load_last_ms = now_ms;
}

void broker_sys_publish(broker *b, uint64_t now_ms)
{
	/* The tree of mosquitto 2.0 (mosquitto.conf(5), $SYS section), all
	 * retained. $SYS messages are not counted as received; their sends
	 * are, as in mosquitto. */
	uint64_t store_count, store_bytes;
	msg_stats(&b->msgs, &store_count, &store_bytes);
	size_t total = b->session_count;
	size_t connected = b->clients_connected;
	sys_pub(b, now_ms, "$SYS/broker/version", "%s", BROKER_VERSION_STR);
	sys_pub(b, now_ms, "$SYS/broker/uptime", "%llu seconds",
		(unsigned long long)((now_ms - b->start_ms) / 1000));
	sys_pub(b, now_ms, "$SYS/broker/clients/total", "%zu", total);
	sys_pub(b, now_ms, "$SYS/broker/clients/connected", "%zu", connected);
	sys_pub(b, now_ms, "$SYS/broker/clients/active", "%zu", connected);
	sys_pub(b, now_ms, "$SYS/broker/clients/disconnected", "%zu",
		total - connected);
	sys_pub(b, now_ms, "$SYS/broker/clients/inactive", "%zu",
		total - connected);
	sys_pub(b, now_ms, "$SYS/broker/clients/maximum", "%zu",
		b->clients_max);
	sys_pub(b, now_ms, "$SYS/broker/clients/expired", "%llu",
		(unsigned long long)b->clients_expired);
	sys_pub(b, now_ms, "$SYS/broker/messages/received", "%llu",
		(unsigned long long)b->msgs_received);
	sys_pub(b, now_ms, "$SYS/broker/messages/sent", "%llu",
		(unsigned long long)b->msgs_sent);
	sys_pub(b, now_ms, "$SYS/broker/messages/stored", "%llu",
		(unsigned long long)store_count);
	sys_pub(b, now_ms, "$SYS/broker/store/messages/count", "%llu",
		(unsigned long long)store_count);
	sys_pub(b, now_ms, "$SYS/broker/store/messages/bytes", "%llu",
		(unsigned long long)store_bytes);
	sys_pub(b, now_ms, "$SYS/broker/publish/messages/received", "%llu",
		(unsigned long long)b->pub_received);
	sys_pub(b, now_ms, "$SYS/broker/publish/messages/sent", "%llu",
		(unsigned long long)b->pub_sent);
	sys_pub(b, now_ms, "$SYS/broker/publish/messages/dropped", "%llu",
		(unsigned long long)b->pub_dropped);
	sys_pub(b, now_ms, "$SYS/broker/bytes/received", "%llu",
		(unsigned long long)b->bytes_received);
	sys_pub(b, now_ms, "$SYS/broker/bytes/sent", "%llu",
		(unsigned long long)b->bytes_sent);
	sys_pub(b, now_ms, "$SYS/broker/subscriptions/count", "%llu",
		(unsigned long long)subtree_count(b->subs));
	sys_pub(b, now_ms, "$SYS/broker/retained messages/count", "%zu",
		retain_count(b->retained));
	if (b->shm) {
		shm_stats st;
		shm_broker_stats(b->shm, &st);
		const struct {
			const char *topic;
			uint64_t v;
		} rows[] = {
			{ "$SYS/broker/shm/clients", st.clients },
			{ "$SYS/broker/shm/logs", st.logs },
			{ "$SYS/broker/shm/attachments", st.attachments },
			{ "$SYS/broker/shm/segment bytes", st.segment_bytes },
			{ "$SYS/broker/shm/messages/routed", st.routed },
			{ "$SYS/broker/shm/messages/inbound", st.inbound },
			{ "$SYS/broker/shm/messages/lost", st.lost },
			{ "$SYS/broker/shm/logs dropped", st.dropped_logs },
			{ "$SYS/broker/shm/readers cut", st.readers_cut },
			{ "$SYS/broker/shm/shares", st.shares },
			{ "$SYS/broker/shm/share members", st.share_members },
			{ "$SYS/broker/shm/messages/share claimed",
			  st.share_claimed },
			{ "$SYS/broker/shm/messages/share lost", st.share_lost },
		};
		for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
			sys_pub(b, now_ms, rows[i].topic, "%llu",
				(unsigned long long)rows[i].v);
	}
	sys_loads(b, now_ms);
}

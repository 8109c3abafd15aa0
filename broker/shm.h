/*
 * broker/shm.h — the broker's side of the shared-memory fast path: every
 * segment it creates (doorbells, logs, reader slots, inbound logs), who
 * holds which fd, and the control messages that hand them out
 * (docs/shm-protocol.md §10).
 *
 * The core (broker.c) tells this module about shm-negotiated connections,
 * their subscriptions and control PUBLISHes; the module answers through
 * the shm_env callbacks: it sends control packets with fds attached, asks
 * for ACL decisions and subscription matches, and routes records it reads
 * from publishers' logs to the subscribers the broker serves itself (TCP,
 * WebSockets, plain MQTT on the Unix socket). $share groups claim from one
 * share page per (group, log): shm members themselves (SHARE_ATTACH), the
 * broker for the group's other members (shm_env.route_share).
 *
 * Owns: all shm state. A publisher's log lives until its publisher's
 * connection closes, then it is marked CLOSED and kept until the broker's
 * own reader has drained it. Segment memory per client is bounded by
 * max_bytes. Nothing is ever created in /dev/shm: memfds only.
 *
 * Thread model: under the core lock (broker.h), except one bridge thread per shm_broker
 * that forwards the broker's doorbell into an eventfd (notify.h) and
 * touches nothing else.
 */
#ifndef SHIMMY_BROKER_SHM_H
#define SHIMMY_BROKER_SHM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "shmpath/ring.h"

typedef struct shm_broker shm_broker;
typedef struct shm_client shm_client;

/* Called once per shared subscription found by shm_env.shares; filter is
 * the whole "$share/G/f" (borrowed for the call). */
typedef void (*shm_share_fn)(const char *filter, size_t flen, void *arg);

typedef struct shm_limits {
	uint64_t max_bytes;        /* segment bytes per client */
	uint32_t spin_us;          /* told to clients in BELL_SETUP */
	uint32_t reader_timeout_ms;/* reliable readers stuck this long are cut */
} shm_limits;

/* What the module needs from the core. conn is the core's connection
 * handle given to shm_client_open(); from is a publisher's conn. */
typedef struct shm_env {
	/* Appends the complete packet pkt[0..len) to conn's output with
	 * fds[0..nfds) attached to its first byte (SCM_RIGHTS). The fds are
	 * transferred in every case. Returns 0 or a negative error. */
	int (*send)(void *conn, const uint8_t *pkt, size_t len, int *fds,
		    unsigned nfds, void *ctx);
	/* ACL: may conn read (write == false) or write the topic? */
	bool (*may)(void *conn, const char *topic, size_t len, bool write,
		    void *ctx);
	/* Does conn hold a non-shared subscription matching topic that wants
	 * messages published by `from` (No Local)? */
	bool (*wants)(void *conn, const char *topic, size_t len, void *from,
		      void *ctx);
	/* Does anyone the broker delivers to itself (non-shm or offline
	 * sessions, shared groups) subscribe to topic? */
	bool (*others_want)(const char *topic, size_t len, void *ctx);
	/* Routes one record of from's log on topic to the subscribers the
	 * broker serves (never to shm sessions reading the log directly).
	 * msg views are valid for the call. */
	void (*route)(void *from, const char *topic, size_t len,
		      const shimmy_ring_msg *msg, void *ctx);
	/* Shared subscriptions ("$share/G/f") whose f matches topic and whose
	 * holder may read it: conn's own, or (conn NULL) every session's; a
	 * filter may be reported more than once. NULL: no shared
	 * subscriptions over shm (groups then read through the broker). */
	void (*shares)(void *conn, const char *topic, size_t len,
		       shm_share_fn fn, void *arg, void *ctx);
	/* Must the broker claim from group `filter`'s page of a log on topic,
	 * for members it serves itself (non-shm connections, offline
	 * sessions)? */
	bool (*share_others)(const char *filter, size_t flen,
			     const char *topic, size_t len, void *ctx);
	/* Delivers one record the broker claimed from group `filter`'s page
	 * to one member it serves itself. msg views are valid for the call.
	 * Returns false when it has no such member any more (the record is
	 * dropped, and the module asks share_others again). */
	bool (*route_share)(void *from, const char *filter, size_t flen,
			    const char *topic, size_t len,
			    const shimmy_ring_msg *msg, void *ctx);
	void *ctx;
} shm_env;

/* Counters for $SYS. */
typedef struct shm_stats {
	uint64_t clients;        /* shm-active connections */
	uint64_t logs;           /* publisher logs alive */
	uint64_t attachments;    /* (reader, log) pairs handed out */
	uint64_t segment_bytes;  /* bytes of every segment alive */
	uint64_t routed;         /* records the broker read and routed */
	uint64_t inbound;        /* records written to inbound logs */
	uint64_t lost;           /* messages lost by lapped shm readers, of
				  * every log (inbound and publishers'),
				  * departed readers included; advisory:
				  * each reader counts its own (slot `lost`) */
	uint64_t dropped_logs;   /* logs dropped as malformed */
	uint64_t shares;         /* share pages alive ((group, log) pairs) */
	uint64_t share_members;  /* (shm member, share page) pairs */
	uint64_t share_claimed;  /* records the broker claimed for its members */
	uint64_t share_lost;     /* lost by groups (lapped cursors), advisory */
	uint64_t readers_cut;    /* stuck readers (and share pages) of reliable
				  * logs cut loose */
} shm_stats;

/*
 * Creates the module: the broker's doorbell, its eventfd and the bridge
 * thread. env and lim are copied. Returns NULL (and -errno in *err) on
 * failure.
 */
shm_broker *shm_broker_create(const shm_env *env, const shm_limits *lim,
			      int *err);
/* Stops the thread and frees every segment (clients' fds stay valid in
 * the clients: memfds vanish with their last user). NULL ok. */
void shm_broker_destroy(shm_broker *sb);

/* Updates the limits (SIGHUP); applies to segments created afterwards. */
void shm_broker_set_limits(shm_broker *sb, const shm_limits *lim);

/* Readable (EPOLLIN) when a log the broker reads has new records; the I/O
 * layer adds it to its epoll set and calls shm_broker_poll(). */
int shm_broker_fd(const shm_broker *sb);

/*
 * Reads every log the broker reads, routing at most a budget of records;
 * clears the eventfd, reaps closed and drained logs. Returns 1 when more
 * is pending (poll again without sleeping), else 0.
 */
int shm_broker_poll(shm_broker *sb, uint64_t now_ms);

/*
 * Timers; call about once a second. Cuts loose every client reader of a
 * reliable log that lags its tail by half the ring or more without moving
 * for lim.reader_timeout_ms (shmpath/tether.h): its entry becomes
 * DETACHED, it gets LOG_DETACH (reason 2, stuck), the publisher
 * READER_DROP. When the client answers with LOG_RELEASE (it is awake
 * again) it is attached anew at the tail. A share page whose claim
 * cursor is stuck alike is cut loose too: its entry becomes FREE, the
 * publisher gets READER_DROP, members go on claiming as from a lossy log;
 * once the cursor moves it is tethered anew at the tail (READER_ADD).
 * Both count in readers_cut. The broker's own reader is never cut. No
 * blocking, no allocation.
 */
void shm_broker_tick(shm_broker *sb, uint64_t now_ms);

/* Before sleeping in epoll: arms the broker's bell so writers wake the
 * bridge; returns 1 if a log already has data (do not sleep). After the
 * sleep, call shm_broker_disarm() exactly once. */
int shm_broker_arm(shm_broker *sb);
void shm_broker_disarm(shm_broker *sb);

/*
 * A connection negotiated shm/2 and its CONNACK is queued: creates its
 * doorbell and inbound log and sends BELL_SETUP and the inbound
 * LOG_ATTACH, then attaches it to every existing log it subscribes to.
 * Returns the client (owned by sb, until shm_client_close) or NULL (then
 * the connection stays plain MQTT).
 */
shm_client *shm_client_open(shm_broker *sb, void *conn);

/*
 * The connection is gone: its logs are marked CLOSED (readers drain them,
 * then drop them), its reader slots are set FREE (it stops holding writers
 * back) and their writers get READER_DROP. NULL ok.
 */
void shm_client_close(shm_broker *sb, shm_client *cl);

/*
 * A control message from the client: payload[0..len) of a PUBLISH on
 * SHIMMY_CTL_TOPIC. Returns 0, or a negative error for a malformed or
 * out-of-protocol message (the core disconnects the client).
 */
int shm_client_ctl(shm_broker *sb, shm_client *cl, const uint8_t *payload,
		   size_t len);

/* The client's subscriptions changed: attaches logs it now matches and
 * detaches those it no longer does. */
void shm_client_resubscribed(shm_broker *sb, shm_client *cl);

/* Someone the broker serves itself subscribed: starts reading logs whose
 * topic that subscription now needs. Also reconciles shared groups: one
 * share page per (group, log), SHARE_ATTACH to shm members, claims by the
 * broker for the members it serves (docs/shm-protocol.md §7). */
void shm_broker_interest(shm_broker *sb);

/*
 * Delivers a message the broker routed (TCP publisher, retained, will) to
 * the client through its inbound log. props: the forwardable MQTT 5
 * property block. flags: SHIMMY_MSG_*. Returns 0, or a negative error when
 * it does not fit (the core sends a PUBLISH instead).
 */
int shm_client_deliver(shm_broker *sb, shm_client *cl, const char *topic,
		       size_t topic_len, const uint8_t *props,
		       size_t props_len, const uint8_t *payload,
		       size_t payload_len, uint32_t flags);

void shm_broker_stats(const shm_broker *sb, shm_stats *out);

/* Bytes of segment memory charged to the client. */
uint64_t shm_client_bytes(const shm_client *cl);

#endif

/*
 * shimmy.h — libshimmy, the Shimmy MQTT client library.
 *
 * A client speaks MQTT 3.1.1 or 5.0 to a broker over tcp:// or unix://
 * (tls:// is reserved and reports SHIMMY_ERR_UNSUPPORTED). Over unix:// it
 * offers Shimmy's shared-memory extension (MQTT 5 User Property
 * "shimmy" = "shm/2" in CONNECT) and records whether the broker accepted it
 * (shimmy_client_shm_active()). Once negotiated, the same calls take the
 * shared-memory path (docs/shm-protocol.md):
 *  - Non-retained publishes (copying and loans) go into a log the broker
 *    grants per topic, asked for on the first publish to that topic (one
 *    round trip). That first publish decides the kind of log: at QoS 1/2
 *    a RELIABLE log, whose writer waits for its slowest reader instead of
 *    lapping it, so every attached subscriber gets every message, in
 *    order, with no broker hop; at QoS 0 a lossy log, which never waits
 *    (lapped readers count SHIMMY_STAT_LOST_MSGS). Later publishes of any
 *    QoS go into a reliable log (a record carries its QoS); QoS 1/2
 *    publishes on a topic whose log is lossy and retained messages go
 *    over MQTT. A record too large for the topic's log makes the library
 *    ask the broker for a larger log replacing it (one round trip; the
 *    old log is closed after its last record and every reader drains it
 *    before it reads the new one), so large and small messages of a topic
 *    stay in publish order. Only a record above the largest class
 *    (32 MiB), one the broker refuses to grow for (segment quota), or one
 *    published from inside a callback goes over MQTT, and may then
 *    overtake or trail that topic's shm messages. A loan on a topic with a
 *    log points into the ring itself (zero copy).
 *  - A publish into a full reliable log waits for room at most
 *    shimmy_opts_set_shm_wait_ms() (default: the operation timeout, 10 s),
 *    spinning, then yielding, then letting the protocol run (the client's
 *    lock is released between tries); then it fails with
 *    SHIMMY_ERR_TIMEOUT and nothing was published. It never hangs: the
 *    broker cuts loose a reader stuck for shimmy_shm_reader_timeout
 *    (default 5 s), and a dead reader stops counting at once. Success
 *    means the message is in the log, not that anyone has read it (there
 *    is no PUBACK on this path; shimmy_client_flush() has nothing to wait
 *    for).
 *  - A subscriber that a reliable log cut loose (stuck for
 *    shimmy_shm_reader_timeout) counts SHIMMY_STAT_SHM_DETACHED; the
 *    messages it had not read by then may be lost (they are not counted in
 *    SHIMMY_STAT_LOST_MSGS). Once it runs again the library tells the
 *    broker, which attaches it anew at the log's tail.
 *  - Received messages come from the logs of the publishers the
 *    subscriptions match and from the client's inbound log (what the
 *    broker delivers: TCP publishers, retained messages, wills). Views of
 *    a reliable log's messages point into the ring until released (zero
 *    copy: its writer does not overwrite them). A lossy log (QoS 0, and
 *    the inbound log) may lap a reader at any moment, so its messages are
 *    copied out and checked before they are handed out: a message is
 *    delivered intact or not at all, never torn. Lapped messages count in
 *    SHIMMY_STAT_LOST_MSGS, exactly: delivered + lost = published.
 *  - Blocking receives spin for the broker's shimmy_shm_spin_us
 *    (SHIMMY_SHM_SPIN_US overrides) before sleeping; shimmy_client_fd()
 *    also becomes readable through a doorbell-forwarding thread. Blocking
 *    batch receives hold off in a stream (SHIMMY_SHM_HOLDOFF_NS; see
 *    shimmy_recv_batch()).
 *  - After a broker loss the mappings are kept and drained; with
 *    SHIMMY_OPT_RECONNECT the extension is renegotiated.
 *  SHIMMY_SHM_LOG_CLASS=0..3 picks the size class of the logs a publisher
 *  asks for first (64 KiB, 1 MiB (default), 16 MiB, 128 MiB; records up
 *  to a quarter of it); they grow on demand.
 *
 * Handles are opaque; nothing here exposes a struct layout.
 *
 * Errors: every call that can fail returns an int, 0 on success and a
 * negative shimmy_err otherwise. Values in [-4095, -1] are -errno from a
 * failed syscall; the library's own codes sit below that. errno carries no
 * meaning after a call. shimmy_strerror() names any of them.
 *
 * Three ways to receive messages (pick one per client):
 *  1. Callback on the library's thread: shimmy_client_set_on_message(),
 *     then shimmy_client_start_thread().
 *  2. Callback on the caller's loop: poll shimmy_client_fd() for POLLIN and
 *     call shimmy_client_process() when it is readable, or when
 *     shimmy_client_timeout_ms() elapses (keepalive, reconnect backoff).
 *  3. Pull: shimmy_recv() (blocking with timeout) or shimmy_try_recv(),
 *     without a callback. shimmy_client_fd() and shimmy_client_process()
 *     work here too: process() reads input, try_recv() then hands out what
 *     it queued.
 *
 * Thread model: a client may be used from several threads; every call
 * takes the client's lock (except shimmy_pub_loan/commit on a log, which
 * take only their handle's: see shimmy_pub_open). Callbacks run without the lock held, so they may
 * publish, subscribe or unsubscribe on the same client, but must not call
 * shimmy_client_destroy(), shimmy_client_stop_thread() or a blocking
 * shimmy_recv() on it. Only one thread at a time drives the protocol
 * (the library thread when started, else the caller of a blocking call or
 * of shimmy_client_process()); others calling blocking functions wait for it.
 *
 * Someone must drive the protocol for acknowledgements, QoS 2 handshakes
 * and keepalive to progress: the library thread, or the caller through
 * shimmy_client_process(), shimmy_recv(), shimmy_client_flush() or the
 * other blocking calls. A publish-only client without a thread should call
 * shimmy_client_flush() (or process()) regularly.
 *
 * Blocking calls (connect, subscribe, unsubscribe, publish with a full
 * inflight window, recv, disconnect) wait at most the given timeout, or the
 * client's operation timeout (shimmy_opts_set_timeout_ms(), default 10 s).
 */
#ifndef SHIMMY_H
#define SHIMMY_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------ errors */

typedef enum shimmy_err {
	SHIMMY_OK = 0,
	/* -4095..-1: -errno of a failed syscall. */
	SHIMMY_ERR_INVALID = -7000,      /* bad argument or option */
	SHIMMY_ERR_NOMEM = -7001,        /* allocation failed */
	SHIMMY_ERR_URI = -7002,          /* URI could not be parsed */
	SHIMMY_ERR_UNSUPPORTED = -7003,  /* e.g. tls:// (not supported yet), QoS above the broker's maximum */
	SHIMMY_ERR_TIMEOUT = -7004,      /* a blocking call ran out of time */
	SHIMMY_ERR_AGAIN = -7005,        /* nothing to receive now (try_recv) */
	SHIMMY_ERR_NOT_CONNECTED = -7006,/* no session with the broker */
	SHIMMY_ERR_CONN_LOST = -7007,    /* the broker closed or the socket failed */
	SHIMMY_ERR_REFUSED = -7008,      /* CONNACK refused: see shimmy_client_reason() */
	SHIMMY_ERR_PROTOCOL = -7009,     /* the broker broke the protocol */
	SHIMMY_ERR_NO_SHM = -7010,       /* SHIMMY_OPT_REQUIRE_SHM and shm was not negotiated */
	SHIMMY_ERR_BUSY = -7011,         /* a message is still borrowed, or a loan is open */
	SHIMMY_ERR_STATE = -7012,        /* call not allowed in this mode or state */
	SHIMMY_ERR_TOO_LARGE = -7013,    /* packet over the broker's Maximum Packet Size */
	SHIMMY_ERR_SUBSCRIBE = -7014,    /* SUBACK/UNSUBACK refused: see shimmy_client_reason() */
} shimmy_err;

/* Static, human-readable text for any value returned by this library. */
const char *shimmy_strerror(int err);

/* ------------------------------------------------------------- properties */

/*
 * MQTT 5 message properties. A shimmy_props you create is yours: the
 * setters copy their arguments, shimmy_props_destroy() frees it. A
 * shimmy_props obtained from a message is a borrowed view, valid as long as
 * the message, and must not be modified or destroyed. Ignored over 3.1.1.
 */
typedef struct shimmy_props shimmy_props;

/* Allocates an empty set; NULL when out of memory. */
shimmy_props *shimmy_props_create(void);
/* Frees p (NULL is fine). Not for borrowed views. */
void shimmy_props_destroy(shimmy_props *p);
/* Setters copy; return 0, SHIMMY_ERR_INVALID (value over 65535 bytes or
 * not allowed), SHIMMY_ERR_STATE (a borrowed view) or SHIMMY_ERR_NOMEM. */
int shimmy_props_add_user(shimmy_props *p, const char *key, const char *value);
int shimmy_props_set_content_type(shimmy_props *p, const char *type);
int shimmy_props_set_response_topic(shimmy_props *p, const char *topic);
int shimmy_props_set_correlation_data(shimmy_props *p, const void *data, size_t len);
int shimmy_props_set_message_expiry(shimmy_props *p, uint32_t seconds);
int shimmy_props_set_payload_format(shimmy_props *p, int utf8);

/* Getters: the returned pointers are borrowed for the life of p (not
 * NUL-terminated; lengths go to *len). They return NULL / 0 when absent. */
size_t shimmy_props_user_count(const shimmy_props *p);
/* The idx-th User Property in wire order; 0 or SHIMMY_ERR_INVALID. */
int shimmy_props_user_get(const shimmy_props *p, size_t idx,
			  const char **key, size_t *key_len,
			  const char **value, size_t *value_len);
/* First value for key (NUL-terminated key), or NULL. */
const char *shimmy_props_user_find(const shimmy_props *p, const char *key, size_t *len);
const char *shimmy_props_content_type(const shimmy_props *p, size_t *len);
const char *shimmy_props_response_topic(const shimmy_props *p, size_t *len);
const void *shimmy_props_correlation_data(const shimmy_props *p, size_t *len);
/* 1 and *out set when present, else 0. */
int shimmy_props_message_expiry(const shimmy_props *p, uint32_t *out);
int shimmy_props_payload_format(const shimmy_props *p, int *out);

/* ---------------------------------------------------------------- options */

typedef struct shimmy_opts shimmy_opts;

/* Option flags (shimmy_opts_set_flags). */
enum {
	SHIMMY_OPT_REQUIRE_SHM = 1u << 0, /* connect fails with SHIMMY_ERR_NO_SHM unless negotiated */
	SHIMMY_OPT_NO_SHM = 1u << 1,      /* never offer the shm extension */
	SHIMMY_OPT_RECONNECT = 1u << 2,   /* on broker loss reconnect with backoff and resubscribe */
	SHIMMY_OPT_NO_CLEAN = 1u << 3,    /* clean start off (resume the session) */
};

/* Protocol versions (shimmy_opts_set_version). */
enum { SHIMMY_MQTT_311 = 4, SHIMMY_MQTT_5 = 5 };

/* Allocates options with defaults: MQTT 5, random client id, clean start,
 * keepalive 60 s, session expiry 0, timeout 10 s, flags 0, inflight window
 * 64 for MQTT 5 (lowered by the broker's Receive Maximum) and 20 for 3.1.1
 * (which has no Receive Maximum; 20 is mosquitto's max_inflight_messages).
 * NULL when out of memory. */
shimmy_opts *shimmy_opts_create(void);
void shimmy_opts_destroy(shimmy_opts *o);
/* String setters copy; NULL clears. All return 0 or SHIMMY_ERR_INVALID /
 * SHIMMY_ERR_NOMEM. */
int shimmy_opts_set_client_id(shimmy_opts *o, const char *id);
int shimmy_opts_set_version(shimmy_opts *o, int version);
int shimmy_opts_set_keepalive(shimmy_opts *o, uint16_t seconds);
int shimmy_opts_set_session_expiry(shimmy_opts *o, uint32_t seconds);
int shimmy_opts_set_credentials(shimmy_opts *o, const char *username,
				const void *password, size_t password_len);
/* Will message; props may be NULL and is copied (borrowed for the call). */
int shimmy_opts_set_will(shimmy_opts *o, const char *topic, const void *payload,
			 size_t len, int qos, unsigned flags, const shimmy_props *props);
int shimmy_opts_set_flags(shimmy_opts *o, unsigned flags);
/* Default wait of blocking calls that take no timeout. */
int shimmy_opts_set_timeout_ms(shimmy_opts *o, int timeout_ms);
/* Our inflight window for QoS 1/2 publishes (1..65535); the broker's
 * Receive Maximum lowers it. */
int shimmy_opts_set_inflight(shimmy_opts *o, uint16_t window);
/* How long a publish or loan waits for room in a full reliable (QoS 1/2)
 * shm log before it fails with SHIMMY_ERR_TIMEOUT: 0 never waits, < 0
 * (the default) means the operation timeout (shimmy_opts_set_timeout_ms).
 * Pick it above the broker's shimmy_shm_reader_timeout (5 s by default)
 * for a publisher to outlast a stuck reader rather than give up. */
int shimmy_opts_set_shm_wait_ms(shimmy_opts *o, int wait_ms);

/* ----------------------------------------------------------------- client */

typedef struct shimmy_client shimmy_client;
typedef struct shimmy_msg shimmy_msg;

/*
 * Creates a client for uri (borrowed for the call):
 *   tcp://host[:port]      IPv4, IPv6 ("[::1]"), or a name; port 1883
 *   unix:///abs/path       Unix socket; "unix://" alone means $SHIMMY_SOCKET,
 *                          else /run/shimmy/shimmy.sock
 *   tls://...              SHIMMY_ERR_UNSUPPORTED (not supported yet)
 * opts is copied (NULL means defaults). Does not connect. Returns the client
 * (caller owns; shimmy_client_destroy()) or NULL with *err set (err may be
 * NULL).
 */
shimmy_client *shimmy_client_create(const char *uri, const shimmy_opts *opts, int *err);

/* Stops the thread, closes the socket without DISCONNECT (the will fires,
 * if any) and frees everything. NULL is fine. Outstanding messages and loans
 * become invalid. */
void shimmy_client_destroy(shimmy_client *c);

/*
 * Connects and waits for CONNACK, at most timeout_ms (< 0: the option
 * timeout). Returns 0; SHIMMY_ERR_REFUSED (reason in shimmy_client_reason());
 * SHIMMY_ERR_NO_SHM with SHIMMY_OPT_REQUIRE_SHM when the broker did not
 * echo the extension (the connection is then closed); SHIMMY_ERR_TIMEOUT;
 * -errno. Blocks.
 */
int shimmy_client_connect(shimmy_client *c, int timeout_ms);

/* Sends DISCONNECT (v5 reason 0), flushes at most timeout_ms, closes. */
int shimmy_client_disconnect(shimmy_client *c, int timeout_ms);

/* 1 when the broker echoed the shm extension in the last CONNACK. */
int shimmy_client_shm_active(const shimmy_client *c);

/* Last MQTT reason code the broker gave (CONNACK, SUBACK, DISCONNECT). For
 * 3.1.1 CONNACK it is the return code (0..5). Protocol data, not an error. */
int shimmy_client_reason(const shimmy_client *c);

/* Session Present flag of the last CONNACK. */
int shimmy_client_session_present(const shimmy_client *c);

/* ------------------------------------------------------------- publishing */

/* Publish flags. */
enum {
	SHIMMY_PUB_RETAIN = 1u << 0,
};

/*
 * Publishes a copy of payload[0..len) (borrowed for the call) on topic.
 * props may be NULL (borrowed for the call). QoS 0 returns once the packet
 * is queued for the socket; QoS 1/2 once it is queued and inflight (it is
 * acknowledged later; shimmy_client_flush() waits for that). When the
 * inflight window is full it waits, at most the option timeout, for room
 * (SHIMMY_ERR_TIMEOUT). May block briefly on a full socket. Over a shm
 * log it returns once the message is in the log; a full reliable log is
 * waited for at most shimmy_opts_set_shm_wait_ms(), then
 * SHIMMY_ERR_TIMEOUT and nothing was published (see the top of this file).
 */
int shimmy_publish(shimmy_client *c, const char *topic, const void *payload,
		   size_t len, int qos, unsigned flags, const shimmy_props *props);

/*
 * Loan API: zero-copy publishing. shimmy_loan() reserves a message of
 * exactly len payload bytes on topic and sets *buf to where the payload
 * goes; fill it, then shimmy_commit(c, *buf, qos, flags) sends it. Over
 * MQTT the payload is written straight into the outgoing packet (the
 * header is completed at commit), which for QoS 1/2 is also the copy kept
 * for retransmission. *buf is valid until commit or shimmy_loan_abort().
 * Loans from several threads may be open at once. Allocates only while its
 * buffer pool warms up. topic and props are borrowed for the call.
 * commit waits like shimmy_publish() for window room; when it fails the
 * loan stays open (retry or shimmy_loan_abort()). Loans survive a lost
 * connection; QoS 1/2 commits made while reconnecting are sent afterwards.
 */
int shimmy_loan(shimmy_client *c, const char *topic, size_t len, void **buf);
int shimmy_loan_props(shimmy_client *c, const char *topic, size_t len,
		      const shimmy_props *props, void **buf);
int shimmy_commit(shimmy_client *c, void *buf, int qos, unsigned flags);
void shimmy_loan_abort(shimmy_client *c, void *buf);

/*
 * Topic-bound publisher (QoS 0, not retained): shimmy_pub_open() resolves
 * topic once (asking the broker for a log over shm, one round trip, like
 * the first publish) and returns a handle (caller owns; shimmy_pub_close()
 * before destroying c). Over shm, shimmy_pub_loan()/shimmy_pub_commit()
 * do not take the client's lock: the handle owns its topic's log (other
 * publishes on that topic take MQTT while it is open) and guards it with
 * a spinlock of its own, so a message costs a ring reserve, the fill and
 * a release-store commit, no syscall (a sleeping reader costs one load to
 * check, and one FUTEX_WAKE per sleep). Without a log, or after the
 * connection is lost (commit then returns SHIMMY_ERR_CONN_LOST and the
 * next loan rebinds), they fall back to shimmy_loan()/shimmy_commit().
 * Statistics are folded into the client's every 4096 messages and at
 * close. One thread at a time per handle; one loan open per handle.
 */
typedef struct shimmy_pub shimmy_pub;
int shimmy_pub_open(shimmy_client *c, const char *topic, shimmy_pub **out);
void shimmy_pub_close(shimmy_pub *p);
int shimmy_pub_loan(shimmy_pub *p, size_t len, void **buf);
int shimmy_pub_commit(shimmy_pub *p, void *buf);
/*
 * Batch form: loans k buffers of len bytes, bufs[0..k), 1 <= k <= n, for k
 * messages to p's topic; returns k or an error as shimmy_pub_loan(). Over
 * shm they are consecutive records of the log (k stops short at the end of
 * the ring, and at 64); otherwise k is 1. shimmy_pub_commit_many(p, bufs,
 * k) then publishes all k: each message stays a message of its own (its
 * own commit, in order; a subscriber may see the first ones before the
 * rest), but the log's tail and the subscribers' doorbells are updated
 * once. One batch open per handle; commit it with _many, not one by one.
 */
int shimmy_pub_loan_many(shimmy_pub *p, size_t len, void **bufs, unsigned n);
int shimmy_pub_commit_many(shimmy_pub *p, void **bufs, unsigned n);

/* Waits until everything queued is written and every QoS 1/2 publish is
 * acknowledged, at most timeout_ms (< 0: option timeout). */
int shimmy_client_flush(shimmy_client *c, int timeout_ms);

/* ------------------------------------------------------------- subscribing */

/* Subscription options (v5; only the QoS is sent over 3.1.1). */
enum {
	SHIMMY_SUB_NO_LOCAL = 1u << 2,
	SHIMMY_SUB_RETAIN_AS_PUBLISHED = 1u << 3,
	SHIMMY_SUB_RETAIN_SEND_NEW = 1u << 4,  /* Retain Handling 1 */
	SHIMMY_SUB_RETAIN_NONE = 2u << 4,      /* Retain Handling 2 */
};

/*
 * Subscribes to filter (borrowed for the call) and waits for SUBACK (option
 * timeout). Returns the granted QoS (0..2), SHIMMY_ERR_SUBSCRIBE when the
 * broker refused (reason in shimmy_client_reason()), or an error.
 * With SHIMMY_OPT_RECONNECT the subscription is renewed after a reconnect
 * that did not resume the session.
 */
int shimmy_subscribe(shimmy_client *c, const char *filter, int qos, unsigned options);
int shimmy_unsubscribe(shimmy_client *c, const char *filter);

/* ---------------------------------------------------------------- receive */

/* Borrowed message view. Getters' pointers live as long as the message. */
const char *shimmy_msg_topic(const shimmy_msg *m, size_t *len); /* NUL-terminated */
const void *shimmy_msg_payload(const shimmy_msg *m, size_t *len);
int shimmy_msg_qos(const shimmy_msg *m);
int shimmy_msg_retain(const shimmy_msg *m);
/* Borrowed view (never NULL; empty over 3.1.1). */
const shimmy_props *shimmy_msg_props(const shimmy_msg *m);

/* Message callback: m is borrowed for the duration of the call. */
typedef void (*shimmy_on_message)(shimmy_client *c, const shimmy_msg *m, void *ctx);
/* Connection callback: status 0 on (re)connect, a shimmy_err on loss. */
typedef void (*shimmy_on_connection)(shimmy_client *c, int status, void *ctx);

/* Sets or clears (cb NULL) the callbacks; ctx is borrowed until replaced. */
void shimmy_client_set_on_message(shimmy_client *c, shimmy_on_message cb, void *ctx);
void shimmy_client_set_on_connection(shimmy_client *c, shimmy_on_connection cb, void *ctx);

/*
 * Pull mode (no message callback set). shimmy_recv() waits at most
 * timeout_ms (< 0: forever) for a message, driving the protocol itself.
 * On success *msg is borrowed until shimmy_msg_release(); only one message
 * may be borrowed at a time (SHIMMY_ERR_BUSY otherwise).
 * shimmy_try_recv() never blocks and returns SHIMMY_ERR_AGAIN when nothing
 * is queued (it does read the socket once, without waiting).
 * With a library thread running both return SHIMMY_ERR_STATE.
 */
int shimmy_recv(shimmy_client *c, shimmy_msg **msg, int timeout_ms);
int shimmy_try_recv(shimmy_client *c, shimmy_msg **msg);
void shimmy_msg_release(shimmy_client *c, shimmy_msg *msg);

/*
 * Batch receive (pull mode): hands up to max messages to fn, one after the
 * other, under a single lock acquisition, releasing each when fn returns
 * and publishing the shm read positions once per batch. m is borrowed for
 * the call of fn. fn runs WITH the client's lock held: it must not call
 * any shimmy_* function on c. timeout_ms 0 never blocks and never makes a
 * syscall when a shm log has data (a busy-polling subscriber calls it in a
 * loop; it reads the socket once per 1024 empty calls); > 0 waits like
 * shimmy_recv() (spin, then sleep) for the first message; < 0 forever.
 * A blocking call (timeout_ms != 0) coalesces a stream of shm messages
 * (docs/shm-protocol.md §8, "Hold-off"): once messages have arrived
 * faster than one per microsecond for a few calls, each call reads what
 * the writers had committed when it began, and after a call that emptied
 * the logs the next one first waits up to 10 us (SHIMMY_SHM_HOLDOFF_NS
 * sets it; 0 turns it off) so that messages arrive in batches instead of
 * one cache line at a time. A lone message after a quiet gap never waits.
 * Returns the number of messages handed out (0 when none), or an error as
 * shimmy_recv() does (SHIMMY_ERR_TIMEOUT is reported as 0).
 */
typedef void (*shimmy_batch_fn)(const shimmy_msg *m, void *ctx);
int shimmy_recv_batch(shimmy_client *c, shimmy_batch_fn fn, void *ctx,
		      unsigned max, int timeout_ms);

/*
 * Caller-driven loop. shimmy_client_fd() is an fd to poll for POLLIN; it is
 * stable for the client's life (across reconnects) and readable when
 * protocol input or queued messages await. Never read or close it.
 * shimmy_client_process() reads what is there without waiting, runs the
 * protocol (acks, keepalive, reconnect), delivers to the callback or queues
 * for try_recv, and returns 0 or an error (SHIMMY_ERR_CONN_LOST without
 * SHIMMY_OPT_RECONNECT). shimmy_client_timeout_ms() is how long the caller
 * may sleep before the next process() (-1: no timer).
 */
int shimmy_client_fd(const shimmy_client *c);
int shimmy_client_process(shimmy_client *c);
int shimmy_client_timeout_ms(shimmy_client *c);

/* Starts / stops the library thread, which drives the protocol and runs the
 * callbacks. start returns SHIMMY_ERR_STATE when already running. */
int shimmy_client_start_thread(shimmy_client *c);
int shimmy_client_stop_thread(shimmy_client *c);

/* ------------------------------------------------------------- statistics */

typedef enum shimmy_stat {
	SHIMMY_STAT_TX_MSGS,     /* messages published */
	SHIMMY_STAT_TX_BYTES,    /* payload bytes published */
	SHIMMY_STAT_RX_MSGS,     /* messages received */
	SHIMMY_STAT_RX_BYTES,    /* payload bytes received */
	SHIMMY_STAT_LOST_MSGS,   /* messages lost to lapping on the shm path (0 over MQTT) */
	SHIMMY_STAT_RECONNECTS,  /* successful reconnects after a loss */
	SHIMMY_STAT_SHM_DETACHED,/* times a reliable shm log cut this subscriber
				  * loose as a stuck reader (0 over MQTT) */
	SHIMMY_STAT_SHARE_LOST,  /* messages lost by the $share groups this client
				  * claims from over shm (lapped group cursor):
				  * a group-wide count, the same in every
				  * member; not in SHIMMY_STAT_LOST_MSGS */
	SHIMMY_STAT__COUNT
} shimmy_stat;

/* Current value of a counter (0 for an unknown one). Never blocks long. */
uint64_t shimmy_client_stat(shimmy_client *c, shimmy_stat which);

#ifdef __cplusplus
}
#endif
#endif

/*
 * broker/broker.h — the broker's protocol core: sessions, subscriptions,
 * routing, retained messages, wills and keepalive, with no I/O.
 *
 * The I/O layer (broker/server.c) owns sockets and the event loop. It feeds
 * received bytes in, and drains each connection's pending output. The core
 * never makes a syscall except for the clock passed in as now_ms.
 *
 *   I/O                                  core
 *   accept()        --> broker_conn_open()
 *   read()          --> broker_conn_input()      decode, apply, queue output
 *   end of batch    <-- broker_next_dirty()      conns with output/close
 *                   <-- broker_conn_output_iov() segments to writev
 *   write()         --> broker_conn_written()
 *   EOF/error/close --> broker_conn_closed()     will, session detach, free
 *   each loop turn  --> broker_tick()            keepalive, expiry, $SYS
 *
 * Thread model: the core is not thread-safe; its caller serializes every
 * call (server.c holds one mutex around them). Calls may come from any
 * thread. One exception to "pointers are valid until the next call": the
 * bytes broker_conn_output() and broker_conn_output_iov() hand out stay
 * valid and in place until broker_conn_written() for that conn, across
 * any other calls (output appended meanwhile never moves them), so the
 * I/O layer may write them without holding its lock.
 */
#ifndef SHIMMY_BROKER_BROKER_H
#define SHIMMY_BROKER_BROKER_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "broker/config.h"
#include "broker/log.h"
#include "mqtt/types.h"

typedef struct broker broker;
typedef struct broker_conn broker_conn;

/* Transport of a connection, for logs and for transport-specific features. */
typedef enum broker_transport {
	BROKER_TRANSPORT_TCP = 1,
	BROKER_TRANSPORT_UNIX = 2,
	BROKER_TRANSPORT_WS = 3, /* MQTT over WebSockets (broker/ws.h) */
} broker_transport;

/* broker_conn_flags() bits. */
enum {
	/* The core wants the connection closed once its output is flushed. */
	BROKER_CONN_WANT_CLOSE = 1 << 0,
	/* Back-pressure: what this connection publishes fills a slow
	 * consumer's output. Stop reading it (broker_conn_input() stops
	 * consuming after the packet that set it) until the flag clears;
	 * the core marks the conn dirty when it does. */
	BROKER_CONN_THROTTLED = 1 << 1,
};

/*
 * Creates a broker. cfg and log are borrowed until broker_destroy() (the
 * caller may update *cfg between loop turns on SIGHUP). Returns NULL on OOM.
 */
broker *broker_create(const broker_cfg *cfg, const shimmy_log *log,
		      uint64_t now_ms);

/* Frees everything, including open conns (no wills are sent). NULL ok. */
void broker_destroy(broker *b);

/*
 * A new transport connection. `peer` (e.g. "127.0.0.1:5000") is copied.
 * io_ctx is the I/O layer's handle, returned by broker_conn_io().
 * Returns NULL on OOM (the caller closes the socket).
 */
broker_conn *broker_conn_open(broker *b, broker_transport transport,
			      const char *peer, void *io_ctx, uint64_t now_ms);

/*
 * Processes received bytes: every complete packet in buf[0..len) is decoded
 * and applied. Returns the bytes consumed; the caller keeps the rest and
 * calls again with more appended. If the unconsumed rest is a partial packet
 * the caller must be able to buffer up to broker_conn_input_need() bytes.
 * After a protocol error the conn is flagged WANT_CLOSE and further input is
 * ignored (consumed).
 */
size_t broker_conn_input(broker *b, broker_conn *c, const uint8_t *buf,
			 size_t len, uint64_t now_ms);

/*
 * As broker_conn_input(), for a malloc() block the I/O layer may give
 * away: when buf[0..len) is exactly one PUBLISH whose payload is large,
 * the message keeps its payload in place and the core takes buf (*taken
 * = 1: the caller forgets buf; it is freed with the message). Saves
 * copying large payloads. *taken = 0 otherwise (buf stays the caller's).
 */
size_t broker_conn_input_owned(broker *b, broker_conn *c, uint8_t *buf,
			       size_t len, uint64_t now_ms, int *taken);

/* Size of the whole packet the unconsumed input begins, once its fixed
 * header is known; 0 if unknown. Never above the configured maximum. */
size_t broker_conn_input_need(const broker_conn *c, const uint8_t *buf,
			      size_t len);

/*
 * Pending output: sets *data and *len to the next contiguous bytes to write
 * (valid, unmoved, until broker_conn_written() for c). *len == 0 when
 * nothing is pending.
 */
void broker_conn_output(broker_conn *c, const uint8_t **data, size_t *len);

/*
 * Pending output as up to max segments, in order, for writev/sendmsg: the
 * output is inline bytes (packet headers, small payloads) with large
 * payloads spliced in by reference to their shared message. Returns the
 * number of iov entries filled (0 = nothing pending); more may be pending
 * beyond them. The pointed-to bytes are valid, unmoved, until
 * broker_conn_written() for c (call it, with 0 if nothing was written,
 * before asking again). Never allocates.
 */
int broker_conn_output_iov(broker_conn *c, struct iovec *iov, int max);

/* Total bytes of pending output (all segments). */
size_t broker_conn_pending(const broker_conn *c);

/* Marks n bytes of output as written (n counts across segments, in the
 * order broker_conn_output()/broker_conn_output_iov() give them). */
void broker_conn_written(broker_conn *c, size_t n);

/* BROKER_CONN_* bits. */
unsigned broker_conn_flags(const broker_conn *c);

/* The io_ctx given to broker_conn_open(). */
void *broker_conn_io(const broker_conn *c);

/* The transport given to broker_conn_open(). */
broker_transport broker_conn_transport(const broker_conn *c);

/*
 * Pops the next conn that gained output or WANT_CLOSE since it was last
 * popped; NULL when none. The I/O layer calls this until NULL after each
 * batch of events and after broker_tick().
 */
broker_conn *broker_next_dirty(broker *b);

/*
 * The transport is gone (EOF, error, or the I/O layer closed it after
 * WANT_CLOSE). Sends the will if the disconnect was not clean, detaches or
 * ends the session, and frees c: c is invalid after the call.
 */
void broker_conn_closed(broker *b, broker_conn *c, uint64_t now_ms);

/*
 * Runs timers: keepalive (1.5 x keep alive), will delays, session and
 * message expiry, $SYS every sys_interval. Returns the ms until the next
 * timer is due (at most 1000).
 */
uint64_t broker_tick(broker *b, uint64_t now_ms);

/* Connections currently open, for max_connections checks and logs. */
size_t broker_conn_count(const broker *b);

/*
 * Additions beyond the I/O contract.
 */

/*
 * Authentication hook, called for every CONNECT after the anonymous check
 * is skipped (with a hook set, allow_anonymous is the hook's business).
 * username/password are NULL when absent; views borrowed for the call.
 * Returns an MQTT 5 reason code: 0 accepts, 0x86/0x87/... refuse (mapped
 * onto 3.1.1 return codes for older clients).
 */
typedef uint8_t (*broker_auth_fn)(const char *client_id,
				  const mqtt_str *username,
				  const mqtt_bytes *password, void *ctx);
void broker_set_auth(broker *b, broker_auth_fn fn, void *ctx);

/*
 * Sets the topic ACL (borrowed until replaced or broker_destroy; NULL turns
 * access control off). Checked on SUBSCRIBE (refused entries get 0x80 in every
 * version, as the Paho suite expects), on PUBLISH (refused messages are acknowledged and dropped, as
 * mosquitto does; v5 acks carry 0x87) and on every delivery (read access).
 */
struct acl;
void broker_set_acl(broker *b, const struct acl *a);

/*
 * Enhanced authentication (MQTT 5 AUTH, [MQTT-4.12]): the registry of
 * methods offered (borrowed until replaced or broker_destroy; NULL = none).
 * A v5 CONNECT with an Authentication Method not in it gets CONNACK 0x8C;
 * a method's FAIL gets 0x87. The identity a method reports on success
 * replaces the CONNECT user name for ACL checks. The password hook
 * (broker_set_auth) is not consulted for such clients.
 * Re-authentication (AUTH 0x19) is not supported: it is a protocol error.
 */
struct authn;
void broker_set_authn(broker *b, const struct authn *a);

/*
 * MQTT 5 behaviour the core implements where the spec leaves a choice:
 *  - Request Response Information = 1 gets Response Information
 *    "response/<client id>" in CONNACK (a naming convention; ACLs decide
 *    what a client may publish or subscribe to).
 *  - PUBLISH with Payload Format Indicator 1 and a payload that is not
 *    valid UTF-8 (mqtt_utf8_validate rules, so U+0000 counts as invalid):
 *    QoS 1/2 acked with 0x99 and dropped; QoS 0 gets DISCONNECT 0x99. A
 *    will marked so gets CONNACK 0x99.
 *  - Reason Strings (the reason code's name) go on error acks unless the
 *    client sent Request Problem Information = 0, and always on CONNACK
 *    and DISCONNECT errors; dropped when they would exceed the client's
 *    Maximum Packet Size.
 *  - Outbound Topic Aliases: for a client with Topic Alias Maximum > 0 the
 *    first min(its maximum, 64) topics sent get aliases 1..n for the
 *    connection's life; later topics go out in full.
 *  - A client with more than 64 MiB of unread output is disconnected with
 *    0x97 Quota exceeded.
 *  - Shared subscriptions prefer connected members; QoS 1/2 messages
 *    outstanding on a member whose session ends go to another member.
 */

/*
 * Publishes a message from the broker itself (no origin client): stored if
 * retain (and retain is available), routed to subscribers. Inputs copied.
 * Returns the number of subscriptions matched, or a negative mqtt_err.
 */
int broker_publish(broker *b, const char *topic, const void *payload,
		   size_t len, uint8_t qos, int retain, uint64_t now_ms);

/*
 * Shared-memory fast path (broker/shm.h, docs/shm-protocol.md). A Unix
 * socket client whose MQTT 5 CONNECT carries User Property shimmy = shm/2
 * gets it echoed in CONNACK (unless shimmy_shm is false) and then control
 * messages on $shimmy/ctl with segment fds attached.
 *
 * The I/O layer passes the fds: fn (set once, before any connection) gets
 * fds[0..n) (transferred) to send as SCM_RIGHTS with the next output byte
 * of the connection whose io_ctx it is given. Returns 0 or -errno.
 */
typedef int (*broker_fd_fn)(void *io_ctx, int *fds, unsigned n);
void broker_set_fd_hook(broker *b, broker_fd_fn fn);

/* An fd (eventfd) readable when shm logs the broker reads have data; -1
 * when the fast path is off. Add it to the loop's epoll set. */
int broker_shm_fd(const broker *b);

/* Reads and routes what shm logs hold (bounded). Returns 1 when more is
 * pending: call again without sleeping. */
int broker_shm_poll(broker *b, uint64_t now_ms);

/* Around the loop's sleep: arm returns 1 when data is already there (do
 * not sleep); disarm once after the sleep. */
int broker_shm_arm(broker *b);
void broker_shm_disarm(broker *b);

/* Applies reloaded shimmy_shm_* limits. */
void broker_shm_reload(broker *b);

/* Publishes the $SYS tree (retained). broker_tick() calls it every
 * sys_interval seconds; exposed for tests and for SIGUSR-style dumps. */
void broker_sys_publish(broker *b, uint64_t now_ms);

#endif

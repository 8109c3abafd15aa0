/*
 * broker/ws.h — MQTT over WebSockets, the transport of listeners with
 * `protocol websockets`, on libwebsockets (lws).
 *
 * The I/O layer accepts on the listening socket as for TCP and hands each
 * accepted socket over with ws_adopt(). lws then does the HTTP upgrade
 * (subprotocol "mqtt", or "mqttv3.1" as mosquitto also accepts) and the
 * framing. MQTT bytes travel in binary frames in both directions; a
 * packet may span frames and a frame may hold several packets
 * [MQTT-6.0.0-2]. A text frame is a protocol error: the connection is
 * closed [MQTT-6.0.0-1]. Once upgraded, a connection is an ordinary
 * broker_conn (BROKER_TRANSPORT_WS): the same core runs it as any TCP one.
 *
 * Thread model. Debian's lws is built without external-poll support, so
 * lws cannot be driven from the server's epoll loops: the module runs lws's
 * own service loop on one thread of its own (ws_start), which owns every WS
 * connection. It calls into the core with the server's core lock held,
 * through the ws_host hooks, and drops the lock around lws's socket work.
 * Other threads reach it only through ws_adopt(), ws_conn_dirty() and
 * ws_stop(), which wake it with lws_cancel_service().
 */
#ifndef SHIMMY_BROKER_WS_H
#define SHIMMY_BROKER_WS_H

#include <stdint.h>

#include "broker/broker.h"
#include "broker/log.h"

typedef struct ws_server ws_server;

/*
 * What the WS thread needs from the I/O layer that owns the core. Every
 * hook is called on the WS thread with ctx.
 */
typedef struct ws_host {
	/* Takes the core lock. */
	void (*lock)(void *ctx);
	/* Gives the core lock back, then wakes the loops it gave work to. */
	void (*unlock)(void *ctx);
	/* Lock held: the clock for calls into the core (ms, monotonic). */
	uint64_t (*now_ms)(void *ctx);
	/* Lock held: hands every conn the core marked dirty to its owner
	 * (WS ones come back through ws_conn_dirty()). */
	void (*dispatch)(void *ctx);
	/* Lock held: a socket given to ws_adopt() is closed and forgotten;
	 * listener is the value given there. */
	void (*gone)(void *listener, void *ctx);
	void *ctx;
} ws_host;

/*
 * Creates the lws context (no listening sockets of its own). b, log and
 * host (copied) are borrowed until ws_destroy(). Does not start the
 * thread. Returns NULL after logging why.
 */
ws_server *ws_create(broker *b, const shimmy_log *log, const ws_host *host);

/* Starts the WS thread. Returns 0 or a negative errno. */
int ws_start(ws_server *ws);

/* Makes the WS thread leave its loop soon. Any thread, lock held or not. */
void ws_stop(ws_server *ws);

/* Waits for the WS thread to end (after ws_stop()); no-op if never
 * started. */
void ws_join(ws_server *ws);

/*
 * Closes every WS connection without telling the core (the core frees its
 * conns itself, without wills, in broker_destroy()) and frees ws. Call
 * after ws_join(), before broker_destroy(). NULL ok.
 */
void ws_destroy(ws_server *ws);

/*
 * Hands an accepted, non-blocking socket to the WS thread. fd is
 * transferred; peer (copied) names it in logs; listener comes back in the
 * gone hook once the socket is closed. Core lock held, any thread; does
 * not block. Returns 0, or -ENOMEM (fd still the caller's).
 */
int ws_adopt(ws_server *ws, int fd, const char *peer, void *listener);

/*
 * The core marked a WS conn dirty (output, WANT_CLOSE, or a throttle
 * lifted): io is its broker_conn_io(). Core lock held, any thread; the WS
 * thread handles it soon (lws_callback_on_writable and so on).
 */
void ws_conn_dirty(ws_server *ws, void *io);

#endif

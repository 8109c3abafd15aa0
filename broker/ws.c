/*
 * broker/ws.c — see ws.h. One lws context with one vhost that listens on
 * nothing: sockets come in through ws_adopt() and are adopted in HTTP mode.
 *
 * A connection (ws_conn) lives from ws_adopt() to lws's WSI_DESTROY
 * callback. Its broker_conn exists from the upgrade (ESTABLISHED) to
 * CLOSED. Input goes straight from lws's receive buffer into the core; only
 * an unconsumed tail (a partial packet, or what a throttled conn left) is
 * copied into the conn's own buffer. Output is copied from the core's
 * segments, at most WS_CHUNK bytes per binary frame, into one frame buffer
 * the thread shares across its conns (lws_write() sends it or buffers what
 * the socket did not take), and confirmed to the core at once.
 *
 * Locking: ws_server.inbox, .dirty*, .kicked, .in_turn and every
 * ws_conn.bc / dirty link are guarded by the core lock. The rest belongs
 * to the WS thread. lws calls are made on the WS thread only (except
 * lws_cancel_service, which is thread-safe), and never from inside a
 * callback on the lock's behalf that lws could re-enter: adoption, which
 * may run callbacks, happens unlocked.
 */
#include "broker/ws.h"

#include <errno.h>
#include <libwebsockets.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#define WS_CHUNK (64u * 1024)	   /* output bytes per frame at most */
#define WS_RX_BUF (16u * 1024)	   /* lws's receive buffer per conn */
#define WS_IN_KEEP_SMALL 4096u	   /* a drained input buffer this small is kept */
#define WS_IOV_MAX 64
#define WS_LINGER_S 1		   /* WANT_CLOSE: time given to flush */
#define WS_PEER_MAX 128

/* lws_protocols.id: index in ws_server.protocols. The first one takes
 * plain HTTP and upgrades without a subprotocol we know. */
enum { WS_PROTO_HTTP, WS_PROTO_MQTT, WS_PROTO_MQTT31, WS_PROTO_COUNT };

/*
 * Invariants: wsi != NULL once adopted; bc != NULL only between
 * ESTABLISHED and CLOSED; in_len <= in_cap; paused implies bc != NULL and
 * lws's rx flow is off for wsi.
 */
typedef struct ws_conn {
	struct lws *wsi;
	int fd;		/* until adopted */
	void *listener; /* for ws_host.gone */
	broker_conn *bc;
	uint8_t *in;	/* unconsumed input */
	size_t in_len, in_cap;
	bool established; /* upgraded to MQTT over WebSockets */
	bool refused;	  /* closing for a reason already logged */
	bool paused;	  /* BROKER_CONN_THROTTLED: rx flow off */
	bool lingering;	  /* WANT_CLOSE seen: close timeout set */
	bool on_dirty;
	struct ws_conn *dprev, *dnext; /* ws_server.dirty */
	struct ws_conn *inext;	       /* ws_server.inbox */
	char peer[WS_PEER_MAX];
} ws_conn;

struct ws_server {
	broker *b;
	const shimmy_log *log;
	ws_host host;
	struct lws_protocols protocols[WS_PROTO_COUNT + 1];
	struct lws_context *ctx;
	struct lws_vhost *vh;
	pthread_t thread;
	bool started;
	atomic_bool stop;
	bool closing;	/* ws_destroy(): callbacks leave the core alone */
	uint8_t *obuf;	/* LWS_PRE + WS_CHUNK: the frame being written */
	/* Guarded by the core lock. */
	ws_conn *inbox;
	ws_conn *dirty;
	bool kicked;	/* lws_cancel_service() since the thread last looked */
	bool in_turn;	/* the WS thread holds the lock */
};

/* ---- the core lock ---- */

static void ws_lock(ws_server *ws)
{
	ws->host.lock(ws->host.ctx);
	ws->in_turn = true;
}

static uint64_t ws_now(ws_server *ws)
{
	return ws->host.now_ms(ws->host.ctx);
}

static void dirty_unlink(ws_server *ws, ws_conn *wc)
{
	if (!wc->on_dirty)
		return;
	if (wc->dprev)
		wc->dprev->dnext = wc->dnext;
	else
		ws->dirty = wc->dnext;
	if (wc->dnext)
		wc->dnext->dprev = wc->dprev;
	wc->on_dirty = false;
	wc->dprev = wc->dnext = NULL;
}

static void conn_service(ws_server *ws, ws_conn *wc);

/* Ends a turn: hands out what the core marked dirty (WS conns land on
 * ws->dirty and are handled here, which may dirty more), then unlocks. */
static void ws_unlock(ws_server *ws)
{
	for (;;) {
		ws->host.dispatch(ws->host.ctx);
		if (!ws->dirty)
			break;
		while (ws->dirty) {
			ws_conn *wc = ws->dirty;
			dirty_unlink(ws, wc);
			conn_service(ws, wc);
		}
	}
	ws->in_turn = false;
	ws->host.unlock(ws->host.ctx);
}

/* ---- input ---- */

/* Appends data[0..len) to wc->in. 0 or -ENOMEM. */
static int conn_keep(ws_conn *wc, const uint8_t *data, size_t len)
{
	if (wc->in_len + len > wc->in_cap) {
		size_t cap = wc->in_cap ? wc->in_cap * 2 : WS_IN_KEEP_SMALL;
		if (cap < wc->in_len + len)
			cap = wc->in_len + len;
		uint8_t *p = realloc(wc->in, cap);
		if (!p)
			return -ENOMEM;
		wc->in = p;
		wc->in_cap = cap;
	}
	memcpy(wc->in + wc->in_len, data, len);
	wc->in_len += len;
	return 0;
}

/* Drops n consumed bytes from the front of wc->in; gives a large buffer
 * back once drained. */
static void conn_consumed(ws_conn *wc, size_t n)
{
	if (n > wc->in_len)
		n = wc->in_len; /* defensive: never trust a count */
	memmove(wc->in, wc->in + n, wc->in_len - n);
	wc->in_len -= n;
	if (wc->in_len == 0 && wc->in_cap > WS_IN_KEEP_SMALL) {
		free(wc->in);
		wc->in = NULL;
		wc->in_cap = 0;
	}
}

/* Lock held: applies the complete packets wc->in holds while the core
 * takes them, then makes lws's rx flow follow the core's throttle. */
static void conn_apply(ws_server *ws, ws_conn *wc)
{
	while (wc->bc && wc->in_len &&
	       !(broker_conn_flags(wc->bc) &
		 (BROKER_CONN_THROTTLED | BROKER_CONN_WANT_CLOSE))) {
		size_t used = broker_conn_input(ws->b, wc->bc, wc->in,
						wc->in_len, ws_now(ws));
		if (used == 0)
			break;
		conn_consumed(wc, used);
	}
	bool throttled = wc->bc &&
			 (broker_conn_flags(wc->bc) & BROKER_CONN_THROTTLED);
	if (throttled != wc->paused) {
		wc->paused = throttled;
		lws_rx_flow_control(wc->wsi, throttled ? 0 : 1);
	}
}

/* A piece of a binary frame. Returns 0, or -1 to close. */
static int conn_receive(ws_server *ws, ws_conn *wc, const uint8_t *data,
			size_t len)
{
	int rc = 0;
	ws_lock(ws);
	if (!wc->bc)
		goto out;
	if (wc->in_len == 0 && !wc->paused) {
		/* The common case: no copy unless a tail is left. */
		size_t used = broker_conn_input(ws->b, wc->bc, data, len,
						ws_now(ws));
		if (used > len)
			used = len;
		data += used;
		len -= used;
	}
	if (len && conn_keep(wc, data, len) < 0) {
		log_write(ws->log, LOG_ERR,
			  "Closing connection from %s: out of memory for input.",
			  wc->peer);
		rc = -1;
		goto out;
	}
	conn_apply(ws, wc);
out:
	ws_unlock(ws);
	return rc;
}

/* ---- output and closing ---- */

/* Lock held, from ws_unlock(): the core marked wc dirty. */
static void conn_service(ws_server *ws, ws_conn *wc)
{
	if (!wc->bc)
		return;
	conn_apply(ws, wc);
	unsigned flags = broker_conn_flags(wc->bc);
	if (broker_conn_pending(wc->bc) || (flags & BROKER_CONN_WANT_CLOSE))
		lws_callback_on_writable(wc->wsi);
	if ((flags & BROKER_CONN_WANT_CLOSE) && !wc->lingering) {
		/* A peer that reads nothing must not keep it open. */
		wc->lingering = true;
		lws_set_timeout(wc->wsi, PENDING_TIMEOUT_USER_OK, WS_LINGER_S);
	}
}

/* The socket can take a frame. Returns 0, or -1 to close. */
static int conn_writeable(ws_server *ws, ws_conn *wc)
{
	struct iovec iov[WS_IOV_MAX];
	uint8_t *frame = ws->obuf + LWS_PRE;
	size_t n = 0;
	ws_lock(ws);
	if (!wc->bc) {
		ws_unlock(ws);
		return 0;
	}
	int cnt = broker_conn_output_iov(wc->bc, iov, WS_IOV_MAX);
	for (int i = 0; i < cnt && n < WS_CHUNK; i++) {
		size_t take = iov[i].iov_len;
		if (take > WS_CHUNK - n)
			take = WS_CHUNK - n;
		memcpy(frame + n, iov[i].iov_base, take);
		n += take;
	}
	/* Copied, so written as far as the core is concerned. */
	broker_conn_written(wc->bc, n);
	bool more = broker_conn_pending(wc->bc) > 0;
	bool want_close = broker_conn_flags(wc->bc) & BROKER_CONN_WANT_CLOSE;
	ws_unlock(ws);

	if (n && lws_write(wc->wsi, frame, n, LWS_WRITE_BINARY) < 0)
		return -1;
	if (more || (want_close && n)) {
		/* For a close: once lws has sent all it buffered. */
		lws_callback_on_writable(wc->wsi);
		return 0;
	}
	if (want_close) {
		lws_close_reason(wc->wsi, LWS_CLOSE_STATUS_NORMAL, NULL, 0);
		return -1;
	}
	return 0;
}

/* Lock held: the transport is gone; tells the core (will, session). */
static void conn_detach(ws_server *ws, ws_conn *wc)
{
	dirty_unlink(ws, wc);
	if (!wc->bc)
		return;
	broker_conn *bc = wc->bc;
	wc->bc = NULL;
	broker_conn_closed(ws->b, bc, ws_now(ws));
}

/* ---- the lws callback ---- */

static int conn_established(ws_server *ws, ws_conn *wc, struct lws *wsi)
{
	if (lws_get_protocol(wsi)->id == WS_PROTO_HTTP) {
		wc->refused = true;
		log_write(ws->log, LOG_NOTICE,
			  "Closing connection from %s: WebSocket without the mqtt subprotocol.",
			  wc->peer);
		return -1;
	}
	ws_lock(ws);
	wc->bc = broker_conn_open(ws->b, BROKER_TRANSPORT_WS, wc->peer, wc,
				  ws_now(ws));
	ws_unlock(ws);
	if (!wc->bc) {
		log_write(ws->log, LOG_ERR,
			  "Closing connection from %s: out of memory.", wc->peer);
		return -1;
	}
	wc->established = true;
	return 0;
}

/* Adopts what loop 0 accepted for us. WS thread, lock not held (adoption
 * may call back). */
static void ws_adopt_inbox(ws_server *ws)
{
	ws_lock(ws);
	ws_conn *list = ws->inbox;
	ws->inbox = NULL;
	ws->kicked = false;
	ws_unlock(ws);
	while (list) {
		ws_conn *wc = list;
		list = wc->inext;
		lws_adopt_desc_t info = {
			.vh = ws->vh,
			.type = LWS_ADOPT_SOCKET | LWS_ADOPT_HTTP,
			.fd.sockfd = wc->fd,
		};
		/* The opaque pointer is set after success only: a failed
		 * adoption has closed the fd and may have run callbacks. */
		wc->wsi = lws_adopt_descriptor_vhost_via_info(&info);
		if (wc->wsi) {
			lws_set_opaque_user_data(wc->wsi, wc);
			continue;
		}
		log_write(ws->log, LOG_ERR,
			  "Dropping connection from %s: WebSocket adoption failed.",
			  wc->peer);
		ws_lock(ws);
		ws->host.gone(wc->listener, ws->host.ctx);
		ws_unlock(ws);
		free(wc);
	}
}

static int ws_callback(struct lws *wsi, enum lws_callback_reasons reason,
		       void *user, void *in, size_t len)
{
	ws_server *ws = lws_context_user(lws_get_context(wsi));
	ws_conn *wc = lws_get_opaque_user_data(wsi);

	switch (reason) {
	case LWS_CALLBACK_EVENT_WAIT_CANCELLED:
		/* Sent to every protocol: act once. */
		if (!ws->closing && lws_get_protocol(wsi)->id == WS_PROTO_HTTP)
			ws_adopt_inbox(ws);
		return 0;
	case LWS_CALLBACK_HTTP:
		if (wc) {
			wc->refused = true;
			log_write(ws->log, LOG_NOTICE,
				  "Closing connection from %s: HTTP request without a WebSocket upgrade.",
				  wc->peer);
		}
		lws_return_http_status(wsi, HTTP_STATUS_BAD_REQUEST,
				       "MQTT over WebSockets only");
		return -1;
	case LWS_CALLBACK_ESTABLISHED:
		if (!wc || ws->closing)
			return -1;
		return conn_established(ws, wc, wsi);
	case LWS_CALLBACK_RECEIVE:
		if (!wc || ws->closing)
			return -1;
		if (!lws_frame_is_binary(wsi)) {
			/* [MQTT-6.0.0-1] */
			log_write(ws->log, LOG_NOTICE,
				  "Closing connection from %s: text WebSocket frame (MQTT needs binary frames).",
				  wc->peer);
			lws_close_reason(wsi, LWS_CLOSE_STATUS_UNACCEPTABLE_OPCODE,
					 NULL, 0);
			return -1;
		}
		return conn_receive(ws, wc, in, len);
	case LWS_CALLBACK_SERVER_WRITEABLE:
		if (!wc || ws->closing)
			return -1;
		return conn_writeable(ws, wc);
	case LWS_CALLBACK_CLOSED:
		if (wc && !ws->closing) {
			ws_lock(ws);
			conn_detach(ws, wc);
			ws_unlock(ws);
		}
		return 0;
	case LWS_CALLBACK_WSI_DESTROY:
		if (!wc)
			return 0;
		lws_set_opaque_user_data(wsi, NULL);
		if (!ws->closing) {
			if (!wc->established && !wc->refused)
				log_write(ws->log, LOG_NOTICE,
					  "Closing connection from %s: no valid WebSocket upgrade.",
					  wc->peer);
			ws_lock(ws);
			conn_detach(ws, wc);
			ws->host.gone(wc->listener, ws->host.ctx);
			ws_unlock(ws);
		}
		free(wc->in);
		free(wc);
		return 0;
	default:
		return 0;
	}
}

/* ---- lifetime ---- */

ws_server *ws_create(broker *b, const shimmy_log *log, const ws_host *host)
{
	ws_server *ws = calloc(1, sizeof(*ws));
	if (!ws) {
		log_write(log, LOG_ERR, "Error: out of memory.");
		return NULL;
	}
	ws->b = b;
	ws->log = log;
	ws->host = *host;
	atomic_init(&ws->stop, false);
	ws->obuf = malloc(LWS_PRE + WS_CHUNK);
	if (!ws->obuf) {
		log_write(log, LOG_ERR, "Error: out of memory.");
		goto out_free;
	}
	static const char *const names[WS_PROTO_COUNT] = {
		[WS_PROTO_HTTP] = "http-only",
		[WS_PROTO_MQTT] = "mqtt",
		[WS_PROTO_MQTT31] = "mqttv3.1",
	};
	for (unsigned i = 0; i < WS_PROTO_COUNT; i++)
		ws->protocols[i] = (struct lws_protocols){
			.name = names[i],
			.callback = ws_callback,
			.rx_buffer_size = WS_RX_BUF,
			.id = i,
			.tx_packet_size = LWS_PRE + WS_CHUNK,
		};
	/* lws logs to stderr on its own: errors only (ours say the rest). */
	lws_set_log_level(LLL_ERR, NULL);
	struct lws_context_creation_info info;
	memset(&info, 0, sizeof(info));
	info.port = CONTEXT_PORT_NO_LISTEN_SERVER;
	info.protocols = ws->protocols;
	info.user = ws;
	info.gid = -1;
	info.uid = -1;
	info.options = LWS_SERVER_OPTION_EXPLICIT_VHOSTS;
	ws->ctx = lws_create_context(&info);
	if (!ws->ctx) {
		log_write(log, LOG_ERR, "Error: cannot create the WebSocket context.");
		goto out_free;
	}
	info.vhost_name = "shimmy";
	ws->vh = lws_create_vhost(ws->ctx, &info);
	if (!ws->vh) {
		log_write(log, LOG_ERR, "Error: cannot create the WebSocket vhost.");
		goto out_destroy;
	}
	return ws;

out_destroy:
	lws_context_destroy(ws->ctx);
out_free:
	free(ws->obuf);
	free(ws);
	return NULL;
}

static void *ws_thread(void *arg)
{
	ws_server *ws = arg;
	while (!atomic_load(&ws->stop)) {
		if (lws_service(ws->ctx, 0) < 0) {
			log_write(ws->log, LOG_ERR,
				  "Error: WebSocket service loop failed; WebSocket clients are no longer served.");
			break;
		}
	}
	return NULL;
}

int ws_start(ws_server *ws)
{
	int rc = pthread_create(&ws->thread, NULL, ws_thread, ws);
	if (rc != 0)
		return -rc;
	ws->started = true;
	return 0;
}

void ws_stop(ws_server *ws)
{
	atomic_store(&ws->stop, true);
	lws_cancel_service(ws->ctx);
}

void ws_join(ws_server *ws)
{
	if (!ws->started)
		return;
	pthread_join(ws->thread, NULL);
	ws->started = false;
}

void ws_destroy(ws_server *ws)
{
	if (!ws)
		return;
	ws->closing = true;
	while (ws->inbox) {
		ws_conn *wc = ws->inbox;
		ws->inbox = wc->inext;
		close(wc->fd);
		free(wc);
	}
	lws_context_destroy(ws->ctx);
	free(ws->obuf);
	free(ws);
}

int ws_adopt(ws_server *ws, int fd, const char *peer, void *listener)
{
	ws_conn *wc = calloc(1, sizeof(*wc));
	if (!wc)
		return -ENOMEM;
	wc->fd = fd;
	wc->listener = listener;
	snprintf(wc->peer, sizeof(wc->peer), "%s", peer);
	wc->inext = ws->inbox;
	ws->inbox = wc;
	if (!ws->kicked) {
		ws->kicked = true;
		lws_cancel_service(ws->ctx);
	}
	return 0;
}

void ws_conn_dirty(ws_server *ws, void *io)
{
	ws_conn *wc = io;
	if (wc->on_dirty || !wc->bc)
		return;
	wc->on_dirty = true;
	wc->dprev = NULL;
	wc->dnext = ws->dirty;
	if (ws->dirty)
		ws->dirty->dprev = wc;
	ws->dirty = wc;
	if (!ws->in_turn && !ws->kicked) {
		ws->kicked = true;
		lws_cancel_service(ws->ctx);
	}
}

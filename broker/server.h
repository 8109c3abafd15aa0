/*
 * broker/server.h — shimmyd's I/O layer: listeners (TCP v4/v6, Unix), the
 * epoll event loop, connections and their buffers, and signals (signalfd).
 * It owns every socket and the broker core instance, and drives the core
 * through broker.h.
 *
 * Thread model: one epoll loop per worker thread (`shimmy_threads`,
 * default one per online core, fixed at server_create()). server_run()
 * runs loop 0 on the calling thread and starts the others; a connection is
 * owned by one loop for its life (dealt round-robin at accept). The
 * broker core is shared and every call into it holds the server's core
 * lock, which loops drop around syscalls that move data or sleep. Loop 0
 * also owns listeners, signals, the shm eventfd and the core's timers.
 * Connections of `protocol websockets` listeners are the exception: loop 0
 * accepts them and hands them to the WebSocket thread (broker/ws.h), which
 * owns them and takes the same core lock.
 * server_create() blocks SIGTERM, SIGINT and SIGHUP in the calling thread
 * (create it before starting any other thread; the workers inherit the
 * mask) and ignores SIGPIPE process-wide.
 */
#ifndef SHIMMY_BROKER_SERVER_H
#define SHIMMY_BROKER_SERVER_H

#include "broker/config.h"
#include "broker/log.h"

typedef struct server server;

/* Called on SIGHUP, on loop 0's thread with the core lock held (no other
 * loop is inside the core). It may update the cfg and log the server
 * borrows (not their listeners, nor shimmy_threads). */
typedef void (*server_reload_fn)(void *ctx);

/*
 * Creates the server and its broker core. cfg and log are borrowed until
 * server_destroy(); reload (may be NULL) is called with ctx on SIGHUP.
 * Binds nothing yet. Returns NULL after logging why.
 */
server *server_create(broker_cfg *cfg, shimmy_log *log,
		      server_reload_fn reload, void *ctx);

/*
 * Opens every listener of cfg. A listener flagged CFG_LISTENER_OPTIONAL that
 * fails is logged as a warning and skipped; any other failure is logged and
 * returned (negative errno); listeners opened so far stay open until
 * server_destroy(). Does not block.
 */
int server_listen(server *s);

/*
 * Runs the event loop until SIGTERM or SIGINT (or server_stop()). Returns 0,
 * or a negative errno if the loop itself failed (epoll).
 */
int server_run(server *s);

/*
 * Attaches fds[0..n) (transferred, closed in every case) to the next byte
 * the core appends to the connection's output: they travel as SCM_RIGHTS
 * with the write that carries that byte (or an earlier one). Called by the
 * core's shm glue right before it appends a control
 * packet. io is the core's broker_conn_io(). Called with the core lock
 * held, from whichever loop thread is in the core. Returns 0, -ENOTSUP
 * (not a Unix socket) or -ENOMEM.
 */
int server_conn_attach_fds(void *io, int *fds, unsigned n);

/* The protocol core the server drives (valid until server_destroy). */
struct broker *server_broker(server *s);

/* Makes server_run() return after the current loop turns (from any
 * thread not holding the core lock, i.e. not from the reload callback). */
void server_stop(server *s);

/*
 * Closes listeners (removing unix socket files), closes every connection
 * without wills, destroys the broker core and frees s. NULL ok.
 */
void server_destroy(server *s);

#endif

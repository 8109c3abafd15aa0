/*
 * broker/server.h — shimmyd's I/O layer: listeners (TCP v4/v6, Unix), the
 * epoll event loop, connections and their buffers, and signals (signalfd).
 * It owns every socket and the broker core instance, and drives the core
 * through broker.h.
 *
 * Thread model: everything runs on the thread that calls server_run(); the
 * loop state lives in struct srv_loop inside the server so that one loop per
 * worker thread can be added later. server_create() blocks SIGTERM, SIGINT
 * and SIGHUP in the calling thread (create it before starting any other
 * thread) and ignores SIGPIPE process-wide.
 */
#ifndef SHIMMY_BROKER_SERVER_H
#define SHIMMY_BROKER_SERVER_H

#include "broker/config.h"
#include "broker/log.h"

typedef struct server server;

/* Called on SIGHUP, on the loop thread, between loop turns. It may update
 * the cfg and log the server borrows (not their listeners). */
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
 * core's shm glue, on the loop thread, right before it appends a control
 * packet. io is the core's broker_conn_io(). Returns 0, -ENOTSUP (not a
 * Unix socket) or -ENOMEM.
 */
int server_conn_attach_fds(void *io, int *fds, unsigned n);

/* The protocol core the server drives (valid until server_destroy). */
struct broker *server_broker(server *s);

/* Makes server_run() return after the current loop turn. */
void server_stop(server *s);

/*
 * Closes listeners (removing unix socket files), closes every connection
 * without wills, destroys the broker core and frees s. NULL ok.
 */
void server_destroy(server *s);

#endif

/*
 * clients/conn.h — the client's socket I/O: connecting over tcp or unix
 * with a timeout, reading with recvmsg() (so that SCM_RIGHTS fds the shm
 * path will pass arrive on the same call; for now any received fd is
 * closed), and flushing an outq with batched writev().
 *
 * Every fd returned is non-blocking and close-on-exec. Functions return
 * -errno on syscall failure. Thread model: callers serialise per fd.
 */
#ifndef SHIMMY_CLIENTS_CONN_H
#define SHIMMY_CLIENTS_CONN_H

#include <stddef.h>
#include <sys/types.h>

#include "clients/outq.h"
#include "clients/uri.h"
#include "shmpath/ctl.h"

/* Connects to u, waiting at most timeout_ms (< 0: forever). Returns the fd,
 * or -errno / SHIMMY_ERR_TIMEOUT / SHIMMY_ERR_UNSUPPORTED (tls) /
 * SHIMMY_ERR_URI (name does not resolve). Blocks. */
int conn_open(const uri *u, int timeout_ms);

/* Reads into buf[0..cap). Returns bytes read (> 0), 0 when nothing is
 * available (EAGAIN), SHIMMY_ERR_CONN_LOST on EOF, or -errno. Descriptors
 * received as ancillary data are queued in q in order (transferred; NULL:
 * closed) for the shm control messages that announce them. */
ssize_t conn_read(int fd, void *buf, size_t cap, shimmy_fdq *q);

/* Writes as much of q as the socket takes, in writev batches, consuming
 * what was written. Returns bytes written (>= 0) or -errno (not EAGAIN). */
ssize_t conn_flush(int fd, outq *q);

#endif

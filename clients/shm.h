/*
 * clients/shm.h — libshimmy's side of the shared-memory fast path: the
 * segments the broker passed (doorbell, publisher logs, subscriber logs,
 * the inbound log), reading them (borrow), writing them (copy and loan),
 * and the doorbell -> eventfd bridge that makes them pollable.
 *
 * client.c feeds it the control messages it intercepts on $shimmy/ctl and
 * the fds conn_read() queued, and asks it for messages and logs. It never
 * touches the socket: requests to the broker (LOG_CREATE) are encoded here
 * and sent by client.c as MQTT PUBLISHes.
 *
 * Everything a log holds is untrusted (another process writes it): the
 * ring validates records; topics come from the log's binding (LOG_ATTACH)
 * or, for the inbound log the broker writes, from a bounded prefix.
 *
 * After a broker loss (cshm_conn_lost) writers are dropped, readers are
 * kept as orphans and drained, and a new negotiation starts afresh.
 *
 * Thread model: called with the client's lock held, by one thread at a
 * time, except cshm_wr_loan/commit on a pinned writer (shimmy_pub's
 * thread, lock-free against the client lock holder; see cshm_wr_pin);
 * one bridge thread per negotiated session touches only the bell and
 * the eventfd.
 */
#ifndef SHIMMY_CLIENTS_SHM_H
#define SHIMMY_CLIENTS_SHM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "shmpath/ctl.h"

typedef struct cshm cshm;
struct session;

/* A borrowed message; views valid until cshm_release(). */
typedef struct cshm_msg {
	const char *topic; /* not NUL-terminated */
	size_t topic_len;
	const uint8_t *payload;
	size_t len;
	const uint8_t *props; /* MQTT 5 property bytes, no length prefix */
	size_t props_len;
	int qos, retain;      /* qos: as published, at most the subscription's */
} cshm_msg;

/* cshm_log_state() results. */
enum {
	CSHM_LOG_NONE = 0,    /* never asked */
	CSHM_LOG_PENDING = 1, /* LOG_CREATE sent, no answer yet */
	CSHM_LOG_READY = 2,   /* granted: publish through the log */
	CSHM_LOG_REFUSED = 3, /* refused (ACL, quota): use MQTT */
};

/* Creates the state (and its eventfd). subs (borrowed for life; read
 * with the client's lock held; NULL: none) holds the subscriptions that
 * cap the QoS of messages read from logs (session_deliver_qos()).
 * Returns NULL on failure. */
cshm *cshm_create(const struct session *subs);
/* Stops the bridge thread, unmaps and closes everything. NULL ok. */
void cshm_destroy(cshm *s);

/* Eventfd readable when the doorbell rang while armed. Stable for life. */
int cshm_efd(const cshm *s);

/* A control message from the broker (payload of $shimmy/ctl); the fds it
 * announces are popped from q. Returns 0 or a negative error (malformed,
 * missing fds: the caller treats it as a protocol error). */
int cshm_on_ctl(cshm *s, const uint8_t *payload, size_t len, shimmy_fdq *q);

/* The broker connection ended: writers dropped (publishing falls back to
 * MQTT), readers kept to drain, bridge stopped. */
void cshm_conn_lost(cshm *s);

/* 1 once BELL_SETUP arrived in this session. */
int cshm_ready_session(const cshm *s);

/* Publisher side. */
int cshm_log_state(cshm *s, const char *topic, size_t len);
/* Records a request and encodes its LOG_CREATE payload into buf[0..cap);
 * returns the length or a negative error. cls: size class (UINT32_MAX:
 * the broker's default). flags: SHIMMY_CTL_F_RELIABLE asks for a QoS 1/2
 * log (its writer is held back by its readers). */
int cshm_log_request(cshm *s, const char *topic, size_t len, uint32_t cls,
		     unsigned flags, uint8_t *buf, size_t cap);
/*
 * Growth (docs/shm-protocol.md §2): a record of props_len + payload_len
 * bytes does not fit topic's granted log. When a larger size class holds
 * it, records a request for that class replacing the log and encodes its
 * LOG_CREATE (log_id = the old log) into buf[0..cap); returns the length
 * (send it on SHIMMY_CTL_TOPIC, then wait while cshm_log_growing()).
 * Returns 0 when there is nothing to ask (no class holds it, it fits, a
 * request is out, the broker refused before, or the writer is pinned):
 * MQTT carries the record. Once granted, the next lookup of the topic's
 * writer switches to the new log: the old one is marked CLOSED after its
 * last record and a LOG_RELEASE of it is owed (cshm_pending_ctl()).
 */
int cshm_log_grow(cshm *s, const char *topic, size_t len, size_t props_len,
		  size_t payload_len, uint8_t *buf, size_t cap);
/* 1 while a growth request for topic's log has no answer. */
int cshm_log_growing(cshm *s, const char *topic, size_t len);
/* 1 when topic has a granted RELIABLE log. */
int cshm_log_reliable(cshm *s, const char *topic, size_t len);
/* Copies a QoS 0 message into topic's log (either kind; a reliable log
 * full: -EAGAIN). Returns 0, or a negative error (MQTT_ERR_TOO_LARGE for
 * a record over the log's maximum, -ENOENT without a granted log): then
 * send it over MQTT. */
int cshm_publish(cshm *s, const char *topic, size_t tlen, const uint8_t *props,
		 size_t props_len, const void *payload, size_t len);
/* The same at QoS qos (0..2; the record carries it). QoS 1/2 need a
 * reliable log (else -ENOENT). In a reliable log it waits up to
 * timeout_ns for the slowest reader (spinning, then yielding; blocks the
 * caller, with whatever locks it holds): -EAGAIN (timeout 0) or
 * -ETIMEDOUT when there is still no room, and nothing was written. */
int cshm_publish_qos(cshm *s, const char *topic, size_t tlen,
		     const uint8_t *props, size_t props_len,
		     const void *payload, size_t len, int qos,
		     int64_t timeout_ns);
/* Loans: reserve len payload bytes in topic's log; *buf points into it.
 * cshm_commit() publishes, cshm_abort() drops. cshm_is_loan() tells
 * whether buf came from here. */
int cshm_loan(cshm *s, const char *topic, size_t tlen, size_t len, void **buf);
/* cshm_loan() that waits up to timeout_ns for room in a reliable log
 * (returns as cshm_publish_qos()). */
int cshm_loan_wait(cshm *s, const char *topic, size_t tlen, size_t len,
		   int64_t timeout_ns, void **buf);
int cshm_is_loan(const cshm *s, const void *buf);
int cshm_commit(cshm *s, void *buf);
/* Commits at QoS qos; QoS 1/2 only into a reliable log (else -ENOENT,
 * the loan stays open). */
int cshm_commit_qos(cshm *s, void *buf, int qos);
/* 1 when the open loan at buf is in a reliable log. */
int cshm_loan_reliable(const cshm *s, const void *buf);
/* The topic and payload length of the open loan at buf. */
void cshm_loan_info(const cshm *s, const void *buf, const char **topic,
		    size_t *tlen, size_t *len);
void cshm_abort(cshm *s, void *buf);

/* Topic-bound fast path (shimmy_pub). cshm_wr_pin() (client lock held)
 * returns topic's granted writer, pinned: its memory and mappings stay
 * valid until cshm_wr_unpin() (client lock held), even after
 * cshm_conn_lost() (it is then dead). While pinned, the other publish
 * calls on that topic return SHIMMY_ERR_BUSY (MQTT carries them).
 * cshm_wr_loan/commit need NOT the client lock: they take the writer's
 * own spinlock, and return SHIMMY_ERR_CONN_LOST once it is dead. One
 * thread at a time per pinned writer. */
typedef struct cshm_wr cshm_wr;
cshm_wr *cshm_wr_pin(cshm *s, const char *topic, size_t tlen);
void cshm_wr_unpin(cshm *s, cshm_wr *w);
int cshm_wr_loan(cshm_wr *w, size_t len, void **buf);
int cshm_wr_commit(cshm_wr *w, void *buf);
/* Batch forms (shimmy_ring_reserve_many/commit_many): up to n (capped at
 * CSHM_PUB_MANY_MAX) consecutive records of len payload bytes, bufs[0..k);
 * returns k >= 1 or an error as cshm_wr_loan(). Commit them all at once
 * with the same bufs and k. */
#define CSHM_PUB_MANY_MAX 64u
int cshm_wr_loan_many(cshm_wr *w, size_t len, void **bufs, unsigned n);
int cshm_wr_commit_many(cshm_wr *w, void **bufs, unsigned n);

/* Subscriber side. Borrows the next message of any log, or claims one
 * from a $share group's page (a copy; shmshare.h), groups and logs taking
 * turns (bounded work). Returns 1 (*m filled, valid until cshm_release),
 * 0 (nothing now) or SHIMMY_ERR_BUSY (a borrow is outstanding). */
int cshm_next(cshm *s, cshm_msg *m);
/* Batch form of cshm_next() for pull-mode receivers: borrows up to max
 * (capped at CSHM_NEXT_MANY_MAX) consecutive messages of one log into
 * m[0..n), all valid until cshm_release(). Returns n >= 1 (n = 1 when
 * $share groups are read too: then it is cshm_next()), 0 or
 * SHIMMY_ERR_BUSY. Costs one header check per message; no allocation. */
#define CSHM_NEXT_MANY_MAX 64u
int cshm_next_many(cshm *s, cshm_msg *m, unsigned max);
/* Ends the borrow (all of a cshm_next_many()); returns 0, or -ESTALE when
 * bytes were overwritten while borrowed (those messages count as lost). */
int cshm_release(cshm *s);
/* Position batching for every log read (shimmy_ring_reader_set_batch);
 * n = 1 publishes what is pending. */
void cshm_set_batch(cshm *s, uint32_t n);
/* Bounds every log read at its writer's tail as of now (flags
 * SHIMMY_RING_BOUND_TAIL), or lifts the bounds (flags 0); see
 * shimmy_ring_reader_bound(). Returns the bytes up to the bounds, summed
 * over the logs (0 with flags 0). */
uint64_t cshm_bound(cshm *s, unsigned flags);
/* 1 when cshm_next() would find something. */
int cshm_has_data(cshm *s);
/* Number of logs read (subscriptions served through shared memory). */
unsigned cshm_readers(const cshm *s);

/* Waits up to timeout_ns for data: spins spin_ns, then sleeps on the
 * doorbell. Returns 1 when data is there, 0 on timeout. Blocks; call it
 * without the client's lock (it touches only the bell and the rings'
 * read-only side — a racing cshm_conn_lost is excluded by the caller). */
int cshm_wait(cshm *s, int64_t spin_ns, int64_t timeout_ns);

/* Around a sleep in poll(): arm so writers ring the bell (and the bridge
 * makes the eventfd readable); returns 1 if data is already there. */
int cshm_arm(cshm *s);
void cshm_disarm(cshm *s);
/* Clears the eventfd / makes it readable. */
void cshm_clear(cshm *s);
void cshm_kick(cshm *s);

/* Messages lost to lapping, cumulative. */
uint64_t cshm_lost(const cshm *s);
/* Messages lost by the $share groups this client claims from (group-wide
 * counts, shmshare.h). */
uint64_t cshm_share_lost(const cshm *s);
/* Times a reliable log cut this client loose as a stuck reader
 * (LOG_DETACH reason 2), cumulative. */
uint64_t cshm_detached(const cshm *s);
/* A control message the client owes the broker (the LOG_RELEASE that
 * answers a cut: it gets the reader attached again; the LOG_RELEASE of a
 * log grown out of), encoded into buf[0..cap). Returns its length (send
 * it on SHIMMY_CTL_TOPIC), 0 when none is owed, or SHIMMY_ERR_NOMEM when
 * cap is too small. Call until 0 after each cshm_on_ctl() and after a
 * publish on the shm path. */
int cshm_pending_ctl(cshm *s, uint8_t *buf, size_t cap);
/* Spin time the broker suggests (BELL_SETUP), in microseconds. */
uint32_t cshm_spin_us(const cshm *s);

#endif

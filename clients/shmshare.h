/*
 * clients/shmshare.h — libshimmy's shared-subscription groups over shared
 * memory ($share/G/f, docs/shm-protocol.md §7): the share pages the broker
 * passed in SHARE_ATTACH, and claiming from them, so that each message of
 * a publisher's log goes to exactly one member of the group with no broker
 * hop.
 *
 * A set holds one entry per (group, log): the log mapped read-only, the
 * group's page mapped read-write, a claim handle (shmpath/share.h) and a
 * buffer the claimed message is copied into (copy-before-claim: a claimed
 * message is always complete). clients/shm.c owns one set per client and
 * hands its messages out through the same receive paths as log reads.
 *
 * Everything in the log and the page is untrusted (another process writes
 * them): claims are bounded and validated by shmpath/share.c; the topic is
 * the log's binding from SHARE_ATTACH. An entry whose claims fail (closed
 * and drained, detached, garbage) is dropped.
 *
 * Thread model: called with the client's lock held, by one thread at a
 * time; cshare_ready() may also run from cshm_wait() without the lock
 * (read-only, as for logs).
 */
#ifndef SHIMMY_CLIENTS_SHMSHARE_H
#define SHIMMY_CLIENTS_SHMSHARE_H

#include <stdint.h>

#include "shmpath/ctl.h"

struct cshm_msg;
struct session;
typedef struct cshare_set cshare_set;

/* Returns NULL on OOM. */
cshare_set *cshare_set_create(void);
/* Unmaps and frees every entry. NULL ok. */
void cshare_set_destroy(cshare_set *ss);

/*
 * SHARE_ATTACH m with its fds (log RO, page RW; transferred: closed on
 * error). Returns 0, or a negative error when the segments are not what
 * the message says (the caller treats it as a protocol error).
 */
int cshare_attach(cshare_set *ss, const shimmy_ctl *m, int *fds);

/* SHARE_DETACH: stop claiming from the page of (log_id, idx); an entry
 * whose message is out is dropped at cshare_release(). */
void cshare_detach(cshare_set *ss, uint64_t log_id, uint32_t idx);

/* The broker connection ended: entries are kept to drain what is left and
 * dropped once they find nothing. */
void cshare_conn_lost(cshare_set *ss);

/*
 * Claims the next message from any entry, round robin (bounded work).
 * m->qos is the record's, at most that of the $share subscriptions
 * matching the topic in subs (borrowed for the call; NULL: as
 * published). Returns 1 (*m filled; its views stay valid until
 * cshare_release()), 0 (nothing now) or SHIMMY_ERR_BUSY (a message is
 * out).
 */
int cshare_next(cshare_set *ss, struct cshm_msg *m,
		const struct session *subs);
/* Ends the message cshare_next() gave out. */
void cshare_release(cshare_set *ss);
/* 1 while a message is out. */
int cshare_busy(const cshare_set *ss);

/* 1 when cshare_next() may find something (see shimmy_share_ready). */
int cshare_ready(const cshare_set *ss);
/* 1 when the set has no entry at all (orphans included). */
int cshare_empty(const cshare_set *ss);
/* Entries (groups x logs) claimed from, orphans excluded. */
unsigned cshare_count(const cshare_set *ss);
/* Messages lost by the groups (lapped cursors): the sum over entries of
 * their group's count, kept for entries already dropped. Every member of
 * a group reports the same group-wide figure. */
uint64_t cshare_lost(const cshare_set *ss);

#endif

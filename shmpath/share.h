/*
 * shmpath/share.h — shared subscriptions ($share/group/filter) over one
 * broadcast log: each message goes to exactly one member of the group.
 *
 * The group owns a share page (a SHIMMY_SEG_SHARE segment's body) mapped
 * read-write by every member. Its claim cursor is a reader position: the
 * writer tracks the page like any reader slot (same table entry, same gen),
 * so a reliable log is held back by the group as a whole. A member copies
 * the record at the cursor, checks it was not overrun, then claims it with
 * a CAS of the cursor to the next record; the CAS winner delivers, losers
 * retry. Copy-before-claim means a claimed message is always complete.
 *
 * Trust: members can move the shared cursor (they are one group); they
 * cannot touch the log or other readers. Loss is counted per group:
 * (highest seq claimed - first seq claimed + 1) - messages claimed, exact
 * once members are quiescent.
 * Thread model: a member handle is used by one thread; members in any
 * threads and processes share one page. No allocation per message.
 */
#ifndef SHIMMY_SHMPATH_SHARE_H
#define SHIMMY_SHMPATH_SHARE_H

#include <stddef.h>
#include <stdint.h>

#include "shmpath/ring.h"

#define SHIMMY_SHARE_PAGE_SIZE 4096u

typedef struct shimmy_share_member shimmy_share_member;

/*
 * Broker side: formats the share page for table entry idx/gen of the log
 * in ring_mem, starting the cursor at the log's tail. The broker then marks
 * the entry ATTACHED (shimmy_ring_slot_set) and hands the page's fd to the
 * writer (track) and to every member. Returns 0, MQTT_ERR_INVALID or
 * MQTT_ERR_MALFORMED.
 */
int shimmy_share_format(void *page, size_t page_len, const void *ring_mem,
			size_t ring_len, uint64_t gen);

/* Member: wraps the log (read-only, borrowed) and the share page (borrowed)
 * for entry idx. Allocates the handle. Returns 0, MQTT_ERR_NOMEM,
 * MQTT_ERR_INVALID or MQTT_ERR_MALFORMED. */
int shimmy_share_member_create(shimmy_share_member **out, const void *ring_mem,
			       size_t ring_len, void *page, size_t page_len,
			       uint32_t idx);
void shimmy_share_member_destroy(shimmy_share_member *m);

/*
 * Claims and copies the next message into buf[0..cap); msg views point into
 * buf. Returns 1, 0 (nothing to claim now), -ENOLINK (group detached),
 * -EPIPE (closed and drained), MQTT_ERR_NOSPACE (msg lens say what is
 * needed; nothing claimed) or MQTT_ERR_MALFORMED. Never blocks; bounded.
 */
int shimmy_share_claim(shimmy_share_member *m, shimmy_ring_msg *msg,
		       void *buf, size_t cap);

/* 1 when shimmy_share_claim() would return something other than 0: a
 * record (or garbage) sits at the cursor, or the group is detached, or the
 * log is closed. No side effects, bounded; usable as a shimmy_bell_ready_fn
 * (ctx = member). Another member may claim the record first: a ready group
 * can still claim 0 (a spurious wake-up, never a lost one). */
int shimmy_share_ready(void *member);

/* Messages claimed by the whole group, and lost by it (see above). */
uint64_t shimmy_share_claimed(const shimmy_share_member *m);
uint64_t shimmy_share_lost(const shimmy_share_member *m);

#endif

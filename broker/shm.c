/*
 * broker/shm.c — see shm.h.
 *
 * Objects and who points at whom:
 *
 *   shm_broker --clients--> shm_client --(owner of)--> shm_log
 *              --logs-----> shm_log --readers--> shm_att --cl--> shm_client
 *                           shm_log --shares---> shm_share --membs--> shm_memb
 *                                                          --cl--> shm_client
 *
 * An shm_att is one reader table entry of one log: a client's attachment
 * (cl != NULL) or the broker's own reader (cl == NULL, rd != NULL). Each
 * att owns its slot segment; the broker keeps its RW mapping, so it can
 * read the reader's `lost` and so that the writer of an inbound log (the
 * broker itself) can track it. A log owns its segment and its atts.
 *
 * Inbound logs (one per shm client) are logs whose writer is the broker;
 * they are not on sb->logs and carry a topic per record:
 *   props = | u16 BE topic_len | topic | MQTT 5 property bytes |
 *
 * A shm_share is one $share group's page on one log (§7; see the shared
 * subscriptions section below); it owns its page, its bell and the table
 * entries of its claimants.
 *
 * Invariants: an att is on exactly one log's list and, when cl != NULL, on
 * cl->atts; log->used has bit idx set iff an att or a share entry (page,
 * wake-only) with that idx exists; a log with owner == NULL is CLOSED and
 * kept only while the broker's reader, or its claims from a share page,
 * drain it.
 */
#include "broker/shm.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "mqtt/error.h"
#include "mqtt/topic.h"
#include "shmpath/ctl.h"
#include "shmpath/notify.h"
#include "shmpath/segment.h"
#include "shmpath/share.h"
#include "shmpath/tether.h"

/* Data capacity class of an inbound log (1 MiB, records up to 256 KiB). */
#define SHM_INBOUND_CLASS 1u
/* Default class of a publisher's log when the client asks for none. */
#define SHM_LOG_CLASS_DEFAULT 1u
/* Records routed per log per shm_broker_poll(). */
#define SHM_POLL_BUDGET 256
/* Readers per log (table entries); the broker's own reader takes one. */
#define SHM_READERS SHIMMY_RING_READERS
/* A reader's own `lost` counts for at most this much in $SYS (a hostile
 * reader could write anything there; the sum must not wrap). */
#define SHM_SLOT_LOST_MAX (1ull << 48)

typedef struct shm_log shm_log;
typedef struct shm_att shm_att;
typedef struct shm_share shm_share;

struct shm_att {
	shm_log *log;
	shm_client *cl;          /* NULL: the broker's own reader */
	uint32_t idx;
	uint64_t gen;
	shimmy_seg slot;         /* broker's RW mapping of the slot */
	shimmy_ring_reader *rd;  /* broker's reader (cl == NULL) */
	bool cut;                /* cut loose (stuck): DETACHED, kept until
				  * the client's LOG_RELEASE */
	shimmy_tether tether;    /* reliable logs: stuck-reader clock */
	shm_att *next_in_log;
	shm_att *next_in_cl;
};

struct shm_log {
	uint64_t id;
	char *topic;             /* NUL-terminated; "" for inbound logs */
	uint16_t topic_len;
	shm_client *owner;       /* publisher; NULL once closed */
	bool inbound;
	bool reliable;           /* QoS 1/2 log: readers hold the writer */
	uint64_t cap;            /* data capacity */
	uint32_t req_id;         /* LOG_CREATE's, until LOG_GRANT is sent */
	shimmy_seg seg;
	shimmy_ring_writer *w;   /* inbound logs only: the broker writes */
	uint64_t gen_next;
	uint64_t used[(SHM_READERS + 63) / 64];
	shm_att *atts;
	shm_att *brd;            /* the broker's reader, if any */
	shm_share *shares;       /* shared groups reading it (§7) */
	/* Growth (§2): pred is the smaller log this one replaces, while it
	 * lives; succ the larger one that replaces this one. Readers drain
	 * pred before they read this log. */
	shm_log *pred, *succ;
	shm_log *next;           /* sb->logs */
};

struct shm_client {
	shm_broker *sb;
	void *conn;
	shimmy_seg bell;
	shm_log *inbound;
	shm_att *atts;           /* attachments as a reader (not inbound) */
	uint64_t bytes;          /* segment bytes charged */
	shm_client *prev, *next;
};

struct shm_broker {
	shm_env env;
	shm_limits lim;
	shm_client *clients;
	shm_log *logs;
	uint64_t next_id;
	uint64_t lost_gone;      /* `lost` of readers since freed */

	shimmy_seg bell;         /* the broker's own doorbell */
	shimmy_bell *b;
	int efd;
	pthread_t thread;
	bool thread_started;
	atomic_bool stop;
	bool armed;

	uint8_t *rx;             /* receive buffer for routed records */
	size_t rx_cap;
	uint8_t *tx;             /* control frame buffer */
	size_t tx_cap;
	shm_stats st;
};

/* ---- segments and accounting ------------------------------------------ */

static int seg_new(shm_broker *sb, shm_client *cl, shimmy_seg *seg,
		   uint32_t kind, size_t body_len)
{
	size_t size = SHIMMY_SEG_HDR_SIZE + body_len;
	if (cl && cl->bytes + size > sb->lim.max_bytes)
		return -EDQUOT;
	int rc = shimmy_seg_create(seg, kind, body_len, ++sb->next_id);
	if (rc < 0)
		return rc;
	if (cl)
		cl->bytes += seg->size;
	sb->st.segment_bytes += seg->size;
	return 0;
}

static void seg_free(shm_broker *sb, shm_client *cl, shimmy_seg *seg)
{
	if (!seg->base)
		return;
	if (cl)
		cl->bytes -= cl->bytes < seg->size ? cl->bytes : seg->size;
	sb->st.segment_bytes -= sb->st.segment_bytes < seg->size
					? sb->st.segment_bytes
					: seg->size;
	shimmy_seg_unmap(seg);
}

static void *seg_body_len(const shimmy_seg *seg, size_t *len)
{
	return shimmy_seg_body(seg, len);
}

/* ---- control messages --------------------------------------------------- */

/* Closes the fds of a message that is not sent; negative ones are opens
 * that failed. */
static void fds_close(int *fds, unsigned nfds)
{
	for (unsigned i = 0; i < nfds; i++)
		if (fds[i] >= 0)
			close(fds[i]);
}

/* Frames m and hands it with fds (transferred) to the core. */
static int ctl_send(shm_broker *sb, shm_client *cl, const shimmy_ctl *m,
		    int *fds, unsigned nfds)
{
	int need = shimmy_ctl_frame(m, 1, NULL, 0);
	int rc = need;
	if (need < 0)
		goto out_close;
	if ((size_t)need > sb->tx_cap) {
		uint8_t *p = realloc(sb->tx, (size_t)need);
		if (!p) {
			rc = -ENOMEM;
			goto out_close;
		}
		sb->tx = p;
		sb->tx_cap = (size_t)need;
	}
	shimmy_ctl_frame(m, 1, sb->tx, sb->tx_cap);
	return sb->env.send(cl->conn, sb->tx, (size_t)need, fds, nfds,
			    sb->env.ctx);
out_close:
	fds_close(fds, nfds);
	return rc;
}

static int dup_fd(int fd)
{
	int d = fcntl(fd, F_DUPFD_CLOEXEC, 0);
	return d < 0 ? -errno : d;
}

/* A NUL-terminated copy of s[0..len) (caller owns), or NULL. */
static char *name_dup(const char *s, size_t len)
{
	char *d = malloc(len + 1);
	if (!d)
		return NULL;
	memcpy(d, s, len);
	d[len] = '\0';
	return d;
}

/* The two fds of one message, a and b (fds or -errno): 0 when both
 * opened, else the one that did is closed and the error returned. */
static int fd_pair(int fds[2], int a, int b)
{
	fds[0] = a;
	fds[1] = b;
	if (a >= 0 && b >= 0)
		return 0;
	fds_close(fds, 2);
	return a < 0 ? a : b;
}

/* ---- attachments -------------------------------------------------------- */

static int idx_alloc(shm_log *lg, const void *mem, size_t len)
{
	(void)mem;
	(void)len;
	for (uint32_t i = 0; i < SHM_READERS; i++) {
		if (!(lg->used[i / 64] & (1ull << (i % 64)))) {
			lg->used[i / 64] |= 1ull << (i % 64);
			return (int)i;
		}
	}
	return -ENOSPC;
}

static void idx_free(shm_log *lg, uint32_t idx)
{
	lg->used[idx / 64] &= ~(1ull << (idx % 64));
}

/* The messages reader a says it lost (its slot's counter, clamped). */
static uint64_t att_lost(const shm_att *a)
{
	size_t slen;
	const void *slot = shimmy_seg_body(&a->slot, &slen);
	uint64_t v = shimmy_ring_slot_lost(slot, slen);
	return v > SHM_SLOT_LOST_MAX ? SHM_SLOT_LOST_MAX : v;
}

/* Unlinks att from its log and client lists, frees its table entry and
 * its slot. The caller tells the writer (READER_DROP) if it must. */
static void att_free(shm_broker *sb, shm_att *a)
{
	shm_log *lg = a->log;
	sb->lost_gone += att_lost(a);
	size_t len;
	void *mem = seg_body_len(&lg->seg, &len);
	shimmy_ring_slot_set(mem, len, a->idx, SHIMMY_RING_SLOT_FREE, 0);
	if (lg->w)
		shimmy_ring_writer_untrack(lg->w, a->idx);
	idx_free(lg, a->idx);
	for (shm_att **pp = &lg->atts; *pp; pp = &(*pp)->next_in_log)
		if (*pp == a) {
			*pp = a->next_in_log;
			break;
		}
	if (a->cl)
		for (shm_att **pp = &a->cl->atts; *pp; pp = &(*pp)->next_in_cl)
			if (*pp == a) {
				*pp = a->next_in_cl;
				break;
			}
	if (lg->brd == a)
		lg->brd = NULL;
	if (a->rd)
		shimmy_ring_reader_destroy(a->rd);
	if (!lg->inbound)
		sb->st.attachments--;
	seg_free(sb, a->cl, &a->slot);
	free(a);
}

/* Tells the publisher of lg that reader idx is gone. */
static void tell_drop(shm_broker *sb, shm_log *lg, uint32_t idx)
{
	if (!lg->owner)
		return;
	shimmy_ctl m = { .type = SHIMMY_CTL_READER_DROP, .log_id = lg->id,
			 .idx = idx };
	ctl_send(sb, lg->owner, &m, NULL, 0);
}

/*
 * Creates an attachment of cl (NULL: the broker itself) to lg: a table
 * entry, a slot segment, and the fds for the reader and the writer.
 * Returns the att or NULL (no entry, quota, or a syscall failed).
 */
static shm_att *att_new(shm_broker *sb, shm_log *lg, shm_client *cl,
			unsigned ring_flags)
{
	size_t len;
	void *mem = seg_body_len(&lg->seg, &len);
	shm_att *a = calloc(1, sizeof(*a));
	if (!a)
		return NULL;
	int idx = idx_alloc(lg, mem, len);
	if (idx < 0)
		goto out_free;
	a->log = lg;
	a->cl = cl;
	a->idx = (uint32_t)idx;
	a->gen = ++lg->gen_next;
	if (seg_new(sb, cl, &a->slot, SHIMMY_SEG_SLOT, SHIMMY_RING_SLOT_SIZE) < 0)
		goto out_idx;
	size_t slen;
	void *slot = seg_body_len(&a->slot, &slen);
	if (shimmy_ring_slot_format(slot, slen) != 0)
		goto out_slot;
	if (!cl && shimmy_ring_reader_create(&a->rd, mem, len, slot, slen,
					     a->idx, a->gen, ring_flags) != 0)
		goto out_slot;
	/* Reliable logs: the client's reader holds the writer back from now
	 * on, not only once its client has mapped the log (tether.h). From
	 * the head, lossy ones too: a reader seeded at 0 counts what the
	 * writer laps before the client maps the log as lost (ring.h). */
	if (cl && (lg->reliable || (ring_flags & SHIMMY_RING_FROM_HEAD)) &&
	    shimmy_tether_seed(mem, len, slot, slen, a->gen, ring_flags) != 0)
		goto out_slot;
	/* Lossy logs: ATTACHED now is harmless (the writer ignores the entry
	 * until the slot shows the same gen, written by reader_create). */
	if (shimmy_ring_slot_set(mem, len, a->idx, SHIMMY_RING_SLOT_ATTACHED,
				 a->gen) != 0)
		goto out_reader;
	a->next_in_log = lg->atts;
	lg->atts = a;
	if (cl) {
		a->next_in_cl = cl->atts;
		cl->atts = a;
	}
	if (!lg->inbound)
		sb->st.attachments++; /* att_free() counts it down */
	return a;

out_reader:
	if (a->rd)
		shimmy_ring_reader_destroy(a->rd);
out_slot:
	seg_free(sb, cl, &a->slot);
out_idx:
	idx_free(lg, (uint32_t)idx);
out_free:
	free(a);
	return NULL;
}

/* READER_ADD: the writer of lg (its publisher) tracks table entry idx
 * with the page `slot` (a reader slot or a share page, read-only) and
 * rings `bell` on commit. Returns 0 (also when lg has no publisher left)
 * or a negative error: a reliable writer then waits for the ATTACHED
 * entry for good (§6), so the caller undoes the attachment. */
static int tell_track(shm_broker *sb, shm_log *lg, uint32_t idx, uint64_t gen,
		      const shimmy_seg *slot, const shimmy_seg *bell)
{
	if (!lg->owner)
		return 0;
	int fds[2];
	int rc = fd_pair(fds, shimmy_seg_open_ro(slot), dup_fd(bell->fd));
	if (rc < 0)
		return rc;
	/* req_id: before LOG_GRANT, tells which LOG_CREATE it is for. */
	shimmy_ctl m = { .type = SHIMMY_CTL_READER_ADD, .log_id = lg->id,
			 .idx = idx, .gen = gen, .req_id = lg->req_id };
	return ctl_send(sb, lg->owner, &m, fds, 2);
}

/* Gives the writer of lg (its publisher) the new reader's slot and bell. */
static int tell_add(shm_broker *sb, shm_log *lg, shm_att *a,
		    const shimmy_seg *bell)
{
	return tell_track(sb, lg, a->idx, a->gen, &a->slot, bell);
}

static shm_att *find_att(const shm_client *cl, const shm_log *lg)
{
	for (shm_att *a = cl->atts; a; a = a->next_in_cl)
		if (a->log == lg)
			return a;
	return NULL;
}

/* Attaches client cl to publisher log lg: READER_ADD to the publisher,
 * then LOG_ATTACH to cl (LOG_REPLACE when cl reads lg's predecessor). */
static void attach_client(shm_broker *sb, shm_log *lg, shm_client *cl,
			  unsigned ring_flags)
{
	shm_att *a = att_new(sb, lg, cl, ring_flags);
	if (!a)
		return;
	/* The writer first: it waits for an ATTACHED entry it cannot track. */
	if (tell_add(sb, lg, a, &cl->bell) < 0) {
		att_free(sb, a);
		return;
	}
	int fds[2];
	if (fd_pair(fds, shimmy_seg_open_ro(&lg->seg), dup_fd(a->slot.fd)) < 0)
		goto out_drop;
	shimmy_ctl m = { .type = SHIMMY_CTL_LOG_ATTACH, .log_id = lg->id,
			 .idx = a->idx, .gen = a->gen,
			 .flags = ((ring_flags & SHIMMY_RING_FROM_HEAD)
					   ? SHIMMY_CTL_F_FROM_HEAD
					   : 0) |
				  (lg->reliable ? SHIMMY_CTL_F_RELIABLE : 0),
			 .topic = lg->topic, .topic_len = lg->topic_len };
	/* A reader of the log this one replaces drains that one first. */
	if (lg->pred && find_att(cl, lg->pred)) {
		m.type = SHIMMY_CTL_LOG_REPLACE;
		shimmy_ctl_set_replaced(&m, lg->pred->id);
	}
	if (ctl_send(sb, cl, &m, fds, 2) < 0)
		goto out_drop;
	return;

out_drop:;
	uint32_t idx = a->idx;
	att_free(sb, a);
	tell_drop(sb, lg, idx);
}

/* Starts the broker's own reader of lg. */
static void attach_broker(shm_broker *sb, shm_log *lg, unsigned ring_flags)
{
	if (lg->brd || lg->inbound)
		return;
	shm_att *a = att_new(sb, lg, NULL, ring_flags);
	if (!a)
		return;
	if (tell_add(sb, lg, a, &sb->bell) < 0) {
		att_free(sb, a);
		return;
	}
	lg->brd = a;
}

/* ---- shared subscriptions (docs/shm-protocol.md §7) ---------------------- */

/*
 * One share page per (group, log), for every "$share/G/f" whose f matches
 * the log's topic. The page is one reader of the log (table entry idx,
 * gen, ATTACHED): the writer tracks it for flow control, with a bell of
 * the page's own that nobody sleeps on, so no member's departure changes
 * what the writer holds. Each claimant - an shm member, or the broker for
 * the members it serves itself (non-shm connections, offline sessions) -
 * has a wake-only entry: a FREE table entry the writer tracks with the
 * claimant's bell, which it rings on commit but never waits for (a FREE
 * entry never holds a writer back). All claimants CAS one cursor, so each
 * record goes to exactly one of them, across shm and non-shm members.
 *
 * Pages are charged to no client: a page needs its entry plus one per
 * claimant, so a log carries at most SHM_READERS / 2 of them (16 KiB each,
 * page and bell), and logs are charged to their publishers.
 *
 * Invariants: a share is on exactly one log's list; its idx, claim_wake
 * (while claiming) and every member's wake are set in log->used; a share
 * has a member or claims, except inside share_sync().
 */
typedef struct shm_memb {
	shm_client *cl;
	uint32_t wake;           /* its wake-only table entry */
	bool seen;               /* share_sync() scratch */
	struct shm_memb *next;
} shm_memb;

struct shm_share {
	shm_log *log;
	char *filter;            /* "$share/G/f", NUL-terminated */
	uint16_t filter_len;
	uint32_t idx;            /* the page's table entry */
	uint64_t gen;
	shimmy_seg page;         /* kind SHARE; members map it RW */
	shimmy_seg bell;         /* rung for the page entry; nobody sleeps */
	shimmy_share_member *h;  /* the broker's handle: its claims, loss */
	bool claiming;           /* the broker claims for its members */
	uint32_t claim_wake;     /* the broker's wake entry while claiming */
	bool cut;                /* stuck, cut loose: entry FREE until the
				  * cursor moves again (share_tick) */
	uint64_t cut_pos;        /* the cursor when it was cut */
	shimmy_tether tether;    /* reliable logs: stuck-cursor clock */
	bool seen;               /* share_sync() scratch */
	shm_memb *membs;
	shm_share *next;         /* log->shares */
};

/* A wake-only entry of sh's log for bell. Returns its index or -ENOSPC. */
static int wake_new(shm_broker *sb, shm_share *sh, const shimmy_seg *bell)
{
	shm_log *lg = sh->log;
	size_t len;
	void *mem = seg_body_len(&lg->seg, &len);
	int idx = idx_alloc(lg, mem, len);
	if (idx < 0)
		return idx;
	shimmy_ring_slot_set(mem, len, (uint32_t)idx, SHIMMY_RING_SLOT_FREE, 0);
	tell_track(sb, lg, (uint32_t)idx, 0, &sh->page, bell);
	return idx;
}

static void wake_free(shm_broker *sb, shm_share *sh, uint32_t idx)
{
	idx_free(sh->log, idx);
	tell_drop(sb, sh->log, idx);
}

static shm_share *share_find(shm_log *lg, const char *filter, size_t flen)
{
	for (shm_share *sh = lg->shares; sh; sh = sh->next)
		if (sh->filter_len == flen && memcmp(sh->filter, filter, flen) == 0)
			return sh;
	return NULL;
}

static shm_memb *memb_find(shm_share *sh, const shm_client *cl)
{
	for (shm_memb *m = sh->membs; m; m = m->next)
		if (m->cl == cl)
			return m;
	return NULL;
}

/* Creates the page of group `filter` on lg, cursor at the log's tail, and
 * has the writer track it. Returns NULL (no entry, a syscall failed). */
static shm_share *share_new(shm_broker *sb, shm_log *lg, const char *filter,
			    size_t flen)
{
	size_t len, plen, blen;
	void *mem = seg_body_len(&lg->seg, &len);
	if (flen > UINT16_MAX)
		return NULL;
	shm_share *sh = calloc(1, sizeof(*sh));
	if (!sh)
		return NULL;
	sh->filter = name_dup(filter, flen);
	if (!sh->filter)
		goto out_free;
	sh->filter_len = (uint16_t)flen;
	sh->log = lg;
	int idx = idx_alloc(lg, mem, len);
	if (idx < 0)
		goto out_filter;
	sh->idx = (uint32_t)idx;
	sh->gen = ++lg->gen_next;
	if (seg_new(sb, NULL, &sh->page, SHIMMY_SEG_SHARE,
		    SHIMMY_SHARE_PAGE_SIZE) < 0)
		goto out_idx;
	if (seg_new(sb, NULL, &sh->bell, SHIMMY_SEG_BELL, SHIMMY_BELL_SIZE) < 0)
		goto out_page;
	void *page = seg_body_len(&sh->page, &plen);
	void *bmem = seg_body_len(&sh->bell, &blen);
	if (!shimmy_bell_init(bmem, blen) ||
	    shimmy_share_format(page, plen, mem, len, sh->gen) != 0 ||
	    shimmy_share_member_create(&sh->h, mem, len, page, plen,
				       sh->idx) != 0)
		goto out_bell;
	/* After format: the writer reads the cursor once gen matches. */
	if (shimmy_ring_slot_set(mem, len, sh->idx, SHIMMY_RING_SLOT_ATTACHED,
				 sh->gen) != 0)
		goto out_h;
	if (tell_track(sb, lg, sh->idx, sh->gen, &sh->page, &sh->bell) < 0)
		goto out_entry;
	sh->next = lg->shares;
	lg->shares = sh;
	sb->st.shares++;
	return sh;

out_entry:
	shimmy_ring_slot_set(mem, len, sh->idx, SHIMMY_RING_SLOT_FREE, 0);
out_h:
	shimmy_share_member_destroy(sh->h);
out_bell:
	seg_free(sb, NULL, &sh->bell);
out_page:
	seg_free(sb, NULL, &sh->page);
out_idx:
	idx_free(lg, sh->idx);
out_filter:
	free(sh->filter);
out_free:
	free(sh);
	return NULL;
}

/* Adds shm client cl to sh: its wake entry (READER_ADD to the publisher)
 * and SHARE_ATTACH with the log (RO) and the page (RW). */
static shm_memb *memb_add(shm_broker *sb, shm_share *sh, shm_client *cl)
{
	shm_log *lg = sh->log;
	shm_memb *m = calloc(1, sizeof(*m));
	if (!m)
		return NULL;
	int wake = wake_new(sb, sh, &cl->bell);
	if (wake < 0)
		goto out_free;
	m->cl = cl;
	m->wake = (uint32_t)wake;
	int fds[2];
	if (fd_pair(fds, shimmy_seg_open_ro(&lg->seg), dup_fd(sh->page.fd)) < 0)
		goto out_wake;
	shimmy_ctl a = { .type = SHIMMY_CTL_SHARE_ATTACH, .log_id = lg->id,
			 .idx = sh->idx, .gen = sh->gen, .topic = lg->topic,
			 .topic_len = lg->topic_len };
	if (ctl_send(sb, cl, &a, fds, 2) < 0)
		goto out_wake;
	m->next = sh->membs;
	sh->membs = m;
	sb->st.share_members++;
	return m;

out_wake:
	wake_free(sb, sh, m->wake);
out_free:
	free(m);
	return NULL;
}

/* Removes member m; reason != 0 also tells it (SHARE_DETACH). */
static void memb_free(shm_broker *sb, shm_share *sh, shm_memb *m,
		      uint32_t reason)
{
	if (reason) {
		shimmy_ctl d = { .type = SHIMMY_CTL_SHARE_DETACH,
				 .log_id = sh->log->id, .idx = sh->idx,
				 .arg = reason };
		ctl_send(sb, m->cl, &d, NULL, 0);
	}
	wake_free(sb, sh, m->wake);
	for (shm_memb **pp = &sh->membs; *pp; pp = &(*pp)->next)
		if (*pp == m) {
			*pp = m->next;
			break;
		}
	sb->st.share_members--;
	free(m);
}

/* Starts or stops the broker's claims from sh. */
static void share_set_claiming(shm_broker *sb, shm_share *sh, bool on)
{
	if (on && !sh->claiming) {
		int wake = wake_new(sb, sh, &sb->bell);
		if (wake < 0)
			return;
		sh->claim_wake = (uint32_t)wake;
		sh->claiming = true;
	} else if (!on && sh->claiming) {
		wake_free(sb, sh, sh->claim_wake);
		sh->claiming = false;
	}
}

/* Frees sh: members told with `reason` (0: not told), entries freed, the
 * writer told. Members' fds keep the page alive for them. */
static void share_free(shm_broker *sb, shm_share *sh, uint32_t reason)
{
	shm_log *lg = sh->log;
	size_t len;
	void *mem = seg_body_len(&lg->seg, &len);
	while (sh->membs)
		memb_free(sb, sh, sh->membs, reason);
	share_set_claiming(sb, sh, false);
	shimmy_ring_slot_set(mem, len, sh->idx, SHIMMY_RING_SLOT_FREE, 0);
	idx_free(lg, sh->idx);
	tell_drop(sb, lg, sh->idx);
	for (shm_share **pp = &lg->shares; *pp; pp = &(*pp)->next)
		if (*pp == sh) {
			*pp = sh->next;
			break;
		}
	shimmy_share_member_destroy(sh->h);
	seg_free(sb, NULL, &sh->page);
	seg_free(sb, NULL, &sh->bell);
	sb->st.shares--;
	free(sh->filter);
	free(sh);
}

/* Frees sh once it has neither members nor the broker's claims. */
static void share_put(shm_broker *sb, shm_share *sh)
{
	if (!sh->membs && !sh->claiming)
		share_free(sb, sh, 0);
}

typedef struct share_sync_arg {
	shm_broker *sb;
	shm_log *lg;
	shm_client *cl; /* NULL: groups only */
} share_sync_arg;

/* shm_share_fn of share_sync(): the group exists, and cl is a member. */
static void share_sync_cb(const char *filter, size_t flen, void *arg)
{
	share_sync_arg *a = arg;
	shm_share *sh = share_find(a->lg, filter, flen);
	if (!sh)
		sh = share_new(a->sb, a->lg, filter, flen);
	if (!sh)
		return;
	sh->seen = true;
	if (!a->cl)
		return;
	shm_memb *m = memb_find(sh, a->cl);
	if (!m)
		m = memb_add(a->sb, sh, a->cl);
	if (m)
		m->seen = true;
}

/*
 * Reconciles lg's share pages with the subscriptions: a page per matching
 * group, SHARE_ATTACH to new shm members and SHARE_DETACH to gone ones,
 * the broker's claims on while a group has members it serves itself, and
 * pages with nobody left freed. Control path: O(sessions + shm clients).
 */
static void share_sync(shm_broker *sb, shm_log *lg)
{
	if (!sb->env.shares || !lg->owner || lg->inbound)
		return;
	for (shm_share *sh = lg->shares; sh; sh = sh->next) {
		sh->seen = false;
		for (shm_memb *m = sh->membs; m; m = m->next)
			m->seen = false;
	}
	share_sync_arg a = { sb, lg, NULL };
	sb->env.shares(NULL, lg->topic, lg->topic_len, share_sync_cb, &a,
		       sb->env.ctx);
	for (shm_client *cl = sb->clients; cl; cl = cl->next) {
		a.cl = cl;
		sb->env.shares(cl->conn, lg->topic, lg->topic_len,
			       share_sync_cb, &a, sb->env.ctx);
	}
	shm_share *next;
	for (shm_share *sh = lg->shares; sh; sh = next) {
		next = sh->next;
		shm_memb *mnext;
		for (shm_memb *m = sh->membs; m; m = mnext) {
			mnext = m->next;
			if (!m->seen)
				memb_free(sb, sh, m,
					  SHIMMY_CTL_DETACH_UNSUBSCRIBED);
		}
		share_set_claiming(sb, sh,
				   sh->seen && sb->env.share_others &&
					   sb->env.share_others(
						   sh->filter, sh->filter_len,
						   lg->topic, lg->topic_len,
						   sb->env.ctx));
		share_put(sb, sh);
	}
}

/* lg's publisher is gone: members drain the page to -EPIPE on their own;
 * the broker keeps only pages it still claims from. */
static void share_log_closed(shm_broker *sb, shm_log *lg)
{
	shm_share *next;
	for (shm_share *sh = lg->shares; sh; sh = next) {
		next = sh->next;
		while (sh->membs)
			memb_free(sb, sh, sh->membs, 0);
		share_put(sb, sh);
	}
}

/* cl's connection is gone: it stops being a member anywhere. */
static void share_client_gone(shm_broker *sb, shm_client *cl)
{
	for (shm_log *lg = sb->logs; lg; lg = lg->next) {
		shm_share *next;
		for (shm_share *sh = lg->shares; sh; sh = next) {
			next = sh->next;
			shm_memb *m = memb_find(sh, cl);
			if (!m)
				continue;
			memb_free(sb, sh, m, 0);
			share_put(sb, sh);
		}
	}
}

static bool rx_fit(shm_broker *sb, size_t need)
{
	if (need <= sb->rx_cap)
		return true;
	uint8_t *p = realloc(sb->rx, need);
	if (!p)
		return false;
	sb->rx = p;
	sb->rx_cap = need;
	return true;
}

/* Claims up to a budget of records per page the broker claims from, for
 * the members it serves. Returns 1 if more remain. */
static int share_poll(shm_broker *sb, shm_log *lg)
{
	void *from = lg->owner ? lg->owner->conn : NULL;
	int more = 0;
	bool resync = false;
	shm_share *next;
	for (shm_share *sh = lg->shares; sh; sh = next) {
		next = sh->next;
		int n = 0;
		while (sh->claiming && n < SHM_POLL_BUDGET) {
			shimmy_ring_msg msg;
			int rc = shimmy_share_claim(sh->h, &msg, sb->rx,
						    sb->rx_cap);
			if (rc == MQTT_ERR_NOSPACE &&
			    rx_fit(sb, (size_t)msg.props_len + msg.payload_len))
				continue;
			if (rc == 1) {
				n++;
				sb->st.share_claimed++;
				/* No member left to serve (e.g. a session
				 * expired unannounced): decide again. */
				if (!sb->env.route_share(from, sh->filter,
							 sh->filter_len,
							 lg->topic,
							 lg->topic_len, &msg,
							 sb->env.ctx)) {
					resync = true;
					break;
				}
				continue;
			}
			if (rc == 0)
				break;
			/* -EPIPE (closed, drained), -ENOLINK (cut loose),
			 * garbage (a member may scribble on the page) or no
			 * memory: stop claiming from this page. */
			if (rc == MQTT_ERR_MALFORMED)
				sb->st.dropped_logs++;
			share_set_claiming(sb, sh, false);
			share_put(sb, sh);
			break;
		}
		if (n == SHM_POLL_BUDGET)
			more = 1;
	}
	if (resync)
		share_sync(sb, lg);
	return more;
}

/* True when a page the broker claims from has something for it. */
static bool share_ready(const shm_log *lg)
{
	for (const shm_share *sh = lg->shares; sh; sh = sh->next)
		if (sh->claiming && shimmy_share_ready(sh->h))
			return true;
	return false;
}

static uint64_t share_lost(const shm_broker *sb)
{
	uint64_t lost = 0;
	for (const shm_log *lg = sb->logs; lg; lg = lg->next)
		for (const shm_share *sh = lg->shares; sh; sh = sh->next)
			lost += shimmy_share_lost(sh->h);
	return lost;
}

/* ---- logs ----------------------------------------------------------------- */

static void log_unlink(shm_broker *sb, shm_log *lg)
{
	for (shm_log **pp = &sb->logs; *pp; pp = &(*pp)->next)
		if (*pp == lg) {
			*pp = lg->next;
			return;
		}
}

static void log_free(shm_broker *sb, shm_log *lg, shm_client *charged)
{
	if (lg->pred)
		lg->pred->succ = NULL;
	if (lg->succ)
		lg->succ->pred = NULL;
	while (lg->shares)
		share_free(sb, lg->shares, 0);
	while (lg->atts)
		att_free(sb, lg->atts);
	if (lg->w)
		shimmy_ring_writer_destroy(lg->w);
	seg_free(sb, charged, &lg->seg);
	free(lg->topic);
	free(lg);
}

static shm_log *log_new(shm_broker *sb, shm_client *owner, const char *topic,
			size_t topic_len, unsigned cls, uint32_t ring_flags,
			bool inbound)
{
	size_t cap = shimmy_seg_class_cap(cls);
	if (!cap)
		return NULL;
	shm_log *lg = calloc(1, sizeof(*lg));
	if (!lg)
		return NULL;
	lg->topic = name_dup(topic, topic_len);
	if (!lg->topic)
		goto out_free;
	lg->topic_len = (uint16_t)topic_len;
	lg->inbound = inbound;
	lg->reliable = (ring_flags & SHIMMY_RING_RELIABLE) != 0;
	lg->cap = cap;
	lg->owner = inbound ? NULL : owner;
	if (seg_new(sb, owner, &lg->seg, SHIMMY_SEG_LOG,
		    shimmy_ring_region_size(cap)) < 0)
		goto out_topic;
	lg->id = lg->seg.id;
	size_t len;
	void *mem = seg_body_len(&lg->seg, &len);
	shimmy_ring_params p = { .flags = ring_flags, .readers_max = SHM_READERS,
				 .log_id = lg->id };
	if (shimmy_ring_format(mem, len, &p) != 0)
		goto out_seg;
	if (inbound && shimmy_ring_writer_create(&lg->w, mem, len) != 0)
		goto out_seg;
	return lg;

out_seg:
	seg_free(sb, owner, &lg->seg);
out_topic:
	free(lg->topic);
out_free:
	free(lg);
	return NULL;
}

/* The log a growth request (LOG_CREATE with log_id) replaces: cl's own
 * open log on the same topic, of the same kind, not replaced yet, smaller
 * than class cls. NULL: the request is out of protocol. */
static shm_log *grow_pred(shm_broker *sb, shm_client *cl, const shimmy_ctl *m,
			  unsigned cls)
{
	for (shm_log *lg = sb->logs; lg; lg = lg->next) {
		if (lg->id != m->log_id)
			continue;
		bool rel = (m->flags & SHIMMY_CTL_F_RELIABLE) != 0;
		if (lg->owner != cl || lg->inbound || lg->succ ||
		    lg->reliable != rel || lg->topic_len != m->topic_len ||
		    memcmp(lg->topic, m->topic, m->topic_len) != 0 ||
		    cls >= SHIMMY_SEG_CLASSES ||
		    shimmy_seg_class_cap(cls) <= lg->cap)
			return NULL;
		return lg;
	}
	return NULL;
}

/* Publisher's LOG_CREATE: ACL write check, segment, grant, then the
 * readers that already subscribe. With log_id, the new log replaces that
 * one (growth, §2): its readers get LOG_REPLACE and drain it first. */
static int on_log_create(shm_broker *sb, shm_client *cl, const shimmy_ctl *m)
{
	shimmy_ctl g = { .type = SHIMMY_CTL_LOG_GRANT, .req_id = m->req_id,
			 .flags = m->flags & SHIMMY_CTL_F_RELIABLE,
			 .topic = m->topic, .topic_len = m->topic_len };
	mqtt_str t = { m->topic, m->topic_len };
	unsigned cls = m->arg == UINT32_MAX ? SHM_LOG_CLASS_DEFAULT : m->arg;
	if (mqtt_topic_validate_name(t) != 0 ||
	    shimmy_ctl_is_reserved(m->topic, m->topic_len) ||
	    cls >= SHIMMY_SEG_CLASSES) {
		g.status = 0x90; /* Topic Name invalid */
		return ctl_send(sb, cl, &g, NULL, 0);
	}
	if (!sb->env.may(cl->conn, m->topic, m->topic_len, true, sb->env.ctx)) {
		g.status = 0x87; /* Not authorized */
		return ctl_send(sb, cl, &g, NULL, 0);
	}
	shm_log *pred = NULL;
	if (m->log_id && !(pred = grow_pred(sb, cl, m, cls)))
		return MQTT_ERR_PROTOCOL;
	uint32_t rflags = (m->flags & SHIMMY_CTL_F_RELIABLE) ? SHIMMY_RING_RELIABLE
							   : 0;
	shm_log *lg = log_new(sb, cl, m->topic, m->topic_len, cls, rflags, false);
	if (!lg) {
		g.status = 0x97; /* Quota exceeded */
		return ctl_send(sb, cl, &g, NULL, 0);
	}
	int fd = dup_fd(lg->seg.fd);
	if (fd < 0) {
		log_free(sb, lg, cl);
		g.status = 0x80;
		return ctl_send(sb, cl, &g, NULL, 0);
	}
	g.log_id = lg->id;
	lg->next = sb->logs;
	sb->logs = lg;
	sb->st.logs++;
	if (pred) {
		lg->pred = pred;
		pred->succ = lg;
	}
	/* The log is new: readers start at its head, so they see everything
	 * the publisher writes, even before they map it. Their READER_ADDs
	 * (tagged with req_id) go out before LOG_GRANT, so the writer tracks
	 * them from its first record: a reliable writer never laps them. */
	lg->req_id = m->req_id;
	for (shm_client *o = sb->clients; o; o = o->next)
		if (sb->env.wants(o->conn, lg->topic, lg->topic_len, cl->conn,
				  sb->env.ctx) &&
		    sb->env.may(o->conn, lg->topic, lg->topic_len, false,
				sb->env.ctx))
			attach_client(sb, lg, o, SHIMMY_RING_FROM_HEAD);
	if (sb->env.others_want(lg->topic, lg->topic_len, sb->env.ctx) ||
	    (pred && pred->brd))
		attach_broker(sb, lg, SHIMMY_RING_FROM_HEAD);
	share_sync(sb, lg); /* a new log: pages start at its head too */
	lg->req_id = 0;
	/* On failure the core disconnects cl, and shm_client_close() closes
	 * the log like any of cl's. */
	return ctl_send(sb, cl, &g, &fd, 1);
}

/* Closes a publisher log: readers drain, then drop. Kept while the
 * broker's own reader drains it. */
static void log_close(shm_broker *sb, shm_log *lg)
{
	size_t len;
	void *mem = seg_body_len(&lg->seg, &len);
	shimmy_ring_mark_closed(mem, len);
	shm_client *owner = lg->owner;
	lg->owner = NULL;
	for (shm_att *a = lg->atts; a; a = a->next_in_log) {
		if (!a->cl || a->cl == owner)
			continue;
		shimmy_ctl m = { .type = SHIMMY_CTL_LOG_CLOSED, .log_id = lg->id };
		ctl_send(sb, a->cl, &m, NULL, 0);
	}
	/* Clients' attachments end here: their fds keep the memory alive for
	 * them; only the broker's reader (if any) stays. */
	shm_att *next;
	for (shm_att *a = lg->atts; a; a = next) {
		next = a->next_in_log;
		if (a->cl)
			att_free(sb, a);
	}
	share_log_closed(sb, lg);
	/* Charge moves from the gone publisher to nobody. */
	if (owner)
		owner->bytes -= owner->bytes < lg->seg.size ? owner->bytes
							  : lg->seg.size;
	if (!lg->brd && !lg->shares) {
		log_unlink(sb, lg);
		sb->st.logs--;
		log_free(sb, lg, NULL);
	}
}

static int on_log_release(shm_broker *sb, shm_client *cl, const shimmy_ctl *m)
{
	for (shm_log *lg = sb->logs; lg; lg = lg->next) {
		if (lg->id != m->log_id)
			continue;
		if (lg->owner == cl) {
			log_close(sb, lg);
			return 0;
		}
		shm_att *a = find_att(cl, lg);
		if (a && a->cut) {
			/* The cut-loose reader is awake again and let go:
			 * attach it anew, at the tail, if it still matches
			 * (the writer heard READER_DROP at the cut). */
			att_free(sb, a);
			shm_client_resubscribed(sb, cl);
		} else if (a) {
			uint32_t idx = a->idx;
			att_free(sb, a);
			tell_drop(sb, lg, idx);
		}
		return 0;
	}
	return 0; /* unknown or already gone: not an error (races) */
}

/* Cuts loose a client's reader that holds lg's writer back: its entry
 * becomes DETACHED (the writer stops waiting for it at its next rescan;
 * the reader reads -ENOLINK), the reader gets LOG_DETACH (stuck) and the
 * writer READER_DROP. The att, its idx and its slot stay until the
 * client's LOG_RELEASE or its connection ends. */
static void att_cut(shm_broker *sb, shm_att *a)
{
	shm_log *lg = a->log;
	size_t len;
	void *mem = seg_body_len(&lg->seg, &len);
	shimmy_ring_slot_set(mem, len, a->idx, SHIMMY_RING_SLOT_DETACHED,
			     a->gen);
	a->cut = true;
	sb->st.readers_cut++;
	shimmy_ctl m = { .type = SHIMMY_CTL_LOG_DETACH, .log_id = lg->id,
			 .idx = a->idx, .gen = a->gen,
			 .arg = SHIMMY_CTL_DETACH_STUCK };
	ctl_send(sb, a->cl, &m, NULL, 0);
	tell_drop(sb, lg, a->idx);
}

/*
 * The stuck-reader rule for a group (§7): the page of a reliable log whose
 * claim cursor is stuck (tether.h; every member stopped, none claiming) is
 * cut loose: its entry becomes FREE, the writer gets READER_DROP and stops
 * waiting for it, `readers cut` + 1. Members are not told: they go on
 * claiming from the same page as from a lossy log (lapped: resync), and
 * what they miss is counted as the group's loss. The first time the
 * cursor has moved since (a member claims again), the page is tethered
 * anew, as a cut reader is attached anew: cursor moved up to the tail, a
 * new gen, ATTACHED, READER_ADD. One cursor throughout, so no message is
 * claimed twice.
 */
static void share_tick(shm_broker *sb, shm_share *sh, uint64_t now_ms)
{
	shm_log *lg = sh->log;
	size_t len, plen;
	void *mem = seg_body_len(&lg->seg, &len);
	void *page = seg_body_len(&sh->page, &plen);
	uint64_t pos, tail;
	/* A member may scribble on the page: then it shows no position (the
	 * writer ignores it too) and only its own group suffers. */
	if (shimmy_tether_read(mem, len, page, plen, sh->gen, &pos, &tail) != 0)
		return;
	if (!sh->cut) {
		if (!shimmy_tether_check(&sh->tether, pos, tail, lg->cap, now_ms,
					 sb->lim.reader_timeout_ms))
			return;
		shimmy_ring_slot_set(mem, len, sh->idx, SHIMMY_RING_SLOT_FREE, 0);
		tell_drop(sb, lg, sh->idx);
		sh->cut = true;
		sh->cut_pos = pos;
		sb->st.readers_cut++;
		return;
	}
	if (pos == sh->cut_pos)
		return; /* still nobody claiming */
	uint64_t gen = lg->gen_next + 1;
	if (shimmy_tether_seed(mem, len, page, plen, gen,
			       SHIMMY_RING_FROM_TAIL) != 0)
		return;
	lg->gen_next = gen;
	sh->gen = gen;
	sh->cut_pos = pos;
	if (shimmy_ring_slot_set(mem, len, sh->idx, SHIMMY_RING_SLOT_ATTACHED,
				 gen) != 0)
		return;
	if (tell_track(sb, lg, sh->idx, gen, &sh->page, &sh->bell) < 0) {
		/* Stays cut; tried again once the cursor moves. */
		shimmy_ring_slot_set(mem, len, sh->idx, SHIMMY_RING_SLOT_FREE, 0);
		return;
	}
	sh->cut = false;
	sh->tether = (shimmy_tether){ 0 };
}

void shm_broker_tick(shm_broker *sb, uint64_t now_ms)
{
	for (shm_log *lg = sb->logs; lg; lg = lg->next) {
		if (!lg->reliable || !lg->owner)
			continue;
		size_t len;
		const void *mem = seg_body_len(&lg->seg, &len);
		for (shm_att *a = lg->atts; a; a = a->next_in_log) {
			if (!a->cl || a->cut)
				continue; /* the broker's own reader keeps up */
			size_t slen;
			const void *slot = seg_body_len(&a->slot, &slen);
			uint64_t pos, tail;
			if (shimmy_tether_read(mem, len, slot, slen, a->gen,
					       &pos, &tail) != 0)
				continue;
			if (shimmy_tether_check(&a->tether, pos, tail, lg->cap,
						now_ms,
						sb->lim.reader_timeout_ms))
				att_cut(sb, a);
		}
		for (shm_share *sh = lg->shares; sh; sh = sh->next)
			share_tick(sb, sh, now_ms);
	}
}

/* ---- broker's own reading --------------------------------------------- */

static void *bridge_main(void *arg)
{
	shm_broker *sb = arg;
	uint32_t seen = 0;
	while (!atomic_load_explicit(&sb->stop, memory_order_acquire))
		shimmy_bell_forward(sb->b, &seen, sb->efd,
				    (int64_t)SHIMMY_BELL_SLICE_MS * 1000000);
	return NULL;
}

static bool log_drained_closed(shm_broker *sb, shm_log *lg)
{
	(void)sb;
	return !lg->owner && !lg->brd && !lg->shares;
}

/* Routes up to a budget of records of lg. Returns 1 if more remain. */
static int log_poll(shm_broker *sb, shm_log *lg)
{
	shm_att *a = lg->brd;
	void *from = lg->owner ? lg->owner->conn : NULL;
	/* Growth: the records of the log this one replaces go first. */
	if (lg->pred && lg->pred->brd)
		return 0;
	for (int n = 0; n < SHM_POLL_BUDGET; n++) {
		shimmy_ring_msg msg;
		int rc = shimmy_ring_receive(a->rd, &msg, sb->rx, sb->rx_cap);
		if (rc == MQTT_ERR_NOSPACE) {
			if (!rx_fit(sb, (size_t)msg.props_len + msg.payload_len))
				return 0;
			continue;
		}
		if (rc == 1) {
			sb->st.routed++;
			sb->env.route(from, lg->topic, lg->topic_len, &msg,
				      sb->env.ctx);
			continue;
		}
		if (rc == 0)
			return 0;
		/* -EPIPE (closed, drained), -ENOLINK (cut loose) or
		 * MQTT_ERR_MALFORMED (garbage): stop reading this log. */
		if (rc == MQTT_ERR_MALFORMED)
			sb->st.dropped_logs++;
		uint32_t idx = a->idx;
		att_free(sb, a);
		tell_drop(sb, lg, idx);
		/* Its successor may hold records already: poll again. */
		return lg->succ != NULL;
	}
	return 1;
}

int shm_broker_poll(shm_broker *sb, uint64_t now_ms)
{
	(void)now_ms;
	uint64_t v;
	while (read(sb->efd, &v, sizeof(v)) == (ssize_t)sizeof(v))
		;
	int more = 0;
	shm_log *next;
	for (shm_log *lg = sb->logs; lg; lg = next) {
		next = lg->next;
		if (lg->brd)
			more |= log_poll(sb, lg);
		if (lg->shares)
			more |= share_poll(sb, lg);
		if (log_drained_closed(sb, lg)) {
			log_unlink(sb, lg);
			sb->st.logs--;
			log_free(sb, lg, NULL);
		}
	}
	return more;
}

int shm_broker_arm(shm_broker *sb)
{
	shimmy_bell_arm(sb->b);
	sb->armed = true;
	/* A closed log still being drained reads ready (-EPIPE at its end),
	 * so it is polled and freed without any writer ringing. */
	for (shm_log *lg = sb->logs; lg; lg = lg->next)
		if ((lg->brd && !(lg->pred && lg->pred->brd) &&
		     shimmy_ring_reader_ready(lg->brd->rd)) ||
		    share_ready(lg))
			return 1;
	return 0;
}

void shm_broker_disarm(shm_broker *sb)
{
	if (sb->armed)
		shimmy_bell_disarm(sb->b);
	sb->armed = false;
}

void shm_broker_interest(shm_broker *sb)
{
	for (shm_log *lg = sb->logs; lg; lg = lg->next) {
		if (!lg->owner)
			continue;
		bool want = sb->env.others_want(lg->topic, lg->topic_len,
						sb->env.ctx);
		if (want && !lg->brd) {
			attach_broker(sb, lg, SHIMMY_RING_FROM_TAIL);
		} else if (!want && lg->brd) {
			uint32_t idx = lg->brd->idx;
			att_free(sb, lg->brd);
			tell_drop(sb, lg, idx);
		}
		share_sync(sb, lg);
	}
}

/* ---- clients -------------------------------------------------------------- */

shm_client *shm_client_open(shm_broker *sb, void *conn)
{
	shm_client *cl = calloc(1, sizeof(*cl));
	if (!cl)
		return NULL;
	cl->sb = sb;
	cl->conn = conn;
	if (seg_new(sb, cl, &cl->bell, SHIMMY_SEG_BELL, SHIMMY_BELL_SIZE) < 0)
		goto out_free;
	/* Body first: argument evaluation order is unspecified. */
	size_t blen;
	void *bmem = seg_body_len(&cl->bell, &blen);
	if (!shimmy_bell_init(bmem, blen))
		goto out_bell;
	int bfd = dup_fd(cl->bell.fd);
	if (bfd < 0)
		goto out_bell;
	shimmy_ctl m = { .type = SHIMMY_CTL_BELL_SETUP, .log_id = cl->bell.id,
			 .arg = sb->lim.spin_us };
	if (ctl_send(sb, cl, &m, &bfd, 1) < 0)
		goto out_bell;

	cl->inbound = log_new(sb, cl, "", 0, SHM_INBOUND_CLASS, 0, true);
	if (cl->inbound) {
		shm_log *lg = cl->inbound;
		shm_att *a = att_new(sb, lg, cl, SHIMMY_RING_FROM_HEAD);
		int fds[2] = { -1, -1 };
		if (a) {
			/* att_new put it on cl->atts; inbound atts live on the
			 * log only. */
			cl->atts = a->next_in_cl;
			a->next_in_cl = NULL;
			fds[0] = shimmy_seg_open_ro(&lg->seg);
			fds[1] = dup_fd(a->slot.fd);
			size_t slen;
			void *smem = seg_body_len(&a->slot, &slen);
			shimmy_bell *bell = shimmy_bell_at(bmem, blen);
			shimmy_ring_writer_track(lg->w, a->idx, a->gen, smem,
						 slen, bell);
		}
		if (a && fds[0] >= 0 && fds[1] >= 0) {
			shimmy_ctl im = { .type = SHIMMY_CTL_LOG_ATTACH,
					  .log_id = lg->id, .idx = a->idx,
					  .gen = a->gen,
					  .flags = SHIMMY_CTL_F_INBOUND |
						   SHIMMY_CTL_F_FROM_HEAD };
			ctl_send(sb, cl, &im, fds, 2);
		} else {
			fds_close(fds, 2);
			log_free(sb, lg, cl);
			cl->inbound = NULL;
		}
	}
	cl->next = sb->clients;
	if (sb->clients)
		sb->clients->prev = cl;
	sb->clients = cl;
	sb->st.clients++;
	shm_client_resubscribed(sb, cl);
	return cl;

out_bell:
	seg_free(sb, cl, &cl->bell);
out_free:
	free(cl);
	return NULL;
}

void shm_client_close(shm_broker *sb, shm_client *cl)
{
	if (!cl)
		return;
	if (cl->prev)
		cl->prev->next = cl->next;
	else
		sb->clients = cl->next;
	if (cl->next)
		cl->next->prev = cl->prev;
	sb->st.clients--;
	/* Its attachments: entries FREE, writers told. */
	while (cl->atts) {
		shm_att *a = cl->atts;
		shm_log *lg = a->log;
		uint32_t idx = a->idx;
		att_free(sb, a);
		tell_drop(sb, lg, idx);
	}
	share_client_gone(sb, cl);
	/* Its logs: closed; readers drain them. */
	shm_log *next;
	for (shm_log *lg = sb->logs; lg; lg = next) {
		next = lg->next;
		if (lg->owner == cl)
			log_close(sb, lg);
	}
	if (cl->inbound) {
		shm_log *lg = cl->inbound;
		while (lg->atts) {
			shm_att *a = lg->atts;
			a->cl = NULL; /* only on the log's list */
			att_free(sb, a);
		}
		log_free(sb, lg, NULL);
	}
	seg_free(sb, NULL, &cl->bell);
	free(cl);
}

void shm_client_resubscribed(shm_broker *sb, shm_client *cl)
{
	for (shm_log *lg = sb->logs; lg; lg = lg->next) {
		if (!lg->owner)
			continue;
		shm_att *a = find_att(cl, lg);
		/* A replaced log gets no new readers: they start with its
		 * successor (whose LOG_ATTACH this loop sends too). */
		if (lg->succ && !a)
			continue;
		bool want = sb->env.wants(cl->conn, lg->topic, lg->topic_len,
					  lg->owner->conn, sb->env.ctx) &&
			    sb->env.may(cl->conn, lg->topic, lg->topic_len,
					false, sb->env.ctx);
		if (want && !a) {
			attach_client(sb, lg, cl, SHIMMY_RING_FROM_TAIL);
		} else if (!want && a) {
			uint32_t idx = a->idx;
			shimmy_ctl m = { .type = SHIMMY_CTL_LOG_DETACH,
					 .log_id = lg->id,
					 .arg = SHIMMY_CTL_DETACH_UNSUBSCRIBED };
			att_free(sb, a);
			ctl_send(sb, cl, &m, NULL, 0);
			tell_drop(sb, lg, idx);
		}
		share_sync(sb, lg);
	}
}

int shm_client_ctl(shm_broker *sb, shm_client *cl, const uint8_t *payload,
		   size_t len)
{
	shimmy_ctl m;
	int rc = shimmy_ctl_decode(payload, len, &m);
	if (rc < 0)
		return rc;
	switch (m.type) {
	case SHIMMY_CTL_LOG_CREATE:
		return on_log_create(sb, cl, &m);
	case SHIMMY_CTL_LOG_RELEASE:
		return on_log_release(sb, cl, &m);
	default:
		return MQTT_ERR_PROTOCOL; /* broker-to-client types */
	}
}

int shm_client_deliver(shm_broker *sb, shm_client *cl, const char *topic,
		       size_t topic_len, const uint8_t *props,
		       size_t props_len, const uint8_t *payload,
		       size_t payload_len, uint32_t flags)
{
	shm_log *lg = cl->inbound;
	if (!lg || topic_len > 65535)
		return MQTT_ERR_INVALID;
	uint64_t hlen = 2 + (uint64_t)topic_len + props_len;
	if (hlen > UINT32_MAX || payload_len > UINT32_MAX)
		return MQTT_ERR_TOO_LARGE;
	shimmy_ring_loan loan;
	int rc = shimmy_ring_reserve(lg->w, (uint32_t)hlen,
				     (uint32_t)payload_len, 0, &loan);
	if (rc != 0)
		return rc;
	loan.props[0] = (uint8_t)(topic_len >> 8);
	loan.props[1] = (uint8_t)topic_len;
	memcpy(loan.props + 2, topic, topic_len);
	if (props_len)
		memcpy(loan.props + 2 + topic_len, props, props_len);
	if (payload_len)
		memcpy(loan.payload, payload, payload_len);
	rc = shimmy_ring_commit(lg->w, &loan, flags & (SHIMMY_MSG_QOS_MASK |
						      SHIMMY_MSG_RETAIN), 0);
	if (rc == 0)
		sb->st.inbound++;
	return rc;
}

uint64_t shm_client_bytes(const shm_client *cl)
{
	return cl->bytes;
}

/* ---- lifetime ------------------------------------------------------------- */

shm_broker *shm_broker_create(const shm_env *env, const shm_limits *lim,
			      int *err)
{
	int rc = -ENOMEM;
	shm_broker *sb = calloc(1, sizeof(*sb));
	if (!sb)
		goto out;
	sb->env = *env;
	sb->lim = *lim;
	sb->efd = -1;
	rc = shimmy_seg_create(&sb->bell, SHIMMY_SEG_BELL, SHIMMY_BELL_SIZE, 0);
	if (rc < 0)
		goto out_free;
	size_t blen;
	void *bmem = shimmy_seg_body(&sb->bell, &blen);
	sb->b = shimmy_bell_init(bmem, blen);
	if (!sb->b) {
		rc = -EINVAL;
		goto out_bell;
	}
	sb->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (sb->efd < 0) {
		rc = -errno;
		goto out_bell;
	}
	atomic_init(&sb->stop, false);
	rc = -pthread_create(&sb->thread, NULL, bridge_main, sb);
	if (rc < 0)
		goto out_efd;
	sb->thread_started = true;
	return sb;

out_efd:
	close(sb->efd);
out_bell:
	shimmy_seg_unmap(&sb->bell);
out_free:
	free(sb);
out:
	if (err)
		*err = rc;
	return NULL;
}

void shm_broker_destroy(shm_broker *sb)
{
	if (!sb)
		return;
	if (sb->thread_started) {
		atomic_store_explicit(&sb->stop, true, memory_order_release);
		pthread_join(sb->thread, NULL);
	}
	while (sb->clients)
		shm_client_close(sb, sb->clients);
	while (sb->logs) {
		shm_log *lg = sb->logs;
		sb->logs = lg->next;
		log_free(sb, lg, NULL);
	}
	close(sb->efd);
	shimmy_seg_unmap(&sb->bell);
	free(sb->rx);
	free(sb->tx);
	free(sb);
}

void shm_broker_set_limits(shm_broker *sb, const shm_limits *lim)
{
	sb->lim = *lim;
}

int shm_broker_fd(const shm_broker *sb)
{
	return sb->efd;
}

void shm_broker_stats(const shm_broker *sb, shm_stats *out)
{
	*out = sb->st;
	uint64_t lost = sb->lost_gone;
	for (const shm_log *lg = sb->logs; lg; lg = lg->next)
		for (const shm_att *a = lg->atts; a; a = a->next_in_log)
			lost += att_lost(a);
	for (const shm_client *cl = sb->clients; cl; cl = cl->next) {
		if (!cl->inbound)
			continue;
		for (const shm_att *a = cl->inbound->atts; a; a = a->next_in_log)
			lost += att_lost(a);
	}
	out->lost = lost;
	out->share_lost = share_lost(sb);
}

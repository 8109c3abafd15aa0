/*
 * clients/shm.c — see shm.h.
 *
 * State: one doorbell (mapped RW, from BELL_SETUP), a list of readers
 * (subscriber logs and the inbound log, each with its own slot page) and a
 * list of writers (granted publisher logs, each with the slot pages and
 * bells of its readers, from READER_ADD). Readers are polled round robin.
 * Invariants: at most one borrow is outstanding (s->borrow_rd); a writer
 * has at most one open loan; an orphan reader belongs to a dead broker
 * connection and is dropped once empty.
 */
#include "clients/shm.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <linux/membarrier.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "clients/include/shimmy.h"
#include "clients/session.h"
#include "clients/shmshare.h"
#include "mqtt/error.h"
#include "shmpath/notify.h"
#include "shmpath/ring.h"
#include "shmpath/segment.h"

#define CSHM_TRACK SHIMMY_RING_READERS
/* Records one cshm_next() call may skip over (errors, empty logs). */
#define CSHM_NEXT_TRIES 4
#define CSHM_BATCH_MAX CSHM_NEXT_MANY_MAX

typedef struct cshm_rd {
	uint64_t log_id;
	char *topic;           /* binding; NULL for the inbound log */
	uint16_t topic_len;
	bool inbound;
	bool reliable;         /* LOG_ATTACH said RELIABLE: the writer never
				* laps this reader, so borrows are safe */
	bool orphan;           /* from a dead broker connection */
	uint64_t pred_id;      /* LOG_REPLACE: the log this one replaces;
				* not read while a reader of it is left */
	shimmy_seg log, slot;
	shimmy_ring_reader *r;
	session_qos_cache qos;  /* the cap of its topic's subscriptions */
	struct cshm_rd *next;
} cshm_rd;

typedef struct cshm_trk {
	bool used;
	uint64_t gen;          /* READER_ADD's */
	shimmy_seg slot, bell;
} cshm_trk;

struct cshm_wr {
	char *topic;
	uint16_t topic_len;
	int state;             /* CSHM_LOG_* */
	bool reliable;         /* asked for a RELIABLE (QoS 1/2) log */
	uint32_t req_id;
	uint64_t log_id;
	shimmy_seg log;
	shimmy_ring_writer *w;
	shimmy_ring_loan loan;
	bool loan_open;
	shimmy_ring_loan bulk[CSHM_PUB_MANY_MAX]; /* cshm_wr_loan_many() */
	unsigned bulk_n;       /* > 0: the open loan is bulk[0..bulk_n) */
	cshm_trk *trk;         /* [CSHM_TRACK], allocated at the first
				* READER_ADD (which may precede the grant)
				* or at the grant */
	/* Topic-bound publishers (shimmy_pub) use the ring without the
	 * client's lock, under lk alone. Everything that touches w, its
	 * tracking or its mappings while pins > 0 holds lk too (lock order:
	 * client lock, then lk). A pinned writer dropped with its connection
	 * becomes a zombie: dead, kept mapped until the last unpin. */
	atomic_flag lk;
	/* Lock-free fast path (when membarrier works, shimmy_bell_fenceless):
	 * the publisher stores in_op = 1, then loads gate; a mutator stores
	 * gate = 1, runs membarrier (a barrier on the publisher's CPU), waits
	 * for in_op == 0, then takes lk. Either the publisher sees the gate
	 * and takes lk, or the mutator sees in_op and waits it out. */
	_Atomic int in_op, gate;
	bool fast;
	unsigned pins;
	bool dead;
	/* Growth (§2): succ is the larger log asked for (pending, or
	 * granted and not switched to yet: an open loan or a pin delays the
	 * switch); pred marks such a successor, which wr_find() skips. */
	struct cshm_wr *pred, *succ;
	bool no_grow;          /* the broker refused to grow it */
	struct cshm_wr *next;
};

struct cshm {
	const session *subs;   /* borrowed; NULL: QoS as published */
	int efd;
	shimmy_seg bell;
	shimmy_bell *b;
	uint32_t spin_us;
	pthread_t th;
	bool th_running;
	atomic_bool th_stop;
	bool armed;

	cshm_rd *rds;
	cshm_rd *cursor;       /* next reader to poll */
	cshm_rd *borrow_rd;
	shimmy_ring_msg borrow;
	shimmy_ring_msg bulk[CSHM_BATCH_MAX]; /* cshm_next_many()'s loan */
	unsigned bulk_n;       /* > 0: the loan is bulk[0..bulk_n) */
	/* Messages of lossy logs are handed out from here: copied, then
	 * checked for overrun, so none is ever seen torn (rd_copy_out). */
	uint8_t *copy;
	size_t copy_cap;
	bool copy_out;         /* copy holds what was handed out */
	cshm_wr *wrs;
	cshm_wr *last_wr;      /* lookup cache */
	uint32_t next_req;
	uint64_t lost;         /* by readers since freed, and dropped here;
				* cshm_lost() adds the live readers' */
	uint64_t detached;     /* LOG_DETACH reason 2 (cut loose, stuck) */
	uint64_t *release;     /* logs owed a LOG_RELEASE (cuts, grown-out
				* logs), in order; malloc'ed */
	size_t n_release, cap_release;
	cshm_wr *zombies;      /* dropped while pinned */
	uint32_t batch;        /* position batching of new readers */
	cshare_set *shares;    /* $share groups claimed from (shmshare.h) */
	unsigned turn;         /* cshm_next(): groups or logs first */
};

static void wr_lock(cshm_wr *w)
{
	/* Acquire pairs with wr_unlock(): the holder's ring and tracking
	 * changes are visible to the next holder. Held for a few stores. */
	while (atomic_flag_test_and_set_explicit(&w->lk, memory_order_acquire)) {
#if defined(__x86_64__) || defined(__i386__)
		__builtin_ia32_pause();
#endif
	}
}

static void wr_unlock(cshm_wr *w)
{
	atomic_flag_clear_explicit(&w->lk, memory_order_release);
}

/* Mutator side (client lock held): excludes the pinned publisher. */
static void wr_exclude(cshm_wr *w)
{
	if (w->fast && w->pins) {
		atomic_store_explicit(&w->gate, 1, memory_order_relaxed);
		(void)syscall(SYS_membarrier, MEMBARRIER_CMD_GLOBAL_EXPEDITED, 0, 0);
		/* Acquire pairs with the release store of in_op = 0. */
		while (atomic_load_explicit(&w->in_op, memory_order_acquire)) {
#if defined(__x86_64__) || defined(__i386__)
			__builtin_ia32_pause();
#endif
		}
	}
	wr_lock(w);
}

static void wr_admit(cshm_wr *w)
{
	wr_unlock(w);
	atomic_store_explicit(&w->gate, 0, memory_order_release);
}

/* Publisher side: enters the writer without an atomic RMW when it can. */
static bool wr_enter(cshm_wr *w)
{
	if (w->fast) {
		atomic_store_explicit(&w->in_op, 1, memory_order_relaxed);
		/* Compiler barrier only: membarrier in wr_exclude() supplies
		 * the CPU barrier for this store -> load pair. */
		atomic_signal_fence(memory_order_seq_cst);
		if (!atomic_load_explicit(&w->gate, memory_order_acquire))
			return true;
		atomic_store_explicit(&w->in_op, 0, memory_order_release);
	}
	wr_lock(w);
	return false;
}

static void wr_leave(cshm_wr *w, bool fast)
{
	if (fast)
		atomic_store_explicit(&w->in_op, 0, memory_order_release);
	else
		wr_unlock(w);
}

/* ---- lifetime --------------------------------------------------------- */

cshm *cshm_create(const session *subs)
{
	cshm *s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->subs = subs;
	s->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	s->shares = cshare_set_create();
	if (s->efd < 0 || !s->shares) {
		if (s->efd >= 0)
			close(s->efd);
		cshare_set_destroy(s->shares);
		free(s);
		return NULL;
	}
	atomic_init(&s->th_stop, false);
	return s;
}

static void *bridge_main(void *arg)
{
	cshm *s = arg;
	uint32_t seen = 0;
	while (!atomic_load_explicit(&s->th_stop, memory_order_acquire))
		shimmy_bell_forward(s->b, &seen, s->efd,
				    (int64_t)SHIMMY_BELL_SLICE_MS * 1000000);
	return NULL;
}

static void bridge_stop(cshm *s)
{
	if (!s->th_running)
		return;
	atomic_store_explicit(&s->th_stop, true, memory_order_release);
	/* Move seq so the bridge's futex sleep ends now, not in a slice. */
	shimmy_bell_arm(s->b);
	shimmy_bell_notify(s->b, 0);
	shimmy_bell_disarm(s->b);
	pthread_join(s->th, NULL);
	s->th_running = false;
	atomic_store_explicit(&s->th_stop, false, memory_order_relaxed);
}

static void rd_free(cshm *s, cshm_rd *rd)
{
	for (cshm_rd **pp = &s->rds; *pp; pp = &(*pp)->next)
		if (*pp == rd) {
			*pp = rd->next;
			break;
		}
	if (s->cursor == rd)
		s->cursor = rd->next;
	if (s->borrow_rd == rd) {
		s->borrow_rd = NULL;
		s->bulk_n = 0;
	}
	s->lost += shimmy_ring_reader_lost(rd->r);
	shimmy_ring_reader_destroy(rd->r);
	shimmy_seg_unmap(&rd->slot);
	shimmy_seg_unmap(&rd->log);
	free(rd->topic);
	free(rd);
}

static void trk_drop(cshm_wr *w, uint32_t idx)
{
	if (!w->trk || idx >= CSHM_TRACK || !w->trk[idx].used)
		return;
	wr_exclude(w);
	if (w->w)
		shimmy_ring_writer_untrack(w->w, idx);
	wr_admit(w);
	shimmy_seg_unmap(&w->trk[idx].slot);
	shimmy_seg_unmap(&w->trk[idx].bell);
	w->trk[idx].used = false;
}

static void trk_free(cshm_wr *w)
{
	for (uint32_t i = 0; w->trk && i < CSHM_TRACK; i++)
		trk_drop(w, i);
	free(w->trk);
	w->trk = NULL;
}

static void wr_free(cshm *s, cshm_wr *w)
{
	for (cshm_wr **pp = &s->wrs; *pp; pp = &(*pp)->next)
		if (*pp == w) {
			*pp = w->next;
			break;
		}
	if (s->last_wr == w)
		s->last_wr = NULL;
	if (w->succ)
		w->succ->pred = NULL;
	if (w->pred)
		w->pred->succ = NULL;
	w->succ = w->pred = NULL;
	if (w->pins) {
		/* A shimmy_pub may be inside the ring right now: stop it at
		 * its next call, keep the mappings until it lets go. */
		wr_exclude(w);
		w->dead = true;
		wr_admit(w);
		w->next = s->zombies;
		s->zombies = w;
		return;
	}
	if (w->loan_open && w->w)
		shimmy_ring_abort(w->w, &w->loan);
	for (uint32_t i = 0; w->trk && i < CSHM_TRACK; i++)
		trk_drop(w, i);
	shimmy_ring_writer_destroy(w->w);
	shimmy_seg_unmap(&w->log);
	free(w->trk);
	free(w->topic);
	free(w);
}

void cshm_conn_lost(cshm *s)
{
	if (!s)
		return;
	bridge_stop(s);
	if (s->armed)
		cshm_disarm(s);
	while (s->wrs)
		wr_free(s, s->wrs);
	for (cshm_rd *rd = s->rds; rd; rd = rd->next)
		rd->orphan = true;
	cshare_conn_lost(s->shares);
	shimmy_seg_unmap(&s->bell);
	s->b = NULL;
}

void cshm_destroy(cshm *s)
{
	if (!s)
		return;
	cshm_conn_lost(s);
	while (s->zombies) { /* shimmy_pub handles left open: gone too */
		cshm_wr *z = s->zombies;
		s->zombies = z->next;
		z->pins = 0;
		z->next = s->wrs;
		s->wrs = z;
		wr_free(s, z);
	}
	while (s->rds)
		rd_free(s, s->rds);
	cshare_set_destroy(s->shares);
	close(s->efd);
	free(s->copy);
	free(s->release);
	free(s);
}

int cshm_efd(const cshm *s)
{
	return s->efd;
}

int cshm_ready_session(const cshm *s)
{
	return s && s->b != NULL;
}

uint64_t cshm_lost(const cshm *s)
{
	if (!s)
		return 0;
	/* The rings count exactly (gaps and overwritten borrows alike). */
	uint64_t n = s->lost;
	for (const cshm_rd *rd = s->rds; rd; rd = rd->next)
		n += shimmy_ring_reader_lost(rd->r);
	return n;
}

uint64_t cshm_detached(const cshm *s)
{
	return s ? s->detached : 0;
}

static void release_owe(cshm *s, uint64_t log_id)
{
	if (s->n_release == s->cap_release) {
		size_t cap = s->cap_release ? 2 * s->cap_release : 8;
		uint64_t *r = realloc(s->release, cap * sizeof(*r));
		if (!r)
			return; /* the broker frees that log when we disconnect */
		s->release = r;
		s->cap_release = cap;
	}
	s->release[s->n_release++] = log_id;
}

int cshm_pending_ctl(cshm *s, uint8_t *buf, size_t cap)
{
	if (!s || !s->n_release)
		return 0;
	shimmy_ctl m = { .type = SHIMMY_CTL_LOG_RELEASE, .log_id = s->release[0] };
	int n = shimmy_ctl_encode(&m, buf, cap);
	if (n < 0 || (size_t)n > cap)
		return SHIMMY_ERR_NOMEM;
	s->n_release--;
	memmove(s->release, s->release + 1, s->n_release * sizeof(s->release[0]));
	return n;
}

uint32_t cshm_spin_us(const cshm *s)
{
	return s ? s->spin_us : 0;
}

unsigned cshm_readers(const cshm *s)
{
	unsigned n = 0;
	for (const cshm_rd *rd = s ? s->rds : NULL; rd; rd = rd->next)
		n += !rd->inbound && !rd->orphan;
	return n + (s ? cshare_count(s->shares) : 0);
}

uint64_t cshm_share_lost(const cshm *s)
{
	return s ? cshare_lost(s->shares) : 0;
}

/* ---- control messages ------------------------------------------------- */

static void close_fds(int *fds, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		if (fds[i] >= 0)
			close(fds[i]);
}

static cshm_wr *wr_by_id(cshm *s, uint64_t id)
{
	for (cshm_wr *w = s->wrs; w; w = w->next)
		if (w->state == CSHM_LOG_READY && w->log_id == id)
			return w;
	return NULL;
}

static cshm_rd *rd_by_id(cshm *s, uint64_t id)
{
	for (cshm_rd *rd = s->rds; rd; rd = rd->next)
		if (!rd->orphan && rd->log_id == id)
			return rd;
	return NULL;
}

static int on_bell(cshm *s, const shimmy_ctl *m, int *fds)
{
	if (s->b) {
		close_fds(fds, 1);
		return MQTT_ERR_PROTOCOL; /* one per session */
	}
	int rc = shimmy_seg_map(&s->bell, fds[0], SHIMMY_SEG_BELL,
				SHIMMY_SEG_RDWR);
	if (rc < 0) {
		close_fds(fds, 1);
		return rc;
	}
	size_t len;
	void *mem = shimmy_seg_body(&s->bell, &len); /* before len is read */
	s->b = shimmy_bell_at(mem, len);
	if (!s->b) {
		shimmy_seg_unmap(&s->bell);
		return MQTT_ERR_MALFORMED;
	}
	s->spin_us = m->arg > 1000000 ? 1000000 : m->arg;
	atomic_store_explicit(&s->th_stop, false, memory_order_relaxed);
	if (pthread_create(&s->th, NULL, bridge_main, s) == 0)
		s->th_running = true;
	return 0;
}

static int on_attach(cshm *s, const shimmy_ctl *m, int *fds)
{
	cshm_rd *rd = calloc(1, sizeof(*rd));
	int rc = -ENOMEM;
	if (!rd)
		goto out_fds;
	rd->inbound = m->flags & SHIMMY_CTL_F_INBOUND;
	rd->reliable = !rd->inbound && (m->flags & SHIMMY_CTL_F_RELIABLE);
	rd->log_id = m->log_id;
	/* LOG_REPLACE of a log we read: drain that one first. A log we do
	 * not read (any more) makes it a plain attach. */
	if (m->type == SHIMMY_CTL_LOG_REPLACE && !rd->inbound) {
		uint64_t old = shimmy_ctl_replaced(m);
		if (old != m->log_id && rd_by_id(s, old))
			rd->pred_id = old;
	}
	if (!rd->inbound) {
		rd->topic = malloc((size_t)m->topic_len + 1);
		if (!rd->topic)
			goto out_free;
		memcpy(rd->topic, m->topic, m->topic_len);
		rd->topic[m->topic_len] = '\0';
		rd->topic_len = m->topic_len;
	}
	rc = shimmy_seg_map(&rd->log, fds[0], SHIMMY_SEG_LOG, SHIMMY_SEG_RDONLY);
	if (rc < 0)
		goto out_free;
	fds[0] = -1;
	rc = shimmy_seg_map(&rd->slot, fds[1], SHIMMY_SEG_SLOT, SHIMMY_SEG_RDWR);
	if (rc < 0)
		goto out_log;
	fds[1] = -1;
	size_t ll, sl;
	void *lm = shimmy_seg_body(&rd->log, &ll);
	void *sm = shimmy_seg_body(&rd->slot, &sl);
	rc = shimmy_ring_reader_create(&rd->r, lm, ll, sm, sl, m->idx, m->gen,
				       (m->flags & SHIMMY_CTL_F_FROM_HEAD)
					       ? SHIMMY_RING_FROM_HEAD
					       : SHIMMY_RING_FROM_TAIL);
	if (rc != 0)
		goto out_slot;
	if (s->batch > 1)
		shimmy_ring_reader_set_batch(rd->r, s->batch);
	rd->next = s->rds;
	s->rds = rd;
	return 0;

out_slot:
	shimmy_seg_unmap(&rd->slot);
out_log:
	shimmy_seg_unmap(&rd->log);
out_free:
	free(rd->topic);
	free(rd);
out_fds:
	close_fds(fds, 2);
	return rc;
}

static int on_grant(cshm *s, const shimmy_ctl *m, int *fds)
{
	cshm_wr *w = NULL;
	for (cshm_wr *x = s->wrs; x; x = x->next)
		if (x->state == CSHM_LOG_PENDING && x->req_id == m->req_id)
			w = x;
	if (!w) {
		close_fds(fds, m->nfds);
		return 0; /* stale answer (reconnect in between) */
	}
	if (m->status != 0) {
		trk_free(w);
		w->state = CSHM_LOG_REFUSED;
		return 0;
	}
	int rc = shimmy_seg_map(&w->log, fds[0], SHIMMY_SEG_LOG, SHIMMY_SEG_RDWR);
	if (rc < 0) {
		close_fds(fds, 1);
		trk_free(w);
		w->state = CSHM_LOG_REFUSED;
		return 0;
	}
	size_t len;
	void *mem = shimmy_seg_body(&w->log, &len);
	if (!w->trk)
		w->trk = calloc(CSHM_TRACK, sizeof(*w->trk));
	if (!w->trk || shimmy_ring_writer_create(&w->w, mem, len) != 0) {
		trk_free(w);
		shimmy_seg_unmap(&w->log);
		w->state = CSHM_LOG_REFUSED;
		return 0;
	}
	/* Readers announced before the grant: tracked from the first
	 * record on (a reliable writer must not lap them). */
	for (uint32_t i = 0; i < CSHM_TRACK; i++) {
		cshm_trk *t = &w->trk[i];
		if (!t->used)
			continue;
		size_t sl, bl;
		void *sm = shimmy_seg_body(&t->slot, &sl);
		void *bm = shimmy_seg_body(&t->bell, &bl);
		shimmy_ring_writer_track(w->w, i, t->gen, sm, sl,
					 shimmy_bell_at(bm, bl));
	}
	w->log_id = m->log_id;
	w->state = CSHM_LOG_READY;
	return 0;
}

static int on_reader_add(cshm *s, const shimmy_ctl *m, int *fds)
{
	cshm_wr *w = wr_by_id(s, m->log_id);
	/* A reader of a log not granted yet (its READER_ADD comes before
	 * LOG_GRANT, tagged with the request): kept for the grant. */
	for (cshm_wr *x = s->wrs; !w && m->req_id && x; x = x->next)
		if (x->state == CSHM_LOG_PENDING && x->req_id == m->req_id)
			w = x;
	if (!w) {
		close_fds(fds, 2);
		return 0; /* a log we gave up meanwhile */
	}
	/* From here on a failure is an error (the connection starts over):
	 * a reliable writer waits for every reader the broker attached
	 * until it tracks it (§6), so a reader it cannot track would stall
	 * it for good. */
	if (!w->trk)
		w->trk = calloc(CSHM_TRACK, sizeof(*w->trk));
	if (!w->trk || m->idx >= CSHM_TRACK) {
		close_fds(fds, 2);
		return w->trk ? MQTT_ERR_PROTOCOL : -ENOMEM;
	}
	trk_drop(w, m->idx);
	cshm_trk *t = &w->trk[m->idx];
	/* A share page (§7) starts with a reader slot: tracked the same. */
	int rc = shimmy_seg_map(&t->slot, fds[0], SHIMMY_SEG_SLOT,
				SHIMMY_SEG_RDONLY);
	if (rc < 0)
		rc = shimmy_seg_map(&t->slot, fds[0], SHIMMY_SEG_SHARE,
				    SHIMMY_SEG_RDONLY);
	if (rc < 0) {
		close_fds(fds, 2);
		return rc;
	}
	rc = shimmy_seg_map(&t->bell, fds[1], SHIMMY_SEG_BELL, SHIMMY_SEG_RDWR);
	if (rc < 0) {
		close(fds[1]);
		shimmy_seg_unmap(&t->slot);
		return rc;
	}
	size_t sl, bl;
	void *sm = shimmy_seg_body(&t->slot, &sl);
	void *bm = shimmy_seg_body(&t->bell, &bl);
	shimmy_bell *bell = shimmy_bell_at(bm, bl);
	t->used = true;
	t->gen = m->gen;
	if (w->w) {
		wr_exclude(w);
		shimmy_ring_writer_track(w->w, m->idx, m->gen, sm, sl, bell);
		wr_admit(w);
	}
	return 0;
}

int cshm_on_ctl(cshm *s, const uint8_t *payload, size_t len, shimmy_fdq *q)
{
	shimmy_ctl m;
	int fds[SHIMMY_CTL_MAX_FDS] = { -1, -1, -1, -1 };
	int rc = shimmy_ctl_decode(payload, len, &m);
	if (rc < 0)
		return rc;
	if (m.nfds > SHIMMY_CTL_MAX_FDS || shimmy_fdq_pop(q, fds, m.nfds) < 0)
		return MQTT_ERR_PROTOCOL; /* the fds it announces never came */
	switch (m.type) {
	case SHIMMY_CTL_BELL_SETUP:
		return on_bell(s, &m, fds);
	case SHIMMY_CTL_LOG_ATTACH:
	case SHIMMY_CTL_LOG_REPLACE:
		return on_attach(s, &m, fds);
	case SHIMMY_CTL_LOG_GRANT:
		return on_grant(s, &m, fds);
	case SHIMMY_CTL_READER_ADD:
		return on_reader_add(s, &m, fds);
	case SHIMMY_CTL_READER_DROP: {
		cshm_wr *w = wr_by_id(s, m.log_id);
		if (w)
			trk_drop(w, m.idx);
		return 0;
	}
	case SHIMMY_CTL_LOG_DETACH: {
		cshm_rd *rd = rd_by_id(s, m.log_id);
		if (m.arg == SHIMMY_CTL_DETACH_STUCK) {
			/* Cut loose: we were stuck. Whatever we now read of
			 * that log is what survived; the LOG_RELEASE we owe
			 * gets us attached again, at its tail. */
			s->detached++;
			release_owe(s, m.log_id);
		}
		if (rd && rd != s->borrow_rd)
			rd_free(s, rd);
		else if (rd)
			rd->orphan = true; /* dropped after the borrow */
		return 0;
	}
	case SHIMMY_CTL_LOG_CLOSED:
		/* The ring says CLOSED too; the reader drains to -EPIPE. */
		return 0;
	case SHIMMY_CTL_SHARE_ATTACH:
		return cshare_attach(s->shares, &m, fds);
	case SHIMMY_CTL_SHARE_DETACH:
		cshare_detach(s->shares, m.log_id, m.idx);
		return 0;
	default:
		close_fds(fds, m.nfds);
		return MQTT_ERR_PROTOCOL;
	}
}

/* ---- publishing ------------------------------------------------------- */

/*
 * Growth, once the broker answered: switches from w to its granted
 * successor (marks w CLOSED after its last record, owes the broker its
 * LOG_RELEASE, frees it), or forgets a refused one. Returns the writer
 * for the topic. Not while a loan is open in w or w is pinned: the
 * switch waits for a later call.
 */
static cshm_wr *wr_settle(cshm *s, cshm_wr *w)
{
	cshm_wr *n = w->succ;
	if (!n || n->state == CSHM_LOG_PENDING)
		return w;
	if (n->state != CSHM_LOG_READY) {
		w->no_grow = true;
		wr_free(s, n);
		return w;
	}
	if (w->loan_open || w->pins)
		return w;
	if (w->state == CSHM_LOG_READY) {
		shimmy_ring_writer_close(w->w);
		release_owe(s, w->log_id);
	}
	wr_free(s, w);
	return n;
}

static cshm_wr *wr_find(cshm *s, const char *topic, size_t len)
{
	cshm_wr *w = s->last_wr;
	if (!w || w->topic_len != len || memcmp(w->topic, topic, len) != 0) {
		for (w = s->wrs; w; w = w->next)
			if (!w->pred && w->topic_len == len &&
			    memcmp(w->topic, topic, len) == 0)
				break;
		if (!w)
			return NULL;
	}
	w = wr_settle(s, w);
	s->last_wr = w;
	return w;
}

/* A writer for topic (len <= 65535), not linked in; NULL without memory. */
static cshm_wr *wr_new(const char *topic, size_t len)
{
	cshm_wr *w = calloc(1, sizeof(*w));
	if (!w || !(w->topic = malloc(len + 1))) {
		free(w);
		return NULL;
	}
	memcpy(w->topic, topic, len);
	w->topic[len] = '\0';
	w->topic_len = (uint16_t)len;
	return w;
}

int cshm_log_state(cshm *s, const char *topic, size_t len)
{
	cshm_wr *w = s && s->b ? wr_find(s, topic, len) : NULL;
	return w ? w->state : CSHM_LOG_NONE;
}

int cshm_log_request(cshm *s, const char *topic, size_t len, uint32_t cls,
		     unsigned flags, uint8_t *buf, size_t cap)
{
	if (!s->b || len > 65535)
		return SHIMMY_ERR_STATE;
	cshm_wr *w = wr_find(s, topic, len);
	if (!w) {
		if (!(w = wr_new(topic, len)))
			return SHIMMY_ERR_NOMEM;
		w->next = s->wrs;
		s->wrs = w;
	}
	w->state = CSHM_LOG_PENDING;
	w->req_id = ++s->next_req;
	w->reliable = (flags & SHIMMY_CTL_F_RELIABLE) != 0;
	shimmy_ctl m = { .type = SHIMMY_CTL_LOG_CREATE, .req_id = w->req_id,
			 .flags = flags & SHIMMY_CTL_F_RELIABLE,
			 .arg = cls, .topic = topic, .topic_len = (uint16_t)len };
	int n = shimmy_ctl_encode(&m, buf, cap);
	if (n > (int)cap)
		return SHIMMY_ERR_NOMEM;
	return n;
}

int cshm_log_grow(cshm *s, const char *topic, size_t len, size_t props_len,
		  size_t payload_len, uint8_t *buf, size_t cap)
{
	cshm_wr *w = s && s->b ? wr_find(s, topic, len) : NULL;
	if (!w || w->state != CSHM_LOG_READY || w->succ || w->no_grow ||
	    w->pins || props_len > UINT32_MAX || payload_len > UINT32_MAX)
		return 0;
	uint64_t rec = shimmy_ring_record_len((uint32_t)props_len,
					      (uint32_t)payload_len);
	size_t body;
	shimmy_seg_body(&w->log, &body);
	size_t now_cap = body > SHIMMY_RING_HDR_SIZE ? body - SHIMMY_RING_HDR_SIZE : 0;
	uint32_t cls = 0;
	while (cls < SHIMMY_SEG_CLASSES && shimmy_seg_class_cap(cls) / 4 < rec)
		cls++;
	if (cls == SHIMMY_SEG_CLASSES || shimmy_seg_class_cap(cls) <= now_cap)
		return 0; /* no class holds it (MQTT carries it), or it fits */
	cshm_wr *n = wr_new(topic, len);
	if (!n)
		return SHIMMY_ERR_NOMEM;
	n->state = CSHM_LOG_PENDING;
	n->req_id = ++s->next_req;
	n->reliable = w->reliable;
	shimmy_ctl m = { .type = SHIMMY_CTL_LOG_CREATE, .req_id = n->req_id,
			 .flags = w->reliable ? SHIMMY_CTL_F_RELIABLE : 0,
			 .log_id = w->log_id, .arg = cls, .topic = topic,
			 .topic_len = (uint16_t)len };
	int k = shimmy_ctl_encode(&m, buf, cap);
	if (k < 0 || (size_t)k > cap) {
		free(n->topic);
		free(n);
		return SHIMMY_ERR_NOMEM;
	}
	n->pred = w;
	w->succ = n;
	n->next = s->wrs;
	s->wrs = n;
	return k;
}

int cshm_log_growing(cshm *s, const char *topic, size_t len)
{
	cshm_wr *w = s && s->b ? wr_find(s, topic, len) : NULL;
	return w && w->succ && w->succ->state == CSHM_LOG_PENDING;
}

int cshm_log_reliable(cshm *s, const char *topic, size_t len)
{
	cshm_wr *w = s && s->b ? wr_find(s, topic, len) : NULL;
	return w && w->state == CSHM_LOG_READY && w->reliable;
}

int cshm_publish(cshm *s, const char *topic, size_t tlen, const uint8_t *props,
		 size_t props_len, const void *payload, size_t len)
{
	return cshm_publish_qos(s, topic, tlen, props, props_len, payload, len,
				0, 0);
}

int cshm_publish_qos(cshm *s, const char *topic, size_t tlen,
		     const uint8_t *props, size_t props_len,
		     const void *payload, size_t len, int qos,
		     int64_t timeout_ns)
{
	cshm_wr *w = s && s->b ? wr_find(s, topic, tlen) : NULL;
	if (!w || w->state != CSHM_LOG_READY || (qos > 0 && !w->reliable))
		return -ENOENT;
	if (w->pins || w->loan_open)
		return SHIMMY_ERR_BUSY; /* a shimmy_pub owns the ring */
	if (qos < 0 || qos > 2)
		return SHIMMY_ERR_INVALID;
	if (props_len > UINT32_MAX || len > UINT32_MAX)
		return MQTT_ERR_TOO_LARGE;
	return shimmy_ring_publish(w->w, props, (uint32_t)props_len, payload,
				   (uint32_t)len, (uint32_t)qos, timeout_ns, 0);
}

int cshm_loan(cshm *s, const char *topic, size_t tlen, size_t len, void **buf)
{
	return cshm_loan_wait(s, topic, tlen, len, 0, buf);
}

int cshm_loan_wait(cshm *s, const char *topic, size_t tlen, size_t len,
		   int64_t timeout_ns, void **buf)
{
	cshm_wr *w = s && s->b ? wr_find(s, topic, tlen) : NULL;
	if (!w || w->state != CSHM_LOG_READY)
		return -ENOENT;
	if (w->pins || w->loan_open)
		return SHIMMY_ERR_BUSY; /* a shimmy_pub owns the ring */
	if (len > UINT32_MAX)
		return MQTT_ERR_TOO_LARGE;
	int rc = shimmy_ring_reserve(w->w, 0, (uint32_t)len, timeout_ns,
				     &w->loan);
	if (rc != 0)
		return rc;
	w->loan_open = true;
	*buf = w->loan.payload;
	return 0;
}

cshm_wr *cshm_wr_pin(cshm *s, const char *topic, size_t tlen)
{
	cshm_wr *w = s && s->b ? wr_find(s, topic, tlen) : NULL;
	if (!w || w->state != CSHM_LOG_READY || w->loan_open)
		return NULL;
	w->pins++;
	w->fast = shimmy_bell_fenceless();
	return w;
}

void cshm_wr_unpin(cshm *s, cshm_wr *w)
{
	if (!w || --w->pins)
		return;
	for (cshm_wr **pp = &s->zombies; *pp; pp = &(*pp)->next)
		if (*pp == w) {
			*pp = w->next;
			w->next = s->wrs; /* wr_free unlinks it from wrs */
			s->wrs = w;
			wr_free(s, w);
			return;
		}
}

int cshm_wr_loan(cshm_wr *w, size_t len, void **buf)
{
	int rc;

	if (len > UINT32_MAX)
		return MQTT_ERR_TOO_LARGE;
	bool fast = wr_enter(w);
	if (w->dead)
		rc = SHIMMY_ERR_CONN_LOST;
	else if (w->loan_open)
		rc = SHIMMY_ERR_BUSY;
	else if ((rc = shimmy_ring_reserve(w->w, 0, (uint32_t)len, 0,
					   &w->loan)) == 0) {
		w->loan_open = true;
		*buf = w->loan.payload;
	}
	wr_leave(w, fast);
	return rc;
}

int cshm_wr_loan_many(cshm_wr *w, size_t len, void **bufs, unsigned n)
{
	int rc;

	if (len > UINT32_MAX)
		return MQTT_ERR_TOO_LARGE;
	if (n == 0)
		return SHIMMY_ERR_INVALID;
	if (n > CSHM_PUB_MANY_MAX)
		n = CSHM_PUB_MANY_MAX;
	bool fast = wr_enter(w);
	if (w->dead)
		rc = SHIMMY_ERR_CONN_LOST;
	else if (w->loan_open)
		rc = SHIMMY_ERR_BUSY;
	else if ((rc = shimmy_ring_reserve_many(w->w, 0, (uint32_t)len, n, 0,
						w->bulk)) > 0) {
		w->loan_open = true;
		w->bulk_n = (unsigned)rc;
		w->loan = w->bulk[0]; /* what aborts and lookups go by */
		for (int i = 0; i < rc; i++)
			bufs[i] = w->bulk[i].payload;
	}
	wr_leave(w, fast);
	return rc;
}

int cshm_wr_commit_many(cshm_wr *w, void **bufs, unsigned n)
{
	int rc;

	if (n == 1 && !w->bulk_n) /* a single loan (cshm_wr_loan) */
		return cshm_wr_commit(w, bufs[0]);
	bool fast = wr_enter(w);
	if (w->dead)
		rc = SHIMMY_ERR_CONN_LOST;
	else if (!w->loan_open || !w->bulk_n || n != w->bulk_n ||
		 bufs[0] != w->bulk[0].payload)
		rc = -ENOENT;
	else {
		w->loan_open = false;
		w->bulk_n = 0;
		rc = shimmy_ring_commit_many(w->w, w->bulk, n, 0, 0);
	}
	wr_leave(w, fast);
	return rc;
}

int cshm_wr_commit(cshm_wr *w, void *buf)
{
	int rc;

	bool fast = wr_enter(w);
	if (w->dead)
		rc = SHIMMY_ERR_CONN_LOST; /* the log went with the connection */
	else if (!w->loan_open || w->bulk_n || w->loan.payload != buf)
		rc = -ENOENT;
	else {
		w->loan_open = false;
		rc = shimmy_ring_commit(w->w, &w->loan, 0, 0);
	}
	wr_leave(w, fast);
	return rc;
}

static cshm_wr *wr_of_loan(const cshm *s, const void *buf)
{
	for (cshm_wr *w = s ? s->wrs : NULL; w; w = w->next)
		if (!w->pins && w->loan_open && w->loan.payload == buf)
			return w;
	return NULL;
}

int cshm_is_loan(const cshm *s, const void *buf)
{
	return wr_of_loan(s, buf) != NULL;
}

void cshm_loan_info(const cshm *s, const void *buf, const char **topic,
		    size_t *tlen, size_t *len)
{
	cshm_wr *w = wr_of_loan(s, buf);
	*topic = w ? w->topic : "";
	*tlen = w ? w->topic_len : 0;
	*len = w ? w->loan.payload_len : 0;
}

int cshm_commit(cshm *s, void *buf)
{
	return cshm_commit_qos(s, buf, 0);
}

int cshm_commit_qos(cshm *s, void *buf, int qos)
{
	cshm_wr *w = wr_of_loan(s, buf);
	if (!w || (qos > 0 && !w->reliable) || qos < 0 || qos > 2)
		return -ENOENT;
	w->loan_open = false;
	return shimmy_ring_commit(w->w, &w->loan, (uint32_t)qos, 0);
}

int cshm_loan_reliable(const cshm *s, const void *buf)
{
	cshm_wr *w = wr_of_loan(s, buf);
	return w && w->reliable;
}

void cshm_abort(cshm *s, void *buf)
{
	cshm_wr *w = wr_of_loan(s, buf);
	if (!w)
		return;
	w->loan_open = false;
	shimmy_ring_abort(w->w, &w->loan);
}

/* ---- receiving -------------------------------------------------------- */

/* Inbound records: props = | u16 BE topic_len | topic | properties |. The
 * broker writes them, but bounds are checked all the same. */
static int split_inbound(const shimmy_ring_msg *rm, cshm_msg *m)
{
	if (rm->props_len < 2)
		return -1;
	size_t tl = (size_t)rm->props[0] << 8 | rm->props[1];
	if (tl == 0 || tl > rm->props_len - 2)
		return -1;
	m->topic = (const char *)rm->props + 2;
	m->topic_len = tl;
	m->props = rm->props + 2 + tl;
	m->props_len = rm->props_len - 2 - tl;
	return 0;
}

/* Fills m[0..n) from the bulk loan of rd (a log bound to rd's topic). */
static void bulk_fill(cshm *s, cshm_rd *rd, cshm_msg *m, unsigned n)
{
	/* One topic: one subscription cap for the whole batch. */
	int cap = session_deliver_qos(s->subs, &rd->qos, rd->topic,
				      rd->topic_len, 0, 2);
	for (unsigned j = 0; j < n; j++) {
		const shimmy_ring_msg *b = &s->bulk[j];
		int qos = (int)(b->flags & SHIMMY_MSG_QOS_MASK);
		m[j] = (cshm_msg){
			.topic = rd->topic,
			.topic_len = rd->topic_len,
			.payload = b->payload,
			.len = b->payload_len,
			.props = b->props,
			.props_len = b->props_len,
			.qos = qos < cap ? qos : cap,
			.retain = (b->flags & SHIMMY_MSG_RETAIN) != 0,
		};
	}
	s->bulk_n = n;
	s->borrow_rd = rd;
}

static const uint8_t *msg_start(const shimmy_ring_msg *v)
{
	return v->props < v->payload ? v->props : v->payload;
}

static const uint8_t *msg_end(const shimmy_ring_msg *v)
{
	return v->payload + v->payload_len;
}

/*
 * A lossy log (QoS 0, or the inbound log) may lap a reader at any moment,
 * also while the application reads a borrowed message. So its messages
 * are handed out as a copy: rd's borrowed messages (s->borrow when n is
 * 0, else s->bulk[0..n)) are copied, then released, which tells which of
 * them were overwritten meanwhile (a prefix, counted lost by the ring).
 * Consecutive records are contiguous except across the end of the
 * ring, so the copy takes one memcpy per run. The survivors are rebased
 * onto the copy and moved to the front. Returns how many survive, 0 when
 * none does.
 */
static unsigned rd_copy_out(cshm *s, cshm_rd *rd, unsigned n)
{
	shimmy_ring_msg *v = n ? s->bulk : &s->borrow;
	unsigned k = n ? n : 1;
	size_t len = 0;
	for (unsigned j = 0, r = 0; j < k; j++)
		if (j + 1 == k || msg_start(&v[j + 1]) < msg_end(&v[j])) {
			len += (size_t)(msg_end(&v[j]) - msg_start(&v[r]));
			r = j + 1;
		}
	if (len > s->copy_cap) {
		uint8_t *p = realloc(s->copy, len);
		if (!p) {
			/* Out of memory: the messages are dropped, as lost
			 * (the ring counts those overwritten meanwhile). */
			int st = n ? shimmy_ring_release_many(rd->r, v, k)
				   : (shimmy_ring_release(rd->r, v) == -ESTALE);
			s->lost += k - (unsigned)(st > 0 ? st : 0);
			return 0;
		}
		s->copy = p;
		s->copy_cap = len;
	}
	/* Views move by the offset of their run: saved per message in
	 * props/payload once the run is copied. */
	uint8_t *to = s->copy;
	for (unsigned j = 0, r = 0; j < k; j++) {
		if (j + 1 < k && msg_start(&v[j + 1]) >= msg_end(&v[j]))
			continue;
		const uint8_t *from = msg_start(&v[r]);
		size_t run = (size_t)(msg_end(&v[j]) - from);
		memcpy(to, from, run);
		for (; r <= j; r++) {
			v[r].props = to + (v[r].props - from);
			v[r].payload = to + (v[r].payload - from);
		}
		to += run;
	}
	/* Release checks positions only, never the views. */
	int stale = n ? shimmy_ring_release_many(rd->r, v, k)
		      : (shimmy_ring_release(rd->r, v) == -ESTALE ? 1 : 0);
	if (stale < 0)
		stale = (int)k; /* cannot happen: our own borrow */
	unsigned left = k - (unsigned)stale;
	if (stale)
		memmove(v, v + stale, left * sizeof(*v));
	return left;
}

/* A reader of a grown log waits while a reader of the log it replaces is
 * left (orphans too): that one's records come first (§2). */
static bool rd_blocked(const cshm *s, const cshm_rd *rd)
{
	if (!rd->pred_id)
		return false;
	for (const cshm_rd *o = s->rds; o; o = o->next)
		if (o != rd && o->log_id == rd->pred_id)
			return true;
	return false;
}

/* The next message of the logs read (see cshm_next), or, when max > 1,
 * up to max consecutive messages of one non-inbound log (cshm_next_many). */
static int rd_next(cshm *s, cshm_msg *m, unsigned max)
{
	if (!s || !s->rds)
		return 0;
	if (s->borrow_rd || s->copy_out)
		return SHIMMY_ERR_BUSY;
	unsigned n = 0;
	for (cshm_rd *rd = s->rds; rd; rd = rd->next)
		n++;
	/* Each reader at most once per call, starting after the last one. */
	cshm_rd *rd = s->cursor ? s->cursor : s->rds;
	for (unsigned i = 0; i < n + CSHM_NEXT_TRIES && rd; i++) {
		cshm_rd *next = rd->next ? rd->next : s->rds;
		int rc;
		if (rd_blocked(s, rd)) {
			rd = next;
			continue;
		}
		if (max > 1 && !rd->inbound) {
			rc = shimmy_ring_borrow_many(rd->r, s->bulk, max);
			if (rc > 0 && !rd->reliable) {
				rc = (int)rd_copy_out(s, rd, (unsigned)rc);
				if (rc == 0)
					continue; /* all overwritten: try again */
			}
			if (rc > 0) {
				bulk_fill(s, rd, m, (unsigned)rc);
				s->cursor = next;
				if (!rd->reliable) {
					s->bulk_n = 0;
					s->borrow_rd = NULL;
					s->copy_out = true;
				}
				return rc;
			}
		} else if ((rc = shimmy_ring_borrow(rd->r, &s->borrow)) == 1) {
			memset(m, 0, sizeof(*m));
			if (!rd->reliable && rd_copy_out(s, rd, 0) == 0)
				continue; /* overwritten while copied: lost */
			if (rd->inbound) {
				if (split_inbound(&s->borrow, m) < 0)
					continue; /* not the broker's format:
						   * skip it (copied, released) */
			} else {
				m->topic = rd->topic;
				m->topic_len = rd->topic_len;
				m->props = s->borrow.props;
				m->props_len = s->borrow.props_len;
			}
			m->payload = s->borrow.payload;
			m->len = s->borrow.payload_len;
			m->qos = (int)(s->borrow.flags & SHIMMY_MSG_QOS_MASK);
			/* Inbound records are at the QoS the broker chose. */
			if (!rd->inbound)
				m->qos = session_deliver_qos(s->subs, &rd->qos,
							     rd->topic,
							     rd->topic_len, 0,
							     m->qos);
			m->retain = (s->borrow.flags & SHIMMY_MSG_RETAIN) != 0;
			if (rd->reliable)
				s->borrow_rd = rd;
			else
				s->copy_out = true; /* released already */
			s->cursor = next;
			return 1;
		}
		if (rc == 0 && !rd->orphan) {
			rd = next;
			continue;
		}
		/* Empty orphan, closed and drained (-EPIPE), detached
		 * (-ENOLINK) or garbage (MQTT_ERR_MALFORMED): drop it. */
		if (next == rd)
			next = NULL;
		rd_free(s, rd);
		rd = next ? next : s->rds;
		if (!s->rds)
			break;
	}
	return 0;
}

int cshm_next(cshm *s, cshm_msg *m)
{
	if (s && cshare_busy(s->shares))
		return SHIMMY_ERR_BUSY;
	if (!s || cshare_empty(s->shares))
		return rd_next(s, m, 1);
	/* Groups and logs take turns going first: neither starves. */
	int rc = (s->turn++ & 1) ? cshare_next(s->shares, m, s->subs)
				 : rd_next(s, m, 1);
	if (rc == 0)
		rc = (s->turn & 1) ? cshare_next(s->shares, m, s->subs)
				   : rd_next(s, m, 1);
	return rc;
}

int cshm_next_many(cshm *s, cshm_msg *m, unsigned max)
{
	if (max > CSHM_BATCH_MAX)
		max = CSHM_BATCH_MAX;
	/* $share groups hand out one claimed copy at a time, taking turns
	 * with the logs: keep to cshm_next() while there are any. */
	if (!s || max <= 1 || !cshare_empty(s->shares))
		return cshm_next(s, m);
	return rd_next(s, m, max);
}

int cshm_release(cshm *s)
{
	if (s && cshare_busy(s->shares)) {
		cshare_release(s->shares); /* claimed: nothing to give back */
		return 0;
	}
	if (s)
		s->copy_out = false; /* checked before it was handed out */
	cshm_rd *rd = s ? s->borrow_rd : NULL;
	if (!rd)
		return 0;
	s->borrow_rd = NULL;
	if (s->bulk_n) {
		int stale = shimmy_ring_release_many(rd->r, s->bulk, s->bulk_n);
		s->bulk_n = 0;
		return stale > 0 ? -ESTALE : stale;
	}
	return shimmy_ring_release(rd->r, &s->borrow);
}

void cshm_set_batch(cshm *s, uint32_t n)
{
	if (!s)
		return;
	s->batch = n;
	for (cshm_rd *rd = s->rds; rd; rd = rd->next)
		shimmy_ring_reader_set_batch(rd->r, n);
}

uint64_t cshm_bound(cshm *s, unsigned flags)
{
	uint64_t behind = 0;

	for (cshm_rd *rd = s->rds; rd; rd = rd->next)
		behind += shimmy_ring_reader_bound(rd->r, flags);
	return behind;
}

static int ready_fn(void *ctx)
{
	cshm *s = ctx;
	for (cshm_rd *rd = s->rds; rd; rd = rd->next)
		if (!rd_blocked(s, rd) && shimmy_ring_reader_ready(rd->r))
			return 1;
	return cshare_ready(s->shares);
}

int cshm_has_data(cshm *s)
{
	return s && ready_fn(s);
}

int cshm_wait(cshm *s, int64_t spin_ns, int64_t timeout_ns)
{
	if (!s->b)
		return ready_fn(s);
	int rc = shimmy_bell_wait(s->b, ready_fn, spin_ns, timeout_ns, s);
	return rc > 0;
}

int cshm_arm(cshm *s)
{
	if (!s || !s->b)
		return s ? ready_fn(s) : 0;
	if (!s->armed) {
		shimmy_bell_arm(s->b);
		s->armed = true;
	}
	return ready_fn(s);
}

void cshm_disarm(cshm *s)
{
	if (!s || !s->armed)
		return;
	if (s->b)
		shimmy_bell_disarm(s->b);
	s->armed = false;
}

void cshm_kick(cshm *s)
{
	uint64_t one = 1;
	if (s && write(s->efd, &one, sizeof(one)) < 0) { /* counter full: readable */ }
}

void cshm_clear(cshm *s)
{
	uint64_t v;
	if (s && read(s->efd, &v, sizeof(v)) < 0) { /* already clear */ }
}

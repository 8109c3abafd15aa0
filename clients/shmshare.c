/*
 * clients/shmshare.c — see shmshare.h.
 *
 * Invariants: at most one entry's message is out (ss->out); an entry on
 * the list owns its mappings, its claim handle and its buffer; an orphan
 * belongs to a dead broker connection and is dropped once empty.
 */
#include "clients/shmshare.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clients/include/shimmy.h"
#include "clients/session.h"
#include "clients/shm.h"
#include "mqtt/error.h"
#include "shmpath/segment.h"
#include "shmpath/share.h"

/* First size of an entry's claim buffer; grown to what a record needs
 * (bounded by the log's validated max_record). */
#define CSHARE_BUF_MIN 256u

typedef struct cshare {
	uint64_t log_id;
	uint32_t idx;            /* the page's table entry */
	char *topic;             /* the log's binding */
	uint16_t topic_len;
	bool orphan;             /* from a dead broker connection */
	bool detached;           /* SHARE_DETACH while its message was out */
	shimmy_seg log, page;
	shimmy_share_member *h;
	session_qos_cache qos;   /* the cap of the group's subscriptions */
	uint8_t *buf;
	size_t cap;
	struct cshare *next;
} cshare;

struct cshare_set {
	cshare *head;
	cshare *cursor;          /* next entry to claim from */
	cshare *out;             /* entry whose message is out */
	uint64_t lost_gone;      /* group losses of entries dropped */
};

cshare_set *cshare_set_create(void)
{
	return calloc(1, sizeof(cshare_set));
}

static void entry_free(cshare_set *ss, cshare *e)
{
	for (cshare **pp = &ss->head; *pp; pp = &(*pp)->next)
		if (*pp == e) {
			*pp = e->next;
			break;
		}
	if (ss->cursor == e)
		ss->cursor = e->next;
	if (ss->out == e)
		ss->out = NULL;
	if (e->h) {
		ss->lost_gone += shimmy_share_lost(e->h);
		shimmy_share_member_destroy(e->h);
	}
	shimmy_seg_unmap(&e->page);
	shimmy_seg_unmap(&e->log);
	free(e->buf);
	free(e->topic);
	free(e);
}

void cshare_set_destroy(cshare_set *ss)
{
	if (!ss)
		return;
	while (ss->head)
		entry_free(ss, ss->head);
	free(ss);
}

int cshare_attach(cshare_set *ss, const shimmy_ctl *m, int *fds)
{
	int rc = -ENOMEM;
	cshare *e = calloc(1, sizeof(*e));
	if (!e)
		goto out_fds;
	e->log_id = m->log_id;
	e->idx = m->idx;
	e->topic = malloc((size_t)m->topic_len + 1);
	e->buf = malloc(CSHARE_BUF_MIN);
	if (!e->topic || !e->buf)
		goto out_free;
	memcpy(e->topic, m->topic, m->topic_len);
	e->topic[m->topic_len] = '\0';
	e->topic_len = m->topic_len;
	e->cap = CSHARE_BUF_MIN;
	rc = shimmy_seg_map(&e->log, fds[0], SHIMMY_SEG_LOG, SHIMMY_SEG_RDONLY);
	if (rc < 0)
		goto out_free;
	fds[0] = -1;
	rc = shimmy_seg_map(&e->page, fds[1], SHIMMY_SEG_SHARE, SHIMMY_SEG_RDWR);
	if (rc < 0)
		goto out_log;
	fds[1] = -1;
	size_t ll, pl;
	void *lm = shimmy_seg_body(&e->log, &ll);
	void *pm = shimmy_seg_body(&e->page, &pl);
	rc = shimmy_share_member_create(&e->h, lm, ll, pm, pl, m->idx);
	if (rc != 0)
		goto out_page;
	e->next = ss->head;
	ss->head = e;
	return 0;

out_page:
	shimmy_seg_unmap(&e->page);
out_log:
	shimmy_seg_unmap(&e->log);
out_free:
	free(e->buf);
	free(e->topic);
	free(e);
out_fds:
	for (int i = 0; i < 2; i++)
		if (fds[i] >= 0)
			close(fds[i]);
	return rc;
}

void cshare_detach(cshare_set *ss, uint64_t log_id, uint32_t idx)
{
	for (cshare *e = ss->head; e; e = e->next) {
		if (e->orphan || e->log_id != log_id || e->idx != idx)
			continue;
		if (e == ss->out)
			e->detached = true;
		else
			entry_free(ss, e);
		return;
	}
}

void cshare_conn_lost(cshare_set *ss)
{
	for (cshare *e = ss ? ss->head : NULL; e; e = e->next)
		e->orphan = true;
}

/* Grows e's buffer to need bytes. Returns 0 or -ENOMEM. */
static int buf_fit(cshare *e, size_t need)
{
	if (need <= e->cap)
		return 0;
	uint8_t *p = realloc(e->buf, need);
	if (!p)
		return -ENOMEM;
	e->buf = p;
	e->cap = need;
	return 0;
}

static void fill(cshare *e, const shimmy_ring_msg *rm, cshm_msg *m,
		 const session *subs)
{
	memset(m, 0, sizeof(*m));
	m->topic = e->topic;
	m->topic_len = e->topic_len;
	m->props = rm->props;
	m->props_len = rm->props_len;
	m->payload = rm->payload;
	m->len = rm->payload_len;
	m->qos = session_deliver_qos(subs, &e->qos, e->topic, e->topic_len,
				     SESSION_SUB_SHARED,
				     (int)(rm->flags & SHIMMY_MSG_QOS_MASK));
	m->retain = (rm->flags & SHIMMY_MSG_RETAIN) != 0;
}

int cshare_next(cshare_set *ss, struct cshm_msg *m, const session *subs)
{
	if (!ss || !ss->head)
		return 0;
	if (ss->out)
		return SHIMMY_ERR_BUSY;
	unsigned n = 0;
	for (cshare *e = ss->head; e; e = e->next)
		n++;
	/* Each entry at most once per call, starting after the last one. */
	cshare *e = ss->cursor ? ss->cursor : ss->head;
	for (unsigned i = 0; i < n && e; i++) {
		cshare *next = e->next ? e->next : ss->head;
		shimmy_ring_msg rm;
		int rc = shimmy_share_claim(e->h, &rm, e->buf, e->cap);
		if (rc == MQTT_ERR_NOSPACE) {
			/* Nothing claimed; lengths come from a validated
			 * record (<= the log's max_record). */
			if (buf_fit(e, (size_t)rm.props_len + rm.payload_len)) {
				e = next;
				continue;
			}
			rc = shimmy_share_claim(e->h, &rm, e->buf, e->cap);
			if (rc == MQTT_ERR_NOSPACE)
				rc = 0; /* a larger one came up: next call */
		}
		if (rc == 1) {
			fill(e, &rm, m, subs);
			ss->out = e;
			ss->cursor = next;
			return 1;
		}
		if (rc == 0 && !e->orphan) {
			e = next;
			continue;
		}
		/* Empty orphan, closed and drained (-EPIPE), detached
		 * (-ENOLINK) or garbage (MQTT_ERR_MALFORMED): drop it. */
		if (next == e)
			next = NULL;
		entry_free(ss, e);
		e = next ? next : ss->head;
	}
	return 0;
}

void cshare_release(cshare_set *ss)
{
	cshare *e = ss ? ss->out : NULL;
	if (!e)
		return;
	ss->out = NULL;
	if (e->detached)
		entry_free(ss, e);
}

int cshare_busy(const cshare_set *ss)
{
	return ss && ss->out != NULL;
}

int cshare_ready(const cshare_set *ss)
{
	for (const cshare *e = ss ? ss->head : NULL; e; e = e->next)
		if (shimmy_share_ready(e->h))
			return 1;
	return 0;
}

int cshare_empty(const cshare_set *ss)
{
	return !ss || !ss->head;
}

unsigned cshare_count(const cshare_set *ss)
{
	unsigned n = 0;
	for (const cshare *e = ss ? ss->head : NULL; e; e = e->next)
		n += !e->orphan;
	return n;
}

uint64_t cshare_lost(const cshare_set *ss)
{
	if (!ss)
		return 0;
	uint64_t n = ss->lost_gone;
	for (const cshare *e = ss->head; e; e = e->next)
		n += shimmy_share_lost(e->h);
	return n;
}

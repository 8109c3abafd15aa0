/*
 * clients/client.c — libshimmy's public client API (include/shimmy.h).
 *
 * Glues the sans-IO session (session.h) to a socket (conn.h), a clock and
 * a lock. Owns: the socket, the input buffer, the queue of received
 * messages waiting for shimmy_recv(), the optional library thread, and the
 * two fds behind shimmy_client_fd() (an epoll set holding the socket and an
 * eventfd that is readable while messages are queued).
 *
 * Thread model: every entry point takes c->mu. One thread at a time
 * "pumps" (reads the socket, drives the session, runs callbacks): the
 * library thread when started, else whoever calls a blocking function or
 * shimmy_client_process(); the others wait on c->cv. The pumping thread
 * drops the lock while it sleeps in poll() and while a callback runs, so
 * callbacks and other threads can publish meanwhile. Only the pumping
 * thread touches the input buffer.
 *
 * The shm path (clients/shm.h): conn_read() queues SCM_RIGHTS fds in
 * c->fdq; PUBLISHes on $shimmy/ctl are control messages for c->shm, never
 * delivered. QoS 0, non-retained publishes go into the topic's log once the
 * broker granted one (asked for on the first publish, synchronously);
 * everything else stays MQTT. Receiving drains the subscriber logs as well
 * as the socket: callbacks and pull mode see borrowed views into the ring,
 * released after the callback / by shimmy_msg_release(). The doorbell's
 * bridge eventfd sits in c->epfd and in pump_once()'s poll set; the bell is
 * armed while the pumping thread or the caller's loop sleeps.
 */
#include "clients/include/shimmy.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "clients/conn.h"
#include "clients/opts.h"
#include "clients/props.h"
#include "mqtt/error.h"
#include "clients/session.h"
#include "clients/shm.h"
#include "clients/uri.h"
#include "shmpath/holdoff.h"
#include "shmpath/ring.h"

#define IN_MIN (64 * 1024)
#define IN_MAX ((size_t)MQTT_PACKET_MAX + 64 * 1024 * 1024)
#define OUT_HIGH_WATER (8u << 20)   /* publish waits while more is unsent */
#define READS_PER_PUMP 64
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000

struct shimmy_msg {
	char *topic;            /* c->tbuf, NUL-terminated */
	size_t topic_len;
	const uint8_t *payload;
	size_t len;
	int qos, retain;
	shimmy_props props;     /* view */
};

typedef struct pending_msg {
	size_t off, len;        /* a whole PUBLISH packet in c->in */
} pending_msg;

typedef struct op_wait {
	uint16_t pid;
	bool done;
	uint8_t reason;
	int err;
} op_wait;

struct shimmy_client {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	uri u;
	shimmy_opts o;
	session s;
	char *client_id;        /* generated or from opts */

	int fd;                 /* socket, -1 when none */
	int epfd;               /* shimmy_client_fd() */
	int evfd;               /* readable while msgs are queued */
	int wakefd;             /* wakes the library thread */
	bool ev_set;
	bool ep_out;            /* socket registered for EPOLLOUT too */

	bool want_conn;         /* between connect() and disconnect() */
	bool shm_active;
	int last_reason;
	int conn_err;           /* why the connection went (0: up) */
	uint64_t connect_ms;    /* when CONNECT went out */
	uint64_t reconnect_at;  /* 0: none scheduled */
	int backoff_ms;
	bool ever_connected;
	int conn_event;         /* pending on_connection status, 1: none */

	uint8_t *in;
	size_t in_cap, in_rd, in_wr;
	pending_msg *pq;
	size_t pq_head, pq_n, pq_cap;
	bool borrowed;
	shimmy_msg msg;
	char *tbuf;
	size_t tcap;

	shimmy_on_message on_msg;
	void *on_msg_ctx;
	shimmy_on_connection on_conn;
	void *on_conn_ctx;

	pthread_t th;
	bool th_running, th_stop;
	bool pumping;

	op_wait waits[SESSION_OPS_MAX];
	uint64_t stats[SHIMMY_STAT__COUNT];

	/* Shared-memory path (NULL unless offered). */
	cshm *shm;
	shimmy_fdq fdq;          /* fds received, not yet claimed */
	bool shm_borrowed;       /* c->msg views a ring (pull mode) */
	int64_t spin_env_us;     /* SHIMMY_SHM_SPIN_US, -1 when unset */
	bool in_cb;              /* a callback runs on cb_thread */
	pthread_t cb_thread;
	uint8_t *pbuf;           /* property scratch: decoded views point here */
	size_t pcap;
	mqtt_props shm_props;
	unsigned batch_idle;     /* empty shimmy_recv_batch(0) calls */
	shimmy_holdoff holdoff;  /* blocking receives in a stream (holdoff.h) */
	int64_t hold_until_ns;   /* don't look at the logs before this */
	bool msg_props_empty;    /* c->msg.props is already the empty view */
};

/* Messages a callback-mode pump takes from shm logs per round. */
#define SHM_DELIVER_BUDGET 1024

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static int64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

const char *shimmy_strerror(int err)
{
	switch (err) {
	case SHIMMY_OK: return "success";
	case SHIMMY_ERR_INVALID: return "invalid argument";
	case SHIMMY_ERR_NOMEM: return "out of memory";
	case SHIMMY_ERR_URI: return "bad broker URI or unknown host";
	case SHIMMY_ERR_UNSUPPORTED: return "not supported (yet)";
	case SHIMMY_ERR_TIMEOUT: return "timed out";
	case SHIMMY_ERR_AGAIN: return "nothing available now";
	case SHIMMY_ERR_NOT_CONNECTED: return "not connected";
	case SHIMMY_ERR_CONN_LOST: return "connection lost";
	case SHIMMY_ERR_REFUSED: return "connection refused by the broker";
	case SHIMMY_ERR_PROTOCOL: return "protocol error by the broker";
	case SHIMMY_ERR_NO_SHM: return "shared-memory extension not negotiated";
	case SHIMMY_ERR_BUSY: return "busy: a message or loan is still outstanding";
	case SHIMMY_ERR_STATE: return "not allowed in this mode or state";
	case SHIMMY_ERR_TOO_LARGE: return "packet larger than the broker accepts";
	case SHIMMY_ERR_SUBSCRIBE: return "subscription refused by the broker";
	default:
		if (err < 0 && err >= -4095)
			return strerror(-err);
		return "unknown error";
	}
}

/* ------------------------------------------------------------ wakeups */

/*
 * Keeps c->evfd readable while messages wait. Setting is eager; clearing
 * (may_clear) happens only in pump_once(): a pull loop that borrows and
 * releases message after message would otherwise pay a read() and a
 * write() on the eventfd per message. A stale readable fd costs one
 * spurious wake-up (process/try_recv then find nothing), never a lost one.
 */
static void ev_sync(shimmy_client *c, bool may_clear)
{
	bool want = (c->pq_n > 0 || (c->shm && !c->on_msg && cshm_has_data(c->shm))) &&
		    !c->borrowed;
	uint64_t v = 1;

	if (want == c->ev_set || (!want && !may_clear))
		return;
	if (want) {
		if (write(c->evfd, &v, sizeof(v)) < 0) { /* cannot overflow at 1 */ }
	} else {
		if (read(c->evfd, &v, sizeof(v)) < 0) { /* already clear */ }
	}
	c->ev_set = want;
}

static void ep_update_out(shimmy_client *c)
{
	bool want = c->fd >= 0 && outq_pending(&c->s.out) > 0;
	struct epoll_event e = { .events = EPOLLIN | (want ? EPOLLOUT : 0), .data.fd = c->fd };

	if (c->fd < 0 || want == c->ep_out)
		return;
	if (epoll_ctl(c->epfd, EPOLL_CTL_MOD, c->fd, &e) == 0)
		c->ep_out = want;
}

static void wake_thread(shimmy_client *c)
{
	uint64_t v = 1;

	if (c->th_running && write(c->wakefd, &v, sizeof(v)) < 0) { /* counter full: already awake */ }
}

/* ------------------------------------------------------------ connection */

static void close_socket(shimmy_client *c)
{
	if (c->fd >= 0) {
		epoll_ctl(c->epfd, EPOLL_CTL_DEL, c->fd, NULL);
		close(c->fd);
		c->fd = -1;
		c->ep_out = false;
	}
	/* Unread input belongs to the dead connection, except messages
	 * already queued for recv(), which stay deliverable. */
	c->in_wr = c->in_rd;
	shimmy_fdq_fini(&c->fdq);
}

static void fail_waits(shimmy_client *c, int err)
{
	for (int i = 0; i < SESSION_OPS_MAX; i++) {
		if (c->waits[i].pid && !c->waits[i].done) {
			c->waits[i].done = true;
			c->waits[i].err = err;
		}
	}
}

/* The connection is gone (err says why). Schedules a reconnect if asked. */
static void conn_lost(shimmy_client *c, int err)
{
	bool was_up = c->s.state == SESS_CONNECTED;

	close_socket(c);
	session_lost(&c->s);
	c->shm_active = false;
	cshm_conn_lost(c->shm); /* mappings kept for draining */
	c->conn_err = err ? err : SHIMMY_ERR_CONN_LOST;
	fail_waits(c, c->conn_err);
	if (was_up)
		c->conn_event = c->conn_err;
	if (c->want_conn && (c->o.flags & SHIMMY_OPT_RECONNECT)) {
		c->reconnect_at = now_ms() + (uint64_t)c->backoff_ms;
		c->backoff_ms = c->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : c->backoff_ms * 2;
	}
	pthread_cond_broadcast(&c->cv);
}

static int flush_out(shimmy_client *c)
{
	ssize_t n;

	if (c->fd < 0)
		return 0;
	n = conn_flush(c->fd, &c->s.out);
	if (n < 0) {
		conn_lost(c, (int)n);
		return (int)n;
	}
	return 0;
}

/* Opens the socket and queues CONNECT. Blocks for the TCP/unix connect. */
static int start_connect(shimmy_client *c, int timeout_ms)
{
	struct epoll_event e = { .events = EPOLLIN };
	int fd, rc;

	fd = conn_open(&c->u, timeout_ms);
	if (fd < 0)
		return fd;
	e.data.fd = fd;
	if (epoll_ctl(c->epfd, EPOLL_CTL_ADD, fd, &e) < 0) {
		rc = -errno;
		close(fd);
		return rc;
	}
	c->fd = fd;
	c->in_rd = c->in_wr = c->pq_n ? c->in_wr : 0;
	c->conn_err = 0;
	c->shm_active = false;
	rc = session_start(&c->s, now_ms());
	if (rc == 0)
		rc = flush_out(c);
	if (rc) {
		close_socket(c);
		session_lost(&c->s);
		return rc;
	}
	c->connect_ms = now_ms();
	return 0;
}

/* ------------------------------------------------------------ input */

static int tbuf_fit(shimmy_client *c, size_t n)
{
	if (n + 1 > c->tcap) {
		size_t nc = c->tcap ? c->tcap : 256;
		while (nc < n + 1)
			nc *= 2;
		char *t = realloc(c->tbuf, nc);
		if (!t)
			return SHIMMY_ERR_NOMEM;
		c->tbuf = t;
		c->tcap = nc;
	}
	return 0;
}

static int msg_fill(shimmy_client *c, const mqtt_publish *p)
{
	if (tbuf_fit(c, p->topic.len))
		return SHIMMY_ERR_NOMEM;
	memcpy(c->tbuf, p->topic.ptr, p->topic.len);
	c->tbuf[p->topic.len] = '\0';
	c->msg.topic = c->tbuf;
	c->msg.topic_len = p->topic.len;
	c->msg.payload = p->payload.ptr;
	c->msg.len = p->payload.len;
	c->msg.qos = p->qos;
	c->msg.retain = p->retain;
	props_view(&c->msg.props, c->s.cfg.version == MQTT_V5 ? &p->props : NULL);
	c->msg_props_empty = false;
	return 0;
}

static int pq_push(shimmy_client *c, size_t off, size_t len)
{
	if (c->pq_n == c->pq_cap) {
		size_t nc = c->pq_cap ? c->pq_cap * 2 : 64;
		pending_msg *n = malloc(nc * sizeof(*n));
		if (!n)
			return SHIMMY_ERR_NOMEM;
		for (size_t i = 0; i < c->pq_n; i++)
			n[i] = c->pq[(c->pq_head + i) % c->pq_cap];
		free(c->pq);
		c->pq = n;
		c->pq_cap = nc;
		c->pq_head = 0;
	}
	c->pq[(c->pq_head + c->pq_n) % c->pq_cap] = (pending_msg){ off, len };
	c->pq_n++;
	return 0;
}

/* Makes room to read: compacts (when nothing is borrowed) and grows. */
static size_t in_room(shimmy_client *c)
{
	size_t base = c->pq_n ? c->pq[c->pq_head].off : c->in_rd;
	uint32_t need = 0;

	if (!c->borrowed && base > 0 && (c->in_wr == c->in_cap || base >= c->in_cap / 2)) {
		memmove(c->in, c->in + base, c->in_wr - base);
		for (size_t i = 0; i < c->pq_n; i++)
			c->pq[(c->pq_head + i) % c->pq_cap].off -= base;
		c->in_rd -= base;
		c->in_wr -= base;
	}
	if (c->in_wr < c->in_cap)
		return c->in_cap - c->in_wr;
	if (c->borrowed)
		return 0; /* views into c->in must not move */
	if (!c->in || mqtt_packet_size(c->in + c->in_rd, c->in_wr - c->in_rd, &need) < 0)
		need = 0;
	size_t nc = c->in_cap ? c->in_cap * 2 : IN_MIN;
	while (nc < c->in_wr + 1 || (need && nc < c->in_rd + need))
		nc *= 2;
	if (nc > IN_MAX)
		nc = IN_MAX;
	if (nc <= c->in_cap)
		return 0; /* at the limit: stop reading, TCP pushes back */
	uint8_t *n = realloc(c->in, nc);
	if (!n)
		return 0;
	c->in = n;
	c->in_cap = nc;
	return c->in_cap - c->in_wr;
}

static void deliver_cb(shimmy_client *c, const mqtt_publish *p)
{
	shimmy_on_message cb = c->on_msg;
	void *ctx = c->on_msg_ctx;

	if (msg_fill(c, p))
		return;
	c->in_cb = true;
	c->cb_thread = pthread_self();
	pthread_mutex_unlock(&c->mu);
	cb(c, &c->msg, ctx);
	pthread_mutex_lock(&c->mu);
	c->in_cb = false;
}

/* Fills c->msg from a message borrowed from a shm log. Its property
 * bytes come from another process: decoded (validated) into c->pbuf, and
 * dropped when invalid. */
static int msg_fill_shm(shimmy_client *c, const cshm_msg *m)
{
	if (tbuf_fit(c, m->topic_len))
		return SHIMMY_ERR_NOMEM;
	memcpy(c->tbuf, m->topic, m->topic_len);
	c->tbuf[m->topic_len] = '\0';
	c->msg.topic = c->tbuf;
	c->msg.topic_len = m->topic_len;
	c->msg.payload = m->payload;
	c->msg.len = m->len;
	c->msg.qos = m->qos;
	c->msg.retain = m->retain;
	if (m->props_len == 0) {
		if (!c->msg_props_empty) /* the common case: none, as before */
			props_view(&c->msg.props, NULL);
		c->msg_props_empty = true;
		return 0;
	}
	c->msg_props_empty = false;
	memset(&c->shm_props, 0, sizeof(c->shm_props));
	if (m->props_len <= MQTT_VBI_MAX) {
		size_t need = mqtt_vbi_size((uint32_t)m->props_len) + m->props_len;
		if (need > c->pcap) {
			uint8_t *p = realloc(c->pbuf, need);
			if (p) {
				c->pbuf = p;
				c->pcap = need;
			}
		}
		if (need <= c->pcap) {
			size_t h = mqtt_vbi_encode(c->pbuf, (uint32_t)m->props_len);
			memcpy(c->pbuf + h, m->props, m->props_len);
			if (mqtt_props_decode(c->pbuf, need, MQTT_PCTX_PUBLISH,
					      &c->shm_props) != (int)need)
				memset(&c->shm_props, 0, sizeof(c->shm_props));
		}
	}
	props_view(&c->msg.props, &c->shm_props);
	return 0;
}

/* Callback mode: hands what the shm logs hold to the callback (bounded). */
static void shm_deliver(shimmy_client *c)
{
	cshm_msg m;

	for (int i = 0; i < SHM_DELIVER_BUDGET && c->shm && c->on_msg; i++) {
		if (cshm_next(c->shm, &m) != 1)
			return;
		c->stats[SHIMMY_STAT_RX_MSGS]++;
		c->stats[SHIMMY_STAT_RX_BYTES] += m.len;
		if (msg_fill_shm(c, &m) == 0) {
			shimmy_on_message cb = c->on_msg;
			void *ctx = c->on_msg_ctx;
			c->in_cb = true;
			c->cb_thread = pthread_self();
			pthread_mutex_unlock(&c->mu);
			cb(c, &c->msg, ctx);
			pthread_mutex_lock(&c->mu);
			c->in_cb = false;
		}
		if (c->shm)
			cshm_release(c->shm);
	}
}

static int shm_answer(shimmy_client *c);

static void on_event(shimmy_client *c, const session_event *ev, size_t off, size_t len)
{
	switch (ev->type) {
	case SEV_CONNACK:
		c->last_reason = ev->reason;
		if (ev->reason != 0) {
			conn_lost(c, SHIMMY_ERR_REFUSED);
			return;
		}
		c->shm_active = c->s.shm_echoed;
		if ((c->o.flags & SHIMMY_OPT_REQUIRE_SHM) && !c->shm_active) {
			session_disconnect(&c->s, 0);
			flush_out(c);
			conn_lost(c, SHIMMY_ERR_NO_SHM);
			return;
		}
		if (c->ever_connected)
			c->stats[SHIMMY_STAT_RECONNECTS]++;
		c->ever_connected = true;
		c->backoff_ms = BACKOFF_MIN_MS;
		c->reconnect_at = 0;
		c->conn_event = 0;
		break;
	case SEV_MESSAGE:
		if (ev->msg.topic.len == SHIMMY_CTL_TOPIC_LEN &&
		    memcmp(ev->msg.topic.ptr, SHIMMY_CTL_TOPIC, SHIMMY_CTL_TOPIC_LEN) == 0) {
			/* Control message of the shm path: never delivered. */
			if (c->shm_active && c->shm &&
			    cshm_on_ctl(c->shm, ev->msg.payload.ptr, ev->msg.payload.len,
					&c->fdq) < 0) {
				conn_lost(c, SHIMMY_ERR_PROTOCOL);
				break;
			}
			shm_answer(c);
			break;
		}
		c->stats[SHIMMY_STAT_RX_MSGS]++;
		c->stats[SHIMMY_STAT_RX_BYTES] += ev->msg.payload.len;
		if (c->on_msg)
			deliver_cb(c, &ev->msg);
		else if (pq_push(c, off, len))
			c->stats[SHIMMY_STAT_LOST_MSGS]++; /* out of memory */
		break;
	case SEV_SUBACK:
	case SEV_UNSUBACK:
		c->last_reason = ev->reason;
		for (int i = 0; i < SESSION_OPS_MAX; i++) {
			if (c->waits[i].pid == ev->pid && !c->waits[i].done) {
				c->waits[i].done = true;
				c->waits[i].reason = ev->reason;
			}
		}
		break;
	case SEV_DISCONNECT:
		c->last_reason = ev->reason;
		conn_lost(c, SHIMMY_ERR_CONN_LOST);
		return;
	default:
		break;
	}
	pthread_cond_broadcast(&c->cv);
}

/* Applies every whole packet buffered in c->in. */
static void drain_input(shimmy_client *c)
{
	session_event ev;

	while (c->fd >= 0 && c->in_rd < c->in_wr) {
		size_t off = c->in_rd;
		long n = session_input(&c->s, c->in + off, c->in_wr - off, now_ms(), &ev);
		if (n == 0)
			break;
		if (n < 0) {
			if (n == SHIMMY_ERR_PROTOCOL && c->s.cfg.version == MQTT_V5) {
				/* [MQTT-4.13.2-1]: a v5 client says why before it
				 * closes; a 3.1.1 client just closes (a DISCONNECT
				 * would discard its will). */
				c->s.state = SESS_CONNECTED;
				session_disconnect(&c->s, ev.reason);
				flush_out(c);
			}
			conn_lost(c, (int)n);
			return;
		}
		c->in_rd += (size_t)n;
		on_event(c, &ev, off, (size_t)n);
	}
}

/* Reads what the socket has (bounded), applying packets as they come. */
static void read_input(shimmy_client *c)
{
	for (int i = 0; i < READS_PER_PUMP && c->fd >= 0; i++) {
		size_t room = in_room(c);
		if (room == 0)
			return;
		ssize_t n = conn_read(c->fd, c->in + c->in_wr, room, &c->fdq);
		if (n == 0)
			return;
		if (n < 0) {
			drain_input(c);
			if (c->fd >= 0)
				conn_lost(c, (int)n);
			return;
		}
		c->in_wr += (size_t)n;
		drain_input(c);
		if ((size_t)n < room)
			return;
	}
}

/* Timers: CONNACK timeout, keepalive, reconnect. */
static void run_timers(shimmy_client *c)
{
	uint64_t now = now_ms();

	if (c->fd >= 0 && c->s.state == SESS_CONNECTING &&
	    now - c->connect_ms >= (uint64_t)c->o.timeout_ms) {
		conn_lost(c, SHIMMY_ERR_TIMEOUT);
	} else if (c->fd >= 0) {
		int rc = session_tick(&c->s, now);
		if (rc)
			conn_lost(c, rc == SHIMMY_ERR_TIMEOUT ? SHIMMY_ERR_CONN_LOST : rc);
	}
	if (c->fd < 0 && c->reconnect_at && now >= c->reconnect_at && c->want_conn) {
		c->reconnect_at = 0;
		int rc = start_connect(c, c->o.timeout_ms < 2000 ? c->o.timeout_ms : 2000);
		if (rc)
			conn_lost(c, rc);
	}
}

static int timeout_ms_locked(shimmy_client *c)
{
	uint64_t now = now_ms();
	int t = -1;

	if (c->fd >= 0) {
		t = session_next_timeout(&c->s, now);
		if (c->s.state == SESS_CONNECTING) {
			uint64_t due = c->connect_ms + (uint64_t)c->o.timeout_ms;
			int k = due > now ? (int)(due - now) : 0;
			if (t < 0 || k < t)
				t = k;
		}
	} else if (c->reconnect_at) {
		t = c->reconnect_at > now ? (int)(c->reconnect_at - now) : 0;
	}
	return t;
}

/* Runs the pending on_connection notification without the lock. */
static void notify_conn(shimmy_client *c)
{
	if (c->conn_event == 1)
		return;
	int st = c->conn_event;
	shimmy_on_connection cb = c->on_conn;
	void *ctx = c->on_conn_ctx;
	c->conn_event = 1;
	if (!cb)
		return;
	c->in_cb = true;
	c->cb_thread = pthread_self();
	pthread_mutex_unlock(&c->mu);
	cb(c, st, ctx);
	pthread_mutex_lock(&c->mu);
	c->in_cb = false;
}

/*
 * One round of the protocol: waits at most wait_ms (-1: until something
 * happens) for input, output room or a timer, then reads, applies, writes
 * and runs timers. Called with the lock held and c->pumping set; drops the
 * lock while it sleeps.
 */
static void pump_once(shimmy_client *c, int wait_ms)
{
	struct pollfd pfd[3];
	int n = 0, t = timeout_ms_locked(c), shm_i = -1;

	if (t < 0 || (wait_ms >= 0 && wait_ms < t))
		t = wait_ms;
	if (c->shm) {
		shm_i = n;
		pfd[n].fd = cshm_efd(c->shm);
		pfd[n].events = POLLIN;
		pfd[n].revents = 0;
		n++;
		/* Armed, writers ring the bell and the bridge makes the
		 * eventfd readable; data already there means no sleep. */
		if (cshm_arm(c->shm) && (c->on_msg || !c->borrowed))
			t = 0;
	}
	if (c->fd >= 0) {
		pfd[n].fd = c->fd;
		pfd[n].events = POLLIN | (outq_pending(&c->s.out) ? POLLOUT : 0);
		n++;
	}
	if (c->th_running && pthread_equal(pthread_self(), c->th)) {
		pfd[n].fd = c->wakefd;
		pfd[n].events = POLLIN;
		n++;
	}
	if (t != 0) {
		pthread_mutex_unlock(&c->mu);
		poll(pfd, (nfds_t)n, t);
		pthread_mutex_lock(&c->mu);
		for (int i = 0; i < n; i++) {
			uint64_t v;
			if (pfd[i].fd == c->wakefd && (pfd[i].revents & POLLIN) &&
			    read(c->wakefd, &v, sizeof(v)) < 0) { /* spurious */ }
		}
	}
	if (c->shm) {
		/* Disarmed while awake: writers then skip the futex wake (a
		 * syscall per message). A caller's loop, which sleeps outside
		 * pump_once, is re-armed at the end of shimmy_client_process. */
		cshm_disarm(c->shm);
		/* Read the eventfd only when it fired, or for a caller's
		 * loop (wait_ms 0), whose epoll would otherwise spin on it. */
		if (wait_ms == 0 ||
		    (t != 0 && shm_i >= 0 && (pfd[shm_i].revents & POLLIN)))
			cshm_clear(c->shm);
	}
	if (c->fd >= 0)
		read_input(c);
	shm_deliver(c);
	flush_out(c);
	run_timers(c);
	flush_out(c);
	notify_conn(c);
	ep_update_out(c);
	ev_sync(c, true);
	pthread_cond_broadcast(&c->cv);
}

typedef bool (*wait_pred)(shimmy_client *c, void *arg);

/*
 * Waits (lock held) until pred holds, the deadline passes (0: never) or,
 * when stop_on_loss, the connection is gone for good. Pumps the protocol
 * itself unless another thread does.
 */
static int wait_until(shimmy_client *c, wait_pred pred, void *arg, uint64_t deadline,
		      bool stop_on_loss)
{
	for (;;) {
		if (pred(c, arg))
			return 0;
		if (stop_on_loss && c->fd < 0 && !c->reconnect_at)
			return c->conn_err ? c->conn_err : SHIMMY_ERR_NOT_CONNECTED;
		uint64_t now = now_ms();
		if (deadline && now >= deadline)
			return SHIMMY_ERR_TIMEOUT;
		int left = deadline ? (int)(deadline - now) : -1;
		if (c->th_running || c->pumping) {
			struct timespec ts;
			clock_gettime(CLOCK_REALTIME, &ts);
			int step = left < 0 || left > 100 ? 100 : left;
			ts.tv_nsec += (long)step * 1000000;
			ts.tv_sec += ts.tv_nsec / 1000000000;
			ts.tv_nsec %= 1000000000;
			pthread_cond_timedwait(&c->cv, &c->mu, &ts);
		} else {
			c->pumping = true;
			pump_once(c, left);
			c->pumping = false;
		}
	}
}

static uint64_t deadline_of(shimmy_client *c, int timeout_ms)
{
	if (timeout_ms < 0)
		timeout_ms = c->o.timeout_ms;
	return now_ms() + (uint64_t)timeout_ms;
}

/* ------------------------------------------------------------ lifecycle */

shimmy_client *shimmy_client_create(const char *uri_s, const shimmy_opts *opts, int *err)
{
	shimmy_client *c;
	session_cfg cfg;
	int rc = SHIMMY_ERR_NOMEM;
	struct epoll_event e = { .events = EPOLLIN };

	c = calloc(1, sizeof(*c));
	if (!c)
		goto out;
	c->fd = c->epfd = c->evfd = c->wakefd = -1;
	c->conn_event = 1;
	c->backoff_ms = BACKOFF_MIN_MS;
	rc = uri_parse(uri_s, getenv("SHIMMY_SOCKET"), &c->u);
	if (rc)
		goto out_free;
	if (c->u.scheme == URI_TLS) {
		rc = SHIMMY_ERR_UNSUPPORTED; /* tls:// is not supported yet */
		goto out_free;
	}
	rc = opts_copy(&c->o, opts);
	if (rc)
		goto out_free;
	if (c->o.client_id) {
		c->client_id = strdup(c->o.client_id);
	} else {
		char id[32];
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		snprintf(id, sizeof(id), "shimmy-%d-%lx", (int)getpid(),
			 (unsigned long)(ts.tv_nsec ^ (long)(uintptr_t)c) & 0xffffff);
		c->client_id = strdup(id);
	}
	rc = SHIMMY_ERR_NOMEM;
	if (!c->client_id)
		goto out_opts;
	memset(&cfg, 0, sizeof(cfg));
	cfg.version = c->o.version == SHIMMY_MQTT_311 ? MQTT_V311 : MQTT_V5;
	cfg.clean_start = !(c->o.flags & SHIMMY_OPT_NO_CLEAN);
	cfg.offer_shm = c->u.scheme == URI_UNIX && cfg.version == MQTT_V5 &&
			!(c->o.flags & SHIMMY_OPT_NO_SHM);
	cfg.resubscribe = c->o.flags & SHIMMY_OPT_RECONNECT;
	cfg.keepalive_s = c->o.keepalive_s;
	/* 3.1.1 has no Receive Maximum; mosquitto drops incoming QoS 2 beyond
	 * its max_inflight_messages (20, libmosquitto's default too), so a
	 * 3.1.1 client keeps to 20 unless told otherwise. MQTT 5 starts at 64
	 * and the CONNACK's Receive Maximum lowers it. */
	cfg.window = c->o.window ? c->o.window : cfg.version == MQTT_V311 ? 20 : 64;
	cfg.session_expiry = c->o.session_expiry;
	cfg.client_id = c->client_id;
	cfg.username = c->o.username;
	cfg.password = c->o.password;
	cfg.password_len = c->o.password_len;
	if (c->o.has_will) {
		cfg.will = true;
		cfg.will_topic = c->o.will_topic;
		cfg.will_payload = c->o.will_payload;
		cfg.will_len = c->o.will_len;
		cfg.will_qos = (uint8_t)c->o.will_qos;
		cfg.will_retain = c->o.will_flags & SHIMMY_PUB_RETAIN;
		cfg.will_props = props_mqtt(&c->o.will_props);
	}
	if ((c->o.flags & SHIMMY_OPT_REQUIRE_SHM) && cfg.version != MQTT_V5) {
		rc = SHIMMY_ERR_INVALID; /* the extension is negotiated in MQTT 5 */
		goto out_id;
	}
	rc = session_init(&c->s, &cfg);
	if (rc)
		goto out_id;
	c->epfd = epoll_create1(EPOLL_CLOEXEC);
	c->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	c->wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	e.data.fd = c->evfd;
	if (c->epfd < 0 || c->evfd < 0 || c->wakefd < 0 ||
	    epoll_ctl(c->epfd, EPOLL_CTL_ADD, c->evfd, &e) < 0) {
		rc = -errno;
		goto out_fds;
	}
	shimmy_fdq_init(&c->fdq);
	{
		const char *spin = getenv("SHIMMY_SHM_SPIN_US");
		c->spin_env_us = spin ? strtoll(spin, NULL, 10) : -1;
		const char *hold = getenv("SHIMMY_SHM_HOLDOFF_NS");
		shimmy_holdoff_init(&c->holdoff,
				    hold ? strtoll(hold, NULL, 10) : SHIMMY_HOLDOFF_HOLD_NS,
				    SHIMMY_HOLDOFF_GAP_NS, SHIMMY_HOLDOFF_STREAK,
				    SHIMMY_HOLDOFF_BEHIND);
	}
	if (cfg.offer_shm) {
		struct epoll_event se = { .events = EPOLLIN };
		c->shm = cshm_create(&c->s);
		if (c->shm) {
			se.data.fd = cshm_efd(c->shm);
			epoll_ctl(c->epfd, EPOLL_CTL_ADD, se.data.fd, &se);
		}
	}
	pthread_mutex_init(&c->mu, NULL);
	{
		pthread_condattr_t ca;
		pthread_condattr_init(&ca);
		pthread_cond_init(&c->cv, &ca);
		pthread_condattr_destroy(&ca);
	}
	if (err)
		*err = 0;
	return c;

out_fds:
	if (c->epfd >= 0)
		close(c->epfd);
	if (c->evfd >= 0)
		close(c->evfd);
	if (c->wakefd >= 0)
		close(c->wakefd);
	session_fini(&c->s);
out_id:
	free(c->client_id);
out_opts:
	opts_fini(&c->o);
out_free:
	free(c);
	c = NULL;
out:
	if (err)
		*err = rc;
	return NULL;
}

void shimmy_client_destroy(shimmy_client *c)
{
	if (!c)
		return;
	shimmy_client_stop_thread(c);
	pthread_mutex_lock(&c->mu);
	c->want_conn = false;
	close_socket(c);
	pthread_mutex_unlock(&c->mu);
	session_fini(&c->s);
	cshm_destroy(c->shm);
	shimmy_fdq_fini(&c->fdq);
	free(c->pbuf);
	close(c->epfd);
	close(c->evfd);
	close(c->wakefd);
	free(c->in);
	free(c->pq);
	free(c->tbuf);
	free(c->client_id);
	opts_fini(&c->o);
	pthread_cond_destroy(&c->cv);
	pthread_mutex_destroy(&c->mu);
	free(c);
}

static bool pred_connected(shimmy_client *c, void *arg)
{
	return c->s.state == SESS_CONNECTED;
}

static bool pred_shm_ready(shimmy_client *c, void *arg)
{
	return c->s.state != SESS_CONNECTED || !c->shm_active ||
	       cshm_ready_session(c->shm);
}

/* Most a connect waits for the doorbell after an shm CONNACK; without it
 * the client works, publishing over MQTT until it comes. */
#define SHM_SETUP_WAIT_MS 2000

int shimmy_client_connect(shimmy_client *c, int timeout_ms)
{
	uint64_t deadline;
	int rc;

	if (!c)
		return SHIMMY_ERR_INVALID;
	pthread_mutex_lock(&c->mu);
	deadline = deadline_of(c, timeout_ms);
	if (c->fd >= 0 || c->s.state != SESS_IDLE) {
		rc = SHIMMY_ERR_STATE;
		goto out;
	}
	c->want_conn = true;
	c->reconnect_at = 0;
	rc = start_connect(c, (int)(deadline - now_ms()));
	if (rc == 0) {
		/* The first connect reports its failure instead of retrying. */
		unsigned fl = c->o.flags;
		c->o.flags &= ~(unsigned)SHIMMY_OPT_RECONNECT;
		rc = wait_until(c, pred_connected, NULL, deadline, true);
		/* The doorbell follows the CONNACK at once: wait for it so the
		 * first publish can take the fast path. */
		if (rc == 0 && c->shm_active) {
			uint64_t d2 = now_ms() + SHM_SETUP_WAIT_MS;
			wait_until(c, pred_shm_ready, NULL, d2 < deadline ? d2 : deadline, true);
		}
		c->o.flags = fl;
		c->reconnect_at = 0;
	}
	if (rc) {
		if (c->fd >= 0)
			conn_lost(c, rc);
		c->reconnect_at = 0;
		c->want_conn = false;
		c->conn_event = 1;
	} else {
		c->conn_event = 1; /* the caller knows; no callback for this one */
		wake_thread(c);
	}
out:
	pthread_mutex_unlock(&c->mu);
	return rc;
}

static bool pred_flushed(shimmy_client *c, void *arg)
{
	return c->fd < 0 || outq_pending(&c->s.out) == 0;
}

int shimmy_client_disconnect(shimmy_client *c, int timeout_ms)
{
	int rc = 0;

	if (!c)
		return SHIMMY_ERR_INVALID;
	pthread_mutex_lock(&c->mu);
	c->want_conn = false;
	c->reconnect_at = 0;
	if (c->fd >= 0 && c->s.state == SESS_CONNECTED) {
		session_disconnect(&c->s, 0);
		flush_out(c);
		rc = wait_until(c, pred_flushed, NULL, deadline_of(c, timeout_ms), false);
	} else if (c->fd < 0) {
		rc = SHIMMY_ERR_NOT_CONNECTED;
	}
	close_socket(c);
	session_lost(&c->s);
	c->shm_active = false;
	cshm_conn_lost(c->shm);
	c->conn_err = SHIMMY_ERR_NOT_CONNECTED;
	pthread_cond_broadcast(&c->cv);
	pthread_mutex_unlock(&c->mu);
	return rc;
}

int shimmy_client_shm_active(const shimmy_client *c)
{
	return c && c->shm_active;
}

int shimmy_client_reason(const shimmy_client *c)
{
	return c ? c->last_reason : 0;
}

int shimmy_client_session_present(const shimmy_client *c)
{
	return c && c->s.session_present;
}

/* ------------------------------------------------------------ publishing */

static bool pred_window(shimmy_client *c, void *arg)
{
	return session_window_open(&c->s) && outq_pending(&c->s.out) < OUT_HIGH_WATER;
}

/* Before queueing more: wait for room in the window (QoS > 0) and below
 * the output high-water mark. */
static int wait_room(shimmy_client *c, int qos)
{
	if (c->fd < 0 && !(c->o.flags & SHIMMY_OPT_RECONNECT && c->want_conn))
		return SHIMMY_ERR_NOT_CONNECTED;
	if ((qos == 0 || session_window_open(&c->s)) && outq_pending(&c->s.out) < OUT_HIGH_WATER)
		return 0;
	return wait_until(c, pred_window, NULL, deadline_of(c, -1),
			  !(c->o.flags & SHIMMY_OPT_RECONNECT));
}

static void after_queue(shimmy_client *c)
{
	flush_out(c);
	ep_update_out(c);
	if (outq_pending(&c->s.out))
		wake_thread(c);
}

static bool pred_log_answered(shimmy_client *c, void *arg)
{
	const char *topic = arg;
	return !c->shm_active ||
	       cshm_log_state(c->shm, topic, strlen(topic)) != CSHM_LOG_PENDING;
}

/*
 * The shm path of a publish: QoS 0, not retained, over a negotiated
 * session. The first publish on a topic asks the broker for a log and
 * waits for the answer (one round trip), so that messages of a topic do
 * not switch paths midway. Returns 1 when the topic has a log, 0 when the
 * message must go over MQTT (lock held).
 */
static int shm_route(shimmy_client *c, const char *topic, int qos, unsigned flags)
{
	if (!c->shm_active || !c->shm || (flags & SHIMMY_PUB_RETAIN) ||
	    !topic || !cshm_ready_session(c->shm))
		return 0;
	size_t tlen = strlen(topic);
	int st = cshm_log_state(c->shm, topic, tlen);
	if (st == CSHM_LOG_NONE) {
		size_t cap = SHIMMY_CTL_HDR + tlen;
		uint8_t *req = malloc(cap);
		const char *cls_env = getenv("SHIMMY_SHM_LOG_CLASS");
		uint32_t cls = cls_env ? (uint32_t)strtoul(cls_env, NULL, 10) : UINT32_MAX;
		unsigned lflags = qos > 0 ? SHIMMY_CTL_F_RELIABLE : 0;
		int n = req ? cshm_log_request(c->shm, topic, tlen, cls, lflags, req, cap)
			    : SHIMMY_ERR_NOMEM;
		int rc = n < 0 ? n : session_publish(&c->s, SHIMMY_CTL_TOPIC, req, (size_t)n,
						     0, 0, NULL, now_ms());
		free(req);
		if (rc != 0)
			return 0;
		after_queue(c);
		/* Inside a callback the caller is the pumping thread: nobody
		 * would read the answer while it waits. This message goes over
		 * MQTT; the next ones use the log once it is granted. */
		if (c->in_cb && pthread_equal(c->cb_thread, pthread_self()))
			return 0;
		wait_until(c, pred_log_answered, (void *)topic, deadline_of(c, -1), true);
		st = cshm_log_state(c->shm, topic, tlen);
	}
	/* QoS 1/2 need a reliable log; a lossy one leaves them to MQTT. */
	return st == CSHM_LOG_READY &&
	       (qos == 0 || cshm_log_reliable(c->shm, topic, tlen));
}

/* Queues what the shm side owes the broker (the LOG_RELEASE that answers
 * a cut, or that gives up a log grown out of). Returns how many. Lock
 * held. */
static int shm_answer(shimmy_client *c)
{
	uint8_t buf[SHIMMY_CTL_HDR];
	int n, k = 0;
	while ((n = cshm_pending_ctl(c->shm, buf, sizeof(buf))) > 0 &&
	       session_publish(&c->s, SHIMMY_CTL_TOPIC, buf, (size_t)n, 0, 0, NULL,
			       now_ms()) == 0)
		k++;
	return k;
}

static bool pred_log_grown(shimmy_client *c, void *arg)
{
	const char *topic = arg;
	return !c->shm_active || !cshm_log_growing(c->shm, topic, strlen(topic));
}

/*
 * Growth (docs/shm-protocol.md §2): a record too large for topic's log.
 * Asks the broker for a log of a class that holds it, replacing this one,
 * and waits for the answer (one round trip), so that the record goes
 * through shared memory behind the smaller ones, in order. Nothing to ask
 * (no class holds it, refused before): MQTT carries it. Lock held.
 */
static void shm_grow(shimmy_client *c, const char *topic, size_t props_len,
		     size_t len)
{
	size_t tlen = strlen(topic);
	size_t cap = SHIMMY_CTL_HDR + tlen;
	uint8_t *req = malloc(cap);
	int n = req ? cshm_log_grow(c->shm, topic, tlen, props_len, len, req, cap) : 0;
	int rc = n > 0 ? session_publish(&c->s, SHIMMY_CTL_TOPIC, req, (size_t)n, 0, 0,
					 NULL, now_ms())
		       : -1;
	free(req);
	if (rc != 0)
		return;
	after_queue(c);
	/* Inside a callback nobody would read the answer: this record goes
	 * over MQTT (and may overtake the log's), the next use the new log. */
	if (c->in_cb && pthread_equal(c->cb_thread, pthread_self()))
		return;
	wait_until(c, pred_log_grown, (void *)topic, deadline_of(c, -1), true);
}

/* A reliable log is full: spins and yields in the ring for up to this
 * long with the lock held, then lets the protocol run before it tries
 * again. */
#define SHM_ROOM_SLICE_NS 1000000

/* Deadline of a wait for room in a reliable log (shimmy_opts_set_shm_wait_ms). */
static uint64_t shm_wait_deadline(shimmy_client *c)
{
	return deadline_of(c, c->o.shm_wait_ms < 0 ? -1 : c->o.shm_wait_ms);
}

/*
 * Between two tries at a full reliable log: lets the protocol run (a
 * READER_DROP, LOG_CLOSED or keepalive may be waiting), without the lock
 * if another thread drives it. Returns 0 to try again, or
 * SHIMMY_ERR_TIMEOUT past the deadline (lock held throughout the call's
 * contract; it may be dropped and retaken inside).
 */
static int shm_room_wait(shimmy_client *c, uint64_t deadline)
{
	if (now_ms() >= deadline)
		return SHIMMY_ERR_TIMEOUT;
	if (c->th_running || c->pumping) {
		pthread_mutex_unlock(&c->mu);
		sched_yield();
		pthread_mutex_lock(&c->mu);
	} else {
		c->pumping = true;
		pump_once(c, 0);
		c->pumping = false;
	}
	return 0;
}

/* One try at an shm log operation on topic; slice_ns is how long it may
 * wait in the ring for room (0: not at all). */
typedef int (*shm_try_fn)(shimmy_client *c, const char *topic, size_t tlen,
			  uint64_t slice_ns, void *arg);

/*
 * Runs try on topic's log; while the log is reliable and full, waits for
 * room (shm_room_wait, bounded by shimmy_opts_set_shm_wait_ms) and tries
 * again. Returns try's result, or SHIMMY_ERR_TIMEOUT. Lock held.
 */
static int shm_try_room(shimmy_client *c, const char *topic, shm_try_fn try,
			void *arg)
{
	size_t tlen = strlen(topic);
	uint64_t deadline = 0;
	for (;;) {
		bool rel = cshm_log_reliable(c->shm, topic, tlen);
		int rc = try(c, topic, tlen, rel ? SHM_ROOM_SLICE_NS : 0, arg);
		if (!rel || (rc != -EAGAIN && rc != -ETIMEDOUT))
			return rc;
		if (!deadline)
			deadline = shm_wait_deadline(c);
		rc = shm_room_wait(c, deadline);
		if (rc)
			return rc;
	}
}

/* shimmy_publish()'s try: a copying publish into the log. */
typedef struct shm_pub_arg {
	const uint8_t *props;
	size_t props_len;
	const void *payload;
	size_t len;
	int qos;
} shm_pub_arg;

static int shm_try_publish(shimmy_client *c, const char *topic, size_t tlen,
			   uint64_t slice_ns, void *arg)
{
	const shm_pub_arg *a = arg;
	return cshm_publish_qos(c->shm, topic, tlen, a->props, a->props_len,
				a->payload, a->len, a->qos, slice_ns);
}

/* shimmy_loan_props()'s try: a loan of len payload bytes in the log. */
typedef struct shm_loan_arg {
	size_t len;
	void *p;
} shm_loan_arg;

static int shm_try_loan(shimmy_client *c, const char *topic, size_t tlen,
			uint64_t slice_ns, void *arg)
{
	shm_loan_arg *a = arg;
	return cshm_loan_wait(c->shm, topic, tlen, a->len, slice_ns, &a->p);
}

/* Encodes props as the bare block a log record carries (no length VBI)
 * into *buf (malloc'ed, caller frees). Returns its length. */
static size_t props_block(const shimmy_props *props, uint8_t **buf)
{
	const mqtt_props *mp = props_mqtt(props);
	*buf = NULL;
	if (!mp)
		return 0;
	size_t body = mqtt_props_size(mp);
	size_t total = mqtt_vbi_size((uint32_t)body) + body;
	uint8_t *b = malloc(total);
	if (!b)
		return 0;
	mqtt_props_encode(b, total, mp);
	memmove(b, b + (total - body), body);
	*buf = b;
	return body;
}

int shimmy_publish(shimmy_client *c, const char *topic, const void *payload,
		   size_t len, int qos, unsigned flags, const shimmy_props *props)
{
	int rc;

	if (!c || qos < 0 || qos > 2)
		return SHIMMY_ERR_INVALID;
	pthread_mutex_lock(&c->mu);
	if (shm_route(c, topic, qos, flags)) {
		uint8_t *pb = NULL;
		size_t pl = props ? props_block(props, &pb) : 0;
		/* A reliable log holds us back until its slowest reader makes
		 * room: bounded (shm_wait_ms), then SHIMMY_ERR_TIMEOUT. */
		shm_pub_arg a = { pb, pl, payload, len, qos };
		rc = shm_try_room(c, topic, shm_try_publish, &a);
		if (rc == MQTT_ERR_TOO_LARGE) {
			shm_grow(c, topic, pl, len);
			rc = shm_try_room(c, topic, shm_try_publish, &a);
		}
		free(pb);
		/* A log grown out of is given up after its last record. */
		if (shm_answer(c))
			after_queue(c);
		if (rc == 0) {
			c->stats[SHIMMY_STAT_TX_MSGS]++;
			c->stats[SHIMMY_STAT_TX_BYTES] += len;
		}
		if (rc == 0 || rc == SHIMMY_ERR_TIMEOUT) {
			pthread_mutex_unlock(&c->mu);
			return rc;
		}
		/* Too large for the log, a loan open, or the log went away
		 * while we waited: MQTT carries it. */
	}
	rc = wait_room(c, qos);
	if (rc == 0)
		rc = session_publish(&c->s, topic, payload, len, qos, flags, props_mqtt(props),
				     now_ms());
	if (rc == 0) {
		c->stats[SHIMMY_STAT_TX_MSGS]++;
		c->stats[SHIMMY_STAT_TX_BYTES] += len;
		after_queue(c);
	}
	pthread_mutex_unlock(&c->mu);
	return rc;
}

int shimmy_loan_props(shimmy_client *c, const char *topic, size_t len,
		      const shimmy_props *props, void **buf)
{
	uint8_t *b = NULL;
	int rc;

	if (!c || !buf)
		return SHIMMY_ERR_INVALID;
	pthread_mutex_lock(&c->mu);
	/* Zero copy into the log when the topic has one (no properties: a
	 * loan reserves payload only). Committed with RETAIN, or with QoS > 0
	 * into a lossy log, the bytes are copied into an MQTT PUBLISH
	 * instead. A full reliable log is waited for as by shimmy_publish(). */
	if (!props && shm_route(c, topic, 0, 0)) {
		shm_loan_arg a = { len, NULL };
		rc = shm_try_room(c, topic, shm_try_loan, &a);
		if (rc == MQTT_ERR_TOO_LARGE) {
			shm_grow(c, topic, 0, len);
			rc = shm_try_room(c, topic, shm_try_loan, &a);
		}
		if (shm_answer(c))
			after_queue(c);
		if (rc == 0 || rc == SHIMMY_ERR_TIMEOUT) {
			pthread_mutex_unlock(&c->mu);
			*buf = rc == 0 ? a.p : NULL;
			return rc;
		}
	}
	rc = session_loan(&c->s, topic, len, props_mqtt(props), &b);
	pthread_mutex_unlock(&c->mu);
	*buf = b;
	return rc;
}

int shimmy_loan(shimmy_client *c, const char *topic, size_t len, void **buf)
{
	return shimmy_loan_props(c, topic, len, NULL, buf);
}

int shimmy_commit(shimmy_client *c, void *buf, int qos, unsigned flags)
{
	int rc;

	if (!c || !buf || qos < 0 || qos > 2)
		return SHIMMY_ERR_INVALID;
	pthread_mutex_lock(&c->mu);
	if (c->shm && cshm_is_loan(c->shm, buf)) {
		const char *topic;
		size_t tlen, len;
		cshm_loan_info(c->shm, buf, &topic, &tlen, &len);
		if (!(flags & SHIMMY_PUB_RETAIN) &&
		    (qos == 0 || cshm_loan_reliable(c->shm, buf))) {
			rc = cshm_commit_qos(c->shm, buf, qos);
		} else {
			char *t = strndup(topic, tlen);
			rc = t ? wait_room(c, qos) : SHIMMY_ERR_NOMEM;
			if (rc == 0)
				rc = session_publish(&c->s, t, buf, len, qos, flags, NULL,
						     now_ms());
			if (c->shm)
				cshm_abort(c->shm, buf);
			if (rc == 0)
				after_queue(c);
			free(t);
		}
		if (rc == 0) {
			c->stats[SHIMMY_STAT_TX_MSGS]++;
			c->stats[SHIMMY_STAT_TX_BYTES] += len;
		}
		pthread_mutex_unlock(&c->mu);
		return rc;
	}
	rc = wait_room(c, qos);
	if (rc == 0) {
		size_t len = 0;
		for (session_lbuf *lb = c->s.open; lb; lb = lb->next)
			if (lb->mem + lb->room == buf)
				len = lb->len;
		rc = session_commit(&c->s, buf, qos, flags, now_ms());
		if (rc == 0) {
			c->stats[SHIMMY_STAT_TX_MSGS]++;
			c->stats[SHIMMY_STAT_TX_BYTES] += len;
			after_queue(c);
		}
	}
	pthread_mutex_unlock(&c->mu);
	return rc;
}

void shimmy_loan_abort(shimmy_client *c, void *buf)
{
	if (!c || !buf)
		return;
	pthread_mutex_lock(&c->mu);
	if (c->shm && cshm_is_loan(c->shm, buf))
		cshm_abort(c->shm, buf);
	else
		session_loan_abort(&c->s, buf);
	pthread_mutex_unlock(&c->mu);
}

/* ------------------------------------------------- topic-bound publisher */

struct shimmy_pub {
	shimmy_client *c;
	char *topic;
	cshm_wr *w;          /* pinned log writer, or NULL: MQTT path */
	bool shm_loan;       /* the open loan is in w's ring */
	size_t loan_len;
	uint64_t tx_msgs, tx_bytes; /* not yet added to c->stats */
};

/* Adds p's counts to the client's (lock held). */
static void pub_fold(shimmy_pub *p)
{
	p->c->stats[SHIMMY_STAT_TX_MSGS] += p->tx_msgs;
	p->c->stats[SHIMMY_STAT_TX_BYTES] += p->tx_bytes;
	p->tx_msgs = p->tx_bytes = 0;
}

/* (Re)binds p to its topic's log (lock held; may wait for the grant). */
static void pub_resolve(shimmy_pub *p)
{
	shimmy_client *c = p->c;

	if (p->w)
		cshm_wr_unpin(c->shm, p->w);
	p->w = NULL;
	if (shm_route(c, p->topic, 0, 0) && c->shm)
		p->w = cshm_wr_pin(c->shm, p->topic, strlen(p->topic));
}

int shimmy_pub_open(shimmy_client *c, const char *topic, shimmy_pub **out)
{
	if (!c || !topic || !out)
		return SHIMMY_ERR_INVALID;
	shimmy_pub *p = calloc(1, sizeof(*p));
	if (!p || !(p->topic = strdup(topic))) {
		free(p);
		return SHIMMY_ERR_NOMEM;
	}
	p->c = c;
	pthread_mutex_lock(&c->mu);
	pub_resolve(p);
	pthread_mutex_unlock(&c->mu);
	*out = p;
	return 0;
}

void shimmy_pub_close(shimmy_pub *p)
{
	if (!p)
		return;
	pthread_mutex_lock(&p->c->mu);
	if (p->w)
		cshm_wr_unpin(p->c->shm, p->w);
	pub_fold(p);
	pthread_mutex_unlock(&p->c->mu);
	free(p->topic);
	free(p);
}

int shimmy_pub_loan(shimmy_pub *p, size_t len, void **buf)
{
	if (!p || !buf)
		return SHIMMY_ERR_INVALID;
	shimmy_client *c = p->c;
	/* The fast path: the pinned writer's own spinlock, no client lock. */
	int rc = p->w ? cshm_wr_loan(p->w, len, buf) : -ENOENT;
	if (rc == 0) {
		p->shm_loan = true;
		p->loan_len = len;
		return 0;
	}
	if (rc == SHIMMY_ERR_CONN_LOST || rc == MQTT_ERR_TOO_LARGE) {
		/* The log went with the connection: rebind. Or the message is
		 * too large for it: grow it (docs/shm-protocol.md §2), which
		 * only an unpinned log may do, and bind to its successor, so
		 * the message does not overtake the log's over MQTT. */
		pthread_mutex_lock(&c->mu);
		if (rc == MQTT_ERR_TOO_LARGE && c->shm) {
			cshm_wr_unpin(c->shm, p->w);
			p->w = NULL;
			shm_grow(c, p->topic, 0, len);
		}
		pub_resolve(p);
		if (c->shm && shm_answer(c)) /* the grown-out log's LOG_RELEASE */
			after_queue(c);
		pthread_mutex_unlock(&c->mu);
		if (p->w && cshm_wr_loan(p->w, len, buf) == 0) {
			p->shm_loan = true;
			p->loan_len = len;
			return 0;
		}
	}
	p->shm_loan = false;
	return shimmy_loan(c, p->topic, len, buf);
}

int shimmy_pub_commit(shimmy_pub *p, void *buf)
{
	if (!p || !buf)
		return SHIMMY_ERR_INVALID;
	if (!p->shm_loan)
		return shimmy_commit(p->c, buf, 0, 0);
	p->shm_loan = false;
	int rc = cshm_wr_commit(p->w, buf);
	if (rc == 0) {
		p->tx_msgs++;
		p->tx_bytes += p->loan_len;
		if ((p->tx_msgs & 4095) == 0) {
			pthread_mutex_lock(&p->c->mu);
			pub_fold(p);
			pthread_mutex_unlock(&p->c->mu);
		}
	}
	return rc;
}

int shimmy_pub_loan_many(shimmy_pub *p, size_t len, void **bufs, unsigned n)
{
	if (!p || !bufs || !n)
		return SHIMMY_ERR_INVALID;
	int k = p->w ? cshm_wr_loan_many(p->w, len, bufs, n) : -ENOENT;
	if (k > 0) {
		p->shm_loan = true;
		p->loan_len = len;
		return k;
	}
	/* No log (or it went away): one message through shimmy_pub_loan(),
	 * which rebinds and falls back to MQTT. */
	int rc = shimmy_pub_loan(p, len, &bufs[0]);
	return rc < 0 ? rc : 1;
}

int shimmy_pub_commit_many(shimmy_pub *p, void **bufs, unsigned n)
{
	if (!p || !bufs || !n)
		return SHIMMY_ERR_INVALID;
	if (!p->shm_loan) /* an MQTT loan: always one */
		return n == 1 ? shimmy_pub_commit(p, bufs[0]) : SHIMMY_ERR_INVALID;
	p->shm_loan = false;
	int rc = cshm_wr_commit_many(p->w, bufs, n);
	if (rc == 0) {
		uint64_t before = p->tx_msgs;
		p->tx_msgs += n;
		p->tx_bytes += (uint64_t)n * p->loan_len;
		if ((p->tx_msgs >> 12) != (before >> 12)) {
			pthread_mutex_lock(&p->c->mu);
			pub_fold(p);
			pthread_mutex_unlock(&p->c->mu);
		}
	}
	return rc;
}

static bool pred_all_acked(shimmy_client *c, void *arg)
{
	return outq_pending(&c->s.out) == 0 && c->s.inflight == 0;
}

int shimmy_client_flush(shimmy_client *c, int timeout_ms)
{
	int rc;

	if (!c)
		return SHIMMY_ERR_INVALID;
	pthread_mutex_lock(&c->mu);
	rc = wait_until(c, pred_all_acked, NULL, deadline_of(c, timeout_ms),
			!(c->o.flags & SHIMMY_OPT_RECONNECT));
	pthread_mutex_unlock(&c->mu);
	return rc;
}

/* ------------------------------------------------------------ subscribing */

static bool pred_op_done(shimmy_client *c, void *arg)
{
	return ((op_wait *)arg)->done;
}

static int sub_common(shimmy_client *c, const char *filter, int qos, unsigned options,
		      bool unsub)
{
	op_wait *w = NULL;
	uint16_t pid = 0;
	int rc;

	if (!c || !filter || qos < 0 || qos > 2)
		return SHIMMY_ERR_INVALID;
	pthread_mutex_lock(&c->mu);
	for (int i = 0; i < SESSION_OPS_MAX && !w; i++)
		if (c->waits[i].pid == 0)
			w = &c->waits[i];
	if (!w) {
		rc = SHIMMY_ERR_BUSY;
		goto out;
	}
	rc = unsub ? session_unsubscribe(&c->s, filter, now_ms(), &pid)
		   : session_subscribe(&c->s, filter, (uint8_t)(qos | (options & 0x3C)),
				       now_ms(), &pid);
	if (rc)
		goto out;
	*w = (op_wait){ .pid = pid };
	after_queue(c);
	rc = wait_until(c, pred_op_done, w, deadline_of(c, -1), false);
	if (rc == 0)
		rc = w->err;
	if (rc == 0) {
		if (w->reason >= 0x80)
			rc = SHIMMY_ERR_SUBSCRIBE;
		else if (!unsub)
			rc = w->reason; /* granted QoS */
	}
	w->pid = 0;
	w->done = false;
out:
	pthread_mutex_unlock(&c->mu);
	return rc;
}

int shimmy_subscribe(shimmy_client *c, const char *filter, int qos, unsigned options)
{
	return sub_common(c, filter, qos, options, false);
}

int shimmy_unsubscribe(shimmy_client *c, const char *filter)
{
	return sub_common(c, filter, 0, 0, true);
}

/* ------------------------------------------------------------ receiving */

const char *shimmy_msg_topic(const shimmy_msg *m, size_t *len)
{
	if (len)
		*len = m->topic_len;
	return m->topic;
}

const void *shimmy_msg_payload(const shimmy_msg *m, size_t *len)
{
	if (len)
		*len = m->len;
	return m->payload ? (const void *)m->payload : (const void *)"";
}

int shimmy_msg_qos(const shimmy_msg *m)
{
	return m->qos;
}

int shimmy_msg_retain(const shimmy_msg *m)
{
	return m->retain;
}

const shimmy_props *shimmy_msg_props(const shimmy_msg *m)
{
	return &m->props;
}

void shimmy_client_set_on_message(shimmy_client *c, shimmy_on_message cb, void *ctx)
{
	pthread_mutex_lock(&c->mu);
	c->on_msg = cb;
	c->on_msg_ctx = ctx;
	pthread_mutex_unlock(&c->mu);
}

void shimmy_client_set_on_connection(shimmy_client *c, shimmy_on_connection cb, void *ctx)
{
	pthread_mutex_lock(&c->mu);
	c->on_conn = cb;
	c->on_conn_ctx = ctx;
	pthread_mutex_unlock(&c->mu);
}

/* Hands out the oldest queued message (lock held). */
static int pop_msg(shimmy_client *c, shimmy_msg **out)
{
	mqtt_packet pkt;
	pending_msg pm;
	int n;

	while (c->pq_n) {
		pm = c->pq[c->pq_head];
		c->pq_head = (c->pq_head + 1) % c->pq_cap;
		c->pq_n--;
		/* Decoded and validated once already; decoding again just
		 * rebuilds the views. */
		n = mqtt_decode(c->in + pm.off, pm.len, c->s.cfg.version, 0, &pkt);
		if (n <= 0 || pkt.type != MQTT_PUBLISH || msg_fill(c, &pkt.u.publish))
			continue;
		c->borrowed = true;
		*out = &c->msg;
		ev_sync(c, false);
		return 0;
	}
	if (c->shm) {
		cshm_msg m;
		while (cshm_next(c->shm, &m) == 1) {
			c->stats[SHIMMY_STAT_RX_MSGS]++;
			c->stats[SHIMMY_STAT_RX_BYTES] += m.len;
			if (msg_fill_shm(c, &m)) {
				cshm_release(c->shm);
				continue;
			}
			c->borrowed = true;
			c->shm_borrowed = true;
			*out = &c->msg;
			ev_sync(c, false);
			return 0;
		}
	}
	return SHIMMY_ERR_AGAIN;
}

static bool pred_has_msg(shimmy_client *c, void *arg)
{
	return c->pq_n > 0 || (c->shm && cshm_has_data(c->shm));
}

/* Before blocking in poll: spin a little on the shm logs (the broker's
 * shimmy_shm_spin_us, SHIMMY_SHM_SPIN_US overrides), since a futex wake
 * through the bridge thread costs two context switches. Lock held. */
static void shm_spin(shimmy_client *c)
{
	if (!c->shm || c->pq_n || !cshm_readers(c->shm))
		return;
	int64_t us = c->spin_env_us >= 0 ? c->spin_env_us : cshm_spin_us(c->shm);
	if (us <= 0)
		return;
	int64_t t0 = mono_ns();
	for (unsigned i = 0;; i++) {
		if (cshm_has_data(c->shm))
			return;
		if ((i & 63) == 63 && mono_ns() - t0 >= us * 1000)
			return;
	}
}

int shimmy_recv(shimmy_client *c, shimmy_msg **msg, int timeout_ms)
{
	int rc;

	if (!c || !msg)
		return SHIMMY_ERR_INVALID;
	pthread_mutex_lock(&c->mu);
	if (c->borrowed)
		rc = SHIMMY_ERR_BUSY;
	else if (c->th_running || c->on_msg)
		rc = SHIMMY_ERR_STATE;
	else {
		uint64_t dl = timeout_ms < 0 ? 0 : now_ms() + (uint64_t)timeout_ms;
		shm_spin(c);
		/* What looked ready may yield nothing: a drained log that is
		 * dropped (its successor's LOG_REPLACE may still be unread),
		 * a record overwritten while copied. Wait on. */
		do {
			rc = wait_until(c, pred_has_msg, NULL, dl,
					!(c->o.flags & SHIMMY_OPT_RECONNECT) ||
						!c->want_conn);
			if (rc == 0)
				rc = pop_msg(c, msg);
			else if (rc != SHIMMY_ERR_TIMEOUT && c->pq_n)
				rc = pop_msg(c, msg);
		} while (rc == SHIMMY_ERR_AGAIN);
	}
	pthread_mutex_unlock(&c->mu);
	return rc;
}

int shimmy_try_recv(shimmy_client *c, shimmy_msg **msg)
{
	int rc;

	if (!c || !msg)
		return SHIMMY_ERR_INVALID;
	pthread_mutex_lock(&c->mu);
	if (c->borrowed) {
		rc = SHIMMY_ERR_BUSY;
	} else if (c->th_running || c->on_msg) {
		rc = SHIMMY_ERR_STATE;
	} else {
		if (!c->pq_n && !c->pumping) {
			c->pumping = true;
			pump_once(c, 0);
			c->pumping = false;
		}
		rc = pop_msg(c, msg);
		if (rc == SHIMMY_ERR_AGAIN && c->fd < 0 && c->conn_err && !c->reconnect_at)
			rc = c->conn_err;
	}
	pthread_mutex_unlock(&c->mu);
	return rc;
}

void shimmy_msg_release(shimmy_client *c, shimmy_msg *msg)
{
	if (!c || msg != &c->msg)
		return;
	pthread_mutex_lock(&c->mu);
	if (c->shm_borrowed) {
		cshm_release(c->shm);
		c->shm_borrowed = false;
	}
	c->borrowed = false;
	ev_sync(c, false);
	pthread_mutex_unlock(&c->mu);
}

/* Hands up to max messages to fn (lock held), shm logs first. */
static int batch_drain(shimmy_client *c, shimmy_batch_fn fn, void *ctx, unsigned max)
{
	unsigned n = 0;
	shimmy_msg *m;
	cshm_msg sm[CSHM_NEXT_MANY_MAX];
	int k;

	while (n < max && c->pq_n && pop_msg(c, &m) == 0) {
		fn(m, ctx);
		if (c->shm_borrowed) {
			cshm_release(c->shm);
			c->shm_borrowed = false;
		}
		c->borrowed = false;
		n++;
	}
	/* Read positions go out every 64 records and at the end of the
	 * drain, not at each release. */
	if (c->shm)
		cshm_set_batch(c->shm, 64);
	/* A batch is borrowed from one log at a time (one topic), and given
	 * back with one overrun check. */
	while (n < max && c->shm && (k = cshm_next_many(c->shm, sm, max - n)) > 0) {
		bool same = false; /* c->msg has the batch's topic and no props */
		for (int i = 0; i < k; i++) {
			c->stats[SHIMMY_STAT_RX_MSGS]++;
			c->stats[SHIMMY_STAT_RX_BYTES] += sm[i].len;
			if (same && sm[i].props_len == 0) {
				c->msg.payload = sm[i].payload;
				c->msg.len = sm[i].len;
				c->msg.qos = sm[i].qos;
				c->msg.retain = sm[i].retain;
			} else if (msg_fill_shm(c, &sm[i]) == 0) {
				same = sm[i].props_len == 0;
			} else {
				continue;
			}
			fn(&c->msg, ctx);
			n++;
		}
		cshm_release(c->shm);
	}
	if (c->shm)
		cshm_set_batch(c->shm, 1); /* publishes what is pending */
	if (n)
		ev_sync(c, false);
	return (int)n;
}

/* The CPU's spin-wait hint (frees the core's resources for a sibling
 * hyperthread); a no-op elsewhere. */
static inline void cpu_pause(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#endif
}

/*
 * batch_drain() under the hold-off timer (shmpath/holdoff.h), for blocking
 * receives only (hold). While the subscriber is in a stream, each drain
 * stops where the writers were when it began (cshm_bound), and after a
 * drain that emptied the logs it keeps off them for a few us: the writers
 * fill whole cache lines undisturbed and the next drain takes them in one
 * batch, instead of both cores trading each line per message. The wait
 * touches no shared memory. Busy-pollers (timeout 0) never hold: they
 * asked for every message as soon as it lands. Lock held.
 */
static int batch_poll(shimmy_client *c, shimmy_batch_fn fn, void *ctx,
		      unsigned max, bool hold)
{
	int64_t end, ns;
	bool bound, fresh = false;
	int n;

	if (!hold || !c->shm)
		return batch_drain(c, fn, ctx, max);
	bound = shimmy_holdoff_streaming(&c->holdoff);
	if (c->hold_until_ns && !c->pq_n && bound) {
		/* Hold only when close behind the writers; the bound taken
		 * to see that serves the drain if we read on at once. */
		fresh = !shimmy_holdoff_hold(&c->holdoff,
					     cshm_bound(c->shm, SHIMMY_RING_BOUND_TAIL));
		while (!fresh && mono_ns() < c->hold_until_ns)
			for (unsigned i = 0; i < 16; i++)
				cpu_pause();
	}
	c->hold_until_ns = 0;
	if (bound && !fresh)
		cshm_bound(c->shm, SHIMMY_RING_BOUND_TAIL);
	n = batch_drain(c, fn, ctx, max);
	if (bound)
		cshm_bound(c->shm, 0);
	end = mono_ns();
	ns = shimmy_holdoff_polled(&c->holdoff, end, (unsigned)n,
				   (unsigned)n < max ? SHIMMY_HOLDOFF_EMPTIED : 0);
	if (ns)
		c->hold_until_ns = end + ns;
	return n;
}

int shimmy_recv_batch(shimmy_client *c, shimmy_batch_fn fn, void *ctx,
		      unsigned max, int timeout_ms)
{
	int rc;

	if (!c || !fn || !max)
		return SHIMMY_ERR_INVALID;
	pthread_mutex_lock(&c->mu);
	if (c->borrowed) {
		rc = SHIMMY_ERR_BUSY;
	} else if (c->th_running || c->on_msg) {
		rc = SHIMMY_ERR_STATE;
	} else if ((rc = batch_poll(c, fn, ctx, max, timeout_ms != 0)) == 0) {
		if (timeout_ms == 0) {
			if ((++c->batch_idle & 1023) == 0 && !c->pumping) {
				c->pumping = true;
				pump_once(c, 0);
				c->pumping = false;
				rc = batch_drain(c, fn, ctx, max);
			}
			if (rc == 0 && c->fd < 0 && c->conn_err && !c->reconnect_at)
				rc = c->conn_err;
		} else {
			uint64_t dl = timeout_ms < 0 ? 0 : now_ms() + (uint64_t)timeout_ms;
			shm_spin(c);
			/* As in shimmy_recv(): ready may yield nothing. */
			do {
				rc = wait_until(c, pred_has_msg, NULL, dl,
						!(c->o.flags & SHIMMY_OPT_RECONNECT) ||
							!c->want_conn);
				if (rc == 0 || c->pq_n)
					rc = batch_poll(c, fn, ctx, max, true);
				else if (rc == SHIMMY_ERR_TIMEOUT)
					break;
			} while (rc == 0);
			if (rc == SHIMMY_ERR_TIMEOUT)
				rc = 0;
		}
	}
	pthread_mutex_unlock(&c->mu);
	return rc;
}

/* ------------------------------------------------------------ caller loop */

int shimmy_client_fd(const shimmy_client *c)
{
	return c ? c->epfd : SHIMMY_ERR_INVALID;
}

int shimmy_client_process(shimmy_client *c)
{
	int rc = 0;

	if (!c)
		return SHIMMY_ERR_INVALID;
	pthread_mutex_lock(&c->mu);
	if (c->th_running) {
		rc = SHIMMY_ERR_STATE;
	} else if (!c->pumping) {
		c->pumping = true;
		pump_once(c, 0);
		c->pumping = false;
		/* The caller sleeps on shimmy_client_fd() next: ring for it, and
		 * make the fd readable now if a log already has data. */
		if (c->shm && cshm_arm(c->shm) && (c->on_msg || !c->borrowed))
			cshm_kick(c->shm);
		if (c->fd < 0 && !c->reconnect_at && c->want_conn)
			rc = c->conn_err ? c->conn_err : SHIMMY_ERR_CONN_LOST;
	}
	pthread_mutex_unlock(&c->mu);
	return rc;
}

int shimmy_client_timeout_ms(shimmy_client *c)
{
	int t;

	if (!c)
		return -1;
	pthread_mutex_lock(&c->mu);
	t = timeout_ms_locked(c);
	if (outq_pending(&c->s.out) && (t < 0 || t > 10))
		t = 10; /* unsent output the socket refused: retry soon */
	pthread_mutex_unlock(&c->mu);
	return t;
}

/* ------------------------------------------------------------ thread */

static void *thread_main(void *arg)
{
	shimmy_client *c = arg;

	pthread_mutex_lock(&c->mu);
	while (!c->th_stop) {
		c->pumping = true;
		pump_once(c, -1);
		c->pumping = false;
	}
	pthread_mutex_unlock(&c->mu);
	return NULL;
}

int shimmy_client_start_thread(shimmy_client *c)
{
	int rc = 0;

	if (!c)
		return SHIMMY_ERR_INVALID;
	pthread_mutex_lock(&c->mu);
	if (c->th_running || c->borrowed) {
		rc = SHIMMY_ERR_STATE;
	} else {
		c->th_stop = false;
		c->th_running = true;
		rc = -pthread_create(&c->th, NULL, thread_main, c);
		if (rc)
			c->th_running = false;
	}
	pthread_mutex_unlock(&c->mu);
	return rc;
}

int shimmy_client_stop_thread(shimmy_client *c)
{
	pthread_t th;

	if (!c)
		return SHIMMY_ERR_INVALID;
	pthread_mutex_lock(&c->mu);
	if (!c->th_running) {
		pthread_mutex_unlock(&c->mu);
		return SHIMMY_ERR_STATE;
	}
	c->th_stop = true;
	th = c->th;
	wake_thread(c);
	pthread_mutex_unlock(&c->mu);
	pthread_join(th, NULL);
	pthread_mutex_lock(&c->mu);
	c->th_running = false;
	pthread_mutex_unlock(&c->mu);
	return 0;
}

/* ------------------------------------------------------------ stats */

uint64_t shimmy_client_stat(shimmy_client *c, shimmy_stat which)
{
	uint64_t v;

	if (!c || (unsigned)which >= SHIMMY_STAT__COUNT)
		return 0;
	pthread_mutex_lock(&c->mu);
	v = c->stats[which];
	if (which == SHIMMY_STAT_LOST_MSGS)
		v += cshm_lost(c->shm);
	if (which == SHIMMY_STAT_SHM_DETACHED)
		v += cshm_detached(c->shm);
	if (which == SHIMMY_STAT_SHARE_LOST)
		v += cshm_share_lost(c->shm);
	pthread_mutex_unlock(&c->mu);
	return v;
}

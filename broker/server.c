/*
 * broker/server.c — see server.h. Level-triggered epoll over non-blocking
 * sockets, one loop per worker thread. Each connection has an input buffer
 * (grown up to the size of a partially received packet) and no output
 * buffer of its own: output lives in the core (inline bytes plus large
 * payloads by reference) and is drained with one writev-style sendmsg per
 * broker_conn_output_iov() call (broker_conn_output() one piece at a time
 * while fds ride along), then broker_conn_written().
 *
 * Threads and the core lock. The server runs loop 0 on the thread that
 * calls server_run() and loops 1..n-1 on threads of their own. A
 * connection belongs to one loop for its life: only that loop's thread
 * reads it, writes it, changes its epoll interest and closes it. The
 * protocol core is one shared broker; every call into it is made with
 * s->lock held. A loop thread holds the lock for its whole turn except
 * around syscalls that move data or sleep (epoll_wait, recv, send), so the
 * I/O of all loops runs in parallel and only protocol work is serialized.
 * The core keeps output bytes it handed out in place until they are
 * confirmed written (broker.h), which is what lets a send run unlocked.
 *
 * Output produced on one loop for another loop's connection (the core
 * marks it dirty) is put on the owner's flush queue, under the lock; an
 * owner that is asleep in epoll_wait is woken through its eventfd, at
 * most once per sleep. Loop 0 also owns the listeners (it accepts and
 * deals connections out round-robin through the loops' inboxes), the
 * signals, the shm eventfd and the core's timers (broker_tick).
 *
 * WebSocket listeners: loop 0 accepts and counts as for TCP, then gives
 * the socket to the WS thread (ws_adopt), which owns the connection. That
 * thread takes the core lock through s->ws_loop, a srv_loop that only
 * wakes the loops it gave work to; dirty WS conns go to ws_conn_dirty()
 * instead of a flush queue.
 *
 * Loop turn (lock held except where noted):
 *   adopt inbox -> epoll_wait (unlocked)
 *   -> dispatch events (accept, read+input, write, wake, signals)
 *   -> hand dirty conns to their owners -> flush own queue
 *   -> [loop 0] broker_tick when due -> hand out and flush again
 *   -> expire lingering closes -> free dead conns
 *
 * A srv_conn whose transport is gone is unlinked and put on its loop's
 * dead list; it is freed only at the end of the loop turn, so no pointer
 * taken earlier in the turn (an epoll event) can dangle. Other loops never
 * keep a srv_conn pointer past the lock: they reach it only through
 * broker_conn_io() of a live broker_conn, and closing unlinks it from its
 * flush queue under the lock.
 */
#include "broker/server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "broker/broker.h"
#include "broker/ws.h"

#define SRV_MAX_SOCKS (CFG_MAX_LISTENERS * 4) /* v4+v6, getaddrinfo sets */
#define SRV_RBUF_SIZE (256u * 1024) /* each loop's shared read buffer */
#define SRV_IN_KEEP_SMALL 4096u       /* a drained tail buffer this small is kept */
/* A partial packet at least this large is completed by reads straight into
 * c->in (no copying of the partial bytes to and from the shared buffer on
 * every read). */
#define SRV_IN_DIRECT_MIN (16u * 1024)
#define SRV_READ_BUDGET 16	       /* reads per conn per wakeup */
#define SRV_ACCEPT_BUDGET 64
#define SRV_MAX_EVENTS 256
#define SRV_LINGER_MS 1000	/* WANT_CLOSE: time given to flush */
#define SRV_ACCEPT_PAUSE_MS 1000 /* after EMFILE and friends */
#define SRV_PEER_MAX 128

/* What an epoll event's data.ptr points at: every such struct starts with
 * a srv_handle. */
typedef enum srv_kind {
	SRV_LISTENER = 1,
	SRV_CONN = 2,
	SRV_SIGNAL = 3,
	SRV_SHM = 4,  /* the broker's shm eventfd (broker_shm_fd) */
	SRV_WAKE = 5, /* a loop's eventfd: flush queue or inbox has work */
} srv_kind;

typedef struct srv_handle {
	srv_kind kind;
} srv_handle;

/* Counts are guarded by the core lock; the rest is loop 0's. */
typedef struct srv_listener {
	srv_handle h; /* first */
	int fd;
	broker_transport transport;
	uint16_t port;		/* TCP, for logs */
	char path[108];		/* UNIX: file to remove on exit */
	int max_connections;	/* <= 0: unlimited */
	size_t conn_count;
	uint64_t paused_until_ms; /* 0: accepting */
} srv_listener;

/* srv_conn.state bits (owner loop only). */
enum {
	SRV_CONN_OUT_ARMED = 1 << 0, /* EPOLLOUT is in the interest set */
	SRV_CONN_LINGER = 1 << 1,    /* WANT_CLOSE, flushing before close */
	SRV_CONN_PAUSED = 1 << 2,    /* THROTTLED: EPOLLIN left out */
};

/* An fd the core attached to an output byte (SCM_RIGHTS), waiting to be
 * sent with the write that carries that byte. */
typedef struct srv_fd {
	uint64_t pos; /* absolute output position of the byte */
	int fd;       /* owned */
} srv_fd;

/* fds passed per sendmsg at most; the receiver's control buffer holds
 * more (clients/ reserve room for 64). */
#define SRV_FDS_PER_SEND 32

/* Output segments per sendmsg at most. */
#define SRV_IOV_MAX IOV_MAX

struct srv_loop;

/*
 * Invariants: bc != NULL iff the conn is on its loop's conns and fd is
 * open; a conn with bc == NULL is on loop->dead. in_len <= in_cap.
 * fds[0..fd_count) are in pos order, every pos >= out_pos.
 * Guarded by the core lock: bc, fds, fd_count, out_pos, the fq_* links.
 * Everything else belongs to the owner loop's thread.
 */
typedef struct srv_conn {
	srv_handle h; /* first */
	int fd;
	unsigned state;
	struct srv_loop *loop; /* owner */
	broker_conn *bc;
	srv_listener *listener;
	uint8_t *in;
	size_t in_len, in_cap;
	uint64_t linger_deadline_ms;
	uint64_t out_pos;	/* output bytes written so far */
	srv_fd *fds;		/* attached fds not yet sent */
	size_t fd_count, fd_cap;
	struct srv_conn *prev, *next; /* loop->conns */
	struct srv_conn *next_dead;   /* loop->dead */
	struct srv_conn *fq_prev, *fq_next; /* loop flush queue */
	bool on_fq;
} srv_conn;

/* A socket loop 0 accepted for another loop, waiting in its inbox. */
typedef struct srv_accepted {
	struct srv_accepted *next;
	int fd;
	srv_listener *l;
	char peer[SRV_PEER_MAX];
} srv_accepted;

/* Everything one loop thread owns. */
typedef struct srv_loop {
	server *s;
	unsigned idx;
	pthread_t thread;
	bool started;
	int epfd;
	int wakefd; /* eventfd in epfd: another loop posted work */
	srv_handle wake_h;
	srv_conn *conns;
	srv_conn *dead;
	uint8_t *rbuf; /* shared read buffer, SRV_RBUF_SIZE */
	size_t rbuf_cap;
	size_t linger_count;
	uint64_t last_event_us; /* busy polling */
	uint32_t poll_us;	/* adaptive polling window, 0..adaptive_poll_us */
	uint64_t kick_mask;	/* loops this one must wake when it unlocks */
	/* Guarded by the core lock. */
	srv_conn *fq_head, *fq_tail;
	srv_accepted *inbox;
	bool sleeping; /* in (or about to enter) a blocking epoll_wait */
	bool kicked;   /* its eventfd was written since it last woke */
} srv_loop;

struct server {
	broker_cfg *cfg;
	shimmy_log *log;
	server_reload_fn reload;
	void *reload_ctx;
	pthread_mutex_t lock; /* the core lock (see the top of this file) */
	broker *b;
	uint64_t core_ms;     /* last clock given to the core (monotonic) */
	srv_handle sig_h;
	srv_handle shm_h;
	bool shm_more; /* shm logs still hold data: poll without sleeping */
	int sigfd;
	srv_listener listeners[SRV_MAX_SOCKS];
	int listener_count;
	size_t conn_count;    /* every loop's, plus inboxes */
	srv_loop *loops;
	unsigned loop_count;
	unsigned next_loop;   /* round-robin for accepted conns */
	uint64_t next_tick_ms;
	/* WebSocket listeners' connections run on the WS thread (ws.h);
	 * NULL without such listeners. ws_loop stands for that thread in
	 * loop_lock/loop_unlock/process_dirty: it is no loop of its own
	 * (nothing is ever queued on it), only the waker of others. */
	ws_server *ws;
	srv_loop ws_loop;
	bool stop;
	int run_err;          /* first fatal loop error, negative errno */
};

static uint64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static uint64_t mono_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/*
 * The clock for a call into the core (lock held). Loops read the clock at
 * different moments, so it is clamped to never go backwards: the core
 * subtracts stored times from it.
 */
static uint64_t core_clock(server *s)
{
	uint64_t now = mono_ms();
	if (now < s->core_ms)
		now = s->core_ms;
	s->core_ms = now;
	return now;
}

/* ---- the core lock and waking loops ---- */

static void loop_lock(srv_loop *loop)
{
	pthread_mutex_lock(&loop->s->lock);
}

/* Unlocks, then wakes the loops this turn posted work to. */
static void loop_unlock(srv_loop *loop)
{
	uint64_t mask = loop->kick_mask;
	loop->kick_mask = 0;
	pthread_mutex_unlock(&loop->s->lock);
	while (mask) {
		unsigned i = (unsigned)__builtin_ctzll(mask);
		mask &= mask - 1;
		uint64_t one = 1;
		/* EAGAIN (counter full) still leaves it readable. */
		ssize_t w = write(loop->s->loops[i].wakefd, &one, sizeof(one));
		(void)w;
	}
}

/* Lock held: makes sure `to` looks at its queues soon. */
static void loop_post_wake(srv_loop *from, srv_loop *to)
{
	if (to == from || !to->sleeping || to->kicked)
		return;
	to->kicked = true;
	from->kick_mask |= 1ull << to->idx;
}

/* Lock held: queues c for a flush by its owner. */
static void fq_push(srv_loop *from, srv_conn *c)
{
	srv_loop *to = c->loop;
	if (c->on_fq)
		return;
	c->on_fq = true;
	c->fq_next = NULL;
	c->fq_prev = to->fq_tail;
	if (to->fq_tail)
		to->fq_tail->fq_next = c;
	else
		to->fq_head = c;
	to->fq_tail = c;
	loop_post_wake(from, to);
}

/* Lock held. */
static void fq_unlink(srv_conn *c)
{
	srv_loop *loop = c->loop;
	if (!c->on_fq)
		return;
	if (c->fq_prev)
		c->fq_prev->fq_next = c->fq_next;
	else
		loop->fq_head = c->fq_next;
	if (c->fq_next)
		c->fq_next->fq_prev = c->fq_prev;
	else
		loop->fq_tail = c->fq_prev;
	c->on_fq = false;
	c->fq_prev = c->fq_next = NULL;
}

/* ---- connections ---- */

static int conn_set_events(srv_conn *c, uint32_t events)
{
	struct epoll_event ev = { .events = events, .data.ptr = c };
	if (epoll_ctl(c->loop->epfd, EPOLL_CTL_MOD, c->fd, &ev) < 0)
		return -errno;
	return 0;
}

static uint32_t conn_events(const srv_conn *c)
{
	if (c->state & SRV_CONN_LINGER)
		return EPOLLOUT;
	return ((c->state & SRV_CONN_PAUSED) ? 0 : EPOLLIN) |
	       ((c->state & SRV_CONN_OUT_ARMED) ? EPOLLOUT : 0);
}

/* Closes every attached fd not yet sent. */
static void conn_drop_fds(srv_conn *c)
{
	for (size_t i = 0; i < c->fd_count; i++)
		close(c->fds[i].fd);
	c->fd_count = 0;
}

/* Called by the core, so with the lock held, from any loop thread. */
int server_conn_attach_fds(void *io, int *fds, unsigned n)
{
	srv_conn *c = io;
	int rc = 0;
	if (!c || !c->bc || c->listener->transport != BROKER_TRANSPORT_UNIX) {
		rc = -ENOTSUP;
		goto out_close;
	}
	if (c->fd_count + n > c->fd_cap) {
		size_t ncap = c->fd_cap ? c->fd_cap * 2 : 16;
		while (ncap < c->fd_count + n)
			ncap *= 2;
		srv_fd *p = realloc(c->fds, ncap * sizeof(*p));
		if (!p) {
			rc = -ENOMEM;
			goto out_close;
		}
		c->fds = p;
		c->fd_cap = ncap;
	}
	/* The packet the fds belong to is appended right after this call:
	 * its first byte sits behind everything pending now (including
	 * bytes an unlocked send of the owner is writing: out_pos and the
	 * pending count move together, under the lock, after it). */
	size_t pending = broker_conn_pending(c->bc);
	for (unsigned i = 0; i < n; i++)
		c->fds[c->fd_count++] = (srv_fd){ c->out_pos + pending, fds[i] };
	return 0;

out_close:
	for (unsigned i = 0; i < n; i++)
		close(fds[i]);
	return rc;
}

/*
 * One write of data[0..len) carrying, as SCM_RIGHTS, every attached fd
 * whose byte lies in it (at most SRV_FDS_PER_SEND; len is cut before the
 * byte of the first fd that does not fit). An fd may so arrive before its
 * byte, never after: the receiver queues fds in order (shmpath/ctl.h).
 * Lock held (fds are shared with the core's attach hook).
 */
static ssize_t conn_send(srv_conn *c, const uint8_t *data, size_t len)
{
	if (c->fd_count == 0 || c->fds[0].pos >= c->out_pos + len)
		return send(c->fd, data, len, MSG_NOSIGNAL | MSG_DONTWAIT);
	int fds[SRV_FDS_PER_SEND];
	size_t n = 0;
	while (n < c->fd_count && c->fds[n].pos < c->out_pos + len) {
		if (n == SRV_FDS_PER_SEND) {
			len = (size_t)(c->fds[n].pos - c->out_pos);
			break;
		}
		fds[n] = c->fds[n].fd;
		n++;
	}
	if (len == 0)
		len = 1; /* the first byte is the attached one */
	union {
		char buf[CMSG_SPACE(sizeof(int) * SRV_FDS_PER_SEND)];
		struct cmsghdr align;
	} u;
	memset(&u, 0, sizeof(u));
	struct iovec iov = { (void *)data, len };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1,
			     .msg_control = u.buf,
			     .msg_controllen = CMSG_SPACE(sizeof(int) * n) };
	struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(sizeof(int) * n);
	memcpy(CMSG_DATA(cm), fds, sizeof(int) * n);
	ssize_t w = sendmsg(c->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
	if (w > 0) {
		/* Sent with the first byte: ours to close now. */
		for (size_t i = 0; i < n; i++)
			close(fds[i]);
		c->fd_count -= n;
		memmove(c->fds, c->fds + n, c->fd_count * sizeof(*c->fds));
	}
	return w;
}

/* The transport is gone or done: close it and tell the core. Owner
 * thread, lock held. */
static void conn_close(srv_conn *c)
{
	srv_loop *loop = c->loop;
	server *s = loop->s;
	if (!c->bc)
		return;
	epoll_ctl(loop->epfd, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	c->fd = -1;
	conn_drop_fds(c);
	fq_unlink(c);
	if (c->prev)
		c->prev->next = c->next;
	else
		loop->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	c->next_dead = loop->dead;
	loop->dead = c;
	if (c->state & SRV_CONN_LINGER)
		loop->linger_count--;
	c->listener->conn_count--;
	s->conn_count--;
	broker_conn *bc = c->bc;
	c->bc = NULL;
	broker_conn_closed(s->b, bc, core_clock(s));
}

/* Closing on the core's request: everything was flushed, so send FIN
 * before closing. */
static void conn_finish_close(srv_conn *c)
{
	shutdown(c->fd, SHUT_WR);
	conn_close(c);
}

/*
 * Writes pending output until it is drained or the socket is full. Owner
 * thread, lock held; the lock is dropped around plain sends (the core
 * keeps the bytes in place until broker_conn_written()).
 * Returns 0 when drained, 1 when output remains (EPOLLOUT armed), or a
 * negative errno on a socket error (the caller closes).
 */
static int conn_flush(srv_conn *c)
{
	struct iovec iov[SRV_IOV_MAX];
	for (;;) {
		ssize_t w;
		int err = 0;
		if (!c->bc)
			return -EPIPE;
		if (c->fd_count == 0) {
			/* The common case: every segment in one writev,
			 * without the lock. */
			int n = broker_conn_output_iov(c->bc, iov, SRV_IOV_MAX);
			if (n == 0)
				break;
			struct msghdr mh = { .msg_iov = iov,
					     .msg_iovlen = (size_t)n };
			loop_unlock(c->loop);
			w = n == 1 ? send(c->fd, iov[0].iov_base,
					  iov[0].iov_len,
					  MSG_NOSIGNAL | MSG_DONTWAIT)
				   : sendmsg(c->fd, &mh,
					     MSG_NOSIGNAL | MSG_DONTWAIT);
			err = errno;
			loop_lock(c->loop);
		} else {
			/* fds ride on one contiguous piece at a time. */
			const uint8_t *data;
			size_t len;
			broker_conn_output(c->bc, &data, &len);
			if (len == 0)
				break;
			w = conn_send(c, data, len);
			err = errno;
		}
		if (w > 0) {
			c->out_pos += (uint64_t)w;
			broker_conn_written(c->bc, (size_t)w);
			continue;
		}
		broker_conn_written(c->bc, 0);
		if (w < 0 && err == EINTR)
			continue;
		if (w < 0 && (err == EAGAIN || err == EWOULDBLOCK)) {
			if (!(c->state & SRV_CONN_OUT_ARMED)) {
				c->state |= SRV_CONN_OUT_ARMED;
				int rc = conn_set_events(c, conn_events(c));
				if (rc < 0)
					return rc;
			}
			return 1;
		}
		return w < 0 ? -err : -EIO;
	}
	if (c->state & SRV_CONN_OUT_ARMED) {
		c->state &= ~(unsigned)SRV_CONN_OUT_ARMED;
		int rc = conn_set_events(c, conn_events(c));
		if (rc < 0)
			return rc;
	}
	return 0;
}

/*
 * Input buffering. Every read lands in the loop's shared read buffer, so an
 * idle connection owns no input memory at all. Only the unconsumed tail (a
 * partial packet) is kept per connection, in c->in, and is copied back in
 * front of the next read. A partial packet larger than the shared buffer is
 * assembled in c->in itself, grown to the packet's size.
 */

/* Stores buf[0..len) as c's pending partial packet. 0 or -ENOMEM. */
static int conn_keep_tail(srv_conn *c, const uint8_t *buf, size_t len)
{
	if (len == 0) {
		/* Drained: give the memory back unless it is small and likely
		 * to be needed again at once. */
		if (c->in_cap > SRV_IN_KEEP_SMALL) {
			free(c->in);
			c->in = NULL;
			c->in_cap = 0;
		}
		c->in_len = 0;
		return 0;
	}
	if (len > c->in_cap) {
		size_t cap = len < SRV_IN_KEEP_SMALL ? SRV_IN_KEEP_SMALL : len;
		uint8_t *p = realloc(c->in, cap);
		if (!p)
			return -ENOMEM;
		c->in = p;
		c->in_cap = cap;
	}
	if (buf != c->in)
		memmove(c->in, buf, len);
	c->in_len = len;
	return 0;
}

/*
 * One read of a packet too large for the shared buffer, straight into c->in
 * grown to the packet's size. Returns bytes read, 0 on EOF or -errno.
 * Lock dropped around the recv.
 */
static ssize_t conn_read_large(srv_conn *c, size_t need)
{
	if (need > c->in_cap) {
		uint8_t *p = realloc(c->in, need);
		if (!p)
			return -ENOMEM;
		c->in = p;
		c->in_cap = need;
	}
	loop_unlock(c->loop);
	ssize_t r = recv(c->fd, c->in + c->in_len, c->in_cap - c->in_len, 0);
	int err = errno;
	loop_lock(c->loop);
	if (r < 0)
		return -err;
	c->in_len += (size_t)r;
	return r;
}

/* Keeps buf[used..have) as c's pending partial packet (closing c when out
 * of memory). Returns 0, or -1 when c was closed. Owner thread, lock held. */
static int conn_keep_rest(srv_conn *c, const uint8_t *buf, size_t used,
			  size_t have)
{
	if (used > have)
		used = have; /* defensive: never trust a count */
	if (conn_keep_tail(c, buf + used, have - used) == 0)
		return 0;
	log_write(c->loop->s->log, LOG_ERR,
		  "Closing connection: out of memory for input.");
	conn_close(c);
	return -1;
}

/* Back-pressure: stops reading c (the rest stays in the socket). Owner
 * thread, lock held. May close c. */
static void conn_pause(srv_conn *c)
{
	c->state |= SRV_CONN_PAUSED;
	if (conn_set_events(c, conn_events(c)) < 0)
		conn_close(c);
}

/* Reads until EAGAIN, a short read or the budget, feeding the core after
 * each read. Owner thread, lock held (dropped around each recv). May close
 * c. */
static void conn_read(srv_conn *c)
{
	srv_loop *loop = c->loop;
	server *s = loop->s;
	for (int i = 0; i < SRV_READ_BUDGET; i++) {
		size_t need = c->in_len
				      ? broker_conn_input_need(c->bc, c->in,
							       c->in_len)
				      : 0;
		const uint8_t *buf;
		size_t have, room;
		ssize_t r;
		if (need > loop->rbuf_cap || need >= SRV_IN_DIRECT_MIN) {
			room = need - c->in_len;
			r = conn_read_large(c, need);
			buf = c->in;
			have = c->in_len;
		} else {
			if (c->in_len)
				memcpy(loop->rbuf, c->in, c->in_len);
			room = loop->rbuf_cap - c->in_len;
			loop_unlock(loop);
			r = recv(c->fd, loop->rbuf + c->in_len, room, 0);
			if (r < 0)
				r = -errno;
			loop_lock(loop);
			buf = loop->rbuf;
			have = c->in_len + (r > 0 ? (size_t)r : 0);
		}
		if (!c->bc)
			return;
		if (r < 0) {
			if (r == -EINTR)
				continue;
			if (r == -EAGAIN || r == -EWOULDBLOCK)
				return;
			log_write(s->log, LOG_DEBUG, "Socket error on read: %s.",
				  strerror((int)-r));
			conn_close(c);
			return;
		}
		if (r == 0) {
			conn_close(c);
			return;
		}
		size_t used;
		int taken = 0;
		uint64_t now = core_clock(s);
		if (buf == c->in && have == need && need >= SRV_IN_DIRECT_MIN) {
			/* Exactly one large packet in c->in: the core may keep
			 * it as the message's payload (no copy). */
			used = broker_conn_input_owned(s->b, c->bc, c->in,
						       have, now, &taken);
			if (taken) {
				c->in = NULL;
				c->in_len = c->in_cap = 0;
			}
		} else {
			used = broker_conn_input(s->b, c->bc, buf, have, now);
		}
		if (!taken && conn_keep_rest(c, buf, used, have) < 0)
			return;
		if (broker_conn_flags(c->bc) & BROKER_CONN_WANT_CLOSE)
			return;
		if (broker_conn_flags(c->bc) & BROKER_CONN_THROTTLED) {
			conn_pause(c);
			return;
		}
		if ((size_t)r < room)
			return; /* the socket is most likely drained */
	}
}

/* Applies the complete packets a throttled conn left in c->in. Owner
 * thread, lock held. May close c. */
static void conn_feed_tail(srv_conn *c)
{
	server *s = c->loop->s;
	while (c->bc && c->in_len &&
	       !(broker_conn_flags(c->bc) &
		 (BROKER_CONN_THROTTLED | BROKER_CONN_WANT_CLOSE))) {
		size_t need = broker_conn_input_need(c->bc, c->in, c->in_len);
		if (need == 0 || need > c->in_len)
			return;
		size_t used = broker_conn_input(s->b, c->bc, c->in, c->in_len,
						core_clock(s));
		if (used == 0 || conn_keep_rest(c, c->in, used, c->in_len) < 0)
			return;
	}
}

/* The core lifted c's throttle: read it again, starting with what it
 * left unprocessed. Owner thread, lock held. May close c. */
static void conn_resume(srv_conn *c)
{
	if (!(c->state & SRV_CONN_PAUSED) || !c->bc ||
	    (broker_conn_flags(c->bc) & BROKER_CONN_THROTTLED))
		return;
	c->state &= ~(unsigned)SRV_CONN_PAUSED;
	if (conn_set_events(c, conn_events(c)) < 0) {
		conn_close(c);
		return;
	}
	conn_feed_tail(c);
	if (c->bc && (broker_conn_flags(c->bc) & BROKER_CONN_THROTTLED))
		conn_pause(c);
}

/* Owner thread, lock held. */
static void conn_event(srv_conn *c, uint32_t ev)
{
	if (!c->bc)
		return;
	if (ev & EPOLLERR) {
		conn_close(c);
		return;
	}
	if ((ev & EPOLLIN) && !(c->state & SRV_CONN_LINGER)) {
		conn_read(c);
		if (!c->bc)
			return;
	}
	if (ev & EPOLLOUT) {
		int rc = conn_flush(c);
		if (rc < 0) {
			conn_close(c);
			return;
		}
		if (rc == 0 && (c->state & SRV_CONN_LINGER)) {
			conn_finish_close(c);
			return;
		}
	}
	/* Hang-up without readable data (or while lingering): nobody is
	 * left to read what we would write. */
	if ((ev & EPOLLHUP) && (!(ev & EPOLLIN) || (c->state & SRV_CONN_LINGER)))
		conn_close(c);
}

/* Lock held: hands every conn the core marked to its owner's queue. */
static void process_dirty(srv_loop *loop)
{
	broker_conn *bc;
	while ((bc = broker_next_dirty(loop->s->b))) {
		if (broker_conn_transport(bc) == BROKER_TRANSPORT_WS) {
			ws_conn_dirty(loop->s->ws, broker_conn_io(bc));
			continue;
		}
		srv_conn *c = broker_conn_io(bc);
		if (c && c->bc == bc)
			fq_push(loop, c);
	}
}

/* Lock held: flushes the conns queued for this loop (those queued when it
 * starts; more may arrive while a send runs unlocked), and starts the
 * closes the core asked for. */
static void flush_queue(srv_loop *loop)
{
	size_t budget = 0;
	for (srv_conn *c = loop->fq_head; c; c = c->fq_next)
		budget++;
	while (budget-- && loop->fq_head) {
		srv_conn *c = loop->fq_head;
		fq_unlink(c);
		if (!c->bc)
			continue;
		int rc = conn_flush(c);
		if (rc < 0) {
			conn_close(c);
			continue;
		}
		if (!(broker_conn_flags(c->bc) & BROKER_CONN_WANT_CLOSE)) {
			conn_resume(c);
			continue;
		}
		if (rc == 0) {
			conn_finish_close(c);
		} else if (!(c->state & SRV_CONN_LINGER)) {
			c->state |= SRV_CONN_LINGER;
			c->linger_deadline_ms = mono_ms() + SRV_LINGER_MS;
			loop->linger_count++;
			if (conn_set_events(c, conn_events(c)) < 0)
				conn_close(c);
		}
	}
}

static void free_dead(srv_loop *loop)
{
	while (loop->dead) {
		srv_conn *c = loop->dead;
		loop->dead = c->next_dead;
		free(c->fds);
		free(c->in);
		free(c);
	}
}

/* ---- listeners ---- */

static void format_peer(const struct sockaddr_storage *ss,
			const srv_listener *l, char *out, size_t cap)
{
	char addr[INET6_ADDRSTRLEN];
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)ss;
		inet_ntop(AF_INET, &in->sin_addr, addr, sizeof(addr));
		snprintf(out, cap, "%s:%u", addr, ntohs(in->sin_port));
	} else if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *in6 =
			(const struct sockaddr_in6 *)ss;
		inet_ntop(AF_INET6, &in6->sin6_addr, addr, sizeof(addr));
		snprintf(out, cap, "[%s]:%u", addr, ntohs(in6->sin6_port));
	} else {
		snprintf(out, cap, "unix:%s", l->path);
	}
}


/* Loop 0 only (the listeners live in its epoll set). */
static void listener_pause(server *s, srv_listener *l, uint64_t now)
{
	struct epoll_event ev = { .events = 0, .data.ptr = l };
	epoll_ctl(s->loops[0].epfd, EPOLL_CTL_MOD, l->fd, &ev);
	l->paused_until_ms = now + SRV_ACCEPT_PAUSE_MS;
}

static void listener_resume(server *s, srv_listener *l)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = l };
	epoll_ctl(s->loops[0].epfd, EPOLL_CTL_MOD, l->fd, &ev);
	l->paused_until_ms = 0;
}

/* Sets up one accepted socket on loop (its thread, lock held; the
 * listener's and server's counts already include it). Returns 0, or a
 * negative errno with fd still open and the counts unchanged. */
static int conn_add(srv_loop *loop, srv_listener *l, int fd, const char *peer)
{
	server *s = loop->s;
	if (l->transport == BROKER_TRANSPORT_TCP) {
		int one = 1;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	}
	srv_conn *c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->h.kind = SRV_CONN;
	c->fd = fd;
	c->loop = loop;
	c->listener = l;
	c->bc = broker_conn_open(s->b, l->transport, peer, c, core_clock(s));
	if (!c->bc) {
		free(c);
		return -ENOMEM;
	}
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = c };
	if (epoll_ctl(loop->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
		int err = -errno;
		broker_conn_closed(s->b, c->bc, core_clock(s));
		free(c);
		return err;
	}
	c->next = loop->conns;
	if (loop->conns)
		loop->conns->prev = c;
	loop->conns = c;
	return 0;
}

/* conn_add(), undoing the counts and closing fd on failure. */
static void conn_adopt(srv_loop *loop, srv_listener *l, int fd,
		       const char *peer)
{
	int rc = conn_add(loop, l, fd, peer);
	if (rc == 0)
		return;
	log_write(loop->s->log, LOG_ERR, "Dropping connection from %s: %s.",
		  peer, strerror(-rc));
	close(fd);
	l->conn_count--;
	loop->s->conn_count--;
}

/* Lock held: adopts what loop 0 dealt to this loop. */
static void loop_adopt_inbox(srv_loop *loop)
{
	while (loop->inbox) {
		srv_accepted *a = loop->inbox;
		loop->inbox = a->next;
		conn_adopt(loop, a->l, a->fd, a->peer);
		free(a);
	}
}

/* Loop 0, lock held: deal_conn() is out of memory for fd. */
static void deal_drop(server *s, srv_listener *l, int fd, const char *peer)
{
	log_write(s->log, LOG_ERR, "Dropping connection from %s: out of memory.",
		  peer);
	close(fd);
	l->conn_count--;
	s->conn_count--;
}

/* Loop 0, lock held: gives fd to the next loop in turn (WebSocket
 * listeners' to the WS thread). */
static void deal_conn(srv_loop *loop0, srv_listener *l, int fd,
		      const char *peer)
{
	server *s = loop0->s;
	l->conn_count++;
	s->conn_count++;
	if (l->transport == BROKER_TRANSPORT_WS) {
		if (ws_adopt(s->ws, fd, peer, l) < 0)
			deal_drop(s, l, fd, peer);
		return;
	}
	srv_loop *to = &s->loops[s->next_loop];
	s->next_loop = (s->next_loop + 1) % s->loop_count;
	if (to == loop0) {
		conn_adopt(loop0, l, fd, peer);
		return;
	}
	srv_accepted *a = malloc(sizeof(*a));
	if (!a) {
		deal_drop(s, l, fd, peer);
		return;
	}
	a->fd = fd;
	a->l = l;
	snprintf(a->peer, sizeof(a->peer), "%s", peer);
	/* FIFO is not needed: each conn is independent. */
	a->next = to->inbox;
	to->inbox = a;
	loop_post_wake(loop0, to);
}

/* Loop 0, lock held. */
static void listener_accept(srv_loop *loop0, srv_listener *l)
{
	server *s = loop0->s;
	for (int i = 0; i < SRV_ACCEPT_BUDGET; i++) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		int fd = accept4(l->fd, (struct sockaddr *)&ss, &sl,
				 SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return;
			/* EMFILE, ENFILE, ENOBUFS, ENOMEM: level-triggered
			 * epoll would spin, so stop accepting for a while. */
			log_write(s->log, LOG_ERR,
				  "Unable to accept new connection: %s.",
				  strerror(errno));
			listener_pause(s, l, mono_ms());
			return;
		}
		char peer[SRV_PEER_MAX];
		format_peer(&ss, l, peer, sizeof(peer));
		uint32_t max_all = s->cfg->max_connections;
		if ((max_all && s->conn_count >= max_all) ||
		    (l->max_connections > 0 &&
		     l->conn_count >= (size_t)l->max_connections)) {
			log_write(s->log, LOG_NOTICE,
				  "Client connection from %s denied: max_connections exceeded.",
				  peer);
			close(fd);
			continue;
		}
		if (l->transport != BROKER_TRANSPORT_UNIX)
			log_write(s->log, LOG_NOTICE,
				  "New connection from %s on port %u.", peer,
				  l->port);
		else
			log_write(s->log, LOG_NOTICE,
				  "New connection from %s.", peer);
		deal_conn(loop0, l, fd, peer);
	}
}

/* Registers an open listening socket with loop 0. Returns 0 or a negative
 * errno (the caller closes fd). */
static int listener_register(server *s, int fd, broker_transport t,
			     const cfg_listener *cl)
{
	if (s->listener_count >= SRV_MAX_SOCKS)
		return -ENOSPC;
	srv_listener *l = &s->listeners[s->listener_count];
	memset(l, 0, sizeof(*l));
	l->h.kind = SRV_LISTENER;
	l->fd = fd;
	l->transport = t;
	l->port = cl->port;
	l->max_connections = cl->max_connections;
	if (t == BROKER_TRANSPORT_UNIX)
		snprintf(l->path, sizeof(l->path), "%s", cl->path);
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = l };
	if (epoll_ctl(s->loops[0].epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
		return -errno;
	s->listener_count++;
	return 0;
}

/* Creates, binds and listens. Returns the fd or a negative errno. */
static int tcp_socket(const struct sockaddr *sa, socklen_t salen)
{
	int fd = socket(sa->sa_family,
			SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	/* One socket per family keeps the v4 and v6 logs and errors apart. */
	if (sa->sa_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	if (bind(fd, sa, salen) < 0 || listen(fd, SOMAXCONN) < 0) {
		int err = -errno;
		close(fd);
		return err;
	}
	return fd;
}

static int open_tcp_addr(server *s, const cfg_listener *cl,
			 const struct sockaddr *sa, socklen_t salen)
{
	bool ws = cl->protocol == CFG_PROTOCOL_WEBSOCKETS;
	const char *fam = sa->sa_family == AF_INET6 ? "ipv6" : "ipv4";
	log_write(s->log, LOG_NOTICE, "Opening %s%s listen socket on port %u.",
		  ws ? "websockets " : "", fam, cl->port);
	int fd = tcp_socket(sa, salen);
	if (fd < 0)
		return fd;
	int rc = listener_register(s, fd,
				   ws ? BROKER_TRANSPORT_WS : BROKER_TRANSPORT_TCP,
				   cl);
	if (rc < 0)
		close(fd);
	return rc;
}

static int open_tcp(server *s, const cfg_listener *cl)
{
	if (cl->address[0] == '\0') {
		/* All addresses: one socket per family. A host without
		 * IPv6 (or IPv4) still gets the other when both were asked. */
		struct sockaddr_in in = { .sin_family = AF_INET,
					  .sin_port = htons(cl->port),
					  .sin_addr.s_addr = htonl(INADDR_ANY) };
		struct sockaddr_in6 in6 = { .sin6_family = AF_INET6,
					    .sin6_port = htons(cl->port),
					    .sin6_addr = in6addr_any };
		const struct {
			cfg_family skip; /* the family setting that excludes it */
			struct sockaddr *sa;
			socklen_t len;
			const char *name;
		} fams[] = {
			{ CFG_FAMILY_IPV6, (struct sockaddr *)&in, sizeof(in),
			  "IPv4" },
			{ CFG_FAMILY_IPV4, (struct sockaddr *)&in6, sizeof(in6),
			  "IPv6" },
		};
		int opened = 0, rc = 0;
		for (size_t i = 0; i < sizeof(fams) / sizeof(fams[0]); i++) {
			if (cl->family == fams[i].skip)
				continue;
			rc = open_tcp_addr(s, cl, fams[i].sa, fams[i].len);
			if (rc == 0)
				opened++;
			else if (cl->family != CFG_FAMILY_ANY ||
				 (rc != -EAFNOSUPPORT && rc != -EADDRNOTAVAIL))
				goto out_err;
			else
				log_write(s->log, LOG_WARN,
					  "Warning: no %s on port %u: %s.",
					  fams[i].name, cl->port, strerror(-rc));
		}
		return opened ? 0 : rc;
out_err:
		log_write(s->log, LOG_ERR, "Error: unable to listen on port %u: %s.",
			  cl->port, strerror(-rc));
		return rc;
	}

	struct addrinfo hints = { .ai_socktype = SOCK_STREAM,
				  .ai_flags = AI_PASSIVE | AI_NUMERICSERV };
	hints.ai_family = cl->family == CFG_FAMILY_IPV4	  ? AF_INET
			  : cl->family == CFG_FAMILY_IPV6 ? AF_INET6
							  : AF_UNSPEC;
	char port[8];
	snprintf(port, sizeof(port), "%u", cl->port);
	struct addrinfo *res;
	int gai = getaddrinfo(cl->address, port, &hints, &res);
	if (gai != 0) {
		log_write(s->log, LOG_ERR, "Error: cannot resolve listener address %s: %s.",
			  cl->address, gai_strerror(gai));
		return -EADDRNOTAVAIL;
	}
	int rc = 0;
	for (struct addrinfo *ai = res; ai && rc == 0; ai = ai->ai_next) {
		rc = open_tcp_addr(s, cl, ai->ai_addr, ai->ai_addrlen);
		if (rc < 0)
			log_write(s->log, LOG_ERR,
				  "Error: unable to listen on %s port %u: %s.",
				  cl->address, cl->port, strerror(-rc));
	}
	freeaddrinfo(res);
	return rc;
}

/* Creates the socket's directory (one level) if it is missing. */
static int make_parent_dir(const char *path)
{
	char dir[sizeof(((cfg_listener *)0)->path)];
	snprintf(dir, sizeof(dir), "%s", path);
	char *slash = strrchr(dir, '/');
	if (!slash || slash == dir)
		return 0;
	*slash = '\0';
	if (mkdir(dir, 0755) < 0 && errno != EEXIST)
		return -errno;
	return 0;
}

/* Removes a socket file nobody listens on any more. A live one is left
 * alone: EADDRINUSE. */
static int remove_stale_socket(const struct sockaddr_un *sun)
{
	struct stat st;
	if (lstat(sun->sun_path, &st) < 0)
		return errno == ENOENT ? 0 : -errno;
	if (!S_ISSOCK(st.st_mode))
		return -EEXIST;
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	int rc = connect(fd, (const struct sockaddr *)sun, sizeof(*sun));
	int err = errno;
	close(fd);
	if (rc == 0 || err == EAGAIN)
		return -EADDRINUSE;
	if (unlink(sun->sun_path) < 0 && errno != ENOENT)
		return -errno;
	return 0;
}

static int open_unix(server *s, const cfg_listener *cl)
{
	log_write(s->log, LOG_NOTICE, "Opening unix listen socket on path %s.",
		  cl->path);
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", cl->path);
	int rc = make_parent_dir(cl->path);
	if (rc < 0)
		return rc;
	rc = remove_stale_socket(&sun);
	if (rc < 0)
		return rc;
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
		rc = -errno;
		goto out_close;
	}
	/* After bind, so the file exists; clients need write permission on
	 * the socket to connect. */
	if (chmod(cl->path, cl->socket_mode) < 0 || listen(fd, SOMAXCONN) < 0) {
		rc = -errno;
		goto out_unlink;
	}
	rc = listener_register(s, fd, BROKER_TRANSPORT_UNIX, cl);
	if (rc < 0)
		goto out_unlink;
	return 0;

out_unlink:
	unlink(cl->path);
out_close:
	close(fd);
	return rc;
}

/* ---- the WS thread's hooks (ws.h), called on that thread ---- */

static void ws_host_lock(void *ctx)
{
	server *s = ctx;
	loop_lock(&s->ws_loop);
}

static void ws_host_unlock(void *ctx)
{
	server *s = ctx;
	loop_unlock(&s->ws_loop);
}

static uint64_t ws_host_now(void *ctx)
{
	return core_clock(ctx);
}

static void ws_host_dispatch(void *ctx)
{
	server *s = ctx;
	process_dirty(&s->ws_loop);
}

static void ws_host_gone(void *listener, void *ctx)
{
	server *s = ctx;
	srv_listener *l = listener;
	l->conn_count--;
	s->conn_count--;
}

/* Creates the WebSocket transport if a listener needs it. 0 or -ENOMEM. */
static int server_ws_create(server *s)
{
	bool need = false;
	for (int i = 0; i < s->cfg->listener_count; i++)
		if (s->cfg->listeners[i].kind == CFG_LISTENER_TCP &&
		    s->cfg->listeners[i].protocol == CFG_PROTOCOL_WEBSOCKETS)
			need = true;
	if (!need || s->ws)
		return 0;
	const ws_host host = {
		.lock = ws_host_lock,
		.unlock = ws_host_unlock,
		.now_ms = ws_host_now,
		.dispatch = ws_host_dispatch,
		.gone = ws_host_gone,
		.ctx = s,
	};
	s->ws = ws_create(s->b, s->log, &host);
	return s->ws ? 0 : -ENOMEM;
}

int server_listen(server *s)
{
	int wrc = server_ws_create(s);
	if (wrc < 0)
		return wrc;
	for (int i = 0; i < s->cfg->listener_count; i++) {
		const cfg_listener *cl = &s->cfg->listeners[i];
		if (cl->kind == CFG_LISTENER_TCP) {
			int rc = open_tcp(s, cl);
			if (rc < 0)
				return rc;
			continue;
		}
		int rc = open_unix(s, cl);
		if (rc == 0)
			continue;
		if (cl->flags & CFG_LISTENER_OPTIONAL) {
			log_write(s->log, LOG_WARN,
				  "Warning: unable to open unix socket %s: %s; continuing without it.",
				  cl->path, strerror(-rc));
			continue;
		}
		log_write(s->log, LOG_ERR, "Error: unable to open unix socket %s: %s.",
			  cl->path, strerror(-rc));
		return rc;
	}
	if (s->listener_count == 0) {
		log_write(s->log, LOG_ERR, "Error: no listener could be opened.");
		return -ENOENT;
	}
	return 0;
}

/* ---- signals and stopping ---- */

/* Lock held: every loop leaves its loop at its next turn. */
static void stop_locked(server *s, srv_loop *from)
{
	s->stop = true;
	for (unsigned i = 0; i < s->loop_count; i++)
		loop_post_wake(from, &s->loops[i]);
	if (s->ws)
		ws_stop(s->ws);
}

/* Loop 0, lock held. */
static void signal_event(srv_loop *loop0)
{
	server *s = loop0->s;
	struct signalfd_siginfo si;
	while (read(s->sigfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
		switch (si.ssi_signo) {
		case SIGTERM:
		case SIGINT:
			stop_locked(s, loop0);
			break;
		case SIGHUP:
			log_write(s->log, LOG_NOTICE, "Reloading config.");
			if (s->reload)
				s->reload(s->reload_ctx);
			break;
		default:
			break;
		}
	}
}

/* Lock held: another loop posted work; consume the wake-up. */
static void wake_event(srv_loop *loop)
{
	uint64_t v;
	ssize_t r = read(loop->wakefd, &v, sizeof(v));
	(void)r;
	loop->kicked = false;
}

/* ---- loop ---- */

/* ms until the loop's earliest timer: linger deadlines, and for loop 0
 * the core's tick and paused listeners. Lock held. */
static int loop_timeout(srv_loop *loop, uint64_t now)
{
	server *s = loop->s;
	uint64_t due = now + 1000;
	if (loop->idx == 0) {
		if (s->next_tick_ms < due)
			due = s->next_tick_ms;
		for (int i = 0; i < s->listener_count; i++)
			if (s->listeners[i].paused_until_ms &&
			    s->listeners[i].paused_until_ms < due)
				due = s->listeners[i].paused_until_ms;
	}
	if (loop->linger_count) {
		for (srv_conn *c = loop->conns; c; c = c->next)
			if ((c->state & SRV_CONN_LINGER) &&
			    c->linger_deadline_ms < due)
				due = c->linger_deadline_ms;
	}
	if (due <= now)
		return 0;
	return due - now > INT_MAX ? INT_MAX : (int)(due - now);
}

static void loop_timers(srv_loop *loop, uint64_t now)
{
	server *s = loop->s;
	if (loop->linger_count) {
		srv_conn *next;
		for (srv_conn *c = loop->conns; c; c = next) {
			next = c->next;
			/* conn_close() only moves c itself to the dead list,
			 * so next stays valid. */
			if ((c->state & SRV_CONN_LINGER) &&
			    c->linger_deadline_ms <= now)
				conn_close(c);
		}
	}
	if (loop->idx != 0)
		return;
	for (int i = 0; i < s->listener_count; i++)
		if (s->listeners[i].paused_until_ms &&
		    s->listeners[i].paused_until_ms <= now)
			listener_resume(s, &s->listeners[i]);
}

/* Loop 0's share of a turn: shm logs and the core's timers. Lock held. */
static void loop0_core_work(srv_loop *loop0, bool poll_shm)
{
	server *s = loop0->s;
	if (s->shm_more || poll_shm)
		s->shm_more = broker_shm_poll(s->b, core_clock(s)) > 0;
	process_dirty(loop0);
	flush_queue(loop0);
	uint64_t now = core_clock(s);
	if (now >= s->next_tick_ms) {
		uint64_t delay = broker_tick(s->b, now);
		s->next_tick_ms = now + (delay > 1000 ? 1000 : delay);
		process_dirty(loop0);
		flush_queue(loop0);
	}
}

/*
 * Runs one loop until the server stops. Takes the lock and gives it back
 * before returning. Returns 0 or a negative errno (epoll failed; the
 * whole server is then stopped).
 */
static int loop_run(srv_loop *loop)
{
	server *s = loop->s;
	bool first = loop->idx == 0;
	struct epoll_event evs[SRV_MAX_EVENTS];
	int err = 0;
	/* Polling instead of sleeping, so that a message arriving soon
	 * costs no scheduler wake-up (several microseconds on a VM):
	 *  - shimmy_busy_poll_us N: poll for N us after every event (burns
	 *    a core while traffic flows; off by default);
	 *  - shimmy_adaptive_poll_us M (default 50): like KVM's halt
	 *    polling, the window adapts between 0 and M to the gaps between
	 *    events. A sleep whose event came within M of the last one
	 *    doubles it (request/response traffic: the window was too short
	 *    to catch the next message); a gap longer than M, or a sleep
	 *    that timed out, halves it. Traffic with gaps above M, and an
	 *    idle broker, never poll. */
	loop_lock(loop);
	while (!s->stop) {
		loop_adopt_inbox(loop);
		/* Closes and flushes late in the last turn may have left
		 * output behind in the core (wills, freed inflight slots). */
		process_dirty(loop);
		int timeout = loop_timeout(loop, mono_ms());
		/* Arm before the last check, so a commit after it wakes us
		 * (through the bridge thread and the eventfd). */
		if (first && (broker_shm_arm(s->b) || s->shm_more))
			timeout = 0;
		uint32_t spin_us = s->cfg->busy_poll_us;
		uint32_t adapt_max = s->cfg->adaptive_poll_us;
		uint32_t win = spin_us ? spin_us : loop->poll_us;
		uint64_t now_us = mono_us();
		if (win && now_us - loop->last_event_us < win)
			timeout = 0;
		if (loop->fq_head || loop->inbox)
			timeout = 0;
		loop->sleeping = timeout != 0;
		loop_unlock(loop);
		int n = epoll_wait(loop->epfd, evs, SRV_MAX_EVENTS, timeout);
		int werr = errno;
		loop_lock(loop);
		loop->sleeping = false;
		if (first)
			broker_shm_disarm(s->b);
		if (n > 0) {
			uint64_t t = mono_us();
			if (timeout != 0 && !spin_us && adapt_max) {
				if (t - loop->last_event_us < adapt_max) {
					uint32_t w = loop->poll_us ? loop->poll_us * 2 : 8;
					loop->poll_us = w > adapt_max ? adapt_max : w;
				} else {
					loop->poll_us /= 2;
				}
			}
			loop->last_event_us = t;
		} else if (n == 0 && timeout != 0) {
			loop->poll_us /= 2;
		}
		if (n < 0) {
			if (werr == EINTR)
				continue;
			err = -werr;
			log_write(s->log, LOG_ERR, "Error: epoll_wait: %s.",
				  strerror(werr));
			if (!s->run_err)
				s->run_err = err;
			stop_locked(s, loop);
			break;
		}
		for (int i = 0; i < n; i++) {
			srv_handle *h = evs[i].data.ptr;
			switch (h->kind) {
			case SRV_LISTENER:
				listener_accept(loop, (srv_listener *)h);
				break;
			case SRV_CONN:
				conn_event((srv_conn *)h, evs[i].events);
				break;
			case SRV_SIGNAL:
				signal_event(loop);
				break;
			case SRV_SHM:
				s->shm_more = true;
				break;
			case SRV_WAKE:
				wake_event(loop);
				break;
			}
		}
		if (first) {
			loop0_core_work(loop, timeout == 0);
		} else {
			process_dirty(loop);
			flush_queue(loop);
		}
		loop_timers(loop, mono_ms());
		free_dead(loop);
	}
	loop_unlock(loop);
	return err;
}

static void *loop_thread(void *arg)
{
	loop_run(arg);
	return NULL;
}

int server_run(server *s)
{
	pthread_mutex_lock(&s->lock);
	s->stop = false;
	s->run_err = 0;
	s->next_tick_ms = 0;
	pthread_mutex_unlock(&s->lock);
	int rc = 0;
	unsigned started = 1;
	for (; started < s->loop_count; started++) {
		srv_loop *loop = &s->loops[started];
		rc = pthread_create(&loop->thread, NULL, loop_thread, loop);
		if (rc != 0) {
			log_write(s->log, LOG_ERR,
				  "Error: cannot start worker thread: %s.",
				  strerror(rc));
			rc = -rc;
			break;
		}
		loop->started = true;
	}
	if (rc == 0 && s->ws) {
		rc = ws_start(s->ws);
		if (rc < 0)
			log_write(s->log, LOG_ERR,
				  "Error: cannot start the WebSocket thread: %s.",
				  strerror(-rc));
	}
	if (rc == 0) {
		if (s->loop_count > 1)
			log_write(s->log, LOG_INFO, "Running %u worker threads.",
				  s->loop_count);
		loop_run(&s->loops[0]);
	} else {
		pthread_mutex_lock(&s->lock);
		stop_locked(s, &s->loops[0]);
		loop_unlock(&s->loops[0]);
	}
	for (unsigned i = 1; i < s->loop_count; i++) {
		if (!s->loops[i].started)
			continue;
		pthread_join(s->loops[i].thread, NULL);
		s->loops[i].started = false;
	}
	if (s->ws) {
		ws_stop(s->ws);
		ws_join(s->ws);
	}
	return rc ? rc : s->run_err;
}

void server_stop(server *s)
{
	pthread_mutex_lock(&s->lock);
	s->stop = true;
	pthread_mutex_unlock(&s->lock);
	if (s->ws)
		ws_stop(s->ws);
	for (unsigned i = 0; i < s->loop_count; i++) {
		uint64_t one = 1;
		ssize_t w = write(s->loops[i].wakefd, &one, sizeof(one));
		(void)w;
	}
}

/* The number of loops: shimmy_threads, or one per online core. */
static unsigned loop_count_for(const broker_cfg *cfg)
{
	long n = cfg->threads;
	if (n <= 0)
		n = sysconf(_SC_NPROCESSORS_ONLN);
	if (n < 1)
		n = 1;
	if (n > CFG_MAX_THREADS)
		n = CFG_MAX_THREADS;
	return (unsigned)n;
}

static int loop_init(server *s, srv_loop *loop, unsigned idx)
{
	loop->s = s;
	loop->idx = idx;
	loop->wake_h.kind = SRV_WAKE;
	loop->rbuf_cap = SRV_RBUF_SIZE;
	loop->rbuf = malloc(loop->rbuf_cap);
	if (!loop->rbuf)
		return -ENOMEM;
	loop->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (loop->epfd < 0)
		return -errno;
	loop->wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (loop->wakefd < 0)
		return -errno;
	struct epoll_event ev = { .events = EPOLLIN,
				  .data.ptr = &loop->wake_h };
	if (epoll_ctl(loop->epfd, EPOLL_CTL_ADD, loop->wakefd, &ev) < 0)
		return -errno;
	return 0;
}

server *server_create(broker_cfg *cfg, shimmy_log *log,
		      server_reload_fn reload, void *ctx)
{
	server *s = calloc(1, sizeof(*s));
	if (!s) {
		log_write(log, LOG_ERR, "Error: out of memory.");
		return NULL;
	}
	s->cfg = cfg;
	s->log = log;
	s->reload = reload;
	s->reload_ctx = ctx;
	s->sig_h.kind = SRV_SIGNAL;
	s->sigfd = -1;
	s->ws_loop.s = s;
	pthread_mutex_init(&s->lock, NULL);
	int rc;

	/* A peer closing mid-write must be an EPIPE, not a death. */
	struct sigaction sa = { .sa_handler = SIG_IGN };
	sigemptyset(&sa.sa_mask);
	sigaction(SIGPIPE, &sa, NULL);

	unsigned n = loop_count_for(cfg);
	s->loops = calloc(n, sizeof(*s->loops));
	if (!s->loops) {
		rc = -ENOMEM;
		goto out_err;
	}
	for (unsigned i = 0; i < n; i++) {
		s->loops[i].epfd = s->loops[i].wakefd = -1;
		s->loop_count++;
		if ((rc = loop_init(s, &s->loops[i], i)) < 0)
			goto out_err;
	}
	srv_loop *loop0 = &s->loops[0];
	/* Worker threads inherit this mask: signals reach loop 0 only,
	 * through the signalfd. */
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	if (sigprocmask(SIG_BLOCK, &set, NULL) < 0) {
		rc = -errno;
		goto out_err;
	}
	s->sigfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
	if (s->sigfd < 0) {
		rc = -errno;
		goto out_err;
	}
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = &s->sig_h };
	if (epoll_ctl(loop0->epfd, EPOLL_CTL_ADD, s->sigfd, &ev) < 0) {
		rc = -errno;
		goto out_err;
	}
	s->core_ms = mono_ms();
	s->b = broker_create(cfg, log, s->core_ms);
	if (!s->b) {
		rc = -ENOMEM;
		goto out_err;
	}
	broker_set_fd_hook(s->b, server_conn_attach_fds);
	s->shm_h.kind = SRV_SHM;
	if (broker_shm_fd(s->b) >= 0) {
		struct epoll_event sev = { .events = EPOLLIN,
					   .data.ptr = &s->shm_h };
		if (epoll_ctl(loop0->epfd, EPOLL_CTL_ADD, broker_shm_fd(s->b),
			      &sev) < 0) {
			rc = -errno;
			goto out_err;
		}
	}
	return s;

out_err:
	log_write(log, LOG_ERR, "Error: cannot start the event loop: %s.",
		  strerror(-rc));
	server_destroy(s);
	return NULL;
}

struct broker *server_broker(server *s)
{
	return s->b;
}

/* Single-threaded (no loop runs): drops a loop's transports. */
static void loop_fini(srv_loop *loop)
{
	while (loop->conns) {
		srv_conn *c = loop->conns;
		loop->conns = c->next;
		close(c->fd);
		conn_drop_fds(c);
		free(c->fds);
		free(c->in);
		free(c);
	}
	while (loop->inbox) {
		srv_accepted *a = loop->inbox;
		loop->inbox = a->next;
		close(a->fd);
		free(a);
	}
	free_dead(loop);
	free(loop->rbuf);
	if (loop->wakefd >= 0)
		close(loop->wakefd);
	if (loop->epfd >= 0)
		close(loop->epfd);
}

void server_destroy(server *s)
{
	if (!s)
		return;
	for (int i = 0; i < s->listener_count; i++) {
		srv_listener *l = &s->listeners[i];
		close(l->fd);
		if (l->transport == BROKER_TRANSPORT_UNIX)
			unlink(l->path);
	}
	s->listener_count = 0;
	/* No wills on shutdown: the core frees its conns in broker_destroy(),
	 * so just drop the transports. */
	ws_destroy(s->ws);
	for (unsigned i = 0; i < s->loop_count; i++)
		loop_fini(&s->loops[i]);
	broker_destroy(s->b);
	free(s->loops);
	if (s->sigfd >= 0)
		close(s->sigfd);
	pthread_mutex_destroy(&s->lock);
	free(s);
}

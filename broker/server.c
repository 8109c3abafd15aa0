/*
 * broker/server.c — see server.h. Level-triggered epoll over non-blocking
 * sockets. Each connection has an input buffer (16 KiB, grown up to the size
 * of a partially received packet) and no output buffer of its own: output
 * lives in the core (inline bytes plus large payloads by reference) and is
 * drained with one writev-style sendmsg per broker_conn_output_iov() call
 * (broker_conn_output() one piece at a time while fds ride along), then
 * broker_conn_written().
 *
 * Loop turn:
 *   epoll_wait (timeout: next tick, linger deadline, paused listener)
 *   -> dispatch events (accept, read+input, write, signals)
 *   -> flush dirty conns -> broker_tick when due -> flush dirty again
 *   -> expire lingering closes -> free dead conns
 *
 * A srv_conn whose transport is gone is unlinked and put on the dead list;
 * it is freed only at the end of the loop turn, so no pointer taken earlier
 * in the turn (an epoll event, a dirty pop) can dangle.
 *
 * Thread model: loop thread only.
 */
#include "broker/server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "broker/broker.h"

#define SRV_MAX_SOCKS (CFG_MAX_LISTENERS * 4) /* v4+v6, getaddrinfo sets */
#define SRV_RBUF_SIZE (256u * 1024) /* the loop's shared read buffer */
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
	SRV_SHM = 4, /* the broker's shm eventfd (broker_shm_fd) */
} srv_kind;

typedef struct srv_handle {
	srv_kind kind;
} srv_handle;

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

/* srv_conn.state bits. */
enum {
	SRV_CONN_OUT_ARMED = 1 << 0, /* EPOLLOUT is in the interest set */
	SRV_CONN_LINGER = 1 << 1,    /* WANT_CLOSE, flushing before close */
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

/*
 * Invariants: bc != NULL iff the conn is on loop.conns and fd is open;
 * a conn with bc == NULL is on loop.dead. in_len <= in_cap.
 * fds[0..fd_count) are in pos order, every pos >= out_pos.
 */
typedef struct srv_conn {
	srv_handle h; /* first */
	int fd;
	unsigned state;
	broker_conn *bc;
	srv_listener *listener;
	uint8_t *in;
	size_t in_len, in_cap;
	uint64_t linger_deadline_ms;
	uint64_t out_pos;	/* output bytes written so far */
	srv_fd *fds;		/* attached fds not yet sent */
	size_t fd_count, fd_cap;
	struct srv_conn *prev, *next; /* loop.conns */
	struct srv_conn *next_dead;   /* loop.dead */
} srv_conn;

/* Everything one loop thread owns. */
typedef struct srv_loop {
	int epfd;
	broker *b;
	srv_conn *conns;
	srv_conn *dead;
	uint8_t *rbuf; /* shared read buffer, SRV_RBUF_SIZE */
	size_t rbuf_cap;
	size_t conn_count;
	size_t linger_count;
	uint64_t next_tick_ms;
	bool stop;
} srv_loop;

struct server {
	broker_cfg *cfg;
	shimmy_log *log;
	server_reload_fn reload;
	void *reload_ctx;
	srv_handle sig_h;
	srv_handle shm_h;
	bool shm_more; /* shm logs still hold data: poll without sleeping */
	int sigfd;
	srv_listener listeners[SRV_MAX_SOCKS];
	int listener_count;
	srv_loop loop;
};

static uint64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ---- connections ---- */

static int conn_set_events(server *s, srv_conn *c, uint32_t events)
{
	struct epoll_event ev = { .events = events, .data.ptr = c };
	if (epoll_ctl(s->loop.epfd, EPOLL_CTL_MOD, c->fd, &ev) < 0)
		return -errno;
	return 0;
}

static uint32_t conn_events(const srv_conn *c)
{
	if (c->state & SRV_CONN_LINGER)
		return EPOLLOUT;
	return EPOLLIN | ((c->state & SRV_CONN_OUT_ARMED) ? EPOLLOUT : 0);
}

/* Closes every attached fd not yet sent. */
static void conn_drop_fds(srv_conn *c)
{
	for (size_t i = 0; i < c->fd_count; i++)
		close(c->fds[i].fd);
	c->fd_count = 0;
}

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
	 * its first byte sits behind everything pending now. */
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

/* The transport is gone or done: close it and tell the core. */
static void conn_close(server *s, srv_conn *c, uint64_t now)
{
	srv_loop *loop = &s->loop;
	if (!c->bc)
		return;
	epoll_ctl(loop->epfd, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	c->fd = -1;
	conn_drop_fds(c);
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
	loop->conn_count--;
	broker_conn *bc = c->bc;
	c->bc = NULL;
	broker_conn_closed(loop->b, bc, now);
}

/* Closing on the core's request: everything was flushed, so send FIN
 * before closing. */
static void conn_finish_close(server *s, srv_conn *c, uint64_t now)
{
	shutdown(c->fd, SHUT_WR);
	conn_close(s, c, now);
}

/*
 * Writes pending output until it is drained or the socket is full.
 * Returns 0 when drained, 1 when output remains (EPOLLOUT armed), or a
 * negative errno on a socket error (the caller closes).
 */
static int conn_flush(server *s, srv_conn *c)
{
	struct iovec iov[SRV_IOV_MAX];
	for (;;) {
		ssize_t w;
		if (c->fd_count == 0) {
			/* The common case: every segment in one writev. */
			int n = broker_conn_output_iov(c->bc, iov, SRV_IOV_MAX);
			if (n == 0)
				break;
			struct msghdr mh = { .msg_iov = iov,
					     .msg_iovlen = (size_t)n };
			w = n == 1 ? send(c->fd, iov[0].iov_base,
					  iov[0].iov_len,
					  MSG_NOSIGNAL | MSG_DONTWAIT)
				   : sendmsg(c->fd, &mh,
					     MSG_NOSIGNAL | MSG_DONTWAIT);
		} else {
			/* fds ride on one contiguous piece at a time. */
			const uint8_t *data;
			size_t len;
			broker_conn_output(c->bc, &data, &len);
			if (len == 0)
				break;
			w = conn_send(c, data, len);
		}
		if (w > 0) {
			c->out_pos += (uint64_t)w;
			broker_conn_written(c->bc, (size_t)w);
			continue;
		}
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			if (!(c->state & SRV_CONN_OUT_ARMED)) {
				c->state |= SRV_CONN_OUT_ARMED;
				int rc = conn_set_events(s, c, conn_events(c));
				if (rc < 0)
					return rc;
			}
			return 1;
		}
		return w < 0 ? -errno : -EIO;
	}
	if (c->state & SRV_CONN_OUT_ARMED) {
		c->state &= ~(unsigned)SRV_CONN_OUT_ARMED;
		int rc = conn_set_events(s, c, conn_events(c));
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
	ssize_t r = recv(c->fd, c->in + c->in_len, c->in_cap - c->in_len, 0);
	if (r < 0)
		return -errno;
	c->in_len += (size_t)r;
	return r;
}

/* Reads until EAGAIN, a short read or the budget, feeding the core after
 * each read. May close c. */
static void conn_read(server *s, srv_conn *c, uint64_t now)
{
	srv_loop *loop = &s->loop;
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
			r = recv(c->fd, loop->rbuf + c->in_len, room, 0);
			if (r < 0)
				r = -errno;
			buf = loop->rbuf;
			have = c->in_len + (r > 0 ? (size_t)r : 0);
		}
		if (r < 0) {
			if (r == -EINTR)
				continue;
			if (r == -EAGAIN || r == -EWOULDBLOCK)
				return;
			log_write(s->log, LOG_DEBUG, "Socket error on read: %s.",
				  strerror((int)-r));
			conn_close(s, c, now);
			return;
		}
		if (r == 0) {
			conn_close(s, c, now);
			return;
		}
		size_t used;
		int taken = 0;
		if (buf == c->in && have == need && need >= SRV_IN_DIRECT_MIN) {
			/* Exactly one large packet in c->in: the core may keep
			 * it as the message's payload (no copy). */
			used = broker_conn_input_owned(loop->b, c->bc, c->in,
						       have, now, &taken);
			if (taken) {
				c->in = NULL;
				c->in_len = c->in_cap = 0;
			}
		} else {
			used = broker_conn_input(loop->b, c->bc, buf, have,
						 now);
		}
		if (used > have)
			used = have; /* defensive: never trust a count */
		if (!taken && conn_keep_tail(c, buf + used, have - used) < 0) {
			log_write(s->log, LOG_ERR,
				  "Closing connection: out of memory for input.");
			conn_close(s, c, now);
			return;
		}
		if (broker_conn_flags(c->bc) & BROKER_CONN_WANT_CLOSE)
			return;
		if ((size_t)r < room)
			return; /* the socket is most likely drained */
	}
}

static void conn_event(server *s, srv_conn *c, uint32_t ev, uint64_t now)
{
	if (!c->bc)
		return;
	if (ev & EPOLLERR) {
		conn_close(s, c, now);
		return;
	}
	if ((ev & EPOLLIN) && !(c->state & SRV_CONN_LINGER)) {
		conn_read(s, c, now);
		if (!c->bc)
			return;
	}
	if (ev & EPOLLOUT) {
		int rc = conn_flush(s, c);
		if (rc < 0) {
			conn_close(s, c, now);
			return;
		}
		if (rc == 0 && (c->state & SRV_CONN_LINGER)) {
			conn_finish_close(s, c, now);
			return;
		}
	}
	/* Hang-up without readable data (or while lingering): nobody is
	 * left to read what we would write. */
	if ((ev & EPOLLHUP) && (!(ev & EPOLLIN) || (c->state & SRV_CONN_LINGER)))
		conn_close(s, c, now);
}

/* Flushes every conn the core marked, and starts closes it asked for. */
static void process_dirty(server *s, uint64_t now)
{
	broker_conn *bc;
	while ((bc = broker_next_dirty(s->loop.b))) {
		srv_conn *c = broker_conn_io(bc);
		if (!c || c->bc != bc)
			continue;
		int rc = conn_flush(s, c);
		if (rc < 0) {
			conn_close(s, c, now);
			continue;
		}
		if (!(broker_conn_flags(bc) & BROKER_CONN_WANT_CLOSE))
			continue;
		if (rc == 0) {
			conn_finish_close(s, c, now);
		} else if (!(c->state & SRV_CONN_LINGER)) {
			c->state |= SRV_CONN_LINGER;
			c->linger_deadline_ms = now + SRV_LINGER_MS;
			s->loop.linger_count++;
			if (conn_set_events(s, c, conn_events(c)) < 0)
				conn_close(s, c, now);
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

static void listener_pause(server *s, srv_listener *l, uint64_t now)
{
	struct epoll_event ev = { .events = 0, .data.ptr = l };
	epoll_ctl(s->loop.epfd, EPOLL_CTL_MOD, l->fd, &ev);
	l->paused_until_ms = now + SRV_ACCEPT_PAUSE_MS;
}

static void listener_resume(server *s, srv_listener *l)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = l };
	epoll_ctl(s->loop.epfd, EPOLL_CTL_MOD, l->fd, &ev);
	l->paused_until_ms = 0;
}

/* Sets up one accepted socket. Returns 0, or a negative errno with fd
 * still open. */
static int conn_add(server *s, srv_listener *l, int fd, const char *peer,
		    uint64_t now)
{
	srv_loop *loop = &s->loop;
	if (l->transport == BROKER_TRANSPORT_TCP) {
		int one = 1;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	}
	srv_conn *c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->h.kind = SRV_CONN;
	c->fd = fd;
	c->listener = l;
	c->bc = broker_conn_open(loop->b, l->transport, peer, c, now);
	if (!c->bc)
		goto out_free_conn;
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = c };
	if (epoll_ctl(loop->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
		int err = -errno;
		broker_conn_closed(loop->b, c->bc, now);
		free(c->in);
		free(c);
		return err;
	}
	c->next = loop->conns;
	if (loop->conns)
		loop->conns->prev = c;
	loop->conns = c;
	loop->conn_count++;
	l->conn_count++;
	return 0;

out_free_conn:
	free(c);
	return -ENOMEM;
}

static void listener_accept(server *s, srv_listener *l, uint64_t now)
{
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
			listener_pause(s, l, now);
			return;
		}
		char peer[SRV_PEER_MAX];
		format_peer(&ss, l, peer, sizeof(peer));
		uint32_t max_all = s->cfg->max_connections;
		if ((max_all && s->loop.conn_count >= max_all) ||
		    (l->max_connections > 0 &&
		     l->conn_count >= (size_t)l->max_connections)) {
			log_write(s->log, LOG_NOTICE,
				  "Client connection from %s denied: max_connections exceeded.",
				  peer);
			close(fd);
			continue;
		}
		if (l->transport == BROKER_TRANSPORT_TCP)
			log_write(s->log, LOG_NOTICE,
				  "New connection from %s on port %u.", peer,
				  l->port);
		else
			log_write(s->log, LOG_NOTICE,
				  "New connection from %s.", peer);
		int rc = conn_add(s, l, fd, peer, now);
		if (rc < 0) {
			log_write(s->log, LOG_ERR,
				  "Dropping connection from %s: %s.", peer,
				  strerror(-rc));
			close(fd);
		}
	}
}

/* Registers an open listening socket. Returns 0 or a negative errno (the
 * caller closes fd). */
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
	if (epoll_ctl(s->loop.epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
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
	const char *fam = sa->sa_family == AF_INET6 ? "ipv6" : "ipv4";
	log_write(s->log, LOG_NOTICE, "Opening %s listen socket on port %u.",
		  fam, cl->port);
	int fd = tcp_socket(sa, salen);
	if (fd < 0)
		return fd;
	int rc = listener_register(s, fd, BROKER_TRANSPORT_TCP, cl);
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

int server_listen(server *s)
{
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

/* ---- signals ---- */

static void signal_event(server *s)
{
	struct signalfd_siginfo si;
	while (read(s->sigfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
		switch (si.ssi_signo) {
		case SIGTERM:
		case SIGINT:
			s->loop.stop = true;
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

/* ---- loop ---- */

/* ms until the earliest timer: tick, linger deadline, paused listener. */
static int loop_timeout(server *s, uint64_t now)
{
	uint64_t due = s->loop.next_tick_ms;
	if (s->loop.linger_count) {
		for (srv_conn *c = s->loop.conns; c; c = c->next)
			if ((c->state & SRV_CONN_LINGER) &&
			    c->linger_deadline_ms < due)
				due = c->linger_deadline_ms;
	}
	for (int i = 0; i < s->listener_count; i++)
		if (s->listeners[i].paused_until_ms &&
		    s->listeners[i].paused_until_ms < due)
			due = s->listeners[i].paused_until_ms;
	if (due <= now)
		return 0;
	return due - now > INT_MAX ? INT_MAX : (int)(due - now);
}

static void loop_timers(server *s, uint64_t now)
{
	if (s->loop.linger_count) {
		srv_conn *next;
		for (srv_conn *c = s->loop.conns; c; c = next) {
			next = c->next;
			/* conn_close() only moves c itself to the dead list,
			 * so next stays valid. */
			if ((c->state & SRV_CONN_LINGER) &&
			    c->linger_deadline_ms <= now)
				conn_close(s, c, now);
		}
	}
	for (int i = 0; i < s->listener_count; i++)
		if (s->listeners[i].paused_until_ms &&
		    s->listeners[i].paused_until_ms <= now)
			listener_resume(s, &s->listeners[i]);
}

static uint64_t mono_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

int server_run(server *s)
{
	srv_loop *loop = &s->loop;
	struct epoll_event evs[SRV_MAX_EVENTS];
	/* Busy polling: for shimmy_busy_poll_us after the last event, poll
	 * without sleeping, so a message arriving then costs no scheduler
	 * wake-up (several microseconds on a VM). Off by default: it burns
	 * a core while traffic flows. */
	uint64_t last_event_us = 0;
	loop->stop = false;
	loop->next_tick_ms = 0;
	while (!loop->stop) {
		uint64_t now = mono_ms();
		int timeout = loop_timeout(s, now);
		/* Arm before the last check, so a commit after it wakes us
		 * (through the bridge thread and the eventfd). */
		if (broker_shm_arm(loop->b) || s->shm_more)
			timeout = 0;
		uint32_t spin_us = s->cfg->busy_poll_us;
		if (spin_us && mono_us() - last_event_us < spin_us)
			timeout = 0;
		int n = epoll_wait(loop->epfd, evs, SRV_MAX_EVENTS, timeout);
		broker_shm_disarm(loop->b);
		if (n > 0 && spin_us)
			last_event_us = mono_us();
		if (n < 0) {
			if (errno == EINTR)
				continue;
			int err = -errno;
			log_write(s->log, LOG_ERR, "Error: epoll_wait: %s.",
				  strerror(errno));
			return err;
		}
		now = mono_ms();
		for (int i = 0; i < n; i++) {
			srv_handle *h = evs[i].data.ptr;
			switch (h->kind) {
			case SRV_LISTENER:
				listener_accept(s, (srv_listener *)h, now);
				break;
			case SRV_CONN:
				conn_event(s, (srv_conn *)h, evs[i].events, now);
				break;
			case SRV_SIGNAL:
				signal_event(s);
				break;
			case SRV_SHM:
				s->shm_more = true;
				break;
			}
		}
		if (s->shm_more || timeout == 0)
			s->shm_more = broker_shm_poll(loop->b, now) > 0;
		process_dirty(s, now);
		if (now >= loop->next_tick_ms) {
			uint64_t delay = broker_tick(loop->b, now);
			loop->next_tick_ms = now + (delay > 1000 ? 1000 : delay);
			process_dirty(s, now);
		}
		loop_timers(s, now);
		free_dead(loop);
	}
	return 0;
}

void server_stop(server *s)
{
	s->loop.stop = true;
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
	s->loop.epfd = -1;

	/* A peer closing mid-write must be an EPIPE, not a death. */
	struct sigaction sa = { .sa_handler = SIG_IGN };
	sigemptyset(&sa.sa_mask);
	sigaction(SIGPIPE, &sa, NULL);

	s->loop.rbuf_cap = SRV_RBUF_SIZE;
	s->loop.rbuf = malloc(s->loop.rbuf_cap);
	if (!s->loop.rbuf)
		goto out_err;
	s->loop.epfd = epoll_create1(EPOLL_CLOEXEC);
	if (s->loop.epfd < 0)
		goto out_err;
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	if (sigprocmask(SIG_BLOCK, &set, NULL) < 0)
		goto out_err;
	s->sigfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
	if (s->sigfd < 0)
		goto out_err;
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = &s->sig_h };
	if (epoll_ctl(s->loop.epfd, EPOLL_CTL_ADD, s->sigfd, &ev) < 0)
		goto out_err;
	s->loop.b = broker_create(cfg, log, mono_ms());
	if (!s->loop.b) {
		errno = ENOMEM;
		goto out_err;
	}
	broker_set_fd_hook(s->loop.b, server_conn_attach_fds);
	s->shm_h.kind = SRV_SHM;
	if (broker_shm_fd(s->loop.b) >= 0) {
		struct epoll_event sev = { .events = EPOLLIN,
					   .data.ptr = &s->shm_h };
		if (epoll_ctl(s->loop.epfd, EPOLL_CTL_ADD,
			      broker_shm_fd(s->loop.b), &sev) < 0)
			goto out_err;
	}
	return s;

out_err:
	log_write(log, LOG_ERR, "Error: cannot start the event loop: %s.",
		  strerror(errno));
	server_destroy(s);
	return NULL;
}

struct broker *server_broker(server *s)
{
	return s->loop.b;
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
	while (s->loop.conns) {
		srv_conn *c = s->loop.conns;
		s->loop.conns = c->next;
		close(c->fd);
		conn_drop_fds(c);
		free(c->fds);
		free(c->in);
		free(c);
	}
	free_dead(&s->loop);
	broker_destroy(s->loop.b);
	free(s->loop.rbuf);
	if (s->sigfd >= 0)
		close(s->sigfd);
	if (s->loop.epfd >= 0)
		close(s->loop.epfd);
	free(s);
}

/*
 * clients/conn.c — socket I/O for the client (see conn.h).
 */
#include "clients/conn.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "clients/include/shimmy.h"

#define IOV_BATCH 64
/* fds one recvmsg() accepts: the broker sends at most 32 per write. */
#define CMSG_FDS_MAX 64

static uint64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Non-blocking connect, then wait for writability. */
static int connect_wait(int fd, const struct sockaddr *sa, socklen_t sl, uint64_t deadline)
{
	struct pollfd pfd = { .fd = fd, .events = POLLOUT };
	int err = 0;
	socklen_t el = sizeof(err);

	if (connect(fd, sa, sl) == 0)
		return 0;
	if (errno != EINPROGRESS && errno != EAGAIN)
		return -errno;
	for (;;) {
		int t = -1;
		if (deadline) {
			uint64_t now = mono_ms();
			if (now >= deadline)
				return SHIMMY_ERR_TIMEOUT;
			t = (int)(deadline - now);
		}
		int n = poll(&pfd, 1, t);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return SHIMMY_ERR_TIMEOUT;
		break;
	}
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) < 0)
		return -errno;
	return err ? -err : 0;
}

static int open_unix(const uri *u, uint64_t deadline)
{
	struct sockaddr_un sa;
	int fd, rc;

	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	memcpy(sa.sun_path, u->path, strlen(u->path) + 1); /* uri_parse bounds it */
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	rc = connect_wait(fd, (struct sockaddr *)&sa, sizeof(sa), deadline);
	if (rc) {
		close(fd);
		return rc;
	}
	return fd;
}

static int open_tcp(const uri *u, uint64_t deadline)
{
	struct addrinfo hints, *res, *ai;
	char port[8];
	int fd = -1, rc = SHIMMY_ERR_URI, one = 1;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_ADDRCONFIG;
	snprintf(port, sizeof(port), "%u", u->port);
	if (getaddrinfo(u->host, port, &hints, &res) != 0)
		return SHIMMY_ERR_URI;
	for (ai = res; ai; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
			    ai->ai_protocol);
		if (fd < 0) {
			rc = -errno;
			continue;
		}
		rc = connect_wait(fd, ai->ai_addr, ai->ai_addrlen, deadline);
		if (rc == 0)
			break;
		close(fd);
		fd = -1;
		if (rc == SHIMMY_ERR_TIMEOUT)
			break;
	}
	freeaddrinfo(res);
	if (fd < 0)
		return rc;
	/* MQTT packets are small and latency-bound; writes are batched by us. */
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return fd;
}

int conn_open(const uri *u, int timeout_ms)
{
	uint64_t deadline = timeout_ms < 0 ? 0 : mono_ms() + (uint64_t)timeout_ms;

	switch (u->scheme) {
	case URI_UNIX:
		return open_unix(u, deadline);
	case URI_TCP:
		return open_tcp(u, deadline);
	default:
		return SHIMMY_ERR_UNSUPPORTED;
	}
}

/* Queues (or closes, q NULL) every fd of a received SCM_RIGHTS message. */
static void take_passed_fds(struct msghdr *mh, shimmy_fdq *q)
{
	for (struct cmsghdr *cm = CMSG_FIRSTHDR(mh); cm; cm = CMSG_NXTHDR(mh, cm)) {
		if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
			continue;
		size_t n = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		int fds[CMSG_FDS_MAX];
		if (n > CMSG_FDS_MAX)
			n = CMSG_FDS_MAX;
		memcpy(fds, CMSG_DATA(cm), n * sizeof(int));
		for (size_t i = 0; i < n; i++) {
			if (q)
				shimmy_fdq_push(q, fds[i]); /* closes on overflow */
			else
				close(fds[i]);
		}
	}
}

ssize_t conn_read(int fd, void *buf, size_t cap, shimmy_fdq *q)
{
	union {
		char buf[CMSG_SPACE(CMSG_FDS_MAX * sizeof(int))];
		struct cmsghdr align;
	} ctl;
	struct iovec iov = { buf, cap };
	struct msghdr mh;
	ssize_t n;

	for (;;) {
		memset(&mh, 0, sizeof(mh));
		mh.msg_iov = &iov;
		mh.msg_iovlen = 1;
		mh.msg_control = ctl.buf;
		mh.msg_controllen = sizeof(ctl.buf);
		n = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
		if (n < 0 && errno == EINTR)
			continue;
		break;
	}
	if (n < 0)
		return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -errno;
	if (mh.msg_controllen)
		take_passed_fds(&mh, q);
	if (n == 0)
		return SHIMMY_ERR_CONN_LOST;
	return n;
}

ssize_t conn_flush(int fd, outq *q)
{
	struct iovec iov[IOV_BATCH];
	ssize_t total = 0;

	while (outq_pending(q) > 0) {
		int k = outq_iov(q, iov, IOV_BATCH);
		struct msghdr mh = { .msg_iov = iov, .msg_iovlen = (size_t)k };
		/* sendmsg for MSG_NOSIGNAL: a closed peer is an error, not SIGPIPE. */
		ssize_t n = sendmsg(fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			return -errno;
		}
		outq_consume(q, (size_t)n);
		total += n;
	}
	return total;
}

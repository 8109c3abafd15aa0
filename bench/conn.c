/*
 * bench/conn.c — MQTT client connection for the load generator; see conn.h.
 */
#include "bench/conn.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int conn_dial(const char *host, const char *port)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *res = NULL;
	int rc = getaddrinfo(host, port, &hints, &res);
	if (rc != 0)
		return -EHOSTUNREACH;
	int fd = -ECONNREFUSED;
	for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
		int s = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC,
			       ai->ai_protocol);
		if (s < 0) {
			fd = -errno;
			continue;
		}
		if (connect(s, ai->ai_addr, ai->ai_addrlen) == 0) {
			int one = 1;
			setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
			fd = s;
			break;
		}
		fd = -errno;
		close(s);
	}
	freeaddrinfo(res);
	return fd;
}

int conn_init(conn *c, int fd, mqtt_version ver, size_t read_cap)
{
	memset(c, 0, sizeof(*c));
	c->fd = fd;
	c->ver = ver;
	c->cap = read_cap < 4096 ? 4096 : read_cap;
	c->buf = malloc(c->cap);
	if (!c->buf) {
		close(fd);
		c->fd = -1;
		return -ENOMEM;
	}
	return 0;
}

void conn_fini(conn *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	free(c->buf);
	c->buf = NULL;
}

int conn_write_all(int fd, const void *buf, size_t len)
{
	const uint8_t *p = buf;
	while (len) {
		ssize_t n = write(fd, p, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN) {
				struct pollfd pfd = { .fd = fd, .events = POLLOUT };
				poll(&pfd, 1, 1000);
				continue;
			}
			return -errno;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int conn_encode(uint8_t *buf, size_t cap, size_t *pos, mqtt_version ver,
		const mqtt_packet *pkt)
{
	long n = mqtt_encode(buf + *pos, cap - *pos, ver, pkt);
	if (n < 0)
		return (int)n;
	if ((size_t)n > cap - *pos)
		return -ENOSPC;
	*pos += (size_t)n;
	return 0;
}

/* Makes room for a packet of `need` bytes at buf[off]. */
static int make_room(conn *c, size_t need)
{
	if (c->off > 0) {
		memmove(c->buf, c->buf + c->off, c->len - c->off);
		c->len -= c->off;
		c->off = 0;
	}
	if (need > c->cap) {
		uint8_t *nb = realloc(c->buf, need);
		if (!nb)
			return -ENOMEM;
		c->buf = nb;
		c->cap = need;
	}
	return 0;
}

int conn_next(conn *c, mqtt_packet *pkt, int timeout_ms)
{
	for (;;) {
		size_t avail = c->len - c->off;
		uint32_t size = 0;
		int rc = avail ? mqtt_packet_size(c->buf + c->off, avail, &size)
			       : MQTT_ERR_NEED_MORE;
		if (rc > 0)
			rc = 0; /* size known */
		if (rc == 0 && size <= avail) {
			rc = mqtt_decode(c->buf + c->off, size, c->ver, 0, pkt);
			if (rc < 0)
				return rc;
			c->off += size;
			return 1;
		}
		if (rc < 0 && rc != MQTT_ERR_NEED_MORE)
			return rc;
		/* Need more bytes: compact (and grow for a large packet), then read. */
		if (c->off == c->len)
			c->off = c->len = 0;
		if (rc == 0 ? c->off + size > c->cap : c->len == c->cap) {
			rc = make_room(c, rc == 0 ? size : c->cap);
			if (rc < 0)
				return rc;
		}
		if (timeout_ms >= 0) {
			struct pollfd pfd = { .fd = c->fd, .events = POLLIN };
			int pr = poll(&pfd, 1, timeout_ms);
			if (pr < 0 && errno != EINTR)
				return -errno;
			if (pr <= 0)
				return 0;
		}
		ssize_t n = read(c->fd, c->buf + c->len, c->cap - c->len);
		if (n == 0)
			return -EPIPE;
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN)
				return 0;
			return -errno;
		}
		c->len += (size_t)n;
	}
}

int conn_handshake(conn *c, const char *client_id, uint16_t keepalive_s,
		   int timeout_ms)
{
	uint8_t out[512];
	size_t pos = 0;
	mqtt_packet p = { .type = MQTT_CONNECT };
	p.u.connect.version = c->ver;
	p.u.connect.clean_start = true;
	p.u.connect.keep_alive = keepalive_s;
	p.u.connect.client_id = mqtt_str_c(client_id);
	int rc = conn_encode(out, sizeof(out), &pos, c->ver, &p);
	if (rc < 0)
		return rc;
	rc = conn_write_all(c->fd, out, pos);
	if (rc < 0)
		return rc;
	mqtt_packet in;
	rc = conn_next(c, &in, timeout_ms);
	if (rc <= 0)
		return rc == 0 ? -ETIMEDOUT : rc;
	if (in.type != MQTT_CONNACK)
		return MQTT_ERR_PROTOCOL;
	return in.u.connack.reason == 0 ? 0 : -ECONNREFUSED;
}

int conn_subscribe(conn *c, const char *filter, unsigned qos, int timeout_ms)
{
	uint8_t out[512];
	mqtt_topic_entry e = { mqtt_str_c(filter), (uint8_t)qos };
	long n = mqtt_encode_subscribe(out, sizeof(out), c->ver, MQTT_SUBSCRIBE, 1,
				       NULL, &e, 1);
	if (n < 0)
		return (int)n;
	if ((size_t)n > sizeof(out))
		return -ENOSPC;
	int rc = conn_write_all(c->fd, out, (size_t)n);
	if (rc < 0)
		return rc;
	for (;;) {
		mqtt_packet in;
		rc = conn_next(c, &in, timeout_ms);
		if (rc <= 0)
			return rc == 0 ? -ETIMEDOUT : rc;
		if (in.type != MQTT_SUBACK)
			continue;
		if (in.u.suback.reasons.len < 1 || in.u.suback.reasons.ptr[0] >= 0x80)
			return -EACCES;
		return 0;
	}
}

/*
 * shmpath/ctl.c — see ctl.h. Control messages are a fixed 48-byte header
 * and a topic; everything is little endian and decoded field by field (no
 * struct overlay), so alignment and padding never depend on the compiler.
 */
#include "shmpath/ctl.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "mqtt/error.h"

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static void put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void put64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint16_t get16(const uint8_t *p)
{
	return (uint16_t)(p[0] | (p[1] << 8));
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

static uint64_t get64(const uint8_t *p)
{
	return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32;
}

int shimmy_ctl_fds_for(uint16_t type, uint32_t status)
{
	switch (type) {
	case SHIMMY_CTL_BELL_SETUP:
		return 1;
	case SHIMMY_CTL_LOG_GRANT:
		return status == 0 ? 1 : 0;
	case SHIMMY_CTL_LOG_ATTACH:
	case SHIMMY_CTL_READER_ADD:
	case SHIMMY_CTL_SHARE_ATTACH:
	case SHIMMY_CTL_LOG_REPLACE:
		return 2;
	case SHIMMY_CTL_LOG_CREATE:
	case SHIMMY_CTL_READER_DROP:
	case SHIMMY_CTL_LOG_DETACH:
	case SHIMMY_CTL_LOG_CLOSED:
	case SHIMMY_CTL_LOG_RELEASE:
	case SHIMMY_CTL_SHARE_DETACH:
		return 0;
	default:
		return -1;
	}
}

int shimmy_ctl_encode(const shimmy_ctl *m, uint8_t *buf, size_t cap)
{
	int nfds = shimmy_ctl_fds_for(m->type, m->status);
	if (nfds < 0 || (m->topic_len && !m->topic))
		return MQTT_ERR_INVALID;
	size_t need = SHIMMY_CTL_HDR + (size_t)m->topic_len;
	if (need > cap)
		return (int)need;
	put32(buf + 0, SHIMMY_CTL_MAGIC);
	put16(buf + 4, SHIMMY_CTL_VERSION);
	put16(buf + 6, m->type);
	put16(buf + 8, (uint16_t)nfds);
	put16(buf + 10, m->topic_len);
	put32(buf + 12, m->status);
	put64(buf + 16, m->log_id);
	put64(buf + 24, m->gen);
	put32(buf + 32, m->idx);
	put32(buf + 36, m->flags);
	put32(buf + 40, m->req_id);
	put32(buf + 44, m->arg);
	if (m->topic_len)
		memcpy(buf + SHIMMY_CTL_HDR, m->topic, m->topic_len);
	return (int)need;
}

int shimmy_ctl_decode(const uint8_t *buf, size_t len, shimmy_ctl *m)
{
	if (len < SHIMMY_CTL_HDR || get32(buf) != SHIMMY_CTL_MAGIC)
		return MQTT_ERR_MALFORMED;
	if (get16(buf + 4) != SHIMMY_CTL_VERSION)
		return MQTT_ERR_PROTOCOL;
	memset(m, 0, sizeof(*m));
	m->type = get16(buf + 6);
	m->nfds = get16(buf + 8);
	m->topic_len = get16(buf + 10);
	m->status = get32(buf + 12);
	m->log_id = get64(buf + 16);
	m->gen = get64(buf + 24);
	m->idx = get32(buf + 32);
	m->flags = get32(buf + 36);
	m->req_id = get32(buf + 40);
	m->arg = get32(buf + 44);
	int want = shimmy_ctl_fds_for(m->type, m->status);
	if (want < 0 || m->nfds != (uint16_t)want)
		return MQTT_ERR_MALFORMED;
	if ((size_t)m->topic_len != len - SHIMMY_CTL_HDR)
		return MQTT_ERR_MALFORMED;
	m->topic = m->topic_len ? (const char *)buf + SHIMMY_CTL_HDR : "";
	return 0;
}

/* Writes a variable byte integer; returns its size. v < 2^28. */
static size_t vbi_put(uint8_t *p, uint32_t v)
{
	size_t n = 0;
	do {
		uint8_t b = v & 0x7f;
		v >>= 7;
		p[n++] = (uint8_t)(b | (v ? 0x80 : 0));
	} while (v);
	return n;
}

static size_t vbi_len(uint32_t v)
{
	return v < 128 ? 1 : v < 16384 ? 2 : v < 2097152 ? 3 : 4;
}

int shimmy_ctl_frame(const shimmy_ctl *m, int v5, uint8_t *buf, size_t cap)
{
	int body = shimmy_ctl_encode(m, NULL, 0);
	if (body < 0)
		return body;
	/* Remaining length: topic length field, topic, [props length], body. */
	uint32_t rem = 2 + SHIMMY_CTL_TOPIC_LEN + (v5 ? 1u : 0u) + (uint32_t)body;
	size_t need = 1 + vbi_len(rem) + rem;
	if (need > cap)
		return (int)need;
	uint8_t *p = buf;
	*p++ = 0x30; /* PUBLISH, QoS 0, no retain, no dup */
	p += vbi_put(p, rem);
	*p++ = 0;
	*p++ = (uint8_t)SHIMMY_CTL_TOPIC_LEN;
	memcpy(p, SHIMMY_CTL_TOPIC, SHIMMY_CTL_TOPIC_LEN);
	p += SHIMMY_CTL_TOPIC_LEN;
	if (v5)
		*p++ = 0; /* no properties */
	shimmy_ctl_encode(m, p, (size_t)body);
	return (int)need;
}

int shimmy_ctl_is_reserved(const char *topic, size_t len)
{
	size_t n = sizeof(SHIMMY_CTL_PREFIX) - 1;
	return len >= n && memcmp(topic, SHIMMY_CTL_PREFIX, n) == 0;
}

void shimmy_fdq_init(shimmy_fdq *q)
{
	q->head = q->count = 0;
}

void shimmy_fdq_fini(shimmy_fdq *q)
{
	int fd;
	while (q->count && shimmy_fdq_pop(q, &fd, 1) == 0)
		close(fd);
}

int shimmy_fdq_push(shimmy_fdq *q, int fd)
{
	if (q->count >= SHIMMY_FDQ_CAP) {
		close(fd);
		return -ENOSPC;
	}
	q->fds[(q->head + q->count) % SHIMMY_FDQ_CAP] = fd;
	q->count++;
	return 0;
}

int shimmy_fdq_pop(shimmy_fdq *q, int *out, unsigned n)
{
	if (n > q->count)
		return -ENOENT;
	for (unsigned i = 0; i < n; i++) {
		out[i] = q->fds[q->head];
		q->head = (q->head + 1) % SHIMMY_FDQ_CAP;
	}
	q->count -= n;
	return 0;
}

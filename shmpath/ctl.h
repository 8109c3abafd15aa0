/*
 * shmpath/ctl.h — the shm/2 control protocol between broker and clients,
 * sans-IO: encoding and decoding of control messages, their MQTT framing,
 * and the FIFO of received segment fds.
 *
 * After CONNACK has echoed User Property shimmy = shm/2, control messages
 * travel inside MQTT framing on the Unix socket: a PUBLISH QoS 0 on the
 * reserved topic SHIMMY_CTL_TOPIC ("$shimmy/ctl") whose payload is one
 * control message (docs/shm-protocol.md §10). The broker never routes that
 * topic and the client library intercepts it; a '#' filter never matches a
 * '$' topic. Segment fds travel as SCM_RIGHTS ancillary data on the
 * sendmsg() that carries the first byte of the PUBLISH; the message says
 * how many (nfds), so the receiver pushes every fd it receives into a FIFO
 * (shimmy_fdq) and pops nfds of them when it decodes the message.
 *
 * Decoding is a pure function over untrusted bytes: fixed-size header,
 * every length checked, views into the caller's buffer, no allocation.
 * Thread model: no shared state; an fdq is used by one thread at a time.
 */
#ifndef SHIMMY_SHMPATH_CTL_H
#define SHIMMY_SHMPATH_CTL_H

#include <stddef.h>
#include <stdint.h>

#define SHIMMY_CTL_TOPIC "$shimmy/ctl"
#define SHIMMY_CTL_TOPIC_LEN 11u
/* Prefix the broker reserves: never routed, never delivered. */
#define SHIMMY_CTL_PREFIX "$shimmy/"
#define SHIMMY_CTL_VERSION 1u
#define SHIMMY_CTL_MAGIC 0x43594853u /* "SHYC" little endian */
/* Fixed header bytes before the topic. */
#define SHIMMY_CTL_HDR 48u
/* Most fds one control message carries. */
#define SHIMMY_CTL_MAX_FDS 4u
/* Largest topic a control message carries (MQTT's limit). */
#define SHIMMY_CTL_TOPIC_MAX 65535u
/* Bytes of a whole framed message with a topic of tlen bytes, at most. */
#define SHIMMY_CTL_FRAME_MAX(tlen) (8u + SHIMMY_CTL_TOPIC_LEN + 1u + \
				    SHIMMY_CTL_HDR + (tlen))

/* Control message types. B = broker, C = client (P = a publishing client). */
typedef enum shimmy_ctl_type {
	SHIMMY_CTL_BELL_SETUP = 1,  /* B->C fds: bell (RW) */
	SHIMMY_CTL_LOG_CREATE = 2,  /* C->B: req_id, flags, arg = size class, topic;
				     * log_id != 0: grow, it replaces that log */
	SHIMMY_CTL_LOG_GRANT = 3,   /* B->C fds: log (RW) if status 0; req_id, status, log_id, flags, topic */
	SHIMMY_CTL_LOG_ATTACH = 4,  /* B->C fds: log (RO), slot (RW); log_id, idx, gen, flags, topic */
	SHIMMY_CTL_READER_ADD = 5,  /* B->P fds: slot (RO), reader's bell (RW); log_id, idx, gen */
	SHIMMY_CTL_READER_DROP = 6, /* B->P: log_id, idx */
	SHIMMY_CTL_LOG_DETACH = 7,  /* B->C: log_id, arg = reason; stop reading */
	SHIMMY_CTL_LOG_CLOSED = 8,  /* B->C: log_id; drain to -EPIPE, then drop */
	SHIMMY_CTL_LOG_RELEASE = 9, /* C->B: log_id; the client is done with it */
	SHIMMY_CTL_SHARE_ATTACH = 10, /* B->C fds: log (RO), share page (RW); log_id, idx, gen, flags, topic */
	SHIMMY_CTL_SHARE_DETACH = 11, /* B->C: log_id, idx, arg = reason; stop claiming */
	SHIMMY_CTL_LOG_REPLACE = 12, /* B->C fds: log (RO), slot (RW); as LOG_ATTACH,
				      * and the log it replaces (shimmy_ctl_replaced) */
	SHIMMY_CTL__MAX = 12,
} shimmy_ctl_type;

/* shimmy_ctl.flags */
enum {
	SHIMMY_CTL_F_RELIABLE = 1u << 0,  /* LOG_CREATE/GRANT: QoS 1/2 log */
	SHIMMY_CTL_F_FROM_HEAD = 1u << 1, /* LOG_ATTACH: start at the head */
	SHIMMY_CTL_F_INBOUND = 1u << 2,   /* LOG_ATTACH: the broker's inbound
					   * log; topic per record (§10) */
};

/* LOG_DETACH and SHARE_DETACH reasons (arg). */
enum {
	SHIMMY_CTL_DETACH_UNSUBSCRIBED = 1,
	SHIMMY_CTL_DETACH_STUCK = 2,
	SHIMMY_CTL_DETACH_DENIED = 3,
};

/*
 * A decoded control message. Layout on the wire (little endian):
 *
 * | off | size | field     |
 * |-----|------|-----------|
 * | 0   | 4    | magic "SHYC" |
 * | 4   | 2    | version (1) |
 * | 6   | 2    | type      |
 * | 8   | 2    | nfds      |
 * | 10  | 2    | topic_len |
 * | 12  | 4    | status    |
 * | 16  | 8    | log_id    |
 * | 24  | 8    | gen       |
 * | 32  | 4    | idx       |
 * | 36  | 4    | flags     |
 * | 40  | 4    | req_id    |
 * | 44  | 4    | arg       |
 * | 48  | topic_len | topic (UTF-8, no NUL) |
 */
typedef struct shimmy_ctl {
	uint16_t type;
	uint16_t nfds;
	uint32_t status; /* 0 or an MQTT reason code (e.g. 0x87) */
	uint64_t log_id;
	uint64_t gen;
	uint32_t idx;
	uint32_t flags;
	uint32_t req_id;
	uint32_t arg;
	const char *topic; /* view into the decoded buffer, not NUL-terminated */
	uint16_t topic_len;
} shimmy_ctl;

/* LOG_REPLACE names the log it replaces in req_id (low 32 bits) and arg
 * (high 32 bits): log_id is the new log, as in LOG_ATTACH. */
static inline uint64_t shimmy_ctl_replaced(const shimmy_ctl *m)
{
	return (uint64_t)m->arg << 32 | m->req_id;
}

static inline void shimmy_ctl_set_replaced(shimmy_ctl *m, uint64_t old_id)
{
	m->req_id = (uint32_t)old_id;
	m->arg = (uint32_t)(old_id >> 32);
}

/* The number of fds a message of this type and status must carry, or -1
 * for an unknown type. */
int shimmy_ctl_fds_for(uint16_t type, uint32_t status);

/*
 * Encodes m (its nfds is ignored: shimmy_ctl_fds_for() decides) into
 * buf[0..cap). Returns the bytes needed (as snprintf: written only when
 * <= cap) or MQTT_ERR_INVALID (unknown type, topic over 65535 bytes).
 */
int shimmy_ctl_encode(const shimmy_ctl *m, uint8_t *buf, size_t cap);

/*
 * Decodes one control message from buf[0..len) (the whole PUBLISH
 * payload). Checks magic, version, type, nfds against the type, and that
 * the topic fills the rest exactly. m->topic points into buf. Returns 0,
 * MQTT_ERR_MALFORMED or MQTT_ERR_PROTOCOL (another version).
 * Pure: no allocation, no I/O.
 */
int shimmy_ctl_decode(const uint8_t *buf, size_t len, shimmy_ctl *m);

/*
 * Frames m as an MQTT PUBLISH QoS 0 on SHIMMY_CTL_TOPIC into buf[0..cap);
 * v5 != 0 adds the empty property block (the connection is always MQTT 5
 * when shm is active). Returns the bytes needed (written only when <= cap)
 * or MQTT_ERR_INVALID.
 */
int shimmy_ctl_frame(const shimmy_ctl *m, int v5, uint8_t *buf, size_t cap);

/* True when topic[0..len) is a control topic (starts with "$shimmy/"). */
int shimmy_ctl_is_reserved(const char *topic, size_t len);

/*
 * FIFO of fds received as SCM_RIGHTS and not yet claimed by a message.
 * Storage is inline; the queue owns the fds it holds.
 */
#define SHIMMY_FDQ_CAP 64u
typedef struct shimmy_fdq {
	int fds[SHIMMY_FDQ_CAP];
	uint32_t head, count;
} shimmy_fdq;

void shimmy_fdq_init(shimmy_fdq *q);
/* Closes every fd still queued. */
void shimmy_fdq_fini(shimmy_fdq *q);
/* Appends fd (transferred). Returns 0, or -ENOSPC (fd closed: a peer that
 * sends fds without messages cannot make us hoard them). */
int shimmy_fdq_push(shimmy_fdq *q, int fd);
/* Moves the n oldest fds to out[0..n) (caller owns them). Returns 0, or
 * -ENOENT when fewer than n are queued (nothing popped). */
int shimmy_fdq_pop(shimmy_fdq *q, int *out, unsigned n);
/* Fds queued. */
static inline uint32_t shimmy_fdq_count(const shimmy_fdq *q)
{
	return q->count;
}

#endif

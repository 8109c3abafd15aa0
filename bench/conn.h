/*
 * bench/conn.h — a minimal MQTT client connection for load generation, over
 * the sans-IO codec (mqtt/packet.h).
 *
 * It owns a socket and a read buffer: conn_next() reads as much as fits
 * (e.g. 1 MiB) and then hands out the packets in it one by one, so one read
 * serves many packets. Decoded packets are views into that buffer, valid
 * until the next conn_next() call.
 * Thread model: one thread per conn.
 */
#ifndef SHIMMY_BENCH_CONN_H
#define SHIMMY_BENCH_CONN_H

#include <stddef.h>
#include <stdint.h>

#include "mqtt/packet.h"

typedef struct conn {
	int fd;
	mqtt_version ver;
	uint8_t *buf;     /* caller owns nothing: conn_fini frees */
	size_t cap, off, len; /* unread bytes are buf[off..len) */
} conn;

/* TCP connect to host:port with TCP_NODELAY, blocking. Returns fd or -errno
 * (or an EAI error mapped to -EHOSTUNREACH). */
int conn_dial(const char *host, const char *port);

/* Sets up c around a dialled fd (transferred) with a read buffer of
 * read_cap bytes. Returns 0 or -ENOMEM (fd is closed then). */
int conn_init(conn *c, int fd, mqtt_version ver, size_t read_cap);
void conn_fini(conn *c);

/* Writes all of buf (blocking). Returns 0 or -errno. */
int conn_write_all(int fd, const void *buf, size_t len);

/* Sends CONNECT (clean session) and waits up to timeout_ms for CONNACK.
 * Returns 0, -ECONNREFUSED when the broker refuses, or another error. */
int conn_handshake(conn *c, const char *client_id, uint16_t keepalive_s,
		   int timeout_ms);

/* Sends SUBSCRIBE for filter at qos and waits for SUBACK. */
int conn_subscribe(conn *c, const char *filter, unsigned qos, int timeout_ms);

/*
 * Returns the next packet in *pkt: 1 when one is there, 0 when nothing
 * arrived within timeout_ms (0: don't wait), -EPIPE when the peer closed,
 * a negative mqtt_err on bad bytes, or -errno. Reads only when the buffer
 * holds no whole packet.
 */
int conn_next(conn *c, mqtt_packet *pkt, int timeout_ms);

/* Encodes pkt into buf[*pos..cap) and advances *pos. Returns 0, or
 * -ENOSPC when it does not fit (nothing written), or an mqtt_err. */
int conn_encode(uint8_t *buf, size_t cap, size_t *pos, mqtt_version ver,
		const mqtt_packet *pkt);

#endif

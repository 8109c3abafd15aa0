/*
 * shm_probe — a hand-rolled shm/2 client for integration tests that need
 * to misbehave or look under the hood, which libshimmy never does. Speaks
 * MQTT 5 over the broker's Unix socket with the project's codec and
 * shmpath/ctl, receives fds with recvmsg().
 *
 *   shm_probe SOCK evil TOPIC MS   get a log on TOPIC, publish 5 valid
 *                                  records ("ok1".."ok5"), then scribble
 *                                  random bytes over the whole ring (header
 *                                  lines, records) for MS milliseconds;
 *                                  exits 0
 *   shm_probe SOCK rocheck FILTER  subscribe, wait for a LOG_ATTACH, check
 *                                  that the log cannot be made writable
 *                                  (mprotect, mmap PROT_WRITE, write());
 *                                  prints RO-OK, exits 0
 *   shm_probe SOCK badctl          sends a malformed control message and
 *                                  expects the broker to close; exits 0
 *   shm_probe SOCK noshm           CONNECT with the property; exits 0 if
 *                                  the CONNACK does NOT echo it, 3 if it does
 *
 * Exit 1 on any unexpected condition, with a line on stderr.
 */
#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "mqtt/error.h"
#include "mqtt/packet.h"
#include "shmpath/ctl.h"
#include "shmpath/notify.h"
#include "shmpath/ring.h"
#include "shmpath/segment.h"

static int g_fd = -1;
static shimmy_fdq g_q;
static uint8_t g_in[1 << 20];
static size_t g_len;

static void die(const char *what)
{
	fprintf(stderr, "shm_probe: %s\n", what);
	exit(1);
}

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void send_all(const uint8_t *p, size_t n)
{
	while (n) {
		ssize_t w = send(g_fd, p, n, MSG_NOSIGNAL);
		if (w <= 0)
			die("send failed");
		p += w;
		n -= (size_t)w;
	}
}

/* Reads more input (waits up to ms). Returns 0 on EOF, 1 otherwise. */
static int read_more(int ms)
{
	struct pollfd pfd = { g_fd, POLLIN, 0 };
	if (poll(&pfd, 1, ms) <= 0)
		return 1;
	union {
		char buf[CMSG_SPACE(64 * sizeof(int))];
		struct cmsghdr a;
	} u;
	struct iovec iov = { g_in + g_len, sizeof(g_in) - g_len };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1,
			     .msg_control = u.buf, .msg_controllen = sizeof(u.buf) };
	ssize_t r = recvmsg(g_fd, &mh, MSG_CMSG_CLOEXEC);
	if (r <= 0)
		return 0;
	for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm)) {
		if (cm->cmsg_type != SCM_RIGHTS)
			continue;
		size_t n = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t i = 0; i < n; i++) {
			int fd;
			memcpy(&fd, CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
			shimmy_fdq_push(&g_q, fd);
		}
	}
	g_len += (size_t)r;
	return 1;
}

/* Next packet (waits up to ms). Returns 1, 0 on timeout, -1 on EOF. */
static int next_pkt(mqtt_packet *pkt, uint8_t *copy, int ms)
{
	int64_t end = now_ms() + ms;
	for (;;) {
		int n = g_len ? mqtt_decode(g_in, g_len, MQTT_V5, 0, pkt)
			      : MQTT_ERR_NEED_MORE;
		if (n > 0) {
			memcpy(copy, g_in, (size_t)n);
			memmove(g_in, g_in + n, g_len - (size_t)n);
			g_len -= (size_t)n;
			return mqtt_decode(copy, (size_t)n, MQTT_V5, 0, pkt) > 0 ? 1 : -1;
		}
		if (n != MQTT_ERR_NEED_MORE)
			die("bad packet from broker");
		int left = (int)(end - now_ms());
		if (left <= 0)
			return 0;
		if (!read_more(left))
			return -1;
	}
}

static bool is_ctl(const mqtt_packet *p, shimmy_ctl *m)
{
	return p->type == MQTT_PUBLISH &&
	       p->u.publish.topic.len == SHIMMY_CTL_TOPIC_LEN &&
	       memcmp(p->u.publish.topic.ptr, SHIMMY_CTL_TOPIC, SHIMMY_CTL_TOPIC_LEN) == 0 &&
	       shimmy_ctl_decode(p->u.publish.payload.ptr, p->u.publish.payload.len, m) == 0;
}

/* Connects and sends CONNECT offering shm/2. Returns whether CONNACK echoed. */
static bool connect_shm(const char *path)
{
	g_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", path);
	if (g_fd < 0 || connect(g_fd, (struct sockaddr *)&sun, sizeof(sun)) < 0)
		die("connect failed");
	mqtt_user_prop up = { mqtt_str_c("shimmy"), mqtt_str_c(SHIMMY_SHM_PROTOCOL) };
	mqtt_packet p;
	memset(&p, 0, sizeof(p));
	p.type = MQTT_CONNECT;
	p.u.connect.version = MQTT_V5;
	p.u.connect.clean_start = true;
	p.u.connect.keep_alive = 60;
	p.u.connect.client_id = mqtt_str_c("");
	p.u.connect.props.user = &up;
	p.u.connect.props.user_count = 1;
	uint8_t buf[512];
	long n = mqtt_encode(buf, sizeof(buf), MQTT_V5, &p);
	if (n <= 0 || n > (long)sizeof(buf))
		die("encode CONNECT");
	send_all(buf, (size_t)n);
	static uint8_t copy[1 << 20];
	if (next_pkt(&p, copy, 5000) != 1 || p.type != MQTT_CONNACK ||
	    p.u.connack.reason != 0)
		die("no CONNACK");
	uint32_t off = 0;
	mqtt_prop pr;
	while (mqtt_props_next(p.u.connack.props.raw, &off, &pr) == 1)
		if (pr.id == MQTT_PROP_USER_PROPERTY && pr.str.len == 6 &&
		    memcmp(pr.str.ptr, "shimmy", 6) == 0)
			return true;
	return false;
}

static void send_ctl(const shimmy_ctl *m)
{
	uint8_t buf[SHIMMY_CTL_FRAME_MAX(256)];
	int n = shimmy_ctl_frame(m, 1, buf, sizeof(buf));
	if (n <= 0 || n > (int)sizeof(buf))
		die("frame");
	send_all(buf, (size_t)n);
}

/* Waits for a control message of type (others are consumed, their fds
 * closed). Returns its fds in fds[]. */
static shimmy_ctl wait_ctl(uint16_t type, uint32_t flags_none, int *fds)
{
	static uint8_t copy[1 << 20];
	mqtt_packet p;
	shimmy_ctl m;
	for (;;) {
		int rc = next_pkt(&p, copy, 5000);
		if (rc != 1)
			die("control message did not come");
		if (!is_ctl(&p, &m))
			continue;
		if (shimmy_fdq_pop(&g_q, fds, m.nfds) < 0)
			die("fds missing");
		if (m.type == type && !(m.flags & flags_none))
			return m;
		for (unsigned i = 0; i < m.nfds; i++)
			close(fds[i]);
	}
}

/* Readers' slot pages and bells a publisher tracks, and their gens, by
 * table index. */
static shimmy_seg trk[2 * SHIMMY_RING_READERS];
static uint64_t trk_gen[SHIMMY_RING_READERS];

/* A READER_ADD (fds: slot, bell): maps them into trk[]. Returns whether
 * it did (else the fds are closed). */
static bool trk_map(const shimmy_ctl *m, int *fds)
{
	if (m->type != SHIMMY_CTL_READER_ADD || m->idx >= SHIMMY_RING_READERS ||
	    shimmy_seg_map(&trk[2 * m->idx], fds[0], SHIMMY_SEG_SLOT, SHIMMY_SEG_RDONLY)) {
		for (unsigned k = 0; k < m->nfds; k++)
			close(fds[k]);
		return false;
	}
	if (shimmy_seg_map(&trk[2 * m->idx + 1], fds[1], SHIMMY_SEG_BELL, SHIMMY_SEG_RDWR)) {
		close(fds[1]);
		shimmy_seg_unmap(&trk[2 * m->idx]);
		return false;
	}
	trk_gen[m->idx] = m->gen;
	return true;
}

static void trk_track(shimmy_ring_writer *w, uint32_t idx)
{
	size_t sl, bl;
	void *sm = shimmy_seg_body(&trk[2 * idx], &sl);
	void *bm = shimmy_seg_body(&trk[2 * idx + 1], &bl);
	shimmy_ring_writer_track(w, idx, trk_gen[idx], sm, sl,
				 shimmy_bell_at(bm, bl));
}

static int do_evil(const char *path, const char *topic, int ms)
{
	int fds[4];
	if (!connect_shm(path))
		die("shm not negotiated");
	wait_ctl(SHIMMY_CTL_BELL_SETUP, 0, fds);
	close(fds[0]);
	shimmy_ctl req = { .type = SHIMMY_CTL_LOG_CREATE, .req_id = 1,
			   .arg = UINT32_MAX, .topic = topic,
			   .topic_len = (uint16_t)strlen(topic) };
	send_ctl(&req);
	/* The readers that already subscribe come first (READER_ADD with our
	 * req_id), then the grant. */
	bool pre[SHIMMY_RING_READERS] = { false };
	shimmy_ctl g;
	static uint8_t gcopy[1 << 20];
	for (;;) {
		mqtt_packet p;
		if (next_pkt(&p, gcopy, 5000) != 1)
			die("LOG_GRANT did not come");
		if (!is_ctl(&p, &g))
			continue;
		if (shimmy_fdq_pop(&g_q, fds, g.nfds) < 0)
			die("fds missing");
		if (g.type == SHIMMY_CTL_LOG_GRANT)
			break;
		if (g.type == SHIMMY_CTL_READER_ADD && g.req_id == 1 && trk_map(&g, fds))
			pre[g.idx] = true;
		else if (g.type != SHIMMY_CTL_READER_ADD)
			for (unsigned i = 0; i < g.nfds; i++)
				close(fds[i]);
	}
	if (g.status != 0)
		die("log refused");
	shimmy_seg seg;
	if (shimmy_seg_map(&seg, fds[0], SHIMMY_SEG_LOG, SHIMMY_SEG_RDWR) != 0)
		die("map log");
	size_t len;
	uint8_t *mem = shimmy_seg_body(&seg, &len);
	shimmy_ring_writer *w;
	if (shimmy_ring_writer_create(&w, mem, len) != 0)
		die("writer");
	for (uint32_t i = 0; i < SHIMMY_RING_READERS; i++)
		if (pre[i])
			trk_track(w, i);
	/* Readers attach: track them like a real publisher, so their bells
	 * ring (the broker reads only when rung or once per tick). */
	static uint8_t copy[1 << 20];
	int64_t until = now_ms() + 300;
	for (int left; (left = (int)(until - now_ms())) > 0;) {
		mqtt_packet p;
		shimmy_ctl m;
		if (next_pkt(&p, copy, left) != 1 || !is_ctl(&p, &m))
			continue;
		if (shimmy_fdq_pop(&g_q, fds, m.nfds) < 0)
			die("fds missing");
		if (trk_map(&m, fds))
			trk_track(w, m.idx);
	}
	for (int i = 1; i <= 5; i++) {
		char msg[8];
		snprintf(msg, sizeof(msg), "ok%d", i);
		shimmy_ring_publish(w, NULL, 0, msg, (uint32_t)strlen(msg), 0, 0, 0);
	}
	usleep(300 * 1000);
	/* Garbage everywhere the publisher can write: every byte of the ring,
	 * the segment header page included. */
	uint8_t *all = seg.base;
	unsigned seed = 12345;
	int64_t end = now_ms() + ms;
	while (now_ms() < end) {
		for (size_t k = 0; k < seg.size; k += 8) {
			seed = seed * 1103515245u + 12345u;
			uint64_t v = ((uint64_t)seed << 32) | (seed >> 3);
			memcpy(all + k, &v, 8);
		}
		/* Plausible-looking records too: small rec_len, commit words
		 * that match positions. */
		for (size_t k = SHIMMY_RING_HDR_SIZE; k + 64 <= len; k += 64) {
			uint64_t pos = k - SHIMMY_RING_HDR_SIZE;
			uint64_t commit = pos | 1;
			memcpy(mem + k, &commit, 8);
			uint32_t rl = (seed >> 7) & 0x3ffc0;
			memcpy(mem + k + 28, &rl, 4);
		}
		usleep(1000);
	}
	printf("EVIL-DONE\n");
	fflush(stdout);
	usleep(500 * 1000);
	shimmy_ring_writer_destroy(w);
	shimmy_seg_unmap(&seg);
	for (size_t k = 0; k < 2 * SHIMMY_RING_READERS; k++)
		shimmy_seg_unmap(&trk[k]);
	return 0;
}

static int do_rocheck(const char *path, const char *filter)
{
	int fds[4];
	if (!connect_shm(path))
		die("shm not negotiated");
	uint8_t buf[512];
	mqtt_topic_entry e = { mqtt_str_c(filter), 0 };
	long n = mqtt_encode_subscribe(buf, sizeof(buf), MQTT_V5, MQTT_SUBSCRIBE, 1,
				       NULL, &e, 1);
	if (n <= 0 || n > (long)sizeof(buf))
		die("encode SUBSCRIBE");
	send_all(buf, (size_t)n);
	shimmy_ctl a = wait_ctl(SHIMMY_CTL_LOG_ATTACH, SHIMMY_CTL_F_INBOUND, fds);
	(void)a;
	shimmy_seg seg;
	int rawfd = fds[0];
	int dupfd = dup(rawfd);
	if (shimmy_seg_map(&seg, rawfd, SHIMMY_SEG_LOG, SHIMMY_SEG_RDONLY) != 0)
		die("map RO");
	if (mprotect(seg.base, seg.size, PROT_READ | PROT_WRITE) == 0 || errno != EACCES)
		die("mprotect(PROT_WRITE) of a subscriber's log succeeded");
	void *p = mmap(NULL, seg.size, PROT_READ | PROT_WRITE, MAP_SHARED, dupfd, 0);
	if (p != MAP_FAILED)
		die("mmap(PROT_WRITE) of a subscriber's log succeeded");
	if (write(dupfd, "x", 1) >= 0)
		die("write() to a subscriber's log fd succeeded");
	printf("RO-OK\n");
	return 0;
}

static int do_badctl(const char *path)
{
	if (!connect_shm(path))
		die("shm not negotiated");
	/* A publish on $shimmy/ctl whose payload is no control message. */
	static const uint8_t pkt[] = { 0x30, 2 + 11 + 1 + 4, 0, 11, '$', 's', 'h',
				       'i', 'm', 'm', 'y', '/', 'c', 't', 'l',
				       0, 'j', 'u', 'n', 'k' };
	send_all(pkt, sizeof(pkt));
	static uint8_t copy[1 << 20];
	mqtt_packet p;
	for (;;) {
		int rc = next_pkt(&p, copy, 5000);
		if (rc < 0)
			break; /* closed: as it should */
		if (rc == 0)
			die("broker kept the connection");
	}
	printf("CLOSED\n");
	return 0;
}

int main(int argc, char **argv)
{
	shimmy_fdq_init(&g_q);
	if (argc >= 5 && strcmp(argv[2], "evil") == 0)
		return do_evil(argv[1], argv[3], atoi(argv[4]));
	if (argc >= 4 && strcmp(argv[2], "rocheck") == 0)
		return do_rocheck(argv[1], argv[3]);
	if (argc >= 3 && strcmp(argv[2], "badctl") == 0)
		return do_badctl(argv[1]);
	if (argc >= 3 && strcmp(argv[2], "noshm") == 0)
		return connect_shm(argv[1]) ? 3 : 0;
	fprintf(stderr, "usage: shm_probe SOCK evil TOPIC MS | rocheck FILTER | badctl | noshm\n");
	return 2;
}

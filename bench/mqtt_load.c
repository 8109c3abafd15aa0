/*
 * bench/mqtt_load.c — MQTT load, round-trip and idle-connection runs; see
 * mqtt_load.h.
 *
 * Threads: one per publisher, one per subscriber, and the caller's thread,
 * which starts them, prints progress and gathers results. They share only
 * the `load` struct below: start flags and progress counters, all atomics.
 */
#include "bench/mqtt_load.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench/conn.h"
#include "bench/proc.h"

#define HANDSHAKE_MS 10000
#define POLL_MS 50

/* A counter on a cache line of its own, so subscribers updating theirs do
 * not slow each other down. */
typedef struct counter {
	_Alignas(64) _Atomic uint64_t v;
} counter;

typedef struct load load;

typedef struct pub_state {
	load *ld;
	unsigned idx;
	pthread_t th;
	int rc;
	uint64_t first_ns;      /* send time of the first measured message */
} pub_state;

typedef struct sub_state {
	load *ld;
	unsigned idx;
	pthread_t th;
	int rc;
	uint64_t last_rx_ns;
	uint64_t received;      /* measured deliveries */
	uint64_t reordered;
	uint64_t *next;         /* [pubs]: next sequence number expected */
	histo *lat;
} sub_state;

struct load {
	const run_cfg *cfg;
	_Atomic unsigned subs_ready, pubs_ready, pubs_done, threads_done;
	_Atomic int go, abort;
	counter *progress;      /* [sub * pubs + pub]: messages of pub that sub
				   has seen or skipped past */
	counter *delivered;     /* [sub]: measured deliveries, for progress */
	pub_state *pubs;
	sub_state *subs;
};

static void sleep_us(unsigned us)
{
	struct timespec ts = { 0, (long)us * 1000 };
	nanosleep(&ts, NULL);
}

static void client_id(char *buf, size_t cap, const char *role, unsigned i)
{
	snprintf(buf, cap, "sb-%s%u-%d", role, i, (int)getpid());
}

/* Dials and CONNECTs from the netns named by `ns`. */
static int open_conn(conn *c, const run_cfg *cfg, const char *ns,
		     const char *host, const char *id, size_t read_cap)
{
	int rc = run_enter_netns(ns);
	if (rc < 0) {
		fprintf(stderr, "shimmy-bench: netns %s: %s\n", ns, strerror(-rc));
		return rc;
	}
	int fd = conn_dial(host, cfg->port);
	if (fd < 0) {
		fprintf(stderr, "shimmy-bench: connect %s:%s: %s\n", host,
			cfg->port, strerror(-fd));
		return fd;
	}
	rc = conn_init(c, fd, (mqtt_version)cfg->mqtt_version, read_cap);
	if (rc < 0)
		return rc;
	rc = conn_handshake(c, id, 0, HANDSHAKE_MS);
	if (rc < 0) {
		fprintf(stderr, "shimmy-bench: CONNECT %s:%s: %s\n", host,
			cfg->port, mqtt_strerror(rc));
		conn_fini(c);
	}
	return rc;
}

static bool has_whole_packet(const conn *c)
{
	uint32_t size;
	size_t avail = c->len - c->off;
	return avail && mqtt_packet_size(c->buf + c->off, avail, &size) > 0 &&
	       size <= avail;
}

static int flush(int fd, uint8_t *buf, size_t *len)
{
	int rc = *len ? conn_write_all(fd, buf, *len) : 0;
	*len = 0;
	return rc;
}

/* ---- subscriber ---- */

static void *sub_main(void *arg)
{
	sub_state *s = arg;
	load *ld = s->ld;
	const run_cfg *cfg = ld->cfg;
	char id[64];
	conn c;
	uint8_t acks[8192];
	size_t ack_len = 0;
	const uint64_t expected = cfg->count * cfg->pubs;
	const mqtt_version ver = (mqtt_version)cfg->mqtt_version;
	counter *prog = &ld->progress[(size_t)s->idx * cfg->pubs];

	client_id(id, sizeof(id), "s", s->idx);
	s->rc = open_conn(&c, cfg, cfg->sub_netns, cfg->sub_host, id,
			  cfg->read_bytes);
	if (s->rc < 0)
		goto out_fail;
	s->rc = conn_subscribe(&c, cfg->topic, cfg->qos, HANDSHAKE_MS);
	if (s->rc < 0) {
		fprintf(stderr, "shimmy-bench: SUBSCRIBE: %s\n", mqtt_strerror(s->rc));
		goto out_fini;
	}
	atomic_fetch_add(&ld->subs_ready, 1);

	uint64_t idle_since = 0;
	while (s->received < expected && !atomic_load(&ld->abort)) {
		mqtt_packet p;
		int rc = conn_next(&c, &p, POLL_MS);
		if (rc < 0) {
			fprintf(stderr, "shimmy-bench: subscriber %u: %s\n", s->idx,
				mqtt_strerror(rc));
			s->rc = rc;
			break;
		}
		if (rc == 0) {
			uint64_t now = proc_now_ns();
			if (atomic_load(&ld->pubs_done) < cfg->pubs)
				idle_since = 0;
			else if (!idle_since)
				idle_since = now;
			else if (now - idle_since > (uint64_t)cfg->drain_ms * 1000000)
				break; /* publishers are done; the rest is lost */
			continue;
		}
		if (p.type != MQTT_PUBLISH || p.u.publish.payload.len < RUN_STAMP_LEN)
			continue;
		uint64_t now = proc_now_ns(), ts, seq;
		run_unstamp(p.u.publish.payload.ptr, &ts, &seq);
		unsigned pub = (unsigned)((seq >> RUN_SEQ_PUB_SHIFT) & 0x7fff);
		uint64_t num = seq & RUN_SEQ_NUM_MASK;
		if (pub < cfg->pubs) {
			if (num >= s->next[pub]) {
				s->next[pub] = num + 1;
				/* Release pairs with the publisher's acquire in
				 * min_progress(): it only paces, publishes nothing. */
				atomic_store_explicit(&prog[pub].v, num + 1,
						      memory_order_release);
			} else {
				s->reordered++;
			}
			if (!(seq & RUN_SEQ_WARMUP)) {
				s->received++;
				s->last_rx_ns = now;
				histo_add(s->lat, now > ts ? now - ts : 0);
				atomic_store_explicit(&ld->delivered[s->idx].v,
						      s->received,
						      memory_order_relaxed);
			}
		}
		if (p.u.publish.qos == 1) {
			mqtt_packet a = { .type = MQTT_PUBACK };
			a.u.ack.packet_id = p.u.publish.packet_id;
			if (conn_encode(acks, sizeof(acks), &ack_len, ver, &a) == -ENOSPC) {
				s->rc = flush(c.fd, acks, &ack_len);
				conn_encode(acks, sizeof(acks), &ack_len, ver, &a);
			}
		}
		/* One write of all PUBACKs for what one read brought. */
		if (ack_len && !has_whole_packet(&c))
			s->rc = flush(c.fd, acks, &ack_len);
		if (s->rc < 0)
			break;
	}
	flush(c.fd, acks, &ack_len);
out_fini:
	conn_fini(&c);
out_fail:
	if (s->rc < 0 && atomic_load(&ld->subs_ready) < cfg->subs)
		atomic_store(&ld->abort, 1);
	atomic_fetch_add(&ld->threads_done, 1);
	return NULL;
}

/* ---- publisher ---- */

typedef struct pub_io {
	conn c;
	uint32_t inflight;
	uint16_t next_id;
} pub_io;

/* Reads whatever acknowledgements are there (waiting up to timeout_ms). */
static int pub_drain(pub_io *io, int timeout_ms)
{
	mqtt_packet p;
	int rc;
	while ((rc = conn_next(&io->c, &p, timeout_ms)) > 0) {
		if (p.type == MQTT_PUBACK && io->inflight)
			io->inflight--;
		timeout_ms = 0;
	}
	return rc;
}

/* Writes buf while also reading acks, so that a broker that stops reading
 * until we take its PUBACKs cannot deadlock us. */
static int pub_write(pub_io *io, const uint8_t *buf, size_t len)
{
	while (len) {
		ssize_t n = write(io->c.fd, buf, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN)
				return -errno;
			struct pollfd pfd = { .fd = io->c.fd, .events = POLLIN | POLLOUT };
			if (poll(&pfd, 1, 1000) > 0 && (pfd.revents & POLLIN)) {
				int rc = pub_drain(io, 0);
				if (rc < 0)
					return rc;
			}
			continue;
		}
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Messages of publisher p seen by its slowest subscriber. */
static uint64_t min_progress(load *ld, unsigned p)
{
	uint64_t m = UINT64_MAX;
	for (unsigned s = 0; s < ld->cfg->subs; s++) {
		uint64_t v = atomic_load_explicit(
			&ld->progress[(size_t)s * ld->cfg->pubs + p].v,
			memory_order_acquire);
		if (v < m)
			m = v;
	}
	return ld->cfg->subs ? m : UINT64_MAX;
}

/* Waits until subscribers have seen at least `want` messages of publisher p.
 * Returns false when they make no progress for drain_ms (a lossy broker). */
static bool wait_progress(load *ld, unsigned p, uint64_t want)
{
	uint64_t last = min_progress(ld, p), since = proc_now_ns();
	unsigned spins = 0;
	while (last < want && !atomic_load(&ld->abort)) {
		if (++spins < 64)
			sched_yield();
		else
			sleep_us(20);
		uint64_t now = proc_now_ns(), v = min_progress(ld, p);
		if (v != last) {
			last = v;
			since = now;
		} else if (now - since > (uint64_t)ld->cfg->drain_ms * 1000000) {
			return false;
		}
	}
	return true;
}

static void *pub_main(void *arg)
{
	pub_state *ps = arg;
	load *ld = ps->ld;
	const run_cfg *cfg = ld->cfg;
	const mqtt_version ver = (mqtt_version)cfg->mqtt_version;
	char id[64];
	pub_io io = { .next_id = 1 };
	uint8_t *buf = NULL, *payload = NULL;

	client_id(id, sizeof(id), "p", ps->idx);
	ps->rc = open_conn(&io.c, cfg, cfg->pub_netns, cfg->pub_host, id, 65536);
	if (ps->rc < 0)
		goto out_fail;
	fcntl(io.c.fd, F_SETFL, fcntl(io.c.fd, F_GETFL) | O_NONBLOCK);

	/* One packet's size decides the batch buffer (at least one packet). */
	mqtt_packet pk = { .type = MQTT_PUBLISH };
	pk.u.publish.qos = (uint8_t)cfg->qos;
	pk.u.publish.topic = mqtt_str_c(cfg->topic);
	pk.u.publish.packet_id = 1;
	payload = calloc(1, cfg->payload);
	if (!payload) {
		ps->rc = -ENOMEM;
		goto out_fini;
	}
	memset(payload, 0xa5, cfg->payload);
	pk.u.publish.payload = (mqtt_bytes){ payload, cfg->payload };
	long pkt_len = mqtt_encode(NULL, 0, ver, &pk);
	if (pkt_len < 0) {
		ps->rc = (int)pkt_len;
		goto out_fini;
	}
	size_t cap = cfg->batch_bytes > (size_t)pkt_len ? cfg->batch_bytes
							  : (size_t)pkt_len;
	buf = malloc(cap);
	if (!buf) {
		ps->rc = -ENOMEM;
		goto out_fini;
	}

	atomic_fetch_add(&ld->pubs_ready, 1);
	while (!atomic_load_explicit(&ld->go, memory_order_acquire)) {
		if (atomic_load(&ld->abort))
			goto out_fini;
		sleep_us(100);
	}

	const uint64_t total = cfg->warmup + cfg->count;
	const uint64_t pub_bits = (uint64_t)ps->idx << RUN_SEQ_PUB_SHIFT;
	uint64_t i = 0, t_rate0 = 0, window = cfg->window;
	while (i < total && !atomic_load(&ld->abort)) {
		uint64_t n_max = total - i;
		if (i == cfg->warmup && i > 0) {
			/* Warm-up over: start measuring from empty queues. */
			(void)wait_progress(ld, ps->idx, i);
		}
		if (i < cfg->warmup && n_max > cfg->warmup - i)
			n_max = cfg->warmup - i;
		if (window) {
			uint64_t seen = min_progress(ld, ps->idx);
			if (seen < i && i - seen >= window) {
				/* A broker that drops messages would stall us for
				 * ever: after one timeout, stop pacing. */
				if (!wait_progress(ld, ps->idx, i - window + 1))
					window = 0;
				seen = min_progress(ld, ps->idx);
			}
			uint64_t ahead = seen >= i ? 0 : i - seen;
			if (window && n_max > window - ahead && ahead < window)
				n_max = window - ahead;
		}
		if (cfg->rate > 0) {
			uint64_t now = proc_now_ns();
			if (!t_rate0)
				t_rate0 = now;
			uint64_t due_ns = t_rate0 + (uint64_t)((double)i * 1e9 / cfg->rate);
			if (due_ns > now) {
				struct timespec ts = { (time_t)(due_ns / 1000000000),
						       (long)(due_ns % 1000000000) };
				clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
				now = proc_now_ns();
			}
			uint64_t due = (uint64_t)((double)(now - t_rate0) * cfg->rate / 1e9) + 1;
			uint64_t n_due = due > i ? due - i : 1;
			if (n_max > n_due)
				n_max = n_due;
		}
		if (cfg->qos > 0) {
			int rc = pub_drain(&io, 0);
			while (rc >= 0 && io.inflight >= cfg->inflight)
				rc = pub_drain(&io, POLL_MS);
			if (rc < 0) {
				ps->rc = rc;
				break;
			}
			if (n_max > cfg->inflight - io.inflight)
				n_max = cfg->inflight - io.inflight;
		}
		size_t len = 0;
		uint64_t n = 0;
		while (n < n_max && cap - len >= (size_t)pkt_len) {
			uint64_t num = i + n;
			uint64_t seq = pub_bits | num | (num < cfg->warmup ? RUN_SEQ_WARMUP : 0);
			uint64_t now = proc_now_ns();
			if (num == cfg->warmup)
				ps->first_ns = now;
			run_stamp(payload, now, seq);
			if (cfg->qos > 0) {
				pk.u.publish.packet_id = io.next_id;
				io.next_id = io.next_id == 65535 ? 1 : io.next_id + 1;
			}
			int rc = conn_encode(buf, cap, &len, ver, &pk);
			if (rc < 0) {
				ps->rc = rc;
				goto out_done;
			}
			n++;
		}
		ps->rc = pub_write(&io, buf, len);
		if (ps->rc < 0) {
			fprintf(stderr, "shimmy-bench: publisher %u: %s\n", ps->idx,
				strerror(-ps->rc));
			break;
		}
		if (cfg->qos > 0)
			io.inflight += (uint32_t)n;
		i += n;
	}
	/* QoS 1: the run is over when the broker has taken everything. */
	uint64_t t0 = proc_now_ns();
	while (cfg->qos > 0 && io.inflight && ps->rc >= 0 &&
	       proc_now_ns() - t0 < (uint64_t)cfg->drain_ms * 1000000) {
		if (pub_drain(&io, POLL_MS) < 0)
			break;
	}
out_done:
	{
		mqtt_packet d = { .type = MQTT_DISCONNECT };
		uint8_t db[16];
		size_t dl = 0;
		if (conn_encode(db, sizeof(db), &dl, ver, &d) == 0)
			pub_write(&io, db, dl);
	}
out_fini:
	conn_fini(&io.c);
out_fail:
	free(buf);
	free(payload);
	if (ps->rc < 0)
		atomic_store(&ld->abort, 1);
	atomic_fetch_add(&ld->pubs_done, 1);
	atomic_fetch_add(&ld->threads_done, 1);
	return NULL;
}

/* ---- the run ---- */

static uint64_t total_delivered(load *ld)
{
	uint64_t t = 0;
	for (unsigned s = 0; s < ld->cfg->subs; s++)
		t += atomic_load_explicit(&ld->delivered[s].v, memory_order_relaxed);
	return t;
}

/* Waits until *ctr reaches want, a thread failed, or timeout_ms passes. */
static int wait_ready(load *ld, _Atomic unsigned *ctr, unsigned want,
		      unsigned timeout_ms)
{
	uint64_t t0 = proc_now_ns();
	while (atomic_load(ctr) < want) {
		if (atomic_load(&ld->abort))
			return -ECONNABORTED;
		if (proc_now_ns() - t0 > (uint64_t)timeout_ms * 1000000)
			return -ETIMEDOUT;
		sleep_us(1000);
	}
	return 0;
}

int mqtt_load_run(const run_cfg *cfg, run_result *out)
{
	int rc = 0;
	unsigned started = 0;
	load ld = { .cfg = cfg };
	size_t nprog = (size_t)cfg->subs * cfg->pubs;

	ld.progress = aligned_alloc(64, (nprog ? nprog : 1) * sizeof(counter));
	ld.delivered = aligned_alloc(64, (cfg->subs ? cfg->subs : 1) * sizeof(counter));
	ld.pubs = calloc(cfg->pubs, sizeof(pub_state));
	ld.subs = calloc(cfg->subs ? cfg->subs : 1, sizeof(sub_state));
	if (!ld.progress || !ld.delivered || !ld.pubs || !ld.subs) {
		rc = -ENOMEM;
		goto out_free;
	}
	for (size_t k = 0; k < nprog; k++)
		atomic_init(&ld.progress[k].v, 0);
	for (unsigned s = 0; s < cfg->subs; s++) {
		atomic_init(&ld.delivered[s].v, 0);
		sub_state *ss = &ld.subs[s];
		ss->ld = &ld;
		ss->idx = s;
		ss->next = calloc(cfg->pubs, sizeof(uint64_t));
		ss->lat = malloc(sizeof(histo));
		if (!ss->next || !ss->lat) {
			rc = -ENOMEM;
			goto out_free;
		}
		histo_init(ss->lat);
	}

	/* Subscribers first: every message must find all of them subscribed. */
	for (unsigned s = 0; s < cfg->subs; s++, started++) {
		if ((rc = -pthread_create(&ld.subs[s].th, NULL, sub_main, &ld.subs[s])))
			goto out_join;
	}
	if ((rc = wait_ready(&ld, &ld.subs_ready, cfg->subs, HANDSHAKE_MS * 2)))
		goto out_join;
	for (unsigned p = 0; p < cfg->pubs; p++, started++) {
		ld.pubs[p].ld = &ld;
		ld.pubs[p].idx = p;
		if ((rc = -pthread_create(&ld.pubs[p].th, NULL, pub_main, &ld.pubs[p])))
			goto out_join;
	}
	if ((rc = wait_ready(&ld, &ld.pubs_ready, cfg->pubs, HANDSHAKE_MS * 2)))
		goto out_join;

	double cpu0 = 0, cpu1 = 0;
	bool cpu_ok = cfg->broker_pid && proc_cpu_s(cfg->broker_pid, &cpu0) == 0;
	uint64_t t_go = proc_now_ns(), t_last = t_go, d_last = 0;
	/* Release pairs with the publishers' acquire of `go`. */
	atomic_store_explicit(&ld.go, 1, memory_order_release);
	while (atomic_load(&ld.threads_done) < started) {
		sleep_us(20000);
		uint64_t now = proc_now_ns();
		if (!cfg->quiet && now - t_last >= 1000000000ull) {
			uint64_t d = total_delivered(&ld);
			fprintf(stderr, "shimmy-bench: %5.1f s  delivered %llu/%llu"
				"  %.0f msgs/s\n", (double)(now - t_go) / 1e9,
				(unsigned long long)d,
				(unsigned long long)(cfg->count * cfg->pubs * cfg->subs),
				(double)(d - d_last) * 1e9 / (double)(now - t_last));
			t_last = now;
			d_last = d;
		}
	}
	if (cpu_ok && proc_cpu_s(cfg->broker_pid, &cpu1) == 0)
		out->broker_cpu_s = cpu1 - cpu0;

out_join:
	if (rc)
		atomic_store(&ld.abort, 1);
	for (unsigned s = 0; s < cfg->subs && started; s++, started--)
		pthread_join(ld.subs[s].th, NULL);
	for (unsigned p = 0; p < cfg->pubs && started; p++, started--)
		pthread_join(ld.pubs[p].th, NULL);
	/* An abort reports the failure that caused it. */
	for (unsigned s = 0; rc == -ECONNABORTED && s < cfg->subs; s++)
		if (ld.subs[s].rc < 0)
			rc = ld.subs[s].rc;
	for (unsigned p = 0; rc == -ECONNABORTED && p < cfg->pubs; p++)
		if (ld.pubs[p].rc < 0)
			rc = ld.pubs[p].rc;
	if (rc == 0) {
		uint64_t t0 = UINT64_MAX, t1 = 0;
		out->messages = cfg->count * cfg->pubs;
		for (unsigned p = 0; p < cfg->pubs; p++) {
			if (ld.pubs[p].rc < 0 && !rc)
				rc = ld.pubs[p].rc;
			if (ld.pubs[p].first_ns && ld.pubs[p].first_ns < t0)
				t0 = ld.pubs[p].first_ns;
		}
		for (unsigned s = 0; s < cfg->subs; s++) {
			sub_state *ss = &ld.subs[s];
			out->delivered += ss->received;
			out->reordered += ss->reordered;
			out->lost += out->messages > ss->received
					     ? out->messages - ss->received : 0;
			if (ss->last_rx_ns > t1)
				t1 = ss->last_rx_ns;
			histo_merge(&out->lat, ss->lat);
		}
		out->duration_ns = t1 > t0 && t0 != UINT64_MAX ? t1 - t0 : 0;
	}
out_free:
	for (unsigned s = 0; ld.subs && s < cfg->subs; s++) {
		free(ld.subs[s].next);
		free(ld.subs[s].lat);
	}
	free(ld.subs);
	free(ld.pubs);
	free(ld.delivered);
	free(ld.progress);
	return rc;
}

/* ---- round trip ---- */

int mqtt_rtt_run(const run_cfg *cfg, run_result *out)
{
	const mqtt_version ver = (mqtt_version)cfg->mqtt_version;
	char id[64];
	conn c;
	uint8_t buf[65536 + 256];
	uint8_t *payload = NULL, *wbuf = NULL;
	int rc;

	client_id(id, sizeof(id), "r", 0);
	rc = open_conn(&c, cfg, cfg->pub_netns, cfg->pub_host, id, cfg->read_bytes);
	if (rc < 0)
		return rc;
	rc = conn_subscribe(&c, cfg->topic, cfg->qos, HANDSHAKE_MS);
	if (rc < 0)
		goto out_fini;
	payload = calloc(1, cfg->payload);
	wbuf = malloc((size_t)cfg->payload + 1024 + strlen(cfg->topic));
	if (!payload || !wbuf) {
		rc = -ENOMEM;
		goto out_fini;
	}
	mqtt_packet pk = { .type = MQTT_PUBLISH };
	pk.u.publish.qos = (uint8_t)cfg->qos;
	pk.u.publish.topic = mqtt_str_c(cfg->topic);
	pk.u.publish.payload = (mqtt_bytes){ payload, cfg->payload };
	size_t wcap = (size_t)cfg->payload + 1024 + strlen(cfg->topic);

	double cpu0 = 0, cpu1 = 0;
	bool cpu_ok = cfg->broker_pid && proc_cpu_s(cfg->broker_pid, &cpu0) == 0;
	uint64_t total = cfg->warmup + cfg->count, t_start = 0, t_end = 0;
	uint16_t pid = 1;
	for (uint64_t i = 0; i < total; i++) {
		uint64_t now = proc_now_ns();
		if (i == cfg->warmup)
			t_start = now;
		run_stamp(payload, now, i);
		pk.u.publish.packet_id = pid;
		pid = pid == 65535 ? 1 : pid + 1;
		size_t len = 0;
		if ((rc = conn_encode(wbuf, wcap, &len, ver, &pk)) < 0 ||
		    (rc = conn_write_all(c.fd, wbuf, len)) < 0)
			goto out_fini;
		for (;;) {
			mqtt_packet p;
			rc = conn_next(&c, &p, cfg->drain_ms);
			if (rc <= 0) {
				if (rc == 0) {
					out->lost++;
					rc = 0;
				}
				break;
			}
			if (p.type != MQTT_PUBLISH || p.u.publish.payload.len < RUN_STAMP_LEN)
				continue;
			uint64_t ts, seq, t = proc_now_ns();
			run_unstamp(p.u.publish.payload.ptr, &ts, &seq);
			if (p.u.publish.qos == 1) {
				mqtt_packet a = { .type = MQTT_PUBACK };
				a.u.ack.packet_id = p.u.publish.packet_id;
				size_t al = 0;
				conn_encode(buf, sizeof(buf), &al, ver, &a);
				conn_write_all(c.fd, buf, al);
			}
			if (seq != i)
				continue;
			if (i >= cfg->warmup) {
				histo_add(&out->lat, t - ts);
				out->delivered++;
			}
			t_end = t;
			break;
		}
		if (rc < 0)
			goto out_fini;
	}
	if (cpu_ok && proc_cpu_s(cfg->broker_pid, &cpu1) == 0)
		out->broker_cpu_s = cpu1 - cpu0;
	out->messages = cfg->count;
	out->duration_ns = t_end > t_start ? t_end - t_start : 0;
out_fini:
	free(payload);
	free(wbuf);
	conn_fini(&c);
	return rc;
}

/* ---- idle connections ---- */

#define IDLE_CHUNK 256

/* Reads one CONNACK from fd (blocking with a timeout). */
static int read_connack(int fd)
{
	uint8_t b[64];
	size_t got = 0;
	uint64_t t0 = proc_now_ns();
	for (;;) {
		uint32_t size;
		if (got && mqtt_packet_size(b, got, &size) > 0 && size <= got) {
			mqtt_packet p;
			int rc = mqtt_decode(b, size, MQTT_V311, 0, &p);
			if (rc < 0)
				return rc;
			if (p.type != MQTT_CONNACK || p.u.connack.reason)
				return -ECONNREFUSED;
			return 0;
		}
		if (got == sizeof(b))
			return MQTT_ERR_MALFORMED;
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		if (proc_now_ns() - t0 > (uint64_t)HANDSHAKE_MS * 1000000)
			return -ETIMEDOUT;
		if (poll(&pfd, 1, 100) <= 0)
			continue;
		ssize_t n = read(fd, b + got, sizeof(b) - got);
		if (n <= 0)
			return n == 0 ? -EPIPE : -errno;
		got += (size_t)n;
	}
}

int mqtt_idle_run(const run_cfg *cfg, run_result *out)
{
	int rc = 0;
	uint64_t rss0 = 0, rss1 = 0;
	int *fds = malloc(sizeof(int) * (cfg->conns ? cfg->conns : 1));
	if (!fds)
		return -ENOMEM;
	long lim = proc_raise_nofile((long)cfg->conns + 256);
	if (lim >= 0 && lim < (long)cfg->conns + 64)
		fprintf(stderr, "shimmy-bench: open-file limit %ld is below %u "
			"connections; raise ulimit -n\n", lim, cfg->conns);
	if (cfg->broker_pid && (rc = proc_rss_bytes(cfg->broker_pid, &rss0)) < 0) {
		fprintf(stderr, "shimmy-bench: broker pid %d: %s\n",
			(int)cfg->broker_pid, strerror(-rc));
		goto out_free;
	}
	if ((rc = run_enter_netns(cfg->sub_netns)) < 0)
		goto out_free;

	unsigned opened = 0;
	uint8_t pkt[128];
	uint64_t t0 = proc_now_ns();
	while (opened < cfg->conns) {
		unsigned n = cfg->conns - opened < IDLE_CHUNK ? cfg->conns - opened
							      : IDLE_CHUNK;
		/* Pipelined: CONNECT a chunk, then collect its CONNACKs. */
		unsigned k;
		for (k = 0; k < n; k++) {
			int fd = conn_dial(cfg->sub_host, cfg->port);
			if (fd < 0) {
				rc = fd;
				break;
			}
			fds[opened + k] = fd;
			char id[64];
			client_id(id, sizeof(id), "i", opened + k);
			mqtt_packet p = { .type = MQTT_CONNECT };
			p.u.connect.version = MQTT_V311;
			p.u.connect.clean_start = true;
			p.u.connect.keep_alive = 600;
			p.u.connect.client_id = mqtt_str_c(id);
			size_t len = 0;
			if (conn_encode(pkt, sizeof(pkt), &len, MQTT_V311, &p) == 0)
				rc = conn_write_all(fd, pkt, len);
			if (rc < 0) {
				close(fd);
				break;
			}
		}
		for (unsigned j = 0; j < k; j++) {
			int r = read_connack(fds[opened + j]);
			if (r == 0)
				out->conns_ok++;
			else if (!rc)
				rc = r;
		}
		opened += k;
		if (rc < 0) {
			fprintf(stderr, "shimmy-bench: connection %u: %s\n", opened,
				mqtt_strerror(rc));
			break;
		}
		if (!cfg->quiet && opened % 2048 < IDLE_CHUNK && opened >= 2048)
			fprintf(stderr, "shimmy-bench: %u connections open\n", opened);
	}
	out->duration_ns = proc_now_ns() - t0;
	sleep_us(cfg->hold_ms * 1000);
	if (cfg->broker_pid && out->conns_ok &&
	    proc_rss_bytes(cfg->broker_pid, &rss1) == 0)
		out->rss_per_conn = ((int64_t)rss1 - (int64_t)rss0) / (int64_t)out->conns_ok;
	out->messages = out->conns_ok;
	for (unsigned j = 0; j < opened; j++)
		close(fds[j]);
	if (out->conns_ok == cfg->conns)
		rc = 0; /* every connection made it */
out_free:
	free(fds);
	return rc;
}

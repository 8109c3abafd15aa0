/*
 * bench/shm_load.c — see shm_load.h. Threads share only the `sload`
 * struct: start flags and per-(subscriber, publisher) progress counters,
 * all atomics, each on its own cache line.
 */
#include "bench/shm_load.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench/proc.h"
#include "clients/include/shimmy.h"

#define SHM_CONNECT_MS 10000

typedef struct counter {
	_Alignas(64) _Atomic uint64_t v;
} counter;

typedef struct sload sload;

/* Each worker on cache lines of its own: a subscriber bumps its counters
 * at every message, which must not cost the publisher a miss. */
typedef struct sworker {
	_Alignas(64) sload *ld;
	unsigned idx;
	pthread_t th;
	int rc;
	uint64_t received, first_ns, last_ns;
	uint64_t *seen;          /* subscriber: messages per publisher */
	histo *lat;
} sworker;

struct sload {
	const run_cfg *cfg;
	char uri[300];
	counter *progress;       /* [sub * pubs + pub]: messages received */
	_Atomic unsigned ready, done;
	_Atomic int go, abort;
	uint64_t window;         /* see shm_window() */
	sworker *pubs, *subs;
};

/* n zeroed elements on cache lines of their own (free() releases). */
static void *zalloc_lines(size_t n, size_t size)
{
	size_t len = (n * size + 63) & ~(size_t)63;
	void *p = n && size <= SIZE_MAX / n ? aligned_alloc(64, len) : NULL;

	if (p)
		memset(p, 0, len);
	return p;
}

static shimmy_client *mk_client(const sload *ld, int *err)
{
	shimmy_opts *o = shimmy_opts_create();
	if (!o) {
		*err = SHIMMY_ERR_NOMEM;
		return NULL;
	}
	shimmy_opts_set_version(o, SHIMMY_MQTT_5);
	shimmy_opts_set_flags(o, SHIMMY_OPT_REQUIRE_SHM);
	shimmy_client *c = shimmy_client_create(ld->uri, o, err);
	shimmy_opts_destroy(o);
	if (c && (*err = shimmy_client_connect(c, SHM_CONNECT_MS)) != 0) {
		shimmy_client_destroy(c);
		c = NULL;
	}
	return c;
}

/* Per-batch state of a subscriber (shimmy_recv_batch callback). */
typedef struct sbatch {
	sworker *w;
	uint64_t got, now;
	unsigned n;        /* messages since the last clock read */
	bool every;        /* read the clock per message (latency mode) */
} sbatch;

static void sub_on_msg(const shimmy_msg *m, void *arg)
{
	sbatch *b = arg;
	sworker *w = b->w;
	const run_cfg *cfg = w->ld->cfg;
	size_t len;
	const uint8_t *p = shimmy_msg_payload(m, &len);
	uint64_t ts = 0, seq = 0;

	bool sample = b->every || (b->n++ & 15) == 0;

	if (len >= RUN_STAMP_LEN)
		run_unstamp(p, &ts, &seq);
	/* Throughput runs sample the latency of every 16th message, with a
	 * clock read of its own (a read costs 20-40 ns, more than a message);
	 * latency runs measure every message. */
	if (sample)
		b->now = proc_now_ns();
	b->got++;
	unsigned pub = (unsigned)((seq & ~RUN_SEQ_WARMUP) >> RUN_SEQ_PUB_SHIFT);
	if (pub < cfg->pubs)
		w->seen[pub]++;
	if (seq & RUN_SEQ_WARMUP)
		return;
	w->received++;
	if (sample)
		histo_add(w->lat, b->now > ts ? b->now - ts : 0);
}

/* Latency mode busy-polls: shimmy_recv_batch(timeout 0) makes no syscall
 * while the logs have data. Load mode spins (shimmy_shm_spin_us, or
 * SHIMMY_SHM_SPIN_US), then sleeps on the doorbell, so that it leaves the
 * CPU to the publisher on a small machine; in a stream it holds off
 * between batches (SHIMMY_SHM_HOLDOFF_NS, docs/shm-protocol.md §8).
 * Progress is published once per batch. */
static void *sub_main(void *arg)
{
	sworker *w = arg;
	sload *ld = w->ld;
	const run_cfg *cfg = ld->cfg;
	uint64_t want = (cfg->count + cfg->warmup) * cfg->pubs;
	uint64_t idle_since = 0;
	unsigned empty = 0;
	int err = 0;
	shimmy_client *c = mk_client(ld, &err);
	if (c && (err = shimmy_subscribe(c, cfg->topic, 0, 0)) > 0)
		err = 0;
	w->seen = zalloc_lines(cfg->pubs, sizeof(uint64_t));
	atomic_fetch_add(&ld->ready, 1);
	if (!c || err < 0 || !w->seen) {
		w->rc = err ? err : -EIO;
		atomic_store(&ld->abort, 1);
		goto out;
	}
	sbatch b = { .w = w, .every = cfg->mode == RUN_LATENCY };
	while (b.got < want && !atomic_load_explicit(&ld->abort, memory_order_relaxed)) {
		uint64_t received0 = w->received;
		int rc = shimmy_recv_batch(c, sub_on_msg, &b, 4096, b.every ? 0 : 50);
		if (rc < 0) {
			w->rc = rc;
			atomic_store(&ld->abort, 1);
			break;
		}
		if (rc == 0) {
			if (b.every && (++empty & 4095) != 0)
				continue;
			uint64_t now = proc_now_ns();
			if (!idle_since)
				idle_since = now;
			if (atomic_load(&ld->done) >= cfg->pubs &&
			    now - idle_since > (uint64_t)cfg->drain_ms * 1000000)
				break; /* publishers are done; the rest is lost */
			continue;
		}
		empty = 0;
		idle_since = 0;
		/* The end of the run is the end of the batch that brought its
		 * last message: one clock read per batch. */
		if (w->received != received0)
			w->last_ns = b.every ? b.now : proc_now_ns();
		for (unsigned p = 0; p < cfg->pubs; p++)
			atomic_store_explicit(&ld->progress[w->idx * cfg->pubs + p].v,
					      w->seen[p], memory_order_release);
	}
out:
	if (c) {
		shimmy_client_disconnect(c, 1000);
		shimmy_client_destroy(c);
	}
	return NULL;
}

/* Slowest subscriber's progress on publisher p's messages. */
static uint64_t min_progress(sload *ld, unsigned p)
{
	uint64_t m = UINT64_MAX;
	for (unsigned s = 0; s < ld->cfg->subs; s++) {
		uint64_t v = atomic_load_explicit(&ld->progress[s * ld->cfg->pubs + p].v,
						  memory_order_acquire);
		if (v < m)
			m = v;
	}
	return m == UINT64_MAX ? 0 : m;
}

static void *pub_main(void *arg)
{
	sworker *w = arg;
	sload *ld = w->ld;
	const run_cfg *cfg = ld->cfg;
	int err = 0;
	shimmy_client *c = mk_client(ld, &err);
	atomic_fetch_add(&ld->ready, 1);
	if (!c) {
		w->rc = err ? err : -EIO;
		atomic_store(&ld->abort, 1);
		goto out;
	}
	while (!atomic_load_explicit(&ld->go, memory_order_acquire) &&
	       !atomic_load(&ld->abort))
		sched_yield();
	uint64_t total = cfg->warmup + cfg->count, window = ld->window;
	uint64_t limit = 0; /* may send below this without looking again */
	double gap_ns = cfg->rate > 0 ? 1e9 / cfg->rate : 0;
	shimmy_pub *pb = NULL;
	if ((err = shimmy_pub_open(c, cfg->topic, &pb)) != 0) {
		w->rc = err;
		atomic_store(&ld->abort, 1);
		goto out;
	}
	uint64_t t_start = proc_now_ns(), now = t_start, next_clock = 0;
	/* Paced runs publish one message at a time; flat-out runs k at a
	 * time with --pub-batch (shimmy_pub_loan_many, one commit each). */
	unsigned batch = gap_ns > 0 ? 1 : cfg->pub_batch;
	void *bufs[64];
	int k;
	for (uint64_t i = 0; i < total && !atomic_load_explicit(&ld->abort, memory_order_relaxed); i += (uint64_t)k) {
		if (window && cfg->subs && i >= limit) {
			uint64_t t0 = proc_now_ns();
			while (i - min_progress(ld, w->idx) >= window) {
				if (proc_now_ns() - t0 > (uint64_t)cfg->drain_ms * 1000000) {
					window = 0; /* a subscriber stopped: go on */
					break;
				}
				sched_yield();
			}
			limit = min_progress(ld, w->idx) + window;
		}
		if (gap_ns > 0)
			while ((double)((now = proc_now_ns()) - t_start) < gap_ns * (double)i)
				;
		unsigned want = total - i < batch ? (unsigned)(total - i) : batch;
		int rc;
		if (batch > 1)
			k = rc = shimmy_pub_loan_many(pb, cfg->payload, bufs, want);
		else
			k = (rc = shimmy_pub_loan(pb, cfg->payload, &bufs[0])) == 0;
		if (rc < 0) {
			w->rc = rc;
			atomic_store(&ld->abort, 1);
			break;
		}
		/* Paced runs stamp the time they just read; flat-out runs read
		 * the clock every 16 messages or once per batch (a stamp is
		 * then up to 15 messages early, a few hundred ns at most). */
		if (gap_ns <= 0 && i >= next_clock) {
			now = proc_now_ns();
			next_clock = i + 16;
		}
		for (int j = 0; j < k; j++) {
			uint64_t m = i + (uint64_t)j;
			bool warm = m < cfg->warmup;
			uint64_t seq = ((uint64_t)w->idx << RUN_SEQ_PUB_SHIFT) |
				       (warm ? RUN_SEQ_WARMUP : 0) |
				       (warm ? m : m - cfg->warmup);
			if (!warm && !w->first_ns)
				w->first_ns = now;
			if (cfg->payload > RUN_STAMP_LEN)
				memset((uint8_t *)bufs[j] + RUN_STAMP_LEN, 'x',
				       cfg->payload - RUN_STAMP_LEN);
			run_stamp(bufs[j], now, seq);
		}
		rc = batch > 1 ? shimmy_pub_commit_many(pb, bufs, (unsigned)k)
			       : shimmy_pub_commit(pb, bufs[0]);
		if (rc != 0) {
			w->rc = rc;
			atomic_store(&ld->abort, 1);
			break;
		}
	}
	shimmy_pub_close(pb);
out:
	atomic_fetch_add(&ld->done, 1);
	if (c) {
		shimmy_client_disconnect(c, 1000);
		shimmy_client_destroy(c);
	}
	return NULL;
}

/*
 * Log size and window: a lossy log laps a reader that falls a whole ring
 * behind, so the publisher's lead (the window) must stay well inside the
 * ring. Picks the smallest size class (1 MiB, 16 MiB, 128 MiB) holding 64
 * records (unless SHIMMY_SHM_LOG_CLASS is set) and caps the window at half
 * the records the ring holds.
 */
static uint64_t shm_window(const run_cfg *cfg)
{
	/* Record size in the log (docs/shm-protocol.md §3): a short 32-byte
	 * record up to 16 payload bytes, else a 32-byte header, 32-aligned. */
	uint64_t rec = cfg->payload <= 16 ? 32 : ((uint64_t)cfg->payload + 32 + 31) & ~31ull;
	uint64_t caps[] = { 1ull << 20, 16ull << 20, 128ull << 20 };
	unsigned cls = 1;
	const char *e = getenv("SHIMMY_SHM_LOG_CLASS");
	if (e) {
		cls = (unsigned)atoi(e);
		if (cls < 1 || cls > 3)
			cls = 1;
	} else {
		while (cls < 3 && caps[cls - 1] < 64 * rec)
			cls++;
		char v[4];
		snprintf(v, sizeof(v), "%u", cls);
		setenv("SHIMMY_SHM_LOG_CLASS", v, 1);
	}
	uint64_t fit = (caps[cls - 1] - caps[cls - 1] / 16) / rec / 2;
	if (!cfg->window)
		return 0; /* --window 0: unlimited, readers may be lapped */
	if (cfg->window > fit)
		return fit ? fit : 1;
	return cfg->window;
}

static void set_uri(sload *ld, const run_cfg *cfg)
{
	const char *path = cfg->unix_path ? cfg->unix_path : getenv("SHIMMY_SOCKET");
	snprintf(ld->uri, sizeof(ld->uri), "unix://%s",
		 path ? path : "/run/shimmy/shimmy.sock");
}

int shm_load_run(const run_cfg *cfg, run_result *out)
{
	sload ld = { .cfg = cfg };
	size_t np = (size_t)cfg->subs * cfg->pubs;
	int rc = 0;
	unsigned started_s = 0, started_p = 0;
	set_uri(&ld, cfg);
	ld.window = shm_window(cfg);
	ld.progress = aligned_alloc(64, (np ? np : 1) * sizeof(counter));
	ld.pubs = zalloc_lines(cfg->pubs, sizeof(sworker));
	ld.subs = zalloc_lines(cfg->subs ? cfg->subs : 1, sizeof(sworker));
	if (!ld.progress || !ld.pubs || !ld.subs) {
		rc = -ENOMEM;
		goto out_free;
	}
	for (size_t k = 0; k < np; k++)
		atomic_init(&ld.progress[k].v, 0);
	for (unsigned s = 0; s < cfg->subs; s++) {
		ld.subs[s] = (sworker){ .ld = &ld, .idx = s, .lat = malloc(sizeof(histo)) };
		if (!ld.subs[s].lat) {
			rc = -ENOMEM;
			goto out_free;
		}
		histo_init(ld.subs[s].lat);
	}
	for (unsigned s = 0; s < cfg->subs; s++, started_s++)
		if ((rc = -pthread_create(&ld.subs[s].th, NULL, sub_main, &ld.subs[s])))
			goto out_join;
	while (atomic_load(&ld.ready) < cfg->subs && !atomic_load(&ld.abort))
		usleep(1000);
	for (unsigned p = 0; p < cfg->pubs; p++, started_p++) {
		ld.pubs[p] = (sworker){ .ld = &ld, .idx = p };
		if ((rc = -pthread_create(&ld.pubs[p].th, NULL, pub_main, &ld.pubs[p])))
			goto out_join;
	}
	while (atomic_load(&ld.ready) < cfg->subs + cfg->pubs && !atomic_load(&ld.abort))
		usleep(1000);
	double cpu0 = 0, cpu1 = 0;
	bool cpu_ok = cfg->broker_pid && proc_cpu_s(cfg->broker_pid, &cpu0) == 0;
	atomic_store_explicit(&ld.go, 1, memory_order_release);
out_join:
	if (rc)
		atomic_store(&ld.abort, 1);
	for (unsigned p = 0; p < started_p; p++)
		pthread_join(ld.pubs[p].th, NULL);
	for (unsigned s = 0; s < started_s; s++)
		pthread_join(ld.subs[s].th, NULL);
	if (rc == 0 && cpu_ok && proc_cpu_s(cfg->broker_pid, &cpu1) == 0)
		out->broker_cpu_s = cpu1 - cpu0;
	for (unsigned p = 0; rc == 0 && p < cfg->pubs; p++)
		if (ld.pubs[p].rc < 0)
			rc = ld.pubs[p].rc;
	for (unsigned s = 0; rc == 0 && s < cfg->subs; s++)
		if (ld.subs[s].rc < 0)
			rc = ld.subs[s].rc;
	if (rc == 0) {
		uint64_t t0 = UINT64_MAX, t1 = 0;
		out->messages = cfg->count * cfg->pubs;
		for (unsigned p = 0; p < cfg->pubs; p++)
			if (ld.pubs[p].first_ns && ld.pubs[p].first_ns < t0)
				t0 = ld.pubs[p].first_ns;
		for (unsigned s = 0; s < cfg->subs; s++) {
			sworker *w = &ld.subs[s];
			out->delivered += w->received;
			out->lost += out->messages > w->received ? out->messages - w->received : 0;
			if (w->last_ns > t1)
				t1 = w->last_ns;
			histo_merge(&out->lat, w->lat);
		}
		out->duration_ns = t1 > t0 && t0 != UINT64_MAX ? t1 - t0 : 0;
	}
out_free:
	for (unsigned s = 0; ld.subs && s < cfg->subs; s++) {
		free(ld.subs[s].lat);
		free(ld.subs[s].seen);
	}
	free(ld.subs);
	free(ld.pubs);
	free(ld.progress);
	return rc;
}

int shm_rtt_run(const run_cfg *cfg, run_result *out)
{
	sload ld = { .cfg = cfg };
	int err = 0;
	set_uri(&ld, cfg);
	shimmy_client *c = mk_client(&ld, &err);
	if (!c)
		return err ? err : -EIO;
	int rc = shimmy_subscribe(c, cfg->topic, 0, 0);
	if (rc < 0)
		goto out;
	rc = 0;
	uint8_t *payload = calloc(1, cfg->payload);
	if (!payload) {
		rc = -ENOMEM;
		goto out;
	}
	uint64_t total = cfg->warmup + cfg->count, t_first = 0, t_last = 0;
	double cpu0 = 0, cpu1 = 0;
	bool cpu_ok = cfg->broker_pid && proc_cpu_s(cfg->broker_pid, &cpu0) == 0;
	for (uint64_t i = 0; i < total; i++) {
		uint64_t t = proc_now_ns();
		run_stamp(payload, t, i);
		if ((rc = shimmy_publish(c, cfg->topic, payload, cfg->payload, 0, 0, NULL)))
			break;
		shimmy_msg *m;
		rc = shimmy_recv(c, &m, (int)cfg->drain_ms);
		if (rc == SHIMMY_ERR_TIMEOUT) {
			out->lost++;
			rc = 0;
			continue;
		}
		if (rc)
			break;
		uint64_t now = proc_now_ns();
		shimmy_msg_release(c, m);
		if (i < cfg->warmup)
			continue;
		if (!t_first)
			t_first = t;
		t_last = now;
		out->delivered++;
		histo_add(&out->lat, now - t);
	}
	free(payload);
	if (cpu_ok && proc_cpu_s(cfg->broker_pid, &cpu1) == 0)
		out->broker_cpu_s = cpu1 - cpu0;
	out->messages = cfg->count;
	out->duration_ns = t_last > t_first ? t_last - t_first : 0;
out:
	shimmy_client_disconnect(c, 1000);
	shimmy_client_destroy(c);
	return rc < 0 ? rc : 0;
}

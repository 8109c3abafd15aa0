/*
 * bench/kafka_load.c — Kafka load through librdkafka; see kafka_load.h.
 *
 * Threads: one per producer and one per consumer, each with its own
 * rd_kafka_t, plus librdkafka's own threads (and the mock cluster's).
 */
#include "bench/kafka_load.h"

#include <errno.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench/proc.h"

typedef struct kload kload;

typedef struct kpeer {
	kload *kl;
	unsigned idx;
	pthread_t th;
	int rc;
	uint64_t first_ns, last_rx_ns, received, reordered;
	uint64_t *next;
	histo *lat;
} kpeer;

struct kload {
	const run_cfg *cfg;
	char bootstrap[512];
	char topic[256];
	_Atomic unsigned ready, prod_done, cons_done;
	_Atomic int go, abort;
	_Atomic uint64_t delivered;
	_Atomic uint64_t sent;    /* all producers, warm-up included */
	uint64_t window;
	_Atomic uint64_t *seen; /* [consumer]: messages seen, warm-up included */
	kpeer *prod, *cons;
};

static rd_kafka_conf_t *conf_base(const kload *kl)
{
	char err[256];
	rd_kafka_conf_t *c = rd_kafka_conf_new();
	if (rd_kafka_conf_set(c, "bootstrap.servers", kl->bootstrap, err,
			      sizeof(err)) != RD_KAFKA_CONF_OK) {
		fprintf(stderr, "shimmy-bench: kafka: %s\n", err);
		rd_kafka_conf_destroy(c);
		return NULL;
	}
	return c;
}

static int conf_set(rd_kafka_conf_t *c, const char *k, const char *v)
{
	char err[256];
	if (rd_kafka_conf_set(c, k, v, err, sizeof(err)) != RD_KAFKA_CONF_OK) {
		fprintf(stderr, "shimmy-bench: kafka %s=%s: %s\n", k, v, err);
		return -EINVAL;
	}
	return 0;
}

static uint64_t min_seen(kload *kl)
{
	uint64_t m = UINT64_MAX;
	for (unsigned i = 0; i < kl->cfg->subs; i++) {
		uint64_t v = atomic_load(&kl->seen[i]);
		if (v < m)
			m = v;
	}
	return m;
}

/* Holds producers within kl->window messages of the slowest consumer, as
 * the MQTT load does; returns false (stop pacing) when consumers make no
 * progress for drain_ms. */
static bool window_wait(kload *kl, rd_kafka_t *rk)
{
	uint64_t last = min_seen(kl), since = proc_now_ns();
	while (last != UINT64_MAX && atomic_load(&kl->sent) >= last + kl->window &&
	       !atomic_load(&kl->abort)) {
		rd_kafka_poll(rk, 0);
		usleep(50);
		uint64_t v = min_seen(kl), now = proc_now_ns();
		if (v != last) {
			last = v;
			since = now;
		} else if (now - since > (uint64_t)kl->cfg->drain_ms * 1000000) {
			return false;
		}
	}
	return true;
}

/* After the warm-up: lets every consumer catch up (connections, metadata
 * and fetch sessions set up) before measuring, or gives up after drain_ms
 * without progress. */
static void warmup_wait(kload *kl, rd_kafka_t *rk)
{
	const run_cfg *cfg = kl->cfg;
	uint64_t want = cfg->warmup * cfg->pubs, last = 0, since = proc_now_ns();
	rd_kafka_flush(rk, (int)cfg->drain_ms);
	for (;;) {
		uint64_t m = UINT64_MAX;
		for (unsigned i = 0; i < cfg->subs; i++) {
			uint64_t v = atomic_load(&kl->seen[i]);
			if (v < m)
				m = v;
		}
		if (m >= want || m == UINT64_MAX || atomic_load(&kl->abort))
			return;
		uint64_t now = proc_now_ns();
		if (m != last) {
			last = m;
			since = now;
		} else if (now - since > (uint64_t)cfg->drain_ms * 1000000) {
			return;
		}
		usleep(1000);
	}
}

static void *prod_main(void *arg)
{
	kpeer *p = arg;
	kload *kl = p->kl;
	const run_cfg *cfg = kl->cfg;
	char err[256];
	uint8_t *payload = NULL;
	rd_kafka_t *rk = NULL;
	rd_kafka_conf_t *c = conf_base(kl);

	p->rc = -EINVAL;
	if (!c || conf_set(c, "acks", cfg->qos ? "all" : "0") ||
	    conf_set(c, "socket.nagle.disable", "true") ||
	    conf_set(c, "linger.ms", "1") ||
	    conf_set(c, "queue.buffering.max.kbytes", "1048576") ||
	    conf_set(c, "queue.buffering.max.messages", "1000000"))
		goto out;
	rk = rd_kafka_new(RD_KAFKA_PRODUCER, c, err, sizeof(err));
	if (!rk) {
		fprintf(stderr, "shimmy-bench: kafka producer: %s\n", err);
		goto out;
	}
	c = NULL; /* rd_kafka_new took it */
	payload = malloc(cfg->payload);
	if (!payload) {
		p->rc = -ENOMEM;
		goto out;
	}
	memset(payload, 0xa5, cfg->payload);
	p->rc = 0;
	atomic_fetch_add(&kl->ready, 1);
	while (!atomic_load_explicit(&kl->go, memory_order_acquire))
		usleep(100);

	uint64_t total = cfg->warmup + cfg->count;
	uint64_t bits = (uint64_t)p->idx << RUN_SEQ_PUB_SHIFT;
	bool window = kl->window > 0;
	for (uint64_t i = 0; i < total && !atomic_load(&kl->abort); i++) {
		if (i == cfg->warmup && i > 0)
			warmup_wait(kl, rk);
		if (window && !window_wait(kl, rk))
			window = false;
		uint64_t now = proc_now_ns();
		if (i == cfg->warmup)
			p->first_ns = now;
		run_stamp(payload, now, bits | i | (i < cfg->warmup ? RUN_SEQ_WARMUP : 0));
		for (;;) {
			rd_kafka_resp_err_t e = rd_kafka_producev(
				rk, RD_KAFKA_V_TOPIC(kl->topic),
				RD_KAFKA_V_PARTITION(0),
				RD_KAFKA_V_VALUE(payload, cfg->payload),
				RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
				RD_KAFKA_V_END);
			if (e == RD_KAFKA_RESP_ERR_NO_ERROR) {
				atomic_fetch_add(&kl->sent, 1);
				break;
			}
			if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
				fprintf(stderr, "shimmy-bench: kafka produce: %s\n",
					rd_kafka_err2str(e));
				p->rc = -EIO;
				goto out;
			}
			rd_kafka_poll(rk, 1);
		}
		rd_kafka_poll(rk, 0);
	}
	rd_kafka_flush(rk, 30000);
out:
	if (c)
		rd_kafka_conf_destroy(c);
	if (rk)
		rd_kafka_destroy(rk);
	free(payload);
	if (p->rc < 0)
		atomic_store(&kl->abort, 1);
	atomic_fetch_add(&kl->prod_done, 1);
	return NULL;
}

static void *cons_main(void *arg)
{
	kpeer *p = arg;
	kload *kl = p->kl;
	const run_cfg *cfg = kl->cfg;
	char err[256], group[64];
	rd_kafka_t *rk = NULL;
	rd_kafka_topic_partition_list_t *parts = NULL;
	rd_kafka_conf_t *c = conf_base(kl);
	const uint64_t expected = cfg->count * cfg->pubs;

	snprintf(group, sizeof(group), "sb-%d-%u", (int)getpid(), p->idx);
	p->rc = -EINVAL;
	if (!c || conf_set(c, "group.id", group) ||
	    conf_set(c, "socket.nagle.disable", "true") ||
	    conf_set(c, "enable.auto.commit", "false") ||
	    conf_set(c, "fetch.wait.max.ms", "5") ||
	    conf_set(c, "fetch.error.backoff.ms", "10"))
		goto out;
	rk = rd_kafka_new(RD_KAFKA_CONSUMER, c, err, sizeof(err));
	if (!rk) {
		fprintf(stderr, "shimmy-bench: kafka consumer: %s\n", err);
		goto out;
	}
	c = NULL;
	rd_kafka_poll_set_consumer(rk);
	parts = rd_kafka_topic_partition_list_new(1);
	rd_kafka_topic_partition_list_add(parts, kl->topic, 0)->offset =
		RD_KAFKA_OFFSET_BEGINNING;
	if (rd_kafka_assign(rk, parts) != RD_KAFKA_RESP_ERR_NO_ERROR)
		goto out;
	p->rc = 0;
	atomic_fetch_add(&kl->ready, 1);

	uint64_t idle_since = 0;
	while (p->received < expected && !atomic_load(&kl->abort)) {
		rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 50);
		uint64_t now = proc_now_ns();
		if (!m) {
			if (atomic_load(&kl->prod_done) < cfg->pubs)
				idle_since = 0;
			else if (!idle_since)
				idle_since = now;
			else if (now - idle_since > (uint64_t)cfg->drain_ms * 1000000)
				break;
			continue;
		}
		if (!m->err && m->len >= RUN_STAMP_LEN) {
			uint64_t ts, seq;
			run_unstamp(m->payload, &ts, &seq);
			unsigned pub = (unsigned)((seq >> RUN_SEQ_PUB_SHIFT) & 0x7fff);
			uint64_t num = seq & RUN_SEQ_NUM_MASK;
			atomic_fetch_add(&kl->seen[p->idx], 1);
			if (pub < cfg->pubs) {
				if (num >= p->next[pub])
					p->next[pub] = num + 1;
				else
					p->reordered++;
				if (!(seq & RUN_SEQ_WARMUP)) {
					p->received++;
					p->last_rx_ns = now;
					histo_add(p->lat, now > ts ? now - ts : 0);
					atomic_fetch_add_explicit(&kl->delivered, 1,
								  memory_order_relaxed);
				}
			}
		}
		rd_kafka_message_destroy(m);
	}
out:
	if (parts)
		rd_kafka_topic_partition_list_destroy(parts);
	if (c)
		rd_kafka_conf_destroy(c);
	if (rk) {
		rd_kafka_consumer_close(rk);
		rd_kafka_destroy(rk);
	}
	if (p->rc < 0)
		atomic_store(&kl->abort, 1);
	atomic_fetch_add(&kl->cons_done, 1);
	return NULL;
}

/* Creates the mock cluster on its own handle; returns that handle. */
static rd_kafka_t *mock_start(kload *kl)
{
	char err[256];
	rd_kafka_conf_t *c = rd_kafka_conf_new();
	if (conf_set(c, "test.mock.num.brokers", "1")) {
		rd_kafka_conf_destroy(c);
		return NULL;
	}
	rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, c, err, sizeof(err));
	if (!rk) {
		fprintf(stderr, "shimmy-bench: kafka mock: %s\n", err);
		rd_kafka_conf_destroy(c);
		return NULL;
	}
	rd_kafka_mock_cluster_t *mc = rd_kafka_handle_mock_cluster(rk);
	if (!mc || rd_kafka_mock_topic_create(mc, kl->topic, 1, 1)) {
		rd_kafka_destroy(rk);
		return NULL;
	}
	snprintf(kl->bootstrap, sizeof(kl->bootstrap), "%s",
		 rd_kafka_mock_cluster_bootstraps(mc));
	return rk;
}

int kafka_load_run(run_cfg *cfg, run_result *out)
{
	kload kl = { .cfg = cfg };
	rd_kafka_t *mock = NULL;
	int rc = 0;
	unsigned np = 0, nc = 0;
	bool is_mock = strcmp(cfg->kafka, "mock") == 0;

	if (cfg->mode != RUN_LOAD) {
		fprintf(stderr, "shimmy-bench: --kafka supports the load mode only\n");
		return -ENOTSUP;
	}
	/* A fresh topic per run, so consumers reading from the beginning see
	 * only this run's messages. */
	snprintf(kl.topic, sizeof(kl.topic), "%s-%d-%llu", cfg->topic,
		 (int)getpid(), (unsigned long long)proc_now_ns());
	for (char *t = kl.topic; *t; t++)
		if (*t == '/')
			*t = '.';
	cfg->system = is_mock ? "kafka-mock" : "kafka";
	kl.window = cfg->window;
	if (is_mock) {
		/* The mock partition keeps only its last 5 MB (and 100000
		 * messages): a consumer further behind loses data. */
		uint64_t w = (2500000 / cfg->payload) + 1;
		if (w > 50000)
			w = 50000;
		if (!kl.window || kl.window > w)
			kl.window = w;
	}
	if (is_mock) {
		mock = mock_start(&kl);
		if (!mock)
			return -EIO;
	} else {
		snprintf(kl.bootstrap, sizeof(kl.bootstrap), "%s", cfg->kafka);
	}
	kl.prod = calloc(cfg->pubs, sizeof(kpeer));
	kl.cons = calloc(cfg->subs ? cfg->subs : 1, sizeof(kpeer));
	kl.seen = calloc(cfg->subs ? cfg->subs : 1, sizeof(*kl.seen));
	if (!kl.prod || !kl.cons || !kl.seen) {
		rc = -ENOMEM;
		goto out;
	}
	for (unsigned i = 0; i < cfg->subs; i++) {
		kpeer *k = &kl.cons[i];
		k->kl = &kl;
		k->idx = i;
		k->next = calloc(cfg->pubs, sizeof(uint64_t));
		k->lat = malloc(sizeof(histo));
		if (!k->next || !k->lat) {
			rc = -ENOMEM;
			goto out;
		}
		histo_init(k->lat);
	}
	for (; nc < cfg->subs; nc++)
		if ((rc = -pthread_create(&kl.cons[nc].th, NULL, cons_main, &kl.cons[nc])))
			goto out_join;
	for (; np < cfg->pubs; np++) {
		kl.prod[np].kl = &kl;
		kl.prod[np].idx = np;
		if ((rc = -pthread_create(&kl.prod[np].th, NULL, prod_main, &kl.prod[np])))
			goto out_join;
	}
	while (atomic_load(&kl.ready) < cfg->pubs + cfg->subs) {
		if (atomic_load(&kl.abort)) {
			rc = -EIO;
			goto out_join;
		}
		usleep(1000);
	}
	uint64_t t_go = proc_now_ns(), t_last = t_go, d_last = 0;
	atomic_store_explicit(&kl.go, 1, memory_order_release);
	while (atomic_load(&kl.cons_done) < cfg->subs) {
		usleep(20000);
		uint64_t now = proc_now_ns();
		if (!cfg->quiet && now - t_last >= 1000000000ull) {
			uint64_t d = atomic_load(&kl.delivered);
			fprintf(stderr, "shimmy-bench: %5.1f s  delivered %llu  %.0f msgs/s\n",
				(double)(now - t_go) / 1e9, (unsigned long long)d,
				(double)(d - d_last) * 1e9 / (double)(now - t_last));
			t_last = now;
			d_last = d;
		}
	}
out_join:
	if (rc)
		atomic_store(&kl.abort, 1);
	for (unsigned i = 0; i < nc; i++)
		pthread_join(kl.cons[i].th, NULL);
	for (unsigned i = 0; i < np; i++)
		pthread_join(kl.prod[i].th, NULL);
	if (!rc) {
		uint64_t t0 = UINT64_MAX, t1 = 0;
		out->messages = cfg->count * cfg->pubs;
		for (unsigned i = 0; i < cfg->pubs; i++) {
			if (kl.prod[i].rc < 0)
				rc = kl.prod[i].rc;
			if (kl.prod[i].first_ns && kl.prod[i].first_ns < t0)
				t0 = kl.prod[i].first_ns;
		}
		for (unsigned i = 0; i < cfg->subs; i++) {
			kpeer *k = &kl.cons[i];
			if (k->rc < 0)
				rc = k->rc;
			out->delivered += k->received;
			out->reordered += k->reordered;
			out->lost += out->messages > k->received ? out->messages - k->received : 0;
			if (k->last_rx_ns > t1)
				t1 = k->last_rx_ns;
			histo_merge(&out->lat, k->lat);
		}
		out->duration_ns = t1 > t0 && t0 != UINT64_MAX ? t1 - t0 : 0;
	}
out:
	for (unsigned i = 0; kl.cons && i < cfg->subs; i++) {
		free(kl.cons[i].next);
		free(kl.cons[i].lat);
	}
	free(kl.cons);
	free(kl.prod);
	free((void *)kl.seen);
	if (mock)
		rd_kafka_destroy(mock);
	return rc;
}

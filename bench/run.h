/*
 * bench/run.h — one benchmark run: what to measure (run_cfg), what came out
 * (run_result), and how results are printed (a human summary and one CSV row
 * per run).
 *
 * CSV columns (fixed; bench/run_bench.sh and bench/run_paper.sh rely on
 * them, run_paper.sh appends avg_us):
 *   system, transport, scenario, payload_bytes, messages, publishers,
 *   subscribers, msgs_per_s, mb_per_s, p50_us, p99_us, p999_us, lost,
 *   broker_cpu_s
 * - messages: messages published (all publishers together); each is
 *   delivered once per subscriber.
 * - msgs_per_s, mb_per_s: deliveries counted at the subscribers (all of
 *   them), from the first send to the last receive; MB is 10^6 bytes of
 *   payload.
 * - p50/p99/p999_us: one-way latency (send timestamp in the payload to
 *   receipt); in rtt mode the round trip.
 * - lost: deliveries that never arrived (all subscribers together).
 * - broker_cpu_s: utime + stime the broker spent during the run; empty when
 *   no broker pid was given.
 * - Scenario "idle_conns_rss" (idle mode): payload_bytes holds the broker's
 *   RSS growth per connection in bytes, messages and subscribers the number
 *   of connections; the rate and latency fields are empty.
 * Empty fields mean "not measured".
 */
#ifndef SHIMMY_BENCH_RUN_H
#define SHIMMY_BENCH_RUN_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "bench/histo.h"

typedef enum run_mode {
	RUN_LOAD = 0, /* N publishers -> M subscribers */
	RUN_RTT,      /* one client, publish and wait for its own message */
	RUN_IDLE,     /* open N idle connections, report broker RSS per conn */
	RUN_LATENCY,  /* load at a modest --rate (default 10k/s), one-way latency
		       * with a busy-polling subscriber (shm only) */
} run_mode;

/* Bytes 0..15 of every payload: send time and sequence number. */
#define RUN_STAMP_LEN 16
/* seq layout: bit 63 warm-up, bits 48..62 publisher index, 0..47 number. */
#define RUN_SEQ_WARMUP (1ull << 63)
#define RUN_SEQ_PUB_SHIFT 48
#define RUN_SEQ_NUM_MASK ((1ull << RUN_SEQ_PUB_SHIFT) - 1)
#define RUN_MAX_PUBS 1024
#define RUN_MAX_SUBS 4096

typedef struct run_cfg {
	run_mode mode;
	const char *system;     /* label: shimmy, mosquitto, kafka, kafka-mock */
	const char *transport;  /* tcp or shm */
	const char *unix_path;  /* shm: broker socket; NULL: $SHIMMY_SOCKET */
	const char *scenario;   /* label */
	const char *pub_host, *sub_host, *port;
	const char *pub_netns, *sub_netns; /* NULL: stay in ours */
	const char *topic;
	const char *kafka;      /* "host:port" or "mock"; NULL for MQTT */
	int mqtt_version;       /* 4 (3.1.1) or 5 */
	unsigned pubs, subs;
	unsigned qos;
	uint32_t payload;       /* bytes, >= RUN_STAMP_LEN */
	uint64_t count;         /* per publisher (rtt: round trips) */
	uint64_t warmup;        /* per publisher, not measured */
	double rate;            /* per publisher msgs/s; 0 = as fast as possible */
	uint64_t window;        /* max messages a publisher runs ahead of the
				   slowest subscriber; 0 = unlimited */
	uint32_t inflight;      /* QoS 1: unacknowledged PUBLISHes per publisher */
	uint32_t pub_batch;     /* shm: messages per shimmy_pub_loan_many() (1:
				   shimmy_pub_loan() per message) */
	size_t batch_bytes;     /* publisher write size */
	size_t read_bytes;      /* subscriber read buffer */
	unsigned drain_ms;      /* subscriber gives up after this long idle */
	unsigned conns;         /* idle mode */
	unsigned hold_ms;       /* idle mode: wait before reading RSS */
	pid_t broker_pid;       /* 0: no broker accounting */
	bool quiet;             /* no progress on stderr */
	bool csv_avg;           /* CSV: append an avg_us column */
} run_cfg;

typedef struct run_result {
	uint64_t messages;      /* published */
	uint64_t delivered;     /* received, all subscribers */
	uint64_t lost;
	uint64_t reordered;
	uint64_t duration_ns;
	double broker_cpu_s;    /* < 0: not measured */
	int64_t rss_per_conn;   /* idle mode */
	unsigned conns_ok;      /* idle mode */
	histo lat;              /* one-way (rtt: round-trip) latency */
} run_result;

void run_result_init(run_result *r);
double run_msgs_per_s(const run_cfg *c, const run_result *r);
double run_mb_per_s(const run_cfg *c, const run_result *r);

/* Human-readable summary. */
void run_print(FILE *f, const run_cfg *c, const run_result *r);
/* With c->csv_avg, both add a 15th column, avg_us (mean latency). */
void run_csv_header(FILE *f, const run_cfg *c);
void run_csv_row(FILE *f, const run_cfg *c, const run_result *r);

/* Payload stamp helpers. */
void run_stamp(uint8_t *payload, uint64_t now_ns, uint64_t seq);
void run_unstamp(const uint8_t *payload, uint64_t *ts_ns, uint64_t *seq);

/* Enters the network namespace `name` (a name under /var/run/netns or a
 * path) for the calling thread. Returns 0 or -errno. NULL is a no-op. */
int run_enter_netns(const char *name);

#endif

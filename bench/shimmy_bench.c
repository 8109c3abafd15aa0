/*
 * bench/shimmy_bench.c — shimmy-bench: one load generator for every system
 * (Shimmy, Mosquitto or any MQTT broker over TCP; Kafka through librdkafka;
 * Shimmy's shared-memory path with --transport shm). Parses options, runs one measurement,
 * prints a summary on stdout and, with --csv, one row (columns in run.h).
 * Progress goes to stderr.
 *
 * Exit status: 0 when the run was carried out (losses are results),
 * 1 when it could not be, 2 on bad usage, 69 for a transport or target this
 * build lacks.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bench/mqtt_load.h"
#include "mqtt/error.h"
#include "bench/proc.h"
#include "bench/run.h"
#include "bench/shm_load.h"
#include "clients/include/shimmy.h"
#ifdef SHIMMY_BENCH_KAFKA
#include "bench/kafka_load.h"
#endif

#define EXIT_UNAVAILABLE 69

static void usage(FILE *f)
{
	fputs(
"usage: shimmy-bench [options]\n"
"Target\n"
"  --host H            broker address (127.0.0.1); --pub-host/--sub-host per side\n"
"  --port P            broker port (1883)\n"
"  --pub-netns NS      publishers connect from network namespace NS\n"
"  --sub-netns NS      subscribers (and idle connections) from NS\n"
"  --kafka HOST:PORT   Kafka through librdkafka; 'mock' = librdkafka's mock\n"
"                      cluster (reported as system kafka-mock)\n"
"  --transport T       tcp (default), or shm: Shimmy's shared-memory path\n"
"                      through libshimmy on the Unix socket (load, rtt)\n"
"  --unix PATH         shm: the broker's socket ($SHIMMY_SOCKET, else\n"
"                      /run/shimmy/shimmy.sock)\n"
"  --mqtt-version V    4 (3.1.1, default) or 5\n"
"Mode\n"
"  --mode M            load (N pub -> M sub), rtt (round trip), idle (RSS/conn),\n"
"                      latency (shm: one-way, paced --rate (10000), busy-polling sub)\n"
"  --pubs N --subs M   publisher and subscriber connections (1, 1)\n"
"  --qos Q             0 or 1 (0)\n"
"  --size B            payload bytes, >= 16 (16)\n"
"  --count N           messages per publisher, or round trips (10000)\n"
"  --warmup N          unmeasured messages first (count/10, at most 10000)\n"
"  --rate R            msgs/s per publisher (0: as fast as possible)\n"
"  --window N          max messages a publisher runs ahead of the slowest\n"
"                      subscriber (auto: 16 MiB of payload, 16..10000; 0: none)\n"
"  --inflight N        QoS 1 unacknowledged messages per publisher (1000)\n"
"  --batch-bytes B     publisher write size (262144)\n"
"  --pub-batch N       shm: messages per shimmy_pub_loan_many/commit_many,\n"
"                      1..64 (1: shimmy_pub_loan/commit per message)\n"
"  --read-bytes B      subscriber read size (1048576)\n"
"  --drain-ms MS       give up after MS without progress (3000)\n"
"  --conns N           idle mode: connections (10000)\n"
"  --hold-ms MS        idle mode: wait before reading RSS (1000)\n"
"  --topic T           topic (bench/<pid>)\n"
"Reporting\n"
"  --broker-pid PID    report the broker's CPU seconds (and RSS in idle mode)\n"
"  --system NAME       label (mqtt)   --scenario NAME   label (derived)\n"
"  --csv FILE          append one CSV row (header if FILE is new); '-': stdout\n"
"  --csv-avg           add a 15th column, avg_us (mean latency)\n"
"  --quiet             no progress on stderr\n", f);
}

enum {
	O_HOST = 256, O_PORT, O_PUB_HOST, O_SUB_HOST, O_PUB_NS, O_SUB_NS, O_KAFKA,
	O_TRANSPORT, O_MQTTV, O_MODE, O_PUBS, O_SUBS, O_QOS, O_SIZE, O_COUNT,
	O_WARMUP, O_RATE, O_WINDOW, O_INFLIGHT, O_BATCH, O_PUB_BATCH, O_READ, O_DRAIN,
	O_CONNS, O_HOLD, O_TOPIC, O_PID, O_SYSTEM, O_SCENARIO, O_CSV, O_CSV_AVG, O_QUIET,
	O_HELP, O_UNIX,
};

static const struct option opts[] = {
	{ "host", required_argument, NULL, O_HOST },
	{ "port", required_argument, NULL, O_PORT },
	{ "unix", required_argument, NULL, O_UNIX },
	{ "pub-host", required_argument, NULL, O_PUB_HOST },
	{ "sub-host", required_argument, NULL, O_SUB_HOST },
	{ "pub-netns", required_argument, NULL, O_PUB_NS },
	{ "sub-netns", required_argument, NULL, O_SUB_NS },
	{ "kafka", required_argument, NULL, O_KAFKA },
	{ "transport", required_argument, NULL, O_TRANSPORT },
	{ "mqtt-version", required_argument, NULL, O_MQTTV },
	{ "mode", required_argument, NULL, O_MODE },
	{ "pubs", required_argument, NULL, O_PUBS },
	{ "subs", required_argument, NULL, O_SUBS },
	{ "qos", required_argument, NULL, O_QOS },
	{ "size", required_argument, NULL, O_SIZE },
	{ "count", required_argument, NULL, O_COUNT },
	{ "warmup", required_argument, NULL, O_WARMUP },
	{ "rate", required_argument, NULL, O_RATE },
	{ "window", required_argument, NULL, O_WINDOW },
	{ "inflight", required_argument, NULL, O_INFLIGHT },
	{ "batch-bytes", required_argument, NULL, O_BATCH },
	{ "pub-batch", required_argument, NULL, O_PUB_BATCH },
	{ "read-bytes", required_argument, NULL, O_READ },
	{ "drain-ms", required_argument, NULL, O_DRAIN },
	{ "conns", required_argument, NULL, O_CONNS },
	{ "hold-ms", required_argument, NULL, O_HOLD },
	{ "topic", required_argument, NULL, O_TOPIC },
	{ "broker-pid", required_argument, NULL, O_PID },
	{ "system", required_argument, NULL, O_SYSTEM },
	{ "scenario", required_argument, NULL, O_SCENARIO },
	{ "csv", required_argument, NULL, O_CSV },
	{ "csv-avg", no_argument, NULL, O_CSV_AVG },
	{ "quiet", no_argument, NULL, O_QUIET },
	{ "help", no_argument, NULL, O_HELP },
	{ NULL, 0, NULL, 0 },
};

/* Parses an unsigned number with an optional k/M suffix (10k = 10000). */
static int parse_u64(const char *s, uint64_t *out)
{
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (errno || end == s || v < 0)
		return -1;
	if (*end == 'k' || *end == 'K')
		v *= 1e3, end++;
	else if (*end == 'M')
		v *= 1e6, end++;
	if (*end || v > 1e18)
		return -1;
	*out = (uint64_t)v;
	return 0;
}

static int write_csv(const char *path, const run_cfg *c, const run_result *r)
{
	if (strcmp(path, "-") == 0) {
		run_csv_header(stdout, c);
		run_csv_row(stdout, c, r);
		return 0;
	}
	struct stat st;
	bool fresh = stat(path, &st) < 0 || st.st_size == 0;
	FILE *f = fopen(path, "a");
	if (!f) {
		fprintf(stderr, "shimmy-bench: %s: %s\n", path, strerror(errno));
		return -1;
	}
	if (fresh)
		run_csv_header(f, c);
	run_csv_row(f, c, r);
	return fclose(f) == 0 ? 0 : -1;
}

int main(int argc, char **argv)
{
	static char topic[64], scenario[64];
	run_cfg cfg = {
		.mode = RUN_LOAD, .system = "mqtt", .transport = "tcp",
		.pub_host = NULL, .sub_host = NULL, .port = "1883",
		.mqtt_version = 4, .pubs = 1, .subs = 1, .payload = 16,
		.count = 10000, .warmup = UINT64_MAX, .window = UINT64_MAX,
		.inflight = 1000, .batch_bytes = 256 * 1024, .pub_batch = 1,
		.read_bytes = 1024 * 1024, .drain_ms = 3000, .conns = 10000,
		.hold_ms = 1000,
	};
	const char *host = "127.0.0.1", *csv = NULL;
	int o;

	while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		uint64_t v = 0;
		bool num = o >= O_PUBS && o <= O_PID && o != O_TOPIC && o != O_RATE;
		if (num && parse_u64(optarg, &v) < 0) {
			fprintf(stderr, "shimmy-bench: bad number '%s'\n", optarg);
			return 2;
		}
		switch (o) {
		case O_HOST: host = optarg; break;
		case O_PORT: cfg.port = optarg; break;
		case O_PUB_HOST: cfg.pub_host = optarg; break;
		case O_SUB_HOST: cfg.sub_host = optarg; break;
		case O_PUB_NS: cfg.pub_netns = optarg; break;
		case O_SUB_NS: cfg.sub_netns = optarg; break;
		case O_KAFKA: cfg.kafka = optarg; break;
		case O_TRANSPORT: cfg.transport = optarg; break;
		case O_UNIX: cfg.unix_path = optarg; break;
		case O_MQTTV: cfg.mqtt_version = atoi(optarg); break;
		case O_MODE:
			if (strcmp(optarg, "load") == 0)
				cfg.mode = RUN_LOAD;
			else if (strcmp(optarg, "rtt") == 0)
				cfg.mode = RUN_RTT;
			else if (strcmp(optarg, "idle") == 0)
				cfg.mode = RUN_IDLE;
			else if (strcmp(optarg, "latency") == 0)
				cfg.mode = RUN_LATENCY;
			else {
				fprintf(stderr, "shimmy-bench: unknown mode '%s'\n", optarg);
				return 2;
			}
			break;
		case O_PUBS: cfg.pubs = (unsigned)v; break;
		case O_SUBS: cfg.subs = (unsigned)v; break;
		case O_QOS: cfg.qos = (unsigned)v; break;
		case O_SIZE: cfg.payload = (uint32_t)v; break;
		case O_COUNT: cfg.count = v; break;
		case O_WARMUP: cfg.warmup = v; break;
		case O_RATE: cfg.rate = strtod(optarg, NULL); break;
		case O_WINDOW: cfg.window = v; break;
		case O_INFLIGHT: cfg.inflight = (uint32_t)v; break;
		case O_BATCH: cfg.batch_bytes = (size_t)v; break;
		case O_PUB_BATCH: cfg.pub_batch = v > 64 ? 65 : (uint32_t)v; break;
		case O_READ: cfg.read_bytes = (size_t)v; break;
		case O_DRAIN: cfg.drain_ms = (unsigned)v; break;
		case O_CONNS: cfg.conns = (unsigned)v; break;
		case O_HOLD: cfg.hold_ms = (unsigned)v; break;
		case O_PID: cfg.broker_pid = (pid_t)v; break;
		case O_TOPIC: cfg.topic = optarg; break;
		case O_SYSTEM: cfg.system = optarg; break;
		case O_SCENARIO: cfg.scenario = optarg; break;
		case O_CSV: csv = optarg; break;
		case O_CSV_AVG: cfg.csv_avg = true; break;
		case O_QUIET: cfg.quiet = true; break;
		case 'h':
		case O_HELP: usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "shimmy-bench: unexpected argument '%s'\n", argv[optind]);
		return 2;
	}
	bool shm = strcmp(cfg.transport, "shm") == 0;
	if (shm && (cfg.kafka || cfg.mode == RUN_IDLE || cfg.qos != 0)) {
		fputs("shimmy-bench: --transport shm: load or rtt mode, QoS 0, no --kafka\n",
		      stderr);
		return 2;
	}
	if (cfg.mode == RUN_LATENCY && !shm) {
		fputs("shimmy-bench: --mode latency needs --transport shm\n", stderr);
		return 2;
	}
	if (cfg.mode == RUN_LATENCY && cfg.rate <= 0)
		cfg.rate = 10000;
	if (!shm && strcmp(cfg.transport, "tcp") != 0) {
		fprintf(stderr, "shimmy-bench: unknown transport '%s'\n", cfg.transport);
		return 2;
	}
	if (cfg.payload < RUN_STAMP_LEN || cfg.qos > 1 ||
	    (cfg.mqtt_version != 4 && cfg.mqtt_version != 5) || cfg.pubs < 1 ||
	    cfg.pubs > RUN_MAX_PUBS || cfg.subs > RUN_MAX_SUBS || cfg.count < 1 ||
	    cfg.count > RUN_SEQ_NUM_MASK / 2 || cfg.inflight < 1 || cfg.inflight > 65000 ||
	    cfg.pub_batch < 1 || cfg.pub_batch > 64) {
		fputs("shimmy-bench: need --size >= 16, --qos 0|1, --mqtt-version 4|5,"
		      " 1 <= --pubs <= 1024, --subs <= 4096, --count >= 1,"
		      " 1 <= --inflight <= 65000, 1 <= --pub-batch <= 64\n", stderr);
		return 2;
	}
	if (cfg.warmup == UINT64_MAX)
		cfg.warmup = cfg.count / 10 < 10000 ? cfg.count / 10 : 10000;
	if (cfg.window == UINT64_MAX) {
		uint64_t w = (16ull << 20) / (cfg.payload + 64);
		cfg.window = w < 16 ? 16 : w > 10000 ? 10000 : w;
	}
	if (!cfg.pub_host)
		cfg.pub_host = host;
	if (!cfg.sub_host)
		cfg.sub_host = host;
	if (!cfg.topic) {
		snprintf(topic, sizeof(topic), "bench/%d", (int)getpid());
		cfg.topic = topic;
	}
	if (!cfg.scenario) {
		if (cfg.mode == RUN_RTT)
			snprintf(scenario, sizeof(scenario), "rtt_%uB_qos%u", cfg.payload,
				 cfg.qos);
		else if (cfg.mode == RUN_IDLE)
			snprintf(scenario, sizeof(scenario), "idle_conns_rss");
		else if (cfg.mode == RUN_LATENCY)
			snprintf(scenario, sizeof(scenario), "lat_%uB_qos0", cfg.payload);
		else
			snprintf(scenario, sizeof(scenario), "%uB_%up_%us_qos%u",
				 cfg.payload, cfg.pubs, cfg.subs, cfg.qos);
		cfg.scenario = scenario;
	}
	/* Each connection is a descriptor; idle mode raises it again itself. */
	proc_raise_nofile((long)cfg.pubs + cfg.subs + 1024);

	run_result *r = malloc(sizeof(*r));
	if (!r)
		return 1;
	run_result_init(r);
	int rc;
	if (cfg.kafka) {
#ifdef SHIMMY_BENCH_KAFKA
		rc = kafka_load_run(&cfg, r);
#else
		fputs("shimmy-bench: --kafka: built without librdkafka "
		      "(install librdkafka-dev and rebuild)\n", stderr);
		free(r);
		return EXIT_UNAVAILABLE;
#endif
	} else if (shm && cfg.mode == RUN_RTT) {
		cfg.pubs = cfg.subs = 1;
		rc = shm_rtt_run(&cfg, r);
	} else if (shm) {
		rc = shm_load_run(&cfg, r);
	} else if (cfg.mode == RUN_RTT) {
		cfg.pubs = cfg.subs = 1;
		rc = mqtt_rtt_run(&cfg, r);
	} else if (cfg.mode == RUN_IDLE) {
		rc = mqtt_idle_run(&cfg, r);
	} else {
		rc = mqtt_load_run(&cfg, r);
	}
	if (rc < 0) {
		fprintf(stderr, "shimmy-bench: run failed: %s\n",
			shm ? shimmy_strerror(rc) : mqtt_strerror(rc));
		free(r);
		return 1;
	}
	run_print(csv && strcmp(csv, "-") == 0 ? stderr : stdout, &cfg, r);
	if (csv && write_csv(csv, &cfg, r) < 0)
		rc = -EIO;
	free(r);
	return rc < 0 ? 1 : 0;
}

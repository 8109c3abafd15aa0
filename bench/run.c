/*
 * bench/run.c — result arithmetic and output; see run.h.
 */
#include "bench/run.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <string.h>
#include <unistd.h>

void run_result_init(run_result *r)
{
	memset(r, 0, sizeof(*r));
	r->broker_cpu_s = -1;
	histo_init(&r->lat);
}

double run_msgs_per_s(const run_cfg *c, const run_result *r)
{
	(void)c;
	if (!r->duration_ns)
		return 0;
	return (double)r->delivered * 1e9 / (double)r->duration_ns;
}

double run_mb_per_s(const run_cfg *c, const run_result *r)
{
	return run_msgs_per_s(c, r) * (double)c->payload / 1e6;
}

static const char *mode_name(run_mode m)
{
	switch (m) {
	case RUN_RTT: return "rtt";
	case RUN_IDLE: return "idle";
	case RUN_LATENCY: return "latency";
	default: return "load";
	}
}

void run_print(FILE *f, const run_cfg *c, const run_result *r)
{
	fprintf(f, "%s/%s %s (%s): ", c->system, c->transport, c->scenario,
		mode_name(c->mode));
	if (c->mode == RUN_IDLE) {
		fprintf(f, "%u/%u connections, broker RSS %+lld B/conn\n",
			r->conns_ok, c->conns, (long long)r->rss_per_conn);
		return;
	}
	fprintf(f, "%llu msgs x %u B, %u pub -> %u sub, qos %u\n",
		(unsigned long long)r->messages, c->payload, c->pubs, c->subs,
		c->qos);
	fprintf(f, "  delivered %llu in %.3f s: %.0f msgs/s, %.1f MB/s; lost %llu,"
		   " reordered %llu\n",
		(unsigned long long)r->delivered, (double)r->duration_ns / 1e9,
		run_msgs_per_s(c, r), run_mb_per_s(c, r),
		(unsigned long long)r->lost, (unsigned long long)r->reordered);
	fprintf(f, "  %s latency us: p50 %.1f  p99 %.1f  p99.9 %.1f  avg %.1f"
		   "  max %.1f\n",
		c->mode == RUN_RTT ? "round-trip" : "one-way",
		(double)histo_quantile(&r->lat, 0.5) / 1e3,
		(double)histo_quantile(&r->lat, 0.99) / 1e3,
		(double)histo_quantile(&r->lat, 0.999) / 1e3,
		histo_mean(&r->lat) / 1e3, (double)r->lat.max_ns / 1e3);
	if (r->broker_cpu_s >= 0)
		fprintf(f, "  broker cpu %.2f s\n", r->broker_cpu_s);
}

void run_csv_header(FILE *f, const run_cfg *c)
{
	fputs("system,transport,scenario,payload_bytes,messages,publishers,"
	      "subscribers,msgs_per_s,mb_per_s,p50_us,p99_us,p999_us,lost,"
	      "broker_cpu_s", f);
	fputs(c->csv_avg ? ",avg_us\n" : "\n", f);
}

void run_csv_row(FILE *f, const run_cfg *c, const run_result *r)
{
	char cpu[32] = "";
	if (r->broker_cpu_s >= 0)
		snprintf(cpu, sizeof(cpu), "%.3f", r->broker_cpu_s);
	if (c->mode == RUN_IDLE) {
		fprintf(f, "%s,%s,idle_conns_rss,%lld,%u,0,%u,,,,,,%u,%s%s\n",
			c->system, c->transport, (long long)r->rss_per_conn,
			c->conns, c->conns, c->conns - r->conns_ok, cpu,
			c->csv_avg ? "," : "");
		return;
	}
	fprintf(f, "%s,%s,%s,%u,%llu,%u,%u,%.1f,%.3f,%.2f,%.2f,%.2f,%llu,%s",
		c->system, c->transport, c->scenario, c->payload,
		(unsigned long long)r->messages, c->pubs, c->subs,
		run_msgs_per_s(c, r), run_mb_per_s(c, r),
		(double)histo_quantile(&r->lat, 0.5) / 1e3,
		(double)histo_quantile(&r->lat, 0.99) / 1e3,
		(double)histo_quantile(&r->lat, 0.999) / 1e3,
		(unsigned long long)r->lost, cpu);
	if (c->csv_avg)
		fprintf(f, ",%.2f", histo_mean(&r->lat) / 1e3);
	fputc('\n', f);
}

void run_stamp(uint8_t *payload, uint64_t now_ns, uint64_t seq)
{
	memcpy(payload, &now_ns, 8);
	memcpy(payload + 8, &seq, 8);
}

void run_unstamp(const uint8_t *payload, uint64_t *ts_ns, uint64_t *seq)
{
	memcpy(ts_ns, payload, 8);
	memcpy(seq, payload + 8, 8);
}

int run_enter_netns(const char *name)
{
	char path[256];
	if (!name || !*name)
		return 0;
	if (strchr(name, '/'))
		snprintf(path, sizeof(path), "%s", name);
	else
		snprintf(path, sizeof(path), "/var/run/netns/%s", name);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	int rc = setns(fd, CLONE_NEWNET) < 0 ? -errno : 0;
	close(fd);
	return rc;
}

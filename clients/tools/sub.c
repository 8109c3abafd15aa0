/*
 * clients/tools/sub.c — shimmy-sub: subscribe and print messages, with
 * mosquitto_sub's flags (plus --unix, --require-shm, --stats). Receives
 * with the blocking pull API (shimmy_recv), borrowing each message.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clients/tools/common.h"

#define MAX_TOPICS 64

static volatile sig_atomic_t g_stop; /* set by the signal handler only */

static void on_signal(int sig)
{
	g_stop = sig;
}

static void usage(void)
{
	fputs("Usage: shimmy-sub {-t topic}... [options]\n"
	      " -t FILTER      subscribe to FILTER (repeatable)\n"
	      " -C COUNT       exit after COUNT messages\n"
	      " -v             print \"topic payload\"\n"
	      " -N             no newline after the payload\n"
	      " -F FORMAT      %t topic, %p payload, %q qos, %r retain, %l length,\n"
	      "                %P user properties (k:v), %% and \\n \\t escapes\n"
	      " -W SECONDS     exit (status 27) after SECONDS without finishing\n"
	      " -R             do not print stale (retained) messages\n"
	      " -E             exit once subscribed\n"
	      " --stats        print counts, rate and losses at exit (stderr)\n"
	      " --stats-interval SECONDS  and every SECONDS meanwhile\n"
	      " --quiet        do not print messages\n", stderr);
	tool_common_usage();
}

static double mono_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void print_fmt(const char *fmt, const shimmy_msg *m)
{
	size_t tl, pl;
	const char *topic = shimmy_msg_topic(m, &tl);
	const void *p = shimmy_msg_payload(m, &pl);

	for (const char *f = fmt; *f; f++) {
		if (*f == '%' && f[1]) {
			f++;
			switch (*f) {
			case 't': fwrite(topic, 1, tl, stdout); break;
			case 'p': fwrite(p, 1, pl, stdout); break;
			case 'q': printf("%d", shimmy_msg_qos(m)); break;
			case 'r': printf("%d", shimmy_msg_retain(m)); break;
			case 'l': printf("%zu", pl); break;
			case 'P': {
				const shimmy_props *pr = shimmy_msg_props(m);
				size_t n = shimmy_props_user_count(pr);
				for (size_t i = 0; i < n; i++) {
					const char *k, *v;
					size_t kl, vl;
					shimmy_props_user_get(pr, i, &k, &kl, &v, &vl);
					printf("%s%.*s:%.*s", i ? " " : "", (int)kl, k, (int)vl, v);
				}
				break;
			}
			case '%': putchar('%'); break;
			default: putchar('%'); putchar(*f); break;
			}
		} else if (*f == '\\' && f[1]) {
			f++;
			putchar(*f == 'n' ? '\n' : *f == 't' ? '\t' : *f);
		} else {
			putchar(*f);
		}
	}
	putchar('\n');
}

static void print_stats(shimmy_client *c, double t0, const char *when)
{
	double dt = mono_s() - t0;
	uint64_t n = shimmy_client_stat(c, SHIMMY_STAT_RX_MSGS);
	uint64_t b = shimmy_client_stat(c, SHIMMY_STAT_RX_BYTES);

	if (dt <= 0)
		dt = 1e-9;
	fprintf(stderr, "stats(%s): received %llu msgs, %llu bytes in %.3f s: %.1f msg/s, "
		"%.3f MB/s, lost %llu, share lost %llu, reconnects %llu, detached %llu, "
		"shm %s\n",
		when, (unsigned long long)n, (unsigned long long)b, dt,
		(double)n / dt, (double)b / dt / 1e6,
		(unsigned long long)shimmy_client_stat(c, SHIMMY_STAT_LOST_MSGS),
		(unsigned long long)shimmy_client_stat(c, SHIMMY_STAT_SHARE_LOST),
		(unsigned long long)shimmy_client_stat(c, SHIMMY_STAT_RECONNECTS),
		(unsigned long long)shimmy_client_stat(c, SHIMMY_STAT_SHM_DETACHED),
		shimmy_client_shm_active(c) ? "active" : "off");
}

int main(int argc, char **argv)
{
	tool_cfg t;
	const char *topics[MAX_TOPICS];
	const char *fmt = NULL;
	int ntopics = 0, verbose = 0, no_eol = 0, skip_retained = 0, exit_after_sub = 0;
	int stats = 0;
	long count = 0, wait_s = 0, stats_iv = 0;
	shimmy_client *c;
	int ret = TOOL_EXIT_OK;
	double t0 = 0;

	tool_cfg_init(&t, "shimmy-sub");
	for (int i = 1; i < argc;) {
		const char *a = argv[i];
		int k = tool_common_opt(&t, argc, argv, &i);
		if (k < 0)
			goto usage_err;
		if (k > 0)
			continue;
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
		if ((!strcmp(a, "-t") || !strcmp(a, "--topic")) && v) {
			if (ntopics == MAX_TOPICS) {
				fprintf(stderr, "Error: at most %d topics.\n", MAX_TOPICS);
				goto usage_err;
			}
			topics[ntopics++] = v;
			i += 2;
		} else if ((!strcmp(a, "-C") || !strcmp(a, "--count")) && v) {
			count = strtol(v, NULL, 10);
			if (count < 1) {
				fprintf(stderr, "Error: invalid count '%s'.\n", v);
				goto usage_err;
			}
			i += 2;
		} else if ((!strcmp(a, "-W") || !strcmp(a, "--timeout")) && v) {
			wait_s = strtol(v, NULL, 10);
			if (wait_s < 1) {
				fprintf(stderr, "Error: invalid timeout '%s'.\n", v);
				goto usage_err;
			}
			i += 2;
		} else if (!strcmp(a, "-F") && v) {
			fmt = v;
			i += 2;
		} else if (!strcmp(a, "--stats-interval") && v) {
			stats_iv = strtol(v, NULL, 10);
			stats = 1;
			i += 2;
		} else if (!strcmp(a, "-v") || !strcmp(a, "--verbose")) {
			verbose = 1;
			i++;
		} else if (!strcmp(a, "-N")) {
			no_eol = 1;
			i++;
		} else if (!strcmp(a, "-R")) {
			skip_retained = 1;
			i++;
		} else if (!strcmp(a, "-E")) {
			exit_after_sub = 1;
			i++;
		} else if (!strcmp(a, "--stats")) {
			stats = 1;
			i++;
		} else if (!strcmp(a, "--help")) {
			usage();
			return TOOL_EXIT_OK;
		} else {
			fprintf(stderr, "Error: unknown option '%s'.\n", a);
			goto usage_err;
		}
	}
	if (ntopics == 0) {
		fprintf(stderr, "Error: at least one topic (-t) is required.\n");
		goto usage_err;
	}

	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	c = tool_connect(&t, 0);
	if (!c) {
		tool_cfg_fini(&t);
		return TOOL_EXIT_ERR;
	}
	int granted_any = 0;
	for (int i = 0; i < ntopics; i++) {
		int rc = shimmy_subscribe(c, topics[i], t.qos, 0);
		if (rc >= 0) {
			granted_any = 1;
			tool_debug(&t, "subscribed to %s (granted qos %d)", topics[i], rc);
		} else if (rc == SHIMMY_ERR_SUBSCRIBE) {
			fprintf(stderr, "Subscription to %s denied (reason 0x%02x).\n", topics[i],
				shimmy_client_reason(c));
		} else {
			fprintf(stderr, "Error subscribing to %s: %s.\n", topics[i], shimmy_strerror(rc));
			ret = TOOL_EXIT_ERR;
			goto out;
		}
	}
	if (!granted_any) {
		fprintf(stderr, "All subscription requests were denied.\n");
		ret = TOOL_EXIT_ERR;
		goto out;
	}
	if (exit_after_sub)
		goto out;

	t0 = mono_s();
	double next_stats = t0 + (double)stats_iv;
	double deadline = wait_s ? t0 + (double)wait_s : 0;
	long got = 0;
	while (!g_stop) {
		double now = mono_s();
		int tmo = 200; /* short, to notice signals */
		if (deadline && now >= deadline) {
			fprintf(stderr, "Timed out\n");
			ret = TOOL_EXIT_TIMEOUT;
			break;
		}
		if (stats_iv && now >= next_stats) {
			print_stats(c, t0, "interval");
			next_stats += (double)stats_iv;
		}
		shimmy_msg *m;
		int rc = shimmy_recv(c, &m, tmo);
		if (rc == SHIMMY_ERR_TIMEOUT || rc == SHIMMY_ERR_AGAIN)
			continue;
		if (rc) {
			fprintf(stderr, "Error: %s.\n", shimmy_strerror(rc));
			ret = TOOL_EXIT_ERR;
			break;
		}
		if (!(skip_retained && shimmy_msg_retain(m)) && !t.quiet) {
			size_t tl, pl;
			const char *topic = shimmy_msg_topic(m, &tl);
			const void *p = shimmy_msg_payload(m, &pl);
			if (fmt) {
				print_fmt(fmt, m);
			} else {
				if (verbose) {
					fwrite(topic, 1, tl, stdout);
					putchar(' ');
				}
				fwrite(p, 1, pl, stdout);
				if (!no_eol)
					putchar('\n');
			}
			fflush(stdout);
		}
		int counted = !(skip_retained && shimmy_msg_retain(m));
		shimmy_msg_release(c, m);
		if (counted && count && ++got >= count)
			break;
	}
out:
	if (stats && c)
		print_stats(c, t0 ? t0 : mono_s(), "exit");
	shimmy_client_disconnect(c, 2000);
	shimmy_client_destroy(c);
	tool_cfg_fini(&t);
	return ret;

usage_err:
	fputs("Use 'shimmy-sub --help' to see usage.\n", stderr);
	tool_cfg_fini(&t);
	return TOOL_EXIT_ERR;
}

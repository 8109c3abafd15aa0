/*
 * bench/proc.c — /proc readers and process limits; see proc.h.
 */
#include "bench/proc.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

uint64_t proc_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int proc_cpu_s(pid_t pid, double *out)
{
	char path[64], line[1024];
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return -errno;
	size_t n = fread(line, 1, sizeof(line) - 1, f);
	fclose(f);
	line[n] = '\0';
	/* comm (field 2) may hold spaces and ')': fields resume after the last ')'. */
	char *p = strrchr(line, ')');
	if (!p)
		return -EINVAL;
	unsigned long ut = 0, st = 0;
	/* After ')': state(3) ppid pgrp session tty tpgid flags minflt cminflt
	 * majflt cmajflt utime(14) stime(15). */
	if (sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu",
		   &ut, &st) != 2)
		return -EINVAL;
	long hz = sysconf(_SC_CLK_TCK);
	*out = (double)(ut + st) / (double)(hz > 0 ? hz : 100);
	return 0;
}

int proc_rss_bytes(pid_t pid, uint64_t *out)
{
	char path[64], line[256];
	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return -errno;
	int rc = -EINVAL;
	while (fgets(line, sizeof(line), f)) {
		unsigned long long kb;
		if (sscanf(line, "VmRSS: %llu kB", &kb) == 1) {
			*out = kb * 1024ull;
			rc = 0;
			break;
		}
	}
	fclose(f);
	return rc;
}

long proc_raise_nofile(long want)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return -errno;
	rlim_t w = (rlim_t)want;
	if (rl.rlim_max != RLIM_INFINITY && w > rl.rlim_max)
		w = rl.rlim_max;
	if (rl.rlim_cur < w) {
		rl.rlim_cur = w;
		if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
			return -errno;
	}
	return (long)rl.rlim_cur;
}

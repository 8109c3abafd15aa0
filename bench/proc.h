/*
 * bench/proc.h — what the benchmark reads about other processes and itself:
 * a broker's CPU time and resident memory from /proc, the monotonic clock,
 * and the open-file limit.
 * Thread model: any thread; no state.
 */
#ifndef SHIMMY_BENCH_PROC_H
#define SHIMMY_BENCH_PROC_H

#include <stdint.h>
#include <sys/types.h>

/* CLOCK_MONOTONIC in ns. Shared by every process (and network namespace)
 * of the host, so a timestamp taken by a publisher can be compared with the
 * subscriber's clock. */
uint64_t proc_now_ns(void);

/* utime + stime of pid in seconds, from /proc/PID/stat; -errno on failure. */
int proc_cpu_s(pid_t pid, double *out);

/* VmRSS of pid in bytes, from /proc/PID/status; -errno on failure. */
int proc_rss_bytes(pid_t pid, uint64_t *out);

/* Raises RLIMIT_NOFILE's soft limit to min(want, hard). Returns the new soft
 * limit, or -errno. */
long proc_raise_nofile(long want);

#endif

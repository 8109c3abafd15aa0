/*
 * bench/hwlimits.c — shimmy-hwlimits: the hardware's own limits, which the
 * shared-memory path is measured against (its distance from them is a
 * ratio, as DESIGN.md "Measuring" asks).
 *
 *  - clock: the cost of one clock_gettime(CLOCK_MONOTONIC), which every
 *    sample below includes once.
 *  - cacheline_pingpong: two processes (fork) share an anonymous mapping
 *    with two cache lines; the parent writes line A, the child sees it and
 *    writes line B, the parent sees that: one round trip.
 *  - futex_wake: the child sleeps in FUTEX_WAIT on a word of the shared
 *    mapping; the parent stamps the time and FUTEX_WAKEs it; the child's
 *    latency is from that stamp to running again.
 *  - memcpy_16B, memcpy_100KB: one copy, hot in cache.
 *  - tcp_loopback_100KB: a child process streams 100 KB writes over one
 *    loopback TCP connection to the parent, which reads 1 MiB at a time:
 *    the ceiling of one TCP hop here. A broker's path (publisher ->
 *    broker -> subscriber) is two such hops in series, four copies.
 *  - tcp_relay_100KB: the same stream through a third process that reads
 *    1 MiB at a time and writes it on: the ceiling of any broker that
 *    moves payloads through its own memory (four copies, no protocol).
 *  - tcp_splice_relay_100KB: the relay moves the bytes with splice()
 *    (socket -> pipe -> socket, no copy in the relay): the ceiling of a
 *    broker that never touches payload bytes (two copies, the clients').
 * The two processes are pinned to CPUs 0 and 1 when there are two.
 * Prints a table, then the same as CSV (also to --csv FILE).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <linux/futex.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench/histo.h"
#include "bench/proc.h"

#define LINE 64
#define FUTEX_GAP_US 100 /* how long the waker lets the waiter fall asleep */

/* The shared mapping. Each field the two processes write sits on its own
 * cache line, so the ping-pong moves exactly two lines. */
typedef struct shared {
	_Alignas(LINE) _Atomic uint64_t ping;   /* parent writes */
	_Alignas(LINE) _Atomic uint64_t pong;   /* child writes */
	_Alignas(LINE) _Atomic uint32_t fword;  /* futex word: parent writes */
	_Alignas(LINE) _Atomic uint64_t ready;  /* child: about to wait */
	_Alignas(LINE) _Atomic uint64_t done;   /* child: sample written */
	_Alignas(LINE) _Atomic uint64_t t_wake; /* parent: time of FUTEX_WAKE */
	_Alignas(LINE) histo futex_lat;        /* child writes, parent reads */
} shared;

typedef struct result {
	const char *name;
	uint64_t iters;
	double p50_ns, p99_ns, mean_ns, gb_per_s; /* < 0: not applicable */
} result;

static void pin(int cpu)
{
	cpu_set_t set;
	if (sysconf(_SC_NPROCESSORS_ONLN) < 2)
		return;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	sched_setaffinity(0, sizeof(set), &set);
}

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ volatile("yield");
#endif
}

static long futex(_Atomic uint32_t *w, int op, uint32_t val)
{
	/* Not FUTEX_PRIVATE_FLAG: the word is shared across processes. */
	return syscall(SYS_futex, (uint32_t *)w, op, val, NULL, NULL, 0);
}

static result from_histo(const char *name, const histo *h, double bytes)
{
	result r = { name, h->count, (double)histo_quantile(h, 0.5),
		     (double)histo_quantile(h, 0.99), histo_mean(h), -1 };
	if (bytes > 0 && r.p50_ns > 0)
		r.gb_per_s = bytes / r.p50_ns; /* bytes per ns == GB/s */
	return r;
}

static void child_main(shared *sh, uint64_t pp_iters, uint64_t fx_iters)
{
	pin(1);
	for (uint64_t i = 1; i <= pp_iters; i++) {
		/* Acquire pairs with the parent's release store of ping. */
		while (atomic_load_explicit(&sh->ping, memory_order_acquire) != i)
			cpu_relax();
		atomic_store_explicit(&sh->pong, i, memory_order_release);
	}
	for (uint64_t i = 1; i <= fx_iters; i++) {
		atomic_store_explicit(&sh->ready, i, memory_order_release);
		while (atomic_load_explicit(&sh->fword, memory_order_acquire) != (uint32_t)i)
			futex(&sh->fword, FUTEX_WAIT, (uint32_t)(i - 1));
		uint64_t now = proc_now_ns();
		/* Acquire pairs with the parent's release of fword, which
		 * publishes t_wake. */
		uint64_t t = atomic_load_explicit(&sh->t_wake, memory_order_relaxed);
		histo_add(&sh->futex_lat, now > t ? now - t : 0);
		atomic_store_explicit(&sh->done, i, memory_order_release);
	}
	_exit(0);
}

static int run_ipc(uint64_t pp_iters, uint64_t fx_iters, result *pp, result *fx)
{
	shared *sh = mmap(NULL, sizeof(shared), PROT_READ | PROT_WRITE,
			  MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (sh == MAP_FAILED)
		return -errno;
	memset(sh, 0, sizeof(*sh));
	histo_init(&sh->futex_lat);
	pid_t pid = fork();
	if (pid < 0) {
		munmap(sh, sizeof(*sh));
		return -errno;
	}
	if (pid == 0)
		child_main(sh, pp_iters, fx_iters);
	pin(0);

	histo *h = malloc(sizeof(histo));
	if (!h) {
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		munmap(sh, sizeof(*sh));
		return -ENOMEM;
	}
	histo_init(h);
	uint64_t warm = pp_iters / 10;
	for (uint64_t i = 1; i <= pp_iters; i++) {
		uint64_t t0 = proc_now_ns();
		atomic_store_explicit(&sh->ping, i, memory_order_release);
		while (atomic_load_explicit(&sh->pong, memory_order_acquire) != i)
			cpu_relax();
		uint64_t t1 = proc_now_ns();
		if (i > warm)
			histo_add(h, t1 - t0);
	}
	*pp = from_histo("cacheline_pingpong_rtt", h, 0);

	for (uint64_t i = 1; i <= fx_iters; i++) {
		while (atomic_load_explicit(&sh->ready, memory_order_acquire) != i)
			cpu_relax();
		usleep(FUTEX_GAP_US);
		atomic_store_explicit(&sh->t_wake, proc_now_ns(), memory_order_relaxed);
		/* Release publishes t_wake to the woken child. */
		atomic_store_explicit(&sh->fword, (uint32_t)i, memory_order_release);
		futex(&sh->fword, FUTEX_WAKE, 1);
		while (atomic_load_explicit(&sh->done, memory_order_acquire) != i)
			cpu_relax();
	}
	int st = 0;
	waitpid(pid, &st, 0);
	*fx = from_histo("futex_wake_latency", &sh->futex_lat, 0);
	free(h);
	munmap(sh, sizeof(*sh));
	return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -ECHILD;
}

/* memcpy of `len` bytes, `per` copies per sample (to amortise the clock
 * for small copies), `samples` samples. The asm barrier keeps the compiler
 * from dropping or merging the copies. */
static result run_memcpy(const char *name, size_t len, unsigned per,
			 uint64_t samples)
{
	result r = { name, 0, -1, -1, -1, -1 };
	size_t alloc = (len + 127) & ~(size_t)63; /* a multiple of the alignment */
	uint8_t *src = aligned_alloc(64, alloc), *dst = aligned_alloc(64, alloc);
	histo *h = malloc(sizeof(histo));
	if (!src || !dst || !h)
		goto out;
	memset(src, 0x5a, alloc);
	memset(dst, 0, alloc);
	histo_init(h);
	for (uint64_t s = 0; s < samples + samples / 10; s++) {
		uint64_t t0 = proc_now_ns();
		for (unsigned k = 0; k < per; k++) {
			memcpy(dst, src, len);
			__asm__ volatile("" : : "r"(dst), "r"(src) : "memory");
		}
		uint64_t t1 = proc_now_ns();
		if (s >= samples / 10) /* the first tenth warms the caches */
			histo_add(h, (t1 - t0 + per / 2) / per);
	}
	r = from_histo(name, h, (double)len);
out:
	free(src);
	free(dst);
	free(h);
	return r;
}

/* A loopback TCP listener on an ephemeral port; its address in *sa. */
static int tcp_listen(struct sockaddr_in *sa)
{
	socklen_t sl = sizeof(*sa);
	*sa = (struct sockaddr_in){ .sin_family = AF_INET,
				    .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int ls = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (ls < 0)
		return -1;
	if (bind(ls, (struct sockaddr *)sa, sizeof(*sa)) < 0 ||
	    listen(ls, 1) < 0 ||
	    getsockname(ls, (struct sockaddr *)sa, &sl) < 0) {
		close(ls);
		return -1;
	}
	return ls;
}

static int tcp_connect(const struct sockaddr_in *sa)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd >= 0 && connect(fd, (const struct sockaddr *)sa, sizeof(*sa)) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

static int write_all(int fd, const uint8_t *p, size_t len)
{
	while (len) {
		ssize_t w = write(fd, p, len);
		if (w <= 0)
			return -1;
		p += w;
		len -= (size_t)w;
	}
	return 0;
}

/* Reads fd to EOF, 1 MiB at a time, into r: GB/s from the first byte to
 * EOF, when exactly len * count bytes came. */
static void read_stream(int fd, size_t len, uint64_t count, result *r)
{
	uint8_t *buf = malloc(1u << 20);
	uint64_t got = 0, t0 = 0;
	ssize_t n;
	if (!buf)
		return;
	while ((n = read(fd, buf, 1u << 20)) > 0) {
		if (!t0)
			t0 = proc_now_ns();
		got += (uint64_t)n;
	}
	uint64_t t1 = proc_now_ns();
	if (got == len * count && t1 > t0) {
		r->iters = count;
		r->gb_per_s = (double)got / (double)(t1 - t0);
	}
	free(buf);
}

/* The writer process: count writes of len bytes to a connection to sa. */
static void writer_main(const struct sockaddr_in *sa, size_t len, uint64_t count)
{
	int fd = tcp_connect(sa);
	uint8_t *src = malloc(len);
	if (fd < 0 || !src)
		_exit(1);
	memset(src, 0x5a, len);
	for (uint64_t i = 0; i < count; i++)
		if (write_all(fd, src, len) < 0)
			_exit(1);
	_exit(0);
}

/* One stream of count writes of len bytes, child -> parent over loopback
 * TCP, the two pinned to different CPUs. Reports the receiver's GB/s
 * (p50 etc. not applicable). */
static result run_tcp(const char *name, size_t len, uint64_t count)
{
	result r = { name, 0, -1, -1, -1, -1 };
	struct sockaddr_in sa;
	int ls = tcp_listen(&sa);
	if (ls < 0)
		return r;
	pid_t pid = fork();
	if (pid == 0) {
		pin(1);
		writer_main(&sa, len, count);
	}
	if (pid > 0) {
		pin(0);
		int fd = accept(ls, NULL, NULL);
		if (fd >= 0) {
			read_stream(fd, len, count, &r);
			close(fd);
		}
		waitpid(pid, NULL, 0);
	}
	close(ls);
	return r;
}

/* The relay process: forwards everything from in to out until EOF, with
 * read/write through a buffer, or with splice through a pipe. */
static void relay_main(int in, int out, bool use_splice)
{
	if (!use_splice) {
		uint8_t *buf = malloc(1u << 20);
		ssize_t n;
		while (buf && (n = read(in, buf, 1u << 20)) > 0)
			if (write_all(out, buf, (size_t)n) < 0)
				_exit(1);
		_exit(buf ? 0 : 1);
	}
	int p[2];
	if (pipe(p) < 0)
		_exit(1);
	fcntl(p[1], F_SETPIPE_SZ, 1 << 20); /* best effort */
	for (;;) {
		ssize_t n = splice(in, NULL, p[1], NULL, 1u << 20,
				   SPLICE_F_MOVE | SPLICE_F_MORE);
		if (n == 0)
			_exit(0);
		if (n < 0)
			_exit(1);
		while (n > 0) {
			ssize_t w = splice(p[0], NULL, out, NULL, (size_t)n,
					   SPLICE_F_MOVE | SPLICE_F_MORE);
			if (w <= 0)
				_exit(1);
			n -= w;
		}
	}
}

/* count writes of len bytes: writer -> relay -> this process (the
 * reader), each hop its own loopback TCP connection. No pinning: three
 * processes share the CPUs, as publisher, broker and subscriber do. */
static result run_relay(const char *name, size_t len, uint64_t count,
			bool use_splice)
{
	result r = { name, 0, -1, -1, -1, -1 };
	struct sockaddr_in sa_in, sa_out;
	int ls_in = tcp_listen(&sa_in), ls_out = tcp_listen(&sa_out);
	pid_t relay = -1, writer = -1;
	if (ls_in < 0 || ls_out < 0)
		goto out;
	relay = fork();
	if (relay == 0) {
		int out = tcp_connect(&sa_out);
		int in = out < 0 ? -1 : accept(ls_in, NULL, NULL);
		if (in < 0)
			_exit(1);
		relay_main(in, out, use_splice);
	}
	writer = relay < 0 ? -1 : fork();
	if (writer == 0)
		writer_main(&sa_in, len, count);
	if (writer < 0)
		goto out;
	int fd = accept(ls_out, NULL, NULL);
	if (fd >= 0) {
		read_stream(fd, len, count, &r);
		close(fd);
	}
out:
	if (relay > 0) {
		if (writer < 0)
			kill(relay, SIGKILL);
		waitpid(relay, NULL, 0);
	}
	if (writer > 0)
		waitpid(writer, NULL, 0);
	if (ls_in >= 0)
		close(ls_in);
	if (ls_out >= 0)
		close(ls_out);
	return r;
}

static result run_clock(uint64_t samples)
{
	histo h;
	histo_init(&h);
	for (uint64_t s = 0; s < samples; s++) {
		uint64_t t0 = proc_now_ns();
		for (int k = 0; k < 100; k++)
			(void)proc_now_ns();
		histo_add(&h, (proc_now_ns() - t0) / 101);
	}
	return from_histo("clock_gettime", &h, 0);
}

static void num(FILE *f, double v, int width, const char *fmt)
{
	if (v < 0)
		fprintf(f, "%*s", width, "");
	else
		fprintf(f, fmt, width, v);
}

static void print_csv(FILE *f, const result *r, int n)
{
	fputs("test,p50_ns,p99_ns,mean_ns,gb_per_s,iterations\n", f);
	for (int i = 0; i < n; i++) {
		fprintf(f, "%s,", r[i].name);
		num(f, r[i].p50_ns, 0, "%*.1f");
		fputc(',', f);
		num(f, r[i].p99_ns, 0, "%*.1f");
		fputc(',', f);
		num(f, r[i].mean_ns, 0, "%*.1f");
		fputc(',', f);
		num(f, r[i].gb_per_s, 0, "%*.2f");
		fprintf(f, ",%llu\n", (unsigned long long)r[i].iters);
	}
}

int main(int argc, char **argv)
{
	uint64_t iters = 100000;
	const char *csv = NULL;
	static const struct option lo[] = {
		{ "iters", required_argument, NULL, 'n' },
		{ "csv", required_argument, NULL, 'c' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int o;
	while ((o = getopt_long(argc, argv, "n:c:h", lo, NULL)) != -1) {
		switch (o) {
		case 'n': iters = strtoull(optarg, NULL, 10); break;
		case 'c': csv = optarg; break;
		case 'h':
			puts("usage: shimmy-hwlimits [--iters N] [--csv FILE]\n"
			     "  N cache-line round trips (100000); futex wakes and memcpy"
			     " samples scale with N/100");
			return 0;
		default: return 2;
		}
	}
	if (iters < 100)
		iters = 100;
	uint64_t small = iters / 100 < 10 ? 10 : iters / 100;

	enum { NR = 8 };
	result r[NR];
	r[0] = run_clock(small);
	int rc = run_ipc(iters, small, &r[1], &r[2]);
	if (rc < 0) {
		fprintf(stderr, "shimmy-hwlimits: %s\n", strerror(-rc));
		return 1;
	}
	r[3] = run_memcpy("memcpy_16B", 16, 1000, small * 10);
	r[4] = run_memcpy("memcpy_100KB", 100 * 1024, 1, small * 10);
	r[5] = run_tcp("tcp_loopback_100KB", 100 * 1024, small * 10);
	r[6] = run_relay("tcp_relay_100KB", 100 * 1024, small * 10, false);
	r[7] = run_relay("tcp_splice_relay_100KB", 100 * 1024, small * 10, true);

	printf("%-24s %10s %10s %10s %8s %10s\n", "test", "p50_ns", "p99_ns",
	       "mean_ns", "GB/s", "iters");
	for (int i = 0; i < NR; i++) {
		printf("%-24s ", r[i].name);
		num(stdout, r[i].p50_ns, 10, "%*.1f");
		putchar(' ');
		num(stdout, r[i].p99_ns, 10, "%*.1f");
		putchar(' ');
		num(stdout, r[i].mean_ns, 10, "%*.1f");
		putchar(' ');
		num(stdout, r[i].gb_per_s, 8, "%*.2f");
		printf(" %10llu\n", (unsigned long long)r[i].iters);
	}
	printf("(every sample includes one clock_gettime; memcpy_16B is per copy,"
	       " timed over 1000)\n\n");
	print_csv(stdout, r, NR);
	if (csv) {
		FILE *f = fopen(csv, "w");
		if (!f) {
			fprintf(stderr, "shimmy-hwlimits: %s: %s\n", csv, strerror(errno));
			return 1;
		}
		print_csv(f, r, NR);
		fclose(f);
	}
	return 0;
}

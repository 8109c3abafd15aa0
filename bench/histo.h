/*
 * bench/histo.h — a log-linear latency histogram (HDR-style).
 *
 * Values are nanoseconds. Below 128 ns every value has its own bucket; above,
 * each power of two is split into 64 linear buckets, so a reported
 * percentile is within 1/64 (1.6 %) of the true value. Fixed size (~30 KiB),
 * no allocation after histo_init, mergeable.
 * Thread model: one writer per histogram; merge after the writers stop.
 */
#ifndef SHIMMY_BENCH_HISTO_H
#define SHIMMY_BENCH_HISTO_H

#include <stdint.h>

#define HISTO_BUCKETS 3776 /* (63 - 6) * 64 + 128: every uint64_t maps */

typedef struct histo {
	uint64_t count;
	uint64_t sum_ns;
	uint64_t min_ns;
	uint64_t max_ns;
	uint64_t bucket[HISTO_BUCKETS];
} histo;

void histo_init(histo *h);
void histo_add(histo *h, uint64_t ns);
/* Adds every sample of src to dst. */
void histo_merge(histo *dst, const histo *src);
/* Value at quantile q in [0,1] (midpoint of its bucket); 0 when empty. */
uint64_t histo_quantile(const histo *h, double q);
/* Mean in ns; 0 when empty. */
double histo_mean(const histo *h);

#endif

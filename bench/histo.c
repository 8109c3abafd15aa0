/*
 * bench/histo.c — log-linear histogram; see histo.h.
 *
 * Bucket index of v: v itself below 128; otherwise, with m the index of v's
 * top bit (m >= 7) and s = m - 6, the bucket is s * 64 + (v >> s), where
 * v >> s lies in [64, 127]. Buckets are therefore contiguous: 127 -> 127,
 * 128 -> 128, 255 -> 191, 256 -> 192.
 */
#include "bench/histo.h"

#include <string.h>

static unsigned bucket_of(uint64_t v)
{
	if (v < 128)
		return (unsigned)v;
	unsigned s = (unsigned)(63 - __builtin_clzll(v)) - 6;
	return s * 64 + (unsigned)(v >> s);
}

static uint64_t bucket_mid(unsigned i)
{
	if (i < 128)
		return i;
	unsigned s = i / 64 - 1;
	uint64_t lo = (uint64_t)(i % 64 + 64) << s;
	return lo + ((1ull << s) >> 1);
}

void histo_init(histo *h)
{
	memset(h, 0, sizeof(*h));
	h->min_ns = UINT64_MAX;
}

void histo_add(histo *h, uint64_t ns)
{
	h->bucket[bucket_of(ns)]++;
	h->count++;
	h->sum_ns += ns;
	if (ns < h->min_ns)
		h->min_ns = ns;
	if (ns > h->max_ns)
		h->max_ns = ns;
}

void histo_merge(histo *dst, const histo *src)
{
	for (unsigned i = 0; i < HISTO_BUCKETS; i++)
		dst->bucket[i] += src->bucket[i];
	dst->count += src->count;
	dst->sum_ns += src->sum_ns;
	if (src->min_ns < dst->min_ns)
		dst->min_ns = src->min_ns;
	if (src->max_ns > dst->max_ns)
		dst->max_ns = src->max_ns;
}

uint64_t histo_quantile(const histo *h, double q)
{
	if (h->count == 0)
		return 0;
	if (q <= 0)
		return h->min_ns;
	if (q >= 1)
		return h->max_ns;
	uint64_t rank = (uint64_t)(q * (double)h->count);
	if ((double)rank < q * (double)h->count)
		rank++; /* ceil: the smallest value with >= q of samples at or below */
	if (rank == 0)
		rank = 1;
	uint64_t seen = 0;
	for (unsigned i = 0; i < HISTO_BUCKETS; i++) {
		seen += h->bucket[i];
		if (seen >= rank) {
			uint64_t v = bucket_mid(i);
			/* The midpoint may lie outside what was actually seen. */
			if (v < h->min_ns)
				v = h->min_ns;
			if (v > h->max_ns)
				v = h->max_ns;
			return v;
		}
	}
	return h->max_ns;
}

double histo_mean(const histo *h)
{
	return h->count ? (double)h->sum_ns / (double)h->count : 0.0;
}

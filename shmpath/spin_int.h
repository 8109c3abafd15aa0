/*
 * shmpath/spin_int.h — private helpers of shmpath's wait loops (ring.c,
 * notify.c): the monotonic clock in ns and the CPU's spin-wait hint.
 */
#ifndef SHIMMY_SHMPATH_SPIN_INT_H
#define SHIMMY_SHMPATH_SPIN_INT_H

#include <stdint.h>
#include <time.h>

static inline int64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Tells the core we are spinning (frees resources for the sibling
 * hyperthread, saves power); a no-op elsewhere. */
static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#endif
}

#endif

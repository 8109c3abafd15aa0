/*
 * broker/slab.h — a bounded cache of fixed-size blocks, so that the
 * message hot path does not call malloc/free per message.
 *
 * Freed blocks are kept on an intrusive free list (up to max_free of them)
 * and handed out again; beyond that they go back to the heap, so a burst
 * does not pin memory forever. Every block is a malloc() allocation of at
 * least `block` bytes, which is why slab_free() also accepts any malloc()ed
 * pointer to at least that many bytes.
 * Thread model: one user at a time (no locking; the broker's slabs are
 * used under its core lock).
 */
#ifndef SHIMMY_BROKER_SLAB_H
#define SHIMMY_BROKER_SLAB_H

#include <stddef.h>
#include <stdint.h>

typedef struct slab {
	void *free;        /* free list, linked through each block's start */
	uint32_t count;    /* blocks on the free list */
	uint32_t max_free; /* most blocks kept */
	size_t block;      /* bytes per block, >= sizeof(void *) */
} slab;

/* A static initializer; same as slab_init(). */
#define SLAB_INIT(block_, max_free_) \
	{ NULL, 0, (max_free_), (block_) < sizeof(void *) ? sizeof(void *) : (block_) }

/* An empty slab of `block`-byte blocks keeping at most max_free free
 * ones. Allocates nothing. */
void slab_init(slab *s, size_t block, uint32_t max_free);

/* Returns every cached block to the heap (blocks handed out are the
 * callers'); the slab stays usable. */
void slab_fini(slab *s);

/* A block of s->block bytes (uninitialised): cached, or from malloc.
 * NULL on OOM. Caller owns it until slab_free(). */
void *slab_alloc(slab *s);

/* Takes p back (NULL ok): p came from slab_alloc(s), or from malloc() with
 * at least s->block bytes. Caches it, or frees it when the cache is full. */
void slab_free(slab *s, void *p);

#endif

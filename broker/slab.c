/*
 * broker/slab.c — see slab.h.
 */
#include "broker/slab.h"

#include <stdlib.h>

void slab_init(slab *s, size_t block, uint32_t max_free)
{
	s->free = NULL;
	s->count = 0;
	s->max_free = max_free;
	s->block = block < sizeof(void *) ? sizeof(void *) : block;
}

void slab_fini(slab *s)
{
	while (s->free) {
		void *p = s->free;
		s->free = *(void **)p;
		free(p);
	}
	s->count = 0;
}

void *slab_alloc(slab *s)
{
	void *p = s->free;
	if (!p)
		return malloc(s->block);
	s->free = *(void **)p;
	s->count--;
	return p;
}

void slab_free(slab *s, void *p)
{
	if (!p)
		return;
	if (s->count >= s->max_free) {
		free(p);
		return;
	}
	*(void **)p = s->free;
	s->free = p;
	s->count++;
}

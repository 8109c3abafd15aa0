/*
 * broker/strmap.h — a small open-addressing hash table from byte-string keys
 * to pointers (linear probing, backward-shift deletion, power-of-two size).
 *
 * Keys are borrowed: the caller keeps each key's bytes alive, unchanged,
 * until the entry is removed (usually the key lives inside the value).
 * Used for session lookup by client id and for topic-tree children.
 * Thread model: not thread-safe; the owner's thread only.
 */
#ifndef SHIMMY_BROKER_STRMAP_H
#define SHIMMY_BROKER_STRMAP_H

#include <stddef.h>
#include <stdint.h>

typedef struct strmap_ent {
	const char *key; /* NULL = empty slot */
	uint32_t klen;
	uint32_t hash;
	void *val;
} strmap_ent;

/* Invariant: count < cap * 3/4 when cap != 0; cap is 0 or a power of 2. */
typedef struct strmap {
	strmap_ent *tab;
	uint32_t cap;
	uint32_t count;
} strmap;

/* An empty map; allocates nothing until the first put. */
void strmap_init(strmap *m);
/* Frees the table (not the values). */
void strmap_fini(strmap *m);

/* The value for key, or NULL. */
void *strmap_get(const strmap *m, const char *key, size_t klen);

/* Inserts or replaces. key is borrowed until the entry is removed.
 * Returns 0, or MQTT_ERR_NOMEM (map unchanged). May allocate. */
int strmap_put(strmap *m, const char *key, size_t klen, void *val);

/* Removes key; returns its value, or NULL if absent. Never allocates. */
void *strmap_del(strmap *m, const char *key, size_t klen);

/* Some value of m, NULL when m is empty; for draining a map (tree
 * teardown) without a separate iterator. */
void *strmap_any(const strmap *m);

static inline uint32_t strmap_count(const strmap *m)
{
	return m->count;
}

#endif

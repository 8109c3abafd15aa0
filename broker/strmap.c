/*
 * broker/strmap.c — see strmap.h.
 */
#include "broker/strmap.h"

#include <stdlib.h>
#include <string.h>

#include "mqtt/error.h"

static uint32_t strmap_hash(const char *key, size_t klen)
{
	/* FNV-1a; adequate until a keyed hash is needed against flooding. */
	uint32_t h = 2166136261u;
	for (size_t i = 0; i < klen; i++) {
		h ^= (uint8_t)key[i];
		h *= 16777619u;
	}
	return h;
}

void strmap_init(strmap *m)
{
	m->tab = NULL;
	m->cap = 0;
	m->count = 0;
}

void strmap_fini(strmap *m)
{
	free(m->tab);
	strmap_init(m);
}

static strmap_ent *strmap_find(const strmap *m, const char *key, size_t klen,
			       uint32_t h)
{
	if (m->cap == 0)
		return NULL;
	uint32_t mask = m->cap - 1;
	for (uint32_t i = h & mask;; i = (i + 1) & mask) {
		strmap_ent *e = &m->tab[i];
		if (!e->key)
			return NULL;
		if (e->hash == h && e->klen == klen &&
		    (klen == 0 || memcmp(e->key, key, klen) == 0))
			return e;
	}
}

void *strmap_get(const strmap *m, const char *key, size_t klen)
{
	strmap_ent *e = strmap_find(m, key, klen, strmap_hash(key, klen));
	return e ? e->val : NULL;
}

static void strmap_insert_raw(strmap_ent *tab, uint32_t cap, strmap_ent ent)
{
	uint32_t mask = cap - 1;
	uint32_t i = ent.hash & mask;
	while (tab[i].key)
		i = (i + 1) & mask;
	tab[i] = ent;
}

static int strmap_grow(strmap *m)
{
	uint32_t ncap = m->cap ? m->cap * 2 : 8;
	if (ncap == 0)
		return MQTT_ERR_NOMEM;
	strmap_ent *ntab = calloc(ncap, sizeof(*ntab));
	if (!ntab)
		return MQTT_ERR_NOMEM;
	for (uint32_t i = 0; i < m->cap; i++)
		if (m->tab[i].key)
			strmap_insert_raw(ntab, ncap, m->tab[i]);
	free(m->tab);
	m->tab = ntab;
	m->cap = ncap;
	return 0;
}

int strmap_put(strmap *m, const char *key, size_t klen, void *val)
{
	if (klen > UINT32_MAX)
		return MQTT_ERR_INVALID;
	if (!key)
		key = "";
	uint32_t h = strmap_hash(key, klen);
	strmap_ent *e = strmap_find(m, key, klen, h);
	if (e) {
		e->val = val;
		return 0;
	}
	if ((uint64_t)(m->count + 1) * 4 > (uint64_t)m->cap * 3) {
		int rc = strmap_grow(m);
		if (rc)
			return rc;
	}
	strmap_ent ent = { key, (uint32_t)klen, h, val };
	strmap_insert_raw(m->tab, m->cap, ent);
	m->count++;
	return 0;
}

void *strmap_del(strmap *m, const char *key, size_t klen)
{
	if (!key)
		key = "";
	strmap_ent *e = strmap_find(m, key, klen, strmap_hash(key, klen));
	if (!e)
		return NULL;
	void *val = e->val;
	uint32_t mask = m->cap - 1;
	uint32_t i = (uint32_t)(e - m->tab);
	/* Backward-shift deletion keeps probe chains intact without tombstones. */
	uint32_t j = i;
	for (;;) {
		m->tab[i].key = NULL;
		for (;;) {
			j = (j + 1) & mask;
			if (!m->tab[j].key)
				goto out;
			uint32_t home = m->tab[j].hash & mask;
			/* Move j back to i unless its home lies cyclically in (i, j]. */
			if (i <= j ? (home <= i || home > j) : (home <= i && home > j))
				break;
		}
		m->tab[i] = m->tab[j];
		i = j;
	}
out:
	m->count--;
	return val;
}

void *strmap_any(const strmap *m)
{
	for (uint32_t i = 0; i < m->cap; i++)
		if (m->tab[i].key)
			return m->tab[i].val;
	return NULL;
}

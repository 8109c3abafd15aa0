/*
 * broker/subtree.c — see subtree.h.
 *
 * Each node is one filter level; its children are keyed by level text in a
 * strmap ("+" and "#" are ordinary keys there). Normal subscriptions sit in
 * the node of their filter's last level; shared ones in a group list there.
 */
#include "broker/subtree.h"

#include <stdlib.h>
#include <string.h>

#include "broker/strmap.h"
#include "mqtt/error.h"

typedef struct st_sub {
	void *owner;
	uint32_t sub_id;
	uint8_t options;
} st_sub;

typedef struct st_group {
	char *name;
	uint32_t name_len;
	uint32_t count, cap;
	uint32_t next; /* round-robin cursor */
	st_sub *members;
} st_group;

typedef struct st_node {
	struct st_node *parent;
	char *level; /* key of this node in parent->children */
	uint32_t level_len;
	strmap children;
	st_sub *subs;
	uint32_t sub_count, sub_cap;
	st_group *groups;
	uint32_t group_count;
} st_node;

struct subtree {
	st_node root;
	uint64_t count;
	uint64_t gen;         /* subtree_gen() */
	subtree_pref_fn pref; /* shared groups: members to prefer; NULL = any */
	void *pref_ctx;
	/* Scratch frontiers for subtree_match(), reused across calls. */
	st_node **cur, **nxt;
	uint32_t cur_cap, nxt_cap;
};

static const mqtt_str st_plus = { "+", 1 };
static const mqtt_str st_hash = { "#", 1 };

bool subtree_share_split(mqtt_str full, mqtt_str *group, mqtt_str *filter)
{
	static const char pfx[] = "$share/";
	const uint32_t plen = sizeof(pfx) - 1;
	if (full.len <= plen || memcmp(full.ptr, pfx, plen) != 0)
		return false;
	const char *g = full.ptr + plen;
	const char *end = full.ptr + full.len;
	const char *slash = memchr(g, '/', (size_t)(end - g));
	if (!slash || slash == g)
		return false;
	group->ptr = g;
	group->len = (uint32_t)(slash - g);
	filter->ptr = slash + 1;
	filter->len = (uint32_t)(end - slash - 1);
	return true;
}

subtree *subtree_create(void)
{
	subtree *t = calloc(1, sizeof(*t));
	if (!t)
		return NULL;
	strmap_init(&t->root.children);
	t->gen = 1;
	return t;
}

static void st_node_free(st_node *n)
{
	for (uint32_t i = 0; i < n->group_count; i++) {
		free(n->groups[i].name);
		free(n->groups[i].members);
	}
	free(n->groups);
	free(n->subs);
	strmap_fini(&n->children);
	free(n->level);
}

void subtree_destroy(subtree *t)
{
	if (!t)
		return;
	/* Post-order without recursion: detach a leaf, free it, climb. */
	st_node *n = &t->root;
	while (n) {
		st_node *child = strmap_any(&n->children);
		if (child) {
			n = child;
			continue;
		}
		st_node *parent = n->parent;
		if (!parent)
			break;
		strmap_del(&parent->children, n->level, n->level_len);
		st_node_free(n);
		free(n);
		n = parent;
	}
	st_node_free(&t->root);
	free(t->cur);
	free(t->nxt);
	free(t);
}

/* Next level of s starting at *off; false when none left. A string of n
 * slashes has n + 1 levels. */
static bool st_next_level(mqtt_str s, uint32_t *off, bool *done, mqtt_str *lvl)
{
	if (*done)
		return false;
	const char *p = s.ptr + *off;
	uint32_t rest = s.len - *off;
	const char *slash = rest ? memchr(p, '/', rest) : NULL;
	if (slash) {
		lvl->ptr = p;
		lvl->len = (uint32_t)(slash - p);
		*off += lvl->len + 1;
	} else {
		lvl->ptr = p;
		lvl->len = rest;
		*off = s.len;
		*done = true;
	}
	return true;
}

static st_node *st_child(const st_node *n, mqtt_str lvl)
{
	return strmap_get(&n->children, lvl.ptr ? lvl.ptr : "", lvl.len);
}

static st_node *st_find(subtree *t, mqtt_str filter, bool create)
{
	st_node *n = &t->root;
	uint32_t off = 0;
	bool done = false;
	mqtt_str lvl;
	while (st_next_level(filter, &off, &done, &lvl)) {
		st_node *c = st_child(n, lvl);
		if (!c) {
			if (!create)
				return NULL;
			c = calloc(1, sizeof(*c));
			if (!c)
				return NULL;
			c->level = malloc(lvl.len + 1);
			if (!c->level) {
				free(c);
				return NULL;
			}
			if (lvl.len)
				memcpy(c->level, lvl.ptr, lvl.len);
			c->level[lvl.len] = '\0';
			c->level_len = lvl.len;
			c->parent = n;
			strmap_init(&c->children);
			if (strmap_put(&n->children, c->level, c->level_len, c)) {
				free(c->level);
				free(c);
				return NULL;
			}
		}
		n = c;
	}
	return n;
}

static bool st_node_empty(const st_node *n)
{
	return n->sub_count == 0 && n->group_count == 0 &&
	       strmap_count(&n->children) == 0;
}

/* Frees empty nodes from n upwards. */
static void st_prune(st_node *n)
{
	while (n->parent && st_node_empty(n)) {
		st_node *parent = n->parent;
		strmap_del(&parent->children, n->level, n->level_len);
		st_node_free(n);
		free(n);
		n = parent;
	}
}

/* Sets owner's entry in a sub array; 0, or MQTT_ERR_NOMEM. */
static int st_subs_set(st_sub **arr, uint32_t *count, uint32_t *cap,
		       void *owner, uint8_t options, uint32_t sub_id,
		       bool *existed)
{
	for (uint32_t i = 0; i < *count; i++) {
		if ((*arr)[i].owner == owner) {
			(*arr)[i].options = options;
			(*arr)[i].sub_id = sub_id;
			*existed = true;
			return 0;
		}
	}
	if (*count == *cap) {
		uint32_t ncap = *cap ? *cap * 2 : 2;
		st_sub *na = realloc(*arr, ncap * sizeof(*na));
		if (!na)
			return MQTT_ERR_NOMEM;
		*arr = na;
		*cap = ncap;
	}
	(*arr)[(*count)++] = (st_sub){ owner, sub_id, options };
	*existed = false;
	return 0;
}

static bool st_subs_del(st_sub *arr, uint32_t *count, void *owner)
{
	for (uint32_t i = 0; i < *count; i++) {
		if (arr[i].owner == owner) {
			/* Keep order so round robin and delivery order stay stable. */
			memmove(&arr[i], &arr[i + 1],
				(*count - i - 1) * sizeof(*arr));
			(*count)--;
			return true;
		}
	}
	return false;
}

static st_group *st_group_find(st_node *n, mqtt_str name)
{
	for (uint32_t i = 0; i < n->group_count; i++)
		if (n->groups[i].name_len == name.len &&
		    memcmp(n->groups[i].name, name.ptr, name.len) == 0)
			return &n->groups[i];
	return NULL;
}

int subtree_add(subtree *t, mqtt_str filter, void *owner, uint8_t options,
		uint32_t sub_id, bool *existed)
{
	bool ex = false;
	mqtt_str group, inner;
	bool shared = subtree_share_split(filter, &group, &inner);
	st_node *n = st_find(t, shared ? inner : filter, true);
	if (!n)
		return MQTT_ERR_NOMEM;
	int rc;
	if (!shared) {
		rc = st_subs_set(&n->subs, &n->sub_count, &n->sub_cap, owner,
				 options, sub_id, &ex);
	} else {
		st_group *g = st_group_find(n, group);
		if (!g) {
			st_group *ng = realloc(n->groups, (n->group_count + 1) *
							      sizeof(*ng));
			if (!ng) {
				st_prune(n);
				return MQTT_ERR_NOMEM;
			}
			n->groups = ng;
			g = &ng[n->group_count];
			memset(g, 0, sizeof(*g));
			g->name = malloc(group.len + 1);
			if (!g->name) {
				st_prune(n);
				return MQTT_ERR_NOMEM;
			}
			memcpy(g->name, group.ptr, group.len);
			g->name[group.len] = '\0';
			g->name_len = group.len;
			n->group_count++;
		}
		rc = st_subs_set(&g->members, &g->count, &g->cap, owner,
				 options, sub_id, &ex);
		if (rc && g->count == 0) {
			free(g->name);
			free(g->members);
			*g = n->groups[--n->group_count];
		}
	}
	if (rc) {
		st_prune(n);
		return rc;
	}
	if (!ex)
		t->count++;
	t->gen++;
	if (existed)
		*existed = ex;
	return 0;
}

bool subtree_remove(subtree *t, mqtt_str filter, void *owner)
{
	mqtt_str group, inner;
	bool shared = subtree_share_split(filter, &group, &inner);
	st_node *n = st_find(t, shared ? inner : filter, false);
	if (!n)
		return false;
	bool found;
	if (!shared) {
		found = st_subs_del(n->subs, &n->sub_count, owner);
	} else {
		st_group *g = st_group_find(n, group);
		found = g && st_subs_del(g->members, &g->count, owner);
		if (found && g->count == 0) {
			free(g->name);
			free(g->members);
			*g = n->groups[--n->group_count];
		}
	}
	if (found) {
		t->count--;
		t->gen++;
	}
	st_prune(n);
	return found;
}

uint64_t subtree_count(const subtree *t)
{
	return t->count;
}

uint64_t subtree_gen(const subtree *t)
{
	return t->gen;
}

void subtree_set_prefer(subtree *t, subtree_pref_fn fn, void *ctx)
{
	t->pref = fn;
	t->pref_ctx = ctx;
}

/* The member of g to receive the next message, round robin from g->next,
 * skipping members the preference rejects unless all of them are
 * rejected, and `exclude` always. NULL when nobody is left. */
static st_sub *st_group_pick(const subtree *t, st_group *g, const void *exclude)
{
	st_sub *fallback = NULL;
	for (uint32_t k = 0; k < g->count; k++) {
		uint32_t i = (g->next + k) % g->count;
		st_sub *m = &g->members[i];
		if (m->owner == exclude)
			continue;
		if (!t->pref || t->pref(m->owner, t->pref_ctx)) {
			g->next = (i + 1) % g->count;
			return m;
		}
		if (!fallback)
			fallback = m;
	}
	if (fallback)
		g->next = (uint32_t)(fallback - g->members + 1) % g->count;
	return fallback;
}

int subtree_share_pick(subtree *t, mqtt_str filter, const void *exclude,
		       subtree_cb cb, void *ctx)
{
	mqtt_str group, inner;
	if (!subtree_share_split(filter, &group, &inner))
		return 0;
	st_node *n = st_find(t, inner, false);
	st_group *g = n ? st_group_find(n, group) : NULL;
	st_sub *m = g ? st_group_pick(t, g, exclude) : NULL;
	if (!m)
		return 0;
	cb(m->owner, m->options, m->sub_id, SUBTREE_SHARED, ctx);
	return 1;
}

static int st_emit(const subtree *t, st_node *n, subtree_cb cb, void *ctx)
{
	int calls = 0;
	for (uint32_t i = 0; i < n->sub_count; i++, calls++)
		cb(n->subs[i].owner, n->subs[i].options, n->subs[i].sub_id, 0,
		   ctx);
	for (uint32_t i = 0; i < n->group_count; i++) {
		st_group *g = &n->groups[i];
		if (g->count == 0)
			continue;
		st_sub *m = st_group_pick(t, g, NULL);
		cb(m->owner, m->options, m->sub_id, SUBTREE_SHARED, ctx);
		calls++;
	}
	return calls;
}

static int st_reserve(st_node ***arr, uint32_t *cap, uint32_t need)
{
	if (need <= *cap)
		return 0;
	uint32_t ncap = *cap ? *cap : 16;
	while (ncap < need)
		ncap *= 2;
	st_node **na = realloc(*arr, ncap * sizeof(*na));
	if (!na)
		return MQTT_ERR_NOMEM;
	*arr = na;
	*cap = ncap;
	return 0;
}

int subtree_match(subtree *t, mqtt_str topic, subtree_cb cb, void *ctx)
{
	/*
	 * Breadth first over the topic's levels: `cur` holds every node whose
	 * filter prefix matches the levels consumed so far. Each step follows
	 * the exact child and '+'; a '#' child matches the rest right away.
	 * The frontier never holds a node twice (each node has one path), so
	 * it is bounded by the tree size.
	 */
	int calls = 0;
	uint32_t ncur = 0, nnxt;
	if (st_reserve(&t->cur, &t->cur_cap, 1))
		return MQTT_ERR_NOMEM;
	t->cur[ncur++] = &t->root;
	bool dollar = topic.len > 0 && topic.ptr[0] == '$';
	uint32_t off = 0;
	bool done = false;
	mqtt_str lvl;
	for (uint32_t depth = 0; st_next_level(topic, &off, &done, &lvl);
	     depth++) {
		nnxt = 0;
		if (st_reserve(&t->nxt, &t->nxt_cap, ncur * 2))
			return calls ? calls : MQTT_ERR_NOMEM;
		bool wild_ok = !(depth == 0 && dollar);
		for (uint32_t i = 0; i < ncur; i++) {
			st_node *n = t->cur[i], *c;
			if (wild_ok && (c = st_child(n, st_hash)))
				calls += st_emit(t, c, cb, ctx);
			if (wild_ok && (c = st_child(n, st_plus)))
				t->nxt[nnxt++] = c;
			if ((c = st_child(n, lvl)))
				t->nxt[nnxt++] = c;
		}
		st_node **tmp = t->cur;
		t->cur = t->nxt;
		t->nxt = tmp;
		uint32_t tc = t->cur_cap;
		t->cur_cap = t->nxt_cap;
		t->nxt_cap = tc;
		ncur = nnxt;
		if (ncur == 0)
			return calls;
	}
	for (uint32_t i = 0; i < ncur; i++) {
		st_node *n = t->cur[i], *c;
		calls += st_emit(t, n, cb, ctx);
		/* "a/#" also matches "a" [MQTT-4.7.1-2]. */
		if ((c = st_child(n, st_hash)))
			calls += st_emit(t, c, cb, ctx);
	}
	return calls;
}

/*
 * broker/retain.c — see retain.h.
 */
#include "broker/retain.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "broker/strmap.h"
#include "mqtt/error.h"

typedef struct rt_node {
	struct rt_node *parent;
	char *level;
	uint32_t level_len;
	strmap children;
	broker_msg *msg;
} rt_node;

/* A pending visit of retain_match(): node n with filter level idx next;
 * idx == RT_ALL means "n and everything below it" (after a '#'). */
typedef struct rt_visit {
	rt_node *n;
	uint32_t idx;
} rt_visit;

#define RT_ALL UINT32_MAX

struct retain_store {
	rt_node root;
	size_t count;
	rt_visit *stack;
	uint32_t stack_cap;
	mqtt_str *levels;
	uint32_t levels_cap;
};

retain_store *retain_create(void)
{
	retain_store *r = calloc(1, sizeof(*r));
	if (r)
		strmap_init(&r->root.children);
	return r;
}

static void rt_node_free(rt_node *n)
{
	msg_unref(n->msg);
	strmap_fini(&n->children);
	free(n->level);
}

void retain_destroy(retain_store *r)
{
	if (!r)
		return;
	rt_node *n = &r->root;
	while (n) {
		rt_node *child = strmap_any(&n->children);
		if (child) {
			n = child;
			continue;
		}
		rt_node *parent = n->parent;
		if (!parent)
			break;
		strmap_del(&parent->children, n->level, n->level_len);
		rt_node_free(n);
		free(n);
		n = parent;
	}
	rt_node_free(&r->root);
	free(r->stack);
	free(r->levels);
	free(r);
}

static rt_node *rt_find(retain_store *r, mqtt_str topic, bool create)
{
	rt_node *n = &r->root;
	uint32_t off = 0;
	for (;;) {
		const char *p = topic.ptr + off;
		uint32_t rest = topic.len - off;
		const char *slash = rest ? memchr(p, '/', rest) : NULL;
		uint32_t len = slash ? (uint32_t)(slash - p) : rest;
		rt_node *c = strmap_get(&n->children, len ? p : "", len);
		if (!c) {
			if (!create)
				return NULL;
			c = calloc(1, sizeof(*c));
			if (!c || !(c->level = malloc(len + 1))) {
				free(c);
				return NULL;
			}
			if (len)
				memcpy(c->level, p, len);
			c->level[len] = '\0';
			c->level_len = len;
			c->parent = n;
			strmap_init(&c->children);
			if (strmap_put(&n->children, c->level, len, c)) {
				free(c->level);
				free(c);
				return NULL;
			}
		}
		n = c;
		if (!slash)
			return n;
		off += len + 1;
	}
}

static void rt_prune(rt_node *n)
{
	while (n->parent && !n->msg && strmap_count(&n->children) == 0) {
		rt_node *parent = n->parent;
		strmap_del(&parent->children, n->level, n->level_len);
		rt_node_free(n);
		free(n);
		n = parent;
	}
}

int retain_set(retain_store *r, broker_msg *m)
{
	mqtt_str topic = { m->topic, m->topic_len };
	if (m->payload_len == 0) {
		rt_node *n = rt_find(r, topic, false);
		if (n && n->msg) {
			msg_unref(n->msg);
			n->msg = NULL;
			r->count--;
			rt_prune(n);
		}
		return 0;
	}
	rt_node *n = rt_find(r, topic, true);
	if (!n)
		return MQTT_ERR_NOMEM;
	if (n->msg)
		msg_unref(n->msg);
	else
		r->count++;
	n->msg = msg_ref(m);
	return 0;
}

broker_msg *retain_get(retain_store *r, mqtt_str topic)
{
	rt_node *n = rt_find(r, topic, false);
	return n ? n->msg : NULL;
}

size_t retain_count(const retain_store *r)
{
	return r->count;
}

static int rt_push(retain_store *r, uint32_t *sp, rt_node *n, uint32_t idx)
{
	if (*sp == r->stack_cap) {
		uint32_t ncap = r->stack_cap ? r->stack_cap * 2 : 64;
		rt_visit *ns = realloc(r->stack, ncap * sizeof(*ns));
		if (!ns)
			return MQTT_ERR_NOMEM;
		r->stack = ns;
		r->stack_cap = ncap;
	}
	r->stack[(*sp)++] = (rt_visit){ n, idx };
	return 0;
}

/* Pushes every child of n with idx; at the root, skips '$' topics when the
 * level is a wildcard [MQTT-4.7.2-1]. */
static int rt_push_children(retain_store *r, uint32_t *sp, rt_node *n,
			    uint32_t idx)
{
	for (uint32_t i = 0; i < n->children.cap; i++) {
		rt_node *c = n->children.tab[i].val;
		if (!n->children.tab[i].key)
			continue;
		if (!n->parent && c->level_len && c->level[0] == '$')
			continue;
		if (rt_push(r, sp, c, idx))
			return MQTT_ERR_NOMEM;
	}
	return 0;
}

int retain_match(retain_store *r, mqtt_str filter, retain_cb cb, void *ctx)
{
	/* Split the filter into levels once. */
	uint32_t nlev = 0, off = 0;
	for (;;) {
		if (nlev == r->levels_cap) {
			uint32_t ncap = r->levels_cap ? r->levels_cap * 2 : 16;
			mqtt_str *nl = realloc(r->levels, ncap * sizeof(*nl));
			if (!nl)
				return MQTT_ERR_NOMEM;
			r->levels = nl;
			r->levels_cap = ncap;
		}
		const char *p = filter.ptr + off;
		uint32_t rest = filter.len - off;
		const char *slash = rest ? memchr(p, '/', rest) : NULL;
		uint32_t len = slash ? (uint32_t)(slash - p) : rest;
		r->levels[nlev++] = (mqtt_str){ len ? p : "", len };
		if (!slash)
			break;
		off += len + 1;
	}

	int calls = 0;
	uint32_t sp = 0;
	if (rt_push(r, &sp, &r->root, 0))
		return MQTT_ERR_NOMEM;
	while (sp) {
		rt_visit v = r->stack[--sp];
		rt_node *n = v.n;
		if (v.idx == RT_ALL) {
			if (n->msg) {
				cb(n->msg, ctx);
				calls++;
			}
			if (rt_push_children(r, &sp, n, RT_ALL))
				return MQTT_ERR_NOMEM;
			continue;
		}
		if (v.idx == nlev) {
			if (n->msg) {
				cb(n->msg, ctx);
				calls++;
			}
			continue;
		}
		mqtt_str lvl = r->levels[v.idx];
		if (lvl.len == 1 && lvl.ptr[0] == '#') {
			/* "a/#" matches "a" itself [MQTT-4.7.1-2]. */
			if (n->parent && n->msg) {
				cb(n->msg, ctx);
				calls++;
			}
			if (rt_push_children(r, &sp, n, RT_ALL))
				return MQTT_ERR_NOMEM;
		} else if (lvl.len == 1 && lvl.ptr[0] == '+') {
			if (rt_push_children(r, &sp, n, v.idx + 1))
				return MQTT_ERR_NOMEM;
		} else {
			rt_node *c = strmap_get(&n->children, lvl.ptr, lvl.len);
			if (c && rt_push(r, &sp, c, v.idx + 1))
				return MQTT_ERR_NOMEM;
		}
	}
	return calls;
}

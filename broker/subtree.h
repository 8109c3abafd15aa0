/*
 * broker/subtree.h — the subscription tree: topic filters, one node per
 * level, with '+' and '#' wildcards, the '$' rule [MQTT-4.7.2-1] and shared
 * subscriptions ("$share/group/filter", one member per message, round
 * robin).
 *
 * Subscribers are opaque owner pointers (sessions, in the broker); one owner
 * has at most one subscription per filter (and per group for shared ones).
 * Matching is iterative (no recursion whose depth a peer controls) and
 * allocates only when its scratch arrays grow.
 * Thread model: core lock (see broker.h): one caller at a time.
 */
#ifndef SHIMMY_BROKER_SUBTREE_H
#define SHIMMY_BROKER_SUBTREE_H

#include <stdbool.h>
#include <stdint.h>

#include "mqtt/types.h"

typedef struct subtree subtree;

/* subtree_match() callback flags. */
enum {
	SUBTREE_SHARED = 1 << 0, /* delivery chosen from a shared group */
};

/*
 * Called once per matching subscription (for shared groups: once per group,
 * for the member chosen). options is the SUBSCRIBE options byte, sub_id the
 * Subscription Identifier (0 = none).
 */
typedef void (*subtree_cb)(void *owner, uint8_t options, uint32_t sub_id,
			   unsigned flags, void *ctx);

/* Returns NULL on OOM. */
subtree *subtree_create(void);
/* Frees the tree (owners untouched). NULL ok. */
void subtree_destroy(subtree *t);

/*
 * Adds or replaces owner's subscription to `filter` (validated already; may
 * be a $share filter). *existed (may be NULL) tells whether it replaced one.
 * Returns 0 or MQTT_ERR_NOMEM. Allocates.
 */
int subtree_add(subtree *t, mqtt_str filter, void *owner, uint8_t options,
		uint32_t sub_id, bool *existed);

/* Removes owner's subscription to filter. Returns true if there was one. */
bool subtree_remove(subtree *t, mqtt_str filter, void *owner);

/*
 * Calls cb for every subscription matching topic name `topic`. cb must not
 * add or remove subscriptions. Returns the number of calls, or
 * MQTT_ERR_NOMEM if scratch space could not grow (no calls made then).
 */
int subtree_match(subtree *t, mqtt_str topic, subtree_cb cb, void *ctx);

/*
 * Preference for shared groups: a member for which fn(owner, ctx) is false
 * (e.g. an offline session) is chosen only when no member is preferred.
 * NULL fn: plain round robin. ctx borrowed until replaced.
 */
typedef bool (*subtree_pref_fn)(const void *owner, void *ctx);
void subtree_set_prefer(subtree *t, subtree_pref_fn fn, void *ctx);

/*
 * For a "$share/group/filter" subscription: chooses the group's next member
 * other than `exclude` (same rules as subtree_match) and calls cb once for
 * it. Returns 1, or 0 when the group has no other member (or filter is not
 * shared). Used to hand a leaving member's messages to another one.
 */
int subtree_share_pick(subtree *t, mqtt_str filter, const void *exclude,
		       subtree_cb cb, void *ctx);

/*
 * A counter that changes whenever a subscription is added, replaced or
 * removed, never 0: a match result recorded at one value stays right for
 * the same topic while the value is unchanged (except for shared groups,
 * whose member choice rotates per call).
 */
uint64_t subtree_gen(const subtree *t);

/* Number of (owner, filter) subscriptions in the tree. */
uint64_t subtree_count(const subtree *t);

/* Splits "$share/group/filter"; true and fills the views if it is one. */
bool subtree_share_split(mqtt_str full, mqtt_str *group, mqtt_str *filter);

#endif

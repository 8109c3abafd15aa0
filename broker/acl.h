/*
 * broker/acl.h — topic access control from a Mosquitto-format acl_file.
 *
 * File format (one rule a line, '#' comments):
 *   user NAME                       following `topic` lines apply to NAME
 *   topic [read|write|readwrite|deny] TOPIC
 *                                   before any `user` line: anonymous clients
 *   pattern [read|write|readwrite|deny] TOPIC
 *                                   every client; %u = username, %c = client id
 * The access word may be omitted (readwrite). TOPIC is the rest of the line
 * and may contain wildcards. A client gets only what a rule grants it;
 * `deny` rules win over grants. A %u/%c pattern never matches a client whose
 * username or id is absent or holds '/', '+' or '#'.
 *
 * Thread model: immutable after acl_load(); checks from any thread.
 */
#ifndef SHIMMY_BROKER_ACL_H
#define SHIMMY_BROKER_ACL_H

#include <stdbool.h>
#include <stddef.h>

#include "mqtt/types.h"

typedef struct acl acl;

typedef enum acl_access {
	ACL_READ = 1,      /* receive a message on a topic name */
	ACL_WRITE = 2,     /* publish to a topic name */
	ACL_SUBSCRIBE = 4, /* subscribe to a topic filter */
} acl_access;

/*
 * Parses the file at path. On success returns 0 and *out (caller owns; free
 * with acl_destroy). On failure returns a negative error (-errno for I/O,
 * MQTT_ERR_INVALID for syntax) and writes "path:line: reason" into err.
 */
int acl_load(const char *path, acl **out, char *err, size_t err_len);

/* Frees a; NULL is fine. */
void acl_destroy(acl *a);

/*
 * Decides one access. username is NULL for anonymous clients. For
 * ACL_READ/ACL_WRITE `topic` is a topic name; for ACL_SUBSCRIBE it is a
 * filter, granted when a read rule covers every topic the filter can match
 * and no deny rule matches it. Never allocates more than a line's worth on
 * the stack.
 */
bool acl_check(const acl *a, mqtt_str username, bool has_username,
	       mqtt_str client_id, mqtt_str topic, acl_access access);

#endif

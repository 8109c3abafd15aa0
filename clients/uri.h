/*
 * clients/uri.h — parses the broker URIs libshimmy accepts:
 * tcp://host[:port] (IPv4, [IPv6], name; port 1883), unix:///path (empty
 * path: $SHIMMY_SOCKET, else /run/shimmy/shimmy.sock) and tls:// (parsed,
 * then refused by the caller as not supported yet).
 * Pure except for the one getenv() of SHIMMY_SOCKET, which the caller passes
 * in so that tests control it. Thread model: any thread.
 */
#ifndef SHIMMY_CLIENTS_URI_H
#define SHIMMY_CLIENTS_URI_H

#include <stdint.h>

#define URI_DEFAULT_PORT 1883
#define URI_DEFAULT_TLS_PORT 8883
#define URI_DEFAULT_SOCKET "/run/shimmy/shimmy.sock"
#define URI_HOST_MAX 256
#define URI_PATH_MAX 108 /* sizeof(sun_path) */

typedef enum uri_scheme { URI_TCP = 1, URI_UNIX, URI_TLS } uri_scheme;

typedef struct uri {
	uri_scheme scheme;
	char host[URI_HOST_MAX]; /* tcp/tls: without IPv6 brackets */
	uint16_t port;           /* tcp/tls */
	char path[URI_PATH_MAX]; /* unix: NUL-terminated, fits sun_path */
} uri;

/*
 * Parses s into *out. env_socket is the value of $SHIMMY_SOCKET or NULL.
 * Returns 0 or SHIMMY_ERR_URI (unknown scheme, empty host, bad port,
 * path too long for sun_path, trailing junk).
 */
int uri_parse(const char *s, const char *env_socket, uri *out);

#endif

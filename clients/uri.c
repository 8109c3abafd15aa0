/*
 * clients/uri.c — broker URI parsing (see uri.h).
 */
#include "clients/uri.h"

#include <string.h>

#include "clients/include/shimmy.h"

static int parse_port(const char *p, uint16_t *out)
{
	unsigned long v = 0;

	if (!*p)
		return SHIMMY_ERR_URI;
	for (; *p; p++) {
		if (*p < '0' || *p > '9')
			return SHIMMY_ERR_URI;
		v = v * 10 + (unsigned long)(*p - '0');
		if (v > 65535)
			return SHIMMY_ERR_URI;
	}
	if (v == 0)
		return SHIMMY_ERR_URI;
	*out = (uint16_t)v;
	return 0;
}

static int parse_hostport(const char *s, uri *out)
{
	const char *end, *colon;
	size_t hl;

	if (*s == '[') {
		end = strchr(s, ']');
		if (!end)
			return SHIMMY_ERR_URI;
		hl = (size_t)(end - s - 1);
		s++;
		colon = end[1] == ':' ? end + 1 : NULL;
		if (!colon && end[1] && strcmp(end + 1, "/") != 0)
			return SHIMMY_ERR_URI;
	} else {
		colon = strchr(s, ':');
		end = colon ? colon : s + strcspn(s, "/");
		hl = (size_t)(end - s);
		if (!colon && *end && strcmp(end, "/") != 0)
			return SHIMMY_ERR_URI;
	}
	if (hl == 0 || hl >= sizeof(out->host))
		return SHIMMY_ERR_URI;
	memcpy(out->host, s, hl);
	out->host[hl] = '\0';
	if (colon) {
		char port[8];
		size_t pl = strcspn(colon + 1, "/");
		if (pl >= sizeof(port) || (colon[1 + pl] && strcmp(colon + 1 + pl, "/") != 0))
			return SHIMMY_ERR_URI;
		memcpy(port, colon + 1, pl);
		port[pl] = '\0';
		return parse_port(port, &out->port);
	}
	return 0;
}

int uri_parse(const char *s, const char *env_socket, uri *out)
{
	memset(out, 0, sizeof(*out));
	if (!s)
		return SHIMMY_ERR_URI;
	if (strncmp(s, "tcp://", 6) == 0 || strncmp(s, "mqtt://", 7) == 0) {
		out->scheme = URI_TCP;
		out->port = URI_DEFAULT_PORT;
		return parse_hostport(s + (s[0] == 't' ? 6 : 7), out);
	}
	if (strncmp(s, "tls://", 6) == 0 || strncmp(s, "mqtts://", 8) == 0) {
		out->scheme = URI_TLS;
		out->port = URI_DEFAULT_TLS_PORT;
		return parse_hostport(s + (s[3] == ':' ? 6 : 8), out);
	}
	if (strncmp(s, "unix://", 7) == 0) {
		const char *path = s + 7;
		out->scheme = URI_UNIX;
		if (!*path)
			path = env_socket && *env_socket ? env_socket : URI_DEFAULT_SOCKET;
		if (path[0] != '/' || strlen(path) >= sizeof(out->path))
			return SHIMMY_ERR_URI;
		strcpy(out->path, path);
		return 0;
	}
	return SHIMMY_ERR_URI;
}

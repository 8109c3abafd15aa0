/*
 * clients/tools/common.h — what shimmy-pub and shimmy-sub share: the
 * mosquitto_pub/sub-style connection options, building the URI and
 * options from them, connecting, and the exit codes.
 * Thread model: main thread of a command-line tool.
 */
#ifndef SHIMMY_CLIENTS_TOOLS_COMMON_H
#define SHIMMY_CLIENTS_TOOLS_COMMON_H

#include <stdbool.h>
#include <stdint.h>

#include "shimmy.h"

/* Exit codes, as mosquitto's tools use them. */
enum {
	TOOL_EXIT_OK = 0,
	TOOL_EXIT_ERR = 1,      /* usage, connection or protocol error */
	TOOL_EXIT_TIMEOUT = 27, /* -W elapsed (ETIMEDOUT, like mosquitto_sub) */
};

typedef struct tool_cfg {
	const char *prog;
	const char *host;
	int port;
	const char *unix_path;
	const char *uri;       /* --uri overrides host/port/unix */
	int version;
	const char *id;
	const char *id_prefix;
	int keepalive;
	const char *user;
	const char *pw;
	int qos;
	bool debug;
	bool require_shm;
	bool no_shm;
	bool no_clean;
	bool reconnect;      /* --reconnect: SHIMMY_OPT_RECONNECT */
	bool quiet;
	uint32_t session_expiry;
	const char *will_topic;
	const char *will_payload;
	int will_qos;
	bool will_retain;
	shimmy_props *pub_props; /* -D publish ... */
} tool_cfg;

void tool_cfg_init(tool_cfg *t, const char *prog);
void tool_cfg_fini(tool_cfg *t);

/*
 * Tries argv[*i] as a common option, consuming its arguments. Returns 1
 * when it was one (and *i advanced past it), 0 when it is not a common
 * option, -1 after printing an error.
 */
int tool_common_opt(tool_cfg *t, int argc, char **argv, int *i);

/* Help text for the common options. */
void tool_common_usage(void);

/* Creates and connects a client; on failure prints why and returns NULL.
 * extra_flags are ORed into the option flags. */
shimmy_client *tool_connect(tool_cfg *t, unsigned extra_flags);

/* Debug line to stderr when -d was given. */
void tool_debug(const tool_cfg *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif

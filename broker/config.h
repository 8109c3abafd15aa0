/*
 * broker/config.h — shimmyd's configuration: the mosquitto.conf dialect plus
 * shimmy_* keys, and the command line (-c FILE, -p PORT, -v).
 *
 * config_load() parses into a broker_cfg the caller provides. An unknown key
 * is a warning; an invalid value is an error naming file and line.
 * Thread model: main thread, at start-up and on SIGHUP.
 */
#ifndef SHIMMY_BROKER_CONFIG_H
#define SHIMMY_BROKER_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "broker/log.h"

#define CFG_MAX_LISTENERS 16
#define CFG_MAX_THREADS 64 /* shimmy_threads upper bound */

typedef enum cfg_listener_kind {
	CFG_LISTENER_TCP = 1,  /* port, optional bind address */
	CFG_LISTENER_UNIX = 2, /* "listener 0 /path.sock" */
} cfg_listener_kind;

/* socket_domain of a TCP listener. */
typedef enum cfg_family {
	CFG_FAMILY_ANY = 0, /* IPv4 and IPv6 */
	CFG_FAMILY_IPV4 = 4,
	CFG_FAMILY_IPV6 = 6,
} cfg_family;

/* What a listener speaks (`protocol`). */
typedef enum cfg_protocol {
	CFG_PROTOCOL_MQTT = 0,       /* MQTT on the socket (default) */
	CFG_PROTOCOL_WEBSOCKETS = 1, /* MQTT over WebSockets (TCP only) */
} cfg_protocol;

/* cfg_listener.flags bits. */
enum {
	/* Built-in default: failing to open it is a warning, not fatal. */
	CFG_LISTENER_OPTIONAL = 1 << 0,
};

typedef struct cfg_listener {
	cfg_listener_kind kind;
	cfg_family family;     /* TCP: socket_domain */
	cfg_protocol protocol; /* TCP: protocol */
	unsigned flags;        /* CFG_LISTENER_* */
	uint16_t port;
	char address[256];     /* TCP: bind address, "" = all (v4 and v6) */
	char path[108];        /* UNIX: socket path */
	uint32_t socket_mode;  /* UNIX: permissions, default 0666 */
	int max_connections;   /* <= 0 = unlimited (mosquitto: -1) */
} cfg_listener;

typedef struct broker_cfg {
	cfg_listener listeners[CFG_MAX_LISTENERS];
	int listener_count;

	bool allow_anonymous;        /* default true when no listener given... see README */
	uint32_t max_inflight_messages;  /* 0 = unlimited; default 20 */
	uint32_t max_queued_messages;    /* 0 = unlimited; default 1000 */
	uint64_t max_queued_bytes;       /* 0 = unlimited; default 0 */
	uint32_t max_packet_size;        /* 0 = protocol max; default 0 */
	uint16_t max_keepalive;          /* seconds; default 65535 */
	bool retain_available;           /* default true */
	uint32_t sys_interval;           /* seconds; 0 disables $SYS; default 10 */
	uint32_t persistent_client_expiration_s; /* 0 = never; default 0 */
	uint32_t max_connections;        /* 0 = unlimited */
	bool upgrade_outgoing_qos;       /* default false */
	uint32_t message_size_limit;     /* 0 = none (mosquitto key) */
	bool queue_qos0_messages;        /* default false, as mosquitto */

	uint32_t busy_poll_us;           /* shimmy_busy_poll_us; 0 = always sleep */
	uint32_t adaptive_poll_us;       /* shimmy_adaptive_poll_us; 0 = off; default 50 */
	uint32_t threads;                /* shimmy_threads; 0 = one per online core (default) */

	unsigned log_mask;               /* log_type bits; default LOG_DEFAULT */
	bool log_timestamp;              /* default true */
	bool verbose;                    /* -v: all log types */
	int log_fd;                      /* log_dest: 2 stderr (default), 1 stdout, -1 none */

	bool help;                       /* -h given: print usage, exit 0 */
	uint16_t cmd_ports[CFG_MAX_LISTENERS]; /* -p PORT, in order */
	int cmd_port_count;

	/* Shared-memory fast path (docs/shm-protocol.md). */
	bool shm_enabled;                /* shimmy_shm; default true */
	uint32_t shm_reader_timeout_ms;  /* shimmy_shm_reader_timeout; a reliable
					  * reader stuck this long is cut loose;
					  * default 5000 */
	uint32_t shm_spin_us;            /* shimmy_shm_spin_us: readers spin this
					  * long before sleeping; default 50 */
	uint64_t shm_max_bytes;          /* shimmy_shm_max_bytes: segment memory
					  * per client; default 256 MiB */

	char scram_file[4096];           /* auth_scram_file; "" = no SCRAM */
	char acl_file[4096];             /* acl_file; "" = no access control */
	char config_file[4096];          /* "" when none */
} broker_cfg;

/* Fills cfg with the built-in defaults. No listeners are set: the caller
 * adds the default ones (config_add_default_listeners) when none are given. */
void config_defaults(broker_cfg *cfg);

/* Adds TCP 1883 on all addresses (IPv4 and IPv6) and the Unix socket
 * /run/shimmy/shimmy.sock. */
void config_add_default_listeners(broker_cfg *cfg);

/*
 * Parses argv (-c FILE, -p PORT (repeatable), -v, -h) and the file, if any,
 * into cfg. Diagnostics go to `log` ("file:line: ..."). Returns 0, or a
 * negative error after logging why; the caller exits non-zero.
 */
int config_from_args(broker_cfg *cfg, int argc, char **argv,
		     const shimmy_log *log);

/* Parses one file into cfg (already holding defaults). Same return rules. */
int config_load(broker_cfg *cfg, const char *path, const shimmy_log *log);

/* Writes the -h text to fd. */
void config_usage(int fd);

/*
 * SIGHUP: re-parses argv and the file into a fresh cfg; on success copies
 * every setting except the listeners (which stay bound) into *live and
 * returns 0. On error *live is untouched and a negative error is returned.
 */
int config_reload(broker_cfg *live, int argc, char **argv,
		  const shimmy_log *log);

/* Applies cfg's log settings (log_type, log_dest, log_timestamp, -v) to l. */
void config_apply_log(const broker_cfg *cfg, shimmy_log *l);

/*
 * Parses a mosquitto duration: N followed by h, d, w, m (30 days) or y
 * (365 days), e.g. "2d". Returns 0 and sets *out_s, or -EINVAL/-ERANGE.
 */
int config_parse_duration(const char *s, uint32_t *out_s);

#endif

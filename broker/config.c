/*
 * broker/config.c — see config.h. The mosquitto.conf dialect: one
 * "key value..." per line, '#' comments, include_dir of *.conf files in
 * sorted order. Diagnostics are "FILE:LINE: error: ..." (fatal) or
 * "FILE:LINE: warning: ..." (the line is skipped).
 * Thread model: main thread only.
 */
#include "broker/config.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CFG_DEFAULT_PORT 1883
#define CFG_DEFAULT_SOCKET "/run/shimmy/shimmy.sock"
#define CFG_DEFAULT_SOCKET_MODE 0666
#define CFG_MAX_ARGS 8
#define CFG_MAX_INCLUDE_DEPTH 8
#ifndef SHIMMY_VERSION
#define SHIMMY_VERSION "0.1.0"
#endif
#define CFG_MQTT_MAX_PACKET 268435455u /* largest Remaining Length */

/* Where a line came from, for diagnostics. */
typedef struct cfg_pos {
	const char *file;
	int line;
	int depth; /* include_dir nesting */
	bool *log_type_seen; /* the first log_type replaces the default */
} cfg_pos;

static int load_file(broker_cfg *cfg, const char *path, const shimmy_log *log,
		     int depth, bool *log_type_seen);

void config_defaults(broker_cfg *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	/* Shimmy has no password file support yet, so anonymous is the only
	 * way in; mosquitto's no-config local mode also allows it. */
	cfg->allow_anonymous = true;
	cfg->max_inflight_messages = 20;
	cfg->max_queued_messages = 1000;
	cfg->max_queued_bytes = 0;
	cfg->max_packet_size = 0;
	cfg->max_keepalive = 65535;
	cfg->retain_available = true;
	cfg->sys_interval = 10;
	cfg->persistent_client_expiration_s = 0;
	cfg->max_connections = 0;
	cfg->upgrade_outgoing_qos = false;
	cfg->message_size_limit = 0;
	cfg->queue_qos0_messages = false;
	cfg->adaptive_poll_us = 50;
	cfg->log_mask = LOG_DEFAULT;
	cfg->log_timestamp = true;
	cfg->verbose = false;
	cfg->log_fd = 2;
	cfg->shm_enabled = true;
	cfg->shm_reader_timeout_ms = 5000;
	cfg->shm_spin_us = 50;
	cfg->shm_max_bytes = (uint64_t)256 << 20;
}

static cfg_listener *listener_add(broker_cfg *cfg)
{
	if (cfg->listener_count >= CFG_MAX_LISTENERS)
		return NULL;
	cfg_listener *l = &cfg->listeners[cfg->listener_count++];
	memset(l, 0, sizeof(*l));
	l->socket_mode = CFG_DEFAULT_SOCKET_MODE;
	l->max_connections = -1;
	l->family = CFG_FAMILY_ANY;
	return l;
}

void config_add_default_listeners(broker_cfg *cfg)
{
	cfg_listener *l = listener_add(cfg);
	if (l) {
		l->kind = CFG_LISTENER_TCP;
		l->port = CFG_DEFAULT_PORT;
	}
	l = listener_add(cfg);
	if (l) {
		l->kind = CFG_LISTENER_UNIX;
		l->flags = CFG_LISTENER_OPTIONAL;
		snprintf(l->path, sizeof(l->path), "%s", CFG_DEFAULT_SOCKET);
	}
}

/* ---- value parsers: 0 or -EINVAL / -ERANGE; never log ---- */

static int parse_i64(const char *s, int64_t min, int64_t max, int64_t *out)
{
	char *end;
	errno = 0;
	long long v = strtoll(s, &end, 10);
	if (end == s || *end != '\0')
		return -EINVAL;
	if (errno == ERANGE || v < min || v > max)
		return -ERANGE;
	*out = v;
	return 0;
}

static int parse_u64(const char *s, uint64_t *out)
{
	char *end;
	if (*s == '-' || *s == '+')
		return -EINVAL;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (end == s || *end != '\0')
		return -EINVAL;
	if (errno == ERANGE)
		return -ERANGE;
	*out = v;
	return 0;
}

static int parse_bool(const char *s, bool *out)
{
	if (strcmp(s, "true") == 0) {
		*out = true;
		return 0;
	}
	if (strcmp(s, "false") == 0) {
		*out = false;
		return 0;
	}
	return -EINVAL;
}

int config_parse_duration(const char *s, uint32_t *out_s)
{
	size_t n = strlen(s);
	if (n < 2)
		return -EINVAL;
	uint64_t unit;
	switch (s[n - 1]) {
	case 'h': unit = 3600; break;
	case 'd': unit = 86400; break;
	case 'w': unit = 7 * 86400; break;
	case 'm': unit = 30 * 86400; break;
	case 'y': unit = 365 * 86400; break;
	default: return -EINVAL;
	}
	uint64_t v = 0;
	for (size_t i = 0; i + 1 < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -EINVAL;
		v = v * 10 + (uint64_t)(s[i] - '0');
		if (v > UINT32_MAX)
			return -ERANGE;
	}
	if (v * unit > UINT32_MAX)
		return -ERANGE;
	*out_s = (uint32_t)(v * unit);
	return 0;
}

/* ---- diagnostics ---- */

__attribute__((format(printf, 3, 4))) static int
cfg_error(const shimmy_log *log, const cfg_pos *pos, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	log_write(log, LOG_ERR, "%s:%d: error: %s", pos->file, pos->line, msg);
	return -EINVAL;
}

__attribute__((format(printf, 3, 4))) static void
cfg_warn(const shimmy_log *log, const cfg_pos *pos, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	log_write(log, LOG_WARN, "%s:%d: warning: %s", pos->file, pos->line,
		  msg);
}

/* ---- keys ---- */

typedef struct cfg_line {
	const char *key;
	char *args[CFG_MAX_ARGS];
	int argc;
} cfg_line;

static int want_args(const shimmy_log *log, const cfg_pos *pos,
		     const cfg_line *ln, int min, int max)
{
	if (ln->argc < min)
		return cfg_error(log, pos, "missing argument for '%s'",
				 ln->key);
	if (ln->argc > max)
		return cfg_error(log, pos, "too many arguments for '%s'",
				 ln->key);
	return 0;
}

/* Parses an integer argument in [min, max] with a diagnostic. */
static int arg_int(const shimmy_log *log, const cfg_pos *pos,
		   const cfg_line *ln, int64_t min, int64_t max, int64_t *out)
{
	int rc = want_args(log, pos, ln, 1, 1);
	if (rc < 0)
		return rc;
	rc = parse_i64(ln->args[0], min, max, out);
	if (rc == -EINVAL)
		return cfg_error(log, pos, "'%s' needs a number, not '%s'",
				 ln->key, ln->args[0]);
	if (rc < 0)
		return cfg_error(log, pos,
				 "'%s' value %s out of range (%" PRId64
				 "..%" PRId64 ")",
				 ln->key, ln->args[0], min, max);
	return 0;
}

static int arg_bool(const shimmy_log *log, const cfg_pos *pos,
		    const cfg_line *ln, bool *out)
{
	int rc = want_args(log, pos, ln, 1, 1);
	if (rc < 0)
		return rc;
	if (parse_bool(ln->args[0], out) < 0)
		return cfg_error(log, pos,
				 "'%s' needs true or false, not '%s'", ln->key,
				 ln->args[0]);
	return 0;
}

static int key_listener(broker_cfg *cfg, const shimmy_log *log,
			const cfg_pos *pos, const cfg_line *ln)
{
	int64_t port;
	int rc = want_args(log, pos, ln, 1, 2);
	if (rc < 0)
		return rc;
	rc = parse_i64(ln->args[0], 0, 65535, &port);
	if (rc < 0)
		return cfg_error(log, pos, "invalid listener port '%s'",
				 ln->args[0]);
	const char *addr = ln->argc > 1 ? ln->args[1] : "";
	if (port == 0 && addr[0] == '\0')
		return cfg_error(log, pos,
				 "listener port 0 needs a unix socket path");
	cfg_listener *l = listener_add(cfg);
	if (!l)
		return cfg_error(log, pos, "too many listeners (max %d)",
				 CFG_MAX_LISTENERS);
	if (port == 0) {
		l->kind = CFG_LISTENER_UNIX;
		if (strlen(addr) >= sizeof(l->path)) {
			cfg->listener_count--;
			return cfg_error(log, pos,
					 "unix socket path too long (max %zu)",
					 sizeof(l->path) - 1);
		}
		snprintf(l->path, sizeof(l->path), "%s", addr);
	} else {
		l->kind = CFG_LISTENER_TCP;
		l->port = (uint16_t)port;
		if (strlen(addr) >= sizeof(l->address)) {
			cfg->listener_count--;
			return cfg_error(log, pos, "listener address too long");
		}
		snprintf(l->address, sizeof(l->address), "%s", addr);
	}
	return 0;
}

static cfg_listener *last_listener(broker_cfg *cfg)
{
	return cfg->listener_count ? &cfg->listeners[cfg->listener_count - 1]
				   : NULL;
}

static int key_include_dir(broker_cfg *cfg, const shimmy_log *log,
			   const cfg_pos *pos, const cfg_line *ln)
{
	int rc = want_args(log, pos, ln, 1, 1);
	if (rc < 0)
		return rc;
	if (pos->depth >= CFG_MAX_INCLUDE_DEPTH)
		return cfg_error(log, pos, "include_dir nested too deeply");
	struct dirent **names;
	int n = scandir(ln->args[0], &names, NULL, alphasort);
	if (n < 0)
		return cfg_error(log, pos, "cannot read include_dir '%s': %s",
				 ln->args[0], strerror(errno));
	rc = 0;
	for (int i = 0; i < n; i++) {
		const char *name = names[i]->d_name;
		size_t len = strlen(name);
		if (rc == 0 && len > 5 && strcmp(name + len - 5, ".conf") == 0) {
			char path[PATH_MAX];
			int w = snprintf(path, sizeof(path), "%s/%s",
					 ln->args[0], name);
			if (w < 0 || (size_t)w >= sizeof(path))
				rc = cfg_error(log, pos, "path too long: %s/%s",
					       ln->args[0], name);
			else
				rc = load_file(cfg, path, log, pos->depth + 1,
					       pos->log_type_seen);
		}
		free(names[i]);
	}
	free(names);
	return rc;
}

/* Keys mosquitto has that shimmy accepts but does not act on yet. */
static const char *const unsupported_keys[] = {
	"persistence", "persistence_location", "persistence_file",
	"autosave_interval", "autosave_on_changes", "user", "pid_file",
};

/* mosquitto's TLS keys. Ignoring one would leave a listener its owner
 * believes encrypted in plain text: refused until TLS is built. */
static const char *const tls_keys[] = {
	"cafile", "capath", "certfile", "keyfile", "crlfile", "ciphers",
	"ciphers_tls1.3", "dhparamfile", "require_certificate",
	"tls_version", "tls_engine", "tls_keyform", "tls_engine_kpass_sha1",
	"use_identity_as_username", "use_subject_as_username", "psk_hint",
	"psk_file",
};

static bool key_in(const char *k, const char *const *keys, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(k, keys[i]) == 0)
			return true;
	return false;
}

static int apply_line(broker_cfg *cfg, const shimmy_log *log,
		      const cfg_pos *pos, const cfg_line *ln)
{
	const char *k = ln->key;
	int64_t v;
	int rc;

	if (strcmp(k, "listener") == 0)
		return key_listener(cfg, log, pos, ln);
	if (strcmp(k, "port") == 0) {
		/* Old mosquitto spelling of a listener on all addresses. */
		return key_listener(cfg, log, pos, ln);
	}
	if (strcmp(k, "socket_domain") == 0) {
		if ((rc = want_args(log, pos, ln, 1, 1)) < 0)
			return rc;
		cfg_listener *l = last_listener(cfg);
		if (!l || l->kind != CFG_LISTENER_TCP)
			return cfg_error(log, pos,
					 "socket_domain must follow a TCP listener");
		if (strcmp(ln->args[0], "ipv4") == 0)
			l->family = CFG_FAMILY_IPV4;
		else if (strcmp(ln->args[0], "ipv6") == 0)
			l->family = CFG_FAMILY_IPV6;
		else
			return cfg_error(log, pos,
					 "socket_domain must be ipv4 or ipv6, not '%s'",
					 ln->args[0]);
		return 0;
	}
	if (strcmp(k, "protocol") == 0) {
		if ((rc = want_args(log, pos, ln, 1, 1)) < 0)
			return rc;
		cfg_listener *l = last_listener(cfg);
		if (!l)
			return cfg_error(log, pos,
					 "protocol must follow a listener");
		if (strcmp(ln->args[0], "mqtt") == 0) {
			l->protocol = CFG_PROTOCOL_MQTT;
		} else if (strcmp(ln->args[0], "websockets") == 0) {
			if (l->kind != CFG_LISTENER_TCP)
				return cfg_error(log, pos,
						 "protocol websockets needs a TCP listener, not a unix socket");
			l->protocol = CFG_PROTOCOL_WEBSOCKETS;
		} else {
			return cfg_error(log, pos,
					 "protocol must be mqtt or websockets, not '%s'",
					 ln->args[0]);
		}
		return 0;
	}
	if (strcmp(k, "shimmy_socket_mode") == 0) {
		if ((rc = want_args(log, pos, ln, 1, 1)) < 0)
			return rc;
		cfg_listener *l = last_listener(cfg);
		if (!l || l->kind != CFG_LISTENER_UNIX)
			return cfg_error(log, pos,
					 "shimmy_socket_mode must follow a unix listener");
		char *end;
		errno = 0;
		unsigned long m = strtoul(ln->args[0], &end, 8);
		if (end == ln->args[0] || *end || errno || m > 07777)
			return cfg_error(log, pos,
					 "shimmy_socket_mode needs an octal mode, not '%s'",
					 ln->args[0]);
		l->socket_mode = (uint32_t)m;
		return 0;
	}
	if (strcmp(k, "max_connections") == 0) {
		if ((rc = arg_int(log, pos, ln, -1, INT_MAX, &v)) < 0)
			return rc;
		/* mosquitto: a listener setting; before any listener it
		 * is the default listener's, i.e. global for us. */
		cfg_listener *l = last_listener(cfg);
		if (l)
			l->max_connections = v <= 0 ? -1 : (int)v;
		else
			cfg->max_connections = v <= 0 ? 0 : (uint32_t)v;
		return 0;
	}
	if (strcmp(k, "allow_anonymous") == 0)
		return arg_bool(log, pos, ln, &cfg->allow_anonymous);
	if (strcmp(k, "shimmy_shm") == 0)
		return arg_bool(log, pos, ln, &cfg->shm_enabled);
	if (strcmp(k, "shimmy_shm_reader_timeout") == 0) {
		if ((rc = arg_int(log, pos, ln, 1, UINT32_MAX, &v)) < 0)
			return rc;
		cfg->shm_reader_timeout_ms = (uint32_t)v;
		return 0;
	}
	if (strcmp(k, "shimmy_shm_spin_us") == 0) {
		if ((rc = arg_int(log, pos, ln, 0, 1000000, &v)) < 0)
			return rc;
		cfg->shm_spin_us = (uint32_t)v;
		return 0;
	}
	if (strcmp(k, "shimmy_shm_max_bytes") == 0) {
		if ((rc = arg_int(log, pos, ln, 1 << 20, INT64_MAX, &v)) < 0)
			return rc;
		cfg->shm_max_bytes = (uint64_t)v;
		return 0;
	}
	if (strcmp(k, "retain_available") == 0)
		return arg_bool(log, pos, ln, &cfg->retain_available);
	if (strcmp(k, "upgrade_outgoing_qos") == 0)
		return arg_bool(log, pos, ln, &cfg->upgrade_outgoing_qos);
	if (strcmp(k, "queue_qos0_messages") == 0)
		return arg_bool(log, pos, ln, &cfg->queue_qos0_messages);
	if (strcmp(k, "log_timestamp") == 0)
		return arg_bool(log, pos, ln, &cfg->log_timestamp);
	if (strcmp(k, "shimmy_busy_poll_us") == 0) {
		if ((rc = arg_int(log, pos, ln, 0, 1000000, &v)) < 0)
			return rc;
		cfg->busy_poll_us = (uint32_t)v;
		return 0;
	}
	if (strcmp(k, "shimmy_adaptive_poll_us") == 0) {
		if ((rc = arg_int(log, pos, ln, 0, 10000, &v)) < 0)
			return rc;
		cfg->adaptive_poll_us = (uint32_t)v;
		return 0;
	}
	if (strcmp(k, "shimmy_threads") == 0) {
		if ((rc = arg_int(log, pos, ln, 0, CFG_MAX_THREADS, &v)) < 0)
			return rc;
		cfg->threads = (uint32_t)v;
		return 0;
	}
	if (strcmp(k, "max_inflight_messages") == 0) {
		if ((rc = arg_int(log, pos, ln, 0, 65535, &v)) < 0)
			return rc;
		cfg->max_inflight_messages = (uint32_t)v;
		return 0;
	}
	if (strcmp(k, "max_queued_messages") == 0) {
		if ((rc = arg_int(log, pos, ln, 0, UINT32_MAX, &v)) < 0)
			return rc;
		cfg->max_queued_messages = (uint32_t)v;
		return 0;
	}
	if (strcmp(k, "max_queued_bytes") == 0) {
		if ((rc = want_args(log, pos, ln, 1, 1)) < 0)
			return rc;
		rc = parse_u64(ln->args[0], &cfg->max_queued_bytes);
		if (rc == -EINVAL)
			return cfg_error(log, pos,
					 "'%s' needs a number, not '%s'", k,
					 ln->args[0]);
		if (rc < 0)
			return cfg_error(log, pos, "'%s' value %s out of range",
					 k, ln->args[0]);
		return 0;
	}
	if (strcmp(k, "max_packet_size") == 0) {
		if ((rc = arg_int(log, pos, ln, 0, CFG_MQTT_MAX_PACKET, &v)) < 0)
			return rc;
		/* mosquitto rejects sizes too small for any CONNECT. */
		if (v != 0 && v < 20)
			return cfg_error(log, pos,
					 "max_packet_size must be 0 or at least 20");
		cfg->max_packet_size = (uint32_t)v;
		return 0;
	}
	if (strcmp(k, "message_size_limit") == 0) {
		if ((rc = arg_int(log, pos, ln, 0, CFG_MQTT_MAX_PACKET, &v)) < 0)
			return rc;
		cfg->message_size_limit = (uint32_t)v;
		return 0;
	}
	if (strcmp(k, "max_keepalive") == 0) {
		if ((rc = arg_int(log, pos, ln, 0, 65535, &v)) < 0)
			return rc;
		cfg->max_keepalive = (uint16_t)v;
		return 0;
	}
	if (strcmp(k, "sys_interval") == 0) {
		if ((rc = arg_int(log, pos, ln, 0, 65535, &v)) < 0)
			return rc;
		cfg->sys_interval = (uint32_t)v;
		return 0;
	}
	if (strcmp(k, "persistent_client_expiration") == 0) {
		if ((rc = want_args(log, pos, ln, 1, 1)) < 0)
			return rc;
		if (config_parse_duration(ln->args[0],
					  &cfg->persistent_client_expiration_s) < 0)
			return cfg_error(log, pos,
					 "invalid persistent_client_expiration "
					 "duration '%s' (N followed by h, d, w, m or y)",
					 ln->args[0]);
		return 0;
	}
	if (strcmp(k, "log_type") == 0) {
		if ((rc = want_args(log, pos, ln, 1, 1)) < 0)
			return rc;
		int bits = log_type_parse(ln->args[0]);
		if (bits < 0)
			return cfg_error(log, pos, "unknown log_type '%s'",
					 ln->args[0]);
		/* The first log_type replaces the default set. */
		if (!*pos->log_type_seen)
			cfg->log_mask = 0;
		*pos->log_type_seen = true;
		cfg->log_mask |= (unsigned)bits;
		return 0;
	}
	if (strcmp(k, "log_dest") == 0) {
		if ((rc = want_args(log, pos, ln, 1, 2)) < 0)
			return rc;
		if (strcmp(ln->args[0], "stderr") == 0)
			cfg->log_fd = 2;
		else if (strcmp(ln->args[0], "stdout") == 0)
			cfg->log_fd = 1;
		else if (strcmp(ln->args[0], "none") == 0)
			cfg->log_fd = -1;
		else
			cfg_warn(log, pos,
				 "log_dest %s is not supported yet, ignored",
				 ln->args[0]);
		return 0;
	}
	if (strcmp(k, "include_dir") == 0)
		return key_include_dir(cfg, log, pos, ln);
	if (strcmp(k, "auth_scram_file") == 0) {
		if ((rc = want_args(log, pos, ln, 1, 1)) < 0)
			return rc;
		if (strlen(ln->args[0]) >= sizeof(cfg->scram_file))
			return cfg_error(log, pos, "auth_scram_file path too long");
		strcpy(cfg->scram_file, ln->args[0]);
		return 0;
	}
	if (strcmp(k, "acl_file") == 0) {
		if ((rc = want_args(log, pos, ln, 1, 1)) < 0)
			return rc;
		if (strlen(ln->args[0]) >= sizeof(cfg->acl_file))
			return cfg_error(log, pos, "acl_file path too long");
		strcpy(cfg->acl_file, ln->args[0]);
		return 0;
	}
	if (strcmp(k, "per_listener_settings") == 0) {
		bool b;
		if ((rc = arg_bool(log, pos, ln, &b)) < 0)
			return rc;
		if (b)
			cfg_warn(log, pos,
				 "per_listener_settings is ignored: settings are global");
		return 0;
	}
	if (key_in(k, tls_keys, sizeof(tls_keys) / sizeof(tls_keys[0])))
		return cfg_error(log, pos,
				 "'%s': TLS is not supported yet (a listener would be plain text)",
				 k);
	if (key_in(k, unsupported_keys,
		   sizeof(unsupported_keys) / sizeof(unsupported_keys[0]))) {
		cfg_warn(log, pos, "'%s' is not supported yet, ignored", k);
		return 0;
	}
	cfg_warn(log, pos, "unknown configuration key '%s', ignored", k);
	return 0;
}

/* Splits line in place into key and args. Returns 0 for a blank line. */
static int split_line(char *line, cfg_line *ln)
{
	int n = 0;
	char *save = NULL;
	ln->key = NULL;
	ln->argc = 0;
	for (char *t = strtok_r(line, " \t\r\n", &save); t;
	     t = strtok_r(NULL, " \t\r\n", &save)) {
		if (n == 0)
			ln->key = t;
		else if (ln->argc < CFG_MAX_ARGS)
			ln->args[ln->argc++] = t;
		else
			return -E2BIG;
		n++;
	}
	return n;
}

static int load_file(broker_cfg *cfg, const char *path, const shimmy_log *log,
		     int depth, bool *log_type_seen)
{
	cfg_pos pos = { .file = path, .line = 0, .depth = depth,
			.log_type_seen = log_type_seen };
	FILE *f = fopen(path, "r");
	if (!f) {
		log_write(log, LOG_ERR, "%s:0: error: cannot open config file: %s",
			  path, strerror(errno));
		return -EINVAL;
	}
	char *line = NULL;
	size_t cap = 0;
	int rc = 0;
	while (getline(&line, &cap, f) >= 0) {
		pos.line++;
		/* Only a '#' that starts a line is a comment, as mosquitto:
		 * values such as paths may contain '#'. */
		char *p = line;
		while (*p == ' ' || *p == '\t')
			p++;
		if (*p == '#')
			continue;
		cfg_line ln;
		int n = split_line(p, &ln);
		if (n == 0)
			continue;
		if (n < 0) {
			rc = cfg_error(log, &pos, "too many arguments");
			break;
		}
		rc = apply_line(cfg, log, &pos, &ln);
		if (rc < 0)
			break;
	}
	if (rc == 0 && ferror(f))
		rc = cfg_error(log, &pos, "read error");
	free(line);
	fclose(f);
	return rc;
}

int config_load(broker_cfg *cfg, const char *path, const shimmy_log *log)
{
	bool log_type_seen = false;
	return load_file(cfg, path, log, 0, &log_type_seen);
}

void config_usage(int fd)
{
	static const char text[] =
		"shimmy version " SHIMMY_VERSION "\n\n"
		"shimmyd is an MQTT v5.0/v3.1.1/v3.1 broker with a shared-memory fast path.\n\n"
		"Usage: shimmyd [-c config_file] [-p port] [-v] [-h]\n\n"
		" -c : specify the broker config file.\n"
		" -p : listen on this port instead of the configured listeners.\n"
		"      May be given up to 16 times.\n"
		" -v : verbose mode - enable all logging types.\n"
		" -h : display this help.\n";
	ssize_t w = write(fd, text, sizeof(text) - 1);
	(void)w;
}

int config_from_args(broker_cfg *cfg, int argc, char **argv,
		     const shimmy_log *log)
{
	config_defaults(cfg);
	const char *file = NULL;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
			cfg->help = true;
			return 0;
		} else if (strcmp(a, "-v") == 0 || strcmp(a, "--verbose") == 0) {
			cfg->verbose = true;
		} else if (strcmp(a, "-c") == 0 || strcmp(a, "--config-file") == 0) {
			if (i + 1 >= argc) {
				log_write(log, LOG_ERR, "Error: -c argument given, but no config file specified.");
				return -EINVAL;
			}
			file = argv[++i];
		} else if (strcmp(a, "-p") == 0 || strcmp(a, "--port") == 0) {
			int64_t port;
			if (i + 1 >= argc ||
			    parse_i64(argv[i + 1], 1, 65535, &port) < 0) {
				log_write(log, LOG_ERR, "Error: Invalid port specified (%s).",
					  i + 1 < argc ? argv[i + 1] : "none");
				return -EINVAL;
			}
			i++;
			if (cfg->cmd_port_count >= CFG_MAX_LISTENERS) {
				log_write(log, LOG_ERR, "Error: Only %d ports can be specified on the command line.",
					  CFG_MAX_LISTENERS);
				return -EINVAL;
			}
			cfg->cmd_ports[cfg->cmd_port_count++] = (uint16_t)port;
		} else {
			log_write(log, LOG_ERR, "Error: Unknown option '%s'.", a);
			config_usage(2);
			return -EINVAL;
		}
	}
	if (file) {
		if (strlen(file) >= sizeof(cfg->config_file)) {
			log_write(log, LOG_ERR, "Error: config file path too long.");
			return -EINVAL;
		}
		snprintf(cfg->config_file, sizeof(cfg->config_file), "%s", file);
		int rc = config_load(cfg, file, log);
		if (rc < 0)
			return rc;
	}
	/* -p replaces the configured listeners: listen on exactly those
	 * ports, on all addresses. */
	if (cfg->cmd_port_count > 0) {
		cfg->listener_count = 0;
		for (int i = 0; i < cfg->cmd_port_count; i++) {
			cfg_listener *l = listener_add(cfg);
			l->kind = CFG_LISTENER_TCP;
			l->port = cfg->cmd_ports[i];
		}
	}
	if (cfg->listener_count == 0)
		config_add_default_listeners(cfg);
	if (cfg->verbose)
		cfg->log_mask = LOG_ALL;
	return 0;
}

int config_reload(broker_cfg *live, int argc, char **argv,
		  const shimmy_log *log)
{
	broker_cfg *fresh = malloc(sizeof(*fresh));
	if (!fresh)
		return -ENOMEM;
	int rc = config_from_args(fresh, argc, argv, log);
	if (rc == 0) {
		/* Listeners stay as bound at start-up. */
		memcpy(fresh->listeners, live->listeners, sizeof(live->listeners));
		fresh->listener_count = live->listener_count;
		memcpy(fresh->cmd_ports, live->cmd_ports, sizeof(live->cmd_ports));
		fresh->cmd_port_count = live->cmd_port_count;
		*live = *fresh;
	}
	free(fresh);
	return rc;
}

void config_apply_log(const broker_cfg *cfg, shimmy_log *l)
{
	l->mask = cfg->verbose ? LOG_ALL : cfg->log_mask;
	l->timestamps = cfg->log_timestamp ? 1 : 0;
	l->fd = cfg->log_fd;
}

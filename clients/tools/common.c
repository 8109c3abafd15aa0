/*
 * clients/tools/common.c — shared option handling of shimmy-pub/-sub.
 */
#include "clients/tools/common.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void tool_cfg_init(tool_cfg *t, const char *prog)
{
	memset(t, 0, sizeof(*t));
	t->prog = prog;
	t->host = "localhost";
	t->port = 1883;
	t->version = SHIMMY_MQTT_311; /* as mosquitto's tools */
	t->keepalive = 60;
}

void tool_cfg_fini(tool_cfg *t)
{
	shimmy_props_destroy(t->pub_props);
}

void tool_debug(const tool_cfg *t, const char *fmt, ...)
{
	va_list ap;

	if (!t->debug)
		return;
	fprintf(stderr, "%s: ", t->prog);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

void tool_common_usage(void)
{
	fputs(
	" -h HOST        broker host (default localhost)\n"
	" -p PORT        broker port (default 1883)\n"
	" --unix PATH    connect over a Unix socket (offers the shm extension, MQTT 5)\n"
	" --uri URI      tcp://host:port or unix:///path (overrides -h/-p/--unix)\n"
	" -V VERSION     311 | 5 | mqttv311 | mqttv5 (default 311)\n"
	" -i ID          client id;  -I PREFIX  client id prefix\n"
	" -k SECONDS     keepalive (default 60)\n"
	" -u USER / -P PASSWORD\n"
	" -q QOS         0, 1 or 2\n"
	" -c             clean session/start off (resume a session)\n"
	" -x SECONDS     session expiry interval (MQTT 5)\n"
	" -d             debug output on stderr\n"
	" --require-shm  fail unless the broker negotiated the shm extension\n"
	" --no-shm       never offer the shm extension\n"
	" --reconnect    reconnect (with backoff) and resubscribe after a broker loss\n"
	" --will-topic T --will-payload P --will-qos Q --will-retain\n"
	" -D publish PROPERTY VALUE...   MQTT 5: user-property K V, content-type,\n"
	"                message-expiry-interval, response-topic, correlation-data,\n"
	"                payload-format-indicator\n", stderr);
}

static int need_arg(tool_cfg *t, int argc, char **argv, int i, int n)
{
	if (i + n >= argc) {
		fprintf(stderr, "Error: %s argument given but no value specified.\n", argv[i]);
		return -1;
	}
	return 0;
}

static int parse_int(tool_cfg *t, const char *opt, const char *s, long lo, long hi, long *out)
{
	char *end;
	long v = strtol(s, &end, 10);

	if (!*s || *end || v < lo || v > hi) {
		fprintf(stderr, "Error: invalid value '%s' for %s.\n", s, opt);
		return -1;
	}
	*out = v;
	return 0;
}

static int prop_opt(tool_cfg *t, int argc, char **argv, int *i)
{
	const char *cmd, *name;
	long v;
	int rc;

	if (need_arg(t, argc, argv, *i, 3))
		return -1;
	cmd = argv[*i + 1];
	name = argv[*i + 2];
	if (strcmp(cmd, "publish") != 0) {
		/* Properties of other packets are accepted and ignored. */
		*i += strcmp(name, "user-property") == 0 && *i + 4 < argc ? 5 : 4;
		return 1;
	}
	if (!t->pub_props && !(t->pub_props = shimmy_props_create()))
		return -1;
	if (strcmp(name, "user-property") == 0) {
		if (need_arg(t, argc, argv, *i, 4))
			return -1;
		rc = shimmy_props_add_user(t->pub_props, argv[*i + 3], argv[*i + 4]);
		*i += 5;
	} else {
		const char *val = argv[*i + 3];
		if (strcmp(name, "content-type") == 0)
			rc = shimmy_props_set_content_type(t->pub_props, val);
		else if (strcmp(name, "response-topic") == 0)
			rc = shimmy_props_set_response_topic(t->pub_props, val);
		else if (strcmp(name, "correlation-data") == 0)
			rc = shimmy_props_set_correlation_data(t->pub_props, val, strlen(val));
		else if (strcmp(name, "message-expiry-interval") == 0)
			rc = parse_int(t, name, val, 0, 4294967295L, &v) ? -1 :
			     shimmy_props_set_message_expiry(t->pub_props, (uint32_t)v);
		else if (strcmp(name, "payload-format-indicator") == 0)
			rc = parse_int(t, name, val, 0, 1, &v) ? -1 :
			     shimmy_props_set_payload_format(t->pub_props, (int)v);
		else {
			fprintf(stderr, "Error: unknown or unsupported property '%s'.\n", name);
			return -1;
		}
		*i += 4;
	}
	if (rc) {
		fprintf(stderr, "Error: invalid property %s.\n", name);
		return -1;
	}
	return 1;
}

int tool_common_opt(tool_cfg *t, int argc, char **argv, int *i)
{
	const char *a = argv[*i];
	long v;

#define ARG1() do { if (need_arg(t, argc, argv, *i, 1)) return -1; } while (0)
	if (strcmp(a, "-h") == 0 || strcmp(a, "--host") == 0) {
		ARG1();
		t->host = argv[*i + 1];
	} else if (strcmp(a, "-p") == 0 || strcmp(a, "--port") == 0) {
		ARG1();
		if (parse_int(t, a, argv[*i + 1], 1, 65535, &v))
			return -1;
		t->port = (int)v;
	} else if (strcmp(a, "--unix") == 0) {
		ARG1();
		t->unix_path = argv[*i + 1];
	} else if (strcmp(a, "--uri") == 0) {
		ARG1();
		t->uri = argv[*i + 1];
	} else if (strcmp(a, "-V") == 0 || strcmp(a, "--protocol-version") == 0) {
		ARG1();
		const char *s = argv[*i + 1];
		if (!strcmp(s, "311") || !strcmp(s, "mqttv311"))
			t->version = SHIMMY_MQTT_311;
		else if (!strcmp(s, "5") || !strcmp(s, "mqttv5"))
			t->version = SHIMMY_MQTT_5;
		else {
			fprintf(stderr, "Error: invalid protocol version '%s' (311 or 5; 3.1 is not supported).\n", s);
			return -1;
		}
	} else if (strcmp(a, "-i") == 0 || strcmp(a, "--id") == 0) {
		ARG1();
		t->id = argv[*i + 1];
	} else if (strcmp(a, "-I") == 0 || strcmp(a, "--id-prefix") == 0) {
		ARG1();
		t->id_prefix = argv[*i + 1];
	} else if (strcmp(a, "-k") == 0 || strcmp(a, "--keepalive") == 0) {
		ARG1();
		if (parse_int(t, a, argv[*i + 1], 0, 65535, &v))
			return -1;
		t->keepalive = (int)v;
	} else if (strcmp(a, "-u") == 0 || strcmp(a, "--username") == 0) {
		ARG1();
		t->user = argv[*i + 1];
	} else if (strcmp(a, "-P") == 0 || strcmp(a, "--pw") == 0) {
		ARG1();
		t->pw = argv[*i + 1];
	} else if (strcmp(a, "-q") == 0 || strcmp(a, "--qos") == 0) {
		ARG1();
		if (parse_int(t, a, argv[*i + 1], 0, 2, &v))
			return -1;
		t->qos = (int)v;
	} else if (strcmp(a, "-x") == 0) {
		ARG1();
		if (parse_int(t, a, argv[*i + 1], 0, 4294967295L, &v))
			return -1;
		t->session_expiry = (uint32_t)v;
	} else if (strcmp(a, "--will-topic") == 0) {
		ARG1();
		t->will_topic = argv[*i + 1];
	} else if (strcmp(a, "--will-payload") == 0) {
		ARG1();
		t->will_payload = argv[*i + 1];
	} else if (strcmp(a, "--will-qos") == 0) {
		ARG1();
		if (parse_int(t, a, argv[*i + 1], 0, 2, &v))
			return -1;
		t->will_qos = (int)v;
	} else if (strcmp(a, "-D") == 0 || strcmp(a, "--property") == 0) {
		return prop_opt(t, argc, argv, i);
	} else {
		if (strcmp(a, "-d") == 0 || strcmp(a, "--debug") == 0)
			t->debug = true;
		else if (strcmp(a, "-c") == 0 || strcmp(a, "--disable-clean-session") == 0)
			t->no_clean = true;
		else if (strcmp(a, "--require-shm") == 0)
			t->require_shm = true;
		else if (strcmp(a, "--no-shm") == 0)
			t->no_shm = true;
		else if (strcmp(a, "--reconnect") == 0)
			t->reconnect = true;
		else if (strcmp(a, "--will-retain") == 0)
			t->will_retain = true;
		else if (strcmp(a, "--quiet") == 0)
			t->quiet = true;
		else
			return 0;
		*i += 1;
		return 1;
	}
#undef ARG1
	*i += 2;
	return 1;
}

shimmy_client *tool_connect(tool_cfg *t, unsigned extra_flags)
{
	char uri[600], idbuf[96];
	shimmy_opts *o;
	shimmy_client *c = NULL;
	unsigned flags = extra_flags;
	int rc;

	if (t->require_shm && t->no_shm) {
		fprintf(stderr, "Error: --require-shm and --no-shm exclude each other.\n");
		return NULL;
	}
	if (t->require_shm && t->version != SHIMMY_MQTT_5) {
		fprintf(stderr, "Error: --require-shm needs MQTT 5 (-V 5): the shm extension is negotiated in MQTT 5 CONNECT.\n");
		return NULL;
	}
	if (t->uri)
		snprintf(uri, sizeof(uri), "%s", t->uri);
	else if (t->unix_path)
		snprintf(uri, sizeof(uri), "unix://%s", t->unix_path);
	else if (strchr(t->host, ':'))
		snprintf(uri, sizeof(uri), "tcp://[%s]:%d", t->host, t->port);
	else
		snprintf(uri, sizeof(uri), "tcp://%s:%d", t->host, t->port);
	o = shimmy_opts_create();
	if (!o) {
		fprintf(stderr, "Error: out of memory.\n");
		return NULL;
	}
	if (t->id) {
		rc = shimmy_opts_set_client_id(o, t->id);
	} else if (t->id_prefix) {
		snprintf(idbuf, sizeof(idbuf), "%s%d", t->id_prefix, (int)getpid());
		rc = shimmy_opts_set_client_id(o, idbuf);
	} else {
		rc = 0;
	}
	if (t->require_shm)
		flags |= SHIMMY_OPT_REQUIRE_SHM;
	if (t->no_shm)
		flags |= SHIMMY_OPT_NO_SHM;
	if (t->no_clean)
		flags |= SHIMMY_OPT_NO_CLEAN;
	if (t->reconnect)
		flags |= SHIMMY_OPT_RECONNECT;
	rc = rc ? rc : shimmy_opts_set_version(o, t->version);
	rc = rc ? rc : shimmy_opts_set_keepalive(o, (uint16_t)t->keepalive);
	rc = rc ? rc : shimmy_opts_set_session_expiry(o, t->session_expiry);
	rc = rc ? rc : shimmy_opts_set_flags(o, flags);
	if (!rc && t->user)
		rc = shimmy_opts_set_credentials(o, t->user, t->pw, t->pw ? strlen(t->pw) : 0);
	if (!rc && t->will_topic)
		rc = shimmy_opts_set_will(o, t->will_topic, t->will_payload ? t->will_payload : "",
					  t->will_payload ? strlen(t->will_payload) : 0, t->will_qos,
					  t->will_retain ? SHIMMY_PUB_RETAIN : 0, NULL);
	if (rc) {
		fprintf(stderr, "Error: invalid options: %s.\n", shimmy_strerror(rc));
		goto out;
	}
	c = shimmy_client_create(uri, o, &rc);
	if (!c) {
		fprintf(stderr, "Error: %s: %s.\n", uri, shimmy_strerror(rc));
		goto out;
	}
	tool_debug(t, "connecting to %s (MQTT %s)", uri, t->version == SHIMMY_MQTT_5 ? "5" : "3.1.1");
	rc = shimmy_client_connect(c, -1);
	if (rc == SHIMMY_ERR_NO_SHM) {
		fprintf(stderr, "Error: --require-shm: the broker at %s did not negotiate the "
			"shared-memory extension (shimmy=shm/2)%s.\n", uri,
			t->unix_path || strncmp(uri, "unix:", 5) == 0 ? "" :
			"; it is offered only over a Unix socket (--unix)");
	} else if (rc == SHIMMY_ERR_REFUSED) {
		fprintf(stderr, "Connection error: Connection Refused: reason %d.\n",
			shimmy_client_reason(c));
	} else if (rc) {
		fprintf(stderr, "Error: %s: %s.\n", uri, shimmy_strerror(rc));
	}
	if (rc) {
		shimmy_client_destroy(c);
		c = NULL;
	} else {
		tool_debug(t, "connected; shm %s", shimmy_client_shm_active(c) ? "active" : "not negotiated");
	}
out:
	shimmy_opts_destroy(o);
	return c;
}

/*
 * tests/unit/test_config.c — broker/config.c: the mosquitto.conf dialect,
 * the command line, include_dir, durations, reload. Diagnostics are
 * captured by pointing the log at a temporary file.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "broker/config.h"

typedef struct fixture {
	char dir[64];
	char file[128];
	shimmy_log log;
	int log_fd;
	char captured[8192];
	broker_cfg cfg;
} fixture;

static int setup(void **state)
{
	fixture *f = calloc(1, sizeof(*f));
	assert_non_null(f);
	snprintf(f->dir, sizeof(f->dir), "/tmp/shimmy-test-config-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->file, sizeof(f->file), "%s/main.conf", f->dir);
	char logpath[128];
	snprintf(logpath, sizeof(logpath), "%s/log", f->dir);
	f->log_fd = open(logpath, O_RDWR | O_CREAT | O_TRUNC | O_APPEND, 0600);
	assert_true(f->log_fd >= 0);
	log_init(&f->log);
	f->log.fd = f->log_fd;
	f->log.timestamps = 0;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	fixture *f = *state;
	close(f->log_fd);
	char cmd[160];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
	assert_int_equal(system(cmd), 0);
	free(f);
	return 0;
}

static void write_file(const char *path, const char *text)
{
	FILE *fp = fopen(path, "w");
	assert_non_null(fp);
	fputs(text, fp);
	fclose(fp);
}

/* Everything logged so far. */
static const char *logged(fixture *f)
{
	ssize_t n = pread(f->log_fd, f->captured, sizeof(f->captured) - 1, 0);
	assert_true(n >= 0);
	f->captured[n] = '\0';
	return f->captured;
}

static void clear_log(fixture *f)
{
	assert_int_equal(ftruncate(f->log_fd, 0), 0);
}

/* Runs shimmyd -c FILE on text. */
static int parse_text(fixture *f, const char *text)
{
	write_file(f->file, text);
	char *argv[] = { "shimmyd", "-c", f->file, NULL };
	return config_from_args(&f->cfg, 3, argv, &f->log);
}

static void test_defaults_and_default_listeners(void **state)
{
	fixture *f = *state;
	char *argv[] = { "shimmyd", NULL };
	assert_int_equal(config_from_args(&f->cfg, 1, argv, &f->log), 0);
	assert_true(f->cfg.allow_anonymous);
	assert_int_equal(f->cfg.max_inflight_messages, 20);
	assert_int_equal(f->cfg.max_queued_messages, 1000);
	assert_int_equal(f->cfg.max_keepalive, 65535);
	assert_true(f->cfg.retain_available);
	assert_int_equal(f->cfg.sys_interval, 10);
	assert_int_equal(f->cfg.log_mask, LOG_DEFAULT);
	assert_int_equal(f->cfg.listener_count, 2);
	assert_int_equal(f->cfg.listeners[0].kind, CFG_LISTENER_TCP);
	assert_int_equal(f->cfg.listeners[0].port, 1883);
	assert_string_equal(f->cfg.listeners[0].address, "");
	assert_int_equal(f->cfg.listeners[0].family, CFG_FAMILY_ANY);
	assert_int_equal(f->cfg.listeners[1].kind, CFG_LISTENER_UNIX);
	assert_string_equal(f->cfg.listeners[1].path, "/run/shimmy/shimmy.sock");
	assert_true(f->cfg.listeners[1].flags & CFG_LISTENER_OPTIONAL);
	assert_int_equal(f->cfg.listeners[1].socket_mode, 0666);
	assert_string_equal(logged(f), "");
}

static void test_valid_file(void **state)
{
	fixture *f = *state;
	int rc = parse_text(f,
		"# a comment\n"
		"\n"
		"   # indented comment\n"
		"allow_anonymous false\n"
		"max_inflight_messages 5\n"
		"max_queued_messages 200\n"
		"max_queued_bytes 10000000000\n"
		"max_packet_size 1048576\n"
		"max_keepalive 300\n"
		"retain_available false\n"
		"sys_interval 0\n"
		"persistent_client_expiration 2d\n"
		"max_connections 100\n"
		"upgrade_outgoing_qos true\n"
		"message_size_limit 4096\n"
		"queue_qos0_messages true\n"
		"log_type error\n"
		"log_type subscribe\n"
		"log_dest stdout\n"
		"log_timestamp false\n"
		"listener 1884\n"
		"max_connections 7\n"
		"listener 8883 127.0.0.1\n"
		"socket_domain ipv4\n"
		"listener 1885 ::1\r\n"
		"socket_domain ipv6\n"
		"listener 0 /tmp/x.sock\n"
		"shimmy_socket_mode 0660\n"
		"max_connections -1\n");
	assert_int_equal(rc, 0);
	broker_cfg *c = &f->cfg;
	assert_false(c->allow_anonymous);
	assert_int_equal(c->max_inflight_messages, 5);
	assert_int_equal(c->max_queued_messages, 200);
	assert_true(c->max_queued_bytes == 10000000000ull);
	assert_int_equal(c->max_packet_size, 1048576);
	assert_int_equal(c->max_keepalive, 300);
	assert_false(c->retain_available);
	assert_int_equal(c->sys_interval, 0);
	assert_int_equal(c->persistent_client_expiration_s, 2 * 86400);
	assert_int_equal(c->max_connections, 100);
	assert_true(c->upgrade_outgoing_qos);
	assert_int_equal(c->message_size_limit, 4096);
	assert_true(c->queue_qos0_messages);
	assert_int_equal(c->log_mask, LOG_ERR | LOG_SUBSCRIBE);
	assert_int_equal(c->log_fd, 1);
	assert_false(c->log_timestamp);
	assert_string_equal(c->config_file, f->file);

	assert_int_equal(c->listener_count, 4);
	assert_int_equal(c->listeners[0].kind, CFG_LISTENER_TCP);
	assert_int_equal(c->listeners[0].port, 1884);
	assert_int_equal(c->listeners[0].max_connections, 7);
	assert_int_equal(c->listeners[0].flags, 0);
	assert_int_equal(c->listeners[1].port, 8883);
	assert_string_equal(c->listeners[1].address, "127.0.0.1");
	assert_int_equal(c->listeners[1].family, CFG_FAMILY_IPV4);
	assert_int_equal(c->listeners[1].max_connections, -1);
	assert_string_equal(c->listeners[2].address, "::1");
	assert_int_equal(c->listeners[2].family, CFG_FAMILY_IPV6);
	assert_int_equal(c->listeners[3].kind, CFG_LISTENER_UNIX);
	assert_string_equal(c->listeners[3].path, "/tmp/x.sock");
	assert_int_equal(c->listeners[3].socket_mode, 0660);
	assert_int_equal(c->listeners[3].max_connections, -1);
	assert_int_equal(c->listeners[3].flags, 0);
	assert_string_equal(logged(f), "");

	/* The log settings reach a shimmy_log. */
	shimmy_log l;
	log_init(&l);
	config_apply_log(c, &l);
	assert_int_equal(l.mask, LOG_ERR | LOG_SUBSCRIBE);
	assert_int_equal(l.fd, 1);
	assert_int_equal(l.timestamps, 0);
}

/* Each invalid line must fail and name file:line (line 2: line 1 is a
 * valid key, so the line count is checked). */
/* The shared-memory keys (docs/shm-protocol.md). */
static void test_shm_keys(void **state)
{
	fixture *f = *state;
	assert_int_equal(parse_text(f, "listener 1883\n"), 0);
	assert_true(f->cfg.shm_enabled);
	assert_int_equal(f->cfg.shm_spin_us, 50);
	assert_int_equal(f->cfg.shm_reader_timeout_ms, 5000);
	assert_true(f->cfg.shm_max_bytes == (uint64_t)256 << 20);
	assert_int_equal(parse_text(f, "listener 1883\nshimmy_shm false\n"
				       "shimmy_shm_spin_us 0\n"
				       "shimmy_shm_reader_timeout 250\n"
				       "shimmy_shm_max_bytes 8388608\n"), 0);
	assert_false(f->cfg.shm_enabled);
	assert_int_equal(f->cfg.shm_spin_us, 0);
	assert_int_equal(f->cfg.shm_reader_timeout_ms, 250);
	assert_true(f->cfg.shm_max_bytes == 8388608);
	assert_true(parse_text(f, "shimmy_shm maybe\n") < 0);
	assert_true(parse_text(f, "shimmy_shm_reader_timeout 0\n") < 0);
	assert_true(parse_text(f, "shimmy_shm_spin_us 2000000\n") < 0);
	assert_true(parse_text(f, "shimmy_shm_max_bytes 100\n") < 0);
}

static void test_invalid_values(void **state)
{
	fixture *f = *state;
	static const char *const bad[] = {
		"max_inflight_messages abc",
		"max_inflight_messages 65536",
		"max_inflight_messages -1",
		"max_inflight_messages 12x",
		"max_inflight_messages",
		"max_inflight_messages 1 2",
		"max_queued_messages 4294967296",
		"max_queued_bytes -5",
		"max_queued_bytes 99999999999999999999999",
		"max_packet_size 10",
		"max_packet_size 268435456",
		"max_keepalive 65536",
		"max_keepalive -1",
		"allow_anonymous yes",
		"allow_anonymous",
		"retain_available 1",
		"log_timestamp maybe",
		"upgrade_outgoing_qos TRUE",
		"queue_qos0_messages",
		"per_listener_settings sure",
		"sys_interval 70000",
		"persistent_client_expiration 10",
		"persistent_client_expiration 1s",
		"persistent_client_expiration d",
		"persistent_client_expiration 1000000000y",
		"max_connections many",
		"max_connections -2",
		"message_size_limit 268435456",
		"log_type loud",
		"log_type",
		"listener",
		"listener 70000",
		"listener abc",
		"listener 0",
		"listener 1883 0.0.0.0 extra",
		"listener 0 /aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.sock",
		"socket_domain ipv4",
		"include_dir /nonexistent/shimmy/conf.d",
		"include_dir",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char text[512];
		snprintf(text, sizeof(text), "sys_interval 5\n%s\n", bad[i]);
		clear_log(f);
		int rc = parse_text(f, text);
		if (rc == 0)
			fail_msg("accepted: %s", bad[i]);
		char want[192];
		snprintf(want, sizeof(want), "%s:2: error: ", f->file);
		const char *got = logged(f);
		if (!strstr(got, want))
			fail_msg("'%s' logged '%s', want '%s'", bad[i], got, want);
	}
}

static void test_protocol(void **state)
{
	fixture *f = *state;
	assert_int_equal(parse_text(f, "listener 1883\nlistener 8080\n"
				       "protocol websockets\nlistener 1884\n"
				       "protocol mqtt\n"), 0);
	assert_int_equal(f->cfg.listeners[0].protocol, CFG_PROTOCOL_MQTT);
	assert_int_equal(f->cfg.listeners[1].protocol, CFG_PROTOCOL_WEBSOCKETS);
	assert_int_equal(f->cfg.listeners[2].protocol, CFG_PROTOCOL_MQTT);
	clear_log(f);
	assert_int_not_equal(parse_text(f, "allow_anonymous true\nprotocol websockets\n"), 0);
	assert_non_null(strstr(logged(f), ":2: error: protocol must follow a listener"));
	clear_log(f);
	assert_int_not_equal(parse_text(f, "listener 1883\nprotocol http\n"), 0);
	assert_non_null(strstr(logged(f), ":2: error: protocol must be mqtt or websockets"));
	clear_log(f);
	assert_int_not_equal(parse_text(f, "listener 0 /tmp/a.sock\nprotocol websockets\n"), 0);
	assert_non_null(strstr(logged(f), ":2: error: protocol websockets needs a TCP listener"));
}

static void test_socket_domain_needs_tcp(void **state)
{
	fixture *f = *state;
	assert_int_not_equal(parse_text(f, "listener 1883\nsocket_domain ipv5\n"), 0);
	assert_non_null(strstr(logged(f), ":2: error: socket_domain"));
	clear_log(f);
	assert_int_not_equal(parse_text(f, "listener 0 /tmp/a.sock\nsocket_domain ipv4\n"), 0);
	clear_log(f);
	assert_int_not_equal(parse_text(f, "listener 1883\nshimmy_socket_mode 0660\n"), 0);
	clear_log(f);
	assert_int_not_equal(parse_text(f, "listener 0 /tmp/a.sock\nshimmy_socket_mode 999\n"), 0);
}

static void test_too_many_listeners(void **state)
{
	fixture *f = *state;
	char text[1024] = "";
	for (int i = 0; i <= CFG_MAX_LISTENERS; i++) {
		char line[32];
		snprintf(line, sizeof(line), "listener %d\n", 2000 + i);
		strcat(text, line);
	}
	assert_int_not_equal(parse_text(f, text), 0);
	char want[64];
	snprintf(want, sizeof(want), ":%d: error: too many listeners",
		 CFG_MAX_LISTENERS + 1);
	assert_non_null(strstr(logged(f), want));
}

static void test_unknown_key_warns(void **state)
{
	fixture *f = *state;
	assert_int_equal(parse_text(f, "max_keepalive 60\nfrobnicate 1 2\n"
				       "persistence true\n"
				       "persistence_location /var/lib/x\n"
				       "autosave_interval 1800\n"
				       "per_listener_settings true\n"
				       "log_dest syslog\n"),
			 0);
	const char *got = logged(f);
	char want[192];
	snprintf(want, sizeof(want),
		 "%s:2: warning: unknown configuration key 'frobnicate'", f->file);
	assert_non_null(strstr(got, want));
	assert_non_null(strstr(got, ":3: warning: 'persistence' is not supported yet"));
	assert_non_null(strstr(got, ":4: warning: 'persistence_location' is not supported yet"));
	assert_non_null(strstr(got, ":5: warning: 'autosave_interval' is not supported yet"));
	assert_non_null(strstr(got, ":6: warning: per_listener_settings is ignored"));
	assert_non_null(strstr(got, ":7: warning: log_dest syslog"));
	assert_null(strstr(got, "error"));
	assert_int_equal(f->cfg.max_keepalive, 60);
	assert_int_equal(f->cfg.log_fd, 2);
}

static void test_unreadable_file(void **state)
{
	fixture *f = *state;
	char *argv[] = { "shimmyd", "-c", "/nonexistent/shimmy.conf", NULL };
	assert_int_not_equal(config_from_args(&f->cfg, 3, argv, &f->log), 0);
	assert_non_null(strstr(logged(f), "/nonexistent/shimmy.conf:0: error: "));
}

static void test_include_dir(void **state)
{
	fixture *f = *state;
	char inc[128], path[192];
	snprintf(inc, sizeof(inc), "%s/conf.d", f->dir);
	assert_int_equal(mkdir(inc, 0755), 0);
	snprintf(path, sizeof(path), "%s/20-b.conf", inc);
	write_file(path, "max_keepalive 200\nlog_type debug\nlistener 1900\n");
	snprintf(path, sizeof(path), "%s/10-a.conf", inc);
	write_file(path, "max_keepalive 100\nmax_queued_messages 7\nlog_type error\n");
	snprintf(path, sizeof(path), "%s/30-c.txt", inc);
	write_file(path, "this is not a config\n");

	char text[256];
	snprintf(text, sizeof(text), "log_type warning\ninclude_dir %s\n", inc);
	assert_int_equal(parse_text(f, text), 0);
	/* Sorted order: 20-b.conf wins over 10-a.conf; .txt is skipped. */
	assert_int_equal(f->cfg.max_keepalive, 200);
	assert_int_equal(f->cfg.max_queued_messages, 7);
	/* First log_type (in the main file) replaced the default; later ones
	 * in included files add to it. */
	assert_int_equal(f->cfg.log_mask, LOG_WARN | LOG_ERR | LOG_DEBUG);
	assert_int_equal(f->cfg.listener_count, 1);
	assert_int_equal(f->cfg.listeners[0].port, 1900);
	assert_string_equal(logged(f), "");

	/* An error inside an included file names that file and line. */
	snprintf(path, sizeof(path), "%s/40-d.conf", inc);
	write_file(path, "\n\nmax_keepalive huge\n");
	clear_log(f);
	assert_int_not_equal(parse_text(f, text), 0);
	char want[256];
	snprintf(want, sizeof(want), "%s:3: error: ", path);
	assert_non_null(strstr(logged(f), want));
}

static void test_include_dir_self_recursion(void **state)
{
	fixture *f = *state;
	char inc[128], path[192], text[256];
	snprintf(inc, sizeof(inc), "%s/loop.d", f->dir);
	assert_int_equal(mkdir(inc, 0755), 0);
	snprintf(path, sizeof(path), "%s/self.conf", inc);
	snprintf(text, sizeof(text), "include_dir %s\n", inc);
	write_file(path, text);
	assert_int_not_equal(parse_text(f, text), 0);
	assert_non_null(strstr(logged(f), "nested too deeply"));
}

static void test_duration(void **state)
{
	(void)state;
	static const struct {
		const char *in;
		int rc;
		uint32_t s;
	} cases[] = {
		{ "1h", 0, 3600 },
		{ "2d", 0, 172800 },
		{ "3w", 0, 1814400 },
		{ "1m", 0, 2592000 },
		{ "1y", 0, 31536000 },
		{ "0h", 0, 0 },
		{ "136y", 0, 136u * 31536000u },
		{ "137y", -ERANGE, 0 },
		{ "99999999999h", -ERANGE, 0 },
		{ "", -EINVAL, 0 },
		{ "h", -EINVAL, 0 },
		{ "10", -EINVAL, 0 },
		{ "10s", -EINVAL, 0 },
		{ "-1h", -EINVAL, 0 },
		{ "1.5h", -EINVAL, 0 },
		{ " 1h", -EINVAL, 0 },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint32_t s = 12345;
		int rc = config_parse_duration(cases[i].in, &s);
		if (rc != cases[i].rc)
			fail_msg("'%s': rc %d, want %d", cases[i].in, rc,
				 cases[i].rc);
		if (rc == 0 && s != cases[i].s)
			fail_msg("'%s': %u, want %u", cases[i].in, s, cases[i].s);
	}
}

static void test_args(void **state)
{
	fixture *f = *state;
	write_file(f->file, "listener 1999\nlistener 0 /tmp/y.sock\n");

	/* -p replaces the configured listeners; -v enables everything. */
	char *argv1[] = { "shimmyd", "-c", f->file, "-p", "1234", "-v", "-p", "5678", NULL };
	assert_int_equal(config_from_args(&f->cfg, 8, argv1, &f->log), 0);
	assert_int_equal(f->cfg.listener_count, 2);
	assert_int_equal(f->cfg.listeners[0].port, 1234);
	assert_int_equal(f->cfg.listeners[1].port, 5678);
	assert_int_equal(f->cfg.listeners[1].kind, CFG_LISTENER_TCP);
	assert_true(f->cfg.verbose);
	assert_int_equal(f->cfg.log_mask, LOG_ALL);

	char *argv2[] = { "shimmyd", "-h", NULL };
	assert_int_equal(config_from_args(&f->cfg, 2, argv2, &f->log), 0);
	assert_true(f->cfg.help);

	static char *const bad[][3] = {
		{ "shimmyd", "-p", "0" },     { "shimmyd", "-p", "65536" },
		{ "shimmyd", "-p", "x" },     { "shimmyd", "-p", NULL },
		{ "shimmyd", "-c", NULL },    { "shimmyd", "--bogus", NULL },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char *argv[4] = { bad[i][0], bad[i][1], bad[i][2], NULL };
		int argc = bad[i][2] ? 3 : 2;
		clear_log(f);
		int stderr_copy = dup(2);
		int devnull = open("/dev/null", O_WRONLY);
		dup2(devnull, 2); /* the usage text */
		int rc = config_from_args(&f->cfg, argc, argv, &f->log);
		dup2(stderr_copy, 2);
		close(stderr_copy);
		close(devnull);
		if (rc == 0)
			fail_msg("accepted %s %s", bad[i][1],
				 bad[i][2] ? bad[i][2] : "");
		assert_non_null(strstr(logged(f), "Error: "));
	}
}

static void test_reload_keeps_listeners(void **state)
{
	fixture *f = *state;
	write_file(f->file, "listener 2001\nmax_keepalive 30\n");
	char *argv[] = { "shimmyd", "-c", f->file, NULL };
	assert_int_equal(config_from_args(&f->cfg, 3, argv, &f->log), 0);

	write_file(f->file, "listener 2002\nlistener 2003\nmax_keepalive 40\n");
	assert_int_equal(config_reload(&f->cfg, 3, argv, &f->log), 0);
	assert_int_equal(f->cfg.max_keepalive, 40);
	assert_int_equal(f->cfg.listener_count, 1);
	assert_int_equal(f->cfg.listeners[0].port, 2001);

	/* A broken file leaves the live cfg alone. */
	write_file(f->file, "max_keepalive 50\nmax_keepalive bad\n");
	assert_int_not_equal(config_reload(&f->cfg, 3, argv, &f->log), 0);
	assert_int_equal(f->cfg.max_keepalive, 40);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_defaults_and_default_listeners, setup, teardown),
		cmocka_unit_test_setup_teardown(test_valid_file, setup, teardown),
		cmocka_unit_test_setup_teardown(test_invalid_values, setup, teardown),
		cmocka_unit_test_setup_teardown(test_shm_keys, setup, teardown),
		cmocka_unit_test_setup_teardown(test_protocol, setup, teardown),
		cmocka_unit_test_setup_teardown(test_socket_domain_needs_tcp, setup, teardown),
		cmocka_unit_test_setup_teardown(test_too_many_listeners, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unknown_key_warns, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unreadable_file, setup, teardown),
		cmocka_unit_test_setup_teardown(test_include_dir, setup, teardown),
		cmocka_unit_test_setup_teardown(test_include_dir_self_recursion, setup, teardown),
		cmocka_unit_test_setup_teardown(test_duration, setup, teardown),
		cmocka_unit_test_setup_teardown(test_args, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reload_keeps_listeners, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

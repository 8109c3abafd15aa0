/* Unit tests of clients/uri: the broker URIs libshimmy accepts. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "clients/include/shimmy.h"
#include "clients/uri.h"

static void test_tcp(void **state)
{
	uri u;

	assert_int_equal(uri_parse("tcp://broker.example:1884", NULL, &u), 0);
	assert_int_equal(u.scheme, URI_TCP);
	assert_string_equal(u.host, "broker.example");
	assert_int_equal(u.port, 1884);
	assert_int_equal(uri_parse("tcp://127.0.0.1", NULL, &u), 0);
	assert_string_equal(u.host, "127.0.0.1");
	assert_int_equal(u.port, 1883);
	assert_int_equal(uri_parse("tcp://127.0.0.1/", NULL, &u), 0);
	assert_int_equal(uri_parse("mqtt://h:2000", NULL, &u), 0);
	assert_int_equal(u.port, 2000);
}

static void test_ipv6(void **state)
{
	uri u;

	assert_int_equal(uri_parse("tcp://[::1]:1885", NULL, &u), 0);
	assert_string_equal(u.host, "::1");
	assert_int_equal(u.port, 1885);
	assert_int_equal(uri_parse("tcp://[fe80::1]", NULL, &u), 0);
	assert_string_equal(u.host, "fe80::1");
	assert_int_equal(u.port, 1883);
	assert_int_equal(uri_parse("tcp://[::1", NULL, &u), SHIMMY_ERR_URI);
	assert_int_equal(uri_parse("tcp://[::1]x", NULL, &u), SHIMMY_ERR_URI);
}

static void test_unix(void **state)
{
	uri u;
	char longp[200];

	assert_int_equal(uri_parse("unix:///tmp/x.sock", NULL, &u), 0);
	assert_int_equal(u.scheme, URI_UNIX);
	assert_string_equal(u.path, "/tmp/x.sock");
	assert_int_equal(uri_parse("unix://", NULL, &u), 0);
	assert_string_equal(u.path, URI_DEFAULT_SOCKET);
	assert_string_equal(u.path, "/run/shimmy/shimmy.sock");
	assert_int_equal(uri_parse("unix://", "/var/run/other.sock", &u), 0);
	assert_string_equal(u.path, "/var/run/other.sock");
	/* An explicit path wins over $SHIMMY_SOCKET. */
	assert_int_equal(uri_parse("unix:///a", "/b", &u), 0);
	assert_string_equal(u.path, "/a");
	assert_int_equal(uri_parse("unix://relative", NULL, &u), SHIMMY_ERR_URI);
	memset(longp, 'a', sizeof(longp) - 1);
	longp[0] = '/';
	longp[sizeof(longp) - 1] = '\0';
	char s[220] = "unix://";
	strcat(s, longp);
	assert_int_equal(uri_parse(s, NULL, &u), SHIMMY_ERR_URI); /* over sun_path */
}

static void test_tls_parsed(void **state)
{
	uri u;

	/* Parsed so the client can say "not supported yet" precisely. */
	assert_int_equal(uri_parse("tls://h", NULL, &u), 0);
	assert_int_equal(u.scheme, URI_TLS);
	assert_int_equal(u.port, 8883);
}

static void test_bad(void **state)
{
	static const char *const bad[] = {
		"", "ftp://h", "tcp://", "tcp://:1883", "tcp://h:", "tcp://h:0",
		"tcp://h:65536", "tcp://h:12x", "tcp://h:1883/extra", "h:1883", "tcp:/h",
	};
	uri u;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (uri_parse(bad[i], NULL, &u) != SHIMMY_ERR_URI)
			fail_msg("accepted bad URI '%s'", bad[i]);
	}
	assert_int_equal(uri_parse(NULL, NULL, &u), SHIMMY_ERR_URI);
}

static void test_client_create_errors(void **state)
{
	int err = 0;

	assert_null(shimmy_client_create("tls://h:8883", NULL, &err));
	assert_int_equal(err, SHIMMY_ERR_UNSUPPORTED);
	assert_null(shimmy_client_create("nope://h", NULL, &err));
	assert_int_equal(err, SHIMMY_ERR_URI);
	shimmy_client *c = shimmy_client_create("tcp://127.0.0.1:1", NULL, &err);
	assert_non_null(c);
	assert_int_equal(err, 0);
	assert_int_equal(shimmy_client_shm_active(c), 0);
	assert_int_equal(shimmy_publish(c, "t", "x", 1, 0, 0, NULL), SHIMMY_ERR_NOT_CONNECTED);
	shimmy_client_destroy(c);
	shimmy_client_destroy(NULL);
	assert_string_equal(shimmy_strerror(SHIMMY_ERR_NO_SHM),
			    "shared-memory extension not negotiated");
	assert_string_equal(shimmy_strerror(-2), "No such file or directory");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_tcp),
		cmocka_unit_test(test_ipv6),
		cmocka_unit_test(test_unix),
		cmocka_unit_test(test_tls_parsed),
		cmocka_unit_test(test_bad),
		cmocka_unit_test(test_client_create_errors),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

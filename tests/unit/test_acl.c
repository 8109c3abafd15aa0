/* Unit tests for broker/acl: the Mosquitto acl_file format and checks. */
#include "broker/acl.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

static acl *load_text(const char *text, int *rc, char *err, size_t err_len)
{
	char path[] = "/tmp/test_acl_XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	acl *a = NULL;
	*rc = acl_load(path, &a, err, err_len);
	unlink(path);
	return a;
}

static bool chk(const acl *a, const char *user, const char *cid,
		const char *topic, acl_access access)
{
	return acl_check(a, mqtt_str_c(user ? user : ""), user != NULL,
			 mqtt_str_c(cid), mqtt_str_c(topic), access);
}

static void test_anonymous_topic_and_deny(void **state)
{
	(void)state;
	char err[256];
	int rc;
	acl *a = load_text("# paho interop\ntopic readwrite #\n"
			   "topic deny test/nosubscribe\n",
			   &rc, err, sizeof(err));
	assert_int_equal(rc, 0);
	assert_true(chk(a, NULL, "c", "TopicA/B", ACL_WRITE));
	assert_true(chk(a, NULL, "c", "TopicA/+", ACL_SUBSCRIBE));
	assert_true(chk(a, NULL, "c", "#", ACL_SUBSCRIBE));
	assert_false(chk(a, NULL, "c", "test/nosubscribe", ACL_SUBSCRIBE));
	assert_false(chk(a, NULL, "c", "test/nosubscribe", ACL_READ));
	/* A wider filter is allowed; the message itself is denied on read. */
	assert_true(chk(a, NULL, "c", "test/+", ACL_SUBSCRIBE));
	/* Anonymous rules don't apply to named users. */
	assert_false(chk(a, "bob", "c", "TopicA", ACL_WRITE));
	/* '#' at the first level does not reach $ topics [MQTT-4.7.2-1]. */
	assert_false(chk(a, NULL, "c", "$SYS/broker/uptime", ACL_READ));
	assert_false(chk(a, NULL, "c", "$SYS/#", ACL_SUBSCRIBE));
	acl_destroy(a);
}

static void test_user_and_access_words(void **state)
{
	(void)state;
	char err[256];
	int rc;
	acl *a = load_text("user alice\ntopic read sensors/#\n"
			   "topic write cmd/+/set\nuser bob\ntopic a/b\n",
			   &rc, err, sizeof(err));
	assert_int_equal(rc, 0);
	assert_true(chk(a, "alice", "x", "sensors/t1", ACL_READ));
	assert_true(chk(a, "alice", "x", "sensors", ACL_READ)); /* a/# matches a */
	assert_false(chk(a, "alice", "x", "sensors/t1", ACL_WRITE));
	assert_true(chk(a, "alice", "x", "cmd/lamp/set", ACL_WRITE));
	assert_false(chk(a, "alice", "x", "cmd/lamp/set", ACL_READ));
	assert_false(chk(a, "alice", "x", "cmd/#", ACL_SUBSCRIBE));
	assert_true(chk(a, "bob", "x", "a/b", ACL_READ));
	assert_true(chk(a, "bob", "x", "a/b", ACL_WRITE));
	assert_false(chk(a, "bob", "x", "a/+", ACL_SUBSCRIBE));
	assert_false(chk(a, NULL, "x", "a/b", ACL_READ));
	acl_destroy(a);
}

static void test_pattern_substitution(void **state)
{
	(void)state;
	char err[256];
	int rc;
	acl *a = load_text("pattern readwrite devices/%c/#\n"
			   "pattern read users/%u/inbox\n",
			   &rc, err, sizeof(err));
	assert_int_equal(rc, 0);
	assert_true(chk(a, NULL, "dev1", "devices/dev1/temp", ACL_WRITE));
	assert_false(chk(a, NULL, "dev1", "devices/dev2/temp", ACL_WRITE));
	assert_true(chk(a, "ann", "c", "users/ann/inbox", ACL_READ));
	assert_false(chk(a, NULL, "c", "users/ann/inbox", ACL_READ));
	/* An id holding a wildcard or separator never substitutes. */
	assert_false(chk(a, NULL, "+", "devices/+/temp", ACL_SUBSCRIBE));
	assert_false(chk(a, NULL, "a/b", "devices/a/b/x", ACL_WRITE));
	acl_destroy(a);
}

static void test_bad_lines_name_file_and_line(void **state)
{
	(void)state;
	char err[256];
	int rc;
	acl *a = load_text("topic read a\nfrobnicate x\n", &rc, err, sizeof(err));
	assert_null(a);
	assert_true(rc < 0);
	assert_non_null(strstr(err, ":2: "));
	a = load_text("topic read a/#/b\n", &rc, err, sizeof(err));
	assert_null(a);
	assert_non_null(strstr(err, ":1: "));
	a = NULL;
	rc = acl_load("/nonexistent/acl", &a, err, sizeof(err));
	assert_true(rc < 0);
	assert_null(a);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_anonymous_topic_and_deny),
		cmocka_unit_test(test_user_and_access_words),
		cmocka_unit_test(test_pattern_substitution),
		cmocka_unit_test(test_bad_lines_name_file_and_line),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

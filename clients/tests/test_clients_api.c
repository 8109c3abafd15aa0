/*
 * Integration test of libshimmy's API against a running broker (run by
 * harness.py: test_clients_api TCP_URI [UNIX_PATH]). Covers the loan API,
 * copying publish with MQTT 5 properties, blocking and non-blocking
 * receive, the pollable fd with shimmy_client_process() in callback and
 * pull modes, the library thread, reconnect with resubscribe, statistics,
 * and the shm negotiation outcome over unix://.
 * Exit 0 when every check passed.
 */
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "shimmy.h"

static int fails, checks;

#define CHECK(cond, ...) do { \
	checks++; \
	if (!(cond)) { \
		fails++; \
		printf("FAIL %s:%d: ", __FILE__, __LINE__); \
		printf(__VA_ARGS__); \
		printf("\n"); \
	} \
} while (0)

static char prefix[64];

static shimmy_client *mk(const char *uri, int version, unsigned flags, const char *id)
{
	shimmy_opts *o = shimmy_opts_create();
	shimmy_client *c;
	int err = 0;

	shimmy_opts_set_version(o, version);
	shimmy_opts_set_flags(o, flags);
	shimmy_opts_set_timeout_ms(o, 5000);
	if (id)
		shimmy_opts_set_client_id(o, id);
	c = shimmy_client_create(uri, o, &err);
	shimmy_opts_destroy(o);
	CHECK(c != NULL, "create %s: %s", uri, shimmy_strerror(err));
	if (!c)
		exit(1);
	return c;
}

static void topic_of(char *buf, size_t cap, const char *leaf)
{
	snprintf(buf, cap, "%s/%s", prefix, leaf);
}

static void sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
	nanosleep(&ts, NULL);
}

/* ---- loan + copy publish with properties, blocking/non-blocking recv ---- */

static void test_loan_and_recv(const char *uri)
{
	shimmy_client *pub = mk(uri, SHIMMY_MQTT_5, 0, NULL);
	shimmy_client *sub = mk(uri, SHIMMY_MQTT_5, 0, NULL);
	char filter[128], t[128];
	shimmy_msg *m, *m2;
	void *buf;
	size_t len, kl, vl;
	const char *k, *v;
	int rc;

	CHECK(shimmy_client_connect(pub, -1) == 0, "connect pub");
	CHECK(shimmy_client_connect(sub, -1) == 0, "connect sub");
	topic_of(filter, sizeof(filter), "loan/#");
	rc = shimmy_subscribe(sub, filter, 2, 0);
	CHECK(rc == 2, "subscribe granted %d", rc);
	CHECK(shimmy_try_recv(sub, &m) == SHIMMY_ERR_AGAIN, "try_recv on empty");

	/* Loan: fill the payload in place, at QoS 0, 1 and 2. */
	for (int q = 0; q <= 2; q++) {
		snprintf(t, sizeof(t), "%s/loan/q%d", prefix, q);
		rc = shimmy_loan(pub, t, 11, &buf);
		CHECK(rc == 0 && buf, "loan: %s", shimmy_strerror(rc));
		memcpy(buf, "loaned-data", 11);
		rc = shimmy_commit(pub, buf, q, 0);
		CHECK(rc == 0, "commit q%d: %s", q, shimmy_strerror(rc));
	}
	/* Without a thread, the publisher must be driven for QoS 2 to finish
	 * (mosquitto releases a QoS 2 message on PUBREL). */
	CHECK(shimmy_client_flush(pub, -1) == 0, "flush loans");
	for (int q = 0; q <= 2; q++) {
		rc = shimmy_recv(sub, &m, 5000);
		CHECK(rc == 0, "recv loan q%d: %s", q, shimmy_strerror(rc));
		if (rc)
			continue;
		snprintf(t, sizeof(t), "%s/loan/q%d", prefix, q);
		CHECK(strcmp(shimmy_msg_topic(m, NULL), t) == 0, "topic %s", shimmy_msg_topic(m, NULL));
		const void *p = shimmy_msg_payload(m, &len);
		CHECK(len == 11 && memcmp(p, "loaned-data", 11) == 0, "loan payload");
		CHECK(shimmy_msg_qos(m) == q, "qos %d", shimmy_msg_qos(m));
		/* One borrowed message at a time. */
		CHECK(shimmy_recv(sub, &m2, 0) == SHIMMY_ERR_BUSY, "second borrow is BUSY");
		shimmy_msg_release(sub, m);
	}

	/* Copying publish with properties; loan with properties. */
	shimmy_props *pr = shimmy_props_create();
	shimmy_props_add_user(pr, "k1", "v1");
	shimmy_props_add_user(pr, "k2", "v2");
	shimmy_props_set_content_type(pr, "text/plain");
	shimmy_props_set_correlation_data(pr, "\x01\x02", 2);
	shimmy_props_set_response_topic(pr, "reply/here");
	shimmy_props_set_message_expiry(pr, 600);
	shimmy_props_set_payload_format(pr, 1);
	topic_of(t, sizeof(t), "loan/props");
	CHECK(shimmy_publish(pub, t, "with-props", 10, 1, SHIMMY_PUB_RETAIN, pr) == 0, "publish props");
	rc = shimmy_loan_props(pub, t, 3, pr, &buf);
	CHECK(rc == 0, "loan props");
	memcpy(buf, "abc", 3);
	CHECK(shimmy_commit(pub, buf, 2, 0) == 0, "commit props");
	CHECK(shimmy_client_flush(pub, -1) == 0, "flush props");
	shimmy_props_destroy(pr);
	for (int i = 0; i < 2; i++) {
		rc = shimmy_recv(sub, &m, 5000);
		CHECK(rc == 0, "recv props: %s", shimmy_strerror(rc));
		if (rc)
			continue;
		const shimmy_props *mp = shimmy_msg_props(m);
		CHECK(shimmy_props_user_count(mp) == 2, "user count %zu", shimmy_props_user_count(mp));
		CHECK(shimmy_props_user_get(mp, 1, &k, &kl, &v, &vl) == 0 && kl == 2 &&
		      !memcmp(k, "k2", 2) && vl == 2 && !memcmp(v, "v2", 2), "user prop 2");
		const char *ct = shimmy_props_content_type(mp, &len);
		CHECK(ct && len == 10 && !memcmp(ct, "text/plain", 10), "content type");
		const char *uv = shimmy_props_user_find(mp, "k1", &len);
		CHECK(uv && len == 2 && !memcmp(uv, "v1", 2), "user_find");
		const void *cd = shimmy_props_correlation_data(mp, &len);
		CHECK(cd && len == 2 && !memcmp(cd, "\x01\x02", 2), "correlation data");
		const char *rt = shimmy_props_response_topic(mp, &len);
		CHECK(rt && len == 10, "response topic");
		uint32_t exp = 0;
		CHECK(shimmy_props_message_expiry(mp, &exp) == 1 && exp > 0 && exp <= 600, "expiry %u", exp);
		int pf = 0;
		CHECK(shimmy_props_payload_format(mp, &pf) == 1 && pf == 1, "payload format");
		CHECK(shimmy_props_add_user((shimmy_props *)mp, "x", "y") == SHIMMY_ERR_STATE,
		      "views are read-only");
		CHECK(i == 0 ? shimmy_msg_retain(m) == 0 : 1, "live message not retained");
		shimmy_msg_release(sub, m);
	}
	/* Clear the retained message. */
	CHECK(shimmy_publish(pub, t, NULL, 0, 1, SHIMMY_PUB_RETAIN, NULL) == 0, "clear retained");
	rc = shimmy_recv(sub, &m, 5000);
	CHECK(rc == 0, "recv clear");
	if (rc == 0)
		shimmy_msg_release(sub, m);

	/* 100 KB through the loan at QoS 2. */
	size_t big = 100000;
	topic_of(t, sizeof(t), "loan/big");
	CHECK(shimmy_loan(pub, t, big, &buf) == 0, "big loan");
	for (size_t i = 0; i < big; i++)
		((unsigned char *)buf)[i] = (unsigned char)(i * 31 + 7);
	CHECK(shimmy_commit(pub, buf, 2, 0) == 0, "big commit");
	CHECK(shimmy_client_flush(pub, -1) == 0, "flush big");
	rc = shimmy_recv(sub, &m, 5000);
	CHECK(rc == 0, "recv big: %s", shimmy_strerror(rc));
	if (rc == 0) {
		const unsigned char *p = shimmy_msg_payload(m, &len);
		int ok = len == big;
		for (size_t i = 0; ok && i < big; i++)
			ok = p[i] == (unsigned char)(i * 31 + 7);
		CHECK(ok, "big payload intact (len %zu)", len);
		shimmy_msg_release(sub, m);
	}
	CHECK(shimmy_client_flush(pub, -1) == 0, "flush");
	CHECK(shimmy_client_stat(pub, SHIMMY_STAT_TX_MSGS) == 7, "tx msgs %llu",
	      (unsigned long long)shimmy_client_stat(pub, SHIMMY_STAT_TX_MSGS));
	CHECK(shimmy_client_stat(sub, SHIMMY_STAT_RX_MSGS) == 7, "rx msgs %llu",
	      (unsigned long long)shimmy_client_stat(sub, SHIMMY_STAT_RX_MSGS));
	CHECK(shimmy_client_stat(sub, SHIMMY_STAT_RX_BYTES) == 33 + 13 + big, "rx bytes");
	CHECK(shimmy_client_stat(sub, SHIMMY_STAT_LOST_MSGS) == 0, "no losses");
	CHECK(shimmy_unsubscribe(sub, filter) == 0, "unsubscribe");
	CHECK(shimmy_client_disconnect(sub, 1000) == 0, "disconnect");
	CHECK(shimmy_client_disconnect(pub, 1000) == 0, "disconnect");
	shimmy_client_destroy(sub);
	shimmy_client_destroy(pub);
}

/* ---- pollable fd: callback mode and pull mode ---- */

static atomic_int cb_count;

static void on_msg(shimmy_client *c, const shimmy_msg *m, void *ctx)
{
	size_t len;
	shimmy_msg_payload(m, &len);
	if (len == 4)
		atomic_fetch_add(&cb_count, 1);
}

static void test_pollable_fd(const char *uri, int version)
{
	shimmy_client *pub = mk(uri, version, 0, NULL);
	shimmy_client *cb = mk(uri, version, 0, NULL);
	shimmy_client *pull = mk(uri, version, 0, NULL);
	char filter[128], t[128];
	const int n = 200;
	int got_pull = 0;
	shimmy_msg *m;

	CHECK(shimmy_client_connect(pub, -1) == 0, "connect");
	CHECK(shimmy_client_connect(cb, -1) == 0, "connect");
	CHECK(shimmy_client_connect(pull, -1) == 0, "connect");
	snprintf(filter, sizeof(filter), "%s/fd%d/#", prefix, version);
	snprintf(t, sizeof(t), "%s/fd%d/x", prefix, version);
	atomic_store(&cb_count, 0);
	shimmy_client_set_on_message(cb, on_msg, NULL);
	CHECK(shimmy_subscribe(cb, filter, 1, 0) == 1, "sub cb");
	CHECK(shimmy_subscribe(pull, filter, 1, 0) == 1, "sub pull");
	int fd_before = shimmy_client_fd(cb);
	CHECK(fd_before >= 0, "client fd");
	CHECK(shimmy_recv(cb, &m, 0) == SHIMMY_ERR_STATE, "recv with a callback is STATE");

	for (int i = 0; i < n; i++)
		CHECK(shimmy_publish(pub, t, "ping", 4, i % 3 == 0 ? 0 : 1, 0, NULL) == 0, "pub");
	CHECK(shimmy_client_flush(pub, -1) == 0, "flush");

	for (int spins = 0; spins < 500 && (atomic_load(&cb_count) < n || got_pull < n); spins++) {
		struct pollfd pfd[2] = { { shimmy_client_fd(cb), POLLIN, 0 },
					 { shimmy_client_fd(pull), POLLIN, 0 } };
		int t1 = shimmy_client_timeout_ms(cb);
		poll(pfd, 2, t1 < 0 || t1 > 20 ? 20 : t1);
		if (pfd[0].revents & POLLIN)
			CHECK(shimmy_client_process(cb) == 0, "process cb");
		if (pfd[1].revents & POLLIN) {
			CHECK(shimmy_client_process(pull) == 0, "process pull");
			while (shimmy_try_recv(pull, &m) == 0) {
				got_pull++;
				shimmy_msg_release(pull, m);
			}
		}
	}
	CHECK(atomic_load(&cb_count) == n, "v%d callback via fd got %d of %d", version,
	      atomic_load(&cb_count), n);
	CHECK(got_pull == n, "v%d pull via fd got %d of %d", version, got_pull, n);
	/* Nothing queued any more: the fd must not be readable. */
	struct pollfd pf = { shimmy_client_fd(pull), POLLIN, 0 };
	CHECK(poll(&pf, 1, 0) == 0, "fd idle when drained");
	shimmy_client_destroy(pub);
	shimmy_client_destroy(cb);
	shimmy_client_destroy(pull);
}

/* ---- library thread ---- */

static void test_thread(const char *uri)
{
	shimmy_client *pub = mk(uri, SHIMMY_MQTT_5, 0, NULL);
	shimmy_client *sub = mk(uri, SHIMMY_MQTT_5, 0, NULL);
	char filter[128], t[128];
	const int n = 2000;
	shimmy_msg *m;

	atomic_store(&cb_count, 0);
	CHECK(shimmy_client_connect(pub, -1) == 0, "connect");
	CHECK(shimmy_client_connect(sub, -1) == 0, "connect");
	shimmy_client_set_on_message(sub, on_msg, NULL);
	CHECK(shimmy_client_start_thread(sub) == 0, "start thread");
	CHECK(shimmy_client_start_thread(sub) == SHIMMY_ERR_STATE, "second start");
	CHECK(shimmy_try_recv(sub, &m) == SHIMMY_ERR_STATE, "try_recv with thread");
	topic_of(filter, sizeof(filter), "thr/#");
	topic_of(t, sizeof(t), "thr/x");
	/* subscribe from the app thread while the library thread pumps */
	CHECK(shimmy_subscribe(sub, filter, 2, 0) == 2, "sub");
	CHECK(shimmy_client_start_thread(pub) == 0, "start pub thread");
	for (int i = 0; i < n; i++) {
		int rc = shimmy_publish(pub, t, "tick", 4, 1 + (i & 1), 0, NULL);
		if (rc) {
			CHECK(0, "thread publish %d: %s", i, shimmy_strerror(rc));
			break;
		}
	}
	CHECK(shimmy_client_flush(pub, 10000) == 0, "flush with thread");
	/* Generous: under ASan on a loaded 2-core machine QoS 2 is slow. */
	for (int i = 0; i < 3000 && atomic_load(&cb_count) < n; i++)
		sleep_ms(10);
	CHECK(atomic_load(&cb_count) == n, "thread callback got %d of %d", atomic_load(&cb_count), n);
	CHECK(shimmy_client_stop_thread(sub) == 0, "stop thread");
	CHECK(shimmy_client_stop_thread(pub) == 0, "stop pub thread");
	shimmy_client_destroy(pub);
	shimmy_client_destroy(sub);
}

/* ---- reconnect: the broker drops us (session takeover); we come back ---- */

static atomic_int conn_events;

static void on_conn(shimmy_client *c, int status, void *ctx)
{
	atomic_fetch_add(&conn_events, 1);
}

static void test_reconnect(const char *uri)
{
	char id[96], filter[128], t[128];
	shimmy_client *rc_c, *thief, *pub;
	shimmy_msg *m;
	int rc;

	snprintf(id, sizeof(id), "%s-recon", prefix);
	rc_c = mk(uri, SHIMMY_MQTT_5, SHIMMY_OPT_RECONNECT, id);
	pub = mk(uri, SHIMMY_MQTT_5, 0, NULL);
	shimmy_client_set_on_connection(rc_c, on_conn, NULL);
	CHECK(shimmy_client_connect(rc_c, -1) == 0, "connect");
	CHECK(shimmy_client_connect(pub, -1) == 0, "connect");
	topic_of(filter, sizeof(filter), "recon/#");
	topic_of(t, sizeof(t), "recon/x");
	CHECK(shimmy_subscribe(rc_c, filter, 1, 0) == 1, "sub");

	/* Same client id: the broker closes rc_c's connection. */
	thief = mk(uri, SHIMMY_MQTT_5, 0, id);
	CHECK(shimmy_client_connect(thief, -1) == 0, "thief connect");
	shimmy_client_disconnect(thief, 1000);
	shimmy_client_destroy(thief);

	/* rc_c notices, reconnects with backoff and resubscribes (clean
	 * start: the session is new). Keep publishing until it hears one. */
	int heard = 0;
	for (int i = 0; i < 100 && !heard; i++) {
		shimmy_publish(pub, t, "back", 4, 1, 0, NULL);
		rc = shimmy_recv(rc_c, &m, 100);
		if (rc == 0) {
			heard = 1;
			shimmy_msg_release(rc_c, m);
		}
	}
	CHECK(heard, "message after reconnect");
	CHECK(shimmy_client_stat(rc_c, SHIMMY_STAT_RECONNECTS) >= 1, "reconnects %llu",
	      (unsigned long long)shimmy_client_stat(rc_c, SHIMMY_STAT_RECONNECTS));
	CHECK(atomic_load(&conn_events) >= 2, "on_connection lost+up (%d)", atomic_load(&conn_events));
	shimmy_client_destroy(rc_c);
	shimmy_client_destroy(pub);
}

/* ---- 3.1.1: properties are empty, no shm ---- */

static void test_v311(const char *uri)
{
	shimmy_client *c = mk(uri, SHIMMY_MQTT_311, 0, NULL);
	char t[128];
	shimmy_msg *m;
	void *buf;

	CHECK(shimmy_client_connect(c, -1) == 0, "connect 311");
	topic_of(t, sizeof(t), "v311");
	CHECK(shimmy_subscribe(c, t, 2, 0) == 2, "sub 311");
	CHECK(shimmy_loan(c, t, 5, &buf) == 0, "loan 311");
	memcpy(buf, "hello", 5);
	CHECK(shimmy_commit(c, buf, 2, 0) == 0, "commit 311");
	CHECK(shimmy_recv(c, &m, 5000) == 0, "recv own 311");
	CHECK(shimmy_props_user_count(shimmy_msg_props(m)) == 0, "no props in 311");
	shimmy_msg_release(c, m);
	shimmy_client_destroy(c);
}

/* ---- unix:// and the shm extension ---- */

static void test_unix(const char *path)
{
	char uri[300];
	shimmy_client *c;
	int rc;

	snprintf(uri, sizeof(uri), "unix://%s", path);
	c = mk(uri, SHIMMY_MQTT_5, 0, NULL);
	CHECK(shimmy_client_connect(c, -1) == 0, "unix connect");
	/* Offered; shimmyd echoes it (SHIMMY_EXPECT_SHM), mosquitto does not. */
	CHECK(shimmy_client_shm_active(c) == 0 || getenv("SHIMMY_EXPECT_SHM"), "shm not active");
	shimmy_client_destroy(c);

	c = mk(uri, SHIMMY_MQTT_5, SHIMMY_OPT_REQUIRE_SHM, NULL);
	rc = shimmy_client_connect(c, -1);
	if (getenv("SHIMMY_EXPECT_SHM"))
		CHECK(rc == 0, "require shm: %s", shimmy_strerror(rc));
	else
		CHECK(rc == SHIMMY_ERR_NO_SHM, "require shm gives NO_SHM, got %s", shimmy_strerror(rc));
	shimmy_client_destroy(c);

	/* SHIMMY_SOCKET names the default socket of "unix://". */
	setenv("SHIMMY_SOCKET", path, 1);
	c = mk("unix://", SHIMMY_MQTT_311, 0, NULL);
	CHECK(shimmy_client_connect(c, -1) == 0, "unix:// via SHIMMY_SOCKET");
	shimmy_client_destroy(c);
}

/*
 * Log growth through every publish path (docs/shm-protocol.md §2): on a
 * 64 KiB log (SHIMMY_SHM_LOG_CLASS=0, 16 KiB records) small messages and
 * 100 KB ones sent by copy (shimmy_publish), by loan (shimmy_loan) and by a
 * topic-bound publisher (shimmy_pub_loan) reach an shm subscriber in
 * publish order: each large one grows the log instead of overtaking the
 * small ones over MQTT.
 */
enum { GROW_N = 9, GROW_BIG = 100000 };

static size_t grow_len(int i)
{
	return i % 3 == 1 ? GROW_BIG : 4;
}

static void test_unix_growth(const char *path)
{
	char uri[300], t[128];
	static char big[GROW_BIG];
	shimmy_client *pub, *sub;
	shimmy_pub *h = NULL;
	shimmy_msg *m;
	void *buf;

	snprintf(uri, sizeof(uri), "unix://%s", path);
	topic_of(t, sizeof(t), "grow");
	setenv("SHIMMY_SHM_LOG_CLASS", "0", 1);
	sub = mk(uri, SHIMMY_MQTT_5, SHIMMY_OPT_REQUIRE_SHM, NULL);
	pub = mk(uri, SHIMMY_MQTT_5, SHIMMY_OPT_REQUIRE_SHM, NULL);
	CHECK(shimmy_client_connect(sub, -1) == 0, "growth sub connect");
	CHECK(shimmy_client_connect(pub, -1) == 0, "growth pub connect");
	CHECK(shimmy_subscribe(sub, t, 0, 0) == 0, "growth subscribe");
	sleep_ms(200);
	/* Messages 0-2 by copy, 3-5 by loan, 6-8 through a shimmy_pub;
	 * message i is grow_len(i) bytes of 'a' + i. */
	for (int i = 0; i < GROW_N; i++) {
		size_t len = grow_len(i);
		memset(big, 'a' + i, len);
		if (i < 3) {
			CHECK(shimmy_publish(pub, t, big, len, 0, 0, NULL) == 0, "publish %d", i);
		} else if (i < 6) {
			CHECK(shimmy_loan(pub, t, len, &buf) == 0, "loan %d", i);
			memcpy(buf, big, len);
			CHECK(shimmy_commit(pub, buf, 0, 0) == 0, "commit %d", i);
		} else {
			if (!h)
				CHECK(shimmy_pub_open(pub, t, &h) == 0, "pub open");
			CHECK(shimmy_pub_loan(h, len, &buf) == 0, "pub loan %d", i);
			memcpy(buf, big, len);
			CHECK(shimmy_pub_commit(h, buf) == 0, "pub commit %d", i);
		}
	}
	for (int i = 0; i < GROW_N; i++) {
		size_t len = 0;
		int rc = shimmy_recv(sub, &m, 5000);
		CHECK(rc == 0, "growth recv %d: %s", i, shimmy_strerror(rc));
		if (rc)
			break;
		const uint8_t *p = shimmy_msg_payload(m, &len);
		CHECK(len == grow_len(i) && p[0] == 'a' + i && p[len - 1] == 'a' + i,
		      "growth message %d: got %zu bytes of '%c', want %zu of '%c'", i, len,
		      len ? p[0] : '?', grow_len(i), 'a' + i);
		shimmy_msg_release(sub, m);
	}
	shimmy_pub_close(h);
	shimmy_client_destroy(pub);
	shimmy_client_destroy(sub);
	unsetenv("SHIMMY_SHM_LOG_CLASS");
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: %s TCP_URI [UNIX_PATH]\n", argv[0]);
		return 2;
	}
	snprintf(prefix, sizeof(prefix), "capi%d", (int)getpid());
	test_loan_and_recv(argv[1]);
	test_pollable_fd(argv[1], SHIMMY_MQTT_5);
	test_pollable_fd(argv[1], SHIMMY_MQTT_311);
	test_thread(argv[1]);
	test_v311(argv[1]);
	test_reconnect(argv[1]);
	if (argc > 2 && argv[2][0])
		test_unix(argv[2]);
	if (argc > 2 && argv[2][0] && getenv("SHIMMY_EXPECT_SHM"))
		test_unix_growth(argv[2]);
	printf("test_clients_api: %d checks, %d failed\n", checks, fails);
	return fails ? 1 : 0;
}

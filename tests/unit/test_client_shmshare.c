/* Unit tests for shared subscriptions over shm (docs/shm-protocol.md §7):
 * clients/shmshare (libshimmy's group member) driven by the real broker
 * module (broker/shm.c) through a fake core that knows each connection's
 * one shared filter and hands control packets to the connection's client
 * state. Checks SHARE_ATTACH/DETACH, exactly-once claims across members
 * and the broker (mixed groups), pages freed with their last member, and
 * a member scribbling on the page. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "broker/shm.h"
#include "clients/include/shimmy.h"
#include "clients/shm.h"
#include "mqtt/packet.h"
#include "mqtt/topic.h"
#include "shmpath/ctl.h"
#include "shmpath/segment.h"
#include "shm_fakes.h"

#define NCONN 4

typedef struct fcore {
	fconn *conns[NCONN];
	bool others;          /* the group has a member the broker serves */
	bool refuse;          /* route_share finds no such member */
	int routed_share;     /* records handed to route_share */
	uint8_t seen[512];    /* payload byte 0..1 = message number */
	int dups;
} fcore;

static fcore core;

static void f_route(void *from, const char *t, size_t len,
		    const shimmy_ring_msg *m, void *ctx)
{
	(void)from; (void)t; (void)len; (void)m; (void)ctx;
	fail_msg("groups must not be routed from a broadcast read");
}

static void share_of(const fconn *c, const char *t, size_t len,
		     shm_share_fn fn, void *arg)
{
	/* "$share/g/" + filter */
	if (!c->share)
		return;
	const char *f = strchr(c->share + 7, '/') + 1;
	if (mqtt_topic_match(mqtt_str_c(f), (mqtt_str){ t, (uint32_t)len }))
		fn(c->share, strlen(c->share), arg);
}

static void f_shares(void *conn, const char *t, size_t len, shm_share_fn fn,
		     void *arg, void *ctx)
{
	fcore *fc = ctx;
	if (conn) {
		share_of(conn, t, len, fn, arg);
		return;
	}
	for (int i = 0; i < NCONN; i++)
		if (fc->conns[i])
			share_of(fc->conns[i], t, len, fn, arg);
}

static bool f_share_others(const char *f, size_t flen, const char *t,
			   size_t len, void *ctx)
{
	(void)f; (void)flen; (void)t; (void)len;
	return ((fcore *)ctx)->others;
}

static void note(fcore *fc, const uint8_t *payload, size_t len)
{
	assert_int_equal(len, 2);
	unsigned k = (unsigned)payload[0] | (unsigned)payload[1] << 8;
	assert_true(k < sizeof(fc->seen));
	if (fc->seen[k]++)
		fc->dups++;
}

static bool f_route_share(void *from, const char *f, size_t flen,
			  const char *t, size_t len, const shimmy_ring_msg *m,
			  void *ctx)
{
	(void)from; (void)t; (void)len;
	fcore *fc = ctx;
	assert_int_equal(flen, strlen("$share/g/a/#"));
	assert_memory_equal(f, "$share/g/a/#", flen);
	fc->routed_share++;
	if (fc->refuse)
		return false;
	note(fc, m->payload, m->payload_len);
	return true;
}

static shm_broker *mk(void)
{
	shm_env env = fake_env(&core);
	env.route = f_route;
	env.shares = f_shares;
	env.share_others = f_share_others;
	env.route_share = f_route_share;
	memset(&core, 0, sizeof(core));
	return fake_broker(&env);
}

static void conn_init(fconn *c, const char *share, int slot)
{
	fconn_init(c, NULL, share);
	core.conns[slot] = c;
}

static void request_log(shm_broker *sb, shm_client *bc, fconn *c, const char *topic)
{
	fake_request_log(sb, bc, c, topic, 0);
	assert_int_equal(cshm_log_state(c->cs, topic, strlen(topic)), CSHM_LOG_READY);
}

static void publish(fconn *p, unsigned k)
{
	uint8_t b[2] = { (uint8_t)k, (uint8_t)(k >> 8) };
	assert_int_equal(cshm_publish(p->cs, "a/b", 3, NULL, 0, b, 2), 0);
}

/* Claims one message as member c; returns 1 or 0. */
static int claim(fconn *c)
{
	cshm_msg m;
	int rc = cshm_next(c->cs, &m);
	if (rc != 1)
		return rc;
	assert_int_equal(m.topic_len, 3);
	assert_memory_equal(m.topic, "a/b", 3);
	note(&core, m.payload, m.len);
	cshm_msg m2;
	assert_int_equal(cshm_next(c->cs, &m2), SHIMMY_ERR_BUSY);
	assert_int_equal(cshm_release(c->cs), 0);
	return 1;
}

static shm_stats stats(shm_broker *sb)
{
	shm_stats st;
	shm_broker_stats(sb, &st);
	return st;
}

static void test_members_claim_exactly_once(void **state)
{
	(void)state;
	shm_broker *sb = mk();
	fconn P, A, B;
	conn_init(&P, NULL, 0);
	conn_init(&A, "$share/g/a/#", 1);
	conn_init(&B, "$share/g/a/#", 2);
	shm_client *bp = shm_client_open(sb, &P), *ba = shm_client_open(sb, &A),
		   *bb = shm_client_open(sb, &B);
	assert_true(bp && ba && bb);
	request_log(sb, bp, &P, "a/b");
	/* One page for the group, one SHARE_ATTACH per member. */
	assert_int_equal(A.attaches, 1);
	assert_int_equal(B.attaches, 1);
	assert_int_equal(stats(sb).shares, 1);
	assert_int_equal(stats(sb).share_members, 2);
	assert_int_equal(cshm_readers(A.cs), 1);

	for (unsigned k = 0; k < 300; k++)
		publish(&P, k);
	assert_true(cshm_has_data(A.cs));
	int ga = 0, gb = 0;
	for (;;) {
		int a = claim(&A), b = claim(&B);
		ga += a;
		gb += b;
		if (!a && !b)
			break;
	}
	assert_int_equal(ga + gb, 300);
	assert_true(ga > 0 && gb > 0);
	assert_int_equal(core.dups, 0);
	assert_false(cshm_has_data(A.cs));
	/* The broker read nothing itself. */
	assert_int_equal(core.routed_share, 0);
	assert_int_equal(shm_broker_poll(sb, 0), 0);
	assert_int_equal(core.routed_share, 0);

	/* A leaves (unsubscribes): SHARE_DETACH; B alone gets the rest. */
	A.share = NULL;
	shm_client_resubscribed(sb, ba);
	assert_int_equal(A.detaches, 1);
	assert_int_equal(cshm_readers(A.cs), 0);
	assert_int_equal(stats(sb).share_members, 1);
	publish(&P, 300);
	assert_int_equal(claim(&A), 0);
	assert_int_equal(claim(&B), 1);
	assert_int_equal(core.seen[300], 1);

	/* B's connection ends: the page goes with its last member. */
	shm_client_close(sb, bb);
	assert_int_equal(stats(sb).share_members, 0);
	assert_int_equal(stats(sb).shares, 0);
	assert_int_equal(stats(sb).logs, 1);
	assert_int_equal(P.ctl_errors + A.ctl_errors + B.ctl_errors, 0);

	shm_client_close(sb, ba);
	shm_client_close(sb, bp);
	shm_broker_destroy(sb);
	fconn_fini(&P);
	fconn_fini(&A);
	fconn_fini(&B);
}

/* A mixed group: the broker claims from the same page for the members it
 * serves, as one more claimant. */
static void test_broker_claims_for_others(void **state)
{
	(void)state;
	shm_broker *sb = mk();
	core.others = true;
	fconn P, A;
	conn_init(&P, NULL, 0);
	conn_init(&A, "$share/g/a/#", 1);
	shm_client *bp = shm_client_open(sb, &P), *ba = shm_client_open(sb, &A);
	request_log(sb, bp, &P, "a/b");
	assert_int_equal(stats(sb).shares, 1);
	for (unsigned k = 0; k < 200; k++) {
		publish(&P, k);
		if (k % 2)
			claim(&A);
		else
			shm_broker_poll(sb, 0);
	}
	while (claim(&A) == 1)
		;
	shm_broker_poll(sb, 0);
	int total = 0;
	for (unsigned k = 0; k < 200; k++)
		total += core.seen[k];
	assert_int_equal(total, 200);
	assert_int_equal(core.dups, 0);
	assert_true(core.routed_share > 0 && core.routed_share < 200);
	assert_int_equal(stats(sb).share_claimed, (uint64_t)core.routed_share);

	/* The broker's member went unannounced (e.g. expired): the record it
	 * claimed is dropped, the broker asks again and stops claiming; the
	 * shm member gets the rest. */
	core.others = false;
	core.refuse = true;
	publish(&P, 300);
	publish(&P, 301);
	int before = core.routed_share;
	shm_broker_poll(sb, 0);
	assert_int_equal(core.routed_share, before + 1);
	shm_broker_poll(sb, 0);
	assert_int_equal(core.routed_share, before + 1);
	assert_int_equal(claim(&A), 1);
	assert_int_equal(core.seen[301], 1);
	core.refuse = false;
	core.others = true;
	shm_client_resubscribed(sb, ba); /* a subscription change: decide again */

	/* The shm member leaves; the broker still claims: the page stays. */
	shm_client_close(sb, ba);
	assert_int_equal(stats(sb).shares, 1);
	publish(&P, 200);
	assert_int_equal(shm_broker_arm(sb), 1);
	shm_broker_disarm(sb);
	shm_broker_poll(sb, 0);
	assert_int_equal(core.seen[200], 1);

	/* The publisher goes: the broker drains the page, then frees it and
	 * the log. */
	publish(&P, 201);
	cshm_conn_lost(P.cs);
	shm_client_close(sb, bp);
	assert_int_equal(stats(sb).logs, 1);
	shm_broker_poll(sb, 0);
	shm_broker_poll(sb, 0);
	assert_int_equal(core.seen[201], 1);
	assert_int_equal(stats(sb).shares, 0);
	assert_int_equal(stats(sb).logs, 0);
	shm_broker_destroy(sb);
	fconn_fini(&P);
	fconn_fini(&A);
}

/* The publisher goes while members are attached: they drain the page,
 * then drop it. */
static void test_publisher_gone_members_drain(void **state)
{
	(void)state;
	shm_broker *sb = mk();
	fconn P, A;
	conn_init(&P, NULL, 0);
	conn_init(&A, "$share/g/a/#", 1);
	shm_client *bp = shm_client_open(sb, &P), *ba = shm_client_open(sb, &A);
	request_log(sb, bp, &P, "a/b");
	publish(&P, 7);
	cshm_conn_lost(P.cs);
	shm_client_close(sb, bp);
	assert_int_equal(stats(sb).shares, 0);
	assert_int_equal(stats(sb).logs, 0);
	assert_int_equal(claim(&A), 1);
	assert_int_equal(core.seen[7], 1);
	assert_int_equal(claim(&A), 0); /* -EPIPE: dropped */
	assert_int_equal(cshm_readers(A.cs), 0);
	shm_client_close(sb, ba);
	shm_broker_destroy(sb);
	fconn_fini(&P);
	fconn_fini(&A);
}

/* A member scribbling on the shared page harms its own group at most:
 * the other member and the broker (claiming too) neither crash nor hang. */
static void test_scribbled_page(void **state)
{
	(void)state;
	shm_broker *sb = mk();
	core.others = true;
	fconn P, A, B;
	conn_init(&P, NULL, 0);
	conn_init(&A, "$share/g/a/#", 1);
	conn_init(&B, "$share/g/a/#", 2);
	shm_client *bp = shm_client_open(sb, &P), *ba = shm_client_open(sb, &A),
		   *bb = shm_client_open(sb, &B);
	request_log(sb, bp, &P, "a/b");
	publish(&P, 1);
	assert_int_equal(claim(&A), 1);
	/* A maps the page it was given read-write, as any member does, and
	 * writes garbage over the cursor (slot offset 64) and counters. */
	shimmy_seg pg;
	assert_true(A.page_fd >= 0);
	assert_int_equal(shimmy_seg_map(&pg, A.page_fd, SHIMMY_SEG_SHARE,
					SHIMMY_SEG_RDWR), 0);
	A.page_fd = -1;
	size_t plen;
	uint8_t *page = shimmy_seg_body(&pg, &plen);
	static const uint64_t bad[] = { (uint64_t)1 << 40, UINT64_MAX - 63, 63, 1 };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		memcpy(page + 64, &bad[i], sizeof(bad[i]));
		memset(page + 256, 0xff, 24);
		publish(&P, 10 + (unsigned)i);
		for (int k = 0; k < 4; k++) {
			(void)claim(&B);
			(void)shm_broker_arm(sb);
			shm_broker_disarm(sb);
			(void)shm_broker_poll(sb, 0);
		}
	}
	assert_int_equal(core.dups, 0);
	(void)stats(sb); /* group loss from garbage counters: no crash */
	shimmy_seg_unmap(&pg);
	shm_client_close(sb, ba);
	shm_client_close(sb, bb);
	shm_client_close(sb, bp);
	assert_int_equal(stats(sb).shares, 0);
	shm_broker_destroy(sb);
	fconn_fini(&P);
	fconn_fini(&A);
	fconn_fini(&B);
}

/* Publishes numbered (u32) QoS 1 records into P's reliable log "a/b"
 * from *k on, until it is full (-EAGAIN) or max went in. Returns how many
 * went in. */
static int fill_reliable(fconn *p, uint32_t *k, int max)
{
	int n = 0, rc = 0;
	while (n < max) {
		rc = cshm_publish_qos(p->cs, "a/b", 3, NULL, 0, k, sizeof(*k), 1, 0);
		if (rc != 0)
			break;
		(*k)++;
		n++;
	}
	assert_true(rc == 0 || rc == -EAGAIN);
	return n;
}

/* Claims everything there is as c, checking the numbers only grow (one
 * cursor: nothing claimed twice). Returns how many. */
static int claim_all(fconn *c, uint32_t *last)
{
	cshm_msg m;
	int n = 0;
	while (cshm_next(c->cs, &m) == 1) {
		uint32_t k;
		assert_int_equal(m.len, sizeof(k));
		memcpy(&k, m.payload, sizeof(k));
		assert_true(n == 0 && *last == UINT32_MAX ? 1 : k > *last);
		*last = k;
		assert_int_equal(cshm_release(c->cs), 0);
		n++;
	}
	return n;
}

/* A group whose members all stop claiming holds a reliable writer back
 * only until the reader timeout: the page is cut loose (entry FREE,
 * READER_DROP, `readers cut`), its members go on claiming from it as from
 * a lossy log, the loss counted, and once its cursor moves the page is
 * tethered again, at the tail. */
static void test_stuck_group_cut_loose_and_rejoins(void **state)
{
	(void)state;
	shm_broker *sb = mk(); /* reader timeout 1000 ms */
	fconn P, A;
	conn_init(&P, NULL, 0);
	conn_init(&A, "$share/g/a/#", 1);
	shm_client *bp = shm_client_open(sb, &P), *ba = shm_client_open(sb, &A);
	assert_true(bp && ba);
	uint8_t buf[256];
	int len = cshm_log_request(P.cs, "a/b", 3, 0, SHIMMY_CTL_F_RELIABLE, buf,
				   sizeof(buf));
	assert_true(len > 0);
	assert_int_equal(shm_client_ctl(sb, bp, buf, (size_t)len), 0);
	assert_int_equal(cshm_log_reliable(P.cs, "a/b", 3), 1);
	assert_int_equal(A.attaches, 1);

	/* A claims one, then stops: the group's cursor holds the writer. */
	uint32_t k = 0, last = UINT32_MAX;
	assert_int_equal(fill_reliable(&P, &k, 1), 1);
	assert_int_equal(claim_all(&A, &last), 1);
	int n1 = fill_reliable(&P, &k, 1 << 20);
	assert_true(n1 > 1000);
	assert_int_equal(fill_reliable(&P, &k, 1), 0);
	shm_broker_tick(sb, 10000);
	shm_broker_tick(sb, 10999);
	assert_int_equal(stats(sb).readers_cut, 0);
	assert_int_equal(fill_reliable(&P, &k, 1), 0);
	/* Stuck for the timeout: cut loose; the writer goes on, laps it. */
	shm_broker_tick(sb, 11000);
	assert_int_equal(stats(sb).readers_cut, 1);
	assert_int_equal(fill_reliable(&P, &k, 3 * n1), 3 * n1);
	/* Still nobody claims: it stays cut, counted once. */
	shm_broker_tick(sb, 20000);
	assert_int_equal(stats(sb).readers_cut, 1);
	assert_int_equal(A.detaches, 0);
	assert_int_equal(fill_reliable(&P, &k, n1), n1);

	/* A member claims again: what survived, the rest counted lost. */
	int got = 1 + claim_all(&A, &last);
	assert_true(got > 1 && got < 5 * n1);
	assert_true(cshm_share_lost(A.cs) > 0);
	assert_int_equal(got + cshm_share_lost(A.cs), k);
	/* The cursor moved: tethered again at the tail (READER_ADD), and
	 * the writer is held by the group once more. */
	shm_broker_tick(sb, 21000);
	assert_int_equal(stats(sb).readers_cut, 1);
	int n2 = fill_reliable(&P, &k, 1 << 20);
	assert_true(n2 > 1000 && n2 <= n1 + 64);
	assert_int_equal(fill_reliable(&P, &k, 1), 0);
	uint64_t lost = cshm_share_lost(A.cs);
	assert_int_equal(claim_all(&A, &last), n2);
	assert_int_equal(cshm_share_lost(A.cs), lost);
	assert_int_equal(fill_reliable(&P, &k, 1), 1);
	/* Claiming as it should: never cut. */
	for (uint64_t t = 22000; t < 30000; t += 1000)
		shm_broker_tick(sb, t);
	assert_int_equal(stats(sb).readers_cut, 1);
	assert_int_equal(P.ctl_errors + A.ctl_errors, 0);

	shm_client_close(sb, ba);
	shm_client_close(sb, bp);
	shm_broker_destroy(sb);
	fconn_fini(&P);
	fconn_fini(&A);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_members_claim_exactly_once),
		cmocka_unit_test(test_broker_claims_for_others),
		cmocka_unit_test(test_publisher_gone_members_drain),
		cmocka_unit_test(test_scribbled_page),
		cmocka_unit_test(test_stuck_group_cut_loose_and_rejoins),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

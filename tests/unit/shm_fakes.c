/* The shared fake broker core of the client-side shm tests (shm_fakes.h). */
#include "shm_fakes.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <string.h>
#include <unistd.h>

#include "mqtt/packet.h"
#include "mqtt/topic.h"

static int f_send(void *conn, const uint8_t *pkt, size_t len, int *fds,
		  unsigned nfds, void *ctx)
{
	(void)ctx;
	fconn *c = conn;
	mqtt_packet p;
	shimmy_ctl m;
	assert_int_equal(mqtt_decode(pkt, len, MQTT_V5, 0, &p), (int)len);
	assert_int_equal(shimmy_ctl_decode(p.u.publish.payload.ptr,
					   p.u.publish.payload.len, &m), 0);
	c->attaches += m.type == SHIMMY_CTL_SHARE_ATTACH;
	c->detaches += m.type == SHIMMY_CTL_SHARE_DETACH;
	if (m.type == SHIMMY_CTL_SHARE_ATTACH) {
		if (c->page_fd >= 0)
			close(c->page_fd);
		c->page_fd = dup(fds[1]);
	}
	for (unsigned i = 0; i < nfds; i++)
		shimmy_fdq_push(&c->q, fds[i]);
	if (cshm_on_ctl(c->cs, p.u.publish.payload.ptr, p.u.publish.payload.len,
			&c->q) < 0)
		c->ctl_errors++;
	return 0;
}

static bool f_may(void *conn, const char *t, size_t len, bool w, void *ctx)
{
	(void)conn; (void)t; (void)len; (void)w; (void)ctx;
	return true;
}

static bool f_wants(void *conn, const char *t, size_t len, void *from, void *ctx)
{
	(void)from; (void)ctx;
	fconn *c = conn;
	return c->filter && mqtt_topic_match(mqtt_str_c(c->filter),
					     (mqtt_str){ t, (uint32_t)len });
}

static bool f_others(const char *t, size_t len, void *ctx)
{
	(void)t; (void)len; (void)ctx;
	return false;
}

static void f_route(void *from, const char *t, size_t len,
		    const shimmy_ring_msg *m, void *ctx)
{
	(void)from; (void)t; (void)len; (void)m; (void)ctx;
}

shm_env fake_env(void *ctx)
{
	return (shm_env){ .send = f_send, .may = f_may, .wants = f_wants,
			  .others_want = f_others, .route = f_route,
			  .ctx = ctx };
}

shm_broker *fake_broker(const shm_env *env)
{
	shm_limits lim = { 1ull << 30, 10, 1000 };
	int err;
	shm_broker *sb = shm_broker_create(env, &lim, &err);
	assert_non_null(sb);
	return sb;
}

void fconn_init(fconn *c, const char *filter, const char *share)
{
	memset(c, 0, sizeof(*c));
	c->cs = cshm_create(NULL);
	assert_non_null(c->cs);
	shimmy_fdq_init(&c->q);
	c->filter = filter;
	c->share = share;
	c->page_fd = -1;
}

void fconn_fini(fconn *c)
{
	cshm_destroy(c->cs);
	shimmy_fdq_fini(&c->q);
	if (c->page_fd >= 0)
		close(c->page_fd);
}

void fake_request_log(shm_broker *sb, shm_client *bc, fconn *c,
		      const char *topic, unsigned flags)
{
	uint8_t buf[256];
	int n = cshm_log_request(c->cs, topic, strlen(topic), UINT32_MAX, flags,
				 buf, sizeof(buf));
	assert_true(n > 0);
	assert_int_equal(cshm_log_state(c->cs, topic, strlen(topic)),
			 CSHM_LOG_PENDING);
	assert_int_equal(shm_client_ctl(sb, bc, buf, (size_t)n), 0);
}

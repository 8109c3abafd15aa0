/* A fake broker core for the client-side shm tests (test_client_shm,
 * test_client_shmshare): the real broker module (broker/shm.c) talks to
 * fake connections, each owning libshimmy's shm state (clients/shm.h), and
 * every control packet with its fds is handed to the state of the
 * connection it is for. Single-threaded, like the tests. */
#ifndef SHIMMY_TESTS_SHM_FAKES_H
#define SHIMMY_TESTS_SHM_FAKES_H

#include <stddef.h>

#include "broker/shm.h"
#include "clients/shm.h"
#include "shmpath/ctl.h"

/* One client connection as the fake core sees it. */
typedef struct fconn {
	cshm *cs;
	shimmy_fdq q;
	const char *filter;     /* its one plain subscription, or NULL */
	const char *share;      /* its one "$share/G/f" subscription, or NULL */
	int ctl_errors;         /* cshm_on_ctl() failures */
	int attaches, detaches; /* SHARE_ATTACH/SHARE_DETACH received */
	int page_fd;            /* a dup of the last share page fd, or -1 */
} fconn;

/* The callbacks every test core starts from, with ctx: send delivers to
 * the fconn (counting share attaches, keeping the page fd), may allows
 * all, wants matches the fconn's filter, others_want says no, route
 * drops. Tests override what they check. */
shm_env fake_env(void *ctx);
/* A broker module over env (copied) with the tests' limits. */
shm_broker *fake_broker(const shm_env *env);

/* filter, share: borrowed for c's life; either may be NULL. */
void fconn_init(fconn *c, const char *filter, const char *share);
void fconn_fini(fconn *c);

/* The publisher side of the request/grant exchange for topic (flags:
 * SHIMMY_CTL_F_RELIABLE for a QoS 1/2 log): the request is pending until
 * the broker module has it. */
void fake_request_log(shm_broker *sb, shm_client *bc, fconn *c,
		      const char *topic, unsigned flags);

#endif

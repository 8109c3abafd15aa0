/*
 * broker/main.c — shimmyd: parses the command line and config, opens the
 * listeners and runs the event loop until SIGTERM/SIGINT.
 * Exit status: 0 on a clean stop (or -h), 1 on a bad config, a listener
 * that cannot be opened, or a loop failure.
 */
#include <stdlib.h>

#include "broker/acl.h"
#include "broker/broker.h"
#include "broker/config.h"
#include "broker/log.h"
#include "broker/server.h"

#ifndef SHIMMY_VERSION
#define SHIMMY_VERSION "0.1.0"
#endif

/* What SIGHUP needs to re-parse, and the cfg/log the server borrows. */
typedef struct shimmyd {
	broker_cfg cfg;
	shimmy_log log;
	int argc;
	char **argv;
	server *srv;
	acl *acl; /* from acl_file; NULL = none */
} shimmyd;

/* Loads cfg.acl_file into *out (NULL when unset). Logs and fails on error. */
static int load_acl(const shimmyd *d, acl **out)
{
	char err[512];
	*out = NULL;
	if (!d->cfg.acl_file[0])
		return 0;
	if (acl_load(d->cfg.acl_file, out, err, sizeof(err)) < 0) {
		log_write(&d->log, LOG_ERR, "Error: %s", err);
		return -1;
	}
	return 0;
}

static void on_reload(void *ctx)
{
	shimmyd *d = ctx;
	if (config_reload(&d->cfg, d->argc, d->argv, &d->log) < 0) {
		log_write(&d->log, LOG_ERR,
			  "Error: reload failed; keeping the current configuration.");
		return;
	}
	config_apply_log(&d->cfg, &d->log);
	acl *a;
	if (load_acl(d, &a) < 0) {
		log_write(&d->log, LOG_ERR,
			  "Error: ACL reload failed; keeping the current ACL.");
		return;
	}
	broker_set_acl(server_broker(d->srv), a);
	acl_destroy(d->acl);
	d->acl = a;
}

int main(int argc, char **argv)
{
	int status = 1;
	/* broker_cfg is large (paths), so it lives on the heap. */
	shimmyd *d = calloc(1, sizeof(*d));
	if (!d)
		return 1;
	d->argc = argc;
	d->argv = argv;
	log_init(&d->log);
	if (config_from_args(&d->cfg, argc, argv, &d->log) < 0)
		goto out_free;
	if (d->cfg.help) {
		config_usage(1);
		status = 0;
		goto out_free;
	}
	config_apply_log(&d->cfg, &d->log);
	log_write(&d->log, LOG_NOTICE, "shimmy version %s starting",
		  SHIMMY_VERSION);
	if (d->cfg.config_file[0])
		log_write(&d->log, LOG_NOTICE, "Config loaded from %s.",
			  d->cfg.config_file);
	else
		log_write(&d->log, LOG_NOTICE, "Using default config.");

	if (load_acl(d, &d->acl) < 0)
		goto out_free;
	server *s = server_create(&d->cfg, &d->log, on_reload, d);
	if (!s)
		goto out_free;
	d->srv = s;
	broker_set_acl(server_broker(s), d->acl);
	if (server_listen(s) == 0 && server_run(s) == 0)
		status = 0;
	log_write(&d->log, LOG_NOTICE, "shimmy version %s terminating",
		  SHIMMY_VERSION);
	server_destroy(s);
out_free:
	acl_destroy(d->acl);
	free(d);
	return status;
}

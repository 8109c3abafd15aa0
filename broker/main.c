/*
 * broker/main.c — shimmyd: parses the command line and config, opens the
 * listeners and runs the event loop until SIGTERM/SIGINT.
 * Exit status: 0 on a clean stop (or -h), 1 on a bad config, a listener
 * that cannot be opened, or a loop failure.
 */
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker/acl.h"
#include "broker/authn.h"
#include "broker/broker.h"
#include "broker/config.h"
#include "broker/log.h"
#include "broker/scram.h"
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
	scram_db *scram; /* from auth_scram_file; NULL = none */
	authn authn;     /* enhanced-auth methods offered; borrows scram */
} shimmyd;

/* Loads cfg.scram_file into *out (NULL when unset). Logs and fails on
 * error, naming the file and line. */
static int load_scram(const shimmyd *d, scram_db **out)
{
	*out = NULL;
	if (!d->cfg.scram_file[0])
		return 0;
	scram_db *db = scram_db_create();
	if (!db) {
		log_write(&d->log, LOG_ERR, "Error: out of memory.");
		return -1;
	}
	unsigned bad_line = 0;
	int rc = scram_db_load(db, d->cfg.scram_file, &bad_line);
	if (rc < 0) {
		if (bad_line)
			log_write(&d->log, LOG_ERR,
				  "Error: %s:%u: malformed SCRAM credentials line.",
				  d->cfg.scram_file, bad_line);
		else
			log_write(&d->log, LOG_ERR, "Error: cannot read %s: %s.",
				  d->cfg.scram_file, strerror(-rc));
		scram_db_destroy(db);
		return -1;
	}
	*out = db;
	return 0;
}

/* Offers SCRAM-SHA-256 over db (or nothing when db is NULL). */
static void apply_authn(shimmyd *d, scram_db *db)
{
	authn_init(&d->authn);
	if (db) {
		authn_method m;
		scram_authn_method(db, &m);
		authn_add(&d->authn, &m);
	}
	broker_set_authn(server_broker(d->srv), db ? &d->authn : NULL);
}

/* `shimmyd --scram-line USER PASSWORD [ITERATIONS]`: prints one line for
 * an auth_scram_file. */
static int scram_line_cmd(int argc, char **argv)
{
	if (argc < 4 || argc > 5) {
		fprintf(stderr, "usage: %s --scram-line USER PASSWORD [ITERATIONS]\n",
			argv[0]);
		return 2;
	}
	uint32_t iter = argc == 5 ? (uint32_t)strtoul(argv[4], NULL, 10) : 0;
	char line[1024];
	int n = scram_cred_line(argv[2], argv[3], iter, line, sizeof(line));
	if (n < 0) {
		fprintf(stderr, "%s: cannot make a SCRAM line for '%s': %s\n",
			argv[0], argv[2], strerror(-n));
		return 1;
	}
	printf("%s\n", line);
	return 0;
}

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
	scram_db *db;
	if (load_scram(d, &db) < 0) {
		log_write(&d->log, LOG_ERR,
			  "Error: SCRAM reload failed; keeping the current credentials.");
		return;
	}
	apply_authn(d, db);
	scram_db_destroy(d->scram);
	d->scram = db;
}

int main(int argc, char **argv)
{
	int status = 1;
	if (argc > 1 && strcmp(argv[1], "--scram-line") == 0)
		return scram_line_cmd(argc, argv);
	/*
	 * Large messages (100 KB payloads, their input buffers) are freed and
	 * allocated again at message rate. With glibc's defaults each free
	 * trims the heap top and each allocation faults fresh pages in (a
	 * sixth of the broker's time in a 100 KB stream). Keep up to 32 MiB
	 * of free heap, and mmap only allocations above 4 MiB.
	 */
	mallopt(M_TRIM_THRESHOLD, 32 << 20);
	mallopt(M_MMAP_THRESHOLD, 4 << 20);
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

	if (load_acl(d, &d->acl) < 0 || load_scram(d, &d->scram) < 0)
		goto out_free;
	server *s = server_create(&d->cfg, &d->log, on_reload, d);
	if (!s)
		goto out_free;
	d->srv = s;
	broker_set_acl(server_broker(s), d->acl);
	apply_authn(d, d->scram);
	if (server_listen(s) == 0 && server_run(s) == 0)
		status = 0;
	log_write(&d->log, LOG_NOTICE, "shimmy version %s terminating",
		  SHIMMY_VERSION);
	server_destroy(s);
out_free:
	acl_destroy(d->acl);
	scram_db_destroy(d->scram);
	free(d);
	return status;
}

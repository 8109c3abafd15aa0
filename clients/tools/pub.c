/*
 * clients/tools/pub.c — shimmy-pub: publish one message, a file, or stdin
 * lines, with mosquitto_pub's flags (plus --unix, --require-shm).
 * Payloads from a file or stdin are read straight into a loaned buffer
 * (shimmy_loan), so they are copied once, from the kernel into the packet.
 * Streams (-l, --repeat) at QoS 0 use a topic-bound publisher (shimmy_pub).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "clients/tools/common.h"

static void usage(void)
{
	fputs("Usage: shimmy-pub {-t topic} {-m message | -f file | -l | -n | -s} [options]\n"
	      " -t TOPIC       topic to publish to\n"
	      " -m MESSAGE     payload\n"
	      " -f FILE        payload: the whole file\n"
	      " -s             payload: all of stdin\n"
	      " -l             one message per stdin line (blank lines are skipped)\n"
	      " -n             empty (null) payload\n"
	      " -r             retain\n"
	      " --repeat N     publish the message N times\n", stderr);
	tool_common_usage();
}

enum src { SRC_NONE, SRC_MSG, SRC_FILE, SRC_STDIN, SRC_LINES, SRC_NULL };

static int pub_report(tool_cfg *t, int rc, const char *topic, size_t n, unsigned flags)
{
	if (rc)
		fprintf(stderr, "Error publishing: %s.\n", shimmy_strerror(rc));
	else
		tool_debug(t, "sent PUBLISH (q%d, r%d, '%s', ... (%zu bytes))", t->qos,
			   (flags & SHIMMY_PUB_RETAIN) != 0, topic, n);
	return rc;
}

static int pub(shimmy_client *c, tool_cfg *t, const char *topic, const void *p, size_t n,
	       unsigned flags)
{
	return pub_report(t, shimmy_publish(c, topic, p, n, t->qos, flags, t->pub_props),
			  topic, n, flags);
}

/*
 * A stream of messages to one topic (-l, --repeat). At QoS 0, without
 * retain or properties, it goes through a topic-bound publisher
 * (shimmy_pub: a loan and a commit per message, no client lock);
 * otherwise through shimmy_publish().
 */
typedef struct stream {
	shimmy_client *c;
	tool_cfg *t;
	const char *topic;
	unsigned flags;
	shimmy_pub *h;
} stream;

static int stream_open(stream *s, shimmy_client *c, tool_cfg *t, const char *topic,
		       unsigned flags)
{
	*s = (stream){ .c = c, .t = t, .topic = topic, .flags = flags };
	if (t->qos != 0 || flags || t->pub_props)
		return 0;
	int rc = shimmy_pub_open(c, topic, &s->h);
	if (rc)
		fprintf(stderr, "Error: %s.\n", shimmy_strerror(rc));
	return rc;
}

static int stream_pub(stream *s, const void *p, size_t n)
{
	if (!s->h)
		return pub(s->c, s->t, s->topic, p, n, s->flags);
	void *buf;
	int rc = shimmy_pub_loan(s->h, n, &buf);
	if (rc == 0) {
		if (n)
			memcpy(buf, p, n);
		rc = shimmy_pub_commit(s->h, buf);
	}
	return pub_report(s->t, rc, s->topic, n, s->flags);
}

static void stream_close(stream *s)
{
	shimmy_pub_close(s->h);
}

/* Reads fd to EOF into a loan of the file's size when it is known. */
static int pub_file(shimmy_client *c, tool_cfg *t, const char *topic, FILE *f,
		    unsigned flags)
{
	struct stat st;
	void *buf;
	size_t got = 0;
	int rc;

	if (fstat(fileno(f), &st) == 0 && S_ISREG(st.st_mode)) {
		size_t len = (size_t)st.st_size;
		rc = shimmy_loan_props(c, topic, len, t->pub_props, &buf);
		if (rc) {
			fprintf(stderr, "Error: %s.\n", shimmy_strerror(rc));
			return rc;
		}
		while (got < len) {
			size_t k = fread((char *)buf + got, 1, len - got, f);
			if (k == 0)
				break;
			got += k;
		}
		if (got != len) {
			shimmy_loan_abort(c, buf);
			fprintf(stderr, "Error: short read of the message file.\n");
			return -1;
		}
		rc = shimmy_commit(c, buf, t->qos, flags);
		if (rc)
			fprintf(stderr, "Error publishing: %s.\n", shimmy_strerror(rc));
		return rc;
	}
	/* A pipe: size unknown, so read it all, then publish a copy. */
	size_t cap = 65536;
	char *data = malloc(cap);
	while (data) {
		size_t k = fread(data + got, 1, cap - got, f);
		got += k;
		if (k == 0)
			break;
		if (got == cap) {
			char *nd = realloc(data, cap * 2);
			if (!nd) {
				free(data);
				data = NULL;
				break;
			}
			data = nd;
			cap *= 2;
		}
	}
	if (!data) {
		fprintf(stderr, "Error: out of memory.\n");
		return -1;
	}
	rc = pub(c, t, topic, data, got, flags);
	free(data);
	return rc;
}

int main(int argc, char **argv)
{
	tool_cfg t;
	const char *topic = NULL, *msg = NULL, *file = NULL;
	enum src src = SRC_NONE;
	unsigned flags = 0;
	long repeat = 1;
	int nsrc = 0;
	shimmy_client *c;
	int rc = 0, ret = TOOL_EXIT_OK;

	tool_cfg_init(&t, "shimmy-pub");
	for (int i = 1; i < argc;) {
		const char *a = argv[i];
		int k = tool_common_opt(&t, argc, argv, &i);
		if (k < 0)
			goto usage_err;
		if (k > 0)
			continue;
		if ((!strcmp(a, "-t") || !strcmp(a, "--topic")) && i + 1 < argc) {
			topic = argv[i + 1];
			i += 2;
		} else if ((!strcmp(a, "-m") || !strcmp(a, "--message")) && i + 1 < argc) {
			msg = argv[i + 1];
			src = SRC_MSG;
			nsrc++;
			i += 2;
		} else if ((!strcmp(a, "-f") || !strcmp(a, "--file")) && i + 1 < argc) {
			file = argv[i + 1];
			src = SRC_FILE;
			nsrc++;
			i += 2;
		} else if (!strcmp(a, "--repeat") && i + 1 < argc) {
			repeat = strtol(argv[i + 1], NULL, 10);
			i += 2;
		} else if (!strcmp(a, "-s") || !strcmp(a, "--stdin-file")) {
			src = SRC_STDIN;
			nsrc++;
			i++;
		} else if (!strcmp(a, "-l") || !strcmp(a, "--stdin-line")) {
			src = SRC_LINES;
			nsrc++;
			i++;
		} else if (!strcmp(a, "-n") || !strcmp(a, "--null-message")) {
			src = SRC_NULL;
			nsrc++;
			i++;
		} else if (!strcmp(a, "-r") || !strcmp(a, "--retain")) {
			flags |= SHIMMY_PUB_RETAIN;
			i++;
		} else if (!strcmp(a, "--help")) {
			usage();
			return TOOL_EXIT_OK;
		} else {
			fprintf(stderr, "Error: unknown option '%s'.\n", a);
			goto usage_err;
		}
	}
	if (!topic) {
		fprintf(stderr, "Error: a topic (-t) is required.\n");
		goto usage_err;
	}
	if (nsrc != 1) {
		fprintf(stderr, "Error: exactly one of -m, -f, -s, -l or -n is required.\n");
		goto usage_err;
	}
	if (repeat < 1)
		repeat = 1;

	c = tool_connect(&t, 0);
	if (!c) {
		tool_cfg_fini(&t);
		return TOOL_EXIT_ERR;
	}
	switch (src) {
	case SRC_MSG:
	case SRC_NULL: {
		stream st;
		if (repeat == 1) {
			rc = pub(c, &t, topic, msg, src == SRC_MSG ? strlen(msg) : 0, flags);
			break;
		}
		rc = stream_open(&st, c, &t, topic, flags);
		for (long r = 0; r < repeat && rc == 0; r++)
			rc = stream_pub(&st, msg, src == SRC_MSG ? strlen(msg) : 0);
		stream_close(&st);
		break;
	}
	case SRC_FILE: {
		FILE *f = fopen(file, "rb");
		if (!f) {
			fprintf(stderr, "Error: unable to open file \"%s\": %s.\n", file, strerror(errno));
			rc = -1;
			break;
		}
		rc = pub_file(c, &t, topic, f, flags);
		fclose(f);
		break;
	}
	case SRC_STDIN:
		rc = pub_file(c, &t, topic, stdin, flags);
		break;
	case SRC_LINES: {
		char *line = NULL;
		size_t cap = 0;
		ssize_t n;
		stream st;
		rc = stream_open(&st, c, &t, topic, flags);
		while (rc == 0 && (n = getline(&line, &cap, stdin)) >= 0) {
			if (n > 0 && line[n - 1] == '\n')
				line[--n] = '\0';
			if (n > 0 && line[n - 1] == '\r')
				line[--n] = '\0';
			if (n == 0)
				continue;
			rc = stream_pub(&st, line, (size_t)n);
		}
		stream_close(&st);
		free(line);
		break;
	}
	default:
		break;
	}
	if (rc == 0) {
		rc = shimmy_client_flush(c, -1);
		if (rc)
			fprintf(stderr, "Error: messages not acknowledged: %s.\n", shimmy_strerror(rc));
	}
	shimmy_client_disconnect(c, 2000);
	shimmy_client_destroy(c);
	tool_cfg_fini(&t);
	return rc ? TOOL_EXIT_ERR : ret;

usage_err:
	fputs("Use 'shimmy-pub --help' to see usage.\n", stderr);
	tool_cfg_fini(&t);
	return TOOL_EXIT_ERR;
}

/*
 * broker/log.c — see log.h. Lines look like mosquitto's:
 *   "1764346800: New client connected from 127.0.0.1:50122 as c1 (p2, c1, k60)."
 */
#include "broker/log.h"

#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

void log_init(shimmy_log *l)
{
	l->fd = 2;
	l->mask = LOG_DEFAULT;
	l->timestamps = 1;
}

int log_type_parse(const char *name)
{
	static const struct {
		const char *name;
		int bits;
	} types[] = {
		{ "error", LOG_ERR },	     { "warning", LOG_WARN },
		{ "notice", LOG_NOTICE },    { "information", LOG_INFO },
		{ "debug", LOG_DEBUG },	     { "subscribe", LOG_SUBSCRIBE },
		{ "unsubscribe", LOG_UNSUBSCRIBE }, { "all", LOG_ALL },
		{ "none", 0 },		     { "websockets", 0 },
	};
	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
		if (strcmp(name, types[i].name) == 0)
			return types[i].bits;
	return -1;
}

void log_vwrite(const shimmy_log *l, log_level level, const char *fmt,
		va_list ap)
{
	char line[1024];
	int n = 0;

	if (!(l->mask & level))
		return;
	if (l->timestamps)
		n = snprintf(line, sizeof(line), "%lld: ", (long long)time(NULL));
	int m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
	if (m < 0)
		return;
	n += m;
	if ((size_t)n > sizeof(line) - 2)
		n = (int)sizeof(line) - 2;
	line[n++] = '\n';
	/* A short or failed write of a log line is not worth failing over. */
	ssize_t w = write(l->fd, line, (size_t)n);
	(void)w;
}

void log_write(const shimmy_log *l, log_level level, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	log_vwrite(l, level, fmt, ap);
	va_end(ap);
}

/*
 * broker/log.h — the broker's log sink: human-readable lines on stderr
 * (or a file), filtered by the mosquitto-style log_type set.
 * Thread model: one log object per broker; log_write() may be called from
 * any thread (each line is written with a single write(2)).
 */
#ifndef SHIMMY_BROKER_LOG_H
#define SHIMMY_BROKER_LOG_H

#include <stdarg.h>

/* Levels double as log_type bits, as in mosquitto.conf. */
typedef enum log_level {
	LOG_ERR = 1 << 0,     /* log_type error */
	LOG_WARN = 1 << 1,    /* log_type warning */
	LOG_NOTICE = 1 << 2,  /* log_type notice */
	LOG_INFO = 1 << 3,    /* log_type information */
	LOG_DEBUG = 1 << 4,   /* log_type debug */
	LOG_SUBSCRIBE = 1 << 5,   /* log_type subscribe */
	LOG_UNSUBSCRIBE = 1 << 6, /* log_type unsubscribe */
} log_level;

#define LOG_ALL 0x7f
#define LOG_DEFAULT (LOG_ERR | LOG_WARN | LOG_NOTICE | LOG_INFO)

typedef struct shimmy_log {
	int fd;        /* destination, default 2 */
	unsigned mask; /* enabled log_level bits */
	int timestamps;/* prefix each line with a unix timestamp */
} shimmy_log;

/* Initialises l to stderr with LOG_DEFAULT. */
void log_init(shimmy_log *l);

/* Parses one log_type value ("error", "all", "none", ...). Returns the bits,
 * or -1 if unknown. */
int log_type_parse(const char *name);

/* Writes one line if level is enabled. Never allocates on the heap. */
void log_write(const shimmy_log *l, log_level level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
void log_vwrite(const shimmy_log *l, log_level level, const char *fmt,
		va_list ap);

#endif

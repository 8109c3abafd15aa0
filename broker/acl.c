/*
 * broker/acl.c — see acl.h. Rules are kept in file order in one array; a
 * check walks them all (ACL files are short; a trie can come when one isn't).
 */
#include "broker/acl.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mqtt/error.h"
#include "mqtt/topic.h"

enum {
	RULE_ANON = 1,    /* `topic` before any `user` line */
	RULE_USER = 2,    /* `topic` after `user NAME` */
	RULE_PATTERN = 3, /* `pattern` */
};

enum {
	GRANT_READ = 1,
	GRANT_WRITE = 2,
	GRANT_DENY = 4,
};

typedef struct acl_rule {
	int kind;
	unsigned grant;
	char *user;  /* RULE_USER: owned */
	char *topic; /* owned, NUL-terminated */
} acl_rule;

struct acl {
	acl_rule *rules;
	size_t count;
	size_t cap;
};

void acl_destroy(acl *a)
{
	if (!a)
		return;
	for (size_t i = 0; i < a->count; i++) {
		free(a->rules[i].user);
		free(a->rules[i].topic);
	}
	free(a->rules);
	free(a);
}

static char *trim(char *s)
{
	while (*s == ' ' || *s == '\t')
		s++;
	size_t n = strlen(s);
	while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r' ||
		     s[n - 1] == '\n'))
		s[--n] = '\0';
	return s;
}

static int add_rule(acl *a, int kind, unsigned grant, const char *user,
		    const char *topic)
{
	if (a->count == a->cap) {
		size_t cap = a->cap ? a->cap * 2 : 16;
		acl_rule *r = realloc(a->rules, cap * sizeof(*r));
		if (!r)
			return MQTT_ERR_NOMEM;
		a->rules = r;
		a->cap = cap;
	}
	acl_rule *r = &a->rules[a->count];
	r->kind = kind;
	r->grant = grant;
	r->user = user ? strdup(user) : NULL;
	r->topic = strdup(topic);
	if (!r->topic || (user && !r->user)) {
		free(r->user);
		free(r->topic);
		return MQTT_ERR_NOMEM;
	}
	a->count++;
	return 0;
}

/* Parses "[access] TOPIC" after `topic`/`pattern`. */
static int parse_grant(char *rest, unsigned *grant, char **topic)
{
	static const struct {
		const char *word;
		unsigned grant;
	} words[] = {
		{ "read", GRANT_READ },
		{ "write", GRANT_WRITE },
		{ "readwrite", GRANT_READ | GRANT_WRITE },
		{ "deny", GRANT_DENY },
	};
	char *sp = strpbrk(rest, " \t");
	*grant = GRANT_READ | GRANT_WRITE;
	*topic = rest;
	if (sp) {
		size_t wlen = (size_t)(sp - rest);
		for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++) {
			if (strlen(words[i].word) == wlen &&
			    strncmp(rest, words[i].word, wlen) == 0) {
				*grant = words[i].grant;
				*topic = trim(sp);
				break;
			}
		}
	}
	if (**topic == '\0')
		return MQTT_ERR_INVALID;
	return mqtt_topic_validate_filter(mqtt_str_c(*topic), false) == 0
		       ? 0
		       : MQTT_ERR_INVALID;
}

int acl_load(const char *path, acl **out, char *err, size_t err_len)
{
	FILE *f = fopen(path, "r");
	if (!f) {
		int e = -errno;
		snprintf(err, err_len, "%s: cannot open: %s", path, strerror(errno));
		return e;
	}
	int rc = MQTT_ERR_NOMEM;
	acl *a = calloc(1, sizeof(*a));
	char *user = NULL;
	char line[4096];
	unsigned lineno = 0;
	if (!a)
		goto out_close;
	rc = 0;
	while (fgets(line, sizeof(line), f)) {
		lineno++;
		char *s = trim(line);
		if (*s == '\0' || *s == '#')
			continue;
		char *sp = strpbrk(s, " \t");
		char *rest = sp ? trim(sp + 1) : s + strlen(s);
		size_t klen = sp ? (size_t)(sp - s) : strlen(s);
		unsigned grant;
		char *topic;
		if (klen == 4 && strncmp(s, "user", 4) == 0 && *rest) {
			free(user);
			user = strdup(rest);
			if (!user) {
				rc = MQTT_ERR_NOMEM;
				break;
			}
		} else if (klen == 5 && strncmp(s, "topic", 5) == 0) {
			if ((rc = parse_grant(rest, &grant, &topic)) < 0) {
				snprintf(err, err_len, "%s:%u: invalid topic rule",
					 path, lineno);
				break;
			}
			rc = add_rule(a, user ? RULE_USER : RULE_ANON, grant,
				      user, topic);
		} else if (klen == 7 && strncmp(s, "pattern", 7) == 0) {
			if ((rc = parse_grant(rest, &grant, &topic)) < 0) {
				snprintf(err, err_len, "%s:%u: invalid pattern rule",
					 path, lineno);
				break;
			}
			rc = add_rule(a, RULE_PATTERN, grant, NULL, topic);
		} else {
			snprintf(err, err_len, "%s:%u: unknown ACL line '%.*s'",
				 path, lineno, (int)klen, s);
			rc = MQTT_ERR_INVALID;
			break;
		}
		if (rc < 0)
			break;
	}
	free(user);
	if (rc == MQTT_ERR_NOMEM)
		snprintf(err, err_len, "%s: out of memory", path);
	if (rc < 0) {
		acl_destroy(a);
		a = NULL;
	}
out_close:
	fclose(f);
	*out = a;
	return a ? 0 : rc;
}

static bool level_eq(const char *a, size_t alen, const char *b, size_t blen)
{
	return alen == blen && memcmp(a, b, alen) == 0;
}

static bool name_substitutable(mqtt_str s)
{
	for (uint32_t i = 0; i < s.len; i++)
		if (s.ptr[i] == '/' || s.ptr[i] == '+' || s.ptr[i] == '#')
			return false;
	return s.len > 0;
}

typedef struct who {
	mqtt_str user;
	bool has_user;
	mqtt_str cid;
} who;

/*
 * True when rule filter r covers t: every topic name t matches is matched
 * by r. For a topic name t (no wildcards) that is plain matching. `pattern`
 * substitutes whole %u/%c levels of r. Loops once per level of r or t.
 */
static bool covers(const char *r, mqtt_str t, const who *w, bool pattern)
{
	size_t ri = 0, rlen = strlen(r);
	uint32_t ti = 0;
	bool first = true;

	for (;;) {
		size_t re = ri;
		while (re < rlen && r[re] != '/')
			re++;
		uint32_t te = ti;
		while (te < t.len && t.ptr[te] != '/')
			te++;
		const char *rl = r + ri;
		size_t rll = re - ri;
		const char *tl = t.ptr + ti;
		size_t tll = te - ti;
		bool t_end = ti > t.len;

		if (level_eq(rl, rll, "#", 1))
			return !(first && !t_end && tll && tl[0] == '$');
		if (t_end)
			return false;
		if (level_eq(rl, rll, "+", 1)) {
			if (first && tll && tl[0] == '$')
				return false;
			if (level_eq(tl, tll, "#", 1))
				return false;
		} else if (pattern && level_eq(rl, rll, "%u", 2)) {
			if (!w->has_user || !name_substitutable(w->user) ||
			    !level_eq(tl, tll, w->user.ptr, w->user.len))
				return false;
		} else if (pattern && level_eq(rl, rll, "%c", 2)) {
			if (!name_substitutable(w->cid) ||
			    !level_eq(tl, tll, w->cid.ptr, w->cid.len))
				return false;
		} else if (!level_eq(rl, rll, tl, tll)) {
			return false;
		}
		first = false;
		bool r_done = re >= rlen, t_done = te >= t.len;
		if (r_done && t_done)
			return true;
		if (r_done)
			return false;
		ri = re + 1;
		ti = t_done ? t.len + 1 : te + 1; /* t exhausted: only "/#" may follow */
		if (t_done && !(rlen - ri == 1 && r[ri] == '#'))
			return false;
	}
}

static bool rule_applies(const acl_rule *r, const who *w)
{
	switch (r->kind) {
	case RULE_ANON:
		return !w->has_user;
	case RULE_USER:
		return w->has_user &&
		       level_eq(r->user, strlen(r->user), w->user.ptr, w->user.len);
	default:
		return true;
	}
}

bool acl_check(const acl *a, mqtt_str username, bool has_username,
	       mqtt_str client_id, mqtt_str topic, acl_access access)
{
	who w = { username, has_username, client_id };
	unsigned need = access == ACL_WRITE ? GRANT_WRITE : GRANT_READ;
	bool granted = false;

	for (size_t i = 0; i < a->count; i++) {
		const acl_rule *r = &a->rules[i];
		if (!rule_applies(r, &w))
			continue;
		if (!(r->grant & (need | GRANT_DENY)))
			continue;
		if (!covers(r->topic, topic, &w, r->kind == RULE_PATTERN))
			continue;
		if (r->grant & GRANT_DENY)
			return false;
		granted = true;
	}
	return granted;
}

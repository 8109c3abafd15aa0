/*
 * broker/scram.c — see scram.h. Messages are parsed from the peer's bytes
 * with explicit lengths (they are not NUL-terminated on the wire), and every
 * secret comparison is constant-time.
 */
#include "broker/scram.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#define SCRAM_KEY_LEN 32     /* SHA-256 */
#define SCRAM_SALT_MAX 64
#define SCRAM_USER_MAX 128
#define SCRAM_NONCE_MAX 128
#define SCRAM_MSG_MAX 512    /* any client message we accept */
#define SCRAM_ITER_MAX 1000000u

typedef struct scram_cred {
	char user[SCRAM_USER_MAX];
	uint8_t salt[SCRAM_SALT_MAX];
	size_t salt_len;
	uint32_t iterations;
	uint8_t stored_key[SCRAM_KEY_LEN];
	uint8_t server_key[SCRAM_KEY_LEN];
} scram_cred;

struct scram_db {
	scram_cred *creds;
	size_t count, cap;
	uint8_t fake_secret[32]; /* salts for unknown users */
};

typedef enum scram_phase {
	SCRAM_WANT_FIRST = 0,
	SCRAM_WANT_FINAL,
	SCRAM_DONE,
} scram_phase;

struct scram_exchange {
	const scram_db *db;
	scram_phase phase;
	const scram_cred *cred; /* NULL: unknown user (fails at final) */
	char user[SCRAM_USER_MAX];
	char snonce[SCRAM_NONCE_MAX];
	char nonce[2 * SCRAM_NONCE_MAX + 1]; /* client + server nonce */
	char gs2[SCRAM_MSG_MAX];             /* gs2 header, for c= */
	size_t gs2_len;
	/* AuthMessage so far: client-first-bare "," server-first */
	char auth_msg[3 * SCRAM_MSG_MAX];
	size_t auth_len;
};

/* ---- base64 ------------------------------------------------------------ */

/* Encodes in[0..n) into out (NUL-terminated); returns the length or -1 if
 * cap is too small. */
static int b64_enc(const uint8_t *in, size_t n, char *out, size_t cap)
{
	if (cap < 4 * ((n + 2) / 3) + 1 || n > INT32_MAX / 2)
		return -1;
	return EVP_EncodeBlock((unsigned char *)out, in, (int)n);
}

/* Decodes strict, padded base64 in[0..n) into out[0..cap); returns the
 * length or -1. */
static int b64_dec(const char *in, size_t n, uint8_t *out, size_t cap)
{
	uint8_t tmp[3 * (SCRAM_MSG_MAX / 4) + 3];
	if (n == 0 || n % 4 || n > SCRAM_MSG_MAX)
		return -1;
	for (size_t i = 0; i < n; i++) {
		char ch = in[i];
		bool ok = (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
			  (ch >= '0' && ch <= '9') || ch == '+' || ch == '/' ||
			  (ch == '=' && i >= n - 2 &&
			   (i == n - 1 || in[n - 1] == '='));
		if (!ok)
			return -1;
	}
	int len = EVP_DecodeBlock(tmp, (const unsigned char *)in, (int)n);
	if (len < 0)
		return -1;
	len -= (in[n - 1] == '=') + (in[n - 2] == '=');
	if ((size_t)len > cap)
		return -1;
	memcpy(out, tmp, (size_t)len);
	return len;
}

/* ---- primitives ------------------------------------------------------- */

static bool hmac256(const uint8_t *key, size_t klen, const void *msg,
		    size_t mlen, uint8_t out[SCRAM_KEY_LEN])
{
	unsigned int olen = 0;
	return HMAC(EVP_sha256(), key, (int)klen, msg, mlen, out, &olen) &&
	       olen == SCRAM_KEY_LEN;
}

/* StoredKey and ServerKey from a password [RFC 5802 section 3]. */
static bool scram_keys(const char *password, const uint8_t *salt,
		       size_t salt_len, uint32_t iterations,
		       uint8_t stored[SCRAM_KEY_LEN],
		       uint8_t server[SCRAM_KEY_LEN])
{
	uint8_t salted[SCRAM_KEY_LEN], client_key[SCRAM_KEY_LEN];
	bool ok = PKCS5_PBKDF2_HMAC(password, (int)strlen(password), salt,
				    (int)salt_len, (int)iterations,
				    EVP_sha256(), SCRAM_KEY_LEN, salted) == 1 &&
		  hmac256(salted, sizeof(salted), "Client Key", 10,
			  client_key) &&
		  hmac256(salted, sizeof(salted), "Server Key", 10, server);
	if (ok)
		SHA256(client_key, sizeof(client_key), stored);
	OPENSSL_cleanse(salted, sizeof(salted));
	OPENSSL_cleanse(client_key, sizeof(client_key));
	return ok;
}

static bool user_ok(const char *u, size_t n)
{
	if (n == 0 || n >= SCRAM_USER_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if (u[i] == ':' || u[i] == ',' || u[i] == '=' ||
		    (unsigned char)u[i] < 0x20)
			return false;
	return true;
}

/* ---- credentials ------------------------------------------------------ */

scram_db *scram_db_create(void)
{
	scram_db *db = calloc(1, sizeof(*db));
	if (!db)
		return NULL;
	if (RAND_bytes(db->fake_secret, sizeof(db->fake_secret)) != 1) {
		free(db);
		return NULL;
	}
	return db;
}

void scram_db_destroy(scram_db *db)
{
	if (!db)
		return;
	if (db->creds)
		OPENSSL_cleanse(db->creds, db->cap * sizeof(*db->creds));
	free(db->creds);
	free(db);
}

/* Next ':'-separated field of line starting at *p; false if none. */
static bool next_field(const char **p, const char **f, size_t *n, bool last)
{
	const char *s = *p;
	if (!s)
		return false;
	const char *colon = strchr(s, ':');
	if (last) {
		if (colon)
			return false;
		*f = s;
		*n = strlen(s);
		*p = NULL;
		return true;
	}
	if (!colon)
		return false;
	*f = s;
	*n = (size_t)(colon - s);
	*p = colon + 1;
	return true;
}

int scram_db_add_line(scram_db *db, const char *line)
{
	scram_cred c;
	memset(&c, 0, sizeof(c));
	const char *p = line, *f;
	size_t n;
	char num[16];
	if (!next_field(&p, &f, &n, false) || !user_ok(f, n))
		return -EINVAL;
	memcpy(c.user, f, n);
	if (!next_field(&p, &f, &n, false))
		return -EINVAL;
	int sl = b64_dec(f, n, c.salt, sizeof(c.salt));
	if (sl <= 0)
		return -EINVAL;
	c.salt_len = (size_t)sl;
	if (!next_field(&p, &f, &n, false) || n == 0 || n >= sizeof(num))
		return -EINVAL;
	memcpy(num, f, n);
	num[n] = '\0';
	char *end;
	unsigned long it = strtoul(num, &end, 10);
	if (*end || it == 0 || it > SCRAM_ITER_MAX)
		return -EINVAL;
	c.iterations = (uint32_t)it;
	if (!next_field(&p, &f, &n, false) ||
	    b64_dec(f, n, c.stored_key, sizeof(c.stored_key)) != SCRAM_KEY_LEN)
		return -EINVAL;
	if (!next_field(&p, &f, &n, true) ||
	    b64_dec(f, n, c.server_key, sizeof(c.server_key)) != SCRAM_KEY_LEN)
		return -EINVAL;
	for (size_t i = 0; i < db->count; i++) {
		if (strcmp(db->creds[i].user, c.user) == 0) {
			db->creds[i] = c; /* a later line wins */
			return 0;
		}
	}
	if (db->count == db->cap) {
		size_t ncap = db->cap ? db->cap * 2 : 8;
		scram_cred *nc = realloc(db->creds, ncap * sizeof(*nc));
		if (!nc)
			return -ENOMEM;
		db->creds = nc;
		db->cap = ncap;
	}
	db->creds[db->count++] = c;
	OPENSSL_cleanse(&c, sizeof(c));
	return 0;
}

int scram_db_load(scram_db *db, const char *path, unsigned *bad_line)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return -errno;
	char line[1024];
	unsigned no = 0;
	int rc = 0;
	while (fgets(line, sizeof(line), f)) {
		no++;
		size_t n = strlen(line);
		while (n && (line[n - 1] == '\n' || line[n - 1] == '\r' ||
			     line[n - 1] == ' ' || line[n - 1] == '\t'))
			line[--n] = '\0';
		if (n == 0 || line[0] == '#')
			continue;
		rc = scram_db_add_line(db, line);
		if (rc) {
			if (bad_line)
				*bad_line = no;
			break;
		}
	}
	if (!rc && ferror(f))
		rc = -EIO;
	fclose(f);
	OPENSSL_cleanse(line, sizeof(line));
	return rc;
}

int scram_cred_line(const char *user, const char *password,
		    uint32_t iterations, char *out, size_t cap)
{
	uint8_t salt[16], stored[SCRAM_KEY_LEN], server[SCRAM_KEY_LEN];
	char s64[32], st64[48], sv64[48];
	if (!user_ok(user, strlen(user)) || iterations > SCRAM_ITER_MAX)
		return -EINVAL;
	if (iterations == 0)
		iterations = SCRAM_DEFAULT_ITERATIONS;
	if (RAND_bytes(salt, sizeof(salt)) != 1 ||
	    !scram_keys(password, salt, sizeof(salt), iterations, stored,
			server))
		return -EIO;
	b64_enc(salt, sizeof(salt), s64, sizeof(s64));
	b64_enc(stored, sizeof(stored), st64, sizeof(st64));
	b64_enc(server, sizeof(server), sv64, sizeof(sv64));
	int n = snprintf(out, cap, "%s:%s:%u:%s:%s", user, s64,
			 (unsigned)iterations, st64, sv64);
	OPENSSL_cleanse(stored, sizeof(stored));
	OPENSSL_cleanse(server, sizeof(server));
	if (n < 0 || (size_t)n >= cap)
		return -EINVAL;
	return n;
}

/* ---- exchange ----------------------------------------------------------- */

scram_exchange *scram_exchange_create(const scram_db *db, const char *nonce)
{
	scram_exchange *x = calloc(1, sizeof(*x));
	if (!x)
		return NULL;
	x->db = db;
	if (nonce) {
		snprintf(x->snonce, sizeof(x->snonce), "%s", nonce);
	} else {
		uint8_t r[24];
		if (RAND_bytes(r, sizeof(r)) != 1) {
			free(x);
			return NULL;
		}
		b64_enc(r, sizeof(r), x->snonce, sizeof(x->snonce));
	}
	return x;
}

void scram_exchange_destroy(scram_exchange *x)
{
	if (!x)
		return;
	OPENSSL_cleanse(x, sizeof(*x));
	free(x);
}

const char *scram_exchange_user(const scram_exchange *x)
{
	return x->user;
}

/* Finds attribute `a` ("a=value") in the comma-separated s[0..n); the
 * value view goes into *v and *vn. Only the first occurrence counts. */
static bool attr_get(const char *s, size_t n, char a, const char **v,
		     size_t *vn)
{
	size_t i = 0;
	while (i < n) {
		size_t j = i;
		while (j < n && s[j] != ',')
			j++;
		if (j - i >= 2 && s[i] == a && s[i + 1] == '=') {
			*v = s + i + 2;
			*vn = j - i - 2;
			return true;
		}
		i = j + 1;
	}
	return false;
}

/* Decodes a saslname (",=2C", "=3D" escapes) into out; false if bad. */
static bool saslname(const char *s, size_t n, char *out, size_t cap)
{
	size_t o = 0;
	for (size_t i = 0; i < n; i++) {
		char ch = s[i];
		if (ch == '=') {
			if (i + 2 >= n)
				return false;
			if (s[i + 1] == '2' && s[i + 2] == 'C')
				ch = ',';
			else if (s[i + 1] == '3' && s[i + 2] == 'D')
				ch = '=';
			else
				return false;
			i += 2;
		} else if (ch == ',' || ch == '\0') {
			return false;
		}
		if (o + 1 >= cap)
			return false;
		out[o++] = ch;
	}
	out[o] = '\0';
	return o > 0;
}

static bool printable_nonce(const char *s, size_t n)
{
	if (n == 0 || n >= SCRAM_NONCE_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if (s[i] < 0x21 || s[i] > 0x7e || s[i] == ',')
			return false;
	return true;
}

static authn_status step_first(scram_exchange *x, const char *m, size_t n,
			       uint8_t *out, size_t cap, size_t *out_len)
{
	/* gs2-header: ("n" / "y") "," [authzid] "," */
	if (n < 3 || (m[0] != 'n' && m[0] != 'y') || m[1] != ',')
		return AUTHN_FAIL;
	const char *c2 = memchr(m + 2, ',', n - 2);
	if (!c2)
		return AUTHN_FAIL;
	size_t gs2_len = (size_t)(c2 - m) + 1;
	memcpy(x->gs2, m, gs2_len);
	x->gs2_len = gs2_len;
	const char *bare = m + gs2_len;
	size_t bare_len = n - gs2_len;
	/* client-first-message-bare: n=user,r=nonce[,ext] */
	if (bare_len < 2 || bare[0] != 'n' || bare[1] != '=')
		return AUTHN_FAIL;
	const char *u, *r;
	size_t un, rn;
	if (!attr_get(bare, bare_len, 'n', &u, &un) ||
	    !attr_get(bare, bare_len, 'r', &r, &rn) ||
	    !saslname(u, un, x->user, sizeof(x->user)) ||
	    !printable_nonce(r, rn))
		return AUTHN_FAIL;
	x->cred = NULL;
	for (size_t i = 0; i < x->db->count; i++)
		if (strcmp(x->db->creds[i].user, x->user) == 0)
			x->cred = &x->db->creds[i];
	uint8_t fake_salt[SCRAM_KEY_LEN];
	const uint8_t *salt;
	size_t salt_len;
	uint32_t iterations;
	if (x->cred) {
		salt = x->cred->salt;
		salt_len = x->cred->salt_len;
		iterations = x->cred->iterations;
	} else {
		/* Same answer every time for the same unknown name. */
		if (!hmac256(x->db->fake_secret, sizeof(x->db->fake_secret),
			     x->user, strlen(x->user), fake_salt))
			return AUTHN_FAIL;
		salt = fake_salt;
		salt_len = 16;
		iterations = SCRAM_DEFAULT_ITERATIONS;
	}
	char salt64[SCRAM_SALT_MAX * 2];
	b64_enc(salt, salt_len, salt64, sizeof(salt64));
	int nl = snprintf(x->nonce, sizeof(x->nonce), "%.*s%s", (int)rn, r,
			  x->snonce);
	if (nl < 0 || (size_t)nl >= sizeof(x->nonce))
		return AUTHN_FAIL;
	int sl = snprintf((char *)out, cap, "r=%s,s=%s,i=%u", x->nonce, salt64,
			  (unsigned)iterations);
	if (sl < 0 || (size_t)sl >= cap)
		return AUTHN_FAIL;
	int al = snprintf(x->auth_msg, sizeof(x->auth_msg), "%.*s,%.*s",
			  (int)bare_len, bare, sl, (const char *)out);
	if (al < 0 || (size_t)al >= sizeof(x->auth_msg))
		return AUTHN_FAIL;
	x->auth_len = (size_t)al;
	*out_len = (size_t)sl;
	x->phase = SCRAM_WANT_FINAL;
	return AUTHN_CONTINUE;
}

static authn_status step_final(scram_exchange *x, const char *m, size_t n,
			       uint8_t *out, size_t cap, size_t *out_len)
{
	/* client-final-message: c=...,r=...[,ext],p=... with p last. */
	const char *pp = NULL;
	for (size_t i = n; i >= 3; i--) {
		if (m[i - 3] == ',' && m[i - 2] == 'p' && m[i - 1] == '=') {
			pp = m + i - 3;
			break;
		}
	}
	if (!pp)
		return AUTHN_FAIL;
	size_t without_len = (size_t)(pp - m);
	const char *cv, *rv;
	size_t cn, rn;
	if (!attr_get(m, without_len, 'c', &cv, &cn) ||
	    !attr_get(m, without_len, 'r', &rv, &rn) || m[0] != 'c')
		return AUTHN_FAIL;
	char gs2_64[SCRAM_MSG_MAX * 2];
	int g = b64_enc((const uint8_t *)x->gs2, x->gs2_len, gs2_64,
			sizeof(gs2_64));
	if (g < 0 || (size_t)g != cn || memcmp(gs2_64, cv, cn) != 0 ||
	    rn != strlen(x->nonce) || memcmp(rv, x->nonce, rn) != 0)
		return AUTHN_FAIL;
	uint8_t proof[SCRAM_KEY_LEN + 4];
	if (b64_dec(pp + 3, n - without_len - 3, proof, sizeof(proof)) !=
	    SCRAM_KEY_LEN)
		return AUTHN_FAIL;
	if (!x->cred)
		return AUTHN_FAIL;
	int al = snprintf(x->auth_msg + x->auth_len,
			  sizeof(x->auth_msg) - x->auth_len, ",%.*s",
			  (int)without_len, m);
	if (al < 0 || (size_t)al >= sizeof(x->auth_msg) - x->auth_len)
		return AUTHN_FAIL;
	size_t auth_len = x->auth_len + (size_t)al;
	uint8_t sig[SCRAM_KEY_LEN], key[SCRAM_KEY_LEN], stored[SCRAM_KEY_LEN];
	if (!hmac256(x->cred->stored_key, SCRAM_KEY_LEN, x->auth_msg,
		     auth_len, sig))
		return AUTHN_FAIL;
	for (int i = 0; i < SCRAM_KEY_LEN; i++)
		key[i] = proof[i] ^ sig[i];
	SHA256(key, sizeof(key), stored);
	OPENSSL_cleanse(key, sizeof(key));
	if (CRYPTO_memcmp(stored, x->cred->stored_key, SCRAM_KEY_LEN) != 0)
		return AUTHN_FAIL;
	if (!hmac256(x->cred->server_key, SCRAM_KEY_LEN, x->auth_msg,
		     auth_len, sig))
		return AUTHN_FAIL;
	char sig64[64];
	b64_enc(sig, sizeof(sig), sig64, sizeof(sig64));
	int sl = snprintf((char *)out, cap, "v=%s", sig64);
	if (sl < 0 || (size_t)sl >= cap)
		return AUTHN_FAIL;
	*out_len = (size_t)sl;
	x->phase = SCRAM_DONE;
	return AUTHN_SUCCESS;
}

authn_status scram_exchange_step(scram_exchange *x, const uint8_t *in,
				 size_t in_len, uint8_t *out, size_t cap,
				 size_t *out_len)
{
	*out_len = 0;
	if (in_len == 0 || in_len > SCRAM_MSG_MAX || memchr(in, 0, in_len))
		return AUTHN_FAIL;
	const char *m = (const char *)in;
	switch (x->phase) {
	case SCRAM_WANT_FIRST:
		return step_first(x, m, in_len, out, cap, out_len);
	case SCRAM_WANT_FINAL: {
		authn_status st = step_final(x, m, in_len, out, cap, out_len);
		if (st != AUTHN_SUCCESS)
			x->phase = SCRAM_DONE;
		return st;
	}
	default:
		return AUTHN_FAIL;
	}
}

/* ---- authn method ------------------------------------------------------- */

static authn_status scram_start(void **state, authn_io *io, void *ctx)
{
	scram_exchange *x = scram_exchange_create(ctx, NULL);
	if (!x)
		return AUTHN_FAIL;
	*state = x;
	return scram_exchange_step(x, io->in.ptr, io->in.len, io->out,
				   io->out_cap, &io->out_len);
}

static authn_status scram_step(void *state, authn_io *io, void *ctx)
{
	(void)ctx;
	scram_exchange *x = state;
	if (!x)
		return AUTHN_FAIL;
	authn_status st = scram_exchange_step(x, io->in.ptr, io->in.len,
					      io->out, io->out_cap,
					      &io->out_len);
	if (st == AUTHN_SUCCESS)
		snprintf(io->user, sizeof(io->user), "%s", x->user);
	return st;
}

static void scram_end(void *state, void *ctx)
{
	(void)ctx;
	scram_exchange_destroy(state);
}

void scram_authn_method(const scram_db *db, authn_method *m)
{
	memset(m, 0, sizeof(*m));
	m->name = SCRAM_METHOD_NAME;
	m->start = scram_start;
	m->step = scram_step;
	m->end = scram_end;
	m->ctx = (void *)(uintptr_t)db; /* read-only use */
}

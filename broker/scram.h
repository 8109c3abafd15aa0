/*
 * broker/scram.h — SCRAM-SHA-256 (RFC 5802, RFC 7677) server side, as the
 * MQTT 5 enhanced authentication method "SCRAM-SHA-256" (authn.h).
 *
 * Exchange over MQTT 5:
 *   CONNECT  Authentication Data = client-first-message  ("n,,n=user,r=...")
 *   AUTH 18  Authentication Data = server-first-message  ("r=...,s=...,i=...")
 *   AUTH 18  Authentication Data = client-final-message  ("c=biws,r=...,p=...")
 *   CONNACK  Authentication Data = server-final-message  ("v=...")
 * Channel binding is not supported (gs2 header "n,," or "y,,"; "p=" fails).
 * An unknown user fails at the client-final step, after a server-first
 * message with a fake salt, so that users cannot be enumerated.
 *
 * Credentials file: one user per line,
 *     user:salt_b64:iterations:storedkey_b64:serverkey_b64
 * (a line starting with # is a comment; blank lines are ignored; no SASLprep
 * is applied: use plain ASCII names without ":" "," or "="). StoredKey
 * = SHA-256(HMAC(SaltedPassword, "Client Key")), ServerKey =
 * HMAC(SaltedPassword, "Server Key"), SaltedPassword = PBKDF2-HMAC-SHA-256
 * (password, salt, iterations). scram_cred_line() makes such a line.
 *
 * Crypto: OpenSSL libcrypto. Thread model: a db is read-only once loaded
 * (any thread); an exchange belongs to one connection's thread.
 */
#ifndef SHIMMY_BROKER_SCRAM_H
#define SHIMMY_BROKER_SCRAM_H

#include <stddef.h>
#include <stdint.h>

#include "broker/authn.h"

#define SCRAM_METHOD_NAME "SCRAM-SHA-256"
/* Iterations scram_cred_line() uses when given 0 (RFC 7677 minimum). */
#define SCRAM_DEFAULT_ITERATIONS 4096

typedef struct scram_db scram_db;
typedef struct scram_exchange scram_exchange;

/* An empty credentials store; NULL on OOM. */
scram_db *scram_db_create(void);
void scram_db_destroy(scram_db *db); /* NULL ok */

/*
 * Adds one credentials line (format above, no newline). Returns 0,
 * -EINVAL when the line is malformed, -ENOMEM. Allocates.
 */
int scram_db_add_line(scram_db *db, const char *line);

/*
 * Loads a credentials file, adding its users. Returns 0; -errno when it
 * cannot be read; -EINVAL for a malformed line, with its number in
 * *bad_line (may be NULL).
 */
int scram_db_load(scram_db *db, const char *path, unsigned *bad_line);

/*
 * Writes a credentials line for user/password into out[0..cap) (NUL
 * terminated, no newline) with a random 16-byte salt and `iterations`
 * (0 = SCRAM_DEFAULT_ITERATIONS). Returns the line length, or -EINVAL
 * (bad user name, or cap too small), -EIO (crypto failure). For a
 * "make a credentials line" command of shimmyd or a tool.
 */
int scram_cred_line(const char *user, const char *password,
		    uint32_t iterations, char *out, size_t cap);

/*
 * A server exchange against db (borrowed for the exchange's life).
 * nonce: the server's nonce part, or NULL for 24 random bytes (base64);
 * fixed nonces are for tests (RFC 7677 vector). NULL on OOM.
 */
scram_exchange *scram_exchange_create(const scram_db *db, const char *nonce);
void scram_exchange_destroy(scram_exchange *x); /* NULL ok */

/*
 * Feeds the client's next message; writes the server's answer into
 * out[0..cap) and its length into *out_len. Returns AUTHN_CONTINUE after
 * the client-first message, AUTHN_SUCCESS after a correct client-final
 * message, AUTHN_FAIL otherwise (malformed, unknown user, bad proof,
 * out of order); on FAIL *out_len may be 0.
 */
authn_status scram_exchange_step(scram_exchange *x, const uint8_t *in,
				 size_t in_len, uint8_t *out, size_t cap,
				 size_t *out_len);

/* The user the client named (valid until destroy); "" before the first
 * step. Authenticated only after scram_exchange_step returned SUCCESS. */
const char *scram_exchange_user(const scram_exchange *x);

/* Fills *m with the authn method "SCRAM-SHA-256" over db (borrowed
 * until the method is no longer used). */
void scram_authn_method(const scram_db *db, authn_method *m);

#endif

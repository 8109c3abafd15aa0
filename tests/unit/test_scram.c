/*
 * tests/unit/test_scram.c — SCRAM-SHA-256 server against the RFC 7677
 * section 3 example, credentials lines, and the failure paths.
 */
#include "broker/scram.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

/* user "user", password "pencil", the RFC's salt and iteration count. */
static const char rfc_line[] =
	"user:W22ZaJ0SNY7soEsUEjb6gQ==:4096:"
	"WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:"
	"wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=";
static const char rfc_snonce[] = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
static const char rfc_c1[] = "n,,n=user,r=rOprNGfwEbeRWgbNEkqO";
static const char rfc_s1[] =
	"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
	"s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
static const char rfc_c2[] =
	"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
	"p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
static const char rfc_s2[] = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";

static scram_db *rfc_db(void)
{
	scram_db *db = scram_db_create();
	assert_non_null(db);
	assert_int_equal(scram_db_add_line(db, rfc_line), 0);
	return db;
}

static authn_status step(scram_exchange *x, const char *in, char *out,
			 size_t *out_len)
{
	authn_status st = scram_exchange_step(x, (const uint8_t *)in,
					      strlen(in), (uint8_t *)out, 512,
					      out_len);
	out[*out_len] = '\0';
	return st;
}

static void test_rfc7677_vector(void **state)
{
	(void)state;
	scram_db *db = rfc_db();
	scram_exchange *x = scram_exchange_create(db, rfc_snonce);
	char out[513];
	size_t n;
	assert_int_equal(step(x, rfc_c1, out, &n), AUTHN_CONTINUE);
	assert_string_equal(out, rfc_s1);
	assert_string_equal(scram_exchange_user(x), "user");
	assert_int_equal(step(x, rfc_c2, out, &n), AUTHN_SUCCESS);
	assert_string_equal(out, rfc_s2);
	/* Nothing after the end. */
	assert_int_equal(step(x, rfc_c2, out, &n), AUTHN_FAIL);
	scram_exchange_destroy(x);
	scram_db_destroy(db);
}

static void test_bad_proof_fails(void **state)
{
	(void)state;
	scram_db *db = rfc_db();
	scram_exchange *x = scram_exchange_create(db, rfc_snonce);
	char out[513], bad[sizeof(rfc_c2)];
	size_t n;
	assert_int_equal(step(x, rfc_c1, out, &n), AUTHN_CONTINUE);
	memcpy(bad, rfc_c2, sizeof(bad));
	bad[strlen(bad) - 3] ^= 1; /* flip a bit of the proof */
	assert_int_equal(step(x, bad, out, &n), AUTHN_FAIL);
	scram_exchange_destroy(x);
	scram_db_destroy(db);
}

static void test_wrong_nonce_or_binding_fails(void **state)
{
	(void)state;
	scram_db *db = rfc_db();
	char out[513];
	size_t n;
	/* A different server nonce: the client's final message (computed
	 * for the RFC nonce) must not pass. */
	scram_exchange *x = scram_exchange_create(db, "othernonce");
	assert_int_equal(step(x, rfc_c1, out, &n), AUTHN_CONTINUE);
	assert_int_equal(step(x, rfc_c2, out, &n), AUTHN_FAIL);
	scram_exchange_destroy(x);
	/* Channel binding requested ("p=") is refused at once. */
	x = scram_exchange_create(db, rfc_snonce);
	assert_int_equal(step(x, "p=tls-unique,,n=user,r=abc", out, &n),
			 AUTHN_FAIL);
	scram_exchange_destroy(x);
	scram_db_destroy(db);
}

static void test_unknown_user_gets_fake_salt(void **state)
{
	(void)state;
	scram_db *db = rfc_db();
	char out1[513], out2[513];
	size_t n;
	scram_exchange *x = scram_exchange_create(db, "N");
	assert_int_equal(step(x, "n,,n=nobody,r=abc", out1, &n),
			 AUTHN_CONTINUE);
	assert_non_null(strstr(out1, ",s="));
	assert_int_equal(step(x, "c=biws,r=abcN,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
			      out2, &n),
			 AUTHN_FAIL);
	scram_exchange_destroy(x);
	/* Same salt for the same unknown name. */
	x = scram_exchange_create(db, "N");
	assert_int_equal(step(x, "n,,n=nobody,r=abc", out2, &n),
			 AUTHN_CONTINUE);
	assert_string_equal(out1, out2);
	scram_exchange_destroy(x);
	scram_db_destroy(db);
}

static void test_malformed_messages(void **state)
{
	(void)state;
	scram_db *db = rfc_db();
	static const char *const bad[] = {
		"", "n", "n,,", "n,,r=abc", "n,,n=,r=abc", "n,,n=user",
		"x,,n=user,r=a", "n,,n=us=5er,r=a", "n,,n=user,r=a b",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		scram_exchange *x = scram_exchange_create(db, NULL);
		char out[513];
		size_t n;
		assert_int_equal(step(x, bad[i], out, &n), AUTHN_FAIL);
		scram_exchange_destroy(x);
	}
	scram_db_destroy(db);
}

static void test_cred_line_roundtrip(void **state)
{
	(void)state;
	char line[512];
	int n = scram_cred_line("alice", "secret", 4096, line, sizeof(line));
	assert_true(n > 0);
	scram_db *db = scram_db_create();
	assert_int_equal(scram_db_add_line(db, line), 0);
	scram_db_destroy(db);
	assert_int_equal(scram_cred_line("a:b", "x", 0, line, sizeof(line)),
			 -22);
	assert_true(scram_cred_line("alice", "x", 0, line, 10) < 0);
	db = scram_db_create();
	assert_int_not_equal(scram_db_add_line(db, "user:###:4096:a:b"), 0);
	assert_int_not_equal(scram_db_add_line(db, "user:W22ZaJ0SNY7soEsUEjb6gQ==:0:a:b"), 0);
	assert_int_not_equal(scram_db_add_line(db, "onlyuser"), 0);
	scram_db_destroy(db);
}

static void test_db_load_file(void **state)
{
	(void)state;
	char path[] = "/tmp/test_scram_XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	FILE *f = fdopen(fd, "w");
	fprintf(f, "# comment\n\n%s\nbad line\n", rfc_line);
	fclose(f);
	scram_db *db = scram_db_create();
	unsigned bad = 0;
	assert_int_equal(scram_db_load(db, path, &bad), -22);
	assert_int_equal(bad, 4);
	scram_db_destroy(db);
	remove(path);
	db = scram_db_create();
	assert_true(scram_db_load(db, "/nonexistent/x", NULL) < 0);
	scram_db_destroy(db);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rfc7677_vector),
		cmocka_unit_test(test_bad_proof_fails),
		cmocka_unit_test(test_wrong_nonce_or_binding_fails),
		cmocka_unit_test(test_unknown_user_gets_fake_salt),
		cmocka_unit_test(test_malformed_messages),
		cmocka_unit_test(test_cred_line_roundtrip),
		cmocka_unit_test(test_db_load_file),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

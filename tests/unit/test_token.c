/* test_token.c: IMDSv2 token mint/verify (user/token.c). */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "http/token.h"

#define NOW 1700000000ull

static const uint8_t key_a[IMDS_TOKEN_KEY_LEN] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 };
static const uint8_t key_b[IMDS_TOKEN_KEY_LEN] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 11 };
static const char url_safe[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static void mint(const uint8_t *key, const char *iid, uint64_t expiry, char out[TOKEN_TEXT_LEN + 1])
{
	assert_int_equal(token_mint(key, iid, expiry, out), 0);
}

static int verify(const uint8_t *key, const char *iid, const char *tok, uint64_t now, uint64_t *expiry)
{
	return token_verify(key, iid, tok, strlen(tok), now, expiry);
}

static void test_roundtrip(void **state)
{
	char tok[TOKEN_TEXT_LEN + 1];
	uint64_t expiry = 0;

	(void)state;
	mint(key_a, "i-0123456789abcdef0", NOW + 21600, tok);
	assert_int_equal(verify(key_a, "i-0123456789abcdef0", tok, NOW, &expiry), 0);
	assert_int_equal(expiry, NOW + 21600);
	/* A NULL expiry pointer is allowed. */
	assert_int_equal(verify(key_a, "i-0123456789abcdef0", tok, NOW + 21599, NULL), 0);
}

static void test_format(void **state)
{
	char tok[TOKEN_TEXT_LEN + 1];

	(void)state;
	/* Many tokens: the random bytes must never disturb the format. */
	for (int i = 0; i < 64; i++) {
		mint(key_a, "i-1", NOW + 60, tok);
		assert_int_equal(strlen(tok), 56);
		assert_int_equal(strspn(tok, url_safe), 54);
		assert_string_equal(tok + 54, "==");
		/* Version byte 0x01 shows as "AQ", like EC2's tokens. */
		assert_memory_equal(tok, "AQ", 2);
	}
}

static void test_tokens_differ(void **state)
{
	char t1[TOKEN_TEXT_LEN + 1], t2[TOKEN_TEXT_LEN + 1];
	int same = 0;

	(void)state;
	/* 24 random bits: 8 equal pairs in a row would be a broken RNG. */
	for (int i = 0; i < 8; i++) {
		mint(key_a, "i-1", NOW + 60, t1);
		mint(key_a, "i-1", NOW + 60, t2);
		same += strcmp(t1, t2) == 0;
	}
	assert_true(same < 8);
}

/* The random bytes come in batches (token.c): tokens minted one after
 * another, across several batches, still differ from their predecessor
 * (20 random bits: one equal pair among 300 has odds of 1 in 3,500;
 * three mean a broken batch). */
static void test_tokens_differ_across_batches(void **state)
{
	char prev[TOKEN_TEXT_LEN + 1], tok[TOKEN_TEXT_LEN + 1];
	int same = 0;

	(void)state;
	mint(key_a, "i-1", NOW + 60, prev);
	for (int i = 0; i < 300; i++) {
		mint(key_a, "i-1", NOW + 60, tok);
		same += strcmp(prev, tok) == 0;
		assert_int_equal(verify(key_a, "i-1", tok, NOW, NULL), 0);
		memcpy(prev, tok, sizeof(tok));
	}
	assert_true(same < 3);
}

static void test_other_instance(void **state)
{
	char tok[TOKEN_TEXT_LEN + 1];

	(void)state;
	mint(key_a, "i-aaaa", NOW + 60, tok);
	assert_int_equal(verify(key_a, "i-aaab", tok, NOW, NULL), -EINVAL);
	assert_int_equal(verify(key_a, "i-aaaa0", tok, NOW, NULL), -EINVAL);
	assert_int_equal(verify(key_a, "", tok, NOW, NULL), -EINVAL);
}

static void test_other_key(void **state)
{
	char tok[TOKEN_TEXT_LEN + 1];

	(void)state;
	mint(key_a, "i-aaaa", NOW + 60, tok);
	assert_int_equal(verify(key_b, "i-aaaa", tok, NOW, NULL), -EINVAL);
}

static void test_expired(void **state)
{
	char tok[TOKEN_TEXT_LEN + 1];

	(void)state;
	mint(key_a, "i-aaaa", NOW + 1, tok);
	assert_int_equal(verify(key_a, "i-aaaa", tok, NOW, NULL), 0);
	assert_int_equal(verify(key_a, "i-aaaa", tok, NOW + 1, NULL), -ETIME);
	assert_int_equal(verify(key_a, "i-aaaa", tok, NOW + 100000, NULL), -ETIME);
}

/* Every character replaced by every other character of the alphabet (and a
 * few outside it) must make the token invalid, including the low bits of
 * the last data character and the padding. */
static void test_single_char_change(void **state)
{
	char tok[TOKEN_TEXT_LEN + 1], bad[TOKEN_TEXT_LEN + 1];
	static const char extra[] = "=+/. ";

	(void)state;
	mint(key_a, "i-aaaa", NOW + 60, tok);
	/* Verified first, so the original is among the remembered tokens. */
	assert_int_equal(verify(key_a, "i-aaaa", tok, NOW, NULL), 0);
	for (size_t pos = 0; pos < TOKEN_TEXT_LEN; pos++) {
		for (size_t k = 0; k < sizeof(url_safe) - 1 + sizeof(extra) - 1; k++) {
			char c = k < sizeof(url_safe) - 1 ? url_safe[k] : extra[k - (sizeof(url_safe) - 1)];

			if (c == tok[pos])
				continue;
			memcpy(bad, tok, sizeof(bad));
			bad[pos] = c;
			if (verify(key_a, "i-aaaa", bad, NOW, NULL) != -EINVAL)
				fail_msg("token with char %zu changed to '%c' was accepted", pos, c);
		}
	}
}

static void test_malformed(void **state)
{
	char tok[TOKEN_TEXT_LEN + 1];

	(void)state;
	mint(key_a, "i-aaaa", NOW + 60, tok);
	assert_int_equal(token_verify(key_a, "i-aaaa", tok, 55, NOW, NULL), -EINVAL);
	assert_int_equal(token_verify(key_a, "i-aaaa", "", 0, NOW, NULL), -EINVAL);
	assert_int_equal(verify(key_a, "i-aaaa", "AQ==", NOW, NULL), -EINVAL);
	/* Standard (not URL-safe) base64 of a 56-char string is rejected. */
	memcpy(tok, "AQ+/", 4);
	assert_int_equal(verify(key_a, "i-aaaa", tok, NOW, NULL), -EINVAL);
}

/* A token with a different version byte but a correct MAC over it is still
 * refused: "AQ" -> "Ag" is version 0x02. */
static void test_version_byte(void **state)
{
	char tok[TOKEN_TEXT_LEN + 1];

	(void)state;
	mint(key_a, "i-aaaa", NOW + 60, tok);
	tok[1] = 'g';
	assert_int_equal(verify(key_a, "i-aaaa", tok, NOW, NULL), -EINVAL);
}

/* A token that verified is remembered per thread (token.c); the answers
 * must stay exactly those of a full verification: expiry still checked on
 * every use, other instances and keys still refused, a changed key
 * forgetting what the old one verified. */
static void test_remembered(void **state)
{
	char tok[TOKEN_TEXT_LEN + 1];
	uint64_t expiry = 0;

	(void)state;
	mint(key_a, "i-cccc", NOW + 10, tok);
	assert_int_equal(verify(key_a, "i-cccc", tok, NOW, &expiry), 0);
	assert_int_equal(expiry, NOW + 10);
	expiry = 0;
	assert_int_equal(verify(key_a, "i-cccc", tok, NOW + 9, &expiry), 0);
	assert_int_equal(expiry, NOW + 10);
	assert_int_equal(verify(key_a, "i-cccc", tok, NOW + 10, NULL), -ETIME);
	assert_int_equal(verify(key_a, "i-ccccc", tok, NOW, NULL), -EINVAL);
	assert_int_equal(verify(key_a, "i-ccc", tok, NOW, NULL), -EINVAL);
	assert_int_equal(verify(key_b, "i-cccc", tok, NOW, NULL), -EINVAL);
	assert_int_equal(verify(key_a, "i-cccc", tok, NOW, NULL), 0);
	/* Still valid for the key that minted it after another key was used
	 * and back; a token of key_b is refused under key_a throughout. */
	mint(key_b, "i-cccc", NOW + 10, tok);
	assert_int_equal(verify(key_b, "i-cccc", tok, NOW, NULL), 0);
	assert_int_equal(verify(key_a, "i-cccc", tok, NOW, NULL), -EINVAL);
	assert_int_equal(verify(key_b, "i-cccc", tok, NOW, NULL), 0);
}

/* Instance-ids too long to remember still verify, every time. */
static void test_long_instance_id(void **state)
{
	char iid[200], tok[TOKEN_TEXT_LEN + 1];

	(void)state;
	memset(iid, 'x', sizeof(iid) - 1);
	iid[sizeof(iid) - 1] = '\0';
	mint(key_a, iid, NOW + 60, tok);
	for (int i = 0; i < 3; i++)
		assert_int_equal(verify(key_a, iid, tok, NOW, NULL), 0);
	iid[150] = 'y';
	assert_int_equal(verify(key_a, iid, tok, NOW, NULL), -EINVAL);
}

/* More tokens than the thread remembers: evicted ones verify again by MAC,
 * and each stays bound to its instance. */
#define MANY 5000
static void test_many_tokens(void **state)
{
	static char toks[MANY][TOKEN_TEXT_LEN + 1];
	char iid[32], other[32];

	(void)state;
	for (int round = 0; round < 2; round++) {
		for (int i = 0; i < MANY; i++) {
			snprintf(iid, sizeof(iid), "i-%08d", i);
			snprintf(other, sizeof(other), "i-%08d", (i + 1) % MANY);
			if (round == 0)
				mint(key_a, iid, NOW + 60 + (uint64_t)i, toks[i]);
			assert_int_equal(verify(key_a, iid, toks[i], NOW, NULL), 0);
			assert_int_equal(verify(key_a, other, toks[i], NOW, NULL), -EINVAL);
			assert_int_equal(verify(key_a, iid, toks[i], NOW + 60 + (uint64_t)i, NULL), -ETIME);
		}
	}
}

static int verify_memo(struct token_memo *m, const uint8_t *key, const char *iid, const char *tok, uint64_t now,
		       uint64_t *expiry)
{
	return token_verify_memo(m, key, iid, tok, strlen(tok), now, expiry);
}

/* A connection's memo (token_verify_memo) answers exactly as a full
 * verification: not after the expiry, not under another key or for
 * another instance, not for a changed text; and a refusal leaves the
 * remembered token in place. */
static void test_memo(void **state)
{
	char tok[TOKEN_TEXT_LEN + 1], bad[TOKEN_TEXT_LEN + 1], tok_b[TOKEN_TEXT_LEN + 1];
	struct token_memo m = { 0 };
	uint64_t expiry = 0;

	(void)state;
	mint(key_a, "i-eeee", NOW + 10, tok);
	assert_int_equal(verify_memo(&m, key_a, "i-eeee", tok, NOW, &expiry), 0);
	assert_int_equal(expiry, NOW + 10);
	assert_int_equal(m.expiry, NOW + 10);
	expiry = 0;
	assert_int_equal(verify_memo(&m, key_a, "i-eeee", tok, NOW + 9, &expiry), 0);
	assert_int_equal(expiry, NOW + 10);
	assert_int_equal(verify_memo(&m, key_a, "i-eeee", tok, NOW + 10, NULL), -ETIME);
	assert_int_equal(verify_memo(&m, key_b, "i-eeee", tok, NOW, NULL), -EINVAL);
	assert_int_equal(verify_memo(&m, key_a, "i-eeeee", tok, NOW, NULL), -EINVAL);
	assert_int_equal(verify_memo(&m, key_a, "i-eee", tok, NOW, NULL), -EINVAL);
	memcpy(bad, tok, sizeof(bad));
	bad[20] = bad[20] == 'A' ? 'B' : 'A';
	assert_int_equal(verify_memo(&m, key_a, "i-eeee", bad, NOW, NULL), -EINVAL);
	assert_int_equal(token_verify_memo(&m, key_a, "i-eeee", tok, TOKEN_TEXT_LEN - 1, NOW, NULL), -EINVAL);
	assert_memory_equal(m.text, tok, TOKEN_TEXT_LEN);
	assert_int_equal(verify_memo(&m, key_a, "i-eeee", tok, NOW, NULL), 0);
	/* The key changes: the remembered token no longer verifies, the new
	 * key's does and replaces it. */
	mint(key_b, "i-eeee", NOW + 20, tok_b);
	assert_int_equal(verify_memo(&m, key_b, "i-eeee", tok, NOW, NULL), -EINVAL);
	assert_int_equal(verify_memo(&m, key_b, "i-eeee", tok_b, NOW, &expiry), 0);
	assert_int_equal(expiry, NOW + 20);
	assert_int_equal(verify_memo(&m, key_a, "i-eeee", tok_b, NOW, NULL), -EINVAL);
	assert_int_equal(verify_memo(&m, key_b, "i-eeee", tok_b, NOW + 20, NULL), -ETIME);
	/* An expired token is refused and not remembered. */
	assert_int_equal(verify_memo(&m, key_a, "i-eeee", tok, NOW + 10, NULL), -ETIME);
	assert_memory_equal(m.text, tok_b, TOKEN_TEXT_LEN);
	/* Without a memo, the plain verification. */
	assert_int_equal(verify_memo(NULL, key_a, "i-eeee", tok, NOW, NULL), 0);
}

/* Instance-ids too long to remember are verified in full and leave the
 * memo empty. */
static void test_memo_long_instance_id(void **state)
{
	char iid[TOKEN_IID_MAX + 2], tok[TOKEN_TEXT_LEN + 1];
	struct token_memo m = { 0 };

	(void)state;
	memset(iid, 'x', sizeof(iid) - 1);
	iid[sizeof(iid) - 1] = '\0';
	mint(key_a, iid, NOW + 60, tok);
	assert_int_equal(verify_memo(&m, key_a, iid, tok, NOW, NULL), 0);
	assert_int_equal(m.expiry, 0);
	iid[TOKEN_IID_MAX] = 'y';
	assert_int_equal(verify_memo(&m, key_a, iid, tok, NOW, NULL), -EINVAL);
}

/* Each thread has its own state (imdsd's workers): a second thread gives
 * the same answers, and its state is freed when it ends (the sanitizer
 * build reports a leak otherwise). */
static void *verify_in_thread(void *arg)
{
	const char *tok = arg;
	long ok = verify(key_a, "i-dddd", tok, NOW, NULL) == 0 && verify(key_b, "i-dddd", tok, NOW, NULL) == -EINVAL &&
		  verify(key_a, "i-dddd", tok, NOW, NULL) == 0 && verify(key_a, "i-dddd", tok, NOW + 60, NULL) == -ETIME;

	return (void *)ok;
}

static void test_threads(void **state)
{
	char tok[TOKEN_TEXT_LEN + 1];
	pthread_t th;
	void *ok = NULL;

	(void)state;
	mint(key_a, "i-dddd", NOW + 60, tok);
	assert_int_equal(verify(key_a, "i-dddd", tok, NOW, NULL), 0);
	assert_int_equal(pthread_create(&th, NULL, verify_in_thread, tok), 0);
	assert_int_equal(pthread_join(th, &ok), 0);
	assert_true(ok != NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_roundtrip),	   cmocka_unit_test(test_format),
		cmocka_unit_test(test_tokens_differ),	   cmocka_unit_test(test_other_instance),
		cmocka_unit_test(test_other_key),	   cmocka_unit_test(test_expired),
		cmocka_unit_test(test_single_char_change), cmocka_unit_test(test_malformed),
		cmocka_unit_test(test_version_byte),	   cmocka_unit_test(test_remembered),
		cmocka_unit_test(test_long_instance_id),   cmocka_unit_test(test_many_tokens),
		cmocka_unit_test(test_threads),		   cmocka_unit_test(test_memo),
		cmocka_unit_test(test_memo_long_instance_id), cmocka_unit_test(test_tokens_differ_across_batches),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

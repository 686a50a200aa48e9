/* token.c: IMDSv2 session tokens (mint and verify), see token.h for the
 * layout.  Stateless: everything needed to verify a token is inside it and
 * in the host key, so no token store can grow without bound and a restarted
 * imdsd accepts the tokens it issued before.  (The per-thread table of
 * tokens that verified lately, below, is a fixed-size cache of answers,
 * not a store: without it every answer is the same.) */
#include "http/token.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <string.h>
#include <sys/random.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#define TOKEN_RAW_LEN 40
#define TOKEN_HDR_LEN 12 /* version, 3 random bytes, 8 bytes expiry */
#define TOKEN_MAC_LEN (TOKEN_RAW_LEN - TOKEN_HDR_LEN)
#define TOKEN_VERSION 0x01

static const char token_alphabet[64] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* Fetching an algorithm walks OpenSSL's provider tables under a lock; do it
 * once per process, the EVP_MAC object is then shared read-only. */
static EVP_MAC *token_hmac;
static pthread_once_t token_hmac_once = PTHREAD_ONCE_INIT;

/* Per thread (each imdsd worker), state that makes verifying cheap:
 *  - one HMAC context keyed with the last key used: keying HMAC-SHA256
 *    (fetching SHA-256, hashing the padded key twice) cost more than the
 *    MAC of a token itself; re-initialising a keyed context with a NULL
 *    key restarts it from the saved keyed state;
 *  - the tokens that verified lately, with the instance-id they were
 *    verified for and their expiry.  An IMDSv2 client shows the same token
 *    on every request until it expires (cloud-init on every connection of
 *    its crawl), so most requests find it here and skip the MAC.
 * A verification depends only on the key, the instance-id and the token's
 * text (and the clock, against the expiry inside the token), so an entry
 * that matches all three exactly gives the answer the MAC would: the
 * cache is emptied when the key changes, instance-ids and text are
 * compared in full, and the expiry is checked on every use.  Only tokens
 * that verified are entered, so a guest cannot fill it with forgeries
 * beyond evicting entries, and a fixed table bounds it.  Freed when the
 * thread ends. */
/* Each worker sees the tokens of every VM (connections are spread over
 * the workers): 2048 slots keep most of a 1,000-VM storm's tokens.
 * 2048 * 136 bytes per thread, touched only as slots fill. */
#define TOKEN_CACHE_BITS 11
#define TOKEN_CACHE_SLOTS (1u << TOKEN_CACHE_BITS)
#define TOKEN_CACHE_HASH_AT 24 /* characters 16..53 encode the MAC */

struct token_cache_entry {
	uint64_t expiry; /* 0: empty */
	uint8_t iid_len;
	char iid[TOKEN_IID_MAX];
	char text[TOKEN_TEXT_LEN];
};

/* A token's 3 random bytes are not secret (they show in its text); they
 * only make two tokens of one second differ.  Taken from a batch filled
 * by one getrandom, not one system call per token: 255 bytes, 85 tokens
 * (getrandom never returns short for up to 256 bytes). */
#define TOKEN_RANDOM_BATCH 255

struct token_thread {
	EVP_MAC_CTX *ctx;
	bool keyed;	 /* ctx holds the state keyed with `key` */
	bool cache_used; /* an entry was written since the cache was emptied */
	uint8_t key[IMDS_TOKEN_KEY_LEN];
	size_t random_left; /* unused bytes at the start of `random` */
	uint8_t random[TOKEN_RANDOM_BATCH];
	struct token_cache_entry cache[TOKEN_CACHE_SLOTS];
};

static pthread_key_t token_thread_key;

static void token_thread_free(void *p)
{
	struct token_thread *t = p;

	EVP_MAC_CTX_free(t->ctx);
	OPENSSL_clear_free(t, sizeof(*t));
}

static void token_hmac_fetch(void)
{
	token_hmac = EVP_MAC_fetch(NULL, "HMAC", NULL);
	if (token_hmac && pthread_key_create(&token_thread_key, token_thread_free)) {
		EVP_MAC_free(token_hmac);
		token_hmac = NULL;
	}
}

/* This thread's state, its context keyed with `key` (and its cache
 * emptied if the key changed).  NULL on failure. */
static struct token_thread *token_thread_for(const uint8_t key[IMDS_TOKEN_KEY_LEN])
{
	OSSL_PARAM params[] = {
		OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
		OSSL_PARAM_construct_end(),
	};
	struct token_thread *t;

	pthread_once(&token_hmac_once, token_hmac_fetch);
	if (!token_hmac)
		return NULL;
	t = pthread_getspecific(token_thread_key);
	if (!t) {
		t = OPENSSL_zalloc(sizeof(*t));
		if (!t)
			return NULL;
		t->ctx = EVP_MAC_CTX_new(token_hmac);
		if (!t->ctx || pthread_setspecific(token_thread_key, t)) {
			token_thread_free(t);
			return NULL;
		}
	}
	if (t->keyed && memcmp(t->key, key, IMDS_TOKEN_KEY_LEN) == 0)
		return t;
	if (t->cache_used) /* a new table is zero already, and untouched */
		memset(t->cache, 0, sizeof(t->cache));
	t->cache_used = false;
	t->keyed = EVP_MAC_init(t->ctx, key, IMDS_TOKEN_KEY_LEN, params);
	if (!t->keyed)
		return NULL;
	memcpy(t->key, key, IMDS_TOKEN_KEY_LEN);
	return t;
}

/* The slot of a token: from eight characters of its MAC, which for
 * tokens that verified (the only ones entered) are as good as random.
 * A guest can aim forgeries at one slot, which only makes them miss. */
static struct token_cache_entry *token_cache_slot(struct token_thread *t, const char *text)
{
	uint64_t v;

	memcpy(&v, text + TOKEN_CACHE_HASH_AT, sizeof(v));
	return &t->cache[(v * 0x9e3779b97f4a7c15ull) >> (64 - TOKEN_CACHE_BITS)];
}

/* Whether e holds this token verified for this instance.  The instance-id
 * (not secret) is compared first, so another VM's token is never compared
 * with a guest's text; the text in constant time all the same. */
static bool token_cache_match(const struct token_cache_entry *e, const char *iid, size_t iid_len, const char *text)
{
	return e->expiry && e->iid_len == iid_len && memcmp(e->iid, iid, iid_len) == 0 &&
	       CRYPTO_memcmp(e->text, text, TOKEN_TEXT_LEN) == 0;
}

/* out = first TOKEN_MAC_LEN bytes of HMAC-SHA256(key, hdr || instance_id). */
static int token_mac(struct token_thread *t, const uint8_t hdr[TOKEN_HDR_LEN], const char *instance_id,
		     uint8_t out[TOKEN_MAC_LEN])
{
	uint8_t full[EVP_MAX_MD_SIZE];
	size_t full_len = 0;
	int ret = -EIO;

	/* Restart from the keyed state; a failure re-keys on the next call. */
	if (!EVP_MAC_init(t->ctx, NULL, 0, NULL)) {
		t->keyed = false;
		return -EIO;
	}
	if (!EVP_MAC_update(t->ctx, hdr, TOKEN_HDR_LEN) ||
	    !EVP_MAC_update(t->ctx, (const uint8_t *)instance_id, strlen(instance_id)) ||
	    !EVP_MAC_final(t->ctx, full, &full_len, sizeof(full)) || full_len < TOKEN_MAC_LEN)
		goto out;
	memcpy(out, full, TOKEN_MAC_LEN);
	ret = 0;
out:
	OPENSSL_cleanse(full, sizeof(full));
	return ret;
}

/* 40 bytes -> 56 characters: 13 full groups of 3 bytes, then the last byte
 * as two characters and "==" (RFC 4648 §5 alphabet, padding kept as EC2
 * does). */
static void token_encode(const uint8_t raw[TOKEN_RAW_LEN], char out[TOKEN_TEXT_LEN + 1])
{
	size_t i, o = 0;

	for (i = 0; i + 3 <= TOKEN_RAW_LEN; i += 3) {
		uint32_t v = (uint32_t)raw[i] << 16 | (uint32_t)raw[i + 1] << 8 | raw[i + 2];

		out[o++] = token_alphabet[v >> 18 & 63];
		out[o++] = token_alphabet[v >> 12 & 63];
		out[o++] = token_alphabet[v >> 6 & 63];
		out[o++] = token_alphabet[v & 63];
	}
	out[o++] = token_alphabet[raw[i] >> 2];
	out[o++] = token_alphabet[(raw[i] & 3) << 4];
	out[o++] = '=';
	out[o++] = '=';
	out[o] = '\0';
}

static int token_sextet(char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '-')
		return 62;
	if (c == '_')
		return 63;
	return -1;
}

/* Strict inverse of token_encode: exactly one text maps to each token, so
 * no character can be changed without changing the decoded bytes (the
 * unused low 4 bits of character 53 must be zero). */
static int token_decode(const char *text, size_t len, uint8_t raw[TOKEN_RAW_LEN])
{
	int s[TOKEN_TEXT_LEN - 2];
	size_t i, o = 0;

	if (len != TOKEN_TEXT_LEN || text[54] != '=' || text[55] != '=')
		return -EINVAL;
	for (i = 0; i < TOKEN_TEXT_LEN - 2; i++) {
		s[i] = token_sextet(text[i]);
		if (s[i] < 0)
			return -EINVAL;
	}
	for (i = 0; i + 4 <= TOKEN_TEXT_LEN - 2; i += 4) {
		uint32_t v = (uint32_t)s[i] << 18 | (uint32_t)s[i + 1] << 12 | (uint32_t)s[i + 2] << 6 | (uint32_t)s[i + 3];

		raw[o++] = v >> 16 & 0xff;
		raw[o++] = v >> 8 & 0xff;
		raw[o++] = v & 0xff;
	}
	if (s[i + 1] & 15)
		return -EINVAL;
	raw[o] = (uint8_t)(s[i] << 2 | s[i + 1] >> 4);
	return 0;
}

static void token_put_be64(uint8_t *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--, v >>= 8)
		p[i] = v & 0xff;
}

static uint64_t token_get_be64(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 0; i < 8; i++)
		v = v << 8 | p[i];
	return v;
}

/* Three bytes from this thread's batch, refilled when it runs out. */
static int token_random3(struct token_thread *t, uint8_t out[3])
{
	if (t->random_left < 3) {
		if (getrandom(t->random, sizeof(t->random), 0) != (ssize_t)sizeof(t->random))
			return -EIO;
		t->random_left = sizeof(t->random);
	}
	t->random_left -= 3;
	memcpy(out, t->random + t->random_left, 3);
	return 0;
}

int token_mint(const uint8_t key[IMDS_TOKEN_KEY_LEN], const char *instance_id, uint64_t expiry_unix,
	       char out[TOKEN_TEXT_LEN + 1])
{
	uint8_t raw[TOKEN_RAW_LEN];
	struct token_thread *t = token_thread_for(key);
	int ret;

	if (!t)
		return -EIO;
	raw[0] = TOKEN_VERSION;
	/* Random bytes make two tokens minted in the same second differ, like
	 * EC2's.  The top nibble of byte 1 stays zero so every token starts
	 * "AQ" as EC2's do. */
	if (token_random3(t, raw + 1))
		return -EIO;
	raw[1] &= 0x0f;
	token_put_be64(raw + 4, expiry_unix);
	ret = token_mac(t, raw, instance_id, raw + TOKEN_HDR_LEN);
	if (ret)
		return ret;
	token_encode(raw, out);
	return 0;
}

/* The MAC check proper: 0 and *expiry when token was minted with this key
 * for this instance, whatever the time; else -EINVAL (or -EIO). */
static int token_check_mac(struct token_thread *t, const char *instance_id, const char *token, size_t len,
			   uint64_t *expiry)
{
	uint8_t raw[TOKEN_RAW_LEN], mac[TOKEN_MAC_LEN];

	if (token_decode(token, len, raw) || raw[0] != TOKEN_VERSION)
		return -EINVAL;
	if (token_mac(t, raw, instance_id, mac))
		return -EINVAL;
	/* Constant time: the comparison must not tell a guest how many leading
	 * MAC bytes of a forged token were right. */
	if (CRYPTO_memcmp(mac, raw + TOKEN_HDR_LEN, TOKEN_MAC_LEN) != 0)
		return -EINVAL;
	*expiry = token_get_be64(raw + 4);
	return 0;
}

int token_verify(const uint8_t key[IMDS_TOKEN_KEY_LEN], const char *instance_id, const char *token, size_t len,
		 uint64_t now_unix, uint64_t *expiry_unix)
{
	size_t iid_len = strlen(instance_id);
	struct token_cache_entry *e = NULL;
	struct token_thread *t;
	uint64_t expiry;

	if (len != TOKEN_TEXT_LEN)
		return -EINVAL;
	t = token_thread_for(key);
	if (!t)
		return -EINVAL;
	if (iid_len <= TOKEN_IID_MAX)
		e = token_cache_slot(t, token);
	if (e && token_cache_match(e, instance_id, iid_len, token)) {
		expiry = e->expiry;
	} else {
		if (token_check_mac(t, instance_id, token, len, &expiry))
			return -EINVAL;
		/* Expired tokens are not kept: they never verify again. */
		if (e && now_unix < expiry) {
			t->cache_used = true;
			e->expiry = expiry;
			e->iid_len = (uint8_t)iid_len;
			memcpy(e->iid, instance_id, iid_len);
			memcpy(e->text, token, TOKEN_TEXT_LEN);
		}
	}
	if (now_unix >= expiry)
		return -ETIME;
	if (expiry_unix)
		*expiry_unix = expiry;
	return 0;
}

/* The memo answers exactly as token_verify would: a verification depends
 * only on the key, the instance-id and the text (and the clock, against
 * the expiry inside the text), and all three are compared in full.  Plain
 * memcmp on the text: the memo holds only what this connection's own peer
 * sent before, so timing tells it nothing it did not know. */
static bool token_memo_match(const struct token_memo *m, const uint8_t key[IMDS_TOKEN_KEY_LEN], const char *iid,
			     size_t iid_len, const char *text, size_t len)
{
	return m->expiry && len == TOKEN_TEXT_LEN && m->iid_len == iid_len && memcmp(m->text, text, TOKEN_TEXT_LEN) == 0 &&
	       memcmp(m->iid, iid, iid_len) == 0 && memcmp(m->key, key, IMDS_TOKEN_KEY_LEN) == 0;
}

int token_verify_memo(struct token_memo *m, const uint8_t key[IMDS_TOKEN_KEY_LEN], const char *instance_id,
		      const char *token, size_t len, uint64_t now_unix, uint64_t *expiry_unix)
{
	size_t iid_len = strlen(instance_id);
	uint64_t expiry;
	int rc;

	if (!m || iid_len > TOKEN_IID_MAX)
		return token_verify(key, instance_id, token, len, now_unix, expiry_unix);
	if (!token_memo_match(m, key, instance_id, iid_len, token, len)) {
		rc = token_verify(key, instance_id, token, len, now_unix, &expiry);
		if (rc == 0) {
			m->expiry = expiry;
			memcpy(m->key, key, IMDS_TOKEN_KEY_LEN);
			m->iid_len = (uint8_t)iid_len;
			memcpy(m->iid, instance_id, iid_len);
			memcpy(m->text, token, TOKEN_TEXT_LEN);
		}
		if (rc == 0 && expiry_unix)
			*expiry_unix = expiry;
		return rc;
	}
	if (now_unix >= m->expiry)
		return -ETIME;
	if (expiry_unix)
		*expiry_unix = m->expiry;
	return 0;
}

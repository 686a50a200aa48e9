/* token.c: IMDSv2 session tokens (mint and verify), see token.h for the
 * layout.  Stateless: everything needed to verify a token is inside it and
 * in the host key, so no token store can grow without bound and a restarted
 * imdsd accepts the tokens it issued before. */
#include "token.h"

#include <errno.h>
#include <pthread.h>
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

static void token_hmac_fetch(void)
{
	token_hmac = EVP_MAC_fetch(NULL, "HMAC", NULL);
}

/* out = first TOKEN_MAC_LEN bytes of HMAC-SHA256(key, hdr || instance_id). */
static int token_mac(const uint8_t key[IMDS_TOKEN_KEY_LEN], const uint8_t hdr[TOKEN_HDR_LEN], const char *instance_id,
		     uint8_t out[TOKEN_MAC_LEN])
{
	OSSL_PARAM params[] = {
		OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
		OSSL_PARAM_construct_end(),
	};
	uint8_t full[EVP_MAX_MD_SIZE];
	size_t full_len = 0;
	EVP_MAC_CTX *ctx = NULL;
	int ret = -EIO;

	pthread_once(&token_hmac_once, token_hmac_fetch);
	if (!token_hmac)
		return -EIO;
	ctx = EVP_MAC_CTX_new(token_hmac);
	if (!ctx)
		goto out;
	if (!EVP_MAC_init(ctx, key, IMDS_TOKEN_KEY_LEN, params) || !EVP_MAC_update(ctx, hdr, TOKEN_HDR_LEN) ||
	    !EVP_MAC_update(ctx, (const uint8_t *)instance_id, strlen(instance_id)) ||
	    !EVP_MAC_final(ctx, full, &full_len, sizeof(full)) || full_len < TOKEN_MAC_LEN)
		goto out;
	memcpy(out, full, TOKEN_MAC_LEN);
	ret = 0;
out:
	OPENSSL_cleanse(full, sizeof(full));
	EVP_MAC_CTX_free(ctx);
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

int token_mint(const uint8_t key[IMDS_TOKEN_KEY_LEN], const char *instance_id, uint64_t expiry_unix,
	       char out[TOKEN_TEXT_LEN + 1])
{
	uint8_t raw[TOKEN_RAW_LEN];
	int ret;

	raw[0] = TOKEN_VERSION;
	/* Random bytes make two tokens minted in the same second differ, like
	 * EC2's; requests this small never return short.  The top nibble of
	 * byte 1 stays zero so every token starts "AQ" as EC2's do. */
	if (getrandom(raw + 1, 3, 0) != 3)
		return -EIO;
	raw[1] &= 0x0f;
	token_put_be64(raw + 4, expiry_unix);
	ret = token_mac(key, raw, instance_id, raw + TOKEN_HDR_LEN);
	if (ret)
		return ret;
	token_encode(raw, out);
	return 0;
}

int token_verify(const uint8_t key[IMDS_TOKEN_KEY_LEN], const char *instance_id, const char *token, size_t len,
		 uint64_t now_unix, uint64_t *expiry_unix)
{
	uint8_t raw[TOKEN_RAW_LEN], mac[TOKEN_MAC_LEN];
	uint64_t expiry;

	if (token_decode(token, len, raw) || raw[0] != TOKEN_VERSION)
		return -EINVAL;
	if (token_mac(key, raw, instance_id, mac))
		return -EINVAL;
	/* Constant time: the comparison must not tell a guest how many leading
	 * MAC bytes of a forged token were right. */
	if (CRYPTO_memcmp(mac, raw + TOKEN_HDR_LEN, TOKEN_MAC_LEN) != 0)
		return -EINVAL;
	expiry = token_get_be64(raw + 4);
	if (now_unix >= expiry)
		return -ETIME;
	if (expiry_unix)
		*expiry_unix = expiry;
	return 0;
}

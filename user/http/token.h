/* token.h: IMDSv2 session tokens.
 *
 * A token is 40 bytes shown as 56 characters of URL-safe base64 with "=="
 * padding, like EC2's: byte 0 = 0x01, bytes 1..3 random (top nibble of
 * byte 1 zero, so the text starts "AQ" like EC2's), bytes 4..11 the
 * expiry (unix seconds, big-endian), bytes 12..39 the first 28 bytes of
 * HMAC-SHA256(host key, bytes 0..11 || instance-id).  Binding the MAC to the
 * instance-id makes one VM's token worthless to another; keeping the host
 * key pinned lets a restarted imdsd accept tokens it issued before. */
#ifndef IMDS_TOKEN_H
#define IMDS_TOKEN_H
#include <stddef.h>
#include <stdint.h>

#include "imds.h"

#define TOKEN_TEXT_LEN 56
#define TOKEN_TTL_MIN 1
#define TOKEN_TTL_MAX 21600
#define TOKEN_IID_MAX 64 /* instance-ids longer than this are not remembered */

/* 0 or -EIO (no randomness / HMAC failure). out is NUL-terminated. */
int token_mint(const uint8_t key[IMDS_TOKEN_KEY_LEN], const char *instance_id, uint64_t expiry_unix,
	       char out[TOKEN_TEXT_LEN + 1]);
/* 0 and *expiry_unix when valid for this VM at `now_unix`;
 * -EINVAL when malformed or minted for another VM or key; -ETIME when expired. */
int token_verify(const uint8_t key[IMDS_TOKEN_KEY_LEN], const char *instance_id, const char *token, size_t len,
		 uint64_t now_unix, uint64_t *expiry_unix);

/* The last token one connection showed that verified, with what it was
 * verified against.  A keep-alive client shows the same token on every
 * request, so checking it against its own connection's memo (memory the
 * request path touches anyway) saves the thread-wide table's lookup.
 * Zeroed: empty. */
struct token_memo {
	uint64_t expiry; /* 0: empty */
	uint8_t key[IMDS_TOKEN_KEY_LEN];
	uint8_t iid_len;
	char iid[TOKEN_IID_MAX];
	char text[TOKEN_TEXT_LEN];
};

/* token_verify, answered from *m when it holds this token verified with
 * this key for this instance-id (the expiry is checked on every use), and
 * remembering the token in *m when it verifies.  m may be NULL. */
int token_verify_memo(struct token_memo *m, const uint8_t key[IMDS_TOKEN_KEY_LEN], const char *instance_id,
		      const char *token, size_t len, uint64_t now_unix, uint64_t *expiry_unix);

#endif

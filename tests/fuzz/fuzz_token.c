/* fuzz_token.c: the IMDSv2 token verifier (token_verify) on arbitrary
 * text, for the instance-ids of the fuzz VMs with the fuzz key.  A token
 * that verifies must be exactly TOKEN_TEXT_LEN characters, not expired,
 * valid for one instance only, give the same answer a second time (the
 * second answer may come from the per-thread cache), and expire exactly at
 * the expiry it carries.  A connection's memo (token_verify_memo), kept
 * across inputs and instance-ids as one connection would see them, must
 * give the same answers. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>

#include "fuzz_vms.h"
#include "http/token.h"

static const char *const token_iids[] = { "i-0f1a2b3c4d5e60001", "i-0f1a2b3c4d5e60009", "" };
#define TOKEN_IIDS (sizeof(token_iids) / sizeof(token_iids[0]))

static struct token_memo token_memo;

static int token_check(const char *iid, const char *text, size_t len, uint64_t now)
{
	uint64_t expiry = 0, again = 0;
	int rc = token_verify(fuzz_key, iid, text, len, now, &expiry);

	if (rc != 0 && rc != -EINVAL && rc != -ETIME)
		abort();
	if (rc == 0 && (len != TOKEN_TEXT_LEN || expiry <= now))
		abort();
	if (token_verify(fuzz_key, iid, text, len, now, &again) != rc || (rc == 0 && again != expiry))
		abort();
	if (rc == 0 && (token_verify(fuzz_key, iid, text, len, expiry - 1, &again) != 0 ||
			token_verify(fuzz_key, iid, text, len, expiry, &again) != -ETIME))
		abort();
	if (token_verify_memo(&token_memo, fuzz_key, iid, text, len, now, &again) != rc || (rc == 0 && again != expiry))
		abort();
	if (rc == 0 && (token_verify_memo(&token_memo, fuzz_key, iid, text, len, expiry - 1, &again) != 0 ||
			token_verify_memo(&token_memo, fuzz_key, iid, text, len, expiry, &again) != -ETIME))
		abort();
	return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
	int valid = 0;

	for (size_t i = 0; i < TOKEN_IIDS; i++)
		valid += token_check(token_iids[i], (const char *)data, len, FUZZ_NOW) == 0;
	if (valid > 1)
		abort(); /* one token, several VMs */
	return 0;
}

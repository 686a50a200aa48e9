/* vmconf_iam.c: a VM record's "iam" section (vmconf_iam.h), each field
 * held to IAM's and STS's own rules so that SDKs accept what they get. */
#include "compile/vmconf_iam.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int vc_parse_time(struct schema_ctx *c, json_t *v, const char *path, char out[VMCONF_TIME_LEN + 1])
{
	char q[SCHEMA_QUOTE_MAX];

	if (!json_is_string(v))
		return schema_expect(c, path, v, "a string");
	if (vmconf_check_time(json_string_value(v), json_string_length(v))) {
		schema_quote_json(v, q);
		return schema_fail(c, path, "%s is not a valid UTC time of the form YYYY-MM-DDTHH:MM:SSZ", q);
	}
	memcpy(out, json_string_value(v), VMCONF_TIME_LEN + 1);
	return 0;
}

/* A string of `min`..`max` bytes whose every byte is in `allowed` (NULL:
 * printable ASCII without spaces); *out is a copy. */
static int vc_parse_token_string(struct schema_ctx *c, json_t *v, const char *path, size_t min, size_t max,
				 const char *allowed, const char *what, char **out)
{
	char q[SCHEMA_QUOTE_MAX];
	const char *s;
	size_t len;

	if (!json_is_string(v))
		return schema_expect(c, path, v, "a string");
	s = json_string_value(v);
	len = json_string_length(v);
	schema_quote(s, len, q);
	if (len < min || len > max)
		return schema_fail(c, path, "%s must be %zu to %zu characters long", q, min, max);
	for (size_t i = 0; i < len; i++) {
		bool ok = allowed ? (s[i] && strchr(allowed, s[i]) != NULL) : (s[i] > ' ' && s[i] <= '~');

		if (!ok)
			return schema_fail(c, path, "%s: character %zu is not allowed in %s", q, i + 1, what);
	}
	*out = strdup(s);
	return *out ? 0 : -ENOMEM;
}

static int vc_parse_iam_role(struct schema_ctx *c, void *target, json_t *v, const char *path)
{
	/* IAM's role name rule: [\w+=,.@-]{1,64}. */
	return vc_parse_token_string(c, v, path, 1, 64, SCHEMA_ALNUM "+=,.@_-", "a role name",
				     &((struct vm_iam *)target)->role);
}

/* arn:PARTITION:iam::ACCOUNT:instance-profile/NAME; the account is
 * copied to `account` (13 bytes). */
static int vc_split_profile_arn(const char *s, char *account)
{
	const char *p = s, *colon;

	if (strncmp(p, "arn:", 4))
		return -EINVAL;
	p += 4;
	colon = strchr(p, ':');
	if (!colon || colon == p || strncmp(colon, ":iam::", 6))
		return -EINVAL;
	p = colon + 6;
	if (strspn(p, "0123456789") != VMCONF_ACCOUNT_LEN || p[VMCONF_ACCOUNT_LEN] != ':')
		return -EINVAL;
	memcpy(account, p, VMCONF_ACCOUNT_LEN);
	account[VMCONF_ACCOUNT_LEN] = '\0';
	p += VMCONF_ACCOUNT_LEN + 1;
	if (strncmp(p, "instance-profile/", 17) || !p[17] || p[strlen(p) - 1] == '/')
		return -EINVAL;
	return 0;
}

static int vc_parse_iam_arn(struct schema_ctx *c, void *target, json_t *v, const char *path)
{
	struct vm_iam *iam = target;
	char account[VMCONF_ACCOUNT_LEN + 1], q[SCHEMA_QUOTE_MAX];
	int rc = vc_parse_token_string(c, v, path, 1, 2048, NULL, "an ARN", &iam->profile_arn);

	if (rc)
		return rc;
	if (vc_split_profile_arn(iam->profile_arn, account)) {
		schema_quote_json(v, q);
		return schema_fail(c, path, "%s is not an instance profile ARN (arn:PARTITION:iam::ACCOUNT:instance-profile/NAME)",
			       q);
	}
	/* The account named by "account-id" (parsed later) must agree. */
	memcpy(iam->account_id, account, sizeof(account));
	return 0;
}

static int vc_parse_iam_profile_id(struct schema_ctx *c, void *target, json_t *v, const char *path)
{
	return vc_parse_token_string(c, v, path, 21, 21, "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789",
				     "an instance profile id", &((struct vm_iam *)target)->profile_id);
}

static int vc_parse_iam_account(struct schema_ctx *c, void *target, json_t *v, const char *path)
{
	struct vm_iam *iam = target;
	char q[SCHEMA_QUOTE_MAX];

	if (!json_is_string(v))
		return schema_expect(c, path, v, "a string");
	schema_quote_json(v, q);
	if (json_string_length(v) != VMCONF_ACCOUNT_LEN || strspn(json_string_value(v), "0123456789") != VMCONF_ACCOUNT_LEN)
		return schema_fail(c, path, "%s is not a 12-digit account id", q);
	if (strcmp(iam->account_id, json_string_value(v)))
		return schema_fail(c, path, "%s differs from the account %s of instance-profile-arn", q, iam->account_id);
	return 0;
}

static int vc_parse_iam_updated(struct schema_ctx *c, void *target, json_t *v, const char *path)
{
	return vc_parse_time(c, v, path, ((struct vm_iam *)target)->last_updated);
}

static int vc_parse_cred_key_id(struct schema_ctx *c, void *target, json_t *v, const char *path)
{
	return vc_parse_token_string(c, v, path, 16, 128, SCHEMA_ALNUM, "an access key id",
				     &((struct vm_iam *)target)->access_key_id);
}

static int vc_parse_cred_secret(struct schema_ctx *c, void *target, json_t *v, const char *path)
{
	return vc_parse_token_string(c, v, path, 1, 1024, NULL, "a secret access key",
				     &((struct vm_iam *)target)->secret_access_key);
}

static int vc_parse_cred_token(struct schema_ctx *c, void *target, json_t *v, const char *path)
{
	return vc_parse_token_string(c, v, path, 1, 8192, NULL, "a session token", &((struct vm_iam *)target)->token);
}

static int vc_parse_cred_expiration(struct schema_ctx *c, void *target, json_t *v, const char *path)
{
	return vc_parse_time(c, v, path, ((struct vm_iam *)target)->expiration);
}

static const struct schema_field vc_cred_fields[] = {
	{ "access-key-id", true, vc_parse_cred_key_id },
	{ "secret-access-key", true, vc_parse_cred_secret },
	{ "token", true, vc_parse_cred_token },
	{ "expiration", true, vc_parse_cred_expiration },
};

static int vc_parse_iam_creds(struct schema_ctx *c, void *target, json_t *v, const char *path)
{
	return schema_object(c, target, v, path, vc_cred_fields, sizeof(vc_cred_fields) / sizeof(vc_cred_fields[0]),
			     "field");
}

/* The ARN before account-id, which is checked against it. */
static const struct schema_field vc_iam_fields[] = {
	{ "role", true, vc_parse_iam_role },
	{ "instance-profile-arn", true, vc_parse_iam_arn },
	{ "instance-profile-id", false, vc_parse_iam_profile_id },
	{ "account-id", false, vc_parse_iam_account },
	{ "last-updated", false, vc_parse_iam_updated },
	{ "credentials", true, vc_parse_iam_creds },
};

void vmconf_free_iam(struct vm_iam *iam)
{
	if (!iam)
		return;
	free(iam->role);
	free(iam->profile_arn);
	free(iam->profile_id);
	free(iam->access_key_id);
	free(iam->secret_access_key);
	free(iam->token);
	free(iam);
}

int vmconf_check_iam(struct schema_ctx *c, void *target, json_t *v, const char *path)
{
	const struct vmconf_env *env = c->env;
	struct vm_desc *vm = target;
	char sub[SCHEMA_PATH_MAX];

	/* Both would describe meta-data/iam/. */
	if (vm->meta_data && json_object_get(vm->meta_data, "iam")) {
		snprintf(sub, sizeof(sub), "%s.meta-data.iam", vm->json_path);
		return schema_fail(c, sub, "the IAM role is given here and in %s; keep one", path);
	}
	vm->iam = calloc(1, sizeof(*vm->iam));
	if (!vm->iam)
		return -ENOMEM;
	memcpy(vm->iam->last_updated, env->now, sizeof(env->now));
	return schema_object(c, vm->iam, v, path, vc_iam_fields, sizeof(vc_iam_fields) / sizeof(vc_iam_fields[0]),
			     "field");
}

/* ec2_iam.c: the VM's "iam" section as EC2's iam/ category (info,
 * security-credentials/<role>, security-credentials-extended/<role>) and
 * its "tags" as tags/instance/ when the VM enables instance-metadata-tags.
 * JSON in EC2's layout (awsjson.h); schema: docs/vm-schema.md. */
#include "compile/ec2_iam.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <openssl/evp.h>

#include "lib/awsjson.h"

#define EI_DIR EC2_META "iam/"

/* "AIPA" and 17 characters of [A-Z2-7] from SHA-256 of the ARN: the shape
 * of EC2's instance profile ids, stable across loads. */
static void ei_profile_id(const char *arn, char out[22])
{
	static const char b32[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;

	if (!EVP_Digest(arn, strlen(arn), md, &mdlen, EVP_sha256(), NULL))
		memset(md, 0, sizeof(md));
	memcpy(out, "AIPA", 4);
	for (int i = 0; i < 17; i++)
		out[4 + i] = b32[md[i] & 31];
	out[21] = '\0';
}

/* Renders `doc` and adds it at `path`; takes the reference to `doc`. */
static int ei_add_json(struct ec2_ctx *c, const char *path, json_t *doc)
{
	struct outbuf out = { 0 };
	int rc = doc ? awsjson_render(doc, &out) : -ENOMEM;

	if (!rc)
		rc = tree_add_leaf(c->b, path, out.data, out.len, CT_TEXT);
	outbuf_free(&out);
	json_decref(doc);
	return rc;
}

/* Go's IAMInfo requires Code "Success" and an RFC 3339 LastUpdated. */
static json_t *ei_info(const struct vm_iam *iam)
{
	char id[22];

	if (!iam->profile_id)
		ei_profile_id(iam->profile_arn, id);
	return json_pack("{s:s, s:s, s:s, s:s}", "Code", "Success", "LastUpdated", iam->last_updated,
			 "InstanceProfileArn", iam->profile_arn, "InstanceProfileId",
			 iam->profile_id ? iam->profile_id : id);
}

/* Key order of EC2's credentials document (D-iam, capture C9); the
 * extended form adds AccountId last. */
static json_t *ei_credentials(const struct vm_iam *iam, bool extended)
{
	json_t *doc = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s}", "Code", "Success", "LastUpdated",
				iam->last_updated, "Type", "AWS-HMAC", "AccessKeyId", iam->access_key_id,
				"SecretAccessKey", iam->secret_access_key, "Token", iam->token, "Expiration",
				iam->expiration);

	if (doc && extended && json_object_set_new(doc, "AccountId", json_string(iam->account_id))) {
		json_decref(doc);
		return NULL;
	}
	return doc;
}

int ec2_add_iam(struct ec2_ctx *c)
{
	const struct vm_iam *iam = c->vm->iam;
	char path[TREE_PATH_MAX + 1];
	int rc;

	if (!iam)
		return 0; /* no iam/: SDKs read 404 as "no role" */
	rc = ei_add_json(c, EI_DIR "info", ei_info(iam));
	if (!rc) {
		snprintf(path, sizeof(path), EI_DIR "security-credentials/%s", iam->role);
		rc = ei_add_json(c, path, ei_credentials(iam, false));
	}
	if (!rc) {
		snprintf(path, sizeof(path), EI_DIR "security-credentials-extended/%s", iam->role);
		rc = ei_add_json(c, path, ei_credentials(iam, true));
	}
	/* The extended path is served but not listed: cloud-init crawls every
	 * listed entry except "security-credentials" and would otherwise copy
	 * the credentials into its cache. */
	if (!rc)
		rc = tree_set_listing(c->b, EI_DIR, "info\nsecurity-credentials/");
	return rc ? ec2_fail(c, ".iam", rc) : 0;
}

int ec2_add_tags(struct ec2_ctx *c)
{
	const char *key;
	json_t *val;
	int rc;

	if (!c->vm->metadata_tags)
		return 0; /* InstanceMetadataTags disabled: tags/ is 404 */
	rc = tree_add_dir(c->b, EC2_META "tags/instance/");
	if (rc)
		return ec2_fail(c, ".tags", rc);
	json_object_foreach(c->vm->tags, key, val) {
		char path[TREE_PATH_MAX + 1];

		if (!json_is_string(val))
			return ec2_fail_msg(c, ".tags", "tag values must be strings");
		snprintf(path, sizeof(path), EC2_META "tags/instance/%s", key);
		rc = tree_add_leaf(c->b, path, json_string_value(val), json_string_length(val), CT_TEXT);
		if (rc)
			return ec2_fail(c, ".tags", rc);
	}
	return 0;
}

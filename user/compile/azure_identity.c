/* azure_identity.c: the managed identities of an Azure VM (azure_identity.h).
 * The operator gives each identity's ids and, per resource (audience), the
 * access token Microsoft Entra issued with its expiry; a reload replaces
 * them, as IAM credentials.  They compile into look-up keys under
 * "azure-mi/" (lib/flavor_layout.h) so that a token request finds its
 * identity and token with two tree look-ups and parses nothing.
 * Schema: docs/flavors.md. */
#include "compile/azure_identity.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#define AZURE_MI_ID_MAX 512	    /* an Azure resource ID, a resource URI */
#define AZURE_MI_SEGMENT_MAX 900    /* escaped, within TREE_PATH_MAX with its prefix */
#define AZURE_MI_TOKEN_MAX 16384    /* Entra's JWTs are a few KiB */
#define AZURE_MI_SCOPE_SUFFIX "/.default"
#define AZURE_MI_DEFAULT_TENANT "00000000-0000-0000-0000-000000000000"

/* --- checks --- */

/* 8-4-4-4-12 hexadecimal digits: client, object and tenant ids. */
static int azure_check_guid(struct schema_ctx *c, void *target, json_t *v, const char *path)
{
	static const char shape[] = "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx";
	const char *s = json_string_value(v);
	char q[SCHEMA_QUOTE_MAX];
	bool ok;

	(void)target;
	if (!json_is_string(v))
		return schema_expect(c, path, v, "a string");
	ok = json_string_length(v) == sizeof(shape) - 1;
	for (size_t i = 0; ok && i < sizeof(shape) - 1; i++)
		ok = shape[i] == '-' ? s[i] == '-' : (s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f') ||
							  (s[i] >= 'A' && s[i] <= 'F');
	if (ok)
		return 0;
	schema_quote_json(v, q);
	return schema_fail(c, path, "%s is not a GUID (8-4-4-4-12 hexadecimal digits)", q);
}

/* Printable ASCII without spaces, '"' or '\\', short enough to be a key of
 * the tree once escaped (azure_mi_segment). */
static int azure_check_key_text(struct schema_ctx *c, const char *s, size_t len, const char *path)
{
	char seg[AZURE_MI_SEGMENT_MAX + 1];

	if (len == 0 || len > AZURE_MI_ID_MAX)
		return schema_fail(c, path, "must be 1 to %d bytes long", AZURE_MI_ID_MAX);
	for (size_t i = 0; i < len; i++)
		if (s[i] <= ' ' || s[i] >= 0x7f || s[i] == '"' || s[i] == '\\')
			return schema_fail(c, path, "may only contain printable ASCII other than spaces, '\"' and '\\'");
	if (azure_mi_segment(AZURE_MI_RESOURCE, s, len, seg, sizeof(seg)) < 0)
		return schema_fail(c, path, "is too long: at most %d bytes, each '/' and '%%' counted three times",
				   AZURE_MI_SEGMENT_MAX);
	return 0;
}

/* An Azure resource ID, "/subscriptions/.../userAssignedIdentities/name"
 * (the msi_res_id a client sends). */
static int azure_check_resource_id(struct schema_ctx *c, void *target, json_t *v, const char *path)
{
	(void)target;
	if (!json_is_string(v))
		return schema_expect(c, path, v, "a string");
	if (azure_check_key_text(c, json_string_value(v), json_string_length(v), path))
		return -EINVAL;
	if (json_string_value(v)[0] != '/')
		return schema_fail(c, path, "an Azure resource ID starts with '/' (/subscriptions/...)");
	return 0;
}

static int azure_check_token(struct schema_ctx *c, void *target, json_t *v, const char *path)
{
	(void)target;
	return flavor_check_access_token(c, v, path, AZURE_MI_TOKEN_MAX);
}

static const struct schema_field azure_token_fields[] = {
	{ "access-token", true, azure_check_token },
	{ "expires-on", true, flavor_check_utc_time },
};

/* A resource the way clients name it ("https://management.azure.com/"),
 * not a scope: @azure/identity strips "/.default" before it asks. */
static int azure_check_resource(struct schema_ctx *c, const char *key, const char *path)
{
	size_t len = strlen(key), sfx = sizeof(AZURE_MI_SCOPE_SUFFIX) - 1;

	if (azure_check_key_text(c, key, len, path))
		return -EINVAL;
	if (len > sfx && !strcmp(key + len - sfx, AZURE_MI_SCOPE_SUFFIX))
		return schema_fail(c, path, "a resource, not a scope: give it without \"%s\"", AZURE_MI_SCOPE_SUFFIX);
	return 0;
}

/* Two resources that differ only by a trailing '/' are one resource. */
static bool azure_same_resource(const char *a, const char *b)
{
	char sa[AZURE_MI_SEGMENT_MAX + 1], sb[AZURE_MI_SEGMENT_MAX + 1];

	return azure_mi_segment(AZURE_MI_RESOURCE, a, strlen(a), sa, sizeof(sa)) >= 0 &&
	       azure_mi_segment(AZURE_MI_RESOURCE, b, strlen(b), sb, sizeof(sb)) >= 0 && !strcmp(sa, sb);
}

/* {"<resource>": {"access-token": ..., "expires-on": ...}, ...} */
static int azure_check_tokens(struct schema_ctx *c, void *target, json_t *v, const char *path)
{
	char sub[SCHEMA_PATH_MAX];
	const char *key, *other;
	json_t *val, *oval;

	if (!json_is_object(v))
		return schema_expect(c, path, v, "an object of resources");
	json_object_foreach(v, key, val) {
		schema_key_path(sub, sizeof(sub), path, key);
		if (azure_check_resource(c, key, sub) ||
		    schema_object(c, target, val, sub, azure_token_fields,
				  sizeof(azure_token_fields) / sizeof(azure_token_fields[0]), "field"))
			return -EINVAL;
		json_object_foreach(v, other, oval) {
			if (other == key)
				break;
			if (azure_same_resource(key, other))
				return schema_fail(c, sub, "the same resource as \"%s\"", other);
		}
	}
	return 0;
}

static const struct schema_field azure_system_fields[] = {
	{ "client-id", true, azure_check_guid },
	{ "object-id", true, azure_check_guid },
	{ "resource-id", false, azure_check_resource_id },
	{ "tokens", false, azure_check_tokens },
};

static const struct schema_field azure_user_fields[] = {
	{ "client-id", true, azure_check_guid },
	{ "object-id", true, azure_check_guid },
	{ "resource-id", true, azure_check_resource_id },
	{ "tokens", false, azure_check_tokens },
};

static int azure_check_system(struct schema_ctx *c, void *target, json_t *v, const char *path)
{
	return schema_object(c, target, v, path, azure_system_fields,
			     sizeof(azure_system_fields) / sizeof(azure_system_fields[0]), "field");
}

static int azure_check_users(struct schema_ctx *c, void *target, json_t *v, const char *path)
{
	char sub[SCHEMA_PATH_MAX];
	json_t *el;
	size_t i;

	if (!json_is_array(v))
		return schema_expect(c, path, v, "an array of identities");
	json_array_foreach(v, i, el) {
		schema_index_path(sub, sizeof(sub), path, i);
		if (schema_object(c, target, el, sub, azure_user_fields,
				  sizeof(azure_user_fields) / sizeof(azure_user_fields[0]), "field"))
			return -EINVAL;
	}
	return 0;
}

static const struct schema_field azure_mi_fields[] = {
	{ "tenant-id", false, azure_check_guid },
	{ "system-assigned", false, azure_check_system },
	{ "user-assigned", false, azure_check_users },
};

/* The identity `i` of the section: 0 is the system-assigned one (NULL
 * when there is none), 1.. the user-assigned ones; its path in `path`. */
static const json_t *azure_mi_identity(const json_t *mi, size_t i, const char *base, char *path, size_t cap)
{
	if (i == 0) {
		snprintf(path, cap, "%s.system-assigned", base);
		return json_object_get(mi, "system-assigned");
	}
	snprintf(path, cap, "%s.user-assigned[%zu]", base, i - 1);
	return json_array_get(json_object_get(mi, "user-assigned"), i - 1);
}

/* Each client id, object id and resource id names one identity (letter
 * case aside: a request's id finds one identity or none). */
static int azure_check_unique(struct schema_ctx *c, const json_t *mi, const char *path)
{
	static const char *const ids[] = { "client-id", "object-id", "resource-id" };
	size_t n = 1 + json_array_size(json_object_get(mi, "user-assigned"));
	char pa[SCHEMA_PATH_MAX], pb[SCHEMA_PATH_MAX];

	for (size_t a = 1; a < n; a++) {
		const json_t *ia = azure_mi_identity(mi, a, path, pa, sizeof(pa));

		for (size_t b = 0; b < a; b++) {
			const json_t *ib = azure_mi_identity(mi, b, path, pb, sizeof(pb));

			for (size_t k = 0; ib && k < sizeof(ids) / sizeof(ids[0]); k++) {
				const char *va = json_string_value(json_object_get(ia, ids[k]));
				const char *vb = json_string_value(json_object_get(ib, ids[k]));

				if (va && vb && !strcasecmp(va, vb)) {
					snprintf(pa + strlen(pa), sizeof(pa) - strlen(pa), ".%s", ids[k]);
					return schema_fail(c, pa, "duplicates %s.%s", pb, ids[k]);
				}
			}
		}
	}
	return 0;
}

int azure_check_identities(struct schema_ctx *c, void *target, json_t *v, const char *path)
{
	if (schema_object(c, target, v, path, azure_mi_fields, sizeof(azure_mi_fields) / sizeof(azure_mi_fields[0]),
			  "field"))
		return -EINVAL;
	return azure_check_unique(c, v, path);
}

/* --- compiling --- */

static int azure_mi_add(struct tree_builder *b, const char *path, const char *body, size_t len)
{
	return flavor_add(b, AZURE_MI_PREFIX, path, body, len, CT_TEXT);
}

/* "by/<param>/<id>" -> the identity's name, for each id it has. */
static int azure_mi_add_ids(struct tree_builder *b, const json_t *id, const char *name)
{
	static const char *const keys[][2] = {
		{ "client-id", "client_id" }, { "object-id", "object_id" }, { "resource-id", "msi_res_id" }
	};
	char seg[AZURE_MI_SEGMENT_MAX + 1], path[TREE_PATH_MAX + 1];
	int rc = 0;

	for (size_t k = 0; !rc && k < sizeof(keys) / sizeof(keys[0]); k++) {
		const json_t *v = json_object_get(id, keys[k][0]);

		if (!v)
			continue;
		if (azure_mi_segment(AZURE_MI_ID, json_string_value(v), json_string_length(v), seg, sizeof(seg)) < 0)
			return -EINVAL; /* checked */
		snprintf(path, sizeof(path), "by/%s/%s", keys[k][1], seg);
		rc = azure_mi_add(b, path, name, strlen(name));
	}
	return rc;
}

/* "<name>/<resource>" -> "<expires-on> <client-id> <access token>". */
static int azure_mi_add_tokens(struct tree_builder *b, const json_t *id, const char *name)
{
	const char *client = json_string_value(json_object_get(id, "client-id")), *res;
	char seg[AZURE_MI_SEGMENT_MAX + 1], path[TREE_PATH_MAX + 1];
	struct outbuf body = { 0 };
	json_t *tok;
	int rc = 0;

	json_object_foreach(json_object_get(id, "tokens"), res, tok) {
		long long expiry = flavor_utc_seconds(json_object_get(tok, "expires-on"));

		outbuf_reset(&body);
		if (expiry < 0 || azure_mi_segment(AZURE_MI_RESOURCE, res, strlen(res), seg, sizeof(seg)) < 0)
			rc = -EINVAL; /* checked */
		if (!rc)
			rc = outbuf_printf(&body, "%lld %s %s", expiry, client,
					   json_string_value(json_object_get(tok, "access-token")));
		snprintf(path, sizeof(path), "%s/%s", name, seg);
		if (!rc)
			rc = azure_mi_add(b, path, body.data, body.len);
		if (rc)
			break;
	}
	outbuf_free(&body);
	return rc;
}

/* Without an id a request gets the system-assigned identity, else the
 * only user-assigned one; with several and no system-assigned one Azure
 * asks which (the empty name). */
static const char *azure_mi_default(const json_t *mi)
{
	size_t users = json_array_size(json_object_get(mi, "user-assigned"));

	if (json_object_get(mi, "system-assigned"))
		return "system";
	if (users == 1)
		return "user-0";
	return users ? "" : NULL;
}

int azure_compile_identities(struct tree_builder *b, const struct flavor_common *fc, char *err, size_t errlen)
{
	const json_t *mi = flavor_section_get(fc->vm, "azure", "managed-identities");
	const json_t *tenant = mi ? json_object_get(mi, "tenant-id") : NULL;
	const char *dflt = mi ? azure_mi_default(mi) : NULL, *t;
	size_t n = mi ? 1 + json_array_size(json_object_get(mi, "user-assigned")) : 0;
	char name[32], path[SCHEMA_PATH_MAX];
	int rc;

	if (!mi)
		return 0;
	t = tenant ? json_string_value(tenant) : AZURE_MI_DEFAULT_TENANT;
	rc = azure_mi_add(b, "tenant", t, strlen(t));
	if (!rc && dflt)
		rc = azure_mi_add(b, "default", dflt, strlen(dflt));
	for (size_t i = 0; !rc && i < n; i++) {
		const json_t *id = azure_mi_identity(mi, i, "", path, sizeof(path));

		if (!id)
			continue;
		if (i == 0)
			snprintf(name, sizeof(name), "system");
		else
			snprintf(name, sizeof(name), "user-%zu", i - 1);
		rc = azure_mi_add_ids(b, id, name);
		if (!rc)
			rc = azure_mi_add_tokens(b, id, name);
	}
	if (rc && rc != -ENOMEM)
		snprintf(err, errlen, "%s.azure.managed-identities: cannot be compiled into the metadata tree",
			 fc->vm->json_path);
	return rc;
}

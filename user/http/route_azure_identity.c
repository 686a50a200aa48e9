/* route_azure_identity.c: the managed identity token endpoint
 * (route_azure_identity.h).  The identity and its token are two look-ups
 * of keys the compiler wrote (compile/azure_identity.c); the answer is
 * made here because expires_in counts down and resource echoes the
 * request.  Errors are the endpoint's JSON, with the status codes and
 * texts Azure documents.  Rules and sources: docs/flavors.md. */
#include "http/route_azure_identity.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "lib/flavor_layout.h"

/* Longer than any id or resource the schema allows, escaped or not: a
 * longer value cannot match and is not found. */
#define AZURE_MI_VALUE_CAP 1024

void azure_mi_error(struct fr_call *f, int status, const char *error, const char *description)
{
	outbuf_reset(&f->body);
	if (outbuf_printf(&f->body, "{\"error\":\"%s\",\"error_description\":", error) ||
	    fr_json_string(&f->body, description, strlen(description)) || outbuf_puts(&f->body, "}"))
		fr_reply_str(f, status, CT_JSON, "{}");
	else
		fr_reply(f, status, CT_JSON, f->body.data, f->body.len);
}

/* Looks up AZURE_MI_PREFIX + a + b as a leaf.  0 or -ENOENT. */
static int azure_mi_lookup(struct fr_call *f, const char *a, const char *b, struct tree_entry *e)
{
	if (fr_lookup(f, AZURE_MI_PREFIX, a, strlen(a), b, e))
		return -ENOENT;
	return e->kind == TREE_LEAF ? 0 : -ENOENT;
}

/* The name of the identity the request selects ("system", "user-N") in
 * name, or -ENOENT with the 400 set. */
static int azure_mi_select(struct fr_call *f, char *name, size_t cap)
{
	static const char *const params[][2] = {
		{ "client_id", "client_id" },
		{ "object_id", "object_id" },
		{ "msi_res_id", "msi_res_id" },
		{ "mi_res_id", "msi_res_id" }, /* the older name */
	};
	char value[AZURE_MI_VALUE_CAP], seg[AZURE_MI_VALUE_CAP], key[AZURE_MI_VALUE_CAP + 32];
	const char *by = NULL;
	struct tree_entry e;
	size_t given = 0;

	for (size_t i = 0; i < sizeof(params) / sizeof(params[0]); i++) {
		if (!fr_param(f, params[i][0], value, sizeof(value)))
			continue;
		given++;
		by = params[i][1];
		if (azure_mi_segment(AZURE_MI_ID, value, strlen(value), seg, sizeof(seg)) < 0)
			seg[0] = '\0';
	}
	if (given > 1) {
		azure_mi_error(f, 400, "invalid_request", "Only one of client_id, object_id or msi_res_id may be given");
		return -ENOENT;
	}
	if (given ? !seg[0] || snprintf(key, sizeof(key), "by/%s/%s", by, seg) >= (int)sizeof(key) ||
			    azure_mi_lookup(f, key, "", &e)
		  : azure_mi_lookup(f, "default", "", &e)) {
		azure_mi_error(f, 400, "invalid_request", "Identity not found");
		return -ENOENT;
	}
	if (e.body_len == 0 || e.body_len >= cap) {
		azure_mi_error(f, 400, "invalid_request",
			       "Multiple user assigned identities exist, please specify the clientId / resourceId of "
			       "the identity in the token request");
		return -ENOENT;
	}
	memcpy(name, e.body, e.body_len);
	name[e.body_len] = '\0';
	return 0;
}

/* Entra's answer for a resource the identity has no token for (Azure
 * documents it for the token endpoint: 400, invalid_resource). */
static int azure_mi_no_token(struct fr_call *f, const char *resource)
{
	struct outbuf msg = { 0 };
	struct tree_entry t;
	int rc;

	if (azure_mi_lookup(f, "tenant", "", &t))
		t = (struct tree_entry){ .body = "", .body_len = 0 };
	rc = outbuf_printf(&msg,
			   "AADSTS50001: The application named %s was not found in the tenant named %.*s. This can "
			   "happen if the application has not been installed by the administrator of the tenant or "
			   "consented to by any user in the tenant. You might have sent your authentication request "
			   "to the wrong tenant.",
			   resource, (int)t.body_len, t.body);
	if (!rc)
		azure_mi_error(f, 400, "invalid_resource", msg.data);
	outbuf_free(&msg);
	return rc;
}

/* The reply to a token "<expires-on> <client-id> <token>": every value a
 * string, as IMDS sends them; expires_in (and ext_expires_in, the same for
 * a token that is not extended) counts down to expires-on, 0 once past;
 * not_before is when the VM's record (with the token) was loaded. */
static int azure_mi_reply(struct fr_call *f, const struct tree_entry *e, const char *resource)
{
	const char *end = e->body + e->body_len, *client, *token;
	unsigned long long expiry = 0, now = (unsigned long long)f->c->ctx->now, left, since;
	int rc;

	for (client = e->body; client < end && *client != ' '; client++)
		expiry = expiry * 10 + (unsigned long long)(*client - '0');
	token = client < end ? memchr(client + 1, ' ', (size_t)(end - client - 1)) : NULL;
	if (!token)
		return -EINVAL;
	client++;
	left = expiry > now ? expiry - now : 0;
	since = f->c->meta->last_modified < expiry ? f->c->meta->last_modified : expiry;
	rc = outbuf_printf(&f->body,
			   "{\"access_token\":\"%.*s\",\"client_id\":\"%.*s\",\"expires_in\":\"%llu\","
			   "\"expires_on\":\"%llu\",\"ext_expires_in\":\"%llu\",\"not_before\":\"%llu\",\"resource\":",
			   (int)(end - token - 1), token + 1, (int)(token - client), client, left, expiry, left, since);
	if (!rc)
		rc = fr_json_string(&f->body, resource, strlen(resource));
	if (!rc)
		rc = outbuf_puts(&f->body, ",\"token_type\":\"Bearer\"}");
	if (!rc)
		fr_reply_body(f, CT_JSON, false);
	return rc;
}

int azure_mi_route(struct fr_call *f)
{
	char resource[AZURE_MI_VALUE_CAP], seg[AZURE_MI_VALUE_CAP], name[32];
	struct tree_entry e;
	int rc;

	/* A VM not served as Azure has no Azure paths. */
	if (fr_lookup(f, AZURE_PREFIX, "", 0, "", &e)) {
		fr_not_found(f);
		return 0;
	}
	if (!fr_param(f, "resource", resource, sizeof(resource)) || !resource[0]) {
		azure_mi_error(f, 400, "invalid_request", "Required query variable 'resource' is missing");
		return 0;
	}
	if (azure_mi_select(f, name, sizeof(name) - 1))
		return 0;
	strcat(name, "/");
	if (azure_mi_segment(AZURE_MI_RESOURCE, resource, strlen(resource), seg, sizeof(seg)) < 0 ||
	    azure_mi_lookup(f, name, seg, &e))
		return azure_mi_no_token(f, resource) ? -ENOMEM : 0;
	rc = azure_mi_reply(f, &e, resource);
	return rc == -EINVAL ? (azure_mi_no_token(f, resource) ? -ENOMEM : 0) : rc;
}

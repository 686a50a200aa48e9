/* gce.c: the GCE flavor, /computeMetadata/v1/ (instance/ and project/).
 * The VM's data is first assembled as one JSON document with GCE's path
 * names; flavor_emit_tree() maps it onto "gce/" and precompiles each
 * directory's ?recursive=true JSON (camelCase keys, as GCE writes them)
 * and the alt=json form of each leaf that is not a string.
 * Tokens are not data: each account's "token" leaf is empty, and
 * http/route_gce.c computes the token per request, or holds the operator's
 * token for the account ("<expiry unix seconds> <access token>"); neither
 * is part of the recursive documents.
 * Schema: docs/flavors.md. */
#include "compile/flavors.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#define GCE_KEY_CHARS SCHEMA_ALNUM "-_"
#define GCE_ATTR_VALUE_MAX (256 * 1024) /* GCE's limit per metadata value */
#define GCE_DEFAULT_PROJECT "imds"
#define GCE_DEFAULT_ZONE "local"
#define GCE_DEFAULT_SCOPE "https://www.googleapis.com/auth/cloud-platform"
#define GCE_ACCESS_TOKEN_MAX 4096 /* Google's are a few hundred bytes */

/* --- checks --- */

static int gce_check_id(struct schema_ctx *c, void *target, json_t *v, const char *path)
{
	return json_is_integer(v) ? flavor_check_uint(c, target, v, path) : flavor_check_id(c, target, v, path);
}

static int gce_check_attributes(struct schema_ctx *c, void *target, json_t *v, const char *path)
{
	(void)target;
	return flavor_check_string_map(c, v, path, GCE_KEY_CHARS, GCE_ATTR_VALUE_MAX);
}

static int gce_check_email(struct schema_ctx *c, void *target, json_t *v, const char *path)
{
	const char *s, *at;

	if (flavor_check_id(c, target, v, path))
		return -EINVAL;
	s = json_string_value(v);
	at = strchr(s, '@');
	/* local@domain: also keeps the path segment clear of "@json" */
	if (!at || at == s || !at[1])
		return schema_fail(c, path, "\"%s\" is not an e-mail address", s);
	return 0;
}

static int gce_check_access_token(struct schema_ctx *c, void *target, json_t *v, const char *path)
{
	(void)target;
	return flavor_check_access_token(c, v, path, GCE_ACCESS_TOKEN_MAX);
}

static const struct schema_field gce_token_fields[] = {
	{ "access-token", true, gce_check_access_token },
	{ "expires-at", true, flavor_check_utc_time },
};

static int gce_check_token(struct schema_ctx *c, void *target, json_t *v, const char *path)
{
	return schema_object(c, target, v, path, gce_token_fields, sizeof(gce_token_fields) / sizeof(gce_token_fields[0]),
			     "field");
}

static const struct schema_field gce_sa_fields[] = {
	{ "email", true, gce_check_email },
	{ "scopes", false, flavor_check_text_list },
	{ "token", false, gce_check_token },
};

static int gce_check_accounts(struct schema_ctx *c, void *target, json_t *v, const char *path)
{
	char sub[SCHEMA_PATH_MAX];
	json_t *el, *other;
	size_t i, j;

	if (!json_is_array(v))
		return schema_fail(c, path, "expected an array of service accounts");
	json_array_foreach(v, i, el) {
		schema_index_path(sub, sizeof(sub), path, i);
		if (schema_object(c, target, el, sub, gce_sa_fields, sizeof(gce_sa_fields) / sizeof(gce_sa_fields[0]),
				  "field"))
			return -EINVAL;
		for (j = 0; j < i; j++) {
			other = json_array_get(v, j);
			if (json_equal(json_object_get(el, "email"), json_object_get(other, "email"))) {
				snprintf(sub, sizeof(sub), "%s[%zu].email", path, i);
				return schema_fail(c, sub, "duplicates %s[%zu].email", path, j);
			}
		}
	}
	return 0;
}

static const struct schema_field gce_fields[] = {
	FLAVOR_NO_TOKEN_FIELD,
	{ "id", false, gce_check_id },
	{ "project-id", false, flavor_check_id },
	{ "numeric-project-id", false, flavor_check_uint },
	{ "machine-type", false, flavor_check_id },
	{ "network", false, flavor_check_id },
	{ "attributes", false, gce_check_attributes },
	{ "project-attributes", false, gce_check_attributes },
	{ "service-accounts", false, gce_check_accounts },
};

int gce_check(struct schema_ctx *c, void *target, json_t *section, const char *path)
{
	return schema_object(c, target, section, path, gce_fields, sizeof(gce_fields) / sizeof(gce_fields[0]), "field");
}

/* --- the document --- */

struct gce_ctx {
	const struct flavor_common *fc;
	char *err;
	size_t errlen;
	long long project_number;
	const char *project_id;
};

static const json_t *gce_get(const struct gce_ctx *g, const char *key)
{
	return flavor_section_get(g->fc->vm, "gce", key);
}

static const char *gce_text(const struct gce_ctx *g, const char *key, const char *dflt)
{
	const json_t *v = gce_get(g, key);

	return v && json_is_string(v) ? json_string_value(v) : dflt;
}

static int gce_set(json_t *obj, const char *key, json_t *v)
{
	return json_object_set_new(obj, key, v) ? -ENOMEM : 0;
}

static int gce_conflict(struct gce_ctx *g, const char *attr, const char *common)
{
	snprintf(g->err, g->errlen, "%s.gce.attributes.%s: %s is also given in %s.%s; keep one", g->fc->vm->json_path,
		 attr, attr, g->fc->vm->json_path, common);
	return -EINVAL;
}

/* Instance attributes: the given ones plus "ssh-keys" ("name:key" lines,
 * as cloud-init and the guest agent read them) and "user-data" from the
 * common fields; user data that is not UTF-8 text goes base64-encoded with
 * "user-data-encoding": "base64", which cloud-init decodes. */
static json_t *gce_attributes(struct gce_ctx *g, int *rc)
{
	const struct vm_desc *vm = g->fc->vm;
	const json_t *given = gce_get(g, "attributes");
	json_t *attrs = given ? json_deep_copy(given) : json_object();
	struct outbuf text = { 0 };

	*rc = attrs ? 0 : -ENOMEM;
	if (!*rc && vm->n_keys && json_object_get(attrs, "ssh-keys"))
		*rc = gce_conflict(g, "ssh-keys", "public-keys");
	if (!*rc && vm->user_data && json_object_get(attrs, "user-data"))
		*rc = gce_conflict(g, "user-data", "user-data");
	if (!*rc && vm->user_data && json_object_get(attrs, "user-data-encoding"))
		*rc = gce_conflict(g, "user-data-encoding", "user-data");
	for (size_t i = 0; !*rc && i < vm->n_keys; i++)
		*rc = outbuf_printf(&text, "%s%s:%s", i ? "\n" : "", vm->keys[i].name, vm->keys[i].openssh_key);
	if (!*rc && vm->n_keys)
		*rc = gce_set(attrs, "ssh-keys", json_stringn(text.data, text.len));
	text.len = 0;
	if (!*rc && vm->user_data && g->fc->user_data_utf8) {
		*rc = gce_set(attrs, "user-data", json_stringn((const char *)vm->user_data, vm->user_data_len));
	} else if (!*rc && vm->user_data) {
		*rc = flavor_base64(vm->user_data, vm->user_data_len, &text);
		if (!*rc)
			*rc = gce_set(attrs, "user-data", json_stringn(text.data ? text.data : "", text.len));
		if (!*rc)
			*rc = gce_set(attrs, "user-data-encoding", json_string("base64"));
	}
	outbuf_free(&text);
	if (*rc) {
		json_decref(attrs);
		return NULL;
	}
	return attrs;
}

static json_t *gce_account(const json_t *sa, bool is_default)
{
	const json_t *scopes = sa ? json_object_get(sa, "scopes") : NULL;
	json_t *out = json_object();

	if (!out)
		return NULL;
	if (gce_set(out, "aliases", is_default ? json_pack("[s]", "default") : json_array()) ||
	    gce_set(out, "email", json_copy(json_object_get(sa, "email"))) ||
	    gce_set(out, "scopes", scopes ? json_deep_copy(scopes) : json_pack("[s]", GCE_DEFAULT_SCOPE))) {
		json_decref(out);
		return NULL;
	}
	return out;
}

/* service-accounts/: the first account also answers as "default/".
 * Without "service-accounts" the VM gets GCE's default compute account
 * ("<project-number>-compute@developer.gserviceaccount.com"). */
static json_t *gce_accounts(struct gce_ctx *g)
{
	const json_t *given = gce_get(g, "service-accounts");
	json_t *out = json_object(), *dflt = NULL, *el;
	char email[128];
	size_t i;

	if (!out)
		return NULL;
	if (!given) {
		snprintf(email, sizeof(email), "%lld-compute@developer.gserviceaccount.com", g->project_number);
		dflt = json_pack("[{s:s}]", "email", email);
		given = dflt;
	}
	json_array_foreach(given, i, el) {
		const char *addr = json_string_value(json_object_get(el, "email"));

		if ((i == 0 && gce_set(out, "default", gce_account(el, true))) ||
		    gce_set(out, addr, gce_account(el, i == 0))) {
			json_decref(out);
			out = NULL;
			break;
		}
	}
	json_decref(dflt);
	return out;
}

static json_t *gce_id(struct gce_ctx *g)
{
	const json_t *id = gce_get(g, "id");

	return id ? json_copy((json_t *)id) : json_string(g->fc->vm->instance_id);
}

static json_t *gce_instance(struct gce_ctx *g, int *rc)
{
	const struct flavor_common *fc = g->fc;
	char zone[384], mtype[384], net[384];
	json_t *inst;

	snprintf(zone, sizeof(zone), "projects/%lld/zones/%s", g->project_number,
		 fc->zone ? fc->zone : GCE_DEFAULT_ZONE);
	snprintf(mtype, sizeof(mtype), "projects/%lld/machineTypes/%s", g->project_number,
		 gce_text(g, "machine-type", fc->instance_type ? fc->instance_type : "custom"));
	snprintf(net, sizeof(net), "projects/%lld/networks/%s", g->project_number, gce_text(g, "network", "default"));
	inst = json_pack("{s:o?, s:s, s:o, s:s, s:s, s:[{s:s, s:s, s:s}], s:o, s:s}", "attributes",
			 gce_attributes(g, rc), "hostname", fc->hostname, "id", gce_id(g), "machine-type", mtype,
			 "name", fc->name, "network-interfaces", "ip", fc->ipv4, "mac", fc->mac, "network", net,
			 "service-accounts", gce_accounts(g), "zone", zone);
	if (!*rc && (!inst || !json_object_get(inst, "attributes")))
		*rc = -ENOMEM;
	if (*rc) {
		json_decref(inst);
		return NULL;
	}
	return inst;
}

static json_t *gce_project(struct gce_ctx *g)
{
	const json_t *attrs = gce_get(g, "project-attributes");

	return json_pack("{s:o, s:I, s:s}", "attributes", attrs ? json_deep_copy(attrs) : json_object(),
			 "numeric-project-id", (json_int_t)g->project_number, "project-id", g->project_id);
}

/* The operator's token of the account with `email` ("<expiry> <token>"),
 * or "" for the synthesized one. */
static int gce_token_body(const json_t *given, const char *email, struct outbuf *out)
{
	const json_t *el, *tok = NULL;
	long long expiry;
	size_t i;

	json_array_foreach(given, i, el)
		if (!strcmp(json_string_value(json_object_get(el, "email")), email))
			tok = json_object_get(el, "token");
	if (!tok)
		return 0;
	expiry = flavor_utc_seconds(json_object_get(tok, "expires-at"));
	if (expiry < 0)
		return -EINVAL;
	return outbuf_printf(out, "%lld %s", expiry, json_string_value(json_object_get(tok, "access-token")));
}

/* A "token" leaf per account ("default" too), for the listings and the
 * operator's tokens. */
static int gce_add_tokens(struct gce_ctx *g, struct tree_builder *b, const json_t *accounts)
{
	const json_t *given = gce_get(g, "service-accounts");
	char path[TREE_PATH_MAX + 1];
	struct outbuf body = { 0 };
	const char *name;
	json_t *v;
	int rc = 0;

	json_object_foreach((json_t *)accounts, name, v) {
		outbuf_reset(&body);
		snprintf(path, sizeof(path), "instance/service-accounts/%s/token", name);
		if (given)
			rc = gce_token_body(given, json_string_value(json_object_get(v, "email")), &body);
		if (!rc)
			rc = flavor_add(b, GCE_PREFIX, path, body.data, body.len, CT_JSON);
		if (rc)
			break;
	}
	outbuf_free(&body);
	return rc;
}

int gce_compile(struct tree_builder *b, const struct flavor_common *fc, char *err, size_t errlen)
{
	const struct flavor_emit e = {
		.b = b,
		.prefix = GCE_PREFIX,
		.json_prefix = GCE_JSON_PREFIX,
		.json_flags = JSON_COMPACT | JSON_SORT_KEYS,
		.json_key = gce_json_key,
		.leaf_json = true,
	};
	struct gce_ctx g = { fc, err, errlen, 0, NULL };
	const json_t *num = NULL;
	json_t *root = NULL, *inst;
	int rc = 0;

	g.project_id = gce_text(&g, "project-id", GCE_DEFAULT_PROJECT);
	num = gce_get(&g, "numeric-project-id");
	g.project_number = num ? json_integer_value(num) : 0;
	root = json_object();
	if (!root)
		return -ENOMEM;
	inst = gce_instance(&g, &rc);
	if (!rc)
		rc = gce_set(root, "instance", inst);
	if (!rc)
		rc = gce_set(root, "project", gce_project(&g));
	if (!rc)
		rc = flavor_emit_tree(&e, root);
	if (!rc)
		rc = gce_add_tokens(&g, b, json_object_get(json_object_get(root, "instance"), "service-accounts"));
	json_decref(root);
	if (rc && rc != -ENOMEM && !err[0])
		snprintf(err, errlen, "%s.gce: cannot be compiled into the metadata tree", fc->vm->json_path);
	return rc;
}

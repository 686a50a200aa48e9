/* openstack.c: the OpenStack flavor, Nova's metadata API layout
 * (/openstack/<version>/...).  One copy of each document lives under
 * "openstack/"; http/route_openstack.c serves it for every version and hides the
 * documents a version predates.  Schema: docs/flavors.md. */
#include "compile/flavors.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#define OS_DEFAULT_ZONE "nova" /* Nova's default availability zone */
#define OS_DEFAULT_PROJECT "00000000000000000000000000000000"

/* --- checks --- */

static int os_check_meta(struct schema_ctx *c, void *target, json_t *v, const char *path)
{
	(void)target;
	/* Nova limits metadata keys and values to 255 characters. */
	return flavor_check_string_map(c, v, path, NULL, 255);
}

/* cloud-init loads vendor data as an object, an array or a string. */
static int os_check_vendor(struct schema_ctx *c, void *target, json_t *v, const char *path)
{
	(void)target;
	if (json_is_object(v) || json_is_array(v) || json_is_string(v))
		return 0;
	return schema_fail(c, path, "expected an object, an array or a string");
}

static int os_check_objects(struct schema_ctx *c, json_t *v, const char *path)
{
	char sub[SCHEMA_PATH_MAX];
	json_t *el;
	size_t i;

	if (!json_is_array(v))
		return schema_fail(c, path, "expected an array of objects");
	json_array_foreach(v, i, el) {
		schema_index_path(sub, sizeof(sub), path, i);
		if (flavor_check_object(c, NULL, el, sub))
			return -EINVAL;
	}
	return 0;
}

/* network_data.json: cloud-init walks "links", "networks" and "services"
 * as arrays of objects; anything else inside is passed through. */
static int os_check_network(struct schema_ctx *c, void *target, json_t *v, const char *path)
{
	static const char *const lists[] = { "links", "networks", "services" };
	char sub[SCHEMA_PATH_MAX];

	if (flavor_check_object(c, target, v, path))
		return -EINVAL;
	for (size_t i = 0; i < sizeof(lists) / sizeof(lists[0]); i++) {
		json_t *l = json_object_get(v, lists[i]);

		schema_key_path(sub, sizeof(sub), path, lists[i]);
		if (l && os_check_objects(c, l, sub))
			return -EINVAL;
	}
	return 0;
}

static const struct schema_field os_fields[] = {
	FLAVOR_NO_TOKEN_FIELD,
	{ "uuid", false, flavor_check_id },
	{ "project-id", false, flavor_check_id },
	{ "meta", false, os_check_meta },
	{ "vendor-data", false, os_check_vendor },
	{ "vendor-data2", false, os_check_vendor },
	{ "network-data", false, os_check_network },
};

int openstack_check(struct schema_ctx *c, void *target, json_t *section, const char *path)
{
	return schema_object(c, target, section, path, os_fields, sizeof(os_fields) / sizeof(os_fields[0]), "field");
}

/* --- documents --- */

static const char *os_text(const struct flavor_common *fc, const char *key, const char *dflt)
{
	const json_t *v = flavor_section_get(fc->vm, "openstack", key);

	return v && json_is_string(v) ? json_string_value(v) : dflt;
}

static int os_set(json_t *obj, const char *key, json_t *v)
{
	return json_object_set_new(obj, key, v) ? -ENOMEM : 0;
}

static json_t *os_copy_or(const struct flavor_common *fc, const char *key, json_t *dflt)
{
	const json_t *v = flavor_section_get(fc->vm, "openstack", key);

	if (!v)
		return dflt;
	json_decref(dflt);
	return json_deep_copy(v);
}

static int os_add_keys(json_t *md, const struct flavor_common *fc)
{
	json_t *keys = json_array(), *pub = json_object();
	int rc = keys && pub ? 0 : -ENOMEM;

	for (size_t i = 0; !rc && i < fc->vm->n_keys; i++) {
		const struct vm_key *k = &fc->vm->keys[i];

		rc = json_object_set_new(pub, k->name, json_string(k->openssh_key)) ||
		     json_array_append_new(keys, json_pack("{s:s, s:s, s:s}", "name", k->name, "type", "ssh", "data",
							   k->openssh_key))
			     ? -ENOMEM
			     : 0;
	}
	if (!rc)
		rc = os_set(md, "keys", keys);
	else
		json_decref(keys);
	if (!rc)
		rc = os_set(md, "public_keys", pub);
	else
		json_decref(pub);
	return rc;
}

/* "meta" is Nova's server metadata (`nova boot --meta`), the user's
 * key/value pairs: the VM's top-level tags, as Nova always shows them,
 * plus "openstack.meta" for keys only OpenStack guests read (dsmode).  A
 * key in both is refused rather than one silently winning.  NULL with
 * *rc set: -ENOMEM, or -EINVAL with err. */
static json_t *os_meta(const struct flavor_common *fc, char *err, size_t errlen, int *rc)
{
	const json_t *given = flavor_section_get(fc->vm, "openstack", "meta");
	json_t *meta = fc->vm->tags ? json_copy(fc->vm->tags) : json_object();
	const char *key;
	json_t *val;

	*rc = meta ? 0 : -ENOMEM;
	if (!meta || !given)
		return meta;
	json_object_foreach((json_t *)given, key, val) {
		if (json_object_get(meta, key)) {
			snprintf(err, errlen, "%s.openstack.meta.%s: %s is also given in %s.tags; keep one",
				 fc->vm->json_path, key, key, fc->vm->json_path);
			*rc = -EINVAL;
		} else if (json_object_set(meta, key, val)) {
			*rc = -ENOMEM;
		}
		if (*rc) {
			json_decref(meta);
			return NULL;
		}
	}
	return meta;
}

/* Nova's key order (uuid first, devices last). */
static json_t *os_meta_data(const struct flavor_common *fc, char *err, size_t errlen, int *rc_out)
{
	json_t *md = json_object(), *meta;
	int rc = md ? 0 : -ENOMEM;

	if (!rc)
		rc = os_set(md, "uuid", json_string(os_text(fc, "uuid", fc->vm->instance_id)));
	if (!rc) {
		meta = os_meta(fc, err, errlen, &rc);
		if (meta)
			rc = os_set(md, "meta", meta);
	}
	if (!rc)
		rc = os_add_keys(md, fc);
	if (!rc)
		rc = os_set(md, "hostname", json_string(fc->hostname));
	if (!rc)
		rc = os_set(md, "name", json_string(fc->name));
	if (!rc)
		rc = os_set(md, "launch_index", json_integer(fc->launch_index));
	if (!rc)
		rc = os_set(md, "availability_zone", json_string(fc->zone ? fc->zone : OS_DEFAULT_ZONE));
	if (!rc)
		rc = os_set(md, "project_id", json_string(os_text(fc, "project-id", OS_DEFAULT_PROJECT)));
	if (!rc)
		rc = os_set(md, "devices", json_array());
	*rc_out = rc;
	if (rc) {
		json_decref(md);
		return NULL;
	}
	return md;
}

/* Without "network-data": one physical link with the VM's MAC and one
 * static IPv4 network with its address on the /24 the flavors assume. */
static json_t *os_network_data(const struct flavor_common *fc)
{
	json_t *given = (json_t *)flavor_section_get(fc->vm, "openstack", "network-data");

	if (given)
		return json_deep_copy(given);
	return json_pack("{s:[{s:s, s:s, s:s}], s:[{s:s, s:s, s:s, s:s, s:s, s:[]}], s:[]}", "links", "id",
			 "interface0", "type", "phy", "ethernet_mac_address", fc->mac, "networks", "id", "network0",
			 "link", "interface0", "type", "ipv4", "ip_address", fc->ipv4, "netmask", fc->netmask,
			 "routes", "services");
}

static int os_add_doc(struct tree_builder *b, const char *name, json_t *doc)
{
	int rc;

	if (!doc)
		return -ENOMEM;
	/* Nova writes json.dumps() output: ", " and ": ", one line. */
	rc = flavor_add_json(b, OPENSTACK_PREFIX, name, doc, JSON_PRESERVE_ORDER, CT_JSON);
	json_decref(doc);
	return rc;
}

int openstack_compile(struct tree_builder *b, const struct flavor_common *fc, char *err, size_t errlen)
{
	json_t *md;
	int rc;

	md = os_meta_data(fc, err, errlen, &rc);
	if (!rc)
		rc = os_add_doc(b, "meta_data.json", md);
	if (!rc)
		rc = os_add_doc(b, "vendor_data.json", os_copy_or(fc, "vendor-data", json_object()));
	if (!rc)
		rc = os_add_doc(b, "vendor_data2.json", os_copy_or(fc, "vendor-data2", json_object()));
	if (!rc)
		rc = os_add_doc(b, "network_data.json", os_network_data(fc));
	if (!rc && fc->vm->user_data)
		rc = flavor_add(b, OPENSTACK_PREFIX, "user_data", fc->vm->user_data, fc->vm->user_data_len, CT_OCTET);
	if (rc && rc != -ENOMEM && errlen && !err[0])
		snprintf(err, errlen, "%s.openstack: cannot be compiled into the metadata tree", fc->vm->json_path);
	return rc;
}

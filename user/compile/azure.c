/* azure.c: the Azure flavor, /metadata/instance (compute and network).
 * The instance document is assembled with Azure's key names (all values
 * strings, as IMDS sends them) and mapped onto "azure/instance/..." for
 * format=text, and each directory's JSON (the instance document and every
 * part of it a request may ask for) is precompiled under "azure-json/", so
 * http/route_azure.c only looks it up.  The copies are small but for
 * compute/, which repeats the base64 user data.  The managed identities'
 * tokens: azure_identity.c.  Schema: docs/flavors.md. */
#include "compile/flavors.h"
#include "compile/azure_identity.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#define AZURE_DEFAULT_LOCATION "local"
#define AZURE_DEFAULT_GROUP "imds"
#define AZURE_DEFAULT_SUBSCRIPTION "00000000-0000-0000-0000-000000000000"
#define AZURE_DEFAULT_ADMIN "azureuser"

/* --- checks --- */

static int azure_check_os_type(struct schema_ctx *c, void *target, json_t *v, const char *path)
{
	const char *s = json_string_value(v);

	(void)target;
	if (!json_is_string(v))
		return schema_fail(c, path, "expected \"Linux\" or \"Windows\"");
	if (strcmp(s, "Linux") && strcmp(s, "Windows"))
		return schema_fail(c, path, "\"%.64s\" is not \"Linux\" or \"Windows\"", s);
	return 0;
}

/* The tags are the VM's top-level "tags", given once for every flavor;
 * an Azure-only copy would let the flavors disagree. */
static int azure_check_tags(struct schema_ctx *c, void *target, json_t *v, const char *path)
{
	static const char suffix[] = ".azure.tags";
	size_t len = strlen(path), vm = len >= sizeof(suffix) - 1 ? len - (sizeof(suffix) - 1) : len;

	(void)target;
	(void)v;
	return schema_fail(c, path, "give tags in %.*s.tags (Azure's compute.tags and tagsList show them)", (int)vm,
			   path);
}

static const struct schema_field azure_fields[] = {
	FLAVOR_NO_TOKEN_FIELD,
	{ "location", false, flavor_check_id },
	{ "resource-group", false, flavor_check_id },
	{ "subscription-id", false, flavor_check_id },
	{ "vm-id", false, flavor_check_id },
	{ "vm-size", false, flavor_check_id },
	{ "admin-username", false, flavor_check_id },
	{ "os-type", false, azure_check_os_type },
	{ "public-ipv4", false, flavor_check_id },
	{ "tags", false, azure_check_tags },
	{ "managed-identities", false, azure_check_identities },
};

int azure_check(struct schema_ctx *c, void *target, json_t *section, const char *path)
{
	return schema_object(c, target, section, path, azure_fields, sizeof(azure_fields) / sizeof(azure_fields[0]),
			     "field");
}

/* --- the document --- */

static const char *azure_text(const struct flavor_common *fc, const char *key, const char *dflt)
{
	const json_t *v = flavor_section_get(fc->vm, "azure", key);

	return v && json_is_string(v) ? json_string_value(v) : dflt;
}

static json_t *azure_public_keys(const struct flavor_common *fc, const char *admin)
{
	json_t *keys = json_array();
	char path[300];

	snprintf(path, sizeof(path), "/home/%s/.ssh/authorized_keys", admin);
	for (size_t i = 0; keys && i < fc->vm->n_keys; i++) {
		if (json_array_append_new(keys, json_pack("{s:s, s:s}", "keyData", fc->vm->keys[i].openssh_key, "path",
							  path))) {
			json_decref(keys);
			return NULL;
		}
	}
	return keys;
}

/* "tags" is "name:value;name2:value2", "tagsList" the same as objects,
 * from the VM's top-level tags.  Azure shows a VM's tags to the guest
 * always (EC2's instance-metadata-tags option is EC2's), and builds the
 * string without escaping: a ':' in a name or ';' in a value makes it
 * ambiguous there too, tagsList is exact. */
static int azure_tags(const struct flavor_common *fc, json_t **tags, json_t **list)
{
	struct outbuf text = { 0 };
	const char *key;
	json_t *val;
	int rc = 0;

	*list = json_array();
	if (!*list)
		return -ENOMEM;
	if (fc->vm->tags) {
		json_object_foreach(fc->vm->tags, key, val) {
			rc = outbuf_printf(&text, "%s%s:%s", text.len ? ";" : "", key, json_string_value(val));
			if (!rc && json_array_append_new(*list, json_pack("{s:s, s:s}", "name", key, "value",
									   json_string_value(val))))
				rc = -ENOMEM;
			if (rc)
				break;
		}
	}
	*tags = rc ? NULL : json_stringn(text.data ? text.data : "", text.len);
	outbuf_free(&text);
	if (!*tags) {
		json_decref(*list);
		return -ENOMEM;
	}
	return 0;
}

static json_t *azure_compute(const struct flavor_common *fc)
{
	const char *admin = azure_text(fc, "admin-username", AZURE_DEFAULT_ADMIN);
	const char *group = azure_text(fc, "resource-group", AZURE_DEFAULT_GROUP);
	const char *sub = azure_text(fc, "subscription-id", AZURE_DEFAULT_SUBSCRIPTION);
	char resource[1024];
	struct outbuf ud = { 0 };
	json_t *tags, *list, *doc;

	if (azure_tags(fc, &tags, &list))
		return NULL;
	snprintf(resource, sizeof(resource),
		 "/subscriptions/%s/resourceGroups/%s/providers/Microsoft.Compute/virtualMachines/%s", sub, group,
		 fc->name);
	/* compute.userData is the user data base64-encoded (api 2021-01-01). */
	if (fc->vm->user_data && flavor_base64(fc->vm->user_data, fc->vm->user_data_len, &ud)) {
		json_decref(tags);
		json_decref(list);
		return NULL;
	}
	doc = json_pack("{s:s, s:s, s:s, s:{s:s, s:s, s:s}, s:s, s:s, s:o, s:s, s:s, s:s, s:o, s:o, s:s%,"
			" s:s, s:s, s:s}",
			"azEnvironment", "AzurePublicCloud", "location",
			azure_text(fc, "location", AZURE_DEFAULT_LOCATION), "name", fc->name, "osProfile",
			"adminUsername", admin, "computerName", fc->hostname, "disablePasswordAuthentication", "true",
			"osType", azure_text(fc, "os-type", "Linux"), "provider", "Microsoft.Compute", "publicKeys",
			azure_public_keys(fc, admin), "resourceGroupName", group, "resourceId", resource,
			"subscriptionId", sub, "tags", tags, "tagsList", list, "userData", ud.data ? ud.data : "",
			ud.len, "vmId", azure_text(fc, "vm-id", fc->vm->instance_id), "vmSize",
			azure_text(fc, "vm-size", fc->instance_type ? fc->instance_type : ""), "zone",
			fc->zone ? fc->zone : "");
	outbuf_free(&ud);
	return doc;
}

/* One interface with the VM's MAC (Azure writes it as 12 upper-case hex
 * digits) and IPv4 on the /24 the flavors assume. */
static json_t *azure_network(const struct flavor_common *fc)
{
	char mac[13];
	size_t n = 0;

	for (const char *p = fc->mac; *p; p++)
		if (*p != ':')
			mac[n++] = (char)(*p >= 'a' && *p <= 'f' ? *p - 'a' + 'A' : *p);
	mac[n] = '\0';
	return json_pack("{s:[{s:{s:[{s:s, s:s}], s:[{s:s, s:s}]}, s:{s:[]}, s:s}]}", "interface", "ipv4", "ipAddress",
			 "privateIpAddress", fc->ipv4, "publicIpAddress", azure_text(fc, "public-ipv4", ""), "subnet",
			 "address", fc->subnet, "prefix", "24", "ipv6", "ipAddress", "macAddress", mac);
}

int azure_compile(struct tree_builder *b, const struct flavor_common *fc, char *err, size_t errlen)
{
	const struct flavor_emit e = {
		.b = b,
		.prefix = AZURE_PREFIX "instance/",
		.json_prefix = AZURE_JSON_PREFIX "instance/",
		.json_flags = JSON_COMPACT | JSON_PRESERVE_ORDER,
		.arrays_are_dirs = true,
	};
	json_t *root = json_pack("{s:o, s:o}", "compute", azure_compute(fc), "network", azure_network(fc));
	int rc;

	if (!root)
		return -ENOMEM;
	rc = flavor_emit_tree(&e, root);
	json_decref(root);
	if (!rc)
		rc = azure_compile_identities(b, fc, err, errlen);
	if (rc && rc != -ENOMEM && !err[0])
		snprintf(err, errlen, "%s.azure: cannot be compiled into the metadata tree", fc->vm->json_path);
	return rc;
}

/* ec2.c: compiles a VM description into the EC2 part of its tree ("ec2/"):
 * the meta-data given by the operator, public keys in EC2's "N=name" form,
 * user-data and the instance identity document; the steps of ec2_compile
 * also run ec2_iam.c (iam/, tags/) and ec2_derive.c (values derived from
 * the VM's identity where the operator gave none).  Layout: ec2.h. */
#include "compile/ec2.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compile/ec2_ctx.h"
#include "compile/ec2_derive.h"
#include "compile/ec2_iam.h"
#include "lib/awsjson.h"
#include "lib/jsonpos.h"

/* --- the operator's meta-data --- */

static int ec2_map_value(struct ec2_ctx *c, const json_t *v);

static int ec2_map_object(struct ec2_ctx *c, const json_t *obj)
{
	const char *key;
	json_t *val;

	json_object_foreach((json_t *)obj, key, val) {
		size_t klen = strlen(key), ts = c->tlen, js = c->jlen;
		int rc = 0;

		if (ts + klen + 1 >= sizeof(c->tree) || jsonpos_append_key(c->json, sizeof(c->json), js, key) >= sizeof(c->json)) {
			c->json[js] = '\0';
			return ec2_fail(c, c->json, -EINVAL);
		}
		memcpy(c->tree + ts, key, klen + 1);
		c->tlen += klen;
		c->jlen = strlen(c->json);
		rc = ec2_map_value(c, val);
		c->tree[c->tlen = ts] = '\0';
		c->json[c->jlen = js] = '\0';
		if (rc)
			return rc;
	}
	return 0;
}

static int ec2_map_value(struct ec2_ctx *c, const json_t *v)
{
	struct outbuf body = { 0 };
	int rc;

	if (json_is_object(v)) {
		c->tree[c->tlen++] = '/';
		c->tree[c->tlen] = '\0';
		rc = tree_add_dir(c->b, c->tree);
		if (rc)
			return ec2_fail(c, c->json, rc);
		return ec2_map_object(c, v);
	}
	rc = ec2_leaf_body(v, &body);
	if (!rc) {
		rc = tree_add_leaf(c->b, c->tree, body.data ? body.data : "", body.len, CT_TEXT);
		if (rc)
			rc = ec2_fail(c, c->json, rc);
	} else if (rc == -EINVAL) {
		rc = ec2_fail_msg(c, c->json, "must be a string, a number, an object or an array of strings");
	}
	outbuf_free(&body);
	return rc;
}

static int ec2_add_meta_data(struct ec2_ctx *c)
{
	int rc = tree_add_dir(c->b, EC2_META);

	if (rc || !c->vm->meta_data)
		return rc;
	c->tlen = (size_t)snprintf(c->tree, sizeof(c->tree), "%s", EC2_META);
	c->jlen = (size_t)snprintf(c->json, sizeof(c->json), ".meta-data");
	/* The root is already "ec2/meta-data/": walk its members directly. */
	return ec2_map_object(c, c->vm->meta_data);
}

/* --- public keys, user-data, root --- */

static int ec2_add_public_keys(struct ec2_ctx *c)
{
	const struct vm_desc *vm = c->vm;
	struct outbuf listing = { 0 };
	char path[128];
	int rc = 0;

	if (!vm->n_keys)
		return 0;
	if (vmconf_meta_lookup(vm, "public-keys")) {
		snprintf(c->err, c->errlen, "%s.meta-data.public-keys: public keys are also given in %s.public-keys; keep one",
			 vm->json_path, vm->json_path);
		return -EINVAL;
	}
	for (size_t i = 0; !rc && i < vm->n_keys; i++) {
		snprintf(path, sizeof(path), EC2_META "public-keys/%zu/openssh-key", i);
		rc = tree_add_leaf(c->b, path, vm->keys[i].openssh_key, strlen(vm->keys[i].openssh_key), CT_TEXT);
		if (!rc)
			rc = outbuf_printf(&listing, "%s%zu=%s", i ? "\n" : "", i, vm->keys[i].name);
	}
	/* EC2 lists "N=name", not "N/": cloud-init and ec2-metadata parse it. */
	if (!rc)
		rc = tree_set_listing(c->b, EC2_META "public-keys/", listing.data);
	outbuf_free(&listing);
	return rc ? ec2_fail(c, ".public-keys", rc) : 0;
}

static int ec2_add_user_data(struct ec2_ctx *c)
{
	const struct vm_desc *vm = c->vm;
	int rc;

	if (!vm->user_data)
		return 0; /* absent: the server answers 404, which cloud-init reads as "none" */
	rc = tree_add_leaf(c->b, EC2_TREE_PREFIX "user-data", vm->user_data, vm->user_data_len, CT_OCTET);
	return rc ? ec2_fail(c, ".user-data", rc) : 0;
}

/* "dynamic" without a slash, as EC2 lists it under /latest/. */
static int ec2_add_root(struct ec2_ctx *c)
{
	const char *listing = c->vm->user_data ? "dynamic\nmeta-data\nuser-data" : "dynamic\nmeta-data";

	return tree_set_listing(c->b, EC2_TREE_PREFIX, listing);
}

/* --- dynamic/instance-identity/document --- */

/* A meta-data leaf as a document value: strings and numbers as text, null
 * when absent or not a leaf. */
static json_t *ec2_doc_value(const json_t *v)
{
	char num[40];

	if (v && json_is_string(v))
		return json_stringn(json_string_value(v), json_string_length(v));
	if (v && json_is_number(v) && awsjson_number(v, num, sizeof(num)) > 0)
		return json_string(num);
	return json_null();
}

static json_t *ec2_doc_region(const struct vm_desc *vm)
{
	char buf[256];

	return ec2_region(vm, buf, sizeof(buf)) ? json_string(buf) : json_null();
}

static json_t *ec2_doc_account(const struct vm_desc *vm)
{
	const char *account = ec2_account_id(vm);

	return account ? json_string(account) : json_null();
}

int ec2_identity_document(const struct vm_desc *vm, struct outbuf *out)
{
	char ip[INET_ADDRSTRLEN];
	json_t *doc = json_object();
	int rc = doc ? 0 : -ENOMEM;

	inet_ntop(AF_INET, &vm->ipv4, ip, sizeof(ip));
	/* EC2's key order; unknown values stay null, as on EC2. */
	const struct {
		const char *key;
		json_t *value;
	} fields[] = {
		{ "accountId", ec2_doc_account(vm) },
		{ "architecture", json_string("x86_64") },
		{ "availabilityZone", ec2_doc_value(vmconf_meta_lookup(vm, "placement/availability-zone")) },
		{ "billingProducts", json_null() },
		{ "devpayProductCodes", json_null() },
		{ "marketplaceProductCodes", json_null() },
		{ "imageId", ec2_doc_value(vmconf_meta_lookup(vm, "ami-id")) },
		{ "instanceId", json_string(vm->instance_id) },
		{ "instanceType", ec2_doc_value(vmconf_meta_lookup(vm, "instance-type")) },
		{ "kernelId", ec2_doc_value(vmconf_meta_lookup(vm, "kernel-id")) },
		{ "pendingTime", json_null() },
		{ "privateIp", json_string(ip) },
		{ "ramdiskId", ec2_doc_value(vmconf_meta_lookup(vm, "ramdisk-id")) },
		{ "region", ec2_doc_region(vm) },
		{ "version", json_string("2017-09-30") },
	};

	/* json_object_set_new drops the value itself when it fails. */
	for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++)
		if (json_object_set_new(doc, fields[i].key, fields[i].value))
			rc = -ENOMEM;
	if (!rc)
		rc = awsjson_render(doc, out);
	json_decref(doc);
	return rc;
}

static int ec2_add_dynamic(struct ec2_ctx *c)
{
	struct outbuf doc = { 0 };
	int rc = ec2_identity_document(c->vm, &doc);

	if (!rc)
		rc = tree_add_leaf(c->b, EC2_TREE_PREFIX "dynamic/instance-identity/document", doc.data, doc.len,
				   CT_TEXT);
	outbuf_free(&doc);
	return rc;
}

int ec2_compile(struct tree_builder *b, const struct vm_desc *vm, char *err, size_t errlen)
{
	/* Operator's meta-data first, so that it wins over derived values. */
	static int (*const steps[])(struct ec2_ctx *) = {
		ec2_add_meta_data, ec2_add_public_keys, ec2_add_iam, ec2_add_tags,
		ec2_add_derived, ec2_add_user_data, ec2_add_dynamic, ec2_add_root,
	};
	struct ec2_ctx *c = calloc(1, sizeof(*c));
	int rc = 0;

	if (errlen)
		err[0] = '\0';
	if (!c)
		return -ENOMEM;
	c->b = b;
	c->vm = vm;
	c->err = err;
	c->errlen = errlen;
	vmconf_format_mac(vm->mac, c->mac);
	inet_ntop(AF_INET, &vm->ipv4, c->ipv4, sizeof(c->ipv4));
	for (size_t i = 0; !rc && i < sizeof(steps) / sizeof(steps[0]); i++)
		rc = steps[i](c);
	if (rc && rc != -ENOMEM && errlen && !err[0])
		rc = ec2_fail(c, "", rc);
	free(c);
	return rc;
}

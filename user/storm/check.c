/* check.c: the storm's checker.  Every body is compared with the VM's
 * description: the operator's meta-data values, what the compiler derives
 * from the VM's identity (instance-id, addresses, MAC, keys), listings,
 * user-data and the identity document (docs/storm.md, "Checks"). */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "storm/check.h"
#include "storm/stats.h"

void storm_vm_init(struct storm_vm *vm, const struct vm_desc *d, unsigned index)
{
	vm->d = d;
	vm->index = index;
	vm->nsfd = -1;
	inet_ntop(AF_INET, &d->ipv4, vm->ipv4, sizeof(vm->ipv4));
	vmconf_format_mac(d->mac, vm->mac);
}

const char *storm_rel_path(const char *api_version, const char *path)
{
	size_t n = strlen(api_version);

	if (path[0] == '/' && !strncmp(path + 1, api_version, n) && path[n + 1] == '/')
		return path + n + 2;
	return path;
}

int storm_is_listing(const char *rel)
{
	size_t n = strlen(rel);

	return (n && rel[n - 1] == '/') || !strcmp(rel, "dynamic/instance-identity");
}

int storm_check_is_costly(const char *rel)
{
	return !strncmp(rel, "meta-data/", 10) || !strcmp(rel, "dynamic/instance-identity") ||
	       !strcmp(rel, "dynamic/instance-identity/document");
}

int storm_body_is(const struct outbuf *b, const void *want, size_t len)
{
	return b->len == len && (!len || !memcmp(b->data, want, len));
}

/* The body of a leaf given as a JSON value: strings as they are, arrays of
 * strings one per line.  1 = matches, 0 = differs, -1 = not checkable. */
static int storm_leaf_matches(const json_t *v, const struct outbuf *b)
{
	struct outbuf want = { 0 };
	size_t i;
	json_t *el;
	int same;

	if (json_is_string(v))
		return storm_body_is(b, json_string_value(v), json_string_length(v));
	if (!json_is_array(v))
		return -1; /* numbers: JSON's spelling is the compiler's business */
	json_array_foreach(v, i, el) {
		if (!json_is_string(el) || (i && outbuf_append(&want, "\n", 1)) ||
		    outbuf_append(&want, json_string_value(el), json_string_length(el))) {
			outbuf_free(&want);
			return -1;
		}
	}
	same = storm_body_is(b, want.data, want.len);
	outbuf_free(&want);
	return same;
}

/* Values the compiler derives from the VM's identity. */
static const char *storm_derived_leaf(const struct storm_vm *vm, const char *rel, int *wrong_mac)
{
	static const char macs[] = "meta-data/network/interfaces/macs/";
	unsigned long k;
	char *end;

	if (!strcmp(rel, "meta-data/instance-id"))
		return vm->d->instance_id;
	if (!strcmp(rel, "meta-data/local-ipv4"))
		return vm->ipv4;
	if (!strcmp(rel, "meta-data/mac"))
		return vm->mac;
	if (!strncmp(rel, "meta-data/public-keys/", 22)) {
		k = strtoul(rel + 22, &end, 10);
		if (end != rel + 22 && !strcmp(end, "/openssh-key") && k < vm->d->n_keys)
			return vm->d->keys[k].openssh_key;
		return NULL;
	}
	if (strncmp(rel, macs, sizeof(macs) - 1))
		return NULL;
	rel += sizeof(macs) - 1;
	if (strncmp(rel, vm->mac, 17) || rel[17] != '/') {
		*wrong_mac = 1;
		return NULL;
	}
	rel += 18;
	return !strcmp(rel, "mac") ? vm->mac : !strcmp(rel, "local-ipv4s") ? vm->ipv4 : NULL;
}

/* 0 = as loaded (or nothing to compare), 1 = wrong data. */
static int storm_check_leaf(const struct storm_vm *vm, const char *rel, const struct outbuf *b)
{
	const json_t *v = vmconf_meta_lookup(vm->d, rel + strlen("meta-data/"));
	const char *want;
	int wrong_mac = 0;

	if (v && !json_is_object(v))
		return storm_leaf_matches(v, b) == 0;
	want = storm_derived_leaf(vm, rel, &wrong_mac);
	if (wrong_mac)
		return 1;
	return want && !storm_body_is(b, want, strlen(want));
}

/* Whether a listing has a line equal to name (or name + "/"). */
static int storm_listed(const struct outbuf *b, const char *name, int dir)
{
	size_t n = strlen(name), at = 0;

	while (at < b->len) {
		const char *line = b->data + at;
		const char *nl = memchr(line, '\n', b->len - at);
		size_t len = nl ? (size_t)(nl - line) : b->len - at;

		if (len == n + (size_t)dir && !memcmp(line, name, n) && (!dir || line[n] == '/'))
			return 1;
		at += len + 1;
	}
	return 0;
}

static int storm_check_keys(const struct storm_vm *vm, const struct outbuf *b)
{
	char line[512];

	for (size_t i = 0; i < vm->d->n_keys; i++) {
		snprintf(line, sizeof(line), "%zu=%s", i, vm->d->keys[i].name);
		if (!storm_listed(b, line, 0))
			return 1;
	}
	return 0;
}

/* A listing must hold every entry the VM was loaded with. */
static int storm_check_listing(const struct storm_vm *vm, const char *rel, const struct outbuf *b)
{
	static const char *const always[] = { "instance-id", "local-ipv4", "mac" };
	const json_t *obj, *val;
	const char *key;

	if (!strcmp(rel, "meta-data/public-keys/"))
		return storm_check_keys(vm, b);
	if (!strcmp(rel, "meta-data/")) {
		for (unsigned i = 0; i < 3; i++)
			if (!storm_listed(b, always[i], 0))
				return 1;
		if (vm->d->n_keys && !storm_listed(b, "public-keys", 1))
			return 1;
	}
	obj = vmconf_meta_lookup(vm->d, rel + strlen("meta-data/"));
	if (!json_is_object(obj))
		return 0;
	json_object_foreach((json_t *)obj, key, val) {
		if (!storm_listed(b, key, json_is_object(val)))
			return 1;
	}
	return 0;
}

static int storm_check_document(const struct storm_vm *vm, const struct outbuf *b)
{
	json_t *doc = json_loadb(b->data ? b->data : "", b->len, 0, NULL);
	const char *id, *ip;
	int wrong;

	if (!doc)
		return 1;
	id = json_string_value(json_object_get(doc, "instanceId"));
	ip = json_string_value(json_object_get(doc, "privateIp"));
	wrong = !id || strcmp(id, vm->d->instance_id) || (ip && strcmp(ip, vm->ipv4));
	json_decref(doc);
	return wrong;
}

int storm_check_answer(const struct storm_vm *vm, const char *rel, int status, const struct outbuf *body)
{
	const struct vm_desc *d = vm->d;

	if (!strcmp(rel, "user-data")) {
		if (!d->user_data)
			return status == 404 ? 0 : SE_STATUS;
		if (status != 200)
			return SE_STATUS;
		return storm_body_is(body, d->user_data, d->user_data_len) ? 0 : SE_WRONG_DATA;
	}
	if (status != 200)
		return SE_STATUS;
	if (storm_is_listing(rel))
		return !strncmp(rel, "meta-data/", 10) && storm_check_listing(vm, rel, body) ? SE_WRONG_DATA : 0;
	if (!strcmp(rel, "dynamic/instance-identity/document"))
		return storm_check_document(vm, body) ? SE_WRONG_DATA : 0;
	if (!strncmp(rel, "meta-data/", 10))
		return storm_check_leaf(vm, rel, body) ? SE_WRONG_DATA : 0;
	return 0;
}

void storm_check_escape(const struct outbuf *b, char *out, size_t size)
{
	size_t o = 0, i;

	for (i = 0; i < b->len && o + 8 < size && i < 100; i++) {
		unsigned char ch = (unsigned char)b->data[i];

		if (ch == '\n')
			o += (size_t)snprintf(out + o, size - o, "\\n");
		else if (ch < 0x20 || ch >= 0x7f || ch == '"' || ch == '\\')
			o += (size_t)snprintf(out + o, size - o, "\\x%02x", ch);
		else
			out[o++] = (char)ch;
	}
	snprintf(out + o, size - o, "%s", i < b->len ? "..." : "");
}

/* flavors.c: what the OpenStack, GCE and Azure flavors share (flavors.h):
 * the checks their sections reuse, the common fields resolved once from
 * the VM record, and the mapping of a JSON document onto a subtree with
 * its precompiled JSON forms.  Each flavor's own fields live in
 * openstack.c, gce.c and azure.c; the list of flavors in flavor_table.c. */
#include "compile/flavors.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>

#include "lib/awsjson.h"
#include "lib/outbuf.h"

/* --- checks --- */

int flavor_check_object(struct schema_ctx *c, void *target, json_t *v, const char *path)
{
	(void)target;
	return json_is_object(v) ? 0 : schema_expect(c, path, v, "an object");
}

int flavor_check_bool(struct schema_ctx *c, void *target, json_t *v, const char *path)
{
	(void)target;
	return json_is_boolean(v) ? 0 : schema_expect(c, path, v, "true or false");
}

static bool flavor_has_control(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			return true;
	return false;
}

int flavor_check_text(struct schema_ctx *c, void *target, json_t *v, const char *path)
{
	size_t len;

	(void)target;
	if (!json_is_string(v))
		return schema_expect(c, path, v, "a string");
	len = json_string_length(v);
	if (len == 0 || len > 255)
		return schema_fail(c, path, "must be 1 to 255 bytes long");
	if (flavor_has_control(json_string_value(v), len))
		return schema_fail(c, path, "must not contain control characters");
	return 0;
}

int flavor_check_id(struct schema_ctx *c, void *target, json_t *v, const char *path)
{
	const char *s;

	if (flavor_check_text(c, target, v, path))
		return -EINVAL;
	for (s = json_string_value(v); *s; s++)
		if (*s == '/' || *s == ' ')
			return schema_fail(c, path, "must not contain '/' or spaces");
	return 0;
}

int flavor_check_uint(struct schema_ctx *c, void *target, json_t *v, const char *path)
{
	(void)target;
	if (!json_is_integer(v))
		return schema_expect(c, path, v, "an integer");
	if (json_integer_value(v) < 0)
		return schema_fail(c, path, "%lld is negative", (long long)json_integer_value(v));
	return 0;
}

int flavor_check_text_list(struct schema_ctx *c, void *target, json_t *v, const char *path)
{
	char sub[SCHEMA_PATH_MAX];
	json_t *el;
	size_t i;

	if (!json_is_array(v))
		return schema_expect(c, path, v, "an array of strings");
	json_array_foreach(v, i, el) {
		schema_index_path(sub, sizeof(sub), path, i);
		if (flavor_check_text(c, target, el, sub))
			return -EINVAL;
	}
	return 0;
}

int flavor_check_access_token(struct schema_ctx *c, const json_t *v, const char *path, size_t max)
{
	const char *s;
	size_t len;

	if (!json_is_string(v))
		return schema_expect(c, path, v, "a string");
	s = json_string_value(v);
	len = json_string_length(v);
	if (len == 0 || len > max)
		return schema_fail(c, path, "must be 1 to %zu bytes long", max);
	for (size_t i = 0; i < len; i++)
		if (s[i] <= ' ' || s[i] >= 0x7f || s[i] == '"' || s[i] == '\\')
			return schema_fail(c, path, "may only contain printable ASCII other than spaces, '\"' and '\\'");
	return 0;
}

int flavor_check_utc_time(struct schema_ctx *c, void *target, json_t *v, const char *path)
{
	char q[SCHEMA_QUOTE_MAX];

	(void)target;
	if (!json_is_string(v))
		return schema_expect(c, path, v, "a string");
	if (vmconf_check_time(json_string_value(v), json_string_length(v))) {
		schema_quote_json(v, q);
		return schema_fail(c, path, "%s is not a valid UTC time of the form YYYY-MM-DDTHH:MM:SSZ", q);
	}
	return 0;
}

long long flavor_utc_seconds(const json_t *v)
{
	struct tm tm = { 0 };

	if (!json_is_string(v) || !strptime(json_string_value(v), "%Y-%m-%dT%H:%M:%SZ", &tm))
		return -1;
	return (long long)timegm(&tm);
}

int flavor_check_string_map(struct schema_ctx *c, const json_t *v, const char *path, const char *key_chars,
			    size_t max_value)
{
	char sub[SCHEMA_PATH_MAX];
	const char *key;
	json_t *val;

	if (!json_is_object(v))
		return schema_expect(c, path, v, "an object of strings");
	json_object_foreach((json_t *)v, key, val) {
		size_t klen = strlen(key);

		schema_key_path(sub, sizeof(sub), path, key);
		if (klen == 0 || klen > 255)
			return schema_fail(c, sub, "a key must be 1 to 255 bytes long");
		if (key_chars && strspn(key, key_chars) != klen)
			return schema_fail(c, sub, "a key may only contain letters, digits, '-' and '_'");
		if (!key_chars && flavor_has_control(key, klen))
			return schema_fail(c, sub, "a key must not contain control characters");
		if (!json_is_string(val))
			return schema_expect(c, sub, val, "a string");
		if (json_string_length(val) > max_value)
			return schema_fail(c, sub, "the value is %zu bytes, more than the %zu allowed",
					   json_string_length(val), max_value);
	}
	return 0;
}

/* --- common fields --- */

const json_t *flavor_section_get(const struct vm_desc *vm, const char *flavor, const char *key)
{
	const json_t *section = vm->record ? json_object_get(vm->record, flavor) : NULL;

	return section && json_is_object(section) ? json_object_get(section, key) : NULL;
}

int flavor_add_no_token(struct tree_builder *b, const struct vm_desc *vm, const char *flavor)
{
	if (!json_is_true(flavor_section_get(vm, flavor, "serve-without-token")))
		return 0;
	return flavor_add(b, FLAVOR_NO_TOKEN_PREFIX, flavor, "", 0, CT_TEXT);
}

static const char *flavor_meta_text(const struct vm_desc *vm, const char *path)
{
	const json_t *v = vmconf_meta_lookup(vm, path);

	return v && json_is_string(v) && json_string_length(v) ? json_string_value(v) : NULL;
}

static bool flavor_utf8_valid(const uint8_t *s, size_t len)
{
	for (size_t i = 0; i < len;) {
		uint8_t ch = s[i];
		size_t n = ch < 0x80 ? 0 : (ch >> 5) == 6 ? 1 : (ch >> 4) == 14 ? 2 : (ch >> 3) == 30 ? 3 : 9;
		uint32_t cp = n == 0 ? ch : n == 1 ? (ch & 0x1f) : n == 2 ? (ch & 0x0f) : (ch & 0x07);

		if (n == 9 || i + n >= len)
			return false;
		for (size_t k = 1; k <= n; k++) {
			if ((s[i + k] & 0xc0) != 0x80)
				return false;
			cp = (cp << 6) | (s[i + k] & 0x3f);
		}
		/* overlong forms, surrogates, beyond U+10FFFF; NUL is not text */
		if (cp == 0 || (n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) ||
		    (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
			return false;
		i += n + 1;
	}
	return true;
}

void flavor_common_init(struct flavor_common *fc, const struct vm_desc *vm)
{
	const json_t *idx = vmconf_meta_lookup(vm, "ami-launch-index");
	uint32_t mask = htonl(0xffffff00u), net = vm->ipv4 & mask;
	const char *host = flavor_meta_text(vm, "hostname");

	memset(fc, 0, sizeof(*fc));
	fc->vm = vm;
	fc->name = vm->name ? vm->name : vm->instance_id;
	if (!host)
		host = flavor_meta_text(vm, "local-hostname");
	fc->hostname = host ? host : fc->name;
	fc->zone = flavor_meta_text(vm, "placement/availability-zone");
	fc->instance_type = flavor_meta_text(vm, "instance-type");
	if (idx && json_is_integer(idx))
		fc->launch_index = json_integer_value(idx);
	else if (idx && json_is_string(idx))
		fc->launch_index = strtoll(json_string_value(idx), NULL, 10);
	vmconf_format_mac(vm->mac, fc->mac);
	inet_ntop(AF_INET, &vm->ipv4, fc->ipv4, sizeof(fc->ipv4));
	inet_ntop(AF_INET, &mask, fc->netmask, sizeof(fc->netmask));
	inet_ntop(AF_INET, &net, fc->subnet, sizeof(fc->subnet));
	fc->user_data_utf8 = vm->user_data && flavor_utf8_valid(vm->user_data, vm->user_data_len);
}

/* --- compiling --- */

int flavor_base64(const void *data, size_t len, struct outbuf *out)
{
	size_t need = (len + 2) / 3 * 4;
	int rc = outbuf_reserve(out, need + 1);

	if (rc)
		return rc;
	/* EVP_EncodeBlock writes no line breaks and a NUL after the text. */
	out->len += (size_t)EVP_EncodeBlock((unsigned char *)out->data + out->len, data, (int)len);
	return 0;
}

int flavor_add(struct tree_builder *b, const char *prefix, const char *path, const void *body, size_t len,
	       enum tree_ctype ct)
{
	char full[TREE_PATH_MAX + 1];
	int n = snprintf(full, sizeof(full), "%s%s", prefix, path);

	if (n < 0 || (size_t)n >= sizeof(full))
		return -EINVAL;
	return tree_add_leaf(b, full, body ? body : "", len, ct);
}

int flavor_add_json(struct tree_builder *b, const char *prefix, const char *path, const json_t *doc, size_t flags,
		    enum tree_ctype ct)
{
	char *text = json_dumps(doc, flags | JSON_ENCODE_ANY);
	int rc;

	if (!text)
		return -ENOMEM;
	rc = flavor_add(b, prefix, path, text, strlen(text), ct);
	free(text);
	return rc;
}

/* A leaf's text: strings as given, numbers and booleans as JSON writes
 * them, arrays of strings one per line. */
static int flavor_leaf_text(const json_t *v, struct outbuf *out)
{
	char num[40];
	json_t *el;
	size_t i;

	switch (json_typeof(v)) {
	case JSON_STRING:
		return outbuf_append(out, json_string_value(v), json_string_length(v));
	case JSON_INTEGER:
	case JSON_REAL:
		awsjson_number(v, num, sizeof(num));
		return outbuf_puts(out, num);
	case JSON_TRUE:
		return outbuf_puts(out, "true");
	case JSON_FALSE:
		return outbuf_puts(out, "false");
	case JSON_ARRAY:
		json_array_foreach(v, i, el) {
			if ((i && outbuf_append(out, "\n", 1)) || flavor_leaf_text(el, out))
				return -ENOMEM;
		}
		return 0;
	default:
		return 0;
	}
}

static bool flavor_is_dir(const struct flavor_emit *e, const json_t *v)
{
	json_t *el;
	size_t i;

	if (json_is_object(v))
		return true;
	if (!json_is_array(v))
		return false;
	if (e->arrays_are_dirs)
		return true;
	json_array_foreach(v, i, el)
		if (json_is_object(el))
			return true;
	return false;
}

/* The JSON form of `v` (the member `key` of its parent), keys renamed. */
static json_t *flavor_json_form(const struct flavor_emit *e, const char *key, const json_t *v)
{
	char name[256];
	const char *k;
	json_t *out, *el;
	size_t i;

	if (json_is_array(v)) {
		out = json_array();
		json_array_foreach(v, i, el)
			if (out && json_array_append_new(out, flavor_json_form(e, key, el))) {
				json_decref(out);
				return NULL;
			}
		return out;
	}
	if (!json_is_object(v) || !e->json_key)
		return json_deep_copy(v);
	out = json_object();
	json_object_foreach((json_t *)v, k, el) {
		e->json_key(key, k, name, sizeof(name));
		if (out && json_object_set_new(out, name, flavor_json_form(e, k, el))) {
			json_decref(out);
			return NULL;
		}
	}
	return out;
}

/* `path` is a directory's ("a/b/") or a leaf's ("a/b/c"). */
static int flavor_emit_json_form(const struct flavor_emit *e, const char *path, const char *key, const json_t *v)
{
	char name[TREE_PATH_MAX + 1];
	json_t *form = flavor_json_form(e, key, v);
	int rc;

	if (!form)
		return -ENOMEM;
	if ((size_t)snprintf(name, sizeof(name), "%s%s", path, FLAVOR_JSON_LEAF) >= sizeof(name))
		rc = -EINVAL;
	else
		rc = flavor_add_json(e->b, e->json_prefix, name, form, e->json_flags, CT_JSON);
	json_decref(form);
	return rc;
}

/* `dir` is the directory path below the prefix ("" or "a/b/"), `key` the
 * name of `v` in its parent. */
static int flavor_emit_value(const struct flavor_emit *e, const char *dir, const char *key, const json_t *v)
{
	char path[TREE_PATH_MAX + 1], full[TREE_PATH_MAX + 1];
	struct outbuf leaf = { 0 };
	const char *k;
	json_t *el;
	size_t i;
	int rc;

	if (!flavor_is_dir(e, v)) {
		rc = flavor_leaf_text(v, &leaf);
		if (!rc)
			rc = flavor_add(e->b, e->prefix, dir, leaf.data, leaf.len, CT_TEXT);
		if (!rc && e->leaf_json && !json_is_string(v))
			rc = flavor_emit_json_form(e, dir, key, v);
		outbuf_free(&leaf);
		return rc;
	}
	if ((size_t)snprintf(full, sizeof(full), "%s%s", e->prefix, dir) >= sizeof(full))
		return -EINVAL;
	rc = tree_add_dir(e->b, full);
	if (!rc)
		rc = flavor_emit_json_form(e, dir, key, v);
	if (json_is_object(v)) {
		json_object_foreach((json_t *)v, k, el) {
			if (rc)
				break;
			snprintf(path, sizeof(path), "%s%s%s", dir, k, flavor_is_dir(e, el) ? "/" : "");
			rc = flavor_emit_value(e, path, k, el);
		}
		return rc;
	}
	json_array_foreach(v, i, el) {
		if (rc)
			break;
		snprintf(path, sizeof(path), "%s%zu%s", dir, i, flavor_is_dir(e, el) ? "/" : "");
		rc = flavor_emit_value(e, path, key, el);
	}
	return rc;
}

int flavor_emit_tree(const struct flavor_emit *e, const json_t *root)
{
	return flavor_emit_value(e, "", "", root);
}


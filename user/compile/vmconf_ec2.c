/* vmconf_ec2.c: the fields of a VM record that EC2 serves
 * (vmconf_ec2.h): each is checked, with a message naming the offending
 * value, and taken into the struct vm_desc. */
#include "compile/vmconf_ec2.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compile/vmconf_iam.h"
#include "compile/vmconf_options.h"
#include "lib/flavor_layout.h"
#include "lib/jsonpos.h"
#include "lib/tree.h"

/* Tree path of the meta-data root (ec2.h): its length counts against
 * TREE_PATH_MAX for every path below it. */
#define VC_META_PREFIX_LEN (sizeof(EC2_TREE_PREFIX "meta-data/") - 1)

/* --- identity: instance-id, name, mac, ipv4 --- */

/* A string of 1..max bytes, each of which `allowed` accepts; `rule` ends
 * the message for a byte it refuses ("%s must <rule>"). */
static int vc_text(struct schema_ctx *c, json_t *v, const char *path, size_t max, bool (*allowed)(unsigned char),
		   const char *rule)
{
	char q[SCHEMA_QUOTE_MAX];
	const char *s;
	size_t len;

	if (!json_is_string(v))
		return schema_expect(c, path, v, "a string");
	s = json_string_value(v);
	len = json_string_length(v);
	schema_quote(s, len, q);
	if (len == 0 || len > max)
		return schema_fail(c, path, "%s must be 1 to %zu bytes long", q, max);
	for (size_t i = 0; i < len; i++)
		if (!allowed((unsigned char)s[i]))
			return schema_fail(c, path, "%s must %s", q, rule);
	return 0;
}

static bool vc_id_byte(unsigned char ch)
{
	return ch > ' ' && ch <= '~' && ch != '/';
}

static int vc_parse_instance_id(struct schema_ctx *c, void *target, json_t *v, const char *path)
{
	struct vm_desc *vm = target;

	if (vc_text(c, v, path, IMDS_INSTANCE_ID_MAX - 1, vc_id_byte, "be printable ASCII without '/' or spaces"))
		return -EINVAL;
	memcpy(vm->instance_id, json_string_value(v), json_string_length(v) + 1);
	return 0;
}

static bool vc_name_byte(unsigned char ch)
{
	return ch >= ' ' && ch != 0x7f;
}

/* "name": the VM's display name, shared by every flavor (GCE instance/name,
 * OpenStack meta_data.json "name", Azure compute.name). */
static int vc_parse_name(struct schema_ctx *c, void *target, json_t *v, const char *path)
{
	struct vm_desc *vm = target;

	if (vc_text(c, v, path, 255, vc_name_byte, "not contain control characters"))
		return -EINVAL;
	vm->name = strdup(json_string_value(v));
	return vm->name ? 0 : -ENOMEM;
}

/* The kernel's rule for interface names (dev_valid_name): no '/', ':' or
 * white space, and not "." or "..". */
static bool vc_port_byte(unsigned char ch)
{
	return ch > ' ' && ch <= '~' && ch != '/' && ch != ':';
}

static int vc_parse_port(struct schema_ctx *c, void *target, json_t *v, const char *path)
{
	struct vm_desc *vm = target;

	if (vc_text(c, v, path, IMDS_PORT_NAME_MAX - 1, vc_port_byte,
		    "be a network interface name (printable ASCII without '/', ':' or spaces)"))
		return -EINVAL;
	if (!strcmp(json_string_value(v), ".") || !strcmp(json_string_value(v), ".."))
		return schema_fail(c, path, "\"%s\" is not a network interface name", json_string_value(v));
	memcpy(vm->port, json_string_value(v), json_string_length(v) + 1);
	return 0;
}

static int vc_parse_mac(struct schema_ctx *c, void *target, json_t *v, const char *path)
{
	static const uint8_t zero[6];
	struct vm_desc *vm = target;
	char q[SCHEMA_QUOTE_MAX];

	if (!json_is_string(v))
		return schema_expect(c, path, v, "a string");
	schema_quote_json(v, q);
	if (vmconf_parse_mac(json_string_value(v), vm->mac))
		return schema_fail(c, path, "%s is not a MAC address", q);
	/* The I/G bit: a group address is never a VM's own source. */
	if (vm->mac[0] & 1)
		return schema_fail(c, path, "%s is a multicast MAC address", q);
	if (!memcmp(vm->mac, zero, 6))
		return schema_fail(c, path, "%s is the all-zero MAC address", q);
	return 0;
}

static int vc_parse_ipv4(struct schema_ctx *c, void *target, json_t *v, const char *path)
{
	struct vm_desc *vm = target;
	char q[SCHEMA_QUOTE_MAX];
	struct in_addr a;
	uint32_t host;

	if (!json_is_string(v))
		return schema_expect(c, path, v, "a string");
	schema_quote_json(v, q);
	if (inet_pton(AF_INET, json_string_value(v), &a) != 1)
		return schema_fail(c, path, "%s is not an IPv4 address", q);
	host = ntohl(a.s_addr);
	if (host == 0)
		return schema_fail(c, path, "%s is the unspecified address", q);
	if (host == 0xffffffffu)
		return schema_fail(c, path, "%s is the broadcast address", q);
	if ((host >> 28) == 0xe)
		return schema_fail(c, path, "%s is a multicast address", q);
	if (host == IMDS_IPV4_ADDR) /* host order, despite the comment in imds.h */
		return schema_fail(c, path, "%s is the metadata service's own address", q);
	vm->ipv4 = a.s_addr;
	return 0;
}

/* Why `a` cannot be a VM's own IPv6 address, or NULL when it can: global
 * unicast (2000::/3), unique local (fc00::/7) or link-local (fe80::/10),
 * and not the service's own fd00:ec2::254. */
static const char *vc_ipv6_refusal(const struct in6_addr *a)
{
	static const uint8_t service[16] = IMDS_IPV6_ADDR_BYTES;
	const uint8_t *b = a->s6_addr;

	if (IN6_IS_ADDR_UNSPECIFIED(a))
		return "the unspecified address";
	if (IN6_IS_ADDR_LOOPBACK(a))
		return "the loopback address";
	if (IN6_IS_ADDR_MULTICAST(a))
		return "a multicast address";
	if (IN6_IS_ADDR_V4MAPPED(a) || IN6_IS_ADDR_V4COMPAT(a))
		return "an IPv4-mapped address (give it as \"ipv4\")";
	if (!memcmp(b, service, 16))
		return "the metadata service's own address";
	if ((b[0] & 0xe0) == 0x20 || (b[0] & 0xfe) == 0xfc || IN6_IS_ADDR_LINKLOCAL(a))
		return NULL;
	return "not a global, unique local or link-local unicast address";
}

static int vc_parse_ipv6_one(struct schema_ctx *c, struct vm_desc *vm, json_t *v, const char *path)
{
	char q[SCHEMA_QUOTE_MAX];
	struct in6_addr a;
	const char *why;

	if (!json_is_string(v))
		return schema_expect(c, path, v, "a string");
	schema_quote_json(v, q);
	if (inet_pton(AF_INET6, json_string_value(v), &a) != 1)
		return schema_fail(c, path, "%s is not an IPv6 address", q);
	why = vc_ipv6_refusal(&a);
	if (why)
		return schema_fail(c, path, "%s is %s", q, why);
	for (unsigned i = 0; i < vm->n_ipv6; i++)
		if (!memcmp(vm->ipv6[i], a.s6_addr, 16))
			return schema_fail(c, path, "%s duplicates %s.ipv6[%u]", q, vm->json_path, i);
	memcpy(vm->ipv6[vm->n_ipv6++], a.s6_addr, 16);
	return 0;
}

/* "ipv6": the VM's IPv6 addresses (docs/ipv6.md), 1..IMDS_VM_IPV6_MAX. */
static int vc_parse_ipv6(struct schema_ctx *c, void *target, json_t *v, const char *path)
{
	struct vm_desc *vm = target;
	char sub[SCHEMA_PATH_MAX];
	size_t i;
	json_t *a;

	if (!json_is_array(v))
		return schema_expect(c, path, v, "an array of IPv6 addresses");
	if (json_array_size(v) == 0 || json_array_size(v) > IMDS_VM_IPV6_MAX)
		return schema_fail(c, path, "must hold 1 to %d addresses, not %zu", IMDS_VM_IPV6_MAX,
				   json_array_size(v));
	json_array_foreach(v, i, a) {
		snprintf(sub, sizeof(sub), "%s[%zu]", path, i);
		if (vc_parse_ipv6_one(c, vm, a, sub))
			return -EINVAL;
	}
	return 0;
}

/* --- meta-data --- */

struct vc_path {
	char s[SCHEMA_PATH_MAX];
	size_t len;
};

static int vc_check_meta_value(struct schema_ctx *c, json_t *v, struct vc_path *p, size_t tree_len);

static int vc_check_meta_key(struct schema_ctx *c, const char *key, const char *path)
{
	if (!*key)
		return schema_fail(c, path, "empty key");
	if (!strcmp(key, ".") || !strcmp(key, ".."))
		return schema_fail(c, path, "key must not be \".\" or \"..\"");
	/* cloud-init strips each listing line before fetching it. */
	if (key[0] == ' ' || key[strlen(key) - 1] == ' ')
		return schema_fail(c, path, "key must not start or end with a space");
	for (const char *k = key; *k; k++) {
		if (*k == '/')
			return schema_fail(c, path, "key must not contain '/'");
		/* A key is a line of its directory's listing. */
		if ((unsigned char)*k < 0x20 || *k == 0x7f)
			return schema_fail(c, path, "key must not contain control characters");
	}
	return 0;
}

/* `tree_len`: length of the directory's tree path, trailing '/' included. */
static int vc_check_meta_object(struct schema_ctx *c, json_t *obj, struct vc_path *p, size_t tree_len)
{
	const char *key;
	json_t *val;

	json_object_foreach(obj, key, val) {
		size_t klen = strlen(key), saved = p->len;
		size_t node_len = tree_len + klen + (json_is_object(val) ? 1 : 0);
		char q[SCHEMA_QUOTE_MAX];
		int rc;

		if (node_len > TREE_PATH_MAX) {
			schema_quote(key, klen, q);
			return schema_fail(c, p->s, "key %s makes a metadata path longer than %d bytes", q, TREE_PATH_MAX);
		}
		p->len = jsonpos_append_key(p->s, sizeof(p->s), p->len, key);
		if (p->len >= sizeof(p->s)) {
			p->s[p->len = saved] = '\0';
			schema_quote(key, klen, q);
			return schema_fail(c, p->s, "key %s makes the path too long", q);
		}
		rc = vc_check_meta_key(c, key, p->s);
		if (!rc)
			rc = vc_check_meta_value(c, val, p, tree_len + klen + 1);
		p->len = saved;
		p->s[saved] = '\0';
		if (rc)
			return rc;
	}
	return 0;
}

static int vc_check_meta_array(struct schema_ctx *c, json_t *arr, struct vc_path *p)
{
	size_t i, saved = p->len;
	json_t *el;

	json_array_foreach(arr, i, el) {
		if (json_is_string(el))
			continue;
		snprintf(p->s + saved, sizeof(p->s) - saved, "[%zu]", i);
		return schema_fail(c, p->s, "expected a string (arrays are lists of strings), not %s", schema_type_name(el));
	}
	return 0;
}

static int vc_check_meta_value(struct schema_ctx *c, json_t *v, struct vc_path *p, size_t tree_len)
{
	switch (json_typeof(v)) {
	case JSON_OBJECT:
		return vc_check_meta_object(c, v, p, tree_len);
	case JSON_ARRAY:
		return vc_check_meta_array(c, v, p);
	case JSON_STRING:
	case JSON_INTEGER:
	case JSON_REAL:
		return 0;
	default:
		return schema_fail(c, p->s, "%s is not allowed: use a string, a number, an object or an array of strings",
			       schema_type_name(v));
	}
}

/* Interfaces are listed by lower-case MAC (spec §1.6), and imds derives
 * the VM's own interface under its lower-case MAC: an upper-case key would
 * make a second directory for the same interface. */
static int vc_check_mac_keys(struct schema_ctx *c, json_t *md, const char *path)
{
	json_t *macs = json_object_get(json_object_get(json_object_get(md, "network"), "interfaces"), "macs");
	char sub[SCHEMA_PATH_MAX], q[SCHEMA_QUOTE_MAX];
	const char *key;
	uint8_t mac[6];
	json_t *val;

	if (!json_is_object(macs))
		return 0;
	json_object_foreach(macs, key, val) {
		char lower[18];

		if (vmconf_parse_mac(key, mac))
			continue;
		vmconf_format_mac(mac, lower);
		if (!strcmp(key, lower))
			continue;
		jsonpos_append_key(sub, sizeof(sub),
				   (size_t)snprintf(sub, sizeof(sub), "%s.network.interfaces.macs", path), key);
		schema_quote(key, strlen(key), q);
		return schema_fail(c, sub, "MAC %s must be written in lower case, as EC2 lists it (\"%s\")", q, lower);
	}
	return 0;
}

static int vc_parse_meta_data(struct schema_ctx *c, void *target, json_t *v, const char *path)
{
	struct vm_desc *vm = target;
	struct vc_path *p;
	int rc;

	if (!json_is_object(v))
		return schema_expect(c, path, v, "an object");
	/* Tags in meta-data would be served whatever the VM's
	 * instance-metadata-tags option says. */
	if (json_object_get(v, "tags")) {
		char sub[SCHEMA_PATH_MAX];

		snprintf(sub, sizeof(sub), "%s.tags", path);
		return schema_fail(c, sub, "give tags in %s.tags (served when options.instance-metadata-tags is \"enabled\")",
			       vm->json_path);
	}
	p = malloc(sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->len = (size_t)snprintf(p->s, sizeof(p->s), "%s", path);
	rc = vc_check_meta_object(c, v, p, VC_META_PREFIX_LEN);
	free(p);
	if (!rc)
		rc = vc_check_mac_keys(c, v, path);
	if (!rc)
		vm->meta_data = v;
	return rc;
}

/* --- user-data --- */

static int vc_b64_digit(unsigned char ch)
{
	if (ch >= 'A' && ch <= 'Z')
		return ch - 'A';
	if (ch >= 'a' && ch <= 'z')
		return ch - 'a' + 26;
	if (ch >= '0' && ch <= '9')
		return ch - '0' + 52;
	if (ch == '+')
		return 62;
	return ch == '/' ? 63 : -1;
}

/* Standard alphabet with '=' padding (RFC 4648 section 4).  ASCII
 * whitespace is skipped, since `base64` wraps its output at 76 columns.
 * `out` holds at least len / 4 * 3 bytes.  0, or -EINVAL with *bad = offset
 * of the offending character (len when the input stops mid-group). */
static int vc_base64_decode(const char *in, size_t len, uint8_t *out, size_t *out_len, size_t *bad)
{
	size_t n = 0, pad = 0, o = 0;
	uint32_t acc = 0;
	int ended = 0;

	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)in[i];
		int d = vc_b64_digit(ch);

		if (ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r')
			continue;
		*bad = i;
		if (ended || (ch == '=' && n < 2) || (ch != '=' && (pad || d < 0)))
			return -EINVAL;
		if (ch == '=')
			pad++;
		else
			acc = acc << 6 | (uint32_t)d;
		if (++n < 4)
			continue;
		acc <<= 6 * pad;
		for (size_t k = 0; k < 3 - pad; k++)
			out[o++] = (uint8_t)(acc >> (16 - 8 * k));
		ended = pad > 0;
		n = pad = 0;
		acc = 0;
	}
	*bad = len;
	*out_len = o;
	return n ? -EINVAL : 0;
}

static int vc_check_user_data_size(struct schema_ctx *c, const struct vm_desc *vm, const char *path, size_t len)
{
	uint32_t max = vm->user_data_max ? vm->user_data_max : VMCONF_USER_DATA_MAX;

	if (len <= max)
		return 0;
	return schema_fail(c, path, "user data is %zu bytes, more than the %u allowed", len, max);
}

static int vc_parse_user_data(struct schema_ctx *c, void *target, json_t *v, const char *path)
{
	struct vm_desc *vm = target;
	size_t len;

	if (!json_is_string(v))
		return schema_expect(c, path, v, "a string");
	len = json_string_length(v);
	if (vc_check_user_data_size(c, vm, path, len))
		return -EINVAL;
	vm->user_data = malloc(len ? len : 1);
	if (!vm->user_data)
		return -ENOMEM;
	memcpy(vm->user_data, json_string_value(v), len);
	vm->user_data_len = len;
	return 0;
}

static int vc_parse_user_data_b64(struct schema_ctx *c, void *target, json_t *v, const char *path)
{
	struct vm_desc *vm = target;
	size_t len, out_len, bad;
	const char *s;
	uint8_t *buf;

	if (json_object_get(vm->record, "user-data"))
		return schema_fail(c, path, "give \"user-data\" or \"user-data-base64\", not both");
	if (!json_is_string(v))
		return schema_expect(c, path, v, "a string");
	s = json_string_value(v);
	len = json_string_length(v);
	buf = malloc(len / 4 * 3 + 1);
	if (!buf)
		return -ENOMEM;
	if (vc_base64_decode(s, len, buf, &out_len, &bad)) {
		free(buf);
		if (bad == len)
			return schema_fail(c, path, "not valid base64: the input ends inside a 4-character group");
		return schema_fail(c, path, "not valid base64: unexpected '%c' at offset %zu",
			       (unsigned char)s[bad] >= 0x20 && (unsigned char)s[bad] < 0x7f ? s[bad] : '?', bad);
	}
	if (vc_check_user_data_size(c, vm, path, out_len)) {
		free(buf);
		return -EINVAL;
	}
	vm->user_data = buf;
	vm->user_data_len = out_len;
	return 0;
}

/* --- public-keys --- */

static int vc_parse_key_name(struct schema_ctx *c, void *target, json_t *v, const char *path)
{
	struct vm_key *key = target;
	char q[SCHEMA_QUOTE_MAX];
	const char *s;

	if (!json_is_string(v))
		return schema_expect(c, path, v, "a string");
	s = json_string_value(v);
	schema_quote_json(v, q);
	if (!*s)
		return schema_fail(c, path, "a key name must not be empty");
	/* The public-keys/ listing is "N=name" lines. */
	for (; *s; s++)
		if (*s == '=' || (unsigned char)*s < 0x20 || *s == 0x7f)
			return schema_fail(c, path, "%s must not contain '=' or control characters", q);
	key->name = strdup(json_string_value(v));
	return key->name ? 0 : -ENOMEM;
}

static int vc_parse_key_text(struct schema_ctx *c, void *target, json_t *v, const char *path)
{
	struct vm_key *key = target;

	if (!json_is_string(v))
		return schema_expect(c, path, v, "a string");
	if (!json_string_length(v))
		return schema_fail(c, path, "the key must not be empty");
	key->openssh_key = strdup(json_string_value(v));
	return key->openssh_key ? 0 : -ENOMEM;
}

static const struct schema_field vc_key_fields[] = {
	{ "name", true, vc_parse_key_name },
	{ "openssh-key", true, vc_parse_key_text },
};

static int vc_check_key_names(struct schema_ctx *c, const struct vm_desc *vm, const char *path)
{
	char sub[SCHEMA_PATH_MAX], q[SCHEMA_QUOTE_MAX];

	for (size_t i = 1; i < vm->n_keys; i++) {
		for (size_t j = 0; j < i; j++) {
			if (strcmp(vm->keys[i].name, vm->keys[j].name))
				continue;
			snprintf(sub, sizeof(sub), "%s[%zu].name", path, i);
			schema_quote(vm->keys[i].name, strlen(vm->keys[i].name), q);
			return schema_fail(c, sub, "%s duplicates %s[%zu].name", q, path, j);
		}
	}
	return 0;
}

static int vc_parse_public_keys(struct schema_ctx *c, void *target, json_t *v, const char *path)
{
	struct vm_desc *vm = target;
	char sub[SCHEMA_PATH_MAX];
	json_t *el;
	size_t i;

	/* Both would describe meta-data/public-keys/. */
	if (vm->meta_data && json_object_get(vm->meta_data, "public-keys")) {
		snprintf(sub, sizeof(sub), "%s.meta-data.public-keys", vm->json_path);
		return schema_fail(c, sub, "public keys are given here and in %s; keep one", path);
	}
	if (!json_is_array(v))
		return schema_expect(c, path, v, "an array");
	vm->keys = calloc(json_array_size(v) ? json_array_size(v) : 1, sizeof(*vm->keys));
	if (!vm->keys)
		return -ENOMEM;
	json_array_foreach(v, i, el) {
		int rc;

		snprintf(sub, sizeof(sub), "%s[%zu]", path, i);
		vm->n_keys++;
		rc = schema_object(c, &vm->keys[i], el, sub, vc_key_fields,
				   sizeof(vc_key_fields) / sizeof(vc_key_fields[0]), "field");
		if (rc)
			return rc;
	}
	return vc_check_key_names(c, vm, path);
}

/* --- tags --- */

/* EC2's rule for tags that instance metadata shows (D-tag): the key is a
 * path segment, so no '/' and no spaces. */
#define VC_TAG_KEY_CHARS SCHEMA_ALNUM "+-=.,_:@"
#define VC_TAG_KEY_MAX 128
#define VC_TAG_VALUE_MAX 256

static size_t vc_utf8_chars(const char *s, size_t len)
{
	size_t n = 0;

	for (size_t i = 0; i < len; i++)
		n += ((unsigned char)s[i] & 0xc0) != 0x80;
	return n;
}

static int vc_check_tag_key(struct schema_ctx *c, const char *key, const char *path)
{
	size_t len = strlen(key), bad = strspn(key, VC_TAG_KEY_CHARS);
	char q[SCHEMA_QUOTE_MAX];

	schema_quote(key, len, q);
	if (len == 0 || len > VC_TAG_KEY_MAX)
		return schema_fail(c, path, "tag key %s must be 1 to %d characters long", q, VC_TAG_KEY_MAX);
	if (bad < len)
		return schema_fail(c, path, "tag key %s: character %zu is not one of A-Z a-z 0-9 + - = . , _ : @", q, bad + 1);
	if (!strcmp(key, ".") || !strcmp(key, "..") || !strcmp(key, "_index"))
		return schema_fail(c, path, "tag key %s is reserved (\".\", \"..\" and \"_index\" are)", q);
	return 0;
}

static int vc_check_tag_value(struct schema_ctx *c, json_t *v, const char *path)
{
	const char *s;
	size_t len;

	if (!json_is_string(v))
		return schema_expect(c, path, v, "a string");
	s = json_string_value(v);
	len = json_string_length(v);
	if (vc_utf8_chars(s, len) > VC_TAG_VALUE_MAX)
		return schema_fail(c, path, "tag value is %zu characters, more than the %d allowed", vc_utf8_chars(s, len),
			       VC_TAG_VALUE_MAX);
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			return schema_fail(c, path, "tag value must not contain control characters (byte %zu)", i + 1);
	return 0;
}

static int vc_parse_tags(struct schema_ctx *c, void *target, json_t *v, const char *path)
{
	struct vm_desc *vm = target;
	char sub[SCHEMA_PATH_MAX];
	const char *key;
	json_t *val;

	if (!json_is_object(v))
		return schema_expect(c, path, v, "an object");
	json_object_foreach(v, key, val) {
		size_t len = (size_t)snprintf(sub, sizeof(sub), "%s", path);
		int rc;

		jsonpos_append_key(sub, sizeof(sub), len, key);
		rc = vc_check_tag_key(c, key, sub);
		if (!rc)
			rc = vc_check_tag_value(c, val, sub);
		if (rc)
			return rc;
	}
	vm->tags = v;
	return 0;
}

/* --- the table --- */

/* Order matters: user-data before user-data-base64 and meta-data before
 * public-keys and iam (each of the latter checks the former). */
const struct schema_field vmconf_ec2_fields[] = {
	{ "instance-id", true, vc_parse_instance_id },
	{ "name", false, vc_parse_name },
	{ "mac", true, vc_parse_mac },
	{ "ipv4", true, vc_parse_ipv4 },
	{ "ipv6", false, vc_parse_ipv6 },
	{ "port", false, vc_parse_port },
	{ "options", false, vmconf_check_options },
	{ "meta-data", false, vc_parse_meta_data },
	{ "user-data", false, vc_parse_user_data },
	{ "user-data-base64", false, vc_parse_user_data_b64 },
	{ "public-keys", false, vc_parse_public_keys },
	{ "iam", false, vmconf_check_iam },
	{ "tags", false, vc_parse_tags },
};

const size_t vmconf_ec2_nfields = sizeof(vmconf_ec2_fields) / sizeof(vmconf_ec2_fields[0]);

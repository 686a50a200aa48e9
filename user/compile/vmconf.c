/* vmconf.c: reads VM descriptions from JSON (schema: docs/vm-schema.md),
 * validates every field and the file as a whole (no two VMs share an
 * instance-id, MAC or IPv4), and reports the first error as
 *   SOURCE:LINE:COL: JSON_PATH: message
 * with LINE:COL of the offending value, found by rescanning the text
 * (jsonpos.c), because jansson keeps no positions of values. */
#include "compile/vmconf.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "compile/flavors.h"
#include "lib/jsonpos.h"
#include "lib/tree.h"

#define VC_PATH_MAX 2048		 /* JSON paths; tree paths are shorter (TREE_PATH_MAX) */
#define VC_FILE_MAX (256u << 20) /* a whole host's VMs with maximal user-data fit easily */
#define VC_QUOTE_MAX 80
/* Tree path of the meta-data root, "ec2/meta-data/" (see ec2.c): its length
 * counts against TREE_PATH_MAX for every path below it. */
#define VC_META_PREFIX_LEN 14

struct vc {
	struct vm_set *set;
	struct conf_error *err;
	char now[VMCONF_TIME_LEN + 1]; /* load time, the default "last-updated" */
};

/* One field of an object: its parser gets the field's value and path.
 * `target` is what the object describes (a vm_desc or a vm_key). */
struct vc_field {
	const char *name;
	int required;
	int (*parse)(struct vc *c, void *target, json_t *v, const char *path);
};

/* --- messages --- */

static int vc_verror(const struct vm_set *set, struct conf_error *err, const char *path, const char *fmt, va_list ap)
{
	const char *src = set->source ? set->source : "<input>";
	const char *sep = *path ? ": " : "";
	int line, col, n;
	size_t off;

	if (set->text && jsonpos_find(set->text, set->text_len, path, &off) == 0) {
		jsonpos_line_col(set->text, set->text_len, off, &line, &col);
		n = snprintf(err->text, sizeof(err->text), "%s:%d:%d: %s%s", src, line, col, path, sep);
	} else {
		n = snprintf(err->text, sizeof(err->text), "%s: %s%s", src, path, sep);
	}
	if (n >= 0 && (size_t)n < sizeof(err->text))
		vsnprintf(err->text + n, sizeof(err->text) - (size_t)n, fmt, ap);
	return -EINVAL;
}

int vmconf_error_at(const struct vm_set *set, struct conf_error *err, const char *json_path, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vc_verror(set, err, json_path ? json_path : "", fmt, ap);
	va_end(ap);
	return -EINVAL;
}

static int vc_fail(struct vc *c, const char *path, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int vc_fail(struct vc *c, const char *path, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vc_verror(c->set, c->err, path, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

const char *vmconf_type_name(const json_t *v)
{
	switch (json_typeof(v)) {
	case JSON_OBJECT:
		return "an object";
	case JSON_ARRAY:
		return "an array";
	case JSON_STRING:
		return "a string";
	case JSON_INTEGER:
		return "an integer";
	case JSON_REAL:
		return "a number";
	case JSON_TRUE:
		return "true";
	case JSON_FALSE:
		return "false";
	default:
		return "null";
	}
}

static int vc_expect(struct vc *c, const char *path, const json_t *v, const char *want)
{
	return vc_fail(c, path, "expected %s, not %s", want, vmconf_type_name(v));
}

/* A value for a message: JSON-quoted, control characters escaped, cut to
 * about VC_QUOTE_MAX bytes on a character boundary. */
static void vc_quote(const char *s, size_t len, char out[VC_QUOTE_MAX])
{
	size_t o = 0, i;

	out[o++] = '"';
	for (i = 0; i < len && o + 10 < VC_QUOTE_MAX; i++) {
		unsigned char ch = (unsigned char)s[i];

		if (ch == '"' || ch == '\\')
			o += (size_t)sprintf(out + o, "\\%c", ch);
		else if (ch < 0x20 || ch == 0x7f)
			o += (size_t)sprintf(out + o, "\\u%04x", ch);
		else
			out[o++] = (char)ch;
	}
	if (i < len) {
		while (o > 1 && ((unsigned char)out[o - 1] & 0xc0) == 0x80)
			o--;
		if (o > 1 && ((unsigned char)out[o - 1] & 0xc0) == 0xc0)
			o--;
		memcpy(out + o, "...", 3);
		o += 3;
	}
	out[o++] = '"';
	out[o] = '\0';
}

static void vc_quote_json(const json_t *v, char out[VC_QUOTE_MAX])
{
	vc_quote(json_string_value(v), json_string_length(v), out);
}

/* --- generic object walk --- */

static const struct vc_field *vc_field_find(const struct vc_field *f, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (!strcmp(f[i].name, name))
			return &f[i];
	return NULL;
}

/* Unknown keys first (typo protection), then each known field in table
 * order: missing required ones are reported at the object itself. */
static int vc_parse_object(struct vc *c, void *target, json_t *obj, const char *path, const struct vc_field *f, size_t n,
			   const char *what)
{
	char sub[VC_PATH_MAX];
	const char *key;
	json_t *val;

	if (!json_is_object(obj))
		return vc_expect(c, path, obj, "an object");
	json_object_foreach(obj, key, val) {
		if (!vc_field_find(f, n, key)) {
			size_t len = (size_t)snprintf(sub, sizeof(sub), "%s", path);

			jsonpos_append_key(sub, sizeof(sub), len, key);
			return vc_fail(c, sub, "unknown %s", what);
		}
	}
	for (size_t i = 0; i < n; i++) {
		int rc;

		val = json_object_get(obj, f[i].name);
		if (!val) {
			if (f[i].required)
				return vc_fail(c, path, "missing required %s \"%s\"", what, f[i].name);
			continue;
		}
		if (!f[i].parse)
			continue;
		snprintf(sub, sizeof(sub), "%s.%s", path, f[i].name);
		rc = f[i].parse(c, target, val, sub);
		if (rc)
			return rc;
	}
	return 0;
}

/* --- identity: instance-id, mac, ipv4 --- */

/* A string of 1..max bytes, each of which `allowed` accepts; `rule` ends
 * the message for a byte it refuses ("%s must <rule>"). */
static int vc_text(struct vc *c, json_t *v, const char *path, size_t max, bool (*allowed)(unsigned char),
		   const char *rule)
{
	char q[VC_QUOTE_MAX];
	const char *s;
	size_t len;

	if (!json_is_string(v))
		return vc_expect(c, path, v, "a string");
	s = json_string_value(v);
	len = json_string_length(v);
	vc_quote(s, len, q);
	if (len == 0 || len > max)
		return vc_fail(c, path, "%s must be 1 to %zu bytes long", q, max);
	for (size_t i = 0; i < len; i++)
		if (!allowed((unsigned char)s[i]))
			return vc_fail(c, path, "%s must %s", q, rule);
	return 0;
}

static bool vc_id_byte(unsigned char ch)
{
	return ch > ' ' && ch <= '~' && ch != '/';
}

static int vc_parse_instance_id(struct vc *c, void *target, json_t *v, const char *path)
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
static int vc_parse_name(struct vc *c, void *target, json_t *v, const char *path)
{
	struct vm_desc *vm = target;

	if (vc_text(c, v, path, 255, vc_name_byte, "not contain control characters"))
		return -EINVAL;
	vm->name = strdup(json_string_value(v));
	return vm->name ? 0 : -ENOMEM;
}

/* The flavor sections are checked by their own code (flavors.c), which
 * names the offending value by its JSON path. */
static int vc_parse_flavor(struct vc *c, const char *flavor, json_t *v, const char *path)
{
	char bad[256], msg[512];

	if (flavors_check(flavor, v, path, bad, sizeof(bad), msg, sizeof(msg)) == 0)
		return 0;
	return vc_fail(c, bad, "%s", msg);
}

static int vc_parse_openstack(struct vc *c, void *target, json_t *v, const char *path)
{
	(void)target;
	return vc_parse_flavor(c, "openstack", v, path);
}

static int vc_parse_gce(struct vc *c, void *target, json_t *v, const char *path)
{
	(void)target;
	return vc_parse_flavor(c, "gce", v, path);
}

static int vc_parse_azure(struct vc *c, void *target, json_t *v, const char *path)
{
	(void)target;
	return vc_parse_flavor(c, "azure", v, path);
}

static int vc_hex_digit(char ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

int vmconf_parse_mac(const char *text, uint8_t mac[6])
{
	uint8_t out[6];

	if (strlen(text) != 17)
		return -EINVAL;
	for (int i = 0; i < 6; i++) {
		int hi = vc_hex_digit(text[3 * i]), lo = vc_hex_digit(text[3 * i + 1]);

		if (hi < 0 || lo < 0 || (i < 5 && text[3 * i + 2] != ':'))
			return -EINVAL;
		out[i] = (uint8_t)(hi << 4 | lo);
	}
	memcpy(mac, out, 6);
	return 0;
}

void vmconf_format_mac(const uint8_t mac[6], char out[18])
{
	snprintf(out, 18, "%02x:%02x:%02x:%02x:%02x:%02x", mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]);
}

const json_t *vmconf_meta_lookup(const struct vm_desc *vm, const char *path)
{
	const json_t *v = vm->meta_data;

	while (v && *path) {
		size_t n = strcspn(path, "/");

		if (!json_is_object(v))
			return NULL;
		v = json_object_getn(v, path, n);
		path += n + (path[n] == '/');
	}
	return v;
}

static int vc_parse_mac(struct vc *c, void *target, json_t *v, const char *path)
{
	static const uint8_t zero[6];
	struct vm_desc *vm = target;
	char q[VC_QUOTE_MAX];

	if (!json_is_string(v))
		return vc_expect(c, path, v, "a string");
	vc_quote_json(v, q);
	if (vmconf_parse_mac(json_string_value(v), vm->mac))
		return vc_fail(c, path, "%s is not a MAC address", q);
	/* The I/G bit: a group address is never a VM's own source. */
	if (vm->mac[0] & 1)
		return vc_fail(c, path, "%s is a multicast MAC address", q);
	if (!memcmp(vm->mac, zero, 6))
		return vc_fail(c, path, "%s is the all-zero MAC address", q);
	return 0;
}

static int vc_parse_ipv4(struct vc *c, void *target, json_t *v, const char *path)
{
	struct vm_desc *vm = target;
	char q[VC_QUOTE_MAX];
	struct in_addr a;
	uint32_t host;

	if (!json_is_string(v))
		return vc_expect(c, path, v, "a string");
	vc_quote_json(v, q);
	if (inet_pton(AF_INET, json_string_value(v), &a) != 1)
		return vc_fail(c, path, "%s is not an IPv4 address", q);
	host = ntohl(a.s_addr);
	if (host == 0)
		return vc_fail(c, path, "%s is the unspecified address", q);
	if (host == 0xffffffffu)
		return vc_fail(c, path, "%s is the broadcast address", q);
	if ((host >> 28) == 0xe)
		return vc_fail(c, path, "%s is a multicast address", q);
	if (host == IMDS_IPV4_ADDR) /* host order, despite the comment in imds.h */
		return vc_fail(c, path, "%s is the metadata service's own address", q);
	vm->ipv4 = a.s_addr;
	return 0;
}

/* --- options --- */

static int vc_parse_http_tokens(struct vc *c, void *target, json_t *v, const char *path)
{
	struct vm_desc *vm = target;
	char q[VC_QUOTE_MAX];

	if (!json_is_string(v))
		return vc_expect(c, path, v, "a string");
	if (!strcmp(json_string_value(v), "optional")) {
		vm->http_tokens = IMDS_TOKENS_OPTIONAL;
		return 0;
	}
	if (!strcmp(json_string_value(v), "required")) {
		vm->http_tokens = IMDS_TOKENS_REQUIRED;
		return 0;
	}
	vc_quote_json(v, q);
	return vc_fail(c, path, "%s is not \"optional\" or \"required\"", q);
}

static int vc_parse_hop_limit(struct vc *c, void *target, json_t *v, const char *path)
{
	struct vm_desc *vm = target;
	json_int_t n;

	if (!json_is_integer(v))
		return vc_expect(c, path, v, "an integer");
	n = json_integer_value(v);
	/* EC2's HttpPutResponseHopLimit range. */
	if (n < 1 || n > 64)
		return vc_fail(c, path, "%" JSON_INTEGER_FORMAT " is out of range 1..64", n);
	vm->hop_limit = (uint8_t)n;
	return 0;
}

/* rate-pps and rate-burst: the VM's packet budget in the data plane.  The
 * upper bound keeps burst * 1e9 (the bucket in 1e-9 packets) far from
 * overflowing 64 bits. */
static int vc_parse_rate(struct vc *c, json_t *v, const char *path, uint32_t *out)
{
	json_int_t n;

	if (!json_is_integer(v))
		return vc_expect(c, path, v, "an integer");
	n = json_integer_value(v);
	if (n < 1 || n > IMDS_RATE_MAX)
		return vc_fail(c, path, "%" JSON_INTEGER_FORMAT " is out of range 1..%d", n, IMDS_RATE_MAX);
	*out = (uint32_t)n;
	return 0;
}

static int vc_parse_rate_pps(struct vc *c, void *target, json_t *v, const char *path)
{
	return vc_parse_rate(c, v, path, &((struct vm_desc *)target)->rate_pps);
}

static int vc_parse_rate_burst(struct vc *c, void *target, json_t *v, const char *path)
{
	return vc_parse_rate(c, v, path, &((struct vm_desc *)target)->rate_burst);
}

static int vc_parse_request_rate(struct vc *c, void *target, json_t *v, const char *path)
{
	return vc_parse_rate(c, v, path, &((struct vm_desc *)target)->request_rate);
}

static int vc_parse_request_burst(struct vc *c, void *target, json_t *v, const char *path)
{
	return vc_parse_rate(c, v, path, &((struct vm_desc *)target)->request_burst);
}

static int vc_parse_bounded(struct vc *c, json_t *v, const char *path, json_int_t lo, json_int_t hi, uint32_t *out)
{
	json_int_t n;

	if (!json_is_integer(v))
		return vc_expect(c, path, v, "an integer");
	n = json_integer_value(v);
	if (n < lo || n > hi)
		return vc_fail(c, path, "%" JSON_INTEGER_FORMAT " is out of range %" JSON_INTEGER_FORMAT
			       "..%" JSON_INTEGER_FORMAT, n, lo, hi);
	*out = (uint32_t)n;
	return 0;
}

static int vc_parse_max_conns(struct vc *c, void *target, json_t *v, const char *path)
{
	return vc_parse_bounded(c, v, path, 1, IMDS_MAX_CONNS_LIMIT, &((struct vm_desc *)target)->max_conns);
}

/* EC2 caps user data at 16 KiB; an operator may allow more for one VM. */
static int vc_parse_user_data_max(struct vc *c, void *target, json_t *v, const char *path)
{
	return vc_parse_bounded(c, v, path, VMCONF_USER_DATA_MAX, VMCONF_USER_DATA_MAX_LIMIT,
				&((struct vm_desc *)target)->user_data_max);
}

/* A string option with two values; *out = (value == yes). */
static int vc_parse_choice(struct vc *c, json_t *v, const char *path, const char *yes, const char *no, bool *out)
{
	char q[VC_QUOTE_MAX];

	if (!json_is_string(v))
		return vc_expect(c, path, v, "a string");
	if (!strcmp(json_string_value(v), yes) || !strcmp(json_string_value(v), no)) {
		*out = !strcmp(json_string_value(v), yes);
		return 0;
	}
	vc_quote_json(v, q);
	return vc_fail(c, path, "%s is not \"%s\" or \"%s\"", q, yes, no);
}

/* EC2's InstanceMetadataTags option. */
static int vc_parse_metadata_tags(struct vc *c, void *target, json_t *v, const char *path)
{
	return vc_parse_choice(c, v, path, "enabled", "disabled", &((struct vm_desc *)target)->metadata_tags);
}

/* Token PUTs carrying Forwarded or Via (proxy headers beyond EC2's
 * X-Forwarded-For check): rejected unless "allow". */
static int vc_parse_proxied(struct vc *c, void *target, json_t *v, const char *path)
{
	return vc_parse_choice(c, v, path, "allow", "reject", &((struct vm_desc *)target)->allow_proxied);
}

static const struct vc_field vc_option_fields[] = {
	{ "http-tokens", 0, vc_parse_http_tokens },
	{ "hop-limit", 0, vc_parse_hop_limit },
	{ "rate-pps", 0, vc_parse_rate_pps },
	{ "rate-burst", 0, vc_parse_rate_burst },
	{ "request-rate", 0, vc_parse_request_rate },
	{ "request-burst", 0, vc_parse_request_burst },
	{ "max-connections", 0, vc_parse_max_conns },
	{ "instance-metadata-tags", 0, vc_parse_metadata_tags },
	{ "proxied-token-requests", 0, vc_parse_proxied },
	{ "user-data-max", 0, vc_parse_user_data_max },
};

static int vc_parse_options(struct vc *c, void *target, json_t *v, const char *path)
{
	return vc_parse_object(c, target, v, path, vc_option_fields,
			       sizeof(vc_option_fields) / sizeof(vc_option_fields[0]), "option");
}

/* --- meta-data --- */

struct vc_path {
	char s[VC_PATH_MAX];
	size_t len;
};

static int vc_check_meta_value(struct vc *c, json_t *v, struct vc_path *p, size_t tree_len);

static int vc_check_meta_key(struct vc *c, const char *key, const char *path)
{
	if (!*key)
		return vc_fail(c, path, "empty key");
	if (!strcmp(key, ".") || !strcmp(key, ".."))
		return vc_fail(c, path, "key must not be \".\" or \"..\"");
	/* cloud-init strips each listing line before fetching it. */
	if (key[0] == ' ' || key[strlen(key) - 1] == ' ')
		return vc_fail(c, path, "key must not start or end with a space");
	for (const char *k = key; *k; k++) {
		if (*k == '/')
			return vc_fail(c, path, "key must not contain '/'");
		/* A key is a line of its directory's listing. */
		if ((unsigned char)*k < 0x20 || *k == 0x7f)
			return vc_fail(c, path, "key must not contain control characters");
	}
	return 0;
}

/* `tree_len`: length of the directory's tree path, trailing '/' included. */
static int vc_check_meta_object(struct vc *c, json_t *obj, struct vc_path *p, size_t tree_len)
{
	const char *key;
	json_t *val;

	json_object_foreach(obj, key, val) {
		size_t klen = strlen(key), saved = p->len;
		size_t node_len = tree_len + klen + (json_is_object(val) ? 1 : 0);
		char q[VC_QUOTE_MAX];
		int rc;

		if (node_len > TREE_PATH_MAX) {
			vc_quote(key, klen, q);
			return vc_fail(c, p->s, "key %s makes a metadata path longer than %d bytes", q, TREE_PATH_MAX);
		}
		p->len = jsonpos_append_key(p->s, sizeof(p->s), p->len, key);
		if (p->len >= sizeof(p->s)) {
			p->s[p->len = saved] = '\0';
			vc_quote(key, klen, q);
			return vc_fail(c, p->s, "key %s makes the path too long", q);
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

static int vc_check_meta_array(struct vc *c, json_t *arr, struct vc_path *p)
{
	size_t i, saved = p->len;
	json_t *el;

	json_array_foreach(arr, i, el) {
		if (json_is_string(el))
			continue;
		snprintf(p->s + saved, sizeof(p->s) - saved, "[%zu]", i);
		return vc_fail(c, p->s, "expected a string (arrays are lists of strings), not %s", vmconf_type_name(el));
	}
	return 0;
}

static int vc_check_meta_value(struct vc *c, json_t *v, struct vc_path *p, size_t tree_len)
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
		return vc_fail(c, p->s, "%s is not allowed: use a string, a number, an object or an array of strings",
			       vmconf_type_name(v));
	}
}

/* Interfaces are listed by lower-case MAC (spec §1.6), and imds derives
 * the VM's own interface under its lower-case MAC: an upper-case key would
 * make a second directory for the same interface. */
static int vc_check_mac_keys(struct vc *c, json_t *md, const char *path)
{
	json_t *macs = json_object_get(json_object_get(json_object_get(md, "network"), "interfaces"), "macs");
	char sub[VC_PATH_MAX], q[VC_QUOTE_MAX];
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
		vc_quote(key, strlen(key), q);
		return vc_fail(c, sub, "MAC %s must be written in lower case, as EC2 lists it (\"%s\")", q, lower);
	}
	return 0;
}

static int vc_parse_meta_data(struct vc *c, void *target, json_t *v, const char *path)
{
	struct vm_desc *vm = target;
	struct vc_path *p;
	int rc;

	if (!json_is_object(v))
		return vc_expect(c, path, v, "an object");
	/* Tags in meta-data would be served whatever the VM's
	 * instance-metadata-tags option says. */
	if (json_object_get(v, "tags")) {
		char sub[VC_PATH_MAX];

		snprintf(sub, sizeof(sub), "%s.tags", path);
		return vc_fail(c, sub, "give tags in %s.tags (served when options.instance-metadata-tags is \"enabled\")",
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

static int vc_check_user_data_size(struct vc *c, const struct vm_desc *vm, const char *path, size_t len)
{
	uint32_t max = vm->user_data_max ? vm->user_data_max : VMCONF_USER_DATA_MAX;

	if (len <= max)
		return 0;
	return vc_fail(c, path, "user data is %zu bytes, more than the %u allowed", len, max);
}

static int vc_parse_user_data(struct vc *c, void *target, json_t *v, const char *path)
{
	struct vm_desc *vm = target;
	size_t len;

	if (!json_is_string(v))
		return vc_expect(c, path, v, "a string");
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

static int vc_parse_user_data_b64(struct vc *c, void *target, json_t *v, const char *path)
{
	struct vm_desc *vm = target;
	size_t len, out_len, bad;
	const char *s;
	uint8_t *buf;

	if (json_object_get(vm->record, "user-data"))
		return vc_fail(c, path, "give \"user-data\" or \"user-data-base64\", not both");
	if (!json_is_string(v))
		return vc_expect(c, path, v, "a string");
	s = json_string_value(v);
	len = json_string_length(v);
	buf = malloc(len / 4 * 3 + 1);
	if (!buf)
		return -ENOMEM;
	if (vc_base64_decode(s, len, buf, &out_len, &bad)) {
		free(buf);
		if (bad == len)
			return vc_fail(c, path, "not valid base64: the input ends inside a 4-character group");
		return vc_fail(c, path, "not valid base64: unexpected '%c' at offset %zu",
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

static int vc_parse_key_name(struct vc *c, void *target, json_t *v, const char *path)
{
	struct vm_key *key = target;
	char q[VC_QUOTE_MAX];
	const char *s;

	if (!json_is_string(v))
		return vc_expect(c, path, v, "a string");
	s = json_string_value(v);
	vc_quote_json(v, q);
	if (!*s)
		return vc_fail(c, path, "a key name must not be empty");
	/* The public-keys/ listing is "N=name" lines. */
	for (; *s; s++)
		if (*s == '=' || (unsigned char)*s < 0x20 || *s == 0x7f)
			return vc_fail(c, path, "%s must not contain '=' or control characters", q);
	key->name = strdup(json_string_value(v));
	return key->name ? 0 : -ENOMEM;
}

static int vc_parse_key_text(struct vc *c, void *target, json_t *v, const char *path)
{
	struct vm_key *key = target;

	if (!json_is_string(v))
		return vc_expect(c, path, v, "a string");
	if (!json_string_length(v))
		return vc_fail(c, path, "the key must not be empty");
	key->openssh_key = strdup(json_string_value(v));
	return key->openssh_key ? 0 : -ENOMEM;
}

static const struct vc_field vc_key_fields[] = {
	{ "name", 1, vc_parse_key_name },
	{ "openssh-key", 1, vc_parse_key_text },
};

static int vc_check_key_names(struct vc *c, const struct vm_desc *vm, const char *path)
{
	char sub[VC_PATH_MAX], q[VC_QUOTE_MAX];

	for (size_t i = 1; i < vm->n_keys; i++) {
		for (size_t j = 0; j < i; j++) {
			if (strcmp(vm->keys[i].name, vm->keys[j].name))
				continue;
			snprintf(sub, sizeof(sub), "%s[%zu].name", path, i);
			vc_quote(vm->keys[i].name, strlen(vm->keys[i].name), q);
			return vc_fail(c, sub, "%s duplicates %s[%zu].name", q, path, j);
		}
	}
	return 0;
}

static int vc_parse_public_keys(struct vc *c, void *target, json_t *v, const char *path)
{
	struct vm_desc *vm = target;
	char sub[VC_PATH_MAX];
	json_t *el;
	size_t i;

	/* Both would describe meta-data/public-keys/. */
	if (vm->meta_data && json_object_get(vm->meta_data, "public-keys")) {
		snprintf(sub, sizeof(sub), "%s.meta-data.public-keys", vm->json_path);
		return vc_fail(c, sub, "public keys are given here and in %s; keep one", path);
	}
	if (!json_is_array(v))
		return vc_expect(c, path, v, "an array");
	vm->keys = calloc(json_array_size(v) ? json_array_size(v) : 1, sizeof(*vm->keys));
	if (!vm->keys)
		return -ENOMEM;
	json_array_foreach(v, i, el) {
		int rc;

		snprintf(sub, sizeof(sub), "%s[%zu]", path, i);
		vm->n_keys++;
		rc = vc_parse_object(c, &vm->keys[i], el, sub, vc_key_fields,
				     sizeof(vc_key_fields) / sizeof(vc_key_fields[0]), "field");
		if (rc)
			return rc;
	}
	return vc_check_key_names(c, vm, path);
}

/* --- iam --- */

int vmconf_check_time(const char *s, size_t len)
{
	static const char shape[] = "dddd-dd-ddTdd:dd:ddZ";
	static const int mdays[12] = { 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
	int year, mon, day, hour, min, sec;

	if (len != VMCONF_TIME_LEN)
		return -EINVAL;
	for (size_t i = 0; i < len; i++)
		if (shape[i] == 'd' ? (s[i] < '0' || s[i] > '9') : s[i] != shape[i])
			return -EINVAL;
	if (sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d", &year, &mon, &day, &hour, &min, &sec) != 6)
		return -EINVAL;
	if (mon < 1 || mon > 12 || day < 1 || day > mdays[mon - 1] || hour > 23 || min > 59 || sec > 59)
		return -EINVAL;
	/* February 29th only in leap years. */
	if (mon == 2 && day == 29 && (year % 4 || (year % 100 == 0 && year % 400)))
		return -EINVAL;
	return 0;
}

static int vc_parse_time(struct vc *c, json_t *v, const char *path, char out[VMCONF_TIME_LEN + 1])
{
	char q[VC_QUOTE_MAX];

	if (!json_is_string(v))
		return vc_expect(c, path, v, "a string");
	if (vmconf_check_time(json_string_value(v), json_string_length(v))) {
		vc_quote_json(v, q);
		return vc_fail(c, path, "%s is not a valid UTC time of the form YYYY-MM-DDTHH:MM:SSZ", q);
	}
	memcpy(out, json_string_value(v), VMCONF_TIME_LEN + 1);
	return 0;
}

/* A string of `min`..`max` bytes whose every byte is in `allowed` (NULL:
 * printable ASCII without spaces); *out is a copy. */
static int vc_parse_token_string(struct vc *c, json_t *v, const char *path, size_t min, size_t max,
				 const char *allowed, const char *what, char **out)
{
	char q[VC_QUOTE_MAX];
	const char *s;
	size_t len;

	if (!json_is_string(v))
		return vc_expect(c, path, v, "a string");
	s = json_string_value(v);
	len = json_string_length(v);
	vc_quote(s, len, q);
	if (len < min || len > max)
		return vc_fail(c, path, "%s must be %zu to %zu characters long", q, min, max);
	for (size_t i = 0; i < len; i++) {
		bool ok = allowed ? (s[i] && strchr(allowed, s[i]) != NULL) : (s[i] > ' ' && s[i] <= '~');

		if (!ok)
			return vc_fail(c, path, "%s: character %zu is not allowed in %s", q, i + 1, what);
	}
	*out = strdup(s);
	return *out ? 0 : -ENOMEM;
}

#define VC_ALNUM "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

static int vc_parse_iam_role(struct vc *c, void *target, json_t *v, const char *path)
{
	/* IAM's role name rule: [\w+=,.@-]{1,64}. */
	return vc_parse_token_string(c, v, path, 1, 64, VC_ALNUM "+=,.@_-", "a role name",
				     &((struct vm_iam *)target)->role);
}

/* arn:PARTITION:iam::ACCOUNT:instance-profile/NAME; the account is
 * copied to `account` (13 bytes). */
static int vc_split_profile_arn(const char *s, char *account)
{
	const char *p = s, *colon;

	if (strncmp(p, "arn:", 4))
		return -EINVAL;
	p += 4;
	colon = strchr(p, ':');
	if (!colon || colon == p || strncmp(colon, ":iam::", 6))
		return -EINVAL;
	p = colon + 6;
	if (strspn(p, "0123456789") != VMCONF_ACCOUNT_LEN || p[VMCONF_ACCOUNT_LEN] != ':')
		return -EINVAL;
	memcpy(account, p, VMCONF_ACCOUNT_LEN);
	account[VMCONF_ACCOUNT_LEN] = '\0';
	p += VMCONF_ACCOUNT_LEN + 1;
	if (strncmp(p, "instance-profile/", 17) || !p[17] || p[strlen(p) - 1] == '/')
		return -EINVAL;
	return 0;
}

static int vc_parse_iam_arn(struct vc *c, void *target, json_t *v, const char *path)
{
	struct vm_iam *iam = target;
	char account[VMCONF_ACCOUNT_LEN + 1], q[VC_QUOTE_MAX];
	int rc = vc_parse_token_string(c, v, path, 1, 2048, NULL, "an ARN", &iam->profile_arn);

	if (rc)
		return rc;
	if (vc_split_profile_arn(iam->profile_arn, account)) {
		vc_quote_json(v, q);
		return vc_fail(c, path, "%s is not an instance profile ARN (arn:PARTITION:iam::ACCOUNT:instance-profile/NAME)",
			       q);
	}
	/* The account named by "account-id" (parsed later) must agree. */
	memcpy(iam->account_id, account, sizeof(account));
	return 0;
}

static int vc_parse_iam_profile_id(struct vc *c, void *target, json_t *v, const char *path)
{
	return vc_parse_token_string(c, v, path, 21, 21, "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789",
				     "an instance profile id", &((struct vm_iam *)target)->profile_id);
}

static int vc_parse_iam_account(struct vc *c, void *target, json_t *v, const char *path)
{
	struct vm_iam *iam = target;
	char q[VC_QUOTE_MAX];

	if (!json_is_string(v))
		return vc_expect(c, path, v, "a string");
	vc_quote_json(v, q);
	if (json_string_length(v) != VMCONF_ACCOUNT_LEN || strspn(json_string_value(v), "0123456789") != VMCONF_ACCOUNT_LEN)
		return vc_fail(c, path, "%s is not a 12-digit account id", q);
	if (strcmp(iam->account_id, json_string_value(v)))
		return vc_fail(c, path, "%s differs from the account %s of instance-profile-arn", q, iam->account_id);
	return 0;
}

static int vc_parse_iam_updated(struct vc *c, void *target, json_t *v, const char *path)
{
	return vc_parse_time(c, v, path, ((struct vm_iam *)target)->last_updated);
}

static int vc_parse_cred_key_id(struct vc *c, void *target, json_t *v, const char *path)
{
	return vc_parse_token_string(c, v, path, 16, 128, VC_ALNUM, "an access key id",
				     &((struct vm_iam *)target)->access_key_id);
}

static int vc_parse_cred_secret(struct vc *c, void *target, json_t *v, const char *path)
{
	return vc_parse_token_string(c, v, path, 1, 1024, NULL, "a secret access key",
				     &((struct vm_iam *)target)->secret_access_key);
}

static int vc_parse_cred_token(struct vc *c, void *target, json_t *v, const char *path)
{
	return vc_parse_token_string(c, v, path, 1, 8192, NULL, "a session token", &((struct vm_iam *)target)->token);
}

static int vc_parse_cred_expiration(struct vc *c, void *target, json_t *v, const char *path)
{
	return vc_parse_time(c, v, path, ((struct vm_iam *)target)->expiration);
}

static const struct vc_field vc_cred_fields[] = {
	{ "access-key-id", 1, vc_parse_cred_key_id },
	{ "secret-access-key", 1, vc_parse_cred_secret },
	{ "token", 1, vc_parse_cred_token },
	{ "expiration", 1, vc_parse_cred_expiration },
};

static int vc_parse_iam_creds(struct vc *c, void *target, json_t *v, const char *path)
{
	return vc_parse_object(c, target, v, path, vc_cred_fields, sizeof(vc_cred_fields) / sizeof(vc_cred_fields[0]),
			       "field");
}

/* The ARN before account-id, which is checked against it. */
static const struct vc_field vc_iam_fields[] = {
	{ "role", 1, vc_parse_iam_role },
	{ "instance-profile-arn", 1, vc_parse_iam_arn },
	{ "instance-profile-id", 0, vc_parse_iam_profile_id },
	{ "account-id", 0, vc_parse_iam_account },
	{ "last-updated", 0, vc_parse_iam_updated },
	{ "credentials", 1, vc_parse_iam_creds },
};

static void vc_free_iam(struct vm_iam *iam)
{
	if (!iam)
		return;
	free(iam->role);
	free(iam->profile_arn);
	free(iam->profile_id);
	free(iam->access_key_id);
	free(iam->secret_access_key);
	free(iam->token);
	free(iam);
}

static int vc_parse_iam(struct vc *c, void *target, json_t *v, const char *path)
{
	struct vm_desc *vm = target;
	char sub[VC_PATH_MAX];

	/* Both would describe meta-data/iam/. */
	if (vm->meta_data && json_object_get(vm->meta_data, "iam")) {
		snprintf(sub, sizeof(sub), "%s.meta-data.iam", vm->json_path);
		return vc_fail(c, sub, "the IAM role is given here and in %s; keep one", path);
	}
	vm->iam = calloc(1, sizeof(*vm->iam));
	if (!vm->iam)
		return -ENOMEM;
	memcpy(vm->iam->last_updated, c->now, sizeof(c->now));
	return vc_parse_object(c, vm->iam, v, path, vc_iam_fields, sizeof(vc_iam_fields) / sizeof(vc_iam_fields[0]),
			       "field");
}

/* --- tags --- */

/* EC2's rule for tags that instance metadata shows (D-tag): the key is a
 * path segment, so no '/' and no spaces. */
#define VC_TAG_KEY_CHARS VC_ALNUM "+-=.,_:@"
#define VC_TAG_KEY_MAX 128
#define VC_TAG_VALUE_MAX 256

static size_t vc_utf8_chars(const char *s, size_t len)
{
	size_t n = 0;

	for (size_t i = 0; i < len; i++)
		n += ((unsigned char)s[i] & 0xc0) != 0x80;
	return n;
}

static int vc_check_tag_key(struct vc *c, const char *key, const char *path)
{
	size_t len = strlen(key), bad = strspn(key, VC_TAG_KEY_CHARS);
	char q[VC_QUOTE_MAX];

	vc_quote(key, len, q);
	if (len == 0 || len > VC_TAG_KEY_MAX)
		return vc_fail(c, path, "tag key %s must be 1 to %d characters long", q, VC_TAG_KEY_MAX);
	if (bad < len)
		return vc_fail(c, path, "tag key %s: character %zu is not one of A-Z a-z 0-9 + - = . , _ : @", q, bad + 1);
	if (!strcmp(key, ".") || !strcmp(key, "..") || !strcmp(key, "_index"))
		return vc_fail(c, path, "tag key %s is reserved (\".\", \"..\" and \"_index\" are)", q);
	return 0;
}

static int vc_check_tag_value(struct vc *c, json_t *v, const char *path)
{
	const char *s;
	size_t len;

	if (!json_is_string(v))
		return vc_expect(c, path, v, "a string");
	s = json_string_value(v);
	len = json_string_length(v);
	if (vc_utf8_chars(s, len) > VC_TAG_VALUE_MAX)
		return vc_fail(c, path, "tag value is %zu characters, more than the %d allowed", vc_utf8_chars(s, len),
			       VC_TAG_VALUE_MAX);
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			return vc_fail(c, path, "tag value must not contain control characters (byte %zu)", i + 1);
	return 0;
}

static int vc_parse_tags(struct vc *c, void *target, json_t *v, const char *path)
{
	struct vm_desc *vm = target;
	char sub[VC_PATH_MAX];
	const char *key;
	json_t *val;

	if (!json_is_object(v))
		return vc_expect(c, path, v, "an object");
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

/* --- a VM, the file --- */

/* Order matters: user-data before user-data-base64 and meta-data before
 * public-keys (each of the latter checks the former).  "openstack", "gce"
 * and "azure" are the other flavors' sections, checked by flavors.c. */
static const struct vc_field vc_vm_fields[] = {
	{ "instance-id", 1, vc_parse_instance_id },
	{ "name", 0, vc_parse_name },
	{ "mac", 1, vc_parse_mac },
	{ "ipv4", 1, vc_parse_ipv4 },
	{ "options", 0, vc_parse_options },
	{ "meta-data", 0, vc_parse_meta_data },
	{ "user-data", 0, vc_parse_user_data },
	{ "user-data-base64", 0, vc_parse_user_data_b64 },
	{ "public-keys", 0, vc_parse_public_keys },
	{ "iam", 0, vc_parse_iam },
	{ "tags", 0, vc_parse_tags },
	{ "openstack", 0, vc_parse_openstack },
	{ "gce", 0, vc_parse_gce },
	{ "azure", 0, vc_parse_azure },
};

static int vc_parse_vm(struct vc *c, struct vm_desc *vm, json_t *v, size_t index)
{
	snprintf(vm->json_path, sizeof(vm->json_path), "vms[%zu]", index);
	vm->record = v;
	vm->http_tokens = IMDS_TOKENS_OPTIONAL;
	vm->hop_limit = 1;
	return vc_parse_object(c, vm, v, vm->json_path, vc_vm_fields, sizeof(vc_vm_fields) / sizeof(vc_vm_fields[0]),
			       "field");
}

static int vc_parse_root(struct vc *c)
{
	struct vm_set *set = c->set;
	const char *key;
	json_t *vms, *val;
	size_t i;

	if (!json_is_object(set->root))
		return vc_fail(c, "", "expected an object with a \"vms\" array, not %s", vmconf_type_name(set->root));
	json_object_foreach(set->root, key, val) {
		char path[VC_PATH_MAX];

		if (strcmp(key, "vms")) {
			jsonpos_append_key(path, sizeof(path), 0, key);
			return vc_fail(c, path, "unknown field");
		}
	}
	vms = json_object_get(set->root, "vms");
	if (!vms)
		return vc_fail(c, "", "missing required field \"vms\"");
	if (!json_is_array(vms))
		return vc_expect(c, "vms", vms, "an array");
	if (json_array_size(vms) > IMDS_MAX_VMS - 1) /* slot 0 is never a VM */
		return vc_fail(c, "vms", "%zu VMs, more than the %d a host holds", json_array_size(vms),
			       IMDS_MAX_VMS - 1);
	set->vms = calloc(json_array_size(vms) ? json_array_size(vms) : 1, sizeof(*set->vms));
	if (!set->vms)
		return -ENOMEM;
	json_array_foreach(vms, i, val) {
		int rc;

		set->n++;
		rc = vc_parse_vm(c, &set->vms[i], val, i);
		if (rc)
			return rc;
	}
	return 0;
}

static int vc_duplicate(struct vc *c, size_t i, size_t j, const char *field)
{
	const struct vm_desc *a = &c->set->vms[i];
	char path[64], q[VC_QUOTE_MAX];

	snprintf(path, sizeof(path), "%s.%s", a->json_path, field);
	vc_quote_json(json_object_get(a->record, field), q);
	return vc_fail(c, path, "%s duplicates %s.%s", q, c->set->vms[j].json_path, field);
}

/* Two VMs with one MAC or IPv4 would make the data plane's binding
 * ambiguous; one instance-id would make them one VM to the store. */
static int vc_check_duplicates(struct vc *c)
{
	const struct vm_desc *v = c->set->vms;

	for (size_t i = 1; i < c->set->n; i++) {
		for (size_t j = 0; j < i; j++) {
			if (!strcmp(v[i].instance_id, v[j].instance_id))
				return vc_duplicate(c, i, j, "instance-id");
			if (!memcmp(v[i].mac, v[j].mac, 6))
				return vc_duplicate(c, i, j, "mac");
			if (v[i].ipv4 == v[j].ipv4)
				return vc_duplicate(c, i, j, "ipv4");
		}
	}
	return 0;
}

static int vc_load_json(struct vm_set *set, struct conf_error *err)
{
	json_error_t jerr;

	set->root = json_loadb(set->text, set->text_len, JSON_REJECT_DUPLICATES, &jerr);
	if (set->root)
		return 0;
	snprintf(err->text, sizeof(err->text), "%s:%d:%d: %s", set->source, jerr.line, jerr.column, jerr.text);
	return -EINVAL;
}

int vmconf_parse(const char *source, const char *text, size_t len, struct vm_set *out, struct conf_error *err)
{
	struct vc c = { .set = out, .err = err };
	time_t now = time(NULL);
	struct tm tm;
	int rc = -ENOMEM;

	if (gmtime_r(&now, &tm))
		strftime(c.now, sizeof(c.now), "%Y-%m-%dT%H:%M:%SZ", &tm);

	memset(out, 0, sizeof(*out));
	err->text[0] = '\0';
	out->source = strdup(source ? source : "<input>");
	out->text = malloc(len + 1);
	if (!out->source || !out->text)
		goto out;
	memcpy(out->text, text, len);
	out->text[len] = '\0';
	out->text_len = len;
	rc = vc_load_json(out, err);
	if (!rc)
		rc = vc_parse_root(&c);
	if (!rc)
		rc = vc_check_duplicates(&c);
out:
	if (rc == -ENOMEM && !err->text[0])
		snprintf(err->text, sizeof(err->text), "%s: out of memory", source ? source : "<input>");
	if (rc)
		vmconf_free(out);
	return rc;
}

static int vc_read_file(const char *path, char **text, size_t *len)
{
	struct stat st;
	char *buf = NULL;
	size_t got = 0;
	int fd, rc = 0;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st)) {
		rc = -errno;
		goto out;
	}
	if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size > VC_FILE_MAX) {
		rc = S_ISREG(st.st_mode) ? -EFBIG : -EINVAL;
		goto out;
	}
	buf = malloc((size_t)st.st_size + 1);
	if (!buf) {
		rc = -ENOMEM;
		goto out;
	}
	while (got < (size_t)st.st_size) {
		ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			rc = n < 0 ? -errno : -EIO;
			goto out;
		}
		got += (size_t)n;
	}
	*text = buf;
	*len = got;
	buf = NULL;
out:
	free(buf);
	close(fd);
	return rc;
}

int vmconf_load_file(const char *path, struct vm_set *out, struct conf_error *err)
{
	char *text = NULL;
	size_t len = 0;
	int rc = vc_read_file(path, &text, &len);

	memset(out, 0, sizeof(*out));
	if (rc) {
		snprintf(err->text, sizeof(err->text), "%s: %s", path,
			 rc == -EINVAL ? "not a regular file" : strerror(-rc));
		return rc;
	}
	rc = vmconf_parse(path, text, len, out, err);
	free(text);
	return rc;
}

void vmconf_free(struct vm_set *set)
{
	for (size_t i = 0; set->vms && i < set->n; i++) {
		struct vm_desc *vm = &set->vms[i];

		for (size_t k = 0; k < vm->n_keys; k++) {
			free(vm->keys[k].name);
			free(vm->keys[k].openssh_key);
		}
		free(vm->keys);
		free(vm->user_data);
		free(vm->name);
		vc_free_iam(vm->iam);
	}
	free(set->vms);
	json_decref(set->root);
	free(set->text);
	free(set->source);
	memset(set, 0, sizeof(*set));
}

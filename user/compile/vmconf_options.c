/* vmconf_options.c: a VM record's "options" (vmconf_options.h), each
 * checked and stored in the struct vm_desc. */
#include "compile/vmconf_options.h"

#include <errno.h>
#include <string.h>

static int vc_parse_http_tokens(struct schema_ctx *c, void *target, json_t *v, const char *path)
{
	struct vm_desc *vm = target;
	char q[SCHEMA_QUOTE_MAX];

	if (!json_is_string(v))
		return schema_expect(c, path, v, "a string");
	if (!strcmp(json_string_value(v), "optional")) {
		vm->http_tokens = IMDS_TOKENS_OPTIONAL;
		return 0;
	}
	if (!strcmp(json_string_value(v), "required")) {
		vm->http_tokens = IMDS_TOKENS_REQUIRED;
		return 0;
	}
	schema_quote_json(v, q);
	return schema_fail(c, path, "%s is not \"optional\" or \"required\"", q);
}

static int vc_parse_hop_limit(struct schema_ctx *c, void *target, json_t *v, const char *path)
{
	struct vm_desc *vm = target;
	json_int_t n;

	if (!json_is_integer(v))
		return schema_expect(c, path, v, "an integer");
	n = json_integer_value(v);
	/* EC2's HttpPutResponseHopLimit range. */
	if (n < 1 || n > 64)
		return schema_fail(c, path, "%" JSON_INTEGER_FORMAT " is out of range 1..64", n);
	vm->hop_limit = (uint8_t)n;
	return 0;
}

/* rate-pps and rate-burst: the VM's packet budget in the data plane.  The
 * upper bound keeps burst * 1e9 (the bucket in 1e-9 packets) far from
 * overflowing 64 bits. */
static int vc_parse_rate(struct schema_ctx *c, json_t *v, const char *path, uint32_t *out)
{
	json_int_t n;

	if (!json_is_integer(v))
		return schema_expect(c, path, v, "an integer");
	n = json_integer_value(v);
	if (n < 1 || n > IMDS_RATE_MAX)
		return schema_fail(c, path, "%" JSON_INTEGER_FORMAT " is out of range 1..%d", n, IMDS_RATE_MAX);
	*out = (uint32_t)n;
	return 0;
}

static int vc_parse_rate_pps(struct schema_ctx *c, void *target, json_t *v, const char *path)
{
	return vc_parse_rate(c, v, path, &((struct vm_desc *)target)->rate_pps);
}

static int vc_parse_rate_burst(struct schema_ctx *c, void *target, json_t *v, const char *path)
{
	return vc_parse_rate(c, v, path, &((struct vm_desc *)target)->rate_burst);
}

static int vc_parse_request_rate(struct schema_ctx *c, void *target, json_t *v, const char *path)
{
	return vc_parse_rate(c, v, path, &((struct vm_desc *)target)->request_rate);
}

static int vc_parse_request_burst(struct schema_ctx *c, void *target, json_t *v, const char *path)
{
	return vc_parse_rate(c, v, path, &((struct vm_desc *)target)->request_burst);
}

static int vc_parse_bounded(struct schema_ctx *c, json_t *v, const char *path, json_int_t lo, json_int_t hi, uint32_t *out)
{
	json_int_t n;

	if (!json_is_integer(v))
		return schema_expect(c, path, v, "an integer");
	n = json_integer_value(v);
	if (n < lo || n > hi)
		return schema_fail(c, path, "%" JSON_INTEGER_FORMAT " is out of range %" JSON_INTEGER_FORMAT
			       "..%" JSON_INTEGER_FORMAT, n, lo, hi);
	*out = (uint32_t)n;
	return 0;
}

static int vc_parse_max_conns(struct schema_ctx *c, void *target, json_t *v, const char *path)
{
	return vc_parse_bounded(c, v, path, 1, IMDS_MAX_CONNS_LIMIT, &((struct vm_desc *)target)->max_conns);
}

/* EC2 caps user data at 16 KiB; an operator may allow more for one VM. */
static int vc_parse_user_data_max(struct schema_ctx *c, void *target, json_t *v, const char *path)
{
	return vc_parse_bounded(c, v, path, VMCONF_USER_DATA_MAX, VMCONF_USER_DATA_MAX_LIMIT,
				&((struct vm_desc *)target)->user_data_max);
}

/* A string option with two values; *out = (value == yes). */
static int vc_parse_choice(struct schema_ctx *c, json_t *v, const char *path, const char *yes, const char *no, bool *out)
{
	char q[SCHEMA_QUOTE_MAX];

	if (!json_is_string(v))
		return schema_expect(c, path, v, "a string");
	if (!strcmp(json_string_value(v), yes) || !strcmp(json_string_value(v), no)) {
		*out = !strcmp(json_string_value(v), yes);
		return 0;
	}
	schema_quote_json(v, q);
	return schema_fail(c, path, "%s is not \"%s\" or \"%s\"", q, yes, no);
}

/* EC2's InstanceMetadataTags option. */
static int vc_parse_metadata_tags(struct schema_ctx *c, void *target, json_t *v, const char *path)
{
	return vc_parse_choice(c, v, path, "enabled", "disabled", &((struct vm_desc *)target)->metadata_tags);
}

/* Token PUTs carrying Forwarded or Via (proxy headers beyond EC2's
 * X-Forwarded-For check): rejected unless "allow". */
static int vc_parse_proxied(struct schema_ctx *c, void *target, json_t *v, const char *path)
{
	return vc_parse_choice(c, v, path, "allow", "reject", &((struct vm_desc *)target)->allow_proxied);
}

/* How a VM without a "port" gets one: never (pinned, the default: it waits
 * for `imds-loadmap bind`) or from its first verified packet (unsafe: whoever
 * speaks first with its MAC and IPv4 takes it; docs/design.md). */
static int vc_parse_port_binding(struct schema_ctx *c, void *target, json_t *v, const char *path)
{
	return vc_parse_choice(c, v, path, "first-use", "pinned", &((struct vm_desc *)target)->first_use);
}

/* A VM that routes IPv6 for others (docs/ipv6.md): its Router
 * Advertisements and Redirects are not dropped. */
static int vc_parse_ipv6_router(struct schema_ctx *c, void *target, json_t *v, const char *path)
{
	if (!json_is_boolean(v))
		return schema_expect(c, path, v, "true or false");
	((struct vm_desc *)target)->ipv6_router = json_is_true(v);
	return 0;
}

static const struct schema_field vc_option_fields[] = {
	{ "http-tokens", false, vc_parse_http_tokens },
	{ "hop-limit", false, vc_parse_hop_limit },
	{ "rate-pps", false, vc_parse_rate_pps },
	{ "rate-burst", false, vc_parse_rate_burst },
	{ "request-rate", false, vc_parse_request_rate },
	{ "request-burst", false, vc_parse_request_burst },
	{ "max-connections", false, vc_parse_max_conns },
	{ "instance-metadata-tags", false, vc_parse_metadata_tags },
	{ "proxied-token-requests", false, vc_parse_proxied },
	{ "user-data-max", false, vc_parse_user_data_max },
	{ "port-binding", false, vc_parse_port_binding },
	{ "ipv6-router", false, vc_parse_ipv6_router },
};

int vmconf_check_options(struct schema_ctx *c, void *target, json_t *v, const char *path)
{
	return schema_object(c, target, v, path, vc_option_fields,
			     sizeof(vc_option_fields) / sizeof(vc_option_fields[0]), "option");
}

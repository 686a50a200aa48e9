/* ec2_ctx.c: what the parts of the EC2 compiler share (ec2_ctx.h): the
 * messages for the builder's errors, leaf bodies, and lookups in the
 * operator's meta-data. */
#include "compile/ec2_ctx.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "lib/awsjson.h"

int ec2_fail_msg(struct ec2_ctx *c, const char *json_sub, const char *why)
{
	snprintf(c->err, c->errlen, "%s%s: %s", c->vm->json_path, json_sub, why);
	return -EINVAL;
}

/* Messages for the builder's errors; vmconf.c has checked most of this
 * already, so these are the last line of defence. */
int ec2_fail(struct ec2_ctx *c, const char *json_sub, int rc)
{
	if (rc == -ENOMEM)
		return rc;
	if (rc == -EEXIST)
		return ec2_fail_msg(c, json_sub, "conflicts with another entry of the metadata tree");
	if (rc == -EINVAL)
		return ec2_fail_msg(c, json_sub, "cannot be a metadata tree path (empty, '.' or '..' segment, or too long)");
	return ec2_fail_msg(c, json_sub, "cannot be compiled");
}

/* --- leaves --- */

/* A leaf body: strings as given, numbers as JSON writes them, arrays of
 * strings one per line (EC2's multi-valued leaves, e.g. security-groups). */
int ec2_leaf_body(const json_t *v, struct outbuf *body)
{
	char num[40];
	size_t i;
	json_t *el;

	if (json_is_string(v))
		return outbuf_append(body, json_string_value(v), json_string_length(v));
	if (json_is_number(v)) {
		awsjson_number(v, num, sizeof(num));
		return outbuf_puts(body, num);
	}
	if (!json_is_array(v))
		return -EINVAL;
	json_array_foreach(v, i, el) {
		if (!json_is_string(el))
			return -EINVAL;
		if ((i && outbuf_append(body, "\n", 1)) ||
		    outbuf_append(body, json_string_value(el), json_string_length(el)))
			return -ENOMEM;
	}
	return 0;
}

/* --- lookups --- */

int ec2_given_text(const struct vm_desc *vm, const char *path, char *out, size_t cap)
{
	const json_t *v = vmconf_meta_lookup(vm, path);
	struct outbuf body = { 0 };
	int ok = 0;

	if (v && !json_is_object(v) && !ec2_leaf_body(v, &body) && body.len < cap) {
		memcpy(out, body.data ? body.data : "", body.len);
		out[body.len] = '\0';
		ok = 1;
	}
	outbuf_free(&body);
	return ok;
}

/* Region from an availability zone, as botocore derives it: "eu-west-1a"
 * minus its last letter. */
static int ec2_region_from_az(const struct vm_desc *vm, char *out, size_t cap)
{
	char az[256], last;
	size_t len;

	if (!ec2_given_text(vm, "placement/availability-zone", az, sizeof(az)))
		return 0;
	len = strlen(az);
	last = len ? az[len - 1] : '\0';
	if (len < 2 || len > cap || !((last >= 'a' && last <= 'z') || (last >= 'A' && last <= 'Z')))
		return 0;
	memcpy(out, az, len - 1);
	out[len - 1] = '\0';
	return 1;
}

int ec2_region(const struct vm_desc *vm, char *out, size_t cap)
{
	return ec2_given_text(vm, "placement/region", out, cap) || ec2_region_from_az(vm, out, cap);
}

const char *ec2_account_id(const struct vm_desc *vm)
{
	char path[96], mac[18];
	const json_t *v;

	if (vm->iam)
		return vm->iam->account_id;
	vmconf_format_mac(vm->mac, mac);
	snprintf(path, sizeof(path), "network/interfaces/macs/%s/owner-id", mac);
	v = vmconf_meta_lookup(vm, path);
	return v && json_is_string(v) ? json_string_value(v) : NULL;
}

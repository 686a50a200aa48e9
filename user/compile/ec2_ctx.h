/* ec2_ctx.h: what the parts of the EC2 compiler share (ec2.c: the
 * operator's meta-data, keys, user-data, identity document; ec2_derive.c:
 * values derived from the VM's identity; ec2_iam.c: iam/ and tags/): the
 * compile context, its messages and lookups in the VM's description.
 * Not for use outside ec2*.c. */
#ifndef IMDS_EC2_CTX_H
#define IMDS_EC2_CTX_H
#include <jansson.h>
#include <netinet/in.h>
#include <stddef.h>

#include "compile/vmconf_desc.h"
#include "lib/flavor_layout.h" /* EC2_TREE_PREFIX */
#include "lib/outbuf.h"
#include "lib/tree.h"

#define EC2_META EC2_TREE_PREFIX "meta-data/"
#define EC2_JSON_PATH_MAX 2048

struct ec2_ctx {
	struct tree_builder *b;
	const struct vm_desc *vm;
	char *err;
	size_t errlen;
	char mac[18];
	char ipv4[INET_ADDRSTRLEN];
	/* the meta-data walk: current tree path and JSON path */
	char tree[TREE_PATH_MAX + 2];
	size_t tlen;
	char json[EC2_JSON_PATH_MAX];
	size_t jlen;
};

/* "vms[N]<json_sub>: why"; returns -EINVAL. */
int ec2_fail_msg(struct ec2_ctx *c, const char *json_sub, const char *why);
/* A builder error as a message naming json_sub; -ENOMEM passes through. */
int ec2_fail(struct ec2_ctx *c, const char *json_sub, int rc);

/* The operator's leaf at `path` as its body text in `out`: 1, or 0 if
 * absent, a directory, or not shorter than `cap`. */
int ec2_given_text(const struct vm_desc *vm, const char *path, char *out, size_t cap);
/* A leaf value as its body text: strings as given, numbers as JSON writes
 * them, arrays of strings one per line.  0, -EINVAL (not a leaf), -ENOMEM. */
int ec2_leaf_body(const json_t *v, struct outbuf *body);

/* The VM's account id (iam section, else the given owner-id of its
 * interface), or NULL. */
const char *ec2_account_id(const struct vm_desc *vm);
/* The region: given placement/region, else the zone minus its last letter.
 * 1 and `out` filled, or 0. */
int ec2_region(const struct vm_desc *vm, char *out, size_t cap);

#endif

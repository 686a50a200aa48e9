/* ec2.h: the EC2 flavor of a VM's tree, everything under "ec2/" (the server
 * maps "/latest/..." and every dated version onto it):
 *   ec2/                                  "dynamic\nmeta-data[\nuser-data]"
 *   ec2/meta-data/...                     the VM's "meta-data" object, plus
 *                                         the categories every EC2 instance
 *                                         has, derived from its identity
 *                                         (ec2_derive.c; given keys win)
 *   ec2/meta-data/public-keys/            "0=name\n1=other", N/openssh-key
 *   ec2/meta-data/iam/                    info, security-credentials/<role>
 *                                         (and the unlisted -extended/<role>)
 *                                         from the "iam" section (ec2_iam.c)
 *   ec2/meta-data/tags/instance/<key>     the "tags", only when enabled
 *   ec2/user-data                         octet-stream, only when given
 *   ec2/dynamic/instance-identity/document
 * Details and the rules for each value: docs/vm-schema.md. */
#ifndef IMDS_EC2_H
#define IMDS_EC2_H
#include <stddef.h>

#include "lib/flavor_layout.h" /* EC2_TREE_PREFIX */
#include "lib/outbuf.h"
#include "lib/tree.h"
#include "compile/vmconf_desc.h"

/* Adds the VM's EC2 nodes to `b`.  0, -EINVAL (err names the JSON path) or
 * -ENOMEM. */
int ec2_compile(struct tree_builder *b, const struct vm_desc *vm, char *err, size_t errlen);

/* The instance identity document in EC2's layout.  0 or -ENOMEM. */
int ec2_identity_document(const struct vm_desc *vm, struct outbuf *out);

#endif

/* ec2_derive.h: the EC2 categories a real instance always has, derived
 * from the VM's identity where the operator's meta-data gives none
 * (ec2_derive.c; docs/vm-schema.md "Derived values"). */
#ifndef IMDS_EC2_DERIVE_H
#define IMDS_EC2_DERIVE_H
#include "compile/ec2_ctx.h"

/* Adds the derived leaves below ec2/meta-data/.  0, -EINVAL (message in
 * c->err) or -ENOMEM. */
int ec2_add_derived(struct ec2_ctx *c);

#endif

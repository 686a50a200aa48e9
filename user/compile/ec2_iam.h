/* ec2_iam.h: the VM's "iam" section as EC2's iam/ category and its "tags"
 * as tags/instance/ (ec2_iam.c). */
#ifndef IMDS_EC2_IAM_H
#define IMDS_EC2_IAM_H
#include "compile/ec2_ctx.h"

/* Each: 0 (nothing to add included), -EINVAL (message in c->err) or
 * -ENOMEM. */
int ec2_add_iam(struct ec2_ctx *c);
int ec2_add_tags(struct ec2_ctx *c);

#endif

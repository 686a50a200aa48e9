/* vmconf_iam.h: a VM record's "iam" section (docs/vm-schema.md): the
 * instance profile and the role's credentials, into struct vm_iam. */
#ifndef IMDS_VMCONF_IAM_H
#define IMDS_VMCONF_IAM_H
#include "compile/vmconf_desc.h"
#include "lib/schema.h"

/* What the check reads from schema_ctx.env. */
struct vmconf_env {
	char now[VMCONF_TIME_LEN + 1]; /* load time, the default "last-updated" */
};

/* A schema check: `target` is the struct vm_desc whose iam it allocates
 * (freed by vmconf_free_iam, also after an error).  Checked after
 * "meta-data", which must not describe iam/ too. */
schema_check_fn vmconf_check_iam;
void vmconf_free_iam(struct vm_iam *iam);

#endif

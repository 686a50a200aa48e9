/* vmconf_ec2.h: the fields of a VM record that EC2 serves (identity,
 * options, meta-data, user-data, public-keys, iam, tags;
 * docs/vm-schema.md), as a schema table whose checks fill the struct
 * vm_desc passed as target.  The other flavors' sections are not here:
 * the loader adds a row per flavor (flavor_table.h). */
#ifndef IMDS_VMCONF_EC2_H
#define IMDS_VMCONF_EC2_H
#include <stddef.h>

#include "compile/vmconf_desc.h"
#include "lib/schema.h"

extern const struct schema_field vmconf_ec2_fields[];
extern const size_t vmconf_ec2_nfields;

#endif

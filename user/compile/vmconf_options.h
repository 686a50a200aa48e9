/* vmconf_options.h: a VM record's "options" (docs/vm-schema.md): the
 * per-VM knobs of the data plane and the server. */
#ifndef IMDS_VMCONF_OPTIONS_H
#define IMDS_VMCONF_OPTIONS_H
#include "compile/vmconf_desc.h"
#include "lib/schema.h"

/* A schema check: `target` is the struct vm_desc the options go into. */
schema_check_fn vmconf_check_options;

#endif

/* compile.h: turns one VM description into its tree image (every flavor
 * the VM is served in).  Pure: no maps, no clock. */
#ifndef IMDS_COMPILE_H
#define IMDS_COMPILE_H
#include <stddef.h>

#include "tree.h"
#include "vmconf.h"

/* *image is malloc'ed.  0, -EINVAL (err says why, naming the JSON path) or
 * -ENOMEM.  The image header gets `meta` (may be NULL) with instance_id,
 * http_tokens and hop_limit taken from `vm`. */
int vm_compile(const struct vm_desc *vm, const struct tree_meta *meta, void **image, size_t *len, char *err,
	       size_t errlen);

#endif

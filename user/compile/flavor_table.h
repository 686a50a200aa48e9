/* flavor_table.h: the metadata flavors besides EC2, one row each: the
 * section of the VM record it is served from, its check and its compiler.
 * A new flavor on the compile side is a file (its check and compile) and
 * a row.
 *
 * A flavor's request routing is not in the row: routes are the server's
 * (http/), and imdsd must not link the compiler (it only reads tree
 * images, lib/flavor_layout.h).  So the server keeps its own table of
 * routes, joined to this one only by the tree layout. */
#ifndef IMDS_FLAVOR_TABLE_H
#define IMDS_FLAVOR_TABLE_H
#include <stddef.h>

#include "compile/flavors.h"
#include "compile/vmconf_desc.h"
#include "lib/schema.h"
#include "lib/tree.h"

struct flavor {
	const char *name;	/* the VM record's section, e.g. "gce" */
	schema_check_fn *check; /* the section; target: the struct vm_desc */
	int (*compile)(struct tree_builder *b, const struct flavor_common *fc, char *err, size_t errlen);
};

extern const struct flavor flavor_table[];
extern const size_t flavor_count;

/* Adds the nodes of every flavor whose section `vm`'s record has to `b`.
 * 0, -EINVAL (err names the JSON path) or -ENOMEM. */
int flavors_compile(struct tree_builder *b, const struct vm_desc *vm, char *err, size_t errlen);

#endif

/* flavors.h: the OpenStack, GCE and Azure flavors of a VM's metadata, from
 * the same VM record as EC2.  Each flavor compiles into its own subtree of
 * the VM's tree image ("openstack/", "gce/", "azure/") and has its own
 * request rules (flavor_route.h).  Schema: docs/vm-schema.md. */
#ifndef IMDS_FLAVORS_H
#define IMDS_FLAVORS_H
#include <jansson.h>
#include <stddef.h>

#include "tree.h"
#include "vmconf.h"

/* Validates a VM's flavor section, `flavor` being "openstack", "gce" or
 * "azure", found at JSON path `path` (e.g. "vms[2].gce").  0, or -EINVAL
 * with bad_path set to the JSON path of the offending value (for its
 * line:col) and msg to the reason, without the path. */
int flavors_check(const char *flavor, const json_t *section, const char *path, char *bad_path, size_t bad_cap,
		  char *msg, size_t msg_cap);

/* Adds every non-EC2 flavor's nodes for `vm` to `b`.  0, -EINVAL (err
 * names the JSON path) or -ENOMEM. */
int flavors_compile(struct tree_builder *b, const struct vm_desc *vm, char *err, size_t errlen);

#endif

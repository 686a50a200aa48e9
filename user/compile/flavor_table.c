/* flavor_table.c: the list of metadata flavors besides EC2
 * (flavor_table.h), and compiling a VM into each it is served in. */
#include "compile/flavor_table.h"

#include <errno.h>
#include <stdio.h>

/* In the order the sections are checked and compiled. */
const struct flavor flavor_table[] = {
	{ "openstack", openstack_check, openstack_compile },
	{ "gce", gce_check, gce_compile },
	{ "azure", azure_check, azure_compile },
};

const size_t flavor_count = sizeof(flavor_table) / sizeof(flavor_table[0]);

int flavors_compile(struct tree_builder *b, const struct vm_desc *vm, char *err, size_t errlen)
{
	struct flavor_common fc;
	int rc = 0;

	flavor_common_init(&fc, vm);
	/* A VM is served in a flavor when its record has that section, even
	 * an empty one: the flavors cost arena space (GCE and Azure keep
	 * precompiled JSON per directory), which EC2-only VMs should not pay. */
	for (size_t i = 0; !rc && i < flavor_count; i++) {
		if (!vm->record || !json_object_get(vm->record, flavor_table[i].name))
			continue;
		rc = flavor_table[i].compile(b, &fc, err, errlen);
		if (!rc)
			rc = flavor_add_no_token(b, vm, flavor_table[i].name);
	}
	if (rc && rc != -ENOMEM && errlen && !err[0])
		snprintf(err, errlen, "%s: the metadata flavors cannot be compiled", vm->json_path);
	return rc;
}

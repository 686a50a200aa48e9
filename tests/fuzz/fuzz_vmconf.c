/* fuzz_vmconf.c: the JSON loader (vmconf_parse) on arbitrary bytes, and
 * every VM it accepts compiled into a tree that must read back (vm_compile,
 * tree_view_init, a lookup of the EC2 root).  A refused input must say
 * why: its message is not empty and names the source. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "compile/compile.h"
#include "compile/vmconf.h"
#include "lib/tree.h"

#define VMCONF_SOURCE "fuzz.json"

static void vmconf_compile_each(const struct vm_set *set)
{
	struct tree_meta meta = { .slot = 1, .last_modified = 1700000000 };
	struct tree_entry entry;
	struct tree_view view;
	char err[512];

	for (size_t i = 0; i < set->n; i++) {
		void *img = NULL;
		size_t len = 0;

		err[0] = '\0';
		if (vm_compile(&set->vms[i], &meta, &img, &len, err, sizeof(err))) {
			if (!err[0])
				abort(); /* refused without a reason */
			continue;
		}
		if (tree_view_init(&view, img, len) || tree_lookup(&view, "ec2/", 4, &entry))
			abort(); /* the compiler wrote what the reader refuses */
		free(img);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
	struct conf_error err;
	struct vm_set set;

	if (vmconf_parse(VMCONF_SOURCE, (const char *)data, len, &set, &err)) {
		if (strncmp(err.text, VMCONF_SOURCE, strlen(VMCONF_SOURCE)) != 0)
			abort();
		return 0;
	}
	vmconf_compile_each(&set);
	vmconf_free(&set);
	return 0;
}

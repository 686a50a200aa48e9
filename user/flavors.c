/* flavors.c: the OpenStack, GCE and Azure flavors (flavors.h).  So far the
 * sections are only type-checked and nothing is compiled for them. */
#include "flavors.h"

#include <errno.h>
#include <stdio.h>

int flavors_check(const char *flavor, const json_t *section, const char *path, char *bad_path, size_t bad_cap,
		  char *msg, size_t msg_cap)
{
	(void)flavor;
	if (json_is_object(section))
		return 0;
	snprintf(bad_path, bad_cap, "%s", path);
	snprintf(msg, msg_cap, "expected an object");
	return -EINVAL;
}

int flavors_compile(struct tree_builder *b, const struct vm_desc *vm, char *err, size_t errlen)
{
	(void)b;
	(void)vm;
	(void)err;
	(void)errlen;
	return 0;
}

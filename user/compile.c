/* compile.c: one VM description -> its tree image, every flavor it is
 * served in (EC2 today; OpenStack, GCE and Azure will add their own
 * subtrees from the same record).  Pure: no maps, no clock. */
#include "compile.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "ec2.h"
#include "flavors.h"

/* The per-request facts in the header come from the VM itself, so that the
 * tree the server reads can never disagree with the description it was
 * compiled from; slot, generation and time come from the caller. */
static void compile_meta(const struct vm_desc *vm, const struct tree_meta *given, struct tree_meta *m)
{
	memset(m, 0, sizeof(*m));
	if (given)
		*m = *given;
	m->http_tokens = vm->http_tokens;
	m->hop_limit = vm->hop_limit;
	m->metadata_tags = vm->metadata_tags;
	m->allow_proxied = vm->allow_proxied;
	m->request_rate = vm->request_rate;
	m->request_burst = vm->request_burst;
	m->max_conns = vm->max_conns;
	memset(m->instance_id, 0, sizeof(m->instance_id));
	snprintf(m->instance_id, sizeof(m->instance_id), "%s", vm->instance_id);
}

int vm_compile(const struct vm_desc *vm, const struct tree_meta *meta, void **image, size_t *len, char *err,
	       size_t errlen)
{
	struct tree_builder *b = tree_builder_new();
	struct tree_meta m;
	int rc;

	if (errlen)
		err[0] = '\0';
	if (!b)
		return -ENOMEM;
	rc = ec2_compile(b, vm, err, errlen);
	if (!rc)
		rc = flavors_compile(b, vm, err, errlen);
	if (rc)
		goto out;
	compile_meta(vm, meta, &m);
	rc = tree_build(b, &m, image, len);
	if (rc == -E2BIG) {
		snprintf(err, errlen, "%s: the compiled metadata tree is larger than 4 GiB", vm->json_path);
		rc = -EINVAL;
	}
out:
	tree_builder_free(b);
	return rc;
}

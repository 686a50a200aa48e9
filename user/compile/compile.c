/* compile.c: one VM description -> its tree image, every flavor it is
 * served in (EC2 always; OpenStack, GCE and Azure when the record has their
 * section, flavors.c).  Pure: no maps, no clock (the signed
 * identity takes its time from the caller; only the DSA nonce is random). */
#include "compile/compile.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compile/ec2.h"
#include "compile/flavor_table.h"
#include "compile/identity.h"

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

static int compile_fill(struct outbuf *b, size_t len)
{
	int rc = outbuf_reserve(b, len + 1);

	if (!rc) {
		memset(b->data, '=', len);
		b->data[len] = '\0';
		b->len = len;
	}
	return rc;
}

/* Placeholder bodies of the bounded lengths: a tree of the same shape and
 * at least the size of the signed one, for the loader's arena planning. */
static int compile_placeholders(const struct identity_key *key, size_t doc_len, struct identity_sigs *sigs)
{
	struct identity_sig_lens lens;
	int rc;

	memset(sigs, 0, sizeof(*sigs));
	identity_sigs_bound(key, doc_len, &lens);
	rc = compile_fill(&sigs->signature, lens.signature);
	if (!rc)
		rc = compile_fill(&sigs->pkcs7, lens.pkcs7);
	if (!rc)
		rc = compile_fill(&sigs->rsa2048, lens.rsa2048);
	if (rc)
		identity_sigs_free(sigs);
	return rc;
}

/* The signatures cover the very bytes ec2_compile serves as the document:
 * ec2_identity_document renders the same VM the same way every time. */
static int compile_identity(struct tree_builder *b, const struct vm_desc *vm, const struct identity_key *key,
			    bool sign, int64_t signing_time, char *err, size_t errlen)
{
	static const char dir[] = EC2_TREE_PREFIX "dynamic/instance-identity/";
	struct outbuf doc = { 0 };
	struct identity_sigs sigs;
	const struct {
		const char *name;
		const struct outbuf *body;
	} leaves[] = {
		{ "signature", &sigs.signature },
		{ "pkcs7", &sigs.pkcs7 },
		{ "rsa2048", &sigs.rsa2048 },
	};
	char path[sizeof(dir) + 16];
	int rc = ec2_identity_document(vm, &doc);

	if (rc)
		return rc;
	if (sign)
		rc = identity_sign(key, doc.data, doc.len, signing_time, &sigs);
	else
		rc = compile_placeholders(key, doc.len, &sigs);
	outbuf_free(&doc);
	if (rc == -EIO || rc == -EINVAL)
		snprintf(err, errlen, "%s: cannot sign the instance identity document", vm->json_path);
	if (rc)
		return rc == -ENOMEM ? rc : -EIO;
	for (size_t i = 0; !rc && i < sizeof(leaves) / sizeof(leaves[0]); i++) {
		snprintf(path, sizeof(path), "%s%s", dir, leaves[i].name);
		rc = tree_add_leaf(b, path, leaves[i].body->data, leaves[i].body->len, CT_TEXT);
	}
	identity_sigs_free(&sigs);
	return rc;
}

static int compile_tree(const struct vm_desc *vm, const struct tree_meta *meta, const struct identity_key *key,
			bool sign, void **image, size_t *len, char *err, size_t errlen)
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
	if (!rc && key)
		rc = compile_identity(b, vm, key, sign, meta ? (int64_t)meta->last_modified : 0, err, errlen);
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

int vm_compile(const struct vm_desc *vm, const struct tree_meta *meta, void **image, size_t *len, char *err,
	       size_t errlen)
{
	return vm_compile_signed(vm, meta, NULL, image, len, err, errlen);
}

int vm_compile_signed(const struct vm_desc *vm, const struct tree_meta *meta, const struct identity_key *key,
		      void **image, size_t *len, char *err, size_t errlen)
{
	return compile_tree(vm, meta, key, true, image, len, err, errlen);
}

int vm_compile_bound(const struct vm_desc *vm, const struct tree_meta *meta, const struct identity_key *key,
		     size_t *len, char *err, size_t errlen)
{
	void *image = NULL;
	int rc = compile_tree(vm, meta, key, false, &image, len, err, errlen);

	free(image);
	return rc;
}

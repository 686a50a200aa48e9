/* compile.h: turns one VM description into its tree image (every flavor
 * the VM is served in).  Pure: no maps, no clock. */
#ifndef IMDS_COMPILE_H
#define IMDS_COMPILE_H
#include <stddef.h>

#include "lib/tree.h"
#include "compile/vmconf.h"

/* *image is malloc'ed.  0, -EINVAL (err says why, naming the JSON path) or
 * -ENOMEM.  The image header gets `meta` (may be NULL) with instance_id,
 * http_tokens and hop_limit taken from `vm`. */
int vm_compile(const struct vm_desc *vm, const struct tree_meta *meta, void **image, size_t *len, char *err,
	       size_t errlen);

struct identity_key;

/* vm_compile, and with `key` the EC2 tree also carries
 * dynamic/instance-identity/{signature,pkcs7,rsa2048} over the VM's identity
 * document (identity.h), with signingTime meta->last_modified (0 without
 * meta).  key NULL: exactly vm_compile.  -EIO (err says so) when OpenSSL
 * cannot sign. */
int vm_compile_signed(const struct vm_desc *vm, const struct tree_meta *meta, const struct identity_key *key,
		      void **image, size_t *len, char *err, size_t errlen);

/* An upper bound of the length of vm_compile_signed's image, found without
 * signing (a DSA signature's length depends on its nonce, and signing is
 * the slow part): the loader plans arena room with it.  Errors as
 * vm_compile_signed. */
int vm_compile_bound(const struct vm_desc *vm, const struct tree_meta *meta, const struct identity_key *key,
		     size_t *len, char *err, size_t errlen);

#endif

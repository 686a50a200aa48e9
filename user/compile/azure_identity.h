/* azure_identity.h: the Azure flavor's managed identities
 * ("azure"."managed-identities" of a VM record): their check and their
 * tokens compiled into "azure-mi/" (lib/flavor_layout.h), which
 * http/route_azure_identity.c serves at /metadata/identity/oauth2/token.
 * Schema and request rules: docs/flavors.md. */
#ifndef IMDS_AZURE_IDENTITY_H
#define IMDS_AZURE_IDENTITY_H
#include <stddef.h>

#include "compile/flavors.h"

/* The "managed-identities" value (a field of azure.c's table). */
schema_check_fn azure_check_identities;

/* Adds the VM's identities and their tokens below AZURE_MI_PREFIX; nothing
 * without "managed-identities".  0, -ENOMEM, or -EINVAL with err set. */
int azure_compile_identities(struct tree_builder *b, const struct flavor_common *fc, char *err, size_t errlen);

#endif

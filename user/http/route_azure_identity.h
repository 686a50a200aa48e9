/* route_azure_identity.h: Azure IMDS's managed identity token endpoint,
 * GET /metadata/identity/oauth2/token, over the "azure-mi/" subtree
 * (lib/flavor_layout.h).  route_azure.c applies the Metadata header, proxy
 * and api-version rules first, with this endpoint's error bodies.  Rules
 * and sources: docs/flavors.md. */
#ifndef IMDS_ROUTE_AZURE_IDENTITY_H
#define IMDS_ROUTE_AZURE_IDENTITY_H
#include "http/route_flavor.h"

#define AZURE_MI_TOKEN_PATH "/metadata/identity/oauth2/token"
#define AZURE_MI_MIN_VERSION "2018-02-01" /* the first api-version with tokens */

/* An error as the token endpoint writes them:
 * {"error":"<error>","error_description":"<description>"}. */
void azure_mi_error(struct fr_call *f, int status, const char *error, const char *description);

/* The token of the identity the query names (client_id, object_id,
 * msi_res_id or mi_res_id; else the VM's default) for its resource.
 * 0 with the reply set, or -ENOMEM. */
int azure_mi_route(struct fr_call *f);

#endif

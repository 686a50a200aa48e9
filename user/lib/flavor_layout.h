/* flavor_layout.h: where each flavor lives in a VM's tree image, the
 * contract between the compiler that writes the image (compile/) and the
 * routes that read it (http/).  Schema and request rules: docs/flavors.md.
 *
 * Tree layout (no prefix is a prefix of another):
 *   ec2/meta-data/...                 EC2 (lib/tree.h); the router maps every
 *                                     version of /<version>/ onto it
 *   openstack/meta_data.json ...      one copy; the router maps every
 *                                     version of /openstack/<v>/ onto it
 *   gce/instance/...                  /computeMetadata/v1/... (listings,
 *                                     leaves as text)
 *   gce-json/<dir>@json               that directory as ?recursive=true JSON
 *                                     (recursive alt=text is made per
 *                                     request from the listings)
 *   gce-json/<leaf>@json              a leaf that is not a string, as
 *                                     alt=json (a string is quoted per
 *                                     request)
 *   azure/instance/...                /metadata/instance/... (format=text)
 *   azure-json/instance/<dir>@json    the instance document and each of
 *                                     its directories (JSON is the default)
 *   azure-mi/...                      the managed identities' tokens
 *                                     (/metadata/identity/oauth2/token):
 *     default                         the identity chosen without an id
 *                                     ("system", "user-N"; "" when several
 *                                     user-assigned and no system-assigned)
 *     by/<param>/<id>                 client_id, object_id and msi_res_id ->
 *                                     that identity's name
 *     tenant                          the tenant id, for error messages
 *     <identity>/<resource>           "<expires-on> <client-id> <token>"
 *                                     (ids and resources as azure_mi_segment
 *                                     writes them)
 *   no-token/<section>                present when the section says
 *                                     "serve-without-token": true; a
 *                                     tokens-required VM's flavor is
 *                                     refused without it
 * Only the flavors whose section the VM record has are compiled.
 * "@" never occurs in a path segment of the flavor data (GCE attribute keys
 * are [A-Za-z0-9_-], Azure's keys are fixed), so the precompiled documents
 * cannot collide with data.
 */
#ifndef IMDS_FLAVOR_LAYOUT_H
#define IMDS_FLAVOR_LAYOUT_H
#include <stddef.h>

#define EC2_TREE_PREFIX "ec2/"
#define OPENSTACK_PREFIX "openstack/"
#define GCE_PREFIX "gce/"
#define GCE_JSON_PREFIX "gce-json/"
#define AZURE_PREFIX "azure/"
#define AZURE_JSON_PREFIX "azure-json/"
#define AZURE_MI_PREFIX "azure-mi/"
#define FLAVOR_JSON_LEAF "@json"
#define FLAVOR_NO_TOKEN_PREFIX "no-token/"

/* GCE's JSON name of path segment `key` whose parent is `parent`
 * ("machine-type" -> "machineType"; attribute keys and e-mails kept): the
 * compiler names the members of the precompiled documents with it. */
void gce_json_key(const char *parent, const char *key, char *out, size_t cap);

/* How an identity's id or a token's resource becomes one path segment of
 * "azure-mi/", so that the compiler's keys and a request's look-up agree:
 * ids (GUIDs, Azure resource IDs) compare without regard to case; a
 * resource drops one trailing '/' ("https://management.azure.com/" is
 * "https://management.azure.com", which @azure/identity asks for); '/' and
 * '%' are written %2F and %25.  The length written (without the NUL), or
 * -1 when it does not fit in cap. */
enum azure_mi_kind {
	AZURE_MI_ID,
	AZURE_MI_RESOURCE,
};
int azure_mi_segment(enum azure_mi_kind kind, const char *s, size_t len, char *out, size_t cap);

#endif

/* flavors.h: what the OpenStack, GCE and Azure flavors of a VM's metadata
 * share (flavors.c), and each flavor's entry points (openstack.c, gce.c,
 * azure.c; listed in flavor_table.c).  Each flavor checks its section of
 * the VM record (lib/schema.h) and compiles into its own subtree of the
 * VM's tree image (its layout: lib/flavor_layout.h); its request rules are
 * the server's (http/route_openstack.c, route_gce.c, route_azure.c).
 * Schema and request rules: docs/flavors.md.
 */
#ifndef IMDS_FLAVORS_H
#define IMDS_FLAVORS_H
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "lib/flavor_layout.h"
#include "lib/outbuf.h"
#include "lib/schema.h"
#include "lib/tree.h"
#include "compile/vmconf_desc.h"

/* --- shared by the flavors (flavors.c, openstack.c, gce.c, azure.c,
 * flavor_table.c); not for other callers --- */

/* The fields every flavor shares, resolved once from the VM record. */
struct flavor_common {
	const struct vm_desc *vm;
	const char *name;	   /* "name", else the instance-id */
	const char *hostname;	   /* meta-data hostname, local-hostname, else name */
	const char *zone;	   /* meta-data placement.availability-zone or NULL */
	const char *instance_type; /* meta-data instance-type or NULL */
	long long launch_index;	   /* meta-data ami-launch-index, else 0 */
	char mac[18];		   /* lower case, colons */
	char ipv4[16];
	char netmask[16]; /* the /24 the flavors assume, "255.255.255.0" */
	char subnet[16];  /* ipv4 & netmask */
	bool user_data_utf8; /* the user data is valid UTF-8 text */
};

void flavor_common_init(struct flavor_common *fc, const struct vm_desc *vm);

/* Reusable checks of a section's values (schema_check_fn; the target is
 * not used). */
/* text: 1..255 bytes, no control characters; id: text without '/' or
 * spaces; uint: an integer >= 0; text_list: [text, ...]. */
schema_check_fn flavor_check_text;
schema_check_fn flavor_check_id;
schema_check_fn flavor_check_uint;
schema_check_fn flavor_check_text_list;
schema_check_fn flavor_check_object;
schema_check_fn flavor_check_bool;
/* Every section's "serve-without-token" (docs/flavors.md, "Tokens and the
 * hop limit"), the first row of each flavor's field table. */
#define FLAVOR_NO_TOKEN_FIELD { "serve-without-token", false, flavor_check_bool }
/* {"key": "string"}: keys 1..255 bytes, values strings up to `max_value`
 * bytes.  key_chars NULL allows any key without control characters; else
 * it is GCE's alphabet (letters, digits, '-', '_'), which the message names. */
int flavor_check_string_map(struct schema_ctx *c, const json_t *v, const char *path, const char *key_chars,
			    size_t max_value);

/* An OAuth 2.0 bearer token an operator gives (GCE's account tokens,
 * Azure's managed identities): 1 to `max` bytes of printable ASCII without
 * spaces, '"' or '\\' (RFC 6750's b64token and more), so that it goes into
 * a JSON answer as it is. */
int flavor_check_access_token(struct schema_ctx *c, const json_t *v, const char *path, size_t max);
/* A UTC time "YYYY-MM-DDTHH:MM:SSZ", as IAM credentials give expiries. */
schema_check_fn flavor_check_utc_time;
/* Such a time (checked) in unix seconds, or -1. */
long long flavor_utc_seconds(const json_t *v);

/* Compiling. */
/* Appends base64 (RFC 4648, padded) of data.  0 or -ENOMEM. */
int flavor_base64(const void *data, size_t len, struct outbuf *out);
int flavor_add(struct tree_builder *b, const char *prefix, const char *path, const void *body, size_t len,
	       enum tree_ctype ct);
int flavor_add_json(struct tree_builder *b, const char *prefix, const char *path, const json_t *doc, size_t flags,
		    enum tree_ctype ct);

/* Maps a JSON document onto a subtree: an object is a directory, an array
 * of objects a directory of "0/", "1/", ... (Azure: every array), any other
 * value a leaf (strings as is, numbers and booleans as JSON writes them,
 * arrays of strings one per line).  Each directory also gets its JSON form
 * under json_prefix as "<dir>/@json" (keys renamed by json_key when set),
 * so that a request only looks its document up (issue 12: parsing one per
 * request let one VM's large attributes saturate the workers). */
struct flavor_emit {
	struct tree_builder *b;
	const char *prefix;
	const char *json_prefix;
	size_t json_flags;
	bool arrays_are_dirs;
	/* Leaves that are not strings also get their JSON form, as
	 * "<leaf>@json" (GCE's alt=json: 1001, ["scope"]); a string's is its
	 * text, quoted when asked for. */
	bool leaf_json;
	/* The JSON name of `key` whose parent object is called `parent` ("" at
	 * the root); NULL keeps keys. */
	void (*json_key)(const char *parent, const char *key, char *out, size_t cap);
};

int flavor_emit_tree(const struct flavor_emit *e, const json_t *root);

/* The member `key` of the VM's `flavor` section, or NULL. */
const json_t *flavor_section_get(const struct vm_desc *vm, const char *flavor, const char *key);
/* Adds FLAVOR_NO_TOKEN_PREFIX<flavor> when the section opts in.  0 or
 * -ENOMEM. */
int flavor_add_no_token(struct tree_builder *b, const struct vm_desc *vm, const char *flavor);

/* --- each flavor's entry points (a row of flavor_table.c) --- */

/* The VM record's section (target: the struct vm_desc). */
schema_check_fn openstack_check;
schema_check_fn gce_check;
schema_check_fn azure_check;

int openstack_compile(struct tree_builder *b, const struct flavor_common *fc, char *err, size_t errlen);
int gce_compile(struct tree_builder *b, const struct flavor_common *fc, char *err, size_t errlen);
int azure_compile(struct tree_builder *b, const struct flavor_common *fc, char *err, size_t errlen);

#endif

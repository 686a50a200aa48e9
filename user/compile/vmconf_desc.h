/* vmconf_desc.h: a VM's description as the compilers read it (struct
 * vm_desc), and the small readers every part shares: MAC addresses, the
 * operator's meta-data by path, credential times.  vmconf.h loads and
 * validates descriptions; this header is what the compilers need of them,
 * so that the checks (vmconf*.c) may use the flavor table (flavor_table.h)
 * whose compilers read struct vm_desc. */
#ifndef IMDS_VMCONF_DESC_H
#define IMDS_VMCONF_DESC_H
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "imds.h"

#define VMCONF_USER_DATA_MAX 16384	      /* raw bytes, as on EC2 */
#define VMCONF_USER_DATA_MAX_LIMIT 1048576 /* the most options.user-data-max allows */

struct vm_key {
	char *name;
	char *openssh_key;
};

/* "YYYY-MM-DDTHH:MM:SSZ": the only timestamp form botocore accepts for
 * credentials (strptime "%Y-%m-%dT%H:%M:%SZ"). */
#define VMCONF_TIME_LEN 20
#define VMCONF_ACCOUNT_LEN 12

/* The "iam" section: instance profile and role credentials (EC2's
 * iam/info and iam/security-credentials/<role>).  Strings owned. */
struct vm_iam {
	char *role;
	char *profile_arn;
	char *profile_id; /* NULL: derived from the ARN (ec2_iam.c) */
	char account_id[VMCONF_ACCOUNT_LEN + 1];   /* given, else the ARN's */
	char last_updated[VMCONF_TIME_LEN + 1]; /* given, else the load time */
	char *access_key_id;
	char *secret_access_key;
	char *token;
	char expiration[VMCONF_TIME_LEN + 1];
};

struct vm_desc {
	char instance_id[IMDS_INSTANCE_ID_MAX];
	uint8_t mac[6];
	uint32_t ipv4; /* network byte order */
	uint8_t ipv6[IMDS_VM_IPV6_MAX][16]; /* "ipv6": the VM's IPv6 addresses, in record order */
	uint8_t n_ipv6;
	bool ipv6_router; /* options."ipv6-router": its RAs and Redirects pass (docs/ipv6.md) */
	uint8_t http_tokens; /* enum imds_http_tokens */
	uint8_t hop_limit;   /* 1..64 */
	uint32_t rate_pps;   /* packet budget, 1..IMDS_RATE_MAX; 0 = default */
	uint32_t rate_burst; /* bucket size in packets; 0 = default */
	uint32_t request_rate;  /* HTTP requests/s (429 beyond); 0 = default */
	uint32_t request_burst; /* HTTP request bucket; 0 = default */
	uint32_t max_conns;	/* concurrent connections; 0 = default */
	uint32_t user_data_max; /* options.user-data-max; 0 = VMCONF_USER_DATA_MAX */
	bool metadata_tags;	/* "instance-metadata-tags": "enabled" */
	bool allow_proxied;	/* "proxied-token-requests": "allow" */
	bool first_use;		/* "port-binding": "first-use" (unsafe opt-in) */
	char port[IMDS_PORT_NAME_MAX]; /* "port": the bridge port it is pinned to; "" = none */
	char *name;		/* "name": common to every flavor; owned; NULL = instance-id */
	json_t *meta_data;   /* borrowed; NULL when absent */
	uint8_t *user_data;  /* owned, decoded; NULL when absent */
	size_t user_data_len;
	struct vm_key *keys; /* owned */
	size_t n_keys;
	struct vm_iam *iam;  /* owned; NULL when absent */
	json_t *tags;	     /* borrowed, validated: key -> string; NULL when absent */
	json_t *record; /* borrowed: the VM's whole object, for other flavors */
	char json_path[32]; /* "vms[3]", for messages */
};

/* 0 if `s` is exactly "YYYY-MM-DDTHH:MM:SSZ" and a real UTC date and
 * time, else -EINVAL. */
int vmconf_check_time(const char *s, size_t len);

/* The VM's meta-data value at `path`, relative to the record's "meta-data"
 * and '/'-separated ("placement/region"; a trailing '/' is ignored), or
 * NULL when absent or when a step is not an object. */
const json_t *vmconf_meta_lookup(const struct vm_desc *vm, const char *path);

/* "52:54:00:12:34:56" <-> bytes.  Parse: 0 or -EINVAL. */
int vmconf_parse_mac(const char *text, uint8_t mac[6]);
void vmconf_format_mac(const uint8_t mac[6], char out[18]);

#endif

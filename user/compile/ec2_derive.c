/* ec2_derive.c: the EC2 categories a real instance always has, filled in
 * from the VM's identity (instance-id, MAC, IPv4, zone, account) where the
 * operator's meta-data gives none.  Given keys win at any depth: a derived
 * leaf is added only where nothing was given at or above its path.
 * Values that depend on others (the interface's local-hostname, ami's
 * device, ...) use the operator's value when there is one, so the tree
 * never contradicts itself.  The rules are documented in docs/vm-schema.md
 * ("Derived values"). */
#include "compile/ec2_derive.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <openssl/evp.h>

#define ED_VALUE_MAX 512

/* Everything derived, computed once before any leaf is added. */
struct ec2_facts {
	char region[64];
	char zone[64];
	char partition[64];
	char domain[256];
	char local_hostname[1024];
	char hostname[1024];
	char public_ipv4[INET_ADDRSTRLEN];
	char public_hostname[512];
	char subnet_cidr[32];
	char vpc_cidr[32];
};

/* A stable synthetic AWS id ("eni-0123456789abcdef0"): prefix plus 17
 * hex digits of SHA-256 over `seed`, so the same VM (or subnet, or group)
 * gets the same id on every load and on every host. */
static void ed_synth_id(const char *prefix, const char *seed, char *out, size_t cap)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	char hex[18];

	if (!EVP_Digest(seed, strlen(seed), md, &mdlen, EVP_sha256(), NULL))
		memset(md, 0, sizeof(md));
	for (int i = 0; i < 17; i++)
		snprintf(hex + i, 2, "%x", (md[i / 2] >> (i % 2 ? 0 : 4)) & 0xf);
	snprintf(out, cap, "%s%s", prefix, hex);
}

/* The operator's leaf at `path` as text, else `fallback` (may be NULL:
 * then 0 and out empty). */
static int ed_text(const struct vm_desc *vm, const char *path, const char *fallback, char *out, size_t cap)
{
	out[0] = '\0';
	if (ec2_given_text(vm, path, out, cap))
		return 1;
	if (!fallback)
		return 0;
	snprintf(out, cap, "%s", fallback);
	return 1;
}

/* AWS partition and service domain of a region; given values win (the
 * public DNS name is built on the domain). */
static void ed_partition(const struct vm_desc *vm, struct ec2_facts *f)
{
	const char *partition = "aws", *domain = "amazonaws.com";

	if (!strncmp(f->region, "cn-", 3)) {
		partition = "aws-cn";
		domain = "amazonaws.com.cn";
	} else if (!strncmp(f->region, "us-gov-", 7)) {
		partition = "aws-us-gov";
	}
	ed_text(vm, "services/partition", partition, f->partition, sizeof(f->partition));
	ed_text(vm, "services/domain", domain, f->domain, sizeof(f->domain));
}

/* EC2's DNS names: "ip-10-0-0-1.ec2.internal" in us-east-1 (and when the
 * region is unknown), "ip-10-0-0-1.eu-west-1.compute.internal" elsewhere;
 * public "ec2-203-0-113-9.compute-1.amazonaws.com" in us-east-1,
 * "ec2-203-0-113-9.eu-west-1.compute.amazonaws.com" elsewhere. */
static void ed_dashed(const char *ipv4, char out[INET_ADDRSTRLEN])
{
	snprintf(out, INET_ADDRSTRLEN, "%s", ipv4);
	for (char *p = out; *p; p++)
		*p = *p == '.' ? '-' : *p;
}

static void ed_dns_names(const struct vm_desc *vm, struct ec2_facts *f, const char *ipv4)
{
	bool east1 = !f->region[0] || !strcmp(f->region, "us-east-1");
	char name[512], dashed[INET_ADDRSTRLEN];
	struct in_addr a;

	ed_dashed(ipv4, dashed);
	if (east1)
		snprintf(name, sizeof(name), "ip-%s.ec2.internal", dashed);
	else
		snprintf(name, sizeof(name), "ip-%s.%s.compute.internal", dashed, f->region);
	/* local-hostname and hostname stand in for each other when only one
	 * is given (the lab VMs give both). */
	if (!ed_text(vm, "local-hostname", NULL, f->local_hostname, sizeof(f->local_hostname)))
		ed_text(vm, "hostname", name, f->local_hostname, sizeof(f->local_hostname));
	ed_text(vm, "hostname", f->local_hostname, f->hostname, sizeof(f->hostname));
	if (!ed_text(vm, "public-ipv4", NULL, f->public_ipv4, sizeof(f->public_ipv4)) ||
	    inet_pton(AF_INET, f->public_ipv4, &a) != 1) {
		f->public_ipv4[0] = '\0';
		return;
	}
	ed_dashed(f->public_ipv4, dashed);
	if (east1)
		snprintf(name, sizeof(name), "ec2-%s.compute-1.%s", dashed, f->domain);
	else
		snprintf(name, sizeof(name), "ec2-%s.%s.compute.%s", dashed, f->region, f->domain);
	ed_text(vm, "public-hostname", name, f->public_hostname, sizeof(f->public_hostname));
}

/* The /24 holding the VM's address: the subnet when none is given. */
static void ed_cidrs(const struct vm_desc *vm, struct ec2_facts *f, const char *eni)
{
	uint32_t host = ntohl(vm->ipv4) & 0xffffff00u;
	char def[32], path[128];

	snprintf(def, sizeof(def), "%u.%u.%u.0/24", host >> 24, (host >> 16) & 0xff, (host >> 8) & 0xff);
	snprintf(path, sizeof(path), "%ssubnet-ipv4-cidr-block", eni);
	ed_text(vm, path, def, f->subnet_cidr, sizeof(f->subnet_cidr));
	snprintf(path, sizeof(path), "%svpc-ipv4-cidr-block", eni);
	ed_text(vm, path, f->subnet_cidr, f->vpc_cidr, sizeof(f->vpc_cidr));
}

static void ed_facts(const struct ec2_ctx *c, struct ec2_facts *f, const char *eni_rel)
{
	const struct vm_desc *vm = c->vm;

	memset(f, 0, sizeof(*f));
	ec2_region(vm, f->region, sizeof(f->region));
	ed_text(vm, "placement/availability-zone", NULL, f->zone, sizeof(f->zone));
	ed_partition(vm, f);
	ed_dns_names(vm, f, c->ipv4);
	ed_cidrs(vm, f, eni_rel);
}

/* EC2's zone id: the region's short name ("euw1" for eu-west-1, "apse2"
 * for ap-southeast-2) and the zone's letter as a number ("-az1" for a).
 * Real zone ids are shuffled per account; this mapping is stable and of
 * the right shape.  0 when the zone does not look like an AWS zone. */
static int ed_zone_id(const struct ec2_facts *f, char *out, size_t cap)
{
	static const struct {
		const char *word, *abbr;
	} words[] = {
		{ "northeast", "ne" }, { "northwest", "nw" }, { "southeast", "se" }, { "southwest", "sw" },
		{ "north", "n" },      { "south", "s" },      { "east", "e" },	     { "west", "w" },
		{ "central", "c" },    { "gov", "g" },	      { "iso", "i" },
	};
	char geo[8], dir1[16], dir2[16], num[4];
	size_t rlen = strlen(f->region), zlen = strlen(f->zone);
	const char *d[2] = { dir1, dir2 };
	char abbr[32];
	int parts;

	if (!rlen || zlen != rlen + 1 || strncmp(f->zone, f->region, rlen) || f->zone[rlen] < 'a' ||
	    f->zone[rlen] > 'z')
		return 0;
	parts = sscanf(f->region, "%7[a-z]-%15[a-z]-%15[a-z0-9]-%3[0-9]", geo, dir1, dir2, num);
	if (parts == 3) {
		if (strlen(dir2) >= sizeof(num))
			return 0;
		memcpy(num, dir2, strlen(dir2) + 1);
		parts = 1;
	} else if (parts == 4) {
		parts = 2;
	} else {
		return 0;
	}
	if (strspn(num, "0123456789") != strlen(num) || !num[0])
		return 0;
	snprintf(abbr, sizeof(abbr), "%s", geo);
	for (int i = 0; i < parts; i++) {
		size_t k = 0, n = sizeof(words) / sizeof(words[0]);

		while (k < n && strcmp(words[k].word, d[i]))
			k++;
		if (k == n)
			return 0;
		strncat(abbr, words[k].abbr, sizeof(abbr) - strlen(abbr) - 1);
	}
	snprintf(out, cap, "%s%s-az%d", abbr, num, f->zone[rlen] - 'a' + 1);
	return 1;
}

/* --- adding leaves --- */

/* Adds meta-data/<rel> = value unless something was given at or above it. */
static int ed_add(struct ec2_ctx *c, const char *rel, const char *value)
{
	char path[TREE_PATH_MAX + 1];
	int rc;

	if (snprintf(path, sizeof(path), EC2_META "%s", rel) >= (int)sizeof(path))
		return 0;
	rc = tree_add_leaf(c->b, path, value, strlen(value), CT_TEXT);
	return rc == -EEXIST ? 0 : rc;
}

static int ed_add_top(struct ec2_ctx *c, const struct ec2_facts *f)
{
	const struct vm_desc *vm = c->vm;
	char reservation[32];
	const struct {
		const char *rel, *value;
	} leaves[] = {
		{ "instance-id", vm->instance_id },
		{ "mac", c->mac },
		{ "local-ipv4", c->ipv4 },
		{ "ami-launch-index", "0" },
		/* what EC2 answers for EBS-backed AMIs */
		{ "ami-manifest-path", "(unknown)" },
		{ "instance-action", "none" },
		{ "instance-life-cycle", vmconf_meta_lookup(vm, "spot") ? "spot" : "on-demand" },
		{ "profile", "default-hvm" },
		{ "reservation-id", reservation },
		{ "hostname", f->hostname },
		{ "local-hostname", f->local_hostname },
		{ "public-hostname", f->public_ipv4[0] ? f->public_hostname : NULL },
		/* every EC2 instance is in at least one group */
		{ "security-groups", "default" },
		{ "services/domain", f->domain },
		{ "services/partition", f->partition },
		/* the JS SDK reads placement/region, botocore the zone */
		{ "placement/region", f->region[0] ? f->region : NULL },
		{ "events/maintenance/history", "[]" },
		{ "events/maintenance/scheduled", "[]" },
	};
	int rc = 0;

	ed_synth_id("r-", vm->instance_id, reservation, sizeof(reservation));
	for (size_t i = 0; !rc && i < sizeof(leaves) / sizeof(leaves[0]); i++)
		if (leaves[i].value)
			rc = ed_add(c, leaves[i].rel, leaves[i].value);
	return rc;
}

static int ed_add_placement(struct ec2_ctx *c, const struct ec2_facts *f)
{
	char zone_id[48];

	if (!ed_zone_id(f, zone_id, sizeof(zone_id)))
		return 0;
	return ed_add(c, "placement/availability-zone-id", zone_id);
}

/* The root device, and "ami" naming the same device unless given. */
static int ed_add_block_devices(struct ec2_ctx *c)
{
	char root[256];
	int rc;

	ed_text(c->vm, "block-device-mapping/root", "/dev/xvda", root, sizeof(root));
	rc = ed_add(c, "block-device-mapping/ami", root);
	return rc ? rc : ed_add(c, "block-device-mapping/root", root);
}

/* security-group-ids: one synthetic id per group name, in the same order. */
static int ed_group_ids(const struct vm_desc *vm, struct outbuf *ids, char *groups, size_t cap)
{
	char name[ED_VALUE_MAX], id[32];

	ed_text(vm, "security-groups", "default", groups, cap);
	for (const char *g = groups; *g;) {
		size_t n = strcspn(g, "\n");

		snprintf(name, sizeof(name), "%.*s", (int)n, g);
		ed_synth_id("sg-", name, id, sizeof(id));
		if (outbuf_printf(ids, "%s%s", ids->len ? "\n" : "", id))
			return -ENOMEM;
		g += n + (g[n] == '\n');
	}
	return 0;
}

static int ed_add_interface(struct ec2_ctx *c, const struct ec2_facts *f, const char *eni)
{
	char rel[TREE_PATH_MAX + 1], seed[128], eni_id[32], subnet_id[40], vpc_id[32], groups[ED_VALUE_MAX];
	const char *account = ec2_account_id(c->vm);
	struct outbuf ids = { 0 };
	int rc = ed_group_ids(c->vm, &ids, groups, sizeof(groups));

	snprintf(seed, sizeof(seed), "%s/%s", c->vm->instance_id, c->mac);
	ed_synth_id("eni-", seed, eni_id, sizeof(eni_id));
	ed_synth_id("subnet-", f->subnet_cidr, subnet_id, sizeof(subnet_id));
	ed_synth_id("vpc-", f->vpc_cidr, vpc_id, sizeof(vpc_id));
	const struct {
		const char *leaf, *value;
	} leaves[] = {
		{ "device-number", "0" },
		{ "network-card-index", "0" },
		{ "interface-id", eni_id },
		{ "local-hostname", f->local_hostname },
		{ "local-ipv4s", c->ipv4 },
		{ "mac", c->mac },
		{ "owner-id", account },
		{ "security-groups", groups },
		{ "security-group-ids", ids.data ? ids.data : "" },
		{ "subnet-id", subnet_id },
		{ "subnet-ipv4-cidr-block", f->subnet_cidr },
		{ "vpc-id", vpc_id },
		{ "vpc-ipv4-cidr-block", f->vpc_cidr },
		{ "vpc-ipv4-cidr-blocks", f->vpc_cidr },
		{ "public-ipv4s", f->public_ipv4[0] ? f->public_ipv4 : NULL },
		{ "public-hostname", f->public_ipv4[0] ? f->public_hostname : NULL },
	};

	for (size_t i = 0; !rc && i < sizeof(leaves) / sizeof(leaves[0]); i++) {
		if (!leaves[i].value)
			continue;
		snprintf(rel, sizeof(rel), "%s%s", eni, leaves[i].leaf);
		rc = ed_add(c, rel, leaves[i].value);
	}
	/* ipv4-associations/<public-ip> -> the private address it maps to */
	if (!rc && f->public_ipv4[0]) {
		snprintf(rel, sizeof(rel), "%sipv4-associations/%s", eni, f->public_ipv4);
		rc = ed_add(c, rel, c->ipv4);
	}
	outbuf_free(&ids);
	return rc;
}

/* "2001:db8:1::/64": the address's first `bits` bits as a CIDR block. */
static void ed_ipv6_block(const uint8_t addr[16], int bits, char out[INET6_ADDRSTRLEN + 4])
{
	uint8_t net[16] = { 0 };
	char text[INET6_ADDRSTRLEN];

	memcpy(net, addr, (size_t)bits / 8);
	inet_ntop(AF_INET6, net, text, sizeof(text));
	snprintf(out, INET6_ADDRSTRLEN + 4, "%s/%d", text, bits);
}

/* Appends `line` to the newline-separated list `out` (room for
 * IMDS_VM_IPV6_MAX lines) unless it is there already. */
#define ED_IPV6_LIST_MAX (IMDS_VM_IPV6_MAX * (INET6_ADDRSTRLEN + 4))
static void ed_list_add(char out[ED_IPV6_LIST_MAX], const char *line)
{
	size_t len = strlen(line), used = strlen(out);

	for (const char *p = out; (p = strstr(p, line)); p += len)
		if ((p == out || p[-1] == '\n') && (p[len] == '\n' || p[len] == '\0'))
			return;
	snprintf(out + used, ED_IPV6_LIST_MAX - used, "%s%s", used ? "\n" : "", line);
}

/* The VM's "ipv6" as EC2 serves an interface's IPv6 (docs/ipv6.md): the
 * top-level ipv6 (its first address), the interface's ipv6s, and the /64
 * subnets and /56 VPC block of its global and unique local addresses
 * (a VPC's IPv6 block is a /56, its subnets /64s).  ipv6-prefix and the
 * rest come only from the operator's meta-data. */
static int ed_add_ipv6(struct ec2_ctx *c, const char *eni)
{
	const struct vm_desc *vm = c->vm;
	char addrs[ED_IPV6_LIST_MAX] = "", subnets[ED_IPV6_LIST_MAX] = "", vpc[INET6_ADDRSTRLEN + 4] = "";
	char text[INET6_ADDRSTRLEN + 4], rel[TREE_PATH_MAX + 1];
	int rc;

	if (!vm->n_ipv6)
		return 0;
	for (unsigned i = 0; i < vm->n_ipv6; i++) {
		inet_ntop(AF_INET6, vm->ipv6[i], text, sizeof(text));
		ed_list_add(addrs, text);
		if (vm->ipv6[i][0] == 0xfe && (vm->ipv6[i][1] & 0xc0) == 0x80)
			continue; /* link-local: in no subnet of the VPC */
		ed_ipv6_block(vm->ipv6[i], 64, text);
		ed_list_add(subnets, text);
		if (!vpc[0])
			ed_ipv6_block(vm->ipv6[i], 56, vpc);
	}
	inet_ntop(AF_INET6, vm->ipv6[0], text, sizeof(text));
	rc = ed_add(c, "ipv6", text);
	snprintf(rel, sizeof(rel), "%sipv6s", eni);
	if (!rc)
		rc = ed_add(c, rel, addrs);
	snprintf(rel, sizeof(rel), "%ssubnet-ipv6-cidr-blocks", eni);
	if (!rc && subnets[0])
		rc = ed_add(c, rel, subnets);
	snprintf(rel, sizeof(rel), "%svpc-ipv6-cidr-blocks", eni);
	if (!rc && vpc[0])
		rc = ed_add(c, rel, vpc);
	return rc;
}

int ec2_add_derived(struct ec2_ctx *c)
{
	char eni[96];
	struct ec2_facts f;
	int rc;

	snprintf(eni, sizeof(eni), "network/interfaces/macs/%s/", c->mac);
	ed_facts(c, &f, eni);
	rc = ed_add_top(c, &f);
	if (!rc)
		rc = ed_add_placement(c, &f);
	if (!rc)
		rc = ed_add_block_devices(c);
	if (!rc)
		rc = ed_add_interface(c, &f, eni);
	if (!rc)
		rc = ed_add_ipv6(c, eni);
	return rc ? ec2_fail(c, ".meta-data", rc) : 0;
}

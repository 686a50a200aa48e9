/* test_ec2.c: the complete EC2 tree of a VM.  Every entry a listing shows
 * resolves (and every node but the unlisted extended credentials is
 * reachable from the root), derived values follow the documented rules,
 * given values win, IAM documents and tags are byte-exact, and tags follow
 * the instance-metadata-tags option. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compile/compile.h"
#include "compile/ec2.h"

#define VM_HEAD "{\"vms\": [{\"instance-id\": \"i-0123456789abcdef0\", \"mac\": \"52:54:00:AA:0B:0c\", \"ipv4\": \"10.1.2.3\""
#include "compile_harness.h"
#define ENI "ec2/meta-data/network/interfaces/macs/52:54:00:aa:0b:0c/"

#define IAM                                                                                                          \
	"\"iam\": {\"role\": \"web-role\", \"instance-profile-arn\": \"arn:aws:iam::123456789012:instance-profile/web\"," \
	" \"last-updated\": \"2026-12-02T09:00:00Z\", \"credentials\": {\"access-key-id\": \"ASIAEXAMPLEKEY000001\","    \
	" \"secret-access-key\": \"secret/1+x\", \"token\": \"tok==\", \"expiration\": \"2026-12-02T15:00:00Z\"}}"

#define RICH                                                                                                         \
	", \"options\": {\"instance-metadata-tags\": \"enabled\"}, " IAM ", \"tags\": {\"Name\": \"web 1\", \"env\": \"prod\"}," \
	" \"meta-data\": {\"ami-id\": \"ami-1\", \"instance-type\": \"t3.micro\", \"public-ipv4\": \"203.0.113.9\","      \
	" \"security-groups\": [\"default\", \"web\"], \"placement\": {\"availability-zone\": \"eu-west-1b\"},"           \
	" \"spot\": {\"termination-time\": \"2026-12-02T10:00:00Z\"}},"                                                   \
	" \"user-data\": \"#!/bin/sh\", \"public-keys\": [{\"name\": \"alice\", \"openssh-key\": \"ssh-ed25519 AAAA a\"}]"

static int lookup(const struct compiled *c, const char *path, struct tree_entry *e)
{
	return tree_lookup(&c->v, path, strlen(path), e);
}

static void expect_absent(const struct compiled *c, const char *path)
{
	struct tree_entry e;

	if (lookup(c, path, &e) != -ENOENT)
		fail_msg("%s: in the tree, should not be", path);
}

/* Walks a directory as a client does: every line of the listing is a
 * child; "N=name" under public-keys/ means directory N/; an entry without
 * '/' may still be a directory (EC2 lists "dynamic" that way).  Returns
 * the number of nodes reached, the directory included. */
static size_t walk(const struct compiled *c, const char *dir)
{
	struct tree_entry e;
	size_t reached = 1;
	const char *p, *end;

	if (lookup(c, dir, &e) || e.kind != TREE_DIR)
		fail_msg("%s: listed but not a directory", dir);
	for (p = e.body, end = e.body + e.body_len; p < end;) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
		char child[TREE_PATH_MAX + 2];
		struct tree_entry ce;
		const char *eq = memchr(p, '=', n);

		if (n == 0)
			fail_msg("%s: empty line in the listing", dir);
		if (eq && strstr(dir, "public-keys/"))
			snprintf(child, sizeof(child), "%s%.*s/", dir, (int)(eq - p), p);
		else
			snprintf(child, sizeof(child), "%s%.*s", dir, (int)n, p);
		if (child[strlen(child) - 1] == '/')
			reached += walk(c, child);
		else if (lookup(c, child, &ce) == 0 && ce.kind == TREE_LEAF)
			reached++;
		else if (strcat(child, "/") && lookup(c, child, &ce) == 0)
			reached += walk(c, child);
		else
			fail_msg("%s: listed in %s but not served", child, dir);
		p += n + 1;
	}
	return reached;
}

/* Nodes of the EC2 flavor (other flavors share the image). */
static uint32_t node_count(const struct compiled *c)
{
	const struct tree_hdr *h = c->img;
	const struct tree_node *nodes = (const struct tree_node *)((const char *)c->img + h->nodes_off);
	uint32_t n = 0;

	for (uint32_t i = 0; i < h->n_nodes; i++)
		n += nodes[i].path_len >= 4 && !memcmp((const char *)c->img + nodes[i].path_off, "ec2/", 4);
	return n;
}

static void test_walk_rich(void **state)
{
	struct compiled c;

	(void)state;
	compile_doc(RICH, &c);
	/* Everything is reachable from the root, except the unlisted
	 * security-credentials-extended/ and its one document. */
	assert_int_equal(walk(&c, "ec2/"), node_count(&c) - 2);
	expect_node(&c, "ec2/meta-data/",
		    "ami-id\nami-launch-index\nami-manifest-path\nblock-device-mapping/\nevents/\nhostname\niam/\n"
		    "instance-action\ninstance-id\ninstance-life-cycle\ninstance-type\nlocal-hostname\nlocal-ipv4\nmac\n"
		    "network/\nplacement/\nprofile\npublic-hostname\npublic-ipv4\npublic-keys/\nreservation-id\n"
		    "security-groups\nservices/\nspot/\ntags/");
	expect_node(&c, ENI,
		    "device-number\ninterface-id\nipv4-associations/\nlocal-hostname\nlocal-ipv4s\nmac\n"
		    "network-card-index\nowner-id\npublic-hostname\npublic-ipv4s\nsecurity-group-ids\nsecurity-groups\n"
		    "subnet-id\nsubnet-ipv4-cidr-block\nvpc-id\nvpc-ipv4-cidr-block\nvpc-ipv4-cidr-blocks");
	compiled_free(&c);

	/* The bare VM too. */
	compile_doc("", &c);
	assert_int_equal(walk(&c, "ec2/"), node_count(&c));
	compiled_free(&c);
}

static void test_derived_rich(void **state)
{
	struct compiled c;
	struct tree_entry e;

	(void)state;
	compile_doc(RICH, &c);
	expect_node(&c, "ec2/meta-data/placement/region", "eu-west-1");
	expect_node(&c, "ec2/meta-data/placement/availability-zone-id", "euw1-az2");
	expect_node(&c, "ec2/meta-data/services/domain", "amazonaws.com");
	expect_node(&c, "ec2/meta-data/services/partition", "aws");
	expect_node(&c, "ec2/meta-data/hostname", "ip-10-1-2-3.eu-west-1.compute.internal");
	expect_node(&c, "ec2/meta-data/local-hostname", "ip-10-1-2-3.eu-west-1.compute.internal");
	expect_node(&c, "ec2/meta-data/public-hostname", "ec2-203-0-113-9.eu-west-1.compute.amazonaws.com");
	expect_node(&c, "ec2/meta-data/instance-life-cycle", "spot");
	expect_node(&c, "ec2/meta-data/instance-action", "none");
	expect_node(&c, "ec2/meta-data/ami-launch-index", "0");
	expect_node(&c, "ec2/meta-data/ami-manifest-path", "(unknown)");
	expect_node(&c, "ec2/meta-data/profile", "default-hvm");
	expect_node(&c, "ec2/meta-data/block-device-mapping/", "ami\nroot");
	expect_node(&c, "ec2/meta-data/block-device-mapping/ami", "/dev/xvda");
	expect_node(&c, "ec2/meta-data/events/maintenance/", "history\nscheduled");
	expect_node(&c, "ec2/meta-data/events/maintenance/scheduled", "[]");
	expect_node(&c, "ec2/meta-data/security-groups", "default\nweb");
	expect_node(&c, ENI "security-groups", "default\nweb");
	expect_node(&c, ENI "local-hostname", "ip-10-1-2-3.eu-west-1.compute.internal");
	expect_node(&c, ENI "owner-id", "123456789012");
	expect_node(&c, ENI "public-ipv4s", "203.0.113.9");
	expect_node(&c, ENI "ipv4-associations/203.0.113.9", "10.1.2.3");
	expect_node(&c, ENI "subnet-ipv4-cidr-block", "10.1.2.0/24");
	expect_node(&c, ENI "vpc-ipv4-cidr-block", "10.1.2.0/24");
	expect_node(&c, ENI "vpc-ipv4-cidr-blocks", "10.1.2.0/24");
	/* Synthetic ids: EC2's shape, prefix and 17 hex digits. */
	assert_int_equal(lookup(&c, "ec2/meta-data/reservation-id", &e), 0);
	assert_int_equal(e.body_len, 19);
	assert_memory_equal(e.body, "r-", 2);
	assert_int_equal(strspn(e.body + 2, "0123456789abcdef"), 17);
	assert_int_equal(lookup(&c, ENI "interface-id", &e), 0);
	assert_int_equal(e.body_len, 21);
	assert_memory_equal(e.body, "eni-", 4);
	assert_int_equal(lookup(&c, ENI "security-group-ids", &e), 0);
	assert_int_equal(e.body_len, 2 * 20 + 1); /* two "sg-" ids */
	assert_int_equal(lookup(&c, ENI "subnet-id", &e), 0);
	assert_memory_equal(e.body, "subnet-", 7);
	compiled_free(&c);
}

/* Two VMs in one subnet share subnet and VPC ids; a group name maps to the
 * same id everywhere; interface ids differ. */
static void test_synthetic_ids_stable(void **state)
{
	struct compiled a, b;
	struct tree_entry ea, eb;

	(void)state;
	compile_doc("", &a);
	compile_doc(", \"meta-data\": {\"local-ipv4\": \"10.1.2.99\"}", &b);
	static const char *const shared[] = { ENI "subnet-id", ENI "vpc-id", ENI "security-group-ids" };
	for (size_t i = 0; i < 3; i++) {
		assert_int_equal(lookup(&a, shared[i], &ea), 0);
		assert_int_equal(lookup(&b, shared[i], &eb), 0);
		assert_int_equal(ea.body_len, eb.body_len);
		assert_memory_equal(ea.body, eb.body, ea.body_len);
	}
	compiled_free(&a);
	compiled_free(&b);
}

static void test_derived_regions(void **state)
{
	struct compiled c;

	(void)state;
	compile_doc(", \"meta-data\": {\"placement\": {\"availability-zone\": \"us-east-1c\"}, \"public-ipv4\": \"198.51.100.7\"}",
		    &c);
	expect_node(&c, "ec2/meta-data/local-hostname", "ip-10-1-2-3.ec2.internal");
	expect_node(&c, "ec2/meta-data/public-hostname", "ec2-198-51-100-7.compute-1.amazonaws.com");
	expect_node(&c, "ec2/meta-data/placement/availability-zone-id", "use1-az3");
	compiled_free(&c);

	compile_doc(", \"meta-data\": {\"placement\": {\"availability-zone\": \"cn-northwest-1a\"}}", &c);
	expect_node(&c, "ec2/meta-data/services/domain", "amazonaws.com.cn");
	expect_node(&c, "ec2/meta-data/services/partition", "aws-cn");
	expect_node(&c, "ec2/meta-data/placement/availability-zone-id", "cnnw1-az1");
	compiled_free(&c);

	compile_doc(", \"meta-data\": {\"placement\": {\"availability-zone\": \"us-gov-west-1a\"}}", &c);
	expect_node(&c, "ec2/meta-data/services/partition", "aws-us-gov");
	expect_node(&c, "ec2/meta-data/placement/availability-zone-id", "usgw1-az1");
	compiled_free(&c);

	/* A given domain names the public host too. */
	compile_doc(", \"meta-data\": {\"placement\": {\"availability-zone\": \"eu-west-1a\"},"
		    " \"public-ipv4\": \"198.51.100.7\", \"services\": {\"domain\": \"example.net\"}}",
		    &c);
	expect_node(&c, "ec2/meta-data/public-hostname", "ec2-198-51-100-7.eu-west-1.compute.example.net");
	expect_node(&c, "ec2/meta-data/services/", "domain\npartition");
	expect_node(&c, "ec2/meta-data/services/partition", "aws");
	compiled_free(&c);

	/* A zone that does not look like AWS's: no zone id, region still. */
	compile_doc(", \"meta-data\": {\"placement\": {\"availability-zone\": \"lab-1a\"}}", &c);
	expect_node(&c, "ec2/meta-data/placement/", "availability-zone\nregion");
	expect_node(&c, "ec2/meta-data/placement/region", "lab-1");
	compiled_free(&c);

	/* No zone at all: no placement/, us-east-1-style names. */
	compile_doc("", &c);
	expect_absent(&c, "ec2/meta-data/placement/");
	expect_node(&c, "ec2/meta-data/hostname", "ip-10-1-2-3.ec2.internal");
	expect_absent(&c, "ec2/meta-data/public-hostname");
	expect_absent(&c, ENI "public-ipv4s");
	expect_absent(&c, ENI "owner-id");
	compiled_free(&c);
}

/* Derived values that repeat a given one use the given one. */
static void test_given_values_propagate(void **state)
{
	struct compiled c;

	(void)state;
	compile_doc(", \"meta-data\": {\"hostname\": \"web.example\", \"block-device-mapping\": {\"root\": \"/dev/vda\"},"
		    " \"security-groups\": \"db\", \"network\": {\"interfaces\": {\"macs\": {\"52:54:00:aa:0b:0c\":"
		    " {\"subnet-ipv4-cidr-block\": \"10.1.0.0/20\", \"owner-id\": \"210987654321\"}}}}}",
		    &c);
	expect_node(&c, "ec2/meta-data/hostname", "web.example");
	expect_node(&c, "ec2/meta-data/local-hostname", "web.example");
	expect_node(&c, ENI "local-hostname", "web.example");
	expect_node(&c, "ec2/meta-data/block-device-mapping/ami", "/dev/vda");
	expect_node(&c, ENI "security-groups", "db");
	expect_node(&c, ENI "vpc-ipv4-cidr-block", "10.1.0.0/20");
	/* no iam: the account comes from the given owner-id */
	expect_node(&c, "ec2/dynamic/instance-identity/document",
		    "{\n  \"accountId\" : \"210987654321\",\n  \"architecture\" : \"x86_64\",\n"
		    "  \"availabilityZone\" : null,\n  \"billingProducts\" : null,\n  \"devpayProductCodes\" : null,\n"
		    "  \"marketplaceProductCodes\" : null,\n  \"imageId\" : null,\n"
		    "  \"instanceId\" : \"i-0123456789abcdef0\",\n  \"instanceType\" : null,\n  \"kernelId\" : null,\n"
		    "  \"pendingTime\" : null,\n  \"privateIp\" : \"10.1.2.3\",\n  \"ramdiskId\" : null,\n"
		    "  \"region\" : null,\n  \"version\" : \"2017-09-30\"\n}");
	compiled_free(&c);
}

/* "ipv6": meta-data/ipv6 and the interface's ipv6s (as given, compressed),
 * the /64s of the global and unique local ones (link-local has none) and
 * the /56 of the first; a given ipv6-prefix is served beside them; the
 * identity document does not change.  Without "ipv6", none of these. */
static void test_ipv6_leaves(void **state)
{
	struct compiled c;

	(void)state;
	compile_doc(", \"ipv6\": [\"2001:DB8:1:0::11\", \"fe80::1\", \"2001:db8:1::12\", \"fd00:1:2:3::4\"],"
		    " \"meta-data\": {\"network\": {\"interfaces\": {\"macs\": {\"52:54:00:aa:0b:0c\":"
		    " {\"ipv6-prefix\": \"2001:db8:1:0:a::/80\"}}}}}",
		    &c);
	expect_node(&c, "ec2/meta-data/ipv6", "2001:db8:1::11");
	expect_node(&c, ENI "ipv6s", "2001:db8:1::11\nfe80::1\n2001:db8:1::12\nfd00:1:2:3::4");
	expect_node(&c, ENI "subnet-ipv6-cidr-blocks", "2001:db8:1::/64\nfd00:1:2:3::/64");
	expect_node(&c, ENI "vpc-ipv6-cidr-blocks", "2001:db8:1::/56");
	expect_node(&c, ENI "ipv6-prefix", "2001:db8:1:0:a::/80");
	compiled_free(&c);
	compile_doc("", &c);
	expect_absent(&c, "ec2/meta-data/ipv6");
	expect_absent(&c, ENI "ipv6s");
	expect_absent(&c, ENI "subnet-ipv6-cidr-blocks");
	compiled_free(&c);
	compile_doc(", \"ipv6\": [\"fe80::1\"]", &c);
	expect_node(&c, ENI "ipv6s", "fe80::1");
	expect_absent(&c, ENI "subnet-ipv6-cidr-blocks");
	expect_absent(&c, ENI "vpc-ipv6-cidr-blocks");
	compiled_free(&c);
}

static void test_iam_documents(void **state)
{
	struct compiled c;
	struct tree_entry e;

	(void)state;
	compile_doc(", " IAM, &c);
	expect_node(&c, "ec2/meta-data/iam/", "info\nsecurity-credentials/");
	expect_node(&c, "ec2/meta-data/iam/security-credentials/", "web-role");
	assert_int_equal(lookup(&c, "ec2/meta-data/iam/info", &e), 0);
	/* the derived profile id: AIPA + 17 of [A-Z2-7] */
	assert_int_equal(e.body_len, strlen("{\n  \"Code\" : \"Success\",\n  \"LastUpdated\" : \"2026-12-02T09:00:00Z\",\n"
					    "  \"InstanceProfileArn\" : \"arn:aws:iam::123456789012:instance-profile/web\",\n"
					    "  \"InstanceProfileId\" : \"AIPA01234567890123456\"\n}"));
	assert_non_null(strstr(e.body, "\"InstanceProfileId\" : \"AIPA"));
	expect_node(&c, "ec2/meta-data/iam/security-credentials/web-role",
		    "{\n"
		    "  \"Code\" : \"Success\",\n"
		    "  \"LastUpdated\" : \"2026-12-02T09:00:00Z\",\n"
		    "  \"Type\" : \"AWS-HMAC\",\n"
		    "  \"AccessKeyId\" : \"ASIAEXAMPLEKEY000001\",\n"
		    "  \"SecretAccessKey\" : \"secret/1+x\",\n"
		    "  \"Token\" : \"tok==\",\n"
		    "  \"Expiration\" : \"2026-12-02T15:00:00Z\"\n"
		    "}");
	expect_node(&c, "ec2/meta-data/iam/security-credentials-extended/web-role",
		    "{\n"
		    "  \"Code\" : \"Success\",\n"
		    "  \"LastUpdated\" : \"2026-12-02T09:00:00Z\",\n"
		    "  \"Type\" : \"AWS-HMAC\",\n"
		    "  \"AccessKeyId\" : \"ASIAEXAMPLEKEY000001\",\n"
		    "  \"SecretAccessKey\" : \"secret/1+x\",\n"
		    "  \"Token\" : \"tok==\",\n"
		    "  \"Expiration\" : \"2026-12-02T15:00:00Z\",\n"
		    "  \"AccountId\" : \"123456789012\"\n"
		    "}");
	assert_int_equal(lookup(&c, "ec2/dynamic/instance-identity/document", &e), 0);
	assert_non_null(strstr(e.body, "\"accountId\" : \"123456789012\""));
	compiled_free(&c);

	/* A given profile id is used as is; no role, no iam/. */
	compile_doc(", \"iam\": {\"role\": \"r\", \"instance-profile-arn\": \"arn:aws:iam::123456789012:instance-profile/p\","
		    " \"instance-profile-id\": \"AIPAJ2B3C4D5E6F7G8H9I\", \"last-updated\": \"2026-01-01T00:00:00Z\","
		    " \"credentials\": {\"access-key-id\": \"ASIAEXAMPLEKEY000001\", \"secret-access-key\": \"s\","
		    " \"token\": \"t\", \"expiration\": \"2026-01-01T06:00:00Z\"}}",
		    &c);
	expect_node(&c, "ec2/meta-data/iam/info",
		    "{\n  \"Code\" : \"Success\",\n  \"LastUpdated\" : \"2026-01-01T00:00:00Z\",\n"
		    "  \"InstanceProfileArn\" : \"arn:aws:iam::123456789012:instance-profile/p\",\n"
		    "  \"InstanceProfileId\" : \"AIPAJ2B3C4D5E6F7G8H9I\"\n}");
	compiled_free(&c);
	compile_doc("", &c);
	expect_absent(&c, "ec2/meta-data/iam/");
	expect_absent(&c, "ec2/meta-data/iam/info");
	compiled_free(&c);
}

/* Without last-updated, the load time in botocore's format. */
static void test_iam_default_last_updated(void **state)
{
	struct compiled c;
	struct tree_entry e;
	const char *p;

	(void)state;
	compile_doc(", \"iam\": {\"role\": \"r\", \"instance-profile-arn\": \"arn:aws:iam::123456789012:instance-profile/p\","
		    " \"credentials\": {\"access-key-id\": \"ASIAEXAMPLEKEY000001\", \"secret-access-key\": \"s\","
		    " \"token\": \"t\", \"expiration\": \"2026-01-01T06:00:00Z\"}}",
		    &c);
	assert_int_equal(lookup(&c, "ec2/meta-data/iam/security-credentials/r", &e), 0);
	p = strstr(e.body, "\"LastUpdated\" : \"");
	assert_non_null(p);
	p += strlen("\"LastUpdated\" : \"");
	assert_int_equal(vmconf_check_time(p, VMCONF_TIME_LEN), 0);
	compiled_free(&c);
}

static void test_tags(void **state)
{
	struct compiled c;

	(void)state;
	compile_doc(RICH, &c);
	expect_node(&c, "ec2/meta-data/tags/", "instance/");
	expect_node(&c, "ec2/meta-data/tags/instance/", "Name\nenv");
	expect_node(&c, "ec2/meta-data/tags/instance/Name", "web 1");
	compiled_free(&c);

	/* Disabled (the default): tags are kept for other flavors, not served. */
	compile_doc(", \"tags\": {\"Name\": \"x\"}", &c);
	expect_absent(&c, "ec2/meta-data/tags/");
	expect_absent(&c, "ec2/meta-data/tags/instance/Name");
	compiled_free(&c);

	/* Enabled without tags: an empty listing (EC2 answers 200). */
	compile_doc(", \"options\": {\"instance-metadata-tags\": \"enabled\"}", &c);
	expect_node(&c, "ec2/meta-data/tags/instance/", "");
	compiled_free(&c);
}

/* Descriptions built by hand (vmconf would refuse them): compile names
 * the JSON path rather than building a wrong tree. */
static void test_compile_errors(void **state)
{
	struct vm_desc vm = { .instance_id = "i-x", .mac = { 0x52, 0x54, 0, 0, 0, 1 }, .ipv4 = 0x0100000a,
			      .hop_limit = 1, .metadata_tags = true, .json_path = "vms[2]" };
	char err[256];
	void *img = NULL;
	size_t len;

	(void)state;
	vm.tags = json_pack("{s:i}", "k", 1);
	assert_int_equal(vm_compile(&vm, NULL, &img, &len, err, sizeof(err)), -EINVAL);
	assert_string_equal(err, "vms[2].tags: tag values must be strings");
	json_decref(vm.tags);
	assert_null(img);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_walk_rich),
		cmocka_unit_test(test_derived_rich),
		cmocka_unit_test(test_synthetic_ids_stable),
		cmocka_unit_test(test_derived_regions),
		cmocka_unit_test(test_given_values_propagate),
		cmocka_unit_test(test_ipv6_leaves),
		cmocka_unit_test(test_iam_documents),
		cmocka_unit_test(test_iam_default_last_updated),
		cmocka_unit_test(test_tags),
		cmocka_unit_test(test_compile_errors),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

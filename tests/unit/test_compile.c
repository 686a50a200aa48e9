/* test_compile.c: VM description -> EC2 tree.  Derived fields, merging with
 * the operator's meta-data, public keys, user-data, listings of the EC2
 * root, the identity document byte for byte, and the AWS JSON layout. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/awsjson.h"
#include "compile/compile.h"
#include "compile/ec2.h"

#define VM_HEAD "{\"vms\": [{\"instance-id\": \"i-abc\", \"mac\": \"52:54:00:AA:0B:0c\", \"ipv4\": \"10.1.2.3\""
#include "compile_harness.h"

static void expect_absent(const struct compiled *c, const char *path)
{
	struct tree_entry e;

	assert_int_equal(tree_lookup(&c->v, path, strlen(path), &e), -ENOENT);
}

#define ENI "ec2/meta-data/network/interfaces/macs/52:54:00:aa:0b:0c/"

static void test_derived_fields(void **state)
{
	struct compiled c;

	(void)state;
	compile_doc("", &c);
	expect_node(&c, "ec2/meta-data/",
		    "ami-launch-index\nami-manifest-path\nblock-device-mapping/\nevents/\nhostname\ninstance-action\n"
		    "instance-id\ninstance-life-cycle\nlocal-hostname\nlocal-ipv4\nmac\nnetwork/\nprofile\n"
		    "reservation-id\nsecurity-groups\nservices/");
	expect_node(&c, "ec2/meta-data/instance-id", "i-abc");
	expect_node(&c, "ec2/meta-data/mac", "52:54:00:aa:0b:0c"); /* lowercase */
	expect_node(&c, "ec2/meta-data/local-ipv4", "10.1.2.3");
	expect_node(&c, "ec2/meta-data/network/", "interfaces/");
	expect_node(&c, "ec2/meta-data/network/interfaces/macs/", "52:54:00:aa:0b:0c/");
	expect_node(&c, ENI,
		    "device-number\ninterface-id\nlocal-hostname\nlocal-ipv4s\nmac\nnetwork-card-index\n"
		    "security-group-ids\nsecurity-groups\nsubnet-id\nsubnet-ipv4-cidr-block\nvpc-id\n"
		    "vpc-ipv4-cidr-block\nvpc-ipv4-cidr-blocks");
	expect_node(&c, ENI "device-number", "0");
	expect_node(&c, ENI "local-ipv4s", "10.1.2.3");
	expect_node(&c, ENI "mac", "52:54:00:aa:0b:0c");
	/* No placement given: no region derived. */
	expect_absent(&c, "ec2/meta-data/placement/region");
	expect_absent(&c, "ec2/meta-data/public-keys/");
	compiled_free(&c);
}

/* Given keys win, derived ones fill the gaps, at any depth. */
static void test_merge(void **state)
{
	struct compiled c;

	(void)state;
	compile_doc(", \"meta-data\": {\"local-ipv4\": \"192.0.2.9\", \"instance-id\": \"i-given\","
		    " \"mac\": {\"odd\": \"but allowed\"},"
		    " \"network\": {\"interfaces\": {\"macs\": {\"52:54:00:aa:0b:0c\": "
		    "{\"device-number\": 1, \"subnet-id\": \"subnet-1\"}}}},"
		    " \"placement\": {\"availability-zone\": \"eu-north-1b\"}}",
		    &c);
	expect_node(&c, "ec2/meta-data/local-ipv4", "192.0.2.9");
	expect_node(&c, "ec2/meta-data/instance-id", "i-given");
	expect_node(&c, "ec2/meta-data/mac/", "odd");
	expect_absent(&c, "ec2/meta-data/mac");
	expect_node(&c, ENI,
		    "device-number\ninterface-id\nlocal-hostname\nlocal-ipv4s\nmac\nnetwork-card-index\n"
		    "security-group-ids\nsecurity-groups\nsubnet-id\nsubnet-ipv4-cidr-block\nvpc-id\n"
		    "vpc-ipv4-cidr-block\nvpc-ipv4-cidr-blocks");
	expect_node(&c, ENI "device-number", "1");
	expect_node(&c, ENI "subnet-id", "subnet-1");
	expect_node(&c, ENI "local-ipv4s", "10.1.2.3");
	/* region from the zone, for clients that read placement/region */
	expect_node(&c, "ec2/meta-data/placement/", "availability-zone\navailability-zone-id\nregion");
	expect_node(&c, "ec2/meta-data/placement/region", "eu-north-1");
	compiled_free(&c);

	compile_doc(", \"meta-data\": {\"placement\": {\"availability-zone\": \"eu-north-1b\", \"region\": \"given\"}}",
		    &c);
	expect_node(&c, "ec2/meta-data/placement/region", "given");
	compiled_free(&c);
	/* A leaf where derived values want a directory wins too. */
	compile_doc(", \"meta-data\": {\"network\": \"none\"}", &c);
	expect_node(&c, "ec2/meta-data/network", "none");
	expect_absent(&c, "ec2/meta-data/network/");
	compiled_free(&c);
}

static void test_leaf_rendering(void **state)
{
	struct compiled c;

	(void)state;
	compile_doc(", \"meta-data\": {\"i\": 42, \"neg\": -7, \"r\": 1.5, \"w\": 2.0, \"big\": 1e300, \"hundred\": 1e2,"
		    " \"sg\": [\"default\", \"web\"], \"none\": [], \"s\": \"line1\\nline2\", \"empty\": {}}",
		    &c);
	expect_node(&c, "ec2/meta-data/i", "42");
	expect_node(&c, "ec2/meta-data/neg", "-7");
	expect_node(&c, "ec2/meta-data/r", "1.5");
	expect_node(&c, "ec2/meta-data/w", "2.0");
	expect_node(&c, "ec2/meta-data/big", "1e+300");
	expect_node(&c, "ec2/meta-data/hundred", "100.0");
	expect_node(&c, "ec2/meta-data/sg", "default\nweb");
	expect_node(&c, "ec2/meta-data/none", "");
	expect_node(&c, "ec2/meta-data/s", "line1\nline2");
	expect_node(&c, "ec2/meta-data/empty/", "");
	compiled_free(&c);
}

static void test_public_keys(void **state)
{
	struct compiled c;

	(void)state;
	compile_doc(", \"public-keys\": [{\"name\": \"alice\", \"openssh-key\": \"ssh-ed25519 AAAA alice@a\"},"
		    " {\"name\": \"bob key\", \"openssh-key\": \"ssh-rsa BBBB bob@b\"}]",
		    &c);
	expect_node(&c, "ec2/meta-data/public-keys/", "0=alice\n1=bob key");
	expect_node(&c, "ec2/meta-data/public-keys/0/", "openssh-key");
	expect_node(&c, "ec2/meta-data/public-keys/0/openssh-key", "ssh-ed25519 AAAA alice@a");
	expect_node(&c, "ec2/meta-data/public-keys/1/openssh-key", "ssh-rsa BBBB bob@b");
	expect_node(&c, "ec2/meta-data/",
		    "ami-launch-index\nami-manifest-path\nblock-device-mapping/\nevents/\nhostname\ninstance-action\n"
		    "instance-id\ninstance-life-cycle\nlocal-hostname\nlocal-ipv4\nmac\nnetwork/\nprofile\n"
		    "public-keys/\nreservation-id\nsecurity-groups\nservices/");
	compiled_free(&c);
}

static void test_user_data_and_root(void **state)
{
	struct compiled c;
	struct tree_entry e;

	(void)state;
	compile_doc(", \"user-data-base64\": \"AAEC/w==\"", &c);
	expect_node(&c, "ec2/", "dynamic\nmeta-data\nuser-data");
	assert_int_equal(tree_lookup(&c.v, "ec2/user-data", 13, &e), 0);
	assert_int_equal(e.kind, TREE_LEAF);
	assert_int_equal(e.ctype, CT_OCTET);
	assert_int_equal(e.body_len, 4);
	assert_memory_equal(e.body, "\x00\x01\x02\xff", 4);
	assert_int_equal(tree_lookup(&c.v, "ec2/meta-data/instance-id", 25, &e), 0);
	assert_int_equal(e.ctype, CT_TEXT);
	compiled_free(&c);

	/* Empty user-data is still user-data. */
	compile_doc(", \"user-data\": \"\"", &c);
	expect_node(&c, "ec2/", "dynamic\nmeta-data\nuser-data");
	expect_node(&c, "ec2/user-data", "");
	compiled_free(&c);

	compile_doc("", &c);
	expect_node(&c, "ec2/", "dynamic\nmeta-data");
	expect_absent(&c, "ec2/user-data");
	expect_node(&c, "ec2/dynamic/", "instance-identity/");
	expect_node(&c, "ec2/dynamic/instance-identity/", "document");
	compiled_free(&c);
}

static void test_identity_document(void **state)
{
	static const char want[] = "{\n"
				   "  \"accountId\" : null,\n"
				   "  \"architecture\" : \"x86_64\",\n"
				   "  \"availabilityZone\" : \"us-east-1c\",\n"
				   "  \"billingProducts\" : null,\n"
				   "  \"devpayProductCodes\" : null,\n"
				   "  \"marketplaceProductCodes\" : null,\n"
				   "  \"imageId\" : \"ami-1\",\n"
				   "  \"instanceId\" : \"i-abc\",\n"
				   "  \"instanceType\" : \"t3.nano\",\n"
				   "  \"kernelId\" : null,\n"
				   "  \"pendingTime\" : null,\n"
				   "  \"privateIp\" : \"10.1.2.3\",\n"
				   "  \"ramdiskId\" : null,\n"
				   "  \"region\" : \"us-east-1\",\n"
				   "  \"version\" : \"2017-09-30\"\n"
				   "}";
	static const char bare[] = "{\n"
				   "  \"accountId\" : null,\n"
				   "  \"architecture\" : \"x86_64\",\n"
				   "  \"availabilityZone\" : null,\n"
				   "  \"billingProducts\" : null,\n"
				   "  \"devpayProductCodes\" : null,\n"
				   "  \"marketplaceProductCodes\" : null,\n"
				   "  \"imageId\" : null,\n"
				   "  \"instanceId\" : \"i-abc\",\n"
				   "  \"instanceType\" : null,\n"
				   "  \"kernelId\" : \"aki-9\",\n"
				   "  \"pendingTime\" : null,\n"
				   "  \"privateIp\" : \"10.1.2.3\",\n"
				   "  \"ramdiskId\" : null,\n"
				   "  \"region\" : null,\n"
				   "  \"version\" : \"2017-09-30\"\n"
				   "}";
	struct compiled c;

	(void)state;
	compile_doc(", \"meta-data\": {\"ami-id\": \"ami-1\", \"instance-type\": \"t3.nano\","
		    " \"placement\": {\"availability-zone\": \"us-east-1c\"}}",
		    &c);
	expect_node(&c, "ec2/dynamic/instance-identity/document", want);
	compiled_free(&c);
	compile_doc(", \"meta-data\": {\"kernel-id\": \"aki-9\"}", &c);
	expect_node(&c, "ec2/dynamic/instance-identity/document", bare);
	compiled_free(&c);
}

static void test_header_meta(void **state)
{
	struct tree_meta meta = { .slot = 9, .vm_generation = 4, .last_modified = 1700000000, .http_tokens = 0,
				  .hop_limit = 1 };
	struct conf_error cerr;
	struct vm_set set;
	struct tree_view v;
	const struct tree_meta *m;
	char err[256];
	void *img;
	size_t len;

	(void)state;
	strcpy(meta.instance_id, "stale");
	assert_int_equal(vmconf_load_file("examples/vms.json", &set, &cerr), 0);
	assert_int_equal(vm_compile(&set.vms[2], &meta, &img, &len, err, sizeof(err)), 0);
	assert_int_equal(tree_view_init(&v, img, len), 0);
	m = tree_view_meta(&v);
	assert_int_equal(m->slot, 9);
	assert_int_equal(m->vm_generation, 4);
	assert_int_equal(m->last_modified, 1700000000);
	/* VM facts come from the VM itself. */
	assert_int_equal(m->http_tokens, IMDS_TOKENS_REQUIRED);
	assert_int_equal(m->hop_limit, 2);
	assert_string_equal(m->instance_id, "i-0a1b2c3d4e5f60003");
	free(img);
	vmconf_free(&set);
}

static void test_example_compiles(void **state)
{
	struct conf_error cerr;
	struct vm_set set;
	char err[256];

	(void)state;
	assert_int_equal(vmconf_load_file("examples/vms.json", &set, &cerr), 0);
	for (size_t i = 0; i < set.n; i++) {
		struct tree_view v;
		struct tree_entry e;
		void *img;
		size_t len;

		assert_int_equal(vm_compile(&set.vms[i], NULL, &img, &len, err, sizeof(err)), 0);
		assert_int_equal(tree_view_init(&v, img, len), 0);
		assert_int_equal(tree_lookup(&v, "ec2/meta-data/hostname", 22, &e), 0);
		assert_int_equal(tree_lookup(&v, "ec2/meta-data/public-keys/0/openssh-key", 39, &e), 0);
		assert_int_equal(tree_lookup(&v, "ec2/user-data", 13, &e), 0);
		free(img);
	}
	vmconf_free(&set);
}

/* Descriptions built by hand (not through vmconf) that compile refuses,
 * naming the JSON path. */
static void test_compile_errors(void **state)
{
	struct vm_desc vm = { .instance_id = "i-x", .mac = { 0x52, 0x54, 0, 0, 0, 1 }, .ipv4 = 0x0100000a,
			      .hop_limit = 1, .json_path = "vms[4]" };
	struct vm_key key = { .name = "k", .openssh_key = "ssh-ed25519 AAAA" };
	char err[256];
	void *img = NULL;
	size_t len;

	(void)state;
	vm.meta_data = json_pack("{s:{s:s}}", "public-keys", "0", "x");
	vm.keys = &key;
	vm.n_keys = 1;
	assert_int_equal(vm_compile(&vm, NULL, &img, &len, err, sizeof(err)), -EINVAL);
	assert_string_equal(err, "vms[4].meta-data.public-keys: public keys are also given in vms[4].public-keys; keep one");
	json_decref(vm.meta_data);

	vm.n_keys = 0;
	vm.meta_data = json_pack("{s:{s:s}}", "a", ".", "x");
	assert_int_equal(vm_compile(&vm, NULL, &img, &len, err, sizeof(err)), -EINVAL);
	assert_string_equal(err, "vms[4].meta-data.a[\".\"]: cannot be a metadata tree path (empty, '.' or '..' segment, or "
				 "too long)");
	json_decref(vm.meta_data);

	vm.meta_data = json_pack("{s:b}", "flag", 1);
	assert_int_equal(vm_compile(&vm, NULL, &img, &len, err, sizeof(err)), -EINVAL);
	assert_string_equal(err, "vms[4].meta-data.flag: must be a string, a number, an object or an array of strings");
	json_decref(vm.meta_data);
	assert_null(img);
}

static void render_expect(json_t *v, const char *want)
{
	struct outbuf out = { 0 };

	assert_int_equal(awsjson_render(v, &out), 0);
	assert_int_equal(out.len, strlen(want));
	assert_memory_equal(out.data, want, out.len);
	outbuf_free(&out);
	json_decref(v);
}

static void test_awsjson_layout(void **state)
{
	(void)state;
	render_expect(json_pack("{s:s, s:{s:i, s:{}}, s:[s, i], s:[], s:[{s:n}], s:b, s:f}", "Code", "Success", "nested",
				"k", 1, "empty", "list", "a", 2, "none", "objs", "x", "ok", 1, "real", 0.25),
		      "{\n"
		      "  \"Code\" : \"Success\",\n"
		      "  \"nested\" : {\n"
		      "    \"k\" : 1,\n"
		      "    \"empty\" : { }\n"
		      "  },\n"
		      "  \"list\" : [ \"a\", 2 ],\n"
		      "  \"none\" : [ ],\n"
		      "  \"objs\" : [ {\n"
		      "    \"x\" : null\n"
		      "  } ],\n"
		      "  \"ok\" : true,\n"
		      "  \"real\" : 0.25\n"
		      "}");
	render_expect(json_pack("{}"), "{ }");
	render_expect(json_string("q\"b\\s/\n\t\x01\x1f\x7f \xc3\xa9"), "\"q\\\"b\\\\s/\\n\\t\\u0001\\u001f\x7f \xc3\xa9\"");
	render_expect(json_pack("{s:s}", "we\"ird\n", "v"), "{\n  \"we\\\"ird\\n\" : \"v\"\n}");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_derived_fields),
		cmocka_unit_test(test_merge),
		cmocka_unit_test(test_leaf_rendering),
		cmocka_unit_test(test_public_keys),
		cmocka_unit_test(test_user_data_and_root),
		cmocka_unit_test(test_identity_document),
		cmocka_unit_test(test_header_meta),
		cmocka_unit_test(test_example_compiles),
		cmocka_unit_test(test_compile_errors),
		cmocka_unit_test(test_awsjson_layout),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

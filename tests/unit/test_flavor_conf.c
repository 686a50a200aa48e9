/* test_flavor_conf.c: the flavor sections of a VM record (openstack, gce,
 * azure): each parse error with its exact message and position, and the
 * fields a section may not repeat from the common record, refused by the
 * compiler. */
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
#include "compile/vmconf.h"

/* --- validation --- */

static void expect_parse_error(const char *section, const char *want)
{
	char *text;
	struct vm_set set;
	struct conf_error err;

	assert_true(asprintf(&text,
			     "{\"vms\": [\n{\n\"instance-id\": \"i-1\",\n\"mac\": \"52:54:00:00:00:01\",\n"
			     "\"ipv4\": \"10.0.0.1\",\n%s\n}\n]}\n",
			     section) > 0);
	assert_int_equal(vmconf_parse("t.json", text, strlen(text), &set, &err), -EINVAL);
	assert_string_equal(err.text, want);
	free(text);
}

static void test_section_errors(void **state)
{
	(void)state;
	expect_parse_error("\"gce\": []", "t.json:6:8: vms[0].gce: expected an object, not an array");
	expect_parse_error("\"gce\": {\"zone\": \"x\"}", "t.json:6:17: vms[0].gce.zone: unknown field");
	expect_parse_error("\"gce\": {\"attributes\": {\"a b\": \"x\"}}",
			   "t.json:6:31: vms[0].gce.attributes.a b: a key may only contain letters, digits, '-' and '_'");
	expect_parse_error("\"gce\": {\"attributes\": {\"k\": 1}}",
			   "t.json:6:29: vms[0].gce.attributes.k: expected a string, not an integer");
	expect_parse_error("\"gce\": {\"numeric-project-id\": -5}",
			   "t.json:6:31: vms[0].gce.numeric-project-id: -5 is negative");
	expect_parse_error("\"gce\": {\"service-accounts\": [{\"scopes\": []}]}",
			   "t.json:6:30: vms[0].gce.service-accounts[0]: missing required field \"email\"");
	expect_parse_error("\"gce\": {\"service-accounts\": [{\"email\": \"nobody\"}]}",
			   "t.json:6:40: vms[0].gce.service-accounts[0].email: \"nobody\" is not an e-mail address");
	expect_parse_error("\"gce\": {\"service-accounts\": [{\"email\": \"@json\"}]}",
			   "t.json:6:40: vms[0].gce.service-accounts[0].email: \"@json\" is not an e-mail address");
	expect_parse_error("\"gce\": {\"service-accounts\": [{\"email\": \"a@b\"}, {\"email\": \"a@b\"}]}",
			   "t.json:6:58: vms[0].gce.service-accounts[1].email: duplicates vms[0].gce.service-accounts[0].email");
	expect_parse_error("\"openstack\": {\"meta\": {\"k\": [\"v\"]}}",
			   "t.json:6:29: vms[0].openstack.meta.k: expected a string, not an array");
	expect_parse_error("\"gce\": {\"service-accounts\": [{\"email\": \"a@b\", \"token\": {\"access-token\": \"t\"}}]}",
			   "t.json:6:56: vms[0].gce.service-accounts[0].token: missing required field \"expires-at\"");
	expect_parse_error("\"gce\": {\"service-accounts\": [{\"email\": \"a@b\", \"token\": {\"access-token\": \"t\", "
			   "\"expires-at\": \"2030-02-30T00:00:00Z\"}}]}",
			   "t.json:6:92: vms[0].gce.service-accounts[0].token.expires-at: \"2030-02-30T00:00:00Z\" is not a valid UTC time of the form YYYY-MM-DDTHH:MM:SSZ");
	expect_parse_error("\"gce\": {\"service-accounts\": [{\"email\": \"a@b\", \"token\": {\"access-token\": \"a b\", "
			   "\"expires-at\": \"2030-01-01T00:00:00Z\"}}]}",
			   "t.json:6:73: vms[0].gce.service-accounts[0].token.access-token: may only contain printable ASCII other than spaces, '\"' and '\\'");
	expect_parse_error("\"gce\": {\"service-accounts\": [{\"email\": \"a@b\", \"token\": {\"access-token\": \"\", "
			   "\"expires-at\": \"2030-01-01T00:00:00Z\"}}]}",
			   "t.json:6:73: vms[0].gce.service-accounts[0].token.access-token: must be 1 to 4096 bytes long");
	expect_parse_error("\"openstack\": {\"serve-without-token\": \"yes\"}",
			   "t.json:6:38: vms[0].openstack.serve-without-token: expected true or false, not a string");
	expect_parse_error("\"azure\": {\"serve-without-token\": 1}",
			   "t.json:6:34: vms[0].azure.serve-without-token: expected true or false, not an integer");
	expect_parse_error("\"openstack\": {\"uuid\": \"a b\"}",
			   "t.json:6:23: vms[0].openstack.uuid: must not contain '/' or spaces");
	expect_parse_error("\"openstack\": {\"network-data\": {\"links\": [1]}}",
			   "t.json:6:42: vms[0].openstack.network-data.links[0]: expected an object, not an integer");
	expect_parse_error("\"openstack\": {\"vendor-data\": 5}",
			   "t.json:6:30: vms[0].openstack.vendor-data: expected an object, an array or a string");
	expect_parse_error("\"azure\": {\"os-type\": \"BeOS\"}",
			   "t.json:6:22: vms[0].azure.os-type: \"BeOS\" is not \"Linux\" or \"Windows\"");
	expect_parse_error("\"azure\": {\"tags\": {\"a\": \"b\"}}",
			   "t.json:6:19: vms[0].azure.tags: give tags in vms[0].tags (Azure's compute.tags and tagsList show them)");
	expect_parse_error("\"azure\": {\"location\": \"\"}", "t.json:6:23: vms[0].azure.location: must be 1 to 255 bytes long");
}

/* Common fields given in a flavor section too: refused, not silently
 * shadowed. */
static void test_compile_conflict(void **state)
{
	static const char text[] = "{\"vms\": [{\"instance-id\": \"i-1\", \"mac\": \"52:54:00:00:00:01\", "
				   "\"ipv4\": \"10.0.0.1\", \"public-keys\": [{\"name\": \"a\", \"openssh-key\": \"k\"}], "
				   "\"gce\": {\"attributes\": {\"ssh-keys\": \"a:k\"}}}]}";
	struct vm_set set;
	struct conf_error err;
	char msg[512] = "";
	void *img = NULL;
	size_t len;

	(void)state;
	assert_int_equal(vmconf_parse("t.json", text, strlen(text), &set, &err), 0);
	assert_int_equal(vm_compile(&set.vms[0], NULL, &img, &len, msg, sizeof(msg)), -EINVAL);
	assert_string_equal(msg, "vms[0].gce.attributes.ssh-keys: ssh-keys is also given in vms[0].public-keys; keep one");
	assert_null(img);
	vmconf_free(&set);
}

/* openstack.meta adds to the tags; a key in both is refused. */
static void test_compile_meta_conflict(void **state)
{
	static const char text[] = "{\"vms\": [{\"instance-id\": \"i-1\", \"mac\": \"52:54:00:00:00:01\", "
				   "\"ipv4\": \"10.0.0.1\", \"tags\": {\"env\": \"prod\", \"role\": \"db\"}, "
				   "\"openstack\": {\"meta\": {\"dsmode\": \"net\", \"role\": \"web\"}}}]}";
	struct vm_set set;
	struct conf_error err;
	char msg[512] = "";
	void *img = NULL;
	size_t len;

	(void)state;
	assert_int_equal(vmconf_parse("t.json", text, strlen(text), &set, &err), 0);
	assert_int_equal(vm_compile(&set.vms[0], NULL, &img, &len, msg, sizeof(msg)), -EINVAL);
	assert_string_equal(msg, "vms[0].openstack.meta.role: role is also given in vms[0].tags; keep one");
	assert_null(img);
	vmconf_free(&set);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_section_errors),
		cmocka_unit_test(test_compile_conflict),
		cmocka_unit_test(test_compile_meta_conflict),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

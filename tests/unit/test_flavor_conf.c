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

/* azure.managed-identities: each error with its exact message and position. */
#define MI(body) "\"azure\": {\"managed-identities\": " body "}"
#define G1 "11111111-1111-4111-8111-111111111111"
#define G2 "22222222-2222-4222-8222-222222222222"
#define SYS_IDS "\"client-id\": \"" G1 "\", \"object-id\": \"" G2 "\""
#define T2030 "\"expires-on\": \"2030-01-01T00:00:00Z\""
#define SYS_TOKENS(tokens) MI("{\"system-assigned\": {" SYS_IDS ", \"tokens\": " tokens "}}")

static void test_identity_errors(void **state)
{
	(void)state;
	expect_parse_error(MI("[]"), "t.json:6:33: vms[0].azure.managed-identities: expected an object, not an array");
	expect_parse_error(MI("{\"system\": {}}"), "t.json:6:44: vms[0].azure.managed-identities.system: unknown field");
	expect_parse_error(MI("{\"system-assigned\": {\"object-id\": \"" G2 "\"}}"),
			   "t.json:6:53: vms[0].azure.managed-identities.system-assigned: missing required field \"client-id\"");
	expect_parse_error(MI("{\"system-assigned\": {\"client-id\": \"1111\", \"object-id\": \"" G2 "\"}}"),
			   "t.json:6:67: vms[0].azure.managed-identities.system-assigned.client-id: \"1111\" is not a GUID "
			   "(8-4-4-4-12 hexadecimal digits)");
	expect_parse_error(MI("{\"tenant-id\": \"x\"}"),
			   "t.json:6:47: vms[0].azure.managed-identities.tenant-id: \"x\" is not a GUID (8-4-4-4-12 "
			   "hexadecimal digits)");
	expect_parse_error(MI("{\"user-assigned\": [{" SYS_IDS "}]}"),
			   "t.json:6:52: vms[0].azure.managed-identities.user-assigned[0]: missing required field "
			   "\"resource-id\"");
	expect_parse_error(MI("{\"user-assigned\": [{" SYS_IDS ", \"resource-id\": \"subscriptions/x\"}]}"),
			   "t.json:6:174: vms[0].azure.managed-identities.user-assigned[0].resource-id: an Azure resource "
			   "ID starts with '/' (/subscriptions/...)");
	/* Ids name one identity, in any letter case. */
	expect_parse_error(MI("{\"system-assigned\": {\"client-id\": \"aaaaaaaa-0000-4000-8000-00000000000a\", "
			      "\"object-id\": \"" G2 "\"}, \"user-assigned\": [{\"client-id\": "
			      "\"AAAAAAAA-0000-4000-8000-00000000000A\", \"object-id\": \"bbbbbbbb-0000-4000-8000-00000000000b\", "
			      "\"resource-id\": \"/r/a\"}]}"),
			   "t.json:6:193: vms[0].azure.managed-identities.user-assigned[0].client-id: duplicates "
			   "vms[0].azure.managed-identities.system-assigned.client-id");
	expect_parse_error(MI("{\"user-assigned\": [{" SYS_IDS ", \"resource-id\": \"/r/a\"}, {\"client-id\": "
			      "\"aaaaaaaa-0000-4000-8000-00000000000a\", \"object-id\": \"bbbbbbbb-0000-4000-8000-00000000000b\", "
			      "\"resource-id\": \"/R/A\"}]}"),
			   "t.json:6:305: vms[0].azure.managed-identities.user-assigned[1].resource-id: duplicates "
			   "vms[0].azure.managed-identities.user-assigned[0].resource-id");
	expect_parse_error(SYS_TOKENS("{\"https://management.azure.com/.default\": {\"access-token\": \"t\", " T2030 "}}"),
			   "t.json:6:212: vms[0].azure.managed-identities.system-assigned.tokens[\"https://management.azure."
			   "com/.default\"]: a resource, not a scope: give it without \"/.default\"");
	expect_parse_error(SYS_TOKENS("{\"https://m/\": {\"access-token\": \"t\", " T2030 "}, \"https://m\": "
				      "{\"access-token\": \"u\", " T2030 "}}"),
			   "t.json:6:259: vms[0].azure.managed-identities.system-assigned.tokens.https://m: the same "
			   "resource as \"https://m/\"");
	expect_parse_error(SYS_TOKENS("{\"https://m/\": {\"access-token\": \"a b\", " T2030 "}}"),
			   "t.json:6:202: vms[0].azure.managed-identities.system-assigned.tokens.https://m/.access-token: "
			   "may only contain printable ASCII other than spaces, '\"' and '\\'");
	expect_parse_error(SYS_TOKENS("{\"https://m/\": {\"access-token\": \"t\", \"expires-on\": 1700000000}}"),
			   "t.json:6:221: vms[0].azure.managed-identities.system-assigned.tokens.https://m/.expires-on: "
			   "expected a string, not an integer");
	expect_parse_error(SYS_TOKENS("{\"https://m/\": {\"access-token\": \"t\"}}"),
			   "t.json:6:185: vms[0].azure.managed-identities.system-assigned.tokens.https://m/: missing "
			   "required field \"expires-on\"");
	expect_parse_error(SYS_TOKENS("{\"a b\": {\"access-token\": \"t\", " T2030 "}}"),
			   "t.json:6:178: vms[0].azure.managed-identities.system-assigned.tokens.a b: may only contain "
			   "printable ASCII other than spaces, '\"' and '\\'");
	expect_parse_error(SYS_TOKENS("[]"),
			   "t.json:6:170: vms[0].azure.managed-identities.system-assigned.tokens: expected an object of "
			   "resources, not an array");
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
		cmocka_unit_test(test_identity_errors),
		cmocka_unit_test(test_compile_conflict),
		cmocka_unit_test(test_compile_meta_conflict),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

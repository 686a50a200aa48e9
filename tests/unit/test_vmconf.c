/* test_vmconf.c: VM descriptions from JSON.  The example file parses; the
 * top level, the VM object and its required fields (instance-id, mac,
 * ipv4) and duplicates across VMs give their exact messages, LINE:COL
 * included.  Options, port and IAM are in test_vmconf_options.c, the
 * served data (meta-data, user data, keys, tags) in test_vmconf_data.c.
 * Run from the repository root (examples/vms.json). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compile/vmconf.h"
#include "vmconf_harness.h"

#define EXAMPLE "examples/vms.json"

/* --- the example --- */

static void test_example_parses(void **state)
{
	static const char ud2[] = "#!/bin/sh\n# vm2: written by imds user-data (given base64-encoded)\n"
				  "echo \"vm2 booted at $(date -u)\" > /var/tmp/imds-user-data.txt\n";
	static const uint8_t mac3[6] = { 0x52, 0x54, 0x00, 0x77, 0x00, 0x03 };
	struct conf_error err;
	struct vm_set set;

	(void)state;
	assert_int_equal(vmconf_load_file(EXAMPLE, &set, &err), 0);
	assert_int_equal(set.n, 3);
	assert_string_equal(set.source, EXAMPLE);
	for (size_t i = 0; i < 3; i++) {
		const struct vm_desc *vm = &set.vms[i];
		char want[32];

		snprintf(want, sizeof(want), "i-0a1b2c3d4e5f6000%zu", i + 1);
		assert_string_equal(vm->instance_id, want);
		snprintf(want, sizeof(want), "10.77.0.1%zu", i + 1);
		assert_int_equal(vm->ipv4, inet_addr(want));
		snprintf(want, sizeof(want), "vms[%zu]", i);
		assert_string_equal(vm->json_path, want);
		snprintf(want, sizeof(want), "vnet%zu", i);
		assert_string_equal(vm->port, want);
		assert_int_equal(vm->n_keys, 1);
		assert_non_null(vm->meta_data);
		assert_non_null(vm->user_data);
		assert_true(json_is_object(vm->record));
	}
	assert_memory_equal(set.vms[2].mac, mac3, 6);
	assert_int_equal(set.vms[0].http_tokens, IMDS_TOKENS_OPTIONAL);
	assert_int_equal(set.vms[0].hop_limit, 1);
	assert_int_equal(set.vms[2].http_tokens, IMDS_TOKENS_REQUIRED);
	assert_int_equal(set.vms[2].hop_limit, 2);
	assert_string_equal(set.vms[0].keys[0].name, "alice");
	assert_true(!strncmp(set.vms[0].keys[0].openssh_key, "ssh-ed25519 AAAA", 16));
	/* vm2's user data is given base64-encoded. */
	assert_int_equal(set.vms[1].user_data_len, strlen(ud2));
	assert_memory_equal(set.vms[1].user_data, ud2, strlen(ud2));
	vmconf_free(&set);
}

/* A bad MAC on a known line of the example file. */
static void test_example_bad_mac_position(void **state)
{
	struct conf_error err;
	struct vm_set set;
	FILE *f = fopen(EXAMPLE, "r");
	char *text, *at;
	long len;

	(void)state;
	assert_non_null(f);
	fseek(f, 0, SEEK_END);
	len = ftell(f);
	rewind(f);
	text = calloc(1, (size_t)len + 1);
	assert_int_equal(fread(text, 1, (size_t)len, f), (size_t)len);
	fclose(f);
	at = strstr(text, "52:54:00:77:00:02");
	assert_non_null(at);
	memcpy(at, "52:54:00:zz:00:02", 17);
	assert_int_equal(vmconf_parse("vms.json", text, (size_t)len, &set, &err), -EINVAL);
	assert_string_equal(err.text, "vms.json:53:14: vms[1].mac: \"52:54:00:zz:00:02\" is not a MAC address");
	free(text);
}

static void test_load_file_errors(void **state)
{
	struct conf_error err;
	struct vm_set set;

	(void)state;
	assert_int_equal(vmconf_load_file("/nonexistent/vms.json", &set, &err), -ENOENT);
	assert_string_equal(err.text, "/nonexistent/vms.json: No such file or directory");
	assert_int_equal(vmconf_load_file("examples", &set, &err), -EINVAL);
	assert_string_equal(err.text, "examples: not a regular file");
}

/* --- malformed JSON and the top level --- */

static void test_malformed_json(void **state)
{
	(void)state;
	expect_error_text("{\"vms\": [\n  {\"mac\": }\n]}", "t.json:2:11: unexpected token near '}'");
	expect_error_text("{\"vms\": [\n  {\"mac\": \"a\", \"mac\": \"b\"}\n]}",
			  "t.json:2:20: duplicate object key near '\"mac\"'");
	expect_error_text("{\"vms\": [] } x", "t.json:1:14: end of file expected near 'x'");
	expect_error_text("", "t.json:1:0: '[' or '{' expected near end of file");
}

static void test_top_level(void **state)
{
	(void)state;
	expect_error_text("\n  []", "t.json:2:3: expected an object with a \"vms\" array, not an array");
	expect_error_text("{}", "t.json:1:1: missing required field \"vms\"");
	expect_error_text("{\"vms\": {}}", "t.json:1:9: vms: expected an array, not an object");
	expect_error_text("{\"vms\": [], \"vm\": 1}", "t.json:1:19: vm: unknown field");
	expect_error_text("{\"vms\": [1]}", "t.json:1:10: vms[0]: expected an object, not an integer");
	expect_ok(strdup("{\"vms\": []}"));
}

/* --- the VM object --- */

static void test_missing_and_unknown_fields(void **state)
{
	(void)state;
	expect_error_text("{\"vms\": [\n  {\"instance-id\": \"i-1\",\n   \"mac\": \"52:54:00:00:00:01\"}]}",
			  "t.json:2:3: vms[0]: missing required field \"ipv4\"");
	expect_error_text("{\"vms\": [{\"mac\": \"52:54:00:00:00:01\", \"ipv4\": \"10.0.0.1\"}]}",
			  "t.json:1:10: vms[0]: missing required field \"instance-id\"");
	expect_error(doc1(ID, MAC, IP, "\"hostname\": \"x\""), "t.json:6:13: vms[0].hostname: unknown field");
	expect_error(doc1(ID, MAC, IP, "\"user.data\": 1"), "t.json:6:14: vms[0][\"user.data\"]: unknown field");
	/* Reserved for the other flavors: accepted, whatever they hold. */
	expect_ok(doc1(ID, MAC, IP, "\"openstack\": {}, \"gce\": {}, \"azure\": {}"));
}

static void test_instance_id(void **state)
{
	char sixty_three[80], sixty_four[80], want[256];

	(void)state;
	expect_error(doc1("\"\"", MAC, IP, NULL), "t.json:3:16: vms[0].instance-id: \"\" must be 1 to 63 bytes long");
	expect_error(doc1("\"i 1\"", MAC, IP, NULL),
		     "t.json:3:16: vms[0].instance-id: \"i 1\" must be printable ASCII without '/' or spaces");
	expect_error(doc1("\"i/1\"", MAC, IP, NULL),
		     "t.json:3:16: vms[0].instance-id: \"i/1\" must be printable ASCII without '/' or spaces");
	expect_error(doc1("\"i-\\u00e9\"", MAC, IP, NULL),
		     "t.json:3:16: vms[0].instance-id: \"i-\xc3\xa9\" must be printable ASCII without '/' or spaces");
	expect_error(doc1("7", MAC, IP, NULL), "t.json:3:16: vms[0].instance-id: expected a string, not an integer");
	snprintf(sixty_three, sizeof(sixty_three), "\"%063d\"", 7);
	expect_ok(doc1(sixty_three, MAC, IP, NULL));
	snprintf(sixty_four, sizeof(sixty_four), "\"%064d\"", 7);
	snprintf(want, sizeof(want), "t.json:3:16: vms[0].instance-id: %s must be 1 to 63 bytes long", sixty_four);
	expect_error(doc1(sixty_four, MAC, IP, NULL), want);
}

static void test_mac(void **state)
{
	struct vm_set set;
	char *text;

	(void)state;
	expect_error(doc1(ID, "\"52:54:00:zz:00:01\"", IP, NULL),
		     "t.json:4:8: vms[0].mac: \"52:54:00:zz:00:01\" is not a MAC address");
	expect_error(doc1(ID, "\"52-54-00-00-00-01\"", IP, NULL),
		     "t.json:4:8: vms[0].mac: \"52-54-00-00-00-01\" is not a MAC address");
	expect_error(doc1(ID, "\"01:00:5e:00:00:01\"", IP, NULL),
		     "t.json:4:8: vms[0].mac: \"01:00:5e:00:00:01\" is a multicast MAC address");
	expect_error(doc1(ID, "\"00:00:00:00:00:00\"", IP, NULL),
		     "t.json:4:8: vms[0].mac: \"00:00:00:00:00:00\" is the all-zero MAC address");
	expect_error(doc1(ID, "[]", IP, NULL), "t.json:4:8: vms[0].mac: expected a string, not an array");
	text = doc1(ID, "\"52:54:00:AB:cd:EF\"", IP, NULL);
	parse_ok(text, &set);
	assert_memory_equal(set.vms[0].mac, "\x52\x54\x00\xab\xcd\xef", 6);
	vmconf_free(&set);
	free(text);
}

static void test_mac_helpers(void **state)
{
	static const char *const bad[] = { "", "52:54:00:12:34", "52:54:00:12:34:567", "52:54:00:12:34:5",
					   "52:54:00:12:34:5g", "52 54:00:12:34:56", "52:54:00:12:34:56:" };
	uint8_t mac[6] = { 0 };
	char text[18];

	(void)state;
	assert_int_equal(vmconf_parse_mac("52:54:00:Ab:cD:ef", mac), 0);
	vmconf_format_mac(mac, text);
	assert_string_equal(text, "52:54:00:ab:cd:ef");
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(vmconf_parse_mac(bad[i], mac), -EINVAL);
	assert_memory_equal(mac, "\x52\x54\x00\xab\xcd\xef", 6); /* untouched by failures */
}

static void test_ipv4(void **state)
{
	(void)state;
	expect_error(doc1(ID, MAC, "\"10.0.0.256\"", NULL), "t.json:5:9: vms[0].ipv4: \"10.0.0.256\" is not an IPv4 address");
	expect_error(doc1(ID, MAC, "\"10.0.0\"", NULL), "t.json:5:9: vms[0].ipv4: \"10.0.0\" is not an IPv4 address");
	expect_error(doc1(ID, MAC, "\"0.0.0.0\"", NULL), "t.json:5:9: vms[0].ipv4: \"0.0.0.0\" is the unspecified address");
	expect_error(doc1(ID, MAC, "\"255.255.255.255\"", NULL),
		     "t.json:5:9: vms[0].ipv4: \"255.255.255.255\" is the broadcast address");
	expect_error(doc1(ID, MAC, "\"239.1.2.3\"", NULL), "t.json:5:9: vms[0].ipv4: \"239.1.2.3\" is a multicast address");
	expect_error(doc1(ID, MAC, "\"169.254.169.254\"", NULL),
		     "t.json:5:9: vms[0].ipv4: \"169.254.169.254\" is the metadata service's own address");
	expect_error(doc1(ID, MAC, "167772161", NULL), "t.json:5:9: vms[0].ipv4: expected a string, not an integer");
	expect_ok(doc1(ID, MAC, "\"169.254.0.2\"", NULL));
}

/* "ipv6": global, unique local or link-local unicast, 1 to 8, no repeats;
 * each refusal names the element. */
static void test_ipv6(void **state)
{
	struct vm_set set;
	char *text;

	(void)state;
	expect_error(doc1(ID, MAC, IP, "\"ipv6\": [\"2001:db8::1\", \"2001:db8::x\"]"),
		     "t.json:6:25: vms[0].ipv6[1]: \"2001:db8::x\" is not an IPv6 address");
	expect_error(doc1(ID, MAC, IP, "\"ipv6\": [\"ff02::1\"]"), "t.json:6:10: vms[0].ipv6[0]: \"ff02::1\" is a multicast address");
	expect_error(doc1(ID, MAC, IP, "\"ipv6\": [\"::\"]"), "t.json:6:10: vms[0].ipv6[0]: \"::\" is the unspecified address");
	expect_error(doc1(ID, MAC, IP, "\"ipv6\": [\"::1\"]"), "t.json:6:10: vms[0].ipv6[0]: \"::1\" is the loopback address");
	expect_error(doc1(ID, MAC, IP, "\"ipv6\": [\"::ffff:10.0.0.1\"]"),
		     "t.json:6:10: vms[0].ipv6[0]: \"::ffff:10.0.0.1\" is an IPv4-mapped address (give it as \"ipv4\")");
	expect_error(doc1(ID, MAC, IP, "\"ipv6\": [\"fd00:ec2::254\"]"),
		     "t.json:6:10: vms[0].ipv6[0]: \"fd00:ec2::254\" is the metadata service's own address");
	expect_error(doc1(ID, MAC, IP, "\"ipv6\": [\"fec0::1\"]"),
		     "t.json:6:10: vms[0].ipv6[0]: \"fec0::1\" is not a global, unique local or link-local unicast address");
	expect_error(doc1(ID, MAC, IP, "\"ipv6\": [\"2001:db8::1\", \"2001:DB8:0::1\"]"),
		     "t.json:6:25: vms[0].ipv6[1]: \"2001:DB8:0::1\" duplicates vms[0].ipv6[0]");
	expect_error(doc1(ID, MAC, IP, "\"ipv6\": []"), "t.json:6:9: vms[0].ipv6: must hold 1 to 8 addresses, not 0");
	expect_error(doc1(ID, MAC, IP, "\"ipv6\": \"2001:db8::1\""),
		     "t.json:6:9: vms[0].ipv6: expected an array of IPv6 addresses, not a string");
	text = doc1(ID, MAC, IP, "\"ipv6\": [\"2001:db8::1\", \"fd12::5\", \"fe80::5054:ff:fe00:1\"]");
	parse_ok(text, &set);
	assert_int_equal(set.vms[0].n_ipv6, 3);
	assert_int_equal(set.vms[0].ipv6[1][0], 0xfd);
	assert_int_equal(set.vms[0].ipv6[2][15], 1);
	vmconf_free(&set);
	free(text);
}

/* --- whole file --- */

static char *doc2(const char *id2, const char *mac2, const char *ip2)
{
	char *s;

	assert_true(asprintf(&s,
			     "{\"vms\": [\n"
			     "  {\"instance-id\": \"i-1\", \"mac\": \"52:54:00:00:00:01\", \"ipv4\": \"10.0.0.1\"},\n"
			     "  {\"instance-id\": %s, \"mac\": %s, \"ipv4\": %s}\n"
			     "]}\n",
			     id2, mac2, ip2) > 0);
	return s;
}

static void test_duplicates(void **state)
{
	(void)state;
	expect_error(doc2("\"i-1\"", "\"52:54:00:00:00:02\"", "\"10.0.0.2\""),
		     "t.json:3:19: vms[1].instance-id: \"i-1\" duplicates vms[0].instance-id");
	/* Same MAC spelled differently is still the same MAC. */
	expect_error(doc2("\"i-2\"", "\"52:54:00:00:00:01\"", "\"10.0.0.2\""),
		     "t.json:3:33: vms[1].mac: \"52:54:00:00:00:01\" duplicates vms[0].mac");
	expect_error(doc2("\"i-2\"", "\"52:54:00:00:00:02\"", "\"10.0.0.1\""),
		     "t.json:3:62: vms[1].ipv4: \"10.0.0.1\" duplicates vms[0].ipv4");
	expect_ok(doc2("\"i-2\"", "\"52:54:00:00:00:02\"", "\"10.0.0.2\""));
	/* One IPv6 address in two VMs, however spelled. */
	expect_error_text("{\"vms\": [\n"
			  "  {\"instance-id\": \"i-1\", \"mac\": \"52:54:00:00:00:01\", \"ipv4\": \"10.0.0.1\", \"ipv6\": [\"2001:db8::1\"]},\n"
			  "  {\"instance-id\": \"i-2\", \"mac\": \"52:54:00:00:00:02\", \"ipv4\": \"10.0.0.2\", \"ipv6\": [\"fd00::9\", \"2001:db8:0::1\"]}\n"
			  "]}\n",
			  "t.json:3:94: vms[1].ipv6[1]: \"2001:db8::1\" duplicates vms[0].ipv6[0]");
}

static void test_error_at(void **state)
{
	struct conf_error err;
	struct vm_set set;

	(void)state;
	assert_int_equal(vmconf_load_file(EXAMPLE, &set, &err), 0);
	assert_int_equal(vmconf_error_at(&set, &err, "vms[2].mac", "%s is already used by %s", "\"52:54:00:77:00:03\"",
					 "i-9"),
			 -EINVAL);
	assert_string_equal(err.text, EXAMPLE ":77:14: vms[2].mac: \"52:54:00:77:00:03\" is already used by i-9");
	vmconf_error_at(&set, &err, "vms[1].meta-data.placement.availability-zone", "x");
	assert_string_equal(err.text, EXAMPLE ":63:32: vms[1].meta-data.placement.availability-zone: x");
	vmconf_error_at(&set, &err, "vms[7].mac", "gone");
	assert_string_equal(err.text, EXAMPLE ": vms[7].mac: gone");
	vmconf_free(&set);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_example_parses),
		cmocka_unit_test(test_example_bad_mac_position),
		cmocka_unit_test(test_load_file_errors),
		cmocka_unit_test(test_malformed_json),
		cmocka_unit_test(test_top_level),
		cmocka_unit_test(test_missing_and_unknown_fields),
		cmocka_unit_test(test_instance_id),
		cmocka_unit_test(test_mac),
		cmocka_unit_test(test_mac_helpers),
		cmocka_unit_test(test_ipv4),
		cmocka_unit_test(test_ipv6),
		cmocka_unit_test(test_duplicates),
		cmocka_unit_test(test_error_at),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

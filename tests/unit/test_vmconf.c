/* test_vmconf.c: VM descriptions from JSON.  The example file parses; every
 * error class gives its exact message, LINE:COL included; jsonpos finds
 * values by path.  Run from the repository root (examples/vms.json). */
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

#include "lib/jsonpos.h"
#include "lib/schema.h"
#include "lib/tree.h"
#include "compile/vmconf.h"

#define EXAMPLE "examples/vms.json"

/* One VM, each required field on its own line:
 *   line 2: the VM's '{' (col 1)
 *   line 3: "instance-id": VALUE   (value at col 16)
 *   line 4: "mac": VALUE           (value at col 8)
 *   line 5: "ipv4": VALUE          (value at col 9)
 *   line 6: EXTRA fields, from col 1 */
static char *doc1(const char *id, const char *mac, const char *ip, const char *extra)
{
	char *s;

	assert_true(asprintf(&s, "{\"vms\": [\n{\n\"instance-id\": %s,\n\"mac\": %s,\n\"ipv4\": %s%s%s\n}\n]}\n", id,
			     mac, ip, extra ? ",\n" : "", extra ? extra : "") > 0);
	return s;
}

#define ID "\"i-1\""
#define MAC "\"52:54:00:00:00:01\""
#define IP "\"10.0.0.1\""

static void expect_error_text(const char *text, const char *want)
{
	struct vm_set set;
	struct conf_error err;

	memset(&set, 0xa5, sizeof(set));
	assert_int_equal(vmconf_parse("t.json", text, strlen(text), &set, &err), -EINVAL);
	assert_string_equal(err.text, want);
	/* On error the set is left empty. */
	assert_null(set.vms);
	assert_null(set.root);
	assert_null(set.text);
	assert_int_equal(set.n, 0);
}

/* Takes ownership of `text` (from doc1). */
static void expect_error(char *text, const char *want)
{
	expect_error_text(text, want);
	free(text);
}

static void parse_ok(const char *text, struct vm_set *set)
{
	struct conf_error err = { .text = "" };
	int rc = vmconf_parse("t.json", text, strlen(text), set, &err);

	if (rc)
		fail_msg("unexpected error %d: %s", rc, err.text);
}

static void expect_ok(char *text)
{
	struct vm_set set;

	parse_ok(text, &set);
	vmconf_free(&set);
	free(text);
}

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
	assert_string_equal(err.text, "vms.json:52:14: vms[1].mac: \"52:54:00:zz:00:02\" is not a MAC address");
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

static void test_options(void **state)
{
	struct vm_set set;
	char *text;

	(void)state;
	expect_error(doc1(ID, MAC, IP, "\"options\": {\"http-tokens\": \"maybe\"}"),
		     "t.json:6:28: vms[0].options.http-tokens: \"maybe\" is not \"optional\" or \"required\"");
	expect_error(doc1(ID, MAC, IP, "\"options\": {\"hop-limit\": 0}"),
		     "t.json:6:26: vms[0].options.hop-limit: 0 is out of range 1..64");
	expect_error(doc1(ID, MAC, IP, "\"options\": {\"hop-limit\": 65}"),
		     "t.json:6:26: vms[0].options.hop-limit: 65 is out of range 1..64");
	expect_error(doc1(ID, MAC, IP, "\"options\": {\"hop-limit\": \"2\"}"),
		     "t.json:6:26: vms[0].options.hop-limit: expected an integer, not a string");
	expect_error(doc1(ID, MAC, IP, "\"options\": {\"hop-limit\": 2.0}"),
		     "t.json:6:26: vms[0].options.hop-limit: expected an integer, not a number");
	expect_error(doc1(ID, MAC, IP, "\"options\": {\"hop_limit\": 2}"),
		     "t.json:6:26: vms[0].options.hop_limit: unknown option");
	expect_error(doc1(ID, MAC, IP, "\"options\": []"), "t.json:6:12: vms[0].options: expected an object, not an array");
	text = doc1(ID, MAC, IP, "\"options\": {\"http-tokens\": \"required\", \"hop-limit\": 64}");
	parse_ok(text, &set);
	assert_int_equal(set.vms[0].http_tokens, IMDS_TOKENS_REQUIRED);
	assert_int_equal(set.vms[0].hop_limit, 64);
	vmconf_free(&set);
	free(text);
}

static void test_rate_options(void **state)
{
	struct vm_set set;
	char *text;

	(void)state;
	expect_error(doc1(ID, MAC, IP, "\"options\": {\"rate-pps\": 0}"),
		     "t.json:6:25: vms[0].options.rate-pps: 0 is out of range 1..1000000");
	expect_error(doc1(ID, MAC, IP, "\"options\": {\"rate-pps\": 1000001}"),
		     "t.json:6:25: vms[0].options.rate-pps: 1000001 is out of range 1..1000000");
	expect_error(doc1(ID, MAC, IP, "\"options\": {\"rate-burst\": -5}"),
		     "t.json:6:27: vms[0].options.rate-burst: -5 is out of range 1..1000000");
	expect_error(doc1(ID, MAC, IP, "\"options\": {\"rate-burst\": 4294967346}"),
		     "t.json:6:27: vms[0].options.rate-burst: 4294967346 is out of range 1..1000000");
	expect_error(doc1(ID, MAC, IP, "\"options\": {\"rate-pps\": \"100\"}"),
		     "t.json:6:25: vms[0].options.rate-pps: expected an integer, not a string");
	/* Absent: 0, which the data plane reads as its default. */
	text = doc1(ID, MAC, IP, NULL);
	parse_ok(text, &set);
	assert_int_equal(set.vms[0].rate_pps, 0);
	assert_int_equal(set.vms[0].rate_burst, 0);
	vmconf_free(&set);
	free(text);
	text = doc1(ID, MAC, IP, "\"options\": {\"rate-pps\": 1, \"rate-burst\": 1000000}");
	parse_ok(text, &set);
	assert_int_equal(set.vms[0].rate_pps, 1);
	assert_int_equal(set.vms[0].rate_burst, 1000000);
	vmconf_free(&set);
	free(text);
}

#define CREDS                                                                                                        \
	"\"credentials\": {\"access-key-id\": \"ASIAEXAMPLEKEY000001\", \"secret-access-key\": \"s\", \"token\": \"t\","   \
	" \"expiration\": \"2026-01-01T06:00:00Z\"}"
#define ARN "\"instance-profile-arn\": \"arn:aws:iam::123456789012:instance-profile/p\""

static void test_iam(void **state)
{
	struct vm_set set;
	char *text;

	(void)state;
	text = doc1(ID, MAC, IP, "\"iam\": {\"role\": \"web-role\", " ARN ", \"account-id\": \"123456789012\", " CREDS "}");
	parse_ok(text, &set);
	assert_string_equal(set.vms[0].iam->role, "web-role");
	assert_string_equal(set.vms[0].iam->account_id, "123456789012");
	assert_string_equal(set.vms[0].iam->expiration, "2026-01-01T06:00:00Z");
	assert_null(set.vms[0].iam->profile_id);
	/* last-updated defaults to the load time, in the same form */
	assert_int_equal(vmconf_check_time(set.vms[0].iam->last_updated, strlen(set.vms[0].iam->last_updated)), 0);
	vmconf_free(&set);
	free(text);

	expect_error(doc1(ID, MAC, IP, "\"iam\": {\"role\": \"bad role\", " ARN ", " CREDS "}"),
		     "t.json:6:17: vms[0].iam.role: \"bad role\": character 4 is not allowed in a role name");
	expect_error(doc1(ID, MAC, IP, "\"iam\": {\"role\": \"r\", \"instance-profile-arn\": \"arn:aws:iam::1234:role/p\", " CREDS "}"),
		     "t.json:6:46: vms[0].iam.instance-profile-arn: \"arn:aws:iam::1234:role/p\" is not an instance profile ARN "
		     "(arn:PARTITION:iam::ACCOUNT:instance-profile/NAME)");
	expect_error(doc1(ID, MAC, IP, "\"iam\": {\"role\": \"r\", " ARN ", \"account-id\": \"210987654321\", " CREDS "}"),
		     "t.json:6:108: vms[0].iam.account-id: \"210987654321\" differs from the account 123456789012 of "
		     "instance-profile-arn");
	expect_error(doc1(ID, MAC, IP, "\"iam\": {\"role\": \"r\", " ARN "}"),
		     "t.json:6:8: vms[0].iam: missing required field \"credentials\"");
	expect_error(doc1(ID, MAC, IP, "\"iam\": {\"role\": \"r\", " ARN ", \"Credentials\": 1, " CREDS "}"),
		     "t.json:6:109: vms[0].iam.Credentials: unknown field");
	expect_error(doc1(ID, MAC, IP, "\"iam\": {\"role\": \"r\", " ARN ", \"credentials\": {\"access-key-id\": \"short\"}}"),
		     "t.json:6:127: vms[0].iam.credentials.access-key-id: \"short\" must be 16 to 128 characters long");
	/* botocore parses Expiration with "%Y-%m-%dT%H:%M:%SZ": no fraction */
	expect_error(doc1(ID, MAC, IP,
			  "\"iam\": {\"role\": \"r\", " ARN ", \"credentials\": {\"access-key-id\": \"ASIAEXAMPLEKEY000001\","
			  " \"secret-access-key\": \"s\", \"token\": \"t\", \"expiration\": \"2026-01-01T06:00:00.000Z\"}}"),
		     "t.json:6:205: vms[0].iam.credentials.expiration: \"2026-01-01T06:00:00.000Z\" is not a valid UTC time of "
		     "the form YYYY-MM-DDTHH:MM:SSZ");
	expect_error(doc1(ID, MAC, IP, "\"iam\": {\"role\": \"r\", " ARN ", \"last-updated\": \"2025-02-29T00:00:00Z\", " CREDS "}"),
		     "t.json:6:110: vms[0].iam.last-updated: \"2025-02-29T00:00:00Z\" is not a valid UTC time of the form "
		     "YYYY-MM-DDTHH:MM:SSZ");
	expect_error(doc1(ID, MAC, IP, "\"meta-data\": {\"iam\": {}}, \"iam\": {\"role\": \"r\", " ARN ", " CREDS "}"),
		     "t.json:6:22: vms[0].meta-data.iam: the IAM role is given here and in vms[0].iam; keep one");
}

/* The VM's interface is derived under its lower-case MAC; an upper-case
 * key would be a second directory for it. */
static void test_meta_data_mac_keys(void **state)
{
	(void)state;
	expect_error(doc1(ID, MAC, IP, "\"meta-data\": {\"a \": \"x\"}"),
		     "t.json:6:21: vms[0].meta-data.a : key must not start or end with a space");
	expect_ok(doc1(ID, MAC, IP, "\"meta-data\": {\"a b\": \"x\"}"));
	expect_error(doc1(ID, MAC, IP, "\"meta-data\": {\"network\": {\"interfaces\": {\"macs\": {\"52:54:00:AA:00:01\": {}}}}}"),
		     "t.json:6:72: vms[0].meta-data.network.interfaces.macs.52:54:00:AA:00:01: MAC \"52:54:00:AA:00:01\" "
		     "must be written in lower case, as EC2 lists it (\"52:54:00:aa:00:01\")");
	expect_ok(doc1(ID, MAC, IP, "\"meta-data\": {\"network\": {\"interfaces\": {\"macs\": {\"52:54:00:aa:00:01\": {},"
				    " \"not-a-mac\": \"x\"}}}}"));
}

static void test_check_time(void **state)
{
	static const char *const good[] = { "2026-12-02T15:00:00Z", "2024-02-29T23:59:59Z", "2000-02-29T00:00:00Z" };
	static const char *const bad[] = { "2026-12-02T15:00:00", "2026-12-02 15:00:00Z", "2026-12-02T15:00:00.5Z",
					   "2026-13-02T15:00:00Z", "2026-04-31T15:00:00Z", "2026-12-02T24:00:00Z",
					   "2026-12-02T15:60:00Z", "1900-02-29T00:00:00Z", "2026-12-02t15:00:00Z",
					   "+026-12-02T15:00:00Z", "2026-12-02T15:00:00+00:00" };

	(void)state;
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		assert_int_equal(vmconf_check_time(good[i], strlen(good[i])), 0);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (vmconf_check_time(bad[i], strlen(bad[i])) != -EINVAL)
			fail_msg("%s accepted", bad[i]);
}

static void test_tags(void **state)
{
	struct vm_set set;
	char *text;

	(void)state;
	text = doc1(ID, MAC, IP, "\"tags\": {\"Name\": \"web 1/2\", \"aws:cloudformation:stack-name\": \"s\", \"a+b-c=d.e,f_g@h\": \"\"}");
	parse_ok(text, &set);
	assert_int_equal(json_object_size(set.vms[0].tags), 3);
	vmconf_free(&set);
	free(text);

	expect_error(doc1(ID, MAC, IP, "\"tags\": {\"Name\": \"x\", \"a b\": \"y\"}"),
		     "t.json:6:30: vms[0].tags.a b: tag key \"a b\": character 2 is not one of A-Z a-z 0-9 + - = . , _ : @");
	expect_error(doc1(ID, MAC, IP, "\"tags\": {\"k/x\": \"v\"}"),
		     "t.json:6:17: vms[0].tags.k/x: tag key \"k/x\": character 2 is not one of A-Z a-z 0-9 + - = . , _ : @");
	expect_error(doc1(ID, MAC, IP, "\"tags\": {\"_index\": \"y\"}"),
		     "t.json:6:20: vms[0].tags._index: tag key \"_index\" is reserved (\".\", \"..\" and \"_index\" are)");
	expect_error(doc1(ID, MAC, IP, "\"tags\": {\"..\": \"y\"}"),
		     "t.json:6:16: vms[0].tags[\"..\"]: tag key \"..\" is reserved (\".\", \"..\" and \"_index\" are)");
	expect_error(doc1(ID, MAC, IP, "\"tags\": {\"\": \"v\"}"),
		     "t.json:6:14: vms[0].tags[\"\"]: tag key \"\" must be 1 to 128 characters long");
	expect_error(doc1(ID, MAC, IP, "\"tags\": {\"k\": 1}"), "t.json:6:15: vms[0].tags.k: expected a string, not an integer");
	expect_error(doc1(ID, MAC, IP, "\"tags\": {\"k\": \"a\\nb\"}"),
		     "t.json:6:15: vms[0].tags.k: tag value must not contain control characters (byte 2)");
	expect_error(doc1(ID, MAC, IP, "\"tags\": []"), "t.json:6:9: vms[0].tags: expected an object, not an array");
	expect_error(doc1(ID, MAC, IP, "\"meta-data\": {\"tags\": {\"instance\": {}}}"),
		     "t.json:6:23: vms[0].meta-data.tags: give tags in vms[0].tags (served when "
		     "options.instance-metadata-tags is \"enabled\")");
	expect_error(doc1(ID, MAC, IP, "\"options\": {\"instance-metadata-tags\": \"on\"}"),
		     "t.json:6:39: vms[0].options.instance-metadata-tags: \"on\" is not \"enabled\" or \"disabled\"");
	expect_error(doc1(ID, MAC, IP, "\"options\": {\"proxied-token-requests\": true}"),
		     "t.json:6:39: vms[0].options.proxied-token-requests: expected a string, not true");
}

static void test_meta_data(void **state)
{
	char *big, *text;
	size_t n = 0;

	(void)state;
	expect_error(doc1(ID, MAC, IP, "\"meta-data\": {\"a\": {\"b\": null}}"),
		     "t.json:6:26: vms[0].meta-data.a.b: null is not allowed: use a string, a number, an object or an "
		     "array of strings");
	expect_error(doc1(ID, MAC, IP, "\"meta-data\": {\"flag\": true}"),
		     "t.json:6:23: vms[0].meta-data.flag: true is not allowed: use a string, a number, an object or an "
		     "array of strings");
	expect_error(doc1(ID, MAC, IP, "\"meta-data\": {\"sg\": [\"a\", 1]}"),
		     "t.json:6:27: vms[0].meta-data.sg[1]: expected a string (arrays are lists of strings), not an integer");
	expect_error(doc1(ID, MAC, IP, "\"meta-data\": {\"a/b\": \"x\"}"),
		     "t.json:6:22: vms[0].meta-data.a/b: key must not contain '/'");
	expect_error(doc1(ID, MAC, IP, "\"meta-data\": {\"..\": \"x\"}"),
		     "t.json:6:21: vms[0].meta-data[\"..\"]: key must not be \".\" or \"..\"");
	expect_error(doc1(ID, MAC, IP, "\"meta-data\": {\"x\": {\"\": \"x\"}}"),
		     "t.json:6:25: vms[0].meta-data.x[\"\"]: empty key");
	expect_error(doc1(ID, MAC, IP, "\"meta-data\": {\"a\\nb\": 1}"),
		     "t.json:6:23: vms[0].meta-data[\"a\\u000ab\"]: key must not contain control characters");
	expect_error(doc1(ID, MAC, IP, "\"meta-data\": \"x\""),
		     "t.json:6:14: vms[0].meta-data: expected an object, not a string");
	/* A key with a dot next to a nested path of the same spelling: the
	 * position is that of the value the message is about. */
	expect_error(doc1(ID, MAC, IP, "\"meta-data\": {\"a\": {\"b\": 1},\n\"a.b\": null}"),
		     "t.json:7:8: vms[0].meta-data[\"a.b\"]: null is not allowed: use a string, a number, an object or "
		     "an array of strings");
	/* Tree paths are limited: ec2/meta-data/ (14) + key. */
	big = malloc(TREE_PATH_MAX + 64);
	n += (size_t)sprintf(big, "\"meta-data\": {\"");
	memset(big + n, 'k', TREE_PATH_MAX - 14);
	n += TREE_PATH_MAX - 14;
	strcpy(big + n, "\": \"fits\"}");
	expect_ok(doc1(ID, MAC, IP, big));
	strcpy(big + n, "x\": \"too long\"}");
	text = doc1(ID, MAC, IP, big);
	{
		struct vm_set set;
		struct conf_error err;

		assert_int_equal(vmconf_parse("t.json", text, strlen(text), &set, &err), -EINVAL);
		assert_non_null(strstr(err.text, "t.json:6:14: vms[0].meta-data: key \"kkkk"));
		assert_non_null(strstr(err.text, "...\" makes a metadata path longer than 1024 bytes"));
	}
	free(text);
	free(big);
	expect_ok(doc1(ID, MAC, IP, "\"meta-data\": {\"n\": 1, \"r\": 1.5, \"e\": {}, \"l\": [], \".x\": \"dot\"}"));
}

static void test_user_data(void **state)
{
	struct vm_set set;
	char *text, *big;

	(void)state;
	expect_error(doc1(ID, MAC, IP, "\"user-data-base64\": \"aGVsbG8*\""),
		     "t.json:6:21: vms[0].user-data-base64: not valid base64: unexpected '*' at offset 7");
	expect_error(doc1(ID, MAC, IP, "\"user-data-base64\": \"aGVsbG8\""),
		     "t.json:6:21: vms[0].user-data-base64: not valid base64: the input ends inside a 4-character group");
	expect_error(doc1(ID, MAC, IP, "\"user-data-base64\": \"aA==aA==\""),
		     "t.json:6:21: vms[0].user-data-base64: not valid base64: unexpected 'a' at offset 4");
	expect_error(doc1(ID, MAC, IP, "\"user-data-base64\": \"a===\""),
		     "t.json:6:21: vms[0].user-data-base64: not valid base64: unexpected '=' at offset 1");
	expect_error(doc1(ID, MAC, IP, "\"user-data\": \"x\", \"user-data-base64\": \"eA==\""),
		     "t.json:6:39: vms[0].user-data-base64: give \"user-data\" or \"user-data-base64\", not both");
	expect_error(doc1(ID, MAC, IP, "\"user-data\": 1"), "t.json:6:14: vms[0].user-data: expected a string, not an integer");

	/* Wrapped base64 (as `base64` prints it) decodes; bytes may be binary. */
	text = doc1(ID, MAC, IP, "\"user-data-base64\": \"AAEC\\n/w==\\n\"");
	parse_ok(text, &set);
	assert_int_equal(set.vms[0].user_data_len, 4);
	assert_memory_equal(set.vms[0].user_data, "\x00\x01\x02\xff", 4);
	vmconf_free(&set);
	free(text);

	/* Exactly the limit is fine, one more byte is not. */
	big = malloc(VMCONF_USER_DATA_MAX * 2); /* room for the base64 case too */
	strcpy(big, "\"user-data\": \"");
	memset(big + 14, 'u', VMCONF_USER_DATA_MAX);
	strcpy(big + 14 + VMCONF_USER_DATA_MAX, "\"");
	text = doc1(ID, MAC, IP, big);
	parse_ok(text, &set);
	assert_int_equal(set.vms[0].user_data_len, VMCONF_USER_DATA_MAX);
	vmconf_free(&set);
	free(text);
	strcpy(big + 14 + VMCONF_USER_DATA_MAX, "u\"");
	expect_error(doc1(ID, MAC, IP, big), "t.json:6:14: vms[0].user-data: user data is 16385 bytes, more than the 16384 allowed");
	/* 16386 bytes of zeros, base64-encoded: the decoded size counts. */
	strcpy(big, "\"user-data-base64\": \"");
	for (int i = 0; i < 5462; i++)
		memcpy(big + 21 + 4 * i, "AAAA", 4);
	strcpy(big + 21 + 4 * 5462, "\"");
	expect_error(doc1(ID, MAC, IP, big),
		     "t.json:6:21: vms[0].user-data-base64: user data is 16386 bytes, more than the 16384 allowed");
	free(big);
}

/* options.user-data-max raises one VM's limit above EC2's 16 KiB. */
static void test_user_data_max(void **state)
{
	const size_t max = 32768;
	struct vm_set set;
	char *text, *big = malloc(max + 64);
	int n = sprintf(big, "\"options\": {\"user-data-max\": %zu},\n\"user-data\": \"", max);

	(void)state;
	memset(big + n, 'u', max);
	strcpy(big + n + max, "\"");
	text = doc1(ID, MAC, IP, big);
	parse_ok(text, &set);
	assert_int_equal(set.vms[0].user_data_len, max);
	assert_int_equal(set.vms[0].user_data_max, max);
	vmconf_free(&set);
	free(text);
	strcpy(big + n + max, "u\"");
	expect_error(doc1(ID, MAC, IP, big), "t.json:7:14: vms[0].user-data: user data is 32769 bytes, more than the 32768 allowed");
	free(big);
	expect_error(doc1(ID, MAC, IP, "\"options\": {\"user-data-max\": 100}"),
		     "t.json:6:30: vms[0].options.user-data-max: 100 is out of range 16384..1048576");
	expect_error(doc1(ID, MAC, IP, "\"options\": {\"user-data-max\": 2000000}"),
		     "t.json:6:30: vms[0].options.user-data-max: 2000000 is out of range 16384..1048576");
}

static void test_public_keys(void **state)
{
	struct vm_set set;
	char *text;

	(void)state;
	expect_error(doc1(ID, MAC, IP, "\"public-keys\": [{\"name\": \"a=b\", \"openssh-key\": \"k\"}]"),
		     "t.json:6:26: vms[0].public-keys[0].name: \"a=b\" must not contain '=' or control characters");
	expect_error(doc1(ID, MAC, IP, "\"public-keys\": [{\"name\": \"a\\nb\", \"openssh-key\": \"k\"}]"),
		     "t.json:6:26: vms[0].public-keys[0].name: \"a\\u000ab\" must not contain '=' or control characters");
	expect_error(doc1(ID, MAC, IP, "\"public-keys\": [{\"name\": \"a\", \"openssh-key\": \"k\"}, {\"name\": \"b\"}]"),
		     "t.json:6:52: vms[0].public-keys[1]: missing required field \"openssh-key\"");
	expect_error(doc1(ID, MAC, IP, "\"public-keys\": [{\"name\": \"a\", \"openssh-key\": \"\"}]"),
		     "t.json:6:46: vms[0].public-keys[0].openssh-key: the key must not be empty");
	expect_error(doc1(ID, MAC, IP, "\"public-keys\": [{\"name\": \"a\", \"openssh-key\": \"k\", \"type\": 1}]"),
		     "t.json:6:59: vms[0].public-keys[0].type: unknown field");
	expect_error(doc1(ID, MAC, IP,
			  "\"public-keys\": [{\"name\": \"a\", \"openssh-key\": \"k\"},\n{\"name\": \"a\", \"openssh-key\": \"j\"}]"),
		     "t.json:7:10: vms[0].public-keys[1].name: \"a\" duplicates vms[0].public-keys[0].name");
	expect_error(doc1(ID, MAC, IP, "\"public-keys\": {}"),
		     "t.json:6:16: vms[0].public-keys: expected an array, not an object");
	expect_error(doc1(ID, MAC, IP,
			  "\"meta-data\": {\"public-keys\": {}},\n\"public-keys\": [{\"name\": \"a\", \"openssh-key\": \"k\"}]"),
		     "t.json:6:30: vms[0].meta-data.public-keys: public keys are given here and in "
		     "vms[0].public-keys; keep one");
	text = doc1(ID, MAC, IP, "\"public-keys\": [{\"openssh-key\": \"ssh-rsa AAAA x\", \"name\": \"ops key\"}]");
	parse_ok(text, &set);
	assert_int_equal(set.vms[0].n_keys, 1);
	assert_string_equal(set.vms[0].keys[0].name, "ops key");
	assert_string_equal(set.vms[0].keys[0].openssh_key, "ssh-rsa AAAA x");
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
	assert_string_equal(err.text, EXAMPLE ":75:14: vms[2].mac: \"52:54:00:77:00:03\" is already used by i-9");
	vmconf_error_at(&set, &err, "vms[1].meta-data.placement.availability-zone", "x");
	assert_string_equal(err.text, EXAMPLE ":61:32: vms[1].meta-data.placement.availability-zone: x");
	vmconf_error_at(&set, &err, "vms[7].mac", "gone");
	assert_string_equal(err.text, EXAMPLE ": vms[7].mac: gone");
	vmconf_free(&set);
}

/* --- jsonpos --- */

static void expect_pos(const char *text, const char *path, int line, int col)
{
	size_t off;
	int l, c;

	if (jsonpos_find(text, strlen(text), path, &off))
		fail_msg("%s not found", path);
	jsonpos_line_col(text, strlen(text), off, &l, &c);
	assert_int_equal(l, line);
	assert_int_equal(c, col);
}

static void test_jsonpos(void **state)
{
	static const char text[] = "{\"a\": [1, {\"b\": \"x]}\"}, [2, 3]],\n"
				   " \"k\\u002ey\": {\"\\\"q\": true},\n"
				   " \"\xc3\xa9t\xc3\xa9\": \"\xc3\xa9\", \"z\" : 0.5e3 , \"a.b\": null}";
	char path[64];
	size_t off;

	(void)state;
	expect_pos(text, "", 1, 1);
	expect_pos(text, "a", 1, 7);
	expect_pos(text, "a[0]", 1, 8);
	expect_pos(text, "a[1].b", 1, 17);
	expect_pos(text, "a[2]", 1, 25);
	expect_pos(text, "a[2][1]", 1, 29);
	expect_pos(text, "[\"k.y\"][\"\\\"q\"]", 2, 22);
	expect_pos(text, "k.y", 2, 14); /* hand-written dotted key: found by trying */
	expect_pos(text, "\xc3\xa9t\xc3\xa9", 3, 9); /* columns count characters */
	expect_pos(text, "z", 3, 20);
	expect_pos(text, "[\"a.b\"]", 3, 35);
	assert_int_equal(jsonpos_find(text, strlen(text), "a[3]", &off), -ENOENT);
	assert_int_equal(jsonpos_find(text, strlen(text), "a[1].c", &off), -ENOENT);
	assert_int_equal(jsonpos_find(text, strlen(text), "nope", &off), -ENOENT);
	assert_int_equal(jsonpos_find(text, strlen(text), "a.b.c", &off), -ENOENT);
	assert_int_equal(jsonpos_find(text, strlen(text), "a[x]", &off), -ENOENT);
	/* Truncated text: no match, no overrun. */
	for (size_t cut = 0; cut < strlen(text); cut++) {
		char *copy = malloc(cut ? cut : 1);

		memcpy(copy, text, cut);
		jsonpos_find(copy, cut, "a.b", &off);
		if (jsonpos_find(copy, cut, "[\"a.b\"]", &off) == 0)
			assert_true(off < cut);
		free(copy);
	}

	assert_int_equal(jsonpos_append_key(path, sizeof(path), 0, "vms"), 3);
	assert_int_equal(jsonpos_append_key(path, sizeof(path), 3, "a.b"), 10);
	assert_string_equal(path, "vms[\"a.b\"]");
	jsonpos_append_key(path, sizeof(path), 10, "x");
	jsonpos_append_key(path, sizeof(path), 12, "q\"\x01");
	assert_string_equal(path, "vms[\"a.b\"].x[\"q\\\"\\u0001\"]");
	assert_int_equal(jsonpos_append_key(path, 8, 0, "0123456789"), 10);
	assert_string_equal(path, "0123456");
}

/* vmconf_meta_lookup: '/'-separated, a trailing '/' ignored, NULL when a
 * step is absent or not an object. */
static void test_meta_lookup(void **state)
{
	struct vm_set set;
	char *text = doc1(ID, MAC, IP, "\"meta-data\": {\"placement\": {\"region\": \"r-1\"}, \"ami-id\": \"a\"}");
	const struct vm_desc *vm;
	const json_t *v;

	(void)state;
	parse_ok(text, &set);
	vm = &set.vms[0];
	v = vmconf_meta_lookup(vm, "placement/region");
	assert_non_null(v);
	assert_string_equal(json_string_value(v), "r-1");
	assert_ptr_equal(vmconf_meta_lookup(vm, "placement/"), json_object_get(vm->meta_data, "placement"));
	assert_ptr_equal(vmconf_meta_lookup(vm, ""), vm->meta_data);
	assert_null(vmconf_meta_lookup(vm, "placement/zone"));
	assert_null(vmconf_meta_lookup(vm, "ami-id/x"));
	assert_null(vmconf_meta_lookup(vm, "nothing"));
	vmconf_free(&set);
	free(text);
	/* no meta-data at all */
	text = doc1(ID, MAC, IP, NULL);
	parse_ok(text, &set);
	assert_null(vmconf_meta_lookup(&set.vms[0], "placement/region"));
	vmconf_free(&set);
	free(text);
}

static int schema_seen_b;

static int schema_check_b(struct schema_ctx *c, void *target, json_t *v, const char *path)
{
	(void)c, (void)target, (void)v, (void)path;
	schema_seen_b++;
	return 0;
}

static int schema_check_a(struct schema_ctx *c, void *target, json_t *v, const char *path)
{
	(void)target;
	return json_is_integer(v) ? 0 : schema_expect(c, path, v, "an integer");
}

/* The schema layer alone: unknown keys before any check, then the table's
 * order; positions when the text is given, none without. */
static void test_schema_object(void **state)
{
	static const struct schema_field f[] = {
		{ "a", true, schema_check_a },
		{ "b", false, schema_check_b },
	};
	const char *text = "{\"b\": 1,\n \"a\": \"x\"}";
	json_t *obj = json_loads(text, 0, NULL);
	char err[256], q[SCHEMA_QUOTE_MAX];
	struct schema_ctx c = { .source = "s.json", .text = text, .text_len = strlen(text), .err = err,
				.errlen = sizeof(err) };

	(void)state;
	assert_int_equal(schema_object(&c, NULL, obj, "", f, 2, "field"), -EINVAL);
	assert_string_equal(err, "s.json:2:7: a: expected an integer, not a string");
	assert_int_equal(schema_seen_b, 0);
	json_object_set_new(obj, "c", json_true());
	assert_int_equal(schema_object(&c, NULL, obj, "", f, 2, "field"), -EINVAL);
	assert_string_equal(err, "s.json: c: unknown field"); /* not in the text */
	json_object_del(obj, "c");
	json_object_del(obj, "a");
	c.text = NULL;
	assert_int_equal(schema_object(&c, NULL, obj, "x", f, 2, "option"), -EINVAL);
	assert_string_equal(err, "s.json: x: missing required option \"a\"");
	json_decref(obj);
	schema_quote("a\"b\x01", 4, q);
	assert_string_equal(q, "\"a\\\"b\\u0001\"");
}

/* --- port and port-binding --- */

static void test_port(void **state)
{
	struct vm_set set;
	char *text;

	(void)state;
	text = doc1(ID, MAC, IP, "\"port\": \"vnet7\", \"options\": {\"port-binding\": \"pinned\"}");
	parse_ok(text, &set);
	assert_string_equal(set.vms[0].port, "vnet7");
	assert_false(set.vms[0].first_use);
	vmconf_free(&set);
	free(text);
	text = doc1(ID, MAC, IP, "\"options\": {\"port-binding\": \"first-use\"}");
	parse_ok(text, &set);
	assert_string_equal(set.vms[0].port, "");
	assert_true(set.vms[0].first_use);
	vmconf_free(&set);
	free(text);
	expect_ok(doc1(ID, MAC, IP, "\"port\": \"123456789012345\""));
	expect_error(doc1(ID, MAC, IP, "\"port\": \"1234567890123456\""),
		     "t.json:6:9: vms[0].port: \"1234567890123456\" must be 1 to 15 bytes long");
	expect_error(doc1(ID, MAC, IP, "\"port\": \"vnet:1\""),
		     "t.json:6:9: vms[0].port: \"vnet:1\" must be a network interface name (printable ASCII without "
		     "'/', ':' or spaces)");
	expect_error(doc1(ID, MAC, IP, "\"port\": \"..\""),
		     "t.json:6:9: vms[0].port: \"..\" is not a network interface name");
	expect_error(doc1(ID, MAC, IP, "\"port\": 7"), "t.json:6:9: vms[0].port: expected a string, not an integer");
	expect_error(doc1(ID, MAC, IP, "\"options\": {\"port-binding\": \"first\"}"),
		     "t.json:6:29: vms[0].options.port-binding: \"first\" is not \"first-use\" or \"pinned\"");
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
		cmocka_unit_test(test_options),
		cmocka_unit_test(test_port),
		cmocka_unit_test(test_rate_options),
		cmocka_unit_test(test_meta_data),
		cmocka_unit_test(test_user_data),
		cmocka_unit_test(test_user_data_max),
		cmocka_unit_test(test_public_keys),
		cmocka_unit_test(test_iam),
		cmocka_unit_test(test_meta_data_mac_keys),
		cmocka_unit_test(test_check_time),
		cmocka_unit_test(test_tags),
		cmocka_unit_test(test_duplicates),
		cmocka_unit_test(test_error_at),
		cmocka_unit_test(test_jsonpos),
		cmocka_unit_test(test_meta_lookup),
		cmocka_unit_test(test_schema_object),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

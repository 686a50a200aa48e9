/* test_vmconf_options.c: a VM record's options (http-tokens, hop-limit,
 * rate-pps and rate-burst, user-data-max, port-binding), its port and its
 * IAM role with credentials and their UTC times: the values kept and each
 * error's exact message, LINE:COL included. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compile/vmconf.h"
#include "vmconf_harness.h"

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

/* ipv6-router: a boolean, false unless given. */
static void test_ipv6_router(void **state)
{
	struct vm_set set;
	char *text;

	(void)state;
	text = doc1(ID, MAC, IP, "\"options\": {\"ipv6-router\": true}");
	parse_ok(text, &set);
	assert_true(set.vms[0].ipv6_router);
	vmconf_free(&set);
	free(text);
	text = doc1(ID, MAC, IP, "\"options\": {}");
	parse_ok(text, &set);
	assert_false(set.vms[0].ipv6_router);
	vmconf_free(&set);
	free(text);
	expect_error(doc1(ID, MAC, IP, "\"options\": {\"ipv6-router\": \"yes\"}"),
		     "t.json:6:28: vms[0].options.ipv6-router: expected true or false, not a string");
}

/* --- IAM --- */

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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_options),
		cmocka_unit_test(test_rate_options),
		cmocka_unit_test(test_user_data_max),
		cmocka_unit_test(test_port),
		cmocka_unit_test(test_ipv6_router),
		cmocka_unit_test(test_iam),
		cmocka_unit_test(test_check_time),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

/* test_vmconf_data.c: what a VM record gives to be served: meta-data (value
 * types, keys, path lengths, MAC keys), user data (plain, base64, the
 * size limit), public keys and tags, with each error's exact message,
 * LINE:COL included; and vmconf_meta_lookup over the parsed meta-data. */
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
#include "lib/tree.h"
#include "vmconf_harness.h"

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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_meta_data),
		cmocka_unit_test(test_user_data),
		cmocka_unit_test(test_public_keys),
		cmocka_unit_test(test_meta_data_mac_keys),
		cmocka_unit_test(test_tags),
		cmocka_unit_test(test_meta_lookup),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

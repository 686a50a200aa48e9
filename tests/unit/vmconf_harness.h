/* vmconf_harness.h: one-VM documents with each required field on a known
 * line, and checks that a document parses or fails with an exact message,
 * for the vmconf unit tests.  Include after cmocka.h. */
#ifndef IMDS_TEST_VMCONF_HARNESS_H
#define IMDS_TEST_VMCONF_HARNESS_H
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compile/vmconf.h"

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

#endif

/* test_namelist.c: the --bridge / IMDS_BRIDGES lists (user/lib/namelist.c):
 * every separator, repeated options adding up, patterns, and the entries
 * refused with the entry named. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "lib/namelist.h"

static void test_separators_and_repeats(void **state)
{
	struct namelist l = { 0 };
	char err[128] = "";

	(void)state;
	assert_int_equal(namelist_add(&l, "virbr0", err, sizeof(err)), 0);
	assert_int_equal(namelist_add(&l, " br0,br1\tbr2\n, br-vlan* ", err, sizeof(err)), 0);
	assert_int_equal(namelist_add(&l, "", err, sizeof(err)), 0); /* an empty IMDS_BRIDGES adds nothing */
	assert_int_equal(l.n, 5);
	assert_string_equal(l.entry[0], "virbr0");
	assert_string_equal(l.entry[1], "br0");
	assert_string_equal(l.entry[3], "br2");
	assert_string_equal(l.entry[4], "br-vlan*");
}

static void test_matching(void **state)
{
	struct namelist l = { 0 };
	char err[128];

	(void)state;
	assert_int_equal(namelist_add(&l, "br0 virbr* tap[0-9]", err, sizeof(err)), 0);
	assert_true(namelist_matches(&l, "br0"));
	assert_false(namelist_matches(&l, "br01"));
	assert_true(namelist_matches(&l, "virbr0"));
	assert_true(namelist_matches(&l, "virbr"));
	assert_true(namelist_matches(&l, "tap7"));
	assert_false(namelist_matches(&l, "tap10"));
	assert_false(namelist_matches(&l, "xvirbr0"));
	assert_true(namelist_is_pattern("virbr*") && namelist_is_pattern("a?") && namelist_is_pattern("[ab]"));
	assert_false(namelist_is_pattern("br-imds"));
}

static void refused(const char *text, int rc, const char *want)
{
	struct namelist l = { 0 };
	char err[128] = "";

	assert_int_equal(namelist_add(&l, text, err, sizeof(err)), rc);
	if (!strstr(err, want))
		fail_msg("error \"%s\" lacks \"%s\"", err, want);
}

static void test_refused_entries_are_named(void **state)
{
	char many[NAMELIST_MAX * 4 + 8] = "";

	(void)state;
	refused("br0 a-name-of-16-bytes", -EINVAL, "\"a-name-of-16-bytes\" is longer than an interface name");
	refused("br/0", -EINVAL, "\"br/0\" is not an interface name");
	refused("ok ..", -EINVAL, "\"..\" is not an interface name");
	for (int i = 0; i <= NAMELIST_MAX; i++)
		snprintf(many + strlen(many), sizeof(many) - strlen(many), "b%d ", i);
	refused(many, -E2BIG, "\"b32\": more than 32 names");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_separators_and_repeats),
		cmocka_unit_test(test_matching),
		cmocka_unit_test(test_refused_entries_are_named),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

/* test_path.c: the path normaliser (user/http/path.c): every way a request
 * target may be spelled (absolute form, repeated slashes, dot segments,
 * percent escapes, query and fragment) and what it refuses. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>

#include "http/path.h"

/* --- path_normalize --- */

static void test_normalize(void **state)
{
	static const struct {
		const char *in;
		const char *out;
	} cases[] = {
		{ "/", "/" },
		{ "//", "/" },
		{ "//latest/meta-data/", "/latest/meta-data/" },
		{ "/latest//meta-data/x", "/latest/meta-data/x" },
		{ "/latest/meta-data", "/latest/meta-data" },
		{ "/a/./b/../c", "/a/c" },
		{ "/a/b/..", "/a/" },
		{ "/a/.", "/a/" },
		{ "/..", "/" },
		{ "/../../a", "/a" },
		{ "/a/../../b/", "/b/" },
		{ "/a?x=/../y", "/a" },
		{ "/a/?x", "/a/" },
		{ "/a#frag/", "/a" },
		{ "/.hidden/..x/...", "/.hidden/..x/..." },
		{ "http://169.254.169.254/latest/", "/latest/" },
		{ "HTTP://169.254.169.254", "/" },
		{ "http://169.254.169.254?x", "/" },
		/* escapes are decoded, then dot segments resolved */
		{ "/latest/meta-data/a%20b", "/latest/meta-data/a b" },
		{ "/x/100%25", "/x/100%" },
		{ "/%6C%61test/", "/latest/" },
		{ "/a/%2e%2E/b", "/b" },
		{ "/a%2Fb", "/a/b" },
		{ "/a%", "/a%" },
		{ "/a%4", "/a%4" },
		{ "/a%zz/", "/a%zz/" },
	};
	char out[64];

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int n = path_normalize(cases[i].in, strlen(cases[i].in), out, sizeof(out));

		if (n < 0 || strcmp(out, cases[i].out) != 0 || (size_t)n != strlen(cases[i].out))
			fail_msg("normalize(\"%s\") = %d \"%s\", want \"%s\"", cases[i].in, n, n < 0 ? "" : out,
				 cases[i].out);
	}
	/* Only the first url_len bytes count. */
	assert_int_equal(path_normalize("/abc/def", 4, out, sizeof(out)), 4);
	assert_string_equal(out, "/abc");
}

static void test_normalize_errors(void **state)
{
	char out[16];

	(void)state;
	assert_int_equal(path_normalize("", 0, out, sizeof(out)), -EINVAL);
	assert_int_equal(path_normalize("latest", 6, out, sizeof(out)), -EINVAL);
	assert_int_equal(path_normalize("*", 1, out, sizeof(out)), -EINVAL);
	assert_int_equal(path_normalize("?x", 2, out, sizeof(out)), -EINVAL);
	assert_int_equal(path_normalize("/a\0b", 4, out, sizeof(out)), -EINVAL);
	assert_int_equal(path_normalize("/a%00b", 6, out, sizeof(out)), -EINVAL);
	/* Output that does not fit: 15 bytes + NUL is the most. */
	assert_int_equal(path_normalize("/0123456789abcd", 15, out, sizeof(out)), 15);
	assert_int_equal(path_normalize("/0123456789abcde", 16, out, sizeof(out)), -EINVAL);
	assert_int_equal(path_normalize("/", 1, out, 1), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_normalize),
		cmocka_unit_test(test_normalize_errors),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

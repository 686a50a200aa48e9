/* test_path.c: the path normaliser (user/http/path.c): every way a request
 * target may be spelled (absolute form, repeated slashes, dot segments,
 * percent escapes, query and fragment) and what it refuses. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
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

/* p has no empty segment but a trailing one, no "." or "..", no '%'. */
static bool is_normal_form(const char *p)
{
	size_t n = strlen(p);

	return !strstr(p, "//") && !strstr(p, "/./") && !strstr(p, "/../") && !strchr(p, '%') &&
	       !(n >= 2 && strcmp(p + n - 2, "/.") == 0) && !(n >= 3 && strcmp(p + n - 3, "/..") == 0);
}

/* Normal paths are copied as they are (path.c), everything else goes the
 * full way: every output is in normal form (so no target that needed a
 * step was copied), and normalising it again gives it back, at every
 * length limit.  Targets from segments that need each step (dots, empty
 * segments, escapes, a query), with and without a trailing '/'. */
static void test_normalize_idempotent(void **state)
{
	static const char *const segs[] = { "a", "", ".", "..", "%2e", "b%20c", "...", ".x", "d?q", "%2F" };
	const size_t nsegs = sizeof(segs) / sizeof(segs[0]);
	char in[64], once[64], twice[64];

	(void)state;
	for (size_t k = 0; k < nsegs * nsegs * nsegs * 2; k++) {
		size_t a = k % nsegs, b = k / nsegs % nsegs, c = k / nsegs / nsegs % nsegs;
		int n1, n2, len = snprintf(in, sizeof(in), "/%s/%s/%s%s", segs[a], segs[b], segs[c],
					   k >= nsegs * nsegs * nsegs ? "/" : "");

		n1 = path_normalize(in, (size_t)len, once, sizeof(once));
		assert_true(n1 > 0);
		if (!is_normal_form(once))
			fail_msg("normalize(\"%s\") = \"%s\": not normal", in, once);
		for (size_t cap = 1; cap <= (size_t)n1 + 1; cap++) {
			n2 = path_normalize(once, (size_t)n1, twice, cap);
			if (cap <= (size_t)n1) {
				assert_int_equal(n2, -EINVAL);
				continue;
			}
			if (n2 != n1 || strcmp(once, twice) != 0)
				fail_msg("normalize(\"%s\") = \"%s\", again \"%s\"", in, once, n2 < 0 ? "" : twice);
		}
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_normalize),
		cmocka_unit_test(test_normalize_errors),
		cmocka_unit_test(test_normalize_idempotent),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

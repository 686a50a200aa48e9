/* test_jsonpos.c: jsonpos (user/lib/jsonpos.c), which finds the position of
 * a value in JSON text by its path for error messages: dotted and quoted
 * keys, array indexes, columns in characters, truncated text, and paths
 * built key by key. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "lib/jsonpos.h"

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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_jsonpos),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

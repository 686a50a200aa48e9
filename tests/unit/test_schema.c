/* test_schema.c: the table-driven object checks (user/lib/schema.c) alone,
 * without vmconf: unknown keys before any check, then the table's order;
 * positions when the text is given, none without; quoting of values. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include <jansson.h>

#include "lib/schema.h"

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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_schema_object),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

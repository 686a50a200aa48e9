/* test_fair.c: one worker's connections by VM, for fair eviction
 * (user/serve/fair.c): counts, the VM holding most, activity order, and a
 * random walk checked against a plain recount. */
#include <errno.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "serve/fair.h"

#define SLOTS 16

static void test_counts_and_top(void **state)
{
	struct fair f;
	struct fair_node a[3], b[2];
	uint32_t n;

	(void)state;
	assert_int_equal(fair_init(&f, SLOTS), 0);
	assert_int_equal(fair_top(&f, &n), 0);
	assert_int_equal(n, 0);
	for (int i = 0; i < 3; i++)
		assert_int_equal(fair_add(&f, &a[i], 5), 0);
	for (int i = 0; i < 2; i++)
		assert_int_equal(fair_add(&f, &b[i], 7), 0);
	assert_int_equal(fair_top(&f, &n), 5);
	assert_int_equal(n, 3);
	assert_int_equal(fair_count(&f, 7), 2);
	fair_remove(&f, &a[0]);
	fair_remove(&f, &a[0]); /* twice: left alone */
	assert_int_equal(fair_count(&f, 5), 2);
	assert_int_equal(fair_top(&f, &n) == 5 || fair_top(&f, &n) == 7, 1);
	assert_int_equal(n, 2);
	assert_int_equal(fair_top_next(&f, fair_top(&f, &n)) != 0, 1); /* both hold 2 */
	fair_remove(&f, &a[1]);
	fair_remove(&f, &a[2]);
	fair_remove(&f, &b[0]);
	fair_remove(&f, &b[1]);
	assert_int_equal(fair_top(&f, &n), 0);
	assert_int_equal(n, 0);
	assert_int_equal(fair_add(&f, &a[0], SLOTS), -EINVAL);
	fair_destroy(&f);
}

static void test_activity_order(void **state)
{
	struct fair f;
	struct fair_node c[4];

	(void)state;
	assert_int_equal(fair_init(&f, SLOTS), 0);
	for (int i = 0; i < 4; i++)
		assert_int_equal(fair_add(&f, &c[i], 3), 0);
	assert_ptr_equal(fair_oldest(&f, 3), &c[0]);
	fair_touch(&f, &c[0]);
	fair_touch(&f, &c[2]);
	/* now 1, 3, 0, 2 */
	assert_ptr_equal(fair_oldest(&f, 3), &c[1]);
	assert_ptr_equal(fair_next(&f, &c[1]), &c[3]);
	assert_ptr_equal(fair_next(&f, &c[3]), &c[0]);
	assert_ptr_equal(fair_next(&f, &c[0]), &c[2]);
	assert_null(fair_next(&f, &c[2]));
	fair_remove(&f, &c[1]);
	assert_ptr_equal(fair_oldest(&f, 3), &c[3]);
	assert_null(fair_oldest(&f, 4));
	fair_destroy(&f);
}

/* Thousands of adds and removes over many slots, beyond the first bucket
 * array: the top is always the true maximum. */
static void test_random_walk(void **state)
{
	enum { NODES = 3000 };
	static struct fair_node nodes[NODES];
	static bool in[NODES];
	uint32_t count[SLOTS] = { 0 }, top, max;
	struct fair f;

	(void)state;
	srand(12);
	assert_int_equal(fair_init(&f, SLOTS), 0);
	for (int step = 0; step < 200000; step++) {
		int i = rand() % NODES;
		uint32_t slot = 1 + (uint32_t)(i % 5 == 0 ? 1 : rand() % (SLOTS - 1));

		if (in[i]) {
			count[nodes[i].slot]--;
			fair_remove(&f, &nodes[i]);
		} else {
			assert_int_equal(fair_add(&f, &nodes[i], slot), 0);
			count[slot]++;
		}
		in[i] = !in[i];
		max = 0;
		for (int s = 0; s < SLOTS; s++)
			max = count[s] > max ? count[s] : max;
		top = fair_top(&f, &max);
		assert_int_equal(top ? count[top] : 0, max);
		for (int s = 0; s < SLOTS; s++)
			assert_true(count[s] <= max);
	}
	fair_destroy(&f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_counts_and_top),
		cmocka_unit_test(test_activity_order),
		cmocka_unit_test(test_random_walk),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

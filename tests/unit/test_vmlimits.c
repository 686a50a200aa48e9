/* test_limits.c: per-VM request budget and connection cap (user/limits.c). */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "imds.h"
#include "serve/vmlimits.h"

#define SEC LIMITS_NS_PER_SEC
#define T0 (1000 * SEC) /* an arbitrary monotonic clock reading */

/* Requests served out of `tries` made at `now`, charged to slot 1. */
static unsigned serve_at(struct limits *l, uint64_t now, unsigned tries, uint32_t rate, uint32_t burst)
{
	unsigned served = 0;

	for (unsigned i = 0; i < tries; i++)
		served += limits_charge(l, 1, rate, burst, now) == 0;
	return served;
}

static void test_resolve_defaults(void **state)
{
	struct limits_params p = limits_resolve(0, 0, 0);

	(void)state;
	assert_int_equal(p.rate, IMDS_DEFAULT_REQUEST_RATE);
	assert_int_equal(p.burst, IMDS_DEFAULT_REQUEST_BURST);
	assert_int_equal(p.max_conns, IMDS_DEFAULT_MAX_CONNS);
	p = limits_resolve(20, 5, 4);
	assert_int_equal(p.rate, 20);
	assert_int_equal(p.burst, 5);
	assert_int_equal(p.max_conns, 4);
}

static void test_burst_then_429(void **state)
{
	struct limits *l = limits_new(8);
	uint64_t wait;

	(void)state;
	assert_non_null(l);
	/* A fresh bucket is full: exactly `burst` requests at one instant. */
	assert_int_equal(serve_at(l, T0, 20, 20, 20), 20);
	/* The next one must wait one interval (1/20 s). */
	wait = limits_charge(l, 1, 20, 20, T0);
	assert_int_equal(wait, SEC / 20);
	/* Another slot is untouched. */
	assert_int_equal(limits_charge(l, 2, 20, 20, T0), 0);
	limits_free(l);
}

static void test_refill_one_interval(void **state)
{
	struct limits *l = limits_new(8);

	(void)state;
	assert_int_equal(serve_at(l, T0, 10, 10, 10), 10);
	/* Just short of one interval: still nothing; at it: exactly one. */
	assert_int_not_equal(limits_charge(l, 1, 10, 10, T0 + SEC / 10 - 1), 0);
	assert_int_equal(serve_at(l, T0 + SEC / 10, 5, 10, 10), 1);
	/* Half a second later: five more. */
	assert_int_equal(serve_at(l, T0 + SEC / 10 + SEC / 2, 50, 10, 10), 5);
	limits_free(l);
}

static void test_quiet_spell_fills_to_burst_only(void **state)
{
	struct limits *l = limits_new(8);

	(void)state;
	assert_int_equal(serve_at(l, T0, 100, 100, 7), 7);
	/* An hour of silence gives back the burst, not an hour of budget. */
	assert_int_equal(serve_at(l, T0 + 3600 * SEC, 1000, 100, 7), 7);
	limits_free(l);
}

/* A client asking every millisecond for 10 s gets burst + rate x 10 s:
 * refused requests do not push its budget further away. */
static void test_long_run_rate(void **state)
{
	struct limits *l = limits_new(8);
	unsigned served = 0;

	(void)state;
	for (uint64_t ms = 0; ms < 10000; ms++)
		served += limits_charge(l, 1, 20, 20, T0 + ms * (SEC / 1000)) == 0;
	/* 20 at once, then one per 50 ms over 9.999 s: 199 more. */
	assert_int_equal(served, 20 + 199);
	limits_free(l);
}

static void test_retry_after_wait(void **state)
{
	struct limits *l = limits_new(8);
	uint64_t wait;

	(void)state;
	/* 1 request/s, burst 3: the 4th waits a full second. */
	assert_int_equal(serve_at(l, T0, 3, 1, 3), 3);
	wait = limits_charge(l, 1, 1, 3, T0);
	assert_int_equal(wait, SEC);
	assert_int_equal(limits_charge(l, 1, 1, 3, T0 + wait), 0);
	limits_free(l);
}

static void test_bucket_step_overflow(void **state)
{
	uint64_t next = 7, wait;

	(void)state;
	/* The largest burst at the slowest rate: ~136 years of budget, no wrap. */
	assert_int_equal(limits_bucket_step(0, T0, 1, UINT32_MAX, &next), 0);
	assert_int_equal(next, T0 + SEC);
	/* A clock at the end of time saturates instead of wrapping to 0. */
	assert_int_equal(limits_bucket_step(0, UINT64_MAX - 5, 1, 1, &next), 0);
	assert_true(next == UINT64_MAX);
	/* A state at the end of time is a long wait, not a free pass. */
	next = 7;
	wait = limits_bucket_step(UINT64_MAX, T0, 1, 1, &next);
	assert_true(wait > 0 && wait == UINT64_MAX - (T0 + SEC));
	assert_int_equal(next, 7);
	/* A rate above 1e9/s still charges 1 ns per request. */
	assert_int_equal(limits_bucket_step(0, T0, UINT32_MAX, 1, &next), 0);
	assert_int_equal(next, T0 + 1);
	assert_int_equal(limits_bucket_step(next, T0, UINT32_MAX, 1, &next), 1);
	/* 0 (not resolved) counts as 1 request/s and a bucket of 1. */
	assert_int_equal(limits_bucket_step(0, T0, 0, 0, &next), 0);
	assert_int_equal(next, T0 + SEC);
	assert_int_equal(limits_bucket_step(next, T0, 0, 0, &next), SEC);
}

static void test_conn_cap(void **state)
{
	struct limits *l = limits_new(8);
	uint64_t throttled, refused;

	(void)state;
	for (int i = 0; i < 4; i++)
		assert_int_equal(limits_conn_open(l, 3, 1, 4), LIMITS_OPEN_OK);
	assert_int_equal(limits_conns(l, 3), 4);
	assert_int_equal(limits_conn_open(l, 3, 1, 4), LIMITS_OPEN_FULL);
	assert_int_equal(limits_conn_open(l, 3, 1, 4), LIMITS_OPEN_FULL);
	limits_conn_close(l, 3, 1);
	assert_int_equal(limits_conn_open(l, 3, 1, 4), LIMITS_OPEN_OK);
	assert_int_equal(limits_conns(l, 3), 4);
	/* A lower cap from an updated tree applies to new connections. */
	assert_int_equal(limits_conn_open(l, 3, 1, 2), LIMITS_OPEN_FULL);
	assert_int_equal(limits_take_counts(l, 3, &throttled, &refused), 1);
	assert_int_equal(refused, 3);
	assert_int_equal(throttled, 0);
	assert_int_equal(limits_take_counts(l, 3, &throttled, &refused), 1);
	assert_int_equal(refused, 0);
	/* More closes than opens never wrap the count. */
	for (int i = 0; i < 10; i++)
		limits_conn_close(l, 3, 1);
	assert_int_equal(limits_conns(l, 3), 0);
	assert_int_equal(limits_conn_open(l, 3, 1, 1), LIMITS_OPEN_OK);
	assert_int_equal(limits_conn_open(l, 3, 1, 1), LIMITS_OPEN_FULL);
	limits_free(l);
}

/* A slot given to a new VM starts over; the old VM's leftovers neither
 * count against it nor get in. */
static void test_new_generation_resets(void **state)
{
	struct limits *l = limits_new(8);
	uint64_t throttled, refused;

	(void)state;
	assert_int_equal(limits_conn_open(l, 5, 7, 2), LIMITS_OPEN_OK);
	assert_int_equal(limits_conn_open(l, 5, 7, 2), LIMITS_OPEN_OK);
	assert_int_equal(limits_charge(l, 5, 1, 1, T0), 0);
	assert_int_not_equal(limits_charge(l, 5, 1, 1, T0), 0);
	/* Generation 8 takes the slot: one connection, a full bucket. */
	assert_int_equal(limits_conn_open(l, 5, 8, 2), LIMITS_OPEN_OK);
	assert_int_equal(limits_conns(l, 5), 1);
	assert_int_equal(limits_charge(l, 5, 1, 1, T0), 0);
	assert_int_equal(limits_take_counts(l, 5, &throttled, &refused), 8);
	assert_int_equal(throttled, 0);
	/* The old VM's connections closing do not free the new VM's. */
	limits_conn_close(l, 5, 7);
	limits_conn_close(l, 5, 7);
	assert_int_equal(limits_conns(l, 5), 1);
	/* A late accept of the old VM is refused, and resets nothing. */
	assert_int_equal(limits_conn_open(l, 5, 7, 2), LIMITS_OPEN_GONE);
	assert_int_equal(limits_conns(l, 5), 1);
	/* An unused slot takes any generation; after that they compare as
	 * serial numbers: 0 follows 0xffffffff. */
	assert_int_equal(limits_conn_open(l, 6, 0xffffffffu, 2), LIMITS_OPEN_OK);
	assert_int_equal(limits_conn_open(l, 6, 0, 2), LIMITS_OPEN_OK);
	assert_int_equal(limits_conn_open(l, 6, 0xffffffffu, 2), LIMITS_OPEN_GONE);
	limits_free(l);
}

static void test_slot_out_of_range(void **state)
{
	struct limits *l = limits_new(4);
	uint64_t throttled, refused;

	(void)state;
	assert_int_equal(limits_conn_open(l, 4, 1, 10), LIMITS_OPEN_GONE);
	limits_conn_close(l, 4, 1);
	assert_int_equal(limits_conns(l, 4), 0);
	assert_int_equal(limits_take_counts(l, 4, &throttled, &refused), 0);
	limits_free(l);
	limits_free(NULL);
}

/* Worker threads race on one VM: the budget and the cap stay exact. */
#define RACE_THREADS 4
#define RACE_TRIES 5000

struct race {
	struct limits *l;
	unsigned served, opened;
};

static void *race_main(void *arg)
{
	struct race *r = arg;

	for (unsigned i = 0; i < RACE_TRIES; i++) {
		r->served += limits_charge(r->l, 1, 1000, 3000, T0) == 0;
		r->opened += limits_conn_open(r->l, 1, 1, 777) == LIMITS_OPEN_OK;
	}
	return NULL;
}

static void test_threads_share_exactly(void **state)
{
	struct limits *l = limits_new(2);
	struct race races[RACE_THREADS];
	pthread_t th[RACE_THREADS];
	unsigned served = 0, opened = 0;

	(void)state;
	/* The server counts a connection before charging its requests. */
	assert_int_equal(limits_conn_open(l, 1, 1, 777), LIMITS_OPEN_OK);
	for (int i = 0; i < RACE_THREADS; i++) {
		races[i] = (struct race){ .l = l };
		assert_int_equal(pthread_create(&th[i], NULL, race_main, &races[i]), 0);
	}
	for (int i = 0; i < RACE_THREADS; i++) {
		pthread_join(th[i], NULL);
		served += races[i].served;
		opened += races[i].opened;
	}
	assert_int_equal(served, 3000);
	assert_int_equal(opened, 776);
	assert_int_equal(limits_conns(l, 1), 777);
	limits_free(l);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_resolve_defaults),
		cmocka_unit_test(test_burst_then_429),
		cmocka_unit_test(test_refill_one_interval),
		cmocka_unit_test(test_quiet_spell_fills_to_burst_only),
		cmocka_unit_test(test_long_run_rate),
		cmocka_unit_test(test_retry_after_wait),
		cmocka_unit_test(test_bucket_step_overflow),
		cmocka_unit_test(test_conn_cap),
		cmocka_unit_test(test_new_generation_resets),
		cmocka_unit_test(test_slot_out_of_range),
		cmocka_unit_test(test_threads_share_exactly),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

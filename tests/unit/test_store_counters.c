/* test_store_counters.c: store_counters_range reads vm_counters (a per-CPU
 * array) for a run of slots in one batch, summed over CPUs, as one lookup
 * per slot would.  The map is the data plane's own, loaded without pins by
 * bpf_harness.h (root needed; skipped otherwise).  The admin thread reads
 * 256 slots per call (vmwatch.c), so the runs here cross that boundary and
 * reach the map's last slot. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "bpf_harness.h"
#include "store/store.h"

/* A value per (slot, cpu, reason) that no other triple has. */
static uint64_t pattern(uint32_t slot, int cpu, int reason)
{
	return ((uint64_t)slot << 20) | ((uint64_t)cpu << 8) | (uint64_t)reason;
}

static void fill(uint32_t slot)
{
	struct imds_counters per_cpu[harness.ncpus];

	for (int cpu = 0; cpu < harness.ncpus; cpu++)
		for (int r = 0; r < IMDS_REASON_MAX; r++)
			per_cpu[cpu].packets[r] = pattern(slot, cpu, r);
	assert_int_equal(bpf_map_update_elem(harness.counters_fd, &slot, per_cpu, BPF_ANY), 0);
}

static struct store harness_store(void)
{
	return (struct store){ .counters_fd = harness.counters_fd,
			       .max_slots = bpf_map__max_entries(harness.skel->maps.IMDS_MAP_VM_COUNTERS_ID) };
}

/* out[i] against the per-slot lookup of first + i. */
static void check_run(const struct store *s, uint32_t first, uint32_t n)
{
	struct imds_counters *out = calloc(n, sizeof(*out));
	uint64_t want[IMDS_REASON_MAX];

	assert_non_null(out);
	assert_int_equal(store_counters_range(s, first, n, out), 0);
	for (uint32_t i = 0; i < n; i++) {
		harness_counts(first + i, want);
		assert_memory_equal(out[i].packets, want, sizeof(want));
	}
	free(out);
}

static void test_runs_match_lookups_per_slot(void **state)
{
	struct store s;

	(void)state;
	if (!harness.skel)
		skip();
	s = harness_store();
	for (uint32_t slot = 0; slot < s.max_slots; slot++)
		fill(slot);
	check_run(&s, 0, 1);
	check_run(&s, 1, 256);
	check_run(&s, 200, 300);
	check_run(&s, s.max_slots - 3, 3);
	check_run(&s, 0, s.max_slots);
}

static void test_single_slot_is_the_sum_over_cpus(void **state)
{
	struct imds_counters c;
	struct store s;
	uint64_t sum = 0;

	(void)state;
	if (!harness.skel)
		skip();
	s = harness_store();
	fill(300);
	assert_int_equal(store_counters(&s, 300, &c), 0);
	for (int cpu = 0; cpu < harness.ncpus; cpu++)
		sum += pattern(300, cpu, 5);
	assert_true(c.packets[5] == sum);
}

static void test_runs_outside_the_slots_are_refused(void **state)
{
	struct imds_counters c[2];
	struct store s;

	(void)state;
	if (!harness.skel)
		skip();
	s = harness_store();
	assert_int_equal(store_counters_range(&s, s.max_slots - 1, 2, c), -EINVAL);
	assert_int_equal(store_counters_range(&s, s.max_slots, 1, c), -EINVAL);
	assert_int_equal(store_counters_range(&s, 1, 0, c), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_runs_match_lookups_per_slot),
		cmocka_unit_test(test_single_slot_is_the_sum_over_cpus),
		cmocka_unit_test(test_runs_outside_the_slots_are_refused),
	};

	return cmocka_run_group_tests_name("store_counters", tests, harness_group_setup, harness_group_teardown);
}

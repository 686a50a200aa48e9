/* test_store_conn.c: store_take_conn, imdsd's half of a verified SYN
 * (include/imds.h, struct imds_conn_slot): an entry of conn_slots, read in
 * place, or of conn_table is consumed once; another endpoint's entry, an
 * entry of another VM generation, or one being written is not taken; a
 * port leaving frees its VM's entries.  The maps are the data plane's own,
 * loaded without pins by bpf_harness.h (root needed; skipped otherwise),
 * entries written as the ingress program writes them (its side:
 * bpf_packets_conn.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>

#include <cmocka.h>

#include "bpf_harness.h"
#include "store/store.h"

#define VM_SLOT 1
#define VM_GENERATION 5
#define VM_IFINDEX 7
#define VM_IPV4 0x0a00000bu

static struct store store;

static int setup(void **state)
{
	size_t vm_bytes;
	void *vms, *slots;

	(void)state;
	if (!harness.skel)
		return 0;
	harness_reset();
	vm_bytes = bpf_map__max_entries(harness.skel->maps.vm_table) * sizeof(struct imds_vm);
	vms = mmap(NULL, vm_bytes, PROT_READ | PROT_WRITE, MAP_SHARED, harness.vm_fd, 0);
	slots = mmap(NULL, HARNESS_CONN_SLOTS * sizeof(struct imds_conn_slot), PROT_READ | PROT_WRITE, MAP_SHARED,
		     harness.slots_fd, 0);
	assert_true(vms != MAP_FAILED && slots != MAP_FAILED);
	store = (struct store){ .skel = harness.skel, .vms = vms, .conn_slots = slots,
				.conn_slots_n = HARNESS_CONN_SLOTS, .conn_fd = harness.conn_fd,
				.hop_fd = harness.marks_fd,
				.max_slots = bpf_map__max_entries(harness.skel->maps.vm_table) };
	store.vms[VM_SLOT] = (struct imds_vm){ .state = IMDS_VM_ACTIVE, .generation = VM_GENERATION,
					       .ifindex = VM_IFINDEX };
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	if (!harness.skel)
		return 0;
	munmap(store.vms, store.max_slots * sizeof(struct imds_vm));
	munmap(store.conn_slots, HARNESS_CONN_SLOTS * sizeof(struct imds_conn_slot));
	return 0;
}

static struct imds_conn_slot *entry_of(const struct imds_conn_key *key)
{
	return &store.conn_slots[imds_conn_slot_of(key) & (HARNESS_CONN_SLOTS - 1)];
}

/* What the ingress program leaves after a SYN of `key`, in conn_slots. */
static void put_slot(const struct imds_conn_key *key, uint32_t state)
{
	struct imds_conn_slot *e = entry_of(key);

	e->slot = VM_SLOT;
	e->generation = VM_GENERATION;
	e->verified_ns = harness_now_ns();
	e->key = *key;
	e->seq_state = (e->seq_state & ~IMDS_CONN_STATE_MASK) + IMDS_CONN_SEQ_STEP + state;
}

static void put_table(const struct imds_conn_key *key)
{
	struct imds_conn conn = { .slot = VM_SLOT, .generation = VM_GENERATION, .verified_ns = harness_now_ns() };

	assert_int_equal(bpf_map_update_elem(harness.conn_fd, key, &conn, BPF_ANY), 0);
}

static int take(const struct imds_conn_key *key)
{
	uint32_t slot = 0, generation = 0;
	int rc = store_take_conn(&store, key, &slot, &generation);

	if (rc == 0) {
		assert_int_equal(slot, VM_SLOT);
		assert_int_equal(generation, VM_GENERATION);
	}
	return rc;
}

#define NEED_HARNESS()                 \
	do {                           \
		(void)state;           \
		if (!harness.skel)     \
			skip();        \
	} while (0)

static void test_slot_entry_taken_once(void **state)
{
	struct imds_conn_key key = harness_key4(VM_IPV4, 40000);

	NEED_HARNESS();
	put_slot(&key, IMDS_CONN_READY);
	assert_int_equal(take(&key), 0);
	assert_int_equal(entry_of(&key)->seq_state & IMDS_CONN_STATE_MASK, IMDS_CONN_FREE);
	assert_int_equal(take(&key), -ENOENT);
}

static void test_table_entry_taken_once(void **state)
{
	struct imds_conn_key key = harness_key4(VM_IPV4, 40001);

	NEED_HARNESS();
	put_table(&key);
	assert_int_equal(take(&key), 0);
	assert_int_equal(take(&key), -ENOENT);
}

/* The entry at the endpoint's index holds another endpoint's SYN: that
 * one stays for its own connection, this one is looked up in the table. */
static void test_other_endpoint_left_alone(void **state)
{
	struct imds_conn_key key = harness_key4(VM_IPV4, 40002), other = key;

	NEED_HARNESS();
	other.saddr[15] ^= 1;
	put_slot(&key, IMDS_CONN_READY);
	entry_of(&key)->key = other;
	assert_int_equal(take(&key), -ENOENT);
	assert_int_equal(entry_of(&key)->seq_state & IMDS_CONN_STATE_MASK, IMDS_CONN_READY);
	put_table(&key);
	assert_int_equal(take(&key), 0);
}

/* Not READY yet (a claim in progress), or of an older generation of the
 * slot's VM (the VM was replaced since the SYN): nothing served. */
static void test_writing_or_old_generation_refused(void **state)
{
	struct imds_conn_key key = harness_key4(VM_IPV4, 40003);

	NEED_HARNESS();
	put_slot(&key, IMDS_CONN_WRITING);
	assert_int_equal(take(&key), -ENOENT);
	put_slot(&key, IMDS_CONN_READY);
	entry_of(&key)->generation = VM_GENERATION - 1;
	assert_int_equal(take(&key), -ENOENT);
	assert_int_equal(take(&key), -ENOENT);
}

/* The VM's port leaves: its entries in both tables go, another VM's stay. */
static void test_port_leaving_frees_entries(void **state)
{
	struct imds_conn_key key = harness_key4(VM_IPV4, 40004), in_table = harness_key4(VM_IPV4, 40005);
	uint32_t ifindex = VM_IFINDEX;

	NEED_HARNESS();
	put_slot(&key, IMDS_CONN_READY);
	put_table(&in_table);
	assert_int_equal(store_forget_ports(&store, &ifindex, 1), 1);
	assert_int_equal(entry_of(&key)->seq_state & IMDS_CONN_STATE_MASK, IMDS_CONN_FREE);
	assert_int_equal(take(&key), -ENOENT);
	assert_int_equal(take(&in_table), -ENOENT);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_slot_entry_taken_once, setup, teardown),
		cmocka_unit_test_setup_teardown(test_table_entry_taken_once, setup, teardown),
		cmocka_unit_test_setup_teardown(test_other_endpoint_left_alone, setup, teardown),
		cmocka_unit_test_setup_teardown(test_writing_or_old_generation_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_port_leaving_frees_entries, setup, teardown),
	};

	return cmocka_run_group_tests_name("store_conn", tests, harness_group_setup, harness_group_teardown);
}

/* bpf_harness.h: the data plane loaded for packet tests.  Loads the imds_bpf
 * skeleton with pinning switched off (every map private to this process,
 * nothing under /sys/fs/bpf touched), writes VM records into its maps with
 * libbpf, runs one program over one frame with BPF_PROG_TEST_RUN and reads
 * the per-reason counters back.  Used by test_bpf_packets.c. */
#ifndef TEST_BPF_HARNESS_H
#define TEST_BPF_HARNESS_H

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <arpa/inet.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/bpf.h>

#include "imds.h"
#include "imds.skel.h"

/* linux/pkt_cls.h, not included beside linux/bpf.h's own copies.  The TC
 * programs pass with TC_ACT_UNSPEC (-1, bpf/compat.h's IMDS_TC_PASS), which
 * a test run reports as an unsigned retval. */
#define HARNESS_TC_PASS 0xffffffffu
#define HARNESS_TC_ACT_SHOT 2

/* The verdict of an ingress program, whichever hook it was. */
enum harness_verdict {
	HARNESS_PASS = 1,
	HARNESS_DROP = 2,
	HARNESS_ERROR = 3, /* test_run failed or the program returned something else */
};

struct harness {
	struct imds_bpf *skel;
	int vm_fd, mac_fd, conn_fd, slots_fd, counters_fd, budget_fd, marks_fd, ipv4_fd, gate_fd, ipv6_fd, vm_ipv6_fd, port_fd,
	    hints_fd, hop_gate_fd;
	int ncpus;
	char why[256]; /* why the data plane could not be loaded */
};

static struct harness harness;

#define HARNESS_CONN_SLOTS 4 /* conn_slots' entries in the tests */

/* Pinning off for every map: libbpf then neither reuses a pin of a running
 * imdsd nor leaves one behind.  The arena is never read by the programs and
 * is 64 MiB at full size, so the test gets one page of it. */
static inline int harness_load(void)
{
	struct bpf_map *map;
	int ret;

	libbpf_set_print(NULL); /* a refused load is reported once, below */
	harness.skel = imds_bpf__open();
	if (!harness.skel) {
		snprintf(harness.why, sizeof(harness.why), "cannot open the skeleton: %s", strerror(errno));
		return -errno;
	}
	bpf_object__for_each_map(map, harness.skel->obj)
		bpf_map__set_pin_path(map, NULL);
	bpf_map__set_max_entries(harness.skel->maps.arena, 1);
	/* conn_slots as small as a store can make it, so tests can collide. */
	bpf_map__set_max_entries(harness.skel->maps.IMDS_MAP_CONN_SLOTS_ID, HARNESS_CONN_SLOTS);
	harness.skel->rodata->conn_slots_mask = HARNESS_CONN_SLOTS - 1;
	ret = imds_bpf__load(harness.skel);
	if (ret) {
		snprintf(harness.why, sizeof(harness.why), "cannot load the data plane (root and BTF needed): %s",
			 strerror(-ret));
		imds_bpf__destroy(harness.skel);
		harness.skel = NULL;
		return ret;
	}
	harness.vm_fd = bpf_map__fd(harness.skel->maps.vm_table);
	harness.mac_fd = bpf_map__fd(harness.skel->maps.mac_index);
	harness.conn_fd = bpf_map__fd(harness.skel->maps.IMDS_MAP_CONN_TABLE_ID);
	harness.slots_fd = bpf_map__fd(harness.skel->maps.IMDS_MAP_CONN_SLOTS_ID);
	harness.counters_fd = bpf_map__fd(harness.skel->maps.IMDS_MAP_VM_COUNTERS_ID);
	harness.budget_fd = bpf_map__fd(harness.skel->maps.vm_budget);
	harness.marks_fd = bpf_map__fd(harness.skel->maps.IMDS_MAP_HOP_MARKS_ID);
	harness.ipv6_fd = bpf_map__fd(harness.skel->maps.IMDS_MAP_IPV6_INDEX_ID);
	harness.vm_ipv6_fd = bpf_map__fd(harness.skel->maps.IMDS_MAP_VM_IPV6_ID);
	harness.port_fd = bpf_map__fd(harness.skel->maps.IMDS_MAP_PORT_INDEX_ID);
	harness.ipv4_fd = bpf_map__fd(harness.skel->maps.IMDS_MAP_IPV4_INDEX_ID);
	harness.gate_fd = bpf_map__fd(harness.skel->maps.IMDS_MAP_CONN_GATE_ID);
	harness.hints_fd = bpf_map__fd(harness.skel->maps.IMDS_MAP_PORT_HINTS_ID);
	harness.hop_gate_fd = bpf_map__fd(harness.skel->maps.IMDS_MAP_HOP_GATE_ID);
	harness.ncpus = libbpf_num_possible_cpus();
	return 0;
}

static inline void harness_unload(void)
{
	imds_bpf__destroy(harness.skel);
	harness.skel = NULL;
}

/* cmocka group setup and teardown for a test file of the harness: without
 * the data plane (not root, no BTF) every test skips, and the file says why
 * once. */
static inline int harness_group_setup(void **state)
{
	(void)state;
	if (harness_load())
		printf("%s: %s; every test is skipped\n", program_invocation_short_name, harness.why);
	return 0;
}

static inline int harness_group_teardown(void **state)
{
	(void)state;
	if (harness.skel)
		harness_unload();
	return 0;
}

/* Keys of these maps are 4 or 8 bytes; the buffer leaves room for more. */
static inline void harness_clear_hash(int fd)
{
	uint8_t key[64];

	while (bpf_map_get_next_key(fd, NULL, key) == 0)
		if (bpf_map_delete_elem(fd, key))
			break;
}

/* port_hints all zero, in one call. */
static inline void harness_clear_port_hints(void)
{
	static uint32_t keys[IMDS_PORT_HINTS];
	static uint64_t zeros[IMDS_PORT_HINTS];
	uint32_t count = IMDS_PORT_HINTS;

	for (uint32_t i = 0; i < IMDS_PORT_HINTS; i++)
		keys[i] = i;
	bpf_map_update_batch(harness.hints_fd, keys, zeros, &count, NULL);
}

/* hop_gate set to `until` (CLOCK_MONOTONIC ns). */
static inline void harness_set_hop_gate(uint64_t until)
{
	bpf_map_update_elem(harness.hop_gate_fd, &(uint32_t){0}, &until, BPF_ANY);
}

/* Every map back to empty, for the slots the tests use (0..7). */
static inline void harness_reset(void)
{
	struct imds_counters zero_counters[harness.ncpus];
	struct imds_budget zero_budget = {0};
	struct imds_vm zero_vm = {0};
	struct imds_conn_gate zero_gate = {0};
	struct imds_vm_ipv6 zero_ipv6 = {0};

	memset(zero_counters, 0, sizeof(zero_counters));
	for (uint32_t slot = 0; slot < 8; slot++) {
		bpf_map_update_elem(harness.vm_fd, &slot, &zero_vm, BPF_ANY);
		bpf_map_update_elem(harness.counters_fd, &slot, zero_counters, BPF_ANY);
		bpf_map_update_elem(harness.budget_fd, &slot, &zero_budget, BPF_ANY);
		bpf_map_update_elem(harness.gate_fd, &slot, &zero_gate, BPF_ANY);
		bpf_map_update_elem(harness.vm_ipv6_fd, &slot, &zero_ipv6, BPF_ANY);
	}
	harness_clear_hash(harness.ipv6_fd);
	harness_clear_hash(harness.port_fd);
	harness_clear_hash(harness.mac_fd);
	harness_clear_hash(harness.conn_fd);
	for (uint32_t i = 0; i < HARNESS_CONN_SLOTS; i++)
		bpf_map_update_elem(harness.slots_fd, &i, &(struct imds_conn_slot){0}, BPF_ANY);
	harness_clear_hash(harness.marks_fd);
	harness_clear_hash(harness.ipv4_fd);
	harness_clear_port_hints();
	harness_set_hop_gate(0);
}

/* What imdsd does before it places a mark that expires at `expires`:
 * the gate at or after it (user/serve/hop.c). */
static inline void harness_open_hop_gate(uint64_t expires)
{
	uint64_t until = 0;

	bpf_map_lookup_elem(harness.hop_gate_fd, &(uint32_t){0}, &until);
	if (until < expires)
		harness_set_hop_gate(expires);
}

/* A VM record as imds-loadmap writes it, its MAC in mac_index, its IPv4
 * in ipv4_index and, when it is bound, its port in port_index. */
static inline int harness_put_vm(uint32_t slot, const struct imds_vm *vm)
{
	struct imds_mac_key key = {0};

	memcpy(key.addr, vm->mac, sizeof(key.addr));
	if (bpf_map_update_elem(harness.vm_fd, &slot, vm, BPF_ANY))
		return -errno;
	if (bpf_map_update_elem(harness.mac_fd, &key, &slot, BPF_ANY))
		return -errno;
	if (bpf_map_update_elem(harness.ipv4_fd, &vm->ipv4, &slot, BPF_ANY))
		return -errno;
	if (vm->ifindex && bpf_map_update_elem(harness.port_fd, &vm->ifindex, &slot, BPF_ANY))
		return -errno;
	return 0;
}

/* One IPv6 address of the VM in slot (generation as in its record), and
 * its flags (IMDS_VM_IPV6_*), as the store writes them. */
static inline int harness_put_ipv6(uint32_t slot, const uint8_t addr[16], uint8_t flags)
{
	struct imds_vm vm = {0};
	struct imds_vm_ipv6 list = {0};
	struct imds_ipv6_owner owner = {.slot = slot};

	bpf_map_lookup_elem(harness.vm_fd, &slot, &vm);
	owner.generation = vm.generation;
	bpf_map_lookup_elem(harness.vm_ipv6_fd, &slot, &list);
	list.generation = vm.generation;
	list.flags = flags;
	if (list.count < IMDS_VM_IPV6_MAX)
		memcpy(list.addr[list.count++], addr, 16);
	if (bpf_map_update_elem(harness.vm_ipv6_fd, &slot, &list, BPF_ANY))
		return -errno;
	if (bpf_map_update_elem(harness.ipv6_fd, addr, &owner, BPF_ANY))
		return -errno;
	return 0;
}

/* conn_table_v2 / hop_marks_v2 key of an IPv4 endpoint (host order in). */
static inline struct imds_conn_key harness_key4(uint32_t addr, uint16_t port)
{
	struct imds_conn_key key = {0};
	uint32_t be = htonl(addr);

	key.saddr[10] = key.saddr[11] = 0xff;
	memcpy(&key.saddr[12], &be, 4);
	key.sport = htons(port);
	return key;
}

/* Where the data plane recorded the endpoint's SYN: 1 in conn_slots (a
 * READY entry of the endpoint at its index), 2 in conn_table, 0 nowhere;
 * *out its value. */
static inline int harness_conn_where(const struct imds_conn_key *key, struct imds_conn *out)
{
	uint32_t idx = imds_conn_slot_of(key) & (HARNESS_CONN_SLOTS - 1);
	struct imds_conn_slot e;

	if (bpf_map_lookup_elem(harness.slots_fd, &idx, &e) == 0 &&
	    (e.seq_state & IMDS_CONN_STATE_MASK) == IMDS_CONN_READY && memcmp(&e.key, key, sizeof(*key)) == 0) {
		*out = (struct imds_conn){ .slot = e.slot, .generation = e.generation, .verified_ns = e.verified_ns };
		return 1;
	}
	return bpf_map_lookup_elem(harness.conn_fd, key, out) == 0 ? 2 : 0;
}

static inline struct imds_conn_key harness_key6(const uint8_t addr[16], uint16_t port)
{
	struct imds_conn_key key = {0};

	memcpy(key.saddr, addr, 16);
	key.sport = htons(port);
	return key;
}

static inline struct imds_vm harness_get_vm(uint32_t slot)
{
	struct imds_vm vm = {0};

	bpf_map_lookup_elem(harness.vm_fd, &slot, &vm);
	return vm;
}

/* vm_counters[slot] summed over CPUs. */
static inline void harness_counts(uint32_t slot, uint64_t out[IMDS_REASON_MAX])
{
	struct imds_counters per_cpu[harness.ncpus];

	memset(out, 0, sizeof(uint64_t) * IMDS_REASON_MAX);
	if (bpf_map_lookup_elem(harness.counters_fd, &slot, per_cpu))
		return;
	for (int cpu = 0; cpu < harness.ncpus; cpu++)
		for (int r = 0; r < IMDS_REASON_MAX; r++)
			out[r] += per_cpu[cpu].packets[r];
}

/* CLOCK_MONOTONIC, the clock of bpf_ktime_get_ns(). */
static inline uint64_t harness_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* XDP: the kernel builds an xdp_buff around the frame; ingress_ifindex must
 * name a device of this network namespace (it looks up its RX queue). */
static inline enum harness_verdict harness_run_xdp(const void *frame, uint32_t len, uint32_t ifindex)
{
	struct xdp_md ctx = {.data = 0, .data_end = len, .ingress_ifindex = ifindex};
	LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = frame, .data_size_in = len, .ctx_in = &ctx,
		    .ctx_size_in = sizeof(ctx));

	if (bpf_prog_test_run_opts(bpf_program__fd(harness.skel->progs.imds_xdp), &opts))
		return HARNESS_ERROR;
	return opts.retval == XDP_PASS ? HARNESS_PASS : opts.retval == XDP_DROP ? HARNESS_DROP : HARNESS_ERROR;
}

/* TC (SCHED_CLS): the kernel builds a linear skb, sets skb->protocol with
 * eth_type_trans() and copies ingress_ifindex from the context as is (no
 * device behind it is needed).  out, when given, receives the frame as the
 * program left it. */
static inline int harness_run_tc(int prog_fd, const void *frame, uint32_t len, uint32_t ifindex, void *out,
				 uint32_t *out_len, uint32_t *retval)
{
	struct __sk_buff ctx = {.ingress_ifindex = ifindex};
	LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = frame, .data_size_in = len, .ctx_in = &ctx,
		    .ctx_size_in = sizeof(ctx), .data_out = out, .data_size_out = out_len ? *out_len : 0);

	if (bpf_prog_test_run_opts(prog_fd, &opts))
		return -errno;
	if (out_len)
		*out_len = opts.data_size_out;
	*retval = opts.retval;
	return 0;
}

static inline enum harness_verdict harness_tc_verdict(struct bpf_program *prog, const void *frame, uint32_t len,
						     uint32_t ifindex)
{
	uint32_t retval;

	if (harness_run_tc(bpf_program__fd(prog), frame, len, ifindex, NULL, NULL, &retval))
		return HARNESS_ERROR;
	return retval == HARNESS_TC_PASS	 ? HARNESS_PASS :
	       retval == HARNESS_TC_ACT_SHOT ? HARNESS_DROP :
					       HARNESS_ERROR;
}

static inline enum harness_verdict harness_run_tc_ingress(const void *frame, uint32_t len, uint32_t ifindex)
{
	return harness_tc_verdict(harness.skel->progs.imds_tc_ingress, frame, len, ifindex);
}

/* TC egress: the skb's device (skb->ifindex, the port a frame leaves by)
 * is the loopback device whatever the context says, unless the context
 * names another device of this namespace. */
static inline enum harness_verdict harness_run_tc_egress(const void *frame, uint32_t len, uint32_t ifindex)
{
	return harness_tc_verdict(harness.skel->progs.imds_tc_egress, frame, len, ifindex);
}

#endif

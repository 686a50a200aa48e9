/* fuzz_bpf.c: the data plane's parser (bpf/) through BPF_PROG_TEST_RUN.
 * Each input is one Ethernet frame, run through imds_xdp, imds_tc_ingress
 * and imds_tc_egress of the real skeleton, loaded as the packet tests load
 * it (bpf_harness.h: pinning off, private maps).  A program must never fail
 * to run and must return a verdict of its hook (XDP_PASS or XDP_DROP,
 * TC_ACT_OK or TC_ACT_SHOT).  The kernel refuses frames shorter than an
 * Ethernet header, and at TC an IPv4 or IPv6 frame (by its EtherType)
 * without a whole IP header (found by fuzzing, 6.18): those are not run
 * (or not at TC).
 * libFuzzer cannot see coverage inside BPF, so the reasons the programs
 * count (vm_counters slot 0, per hook) are handed to it as extra counters:
 * an input that makes a hook count a new reason is kept.
 * Needs root and kernel BTF: without them it says why and exits 0. */
#include <arpa/inet.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bpf_harness.h"
#include "fuzz_vm_net.h"

#define BPF_FUZZ_MAX_FRAME 1600 /* a test run takes up to about a page */
#define BPF_FUZZ_HOOKS 3
#define BPF_FUZZ_ETH 14

__attribute__((used, section("__libfuzzer_extra_counters")))
static uint8_t bpf_reason_seen[BPF_FUZZ_HOOKS][IMDS_REASON_MAX];

static uint64_t bpf_totals[IMDS_REASON_MAX];

static struct imds_vm bpf_vm(uint32_t ifindex, uint32_t ipv4, const uint8_t mac[6], const char *iid)
{
	struct imds_vm vm = {
		.state = IMDS_VM_ACTIVE,
		.generation = 1,
		.ifindex = ifindex,
		.binding = IMDS_BIND_PINNED,
		.ipv4 = htonl(ipv4),
		.hop_limit = 1,
		.rate_pps = 1000000,
		.rate_burst = 1000000,
	};

	memcpy(vm.mac, mac, sizeof(vm.mac));
	snprintf(vm.instance_id, sizeof(vm.instance_id), "%s", iid);
	return vm;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	static const uint8_t mac1[6] = FUZZ_VM1_MAC, mac2[6] = FUZZ_VM2_MAC;
	static const uint8_t vm1_ipv6[16] = FUZZ_VM1_IPV6, vm2_ipv6[16] = FUZZ_VM2_IPV6;
	struct imds_vm vm1 = bpf_vm(FUZZ_LO_IFINDEX, FUZZ_VM1_IPV4, mac1, "i-fuzz-1");
	struct imds_vm vm2 = bpf_vm(FUZZ_OTHER_PORT, FUZZ_VM2_IPV4, mac2, "i-fuzz-2");

	(void)argc;
	(void)argv;
	if (harness_load()) {
		printf("fuzz_bpf: skipped: %s\n", harness.why);
		exit(0);
	}
	harness_reset();
	if (harness_put_vm(FUZZ_VM1_SLOT, &vm1) || harness_put_vm(FUZZ_VM2_SLOT, &vm2) ||
	    harness_put_ipv6(FUZZ_VM1_SLOT, vm1_ipv6, 0) || harness_put_ipv6(FUZZ_VM2_SLOT, vm2_ipv6, 0)) {
		fprintf(stderr, "fuzz_bpf: cannot write the VMs: %s\n", strerror(errno));
		exit(2);
	}
	harness_counts(0, bpf_totals);
	return 0;
}

/* Per-input state back to the start: no recorded SYNs, full buckets, a
 * live hop mark for VM 1's usual endpoints, IPv4 and IPv6 (so egress
 * rewrites TTLs and Hop Limits). */
static void bpf_fuzz_reset(void)
{
	static const uint8_t vm1_ipv6[16] = FUZZ_VM1_IPV6;
	struct imds_conn_key key = harness_key4(FUZZ_VM1_IPV4, FUZZ_VM1_SPORT);
	struct imds_conn_key key6 = harness_key6(vm1_ipv6, FUZZ_VM1_SPORT);
	struct imds_hop_mark mark = { .expires_ns = harness_now_ns() + 60 * 1000000000ull,
				      .slot = FUZZ_VM1_SLOT,
				      .hop_limit = 1 };
	struct imds_budget zero = { 0 };

	harness_clear_hash(harness.conn_fd);
	for (uint32_t slot = FUZZ_VM1_SLOT; slot <= FUZZ_VM2_SLOT; slot++)
		bpf_map_update_elem(harness.budget_fd, &slot, &zero, BPF_ANY);
	bpf_map_update_elem(harness.marks_fd, &key, &mark, BPF_ANY);
	bpf_map_update_elem(harness.marks_fd, &key6, &mark, BPF_ANY);
}

/* The reasons the last run counted, as coverage of hook `h`. */
static void bpf_note_reasons(int h)
{
	uint64_t now[IMDS_REASON_MAX];

	harness_counts(0, now);
	for (int r = 0; r < IMDS_REASON_MAX; r++)
		if (now[r] != bpf_totals[r])
			bpf_reason_seen[h][r]++;
	memcpy(bpf_totals, now, sizeof(now));
}

static void bpf_run_tc(struct bpf_program *prog, const uint8_t *frame, uint32_t len, int h)
{
	uint32_t retval;
	int rc = harness_run_tc(bpf_program__fd(prog), frame, len, FUZZ_LO_IFINDEX, NULL, NULL, &retval);

	if (rc) {
		fprintf(stderr, "fuzz_bpf: %s: test run failed: %s\n", bpf_program__name(prog), strerror(-rc));
		abort();
	}
	if (retval != HARNESS_TC_PASS && retval != HARNESS_TC_ACT_SHOT) {
		fprintf(stderr, "fuzz_bpf: %s returned %u\n", bpf_program__name(prog), retval);
		abort();
	}
	bpf_note_reasons(h);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
	uint8_t frame[BPF_FUZZ_MAX_FRAME];
	uint16_t type;
	int ip_short;

	if (len < BPF_FUZZ_ETH || len > BPF_FUZZ_MAX_FRAME)
		return -1; /* not a frame a test run takes: not added to the corpus */
	memcpy(frame, data, len);
	type = (uint16_t)(frame[12] << 8 | frame[13]);
	ip_short = (type == 0x0800 && len < BPF_FUZZ_ETH + 20) || (type == 0x86dd && len < BPF_FUZZ_ETH + 40);
	bpf_fuzz_reset();
	if (harness_run_xdp(frame, (uint32_t)len, FUZZ_LO_IFINDEX) == HARNESS_ERROR) {
		fprintf(stderr, "fuzz_bpf: imds_xdp failed or returned another verdict\n");
		abort();
	}
	bpf_note_reasons(0);
	if (ip_short)
		return 0;
	bpf_run_tc(harness.skel->progs.imds_tc_ingress, frame, (uint32_t)len, 1);
	bpf_run_tc(harness.skel->progs.imds_tc_egress, frame, (uint32_t)len, 2);
	return 0;
}

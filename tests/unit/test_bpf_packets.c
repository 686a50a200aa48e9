/* test_bpf_packets.c: the data plane (bpf/) run over crafted frames with
 * BPF_PROG_TEST_RUN: no lab, no namespaces, no pins.  Every ingress case
 * runs through both imds_xdp and imds_tc_ingress on the same frame; the
 * hop limit runs through imds_tc_egress.  Each verdict is checked twice:
 * the program's return value and the per-reason counters in vm_counters
 * (slot 0 and the VM's slot), and the last test proves that every reason of
 * enum imds_reason was produced and asserted (the IPv6 cases are in
 * bpf_packets6.h, included).  That proof is why this is
 * one file over 800 lines: it needs every packet test in one binary, and the
 * tests read as one table of frames and verdicts.
 *
 * What the kernel (6.18) allows and does, found by trying:
 *   - The skeleton loads with pinning switched off per map, so neither a
 *     running imdsd's pins nor /sys/fs/bpf are touched (bpf_harness.h).
 *   - XDP test runs take an xdp_md context whose ingress_ifindex must be a
 *     device of the caller's network namespace (the kernel looks up its RX
 *     queue): the tests use the loopback device, ifindex 1.  "Another port"
 *     is therefore a VM record bound to ifindex 7, which needs no device.
 *   - TC test runs take a __sk_buff context; ingress_ifindex is copied
 *     into the skb unchecked.  The kernel sets skb->protocol with
 *     eth_type_trans(), so an 802.1Q frame has protocol 0x8100 here.  The
 *     real receive path untags a VLAN frame (skb_vlan_untag) before TC
 *     ingress, which a test run does not: VLAN cases at TC show the
 *     program's logic, not the stack's: a test run cannot set
 *     skb->vlan_present (the tag the stack took off), so the system tests
 *     (test_hostile.py) cover that half.  Observed on a veth pair with the
 *     programs attached (6.18): tagged SYNs (VID 0 and VID 5) reach TC
 *     ingress untagged, with skb->vlan_present set.
 *   - At TC egress skb->ifindex is the device the test run built the skb
 *     on: the loopback device here, so a reply "leaves" by ifindex 1.
 *   - Frames shorter than an Ethernet header are refused (EINVAL) by both
 *     hooks; at TC an IPv4 frame (ethertype 0x0800) must also hold a whole
 *     20-byte IP header, so the shortest IPv4 cases run at XDP only.
 *   - TC test runs build a linear skb, and a __sk_buff context with
 *     data_end set (to ask for a shorter linear part) is refused (EINVAL):
 *     the pull paths in tc_pull_headers and hop_parse_reply (headers
 *     outside the linear part) cannot be reached from here; the system
 *     tests on TAP devices cover them.
 * Needs root (CAP_BPF and CAP_NET_ADMIN) and kernel BTF; without them every
 * test is reported skipped with the reason. */
#include <arpa/inet.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "bpf_frames.h"
#include "bpf_harness.h"

#define LO_IFINDEX 1  /* loopback: a device in every namespace */
#define OTHER_PORT 7  /* a port the frames never arrive on */
#define VM1_SLOT 1
#define VM1_IPV4 0x0a00000bu /* 10.0.0.11 */
#define VM1_SPORT 40000
#define VM1_GENERATION 3
#define OTHER_IPV4 0x0a00000cu
#define VM2_IPV4 0x0a00000du /* a loaded VM other than VM 1 */
#define SEC_NS 1000000000ull

#define VM1_MAC {0x52, 0x54, 0x00, 0x00, 0x00, 0x01}
#define BRIDGE_MAC {0x02, 0x00, 0x0a, 0x00, 0x00, 0x01}
#define STRANGER_MAC {0x52, 0x54, 0x00, 0x00, 0x00, 0x99}

/* An expected count per reason; unnamed reasons must stay 0. */
#define COUNTS(...) ((const uint64_t[IMDS_REASON_MAX]){__VA_ARGS__})
#define NONE COUNTS(0)

struct hook {
	const char *name;
	enum harness_verdict (*run)(const void *frame, uint32_t len, uint32_t ifindex);
	unsigned index;	     /* into covered[] */
	int runs_short_ipv4; /* the kernel test-runs IPv4 frames shorter than eth + 20 */
};

static const struct hook hook_xdp = {"xdp", harness_run_xdp, 0, 1};
static const struct hook hook_tc = {"tc ingress", harness_run_tc_ingress, 1, 0};
static const struct hook hook_egress = {"tc egress", harness_run_tc_egress, 2, 0};

/* Reasons each hook has been seen to count, as asserted by expect_counts. */
static unsigned covered[3];
static const struct hook *current;

/* The slot every port's hint names when a test starts (bpf/port_hint.h),
 * 0 for none: the whole table runs once without hints and once with each
 * port the tests use hinting each VM slot they fill, so every verdict and
 * count is shown not to depend on what a hint says. */
static uint32_t hinted_slot;

/* A port's hint as the data plane writes it, and where it is kept. */
#define HINT_OF(ifindex, slot) ((uint64_t)(ifindex) << 32 | (slot))
#define HINT_KEY(ifindex) ((uint32_t)(ifindex) & (IMDS_PORT_HINTS - 1))

static void hint_ports(uint32_t slot)
{
	const uint32_t ports[] = {LO_IFINDEX, OTHER_PORT};

	for (unsigned i = 0; i < sizeof(ports) / sizeof(ports[0]); i++) {
		uint32_t key = HINT_KEY(ports[i]);
		uint64_t hint = HINT_OF(ports[i], slot);

		assert_int_equal(bpf_map_update_elem(harness.hints_fd, &key, &hint, BPF_ANY), 0);
	}
}

/* Every test starts here: skip without a data plane, empty maps. */
static const struct hook *begin(void **state)
{
	if (!harness.skel) {
		print_message("skipped: %s\n", harness.why);
		skip();
	}
	harness_reset();
	if (hinted_slot)
		hint_ports(hinted_slot);
	current = *state;
	return current;
}

static uint64_t port_hint(uint32_t ifindex)
{
	uint32_t key = HINT_KEY(ifindex);
	uint64_t hint = 0;

	bpf_map_lookup_elem(harness.hints_fd, &key, &hint);
	return hint;
}

static void expect_counts(uint32_t slot, const uint64_t want[IMDS_REASON_MAX])
{
	uint64_t got[IMDS_REASON_MAX];
	int bad = 0;

	harness_counts(slot, got);
	for (int r = 0; r < IMDS_REASON_MAX; r++) {
		if (got[r] == want[r])
			continue;
		print_error("%s: vm_counters[%u].%s = %llu, want %llu\n", current->name, slot,
			    imds_reason_names[r], (unsigned long long)got[r], (unsigned long long)want[r]);
		bad = 1;
	}
	assert_false(bad);
	for (int r = 0; r < IMDS_REASON_MAX; r++)
		if (want[r])
			covered[current->index] |= 1u << r;
}

/* A pinned VM (its port named, resolved to `ifindex` by user space; 0 while
 * the port is absent). */
static struct imds_vm vm1_record(uint32_t ifindex)
{
	struct imds_vm vm = {
		.state = IMDS_VM_ACTIVE,
		.generation = VM1_GENERATION,
		.ifindex = ifindex,
		.binding = IMDS_BIND_PINNED,
		.ipv4 = htonl(VM1_IPV4),
		.mac = VM1_MAC,
		.hop_limit = 1,
	};

	return vm;
}

static void put_vm1_binding(uint32_t ifindex, uint32_t binding)
{
	struct imds_vm vm = vm1_record(ifindex);

	vm.binding = binding;
	assert_int_equal(harness_put_vm(VM1_SLOT, &vm), 0);
}

static void put_vm1(uint32_t ifindex)
{
	put_vm1_binding(ifindex, IMDS_BIND_PINNED);
}

/* A SYN from VM 1 to 169.254.169.254:80. */
static struct bpf_frame_spec syn_spec(void)
{
	struct bpf_frame_spec s = {
		.src_mac = VM1_MAC,
		.dst_mac = BRIDGE_MAC,
		.saddr = VM1_IPV4,
		.daddr = IMDS_IPV4_ADDR,
		.ttl = 64,
		.protocol = 6,
		.sport = VM1_SPORT,
		.dport = IMDS_TCP_PORT,
		.tcp_flags = BPF_TCP_SYN,
	};

	return s;
}

static struct bpf_frame_spec ack_spec(void)
{
	struct bpf_frame_spec s = syn_spec();

	s.tcp_flags = BPF_TCP_ACK;
	return s;
}

static enum harness_verdict send_len(const struct hook *h, const struct bpf_frame_spec *s, uint32_t len)
{
	struct bpf_frame f;

	bpf_frame_build(s, &f);
	return h->run(f.b, len ? len : f.len, LO_IFINDEX);
}

static enum harness_verdict send_frame(const struct hook *h, const struct bpf_frame_spec *s)
{
	return send_len(h, s, 0);
}

static int conn_recorded(uint32_t saddr, uint16_t sport, struct imds_conn *out)
{
	struct imds_conn_key key = harness_key4(saddr, sport);

	return harness_conn_where(&key, out) != 0;
}

/* ---- parsing: what is not for the service passes untouched ---- */

static void test_other_traffic_passes_uncounted(void **state)
{
	const struct hook *h = begin(state);
	struct bpf_frame_spec s = syn_spec();

	memcpy(s.src_mac, (uint8_t[6])STRANGER_MAC, 6); /* would be dropped if parsed */
	s.daddr = OTHER_IPV4;
	assert_int_equal(send_frame(h, &s), HARNESS_PASS);
	s.protocol = 17;
	s.dport = 443;
	assert_int_equal(send_frame(h, &s), HARNESS_PASS);
	expect_counts(0, NONE);
}

/* A VM's own traffic to anyone passes uncounted: its address, its MAC, its
 * port.  So does an address no VM has. */
static void test_own_source_passes_uncounted(void **state)
{
	const struct hook *h = begin(state);
	struct bpf_frame_spec s = syn_spec();

	put_vm1(LO_IFINDEX);
	s.daddr = OTHER_IPV4;
	assert_int_equal(send_frame(h, &s), HARNESS_PASS);
	memcpy(s.src_mac, (uint8_t[6])STRANGER_MAC, 6);
	s.saddr = OTHER_IPV4;
	assert_int_equal(send_frame(h, &s), HARNESS_PASS);
	expect_counts(0, NONE);
}

/* ---- tagged frames: VM ports are access ports for the service ---- */

/* Tagged toward 169.254.169.254 (a VID 0 priority tag, a VID, two tags
 * with an 802.1ad outer one): dropped even from the VM's own port, MAC and
 * address, and counted on the VM. */
static void test_tagged_toward_metadata_is_dropped(void **state)
{
	const struct hook *h = begin(state);
	struct bpf_frame_spec s = syn_spec();
	struct imds_conn conn;

	put_vm1(LO_IFINDEX);
	s.vlan = 1;
	s.vlan_tci = 0;
	assert_int_equal(send_frame(h, &s), HARNESS_DROP);
	s.vlan_tci = 5;
	assert_int_equal(send_frame(h, &s), HARNESS_DROP);
	s.vlan = 2;
	s.vlan_outer = 0x88a8;
	assert_int_equal(send_frame(h, &s), HARNESS_DROP);
	s.dport = 22; /* the tag decides before the port */
	assert_int_equal(send_frame(h, &s), HARNESS_DROP);
	assert_false(conn_recorded(VM1_IPV4, VM1_SPORT, &conn));
	memcpy(s.src_mac, (uint8_t[6])STRANGER_MAC, 6); /* no VM to charge */
	assert_int_equal(send_frame(h, &s), HARNESS_DROP);
	expect_counts(0, COUNTS([IMDS_DROP_TAGGED] = 5));
	expect_counts(VM1_SLOT, COUNTS([IMDS_DROP_TAGGED] = 4));
}

/* Guests may trunk VLANs: tagged traffic to anyone else passes, one tag or
 * two, and so does ARP for another address. */
static void test_tagged_other_traffic_passes(void **state)
{
	const struct hook *h = begin(state);
	struct bpf_frame_spec s = syn_spec();
	struct bpf_arp_spec a = {.op = 1, .sha = VM1_MAC, .spa = VM1_IPV4, .tpa = OTHER_IPV4};
	struct bpf_frame f;

	put_vm1(LO_IFINDEX);
	s.daddr = OTHER_IPV4;
	s.vlan = 1;
	s.vlan_tci = 5;
	assert_int_equal(send_frame(h, &s), HARNESS_PASS);
	s.vlan = 2;
	s.vlan_outer = 0x88a8;
	assert_int_equal(send_frame(h, &s), HARNESS_PASS);
	s.vlan = 4; /* as deep as the program looks */
	assert_int_equal(send_frame(h, &s), HARNESS_PASS);
	bpf_frame_build_arp(&s, &a, &f);
	assert_int_equal(h->run(f.b, f.len, LO_IFINDEX), HARNESS_PASS);
	expect_counts(0, NONE);
}

/* The host's stack takes VID 0 tags off one after another, so a frame
 * whose tags go deeper than the program looks cannot pass unseen. */
static void test_tags_too_deep_are_dropped(void **state)
{
	const struct hook *h = begin(state);
	struct bpf_frame_spec s = syn_spec();

	put_vm1(LO_IFINDEX);
	s.daddr = OTHER_IPV4;
	s.vlan = 5;
	assert_int_equal(send_frame(h, &s), HARNESS_DROP);
	expect_counts(0, COUNTS([IMDS_DROP_TAGGED] = 1));
	expect_counts(VM1_SLOT, COUNTS([IMDS_DROP_TAGGED] = 1));
}

/* ---- 169.254.169.254 is TCP port 80 only ---- */

/* Another TCP port, UDP, ICMP echo: dropped, from a VM (counted on it) or
 * from a stranger (totals only). */
static void test_other_ports_of_metadata_address_are_dropped(void **state)
{
	const struct hook *h = begin(state);
	struct bpf_frame_spec s = syn_spec();

	put_vm1(LO_IFINDEX);
	s.dport = 2222;
	assert_int_equal(send_frame(h, &s), HARNESS_DROP);
	s.dport = 443;
	assert_int_equal(send_frame(h, &s), HARNESS_DROP);
	s.protocol = 17; /* UDP */
	s.dport = 53;
	assert_int_equal(send_frame(h, &s), HARNESS_DROP);
	s.frag_off = 0x2000; /* a UDP fragment: the protocol decides, not the offset */
	assert_int_equal(send_frame(h, &s), HARNESS_DROP);
	s.frag_off = 0;
	s.protocol = 1; /* ICMP, echo requests included */
	assert_int_equal(send_frame(h, &s), HARNESS_DROP);
	memcpy(s.src_mac, (uint8_t[6])STRANGER_MAC, 6);
	assert_int_equal(send_frame(h, &s), HARNESS_DROP);
	expect_counts(0, COUNTS([IMDS_DROP_NOT_METADATA_PORT] = 6));
	expect_counts(VM1_SLOT, COUNTS([IMDS_DROP_NOT_METADATA_PORT] = 5));
}

/* ---- forged sources ---- */

/* Only the host sends from 169.254.169.254: to anyone, to itself. */
static void test_metadata_source_is_dropped(void **state)
{
	const struct hook *h = begin(state);
	struct bpf_frame_spec s = syn_spec();

	put_vm1(LO_IFINDEX);
	s.saddr = IMDS_IPV4_ADDR;
	s.daddr = OTHER_IPV4;
	s.sport = IMDS_TCP_PORT;
	s.tcp_flags = BPF_TCP_SYN | BPF_TCP_ACK; /* a forged reply */
	assert_int_equal(send_frame(h, &s), HARNESS_DROP);
	s.daddr = IMDS_IPV4_ADDR;
	assert_int_equal(send_frame(h, &s), HARNESS_DROP);
	memcpy(s.src_mac, (uint8_t[6])STRANGER_MAC, 6);
	assert_int_equal(send_frame(h, &s), HARNESS_DROP);
	expect_counts(0, COUNTS([IMDS_DROP_FORGED_SOURCE] = 3));
	expect_counts(VM1_SLOT, COUNTS([IMDS_DROP_FORGED_SOURCE] = 2));
}

/* VM 1's address from another port, or with another MAC, to anyone:
 * dropped and counted on VM 1.  Before VM 1 has a port, only its MAC may
 * use it. */
static void test_vm_address_from_elsewhere_is_dropped(void **state)
{
	const struct hook *h = begin(state);
	struct bpf_frame_spec s = syn_spec();

	s.daddr = OTHER_IPV4;
	put_vm1(OTHER_PORT);
	assert_int_equal(send_frame(h, &s), HARNESS_DROP);
	put_vm1(LO_IFINDEX);
	memcpy(s.src_mac, (uint8_t[6])STRANGER_MAC, 6);
	assert_int_equal(send_frame(h, &s), HARNESS_DROP);
	put_vm1_binding(0, IMDS_BIND_PINNED);
	assert_int_equal(send_frame(h, &s), HARNESS_DROP);
	memcpy(s.src_mac, (uint8_t[6])VM1_MAC, 6);
	assert_int_equal(send_frame(h, &s), HARNESS_PASS);
	expect_counts(0, COUNTS([IMDS_DROP_FORGED_SOURCE] = 3));
	expect_counts(VM1_SLOT, COUNTS([IMDS_DROP_FORGED_SOURCE] = 3));
}

/* ---- ARP ---- */

static enum harness_verdict send_arp(const struct hook *h, const struct bpf_frame_spec *eth,
				     const struct bpf_arp_spec *a)
{
	struct bpf_frame f;

	bpf_frame_build_arp(eth, a, &f);
	return h->run(f.b, f.len, LO_IFINDEX);
}

/* What a VM's ARP looks like: requests for 169.254.169.254 and for others,
 * replies, a gratuitous announcement of its own address. */
static void test_own_arp_passes_uncounted(void **state)
{
	const struct hook *h = begin(state);
	struct bpf_frame_spec eth = syn_spec();
	struct bpf_arp_spec a = {.op = 1, .sha = VM1_MAC, .spa = VM1_IPV4, .tpa = IMDS_IPV4_ADDR};

	put_vm1(LO_IFINDEX);
	memset(eth.dst_mac, 0xff, 6);
	assert_int_equal(send_arp(h, &eth, &a), HARNESS_PASS);
	a.tpa = VM1_IPV4; /* gratuitous */
	assert_int_equal(send_arp(h, &eth, &a), HARNESS_PASS);
	a.op = 2;
	a.tpa = OTHER_IPV4;
	assert_int_equal(send_arp(h, &eth, &a), HARNESS_PASS);
	a.spa = 0; /* a probe (RFC 5227) claims nothing */
	memcpy(eth.src_mac, (uint8_t[6])STRANGER_MAC, 6);
	memcpy(a.sha, (uint8_t[6])STRANGER_MAC, 6);
	a.tpa = VM1_IPV4;
	assert_int_equal(send_arp(h, &eth, &a), HARNESS_PASS);
	expect_counts(0, NONE);
}

/* "VM 1's address is-at my MAC" from a stranger's MAC, with VM 1's MAC in
 * the Ethernet header but another as sender hardware address, or from
 * another port: request, reply or gratuitous, all dropped, counted on
 * VM 1, the victim. */
static void test_arp_claiming_a_vm_is_dropped(void **state)
{
	const struct hook *h = begin(state);
	struct bpf_frame_spec eth = syn_spec();
	struct bpf_arp_spec a = {.op = 2, .sha = STRANGER_MAC, .spa = VM1_IPV4, .tpa = 0x0a000001u};

	put_vm1(LO_IFINDEX);
	memcpy(eth.src_mac, (uint8_t[6])STRANGER_MAC, 6);
	assert_int_equal(send_arp(h, &eth, &a), HARNESS_DROP);
	a.op = 1;
	a.tpa = VM1_IPV4; /* gratuitous */
	assert_int_equal(send_arp(h, &eth, &a), HARNESS_DROP);
	memcpy(eth.src_mac, (uint8_t[6])VM1_MAC, 6);
	assert_int_equal(send_arp(h, &eth, &a), HARNESS_DROP);
	memcpy(a.sha, (uint8_t[6])VM1_MAC, 6);
	put_vm1(OTHER_PORT);
	assert_int_equal(send_arp(h, &eth, &a), HARNESS_DROP);
	eth.vlan = 1; /* a tag hides nothing */
	assert_int_equal(send_arp(h, &eth, &a), HARNESS_DROP);
	expect_counts(0, COUNTS([IMDS_DROP_ARP_SPOOF] = 5));
	expect_counts(VM1_SLOT, COUNTS([IMDS_DROP_ARP_SPOOF] = 5));
}

/* Only the host answers for 169.254.169.254; a tagged request for it is
 * refused like any tagged frame toward the service. */
static void test_arp_for_metadata_address(void **state)
{
	const struct hook *h = begin(state);
	struct bpf_frame_spec eth = syn_spec();
	struct bpf_arp_spec a = {.op = 2, .sha = VM1_MAC, .spa = IMDS_IPV4_ADDR, .tpa = VM2_IPV4};

	put_vm1(LO_IFINDEX);
	assert_int_equal(send_arp(h, &eth, &a), HARNESS_DROP);
	a.op = 1;
	a.tpa = IMDS_IPV4_ADDR; /* gratuitous */
	assert_int_equal(send_arp(h, &eth, &a), HARNESS_DROP);
	memcpy(eth.src_mac, (uint8_t[6])STRANGER_MAC, 6);
	assert_int_equal(send_arp(h, &eth, &a), HARNESS_DROP);
	eth = syn_spec();
	a.spa = VM1_IPV4;
	eth.vlan = 1;
	assert_int_equal(send_arp(h, &eth, &a), HARNESS_DROP);
	expect_counts(0, COUNTS([IMDS_DROP_ARP_SPOOF] = 3, [IMDS_DROP_TAGGED] = 1));
	expect_counts(VM1_SLOT, COUNTS([IMDS_DROP_ARP_SPOOF] = 2, [IMDS_DROP_TAGGED] = 1));
}

/* Not Ethernet/IPv4 ARP, or cut short: the host's ARP takes neither. */
static void test_other_arp_passes(void **state)
{
	const struct hook *h = begin(state);
	struct bpf_frame_spec eth = syn_spec();
	struct bpf_arp_spec a = {.op = 2, .sha = STRANGER_MAC, .spa = VM1_IPV4, .tpa = VM1_IPV4};
	struct bpf_frame f;

	put_vm1(LO_IFINDEX);
	bpf_frame_build_arp(&eth, &a, &f);
	f.b[f.ip_off + 5] = 16; /* protocol address length */
	assert_int_equal(h->run(f.b, f.len, LO_IFINDEX), HARNESS_PASS);
	bpf_frame_build_arp(&eth, &a, &f);
	assert_int_equal(h->run(f.b, f.ip_off + 27, LO_IFINDEX), HARNESS_PASS);
	expect_counts(0, NONE);
}

/* Fragments cannot be matched to a port: dropped even from a known VM, and
 * counted in the totals only (the sender is not looked up). */
static void test_fragments_are_malformed(void **state)
{
	const struct hook *h = begin(state);
	struct bpf_frame_spec s = syn_spec();

	put_vm1(LO_IFINDEX);
	s.frag_off = 0x2000; /* MF: first fragment */
	assert_int_equal(send_frame(h, &s), HARNESS_DROP);
	s.frag_off = 0x0010; /* a later fragment, offset 128 */
	assert_int_equal(send_frame(h, &s), HARNESS_DROP);
	s.frag_off = 0x4000; /* DF alone is not a fragment */
	assert_int_equal(send_frame(h, &s), HARNESS_PASS);
	expect_counts(0, COUNTS([IMDS_DROP_MALFORMED] = 2, [IMDS_PASS_VERIFIED] = 1, [IMDS_PASS_SYN_RECORDED] = 1));
	expect_counts(VM1_SLOT, COUNTS([IMDS_PASS_VERIFIED] = 1, [IMDS_PASS_SYN_RECORDED] = 1));
}

static void test_ihl_below_5_is_malformed(void **state)
{
	const struct hook *h = begin(state);
	struct bpf_frame_spec s = syn_spec();

	put_vm1(LO_IFINDEX);
	for (uint8_t ihl = 1; ihl < 5; ihl++) {
		s.ihl = ihl;
		assert_int_equal(send_frame(h, &s), HARNESS_DROP);
	}
	expect_counts(0, COUNTS([IMDS_DROP_MALFORMED] = 4));
	expect_counts(VM1_SLOT, NONE);
}

/* Options move the TCP header: the port and the recorded source port must
 * come from after them (IHL 6 and the largest, 15). */
static void test_ip_options_are_skipped(void **state)
{
	const struct hook *h = begin(state);
	struct bpf_frame_spec s = syn_spec();
	struct imds_conn conn;

	put_vm1(LO_IFINDEX);
	s.ihl = 6;
	assert_int_equal(send_frame(h, &s), HARNESS_PASS);
	assert_true(conn_recorded(VM1_IPV4, VM1_SPORT, &conn));
	s.ihl = 15;
	s.sport = VM1_SPORT + 1;
	assert_int_equal(send_frame(h, &s), HARNESS_PASS);
	assert_true(conn_recorded(VM1_IPV4, VM1_SPORT + 1, &conn));
	s.dport = 443; /* the port read after the options decides */
	assert_int_equal(send_frame(h, &s), HARNESS_DROP);
	expect_counts(VM1_SLOT,
		      COUNTS([IMDS_PASS_VERIFIED] = 2, [IMDS_PASS_SYN_RECORDED] = 2, [IMDS_DROP_NOT_METADATA_PORT] = 1));
}

/* A frame that ends before the destination address is not known to be
 * ours and passes; one that ends inside the TCP header is ours and cannot
 * be checked, so it is dropped.  The kernel refuses to test-run an IPv4
 * frame shorter than eth + 20 at TC (EINVAL), so those run at XDP only. */
static void test_short_frames(void **state)
{
	const struct hook *h = begin(state);
	struct bpf_frame_spec s = syn_spec();

	put_vm1(LO_IFINDEX);
	if (h->runs_short_ipv4) {
		assert_int_equal(send_len(h, &s, BPF_FRAME_ETH), HARNESS_PASS);
		assert_int_equal(send_len(h, &s, BPF_FRAME_ETH + 19), HARNESS_PASS);
	}
	assert_int_equal(send_len(h, &s, BPF_FRAME_ETH + 20), HARNESS_DROP);
	assert_int_equal(send_len(h, &s, BPF_FRAME_ETH + 20 + 19), HARNESS_DROP);
	s.ihl = 15; /* options claimed, then the frame ends */
	assert_int_equal(send_len(h, &s, BPF_FRAME_ETH + 60 + 10), HARNESS_DROP);
	expect_counts(0, COUNTS([IMDS_DROP_MALFORMED] = 3));
	expect_counts(VM1_SLOT, NONE);
}

/* ---- verification ---- */

static void test_verified_segment_passes(void **state)
{
	const struct hook *h = begin(state);
	struct bpf_frame_spec s = ack_spec();
	struct imds_conn conn;

	put_vm1(LO_IFINDEX);
	assert_int_equal(send_frame(h, &s), HARNESS_PASS);
	s.tcp_flags = BPF_TCP_SYN | BPF_TCP_ACK; /* not a new connection */
	assert_int_equal(send_frame(h, &s), HARNESS_PASS);
	assert_false(conn_recorded(VM1_IPV4, VM1_SPORT, &conn));
	expect_counts(0, COUNTS([IMDS_PASS_VERIFIED] = 2));
	expect_counts(VM1_SLOT, COUNTS([IMDS_PASS_VERIFIED] = 2));
}

static void test_verified_syn_is_recorded(void **state)
{
	const struct hook *h = begin(state);
	struct bpf_frame_spec s = syn_spec();
	struct imds_conn conn;
	uint64_t before = harness_now_ns(), after;

	put_vm1(LO_IFINDEX);
	assert_int_equal(send_frame(h, &s), HARNESS_PASS);
	after = harness_now_ns();
	assert_true(conn_recorded(VM1_IPV4, VM1_SPORT, &conn));
	assert_int_equal(conn.slot, VM1_SLOT);
	assert_int_equal(conn.generation, VM1_GENERATION);
	assert_in_range(conn.verified_ns, before, after);
	expect_counts(0, COUNTS([IMDS_PASS_VERIFIED] = 1, [IMDS_PASS_SYN_RECORDED] = 1));
	expect_counts(VM1_SLOT, COUNTS([IMDS_PASS_VERIFIED] = 1, [IMDS_PASS_SYN_RECORDED] = 1));
}

/* An unknown MAC, and a known MAC whose slot is free (a deleted VM whose
 * index entry is still there): no VM to charge, totals only. */
static void test_unknown_mac_is_dropped(void **state)
{
	const struct hook *h = begin(state);
	struct bpf_frame_spec s = syn_spec();
	struct imds_vm vm = vm1_record(LO_IFINDEX);
	struct imds_conn conn;

	assert_int_equal(send_frame(h, &s), HARNESS_DROP);
	vm.state = IMDS_VM_FREE;
	assert_int_equal(harness_put_vm(VM1_SLOT, &vm), 0);
	assert_int_equal(send_frame(h, &s), HARNESS_DROP);
	assert_false(conn_recorded(VM1_IPV4, VM1_SPORT, &conn));
	expect_counts(0, COUNTS([IMDS_DROP_UNKNOWN_MAC] = 2));
	expect_counts(VM1_SLOT, NONE);
}

static void test_wrong_port_is_dropped(void **state)
{
	const struct hook *h = begin(state);
	struct bpf_frame_spec s = syn_spec();
	struct imds_conn conn;

	put_vm1(OTHER_PORT);
	assert_int_equal(send_frame(h, &s), HARNESS_DROP);
	s.saddr = OTHER_IPV4; /* the port is checked first */
	assert_int_equal(send_frame(h, &s), HARNESS_DROP);
	assert_false(conn_recorded(VM1_IPV4, VM1_SPORT, &conn));
	assert_int_equal(harness_get_vm(VM1_SLOT).ifindex, OTHER_PORT);
	expect_counts(0, COUNTS([IMDS_DROP_WRONG_PORT] = 2));
	expect_counts(VM1_SLOT, COUNTS([IMDS_DROP_WRONG_PORT] = 2));
}

/* A borrowed MAC with the wrong IPv4 must not claim a first-use VM's port. */
static void test_wrong_ipv4_is_dropped_and_does_not_bind(void **state)
{
	const struct hook *h = begin(state);
	struct bpf_frame_spec s = syn_spec();

	put_vm1_binding(0, IMDS_BIND_FIRST_USE);
	s.saddr = OTHER_IPV4;
	assert_int_equal(send_frame(h, &s), HARNESS_DROP);
	assert_int_equal(harness_get_vm(VM1_SLOT).ifindex, 0);
	put_vm1(LO_IFINDEX);
	assert_int_equal(send_frame(h, &s), HARNESS_DROP);
	expect_counts(0, COUNTS([IMDS_DROP_WRONG_IPV4] = 2));
	expect_counts(VM1_SLOT, COUNTS([IMDS_DROP_WRONG_IPV4] = 2));
}

/* Only a VM that opted into first-use binding takes the port it speaks
 * from first. */
static void test_first_verified_packet_binds_port(void **state)
{
	const struct hook *h = begin(state);
	struct bpf_frame_spec s = ack_spec();

	put_vm1_binding(0, IMDS_BIND_FIRST_USE);
	assert_int_equal(send_frame(h, &s), HARNESS_PASS);
	assert_int_equal(harness_get_vm(VM1_SLOT).ifindex, LO_IFINDEX);
	expect_counts(VM1_SLOT, COUNTS([IMDS_PASS_VERIFIED] = 1));
}

/* Identity does not depend on who speaks first: a VM pinned to a port that
 * is absent, or not pinned at all, is served nowhere, and a frame with its
 * exact MAC and IPv4 does not bind it. */
static void test_unbound_is_dropped(void **state)
{
	const struct hook *h = begin(state);
	struct bpf_frame_spec s = syn_spec();
	struct imds_conn conn;

	put_vm1_binding(0, IMDS_BIND_PINNED);
	assert_int_equal(send_frame(h, &s), HARNESS_DROP);
	put_vm1_binding(0, IMDS_BIND_NONE);
	assert_int_equal(send_frame(h, &s), HARNESS_DROP);
	assert_int_equal(harness_get_vm(VM1_SLOT).ifindex, 0);
	assert_false(conn_recorded(VM1_IPV4, VM1_SPORT, &conn));
	expect_counts(0, COUNTS([IMDS_DROP_UNBOUND] = 2));
	expect_counts(VM1_SLOT, COUNTS([IMDS_DROP_UNBOUND] = 2));
}

static void put_mark(uint32_t vm_ipv4, uint16_t vm_port, uint32_t slot, uint8_t hop_limit, uint64_t expires_ns)
{
	struct imds_conn_key key = harness_key4(vm_ipv4, vm_port);
	struct imds_hop_mark mark = {.expires_ns = expires_ns, .slot = slot, .hop_limit = hop_limit};

	harness_open_hop_gate(expires_ns);
	assert_int_equal(bpf_map_update_elem(harness.marks_fd, &key, &mark, BPF_ANY), 0);
}

static int mark_present(uint32_t vm_ipv4, uint16_t vm_port)
{
	struct imds_conn_key key = harness_key4(vm_ipv4, vm_port);
	struct imds_hop_mark mark;

	return bpf_map_lookup_elem(harness.marks_fd, &key, &mark) == 0;
}

/* A new connection from an endpoint does not inherit an old token reply's
 * mark; a dropped SYN changes nothing. */
static void test_verified_syn_forgets_hop_mark(void **state)
{
	const struct hook *h = begin(state);
	struct bpf_frame_spec s = syn_spec();
	uint64_t later = harness_now_ns() + 60 * SEC_NS;

	put_vm1(LO_IFINDEX);
	put_mark(VM1_IPV4, VM1_SPORT, VM1_SLOT, 1, later);
	s.tcp_flags = BPF_TCP_ACK;
	assert_int_equal(send_frame(h, &s), HARNESS_PASS);
	assert_true(mark_present(VM1_IPV4, VM1_SPORT));
	s.tcp_flags = BPF_TCP_SYN;
	s.saddr = OTHER_IPV4;
	put_mark(OTHER_IPV4, VM1_SPORT, VM1_SLOT, 1, later);
	assert_int_equal(send_frame(h, &s), HARNESS_DROP);
	assert_true(mark_present(OTHER_IPV4, VM1_SPORT));
	s.saddr = VM1_IPV4;
	assert_int_equal(send_frame(h, &s), HARNESS_PASS);
	assert_false(mark_present(VM1_IPV4, VM1_SPORT));
}

/* imdsd refuses VM 1's connections for now (conn_gate): its SYNs stop
 * here, its established connections go on; a gate of an older VM of the
 * slot, or one that has run out, stops nothing. */
static void put_gate(uint32_t generation, uint64_t until_ns)
{
	struct imds_conn_gate gate = {.generation = generation, .until_ns = until_ns};
	uint32_t slot = VM1_SLOT;

	assert_int_equal(bpf_map_update_elem(harness.gate_fd, &slot, &gate, BPF_ANY), 0);
}

static void test_gated_vm_syn_is_dropped(void **state)
{
	const struct hook *h = begin(state);
	struct bpf_frame_spec s = syn_spec();
	struct imds_conn conn;
	uint64_t now = harness_now_ns();

	put_vm1(LO_IFINDEX);
	put_gate(VM1_GENERATION, now + 60 * SEC_NS);
	assert_int_equal(send_frame(h, &s), HARNESS_DROP);
	assert_false(conn_recorded(VM1_IPV4, VM1_SPORT, &conn));
	s.tcp_flags = BPF_TCP_ACK; /* a connection imdsd holds already */
	assert_int_equal(send_frame(h, &s), HARNESS_PASS);
	expect_counts(VM1_SLOT, COUNTS([IMDS_PASS_VERIFIED] = 1, [IMDS_DROP_CONN_LIMIT] = 1));
	expect_counts(0, COUNTS([IMDS_PASS_VERIFIED] = 1, [IMDS_DROP_CONN_LIMIT] = 1));
}

static void test_stale_gate_lets_syn_in(void **state)
{
	const struct hook *h = begin(state);
	struct bpf_frame_spec s = syn_spec();
	struct imds_conn conn;

	put_vm1(LO_IFINDEX);
	put_gate(VM1_GENERATION - 1, harness_now_ns() + 60 * SEC_NS); /* the slot's previous VM */
	assert_int_equal(send_frame(h, &s), HARNESS_PASS);
	assert_true(conn_recorded(VM1_IPV4, VM1_SPORT, &conn));
	put_gate(VM1_GENERATION, harness_now_ns() - 1); /* run out */
	assert_int_equal(send_frame(h, &s), HARNESS_PASS);
	expect_counts(VM1_SLOT, COUNTS([IMDS_PASS_VERIFIED] = 2, [IMDS_PASS_SYN_RECORDED] = 2));
}

/* ---- the packet budget ---- */

static void put_vm1_budget(uint32_t rate_pps, uint32_t rate_burst)
{
	struct imds_vm vm = vm1_record(LO_IFINDEX);

	vm.rate_pps = rate_pps;
	vm.rate_burst = rate_burst;
	assert_int_equal(harness_put_vm(VM1_SLOT, &vm), 0);
}

static void put_bucket(uint32_t generation, uint64_t tokens, uint64_t last_ns)
{
	struct imds_budget b = {.generation = generation, .tokens = tokens, .last_ns = last_ns};
	uint32_t slot = VM1_SLOT;

	assert_int_equal(bpf_map_update_elem(harness.budget_fd, &slot, &b, BPF_ANY), 0);
}

static struct imds_budget get_bucket(void)
{
	struct imds_budget b = {0};
	uint32_t slot = VM1_SLOT;

	assert_int_equal(bpf_map_lookup_elem(harness.budget_fd, &slot, &b), 0);
	return b;
}

/* Passes of n ACKs sent back to back. */
static unsigned send_acks(const struct hook *h, unsigned n)
{
	struct bpf_frame_spec s = ack_spec();
	unsigned passed = 0;

	for (unsigned i = 0; i < n; i++)
		passed += send_frame(h, &s) == HARNESS_PASS;
	return passed;
}

/* A fresh VM starts with a full bucket; past it, packets are dropped.  At 1
 * packet/s nothing refills between packets sent microseconds apart. */
static void test_budget_overflow_drops(void **state)
{
	const struct hook *h = begin(state);

	put_vm1_budget(1, 3);
	assert_int_equal(send_acks(h, 5), 3);
	expect_counts(0, COUNTS([IMDS_PASS_VERIFIED] = 3, [IMDS_DROP_BUDGET] = 2));
	expect_counts(VM1_SLOT, COUNTS([IMDS_PASS_VERIFIED] = 3, [IMDS_DROP_BUDGET] = 2));
}

/* Elapsed time earns rate x seconds packets, whole packets only pass. */
static void test_budget_refills_with_time(void **state)
{
	const struct hook *h = begin(state);

	put_vm1_budget(1, 10);
	put_bucket(VM1_GENERATION, 0, harness_now_ns() - SEC_NS * 5 / 2);
	assert_int_equal(send_acks(h, 4), 2);
	expect_counts(VM1_SLOT, COUNTS([IMDS_PASS_VERIFIED] = 2, [IMDS_DROP_BUDGET] = 2));
}

/* A long idle fills the bucket to its size and no further, at the largest
 * rate and burst, without the product elapsed x rate overflowing. */
static void test_budget_refill_is_capped(void **state)
{
	const struct hook *h = begin(state);
	const uint64_t cap = (uint64_t)IMDS_RATE_MAX * IMDS_BUDGET_SCALE;

	put_vm1_budget(IMDS_RATE_MAX, IMDS_RATE_MAX);
	put_bucket(VM1_GENERATION, 0, 1);
	assert_int_equal(send_acks(h, 1), 1);
	assert_true(get_bucket().tokens == cap - IMDS_BUDGET_SCALE);
	put_vm1_budget(1, 2);
	put_bucket(VM1_GENERATION, 0, 1);
	assert_int_equal(send_acks(h, 3), 2);
	expect_counts(VM1_SLOT, COUNTS([IMDS_PASS_VERIFIED] = 3, [IMDS_DROP_BUDGET] = 1));
}

/* A slot given to a new VM (another generation) starts full, with the
 * default burst when the record says 0. */
static void test_budget_new_generation_starts_full(void **state)
{
	const struct hook *h = begin(state);
	struct imds_budget b;

	put_vm1_budget(0, 0);
	put_bucket(VM1_GENERATION - 1, 0, harness_now_ns());
	assert_int_equal(send_acks(h, 1), 1);
	b = get_bucket();
	assert_int_equal(b.generation, VM1_GENERATION);
	assert_true(b.tokens == (IMDS_DEFAULT_RATE_BURST - 1) * IMDS_BUDGET_SCALE);
}

/* Forged packets are dropped before the budget: they cannot spend it. */
static void test_budget_not_spent_by_forgeries(void **state)
{
	const struct hook *h = begin(state);
	struct bpf_frame_spec s = ack_spec();

	put_vm1_budget(1, 1);
	s.saddr = OTHER_IPV4;
	for (int i = 0; i < 3; i++)
		assert_int_equal(send_frame(h, &s), HARNESS_DROP);
	assert_int_equal(send_acks(h, 1), 1);
	expect_counts(VM1_SLOT, COUNTS([IMDS_DROP_WRONG_IPV4] = 3, [IMDS_PASS_VERIFIED] = 1));
}

/* ---- TC egress: the hop limit ---- */

/* A reply from 169.254.169.254:80 to VM 1 carrying data. */
static struct bpf_frame_spec reply_spec(void)
{
	struct bpf_frame_spec s = {
		.src_mac = BRIDGE_MAC,
		.dst_mac = VM1_MAC,
		.saddr = IMDS_IPV4_ADDR,
		.daddr = VM1_IPV4,
		.ttl = 64,
		.protocol = 6,
		.sport = IMDS_TCP_PORT,
		.dport = VM1_SPORT,
		.tcp_flags = BPF_TCP_PSH | BPF_TCP_ACK,
		.payload = 100,
	};

	return s;
}

/* Runs egress on the frame of s; the program must pass it, and the frame
 * that leaves must be byte for byte the one of `want` (whose checksum the
 * builder computes from scratch, so the incremental patch is checked). */
static void egress_expect(const struct bpf_frame_spec *s, const struct bpf_frame_spec *want)
{
	struct bpf_frame in, expected;
	uint8_t out[BPF_FRAME_MAX];
	uint32_t out_len = sizeof(out), retval = 0; /* TC_ACT_OK: never what the programs return */
	int fd = bpf_program__fd(harness.skel->progs.imds_tc_egress);

	bpf_frame_build(s, &in);
	bpf_frame_build(want, &expected);
	assert_int_equal(harness_run_tc(fd, in.b, in.len, LO_IFINDEX, out, &out_len, &retval), 0);
	assert_int_equal(retval, HARNESS_TC_PASS);
	assert_int_equal(out_len, expected.len);
	assert_memory_equal(out, expected.b, expected.len);
	assert_int_equal(bpf_frame_csum(out + in.ip_off, (s->ihl > 5 ? s->ihl : 5) * 4u), 0);
}

static void egress_expect_ttl(const struct bpf_frame_spec *s, uint8_t ttl)
{
	struct bpf_frame_spec want = *s;

	want.ttl = ttl;
	egress_expect(s, &want);
}

static uint64_t in_a_minute(void)
{
	return harness_now_ns() + 60 * SEC_NS;
}

static void test_egress_data_segment_limited(void **state)
{
	struct bpf_frame_spec s = reply_spec();

	begin(state);
	put_mark(VM1_IPV4, VM1_SPORT, VM1_SLOT, 1, in_a_minute());
	egress_expect_ttl(&s, 1);
	put_mark(VM1_IPV4, VM1_SPORT, VM1_SLOT, 3, in_a_minute());
	s.tcp_flags = BPF_TCP_FIN | BPF_TCP_ACK; /* data and FIN */
	egress_expect_ttl(&s, 3);
	expect_counts(0, COUNTS([IMDS_PASS_HOP_LIMITED] = 2));
	expect_counts(VM1_SLOT, COUNTS([IMDS_PASS_HOP_LIMITED] = 2));
}

/* The SYN-ACK, a RST, and segments without data keep their TTL. */
static void test_egress_segments_without_data_keep_ttl(void **state)
{
	const uint8_t flags[] = {BPF_TCP_SYN | BPF_TCP_ACK, BPF_TCP_RST, BPF_TCP_RST | BPF_TCP_ACK, BPF_TCP_ACK,
				 BPF_TCP_FIN | BPF_TCP_ACK};
	struct bpf_frame_spec s = reply_spec();

	begin(state);
	put_mark(VM1_IPV4, VM1_SPORT, VM1_SLOT, 1, in_a_minute());
	for (size_t i = 0; i < sizeof(flags); i++) {
		s.tcp_flags = flags[i];
		s.payload = flags[i] & (BPF_TCP_SYN | BPF_TCP_RST) ? 10 : 0;
		egress_expect(&s, &s);
	}
	assert_true(mark_present(VM1_IPV4, VM1_SPORT));
	expect_counts(0, NONE);
}

/* Not a marked reply, or nothing to lower: unchanged, uncounted. */
static void test_egress_unmarked_or_foreign_unchanged(void **state)
{
	struct bpf_frame_spec s = reply_spec();

	begin(state);
	egress_expect(&s, &s); /* no mark */
	put_mark(VM1_IPV4, VM1_SPORT, VM1_SLOT, 1, in_a_minute());
	s.ttl = 1; /* already at the limit */
	egress_expect(&s, &s);
	s = reply_spec();
	s.sport = 8080;
	egress_expect(&s, &s);
	s = reply_spec();
	s.saddr = OTHER_IPV4;
	egress_expect(&s, &s);
	s = reply_spec();
	s.frag_off = 0x0010; /* a later fragment has no TCP header */
	egress_expect(&s, &s);
	s = reply_spec();
	s.protocol = 17;
	egress_expect(&s, &s);
	expect_counts(0, NONE);
}

static void test_egress_expired_mark_is_removed(void **state)
{
	struct bpf_frame_spec s = reply_spec();

	begin(state);
	put_mark(VM1_IPV4, VM1_SPORT, VM1_SLOT, 1, harness_now_ns() - 1);
	harness_set_hop_gate(in_a_minute()); /* another connection's mark is live */
	egress_expect(&s, &s);
	assert_false(mark_present(VM1_IPV4, VM1_SPORT));
	expect_counts(0, NONE);
}

/* Past hop_gate's time no mark is looked up: imdsd keeps the gate at or
 * after every mark's expiry, so this one cannot be live; a gate open
 * again finds it.  (The program reads the coarse clock, up to a tick
 * behind: a gate a second past is past for it too.) */
static void test_egress_closed_gate_skips_the_lookup(void **state)
{
	struct bpf_frame_spec s = reply_spec();

	begin(state);
	put_vm1(LO_IFINDEX);
	put_mark(VM1_IPV4, VM1_SPORT, VM1_SLOT, 1, in_a_minute());
	harness_set_hop_gate(harness_now_ns() - SEC_NS);
	egress_expect_ttl(&s, 64);
	assert_true(mark_present(VM1_IPV4, VM1_SPORT));
	harness_set_hop_gate(in_a_minute());
	egress_expect_ttl(&s, 1);
	expect_counts(VM1_SLOT, COUNTS([IMDS_PASS_HOP_LIMITED] = 1));
}

/* IP options: the header checksum covers them too; BIG TCP's tot_len 0
 * counts as data; a slot beyond the table is counted in the totals only. */
static void test_egress_options_big_tcp_and_bad_slot(void **state)
{
	struct bpf_frame_spec s = reply_spec();

	begin(state);
	put_mark(VM1_IPV4, VM1_SPORT, VM1_SLOT, 2, in_a_minute());
	s.ihl = 7;
	egress_expect_ttl(&s, 2);
	s = reply_spec();
	s.payload = 0;
	s.tot_len_zero = 1;
	egress_expect_ttl(&s, 2);
	put_mark(VM1_IPV4, VM1_SPORT, IMDS_MAX_VMS, 2, in_a_minute());
	s = reply_spec();
	egress_expect_ttl(&s, 2);
	expect_counts(0, COUNTS([IMDS_PASS_HOP_LIMITED] = 3));
	expect_counts(VM1_SLOT, COUNTS([IMDS_PASS_HOP_LIMITED] = 2));
}

/* ---- TC egress: a reply leaves only toward its VM ---- */

static enum harness_verdict egress_run(const struct bpf_frame_spec *s)
{
	struct bpf_frame f;

	bpf_frame_build(s, &f);
	return harness_run_tc_egress(f.b, f.len, LO_IFINDEX);
}

/* Through the VM's port (the loopback device here) to its MAC: unchanged,
 * uncounted. */
static void test_egress_reply_to_its_vm_leaves(void **state)
{
	struct bpf_frame_spec s = reply_spec();

	begin(state);
	put_vm1(LO_IFINDEX);
	egress_expect(&s, &s);
	s.tcp_flags = BPF_TCP_SYN | BPF_TCP_ACK;
	s.payload = 0;
	egress_expect(&s, &s);
	expect_counts(0, NONE);
}

/* Another port than the VM's (the bridge sent it where the neighbour
 * table or its forwarding table said), another MAC, or a VM with no port:
 * every segment is dropped, the SYN-ACK included, and counted on the VM.
 * Other traffic to the VM through that port is not the guard's business. */
static void test_egress_misdirected_reply_is_dropped(void **state)
{
	struct bpf_frame_spec s = reply_spec();

	begin(state);
	put_vm1(OTHER_PORT);
	assert_int_equal(egress_run(&s), HARNESS_DROP);
	s.tcp_flags = BPF_TCP_SYN | BPF_TCP_ACK;
	s.payload = 0;
	assert_int_equal(egress_run(&s), HARNESS_DROP);
	put_vm1(LO_IFINDEX);
	memcpy(s.dst_mac, (uint8_t[6])STRANGER_MAC, 6);
	assert_int_equal(egress_run(&s), HARNESS_DROP);
	put_vm1(0);
	s = reply_spec();
	assert_int_equal(egress_run(&s), HARNESS_DROP);
	s.sport = 8080; /* not the service */
	egress_expect(&s, &s);
	expect_counts(0, COUNTS([IMDS_DROP_MISDIRECTED_REPLY] = 4));
	expect_counts(VM1_SLOT, COUNTS([IMDS_DROP_MISDIRECTED_REPLY] = 4));
}

#include "bpf_packets6.h"
#include "bpf_packets_conn.h"

/* ---- port hints (bpf/port_hint.h) ---- */

/* A verified request names its VM in its port's hint; a frame dropped for
 * its port names nobody there. */
static void test_verified_sender_hints_its_port(void **state)
{
	const struct hook *h = begin(state);
	struct bpf_frame_spec s = ack_spec();

	put_vm1(OTHER_PORT);
	assert_int_equal(send_frame(h, &s), HARNESS_DROP);
	if (!hinted_slot)
		assert_int_equal(port_hint(LO_IFINDEX), 0);
	put_vm1(LO_IFINDEX);
	assert_int_equal(send_frame(h, &s), HARNESS_PASS);
	assert_int_equal(port_hint(LO_IFINDEX), HINT_OF(LO_IFINDEX, VM1_SLOT));
	expect_counts(VM1_SLOT, COUNTS([IMDS_DROP_WRONG_PORT] = 1, [IMDS_PASS_VERIFIED] = 1));
}

/* The fast path is taken: with the hint in place a VM is found without
 * mac_index, and it still answers only for its own MAC and address. */
static void test_hint_spares_the_mac_lookup(void **state)
{
	const struct hook *h = begin(state);
	struct bpf_frame_spec s = ack_spec();
	struct imds_mac_key key = {.addr = VM1_MAC};

	put_vm1(LO_IFINDEX);
	hint_ports(VM1_SLOT);
	assert_int_equal(bpf_map_delete_elem(harness.mac_fd, &key), 0);
	assert_int_equal(send_frame(h, &s), HARNESS_PASS);
	s.saddr = OTHER_IPV4;
	assert_int_equal(send_frame(h, &s), HARNESS_DROP);
	s = ack_spec();
	memcpy(s.src_mac, (uint8_t[6])STRANGER_MAC, 6);
	assert_int_equal(send_frame(h, &s), HARNESS_DROP);
	expect_counts(VM1_SLOT, COUNTS([IMDS_PASS_VERIFIED] = 1, [IMDS_DROP_WRONG_IPV4] = 1));
	expect_counts(0, COUNTS([IMDS_PASS_VERIFIED] = 1, [IMDS_DROP_WRONG_IPV4] = 1, [IMDS_DROP_UNKNOWN_MAC] = 1));
}

/* A VM's own traffic to elsewhere names it in its port's hint; another
 * VM's address from that port is still a forgery. */
static void test_own_traffic_hints_its_port(void **state)
{
	const struct hook *h = begin(state);
	struct bpf_frame_spec s = syn_spec();

	put_vm1(LO_IFINDEX);
	s.daddr = OTHER_IPV4;
	assert_int_equal(send_frame(h, &s), HARNESS_PASS);
	assert_int_equal(port_hint(LO_IFINDEX), HINT_OF(LO_IFINDEX, VM1_SLOT));
	s.saddr = VM2_IPV4;
	put_vm2_v6();
	assert_int_equal(send_frame(h, &s), HARNESS_DROP);
	expect_counts(VM2_SLOT, COUNTS([IMDS_DROP_FORGED_SOURCE] = 1));
	expect_counts(VM1_SLOT, NONE);
}

/* A reply that reaches its VM names it in the port's hint; a reply to
 * another VM's address through that port is still dropped. */
static void test_reply_reaching_its_vm_hints_its_port(void **state)
{
	struct bpf_frame_spec s = reply_spec();

	begin(state);
	put_vm1(LO_IFINDEX);
	egress_expect(&s, &s);
	assert_int_equal(port_hint(LO_IFINDEX), HINT_OF(LO_IFINDEX, VM1_SLOT));
	put_vm2_v6();
	s.daddr = VM2_IPV4;
	assert_int_equal(egress_run(&s), HARNESS_DROP);
	expect_counts(VM2_SLOT, COUNTS([IMDS_DROP_MISDIRECTED_REPLY] = 1));
	expect_counts(VM1_SLOT, NONE);
}

/* ---- every reason asserted ---- */

static void expect_covered(const struct hook *h, unsigned want)
{
	for (int r = 0; r < IMDS_REASON_MAX; r++)
		if ((want & 1u << r) && !(covered[h->index] & 1u << r))
			print_error("%s: no test asserted a count of %s\n", h->name, imds_reason_names[r]);
	assert_int_equal(covered[h->index] & want, want);
}

static void test_every_reason_covered(void **state)
{
	const unsigned all = (1u << IMDS_REASON_MAX) - 1;
	const unsigned egress_only = 1u << IMDS_PASS_HOP_LIMITED | 1u << IMDS_DROP_MISDIRECTED_REPLY;

	(void)state;
	if (!harness.skel)
		skip();
	expect_covered(&hook_xdp, all & ~egress_only);
	expect_covered(&hook_tc, all & ~egress_only);
	expect_covered(&hook_egress, egress_only);
}

/* Each test named with its hook, so a failure says which program failed. */
#define ON(label, hook, f) {label ": " #f, f, NULL, NULL, (void *)&hook}
#define INGRESS(f) ON("xdp", hook_xdp, f), ON("tc_ingress", hook_tc, f)
#define EGRESS(f) ON("tc_egress", hook_egress, f)

int main(void)
{
	const struct CMUnitTest tests[] = {
		INGRESS(test_other_traffic_passes_uncounted),
		INGRESS(test_own_source_passes_uncounted),
		INGRESS(test_tagged_toward_metadata_is_dropped),
		INGRESS(test_tagged_other_traffic_passes),
		INGRESS(test_tags_too_deep_are_dropped),
		INGRESS(test_other_ports_of_metadata_address_are_dropped),
		INGRESS(test_metadata_source_is_dropped),
		INGRESS(test_vm_address_from_elsewhere_is_dropped),
		INGRESS(test_own_arp_passes_uncounted),
		INGRESS(test_arp_claiming_a_vm_is_dropped),
		INGRESS(test_arp_for_metadata_address),
		INGRESS(test_other_arp_passes),
		INGRESS(test_fragments_are_malformed),
		INGRESS(test_ihl_below_5_is_malformed),
		INGRESS(test_ip_options_are_skipped),
		INGRESS(test_short_frames),
		INGRESS(test_verified_segment_passes),
		INGRESS(test_verified_syn_is_recorded),
		INGRESS(test_unknown_mac_is_dropped),
		INGRESS(test_wrong_port_is_dropped),
		INGRESS(test_wrong_ipv4_is_dropped_and_does_not_bind),
		INGRESS(test_first_verified_packet_binds_port),
		INGRESS(test_unbound_is_dropped),
		INGRESS(test_verified_syn_forgets_hop_mark),
		INGRESS(test_gated_vm_syn_is_dropped),
		INGRESS(test_stale_gate_lets_syn_in),
		INGRESS(test_budget_overflow_drops),
		INGRESS(test_budget_refills_with_time),
		INGRESS(test_budget_refill_is_capped),
		INGRESS(test_budget_new_generation_starts_full),
		INGRESS(test_budget_not_spent_by_forgeries),
		INGRESS(test_ipv6_verified_syn_is_recorded),
		INGRESS(test_syn_recorded_in_slots),
		INGRESS(test_colliding_syn_goes_to_table),
		INGRESS(test_syn_in_slots_removes_table_entry),
		INGRESS(test_expired_entry_taken_writing_left),
		INGRESS(test_ipv6_wrong_source_is_dropped),
		INGRESS(test_ipv6_toward_metadata_other_than_tcp80),
		INGRESS(test_ipv6_sources),
		INGRESS(test_nd_claims),
		INGRESS(test_router_messages),
		INGRESS(test_first_use_binding_indexes_the_port),
		EGRESS(test_egress_ipv6),
		EGRESS(test_egress_data_segment_limited),
		EGRESS(test_egress_segments_without_data_keep_ttl),
		EGRESS(test_egress_unmarked_or_foreign_unchanged),
		EGRESS(test_egress_expired_mark_is_removed),
		EGRESS(test_egress_closed_gate_skips_the_lookup),
		EGRESS(test_egress_options_big_tcp_and_bad_slot),
		EGRESS(test_egress_reply_to_its_vm_leaves),
		EGRESS(test_egress_misdirected_reply_is_dropped),
		INGRESS(test_verified_sender_hints_its_port),
		INGRESS(test_hint_spares_the_mac_lookup),
		INGRESS(test_own_traffic_hints_its_port),
		EGRESS(test_reply_reaching_its_vm_hints_its_port),
		cmocka_unit_test(test_every_reason_covered),
	};
	int failed;

	failed = cmocka_run_group_tests_name("bpf_packets", tests, harness_group_setup, harness_group_teardown);
	for (hinted_slot = 1; hinted_slot <= 3; hinted_slot++) {
		char name[64];

		snprintf(name, sizeof(name), "bpf_packets, every port hinting slot %u", hinted_slot);
		failed += _cmocka_run_group_tests(name, tests, sizeof(tests) / sizeof(tests[0]), harness_group_setup,
						  harness_group_teardown);
	}
	return failed;
}

/* bpf_packets6.h: the IPv6 packet tests of test_bpf_packets.c (included
 * there, so that its proof that every reason was asserted covers these
 * too): [fd00:ec2::254]:80 verified like 169.254.169.254:80, extension
 * headers toward it dropped, the source and Neighbour Discovery guard,
 * Router Advertisements and Redirects, and the egress side (docs/ipv6.md). */
#ifndef TEST_BPF_PACKETS6_H
#define TEST_BPF_PACKETS6_H

#define VM1_IPV6 {0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x11}
#define VM2_IPV6 {0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x12}
#define OTHER_IPV6 {0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x99}
#define VM2_SLOT 2

static const uint8_t vm1_ipv6[16] = VM1_IPV6;
static const uint8_t metadata_ipv6[16] = IMDS_IPV6_ADDR_BYTES;

/* VM 1 bound to `ifindex` with VM1_IPV6 (and its IPv4). */
static void put_vm1_v6(uint32_t ifindex, uint8_t flags)
{
	put_vm1(ifindex);
	assert_int_equal(harness_put_ipv6(VM1_SLOT, vm1_ipv6, flags), 0);
}

/* VM 2: another loaded VM, on OTHER_PORT, with VM2_IPV6. */
static void put_vm2_v6(void)
{
	struct imds_vm vm = vm1_record(OTHER_PORT);
	const uint8_t addr[16] = VM2_IPV6;

	vm.ipv4 = htonl(VM2_IPV4);
	memcpy(vm.mac, (uint8_t[6]){0x52, 0x54, 0x00, 0x00, 0x00, 0x02}, 6);
	assert_int_equal(harness_put_vm(VM2_SLOT, &vm), 0);
	assert_int_equal(harness_put_ipv6(VM2_SLOT, addr, 0), 0);
}

/* A SYN from VM 1's IPv6 to [fd00:ec2::254]:80. */
static struct bpf_frame6_spec syn6_spec(void)
{
	struct bpf_frame6_spec s = {.saddr = VM1_IPV6, .daddr = IMDS_IPV6_ADDR_BYTES};

	return s;
}

static enum harness_verdict send6(const struct hook *h, const struct bpf_frame_spec *eth,
				  const struct bpf_frame6_spec *s)
{
	struct bpf_frame f;

	bpf_frame_build6(eth, s, &f);
	return h->run(f.b, f.len, LO_IFINDEX);
}

static int conn6_recorded(const uint8_t addr[16], uint16_t sport)
{
	struct imds_conn_key key = harness_key6(addr, sport);
	struct imds_conn conn;

	return harness_conn_where(&key, &conn) != 0 && conn.slot == VM1_SLOT;
}

/* The packet budget and the connection table are those of IPv4: a
 * verified SYN over IPv6 is recorded under the 16-byte address. */
static void test_ipv6_verified_syn_is_recorded(void **state)
{
	const struct hook *h = begin(state);
	struct bpf_frame_spec eth = syn_spec();
	struct bpf_frame6_spec s = syn6_spec();

	put_vm1_v6(LO_IFINDEX, 0);
	assert_int_equal(send6(h, &eth, &s), HARNESS_PASS);
	assert_true(conn6_recorded(vm1_ipv6, VM1_SPORT));
	eth.tcp_flags = BPF_TCP_ACK;
	assert_int_equal(send6(h, &eth, &s), HARNESS_PASS);
	expect_counts(0, COUNTS([IMDS_PASS_VERIFIED] = 2, [IMDS_PASS_SYN_RECORDED] = 1));
	expect_counts(VM1_SLOT, COUNTS([IMDS_PASS_VERIFIED] = 2, [IMDS_PASS_SYN_RECORDED] = 1));
}

/* Another VM's IPv6 (or one nobody has) with VM 1's MAC from VM 1's port:
 * drop_wrong_ipv6.  The victim's MAC and IPv6 from VM 1's port:
 * drop_wrong_port on the victim.  Nothing is recorded. */
static void test_ipv6_wrong_source_is_dropped(void **state)
{
	const struct hook *h = begin(state);
	struct bpf_frame_spec eth = syn_spec();
	struct bpf_frame6_spec s = syn6_spec();
	const uint8_t vm2[16] = VM2_IPV6, other[16] = OTHER_IPV6;

	put_vm1_v6(LO_IFINDEX, 0);
	put_vm2_v6();
	memcpy(s.saddr, vm2, 16);
	assert_int_equal(send6(h, &eth, &s), HARNESS_DROP);
	memcpy(s.saddr, other, 16);
	assert_int_equal(send6(h, &eth, &s), HARNESS_DROP);
	memcpy(eth.src_mac, (uint8_t[6]){0x52, 0x54, 0x00, 0x00, 0x00, 0x02}, 6);
	memcpy(s.saddr, vm2, 16);
	assert_int_equal(send6(h, &eth, &s), HARNESS_DROP);
	assert_false(conn6_recorded(vm2, VM1_SPORT));
	expect_counts(0, COUNTS([IMDS_DROP_WRONG_IPV6] = 2, [IMDS_DROP_WRONG_PORT] = 1));
	expect_counts(VM1_SLOT, COUNTS([IMDS_DROP_WRONG_IPV6] = 2));
	expect_counts(VM2_SLOT, COUNTS([IMDS_DROP_WRONG_PORT] = 1));
}

/* Toward fd00:ec2::254: a fragment or any extension header is malformed;
 * another protocol, another TCP port and ICMPv6 other than ND are not the
 * service.  Tagged, nothing reaches it. */
static void test_ipv6_toward_metadata_other_than_tcp80(void **state)
{
	const struct hook *h = begin(state);
	struct bpf_frame_spec eth = syn_spec();
	struct bpf_frame6_spec s = syn6_spec();

	put_vm1_v6(LO_IFINDEX, 0);
	s.nexthdr = 44; /* fragment */
	assert_int_equal(send6(h, &eth, &s), HARNESS_DROP);
	s.nexthdr = 0; /* hop-by-hop options */
	s.raw_next = 1;
	assert_int_equal(send6(h, &eth, &s), HARNESS_DROP);
	s.raw_next = 0;
	s.nexthdr = 60; /* destination options */
	assert_int_equal(send6(h, &eth, &s), HARNESS_DROP);
	s.nexthdr = 17; /* UDP */
	assert_int_equal(send6(h, &eth, &s), HARNESS_DROP);
	s.nexthdr = 0;
	s.icmp_type = 128; /* echo request */
	assert_int_equal(send6(h, &eth, &s), HARNESS_DROP);
	s.icmp_type = 0;
	eth.dport = 22;
	assert_int_equal(send6(h, &eth, &s), HARNESS_DROP);
	eth.dport = IMDS_TCP_PORT;
	eth.vlan = 1;
	assert_int_equal(send6(h, &eth, &s), HARNESS_DROP);
	assert_false(conn6_recorded(vm1_ipv6, VM1_SPORT));
	expect_counts(0, COUNTS([IMDS_DROP_MALFORMED] = 3, [IMDS_DROP_NOT_METADATA_PORT] = 3, [IMDS_DROP_TAGGED] = 1));
	expect_counts(VM1_SLOT, COUNTS([IMDS_DROP_NOT_METADATA_PORT] = 3, [IMDS_DROP_TAGGED] = 1));
}

/* IPv6 that is not the service's passes uncounted: a VM's own, and
 * addresses no VM has, extension headers and all.  From fd00:ec2::254 or
 * from a VM's IPv6 on another MAC: drop_forged_source. */
static void test_ipv6_sources(void **state)
{
	const struct hook *h = begin(state);
	struct bpf_frame_spec eth = syn_spec();
	struct bpf_frame6_spec s = syn6_spec();
	const uint8_t other[16] = OTHER_IPV6;

	put_vm1_v6(LO_IFINDEX, 0);
	memcpy(s.daddr, other, 16);
	assert_int_equal(send6(h, &eth, &s), HARNESS_PASS);
	s.nexthdr = 44;
	assert_int_equal(send6(h, &eth, &s), HARNESS_PASS);
	s.nexthdr = 0;
	memcpy(eth.src_mac, (uint8_t[6])STRANGER_MAC, 6);
	memcpy(s.saddr, other, 16);
	assert_int_equal(send6(h, &eth, &s), HARNESS_PASS);
	expect_counts(0, NONE);
	memcpy(s.saddr, vm1_ipv6, 16);
	assert_int_equal(send6(h, &eth, &s), HARNESS_DROP);
	memcpy(s.saddr, metadata_ipv6, 16);
	assert_int_equal(send6(h, &eth, &s), HARNESS_DROP);
	expect_counts(0, COUNTS([IMDS_DROP_FORGED_SOURCE] = 2));
	expect_counts(VM1_SLOT, COUNTS([IMDS_DROP_FORGED_SOURCE] = 1));
}

/* Neighbour Discovery from a stranger: an advertisement for VM 1's address
 * or for fd00:ec2::254, and duplicate address detection for either, are
 * dropped; so is VM 1's own MAC with another target link-layer address.
 * Asking for fd00:ec2::254, and VM 1's own advertisement, pass. */
static void test_nd_claims(void **state)
{
	const struct hook *h = begin(state);
	struct bpf_frame_spec eth = syn_spec();
	struct bpf_frame6_spec na = {.saddr = OTHER_IPV6, .daddr = IMDS_IPV6_ADDR_BYTES, .icmp_type = 136,
				      .target = VM1_IPV6, .opt_type = 2, .opt_mac = STRANGER_MAC};
	struct bpf_frame6_spec ns = {.daddr = {0xff, 0x02, [11] = 1, [12] = 0xff, [14] = 0x02, [15] = 0x54},
				      .icmp_type = 135, .target = IMDS_IPV6_ADDR_BYTES};

	put_vm1_v6(LO_IFINDEX, 0);
	memcpy(eth.src_mac, (uint8_t[6])STRANGER_MAC, 6);
	assert_int_equal(send6(h, &eth, &na), HARNESS_DROP); /* NA for VM 1 */
	memcpy(na.target, metadata_ipv6, 16);
	assert_int_equal(send6(h, &eth, &na), HARNESS_DROP); /* NA for the service */
	assert_int_equal(send6(h, &eth, &ns), HARNESS_DROP); /* DAD for the service */
	memcpy(ns.target, vm1_ipv6, 16);
	assert_int_equal(send6(h, &eth, &ns), HARNESS_DROP); /* DAD for VM 1 */
	memcpy(ns.saddr, (uint8_t[16])OTHER_IPV6, 16);
	memcpy(ns.target, metadata_ipv6, 16);
	assert_int_equal(send6(h, &eth, &ns), HARNESS_PASS); /* who has fd00:ec2::254 */
	memcpy(eth.src_mac, (uint8_t[6])VM1_MAC, 6);
	memcpy(na.saddr, vm1_ipv6, 16);
	memcpy(na.target, vm1_ipv6, 16);
	assert_int_equal(send6(h, &eth, &na), HARNESS_DROP); /* its MAC, a stranger's lladdr */
	memcpy(na.opt_mac, (uint8_t[6])VM1_MAC, 6);
	assert_int_equal(send6(h, &eth, &na), HARNESS_PASS);
	ns.opt_type = 1;
	memcpy(ns.opt_mac, (uint8_t[6])STRANGER_MAC, 6);
	memcpy(ns.saddr, vm1_ipv6, 16);
	assert_int_equal(send6(h, &eth, &ns), HARNESS_DROP); /* its address, a stranger's lladdr */
	expect_counts(0, COUNTS([IMDS_DROP_ND_SPOOF] = 6));
	expect_counts(VM1_SLOT, COUNTS([IMDS_DROP_ND_SPOOF] = 4));
}

/* A loaded VM's Router Advertisements and Redirects are dropped unless it
 * is an ipv6-router, whatever MAC they carry on its port (port_index);
 * on a port that is no VM's (an uplink's router) they pass. */
static void test_router_messages(void **state)
{
	const struct hook *h = begin(state);
	struct bpf_frame_spec eth = syn_spec();
	struct bpf_frame6_spec ra = {.saddr = {0xfe, 0x80, [15] = 0x11}, .daddr = {0xff, 0x02, [15] = 1},
				      .icmp_type = 134, .hop_limit = 255};

	put_vm1_v6(LO_IFINDEX, 0);
	assert_int_equal(send6(h, &eth, &ra), HARNESS_DROP);
	ra.icmp_type = 137;
	assert_int_equal(send6(h, &eth, &ra), HARNESS_DROP);
	memcpy(eth.src_mac, (uint8_t[6])STRANGER_MAC, 6);
	assert_int_equal(send6(h, &eth, &ra), HARNESS_DROP);
	expect_counts(0, COUNTS([IMDS_DROP_ROUTER_MESSAGE] = 3));
	expect_counts(VM1_SLOT, COUNTS([IMDS_DROP_ROUTER_MESSAGE] = 3));
	harness_reset();
	put_vm1_v6(OTHER_PORT, 0); /* the frames' port is no VM's */
	assert_int_equal(send6(h, &eth, &ra), HARNESS_PASS);
	expect_counts(0, NONE);
	memcpy(eth.src_mac, (uint8_t[6])VM1_MAC, 6);
	harness_reset();
	put_vm1_v6(LO_IFINDEX, IMDS_VM_IPV6_ROUTER);
	assert_int_equal(send6(h, &eth, &ra), HARNESS_PASS);
	ra.icmp_type = 134;
	assert_int_equal(send6(h, &eth, &ra), HARNESS_PASS);
	expect_counts(0, NONE);
}

/* A first-use VM's port is known from its first verified packet on: the
 * data plane writes port_index as it binds, so RAs with any MAC on that
 * port are judged. */
static void test_first_use_binding_indexes_the_port(void **state)
{
	const struct hook *h = begin(state);
	struct bpf_frame_spec eth = syn_spec();
	struct bpf_frame6_spec ra = {.saddr = {0xfe, 0x80, [15] = 0x11}, .daddr = {0xff, 0x02, [15] = 1},
				      .icmp_type = 134, .hop_limit = 255};

	put_vm1_binding(0, IMDS_BIND_FIRST_USE);
	memcpy(eth.src_mac, (uint8_t[6])STRANGER_MAC, 6);
	assert_int_equal(send6(h, &eth, &ra), HARNESS_PASS); /* no VM's port yet */
	memcpy(eth.src_mac, (uint8_t[6])VM1_MAC, 6);
	assert_int_equal(send_frame(h, &eth), HARNESS_PASS); /* binds VM 1 to this port */
	assert_int_equal(harness_get_vm(VM1_SLOT).ifindex, LO_IFINDEX);
	memcpy(eth.src_mac, (uint8_t[6])STRANGER_MAC, 6);
	assert_int_equal(send6(h, &eth, &ra), HARNESS_DROP);
	expect_counts(VM1_SLOT, COUNTS([IMDS_PASS_VERIFIED] = 1, [IMDS_PASS_SYN_RECORDED] = 1,
				       [IMDS_DROP_ROUTER_MESSAGE] = 1));
}

/* ---- egress over IPv6 ---- */

/* A reply from [fd00:ec2::254]:80 to VM 1: its hop limit when marked,
 * dropped toward another MAC. */
static void test_egress_ipv6(void **state)
{
	struct bpf_frame_spec eth = reply_spec();
	struct bpf_frame6_spec s = {.saddr = IMDS_IPV6_ADDR_BYTES, .daddr = VM1_IPV6};
	struct imds_conn_key key = harness_key6(vm1_ipv6, VM1_SPORT);
	struct imds_hop_mark mark = {.expires_ns = in_a_minute(), .slot = VM1_SLOT, .hop_limit = 2};
	int fd = bpf_program__fd(harness.skel ? harness.skel->progs.imds_tc_egress : NULL);
	uint8_t out[BPF_FRAME_MAX];
	uint32_t out_len = sizeof(out), retval = 0; /* TC_ACT_OK: never what the programs return */
	struct bpf_frame f;

	begin(state);
	put_vm1_v6(LO_IFINDEX, 0);
	harness_open_hop_gate(mark.expires_ns);
	assert_int_equal(bpf_map_update_elem(harness.marks_fd, &key, &mark, BPF_ANY), 0);
	bpf_frame_build6(&eth, &s, &f);
	assert_int_equal(harness_run_tc(fd, f.b, f.len, LO_IFINDEX, out, &out_len, &retval), 0);
	assert_int_equal(retval, HARNESS_TC_PASS);
	assert_int_equal(out[f.ip_off + 7], 2);
	assert_memory_equal(out, f.b, f.ip_off + 7);
	memcpy(eth.dst_mac, (uint8_t[6])STRANGER_MAC, 6);
	assert_int_equal(send6(&hook_egress, &eth, &s), HARNESS_DROP);
	expect_counts(0, COUNTS([IMDS_PASS_HOP_LIMITED] = 1, [IMDS_DROP_MISDIRECTED_REPLY] = 1));
	expect_counts(VM1_SLOT, COUNTS([IMDS_PASS_HOP_LIMITED] = 1, [IMDS_DROP_MISDIRECTED_REPLY] = 1));
}

#endif

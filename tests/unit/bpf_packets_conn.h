/* bpf_packets_conn.h: where the ingress program records a verified SYN
 * (included by test_bpf_packets.c, as bpf_packets6.h): conn_slots, the
 * array imdsd reads in place, or conn_table when the endpoint's entry is
 * taken; never both (include/imds.h, struct imds_conn_slot).  The harness
 * makes conn_slots HARNESS_CONN_SLOTS entries, so ports collide. */
#ifndef TEST_BPF_PACKETS_CONN_H
#define TEST_BPF_PACKETS_CONN_H

static uint32_t slot_index4(uint32_t saddr, uint16_t sport)
{
	struct imds_conn_key key = harness_key4(saddr, sport);

	return imds_conn_slot_of(&key) & (HARNESS_CONN_SLOTS - 1);
}

/* A source port of VM 1 other than VM1_SPORT whose entry is VM1_SPORT's
 * (same = true) or another one. */
static uint16_t colliding_port(bool same)
{
	uint32_t want = slot_index4(VM1_IPV4, VM1_SPORT);

	for (uint16_t port = VM1_SPORT + 1; port != VM1_SPORT; port++)
		if ((slot_index4(VM1_IPV4, port) == want) == same)
			return port;
	fail_msg("no port of the wanted entry");
	return 0;
}

static int conn_where4(uint16_t sport)
{
	struct imds_conn_key key = harness_key4(VM1_IPV4, sport);
	struct imds_conn conn;

	return harness_conn_where(&key, &conn);
}

static enum harness_verdict send_syn_from(const struct hook *h, uint16_t sport)
{
	struct bpf_frame_spec s = syn_spec();

	s.sport = sport;
	return send_frame(h, &s);
}

static struct imds_conn_slot slot_entry(uint32_t idx)
{
	struct imds_conn_slot e = {0};

	assert_int_equal(bpf_map_lookup_elem(harness.slots_fd, &idx, &e), 0);
	return e;
}

/* The entry as the tests make it: its state set to `state`, sequence kept
 * (FREE: imdsd consumed it; WRITING: a claim on another CPU). */
static void set_entry_state(uint32_t idx, uint32_t state)
{
	struct imds_conn_slot e = slot_entry(idx);

	e.seq_state = (e.seq_state & ~IMDS_CONN_STATE_MASK) | state;
	assert_int_equal(bpf_map_update_elem(harness.slots_fd, &idx, &e, BPF_ANY), 0);
}

/* The entry is claimed with the next sequence and published READY; the
 * LRU table holds nothing of the endpoint. */
static void test_syn_recorded_in_slots(void **state)
{
	const struct hook *h = begin(state);
	uint32_t idx = slot_index4(VM1_IPV4, VM1_SPORT);
	struct imds_conn_slot e;

	put_vm1(LO_IFINDEX);
	assert_int_equal(send_syn_from(h, VM1_SPORT), HARNESS_PASS);
	assert_int_equal(conn_where4(VM1_SPORT), 1);
	e = slot_entry(idx);
	assert_int_equal(e.seq_state, IMDS_CONN_SEQ_STEP | IMDS_CONN_READY);
	assert_int_equal(e.slot, VM1_SLOT);
	/* A retransmitted SYN takes its own endpoint's entry again. */
	assert_int_equal(send_syn_from(h, VM1_SPORT), HARNESS_PASS);
	assert_int_equal(slot_entry(idx).seq_state, 2 * IMDS_CONN_SEQ_STEP | IMDS_CONN_READY);
	expect_counts(VM1_SLOT, COUNTS([IMDS_PASS_VERIFIED] = 2, [IMDS_PASS_SYN_RECORDED] = 2));
}

/* A second endpoint whose entry holds the first's fresh SYN goes to
 * conn_table; one with an entry of its own goes to conn_slots. */
static void test_colliding_syn_goes_to_table(void **state)
{
	const struct hook *h = begin(state);
	uint16_t same = colliding_port(true), other = colliding_port(false);

	put_vm1(LO_IFINDEX);
	assert_int_equal(send_syn_from(h, VM1_SPORT), HARNESS_PASS);
	assert_int_equal(send_syn_from(h, same), HARNESS_PASS);
	assert_int_equal(send_syn_from(h, other), HARNESS_PASS);
	assert_int_equal(conn_where4(VM1_SPORT), 1);
	assert_int_equal(conn_where4(same), 2);
	assert_int_equal(conn_where4(other), 1);
	expect_counts(VM1_SLOT, COUNTS([IMDS_PASS_VERIFIED] = 3, [IMDS_PASS_SYN_RECORDED] = 3));
}

/* The endpoint's older SYN in conn_table (its entry was taken then) goes
 * when its new SYN takes the entry: a connection from the endpoint that
 * did not pass the program finds neither. */
static void test_syn_in_slots_removes_table_entry(void **state)
{
	const struct hook *h = begin(state);
	uint16_t same = colliding_port(true);
	uint32_t idx = slot_index4(VM1_IPV4, VM1_SPORT);
	struct imds_conn_key key = harness_key4(VM1_IPV4, same);
	struct imds_conn conn;

	put_vm1(LO_IFINDEX);
	assert_int_equal(send_syn_from(h, VM1_SPORT), HARNESS_PASS);
	assert_int_equal(send_syn_from(h, same), HARNESS_PASS);
	assert_int_equal(conn_where4(same), 2);
	set_entry_state(idx, IMDS_CONN_FREE); /* imdsd consumed VM1_SPORT's */
	assert_int_equal(send_syn_from(h, same), HARNESS_PASS);
	assert_int_equal(conn_where4(same), 1);
	assert_int_equal(bpf_map_lookup_elem(harness.conn_fd, &key, &conn), -ENOENT);
}

/* An entry nobody took within IMDS_CONN_MAX_AGE_NS is anyone's; one
 * stamped after this SYN's clock read (another CPU's, a moment later) or
 * being written (a claim on another CPU) is no one's. */
static void test_expired_entry_taken_writing_left(void **state)
{
	const struct hook *h = begin(state);
	uint16_t same = colliding_port(true);
	uint32_t idx = slot_index4(VM1_IPV4, VM1_SPORT);
	struct imds_conn_slot e;

	put_vm1(LO_IFINDEX);
	assert_int_equal(send_syn_from(h, VM1_SPORT), HARNESS_PASS);
	e = slot_entry(idx);
	e.verified_ns = harness_now_ns() + SEC_NS;
	assert_int_equal(bpf_map_update_elem(harness.slots_fd, &idx, &e, BPF_ANY), 0);
	assert_int_equal(send_syn_from(h, same), HARNESS_PASS);
	assert_int_equal(conn_where4(same), 2);
	assert_int_equal(conn_where4(VM1_SPORT), 1);
	e.verified_ns = harness_now_ns() - IMDS_CONN_MAX_AGE_NS - SEC_NS;
	assert_int_equal(bpf_map_update_elem(harness.slots_fd, &idx, &e, BPF_ANY), 0);
	assert_int_equal(send_syn_from(h, same), HARNESS_PASS);
	assert_int_equal(conn_where4(same), 1);
	assert_int_equal(conn_where4(VM1_SPORT), 0);
	set_entry_state(idx, IMDS_CONN_WRITING);
	assert_int_equal(send_syn_from(h, VM1_SPORT), HARNESS_PASS);
	assert_int_equal(conn_where4(VM1_SPORT), 2);
}

#endif

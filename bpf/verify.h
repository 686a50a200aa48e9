/* verify.h: who is talking.  A packet to the metadata service is accepted
 * only if its source MAC belongs to a loaded VM, it arrived on that VM's
 * port, and its source address is the VM's: its IPv4, or one of its IPv6
 * addresses (ipv6_index).  Helpers return a
 * reason from enum imds_reason; one exit path in the entry program turns
 * it into a verdict and a counter. */
#ifndef IMDS_BPF_VERIFY_H
#define IMDS_BPF_VERIFY_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "imds.h"
#include "maps.h"
#include "parse.h"
#include "counters.h"
#include "port_hint.h"

/* imdsd sets this before loading the programs when the operator opted the
 * whole host into first-use binding (imdsd --bind-first-use; unsafe, see
 * docs/design.md): then a VM without a named port binds like a first-use one. */
const volatile __u32 first_use_all = 0;

/* Whether a VM without a port may take the one this packet came in on. */
static __always_inline bool may_bind_first_use(const struct imds_vm *vm)
{
	return vm->binding == IMDS_BIND_FIRST_USE || (first_use_all && vm->binding == IMDS_BIND_NONE);
}

/* Whether `addr` is one of the VM's IPv6 addresses: ipv6_index names its
 * slot, for the generation that holds the slot now. */
static __always_inline bool verify_ipv6_owned(const void *addr, __u32 slot, const struct imds_vm *vm)
{
	struct imds_ipv6_owner *owner;
	struct in6_addr key;

	__builtin_memcpy(&key, addr, sizeof(key));
	owner = bpf_map_lookup_elem(&IMDS_MAP_IPV6_INDEX_ID, &key);
	return owner && owner->slot == slot && owner->generation == vm->generation;
}

/* A VM is served on its bound port only.  A pinned VM's port comes from
 * user space (the record's port name, resolved by imds-loadmap and by imdsd
 * as the port joins the bridge); while it is absent the VM is unbound and
 * nothing it sends passes.  A first-use VM (opt-in) is bound to the port its
 * first fully verified packet arrives on (compare-and-swap, so two racing
 * ports cannot both win); the address is checked before binding so that a
 * frame with a borrowed MAC but the wrong IPv4 cannot claim the VM's port. */
static __always_inline enum imds_reason check_port_and_address(struct imds_vm *vm, const struct imds_pkt *pkt,
								 __u32 ingress, __u32 slot)
{
	__u32 bound = vm->ifindex;

	if (bound && bound != ingress)
		return IMDS_DROP_WRONG_PORT;
	if (!bound && !may_bind_first_use(vm))
		return IMDS_DROP_UNBOUND;
	if (pkt->ip6) {
		if (!verify_ipv6_owned(&pkt->ip6->saddr, slot, vm))
			return IMDS_DROP_WRONG_IPV6;
	} else if (pkt->ip->saddr != vm->ipv4) {
		return IMDS_DROP_WRONG_IPV4;
	}
	if (!bound) {
		bound = __sync_val_compare_and_swap(&vm->ifindex, 0, ingress);
		if (bound && bound != ingress)
			return IMDS_DROP_WRONG_PORT;
		bpf_map_update_elem(&IMDS_MAP_PORT_INDEX_ID, &ingress, &slot, BPF_ANY);
	}
	return IMDS_PASS_VERIFIED;
}

/* The sender by its MAC (mac_index), unless the port's hint already names
 * the VM bound here with that MAC: the one mac_index would name, as MACs of
 * loaded VMs are unique. */
static __always_inline enum imds_reason verify_sender(__u32 ingress, const struct imds_pkt *pkt, __u32 *slot_out,
						      struct imds_vm **vm_out)
{
	struct imds_mac_key key = {};
	enum imds_reason reason;
	struct imds_vm *vm;
	__u32 *slot, hinted;

	vm = port_hint_vm(ingress, &hinted);
	if (vm && mac_equal(pkt->eth->h_source, vm->mac)) {
		*slot_out = hinted;
		*vm_out = vm;
		return check_port_and_address(vm, pkt, ingress, hinted);
	}
	__builtin_memcpy(key.addr, pkt->eth->h_source, 6);
	slot = bpf_map_lookup_elem(&IMDS_MAP_MAC_INDEX_ID, &key);
	if (!slot)
		return IMDS_DROP_UNKNOWN_MAC;
	vm = bpf_map_lookup_elem(&IMDS_MAP_VM_TABLE_ID, slot);
	if (!vm || vm->state != IMDS_VM_ACTIVE)
		return IMDS_DROP_UNKNOWN_MAC;
	*slot_out = *slot;
	*vm_out = vm;
	reason = check_port_and_address(vm, pkt, ingress, *slot);
	if (reason == IMDS_PASS_VERIFIED)
		port_hint_remember(ingress, *slot_out, vm);
	return reason;
}

/* imdsd refuses this VM's connections for now (struct imds_conn_gate):
 * its SYN goes no further than here. */
static __always_inline bool connection_gated(__u32 slot, const struct imds_vm *vm)
{
	struct imds_conn_gate *gate = bpf_map_lookup_elem(&IMDS_MAP_CONN_GATE_ID, &slot);

	return gate && gate->generation == vm->generation && bpf_ktime_get_ns() < gate->until_ns;
}

/* conn_slots' entries less one (a power of two less one), set by the store
 * before load from the map's size. */
const volatile __u32 conn_slots_mask = IMDS_CONN_SLOTS - 1;

static __always_inline bool conn_key_equal(const struct imds_conn_key *a, const struct imds_conn_key *b)
{
	__u64 a0, a1, b0, b1;

	__builtin_memcpy(&a0, a->saddr, 8);
	__builtin_memcpy(&a1, a->saddr + 8, 8);
	__builtin_memcpy(&b0, b->saddr, 8);
	__builtin_memcpy(&b1, b->saddr + 8, 8);
	return a0 == b0 && a1 == b1 && a->sport == b->sport;
}

/* Whether a SYN of `key` may take the entry whose state word is `old`: a
 * free one; one of its own endpoint (a retransmitted SYN, or a SYN whose
 * connection never came: either way the new one is the only live one); or
 * one nobody will take any more.  One being written is left alone. */
static __always_inline bool conn_slot_takeable(const struct imds_conn_slot *e, __u32 old,
					       const struct imds_conn_key *key, __u64 now)
{
	__u32 state = old & IMDS_CONN_STATE_MASK;

	if (state == IMDS_CONN_FREE)
		return true;
	if (state != IMDS_CONN_READY)
		return false;
	/* An entry stamped after `now` (another CPU's SYN just now) is fresh,
	 * not 2^64 ns old. */
	return conn_key_equal(&e->key, key) || (now > e->verified_ns && now - e->verified_ns > IMDS_CONN_MAX_AGE_NS);
}

/* Records the SYN in its conn_slots entry: claim (compare-and-swap to
 * WRITING with the next sequence), fill, publish (exchange to READY, a full
 * barrier, so imdsd sees the fields once it sees READY).  false when the
 * entry is taken or the claim lost a race: the caller uses conn_table. */
static __always_inline bool record_in_slots(const struct imds_conn_key *key, const struct imds_conn *conn)
{
	__u32 idx = imds_conn_slot_of(key) & conn_slots_mask;
	struct imds_conn_slot *e = bpf_map_lookup_elem(&IMDS_MAP_CONN_SLOTS_ID, &idx);
	__u32 old, seq;

	if (!e)
		return false;
	old = *(volatile __u32 *)&e->seq_state;
	if (!conn_slot_takeable(e, old, key, conn->verified_ns))
		return false;
	seq = (old & ~IMDS_CONN_STATE_MASK) + IMDS_CONN_SEQ_STEP;
	if (__sync_val_compare_and_swap(&e->seq_state, old, seq | IMDS_CONN_WRITING) != old)
		return false;
	e->slot = conn->slot;
	e->generation = conn->generation;
	e->verified_ns = conn->verified_ns;
	__builtin_memcpy(&e->key, key, sizeof(*key));
	__sync_lock_test_and_set(&e->seq_state, seq | IMDS_CONN_READY);
	return true;
}

/* The server only serves connections whose SYN passed here.  An endpoint
 * has one live SYN at a time, so recording it in one table takes any
 * older entry of the endpoint out of the other: a connection from it that
 * did not pass here (the host's own, say) finds neither. */
static __always_inline void record_connection(const struct imds_pkt *pkt, __u32 slot, const struct imds_vm *vm)
{
	struct imds_conn_key key;
	struct imds_conn conn = {
		.slot = slot,
		.generation = vm->generation,
		.verified_ns = bpf_ktime_get_ns(),
	};

	conn_key_of(&key, pkt);
	if (record_in_slots(&key, &conn)) {
		/* Nearly always absent: a lookup takes no lock, a delete does. */
		if (bpf_map_lookup_elem(&IMDS_MAP_CONN_TABLE_ID, &key))
			bpf_map_delete_elem(&IMDS_MAP_CONN_TABLE_ID, &key);
		count_reason(slot, IMDS_PASS_SYN_RECORDED);
	} else if (bpf_map_update_elem(&IMDS_MAP_CONN_TABLE_ID, &key, &conn, BPF_ANY) == 0) {
		count_reason(slot, IMDS_PASS_SYN_RECORDED);
	}
}

#endif

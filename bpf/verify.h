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

static __always_inline enum imds_reason verify_sender(__u32 ingress, const struct imds_pkt *pkt, __u32 *slot_out,
						      struct imds_vm **vm_out)
{
	struct imds_mac_key key = {};
	struct imds_vm *vm;
	__u32 *slot;

	__builtin_memcpy(key.addr, pkt->eth->h_source, 6);
	slot = bpf_map_lookup_elem(&IMDS_MAP_MAC_INDEX_ID, &key);
	if (!slot)
		return IMDS_DROP_UNKNOWN_MAC;
	vm = bpf_map_lookup_elem(&IMDS_MAP_VM_TABLE_ID, slot);
	if (!vm || vm->state != IMDS_VM_ACTIVE)
		return IMDS_DROP_UNKNOWN_MAC;
	*slot_out = *slot;
	*vm_out = vm;
	return check_port_and_address(vm, pkt, ingress, *slot);
}

/* imdsd refuses this VM's connections for now (struct imds_conn_gate):
 * its SYN goes no further than here. */
static __always_inline bool connection_gated(__u32 slot, const struct imds_vm *vm)
{
	struct imds_conn_gate *gate = bpf_map_lookup_elem(&IMDS_MAP_CONN_GATE_ID, &slot);

	return gate && gate->generation == vm->generation && bpf_ktime_get_ns() < gate->until_ns;
}

/* The server only serves connections whose SYN passed here. */
static __always_inline void record_connection(const struct imds_pkt *pkt, __u32 slot, const struct imds_vm *vm)
{
	struct imds_conn_key key;
	struct imds_conn conn = {
		.slot = slot,
		.generation = vm->generation,
		.verified_ns = bpf_ktime_get_ns(),
	};

	conn_key_of(&key, pkt);
	if (bpf_map_update_elem(&IMDS_MAP_CONN_TABLE_ID, &key, &conn, BPF_ANY) == 0)
		count_reason(slot, IMDS_PASS_SYN_RECORDED);
}

#endif

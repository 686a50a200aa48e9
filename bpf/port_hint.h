/* port_hint.h: which VM a bridge port belongs to, without a hash lookup.
 * Nearly every frame the data plane judges is a VM's own, on its own port:
 * its requests to the service (verify.h), its other IPv4 and ARP (guard.h),
 * the service's replies to it (TC egress).  Each of those asked a hash map
 * (mac_index, ipv4_index) for the VM and then vm_table.  port_hints
 * remembers, per port, the slot of the VM last found bound to it, and the
 * fast path takes a frame as that VM's only when vm_table itself says so
 * (active, bound to this very port, the frame's MAC and address its own).
 * Whatever a hint says, a frame that does not match the VM it names goes
 * the slow way, so a stale, colliding or missing hint costs a lookup and
 * changes no verdict.  Only the data plane writes hints, and only for a VM
 * vm_table shows bound to that port. */
#ifndef IMDS_BPF_PORT_HINT_H
#define IMDS_BPF_PORT_HINT_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "imds.h"
#include "maps.h"

static __always_inline __u64 *port_hint_entry(__u32 ifindex)
{
	__u32 key = ifindex & (IMDS_PORT_HINTS - 1);

	return bpf_map_lookup_elem(&IMDS_MAP_PORT_HINTS_ID, &key);
}

/* The active VM bound to port `ifindex` that the port's hint names, or
 * NULL.  The caller still checks the frame against it (MAC, address). */
static __always_inline struct imds_vm *port_hint_vm(__u32 ifindex, __u32 *slot_out)
{
	__u64 *entry = port_hint_entry(ifindex);
	struct imds_vm *vm;
	__u64 hint;
	__u32 slot;

	if (!entry)
		return NULL;
	hint = *(volatile __u64 *)entry; /* once: ifindex and slot of one write */
	if ((__u32)(hint >> 32) != ifindex || !ifindex)
		return NULL;
	slot = (__u32)hint;
	vm = bpf_map_lookup_elem(&IMDS_MAP_VM_TABLE_ID, &slot);
	if (!vm || vm->state != IMDS_VM_ACTIVE || vm->ifindex != ifindex)
		return NULL;
	*slot_out = slot;
	return vm;
}

/* After a slow lookup found `vm` (slot) bound to port `ifindex`.  Written
 * only when it changes, so ports' hints stay shared, clean cache lines. */
static __always_inline void port_hint_remember(__u32 ifindex, __u32 slot, const struct imds_vm *vm)
{
	__u64 want = (__u64)ifindex << 32 | slot;
	__u64 *entry = port_hint_entry(ifindex);

	if (!entry || !ifindex || vm->ifindex != ifindex)
		return;
	if (*(volatile __u64 *)entry != want)
		*(volatile __u64 *)entry = want;
}

#endif

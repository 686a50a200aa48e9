/* guard.h: what a VM port may send, and where a reply of the service may
 * go (docs/design.md, "What a VM port may send").  A guest with root can
 * send any frame; these checks keep it from speaking for the metadata
 * address or for another VM:
 *   - ARP whose sender address is 169.254.169.254 is dropped (only the host
 *     owns it), and ARP whose sender address is a loaded VM's IPv4 passes
 *     only from that VM's port with that VM's MAC (Ethernet source and ARP
 *     sender hardware address): no guest can redirect the host's replies
 *     to another VM, or another VM's requests to itself;
 *   - IPv4 with source 169.254.169.254 is dropped, and IPv4 from a loaded
 *     VM's address passes only from its port and MAC;
 *   - toward 169.254.169.254, only TCP port 80 passes (the host's other
 *     services listening on every address stay out of reach), and nothing
 *     in a VLAN tag does;
 *   - at TC egress, a reply from 169.254.169.254:80 to a loaded VM's IPv4
 *     leaves only through that VM's port toward its MAC, whatever the
 *     host's neighbour table or the bridge's forwarding table say.
 * Helpers return a reason from enum imds_reason, or GUARD_OTHER for a frame
 * that passes uncounted, and the slot to count it on. */
#ifndef IMDS_BPF_GUARD_H
#define IMDS_BPF_GUARD_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "compat.h"
#include "imds.h"
#include "maps.h"
#include "parse.h"
#include "port_hint.h"

/* Not a reason: the frame passes and is not counted (count_reason ignores
 * values from IMDS_REASON_MAX up). */
#define GUARD_OTHER IMDS_REASON_MAX

/* ARP for Ethernet and IPv4: header, sender MAC and IPv4, target MAC and
 * IPv4 (RFC 826).  A shorter one is dropped by the host's ARP too. */
#define GUARD_ARP_LEN 28
#define GUARD_ARP_SHA 8
#define GUARD_ARP_SPA 14
#define GUARD_ARP_TPA 24

/* The VM that owns `addr` now, or NULL.  The record is checked against the
 * address too: an index entry the store has not yet removed says nothing. */
static __always_inline struct imds_vm *guard_owner(__be32 addr, __u32 *slot_out)
{
	struct imds_vm *vm;
	__u32 *slot;

	slot = bpf_map_lookup_elem(&ipv4_index, &addr);
	if (!slot)
		return NULL;
	vm = bpf_map_lookup_elem(&vm_table, slot);
	if (!vm || vm->state != IMDS_VM_ACTIVE || vm->ipv4 != addr)
		return NULL;
	*slot_out = *slot;
	return vm;
}

/* Whether a frame from port `ingress` with these MACs may speak for the VM
 * (see guard_claim). */
static __always_inline bool guard_speaks_for(const struct imds_vm *vm, const __u8 *src_mac, const __u8 *mac2,
					     __u32 ingress)
{
	__u32 bound = vm->ifindex;

	return (!bound || bound == ingress) && mac_equal(src_mac, vm->mac) && mac_equal(mac2, vm->mac);
}

/* The slot of the VM whose address `addr` is when this frame may not speak
 * for it, else 0.  It may when it comes from the VM's bound port with the
 * VM's MAC as Ethernet source and as `mac2` (ARP's sender hardware address;
 * the Ethernet source again for IPv4).  A VM without a port yet (pinned to
 * an absent port, or first-use before its first packet) is held to its
 * MAC only: its port is not known, and its own ARP must pass before it can
 * speak to the service at all. */
static __always_inline __u32 guard_claim(__be32 addr, const __u8 *src_mac, const __u8 *mac2, __u32 ingress)
{
	struct imds_vm *vm;
	__u32 slot = 0;

	/* The port's own VM speaking for itself: guard_owner would name it
	 * too (addresses of loaded VMs are unique). */
	vm = port_hint_vm(ingress, &slot);
	if (vm && vm->ipv4 == addr && guard_speaks_for(vm, src_mac, mac2, ingress))
		return 0;
	slot = 0;
	vm = guard_owner(addr, &slot);
	if (!vm)
		return 0;
	if (!guard_speaks_for(vm, src_mac, mac2, ingress))
		return slot;
	port_hint_remember(ingress, slot, vm);
	return 0;
}

/* Whom a drop that claims no VM's address is counted on: the sender, when
 * its MAC is a loaded VM's bound to this very port; else the totals only. */
static __always_inline __u32 guard_sender_slot(const struct ethhdr *eth, __u32 ingress)
{
	struct imds_mac_key key = {};
	struct imds_vm *vm;
	__u32 *slot;

	__builtin_memcpy(key.addr, eth->h_source, 6);
	slot = bpf_map_lookup_elem(&mac_index, &key);
	if (!slot)
		return 0;
	vm = bpf_map_lookup_elem(&vm_table, slot);
	if (!vm || vm->state != IMDS_VM_ACTIVE || vm->ifindex != ingress)
		return 0;
	return *slot;
}

static __always_inline enum imds_reason guard_arp(const struct imds_frame *f, void *end, __u32 ingress,
						  __u32 *slot)
{
	__u8 *arp = f->l3;
	__be32 spa, tpa;

	if ((void *)(arp + GUARD_ARP_LEN) > end)
		return GUARD_OTHER;
	/* ar_pro, ar_hln, ar_pln: Ethernet/IPv4 ARP is the only kind the host
	 * takes on a bridge (any ar_hrd is checked: the host accepts two). */
	if (((struct arphdr *)arp)->ar_pro != bpf_htons(ETH_P_IPV4) || arp[4] != 6 || arp[5] != 4)
		return GUARD_OTHER;
	__builtin_memcpy(&spa, arp + GUARD_ARP_SPA, sizeof(spa));
	__builtin_memcpy(&tpa, arp + GUARD_ARP_TPA, sizeof(tpa));
	if (spa == bpf_htonl(IMDS_IPV4_ADDR)) {
		*slot = guard_sender_slot(f->eth, ingress);
		return IMDS_DROP_ARP_SPOOF;
	}
	if (f->tagged && tpa == bpf_htonl(IMDS_IPV4_ADDR)) {
		*slot = guard_sender_slot(f->eth, ingress);
		return IMDS_DROP_TAGGED;
	}
	*slot = guard_claim(spa, f->eth->h_source, arp + GUARD_ARP_SHA, ingress);
	return *slot ? IMDS_DROP_ARP_SPOOF : GUARD_OTHER;
}

/* IPv4 other than a VM's to the service (imds.bpf.c checks those): only
 * the source is checked, with one hash lookup for a VM's own traffic. */
static __always_inline enum imds_reason guard_ipv4_source(const struct imds_frame *f, const struct iphdr *ip,
							  __u32 ingress, __u32 *slot)
{
	if (ip->saddr == bpf_htonl(IMDS_IPV4_ADDR)) {
		*slot = guard_sender_slot(f->eth, ingress);
		return IMDS_DROP_FORGED_SOURCE;
	}
	*slot = guard_claim(ip->saddr, f->eth->h_source, f->eth->h_source, ingress);
	return *slot ? IMDS_DROP_FORGED_SOURCE : GUARD_OTHER;
}

/* Whether a reply leaving by skb's port toward eth's destination reaches
 * the VM itself: its bound port, its MAC. */
static __always_inline bool guard_reply_reaches(const struct imds_vm *vm, const struct __sk_buff *skb,
						const struct ethhdr *eth)
{
	return vm->ifindex == skb->ifindex && mac_equal(eth->h_dest, vm->mac);
}

/* TC egress: the slot of the VM a reply from 169.254.169.254:80 is
 * addressed to when it is about to leave through another port than the
 * VM's or toward another MAC (a poisoned neighbour entry, a bridge that
 * learned the VM's MAC on a forger's port); 0 when it may leave.  eth..end
 * is the frame, ip its IPv4 header (hop_parse_reply). */
static __always_inline __u32 guard_reply_misdirected(const struct __sk_buff *skb, const struct ethhdr *eth,
						     const struct iphdr *ip)
{
	struct imds_vm *vm;
	__u32 slot = 0;

	vm = port_hint_vm(skb->ifindex, &slot);
	if (vm && vm->ipv4 == ip->daddr && guard_reply_reaches(vm, skb, eth))
		return 0;
	slot = 0;
	vm = guard_owner(ip->daddr, &slot);
	if (!vm)
		return 0;
	if (!guard_reply_reaches(vm, skb, eth))
		return slot;
	port_hint_remember(skb->ifindex, slot, vm);
	return 0;
}

#endif

/* guard6.h: what a VM port may send over IPv6, and where a reply of the
 * service over IPv6 may go: guard.h's rules for fd00:ec2::254 and the
 * VMs' IPv6 addresses (docs/ipv6.md, "The guard"), with Neighbour
 * Discovery (RFC 4861) in ARP's place:
 *   - IPv6 with source fd00:ec2::254 is dropped, and IPv6 from a loaded
 *     VM's address passes only from its port and MAC;
 *   - a Neighbour Advertisement whose target is fd00:ec2::254 is dropped,
 *     and one whose target is a loaded VM's address passes only from that
 *     VM's port with its MAC as Ethernet source and as target link-layer
 *     address; a solicitation's source link-layer address must be the
 *     VM's MAC when its source is the VM's address, and Duplicate Address
 *     Detection (source ::) for fd00:ec2::254 or another VM's address is
 *     dropped, so no guest can take either address away;
 *   - Router Advertisements and Redirects from a loaded VM are dropped
 *     unless the VM is an ipv6-router (struct imds_vm_ipv6): either could
 *     make another guest send its packets for fd00:ec2::254 to the sender;
 *   - at TC egress, a reply from [fd00:ec2::254]:80 to a loaded VM's IPv6
 *     leaves only through that VM's port toward its MAC.
 * Helpers return a reason from enum imds_reason or GUARD_OTHER, and the
 * slot to count it on, as in guard.h. */
#ifndef IMDS_BPF_GUARD6_H
#define IMDS_BPF_GUARD6_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "compat.h"
#include "imds.h"
#include "maps.h"
#include "parse.h"
#include "guard.h"

/* The VM that owns IPv6 `addr` now, or NULL (ipv6_index, checked against
 * the slot's generation). */
static __always_inline struct imds_vm *guard_owner6(const void *addr, __u32 *slot_out)
{
	struct imds_ipv6_owner *owner;
	struct in6_addr key;
	struct imds_vm *vm;
	__u32 slot;

	__builtin_memcpy(&key, addr, sizeof(key));
	owner = bpf_map_lookup_elem(&IMDS_MAP_IPV6_INDEX_ID, &key);
	if (!owner)
		return NULL;
	slot = owner->slot;
	vm = bpf_map_lookup_elem(&IMDS_MAP_VM_TABLE_ID, &slot);
	if (!vm || vm->state != IMDS_VM_ACTIVE || vm->generation != owner->generation)
		return NULL;
	*slot_out = slot;
	return vm;
}

/* guard_claim for an IPv6 address: the owner's slot when this frame may
 * not speak for it, else 0. */
static __always_inline __u32 guard_claim6(const void *addr, const __u8 *src_mac, const __u8 *mac2, __u32 ingress)
{
	struct imds_vm *vm;
	__u32 slot = 0;

	vm = guard_owner6(addr, &slot);
	return vm && !guard_speaks_for(vm, src_mac, mac2, ingress) ? slot : 0;
}

/* The link-layer address option of `type` in an ND message whose options
 * start at opts, or `fallback` (the Ethernet source) when it has none. */
static __always_inline const __u8 *guard_nd_lladdr(__u8 *opts, void *end, __u8 type, const __u8 *fallback)
{
#pragma unroll
	for (int i = 0; i < ND_OPTS_MAX; i++) {
		if ((void *)(opts + 8) > end || opts[1] == 0)
			break;
		if (opts[0] == type && opts[1] == 1)
			return opts + 2;
		if (opts[1] != 1)
			break; /* a longer option: the rest is not an Ethernet address */
		opts += 8;
	}
	return fallback;
}

/* The slot of a loaded VM bound to port `ingress`, or 0 (port_index). */
static __always_inline __u32 guard_port_slot(__u32 ingress)
{
	struct imds_vm *vm;
	__u32 *slot;

	slot = bpf_map_lookup_elem(&IMDS_MAP_PORT_INDEX_ID, &ingress);
	if (!slot)
		return 0;
	vm = bpf_map_lookup_elem(&IMDS_MAP_VM_TABLE_ID, slot);
	if (!vm || vm->state != IMDS_VM_ACTIVE || vm->ifindex != ingress)
		return 0;
	return *slot;
}

/* Router Advertisement or Redirect: only from a VM that routes.  The
 * sender is the VM whose MAC it carries on that VM's port, else the VM
 * whose port it came in on, whatever MAC it carries; a port that is no
 * VM's (an uplink with the network's router) is not judged. */
static __always_inline enum imds_reason guard_router_message(const struct imds_frame *f, __u32 ingress, __u32 *slot)
{
	struct imds_vm_ipv6 *v6;
	struct imds_vm *vm;
	__u32 s;

	s = guard_sender_slot(f->eth, ingress);
	if (!s)
		s = guard_port_slot(ingress);
	if (!s)
		return GUARD_OTHER;
	vm = bpf_map_lookup_elem(&IMDS_MAP_VM_TABLE_ID, &s);
	v6 = bpf_map_lookup_elem(&IMDS_MAP_VM_IPV6_ID, &s);
	if (vm && v6 && v6->generation == vm->generation && (v6->flags & IMDS_VM_IPV6_ROUTER))
		return GUARD_OTHER;
	*slot = s;
	return IMDS_DROP_ROUTER_MESSAGE;
}

/* Neighbour Solicitation and Advertisement: who may claim which address. */
static __always_inline enum imds_reason guard_nd(const struct imds_frame *f, struct ipv6hdr *ip6, __u8 *icmp,
						 void *end, __u32 ingress, __u32 *slot)
{
	const __u8 *target = icmp + 8, *lladdr;
	__u8 type = icmp[0];
	bool dad = type == ICMP6_NEIGH_SOLICIT && addr6_is_unspecified(&ip6->saddr);

	if ((void *)(icmp + ND_MSG_LEN) > end)
		return GUARD_OTHER; /* the host's ND drops a short one too */
	if (type == ICMP6_NEIGH_ADVERT || dad) {
		if (addr6_is_metadata(target)) {
			*slot = guard_sender_slot(f->eth, ingress);
			return IMDS_DROP_ND_SPOOF;
		}
		lladdr = guard_nd_lladdr(icmp + ND_MSG_LEN, end, ND_OPT_TARGET_LL_ADDR, f->eth->h_source);
		*slot = guard_claim6(target, f->eth->h_source, lladdr, ingress);
		return *slot ? IMDS_DROP_ND_SPOOF : GUARD_OTHER;
	}
	if (f->tagged && addr6_is_metadata(target)) {
		*slot = guard_sender_slot(f->eth, ingress);
		return IMDS_DROP_TAGGED;
	}
	/* A solicitation teaches its source's link-layer address. */
	lladdr = guard_nd_lladdr(icmp + ND_MSG_LEN, end, ND_OPT_SOURCE_LL_ADDR, f->eth->h_source);
	*slot = guard_claim6(&ip6->saddr, f->eth->h_source, lladdr, ingress);
	return *slot ? IMDS_DROP_ND_SPOOF : GUARD_OTHER;
}

/* ICMPv6 right behind the header: the ND and router messages above. */
static __always_inline enum imds_reason guard_icmp6(const struct imds_frame *f, struct ipv6hdr *ip6, void *end,
						    __u32 ingress, __u32 *slot)
{
	__u8 *icmp = (void *)(ip6 + 1);

	if ((void *)(icmp + 1) > end)
		return GUARD_OTHER;
	switch (icmp[0]) {
	case ICMP6_ROUTER_ADVERT:
	case ICMP6_REDIRECT:
		return guard_router_message(f, ingress, slot);
	case ICMP6_NEIGH_SOLICIT:
	case ICMP6_NEIGH_ADVERT:
		return guard_nd(f, ip6, icmp, end, ingress, slot);
	default:
		return GUARD_OTHER;
	}
}

/* IPv6 other than a VM's to the service: the source (one hash lookup for
 * a VM's own traffic), then ICMPv6's messages. */
static __always_inline enum imds_reason guard_ipv6(const struct imds_frame *f, struct ipv6hdr *ip6, void *end,
						   __u32 ingress, __u32 *slot)
{
	if (addr6_is_metadata(&ip6->saddr)) {
		*slot = guard_sender_slot(f->eth, ingress);
		return IMDS_DROP_FORGED_SOURCE;
	}
	*slot = guard_claim6(&ip6->saddr, f->eth->h_source, f->eth->h_source, ingress);
	if (*slot)
		return IMDS_DROP_FORGED_SOURCE;
	if (ip6->nexthdr != IPPROTO_ICMPV6)
		return GUARD_OTHER;
	return guard_icmp6(f, ip6, end, ingress, slot);
}

/* TC egress: guard_reply_misdirected for a reply to a VM's IPv6. */
static __always_inline __u32 guard_reply_misdirected6(const struct __sk_buff *skb, const struct ethhdr *eth,
						      const struct ipv6hdr *ip6)
{
	struct imds_vm *vm;
	__u32 slot = 0;

	vm = guard_owner6(&ip6->daddr, &slot);
	return vm && !guard_reply_reaches(vm, skb, eth) ? slot : 0;
}

#endif

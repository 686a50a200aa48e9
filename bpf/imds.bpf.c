/* imds.bpf.c: the data plane's entry programs, one set on every port of the
 * bridge.  At ingress (TC, imdsd's default hook, or XDP with --ingress xdp)
 * it verifies the sender of each packet to 169.254.169.254:80 and
 * [fd00:ec2::254]:80 (docs/ipv6.md), holds each
 * VM to its packet budget and records verified SYNs for imdsd; it drops
 * what a VM port may not send (guard.h: ARP or IPv4 speaking for the
 * metadata address or another VM, other ports of 169.254.169.254, tagged
 * frames toward it); everything else passes untouched.  TC egress on the
 * same ports keeps replies to their VM and applies the hop limit to token
 * replies.  The logic lives in the headers, one role each. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "compat.h"
#include "imds.h"
#include "maps.h"
#include "counters.h"
#include "parse.h"
#include "verify.h"
#include "guard.h"
#include "guard6.h"
#include "budget.h"
#include "hoplimit.h"

/* A packet to the service (169.254.169.254 or fd00:ec2::254): only TCP
 * port 80, untagged, from a verified VM within its budget; a verified SYN
 * is recorded for imdsd, unless imdsd refuses the VM's connections for
 * now.  parsed: what parse_metadata_packet(6) made of it. */
static __always_inline enum imds_reason ingress_metadata(const struct imds_frame *f, enum imds_parse parsed,
							 const struct imds_pkt *pkt, __u32 ingress, __u32 *slot)
{
	struct imds_vm *vm = NULL;
	enum imds_reason reason;

	if (f->tagged) {
		*slot = guard_sender_slot(f->eth, ingress);
		return IMDS_DROP_TAGGED;
	}
	switch (parsed) {
	case PARSE_MALFORMED:
		return IMDS_DROP_MALFORMED; /* the sender is not looked up: totals only */
	case PARSE_OTHER_PORT:
		*slot = guard_sender_slot(f->eth, ingress);
		return IMDS_DROP_NOT_METADATA_PORT;
	default:
		break;
	}
	reason = verify_sender(ingress, pkt, slot, &vm);
	if (reason == IMDS_PASS_VERIFIED && vm)
		reason = budget_consume(*slot, vm);
	if (reason == IMDS_PASS_VERIFIED && vm && pkt->tcp->syn && !pkt->tcp->ack) {
		if (connection_gated(*slot, vm))
			return IMDS_DROP_CONN_LIMIT;
		hop_forget(pkt);
		record_connection(pkt, *slot, vm);
	}
	return reason;
}

static __always_inline enum imds_reason ingress_ipv4(const struct imds_frame *f, void *end, __u32 ingress,
						     __u32 *slot)
{
	struct iphdr *ip = f->l3;
	struct imds_pkt pkt = {};

	if ((void *)(ip + 1) > end)
		return GUARD_OTHER; /* shorter than a header: no stack takes it */
	if (ip->daddr == bpf_htonl(IMDS_IPV4_ADDR) && ip->saddr != bpf_htonl(IMDS_IPV4_ADDR))
		return ingress_metadata(f, parse_metadata_packet(f->eth, ip, end, &pkt), &pkt, ingress, slot);
	return guard_ipv4_source(f, ip, ingress, slot);
}

/* Neighbour Discovery toward fd00:ec2::254 itself (a unicast solicitation
 * to check it is still reachable, an advertisement answering the host) is
 * the guard's to judge, not the service's: the only ICMPv6 it lets on. */
static __always_inline bool ingress_nd_to_service(const struct ipv6hdr *ip6, void *end)
{
	const __u8 *icmp = (const void *)(ip6 + 1);

	if (ip6->nexthdr != IPPROTO_ICMPV6 || (const void *)(icmp + 1) > end)
		return false;
	return icmp[0] == ICMP6_NEIGH_SOLICIT || icmp[0] == ICMP6_NEIGH_ADVERT;
}

static __always_inline enum imds_reason ingress_ipv6(const struct imds_frame *f, void *end, __u32 ingress,
						     __u32 *slot)
{
	struct ipv6hdr *ip6 = f->l3;
	struct imds_pkt pkt = {};

	if ((void *)(ip6 + 1) > end)
		return GUARD_OTHER;
	if (addr6_is_metadata(&ip6->daddr) && !addr6_is_metadata(&ip6->saddr) && !ingress_nd_to_service(ip6, end))
		return ingress_metadata(f, parse_metadata_packet6(f->eth, ip6, end, &pkt), &pkt, ingress, slot);
	return guard_ipv6(f, ip6, end, ingress, slot);
}

/* Everything the data plane does with a frame a VM sent: true to pass it,
 * false to drop it.  Shared by the XDP program and the TC ingress one;
 * tagged says the stack already took a VLAN tag off (TC). */
static __always_inline bool imds_ingress(void *data, void *end, __u32 ingress, __u8 tagged)
{
	enum imds_reason reason;
	struct imds_frame f;
	__u32 slot = 0;

	switch (parse_frame(data, end, tagged, &f)) {
	case FRAME_IPV4:
		reason = ingress_ipv4(&f, end, ingress, &slot);
		break;
	case FRAME_IPV6:
		reason = ingress_ipv6(&f, end, ingress, &slot);
		break;
	case FRAME_ARP:
		reason = guard_arp(&f, end, ingress, &slot);
		break;
	case FRAME_TOO_DEEP:
		slot = guard_sender_slot(f.eth, ingress);
		reason = IMDS_DROP_TAGGED;
		break;
	default:
		return true;
	}
	if (reason == GUARD_OTHER)
		return true;
	count_reason(slot, reason);
	return reason == IMDS_PASS_VERIFIED;
}

/* imdsd --ingress xdp.  Tags are in the frame here. */
SEC("xdp")
int imds_xdp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;

	return imds_ingress(data, end, ctx->ingress_ifindex, 0) ? XDP_PASS : XDP_DROP;
}

/* The same checks at TC ingress of a port, imdsd's default hook: on skb
 * based ports (veth, tap) XDP costs bulk traffic a copy of every GSO
 * packet (generic mode) or GSO itself (veth native mode); TC reads the
 * skb in place.  skb->protocol spares other traffic (neither IPv4, IPv6
 * nor ARP) even a packet load.  The stack has already taken one VLAN tag off the
 * frame (skb->vlan_present; protocol is then the type under it), so a
 * tag can be in the skb's metadata, in the frame, or both. */
SEC("tc")
int imds_tc_ingress(struct __sk_buff *skb)
{
	__be16 proto = (__be16)skb->protocol;
	__u8 tagged = skb->vlan_present != 0;

	if (!tagged && proto != bpf_htons(ETH_P_IPV4) && proto != bpf_htons(ETH_P_IPV6) && proto != bpf_htons(ETH_P_ARP) &&
	    !frame_is_tag(proto))
		return IMDS_TC_PASS;
	tc_pull_headers(skb);
	return imds_ingress((void *)(long)skb->data, (void *)(long)skb->data_end, skb->ingress_ifindex, tagged) ?
		       IMDS_TC_PASS :
		       TC_ACT_SHOT;
}

/* A token reply leaves with the VM's hop limit; counted on its VM. */
static __always_inline void egress_count_limited(const struct imds_hop_mark *mark)
{
	count_reason(mark->slot, IMDS_PASS_HOP_LIMITED); /* count_reason's lookup bounds it by the map's size */
}

static __always_inline int egress_ipv4(struct __sk_buff *skb)
{
	struct imds_hop_mark *mark;
	struct ethhdr *eth;
	struct iphdr *ip;
	struct tcphdr *tcp;
	__u32 slot;

	if (!hop_parse_reply(skb, &ip, &tcp))
		return IMDS_TC_PASS;
	/* hop_parse_reply found ip right behind the Ethernet header (the
	 * host sends untagged); reading skb->data again here would make clang
	 * reuse a moved context pointer, which the verifier refuses. */
	eth = (void *)ip - sizeof(*eth);
	slot = guard_reply_misdirected(skb, eth, ip);
	if (slot) {
		count_reason(slot, IMDS_DROP_MISDIRECTED_REPLY);
		return TC_ACT_SHOT;
	}
	mark = hop_find_mark(ip, tcp);
	/* Only ever lower a TTL (a reply already below the limit is fine). */
	if (!mark || ip->ttl <= mark->hop_limit)
		return IMDS_TC_PASS;
	/* Fail closed: a token reply that cannot be limited does not leave
	 * (TCP retransmits it and the next attempt is rewritten). */
	if (hop_rewrite_ttl(skb, ip, mark->hop_limit) < 0)
		return TC_ACT_SHOT;
	egress_count_limited(mark);
	return IMDS_TC_PASS;
}

/* The same for a reply from [fd00:ec2::254]:80, with the Hop Limit. */
static __always_inline int egress_ipv6(struct __sk_buff *skb)
{
	struct imds_hop_mark *mark;
	struct ipv6hdr *ip6;
	struct ethhdr *eth;
	struct tcphdr *tcp;
	__u32 slot;

	if (!hop_parse_reply6(skb, &ip6, &tcp))
		return IMDS_TC_PASS;
	eth = (void *)ip6 - sizeof(*eth);
	slot = guard_reply_misdirected6(skb, eth, ip6);
	if (slot) {
		count_reason(slot, IMDS_DROP_MISDIRECTED_REPLY);
		return TC_ACT_SHOT;
	}
	mark = hop_find_mark6(ip6, tcp);
	if (!mark || ip6->hop_limit <= mark->hop_limit)
		return IMDS_TC_PASS;
	if (hop_rewrite_hop_limit(skb, mark->hop_limit) < 0)
		return TC_ACT_SHOT;
	egress_count_limited(mark);
	return IMDS_TC_PASS;
}

/* Egress of a VM's port, i.e. frames the bridge sends toward the VM: a
 * reply of the service leaves only toward its VM (guard.h, guard6.h), and
 * a token reply with the VM's hop limit (hoplimit.h). */
SEC("tc")
int imds_tc_egress(struct __sk_buff *skb)
{
	if (skb->protocol == bpf_htons(ETH_P_IPV4))
		return egress_ipv4(skb);
	if (skb->protocol == bpf_htons(ETH_P_IPV6))
		return egress_ipv6(skb);
	return IMDS_TC_PASS;
}

char LICENSE[] SEC("license") = "GPL";

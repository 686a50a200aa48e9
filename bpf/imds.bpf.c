/* imds.bpf.c: the data plane's entry programs, one set on every port of the
 * bridge.  At ingress (TC, imdsd's default hook, or XDP with --ingress xdp)
 * it verifies the sender of each packet to 169.254.169.254:80, holds each
 * VM to its packet budget and records verified SYNs for imdsd; everything
 * else passes untouched.  TC egress on the same ports applies the hop limit
 * to token replies.  The logic lives in the headers, one role each. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "compat.h"
#include "imds.h"
#include "maps.h"
#include "counters.h"
#include "parse.h"
#include "verify.h"
#include "budget.h"
#include "hoplimit.h"

/* Everything the data plane does with a frame a VM sent: true to pass it,
 * false to drop it.  Shared by the XDP program and the TC ingress one. */
static __always_inline bool imds_ingress(void *data, void *end, __u32 ingress)
{
	struct imds_vm *vm = NULL;
	struct imds_pkt pkt;
	enum imds_reason reason;
	__u32 slot = 0;

	switch (parse_metadata_packet(data, end, &pkt)) {
	case PARSE_OTHER:
		return true;
	case PARSE_MALFORMED:
		count_reason(0, IMDS_DROP_MALFORMED);
		return false;
	default:
		break;
	}
	reason = verify_sender(ingress, &pkt, &slot, &vm);
	if (reason == IMDS_PASS_VERIFIED && vm)
		reason = budget_consume(slot, vm);
	count_reason(slot, reason);
	if (reason != IMDS_PASS_VERIFIED)
		return false;
	if (pkt.tcp->syn && !pkt.tcp->ack && vm) {
		hop_forget(&pkt);
		record_connection(&pkt, slot, vm);
	}
	return true;
}

/* imdsd --ingress xdp. */
SEC("xdp")
int imds_xdp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;

	return imds_ingress(data, end, ctx->ingress_ifindex) ? XDP_PASS : XDP_DROP;
}

/* The same checks at TC ingress of a port, imdsd's default hook: on skb
 * based ports (veth, tap) XDP costs bulk traffic a copy of every GSO
 * packet (generic mode) or GSO itself (veth native mode); TC reads the
 * skb in place.  skb->protocol spares other traffic even a packet load. */
SEC("tc")
int imds_tc_ingress(struct __sk_buff *skb)
{
	if (skb->protocol != bpf_htons(ETH_P_IPV4))
		return TC_ACT_OK;
	tc_pull_headers(skb);
	return imds_ingress((void *)(long)skb->data, (void *)(long)skb->data_end, skb->ingress_ifindex) ?
		       TC_ACT_OK :
		       TC_ACT_SHOT;
}

/* Egress of a VM's port, i.e. frames the bridge sends toward the VM. */
SEC("tc")
int imds_tc_egress(struct __sk_buff *skb)
{
	struct imds_hop_mark *mark;
	struct iphdr *ip;
	struct tcphdr *tcp;
	__u32 slot;

	if (!hop_parse_reply(skb, &ip, &tcp))
		return TC_ACT_OK;
	mark = hop_find_mark(ip, tcp);
	if (!mark)
		return TC_ACT_OK;
	/* Only ever lower a TTL (a reply already below the limit is fine). */
	if (ip->ttl <= mark->hop_limit)
		return TC_ACT_OK;
	slot = mark->slot < IMDS_MAX_VMS ? mark->slot : 0;
	/* Fail closed: a token reply that cannot be limited does not leave
	 * (TCP retransmits it and the next attempt is rewritten). */
	if (hop_rewrite_ttl(skb, ip, mark->hop_limit) < 0)
		return TC_ACT_SHOT;
	count_reason(slot, IMDS_PASS_HOP_LIMITED);
	return TC_ACT_OK;
}

char LICENSE[] SEC("license") = "GPL";

/* imds.bpf.c: XDP on every port of the bridge.  Verifies the sender of each
 * packet to 169.254.169.254:80, holds each VM to its packet budget and
 * records verified SYNs for imdsd; passes everything else untouched.  TC
 * egress on the same ports applies the hop limit to token replies. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "imds.h"
#include "maps.h"
#include "parse.h"
#include "verify.h"
#include "budget.h"
#include "hoplimit.h"

SEC("xdp")
int imds_xdp(struct xdp_md *ctx)
{
	struct imds_vm *vm = NULL;
	struct imds_pkt pkt;
	enum imds_reason reason;
	__u32 slot = 0;

	switch (parse_metadata_packet(ctx, &pkt)) {
	case PARSE_OTHER:
		return XDP_PASS;
	case PARSE_MALFORMED:
		count_reason(0, IMDS_DROP_MALFORMED);
		return XDP_DROP;
	default:
		break;
	}
	reason = verify_sender(ctx, &pkt, &slot, &vm);
	if (reason == IMDS_PASS_VERIFIED && vm)
		reason = budget_consume(slot, vm);
	count_reason(slot, reason);
	if (reason != IMDS_PASS_VERIFIED)
		return XDP_DROP;
	if (pkt.tcp->syn && !pkt.tcp->ack && vm) {
		hop_forget(&pkt);
		record_connection(&pkt, slot, vm);
	}
	return XDP_PASS;
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

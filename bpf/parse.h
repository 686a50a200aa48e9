/* parse.h: just enough header parsing to tell metadata traffic from the
 * rest.  Other traffic must cost next to nothing, so each step bails out as
 * soon as the packet cannot be for 169.254.169.254:80. */
#ifndef IMDS_BPF_PARSE_H
#define IMDS_BPF_PARSE_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "compat.h"
#include "imds.h"

struct imds_pkt {
	struct ethhdr *eth;
	struct iphdr *ip;
	struct tcphdr *tcp;
};

enum imds_parse {
	PARSE_OTHER = 0,     /* not for the metadata service: pass */
	PARSE_METADATA = 1,  /* TCP to 169.254.169.254:80 */
	PARSE_MALFORMED = 2, /* addressed to the service but unparseable */
};

/* data..end: the frame from its Ethernet header (XDP: the whole frame; TC:
 * the linear part, which tc_pull_headers made cover the headers). */
static __always_inline enum imds_parse parse_metadata_packet(void *data, void *end, struct imds_pkt *pkt)
{
	struct ethhdr *eth = data;
	struct iphdr *ip;
	struct tcphdr *tcp;

	if ((void *)(eth + 1) > end || eth->h_proto != bpf_htons(ETH_P_IPV4))
		return PARSE_OTHER;
	ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > end || ip->daddr != bpf_htonl(IMDS_IPV4_ADDR))
		return PARSE_OTHER;
	if (ip->protocol != IPPROTO_TCP)
		return PARSE_OTHER;
	/* A fragment cannot be matched to a port, and a header shorter than
	 * 20 bytes is bogus: neither reaches the service. */
	if (ip->ihl < 5 || (ip->frag_off & bpf_htons(IP_MF | IP_OFFSET)))
		return PARSE_MALFORMED;
	tcp = (void *)ip + ip->ihl * 4;
	if ((void *)(tcp + 1) > end)
		return PARSE_MALFORMED;
	if (tcp->dest != bpf_htons(IMDS_TCP_PORT))
		return PARSE_OTHER;
	pkt->eth = eth;
	pkt->ip = ip;
	pkt->tcp = tcp;
	return PARSE_METADATA;
}

/* TC ingress sees an skb whose linear part may end before the headers (a
 * tap device builds skbs with as much linear data as the guest's virtio
 * header claims).  Metadata packets get their headers pulled into the
 * linear part, so none slips past unparsed; other packets are never
 * pulled (a GSO skb of bulk traffic is not touched: its headers are
 * linear, and if not, one 4-byte load tells it is not ours). */
static __always_inline void tc_pull_headers(struct __sk_buff *skb)
{
	const __u32 need = sizeof(struct ethhdr) + sizeof(struct iphdr) + sizeof(struct tcphdr);
	const __u32 daddr_off = sizeof(struct ethhdr) + __builtin_offsetof(struct iphdr, daddr);
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct iphdr *ip;
	__be32 daddr;
	__u32 full;

	if (data + need > end) {
		if (skb->len < need || bpf_skb_load_bytes(skb, daddr_off, &daddr, sizeof(daddr)) ||
		    daddr != bpf_htonl(IMDS_IPV4_ADDR) || bpf_skb_pull_data(skb, need))
			return;
		data = (void *)(long)skb->data;
		end = (void *)(long)skb->data_end;
	}
	ip = data + sizeof(struct ethhdr);
	if ((void *)(ip + 1) > end || ip->daddr != bpf_htonl(IMDS_IPV4_ADDR) || ip->ihl <= 5)
		return;
	/* IP options push the TCP header further. */
	full = sizeof(struct ethhdr) + ip->ihl * 4 + sizeof(struct tcphdr);
	if (data + full > end && skb->len >= full)
		bpf_skb_pull_data(skb, full);
}

#endif

/* parse.h: just enough header parsing to tell metadata traffic from the
 * rest.  Other traffic must cost next to nothing, so each step bails out as
 * soon as the packet cannot be for 169.254.169.254:80. */
#ifndef IMDS_BPF_PARSE_H
#define IMDS_BPF_PARSE_H

#define ETH_P_IPV4 0x0800
#define IP_MF 0x2000
#define IP_OFFSET 0x1fff

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

static __always_inline enum imds_parse parse_metadata_packet(struct xdp_md *ctx, struct imds_pkt *pkt)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
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

#endif

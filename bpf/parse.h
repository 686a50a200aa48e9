/* parse.h: just enough header parsing to tell metadata traffic from the
 * rest.  Other traffic must cost next to nothing, so each step bails out as
 * soon as the frame cannot matter to 169.254.169.254 or to a VM's address:
 * the Ethernet type first, VLAN tags only when there are some, then the
 * ARP or IPv4 header behind them. */
#ifndef IMDS_BPF_PARSE_H
#define IMDS_BPF_PARSE_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "compat.h"
#include "imds.h"

/* VLAN tags walked in the frame.  The host's stack removes any number of
 * VID 0 (priority) tags one after another and then handles the frame as
 * untagged, so a frame whose tags go deeper than this cannot be let
 * through unseen: it is dropped (FRAME_TOO_DEEP). */
#define FRAME_TAGS_MAX 4
#define FRAME_VLAN_LEN ((__u32)sizeof(struct vlan_hdr))
#define FRAME_L2_MAX ((__u32)sizeof(struct ethhdr) + FRAME_TAGS_MAX * FRAME_VLAN_LEN)

struct imds_frame {
	struct ethhdr *eth;
	void *l3;      /* the header after the last tag */
	__u32 l3_off;  /* l3 - eth, in bytes */
	__u8 tagged;   /* a VLAN tag in the frame, or one the stack removed (TC) */
	__u8 pad[3];
};

enum imds_frame_kind {
	FRAME_OTHER = 0,    /* neither ARP nor IPv4: pass */
	FRAME_ARP = 1,
	FRAME_IPV4 = 2,
	FRAME_TOO_DEEP = 3, /* more tags than FRAME_TAGS_MAX */
	FRAME_IPV6 = 4,
};

/* Whether two Ethernet addresses are the same (bytes of a frame or a
 * record: no alignment assumed). */
static __always_inline bool mac_equal(const __u8 *a, const __u8 *b)
{
	return ((a[0] ^ b[0]) | (a[1] ^ b[1]) | (a[2] ^ b[2]) | (a[3] ^ b[3]) | (a[4] ^ b[4]) | (a[5] ^ b[5])) == 0;
}

static __always_inline bool frame_is_tag(__be16 proto)
{
	return proto == bpf_htons(ETH_P_8021Q) || proto == bpf_htons(ETH_P_8021AD);
}

/* data..end: the frame from its Ethernet header (XDP: the whole frame; TC:
 * the linear part, which tc_pull_headers made cover the headers).  tagged:
 * the stack already removed a tag (TC's skb->vlan_present). */
static __always_inline enum imds_frame_kind parse_frame(void *data, void *end, __u8 tagged, struct imds_frame *f)
{
	struct ethhdr *eth = data;
	struct vlan_hdr *tag;
	__u32 l3_off = sizeof(struct ethhdr);
	__be16 proto;
	void *l3;

	if ((void *)(eth + 1) > end)
		return FRAME_OTHER;
	proto = eth->h_proto;
	l3 = eth + 1;
	f->eth = eth;
#pragma unroll
	for (int i = 0; i < FRAME_TAGS_MAX; i++) {
		if (!frame_is_tag(proto))
			break;
		tag = l3;
		if ((void *)(tag + 1) > end)
			return FRAME_OTHER; /* a cut tag: no stack can read what it carries */
		proto = tag->h_vlan_encapsulated_proto;
		l3 = tag + 1;
		l3_off += FRAME_VLAN_LEN;
		tagged = 1;
	}
	f->l3 = l3;
	f->l3_off = l3_off;
	f->tagged = tagged;
	if (proto == bpf_htons(ETH_P_IPV4))
		return FRAME_IPV4;
	if (proto == bpf_htons(ETH_P_ARP))
		return FRAME_ARP;
	if (proto == bpf_htons(ETH_P_IPV6))
		return FRAME_IPV6;
	return frame_is_tag(proto) ? FRAME_TOO_DEEP : FRAME_OTHER;
}

/* A packet to the metadata service: ip for IPv4, ip6 for IPv6 (the other
 * is NULL). */
struct imds_pkt {
	struct ethhdr *eth;
	struct iphdr *ip;
	struct ipv6hdr *ip6;
	struct tcphdr *tcp;
};

/* IPv6 addresses as the 16 bytes they are in a packet or a map key. */
static __always_inline bool addr6_eq(const void *a, const void *b)
{
	__u64 a0, a1, b0, b1;

	__builtin_memcpy(&a0, a, 8);
	__builtin_memcpy(&a1, a + 8, 8);
	__builtin_memcpy(&b0, b, 8);
	__builtin_memcpy(&b1, b + 8, 8);
	return ((a0 ^ b0) | (a1 ^ b1)) == 0;
}

/* fd00:ec2::254 */
static __always_inline bool addr6_is_metadata(const void *a)
{
	static const __u8 service[16] = IMDS_IPV6_ADDR_BYTES;

	return addr6_eq(a, service);
}

static __always_inline bool addr6_is_unspecified(const void *a)
{
	__u64 a0, a1;

	__builtin_memcpy(&a0, a, 8);
	__builtin_memcpy(&a1, a + 8, 8);
	return (a0 | a1) == 0;
}

/* The VM-side endpoint of a connection as conn_table_v2 and hop_marks_v2
 * key it (struct imds_conn_key): IPv4 mapped to ::ffff:a.b.c.d. */
static __always_inline void conn_key_ipv4(struct imds_conn_key *key, __be32 addr, __be16 port)
{
	__builtin_memset(key, 0, sizeof(*key));
	key->saddr[10] = 0xff;
	key->saddr[11] = 0xff;
	__builtin_memcpy(&key->saddr[12], &addr, 4);
	key->sport = port;
}

static __always_inline void conn_key_ipv6(struct imds_conn_key *key, const void *addr, __be16 port)
{
	__builtin_memset(key, 0, sizeof(*key));
	__builtin_memcpy(key->saddr, addr, 16);
	key->sport = port;
}

/* The client's end of a packet to the service. */
static __always_inline void conn_key_of(struct imds_conn_key *key, const struct imds_pkt *pkt)
{
	if (pkt->ip6)
		conn_key_ipv6(key, &pkt->ip6->saddr, pkt->tcp->source);
	else
		conn_key_ipv4(key, pkt->ip->saddr, pkt->tcp->source);
}

enum imds_parse {
	PARSE_METADATA = 1,   /* TCP to 169.254.169.254:80 */
	PARSE_MALFORMED = 2,  /* a TCP fragment or a bogus header: unparseable */
	PARSE_OTHER_PORT = 3, /* to 169.254.169.254, but not TCP port 80 */
};

/* ip: a whole IPv4 header inside the frame, addressed to 169.254.169.254. */
static __always_inline enum imds_parse parse_metadata_packet(struct ethhdr *eth, struct iphdr *ip, void *end,
							     struct imds_pkt *pkt)
{
	struct tcphdr *tcp;

	if (ip->protocol != IPPROTO_TCP)
		return PARSE_OTHER_PORT;
	/* A fragment cannot be matched to a port, and a header shorter than
	 * 20 bytes is bogus: neither reaches the service. */
	if (ip->ihl < 5 || (ip->frag_off & bpf_htons(IP_MF | IP_OFFSET)))
		return PARSE_MALFORMED;
	tcp = (void *)ip + ip->ihl * 4;
	if ((void *)(tcp + 1) > end)
		return PARSE_MALFORMED;
	if (tcp->dest != bpf_htons(IMDS_TCP_PORT))
		return PARSE_OTHER_PORT;
	pkt->eth = eth;
	pkt->ip = ip;
	pkt->ip6 = NULL;
	pkt->tcp = tcp;
	return PARSE_METADATA;
}

/* Next-header values that are IPv6 extension headers (RFC 8200 4, the
 * IANA list): hop-by-hop, routing, fragment, ESP, AH, destination
 * options, mobility, HIP, shim6, and the two experimental ones. */
static __always_inline bool parse_ipv6_ext(__u8 next)
{
	return next == 0 || next == 43 || next == 44 || next == 50 || next == 51 || next == 60 || next == 135 ||
	       next == 139 || next == 140 || next == 253 || next == 254;
}

/* ip6: a whole IPv6 header inside the frame, addressed to fd00:ec2::254.
 * The service is reached with TCP right behind the fixed header, as every
 * stack sends it; a fragment or any extension header toward it cannot be
 * matched to a port as surely, so it is PARSE_MALFORMED (dropped). */
static __always_inline enum imds_parse parse_metadata_packet6(struct ethhdr *eth, struct ipv6hdr *ip6, void *end,
							      struct imds_pkt *pkt)
{
	struct tcphdr *tcp;

	if (ip6->nexthdr != IPPROTO_TCP)
		return parse_ipv6_ext(ip6->nexthdr) ? PARSE_MALFORMED : PARSE_OTHER_PORT;
	tcp = (void *)(ip6 + 1);
	if ((void *)(tcp + 1) > end)
		return PARSE_MALFORMED;
	if (tcp->dest != bpf_htons(IMDS_TCP_PORT))
		return PARSE_OTHER_PORT;
	pkt->eth = eth;
	pkt->ip = NULL;
	pkt->ip6 = ip6;
	pkt->tcp = tcp;
	return PARSE_METADATA;
}

/* Neighbour Discovery the guard reads: ICMPv6 header, target address and
 * up to ND_OPTS_MAX options of 8 bytes (a link-layer address option). */
#define ND_OPTS_MAX 4
#define ND_MSG_LEN (8 + 16)
#define ND_READ_MAX (ND_MSG_LEN + ND_OPTS_MAX * 8)

/* The headers an IPv6 packet is checked on: TCP behind the header of one
 * to the service, and the ND message of ICMPv6 (guard6.h).  Other IPv6 is
 * checked on its fixed header only, which the first pull covered. */
static __always_inline void tc_pull_ipv6(struct __sk_buff *skb, const struct imds_frame *f, void *data, void *end)
{
	struct ipv6hdr *ip6 = f->l3;
	__u32 full;

	if ((void *)(ip6 + 1) > end)
		return;
	if (ip6->nexthdr == IPPROTO_ICMPV6)
		full = f->l3_off + sizeof(*ip6) + ND_READ_MAX;
	else if (addr6_is_metadata(&ip6->daddr))
		full = f->l3_off + sizeof(*ip6) + sizeof(struct tcphdr);
	else
		return;
	if (data + full > end && skb->len > (__u32)(end - data))
		bpf_skb_pull_data(skb, skb->len < full ? skb->len : full);
}

/* TC ingress sees an skb whose linear part may end before the headers (a
 * tap device builds skbs with as much linear data as the guest's virtio
 * header claims).  The headers every frame is checked on (Ethernet, up to
 * FRAME_TAGS_MAX tags, ARP or IPv4) are pulled when they are not linear,
 * which bulk traffic's are (a GSO skb carries its headers in the linear
 * part); a packet to the metadata service also gets its TCP header pulled,
 * past any IP options, so none slips past unparsed. */
static __always_inline void tc_pull_headers(struct __sk_buff *skb)
{
	const __u32 base = FRAME_L2_MAX + sizeof(struct iphdr) + sizeof(struct tcphdr);
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct imds_frame f;
	struct iphdr *ip;
	__u32 full;

	if (data + base > end && skb->len > (__u32)(end - data)) {
		if (bpf_skb_pull_data(skb, skb->len < base ? skb->len : base))
			return;
		data = (void *)(long)skb->data;
		end = (void *)(long)skb->data_end;
	}
	switch (parse_frame(data, end, 0, &f)) {
	case FRAME_IPV4:
		break;
	case FRAME_IPV6:
		tc_pull_ipv6(skb, &f, data, end);
		return;
	default:
		return;
	}
	ip = f.l3;
	if ((void *)(ip + 1) > end || ip->daddr != bpf_htonl(IMDS_IPV4_ADDR) || ip->ihl <= 5)
		return;
	/* IP options push the TCP header further. */
	full = f.l3_off + ip->ihl * 4 + sizeof(struct tcphdr);
	if (data + full > end && skb->len >= full)
		bpf_skb_pull_data(skb, full);
}

#endif

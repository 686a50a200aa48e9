/* bpf_frames.h: crafted Ethernet/IPv4/TCP frames for the packet tests of
 * the data plane (test_bpf_packets.c).  A frame is described by a spec that
 * starts as a well-formed SYN from VM 1 to 169.254.169.254:80 (or, for
 * egress, a reply carrying data) and each test changes what it is about:
 * flags, IHL, fragment bits, VLAN tags, a truncated length.  ARP frames
 * (bpf_frame_build_arp) take their Ethernet header and tags from the same
 * spec.  Fields are in host order; the builder writes network order and a
 * correct IPv4 header checksum, so a test that wants a wrong one corrupts
 * the bytes after. */
#ifndef TEST_BPF_FRAMES_H
#define TEST_BPF_FRAMES_H

#include <arpa/inet.h>
#include <stdint.h>
#include <string.h>

#define BPF_FRAME_MAX 512
#define BPF_FRAME_ETH 14
#define BPF_FRAME_VLAN 4
#define BPF_FRAME_TAGS 6

enum bpf_frame_tcp_flag {
	BPF_TCP_FIN = 0x01,
	BPF_TCP_SYN = 0x02,
	BPF_TCP_RST = 0x04,
	BPF_TCP_PSH = 0x08,
	BPF_TCP_ACK = 0x10,
};

struct bpf_frame_spec {
	uint8_t src_mac[6];
	uint8_t dst_mac[6];
	int vlan;	    /* VLAN tags after the MAC addresses (0..BPF_FRAME_TAGS) */
	uint16_t vlan_tci; /* PCP, DEI and VID of each tag */
	uint16_t vlan_outer; /* the first tag's type: 0 = 0x8100 (802.1Q), or 0x88a8 */
	uint32_t saddr, daddr;
	uint8_t ihl;	   /* 32-bit words; > 5 adds NOP options */
	uint8_t ttl;
	uint8_t protocol;
	uint16_t frag_off; /* flags (0x4000 DF, 0x2000 MF) | offset in 8 bytes */
	int tot_len_zero;  /* 1: tot_len 0, as in an IPv4 BIG TCP packet */
	uint16_t sport, dport;
	uint8_t tcp_flags; /* enum bpf_frame_tcp_flag */
	uint16_t payload;  /* bytes of TCP data, at most 400 */
};

struct bpf_frame {
	uint8_t b[BPF_FRAME_MAX];
	uint32_t len;
	uint32_t ip_off; /* where the IPv4 header starts */
};

/* The internet checksum of len bytes (RFC 1071), in network order. */
static inline uint16_t bpf_frame_csum(const uint8_t *p, size_t len)
{
	uint32_t sum = 0;

	for (size_t i = 0; i + 1 < len; i += 2)
		sum += (uint32_t)p[i] << 8 | p[i + 1];
	if (len & 1)
		sum += (uint32_t)p[len - 1] << 8;
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return htons((uint16_t)~sum);
}

static inline void bpf_frame_put16(uint8_t *p, uint16_t host)
{
	uint16_t be = htons(host);

	memcpy(p, &be, sizeof(be));
}

static inline void bpf_frame_put32(uint8_t *p, uint32_t host)
{
	uint32_t be = htonl(host);

	memcpy(p, &be, sizeof(be));
}

/* Ethernet header and tags; returns where the next header goes. */
static inline uint32_t bpf_frame_eth(const struct bpf_frame_spec *s, uint8_t *b, uint16_t type)
{
	uint32_t off = 12;

	memcpy(b, s->dst_mac, 6);
	memcpy(b + 6, s->src_mac, 6);
	for (int i = 0; i < s->vlan && i < BPF_FRAME_TAGS; i++) {
		bpf_frame_put16(b + off, i == 0 && s->vlan_outer ? s->vlan_outer : 0x8100);
		bpf_frame_put16(b + off + 2, s->vlan_tci);
		off += BPF_FRAME_VLAN;
	}
	bpf_frame_put16(b + off, type);
	return off + 2;
}

static inline void bpf_frame_ipv4(const struct bpf_frame_spec *s, uint8_t *ip, uint32_t tot_len)
{
	uint8_t ihl = s->ihl ? s->ihl : 5;

	ip[0] = 0x40 | (ihl & 0x0f);
	bpf_frame_put16(ip + 2, s->tot_len_zero ? 0 : (uint16_t)tot_len);
	bpf_frame_put16(ip + 4, 0x1234);
	bpf_frame_put16(ip + 6, s->frag_off);
	ip[8] = s->ttl;
	ip[9] = s->protocol;
	bpf_frame_put32(ip + 12, s->saddr);
	bpf_frame_put32(ip + 16, s->daddr);
	if (ihl > 5)
		memset(ip + 20, 1, (ihl - 5) * 4u); /* NOP options */
	/* An IHL below 5 still gets 20 bytes: the header is bogus, not short. */
	memcpy(ip + 10, &(uint16_t){bpf_frame_csum(ip, ihl < 5 ? 20 : ihl * 4u)}, 2);
}

static inline void bpf_frame_tcp(const struct bpf_frame_spec *s, uint8_t *tcp)
{
	bpf_frame_put16(tcp, s->sport);
	bpf_frame_put16(tcp + 2, s->dport);
	bpf_frame_put32(tcp + 4, 1000);
	bpf_frame_put32(tcp + 8, s->tcp_flags & BPF_TCP_ACK ? 2000 : 0);
	tcp[12] = 5 << 4;
	tcp[13] = s->tcp_flags;
	bpf_frame_put16(tcp + 14, 64240);
	memset(tcp + 20, 'x', s->payload); /* TCP checksum left 0: nobody reads it */
}

static inline void bpf_frame_build(const struct bpf_frame_spec *s, struct bpf_frame *f)
{
	uint32_t ip_hlen = (s->ihl > 5 ? s->ihl : 5) * 4u;
	uint32_t tot_len = ip_hlen + 20 + s->payload;

	memset(f, 0, sizeof(*f));
	f->ip_off = bpf_frame_eth(s, f->b, 0x0800);
	bpf_frame_ipv4(s, f->b + f->ip_off, tot_len);
	bpf_frame_tcp(s, f->b + f->ip_off + ip_hlen);
	f->len = f->ip_off + tot_len;
}

/* An Ethernet/IPv4 ARP packet (RFC 826). */
struct bpf_arp_spec {
	uint16_t op; /* 1 request, 2 reply */
	uint8_t sha[6];
	uint32_t spa;
	uint8_t tha[6];
	uint32_t tpa;
};

static inline void bpf_frame_build_arp(const struct bpf_frame_spec *eth, const struct bpf_arp_spec *a,
				       struct bpf_frame *f)
{
	uint8_t *p;

	memset(f, 0, sizeof(*f));
	f->ip_off = bpf_frame_eth(eth, f->b, 0x0806);
	p = f->b + f->ip_off;
	bpf_frame_put16(p, 1); /* Ethernet */
	bpf_frame_put16(p + 2, 0x0800);
	p[4] = 6;
	p[5] = 4;
	bpf_frame_put16(p + 6, a->op);
	memcpy(p + 8, a->sha, 6);
	bpf_frame_put32(p + 14, a->spa);
	memcpy(p + 18, a->tha, 6);
	bpf_frame_put32(p + 24, a->tpa);
	f->len = f->ip_off + 28;
	if (f->len < 60)
		f->len = 60; /* padded to Ethernet's minimum, as on the wire */
}

/* An Ethernet/IPv6 frame (its Ethernet header and tags from `eth`):
 * TCP by default, ICMPv6 Neighbour Discovery or Router Advertisement when
 * icmp_type is set, or any next header with nothing behind it but zeros. */
struct bpf_frame6_spec {
	uint8_t saddr[16], daddr[16];
	uint8_t nexthdr;   /* 6 TCP (default when 0 and no icmp_type), 58 ICMPv6, ... */
	uint8_t hop_limit; /* 0: 64 */
	uint8_t icmp_type; /* 134 RA, 135 NS, 136 NA, 137 Redirect, 128 echo */
	uint8_t target[16];   /* NS, NA, Redirect */
	uint8_t opt_type;     /* 0 none, 1 source or 2 target link-layer address */
	uint8_t opt_mac[6];
	uint8_t tail;	      /* bytes after the fixed header for other next headers (0: 24) */
	int raw_next;	      /* 1: nexthdr as given, even 0 (hop-by-hop options) */
};

static inline void bpf_frame_build6(const struct bpf_frame_spec *eth, const struct bpf_frame6_spec *s,
				    struct bpf_frame *f)
{
	uint8_t next = s->raw_next || s->nexthdr ? s->nexthdr : s->icmp_type ? 58 : 6;
	uint32_t plen;
	uint8_t *ip, *p;

	memset(f, 0, sizeof(*f));
	f->ip_off = bpf_frame_eth(eth, f->b, 0x86dd);
	ip = f->b + f->ip_off;
	p = ip + 40;
	if (next == 6) {
		bpf_frame_tcp(eth, p);
		plen = 20 + eth->payload;
	} else if (next == 58) {
		p[0] = s->icmp_type;
		memcpy(p + 8, s->target, 16);
		plen = s->icmp_type == 134 ? 16 : 24;
		if (s->opt_type) {
			p[plen] = s->opt_type;
			p[plen + 1] = 1;
			memcpy(p + plen + 2, s->opt_mac, 6);
			plen += 8;
		}
	} else {
		plen = s->tail ? s->tail : 24;
		p[0] = 6; /* an extension header's own next header: TCP */
	}
	ip[0] = 0x60;
	bpf_frame_put16(ip + 4, (uint16_t)plen);
	ip[6] = next;
	ip[7] = s->hop_limit ? s->hop_limit : 64;
	memcpy(ip + 8, s->saddr, 16);
	memcpy(ip + 24, s->daddr, 16);
	f->len = f->ip_off + 40 + plen;
	if (f->len < 60)
		f->len = 60;
}

#endif

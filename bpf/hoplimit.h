/* hoplimit.h: the IMDSv2 hop limit (EC2 HttpPutResponseHopLimit) at TC
 * egress of a VM's port.  imdsd marks the VM-side endpoint of a connection
 * in hop_marks just before it queues a token reply; every later segment
 * from 169.254.169.254:80 to that endpoint that carries data leaves with IP
 * TTL lowered to the VM's hop limit, so a router (NAT, container bridge)
 * inside the guest that is more hops away drops it.  Segments without data
 * (SYN-ACK, pure ACK and FIN, RST) keep their TTL: they carry nothing of
 * the reply, and the RST imdsd sends when the reply is never acknowledged
 * must reach the client.  Everything else passes after a few loads. */
#ifndef IMDS_BPF_HOPLIMIT_H
#define IMDS_BPF_HOPLIMIT_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "compat.h"
#include "imds.h"
#include "maps.h"
#include "parse.h"

#define HOP_ETH_LEN ((__u32)sizeof(struct ethhdr))
#define HOP_IP_CSUM_OFF (HOP_ETH_LEN + __builtin_offsetof(struct iphdr, check))
#define HOP_IP_TTL_OFF (HOP_ETH_LEN + __builtin_offsetof(struct iphdr, ttl))

/* A reply of ours: IPv4/TCP from 169.254.169.254:80.  0 when it is not
 * (the common case, decided on skb metadata and one or two loads). */
static __always_inline int hop_parse_reply(struct __sk_buff *skb, struct iphdr **ip_out, struct tcphdr **tcp_out)
{
	const __u32 need = HOP_ETH_LEN + sizeof(struct iphdr) + sizeof(struct tcphdr);
	void *data, *end;
	struct iphdr *ip;
	struct tcphdr *tcp;

	if (skb->protocol != bpf_htons(ETH_P_IPV4))
		return 0;
	data = (void *)(long)skb->data;
	end = (void *)(long)skb->data_end;
	/* The host stack builds headers in the linear part; pull only in the
	 * odd case it did not, so a token reply cannot slip past unparsed. */
	if (data + need > end) {
		if (skb->len < need || bpf_skb_pull_data(skb, need))
			return 0;
		data = (void *)(long)skb->data;
		end = (void *)(long)skb->data_end;
	}
	ip = data + HOP_ETH_LEN;
	if ((void *)(ip + 1) > end || ip->saddr != bpf_htonl(IMDS_IPV4_ADDR) || ip->protocol != IPPROTO_TCP)
		return 0;
	if (ip->ihl < 5 || (ip->frag_off & bpf_htons(IP_OFFSET)))
		return 0;
	tcp = (void *)ip + ip->ihl * 4;
	if ((void *)(tcp + 1) > end || tcp->source != bpf_htons(IMDS_TCP_PORT))
		return 0;
	*ip_out = ip;
	*tcp_out = tcp;
	return 1;
}

/* Whether a segment may carry bytes of a reply.  tot_len is 0 only in an
 * IPv4 GSO packet over 64 KiB (BIG TCP), which certainly does. */
static __always_inline int hop_carries_data(const struct iphdr *ip, const struct tcphdr *tcp)
{
	__u32 tot_len = bpf_ntohs(ip->tot_len);

	return tot_len == 0 || tot_len > (__u32)ip->ihl * 4 + (__u32)tcp->doff * 4;
}

/* Whether hop_marks may hold a live mark: not past hop_gate's time, which
 * imdsd keeps at or after the expiry of every mark it placed and has not
 * deleted (and of those an earlier imdsd left).  A mark is ignored past
 * its expiry anyway, so the answer is the lookup's, without the lookup of
 * a 20-byte key in a hash map on every reply when no token reply is in
 * flight, the usual case. */
static __always_inline bool hop_marks_may_be_live(void)
{
	__u32 zero = 0;
	__u64 *until = bpf_map_lookup_elem(&IMDS_MAP_HOP_GATE_ID, &zero);

	/* The coarse clock (the last tick's CLOCK_MONOTONIC) is never ahead
	 * of the fine one, so it can only keep the gate open longer; it
	 * spares a clock read on every reply. */
	return !until || bpf_ktime_get_coarse_ns() <= *(volatile __u64 *)until;
}

/* The mark of this reply's connection (the VM-side endpoint `key`), or
 * NULL.  Never limited, whatever the map says: the SYN-ACK (the handshake
 * is not a token reply, and EC2 completes it, capture C3), a RST (imdsd
 * resets a connection whose token reply was never acknowledged, and the
 * client must hear it, as on EC2), and other segments without data (a FIN
 * or ACK tells the client nothing of the token; EC2 limits "the response",
 * docs/design.md). */
static __always_inline struct imds_hop_mark *hop_find_mark_of(const struct imds_conn_key *key,
							     const struct tcphdr *tcp, bool carries_data)
{
	struct imds_hop_mark *mark;

	if (tcp->syn || tcp->rst || !carries_data || !hop_marks_may_be_live())
		return NULL;
	mark = bpf_map_lookup_elem(&IMDS_MAP_HOP_MARKS_ID, key);
	if (!mark)
		return NULL;
	if (bpf_ktime_get_ns() > mark->expires_ns) {
		bpf_map_delete_elem(&IMDS_MAP_HOP_MARKS_ID, key);
		return NULL;
	}
	return mark;
}

static __always_inline struct imds_hop_mark *hop_find_mark(const struct iphdr *ip, const struct tcphdr *tcp)
{
	struct imds_conn_key key;

	conn_key_ipv4(&key, ip->daddr, tcp->dest);
	return hop_find_mark_of(&key, tcp, hop_carries_data(ip, tcp));
}

/* IPv6: payload_len is 0 only in a jumbo GSO packet (BIG TCP), which
 * certainly carries data. */
static __always_inline struct imds_hop_mark *hop_find_mark6(const struct ipv6hdr *ip6, const struct tcphdr *tcp)
{
	__u32 payload = bpf_ntohs(ip6->payload_len);
	struct imds_conn_key key;

	conn_key_ipv6(&key, &ip6->daddr, tcp->dest);
	return hop_find_mark_of(&key, tcp, payload == 0 || payload > (__u32)tcp->doff * 4);
}

/* A reply of ours over IPv6: TCP from [fd00:ec2::254]:80 right behind the
 * fixed header (how the host's stack sends it).  0 when it is not. */
static __always_inline int hop_parse_reply6(struct __sk_buff *skb, struct ipv6hdr **ip6_out,
					    struct tcphdr **tcp_out)
{
	const __u32 need = HOP_ETH_LEN + sizeof(struct ipv6hdr) + sizeof(struct tcphdr);
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct ipv6hdr *ip6;
	struct tcphdr *tcp;

	if (data + need > end) {
		if (skb->len < need || bpf_skb_pull_data(skb, need))
			return 0;
		data = (void *)(long)skb->data;
		end = (void *)(long)skb->data_end;
	}
	ip6 = data + HOP_ETH_LEN;
	if ((void *)(ip6 + 1) > end || ip6->nexthdr != IPPROTO_TCP || !addr6_is_metadata(&ip6->saddr))
		return 0;
	tcp = (void *)(ip6 + 1);
	if ((void *)(tcp + 1) > end || tcp->source != bpf_htons(IMDS_TCP_PORT))
		return 0;
	*ip6_out = ip6;
	*tcp_out = tcp;
	return 1;
}

/* IPv6 has no header checksum: the Hop Limit byte is simply rewritten. */
static __always_inline int hop_rewrite_hop_limit(struct __sk_buff *skb, __u8 hop_limit)
{
	return bpf_skb_store_bytes(skb, HOP_ETH_LEN + __builtin_offsetof(struct ipv6hdr, hop_limit), &hop_limit,
				   sizeof(hop_limit), 0);
}

/* Lowers the TTL to the hop limit and patches the header checksum
 * incrementally (RFC 1624) over the 16-bit word TTL shares with the
 * protocol.  0 or a negative helper error. */
static __always_inline int hop_rewrite_ttl(struct __sk_buff *skb, struct iphdr *ip, __u8 hop_limit)
{
	__u16 old_word, new_word;
	int rc;

	__builtin_memcpy(&old_word, &ip->ttl, sizeof(old_word));
	new_word = old_word;
	*(__u8 *)&new_word = hop_limit; /* TTL is the first byte of the word */
	rc = bpf_l3_csum_replace(skb, HOP_IP_CSUM_OFF, old_word, new_word, sizeof(new_word));
	if (rc < 0)
		return rc;
	/* Packet pointers are invalid after the helpers: do not touch ip. */
	return bpf_skb_store_bytes(skb, HOP_IP_TTL_OFF, &hop_limit, sizeof(hop_limit), 0);
}

/* A verified SYN starts a new connection on this endpoint: whatever mark an
 * earlier connection left behind does not apply to it.  With the gate
 * closed any mark left is expired, which the egress program ignores, so
 * the hash delete (a bucket lock) is spared on nearly every SYN. */
static __always_inline void hop_forget(const struct imds_pkt *pkt)
{
	struct imds_conn_key key;

	if (!hop_marks_may_be_live())
		return;
	conn_key_of(&key, pkt);
	bpf_map_delete_elem(&IMDS_MAP_HOP_MARKS_ID, &key);
}

#endif

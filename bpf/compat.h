/* compat.h: the kernel constants the data plane needs that vmlinux.h cannot
 * carry.  vmlinux.h holds the kernel's types from BTF, and BTF has no
 * preprocessor macros; the UAPI headers that define these (linux/pkt_cls.h,
 * linux/if_ether.h, net/ip.h) must not be mixed with vmlinux.h in one
 * translation unit, so the few values used are spelled here, once. */
#ifndef IMDS_BPF_COMPAT_H
#define IMDS_BPF_COMPAT_H

#include "vmlinux.h"

/* linux/pkt_cls.h: TC program verdicts.  TC_ACT_UNSPEC is also TCX_NEXT
 * (linux/bpf.h of Linux 6.6+), and TC_ACT_SHOT is TCX_DROP. */
#ifndef TC_ACT_UNSPEC
#define TC_ACT_UNSPEC (-1)
#endif
#ifndef TC_ACT_SHOT
#define TC_ACT_SHOT 2
#endif
/* What the TC programs return for a packet they let through: "no verdict",
 * so the programs and filters after ours on the hook still run (a TCX
 * program's TC_ACT_OK, TCX_PASS, would end the chain and skip every
 * clsact filter; docs/ports.md, "Other programs on the TC hooks").  Under
 * cls_bpf the same value passes to the next filter, and the packet passes
 * when none is left. */
#define IMDS_TC_PASS TC_ACT_UNSPEC

/* linux/if_ether.h: ETH_P_IP, ETH_P_ARP and the two VLAN tag types. */
#define ETH_P_IPV4 0x0800
#ifndef ETH_P_ARP
#define ETH_P_ARP 0x0806
#endif
#ifndef ETH_P_8021Q
#define ETH_P_8021Q 0x8100 /* 802.1Q tag */
#endif
#ifndef ETH_P_8021AD
#define ETH_P_8021AD 0x88a8 /* 802.1ad (QinQ) service tag */
#endif

/* linux/if_ether.h: IPv6. */
#ifndef ETH_P_IPV6
#define ETH_P_IPV6 0x86DD
#endif

/* linux/in6.h: a macro there, unlike IPPROTO_TCP's enum. */
#ifndef IPPROTO_ICMPV6
#define IPPROTO_ICMPV6 58
#endif

/* linux/icmpv6.h and net/ndisc.h: the ICMPv6 types the guard reads. */
#define ICMP6_ROUTER_ADVERT 134
#define ICMP6_NEIGH_SOLICIT 135
#define ICMP6_NEIGH_ADVERT 136
#define ICMP6_REDIRECT 137
#define ND_OPT_SOURCE_LL_ADDR 1
#define ND_OPT_TARGET_LL_ADDR 2

/* net/ip.h: the fragment bits of iphdr.frag_off (host order). */
#define IP_MF 0x2000
#define IP_OFFSET 0x1fff

#endif

/* imds.h: the contract between the data plane (bpf/), imdsd and imds-loadmap.
 *
 * Every struct that crosses the kernel/user boundary is defined here once,
 * with explicit widths, explicit padding and a size assert.  A pinned map
 * whose key or value layout changes must get a new name (append _v2):
 * libbpf silently reuses a pin whose type and sizes happen to match.
 */
#ifndef IMDS_H
#define IMDS_H

#ifdef __bpf__
#include "vmlinux.h" /* the kernel's types, from BTF; never mixed with UAPI headers */
#else
#include <linux/bpf.h> /* struct bpf_spin_lock, in struct imds_budget */
#include <linux/types.h>
#endif

/* 169.254.169.254 in host byte order: use htonl()/bpf_htonl() before
 * comparing it with an address from a packet or a sockaddr. */
#define IMDS_IPV4_ADDR 0xA9FEA9FEu
#define IMDS_TCP_PORT 80
/* fd00:ec2::254, EC2's IPv6 endpoint, as the 16 bytes of the address. */
#define IMDS_IPV6_ADDR_BYTES {0xfd, 0x00, 0x0e, 0xc2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x02, 0x54}
#define IMDS_IPV6_ADDR_TEXT "fd00:ec2::254"
#define IMDS_DEFAULT_PIN_DIR "/sys/fs/bpf/imds"

/* The defaults of a new store (imds-loadmap --max-vms, --arena-size choose
 * others; every per-slot map and the arena take the store's own size,
 * docs/control-plane.md "Sizing"). */
#define IMDS_MAX_VMS 4096	/* vm_table slots; slot 0 is never a VM */
#define IMDS_CONN_MAX 65536	/* verified connections awaiting accept */
#define IMDS_INSTANCE_ID_MAX 64 /* including the NUL */
#define IMDS_PORT_NAME_MAX 16   /* a network interface name with its NUL (IFNAMSIZ) */
#define IMDS_ARENA_PAGE 4096
#define IMDS_ARENA_PAGES 16384	/* 64 MiB of compiled metadata trees */
#define IMDS_TOKEN_KEY_LEN 32
#define IMDS_VM_IPV6_MAX 8	/* IPv6 addresses of one VM (the record's "ipv6") */
#define IMDS_PORT_HINTS 8192	/* port_hints entries: a power of two, not IMDS_MAX_VMS (not per slot) */

/* Each map is spelled once, here.  The _ID macro is the map's identifier in
 * bpf/maps.h, hence its BPF name, its pin name under the pin directory and
 * its field in the skeleton (skel->maps.vm_table); the plain macro is the
 * same name as a string, for paths and messages in user space. */
#define IMDS_MAP_VM_TABLE_ID vm_table
#define IMDS_MAP_MAC_INDEX_ID mac_index
#define IMDS_MAP_CONN_TABLE_ID conn_table_v2 /* v2: 16-byte address key (IPv4 and IPv6) */
#define IMDS_MAP_VM_COUNTERS_ID vm_counters_v4 /* v2: IMDS_REASON_MAX 8 -> 14; v3: 15; v4: 18 */
#define IMDS_MAP_ARENA_ID arena
#define IMDS_MAP_TOKEN_KEY_ID token_key
#define IMDS_MAP_HOP_MARKS_ID hop_marks_v2 /* v2: 16-byte address key, as conn_table_v2 */
#define IMDS_MAP_VM_BUDGET_ID vm_budget
#define IMDS_MAP_VM_PORTS_ID vm_ports
#define IMDS_MAP_IPV4_INDEX_ID ipv4_index
#define IMDS_MAP_CONN_GATE_ID conn_gate
#define IMDS_MAP_IPV6_INDEX_ID ipv6_index
#define IMDS_MAP_VM_IPV6_ID vm_ipv6
#define IMDS_MAP_PORT_INDEX_ID port_index
#define IMDS_MAP_CONN_SLOTS_ID conn_slots
#define IMDS_MAP_PORT_HINTS_ID port_hints
#define IMDS_MAP_HOP_GATE_ID hop_gate

#define IMDS_STR_(x) #x
#define IMDS_STR(x) IMDS_STR_(x) /* expands x first */
#define IMDS_MAP_VM_TABLE IMDS_STR(IMDS_MAP_VM_TABLE_ID)
#define IMDS_MAP_MAC_INDEX IMDS_STR(IMDS_MAP_MAC_INDEX_ID)
#define IMDS_MAP_CONN_TABLE IMDS_STR(IMDS_MAP_CONN_TABLE_ID)
#define IMDS_MAP_VM_COUNTERS IMDS_STR(IMDS_MAP_VM_COUNTERS_ID)
#define IMDS_MAP_ARENA IMDS_STR(IMDS_MAP_ARENA_ID)
#define IMDS_MAP_TOKEN_KEY IMDS_STR(IMDS_MAP_TOKEN_KEY_ID)
#define IMDS_MAP_HOP_MARKS IMDS_STR(IMDS_MAP_HOP_MARKS_ID)
#define IMDS_MAP_VM_BUDGET IMDS_STR(IMDS_MAP_VM_BUDGET_ID)
#define IMDS_MAP_VM_PORTS IMDS_STR(IMDS_MAP_VM_PORTS_ID)
#define IMDS_MAP_IPV4_INDEX IMDS_STR(IMDS_MAP_IPV4_INDEX_ID)
#define IMDS_MAP_CONN_GATE IMDS_STR(IMDS_MAP_CONN_GATE_ID)
#define IMDS_MAP_IPV6_INDEX IMDS_STR(IMDS_MAP_IPV6_INDEX_ID)
#define IMDS_MAP_VM_IPV6 IMDS_STR(IMDS_MAP_VM_IPV6_ID)
#define IMDS_MAP_PORT_INDEX IMDS_STR(IMDS_MAP_PORT_INDEX_ID)
#define IMDS_MAP_CONN_SLOTS IMDS_STR(IMDS_MAP_CONN_SLOTS_ID)
#define IMDS_MAP_PORT_HINTS IMDS_STR(IMDS_MAP_PORT_HINTS_ID)
#define IMDS_MAP_HOP_GATE IMDS_STR(IMDS_MAP_HOP_GATE_ID)

/* hop_marks: token replies in flight, one per VM-side TCP endpoint. */
#define IMDS_HOP_MARKS_MAX 65536
/* A mark outlives the server's close(): the kernel still retransmits an
 * unacknowledged token reply from the orphaned socket (tcp_orphan_retries,
 * about two minutes).  A new verified SYN from the endpoint removes it
 * earlier, so a later connection never inherits it. */
#define IMDS_HOP_MARK_TTL_NS (300ull * 1000000000ull)

/* Per-VM packet budget (token bucket in the data plane's ingress program,
 * TC or XDP) when the VM record says 0.
 * The rate is EC2's allowance for link-local services (1024 packets/s per
 * interface).  The burst is about twice a cloud-init crawl on fresh
 * connections (~41 requests x ~6 packets: SYN, ACK, request, ACK, FIN,
 * ACK), so a booting VM never waits on the budget, while a flood is held to
 * the rate after half a second. */
#define IMDS_DEFAULT_RATE_PPS 1024
#define IMDS_DEFAULT_RATE_BURST 512
#define IMDS_RATE_MAX 1000000 /* upper bound of rate-pps and rate-burst */
/* imdsd's own limits per VM (HTTP level, user space only) */
#define IMDS_DEFAULT_REQUEST_RATE 1024	/* requests/s before 429 */
#define IMDS_DEFAULT_REQUEST_BURST 1024 /* request bucket size */
#define IMDS_DEFAULT_MAX_CONNS 64	/* concurrent connections */
#define IMDS_MAX_CONNS_LIMIT 65535

/* vm_table[slot].state */
enum imds_vm_state {
	IMDS_VM_FREE = 0,
	IMDS_VM_ACTIVE = 1,
};

/* http-tokens option */
enum imds_http_tokens {
	IMDS_TOKENS_OPTIONAL = 0,
	IMDS_TOKENS_REQUIRED = 1,
};

/* Why the data plane passed or dropped a packet to the metadata service.
 * Counted per VM slot in vm_counters; slot 0 holds the totals. */
enum imds_reason {
	IMDS_PASS_VERIFIED = 0,	  /* from a bound VM: MAC, port and IPv4 agree */
	IMDS_PASS_SYN_RECORDED = 1, /* verified SYN written to conn_table */
	IMDS_DROP_UNKNOWN_MAC = 2,  /* no VM has this source MAC */
	IMDS_DROP_WRONG_PORT = 3,   /* VM's MAC seen on another port than its own */
	IMDS_DROP_WRONG_IPV4 = 4,   /* source IPv4 is not the VM's bound address */
	IMDS_DROP_MALFORMED = 5,    /* truncated, a fragment, or IPv6 behind extension headers */
	IMDS_DROP_BUDGET = 6,	  /* verified, but over the VM's packet budget */
	IMDS_PASS_HOP_LIMITED = 7,  /* TC egress: token reply sent with TTL = hop limit */
	IMDS_DROP_UNBOUND = 8,	  /* the VM has no port yet: pinned to one that is absent, or not pinned */
	/* What a VM port may send (docs/design.md): counted in the slot of the
	 * VM whose address was claimed, else of the sender when its MAC is a
	 * VM's bound to this port, else in the totals only. */
	IMDS_DROP_ARP_SPOOF = 9,	  /* ARP claiming 169.254.169.254, or a VM's IPv4 not from its port and MAC */
	IMDS_DROP_FORGED_SOURCE = 10, /* IPv4 from 169.254.169.254, or from a VM's IPv4 not from its port and MAC */
	IMDS_DROP_TAGGED = 11,	  /* VLAN-tagged frame toward 169.254.169.254, or tags too deep to see under */
	IMDS_DROP_NOT_METADATA_PORT = 12, /* to 169.254.169.254, but not TCP port 80 */
	IMDS_DROP_MISDIRECTED_REPLY = 13, /* TC egress: a reply to a VM on another port or to another MAC */
	IMDS_DROP_CONN_LIMIT = 14,	  /* verified SYN while imdsd refuses the VM's connections (conn_gate) */
	IMDS_DROP_WRONG_IPV6 = 15,	  /* to fd00:ec2::254: source IPv6 is not one of the VM's */
	IMDS_DROP_ND_SPOOF = 16,	  /* Neighbour Discovery claiming fd00:ec2::254, or a VM's IPv6 not from its port and MAC */
	IMDS_DROP_ROUTER_MESSAGE = 17,	  /* Router Advertisement or Redirect from a VM that is not an ipv6-router */
	IMDS_REASON_MAX = 18,
};

/* mac_index key -> __u32 slot.  ipv4_index: __be32 address -> __u32 slot,
 * kept beside it by the store (a loaded VM's IPv4 is unique). */
struct imds_mac_key {
	__u8 addr[6];
	__u8 pad[2];
};
_Static_assert(sizeof(struct imds_mac_key) == 8, "imds_mac_key layout");

/* How a VM gets its port (vm_table[slot].binding; docs/design.md, "Port
 * binding").  Identity must not depend on who speaks first, so a VM is
 * served only on a port named for it, unless first-use binding is opted in. */
enum imds_binding {
	IMDS_BIND_NONE = 0,	 /* no port named: not served (drop_unbound) */
	IMDS_BIND_PINNED = 1,	 /* served only on the port vm_ports names */
	IMDS_BIND_FIRST_USE = 2, /* unsafe opt-in: the first verified packet's port */
};

/* vm_table value, indexed by slot.  The map is mmap-able: imdsd reads
 * tree_ref in place.  imds-loadmap writes it, and ifindex also changes when
 * a pinned VM's port joins or leaves the bridge (imdsd, under the store's
 * lock) and, for first-use VMs only, in the data plane (compare-and-swap
 * from 0 on the first verified packet). */
struct imds_vm {
	__u32 state;	 /* enum imds_vm_state */
	__u32 generation; /* bumped each time the slot is given to a VM */
	__u32 ifindex;	 /* bound bridge port; 0 = none (yet) */
	__be32 ipv4;	 /* bound source address */
	__u8 mac[6];
	__u8 hop_limit;	  /* IP TTL of token replies, 1..64 */
	__u8 http_tokens; /* enum imds_http_tokens */
	__u32 rate_pps;	  /* packet budget: packets/s, 0 = IMDS_DEFAULT_RATE_PPS */
	__u32 rate_burst; /* bucket size in packets, 0 = IMDS_DEFAULT_RATE_BURST */
	__u32 binding;	  /* enum imds_binding */
	__u32 pad0;
	/* (tree generation << 32) | first arena page of the compiled tree.
	 * Written with one atomic store: readers see the old or the new tree. */
	__u64 tree_ref;
	__u64 updated_unix; /* wall-clock time of the last update */
	char instance_id[IMDS_INSTANCE_ID_MAX];
	__u8 reserved[8];
};
_Static_assert(sizeof(struct imds_vm) == 128, "imds_vm layout");

/* vm_ports: the port name a pinned VM is bound to, by slot.  Only user space
 * reads it (imdsd resolves a joining port's name to the VMs pinned to it);
 * generation is vm_table[slot].generation when it was written, so a name
 * left by a deleted VM never pins the slot's next VM. */
struct imds_vm_port {
	char name[IMDS_PORT_NAME_MAX];
	__u32 generation;
	__u32 pad;
};
_Static_assert(sizeof(struct imds_vm_port) == 24, "imds_vm_port layout");

/* conn_table: one entry per verified SYN, consumed by imdsd on accept.
 * saddr is the VM's address as 16 bytes: an IPv6 address as it is, an
 * IPv4 one mapped (::ffff:a.b.c.d, RFC 4291 2.5.5.2), so one table holds
 * both families and a key of one can never equal a key of the other. */
struct imds_conn_key {
	__u8 saddr[16];
	__be16 sport;
	__u16 pad;
};
_Static_assert(sizeof(struct imds_conn_key) == 20, "imds_conn_key layout");

struct imds_conn {
	__u32 slot;
	__u32 generation; /* vm_table[slot].generation when the SYN was seen */
	__u64 verified_ns; /* bpf_ktime_get_ns() of the SYN */
};
_Static_assert(sizeof(struct imds_conn) == 16, "imds_conn layout");

/* A verified SYN is no use to imdsd after this long: a connection is
 * accepted within it or never (the kernel's SYN-ACK retries end sooner). */
#define IMDS_CONN_MAX_AGE_NS (120ull * 1000000000ull)

/* conn_slots: the verified SYNs imdsd reads in place, without a syscall.
 * An mmap-able array of IMDS_CONN_SLOTS entries (a power of two; the
 * store may make it smaller); the entry of an endpoint is at
 * imds_conn_slot_of(key) & (entries - 1).  The ingress program claims an
 * entry with compare-and-swap on seq_state (FREE, or READY with its own
 * endpoint or older than IMDS_CONN_MAX_AGE_NS -> WRITING), fills it and
 * sets READY; imdsd reads a READY entry of its endpoint and consumes it
 * with compare-and-swap (READY -> FREE).  Each claim adds
 * IMDS_CONN_SEQ_STEP, so a consumer's compare-and-swap fails if anyone
 * claimed the entry since it read it.  An entry taken by another
 * endpoint's fresh SYN sends the SYN to conn_table as before. */
#define IMDS_CONN_SLOTS 16384
#define IMDS_CONN_FREE 0u
#define IMDS_CONN_WRITING 1u
#define IMDS_CONN_READY 2u
#define IMDS_CONN_STATE_MASK 3u
#define IMDS_CONN_SEQ_STEP 4u
struct imds_conn_slot {
	__u32 seq_state; /* sequence << 2 | IMDS_CONN_FREE, _WRITING or _READY */
	__u32 slot;
	__u32 generation;
	__u32 pad;
	__u64 verified_ns;
	struct imds_conn_key key;
	__u32 pad2;
};
_Static_assert(sizeof(struct imds_conn_slot) == 48, "imds_conn_slot layout");

/* Where an endpoint's entry is in conn_slots (before the mask): the
 * address's last 8 bytes and the port, mixed (a 64-bit finaliser), the same
 * in the data plane and in imdsd.  Not keyed: a VM choosing ports that
 * collide only sends its own SYNs to conn_table. */
static inline __attribute__((always_inline)) __u32 imds_conn_slot_of(const struct imds_conn_key *k)
{
	__u64 a, b;

	__builtin_memcpy(&a, &k->saddr[0], 8);
	__builtin_memcpy(&b, &k->saddr[8], 8);
	a ^= b * 0x9e3779b97f4a7c15ull;
	a ^= (__u64)k->sport << 17;
	a ^= a >> 33;
	a *= 0xff51afd7ed558ccdull;
	a ^= a >> 33;
	a *= 0xc4ceb9fe1a85ec53ull;
	a ^= a >> 33;
	return (__u32)a;
}

/* hop_marks: written by imdsd just before it queues a token reply, read by
 * the TC egress program on the VM's port, which rewrites the IP TTL of every
 * segment from 169.254.169.254:80 to this endpoint.  The key is the VM-side
 * endpoint, exactly as in conn_table (struct imds_conn_key). */
struct imds_hop_mark {
	__u64 expires_ns; /* CLOCK_MONOTONIC (bpf_ktime_get_ns) */
	__u32 slot;	  /* VM slot, for the per-VM counter */
	__u8 hop_limit;	  /* 1..64 */
	__u8 pad[3];
};
_Static_assert(sizeof(struct imds_hop_mark) == 16, "imds_hop_mark layout");

/* conn_gate: written by imdsd when it refuses a VM's connection (over its
 * max-connections, or a hoarder at the total cap; docs/limits.md), read by
 * the ingress program, which drops the VM's verified SYNs until until_ns
 * (IMDS_DROP_CONN_LIMIT).  Without it, a VM that reconnects at once makes
 * imdsd accept and close thousands of connections a second, each after a
 * full handshake; with it, the VM's clients wait out a SYN retransmission
 * and imdsd sees at most one refusal per VM per gate.  generation is
 * vm_table[slot].generation: a gate never outlives its VM. */
struct imds_conn_gate {
	__u32 generation;
	__u32 pad;
	__u64 until_ns; /* CLOCK_MONOTONIC (bpf_ktime_get_ns) */
};
_Static_assert(sizeof(struct imds_conn_gate) == 16, "imds_conn_gate layout");
/* How long one refusal closes the door.  A client's first SYN
 * retransmission comes after 1 s (Linux's initial RTO), so a shorter gate
 * would rarely drop more than the first SYN. */
#define IMDS_CONN_GATE_NS (1000ull * 1000000ull)

/* ipv6_index: a loaded VM's IPv6 address (16 bytes) -> its owner.  The
 * generation is vm_table[slot].generation when the entry was written, so an
 * entry the store has not removed yet never speaks for the slot's next VM
 * (vm_table holds no IPv6 address to check it against, unlike ipv4). */
struct imds_ipv6_owner {
	__u32 slot;
	__u32 generation;
};
_Static_assert(sizeof(struct imds_ipv6_owner) == 8, "imds_ipv6_owner layout");

/* vm_ipv6 flags */
#define IMDS_VM_IPV6_ROUTER 1u /* options."ipv6-router": its RAs and Redirects pass */

/* vm_ipv6: by slot, the VM's IPv6 addresses (what the store indexed in
 * ipv6_index, so an update or delete removes exactly those) and its IPv6
 * flags, read by the data plane for Router Advertisements. */
struct imds_vm_ipv6 {
	__u32 generation; /* vm_table[slot].generation when written */
	__u8 count;	  /* addresses in addr, 0..IMDS_VM_IPV6_MAX */
	__u8 flags;	  /* IMDS_VM_IPV6_* */
	__u8 pad[2];
	__u8 addr[IMDS_VM_IPV6_MAX][16];
};
_Static_assert(sizeof(struct imds_vm_ipv6) == 8 + 16 * IMDS_VM_IPV6_MAX, "imds_vm_ipv6 layout");

/* vm_budget: the token bucket of each VM slot, owned by the data plane.
 * It is not in vm_table because imds-loadmap rewrites those records.  One
 * bucket per slot, not per CPU: a per-CPU bucket would give a VM whose
 * packets spread over n CPUs n times its budget.  A spin lock makes the
 * read-refill-consume step exact when two CPUs see the same VM; it is only
 * ever contended by one VM's own packets.  tokens is in units of 1e-9
 * packet, so refill is elapsed_ns * rate with integers only.  generation
 * is vm_table[slot].generation when the bucket was last used: a new VM in a
 * reused slot starts with a full bucket. */
struct imds_budget {
	struct bpf_spin_lock lock;
	__u32 generation;
	__u64 tokens; /* scaled: IMDS_BUDGET_SCALE per packet */
	__u64 last_ns; /* bpf_ktime_get_ns() of the last refill */
};
_Static_assert(sizeof(struct imds_budget) == 24, "imds_budget layout");
#define IMDS_BUDGET_SCALE 1000000000ull

/* vm_counters: per-CPU, indexed by slot (0 = totals). */
struct imds_counters {
	__u64 packets[IMDS_REASON_MAX];
};
_Static_assert(sizeof(struct imds_counters) == 8 * IMDS_REASON_MAX, "imds_counters layout");

struct imds_arena_page {
	__u8 bytes[IMDS_ARENA_PAGE];
};

/* token_key: one entry; generated by the first imdsd and kept pinned so a
 * restarted daemon still accepts tokens it issued. */
struct imds_token_key {
	__u8 key[IMDS_TOKEN_KEY_LEN];
	__u32 initialized;
	__u32 pad;
};
_Static_assert(sizeof(struct imds_token_key) == 40, "imds_token_key layout");

#ifndef __bpf__
static const char *const imds_reason_names[IMDS_REASON_MAX] = {
	[IMDS_PASS_VERIFIED] = "pass_verified",
	[IMDS_PASS_SYN_RECORDED] = "syn_recorded",
	[IMDS_DROP_UNKNOWN_MAC] = "drop_unknown_mac",
	[IMDS_DROP_WRONG_PORT] = "drop_wrong_port",
	[IMDS_DROP_WRONG_IPV4] = "drop_wrong_ipv4",
	[IMDS_DROP_MALFORMED] = "drop_malformed",
	[IMDS_DROP_BUDGET] = "drop_budget",
	[IMDS_PASS_HOP_LIMITED] = "hop_limited",
	[IMDS_DROP_UNBOUND] = "drop_unbound",
	[IMDS_DROP_ARP_SPOOF] = "drop_arp_spoof",
	[IMDS_DROP_FORGED_SOURCE] = "drop_forged_source",
	[IMDS_DROP_TAGGED] = "drop_tagged",
	[IMDS_DROP_NOT_METADATA_PORT] = "drop_not_metadata_port",
	[IMDS_DROP_MISDIRECTED_REPLY] = "drop_misdirected_reply",
	[IMDS_DROP_CONN_LIMIT] = "drop_conn_limit",
	[IMDS_DROP_WRONG_IPV6] = "drop_wrong_ipv6",
	[IMDS_DROP_ND_SPOOF] = "drop_nd_spoof",
	[IMDS_DROP_ROUTER_MESSAGE] = "drop_router_message",
};
#endif

#endif /* IMDS_H */

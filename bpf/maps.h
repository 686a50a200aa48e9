/* maps.h: every map of the data plane, pinned by name under the pin
 * directory so imdsd, imds-loadmap and a restarted imdsd share one copy.
 * Each map's identifier is its IMDS_MAP_*_ID from include/imds.h, so the
 * pin names user space spells are the names declared here.  Key and value
 * layouts are in include/imds.h, with the rule for changing them. */
#ifndef IMDS_BPF_MAPS_H
#define IMDS_BPF_MAPS_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "imds.h"

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, IMDS_MAX_VMS);
	__type(key, __u32);
	__type(value, struct imds_vm);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} IMDS_MAP_VM_TABLE_ID SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, IMDS_MAX_VMS);
	__type(key, struct imds_mac_key);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} IMDS_MAP_MAC_INDEX_ID SEC(".maps");

/* A loaded VM's IPv4 -> its slot: who may send from, and receive at, that
 * address (bpf/guard.h).  Written by the store beside mac_index. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, IMDS_MAX_VMS);
	__type(key, __be32);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} IMDS_MAP_IPV4_INDEX_ID SEC(".maps");

/* A loaded VM's IPv6 addresses -> their owner (struct imds_ipv6_owner):
 * the IPv6 counterpart of ipv4_index, up to IMDS_VM_IPV6_MAX per VM (the
 * store sizes it to its slots times that).  Not preallocated: room for
 * eight addresses per VM would be memory most stores never use. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, IMDS_MAX_VMS * IMDS_VM_IPV6_MAX);
	__type(key, struct in6_addr);
	__type(value, struct imds_ipv6_owner);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} IMDS_MAP_IPV6_INDEX_ID SEC(".maps");

/* Per VM slot: its IPv6 addresses and flags (struct imds_vm_ipv6). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, IMDS_MAX_VMS);
	__type(key, __u32);
	__type(value, struct imds_vm_ipv6);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} IMDS_MAP_VM_IPV6_ID SEC(".maps");

/* Bridge port (ifindex) -> the slot of a VM bound to it: which ports are
 * VMs' ports, whatever MAC a frame carries (bpf/guard6.h's Router
 * Advertisement check).  Written wherever a VM is bound (the store, and
 * the first-use binding here); an entry counts only while that VM is
 * active and still bound to the port, so one left behind says nothing.
 * LRU: ports come and go, and stale entries make room by themselves. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, IMDS_MAX_VMS);
	__type(key, __u32);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} IMDS_MAP_PORT_INDEX_ID SEC(".maps");

/* Bridge port (ifindex, by its low bits) -> the VM last found bound to it
 * (bpf/port_hint.h): ifindex << 32 | slot, one word so it is read whole.
 * A hint, checked against vm_table at every use. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, IMDS_PORT_HINTS);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} IMDS_MAP_PORT_HINTS_ID SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, IMDS_CONN_MAX);
	__type(key, struct imds_conn_key);
	__type(value, struct imds_conn);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} IMDS_MAP_CONN_TABLE_ID SEC(".maps");

/* Verified SYNs imdsd reads in place (include/imds.h, struct
 * imds_conn_slot); conn_table takes those whose entry is taken. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, IMDS_CONN_SLOTS);
	__type(key, __u32);
	__type(value, struct imds_conn_slot);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} IMDS_MAP_CONN_SLOTS_ID SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, IMDS_MAX_VMS);
	__type(key, __u32);
	__type(value, struct imds_counters);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} IMDS_MAP_VM_COUNTERS_ID SEC(".maps");

/* The shared-memory arena: compiled metadata trees, mmap'ed by user space.
 * The data plane never reads it; it lives here so it is pinned with the rest. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, IMDS_ARENA_PAGES);
	__type(key, __u32);
	__type(value, struct imds_arena_page);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} IMDS_MAP_ARENA_ID SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct imds_token_key);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} IMDS_MAP_TOKEN_KEY_ID SEC(".maps");

/* Token replies in flight: written by imdsd, read by the TC egress program.
 * LRU so that marks of connections nobody closed cleanly cannot fill it. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, IMDS_HOP_MARKS_MAX);
	__type(key, struct imds_conn_key);
	__type(value, struct imds_hop_mark);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} IMDS_MAP_HOP_MARKS_ID SEC(".maps");

/* hop_gate[0]: the CLOCK_MONOTONIC time (ns) after which no mark in
 * hop_marks is live, kept by imdsd (user/serve/hop.c): the egress program
 * looks marks up only until then (bpf/hoplimit.h).  mmap-able, so imdsd
 * moves it with a store, not a system call. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} IMDS_MAP_HOP_GATE_ID SEC(".maps");

/* Token bucket per VM slot (struct imds_budget, see include/imds.h). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, IMDS_MAX_VMS);
	__type(key, __u32);
	__type(value, struct imds_budget);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} IMDS_MAP_VM_BUDGET_ID SEC(".maps");

/* Per VM slot: until when its new connections are refused (struct
 * imds_conn_gate): written by imdsd, read at ingress. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, IMDS_MAX_VMS);
	__type(key, __u32);
	__type(value, struct imds_conn_gate);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} IMDS_MAP_CONN_GATE_ID SEC(".maps");

/* Port names of pinned VMs (struct imds_vm_port): user space only, pinned
 * here with the rest.  mmap-able so imdsd scans it without a syscall per
 * slot when a port joins. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, IMDS_MAX_VMS);
	__type(key, __u32);
	__type(value, struct imds_vm_port);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} IMDS_MAP_VM_PORTS_ID SEC(".maps");

#endif

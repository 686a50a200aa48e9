/* maps.h: every map of the data plane, pinned by name under the pin
 * directory so imdsd, imds-loadmap and a restarted imdsd share one copy. */
#ifndef IMDS_BPF_MAPS_H
#define IMDS_BPF_MAPS_H

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, IMDS_MAX_VMS);
	__type(key, __u32);
	__type(value, struct imds_vm);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} vm_table SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, IMDS_MAX_VMS);
	__type(key, struct imds_mac_key);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} mac_index SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, IMDS_CONN_MAX);
	__type(key, struct imds_conn_key);
	__type(value, struct imds_conn);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} conn_table SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, IMDS_MAX_VMS);
	__type(key, __u32);
	__type(value, struct imds_counters);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} vm_counters SEC(".maps");

/* The shared-memory arena: compiled metadata trees, mmap'ed by user space.
 * The data plane never reads it; it lives here so it is pinned with the rest. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, IMDS_ARENA_PAGES);
	__type(key, __u32);
	__type(value, struct imds_arena_page);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} arena SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct imds_token_key);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} token_key SEC(".maps");

/* Token replies in flight: written by imdsd, read by the TC egress program.
 * LRU so that marks of connections nobody closed cleanly cannot fill it. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, IMDS_HOP_MARKS_MAX);
	__type(key, struct imds_conn_key);
	__type(value, struct imds_hop_mark);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} hop_marks SEC(".maps");

/* Token bucket per VM slot (struct imds_budget, see include/imds.h). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, IMDS_MAX_VMS);
	__type(key, __u32);
	__type(value, struct imds_budget);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} vm_budget SEC(".maps");

#endif

/* counters.h: the per-reason packet counters in vm_counters.  Every verdict
 * of the data plane, pass or drop, is counted here under its enum
 * imds_reason: in slot 0 (the totals) and, when the packet is known to
 * belong to a VM, in that VM's slot too. */
#ifndef IMDS_BPF_COUNTERS_H
#define IMDS_BPF_COUNTERS_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "imds.h"
#include "maps.h"

static __always_inline void count_reason(__u32 slot, enum imds_reason reason)
{
	__u32 total = 0;
	struct imds_counters *c;

	c = bpf_map_lookup_elem(&IMDS_MAP_VM_COUNTERS_ID, &total);
	if (c && reason < IMDS_REASON_MAX)
		c->packets[reason]++;
	if (slot == 0)
		return;
	c = bpf_map_lookup_elem(&IMDS_MAP_VM_COUNTERS_ID, &slot);
	if (c && reason < IMDS_REASON_MAX)
		c->packets[reason]++;
}

#endif

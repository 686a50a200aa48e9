/* budget.h: the per-VM packet budget, a token bucket per VM slot in
 * vm_budget.  Only packets that passed verification reach it, so a VM's
 * budget is spent by that VM alone; forged packets are dropped before. */
#ifndef IMDS_BPF_BUDGET_H
#define IMDS_BPF_BUDGET_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "imds.h"
#include "maps.h"

/* Adds what the elapsed time earned, capped at the bucket size.  Written so
 * that no product can overflow: refill = elapsed * rate is only computed
 * when elapsed <= room / rate, so it is at most room (<= 1e6 * 1e9), and a
 * long idle (or a clock read on another CPU that is behind last_ns) never
 * reaches the multiplication. */
static __always_inline __u64 budget_refill(__u64 tokens, __u64 cap, __u64 elapsed, __u64 rate)
{
	__u64 room;

	if (tokens >= cap)
		return cap; /* also when the operator lowered the burst */
	room = cap - tokens;
	if (elapsed > room / rate)
		return cap;
	return tokens + elapsed * rate;
}

/* IMDS_PASS_VERIFIED when the VM may send this packet (one packet's worth
 * taken from its bucket), IMDS_DROP_BUDGET when its bucket is empty. */
static __always_inline enum imds_reason budget_consume(__u32 slot, const struct imds_vm *vm)
{
	/* Everything that needs a helper or another map is read before the
	 * lock: the verifier allows no calls while a bpf_spin_lock is held. */
	__u64 rate = vm->rate_pps ? vm->rate_pps : IMDS_DEFAULT_RATE_PPS;
	__u64 burst = vm->rate_burst ? vm->rate_burst : IMDS_DEFAULT_RATE_BURST;
	__u64 cap = burst * IMDS_BUDGET_SCALE;
	__u32 generation = vm->generation;
	__u64 now = bpf_ktime_get_ns();
	enum imds_reason reason = IMDS_PASS_VERIFIED;
	struct imds_budget *b;
	__u64 tokens;

	b = bpf_map_lookup_elem(&vm_budget, &slot);
	if (!b)
		return IMDS_PASS_VERIFIED; /* cannot happen: slot < max_entries */
	bpf_spin_lock(&b->lock);
	if (b->generation != generation) {
		b->generation = generation;
		tokens = cap;
	} else if (now > b->last_ns) {
		tokens = budget_refill(b->tokens, cap, now - b->last_ns, rate);
	} else {
		tokens = b->tokens < cap ? b->tokens : cap;
	}
	if (now > b->last_ns)
		b->last_ns = now;
	if (tokens >= IMDS_BUDGET_SCALE)
		tokens -= IMDS_BUDGET_SCALE;
	else
		reason = IMDS_DROP_BUDGET;
	b->tokens = tokens;
	bpf_spin_unlock(&b->lock);
	return reason;
}

#endif

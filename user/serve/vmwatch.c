/* vmwatch.c: the per-VM event log (vmwatch.h).  Once a second the admin
 * thread reads each loaded VM's data-plane counters and its port; a VM
 * whose packets were dropped, or whose port was bound or lost, gets a line
 * at once, and then no other line of that kind for VMWATCH_LINE_SEC: a
 * guest that floods spoofed frames or flaps its link costs the journal one
 * line a minute, which counts what happened since the last one.  The
 * metrics hold every count anyway (docs/metrics.md). */
#include "serve/vmwatch.h"

#include <net/if.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "imds.h"
#include "lib/log.h"
#include "store/store.h"

#define VMWATCH_LINE_SEC 60
#define VMWATCH_BATCH 256 /* slots per read of the counters */

enum vmwatch_kind {
	VMWATCH_DROPS = 0,  /* dropped as spoofed, misdirected, malformed or unbound */
	VMWATCH_BUDGET = 1, /* dropped over the VM's packet budget */
	VMWATCH_BOUND = 2,  /* the VM was bound to a port */
	VMWATCH_LOST = 3,   /* the VM lost its port */
	VMWATCH_KINDS = 4,
};

struct vmwatch_vm {
	uint32_t generation; /* the VM this state is of; 0: none seen */
	uint32_t ifindex;    /* its port at the last look */
	uint64_t seen[IMDS_REASON_MAX];	  /* counters at the last look */
	uint64_t logged[IMDS_REASON_MAX]; /* counters at the last line */
	struct log_limit limit[VMWATCH_KINDS];
};

struct vmwatch {
	const struct store *store;
	bool started; /* a first look was taken: VMs seen then are not news */
	struct imds_counters batch[VMWATCH_BATCH]; /* the counters of one block of slots */
	struct vmwatch_vm vms[]; /* the store's slots */
};

struct vmwatch *vmwatch_new(const struct store *store)
{
	struct vmwatch *w = calloc(1, sizeof(*w) + store->max_slots * sizeof(w->vms[0]));

	if (w)
		w->store = store;
	return w;
}

void vmwatch_free(struct vmwatch *w)
{
	free(w);
}

static bool vmwatch_is_drop(int r)
{
	return r != IMDS_PASS_VERIFIED && r != IMDS_PASS_SYN_RECORDED && r != IMDS_PASS_HOP_LIMITED;
}

static enum vmwatch_kind vmwatch_kind_of(int r)
{
	return r == IMDS_DROP_BUDGET ? VMWATCH_BUDGET : VMWATCH_DROPS;
}

/* The drops of `kind` since the last line, reason by reason. */
static void vmwatch_log_drops(struct vmwatch_vm *v, const char *iid, uint32_t slot, enum vmwatch_kind kind,
			      const struct imds_counters *c)
{
	char list[512] = "";
	uint64_t total = 0;
	size_t len = 0;

	for (int r = 0; r < IMDS_REASON_MAX; r++) {
		uint64_t d;

		if (!vmwatch_is_drop(r) || vmwatch_kind_of(r) != kind)
			continue;
		d = c->packets[r] - v->logged[r];
		v->logged[r] = c->packets[r];
		if (!d)
			continue;
		total += d;
		len += (size_t)snprintf(list + len, sizeof(list) - len, "%s%s %llu", len ? ", " : "",
					imds_reason_names[r], (unsigned long long)d);
		if (len >= sizeof(list))
			len = sizeof(list) - 1;
	}
	if (kind == VMWATCH_BUDGET)
		log_warn("vm %s (slot %u): over its packet budget: %llu packet(s) dropped since the last line", iid,
			 slot, (unsigned long long)total);
	else
		log_warn("vm %s (slot %u): data plane dropped %llu packet(s) since the last line: %s", iid, slot,
			 (unsigned long long)total, list);
}

static void vmwatch_drops(struct vmwatch_vm *v, const char *iid, uint32_t slot, const struct imds_counters *c,
			  uint64_t now)
{
	bool grew[VMWATCH_KINDS] = { false };
	uint64_t suppressed;

	for (int r = 0; r < IMDS_REASON_MAX; r++) {
		if (vmwatch_is_drop(r) && c->packets[r] > v->seen[r])
			grew[vmwatch_kind_of(r)] = true;
		v->seen[r] = c->packets[r];
	}
	for (int k = VMWATCH_DROPS; k <= VMWATCH_BUDGET; k++)
		if (grew[k] && log_limit_allow(&v->limit[k], now, VMWATCH_LINE_SEC * 1000u, &suppressed))
			vmwatch_log_drops(v, iid, slot, (enum vmwatch_kind)k, c);
}

static void vmwatch_port(struct vmwatch_vm *v, const char *iid, uint32_t slot, uint32_t ifindex, uint64_t now)
{
	char name[IF_NAMESIZE] = "?", more[64] = "";
	uint64_t suppressed;
	uint32_t was = v->ifindex;

	if (ifindex == was)
		return;
	v->ifindex = ifindex;
	/* Bound and lost are limited apart: a flapping port's first loss
	 * and first return both show. */
	if (!log_limit_allow(&v->limit[ifindex ? VMWATCH_BOUND : VMWATCH_LOST], now, VMWATCH_LINE_SEC * 1000u,
			     &suppressed))
		return;
	if (suppressed)
		snprintf(more, sizeof(more), " (%llu more since the last such line)", (unsigned long long)suppressed);
	if (ifindex) {
		if_indextoname(ifindex, name);
		log_info("vm %s (slot %u): bound to port %s (ifindex %u)%s", iid, slot, name, ifindex, more);
	} else {
		log_info("vm %s (slot %u): lost its port (ifindex %u)%s", iid, slot, was, more);
	}
}

/* A VM seen for the first time: at the first look its past is not news;
 * later, a new VM starts from nothing (its counters were reset for it). */
static void vmwatch_meet(struct vmwatch *w, struct vmwatch_vm *v, uint32_t generation, uint32_t ifindex,
			 const struct imds_counters *c)
{
	memset(v, 0, sizeof(*v));
	v->generation = generation;
	if (w->started)
		return;
	v->ifindex = ifindex;
	memcpy(v->seen, c->packets, sizeof(v->seen));
	memcpy(v->logged, c->packets, sizeof(v->logged));
}

/* One VM's look: its port and its drops since the last one. */
static void vmwatch_look(struct vmwatch *w, uint32_t slot, const struct imds_counters *c, uint64_t now_ms)
{
	const struct imds_vm *r = &w->store->vms[slot];
	struct vmwatch_vm *v = &w->vms[slot];
	char iid[IMDS_INSTANCE_ID_MAX];
	uint32_t gen, ifindex;

	gen = __atomic_load_n(&r->generation, __ATOMIC_ACQUIRE);
	ifindex = __atomic_load_n(&r->ifindex, __ATOMIC_ACQUIRE);
	memcpy(iid, (const char *)r->instance_id, sizeof(iid));
	iid[sizeof(iid) - 1] = '\0';
	if (v->generation != gen)
		vmwatch_meet(w, v, gen, ifindex, c);
	vmwatch_port(v, iid, slot, ifindex, now_ms);
	vmwatch_drops(v, iid, slot, c, now_ms);
}

/* Whether any of the n slots from `first` holds a VM; forgets the free
 * ones (written only then: free slots' pages stay untouched). */
static bool vmwatch_any_active(struct vmwatch *w, uint32_t first, uint32_t n)
{
	bool any = false;

	for (uint32_t slot = first; slot < first + n; slot++) {
		if (store_vm_active(&w->store->vms[slot]))
			any = true;
		else if (w->vms[slot].generation)
			w->vms[slot].generation = 0;
	}
	return any;
}

/* The counters are read VMWATCH_BATCH slots per system call (a block
 * without a VM is skipped): at 1,000 VMs, 4 calls a second, not 1,000. */
void vmwatch_tick(struct vmwatch *w, uint64_t now_ms)
{
	for (uint32_t first = 1; first < w->store->max_slots; first += VMWATCH_BATCH) {
		uint32_t n = w->store->max_slots - first < VMWATCH_BATCH ? w->store->max_slots - first : VMWATCH_BATCH;

		if (!vmwatch_any_active(w, first, n) || store_counters_range(w->store, first, n, w->batch) < 0)
			continue;
		for (uint32_t i = 0; i < n; i++)
			if (store_vm_active(&w->store->vms[first + i]))
				vmwatch_look(w, first + i, &w->batch[i], now_ms);
	}
	w->started = true;
}

/* stats.h: what a worker counts of the requests it answers, for the
 * metrics (metrics.c sums the workers when scraped).  Each worker writes
 * its own table only, with plain loads and stores (relaxed atomics: no
 * lock prefix, no torn reads), so counting costs a request a few adds to
 * memory the worker already owns; the table is calloc'ed, so the slots of
 * VMs a worker never served take no memory.
 *
 * A slot's counts belong to one VM, named by the slot's generation: the
 * first request of a new VM in the slot zeroes them (a deleted VM's counts
 * end with it, docs/metrics.md).  The reader takes the generation
 * before and after reading the counts and drops them if it moved. */
#ifndef IMDS_SERVE_STATS_H
#define IMDS_SERVE_STATS_H
#include <stdbool.h>
#include <stdint.h>

#include "http/route_call.h" /* enum route_flavor */

/* The status codes imdsd answers (http_reason's list); 0 is any other. */
#define STATS_CODES 13
static const uint16_t stats_codes[STATS_CODES] = { 200, 400, 401, 403, 404, 405, 413, 414, 429, 431, 500, 503, 0 };

/* Upper bounds of the latency histogram's buckets, in ns; one more bucket
 * counts what is slower than the last.  Most answers take tens of
 * microseconds; the top buckets show a worker held up (docs/metrics.md). */
#define STATS_LATENCY_BUCKETS 12
static const uint64_t stats_latency_le_ns[STATS_LATENCY_BUCKETS] = {
	10000, 25000, 50000, 100000, 250000, 500000, 1000000, 2500000, 5000000, 10000000, 50000000, 250000000,
};

struct stats_vm {
	uint32_t generation; /* the VM these counts are of; 0 = none yet */
	uint64_t requests[ROUTE_FLAVOR_COUNT][STATS_CODES];
	uint64_t tokenless;	/* EC2 data answered without a token (IMDSv1) */
	uint64_t tokens_issued; /* IMDSv2 session tokens */
};

struct stats_latency {
	uint64_t buckets[STATS_LATENCY_BUCKETS + 1]; /* not cumulative; the last is +Inf's own */
	uint64_t sum_ns;
	uint64_t count;
};

struct stats_worker {
	struct stats_vm *vms; /* the store's max_slots, by slot */
	struct stats_latency latency;
};

/* One answered request, as the request path knows it. */
struct stats_answer {
	uint8_t flavor; /* enum route_flavor */
	bool tokenless, token_issued;
	int status;
};

static inline void stats_add(uint64_t *counter, uint64_t n)
{
	__atomic_store_n(counter, __atomic_load_n(counter, __ATOMIC_RELAXED) + n, __ATOMIC_RELAXED);
}

static inline unsigned stats_code_index(int status)
{
	for (unsigned i = 0; i < STATS_CODES - 1; i++)
		if (stats_codes[i] == status)
			return i;
	return STATS_CODES - 1;
}

/* The slot's counts made the VM's of `generation`. */
static inline struct stats_vm *stats_vm_of(struct stats_worker *s, uint32_t slot, uint32_t generation)
{
	struct stats_vm *v = &s->vms[slot];
	uint64_t *words = (uint64_t *)v->requests;

	if (__atomic_load_n(&v->generation, __ATOMIC_RELAXED) == generation)
		return v;
	__atomic_store_n(&v->generation, 0, __ATOMIC_RELEASE);
	for (unsigned i = 0; i < ROUTE_FLAVOR_COUNT * STATS_CODES; i++)
		__atomic_store_n(&words[i], 0, __ATOMIC_RELAXED);
	__atomic_store_n(&v->tokenless, 0, __ATOMIC_RELAXED);
	__atomic_store_n(&v->tokens_issued, 0, __ATOMIC_RELAXED);
	__atomic_store_n(&v->generation, generation, __ATOMIC_RELEASE);
	return v;
}

static inline void stats_latency_add(struct stats_latency *l, uint64_t ns)
{
	unsigned b = 0;

	while (b < STATS_LATENCY_BUCKETS && ns > stats_latency_le_ns[b])
		b++;
	stats_add(&l->buckets[b], 1);
	stats_add(&l->sum_ns, ns);
	stats_add(&l->count, 1);
}

/* Counts one answer of VM (slot, generation) that took `ns` to build. */
static inline void stats_count(struct stats_worker *s, uint32_t slot, uint32_t generation,
			       const struct stats_answer *a, uint64_t ns)
{
	struct stats_vm *v = stats_vm_of(s, slot, generation);

	stats_add(&v->requests[a->flavor < ROUTE_FLAVOR_COUNT ? a->flavor : 0][stats_code_index(a->status)], 1);
	if (a->tokenless)
		stats_add(&v->tokenless, 1);
	if (a->token_issued)
		stats_add(&v->tokens_issued, 1);
	stats_latency_add(&s->latency, ns);
}

#endif

/* vmlimits.c: per-VM request budget and connection cap, shared by imdsd's
 * workers through atomics (docs/limits.md). */
#include "serve/vmlimits.h"

#include <stdlib.h>
#include <string.h>

#include "imds.h"

/* One VM slot, alone on its cache line: only that VM's own requests and
 * connections touch it, from whichever workers serve them. */
struct limits_slot {
	uint64_t tat;	   /* request bucket, see limits_bucket_step */
	uint64_t conns;	   /* generation << 32 | connections open */
	uint64_t throttled; /* requests answered 429, since last taken */
	uint64_t refused;   /* connections refused, since last taken */
	uint64_t events[LIMITS_EV_COUNT]; /* enum limits_event, since last taken */
} __attribute__((aligned(64)));

_Static_assert(sizeof(struct limits_slot) == 64, "a slot is one cache line");

struct limits {
	uint32_t nslots;
	struct limits_slot *slots;
};

struct limits_params limits_resolve(uint32_t rate, uint32_t burst, uint32_t max_conns)
{
	return (struct limits_params){
		.rate = rate ? rate : IMDS_DEFAULT_REQUEST_RATE,
		.burst = burst ? burst : IMDS_DEFAULT_REQUEST_BURST,
		.max_conns = max_conns ? max_conns : IMDS_DEFAULT_MAX_CONNS,
	};
}

static uint64_t lim_add(uint64_t a, uint64_t b)
{
	uint64_t r;

	return __builtin_add_overflow(a, b, &r) ? UINT64_MAX : r;
}

static uint64_t lim_mul(uint64_t a, uint64_t b)
{
	uint64_t r;

	return __builtin_mul_overflow(a, b, &r) ? UINT64_MAX : r;
}

/* GCRA: each request moves the theoretical arrival time one interval
 * (1/rate) further; a request fits while that time stays within
 * burst intervals of now.  This is a token bucket of `burst` tokens
 * refilled at `rate`, with no separate refill step and one word of state,
 * so one compare-and-swap updates it.  A refused request changes nothing:
 * a client that keeps asking is served again as soon as the bucket has
 * room, not when it stops. */
uint64_t limits_bucket_step(uint64_t tat, uint64_t now, uint32_t rate, uint32_t burst, uint64_t *next)
{
	uint64_t interval = LIMITS_NS_PER_SEC / (rate ? rate : 1);
	uint64_t base = tat > now ? tat : now;
	uint64_t after, limit;

	if (interval == 0)
		interval = 1;
	after = lim_add(base, interval);
	limit = lim_add(now, lim_mul(burst ? burst : 1, interval));
	if (after > limit)
		return after - limit;
	*next = after;
	return 0;
}

struct limits *limits_new(uint32_t nslots)
{
	struct limits *l = calloc(1, sizeof(*l));

	if (!l)
		return NULL;
	l->nslots = nslots;
	l->slots = aligned_alloc(_Alignof(struct limits_slot), (size_t)nslots * sizeof(*l->slots));
	if (!l->slots) {
		free(l);
		return NULL;
	}
	memset(l->slots, 0, (size_t)nslots * sizeof(*l->slots));
	return l;
}

void limits_free(struct limits *l)
{
	if (!l)
		return;
	free(l->slots);
	free(l);
}

static struct limits_slot *lim_slot(const struct limits *l, uint32_t slot)
{
	return slot < l->nslots ? &l->slots[slot] : NULL;
}

/* Generations only grow (vm_table keeps them across deletes), so serial
 * number order tells the slot's newer VM from an older one. */
static bool lim_newer(uint32_t a, uint32_t b)
{
	return (int32_t)(a - b) > 0;
}

enum limits_open limits_conn_open(struct limits *l, uint32_t slot, uint32_t generation, uint32_t max_conns)
{
	struct limits_slot *s = lim_slot(l, slot);
	uint64_t old, new;
	bool reset;

	if (!s)
		return LIMITS_OPEN_GONE;
	old = __atomic_load_n(&s->conns, __ATOMIC_RELAXED);
	do {
		uint32_t gen = (uint32_t)(old >> 32), open = (uint32_t)old;

		/* 0: never used since imdsd started, any VM may take it. */
		reset = gen != generation;
		if (reset && old != 0 && !lim_newer(generation, gen))
			return LIMITS_OPEN_GONE;
		if (!reset && open >= max_conns) {
			__atomic_add_fetch(&s->refused, 1, __ATOMIC_RELAXED);
			return LIMITS_OPEN_FULL;
		}
		new = reset ? (uint64_t)generation << 32 | 1 : old + 1;
	} while (!__atomic_compare_exchange_n(&s->conns, &old, new, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED));
	if (reset) {
		/* Not atomic with the switch above: a request of this VM on
		 * another worker's connection opened in the few ns between the
		 * two stores is forgiven, once per VM.  Requests of the old VM
		 * can no longer be charged (its snapshots fail). */
		__atomic_store_n(&s->tat, 0, __ATOMIC_RELAXED);
		__atomic_store_n(&s->throttled, 0, __ATOMIC_RELAXED);
		__atomic_store_n(&s->refused, 0, __ATOMIC_RELAXED);
		for (int i = 0; i < LIMITS_EV_COUNT; i++)
			__atomic_store_n(&s->events[i], 0, __ATOMIC_RELAXED);
	}
	return LIMITS_OPEN_OK;
}

void limits_conn_close(struct limits *l, uint32_t slot, uint32_t generation)
{
	struct limits_slot *s = lim_slot(l, slot);
	uint64_t old;

	if (!s)
		return;
	old = __atomic_load_n(&s->conns, __ATOMIC_RELAXED);
	do {
		/* A connection of a VM whose slot was reset was never counted
		 * against the new one. */
		if ((uint32_t)(old >> 32) != generation || (uint32_t)old == 0)
			return;
	} while (!__atomic_compare_exchange_n(&s->conns, &old, old - 1, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED));
}

uint32_t limits_conns(const struct limits *l, uint32_t slot)
{
	const struct limits_slot *s = lim_slot(l, slot);

	return s ? (uint32_t)__atomic_load_n(&s->conns, __ATOMIC_RELAXED) : 0;
}

uint64_t limits_charge(struct limits *l, uint32_t slot, uint32_t rate, uint32_t burst, uint64_t now)
{
	struct limits_slot *s = lim_slot(l, slot);
	uint64_t tat, next = 0, wait;

	if (!s)
		return 0;
	tat = __atomic_load_n(&s->tat, __ATOMIC_RELAXED);
	do {
		wait = limits_bucket_step(tat, now, rate, burst, &next);
		if (wait) {
			__atomic_add_fetch(&s->throttled, 1, __ATOMIC_RELAXED);
			return wait;
		}
	} while (!__atomic_compare_exchange_n(&s->tat, &tat, next, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED));
	return 0;
}

void limits_prefetch(const struct limits *l, uint32_t slot)
{
	const struct limits_slot *s = lim_slot(l, slot);

	if (s)
		__builtin_prefetch(s, 1);
}

uint32_t limits_take_counts(struct limits *l, uint32_t slot, uint64_t *throttled, uint64_t *refused)
{
	struct limits_slot *s = lim_slot(l, slot);

	*throttled = *refused = 0;
	if (!s)
		return 0;
	*throttled = __atomic_exchange_n(&s->throttled, 0, __ATOMIC_RELAXED);
	*refused = __atomic_exchange_n(&s->refused, 0, __ATOMIC_RELAXED);
	return (uint32_t)(__atomic_load_n(&s->conns, __ATOMIC_RELAXED) >> 32);
}

void limits_count(struct limits *l, uint32_t slot, uint32_t generation, enum limits_event ev)
{
	struct limits_slot *s = lim_slot(l, slot);

	if (!s || ev >= LIMITS_EV_COUNT || (uint32_t)(__atomic_load_n(&s->conns, __ATOMIC_RELAXED) >> 32) != generation)
		return;
	__atomic_add_fetch(&s->events[ev], 1, __ATOMIC_RELAXED);
}

uint32_t limits_take_events(struct limits *l, uint32_t slot, uint64_t out[LIMITS_EV_COUNT])
{
	struct limits_slot *s = lim_slot(l, slot);

	for (int i = 0; i < LIMITS_EV_COUNT; i++)
		out[i] = s ? __atomic_exchange_n(&s->events[i], 0, __ATOMIC_RELAXED) : 0;
	return s ? (uint32_t)(__atomic_load_n(&s->conns, __ATOMIC_RELAXED) >> 32) : 0;
}

uint32_t limits_conns_of(const struct limits *l, uint32_t slot, uint32_t generation)
{
	const struct limits_slot *s = lim_slot(l, slot);
	uint64_t word = s ? __atomic_load_n(&s->conns, __ATOMIC_RELAXED) : 0;

	return (uint32_t)(word >> 32) == generation ? (uint32_t)word : 0;
}

/* vmlimits.h: imdsd's per-VM HTTP limits (docs/limits.md): a request budget
 * answered with 429 beyond it, and a cap on concurrent connections.
 *
 * One table of VM slots is shared by every worker thread.  Each slot holds
 * its state in single 64-bit words changed by compare-and-swap, so a VM's
 * budget and cap are exact however the kernel spreads its connections over
 * the SO_REUSEPORT listeners, and no lock is taken.  Pure apart from the
 * atomics: the clock comes in as an argument. */
#ifndef IMDS_VMLIMITS_H
#define IMDS_VMLIMITS_H
#include <stdbool.h>
#include <stdint.h>

#define LIMITS_NS_PER_SEC 1000000000ull

/* The values in force for one VM, defaults applied (never 0). */
struct limits_params {
	uint32_t rate;	    /* requests per second */
	uint32_t burst;	    /* requests at once after a quiet spell */
	uint32_t max_conns; /* connections open at once */
};

/* From the VM's tree header fields (0 = the default of include/imds.h). */
struct limits_params limits_resolve(uint32_t rate, uint32_t burst, uint32_t max_conns);

/* One step of the request bucket, kept as a theoretical arrival time
 * (GCRA, the token bucket in one word): `tat` is when the bucket would be
 * full again, in ns of the caller's clock; 0 is a full bucket.  Returns 0
 * when a request at `now` fits, with the new state in *next; otherwise the
 * ns to wait until it would fit, and *next is left alone.  Saturates
 * instead of wrapping for any input. */
uint64_t limits_bucket_step(uint64_t tat, uint64_t now, uint32_t rate, uint32_t burst, uint64_t *next);

enum limits_open {
	LIMITS_OPEN_OK = 0,
	LIMITS_OPEN_FULL = 1, /* the VM already holds max_conns connections */
	LIMITS_OPEN_GONE = 2, /* the slot belongs to a newer VM already */
};

struct limits;

/* A table for slots 0..nslots-1, everything at rest.  NULL on no memory. */
struct limits *limits_new(uint32_t nslots);
void limits_free(struct limits *l);

/* At accept, once the VM is known: counts one more connection of VM
 * (slot, generation) unless it already holds max_conns.  The first
 * connection of a new generation in a slot resets the slot: the new VM
 * starts with no connections and a full bucket. */
enum limits_open limits_conn_open(struct limits *l, uint32_t slot, uint32_t generation, uint32_t max_conns);
/* At close of a connection that limits_conn_open let in. */
void limits_conn_close(struct limits *l, uint32_t slot, uint32_t generation);
/* Connections counted for the slot's current VM. */
uint32_t limits_conns(const struct limits *l, uint32_t slot);
/* Connections counted for VM (slot, generation): 0 when the slot counts
 * another VM's (for the metrics). */
uint32_t limits_conns_of(const struct limits *l, uint32_t slot, uint32_t generation);

/* Charges one request to the slot's bucket.  0 when it may be served,
 * otherwise the ns until a request would fit (answer 429). */
uint64_t limits_charge(struct limits *l, uint32_t slot, uint32_t rate, uint32_t burst, uint64_t now);
/* Asks the CPU to bring the slot's bucket into its cache ahead of the
 * limits_charge that will write it; changes nothing. */
void limits_prefetch(const struct limits *l, uint32_t slot);

/* Requests answered 429 and connections refused since the last call, for
 * the operator's log; both are reset.  Returns the slot's generation. */
uint32_t limits_take_counts(struct limits *l, uint32_t slot, uint64_t *throttled, uint64_t *refused);

/* What the server's descriptor limits did to a VM's connections
 * (docs/limits.md, "Descriptors"), counted per VM for the operator. */
enum limits_event {
	LIMITS_EV_EVICTED = 0,	  /* closed to make room for another VM's */
	LIMITS_EV_OVER_TOTAL = 1, /* refused at accept: the total cap was reached */
	LIMITS_EV_SLOW = 2,	  /* a request not complete within the header timeout */
	LIMITS_EV_COUNT = 3,
};

/* Counts one event of VM (slot, generation); nothing once the slot holds
 * a newer VM. */
void limits_count(struct limits *l, uint32_t slot, uint32_t generation, enum limits_event ev);
/* The events since the last call, reset; returns the slot's generation. */
uint32_t limits_take_events(struct limits *l, uint32_t slot, uint64_t out[LIMITS_EV_COUNT]);

#endif

/* fair.h: one worker's connections grouped by VM, for fair eviction
 * (docs/limits.md, "The total cap").  When imdsd holds as many connections
 * as its descriptors allow, a newcomer may take the place of the least
 * recently active connection of the VM that holds most; this finds both in
 * O(1): each VM keeps its connections in activity order, and VMs sit in
 * buckets by how many connections they hold (the LFU layout), with the
 * highest non-empty bucket remembered.  Every operation is O(1) (growing
 * the bucket array is amortised); no locks, one worker owns it.  Pure: the
 * caller embeds a fair_node in each connection. */
#ifndef IMDS_SERVE_FAIR_H
#define IMDS_SERVE_FAIR_H
#include <stdbool.h>
#include <stdint.h>

/* Embedded in a connection; prev == NULL while it is in no VM's list. */
struct fair_node {
	struct fair_node *prev, *next;
	uint32_t slot;
};

struct fair_vm {
	struct fair_node lru; /* sentinel: least recently active first */
	uint32_t n;	      /* connections on the list */
	struct fair_vm *bprev, *bnext; /* the bucket of VMs holding n */
};

struct fair {
	uint32_t nslots;
	struct fair_vm *vms;	 /* nslots */
	struct fair_vm **bucket; /* bucket[n]: VMs holding n connections (n >= 1) */
	uint32_t nbuckets;
	uint32_t top; /* highest n with a VM in its bucket; 0 = no connection */
};

/* 0 or -ENOMEM. */
int fair_init(struct fair *f, uint32_t nslots);
void fair_destroy(struct fair *f);

/* Counts a connection of `slot` as the most recently active.  0, -EINVAL
 * (slot out of range) or -ENOMEM (the bucket array could not grow). */
int fair_add(struct fair *f, struct fair_node *node, uint32_t slot);
/* Forgets it; a node in no list is left alone. */
void fair_remove(struct fair *f, struct fair_node *node);

/* The connection was just active: it goes last in its VM's order. */
static inline void fair_touch(struct fair *f, struct fair_node *node)
{
	struct fair_node *head;

	if (!node->prev || node->next == &f->vms[node->slot].lru)
		return; /* not counted, or already the most recent */
	node->prev->next = node->next;
	node->next->prev = node->prev;
	head = &f->vms[node->slot].lru;
	node->prev = head->prev;
	node->next = head;
	head->prev->next = node;
	head->prev = node;
}

/* Connections of `slot` held here. */
uint32_t fair_count(const struct fair *f, uint32_t slot);
/* The first VM holding the most connections here (0: none), the count in
 * *count; fair_top_next gives the next VM of the same count, or 0. */
uint32_t fair_top(const struct fair *f, uint32_t *count);
uint32_t fair_top_next(const struct fair *f, uint32_t slot);
/* The VM's connections from the least recently active: the first, then
 * the one after `node`; NULL at the end. */
struct fair_node *fair_oldest(const struct fair *f, uint32_t slot);
struct fair_node *fair_next(const struct fair *f, const struct fair_node *node);

#endif

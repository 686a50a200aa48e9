/* fair.c: one worker's connections grouped by VM, and the VMs by how many
 * they hold (fair.h). */
#include "serve/fair.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define FAIR_BUCKETS_MIN 64

int fair_init(struct fair *f, uint32_t nslots)
{
	memset(f, 0, sizeof(*f));
	f->vms = calloc(nslots, sizeof(*f->vms));
	f->bucket = calloc(FAIR_BUCKETS_MIN, sizeof(*f->bucket));
	if (!f->vms || !f->bucket) {
		fair_destroy(f);
		return -ENOMEM;
	}
	f->nslots = nslots;
	f->nbuckets = FAIR_BUCKETS_MIN;
	for (uint32_t i = 0; i < nslots; i++)
		f->vms[i].lru.prev = f->vms[i].lru.next = &f->vms[i].lru;
	return 0;
}

void fair_destroy(struct fair *f)
{
	free(f->vms);
	free(f->bucket);
	memset(f, 0, sizeof(*f));
}

static void fair_bucket_unlink(struct fair *f, struct fair_vm *vm)
{
	if (vm->bprev)
		vm->bprev->bnext = vm->bnext;
	else
		f->bucket[vm->n] = vm->bnext;
	if (vm->bnext)
		vm->bnext->bprev = vm->bprev;
	vm->bprev = vm->bnext = NULL;
}

static void fair_bucket_push(struct fair *f, struct fair_vm *vm)
{
	vm->bprev = NULL;
	vm->bnext = f->bucket[vm->n];
	if (vm->bnext)
		vm->bnext->bprev = vm;
	f->bucket[vm->n] = vm;
}

/* Room for bucket[n]: doubles, so growing is amortised O(1). */
static int fair_grow(struct fair *f, uint32_t n)
{
	struct fair_vm **b;
	uint32_t size = f->nbuckets;

	if (n < size)
		return 0;
	while (size <= n)
		size *= 2;
	b = realloc(f->bucket, (size_t)size * sizeof(*b));
	if (!b)
		return -ENOMEM;
	memset(b + f->nbuckets, 0, (size_t)(size - f->nbuckets) * sizeof(*b));
	f->bucket = b;
	f->nbuckets = size;
	return 0;
}

int fair_add(struct fair *f, struct fair_node *node, uint32_t slot)
{
	struct fair_vm *vm;

	if (slot >= f->nslots)
		return -EINVAL;
	vm = &f->vms[slot];
	if (fair_grow(f, vm->n + 1) < 0)
		return -ENOMEM;
	if (vm->n)
		fair_bucket_unlink(f, vm);
	vm->n++;
	fair_bucket_push(f, vm);
	if (vm->n > f->top)
		f->top = vm->n;
	node->slot = slot;
	node->prev = vm->lru.prev;
	node->next = &vm->lru;
	vm->lru.prev->next = node;
	vm->lru.prev = node;
	return 0;
}

void fair_remove(struct fair *f, struct fair_node *node)
{
	struct fair_vm *vm;

	if (!node->prev)
		return;
	vm = &f->vms[node->slot];
	node->prev->next = node->next;
	node->next->prev = node->prev;
	node->prev = node->next = NULL;
	fair_bucket_unlink(f, vm);
	vm->n--;
	if (vm->n)
		fair_bucket_push(f, vm);
	/* Counts move by one: the top drops by at most one. */
	while (f->top && !f->bucket[f->top])
		f->top--;
}

uint32_t fair_count(const struct fair *f, uint32_t slot)
{
	return slot < f->nslots ? f->vms[slot].n : 0;
}

uint32_t fair_top(const struct fair *f, uint32_t *count)
{
	*count = f->top;
	return f->top ? (uint32_t)(f->bucket[f->top] - f->vms) : 0;
}

uint32_t fair_top_next(const struct fair *f, uint32_t slot)
{
	const struct fair_vm *next = slot < f->nslots ? f->vms[slot].bnext : NULL;

	return next ? (uint32_t)(next - f->vms) : 0;
}

struct fair_node *fair_oldest(const struct fair *f, uint32_t slot)
{
	const struct fair_vm *vm;

	if (slot >= f->nslots)
		return NULL;
	vm = &f->vms[slot];
	return vm->lru.next == &vm->lru ? NULL : vm->lru.next;
}

struct fair_node *fair_next(const struct fair *f, const struct fair_node *node)
{
	return node->next == &f->vms[node->slot].lru ? NULL : node->next;
}

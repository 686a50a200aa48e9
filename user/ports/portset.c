/* portset.c: the known ports' hash table (portset.h). */
#include "ports/portset.h"

#include <errno.h>
#include <stdlib.h>

#define PORTSET_MASK (PORTSET_SLOTS - 1)

int portset_init(struct portset *ps)
{
	ps->slot = calloc(PORTSET_SLOTS, sizeof(*ps->slot));
	ps->n = 0;
	return ps->slot ? 0 : -ENOMEM;
}

void portset_free(struct portset *ps)
{
	free(ps->slot);
	ps->slot = NULL;
	ps->n = 0;
}

static size_t portset_hash(int ifindex)
{
	return ((unsigned)ifindex * 2654435761u) & PORTSET_MASK;
}

struct portset_port *portset_find(struct portset *ps, int ifindex)
{
	for (size_t i = portset_hash(ifindex);; i = (i + 1) & PORTSET_MASK) {
		if (ps->slot[i].ifindex == ifindex)
			return &ps->slot[i];
		if (ps->slot[i].ifindex == 0)
			return NULL;
	}
}

struct portset_port *portset_insert(struct portset *ps, int ifindex, int bridge)
{
	size_t i = portset_hash(ifindex);

	while (ps->slot[i].ifindex)
		i = (i + 1) & PORTSET_MASK;
	ps->slot[i] = (struct portset_port){ .ifindex = ifindex, .bridge = bridge };
	ps->n++;
	return &ps->slot[i];
}

/* Empties p's slot and moves later entries of its probe run back, so every
 * entry stays reachable from its home slot without tombstones. */
void portset_remove(struct portset *ps, struct portset_port *p)
{
	size_t hole = (size_t)(p - ps->slot), i = hole;

	for (;;) {
		size_t home;

		i = (i + 1) & PORTSET_MASK;
		if (ps->slot[i].ifindex == 0)
			break;
		home = portset_hash(ps->slot[i].ifindex);
		/* Entry i may fill the hole unless its home lies cyclically
		 * in (hole, i]. */
		if (((i - home) & PORTSET_MASK) >= ((i - hole) & PORTSET_MASK)) {
			ps->slot[hole] = ps->slot[i];
			hole = i;
		}
	}
	ps->slot[hole] = (struct portset_port){ 0 };
	ps->n--;
}

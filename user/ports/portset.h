/* portset.h: the bridge ports imdsd knows, in a hash table keyed by
 * ifindex (linear probing, deletion by backward shift), so a link event
 * costs O(1) whatever the number of ports, and a resynchronisation
 * O(ports). */
#ifndef IMDS_PORTSET_H
#define IMDS_PORTSET_H
#include <stdbool.h>
#include <stddef.h>

#define PORTSET_MAX 4096 /* ports of all served bridges together */
/* Slots of the table: a power of two, at most half full. */
#define PORTSET_SLOTS (2 * PORTSET_MAX)

/* A known port.  `attached` is false when the attach failed: the port is
 * still known, so a later link event does not retry it (and a test that
 * detaches the ingress check on purpose is not undone).  ifindex 0 marks a
 * free slot. */
struct portset_port {
	int ifindex;
	int bridge; /* ifindex of the served bridge it is a port of */
	bool attached;
	unsigned seen; /* sync round that last listed the port */
};

struct portset {
	struct portset_port *slot; /* PORTSET_SLOTS */
	size_t n;
};

int portset_init(struct portset *ps); /* 0 or -ENOMEM */
void portset_free(struct portset *ps);
struct portset_port *portset_find(struct portset *ps, int ifindex);
/* Adds a port not in the set (the caller keeps n below PORTSET_MAX). */
struct portset_port *portset_insert(struct portset *ps, int ifindex, int bridge);
/* Removes p; a later entry may move into p's slot, so a caller walking
 * the slots looks at the same slot again. */
void portset_remove(struct portset *ps, struct portset_port *p);

#endif

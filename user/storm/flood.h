/* flood.h: --flood-vm.  One VM sends TCP SYNs to the metadata address at
 * a fixed rate while the others crawl (issue 4: the VM's excess must be
 * dropped by its packet budget without slowing the crawlers). */
#ifndef IMDS_STORM_FLOOD_H
#define IMDS_STORM_FLOOD_H
#include <netinet/in.h>
#include <pthread.h>
#include <stdint.h>

#include "storm/check.h"
#include "storm/storm.h"

struct storm_flood {
	pthread_t tid;
	struct storm_vm vm;
	int fd;
	struct in_addr dst;
	unsigned port, pps;
	pthread_barrier_t *start; /* the run's: the flood starts with the crawlers */
	uint64_t sent, send_errors;
	uint64_t t0, t1;
	int stop;
};

/* Opens VM o->flood_vm's raw socket (from the main thread, which returns
 * to its own namespace).  0, or a negative errno with the reason printed;
 * *out is set whenever it was allocated, for storm_flood_close. */
int storm_flood_open(const struct storm_opts *o, const struct vm_set *set, struct storm_flood **out);

/* Starts the flood's thread; it waits at start with the others. */
int storm_flood_start(struct storm_flood *f, pthread_barrier_t *start);

/* Stops the flood's thread and waits for it. */
void storm_flood_stop(struct storm_flood *f);

void storm_flood_close(struct storm_flood *f);

double storm_flood_seconds(const struct storm_flood *f);
double storm_flood_rate(const struct storm_flood *f);

#endif

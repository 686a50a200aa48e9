/* run.h: a storm from start to end: the VMs' namespaces, the clients
 * spread over the threads, the common start, the progress line while it
 * runs, and the result. */
#ifndef IMDS_STORM_RUN_H
#define IMDS_STORM_RUN_H

#include "storm/report.h"
#include "storm/storm.h"

/* Raises the open-file limit: every VM holds a namespace fd and sockets. */
void storm_raise_nofile(void);

/* Opens the namespaces of the VMs of run->set that take part (--count).
 * 0, or a negative errno with the namespace named on stderr. */
int storm_open_vms(struct storm_run *run);

/* Makes the clients and threads; a client per VM, or --conns of them in
 * steady mode, spread round-robin.  0 or -ENOMEM. */
int storm_make_clients(struct storm_run *run);

/* Runs the storm (and the flood, if open) and collects the result. */
int storm_execute(struct storm_run *run, struct storm_result *r);

/* Everything the run holds, the VM set included. */
void storm_free(struct storm_run *run);

#endif

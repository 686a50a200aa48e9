/* watch.h: the bridges imdsd serves and their ports, followed through
 * rtnetlink.  A bridge is served when its name is one of the configured
 * names or matches one of the patterns (lib/namelist.h), whenever it
 * appears; 169.254.169.254/32 goes on each served bridge, the data plane on
 * each of its ports, and what leaves (a port, a whole bridge) is detached
 * and forgotten in the store (docs/ports.md, "Several bridges"). */
#ifndef IMDS_WATCH_H
#define IMDS_WATCH_H
#include <stdint.h>

#include "lib/namelist.h"
#include "ports/dataplane.h"
#include "store/store.h"

struct watch_config {
	struct store *store;		 /* opened with STORE_PROGRAMS */
	const struct namelist *bridges;	 /* names and patterns served */
	uint32_t addr_be;		 /* put on every served bridge, /32 */
	enum dataplane_ingress ingress;	 /* for the log only: dataplane_set_ingress chose */
};

struct watch;

/* Subscribes to link events, then serves every bridge that matches now
 * (address, ports, bindings of ports that left meanwhile released) and
 * logs the configured names no bridge has yet.  0 or -errno (logged). */
int watch_start(struct watch **out, const struct watch_config *cfg);
/* Known ports the data plane could not be attached to (any thread may
 * ask: /healthz). */
unsigned watch_unattached(const struct watch *w);
/* The descriptor to poll for POLLIN. */
int watch_fd(const struct watch *w);
/* Handles the pending link events (resynchronising after lost ones). */
void watch_events(struct watch *w);
/* Detaches every port, removes the addresses it added, frees. */
void watch_stop(struct watch *w);

#endif

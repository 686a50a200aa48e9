/* counters.h: what imdsd's descriptor limits did since start
 * (docs/limits.md, "Descriptors"), kept for the metrics export: server.h
 * gives them out, the workers (server_int.h) keep them. */
#ifndef IMDS_SERVE_COUNTERS_H
#define IMDS_SERVE_COUNTERS_H
#include <stdint.h>

struct server_counters {
	uint64_t conns_open;	  /* connections held now */
	uint64_t refused_total;	  /* closed at accept: total cap reached, no VM held more */
	uint64_t evicted;	  /* idle connections closed to admit another VM's */
	uint64_t header_timeouts; /* requests not complete within the header timeout */
	uint64_t idle_timeouts;	  /* connections idle longer than the idle timeout */
	uint64_t gated;		  /* refusals that stopped the VM's SYNs in the data plane a while */
};

#endif

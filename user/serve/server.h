/* server.h: the io_uring HTTP server.  One ring and one SO_REUSEPORT
 * listener per worker thread; multishot accept and receive with a
 * provided-buffer ring; keep-alive, pipelining and idle timeouts. */
#ifndef IMDS_SERVER_H
#define IMDS_SERVER_H

#include "serve/config.h"
#include "serve/counters.h"
#include "store/store.h"

struct server;

/* Whether addr:port is free for this server: nobody listens there in this
 * network namespace (probe.c).  0, -EADDRINUSE with *owner the PID of a
 * process listening there (0 when not found), or -errno. */
int server_address_free(uint32_t addr_be, uint16_t port, int *owner);

/* Binds every worker's listener, then starts the threads.  0 or -errno. */
int server_start(struct server **out, const struct server_config *cfg);
/* Stops the workers, closes every connection, frees. */
void server_stop(struct server *srv);

/* The total connection cap in force: the configured one, or the one
 * derived from RLIMIT_NOFILE; never above what the descriptors allow. */
unsigned server_max_conns_total(const struct server *srv);

/* What the descriptor limits did since start, summed over the workers
 * (serve/counters.h).  Any thread may call it while the workers run. */
void server_counters(const struct server *srv, struct server_counters *out);

#endif

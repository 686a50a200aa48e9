/* config.h: what imdsd starts the server with (server.h), in a header of
 * its own so the server's parts (server_int.h) share it without depending
 * on the server's public API. */
#ifndef IMDS_SERVE_CONFIG_H
#define IMDS_SERVE_CONFIG_H
#include <stdbool.h>
#include <stdint.h>

#include "imds.h"

struct store;

struct server_config {
	struct store *store;
	uint32_t addr_be; /* listen address, network order */
	uint16_t port;	  /* host order */
	/* Also listen on [fd00:ec2::254]:port, with as many listeners, one per
	 * worker (docs/ipv6.md). */
	bool ipv6;
	int workers;
	int idle_timeout_ms;   /* between requests */
	int header_timeout_ms; /* from a request's first byte to its end */
	/* Connections held at once, all VMs together; 0: derived from
	 * RLIMIT_NOFILE (docs/limits.md, "Descriptors"). */
	unsigned max_conns_total;
	uint8_t token_key[IMDS_TOKEN_KEY_LEN];
};

#endif

/* admin.h: imdsd's admin thread: the metrics endpoint (Prometheus text at
 * /metrics, /healthz) on a loopback TCP address or a unix socket, never on
 * an address a VM reaches, and the per-VM event log (vmwatch.c), both off
 * the workers' path (docs/metrics.md). */
#ifndef IMDS_SERVE_ADMIN_H
#define IMDS_SERVE_ADMIN_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ADMIN_UNIX_PATH_MAX 108 /* sun_path */

/* Where the endpoint listens: a unix socket path, or an IPv4 loopback
 * address and port. */
struct admin_addr {
	bool is_unix;
	char path[ADMIN_UNIX_PATH_MAX];
	uint32_t addr_be;
	uint16_t port;
};

/* "127.0.0.1:9464" (any address of 127.0.0.0/8) or "unix:/run/imds.sock".
 * 0, or -1 with why in err: anything else, a non-loopback address first. */
int admin_parse_addr(const char *text, struct admin_addr *out, char *err, size_t errlen);

/* imdsd's part of /healthz: 0 when the data plane is attached, else -1
 * with why (one line) in `why`. */
typedef int (*admin_health_fn)(void *ctx, char *why, size_t len);

struct server;
struct store;

struct admin_config {
	const struct admin_addr *addr; /* NULL: no endpoint, the event log only */
	const struct server *srv;
	const struct store *store;
	admin_health_fn health;
	void *health_ctx;
};

struct admin;

/* Binds the endpoint (if any) and starts the thread.  0, or -errno with
 * why in err. */
int admin_start(struct admin **out, const struct admin_config *cfg, char *err, size_t errlen);
/* Stops the thread, closes the endpoint, removes the unix socket. */
void admin_stop(struct admin *a);

#endif

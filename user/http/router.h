/* router.h: from a parsed request and the VM's tree to a complete response.
 * Pure (the clock and the key come in through the context), so every rule of
 * the EC2 API and of each flavor is unit-tested without sockets. */
#ifndef IMDS_ROUTER_H
#define IMDS_ROUTER_H
#include "http/http.h"
#include "http/route_call.h" /* struct route_ctx, struct route_result */
#include "lib/outbuf.h"

/* Appends the whole response to `out`.  0 or -ENOMEM. */
int route_request(const struct route_ctx *ctx, const struct http_request *req, struct outbuf *out,
		  struct route_result *res);

#endif

/* flavor_route.h: request rules of the OpenStack, GCE and Azure flavors.
 * route_request() asks here first; what is not a flavor request is EC2's. */
#ifndef IMDS_FLAVOR_ROUTE_H
#define IMDS_FLAVOR_ROUTE_H
#include "http/router.h"

/* 1 when the request belongs to a flavor and its whole response has been
 * appended to `out` (res filled in), 0 when it is not a flavor request
 * (nothing written), -ENOMEM. */
int flavor_route(const struct route_ctx *ctx, const struct http_request *req, struct outbuf *out,
		 struct route_result *res);

#endif

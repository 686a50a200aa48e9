/* flavor_route.c: request rules of the other flavors (flavor_route.h).
 * No flavor is routed yet: every request is EC2's. */
#include "flavor_route.h"

int flavor_route(const struct route_ctx *ctx, const struct http_request *req, struct outbuf *out,
		 struct route_result *res)
{
	(void)ctx;
	(void)req;
	(void)out;
	(void)res;
	return 0;
}

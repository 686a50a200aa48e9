/* router.c: the one routing front.  A request's target is normalised once
 * (path.c); its first segment picks a flavor from one table, and what no
 * flavor owns is EC2's (route_ec2.c).  Both finish through route_finish,
 * so keep-alive and framing follow one rule.
 *
 * EC2 requests, nearly all of them, pay for the normalising, a compare of
 * the first segment's length with each row, and no allocation. */
#include "http/router.h"

#include <stddef.h>
#include <string.h>

#include "http/path.h"
#include "http/route_azure.h"
#include "http/route_ec2.h"
#include "http/route_gce.h"
#include "http/route_openstack.h"

#define ROUTE_FLAVOR(segment, route, style, claims_root, id) \
	{ segment, sizeof(segment) - 1, route, style, claims_root, id }

/* Each flavor: the first path segment it owns, its rules, how its server
 * answers, and whether it may take "/" (GCE: google-auth's root ping). */
static const struct fr_flavor route_flavors[] = {
	ROUTE_FLAVOR("openstack", os_route, &os_style, NULL, ROUTE_FLAVOR_OPENSTACK),
	ROUTE_FLAVOR("computeMetadata", gce_route, &gce_style, gce_claims_root, ROUTE_FLAVOR_GCE),
	ROUTE_FLAVOR("metadata", azure_route, &azure_style, NULL, ROUTE_FLAVOR_AZURE),
};

/* The flavor that owns c->path, or NULL for EC2. */
static const struct fr_flavor *route_flavor_of(const struct route_call *c)
{
	for (size_t i = 0; i < sizeof(route_flavors) / sizeof(route_flavors[0]); i++) {
		const struct fr_flavor *fl = &route_flavors[i];

		if (c->seg_len == fl->segment_len ? !memcmp(c->path + 1, fl->segment, fl->segment_len)
						   : c->seg_len == 0 && fl->claims_root && fl->claims_root(c))
			return fl;
	}
	return NULL;
}

static void route_set_path(struct route_call *c)
{
	const char *slash;

	c->path_len = path_normalize(c->req->url, c->req->url_len, c->path, sizeof(c->path));
	if (c->path_len < 0)
		return;
	slash = memchr(c->path + 1, '/', (size_t)c->path_len - 1);
	c->seg_len = slash ? (size_t)(slash - c->path - 1) : (size_t)c->path_len - 1;
}

int route_request(const struct route_ctx *ctx, const struct http_request *req, struct outbuf *out,
		  struct route_result *res)
{
	const struct fr_flavor *flavor;
	struct route_call c;

	*res = (struct route_result){ 0 };
	memset(&c, 0, offsetof(struct route_call, path));
	c.ctx = ctx;
	c.req = req;
	c.res = res;
	c.meta = ctx->tree ? tree_view_meta(ctx->tree) : NULL;
	if (!c.meta) {
		res->close = true;
		route_empty(&c, 500);
		return route_finish(&c, out);
	}
	route_set_path(&c);
	flavor = c.path_len < 0 ? NULL : route_flavor_of(&c);
	if (flavor) {
		res->flavor = flavor->id;
		return fr_route(&c, flavor, out);
	}
	res->flavor = ROUTE_FLAVOR_EC2;
	route_ec2(&c);
	return route_finish(&c, out);
}

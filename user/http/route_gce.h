/* route_gce.h: GCE's row of the front's flavor table. */
#ifndef IMDS_ROUTE_GCE_H
#define IMDS_ROUTE_GCE_H
#include <stdbool.h>

#include "http/route_flavor.h"

extern const struct fr_style gce_style;
int gce_route(struct fr_call *f);
bool gce_claims_root(const struct route_call *c);

#endif

/* route_openstack.h: OpenStack's row of the front's flavor table. */
#ifndef IMDS_ROUTE_OPENSTACK_H
#define IMDS_ROUTE_OPENSTACK_H
#include "http/route_flavor.h"

extern const struct fr_style os_style;
int os_route(struct fr_call *f);

#endif

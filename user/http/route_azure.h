/* route_azure.h: Azure's row of the front's flavor table. */
#ifndef IMDS_ROUTE_AZURE_H
#define IMDS_ROUTE_AZURE_H
#include "http/route_flavor.h"

extern const struct fr_style azure_style;
int azure_route(struct fr_call *f);

#endif

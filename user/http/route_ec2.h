/* route_ec2.h: the EC2 API's rules, for what the front (router.c) does not
 * give to a flavor. */
#ifndef IMDS_ROUTE_EC2_H
#define IMDS_ROUTE_EC2_H
#include "http/route_call.h"

/* Sets c's reply from c->path (or 400 when path_len < 0); c->meta must be
 * set. */
void route_ec2(struct route_call *c);

#endif

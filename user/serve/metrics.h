/* metrics.h: imdsd's Prometheus exposition (metrics.c, procmetrics.c),
 * for the admin endpoint (admin.c); not for use outside user/serve. */
#ifndef IMDS_SERVE_METRICS_H
#define IMDS_SERVE_METRICS_H
#include "lib/outbuf.h"

struct server;

/* Appends every metric (text format 0.0.4) to out.  0 or -ENOMEM. */
int metrics_render(const struct server *srv, struct outbuf *out);
/* The process_* metrics of this process.  0 or -ENOMEM. */
int metrics_process(struct outbuf *out);

#endif

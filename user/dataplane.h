/* dataplane.h: attaching the XDP program (loaded by store_open with
 * STORE_PROGRAMS) to bridge ports. */
#ifndef IMDS_DATAPLANE_H
#define IMDS_DATAPLANE_H
#include <stddef.h>

#include "store.h"

/* Attaches to `ifindex` (native mode if the driver has it, else generic).
 * An earlier imdsd's program on the port is replaced; any other program is
 * left in place and reported: -EBUSY with err naming it. */
int dataplane_attach(struct store *s, int ifindex, char *err, size_t errlen);
/* Detaches our program from `ifindex` if it is still the one attached. */
int dataplane_detach(struct store *s, int ifindex);

#endif

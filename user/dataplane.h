/* dataplane.h: attaching the XDP program (loaded by store_open with
 * STORE_PROGRAMS) to bridge ports. */
#ifndef IMDS_DATAPLANE_H
#define IMDS_DATAPLANE_H
#include <stddef.h>

#include "store.h"

/* Attaches to `ifindex` (native mode if the driver has it, else generic).
 * An earlier imdsd's program on the port is replaced; any other program is
 * left in place and reported: -EBUSY with err naming it.  On any failure
 * err says why. */
int dataplane_attach(struct store *s, int ifindex, char *err, size_t errlen);
/* How our program is attached to `ifindex`: *mode = "native", "generic" or
 * "offload".  0, or -ENOENT (*mode = "none") when ours is not attached. */
int dataplane_mode(struct store *s, int ifindex, const char **mode);
/* Detaches our program from `ifindex` if it is still the one attached.
 * 0, -ENOENT (ours is not attached) or -errno. */
int dataplane_detach(struct store *s, int ifindex);

#endif

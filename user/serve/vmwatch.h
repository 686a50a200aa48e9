/* vmwatch.h: the per-VM event log (docs/metrics.md, "Logs"): what the
 * data plane dropped of a VM and its port bound or lost, at most one line
 * per VM and kind of event a minute, run by the admin thread. */
#ifndef IMDS_SERVE_VMWATCH_H
#define IMDS_SERVE_VMWATCH_H
#include <stdint.h>

struct store;
struct vmwatch;

struct vmwatch *vmwatch_new(const struct store *store);
void vmwatch_free(struct vmwatch *w);
/* Looks over every loaded VM (about once a second) and logs what changed. */
void vmwatch_tick(struct vmwatch *w, uint64_t now_ms);

#endif

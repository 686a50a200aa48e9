/* dataplane.h: putting the data-plane programs (loaded by store_open with
 * STORE_PROGRAMS) on bridge ports: the check of what VMs send (TC ingress,
 * or XDP) and the hop limit at TC egress. */
#ifndef IMDS_DATAPLANE_H
#define IMDS_DATAPLANE_H
#include <stdbool.h>
#include <stddef.h>

#include "store/store.h"

enum dataplane_xdp_mode {
	DATAPLANE_XDP_AUTO,    /* generic on veth, native elsewhere */
	DATAPLANE_XDP_NATIVE,  /* native first, generic if the driver has none */
	DATAPLANE_XDP_GENERIC, /* generic first */
};
/* Which XDP mode later attaches try first with DATAPLANE_INGRESS_XDP
 * (process-wide). */
void dataplane_set_xdp_mode(enum dataplane_xdp_mode mode);

enum dataplane_ingress {
	DATAPLANE_INGRESS_TC,  /* imds_tc_ingress on the clsact ingress hook */
	DATAPLANE_INGRESS_XDP, /* imds_xdp */
};
/* Where later attaches put the check of what VMs send (process-wide;
 * DATAPLANE_INGRESS_TC until set). */
void dataplane_set_ingress(enum dataplane_ingress hook);

enum dataplane_tc_attach {
	DATAPLANE_TC_AUTO, /* TCX links where the kernel has them (6.6+), else cls_bpf */
	DATAPLANE_TC_TCX,  /* TCX links, pinned under <pin dir>/links (tcx.h) */
	DATAPLANE_TC_CLS,  /* cls_bpf filters on a clsact qdisc */
};
/* How later attaches put the TC programs on (process-wide; cls_bpf until
 * set).  AUTO asks the kernel once.  0, or -errno when TCX is asked for and
 * the kernel has none; err says why, or (0 with AUTO) that it fell back to
 * cls_bpf, and is "" otherwise. */
int dataplane_set_tc_attach(enum dataplane_tc_attach how, char *err, size_t errlen);
/* What was chosen: "tcx" or "cls". */
const char *dataplane_tc_attach_name(void);

/* Attaches to `ifindex`: the ingress check (TC ingress; or XDP in the mode
 * chosen above, falling back to the other) and TC egress, both or neither.
 * An earlier imdsd's programs on the port are replaced.  With XDP, another
 * XDP program is left in place and reported: -EBUSY with err naming it.
 * With TC ingress, another XDP program is left in place too and runs
 * first: 0 with err describing it (err is "" when there is nothing to
 * say).  On any failure err says why. */
int dataplane_attach(struct store *s, int ifindex, char *err, size_t errlen);
/* How our XDP program is attached to `ifindex`: *mode = "native",
 * "generic" or "offload".  0, or -ENOENT (*mode = "none") when ours is not
 * attached. */
int dataplane_mode(struct store *s, int ifindex, const char **mode);
/* Detaches each of our programs still attached to `ifindex`.  0, -ENOENT
 * (none of ours was attached) or -errno. */
int dataplane_detach(struct store *s, int ifindex);
/* Takes off every pinned TCX link of ours on a port `attached` refuses
 * (ports that left while no imdsd watched), and unpins those whose device
 * is gone: the number removed, or -errno. */
int dataplane_sweep(struct store *s, bool (*attached)(void *ctx, int ifindex), void *ctx);

#endif

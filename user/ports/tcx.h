/* tcx.h: the TC programs on a port as TCX links (Linux 6.6+), each pinned
 * under the store's pin directory so that it outlives a killed imdsd, as a
 * cls_bpf filter does.  Private to user/ports (dataplane.c). */
#ifndef IMDS_TCX_H
#define IMDS_TCX_H
#include <stdbool.h>
#include <stddef.h>

/* The directory under the pin directory that holds the links:
 * <pin_dir>/links/tcx-<ifindex>-ingress and ...-egress. */
#define TCX_LINK_DIR "links"

/* 0 when the kernel has TCX links, -EOPNOTSUPP when it has not, or
 * another -errno when it cannot be told (one BPF_PROG_QUERY on lo). */
int tcx_probe(void);
/* Puts prog_fd on the hook of `ifindex` (ingress or egress) through our
 * pinned link: a link pinned by an earlier imdsd for that port is updated
 * to prog_fd in place (same place in the hook's chain); otherwise a new
 * link is made, appended after the programs already there, and pinned.
 * 0, or -errno with err set. */
int tcx_attach(const char *pin_dir, int ifindex, bool ingress, int prog_fd, char *err, size_t errlen);
/* Detaches and unpins our link of that port and hook.  0, -ENOENT (none
 * pinned) or -errno. */
int tcx_detach(const char *pin_dir, int ifindex, bool ingress);
/* Detaches and unpins every pinned link whose port `keep` refuses, and
 * unpins those whose device is gone.  The number removed, or -errno. */
int tcx_sweep(const char *pin_dir, bool (*keep)(void *ctx, int ifindex), void *ctx);

#endif

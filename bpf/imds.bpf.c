/* imds.bpf.c: XDP on every port of the bridge.  Verifies the sender of each
 * packet to 169.254.169.254:80 and records verified SYNs for imdsd; passes
 * everything else untouched. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "imds.h"
#include "maps.h"
#include "parse.h"
#include "verify.h"

SEC("xdp")
int imds_xdp(struct xdp_md *ctx)
{
	struct imds_vm *vm = NULL;
	struct imds_pkt pkt;
	enum imds_reason reason;
	__u32 slot = 0;

	switch (parse_metadata_packet(ctx, &pkt)) {
	case PARSE_OTHER:
		return XDP_PASS;
	case PARSE_MALFORMED:
		count_reason(0, IMDS_DROP_MALFORMED);
		return XDP_DROP;
	default:
		break;
	}
	reason = verify_sender(ctx, &pkt, &slot, &vm);
	count_reason(slot, reason);
	if (reason != IMDS_PASS_VERIFIED)
		return XDP_DROP;
	if (pkt.tcp->syn && !pkt.tcp->ack && vm)
		record_connection(&pkt, slot, vm);
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";

/* bench_bpf.c: what the data plane's programs cost per packet, by kind of
 * packet (issue 15; docs/performance.md, "Where a connection's time
 * goes").  The programs run in the kernel with BPF_PROG_TEST_RUN over one
 * frame, `repeat` times in a row, and the kernel reports the mean time of
 * a run; the maps are private to this process (tests/unit/bpf_harness.h),
 * with one VM loaded as imds-loadmap would load it.  A storm's packets
 * meet the same code, so this splits the TC programs' share of a
 * connection by packet without the noise of a shared machine's storm.
 *
 *   bench_bpf [REPEAT [ROUNDS]]      (200000 runs, 5 rounds: the median)
 *
 * Needs root and BTF, like the packet tests. */
#include <stdio.h>
#include <stdlib.h>

#include "../unit/bpf_frames.h"
#include "../unit/bpf_harness.h"

#define BENCH_VM_MAC { 0x52, 0x54, 0x00, 0x00, 0x00, 0x02 }
#define BENCH_VM_IP 0x0a000002u	   /* 10.0.0.2 */
#define BENCH_OTHER_IP 0x0a000009u /* no VM's */
#define BENCH_HOST_MAC { 0x02, 0, 0, 0, 0, 1 }
#define BENCH_PORT 1 /* lo: test_run's skb leaves by it at egress */
#define BENCH_ROUNDS_MAX 31

struct bench_case {
	const char *what;
	int egress;
	struct bpf_frame_spec spec;
	int hop_mark; /* the reply's endpoint holds a hop mark (a token reply) */
};

static const struct bench_case bench_cases[] = {
	{ "ingress: SYN to the service (verified, recorded)", 0,
	  { .src_mac = BENCH_VM_MAC, .dst_mac = BENCH_HOST_MAC, .saddr = BENCH_VM_IP, .daddr = IMDS_IPV4_ADDR,
	    .ttl = 64, .protocol = 6, .sport = 40000, .dport = 80, .tcp_flags = BPF_TCP_SYN },
	  0 },
	{ "ingress: request segment (verified)", 0,
	  { .src_mac = BENCH_VM_MAC, .dst_mac = BENCH_HOST_MAC, .saddr = BENCH_VM_IP, .daddr = IMDS_IPV4_ADDR,
	    .ttl = 64, .protocol = 6, .sport = 40000, .dport = 80, .tcp_flags = BPF_TCP_ACK | BPF_TCP_PSH,
	    .payload = 200 },
	  0 },
	{ "ingress: VM to another host (source check)", 0,
	  { .src_mac = BENCH_VM_MAC, .dst_mac = BENCH_HOST_MAC, .saddr = BENCH_VM_IP, .daddr = BENCH_OTHER_IP,
	    .ttl = 64, .protocol = 6, .sport = 40000, .dport = 443, .tcp_flags = BPF_TCP_ACK, .payload = 200 },
	  0 },
	{ "egress: reply with data", 1,
	  { .src_mac = BENCH_HOST_MAC, .dst_mac = BENCH_VM_MAC, .saddr = IMDS_IPV4_ADDR, .daddr = BENCH_VM_IP,
	    .ttl = 64, .protocol = 6, .sport = 80, .dport = 40000, .tcp_flags = BPF_TCP_ACK | BPF_TCP_PSH,
	    .payload = 200 },
	  0 },
	{ "egress: token reply (hop mark, TTL rewritten)", 1,
	  { .src_mac = BENCH_HOST_MAC, .dst_mac = BENCH_VM_MAC, .saddr = IMDS_IPV4_ADDR, .daddr = BENCH_VM_IP,
	    .ttl = 64, .protocol = 6, .sport = 80, .dport = 40000, .tcp_flags = BPF_TCP_ACK | BPF_TCP_PSH,
	    .payload = 200 },
	  1 },
	{ "egress: reply without data (SYN-ACK, FIN, ACK)", 1,
	  { .src_mac = BENCH_HOST_MAC, .dst_mac = BENCH_VM_MAC, .saddr = IMDS_IPV4_ADDR, .daddr = BENCH_VM_IP,
	    .ttl = 64, .protocol = 6, .sport = 80, .dport = 40000, .tcp_flags = BPF_TCP_ACK | BPF_TCP_FIN },
	  0 },
	{ "egress: other traffic to the VM", 1,
	  { .src_mac = BENCH_HOST_MAC, .dst_mac = BENCH_VM_MAC, .saddr = BENCH_OTHER_IP, .daddr = BENCH_VM_IP,
	    .ttl = 64, .protocol = 6, .sport = 443, .dport = 40000, .tcp_flags = BPF_TCP_ACK, .payload = 200 },
	  0 },
};

/* One VM in slot 1, bound to BENCH_PORT, with a packet budget no storm
 * reaches (as gen-vms.py --bench sets it). */
static int bench_put_vm(void)
{
	struct imds_vm vm = {
		.state = IMDS_VM_ACTIVE,
		.generation = 1,
		.ifindex = BENCH_PORT,
		.ipv4 = htonl(BENCH_VM_IP),
		.mac = BENCH_VM_MAC,
		.hop_limit = 1,
		.rate_pps = IMDS_RATE_MAX,
		.rate_burst = IMDS_RATE_MAX,
		.binding = IMDS_BIND_PINNED,
	};

	return harness_put_vm(1, &vm);
}

/* A full packet budget again: a round's runs come faster than any rate
 * (generation 0 is no VM's, so the bucket starts full). */
static int bench_refill(void)
{
	struct imds_budget full = { 0 };
	uint32_t slot = 1;

	return bpf_map_update_elem(harness.budget_fd, &slot, &full, BPF_ANY) ? -errno : 0;
}

static int bench_mark(int on)
{
	struct imds_conn_key key = harness_key4(BENCH_VM_IP, 40000);
	struct imds_hop_mark mark = { .expires_ns = harness_now_ns() + 3600ull * 1000000000ull, .slot = 1,
				      .hop_limit = 1 };

	/* The gate as imdsd keeps it: open while a mark may be live, closed
	 * (the usual case) otherwise. */
	if (!on) {
		harness_set_hop_gate(0);
		return bpf_map_delete_elem(harness.marks_fd, &key) && errno != ENOENT ? -errno : 0;
	}
	harness_open_hop_gate(mark.expires_ns);
	return bpf_map_update_elem(harness.marks_fd, &key, &mark, BPF_ANY) ? -errno : 0;
}

/* The mean ns of one run over `repeat` runs, or -1. */
static double bench_once(const struct bench_case *c, const struct bpf_frame *f, int repeat)
{
	struct bpf_program *prog = c->egress ? harness.skel->progs.imds_tc_egress : harness.skel->progs.imds_tc_ingress;
	struct __sk_buff ctx = { .ingress_ifindex = BENCH_PORT };
	uint8_t out[BPF_FRAME_MAX];
	LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = f->b, .data_size_in = f->len, .ctx_in = &ctx,
		    .ctx_size_in = sizeof(ctx), .repeat = repeat, .data_out = out, .data_size_out = sizeof(out));

	if (bpf_prog_test_run_opts(bpf_program__fd(prog), &opts))
		return -1;
	if (opts.retval != HARNESS_TC_PASS)
		return -1; /* every case here passes; a drop means the setup is wrong */
	/* The path timed is the one named: a token reply leaves with TTL 1,
	 * every other frame with the TTL it came with. */
	if (opts.data_size_out < f->ip_off + 9 || out[f->ip_off + 8] != (c->hop_mark ? 1 : c->spec.ttl))
		return -1;
	return opts.duration;
}

static int bench_cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
	int repeat = argc > 1 ? atoi(argv[1]) : 200000; /* below the budget's burst (IMDS_RATE_MAX) */
	int rounds = argc > 2 ? atoi(argv[2]) : 5;

	if (repeat < 1 || repeat > IMDS_RATE_MAX / 2 || rounds < 1 || rounds > BENCH_ROUNDS_MAX) {
		fprintf(stderr, "usage: bench_bpf [REPEAT (1..%d) [ROUNDS (1..%d)]]\n", IMDS_RATE_MAX / 2, BENCH_ROUNDS_MAX);
		return 2;
	}
	if (harness_load()) {
		fprintf(stderr, "bench_bpf: %s\n", harness.why);
		return 1;
	}
	harness_reset();
	if (bench_put_vm()) {
		fprintf(stderr, "bench_bpf: cannot load the VM: %s\n", strerror(errno));
		return 1;
	}
	printf("%-50s %10s  (median of %d rounds of %d runs; min..max)\n", "packet", "ns/run", rounds, repeat);
	for (size_t i = 0; i < sizeof(bench_cases) / sizeof(bench_cases[0]); i++) {
		const struct bench_case *c = &bench_cases[i];
		double ns[BENCH_ROUNDS_MAX];
		struct bpf_frame f;

		bpf_frame_build(&c->spec, &f);
		for (int r = 0; r < rounds; r++) {
			/* The ingress SYN deletes the mark; each round sets it again. */
			if (bench_refill() < 0 || bench_mark(c->hop_mark) < 0 || (ns[r] = bench_once(c, &f, repeat)) < 0) {
				fprintf(stderr, "bench_bpf: %s: the run failed, the packet was dropped, or its TTL is not the one expected\n",
					c->what);
				return 1;
			}
		}
		qsort(ns, (size_t)rounds, sizeof(ns[0]), bench_cmp);
		printf("%-50s %10.0f  (%.0f..%.0f)\n", c->what, ns[rounds / 2], ns[0], ns[rounds - 1]);
	}
	harness_unload();
	return 0;
}

/* bench_route.c: imdsd's user-space work per keep-alive request, without
 * sockets (issue 15; docs/performance.md, "The request path's own code").
 *
 * VMS VMs, each with an EC2 tree shaped like a --bench VM's (gen-vms.py:
 * 57 paths) and its own keep-alive connection, and the crawl imds-storm
 * makes of each: every listing and leaf under /2021-03-23/, each a GET
 * with the headers imds-storm sends and the VM's IMDSv2 token.  The VMs
 * take turns request by request, as a worker's connections do in a
 * steady storm, so each request finds the caches as warm as a server's
 * with that many clients.  Each request goes through what a worker runs
 * for it in user space apart from the store and the limits:
 * http_feed (llhttp and its callbacks), route_request (the path, the EC2
 * rules, the token check against the connection's memo) and the response
 * written into an output buffer.
 *
 * It prints the thread CPU time per request of the fastest of ROUNDS
 * rounds of CRAWLS crawls of every VM each: the least disturbed by other
 * processes on a shared machine.  A benchmark, not a test: nothing is
 * asserted but that every answer is a 200.
 *
 *   bench_route [ROUNDS [CRAWLS [VMS]]]   (15 20 200)
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "http/http.h"
#include "http/router.h"
#include "http/token.h"
#include "imds.h"
#include "lib/outbuf.h"
#include "lib/tree.h"

#define BENCH_NOW 1700000000
#define BENCH_IID "i-0123456789abcdef0"
#define BENCH_MAC "52:54:00:77:00:5a/"

/* A --bench VM's leaves below ec2/meta-data/ (directories are implied). */
static const char *const bench_leaves[] = {
	"ami-id", "ami-launch-index", "ami-manifest-path", "block-device-mapping/ami",
	"block-device-mapping/ephemeral0", "block-device-mapping/root", "events/maintenance/history",
	"events/maintenance/scheduled", "hostname", "instance-action", "instance-id", "instance-life-cycle",
	"instance-type", "local-hostname", "local-ipv4", "mac",
	"network/interfaces/macs/" BENCH_MAC "device-number", "network/interfaces/macs/" BENCH_MAC "interface-id",
	"network/interfaces/macs/" BENCH_MAC "local-hostname", "network/interfaces/macs/" BENCH_MAC "local-ipv4s",
	"network/interfaces/macs/" BENCH_MAC "mac", "network/interfaces/macs/" BENCH_MAC "network-card-index",
	"network/interfaces/macs/" BENCH_MAC "security-group-ids", "network/interfaces/macs/" BENCH_MAC "security-groups",
	"network/interfaces/macs/" BENCH_MAC "subnet-id", "network/interfaces/macs/" BENCH_MAC "subnet-ipv4-cidr-block",
	"network/interfaces/macs/" BENCH_MAC "vpc-id", "network/interfaces/macs/" BENCH_MAC "vpc-ipv4-cidr-block",
	"network/interfaces/macs/" BENCH_MAC "vpc-ipv4-cidr-blocks", "placement/availability-zone",
	"placement/availability-zone-id", "placement/region", "profile", "public-keys/0/openssh-key",
	"reservation-id", "security-groups", "services/domain", "services/partition",
};

/* The crawl's requests, below /2021-03-23/: listings, then leaves. */
static const char *const bench_dirs[] = {
	"", "meta-data/", "meta-data/block-device-mapping/", "meta-data/events/", "meta-data/events/maintenance/",
	"meta-data/network/", "meta-data/network/interfaces/", "meta-data/network/interfaces/macs/",
	"meta-data/network/interfaces/macs/" BENCH_MAC, "meta-data/placement/", "meta-data/public-keys/",
	"meta-data/public-keys/0/", "meta-data/services/", "dynamic/instance-identity/",
};
static const char *const bench_other[] = { "user-data", "dynamic/instance-identity/document",
					   "dynamic/instance-identity/pkcs7", "dynamic/instance-identity/rsa2048" };

static const uint8_t bench_key[IMDS_TOKEN_KEY_LEN] = { 7, 1, 2, 3 };

#define BENCH_REQ_MAX 64 /* requests a crawl */

/* One VM: its tree, its connection, its crawl. */
struct bench_vm {
	void *img;
	struct tree_view view;
	struct route_ctx ctx;
	struct token_memo memo;
	struct http_conn conn;
	char *reqs;
	size_t off[BENCH_REQ_MAX + 1]; /* request i is reqs[off[i]..off[i+1]) */
};

struct bench_run {
	struct outbuf out;
	long answered, bad;
};

static int bench_add(struct tree_builder *b, const char *path)
{
	return tree_add_leaf(b, path, "bench-value-0123456789", 22, CT_TEXT);
}

static int bench_tree(struct bench_vm *vm, const char *iid)
{
	struct tree_meta meta = { .slot = 1, .last_modified = BENCH_NOW - 3600, .http_tokens = IMDS_TOKENS_OPTIONAL,
				  .hop_limit = 1 };
	struct tree_builder *b = tree_builder_new();
	char path[256];
	size_t len;
	int rc = b ? 0 : -1;

	snprintf(meta.instance_id, sizeof(meta.instance_id), "%s", iid);
	for (size_t i = 0; rc == 0 && i < sizeof(bench_leaves) / sizeof(bench_leaves[0]); i++) {
		snprintf(path, sizeof(path), "ec2/meta-data/%s", bench_leaves[i]);
		rc = bench_add(b, path);
	}
	for (size_t i = 0; rc == 0 && i < sizeof(bench_other) / sizeof(bench_other[0]); i++) {
		snprintf(path, sizeof(path), "ec2/%s", bench_other[i]);
		rc = bench_add(b, path);
	}
	if (rc == 0)
		rc = tree_build(b, &meta, &vm->img, &len);
	if (rc == 0)
		rc = tree_view_init(&vm->view, vm->img, len);
	tree_builder_free(b);
	return rc;
}

/* The crawl's requests, below /2021-03-23/: listings, leaves, the rest.
 * The number of requests, or -1. */
static int bench_requests(struct bench_vm *vm, const char *token)
{
	struct outbuf o = { 0 };
	char line[512];
	int n = 0;

	for (int pass = 0; pass < 3; pass++) {
		const char *const *list = pass == 0 ? bench_dirs : pass == 1 ? bench_leaves : bench_other;
		size_t count = pass == 0 ? sizeof(bench_dirs) / sizeof(bench_dirs[0])
			       : pass == 1 ? sizeof(bench_leaves) / sizeof(bench_leaves[0])
					   : sizeof(bench_other) / sizeof(bench_other[0]);

		for (size_t i = 0; i < count && n < BENCH_REQ_MAX; i++, n++) {
			int k = snprintf(line, sizeof(line),
					 "GET /2021-03-23/%s%s HTTP/1.1\r\nHost: 169.254.169.254\r\n"
					 "User-Agent: python-requests/2.28.1\r\nAccept-Encoding: gzip, deflate\r\n"
					 "Accept: */*\r\nConnection: keep-alive\r\nX-aws-ec2-metadata-token: %s\r\n\r\n",
					 pass == 1 ? "meta-data/" : "", list[i], token);

			vm->off[n] = o.len;
			if (outbuf_append(&o, line, (size_t)k))
				return -1;
		}
	}
	vm->off[n] = o.len;
	vm->reqs = o.data;
	return n;
}

static int bench_vm_init(struct bench_vm *vm, int i)
{
	char iid[32], token[TOKEN_TEXT_LEN + 1];

	snprintf(iid, sizeof(iid), "i-%017x", i);
	if (bench_tree(vm, iid) || token_mint(bench_key, iid, BENCH_NOW + 21600, token))
		return -1;
	vm->ctx = (struct route_ctx){ .tree = &vm->view, .token_key = bench_key, .now = BENCH_NOW, .token_memo = &vm->memo };
	http_conn_init(&vm->conn);
	return bench_requests(vm, token);
}

struct bench_feed {
	struct bench_run *run;
	struct bench_vm *vm;
};

static int bench_on_request(void *arg, const struct http_request *req)
{
	struct bench_feed *f = arg;
	struct route_result res;

	f->run->out.len = 0; /* the responses are not kept: a worker sends them */
	if (route_request(&f->vm->ctx, req, &f->run->out, &res) < 0)
		return -1;
	f->run->answered++;
	f->run->bad += res.status != 200;
	return 0;
}

static double bench_cpu_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

/* One crawl of every VM, the VMs taking turns request by request. */
static int bench_crawl(struct bench_vm *vms, int nvms, int per_crawl, struct bench_run *run)
{
	for (int j = 0; j < per_crawl; j++) {
		for (int v = 0; v < nvms; v++) {
			struct bench_feed f = { run, &vms[v] };
			size_t off = vms[v].off[j];

			if (http_feed(&vms[v].conn, vms[v].reqs + off, vms[v].off[j + 1] - off, bench_on_request, &f))
				return -1;
		}
	}
	return 0;
}

int main(int argc, char **argv)
{
	int rounds = argc > 1 ? atoi(argv[1]) : 15, crawls = argc > 2 ? atoi(argv[2]) : 20;
	int nvms = argc > 3 ? atoi(argv[3]) : 200, per_crawl = 0;
	struct bench_run run = { 0 };
	struct bench_vm *vms;
	double best = 0;

	if (rounds < 1 || crawls < 1 || nvms < 1) {
		fprintf(stderr, "usage: bench_route [ROUNDS [CRAWLS [VMS]]] (all positive)\n");
		return 2;
	}
	vms = calloc((size_t)nvms, sizeof(*vms));
	for (int v = 0; vms && v < nvms; v++) {
		per_crawl = bench_vm_init(&vms[v], v);
		if (per_crawl < 0)
			return 1;
	}
	if (!vms)
		return 1;
	for (int r = 0; r < rounds; r++) {
		double t0 = bench_cpu_ns(), ns;

		for (int i = 0; i < crawls; i++) {
			if (bench_crawl(vms, nvms, per_crawl, &run)) {
				fprintf(stderr, "bench_route: a request was refused\n");
				return 1;
			}
		}
		ns = (bench_cpu_ns() - t0) / ((double)crawls * nvms * per_crawl);
		if (r == 0 || ns < best)
			best = ns;
	}
	printf("bench_route: %d VMs, %d requests a crawl, %ld answered (%ld not 200); fastest of %d rounds of %d "
	       "crawls: %.1f ns of CPU per request\n",
	       nvms, per_crawl, run.answered, run.bad, rounds, crawls, best);
	for (int v = 0; v < nvms; v++) {
		free(vms[v].img);
		free(vms[v].reqs);
	}
	free(vms);
	outbuf_free(&run.out);
	return run.bad ? 1 : 0;
}

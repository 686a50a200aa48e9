/* imds-storm: a metadata storm.  N VMs (existing network namespaces, one
 * per VM, named PREFIX<I>[-SUFFIX]) boot at once and each crawls its
 * metadata the way cloud-init does; every answer is checked against the VM
 * description it was loaded from (the JSON given to imds-loadmap).  One
 * process drives every namespace: a thread setns()es into a VM's namespace
 * before socket(), and the socket stays there; each thread drives its
 * sockets through one io_uring.  Reports requests/s, the
 * storm's completion time, a log-linear latency histogram, errors by kind
 * and the server's CPU time per request.  Usage and output: docs/storm.md. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <liburing.h>
#include <llhttp.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "lib/cli.h"
#include "lib/outbuf.h"
#include "store/store.h"
#include "compile/vmconf.h"

#define STORM_BODY_MAX (1u << 20)  /* larger than any compiled leaf */
#define STORM_RECV_BUF 8192
#define STORM_WAIT_NS 2000000 /* the loop wakes at least this often, for the scan */
#define STORM_SCAN_NS 5000000ull  /* timeout/retry scan period: 5 ms */
#define STORM_BACKOFF_NS 10000000ull /* first retry after 10 ms, doubling */
#define STORM_BACKOFF_MAX_NS 1000000000ull
#define STORM_WRONG_DATA_SHOWN 10 /* details printed for the first few only */
#define STORM_TOKEN_MAX 256
#define STORM_MAX_PIDS 16 /* --server-pid: a master and its workers (nginx) */
#define STORM_FLOOD_PPS 10240 /* ten times the default packet budget */
#define STORM_FLOOD_TICK_NS 200000ull

/* --- options --- */

enum storm_mode { STORM_CONN, STORM_KEEPALIVE, STORM_STEADY };

struct storm_opts {
	const char *vms_file;
	size_t count; /* 0: every VM of the file */
	const char *netns_prefix;
	const char *suffix;
	enum storm_mode mode;
	unsigned threads;
	size_t conns; /* steady: connections, 0 = one per VM */
	double duration_s;
	struct in_addr address;
	unsigned port;
	const char *api_version;
	int token;
	unsigned retries;
	unsigned timeout_ms;
	long server_pid; /* the first of server_pids */
	long server_pids[STORM_MAX_PIDS];
	unsigned npids;
	int json;
	int quiet;
	int trace;
	const char *save_dir;
	const char *plot;
	const char *pin_dir;
	size_t flood_vm; /* 0: no flood */
	unsigned flood_pps;
};

enum {
	OPT_VMS,
	OPT_COUNT,
	OPT_NETNS_PREFIX,
	OPT_SUFFIX,
	OPT_MODE,
	OPT_THREADS,
	OPT_CONNS,
	OPT_DURATION,
	OPT_ADDRESS,
	OPT_PORT,
	OPT_API_VERSION,
	OPT_NO_TOKEN,
	OPT_RETRIES,
	OPT_TIMEOUT,
	OPT_SERVER_PID,
	OPT_JSON,
	OPT_QUIET,
	OPT_TRACE,
	OPT_SAVE,
	OPT_PLOT,
	OPT_PIN_DIR,
	OPT_FLOOD_VM,
	OPT_FLOOD_PPS,
};

static const struct cli_option storm_options[] = {
	[OPT_VMS] = { "vms", 'v', "FILE", "VM descriptions (the JSON given to imds-loadmap); required" },
	[OPT_COUNT] = { "count", 'n', "N", "use the first N VMs of FILE (default: all)" },
	[OPT_NETNS_PREFIX] = { "netns-prefix", 0, "P", "VM I's namespace is /run/netns/P<I>[-SFX] (default imds-vm)" },
	[OPT_SUFFIX] = { "suffix", 's', "SFX", "namespace suffix (the lab's; default none)" },
	[OPT_MODE] = { "mode", 'm', "MODE", "conn (connection per request), keepalive, steady (default conn)" },
	[OPT_THREADS] = { "threads", 't', "T", "worker threads (default: min(4, CPUs))" },
	[OPT_CONNS] = { "conns", 'c', "M", "steady: keep-alive connections (default: one per VM)" },
	[OPT_DURATION] = { "duration", 'd', "SEC", "steady: run time in seconds (default 10)" },
	[OPT_ADDRESS] = { "address", 0, "IPV4", "metadata address (default 169.254.169.254)" },
	[OPT_PORT] = { "port", 0, "PORT", "metadata port (default 80)" },
	[OPT_API_VERSION] = { "api-version", 0, "V", "dated version to crawl (default 2021-03-23)" },
	[OPT_NO_TOKEN] = { "no-token", 0, NULL, "IMDSv1 crawl: no token PUT (cloud-init off AWS)" },
	[OPT_RETRIES] = { "retries", 'r', "R", "retries of a failed connect/request (default 5)" },
	[OPT_TIMEOUT] = { "timeout", 0, "MS", "per-attempt timeout in ms (default 5000)" },
	[OPT_SERVER_PID] = { "server-pid", 'p', "PID[,PID]", "report the server's CPU per request and memory (summed)" },
	[OPT_JSON] = { "json", 'j', NULL, "print the report as JSON on stdout" },
	[OPT_QUIET] = { "quiet", 'q', NULL, "no progress line on stderr" },
	[OPT_TRACE] = { "trace", 0, NULL, "print every response (VM, method, path, status, bytes) on stderr" },
	[OPT_SAVE] = { "save", 0, "DIR", "write every 200 body to DIR/<VM IPv4>/<path> (listings as <path>/_index)" },
	[OPT_PLOT] = { "plot", 0, "FILE", "latency percentile plot (.svg or .png, gnuplot); data in FILE.dat" },
	[OPT_PIN_DIR] = { "pin-dir", 0, "DIR", "report the store's arena bytes per loaded VM (pin directory)" },
	[OPT_FLOOD_VM] = { "flood-vm", 0, "I", "VM I of FILE floods the metadata address with SYNs during the run" },
	[OPT_FLOOD_PPS] = { "flood-pps", 0, "R", "flood rate in packets/s (default 10240)" },
	{ 0 },
};

static const char storm_synopsis[] = "--vms FILE [--suffix SFX] [--mode conn|keepalive|steady] [OPTIONS]";

/* --- statistics --- */

/* Error kinds.  A connect failure is not an error by itself (it is counted
 * and retried); it becomes "gave-up" when the retries run out. */
enum storm_err { SE_RESET, SE_TIMEOUT, SE_STATUS, SE_BAD_HTTP, SE_WRONG_DATA, SE_GAVE_UP, SE_N };

static const char *const storm_err_names[SE_N] = {
	[SE_RESET] = "reset", [SE_TIMEOUT] = "timeout", [SE_STATUS] = "http-status",
	[SE_BAD_HTTP] = "bad-http", [SE_WRONG_DATA] = "wrong-data", [SE_GAVE_UP] = "gave-up",
};

/* HDR-style log-linear histogram of nanoseconds: values below 128 have a
 * bucket each; above, every power of two is cut into 64 buckets, so a
 * bucket's width is under 1/64 (1.6 %) of its values. */
#define HIST_BUCKETS (64 * 64 + 128)

struct storm_hist {
	uint64_t count[HIST_BUCKETS];
	uint64_t total;
	uint64_t max;
	uint64_t sum;
};

static unsigned storm_hist_index(uint64_t v)
{
	unsigned shift;

	if (v < 128)
		return (unsigned)v;
	shift = (unsigned)(63 - __builtin_clzll(v)) - 6;
	return shift * 64 + (unsigned)(v >> shift);
}

/* The highest value that falls into bucket idx. */
static uint64_t storm_hist_value(unsigned idx)
{
	unsigned shift;

	if (idx < 128)
		return idx;
	shift = idx / 64 - 1;
	return ((uint64_t)(idx - shift * 64 + 1) << shift) - 1;
}

static void storm_hist_add(struct storm_hist *h, uint64_t v)
{
	h->count[storm_hist_index(v)]++;
	h->total++;
	h->sum += v;
	if (v > h->max)
		h->max = v;
}

static void storm_hist_merge(struct storm_hist *into, const struct storm_hist *h)
{
	for (unsigned i = 0; i < HIST_BUCKETS; i++)
		into->count[i] += h->count[i];
	into->total += h->total;
	into->sum += h->sum;
	if (h->max > into->max)
		into->max = h->max;
}

/* Value at quantile q (0..1): the highest value of the bucket holding the
 * ceil(q * total)-th sample, capped by the exact maximum. */
static uint64_t storm_hist_quantile(const struct storm_hist *h, double q)
{
	uint64_t rank = (uint64_t)(q * (double)h->total + 0.999999), seen = 0;

	if (!h->total)
		return 0;
	if (rank < 1)
		rank = 1;
	for (unsigned i = 0; i < HIST_BUCKETS; i++) {
		seen += h->count[i];
		if (seen >= rank)
			return storm_hist_value(i) < h->max ? storm_hist_value(i) : h->max;
	}
	return h->max;
}

struct storm_stats {
	uint64_t requests; /* completed responses, read by the progress line */
	uint64_t errors[SE_N];
	uint64_t connect_failures;
	uint64_t retries;
	uint64_t reconnects; /* a kept-alive connection the server had closed */
	uint64_t crawls;     /* crawls completed */
	uint64_t clients_done;
	uint64_t last_done_ns; /* when this thread's last client finished */
};

/* A thread's counters are written by that thread only, and read by the
 * progress line: no locked add needed. */
static void storm_count(uint64_t *counter)
{
	__atomic_store_n(counter, __atomic_load_n(counter, __ATOMIC_RELAXED) + 1, __ATOMIC_RELAXED);
}

static uint64_t storm_read(const uint64_t *counter)
{
	return __atomic_load_n(counter, __ATOMIC_RELAXED);
}

static uint64_t storm_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* --- VMs, clients, threads --- */

struct storm_vm {
	const struct vm_desc *d;
	unsigned index; /* 1-based, names the namespace */
	int nsfd;
	char ipv4[INET_ADDRSTRLEN];
	char mac[18];
};

enum storm_method { STORM_GET, STORM_PUT };

/* One path of a client's crawl, made the first time the crawl reaches it
 * and kept for the run: the request bytes are rendered once, and the last
 * answer's verdict is remembered, so a steady client's next crawl, which
 * gets the same bytes back, costs a memcmp per response instead of a JSON
 * lookup, a listing scan or a document parse.  Checks stay as strict: a
 * body that differs from the remembered one is checked in full. */
struct storm_node {
	char *path; /* absolute, "/2021-03-23/meta-data/" */
	enum storm_method method;
	char *req; /* request line and headers up to the token header */
	size_t req_len;
	int memo_worth; /* 1: a check dearer than a memcmp (meta-data, listings, the document); -1: not; 0: not yet known */
	int memo_set, memo_status, memo_kind;
	struct outbuf memo_body;
	struct storm_node **kids; /* a listing: the requests its body queued */
	size_t nkids, kids_cap;
	struct storm_node *next; /* hash chain */
};

#define STORM_NODE_BUCKETS 128

/* CS_RECEIVING: the request is submitted with the recv for its answer */
enum storm_state { CS_IDLE, CS_CONNECTING, CS_RECEIVING, CS_RETRY_WAIT, CS_DONE };

struct storm_thread;

struct storm_client {
	struct storm_thread *th;
	struct storm_vm *vm;
	int fd;
	enum storm_state state;
	int reused; /* fd already carried a response: a close may be the server's idle close */
	uint32_t slot; /* index in its thread: names it in an io_uring operation */
	uint32_t gen;  /* attempt number: completions of an earlier attempt are stale */
	unsigned inflight; /* operations submitted and not yet completed, any attempt */
	char *rbuf;    /* a pending recv's buffer */
	struct storm_node **q;
	size_t qn, qcap, qpos;
	struct storm_node *nodes[STORM_NODE_BUCKETS];
	char token[STORM_TOKEN_MAX];
	char auth[STORM_TOKEN_MAX + 40]; /* the token header and the blank line */
	size_t auth_len;
	llhttp_t parser;
	struct outbuf body;
	struct outbuf out;
	size_t out_off;
	int complete, keep, status;
	size_t resp_bytes;
	uint64_t t_start, deadline, retry_at;
	unsigned attempts;
};

struct storm_run;

struct storm_thread {
	pthread_t tid;
	struct storm_run *run;
	struct io_uring ring;
	int ring_ok;
	void **dead; /* buffers a stale operation may still use, freed at the end */
	size_t ndead, dead_cap;
	int cur_nsfd; /* the namespace this thread is in, -1: the original */
	struct storm_client **clients;
	size_t n, active;
	struct storm_stats st;
	struct storm_hist hist;
};

/* --flood-vm: one VM sends TCP SYNs to the metadata address at a fixed
 * rate while the others crawl (issue 4: the VM's excess must be dropped by
 * its packet budget without slowing the crawlers). */
struct storm_flood {
	pthread_t tid;
	struct storm_vm vm;
	int fd;
	uint64_t sent, send_errors;
	uint64_t t0, t1;
	int stop;
};

struct storm_run {
	struct storm_opts o;
	struct storm_flood *flood;
	struct vm_set set;
	struct storm_vm *vms;
	size_t nvms;
	struct storm_client *clients;
	size_t nclients;
	struct storm_thread *threads;
	llhttp_settings_t settings;
	pthread_barrier_t start;
	struct sockaddr_in sa; /* the metadata address, what every connect gets */
	uint64_t t0, stop_at; /* stop_at: steady mode's end */
	uint64_t threads_done;
	uint64_t wrong_shown;
	uint64_t save_errors;
};

/* --- option parsing --- */

static int storm_parse_uint(const char *name, const char *s, unsigned long min, unsigned long max, unsigned long *out)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || end == s || *end || v < min || v > max || *s == '-') {
		fprintf(stderr, "imds-storm: --%s: '%s' is not a number in %lu..%lu\n", name, s, min, max);
		return -1;
	}
	*out = v;
	return 0;
}

static int storm_parse_mode(const char *s, enum storm_mode *mode)
{
	static const char *const names[] = { "conn", "keepalive", "steady" };

	for (unsigned i = 0; i < 3; i++) {
		if (!strcmp(s, names[i])) {
			*mode = (enum storm_mode)i;
			return 0;
		}
	}
	fprintf(stderr, "imds-storm: --mode: '%s' is not conn, keepalive or steady\n", s);
	return -1;
}

/* --server-pid PID[,PID...]: CPU and memory are summed over them. */
static int storm_parse_pids(const char *arg, struct storm_opts *o)
{
	char buf[256], *save = NULL;
	unsigned long v;

	snprintf(buf, sizeof(buf), "%s", arg);
	o->npids = 0;
	for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		if (o->npids == STORM_MAX_PIDS) {
			fprintf(stderr, "imds-storm: --server-pid: more than %d processes\n", STORM_MAX_PIDS);
			return -1;
		}
		if (storm_parse_uint("server-pid", tok, 1, 1ul << 30, &v))
			return -1;
		o->server_pids[o->npids++] = (long)v;
	}
	if (!o->npids) {
		fprintf(stderr, "imds-storm: --server-pid: '%s' names no process\n", arg);
		return -1;
	}
	o->server_pid = o->server_pids[0];
	return 0;
}

static int storm_on_option(void *ctx, int index, const char *arg)
{
	struct storm_opts *o = ctx;
	unsigned long v;
	char *end;

	switch (index) {
	case OPT_VMS: o->vms_file = arg; return 0;
	case OPT_NETNS_PREFIX: o->netns_prefix = arg; return 0;
	case OPT_SUFFIX: o->suffix = arg; return 0;
	case OPT_MODE: return storm_parse_mode(arg, &o->mode);
	case OPT_API_VERSION: o->api_version = arg; return 0;
	case OPT_NO_TOKEN: o->token = 0; return 0;
	case OPT_JSON: o->json = 1; return 0;
	case OPT_QUIET: o->quiet = 1; return 0;
	case OPT_TRACE: o->trace = 1; return 0;
	case OPT_SAVE: o->save_dir = arg; return 0;
	case OPT_PIN_DIR: o->pin_dir = arg; return 0;
	case OPT_PLOT:
		if (strlen(arg) > 4 && (!strcmp(arg + strlen(arg) - 4, ".svg") || !strcmp(arg + strlen(arg) - 4, ".png")) &&
		    !strpbrk(arg, "'\\\n"))
			return o->plot = arg, 0;
		fprintf(stderr, "imds-storm: --plot: '%s' must end in .svg or .png (and hold no quote)\n", arg);
		return -1;
	case OPT_ADDRESS:
		if (inet_pton(AF_INET, arg, &o->address) == 1)
			return 0;
		fprintf(stderr, "imds-storm: --address: '%s' is not an IPv4 address\n", arg);
		return -1;
	case OPT_DURATION:
		o->duration_s = strtod(arg, &end);
		if (end != arg && !*end && o->duration_s > 0 && o->duration_s <= 86400)
			return 0;
		fprintf(stderr, "imds-storm: --duration: '%s' is not a number of seconds in (0, 86400]\n", arg);
		return -1;
	}
	if (index == OPT_COUNT && !storm_parse_uint("count", arg, 1, 100000, &v))
		return o->count = v, 0;
	if (index == OPT_THREADS && !storm_parse_uint("threads", arg, 1, 256, &v))
		return o->threads = (unsigned)v, 0;
	if (index == OPT_CONNS && !storm_parse_uint("conns", arg, 1, 1000000, &v))
		return o->conns = v, 0;
	if (index == OPT_PORT && !storm_parse_uint("port", arg, 1, 65535, &v))
		return o->port = (unsigned)v, 0;
	if (index == OPT_RETRIES && !storm_parse_uint("retries", arg, 0, 100, &v))
		return o->retries = (unsigned)v, 0;
	if (index == OPT_TIMEOUT && !storm_parse_uint("timeout", arg, 1, 3600000, &v))
		return o->timeout_ms = (unsigned)v, 0;
	if (index == OPT_SERVER_PID)
		return storm_parse_pids(arg, o);
	if (index == OPT_FLOOD_VM && !storm_parse_uint("flood-vm", arg, 1, 100000, &v))
		return o->flood_vm = v, 0;
	if (index == OPT_FLOOD_PPS && !storm_parse_uint("flood-pps", arg, 1, 10000000, &v))
		return o->flood_pps = (unsigned)v, 0;
	return -1;
}

static int storm_parse_args(int argc, char **argv, struct storm_opts *o)
{
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	int ind;

	*o = (struct storm_opts){ .netns_prefix = "imds-vm", .suffix = "", .mode = STORM_CONN,
				  .duration_s = 10, .port = 80, .api_version = "2021-03-23", .token = 1,
				  .retries = 5, .timeout_ms = 5000, .flood_pps = STORM_FLOOD_PPS };
	o->threads = cpus > 0 && cpus < 4 ? (unsigned)cpus : 4;
	inet_pton(AF_INET, "169.254.169.254", &o->address);
	ind = cli_parse(argc, argv, storm_options, storm_synopsis, storm_on_option, o);
	if (ind < 0)
		return -1;
	if (ind != argc || !o->vms_file) {
		fprintf(stderr, "imds-storm: %s\n", ind != argc ? "unexpected argument" : "--vms FILE is required");
		cli_usage(stderr, argv[0], storm_synopsis, storm_options);
		return -1;
	}
	return 0;
}

/* --- the crawl: a queue of requests that grows as listings arrive --- */

static uint32_t storm_path_hash(const char *path, size_t len)
{
	uint32_t h = 2166136261u; /* FNV-1a */

	for (size_t i = 0; i < len; i++)
		h = (h ^ (unsigned char)path[i]) * 16777619u;
	return h;
}

/* The request bytes up to where the token header goes; a PUT is whole. */
static int storm_render_request(struct storm_node *nd, enum storm_mode mode)
{
	const char *conn = mode == STORM_CONN ? "close" : "keep-alive";
	int n;

	if (nd->method == STORM_PUT)
		n = asprintf(&nd->req,
			     "PUT %s HTTP/1.1\r\nHost: 169.254.169.254\r\nUser-Agent: Cloud-Init/22.4.2\r\n"
			     "Accept: */*\r\nConnection: %s\r\nX-aws-ec2-metadata-token-ttl-seconds: 21600\r\n"
			     "Content-Length: 0\r\n\r\n",
			     nd->path, conn);
	else
		n = asprintf(&nd->req,
			     "GET %s HTTP/1.1\r\nHost: 169.254.169.254\r\nUser-Agent: python-requests/2.28.1\r\n"
			     "Accept-Encoding: gzip, deflate\r\nAccept: */*\r\nConnection: %s\r\n",
			     nd->path, conn);
	if (n < 0) {
		nd->req = NULL;
		return -ENOMEM;
	}
	nd->req_len = (size_t)n;
	return 0;
}

/* The client's node for path (len bytes), made on first use. */
static struct storm_node *storm_node_get(struct storm_client *c, enum storm_method m, const char *path, size_t len,
					 enum storm_mode mode)
{
	struct storm_node **head = &c->nodes[storm_path_hash(path, len) % STORM_NODE_BUCKETS];
	struct storm_node *nd;

	for (nd = *head; nd; nd = nd->next)
		if (nd->method == m && !strncmp(nd->path, path, len) && !nd->path[len])
			return nd;
	nd = calloc(1, sizeof(*nd));
	if (!nd)
		return NULL;
	nd->method = m;
	nd->path = strndup(path, len);
	if (!nd->path || storm_render_request(nd, mode)) {
		free(nd->path);
		free(nd);
		return NULL;
	}
	nd->next = *head;
	*head = nd;
	return nd;
}

static void storm_nodes_free(struct storm_client *c)
{
	for (unsigned i = 0; i < STORM_NODE_BUCKETS; i++) {
		while (c->nodes[i]) {
			struct storm_node *nd = c->nodes[i];

			c->nodes[i] = nd->next;
			free(nd->path);
			free(nd->req);
			free(nd->kids);
			outbuf_free(&nd->memo_body);
			free(nd);
		}
	}
}

/* Inserts n requests at position at of the queue. */
static int storm_queue_insert(struct storm_client *c, size_t at, struct storm_node *const *nds, size_t n)
{
	if (c->qn + n > c->qcap) {
		size_t cap = c->qcap ? c->qcap : 64;
		struct storm_node **q;

		while (cap < c->qn + n)
			cap *= 2;
		q = realloc(c->q, cap * sizeof(*q));
		if (!q)
			return -ENOMEM;
		c->q = q;
		c->qcap = cap;
	}
	memmove(c->q + at + n, c->q + at, (c->qn - at) * sizeof(*c->q));
	memcpy(c->q + at, nds, n * sizeof(*c->q));
	c->qn += n;
	return 0;
}

static int storm_queue_path(struct storm_client *c, size_t at, enum storm_method m, const char *path,
			    enum storm_mode mode)
{
	struct storm_node *nd = storm_node_get(c, m, path, strlen(path), mode);

	return nd ? storm_queue_insert(c, at, &nd, 1) : -ENOMEM;
}

/* cloud-init's order: the token PUT (unless IMDSv1), the version probe,
 * the meta-data walk, user-data, then the identity documents.  A steady
 * client repeats the crawl with the token it already holds. */
static int storm_crawl_init(struct storm_client *c, const struct storm_opts *o, int with_token)
{
	static const char *const roots[] = { "meta-data/instance-id", "meta-data/", "user-data",
					     "dynamic/instance-identity" };
	char path[256];
	int rc = 0;

	c->qn = c->qpos = 0;
	if (with_token)
		rc = storm_queue_path(c, c->qn, STORM_PUT, "/latest/api/token", o->mode);
	for (unsigned i = 0; !rc && i < sizeof(roots) / sizeof(roots[0]); i++) {
		snprintf(path, sizeof(path), "/%s/%s", o->api_version, roots[i]);
		rc = storm_queue_path(c, c->qn, STORM_GET, path, o->mode);
	}
	return rc;
}

/* --- expected data --- */

/* The part of a path after "/VERSION/". */
static const char *storm_rel_path(const struct storm_opts *o, const char *path)
{
	size_t n = strlen(o->api_version);

	if (path[0] == '/' && !strncmp(path + 1, o->api_version, n) && path[n + 1] == '/')
		return path + n + 2;
	return path;
}

/* The operator's meta-data value at rel ("meta-data/a/b" or "meta-data/a/"),
 * or NULL. */
static const json_t *storm_meta_lookup(const struct vm_desc *d, const char *rel)
{
	const json_t *v = d->meta_data;
	char seg[256];

	rel += strlen("meta-data/");
	while (v && *rel) {
		size_t n = strcspn(rel, "/");

		if (!json_is_object(v) || n >= sizeof(seg))
			return NULL;
		memcpy(seg, rel, n);
		seg[n] = '\0';
		v = json_object_get(v, seg);
		rel += n + (rel[n] == '/');
	}
	return v;
}

static int storm_body_is(const struct outbuf *b, const void *want, size_t len)
{
	return b->len == len && (!len || !memcmp(b->data, want, len));
}

/* The body of a leaf given as a JSON value: strings as they are, arrays of
 * strings one per line.  1 = matches, 0 = differs, -1 = not checkable. */
static int storm_leaf_matches(const json_t *v, const struct outbuf *b)
{
	struct outbuf want = { 0 };
	size_t i;
	json_t *el;
	int same;

	if (json_is_string(v))
		return storm_body_is(b, json_string_value(v), json_string_length(v));
	if (!json_is_array(v))
		return -1; /* numbers: JSON's spelling is the compiler's business */
	json_array_foreach(v, i, el) {
		if (!json_is_string(el) || (i && outbuf_append(&want, "\n", 1)) ||
		    outbuf_append(&want, json_string_value(el), json_string_length(el))) {
			outbuf_free(&want);
			return -1;
		}
	}
	same = storm_body_is(b, want.data, want.len);
	outbuf_free(&want);
	return same;
}

/* Values the compiler derives from the VM's identity. */
static const char *storm_derived_leaf(const struct storm_vm *vm, const char *rel, int *wrong_mac)
{
	static const char macs[] = "meta-data/network/interfaces/macs/";
	unsigned long k;
	char *end;

	if (!strcmp(rel, "meta-data/instance-id"))
		return vm->d->instance_id;
	if (!strcmp(rel, "meta-data/local-ipv4"))
		return vm->ipv4;
	if (!strcmp(rel, "meta-data/mac"))
		return vm->mac;
	if (!strncmp(rel, "meta-data/public-keys/", 22)) {
		k = strtoul(rel + 22, &end, 10);
		if (end != rel + 22 && !strcmp(end, "/openssh-key") && k < vm->d->n_keys)
			return vm->d->keys[k].openssh_key;
		return NULL;
	}
	if (strncmp(rel, macs, sizeof(macs) - 1))
		return NULL;
	rel += sizeof(macs) - 1;
	if (strncmp(rel, vm->mac, 17) || rel[17] != '/') {
		*wrong_mac = 1;
		return NULL;
	}
	rel += 18;
	return !strcmp(rel, "mac") ? vm->mac : !strcmp(rel, "local-ipv4s") ? vm->ipv4 : NULL;
}

/* 0 = as loaded (or nothing to compare), 1 = wrong data. */
static int storm_check_leaf(const struct storm_vm *vm, const char *rel, const struct outbuf *b)
{
	const json_t *v = storm_meta_lookup(vm->d, rel);
	const char *want;
	int wrong_mac = 0;

	if (v && !json_is_object(v))
		return storm_leaf_matches(v, b) == 0;
	want = storm_derived_leaf(vm, rel, &wrong_mac);
	if (wrong_mac)
		return 1;
	return want && !storm_body_is(b, want, strlen(want));
}

/* Whether a listing has a line equal to name (or name + "/"). */
static int storm_listed(const struct outbuf *b, const char *name, int dir)
{
	size_t n = strlen(name), at = 0;

	while (at < b->len) {
		const char *line = b->data + at;
		const char *nl = memchr(line, '\n', b->len - at);
		size_t len = nl ? (size_t)(nl - line) : b->len - at;

		if (len == n + (size_t)dir && !memcmp(line, name, n) && (!dir || line[n] == '/'))
			return 1;
		at += len + 1;
	}
	return 0;
}

static int storm_check_keys(const struct storm_vm *vm, const struct outbuf *b)
{
	char line[512];

	for (size_t i = 0; i < vm->d->n_keys; i++) {
		snprintf(line, sizeof(line), "%zu=%s", i, vm->d->keys[i].name);
		if (!storm_listed(b, line, 0))
			return 1;
	}
	return 0;
}

/* A listing must hold every entry the VM was loaded with. */
static int storm_check_listing(const struct storm_vm *vm, const char *rel, const struct outbuf *b)
{
	static const char *const always[] = { "instance-id", "local-ipv4", "mac" };
	const json_t *obj, *val;
	const char *key;

	if (!strcmp(rel, "meta-data/public-keys/"))
		return storm_check_keys(vm, b);
	if (!strcmp(rel, "meta-data/")) {
		for (unsigned i = 0; i < 3; i++)
			if (!storm_listed(b, always[i], 0))
				return 1;
		if (vm->d->n_keys && !storm_listed(b, "public-keys", 1))
			return 1;
	}
	obj = storm_meta_lookup(vm->d, rel);
	if (!json_is_object(obj))
		return 0;
	json_object_foreach((json_t *)obj, key, val) {
		if (!storm_listed(b, key, json_is_object(val)))
			return 1;
	}
	return 0;
}

static int storm_check_document(const struct storm_vm *vm, const struct outbuf *b)
{
	json_t *doc = json_loadb(b->data ? b->data : "", b->len, 0, NULL);
	const char *id, *ip;
	int wrong;

	if (!doc)
		return 1;
	id = json_string_value(json_object_get(doc, "instanceId"));
	ip = json_string_value(json_object_get(doc, "privateIp"));
	wrong = !id || strcmp(id, vm->d->instance_id) || (ip && strcmp(ip, vm->ipv4));
	json_decref(doc);
	return wrong;
}

/* --- the walk: a listing's entries are fetched next, subdirectories first --- */

static int storm_add_kid(struct storm_node *dir, struct storm_node *kid)
{
	if (dir->nkids == dir->kids_cap) {
		size_t cap = dir->kids_cap ? dir->kids_cap * 2 : 16;
		struct storm_node **k = realloc(dir->kids, cap * sizeof(*k));

		if (!k)
			return -ENOMEM;
		dir->kids = k;
		dir->kids_cap = cap;
	}
	dir->kids[dir->nkids++] = kid;
	return 0;
}

static int storm_enqueue_line(struct storm_client *c, struct storm_node *dir, const char *dirpath, const char *line,
			      size_t len, int pass)
{
	int is_dir = len && line[len - 1] == '/';
	const char *eq = memchr(line, '=', len);
	struct storm_node *kid;
	char path[1024];
	int n;

	/* cloud-init never fetches IAM credentials */
	if ((len == 20 || len == 21) && !strncmp(line, "security-credentials", 20))
		return 0;
	if (eq) { /* public-keys/ lists "0=name": fetch 0/openssh-key */
		if (pass != 1)
			return 0;
		n = snprintf(path, sizeof(path), "%s%.*s/openssh-key", dirpath, (int)(eq - line), line);
	} else {
		if (is_dir != (pass == 0))
			return 0;
		n = snprintf(path, sizeof(path), "%s%.*s", dirpath, (int)len, line);
	}
	if (n < 0 || (size_t)n >= sizeof(path))
		return -ENAMETOOLONG; /* longer than any path the server accepts */
	kid = storm_node_get(c, STORM_GET, path, (size_t)n, c->th->run->o.mode);
	return kid ? storm_add_kid(dir, kid) : -ENOMEM;
}

/* The requests a listing's body asks for, in the order they are fetched:
 * next, subdirectories first; then queued after the listing's own place. */
static int storm_enqueue_listing(struct storm_client *c, struct storm_node *nd, const struct outbuf *b)
{
	const char *path = nd->path;
	char dir[1024];
	int rc = 0;

	nd->nkids = 0;
	/* "dynamic/instance-identity" is listed without a slash */
	snprintf(dir, sizeof(dir), "%s%s", path, path[strlen(path) - 1] == '/' ? "" : "/");
	for (int pass = 0; pass < 2 && !rc; pass++) {
		size_t off = 0;

		while (off < b->len && !rc) {
			const char *line = b->data + off;
			const char *nl = memchr(line, '\n', b->len - off);
			size_t len = nl ? (size_t)(nl - line) : b->len - off;

			if (len)
				rc = storm_enqueue_line(c, nd, dir, line, len, pass);
			off += len + 1;
		}
	}
	return rc ? rc : storm_queue_insert(c, c->qpos + 1, nd->kids, nd->nkids);
}

/* --- checking one response --- */

/* A body for a message: at most 100 bytes, escaped to one line. */
static void storm_escape(const struct outbuf *b, char *out, size_t size)
{
	size_t o = 0, i;

	for (i = 0; i < b->len && o + 8 < size && i < 100; i++) {
		unsigned char ch = (unsigned char)b->data[i];

		if (ch == '\n')
			o += (size_t)snprintf(out + o, size - o, "\\n");
		else if (ch < 0x20 || ch >= 0x7f || ch == '"' || ch == '\\')
			o += (size_t)snprintf(out + o, size - o, "\\x%02x", ch);
		else
			out[o++] = (char)ch;
	}
	snprintf(out + o, size - o, "%s", i < b->len ? "..." : "");
}

static void storm_show_wrong(struct storm_client *c, const char *path)
{
	struct storm_run *run = c->th->run;
	char body[512];

	if (__atomic_fetch_add(&run->wrong_shown, 1, __ATOMIC_RELAXED) >= STORM_WRONG_DATA_SHOWN)
		return;
	storm_escape(&c->body, body, sizeof(body));
	fprintf(stderr, "imds-storm: wrong data: vm%u (expected %s) %s: status %d, body \"%s\"\n", c->vm->index,
		c->vm->d->instance_id, path, c->status, body);
}

static int storm_check_get_full(struct storm_client *c, struct storm_node *nd)
{
	const struct storm_opts *o = &c->th->run->o;
	const char *path = nd->path;
	const char *rel = storm_rel_path(o, path);
	const struct vm_desc *d = c->vm->d;
	int is_listing = rel[strlen(rel) - 1] == '/' || !strcmp(rel, "dynamic/instance-identity");

	if (!strcmp(rel, "user-data")) {
		if (!d->user_data)
			return c->status == 404 ? 0 : SE_STATUS;
		if (c->status != 200)
			return SE_STATUS;
		return storm_body_is(&c->body, d->user_data, d->user_data_len) ? 0 : SE_WRONG_DATA;
	}
	if (c->status != 200)
		return SE_STATUS;
	if (is_listing) { /* walked even when wrong, as a client would */
		int wrong = !strncmp(rel, "meta-data/", 10) && storm_check_listing(c->vm, rel, &c->body);

		if (storm_enqueue_listing(c, nd, &c->body))
			return SE_BAD_HTTP;
		return wrong ? SE_WRONG_DATA : 0;
	}
	if (!strcmp(rel, "dynamic/instance-identity/document"))
		return storm_check_document(c->vm, &c->body) ? SE_WRONG_DATA : 0;
	if (!strncmp(rel, "meta-data/", 10))
		return storm_check_leaf(c->vm, rel, &c->body) ? SE_WRONG_DATA : 0;
	return 0;
}

/* The verdict on a GET's answer: the remembered one when the status and
 * body are byte for byte those of the last answer to this path (the check
 * is a function of path, status and body alone), else the full check. */
static int storm_check_get(struct storm_client *c, struct storm_node *nd)
{
	const char *rel;
	int kind;

	if (!nd->memo_worth) {
		rel = storm_rel_path(&c->th->run->o, nd->path);
		nd->memo_worth = !strncmp(rel, "meta-data/", 10) || !strcmp(rel, "dynamic/instance-identity") ||
				 !strcmp(rel, "dynamic/instance-identity/document") ? 1 : -1;
	}
	if (nd->memo_worth < 0)
		return storm_check_get_full(c, nd);
	if (nd->memo_set && nd->memo_status == c->status && storm_body_is(&c->body, nd->memo_body.data, nd->memo_body.len))
		return storm_queue_insert(c, c->qpos + 1, nd->kids, nd->nkids) ? SE_BAD_HTTP : nd->memo_kind;
	nd->memo_set = 0;
	nd->nkids = 0;
	kind = storm_check_get_full(c, nd);
	if (kind == SE_BAD_HTTP) /* the listing could not be queued: nothing to remember */
		return kind;
	outbuf_reset(&nd->memo_body);
	if (!outbuf_append(&nd->memo_body, c->body.data ? c->body.data : "", c->body.len)) {
		nd->memo_set = 1;
		nd->memo_status = c->status;
		nd->memo_kind = kind;
	}
	return kind;
}

/* --save: creates every parent directory of path. */
static int storm_mkdirs(char *path)
{
	for (char *p = strchr(path + 1, '/'); p; p = strchr(p + 1, '/')) {
		int rc;

		*p = '\0';
		rc = mkdir(path, 0755);
		*p = '/';
		if (rc && errno != EEXIST)
			return -errno;
	}
	return 0;
}

/* --save: the body of a 200 answer at DIR/<VM's IPv4>/<path>.  A listing
 * goes to <path>/_index, so a static file server given DIR/<IPv4> as its
 * root (nginx in scripts/bench.sh, with "try_files $uri $uri/_index")
 * serves the very bytes this server sent. */
/* A path that could leave DIR (a ".." segment from a listing) is not
 * saved: a listing comes from the server under test. */
static int storm_save_path_ok(const char *path)
{
	size_t n = strlen(path);

	return !strstr(path, "/../") && !strstr(path, "/./") && !(n >= 3 && !strcmp(path + n - 3, "/..")) &&
	       !(n >= 2 && !strcmp(path + n - 2, "/."));
}

static int storm_write_file(const char *file, const struct outbuf *b)
{
	int fd = open(file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	size_t off = 0;
	int err = 0;

	if (fd < 0)
		return -errno;
	while (!err && off < b->len) {
		ssize_t w = write(fd, b->data + off, b->len - off);

		if (w < 0)
			err = -errno;
		else
			off += (size_t)w;
	}
	if (close(fd) && !err)
		err = -errno;
	return err;
}

static void storm_save(struct storm_client *c, const char *path)
{
	struct storm_run *run = c->th->run;
	size_t n = strlen(path);
	int is_listing = path[n - 1] == '/' || !strcmp(storm_rel_path(&run->o, path), "dynamic/instance-identity");
	char file[1024];
	int len, err = -EINVAL;

	len = snprintf(file, sizeof(file), "%s/%s%s%s", run->o.save_dir, c->vm->ipv4, path,
		       !is_listing ? "" : path[n - 1] == '/' ? "_index" : "/_index");
	if (len < (int)sizeof(file) && storm_save_path_ok(path)) {
		err = storm_mkdirs(file);
		if (!err)
			err = storm_write_file(file, &c->body);
	}
	if (err && !__atomic_fetch_add(&run->save_errors, 1, __ATOMIC_RELAXED))
		fprintf(stderr, "imds-storm: --save: cannot write %s: %s\n", file, strerror(-err));
}

/* The token header later GETs carry, and the blank line that ends them. */
static void storm_set_token(struct storm_client *c, const char *token, size_t len)
{
	memcpy(c->token, token, len);
	c->token[len] = '\0';
	c->auth_len = (size_t)snprintf(c->auth, sizeof(c->auth), "X-aws-ec2-metadata-token: %s\r\n\r\n", c->token);
}

/* -1: fine; otherwise the error kind of the response. */
static int storm_check(struct storm_client *c)
{
	struct storm_node *r = c->q[c->qpos];
	int kind;

	if (c->th->run->o.trace)
		fprintf(stderr, "vm%u %s %s %d %zu\n", c->vm->index, r->method == STORM_PUT ? "PUT" : "GET", r->path,
			c->status, c->body.len);
	if (r->method == STORM_PUT) {
		if (c->status != 200 || !c->body.len || c->body.len >= sizeof(c->token))
			return SE_STATUS;
		storm_set_token(c, c->body.data, c->body.len);
		return -1;
	}
	if (c->th->run->o.save_dir && c->status == 200)
		storm_save(c, r->path);
	kind = storm_check_get(c, r);
	if (kind == SE_WRONG_DATA)
		storm_show_wrong(c, r->path);
	return kind ? kind : -1;
}

/* --- HTTP --- */

static int storm_on_body(llhttp_t *p, const char *at, size_t len)
{
	struct storm_client *c = p->data;

	if (c->body.len + len > STORM_BODY_MAX || outbuf_append(&c->body, at, len))
		return -1;
	return 0;
}

static int storm_on_complete(llhttp_t *p)
{
	struct storm_client *c = p->data;

	c->complete = 1;
	c->status = p->status_code;
	c->keep = llhttp_should_keep_alive(p);
	return HPE_PAUSED; /* one response per request: stop here */
}

/* The node's rendered bytes, then the token header (none before the PUT
 * or with --no-token) and the blank line. */
static int storm_build_request(struct storm_client *c)
{
	const struct storm_node *r = c->q[c->qpos];

	outbuf_reset(&c->out);
	c->out_off = 0;
	if (outbuf_append(&c->out, r->req, r->req_len))
		return -ENOMEM;
	if (r->method == STORM_PUT)
		return 0;
	return c->auth_len ? outbuf_append(&c->out, c->auth, c->auth_len) : outbuf_append(&c->out, "\r\n", 2);
}

/* --- connection handling --- */

/* Operations are tagged with the client's slot, the attempt and what they
 * are: a completion from an earlier attempt (after a timeout, a reconnect
 * or a failed send) is counted and dropped. */
enum storm_op { OP_CONNECT = 1, OP_SEND, OP_RECV };

#define STORM_GEN_MASK 0x3fffffffu

static uint64_t storm_op_tag(const struct storm_client *c, enum storm_op op)
{
	return (uint64_t)c->slot << 32 | (uint64_t)op << 30 | (c->gen & STORM_GEN_MASK);
}

/* An SQE of the thread's ring; submits what is queued when it is full. */
static struct io_uring_sqe *storm_sqe(struct storm_client *c, enum storm_op op)
{
	struct io_uring *ring = &c->th->ring;
	struct io_uring_sqe *sqe = io_uring_get_sqe(ring);

	if (!sqe) {
		io_uring_submit(ring);
		sqe = io_uring_get_sqe(ring);
	}
	if (sqe) {
		io_uring_sqe_set_data64(sqe, storm_op_tag(c, op));
		c->inflight++;
	}
	return sqe;
}

/* A buffer an abandoned operation may still read or write: kept until the
 * run ends (a rare case: a timeout, a reconnect). */
static void storm_bury(struct storm_thread *th, void *buf)
{
	if (!buf)
		return;
	if (th->ndead == th->dead_cap) {
		size_t cap = th->dead_cap ? th->dead_cap * 2 : 16;
		void **d = realloc(th->dead, cap * sizeof(*d));

		if (!d)
			return; /* leaked rather than freed under the kernel */
		th->dead = d;
		th->dead_cap = cap;
	}
	th->dead[th->ndead++] = buf;
}

/* An operation still pending holds the socket open: shutdown() ends it
 * (its completion is then stale), close() alone would not; its buffers
 * are set aside, not reused. */
static void storm_close(struct storm_client *c)
{
	if (c->fd >= 0) {
		if (c->inflight) {
			shutdown(c->fd, SHUT_RDWR);
			storm_bury(c->th, c->rbuf);
			storm_bury(c->th, c->out.data);
			c->rbuf = NULL;
			c->out = (struct outbuf){ 0 };
		}
		close(c->fd);
	}
	c->fd = -1;
	c->reused = 0;
	c->gen++;
}

/* The socket is created inside the VM's namespace: a network namespace is
 * per thread, and a socket keeps the namespace it was created in. */
static int storm_socket_in_vm(struct storm_client *c)
{
	struct storm_thread *th = c->th;
	int fd, one = 1;

	if (th->cur_nsfd != c->vm->nsfd) {
		if (setns(c->vm->nsfd, CLONE_NEWNET))
			return -errno;
		th->cur_nsfd = c->vm->nsfd;
	}
	fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return fd;
}

static void storm_fail(struct storm_client *c, int kind, int connect_failed);
static void storm_send(struct storm_client *c);
static int storm_recv(struct storm_client *c);

static void storm_connect(struct storm_client *c)
{
	int fd = storm_socket_in_vm(c);

	if (fd < 0) {
		storm_fail(c, -1, 1);
		return;
	}
	struct io_uring_sqe *sqe;

	c->fd = fd;
	c->state = CS_CONNECTING;
	sqe = storm_sqe(c, OP_CONNECT);
	if (!sqe) {
		storm_fail(c, -1, 1);
		return;
	}
	io_uring_prep_connect(sqe, fd, (const struct sockaddr *)&c->th->run->sa, sizeof(c->th->run->sa));
}

/* One attempt of the current request: on the kept-alive connection when
 * there is one, on a new one otherwise. */
static void storm_attempt(struct storm_client *c, uint64_t now)
{
	const struct storm_run *run = c->th->run;

	c->gen++;
	c->deadline = now + (uint64_t)run->o.timeout_ms * 1000000ull;
	outbuf_reset(&c->body);
	c->complete = c->keep = c->status = 0;
	c->resp_bytes = 0;
	llhttp_init(&c->parser, HTTP_RESPONSE, &run->settings);
	c->parser.data = c;
	if (storm_build_request(c)) {
		storm_fail(c, SE_BAD_HTTP, 0);
		return;
	}
	if (c->fd >= 0) {
		storm_send(c);
		return;
	}
	storm_connect(c);
}

static void storm_finish(struct storm_client *c)
{
	struct storm_thread *th = c->th;

	storm_close(c);
	c->state = CS_DONE;
	th->active--;
	__atomic_store_n(&th->st.last_done_ns, storm_now(), __ATOMIC_RELAXED);
	storm_count(&th->st.clients_done);
}

/* Next request of the crawl; at the crawl's end a steady client starts
 * over (keeping its token) until the run's time is up. */
static void storm_next(struct storm_client *c)
{
	struct storm_run *run = c->th->run;
	uint64_t now = storm_now();

	if (c->qpos >= c->qn) {
		storm_count(&c->th->st.crawls);
		if (run->o.mode != STORM_STEADY || now >= run->stop_at ||
		    storm_crawl_init(c, &run->o, run->o.token && !c->token[0])) {
			storm_finish(c);
			return;
		}
	}
	c->t_start = now;
	c->attempts = 0;
	storm_attempt(c, now);
}

/* kind: an error kind, or -1 for a connect failure (not an error unless
 * the retries run out).  Retries with a doubling back-off. */
static void storm_fail(struct storm_client *c, int kind, int connect_failed)
{
	struct storm_thread *th = c->th;
	uint64_t backoff;

	storm_close(c);
	if (connect_failed)
		storm_count(&th->st.connect_failures);
	else
		storm_count(&th->st.errors[kind]);
	if (kind == SE_WRONG_DATA || kind == SE_STATUS || c->attempts >= th->run->o.retries) {
		if (kind != SE_WRONG_DATA && kind != SE_STATUS)
			storm_count(&th->st.errors[SE_GAVE_UP]);
		storm_finish(c); /* the crawl is abandoned, as cloud-init's would be */
		return;
	}
	backoff = STORM_BACKOFF_NS << c->attempts;
	c->attempts++;
	storm_count(&th->st.retries);
	c->retry_at = storm_now() + (backoff < STORM_BACKOFF_MAX_NS ? backoff : STORM_BACKOFF_MAX_NS);
	c->state = CS_RETRY_WAIT;
}

static void storm_response_done(struct storm_client *c)
{
	struct storm_thread *th = c->th;
	int kind;

	storm_hist_add(&th->hist, storm_now() - c->t_start);
	storm_count(&th->st.requests);
	kind = storm_check(c);
	if (c->keep && th->run->o.mode != STORM_CONN) {
		c->reused = 1;
		c->state = CS_IDLE;
	} else {
		storm_close(c);
	}
	if (kind >= 0) {
		storm_count(&th->st.errors[kind]);
		if (kind != SE_WRONG_DATA && kind != SE_STATUS) {
			storm_finish(c);
			return;
		}
	}
	c->qpos++;
	storm_next(c);
}

/* The server closed a kept-alive connection before answering: a normal
 * race of keep-alive, so send again on a new connection without counting
 * an error (HTTP clients do the same for idempotent requests). */
static void storm_reconnect(struct storm_client *c)
{
	storm_count(&c->th->st.reconnects);
	storm_close(c);
	storm_attempt(c, storm_now());
}

/* The request and, at once, the recv for its answer: one submission
 * carries both, and the send runs first. */
static void storm_send(struct storm_client *c)
{
	struct io_uring_sqe *sqe = storm_sqe(c, OP_SEND);

	if (!sqe) {
		storm_fail(c, SE_RESET, 0);
		return;
	}
	io_uring_prep_send(sqe, c->fd, c->out.data + c->out_off, c->out.len - c->out_off, MSG_NOSIGNAL);
	if (c->state != CS_RECEIVING) {
		c->state = CS_RECEIVING;
		if (storm_recv(c))
			storm_fail(c, SE_RESET, 0);
	}
}

static int storm_recv(struct storm_client *c)
{
	struct io_uring_sqe *sqe;

	if (!c->rbuf && !(c->rbuf = malloc(STORM_RECV_BUF)))
		return -ENOMEM;
	sqe = storm_sqe(c, OP_RECV);
	if (!sqe)
		return -ENOMEM;
	io_uring_prep_recv(sqe, c->fd, c->rbuf, STORM_RECV_BUF, 0);
	return 0;
}

/* A send completed: all of it, part of it (the rest goes next), or an
 * error; on a kept-alive connection the server may have closed it. */
static void storm_sent(struct storm_client *c, int res)
{
	if (res < 0) {
		if (c->reused)
			storm_reconnect(c);
		else
			storm_fail(c, SE_RESET, 0);
		return;
	}
	c->out_off += (size_t)res;
	if (c->out_off < c->out.len)
		storm_send(c);
}

static void storm_on_eof(struct storm_client *c)
{
	if (!c->complete && llhttp_finish(&c->parser) == HPE_OK && c->complete)
		return; /* a body delimited by the close */
	if (c->complete)
		return;
	if (c->reused && !c->resp_bytes)
		storm_reconnect(c);
	else
		storm_fail(c, SE_RESET, 0);
}

static void storm_received(struct storm_client *c, int res)
{
	llhttp_errno_t e;

	if (res <= 0) {
		storm_on_eof(c);
		if (c->complete)
			storm_response_done(c);
		return;
	}
	c->resp_bytes += (size_t)res;
	e = llhttp_execute(&c->parser, c->rbuf, (size_t)res);
	if (e != HPE_OK && !(e == HPE_PAUSED && c->complete)) {
		storm_fail(c, SE_BAD_HTTP, 0);
		return;
	}
	if (c->complete)
		storm_response_done(c);
	else if (storm_recv(c))
		storm_fail(c, SE_RESET, 0);
}

static void storm_connected(struct storm_client *c, int res)
{
	if (res < 0) {
		storm_fail(c, -1, 1);
		return;
	}
	storm_send(c);
}

static void storm_on_completion(struct storm_thread *th, uint64_t tag, int res)
{
	struct storm_client *c = th->clients[tag >> 32];
	enum storm_op op = (enum storm_op)((tag >> 30) & 3);

	c->inflight--;
	if ((tag & STORM_GEN_MASK) != (c->gen & STORM_GEN_MASK))
		return; /* an earlier attempt's */
	if (op == OP_CONNECT && c->state == CS_CONNECTING)
		storm_connected(c, res);
	else if (op == OP_SEND && c->state == CS_RECEIVING)
		storm_sent(c, res);
	else if (op == OP_RECV && c->state == CS_RECEIVING)
		storm_received(c, res);
}

/* Timeouts and due retries; called every STORM_SCAN_NS. */
static void storm_scan(struct storm_thread *th, uint64_t now)
{
	for (size_t i = 0; i < th->n; i++) {
		struct storm_client *c = th->clients[i];

		if (c->state == CS_RETRY_WAIT && now >= c->retry_at)
			storm_attempt(c, now);
		else if (c->state == CS_CONNECTING && now > c->deadline)
			storm_fail(c, -1, 1);
		else if (c->state == CS_RECEIVING && now > c->deadline)
			storm_fail(c, SE_TIMEOUT, 0);
	}
}

/* Completions of the thread's ring; submissions of every request they
 * lead to go out together on the next wait. */
static void storm_reap(struct storm_thread *th)
{
	struct io_uring_cqe *cqe;
	unsigned head, n = 0;

	io_uring_for_each_cqe(&th->ring, head, cqe) {
		storm_on_completion(th, cqe->user_data, cqe->res);
		n++;
	}
	io_uring_cq_advance(&th->ring, n);
}

/* One ring per thread, made by the thread that submits to it (which
 * SINGLE_ISSUER and DEFER_TASKRUN ask); older kernels get a plain ring. */
static int storm_ring_init(struct storm_thread *th)
{
	struct io_uring_params p = { .flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN };
	unsigned entries = 64;
	int rc;

	while (entries < 2 * th->n + 16 && entries < 4096)
		entries *= 2;
	rc = io_uring_queue_init_params(entries, &th->ring, &p);
	if (rc == -EINVAL) {
		memset(&p, 0, sizeof(p));
		rc = io_uring_queue_init_params(entries, &th->ring, &p);
	}
	return rc;
}

static void *storm_thread_main(void *arg)
{
	struct storm_thread *th = arg;
	struct __kernel_timespec wait = { 0, (long long)STORM_WAIT_NS };
	uint64_t next_scan;
	int rc = storm_ring_init(th);

	pthread_barrier_wait(&th->run->start);
	if (rc) {
		fprintf(stderr, "imds-storm: io_uring: %s\n", strerror(-rc));
		exit(1); /* the other threads cannot be released cleanly */
	}
	th->ring_ok = 1;
	for (size_t i = 0; i < th->n; i++)
		storm_next(th->clients[i]);
	next_scan = storm_now() + STORM_SCAN_NS;
	while (th->active) {
		struct io_uring_cqe *cqe;
		uint64_t now;

		rc = io_uring_submit_and_wait_timeout(&th->ring, &cqe, 1, &wait, NULL);
		if (rc < 0 && rc != -ETIME && rc != -EINTR && rc != -EBUSY) {
			fprintf(stderr, "imds-storm: io_uring: %s\n", strerror(-rc));
			exit(1);
		}
		storm_reap(th);
		now = storm_now();
		if (now >= next_scan) {
			storm_scan(th, now);
			next_scan = now + STORM_SCAN_NS;
		}
	}
	io_uring_queue_exit(&th->ring); /* cancels what earlier attempts left */
	th->ring_ok = 0;
	__atomic_fetch_add(&th->run->threads_done, 1, __ATOMIC_RELEASE);
	return NULL;
}

/* --- setup --- */

static int storm_open_vms(struct storm_run *run)
{
	const struct storm_opts *o = &run->o;
	char path[512];

	run->nvms = o->count && o->count < run->set.n ? o->count : run->set.n;
	run->vms = calloc(run->nvms ? run->nvms : 1, sizeof(*run->vms));
	if (!run->vms)
		return -ENOMEM;
	for (size_t i = 0; i < run->nvms; i++)
		run->vms[i].nsfd = -1;
	for (size_t i = 0; i < run->nvms; i++) {
		struct storm_vm *vm = &run->vms[i];

		vm->d = &run->set.vms[i];
		vm->index = (unsigned)i + 1;
		inet_ntop(AF_INET, &vm->d->ipv4, vm->ipv4, sizeof(vm->ipv4));
		vmconf_format_mac(vm->d->mac, vm->mac);
		snprintf(path, sizeof(path), "/run/netns/%s%u%s%s", o->netns_prefix, vm->index, *o->suffix ? "-" : "",
			 o->suffix);
		vm->nsfd = open(path, O_RDONLY | O_CLOEXEC);
		if (vm->nsfd < 0) {
			int err = errno;

			fprintf(stderr, "imds-storm: %s (vm %s): %s\n", path, vm->d->json_path, strerror(err));
			return -err;
		}
	}
	return 0;
}

static int storm_make_clients(struct storm_run *run)
{
	const struct storm_opts *o = &run->o;

	run->sa = (struct sockaddr_in){ .sin_family = AF_INET, .sin_port = htons((uint16_t)o->port),
				       .sin_addr = o->address };
	run->nclients = o->mode == STORM_STEADY && o->conns ? o->conns : run->nvms;
	run->clients = calloc(run->nclients, sizeof(*run->clients));
	run->threads = calloc(o->threads, sizeof(*run->threads));
	if (!run->clients || !run->threads)
		return -ENOMEM;
	for (unsigned t = 0; t < o->threads; t++) {
		struct storm_thread *th = &run->threads[t];

		th->run = run;
		th->cur_nsfd = -1;
		th->clients = calloc(run->nclients / o->threads + 1, sizeof(*th->clients));
		if (!th->clients)
			return -ENOMEM;
	}
	for (size_t i = 0; i < run->nclients; i++) {
		struct storm_client *c = &run->clients[i];
		struct storm_thread *th = &run->threads[i % o->threads];

		c->th = th;
		c->vm = &run->vms[i % run->nvms];
		c->fd = -1;
		c->slot = (uint32_t)th->n;
		th->clients[th->n++] = c;
		th->active++;
		if (storm_crawl_init(c, o, o->token))
			return -ENOMEM;
	}
	return 0;
}

/* Every VM holds a namespace fd and up to a few sockets. */
static void storm_raise_nofile(void)
{
	struct rlimit rl;

	if (!getrlimit(RLIMIT_NOFILE, &rl) && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

static ssize_t storm_read_file(const char *path, char *buf, size_t size)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return -errno;
	n = read(fd, buf, size - 1);
	close(fd);
	if (n < 0)
		return -EIO;
	buf[n] = '\0';
	return n;
}

/* utime + stime of a process from /proc/PID/stat, in seconds (resolution:
 * one clock tick, 10 ms); -1 when unreadable. */
static double storm_cpu_ticks(long pid)
{
	char path[64], buf[4096];
	unsigned long long ut, st;
	const char *p;

	snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
	if (storm_read_file(path, buf, sizeof(buf)) <= 0)
		return -1;
	/* the command name (field 2) may hold spaces: start after its ')' */
	p = strrchr(buf, ')');
	if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
		return -1;
	return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* The same CPU time in nanoseconds: the sum of the first field of every
 * thread's /proc/PID/task/TID/schedstat.  A storm of 50 VMs costs the
 * server a few ticks, so tick resolution alone would say little. */
static double storm_cpu_schedstat(long pid)
{
	char path[128], buf[256];
	unsigned long long ns, sum = 0;
	struct dirent *de;
	DIR *dir;
	int ok = 1;

	snprintf(path, sizeof(path), "/proc/%ld/task", pid);
	dir = opendir(path);
	if (!dir)
		return -1;
	while (ok && (de = readdir(dir))) {
		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/proc/%ld/task/%.32s/schedstat", pid, de->d_name);
		ok = storm_read_file(path, buf, sizeof(buf)) > 0 && sscanf(buf, "%llu", &ns) == 1;
		sum += ok ? ns : 0;
	}
	closedir(dir);
	return ok ? (double)sum / 1e9 : -1;
}

/* --- the flood --- */

static uint16_t storm_csum_fold(uint32_t sum)
{
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)~sum;
}

/* A SYN from the VM's own address and a fresh source port: what the data
 * plane verifies and then charges to the VM's packet budget. */
static void storm_flood_syn(const struct storm_run *run, struct tcphdr *t, uint32_t n)
{
	const struct storm_flood *f = run->flood;
	uint32_t sum = 0;
	const uint16_t *w = (const uint16_t *)t;

	memset(t, 0, sizeof(*t));
	t->source = htons((uint16_t)(10000 + n % 50000));
	t->dest = htons((uint16_t)run->o.port);
	t->seq = htonl(n * 2654435761u);
	t->doff = sizeof(*t) / 4;
	t->syn = 1;
	t->window = htons(64240);
	/* pseudo-header: source, destination, protocol, TCP length */
	sum += (f->vm.d->ipv4 & 0xffff) + (f->vm.d->ipv4 >> 16);
	sum += (run->o.address.s_addr & 0xffff) + (run->o.address.s_addr >> 16);
	sum += htons(IPPROTO_TCP) + htons((uint16_t)sizeof(*t));
	for (size_t i = 0; i < sizeof(*t) / 2; i++)
		sum += w[i];
	t->check = storm_csum_fold(sum);
}

static void *storm_flood_main(void *arg)
{
	struct storm_run *run = arg;
	struct storm_flood *f = run->flood;
	struct sockaddr_in dst = { .sin_family = AF_INET, .sin_addr = run->o.address };
	struct timespec tick = { 0, (long)STORM_FLOOD_TICK_NS };
	struct tcphdr syn;

	pthread_barrier_wait(&run->start);
	f->t0 = storm_now();
	while (!__atomic_load_n(&f->stop, __ATOMIC_RELAXED)) {
		uint64_t due = (uint64_t)((double)(storm_now() - f->t0) * run->o.flood_pps / 1e9);

		while (f->sent + f->send_errors < due) {
			storm_flood_syn(run, &syn, (uint32_t)(f->sent + f->send_errors));
			if (sendto(f->fd, &syn, sizeof(syn), 0, (struct sockaddr *)&dst, sizeof(dst)) < 0)
				f->send_errors++;
			else
				f->sent++;
		}
		nanosleep(&tick, NULL);
	}
	f->t1 = storm_now();
	return NULL;
}

/* The raw socket is made in the flooding VM's namespace by the main thread,
 * which then returns to its own namespace. */
static int storm_flood_open(struct storm_run *run)
{
	const struct storm_opts *o = &run->o;
	struct storm_flood *f;
	char path[512];
	int self, err = 0;

	if (o->flood_vm > run->set.n) {
		fprintf(stderr, "imds-storm: --flood-vm %zu: %s has %zu VMs\n", o->flood_vm, o->vms_file, run->set.n);
		return -EINVAL;
	}
	f = run->flood = calloc(1, sizeof(*f));
	if (!f)
		return -ENOMEM;
	f->fd = -1;
	f->vm.d = &run->set.vms[o->flood_vm - 1];
	f->vm.index = (unsigned)o->flood_vm;
	inet_ntop(AF_INET, &f->vm.d->ipv4, f->vm.ipv4, sizeof(f->vm.ipv4));
	snprintf(path, sizeof(path), "/run/netns/%s%zu%s%s", o->netns_prefix, o->flood_vm, *o->suffix ? "-" : "",
		 o->suffix);
	f->vm.nsfd = open(path, O_RDONLY | O_CLOEXEC);
	self = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
	if (f->vm.nsfd < 0 || self < 0 || setns(f->vm.nsfd, CLONE_NEWNET)) {
		err = errno;
		fprintf(stderr, "imds-storm: --flood-vm: %s: %s\n", path, strerror(err));
	} else {
		f->fd = socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_TCP);
		err = f->fd < 0 ? errno : 0;
		if (err)
			fprintf(stderr, "imds-storm: --flood-vm: raw socket in %s: %s\n", path, strerror(err));
		if (setns(self, CLONE_NEWNET)) {
			err = errno;
			fprintf(stderr, "imds-storm: cannot return to the original namespace: %s\n", strerror(err));
		}
	}
	if (self >= 0)
		close(self);
	return -err;
}

static void storm_flood_close(struct storm_run *run)
{
	if (!run->flood)
		return;
	if (run->flood->fd >= 0)
		close(run->flood->fd);
	if (run->flood->vm.nsfd >= 0)
		close(run->flood->vm.nsfd);
	free(run->flood);
	run->flood = NULL;
}

/* --- memory of the server and the store --- */

struct storm_memory {
	long rss_kb, rss_anon_kb, rss_file_kb, rss_shmem_kb; /* -1: unknown */
	long loaded_vms;
	double arena_bytes; /* -1: unknown */
};

static long storm_status_kb(const char *status, const char *field)
{
	const char *p = strstr(status, field);
	long kb;

	return p && sscanf(p + strlen(field), " %ld", &kb) == 1 ? kb : -1;
}

/* The server's resident memory, and the arena bytes the store's trees take
 * per loaded VM.  imdsd's mapping of the arena (a BPF array, allocated
 * whole when the map is made) is resident in full and counts as RssFile. */
static void storm_read_memory(const struct storm_run *run, struct storm_memory *m)
{
	char path[64], buf[8192], err[256];
	struct store st;

	*m = (struct storm_memory){ -1, -1, -1, -1, -1, -1 };
	if (run->o.npids)
		m->rss_kb = m->rss_anon_kb = m->rss_file_kb = m->rss_shmem_kb = 0;
	for (unsigned i = 0; i < run->o.npids; i++) {
		snprintf(path, sizeof(path), "/proc/%ld/status", run->o.server_pids[i]);
		if (storm_read_file(path, buf, sizeof(buf)) <= 0 || storm_status_kb(buf, "VmRSS:") < 0) {
			m->rss_kb = m->rss_anon_kb = m->rss_file_kb = m->rss_shmem_kb = -1;
			break;
		}
		m->rss_kb += storm_status_kb(buf, "VmRSS:");
		m->rss_anon_kb += storm_status_kb(buf, "RssAnon:");
		m->rss_file_kb += storm_status_kb(buf, "RssFile:");
		m->rss_shmem_kb += storm_status_kb(buf, "RssShmem:");
	}
	if (!run->o.pin_dir)
		return;
	if (store_open(&st, run->o.pin_dir, 0, err, sizeof(err))) {
		fprintf(stderr, "imds-storm: --pin-dir: %s\n", err);
		return;
	}
	m->loaded_vms = IMDS_MAX_VMS - 1 - store_free_slots(&st);
	m->arena_bytes = (double)arena_used_bytes(&st.arena);
	store_close(&st);
}

/* This process's user+system time: the load generator's share of the
 * machine, next to the server's. */
static double storm_self_cpu(void)
{
	struct rusage ru;

	if (getrusage(RUSAGE_SELF, &ru))
		return 0;
	return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) + (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

static double storm_cpu_sum(const struct storm_run *run, double (*cpu)(long))
{
	double sum = 0;

	for (unsigned i = 0; i < run->o.npids; i++) {
		double one = cpu(run->o.server_pids[i]);

		if (one < 0)
			return -1;
		sum += one;
	}
	return sum;
}

/* --- reporting --- */

static void storm_sum(const struct storm_run *run, struct storm_stats *s, struct storm_hist *h)
{
	memset(s, 0, sizeof(*s));
	for (unsigned t = 0; t < run->o.threads; t++) {
		const struct storm_stats *ts = &run->threads[t].st;

		s->requests += storm_read(&ts->requests);
		for (int k = 0; k < SE_N; k++)
			s->errors[k] += storm_read(&ts->errors[k]);
		s->connect_failures += storm_read(&ts->connect_failures);
		s->retries += storm_read(&ts->retries);
		s->reconnects += storm_read(&ts->reconnects);
		s->crawls += storm_read(&ts->crawls);
		s->clients_done += storm_read(&ts->clients_done);
		if (storm_read(&ts->last_done_ns) > s->last_done_ns)
			s->last_done_ns = storm_read(&ts->last_done_ns);
		if (h)
			storm_hist_merge(h, &run->threads[t].hist);
	}
}

static uint64_t storm_error_total(const struct storm_stats *s)
{
	uint64_t n = 0;

	for (int k = 0; k < SE_N; k++)
		n += s->errors[k];
	return n;
}

static void storm_progress(const struct storm_run *run, uint64_t *last_requests)
{
	struct storm_stats s;
	double t = (double)(storm_now() - run->t0) / 1e9;

	storm_sum(run, &s, NULL);
	fprintf(stderr, "imds-storm: %6.1f s  requests %" PRIu64 " (%" PRIu64 "/s)  errors %" PRIu64
		"  connect-failures %" PRIu64 "  clients done %" PRIu64 "/%zu\n",
		t, s.requests, s.requests - *last_requests, storm_error_total(&s), s.connect_failures,
		s.clients_done, run->nclients);
	*last_requests = s.requests;
}

struct storm_result {
	struct storm_stats s;
	struct storm_hist h;
	double seconds;   /* completion time: start to the last client's end */
	double cpu_s;     /* server CPU over the run, -1 unknown */
	double client_cpu_s; /* this process's own CPU over the run */
	struct storm_memory mem;
};

static const char *const storm_mode_names[] = { "conn", "keepalive", "steady" };

static const double storm_quantiles[] = { 0.5, 0.9, 0.99, 0.999 };
static const char *const storm_quantile_names[] = { "p50", "p90", "p99", "p99.9" };

static double storm_flood_seconds(const struct storm_flood *f)
{
	return f->t1 > f->t0 ? (double)(f->t1 - f->t0) / 1e9 : 0.0;
}

static double storm_flood_rate(const struct storm_flood *f)
{
	return storm_flood_seconds(f) > 0 ? (double)f->sent / storm_flood_seconds(f) : 0.0;
}

static void storm_print_text(const struct storm_run *run, const struct storm_result *r)
{
	const struct storm_stats *s = &r->s;

	printf("imds-storm: mode %s, %zu VMs, %zu clients, %u threads\n", storm_mode_names[run->o.mode], run->nvms,
	       run->nclients, run->o.threads);
	printf("requests          %" PRIu64 " in %.3f s: %.0f requests/s, %" PRIu64 " crawls (%.1f requests each)\n",
	       s->requests, r->seconds, r->seconds > 0 ? (double)s->requests / r->seconds : 0.0, s->crawls,
	       s->crawls ? (double)s->requests / (double)s->crawls : 0.0);
	printf("completion        %.3f s\n", r->seconds);
	printf("latency (us)     ");
	for (unsigned i = 0; i < 4; i++)
		printf(" %s %.1f", storm_quantile_names[i], (double)storm_hist_quantile(&r->h, storm_quantiles[i]) / 1e3);
	printf(" max %.1f mean %.1f\n", (double)r->h.max / 1e3,
	       r->h.total ? (double)r->h.sum / (double)r->h.total / 1e3 : 0.0);
	printf("errors            %" PRIu64, storm_error_total(s));
	for (int k = 0; k < SE_N; k++)
		printf("%s%s %" PRIu64, k ? ", " : " (", storm_err_names[k], s->errors[k]);
	printf(")\nconnect failures  %" PRIu64 ", retries %" PRIu64 ", keep-alive reconnects %" PRIu64 "\n",
	       s->connect_failures, s->retries, s->reconnects);
	if (run->o.server_pid && r->cpu_s >= 0)
		printf("server cpu        %.3f s (pid %ld): %.1f us/request\n", r->cpu_s, run->o.server_pid,
		       s->requests ? r->cpu_s * 1e6 / (double)s->requests : 0.0);
	printf("client cpu        %.3f s: %.1f us/request\n", r->client_cpu_s,
	       s->requests ? r->client_cpu_s * 1e6 / (double)s->requests : 0.0);
	if (r->mem.rss_kb >= 0)
		printf("server memory     rss %ld KiB (anon %ld, file and bpf maps %ld, shmem %ld)\n", r->mem.rss_kb,
		       r->mem.rss_anon_kb, r->mem.rss_file_kb, r->mem.rss_shmem_kb);
	if (r->mem.loaded_vms > 0)
		printf("store arena       %.0f bytes for %ld VMs: %.0f bytes per VM\n", r->mem.arena_bytes,
		       r->mem.loaded_vms, r->mem.arena_bytes / (double)r->mem.loaded_vms);
	if (run->flood)
		printf("flood             vm%u sent %" PRIu64 " SYNs in %.3f s (%.0f/s, target %u/s), %" PRIu64
		       " send errors\n",
		       run->flood->vm.index, run->flood->sent, storm_flood_seconds(run->flood),
		       storm_flood_rate(run->flood), run->o.flood_pps, run->flood->send_errors);
}

static json_t *storm_result_json(const struct storm_run *run, const struct storm_result *r)
{
	const struct storm_stats *s = &r->s;
	json_t *lat = json_object(), *errs = json_object();
	json_t *root;

	for (unsigned i = 0; i < 4; i++)
		json_object_set_new(lat, storm_quantile_names[i],
				    json_real((double)storm_hist_quantile(&r->h, storm_quantiles[i]) / 1e3));
	json_object_set_new(lat, "max", json_real((double)r->h.max / 1e3));
	json_object_set_new(lat, "mean", json_real(r->h.total ? (double)r->h.sum / (double)r->h.total / 1e3 : 0.0));
	for (int k = 0; k < SE_N; k++)
		json_object_set_new(errs, storm_err_names[k], json_integer((json_int_t)s->errors[k]));
	json_object_set_new(errs, "total", json_integer((json_int_t)storm_error_total(s)));
	root = json_pack("{s:s, s:I, s:I, s:I, s:I, s:I, s:f, s:f, s:o, s:o, s:I, s:I, s:I}", "mode",
			 storm_mode_names[run->o.mode], "vms", (json_int_t)run->nvms, "clients",
			 (json_int_t)run->nclients, "threads", (json_int_t)run->o.threads, "requests",
			 (json_int_t)s->requests, "crawls", (json_int_t)s->crawls, "completion_s", r->seconds,
			 "requests_per_s", r->seconds > 0 ? (double)s->requests / r->seconds : 0.0, "latency_us", lat,
			 "errors", errs, "connect_failures", (json_int_t)s->connect_failures, "retries",
			 (json_int_t)s->retries, "reconnects", (json_int_t)s->reconnects);
	if (root && run->o.server_pid && r->cpu_s >= 0)
		json_object_set_new(root, "server",
				    json_pack("{s:I, s:f, s:f}", "pid", (json_int_t)run->o.server_pid, "cpu_s", r->cpu_s,
					      "cpu_us_per_request",
					      s->requests ? r->cpu_s * 1e6 / (double)s->requests : 0.0));
	if (root)
		json_object_set_new(root, "client",
				    json_pack("{s:f, s:f}", "cpu_s", r->client_cpu_s, "cpu_us_per_request",
					      s->requests ? r->client_cpu_s * 1e6 / (double)s->requests : 0.0));
	if (root && (r->mem.rss_kb >= 0 || r->mem.loaded_vms > 0))
		json_object_set_new(root, "memory",
				    json_pack("{s:I, s:I, s:I, s:I, s:I, s:f, s:f}", "rss_kb", (json_int_t)r->mem.rss_kb,
					      "rss_anon_kb", (json_int_t)r->mem.rss_anon_kb, "rss_file_kb",
					      (json_int_t)r->mem.rss_file_kb, "rss_shmem_kb",
					      (json_int_t)r->mem.rss_shmem_kb, "loaded_vms", (json_int_t)r->mem.loaded_vms,
					      "arena_bytes", r->mem.arena_bytes, "arena_bytes_per_vm",
					      r->mem.loaded_vms > 0 ? r->mem.arena_bytes / (double)r->mem.loaded_vms : -1.0));
	if (root && run->flood)
		json_object_set_new(root, "flood",
				    json_pack("{s:I, s:I, s:I, s:I, s:f, s:f}", "vm", (json_int_t)run->flood->vm.index,
					      "target_pps", (json_int_t)run->o.flood_pps, "sent",
					      (json_int_t)run->flood->sent, "send_errors",
					      (json_int_t)run->flood->send_errors, "seconds",
					      storm_flood_seconds(run->flood), "sent_pps", storm_flood_rate(run->flood)));
	return root;
}

static int storm_report(const struct storm_run *run, const struct storm_result *r)
{
	json_t *root;

	if (!run->o.json) {
		storm_print_text(run, r);
		return 0;
	}
	root = storm_result_json(run, r);
	if (!root || json_dumpf(root, stdout, JSON_INDENT(2) | JSON_REAL_PRECISION(7)) < 0) {
		json_decref(root);
		return -ENOMEM;
	}
	putchar('\n');
	json_decref(root);
	return 0;
}

/* --plot: the latency distribution by percentile, HDR style: x is
 * 1/(1-q) on a log scale, so 90 %, 99 %, 99.9 % get equal room. */
static int storm_plot_data(const struct storm_run *run, const struct storm_result *r, const char *file)
{
	FILE *f = fopen(file, "w");
	uint64_t seen = 0;

	if (!f)
		return -errno;
	fprintf(f, "# imds-storm mode %s, %zu VMs, %" PRIu64 " requests\n# latency_us quantile x=1/(1-q)\n",
		storm_mode_names[run->o.mode], run->nvms, r->h.total);
	for (unsigned i = 0; i < HIST_BUCKETS && seen < r->h.total; i++) {
		double q, v;

		if (!r->h.count[i])
			continue;
		seen += r->h.count[i];
		q = (double)seen / (double)r->h.total;
		v = (double)(storm_hist_value(i) < r->h.max ? storm_hist_value(i) : r->h.max) / 1e3;
		/* the last sample sits one step past the highest finite x */
		fprintf(f, "%.3f %.7f %.3f\n", v, q, seen < r->h.total ? 1.0 / (1.0 - q) : (double)r->h.total);
	}
	return fclose(f) ? -errno : 0;
}

static int storm_plot(const struct storm_run *run, const struct storm_result *r)
{
	const char *file = run->o.plot;
	int png = !strcmp(file + strlen(file) - 4, ".png");
	char data[1024];
	FILE *gp;
	int rc;

	snprintf(data, sizeof(data), "%s.dat", file);
	rc = r->h.total ? storm_plot_data(run, r, data) : -ENODATA;
	if (rc) {
		fprintf(stderr, "imds-storm: --plot: %s: %s\n", data, strerror(-rc));
		return rc;
	}
	gp = popen("gnuplot", "w");
	if (!gp) {
		fprintf(stderr, "imds-storm: --plot: cannot run gnuplot: %s\n", strerror(errno));
		return -errno;
	}
	fprintf(gp, "set terminal %s size 900,540\nset output '%s'\n", png ? "pngcairo" : "svg", file);
	fprintf(gp, "set title 'imds-storm: %s, %zu VMs, %" PRIu64 " requests'\n", storm_mode_names[run->o.mode],
		run->nvms, r->h.total);
	fputs("set logscale x\nset logscale y\nset grid\nset key left top\n"
	      "set xlabel 'percentile'\nset ylabel 'latency (ms)'\n"
	      "set xtics ('0%%' 1, '90%%' 10, '99%%' 100, '99.9%%' 1000, '99.99%%' 10000, '99.999%%' 100000)\n",
	      gp);
	fprintf(gp, "plot '%s' using 3:($1/1000) with steps lw 2 title 'latency'\n", data);
	rc = pclose(gp);
	if (rc) {
		fprintf(stderr, "imds-storm: --plot: gnuplot failed (status %d)\n", rc);
		return -EIO;
	}
	return 0;
}

/* --- running --- */

static int storm_start_threads(struct storm_run *run, unsigned *started)
{
	for (*started = 0; *started < run->o.threads; (*started)++) {
		int rc = pthread_create(&run->threads[*started].tid, NULL, storm_thread_main, &run->threads[*started]);

		if (rc)
			return -rc;
	}
	return 0;
}

/* Starts every thread at once (a barrier), prints progress once a second,
 * and collects the result. */
static int storm_execute(struct storm_run *run, struct storm_result *r)
{
	/* one source for both readings: schedstat (ns) where readable, else ticks */
	double (*cpu)(long) = storm_cpu_schedstat(run->o.server_pid) >= 0 ? storm_cpu_schedstat : storm_cpu_ticks;
	double cpu0 = run->o.server_pid ? storm_cpu_sum(run, cpu) : -1, cpu1;
	double self0 = storm_self_cpu();
	uint64_t last = 0, printed_s = 0;
	unsigned started;
	int rc;

	if (pthread_barrier_init(&run->start, NULL, run->o.threads + 1 + !!run->flood))
		return -ENOMEM;
	rc = storm_start_threads(run, &started);
	if (!rc && run->flood)
		rc = -pthread_create(&run->flood->tid, NULL, storm_flood_main, run);
	if (rc) {
		fprintf(stderr, "imds-storm: cannot start threads: %s\n", strerror(-rc));
		exit(1); /* threads already waiting on the barrier cannot be released cleanly */
	}
	run->t0 = storm_now();
	run->stop_at = run->t0 + (uint64_t)(run->o.duration_s * 1e9);
	pthread_barrier_wait(&run->start);
	while (__atomic_load_n(&run->threads_done, __ATOMIC_ACQUIRE) < run->o.threads) {
		uint64_t elapsed_s;

		usleep(20000);
		elapsed_s = (storm_now() - run->t0) / 1000000000ull;
		if (!run->o.quiet && elapsed_s > printed_s) {
			printed_s = elapsed_s;
			storm_progress(run, &last);
		}
	}
	for (unsigned t = 0; t < run->o.threads; t++)
		pthread_join(run->threads[t].tid, NULL);
	if (run->flood) {
		__atomic_store_n(&run->flood->stop, 1, __ATOMIC_RELAXED);
		pthread_join(run->flood->tid, NULL);
	}
	memset(r, 0, sizeof(*r));
	storm_sum(run, &r->s, &r->h);
	r->seconds = (double)((r->s.last_done_ns > run->t0 ? r->s.last_done_ns : storm_now()) - run->t0) / 1e9;
	cpu1 = cpu0 >= 0 ? storm_cpu_sum(run, cpu) : -1;
	r->cpu_s = cpu1 >= 0 ? cpu1 - cpu0 : -1;
	r->client_cpu_s = storm_self_cpu() - self0;
	storm_read_memory(run, &r->mem);
	pthread_barrier_destroy(&run->start);
	return 0;
}

static void storm_free(struct storm_run *run)
{
	for (size_t i = 0; i < run->nclients; i++) {
		struct storm_client *c = &run->clients[i];

		storm_nodes_free(c);
		free(c->q);
		outbuf_free(&c->body);
		outbuf_free(&c->out);
		free(c->rbuf);
		if (c->fd >= 0)
			close(c->fd);
	}
	free(run->clients);
	for (unsigned t = 0; run->threads && t < run->o.threads; t++) {
		free(run->threads[t].clients);
		if (run->threads[t].ring_ok)
			io_uring_queue_exit(&run->threads[t].ring);
		for (size_t i = 0; i < run->threads[t].ndead; i++)
			free(run->threads[t].dead[i]);
		free(run->threads[t].dead);
	}
	free(run->threads);
	for (size_t i = 0; run->vms && i < run->nvms; i++)
		if (run->vms[i].nsfd >= 0)
			close(run->vms[i].nsfd);
	free(run->vms);
	storm_flood_close(run);
	vmconf_free(&run->set);
}

int main(int argc, char **argv)
{
	struct storm_run *run = calloc(1, sizeof(*run));
	struct storm_result *r = calloc(1, sizeof(*r));
	struct conf_error err;
	int status = 1;

	if (!run || !r || storm_parse_args(argc, argv, &run->o)) {
		status = run && r ? 2 : 1;
		goto out;
	}
	if (vmconf_load_file(run->o.vms_file, &run->set, &err)) {
		fprintf(stderr, "imds-storm: %s\n", err.text);
		goto out;
	}
	llhttp_settings_init(&run->settings);
	run->settings.on_body = storm_on_body;
	run->settings.on_message_complete = storm_on_complete;
	storm_raise_nofile();
	if (storm_open_vms(run) || !run->nvms || storm_make_clients(run) ||
	    (run->o.flood_vm && storm_flood_open(run))) {
		fprintf(stderr, "imds-storm: setup failed%s\n", run->nvms ? "" : ": no VMs in the file");
		goto out;
	}
	if (storm_execute(run, r) || storm_report(run, r))
		goto out;
	if (run->o.plot && storm_plot(run, r))
		goto out;
	if (run->save_errors)
		fprintf(stderr, "imds-storm: --save: %" PRIu64 " bodies could not be written\n", run->save_errors);
	status = storm_error_total(&r->s) || run->save_errors ? 1 : 0;
out:
	if (run)
		storm_free(run);
	free(run);
	free(r);
	return status;
}

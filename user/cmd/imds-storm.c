/* imds-storm: a metadata storm.  N VMs (existing network namespaces, one
 * per VM, named PREFIX<I>[-SUFFIX]) boot at once and each crawls its
 * metadata the way cloud-init does; every answer is checked against the VM
 * description it was loaded from (the JSON given to imds-loadmap).  This
 * file holds the options and the wiring; the parts are in user/storm/ (the
 * io_uring client, the checker, the flood, the /proc probes, the report).
 * Usage and output: docs/storm.md. */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/cli.h"
#include "compile/vmconf.h"
#include "storm/flood.h"
#include "storm/run.h"
#include "storm/storm.h"

/* --- options --- */

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
	OPT_STATUS_ONLY,
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
	[OPT_STATUS_ONLY] = { "status-only", 0, "DIR",
			      "check statuses only (200), walking the listings a --save crawl wrote to DIR, not the"
			      " answers: for a server with one fixed answer (make bench's null responder)" },
	[OPT_PLOT] = { "plot", 0, "FILE", "latency percentile plot (.svg or .png, gnuplot); data in FILE.dat" },
	[OPT_PIN_DIR] = { "pin-dir", 0, "DIR", "report the store's arena bytes per loaded VM (pin directory)" },
	[OPT_FLOOD_VM] = { "flood-vm", 0, "I", "VM I of FILE floods the metadata address with SYNs during the run" },
	[OPT_FLOOD_PPS] = { "flood-pps", 0, "R", "flood rate in packets/s (default 10240)" },
	{ 0 },
};

static const char storm_synopsis[] = "--vms FILE [--suffix SFX] [--mode conn|keepalive|steady] [OPTIONS]";

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
	case OPT_STATUS_ONLY: o->status_only_dir = arg; return 0;
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

/* --status-only DIR must be a tree --save wrote (a missing one would crawl
 * the roots only), and saving a fixed answer would overwrite it. */
static int storm_check_status_only(const struct storm_opts *o)
{
	struct stat st;

	if (!o->status_only_dir)
		return 0;
	if (o->save_dir) {
		fprintf(stderr, "imds-storm: --status-only and --save: one run cannot do both\n");
		return -1;
	}
	if (stat(o->status_only_dir, &st) || !S_ISDIR(st.st_mode)) {
		fprintf(stderr, "imds-storm: --status-only: '%s' is not a directory written by --save\n",
			o->status_only_dir);
		return -1;
	}
	return 0;
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
	return storm_check_status_only(o);
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
	storm_raise_nofile();
	if (storm_open_vms(run) || !run->nvms || storm_make_clients(run) ||
	    (run->o.flood_vm && storm_flood_open(&run->o, &run->set, &run->flood))) {
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

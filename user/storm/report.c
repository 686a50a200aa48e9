/* report.c: the storm's report.  Text and JSON carry the same numbers;
 * scripts/bench.sh, scripts/bench-report.py and tests/system/test_storm.py
 * read them, so names and formats stay as they are. */
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "storm/flood.h"
#include "storm/report.h"

static const char *const storm_mode_names[] = { "conn", "keepalive", "steady" };

static const double storm_quantiles[] = { 0.5, 0.9, 0.99, 0.999 };
static const char *const storm_quantile_names[] = { "p50", "p90", "p99", "p99.9" };

void storm_report_progress(const struct storm_run *run, const struct storm_stats *s, uint64_t *last_requests)
{
	double t = (double)(storm_now() - run->t0) / 1e9;

	fprintf(stderr, "imds-storm: %6.1f s  requests %" PRIu64 " (%" PRIu64 "/s)  errors %" PRIu64
		"  connect-failures %" PRIu64 "  clients done %" PRIu64 "/%zu\n",
		t, s->requests, s->requests - *last_requests, storm_error_total(s), s->connect_failures,
		s->clients_done, run->nclients);
	*last_requests = s->requests;
}

static void storm_print_latency(const struct storm_hist *h)
{
	printf("latency (us)     ");
	for (unsigned i = 0; i < 4; i++)
		printf(" %s %.1f", storm_quantile_names[i], (double)storm_hist_quantile(h, storm_quantiles[i]) / 1e3);
	printf(" max %.1f mean %.1f\n", (double)h->max / 1e3, h->total ? (double)h->sum / (double)h->total / 1e3 : 0.0);
}

/* What the server and the store cost, and what the flood sent. */
static void storm_print_costs(const struct storm_run *run, const struct storm_result *r)
{
	const struct storm_stats *s = &r->s;

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

static void storm_print_text(const struct storm_run *run, const struct storm_result *r)
{
	const struct storm_stats *s = &r->s;

	printf("imds-storm: mode %s, %zu VMs, %zu clients, %u threads\n", storm_mode_names[run->o.mode], run->nvms,
	       run->nclients, run->o.threads);
	printf("requests          %" PRIu64 " in %.3f s: %.0f requests/s, %" PRIu64 " crawls (%.1f requests each)\n",
	       s->requests, r->seconds, r->seconds > 0 ? (double)s->requests / r->seconds : 0.0, s->crawls,
	       s->crawls ? (double)s->requests / (double)s->crawls : 0.0);
	printf("completion        %.3f s\n", r->seconds);
	storm_print_latency(&r->h);
	printf("errors            %" PRIu64, storm_error_total(s));
	for (int k = 0; k < SE_N; k++)
		printf("%s%s %" PRIu64, k ? ", " : " (", storm_err_names[k], s->errors[k]);
	printf(")\nconnect failures  %" PRIu64 ", retries %" PRIu64 ", keep-alive reconnects %" PRIu64 "\n",
	       s->connect_failures, s->retries, s->reconnects);
	storm_print_costs(run, r);
}

static json_t *storm_latency_json(const struct storm_hist *h)
{
	json_t *lat = json_object();

	for (unsigned i = 0; i < 4; i++)
		json_object_set_new(lat, storm_quantile_names[i],
				    json_real((double)storm_hist_quantile(h, storm_quantiles[i]) / 1e3));
	json_object_set_new(lat, "max", json_real((double)h->max / 1e3));
	json_object_set_new(lat, "mean", json_real(h->total ? (double)h->sum / (double)h->total / 1e3 : 0.0));
	return lat;
}

static json_t *storm_errors_json(const struct storm_stats *s)
{
	json_t *errs = json_object();

	for (int k = 0; k < SE_N; k++)
		json_object_set_new(errs, storm_err_names[k], json_integer((json_int_t)s->errors[k]));
	json_object_set_new(errs, "total", json_integer((json_int_t)storm_error_total(s)));
	return errs;
}

/* The optional objects: server, client, memory, flood. */
static void storm_costs_json(json_t *root, const struct storm_run *run, const struct storm_result *r)
{
	const struct storm_stats *s = &r->s;

	if (run->o.server_pid && r->cpu_s >= 0)
		json_object_set_new(root, "server",
				    json_pack("{s:I, s:f, s:f}", "pid", (json_int_t)run->o.server_pid, "cpu_s", r->cpu_s,
					      "cpu_us_per_request",
					      s->requests ? r->cpu_s * 1e6 / (double)s->requests : 0.0));
	json_object_set_new(root, "client",
			    json_pack("{s:f, s:f}", "cpu_s", r->client_cpu_s, "cpu_us_per_request",
				      s->requests ? r->client_cpu_s * 1e6 / (double)s->requests : 0.0));
	if (r->mem.rss_kb >= 0 || r->mem.loaded_vms > 0)
		json_object_set_new(root, "memory",
				    json_pack("{s:I, s:I, s:I, s:I, s:I, s:f, s:f}", "rss_kb", (json_int_t)r->mem.rss_kb,
					      "rss_anon_kb", (json_int_t)r->mem.rss_anon_kb, "rss_file_kb",
					      (json_int_t)r->mem.rss_file_kb, "rss_shmem_kb",
					      (json_int_t)r->mem.rss_shmem_kb, "loaded_vms", (json_int_t)r->mem.loaded_vms,
					      "arena_bytes", r->mem.arena_bytes, "arena_bytes_per_vm",
					      r->mem.loaded_vms > 0 ? r->mem.arena_bytes / (double)r->mem.loaded_vms : -1.0));
	if (run->flood)
		json_object_set_new(root, "flood",
				    json_pack("{s:I, s:I, s:I, s:I, s:f, s:f}", "vm", (json_int_t)run->flood->vm.index,
					      "target_pps", (json_int_t)run->o.flood_pps, "sent",
					      (json_int_t)run->flood->sent, "send_errors",
					      (json_int_t)run->flood->send_errors, "seconds",
					      storm_flood_seconds(run->flood), "sent_pps", storm_flood_rate(run->flood)));
}

static json_t *storm_result_json(const struct storm_run *run, const struct storm_result *r)
{
	const struct storm_stats *s = &r->s;
	json_t *root;

	root = json_pack("{s:s, s:I, s:I, s:I, s:I, s:I, s:f, s:f, s:o, s:o, s:I, s:I, s:I}", "mode",
			 storm_mode_names[run->o.mode], "vms", (json_int_t)run->nvms, "clients",
			 (json_int_t)run->nclients, "threads", (json_int_t)run->o.threads, "requests",
			 (json_int_t)s->requests, "crawls", (json_int_t)s->crawls, "completion_s", r->seconds,
			 "requests_per_s", r->seconds > 0 ? (double)s->requests / r->seconds : 0.0, "latency_us",
			 storm_latency_json(&r->h), "errors", storm_errors_json(s), "connect_failures",
			 (json_int_t)s->connect_failures, "retries", (json_int_t)s->retries, "reconnects",
			 (json_int_t)s->reconnects);
	if (root)
		storm_costs_json(root, run, r);
	return root;
}

int storm_report(const struct storm_run *run, const struct storm_result *r)
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

int storm_plot(const struct storm_run *run, const struct storm_result *r)
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

/* metrics.c: the Prometheus text exposition (format 0.0.4) of imdsd's
 * counters (metrics.h; every metric is listed in docs/metrics.md,
 * "Metrics and alerts").  Runs in the admin thread at scrape time: the
 * workers' own tables (stats.h) are summed here, the data plane's per-VM
 * counters read from its map, so serving VMs pays nothing for a scrape.
 *
 * Per-VM series carry instance_id and exist only for VMs loaded now: a
 * VM's counts are those of the slot's current generation, so a deleted VM
 * leaves the exposition at the next scrape and its slot's next VM starts
 * from zero. */
#include "serve/metrics.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "serve/server_int.h"


static const char *const metrics_flavor_names[ROUTE_FLAVOR_COUNT] = {
	[ROUTE_FLAVOR_NONE] = "none",	[ROUTE_FLAVOR_EC2] = "ec2",     [ROUTE_FLAVOR_OPENSTACK] = "openstack",
	[ROUTE_FLAVOR_GCE] = "gce",	[ROUTE_FLAVOR_AZURE] = "azure",
};

/* A loaded VM as one scrape sees it. */
struct metrics_vm {
	uint32_t slot, generation;
	char label[2 * IMDS_INSTANCE_ID_MAX]; /* instance_id, escaped for a label value */
	struct imds_counters packets;	      /* its data-plane counters (metrics_read_packets) */
	bool packets_read;
};

#define METRICS_BATCH 256 /* slots per read of the data plane's counters */

/* A label value: backslash, double quote and newline escaped. */
static void metrics_escape(const char *in, char *out, size_t len)
{
	size_t o = 0;

	for (; *in && o + 3 < len; in++) {
		if (*in == '\\' || *in == '"' || *in == '\n')
			out[o++] = '\\';
		out[o++] = *in == '\n' ? 'n' : *in;
	}
	out[o] = '\0';
}

/* The slot's VM, if one is loaded; its identity read twice around the
 * generation so an update in between is not mixed with it. */
static bool metrics_vm_read(const struct store *store, uint32_t slot, struct metrics_vm *vm)
{
	const struct imds_vm *r = &store->vms[slot];
	char iid[IMDS_INSTANCE_ID_MAX];
	uint32_t gen;

	if (!store_vm_active(r))
		return false;
	gen = __atomic_load_n(&r->generation, __ATOMIC_ACQUIRE);
	memcpy(iid, (const char *)r->instance_id, sizeof(iid));
	iid[sizeof(iid) - 1] = '\0';
	if (__atomic_load_n(&r->generation, __ATOMIC_ACQUIRE) != gen || !store_vm_active(r) || !iid[0])
		return false;
	vm->slot = slot;
	vm->generation = gen;
	metrics_escape(iid, vm->label, sizeof(vm->label));
	return true;
}

static int metrics_family(struct outbuf *out, const char *name, const char *type, const char *help)
{
	return outbuf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* The workers' counts of one VM, summed (zero when none served it). */
static void metrics_sum_vm(const struct server *srv, const struct metrics_vm *vm, struct stats_vm *sum)
{
	memset(sum, 0, sizeof(*sum));
	for (int i = 0; i < srv->nworkers; i++) {
		const struct stats_vm *v = &srv->workers[i].stats.vms[vm->slot];
		const uint64_t *words = (const uint64_t *)v->requests;
		uint64_t *acc = (uint64_t *)sum->requests, copy[ROUTE_FLAVOR_COUNT * STATS_CODES];
		uint64_t tokenless, issued;

		if (__atomic_load_n(&v->generation, __ATOMIC_ACQUIRE) != vm->generation)
			continue;
		for (unsigned k = 0; k < ROUTE_FLAVOR_COUNT * STATS_CODES; k++)
			copy[k] = __atomic_load_n(&words[k], __ATOMIC_RELAXED);
		tokenless = __atomic_load_n(&v->tokenless, __ATOMIC_RELAXED);
		issued = __atomic_load_n(&v->tokens_issued, __ATOMIC_RELAXED);
		if (__atomic_load_n(&v->generation, __ATOMIC_ACQUIRE) != vm->generation)
			continue; /* zeroed for the slot's next VM meanwhile */
		for (unsigned k = 0; k < ROUTE_FLAVOR_COUNT * STATS_CODES; k++)
			acc[k] += copy[k];
		sum->tokenless += tokenless;
		sum->tokens_issued += issued;
	}
}

static int metrics_request_line(struct outbuf *out, const char *label, unsigned flavor, unsigned code,
				uint64_t n)
{
	char code_text[8] = "other";

	if (stats_codes[code])
		snprintf(code_text, sizeof(code_text), "%u", stats_codes[code]);
	return outbuf_printf(out, "imds_vm_requests_total{instance_id=\"%s\",flavor=\"%s\",code=\"%s\"} %llu\n",
			     label, metrics_flavor_names[flavor], code_text, (unsigned long long)n);
}

static int metrics_vm_requests(struct outbuf *out, const struct server *srv, const struct metrics_vm *vms, size_t n)
{
	static const char req[] = "imds_vm_requests_total", v1[] = "imds_vm_tokenless_requests_total",
			  tok[] = "imds_vm_tokens_issued_total";
	struct outbuf v1s = { 0 }, toks = { 0 };
	struct stats_vm sum;
	int rc = metrics_family(out, req, "counter", "HTTP requests answered, by API flavor and status code.");

	/* Every loaded VM has its tokenless and tokens series, 0 until used,
	 * so an alert on their increase sees a VM from its load on. */
	for (size_t i = 0; i < n && rc == 0; i++) {
		metrics_sum_vm(srv, &vms[i], &sum);
		for (unsigned f = 0; f < ROUTE_FLAVOR_COUNT; f++)
			for (unsigned k = 0; k < STATS_CODES; k++)
				if (sum.requests[f][k])
					rc |= metrics_request_line(out, vms[i].label, f, k, sum.requests[f][k]);
		rc |= outbuf_printf(&v1s, "%s{instance_id=\"%s\"} %llu\n", v1, vms[i].label,
				    (unsigned long long)sum.tokenless);
		rc |= outbuf_printf(&toks, "%s{instance_id=\"%s\"} %llu\n", tok, vms[i].label,
				    (unsigned long long)sum.tokens_issued);
	}
	rc |= metrics_family(out, v1, "counter", "EC2 metadata answered without a token (IMDSv1).");
	rc |= outbuf_append(out, v1s.data, v1s.len);
	rc |= metrics_family(out, tok, "counter", "IMDSv2 session tokens issued.");
	rc |= outbuf_append(out, toks.data, toks.len);
	outbuf_free(&v1s);
	outbuf_free(&toks);
	return rc;
}

/* Whether reason r is a pass (the rest are drops); the label drops the
 * "drop_" of imds_reason_names. */
static bool metrics_is_pass(int r)
{
	return r == IMDS_PASS_VERIFIED || r == IMDS_PASS_SYN_RECORDED || r == IMDS_PASS_HOP_LIMITED;
}

static const char *metrics_reason(int r)
{
	const char *name = imds_reason_names[r];

	return strncmp(name, "drop_", 5) == 0 ? name + 5 : strncmp(name, "pass_", 5) == 0 ? name + 5 : name;
}

/* Every listed VM's data-plane counters (vms sorted by slot), read
 * METRICS_BATCH slots per system call rather than one per VM: a scrape of
 * 1,000 VMs made 2,000 bpf() calls.  A VM whose batch cannot be read
 * stays unread and is left out of the packet families. */
static void metrics_read_packets(const struct store *store, struct metrics_vm *vms, size_t n)
{
	struct imds_counters *batch = calloc(METRICS_BATCH, sizeof(*batch));

	for (size_t i = 0; batch && i < n;) {
		uint32_t first = vms[i].slot, count = store->max_slots - first;

		count = count < METRICS_BATCH ? count : METRICS_BATCH;
		if (store_counters_range(store, first, count, batch) < 0) {
			for (; i < n && vms[i].slot < first + count; i++)
				;
			continue;
		}
		for (; i < n && vms[i].slot < first + count; i++) {
			vms[i].packets = batch[vms[i].slot - first];
			vms[i].packets_read = true;
		}
	}
	free(batch);
}

static int metrics_packet_lines(struct outbuf *out, const char *name, const char *who,
				const struct imds_counters *c, bool pass)
{
	int rc = 0;

	for (int r = 0; r < IMDS_REASON_MAX; r++)
		if (metrics_is_pass(r) == pass)
			rc |= outbuf_printf(out, "%s{%sreason=\"%s\"} %llu\n", name, who, metrics_reason(r),
					    (unsigned long long)c->packets[r]);
	return rc;
}

/* One family of data-plane packets per VM, passes or drops. */
static int metrics_vm_packets(struct outbuf *out, const struct metrics_vm *vms, size_t n, bool pass)
{
	const char *name = pass ? "imds_vm_packets_passed_total" : "imds_vm_packets_dropped_total";
	int rc = metrics_family(out, name, "counter",
				pass ? "Packets the data plane let through, by reason."
				     : "Packets the data plane dropped, by reason.");

	for (size_t i = 0; i < n && rc == 0; i++) {
		char who[sizeof(vms->label) + 32];

		if (!vms[i].packets_read)
			continue;
		snprintf(who, sizeof(who), "instance_id=\"%s\",", vms[i].label);
		rc |= metrics_packet_lines(out, name, who, &vms[i].packets, pass);
	}
	return rc;
}

/* The totals of slot 0, which also hold what no VM is blamed for (an
 * unknown MAC): passes, then drops. */
static int metrics_total_packets(struct outbuf *out, const struct store *store)
{
	struct imds_counters c;
	int rc = metrics_family(out, "imds_packets_passed_total", "counter",
				"Packets the data plane let through, by reason.");

	if (store_counters(store, 0, &c) < 0)
		return rc | metrics_family(out, "imds_packets_dropped_total", "counter",
					   "Packets the data plane dropped, by reason.");
	rc |= metrics_packet_lines(out, "imds_packets_passed_total", "", &c, true);
	rc |= metrics_family(out, "imds_packets_dropped_total", "counter", "Packets the data plane dropped, by reason.");
	rc |= metrics_packet_lines(out, "imds_packets_dropped_total", "", &c, false);
	return rc;
}

static int metrics_vm_connections(struct outbuf *out, const struct server *srv, const struct metrics_vm *vms,
				  size_t n)
{
	static const char name[] = "imds_vm_connections";
	int rc = metrics_family(out, name, "gauge", "HTTP connections the VM holds open.");

	for (size_t i = 0; i < n; i++) {
		uint32_t open = limits_conns_of(srv->limits, vms[i].slot, vms[i].generation);

		rc |= outbuf_printf(out, "%s{instance_id=\"%s\"} %u\n", name, vms[i].label, open);
	}
	return rc;
}

static int metrics_latency(struct outbuf *out, const struct server *srv)
{
	static const char name[] = "imds_request_duration_seconds";
	uint64_t buckets[STATS_LATENCY_BUCKETS + 1] = { 0 }, sum_ns = 0, count, cum = 0;
	int rc = metrics_family(out, name, "histogram",
				"From receiving the bytes that complete a request to its answer being queued.");

	for (int i = 0; i < srv->nworkers; i++) {
		const struct stats_latency *l = &srv->workers[i].stats.latency;

		for (int b = 0; b <= STATS_LATENCY_BUCKETS; b++)
			buckets[b] += __atomic_load_n(&l->buckets[b], __ATOMIC_RELAXED);
		sum_ns += __atomic_load_n(&l->sum_ns, __ATOMIC_RELAXED);
	}
	for (int b = 0; b < STATS_LATENCY_BUCKETS; b++) {
		cum += buckets[b];
		rc |= outbuf_printf(out, "%s_bucket{le=\"%g\"} %llu\n", name, (double)stats_latency_le_ns[b] / 1e9,
				    (unsigned long long)cum);
	}
	/* The count is the buckets' own sum, so +Inf and _count agree even
	 * while workers add. */
	count = cum + buckets[STATS_LATENCY_BUCKETS];
	rc |= outbuf_printf(out, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.9f\n%s_count %llu\n", name,
			    (unsigned long long)count, name, (double)sum_ns / 1e9, name, (unsigned long long)count);
	return rc;
}

static int metrics_server(struct outbuf *out, const struct server *srv)
{
	struct server_counters c;
	int rc = 0;

	srv_sum_counters(srv, &c);
#define METRIC(name, type, help, value)                                                       \
	rc |= metrics_family(out, name, type, help);                                          \
	rc |= outbuf_printf(out, "%s %llu\n", name, (unsigned long long)(value))
	METRIC("imds_connections_open", "gauge", "HTTP connections open, all VMs.", c.conns_open);
	METRIC("imds_connections_max", "gauge", "The total connection cap in force (docs/limits.md).",
	       srv->max_conns_total);
	METRIC("imds_connections_refused_total", "counter", "Connections closed at accept: the total cap was reached.",
	       c.refused_total);
	METRIC("imds_connections_evicted_total", "counter", "Idle connections closed to admit another VM's.",
	       c.evicted);
	METRIC("imds_header_timeouts_total", "counter", "Requests not complete within the header timeout.",
	       c.header_timeouts);
	METRIC("imds_idle_timeouts_total", "counter", "Connections closed after the idle timeout.",
	       c.idle_timeouts);
	METRIC("imds_connections_gated_total", "counter",
	       "Refusals that also stopped the VM's SYNs at its port for a second (conn_gate).", c.gated);
#undef METRIC
	return rc;
}

/* Loaded VMs by binding state (store_binding_state), and the arena. */
static int metrics_store(struct outbuf *out, const struct store *store, const struct metrics_vm *vms, size_t n)
{
	static const char *const states[] = { "pinned", "waiting", "first-use", "bound", "unbound" };
	size_t by_state[sizeof(states) / sizeof(states[0])] = { 0 };
	int rc = 0;

	for (size_t i = 0; i < n; i++) {
		const char *s = store_binding_state(store, vms[i].slot);

		for (size_t k = 0; k < sizeof(states) / sizeof(states[0]); k++)
			by_state[k] += strcmp(s, states[k]) == 0;
	}
	rc |= metrics_family(out, "imds_vms_loaded", "gauge", "VMs loaded in the store.");
	rc |= outbuf_printf(out, "imds_vms_loaded %zu\n", n);
	rc |= metrics_family(out, "imds_vms", "gauge",
			     "Loaded VMs by port binding: pinned (served on its port), waiting (its port is absent), "
			     "first-use, bound, unbound.");
	for (size_t k = 0; k < sizeof(states) / sizeof(states[0]); k++)
		rc |= outbuf_printf(out, "imds_vms{binding=\"%s\"} %zu\n", states[k], by_state[k]);
	rc |= metrics_family(out, "imds_arena_used_bytes", "gauge", "Arena bytes holding compiled trees.");
	rc |= outbuf_printf(out, "imds_arena_used_bytes %zu\n", arena_used_bytes(&store->arena));
	rc |= metrics_family(out, "imds_arena_free_bytes", "gauge", "Arena bytes free for trees.");
	rc |= outbuf_printf(out, "imds_arena_free_bytes %llu\n",
			    (unsigned long long)arena_free_pages(&store->arena) * IMDS_ARENA_PAGE);
	return rc;
}

int metrics_render(const struct server *srv, struct outbuf *out)
{
	const struct store *store = srv->cfg.store;
	struct metrics_vm *vms = calloc(store->max_slots, sizeof(*vms));
	size_t n = 0;
	int rc;

	if (!vms)
		return -ENOMEM;
	for (uint32_t slot = 1; slot < store->max_slots; slot++)
		n += metrics_vm_read(store, slot, &vms[n]);
	metrics_read_packets(store, vms, n);
	rc = metrics_vm_requests(out, srv, vms, n);
	rc |= metrics_vm_packets(out, vms, n, true);
	rc |= metrics_vm_packets(out, vms, n, false);
	rc |= metrics_total_packets(out, store);
	rc |= metrics_vm_connections(out, srv, vms, n);
	rc |= metrics_latency(out, srv);
	rc |= metrics_server(out, srv);
	rc |= metrics_store(out, store, vms, n);
	rc |= metrics_process(out);
	free(vms);
	return rc ? -ENOMEM : 0;
}

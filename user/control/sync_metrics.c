/* sync_metrics.c: sync's counters as Prometheus text in a file, for
 * node_exporter's textfile collector (docs/metrics.md, "imds-loadmap
 * sync").  Written after every change of a counter to a temporary name and
 * renamed into place, so a scrape never reads half a file. */
#include "control/sync.h"

#include <stdio.h>
#include <stdlib.h>

#include "lib/log.h"

static void sync_metric(FILE *f, const char *name, const char *type, const char *help, const char *labels,
			long long value)
{
	if (help)
		fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
	fprintf(f, "%s%s %lld\n", name, labels, value);
}

static void sync_metrics_text(const struct sync *sy, FILE *f)
{
	const struct sync_stats *st = &sy->stats;

	sync_metric(f, "imds_sync_invalid_records_total", "counter",
		    "etcd records refused (a log line names each key and the error); their VMs keep their last good data.",
		    "", (long long)st->invalid);
	sync_metric(f, "imds_sync_vm_changes_total", "counter", "VMs changed in the store from etcd, by action.",
		    "{action=\"add\"}", (long long)st->added);
	sync_metric(f, "imds_sync_vm_changes_total", "counter", NULL, "{action=\"update\"}", (long long)st->updated);
	sync_metric(f, "imds_sync_vm_changes_total", "counter", NULL, "{action=\"delete\"}", (long long)st->deleted);
	sync_metric(f, "imds_sync_full_reads_total", "counter",
		    "Times the prefix was read whole: at start and after a compaction.", "", (long long)st->full_reads);
	sync_metric(f, "imds_sync_compactions_total", "counter",
		    "Watches that found their revision compacted (each followed by a full read).", "",
		    (long long)st->compactions);
	sync_metric(f, "imds_sync_reconnects_total", "counter", "etcd connections lost or refused.", "",
		    (long long)st->reconnects);
	sync_metric(f, "imds_sync_revision", "gauge", "The etcd revision the store reflects.", "",
		    (long long)st->revision);
	sync_metric(f, "imds_sync_connected", "gauge", "1 while a watch of the prefix is running.", "",
		    (long long)st->connected);
}

void sync_metrics_write(const struct sync *sy)
{
	char *tmp = NULL;
	FILE *f;

	if (!sy->metrics_path || asprintf(&tmp, "%s.tmp", sy->metrics_path) < 0)
		return;
	f = fopen(tmp, "w");
	if (f) {
		sync_metrics_text(sy, f);
		if (fclose(f) == 0 && rename(tmp, sy->metrics_path) == 0) {
			free(tmp);
			return;
		}
	}
	log_warn("sync: cannot write %s: %m", sy->metrics_path);
	free(tmp);
}

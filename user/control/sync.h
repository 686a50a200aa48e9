/* sync.h: `imds-loadmap sync`'s state, shared by its loop (sync.c), the
 * change it makes of etcd's keys (sync_apply.c) and its metrics file
 * (sync_metrics.c).  docs/control-plane.md, "etcd". */
#ifndef IMDS_CONTROL_SYNC_H
#define IMDS_CONTROL_SYNC_H
#include <stdint.h>

#include "control/control.h"
#include "control/etcd.h"

struct sync_stats {
	uint64_t invalid;		  /* records refused (a log line each) */
	uint64_t added, updated, deleted; /* VMs changed */
	uint64_t full_reads;		  /* the prefix read whole: at start and after a compaction */
	uint64_t compactions;		  /* of them, after the watch's revision was compacted */
	uint64_t reconnects;		  /* connections lost or refused */
	int64_t revision;		  /* etcd's revision the store reflects */
	int connected;			  /* a watch is running */
};

struct sync {
	struct store *s;
	const struct identity_key *key;
	const char *prefix;
	struct etcd_client *etcd;
	struct sync_stats stats;
	const char *metrics_path; /* --metrics-file, or NULL */
};

/* One key's last state in what is applied together. */
struct sync_change {
	const char *key, *id; /* id: the key's name after the prefix */
	const char *value;    /* NULL when deleted */
	size_t value_len;
	int64_t revision;
	bool deleted;
};

const char *sync_key_id(const struct sync *sy, const char *key);
int sync_apply(struct sync *sy, const struct sync_change *ch, size_t n, const char *const *doomed, size_t n_doomed,
	       struct plan *total);

/* Writes the counters to the metrics file, if any (Prometheus text for
 * node_exporter's textfile collector), replacing it atomically. */
void sync_metrics_write(const struct sync *sy);

#endif

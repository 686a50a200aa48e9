/* sync.c: `imds-loadmap sync`: the store follows one host's prefix in etcd.
 * It reads every key under the prefix at one revision and makes the store
 * hold exactly those VMs (a loaded VM no key names is deleted: sync owns
 * the store), then watches the prefix from that revision + 1 and applies
 * whatever events arrive together as one change.  A lost connection is
 * retried with backoff across the endpoints and the watch resumes after
 * the last revision applied; when etcd has compacted that revision away,
 * the prefix is read again and only the difference applied.  imdsd keeps
 * serving throughout: each VM is switched atomically, old or new. */
#include "control/sync.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lib/log.h"

#define SYNC_PAGE 1000		/* keys per range request */
#define SYNC_POLL_MS 200	/* the loop's tick: the stop flag */
#define SYNC_BACKOFF_MIN_MS 100 /* after a failure; doubles up to the max */
#define SYNC_BACKOFF_MAX_MS 2000

static double sync_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* The log line of a change: what it did and how long it took from the
 * moment its data arrived (parse, plan, compile, publish). */
static void sync_summary(const struct sync *sy, const char *what, const struct plan *p, double since_ms)
{
	char summary[128];

	plan_summary(p, summary, sizeof(summary));
	log_info("sync: %s revision %lld: %s (%.0f ms)", what, (long long)sy->stats.revision, summary,
		 sync_now_ms() - since_ms);
	sync_metrics_write(sy);
}

static int sync_kv_cmp(const void *a, const void *b)
{
	return strcmp(((const struct etcd_kv *)a)->key, ((const struct etcd_kv *)b)->key);
}

/* Loaded VMs that no key of the prefix names (sync owns the store), as
 * copies: the VM table may change under a reader without the lock.  The
 * keys are sorted here, each VM's key looked up. */
static int sync_orphans(const struct sync *sy, struct etcd_kvs *kvs, char (**out)[IMDS_INSTANCE_ID_MAX], size_t *n)
{
	const struct store *s = sy->s;
	char(*ids)[IMDS_INSTANCE_ID_MAX] = calloc(s->max_slots, sizeof(*ids));
	char key[4096];

	if (!ids)
		return -ENOMEM;
	qsort(kvs->kv, kvs->n, sizeof(*kvs->kv), sync_kv_cmp);
	*n = 0;
	for (uint32_t slot = 1; slot < s->max_slots; slot++) {
		struct etcd_kv probe = { .key = key };

		if (!store_vm_active(&s->vms[slot]))
			continue;
		snprintf(ids[*n], sizeof(ids[*n]), "%s", s->vms[slot].instance_id);
		snprintf(key, sizeof(key), "%s%s", sy->prefix, ids[*n]);
		if (!bsearch(&probe, kvs->kv, kvs->n, sizeof(*kvs->kv), sync_kv_cmp))
			(*n)++;
	}
	*out = ids;
	return 0;
}

static int sync_kv_order(const void *a, const void *b, void *arg)
{
	const struct etcd_kv *kv = arg;
	size_t i = *(const size_t *)a, k = *(const size_t *)b;
	int c = strcmp(kv[i].key, kv[k].key);

	return c ? c : (i > k) - (i < k);
}

/* superseded[i]: a later event of the batch has kv[i]'s key.  Sorting
 * the positions by key, then position, puts each key's events together,
 * the last one last: n log n where a search per event was quadratic. */
static bool *sync_superseded(const struct etcd_kvs *kvs)
{
	size_t *pos = calloc(kvs->n ? kvs->n : 1, sizeof(*pos));
	bool *superseded = calloc(kvs->n ? kvs->n : 1, sizeof(*superseded));

	if (!pos || !superseded) {
		free(pos);
		free(superseded);
		return NULL;
	}
	for (size_t i = 0; i < kvs->n; i++)
		pos[i] = i;
	qsort_r(pos, kvs->n, sizeof(*pos), sync_kv_order, kvs->kv);
	for (size_t i = 0; i + 1 < kvs->n; i++)
		superseded[pos[i]] = strcmp(kvs->kv[pos[i]].key, kvs->kv[pos[i + 1]].key) == 0;
	free(pos);
	return superseded;
}

/* The changes for a set of key-values, the last of each key winning (a
 * watch may put and delete one key in one batch; a range's keys are
 * unique). */
static struct sync_change *sync_changes(struct sync *sy, const struct etcd_kvs *kvs, bool unique, size_t *n)
{
	struct sync_change *ch = calloc(kvs->n ? kvs->n : 1, sizeof(*ch));
	bool *superseded = unique ? NULL : sync_superseded(kvs);

	*n = 0;
	if (!unique && !superseded) {
		free(ch);
		return NULL;
	}
	for (size_t i = 0; ch && i < kvs->n; i++) {
		const struct etcd_kv *kv = &kvs->kv[i];
		const char *id = sync_key_id(sy, kv->key);

		if (superseded && superseded[i])
			continue;
		if (!id) {
			sy->stats.invalid++;
			log_error("sync: revision %lld: %s: not a VM's key: want %sINSTANCE-ID (ignored)",
				  (long long)kv->mod_revision, kv->key, sy->prefix);
			continue;
		}
		ch[(*n)++] = (struct sync_change){ .key = kv->key, .id = id, .value = kv->value,
						   .value_len = kv->value_len, .revision = kv->mod_revision,
						   .deleted = kv->deleted };
	}
	free(superseded);
	return ch;
}

static int sync_apply_kvs(struct sync *sy, const struct etcd_kvs *kvs, bool unique, const char *const *doomed,
			  size_t n_doomed, struct plan *total)
{
	size_t n;
	struct sync_change *ch = sync_changes(sy, kvs, unique, &n);
	int ret = ch ? sync_apply(sy, ch, n, doomed, n_doomed, total) : -ENOMEM;

	free(ch);
	return ret;
}

/* The prefix read whole and the store made equal to it. */
static int sync_full_read(struct sync *sy, const char *why)
{
	char err[ETCD_ERRLEN] = "", (*orphans)[IMDS_INSTANCE_ID_MAX] = NULL;
	struct etcd_kvs kvs = { 0 };
	const char **doomed = NULL;
	size_t n_orphans = 0;
	struct plan total;
	int64_t revision;
	double t0 = sync_now_ms();
	int ret = etcd_range_prefix(sy->etcd, sy->prefix, SYNC_PAGE, &kvs, &revision, err, sizeof(err));

	if (ret) {
		log_warn("sync: cannot read %s: %s", sy->prefix, err);
		return ret;
	}
	ret = sync_orphans(sy, &kvs, &orphans, &n_orphans);
	if (!ret && !(doomed = calloc(n_orphans + 1, sizeof(*doomed))))
		ret = -ENOMEM;
	for (size_t i = 0; !ret && i < n_orphans; i++)
		doomed[i] = orphans[i];
	if (!ret)
		ret = sync_apply_kvs(sy, &kvs, true, doomed, n_orphans, &total);
	if (!ret) {
		sy->stats.full_reads++;
		sy->stats.revision = revision;
		sync_summary(sy, why, &total, t0);
	}
	free(doomed);
	free(orphans);
	etcd_kvs_free(&kvs);
	return ret;
}

/* -ENOMEM leaves the revision where it was: the caller ends the watch,
 * and the next one starts again at these events. */
static int sync_apply_events(struct sync *sy, struct etcd_kvs *events)
{
	struct plan total;
	int64_t last = sy->stats.revision;
	double t0 = sync_now_ms();

	for (size_t i = 0; i < events->n; i++)
		if (events->kv[i].mod_revision > last)
			last = events->kv[i].mod_revision;
	if (sync_apply_kvs(sy, events, false, NULL, 0, &total)) {
		log_error("sync: out of memory applying %zu events: watching again from revision %lld", events->n,
			  (long long)sy->stats.revision + 1);
		return -ENOMEM;
	}
	sy->stats.revision = last;
	sync_summary(sy, "watch", &total, t0);
	return 0;
}

/* Follows the watch until it ends (-EIO), is compacted (-ERANGE) or stop. */
static int sync_follow(struct sync *sy, volatile sig_atomic_t *stop, int *backoff_ms)
{
	char err[ETCD_ERRLEN] = "";
	enum etcd_watch_state state = ETCD_WATCH_RUNNING;
	int64_t compacted = 0;
	bool created = false, told = false;

	if (etcd_watch_start(sy->etcd, sy->prefix, sy->stats.revision + 1, err, sizeof(err))) {
		log_warn("sync: cannot watch %s: %s", sy->prefix, err);
		return -EIO;
	}
	while (state == ETCD_WATCH_RUNNING && !*stop) {
		struct etcd_kvs events = { 0 };

		state = etcd_watch_poll(sy->etcd, SYNC_POLL_MS, &events, &created, &compacted, err, sizeof(err));
		if (created && !told) {
			told = true;
			*backoff_ms = SYNC_BACKOFF_MIN_MS;
			sy->stats.connected = 1;
			sync_metrics_write(sy);
			log_info("sync: watching %s at %s from revision %lld", sy->prefix, etcd_endpoint(sy->etcd),
				 (long long)sy->stats.revision + 1);
		}
		if (events.n && sync_apply_events(sy, &events)) {
			state = ETCD_WATCH_ENDED;
			snprintf(err, sizeof(err), "the watch ends: its events were not applied");
		}
		etcd_kvs_free(&events);
	}
	sy->stats.connected = 0;
	sync_metrics_write(sy);
	etcd_watch_stop(sy->etcd);
	if (state == ETCD_WATCH_COMPACTED) {
		sy->stats.compactions++;
		log_warn("sync: revision %lld is compacted (etcd keeps %lld on): reading %s again",
			 (long long)sy->stats.revision + 1, (long long)compacted, sy->prefix);
		return -ERANGE;
	}
	if (state == ETCD_WATCH_ENDED)
		log_warn("sync: %s", err);
	return *stop ? 0 : -EIO;
}

/* Sleeps ms, waking for stop. */
static void sync_pause(int ms, volatile sig_atomic_t *stop)
{
	for (int slept = 0; slept < ms && !*stop; slept += SYNC_POLL_MS / 4)
		nanosleep(&(struct timespec){ .tv_nsec = SYNC_POLL_MS / 4 * 1000000L }, NULL);
}

static void sync_run(struct sync *sy, volatile sig_atomic_t *stop)
{
	int backoff_ms = SYNC_BACKOFF_MIN_MS, ret;
	bool read_whole = true, started = false;

	while (!*stop) {
		ret = 0;
		if (read_whole) {
			ret = sync_full_read(sy, started ? "after a compaction, at" : "read at");
			read_whole = ret != 0;
			started = started || ret == 0;
		}
		if (!ret)
			ret = sync_follow(sy, stop, &backoff_ms);
		if (ret == -ERANGE) {
			read_whole = true;
			continue;
		}
		if (!ret || *stop)
			continue;
		sy->stats.reconnects++;
		sync_metrics_write(sy);
		etcd_next_endpoint(sy->etcd);
		log_info("sync: retrying in %d ms at %s", backoff_ms, etcd_endpoint(sy->etcd));
		sync_pause(backoff_ms, stop);
		backoff_ms = backoff_ms * 2 > SYNC_BACKOFF_MAX_MS ? SYNC_BACKOFF_MAX_MS : backoff_ms * 2;
	}
}

int control_sync(struct store *s, const struct identity_key *key, const struct sync_opts *o,
		 volatile sig_atomic_t *stop)
{
	struct sync sy = { .s = s, .key = key, .prefix = o->prefix, .metrics_path = o->metrics_path };
	char err[ETCD_ERRLEN] = "";
	int ret = etcd_client_new(&sy.etcd, &o->etcd, err, sizeof(err));

	if (ret) {
		log_error("sync: %s", err);
		etcd_client_free(sy.etcd);
		return ret;
	}
	log_info("sync: %s from %s", o->prefix, etcd_endpoint(sy.etcd));
	sync_metrics_write(&sy);
	sync_run(&sy, stop);
	etcd_client_free(sy.etcd);
	return 0;
}

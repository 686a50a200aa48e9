/* control.h: the local control plane (docs/control-plane.md): records in,
 * a checked plan, then the store changed VM by VM.  Every function that
 * touches the store wants its lock held. */
#ifndef IMDS_CONTROL_H
#define IMDS_CONTROL_H
#include <stdbool.h>
#include <stddef.h>
#include <signal.h>
#include <stdio.h>

#include "compile/vmconf.h"
#include "control/etcd.h"
#include "store/store.h"

struct identity_key;

/* Records read from one file or more (records.c). */
struct record_file {
	struct vm_set set;
	char **canonical; /* per VM of set: its record as canonical JSON (sorted keys, compact) */
};

struct record_batch {
	struct record_file *files;
	size_t n;
};

/* Reads `path`: a file, or (dir_ok) a directory whose *.json files are read
 * in name order.  Validates each file and checks that no instance-id, MAC or
 * IPv4 appears twice across files.  0, or -EINVAL/-ENOENT/-ENOMEM with err
 * naming FILE:LINE:COL. */
int record_batch_read(struct record_batch *b, const char *path, bool dir_ok, struct conf_error *err);
/* Adds one file read from memory (source names it in messages). */
int record_batch_parse(struct record_batch *b, const char *source, const char *text, size_t len,
		       struct conf_error *err);
/* Cross-file duplicates (record_batch_read calls it). */
int record_batch_check(const struct record_batch *b, struct conf_error *err);
void record_batch_free(struct record_batch *b);
/* Every loaded VM's kept record, as a file `load` reads ({"vms": [...]}),
 * in slot order; *missing counts VMs that have none (loaded by an older
 * version).  NULL if out of memory. */
json_t *record_export(const struct store *s, int *missing);
/* A name `load DIR` and `watch DIR` read: *.json, not hidden (a writer's
 * temporary such as .vms.json.tmp is skipped). */
bool record_file_name_ok(const char *name);
/* The directory's record file names, sorted; free each and the array. */
int record_dir_names(const char *dir, char ***names, size_t *n, struct conf_error *err);
/* The VM's canonical record text; NULL if out of memory. */
char *record_canonical(const struct vm_desc *vm);

enum plan_action { PLAN_ADD, PLAN_UPDATE, PLAN_UNCHANGED, PLAN_DELETE, PLAN_ACTIONS };

struct plan_step {
	enum plan_action action;
	char instance_id[IMDS_INSTANCE_ID_MAX];
	const struct vm_set *set; /* NULL for a delete */
	const struct vm_desc *vm;
	const char *record; /* canonical text, owned by the batch */
};

struct plan {
	struct plan_step *steps;
	size_t n;
	int count[PLAN_ACTIONS];
	/* Set between plan_make and plan_execute (sync): a record that names
	 * no port and is not first-use leaves its VM's binding as `bind` or
	 * `unbind` (the libvirt hook) made it, where a loader restores the
	 * record's (docs/control-plane.md, "What sync owns"). */
	bool keep_bindings;
};

enum plan_mode {
	PLAN_LOAD,  /* every record is compiled and put, changed or not */
	PLAN_MERGE, /* only changed records; nothing else deleted */
	PLAN_APPLY, /* only changed records; every loaded VM not in the batch deleted */
};

/* Compares the batch with the store (plan.c).  `doomed` (may be NULL) names
 * VMs to delete besides (watch: VMs a file no longer holds), when loaded
 * and not in the batch.  Then checks the plan against the store: MAC/IPv4
 * conflicts with VMs that stay, VM slots, arena room.  0, or -errno with a
 * precise message in err. */
int plan_make(struct plan *p, struct store *s, const struct record_batch *b, enum plan_mode mode,
	      const char *const *doomed, size_t n_doomed, const struct identity_key *key, struct conf_error *err);
void plan_free(struct plan *p);
/* "3 added, 1 updated, 2 deleted, 994 unchanged" */
void plan_summary(const struct plan *p, char *out, size_t outlen);
/* One line per change ("add i-…", "update i-…", "delete i-…"). */
void plan_print(const struct plan *p, FILE *f);

/* Carries the plan out (publish.c): deletes first, then each add or update
 * compiled (signed with key) and published atomically.  0, or -errno with
 * err saying which VM failed and how many steps were done. */
int plan_execute(const struct plan *p, struct store *s, const struct identity_key *key, struct conf_error *err);

/* A loaded VM's record with changes (patch.c): each `sets[i]` is
 * PATH=VALUE (VALUE is JSON if it parses as JSON, else a string), each
 * `unsets[i]` a PATH; PATH is dot-separated keys ("meta-data.placement",
 * "options.hop-limit", "user-data").  The result is a new file text
 * {"vms":[record]} in *out (malloc'ed).  0 or -errno with err. */
int record_patch(const struct store *s, const char *instance_id, char *const *sets, size_t n_sets,
		 char *const *unsets, size_t n_unsets, char **out, struct conf_error *err);

/* Recovery a writer runs when it takes the lock (store_recover), with a
 * line on stderr when it found anything. */
int control_recover(struct store *s);

/* Follows DIR until *stop (watch.c): applies each *.json file when it is
 * closed after writing or renamed in, deletes its VMs when it is removed or
 * renamed away.  Takes the store lock per change.  Returns when *stop is
 * set (0) or DIR cannot be watched (-errno). */
int control_watch(struct store *s, const char *dir, const struct identity_key *key, volatile sig_atomic_t *stop);

/* `imds-loadmap sync` (sync.c): the store follows the VMs under one
 * prefix of etcd until *stop (docs/control-plane.md, "etcd"). */
struct sync_opts {
	const char *prefix; /* "/imds/hosts/HOST/vms/" */
	struct etcd_opts etcd;
	const char *metrics_path; /* a file of Prometheus text, or NULL */
};

int control_sync(struct store *s, const struct identity_key *key, const struct sync_opts *o,
		 volatile sig_atomic_t *stop);

#endif

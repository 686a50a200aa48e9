/* sync_apply.c: a set of etcd keys' new states made into one change of
 * the store.  Each key's value is one VM record (docs/vm-schema.md's VM
 * object), read by the loader's own parser as a file of one VM; a record
 * that does not validate, or whose instance-id is not the key's name, is
 * reported with the key and the loader's error and left out, so its VM
 * keeps its last good data.  The rest become one plan (only changed
 * records republished).  When the plan as a whole is refused (two keys
 * with one MAC, arena full), each key is tried on its own so that one bad
 * record holds up no other VM. */
#include "control/sync.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "lib/log.h"

/* The instance-id a key names: what follows the prefix, without '/'. */
const char *sync_key_id(const struct sync *sy, const char *key)
{
	size_t n = strlen(sy->prefix);
	const char *id = key + n;

	if (strncmp(key, sy->prefix, n) != 0 || !*id || strchr(id, '/') || strlen(id) >= IMDS_INSTANCE_ID_MAX)
		return NULL;
	return id;
}

static void sync_report(struct sync *sy, const struct sync_change *ch, const char *why)
{
	bool names_key = strncmp(why, ch->key, strlen(ch->key)) == 0;

	sy->stats.invalid++;
	log_error("sync: revision %lld: %s%s%s (its VM keeps its last good data)", (long long)ch->revision,
		  names_key ? "" : ch->key, names_key ? "" : ": ", why);
}

/* The loader reads "{"vms":[\n" VALUE "\n]}": its line numbers are one
 * past the value's, which the message is given back in. */
static void sync_fix_line(const char *key, struct conf_error *err)
{
	size_t n = strlen(key);
	char *end, rest[sizeof(err->text)];
	long line;

	if (strncmp(err->text, key, n) != 0 || err->text[n] != ':')
		return;
	line = strtol(err->text + n + 1, &end, 10);
	if (end == err->text + n + 1 || *end != ':' || line < 2)
		return;
	snprintf(rest, sizeof(rest), "%s", end);
	snprintf(err->text + n, sizeof(err->text) - n, ":%ld%s", line - 1, rest);
}

/* One key's record into the batch, or a report of why not. */
static int sync_parse(struct sync *sy, const struct sync_change *ch, struct record_batch *b)
{
	struct conf_error err = { "" };
	char *text = NULL;
	int len = asprintf(&text, "{\"vms\":[\n%.*s\n]}", (int)ch->value_len, ch->value), ret;
	size_t before = b->n;

	if (len < 0)
		return -ENOMEM;
	ret = record_batch_parse(b, ch->key, text, (size_t)len, &err);
	free(text);
	if (ret == -ENOMEM)
		return ret;
	if (!ret && b->files[before].set.n != 1) {
		snprintf(err.text, sizeof(err.text), "%s: the value is %zu VMs, not one VM's record", ch->key,
			 b->files[before].set.n);
		ret = -EINVAL;
	} else if (!ret && strcmp(b->files[before].set.vms[0].instance_id, ch->id) != 0) {
		snprintf(err.text, sizeof(err.text), "%s: instance-id \"%s\" is not the key's name \"%s\"", ch->key,
			 b->files[before].set.vms[0].instance_id, ch->id);
		ret = -EINVAL;
	}
	if (ret && b->n > before) { /* parsed, then refused: out of the batch */
		for (size_t i = 0; i < b->files[before].set.n; i++)
			free(b->files[before].canonical[i]);
		free(b->files[before].canonical);
		vmconf_free(&b->files[before].set);
		b->n = before;
	}
	if (ret) {
		sync_fix_line(ch->key, &err);
		sync_report(sy, ch, err.text);
	}
	return 0;
}

/* Plans and carries out, under the store's lock. */
static int sync_execute(struct sync *sy, const struct record_batch *b, const char *const *doomed, size_t n_doomed,
			struct plan *p, struct conf_error *err)
{
	int ret = store_lock(sy->s);

	if (ret) {
		snprintf(err->text, sizeof(err->text), "cannot lock the store: %s", strerror(-ret));
		return ret;
	}
	ret = control_recover(sy->s);
	if (!ret && (ret = plan_make(p, sy->s, b, PLAN_MERGE, doomed, n_doomed, sy->key, err)) == 0) {
		p->keep_bindings = true;
		ret = plan_execute(p, sy->s, sy->key, err);
		if (ret)
			plan_free(p);
	}
	store_unlock(sy->s);
	return ret;
}

static void sync_count(struct sync *sy, const struct plan *p, struct plan *total)
{
	sy->stats.added += (uint64_t)p->count[PLAN_ADD];
	sy->stats.updated += (uint64_t)p->count[PLAN_UPDATE];
	sy->stats.deleted += (uint64_t)p->count[PLAN_DELETE];
	for (int a = 0; a < PLAN_ACTIONS; a++)
		total->count[a] += p->count[a];
}

/* The batch refused as a whole: the deletes, then each record alone. */
static void sync_one_by_one(struct sync *sy, const struct sync_change *ch, size_t n, const struct record_batch *b,
			    const char *const *doomed, size_t n_doomed, struct plan *total)
{
	struct record_batch none = { 0 }, one;
	struct conf_error err = { "" };
	struct plan p;

	if (sync_execute(sy, &none, doomed, n_doomed, &p, &err) == 0) {
		sync_count(sy, &p, total);
		plan_free(&p);
	} else
		log_error("sync: cannot delete the VMs whose keys are gone: %s", err.text);
	for (size_t i = 0; i < b->n; i++) {
		const struct sync_change *c = ch;

		while (c < ch + n && (c->deleted || strcmp(c->key, b->files[i].set.source) != 0))
			c++;
		one = (struct record_batch){ .files = &b->files[i], .n = 1 };
		err.text[0] = '\0';
		if (sync_execute(sy, &one, NULL, 0, &p, &err) == 0) {
			sync_count(sy, &p, total);
			plan_free(&p);
		} else if (c < ch + n) {
			sync_fix_line(c->key, &err);
			sync_report(sy, c, err.text);
		}
	}
}

/* Applies the changes (the last state of each key), deleting besides the
 * VMs `doomed` names.  0, or -ENOMEM; each refused record is reported. */
int sync_apply(struct sync *sy, const struct sync_change *ch, size_t n, const char *const *doomed, size_t n_doomed,
	       struct plan *total)
{
	struct conf_error err = { "" };
	struct record_batch b = { 0 };
	const char **gone = calloc(n + n_doomed + 1, sizeof(*gone));
	size_t n_gone = 0;
	struct plan p;
	int ret = gone ? 0 : -ENOMEM;

	memset(total, 0, sizeof(*total));
	for (size_t i = 0; i < n_doomed && !ret; i++)
		gone[n_gone++] = doomed[i];
	for (size_t i = 0; i < n && !ret; i++) {
		if (ch[i].deleted)
			gone[n_gone++] = ch[i].id;
		else
			ret = sync_parse(sy, &ch[i], &b);
	}
	if (!ret && record_batch_check(&b, &err) == 0 && sync_execute(sy, &b, gone, n_gone, &p, &err) == 0) {
		sync_count(sy, &p, total);
		plan_free(&p);
	} else if (!ret) {
		for (size_t i = 0; i < n; i++)
			sync_fix_line(ch[i].key, &err); /* the one it names */
		log_warn("sync: the change as a whole is refused (%s): applying each key on its own", err.text);
		sync_one_by_one(sy, ch, n, &b, gone, n_gone, total);
	}
	record_batch_free(&b);
	free(gone);
	return ret;
}

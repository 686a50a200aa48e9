/* patch.c: `imds-loadmap update INSTANCE-ID --set PATH=VALUE --unset PATH`.
 * The store keeps each VM's canonical record beside its tree (record.c in
 * store/), so an update starts from exactly what the VM was compiled from,
 * changes the named members, and goes through the loader's validation and
 * publication like any record. */
#include "control/control.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* The object that holds PATH's last key, creating objects on the way when
 * `create`; *last points at that key inside `path` (modified in place). */
static json_t *patch_parent(json_t *rec, char *path, bool create, char **last, struct conf_error *err,
			    const char *whole)
{
	json_t *at = rec;
	char *dot;

	while ((dot = strchr(path, '.'))) {
		json_t *next;

		*dot = '\0';
		next = json_object_get(at, path);
		if (!next && create) {
			next = json_object();
			if (!next || json_object_set_new(at, path, next)) {
				snprintf(err->text, sizeof(err->text), "out of memory");
				return NULL;
			}
		}
		if (!json_is_object(next)) {
			snprintf(err->text, sizeof(err->text), "%s: %s is %s in the record", whole, path,
				 next ? "not an object" : "absent");
			return NULL;
		}
		at = next;
		path = dot + 1;
	}
	*last = path;
	return at;
}

static bool patch_path_ok(const char *path, const char *whole, struct conf_error *err)
{
	size_t n = strlen(path);

	if (n == 0 || path[0] == '.' || path[n - 1] == '.' || strstr(path, "..")) {
		snprintf(err->text, sizeof(err->text), "%s: PATH is keys separated by '.', none empty", whole);
		return false;
	}
	if (strcmp(path, "instance-id") == 0) {
		snprintf(err->text, sizeof(err->text), "%s: the instance-id names the VM and cannot be updated", whole);
		return false;
	}
	return true;
}

/* VALUE is JSON when it parses as JSON ("2", "true", "{...}", "\"text\""),
 * else the string itself. */
static json_t *patch_value(const char *text)
{
	json_t *v = json_loads(text, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, NULL);

	return v ? v : json_string(text);
}

static int patch_set(json_t *rec, const char *arg, struct conf_error *err)
{
	char whole[512], *path = strdup(arg), *eq, *last;
	json_t *parent, *value;
	int ret = -EINVAL;

	if (!path)
		return -ENOMEM;
	eq = strchr(path, '=');
	if (!eq) {
		snprintf(err->text, sizeof(err->text), "--set %s: want PATH=VALUE", arg);
		goto out;
	}
	*eq = '\0';
	snprintf(whole, sizeof(whole), "--set %.490s", arg);
	if (!patch_path_ok(path, whole, err) || !(parent = patch_parent(rec, path, true, &last, err, whole)))
		goto out;
	value = patch_value(eq + 1);
	if (!value || json_object_set_new(parent, last, value)) {
		snprintf(err->text, sizeof(err->text), "out of memory");
		goto out;
	}
	ret = 0;
out:
	free(path);
	return ret;
}

static int patch_unset(json_t *rec, const char *arg, struct conf_error *err)
{
	char whole[512], *path = strdup(arg), *last;
	json_t *parent;
	int ret = -EINVAL;

	if (!path)
		return -ENOMEM;
	snprintf(whole, sizeof(whole), "--unset %.490s", arg);
	if (patch_path_ok(path, whole, err) && (parent = patch_parent(rec, path, false, &last, err, whole))) {
		if (json_object_del(parent, last) == 0)
			ret = 0;
		else
			snprintf(err->text, sizeof(err->text), "%s: not in the record", whole);
	}
	free(path);
	return ret;
}

static json_t *patch_load(const struct store *s, const char *instance_id, struct conf_error *err)
{
	int slot = store_find(s, instance_id), ret;
	const char *text;
	json_t *rec;
	size_t len;

	if (slot < 0) {
		snprintf(err->text, sizeof(err->text), "no VM %s is loaded", instance_id);
		return NULL;
	}
	ret = store_record(s, (uint32_t)slot, &text, &len);
	if (ret) {
		snprintf(err->text, sizeof(err->text), "%s: the store keeps no record of it (%s); load its record again",
			 instance_id, ret == -ENODATA ? "loaded by an older version" : "unreadable");
		return NULL;
	}
	rec = json_loadb(text, len, 0, NULL);
	if (!json_is_object(rec)) {
		json_decref(rec);
		snprintf(err->text, sizeof(err->text), "%s: its kept record is not a JSON object", instance_id);
		return NULL;
	}
	return rec;
}

int record_patch(const struct store *s, const char *instance_id, char *const *sets, size_t n_sets,
		 char *const *unsets, size_t n_unsets, char **out, struct conf_error *err)
{
	json_t *rec = patch_load(s, instance_id, err), *doc;
	int ret = rec ? 0 : -ENOENT;

	for (size_t i = 0; !ret && i < n_unsets; i++)
		ret = patch_unset(rec, unsets[i], err);
	for (size_t i = 0; !ret && i < n_sets; i++)
		ret = patch_set(rec, sets[i], err);
	if (ret) {
		json_decref(rec);
		return ret;
	}
	doc = json_pack("{s:[o]}", "vms", rec);
	/* Indented, so the loader's LINE:COL point at one member per line. */
	*out = doc ? json_dumps(doc, JSON_INDENT(2) | JSON_SORT_KEYS) : NULL;
	json_decref(doc);
	if (!*out) {
		snprintf(err->text, sizeof(err->text), "out of memory");
		return -ENOMEM;
	}
	return 0;
}

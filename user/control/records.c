/* records.c: VM records read from files and directories into one batch.
 * Each file is validated by the loader's own parser (FILE:LINE:COL errors);
 * across files, an instance-id, MAC or IPv4 given twice is reported at its
 * second occurrence.  Each VM keeps its record as canonical JSON (keys
 * sorted, compact): the form the store keeps beside the tree and apply
 * compares to tell a changed record from an unchanged one. */
#include "control/control.h"

#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "lib/macaddr.h"

char *record_canonical(const struct vm_desc *vm)
{
	return json_dumps(vm->record, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENSURE_ASCII);
}

static int batch_grow(struct record_batch *b)
{
	struct record_file *f = realloc(b->files, (b->n + 1) * sizeof(*f));

	if (!f)
		return -ENOMEM;
	b->files = f;
	memset(&b->files[b->n], 0, sizeof(b->files[b->n]));
	return 0;
}

/* The file just read becomes the batch's last, with its canonical records;
 * the batch owns it from here, even on error. */
static int batch_keep(struct record_batch *b, struct vm_set *set, struct conf_error *err)
{
	struct record_file *f;

	if (batch_grow(b)) {
		vmconf_free(set);
		goto nomem;
	}
	f = &b->files[b->n++];
	f->set = *set;
	f->canonical = calloc(set->n ? set->n : 1, sizeof(*f->canonical));
	if (!f->canonical)
		goto nomem;
	for (size_t i = 0; i < set->n; i++)
		if (!(f->canonical[i] = record_canonical(&set->vms[i])))
			goto nomem;
	return 0;
nomem:
	snprintf(err->text, sizeof(err->text), "records: out of memory");
	return -ENOMEM;
}

int record_batch_parse(struct record_batch *b, const char *source, const char *text, size_t len,
		       struct conf_error *err)
{
	struct vm_set set;
	int ret = vmconf_parse(source, text, len, &set, err);

	return ret ? ret : batch_keep(b, &set, err);
}

static int batch_read_file(struct record_batch *b, const char *path, struct conf_error *err)
{
	struct vm_set set;
	int ret = vmconf_load_file(path, &set, err);

	return ret ? ret : batch_keep(b, &set, err);
}

static int name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

bool record_file_name_ok(const char *name)
{
	size_t n = strlen(name);

	return name[0] != '.' && n > 5 && strcmp(name + n - 5, ".json") == 0;
}

/* The directory's *.json names, sorted (a hidden file, such as an editor's
 * or a writer's temporary, is skipped). */
int record_dir_names(const char *dir, char ***names, size_t *n, struct conf_error *err)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	char **v = NULL;

	*n = 0;
	if (!d) {
		snprintf(err->text, sizeof(err->text), "%s: %s", dir, strerror(errno));
		return -errno;
	}
	while ((de = readdir(d))) {
		char **nv;

		if (!record_file_name_ok(de->d_name))
			continue;
		nv = realloc(v, (*n + 1) * sizeof(*v));
		if (!nv || !(nv[*n] = strdup(de->d_name))) {
			free(nv ? nv : v);
			closedir(d);
			snprintf(err->text, sizeof(err->text), "%s: out of memory", dir);
			return -ENOMEM;
		}
		v = nv;
		(*n)++;
	}
	closedir(d);
	qsort(v, *n, sizeof(*v), name_cmp);
	*names = v;
	return 0;
}

static int batch_read_dir(struct record_batch *b, const char *dir, struct conf_error *err)
{
	char **names = NULL, path[4096];
	size_t n = 0;
	int ret = record_dir_names(dir, &names, &n, err);

	for (size_t i = 0; !ret && i < n; i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
		ret = batch_read_file(b, path, err);
	}
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
	return ret;
}

int record_batch_read(struct record_batch *b, const char *path, bool dir_ok, struct conf_error *err)
{
	struct stat st;
	int ret;

	if (stat(path, &st) < 0) {
		snprintf(err->text, sizeof(err->text), "%s: %s", path, strerror(errno));
		return -errno;
	}
	if (S_ISDIR(st.st_mode) && !dir_ok) {
		snprintf(err->text, sizeof(err->text), "%s: is a directory (this command reads one file)", path);
		return -EISDIR;
	}
	ret = S_ISDIR(st.st_mode) ? batch_read_dir(b, path, err) : batch_read_file(b, path, err);
	return ret ? ret : record_batch_check(b, err);
}

/* Which of a VM's keys equals another's: "instance-id", "mac", "ipv4" or NULL. */
static const char *same_key(const struct vm_desc *a, const struct vm_desc *v)
{
	if (strcmp(a->instance_id, v->instance_id) == 0)
		return "instance-id";
	if (memcmp(a->mac, v->mac, 6) == 0)
		return "mac";
	if (a->ipv4 == v->ipv4)
		return "ipv4";
	return NULL;
}

/* A VM of file j against every VM of the files before it (each file has
 * checked itself).  Quadratic in VMs, with cheap steps: 1,000 VMs cost
 * half a million comparisons, far below compiling them. */
int record_batch_check(const struct record_batch *b, struct conf_error *err)
{
	char path[64];

	for (size_t j = 1; j < b->n; j++)
		for (size_t v = 0; v < b->files[j].set.n; v++)
			for (size_t i = 0; i < j; i++)
				for (size_t a = 0; a < b->files[i].set.n; a++) {
					const struct vm_desc *vm = &b->files[j].set.vms[v], *other = &b->files[i].set.vms[a];
					const char *key = same_key(other, vm);

					if (!key)
						continue;
					snprintf(path, sizeof(path), "%s.%s", vm->json_path, key);
					return vmconf_error_at(&b->files[j].set, err, path, "%s is also in %s (%s, %s)",
							       key, b->files[i].set.source, other->json_path,
							       other->instance_id);
				}
	return 0;
}

void record_batch_free(struct record_batch *b)
{
	for (size_t i = 0; i < b->n; i++) {
		struct record_file *f = &b->files[i];

		for (size_t k = 0; f->canonical && k < f->set.n; k++)
			free(f->canonical[k]);
		free(f->canonical);
		vmconf_free(&f->set);
	}
	free(b->files);
	b->files = NULL;
	b->n = 0;
}

json_t *record_export(const struct store *s, int *missing)
{
	json_t *vms = json_array(), *doc = json_pack("{s:o}", "vms", vms);

	*missing = 0;
	for (uint32_t slot = 1; doc && slot < s->max_slots; slot++) {
		const char *text;
		json_t *rec;
		size_t len;

		if (!store_vm_active(&s->vms[slot]))
			continue;
		if (store_record(s, slot, &text, &len) < 0 || !(rec = json_loadb(text, len, 0, NULL))) {
			(*missing)++;
			continue;
		}
		json_array_append_new(vms, rec);
	}
	return doc;
}

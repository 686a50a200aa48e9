/* watch.c: `imds-loadmap watch DIR`.  inotify reports a file closed after
 * writing, renamed in or out, or deleted (never each write, so a file
 * being written is never read half-way); each such *.json file is applied
 * on its own: its VMs added or updated when changed, the VMs it held before
 * and no longer holds deleted.  A file that does not validate is reported
 * with the loader's error and its VMs keep their last good data.  Which
 * file holds which VMs is kept here, in memory, from the first scan on. */
#include "control/control.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <unistd.h>

#define WATCH_EVENTS (IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE)

struct watch_file {
	char *name;
	char **ids; /* the VMs the file held at its last good read */
	size_t n;
};

struct watch {
	struct store *s;
	const struct identity_key *key;
	const char *dir;
	struct watch_file *files;
	size_t n;
};

static struct watch_file *watch_file(struct watch *w, const char *name, bool create)
{
	struct watch_file *f;

	for (size_t i = 0; i < w->n; i++)
		if (strcmp(w->files[i].name, name) == 0)
			return &w->files[i];
	if (!create || !(f = realloc(w->files, (w->n + 1) * sizeof(*f))))
		return NULL;
	w->files = f;
	f = &w->files[w->n];
	*f = (struct watch_file){ .name = strdup(name) };
	if (!f->name)
		return NULL;
	w->n++;
	return f;
}

static void watch_forget_ids(struct watch_file *f)
{
	for (size_t i = 0; i < f->n; i++)
		free(f->ids[i]);
	free(f->ids);
	f->ids = NULL;
	f->n = 0;
}

static int watch_own(struct watch_file *f, const struct vm_set *set)
{
	watch_forget_ids(f);
	f->ids = calloc(set->n ? set->n : 1, sizeof(*f->ids));
	if (!f->ids)
		return -ENOMEM;
	for (size_t i = 0; i < set->n; i++) {
		if (!(f->ids[i] = strdup(set->vms[i].instance_id)))
			return -ENOMEM;
		f->n++;
	}
	return 0;
}

/* A VM of the file that another watched file already holds. */
static int watch_claimed(const struct watch *w, const struct watch_file *self, const struct vm_set *set,
			 struct conf_error *err)
{
	char path[64];

	for (size_t i = 0; i < w->n; i++) {
		if (&w->files[i] == self)
			continue;
		for (size_t k = 0; k < w->files[i].n; k++)
			for (size_t v = 0; v < set->n; v++) {
				if (strcmp(w->files[i].ids[k], set->vms[v].instance_id) != 0)
					continue;
				snprintf(path, sizeof(path), "%s.instance-id", set->vms[v].json_path);
				return vmconf_error_at(set, err, path, "%s is also in %s/%s", set->vms[v].instance_id,
						       w->dir, w->files[i].name);
			}
	}
	return 0;
}

/* Applies the file as it is now (absent: its VMs go), under the lock. */
static int watch_apply(struct watch *w, struct watch_file *f, const struct record_batch *b, struct conf_error *err)
{
	struct plan p;
	char summary[128];
	int ret;

	ret = store_lock(w->s);
	if (ret) {
		snprintf(err->text, sizeof(err->text), "cannot lock the store: %s", strerror(-ret));
		return ret;
	}
	ret = control_recover(w->s);
	if (!ret)
		ret = plan_make(&p, w->s, b, PLAN_MERGE, (const char *const *)f->ids, f->n, w->key, err);
	if (!ret) {
		ret = plan_execute(&p, w->s, w->key, err);
		if (!ret) {
			plan_summary(&p, summary, sizeof(summary));
			printf("%s/%s: %s\n", w->dir, f->name, summary);
			fflush(stdout);
		}
		plan_free(&p);
	}
	store_unlock(w->s);
	return ret;
}

static void watch_sync(struct watch *w, const char *name)
{
	struct watch_file *f = watch_file(w, name, true);
	struct record_batch b = { 0 };
	struct conf_error err = { "" };
	char path[4096];
	int ret;

	if (!f) {
		fprintf(stderr, "imds-loadmap: watch: out of memory\n");
		return;
	}
	snprintf(path, sizeof(path), "%s/%s", w->dir, name);
	if (access(path, F_OK) < 0 && errno == ENOENT)
		ret = 0; /* removed or renamed away: an empty batch deletes what it held */
	else if ((ret = record_batch_read(&b, path, false, &err)) == 0)
		ret = watch_claimed(w, f, &b.files[0].set, &err);
	if (!ret)
		ret = watch_apply(w, f, &b, &err);
	if (!ret)
		ret = b.n ? watch_own(f, &b.files[0].set) : (watch_forget_ids(f), 0);
	if (ret)
		fprintf(stderr, "imds-loadmap: watch: %s (its VMs keep their last good data)\n",
			err.text[0] ? err.text : strerror(-ret));
	fflush(stderr);
	record_batch_free(&b);
}

static int watch_scan(struct watch *w)
{
	struct conf_error err = { "" };
	char **names = NULL;
	size_t n = 0;
	int ret = record_dir_names(w->dir, &names, &n, &err);

	if (ret) {
		fprintf(stderr, "imds-loadmap: watch: %s\n", err.text);
		return ret;
	}
	for (size_t i = 0; i < n; i++) {
		watch_sync(w, names[i]);
		free(names[i]);
	}
	free(names);
	return 0;
}

/* Handles one read's worth of events; each name once. */
static void watch_events(struct watch *w, const char *buf, ssize_t len)
{
	const char *seen[64];
	size_t nseen = 0;

	for (const char *p = buf; p < buf + len;) {
		const struct inotify_event *ev = (const struct inotify_event *)p;
		bool dup = false;

		p += sizeof(*ev) + ev->len;
		if (!ev->len || !record_file_name_ok(ev->name))
			continue;
		for (size_t i = 0; i < nseen && !dup; i++)
			dup = strcmp(seen[i], ev->name) == 0;
		if (dup)
			continue;
		if (nseen < sizeof(seen) / sizeof(seen[0]))
			seen[nseen++] = ev->name;
		watch_sync(w, ev->name);
	}
}

int control_watch(struct store *s, const char *dir, const struct identity_key *key, volatile sig_atomic_t *stop)
{
	struct watch w = { .s = s, .key = key, .dir = dir };
	char buf[64 * 1024] __attribute__((aligned(__alignof__(struct inotify_event))));
	int fd = inotify_init1(IN_CLOEXEC | IN_NONBLOCK), ret = 0;

	/* Watching before the first scan: a change during it is not lost. */
	if (fd < 0 || inotify_add_watch(fd, dir, WATCH_EVENTS | IN_ONLYDIR) < 0) {
		ret = -errno;
		fprintf(stderr, "imds-loadmap: watch: %s: %s\n", dir, strerror(-ret));
		goto out;
	}
	ret = watch_scan(&w);
	while (!ret && !*stop) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		ssize_t len;

		if (poll(&pfd, 1, 1000) <= 0)
			continue; /* a timeout or a signal: look at *stop */
		len = read(fd, buf, sizeof(buf));
		if (len > 0)
			watch_events(&w, buf, len);
	}
out:
	for (size_t i = 0; i < w.n; i++) {
		watch_forget_ids(&w.files[i]);
		free(w.files[i].name);
	}
	free(w.files);
	if (fd >= 0)
		close(fd);
	return ret;
}

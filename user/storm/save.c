/* save.c: --save.  The body of a 200 answer goes to DIR/<VM's IPv4>/<path>,
 * a listing to <path>/_index, so a static file server given DIR/<IPv4> as
 * its root (nginx in scripts/bench.sh, with "try_files $uri $uri/_index")
 * serves the very bytes this server sent.  --status-only reads the
 * listings back, to walk a server that does not list (the null responder). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "storm/save.h"

/* Creates every parent directory of path. */
static int storm_mkdirs(char *path)
{
	for (char *p = strchr(path + 1, '/'); p; p = strchr(p + 1, '/')) {
		int rc;

		*p = '\0';
		rc = mkdir(path, 0755);
		*p = '/';
		if (rc && errno != EEXIST)
			return -errno;
	}
	return 0;
}

/* A path that could leave DIR (a ".." segment from a listing) is not
 * saved: a listing comes from the server under test. */
static int storm_save_path_ok(const char *path)
{
	size_t n = strlen(path);

	return !strstr(path, "/../") && !strstr(path, "/./") && !(n >= 3 && !strcmp(path + n - 3, "/..")) &&
	       !(n >= 2 && !strcmp(path + n - 2, "/."));
}

static int storm_write_file(const char *file, const struct outbuf *b)
{
	int fd = open(file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	size_t off = 0;
	int err = 0;

	if (fd < 0)
		return -errno;
	while (!err && off < b->len) {
		ssize_t w = write(fd, b->data + off, b->len - off);

		if (w < 0)
			err = -errno;
		else
			off += (size_t)w;
	}
	if (close(fd) && !err)
		err = -errno;
	return err;
}

/* DIR/<ipv4>/<path>, or <path>/_index for a listing; -EINVAL for a path
 * that could leave DIR or does not fit. */
static int storm_saved_name(char *file, size_t size, const char *dir, const char *ipv4, const char *path,
			    int is_listing)
{
	size_t n = strlen(path);
	int len = snprintf(file, size, "%s/%s%s%s", dir, ipv4, path,
			   !is_listing ? "" : path[n - 1] == '/' ? "_index" : "/_index");

	return len < (int)size && storm_save_path_ok(path) ? 0 : -EINVAL;
}

void storm_save(const char *dir, const char *ipv4, const char *path, int is_listing, const struct outbuf *body,
		uint64_t *errors)
{
	char file[1024];
	int err = storm_saved_name(file, sizeof(file), dir, ipv4, path, is_listing);

	if (!err) {
		err = storm_mkdirs(file);
		if (!err)
			err = storm_write_file(file, body);
	}
	if (err && !__atomic_fetch_add(errors, 1, __ATOMIC_RELAXED))
		fprintf(stderr, "imds-storm: --save: cannot write %s: %s\n", file, strerror(-err));
}

int storm_saved_listing(const char *dir, const char *ipv4, const char *path, struct outbuf *body)
{
	char file[1024], chunk[4096];
	int fd, err = storm_saved_name(file, sizeof(file), dir, ipv4, path, 1);
	ssize_t r = 0;

	outbuf_reset(body);
	if (err)
		return err;
	fd = open(file, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? 0 : -errno;
	while (!err && (r = read(fd, chunk, sizeof(chunk))) > 0)
		err = outbuf_append(body, chunk, (size_t)r);
	if (r < 0 && !err)
		err = -errno;
	close(fd);
	return err;
}

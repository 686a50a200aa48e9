/* imds-libvirt-hook.c: the libvirt QEMU hook (/etc/libvirt/hooks/qemu.d/imds).
 * libvirt runs it with argv (domain, operation, sub-operation, extra) and
 * the domain XML on stdin (docs/libvirt.md).  For a domain with an
 * <imds:vm> element it checks the record at `prepare` (a bad record stops
 * the start), loads it pinned to the tap at `started` and `reconnect`, and
 * deletes it at `release`; every other call and every other domain: exit 0.
 * With IMDS_LIBVIRT_RECORDS=etcd the records are etcd's (imds-loadmap sync
 * owns the store): the hook only pins the VM its <imds:vm> names by
 * instance-id to the tap at `started`/`reconnect`, and unpins it at `release`.
 * All the work on the store is imds-loadmap's: the hook only builds the
 * record and runs it.  It never calls libvirtd (a hook that does deadlocks).
 * Exit codes: 0 ok, 1 failure (libvirt aborts a start), 2 usage.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "lib/namelist.h"
#include "libvirt/domxml.h"

#define HOOK_MAX_LIST 32
#define HOOK_DEFAULT_CONFIG "/etc/default/imds"
#define HOOK_DEFAULT_NETWORK_DIRS "/run/libvirt/network:/etc/libvirt/qemu/networks"

/* The settings, each from the environment or else the config file. */
struct hook_conf {
	char *loadmap, *pin_dir, *bridges, *network_dirs, *prepare, *records, *tmpdir;
	const char *bridge_v[HOOK_MAX_LIST], *dir_v[HOOK_MAX_LIST];
	bool from_etcd; /* IMDS_LIBVIRT_RECORDS=etcd */
	struct domxml_conf dx;
};

struct hook_call {
	const char *domain;
	struct hook_conf conf;
	char *xml;
	size_t xml_len;
};

static void hook_err(const struct hook_call *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void hook_err(const struct hook_call *c, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fprintf(stderr, "imds hook: domain %s: ", c->domain);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

/* The whole of a file or of stdin; NULL on error (errno set). */
static char *hook_slurp(FILE *f, size_t *len)
{
	size_t cap = 8192, n = 0, got;
	char *buf = malloc(cap + 1), *bigger;

	while (buf && (got = fread(buf + n, 1, cap - n, f)) > 0) {
		n += got;
		if (n < cap)
			continue;
		bigger = realloc(buf, (cap *= 2) + 1);
		if (!bigger)
			free(buf);
		buf = bigger;
	}
	if (buf) {
		buf[n] = '\0';
		*len = n;
	}
	return buf;
}

/* KEY's value in a /etc/default-style file: KEY=VALUE lines, '#'
 * comments, the value optionally in single or double quotes. */
static char *hook_file_value(const char *text, const char *key)
{
	size_t klen = strlen(key);

	for (const char *line = text; line && *line; line = strchr(line, '\n'), line = line ? line + 1 : NULL) {
		line += strspn(line, " \t");
		if (strncmp(line, key, klen) != 0 || line[klen] != '=')
			continue;
		const char *v = line + klen + 1;
		size_t n = strcspn(v, "\n");
		if (n >= 2 && (v[0] == '"' || v[0] == '\'') && v[n - 1] == v[0]) {
			v++;
			n -= 2;
		}
		return strndup(v, n);
	}
	return NULL;
}

static char *hook_setting(const char *file_text, const char *key, const char *dflt)
{
	const char *env = getenv(key);
	char *v = env ? strdup(env) : file_text ? hook_file_value(file_text, key) : NULL;

	return v ? v : dflt ? strdup(dflt) : NULL;
}

/* Splits s in place at any of `seps`; returns the number of fields. */
static size_t hook_split(char *s, const char *seps, const char **out, size_t cap)
{
	size_t n = 0;

	for (char *tok = strtok(s ? s : (char[]){ "" }, seps); tok && n < cap; tok = strtok(NULL, seps))
		out[n++] = tok;
	return n;
}

static void hook_conf_read(struct hook_conf *c)
{
	const char *path = getenv("IMDS_CONFIG") ? getenv("IMDS_CONFIG") : HOOK_DEFAULT_CONFIG;
	FILE *f = fopen(path, "r");
	size_t len;
	char *text = f ? hook_slurp(f, &len) : NULL;

	if (f)
		fclose(f);
	c->loadmap = hook_setting(text, "IMDS_LOADMAP", "imds-loadmap");
	c->pin_dir = hook_setting(text, "IMDS_PIN_DIR", NULL);
	c->bridges = hook_setting(text, "IMDS_BRIDGES", NULL);
	c->network_dirs = hook_setting(text, "IMDS_LIBVIRT_NETWORK_DIRS", HOOK_DEFAULT_NETWORK_DIRS);
	c->prepare = hook_setting(text, "IMDS_LIBVIRT_PREPARE", "fail");
	c->records = hook_setting(text, "IMDS_LIBVIRT_RECORDS", "domain");
	c->tmpdir = hook_setting(text, "TMPDIR", "/tmp");
	free(text);
	c->from_etcd = c->records && strcmp(c->records, "etcd") == 0;
	c->dx.bridges = c->bridge_v;
	c->dx.n_bridges = hook_split(c->bridges, NAMELIST_SEPARATORS, c->bridge_v, HOOK_MAX_LIST);
	c->dx.network_dirs = c->dir_v;
	c->dx.n_network_dirs = hook_split(c->network_dirs, ":", c->dir_v, HOOK_MAX_LIST);
}

/* Runs imds-loadmap with its --pin-dir and `cmd arg [arg2]`; its messages go
 * to our stderr, which libvirt shows (virsh start) or logs.  Its exit code. */
static int hook_loadmap(const struct hook_call *c, const char *cmd, const char *arg, const char *arg2)
{
	const char *argv[8];
	size_t n = 0;
	int status;
	pid_t pid;

	argv[n++] = c->conf.loadmap;
	if (c->conf.pin_dir && c->conf.pin_dir[0]) {
		argv[n++] = "--pin-dir";
		argv[n++] = c->conf.pin_dir;
	}
	argv[n++] = cmd;
	argv[n++] = arg;
	argv[n++] = arg2;
	argv[n] = NULL;
	fflush(NULL);
	pid = fork();
	if (pid == 0) {
		dup2(STDERR_FILENO, STDOUT_FILENO);
		execvp(argv[0], (char *const *)argv);
		fprintf(stderr, "imds hook: cannot run %s: %s (IMDS_LOADMAP)\n", argv[0], strerror(errno));
		_exit(127);
	}
	if (pid < 0 || waitpid(pid, &status, 0) < 0) {
		hook_err(c, "cannot run %s: %s", argv[0], strerror(errno));
		return 1;
	}
	return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}

/* Writes {"vms":[record]} to a new temp file; its path in path[]. */
static int hook_write_record(const struct hook_call *c, json_t *record, char *path, size_t cap)
{
	json_t *file = json_pack("{s:[O]}", "vms", record);
	int fd, rc;

	snprintf(path, cap, "%s/imds-hook-XXXXXX.json", c->conf.tmpdir);
	fd = mkstemps(path, 5);
	if (!file || fd < 0) {
		rc = -errno;
		hook_err(c, "cannot write the record to %s: %s", path, strerror(errno));
		json_decref(file);
		return rc ? rc : -ENOMEM;
	}
	rc = json_dumpfd(file, fd, JSON_INDENT(2) | JSON_PRESERVE_ORDER) == 0 && write(fd, "\n", 1) == 1 ? 0 : -EIO;
	close(fd);
	json_decref(file);
	if (rc < 0) {
		hook_err(c, "cannot write the record to %s", path);
		unlink(path);
	}
	return rc;
}

/* 1 with *record, 0 when the domain is not ours, -1 after an error message. */
static int hook_record(struct hook_call *c, bool need_port, bool json_only, json_t **record)
{
	struct domxml_error err;
	int rc;

	c->conf.dx.need_port = need_port;
	c->conf.dx.json_only = json_only;
	rc = domxml_record(c->xml, c->xml_len, &c->conf.dx, record, &err);
	if (rc < 0) {
		hook_err(c, "%s", rc == -ENOMEM ? "out of memory" : err.text);
		return -1;
	}
	return rc;
}

/* Writes the record to a temp file and runs `imds-loadmap CMD FILE`. */
static int hook_run_record(struct hook_call *c, json_t *record, const char *cmd)
{
	char path[4096];
	int rc = hook_write_record(c, record, path, sizeof(path));

	if (rc < 0)
		return 1;
	rc = hook_loadmap(c, cmd, path, NULL);
	unlink(path);
	return rc;
}

/* Before QEMU exists: a bad record stops the start here, with the
 * loader's error, rather than giving a VM that boots and is never served. */
static int hook_prepare(struct hook_call *c)
{
	bool warn = strcmp(c->conf.prepare, "warn") == 0;
	json_t *record;
	int rc;

	if (c->conf.from_etcd)
		return 0; /* etcd's record was checked by sync, which holds it or says why not */
	rc = hook_record(c, false, false, &record);
	if (rc > 0) {
		rc = hook_run_record(c, record, "check") == 0 ? 1 : -1;
		json_decref(record);
	}
	if (rc >= 0)
		return 0;
	hook_err(c, warn ? "starting anyway (IMDS_LIBVIRT_PREPARE=warn): the VM will not be served"
			 : "not starting: fix the <imds:vm> record (docs/libvirt.md)");
	return warn ? 0 : 1;
}

static int hook_started_etcd(struct hook_call *c);

/* The tap exists (started) or libvirtd came back (reconnect): load the
 * VM pinned to the tap; loading an unchanged record again is harmless. */
static int hook_started(struct hook_call *c)
{
	json_t *record;
	int rc;

	if (c->conf.from_etcd)
		return hook_started_etcd(c);
	rc = hook_record(c, true, false, &record);
	if (rc <= 0)
		return rc < 0;
	rc = hook_run_record(c, record, "load");
	json_decref(record);
	return rc != 0;
}

/* `imds-loadmap CMD INSTANCE-ID [PORT]` for the record's VM. */
static int hook_run_id(struct hook_call *c, json_t *record, const char *cmd, const char *port)
{
	json_t *id = json_object_get(record, "instance-id");

	if (!json_is_string(id)) {
		hook_err(c, "<imds:vm>: no \"instance-id\" string: nothing to %s", cmd);
		return 1;
	}
	return hook_loadmap(c, cmd, json_string_value(id), port);
}

/* IMDS_LIBVIRT_RECORDS=etcd: sync loads the VM from etcd; the hook only
 * tells it which tap is the VM's (docs/libvirt.md, "Records in etcd"). */
static int hook_started_etcd(struct hook_call *c)
{
	bool warn = strcmp(c->conf.prepare, "warn") == 0;
	json_t *record;
	int rc;

	c->conf.dx.tap_only = true;
	rc = hook_record(c, true, false, &record);
	if (rc <= 0)
		return rc < 0;
	rc = hook_run_id(c, record, "bind", json_string_value(json_object_get(record, "port")));
	json_decref(record);
	if (rc == 0)
		return 0;
	hook_err(c, "%s: is its record under this host's prefix in etcd, and imds-sync running "
		 "(IMDS_LIBVIRT_RECORDS=etcd)?",
		 warn ? "starting anyway (IMDS_LIBVIRT_PREPARE=warn): the VM will not be served"
		      : "not starting: the VM cannot be pinned to its tap");
	return warn ? 0 : 1;
}

static int hook_release(struct hook_call *c)
{
	json_t *record;
	int rc = hook_record(c, false, true, &record);

	if (rc <= 0)
		return rc < 0;
	rc = hook_run_id(c, record, c->conf.from_etcd ? "unbind" : "delete", NULL);
	json_decref(record);
	return rc != 0;
}

static const struct hook_op {
	const char *op, *sub;
	int (*run)(struct hook_call *c);
} hook_ops[] = {
	{ "prepare", "begin", hook_prepare },
	{ "started", "begin", hook_started },
	{ "reconnect", "begin", hook_started },
	{ "release", "end", hook_release },
};

int main(int argc, char **argv)
{
	struct hook_call c = { 0 };
	const struct hook_op *op = NULL;

	if (argc < 4) {
		fprintf(stderr, "usage: %s DOMAIN OPERATION SUB-OPERATION [EXTRA] < domain.xml\n"
			"(run by libvirt as /etc/libvirt/hooks/qemu.d/imds; docs/libvirt.md)\n", argv[0]);
		return 2;
	}
	c.domain = argv[1];
	/* Always drain stdin: libvirt writes the whole XML whatever we do. */
	c.xml = hook_slurp(stdin, &c.xml_len);
	if (!c.xml) {
		hook_err(&c, "cannot read the domain XML on stdin: %s", strerror(errno));
		return 1;
	}
	for (size_t i = 0; i < sizeof(hook_ops) / sizeof(hook_ops[0]); i++)
		if (strcmp(argv[2], hook_ops[i].op) == 0 && strcmp(argv[3], hook_ops[i].sub) == 0)
			op = &hook_ops[i];
	if (!op)
		return 0;
	hook_conf_read(&c.conf);
	if (!c.conf.from_etcd && c.conf.records[0] && strcmp(c.conf.records, "domain") != 0) {
		hook_err(&c, "IMDS_LIBVIRT_RECORDS \"%s\": want \"domain\" (the record in <imds:vm>) or \"etcd\" "
			 "(imds-sync loads it)", c.conf.records);
		return 1;
	}
	return op->run(&c);
}

/* loadmap_sync.c: `imds-loadmap sync`: its options, then the control
 * layer's loop (control_sync) until SIGTERM.  A password never comes from
 * the command line, which any user reads in /proc: from a file or from the
 * environment (docs/control-plane.md, "etcd"). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd/loadmap.h"
#include "control/control.h"
#include "lib/cli.h"
#include "lib/log.h"

#define SYNC_PASSWORD_ENV "IMDS_ETCD_PASSWORD"
#define SYNC_ENDPOINTS_MAX 16
#define SYNC_SYNOPSIS "--etcd URL[,URL...] --prefix /imds/hosts/HOST/vms/ [OPTIONS]"

enum { SO_ETCD, SO_PREFIX, SO_CACERT, SO_CERT, SO_KEY, SO_USER, SO_PASSWORD_FILE, SO_METRICS_FILE };

static const struct cli_option sync_options[] = {
	[SO_ETCD] = { "etcd", 0, "URL[,URL...]", "etcd's client endpoints, tried in turn: http://, https:// or unix:/PATH" },
	[SO_PREFIX] = { "prefix", 0, "PREFIX", "this host's keys, one per VM: PREFIX + instance-id (ends with /)" },
	[SO_CACERT] = { "cacert", 0, "FILE", "CA certificates (PEM) that etcd's server certificate chains to" },
	[SO_CERT] = { "cert", 0, "FILE", "client certificate (PEM) for etcd's --client-cert-auth" },
	[SO_KEY] = { "key", 0, "FILE", "the client certificate's private key (PEM)" },
	[SO_USER] = { "user", 0, "NAME", "etcd user; the password from --password-file or $" SYNC_PASSWORD_ENV },
	[SO_PASSWORD_FILE] = { "password-file", 0, "FILE", "the user's password: the file's first line" },
	[SO_METRICS_FILE] = { "metrics-file", 0, "FILE",
			      "write the counters there (Prometheus text, node_exporter's textfile collector)" },
	{ 0 },
};

struct sync_args {
	struct sync_opts o;
	char *endpoints[SYNC_ENDPOINTS_MAX];
	char *urls; /* the --etcd text the endpoints point into */
	const char *password_file;
	char *password;
};

static int sync_on_option(void *arg, int index, const char *optarg)
{
	struct sync_args *a = arg;
	const char **slot[] = {
		[SO_PREFIX] = &a->o.prefix, [SO_CACERT] = &a->o.etcd.cacert, [SO_CERT] = &a->o.etcd.cert,
		[SO_KEY] = &a->o.etcd.key,  [SO_USER] = &a->o.etcd.user,     [SO_PASSWORD_FILE] = &a->password_file,
		[SO_METRICS_FILE] = &a->o.metrics_path,
	};
	char *save = NULL;

	if (index != SO_ETCD) {
		*slot[index] = optarg;
		return 0;
	}
	free(a->urls);
	a->urls = strdup(optarg);
	a->o.etcd.n_endpoints = 0;
	for (char *u = strtok_r(a->urls, ",", &save); u; u = strtok_r(NULL, ",", &save)) {
		if (a->o.etcd.n_endpoints == SYNC_ENDPOINTS_MAX ||
		    (strncmp(u, "http://", 7) && strncmp(u, "https://", 8) && strncmp(u, "unix:/", 6))) {
			loadmap_err("sync: --etcd: \"%s\": want at most %d endpoints, each http://HOST:PORT, "
				    "https://HOST:PORT or unix:/PATH",
				    u, SYNC_ENDPOINTS_MAX);
			return -1;
		}
		a->endpoints[a->o.etcd.n_endpoints++] = u;
	}
	return 0;
}

/* The first line of the file, or the environment's; NULL with a message. */
static char *sync_password(const struct sync_args *a)
{
	const char *env = getenv(SYNC_PASSWORD_ENV);
	char *line = NULL;
	size_t cap = 0;
	FILE *f;

	if (!a->password_file) {
		if (!env)
			loadmap_err("sync: --user %s: give the password in --password-file or $%s", a->o.etcd.user,
				    SYNC_PASSWORD_ENV);
		return env ? strdup(env) : NULL;
	}
	f = fopen(a->password_file, "r");
	if (!f || getline(&line, &cap, f) < 0) {
		loadmap_err("sync: --password-file %s: %s", a->password_file, f ? "empty" : strerror(errno));
		free(line);
		line = NULL;
	} else
		line[strcspn(line, "\r\n")] = '\0';
	if (f)
		fclose(f);
	return line;
}

static int sync_check(struct sync_args *a)
{
	if (!a->o.etcd.n_endpoints || !a->o.prefix) {
		loadmap_err("sync: --etcd and --prefix are required (usage: sync %s)", SYNC_SYNOPSIS);
		return -1;
	}
	if (a->o.prefix[0] != '/' || a->o.prefix[strlen(a->o.prefix) - 1] != '/') {
		loadmap_err("sync: --prefix \"%s\": want a key prefix that starts and ends with / (a key is the prefix "
			    "and the VM's instance-id)",
			    a->o.prefix);
		return -1;
	}
	if (!a->o.etcd.cert != !a->o.etcd.key) {
		loadmap_err("sync: --cert and --key go together");
		return -1;
	}
	if (a->o.etcd.user && !(a->password = sync_password(a)))
		return -1;
	a->o.etcd.password = a->password;
	a->o.etcd.endpoints = a->endpoints;
	return 0;
}

int loadmap_cmd_sync(struct loadmap_ctx *ctx, int argc, char **argv)
{
	struct sync_args a = { 0 };
	int ret = LOADMAP_USAGE, end;

	/* argv[-1] is "sync": getopt wants the program's name first. */
	end = cli_parse(argc + 1, argv - 1, sync_options, SYNC_SYNOPSIS, sync_on_option, &a);
	if (end >= 0 && end != argc + 1)
		loadmap_err("sync: unexpected argument '%s' (usage: sync %s)", argv[end - 1], SYNC_SYNOPSIS);
	else if (end >= 0 && sync_check(&a) == 0) {
		ret = LOADMAP_FAIL;
		log_init("imds-loadmap");
		a.o.etcd.stop = &loadmap_stop;
		if (loadmap_open_follower(ctx) == 0) {
			ret = control_sync(&ctx->store, ctx->identity, &a.o, &loadmap_stop) ? LOADMAP_FAIL : LOADMAP_OK;
			store_close(&ctx->store);
		}
	}
	if (a.password)
		explicit_bzero(a.password, strlen(a.password));
	free(a.password);
	free(a.urls);
	return ret;
}

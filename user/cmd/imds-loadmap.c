/* imds-loadmap.c: the control plane.  Loads VM descriptions (JSON) into the
 * pinned store, deletes them, and shows what is loaded and what the data
 * plane counted.  Every command that changes something runs under the store
 * lock, and `load` checks everything before it changes anything.
 * Exit codes: 0 ok, 1 failure, 2 usage.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <net/if.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "store/arena.h"
#include "lib/cli.h"
#include "ports/netlink.h"
#include "lib/smbios.h"
#include "control/control.h"
#include "compile/identity.h"
#include "imds.h"
#include "store/store.h"
#include "lib/tree.h"
#include "compile/vmconf.h"
#include "cmd/loadmap.h"

void loadmap_err(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fputs("imds-loadmap: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

/* Opens the store and takes its lock: every command sees one consistent
 * state, and changes by two invocations never interleave. */
int loadmap_open(struct loadmap_ctx *ctx)
{
	char err[LOADMAP_ERRLEN] = "";
	int ret;

	ret = store_open_sized(&ctx->store, ctx->pin_dir, 0, &ctx->size, err, sizeof(err));
	if (ret) {
		loadmap_err("%s", err);
		return ret;
	}
	ret = store_lock(&ctx->store);
	if (ret) {
		loadmap_err("cannot lock %s: %s", ctx->pin_dir, strerror(-ret));
		store_close(&ctx->store);
		return ret;
	}
	ctx->opened = true;
	return 0;
}

void loadmap_close(struct loadmap_ctx *ctx)
{
	if (!ctx->opened)
		return;
	store_unlock(&ctx->store);
	store_close(&ctx->store);
	ctx->opened = false;
}

/* The host's identity keys, made on first use (identity.h). */
int loadmap_identity(struct loadmap_ctx *ctx)
{
	char err[LOADMAP_ERRLEN] = "";
	int ret;

	if (ctx->identity)
		return 0;
	ret = identity_key_open(ctx->key_dir, &ctx->identity, err, sizeof(err));
	if (ret)
		loadmap_err("%s", err);
	return ret;
}

/* ---- load, check, apply, update (user/control) ---- */

/* A writer's open: what a killed writer left is recovered first. */
static int loadmap_open_writer(struct loadmap_ctx *ctx)
{
	int ret = loadmap_identity(ctx);

	if (!ret)
		ret = loadmap_open(ctx);
	if (!ret && (ret = control_recover(&ctx->store)) < 0)
		loadmap_err("cannot check the store: %s", strerror(-ret));
	return ret;
}

static int loadmap_read(const char *path, struct record_batch *b)
{
	struct conf_error cerr = { "" };
	int ret = record_batch_read(b, path, true, &cerr);

	if (ret)
		fprintf(stderr, "%s\n", cerr.text);
	return ret;
}

static size_t loadmap_batch_vms(const struct record_batch *b)
{
	size_t n = 0;

	for (size_t i = 0; i < b->n; i++)
		n += b->files[i].set.n;
	return n;
}

/* Plans the batch against the store and, unless dry_run, carries the plan
 * out: nothing changes when any check fails.  The store is open. */
static int loadmap_change(struct loadmap_ctx *ctx, const struct record_batch *b, enum plan_mode mode, bool dry_run,
			  struct plan *p)
{
	struct conf_error cerr = { "" };
	int ret;

	ret = plan_make(p, &ctx->store, b, mode, NULL, 0, ctx->identity, &cerr);
	if (!ret && !dry_run) {
		ret = plan_execute(p, &ctx->store, ctx->identity, &cerr);
		if (ret)
			plan_free(p);
	}
	if (ret)
		fprintf(stderr, "%s\n", cerr.text[0] ? cerr.text : strerror(-ret));
	return ret;
}

typedef void loadmap_report_fn(const char *path, const struct record_batch *b, const struct plan *p, bool dry_run);

/* load, check and apply: reads PATH, plans it against the store and, unless
 * dry_run, carries the plan out; a dry run changes nothing, not even the
 * recovery of an interrupted change. */
static int loadmap_records(struct loadmap_ctx *ctx, const char *path, enum plan_mode mode, bool dry_run,
			   loadmap_report_fn *report)
{
	struct record_batch b = { 0 };
	struct plan p;
	int ret = loadmap_read(path, &b);

	if (!ret && !dry_run)
		ret = loadmap_open_writer(ctx);
	else if (!ret && (ret = loadmap_identity(ctx)) == 0)
		ret = loadmap_open(ctx);
	if (!ret && (ret = loadmap_change(ctx, &b, mode, dry_run, &p)) == 0) {
		report(path, &b, &p, dry_run);
		plan_free(&p);
	}
	loadmap_close(ctx);
	record_batch_free(&b);
	return ret ? LOADMAP_FAIL : LOADMAP_OK;
}

static void loadmap_report_load(const char *path, const struct record_batch *b, const struct plan *p, bool dry_run)
{
	(void)dry_run;
	printf("loaded %zu VMs from %s (%d added, %d updated)\n", loadmap_batch_vms(b), path, p->count[PLAN_ADD],
	       p->count[PLAN_UPDATE]);
}

static void loadmap_report_check(const char *path, const struct record_batch *b, const struct plan *p,
				 bool dry_run)
{
	(void)p;
	(void)dry_run;
	printf("%s: %zu VMs, all valid\n", path, loadmap_batch_vms(b));
}

static void loadmap_report_apply(const char *path, const struct record_batch *b, const struct plan *p,
				 bool dry_run)
{
	char summary[128];

	(void)path;
	(void)b;
	plan_summary(p, summary, sizeof(summary));
	if (dry_run)
		plan_print(p, stdout);
	printf("%s%s\n", summary, dry_run ? " (dry run: nothing changed)" : "");
}

static int loadmap_cmd_load(struct loadmap_ctx *ctx, int argc, char **argv)
{
	(void)argc;
	return loadmap_records(ctx, argv[0], PLAN_LOAD, false, loadmap_report_load);
}

/* `load` without the loading: every check, the loaded VMs' included, so a
 * caller (the libvirt hook's prepare) learns the loader's exact error. */
static int loadmap_cmd_check(struct loadmap_ctx *ctx, int argc, char **argv)
{
	(void)argc;
	return loadmap_records(ctx, argv[0], PLAN_LOAD, true, loadmap_report_check);
}

static int loadmap_cmd_apply(struct loadmap_ctx *ctx, int argc, char **argv)
{
	bool dry_run = argc == 2 && strcmp(argv[0], "--dry-run") == 0;

	if (argc == 2 && !dry_run) {
		loadmap_err("apply: unknown option '%s' (usage: apply [--dry-run] FILE|DIR)", argv[0]);
		return LOADMAP_USAGE;
	}
	return loadmap_records(ctx, argv[argc - 1], PLAN_APPLY, dry_run, loadmap_report_apply);
}

/* update's arguments: --set PATH=VALUE and --unset PATH, in any order. */
static int loadmap_update_args(int argc, char **argv, char **sets, size_t *n_sets, char **unsets, size_t *n_unsets)
{
	*n_sets = *n_unsets = 0;
	for (int i = 1; i < argc; i += 2) {
		bool set = strcmp(argv[i], "--set") == 0;

		if ((!set && strcmp(argv[i], "--unset") != 0) || i + 1 >= argc) {
			loadmap_err("update: want --set PATH=VALUE or --unset PATH, got '%s'", argv[i]);
			return -EINVAL;
		}
		if (set)
			sets[(*n_sets)++] = argv[i + 1];
		else
			unsets[(*n_unsets)++] = argv[i + 1];
	}
	return 0;
}

static int loadmap_cmd_update(struct loadmap_ctx *ctx, int argc, char **argv)
{
	char **sets = calloc((size_t)argc, sizeof(char *)), **unsets = calloc((size_t)argc, sizeof(char *));
	struct conf_error cerr = { "" };
	struct record_batch b = { 0 };
	char source[IMDS_INSTANCE_ID_MAX + 32], *text = NULL;
	size_t n_sets, n_unsets;
	struct plan p;
	int ret = sets && unsets ? 0 : -ENOMEM;

	if (!ret && loadmap_update_args(argc, argv, sets, &n_sets, unsets, &n_unsets)) {
		free(sets);
		free(unsets);
		return LOADMAP_USAGE;
	}
	if (!ret)
		ret = loadmap_open_writer(ctx);
	snprintf(source, sizeof(source), "%s (record after update)", argv[0]);
	if (!ret && ((ret = record_patch(&ctx->store, argv[0], sets, n_sets, unsets, n_unsets, &text, &cerr)) ||
		     (ret = record_batch_parse(&b, source, text, strlen(text), &cerr))))
		fprintf(stderr, "%s\n", cerr.text);
	if (!ret && (ret = loadmap_change(ctx, &b, PLAN_MERGE, false, &p)) == 0) {
		printf("%s %s\n", argv[0], p.count[PLAN_UPDATE] ? "updated" : "unchanged");
		plan_free(&p);
	}
	loadmap_close(ctx);
	record_batch_free(&b);
	free(text);
	free(sets);
	free(unsets);
	return ret ? LOADMAP_FAIL : LOADMAP_OK;
}

volatile sig_atomic_t loadmap_stop;

static void loadmap_on_signal(int sig)
{
	(void)sig;
	loadmap_stop = 1;
}

int loadmap_open_follower(struct loadmap_ctx *ctx)
{
	struct sigaction sa = { .sa_handler = loadmap_on_signal };
	char err[LOADMAP_ERRLEN] = "";
	int ret;

	if (loadmap_identity(ctx))
		return -1;
	ret = store_open_sized(&ctx->store, ctx->pin_dir, 0, &ctx->size, err, sizeof(err));
	if (ret) {
		loadmap_err("%s", err);
		return ret;
	}
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	return 0;
}

/* Runs until SIGINT or SIGTERM; the store's lock is taken per change only,
 * so other loaders and imdsd go on meanwhile. */
static int loadmap_cmd_watch(struct loadmap_ctx *ctx, int argc, char **argv)
{
	int ret;

	(void)argc;
	if (loadmap_open_follower(ctx))
		return LOADMAP_FAIL;
	ret = control_watch(&ctx->store, argv[0], ctx->identity, &loadmap_stop);
	store_close(&ctx->store);
	return ret ? LOADMAP_FAIL : LOADMAP_OK;
}

/* Every loaded VM's kept record, as a file `load` and `apply` read. */
static int loadmap_cmd_export(struct loadmap_ctx *ctx, int argc, char **argv)
{
	json_t *doc;
	int missing = 0, ret;

	(void)argc;
	(void)argv;
	if (loadmap_open(ctx))
		return LOADMAP_FAIL;
	doc = record_export(&ctx->store, &missing);
	loadmap_close(ctx);
	ret = doc && json_dumpf(doc, stdout, JSON_INDENT(2)) == 0 ? 0 : -ENOMEM;
	json_decref(doc);
	if (ret)
		loadmap_err("cannot format the records");
	else
		putchar('\n');
	if (missing)
		loadmap_err("%d loaded VMs have no kept record (loaded by an older version): load them again", missing);
	return ret || missing ? LOADMAP_FAIL : LOADMAP_OK;
}

/* ---- fsck, usage ---- */

static int loadmap_cmd_fsck(struct loadmap_ctx *ctx, int argc, char **argv)
{
	char *report = malloc(64 * 1024);
	struct store_usage u;
	int problems = -ENOMEM;

	(void)argc;
	(void)argv;
	if (report && loadmap_open_writer(ctx) == 0) {
		problems = store_fsck(&ctx->store, report, 64 * 1024);
		store_arena_usage(&ctx->store, &u);
	}
	if (problems > 0)
		fprintf(stderr, "%sfsck: %d problems\n", report, problems);
	else if (problems == 0)
		printf("fsck: consistent: %u VMs, %zu arena bytes in use, %zu free, every page free or owned by "
		       "one VM\n",
		       u.vms, u.used_bytes, u.free_bytes);
	loadmap_close(ctx);
	free(report);
	return problems ? LOADMAP_FAIL : LOADMAP_OK;
}

static int loadmap_cmd_usage(struct loadmap_ctx *ctx, int argc, char **argv)
{
	struct store_usage u;

	(void)argc;
	(void)argv;
	if (loadmap_open(ctx))
		return LOADMAP_FAIL;
	store_arena_usage(&ctx->store, &u);
	loadmap_close(ctx);
	printf("vms %u of %u\narena_bytes %zu\nused_bytes %zu\nfree_bytes %zu\nlargest_free_bytes %zu\n", u.vms,
	       u.max_vms, u.arena_bytes, u.used_bytes, u.free_bytes, u.largest_free_bytes);
	return LOADMAP_OK;
}

/* The EC2-looking SMBIOS block for a VM's libvirt domain (docs/libvirt.md).
 * It depends on the instance-id alone, so it is printed for a domain whose
 * VM is not loaded yet (the hook loads it at start); a note says so, in
 * case the id is mistyped. */
static int loadmap_cmd_sysinfo(struct loadmap_ctx *ctx, int argc, char **argv)
{
	bool loaded;

	if (loadmap_open(ctx))
		return LOADMAP_FAIL;
	loaded = store_find(&ctx->store, argv[0]) >= 0;
	loadmap_close(ctx);
	if (!loaded)
		fprintf(stderr, "imds-loadmap: note: no VM %s is loaded (yet); the block depends on the id only\n",
			argv[0]);
	return smbios_write_sysinfo(stdout, argv[0], argc > 1 ? argv[1] : "imds") ? LOADMAP_FAIL : LOADMAP_OK;
}

/* ---- delete ---- */

static int loadmap_cmd_delete(struct loadmap_ctx *ctx, int argc, char **argv)
{
	int ret;

	(void)argc;
	if (loadmap_open(ctx))
		return LOADMAP_FAIL;
	ret = store_delete(&ctx->store, argv[0]);
	if (ret == -ENOENT)
		loadmap_err("no VM %s is loaded", argv[0]);
	else if (ret)
		loadmap_err("cannot delete %s: %s", argv[0], strerror(-ret));
	else
		printf("deleted %s\n", argv[0]);
	loadmap_close(ctx);
	return ret ? LOADMAP_FAIL : LOADMAP_OK;
}

/* ---- bind, unbind ---- */

/* Pins (port given) or unpins a loaded VM until its record is next loaded,
 * which sets what the record says (docs/design.md, "Port binding"). */
static int loadmap_rebind(struct loadmap_ctx *ctx, const char *instance_id, const char *port)
{
	int ret;

	if (loadmap_open(ctx))
		return LOADMAP_FAIL;
	ret = store_bind(&ctx->store, instance_id, port);
	if (ret == -ENOENT)
		loadmap_err("no VM %s is loaded", instance_id);
	else if (ret == -EINVAL)
		loadmap_err("\"%s\" is not a port name (1 to %d bytes, no '/')", port, IMDS_PORT_NAME_MAX - 1);
	else if (port)
		printf("%s pinned to %s (%s)\n", instance_id, port,
		       store_binding_state(&ctx->store, (uint32_t)store_find(&ctx->store, instance_id)));
	else
		printf("%s unpinned\n", instance_id);
	loadmap_close(ctx);
	return ret ? LOADMAP_FAIL : LOADMAP_OK;
}

static int loadmap_cmd_bind(struct loadmap_ctx *ctx, int argc, char **argv)
{
	(void)argc;
	return loadmap_rebind(ctx, argv[0], argv[1]);
}

static int loadmap_cmd_unbind(struct loadmap_ctx *ctx, int argc, char **argv)
{
	(void)argc;
	return loadmap_rebind(ctx, argv[0], NULL);
}

/* ---- cert ---- */

static int loadmap_cmd_cert(struct loadmap_ctx *ctx, int argc, char **argv)
{
	static const struct {
		const char *name;
		enum identity_cert which;
	} kinds[] = { { "all", IDENTITY_CERT_ALL }, { "rsa", IDENTITY_CERT_RSA }, { "dsa", IDENTITY_CERT_DSA } };
	enum identity_cert which = IDENTITY_CERT_ALL;
	struct outbuf pem = { 0 };
	size_t i = 0;
	int ret;

	if (argc == 1) {
		while (i < sizeof(kinds) / sizeof(kinds[0]) && strcmp(argv[0], kinds[i].name) != 0)
			i++;
		if (i == sizeof(kinds) / sizeof(kinds[0])) {
			loadmap_err("cert: unknown certificate '%s' (all, rsa or dsa)", argv[0]);
			return LOADMAP_USAGE;
		}
		which = kinds[i].which;
	}
	if (loadmap_identity(ctx))
		return LOADMAP_FAIL;
	ret = identity_cert_pem(ctx->identity, which, &pem);
	if (ret)
		loadmap_err("cannot format the certificate: %s", strerror(-ret));
	else
		fwrite(pem.data, 1, pem.len, stdout);
	outbuf_free(&pem);
	return ret || fflush(stdout) ? LOADMAP_FAIL : LOADMAP_OK;
}

/* ---- command line ---- */

static const struct loadmap_cmd loadmap_cmds[] = {
	{ "load", "FILE|DIR", 1, 1, "add or update the VMs described in FILE or DIR/*.json", loadmap_cmd_load },
	{ "check", "FILE|DIR", 1, 1, "check as `load` would, changing nothing", loadmap_cmd_check },
	{ "apply", "[--dry-run] FILE|DIR", 1, 2, "make the loaded VMs exactly these records", loadmap_cmd_apply },
	{ "update", "ID --set P=V|--unset P ...", 3, 255, "change members of a loaded VM's record",
	  loadmap_cmd_update },
	{ "watch", "DIR", 1, 1, "apply DIR/*.json as files change (until SIGTERM)", loadmap_cmd_watch },
	{ "sync", "--etcd URLS --prefix P ...", 1, 32,
	  "follow the VMs under P in etcd (until SIGTERM; sync --help)", loadmap_cmd_sync },
	{ "export", "", 0, 0, "every loaded VM's record, as a file load reads", loadmap_cmd_export },
	{ "fsck", "", 0, 0, "check the store: arena pages, tables, indexes", loadmap_cmd_fsck },
	{ "usage", "", 0, 0, "VM slots and arena bytes in use", loadmap_cmd_usage },
	{ "delete", "INSTANCE-ID", 1, 1, "remove a loaded VM", loadmap_cmd_delete },
	{ "sysinfo", "INSTANCE-ID [PRODUCT]", 1, 2, "libvirt <sysinfo> making the VM look like EC2 to cloud-init",
	  loadmap_cmd_sysinfo },
	{ "bind", "INSTANCE-ID PORT", 2, 2, "serve the VM on bridge port PORT only", loadmap_cmd_bind },
	{ "unbind", "INSTANCE-ID", 1, 1, "unpin the VM (not served until pinned again)", loadmap_cmd_unbind },
	{ "list", "", 0, 0, "one line per loaded VM", loadmap_cmd_list },
	{ "show", "INSTANCE-ID", 1, 1, "a loaded VM and the paths of its tree, as JSON", loadmap_cmd_show },
	{ "stats", "[INSTANCE-ID]", 0, 1, "data-plane counters: totals, then per VM", loadmap_cmd_stats },
	{ "cert", "[all|rsa|dsa]", 0, 1, "identity certificates in PEM (docs/identity.md)", loadmap_cmd_cert },
	{ 0 },
};

enum { OPT_PIN_DIR, OPT_KEY_DIR, OPT_MAX_VMS, OPT_ARENA_SIZE };

static const struct cli_option loadmap_options[] = {
	[OPT_PIN_DIR] = { "pin-dir", 0, "DIR", "pin directory of the maps (default " IMDS_DEFAULT_PIN_DIR ")" },
	[OPT_KEY_DIR] = { "key-dir", 0, "DIR",
			  "identity keys and certificates (default $" IDENTITY_DIR_ENV " or " IDENTITY_DEFAULT_DIR ")" },
	[OPT_MAX_VMS] = { "max-vms", 0, "N", "VM slots of a store created now (default 4095; docs/control-plane.md)" },
	[OPT_ARENA_SIZE] = { "arena-size", 0, "BYTES", "arena of a store created now: 64M, 1G... (default 64M)" },
	{ 0 },
};

/* "64M", "1G", "65536": bytes, or -1. */
static long long loadmap_bytes(const char *text)
{
	char *end;
	unsigned long long n;
	int shift = 0;

	errno = 0;
	n = strtoull(text, &end, 10);
	if (errno || end == text)
		return -1;
	if (*end == 'K' || *end == 'k')
		shift = 10;
	else if (*end == 'M' || *end == 'm')
		shift = 20;
	else if (*end == 'G' || *end == 'g')
		shift = 30;
	if (shift)
		end++;
	if (*end || n > (1ull << 40) >> shift)
		return -1;
	return (long long)(n << shift);
}

/* A whole decimal number, or -1. */
static long long loadmap_count(const char *text)
{
	char *end;
	long long n;

	errno = 0;
	n = strtoll(text, &end, 10);
	return errno || end == text || *end ? -1 : n;
}

static int loadmap_on_option(void *arg, int index, const char *optarg)
{
	struct loadmap_ctx *ctx = arg;
	char err[256];
	long long n;

	if (index == OPT_PIN_DIR)
		ctx->pin_dir = optarg;
	else if (index == OPT_KEY_DIR)
		ctx->key_dir = optarg;
	if (index != OPT_MAX_VMS && index != OPT_ARENA_SIZE)
		return 0;
	n = index == OPT_MAX_VMS ? loadmap_count(optarg) : loadmap_bytes(optarg);
	if (n <= 0 || (index == OPT_MAX_VMS && n > UINT32_MAX)) {
		loadmap_err("--%s %s: not a positive %s", loadmap_options[index].name, optarg,
			    index == OPT_MAX_VMS ? "number" : "size (bytes, or with K, M or G)");
		return -1;
	}
	if (index == OPT_MAX_VMS)
		ctx->size.max_vms = (uint32_t)n;
	else
		ctx->size.arena_bytes = (uint64_t)n;
	if (store_check_size(&ctx->size, err, sizeof(err))) {
		loadmap_err("%s", err);
		return -1;
	}
	return 0;
}

/* The synopsis lists the commands from the same table dispatch uses. */
static const char *loadmap_synopsis(void)
{
	static char text[4096];
	size_t off;

	off = (size_t)snprintf(text, sizeof(text), "[OPTIONS] COMMAND [ARGS]\n\ncommands:");
	for (const struct loadmap_cmd *c = loadmap_cmds; c->name && off < sizeof(text); c++) {
		char left[64];

		snprintf(left, sizeof(left), "%s %s", c->name, c->args);
		off += (size_t)snprintf(text + off, sizeof(text) - off, "\n  %-28s  %s", left, c->help); /* two spaces: cli_usage_line */
	}
	return text;
}

static const struct loadmap_cmd *loadmap_lookup(const char *name)
{
	for (const struct loadmap_cmd *c = loadmap_cmds; c->name; c++)
		if (strcmp(c->name, name) == 0)
			return c;
	return NULL;
}

int main(int argc, char **argv)
{
	struct loadmap_ctx ctx = { .pin_dir = IMDS_DEFAULT_PIN_DIR, .key_dir = identity_default_dir() };
	const char *synopsis = loadmap_synopsis();
	const struct loadmap_cmd *cmd;
	int first, nargs, ret;

	first = cli_parse(argc, argv, loadmap_options, synopsis, loadmap_on_option, &ctx);
	if (first < 0)
		return LOADMAP_USAGE;
	if (first >= argc) {
		cli_usage(stderr, argv[0], synopsis, loadmap_options);
		return LOADMAP_USAGE;
	}
	cmd = loadmap_lookup(argv[first]);
	if (!cmd) {
		loadmap_err("unknown command '%s' (try --help)", argv[first]);
		return LOADMAP_USAGE;
	}
	nargs = argc - first - 1;
	if (nargs < cmd->min_args || nargs > cmd->max_args) {
		loadmap_err("usage: %s %s", cmd->name, cmd->args);
		return LOADMAP_USAGE;
	}
	ret = cmd->run(&ctx, nargs, argv + first + 1);
	identity_key_free(ctx.identity);
	return ret;
}

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
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "store/arena.h"
#include "lib/cli.h"
#include "lib/smbios.h"
#include "compile/compile.h"
#include "compile/identity.h"
#include "imds.h"
#include "store/store.h"
#include "lib/tree.h"
#include "compile/vmconf.h"

enum { LOADMAP_OK = 0, LOADMAP_FAIL = 1, LOADMAP_USAGE = 2 };

#define LOADMAP_ERRLEN 1024

struct loadmap_ctx {
	const char *pin_dir;
	const char *key_dir;
	struct store store;
	struct identity_key *identity; /* signs the trees `load` writes */
	bool opened;
};

struct loadmap_cmd {
	const char *name;
	const char *args; /* for usage */
	int min_args, max_args;
	const char *help;
	int (*run)(struct loadmap_ctx *ctx, int argc, char **argv);
};

static void loadmap_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void loadmap_err(const char *fmt, ...)
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
static int loadmap_open(struct loadmap_ctx *ctx)
{
	char err[LOADMAP_ERRLEN] = "";
	int ret;

	ret = store_open(&ctx->store, ctx->pin_dir, 0, err, sizeof(err));
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

static void loadmap_close(struct loadmap_ctx *ctx)
{
	if (!ctx->opened)
		return;
	store_unlock(&ctx->store);
	store_close(&ctx->store);
	ctx->opened = false;
}

/* The host's identity keys, made on first use (identity.h). */
static int loadmap_identity(struct loadmap_ctx *ctx)
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

static int loadmap_find(struct loadmap_ctx *ctx, const char *instance_id)
{
	int slot = store_find(&ctx->store, instance_id);

	if (slot < 0)
		loadmap_err("no VM %s is loaded", instance_id);
	return slot;
}

static void loadmap_format_ipv4(uint32_t ipv4_be, char out[INET_ADDRSTRLEN])
{
	inet_ntop(AF_INET, &ipv4_be, out, INET_ADDRSTRLEN);
}

/* ---- load ---- */

/* A MAC or IPv4 of the file that a different loaded VM already uses. */
static int loadmap_check_conflicts(const struct store *s, const struct vm_set *set, struct conf_error *cerr)
{
	char path[64], text[INET_ADDRSTRLEN > 18 ? INET_ADDRSTRLEN : 18];

	for (size_t i = 0; i < set->n; i++) {
		const struct vm_desc *vm = &set->vms[i];
		int other = store_find_mac(s, vm->mac);

		if (other >= 0 && strcmp(s->vms[other].instance_id, vm->instance_id) != 0) {
			snprintf(path, sizeof(path), "%s.mac", vm->json_path);
			vmconf_format_mac(vm->mac, text);
			return vmconf_error_at(set, cerr, path, "%s is already used by loaded VM %s", text,
					       s->vms[other].instance_id);
		}
		other = store_find_ipv4(s, vm->ipv4);
		if (other >= 0 && strcmp(s->vms[other].instance_id, vm->instance_id) != 0) {
			snprintf(path, sizeof(path), "%s.ipv4", vm->json_path);
			loadmap_format_ipv4(vm->ipv4, text);
			return vmconf_error_at(set, cerr, path, "%s is already used by loaded VM %s", text,
					       s->vms[other].instance_id);
		}
	}
	return 0;
}

static int loadmap_check_slots(const struct store *s, const struct vm_set *set)
{
	int new_vms = 0, free_slots = store_free_slots(s);

	for (size_t i = 0; i < set->n; i++)
		new_vms += store_find(s, set->vms[i].instance_id) < 0;
	if (new_vms > free_slots) {
		loadmap_err("%s: %d new VMs but only %d free slots (at most %d VMs)", set->source, new_vms,
			    free_slots, IMDS_MAX_VMS - 1);
		return -ENOSPC;
	}
	return 0;
}

/* The tree header's facts of a VM.  slot and vm_generation stay 0: the
 * store fills them in when it publishes the image. */
static void loadmap_meta(const struct vm_desc *vm, uint64_t last_modified, struct tree_meta *meta)
{
	*meta = (struct tree_meta){
		.last_modified = last_modified,
		.http_tokens = vm->http_tokens,
		.hop_limit = vm->hop_limit,
	};
	snprintf(meta->instance_id, sizeof(meta->instance_id), "%s", vm->instance_id);
}

/* The size of the VM's tree: the meta only changes fixed-size fields, so a
 * provisional one measures what loadmap_apply will store (exactly, or for a
 * signed tree an upper bound: signatures vary in length, and signing every
 * VM twice would double the load's time). */
static int loadmap_tree_size(const struct identity_key *key, const struct vm_set *set, const struct vm_desc *vm,
			     size_t *len)
{
	char err[LOADMAP_ERRLEN] = "";
	struct tree_meta meta;
	int ret;

	loadmap_meta(vm, 0, &meta);
	ret = vm_compile_bound(vm, &meta, key, len, err, sizeof(err));
	if (ret)
		loadmap_err("%s: %s", set->source, err);
	return ret;
}

static void loadmap_no_room(const struct vm_set *set, const struct vm_desc *vm, size_t len, uint32_t used_before,
			    const struct arena_plan *plan, uint32_t free_before)
{
	uint32_t taken = plan->hdr.used_pages > used_before ? plan->hdr.used_pages - used_before : 0;

	loadmap_err("%s: %s: no arena room for the tree of %s (%u pages of %d bytes): the VMs before it "
		    "take %u of the %u free pages",
		    set->source, vm->json_path, vm->instance_id, arena_pages_for(len), IMDS_ARENA_PAGE, taken,
		    free_before);
}

/* Replays the allocations store_put will make (new tree first, then the old
 * one freed), so fragmentation is accounted for too. */
static int loadmap_check_room(const struct store *s, const struct identity_key *key, const struct vm_set *set)
{
	struct arena_plan *plan = malloc(sizeof(*plan));
	uint32_t free_before = arena_free_pages(&s->arena);
	uint32_t used_before = (uint32_t)(arena_used_bytes(&s->arena) / IMDS_ARENA_PAGE);
	size_t len = 0;
	int ret = 0;

	if (!plan)
		return -ENOMEM;
	arena_plan_init(&s->arena, plan);
	for (size_t i = 0; i < set->n && !ret; i++) {
		const struct vm_desc *vm = &set->vms[i];
		int slot = store_find(s, vm->instance_id);

		ret = loadmap_tree_size(key, set, vm, &len);
		if (!ret)
			ret = arena_plan_alloc(plan, len);
		if (ret == -ENOSPC)
			loadmap_no_room(set, vm, len, used_before, plan, free_before);
		if (!ret && slot >= 0)
			arena_plan_free(plan, &s->arena, (uint32_t)s->vms[slot].tree_ref);
	}
	free(plan);
	return ret;
}

/* Compiles the VM (signed, Last-Modified now) and hands the image to the
 * store with the VM's record. */
static int loadmap_put(struct store *s, const struct identity_key *key, const struct vm_desc *vm, char *err,
		       size_t errlen)
{
	struct store_vm rec = {
		.ipv4 = vm->ipv4,
		.http_tokens = vm->http_tokens,
		.hop_limit = vm->hop_limit,
		.rate_pps = vm->rate_pps,
		.rate_burst = vm->rate_burst,
		.binding = vm->port[0] ? IMDS_BIND_PINNED : vm->first_use ? IMDS_BIND_FIRST_USE : IMDS_BIND_NONE,
	};
	struct store_image image = { 0 };
	struct tree_meta meta;
	void *data = NULL;
	int ret;

	loadmap_meta(vm, (uint64_t)time(NULL), &meta);
	ret = vm_compile_signed(vm, &meta, key, &data, &image.len, err, errlen);
	if (ret)
		return ret;
	snprintf(rec.instance_id, sizeof(rec.instance_id), "%s", vm->instance_id);
	memcpy(rec.mac, vm->mac, sizeof(rec.mac));
	memcpy(rec.port, vm->port, sizeof(rec.port));
	image.data = data;
	ret = store_put(s, &rec, &image, err, errlen);
	free(data);
	return ret;
}

static int loadmap_apply(struct store *s, const struct identity_key *key, const struct vm_set *set, int *added,
			 int *updated)
{
	char err[LOADMAP_ERRLEN] = "";

	for (size_t i = 0; i < set->n; i++) {
		const struct vm_desc *vm = &set->vms[i];
		bool exists = store_find(s, vm->instance_id) >= 0;
		int ret = loadmap_put(s, key, vm, err, sizeof(err));

		if (ret) {
			/* Checked beforehand, so only a system error gets here. */
			loadmap_err("%s: %s (%zu of %zu VMs were applied)", set->source, err, i, set->n);
			return ret;
		}
		*(exists ? updated : added) += 1;
	}
	return 0;
}

static int loadmap_cmd_load(struct loadmap_ctx *ctx, int argc, char **argv)
{
	struct conf_error cerr = { "" };
	struct vm_set set = { 0 };
	int added = 0, updated = 0, ret;

	(void)argc;
	ret = vmconf_load_file(argv[0], &set, &cerr);
	if (ret) {
		fprintf(stderr, "%s\n", cerr.text);
		return LOADMAP_FAIL;
	}
	ret = loadmap_identity(ctx);
	if (!ret)
		ret = loadmap_open(ctx);
	if (ret)
		goto out;
	ret = loadmap_check_conflicts(&ctx->store, &set, &cerr);
	if (ret) {
		fprintf(stderr, "%s\n", cerr.text);
		goto out;
	}
	ret = loadmap_check_slots(&ctx->store, &set);
	if (!ret)
		ret = loadmap_check_room(&ctx->store, ctx->identity, &set);
	if (!ret)
		ret = loadmap_apply(&ctx->store, ctx->identity, &set, &added, &updated);
	if (!ret)
		printf("loaded %zu VMs from %s (%d added, %d updated)\n", set.n, argv[0], added, updated);
out:
	loadmap_close(ctx);
	vmconf_free(&set);
	return ret ? LOADMAP_FAIL : LOADMAP_OK;
}

/* `load` without the loading: every check, the loaded VMs' included, so a
 * caller (the libvirt hook's prepare) learns the loader's exact error. */
static int loadmap_cmd_check(struct loadmap_ctx *ctx, int argc, char **argv)
{
	struct conf_error cerr = { "" };
	struct vm_set set = { 0 };
	int ret;

	(void)argc;
	ret = vmconf_load_file(argv[0], &set, &cerr);
	if (!ret)
		ret = loadmap_identity(ctx);
	if (!ret)
		ret = loadmap_open(ctx);
	if (!ret && (ret = loadmap_check_conflicts(&ctx->store, &set, &cerr)) == 0)
		ret = loadmap_check_slots(&ctx->store, &set);
	if (!ret)
		ret = loadmap_check_room(&ctx->store, ctx->identity, &set);
	if (cerr.text[0])
		fprintf(stderr, "%s\n", cerr.text);
	if (!ret)
		printf("%s: %zu VMs, all valid\n", argv[0], set.n);
	loadmap_close(ctx);
	vmconf_free(&set);
	return ret ? LOADMAP_FAIL : LOADMAP_OK;
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

/* ---- list ---- */

#define LIST_COLS 7

struct list_row {
	char col[LIST_COLS][IMDS_INSTANCE_ID_MAX];
};

static void loadmap_port_name(uint32_t ifindex, char *out, size_t outlen)
{
	char name[IF_NAMESIZE];

	if (ifindex == 0)
		snprintf(out, outlen, "-");
	else if (if_indextoname(ifindex, name))
		snprintf(out, outlen, "%s", name);
	else
		snprintf(out, outlen, "if%u", ifindex); /* the port is gone */
}

static const char *loadmap_tokens_name(uint8_t http_tokens)
{
	return http_tokens == IMDS_TOKENS_REQUIRED ? "required" : "optional";
}

/* A pinned VM shows the name it is pinned to even while that port is
 * absent; any other VM the port it is bound to. */
static void loadmap_port_column(const struct store *s, uint32_t slot, char *out, size_t outlen)
{
	const char *pinned = store_port_name(s, slot);

	if (pinned)
		snprintf(out, outlen, "%s", pinned);
	else
		loadmap_port_name(s->vms[slot].ifindex, out, outlen);
}

static void loadmap_list_row(const struct store *s, uint32_t slot, struct list_row *row)
{
	const struct imds_vm *r = &s->vms[slot];
	char ip[INET_ADDRSTRLEN], mac[18];

	vmconf_format_mac(r->mac, mac);
	loadmap_format_ipv4(r->ipv4, ip);
	snprintf(row->col[0], sizeof(row->col[0]), "%s", r->instance_id);
	snprintf(row->col[1], sizeof(row->col[1]), "%s", mac);
	snprintf(row->col[2], sizeof(row->col[2]), "%s", ip);
	loadmap_port_column(s, slot, row->col[3], sizeof(row->col[3]));
	snprintf(row->col[4], sizeof(row->col[4]), "%s", store_binding_state(s, slot));
	snprintf(row->col[5], sizeof(row->col[5]), "%s", loadmap_tokens_name(r->http_tokens));
	snprintf(row->col[6], sizeof(row->col[6]), "%u", r->hop_limit);
}

static void loadmap_print_rows(const struct list_row *rows, size_t n)
{
	int width[LIST_COLS] = { 0 };

	for (size_t i = 0; i < n; i++)
		for (int c = 0; c < LIST_COLS; c++)
			if ((int)strlen(rows[i].col[c]) > width[c])
				width[c] = (int)strlen(rows[i].col[c]);
	for (size_t i = 0; i < n; i++) {
		for (int c = 0; c < LIST_COLS - 1; c++)
			printf("%-*s  ", width[c], rows[i].col[c]);
		printf("%s\n", rows[i].col[LIST_COLS - 1]);
	}
}

static int loadmap_cmd_list(struct loadmap_ctx *ctx, int argc, char **argv)
{
	static const struct list_row header = { { "INSTANCE-ID", "MAC", "IPV4", "PORT", "BINDING", "TOKENS",
						       "HOP-LIMIT" } };
	struct list_row *rows;
	size_t n = 0;

	(void)argc;
	(void)argv;
	rows = calloc(IMDS_MAX_VMS, sizeof(*rows));
	if (!rows) {
		loadmap_err("out of memory");
		return LOADMAP_FAIL;
	}
	if (loadmap_open(ctx)) {
		free(rows);
		return LOADMAP_FAIL;
	}
	rows[n++] = header;
	for (int slot = 1; slot < IMDS_MAX_VMS; slot++)
		if (ctx->store.vms[slot].state == IMDS_VM_ACTIVE)
			loadmap_list_row(&ctx->store, (uint32_t)slot, &rows[n++]);
	loadmap_close(ctx);
	loadmap_print_rows(rows, n);
	free(rows);
	return LOADMAP_OK;
}

/* ---- show ---- */

/* Every node path of the tree.  The node table was bounds-checked by
 * tree_view_init; each path is checked here. */
static json_t *loadmap_tree_paths(const struct tree_view *v)
{
	const struct tree_hdr *h = (const struct tree_hdr *)v->base;
	const struct tree_node *nodes = (const struct tree_node *)(v->base + h->nodes_off);
	json_t *paths = json_array();

	for (uint32_t i = 0; paths && i < h->n_nodes; i++) {
		const struct tree_node *nd = &nodes[i];

		if (nd->path_off > v->len || nd->path_len > v->len - nd->path_off)
			continue;
		json_array_append_new(paths, json_stringn((const char *)v->base + nd->path_off, nd->path_len));
	}
	return paths;
}

static void loadmap_rfc3339(uint64_t unix_time, char out[32])
{
	time_t t = (time_t)unix_time;
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static json_t *loadmap_show_json(const struct store *s, int slot, const struct vm_snapshot *snap)
{
	const struct imds_vm *r = &s->vms[slot];
	char mac[18], ip[INET_ADDRSTRLEN], port[IF_NAMESIZE + 16], updated[32];
	json_t *doc;

	vmconf_format_mac(r->mac, mac);
	loadmap_format_ipv4(r->ipv4, ip);
	loadmap_port_column(s, (uint32_t)slot, port, sizeof(port));
	loadmap_rfc3339(r->updated_unix, updated);
	/* "o" steals the paths array; "s?" turns an unbound port into null. */
	doc = json_pack("{s:s, s:i, s:I, s:s, s:s, s:s?, s:I, s:s, s:i, s:s, s:I, s:I, s:I, s:I, s:o}",
			 "instance-id", r->instance_id, "slot", slot, "generation", (json_int_t)r->generation,
			 "mac", mac, "ipv4", ip, "port", r->ifindex || store_port_name(s, (uint32_t)slot) ? port : NULL,
			 "ifindex",
			 (json_int_t)r->ifindex, "http-tokens", loadmap_tokens_name(r->http_tokens),
			 "hop-limit", r->hop_limit, "updated", updated, "tree-generation",
			 (json_int_t)(snap->tree_ref >> 32), "tree-bytes", (json_int_t)snap->tree.len,
			 "tree-pages", (json_int_t)arena_pages_for(snap->tree.len), "arena-bytes-used",
			 (json_int_t)arena_used_bytes(&s->arena), "paths", loadmap_tree_paths(&snap->tree));
	if (doc)
		json_object_set_new(doc, "binding", json_string(store_binding_state(s, (uint32_t)slot)));
	return doc;
}

static int loadmap_cmd_show(struct loadmap_ctx *ctx, int argc, char **argv)
{
	struct vm_snapshot snap;
	json_t *doc = NULL;
	int slot, ret;

	(void)argc;
	if (loadmap_open(ctx))
		return LOADMAP_FAIL;
	slot = loadmap_find(ctx, argv[0]);
	ret = slot < 0 ? slot : store_snapshot(&ctx->store, (uint32_t)slot, ctx->store.vms[slot].generation, &snap);
	if (slot >= 0 && ret)
		loadmap_err("cannot read the tree of %s: %s", argv[0], strerror(-ret));
	if (!ret) {
		doc = loadmap_show_json(&ctx->store, slot, &snap);
		ret = doc && json_dumpf(doc, stdout, JSON_INDENT(2)) == 0 ? 0 : -ENOMEM;
		if (ret)
			loadmap_err("cannot format the VM as JSON");
		else
			putchar('\n');
	}
	json_decref(doc);
	loadmap_close(ctx);
	return ret ? LOADMAP_FAIL : LOADMAP_OK;
}

/* ---- stats ---- */

static int loadmap_print_counters(const struct store *s, uint32_t slot, const char *label)
{
	struct imds_counters c;
	int ret = store_counters(s, slot, &c);

	if (ret) {
		loadmap_err("cannot read the counters of %s: %s", label, strerror(-ret));
		return ret;
	}
	for (int i = 0; i < IMDS_REASON_MAX; i++)
		if (c.packets[i])
			printf("%s %s %llu\n", label, imds_reason_names[i], (unsigned long long)c.packets[i]);
	return 0;
}

static int loadmap_cmd_stats(struct loadmap_ctx *ctx, int argc, char **argv)
{
	const struct store *s = &ctx->store;
	int ret = 0, slot;

	if (loadmap_open(ctx))
		return LOADMAP_FAIL;
	if (argc == 1) {
		slot = loadmap_find(ctx, argv[0]);
		ret = slot < 0 ? slot : loadmap_print_counters(s, (uint32_t)slot, argv[0]);
		goto out;
	}
	ret = loadmap_print_counters(s, 0, "total");
	for (slot = 1; slot < IMDS_MAX_VMS && !ret; slot++)
		if (s->vms[slot].state == IMDS_VM_ACTIVE)
			ret = loadmap_print_counters(s, (uint32_t)slot, s->vms[slot].instance_id);
out:
	loadmap_close(ctx);
	return ret ? LOADMAP_FAIL : LOADMAP_OK;
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
	{ "load", "FILE", 1, 1, "add or update the VMs described in FILE (JSON)", loadmap_cmd_load },
	{ "check", "FILE", 1, 1, "check FILE as `load` would, changing nothing", loadmap_cmd_check },
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

enum { OPT_PIN_DIR, OPT_KEY_DIR };

static const struct cli_option loadmap_options[] = {
	[OPT_PIN_DIR] = { "pin-dir", 0, "DIR", "pin directory of the maps (default " IMDS_DEFAULT_PIN_DIR ")" },
	[OPT_KEY_DIR] = { "key-dir", 0, "DIR",
			  "identity keys and certificates (default $" IDENTITY_DIR_ENV " or " IDENTITY_DEFAULT_DIR ")" },
	{ 0 },
};

static int loadmap_on_option(void *arg, int index, const char *optarg)
{
	struct loadmap_ctx *ctx = arg;

	if (index == OPT_PIN_DIR)
		ctx->pin_dir = optarg;
	else if (index == OPT_KEY_DIR)
		ctx->key_dir = optarg;
	return 0;
}

/* The synopsis lists the commands from the same table dispatch uses. */
static const char *loadmap_synopsis(void)
{
	static char text[2048];
	size_t off;

	off = (size_t)snprintf(text, sizeof(text), "[OPTIONS] COMMAND [ARGS]\n\ncommands:");
	for (const struct loadmap_cmd *c = loadmap_cmds; c->name && off < sizeof(text); c++) {
		char left[64];

		snprintf(left, sizeof(left), "%s %s", c->name, c->args);
		off += (size_t)snprintf(text + off, sizeof(text) - off, "\n  %-28s %s", left, c->help);
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

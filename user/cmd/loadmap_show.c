/* loadmap_show.c: imds-loadmap's commands that show the store: list (one
 * line per VM), show (a VM and its tree's paths, as JSON) and stats (the
 * data plane's counters). */
#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cmd/loadmap.h"
#include "compile/vmconf.h"
#include "imds.h"
#include "lib/tree.h"
#include "ports/netlink.h"
#include "store/arena.h"

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

/* ---- list ---- */

#define LIST_COLS 8

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

/* The bridge a VM's port is on: the port's master as the kernel says it
 * now, so nothing is recorded that could go stale; "-" while the VM has
 * no port or its port is on no bridge. */
static void loadmap_bridge_name(uint32_t ifindex, char *out, size_t outlen)
{
	struct nl_link port;
	char name[IF_NAMESIZE];

	if (ifindex && nl_link_get((int)ifindex, &port) == 0 && port.master &&
	    if_indextoname((unsigned)port.master, name))
		snprintf(out, outlen, "%s", name);
	else
		snprintf(out, outlen, "-");
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
	loadmap_bridge_name(__atomic_load_n(&r->ifindex, __ATOMIC_ACQUIRE), row->col[3], sizeof(row->col[3]));
	loadmap_port_column(s, slot, row->col[4], sizeof(row->col[4]));
	snprintf(row->col[5], sizeof(row->col[5]), "%s", store_binding_state(s, slot));
	snprintf(row->col[6], sizeof(row->col[6]), "%s", loadmap_tokens_name(r->http_tokens));
	snprintf(row->col[7], sizeof(row->col[7]), "%u", r->hop_limit);
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

int loadmap_cmd_list(struct loadmap_ctx *ctx, int argc, char **argv)
{
	static const struct list_row header = { { "INSTANCE-ID", "MAC", "IPV4", "BRIDGE", "PORT", "BINDING",
						       "TOKENS", "HOP-LIMIT" } };
	struct list_row *rows;
	size_t n = 0;

	(void)argc;
	(void)argv;
	if (loadmap_open(ctx))
		return LOADMAP_FAIL;
	rows = calloc(ctx->store.max_slots, sizeof(*rows));
	if (!rows) {
		loadmap_close(ctx);
		loadmap_err("out of memory");
		return LOADMAP_FAIL;
	}
	rows[n++] = header;
	for (int slot = 1; slot < (int)ctx->store.max_slots; slot++)
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
	char mac[18], ip[INET_ADDRSTRLEN], port[IF_NAMESIZE + 16], updated[32], bridge[IF_NAMESIZE];
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
	loadmap_bridge_name(r->ifindex, bridge, sizeof(bridge));
	if (doc) {
		json_object_set_new(doc, "binding", json_string(store_binding_state(s, (uint32_t)slot)));
		json_object_set_new(doc, "bridge", strcmp(bridge, "-") ? json_string(bridge) : json_null());
	}
	return doc;
}

int loadmap_cmd_show(struct loadmap_ctx *ctx, int argc, char **argv)
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

int loadmap_cmd_stats(struct loadmap_ctx *ctx, int argc, char **argv)
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
	for (slot = 1; slot < (int)s->max_slots && !ret; slot++)
		if (s->vms[slot].state == IMDS_VM_ACTIVE)
			ret = loadmap_print_counters(s, (uint32_t)slot, s->vms[slot].instance_id);
out:
	loadmap_close(ctx);
	return ret ? LOADMAP_FAIL : LOADMAP_OK;
}


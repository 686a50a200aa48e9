/* fsck.c: proving the store consistent, and the recovery every writer runs
 * when it takes the lock.
 *
 * A writer killed at any instant leaves each VM with its old or its new
 * tree (one atomic store switches them), but it may leave arena pages that
 * no VM owns (allocated, not yet switched to; or switched away from, not
 * yet freed) and index entries out of step with vm_table (store_add
 * activates a VM before indexing it).  store_recover reclaims and repairs
 * exactly those; store_fsck checks, changing nothing, that every arena page
 * is free or owned by exactly one live VM's block, that the header's count
 * agrees with the bitmap, and that mac_index, ipv4_index and ipv6_index
 * name exactly the live VMs (and, for IPv6, the addresses they list).
 */
#include "store/store.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "imds.skel.h"
#include "lib/macaddr.h"

struct fsck_log {
	char *out;
	size_t len, used;
	int problems;
};

static void fsck_say(struct fsck_log *log, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void fsck_say(struct fsck_log *log, const char *fmt, ...)
{
	va_list ap;
	int n;

	log->problems++;
	if (log->used + 1 >= log->len)
		return;
	va_start(ap, fmt);
	n = vsnprintf(log->out + log->used, log->len - log->used, fmt, ap);
	va_end(ap);
	if (n > 0)
		log->used += (size_t)n < log->len - log->used ? (size_t)n : log->len - log->used - 1;
	if (log->used + 1 < log->len)
		log->out[log->used++] = '\n', log->out[log->used] = '\0';
}

/* Marks the pages of each live VM's block in owned[] (how many blocks claim
 * each page); problems with a VM's block go to log (may be NULL). */
static void fsck_owned(const struct store *s, uint8_t *owned, struct fsck_log *log)
{
	for (uint32_t slot = 1; slot < s->max_slots; slot++) {
		const struct imds_vm *r = &s->vms[slot];
		uint32_t page = (uint32_t)r->tree_ref;
		struct arena_block b;

		if (!store_vm_active(r))
			continue;
		if (arena_block_info(&s->arena, page, &b) < 0) {
			if (log)
				fsck_say(log, "%s (slot %u): tree_ref page %u is not an allocated block", r->instance_id,
					 slot, page);
			continue;
		}
		if (log && b.slot != slot)
			fsck_say(log, "%s (slot %u): its block at page %u names slot %u", r->instance_id, slot, page,
				 b.slot);
		if (log && (b.seq & 1))
			fsck_say(log, "%s (slot %u): its block at page %u is not published (seq %u)", r->instance_id,
				 slot, page, b.seq);
		for (uint32_t p = page; p < page + b.npages; p++)
			if (owned[p] < 255)
				owned[p]++;
	}
}

static int fsck_index_fd(const struct store *s, bool ipv4)
{
	if (!s->skel)
		return -EBADF;
	return ipv4 ? bpf_map__fd(s->skel->maps.IMDS_MAP_IPV4_INDEX_ID) : s->mac_fd;
}

/* Does the index entry (key -> slot) describe a live VM? */
static bool fsck_entry_ok(const struct store *s, bool ipv4, const void *key, uint32_t slot)
{
	const struct imds_vm *r;

	if (slot == 0 || slot >= s->max_slots || !store_vm_active(&s->vms[slot]))
		return false;
	r = &s->vms[slot];
	return ipv4 ? memcmp(key, &r->ipv4, 4) == 0 : memcmp(key, r->mac, 6) == 0;
}

static void fsck_key(const struct store *s, bool ipv4, uint32_t slot, void *key)
{
	struct imds_mac_key *mk = key;

	if (ipv4) {
		memcpy(key, &s->vms[slot].ipv4, 4);
		return;
	}
	memset(mk, 0, sizeof(*mk));
	memcpy(mk->addr, s->vms[slot].mac, 6);
}

/* Walks one index: entries that name no live VM (repair: deleted), and live
 * VMs missing from it (repair: added).  Returns the number of findings. */
static int fsck_index(struct store *s, bool ipv4, bool repair, struct fsck_log *log)
{
	const char *name = ipv4 ? IMDS_MAP_IPV4_INDEX : IMDS_MAP_MAC_INDEX;
	int fd = fsck_index_fd(s, ipv4), found = 0;
	uint8_t key[8], next[8];
	void *prev = NULL;
	uint32_t slot;

	if (fd < 0)
		return 0;
	while (bpf_map_get_next_key(fd, prev, next) == 0) {
		memcpy(key, next, sizeof(key));
		prev = key;
		if (bpf_map_lookup_elem(fd, key, &slot) < 0 || fsck_entry_ok(s, ipv4, key, slot))
			continue;
		found++;
		if (log)
			fsck_say(log, "%s: an entry names slot %u, which holds no VM with that key", name, slot);
		if (repair && bpf_map_delete_elem(fd, key) == 0)
			prev = NULL; /* the walk restarts: the deleted key cannot lead on */
	}
	for (slot = 1; slot < s->max_slots; slot++) {
		uint32_t got;

		if (!store_vm_active(&s->vms[slot]))
			continue;
		fsck_key(s, ipv4, slot, key);
		if (bpf_map_lookup_elem(fd, key, &got) == 0 && got == slot)
			continue;
		found++;
		if (log)
			fsck_say(log, "%s: %s (slot %u) is missing", name, s->vms[slot].instance_id, slot);
		if (repair)
			bpf_map_update_elem(fd, key, &slot, BPF_ANY);
	}
	return found;
}

/* ipv6_index against each live VM's list in vm_ipv6 (ipv6.c): entries
 * that name no live VM listing that address (repair: deleted; a killed
 * publish indexes addresses before it lists them), and listed addresses
 * missing (repair: added).  Returns the number of findings. */
static int fsck_ipv6_index(struct store *s, bool repair, struct fsck_log *log)
{
	int fd = s->skel ? bpf_map__fd(s->skel->maps.IMDS_MAP_IPV6_INDEX_ID) : -1, found = 0;
	uint8_t key[16], next[16];
	struct imds_ipv6_owner owner;
	struct imds_vm_ipv6 list;
	void *prev = NULL;

	if (fd < 0)
		return 0;
	while (bpf_map_get_next_key(fd, prev, next) == 0) {
		memcpy(key, next, sizeof(key));
		prev = key;
		if (bpf_map_lookup_elem(fd, key, &owner) < 0 || store_find_ipv6(s, key) < 0 ||
		    store_vm_ipv6(s, owner.slot, &list) < 0 || !store_ipv6_listed(&list, key)) {
			found++;
			if (log)
				fsck_say(log, "%s: an entry names slot %u, which holds no VM with that address",
					 IMDS_MAP_IPV6_INDEX, owner.slot);
			if (repair && bpf_map_delete_elem(fd, key) == 0)
				prev = NULL;
		}
	}
	for (uint32_t slot = 1; slot < s->max_slots; slot++) {
		if (!store_vm_active(&s->vms[slot]) || store_vm_ipv6(s, slot, &list) < 0)
			continue;
		for (unsigned i = 0; i < list.count; i++) {
			if (store_find_ipv6(s, list.addr[i]) == (int)slot)
				continue;
			found++;
			if (log)
				fsck_say(log, "%s: %s (slot %u) is missing an address", IMDS_MAP_IPV6_INDEX,
					 s->vms[slot].instance_id, slot);
			owner = (struct imds_ipv6_owner){ .slot = slot, .generation = s->vms[slot].generation };
			if (repair)
				bpf_map_update_elem(fd, list.addr[i], &owner, BPF_ANY);
		}
	}
	return found;
}

int store_recover(struct store *s, struct store_recovery *out)
{
	uint8_t *owned = calloc(arena_total_pages(&s->arena), 1);

	if (!owned)
		return -ENOMEM;
	memset(out, 0, sizeof(*out));
	fsck_owned(s, owned, NULL);
	out->pages_reclaimed = arena_reclaim(&s->arena, owned);
	free(owned);
	out->index_repairs = fsck_index(s, false, true, NULL) + fsck_index(s, true, true, NULL) +
			     fsck_ipv6_index(s, true, NULL);
	return 0;
}

static void fsck_pages(const struct store *s, const uint8_t *owned, struct fsck_log *log)
{
	uint32_t total = arena_total_pages(&s->arena), leaked = 0, first_leak = 0;

	for (uint32_t p = 1; p < total; p++) {
		bool used = arena_page_used(&s->arena, p);

		if (owned[p] > 1)
			fsck_say(log, "arena page %u is owned by %u VMs", p, owned[p]);
		if (owned[p] && !used)
			fsck_say(log, "arena page %u belongs to a live VM's block but is marked free", p);
		if (!owned[p] && used && leaked++ == 0)
			first_leak = p;
	}
	if (leaked)
		fsck_say(log, "%u arena pages are in use but owned by no live VM (first: page %u)", leaked,
			 first_leak);
	if (arena_counted_pages(&s->arena) != arena_bitmap_pages(&s->arena))
		fsck_say(log, "the arena header counts %u pages in use, its bitmap %u", arena_counted_pages(&s->arena),
			 arena_bitmap_pages(&s->arena));
}

static void fsck_trees(const struct store *s, struct fsck_log *log)
{
	for (uint32_t slot = 1; slot < s->max_slots; slot++) {
		const struct imds_vm *r = &s->vms[slot];
		struct vm_snapshot snap;
		int ret;

		if (!store_vm_active(r))
			continue;
		ret = store_snapshot(s, slot, r->generation, &snap);
		if (ret)
			fsck_say(log, "%s (slot %u): its tree cannot be read: %s", r->instance_id, slot, strerror(-ret));
		for (uint32_t other = slot + 1; other < s->max_slots; other++)
			if (store_vm_active(&s->vms[other]) &&
			    strncmp(s->vms[other].instance_id, r->instance_id, IMDS_INSTANCE_ID_MAX) == 0)
				fsck_say(log, "%s is loaded twice (slots %u and %u)", r->instance_id, slot, other);
	}
}

int store_fsck(struct store *s, char *out, size_t outlen)
{
	struct fsck_log log = { .out = out, .len = outlen };
	uint8_t *owned = calloc(arena_total_pages(&s->arena), 1);

	if (!owned)
		return -ENOMEM;
	if (outlen)
		out[0] = '\0';
	fsck_owned(s, owned, &log);
	fsck_pages(s, owned, &log);
	free(owned);
	fsck_trees(s, &log);
	fsck_index(s, false, false, &log);
	fsck_index(s, true, false, &log);
	fsck_ipv6_index(s, false, &log);
	return log.problems;
}

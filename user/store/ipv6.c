/* ipv6.c: a loaded VM's IPv6 addresses (docs/ipv6.md).  ipv6_index maps
 * each to its owner (slot and generation) for the data plane, as
 * ipv4_index does for IPv4; vm_ipv6 keeps, by slot, the list that was
 * indexed, so an update or a delete removes exactly those entries, and the
 * VM's IPv6 flags.  Call everything with the store's lock held.
 *
 * Order, for the lock-free data plane: new entries are indexed before the
 * list says them and old ones leave after, and an entry only ever speaks
 * for the generation it names, so a slot's next VM never inherits one. */
#include "store/store.h"

#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "imds.skel.h"

static int store_ipv6_index_fd(const struct store *s)
{
	return s->skel ? bpf_map__fd(s->skel->maps.IMDS_MAP_IPV6_INDEX_ID) : -EBADF;
}

static int store_vm_ipv6_fd(const struct store *s)
{
	return s->skel ? bpf_map__fd(s->skel->maps.IMDS_MAP_VM_IPV6_ID) : -EBADF;
}

/* The live owner of `addr`: its slot, or -ENOENT. */
static int store_ipv6_owner(const struct store *s, const uint8_t addr[16])
{
	struct imds_ipv6_owner owner;
	const struct imds_vm *r;

	if (bpf_map_lookup_elem(store_ipv6_index_fd(s), addr, &owner) < 0)
		return -ENOENT;
	if (owner.slot == 0 || owner.slot >= s->max_slots)
		return -ENOENT;
	r = &s->vms[owner.slot];
	if (!store_vm_active(r) || r->generation != owner.generation)
		return -ENOENT;
	return (int)owner.slot;
}

int store_find_ipv6(const struct store *s, const uint8_t addr[16])
{
	return store_ipv6_owner(s, addr);
}

int store_ipv6_check_unique(const struct store *s, const struct store_vm *vm, int self, char *err, size_t errlen)
{
	char text[INET6_ADDRSTRLEN];

	for (unsigned i = 0; i < vm->n_ipv6; i++) {
		int owner = store_ipv6_owner(s, vm->ipv6[i]);

		if (owner < 0 || owner == self)
			continue;
		inet_ntop(AF_INET6, vm->ipv6[i], text, sizeof(text));
		snprintf(err, errlen, "%s: ipv6 %s is already used by loaded VM %s", vm->instance_id, text,
			 s->vms[owner].instance_id);
		return -EEXIST;
	}
	return 0;
}

int store_vm_ipv6(const struct store *s, uint32_t slot, struct imds_vm_ipv6 *out)
{
	memset(out, 0, sizeof(*out));
	if (bpf_map_lookup_elem(store_vm_ipv6_fd(s), &slot, out) < 0)
		return -errno;
	if (out->generation != s->vms[slot].generation || out->count > IMDS_VM_IPV6_MAX)
		memset(out, 0, sizeof(*out)); /* left by the slot's previous VM */
	return 0;
}

bool store_ipv6_listed(const struct imds_vm_ipv6 *list, const uint8_t addr[16])
{
	for (unsigned i = 0; i < list->count; i++)
		if (!memcmp(list->addr[i], addr, 16))
			return true;
	return false;
}

/* Deletes the index entries of `list` not in `keep` (may be NULL) that
 * still name `slot`. */
static void store_ipv6_unindex(const struct store *s, uint32_t slot, const struct imds_vm_ipv6 *list,
			       const struct imds_vm_ipv6 *keep)
{
	struct imds_ipv6_owner owner;

	for (unsigned i = 0; i < list->count; i++) {
		if (keep && store_ipv6_listed(keep, list->addr[i]))
			continue;
		if (bpf_map_lookup_elem(store_ipv6_index_fd(s), list->addr[i], &owner) == 0 && owner.slot == slot)
			bpf_map_delete_elem(store_ipv6_index_fd(s), list->addr[i]);
	}
}

int store_ipv6_publish(struct store *s, uint32_t slot, const struct store_vm *vm, char *err, size_t errlen)
{
	struct imds_ipv6_owner owner = { .slot = slot, .generation = s->vms[slot].generation };
	struct imds_vm_ipv6 old, now = { .generation = owner.generation, .count = vm->n_ipv6 };
	int ret;

	if (vm->n_ipv6 > IMDS_VM_IPV6_MAX)
		return -EINVAL;
	now.flags = vm->ipv6_router ? IMDS_VM_IPV6_ROUTER : 0;
	memcpy(now.addr, vm->ipv6, sizeof(now.addr[0]) * vm->n_ipv6);
	ret = store_vm_ipv6(s, slot, &old);
	for (unsigned i = 0; !ret && i < now.count; i++)
		if (bpf_map_update_elem(store_ipv6_index_fd(s), now.addr[i], &owner, BPF_ANY) < 0)
			ret = -errno;
	if (!ret && bpf_map_update_elem(store_vm_ipv6_fd(s), &slot, &now, BPF_ANY) < 0)
		ret = -errno;
	if (ret) {
		snprintf(err, errlen, "%s: cannot index its ipv6: %s", vm->instance_id, strerror(-ret));
		store_ipv6_unindex(s, slot, &now, &old);
		return ret;
	}
	store_ipv6_unindex(s, slot, &old, &now);
	return 0;
}

void store_ipv6_forget(struct store *s, uint32_t slot)
{
	struct imds_vm_ipv6 old, none = { 0 };

	if (store_vm_ipv6(s, slot, &old) < 0)
		return;
	store_ipv6_unindex(s, slot, &old, NULL);
	bpf_map_update_elem(store_vm_ipv6_fd(s), &slot, &none, BPF_ANY);
}

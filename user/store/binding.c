/* binding.c: which bridge port each VM is served on.  A pinned VM's port is
 * known by name before the VM speaks (its record, `imds-loadmap bind`, the
 * libvirt hook); the name is kept in vm_ports and resolved to an ifindex
 * here, when the VM is loaded or bound (if the port exists) and whenever a
 * port of that name joins the bridge (imdsd).  The data plane only ever
 * compares ifindexes.  Call everything with the store's lock held. */
#include "store/store.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "imds.skel.h"

static bool binding_name_ok(const char *port)
{
	size_t n = strlen(port);

	return n > 0 && n < IMDS_PORT_NAME_MAX && !strchr(port, '/') && strcmp(port, ".") && strcmp(port, "..");
}

/* port_index: the data plane's answer to "is this port a VM's?" (Router
 * Advertisements, docs/ipv6.md).  Best effort: without the entry only
 * that check is weaker, and the entry is rewritten at the next binding. */
static void binding_index_port(const struct store *s, uint32_t ifindex, uint32_t slot)
{
	if (ifindex && s->skel)
		bpf_map_update_elem(bpf_map__fd(s->skel->maps.IMDS_MAP_PORT_INDEX_ID), &ifindex, &slot, BPF_ANY);
}

static uint32_t binding_resolve(const char *port)
{
	return port[0] ? if_nametoindex(port) : 0;
}

void store_set_binding(struct store *s, uint32_t slot, uint8_t binding, const char *port)
{
	struct imds_vm *r = &s->vms[slot];
	struct imds_vm_port *p = &s->ports[slot];
	uint32_t ifindex = 0;

	if (binding == IMDS_BIND_PINNED) {
		ifindex = binding_resolve(port);
	} else if (binding == IMDS_BIND_FIRST_USE && r->binding == IMDS_BIND_FIRST_USE) {
		ifindex = __atomic_load_n(&r->ifindex, __ATOMIC_ACQUIRE); /* keep what it learned */
	}
	/* The name before the ifindex: imdsd pins by name under the same lock,
	 * and the data plane reads ifindex, then binding, each on its own. */
	memset(p, 0, sizeof(*p));
	if (binding == IMDS_BIND_PINNED)
		snprintf(p->name, sizeof(p->name), "%s", port);
	p->generation = r->generation;
	binding_index_port(s, ifindex, slot);
	__atomic_store_n(&r->ifindex, ifindex, __ATOMIC_RELEASE);
	__atomic_store_n(&r->binding, binding, __ATOMIC_RELEASE);
}

int store_bind(struct store *s, const char *instance_id, const char *port)
{
	int slot = store_find(s, instance_id);
	uint8_t binding = port ? IMDS_BIND_PINNED : IMDS_BIND_NONE;

	if (slot < 0)
		return slot;
	if (port && !binding_name_ok(port))
		return -EINVAL;
	/* Unpinning a first-use VM leaves it first-use: its record opted in. */
	if (!port && s->vms[slot].binding == IMDS_BIND_FIRST_USE)
		binding = IMDS_BIND_FIRST_USE;
	store_set_binding(s, (uint32_t)slot, binding, port ? port : "");
	return 0;
}

static bool binding_names(const struct store *s, uint32_t slot, const char *name)
{
	const struct imds_vm *r = &s->vms[slot];
	const struct imds_vm_port *p = &s->ports[slot];

	return store_vm_active(r) && r->binding == IMDS_BIND_PINNED && p->generation == r->generation &&
	       strncmp(p->name, name, sizeof(p->name)) == 0;
}

int store_pin_port(struct store *s, uint32_t ifindex, const char *name)
{
	int bound = 0;

	for (uint32_t slot = 1; slot < s->max_slots; slot++) {
		if (!binding_names(s, slot, name))
			continue;
		binding_index_port(s, ifindex, slot);
		__atomic_store_n(&s->vms[slot].ifindex, ifindex, __ATOMIC_RELEASE);
		bound++;
	}
	return bound;
}

static int binding_cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return (x > y) - (x < y);
}

int store_release_absent(struct store *s, const uint32_t *present, size_t n)
{
	uint32_t *sorted = malloc((n ? n : 1) * sizeof(*sorted));
	uint32_t *gone = malloc(s->max_slots * sizeof(*gone));
	size_t ngone = 0;
	int ret;

	if (!sorted || !gone) {
		free(sorted);
		free(gone);
		return -ENOMEM;
	}
	memcpy(sorted, present, n * sizeof(*sorted));
	qsort(sorted, n, sizeof(*sorted), binding_cmp_u32);
	for (uint32_t slot = 1; slot < s->max_slots; slot++) {
		uint32_t bound = __atomic_load_n(&s->vms[slot].ifindex, __ATOMIC_ACQUIRE);

		if (bound && store_vm_active(&s->vms[slot]) &&
		    !bsearch(&bound, sorted, n, sizeof(*sorted), binding_cmp_u32))
			gone[ngone++] = bound;
	}
	ret = store_forget_ports(s, gone, ngone);
	free(sorted);
	free(gone);
	return ret;
}

const char *store_port_name(const struct store *s, uint32_t slot)
{
	const struct imds_vm_port *p = &s->ports[slot];

	if (s->vms[slot].binding != IMDS_BIND_PINNED || p->generation != s->vms[slot].generation || !p->name[0])
		return NULL;
	return p->name;
}

const char *store_binding_state(const struct store *s, uint32_t slot)
{
	const struct imds_vm *r = &s->vms[slot];
	bool bound = __atomic_load_n(&r->ifindex, __ATOMIC_ACQUIRE) != 0;

	switch (r->binding) {
	case IMDS_BIND_PINNED:
		return bound ? "pinned" : "waiting";
	case IMDS_BIND_FIRST_USE:
		return "first-use";
	default:
		return bound ? "bound" : "unbound";
	}
}

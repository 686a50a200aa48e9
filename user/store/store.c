/* store.c: every change to the VM table, and the reads the server does per
 * connection and per request (opening the store: pins.c).  Writers
 * (imds-loadmap, imdsd's port bookkeeping) hold the flock on the pin
 * directory; imdsd workers read vm_table and the arena in place with no
 * lock, so each change is ordered to be safe for them:
 *   - a new VM's record is complete before its state becomes ACTIVE
 *     (release) and before its MAC enters mac_index and its IPv4
 *     ipv4_index; a deleted VM leaves both indexes before its record;
 *   - a replaced tree is switched with one 64-bit store of tree_ref whose high
 *     half (tree generation) changes every time, so a reader that compares
 *     tree_ref before and after notices a switch even if the page is reused;
 *   - a tree's pages are freed only after nothing points to them.
 */
#include "store/store.h"

#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "imds.skel.h"
#include "lib/macaddr.h"

/* Reads of a conn_slots entry being written before giving up on it: the
 * writer is a data-plane program's few stores, a fraction of these. */
#define STORE_CONN_SPINS 4096

int store_find(const struct store *s, const char *instance_id)
{
	for (int slot = 1; slot < (int)s->max_slots; slot++) {
		const struct imds_vm *r = &s->vms[slot];

		if (store_vm_active(r) && strncmp(r->instance_id, instance_id, sizeof(r->instance_id)) == 0)
			return slot;
	}
	return -ENOENT;
}

int store_find_mac(const struct store *s, const uint8_t mac[6])
{
	for (int slot = 1; slot < (int)s->max_slots; slot++)
		if (store_vm_active(&s->vms[slot]) && memcmp(s->vms[slot].mac, mac, 6) == 0)
			return slot;
	return -ENOENT;
}

int store_find_ipv4(const struct store *s, uint32_t ipv4_be)
{
	for (int slot = 1; slot < (int)s->max_slots; slot++)
		if (store_vm_active(&s->vms[slot]) && s->vms[slot].ipv4 == ipv4_be)
			return slot;
	return -ENOENT;
}

int store_free_slots(const struct store *s)
{
	int n = 0;

	for (int slot = 1; slot < (int)s->max_slots; slot++)
		n += !store_vm_active(&s->vms[slot]);
	return n;
}

/* Moves one VM's tree to the block arena_relocation prepared: the same
 * bytes, published, then the same atomic switch as an update (the tree
 * generation moves on, so readers of the old block retry). */
static int store_move_tree(struct store *s, uint32_t from, uint32_t to)
{
	struct arena_block b;
	struct imds_vm *r;
	uint64_t ref;

	if (arena_block_info(&s->arena, from, &b) < 0 || b.slot == 0 || b.slot >= s->max_slots)
		goto refuse;
	r = &s->vms[b.slot];
	ref = __atomic_load_n(&r->tree_ref, __ATOMIC_ACQUIRE);
	if (!store_vm_active(r) || (uint32_t)ref != from)
		goto refuse; /* an orphan: store_recover's to reclaim */
	memcpy(arena_data(&s->arena, to), arena_data(&s->arena, from), b.len);
	arena_publish(&s->arena, to);
	__atomic_store_n(&r->tree_ref, (((ref >> 32) + 1) << 32) | to, __ATOMIC_RELEASE);
	arena_free(&s->arena, from);
	return 0;
refuse:
	arena_free(&s->arena, to);
	return -EINVAL;
}

int store_make_room(struct store *s, size_t bytes)
{
	uint32_t need = arena_pages_for(bytes), from, to;

	for (int moves = 0; moves < ARENA_COMPACT_MOVES; moves++) {
		if (arena_plan_fits(&s->arena, bytes))
			return 0;
		if (arena_free_pages(&s->arena) < need || arena_relocation(&s->arena, need, &from, &to) ||
		    store_move_tree(s, from, to))
			return -ENOSPC;
	}
	return arena_plan_fits(&s->arena, bytes) ? 0 : -ENOSPC;
}

/* Copies the image for `slot` into a new arena block, names its owner in
 * the header, and publishes the block.  Readers find it only once tree_ref
 * points to it, and check the owner against the slot they asked for. */
static int store_write_tree(struct store *s, const struct store_vm *vm, const struct store_image *image,
			    uint32_t slot, uint32_t vm_gen, uint32_t *page, char *err, size_t errlen)
{
	size_t need = store_block_len(image->len, image->record_len);
	void *data;
	int ret;

	ret = arena_alloc(&s->arena, need, slot, page);
	if (ret == -ENOSPC && store_make_room(s, need) == 0)
		ret = arena_alloc(&s->arena, need, slot, page);
	if (ret) {
		snprintf(err, errlen,
			 "arena full: %s: this update needs %zu bytes (%u pages), %zu free; "
			 "recreate the store with a larger --arena-size",
			 vm->instance_id, need, arena_pages_for(need),
			 (size_t)arena_free_pages(&s->arena) * IMDS_ARENA_PAGE);
		return ret;
	}
	data = arena_data(&s->arena, *page);
	memcpy(data, image->data, image->len);
	store_record_write(data, image);
	ret = tree_set_owner(data, image->len, slot, vm_gen);
	if (ret) {
		snprintf(err, errlen, "%s: the compiled image is not a metadata tree", vm->instance_id);
		arena_free(&s->arena, *page);
		return ret;
	}
	arena_publish(&s->arena, *page);
	return 0;
}

static void store_mac_key(struct imds_mac_key *key, const uint8_t mac[6])
{
	memset(key, 0, sizeof(*key));
	memcpy(key->addr, mac, 6);
}

/* ipv4_index: which VM may send from, and be sent to at, an address (the
 * data plane's bpf/guard.h).  The map fd comes from the skeleton, which
 * store_open loaded with every map. */
static int store_ipv4_fd(const struct store *s)
{
	return s->skel ? bpf_map__fd(s->skel->maps.IMDS_MAP_IPV4_INDEX_ID) : -EBADF;
}

static int store_index_ipv4(const struct store *s, uint32_t ipv4_be, uint32_t slot)
{
	if (bpf_map_update_elem(store_ipv4_fd(s), &ipv4_be, &slot, BPF_ANY) < 0)
		return -errno;
	return 0;
}

static void store_unindex_ipv4(const struct store *s, uint32_t ipv4_be)
{
	bpf_map_delete_elem(store_ipv4_fd(s), &ipv4_be);
}

int store_ipv4_index_fill(struct store *s)
{
	uint32_t key;
	int ret;

	if (bpf_map_get_next_key(store_ipv4_fd(s), NULL, &key) == 0 || errno != ENOENT)
		return 0; /* filled, by this version's loader */
	for (uint32_t slot = 1; slot < s->max_slots; slot++) {
		if (!store_vm_active(&s->vms[slot]))
			continue;
		ret = store_index_ipv4(s, s->vms[slot].ipv4, slot);
		if (ret)
			return ret;
	}
	return 0;
}

/* Two loaded VMs with one MAC or one IPv4 would make the data plane's
 * answer (and conn_table's saddr key) ambiguous. */
static int store_check_unique(const struct store *s, const struct store_vm *vm, int self, char *err, size_t errlen)
{
	char text[INET_ADDRSTRLEN > MACADDR_TEXT_LEN ? INET_ADDRSTRLEN : MACADDR_TEXT_LEN];

	for (int slot = 1; slot < (int)s->max_slots; slot++) {
		const struct imds_vm *r = &s->vms[slot];

		if (slot == self || !store_vm_active(r))
			continue;
		if (memcmp(r->mac, vm->mac, 6) == 0) {
			macaddr_format(vm->mac, text);
			snprintf(err, errlen, "%s: mac %s is already used by loaded VM %s", vm->instance_id, text,
				 r->instance_id);
			return -EEXIST;
		}
		if (r->ipv4 == vm->ipv4) {
			inet_ntop(AF_INET, &vm->ipv4, text, sizeof(text));
			snprintf(err, errlen, "%s: ipv4 %s is already used by loaded VM %s", vm->instance_id, text,
				 r->instance_id);
			return -EEXIST;
		}
	}
	return 0;
}

/* A slot's counters start from zero for each VM given the slot; they are
 * statistics, so a failure here is not worth refusing the VM for. */
static void store_reset_counters(struct store *s, uint32_t slot)
{
	int ncpu = libbpf_num_possible_cpus();
	struct imds_counters *zeros;

	if (ncpu <= 0)
		return;
	zeros = calloc((size_t)ncpu, sizeof(*zeros));
	if (!zeros)
		return;
	bpf_map_update_elem(s->counters_fd, &slot, zeros, BPF_ANY);
	free(zeros);
}

/* Fault injection for the crash tests (tests/system/test_crash.py): the
 * writer kills itself at the instant IMDS_TEST_KILL_AT names, instants too
 * short to hit by chance that leave what store_recover repairs: "written"
 * (an update's new tree written, not switched to), "switched" (switched
 * to, the old one not freed), "activated" (a new VM active, not indexed),
 * "deactivated" (a deleted VM inactive, its tree not freed). */
static void store_test_kill(const char *at)
{
	const char *want = getenv("IMDS_TEST_KILL_AT");

	if (want && strcmp(want, at) == 0)
		raise(SIGKILL);
}

static int store_add(struct store *s, const struct store_vm *vm, const struct store_image *image, char *err,
		     size_t errlen)
{
	struct imds_mac_key key;
	struct imds_vm *r = NULL;
	uint32_t slot, page, gen;
	int ret;

	for (slot = 1; slot < s->max_slots && !r; slot++)
		if (!store_vm_active(&s->vms[slot]))
			r = &s->vms[slot];
	if (!r) {
		snprintf(err, errlen, "%s: all %d VM slots are in use", vm->instance_id, (int)s->max_slots - 1);
		return -ENOSPC;
	}
	slot = (uint32_t)(r - s->vms);
	gen = r->generation + 1; /* survives delete, so a reused slot is told apart */
	ret = store_write_tree(s, vm, image, slot, gen, &page, err, errlen);
	if (ret)
		return ret;
	store_reset_counters(s, slot);
	*r = (struct imds_vm){
		.generation = gen,
		.ipv4 = vm->ipv4,
		.hop_limit = vm->hop_limit,
		.http_tokens = vm->http_tokens,
		.rate_pps = vm->rate_pps,
		.rate_burst = vm->rate_burst,
		.tree_ref = (1ull << 32) | page,
		.updated_unix = (uint64_t)time(NULL),
	};
	memcpy(r->mac, vm->mac, 6);
	snprintf(r->instance_id, sizeof(r->instance_id), "%s", vm->instance_id);
	store_set_binding(s, slot, vm->binding, vm->port);
	__atomic_store_n(&r->state, IMDS_VM_ACTIVE, __ATOMIC_RELEASE);
	store_test_kill("activated");
	store_mac_key(&key, vm->mac);
	if (bpf_map_update_elem(s->mac_fd, &key, &slot, BPF_ANY) < 0) {
		ret = -errno;
		snprintf(err, errlen, "%s: cannot index its mac: %s", vm->instance_id, strerror(-ret));
	} else if ((ret = store_index_ipv4(s, vm->ipv4, slot)) < 0) {
		snprintf(err, errlen, "%s: cannot index its ipv4: %s", vm->instance_id, strerror(-ret));
		bpf_map_delete_elem(s->mac_fd, &key);
	} else if ((ret = store_ipv6_publish(s, slot, vm, err, errlen)) < 0) {
		store_unindex_ipv4(s, vm->ipv4);
		bpf_map_delete_elem(s->mac_fd, &key);
	}
	if (ret) {
		__atomic_store_n(&r->state, IMDS_VM_FREE, __ATOMIC_RELEASE);
		__atomic_store_n(&r->tree_ref, 0, __ATOMIC_RELEASE);
		arena_free(&s->arena, page);
	}
	return ret;
}

/* The new MAC is indexed before the old one is dropped, so a failure leaves
 * the VM as it was; the port binding is forgotten because the VM's NIC
 * changed. */
static int store_change_mac(struct store *s, uint32_t slot, const uint8_t mac[6], char *err, size_t errlen)
{
	struct imds_vm *r = &s->vms[slot];
	struct imds_mac_key key;

	if (memcmp(r->mac, mac, 6) == 0)
		return 0;
	store_mac_key(&key, mac);
	if (bpf_map_update_elem(s->mac_fd, &key, &slot, BPF_ANY) < 0) {
		int e = errno;

		snprintf(err, errlen, "%s: cannot index its new mac: %s", r->instance_id, strerror(e));
		return -e;
	}
	store_mac_key(&key, r->mac);
	bpf_map_delete_elem(s->mac_fd, &key);
	memcpy(r->mac, mac, 6);
	if (r->binding != IMDS_BIND_PINNED)
		__atomic_store_n(&r->ifindex, 0, __ATOMIC_RELEASE);
	return 0;
}

static int store_update(struct store *s, uint32_t slot, const struct store_vm *vm, const struct store_image *image,
			char *err, size_t errlen)
{
	struct imds_vm *r = &s->vms[slot];
	uint64_t old_ref = __atomic_load_n(&r->tree_ref, __ATOMIC_ACQUIRE);
	uint32_t page;
	uint32_t old_ipv4 = r->ipv4;
	int ret;

	ret = store_write_tree(s, vm, image, slot, r->generation, &page, err, errlen);
	if (ret)
		return ret;
	/* The new address is indexed before the record says it (the data
	 * plane ignores an entry the record does not match) and the old one
	 * leaves after: in between neither is guarded, never both wrongly.
	 * Indexing an unchanged address again fills an index made by an
	 * older version. */
	ret = store_index_ipv4(s, vm->ipv4, slot);
	if (ret)
		snprintf(err, errlen, "%s: cannot index its ipv4: %s", vm->instance_id, strerror(-ret));
	else
		ret = store_ipv6_publish(s, slot, vm, err, errlen);
	if (!ret)
		ret = store_change_mac(s, slot, vm->mac, err, errlen);
	if (ret) {
		if (vm->ipv4 != old_ipv4)
			store_unindex_ipv4(s, vm->ipv4);
		arena_free(&s->arena, page);
		return ret;
	}
	store_set_binding(s, slot, vm->binding, vm->port);
	__atomic_store_n(&r->ipv4, vm->ipv4, __ATOMIC_RELAXED);
	if (vm->ipv4 != old_ipv4)
		store_unindex_ipv4(s, old_ipv4);
	__atomic_store_n(&r->hop_limit, vm->hop_limit, __ATOMIC_RELAXED);
	__atomic_store_n(&r->http_tokens, vm->http_tokens, __ATOMIC_RELAXED);
	/* The data plane reads each on its own; a packet that sees the new
	 * rate with the old burst is harmless. */
	__atomic_store_n(&r->rate_pps, vm->rate_pps, __ATOMIC_RELAXED);
	__atomic_store_n(&r->rate_burst, vm->rate_burst, __ATOMIC_RELAXED);
	__atomic_store_n(&r->updated_unix, (uint64_t)time(NULL), __ATOMIC_RELAXED);
	store_test_kill("written");
	/* The switch: one store, new tree generation in the high half. */
	__atomic_store_n(&r->tree_ref, (((old_ref >> 32) + 1) << 32) | page, __ATOMIC_RELEASE);
	store_test_kill("switched");
	arena_free(&s->arena, (uint32_t)old_ref);
	return 0;
}

void store_arena_usage(const struct store *s, struct store_usage *out)
{
	*out = (struct store_usage){
		.arena_bytes = s->arena.size,
		.used_bytes = arena_used_bytes(&s->arena),
		.free_bytes = (size_t)arena_free_pages(&s->arena) * IMDS_ARENA_PAGE,
		.largest_free_bytes = (size_t)arena_largest_free_run(&s->arena) * IMDS_ARENA_PAGE,
		.max_vms = s->max_slots - 1,
	};
	out->vms = out->max_vms - (uint32_t)store_free_slots(s);
}

int store_put(struct store *s, const struct store_vm *vm, const struct store_image *image, char *err,
	      size_t errlen)
{
	int slot = store_find(s, vm->instance_id);
	int ret;

	ret = store_check_unique(s, vm, slot, err, errlen);
	if (!ret)
		ret = store_ipv6_check_unique(s, vm, slot, err, errlen);
	if (ret)
		return ret;
	if (slot < 0)
		return store_add(s, vm, image, err, errlen);
	return store_update(s, (uint32_t)slot, vm, image, err, errlen);
}

int store_delete(struct store *s, const char *instance_id)
{
	int slot = store_find(s, instance_id);
	struct imds_mac_key key;
	struct imds_vm *r;
	uint64_t old_ref;

	if (slot < 0)
		return -ENOENT;
	r = &s->vms[slot];
	store_mac_key(&key, r->mac);
	bpf_map_delete_elem(s->mac_fd, &key);
	store_unindex_ipv4(s, r->ipv4);
	store_ipv6_forget(s, (uint32_t)slot);
	__atomic_store_n(&r->state, IMDS_VM_FREE, __ATOMIC_RELEASE);
	store_test_kill("deactivated");
	old_ref = __atomic_exchange_n(&r->tree_ref, 0, __ATOMIC_ACQ_REL);
	arena_free(&s->arena, (uint32_t)old_ref);
	/* The generation stays: it tells the slot's next VM from this one. */
	*r = (struct imds_vm){ .generation = r->generation };
	memset(&s->ports[slot], 0, sizeof(s->ports[slot]));
	return 0;
}

int store_counters(const struct store *s, uint32_t slot, struct imds_counters *out)
{
	return store_counters_range(s, slot, 1, out);
}

/* One BPF_MAP_LOOKUP_BATCH for the n slots from `first`: a per-CPU array
 * cannot be mmap'ed, and a lookup per slot was a syscall per VM each
 * second in the admin thread (vmwatch.c).  The batch's start key is the
 * one before `first` (the walk resumes after it), or none for slot 0. */
int store_counters_range(const struct store *s, uint32_t first, uint32_t n, struct imds_counters *out)
{
	LIBBPF_OPTS(bpf_map_batch_opts, opts);
	int ncpu = libbpf_num_possible_cpus();
	uint32_t in_batch = first - 1, out_batch, count = n;
	struct imds_counters *per_cpu;
	uint32_t *keys;
	int ret = 0;

	if (ncpu < 0)
		return ncpu;
	if (n == 0 || first >= s->max_slots || n > s->max_slots - first)
		return -EINVAL;
	per_cpu = calloc((size_t)n * (size_t)ncpu, sizeof(*per_cpu));
	keys = calloc(n, sizeof(*keys));
	memset(out, 0, n * sizeof(*out));
	if (!per_cpu || !keys)
		ret = -ENOMEM;
	else if (bpf_map_lookup_batch(s->counters_fd, first ? &in_batch : NULL, &out_batch, keys, per_cpu, &count,
				      &opts) < 0 &&
		 errno != ENOENT)
		ret = -errno; /* ENOENT: the walk reached the map's end */
	else if (count != n)
		ret = -EIO;
	for (uint32_t i = 0; ret == 0 && i < n; i++)
		for (int cpu = 0; cpu < ncpu; cpu++)
			for (int r = 0; r < IMDS_REASON_MAX; r++)
				out[i].packets[r] += per_cpu[(size_t)i * (size_t)ncpu + (size_t)cpu].packets[r];
	free(per_cpu);
	free(keys);
	return ret;
}

static uint64_t store_monotonic_ns(void)
{
	struct timespec ts;

	/* bpf_ktime_get_ns() counts on CLOCK_MONOTONIC too. */
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Consumes the endpoint's READY entry in conn_slots, read in place: the
 * fields are read, then the compare-and-swap to FREE succeeds only if no
 * one claimed the entry since its state was read (each claim changes the
 * sequence), so they are the ones that were published, and nobody else
 * consumes them.  true with *conn filled; false when the entry holds
 * another endpoint, nothing, or changed under us. */
static bool store_take_conn_slot(struct store *s, const struct imds_conn_key *key, struct imds_conn *conn)
{
	struct imds_conn_slot *e = &s->conn_slots[imds_conn_slot_of(key) & (s->conn_slots_n - 1)];
	uint32_t old = __atomic_load_n(&e->seq_state, __ATOMIC_ACQUIRE);

	/* A duplicate of this connection's SYN may be rewriting the entry (the
	 * program runs to its end in softirq, a few hundred ns): wait for it
	 * rather than take the connection for one without a SYN. */
	for (int spins = 0; (old & IMDS_CONN_STATE_MASK) == IMDS_CONN_WRITING && spins < STORE_CONN_SPINS; spins++)
		old = __atomic_load_n(&e->seq_state, __ATOMIC_ACQUIRE);
	if ((old & IMDS_CONN_STATE_MASK) != IMDS_CONN_READY || memcmp(&e->key, key, sizeof(*key)) != 0)
		return false;
	conn->slot = e->slot;
	conn->generation = e->generation;
	conn->verified_ns = e->verified_ns;
	return __atomic_compare_exchange_n(&e->seq_state, &old, (old & ~IMDS_CONN_STATE_MASK) | IMDS_CONN_FREE,
					   false, __ATOMIC_ACQ_REL, __ATOMIC_RELAXED);
}

int store_take_conn(struct store *s, const struct imds_conn_key *peer, uint32_t *slot, uint32_t *generation)
{
	struct imds_conn_key key = *peer;
	struct imds_conn conn;
	const struct imds_vm *r;
	uint64_t now;

	key.pad = 0;
	/* An endpoint's SYN is in one table: recording it in either took any
	 * older entry of the endpoint out of the other (bpf/verify.h). */
	if (!s->conn_slots || !store_take_conn_slot(s, &key, &conn)) {
		if (bpf_map_lookup_and_delete_elem(s->conn_fd, &key, &conn) < 0)
			return errno == ENOENT ? -ENOENT : -errno;
	}
	if (conn.slot == 0 || conn.slot >= s->max_slots)
		return -ENOENT;
	r = &s->vms[conn.slot];
	if (!store_vm_active(r) || __atomic_load_n(&r->generation, __ATOMIC_RELAXED) != conn.generation)
		return -ENOENT;
	now = store_monotonic_ns();
	/* One second of slack for a SYN stamped "after" our clock read. */
	if (conn.verified_ns > now + 1000000000ull || now - conn.verified_ns > IMDS_CONN_MAX_AGE_NS)
		return -ENOENT;
	*slot = conn.slot;
	*generation = conn.generation;
	return 0;
}

uint64_t store_hop_expiry(void)
{
	return store_monotonic_ns() + IMDS_HOP_MARK_TTL_NS;
}

int store_hop_mark(const struct store *s, const struct imds_conn_key *peer, uint32_t slot, uint8_t hop_limit,
		   uint64_t expires_ns)
{
	struct imds_hop_mark mark = {
		.slot = slot,
		.hop_limit = hop_limit,
		.expires_ns = expires_ns,
	};

	if (s->hop_fd < 0)
		return -EBADF;
	if (bpf_map_update_elem(s->hop_fd, peer, &mark, BPF_ANY) < 0)
		return -errno;
	return 0;
}

void store_hop_forget(const struct store *s, const struct imds_conn_key *peer)
{
	if (s->hop_fd >= 0)
		bpf_map_delete_elem(s->hop_fd, peer);
}

uint64_t store_hop_marks_latest(const struct store *s)
{
	struct imds_conn_key key, next;
	struct imds_hop_mark mark;
	uint64_t latest = 0;
	void *prev = NULL;

	if (s->hop_fd < 0)
		return 0;
	while (bpf_map_get_next_key(s->hop_fd, prev, &next) == 0) {
		if (bpf_map_lookup_elem(s->hop_fd, &next, &mark) == 0 && mark.expires_ns > latest)
			latest = mark.expires_ns;
		key = next;
		prev = &key;
	}
	return latest;
}

int store_gate_conns(const struct store *s, uint32_t slot, uint32_t generation, uint64_t ns)
{
	struct imds_conn_gate gate = { .generation = generation, .until_ns = store_monotonic_ns() + ns };

	if (s->gate_fd < 0)
		return -EBADF;
	if (slot == 0 || slot >= s->max_slots)
		return -EINVAL;
	if (bpf_map_update_elem(s->gate_fd, &slot, &gate, BPF_ANY) < 0)
		return -errno;
	return 0;
}

int store_snapshot(const struct store *s, uint32_t slot, uint32_t generation, struct vm_snapshot *snap)
{
	const struct imds_vm *r;
	const struct tree_meta *meta;
	const void *data;
	uint32_t len;

	if (slot == 0 || slot >= s->max_slots)
		return -ENOENT;
	r = &s->vms[slot];
	if (!store_vm_active(r) || __atomic_load_n(&r->generation, __ATOMIC_ACQUIRE) != generation)
		return -ENOENT;
	snap->slot = slot;
	snap->tree_ref = __atomic_load_n(&r->tree_ref, __ATOMIC_ACQUIRE);
	snap->page = (uint32_t)snap->tree_ref;
	data = arena_read_begin(&s->arena, snap->page, &snap->seq, &len);
	if (!data)
		return -EAGAIN;
	if (tree_view_init(&snap->tree, data, len) < 0)
		/* A torn image is retried; a stable one that is not a tree is a bug. */
		return store_snapshot_valid(s, snap) ? -EINVAL : -EAGAIN;
	meta = tree_view_meta(&snap->tree);
	if (meta->slot != slot || meta->vm_generation != generation)
		return -EAGAIN; /* the slot changed hands meanwhile; the retry says -ENOENT */
	return 0;
}

bool store_snapshot_valid(const struct store *s, const struct vm_snapshot *snap)
{
	const struct imds_vm *r = &s->vms[snap->slot];

	if (!arena_read_valid(&s->arena, snap->page, snap->seq))
		return false;
	return __atomic_load_n(&r->tree_ref, __ATOMIC_ACQUIRE) == snap->tree_ref;
}

static int store_random_key(struct imds_token_key *k)
{
	size_t got = 0;

	while (got < sizeof(k->key)) {
		ssize_t n = getrandom(k->key + got, sizeof(k->key) - got, 0);

		if (n < 0 && errno != EINTR)
			return -errno;
		if (n > 0)
			got += (size_t)n;
	}
	k->initialized = 1;
	return 0;
}

int store_token_key(struct store *s, uint8_t key[IMDS_TOKEN_KEY_LEN])
{
	struct imds_token_key k;
	uint32_t zero = 0;
	int ret;

	if (bpf_map_lookup_elem(s->key_fd, &zero, &k) < 0)
		return -errno;
	if (k.initialized)
		goto out;
	/* Two daemons starting together must agree on one key. */
	ret = store_lock(s);
	if (ret)
		return ret;
	if (bpf_map_lookup_elem(s->key_fd, &zero, &k) < 0)
		ret = -errno;
	else if (!k.initialized && !(ret = store_random_key(&k)) &&
		 bpf_map_update_elem(s->key_fd, &zero, &k, BPF_ANY) < 0)
		ret = -errno;
	store_unlock(s);
	if (ret)
		return ret;
out:
	memcpy(key, k.key, IMDS_TOKEN_KEY_LEN);
	return 0;
}

/* ---- ports that left the bridge (imdsd) ---- */

static int store_cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

/* Deletes every entry of a conn_table-keyed map whose value names a slot
 * marked in `slots` (the u32 at `slot_off` in the value).  One batch read
 * and one batch delete, so a full map costs two system calls, not two per
 * entry.  Returns the number of entries deleted or -errno. */
static int store_purge_slots(int fd, uint32_t max_entries, size_t value_size, size_t slot_off,
			     const uint8_t *slots, uint32_t max_slots)
{
	LIBBPF_OPTS(bpf_map_batch_opts, opts);
	struct imds_conn_key *keys, *doomed;
	uint32_t count = max_entries, out_batch, n = 0;
	uint8_t *values;
	int ret;

	keys = calloc(max_entries, sizeof(*keys));
	doomed = calloc(max_entries, sizeof(*doomed));
	values = calloc(max_entries, value_size);
	ret = keys && doomed && values ? 0 : -ENOMEM;
	if (ret == 0 && bpf_map_lookup_batch(fd, NULL, &out_batch, keys, values, &count, &opts) < 0 &&
	    errno != ENOENT)
		ret = -errno; /* ENOENT: the walk reached the end, count entries read */
	for (uint32_t i = 0; ret == 0 && i < count; i++) {
		uint32_t slot;

		memcpy(&slot, values + (size_t)i * value_size + slot_off, sizeof(slot));
		if (slot < max_slots && slots[slot])
			doomed[n++] = keys[i];
	}
	if (ret == 0 && n && bpf_map_delete_batch(fd, doomed, &n, &opts) < 0 && errno != ENOENT)
		ret = -errno;
	free(keys);
	free(doomed);
	free(values);
	return ret < 0 ? ret : (int)n;
}

/* Frees conn_slots' READY entries of the slots marked in `slots`, each by
 * compare-and-swap, as imdsd consumes one. */
static void store_purge_conn_slots(struct store *s, const uint8_t *slots)
{
	for (uint32_t i = 0; s->conn_slots && i < s->conn_slots_n; i++) {
		struct imds_conn_slot *e = &s->conn_slots[i];
		uint32_t old = __atomic_load_n(&e->seq_state, __ATOMIC_ACQUIRE);
		uint32_t slot = e->slot;

		if ((old & IMDS_CONN_STATE_MASK) != IMDS_CONN_READY || slot >= s->max_slots || !slots[slot])
			continue;
		__atomic_compare_exchange_n(&e->seq_state, &old, (old & ~IMDS_CONN_STATE_MASK) | IMDS_CONN_FREE,
					    false, __ATOMIC_ACQ_REL, __ATOMIC_RELAXED);
	}
}

int store_forget_ports(struct store *s, uint32_t *ifindexes, size_t n)
{
	uint8_t *slots;
	int unbound = 0, ret;

	if (n == 0)
		return 0;
	slots = calloc(s->max_slots, 1);
	if (!slots)
		return -ENOMEM;
	qsort(ifindexes, n, sizeof(*ifindexes), store_cmp_u32);
	for (int slot = 1; slot < (int)s->max_slots; slot++) {
		struct imds_vm *r = &s->vms[slot];
		uint32_t bound = __atomic_load_n(&r->ifindex, __ATOMIC_ACQUIRE);

		if (!bound || !store_vm_active(r) ||
		    !bsearch(&bound, ifindexes, n, sizeof(*ifindexes), store_cmp_u32))
			continue;
		/* CAS: the data plane may be binding the slot at this moment. */
		if (__atomic_compare_exchange_n(&r->ifindex, &bound, 0, false, __ATOMIC_ACQ_REL, __ATOMIC_RELAXED)) {
			slots[slot] = 1;
			unbound++;
		}
	}
	if (unbound == 0 || !s->skel) {
		free(slots);
		return unbound;
	}
	/* Connections verified on the port and never accepted, and hop marks
	 * of token replies to it: nothing will ever consume them. */
	store_purge_conn_slots(s, slots);
	ret = store_purge_slots(s->conn_fd, IMDS_CONN_MAX, sizeof(struct imds_conn),
				offsetof(struct imds_conn, slot), slots, s->max_slots);
	if (ret >= 0)
		ret = store_purge_slots(s->hop_fd, IMDS_HOP_MARKS_MAX, sizeof(struct imds_hop_mark),
					offsetof(struct imds_hop_mark, slot), slots, s->max_slots);
	free(slots);
	return ret < 0 ? ret : unbound;
}

/* store.h: the pinned state shared by imdsd, imds-loadmap and the data
 * plane: vm_table, mac_index, ipv4_index, conn_table, vm_counters, the
 * arena and the token key, all under one pin directory. */
#ifndef IMDS_STORE_H
#define IMDS_STORE_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store/arena.h"
#include "imds.h"
#include "lib/tree.h"

struct imds_bpf;

enum store_flags {
	STORE_PROGRAMS = 1, /* also load the data-plane programs (imdsd) */
	/* with STORE_PROGRAMS: a VM without a named port binds on first use
	 * (imdsd --bind-first-use; unsafe, docs/design.md) */
	STORE_FIRST_USE_ALL = 2,
};

struct store {
	char pin_dir[256];
	struct imds_bpf *skel;
	int lock_fd; /* the pin directory, flock'ed by writers */
	struct imds_vm *vms; /* mmap of vm_table, max_slots entries */
	struct arena arena;  /* mmap of arena */
	int vm_fd, mac_fd, conn_fd, counters_fd, arena_fd, key_fd;
	int hop_fd;   /* hop_marks */
	int gate_fd;  /* conn_gate */
	int ports_fd; /* vm_ports */
	struct imds_vm_port *ports; /* mmap of vm_ports, max_slots entries */
	uint32_t max_slots; /* vm_table's entries: VMs + 1 (slot 0 is never a VM) */
	struct imds_conn_slot *conn_slots; /* mmap of conn_slots, conn_slots_n entries */
	uint32_t conn_slots_n;		   /* a power of two */
	/* mmap of hop_gate: the time after which no hop mark is live
	 * (bpf/maps.h); only imdsd moves it (user/serve/hop.c). */
	uint64_t *hop_gate;
};

/* The size of a store, chosen when it is created (docs/control-plane.md,
 * "Sizing"); 0 = the default (include/imds.h: IMDS_MAX_VMS - 1 VMs,
 * IMDS_ARENA_PAGES pages).  An existing store keeps its size. */
struct store_size {
	uint32_t max_vms;
	uint64_t arena_bytes;
};
#define STORE_MAX_VMS_LIMIT 1048575
#define STORE_MIN_ARENA (64 * 1024)

static inline bool store_vm_active(const struct imds_vm *r)
{
	return __atomic_load_n(&r->state, __ATOMIC_ACQUIRE) == IMDS_VM_ACTIVE;
}

/* What the store keeps of a VM beside its tree, in vm_table: what the data
 * plane checks a packet against and the VM's packet budget.  The fields the
 * server needs per request travel in the tree's header instead
 * (struct tree_meta), so they switch with the tree. */
struct store_vm {
	char instance_id[IMDS_INSTANCE_ID_MAX];
	uint8_t mac[6];
	uint32_t ipv4;	     /* network byte order */
	uint8_t ipv6[IMDS_VM_IPV6_MAX][16]; /* its IPv6 addresses (ipv6_index) */
	uint8_t n_ipv6;
	bool ipv6_router;    /* its RAs and Redirects pass (IMDS_VM_IPV6_ROUTER) */
	uint8_t http_tokens; /* enum imds_http_tokens */
	uint8_t hop_limit;   /* 1..64 */
	uint32_t rate_pps;   /* packet budget; 0 = default */
	uint32_t rate_burst; /* bucket size in packets; 0 = default */
	uint8_t binding;     /* enum imds_binding: PINNED when port is set */
	char port[IMDS_PORT_NAME_MAX]; /* bridge port the VM is pinned to, or "" */
};

/* A VM's tree, compiled by the control plane (lib/tree.h).  The store
 * copies it and fills in the header's slot and vm_generation, which only
 * the store knows; the rest of the header (instance_id, last_modified, ...)
 * is the compiler's. */
struct store_image {
	const void *data;
	size_t len;
	/* The record the tree was compiled from (canonical JSON, record.c),
	 * kept in the same block so it switches with the tree; may be empty. */
	const void *record;
	size_t record_len;
};

/* --- the VM's source record (record.c) --- */
/* Bytes of the arena block that holds a tree of tree_len and a record of
 * record_len: what the control plane plans arena room with. */
size_t store_block_len(size_t tree_len, size_t record_len);
/* Writes the image's record after its tree in `block` (store_put's part). */
void store_record_write(void *block, const struct store_image *image);
/* The record a loaded VM was compiled from, in place in the arena (valid
 * while the caller holds the store lock).  0, -ENOENT (no such VM),
 * -ENODATA (loaded by a version that kept no record), -EINVAL. */
int store_record(const struct store *s, uint32_t slot, const char **text, size_t *len);

/* Mounts bpffs on /sys/fs/bpf if needed, creates the pin directory, and
 * opens the pinned maps, creating and pinning any that do not exist yet.
 * 0 or a negative errno with err set. */
int store_open(struct store *s, const char *pin_dir, unsigned flags, char *err, size_t errlen);
/* store_open, creating a missing store with the size `want` (may be NULL);
 * -EEXIST (err says what to do) when an existing store has another size
 * than one `want` names. */
int store_open_sized(struct store *s, const char *pin_dir, unsigned flags, const struct store_size *want,
		     char *err, size_t errlen);
/* 0, or -EINVAL with err when a size is out of range. */
int store_check_size(const struct store_size *want, char *err, size_t errlen);
void store_close(struct store *s);

/* One imdsd per store (claim.c): an exclusive flock on PIN_DIR/imdsd-lock,
 * held while *fd stays open (the kernel drops it when the process ends,
 * however it ends).  0 with *fd; -EBUSY when another process holds it,
 * *holder its PID (0 when /proc/locks does not say); or -errno. */
int store_claim(const struct store *s, int *fd, int *holder);

/* Exclusive lock for writers (imds-loadmap, imdsd's port bookkeeping). */
int store_lock(struct store *s);
void store_unlock(struct store *s);

/* --- control plane; call with the lock held --- */
int store_find(const struct store *s, const char *instance_id);	 /* slot or -ENOENT */
int store_find_mac(const struct store *s, const uint8_t mac[6]); /* slot or -ENOENT */
int store_find_ipv4(const struct store *s, uint32_t ipv4_be);	 /* slot or -ENOENT */
int store_find_ipv6(const struct store *s, const uint8_t addr[16]); /* slot or -ENOENT */
int store_free_slots(const struct store *s); /* VM slots not in use */
/* Publishes the VM with its compiled tree: a new slot, or an atomic switch
 * of an existing VM's tree (the old tree's pages are reclaimed).  -EEXIST
 * when another loaded VM has the same MAC or IPv4; -ENOSPC when no slot or
 * arena room is left; -EINVAL when the image is not a tree; nothing is
 * changed on any error. */
int store_put(struct store *s, const struct store_vm *vm, const struct store_image *image, char *err,
	      size_t errlen);
int store_delete(struct store *s, const char *instance_id); /* 0 or -ENOENT */
/* Indexes every loaded VM's IPv4 in ipv4_index when the index is empty (a
 * pin directory from a version without it); store_open calls it.  0 or
 * -errno. */
int store_ipv4_index_fill(struct store *s);
/* --- IPv6 addresses (ipv6.c; store_put's and store_delete's parts) --- */
/* -EEXIST with err set when another loaded VM than `self` has one of the
 * VM's IPv6 addresses. */
int store_ipv6_check_unique(const struct store *s, const struct store_vm *vm, int self, char *err, size_t errlen);
/* Indexes the VM's addresses for slot (whose generation is set) and drops
 * those it no longer has.  0 or -errno with err set (nothing changed). */
int store_ipv6_publish(struct store *s, uint32_t slot, const struct store_vm *vm, char *err, size_t errlen);
/* Removes the slot's addresses from ipv6_index and its list. */
void store_ipv6_forget(struct store *s, uint32_t slot);
/* The slot's vm_ipv6 entry (empty when left by an earlier VM).  0 or -errno. */
int store_vm_ipv6(const struct store *s, uint32_t slot, struct imds_vm_ipv6 *out);
/* Whether `addr` is in the list. */
bool store_ipv6_listed(const struct imds_vm_ipv6 *list, const uint8_t addr[16]);

/* Sum over CPUs of vm_counters[slot] (slot 0 = totals). */
int store_counters(const struct store *s, uint32_t slot, struct imds_counters *out);
/* The same for the n slots from `first` into out[0..n), in one system
 * call.  0 or -errno (-EINVAL: the range leaves the store's slots). */
int store_counters_range(const struct store *s, uint32_t first, uint32_t n, struct imds_counters *out);

/* --- consistency (fsck.c; docs/control-plane.md, "Crash safety") --- */
struct store_recovery {
	uint32_t pages_reclaimed; /* arena pages no live VM owned */
	int index_repairs;	  /* mac_index / ipv4_index / ipv6_index entries fixed */
};
/* What a writer killed mid-change left: reclaims arena pages no live VM
 * owns and brings both indexes in step with vm_table.  Call with the lock
 * held, before changing anything.  0 or -ENOMEM. */
int store_recover(struct store *s, struct store_recovery *out);
/* Checks, changing nothing: every arena page is free or owned by exactly
 * one live VM's block, the counts agree, every live tree reads, instance-ids
 * are unique, and both indexes name exactly the live VMs.  The number of
 * problems (each a line in out), or -ENOMEM. */
int store_fsck(struct store *s, char *out, size_t outlen);

/* Compacts the arena until a block of `bytes` fits (docs/control-plane.md,
 * "Fragmentation"): other VMs' trees move, each with an atomic switch like
 * an update.  0, or -ENOSPC when too few pages are free or the bounded
 * compaction found no way.  Call with the lock held. */
int store_make_room(struct store *s, size_t bytes);

/* What the arena holds (for imdsd's metrics and `imds-loadmap usage`). */
struct store_usage {
	size_t arena_bytes;	   /* the whole arena, header page included */
	size_t used_bytes;	   /* pages in use by trees */
	size_t free_bytes;	   /* pages free */
	size_t largest_free_bytes; /* the longest free run: the largest block that fits */
	uint32_t vms, max_vms;	   /* loaded VMs, VM slots (slot 0 is never a VM) */
};
void store_arena_usage(const struct store *s, struct store_usage *out);

/* --- port binding (binding.c; docs/design.md, "Port binding") --- */
/* Gives a slot its binding mode and port name (store_put's part; call with
 * the lock held).  A pinned VM is bound at once when its port exists. */
void store_set_binding(struct store *s, uint32_t slot, uint8_t binding, const char *port);
/* Pins a loaded VM to the port named `port` (bound now if the port exists,
 * else when it joins), or with port NULL unpins it (not served until pinned
 * again, unless it opted into first-use).  0, -ENOENT, -EINVAL (name). */
int store_bind(struct store *s, const char *instance_id, const char *port);
/* A port joined the bridge (imdsd): binds the VMs pinned to its name.  The
 * number of VMs bound. */
int store_pin_port(struct store *s, uint32_t ifindex, const char *name);
/* imdsd's start: releases every binding to an ifindex not in `present` (the
 * bridge's ports now; ports that left while no imdsd watched), as
 * store_forget_ports does.  The number released or -errno. */
int store_release_absent(struct store *s, const uint32_t *present, size_t n);
/* What `list` shows: "pinned" (bound to its named port), "waiting" (pinned,
 * port absent), "first-use" (bound or not), "unbound". */
const char *store_binding_state(const struct store *s, uint32_t slot);
/* The port name a pinned VM's slot holds, or NULL. */
const char *store_port_name(const struct store *s, uint32_t slot);

/* --- data path (imdsd workers, lock-free) --- */
/* Looks up and deletes the conn_table entry of a just-accepted connection
 * (peer: its VM-side endpoint, IPv4 mapped as struct imds_conn_key says).
 * 0 with slot/generation, or -ENOENT (SYN never verified). */
int store_take_conn(struct store *s, const struct imds_conn_key *peer, uint32_t *slot, uint32_t *generation);

struct vm_snapshot {
	uint32_t slot;
	uint32_t page;
	uint32_t seq;
	uint64_t tree_ref;
	struct tree_view tree;
};
/* Starts reading the VM's current tree.  0; -ENOENT when the slot no longer
 * holds the VM of that generation; -EAGAIN when it is being replaced (retry);
 * -EINVAL if the published image is not a valid tree (do not retry). */
int store_snapshot(const struct store *s, uint32_t slot, uint32_t generation, struct vm_snapshot *snap);
/* True if nothing the snapshot read was replaced meanwhile. */
bool store_snapshot_valid(const struct store *s, const struct vm_snapshot *snap);

/* Hop limit of a token reply (docs/design.md): marks the connection's
 * VM-side endpoint `peer` in hop_marks, so the data plane lowers the TTL of
 * every data segment to it.  0, -EBADF without the data plane's maps, or
 * -errno. */
int store_hop_mark(const struct store *s, const struct imds_conn_key *peer, uint32_t slot, uint8_t hop_limit,
		   uint64_t expires_ns);
/* Removes the mark of `peer` (once the kernel holds nothing more to send). */
void store_hop_forget(const struct store *s, const struct imds_conn_key *peer);
/* When a hop mark placed now expires (CLOCK_MONOTONIC ns). */
uint64_t store_hop_expiry(void);
/* The latest expiry of the marks in hop_marks, 0 when there are none:
 * what marks an earlier imdsd left still need of hop_gate. */
uint64_t store_hop_marks_latest(const struct store *s);

/* Refuses VM (slot, generation)'s new connections in the data plane for
 * the next `ns` (struct imds_conn_gate).  0, -EBADF without the data
 * plane's maps, or -errno. */
int store_gate_conns(const struct store *s, uint32_t slot, uint32_t generation, uint64_t ns);

/* The host token key; generated and pinned on first use.  0 or -errno.
 * Call it without the store lock held: it takes the lock to generate. */
int store_token_key(struct store *s, uint8_t key[IMDS_TOKEN_KEY_LEN]);

/* Ports that left the bridge (imdsd; call with the lock held): releases the
 * binding of every VM learned on one of `ifindexes` (sorted in place), and
 * deletes the conn_table and hop_marks entries of those VMs.  The number of
 * VMs released, or -errno (bindings are released even then). */
int store_forget_ports(struct store *s, uint32_t *ifindexes, size_t n);

#endif

/* store.h: the pinned state shared by imdsd, imds-loadmap and the data
 * plane: vm_table, mac_index, conn_table, vm_counters, the arena and the
 * token key, all under one pin directory. */
#ifndef IMDS_STORE_H
#define IMDS_STORE_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store/arena.h"
#include "imds.h"
#include "lib/tree.h"
#include "compile/vmconf.h"

struct imds_bpf;
struct identity_key;

enum store_flags {
	STORE_PROGRAMS = 1, /* also load the data-plane programs (imdsd) */
};

struct store {
	char pin_dir[256];
	struct imds_bpf *skel;
	int lock_fd; /* the pin directory, flock'ed by writers */
	struct imds_vm *vms; /* mmap of vm_table, IMDS_MAX_VMS entries */
	struct arena arena;  /* mmap of arena */
	int vm_fd, mac_fd, conn_fd, counters_fd, arena_fd, key_fd;
	/* Signs each tree store_put writes (identity.h); NULL: trees carry no
	 * signatures.  Set by the caller after store_open, not owned. */
	const struct identity_key *identity;
};

/* Mounts bpffs on /sys/fs/bpf if needed, creates the pin directory, and
 * opens the pinned maps, creating and pinning any that do not exist yet.
 * 0 or a negative errno with err set. */
int store_open(struct store *s, const char *pin_dir, unsigned flags, char *err, size_t errlen);
void store_close(struct store *s);

/* Exclusive lock for writers (imds-loadmap, imdsd's port bookkeeping). */
int store_lock(struct store *s);
void store_unlock(struct store *s);

/* --- control plane; call with the lock held --- */
int store_find(const struct store *s, const char *instance_id);	 /* slot or -ENOENT */
int store_find_mac(const struct store *s, const uint8_t mac[6]); /* slot or -ENOENT */
int store_find_ipv4(const struct store *s, uint32_t ipv4_be);	 /* slot or -ENOENT */
int store_free_slots(const struct store *s); /* VM slots not in use */
/* Compiles the VM and publishes it: a new slot, or an atomic switch of an
 * existing VM's tree (the old tree's pages are reclaimed).  -EEXIST when
 * another loaded VM has the same MAC or IPv4; -ENOSPC when no slot or arena
 * room is left; nothing is changed on any error. */
int store_put(struct store *s, const struct vm_desc *vm, char *err, size_t errlen);
int store_delete(struct store *s, const char *instance_id); /* 0 or -ENOENT */
/* Sum over CPUs of vm_counters[slot] (slot 0 = totals). */
int store_counters(const struct store *s, uint32_t slot, struct imds_counters *out);
/* Forgets the port binding of every VM learned on `ifindex`. */
void store_unbind_port(struct store *s, uint32_t ifindex);

/* --- data path (imdsd workers, lock-free) --- */
/* Looks up and deletes the conn_table entry of a just-accepted connection.
 * 0 with slot/generation, or -ENOENT (SYN never verified). */
int store_take_conn(struct store *s, uint32_t saddr_be, uint16_t sport_be, uint32_t *slot, uint32_t *generation);

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

/* The host token key; generated and pinned on first use.  0 or -errno.
 * Call it without the store lock held: it takes the lock to generate. */
int store_token_key(struct store *s, uint8_t key[IMDS_TOKEN_KEY_LEN]);

/* Ports that left the bridge (imdsd; call with the lock held): releases the
 * binding of every VM learned on one of `ifindexes` (sorted in place), and
 * deletes the conn_table and hop_marks entries of those VMs.  The number of
 * VMs released, or -errno (bindings are released even then). */
int store_forget_ports(struct store *s, uint32_t *ifindexes, size_t n);

#endif

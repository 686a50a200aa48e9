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

struct imds_bpf;

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
	int hop_fd; /* hop_marks */
};

/* What the store keeps of a VM beside its tree, in vm_table: what the data
 * plane checks a packet against and the VM's packet budget.  The fields the
 * server needs per request travel in the tree's header instead
 * (struct tree_meta), so they switch with the tree. */
struct store_vm {
	char instance_id[IMDS_INSTANCE_ID_MAX];
	uint8_t mac[6];
	uint32_t ipv4;	     /* network byte order */
	uint8_t http_tokens; /* enum imds_http_tokens */
	uint8_t hop_limit;   /* 1..64 */
	uint32_t rate_pps;   /* packet budget; 0 = default */
	uint32_t rate_burst; /* bucket size in packets; 0 = default */
};

/* A VM's tree, compiled by the control plane (lib/tree.h).  The store
 * copies it and fills in the header's slot and vm_generation, which only
 * the store knows; the rest of the header (instance_id, last_modified, ...)
 * is the compiler's. */
struct store_image {
	const void *data;
	size_t len;
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
/* Publishes the VM with its compiled tree: a new slot, or an atomic switch
 * of an existing VM's tree (the old tree's pages are reclaimed).  -EEXIST
 * when another loaded VM has the same MAC or IPv4; -ENOSPC when no slot or
 * arena room is left; -EINVAL when the image is not a tree; nothing is
 * changed on any error. */
int store_put(struct store *s, const struct store_vm *vm, const struct store_image *image, char *err,
	      size_t errlen);
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

/* Hop limit of a token reply (docs/design.md): marks the connection's
 * VM-side endpoint `peer` in hop_marks, so the data plane lowers the TTL of
 * every data segment to it.  0, -EBADF without the data plane's maps, or
 * -errno. */
int store_hop_mark(const struct store *s, const struct imds_conn_key *peer, uint32_t slot, uint8_t hop_limit);
/* Removes the mark of `peer` (once the kernel holds nothing more to send). */
void store_hop_forget(const struct store *s, const struct imds_conn_key *peer);

/* The host token key; generated and pinned on first use.  0 or -errno.
 * Call it without the store lock held: it takes the lock to generate. */
int store_token_key(struct store *s, uint8_t key[IMDS_TOKEN_KEY_LEN]);

/* Ports that left the bridge (imdsd; call with the lock held): releases the
 * binding of every VM learned on one of `ifindexes` (sorted in place), and
 * deletes the conn_table and hop_marks entries of those VMs.  The number of
 * VMs released, or -errno (bindings are released even then). */
int store_forget_ports(struct store *s, uint32_t *ifindexes, size_t n);

#endif

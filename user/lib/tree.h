/* tree.h: a VM's compiled metadata tree.
 *
 * imds-loadmap compiles each VM into one contiguous, position-independent
 * image (all offsets relative to its start) and writes it into the arena;
 * imdsd finds a path with one binary search and serves the pre-rendered
 * body in place.  Paths carry a flavor prefix and no version:
 *   "ec2/"                          EC2 version root listing (dir)
 *   "ec2/meta-data/"                directory listing (dir, trailing '/')
 *   "ec2/meta-data/instance-id"     leaf
 * Directory listings are rendered at compile time: children sorted
 * byte-wise, subdirectories with a trailing '/', joined by '\n', no
 * trailing newline.  A listing can be overridden (public-keys/ shows
 * "0=name"; the EC2 root shows "dynamic" without a slash).
 */
#ifndef IMDS_TREE_H
#define IMDS_TREE_H
#include <stddef.h>
#include <stdint.h>

#define TREE_MAGIC 0x54534d49u /* "IMST" */
#define TREE_VERSION 2
#define TREE_PATH_MAX 1024

enum tree_kind {
	TREE_LEAF = 1,
	TREE_DIR = 2,
};

enum tree_ctype {
	CT_TEXT = 0,  /* text/plain */
	CT_OCTET = 1, /* application/octet-stream (EC2 user-data) */
	CT_JSON = 2,  /* application/json */
	CT_HTML = 3,  /* text/html */
};

/* Per-VM facts the server needs with every request, kept inside the tree
 * so that one atomic switch of the tree switches them too. */
struct tree_meta {
	uint32_t slot;
	uint32_t vm_generation;
	uint64_t last_modified; /* unix seconds */
	uint8_t http_tokens;	/* enum imds_http_tokens */
	uint8_t hop_limit;
	uint8_t metadata_tags;	/* 1: tags/instance/ is served */
	uint8_t allow_proxied;	/* 1: token PUTs with Forwarded/Via are accepted */
	uint32_t request_rate;	/* HTTP requests/s before 429; 0 = default */
	uint32_t request_burst; /* request bucket size; 0 = default */
	uint32_t max_conns;	/* concurrent connections; 0 = default */
	char instance_id[64];
};
_Static_assert(sizeof(struct tree_meta) == 96, "tree_meta layout");

struct tree_hdr {
	uint32_t magic;
	uint32_t version;
	uint32_t total_len; /* bytes of the whole image */
	uint32_t n_nodes;
	uint32_t nodes_off; /* array of struct tree_node, sorted by path */
	uint32_t pad;
	struct tree_meta meta;
};
_Static_assert(sizeof(struct tree_hdr) == 120, "tree_hdr layout");

struct tree_node {
	uint32_t path_off;
	uint32_t path_len;
	uint32_t body_off;
	uint32_t body_len;
	uint8_t kind;  /* enum tree_kind */
	uint8_t ctype; /* enum tree_ctype */
	uint8_t pad[6];
};
_Static_assert(sizeof(struct tree_node) == 24, "tree_node layout");

/* --- building (imds-loadmap) --- */
struct tree_builder;

struct tree_builder *tree_builder_new(void);
void tree_builder_free(struct tree_builder *b);
/* Adds a leaf; parent directories are created implicitly.  -EEXIST if the
 * path is already a leaf or a directory, -EINVAL for an empty segment or a
 * path longer than TREE_PATH_MAX, -ENOMEM. */
int tree_add_leaf(struct tree_builder *b, const char *path, const void *body, size_t len, enum tree_ctype ct);
/* Declares a directory (path ends in '/'), so an empty one still lists. */
int tree_add_dir(struct tree_builder *b, const char *path);
/* Replaces the rendered listing of directory `path` (ends in '/'). */
int tree_set_listing(struct tree_builder *b, const char *path, const char *listing);
/* Renders listings, sorts and lays out the image; *out is malloc'ed. */
int tree_build(struct tree_builder *b, const struct tree_meta *meta, void **out, size_t *out_len);

/* --- publishing (the store) --- */
/* Writes the owner the store chose (slot, vm_generation) into the header of
 * a built image, which the compiler leaves to the store.  0, or -EINVAL if
 * `image` is not a tree. */
int tree_set_owner(void *image, size_t len, uint32_t slot, uint32_t vm_generation);

/* --- reading (imdsd) --- */
struct tree_view {
	const uint8_t *base;
	size_t len;
};

struct tree_entry {
	enum tree_kind kind;
	enum tree_ctype ctype;
	const char *body;
	size_t body_len;
};

/* Checks the header and that the node table lies inside `len`; 0 or -EINVAL. */
int tree_view_init(struct tree_view *v, const void *image, size_t len);
const struct tree_meta *tree_view_meta(const struct tree_view *v);

/* Where a lookup in a view starts reading: the image (its header, with
 * the meta) and the node table the binary search probes.  The server keeps
 * one per connection between requests, to prefetch; never read through. */
struct tree_hint {
	const uint8_t *base;
	const struct tree_node *nodes;
	uint32_t n; /* 0: nothing to prefetch */
};

/* The view's hint; n = 0 when the header does not describe a node table
 * inside the view (a torn read). */
void tree_view_hint(const struct tree_view *v, struct tree_hint *h);

/* Asks the CPU for the lines a lookup reads first: the header's two and
 * the node entries of the search's first three probes.  Few on purpose: a
 * prefetch waits for a free line fill buffer, so asking for a whole node
 * table stalls the caller instead.  Prefetches only: a stale hint (the
 * tree replaced since) costs nothing. */
static inline void tree_hint_prefetch(const struct tree_hint *h)
{
	if (!h->n)
		return;
	__builtin_prefetch(h->base, 0);
	__builtin_prefetch(h->base + 64, 0);
	__builtin_prefetch(&h->nodes[h->n / 2], 0);
	__builtin_prefetch(&h->nodes[h->n / 4], 0);
	__builtin_prefetch(&h->nodes[h->n / 2 + h->n / 4], 0);
}
/* Exact match of `path` (a directory is looked up with its trailing '/').
 * Every offset is bounds-checked: a torn image yields -EINVAL, never a
 * wild read.  0, -ENOENT or -EINVAL. */
int tree_lookup(const struct tree_view *v, const char *path, size_t path_len, struct tree_entry *out);

#endif

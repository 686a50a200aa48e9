/* tree.c: builds a VM's metadata tree image (imds-loadmap) and looks paths
 * up in it (imdsd).
 *
 * The builder keeps nodes in insertion order with a hash index on the path;
 * tree_build sorts an index by path, renders directory listings and lays out
 * one image: struct tree_hdr, the node table, then each path and each body
 * (every one followed by a NUL that its length does not count).
 *
 * The reader runs on shared memory that a writer may be recycling at the
 * same moment (the arena's seqlock catches that only after the fact), so it
 * reads every header and node field exactly once and checks each offset and
 * length against the view before touching the bytes it names.
 */
#include "lib/tree.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "lib/outbuf.h"

struct tree_item {
	char *path;
	size_t path_len;
	uint8_t kind;
	uint8_t ctype;
	bool has_listing;
	uint8_t *body; /* leaf body, or the listing override of a dir */
	size_t body_len;
};

struct tree_builder {
	struct tree_item *items;
	size_t n, cap;
	uint32_t *slots; /* open addressing: item index + 1, 0 = empty */
	size_t nslots;	 /* power of two */
};

/* --- builder: storage and hash index --- */

static uint64_t tree_hash(const char *p, size_t len)
{
	uint64_t h = 1469598103934665603ull; /* FNV-1a */

	for (size_t i = 0; i < len; i++) {
		h ^= (uint8_t)p[i];
		h *= 1099511628211ull;
	}
	return h;
}

static struct tree_item *tree_find(const struct tree_builder *b, const char *path, size_t len)
{
	size_t mask = b->nslots - 1;
	size_t i = tree_hash(path, len) & mask;

	for (; b->slots[i]; i = (i + 1) & mask) {
		struct tree_item *it = &b->items[b->slots[i] - 1];

		if (it->path_len == len && !memcmp(it->path, path, len))
			return it;
	}
	return NULL;
}

static void tree_index_put(struct tree_builder *b, size_t idx)
{
	const struct tree_item *it = &b->items[idx];
	size_t mask = b->nslots - 1;
	size_t i = tree_hash(it->path, it->path_len) & mask;

	while (b->slots[i])
		i = (i + 1) & mask;
	b->slots[i] = (uint32_t)(idx + 1);
}

/* Keeps the index at most half full and the item array large enough for
 * one more item. */
static int tree_reserve(struct tree_builder *b)
{
	if (b->n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap * 2 : 32;
		struct tree_item *items = realloc(b->items, cap * sizeof(*items));

		if (!items)
			return -ENOMEM;
		b->items = items;
		b->cap = cap;
	}
	if ((b->n + 1) * 2 > b->nslots) {
		size_t nslots = b->nslots * 2;
		uint32_t *slots = calloc(nslots, sizeof(*slots));

		if (!slots)
			return -ENOMEM;
		free(b->slots);
		b->slots = slots;
		b->nslots = nslots;
		for (size_t i = 0; i < b->n; i++)
			tree_index_put(b, i);
	}
	return 0;
}

static int tree_insert(struct tree_builder *b, const char *path, size_t len, enum tree_kind kind, const void *body,
		       size_t body_len, enum tree_ctype ct)
{
	struct tree_item *it;
	int rc = tree_reserve(b);

	if (rc)
		return rc;
	it = &b->items[b->n];
	memset(it, 0, sizeof(*it));
	it->path = strndup(path, len);
	it->body = malloc(body_len ? body_len : 1);
	if (!it->path || !it->body) {
		free(it->path);
		free(it->body);
		return -ENOMEM;
	}
	if (body_len)
		memcpy(it->body, body, body_len);
	it->path_len = len;
	it->body_len = body_len;
	it->kind = (uint8_t)kind;
	it->ctype = (uint8_t)ct;
	tree_index_put(b, b->n++);
	return 0;
}

struct tree_builder *tree_builder_new(void)
{
	struct tree_builder *b = calloc(1, sizeof(*b));

	if (!b)
		return NULL;
	b->nslots = 64;
	b->slots = calloc(b->nslots, sizeof(*b->slots));
	if (!b->slots) {
		free(b);
		return NULL;
	}
	return b;
}

void tree_builder_free(struct tree_builder *b)
{
	if (!b)
		return;
	for (size_t i = 0; i < b->n; i++) {
		free(b->items[i].path);
		free(b->items[i].body);
	}
	free(b->items);
	free(b->slots);
	free(b);
}

/* --- builder: paths --- */

/* A path is segments joined by '/', a directory's with a trailing '/'.
 * Empty, "." and ".." segments are refused: the server normalises request
 * paths, so such a node could never be reached. */
static int tree_check_path(const char *path, size_t len, bool dir)
{
	size_t seg = 0;

	if (len == 0 || len > TREE_PATH_MAX || (path[len - 1] == '/') != dir)
		return -EINVAL;
	for (size_t i = 0; i <= len; i++) {
		if (i < len && path[i] != '/')
			continue;
		if (i == len && dir)
			break;
		if (i == seg || (i - seg == 1 && path[seg] == '.') ||
		    (i - seg == 2 && path[seg] == '.' && path[seg + 1] == '.'))
			return -EINVAL;
		seg = i + 1;
	}
	return 0;
}

/* -EEXIST if `path` (a leaf or a directory path) or its other form exists. */
static int tree_check_free(const struct tree_builder *b, const char *path, size_t len)
{
	char other[TREE_PATH_MAX + 2];
	size_t olen = len;

	if (tree_find(b, path, len))
		return -EEXIST;
	memcpy(other, path, len);
	if (path[len - 1] == '/')
		olen--;
	else
		other[olen++] = '/';
	return olen && tree_find(b, other, olen) ? -EEXIST : 0;
}

/* Checks (insert=false) or creates (insert=true) every directory that
 * contains `path`, i.e. each prefix ending in '/' before position `end`. */
static int tree_walk_parents(struct tree_builder *b, const char *path, size_t end, bool insert)
{
	for (size_t i = 0; i < end; i++) {
		int rc;

		if (path[i] != '/')
			continue;
		if (tree_find(b, path, i + 1))
			continue;
		if (!insert) {
			if (tree_find(b, path, i)) /* a leaf where a directory must be */
				return -EEXIST;
			continue;
		}
		rc = tree_insert(b, path, i + 1, TREE_DIR, NULL, 0, CT_TEXT);
		if (rc)
			return rc;
	}
	return 0;
}

int tree_add_leaf(struct tree_builder *b, const char *path, const void *body, size_t len, enum tree_ctype ct)
{
	size_t plen = strlen(path);
	int rc = tree_check_path(path, plen, false);

	if (!rc)
		rc = tree_check_free(b, path, plen);
	if (!rc)
		rc = tree_walk_parents(b, path, plen, false);
	if (!rc)
		rc = tree_walk_parents(b, path, plen, true);
	if (!rc)
		rc = tree_insert(b, path, plen, TREE_LEAF, body, len, ct);
	return rc;
}

/* Unlike a leaf, declaring a directory that exists already is not an error:
 * directories also come into being implicitly. */
int tree_add_dir(struct tree_builder *b, const char *path)
{
	size_t plen = strlen(path);
	int rc = tree_check_path(path, plen, true);

	if (rc)
		return rc;
	if (tree_find(b, path, plen))
		return 0;
	rc = tree_check_free(b, path, plen);
	if (!rc)
		rc = tree_walk_parents(b, path, plen, false);
	if (!rc)
		rc = tree_walk_parents(b, path, plen, true);
	return rc;
}

int tree_set_listing(struct tree_builder *b, const char *path, const char *listing)
{
	size_t len = strlen(listing);
	struct tree_item *it;
	uint8_t *copy;
	int rc = tree_add_dir(b, path);

	if (rc)
		return rc;
	it = tree_find(b, path, strlen(path));
	copy = malloc(len ? len : 1);
	if (!copy)
		return -ENOMEM;
	memcpy(copy, listing, len);
	free(it->body);
	it->body = copy;
	it->body_len = len;
	it->has_listing = true;
	return 0;
}

/* --- build --- */

/* Byte-wise order, a proper prefix first: the order tree_lookup searches. */
static int tree_cmp_bytes(const void *a, size_t alen, const void *b, size_t blen)
{
	int c = memcmp(a, b, alen < blen ? alen : blen);

	if (c)
		return c;
	return alen < blen ? -1 : alen > blen;
}

static int tree_cmp_items(const void *pa, const void *pb, void *arg)
{
	const struct tree_item *items = arg;
	const struct tree_item *a = &items[*(const uint32_t *)pa];
	const struct tree_item *b = &items[*(const uint32_t *)pb];

	return tree_cmp_bytes(a->path, a->path_len, b->path, b->path_len);
}

/* Renders the listing of the directory at order[i]: its direct children
 * follow it in sorted order (interleaved with deeper descendants), each
 * shown by its last segment (a directory keeps its trailing '/'). */
static int tree_render_listing(const struct tree_builder *b, const uint32_t *order, size_t i, struct outbuf *out)
{
	const struct tree_item *dir = &b->items[order[i]];
	bool first = true;

	for (size_t j = i + 1; j < b->n; j++) {
		const struct tree_item *it = &b->items[order[j]];
		const char *rest = it->path + dir->path_len;
		size_t rlen = it->path_len - dir->path_len;
		const char *slash;

		if (it->path_len <= dir->path_len || memcmp(it->path, dir->path, dir->path_len))
			break;
		slash = memchr(rest, '/', rlen);
		if (slash && slash != rest + rlen - 1)
			continue; /* grandchild */
		if ((!first && outbuf_append(out, "\n", 1)) || outbuf_append(out, rest, rlen))
			return -ENOMEM;
		first = false;
	}
	return 0;
}

struct tree_layout {
	uint32_t *order;
	struct outbuf *listings; /* per sorted position; used for rendered dirs */
	size_t total;
};

static const struct tree_item *tree_body_of(const struct tree_builder *b, const struct tree_layout *l, size_t i,
					    const void **body, size_t *len)
{
	const struct tree_item *it = &b->items[l->order[i]];

	*body = it->body;
	*len = it->body_len;
	if (it->kind == TREE_DIR && !it->has_listing) {
		*body = l->listings[i].data;
		*len = l->listings[i].len;
	}
	return it;
}

static int tree_plan(const struct tree_builder *b, struct tree_layout *l)
{
	size_t total = sizeof(struct tree_hdr) + b->n * sizeof(struct tree_node);

	l->order = malloc((b->n ? b->n : 1) * sizeof(*l->order));
	l->listings = calloc(b->n ? b->n : 1, sizeof(*l->listings));
	if (!l->order || !l->listings)
		return -ENOMEM;
	for (size_t i = 0; i < b->n; i++)
		l->order[i] = (uint32_t)i;
	qsort_r(l->order, b->n, sizeof(*l->order), tree_cmp_items, b->items);
	for (size_t i = 0; i < b->n; i++) {
		const struct tree_item *it = &b->items[l->order[i]];
		const void *body;
		size_t len;

		if (it->kind == TREE_DIR && !it->has_listing && tree_render_listing(b, l->order, i, &l->listings[i]))
			return -ENOMEM;
		tree_body_of(b, l, i, &body, &len);
		total += it->path_len + 1 + len + 1;
	}
	l->total = total;
	return total > UINT32_MAX ? -E2BIG : 0;
}

static void tree_emit(const struct tree_builder *b, const struct tree_layout *l, const struct tree_meta *meta,
		      uint8_t *img)
{
	struct tree_hdr *h = (struct tree_hdr *)img;
	struct tree_node *nodes = (struct tree_node *)(img + sizeof(*h));
	size_t pos = sizeof(*h) + b->n * sizeof(*nodes);

	h->magic = TREE_MAGIC;
	h->version = TREE_VERSION;
	h->total_len = (uint32_t)l->total;
	h->n_nodes = (uint32_t)b->n;
	h->nodes_off = sizeof(*h);
	if (meta)
		h->meta = *meta;
	for (size_t i = 0; i < b->n; i++) {
		const void *body;
		size_t len;
		const struct tree_item *it = tree_body_of(b, l, i, &body, &len);

		nodes[i].kind = it->kind;
		nodes[i].ctype = it->ctype;
		nodes[i].path_off = (uint32_t)pos;
		nodes[i].path_len = (uint32_t)it->path_len;
		memcpy(img + pos, it->path, it->path_len);
		pos += it->path_len + 1;
		nodes[i].body_off = (uint32_t)pos;
		nodes[i].body_len = (uint32_t)len;
		if (len)
			memcpy(img + pos, body, len);
		pos += len + 1;
	}
}

int tree_build(struct tree_builder *b, const struct tree_meta *meta, void **out, size_t *out_len)
{
	struct tree_layout l = { 0 };
	uint8_t *img = NULL;
	int rc = tree_plan(b, &l);

	if (rc)
		goto out;
	img = calloc(1, l.total); /* zeroes padding and the NUL after each string */
	if (!img) {
		rc = -ENOMEM;
		goto out;
	}
	tree_emit(b, &l, meta, img);
	*out = img;
	*out_len = l.total;
out:
	if (l.listings)
		for (size_t i = 0; i < b->n; i++)
			outbuf_free(&l.listings[i]);
	free(l.listings);
	free(l.order);
	return rc;
}

/* --- publishing --- */

int tree_set_owner(void *image, size_t len, uint32_t slot, uint32_t vm_generation)
{
	struct tree_view v;
	struct tree_hdr *h = image;

	if (tree_view_init(&v, image, len) < 0)
		return -EINVAL;
	h->meta.slot = slot;
	h->meta.vm_generation = vm_generation;
	return 0;
}

/* --- reading --- */

/* One read of a field that a writer may be changing: the value checked is
 * the value used. */
static uint32_t tree_load32(const void *p)
{
	return *(const volatile uint32_t *)p;
}

static uint8_t tree_load8(const void *p)
{
	return *(const volatile uint8_t *)p;
}

static bool tree_span_ok(const struct tree_view *v, uint32_t off, uint32_t len)
{
	return (uint64_t)off + len <= v->len;
}

int tree_view_init(struct tree_view *v, const void *image, size_t len)
{
	const struct tree_hdr *h = image;
	uint32_t total, n, off;

	/* The header holds a uint64_t: the image must be 8-byte aligned. */
	if (!image || ((uintptr_t)image & 7) || len < sizeof(*h))
		return -EINVAL;
	if (tree_load32(&h->magic) != TREE_MAGIC || tree_load32(&h->version) != TREE_VERSION)
		return -EINVAL;
	total = tree_load32(&h->total_len);
	n = tree_load32(&h->n_nodes);
	off = tree_load32(&h->nodes_off);
	if (total > len || total < sizeof(*h) || (off & 7) || off < sizeof(*h) ||
	    (uint64_t)off + (uint64_t)n * sizeof(struct tree_node) > total)
		return -EINVAL;
	v->base = image;
	v->len = total;
	return 0;
}

const struct tree_meta *tree_view_meta(const struct tree_view *v)
{
	return &((const struct tree_hdr *)v->base)->meta;
}

/* Node table, re-read and re-checked on every lookup: the header may have
 * changed since tree_view_init. */
static const struct tree_node *tree_nodes(const struct tree_view *v, uint32_t *n)
{
	const struct tree_hdr *h = (const struct tree_hdr *)v->base;
	uint32_t off = tree_load32(&h->nodes_off);

	*n = tree_load32(&h->n_nodes);
	if ((off & 7) || off < sizeof(*h) || (uint64_t)off + (uint64_t)*n * sizeof(struct tree_node) > v->len)
		return NULL;
	return (const struct tree_node *)(v->base + off);
}

static int tree_fill_entry(const struct tree_view *v, const struct tree_node *node, struct tree_entry *out)
{
	uint32_t off = tree_load32(&node->body_off);
	uint32_t len = tree_load32(&node->body_len);
	uint8_t kind = tree_load8(&node->kind);
	uint8_t ctype = tree_load8(&node->ctype);

	if (!tree_span_ok(v, off, len) || (kind != TREE_LEAF && kind != TREE_DIR) || ctype > CT_HTML)
		return -EINVAL;
	out->kind = (enum tree_kind)kind;
	out->ctype = (enum tree_ctype)ctype;
	out->body = (const char *)v->base + off;
	out->body_len = len;
	return 0;
}

void tree_view_hint(const struct tree_view *v, struct tree_hint *h)
{
	uint32_t n;

	h->base = v->base;
	h->nodes = tree_nodes(v, &n);
	h->n = h->nodes ? n : 0;
}

int tree_lookup(const struct tree_view *v, const char *path, size_t path_len, struct tree_entry *out)
{
	uint32_t n, lo = 0, hi;
	const struct tree_node *nodes = tree_nodes(v, &n);

	if (!nodes)
		return -EINVAL;
	hi = n;
	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		uint32_t off = tree_load32(&nodes[mid].path_off);
		uint32_t len = tree_load32(&nodes[mid].path_len);
		int c;

		if (!tree_span_ok(v, off, len))
			return -EINVAL;
		c = tree_cmp_bytes(path, path_len, v->base + off, len);
		if (c == 0)
			return tree_fill_entry(v, &nodes[mid], out);
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return -ENOENT;
}

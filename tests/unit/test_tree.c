/* test_tree.c: tree builder (paths, implicit directories, listings,
 * overrides, sorting, layout) and the bounds-checked reader, including
 * lookups in randomly corrupted and torn images. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/tree.h"

struct built {
	void *img;
	size_t len;
	struct tree_view v;
};

static void build(struct tree_builder *b, const struct tree_meta *meta, struct built *out)
{
	assert_int_equal(tree_build(b, meta, &out->img, &out->len), 0);
	assert_int_equal(tree_view_init(&out->v, out->img, out->len), 0);
}

static void expect_body(const struct tree_view *v, const char *path, enum tree_kind kind, const char *body)
{
	struct tree_entry e;

	assert_int_equal(tree_lookup(v, path, strlen(path), &e), 0);
	assert_int_equal(e.kind, kind);
	assert_int_equal(e.body_len, strlen(body));
	assert_memory_equal(e.body, body, e.body_len);
}

static void add(struct tree_builder *b, const char *path, const char *body)
{
	assert_int_equal(tree_add_leaf(b, path, body, strlen(body), CT_TEXT), 0);
}

static void test_leaves_and_implicit_dirs(void **state)
{
	struct tree_builder *b = tree_builder_new();
	struct built t;
	struct tree_entry e;

	(void)state;
	add(b, "ec2/meta-data/instance-id", "i-1");
	add(b, "ec2/meta-data/placement/region", "eu-west-1");
	assert_int_equal(tree_add_leaf(b, "ec2/user-data", "\x00\x01", 2, CT_OCTET), 0);
	build(b, NULL, &t);

	expect_body(&t.v, "ec2/meta-data/instance-id", TREE_LEAF, "i-1");
	expect_body(&t.v, "ec2/", TREE_DIR, "meta-data/\nuser-data");
	expect_body(&t.v, "ec2/meta-data/", TREE_DIR, "instance-id\nplacement/");
	expect_body(&t.v, "ec2/meta-data/placement/", TREE_DIR, "region");
	assert_int_equal(tree_lookup(&t.v, "ec2/user-data", 13, &e), 0);
	assert_int_equal(e.ctype, CT_OCTET);
	assert_int_equal(e.body_len, 2);
	assert_memory_equal(e.body, "\x00\x01", 2);

	/* Exact matches only: no slash-less directory, no prefix, no extension. */
	assert_int_equal(tree_lookup(&t.v, "ec2", 3, &e), -ENOENT);
	assert_int_equal(tree_lookup(&t.v, "ec2/meta-data", 13, &e), -ENOENT);
	assert_int_equal(tree_lookup(&t.v, "ec2/meta-data/instance-i", 24, &e), -ENOENT);
	assert_int_equal(tree_lookup(&t.v, "ec2/meta-data/instance-idx", 26, &e), -ENOENT);
	assert_int_equal(tree_lookup(&t.v, "", 0, &e), -ENOENT);
	assert_int_equal(tree_lookup(&t.v, "zzz", 3, &e), -ENOENT);
	/* path_len is honoured, the rest of the buffer is not read. */
	assert_int_equal(tree_lookup(&t.v, "ec2/meta-data/instance-id/junk", 25, &e), 0);
	free(t.img);
	tree_builder_free(b);
}

static void test_header_and_meta(void **state)
{
	struct tree_builder *b = tree_builder_new();
	struct tree_meta meta = { .slot = 7, .vm_generation = 3, .last_modified = 1700000000, .http_tokens = 1,
				  .hop_limit = 2 };
	const struct tree_hdr *h;
	struct tree_hint hint;
	struct built t;

	(void)state;
	strcpy(meta.instance_id, "i-0123");
	add(b, "ec2/meta-data/instance-id", "i-0123");
	build(b, &meta, &t);
	h = t.img;
	assert_int_equal(h->magic, TREE_MAGIC);
	assert_int_equal(h->version, TREE_VERSION);
	assert_int_equal(h->total_len, t.len);
	assert_int_equal(h->n_nodes, 3);
	assert_int_equal(h->nodes_off, sizeof(struct tree_hdr));
	assert_memory_equal(tree_view_meta(&t.v), &meta, sizeof(meta));
	/* What the server prefetches: the image and its node table. */
	tree_view_hint(&t.v, &hint);
	assert_ptr_equal(hint.base, t.img);
	assert_ptr_equal(hint.nodes, (const uint8_t *)t.img + h->nodes_off);
	assert_int_equal(hint.n, 3);
	free(t.img);
	tree_builder_free(b);
}

/* Node table sorted by memcmp with a shorter prefix first; listings follow
 * the same byte order, where "foo-bar" (0x2d) sorts before "foo/" (0x2f). */
static void test_sorting(void **state)
{
	static const char *const leaves[] = { "f/zeta", "f/foo/x", "f/foo-bar", "f/Alpha", "f/a", "f/a.b", "f/b" };
	struct tree_builder *b = tree_builder_new();
	const struct tree_node *nodes;
	const struct tree_hdr *h;
	struct built t;

	(void)state;
	for (size_t i = 0; i < sizeof(leaves) / sizeof(leaves[0]); i++)
		add(b, leaves[i], "v");
	build(b, NULL, &t);
	expect_body(&t.v, "f/", TREE_DIR, "Alpha\na\na.b\nb\nfoo-bar\nfoo/\nzeta");
	h = t.img;
	nodes = (const struct tree_node *)((const uint8_t *)t.img + h->nodes_off);
	for (uint32_t i = 1; i < h->n_nodes; i++) {
		const char *p = (const char *)t.img + nodes[i - 1].path_off;
		const char *q = (const char *)t.img + nodes[i].path_off;
		size_t pl = nodes[i - 1].path_len, ql = nodes[i].path_len;
		int c = memcmp(p, q, pl < ql ? pl : ql);

		assert_true(c < 0 || (c == 0 && pl < ql));
	}
	/* Every path and body is followed by a NUL not counted in its length. */
	for (uint32_t i = 0; i < h->n_nodes; i++) {
		assert_int_equal(((const char *)t.img)[nodes[i].path_off + nodes[i].path_len], '\0');
		assert_int_equal(((const char *)t.img)[nodes[i].body_off + nodes[i].body_len], '\0');
	}
	free(t.img);
	tree_builder_free(b);
}

static void test_listing_override_and_empty_dir(void **state)
{
	struct tree_builder *b = tree_builder_new();
	struct built t;

	(void)state;
	add(b, "ec2/meta-data/public-keys/0/openssh-key", "ssh-ed25519 AAAA k");
	add(b, "ec2/meta-data/public-keys/1/openssh-key", "ssh-ed25519 BBBB k");
	add(b, "ec2/dynamic/instance-identity/document", "{}");
	assert_int_equal(tree_set_listing(b, "ec2/meta-data/public-keys/", "0=one\n1=two"), 0);
	assert_int_equal(tree_set_listing(b, "ec2/", "dynamic\nmeta-data"), 0);
	/* A second override replaces the first. */
	assert_int_equal(tree_set_listing(b, "ec2/", "dynamic\nmeta-data\nuser-data"), 0);
	/* Overriding creates the directory if needed, and may be empty. */
	assert_int_equal(tree_set_listing(b, "gce/", ""), 0);
	assert_int_equal(tree_add_dir(b, "ec2/meta-data/empty/"), 0);
	assert_int_equal(tree_add_dir(b, "ec2/meta-data/empty/"), 0); /* idempotent */
	assert_int_equal(tree_add_dir(b, "ec2/meta-data/"), 0);	      /* implicit one, too */
	build(b, NULL, &t);

	expect_body(&t.v, "ec2/", TREE_DIR, "dynamic\nmeta-data\nuser-data");
	expect_body(&t.v, "ec2/meta-data/public-keys/", TREE_DIR, "0=one\n1=two");
	expect_body(&t.v, "ec2/meta-data/public-keys/0/", TREE_DIR, "openssh-key");
	expect_body(&t.v, "ec2/meta-data/public-keys/1/openssh-key", TREE_LEAF, "ssh-ed25519 BBBB k");
	expect_body(&t.v, "ec2/meta-data/", TREE_DIR, "empty/\npublic-keys/");
	expect_body(&t.v, "ec2/meta-data/empty/", TREE_DIR, "");
	expect_body(&t.v, "ec2/dynamic/", TREE_DIR, "instance-identity/");
	expect_body(&t.v, "gce/", TREE_DIR, "");
	free(t.img);
	tree_builder_free(b);
}

static void test_builder_errors(void **state)
{
	struct tree_builder *b = tree_builder_new();
	char long_path[TREE_PATH_MAX + 2];
	struct built t;

	(void)state;
	add(b, "a/b/c", "1");
	assert_int_equal(tree_add_leaf(b, "a/b/c", "2", 1, CT_TEXT), -EEXIST);	 /* leaf twice */
	assert_int_equal(tree_add_leaf(b, "a/b", "2", 1, CT_TEXT), -EEXIST);	 /* leaf over a dir */
	assert_int_equal(tree_add_leaf(b, "a/b/c/d", "2", 1, CT_TEXT), -EEXIST); /* under a leaf */
	assert_int_equal(tree_add_dir(b, "a/b/c/"), -EEXIST);			 /* dir over a leaf */
	assert_int_equal(tree_add_dir(b, "a/b/c/d/"), -EEXIST);
	assert_int_equal(tree_set_listing(b, "a/b/c/", "x"), -EEXIST);

	assert_int_equal(tree_add_leaf(b, "", "x", 1, CT_TEXT), -EINVAL);
	assert_int_equal(tree_add_leaf(b, "/a", "x", 1, CT_TEXT), -EINVAL);
	assert_int_equal(tree_add_leaf(b, "a//x", "x", 1, CT_TEXT), -EINVAL);
	assert_int_equal(tree_add_leaf(b, "a/x/", "x", 1, CT_TEXT), -EINVAL);
	assert_int_equal(tree_add_leaf(b, "a/./x", "x", 1, CT_TEXT), -EINVAL);
	assert_int_equal(tree_add_leaf(b, "a/..", "x", 1, CT_TEXT), -EINVAL);
	assert_int_equal(tree_add_dir(b, "a/x"), -EINVAL);
	assert_int_equal(tree_add_dir(b, "/"), -EINVAL);
	assert_int_equal(tree_add_dir(b, "a//"), -EINVAL);
	assert_int_equal(tree_set_listing(b, "a/x", "y"), -EINVAL);
	/* Dots inside a segment are ordinary characters. */
	add(b, "a/.hidden", "h");
	add(b, "a/x..y", "h");

	memset(long_path, 'p', sizeof(long_path));
	long_path[TREE_PATH_MAX] = '\0'; /* exactly TREE_PATH_MAX bytes: allowed */
	assert_int_equal(tree_add_leaf(b, long_path, "x", 1, CT_TEXT), 0);
	long_path[TREE_PATH_MAX] = 'q';
	long_path[TREE_PATH_MAX + 1] = '\0';
	assert_int_equal(tree_add_leaf(b, long_path, "x", 1, CT_TEXT), -EINVAL);

	/* Failed adds left nothing behind. */
	build(b, NULL, &t);
	expect_body(&t.v, "a/", TREE_DIR, ".hidden\nb/\nx..y");
	expect_body(&t.v, "a/b/", TREE_DIR, "c");
	free(t.img);
	tree_builder_free(b);
}

static void test_many_nodes(void **state)
{
	struct tree_builder *b = tree_builder_new();
	char path[64], body[32];
	struct built t;

	(void)state;
	for (int i = 0; i < 3000; i++) {
		snprintf(path, sizeof(path), "x/d%02d/leaf%04d", i % 37, i);
		snprintf(body, sizeof(body), "value %d", i);
		add(b, path, body);
	}
	build(b, NULL, &t);
	for (int i = 0; i < 3000; i++) {
		snprintf(path, sizeof(path), "x/d%02d/leaf%04d", i % 37, i);
		snprintf(body, sizeof(body), "value %d", i);
		expect_body(&t.v, path, TREE_LEAF, body);
	}
	expect_body(&t.v, "x/d36/", TREE_DIR,
		    "leaf0036\nleaf0073\nleaf0110\nleaf0147\nleaf0184\nleaf0221\nleaf0258\nleaf0295\nleaf0332\nleaf0369\n"
		    "leaf0406\nleaf0443\nleaf0480\nleaf0517\nleaf0554\nleaf0591\nleaf0628\nleaf0665\nleaf0702\nleaf0739\n"
		    "leaf0776\nleaf0813\nleaf0850\nleaf0887\nleaf0924\nleaf0961\nleaf0998\nleaf1035\nleaf1072\nleaf1109\n"
		    "leaf1146\nleaf1183\nleaf1220\nleaf1257\nleaf1294\nleaf1331\nleaf1368\nleaf1405\nleaf1442\nleaf1479\n"
		    "leaf1516\nleaf1553\nleaf1590\nleaf1627\nleaf1664\nleaf1701\nleaf1738\nleaf1775\nleaf1812\nleaf1849\n"
		    "leaf1886\nleaf1923\nleaf1960\nleaf1997\nleaf2034\nleaf2071\nleaf2108\nleaf2145\nleaf2182\nleaf2219\n"
		    "leaf2256\nleaf2293\nleaf2330\nleaf2367\nleaf2404\nleaf2441\nleaf2478\nleaf2515\nleaf2552\nleaf2589\n"
		    "leaf2626\nleaf2663\nleaf2700\nleaf2737\nleaf2774\nleaf2811\nleaf2848\nleaf2885\nleaf2922\nleaf2959\n"
		    "leaf2996");
	free(t.img);
	tree_builder_free(b);
}

static void test_view_rejects_bad_headers(void **state)
{
	struct tree_builder *b = tree_builder_new();
	struct tree_view v;
	struct tree_hint hint;
	struct built t;
	uint8_t *copy;
	struct tree_hdr *h;

	(void)state;
	add(b, "ec2/meta-data/instance-id", "i-1");
	build(b, NULL, &t);
	copy = aligned_alloc(8, (t.len + 15) & ~(size_t)7);
	memcpy(copy, t.img, t.len);
	h = (struct tree_hdr *)copy;

	assert_int_equal(tree_view_init(&v, copy, t.len - 1), -EINVAL); /* torn: shorter than total_len */
	assert_int_equal(tree_view_init(&v, copy, sizeof(*h) - 1), -EINVAL);
	assert_int_equal(tree_view_init(&v, copy + 1, t.len), -EINVAL); /* misaligned */
	assert_int_equal(tree_view_init(&v, NULL, t.len), -EINVAL);
	h->magic ^= 1;
	assert_int_equal(tree_view_init(&v, copy, t.len), -EINVAL);
	h->magic ^= 1;
	h->version = TREE_VERSION + 1;
	assert_int_equal(tree_view_init(&v, copy, t.len), -EINVAL);
	h->version = TREE_VERSION;
	h->n_nodes = 0x10000000;
	assert_int_equal(tree_view_init(&v, copy, t.len), -EINVAL);
	/* A view of an image whose header changed since (a torn read): no
	 * node table to prefetch. */
	v = (struct tree_view){ .base = copy, .len = t.len };
	tree_view_hint(&v, &hint);
	assert_int_equal(hint.n, 0);
	h->n_nodes = 3;
	h->nodes_off = 0xfffffff8;
	assert_int_equal(tree_view_init(&v, copy, t.len), -EINVAL);
	h->nodes_off = sizeof(*h);
	/* A longer buffer than the image is fine: the view stops at total_len. */
	assert_int_equal(tree_view_init(&v, copy, t.len + 8), 0);
	assert_int_equal(v.len, t.len);
	free(copy);
	free(t.img);
	tree_builder_free(b);
}

/* Deterministic generator, so a failure reproduces. */
static uint32_t rng_next(uint64_t *s)
{
	*s = *s * 6364136223846793005ull + 1442695040888963407ull;
	return (uint32_t)(*s >> 33);
}

static const char *const corrupt_paths[] = {
	"ec2/",
	"ec2/meta-data/",
	"ec2/meta-data/instance-id",
	"ec2/meta-data/hostname",
	"ec2/meta-data/placement/",
	"ec2/meta-data/placement/region",
	"ec2/meta-data/public-keys/0/openssh-key",
	"ec2/user-data",
	"ec2/nope",
	"zzz",
	"",
};

static void build_sample(struct built *t)
{
	struct tree_builder *b = tree_builder_new();
	char path[64];

	add(b, "ec2/meta-data/instance-id", "i-0a1b2c3d4e5f60001");
	add(b, "ec2/meta-data/hostname", "vm1.imds.internal");
	add(b, "ec2/meta-data/placement/region", "eu-west-1");
	add(b, "ec2/meta-data/public-keys/0/openssh-key", "ssh-ed25519 AAAAC3Nza user@host");
	add(b, "ec2/user-data", "#!/bin/sh\necho hello\n");
	for (int i = 0; i < 40; i++) {
		snprintf(path, sizeof(path), "ec2/meta-data/extra/k%02d", i);
		add(b, path, "some value");
	}
	build(b, NULL, t);
	tree_builder_free(b);
}

/* Looks every sample path up in `v`: each answer is 0 (with a body inside
 * the image), -ENOENT or -EINVAL.  ASan turns any wild read into a failure. */
static void lookup_all(const struct tree_view *v, const uint8_t *img, size_t len)
{
	for (size_t i = 0; i < sizeof(corrupt_paths) / sizeof(corrupt_paths[0]); i++) {
		struct tree_entry e;
		int rc = tree_lookup(v, corrupt_paths[i], strlen(corrupt_paths[i]), &e);

		assert_true(rc == 0 || rc == -ENOENT || rc == -EINVAL);
		if (rc == 0) {
			assert_true((const uint8_t *)e.body >= img);
			assert_true((const uint8_t *)e.body + e.body_len <= img + len);
			assert_true(e.kind == TREE_LEAF || e.kind == TREE_DIR);
		}
	}
}

/* Random byte corruption before tree_view_init (a bad image) and after it
 * (a writer recycling the block under a reader): never an out-of-bounds read.
 * Each copy sits in an exactly-sized heap block so ASan sees any overrun. */
static void test_random_corruption(void **state)
{
	uint64_t seed = 0x1d5eed;
	int rejected = 0, served = 0;
	struct built t;

	(void)state;
	build_sample(&t);
	for (int round = 0; round < 20000; round++) {
		uint8_t *copy = malloc(t.len);
		int flips = 1 + (int)(rng_next(&seed) % 8);
		bool after = round & 1;
		struct tree_view v;

		memcpy(copy, t.img, t.len);
		if (after)
			assert_int_equal(tree_view_init(&v, copy, t.len), 0);
		for (int i = 0; i < flips; i++) {
			/* Half the flips hit the header and node table, where offsets live. */
			size_t span = (rng_next(&seed) & 1) ? t.len : sizeof(struct tree_hdr) + 24 * 8;
			copy[rng_next(&seed) % span] = (uint8_t)rng_next(&seed);
		}
		if (after || tree_view_init(&v, copy, t.len) == 0) {
			lookup_all(&v, copy, t.len);
			served++;
		} else {
			rejected++;
		}
		free(copy);
	}
	assert_true(served > 0 && rejected > 0);
	free(t.img);
}

/* Torn image: the view believes the image is longer than the bytes that are
 * really there (a reader that validated a header before the block shrank). */
static void test_torn_view(void **state)
{
	struct built t;

	(void)state;
	build_sample(&t);
	for (size_t cut = sizeof(struct tree_hdr); cut < t.len; cut += 7) {
		uint8_t *copy = malloc(cut);
		struct tree_view v = { .base = copy, .len = cut };

		memcpy(copy, t.img, cut);
		lookup_all(&v, copy, cut);
		free(copy);
	}
	free(t.img);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_leaves_and_implicit_dirs),
		cmocka_unit_test(test_header_and_meta),
		cmocka_unit_test(test_sorting),
		cmocka_unit_test(test_listing_override_and_empty_dir),
		cmocka_unit_test(test_builder_errors),
		cmocka_unit_test(test_many_nodes),
		cmocka_unit_test(test_view_rejects_bad_headers),
		cmocka_unit_test(test_random_corruption),
		cmocka_unit_test(test_torn_view),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

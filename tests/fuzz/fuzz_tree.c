/* fuzz_tree.c: the tree reader (lib/tree.c) given arbitrary pages, as
 * imdsd reads the arena: tree_view_init, then lookups of every path a real
 * tree has and of paths taken from the input, then requests routed over
 * the image.  Whatever the bytes, a lookup answers 0, -ENOENT or -EINVAL
 * and an entry it returns lies inside the image.  The image is copied to
 * its own 8-byte aligned buffer of exactly its length, so ASan sees any
 * read past it. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_vms.h"
#include "http/http.h"
#include "http/router.h"
#include "lib/outbuf.h"

static struct fuzz_vm vms[FUZZ_VMS_MAX];
static size_t n_vms;

/* Paths of the first fuzz VM's tree, found by walking its listings. */
#define TREE_PATHS_MAX 512
static char *tree_paths[TREE_PATHS_MAX];
static size_t n_paths;

static const char *const tree_requests[] = {
	"GET /latest/meta-data/instance-id HTTP/1.1\r\nHost: 169.254.169.254\r\n\r\n",
	"GET /2009-04-04/meta-data/ HTTP/1.1\r\n\r\n",
	"PUT /latest/api/token HTTP/1.1\r\nX-aws-ec2-metadata-token-ttl-seconds: 21600\r\n\r\n",
	"GET /latest/meta-data/iam/security-credentials/vm1-web HTTP/1.1\r\n\r\n",
	"GET /openstack/latest/meta_data.json HTTP/1.1\r\n\r\n",
	"GET /computeMetadata/v1/instance/?recursive=true HTTP/1.1\r\nMetadata-Flavor: Google\r\n\r\n",
	"GET /metadata/instance?api-version=2021-02-01 HTTP/1.1\r\nMetadata: true\r\n\r\n",
	"GET /metadata/identity/oauth2/token?api-version=2018-02-01&resource=https://vault.azure.net HTTP/1.1\r\nMetadata: true\r\n\r\n",
};

static void tree_collect(const struct tree_view *v, const char *dir)
{
	struct tree_entry e;
	const char *p, *end;

	if (n_paths >= TREE_PATHS_MAX || tree_lookup(v, dir, strlen(dir), &e))
		return;
	tree_paths[n_paths++] = strdup(dir);
	for (p = e.body, end = e.body + e.body_len; p < end && n_paths < TREE_PATHS_MAX;) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
		const char *eq = memchr(p, '=', n);
		char child[TREE_PATH_MAX + 1];

		if (eq) /* "0=name": the entry is "0/" */
			snprintf(child, sizeof(child), "%s%.*s/", dir, (int)(eq - p), p);
		else
			snprintf(child, sizeof(child), "%s%.*s", dir, (int)n, p);
		if (n && child[strlen(child) - 1] == '/')
			tree_collect(v, child);
		else if (n && tree_lookup(v, child, strlen(child), &e) == 0)
			tree_paths[n_paths++] = strdup(child);
		else if (n && strlen(child) < TREE_PATH_MAX) /* a directory listed without '/' (EC2's root) */
			tree_collect(v, strcat(child, "/"));
		p += n + 1;
	}
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	static const char *const roots[] = { "ec2/", "openstack/", "gce/", "azure/", "azure-mi/" };

	(void)argc;
	(void)argv;
	n_vms = fuzz_vms_load(vms);
	for (size_t i = 0; i < sizeof(roots) / sizeof(roots[0]); i++)
		tree_collect(&vms[0].view, roots[i]);
	if (n_paths < 100) {
		fprintf(stderr, "fuzz_tree: only %zu paths found in %s\n", n_paths, FUZZ_VMS_FILE);
		exit(2);
	}
	return 0;
}

static void tree_lookup_checked(const struct tree_view *v, const char *path, size_t len)
{
	struct tree_entry e;
	int rc = tree_lookup(v, path, len, &e);

	if (rc != 0 && rc != -ENOENT && rc != -EINVAL)
		abort();
	if (rc == 0 && ((const uint8_t *)e.body < v->base || (const uint8_t *)e.body + e.body_len > v->base + v->len ||
			(e.kind != TREE_LEAF && e.kind != TREE_DIR)))
		abort();
}

static int tree_on_request(void *arg, const struct http_request *req)
{
	const struct route_ctx *ctx = arg;
	struct route_result res = { 0 };
	struct outbuf out = { 0 };

	if (route_request(ctx, req, &out, &res))
		abort();
	outbuf_free(&out);
	return 0;
}

static void tree_route(const struct tree_view *v)
{
	struct route_ctx ctx = { .tree = v, .token_key = fuzz_key, .now = FUZZ_NOW };
	struct http_conn *c = malloc(sizeof(*c));

	if (!c)
		abort();
	for (size_t i = 0; i < sizeof(tree_requests) / sizeof(tree_requests[0]); i++) {
		http_conn_init(c);
		http_feed(c, tree_requests[i], strlen(tree_requests[i]), tree_on_request, &ctx);
	}
	free(c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
	uint8_t *img = malloc(len ? len : 1);
	struct tree_view v;

	if (!img)
		abort();
	memcpy(img, data, len);
	if (tree_view_init(&v, img, len) == 0) {
		if (v.len > len)
			abort();
		for (size_t i = 0; i < n_paths; i++)
			tree_lookup_checked(&v, tree_paths[i], strlen(tree_paths[i]));
		/* the image's own tail as a path: bytes a lookup compares against */
		tree_lookup_checked(&v, (const char *)img + len - (len < 64 ? len : 64), len < 64 ? len : 64);
		tree_route(&v);
	}
	free(img);
	return 0;
}

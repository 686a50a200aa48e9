/* crawl.c: what a client asks next.  Paths are kept per client in a small
 * hash table with their rendered request bytes; the queue holds pointers
 * to them.  A listing's entries are fetched right after it, subdirectories
 * first (depth-first, as cloud-init walks). */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "storm/crawl.h"
#include "storm/save.h"
#include "storm/stats.h"

static uint32_t storm_path_hash(const char *path, size_t len)
{
	uint32_t h = 2166136261u; /* FNV-1a */

	for (size_t i = 0; i < len; i++)
		h = (h ^ (unsigned char)path[i]) * 16777619u;
	return h;
}

/* The request bytes up to where the token header goes; a PUT is whole. */
static int storm_render_request(struct storm_node *nd, enum storm_mode mode)
{
	const char *conn = mode == STORM_CONN ? "close" : "keep-alive";
	int n;

	if (nd->method == STORM_PUT)
		n = asprintf(&nd->req,
			     "PUT %s HTTP/1.1\r\nHost: 169.254.169.254\r\nUser-Agent: Cloud-Init/22.4.2\r\n"
			     "Accept: */*\r\nConnection: %s\r\nX-aws-ec2-metadata-token-ttl-seconds: 21600\r\n"
			     "Content-Length: 0\r\n\r\n",
			     nd->path, conn);
	else
		n = asprintf(&nd->req,
			     "GET %s HTTP/1.1\r\nHost: 169.254.169.254\r\nUser-Agent: python-requests/2.28.1\r\n"
			     "Accept-Encoding: gzip, deflate\r\nAccept: */*\r\nConnection: %s\r\n",
			     nd->path, conn);
	if (n < 0) {
		nd->req = NULL;
		return -ENOMEM;
	}
	nd->req_len = (size_t)n;
	return 0;
}

/* The crawl's node for path (len bytes), made on first use. */
static struct storm_node *storm_node_get(struct storm_crawl *cr, enum storm_method m, const char *path, size_t len)
{
	struct storm_node **head = &cr->nodes[storm_path_hash(path, len) % STORM_NODE_BUCKETS];
	struct storm_node *nd;

	for (nd = *head; nd; nd = nd->next)
		if (nd->method == m && !strncmp(nd->path, path, len) && !nd->path[len])
			return nd;
	nd = calloc(1, sizeof(*nd));
	if (!nd)
		return NULL;
	nd->method = m;
	nd->path = strndup(path, len);
	if (!nd->path || storm_render_request(nd, cr->o->mode)) {
		free(nd->path);
		free(nd);
		return NULL;
	}
	nd->next = *head;
	*head = nd;
	return nd;
}

void storm_crawl_free(struct storm_crawl *cr)
{
	for (unsigned i = 0; i < STORM_NODE_BUCKETS; i++) {
		while (cr->nodes[i]) {
			struct storm_node *nd = cr->nodes[i];

			cr->nodes[i] = nd->next;
			free(nd->path);
			free(nd->req);
			free(nd->kids);
			outbuf_free(&nd->memo_body);
			free(nd);
		}
	}
	free(cr->q);
	cr->q = NULL;
	cr->qn = cr->qcap = cr->qpos = 0;
}

/* Inserts n requests at position at of the queue (a leaf's remembered
 * answer inserts none, from a NULL list). */
static int storm_queue_insert(struct storm_crawl *cr, size_t at, struct storm_node *const *nds, size_t n)
{
	if (!n)
		return 0;
	if (cr->qn + n > cr->qcap) {
		size_t cap = cr->qcap ? cr->qcap : 64;
		struct storm_node **q;

		while (cap < cr->qn + n)
			cap *= 2;
		q = realloc(cr->q, cap * sizeof(*q));
		if (!q)
			return -ENOMEM;
		cr->q = q;
		cr->qcap = cap;
	}
	memmove(cr->q + at + n, cr->q + at, (cr->qn - at) * sizeof(*cr->q));
	memcpy(cr->q + at, nds, n * sizeof(*cr->q));
	cr->qn += n;
	return 0;
}

static int storm_queue_path(struct storm_crawl *cr, enum storm_method m, const char *path)
{
	struct storm_node *nd = storm_node_get(cr, m, path, strlen(path));

	return nd ? storm_queue_insert(cr, cr->qn, &nd, 1) : -ENOMEM;
}

static int storm_enqueue_listing(struct storm_crawl *cr, struct storm_node *nd, const struct outbuf *b);

static int storm_node_is_listing(const struct storm_crawl *cr, const struct storm_node *nd)
{
	const char *rel = storm_rel_path(cr->o->api_version, nd->path);

	return strcmp(rel, "user-data") && storm_is_listing(rel);
}

/* --status-only: the walk the saved listings make, queued in full, in the
 * order the answers would have queued it (each listing's entries right
 * after it).  A client reads each listing once; a steady client's next
 * crawls reuse the entries. */
static int storm_crawl_saved_walk(struct storm_crawl *cr)
{
	struct outbuf b = { 0 };
	int rc = 0;

	for (size_t i = 0; i < cr->qn && !rc; i++) {
		struct storm_node *nd = cr->q[i];

		if (!storm_node_is_listing(cr, nd))
			continue;
		cr->qpos = i;
		if (nd->kids_saved) {
			rc = storm_queue_insert(cr, i + 1, nd->kids, nd->nkids);
			continue;
		}
		rc = storm_saved_listing(cr->o->status_only_dir, cr->ipv4, nd->path, &b);
		if (!rc)
			rc = storm_enqueue_listing(cr, nd, &b);
		nd->kids_saved = !rc;
	}
	outbuf_free(&b);
	cr->qpos = 0;
	return rc;
}

/* A steady client repeats the crawl with the token it already holds. */
int storm_crawl_init(struct storm_crawl *cr, int with_token)
{
	static const char *const roots[] = { "meta-data/instance-id", "meta-data/", "user-data",
					     "dynamic/instance-identity" };
	char path[256];
	int rc = 0;

	cr->qn = cr->qpos = 0;
	if (with_token)
		rc = storm_queue_path(cr, STORM_PUT, "/latest/api/token");
	for (unsigned i = 0; !rc && i < sizeof(roots) / sizeof(roots[0]); i++) {
		snprintf(path, sizeof(path), "/%s/%s", cr->o->api_version, roots[i]);
		rc = storm_queue_path(cr, STORM_GET, path);
	}
	return rc || !cr->o->status_only_dir ? rc : storm_crawl_saved_walk(cr);
}

/* --- the walk: a listing's entries are fetched next, subdirectories first --- */

static int storm_add_kid(struct storm_node *dir, struct storm_node *kid)
{
	if (dir->nkids == dir->kids_cap) {
		size_t cap = dir->kids_cap ? dir->kids_cap * 2 : 16;
		struct storm_node **k = realloc(dir->kids, cap * sizeof(*k));

		if (!k)
			return -ENOMEM;
		dir->kids = k;
		dir->kids_cap = cap;
	}
	dir->kids[dir->nkids++] = kid;
	return 0;
}

static int storm_enqueue_line(struct storm_crawl *cr, struct storm_node *dir, const char *dirpath, const char *line,
			      size_t len, int pass)
{
	int is_dir = len && line[len - 1] == '/';
	const char *eq = memchr(line, '=', len);
	struct storm_node *kid;
	char path[1024];
	int n;

	/* cloud-init never fetches IAM credentials */
	if ((len == 20 || len == 21) && !strncmp(line, "security-credentials", 20))
		return 0;
	if (eq) { /* public-keys/ lists "0=name": fetch 0/openssh-key */
		if (pass != 1)
			return 0;
		n = snprintf(path, sizeof(path), "%s%.*s/openssh-key", dirpath, (int)(eq - line), line);
	} else {
		if (is_dir != (pass == 0))
			return 0;
		n = snprintf(path, sizeof(path), "%s%.*s", dirpath, (int)len, line);
	}
	if (n < 0 || (size_t)n >= sizeof(path))
		return -ENAMETOOLONG; /* longer than any path the server accepts */
	kid = storm_node_get(cr, STORM_GET, path, (size_t)n);
	return kid ? storm_add_kid(dir, kid) : -ENOMEM;
}

/* The requests a listing's body asks for, in the order they are fetched:
 * next, subdirectories first; then queued after the listing's own place. */
static int storm_enqueue_listing(struct storm_crawl *cr, struct storm_node *nd, const struct outbuf *b)
{
	const char *path = nd->path;
	char dir[1024];
	int rc = 0;

	nd->nkids = 0;
	/* "dynamic/instance-identity" is listed without a slash */
	snprintf(dir, sizeof(dir), "%s%s", path, path[strlen(path) - 1] == '/' ? "" : "/");
	for (int pass = 0; pass < 2 && !rc; pass++) {
		size_t off = 0;

		while (off < b->len && !rc) {
			const char *line = b->data + off;
			const char *nl = memchr(line, '\n', b->len - off);
			size_t len = nl ? (size_t)(nl - line) : b->len - off;

			if (len)
				rc = storm_enqueue_line(cr, nd, dir, line, len, pass);
			off += len + 1;
		}
	}
	return rc ? rc : storm_queue_insert(cr, cr->qpos + 1, nd->kids, nd->nkids);
}

/* --- the verdict --- */

static int storm_verdict_full(struct storm_crawl *cr, struct storm_node *nd, const struct storm_vm *vm, int status,
			      const struct outbuf *body)
{
	const char *rel = storm_rel_path(cr->o->api_version, nd->path);
	int kind = storm_check_answer(vm, rel, status, body);

	if (status == 200 && storm_node_is_listing(cr, nd) && storm_enqueue_listing(cr, nd, body))
		return SE_BAD_HTTP;
	return kind;
}

/* The remembered verdict when the status and body are byte for byte those
 * of the last answer to this path (the check is a function of path, status
 * and body alone), else the full check. */
int storm_crawl_verdict(struct storm_crawl *cr, struct storm_node *nd, const struct storm_vm *vm, int status,
			const struct outbuf *body)
{
	int kind;

	if (cr->o->status_only_dir)
		return status == 200 ? 0 : SE_STATUS;
	if (!nd->memo_worth)
		nd->memo_worth = storm_check_is_costly(storm_rel_path(cr->o->api_version, nd->path)) ? 1 : -1;
	if (nd->memo_worth < 0)
		return storm_verdict_full(cr, nd, vm, status, body);
	if (nd->memo_set && nd->memo_status == status && storm_body_is(body, nd->memo_body.data, nd->memo_body.len))
		return storm_queue_insert(cr, cr->qpos + 1, nd->kids, nd->nkids) ? SE_BAD_HTTP : nd->memo_kind;
	nd->memo_set = 0;
	nd->nkids = 0;
	kind = storm_verdict_full(cr, nd, vm, status, body);
	if (kind == SE_BAD_HTTP) /* the listing could not be queued: nothing to remember */
		return kind;
	outbuf_reset(&nd->memo_body);
	if (!outbuf_append(&nd->memo_body, body->data ? body->data : "", body->len)) {
		nd->memo_set = 1;
		nd->memo_status = status;
		nd->memo_kind = kind;
	}
	return kind;
}

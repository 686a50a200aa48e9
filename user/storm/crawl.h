/* crawl.h: one client's crawl, in cloud-init's order: a queue of requests
 * that grows as listings arrive, and the paths met so far, each kept for
 * the run with its request bytes and the verdict on its last answer. */
#ifndef IMDS_STORM_CRAWL_H
#define IMDS_STORM_CRAWL_H
#include <stddef.h>

#include "lib/outbuf.h"
#include "storm/check.h"
#include "storm/storm.h"

enum storm_method { STORM_GET, STORM_PUT };

/* One path of a client's crawl, made the first time the crawl reaches it
 * and kept for the run: the request bytes are rendered once, and the last
 * answer's verdict is remembered, so a steady client's next crawl, which
 * gets the same bytes back, costs a memcmp per response instead of a JSON
 * lookup, a listing scan or a document parse.  Checks stay as strict: a
 * body that differs from the remembered one is checked in full. */
struct storm_node {
	char *path; /* absolute, "/2021-03-23/meta-data/" */
	enum storm_method method;
	char *req; /* request line and headers up to the token header */
	size_t req_len;
	int memo_worth; /* 1: a check dearer than a memcmp (meta-data, listings, the document); -1: not; 0: not yet known */
	int memo_set, memo_status, memo_kind;
	struct outbuf memo_body;
	struct storm_node **kids; /* a listing: the requests its body queued */
	size_t nkids, kids_cap;
	int kids_saved; /* --status-only: kids read from the saved listing */
	struct storm_node *next; /* hash chain */
};

#define STORM_NODE_BUCKETS 128

struct storm_crawl {
	const struct storm_opts *o; /* mode, API version, --status-only */
	const char *ipv4; /* the VM's, names its saved tree */
	struct storm_node **q;
	size_t qn, qcap, qpos;
	struct storm_node *nodes[STORM_NODE_BUCKETS];
};

/* Starts the crawl over: the token PUT (when with_token), the version
 * probe, the meta-data walk, user-data, the identity documents.  With
 * --status-only the whole walk is queued here, from the listings saved in
 * that directory (read once per client and run).  0 or a negative errno. */
int storm_crawl_init(struct storm_crawl *cr, int with_token);

static inline struct storm_node *storm_crawl_current(const struct storm_crawl *cr)
{
	return cr->q[cr->qpos];
}

/* The verdict on the answer (status, body) to nd, the current request: 0
 * or an error kind (enum storm_err).  A listing's entries are queued next,
 * even when it is wrong, as a client would walk it; SE_BAD_HTTP when they
 * could not be.  With --status-only, only a status other than 200 is
 * wrong. */
int storm_crawl_verdict(struct storm_crawl *cr, struct storm_node *nd, const struct storm_vm *vm, int status,
			const struct outbuf *body);

void storm_crawl_free(struct storm_crawl *cr);

#endif

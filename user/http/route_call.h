/* route_call.h: one request while it is routed, shared by the front
 * (router.c), EC2's routes (route_ec2.c) and the flavors' (route_flavor.h):
 * the normalised path, the reply being built, and the one function that
 * finishes every response. */
#ifndef IMDS_ROUTE_CALL_H
#define IMDS_ROUTE_CALL_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "http/http.h"
#include "http/token.h"
#include "lib/outbuf.h"
#include "lib/tree.h"

struct route_ctx {
	const struct tree_view *tree; /* the VM's snapshot */
	const uint8_t *token_key;     /* IMDS_TOKEN_KEY_LEN bytes */
	time_t now;		      /* unix seconds */
	uint32_t tree_generation;     /* bumped by every update of the VM (store's tree_ref) */
	struct token_memo *token_memo; /* the connection's last verified token, or NULL */
};

/* Which API answered, for the metrics (docs/metrics.md). */
enum route_flavor {
	ROUTE_FLAVOR_NONE = 0, /* not routed: the request was not HTTP, or no tree */
	ROUTE_FLAVOR_EC2 = 1,
	ROUTE_FLAVOR_OPENSTACK = 2,
	ROUTE_FLAVOR_GCE = 3,
	ROUTE_FLAVOR_AZURE = 4,
	ROUTE_FLAVOR_COUNT = 5,
};

struct route_result {
	int status;
	uint8_t flavor;	   /* enum route_flavor */
	bool tokenless;	   /* EC2 data served without a token: IMDSv1 */
	bool token_issued; /* a new IMDSv2 session token */
	bool close;	  /* close the connection after this response */
	/* The response carries a secret that leaves under the VM's hop limit
	 * and closes the connection: a new IMDSv2 token, or a flavor's answer
	 * to a tokens-required VM (docs/flavors.md, "Tokens and the hop limit"). */
	bool token_reply;
};

#define ROUTE_PATH_CAP (HTTP_URL_MAX + 2) /* room for an added '/' and NUL */
#define ROUTE_EXTRA_CAP 128

struct route_call {
	const struct route_ctx *ctx;
	const struct http_request *req;
	const struct tree_meta *meta; /* NULL only without a tree (500) */
	struct route_result *res;
	struct http_response resp;
	int path_len;	/* of path, or -EINVAL: the target is not a path */
	size_t seg_len; /* of the first segment ("latest" in "/latest/...") */
	char extra[ROUTE_EXTRA_CAP]; /* extra response header lines */
	/* Not zeroed per request (2 KiB): written before it is read. */
	char path[ROUTE_PATH_CAP];	/* normalised (path.h) */
	char token[TOKEN_TEXT_LEN + 1]; /* a minted token: its reply's body */
};

void route_reply(struct route_call *c, int status, enum tree_ctype ct, const char *body, size_t len);
/* status with an empty text/plain body */
void route_empty(struct route_call *c, int status);

/* Appends one "Name: value\r\n" line to the extra headers (dropped when it
 * does not fit: the few the routes add are far shorter than the room). */
void route_add_header_n(struct route_call *c, const char *name, const char *value, size_t value_len);
void route_add_header(struct route_call *c, const char *name, const char *value);

/* The request came through a proxy in the guest: X-Forwarded-For always
 * (as on EC2); Forwarded (RFC 7239) and Via unless the VM's
 * proxied-token-requests option is "allow". */
bool route_proxied(const struct route_call *c);

/* Decides whether the connection stays open and appends the whole
 * response to `out`.  0 or -ENOMEM. */
int route_finish(struct route_call *c, struct outbuf *out);

#endif

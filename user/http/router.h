/* router.h: from a parsed request and the VM's tree to a complete response.
 * Pure (the clock and the key come in through the context), so every rule of
 * the EC2 API is unit-tested without sockets. */
#ifndef IMDS_ROUTER_H
#define IMDS_ROUTER_H
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "http/http.h"
#include "lib/outbuf.h"
#include "lib/tree.h"

struct route_ctx {
	const struct tree_view *tree; /* the VM's snapshot */
	const uint8_t *token_key;     /* IMDS_TOKEN_KEY_LEN bytes */
	time_t now;		      /* unix seconds */
};

struct route_result {
	int status;
	bool close;	  /* close the connection after this response */
	bool token_reply; /* the response carries a new IMDSv2 token */
};

/* Appends the whole response to `out`.  0 or -ENOMEM. */
int route_request(const struct route_ctx *ctx, const struct http_request *req, struct outbuf *out,
		  struct route_result *res);

/* Normalises a request target: drops the query, collapses "//", resolves
 * "." and "..", keeps a trailing '/'.  Writes at most cap-1 bytes and a NUL;
 * returns the length or -EINVAL. */
int route_normalize_path(const char *url, size_t url_len, char *out, size_t cap);

#endif

/* route_flavor.h: what the OpenStack, GCE and Azure routes share
 * (route_openstack.c, route_gce.c, route_azure.c): a flavor's row in the
 * front's table, its per-request state, and lookups below its prefix of
 * the tree (lib/flavor_layout.h).  Rules and sources: docs/flavors.md. */
#ifndef IMDS_ROUTE_FLAVOR_H
#define IMDS_ROUTE_FLAVOR_H
#include <stdbool.h>
#include <stddef.h>

#include "http/route_call.h"
#include "lib/outbuf.h"
#include "lib/tree.h"

#define FR_KEY_CAP (ROUTE_PATH_CAP + 32)
#define FR_PARAM_CAP 64

/* How a flavor's server answers what is not data. */
struct fr_style {
	const char *server;	 /* Server header; NULL keeps EC2ws */
	const char *header_name; /* a header on every answer, or NULL */
	const char *header_value;
	enum tree_ctype not_found_ct;
	const char *not_found;	   /* 404 body */
	enum tree_ctype not_allowed_ct;
	const char *not_allowed; /* 405 body (methods other than GET, HEAD) */
	/* A tokens-required VM (lib/flavor_layout.h, FLAVOR_NO_TOKEN_PREFIX):
	 * the flavor is served only when the tree holds no_token_key, and
	 * otherwise, or through a proxy, refused with 403 and this body. */
	const char *no_token_key;
	enum tree_ctype forbidden_ct;
	const char *forbidden;
};

struct fr_call;

/* One flavor: the first path segment it owns and its rules.  claims_root,
 * when set, may also take "/" (GCE's root ping). */
struct fr_flavor {
	const char *segment;
	size_t segment_len;
	int (*route)(struct fr_call *f); /* 0 with the reply set, or -ENOMEM */
	const struct fr_style *style;
	bool (*claims_root)(const struct route_call *c);
	uint8_t id; /* enum route_flavor */
};

/* One flavor request. */
struct fr_call {
	struct route_call *c;
	const struct fr_flavor *flavor;
	const char *query; /* after '?', up to '#' or the end */
	size_t query_len;
	struct outbuf body; /* bodies made per request */
};

/* Answers c as `flavor` (c->path normalised): the reply is appended to
 * `out`.  0 or -ENOMEM (nothing appended). */
int fr_route(struct route_call *c, const struct fr_flavor *flavor, struct outbuf *out);

void fr_reply(struct fr_call *f, int status, enum tree_ctype ct, const char *body, size_t len);
void fr_reply_str(struct fr_call *f, int status, enum tree_ctype ct, const char *body);
/* The flavor's 404. */
void fr_not_found(struct fr_call *f);
/* The body made in f->body, with the VM's Last-Modified when `dated`. */
void fr_reply_body(struct fr_call *f, enum tree_ctype ct, bool dated);
/* A tree entry found for the request, with the VM's Last-Modified. */
void fr_serve(struct fr_call *f, const struct tree_entry *e, enum tree_ctype ct);

/* Looks up prefix + rel[0..n) + suffix.  0 or -ENOENT. */
int fr_lookup(struct fr_call *f, const char *prefix, const char *rel, size_t n, const char *suffix,
	      struct tree_entry *e);
/* Finds `rel` ("a/b" or "a/b/") below `prefix`: with a trailing '/' the
 * directory wins, else the leaf; the other form is the fallback, as for
 * EC2.  Sets *n to the length of rel without its slash.  0 or -ENOENT. */
int fr_find(struct fr_call *f, const char *prefix, const char *rel, size_t *n, struct tree_entry *e);
/* Appends s[0..len) as a quoted JSON string, escaped exactly as jansson's
 * json_dumps writes strings (so answers made here match the precompiled
 * documents).  0 or -ENOMEM. */
int fr_json_string(struct outbuf *out, const char *s, size_t len);
/* The value of query parameter `name` (percent-decoded, '+' as space) in
 * out.  1 when present (the last occurrence wins), 0 when absent. */
int fr_param(const struct fr_call *f, const char *name, char *out, size_t cap);

#endif

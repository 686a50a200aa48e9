/* route_ec2.c: the EC2 API rules (route_ec2.h), for every request the
 * front (router.c) does not give to a flavor.  Source of every rule:
 * shared/spec ec2-imds-behaviour.md (§ numbers below) and real-clients.md.
 *
 * A request's normalised path is classified (root, token path, dated token
 * path, data, unknown version) and dispatched through a table; data-serving
 * routes share one guard (method, then IMDSv2 token check).
 *
 * Choices where real EC2 is unverified (written down, see spec §7):
 *  - methods other than GET/HEAD on data paths: 405 with "Allow: GET, HEAD";
 *  - 400 (bad TTL), 403 (X-Forwarded-For, dated token path) and 405 carry an
 *    empty text/plain body, like EC2's captured 405 and OPTIONS replies;
 *  - the connection stays open (keep-alive) after a 200 unless the client
 *    asked to close or the reply carries a token; EC2 itself always closes,
 *    but keep-alive is what makes a metadata storm cheap and every client
 *    copes with both.  Error replies close (route_finish);
 *  - percent-escapes in the path are decoded before dot segments are
 *    resolved (path.c); tree lookups are exact, so nothing can escape the
 *    tree;
 *  - token PUTs with Forwarded or Via get the same 403 as X-Forwarded-For,
 *    unless the VM allows proxied token requests.
 */
#include "http/route_ec2.h"

#include <errno.h>
#include <string.h>

#include "imds.h"
#include "http/token.h"
#include "lib/flavor_layout.h"

#define ROUTE_KEY_CAP (sizeof(EC2_TREE_PREFIX) + ROUTE_PATH_CAP)
#define ROUTE_TTL_HEADER "X-Aws-Ec2-Metadata-Token-Ttl-Seconds"

/* GET / (§1.5): the 2024 list observed on EC2, 2022-07-09 included; one per
 * line, no trailing newline.  The same for every VM.  Every entry is also
 * accepted as the first path segment (cloud-init probes dated versions),
 * looked up in a table of the same list with the lengths precomputed. */
#define ROUTE_VERSIONS(X) \
	X("1.0") X("2007-01-19") X("2007-03-01") X("2007-08-29") X("2007-10-10") X("2007-12-15") \
	X("2008-02-01") X("2008-09-01") X("2009-04-04") X("2011-01-01") X("2011-05-01") X("2012-01-12") \
	X("2014-02-25") X("2014-11-05") X("2015-10-20") X("2016-04-19") X("2016-06-30") X("2016-09-02") \
	X("2018-03-28") X("2018-08-17") X("2018-09-24") X("2019-10-01") X("2020-10-27") X("2021-01-03") \
	X("2021-03-23") X("2021-07-15") X("2022-07-09") X("2022-09-24") X("2024-04-11") X("latest")
#define ROUTE_VERSION_LINE(v) v "\n"
#define ROUTE_VERSION_ENTRY(v) { v, sizeof(v) - 1 },
/* Every line ends in '\n'; the reply leaves the last one out. */
static const char route_versions[] = ROUTE_VERSIONS(ROUTE_VERSION_LINE);
#define ROUTE_VERSIONS_LEN (sizeof(route_versions) - 2)
static const struct {
	const char *name;
	size_t len;
} route_version_table[] = { ROUTE_VERSIONS(ROUTE_VERSION_ENTRY) };

/* EC2's XHTML error pages (§1.2, capture C4): the 401 page is exactly 343
 * bytes (one tab before the DTD URL, a newline after </html>). */
#define ROUTE_ERROR_PAGE(title)                                                                                      \
	"<?xml version=\"1.0\" encoding=\"iso-8859-1\"?>\n"                                                           \
	"<!DOCTYPE html PUBLIC \"-//W3C//DTD XHTML 1.0 Transitional//EN\"\n"                                          \
	"\t\"http://www.w3.org/TR/xhtml1/DTD/xhtml1-transitional.dtd\">\n"                                            \
	"<html xmlns=\"http://www.w3.org/1999/xhtml\" xml:lang=\"en\" lang=\"en\">\n"                                 \
	" <head>\n"                                                                                                   \
	"  <title>" title "</title>\n"                                                                                \
	" </head>\n"                                                                                                  \
	" <body>\n"                                                                                                   \
	"  <h1>" title "</h1>\n"                                                                                      \
	" </body>\n"                                                                                                  \
	"</html>\n"

static const char route_page_401[] = ROUTE_ERROR_PAGE("401 - Unauthorized");
static const char route_page_404[] = ROUTE_ERROR_PAGE("404 - Not Found");
_Static_assert(sizeof(route_page_401) - 1 == 343, "EC2's 401 page is 343 bytes");

enum route_kind {
	ROUTE_BAD,	   /* target is not a path we can normalise */
	ROUTE_ROOT,	   /* "/" */
	ROUTE_TOKEN,	   /* "/latest/api/token" */
	ROUTE_DATED_TOKEN, /* PUT "/<dated>/api/token" */
	ROUTE_DATA,	   /* "/<version>" and below */
	ROUTE_UNKNOWN,	   /* first segment is not a version */
	ROUTE_KIND_MAX,
};

/* EC2's part of one request's state. */
struct route_ec2 {
	struct route_call *c;
	/* Copy of meta->instance_id, NUL-terminated even if the shared image
	 * is torn by a concurrent update (the server then discards the reply). */
	char instance_id[sizeof(((struct tree_meta *)0)->instance_id) + 1];
	enum route_kind kind;
	const char *rest; /* path below "/<version>/", "" for the version root */
	size_t rest_len;
};

/* --- responses --- */

static void route_not_found(struct route_ec2 *rc)
{
	route_reply(rc->c, 404, CT_HTML, route_page_404, sizeof(route_page_404) - 1);
}

static void route_unauthorized(struct route_ec2 *rc)
{
	route_reply(rc->c, 401, CT_HTML, route_page_401, sizeof(route_page_401) - 1);
}

static void route_add_ttl_header(struct route_ec2 *rc, uint64_t seconds)
{
	char v[HTTP_UINT_LEN];

	route_add_header_n(rc->c, ROUTE_TTL_HEADER, v, http_format_uint(v, seconds));
}

/* 405 with the methods the path does allow (§1.1, capture C6). */
static void route_not_allowed(struct route_ec2 *rc, const char *allow)
{
	route_add_header(rc->c, "Allow", allow);
	route_empty(rc->c, 405);
}

/* --- classification --- */

/* The list is in byte order (a proper prefix first), so a binary search
 * finds a segment in five compares; a linear scan compared a dated
 * version with each of the 28 rows of its length. */
static bool route_is_version(const char *seg, size_t n)
{
	size_t lo = 0, hi = sizeof(route_version_table) / sizeof(route_version_table[0]);

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2, len = route_version_table[mid].len;
		int c = memcmp(seg, route_version_table[mid].name, n < len ? n : len);

		if (c == 0)
			c = n < len ? -1 : n > len;
		if (c == 0)
			return true;
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return false;
}

static enum route_kind route_classify(struct route_ec2 *rc)
{
	const char *seg = rc->c->path + 1;
	size_t n = rc->c->seg_len;

	if (rc->c->path_len < 0)
		return ROUTE_BAD;
	if (n == 0)
		return ROUTE_ROOT;
	if (!route_is_version(seg, n))
		return ROUTE_UNKNOWN;
	if (seg[n]) {
		rc->rest = seg + n + 1;
		rc->rest_len = (size_t)rc->c->path_len - n - 2;
	}
	if (rc->rest_len != 9 || memcmp(rc->rest, "api/token", 9) != 0)
		return ROUTE_DATA;
	if (n == 6 && memcmp(seg, "latest", 6) == 0)
		return ROUTE_TOKEN;
	/* §1.1: a token PUT to a dated path is refused with 403 ("intended");
	 * other methods there get the ordinary data rules (404). */
	return rc->c->req->method == HTTP_M_PUT ? ROUTE_DATED_TOKEN : ROUTE_DATA;
}

/* --- IMDSv2 tokens --- */

/* TTL header (§1.1): exactly one, decimal digits only, 1..21600; -EINVAL
 * otherwise (answered 400, which botocore and the JS SDK treat as final). */
static int route_parse_ttl(const struct http_header_value *h)
{
	int ttl = 0;

	if (!h->present || h->count != 1 || h->too_long || !h->value[0])
		return -EINVAL;
	for (const char *p = h->value; *p; p++) {
		if (*p < '0' || *p > '9')
			return -EINVAL;
		ttl = ttl * 10 + (*p - '0');
		if (ttl > TOKEN_TTL_MAX)
			return -EINVAL;
	}
	return ttl < TOKEN_TTL_MIN ? -EINVAL : ttl;
}

static void route_token_put(struct route_ec2 *rc)
{
	const struct http_request *req = rc->c->req;
	int ttl = route_parse_ttl(&req->token_ttl);

	/* "PUT requests are rejected if they contain an X-Forwarded-For
	 * header" (D-how): a proxy in the guest must not obtain tokens.
	 * Forwarded (RFC 7239) and Via announce a proxy just as well, so they
	 * are refused too unless the VM allows them (EC2's handling of them
	 * is unverified, spec §1.1). */
	if (route_proxied(rc->c)) {
		route_empty(rc->c, 403);
	} else if (ttl < 0) {
		route_empty(rc->c, 400);
	} else if (token_mint(rc->c->ctx->token_key, rc->instance_id, (uint64_t)rc->c->ctx->now + (uint64_t)ttl,
			      rc->c->token)) {
		rc->c->res->close = true;
		route_empty(rc->c, 500);
	} else {
		/* The granted TTL is echoed: aws-sdk-go fails without it (§1.1). */
		route_add_ttl_header(rc, (uint64_t)ttl);
		route_reply(rc->c, 200, CT_TEXT, rc->c->token, TOKEN_TEXT_LEN);
		/* Under the hop limit (user/serve/hop.c).  EC2 closes after
		 * it; imdsd keeps the connection the client asked to keep, as
		 * for data replies (docs/design.md, "Keep-alive"). */
		rc->c->res->token_reply = true;
		rc->c->res->token_issued = true;
	}
}

static void route_token(struct route_ec2 *rc)
{
	switch (rc->c->req->method) {
	case HTTP_M_PUT:
		route_token_put(rc);
		break;
	case HTTP_M_OPTIONS:
		route_add_header(rc->c, "Allow", "OPTIONS, PUT");
		route_empty(rc->c, 200);
		break;
	default:
		route_not_allowed(rc, "OPTIONS, PUT");
		break;
	}
}

/* Returns 0 when the request may be served, else -EACCES with the 401/403
 * reply already set.  A token header, even empty, makes the request IMDSv2:
 * it must then be valid for this VM (§1.2); SDKs answer 401 by fetching a
 * new token. */
static int route_check_token(struct route_ec2 *rc)
{
	const struct http_header_value *tok = &rc->c->req->token;
	uint64_t now = (uint64_t)rc->c->ctx->now, expiry;

	if (!tok->present) {
		if (rc->c->meta->http_tokens != IMDS_TOKENS_REQUIRED) {
			rc->c->res->tokenless = true;
			return 0;
		}
		route_unauthorized(rc);
		return -EACCES;
	}
	if (tok->count != 1 || tok->too_long ||
	    token_verify_memo(rc->c->ctx->token_memo, rc->c->ctx->token_key, rc->instance_id, tok->value,
			      strlen(tok->value), now, &expiry)) {
		route_unauthorized(rc);
		return -EACCES;
	}
	/* Token-bearing requests through a proxy get 403 on EC2 (kube2iam #279). */
	if (rc->c->req->forwarded_for.present) {
		route_empty(rc->c, 403);
		return -EACCES;
	}
	route_add_ttl_header(rc, expiry - now);
	return 0;
}

/* --- data --- */

static void route_root(struct route_ec2 *rc)
{
	route_reply(rc->c, 200, CT_TEXT, route_versions, ROUTE_VERSIONS_LEN);
}

static int route_lookup(struct route_ec2 *rc, const char *rest, size_t n, bool dir, struct tree_entry *e)
{
	char key[ROUTE_KEY_CAP];
	size_t len = sizeof(EC2_TREE_PREFIX) - 1;
	bool slash = dir && n;

	if (len + n + slash >= sizeof(key))
		return -ENOENT;
	memcpy(key, EC2_TREE_PREFIX, len);
	memcpy(key + len, rest, n);
	len += n;
	if (slash)
		key[len++] = '/';
	key[len] = '\0';
	return tree_lookup(rc->c->ctx->tree, key, len, e);
}

/* With a trailing '/' the directory wins, else the leaf; the other is the
 * fallback: botocore asks "placement/availability-zone/" (a leaf) and
 * cloud-init lists "dynamic/instance-identity" (a directory) without '/'. */
static void route_data(struct route_ec2 *rc)
{
	size_t n = rc->rest_len;
	bool slash = n > 0 && rc->rest[n - 1] == '/';
	struct tree_entry e;
	int ret;

	if (slash)
		n--;
	ret = route_lookup(rc, rc->rest, n, slash, &e);
	if (ret && n > 0)
		ret = route_lookup(rc, rc->rest, n, !slash, &e);
	if (ret) {
		route_not_found(rc);
		return;
	}
	route_reply(rc->c, 200, e.ctype, e.body, e.body_len);
	rc->c->resp.last_modified = rc->c->meta->last_modified;
}

static void route_dated_token(struct route_ec2 *rc)
{
	route_empty(rc->c, 403);
}

static void route_bad(struct route_ec2 *rc)
{
	route_empty(rc->c, 400);
}

/* guarded: GET/HEAD only, and the IMDSv2 token rules apply first. */
static const struct {
	void (*handle)(struct route_ec2 *rc);
	bool guarded;
} route_table[ROUTE_KIND_MAX] = {
	[ROUTE_BAD] = { route_bad, false },
	[ROUTE_ROOT] = { route_root, true },
	[ROUTE_TOKEN] = { route_token, false },
	[ROUTE_DATED_TOKEN] = { route_dated_token, false },
	[ROUTE_DATA] = { route_data, true },
	[ROUTE_UNKNOWN] = { route_not_found, true },
};

static void route_dispatch(struct route_ec2 *rc)
{
	enum http_method m = rc->c->req->method;

	if (!route_table[rc->kind].guarded)
		route_table[rc->kind].handle(rc);
	else if (m != HTTP_M_GET && m != HTTP_M_HEAD)
		route_not_allowed(rc, "GET, HEAD");
	else if (route_check_token(rc) == 0)
		route_table[rc->kind].handle(rc);
}

void route_ec2(struct route_call *c)
{
	struct route_ec2 rc;

	rc.c = c;
	memcpy(rc.instance_id, c->meta->instance_id, sizeof(c->meta->instance_id));
	rc.instance_id[sizeof(rc.instance_id) - 1] = '\0';
	rc.rest = "";
	rc.rest_len = 0;
	rc.kind = route_classify(&rc);
	route_dispatch(&rc);
}

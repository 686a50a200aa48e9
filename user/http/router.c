/* router.c: the EC2 API rules, from one parsed request and the VM's tree to
 * one complete response.  Source of every rule: shared/spec
 * ec2-imds-behaviour.md (§ numbers below) and real-clients.md.
 *
 * route_request normalises the path, classifies it (root, token path,
 * dated token path, data, unknown version) and dispatches through a table;
 * data-serving routes share one guard (method, then IMDSv2 token check).
 *
 * Choices where real EC2 is unverified (written down, see spec §7):
 *  - methods other than GET/HEAD on data paths: 405 with "Allow: GET, HEAD";
 *  - 400 (bad TTL), 403 (X-Forwarded-For, dated token path) and 405 carry an
 *    empty text/plain body, like EC2's captured 405 and OPTIONS replies;
 *  - the connection stays open (keep-alive) after a 200 unless the client
 *    asked to close or the reply carries a token; EC2 itself always closes,
 *    but keep-alive is what makes a metadata storm cheap and every client
 *    copes with both.  Error replies (4xx, 5xx) close, as EC2's do: the AWS
 *    JS SDK never reads an error body, so a kept-alive socket would keep its
 *    Node process alive until the idle timeout (clients-findings, H8).
 *  - percent-escapes in the path are decoded before dot segments are
 *    resolved; tree lookups are exact, so nothing can escape the tree;
 *  - token PUTs with Forwarded or Via get the same 403 as X-Forwarded-For,
 *    unless the VM allows proxied token requests.
 */
#include "http/router.h"

#include <errno.h>
#include <stddef.h>
#include <string.h>
#include <strings.h>

#include "http/flavor_route.h"
#include "imds.h"
#include "http/token.h"

#define ROUTE_PATH_CAP (HTTP_URL_MAX + 2) /* room for an added '/' and NUL */
#define ROUTE_FLAVOR "ec2/"
#define ROUTE_KEY_CAP (sizeof(ROUTE_FLAVOR) + ROUTE_PATH_CAP)
#define ROUTE_EXTRA_CAP 128
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

/* State of one request while it is routed. */
struct route_call {
	const struct route_ctx *ctx;
	const struct http_request *req;
	const struct tree_meta *meta;
	/* Copy of meta->instance_id, NUL-terminated even if the shared image
	 * is torn by a concurrent update (the server then discards the reply). */
	char instance_id[sizeof(((struct tree_meta *)0)->instance_id) + 1];
	enum route_kind kind;
	const char *rest; /* path below "/<version>/", "" for the version root */
	struct http_response resp;
	struct route_result *res;
	char extra[ROUTE_EXTRA_CAP]; /* extra response header lines */
	/* Not zeroed per request (2 KiB): each is written before it is read. */
	char path[ROUTE_PATH_CAP];
	char token[TOKEN_TEXT_LEN + 1];
};

/* --- responses --- */

static void route_reply(struct route_call *rc, int status, enum tree_ctype ct, const char *body, size_t len)
{
	rc->resp.status = status;
	rc->resp.ctype = ct;
	rc->resp.body = body;
	rc->resp.body_len = len;
}

static void route_empty(struct route_call *rc, int status)
{
	route_reply(rc, status, CT_TEXT, "", 0);
}

static void route_not_found(struct route_call *rc)
{
	route_reply(rc, 404, CT_HTML, route_page_404, sizeof(route_page_404) - 1);
}

static void route_unauthorized(struct route_call *rc)
{
	route_reply(rc, 401, CT_HTML, route_page_401, sizeof(route_page_401) - 1);
}

/* Appends one "Name: value\r\n" line to the extra headers (each fits:
 * the few the routes add are far shorter than ROUTE_EXTRA_CAP). */
static void route_add_header_n(struct route_call *rc, const char *name, const char *value, size_t value_len)
{
	size_t used = strlen(rc->extra), name_len = strlen(name);
	char *p = rc->extra + used;

	if (name_len + value_len + 4 >= sizeof(rc->extra) - used)
		return;
	memcpy(p, name, name_len);
	p += name_len;
	*p++ = ':';
	*p++ = ' ';
	memcpy(p, value, value_len);
	p += value_len;
	memcpy(p, "\r\n", 3);
	rc->resp.extra_headers = rc->extra;
}

static void route_add_header(struct route_call *rc, const char *name, const char *value)
{
	route_add_header_n(rc, name, value, strlen(value));
}

static void route_add_ttl_header(struct route_call *rc, uint64_t seconds)
{
	char v[HTTP_UINT_LEN];

	route_add_header_n(rc, ROUTE_TTL_HEADER, v, http_format_uint(v, seconds));
}

/* 405 with the methods the path does allow (§1.1, capture C6). */
static void route_not_allowed(struct route_call *rc, const char *allow)
{
	route_add_header(rc, "Allow", allow);
	route_empty(rc, 405);
}

/* --- path normalisation --- */

/* Skips "http://host" of an absolute-form target (RFC 7230 §5.3.2), which
 * a client sends when it believes it talks to a proxy. */
static size_t route_skip_authority(const char *url, size_t len)
{
	static const char *const schemes[] = { "http://", "https://" };

	for (size_t i = 0; i < 2; i++) {
		size_t n = strlen(schemes[i]);

		if (len >= n && strncasecmp(url, schemes[i], n) == 0) {
			const char *slash = memchr(url + n, '/', len - n);

			return slash ? (size_t)(slash - url) : len;
		}
	}
	return 0;
}

/* Applies one segment to out ("/a/b/" form, always ending in '/'). */
static int route_push_segment(char *out, size_t *olen, size_t cap, const char *seg, size_t n)
{
	if (n == 0 || (n == 1 && seg[0] == '.'))
		return 0;
	if (n == 2 && seg[0] == '.' && seg[1] == '.') {
		/* Drop the last segment; at the root ".." stays at the root. */
		if (*olen > 1) {
			(*olen)--;
			while (out[*olen - 1] != '/')
				(*olen)--;
		}
		return 0;
	}
	/* The '/' may take the NUL's place for now: the caller drops it or
	 * checks that the NUL still fits. */
	if (*olen + n + 1 > cap)
		return -EINVAL;
	memcpy(out + *olen, seg, n);
	*olen += n;
	out[(*olen)++] = '/';
	return 0;
}

/* Length of the run of url[0..len) before the first `a`, `b` or NUL
 * (compared directly: strchr per byte cost more than the rest of the
 * normalisation). */
static size_t route_span(const char *url, size_t len, char a, char b)
{
	size_t i = 0;

	while (i < len && url[i] && url[i] != a && url[i] != b)
		i++;
	return i;
}

static int route_hex(char ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	ch = (char)(ch | 0x20);
	return ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : -1;
}

/* Decodes %HH escapes (RFC 3986 §2.1) of in[0..len) into out, which holds
 * cap bytes.  Clients escape what is unsafe in a URL (Python's requests
 * sends a key "a b" as "a%20b", "100%" as "100%25"), and tree lookups are
 * exact, so decoding reaches only what is in the tree.  A '%' without two
 * hex digits stays as is; %00 is refused.  The length, or -EINVAL. */
static int route_percent_decode(const char *in, size_t len, char *out, size_t cap)
{
	size_t o = 0;

	if (len >= cap)
		return -EINVAL;
	for (size_t i = 0; i < len; i++) {
		int hi = in[i] == '%' && i + 2 < len ? route_hex(in[i + 1]) : -1;
		int lo = hi >= 0 ? route_hex(in[i + 2]) : -1;

		if (lo < 0) {
			out[o++] = in[i];
			continue;
		}
		if (hi == 0 && lo == 0)
			return -EINVAL;
		out[o++] = (char)(hi << 4 | lo);
		i += 2;
	}
	out[o] = '\0';
	return (int)o;
}

int route_normalize_path(const char *url, size_t url_len, char *out, size_t cap)
{
	size_t i, olen = 1, start = route_skip_authority(url, url_len);
	size_t end = start + route_span(url + start, url_len - start, '?', '#');
	bool keep_slash = true; /* "http://host" alone means "/" */
	char path[HTTP_URL_MAX + 1];
	int plen;

	if (cap < 2 || (start == 0 && (end == 0 || url[0] != '/')))
		return -EINVAL;
	if (end < url_len && url[end] == '\0')
		return -EINVAL;
	/* Escapes are decoded first, so "%2e%2e" is ".." (RFC 3986 §6.2.2.2). */
	plen = route_percent_decode(url + start, end - start, path, sizeof(path));
	if (plen < 0)
		return -EINVAL;
	out[0] = '/';
	/* i == plen visits the empty segment after a trailing '/'. */
	for (i = 0; i <= (size_t)plen;) {
		size_t n = route_span(path + i, (size_t)plen - i, '/', '/');

		if (route_push_segment(out, &olen, cap, path + i, n))
			return -EINVAL;
		/* A trailing "/", "." or ".." names a directory (RFC 3986 §5.2.4). */
		keep_slash = n == 0 || (n == 1 && path[i] == '.') || (n == 2 && path[i] == '.' && path[i + 1] == '.');
		i += n + 1;
	}
	if (olen > 1 && !keep_slash)
		olen--;
	if (olen >= cap)
		return -EINVAL;
	out[olen] = '\0';
	return (int)olen;
}

/* --- classification --- */

static bool route_is_version(const char *seg, size_t n)
{
	for (size_t i = 0; i < sizeof(route_version_table) / sizeof(route_version_table[0]); i++) {
		if (route_version_table[i].len == n && memcmp(route_version_table[i].name, seg, n) == 0)
			return true;
	}
	return false;
}

static enum route_kind route_classify(struct route_call *rc)
{
	const char *seg = rc->path + 1;
	size_t n = strcspn(seg, "/");

	if (n == 0)
		return ROUTE_ROOT;
	if (!route_is_version(seg, n))
		return ROUTE_UNKNOWN;
	rc->rest = seg[n] ? seg + n + 1 : "";
	if (strcmp(rc->rest, "api/token") != 0)
		return ROUTE_DATA;
	if (n == 6 && memcmp(seg, "latest", 6) == 0)
		return ROUTE_TOKEN;
	/* §1.1: a token PUT to a dated path is refused with 403 ("intended");
	 * other methods there get the ordinary data rules (404). */
	return rc->req->method == HTTP_M_PUT ? ROUTE_DATED_TOKEN : ROUTE_DATA;
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

/* A token request that came through a proxy: X-Forwarded-For always (as
 * on EC2); Forwarded (RFC 7239) and Via announce a proxy just as well, so
 * they are refused too unless the VM's proxied-token-requests option is
 * "allow" (EC2's handling of them is unverified, spec §1.1). */
static bool route_is_proxied(const struct route_call *rc)
{
	const struct http_request *req = rc->req;

	if (req->forwarded_for.present)
		return true;
	return !rc->meta->allow_proxied && (req->forwarded.present || req->via.present);
}

static void route_token_put(struct route_call *rc)
{
	const struct http_request *req = rc->req;
	int ttl = route_parse_ttl(&req->token_ttl);

	/* "PUT requests are rejected if they contain an X-Forwarded-For
	 * header" (D-how): a proxy in the guest must not obtain tokens. */
	if (route_is_proxied(rc)) {
		route_empty(rc, 403);
	} else if (ttl < 0) {
		route_empty(rc, 400);
	} else if (token_mint(rc->ctx->token_key, rc->instance_id, (uint64_t)rc->ctx->now + (uint64_t)ttl,
			      rc->token)) {
		rc->res->close = true;
		route_empty(rc, 500);
	} else {
		/* The granted TTL is echoed: aws-sdk-go fails without it (§1.1). */
		route_add_ttl_header(rc, (uint64_t)ttl);
		route_reply(rc, 200, CT_TEXT, rc->token, TOKEN_TEXT_LEN);
		/* EC2 closes after a token reply; the data plane also limits the
		 * IP TTL of this connection's replies to the hop limit. */
		rc->res->token_reply = true;
		rc->res->close = true;
	}
}

static void route_token(struct route_call *rc)
{
	switch (rc->req->method) {
	case HTTP_M_PUT:
		route_token_put(rc);
		break;
	case HTTP_M_OPTIONS:
		route_add_header(rc, "Allow", "OPTIONS, PUT");
		route_empty(rc, 200);
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
static int route_check_token(struct route_call *rc)
{
	const struct http_header_value *tok = &rc->req->token;
	uint64_t now = (uint64_t)rc->ctx->now, expiry;

	if (!tok->present) {
		if (rc->meta->http_tokens != IMDS_TOKENS_REQUIRED)
			return 0;
		route_unauthorized(rc);
		return -EACCES;
	}
	if (tok->count != 1 || tok->too_long ||
	    token_verify(rc->ctx->token_key, rc->instance_id, tok->value, strlen(tok->value), now, &expiry)) {
		route_unauthorized(rc);
		return -EACCES;
	}
	/* Token-bearing requests through a proxy get 403 on EC2 (kube2iam #279). */
	if (rc->req->forwarded_for.present) {
		route_empty(rc, 403);
		return -EACCES;
	}
	route_add_ttl_header(rc, expiry - now);
	return 0;
}

/* --- data --- */

static void route_root(struct route_call *rc)
{
	route_reply(rc, 200, CT_TEXT, route_versions, ROUTE_VERSIONS_LEN);
}

static int route_lookup(struct route_call *rc, const char *rest, size_t n, bool dir, struct tree_entry *e)
{
	char key[ROUTE_KEY_CAP];
	size_t len = sizeof(ROUTE_FLAVOR) - 1;
	bool slash = dir && n;

	if (len + n + slash >= sizeof(key))
		return -ENOENT;
	memcpy(key, ROUTE_FLAVOR, len);
	memcpy(key + len, rest, n);
	len += n;
	if (slash)
		key[len++] = '/';
	key[len] = '\0';
	return tree_lookup(rc->ctx->tree, key, len, e);
}

/* With a trailing '/' the directory wins, else the leaf; the other is the
 * fallback: botocore asks "placement/availability-zone/" (a leaf) and
 * cloud-init lists "dynamic/instance-identity" (a directory) without '/'. */
static void route_data(struct route_call *rc)
{
	size_t n = strlen(rc->rest);
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
	route_reply(rc, 200, e.ctype, e.body, e.body_len);
	rc->resp.last_modified = rc->meta->last_modified;
}

static void route_dated_token(struct route_call *rc)
{
	route_empty(rc, 403);
}

static void route_bad(struct route_call *rc)
{
	route_empty(rc, 400);
}

/* guarded: GET/HEAD only, and the IMDSv2 token rules apply first. */
static const struct {
	void (*handle)(struct route_call *rc);
	bool guarded;
} route_table[ROUTE_KIND_MAX] = {
	[ROUTE_BAD] = { route_bad, false },
	[ROUTE_ROOT] = { route_root, true },
	[ROUTE_TOKEN] = { route_token, false },
	[ROUTE_DATED_TOKEN] = { route_dated_token, false },
	[ROUTE_DATA] = { route_data, true },
	[ROUTE_UNKNOWN] = { route_not_found, true },
};

static void route_dispatch(struct route_call *rc)
{
	enum http_method m = rc->req->method;

	if (!route_table[rc->kind].guarded)
		route_table[rc->kind].handle(rc);
	else if (m != HTTP_M_GET && m != HTTP_M_HEAD)
		route_not_allowed(rc, "GET, HEAD");
	else if (route_check_token(rc) == 0)
		route_table[rc->kind].handle(rc);
}

int route_request(const struct route_ctx *ctx, const struct http_request *req, struct outbuf *out,
		  struct route_result *res)
{
	struct route_call rc;
	int handled = ctx->tree ? flavor_route(ctx, req, out, res) : 0;

	if (handled)
		return handled < 0 ? handled : 0;

	*res = (struct route_result){ 0 };
	memset(&rc, 0, offsetof(struct route_call, path));
	rc.ctx = ctx;
	rc.req = req;
	rc.res = res;
	rc.meta = ctx->tree ? tree_view_meta(ctx->tree) : NULL;
	if (!rc.meta) {
		res->close = true;
		route_empty(&rc, 500);
	} else {
		memcpy(rc.instance_id, rc.meta->instance_id, sizeof(rc.meta->instance_id));
		rc.kind = route_normalize_path(req->url, req->url_len, rc.path, sizeof(rc.path)) < 0 ? ROUTE_BAD
												 : route_classify(&rc);
		route_dispatch(&rc);
	}
	res->status = rc.resp.status;
	res->close = res->close || !req->keep_alive || rc.resp.status >= 400;
	rc.resp.close = res->close;
	rc.resp.head = req->method == HTTP_M_HEAD;
	return http_write_response(out, &rc.resp, ctx->now);
}

/* flavor_route.c: request rules of the OpenStack, GCE and Azure flavors
 * (flavor_route.h), over the subtrees flavors.c compiles.  Rules and their
 * sources: docs/flavors.md.
 *
 * Which flavor a request belongs to is decided by its first path segment
 * ("openstack", "computeMetadata", "metadata"), and "GET /" is GCE's when
 * the request carries Metadata-Flavor (google-auth pings the root) and the
 * VM is served as GCE; every other request is EC2's.  All flavors serve GET and HEAD only.
 * As with EC2's routes, every error answer closes the connection; GCE's
 * answers name GCE's server.
 */
#include "http/flavor_route.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "compile/flavors.h"
#include "imds.h"

#define FR_PATH_CAP (HTTP_URL_MAX + 2)
#define FR_KEY_CAP (FR_PATH_CAP + 32)
#define FR_EXTRA_CAP 128
#define FR_PARAM_CAP 64

#define GCE_SERVER "Metadata Server for VM" /* GCE's Server header */
#define GCE_TOKEN_WINDOW 3600 /* a token is valid for the clock hour it was made in */
#define GCE_TOKEN_MIN_LEFT 300 /* closer to the end: hand out the next hour's */

enum fr_flavor { FR_OPENSTACK, FR_GCE, FR_AZURE };

struct fr {
	const struct route_ctx *ctx;
	const struct http_request *req;
	const struct tree_meta *meta;
	struct route_result *res;
	enum fr_flavor flavor;
	char path[FR_PATH_CAP]; /* normalised, query dropped */
	const char *query;	/* after '?', up to '#' or the end */
	size_t query_len;
	struct http_response resp;
	char extra[FR_EXTRA_CAP];
	struct outbuf body; /* bodies made per request */
};

/* --- responses --- */

static void fr_reply(struct fr *f, int status, enum tree_ctype ct, const char *body, size_t len)
{
	f->resp.status = status;
	f->resp.ctype = ct;
	f->resp.body = body;
	f->resp.body_len = len;
}

static void fr_reply_str(struct fr *f, int status, enum tree_ctype ct, const char *body)
{
	fr_reply(f, status, ct, body, strlen(body));
}

static void fr_add_header(struct fr *f, const char *name, const char *value)
{
	size_t used = strlen(f->extra);

	snprintf(f->extra + used, sizeof(f->extra) - used, "%s: %s\r\n", name, value);
	f->resp.extra_headers = f->extra;
}

/* Each flavor's 404 as its server writes it: Nova's webob page, Google's
 * error page (shortened), Azure's JSON error. */
static void fr_not_found(struct fr *f)
{
	static const char os_404[] = "<html>\n <head>\n  <title>404 Not Found</title>\n </head>\n <body>\n"
				     "  <h1>404 Not Found</h1>\n  The resource could not be found.<br /><br />\n\n\n\n"
				     " </body>\n</html>";
	static const char gce_404[] = "<!DOCTYPE html>\n<html lang=en>\n<title>Error 404 (Not Found)!!1</title>\n"
				      "<p><b>404.</b> <ins>That\xe2\x80\x99s an error.</ins>\n"
				      "<p>The requested URL was not found on this server.  "
				      "<ins>That\xe2\x80\x99s all we know.</ins>\n";

	switch (f->flavor) {
	case FR_OPENSTACK:
		fr_reply_str(f, 404, CT_HTML, os_404);
		break;
	case FR_GCE:
		fr_reply_str(f, 404, CT_HTML, gce_404);
		break;
	case FR_AZURE:
		fr_reply_str(f, 404, CT_JSON, "{\"error\":\"Not found\"}");
		break;
	}
}

/* A tree entry found for the request, with the VM's Last-Modified. */
static void fr_serve(struct fr *f, const struct tree_entry *e, enum tree_ctype ct)
{
	fr_reply(f, 200, ct, e->body, e->body_len);
	f->resp.last_modified = f->meta->last_modified;
}

static int fr_lookup(struct fr *f, const char *prefix, const char *rel, size_t n, const char *suffix,
		     struct tree_entry *e)
{
	char key[FR_KEY_CAP];
	int len = snprintf(key, sizeof(key), "%s%.*s%s", prefix, (int)n, rel, suffix);

	if (len < 0 || (size_t)len >= sizeof(key))
		return -ENOENT;
	return tree_lookup(f->ctx->tree, key, (size_t)len, e);
}

/* Finds `rel` ("a/b" or "a/b/") below `prefix`: with a trailing '/' the
 * directory wins, else the leaf; the other form is the fallback, as for
 * EC2 (gcp-metadata probes "instance" without a slash).  Sets *n to the
 * length of rel without its slash.  0 or -ENOENT. */
static int fr_find(struct fr *f, const char *prefix, const char *rel, size_t *n, struct tree_entry *e)
{
	size_t len = strlen(rel);
	bool slash = len > 0 && rel[len - 1] == '/';

	if (slash)
		len--;
	*n = len;
	if (len == 0)
		return fr_lookup(f, prefix, "", 0, "", e);
	if (fr_lookup(f, prefix, rel, len, slash ? "/" : "", e) == 0)
		return 0;
	return fr_lookup(f, prefix, rel, len, slash ? "" : "/", e);
}

/* --- query --- */

static int fr_hex(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = (char)(c | 0x20);
	return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* The value of query parameter `name` (percent-decoded, '+' as space) in
 * out.  1 when present (the last occurrence wins), 0 when absent. */
static int fr_param(const struct fr *f, const char *name, char *out, size_t cap)
{
	size_t nlen = strlen(name), i = 0;
	int found = 0;

	while (i < f->query_len) {
		const char *p = f->query + i;
		size_t len = strcspn(p, "&");

		if (len > f->query_len - i)
			len = f->query_len - i;
		if (len >= nlen && !memcmp(p, name, nlen) && (len == nlen || p[nlen] == '=')) {
			size_t o = 0;

			for (size_t k = nlen + (len > nlen); k < len && o + 1 < cap; k++) {
				int hi, lo;

				if (p[k] == '%' && k + 2 < len && (hi = fr_hex(p[k + 1])) >= 0 &&
				    (lo = fr_hex(p[k + 2])) >= 0) {
					out[o++] = (char)(hi * 16 + lo);
					k += 2;
				} else {
					out[o++] = p[k] == '+' ? ' ' : p[k];
				}
			}
			out[o] = '\0';
			found = 1;
		}
		i += len + 1;
	}
	return found;
}

static void fr_split_query(struct fr *f)
{
	const char *url = f->req->url, *q = memchr(url, '?', f->req->url_len);

	f->query = "";
	f->query_len = 0;
	if (!q)
		return;
	f->query = q + 1;
	f->query_len = strcspn(f->query, "#");
	if (f->query_len > f->req->url_len - (size_t)(f->query - url))
		f->query_len = f->req->url_len - (size_t)(f->query - url);
}

/* --- OpenStack --- */

/* Nova's versions (cloud-init reads the list and picks the newest it knows). */
static const char os_versions[] = "2012-08-10\n2013-04-04\n2013-10-17\n2015-10-15\n2016-06-30\n2016-10-06\n"
				  "2017-02-22\n2018-08-27\n2020-10-14\nlatest";

/* Each document and the first version that has it, in Nova's listing order. */
static const struct {
	const char *name;
	const char *since;
} os_files[] = {
	{ "meta_data.json", "2012-08-10" },    { "user_data", "2012-08-10" },
	{ "vendor_data.json", "2013-10-17" },  { "network_data.json", "2015-10-15" },
	{ "vendor_data2.json", "2016-10-06" },
};

static bool os_is_version(const char *v, size_t n)
{
	for (const char *p = os_versions; *p;) {
		size_t len = strcspn(p, "\n");

		if (len == n && !memcmp(p, v, n))
			return true;
		p += len + (p[len] == '\n');
	}
	return false;
}

/* "latest" sorts after every date. */
static bool os_has(const char *version, size_t vlen, const char *since)
{
	return (vlen == 6 && !memcmp(version, "latest", 6)) || memcmp(version, since, 10) >= 0;
}

static int os_listing(struct fr *f, const char *version, size_t vlen)
{
	struct tree_entry e;

	for (size_t i = 0; i < sizeof(os_files) / sizeof(os_files[0]); i++) {
		if (!os_has(version, vlen, os_files[i].since) ||
		    fr_lookup(f, OPENSTACK_PREFIX, os_files[i].name, strlen(os_files[i].name), "", &e))
			continue;
		if (outbuf_printf(&f->body, "%s%s", f->body.len ? "\n" : "", os_files[i].name))
			return -ENOMEM;
	}
	fr_reply(f, 200, CT_TEXT, f->body.data ? f->body.data : "", f->body.len);
	f->resp.last_modified = f->meta->last_modified;
	return 0;
}

static int os_route(struct fr *f)
{
	const char *v = f->path + strlen("/openstack"), *file;
	size_t vlen;
	struct tree_entry e;

	if (*v == '\0' || !strcmp(v, "/")) {
		fr_reply(f, 200, CT_TEXT, os_versions, sizeof(os_versions) - 1);
		return 0;
	}
	v++;
	vlen = strcspn(v, "/");
	if (!os_is_version(v, vlen)) {
		fr_not_found(f);
		return 0;
	}
	file = v + vlen + (v[vlen] == '/');
	if (*file == '\0')
		return os_listing(f, v, vlen);
	for (size_t i = 0; i < sizeof(os_files) / sizeof(os_files[0]); i++) {
		size_t n = strlen(os_files[i].name);

		/* a trailing '/' after a document still names it */
		if (strncmp(file, os_files[i].name, n) || (file[n] && strcmp(file + n, "/")))
			continue;
		if (os_has(v, vlen, os_files[i].since) && !fr_lookup(f, OPENSTACK_PREFIX, file, n, "", &e)) {
			fr_serve(f, &e, e.ctype);
			return 0;
		}
		break;
	}
	fr_not_found(f);
	return 0;
}

/* --- GCE --- */

static bool gce_true(const char *v)
{
	return !strcasecmp(v, "true");
}

/* HMAC-SHA256(host key, "gce-token" || instance-id || e-mail || hour),
 * base64url: unforgeable without the host key, the same for every request
 * of the hour, different for every VM and account. */
static int gce_token(struct fr *f, const char *email)
{
	uint64_t now = (uint64_t)f->ctx->now, window = now / GCE_TOKEN_WINDOW;
	unsigned char mac[EVP_MAX_MD_SIZE], b64[EVP_MAX_MD_SIZE * 2];
	unsigned int mac_len = 0;
	struct outbuf msg = { 0 };
	uint64_t end;
	int rc, n;

	if ((window + 1) * GCE_TOKEN_WINDOW - now < GCE_TOKEN_MIN_LEFT)
		window++;
	end = (window + 1) * GCE_TOKEN_WINDOW;
	rc = outbuf_printf(&msg, "gce-token%c%.*s%c%s%c%llu", 0, (int)sizeof(f->meta->instance_id),
			   f->meta->instance_id, 0, email, 0, (unsigned long long)window);
	if (rc)
		return rc;
	if (!HMAC(EVP_sha256(), f->ctx->token_key, IMDS_TOKEN_KEY_LEN, (const unsigned char *)msg.data, msg.len, mac,
		  &mac_len)) {
		outbuf_free(&msg);
		return -EIO;
	}
	outbuf_free(&msg);
	n = EVP_EncodeBlock(b64, mac, (int)mac_len);
	for (int i = 0; i < n; i++)
		b64[i] = b64[i] == '+' ? '-' : b64[i] == '/' ? '_' : b64[i];
	while (n > 0 && b64[n - 1] == '=')
		n--;
	rc = outbuf_printf(&f->body,
			   "{\"access_token\":\"ya29.imds.%.*s\",\"expires_in\":%llu,\"token_type\":\"Bearer\"}", n,
			   (const char *)b64, (unsigned long long)(end - now));
	if (!rc)
		fr_reply(f, 200, CT_JSON, f->body.data, f->body.len);
	return rc;
}

/* "instance/service-accounts/<account>/token": the account's e-mail. */
static int gce_token_route(struct fr *f, const char *rel, size_t n)
{
	static const char sa[] = "instance/service-accounts/";
	char key[FR_KEY_CAP];
	struct tree_entry e;
	const char *acct = rel + sizeof(sa) - 1, *slash;

	if (n <= sizeof(sa) - 1 || strncmp(rel, sa, sizeof(sa) - 1))
		return 0;
	slash = memchr(acct, '/', n - (sizeof(sa) - 1));
	if (!slash || (size_t)(rel + n - slash) != strlen("/token") || strncmp(slash, "/token", 6))
		return 0;
	if (fr_lookup(f, GCE_PREFIX, rel, (size_t)(slash - rel), "/email", &e) || e.body_len >= sizeof(key))
		return 0;
	memcpy(key, e.body, e.body_len);
	key[e.body_len] = '\0';
	return gce_token(f, key) ? -ENOMEM : 1;
}

/* A directory without ?recursive=true as alt=json: its entries as a JSON
 * array of strings. */
static int gce_listing_json(struct fr *f, const struct tree_entry *e)
{
	json_t *arr = json_array();
	char *text;
	int rc = arr ? 0 : -ENOMEM;

	for (size_t i = 0; !rc && i < e->body_len;) {
		const char *p = e->body + i, *nl = memchr(p, '\n', e->body_len - i);
		size_t len = nl ? (size_t)(nl - p) : e->body_len - i;

		rc = json_array_append_new(arr, json_stringn(p, len)) ? -ENOMEM : 0;
		i += len + 1;
	}
	text = rc ? NULL : json_dumps(arr, JSON_COMPACT);
	json_decref(arr);
	if (!text || outbuf_puts(&f->body, text)) {
		free(text);
		return -ENOMEM;
	}
	free(text);
	fr_reply(f, 200, CT_JSON, f->body.data, f->body.len);
	return 0;
}

/* A leaf as alt=json: its member of the parent directory's precompiled
 * JSON, so numbers stay numbers and lists stay arrays. */
static int gce_leaf_json(struct fr *f, const char *rel, size_t n)
{
	const char *slash = memrchr(rel, '/', n), *name = slash ? slash + 1 : rel;
	const char *pslash = slash ? memrchr(rel, '/', (size_t)(slash - rel)) : NULL;
	const char *pname = pslash ? pslash + 1 : rel;
	char parent[256] = "", name_buf[256], key[256];
	size_t dlen = slash ? (size_t)(slash - rel) + 1 : 0;
	struct tree_entry e;
	json_t *doc, *v;
	char *text;
	int rc = -ENOMEM;

	if (slash)
		snprintf(parent, sizeof(parent), "%.*s", (int)(slash - pname), pname);
	snprintf(name_buf, sizeof(name_buf), "%.*s", (int)(rel + n - name), name);
	gce_json_key(parent, name_buf, key, sizeof(key));
	if (fr_lookup(f, GCE_JSON_PREFIX, rel, dlen, FLAVOR_JSON_LEAF, &e))
		return -ENOENT;
	doc = json_loadb(e.body, e.body_len, JSON_DECODE_ANY, NULL);
	v = doc ? json_object_get(doc, key) : NULL;
	text = v ? json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
	if (text && !outbuf_puts(&f->body, text)) {
		fr_reply(f, 200, CT_JSON, f->body.data, f->body.len);
		f->resp.last_modified = f->meta->last_modified;
		rc = 0;
	}
	free(text);
	json_decref(doc);
	return v ? rc : -ENOENT;
}

/* Appends "shown+name line" for every line of every leaf below the
 * directory `dir` ("" or "a/b/"), in listing order: GCE's recursive
 * alt=text form.  Tokens are not data and are left out, as in the JSON. */
static int gce_text_walk(struct fr *f, const char *dir, const char *shown, int depth)
{
	char sub[TREE_PATH_MAX + 1], subshown[TREE_PATH_MAX + 1];
	struct tree_entry list, leaf;
	size_t dlen = strlen(dir);

	if (depth > 16 || fr_lookup(f, GCE_PREFIX, dir, dlen, "", &list) || list.kind != TREE_DIR)
		return 0;
	for (size_t i = 0; i < list.body_len;) {
		const char *p = list.body + i, *nl = memchr(p, '\n', list.body_len - i);
		size_t len = nl ? (size_t)(nl - p) : list.body_len - i;
		int rc = 0;

		i += len + 1;
		if (snprintf(sub, sizeof(sub), "%s%.*s", dir, (int)len, p) >= (int)sizeof(sub) ||
		    snprintf(subshown, sizeof(subshown), "%s%.*s", shown, (int)len, p) >= (int)sizeof(subshown))
			continue;
		if (len && p[len - 1] == '/') {
			rc = gce_text_walk(f, sub, subshown, depth + 1);
		} else if (!(len == 5 && !memcmp(p, "token", 5) && !strncmp(dir, "instance/service-accounts/", 26)) &&
			   !fr_lookup(f, GCE_PREFIX, sub, strlen(sub), "", &leaf)) {
			for (size_t k = 0; !rc && k <= leaf.body_len;) {
				const char *lp = leaf.body + k, *lnl = memchr(lp, '\n', leaf.body_len - k);
				size_t llen = lnl ? (size_t)(lnl - lp) : leaf.body_len - k;

				rc = outbuf_printf(&f->body, "%s%s %.*s", f->body.len ? "\n" : "", subshown, (int)llen,
						   lp);
				k += llen + 1;
			}
		}
		if (rc)
			return rc;
	}
	return 0;
}

static int gce_recursive(struct fr *f, const char *rel, size_t n, bool json)
{
	char dir[TREE_PATH_MAX + 1];
	struct tree_entry e;

	if (json) {
		if (fr_lookup(f, GCE_JSON_PREFIX, rel, n, n ? "/" FLAVOR_JSON_LEAF : FLAVOR_JSON_LEAF, &e))
			fr_not_found(f);
		else
			fr_serve(f, &e, CT_JSON);
		return 0;
	}
	if ((size_t)snprintf(dir, sizeof(dir), "%.*s%s", (int)n, rel, n ? "/" : "") >= sizeof(dir)) {
		fr_not_found(f);
		return 0;
	}
	if (gce_text_walk(f, dir, "", 0))
		return -ENOMEM;
	fr_reply(f, 200, CT_TEXT, f->body.data ? f->body.data : "", f->body.len);
	f->resp.last_modified = f->meta->last_modified;
	return 0;
}

/* GCE tags answers with an ETag that changes when the data does
 * (wait_for_change clients send it back as last_etag): the VM's update
 * generation and time. */
static void gce_add_etag(struct fr *f)
{
	char etag[24];

	snprintf(etag, sizeof(etag), "%08x%08x", f->meta->vm_generation, (uint32_t)f->meta->last_modified);
	fr_add_header(f, "ETag", etag);
}

static int gce_data(struct fr *f, const char *rel)
{
	char alt[FR_PARAM_CAP] = "", recursive[FR_PARAM_CAP] = "";
	bool json, rec;
	struct tree_entry e;
	size_t n;
	int rc;

	fr_param(f, "alt", alt, sizeof(alt));
	rec = fr_param(f, "recursive", recursive, sizeof(recursive)) && gce_true(recursive);
	if (*alt && strcmp(alt, "json") && strcmp(alt, "text")) {
		fr_reply_str(f, 400, CT_TEXT, "Invalid value for alt: must be json or text");
		return 0;
	}
	if (fr_find(f, GCE_PREFIX, rel, &n, &e)) {
		fr_not_found(f);
		return 0;
	}
	if ((rc = gce_token_route(f, rel, n)))
		return rc < 0 ? rc : 0;
	json = !strcmp(alt, "json") || (rec && !*alt);
	if (e.kind == TREE_DIR && rec)
		return gce_recursive(f, rel, n, json);
	if (e.kind == TREE_DIR && json)
		return gce_listing_json(f, &e);
	if (json) {
		rc = gce_leaf_json(f, rel, n);
		if (rc == -ENOENT)
			fr_not_found(f);
		return rc == -ENOMEM ? rc : 0;
	}
	fr_serve(f, &e, CT_TEXT);
	return 0;
}

/* GCE answers a request without "Metadata-Flavor: Google", or one that
 * went through a proxy (X-Forwarded-For), with 403. */
static int gce_route(struct fr *f)
{
	static const char v1[] = "/computeMetadata/v1";
	const struct http_request *req = f->req;
	const struct http_header_value *mf = &req->metadata_flavor;
	int rc;

	fr_add_header(f, "Metadata-Flavor", "Google");
	if (!mf->present || mf->count != 1 || strcmp(mf->value, "Google")) {
		fr_reply_str(f, 403, CT_TEXT, "Missing required header \"Metadata-Flavor\": \"Google\"");
		return 0;
	}
	if (req->forwarded_for.present) {
		fr_reply_str(f, 403, CT_TEXT, "Requests with \"X-Forwarded-For\" are not accepted");
		return 0;
	}
	if (!strcmp(f->path, "/")) {
		fr_reply_str(f, 200, CT_TEXT, "computeMetadata/");
		return 0;
	}
	if (!strcmp(f->path, "/computeMetadata") || !strcmp(f->path, "/computeMetadata/")) {
		fr_reply_str(f, 200, CT_TEXT, "v1/");
		return 0;
	}
	if (strncmp(f->path, v1, sizeof(v1) - 1) || (f->path[sizeof(v1) - 1] && f->path[sizeof(v1) - 1] != '/')) {
		fr_not_found(f);
		return 0;
	}
	rc = gce_data(f, f->path[sizeof(v1) - 1] ? f->path + sizeof(v1) : "");
	if (!rc && f->resp.status == 200)
		gce_add_etag(f);
	return rc;
}

/* --- Azure --- */

static const char *const azure_versions[] = {
	"2017-03-01", "2017-04-02", "2017-08-01", "2017-10-01", "2017-12-01", "2018-02-01", "2018-04-02",
	"2018-10-01", "2019-02-01", "2019-03-11", "2019-04-30", "2019-06-01", "2019-06-04", "2019-08-01",
	"2019-08-15", "2019-11-01", "2020-06-01", "2020-07-15", "2020-09-01", "2020-10-01", "2020-12-01",
	"2021-01-01", "2021-02-01", "2021-03-01", "2021-05-01", "2021-10-01", "2021-11-01", "2021-11-15",
	"2021-12-13", "2022-02-01", "2022-03-01", "2022-05-01", "2022-07-01", "2022-08-01", "2022-09-01",
	"2022-11-01", "2023-07-01",
};
#define AZURE_N_VERSIONS (sizeof(azure_versions) / sizeof(azure_versions[0]))

static void azure_error(struct fr *f, int status, const char *msg)
{
	outbuf_reset(&f->body);
	if (outbuf_printf(&f->body, "{\"error\":\"%s\"}", msg) == 0)
		fr_reply(f, status, CT_JSON, f->body.data, f->body.len);
	else
		fr_reply_str(f, status, CT_JSON, "{}");
}

static int azure_versions_doc(struct fr *f)
{
	int rc = outbuf_puts(&f->body, "{\"apiVersions\":[");

	for (size_t i = 0; !rc && i < AZURE_N_VERSIONS; i++)
		rc = outbuf_printf(&f->body, "%s\"%s\"", i ? "," : "", azure_versions[i]);
	if (!rc)
		rc = outbuf_puts(&f->body, "]}");
	if (!rc)
		fr_reply(f, 200, CT_JSON, f->body.data, f->body.len);
	return rc;
}

/* 0 when the request names a known api-version, else the 400 is set. */
static int azure_check_version(struct fr *f)
{
	char v[FR_PARAM_CAP];

	if (!fr_param(f, "api-version", v, sizeof(v))) {
		azure_error(f, 400, "Bad request. api-version was not specified in the request. "
				    "For more information refer to aka.ms/azureimds");
		return -EINVAL;
	}
	for (size_t i = 0; i < AZURE_N_VERSIONS; i++)
		if (!strcmp(v, azure_versions[i]))
			return 0;
	azure_error(f, 400, "Bad request. api-version is invalid or was not specified in the request. "
			    "For more information refer to aka.ms/azureimds");
	return -EINVAL;
}

/* The member of the instance document at `sub` ("compute/osProfile",
 * "network/interface/0"), rendered as the precompiled whole is. */
static int azure_subdoc(struct fr *f, const struct tree_entry *whole, const char *sub, size_t n)
{
	json_t *doc = json_loadb(whole->body, whole->body_len, 0, NULL), *v = doc;
	char *text = NULL;
	int rc = 0;

	for (size_t i = 0; v && i < n;) {
		size_t len = strcspn(sub + i, "/");
		char *end;

		if (len > n - i)
			len = n - i;
		if (json_is_object(v)) {
			v = json_object_getn(v, sub + i, len);
		} else {
			unsigned long idx = strtoul(sub + i, &end, 10);

			v = end == sub + i + len ? json_array_get(v, idx) : NULL;
		}
		i += len + 1;
	}
	if (v)
		text = json_dumps(v, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENCODE_ANY);
	if (!v) {
		fr_not_found(f);
	} else if (!text || outbuf_puts(&f->body, text)) {
		rc = -ENOMEM;
	} else {
		fr_reply(f, 200, CT_JSON, f->body.data, f->body.len);
		f->resp.last_modified = f->meta->last_modified;
	}
	free(text);
	json_decref(doc);
	return rc;
}

static int azure_data(struct fr *f, const char *rel)
{
	char format[FR_PARAM_CAP] = "json";
	struct tree_entry e;
	size_t n;

	fr_param(f, "format", format, sizeof(format));
	if (strcmp(format, "json") && strcmp(format, "text")) {
		azure_error(f, 400, "Bad request. The format must be json or text");
		return 0;
	}
	if (fr_find(f, AZURE_PREFIX, rel, &n, &e)) {
		fr_not_found(f);
		return 0;
	}
	if (!strcmp(format, "text")) {
		fr_serve(f, &e, CT_TEXT);
		return 0;
	}
	/* IMDS answers leaves only as text. */
	if (e.kind == TREE_LEAF) {
		azure_error(f, 400, "Bad request. Leaf nodes are served with format=text");
		return 0;
	}
	if (fr_lookup(f, AZURE_JSON_PREFIX, "instance/", 9, FLAVOR_JSON_LEAF, &e)) {
		fr_not_found(f);
		return 0;
	}
	if (n == strlen("instance")) {
		fr_serve(f, &e, CT_JSON);
		return 0;
	}
	return azure_subdoc(f, &e, rel + strlen("instance/"), n - strlen("instance/"));
}

/* Azure requires "Metadata: true" (400 without), refuses proxied requests
 * and needs a known api-version for everything but /metadata/versions. */
static int azure_route(struct fr *f)
{
	static const char inst[] = "/metadata/instance";
	const struct http_request *req = f->req;
	char after = f->path[sizeof(inst) - 1];

	if (!req->metadata.present || req->metadata.count != 1 || strcasecmp(req->metadata.value, "true")) {
		azure_error(f, 400, "Bad request. Required metadata header not specified");
		return 0;
	}
	if (req->forwarded_for.present) {
		azure_error(f, 400, "Bad request. Requests with X-Forwarded-For are not accepted");
		return 0;
	}
	if (!strcmp(f->path, "/metadata/versions"))
		return azure_versions_doc(f);
	if (strncmp(f->path, inst, sizeof(inst) - 1) || (after && after != '/')) {
		fr_not_found(f);
		return 0;
	}
	if (azure_check_version(f))
		return 0;
	return azure_data(f, f->path + strlen("/metadata/"));
}

/* --- dispatch --- */

static bool fr_first_segment(const char *path, const char *name)
{
	size_t n = strlen(name);

	return !strncmp(path + 1, name, n) && (path[n + 1] == '\0' || path[n + 1] == '/');
}

/* google-auth's root ping must not find GCE on a VM not served as GCE. */
static bool fr_has_gce(struct fr *f)
{
	struct tree_entry e;

	return fr_lookup(f, GCE_PREFIX, "", 0, "", &e) == 0;
}

/* Each flavor: the first path segment it owns and its rules. */
static const struct {
	const char *segment;
	int (*route)(struct fr *f);
} fr_flavors[] = {
	[FR_OPENSTACK] = { "openstack", os_route },
	[FR_GCE] = { "computeMetadata", gce_route },
	[FR_AZURE] = { "metadata", azure_route },
};

static int fr_classify(struct fr *f)
{
	const struct http_header_value *mf = &f->req->metadata_flavor;

	for (size_t i = 0; i < sizeof(fr_flavors) / sizeof(fr_flavors[0]); i++) {
		if (fr_first_segment(f->path, fr_flavors[i].segment)) {
			f->flavor = (enum fr_flavor)i;
			return 1;
		}
	}
	if (!strcmp(f->path, "/") && mf->present && !strcmp(mf->value, "Google") && fr_has_gce(f)) {
		f->flavor = FR_GCE;
		return 1;
	}
	return 0;
}

static int fr_dispatch(struct fr *f)
{
	enum http_method m = f->req->method;

	if (m == HTTP_M_GET || m == HTTP_M_HEAD)
		return fr_flavors[f->flavor].route(f);
	if (f->flavor == FR_GCE)
		fr_add_header(f, "Metadata-Flavor", "Google");
	fr_add_header(f, "Allow", "GET, HEAD");
	if (f->flavor == FR_AZURE)
		azure_error(f, 405, "Method not allowed");
	else
		fr_reply(f, 405, CT_TEXT, "", 0);
	return 0;
}

/* A cheap first look, so that EC2 requests (nearly all of them) pay for no
 * allocation or second normalisation: a flavor request names its flavor
 * somewhere in the target, or is GCE's "/" with Metadata-Flavor.  What
 * passes is classified exactly on the normalised path. */
static bool fr_may_be_flavor(const struct http_request *req)
{
	if (req->metadata_flavor.present)
		return true;
	for (size_t i = 0; i < sizeof(fr_flavors) / sizeof(fr_flavors[0]); i++)
		if (memmem(req->url, req->url_len, fr_flavors[i].segment, strlen(fr_flavors[i].segment)))
			return true;
	return false;
}

int flavor_route(const struct route_ctx *ctx, const struct http_request *req, struct outbuf *out,
		 struct route_result *res)
{
	struct fr *f;
	int rc;

	if (!ctx->tree || !fr_may_be_flavor(req))
		return 0;
	f = calloc(1, sizeof(*f));
	if (!f)
		return -ENOMEM;
	f->ctx = ctx;
	f->req = req;
	f->res = res;
	f->meta = tree_view_meta(ctx->tree);
	if (route_normalize_path(req->url, req->url_len, f->path, sizeof(f->path)) < 0 || !fr_classify(f)) {
		free(f);
		return 0;
	}
	fr_split_query(f);
	*res = (struct route_result){ 0 };
	/* GCE names its server; Nova and Azure IMDS answers are not specified
	 * (shared/spec), so they keep the shared layer's EC2ws. */
	if (f->flavor == FR_GCE)
		f->resp.server = GCE_SERVER;
	rc = fr_dispatch(f);
	if (!rc) {
		res->status = f->resp.status;
		/* Errors close, as the EC2 routes' do (router.c): a client
		 * that does not read an error body keeps no idle socket. */
		res->close = !req->keep_alive || f->resp.status >= 400;
		f->resp.close = res->close;
		f->resp.head = req->method == HTTP_M_HEAD;
		rc = http_write_response(out, &f->resp, ctx->now);
	}
	outbuf_free(&f->body);
	free(f);
	return rc ? -ENOMEM : 1;
}

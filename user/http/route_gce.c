/* route_gce.c: GCE's request rules (/computeMetadata/v1/...) over the
 * "gce/" and "gce-json/" subtrees (lib/flavor_layout.h): listings and
 * leaves as text, alt=json, ?recursive=true in both forms, and the
 * service accounts' access tokens, the operator's or made per request.  GCE's answers name
 * GCE's server and carry Metadata-Flavor.  Rules and sources:
 * docs/flavors.md. */
#include "http/route_gce.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "imds.h"
#include "lib/flavor_layout.h"

#define GCE_TOKEN_WINDOW 3600 /* a token is valid for the clock hour it was made in */
#define GCE_TOKEN_MIN_LEFT 300 /* closer to the end: hand out the next hour's */
/* GCE's metadata server never announces more than 3599 s (its tokens live
 * an hour and are handed out cached); clients and their tests hold it to
 * that.  So the next hour's token, handed out in the last 5 minutes and
 * valid for up to 3900 s more, is announced with 3599, as is an operator's
 * token that lives longer. */
#define GCE_TOKEN_MAX_LEFT 3599

/* Google's error page (shortened). */
static const char gce_404[] = "<!DOCTYPE html>\n<html lang=en>\n<title>Error 404 (Not Found)!!1</title>\n"
			      "<p><b>404.</b> <ins>That\xe2\x80\x99s an error.</ins>\n"
			      "<p>The requested URL was not found on this server.  "
			      "<ins>That\xe2\x80\x99s all we know.</ins>\n";

const struct fr_style gce_style = {
	.server = "Metadata Server for VM",
	.header_name = "Metadata-Flavor",
	.header_value = "Google",
	.not_found_ct = CT_HTML,
	.not_found = gce_404,
	.not_allowed_ct = CT_TEXT,
	.not_allowed = "",
	.no_token_key = FLAVOR_NO_TOKEN_PREFIX "gce",
	.forbidden_ct = CT_TEXT,
	.forbidden = "This VM requires IMDSv2 session tokens; its GCE metadata is not served to this request",
};

static bool gce_true(const char *v)
{
	return !strcasecmp(v, "true");
}

/* {"access_token": prefix+token, "expires_in": until `expiry`, at most
 * GCE_TOKEN_MAX_LEFT and never negative, "token_type": "Bearer"}. */
static int gce_token_reply(struct fr_call *f, const char *prefix, const char *token, size_t len, uint64_t expiry)
{
	uint64_t now = (uint64_t)f->c->ctx->now, left = expiry > now ? expiry - now : 0;
	int rc;

	if (left > GCE_TOKEN_MAX_LEFT)
		left = GCE_TOKEN_MAX_LEFT;
	rc = outbuf_printf(&f->body, "{\"access_token\":\"%s%.*s\",\"expires_in\":%llu,\"token_type\":\"Bearer\"}",
			   prefix, (int)len, token, (unsigned long long)left);
	if (!rc)
		fr_reply_body(f, CT_JSON, false);
	return rc;
}

/* The operator's token ("<expiry> <access token>", compile/gce.c), served
 * as given. */
static int gce_given_token(struct fr_call *f, const struct tree_entry *e)
{
	const char *sp = memchr(e->body, ' ', e->body_len);
	uint64_t expiry = 0;

	if (!sp)
		return -EINVAL;
	for (const char *p = e->body; p < sp; p++)
		expiry = expiry * 10 + (uint64_t)(*p - '0');
	return gce_token_reply(f, "", sp + 1, e->body_len - (size_t)(sp + 1 - e->body), expiry);
}

/* HMAC-SHA256(host key, "gce-token" || instance-id || e-mail || hour),
 * base64url: unforgeable without the host key, the same for every request
 * of the hour, different for every VM and account. */
static int gce_token(struct fr_call *f, const char *email)
{
	uint64_t now = (uint64_t)f->c->ctx->now, window = now / GCE_TOKEN_WINDOW;
	unsigned char mac[EVP_MAX_MD_SIZE], b64[EVP_MAX_MD_SIZE * 2];
	unsigned int mac_len = 0;
	struct outbuf msg = { 0 };
	uint64_t end;
	int rc, n;

	if ((window + 1) * GCE_TOKEN_WINDOW - now < GCE_TOKEN_MIN_LEFT)
		window++;
	end = (window + 1) * GCE_TOKEN_WINDOW;
	rc = outbuf_printf(&msg, "gce-token%c%.*s%c%s%c%llu", 0, (int)sizeof(f->c->meta->instance_id),
			   f->c->meta->instance_id, 0, email, 0, (unsigned long long)window);
	if (rc)
		return rc;
	if (!HMAC(EVP_sha256(), f->c->ctx->token_key, IMDS_TOKEN_KEY_LEN, (const unsigned char *)msg.data, msg.len, mac,
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
	return gce_token_reply(f, "ya29.imds.", (const char *)b64, (size_t)n, end);
}

/* "instance/service-accounts/<account>/token": the operator's token, else
 * one made from the account's e-mail. */
static int gce_token_route(struct fr_call *f, const char *rel, size_t n)
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
	if (fr_lookup(f, GCE_PREFIX, rel, (size_t)(slash - rel), "/token", &e))
		return 0;
	if (e.body_len) /* the operator's */
		return gce_given_token(f, &e) ? -ENOMEM : 1;
	if (fr_lookup(f, GCE_PREFIX, rel, (size_t)(slash - rel), "/email", &e) || e.body_len >= sizeof(key))
		return 0;
	memcpy(key, e.body, e.body_len);
	key[e.body_len] = '\0';
	return gce_token(f, key) ? -ENOMEM : 1;
}

/* A directory without ?recursive=true as alt=json: its entries as a JSON
 * array of strings, made in one pass over the listing. */
static int gce_listing_json(struct fr_call *f, const struct tree_entry *e)
{
	int rc = outbuf_append(&f->body, "[", 1);

	for (size_t i = 0; !rc && i < e->body_len;) {
		const char *p = e->body + i, *nl = memchr(p, '\n', e->body_len - i);
		size_t len = nl ? (size_t)(nl - p) : e->body_len - i;

		if (i)
			rc = outbuf_append(&f->body, ",", 1);
		if (!rc)
			rc = fr_json_string(&f->body, p, len);
		i += len + 1;
	}
	if (rc || outbuf_append(&f->body, "]", 1))
		return -ENOMEM;
	fr_reply_body(f, CT_JSON, false);
	return 0;
}

/* A leaf as alt=json: a string's text quoted; other values (numbers,
 * lists) have their JSON form precompiled as "<leaf>@json", so numbers
 * stay numbers and lists stay arrays.  Nothing is parsed per request. */
static int gce_leaf_json(struct fr_call *f, const char *rel, size_t n, const struct tree_entry *leaf)
{
	struct tree_entry e;

	if (fr_lookup(f, GCE_JSON_PREFIX, rel, n, FLAVOR_JSON_LEAF, &e) == 0) {
		fr_serve(f, &e, CT_JSON);
		return 0;
	}
	if (fr_json_string(&f->body, leaf->body, leaf->body_len))
		return -ENOMEM;
	fr_reply_body(f, CT_JSON, true);
	return 0;
}

/* Appends "shown+name line" for every line of every leaf below the
 * directory `dir` ("" or "a/b/"), in listing order: GCE's recursive
 * alt=text form.  Tokens are not data and are left out, as in the JSON. */
static int gce_text_walk(struct fr_call *f, const char *dir, const char *shown, int depth)
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

static int gce_recursive(struct fr_call *f, const char *rel, size_t n, bool json)
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
	fr_reply_body(f, CT_TEXT, true);
	return 0;
}

/* GCE tags answers with an ETag that changes when the data does
 * (wait_for_change clients send it back as last_etag): the VM's slot
 * generation and its tree's, which every update bumps (a time in seconds
 * did not change for two updates within one second). */
static void gce_add_etag(struct fr_call *f)
{
	char etag[24];

	snprintf(etag, sizeof(etag), "%08x%08x", f->c->meta->vm_generation, f->c->ctx->tree_generation);
	route_add_header(f->c, "ETag", etag);
}

static int gce_data(struct fr_call *f, const char *rel)
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
	if (json)
		return gce_leaf_json(f, rel, n, &e);
	fr_serve(f, &e, CT_TEXT);
	return 0;
}

/* GCE answers a request without "Metadata-Flavor: Google", or one that
 * went through a proxy (X-Forwarded-For), with 403. */
int gce_route(struct fr_call *f)
{
	static const char v1[] = "/computeMetadata/v1";
	const char *path = f->c->path;
	const struct http_request *req = f->c->req;
	const struct http_header_value *mf = &req->metadata_flavor;
	int rc;

	if (!mf->present || mf->count != 1 || strcmp(mf->value, "Google")) {
		fr_reply_str(f, 403, CT_TEXT, "Missing required header \"Metadata-Flavor\": \"Google\"");
		return 0;
	}
	if (req->forwarded_for.present) {
		fr_reply_str(f, 403, CT_TEXT, "Requests with \"X-Forwarded-For\" are not accepted");
		return 0;
	}
	if (!strcmp(path, "/")) {
		fr_reply_str(f, 200, CT_TEXT, "computeMetadata/");
		return 0;
	}
	if (!strcmp(path, "/computeMetadata") || !strcmp(path, "/computeMetadata/")) {
		fr_reply_str(f, 200, CT_TEXT, "v1/");
		return 0;
	}
	if (strncmp(path, v1, sizeof(v1) - 1) || (path[sizeof(v1) - 1] && path[sizeof(v1) - 1] != '/')) {
		fr_not_found(f);
		return 0;
	}
	rc = gce_data(f, path[sizeof(v1) - 1] ? path + sizeof(v1) : "");
	if (!rc && f->c->resp.status == 200)
		gce_add_etag(f);
	return rc;
}

/* google-auth pings "/" with Metadata-Flavor: that is GCE's, but only on
 * a VM served as GCE. */
bool gce_claims_root(const struct route_call *c)
{
	const struct http_header_value *mf = &c->req->metadata_flavor;
	struct tree_entry e;

	return mf->present && !strcmp(mf->value, "Google") &&
	       tree_lookup(c->ctx->tree, GCE_PREFIX, sizeof(GCE_PREFIX) - 1, &e) == 0;
}

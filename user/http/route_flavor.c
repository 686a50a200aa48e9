/* route_flavor.c: the pieces every flavor's routes share (route_flavor.h):
 * the per-request frame (query, the token rule of a tokens-required VM,
 * method rule, the flavor's server and header), replies, lookups below a
 * flavor's prefix and query parameters.
 * As with EC2's routes, every error answer closes the connection
 * (route_finish).  Only flavor requests come here, so plain snprintf is
 * fine: EC2's hot path never does. */
#include "http/route_flavor.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "imds.h"
#include "http/path.h"

void fr_reply(struct fr_call *f, int status, enum tree_ctype ct, const char *body, size_t len)
{
	route_reply(f->c, status, ct, body, len);
}

void fr_reply_str(struct fr_call *f, int status, enum tree_ctype ct, const char *body)
{
	fr_reply(f, status, ct, body, strlen(body));
}

void fr_not_found(struct fr_call *f)
{
	const struct fr_style *s = f->flavor->style;

	fr_reply_str(f, 404, s->not_found_ct, s->not_found);
}

void fr_reply_body(struct fr_call *f, enum tree_ctype ct, bool dated)
{
	fr_reply(f, 200, ct, f->body.data ? f->body.data : "", f->body.len);
	if (dated)
		f->c->resp.last_modified = f->c->meta->last_modified;
}

void fr_serve(struct fr_call *f, const struct tree_entry *e, enum tree_ctype ct)
{
	fr_reply(f, 200, ct, e->body, e->body_len);
	f->c->resp.last_modified = f->c->meta->last_modified;
}

int fr_lookup(struct fr_call *f, const char *prefix, const char *rel, size_t n, const char *suffix,
	      struct tree_entry *e)
{
	char key[FR_KEY_CAP];
	int len = snprintf(key, sizeof(key), "%s%.*s%s", prefix, (int)n, rel, suffix);

	if (len < 0 || (size_t)len >= sizeof(key))
		return -ENOENT;
	return tree_lookup(f->c->ctx->tree, key, (size_t)len, e);
}

int fr_find(struct fr_call *f, const char *prefix, const char *rel, size_t *n, struct tree_entry *e)
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

/* --- JSON --- */

/* jansson's two-character escapes; other control characters are written
 * "\u00XX" with upper-case hex digits, and nothing else is escaped. */
static const char fr_short_esc[] = {
	['\b'] = 'b', ['\t'] = 't', ['\n'] = 'n', ['\f'] = 'f', ['\r'] = 'r', ['"'] = '"', ['\\'] = '\\',
};

int fr_json_string(struct outbuf *out, const char *s, size_t len)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t run = 0;

	if (outbuf_reserve(out, len + 2) || outbuf_append(out, "\"", 1))
		return -ENOMEM;
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)s[i];
		char esc[6] = { '\\', 'u', '0', '0', hex[ch >> 4], hex[ch & 15] };
		size_t n = 6;

		if (ch >= 0x20 && ch != '"' && ch != '\\')
			continue;
		if (fr_short_esc[ch]) {
			esc[1] = fr_short_esc[ch];
			n = 2;
		}
		if (outbuf_append(out, s + run, i - run) || outbuf_append(out, esc, n))
			return -ENOMEM;
		run = i + 1;
	}
	return outbuf_append(out, s + run, len - run) || outbuf_append(out, "\"", 1) ? -ENOMEM : 0;
}

/* --- query --- */

/* Decodes one parameter's value p[0..len) into out. */
static void fr_param_value(const char *p, size_t len, char *out, size_t cap)
{
	size_t o = 0;

	for (size_t k = 0; k < len && o + 1 < cap; k++) {
		int hi, lo;

		if (p[k] == '%' && k + 2 < len && (hi = path_hex(p[k + 1])) >= 0 && (lo = path_hex(p[k + 2])) >= 0) {
			out[o++] = (char)(hi * 16 + lo);
			k += 2;
		} else {
			out[o++] = p[k] == '+' ? ' ' : p[k];
		}
	}
	out[o] = '\0';
}

int fr_param(const struct fr_call *f, const char *name, char *out, size_t cap)
{
	size_t nlen = strlen(name), i = 0;
	int found = 0;

	while (i < f->query_len) {
		const char *p = f->query + i;
		size_t len = strcspn(p, "&");

		if (len > f->query_len - i)
			len = f->query_len - i;
		if (len >= nlen && !memcmp(p, name, nlen) && (len == nlen || p[nlen] == '=')) {
			size_t skip = nlen + (len > nlen);

			fr_param_value(p + skip, len - skip, out, cap);
			found = 1;
		}
		i += len + 1;
	}
	return found;
}

static void fr_split_query(struct fr_call *f)
{
	const struct http_request *req = f->c->req;
	const char *url = req->url, *q = memchr(url, '?', req->url_len);

	f->query = "";
	f->query_len = 0;
	if (!q)
		return;
	f->query = q + 1;
	f->query_len = strcspn(f->query, "#");
	if (f->query_len > req->url_len - (size_t)(f->query - url))
		f->query_len = req->url_len - (size_t)(f->query - url);
}

/* --- the frame --- */

/* Every flavor serves GET and HEAD only. */
static void fr_not_allowed(struct fr_call *f)
{
	const struct fr_style *s = f->flavor->style;

	route_add_header(f->c, "Allow", "GET, HEAD");
	fr_reply_str(f, 405, s->not_allowed_ct, s->not_allowed);
}

/* The flavors have no token step, so for a VM whose EC2 metadata needs a
 * token they must not become the way around it (docs/flavors.md, "Tokens
 * and the hop limit"): refused unless the record opts the flavor in, and
 * refused through a proxy as a token PUT is.  0 when the request may be
 * routed, else -EACCES with the 403 set. */
static int fr_check_tokens(struct fr_call *f)
{
	const struct fr_style *s = f->flavor->style;
	struct tree_entry e;

	if (tree_lookup(f->c->ctx->tree, s->no_token_key, strlen(s->no_token_key), &e) == 0 && !route_proxied(f->c))
		return 0;
	fr_reply_str(f, 403, s->forbidden_ct, s->forbidden);
	return -EACCES;
}

/* An answer served to a tokens-required VM goes out as a token reply
 * does: under the VM's hop limit, closing the connection, so a client
 * further away than the operator allowed (a container behind a NAT in
 * the guest) gets nothing of it.  Only 200s carry the VM's data. */
static void fr_hop_limit(struct fr_call *f)
{
	if (f->c->resp.status != 200)
		return;
	f->c->res->token_reply = true;
	f->c->res->close = true;
}

int fr_route(struct route_call *c, const struct fr_flavor *flavor, struct outbuf *out)
{
	const struct fr_style *s = flavor->style;
	struct fr_call f = { .c = c, .flavor = flavor };
	enum http_method m = c->req->method;
	bool tokens = c->meta->http_tokens == IMDS_TOKENS_REQUIRED;
	int rc = 0;

	fr_split_query(&f);
	c->resp.server = s->server;
	if (s->header_name)
		route_add_header(c, s->header_name, s->header_value);
	if (tokens && fr_check_tokens(&f) < 0) {
		/* refused: the 403 is set */
	} else if (m == HTTP_M_GET || m == HTTP_M_HEAD) {
		rc = flavor->route(&f);
	} else {
		fr_not_allowed(&f);
	}
	if (!rc && tokens)
		fr_hop_limit(&f);
	if (!rc)
		rc = route_finish(c, out);
	outbuf_free(&f.body);
	return rc ? -ENOMEM : 0;
}

/* route_call.c: building and finishing a reply (route_call.h), one copy
 * for EC2's routes and every flavor's.  Headers are added by memcpy: this
 * runs on every request (docs/design.md, "Responses are assembled with
 * memcpy"). */
#include "http/route_call.h"

#include <string.h>

void route_reply(struct route_call *c, int status, enum tree_ctype ct, const char *body, size_t len)
{
	c->resp.status = status;
	c->resp.ctype = ct;
	c->resp.body = body;
	c->resp.body_len = len;
}

void route_empty(struct route_call *c, int status)
{
	route_reply(c, status, CT_TEXT, "", 0);
}

void route_add_header_n(struct route_call *c, const char *name, const char *value, size_t value_len)
{
	size_t used = strlen(c->extra), name_len = strlen(name);
	char *p = c->extra + used;

	if (name_len + value_len + 4 >= sizeof(c->extra) - used)
		return;
	memcpy(p, name, name_len);
	p += name_len;
	*p++ = ':';
	*p++ = ' ';
	memcpy(p, value, value_len);
	p += value_len;
	memcpy(p, "\r\n", 3);
	c->resp.extra_headers = c->extra;
}

void route_add_header(struct route_call *c, const char *name, const char *value)
{
	route_add_header_n(c, name, value, strlen(value));
}

bool route_proxied(const struct route_call *c)
{
	const struct http_request *req = c->req;

	if (req->forwarded_for.present)
		return true;
	return !c->meta->allow_proxied && (req->forwarded.present || req->via.present);
}

/* Error replies (4xx, 5xx) close, as EC2's do: the AWS JS SDK never reads
 * an error body, so a kept-alive socket would keep its Node process alive
 * until the idle timeout (clients-findings, H8).  A route may ask to close
 * too (res->close: token replies, 500s). */
int route_finish(struct route_call *c, struct outbuf *out)
{
	const struct http_request *req = c->req;
	struct route_result *res = c->res;

	res->status = c->resp.status;
	res->close = res->close || !req->keep_alive || c->resp.status >= 400;
	c->resp.close = res->close;
	c->resp.head = req->method == HTTP_M_HEAD;
	return http_write_response(out, &c->resp, c->ctx->now);
}

/* route_harness.h: one request through the real HTTP parser (http.c) into
 * route_request over a compiled tree, for the router and flavor unit
 * tests.  Include after cmocka.h. */
#ifndef IMDS_TEST_ROUTE_HARNESS_H
#define IMDS_TEST_ROUTE_HARNESS_H
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "http/http.h"
#include "lib/outbuf.h"
#include "http/router.h"
#include "lib/tree.h"

struct vm_tree {
	void *img;
	size_t len;
	struct tree_view view;
};

/* One routed request and its reply. */
struct reply {
	struct outbuf out;
	struct route_result res;
	int n;	    /* requests routed */
	int status; /* from the status line */
	const char *body;
	size_t body_len;
};

struct route_run {
	struct route_ctx ctx;
	struct reply *r;
};

static int harness_on_request(void *arg, const struct http_request *req)
{
	struct route_run *run = arg;

	run->r->n++;
	return route_request(&run->ctx, req, &run->r->out, &run->r->res);
}

/* Parses `raw` (one request) and routes it against `vm` with `key` at
 * time `now`; the reply's status line must agree with the result. */
static void route_with_key(const struct vm_tree *vm, const uint8_t *key, time_t now, const char *raw,
			   struct reply *r)
{
	struct http_conn *c = malloc(sizeof(*c));
	struct route_run run = { .ctx = { .tree = &vm->view, .token_key = key, .now = now }, .r = r };
	char *sep;

	assert_non_null(c);
	memset(r, 0, sizeof(*r));
	http_conn_init(c);
	assert_int_equal(http_feed(c, raw, strlen(raw), harness_on_request, &run), 0);
	assert_int_equal(r->n, 1);
	free(c);
	assert_non_null(r->out.data);
	sep = strstr(r->out.data, "\r\n\r\n");
	assert_non_null(sep);
	r->body = sep + 4;
	r->body_len = r->out.len - (size_t)(r->body - r->out.data);
	r->status = atoi(r->out.data + 9);
	assert_int_equal(r->status, r->res.status);
}

static void reply_free(struct reply *r)
{
	outbuf_free(&r->out);
}

/* Value of header `name` (exact spelling) in the reply, copied to buf;
 * NULL if absent. */
static const char *header(const struct reply *r, const char *name, char *buf, size_t cap)
{
	char pat[128];
	const char *p, *end;

	snprintf(pat, sizeof(pat), "\r\n%s: ", name);
	p = strstr(r->out.data, pat);
	if (!p || p > r->body)
		return NULL;
	p += strlen(pat);
	end = strstr(p, "\r\n");
	snprintf(buf, cap, "%.*s", (int)(end - p), p);
	return buf;
}

static void expect_header(const struct reply *r, const char *name, const char *value)
{
	char buf[256];

	if (!header(r, name, buf, sizeof(buf)))
		fail_msg("header %s missing in:\n%s", name, r->out.data);
	assert_string_equal(buf, value);
}

#endif

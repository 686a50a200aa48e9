/* test_router.c: the EC2 API rules (user/http/route_ec2.c, through the
 * front, router.c) and the path normaliser (path.c), byte by byte.
 * Requests go through the real parser (http.c) into route_request over a
 * real tree built with tree_builder. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "http/http.h"
#include "imds.h"
#include "http/path.h"
#include "http/router.h"
#include "route_harness.h"
#include "http/token.h"
#include "lib/tree.h"

#define NOW 1700000000
#define LAST_MODIFIED 1699990000
#define IID "i-0123456789abcdef0"
#define DATE_OF_NOW "Date: Tue, 14 Nov 2023 22:13:20 GMT\r\n"

static const uint8_t key[IMDS_TOKEN_KEY_LEN] = { 42, 1, 2, 3 };
static const uint8_t other_key[IMDS_TOKEN_KEY_LEN] = { 43, 1, 2, 3 };

static struct vm_tree optional_vm, required_vm, proxied_vm;

static void build_vm(struct vm_tree *vm, uint8_t tokens, uint8_t allow_proxied)
{
	struct tree_builder *b = tree_builder_new();
	struct tree_meta meta = { .slot = 1, .last_modified = LAST_MODIFIED, .http_tokens = tokens, .hop_limit = 1,
				  .allow_proxied = allow_proxied };
	static const char doc[] = "{\n  \"instanceId\" : \"" IID "\"\n}";

	assert_non_null(b);
	snprintf(meta.instance_id, sizeof(meta.instance_id), "%s", IID);
	assert_int_equal(tree_add_leaf(b, "ec2/meta-data/instance-id", IID, strlen(IID), CT_TEXT), 0);
	assert_int_equal(tree_add_leaf(b, "ec2/meta-data/placement/availability-zone", "us-east-1a", 10, CT_TEXT), 0);
	assert_int_equal(tree_add_leaf(b, "ec2/dynamic/instance-identity/document", doc, strlen(doc), CT_TEXT), 0);
	assert_int_equal(tree_add_leaf(b, "ec2/dynamic/instance-identity/signature", "c2ln", 4, CT_TEXT), 0);
	assert_int_equal(tree_add_leaf(b, "ec2/user-data", "#cloud-config\n", 14, CT_OCTET), 0);
	/* EC2's version root lists "dynamic" without a slash (§1.5). */
	assert_int_equal(tree_set_listing(b, "ec2/", "dynamic\nmeta-data\nuser-data"), 0);
	assert_int_equal(tree_build(b, &meta, &vm->img, &vm->len), 0);
	assert_int_equal(tree_view_init(&vm->view, vm->img, vm->len), 0);
	tree_builder_free(b);
}

static int setup(void **state)
{
	(void)state;
	build_vm(&optional_vm, IMDS_TOKENS_OPTIONAL, 0);
	build_vm(&required_vm, IMDS_TOKENS_REQUIRED, 0);
	build_vm(&proxied_vm, IMDS_TOKENS_OPTIONAL, 1);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	free(optional_vm.img);
	free(required_vm.img);
	free(proxied_vm.img);
	return 0;
}

static void route_at(const struct vm_tree *vm, time_t now, const char *raw, struct reply *r)
{
	route_with_key(vm, key, now, raw, r);
}

static void route(const char *raw, struct reply *r)
{
	route_at(&optional_vm, NOW, raw, r);
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

static void expect_status_line(const struct reply *r, const char *line)
{
	size_t n = strlen(line);

	if (strncmp(r->out.data, line, n) != 0 || strncmp(r->out.data + n, "\r\n", 2) != 0)
		fail_msg("status line: want \"%s\", got \"%.40s\"", line, r->out.data);
}

static void expect_header(const struct reply *r, const char *name, const char *value)
{
	char buf[256];

	if (!header(r, name, buf, sizeof(buf)))
		fail_msg("header %s missing in:\n%s", name, r->out.data);
	assert_string_equal(buf, value);
}

static void expect_no_header(const struct reply *r, const char *name)
{
	char buf[256];

	assert_null(header(r, name, buf, sizeof(buf)));
}

static void expect_body(const struct reply *r, const char *body)
{
	char len[32];

	snprintf(len, sizeof(len), "%zu", strlen(body));
	assert_int_equal(r->body_len, strlen(body));
	assert_memory_equal(r->body, body, strlen(body));
	expect_header(r, "Content-Length", len);
}

/* Full reply of a GET for `path` with optional extra request headers. */
static void get(const char *path, const char *headers, struct reply *r)
{
	char raw[1024];

	snprintf(raw, sizeof(raw), "GET %s HTTP/1.1\r\nHost: 169.254.169.254\r\n%s\r\n", path, headers ? headers : "");
	route(raw, r);
}

static void put_token(const char *ttl_header, struct reply *r)
{
	char raw[512];

	snprintf(raw, sizeof(raw), "PUT /latest/api/token HTTP/1.1\r\nHost: 169.254.169.254\r\n%s\r\n", ttl_header);
	route(raw, r);
}

static void mint(const uint8_t *k, const char *iid, uint64_t expiry, char out[TOKEN_TEXT_LEN + 1])
{
	assert_int_equal(token_mint(k, iid, expiry, out), 0);
}

/* --- GET / --- */

static void test_root_versions(void **state)
{
	struct reply r;

	(void)state;
	get("/", NULL, &r);
	expect_status_line(&r, "HTTP/1.1 200 OK");
	expect_header(&r, "Content-Type", "text/plain");
	assert_int_equal(r.res.status, 200);
	/* §1.5, the 2024 list with 2022-07-09; "latest" last, no newline. */
	expect_body(&r, "1.0\n2007-01-19\n2007-03-01\n2007-08-29\n2007-10-10\n2007-12-15\n2008-02-01\n2008-09-01\n"
			"2009-04-04\n2011-01-01\n2011-05-01\n2012-01-12\n2014-02-25\n2014-11-05\n2015-10-20\n"
			"2016-04-19\n2016-06-30\n2016-09-02\n2018-03-28\n2018-08-17\n2018-09-24\n2019-10-01\n"
			"2020-10-27\n2021-01-03\n2021-03-23\n2021-07-15\n2022-07-09\n2022-09-24\n2024-04-11\nlatest");
	/* Not per VM, not dated by the VM's data. */
	expect_no_header(&r, "Last-Modified");
	reply_free(&r);
}

/* --- PUT /latest/api/token --- */

static void test_token_put_ok(void **state)
{
	char tok[TOKEN_TEXT_LEN + 1];
	uint64_t expiry;
	struct reply r;
	const char *head;

	(void)state;
	put_token("X-aws-ec2-metadata-token-ttl-seconds: 21600\r\n", &r);
	head = "HTTP/1.1 200 OK\r\n"
	       "X-Aws-Ec2-Metadata-Token-Ttl-Seconds: 21600\r\n"
	       "Content-Type: text/plain\r\n"
	       "Accept-Ranges: none\r\n"
	       "Content-Length: 56\r\n" DATE_OF_NOW "Server: EC2ws\r\n"
	       "Connection: close\r\n"
	       "\r\n";
	assert_int_equal(r.out.len, strlen(head) + 56);
	assert_memory_equal(r.out.data, head, strlen(head));
	assert_int_equal(r.res.status, 200);
	assert_true(r.res.token_reply);
	assert_true(r.res.close);
	memcpy(tok, r.body, 56);
	tok[56] = '\0';
	assert_int_equal(token_verify(key, IID, tok, 56, NOW, &expiry), 0);
	assert_int_equal(expiry, NOW + 21600);
	reply_free(&r);
}

static void test_token_ttl_rules(void **state)
{
	static const struct {
		const char *headers;
		int status;
	} cases[] = {
		{ "X-aws-ec2-metadata-token-ttl-seconds: 1\r\n", 200 },
		{ "X-aws-ec2-metadata-token-ttl-seconds: 21600\r\n", 200 },
		{ "X-aws-ec2-metadata-token-ttl-seconds: 900\r\n", 200 },
		{ "x-aws-ec2-metadata-token-ttl-seconds: 900\r\n", 200 },
		{ "X-Aws-Ec2-Metadata-Token-Ttl-Seconds: 900\r\n", 200 },
		{ "X-aws-ec2-metadata-token-ttl-seconds: 0\r\n", 400 },
		{ "X-aws-ec2-metadata-token-ttl-seconds: 21601\r\n", 400 },
		{ "X-aws-ec2-metadata-token-ttl-seconds: 99999999999999999999\r\n", 400 },
		{ "X-aws-ec2-metadata-token-ttl-seconds: abc\r\n", 400 },
		{ "X-aws-ec2-metadata-token-ttl-seconds: -5\r\n", 400 },
		{ "X-aws-ec2-metadata-token-ttl-seconds: +5\r\n", 400 },
		{ "X-aws-ec2-metadata-token-ttl-seconds: 5 5\r\n", 400 },
		{ "X-aws-ec2-metadata-token-ttl-seconds: 1e3\r\n", 400 },
		{ "X-aws-ec2-metadata-token-ttl-seconds:\r\n", 400 },
		{ "", 400 },
		{ "X-aws-ec2-metadata-token-ttl-seconds: 60\r\nX-aws-ec2-metadata-token-ttl-seconds: 60\r\n", 400 },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct reply r;

		put_token(cases[i].headers, &r);
		if (r.res.status != cases[i].status)
			fail_msg("case %zu (%s): status %d, want %d", i, cases[i].headers, r.res.status, cases[i].status);
		if (cases[i].status == 400) {
			expect_status_line(&r, "HTTP/1.1 400 Bad Request");
			expect_body(&r, "");
			expect_no_header(&r, "X-Aws-Ec2-Metadata-Token-Ttl-Seconds");
			assert_false(r.res.token_reply);
		} else {
			assert_int_equal(r.body_len, TOKEN_TEXT_LEN);
		}
		reply_free(&r);
	}
}

/* The granted TTL is echoed (aws-sdk-go needs it). */
static void test_token_ttl_echo(void **state)
{
	struct reply r;

	(void)state;
	put_token("x-aws-ec2-metadata-token-ttl-seconds: 900\r\n", &r);
	assert_memory_equal(r.out.data, "HTTP/1.1 200 OK\r\nX-Aws-Ec2-Metadata-Token-Ttl-Seconds: 900\r\n", 59);
	reply_free(&r);
}

static void test_token_put_forwarded(void **state)
{
	struct reply r;

	(void)state;
	put_token("X-aws-ec2-metadata-token-ttl-seconds: 21600\r\nX-Forwarded-For: 10.1.1.1\r\n", &r);
	expect_status_line(&r, "HTTP/1.1 403 Forbidden");
	expect_body(&r, "");
	assert_false(r.res.token_reply);
	reply_free(&r);
}

/* Forwarded (RFC 7239) and Via announce a proxy as X-Forwarded-For does:
 * 403 unless the VM allows proxied token requests; X-Forwarded-For stays
 * refused even then. */
static void test_token_put_proxy_headers(void **state)
{
	static const char *const proxied[] = { "Forwarded: for=10.1.1.1\r\n", "Via: 1.1 squid\r\n",
					       "forwarded: for=\"[2001:db8::1]\"\r\n", "VIA: 1.0 a, 1.1 b\r\n" };
	struct reply r;
	char raw[512];

	(void)state;
	for (size_t i = 0; i < sizeof(proxied) / sizeof(proxied[0]); i++) {
		snprintf(raw, sizeof(raw), "PUT /latest/api/token HTTP/1.1\r\nHost: 169.254.169.254\r\n"
			 "X-aws-ec2-metadata-token-ttl-seconds: 21600\r\n%s\r\n", proxied[i]);
		route(raw, &r);
		expect_status_line(&r, "HTTP/1.1 403 Forbidden");
		expect_body(&r, "");
		assert_false(r.res.token_reply);
		reply_free(&r);
		route_at(&proxied_vm, NOW, raw, &r);
		expect_status_line(&r, "HTTP/1.1 200 OK");
		assert_int_equal(r.body_len, TOKEN_TEXT_LEN);
		assert_true(r.res.token_reply);
		reply_free(&r);
	}
	route_at(&proxied_vm, NOW,
		 "PUT /latest/api/token HTTP/1.1\r\nHost: 169.254.169.254\r\nX-aws-ec2-metadata-token-ttl-seconds: 60\r\n"
		 "X-Forwarded-For: 10.1.1.1\r\n\r\n",
		 &r);
	expect_status_line(&r, "HTTP/1.1 403 Forbidden");
	reply_free(&r);
	/* Plain GETs with those headers are served (only token requests are
	 * about proxies handing out tokens). */
	route("GET /latest/meta-data/instance-id HTTP/1.1\r\nHost: x\r\nVia: 1.1 squid\r\nForwarded: for=a\r\n\r\n", &r);
	expect_status_line(&r, "HTTP/1.1 200 OK");
	reply_free(&r);
}

/* curl -X PUT: no Content-Length at all. */
static void test_token_put_curl(void **state)
{
	struct reply r;

	(void)state;
	route("PUT /latest/api/token HTTP/1.1\r\nHost: 169.254.169.254\r\nUser-Agent: curl/7.88.1\r\nAccept: */*\r\n"
	      "X-aws-ec2-metadata-token-ttl-seconds: 21600\r\n\r\n",
	      &r);
	expect_status_line(&r, "HTTP/1.1 200 OK");
	assert_int_equal(r.body_len, 56);
	reply_free(&r);
}

static void test_token_path_methods(void **state)
{
	static const char *const methods[] = { "GET", "HEAD", "POST", "DELETE", "PATCH" };
	char raw[256];
	struct reply r;

	(void)state;
	for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
		snprintf(raw, sizeof(raw), "%s /latest/api/token HTTP/1.1\r\nContent-Length: 0\r\n\r\n", methods[i]);
		route(raw, &r);
		expect_status_line(&r, "HTTP/1.1 405 Not Allowed");
		expect_header(&r, "Allow", "OPTIONS, PUT");
		expect_header(&r, "Content-Length", "0");
		expect_header(&r, "Content-Type", "text/plain");
		assert_int_equal(r.body_len, 0);
		reply_free(&r);
	}
	route("OPTIONS /latest/api/token HTTP/1.1\r\n\r\n", &r);
	expect_status_line(&r, "HTTP/1.1 200 OK");
	expect_header(&r, "Allow", "OPTIONS, PUT");
	expect_body(&r, "");
	assert_false(r.res.token_reply);
	reply_free(&r);
}

static void test_dated_token_path(void **state)
{
	struct reply r;

	(void)state;
	route("PUT /2021-03-23/api/token HTTP/1.1\r\nX-aws-ec2-metadata-token-ttl-seconds: 21600\r\n\r\n", &r);
	expect_status_line(&r, "HTTP/1.1 403 Forbidden");
	assert_false(r.res.token_reply);
	reply_free(&r);
	get("/2021-03-23/api/token", NULL, &r);
	expect_status_line(&r, "HTTP/1.1 404 Not Found");
	reply_free(&r);
}

/* --- token checks on GET --- */

static void route_with_token(const struct vm_tree *vm, time_t now, const char *path, const char *token,
			     const char *more, struct reply *r)
{
	char raw[1024];

	snprintf(raw, sizeof(raw), "GET %s HTTP/1.1\r\nHost: 169.254.169.254\r\nX-aws-ec2-metadata-token: %s\r\n%s\r\n",
		 path, token, more ? more : "");
	route_at(vm, now, raw, r);
}

static void test_valid_token_remaining_ttl(void **state)
{
	char tok[TOKEN_TEXT_LEN + 1];
	struct reply r;

	(void)state;
	mint(key, IID, NOW + 21600, tok);
	route_with_token(&optional_vm, NOW + 25, "/latest/meta-data/instance-id", tok, NULL, &r);
	expect_status_line(&r, "HTTP/1.1 200 OK");
	expect_header(&r, "X-Aws-Ec2-Metadata-Token-Ttl-Seconds", "21575");
	expect_body(&r, IID);
	/* The TTL header comes first, right after the status line. */
	assert_memory_equal(r.out.data, "HTTP/1.1 200 OK\r\nX-Aws-Ec2-Metadata-Token-Ttl-Seconds: 21575\r\n", 61);
	reply_free(&r);
}

static void expect_401(const struct reply *r)
{
	expect_status_line(r, "HTTP/1.1 401 Unauthorized");
	expect_header(r, "Content-Type", "text/html");
	expect_header(r, "Content-Length", "343");
	assert_int_equal(r->body_len, 343);
	assert_memory_equal(r->body, "<?xml version=\"1.0\" encoding=\"iso-8859-1\"?>\n", 44);
	assert_non_null(memmem(r->body, r->body_len, "<title>401 - Unauthorized</title>", 33));
	assert_non_null(memmem(r->body, r->body_len, "<h1>401 - Unauthorized</h1>", 27));
	assert_int_equal(r->res.status, 401);
}

static void test_bad_tokens(void **state)
{
	char tok[TOKEN_TEXT_LEN + 1], long_tok[400];
	struct reply r;

	(void)state;
	/* Another VM's token. */
	mint(key, "i-ffffffffffffffff0", NOW + 60, tok);
	route_with_token(&optional_vm, NOW, "/latest/meta-data/instance-id", tok, NULL, &r);
	expect_401(&r);
	reply_free(&r);
	/* Another host key. */
	mint(other_key, IID, NOW + 60, tok);
	route_with_token(&optional_vm, NOW, "/latest/meta-data/instance-id", tok, NULL, &r);
	expect_401(&r);
	reply_free(&r);
	/* Expired: routed with the clock moved past the expiry. */
	mint(key, IID, NOW + 60, tok);
	route_with_token(&optional_vm, NOW + 59, "/latest/meta-data/instance-id", tok, NULL, &r);
	expect_status_line(&r, "HTTP/1.1 200 OK");
	expect_header(&r, "X-Aws-Ec2-Metadata-Token-Ttl-Seconds", "1");
	reply_free(&r);
	route_with_token(&optional_vm, NOW + 60, "/latest/meta-data/instance-id", tok, NULL, &r);
	expect_401(&r);
	reply_free(&r);
	/* Garbage, empty and oversized tokens. */
	route_with_token(&optional_vm, NOW, "/latest/meta-data/instance-id", "not-a-token", NULL, &r);
	expect_401(&r);
	reply_free(&r);
	route_with_token(&optional_vm, NOW, "/latest/meta-data/instance-id", "", NULL, &r);
	expect_401(&r);
	reply_free(&r);
	memset(long_tok, 'A', sizeof(long_tok) - 1);
	long_tok[sizeof(long_tok) - 1] = '\0';
	route_with_token(&optional_vm, NOW, "/latest/meta-data/instance-id", long_tok, NULL, &r);
	expect_401(&r);
	reply_free(&r);
}

/* A valid token twice is still refused: one token per request. */
static void test_repeated_token_header(void **state)
{
	char tok[TOKEN_TEXT_LEN + 1], more[128];
	struct reply r;

	(void)state;
	mint(key, IID, NOW + 60, tok);
	snprintf(more, sizeof(more), "X-aws-ec2-metadata-token: %s\r\n", tok);
	route_with_token(&optional_vm, NOW, "/latest/meta-data/instance-id", tok, more, &r);
	expect_401(&r);
	reply_free(&r);
}

static void test_token_get_forwarded(void **state)
{
	char tok[TOKEN_TEXT_LEN + 1];
	struct reply r;

	(void)state;
	mint(key, IID, NOW + 60, tok);
	route_with_token(&optional_vm, NOW, "/latest/meta-data/instance-id", tok, "X-Forwarded-For: 10.0.0.9\r\n", &r);
	expect_status_line(&r, "HTTP/1.1 403 Forbidden");
	expect_body(&r, "");
	reply_free(&r);
	/* Without a token (IMDSv1) the header is not looked at. */
	get("/latest/meta-data/instance-id", "X-Forwarded-For: 10.0.0.9\r\n", &r);
	expect_status_line(&r, "HTTP/1.1 200 OK");
	reply_free(&r);
}

static void test_required_mode(void **state)
{
	char tok[TOKEN_TEXT_LEN + 1];
	struct reply r;

	(void)state;
	route_at(&required_vm, NOW, "GET /latest/meta-data/instance-id HTTP/1.1\r\n\r\n", &r);
	expect_401(&r);
	reply_free(&r);
	route_at(&required_vm, NOW, "GET / HTTP/1.1\r\n\r\n", &r);
	expect_401(&r);
	reply_free(&r);
	/* Unknown paths too: no probing without a token. */
	route_at(&required_vm, NOW, "GET /nope HTTP/1.1\r\n\r\n", &r);
	expect_401(&r);
	reply_free(&r);
	/* The token PUT itself needs no token. */
	route_at(&required_vm, NOW, "PUT /latest/api/token HTTP/1.1\r\nX-aws-ec2-metadata-token-ttl-seconds: 60\r\n\r\n",
		 &r);
	expect_status_line(&r, "HTTP/1.1 200 OK");
	memcpy(tok, r.body, 56);
	tok[56] = '\0';
	reply_free(&r);
	route_with_token(&required_vm, NOW + 10, "/latest/meta-data/instance-id", tok, NULL, &r);
	expect_status_line(&r, "HTTP/1.1 200 OK");
	expect_header(&r, "X-Aws-Ec2-Metadata-Token-Ttl-Seconds", "50");
	expect_body(&r, IID);
	reply_free(&r);
}

/* --- versions and paths --- */

static void test_dated_versions(void **state)
{
	static const char *const ok[] = { "2009-04-04", "2016-09-02", "2018-09-24", "2021-03-23", "1.0", "latest",
					  "2024-04-11", "2022-07-09" };
	/* Prefixes and extensions of listed versions are not versions. */
	static const char *const bad[] = { "2019-01-01", "2021-03-24", "foo",	  "LATEST", "2009-04-04x", "meta-data",
					   "latestx",	 "atest",      "1.0x", "1",	    "2024-04-1",   "2024-04-111" };
	char path[128];
	struct reply r;

	(void)state;
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		snprintf(path, sizeof(path), "/%s/meta-data/instance-id", ok[i]);
		get(path, NULL, &r);
		expect_status_line(&r, "HTTP/1.1 200 OK");
		expect_body(&r, IID);
		reply_free(&r);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(path, sizeof(path), "/%s/meta-data/instance-id", bad[i]);
		get(path, NULL, &r);
		expect_status_line(&r, "HTTP/1.1 404 Not Found");
		reply_free(&r);
	}
}

static void test_version_root(void **state)
{
	static const char *const paths[] = { "/latest", "/latest/", "/2009-04-04/", "//latest//", "/latest/." };
	struct reply r;

	(void)state;
	for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
		get(paths[i], NULL, &r);
		expect_status_line(&r, "HTTP/1.1 200 OK");
		expect_body(&r, "dynamic\nmeta-data\nuser-data");
		reply_free(&r);
	}
}

static void test_listing_and_slashes(void **state)
{
	struct reply r;

	(void)state;
	/* @aws-sdk/ec2-metadata-service sends a leading "//". */
	get("//latest/meta-data/", NULL, &r);
	expect_status_line(&r, "HTTP/1.1 200 OK");
	expect_body(&r, "instance-id\nplacement/");
	reply_free(&r);
	/* ec2-metadata sends "/latest//meta-data/...". */
	get("/latest//meta-data/instance-id", NULL, &r);
	expect_body(&r, IID);
	reply_free(&r);
	/* botocore: a leaf with a trailing slash. */
	get("/latest/meta-data/placement/availability-zone/", NULL, &r);
	expect_status_line(&r, "HTTP/1.1 200 OK");
	expect_body(&r, "us-east-1a");
	reply_free(&r);
	/* cloud-init: a directory without its slash. */
	get("/2021-03-23/dynamic/instance-identity", NULL, &r);
	expect_status_line(&r, "HTTP/1.1 200 OK");
	expect_body(&r, "document\nsignature");
	reply_free(&r);
	/* Query strings and dot segments. */
	get("/latest/meta-data/./placement/../instance-id?x=1", NULL, &r);
	expect_body(&r, IID);
	reply_free(&r);
	get("/../../latest/meta-data/instance-id", NULL, &r);
	expect_body(&r, IID);
	reply_free(&r);
}

static void test_data_reply_headers(void **state)
{
	struct reply r;

	(void)state;
	get("/latest/meta-data/instance-id", NULL, &r);
	assert_string_equal(r.out.data, "HTTP/1.1 200 OK\r\n"
					"Content-Type: text/plain\r\n"
					"Accept-Ranges: none\r\n"
					"Last-Modified: Tue, 14 Nov 2023 19:26:40 GMT\r\n"
					"Content-Length: 19\r\n" DATE_OF_NOW "Server: EC2ws\r\n"
					"Connection: keep-alive\r\n"
					"\r\n" IID);
	assert_false(r.res.close);
	assert_false(r.res.token_reply);
	reply_free(&r);
	get("/latest/user-data", NULL, &r);
	expect_header(&r, "Content-Type", "application/octet-stream");
	expect_body(&r, "#cloud-config\n");
	reply_free(&r);
}

static void test_not_found(void **state)
{
	static const char *const paths[] = { "/latest/meta-data/nope", "/latest/meta-data/instance-id/x",
					     "/nope", "/latest/api/token/", "/latest/meta-data/placement/x/" };
	struct reply r;

	(void)state;
	for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
		get(paths[i], NULL, &r);
		expect_status_line(&r, "HTTP/1.1 404 Not Found");
		expect_header(&r, "Content-Type", "text/html");
		assert_int_equal(r.body_len, 337);
		expect_header(&r, "Content-Length", "337");
		assert_memory_equal(r.body, "<?xml version=\"1.0\" encoding=\"iso-8859-1\"?>\n", 44);
		assert_non_null(memmem(r.body, r.body_len, "<title>404 - Not Found</title>", 30));
		assert_non_null(memmem(r.body, r.body_len, "<h1>404 - Not Found</h1>", 24));
		expect_no_header(&r, "Accept-Ranges");
		expect_no_header(&r, "Last-Modified");
		reply_free(&r);
	}
}

static void test_head(void **state)
{
	struct reply r;

	(void)state;
	route("HEAD /latest/meta-data/instance-id HTTP/1.1\r\n\r\n", &r);
	expect_status_line(&r, "HTTP/1.1 200 OK");
	expect_header(&r, "Content-Length", "19");
	assert_int_equal(r.body_len, 0);
	reply_free(&r);
	route("HEAD /latest/meta-data/nope HTTP/1.1\r\n\r\n", &r);
	expect_status_line(&r, "HTTP/1.1 404 Not Found");
	expect_header(&r, "Content-Length", "337");
	assert_int_equal(r.body_len, 0);
	reply_free(&r);
}

static void test_data_methods(void **state)
{
	static const char *const methods[] = { "POST", "PUT", "DELETE", "OPTIONS" };
	char raw[256];
	struct reply r;

	(void)state;
	for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
		snprintf(raw, sizeof(raw), "%s /latest/meta-data/ HTTP/1.1\r\nContent-Length: 0\r\n\r\n", methods[i]);
		route(raw, &r);
		expect_status_line(&r, "HTTP/1.1 405 Not Allowed");
		expect_header(&r, "Allow", "GET, HEAD");
		expect_body(&r, "");
		reply_free(&r);
	}
	route("PUT / HTTP/1.1\r\n\r\n", &r);
	expect_status_line(&r, "HTTP/1.1 405 Not Allowed");
	reply_free(&r);
}

static void test_connection(void **state)
{
	struct reply r;

	(void)state;
	route("GET /latest/meta-data/instance-id HTTP/1.0\r\n\r\n", &r);
	expect_header(&r, "Connection", "close");
	assert_true(r.res.close);
	reply_free(&r);
	route("GET /latest/meta-data/instance-id HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", &r);
	expect_header(&r, "Connection", "keep-alive");
	assert_false(r.res.close);
	reply_free(&r);
	route("GET /latest/meta-data/instance-id HTTP/1.1\r\nConnection: close\r\n\r\n", &r);
	expect_header(&r, "Connection", "close");
	assert_true(r.res.close);
	reply_free(&r);
	/* Error replies close, as EC2's do (a client that never reads the
	 * error body must not hold the connection open). */
	route("GET /latest/meta-data/nope HTTP/1.1\r\nConnection: keep-alive\r\n\r\n", &r);
	expect_status_line(&r, "HTTP/1.1 404 Not Found");
	expect_header(&r, "Connection", "close");
	assert_true(r.res.close);
	reply_free(&r);
	route_at(&required_vm, NOW, "GET /latest/meta-data/instance-id HTTP/1.1\r\n\r\n", &r);
	expect_status_line(&r, "HTTP/1.1 401 Unauthorized");
	expect_header(&r, "Connection", "close");
	reply_free(&r);
	put_token("X-aws-ec2-metadata-token-ttl-seconds: 0\r\n", &r);
	expect_status_line(&r, "HTTP/1.1 400 Bad Request");
	expect_header(&r, "Connection", "close");
	reply_free(&r);
	/* A token reply always closes, even when the client would keep alive. */
	put_token("X-aws-ec2-metadata-token-ttl-seconds: 60\r\nConnection: keep-alive\r\n", &r);
	expect_header(&r, "Connection", "close");
	assert_true(r.res.close);
	reply_free(&r);
}

static void test_bad_target(void **state)
{
	struct reply r;

	(void)state;
	route("OPTIONS * HTTP/1.1\r\n\r\n", &r);
	expect_status_line(&r, "HTTP/1.1 400 Bad Request");
	reply_free(&r);
	/* Absolute form (a client that thinks it talks to a proxy). */
	route("GET http://169.254.169.254/latest/meta-data/instance-id HTTP/1.1\r\n\r\n", &r);
	expect_body(&r, IID);
	reply_free(&r);
}

/* --- path_normalize --- */

static void test_normalize(void **state)
{
	static const struct {
		const char *in;
		const char *out;
	} cases[] = {
		{ "/", "/" },
		{ "//", "/" },
		{ "//latest/meta-data/", "/latest/meta-data/" },
		{ "/latest//meta-data/x", "/latest/meta-data/x" },
		{ "/latest/meta-data", "/latest/meta-data" },
		{ "/a/./b/../c", "/a/c" },
		{ "/a/b/..", "/a/" },
		{ "/a/.", "/a/" },
		{ "/..", "/" },
		{ "/../../a", "/a" },
		{ "/a/../../b/", "/b/" },
		{ "/a?x=/../y", "/a" },
		{ "/a/?x", "/a/" },
		{ "/a#frag/", "/a" },
		{ "/.hidden/..x/...", "/.hidden/..x/..." },
		{ "http://169.254.169.254/latest/", "/latest/" },
		{ "HTTP://169.254.169.254", "/" },
		{ "http://169.254.169.254?x", "/" },
		/* escapes are decoded, then dot segments resolved */
		{ "/latest/meta-data/a%20b", "/latest/meta-data/a b" },
		{ "/x/100%25", "/x/100%" },
		{ "/%6C%61test/", "/latest/" },
		{ "/a/%2e%2E/b", "/b" },
		{ "/a%2Fb", "/a/b" },
		{ "/a%", "/a%" },
		{ "/a%4", "/a%4" },
		{ "/a%zz/", "/a%zz/" },
	};
	char out[64];

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int n = path_normalize(cases[i].in, strlen(cases[i].in), out, sizeof(out));

		if (n < 0 || strcmp(out, cases[i].out) != 0 || (size_t)n != strlen(cases[i].out))
			fail_msg("normalize(\"%s\") = %d \"%s\", want \"%s\"", cases[i].in, n, n < 0 ? "" : out,
				 cases[i].out);
	}
	/* Only the first url_len bytes count. */
	assert_int_equal(path_normalize("/abc/def", 4, out, sizeof(out)), 4);
	assert_string_equal(out, "/abc");
}

static void test_normalize_errors(void **state)
{
	char out[16];

	(void)state;
	assert_int_equal(path_normalize("", 0, out, sizeof(out)), -EINVAL);
	assert_int_equal(path_normalize("latest", 6, out, sizeof(out)), -EINVAL);
	assert_int_equal(path_normalize("*", 1, out, sizeof(out)), -EINVAL);
	assert_int_equal(path_normalize("?x", 2, out, sizeof(out)), -EINVAL);
	assert_int_equal(path_normalize("/a\0b", 4, out, sizeof(out)), -EINVAL);
	assert_int_equal(path_normalize("/a%00b", 6, out, sizeof(out)), -EINVAL);
	/* Output that does not fit: 15 bytes + NUL is the most. */
	assert_int_equal(path_normalize("/0123456789abcd", 15, out, sizeof(out)), 15);
	assert_int_equal(path_normalize("/0123456789abcde", 16, out, sizeof(out)), -EINVAL);
	assert_int_equal(path_normalize("/", 1, out, 1), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_root_versions),
		cmocka_unit_test(test_token_put_ok),
		cmocka_unit_test(test_token_ttl_rules),
		cmocka_unit_test(test_token_ttl_echo),
		cmocka_unit_test(test_token_put_forwarded),
		cmocka_unit_test(test_token_put_proxy_headers),
		cmocka_unit_test(test_token_put_curl),
		cmocka_unit_test(test_token_path_methods),
		cmocka_unit_test(test_dated_token_path),
		cmocka_unit_test(test_valid_token_remaining_ttl),
		cmocka_unit_test(test_bad_tokens),
		cmocka_unit_test(test_repeated_token_header),
		cmocka_unit_test(test_token_get_forwarded),
		cmocka_unit_test(test_required_mode),
		cmocka_unit_test(test_dated_versions),
		cmocka_unit_test(test_version_root),
		cmocka_unit_test(test_listing_and_slashes),
		cmocka_unit_test(test_data_reply_headers),
		cmocka_unit_test(test_not_found),
		cmocka_unit_test(test_head),
		cmocka_unit_test(test_data_methods),
		cmocka_unit_test(test_connection),
		cmocka_unit_test(test_bad_target),
		cmocka_unit_test(test_normalize),
		cmocka_unit_test(test_normalize_errors),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}

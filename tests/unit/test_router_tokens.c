/* test_router_tokens.c: IMDSv2 tokens in the EC2 API (route_ec2.c, through
 * the front, router.c) byte by byte: PUT /latest/api/token and its TTL
 * rules, forwarded and proxied token requests, the token path's methods,
 * and the checks of a token on GET (remaining TTL, bad and repeated
 * tokens, tokens-required VMs).  Requests go through the real parser
 * (http.c) into route_request over a real tree (router_fixture.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http/token.h"
#include "router_fixture.h"

static const uint8_t other_key[IMDS_TOKEN_KEY_LEN] = { 43, 1, 2, 3 };

/* --- PUT /latest/api/token --- */

static void mint(const uint8_t *k, const char *iid, uint64_t expiry, char out[TOKEN_TEXT_LEN + 1])
{
	assert_int_equal(token_mint(k, iid, expiry, out), 0);
}

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
	       "Connection: keep-alive\r\n"
	       "\r\n";
	assert_int_equal(r.out.len, strlen(head) + 56);
	assert_memory_equal(r.out.data, head, strlen(head));
	assert_int_equal(r.res.status, 200);
	assert_true(r.res.token_reply);
	assert_true(r.res.token_issued); /* counted for the metrics */
	assert_false(r.res.tokenless);
	assert_int_equal(r.res.flavor, ROUTE_FLAVOR_EC2);
	/* Kept, as the HTTP/1.1 request asks: the server holds the hop
	 * limit's mark until the reply is acknowledged (serve/hop.c). */
	assert_false(r.res.close);
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
	assert_false(r.res.token_issued);
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

int main(void)
{
	const struct CMUnitTest tests[] = {
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
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}

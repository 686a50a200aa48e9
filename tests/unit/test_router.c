/* test_router.c: the EC2 API rules (user/http/route_ec2.c, through the
 * front, router.c) byte by byte, apart from tokens (test_router_tokens.c):
 * the version lists, dated versions, listings and slashes, the headers of
 * data replies, not found, HEAD and methods, the connection, bad targets.
 * Requests go through the real parser (http.c) into route_request over a
 * real tree built with tree_builder (router_fixture.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "router_fixture.h"

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

/* Every version GET / lists is accepted as a first segment (the lookup is
 * a binary search over the same list, so this checks its order too). */
static void test_every_listed_version(void **state)
{
	char list[512], path[128], *save = NULL;
	struct reply r;
	int n = 0;

	(void)state;
	get("/", NULL, &r);
	assert_true(r.body_len < sizeof(list));
	memcpy(list, r.body, r.body_len);
	list[r.body_len] = '\0';
	reply_free(&r);
	for (char *v = strtok_r(list, "\n", &save); v; v = strtok_r(NULL, "\n", &save), n++) {
		snprintf(path, sizeof(path), "/%s/meta-data/instance-id", v);
		get(path, NULL, &r);
		expect_status_line(&r, "HTTP/1.1 200 OK");
		expect_body(&r, IID);
		reply_free(&r);
	}
	assert_int_equal(n, 30);
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
	/* A token reply keeps the connection or closes it as the client asks
	 * (the hop limit's mark is the server's business: serve/hop.c). */
	put_token("X-aws-ec2-metadata-token-ttl-seconds: 60\r\nConnection: keep-alive\r\n", &r);
	expect_header(&r, "Connection", "keep-alive");
	assert_false(r.res.close);
	reply_free(&r);
	put_token("X-aws-ec2-metadata-token-ttl-seconds: 60\r\nConnection: close\r\n", &r);
	expect_header(&r, "Connection", "close");
	assert_true(r.res.close);
	assert_true(r.res.token_reply);
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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_root_versions),
		cmocka_unit_test(test_dated_versions),
		cmocka_unit_test(test_every_listed_version),
		cmocka_unit_test(test_version_root),
		cmocka_unit_test(test_listing_and_slashes),
		cmocka_unit_test(test_data_reply_headers),
		cmocka_unit_test(test_not_found),
		cmocka_unit_test(test_head),
		cmocka_unit_test(test_data_methods),
		cmocka_unit_test(test_connection),
		cmocka_unit_test(test_bad_target),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}

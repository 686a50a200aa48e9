/* test_http.c: request parsing and response framing (user/http.c). */
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

#define MAX_SEEN 8

/* What the on_request callback saw, in order. */
struct seen {
	int n;
	int stop_at; /* return 7 from the callback number stop_at (1-based); 0 = never */
	struct http_request req[MAX_SEEN];
};

static int record(void *ctx, const struct http_request *req)
{
	struct seen *s = ctx;

	assert_true(s->n < MAX_SEEN);
	s->req[s->n++] = *req;
	return s->n == s->stop_at ? 7 : 0;
}

static struct http_conn *conn_new(void)
{
	struct http_conn *c = malloc(sizeof(*c));

	assert_non_null(c);
	http_conn_init(c);
	return c;
}

static int feed(struct http_conn *c, const char *data, size_t len, struct seen *s)
{
	return http_feed(c, data, len, record, s);
}

static int feed_str(struct http_conn *c, const char *data, struct seen *s)
{
	return feed(c, data, strlen(data), s);
}

static void header_equal(const struct http_header_value *a, const struct http_header_value *b)
{
	assert_int_equal(a->present, b->present);
	assert_int_equal(a->too_long, b->too_long);
	assert_int_equal(a->count, b->count);
	assert_string_equal(a->value, b->value);
}

static void request_equal(const struct http_request *a, const struct http_request *b)
{
	assert_int_equal(a->method, b->method);
	assert_int_equal(a->version_major, b->version_major);
	assert_int_equal(a->version_minor, b->version_minor);
	assert_int_equal(a->keep_alive, b->keep_alive);
	assert_int_equal(a->url_len, b->url_len);
	assert_string_equal(a->url, b->url);
	header_equal(&a->token, &b->token);
	header_equal(&a->token_ttl, &b->token_ttl);
	header_equal(&a->forwarded_for, &b->forwarded_for);
	header_equal(&a->forwarded, &b->forwarded);
	header_equal(&a->via, &b->via);
	header_equal(&a->metadata_flavor, &b->metadata_flavor);
	header_equal(&a->metadata, &b->metadata);
	assert_int_equal(a->body_len, b->body_len);
}

static const char full_req[] = "PUT /latest/api/token?x=1 HTTP/1.1\r\n"
			       "Host: 169.254.169.254\r\n"
			       "X-aws-ec2-metadata-token-ttl-seconds:   21600  \r\n"
			       "X-Forwarded-For: 10.0.0.1\r\n"
			       "Some-Very-Long-Header-Name-That-Is-Longer-Than-Sixty-Four-Characters-Really: x\r\n"
			       "X-aws-ec2-metadata-token: AQAEAabc\r\n"
			       "Forwarded: for=1.2.3.4\r\n"
			       "Via: 1.1 proxy\r\n"
			       "Metadata-Flavor: Google\r\n"
			       "Metadata: true\r\n"
			       "Empty:\r\n"
			       "Content-Length: 5\r\n"
			       "\r\n"
			       "hello";

static void check_full_req(const struct http_request *r)
{
	assert_int_equal(r->method, HTTP_M_PUT);
	assert_int_equal(r->version_major, 1);
	assert_int_equal(r->version_minor, 1);
	assert_true(r->keep_alive);
	assert_string_equal(r->url, "/latest/api/token?x=1");
	assert_int_equal(r->url_len, strlen("/latest/api/token?x=1"));
	assert_true(r->token_ttl.present);
	assert_int_equal(r->token_ttl.count, 1);
	assert_string_equal(r->token_ttl.value, "21600"); /* trimmed */
	assert_string_equal(r->forwarded_for.value, "10.0.0.1");
	assert_string_equal(r->token.value, "AQAEAabc");
	assert_string_equal(r->forwarded.value, "for=1.2.3.4");
	assert_string_equal(r->via.value, "1.1 proxy");
	assert_string_equal(r->metadata_flavor.value, "Google");
	assert_string_equal(r->metadata.value, "true");
	assert_int_equal(r->body_len, 5);
}

static void test_one_buffer(void **state)
{
	struct http_conn *c = conn_new();
	struct seen s = { 0 };

	(void)state;
	assert_int_equal(feed(c, full_req, sizeof(full_req) - 1, &s), 0);
	assert_int_equal(s.n, 1);
	check_full_req(&s.req[0]);
	free(c);
}

/* A connection's memory is reused (the server's pool): init over a conn
 * that parsed the full request, and a small request reads exactly as on
 * fresh, zeroed memory, with nothing of the earlier one in it. */
static void test_init_over_used_memory(void **state)
{
	static const char small[] = "GET /latest/meta-data/ HTTP/1.0\r\n\r\n";
	struct http_conn *used = conn_new();
	struct http_conn *fresh = calloc(1, sizeof(*fresh));
	struct seen a = { 0 }, b = { 0 };

	(void)state;
	assert_non_null(fresh);
	assert_int_equal(feed(used, full_req, sizeof(full_req) - 1, &a), 0);
	http_conn_init(used);
	http_conn_init(fresh);
	assert_false(http_conn_mid_request(used));
	assert_int_equal(feed_str(used, small, &a), 0);
	assert_int_equal(feed_str(fresh, small, &b), 0);
	assert_int_equal(a.n, 2);
	assert_int_equal(b.n, 1);
	request_equal(&a.req[1], &b.req[0]);
	assert_false(a.req[1].keep_alive);
	assert_false(a.req[1].token.present);
	assert_string_equal(a.req[1].token.value, "");
	free(used);
	free(fresh);
}

/* Split the request in two at every byte position, then feed it one byte
 * at a time: llhttp cuts spans at buffer ends, and the result must not
 * depend on where. */
static void test_every_split(void **state)
{
	static struct seen whole, part;
	size_t len = sizeof(full_req) - 1;
	struct http_conn *c;

	(void)state;
	memset(&whole, 0, sizeof(whole));
	c = conn_new();
	assert_int_equal(feed(c, full_req, len, &whole), 0);
	free(c);
	for (size_t k = 0; k <= len; k++) {
		memset(&part, 0, sizeof(part));
		c = conn_new();
		assert_int_equal(feed(c, full_req, k, &part), 0);
		assert_int_equal(feed(c, full_req + k, len - k, &part), 0);
		assert_int_equal(part.n, 1);
		request_equal(&part.req[0], &whole.req[0]);
		free(c);
	}
	memset(&part, 0, sizeof(part));
	c = conn_new();
	for (size_t k = 0; k < len; k++)
		assert_int_equal(feed(c, full_req + k, 1, &part), 0);
	assert_int_equal(part.n, 1);
	request_equal(&part.req[0], &whole.req[0]);
	free(c);
}

static void test_pipelined(void **state)
{
	struct http_conn *c = conn_new();
	static struct seen s;

	(void)state;
	memset(&s, 0, sizeof(s));
	assert_int_equal(feed_str(c,
				  "GET /a HTTP/1.1\r\nHost: x\r\n\r\n"
				  "HEAD /b HTTP/1.1\r\nX-aws-ec2-metadata-token: t\r\n\r\n"
				  "PUT /c HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
				  &s),
			 0);
	assert_int_equal(s.n, 3);
	assert_string_equal(s.req[0].url, "/a");
	assert_int_equal(s.req[0].method, HTTP_M_GET);
	assert_false(s.req[0].token.present);
	assert_string_equal(s.req[1].url, "/b");
	assert_int_equal(s.req[1].method, HTTP_M_HEAD);
	assert_true(s.req[1].token.present);
	assert_string_equal(s.req[2].url, "/c");
	assert_int_equal(s.req[2].method, HTTP_M_PUT);
	/* Headers of one request do not leak into the next. */
	assert_false(s.req[2].token.present);
	free(c);
}

/* A non-zero return from on_request stops parsing there. */
static void test_callback_stops(void **state)
{
	struct http_conn *c = conn_new();
	static struct seen s;

	(void)state;
	memset(&s, 0, sizeof(s));
	s.stop_at = 1;
	assert_int_equal(feed_str(c, "GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\n", &s), 7);
	assert_int_equal(s.n, 1);
	assert_int_equal(feed_str(c, "GET /c HTTP/1.1\r\n\r\n", &s), 7);
	assert_int_equal(s.n, 1);
	free(c);
}

static void test_header_case(void **state)
{
	static const char *const names[] = {
		"x-aws-ec2-metadata-token-ttl-seconds",
		"X-aws-ec2-metadata-token-ttl-seconds",
		"X-Aws-Ec2-Metadata-Token-Ttl-Seconds",
		"X-AWS-EC2-METADATA-TOKEN-TTL-SECONDS",
	};
	char buf[256];

	(void)state;
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		struct http_conn *c = conn_new();
		static struct seen s;

		memset(&s, 0, sizeof(s));
		snprintf(buf, sizeof(buf), "PUT /latest/api/token HTTP/1.1\r\n%s: 900\r\n\r\n", names[i]);
		assert_int_equal(feed_str(c, buf, &s), 0);
		assert_int_equal(s.n, 1);
		assert_true(s.req[0].token_ttl.present);
		assert_string_equal(s.req[0].token_ttl.value, "900");
		/* The TTL header is not mistaken for the token header. */
		assert_false(s.req[0].token.present);
		free(c);
	}
}

/* curl -X PUT sends neither Content-Length nor a body: the request is
 * complete at the blank line. */
static void test_put_without_length(void **state)
{
	struct http_conn *c = conn_new();
	static struct seen s;

	(void)state;
	memset(&s, 0, sizeof(s));
	assert_int_equal(feed_str(c,
				  "PUT /latest/api/token HTTP/1.1\r\nHost: 169.254.169.254\r\nUser-Agent: curl/7.88.1\r\n"
				  "Accept: */*\r\nX-aws-ec2-metadata-token-ttl-seconds: 21600\r\n\r\n",
				  &s),
			 0);
	assert_int_equal(s.n, 1);
	assert_int_equal(s.req[0].method, HTTP_M_PUT);
	assert_int_equal(s.req[0].body_len, 0);
	free(c);
}

static bool keep_alive_of(const char *req)
{
	struct http_conn *c = conn_new();
	static struct seen s;
	bool ka;

	memset(&s, 0, sizeof(s));
	assert_int_equal(feed_str(c, req, &s), 0);
	assert_int_equal(s.n, 1);
	ka = s.req[0].keep_alive;
	free(c);
	return ka;
}

static void test_keep_alive(void **state)
{
	(void)state;
	assert_false(keep_alive_of("GET / HTTP/1.0\r\n\r\n"));
	assert_true(keep_alive_of("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"));
	assert_true(keep_alive_of("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"));
	assert_true(keep_alive_of("GET / HTTP/1.1\r\n\r\n"));
	assert_false(keep_alive_of("GET / HTTP/1.1\r\nConnection: close\r\n\r\n"));
	/* We never switch protocols: an upgrade request is answered, then closed. */
	assert_false(keep_alive_of("GET / HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"));
}

/* Bytes after a request that closes the connection are dropped, not an
 * error (the reply to that request already says close). */
static void test_data_after_close(void **state)
{
	struct http_conn *c = conn_new();
	static struct seen s;

	(void)state;
	memset(&s, 0, sizeof(s));
	assert_int_equal(feed_str(c, "GET /a HTTP/1.0\r\n\r\nGET /b HTTP/1.0\r\n\r\n", &s), 0);
	assert_int_equal(s.n, 1);
	assert_int_equal(feed_str(c, "GET /c HTTP/1.1\r\n\r\n", &s), 0);
	assert_int_equal(s.n, 1);
	free(c);
}

static void test_url_limit(void **state)
{
	size_t cap = HTTP_URL_MAX + 64;
	char *buf = malloc(cap);
	struct http_conn *c;
	static struct seen s;

	(void)state;
	assert_non_null(buf);
	/* Exactly HTTP_URL_MAX bytes of target: accepted. */
	memset(&s, 0, sizeof(s));
	c = conn_new();
	snprintf(buf, cap, "GET /%0*d HTTP/1.1\r\n\r\n", HTTP_URL_MAX - 1, 0);
	assert_int_equal(feed_str(c, buf, &s), 0);
	assert_int_equal(s.n, 1);
	assert_int_equal(s.req[0].url_len, HTTP_URL_MAX);
	free(c);
	/* One more: 414, fed in two pieces so the cap holds across calls. */
	memset(&s, 0, sizeof(s));
	c = conn_new();
	snprintf(buf, cap, "GET /%0*d HTTP/1.1\r\n\r\n", HTTP_URL_MAX, 0);
	assert_int_equal(feed(c, buf, 1000, &s), 0);
	assert_int_equal(feed_str(c, buf + 1000, &s), -414);
	assert_int_equal(s.n, 0);
	/* Sticky. */
	assert_int_equal(feed_str(c, "GET / HTTP/1.1\r\n\r\n", &s), -414);
	free(c);
	free(buf);
}

static void test_header_limit(void **state)
{
	struct http_conn *c = conn_new();
	static struct seen s;
	int ret = 0;

	(void)state;
	memset(&s, 0, sizeof(s));
	assert_int_equal(feed_str(c, "GET / HTTP/1.1\r\n", &s), 0);
	/* 200 headers of 50 bytes: 10000 bytes, over the 8192 cap. */
	for (int i = 0; i < 200 && ret == 0; i++)
		ret = feed_str(c, "X-Filler: 0123456789012345678901234567890123456\r\n", &s);
	assert_int_equal(ret, -431);
	assert_int_equal(s.n, 0);
	free(c);
}

/* Many empty headers cost bytes too. */
static void test_header_limit_empty(void **state)
{
	struct http_conn *c = conn_new();
	static struct seen s;
	int ret = 0;

	(void)state;
	memset(&s, 0, sizeof(s));
	assert_int_equal(feed_str(c, "GET / HTTP/1.1\r\n", &s), 0);
	for (int i = 0; i < 3000 && ret == 0; i++)
		ret = feed_str(c, "A:\r\n", &s);
	assert_int_equal(ret, -431);
	free(c);
}

static void test_body_limit(void **state)
{
	size_t n = HTTP_BODY_MAX + 1;
	char *body = malloc(n);
	char head[128];
	struct http_conn *c;
	static struct seen s;

	(void)state;
	assert_non_null(body);
	memset(body, 'x', n);
	/* Exactly HTTP_BODY_MAX: accepted and counted. */
	memset(&s, 0, sizeof(s));
	c = conn_new();
	snprintf(head, sizeof(head), "POST / HTTP/1.1\r\nContent-Length: %d\r\n\r\n", HTTP_BODY_MAX);
	assert_int_equal(feed_str(c, head, &s), 0);
	assert_int_equal(feed(c, body, HTTP_BODY_MAX, &s), 0);
	assert_int_equal(s.n, 1);
	assert_int_equal(s.req[0].body_len, HTTP_BODY_MAX);
	assert_int_equal(s.req[0].method, HTTP_M_POST);
	free(c);
	/* One byte more: 413. */
	memset(&s, 0, sizeof(s));
	c = conn_new();
	snprintf(head, sizeof(head), "POST / HTTP/1.1\r\nContent-Length: %zu\r\n\r\n", n);
	assert_int_equal(feed_str(c, head, &s), 0);
	assert_int_equal(feed(c, body, n, &s), -413);
	assert_int_equal(s.n, 0);
	free(c);
	free(body);
}

static void test_garbage(void **state)
{
	static const char *const bad[] = {
		"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", /* TLS ClientHello */
		"HELLO\r\n\r\n",
		"GET / HTTP/9.9\r\n\r\n",
		"GET / HTTP/1.1\r\nBad Header\r\n\r\n",
		"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
		"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
	};

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct http_conn *c = conn_new();
		static struct seen s;

		memset(&s, 0, sizeof(s));
		assert_int_equal(feed_str(c, bad[i], &s), -400);
		assert_int_equal(s.n, 0);
		/* Every later call keeps failing. */
		assert_int_equal(feed_str(c, "GET / HTTP/1.1\r\n\r\n", &s), -400);
		assert_int_equal(s.n, 0);
		free(c);
	}
}

static void test_repeated_header(void **state)
{
	struct http_conn *c = conn_new();
	static struct seen s;

	(void)state;
	memset(&s, 0, sizeof(s));
	assert_int_equal(feed_str(c,
				  "PUT /latest/api/token HTTP/1.1\r\n"
				  "X-aws-ec2-metadata-token-ttl-seconds: 60\r\n"
				  "x-aws-ec2-metadata-token-ttl-seconds: 120\r\n\r\n",
				  &s),
			 0);
	assert_int_equal(s.n, 1);
	assert_int_equal(s.req[0].token_ttl.count, 2);
	free(c);
}

static void test_long_value(void **state)
{
	char buf[HTTP_VALUE_MAX + 128], val[HTTP_VALUE_MAX + 11];
	struct http_conn *c;
	static struct seen s;

	(void)state;
	memset(val, 'v', sizeof(val) - 1);
	val[sizeof(val) - 1] = '\0';
	snprintf(buf, sizeof(buf), "GET / HTTP/1.1\r\nX-aws-ec2-metadata-token: %s\r\nVia:\r\n\r\n", val);
	memset(&s, 0, sizeof(s));
	c = conn_new();
	/* Two pieces, cut inside the value. */
	assert_int_equal(feed(c, buf, 100, &s), 0);
	assert_int_equal(feed_str(c, buf + 100, &s), 0);
	assert_int_equal(s.n, 1);
	assert_true(s.req[0].token.too_long);
	assert_int_equal(strlen(s.req[0].token.value), HTTP_VALUE_MAX);
	/* A header with an empty value is present. */
	assert_true(s.req[0].via.present);
	assert_string_equal(s.req[0].via.value, "");
	free(c);
}

static void test_methods(void **state)
{
	static const struct {
		const char *req;
		enum http_method m;
	} cases[] = {
		{ "GET / HTTP/1.1\r\n\r\n", HTTP_M_GET },	  { "HEAD / HTTP/1.1\r\n\r\n", HTTP_M_HEAD },
		{ "PUT / HTTP/1.1\r\n\r\n", HTTP_M_PUT },	  { "OPTIONS / HTTP/1.1\r\n\r\n", HTTP_M_OPTIONS },
		{ "POST / HTTP/1.1\r\n\r\n", HTTP_M_POST },	  { "DELETE / HTTP/1.1\r\n\r\n", HTTP_M_DELETE },
		{ "PATCH / HTTP/1.1\r\n\r\n", HTTP_M_OTHER },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct http_conn *c = conn_new();
		static struct seen s;

		memset(&s, 0, sizeof(s));
		assert_int_equal(feed_str(c, cases[i].req, &s), 0);
		assert_int_equal(s.n, 1);
		assert_int_equal(s.req[0].method, cases[i].m);
		free(c);
	}
}

static void test_date(void **state)
{
	char d[HTTP_DATE_LEN + 1];

	(void)state;
	/* RFC 7231's example. */
	assert_int_equal(http_format_date(d, 784111777), 0);
	assert_string_equal(d, "Sun, 06 Nov 1994 08:49:37 GMT");
	assert_int_equal(http_format_date(d, 1700000000), 0);
	assert_string_equal(d, "Tue, 14 Nov 2023 22:13:20 GMT");
}

/* The hand-made digits against printf's, over 4 centuries of instants
 * (leap years, day and month boundaries), and the year limits. */
static void test_date_against_printf(void **state)
{
	static const char days[7][4] = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" };
	static const char months[12][4] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
					    "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
	char d[HTTP_DATE_LEN + 1], want[64];
	struct tm tm;

	(void)state;
	for (int64_t t = -2208988800ll; t < 10413792000ll; t += 86400 * 7 + 3607) {
		time_t tt = (time_t)t;

		assert_non_null(gmtime_r(&tt, &tm));
		snprintf(want, sizeof(want), "%s, %02d %s %04d %02d:%02d:%02d GMT", days[tm.tm_wday], tm.tm_mday,
			 months[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
		assert_int_equal(http_format_date(d, tt), 0);
		assert_string_equal(d, want);
	}
	assert_int_equal(http_format_date(d, 253402300799), 0); /* the last second of 9999 */
	assert_string_equal(d, "Fri, 31 Dec 9999 23:59:59 GMT");
	assert_int_equal(http_format_date(d, 253402300800), -EINVAL);
	assert_int_equal(http_format_date(d, -62167219200), 0); /* year 0 */
	assert_string_equal(d, "Sat, 01 Jan 0000 00:00:00 GMT");
	assert_int_equal(http_format_date(d, -62167219201), -EINVAL);
}

static void test_format_uint(void **state)
{
	static const struct {
		uint64_t v;
		const char *text;
	} cases[] = {
		{ 0, "0" }, { 7, "7" }, { 10, "10" }, { 21600, "21600" }, { 4294967296ull, "4294967296" },
		{ UINT64_MAX, "18446744073709551615" },
	};
	char out[HTTP_UINT_LEN + 1];

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t n = http_format_uint(out, cases[i].v);

		out[n] = '\0';
		assert_int_equal(n, strlen(cases[i].text));
		assert_string_equal(out, cases[i].text);
	}
}

/* Dates are remembered per thread: a response at another second, or with
 * another Last-Modified, must carry the new ones; a date beyond 9999 is
 * left out (Last-Modified) or empty (Date), as before the cache. */
static void test_response_dates_change(void **state)
{
	struct outbuf out = { 0 };
	struct http_response r = { .status = 200, .ctype = CT_TEXT, .body = "x", .body_len = 1,
				   .last_modified = 784111777 };

	(void)state;
	assert_int_equal(http_write_response(&out, &r, 1700000000), 0);
	assert_non_null(strstr(out.data, "\r\nDate: Tue, 14 Nov 2023 22:13:20 GMT\r\n"));
	assert_non_null(strstr(out.data, "\r\nLast-Modified: Sun, 06 Nov 1994 08:49:37 GMT\r\n"));
	outbuf_reset(&out);
	r.last_modified = 784111778;
	assert_int_equal(http_write_response(&out, &r, 1700000001), 0);
	assert_non_null(strstr(out.data, "\r\nDate: Tue, 14 Nov 2023 22:13:21 GMT\r\n"));
	assert_non_null(strstr(out.data, "\r\nLast-Modified: Sun, 06 Nov 1994 08:49:38 GMT\r\n"));
	outbuf_reset(&out);
	r.last_modified = 253402300800;
	assert_int_equal(http_write_response(&out, &r, 253402300800), 0);
	assert_non_null(strstr(out.data, "\r\nContent-Length: 1\r\nDate: \r\nServer: EC2ws\r\n"));
	assert_null(strstr(out.data, "Last-Modified"));
	outbuf_reset(&out);
	assert_int_equal(http_write_response(&out, &r, 1700000000), 0);
	assert_non_null(strstr(out.data, "\r\nDate: Tue, 14 Nov 2023 22:13:20 GMT\r\n"));
	outbuf_free(&out);
}

/* Long extra headers, a long server name and a big body length all fit the
 * one reservation the head is written into. */
static void test_response_long_parts(void **state)
{
	static char extra[3000], body[70000];
	struct outbuf out = { 0 };
	struct http_response r = { .status = 599, .ctype = CT_OCTET, .body = body, .body_len = sizeof(body),
				   .extra_headers = extra, .server = "a-rather-long-server-name/1.0 (with comment)",
				   .last_modified = 1 };
	char want[128];

	(void)state;
	for (size_t i = 0; i + 28 < sizeof(extra); i += 28)
		memcpy(extra + i, "X-Filler: 0123456789abcdef\r\n", 28);
	memset(body, 'b', sizeof(body));
	assert_int_equal(http_write_response(&out, &r, 1700000000), 0);
	assert_memory_equal(out.data, "HTTP/1.1 599 Unknown\r\nX-Filler: ", 32);
	assert_non_null(strstr(out.data, "X-Filler: 0123456789abcdef\r\nContent-Type: application/octet-stream\r\n"));
	assert_int_equal(strlen(extra), 2996);
	snprintf(want, sizeof(want), "\r\nContent-Length: %zu\r\n", sizeof(body));
	assert_non_null(strstr(out.data, want));
	assert_non_null(strstr(out.data, "\r\nServer: a-rather-long-server-name/1.0 (with comment)\r\n"
					 "Connection: keep-alive\r\n\r\nbbb"));
	assert_int_equal(out.data[out.len], '\0');
	assert_int_equal(out.data[out.len - 1], 'b');
	outbuf_free(&out);
}

static void test_response_bytes(void **state)
{
	struct outbuf out = { 0 };
	struct http_response r = {
		.status = 200,
		.ctype = CT_TEXT,
		.body = "i-0123",
		.body_len = 6,
		.last_modified = 784111777,
		.extra_headers = "X-Aws-Ec2-Metadata-Token-Ttl-Seconds: 21575\r\n",
	};

	(void)state;
	assert_int_equal(http_write_response(&out, &r, 1700000000), 0);
	assert_string_equal(out.data, "HTTP/1.1 200 OK\r\n"
				      "X-Aws-Ec2-Metadata-Token-Ttl-Seconds: 21575\r\n"
				      "Content-Type: text/plain\r\n"
				      "Accept-Ranges: none\r\n"
				      "Last-Modified: Sun, 06 Nov 1994 08:49:37 GMT\r\n"
				      "Content-Length: 6\r\n"
				      "Date: Tue, 14 Nov 2023 22:13:20 GMT\r\n"
				      "Server: EC2ws\r\n"
				      "Connection: keep-alive\r\n"
				      "\r\n"
				      "i-0123");
	outbuf_free(&out);
}

static void test_response_head_and_close(void **state)
{
	struct outbuf out = { 0 };
	struct http_response r = {
		.status = 404,
		.ctype = CT_HTML,
		.body = "<html/>",
		.body_len = 7,
		.close = true,
		.head = true,
	};

	(void)state;
	/* Appends after what is already queued (pipelined replies). */
	assert_int_equal(outbuf_puts(&out, "prev"), 0);
	assert_int_equal(http_write_response(&out, &r, 1700000000), 0);
	assert_string_equal(out.data, "prevHTTP/1.1 404 Not Found\r\n"
				      "Content-Type: text/html\r\n"
				      "Content-Length: 7\r\n"
				      "Date: Tue, 14 Nov 2023 22:13:20 GMT\r\n"
				      "Server: EC2ws\r\n"
				      "Connection: close\r\n"
				      "\r\n");
	outbuf_free(&out);
}

/* Another flavor names its own server (GCE's "Metadata Server for VM"). */
static void test_response_server_name(void **state)
{
	struct outbuf out = { 0 };
	struct http_response r = { .status = 200, .ctype = CT_JSON, .body = "{}", .body_len = 2,
				   .server = "Metadata Server for VM" };

	(void)state;
	assert_int_equal(http_write_response(&out, &r, 1700000000), 0);
	assert_non_null(strstr(out.data, "\r\nServer: Metadata Server for VM\r\n"));
	assert_null(strstr(out.data, "EC2ws"));
	outbuf_free(&out);
}

static void test_ctypes_and_reasons(void **state)
{
	static const struct {
		enum tree_ctype ct;
		const char *name;
	} ct[] = {
		{ CT_TEXT, "Content-Type: text/plain\r\n" },
		{ CT_OCTET, "Content-Type: application/octet-stream\r\n" },
		{ CT_JSON, "Content-Type: application/json\r\n" },
		{ CT_HTML, "Content-Type: text/html\r\n" },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(ct) / sizeof(ct[0]); i++) {
		struct outbuf out = { 0 };
		struct http_response r = { .status = 400, .ctype = ct[i].ct, .body = "", .body_len = 0 };

		assert_int_equal(http_write_response(&out, &r, 0), 0);
		assert_non_null(strstr(out.data, ct[i].name));
		assert_null(strstr(out.data, "Accept-Ranges"));
		assert_memory_equal(out.data, "HTTP/1.1 400 Bad Request\r\n", 26);
		outbuf_free(&out);
	}
	assert_string_equal(http_reason(401), "Unauthorized");
	assert_string_equal(http_reason(403), "Forbidden");
	assert_string_equal(http_reason(405), "Not Allowed");
	assert_string_equal(http_reason(413), "Payload Too Large");
	assert_string_equal(http_reason(414), "URI Too Long");
	assert_string_equal(http_reason(431), "Request Header Fields Too Large");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_one_buffer),
		cmocka_unit_test(test_init_over_used_memory),
		cmocka_unit_test(test_every_split),
		cmocka_unit_test(test_pipelined),
		cmocka_unit_test(test_callback_stops),
		cmocka_unit_test(test_header_case),
		cmocka_unit_test(test_put_without_length),
		cmocka_unit_test(test_keep_alive),
		cmocka_unit_test(test_data_after_close),
		cmocka_unit_test(test_url_limit),
		cmocka_unit_test(test_header_limit),
		cmocka_unit_test(test_header_limit_empty),
		cmocka_unit_test(test_body_limit),
		cmocka_unit_test(test_garbage),
		cmocka_unit_test(test_repeated_header),
		cmocka_unit_test(test_long_value),
		cmocka_unit_test(test_methods),
		cmocka_unit_test(test_date),
		cmocka_unit_test(test_date_against_printf),
		cmocka_unit_test(test_format_uint),
		cmocka_unit_test(test_response_dates_change),
		cmocka_unit_test(test_response_long_parts),
		cmocka_unit_test(test_response_bytes),
		cmocka_unit_test(test_response_head_and_close),
		cmocka_unit_test(test_response_server_name),
		cmocka_unit_test(test_ctypes_and_reasons),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

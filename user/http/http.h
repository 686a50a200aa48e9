/* http.h: HTTP/1.x request parsing (llhttp) and response framing.
 * Free of io_uring and sockets, so it is unit-tested by feeding bytes. */
#ifndef IMDS_HTTP_H
#define IMDS_HTTP_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <llhttp.h>

#include "http/path.h"
#include "lib/outbuf.h"
#include "lib/tree.h"

#define HTTP_URL_MAX PATH_TARGET_MAX /* longer target: 414 and close */
#define HTTP_HEADERS_MAX 8192 /* header bytes of one request: else 431 and close */
#define HTTP_BODY_MAX 16384   /* request body: else 413 and close */
#define HTTP_VALUE_MAX 256    /* longest header value kept (longer: *_too_long) */

enum http_method {
	HTTP_M_GET,
	HTTP_M_HEAD,
	HTTP_M_PUT,
	HTTP_M_OPTIONS,
	HTTP_M_POST,
	HTTP_M_DELETE,
	HTTP_M_OTHER,
};

/* One header the routers care about; names are matched case-insensitively. */
struct http_header_value {
	bool present;
	bool too_long; /* value exceeded HTTP_VALUE_MAX; value is truncated */
	uint8_t count; /* times the header appeared */
	char value[HTTP_VALUE_MAX + 1];
};

struct http_request {
	enum http_method method;
	uint8_t version_major;
	uint8_t version_minor;
	bool keep_alive; /* the client allows the connection to stay open */
	char url[HTTP_URL_MAX + 1];
	size_t url_len;
	struct http_header_value token;		  /* X-aws-ec2-metadata-token */
	struct http_header_value token_ttl;	  /* X-aws-ec2-metadata-token-ttl-seconds */
	struct http_header_value forwarded_for;	  /* X-Forwarded-For */
	struct http_header_value forwarded;	  /* Forwarded (RFC 7239) */
	struct http_header_value via;		  /* Via */
	struct http_header_value metadata_flavor; /* Metadata-Flavor (GCE) */
	struct http_header_value metadata;	  /* Metadata (Azure) */
	size_t body_len;
};

struct http_conn {
	llhttp_t parser;
	llhttp_settings_t settings;
	struct http_request req;
	/* parser scratch */
	char field[64];
	size_t field_len;
	bool field_too_long;
	struct http_header_value *current; /* header whose value is being read */
	size_t header_bytes;
	int error_status; /* HTTP status to answer before closing, or 0 */
	/* set while http_feed runs */
	int (*on_request)(void *ctx, const struct http_request *req);
	void *ctx;
	int cb_result;
};

void http_conn_init(struct http_conn *c);

/* Whether the parser holds part of a request (from its first byte to its
 * end): llhttp sets `finish` to UNSAFE there, which is what llhttp_finish
 * reads to call an EOF invalid.  The server times header completion by it. */
static inline bool http_conn_mid_request(const struct http_conn *c)
{
	return c->parser.finish == HTTP_FINISH_UNSAFE;
}

/* Feeds received bytes.  Calls on_request once per complete request, in
 * order (pipelining).  If on_request returns non-zero, parsing stops and that
 * value is returned.  Returns 0 when all bytes were consumed (a partial
 * request stays buffered in the parser), or a negative HTTP status (-400,
 * -413, -414, -431) when the stream is not valid HTTP: answer it with that
 * status and close. */
int http_feed(struct http_conn *c, const char *data, size_t len, int (*on_request)(void *ctx, const struct http_request *req),
	      void *ctx);

struct http_response {
	int status;
	enum tree_ctype ctype;
	const char *body;
	size_t body_len;
	bool close;	     /* adds "Connection: close" */
	bool head;	     /* HEAD: headers only, Content-Length of the body */
	uint64_t last_modified; /* unix seconds; 0 = no Last-Modified */
	const char *extra_headers; /* preformatted "Name: value\r\n" lines or NULL */
	const char *server;	   /* Server header value; NULL = "EC2ws" (EC2's, on every reply) */
};

/* Appends status line, headers (Server: EC2ws, Date, Content-Type,
 * Content-Length, ...) and body.  0 or -ENOMEM. */
int http_write_response(struct outbuf *out, const struct http_response *r, time_t now);
const char *http_reason(int status);

/* IMF-fixdate (RFC 7231 §7.1.1.1), e.g. "Sun, 06 Nov 1994 08:49:37 GMT",
 * for Date and Last-Modified.  0 or -EINVAL (year outside 0..9999). */
#define HTTP_DATE_LEN 29
int http_format_date(char out[HTTP_DATE_LEN + 1], time_t t);

/* v in decimal, no sign, no leading zeros, not NUL-terminated (printf's
 * "%" PRIu64 without printf, for headers built on every response).
 * Returns the number of characters written, 1..HTTP_UINT_LEN. */
#define HTTP_UINT_LEN 20
size_t http_format_uint(char out[HTTP_UINT_LEN], uint64_t v);

#endif

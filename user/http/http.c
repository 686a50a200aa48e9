/* http.c: HTTP/1.x request parsing on top of llhttp, and response framing.
 *
 * llhttp hands over the URL, header names and header values as spans that
 * may be cut anywhere by TCP segment boundaries; the callbacks below
 * accumulate them into struct http_request with hard caps, so a hostile
 * guest can neither grow memory nor get past the limits in http.h.
 * Requests are handed to the caller from on_message_complete, one by one
 * and in order, which is what makes pipelining work. */
#include "http/http.h"

#include <errno.h>
#include <string.h>
#include <strings.h>

/* Bytes a header line costs beyond its name and value (": " and CRLF);
 * counting them makes a flood of empty headers hit the 431 cap too. */
#define HTTP_HEADER_OVERHEAD 4

static struct http_conn *http_conn_of(llhttp_t *p)
{
	return p->data;
}

/* Stops parsing with an HTTP status that http_feed reports as -status. */
static int http_fail(struct http_conn *c, int status)
{
	if (!c->error_status)
		c->error_status = status;
	return HPE_USER;
}

/* The request is 4 KiB, mostly value buffers: clearing only what marks
 * them empty keeps a small request from paying for a memset of all of it.
 * The result reads the same as an all-zero request. */
static void http_request_reset(struct http_request *r)
{
	struct http_header_value *const headers[] = {
		&r->token, &r->token_ttl, &r->forwarded_for, &r->forwarded, &r->via, &r->metadata_flavor, &r->metadata,
	};

	_Static_assert(sizeof(headers) / sizeof(headers[0]) ==
			       (offsetof(struct http_request, body_len) - offsetof(struct http_request, token)) /
				       sizeof(struct http_header_value),
		       "every header of struct http_request is reset");
	memset(r, 0, offsetof(struct http_request, url) + 1);
	r->url_len = 0;
	for (size_t i = 0; i < sizeof(headers) / sizeof(headers[0]); i++) {
		headers[i]->present = false;
		headers[i]->too_long = false;
		headers[i]->count = 0;
		headers[i]->value[0] = '\0';
	}
	r->body_len = 0;
}

static int http_on_message_begin(llhttp_t *p)
{
	struct http_conn *c = http_conn_of(p);

	http_request_reset(&c->req);
	c->field_len = 0;
	c->field_too_long = false;
	c->current = NULL;
	c->header_bytes = 0;
	return 0;
}

static int http_on_url(llhttp_t *p, const char *at, size_t len)
{
	struct http_conn *c = http_conn_of(p);
	struct http_request *r = &c->req;

	if (len > HTTP_URL_MAX - r->url_len)
		return http_fail(c, 414);
	memcpy(r->url + r->url_len, at, len);
	r->url_len += len;
	r->url[r->url_len] = '\0';
	return 0;
}

static int http_count_header_bytes(struct http_conn *c, size_t len)
{
	c->header_bytes += len;
	if (c->header_bytes > HTTP_HEADERS_MAX)
		return http_fail(c, 431);
	return 0;
}

static int http_on_header_field(llhttp_t *p, const char *at, size_t len)
{
	struct http_conn *c = http_conn_of(p);

	if (http_count_header_bytes(c, len))
		return HPE_USER;
	/* Names longer than any we match are kept only as "too long", which
	 * makes them an ignored header. */
	if (len > sizeof(c->field) - c->field_len) {
		c->field_too_long = true;
		return 0;
	}
	memcpy(c->field + c->field_len, at, len);
	c->field_len += len;
	return 0;
}

static struct http_header_value *http_header_slot(struct http_request *r, const char *name, size_t len)
{
#define HTTP_KNOWN(n, field) { n, sizeof(n) - 1, offsetof(struct http_request, field) }
	static const struct {
		const char *name;
		size_t len;
		size_t off;
	} known[] = {
		HTTP_KNOWN("X-aws-ec2-metadata-token", token),
		HTTP_KNOWN("X-aws-ec2-metadata-token-ttl-seconds", token_ttl),
		HTTP_KNOWN("X-Forwarded-For", forwarded_for),
		HTTP_KNOWN("Forwarded", forwarded),
		HTTP_KNOWN("Via", via),
		HTTP_KNOWN("Metadata-Flavor", metadata_flavor),
		HTTP_KNOWN("Metadata", metadata),
	};
#undef HTTP_KNOWN

	/* The first letter, case folded (every name starts with one), before
	 * the call: "Accept-Encoding" has the length of "X-Forwarded-For". */
	for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++) {
		if (known[i].len == len && (known[i].name[0] | 0x20) == (name[0] | 0x20) &&
		    strncasecmp(known[i].name, name, len) == 0)
			return (struct http_header_value *)((char *)r + known[i].off);
	}
	return NULL;
}

/* The name is complete: decide where its value goes.  A repeated header
 * keeps its last value; count tells the router it was repeated. */
static int http_on_header_field_complete(llhttp_t *p)
{
	struct http_conn *c = http_conn_of(p);
	struct http_header_value *h = NULL;

	if (http_count_header_bytes(c, HTTP_HEADER_OVERHEAD))
		return HPE_USER;
	if (!c->field_too_long)
		h = http_header_slot(&c->req, c->field, c->field_len);
	if (h) {
		h->present = true;
		h->too_long = false;
		h->value[0] = '\0';
		if (h->count < UINT8_MAX)
			h->count++;
	}
	c->current = h;
	c->field_len = 0;
	c->field_too_long = false;
	return 0;
}

static int http_on_header_value(llhttp_t *p, const char *at, size_t len)
{
	struct http_conn *c = http_conn_of(p);
	struct http_header_value *h = c->current;
	size_t have, room;

	if (http_count_header_bytes(c, len))
		return HPE_USER;
	if (!h)
		return 0;
	have = strlen(h->value);
	room = HTTP_VALUE_MAX - have;
	if (len > room) {
		h->too_long = true;
		len = room;
	}
	memcpy(h->value + have, at, len);
	h->value[have + len] = '\0';
	return 0;
}

/* RFC 7230 §3.2.4: optional whitespace around a value is not part of it. */
static void http_trim(char *s)
{
	size_t len = strlen(s), start = 0;

	while (len > 0 && (s[len - 1] == ' ' || s[len - 1] == '\t'))
		len--;
	while (start < len && (s[start] == ' ' || s[start] == '\t'))
		start++;
	memmove(s, s + start, len - start);
	s[len - start] = '\0';
}

static int http_on_header_value_complete(llhttp_t *p)
{
	struct http_conn *c = http_conn_of(p);

	if (c->current)
		http_trim(c->current->value);
	c->current = NULL;
	return 0;
}

static enum http_method http_method_of(uint8_t m)
{
	switch (m) {
	case HTTP_GET:
		return HTTP_M_GET;
	case HTTP_HEAD:
		return HTTP_M_HEAD;
	case HTTP_PUT:
		return HTTP_M_PUT;
	case HTTP_OPTIONS:
		return HTTP_M_OPTIONS;
	case HTTP_POST:
		return HTTP_M_POST;
	case HTTP_DELETE:
		return HTTP_M_DELETE;
	default:
		return HTTP_M_OTHER;
	}
}

static int http_on_headers_complete(llhttp_t *p)
{
	struct http_request *r = &http_conn_of(p)->req;

	r->method = http_method_of(p->method);
	r->version_major = p->http_major;
	r->version_minor = p->http_minor;
	/* We never switch protocols: an Upgrade or CONNECT request is answered
	 * as plain HTTP and the connection is closed after it. */
	r->keep_alive = llhttp_should_keep_alive(p) && !p->upgrade;
	return 0;
}

static int http_on_body(llhttp_t *p, const char *at, size_t len)
{
	struct http_conn *c = http_conn_of(p);

	(void)at;
	if (len > HTTP_BODY_MAX - c->req.body_len)
		return http_fail(c, 413);
	c->req.body_len += len;
	return 0;
}

static int http_on_message_complete(llhttp_t *p)
{
	struct http_conn *c = http_conn_of(p);
	int ret = c->on_request(c->ctx, &c->req);

	if (ret) {
		c->cb_result = ret;
		return HPE_USER;
	}
	return 0;
}

/* Reads as all zero; the request's buffers are only reset, not cleared
 * (4 KiB a connection would write for nothing: every string in them is
 * read up to its own end, as for each later request of a connection). */
void http_conn_init(struct http_conn *c)
{
	const size_t req_end = offsetof(struct http_conn, req) + sizeof(c->req);

	memset(c, 0, offsetof(struct http_conn, req));
	http_request_reset(&c->req);
	memset((char *)c + req_end, 0, sizeof(*c) - req_end);
	llhttp_settings_init(&c->settings);
	c->settings.on_message_begin = http_on_message_begin;
	c->settings.on_url = http_on_url;
	c->settings.on_header_field = http_on_header_field;
	c->settings.on_header_field_complete = http_on_header_field_complete;
	c->settings.on_header_value = http_on_header_value;
	c->settings.on_header_value_complete = http_on_header_value_complete;
	c->settings.on_headers_complete = http_on_headers_complete;
	c->settings.on_body = http_on_body;
	c->settings.on_message_complete = http_on_message_complete;
	/* The settings live inside the conn, so the conn must not move after
	 * this (llhttp keeps a pointer to them). */
	llhttp_init(&c->parser, HTTP_REQUEST, &c->settings);
	c->parser.data = c;
}

/* llhttp errors are sticky (it returns the same error on every later call),
 * so mapping them here keeps ours sticky too. */
static int http_feed_result(struct http_conn *c, llhttp_errno_t err)
{
	switch (err) {
	case HPE_OK:
		return 0;
	case HPE_CLOSED_CONNECTION:
	case HPE_PAUSED_UPGRADE:
		/* Bytes after a request that closes the connection: the reply
		 * to that request already says close; drop the rest. */
		return 0;
	default:
		break;
	}
	if (c->cb_result)
		return c->cb_result;
	if (c->error_status)
		return -c->error_status;
	return -400;
}

int http_feed(struct http_conn *c, const char *data, size_t len, int (*on_request)(void *ctx, const struct http_request *req),
	      void *ctx)
{
	llhttp_errno_t err;

	c->on_request = on_request;
	c->ctx = ctx;
	err = llhttp_execute(&c->parser, data, len);
	c->on_request = NULL;
	c->ctx = NULL;
	return http_feed_result(c, err);
}

const char *http_reason(int status)
{
	switch (status) {
	case 200:
		return "OK";
	case 400:
		return "Bad Request";
	case 401:
		return "Unauthorized";
	case 403:
		return "Forbidden";
	case 404:
		return "Not Found";
	case 405:
		/* EC2's wording (captured 405 on the token path), not RFC 7231's
		 * "Method Not Allowed"; clients read only the code. */
		return "Not Allowed";
	case 413:
		return "Payload Too Large";
	case 414:
		return "URI Too Long";
	case 429:
		return "Too Many Requests";
	case 431:
		return "Request Header Fields Too Large";
	case 500:
		return "Internal Server Error";
	case 503:
		return "Service Unavailable";
	default:
		return "Unknown";
	}
}

size_t http_format_uint(char out[HTTP_UINT_LEN], uint64_t v)
{
	char tmp[HTTP_UINT_LEN];
	size_t n = 0;

	do {
		tmp[sizeof(tmp) - ++n] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	memcpy(out, tmp + sizeof(tmp) - n, n);
	return n;
}

/* Writes v as exactly `width` decimal digits, zero-padded. */
static char *http_put_digits(char *p, unsigned v, int width)
{
	for (int i = width - 1; i >= 0; i--, v /= 10)
		p[i] = (char)('0' + v % 10);
	return p + width;
}

static char *http_put(char *p, const char *s, size_t n)
{
	memcpy(p, s, n);
	return p + n;
}

int http_format_date(char out[HTTP_DATE_LEN + 1], time_t t)
{
	static const char days[7][4] = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" };
	static const char months[12][4] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
					    "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
	struct tm tm;
	char *p = out;

	/* Names from tables, not strftime: IMF-fixdate is always English,
	 * whatever the process locale.  Digits by hand, not snprintf: this
	 * runs for every response. */
	if (!gmtime_r(&t, &tm) || tm.tm_year + 1900 > 9999 || tm.tm_year + 1900 < 0)
		return -EINVAL;
	p = http_put(p, days[tm.tm_wday], 3);
	p = http_put(p, ", ", 2);
	p = http_put_digits(p, (unsigned)tm.tm_mday, 2);
	*p++ = ' ';
	p = http_put(p, months[tm.tm_mon], 3);
	*p++ = ' ';
	p = http_put_digits(p, (unsigned)(tm.tm_year + 1900), 4);
	*p++ = ' ';
	p = http_put_digits(p, (unsigned)tm.tm_hour, 2);
	*p++ = ':';
	p = http_put_digits(p, (unsigned)tm.tm_min, 2);
	*p++ = ':';
	p = http_put_digits(p, (unsigned)tm.tm_sec, 2);
	p = http_put(p, " GMT", 4);
	*p = '\0';
	return 0;
}

/* The last date a thread formatted, per use: Date changes once a second
 * and Last-Modified once per tree, so nearly every response finds its
 * dates here.  Per thread, so workers share no cache line. */
struct http_date_cache {
	bool valid;
	bool ok; /* http_format_date succeeded for t */
	time_t t;
	char text[HTTP_DATE_LEN + 1];
};

static __thread struct http_date_cache http_date_now, http_date_modified;

/* The IMF-fixdate of t, or NULL when it has none (year out of range). */
static const char *http_date_cached(struct http_date_cache *c, time_t t)
{
	if (!c->valid || c->t != t) {
		c->ok = http_format_date(c->text, t) == 0;
		c->t = t;
		c->valid = true;
	}
	return c->ok ? c->text : NULL;
}

static const char *http_ctype_name(enum tree_ctype ct)
{
	switch (ct) {
	case CT_OCTET:
		return "application/octet-stream";
	case CT_JSON:
		return "application/json";
	case CT_HTML:
		return "text/html";
	case CT_TEXT:
	default:
		return "text/plain";
	}
}

#define HTTP_LIT(p, s) http_put(p, s, sizeof(s) - 1)

/* Header order follows EC2's data replies: Content-Type, Accept-Ranges,
 * Last-Modified, Content-Length, Date, Server, Connection.  Assembled with
 * memcpy into one reservation: this runs once per response, and the
 * printf family cost more than the rest of the response. */
static int http_write_head(struct outbuf *out, const struct http_response *r, time_t now)
{
	const char *date = http_date_cached(&http_date_now, now);
	const char *modified = r->last_modified ? http_date_cached(&http_date_modified, (time_t)r->last_modified) : NULL;
	const char *reason = http_reason(r->status), *ctype = http_ctype_name(r->ctype);
	const char *server = r->server ? r->server : "EC2ws";
	size_t reason_len = strlen(reason), ctype_len = strlen(ctype), server_len = strlen(server);
	size_t extra_len = r->extra_headers ? strlen(r->extra_headers) : 0;
	char num[HTTP_UINT_LEN];
	size_t need;
	char *p;

	/* The fixed text is 128 bytes at most (status line 12, Content-Type
	 * 16, Accept-Ranges 21, Last-Modified 17, Content-Length 16, Date 8,
	 * Server 10, Connection 28); then the variable parts, two numbers, a
	 * sign and the NUL that keeps the buffer a string. */
	need = 130 + 2 * HTTP_UINT_LEN + reason_len + extra_len + ctype_len + 2 * HTTP_DATE_LEN + server_len;
	if (outbuf_reserve(out, need))
		return -ENOMEM;
	p = out->data + out->len;
	p = HTTP_LIT(p, "HTTP/1.1 ");
	if (r->status < 0) {
		*p++ = '-';
		p = http_put(p, num, http_format_uint(num, (uint64_t)-(int64_t)r->status));
	} else {
		p = http_put(p, num, http_format_uint(num, (uint64_t)r->status));
	}
	*p++ = ' ';
	p = http_put(p, reason, reason_len);
	p = HTTP_LIT(p, "\r\n");
	if (extra_len)
		p = http_put(p, r->extra_headers, extra_len);
	p = HTTP_LIT(p, "Content-Type: ");
	p = http_put(p, ctype, ctype_len);
	p = HTTP_LIT(p, "\r\n");
	if (r->status == 200)
		p = HTTP_LIT(p, "Accept-Ranges: none\r\n");
	if (modified) {
		p = HTTP_LIT(p, "Last-Modified: ");
		p = http_put(p, modified, HTTP_DATE_LEN);
		p = HTTP_LIT(p, "\r\n");
	}
	p = HTTP_LIT(p, "Content-Length: ");
	p = http_put(p, num, http_format_uint(num, r->body_len));
	p = HTTP_LIT(p, "\r\nDate: ");
	if (date)
		p = http_put(p, date, HTTP_DATE_LEN);
	p = HTTP_LIT(p, "\r\nServer: ");
	p = http_put(p, server, server_len);
	if (r->close)
		p = HTTP_LIT(p, "\r\nConnection: close\r\n\r\n");
	else
		p = HTTP_LIT(p, "\r\nConnection: keep-alive\r\n\r\n");
	*p = '\0';
	out->len = (size_t)(p - out->data);
	return 0;
}

int http_write_response(struct outbuf *out, const struct http_response *r, time_t now)
{
	size_t start = out->len;
	int ret;

	ret = http_write_head(out, r, now);
	if (!ret && !r->head && r->body_len)
		ret = outbuf_append(out, r->body, r->body_len);
	/* All or nothing: a half-written response must not reach the wire. */
	if (ret)
		out->len = start;
	return ret;
}

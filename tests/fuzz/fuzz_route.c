/* fuzz_route.c: request bytes through the HTTP parser (http.c) and the
 * router (route_request) over the compiled trees of tests/fuzz/rich-vms.json,
 * as imdsd's request path does, without I/O.  Every response must be
 * well framed: a status line whose code is the route result's, a header
 * end, and a Content-Length that counts the body (HEAD: no body).  The
 * input is fed twice, whole and in small pieces: both must route the same
 * requests with the same statuses, and stop with an error both or neither.
 * Which error may differ when the bytes hold several: llhttp hands over a
 * URL span only where it ends, so a target over HTTP_URL_MAX that later
 * holds an invalid character is 400 fed whole (the character is seen
 * first) and 414 fed in pieces (each piece's span is counted) — found by
 * this target, corpus/route/url-over-limit-then-invalid; either answer
 * closes the connection. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_vms.h"
#include "http/http.h"
#include "http/router.h"
#include "lib/outbuf.h"

#define ROUTE_MAX_REQS 64 /* statuses compared per feed */

static struct fuzz_vm vms[FUZZ_VMS_MAX];
static size_t n_vms;

struct route_feed {
	struct route_ctx ctx;
	struct outbuf out;
	bool stopped; /* a response said close: later requests are ignored */
	int n;
	int status[ROUTE_MAX_REQS];
};

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	n_vms = fuzz_vms_load(vms);
	return 0;
}

static const char *route_find(const char *hay, size_t len, const char *needle)
{
	return memmem(hay, len, needle, strlen(needle));
}

/* The response in out is framed as res says. */
static void route_check_response(const struct outbuf *out, const struct route_result *res,
				 const struct http_request *req)
{
	const char *end, *cl;
	size_t head_len, body_len;

	if (out->len < 12 || memcmp(out->data, "HTTP/1.1 ", 9) || atoi(out->data + 9) != res->status ||
	    res->status < 200 || res->status > 599)
		abort();
	end = route_find(out->data, out->len, "\r\n\r\n");
	if (!end)
		abort();
	head_len = (size_t)(end + 4 - out->data);
	body_len = out->len - head_len;
	cl = route_find(out->data, head_len, "\r\nContent-Length: ");
	if (!cl)
		abort();
	if (req->method == HTTP_M_HEAD ? body_len != 0 : strtoul(cl + 18, NULL, 10) != body_len)
		abort();
}

static int route_on_request(void *arg, const struct http_request *req)
{
	struct route_feed *f = arg;
	struct route_result res = { 0 };

	if (f->stopped)
		return 1;
	outbuf_reset(&f->out);
	if (route_request(&f->ctx, req, &f->out, &res))
		abort(); /* -ENOMEM only, which the fuzzer's limits do not reach */
	route_check_response(&f->out, &res, req);
	if (f->n < ROUTE_MAX_REQS)
		f->status[f->n] = res.status;
	f->n++;
	f->stopped = res.close;
	return f->stopped;
}

/* Feeds data in pieces of `piece` bytes (0: whole) as a connection would
 * receive it; returns http_feed's last result. */
static int route_feed_run(const struct fuzz_vm *vm, const uint8_t *data, size_t len, size_t piece,
			  struct route_feed *f)
{
	struct http_conn *c = malloc(sizeof(*c));
	int rc = 0;

	if (!c)
		abort();
	memset(f, 0, sizeof(*f));
	f->ctx = (struct route_ctx){ .tree = &vm->view, .token_key = fuzz_key, .now = FUZZ_NOW };
	http_conn_init(c);
	for (size_t off = 0; off < len && rc == 0 && !f->stopped;) {
		size_t n = piece && len - off > piece ? piece : len - off;

		rc = http_feed(c, (const char *)data + off, n, route_on_request, f);
		off += n;
	}
	free(c);
	outbuf_free(&f->out);
	return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
	static struct route_feed whole, pieces;
	size_t piece = 1 + len % 7;

	for (size_t i = 0; i < n_vms; i++) {
		int a = route_feed_run(&vms[i], data, len, 0, &whole);
		int b = route_feed_run(&vms[i], data, len, piece, &pieces);

		if ((a != b && (a >= 0 || b >= 0)) || whole.n != pieces.n ||
		    memcmp(whole.status, pieces.status, sizeof(int) * (size_t)(whole.n < ROUTE_MAX_REQS ? whole.n : ROUTE_MAX_REQS)))
			abort();
	}
	return 0;
}

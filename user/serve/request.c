/* request.c: a connection's input and output in the io_uring server
 * (server_int.h): bytes in, requests routed against one snapshot of the
 * VM's tree, responses queued and sent one send at a time.
 *
 * Every request is charged to the VM's request bucket (vmlimits.c,
 * docs/limits.md), shared by all workers, and answered 429 when it is
 * empty.  A token reply with a hop limit is sent after the connection's
 * endpoint is marked (hop.c).
 */
#include "serve/server_int.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>

#include "http/router.h"

#define SRV_MAX_UNSENT (256 * 1024) /* a client that pipelines without reading */

/* What the request callback tells the input path (returned through
 * http_feed, which passes a non-zero callback result straight back). */
enum srv_feed {
	FEED_STOP = 1, /* a response said close: ignore further requests */
	FEED_GONE = 2, /* the VM was deleted: close without a response */
	FEED_FAIL = 3, /* out of memory: close */
};


/* ---- output ---- */

static size_t srv_unsent(const struct srv_conn *c)
{
	return c->out.len + c->wire.len - c->wire_off;
}

/* Moves the next run of `out` to the (empty) wire buffer.  A pending hop
 * mark splits the run: bytes before the token reply are handed to the
 * kernel unmarked, then the connection is marked, then the token reply. */
static int srv_stage(struct srv_conn *c)
{
	size_t n = c->out.len;
	struct outbuf tmp;
	int rc;

	if (c->ttl && c->ttl_mark == 0) {
		rc = srv_hop_mark(c, c->ttl);
		if (rc < 0)
			return rc;
		c->ttl = 0;
		if (!c->close_after_send && !srv_hop_hold(c->w, c))
			c->close_after_send = true;
	}
	if (c->ttl)
		n = c->ttl_mark;
	if (n == 0)
		return 0;
	if (n == c->out.len) {
		tmp = c->wire;
		c->wire = c->out;
		c->out = tmp;
		outbuf_reset(&c->out);
	} else {
		if (outbuf_append(&c->wire, c->out.data, n))
			return -ENOMEM;
		outbuf_consume(&c->out, n);
	}
	if (c->ttl)
		c->ttl_mark -= n;
	return 0;
}

/* Keeps one send in flight per connection; closes once everything went out
 * if a response (or the peer's EOF) asked for it. */
static void srv_flush(struct srv_worker *w, struct srv_conn *c)
{
	struct io_uring_sqe *sqe;

	if (c->send_inflight || c->closing)
		return;
	if (c->acking) { /* everything went out: the peer's EOF or data */
		srv_ack_check(w, c, srv_now_ms());
		return;
	}
	if (c->wire_off >= c->wire.len) {
		outbuf_reset(&c->wire);
		c->wire_off = 0;
		if (srv_stage(c) < 0) {
			srv_conn_close(w, c);
			return;
		}
	}
	if (c->wire.len == 0) {
		if (c->close_after_send && !(c->hop_marked && srv_await_ack(w, c)))
			srv_conn_close(w, c);
		return;
	}
	sqe = srv_sqe(w);
	if (!sqe) {
		srv_conn_close(w, c);
		return;
	}
	io_uring_prep_send(sqe, c->fd, c->wire.data + c->wire_off, c->wire.len - c->wire_off, MSG_NOSIGNAL);
	srv_set_data(sqe, c, OP_SEND);
	c->send_inflight = true;
}

static int srv_write_status(struct srv_conn *c, int status)
{
	const char *reason = http_reason(status);
	struct http_response r = {
		.status = status,
		.ctype = CT_TEXT,
		.body = reason,
		.body_len = strlen(reason),
		.close = true,
	};

	c->close_after_send = true;
	return http_write_response(&c->out, &r, time(NULL));
}

/* ---- requests ---- */

/* Routes one request against one snapshot of the VM's tree.  1 when the
 * response in `out` was built from a tree that stayed valid throughout, 0
 * when the tree changed underneath (the caller retries), -ENOENT when the
 * VM is gone, -EINVAL when its published tree is not valid, -ENOMEM. */
static int srv_route_once(struct srv_worker *w, struct srv_conn *c, const struct http_request *req,
			  struct route_result *res, struct srv_vm_facts *facts)
{
	const struct server_config *cfg = &w->srv->cfg;
	struct vm_snapshot snap;
	struct route_ctx ctx;
	size_t mark = c->out.len;
	int rc;

	rc = store_snapshot(cfg->store, c->slot, c->generation, &snap);
	if (rc == -EAGAIN)
		return 0;
	if (rc < 0)
		return rc;
	ctx = (struct route_ctx){ .tree = &snap.tree,
				  .token_key = cfg->token_key,
				  .now = time(NULL),
				  .tree_generation = (uint32_t)(snap.tree_ref >> 32),
				  .token_memo = &c->token_memo };
	memset(res, 0, sizeof(*res));
	rc = route_request(&ctx, req, &c->out, res);
	/* Read before the validity check: it comes from the same snapshot. */
	srv_read_facts(&snap.tree, facts);
	if (store_snapshot_valid(cfg->store, &snap)) {
		tree_view_hint(&snap.tree, &c->tree_hint);
		return rc < 0 ? rc : 1;
	}
	c->out.len = mark; /* drop what a torn read produced */
	return 0;
}

/* 429: the VM's request budget is spent.  Retry-After says when the next
 * request fits (RFC 6585 §4), in whole seconds, at least 1.  The
 * connection stays as the request asked: closing would only make the
 * client pay a new handshake for its retry. */
static int srv_write_throttled(struct srv_conn *c, const struct http_request *req, uint64_t wait_ns)
{
	const char *reason = http_reason(429);
	uint64_t secs = (wait_ns + LIMITS_NS_PER_SEC - 1) / LIMITS_NS_PER_SEC;
	char retry[48];
	struct http_response r = {
		.status = 429,
		.ctype = CT_TEXT,
		.body = reason,
		.body_len = strlen(reason),
		.close = !req->keep_alive,
		.head = req->method == HTTP_M_HEAD,
		.extra_headers = retry,
	};

	snprintf(retry, sizeof(retry), "Retry-After: %llu\r\n", (unsigned long long)(secs ? secs : 1));
	return http_write_response(&c->out, &r, time(NULL));
}

/* Answers one complete request; *a says what the answer was (status 0:
 * none), *end_ns when it was built (0: not read). */
static int srv_answer(struct srv_conn *c, const struct http_request *req, struct stats_answer *a, uint64_t *end_ns)
{
	struct srv_vm_facts facts = { 0 };
	struct route_result res;
	size_t mark = c->out.len;
	uint64_t wait;
	int rc = 0;

	c->req_start_ms = 0; /* complete: its header timeout no longer runs */
	if (c->close_after_send)
		return FEED_STOP;
	/* Responses already pile up unread: a client that pipelines without
	 * reading is dropped before it gets more.  Checked before each request,
	 * so one large answer (user data beyond 16 KiB) still goes out whole. */
	if (srv_unsent(c) > SRV_MAX_UNSENT)
		return FEED_GONE;
	for (int tries = 0; tries < SRV_ROUTE_TRIES && rc == 0; tries++)
		rc = srv_route_once(c->w, c, req, &res, &facts);
	if (rc == -ENOENT)
		return FEED_GONE;
	if (rc == 0 || rc == -EINVAL) {
		/* 503: the tree kept changing under us, the client may retry;
		 * 500: the published image is not a tree (a bug, logged). */
		if (rc == -EINVAL)
			log_error("slot %u: the published tree is invalid", c->slot);
		a->status = rc ? 500 : 503;
		return srv_write_status(c, a->status) ? FEED_FAIL : FEED_STOP;
	}
	if (rc < 0)
		return FEED_FAIL;
	/* Charged once the request is routed against a valid tree, because
	 * the budget is part of that tree; over it, the routed response is
	 * dropped (routing is side-effect free) and 429 goes instead. */
	*a = (struct stats_answer){
		.flavor = res.flavor, .tokenless = res.tokenless, .token_issued = res.token_issued, .status = res.status
	};
	*end_ns = srv_now_ns();
	wait = limits_charge(c->w->srv->limits, c->slot, facts.limits.rate, facts.limits.burst, *end_ns);
	if (wait) {
		*a = (struct stats_answer){ .flavor = res.flavor, .status = 429 };
		c->out.len = mark;
		if (srv_write_throttled(c, req, wait))
			return FEED_FAIL;
		if (!req->keep_alive) {
			c->close_after_send = true;
			return FEED_STOP;
		}
		return 0;
	}
	if (res.token_reply && facts.hop_limit > 0) {
		c->ttl = facts.hop_limit;
		c->ttl_mark = mark;
		c->hop_end = c->sent_total + (c->wire.len - c->wire_off) + c->out.len;
	}
	if (res.close || !req->keep_alive) {
		c->close_after_send = true;
		return FEED_STOP;
	}
	return 0;
}

/* http_feed's callback, once per complete request, in order: answers it
 * and counts the answer (stats.h) with the time from the bytes that
 * completed it to its response. */
static int srv_on_request(void *ctx, const struct http_request *req)
{
	struct srv_conn *c = ctx;
	struct stats_answer a = { 0 };
	uint64_t end = 0;
	int rc = srv_answer(c, req, &a, &end);

	if (a.status)
		stats_count(&c->w->stats, c->slot, c->generation, &a, (end ? end : srv_now_ns()) - c->w->input_ns);
	return rc;
}

/* Feeds received bytes and queues the responses. */
static void srv_conn_input(struct srv_worker *w, struct srv_conn *c, const char *data, size_t len)
{
	struct stats_answer bad = { .flavor = ROUTE_FLAVOR_NONE };
	int rc;

	w->input_ns = srv_now_ns();
	c->last_active_ms = w->input_ns / 1000000u;
	fair_touch(&w->fair, &c->fair);
	if (c->close_after_send)
		return; /* a response said close: later requests are not answered */
	/* The request usually carries the ACK of a token reply before it:
	 * then its own reply leaves at the normal TTL. */
	if (c->hop_open)
		srv_hop_release(w, c);
	rc = http_feed(&c->http, data, len, srv_on_request, c);
	/* The header timeout runs from the first byte of a request to its
	 * end: srv_on_request stops it, and bytes left of a next request
	 * start it again. */
	if (!srv_mid_request(c))
		c->req_start_ms = 0;
	else if (!c->req_start_ms)
		c->req_start_ms = c->last_active_ms;
	/* rc < 0: not HTTP (-400, -413, -414, -431): answer that status and
	 * close.  FEED_GONE also covers a client that is not reading
	 * (srv_on_request). */
	if (rc < 0) {
		bad.status = -rc <= 599 && -rc >= 400 ? -rc : 400;
		stats_count(&w->stats, c->slot, c->generation, &bad, srv_now_ns() - w->input_ns);
		rc = srv_write_status(c, bad.status) < 0 ? FEED_FAIL : 0;
	}
	if (rc == FEED_GONE || rc == FEED_FAIL)
		srv_conn_close(w, c);
	else
		srv_flush(w, c);
}

/* ---- completions ---- */

/* Asks the CPU for the memory the request about to be parsed will read
 * first: its VM's tree as the last request found it (tree_hint_prefetch),
 * the worker's counts of the VM, the VM's request bucket.  Those loads
 * then overlap the parse instead of stalling the lookup one miss after
 * another: with hundreds of VMs taking turns, each request finds its VM's
 * data gone from the cache (docs/performance.md, "Request by request
 * against the null responder").  Hints only: nothing is read through them. */
static void srv_prefetch_request(struct srv_worker *w, const struct srv_conn *c)
{
	tree_hint_prefetch(&c->tree_hint);
	__builtin_prefetch(&w->stats.vms[c->slot], 1); /* sized to the store's slots, as c->slot */
	limits_prefetch(w->srv->limits, c->slot);
}

void srv_handle_recv(struct srv_worker *w, struct srv_conn *c, const struct io_uring_cqe *cqe, bool more)
{
	int res = cqe->res;

	if (!more)
		c->recv_armed = false;
	if (cqe->flags & IORING_CQE_F_BUFFER) {
		unsigned bid = cqe->flags >> IORING_CQE_BUFFER_SHIFT;

		if (res > 0 && !c->closing) {
			srv_prefetch_request(w, c);
			srv_conn_input(w, c, (const char *)w->bufs + (size_t)bid * SRV_BUF_SIZE, (size_t)res);
		}
		/* http_feed copied what it keeps of the request: the buffer
		 * can go back to the kernel right away. */
		srv_buf_recycle(w, bid);
	}
	if (c->closing)
		return;
	if (res == 0) {
		/* EOF: the peer will send nothing more, but may still read
		 * (half-close); answer what it asked and then close. */
		c->close_after_send = true;
		srv_flush(w, c);
	} else if (res < 0 && res != -ENOBUFS) {
		srv_conn_close(w, c);
	} else if (!more && !c->close_after_send) {
		/* Also after -ENOBUFS: every provided buffer was in use when
		 * data arrived and the kernel ended the multishot receive.
		 * Buffers go back as completions are handled, so arming
		 * again is enough. */
		srv_arm_recv(w, c);
	}
}

void srv_handle_send(struct srv_worker *w, struct srv_conn *c, int res)
{
	c->send_inflight = false;
	if (c->closing)
		return;
	if (res <= 0) { /* EPIPE, ECONNRESET: the peer is gone */
		srv_conn_close(w, c);
		return;
	}
	/* A stream send may be short: the rest goes in the next one. */
	c->wire_off += (size_t)res;
	c->sent_total += (uint64_t)res;
	srv_hop_sent(c, (size_t)res);
	/* The batch's time; a receive in the same batch may have set a
	 * later one. */
	if (w->drain_ms > c->last_active_ms)
		c->last_active_ms = w->drain_ms;
	srv_flush(w, c);
}

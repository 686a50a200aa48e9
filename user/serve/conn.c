/* conn.c: a connection's lifetime in the io_uring server (server_int.h).
 * A socket is served only if the data plane verified its SYN and its VM is
 * under max-connections (vmlimits.c, docs/limits.md: counted at accept,
 * once the VM is known, and refused without a byte beyond it).  Closing
 * stops its requests; it is freed when their last completions are in.
 * Once a second the worker closes idle connections and logs who was held
 * back by the limits; on stop it closes every connection.
 */
#include "serve/server_int.h"

#include <errno.h>
#include <stddef.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define SRV_LIMITS_LOG_SEC 10 /* how often worker 0 logs 429s and refusals */
#define SRV_EVICT_SCAN 8	     /* oldest connections of a VM looked at for one eviction */
#define SRV_EVICT_VMS 4	     /* VMs of the highest count tried for one eviction */
#define SRV_EVICT_SLACK 48   /* admitted over the total cap while closed ones are freed */
#define SRV_CONN_POOL 256    /* freed connections a worker keeps for reuse (about 5 KiB each) */
#define SRV_POOL_BUF_MAX 16384 /* ... with their output buffers up to this size */

/* A descriptor went back: an accept that stopped at EMFILE may go on
 * (rather than at the next tick, a second during which every VM's new
 * connections wait in the backlog). */
static void srv_accept_resume(struct srv_worker *w)
{
	w->fds_released++;
	if (w->accept_paused && !w->stopping && w->ring_ready) {
		w->accept_paused = false;
		srv_arm_accept(w);
	}
}

/* Closes `fd` in the worker's next io_uring_enter rather than by a
 * syscall of its own (each costs an entry and exit into the kernel, about
 * 1.1 us of CPU on the project's machine: docs/performance.md, "Where a
 * connection's time goes").  A socket's close runs inline there, it never
 * blocks.  (A shutdown would not: io_uring hands every IORING_OP_SHUTDOWN
 * to its worker threads, which cost far more than the syscall.)  The
 * number stays taken until the close runs, so nothing can reuse it in
 * between.  false when the ring has no room: the caller closes it. */
static bool srv_ring_close(struct srv_worker *w, int fd)
{
	struct io_uring_sqe *sqe;

	if (!w->ring_ready || w->stopping)
		return false;
	if (!io_uring_sq_space_left(&w->ring))
		io_uring_submit(&w->ring);
	if (!io_uring_sq_space_left(&w->ring))
		return false;
	sqe = srv_sqe(w);
	io_uring_prep_close(sqe, fd);
	srv_set_data(sqe, NULL, OP_FD_DONE);
	return true;
}

/* The socket's descriptor is closed or on its way (srv_ring_close): out of
 * the total. */
static void srv_conn_fd_gone(struct srv_worker *w, struct srv_conn *c)
{
	c->fd = -1;
	if (c->counted)
		__atomic_sub_fetch(&w->srv->conns_open, 1, __ATOMIC_RELAXED);
	if (c->closing_counted)
		__atomic_sub_fetch(&w->srv->conns_closing, 1, __ATOMIC_RELAXED);
	srv_accept_resume(w);
}

/* Closes the socket's descriptor and takes it out of the total.  Requests
 * still pending hold the file itself, not the number, so this may come
 * before their last completions. */
static void srv_conn_release_fd(struct srv_worker *w, struct srv_conn *c)
{
	if (c->fd < 0)
		return;
	if (!srv_ring_close(w, c->fd))
		close(c->fd);
	srv_conn_fd_gone(w, c);
}

/* ---- connection memory ----
 *
 * A connection per request (cloud-init's pattern) would otherwise pay a
 * malloc and a free for the connection and for each output buffer, and
 * zero all of its 4.7 KiB twice.  Freed connections go on the worker's
 * pool and come back last freed first, so their memory is still in
 * cache, with their (small) output buffers kept.  The request parser's
 * buffers are not zeroed on reuse (http_conn_init): its strings carry
 * their own ends, so a request never reads an earlier one's bytes past
 * them, as on a kept-alive connection. */

static void srv_buf_keep_small(struct outbuf *b)
{
	if (b->cap > SRV_POOL_BUF_MAX)
		outbuf_free(b);
	else
		outbuf_reset(b);
}

static void srv_conn_memory_free(struct srv_conn *c)
{
	outbuf_free(&c->out);
	outbuf_free(&c->wire);
	free(c);
}

static void srv_conn_pool_put(struct srv_worker *w, struct srv_conn *c)
{
	if (w->npool >= SRV_CONN_POOL || w->stopping) {
		srv_conn_memory_free(c);
		return;
	}
	srv_buf_keep_small(&c->out);
	srv_buf_keep_small(&c->wire);
	c->next = w->pool;
	w->pool = c;
	w->npool++;
}

/* A connection whose every field reads zero, its output buffers empty. */
static struct srv_conn *srv_conn_pool_get(struct srv_worker *w)
{
	struct outbuf out = { 0 }, wire = { 0 };
	struct srv_conn *c = w->pool;
	const size_t http_end = offsetof(struct srv_conn, http) + sizeof(c->http);

	if (c) {
		w->pool = c->next;
		w->npool--;
		out = c->out;
		wire = c->wire;
	} else if (posix_memalign((void **)&c, 16, sizeof(*c))) {
		/* 16-byte alignment leaves the low bits of the pointer for the op tag. */
		return NULL;
	}
	memset(c, 0, offsetof(struct srv_conn, http));
	memset((char *)c + http_end, 0, sizeof(*c) - http_end);
	http_conn_init(&c->http);
	c->out = out;
	c->wire = wire;
	return c;
}

static void srv_conn_pool_free(struct srv_worker *w)
{
	while (w->pool) {
		struct srv_conn *c = w->pool;

		w->pool = c->next;
		srv_conn_memory_free(c);
	}
	w->npool = 0;
}

void srv_conn_free(struct srv_conn *c)
{
	bool queue_dropped = false;

	srv_list_unlink(c);
	if (c->acking || c->hop_open)
		c->w->nacking--;
	/* A reset token connection: closed here, not on the ring, so that its
	 * mark can go as soon as nothing of the reply can leave any more. */
	if (c->hop_marked && c->zero_linger && c->fd >= 0) {
		close(c->fd);
		srv_conn_fd_gone(c->w, c);
		queue_dropped = true;
	}
	srv_hop_unmark(c, queue_dropped);
	fair_remove(&c->w->fair, &c->fair);
	if (c->counted)
		limits_conn_close(c->w->srv->limits, c->slot, c->generation);
	srv_conn_release_fd(c->w, c);
	srv_conn_pool_put(c->w, c);
}

/* Stops serving `c`: no more input, output or re-arming.  Its memory stays
 * until srv_conn_maybe_free sees nothing in flight. */
void srv_conn_close(struct srv_worker *w, struct srv_conn *c)
{
	struct io_uring_sqe *sqe;

	if (c->closing)
		return;
	c->closing = true;
	/* No longer one of its VM's connections to weigh or evict. */
	fair_remove(&w->fair, &c->fair);
	/* Closing the fd would not stop requests that hold the file.  A lone
	 * multishot receive (the usual case: the last response went out) is
	 * ended by shutdown(), which sends the FIN close() would have sent
	 * and completes the receive with EOF; an async cancel instead walks
	 * every request pending on the ring, which grows with the number of
	 * open connections.  A send in flight, or a socket that shutdown()
	 * refuses, is cancelled by fd (while the fd still names the socket).
	 * The connection is freed when the last completions have arrived.
	 * After a shutdown nothing needs the number any more: the descriptor
	 * goes back now, not a batch of completions later, which under a
	 * flood of new connections is what keeps the total honest.  (A hop
	 * mark's check at free still reads the socket's queue through it.)
	 * A connection whose one request said close has no receive left
	 * (srv_arm_recv_as) and needs neither. */
	if (c->recv_armed && !c->send_inflight && !w->stopping && shutdown(c->fd, SHUT_RDWR) == 0) {
		if (!c->hop_marked)
			srv_conn_release_fd(w, c);
		return;
	}
	if (c->counted) { /* its descriptor comes back when it is freed */
		__atomic_add_fetch(&w->srv->conns_closing, 1, __ATOMIC_RELAXED);
		c->closing_counted = true;
	}
	if ((c->recv_armed || c->send_inflight) && !w->stopping) {
		sqe = srv_sqe(w);
		if (sqe) {
			io_uring_prep_cancel_fd(sqe, c->fd, IORING_ASYNC_CANCEL_ALL);
			srv_set_data(sqe, c, OP_CANCEL);
			c->cancel_inflight = true;
		} else {
			shutdown(c->fd, SHUT_RDWR); /* wakes the requests instead */
		}
	}
}

static struct srv_conn *srv_conn_new(struct srv_worker *w, int fd, const struct imds_conn_key *peer, uint32_t slot,
				     uint32_t generation)
{
	struct srv_conn *c = srv_conn_pool_get(w);

	if (!c)
		return NULL;
	c->w = w;
	c->fd = fd;
	c->slot = slot;
	c->generation = generation;
	c->peer = *peer;
	c->last_active_ms = srv_now_ms();
	if (fair_add(&w->fair, &c->fair, slot) < 0) {
		srv_conn_pool_put(w, c);
		return NULL;
	}
	srv_list_push(&w->conns, c);
	return c;
}

/* The VM's facts at accept, from one snapshot that stayed valid.  0, or
 * -ENOENT when the VM is gone.  A tree that keeps changing or is invalid
 * gives the defaults: its requests get 503 or 500 anyway. */
static int srv_accept_facts(struct srv_worker *w, uint32_t slot, uint32_t generation, struct srv_vm_facts *f)
{
	struct store *store = w->srv->cfg.store;
	struct vm_snapshot snap;
	int rc = -EAGAIN;

	for (int tries = 0; tries < SRV_ROUTE_TRIES && rc == -EAGAIN; tries++) {
		rc = store_snapshot(store, slot, generation, &snap);
		if (rc == 0) {
			srv_read_facts(&snap.tree, f);
			if (!store_snapshot_valid(store, &snap))
				rc = -EAGAIN;
		}
	}
	if (rc == -ENOENT)
		return rc;
	if (rc < 0)
		f->limits = limits_resolve(0, 0, 0);
	return 0;
}

/* ---- the total cap and fair eviction (docs/limits.md, "Descriptors") ---- */

/* Whether the server owes `c` nothing: no response queued or being sent,
 * not waiting for its last ACK.  It waits for its client (idle between
 * requests, or in the middle of one), so closing it loses no answer. */
static bool srv_conn_evictable(const struct srv_conn *c)
{
	return !c->closing && !c->acking && !c->hop_open && !c->send_inflight && c->out.len == 0 && c->wire_off >= c->wire.len &&
	       !c->close_after_send;
}

/* The least recently active evictable connection of `slot` on this worker,
 * looking at its SRV_EVICT_SCAN oldest only (a connection being answered
 * was active a moment ago, so it is rarely among them). */
static struct srv_conn *srv_evict_pick(struct srv_worker *w, uint32_t slot)
{
	struct fair_node *n = fair_oldest(&w->fair, slot);

	for (int i = 0; n && i < SRV_EVICT_SCAN; i++, n = fair_next(&w->fair, n)) {
		struct srv_conn *c = (struct srv_conn *)((char *)n - offsetof(struct srv_conn, fair));

		if (srv_conn_evictable(c))
			return c;
	}
	return NULL;
}

/* Makes room for a newcomer of `slot` by closing the least recently
 * active connection of the VM holding most on this worker, provided that
 * VM holds at least two more than the newcomer's: then the gap between
 * them shrinks.  With one more, the two would only trade places, and VMs
 * that all want more than their share would evict each other for ever;
 * a hoarder's own newcomers are refused, not traded for its older ones.  Each
 * worker weighs its own connections: the kernel spreads every VM's over
 * the workers, so the local picture is the global one in small. */
static bool srv_evict_for(struct srv_worker *w, uint32_t slot)
{
	uint32_t most, vm = fair_top(&w->fair, &most);

	if (most < fair_count(&w->fair, slot) + 2)
		return false;
	for (int tries = 0; vm && tries < SRV_EVICT_VMS; tries++, vm = fair_top_next(&w->fair, vm)) {
		struct srv_conn *c = srv_evict_pick(w, vm);

		if (!c)
			continue;
		srv_count(&w->counts.evicted);
		limits_count(w->srv->limits, c->slot, c->generation, LIMITS_EV_EVICTED);
		srv_conn_close(w, c);
		srv_conn_maybe_free(c);
		return true;
	}
	return false;
}

/* The VM's new connections stop at the data plane for a while
 * (IMDS_CONN_GATE_NS, struct imds_conn_gate): a client that reconnects at
 * once would otherwise cost a handshake, an accept and a close each time,
 * thousands a second, on the cores every other VM is served from. */
static void srv_gate(struct srv_worker *w, uint32_t slot, uint32_t generation)
{
	if (store_gate_conns(w->srv->cfg.store, slot, generation, IMDS_CONN_GATE_NS) == 0)
		srv_count(&w->counts.gated);
}

/* Refused at the total cap, the VM is a hoarder only if it is among those
 * holding most here; a VM with one or no connection was crowded out, and
 * closing the newcomer (clients retry at once) serves it sooner than a
 * dropped SYN would (retried after a second). */
static bool srv_holds_most(const struct srv_worker *w, uint32_t slot)
{
	uint32_t most, held = fair_count(&w->fair, slot);

	fair_top(&w->fair, &most);
	return held >= 2 && held + 1 >= most;
}

/* Counts a newcomer in the total: under the cap; or over it, by at most
 * SRV_EVICT_SLACK descriptors, when connections already closing will give
 * theirs back within a few completions (the idle tick may close hundreds
 * at once), or when room is made by evicting one.  0, or -EMFILE:
 * refused. */
static int srv_admit(struct srv_worker *w, uint32_t slot, uint32_t generation)
{
	struct server *srv = w->srv;
	uint64_t open = __atomic_fetch_add(&srv->conns_open, 1, __ATOMIC_RELAXED);
	uint64_t closing = __atomic_load_n(&srv->conns_closing, __ATOMIC_RELAXED);
	uint64_t cap = srv->max_conns_total;
	bool room_coming;

	if (open < cap)
		return 0;
	room_coming = open - (closing < open ? closing : open) < cap;
	/* Closing ones let anyone in, within half the slack.  The other half
	 * stays for newcomers that evict or whose VM holds nothing here, so a
	 * hoarder refilling the room the tick just made cannot keep a quiet
	 * VM out. */
	if (open < cap + SRV_EVICT_SLACK / 2 && room_coming)
		return 0;
	if (open < cap + SRV_EVICT_SLACK && (srv_evict_for(w, slot) || (room_coming && !fair_count(&w->fair, slot))))
		return 0;
	__atomic_sub_fetch(&srv->conns_open, 1, __ATOMIC_RELAXED);
	srv_count(&w->counts.refused_total);
	limits_count(srv->limits, slot, generation, LIMITS_EV_OVER_TOTAL);
	if (srv_holds_most(w, slot))
		srv_gate(w, slot, generation);
	return -EMFILE;
}

/* A new socket: served only if the data plane verified its SYN, only
 * while its VM holds fewer than max-connections, and only while the
 * total holds room or room can be made fairly.  A refused connection is
 * closed without a byte, as an unverified one: nothing of it is kept, and
 * clients retry a closed connection like any network error
 * (docs/limits.md). */
void srv_conn_open(struct srv_worker *w, int fd, const struct imds_conn_key *peer)
{
	struct limits *limits = w->srv->limits;
	struct srv_vm_facts facts;
	uint32_t slot, generation;
	struct srv_conn *c;

	if (!peer)
		goto reject;
	/* -ENOENT: no verified SYN for this (address, port): it did not come
	 * through a port of ours from a loaded VM.  No response at all. */
	if (store_take_conn(w->srv->cfg.store, peer, &slot, &generation) < 0)
		goto reject;
	if (srv_accept_facts(w, slot, generation, &facts) < 0)
		goto reject;
	switch (limits_conn_open(limits, slot, generation, facts.limits.max_conns)) {
	case LIMITS_OPEN_OK:
		break;
	case LIMITS_OPEN_FULL:
		srv_gate(w, slot, generation);
		goto reject;
	default:
		goto reject;
	}
	if (srv_admit(w, slot, generation) < 0) {
		limits_conn_close(limits, slot, generation);
		goto reject;
	}
	c = srv_conn_new(w, fd, peer, slot, generation);
	if (!c) {
		limits_conn_close(limits, slot, generation);
		__atomic_sub_fetch(&w->srv->conns_open, 1, __ATOMIC_RELAXED);
		goto reject;
	}
	c->counted = true;
	srv_arm_recv_as(w, c, false);
	return;
reject:
	close(fd);
	srv_accept_resume(w);
}

/* ---- the tick and the stop ---- */

/* The instance-id of the slot's VM of `generation`, or "?" if it is gone. */
static void srv_instance_id(struct store *store, uint32_t slot, uint32_t generation, char *out, size_t len)
{
	struct vm_snapshot snap;

	snprintf(out, len, "?");
	for (int tries = 0; tries < SRV_ROUTE_TRIES; tries++) {
		int rc = store_snapshot(store, slot, generation, &snap);

		if (rc == -ENOENT || rc == -EINVAL)
			return;
		if (rc < 0)
			continue;
		snprintf(out, len, "%.63s", tree_view_meta(&snap.tree)->instance_id);
		if (store_snapshot_valid(store, &snap))
			return;
		snprintf(out, len, "?");
	}
}

/* The descriptor limits' events of one VM since the last log, if any. */
static void srv_log_events(struct server *srv, uint32_t slot)
{
	uint64_t ev[LIMITS_EV_COUNT];
	uint32_t generation = limits_take_events(srv->limits, slot, ev);
	char iid[64];

	if (!ev[LIMITS_EV_EVICTED] && !ev[LIMITS_EV_OVER_TOTAL] && !ev[LIMITS_EV_SLOW])
		return;
	srv_instance_id(srv->cfg.store, slot, generation, iid, sizeof(iid));
	log_warn(
		"descriptors: %s (slot %u): %llu connections evicted, %llu refused at the total cap, "
		"%llu header timeouts",
		iid, slot, (unsigned long long)ev[LIMITS_EV_EVICTED], (unsigned long long)ev[LIMITS_EV_OVER_TOTAL],
		(unsigned long long)ev[LIMITS_EV_SLOW]);
}

void srv_sum_counters(const struct server *srv, struct server_counters *out)
{
	memset(out, 0, sizeof(*out));
	out->conns_open = __atomic_load_n(&srv->conns_open, __ATOMIC_RELAXED);
	for (int i = 0; i < srv->nworkers; i++) {
		const struct server_counters *c = &srv->workers[i].counts;

		out->refused_total += __atomic_load_n(&c->refused_total, __ATOMIC_RELAXED);
		out->evicted += __atomic_load_n(&c->evicted, __ATOMIC_RELAXED);
		out->header_timeouts += __atomic_load_n(&c->header_timeouts, __ATOMIC_RELAXED);
		out->idle_timeouts += __atomic_load_n(&c->idle_timeouts, __ATOMIC_RELAXED);
		out->gated += __atomic_load_n(&c->gated, __ATOMIC_RELAXED);
	}
}

/* The server's totals since start, when the descriptor limits acted since
 * the last log (idle timeouts alone are normal life, not worth a line). */
static void srv_log_totals(struct srv_worker *w)
{
	struct server_counters now;

	srv_sum_counters(w->srv, &now);
	if (now.evicted == w->logged.evicted && now.refused_total == w->logged.refused_total &&
	    now.header_timeouts == w->logged.header_timeouts && now.gated == w->logged.gated)
		return;
	log_warn(
		"descriptors: %llu connections open of %u; since start %llu evicted, %llu refused at the "
		"total cap, %llu header timeouts, %llu idle timeouts, %llu refusals gated in the data plane",
		(unsigned long long)now.conns_open, w->srv->max_conns_total, (unsigned long long)now.evicted,
		(unsigned long long)now.refused_total, (unsigned long long)now.header_timeouts,
		(unsigned long long)now.idle_timeouts, (unsigned long long)now.gated);
	w->logged = now;
}

/* Worker 0, every SRV_LIMITS_LOG_SEC: one line per VM that was answered
 * 429 or refused a connection meanwhile, so the operator sees who is held
 * back without a line per request. */
static void srv_log_limits(struct srv_worker *w, uint64_t now_ms)
{
	struct server *srv = w->srv;
	uint64_t throttled, refused;
	uint32_t generation;
	char iid[64];

	if (w->index != 0 || now_ms - w->limits_logged_ms < SRV_LIMITS_LOG_SEC * 1000u)
		return;
	w->limits_logged_ms = now_ms;
	for (uint32_t slot = 1; slot < srv->cfg.store->max_slots; slot++) {
		generation = limits_take_counts(srv->limits, slot, &throttled, &refused);
		if (throttled || refused) {
			srv_instance_id(srv->cfg.store, slot, generation, iid, sizeof(iid));
			log_warn(
				"limits: %s (slot %u): %llu requests answered 429, %llu connections refused",
				iid, slot, (unsigned long long)throttled, (unsigned long long)refused);
		}
		srv_log_events(srv, slot);
	}
	srv_log_totals(w);
}

/* Whether `c` is to be closed now: a request begun more than the header
 * timeout ago and still not complete (a trickle of bytes, each of which
 * would keep it from being idle: slowloris), or nothing from the client
 * for the idle timeout.  Counted. */
static bool srv_conn_expired(struct srv_worker *w, struct srv_conn *c, uint64_t now, uint64_t idle)
{
	if (c->req_start_ms && now - c->req_start_ms > (uint64_t)w->srv->cfg.header_timeout_ms) {
		srv_count(&w->counts.header_timeouts);
		limits_count(w->srv->limits, c->slot, c->generation, LIMITS_EV_SLOW);
		return true;
	}
	if (now - c->last_active_ms > idle) {
		srv_count(&w->counts.idle_timeouts);
		return true;
	}
	return false;
}

/* Once a second: close idle connections, which includes clients that stop
 * reading (their send never completes), retry a paused accept, and check
 * the connections waiting for an ACK (their own deadline, not the idle
 * timeout, ends them: they are not on the conns list). */
void srv_handle_tick(struct srv_worker *w)
{
	uint64_t now = srv_now_ms();
	uint64_t idle = (uint64_t)w->srv->cfg.idle_timeout_ms;
	struct srv_conn *c, *next;

	if (w->stopping)
		return;
	for (c = w->conns.next; c != &w->conns; c = next) {
		next = c->next;
		if (!c->closing && srv_conn_expired(w, c, now, idle)) {
			srv_conn_close(w, c);
			srv_conn_maybe_free(c);
		}
	}
	if (w->accept_paused) {
		w->accept_paused = false;
		srv_arm_accept(w);
	}
	/* Normally the poll does this; here in case it could not be armed. */
	srv_ack_check_all(w);
	if (w->nacking)
		srv_arm_ack_poll(w);
	srv_log_limits(w, now);
	srv_arm_tick(w);
}

/* server_stop wrote the eventfd: cancel every request of this ring (the
 * listener's accept, receives, sends, the tick) and let the completions
 * drain; connections are freed as their last completions arrive. */
void srv_handle_wake(struct srv_worker *w)
{
	struct io_uring_sqe *sqe;
	struct srv_conn *c, *next;

	w->stopping = true;
	for (c = w->conns.next; c != &w->conns; c = next) {
		next = c->next;
		srv_conn_close(w, c);
		srv_conn_maybe_free(c);
	}
	for (c = w->acking.next; c != &w->acking; c = next) {
		next = c->next;
		srv_conn_close(w, c);
		srv_conn_maybe_free(c);
	}
	sqe = srv_sqe(w);
	if (!sqe)
		return;
	io_uring_prep_cancel64(sqe, 0, IORING_ASYNC_CANCEL_ANY | IORING_ASYNC_CANCEL_ALL);
	srv_set_data(sqe, NULL, OP_STOP);
}

/* After a stop, whatever is left (a completion that never came) is freed
 * without waiting: the ring is torn down next, which ends its requests. */
static void srv_free_list(struct srv_conn *head)
{
	struct srv_conn *c, *next;

	for (c = head->next; c != head; c = next) {
		next = c->next;
		c->closing = true;
		c->recv_armed = c->send_inflight = c->cancel_inflight = false;
		srv_conn_maybe_free(c);
	}
}

void srv_free_conns(struct srv_worker *w)
{
	srv_free_list(&w->conns);
	srv_free_list(&w->acking);
	srv_conn_pool_free(w);
}

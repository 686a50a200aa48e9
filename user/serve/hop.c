/* hop.c: the hop limit of token replies (EC2 HttpPutResponseHopLimit) in
 * the io_uring server (server_int.h; docs/design.md, "Hop limit").
 *
 * The data plane's TC egress program enforces it: just before the first
 * byte of a token reply is handed to the kernel, the connection's VM-side
 * endpoint is marked in the store's hop_marks, and every later segment to
 * it leaves with TTL = hop limit.  Earlier pipelined replies were handed
 * to the kernel before the mark.  The mark holds until the client has
 * acknowledged the token reply's last byte, so no retransmission of it
 * leaves unlimited: a connection that closes after the reply waits for
 * that with its FIN sent (srv_await_ack); one kept open (the client asked
 * for keep-alive) goes on serving meanwhile (srv_hop_hold) and loses the
 * mark at the first check that finds the reply acknowledged, so the
 * replies after it leave at the normal TTL.
 *
 * Most replies carry no token, and the egress program would look each one
 * up in hop_marks for nothing.  hop_gate tells it when no mark can be live
 * (bpf/hoplimit.h): this file keeps it at or after the expiry of every
 * mark in the map, and back at the floor (marks left behind, which only
 * expire) whenever no mark of ours is live.
 */
#include "serve/server_int.h"

#include <errno.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

/* How long a hop-limited token reply may stay unacknowledged before its
 * connection is reset.  A guest that got the reply ACKs it within a round
 * trip; 2 s also covers a slow (TCG) or loaded guest and two or three
 * retransmissions of a lost segment (RTO from 200 ms, doubling), and stays
 * below the 5-10 s read timeouts clients give a token PUT. */
#define SRV_ACK_WAIT_MS 2000
#define SRV_ACK_POLL_MS 20 /* how often waiting connections are checked */
#define SRV_ACK_WAIT_MAX 256 /* connections waiting for an ACK, per worker */
#define SRV_ACK_WAIT_PER_VM 8 /* ... of which one VM may hold, per worker */

/* ---- the gate ----
 * Every mark in hop_marks is one of: live (placed by us, to be deleted by
 * us: counted in `live`, and the gate has stayed at or after its expiry
 * since `live` last left 0), left behind (by us, SIOCOUTQ not 0 at
 * close, or by an earlier imdsd: `floor` is at or after its expiry), or
 * one the data plane already ignores (expired).  So the gate never closes
 * on a mark that could limit a reply. */

static void srv_hop_gate_set(struct server *srv, uint64_t until)
{
	uint64_t *gate = srv->cfg.store->hop_gate;

	if (gate)
		__atomic_store_n(gate, until, __ATOMIC_RELEASE);
}

/* At start: the floor covers whatever marks an earlier imdsd left. */
void srv_hop_gate_init(struct server *srv)
{
	struct srv_hop_gate *g = &srv->hop_gate;
	const uint64_t *gate = srv->cfg.store->hop_gate;
	uint64_t left = store_hop_marks_latest(srv->cfg.store);

	pthread_mutex_init(&g->lock, NULL);
	g->live = 0;
	g->floor = gate ? __atomic_load_n(gate, __ATOMIC_ACQUIRE) : 0;
	if (left > g->floor)
		g->floor = left;
	srv_hop_gate_set(srv, g->floor);
}

/* Before a mark that expires at `expires` is placed; already_live: the
 * connection's earlier mark is still counted, and this one replaces it. */
static void srv_hop_gate_open(struct server *srv, uint64_t expires, bool already_live)
{
	struct srv_hop_gate *g = &srv->hop_gate;
	const uint64_t *gate = srv->cfg.store->hop_gate;

	pthread_mutex_lock(&g->lock);
	g->live += !already_live;
	if (!gate || __atomic_load_n(gate, __ATOMIC_RELAXED) < expires)
		srv_hop_gate_set(srv, expires);
	pthread_mutex_unlock(&g->lock);
}

/* After a mark of ours was deleted, or left behind to expire by itself
 * (left_until: its expiry or later; 0 when deleted). */
static void srv_hop_gate_close(struct server *srv, uint64_t left_until)
{
	struct srv_hop_gate *g = &srv->hop_gate;

	pthread_mutex_lock(&g->lock);
	if (left_until > g->floor)
		g->floor = left_until;
	if (g->live && --g->live == 0)
		srv_hop_gate_set(srv, g->floor);
	pthread_mutex_unlock(&g->lock);
}

/* Marks the connection's endpoint for the TC egress program: from now on
 * every segment to it leaves with TTL = hop limit.  Must succeed before a
 * token reply is handed to the kernel, or the reply is not sent at all.
 * A connection marked already (a second token reply before the first was
 * acknowledged) stays one live mark, with the later expiry. */
int srv_hop_mark(struct srv_conn *c, int hop_limit)
{
	struct server *srv = c->w->srv;
	uint64_t expires = store_hop_expiry();
	int rc;

	srv_hop_gate_open(srv, expires, c->hop_marked);
	rc = store_hop_mark(srv->cfg.store, &c->peer, c->slot, (uint8_t)hop_limit, expires);
	if (rc < 0) {
		if (!c->hop_marked)
			srv_hop_gate_close(srv, 0);
		return rc;
	}
	c->hop_marked = true;
	return 0;
}

/* The mark of `c` goes: the reply is acknowledged. */
static void srv_hop_forget(struct srv_conn *c)
{
	store_hop_forget(c->w->srv->cfg.store, &c->peer);
	c->hop_marked = false;
	srv_hop_gate_close(c->w->srv, 0);
}

/* At free: forget the mark only if the kernel holds no byte of the
 * connection any more (SIOCOUTQ = unsent + unacknowledged), or dropped
 * them: queue_dropped says the socket was just closed with zero linger,
 * which discards its queue and sends a RST before close() returns.
 * Otherwise the orphaned socket may still retransmit the token reply,
 * which must keep the hop limit; the mark then ends at its expiry or at
 * the endpoint's next verified SYN (the data plane deletes it there). */
void srv_hop_unmark(struct srv_conn *c, bool queue_dropped)
{
	int queued = 1;

	if (!c->hop_marked)
		return;
	if (queue_dropped) {
		srv_hop_forget(c);
		return;
	}
	/* all_acked: the acking path's own SIOCOUTQ said 0 after the FIN,
	 * and nothing is queued after a FIN, so asking again is a wasted
	 * system call. */
	if (c->all_acked || (ioctl(c->fd, TIOCOUTQ, &queued) == 0 && queued == 0)) {
		srv_hop_forget(c);
		return;
	}
	c->hop_marked = false;
	srv_hop_gate_close(c->w->srv, store_hop_expiry());
}

/* ---- token replies that may never arrive ----
 *
 * With the hop limit, a token reply to a client more hops away than allowed
 * dies in the guest's router, and so do its retransmissions.  Closing the
 * socket at once would leave that client waiting forever: clients without
 * a read timeout hang.  EC2 resets such a connection (capture C3).  So a
 * hop-limited connection sends its FIN as close() would, which is all a
 * client that got the reply sees, but the socket stays here until the
 * kernel holds no unacknowledged byte, then is closed normally; if that
 * has not happened by the deadline, it is closed with zero linger, which
 * sends a RST.  The data plane never limits a RST, so it reaches the
 * client.  Waiting connections keep their place in the VM's
 * max-connections until closed, and are bounded per worker and per VM;
 * past the bounds a connection is closed at once, as before. */

void srv_arm_ack_poll(struct srv_worker *w)
{
	struct io_uring_sqe *sqe;

	if (w->ack_poll_armed || w->stopping)
		return;
	sqe = srv_sqe(w);
	if (!sqe)
		return; /* the tick checks the waiting connections too */
	w->ack_poll.tv_sec = 0;
	w->ack_poll.tv_nsec = SRV_ACK_POLL_MS * 1000000L;
	io_uring_prep_timeout(sqe, &w->ack_poll, 0, 0);
	srv_set_data(sqe, NULL, OP_ACK_POLL);
	w->ack_poll_armed = true;
}

/* Whether the peer acknowledged every byte and the FIN.  SIOCOUTQ on TCP
 * counts the bytes sent or queued but not acknowledged (the FIN counts as
 * one); a socket that can no longer answer has nothing left to wait for. */
static bool srv_all_acked(struct srv_conn *c)
{
	int queued = 1;

	if (ioctl(c->fd, TIOCOUTQ, &queued) < 0)
		return true;
	c->all_acked = queued == 0;
	return c->all_acked;
}

/* Past the deadline: zero linger makes close() drop the queue and send a
 * RST (tcp_disconnect) instead of retransmitting on. */
static void srv_conn_reset(struct srv_worker *w, struct srv_conn *c)
{
	static const struct linger reset = { .l_onoff = 1, .l_linger = 0 };

	if (setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &reset, sizeof(reset)) < 0)
		log_error("worker %d: SO_LINGER: %s", w->index, strerror(errno));
	else
		c->zero_linger = true;
	srv_conn_close(w, c);
}

/* Whether the client acknowledged every byte up to the end of the last
 * hop-limited reply: the kernel took sent_total bytes and still holds
 * SIOCOUTQ of them unacknowledged.  Bytes of a send still in flight are
 * queued but not yet in sent_total, which can only make it "not yet". */
static bool srv_hop_reply_acked(const struct srv_conn *c)
{
	int queued;

	if (ioctl(c->fd, TIOCOUTQ, &queued) < 0 || queued < 0)
		return false; /* the deadline ends it */
	return c->sent_total >= c->hop_end + (uint64_t)queued;
}

/* A kept-open connection whose hop-limited reply is acknowledged leaves
 * the acking list and its mark: what follows leaves at the normal TTL.
 * false while the reply is not acknowledged yet. */
bool srv_hop_release(struct srv_worker *w, struct srv_conn *c)
{
	if (!c->hop_open || !srv_hop_reply_acked(c))
		return false;
	srv_hop_forget(c);
	c->hop_open = false;
	srv_list_unlink(c);
	srv_list_push(&w->conns, c);
	w->nacking--;
	return true;
}

/* A waiting connection: a closing one is closed normally once all is
 * acknowledged, a kept-open one released once its reply is; either is
 * reset once its deadline passed, and otherwise left waiting. */
void srv_ack_check(struct srv_worker *w, struct srv_conn *c, uint64_t now_ms)
{
	if (c->hop_open) {
		if (!srv_hop_release(w, c) && now_ms >= c->ack_deadline_ms)
			srv_conn_reset(w, c);
	} else if (srv_all_acked(c)) {
		srv_conn_close(w, c);
	} else if (now_ms >= c->ack_deadline_ms) {
		srv_conn_reset(w, c);
	}
}

/* Every waiting connection, from outside their own completions. */
void srv_ack_check_all(struct srv_worker *w)
{
	uint64_t now = srv_now_ms();
	struct srv_conn *c, *next;

	for (c = w->acking.next; c != &w->acking; c = next) {
		next = c->next;
		if (c->closing)
			continue;
		srv_ack_check(w, c, now);
		srv_conn_maybe_free(c);
	}
}

static unsigned srv_acking_of_vm(const struct srv_worker *w, const struct srv_conn *c)
{
	unsigned n = 0;

	for (const struct srv_conn *a = w->acking.next; a != &w->acking; a = a->next)
		n += a->slot == c->slot && a->generation == c->generation;
	return n;
}

static bool srv_ack_bounds_reached(const struct srv_worker *w, const struct srv_conn *c)
{
	return w->stopping || w->nacking >= SRV_ACK_WAIT_MAX || srv_acking_of_vm(w, c) >= SRV_ACK_WAIT_PER_VM;
}

/* Onto the acking list, where the poll checks it; counted once, however
 * it waits (kept open, then closing). */
static void srv_ack_list_enter(struct srv_worker *w, struct srv_conn *c)
{
	if (!c->hop_open && !c->acking)
		w->nacking++;
	srv_list_unlink(c);
	srv_list_push(&w->acking, c);
	srv_arm_ack_poll(w);
}

/* After the last byte of a hop-limited token reply went to the kernel:
 * FIN now, close once acknowledged.  A kept-open connection that closes
 * now already waits, and stays counted.  false when the connection is to
 * be closed at once (bounds reached, or the socket is no longer
 * connected). */
bool srv_await_ack(struct srv_worker *w, struct srv_conn *c)
{
	if (!c->hop_open && srv_ack_bounds_reached(w, c))
		return false;
	if (shutdown(c->fd, SHUT_WR) < 0)
		return false;
	c->ack_deadline_ms = srv_now_ms() + SRV_ACK_WAIT_MS;
	srv_ack_list_enter(w, c);
	c->hop_open = false;
	c->acking = true;
	return true;
}

/* A hop-limited reply on a connection that stays open (just marked): it
 * waits on the acking list, still serving, until the reply is
 * acknowledged or its deadline passes: 2 s for the kernel to take the
 * reply (a client that does not read gets no longer, as it is off the
 * idle scan meanwhile), then 2 s more from then (srv_hop_sent).  false
 * past the bounds: the caller then closes the connection after the
 * reply, as every token connection did before keep-alive. */
bool srv_hop_hold(struct srv_worker *w, struct srv_conn *c)
{
	c->ack_deadline_ms = srv_now_ms() + SRV_ACK_WAIT_MS;
	if (c->hop_open)
		return true;
	if (srv_ack_bounds_reached(w, c))
		return false;
	srv_ack_list_enter(w, c);
	c->hop_open = true;
	return true;
}

/* After a send of `n` bytes completed: the ACK deadline of a kept-open
 * connection runs again from when the kernel took the hop-limited reply's
 * last byte. */
void srv_hop_sent(struct srv_conn *c, size_t n)
{
	if (c->hop_open && c->sent_total >= c->hop_end && c->sent_total - n < c->hop_end)
		c->ack_deadline_ms = srv_now_ms() + SRV_ACK_WAIT_MS;
}

/* The acking poll: check the waiting connections, again while any wait. */
void srv_handle_ack_poll(struct srv_worker *w)
{
	w->ack_poll_armed = false;
	if (w->stopping)
		return;
	srv_ack_check_all(w);
	if (w->nacking)
		srv_arm_ack_poll(w);
}

/* server.c: the io_uring HTTP server of imdsd.
 *
 * Each worker thread owns one ring, one SO_REUSEPORT listener (the kernel
 * spreads connections over the listeners), one provided-buffer ring and the
 * connections it accepted; workers share nothing but the read-only store.
 *
 * Every request in flight carries user_data = connection pointer | op tag
 * (connections are 16-byte aligned, the tag uses the low 4 bits).  A
 * connection is freed only once no request referring to it is in flight:
 * closing cancels its requests and waits for their last completions.
 *
 * The hop limit (EC2 HttpPutResponseHopLimit) is enforced by the data
 * plane's TC egress program: just before the first byte of a token reply is
 * handed to the kernel, the connection's VM-side endpoint is marked in
 * hop_marks, and every later segment to it leaves with TTL = hop limit.
 * Token replies close the connection, so no later reply is affected, and
 * earlier pipelined replies were handed to the kernel before the mark.
 * A hop-limited token reply may die in a router inside the guest; its
 * connection sends the FIN at once but keeps the socket until the peer
 * acknowledges everything, and is aborted with a RST (which the data plane
 * never limits) if that takes longer than SRV_ACK_WAIT_MS: a client one hop
 * too far gets "connection reset", as on EC2, instead of silence.
 *
 * Per-VM limits (vmlimits.c, docs/limits.md): a connection is counted against
 * its VM's max-connections at accept, once the VM is known, and refused
 * without a byte beyond it; every request is charged to the VM's request
 * bucket, shared by all workers, and answered 429 when it is empty.
 */
#include "serve/server.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "http/http.h"
#include "imds.skel.h"
#include "serve/vmlimits.h"
#include "lib/outbuf.h"
#include "http/router.h"

#define SRV_SQ_ENTRIES 1024
#define SRV_CQ_ENTRIES 8192
#define SRV_BUF_COUNT 512 /* a power of two: the buffer ring is indexed with a mask */
#define SRV_BUF_SIZE 4096
#define SRV_BUF_GROUP 0
#define SRV_BACKLOG 4096
#define SRV_FD_TABLE_MIN 65536 /* descriptors the table is sized for at start (within RLIMIT_NOFILE) */
#define SRV_MAX_UNSENT (256 * 1024) /* a client that pipelines without reading */
#define SRV_ROUTE_TRIES 4
#define SRV_TICK_SEC 1
#define SRV_STOP_WAIT_MS 2000 /* give up draining completions after this */
#define SRV_LIMITS_LOG_SEC 10 /* how often worker 0 logs 429s and refusals */
/* How long a hop-limited token reply may stay unacknowledged before its
 * connection is reset.  A guest that got the reply ACKs it within a round
 * trip; 2 s also covers a slow (TCG) or loaded guest and two or three
 * retransmissions of a lost segment (RTO from 200 ms, doubling), and stays
 * below the 5-10 s read timeouts clients give a token PUT. */
#define SRV_ACK_WAIT_MS 2000
#define SRV_ACK_POLL_MS 20 /* how often waiting connections are checked */
#define SRV_ACK_WAIT_MAX 256 /* connections waiting for an ACK, per worker */
#define SRV_ACK_WAIT_PER_VM 8 /* ... of which one VM may hold, per worker */

enum srv_op {
	OP_ACCEPT = 1,
	OP_RECV = 2,
	OP_SEND = 3,
	OP_CANCEL = 4,
	OP_TICK = 5,
	OP_WAKE = 6,
	OP_STOP = 7,
	OP_ACK_POLL = 8,
};
#define SRV_OP_MASK 15u

/* What the request callback tells the input path (returned through
 * http_feed, which passes a non-zero callback result straight back). */
enum srv_feed {
	FEED_STOP = 1, /* a response said close: ignore further requests */
	FEED_GONE = 2, /* the VM was deleted: close without a response */
	FEED_FAIL = 3, /* out of memory: close */
};

struct srv_worker;

struct srv_conn {
	struct srv_conn *prev, *next; /* the worker's list, for idle scans and stop */
	struct srv_worker *w;
	int fd;
	uint32_t slot, generation; /* the VM, from the data plane's verified SYN */
	struct imds_conn_key peer; /* the VM-side endpoint: the hop_marks key */
	struct http_conn http;
	struct outbuf out;  /* responses not yet handed to the kernel */
	struct outbuf wire; /* being sent: the kernel reads it until the send completes */
	size_t wire_off;
	size_t ttl_mark; /* bytes of `out` that precede the token reply */
	int ttl;	 /* hop limit to mark at ttl_mark, 0 = none pending */
	bool hop_marked; /* peer is in hop_marks */
	bool counted;	 /* holds one of its VM's max-connections */
	uint64_t last_active_ms;
	bool recv_armed, send_inflight, cancel_inflight;
	bool closing;	       /* cancelled; freed when nothing is in flight */
	bool close_after_send; /* a response said close, or the peer sent EOF */
	bool acking;	       /* FIN sent, on the worker's acking list */
	uint64_t ack_deadline_ms; /* reset the connection if not all ACKed by then */
};

struct srv_worker {
	struct server *srv;
	int index;
	pthread_t thread;
	bool thread_started;
	struct io_uring ring;
	bool ring_ready;
	int listen_fd;
	int wake_fd;
	uint64_t wake_buf;
	struct io_uring_buf_ring *br;
	uint8_t *bufs;
	struct __kernel_timespec tick;
	struct srv_conn conns; /* list head (sentinel) */
	struct srv_conn acking; /* connections waiting for their last ACK */
	unsigned nacking;	/* on the acking list, closing ones included */
	bool ack_poll_armed;
	struct __kernel_timespec ack_poll;
	unsigned inflight;     /* requests whose final completion is still due */
	bool stopping;
	bool accept_paused; /* out of descriptors: re-armed on the next tick */
	uint64_t limits_logged_ms; /* worker 0: last log of the limit counters */
};

struct server {
	struct server_config cfg;
	int hop_marks_fd; /* the data plane's hop_marks map, -1 without one */
	struct limits *limits; /* per-VM request buckets and connection counts */
	int nworkers;
	struct srv_worker *workers;
};

static uint64_t srv_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static uint64_t srv_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * LIMITS_NS_PER_SEC + (uint64_t)ts.tv_nsec;
}

/* ---- submission helpers ---- */

static struct io_uring_sqe *srv_sqe(struct srv_worker *w)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&w->ring);

	if (!sqe) {
		/* SQ full: hand the queued entries to the kernel first. */
		io_uring_submit(&w->ring);
		sqe = io_uring_get_sqe(&w->ring);
	}
	if (!sqe) {
		fprintf(stderr, "imdsd: worker %d: submission queue exhausted\n", w->index);
		return NULL;
	}
	w->inflight++;
	return sqe;
}

static void srv_set_data(struct io_uring_sqe *sqe, void *ptr, enum srv_op op)
{
	io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)ptr | op);
}

static void srv_arm_accept(struct srv_worker *w)
{
	struct io_uring_sqe *sqe = srv_sqe(w);

	if (!sqe)
		return;
	/* One SQE, one completion per accepted socket while IORING_CQE_F_MORE
	 * is set; the kernel ends it on an error (e.g. EMFILE). */
	io_uring_prep_multishot_accept(sqe, w->listen_fd, NULL, NULL, SOCK_CLOEXEC);
	srv_set_data(sqe, NULL, OP_ACCEPT);
}

static void srv_arm_tick(struct srv_worker *w)
{
	struct io_uring_sqe *sqe = srv_sqe(w);

	if (!sqe)
		return;
	w->tick.tv_sec = SRV_TICK_SEC;
	w->tick.tv_nsec = 0;
	io_uring_prep_timeout(sqe, &w->tick, 0, 0);
	srv_set_data(sqe, NULL, OP_TICK);
}

static void srv_arm_wake(struct srv_worker *w)
{
	struct io_uring_sqe *sqe = srv_sqe(w);

	if (!sqe)
		return;
	io_uring_prep_read(sqe, w->wake_fd, &w->wake_buf, sizeof(w->wake_buf), 0);
	srv_set_data(sqe, NULL, OP_WAKE);
}

static void srv_arm_recv(struct srv_worker *w, struct srv_conn *c)
{
	struct io_uring_sqe *sqe = srv_sqe(w);

	if (!sqe)
		return;
	/* Multishot receive: each completion carries one buffer picked by the
	 * kernel from group SRV_BUF_GROUP; it stops (no IORING_CQE_F_MORE) on
	 * EOF, on an error, and with -ENOBUFS when the group is empty. */
	io_uring_prep_recv_multishot(sqe, c->fd, NULL, 0, 0);
	sqe->flags |= IOSQE_BUFFER_SELECT;
	sqe->buf_group = SRV_BUF_GROUP;
	srv_set_data(sqe, c, OP_RECV);
	c->recv_armed = true;
}

/* Gives a provided buffer back to the kernel.  Until this runs the kernel
 * cannot use it again, so it must follow every buffer-carrying completion,
 * including those of connections that are closing. */
static void srv_buf_recycle(struct srv_worker *w, unsigned bid)
{
	io_uring_buf_ring_add(w->br, w->bufs + (size_t)bid * SRV_BUF_SIZE, SRV_BUF_SIZE, (unsigned short)bid,
			      io_uring_buf_ring_mask(SRV_BUF_COUNT), 0);
	io_uring_buf_ring_advance(w->br, 1);
}

/* ---- connection lifetime ---- */

/* Marks the connection's endpoint for the TC egress program: from now on
 * every segment to it leaves with TTL = hop limit.  Must succeed before a
 * token reply is handed to the kernel, or the reply is not sent at all. */
static int srv_hop_mark(struct srv_conn *c, int hop_limit)
{
	struct imds_hop_mark mark = { .slot = c->slot, .hop_limit = (__u8)hop_limit };
	struct timespec ts;

	if (c->w->srv->hop_marks_fd < 0)
		return -EBADF;
	/* bpf_ktime_get_ns() counts on CLOCK_MONOTONIC too. */
	clock_gettime(CLOCK_MONOTONIC, &ts);
	mark.expires_ns = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec + IMDS_HOP_MARK_TTL_NS;
	if (bpf_map_update_elem(c->w->srv->hop_marks_fd, &c->peer, &mark, BPF_ANY) < 0)
		return -errno;
	c->hop_marked = true;
	return 0;
}

/* At close: forget the mark only if the kernel holds no byte of the
 * connection any more (SIOCOUTQ = unsent + unacknowledged).  Otherwise the
 * orphaned socket may still retransmit the token reply, which must keep
 * the hop limit; the mark then ends at its expiry or at the endpoint's
 * next verified SYN (the data plane deletes it there). */
static void srv_hop_unmark(struct srv_conn *c)
{
	int queued = 1;

	if (!c->hop_marked)
		return;
	if (ioctl(c->fd, TIOCOUTQ, &queued) == 0 && queued == 0)
		bpf_map_delete_elem(c->w->srv->hop_marks_fd, &c->peer);
	c->hop_marked = false;
}

static void srv_list_unlink(struct srv_conn *c)
{
	c->prev->next = c->next;
	c->next->prev = c->prev;
}

static void srv_list_push(struct srv_conn *head, struct srv_conn *c)
{
	c->next = head->next;
	c->prev = head;
	head->next->prev = c;
	head->next = c;
}

/* Frees a closing connection once no request refers to it.  Called after
 * each of its completions and after closing it from outside its own
 * completions (tick, stop); never from inside a handler that still uses it. */
static void srv_conn_maybe_free(struct srv_conn *c)
{
	if (!c->closing || c->recv_armed || c->send_inflight || c->cancel_inflight)
		return;
	srv_list_unlink(c);
	if (c->acking)
		c->w->nacking--;
	srv_hop_unmark(c);
	if (c->counted)
		limits_conn_close(c->w->srv->limits, c->slot, c->generation);
	close(c->fd);
	outbuf_free(&c->out);
	outbuf_free(&c->wire);
	free(c);
}

/* Stops serving `c`: no more input, output or re-arming.  Its memory stays
 * until srv_conn_maybe_free sees nothing in flight. */
static void srv_conn_close(struct srv_worker *w, struct srv_conn *c)
{
	struct io_uring_sqe *sqe;

	if (c->closing)
		return;
	c->closing = true;
	/* Closing the fd would not stop requests that hold the file.  A lone
	 * multishot receive (the usual case: the last response went out) is
	 * ended by shutdown(), which sends the FIN close() would have sent
	 * and completes the receive with EOF; an async cancel instead walks
	 * every request pending on the ring, which grows with the number of
	 * open connections.  A send in flight, or a socket that shutdown()
	 * refuses, is cancelled by fd (while the fd still names the socket).
	 * The connection is freed when the last completions have arrived. */
	if (c->recv_armed && !c->send_inflight && !w->stopping && shutdown(c->fd, SHUT_RDWR) == 0)
		return;
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

static struct srv_conn *srv_conn_new(struct srv_worker *w, int fd, const struct sockaddr_in *peer, uint32_t slot,
				     uint32_t generation)
{
	struct srv_conn *c = NULL;

	/* 16-byte alignment leaves the low bits of the pointer for the op tag. */
	if (posix_memalign((void **)&c, 16, sizeof(*c)))
		return NULL;
	memset(c, 0, sizeof(*c));
	c->w = w;
	c->fd = fd;
	c->slot = slot;
	c->generation = generation;
	c->peer.saddr = peer->sin_addr.s_addr;
	c->peer.sport = peer->sin_port;
	c->last_active_ms = srv_now_ms();
	http_conn_init(&c->http);
	srv_list_push(&w->conns, c);
	return c;
}

/* What the server takes from a VM's tree header besides the routes; read
 * from the same snapshot as the response, so it switches with the tree. */
struct srv_vm_facts {
	int hop_limit;
	struct limits_params limits;
};

static void srv_read_facts(const struct tree_view *tree, struct srv_vm_facts *f)
{
	const struct tree_meta *m = tree_view_meta(tree);

	f->hop_limit = m->hop_limit;
	f->limits = limits_resolve(m->request_rate, m->request_burst, m->max_conns);
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

/* A new socket: served only if the data plane verified its SYN, and only
 * while its VM holds fewer than max-connections.  A refused connection is
 * closed without a byte, as an unverified one: nothing of it is kept, and
 * clients retry a closed connection like any network error
 * (docs/limits.md). */
static void srv_conn_open(struct srv_worker *w, int fd)
{
	struct limits *limits = w->srv->limits;
	struct sockaddr_in peer;
	socklen_t len = sizeof(peer);
	struct srv_vm_facts facts;
	uint32_t slot, generation;
	struct srv_conn *c;

	if (getpeername(fd, (struct sockaddr *)&peer, &len) < 0 || peer.sin_family != AF_INET)
		goto reject;
	/* -ENOENT: no verified SYN for this (address, port): it did not come
	 * through a port of ours from a loaded VM.  No response at all. */
	if (store_take_conn(w->srv->cfg.store, peer.sin_addr.s_addr, peer.sin_port, &slot, &generation) < 0)
		goto reject;
	if (srv_accept_facts(w, slot, generation, &facts) < 0)
		goto reject;
	if (limits_conn_open(limits, slot, generation, facts.limits.max_conns) != LIMITS_OPEN_OK)
		goto reject;
	c = srv_conn_new(w, fd, &peer, slot, generation);
	if (!c) {
		limits_conn_close(limits, slot, generation);
		goto reject;
	}
	c->counted = true;
	srv_arm_recv(w, c);
	return;
reject:
	close(fd);
}

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

static void srv_arm_ack_poll(struct srv_worker *w)
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
static bool srv_all_acked(const struct srv_conn *c)
{
	int queued = 1;

	return ioctl(c->fd, TIOCOUTQ, &queued) < 0 || queued == 0;
}

/* Closes a waiting connection normally once all is acknowledged, or with a
 * RST once its deadline passed; otherwise leaves it waiting. */
static void srv_ack_check(struct srv_worker *w, struct srv_conn *c, uint64_t now_ms)
{
	static const struct linger reset = { .l_onoff = 1, .l_linger = 0 };

	if (srv_all_acked(c)) {
		srv_conn_close(w, c);
	} else if (now_ms >= c->ack_deadline_ms) {
		/* Zero linger: close() drops the queue and sends a RST
		 * (tcp_disconnect) instead of retransmitting on. */
		if (setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &reset, sizeof(reset)) < 0)
			fprintf(stderr, "imdsd: worker %d: SO_LINGER: %s\n", w->index, strerror(errno));
		srv_conn_close(w, c);
	}
}

/* Every waiting connection, from outside their own completions. */
static void srv_ack_check_all(struct srv_worker *w)
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

/* After the last byte of a hop-limited token reply went to the kernel:
 * FIN now, close once acknowledged.  false when the connection is to be
 * closed at once (bounds reached, or the socket is no longer connected). */
static bool srv_await_ack(struct srv_worker *w, struct srv_conn *c)
{
	if (w->stopping || w->nacking >= SRV_ACK_WAIT_MAX || srv_acking_of_vm(w, c) >= SRV_ACK_WAIT_PER_VM)
		return false;
	if (shutdown(c->fd, SHUT_WR) < 0)
		return false;
	srv_list_unlink(c);
	srv_list_push(&w->acking, c);
	c->acking = true;
	w->nacking++;
	c->ack_deadline_ms = srv_now_ms() + SRV_ACK_WAIT_MS;
	srv_arm_ack_poll(w);
	return true;
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
	ctx = (struct route_ctx){ .tree = &snap.tree, .token_key = cfg->token_key, .now = time(NULL) };
	memset(res, 0, sizeof(*res));
	rc = route_request(&ctx, req, &c->out, res);
	/* Read before the validity check: it comes from the same snapshot. */
	srv_read_facts(&snap.tree, facts);
	if (store_snapshot_valid(cfg->store, &snap))
		return rc < 0 ? rc : 1;
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

/* http_feed's callback, once per complete request, in order. */
static int srv_on_request(void *ctx, const struct http_request *req)
{
	struct srv_conn *c = ctx;
	struct srv_vm_facts facts = { 0 };
	struct route_result res;
	size_t mark = c->out.len;
	uint64_t wait;
	int rc = 0;

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
			fprintf(stderr, "imdsd: slot %u: the published tree is invalid\n", c->slot);
		return srv_write_status(c, rc ? 500 : 503) ? FEED_FAIL : FEED_STOP;
	}
	if (rc < 0)
		return FEED_FAIL;
	/* Charged once the request is routed against a valid tree, because
	 * the budget is part of that tree; over it, the routed response is
	 * dropped (routing is side-effect free) and 429 goes instead. */
	wait = limits_charge(c->w->srv->limits, c->slot, facts.limits.rate, facts.limits.burst, srv_now_ns());
	if (wait) {
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
		res.close = true;
	}
	if (res.close || !req->keep_alive) {
		c->close_after_send = true;
		return FEED_STOP;
	}
	return 0;
}

/* Feeds received bytes and queues the responses. */
static void srv_conn_input(struct srv_worker *w, struct srv_conn *c, const char *data, size_t len)
{
	int rc;

	c->last_active_ms = srv_now_ms();
	if (c->close_after_send)
		return; /* a response said close: later requests are not answered */
	rc = http_feed(&c->http, data, len, srv_on_request, c);
	/* rc < 0: not HTTP (-400, -413, -414, -431): answer that status and
	 * close.  FEED_GONE also covers a client that is not reading
	 * (srv_on_request). */
	if (rc < 0)
		rc = srv_write_status(c, -rc <= 599 && -rc >= 400 ? -rc : 400) < 0 ? FEED_FAIL : 0;
	if (rc == FEED_GONE || rc == FEED_FAIL)
		srv_conn_close(w, c);
	else
		srv_flush(w, c);
}

/* ---- completions ---- */

static void srv_handle_accept(struct srv_worker *w, int res, bool more)
{
	if (res >= 0 && w->stopping)
		close(res); /* accepted while the stop's cancel was on its way */
	else if (res >= 0)
		srv_conn_open(w, res);
	else if (res == -EMFILE || res == -ENFILE || res == -ENOBUFS || res == -ENOMEM)
		w->accept_paused = true; /* re-armed on the next tick, not in a busy loop */
	else if (res != -ECANCELED && res != -EINTR && res != -ECONNABORTED)
		fprintf(stderr, "imdsd: worker %d: accept: %s\n", w->index, strerror(-res));
	if (!more && !w->stopping && !w->accept_paused)
		srv_arm_accept(w);
}

static void srv_handle_recv(struct srv_worker *w, struct srv_conn *c, const struct io_uring_cqe *cqe, bool more)
{
	int res = cqe->res;

	if (!more)
		c->recv_armed = false;
	if (cqe->flags & IORING_CQE_F_BUFFER) {
		unsigned bid = cqe->flags >> IORING_CQE_BUFFER_SHIFT;

		if (res > 0 && !c->closing)
			srv_conn_input(w, c, (const char *)w->bufs + (size_t)bid * SRV_BUF_SIZE, (size_t)res);
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

static void srv_handle_send(struct srv_worker *w, struct srv_conn *c, int res)
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
	c->last_active_ms = srv_now_ms();
	srv_flush(w, c);
}

static void srv_handle_cancel(struct srv_conn *c)
{
	c->cancel_inflight = false;
}

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
	for (uint32_t slot = 1; slot < IMDS_MAX_VMS; slot++) {
		generation = limits_take_counts(srv->limits, slot, &throttled, &refused);
		if (!throttled && !refused)
			continue;
		srv_instance_id(srv->cfg.store, slot, generation, iid, sizeof(iid));
		fprintf(stderr, "imdsd: limits: %s (slot %u): %llu requests answered 429, %llu connections refused\n", iid,
			slot, (unsigned long long)throttled, (unsigned long long)refused);
	}
}

/* Once a second: close idle connections, which includes clients that stop
 * reading (their send never completes), retry a paused accept, and check
 * the connections waiting for an ACK (their own deadline, not the idle
 * timeout, ends them: they are not on the conns list). */
static void srv_handle_tick(struct srv_worker *w)
{
	uint64_t now = srv_now_ms();
	uint64_t idle = (uint64_t)w->srv->cfg.idle_timeout_ms;
	struct srv_conn *c, *next;

	if (w->stopping)
		return;
	for (c = w->conns.next; c != &w->conns; c = next) {
		next = c->next;
		if (!c->closing && now - c->last_active_ms > idle) {
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

/* The acking poll: check the waiting connections, again while any wait. */
static void srv_handle_ack_poll(struct srv_worker *w)
{
	w->ack_poll_armed = false;
	if (w->stopping)
		return;
	srv_ack_check_all(w);
	if (w->nacking)
		srv_arm_ack_poll(w);
}

/* server_stop wrote the eventfd: cancel every request of this ring (the
 * listener's accept, receives, sends, the tick) and let the completions
 * drain; connections are freed as their last completions arrive. */
static void srv_handle_wake(struct srv_worker *w)
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

static void srv_dispatch(struct srv_worker *w, const struct io_uring_cqe *cqe)
{
	void *ptr = (void *)(uintptr_t)(cqe->user_data & ~(uint64_t)SRV_OP_MASK);
	bool more = cqe->flags & IORING_CQE_F_MORE;

	/* A completion without F_MORE is the last one of its request. */
	if (!more)
		w->inflight--;
	switch (cqe->user_data & SRV_OP_MASK) {
	case OP_ACCEPT:
		srv_handle_accept(w, cqe->res, more);
		break;
	case OP_RECV:
		srv_handle_recv(w, ptr, cqe, more);
		srv_conn_maybe_free(ptr);
		break;
	case OP_SEND:
		srv_handle_send(w, ptr, cqe->res);
		srv_conn_maybe_free(ptr);
		break;
	case OP_CANCEL:
		srv_handle_cancel(ptr);
		srv_conn_maybe_free(ptr);
		break;
	case OP_TICK:
		srv_handle_tick(w);
		break;
	case OP_WAKE:
		srv_handle_wake(w);
		break;
	case OP_ACK_POLL:
		srv_handle_ack_poll(w);
		break;
	default: /* OP_STOP: the cancel's own completion */
		break;
	}
}

/* ---- worker thread ---- */

static int srv_drain(struct srv_worker *w)
{
	struct io_uring_cqe *cqe;
	unsigned head, n = 0;

	io_uring_for_each_cqe(&w->ring, head, cqe)
	{
		srv_dispatch(w, cqe);
		n++;
	}
	io_uring_cq_advance(&w->ring, n);
	return (int)n;
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

static void srv_free_conns(struct srv_worker *w)
{
	srv_free_list(&w->conns);
	srv_free_list(&w->acking);
}

static void *srv_worker_main(void *arg)
{
	struct srv_worker *w = arg;
	struct __kernel_timespec wait = { .tv_nsec = 100 * 1000000 };
	uint64_t stop_deadline = 0;
	struct io_uring_cqe *cqe;
	int rc;

	srv_arm_wake(w);
	srv_arm_tick(w);
	srv_arm_accept(w);
	while (!(w->stopping && w->inflight == 0)) {
		if (w->stopping && !stop_deadline)
			stop_deadline = srv_now_ms() + SRV_STOP_WAIT_MS;
		if (stop_deadline && srv_now_ms() > stop_deadline)
			break;
		rc = io_uring_submit_and_wait_timeout(&w->ring, &cqe, 1, w->stopping ? &wait : NULL, NULL);
		if (rc < 0 && rc != -ETIME && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY) {
			fprintf(stderr, "imdsd: worker %d: io_uring wait: %s\n", w->index, strerror(-rc));
			break;
		}
		srv_drain(w);
	}
	/* Tear the ring down before freeing connections: if the drain timed
	 * out, a request may still point into one of them. */
	io_uring_queue_exit(&w->ring);
	w->ring_ready = false;
	srv_free_conns(w);
	return NULL;
}

/* ---- setup ---- */

static int srv_listen(uint32_t addr_be, uint16_t port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = addr_be, .sin_port = htons(port) };
	int one = 1, fd, err;

	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	/* REUSEPORT: one listener per worker, the kernel spreads connections.
	 * FREEBIND: the address may be added to the bridge after we bind.
	 * NODELAY is inherited by accepted sockets: every response is one
	 * send, Nagle would only delay pipelined replies. */
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0 ||
	    setsockopt(fd, IPPROTO_IP, IP_FREEBIND, &one, sizeof(one)) < 0 ||
	    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0 ||
	    bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, SRV_BACKLOG) < 0) {
		err = -errno;
		close(fd);
		return err;
	}
	return fd;
}

static int srv_ring_init(struct srv_worker *w)
{
	struct io_uring_params p = {
		.flags = IORING_SETUP_CQSIZE | IORING_SETUP_SUBMIT_ALL | IORING_SETUP_COOP_TASKRUN,
		.cq_entries = SRV_CQ_ENTRIES,
	};
	int rc;

	rc = io_uring_queue_init_params(SRV_SQ_ENTRIES, &w->ring, &p);
	if (rc == -EINVAL) { /* a kernel without SUBMIT_ALL / COOP_TASKRUN */
		memset(&p, 0, sizeof(p));
		p.flags = IORING_SETUP_CQSIZE;
		p.cq_entries = SRV_CQ_ENTRIES;
		rc = io_uring_queue_init_params(SRV_SQ_ENTRIES, &w->ring, &p);
	}
	if (rc < 0)
		return rc;
	w->ring_ready = true;
	return 0;
}

/* The provided-buffer ring must be page-aligned memory shared with the
 * kernel; each entry points at one SRV_BUF_SIZE slice of w->bufs. */
static int srv_bufs_init(struct srv_worker *w)
{
	size_t ring_size = SRV_BUF_COUNT * sizeof(struct io_uring_buf);
	struct io_uring_buf_reg reg = { 0 };
	void *mem;
	int rc;

	w->bufs = malloc((size_t)SRV_BUF_COUNT * SRV_BUF_SIZE);
	if (!w->bufs)
		return -ENOMEM;
	mem = mmap(NULL, ring_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED)
		return -errno;
	w->br = mem;
	io_uring_buf_ring_init(w->br);
	reg.ring_addr = (uint64_t)(uintptr_t)mem;
	reg.ring_entries = SRV_BUF_COUNT;
	reg.bgid = SRV_BUF_GROUP;
	rc = io_uring_register_buf_ring(&w->ring, &reg, 0);
	if (rc < 0)
		return rc;
	for (unsigned i = 0; i < SRV_BUF_COUNT; i++)
		io_uring_buf_ring_add(w->br, w->bufs + (size_t)i * SRV_BUF_SIZE, SRV_BUF_SIZE, (unsigned short)i,
				      io_uring_buf_ring_mask(SRV_BUF_COUNT), (int)i);
	io_uring_buf_ring_advance(w->br, SRV_BUF_COUNT);
	return 0;
}

static int srv_worker_init(struct server *srv, struct srv_worker *w, int index)
{
	int rc;

	w->srv = srv;
	w->index = index;
	w->listen_fd = -1;
	w->conns.next = w->conns.prev = &w->conns;
	w->acking.next = w->acking.prev = &w->acking;
	w->wake_fd = eventfd(0, EFD_CLOEXEC);
	if (w->wake_fd < 0)
		return -errno;
	rc = srv_listen(srv->cfg.addr_be, srv->cfg.port);
	if (rc < 0)
		return rc;
	w->listen_fd = rc;
	rc = srv_ring_init(w);
	if (rc < 0)
		return rc;
	return srv_bufs_init(w);
}

static void srv_worker_destroy(struct srv_worker *w)
{
	if (w->ring_ready)
		io_uring_queue_exit(&w->ring); /* also unregisters the buffer ring */
	if (w->br)
		munmap(w->br, SRV_BUF_COUNT * sizeof(struct io_uring_buf));
	free(w->bufs);
	if (w->listen_fd >= 0)
		close(w->listen_fd);
	if (w->wake_fd >= 0)
		close(w->wake_fd);
}

void server_stop(struct server *srv)
{
	uint64_t one = 1;

	if (!srv)
		return;
	for (int i = 0; i < srv->nworkers; i++) {
		struct srv_worker *w = &srv->workers[i];

		if (w->thread_started && write(w->wake_fd, &one, sizeof(one)) < 0)
			fprintf(stderr, "imdsd: worker %d: wake: %s\n", i, strerror(errno));
	}
	for (int i = 0; i < srv->nworkers; i++) {
		struct srv_worker *w = &srv->workers[i];

		if (w->thread_started)
			pthread_join(w->thread, NULL);
		srv_worker_destroy(w);
	}
	free(srv->workers);
	limits_free(srv->limits);
	free(srv);
}

/* Sizes the descriptor table for the connections to come.  It grows by
 * doubling as descriptors are allocated, and while threads share it each
 * growth waits for an RCU grace period (expand_fdtable): a storm's first
 * burst of accepts stalled a worker for tens of milliseconds, which was
 * the storm's latency tail.  Done before the workers start (one user of
 * the table, no grace period); the table never shrinks. */
static void srv_presize_fd_table(int fd)
{
	struct rlimit rl;
	rlim_t top = SRV_FD_TABLE_MIN;
	int dup;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < top)
		top = rl.rlim_cur;
	dup = fcntl(fd, F_DUPFD_CLOEXEC, (int)top - 1);
	if (dup >= 0)
		close(dup);
}

int server_start(struct server **out, const struct server_config *cfg)
{
	struct server *srv;
	int rc = 0;

	*out = NULL;
	if (cfg->workers < 1 || cfg->idle_timeout_ms < 1)
		return -EINVAL;
	srv = calloc(1, sizeof(*srv));
	if (!srv)
		return -ENOMEM;
	srv->cfg = *cfg;
	srv->hop_marks_fd = cfg->store && cfg->store->skel ? bpf_map__fd(cfg->store->skel->maps.hop_marks) : -1;
	srv->limits = limits_new(IMDS_MAX_VMS);
	srv->workers = calloc((size_t)cfg->workers, sizeof(*srv->workers));
	if (!srv->limits || !srv->workers) {
		limits_free(srv->limits);
		free(srv->workers);
		free(srv);
		return -ENOMEM;
	}
	for (int i = 0; i < cfg->workers && rc == 0; i++) {
		srv->nworkers = i + 1;
		rc = srv_worker_init(srv, &srv->workers[i], i);
	}
	if (rc == 0)
		srv_presize_fd_table(srv->workers[0].listen_fd);
	for (int i = 0; i < srv->nworkers && rc == 0; i++) {
		rc = -pthread_create(&srv->workers[i].thread, NULL, srv_worker_main, &srv->workers[i]);
		srv->workers[i].thread_started = rc == 0;
	}
	if (rc < 0) {
		server_stop(srv);
		return rc;
	}
	*out = srv;
	return 0;
}

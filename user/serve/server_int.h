/* server_int.h: what the parts of the io_uring server share; not for use
 * outside user/serve.
 *
 *   server.c   listeners, rings and buffers; starting and stopping workers
 *   loop.c     a worker's loop: completions, dispatch, the tick, stopping
 *   peer.c     an accepted socket's peer address, read on the ring
 *   conn.c     a connection's lifetime: accept, close, free
 *   request.c  a connection's input and output: requests to responses
 *   hop.c      the hop limit: marking token replies, waiting for the ACK
 *   fair.c     the worker's connections by VM, for fair eviction
 *
 * Each worker thread owns one ring, one SO_REUSEPORT listener (the kernel
 * spreads connections over the listeners), one provided-buffer ring and the
 * connections it accepted; workers share nothing but the read-only store
 * and the per-VM limits.
 *
 * Every request in flight carries user_data = connection pointer | op tag
 * (connections are 16-byte aligned, the tag uses the low 4 bits).  A
 * connection is freed only once no request referring to it is in flight:
 * closing cancels its requests and waits for their last completions.
 *
 * The helpers every request goes through are static inline here, so
 * splitting the server into files costs no call per request.
 */
#ifndef IMDS_SERVER_INT_H
#define IMDS_SERVER_INT_H
#include <liburing.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

#include "http/http.h"
#include "http/token.h"
#include "imds.h"
#include "lib/log.h"
#include "lib/outbuf.h"
#include "lib/tree.h"
#include "serve/config.h"
#include "serve/counters.h"
#include "serve/fair.h"
#include "serve/stats.h"
#include "serve/vmlimits.h"
#include "store/store.h"

#define SRV_BUF_COUNT 512 /* a power of two: the buffer ring is indexed with a mask */
#define SRV_BUF_SIZE 4096
#define SRV_BUF_GROUP 0
#define SRV_ROUTE_TRIES 4

enum srv_op {
	OP_ACCEPT = 1,
	OP_RECV = 2,
	OP_SEND = 3,
	OP_CANCEL = 4,
	OP_TICK = 5,
	OP_WAKE = 6,
	OP_STOP = 7,
	OP_ACK_POLL = 8,
	OP_ACCEPT6 = 9, /* the IPv6 listener's accept (OP_ACCEPT: IPv4's) */
	OP_FD_DONE = 10, /* a socket's close issued on the ring: nothing to do after */
	OP_PEERNAME = 11, /* an accepted socket's peer address, read on the ring (peer.c) */
};
#define SRV_OP_MASK 15u

struct srv_worker;

#define SRV_PEER_SLOTS 256 /* a worker's peer addresses in flight on the ring */

union srv_peer_addr {
	struct sockaddr sa;
	struct sockaddr_in in;
	struct sockaddr_in6 in6;
};

/* An accepted socket whose peer address the ring is reading (peer.c);
 * 16-byte aligned, as a connection, for the op tag in user_data. */
struct srv_peer_req {
	union srv_peer_addr addr;
	int fd; /* -1: the slot is free */
	struct srv_peer_req *next_free;
} __attribute__((aligned(16)));

struct srv_conn {
	struct srv_conn *prev, *next; /* the worker's list, for idle scans and stop */
	struct srv_worker *w;
	int fd;
	uint32_t slot, generation; /* the VM, from the data plane's verified SYN */
	/* Where the last request found its VM's tree, prefetched when the
	 * next request's bytes arrive (request.c); never read through, the
	 * snapshot is taken afresh.  Beside the fields every receive reads,
	 * so it costs no cache line more. */
	struct tree_hint tree_hint;
	struct imds_conn_key peer; /* the VM-side endpoint: the hop_marks key */
	struct http_conn http;
	struct outbuf out;  /* responses not yet handed to the kernel */
	struct outbuf wire; /* being sent: the kernel reads it until the send completes */
	size_t wire_off;
	uint64_t sent_total; /* bytes the kernel took from `wire`, over the connection's life */
	uint64_t hop_end;    /* stream offset just past the last hop-limited reply */
	size_t ttl_mark; /* bytes of `out` that precede the token reply */
	int ttl;	 /* hop limit to mark at ttl_mark, 0 = none pending */
	bool hop_marked; /* peer is in hop_marks */
	bool zero_linger; /* reset: SO_LINGER 0 set, so close() sends a RST and drops the queue */
	bool counted;	 /* holds one of its VM's max-connections */
	uint64_t last_active_ms;
	uint64_t req_start_ms; /* first byte of the request being read; 0 = none */
	struct fair_node fair; /* in its VM's list on the worker, while counted there */
	bool recv_armed, send_inflight, cancel_inflight;
	bool closing;	       /* cancelled; freed when nothing is in flight */
	bool closing_counted;  /* in the server's conns_closing until freed */
	bool close_after_send; /* a response said close, or the peer sent EOF */
	bool acking;	       /* FIN sent, on the worker's acking list */
	bool hop_open;	       /* kept open after a hop-limited reply, on the acking list until it is ACKed */
	bool all_acked;	       /* acking, and the peer acknowledged every byte and the FIN */
	uint64_t ack_deadline_ms; /* reset the connection if not all ACKed by then */
	struct token_memo token_memo; /* the last IMDSv2 token that verified on it */
};

struct srv_worker {
	struct server *srv;
	int index;
	pthread_t thread;
	bool thread_started;
	struct io_uring ring;
	bool ring_ready;
	int listen_fd;
	int listen_fd6; /* [fd00:ec2::254]:port, or -1 */
	bool accept_armed[2]; /* the multishot accept of listen_fd, listen_fd6 */
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
	uint64_t fds_released;	   /* descriptors this worker closed */
	uint64_t released_at_arm;  /* ... when the accept was last armed */
	uint64_t limits_logged_ms; /* worker 0: last log of the limit counters */
	struct fair fair;	   /* its connections by VM */
	struct srv_conn *pool;	   /* freed connections kept for reuse, last freed first (conn.c) */
	unsigned npool;
	struct srv_peer_req peer_reqs[SRV_PEER_SLOTS];
	struct srv_peer_req *peer_free; /* free peer_reqs, linked by next_free */
	/* Written by this worker only, read by server_counters (relaxed
	 * atomics: no lock prefix, no torn reads). */
	struct server_counters counts;
	struct server_counters logged; /* worker 0: the sums at the last log */
	struct stats_worker stats;     /* its answers, by VM (stats.h) */
	uint64_t input_ns;	       /* when the bytes being fed were received */
	uint64_t drain_ms;	       /* when the batch of completions being handled began */
};

/* hop_gate's keeper (hop.c), shared by the workers. */
struct srv_hop_gate {
	pthread_mutex_t lock;
	unsigned live;	/* marks placed, not yet deleted or left behind */
	uint64_t floor; /* the latest expiry of marks left behind, by us or an earlier imdsd */
};

struct server {
	struct server_config cfg;
	struct limits *limits; /* per-VM request buckets and connection counts */
	unsigned max_conns_total;
	uint64_t conns_open;	/* every worker's, atomic */
	uint64_t conns_closing; /* of those, closing: their descriptors are on their way back */
	int nworkers;
	struct srv_worker *workers;
	bool peer_on_ring; /* the kernel reads SO_PEERNAME as a ring command (peer.c) */
	struct srv_hop_gate hop_gate;
};

/* What the server takes from a VM's tree header besides the routes; read
 * from the same snapshot as the response, so it switches with the tree. */
struct srv_vm_facts {
	int hop_limit;
	struct limits_params limits;
};

static inline void srv_read_facts(const struct tree_view *tree, struct srv_vm_facts *f)
{
	const struct tree_meta *m = tree_view_meta(tree);

	f->hop_limit = m->hop_limit;
	f->limits = limits_resolve(m->request_rate, m->request_burst, m->max_conns);
}

/* One of the worker's own counters (server_counters reads them). */
static inline void srv_count(uint64_t *counter)
{
	__atomic_store_n(counter, __atomic_load_n(counter, __ATOMIC_RELAXED) + 1, __ATOMIC_RELAXED);
}

static inline bool srv_mid_request(const struct srv_conn *c)
{
	return http_conn_mid_request(&c->http);
}

static inline uint64_t srv_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static inline uint64_t srv_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * LIMITS_NS_PER_SEC + (uint64_t)ts.tv_nsec;
}

/* ---- submission helpers ---- */

static inline struct io_uring_sqe *srv_sqe(struct srv_worker *w)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&w->ring);

	if (!sqe) {
		/* SQ full: hand the queued entries to the kernel first. */
		io_uring_submit(&w->ring);
		sqe = io_uring_get_sqe(&w->ring);
	}
	if (!sqe) {
		log_error("worker %d: submission queue exhausted", w->index);
		return NULL;
	}
	w->inflight++;
	return sqe;
}

static inline void srv_set_data(struct io_uring_sqe *sqe, void *ptr, enum srv_op op)
{
	io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)ptr | op);
}

/* Arms a receive into the worker's provided buffers (group SRV_BUF_GROUP).
 * A multishot one posts a completion per buffer the kernel fills and stops
 * (no IORING_CQE_F_MORE) on EOF, on an error, and with -ENOBUFS when the
 * group is empty.  A connection's first receive is a single one: a client
 * that sends one request and "Connection: close" (a connection per path,
 * as imds-storm's conn mode) then has no receive pending when its answer has
 * gone, so closing it is one close, with no shutdown() to end a receive
 * first; the completion arms the multishot one when the connection goes on. */
static inline void srv_arm_recv_as(struct srv_worker *w, struct srv_conn *c, bool multishot)
{
	struct io_uring_sqe *sqe = srv_sqe(w);

	if (!sqe)
		return;
	if (multishot)
		io_uring_prep_recv_multishot(sqe, c->fd, NULL, 0, 0);
	else
		io_uring_prep_recv(sqe, c->fd, NULL, 0, 0); /* length 0: the buffer's */
	sqe->flags |= IOSQE_BUFFER_SELECT;
	sqe->buf_group = SRV_BUF_GROUP;
	srv_set_data(sqe, c, OP_RECV);
	c->recv_armed = true;
}

static inline void srv_arm_recv(struct srv_worker *w, struct srv_conn *c)
{
	srv_arm_recv_as(w, c, true);
}

/* Gives a provided buffer back to the kernel.  Until this runs the kernel
 * cannot use it again, so it must follow every buffer-carrying completion,
 * including those of connections that are closing. */
static inline void srv_buf_recycle(struct srv_worker *w, unsigned bid)
{
	io_uring_buf_ring_add(w->br, w->bufs + (size_t)bid * SRV_BUF_SIZE, SRV_BUF_SIZE, (unsigned short)bid,
			      io_uring_buf_ring_mask(SRV_BUF_COUNT), 0);
	io_uring_buf_ring_advance(w->br, 1);
}

static inline void srv_list_unlink(struct srv_conn *c)
{
	c->prev->next = c->next;
	c->next->prev = c->prev;
}

static inline void srv_list_push(struct srv_conn *head, struct srv_conn *c)
{
	c->next = head->next;
	c->prev = head;
	head->next->prev = c;
	head->next = c;
}

/* ---- server.c ---- */
/* Descriptors this process has open now, or -errno. */
int srv_fds_open(void);

/* ---- loop.c ---- */
/* A worker thread: runs its ring until server_stop wakes it. */
void *srv_worker_main(void *arg);
void srv_arm_accept(struct srv_worker *w);
void srv_arm_tick(struct srv_worker *w);

/* ---- peer.c ---- */
/* Whether the kernel reads a socket option as a ring command (Linux 6.7+);
 * asked once, of the worker's listener, before its thread starts. */
bool srv_peer_probe(struct srv_worker *w);
void srv_peer_init(struct srv_worker *w);
/* A socket accepted by the listener of `family`: its peer's address is
 * read, on the ring or by getpeername(), then srv_conn_open decides. */
void srv_peer_request(struct srv_worker *w, int fd, int family);
void srv_handle_peer(struct srv_worker *w, struct srv_peer_req *p, int res);
void srv_peer_free_all(struct srv_worker *w);

/* ---- conn.c ---- */
/* An accepted socket whose VM-side endpoint is `peer` (NULL: unknown):
 * served, or closed without a byte. */
void srv_conn_open(struct srv_worker *w, int fd, const struct imds_conn_key *peer);
/* Stops serving `c`: no more input, output or re-arming.  Its memory stays
 * until srv_conn_maybe_free sees nothing in flight. */
void srv_conn_close(struct srv_worker *w, struct srv_conn *c);
/* Closes the socket and frees; only srv_conn_maybe_free calls it. */
void srv_conn_free(struct srv_conn *c);

/* Frees a closing connection once no request refers to it.  Called after
 * each of its completions and after closing it from outside its own
 * completions (tick, stop); never from inside a handler that still uses it. */
static inline void srv_conn_maybe_free(struct srv_conn *c)
{
	if (!c->closing || c->recv_armed || c->send_inflight || c->cancel_inflight)
		return;
	srv_conn_free(c);
}

/* Once a second: idle connections, a paused accept, the limits log. */
void srv_handle_tick(struct srv_worker *w);
/* server_stop woke the worker: close everything, cancel every request. */
void srv_handle_wake(struct srv_worker *w);
/* After the loop: frees what a completion that never came left behind. */
void srv_free_conns(struct srv_worker *w);
/* Every worker's counters summed (server_counters). */
void srv_sum_counters(const struct server *srv, struct server_counters *out);

/* ---- request.c ---- */
void srv_handle_recv(struct srv_worker *w, struct srv_conn *c, const struct io_uring_cqe *cqe, bool more);
void srv_handle_send(struct srv_worker *w, struct srv_conn *c, int res);

/* ---- hop.c ---- */
void srv_hop_gate_init(struct server *srv);
int srv_hop_mark(struct srv_conn *c, int hop_limit);
void srv_hop_unmark(struct srv_conn *c, bool queue_dropped);
bool srv_await_ack(struct srv_worker *w, struct srv_conn *c);
bool srv_hop_hold(struct srv_worker *w, struct srv_conn *c);
bool srv_hop_release(struct srv_worker *w, struct srv_conn *c);
void srv_hop_sent(struct srv_conn *c, size_t n);
void srv_ack_check(struct srv_worker *w, struct srv_conn *c, uint64_t now_ms);
void srv_ack_check_all(struct srv_worker *w);
void srv_arm_ack_poll(struct srv_worker *w);
void srv_handle_ack_poll(struct srv_worker *w);

#endif

/* loop.c: a worker thread of the io_uring server (server_int.h): arms
 * the listener's multishot accept, the tick and the stop's eventfd, and
 * dispatches each completion on its op tag.
 */
#include "serve/server_int.h"

#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <unistd.h>

#define SRV_TICK_SEC 1
#define SRV_STOP_WAIT_MS 2000 /* give up draining completions after this */


/* Arms the multishot accept of each listener that has none. */
void srv_arm_accept(struct srv_worker *w)
{
	const int fds[2] = { w->listen_fd, w->listen_fd6 };
	static const enum srv_op ops[2] = { OP_ACCEPT, OP_ACCEPT6 };

	for (int i = 0; i < 2; i++) {
		struct io_uring_sqe *sqe;

		if (fds[i] < 0 || w->accept_armed[i])
			continue;
		sqe = srv_sqe(w);
		if (!sqe)
			return;
		/* One SQE, one completion per accepted socket while
		 * IORING_CQE_F_MORE is set; the kernel ends it on an error
		 * (e.g. EMFILE). */
		io_uring_prep_multishot_accept(sqe, fds[i], NULL, NULL, SOCK_CLOEXEC);
		srv_set_data(sqe, NULL, ops[i]);
		w->accept_armed[i] = true;
	}
	w->released_at_arm = w->fds_released;
}

void srv_arm_tick(struct srv_worker *w)
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

/* ---- completions ---- */

static void srv_handle_accept(struct srv_worker *w, int listener, int res, bool more)
{
	if (!more)
		w->accept_armed[listener] = false;
	if (res >= 0 && w->stopping)
		close(res); /* accepted while the stop's cancel was on its way */
	else if (res >= 0)
		srv_peer_request(w, res, listener ? AF_INET6 : AF_INET);
	else if (res == -EMFILE || res == -ENFILE)
		/* The kernel accepts while its queue holds connections, up to
		 * the limit.  Those it handed over in this batch were refused
		 * and closed before this completion: if any descriptor went
		 * back since the accept was armed, go on at once, otherwise
		 * when one does (conn.c) or on the next tick.  At the total
		 * cap that keeps the queue moving, so a quiet VM's connection
		 * does not wait behind a hoarder's for a tick each burst. */
		w->accept_paused = w->fds_released == w->released_at_arm;
	else if (res == -ENOBUFS || res == -ENOMEM)
		w->accept_paused = true; /* re-armed on the next tick, not in a busy loop */
	else if (res != -ECANCELED && res != -EINTR && res != -ECONNABORTED)
		log_error("worker %d: accept: %s", w->index, strerror(-res));
	if (!more && !w->stopping && !w->accept_paused)
		srv_arm_accept(w);
}

static void srv_handle_cancel(struct srv_conn *c)
{
	c->cancel_inflight = false;
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
		srv_handle_accept(w, 0, cqe->res, more);
		break;
	case OP_ACCEPT6:
		srv_handle_accept(w, 1, cqe->res, more);
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
	case OP_PEERNAME:
		srv_handle_peer(w, ptr, cqe->res);
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
	default: /* OP_STOP: the cancel's own completion; OP_FD_DONE */
		break;
	}
}

/* ---- worker thread ---- */

static int srv_drain(struct srv_worker *w)
{
	struct io_uring_cqe *cqe;
	unsigned head, n = 0;

	/* One clock read for the batch, for what needs milliseconds only
	 * (a send's progress as activity), not one per completion. */
	w->drain_ms = srv_now_ms();
	io_uring_for_each_cqe(&w->ring, head, cqe)
	{
		srv_dispatch(w, cqe);
		n++;
	}
	io_uring_cq_advance(&w->ring, n);
	return (int)n;
}

void *srv_worker_main(void *arg)
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
			log_error("worker %d: io_uring wait: %s", w->index, strerror(-rc));
			break;
		}
		srv_drain(w);
	}
	/* Tear the ring down before freeing connections: if the drain timed
	 * out, a request may still point into one of them. */
	io_uring_queue_exit(&w->ring);
	w->ring_ready = false;
	srv_free_conns(w);
	srv_peer_free_all(w);
	return NULL;
}

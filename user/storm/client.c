/* client.c: the storm's io_uring client.  One ring per worker thread;
 * every client's connect, send and recv go through it, tagged with the
 * client's slot and attempt.  A client's socket is made inside its VM's
 * network namespace.  Each answer is parsed (llhttp), timed, checked
 * (crawl.c, check.c) and, with --save, written out. */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "storm/client.h"
#include "storm/save.h"

#define STORM_BODY_MAX (1u << 20)  /* larger than any compiled leaf */
#define STORM_RECV_BUF 8192
#define STORM_WAIT_NS 2000000 /* the loop wakes at least this often, for the scan */
#define STORM_SCAN_NS 5000000ull  /* timeout/retry scan period: 5 ms */
#define STORM_BACKOFF_NS 10000000ull /* first retry after 10 ms, doubling */
#define STORM_BACKOFF_MAX_NS 1000000000ull
#define STORM_WRONG_DATA_SHOWN 10 /* details printed for the first few only */

/* --- checking one response --- */

static void storm_show_wrong(struct storm_client *c, const char *path)
{
	struct storm_run *run = c->th->run;
	char body[512];

	if (__atomic_fetch_add(&run->wrong_shown, 1, __ATOMIC_RELAXED) >= STORM_WRONG_DATA_SHOWN)
		return;
	storm_check_escape(&c->body, body, sizeof(body));
	fprintf(stderr, "imds-storm: wrong data: vm%u (expected %s) %s: status %d, body \"%s\"\n", c->vm->index,
		c->vm->d->instance_id, path, c->status, body);
}

static void storm_save_answer(struct storm_client *c, const char *path)
{
	struct storm_run *run = c->th->run;
	int is_listing = path[strlen(path) - 1] == '/' ||
			 !strcmp(storm_rel_path(run->o.api_version, path), "dynamic/instance-identity");

	storm_save(run->o.save_dir, c->vm->ipv4, path, is_listing, &c->body, &run->save_errors);
}

/* The token header later GETs carry, and the blank line that ends them. */
static void storm_set_token(struct storm_client *c, const char *token, size_t len)
{
	memcpy(c->token, token, len);
	c->token[len] = '\0';
	c->auth_len = (size_t)snprintf(c->auth, sizeof(c->auth), "X-aws-ec2-metadata-token: %s\r\n\r\n", c->token);
}

/* -1: fine; otherwise the error kind of the response. */
static int storm_check(struct storm_client *c)
{
	struct storm_node *r = storm_crawl_current(&c->crawl);
	int kind;

	if (c->th->run->o.trace)
		fprintf(stderr, "vm%u %s %s %d %zu\n", c->vm->index, r->method == STORM_PUT ? "PUT" : "GET", r->path,
			c->status, c->body.len);
	if (r->method == STORM_PUT) {
		if (c->status != 200 || !c->body.len || c->body.len >= sizeof(c->token))
			return SE_STATUS;
		storm_set_token(c, c->body.data, c->body.len);
		return -1;
	}
	if (c->th->run->o.save_dir && c->status == 200)
		storm_save_answer(c, r->path);
	kind = storm_crawl_verdict(&c->crawl, r, c->vm, c->status, &c->body);
	if (kind == SE_WRONG_DATA)
		storm_show_wrong(c, r->path);
	return kind ? kind : -1;
}

/* --- HTTP --- */

static int storm_on_body(llhttp_t *p, const char *at, size_t len)
{
	struct storm_client *c = p->data;

	if (c->body.len + len > STORM_BODY_MAX || outbuf_append(&c->body, at, len))
		return -1;
	return 0;
}

static int storm_on_complete(llhttp_t *p)
{
	struct storm_client *c = p->data;

	c->complete = 1;
	c->status = p->status_code;
	c->keep = llhttp_should_keep_alive(p);
	return HPE_PAUSED; /* one response per request: stop here */
}

void storm_client_settings(llhttp_settings_t *settings)
{
	llhttp_settings_init(settings);
	settings->on_body = storm_on_body;
	settings->on_message_complete = storm_on_complete;
}

/* The node's rendered bytes, then the token header (none before the PUT
 * or with --no-token) and the blank line. */
static int storm_build_request(struct storm_client *c)
{
	const struct storm_node *r = storm_crawl_current(&c->crawl);

	outbuf_reset(&c->out);
	c->out_off = 0;
	if (outbuf_append(&c->out, r->req, r->req_len))
		return -ENOMEM;
	if (r->method == STORM_PUT)
		return 0;
	return c->auth_len ? outbuf_append(&c->out, c->auth, c->auth_len) : outbuf_append(&c->out, "\r\n", 2);
}

/* --- connection handling --- */

/* Operations are tagged with the client's slot, the attempt and what they
 * are: a completion from an earlier attempt (after a timeout, a reconnect
 * or a failed send) is counted and dropped. */
enum storm_op { OP_CONNECT = 1, OP_SEND, OP_RECV };

#define STORM_GEN_MASK 0x3fffffffu

static uint64_t storm_op_tag(const struct storm_client *c, enum storm_op op)
{
	return (uint64_t)c->slot << 32 | (uint64_t)op << 30 | (c->gen & STORM_GEN_MASK);
}

/* An SQE of the thread's ring; submits what is queued when it is full. */
static struct io_uring_sqe *storm_sqe(struct storm_client *c, enum storm_op op)
{
	struct io_uring *ring = &c->th->ring;
	struct io_uring_sqe *sqe = io_uring_get_sqe(ring);

	if (!sqe) {
		io_uring_submit(ring);
		sqe = io_uring_get_sqe(ring);
	}
	if (sqe) {
		io_uring_sqe_set_data64(sqe, storm_op_tag(c, op));
		c->inflight++;
	}
	return sqe;
}

/* A buffer an abandoned operation may still read or write: kept until the
 * run ends (a rare case: a timeout, a reconnect). */
static void storm_bury(struct storm_thread *th, void *buf)
{
	if (!buf)
		return;
	if (th->ndead == th->dead_cap) {
		size_t cap = th->dead_cap ? th->dead_cap * 2 : 16;
		void **d = realloc(th->dead, cap * sizeof(*d));

		if (!d)
			return; /* leaked rather than freed under the kernel */
		th->dead = d;
		th->dead_cap = cap;
	}
	th->dead[th->ndead++] = buf;
}

/* An operation still pending holds the socket open: shutdown() ends it
 * (its completion is then stale), close() alone would not; its buffers
 * are set aside, not reused. */
static void storm_close(struct storm_client *c)
{
	if (c->fd >= 0) {
		if (c->inflight) {
			shutdown(c->fd, SHUT_RDWR);
			storm_bury(c->th, c->rbuf);
			storm_bury(c->th, c->out.data);
			c->rbuf = NULL;
			c->out = (struct outbuf){ 0 };
		}
		close(c->fd);
	}
	c->fd = -1;
	c->reused = 0;
	c->gen++;
}

/* The socket is created inside the VM's namespace: a network namespace is
 * per thread, and a socket keeps the namespace it was created in. */
static int storm_socket_in_vm(struct storm_client *c)
{
	struct storm_thread *th = c->th;
	int fd, one = 1;

	if (th->cur_nsfd != c->vm->nsfd) {
		if (setns(c->vm->nsfd, CLONE_NEWNET))
			return -errno;
		th->cur_nsfd = c->vm->nsfd;
	}
	fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return fd;
}

static void storm_fail(struct storm_client *c, int kind, int connect_failed);
static void storm_send(struct storm_client *c);
static int storm_recv(struct storm_client *c);

static void storm_connect(struct storm_client *c)
{
	int fd = storm_socket_in_vm(c);

	if (fd < 0) {
		storm_fail(c, -1, 1);
		return;
	}
	struct io_uring_sqe *sqe;

	c->fd = fd;
	c->state = CS_CONNECTING;
	sqe = storm_sqe(c, OP_CONNECT);
	if (!sqe) {
		storm_fail(c, -1, 1);
		return;
	}
	io_uring_prep_connect(sqe, fd, (const struct sockaddr *)&c->th->run->sa, sizeof(c->th->run->sa));
}

/* One attempt of the current request: on the kept-alive connection when
 * there is one, on a new one otherwise. */
static void storm_attempt(struct storm_client *c, uint64_t now)
{
	const struct storm_run *run = c->th->run;

	c->gen++;
	c->deadline = now + (uint64_t)run->o.timeout_ms * 1000000ull;
	outbuf_reset(&c->body);
	c->complete = c->keep = c->status = 0;
	c->resp_bytes = 0;
	llhttp_init(&c->parser, HTTP_RESPONSE, &run->settings);
	c->parser.data = c;
	if (storm_build_request(c)) {
		storm_fail(c, SE_BAD_HTTP, 0);
		return;
	}
	if (c->fd >= 0) {
		storm_send(c);
		return;
	}
	storm_connect(c);
}

static void storm_finish(struct storm_client *c)
{
	struct storm_thread *th = c->th;

	storm_close(c);
	c->state = CS_DONE;
	th->active--;
	__atomic_store_n(&th->st.last_done_ns, storm_now(), __ATOMIC_RELAXED);
	storm_count(&th->st.clients_done);
}

/* Next request of the crawl; at the crawl's end a steady client starts
 * over (keeping its token) until the run's time is up. */
static void storm_next(struct storm_client *c)
{
	struct storm_run *run = c->th->run;
	uint64_t now = storm_now();

	if (c->crawl.qpos >= c->crawl.qn) {
		storm_count(&c->th->st.crawls);
		if (run->o.mode != STORM_STEADY || now >= run->stop_at ||
		    storm_crawl_init(&c->crawl, run->o.token && !c->token[0])) {
			storm_finish(c);
			return;
		}
	}
	c->t_start = now;
	c->attempts = 0;
	storm_attempt(c, now);
}

/* kind: an error kind, or -1 for a connect failure (not an error unless
 * the retries run out).  Retries with a doubling back-off. */
static void storm_fail(struct storm_client *c, int kind, int connect_failed)
{
	struct storm_thread *th = c->th;
	uint64_t backoff;

	storm_close(c);
	if (connect_failed)
		storm_count(&th->st.connect_failures);
	else
		storm_count(&th->st.errors[kind]);
	if (kind == SE_WRONG_DATA || kind == SE_STATUS || c->attempts >= th->run->o.retries) {
		if (kind != SE_WRONG_DATA && kind != SE_STATUS)
			storm_count(&th->st.errors[SE_GAVE_UP]);
		storm_finish(c); /* the crawl is abandoned, as cloud-init's would be */
		return;
	}
	backoff = STORM_BACKOFF_NS << c->attempts;
	c->attempts++;
	storm_count(&th->st.retries);
	c->retry_at = storm_now() + (backoff < STORM_BACKOFF_MAX_NS ? backoff : STORM_BACKOFF_MAX_NS);
	c->state = CS_RETRY_WAIT;
}

static void storm_response_done(struct storm_client *c)
{
	struct storm_thread *th = c->th;
	int kind;

	storm_hist_add(&th->hist, storm_now() - c->t_start);
	storm_count(&th->st.requests);
	kind = storm_check(c);
	if (c->keep && th->run->o.mode != STORM_CONN) {
		c->reused = 1;
		c->state = CS_IDLE;
	} else {
		storm_close(c);
	}
	if (kind >= 0) {
		storm_count(&th->st.errors[kind]);
		if (kind != SE_WRONG_DATA && kind != SE_STATUS) {
			storm_finish(c);
			return;
		}
	}
	c->crawl.qpos++;
	storm_next(c);
}

/* The server closed a kept-alive connection before answering: a normal
 * race of keep-alive, so send again on a new connection without counting
 * an error (HTTP clients do the same for idempotent requests). */
static void storm_reconnect(struct storm_client *c)
{
	storm_count(&c->th->st.reconnects);
	storm_close(c);
	storm_attempt(c, storm_now());
}

/* The request and, at once, the recv for its answer: one submission
 * carries both, and the send runs first. */
static void storm_send(struct storm_client *c)
{
	struct io_uring_sqe *sqe = storm_sqe(c, OP_SEND);

	if (!sqe) {
		storm_fail(c, SE_RESET, 0);
		return;
	}
	io_uring_prep_send(sqe, c->fd, c->out.data + c->out_off, c->out.len - c->out_off, MSG_NOSIGNAL);
	if (c->state != CS_RECEIVING) {
		c->state = CS_RECEIVING;
		if (storm_recv(c))
			storm_fail(c, SE_RESET, 0);
	}
}

static int storm_recv(struct storm_client *c)
{
	struct io_uring_sqe *sqe;

	if (!c->rbuf && !(c->rbuf = malloc(STORM_RECV_BUF)))
		return -ENOMEM;
	sqe = storm_sqe(c, OP_RECV);
	if (!sqe)
		return -ENOMEM;
	io_uring_prep_recv(sqe, c->fd, c->rbuf, STORM_RECV_BUF, 0);
	return 0;
}

/* A send completed: all of it, part of it (the rest goes next), or an
 * error; on a kept-alive connection the server may have closed it. */
static void storm_sent(struct storm_client *c, int res)
{
	if (res < 0) {
		if (c->reused)
			storm_reconnect(c);
		else
			storm_fail(c, SE_RESET, 0);
		return;
	}
	c->out_off += (size_t)res;
	if (c->out_off < c->out.len)
		storm_send(c);
}

static void storm_on_eof(struct storm_client *c)
{
	if (!c->complete && llhttp_finish(&c->parser) == HPE_OK && c->complete)
		return; /* a body delimited by the close */
	if (c->complete)
		return;
	if (c->reused && !c->resp_bytes)
		storm_reconnect(c);
	else
		storm_fail(c, SE_RESET, 0);
}

static void storm_received(struct storm_client *c, int res)
{
	llhttp_errno_t e;

	if (res <= 0) {
		storm_on_eof(c);
		if (c->complete)
			storm_response_done(c);
		return;
	}
	c->resp_bytes += (size_t)res;
	e = llhttp_execute(&c->parser, c->rbuf, (size_t)res);
	if (e != HPE_OK && !(e == HPE_PAUSED && c->complete)) {
		storm_fail(c, SE_BAD_HTTP, 0);
		return;
	}
	if (c->complete)
		storm_response_done(c);
	else if (storm_recv(c))
		storm_fail(c, SE_RESET, 0);
}

static void storm_connected(struct storm_client *c, int res)
{
	if (res < 0) {
		storm_fail(c, -1, 1);
		return;
	}
	storm_send(c);
}

static void storm_on_completion(struct storm_thread *th, uint64_t tag, int res)
{
	struct storm_client *c = th->clients[tag >> 32];
	enum storm_op op = (enum storm_op)((tag >> 30) & 3);

	c->inflight--;
	if ((tag & STORM_GEN_MASK) != (c->gen & STORM_GEN_MASK))
		return; /* an earlier attempt's */
	if (op == OP_CONNECT && c->state == CS_CONNECTING)
		storm_connected(c, res);
	else if (op == OP_SEND && c->state == CS_RECEIVING)
		storm_sent(c, res);
	else if (op == OP_RECV && c->state == CS_RECEIVING)
		storm_received(c, res);
}

/* Timeouts and due retries; called every STORM_SCAN_NS. */
static void storm_scan(struct storm_thread *th, uint64_t now)
{
	for (size_t i = 0; i < th->n; i++) {
		struct storm_client *c = th->clients[i];

		if (c->state == CS_RETRY_WAIT && now >= c->retry_at)
			storm_attempt(c, now);
		else if (c->state == CS_CONNECTING && now > c->deadline)
			storm_fail(c, -1, 1);
		else if (c->state == CS_RECEIVING && now > c->deadline)
			storm_fail(c, SE_TIMEOUT, 0);
	}
}

/* Completions of the thread's ring; submissions of every request they
 * lead to go out together on the next wait. */
static void storm_reap(struct storm_thread *th)
{
	struct io_uring_cqe *cqe;
	unsigned head, n = 0;

	io_uring_for_each_cqe(&th->ring, head, cqe) {
		storm_on_completion(th, cqe->user_data, cqe->res);
		n++;
	}
	io_uring_cq_advance(&th->ring, n);
}

/* --- the worker thread --- */

/* One ring per thread, made by the thread that submits to it (which
 * SINGLE_ISSUER and DEFER_TASKRUN ask); older kernels get a plain ring. */
static int storm_ring_init(struct storm_thread *th)
{
	struct io_uring_params p = { .flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN };
	unsigned entries = 64;
	int rc;

	while (entries < 2 * th->n + 16 && entries < 4096)
		entries *= 2;
	rc = io_uring_queue_init_params(entries, &th->ring, &p);
	if (rc == -EINVAL) {
		memset(&p, 0, sizeof(p));
		rc = io_uring_queue_init_params(entries, &th->ring, &p);
	}
	return rc;
}

void *storm_thread_main(void *arg)
{
	struct storm_thread *th = arg;
	struct __kernel_timespec wait = { 0, (long long)STORM_WAIT_NS };
	uint64_t next_scan;
	int rc = storm_ring_init(th);

	pthread_barrier_wait(&th->run->start);
	if (rc) {
		fprintf(stderr, "imds-storm: io_uring: %s\n", strerror(-rc));
		exit(1); /* the other threads cannot be released cleanly */
	}
	th->ring_ok = 1;
	for (size_t i = 0; i < th->n; i++)
		storm_next(th->clients[i]);
	next_scan = storm_now() + STORM_SCAN_NS;
	while (th->active) {
		struct io_uring_cqe *cqe;
		uint64_t now;

		rc = io_uring_submit_and_wait_timeout(&th->ring, &cqe, 1, &wait, NULL);
		if (rc < 0 && rc != -ETIME && rc != -EINTR && rc != -EBUSY) {
			fprintf(stderr, "imds-storm: io_uring: %s\n", strerror(-rc));
			exit(1);
		}
		storm_reap(th);
		now = storm_now();
		if (now >= next_scan) {
			storm_scan(th, now);
			next_scan = now + STORM_SCAN_NS;
		}
	}
	io_uring_queue_exit(&th->ring); /* cancels what earlier attempts left */
	th->ring_ok = 0;
	__atomic_fetch_add(&th->run->threads_done, 1, __ATOMIC_RELEASE);
	return NULL;
}

void storm_client_free(struct storm_client *c)
{
	storm_crawl_free(&c->crawl);
	outbuf_free(&c->body);
	outbuf_free(&c->out);
	free(c->rbuf);
	if (c->fd >= 0)
		close(c->fd);
}

void storm_thread_free(struct storm_thread *th)
{
	free(th->clients);
	if (th->ring_ok)
		io_uring_queue_exit(&th->ring);
	for (size_t i = 0; i < th->ndead; i++)
		free(th->dead[i]);
	free(th->dead);
}

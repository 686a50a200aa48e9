/* null_responder.c: the cost floor of `make bench` (issue 15;
 * docs/performance.md, "The null responder").
 *
 * An HTTP server that answers every request with one fixed 200 and does
 * nothing else, built to cost as little as a server on this path can: what
 * imdsd or nginx spends above it is their own work, the rest is the
 * kernel's (SYN, accept, the bridge and TC programs, read, write, FIN).
 *
 * W workers (threads), each with its own SO_REUSEPORT listener and its own
 * io_uring: one multishot accept that puts each connection straight into
 * the ring's table of direct descriptors (no file descriptor, so no fd
 * table to grow and no fget/fput per operation), then recv (into provided
 * buffers), send and close on that slot; every batch of operations one
 * io_uring_enter, no other system call.
 *
 * HTTP/1.x framing only, since an answer needs nothing else: a request
 * ends at its blank line plus any Content-Length body.  The connection
 * stays open unless the request says "Connection: close", or is HTTP/1.0
 * without "Connection: keep-alive", or cannot be framed (chunked, a body
 * larger than the buffer, headers larger than the buffer).  Pipelined
 * requests get their answers in order, up to PIPE_MAX per send, from one
 * static buffer of repeated answers (no copy per request).  A general
 * parser (llhttp, which imdsd uses) would cost more than the rest of this
 * program together, and only the end of each request matters here.
 *
 *   null_responder [--workers W] [--address A] [--port P] [--slots S]
 *                  (2, 169.254.169.254, 80, 16384 connections per worker)
 *
 * It says "null_responder: ready" on stderr once every listener exists and
 * runs until SIGTERM or SIGINT; a benchmark tool, not part of imds. */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <liburing.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define BUF_SIZE 4096 /* a read, and a request's headers at most (imds-storm's are about 250 bytes) */
#define HELD_SIZE (4 * BUF_SIZE) /* bytes a connection may send ahead of its answers */
#define RECV_BUFS 512 /* provided receive buffers per worker (a power of 2) */
#define BUF_GROUP 0
#define PIPE_MAX 32 /* answers per send */
#define RING_ENTRIES 1024
#define BACKLOG 4096 /* as imdsd and nginx in the bench */

/* The answer; its body is a plausible token, since imds-storm sends the
 * body of the PUT's answer back as a header. */
#define BODY "AQAEAnullresponderfixedanswer=="
#define HEAD "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 31\r\n"
#define ANSWER_KEEP HEAD "Connection: keep-alive\r\n\r\n" BODY
#define ANSWER_CLOSE HEAD "Connection: close\r\n\r\n" BODY
_Static_assert(sizeof(BODY) - 1 == 31, "Content-Length must match the body");

#define KEEP_LEN (sizeof(ANSWER_KEEP) - 1)
#define CLOSE_LEN (sizeof(ANSWER_CLOSE) - 1)

/* PIPE_MAX keep-alive answers, then the closing one: k keep-alive answers
 * are the first k * KEEP_LEN bytes, and k of them followed by the closing
 * one are the last k * KEEP_LEN + CLOSE_LEN. */
static char answers[PIPE_MAX * KEEP_LEN + CLOSE_LEN];

enum op { OP_ACCEPT = 1, OP_RECV, OP_SEND };

/* A connection, by its direct descriptor slot.  Its first request is read
 * by a single recv: a connection-per-request client sends one and is
 * answered and closed, for the fewest operations.  A connection that stays
 * open then gets a multishot recv, armed once for its life as imdsd's is.
 * Bytes arrive in the worker's provided buffers; they are copied (into
 * `held`) only when a request is split across reads or arrives while an
 * answer is still being sent. */
struct conn {
	char *held; /* HELD_SIZE bytes from the worker's pool, or NULL */
	uint32_t len; /* bytes in held */
	uint32_t send_off, send_len; /* the part of answers[] being sent */
	bool sending;
	bool recv_armed; /* a recv (single or multishot) is in flight */
	bool closing; /* no more answers: close once the send and recv are done */
	bool shut; /* shutdown() sent, to end the multishot recv */
};

/* io_uring hands out direct descriptor slots round the table, not lowest
 * first, so large state kept by slot would touch a new page for every
 * connection until the table had gone round once (page faults were a third
 * of a storm's CPU).  The slot's state is small and touched up front; held
 * buffers come from a stack, the last freed first, so few are in use and
 * they stay hot. */
struct worker {
	struct io_uring ring;
	int listen_fd;
	unsigned slots;
	struct conn *conns;
	char **free_held; /* a stack of at most `slots` buffers */
	unsigned nfree;
	struct io_uring_buf_ring *br; /* RECV_BUFS provided buffers */
	char *recv_bufs;
	pthread_t tid;
};

static struct {
	unsigned workers, slots;
	struct in_addr address;
	unsigned port;
} opt = { .workers = 2, .slots = 16384, .port = 80 };

static uint64_t tag(enum op op, unsigned slot)
{
	return (uint64_t)op << 32 | slot;
}

static void fail(const char *what, int err)
{
	fprintf(stderr, "null_responder: %s: %s\n", what, strerror(err));
	exit(1);
}

/* An SQE; when the submission queue is full, what it holds goes first. */
static struct io_uring_sqe *get_sqe(struct worker *w)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&w->ring);

	while (!sqe) {
		io_uring_submit(&w->ring);
		sqe = io_uring_get_sqe(&w->ring);
	}
	return sqe;
}

/* --- operations --- */

static void arm_accept(struct worker *w)
{
	struct io_uring_sqe *sqe = get_sqe(w);

	io_uring_prep_multishot_accept_direct(sqe, w->listen_fd, NULL, NULL, 0);
	io_uring_sqe_set_data64(sqe, tag(OP_ACCEPT, 0));
}

static void arm_recv(struct worker *w, unsigned slot, bool multishot)
{
	struct io_uring_sqe *sqe = get_sqe(w);

	if (multishot)
		io_uring_prep_recv_multishot(sqe, (int)slot, NULL, 0, 0);
	else
		io_uring_prep_recv(sqe, (int)slot, NULL, BUF_SIZE, 0);
	sqe->flags |= IOSQE_FIXED_FILE | IOSQE_BUFFER_SELECT;
	sqe->buf_group = BUF_GROUP;
	io_uring_sqe_set_data64(sqe, tag(OP_RECV, slot));
	w->conns[slot].recv_armed = true;
}

static void arm_send(struct worker *w, unsigned slot)
{
	struct conn *c = &w->conns[slot];
	struct io_uring_sqe *sqe = get_sqe(w);

	io_uring_prep_send(sqe, (int)slot, answers + c->send_off, c->send_len, MSG_NOSIGNAL);
	sqe->flags |= IOSQE_FIXED_FILE;
	io_uring_sqe_set_data64(sqe, tag(OP_SEND, slot));
	c->sending = true;
}

/* Operations whose success needs no handling post no completion. */
static void arm_quiet(struct io_uring_sqe *sqe)
{
	sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
	io_uring_sqe_set_data64(sqe, 0);
}

static void release_held(struct worker *w, struct conn *c)
{
	if (c->held)
		w->free_held[w->nfree++] = c->held; /* at most one per slot */
	c->held = NULL;
	c->len = 0;
}

/* Ends a connection once its last answer is sent: closed at once when no
 * recv is in flight; else shut down first, which ends the multishot recv
 * (a closed slot would not: the recv keeps the socket), and closed when
 * that recv's last completion comes. */
static void finish(struct worker *w, unsigned slot)
{
	struct conn *c = &w->conns[slot];
	struct io_uring_sqe *sqe;

	if (c->sending)
		return;
	if (c->recv_armed) {
		if (!c->shut) {
			sqe = get_sqe(w);
			io_uring_prep_shutdown(sqe, (int)slot, SHUT_RDWR);
			sqe->flags |= IOSQE_FIXED_FILE;
			arm_quiet(sqe);
			c->shut = true;
		}
		return;
	}
	release_held(w, c);
	sqe = get_sqe(w);
	io_uring_prep_close_direct(sqe, slot);
	arm_quiet(sqe);
}

/* --- framing --- */

static bool header_is(const char *line, size_t len, const char *name)
{
	size_t n = strlen(name);

	return len > n && !strncasecmp(line, name, n);
}

static bool value_has(const char *line, size_t len, const char *word)
{
	size_t n = strlen(word);

	for (size_t i = 0; i + n <= len; i++)
		if (!strncasecmp(line + i, word, n))
			return true;
	return false;
}

/* The request at the start of buf (len bytes): its length, 0 while it is
 * incomplete, -1 when it cannot be framed (answered, then closed).  *close
 * tells whether the connection ends after its answer. */
static long frame_request(const char *buf, size_t len, bool *close)
{
	const char *end = memmem(buf, len, "\r\n\r\n", 4);
	const char *line = buf, *nl;
	bool http10, conn_close = false, conn_keep = false;
	size_t body = 0, head;

	if (!end)
		return len >= BUF_SIZE ? -1 : 0;
	head = (size_t)(end - buf) + 4;
	nl = memchr(line, '\n', head);
	http10 = nl - line >= 9 && !memcmp(nl - 9, "HTTP/1.0\r", 9);
	for (line = nl + 1; line < end; line = nl + 1) {
		size_t n;

		nl = memchr(line, '\n', head - (size_t)(line - buf));
		n = (size_t)(nl - line);
		if (header_is(line, n, "connection:")) {
			conn_close |= value_has(line + 11, n - 11, "close");
			conn_keep |= value_has(line + 11, n - 11, "keep-alive");
		} else if (header_is(line, n, "content-length:")) {
			body = strtoul(line + 15, NULL, 10);
		} else if (header_is(line, n, "transfer-encoding:")) {
			return -1;
		}
	}
	*close = http10 ? !conn_keep || conn_close : conn_close;
	if (body > BUF_SIZE - head)
		return -1;
	return head + body <= len ? (long)(head + body) : 0;
}

/* Answers the complete requests at the start of buf (at most PIPE_MAX):
 * starts their send and returns the bytes they took. */
static size_t answer_requests(struct worker *w, unsigned slot, const char *buf, size_t len)
{
	struct conn *c = &w->conns[slot];
	unsigned n = 0;
	size_t used = 0;
	bool close = false;

	while (n < PIPE_MAX && !close) {
		long r = frame_request(buf + used, len - used, &close);

		if (r == 0)
			break;
		n++;
		if (r < 0) {
			close = true;
			used = len;
			break;
		}
		used += (size_t)r;
	}
	if (!n)
		return 0;
	c->closing = close;
	if (close) {
		c->send_len = (uint32_t)((n - 1) * KEEP_LEN + CLOSE_LEN);
		c->send_off = (uint32_t)sizeof(answers) - c->send_len;
	} else {
		c->send_off = 0;
		c->send_len = (uint32_t)(n * KEEP_LEN);
	}
	arm_send(w, slot);
	return used;
}

/* Keeps bytes for later; false when they do not fit (a client that
 * pipelines more than HELD_SIZE ahead of its answers). */
static bool hold(struct worker *w, struct conn *c, const char *data, size_t n)
{
	if (!c->held) {
		c->held = w->nfree ? w->free_held[--w->nfree] : malloc(HELD_SIZE);
		if (!c->held)
			fail("buffers", ENOMEM);
	}
	if (c->len + n > HELD_SIZE)
		return false;
	memcpy(c->held + c->len, data, n);
	c->len += (uint32_t)n;
	return true;
}

static void answer_held(struct worker *w, unsigned slot)
{
	struct conn *c = &w->conns[slot];
	size_t used = answer_requests(w, slot, c->held, c->len);

	memmove(c->held, c->held + used, c->len - used);
	c->len -= (uint32_t)used;
	if (!c->len)
		release_held(w, c);
}

/* n bytes received: answered straight from the receive buffer when nothing
 * waits before them, else held behind what does. */
static void take_bytes(struct worker *w, unsigned slot, const char *data, size_t n)
{
	struct conn *c = &w->conns[slot];
	size_t used;

	if (c->closing)
		return; /* after the last answered request: ignored */
	if (c->len || c->sending) {
		if (!hold(w, c, data, n))
			c->closing = true;
		else if (!c->sending)
			answer_held(w, slot);
		return;
	}
	used = answer_requests(w, slot, data, n);
	if (used < n && !c->closing && !hold(w, c, data + used, n - used))
		c->closing = true;
}

/* --- completions --- */

static void on_accept(struct worker *w, int res, unsigned flags)
{
	if (res >= 0 && (unsigned)res < w->slots) {
		w->conns[res] = (struct conn){ 0 };
		arm_recv(w, (unsigned)res, false);
	}
	/* The multishot accept ends on an error (a full table: -ENFILE) */
	if (!(flags & IORING_CQE_F_MORE))
		arm_accept(w);
}

static void give_back(struct worker *w, unsigned bid)
{
	io_uring_buf_ring_add(w->br, w->recv_bufs + (size_t)bid * BUF_SIZE, BUF_SIZE, (unsigned short)bid,
			      io_uring_buf_ring_mask(RECV_BUFS), 0);
	io_uring_buf_ring_advance(w->br, 1);
}

static void on_recv(struct worker *w, unsigned slot, int res, unsigned flags)
{
	struct conn *c = &w->conns[slot];

	if (!(flags & IORING_CQE_F_MORE))
		c->recv_armed = false;
	if (res > 0) {
		unsigned bid = flags >> IORING_CQE_BUFFER_SHIFT;

		take_bytes(w, slot, w->recv_bufs + (size_t)bid * BUF_SIZE, (size_t)res);
		give_back(w, bid);
	} else if (res != -ENOBUFS) {
		c->closing = true; /* the peer closed, or the socket failed */
	}
	if (c->recv_armed)
		return;
	if (c->closing)
		finish(w, slot);
	else
		arm_recv(w, slot, true); /* kept open: one recv for the rest */
}

static void on_send(struct worker *w, unsigned slot, int res)
{
	struct conn *c = &w->conns[slot];

	c->sending = false;
	if (res < 0) {
		c->closing = true;
	} else if ((uint32_t)res < c->send_len) {
		c->send_off += (uint32_t)res;
		c->send_len -= (uint32_t)res;
		arm_send(w, slot);
		return;
	}
	if (c->closing)
		finish(w, slot);
	else if (c->len)
		answer_held(w, slot); /* pipelined requests may be waiting */
}

static void dispatch(struct worker *w, const struct io_uring_cqe *cqe)
{
	uint64_t t = io_uring_cqe_get_data64(cqe);
	unsigned slot = (unsigned)t;

	switch ((enum op)(t >> 32)) {
	case OP_ACCEPT: on_accept(w, cqe->res, cqe->flags); break;
	case OP_RECV: on_recv(w, slot, cqe->res, cqe->flags); break;
	case OP_SEND: on_send(w, slot, cqe->res); break;
	default: break; /* a shutdown or close that failed: nothing to do */
	}
}

/* --- setup --- */

/* RECV_BUFS buffers of BUF_SIZE that recvs pick from (group BUF_GROUP),
 * every page touched now. */
static void recv_bufs_init(struct worker *w)
{
	struct io_uring_buf_reg reg = { .ring_entries = RECV_BUFS, .bgid = BUF_GROUP };
	size_t ring_size = RECV_BUFS * sizeof(struct io_uring_buf);
	int rc;

	w->br = aligned_alloc(4096, ring_size);
	w->recv_bufs = aligned_alloc(4096, (size_t)RECV_BUFS * BUF_SIZE);
	if (!w->br || !w->recv_bufs)
		fail("receive buffers", ENOMEM);
	memset(w->recv_bufs, 0, (size_t)RECV_BUFS * BUF_SIZE);
	io_uring_buf_ring_init(w->br);
	reg.ring_addr = (uintptr_t)w->br;
	rc = io_uring_register_buf_ring(&w->ring, &reg, 0);
	if (rc)
		fail("io_uring_register_buf_ring", -rc);
	for (unsigned i = 0; i < RECV_BUFS; i++)
		give_back(w, i);
}

/* One issuer per ring, and completions' task work run only when the
 * worker waits: the cheapest ring setup (kernel 6.1 on).  Made by the
 * worker's own thread, the ring's only issuer. */
static void ring_init(struct worker *w)
{
	struct io_uring_params p = { .flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN |
					      IORING_SETUP_CQSIZE,
				     .cq_entries = 8 * RING_ENTRIES };
	int rc = io_uring_queue_init_params(RING_ENTRIES, &w->ring, &p);

	if (rc)
		fail("io_uring_queue_init_params", -rc);
	rc = io_uring_register_files_sparse(&w->ring, w->slots);
	if (rc)
		fail("io_uring_register_files_sparse (within RLIMIT_NOFILE)", -rc);
	w->conns = malloc(w->slots * sizeof(*w->conns));
	w->free_held = malloc(w->slots * sizeof(*w->free_held));
	if (!w->conns || !w->free_held)
		fail("connections", ENOMEM);
	memset(w->conns, 0, w->slots * sizeof(*w->conns)); /* every page touched now */
	recv_bufs_init(w);
}

static void *worker_loop(void *arg)
{
	struct worker *w = arg;

	ring_init(w);
	arm_accept(w);
	for (;;) {
		struct io_uring_cqe *cqe;
		unsigned head, seen = 0;
		int rc = io_uring_submit_and_wait(&w->ring, 1);

		if (rc < 0 && rc != -EINTR)
			fail("io_uring_submit_and_wait", -rc);
		io_uring_for_each_cqe(&w->ring, head, cqe) {
			dispatch(w, cqe);
			seen++;
		}
		io_uring_cq_advance(&w->ring, seen);
	}
	return NULL;
}

static int listener(void)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)opt.port),
				  .sin_addr = opt.address };
	int one = 1, fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) ||
	    bind(fd, (struct sockaddr *)&sa, sizeof(sa)) || listen(fd, BACKLOG))
		fail("listening socket", errno);
	return fd;
}

static unsigned parse_count(const char *name, const char *arg, unsigned max)
{
	char *end;
	unsigned long v = strtoul(arg, &end, 10);

	if (!*arg || *end || v < 1 || v > max) {
		fprintf(stderr, "null_responder: %s: '%s' is not a number from 1 to %u\n", name, arg, max);
		exit(2);
	}
	return (unsigned)v;
}

static void parse_args(int argc, char **argv)
{
	static const struct option opts[] = { { "workers", 1, NULL, 'w' }, { "address", 1, NULL, 'a' },
					      { "port", 1, NULL, 'p' },    { "slots", 1, NULL, 's' },
					      { NULL, 0, NULL, 0 } };
	int c;

	inet_pton(AF_INET, "169.254.169.254", &opt.address);
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'w': opt.workers = parse_count("--workers", optarg, 64); break;
		case 'p': opt.port = parse_count("--port", optarg, 65535); break;
		case 's': opt.slots = parse_count("--slots", optarg, 1u << 20); break;
		case 'a':
			if (inet_pton(AF_INET, optarg, &opt.address) == 1)
				break;
			fprintf(stderr, "null_responder: --address: '%s' is not an IPv4 address\n", optarg);
			exit(2);
		default:
			fprintf(stderr, "usage: null_responder [--workers W] [--address A] [--port P] [--slots S]\n");
			exit(2);
		}
	}
	if (optind < argc) {
		fprintf(stderr, "null_responder: unexpected argument '%s'\n", argv[optind]);
		exit(2);
	}
}

/* The slots a worker's table may have: RLIMIT_NOFILE bounds a sparse
 * table; the soft limit is raised to the hard one first. */
static unsigned slots_allowed(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl))
		return opt.slots;
	rl.rlim_cur = rl.rlim_max;
	setrlimit(RLIMIT_NOFILE, &rl);
	return rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < opt.slots ? (unsigned)rl.rlim_cur : opt.slots;
}

int main(int argc, char **argv)
{
	struct worker *ws;
	sigset_t stop;
	unsigned slots;
	int sig;

	parse_args(argc, argv);
	for (unsigned i = 0; i < PIPE_MAX; i++)
		memcpy(answers + i * KEEP_LEN, ANSWER_KEEP, KEEP_LEN);
	memcpy(answers + PIPE_MAX * KEEP_LEN, ANSWER_CLOSE, CLOSE_LEN);
	slots = slots_allowed();
	ws = calloc(opt.workers, sizeof(*ws));
	if (!ws)
		fail("workers", ENOMEM);
	/* The workers inherit the mask: only this thread takes the signal. */
	sigemptyset(&stop);
	sigaddset(&stop, SIGTERM);
	sigaddset(&stop, SIGINT);
	pthread_sigmask(SIG_BLOCK, &stop, NULL);
	for (unsigned i = 0; i < opt.workers; i++) {
		ws[i].slots = slots;
		ws[i].listen_fd = listener();
	}
	for (unsigned i = 0; i < opt.workers; i++) {
		int rc = pthread_create(&ws[i].tid, NULL, worker_loop, &ws[i]);

		if (rc)
			fail("pthread_create", rc);
	}
	/* The listeners exist: connections wait in their backlogs from now. */
	fprintf(stderr, "null_responder: ready, %u workers on %s:%u\n", opt.workers, inet_ntoa(opt.address), opt.port);
	sigwait(&stop, &sig);
	return 0;
}

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
 * table to grow and no fget/fput per operation), then recv, send and
 * close on that slot; every batch of operations one io_uring_enter.
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

#define BUF_SIZE 4096 /* a request's headers (imds-storm's are about 250 bytes) */
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

struct conn {
	char *buf; /* BUF_SIZE bytes from the worker's pool while open */
	uint32_t len; /* request bytes held in buf */
	uint32_t send_off, send_len; /* the part of answers[] being sent */
	bool closing; /* close once the send completes */
};

/* io_uring hands out direct descriptor slots round the table, not lowest
 * first, so state kept by slot would touch a new page for every connection
 * until the table had gone round once (page faults were 9 % of a storm's
 * CPU).  The slot's state is small and touched up front; the buffers come
 * from a stack, the last freed first, so the ones in use stay few and hot. */
struct worker {
	struct io_uring ring;
	int listen_fd;
	unsigned slots;
	struct conn *conns; /* by direct descriptor slot */
	char **free_bufs; /* a stack of at most `slots` buffers */
	unsigned nfree;
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

static void arm_accept(struct worker *w)
{
	struct io_uring_sqe *sqe = get_sqe(w);

	io_uring_prep_multishot_accept_direct(sqe, w->listen_fd, NULL, NULL, 0);
	io_uring_sqe_set_data64(sqe, tag(OP_ACCEPT, 0));
}

static void arm_recv(struct worker *w, unsigned slot)
{
	struct conn *c = &w->conns[slot];
	struct io_uring_sqe *sqe = get_sqe(w);

	io_uring_prep_recv(sqe, (int)slot, c->buf + c->len, BUF_SIZE - c->len, 0);
	sqe->flags |= IOSQE_FIXED_FILE;
	io_uring_sqe_set_data64(sqe, tag(OP_RECV, slot));
}

static void arm_send(struct worker *w, unsigned slot)
{
	struct conn *c = &w->conns[slot];
	struct io_uring_sqe *sqe = get_sqe(w);

	io_uring_prep_send(sqe, (int)slot, answers + c->send_off, c->send_len, MSG_NOSIGNAL);
	sqe->flags |= IOSQE_FIXED_FILE;
	io_uring_sqe_set_data64(sqe, tag(OP_SEND, slot));
}

static char *buf_get(struct worker *w)
{
	char *b = w->nfree ? w->free_bufs[--w->nfree] : malloc(BUF_SIZE);

	if (!b)
		fail("buffers", ENOMEM);
	return b;
}

/* Frees the slot; its completion is of no interest, so none is posted. */
static void arm_close(struct worker *w, unsigned slot)
{
	struct io_uring_sqe *sqe = get_sqe(w);
	struct conn *c = &w->conns[slot];

	w->free_bufs[w->nfree++] = c->buf; /* at most one per slot */
	c->buf = NULL;

	io_uring_prep_close_direct(sqe, slot);
	sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
	io_uring_sqe_set_data64(sqe, 0);
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
		return len == BUF_SIZE ? -1 : 0;
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

/* Answers the complete requests held in c (at most PIPE_MAX): the send to
 * make, and the bytes of a next request moved to the start.  false when
 * no request is complete yet. */
static bool take_requests(struct conn *c)
{
	unsigned n = 0;
	size_t used = 0;
	bool close = false;

	while (n < PIPE_MAX && !close) {
		long r = frame_request(c->buf + used, c->len - used, &close);

		if (r == 0)
			break;
		n++;
		if (r < 0) {
			close = true;
			used = c->len;
			break;
		}
		used += (size_t)r;
	}
	if (!n)
		return false;
	memmove(c->buf, c->buf + used, c->len - used);
	c->len -= (uint32_t)used;
	c->closing = close;
	if (close) {
		c->send_len = (uint32_t)((n - 1) * KEEP_LEN + CLOSE_LEN);
		c->send_off = (uint32_t)sizeof(answers) - c->send_len;
	} else {
		c->send_off = 0;
		c->send_len = (uint32_t)(n * KEEP_LEN);
	}
	return true;
}

/* --- the loop --- */

static void serve(struct worker *w, unsigned slot)
{
	if (take_requests(&w->conns[slot]))
		arm_send(w, slot);
	else
		arm_recv(w, slot);
}

static void on_accept(struct worker *w, int res, unsigned flags)
{
	if (res >= 0 && (unsigned)res < w->slots) {
		w->conns[res].buf = buf_get(w);
		w->conns[res].len = 0;
		arm_recv(w, (unsigned)res);
	}
	/* The multishot accept ends on an error (a full table: -ENFILE) */
	if (!(flags & IORING_CQE_F_MORE))
		arm_accept(w);
}

static void on_recv(struct worker *w, unsigned slot, int res)
{
	struct conn *c = &w->conns[slot];

	if (res <= 0) {
		arm_close(w, slot);
		return;
	}
	c->len += (uint32_t)res;
	if (take_requests(c))
		arm_send(w, slot);
	else if (c->len == BUF_SIZE)
		arm_close(w, slot);
	else
		arm_recv(w, slot);
}

static void on_send(struct worker *w, unsigned slot, int res)
{
	struct conn *c = &w->conns[slot];

	if (res < 0) {
		arm_close(w, slot);
	} else if ((uint32_t)res < c->send_len) {
		c->send_off += (uint32_t)res;
		c->send_len -= (uint32_t)res;
		arm_send(w, slot);
	} else if (c->closing) {
		arm_close(w, slot);
	} else {
		serve(w, slot); /* pipelined requests may be waiting */
	}
}

static void dispatch(struct worker *w, const struct io_uring_cqe *cqe)
{
	uint64_t t = io_uring_cqe_get_data64(cqe);
	unsigned slot = (unsigned)t;

	switch ((enum op)(t >> 32)) {
	case OP_ACCEPT: on_accept(w, cqe->res, cqe->flags); break;
	case OP_RECV: on_recv(w, slot, cqe->res); break;
	case OP_SEND: on_send(w, slot, cqe->res); break;
	default: break; /* a close that failed: the slot is gone either way */
	}
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
	w->free_bufs = malloc(w->slots * sizeof(*w->free_bufs));
	if (!w->conns || !w->free_bufs)
		fail("connections", ENOMEM);
	memset(w->conns, 0, w->slots * sizeof(*w->conns)); /* every page touched now */
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

/* --- setup --- */

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

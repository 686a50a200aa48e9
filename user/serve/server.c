/* server.c: the io_uring HTTP server of imdsd (server.h): each worker's
 * listener, ring and provided buffers, and starting and stopping the worker
 * threads.  What a worker does is in loop.c, conn.c, request.c and hop.c
 * (server_int.h says which owns what).
 */
#include "serve/server.h"

#include <errno.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "serve/server_int.h"

#define SRV_SQ_ENTRIES 1024
#define SRV_CQ_ENTRIES 8192
#define SRV_BACKLOG 4096
#define SRV_FD_TABLE_MIN 65536 /* descriptors the table is sized for at start (within RLIMIT_NOFILE) */
/* Descriptors kept out of the total cap beyond those open at start: the
 * eviction's overshoot (conn.c's SRV_EVICT_SLACK), and the short-lived ones
 * of the control thread (netlink requests, the store's lock, program fds
 * while attaching a port) and of the hop-limit and ACK checks. */
#define SRV_FD_SPARE 112
#define SRV_CONNS_TOTAL_MIN 16
#define SRV_NOFILE_UNLIMITED (1u << 20) /* the kernel's default fs.nr_open */


/* One worker's listener on sa (IPv4 or IPv6). */
static int srv_listen(const struct sockaddr *sa, socklen_t salen)
{
	int one = 1, fd, err;

	fd = socket(sa->sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	/* The IPv6 listener takes IPv6 only: IPv4 has its own. */
	if (sa->sa_family == AF_INET6 && setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) < 0) {
		err = -errno;
		close(fd);
		return err;
	}
	/* REUSEPORT: one listener per worker, the kernel spreads connections.
	 * FREEBIND: the address may be added to the bridge after we bind.
	 * NODELAY is inherited by accepted sockets: every response is one
	 * send, Nagle would only delay pipelined replies. */
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0 ||
	    setsockopt(fd, IPPROTO_IP, IP_FREEBIND, &one, sizeof(one)) < 0 ||
	    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0 ||
	    bind(fd, sa, salen) < 0 || listen(fd, SRV_BACKLOG) < 0) {
		err = -errno;
		close(fd);
		return err;
	}
	return fd;
}

/* The worker's IPv4 listener and, with cfg->ipv6, its IPv6 one. */
static int srv_listen_all(struct srv_worker *w, const struct server_config *cfg)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = cfg->addr_be, .sin_port = htons(cfg->port) };
	struct sockaddr_in6 sa6 = { .sin6_family = AF_INET6, .sin6_addr = { .s6_addr = IMDS_IPV6_ADDR_BYTES },
				    .sin6_port = htons(cfg->port) };
	int rc = srv_listen((struct sockaddr *)&sa, sizeof(sa));

	if (rc < 0)
		return rc;
	w->listen_fd = rc;
	if (!cfg->ipv6)
		return 0;
	rc = srv_listen((struct sockaddr *)&sa6, sizeof(sa6));
	if (rc == -EAFNOSUPPORT || rc == -EADDRNOTAVAIL) {
		/* IPv6 is off in this host (ipv6.disable=1): IPv4 only. */
		if (w->index == 0)
			log_warn("no IPv6 in this host (%s): serving 169.254.169.254 only", strerror(-rc));
		return 0;
	}
	if (rc < 0)
		return rc;
	w->listen_fd6 = rc;
	return 0;
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
	w->listen_fd = w->listen_fd6 = -1;
	w->conns.next = w->conns.prev = &w->conns;
	w->acking.next = w->acking.prev = &w->acking;
	srv_peer_init(w);
	rc = fair_init(&w->fair, srv->cfg.store->max_slots);
	if (rc < 0)
		return rc;
	w->stats.vms = calloc(srv->cfg.store->max_slots, sizeof(*w->stats.vms));
	if (!w->stats.vms)
		return -ENOMEM;
	w->wake_fd = eventfd(0, EFD_CLOEXEC);
	if (w->wake_fd < 0)
		return -errno;
	rc = srv_listen_all(w, &srv->cfg);
	if (rc < 0)
		return rc;
	rc = srv_ring_init(w);
	if (rc < 0)
		return rc;
	return srv_bufs_init(w);
}

static void srv_worker_destroy(struct srv_worker *w)
{
	fair_destroy(&w->fair);
	free(w->stats.vms);
	if (w->ring_ready)
		io_uring_queue_exit(&w->ring); /* also unregisters the buffer ring */
	if (w->br)
		munmap(w->br, SRV_BUF_COUNT * sizeof(struct io_uring_buf));
	free(w->bufs);
	if (w->listen_fd >= 0)
		close(w->listen_fd);
	if (w->listen_fd6 >= 0)
		close(w->listen_fd6);
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
			log_error("worker %d: wake: %s", i, strerror(errno));
	}
	for (int i = 0; i < srv->nworkers; i++) {
		struct srv_worker *w = &srv->workers[i];

		if (w->thread_started)
			pthread_join(w->thread, NULL);
		srv_worker_destroy(w);
	}
	free(srv->workers);
	limits_free(srv->limits);
	pthread_mutex_destroy(&srv->hop_gate.lock);
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

int srv_fds_open(void)
{
	DIR *dir = opendir("/proc/self/fd");
	struct dirent *e;
	int n = 0;

	if (!dir)
		return -errno;
	while ((e = readdir(dir)))
		n += e->d_name[0] != '.';
	closedir(dir);
	return n - 1; /* the directory's own */
}

/* The total cap: what RLIMIT_NOFILE leaves once the descriptors open at
 * start (maps, programs, rings, listeners, netlink) and SRV_FD_SPARE are
 * kept aside; a configured cap is held to that too, since beyond it accept
 * fails with EMFILE and every VM waits alike (docs/limits.md). */
static unsigned srv_conns_total(unsigned wanted)
{
	struct rlimit rl;
	uint64_t limit = SRV_NOFILE_UNLIMITED, room;
	int open = srv_fds_open();

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
		limit = rl.rlim_cur;
	if (open < 0)
		open = 64;
	room = limit > (uint64_t)open + SRV_FD_SPARE ? limit - (uint64_t)open - SRV_FD_SPARE : 0;
	if (room < SRV_CONNS_TOTAL_MIN)
		room = SRV_CONNS_TOTAL_MIN;
	if (room > UINT32_MAX / 2)
		room = UINT32_MAX / 2;
	return wanted && wanted < room ? wanted : (unsigned)room;
}

unsigned server_max_conns_total(const struct server *srv)
{
	return srv->max_conns_total;
}

void server_counters(const struct server *srv, struct server_counters *out)
{
	srv_sum_counters(srv, out);
}

/* How the workers learn an accepted socket's peer: on the ring where the
 * kernel can (peer.c), else by getpeername().  IMDS_TEST_PEERNAME=syscall
 * takes the fallback on any kernel, for the tests of it. */
static bool srv_peer_choose(struct srv_worker *w)
{
	const char *force = getenv("IMDS_TEST_PEERNAME");
	bool ring = !(force && strcmp(force, "syscall") == 0) && srv_peer_probe(w);

	log_info("peer addresses: %s", ring ? "read on the ring (io_uring getsockopt)" : "getpeername()");
	return ring;
}

int server_start(struct server **out, const struct server_config *cfg)
{
	struct server *srv;
	int rc = 0;

	*out = NULL;
	if (cfg->workers < 1 || cfg->idle_timeout_ms < 1 || cfg->header_timeout_ms < 1)
		return -EINVAL;
	srv = calloc(1, sizeof(*srv));
	if (!srv)
		return -ENOMEM;
	srv->cfg = *cfg;
	srv_hop_gate_init(srv);
	srv->limits = limits_new(cfg->store->max_slots);
	srv->workers = calloc((size_t)cfg->workers, sizeof(*srv->workers));
	if (!srv->limits || !srv->workers) {
		limits_free(srv->limits);
		free(srv->workers);
		pthread_mutex_destroy(&srv->hop_gate.lock);
		free(srv);
		return -ENOMEM;
	}
	for (int i = 0; i < cfg->workers && rc == 0; i++) {
		srv->nworkers = i + 1;
		rc = srv_worker_init(srv, &srv->workers[i], i);
	}
	if (rc == 0) {
		srv->max_conns_total = srv_conns_total(cfg->max_conns_total);
		srv_presize_fd_table(srv->workers[0].listen_fd);
		srv->peer_on_ring = srv_peer_choose(&srv->workers[0]);
	}
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

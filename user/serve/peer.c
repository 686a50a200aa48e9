/* peer.c: the VM-side endpoint of an accepted socket (server_int.h), read
 * on the worker's ring rather than by a getpeername() of its own.
 *
 * Linux 6.7 added socket commands to io_uring: IORING_OP_URING_CMD with
 * SOCKET_URING_OP_GETSOCKOPT runs getsockopt() inline in the ring's
 * io_uring_enter, so SO_PEERNAME costs no syscall entry and exit (about
 * 1.1 us of CPU each on the project's machine: docs/performance.md, "Where
 * a connection's time goes").  The accept's completion asks for the
 * address; its completion opens the connection (conn.c), so nothing of
 * the socket is read, and nothing answered, before the data plane's
 * verified SYN names its VM.  A kernel that refuses the command (the
 * server's probe at start) has every address read by getpeername().
 *
 * A pending read holds one of the worker's SRV_PEER_SLOTS buffers; with
 * none free it falls back to getpeername() too.
 */
#include "serve/server_int.h"

#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* Debian 12's liburing 2.3 and Linux 6.1 headers predate socket commands;
 * the values are the kernel's UAPI (include/uapi/linux/io_uring.h, enum
 * io_uring_socket_op, Linux 6.7). */
#ifndef SOCKET_URING_OP_GETSOCKOPT
#define SOCKET_URING_OP_GETSOCKOPT 2
#endif

/* Fills `sqe` as io_uring_prep_cmd_sock(GETSOCKOPT) of liburing 2.5 would.
 * The kernel reads level and optname from the two 32-bit halves of the
 * `addr` union, optlen from the `file_index` union and optval from
 * `addr3`; 2.3's struct names none of them, so they are written at those
 * places by hand. */
static void srv_prep_getsockopt(struct io_uring_sqe *sqe, int fd, uint32_t level, uint32_t optname, void *optval,
				uint32_t optlen)
{
	uint32_t level_name[2] = { level, optname };

	io_uring_prep_rw(IORING_OP_URING_CMD, sqe, fd, NULL, 0, 0);
	sqe->cmd_op = SOCKET_URING_OP_GETSOCKOPT;
	memcpy(&sqe->addr, level_name, sizeof(level_name));
	sqe->file_index = optlen;
	sqe->addr3 = (uint64_t)(uintptr_t)optval;
}

/* The endpoint as conn_table_v2 keys it (struct imds_conn_key: IPv4 mapped
 * into 16 bytes).  0, or -1 for another family. */
static int srv_peer_key_of(const union srv_peer_addr *a, struct imds_conn_key *key)
{
	memset(key, 0, sizeof(*key));
	if (a->sa.sa_family == AF_INET) {
		const struct sockaddr_in *in = &a->in;

		key->saddr[10] = key->saddr[11] = 0xff;
		memcpy(&key->saddr[12], &in->sin_addr, 4);
		key->sport = in->sin_port;
		return 0;
	}
	if (a->sa.sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = &a->in6;

		memcpy(key->saddr, &in6->sin6_addr, 16);
		key->sport = in6->sin6_port;
		return 0;
	}
	return -1;
}

/* The fallback: one getpeername() for the socket. */
static void srv_peer_by_syscall(struct srv_worker *w, int fd)
{
	union srv_peer_addr a;
	socklen_t len = sizeof(a);
	struct imds_conn_key key;
	bool known = getpeername(fd, &a.sa, &len) == 0 && srv_peer_key_of(&a, &key) == 0;

	srv_conn_open(w, fd, known ? &key : NULL);
}

/* Whether the kernel runs SO_PEERNAME as a ring command: asks for SO_TYPE
 * of the worker's listener and waits for the answer.  Before Linux 6.7 a
 * socket has no ring commands (-EOPNOTSUPP); before 5.19 the opcode is
 * unknown (-EINVAL). */
bool srv_peer_probe(struct srv_worker *w)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&w->ring);
	struct io_uring_cqe *cqe;
	int type = 0;
	int rc;

	if (!sqe)
		return false;
	srv_prep_getsockopt(sqe, w->listen_fd, SOL_SOCKET, SO_TYPE, &type, sizeof(type));
	srv_set_data(sqe, NULL, OP_FD_DONE);
	rc = io_uring_submit_and_wait(&w->ring, 1);
	if (rc < 0 || io_uring_peek_cqe(&w->ring, &cqe) < 0)
		return false;
	rc = cqe->res;
	io_uring_cqe_seen(&w->ring, cqe);
	return rc == (int)sizeof(type) && type == SOCK_STREAM;
}

static struct srv_peer_req *srv_peer_slot_take(struct srv_worker *w)
{
	struct srv_peer_req *p = w->peer_free;

	if (p)
		w->peer_free = p->next_free;
	return p;
}

static void srv_peer_slot_put(struct srv_worker *w, struct srv_peer_req *p)
{
	p->fd = -1;
	p->next_free = w->peer_free;
	w->peer_free = p;
}

void srv_peer_init(struct srv_worker *w)
{
	w->peer_free = NULL;
	for (int i = SRV_PEER_SLOTS - 1; i >= 0; i--)
		srv_peer_slot_put(w, &w->peer_reqs[i]);
}

/* An accepted socket: its peer's address is asked for on the ring, from
 * the listener of family `family`.  SO_PEERNAME fails with -EINVAL when
 * asked for more than the address holds (sk_getsockopt), so the length is
 * the listener family's sockaddr size: an IPv6 listener's peers (mapped
 * IPv4 included) are sockaddr_in6, an IPv4 listener's sockaddr_in. */
void srv_peer_request(struct srv_worker *w, int fd, int family)
{
	struct srv_peer_req *p = w->srv->peer_on_ring ? srv_peer_slot_take(w) : NULL;
	struct io_uring_sqe *sqe = p ? srv_sqe(w) : NULL;

	if (!sqe) {
		if (p)
			srv_peer_slot_put(w, p);
		srv_peer_by_syscall(w, fd);
		return;
	}
	p->fd = fd;
	memset(&p->addr, 0, sizeof(p->addr));
	srv_prep_getsockopt(sqe, fd, SOL_SOCKET, SO_PEERNAME, &p->addr,
			    family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in));
	srv_set_data(sqe, p, OP_PEERNAME);
}

/* The address came back (res: its length) or the read failed (-errno,
 * e.g. -ENOTCONN when the client reset it first: then it is closed as
 * one with no verified SYN). */
void srv_handle_peer(struct srv_worker *w, struct srv_peer_req *p, int res)
{
	int fd = p->fd;
	struct imds_conn_key key;
	bool known = res > 0 && srv_peer_key_of(&p->addr, &key) == 0;

	srv_peer_slot_put(w, p);
	if (w->stopping) {
		close(fd); /* accepted while the stop's cancel was on its way */
		return;
	}
	srv_conn_open(w, fd, known ? &key : NULL);
}

/* After a stop: the sockets whose address never came back. */
void srv_peer_free_all(struct srv_worker *w)
{
	for (int i = 0; i < SRV_PEER_SLOTS; i++) {
		if (w->peer_reqs[i].fd >= 0)
			close(w->peer_reqs[i].fd);
		w->peer_reqs[i].fd = -1;
	}
}

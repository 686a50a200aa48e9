/* admin.c: imdsd's admin thread (admin.h).  One thread, apart from the
 * workers: it answers the metrics endpoint one connection at a time, each
 * bounded by a timeout, and once a second looks over the VMs for the event
 * log (vmwatch.c).  A slow or stuck scraper holds up only this thread.
 *
 * The endpoint is refused anywhere but on loopback or a unix socket: a
 * VM's packets to 127.0.0.0/8 are martians the host drops, and a socket
 * file is out of any guest's reach (docs/metrics.md). */
#include "serve/admin.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "lib/log.h"
#include "lib/outbuf.h"
#include "serve/metrics.h"
#include "serve/vmwatch.h"
#include "store/store.h"

#define ADMIN_IO_TIMEOUT_SEC 2 /* a scraper's request and our answer */
#define ADMIN_REQUEST_MAX 8192
#define ADMIN_TICK_MS 1000

struct admin {
	struct admin_config cfg;
	struct admin_addr addr;
	int listen_fd, stop_fd;
	pthread_t thread;
	bool thread_started;
	struct vmwatch *watch;
};

/* ---- the address ---- */

static int admin_parse_unix(const char *path, struct admin_addr *out, char *err, size_t errlen)
{
	if (path[0] != '/' || strlen(path) >= sizeof(out->path)) {
		snprintf(err, errlen, "\"unix:%s\": the socket path must be absolute and under %zu bytes", path,
			 sizeof(out->path));
		return -1;
	}
	out->is_unix = true;
	snprintf(out->path, sizeof(out->path), "%s", path);
	return 0;
}

int admin_parse_addr(const char *text, struct admin_addr *out, char *err, size_t errlen)
{
	const char *colon = strrchr(text, ':');
	char host[INET_ADDRSTRLEN + 8];
	struct in_addr in;
	char *end;
	long port;

	memset(out, 0, sizeof(*out));
	if (strncmp(text, "unix:", 5) == 0)
		return admin_parse_unix(text + 5, out, err, errlen);
	if (!colon || (size_t)(colon - text) >= sizeof(host)) {
		snprintf(err, errlen, "\"%s\" is not 127.0.0.1:PORT or unix:/PATH", text);
		return -1;
	}
	memcpy(host, text, (size_t)(colon - text));
	host[colon - text] = '\0';
	if (inet_pton(AF_INET, host, &in) != 1) {
		snprintf(err, errlen, "\"%s\": \"%s\" is not an IPv4 address (write 127.0.0.1:PORT, or unix:/PATH)",
			 text, host);
		return -1;
	}
	if ((ntohl(in.s_addr) >> 24) != 127) {
		snprintf(err, errlen,
			 "\"%s\": %s is not a loopback address; the metrics endpoint must be on 127.0.0.0/8 or a "
			 "unix socket, where no VM can reach it",
			 text, host);
		return -1;
	}
	errno = 0;
	port = strtol(colon + 1, &end, 10);
	if (errno || end == colon + 1 || *end || port < 1 || port > 65535) {
		snprintf(err, errlen, "\"%s\": \"%s\" is not a port in 1..65535", text, colon + 1);
		return -1;
	}
	out->addr_be = in.s_addr;
	out->port = (uint16_t)port;
	return 0;
}

/* ---- the listener ---- */

/* A socket file left by an imdsd that died is removed; one another process
 * still answers on is not. */
static int admin_clear_stale(const char *path, char *err, size_t errlen)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct stat st;
	int fd, rc;

	if (lstat(path, &st) < 0)
		return errno == ENOENT ? 0 : -errno;
	if (!S_ISSOCK(st.st_mode)) {
		snprintf(err, errlen, "%s exists and is not a socket", path);
		return -EEXIST;
	}
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	rc = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
	close(fd);
	if (rc == 0) {
		snprintf(err, errlen, "%s: another process listens on it", path);
		return -EADDRINUSE;
	}
	return unlink(path) < 0 ? -errno : 0;
}

static int admin_listen_unix(const struct admin_addr *a, char *err, size_t errlen)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd, rc = admin_clear_stale(a->path, err, errlen);

	if (rc < 0)
		return rc;
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", a->path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	/* Connecting needs write permission: root and the socket's group
	 * (chmod after bind; until then the umask's mode, which has no
	 * write bit for others under the usual 022). */
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || chmod(a->path, 0660) < 0 || listen(fd, 16) < 0) {
		rc = -errno;
		close(fd);
		return rc;
	}
	return fd;
}

static int admin_listen_tcp(const struct admin_addr *a)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = a->addr_be, .sin_port = htons(a->port) };
	int one = 1, fd, rc;

	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 16) < 0) {
		rc = -errno;
		close(fd);
		return rc;
	}
	return fd;
}

/* ---- one request ---- */

static int admin_send_all(int fd, const char *data, size_t len)
{
	while (len) {
		ssize_t n = send(fd, data, len, MSG_NOSIGNAL);

		if (n <= 0)
			return -1;
		data += n;
		len -= (size_t)n;
	}
	return 0;
}

static void admin_respond(int fd, int status, const char *ctype, const struct outbuf *body, bool head)
{
	const char *reason = status == 200 ? "OK" : status == 404 ? "Not Found" : status == 405 ? "Method Not Allowed"
									: status == 503 ? "Service Unavailable"
											: "Internal Server Error";
	char hdr[256];
	int n = snprintf(hdr, sizeof(hdr),
			 "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n",
			 status, reason, ctype, body->len);

	if (admin_send_all(fd, hdr, (size_t)n) == 0 && !head)
		admin_send_all(fd, body->data, body->len);
}

/* The request's head, up to its blank line: 0, or -1 (timeout, too long,
 * closed). */
static int admin_read_head(int fd, char *buf, size_t cap)
{
	size_t len = 0;

	while (len < cap - 1) {
		ssize_t n = recv(fd, buf + len, cap - 1 - len, 0);

		if (n <= 0)
			return -1;
		len += (size_t)n;
		buf[len] = '\0';
		if (strstr(buf, "\r\n\r\n") || strstr(buf, "\n\n"))
			return 0;
	}
	return -1;
}

/* /healthz: 200 when the data plane is attached (imdsd says) and the store
 * answers (its counters map is read, its VM table mapped). */
static int admin_health(struct admin *a, struct outbuf *body)
{
	struct imds_counters c;
	char why[256] = "";
	int rc = 0;

	if (!a->cfg.store->vms || store_counters(a->cfg.store, 0, &c) < 0)
		snprintf(why, sizeof(why), "the store is not readable: %s", strerror(errno));
	else if (a->cfg.health && a->cfg.health(a->cfg.health_ctx, why, sizeof(why)) < 0)
		rc = -1;
	if (why[0])
		rc = -1;
	outbuf_printf(body, "%s\n", rc ? why : "ok");
	return rc ? 503 : 200;
}

static void admin_serve(struct admin *a, int fd)
{
	struct timeval tv = { .tv_sec = ADMIN_IO_TIMEOUT_SEC };
	char req[ADMIN_REQUEST_MAX], method[8], target[256];
	struct outbuf body = { 0 };
	const char *ctype = "text/plain; charset=utf-8";
	int status = 404;
	bool head;

	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (admin_read_head(fd, req, sizeof(req)) < 0 || sscanf(req, "%7s %255s", method, target) != 2)
		return;
	target[strcspn(target, "?")] = '\0';
	head = strcmp(method, "HEAD") == 0;
	if (strcmp(method, "GET") != 0 && !head) {
		status = 405;
	} else if (strcmp(target, "/metrics") == 0) {
		status = metrics_render(a->cfg.srv, &body) == 0 ? 200 : 500;
		ctype = "text/plain; version=0.0.4; charset=utf-8";
	} else if (strcmp(target, "/healthz") == 0) {
		status = admin_health(a, &body);
	} else {
		outbuf_puts(&body, "/metrics or /healthz\n");
	}
	admin_respond(fd, status, ctype, &body, head);
	outbuf_free(&body);
}

/* ---- the thread ---- */

static uint64_t admin_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void *admin_main(void *arg)
{
	struct admin *a = arg;
	struct pollfd fds[2] = { { .fd = a->stop_fd, .events = POLLIN }, { .fd = a->listen_fd, .events = POLLIN } };
	uint64_t next_tick = admin_now_ms();

	for (;;) {
		uint64_t now = admin_now_ms();
		int fd;

		if (now >= next_tick) {
			vmwatch_tick(a->watch, now);
			next_tick = now + ADMIN_TICK_MS;
		}
		if (poll(fds, a->listen_fd >= 0 ? 2 : 1, (int)(next_tick - now)) < 0 && errno != EINTR)
			break;
		if (fds[0].revents)
			break;
		if (a->listen_fd < 0 || !(fds[1].revents & POLLIN))
			continue;
		fd = accept4(a->listen_fd, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0)
			continue;
		admin_serve(a, fd);
		close(fd);
	}
	return NULL;
}

void admin_stop(struct admin *a)
{
	uint64_t one = 1;

	if (!a)
		return;
	if (a->thread_started && write(a->stop_fd, &one, sizeof(one)) == sizeof(one))
		pthread_join(a->thread, NULL);
	if (a->listen_fd >= 0) {
		if (a->addr.is_unix)
			unlink(a->addr.path);
		close(a->listen_fd);
	}
	if (a->stop_fd >= 0)
		close(a->stop_fd);
	vmwatch_free(a->watch);
	free(a);
}

int admin_start(struct admin **out, const struct admin_config *cfg, char *err, size_t errlen)
{
	struct admin *a = calloc(1, sizeof(*a));
	int rc = 0;

	*out = NULL;
	if (!a)
		return -ENOMEM;
	a->cfg = *cfg;
	a->listen_fd = -1;
	a->stop_fd = eventfd(0, EFD_CLOEXEC);
	a->watch = vmwatch_new(cfg->store);
	if (a->stop_fd < 0 || !a->watch)
		rc = a->stop_fd < 0 ? -errno : -ENOMEM;
	if (rc == 0 && cfg->addr) {
		a->addr = *cfg->addr;
		rc = a->addr.is_unix ? admin_listen_unix(&a->addr, err, errlen) : admin_listen_tcp(&a->addr);
		if (rc >= 0) {
			a->listen_fd = rc;
			rc = 0;
		}
	}
	if (rc == 0) {
		rc = -pthread_create(&a->thread, NULL, admin_main, a);
		a->thread_started = rc == 0;
	}
	if (rc < 0) {
		if (err[0] == '\0')
			snprintf(err, errlen, "%s", strerror(-rc));
		admin_stop(a);
		return rc;
	}
	*out = a;
	return 0;
}

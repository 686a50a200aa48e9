/* probe.c: is the metadata address free for this imdsd?  The listeners
 * use SO_REUSEPORT (one per worker), which lets any other socket of the
 * same user that also sets it bind the same address and port: a second
 * imdsd would start, and the kernel would spread the VMs' connections over
 * both.  A socket without SO_REUSEPORT cannot share a listening address,
 * so binding one first tells whether somebody listens there already. */
#include "serve/server.h"

#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* The inode of a socket listening on addr:port (or on the wildcard
 * address and port) in this network namespace, from /proc/net/tcp, or 0. */
static unsigned long probe_listener_inode(uint32_t addr_be, uint16_t port)
{
	FILE *f = fopen("/proc/net/tcp", "r");
	char line[512];
	unsigned long inode = 0;

	while (f && !inode && fgets(line, sizeof(line), f)) {
		unsigned addr, lport, state;
		unsigned long ino;

		/* "sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode";
		 * the address is the raw __be32 printed as a number, so reading it
		 * back with %X gives addr_be on any byte order. */
		if (sscanf(line, " %*d: %X:%X %*X:%*X %X %*X:%*X %*X:%*X %*X %*u %*d %lu", &addr, &lport, &state,
			   &ino) == 4 &&
		    state == 0x0A /* TCP_LISTEN */ && lport == port && (addr == addr_be || addr == 0))
			inode = ino;
	}
	if (f)
		fclose(f);
	return inode;
}

/* A process with `inode` among its descriptors, or 0. */
static int probe_socket_owner(unsigned long inode)
{
	char want[64], path[600], link[64];
	DIR *proc = opendir("/proc");
	struct dirent *e;
	int pid = 0;

	snprintf(want, sizeof(want), "socket:[%lu]", inode);
	while (proc && !pid && (e = readdir(proc))) {
		DIR *fds;
		struct dirent *fe;

		if (e->d_name[0] < '1' || e->d_name[0] > '9')
			continue;
		snprintf(path, sizeof(path), "/proc/%s/fd", e->d_name);
		fds = opendir(path);
		while (fds && !pid && (fe = readdir(fds))) {
			ssize_t n;

			snprintf(path, sizeof(path), "/proc/%s/fd/%s", e->d_name, fe->d_name);
			n = readlink(path, link, sizeof(link) - 1);
			if (n > 0 && (link[n] = '\0', strcmp(link, want) == 0))
				pid = atoi(e->d_name);
		}
		if (fds)
			closedir(fds);
	}
	if (proc)
		closedir(proc);
	return pid;
}

int server_address_free(uint32_t addr_be, uint16_t port, int *owner)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = addr_be, .sin_port = htons(port) };
	int one = 1, fd, rc = 0;

	*owner = 0;
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	/* REUSEADDR, as the listeners have it: a TIME_WAIT connection of an
	 * earlier imdsd does not count, only a listener does.  FREEBIND: the
	 * address may not be on any bridge yet. */
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    setsockopt(fd, IPPROTO_IP, IP_FREEBIND, &one, sizeof(one)) < 0 ||
	    bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		rc = -errno;
	close(fd);
	if (rc == -EADDRINUSE) {
		unsigned long inode = probe_listener_inode(addr_be, port);

		*owner = inode ? probe_socket_owner(inode) : 0;
	}
	return rc;
}

/* netlink.c: the rtnetlink requests imdsd makes (link lookup, bridge port
 * listing, the metadata address) and the link-event monitor, on raw
 * NETLINK_ROUTE sockets.  One request per socket keeps replies and events
 * apart: the monitor socket never carries replies, request sockets never
 * carry events. */
#include "ports/netlink.h"

#include <errno.h>
#include <linux/if_link.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* Dumps interrupted by link changes are taken again, this many times at
 * most (each is a few ms even with thousands of links). */
#define NL_DUMP_TRIES 10
#define NL_BUF_SIZE 32768 /* >= one page of dump messages (the kernel caps a dump batch at this) */

struct nl_req {
	struct nlmsghdr nh;
	union {
		struct ifinfomsg ifi;
		struct ifaddrmsg ifa;
	};
	char attrs[256];
};

typedef int (*nl_msg_cb)(void *ctx, const struct nlmsghdr *nh);

static int nl_socket(unsigned groups)
{
	struct sockaddr_nl sa = { .nl_family = AF_NETLINK, .nl_groups = groups };
	int fd, err;

	fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC | (groups ? SOCK_NONBLOCK : 0), NETLINK_ROUTE);
	if (fd < 0)
		return -errno;
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		err = -errno;
		close(fd);
		return err;
	}
	return fd;
}

static void nl_add_attr(struct nl_req *r, unsigned short type, const void *data, size_t len)
{
	struct rtattr *rta = (struct rtattr *)((char *)r + NLMSG_ALIGN(r->nh.nlmsg_len));

	rta->rta_type = type;
	rta->rta_len = RTA_LENGTH(len);
	memcpy(RTA_DATA(rta), data, len);
	r->nh.nlmsg_len = NLMSG_ALIGN(r->nh.nlmsg_len) + RTA_ALIGN(rta->rta_len);
}

/* Handles one datagram of replies.  Returns 1 when the request is complete
 * (NLMSG_DONE or the ack), 0 to read more, or -errno (from the ack or cb).
 * *intr is set when the kernel marks the dump inconsistent. */
static int nl_handle_replies(const char *buf, size_t len, nl_msg_cb cb, void *ctx, bool *intr)
{
	for (const struct nlmsghdr *nh = (const void *)buf; NLMSG_OK(nh, len); nh = NLMSG_NEXT(nh, len)) {
		if (nh->nlmsg_flags & NLM_F_DUMP_INTR)
			*intr = true;
		if (nh->nlmsg_type == NLMSG_DONE)
			return 1;
		if (nh->nlmsg_type == NLMSG_ERROR) {
			const struct nlmsgerr *e = NLMSG_DATA(nh);

			return e->error ? e->error : 1;
		}
		if (cb) {
			int rc = cb(ctx, nh);

			if (rc < 0)
				return rc;
		}
	}
	return 0;
}

/* Sends `req` and feeds every reply message to cb until the dump ends or the
 * kernel acks.  0, -EAGAIN when links changed during a dump (the kernel
 * sets NLM_F_DUMP_INTR: the dump may have missed some; dump again), or
 * -errno. */
static int nl_transact(struct nl_req *req, nl_msg_cb cb, void *ctx)
{
	int fd, rc = 0;
	bool intr = false;
	char *buf;

	buf = malloc(NL_BUF_SIZE);
	if (!buf)
		return -ENOMEM;
	fd = nl_socket(0);
	if (fd < 0) {
		rc = fd;
		goto out;
	}
	req->nh.nlmsg_flags |= NLM_F_REQUEST | NLM_F_ACK;
	req->nh.nlmsg_seq = 1;
	if (send(fd, req, req->nh.nlmsg_len, 0) < 0) {
		rc = -errno;
		goto out_close;
	}
	while (rc == 0) {
		ssize_t n = recv(fd, buf, NL_BUF_SIZE, 0);

		if (n < 0) {
			int e = errno;

			rc = e == EINTR ? 0 : -e;
			continue;
		}
		rc = nl_handle_replies(buf, (size_t)n, cb, ctx, &intr);
	}
	if (rc > 0)
		rc = intr ? -EAGAIN : 0;
out_close:
	close(fd);
out:
	free(buf);
	return rc;
}

/* IFLA_XDP: with one program attached the kernel names its mode and gives
 * IFLA_XDP_PROG_ID; with several (XDP_ATTACHED_MULTI) one id per mode. */
static void nl_parse_xdp(const struct rtattr *nest, struct nl_xdp *xdp)
{
	int len = (int)RTA_PAYLOAD(nest);
	__u32 single = 0;
	__u8 mode = XDP_ATTACHED_NONE;

	for (const struct rtattr *a = RTA_DATA(nest); RTA_OK(a, len); a = RTA_NEXT(a, len)) {
		__u32 v = RTA_PAYLOAD(a) >= sizeof(__u32) ? *(const __u32 *)RTA_DATA(a) : 0;

		switch (a->rta_type) {
		case IFLA_XDP_ATTACHED:
			mode = RTA_PAYLOAD(a) >= 1 ? *(const __u8 *)RTA_DATA(a) : XDP_ATTACHED_NONE;
			break;
		case IFLA_XDP_PROG_ID:
			single = v;
			break;
		case IFLA_XDP_DRV_PROG_ID:
			xdp->drv_id = v;
			break;
		case IFLA_XDP_SKB_PROG_ID:
			xdp->skb_id = v;
			break;
		case IFLA_XDP_HW_PROG_ID:
			xdp->hw_id = v;
			break;
		}
	}
	if (mode == XDP_ATTACHED_DRV)
		xdp->drv_id = single;
	else if (mode == XDP_ATTACHED_SKB)
		xdp->skb_id = single;
	else if (mode == XDP_ATTACHED_HW)
		xdp->hw_id = single;
}

static void nl_parse_link(const struct nlmsghdr *nh, struct nl_link *link)
{
	const struct ifinfomsg *ifi = NLMSG_DATA(nh);
	int len = (int)nh->nlmsg_len - (int)NLMSG_LENGTH(sizeof(*ifi));

	memset(link, 0, sizeof(*link));
	link->ifindex = ifi->ifi_index;
	for (const struct rtattr *a = IFLA_RTA(ifi); RTA_OK(a, len); a = RTA_NEXT(a, len)) {
		if (a->rta_type == IFLA_MASTER && RTA_PAYLOAD(a) >= sizeof(__u32)) {
			link->master = (int)*(const __u32 *)RTA_DATA(a);
		} else if (a->rta_type == IFLA_IFNAME) {
			snprintf(link->name, sizeof(link->name), "%.*s", (int)strnlen(RTA_DATA(a), RTA_PAYLOAD(a)),
				 (const char *)RTA_DATA(a));
		} else if (a->rta_type == IFLA_XDP) {
			nl_parse_xdp(a, &link->xdp);
		} else if (a->rta_type == IFLA_LINKINFO) {
			int ilen = (int)RTA_PAYLOAD(a);

			for (const struct rtattr *i = RTA_DATA(a); RTA_OK(i, ilen); i = RTA_NEXT(i, ilen))
				if (i->rta_type == IFLA_INFO_KIND)
					snprintf(link->kind, sizeof(link->kind), "%.*s", (int)RTA_PAYLOAD(i),
						 (const char *)RTA_DATA(i));
		}
	}
}

static int nl_store_link(void *ctx, const struct nlmsghdr *nh)
{
	if (nh->nlmsg_type == RTM_NEWLINK)
		nl_parse_link(nh, ctx);
	return 0;
}

int nl_link_get(int ifindex, struct nl_link *link)
{
	struct nl_req req = { 0 };
	int rc;

	req.nh.nlmsg_len = NLMSG_LENGTH(sizeof(req.ifi));
	req.nh.nlmsg_type = RTM_GETLINK;
	req.ifi.ifi_family = AF_UNSPEC;
	req.ifi.ifi_index = ifindex;
	memset(link, 0, sizeof(*link));
	rc = nl_transact(&req, nl_store_link, link);
	if (rc == -ENODEV || (rc == 0 && link->ifindex == 0))
		return -ENODEV;
	return rc;
}

int nl_xdp_query(int ifindex, struct nl_xdp *xdp)
{
	struct nl_link link;
	int rc = nl_link_get(ifindex, &link);

	*xdp = rc < 0 ? (struct nl_xdp){ 0 } : link.xdp;
	if (rc == 0)
		snprintf(xdp->kind, sizeof(xdp->kind), "%s", link.kind);
	return rc;
}

struct nl_port_list {
	int bridge;
	int *ports;
	size_t max;
	size_t n;
};

static int nl_collect_port(void *ctx, const struct nlmsghdr *nh)
{
	struct nl_port_list *pl = ctx;
	struct nl_link link;

	if (nh->nlmsg_type != RTM_NEWLINK)
		return 0;
	nl_parse_link(nh, &link);
	if (link.master != pl->bridge || link.ifindex == pl->bridge)
		return 0;
	if (pl->n >= pl->max)
		return -ENOSPC;
	pl->ports[pl->n++] = link.ifindex;
	return 0;
}

int nl_bridge_ports(int bridge_ifindex, int *ports, size_t max, size_t *n)
{
	struct nl_port_list pl = { .bridge = bridge_ifindex, .ports = ports, .max = max };
	struct nl_req req = { 0 };
	__u32 master = (__u32)bridge_ifindex;
	int rc;

	req.nh.nlmsg_len = NLMSG_LENGTH(sizeof(req.ifi));
	req.nh.nlmsg_type = RTM_GETLINK;
	req.nh.nlmsg_flags = NLM_F_DUMP;
	req.ifi.ifi_family = AF_UNSPEC;
	/* The kernel filters a link dump by IFLA_MASTER; older kernels ignore
	 * the attribute, so nl_collect_port filters again. */
	nl_add_attr(&req, IFLA_MASTER, &master, sizeof(master));
	for (int tries = 0; tries < NL_DUMP_TRIES; tries++) {
		pl.n = 0;
		rc = nl_transact(&req, nl_collect_port, &pl);
		if (rc != -EAGAIN)
			break;
	}
	*n = pl.n;
	return rc;
}

struct nl_dump_ctx {
	int (*cb)(void *ctx, const struct nl_link *link);
	void *ctx;
};

static int nl_dump_one(void *ctx, const struct nlmsghdr *nh)
{
	struct nl_dump_ctx *d = ctx;
	struct nl_link link;

	if (nh->nlmsg_type != RTM_NEWLINK || nh->nlmsg_len < NLMSG_LENGTH(sizeof(struct ifinfomsg)))
		return 0;
	nl_parse_link(nh, &link);
	return d->cb(d->ctx, &link);
}

int nl_link_dump(int (*cb)(void *ctx, const struct nl_link *link), void *ctx)
{
	struct nl_dump_ctx d = { cb, ctx };
	struct nl_req req = { 0 };

	req.nh.nlmsg_len = NLMSG_LENGTH(sizeof(req.ifi));
	req.nh.nlmsg_type = RTM_GETLINK;
	req.nh.nlmsg_flags = NLM_F_DUMP;
	req.ifi.ifi_family = AF_UNSPEC;
	return nl_transact(&req, nl_dump_one, &d);
}

/* IPv6 addresses get IFA_F_NODAD, so they are usable at once (no DAD
 * wait: the host owns them on this bridge; docs/ipv6.md). */
static int nl_addr_request(int type, int flags, int ifindex, int family, const void *addr, int prefixlen)
{
	size_t len = family == AF_INET6 ? 16 : 4;
	uint32_t ifa_flags = family == AF_INET6 ? IFA_F_NODAD : 0;
	struct nl_req req = { 0 };

	req.nh.nlmsg_len = NLMSG_LENGTH(sizeof(req.ifa));
	req.nh.nlmsg_type = (unsigned short)type;
	req.nh.nlmsg_flags = (unsigned short)flags;
	req.ifa.ifa_family = (unsigned char)family;
	req.ifa.ifa_prefixlen = (unsigned char)prefixlen;
	req.ifa.ifa_flags = (unsigned char)ifa_flags;
	req.ifa.ifa_scope = RT_SCOPE_UNIVERSE;
	req.ifa.ifa_index = (unsigned)ifindex;
	nl_add_attr(&req, IFA_LOCAL, addr, len);
	nl_add_attr(&req, IFA_ADDRESS, addr, len);
	if (ifa_flags)
		nl_add_attr(&req, IFA_FLAGS, &ifa_flags, sizeof(ifa_flags));
	return nl_transact(&req, NULL, NULL);
}

/* NLM_F_EXCL makes an existing address -EEXIST, so the caller knows
 * whether it owns the address and may delete it on exit. */
int nl_addr_add(int ifindex, uint32_t addr_be, int prefixlen)
{
	return nl_addr_request(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, ifindex, AF_INET, &addr_be, prefixlen);
}

int nl_addr_del(int ifindex, uint32_t addr_be, int prefixlen)
{
	return nl_addr_request(RTM_DELADDR, 0, ifindex, AF_INET, &addr_be, prefixlen);
}

int nl_addr6_add(int ifindex, const uint8_t addr[16], int prefixlen)
{
	return nl_addr_request(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, ifindex, AF_INET6, addr, prefixlen);
}

int nl_addr6_del(int ifindex, const uint8_t addr[16], int prefixlen)
{
	return nl_addr_request(RTM_DELADDR, 0, ifindex, AF_INET6, addr, prefixlen);
}

/* Adding 1,000 ports in one go queues several thousand link events (a few
 * hundred bytes to a few KiB each) before imdsd reads the first one; the
 * default receive buffer holds a few hundred.  An overflow is survivable
 * (ENOBUFS, then a fresh dump), but costs a full resynchronisation. */
#define NL_MONITOR_RCVBUF (16 << 20)

int nl_monitor_open(void)
{
	int fd = nl_socket(RTMGRP_LINK);
	int size = NL_MONITOR_RCVBUF;

	/* FORCE (root) passes net.core.rmem_max; if refused, try the capped one. */
	if (fd >= 0 && setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof(size)) < 0)
		setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
	return fd;
}

/* A link event as the caller sees it (netlink.h says how to read it). */
static void nl_dispatch_event(const struct nlmsghdr *nh, void (*cb)(void *, const struct nl_link *, bool), void *ctx)
{
	struct nl_link link;

	if (nh->nlmsg_type != RTM_NEWLINK && nh->nlmsg_type != RTM_DELLINK)
		return;
	if (nh->nlmsg_len < NLMSG_LENGTH(sizeof(struct ifinfomsg)))
		return;
	nl_parse_link(nh, &link);
	if (link.ifindex <= 0)
		return;
	cb(ctx, &link, nh->nlmsg_type == RTM_DELLINK);
}

int nl_monitor_read(int fd, void (*cb)(void *ctx, const struct nl_link *link, bool deleted), void *ctx)
{
	char *buf = malloc(NL_BUF_SIZE);
	bool lost = false;
	int rc = 0;

	if (!buf)
		return -ENOMEM;
	for (;;) {
		ssize_t n = recv(fd, buf, NL_BUF_SIZE, 0);
		size_t len = n > 0 ? (size_t)n : 0;

		if (n < 0) {
			int e = errno;

			if (e == EINTR)
				continue;
			/* ENOBUFS: the socket overflowed and events were lost.
			 * The kernel reports that once, then drops events
			 * silently until the queue has been read empty; so
			 * drain first, and only then may the caller's dump
			 * stand for everything lost. */
			if (e == ENOBUFS) {
				lost = true;
				continue;
			}
			rc = e == EAGAIN || e == EWOULDBLOCK ? 0 : -e;
			break;
		}
		for (const struct nlmsghdr *nh = (const void *)buf; NLMSG_OK(nh, len); nh = NLMSG_NEXT(nh, len))
			nl_dispatch_event(nh, cb, ctx);
	}
	free(buf);
	return rc == 0 && lost ? -ENOBUFS : rc;
}

/* netlink.h: the few rtnetlink operations imdsd needs, on raw sockets. */
#ifndef IMDS_NETLINK_H
#define IMDS_NETLINK_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The XDP programs attached to a link, per mode (0 = none), and the link's
 * kind (IFLA_INFO_KIND: "veth", "tun", ...; "" when it has none). */
struct nl_xdp {
	uint32_t drv_id, skb_id, hw_id;
	char kind[32];
};
/* What an RTM_NEWLINK/RTM_DELLINK message says about a link. */
struct nl_link {
	int ifindex;
	int master; /* IFLA_MASTER: the bridge it is a port of; 0 when none */
	char name[16]; /* IFLA_IFNAME (IFNAMSIZ) */
	char kind[32]; /* IFLA_INFO_KIND ("bridge", "veth", ...; "" when none) */
	struct nl_xdp xdp;
};

/* The link `ifindex` (one RTM_GETLINK).  0, -ENODEV or -errno. */
int nl_link_get(int ifindex, struct nl_link *link);
/* Calls cb for every link of the network namespace (one dump); a negative
 * return of cb ends the dump with that error.  0, -EAGAIN when links
 * changed during the dump (the kernel's NLM_F_DUMP_INTR: some may have
 * been missed; the caller starts over), or -errno. */
int nl_link_dump(int (*cb)(void *ctx, const struct nl_link *link), void *ctx);
/* One RTM_GETLINK for that link alone: libbpf's bpf_xdp_query dumps every
 * link of the namespace to find one, which makes attaching n ports O(n^2).
 * 0, -ENODEV or -errno. */
int nl_xdp_query(int ifindex, struct nl_xdp *xdp);
/* Lists the ports enslaved to bridge `bridge_ifindex`: fills up to `max`
 * indexes, sets *n to the number found.  0, -ENOSPC (more than max),
 * -EAGAIN (links kept changing during each of several dumps: the list may
 * miss some) or -errno. */
int nl_bridge_ports(int bridge_ifindex, int *ports, size_t max, size_t *n);
/* Adds/removes an IPv4 address.  nl_addr_add returns 0 when it added the
 * address and -EEXIST when it was already there. */
int nl_addr_add(int ifindex, uint32_t addr_be, int prefixlen);
int nl_addr_del(int ifindex, uint32_t addr_be, int prefixlen);
/* The same for an IPv6 address (added without duplicate detection). */
int nl_addr6_add(int ifindex, const uint8_t addr[16], int prefixlen);
int nl_addr6_del(int ifindex, const uint8_t addr[16], int prefixlen);

/* A non-blocking socket subscribed to link events, or -errno. */
int nl_monitor_open(void);
/* Drains pending events and calls cb(ctx, link, deleted) for each link
 * event: deleted is true for RTM_DELLINK.  A port's bridge changes come
 * twice: once as an AF_UNSPEC link message and once as an AF_BRIDGE one,
 * whose RTM_DELLINK means "left the bridge", not "deleted"; so a caller
 * reads "deleted, or link.master is not my bridge" as "not my port now",
 * and absorbs the duplicates with its own known set.  netlink.c keeps no
 * state.  0, -ENOBUFS when events were lost (the socket has been drained:
 * resynchronise now from a dump), or -errno. */
int nl_monitor_read(int fd, void (*cb)(void *ctx, const struct nl_link *link, bool deleted), void *ctx);

#endif

/* netlink.h: the few rtnetlink operations imdsd needs, on raw sockets. */
#ifndef IMDS_NETLINK_H
#define IMDS_NETLINK_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Interface index of `name`, or -ENODEV. */
int nl_ifindex(const char *name);
/* The link's IFLA_INFO_KIND ("bridge", "veth", ...; "" when it has none).
 * 0, -ENODEV or -errno. */
int nl_link_kind(int ifindex, char *kind, size_t len);
/* The XDP programs attached to a link, per mode (0 = none), and the link's
 * kind (IFLA_INFO_KIND: "veth", "tun", ...; "" when it has none). */
struct nl_xdp {
	uint32_t drv_id, skb_id, hw_id;
	char kind[32];
};
/* One RTM_GETLINK for that link alone: libbpf's bpf_xdp_query dumps every
 * link of the namespace to find one, which makes attaching n ports O(n^2).
 * 0, -ENODEV or -errno. */
int nl_xdp_query(int ifindex, struct nl_xdp *xdp);
/* Lists the ports enslaved to bridge `bridge_ifindex`: fills up to `max`
 * indexes, sets *n to the number found.  0, -ENOSPC (more than max) or
 * -errno. */
int nl_bridge_ports(int bridge_ifindex, int *ports, size_t max, size_t *n);
/* Adds/removes an IPv4 address.  nl_addr_add returns 0 when it added the
 * address and -EEXIST when it was already there. */
int nl_addr_add(int ifindex, uint32_t addr_be, int prefixlen);
int nl_addr_del(int ifindex, uint32_t addr_be, int prefixlen);

/* A non-blocking socket subscribed to link events, or -errno. */
int nl_monitor_open(void);
/* Drains pending events and calls cb(ctx, ifindex, joined) for each link
 * event: joined = true when the link's master is the bridge (it joined, or
 * an already known port changed), false when the link was deleted or its
 * master is not the bridge.  netlink.c keeps no state: the caller decides
 * whether a "false" concerns one of its ports, and whether a "true" is new.
 * 0, -ENOBUFS when events were lost (the socket has been drained:
 * resynchronise now with nl_bridge_ports), or -errno. */
int nl_monitor_read(int fd, int bridge_ifindex, void (*cb)(void *ctx, int ifindex, bool joined), void *ctx);

#endif

/* netlink.h: the few rtnetlink operations imdsd needs, on raw sockets. */
#ifndef IMDS_NETLINK_H
#define IMDS_NETLINK_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Interface index of `name`, or -ENODEV. */
int nl_ifindex(const char *name);
/* Lists the ports enslaved to bridge `bridge_ifindex`: fills up to `max`
 * indexes, sets *n to the number found.  0 or -errno. */
int nl_bridge_ports(int bridge_ifindex, int *ports, size_t max, size_t *n);
/* Adds/removes an IPv4 address.  nl_addr_add returns 0 when it added the
 * address and -EEXIST when it was already there. */
int nl_addr_add(int ifindex, uint32_t addr_be, int prefixlen);
int nl_addr_del(int ifindex, uint32_t addr_be, int prefixlen);

/* A non-blocking socket subscribed to link events, or -errno. */
int nl_monitor_open(void);
/* Drains pending events and calls cb(ctx, ifindex, joined) for each port
 * that joined (joined = true) or left (false) the bridge.  0 or -errno. */
int nl_monitor_read(int fd, int bridge_ifindex, void (*cb)(void *ctx, int ifindex, bool joined), void *ctx);

#endif

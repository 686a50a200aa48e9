/* watch.c: the served bridges and their ports (watch.h).
 *
 * One link-event socket serves every bridge: an event is about a served
 * bridge (it went, or was renamed away from the names), about a bridge
 * that now matches (served from then on), or about a port, whose master
 * says which served bridge it belongs to, if any.  Ports of every bridge
 * share one table and one store, so a VM's pinned port may be on any of
 * them; which VM a port serves is the store's pin (by name), never the
 * bridge. */
#include "ports/watch.h"

#include <errno.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/log.h"
#include "ports/netlink.h"
#include "ports/portset.h"

#define WATCH_MAX_BRIDGES 64
#define WATCH_ERR_LEN 512

struct watch_bridge {
	int ifindex;
	char name[IF_NAMESIZE];
	bool added_addr;  /* we added the address and remove it on stop */
	bool added_addr6; /* ... and fd00:ec2::254/128 (docs/ipv6.md) */
	unsigned seen;	 /* sync round that last listed the bridge */
};

struct watch {
	struct watch_config cfg;
	struct watch_bridge bridges[WATCH_MAX_BRIDGES];
	size_t nbridges;
	struct portset ports;
	unsigned round;
	/* Ports that left since the last flush: their VMs are released in one
	 * pass over the store (one lock, one scan) per batch of link events. */
	uint32_t *left;
	size_t nleft;
	int nl_fd;
	unsigned unattached; /* known ports the data plane failed on (atomic: /healthz reads it) */
};

static const char *watch_port_name(int ifindex, char buf[IF_NAMESIZE])
{
	return if_indextoname((unsigned)ifindex, buf) ? buf : "?";
}

static struct watch_bridge *watch_find_bridge(struct watch *w, int ifindex)
{
	for (size_t i = 0; i < w->nbridges; i++)
		if (w->bridges[i].ifindex == ifindex)
			return &w->bridges[i];
	return NULL;
}

static const char *watch_bridge_name(struct watch *w, int ifindex)
{
	struct watch_bridge *b = watch_find_bridge(w, ifindex);

	return b ? b->name : "?";
}

/* ---- ports ---- */

/* The VMs pinned to a port's name are bound to it as it joins: from then on
 * they are served there and nowhere else, whichever bridge it is on. */
static void watch_pin_port(struct watch *w, int ifindex)
{
	struct store *s = w->cfg.store;
	char name[IF_NAMESIZE];
	int n;

	if (!if_indextoname((unsigned)ifindex, name) || store_lock(s) < 0)
		return;
	n = store_pin_port(s, (uint32_t)ifindex, name);
	store_unlock(s);
	if (n > 0)
		log_info("port %s (ifindex %d): %d pinned VM(s) bound", name, ifindex, n);
}

static void watch_flush_left(struct watch *w);

static void watch_log_attached(struct watch *w, int ifindex, int bridge)
{
	char name[IF_NAMESIZE];
	const char *mode = "none";

	if (w->cfg.ingress == DATAPLANE_INGRESS_TC) {
		log_info("port %s (ifindex %d) of %s: TC ingress and TC egress attached (%s)",
			watch_port_name(ifindex, name), ifindex, watch_bridge_name(w, bridge),
			dataplane_tc_attach_name());
		return;
	}
	dataplane_mode(w->cfg.store, ifindex, &mode);
	log_info("port %s (ifindex %d) of %s: XDP (%s mode) and TC egress attached (%s)",
		watch_port_name(ifindex, name), ifindex, watch_bridge_name(w, bridge), mode,
		dataplane_tc_attach_name());
}

/* A port of a served bridge that is not known yet: attach, log the outcome
 * and remember the port either way. */
static void watch_port_joined(struct watch *w, int ifindex, int bridge)
{
	char err[WATCH_ERR_LEN] = "", name[IF_NAMESIZE];
	struct portset_port *p;
	int rc;

	if (w->ports.n == PORTSET_MAX) {
		log_warn("port %s (ifindex %d) skipped: more than %d ports",
			watch_port_name(ifindex, name), ifindex, PORTSET_MAX);
		return;
	}
	/* Releases queued for ports that left must not undo this port's
	 * bindings (it may be one of them, back in the same batch). */
	watch_flush_left(w);
	rc = dataplane_attach(w->cfg.store, ifindex, err, sizeof(err));
	p = portset_insert(&w->ports, ifindex, bridge);
	p->seen = w->round;
	p->attached = rc == 0;
	if (rc < 0) {
		__atomic_add_fetch(&w->unattached, 1, __ATOMIC_RELAXED);
		log_error("port %s (ifindex %d): data plane not attached: %s",
			watch_port_name(ifindex, name), ifindex, err);
		return;
	}
	if (err[0]) /* attached, with something worth knowing */
		log_info("port %s (ifindex %d): %s", watch_port_name(ifindex, name), ifindex, err);
	watch_pin_port(w, ifindex);
	watch_log_attached(w, ifindex, bridge);
}

/* A known port left its bridge or was deleted: detach from it now (it may
 * live on outside the bridge), and queue it for watch_flush_left. */
static void watch_port_left(struct watch *w, struct portset_port *p)
{
	char name[IF_NAMESIZE];
	int ifindex = p->ifindex, bridge = p->bridge;

	if (p->attached)
		dataplane_detach(w->cfg.store, ifindex); /* -ENODEV when deleted: nothing to undo */
	else
		__atomic_sub_fetch(&w->unattached, 1, __ATOMIC_RELAXED);
	portset_remove(&w->ports, p);
	if (w->nleft == PORTSET_SLOTS) /* churn within one batch of events */
		watch_flush_left(w);
	w->left[w->nleft++] = (uint32_t)ifindex;
	/* The name is gone when the port was deleted rather than unenslaved. */
	log_info("port %s (ifindex %d) left the bridge %s", watch_port_name(ifindex, name), ifindex,
		watch_bridge_name(w, bridge));
}

/* Forgets what the store learned on the ports that left: the VMs bound to
 * them (a pinned VM binds again when a port of its name joins; a first-use
 * one on its next packet) and their pending connections and hop marks. */
static void watch_flush_left(struct watch *w)
{
	struct store *s = w->cfg.store;
	int rc;

	if (w->nleft == 0)
		return;
	rc = store_lock(s);
	if (rc == 0) {
		rc = store_forget_ports(s, w->left, w->nleft);
		store_unlock(s);
	}
	if (rc < 0)
		log_error("cannot forget the VMs of %zu departed port(s): %s", w->nleft, strerror(-rc));
	else if (rc > 0)
		log_info("released the port binding of %d VM(s)", rc);
	w->nleft = 0;
}

/* Every known port of `bridge` leaves. */
static void watch_ports_leave(struct watch *w, int bridge)
{
	for (size_t i = 0; i < PORTSET_SLOTS; i++)
		/* A removal may shift a later entry into slot i: look again. */
		while (w->ports.slot[i].ifindex && w->ports.slot[i].bridge == bridge)
			watch_port_left(w, &w->ports.slot[i]);
}

/* ---- bridges ---- */

static const uint8_t watch_addr6[16] = IMDS_IPV6_ADDR_BYTES;

/* 169.254.169.254/32 and fd00:ec2::254/128.  The IPv6 one always, not
 * only when some VM has an "ipv6" (docs/ipv6.md): it costs nothing to
 * guests that do not route to it; a bridge with IPv6 disabled is served
 * over IPv4 only. */
static void watch_add_address(struct watch *w, struct watch_bridge *b)
{
	int rc = nl_addr_add(b->ifindex, w->cfg.addr_be, 32);

	b->added_addr = rc == 0;
	if (rc < 0 && rc != -EEXIST) /* -EEXIST: somebody else's, left in place on stop */
		log_error("bridge %s: cannot add the metadata address: %s", b->name, strerror(-rc));
	rc = nl_addr6_add(b->ifindex, watch_addr6, 128);
	b->added_addr6 = rc == 0;
	if (rc < 0 && rc != -EEXIST)
		log_warn("bridge %s: cannot add " IMDS_IPV6_ADDR_TEXT "/128 (%s): IPv4 only there", b->name,
			 strerror(-rc));
}

static void watch_remove_addresses(struct watch *w, struct watch_bridge *b)
{
	int rc = b->added_addr ? nl_addr_del(b->ifindex, w->cfg.addr_be, 32) : 0;

	/* -ENODEV: the bridge went away with its addresses. */
	if (rc < 0 && rc != -ENODEV)
		log_error("cannot remove the metadata address from %s: %s", b->name, strerror(-rc));
	rc = b->added_addr6 ? nl_addr6_del(b->ifindex, watch_addr6, 128) : 0;
	if (rc < 0 && rc != -ENODEV)
		log_error("cannot remove " IMDS_IPV6_ADDR_TEXT " from %s: %s", b->name, strerror(-rc));
	b->added_addr = b->added_addr6 = false;
}

/* A bridge that matches the configuration and is not served yet. */
static struct watch_bridge *watch_bridge_added(struct watch *w, const struct nl_link *link)
{
	struct watch_bridge *b;

	if (w->nbridges == WATCH_MAX_BRIDGES) {
		log_warn("bridge %s skipped: more than %d bridges", link->name, WATCH_MAX_BRIDGES);
		return NULL;
	}
	b = &w->bridges[w->nbridges++];
	*b = (struct watch_bridge){ .ifindex = link->ifindex, .seen = w->round };
	snprintf(b->name, sizeof(b->name), "%s", link->name);
	watch_add_address(w, b);
	log_info("bridge %s (ifindex %d): served", b->name, b->ifindex);
	return b;
}

/* Lists the ports a bridge has when it starts being served: those that
 * joined before our events about them were read are not missed (later
 * duplicates are absorbed by the known set). */
static void watch_bridge_ports(struct watch *w, const struct watch_bridge *b)
{
	static int list[PORTSET_MAX];
	size_t n = 0;
	int rc = nl_bridge_ports(b->ifindex, list, PORTSET_MAX, &n);

	if (rc < 0 && rc != -ENOSPC && rc != -EAGAIN)
		log_error("cannot list the ports of %s: %s", b->name, strerror(-rc));
	for (size_t i = 0; i < n; i++)
		if (!portset_find(&w->ports, list[i]))
			watch_port_joined(w, list[i], b->ifindex);
}

/* A served bridge was deleted (or renamed out of the configuration): its
 * ports leave as any port does, and the other bridges are untouched. */
static void watch_bridge_gone(struct watch *w, struct watch_bridge *b, bool exists)
{
	/* The kernel takes a deleted bridge's ports off it first, so they
	 * have usually left already; a renamed bridge keeps them. */
	watch_ports_leave(w, b->ifindex);
	watch_flush_left(w);
	if (exists)
		watch_remove_addresses(w, b);
	log_info("bridge %s (ifindex %d) %s: no longer served", b->name, b->ifindex,
		exists ? "no longer matches --bridge" : "is gone");
	*b = w->bridges[--w->nbridges];
}

/* An event about a bridge we serve.  An AF_BRIDGE message about the bridge
 * itself carries no kind and may be an RTM_DELLINK while the bridge lives
 * on, so only the kernel's answer says it is gone. */
static void watch_served_bridge_event(struct watch *w, struct watch_bridge *b, const struct nl_link *link,
				      bool deleted)
{
	struct nl_link now;

	if (deleted) {
		if (nl_link_get(b->ifindex, &now) == -ENODEV)
			watch_bridge_gone(w, b, false);
		return;
	}
	if (link->name[0] && strcmp(link->name, b->name) != 0) {
		if (!namelist_matches(w->cfg.bridges, link->name)) {
			watch_bridge_gone(w, b, true);
			return;
		}
		snprintf(b->name, sizeof(b->name), "%s", link->name);
	}
}

static bool watch_wanted_bridge(const struct watch *w, const struct nl_link *link)
{
	return strcmp(link->kind, "bridge") == 0 && namelist_matches(w->cfg.bridges, link->name);
}

static void watch_on_link(void *ctx, const struct nl_link *link, bool deleted)
{
	struct watch *w = ctx;
	struct watch_bridge *b = watch_find_bridge(w, link->ifindex);
	struct portset_port *p;
	bool served;

	if (b) {
		watch_served_bridge_event(w, b, link, deleted);
		return;
	}
	if (!deleted && watch_wanted_bridge(w, link)) {
		b = watch_bridge_added(w, link);
		if (b)
			watch_bridge_ports(w, b);
		return;
	}
	p = portset_find(&w->ports, link->ifindex);
	served = !deleted && link->master && watch_find_bridge(w, link->master);
	if (served && !p)
		watch_port_joined(w, link->ifindex, link->master);
	else if (served)
		p->bridge = link->master; /* moved between served bridges: its pins still decide */
	else if (p)
		watch_port_left(w, p);
}

/* ---- resynchronisation: at start, and after lost events ---- */

/* The links that matter, from one dump: bridges and enslaved links. */
struct watch_dump {
	struct nl_link *links;
	size_t n, cap;
};

static int watch_dump_link(void *ctx, const struct nl_link *link)
{
	struct watch_dump *d = ctx;

	if (!link->master && strcmp(link->kind, "bridge") != 0)
		return 0;
	if (d->n == d->cap) {
		size_t cap = d->cap ? 2 * d->cap : 256;
		struct nl_link *more = realloc(d->links, cap * sizeof(*more));

		if (!more)
			return -ENOMEM;
		d->links = more;
		d->cap = cap;
	}
	d->links[d->n++] = *link;
	return 0;
}

/* Served bridges now: new ones are added, departed ones forgotten. */
static void watch_sync_bridges(struct watch *w, const struct watch_dump *d)
{
	for (size_t i = 0; i < d->n; i++) {
		struct watch_bridge *b = watch_find_bridge(w, d->links[i].ifindex);

		if (b && namelist_matches(w->cfg.bridges, d->links[i].name))
			b->seen = w->round;
		else if (!b && watch_wanted_bridge(w, &d->links[i]))
			watch_bridge_added(w, &d->links[i]);
	}
	for (size_t i = w->nbridges; i-- > 0;) {
		struct nl_link now;

		if (w->bridges[i].seen != w->round)
			watch_bridge_gone(w, &w->bridges[i], nl_link_get(w->bridges[i].ifindex, &now) == 0);
	}
}

/* Bindings to ports that are on no served bridge now (they left while no
 * imdsd watched, or while events were lost) are released with their
 * connections and hop marks; pinned VMs bind again when their port joins. */
static void watch_release_absent(struct watch *w, const uint32_t *present, size_t n)
{
	struct store *s = w->cfg.store;
	int rc = store_lock(s);

	if (rc == 0) {
		rc = store_release_absent(s, present, n);
		store_unlock(s);
	}
	if (rc < 0)
		log_error("cannot release bindings to absent ports: %s", strerror(-rc));
	else if (rc > 0)
		log_info("released the port binding of %d VM(s) whose port is gone", rc);
}

/* Ports now: listed ones are stamped with this round, known ones left
 * unstamped have gone (first, so they do not count against the limit),
 * then the new ones join. */
static int watch_sync_ports(struct watch *w, const struct watch_dump *d)
{
	uint32_t *present = malloc((d->n ? d->n : 1) * sizeof(*present));
	size_t n = 0;

	if (!present)
		return -ENOMEM;
	for (size_t i = 0; i < d->n; i++) {
		const struct nl_link *l = &d->links[i];
		struct portset_port *p;

		if (!l->master || !watch_find_bridge(w, l->master))
			continue;
		present[n++] = (uint32_t)l->ifindex;
		p = portset_find(&w->ports, l->ifindex);
		if (p) {
			p->seen = w->round;
			p->bridge = l->master;
		}
	}
	for (size_t i = 0; i < PORTSET_SLOTS; i++)
		while (w->ports.slot[i].ifindex && w->ports.slot[i].seen != w->round)
			watch_port_left(w, &w->ports.slot[i]);
	watch_flush_left(w);
	watch_release_absent(w, present, n);
	for (size_t i = 0; i < d->n; i++)
		if (d->links[i].master && watch_find_bridge(w, d->links[i].master) &&
		    !portset_find(&w->ports, d->links[i].ifindex))
			watch_port_joined(w, d->links[i].ifindex, d->links[i].master);
	free(present);
	return 0;
}

/* A dump taken while links change may miss some (the kernel says so), and
 * a port missed would be taken for gone: such a dump is taken again. */
#define WATCH_DUMP_TRIES 10

static int watch_sync(struct watch *w)
{
	struct watch_dump d = { 0 };
	int rc = -EAGAIN;

	for (int tries = 0; tries < WATCH_DUMP_TRIES && rc == -EAGAIN; tries++) {
		d.n = 0;
		rc = nl_link_dump(watch_dump_link, &d);
	}
	if (rc == -EAGAIN)
		log_warn("the links kept changing during %d dumps: using the last", WATCH_DUMP_TRIES);
	if (rc == 0 || rc == -EAGAIN) {
		w->round++;
		watch_sync_bridges(w, &d);
		rc = watch_sync_ports(w, &d);
	}
	free(d.links);
	return rc;
}

/* ---- the watch as a whole ---- */

static bool watch_port_attached(void *ctx, int ifindex)
{
	struct portset_port *p = portset_find(&((struct watch *)ctx)->ports, ifindex);

	return p && p->attached;
}

/* Pinned TCX links outlive imdsd: those of ports that left while none ran
 * (or whose attach failed now) go once the start's sync attached the rest. */
static void watch_sweep_links(struct watch *w)
{
	int rc = dataplane_sweep(w->cfg.store, watch_port_attached, w);

	if (rc < 0)
		log_error("cannot look through the pinned TCX links: %s", strerror(-rc));
	else if (rc > 0)
		log_info("removed %d pinned TCX link(s) of ports no longer served", rc);
}

/* Names of the configuration no bridge answers yet: a typo shows at once,
 * and a bridge libvirt starts later is served when it appears. */
static void watch_log_waiting(struct watch *w)
{
	const struct namelist *l = w->cfg.bridges;

	for (size_t i = 0; i < l->n; i++) {
		bool found = false;

		for (size_t j = 0; j < w->nbridges && !found; j++)
			found = namelist_entry_matches(l->entry[i], w->bridges[j].name);
		if (!found)
			log_warn("no bridge %s %s yet: served when it appears",
				namelist_is_pattern(l->entry[i]) ? "matches" : "named", l->entry[i]);
	}
}

int watch_start(struct watch **out, const struct watch_config *cfg)
{
	struct watch *w = calloc(1, sizeof(*w));
	int rc;

	*out = NULL;
	if (!w)
		return -ENOMEM;
	w->cfg = *cfg;
	w->nl_fd = -1;
	w->left = calloc(PORTSET_SLOTS, sizeof(*w->left));
	rc = w->left ? portset_init(&w->ports) : -ENOMEM;
	/* Subscribe before listing, so a link that changes in between is not
	 * missed (a duplicate is absorbed by the known sets). */
	if (rc == 0)
		rc = w->nl_fd = nl_monitor_open();
	if (rc >= 0)
		rc = watch_sync(w);
	if (rc < 0) {
		log_error("cannot list the links: %s", strerror(-rc));
		watch_stop(w);
		return rc;
	}
	watch_sweep_links(w);
	watch_log_waiting(w);
	*out = w;
	return 0;
}

unsigned watch_unattached(const struct watch *w)
{
	return w ? __atomic_load_n(&w->unattached, __ATOMIC_RELAXED) : 0;
}

int watch_fd(const struct watch *w)
{
	return w->nl_fd;
}

void watch_events(struct watch *w)
{
	int rc = nl_monitor_read(w->nl_fd, watch_on_link, w);

	watch_flush_left(w);
	if (rc == -ENOBUFS) {
		log_warn("link events were lost, re-reading the bridges and ports");
		rc = watch_sync(w);
	}
	if (rc < 0)
		log_error("link events: %s", strerror(-rc));
}

void watch_stop(struct watch *w)
{
	if (!w)
		return;
	for (size_t i = 0; w->ports.slot && i < PORTSET_SLOTS; i++)
		if (w->ports.slot[i].ifindex && w->ports.slot[i].attached)
			dataplane_detach(w->cfg.store, w->ports.slot[i].ifindex);
	for (size_t i = 0; i < w->nbridges; i++)
		watch_remove_addresses(w, &w->bridges[i]);
	if (w->nl_fd >= 0)
		close(w->nl_fd);
	portset_free(&w->ports);
	free(w->left);
	free(w);
}

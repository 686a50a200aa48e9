/* imdsd.c: the metadata daemon.  Opens the pinned store with the data-plane
 * programs, puts the metadata address on the bridge, attaches the data
 * plane (the ingress check, at TC ingress by default or at XDP, and TC
 * egress) to every bridge port (and to ports that join later), serves HTTP
 * with the io_uring server, and undoes its own changes on SIGINT/SIGTERM.
 * Pinned maps stay: a restarted imdsd finds every VM and the same token
 * key. */
#include <errno.h>
#include <arpa/inet.h>
#include <net/if.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "lib/cli.h"
#include "lib/log.h"
#include "ports/dataplane.h"
#include "imds.h"
#include "ports/netlink.h"
#include "serve/admin.h"
#include "serve/server.h"
#include "store/store.h"

#define IMDSD_MAX_PORTS 4096
/* Open-addressing table of known ports: a power of two, at most half full. */
#define IMDSD_PORT_SLOTS (2 * IMDSD_MAX_PORTS)
#define IMDSD_ERR_LEN 512
/* IMDS_IPV4_ADDR is in host order (0xA9FEA9FE is not a byte palindrome). */
#define IMDSD_ADDR_BE htonl(IMDS_IPV4_ADDR)

/* A bridge port we know of.  `attached` is false when the attach failed:
 * the port is still known, so a later link event does not retry it (and a
 * test that detaches the ingress check on purpose is not undone).  ifindex
 * 0 marks a free slot of the table. */
struct imdsd_port {
	int ifindex;
	bool attached;
	unsigned seen; /* sync round that last listed the port */
};

struct imdsd {
	/* options */
	const char *bridge_name;
	const char *pin_dir;
	int workers;
	int idle_timeout_ms;
	int header_timeout_ms; /* --header-timeout */
	int max_conns_total;   /* --max-connections-total, 0 = from RLIMIT_NOFILE */
	enum dataplane_ingress ingress; /* --ingress */
	bool xdp_mode_set;		/* --xdp-mode given: needs --ingress xdp */
	bool first_use_all;		/* --bind-first-use */
	struct admin_addr metrics_addr; /* --metrics */
	bool metrics_set;
	/* state */
	struct store store;
	bool store_ready;
	int bridge;
	bool added_addr; /* we added 169.254.169.254 and remove it on exit */
	struct imdsd_port *ports; /* IMDSD_PORT_SLOTS, hashed by ifindex */
	size_t nports;
	unsigned sync_round;
	/* Ports that left since the last flush: their VMs are released in one
	 * pass over the store (one lock, one scan) per batch of link events. */
	uint32_t *left;
	size_t nleft;
	struct server *srv;
	struct admin *admin;	     /* the metrics endpoint and the per-VM event log */
	unsigned ports_unattached; /* known ports the data plane failed on (atomic: /healthz reads it) */
	int sig_fd, nl_fd;
};

enum imdsd_opt {
	OPT_BRIDGE,
	OPT_PIN_DIR,
	OPT_WORKERS,
	OPT_IDLE,
	OPT_HEADER_TIMEOUT,
	OPT_MAX_CONNS_TOTAL,
	OPT_XDP_MODE,
	OPT_INGRESS,
	OPT_FIRST_USE,
	OPT_LOG_LEVEL,
	OPT_METRICS,
};

static const struct cli_option imdsd_options[] = {
	[OPT_BRIDGE] = { "bridge", 'b', "BR", "bridge whose ports carry the VMs (required)" },
	[OPT_PIN_DIR] = { "pin-dir", 'p', "DIR", "pin directory of the maps (default " IMDS_DEFAULT_PIN_DIR ")" },
	[OPT_WORKERS] = { "workers", 'w', "N", "server threads, 1..64 (default 2)" },
	[OPT_IDLE] = { "idle-timeout", 't', "MS", "close connections idle this long (default 10000)" },
	[OPT_HEADER_TIMEOUT] = { "header-timeout", 0, "MS",
				 "close a connection whose request is not complete this long after its first byte "
				 "(default 5000)" },
	[OPT_MAX_CONNS_TOTAL] = { "max-connections-total", 0, "N",
				  "connections held at once, all VMs together (default: RLIMIT_NOFILE less a "
				  "reserve; docs/limits.md)" },
	[OPT_XDP_MODE] = { "xdp-mode", 'x', "MODE",
			   "with --ingress xdp: auto (generic on veth, else native; default), native or generic" },
	[OPT_INGRESS] = { "ingress", 'i', "HOOK", "where VM packets are checked: tc (default) or xdp" },
	[OPT_FIRST_USE] = { "bind-first-use", 0, NULL,
			    "UNSAFE: a VM with no pinned port binds to the port it speaks first from "
			    "(docs/design.md)" },
	[OPT_LOG_LEVEL] = { "log-level", 0, "LEVEL", "error, warn, info (default) or debug (docs/metrics.md, \"Logs\")" },
	[OPT_METRICS] = { "metrics", 0, "ADDR",
			  "serve /metrics and /healthz on 127.0.0.1:PORT or unix:/PATH, never on an address a VM "
			  "reaches (default: off; docs/metrics.md)" },
	{ 0 },
};

static const char imdsd_synopsis[] =
	"--bridge BR [--pin-dir DIR] [--workers N] [--idle-timeout MS] [--header-timeout MS] "
	"[--max-connections-total N] [--xdp-mode MODE] [--ingress HOOK] [--bind-first-use] [--log-level LEVEL] [--metrics ADDR]";

static int imdsd_parse_int(const char *name, const char *text, long min, long max, int *out)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(text, &end, 10);
	if (errno || end == text || *end || v < min || v > max) {
		fprintf(stderr, "imdsd: --%s: \"%s\" is not a number in %ld..%ld\n", name, text, min, max);
		return -1;
	}
	*out = (int)v;
	return 0;
}

static int imdsd_parse_xdp_mode(const char *text)
{
	static const char *const names[] = {
		[DATAPLANE_XDP_AUTO] = "auto",
		[DATAPLANE_XDP_NATIVE] = "native",
		[DATAPLANE_XDP_GENERIC] = "generic",
	};

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (strcmp(text, names[i]) == 0) {
			dataplane_set_xdp_mode((enum dataplane_xdp_mode)i);
			return 0;
		}
	}
	fprintf(stderr, "imdsd: --xdp-mode: \"%s\" is not auto, native or generic\n", text);
	return -1;
}

static int imdsd_parse_log_level(const char *text)
{
	enum log_level level;

	if (log_parse_level(text, &level) < 0) {
		fprintf(stderr, "imdsd: --log-level: \"%s\" is not error, warn, info or debug\n", text);
		return -1;
	}
	log_set_level(level);
	return 0;
}

static int imdsd_parse_metrics(struct imdsd *d, const char *text)
{
	char err[256];

	if (admin_parse_addr(text, &d->metrics_addr, err, sizeof(err)) < 0) {
		fprintf(stderr, "imdsd: --metrics: %s\n", err);
		return -1;
	}
	d->metrics_set = true;
	return 0;
}

static int imdsd_on_option(void *ctx, int index, const char *arg)
{
	struct imdsd *d = ctx;

	switch (index) {
	case OPT_BRIDGE:
		d->bridge_name = arg;
		return 0;
	case OPT_PIN_DIR:
		d->pin_dir = arg;
		return 0;
	case OPT_WORKERS:
		return imdsd_parse_int("workers", arg, 1, 64, &d->workers);
	case OPT_IDLE:
		return imdsd_parse_int("idle-timeout", arg, 1, 86400000, &d->idle_timeout_ms);
	case OPT_HEADER_TIMEOUT:
		return imdsd_parse_int("header-timeout", arg, 1, 86400000, &d->header_timeout_ms);
	case OPT_MAX_CONNS_TOTAL:
		return imdsd_parse_int("max-connections-total", arg, 1, 1 << 30, &d->max_conns_total);
	case OPT_XDP_MODE:
		d->xdp_mode_set = true;
		return imdsd_parse_xdp_mode(arg);
	case OPT_FIRST_USE:
		d->first_use_all = true;
		return 0;
	case OPT_LOG_LEVEL:
		return imdsd_parse_log_level(arg);
	case OPT_METRICS:
		return imdsd_parse_metrics(d, arg);
	case OPT_INGRESS:
		if (strcmp(arg, "tc") == 0) {
			d->ingress = DATAPLANE_INGRESS_TC;
		} else if (strcmp(arg, "xdp") == 0) {
			d->ingress = DATAPLANE_INGRESS_XDP;
		} else {
			fprintf(stderr, "imdsd: --ingress: \"%s\" is not tc or xdp\n", arg);
			return -1;
		}
		return 0;
	default:
		return -1;
	}
}

/* 0, or 2 (usage error, already reported). */
static int imdsd_parse_args(struct imdsd *d, int argc, char **argv)
{
	int optind_ = cli_parse(argc, argv, imdsd_options, imdsd_synopsis, imdsd_on_option, d);

	if (optind_ < 0)
		return 2;
	if (optind_ < argc || !d->bridge_name) {
		fprintf(stderr, "imdsd: %s\n", optind_ < argc ? "unexpected argument" : "--bridge is required");
		cli_usage(stderr, argv[0], imdsd_synopsis, imdsd_options);
		return 2;
	}
	/* Silently ignoring it would leave whoever asked for native XDP
	 * believing they run it. */
	if (d->xdp_mode_set && d->ingress != DATAPLANE_INGRESS_XDP) {
		fprintf(stderr, "imdsd: --xdp-mode needs --ingress xdp (the default ingress hook is tc)\n");
		return 2;
	}
	dataplane_set_ingress(d->ingress);
	return 0;
}

static const char *imdsd_port_name(int ifindex, char buf[IF_NAMESIZE])
{
	return if_indextoname((unsigned)ifindex, buf) ? buf : "?";
}

/* ---- known ports ----
 *
 * A hash table keyed by ifindex (linear probing, deletion by backward
 * shift), so a link event costs O(1) whatever the number of ports, and a
 * resynchronisation O(ports). */

static size_t imdsd_port_hash(int ifindex)
{
	return ((unsigned)ifindex * 2654435761u) & (IMDSD_PORT_SLOTS - 1);
}

static struct imdsd_port *imdsd_find_port(struct imdsd *d, int ifindex)
{
	for (size_t i = imdsd_port_hash(ifindex);; i = (i + 1) & (IMDSD_PORT_SLOTS - 1)) {
		if (d->ports[i].ifindex == ifindex)
			return &d->ports[i];
		if (d->ports[i].ifindex == 0)
			return NULL;
	}
}

static struct imdsd_port *imdsd_insert_port(struct imdsd *d, int ifindex)
{
	size_t i = imdsd_port_hash(ifindex);

	while (d->ports[i].ifindex)
		i = (i + 1) & (IMDSD_PORT_SLOTS - 1);
	d->ports[i] = (struct imdsd_port){ .ifindex = ifindex, .seen = d->sync_round };
	d->nports++;
	return &d->ports[i];
}

/* Empties slot p and moves later entries of its probe run back, so every
 * entry stays reachable from its home slot without tombstones. */
static void imdsd_remove_port(struct imdsd *d, struct imdsd_port *p)
{
	size_t hole = (size_t)(p - d->ports), i = hole;

	for (;;) {
		size_t home;

		i = (i + 1) & (IMDSD_PORT_SLOTS - 1);
		if (d->ports[i].ifindex == 0)
			break;
		home = imdsd_port_hash(d->ports[i].ifindex);
		/* Entry i may fill the hole unless its home lies cyclically
		 * in (hole, i]. */
		if (((i - home) & (IMDSD_PORT_SLOTS - 1)) >= ((i - hole) & (IMDSD_PORT_SLOTS - 1))) {
			d->ports[hole] = d->ports[i];
			hole = i;
		}
	}
	d->ports[hole] = (struct imdsd_port){ 0 };
	d->nports--;
}

/* The VMs pinned to a port's name are bound to it as it joins: from then on
 * they are served there and nowhere else. */
static void imdsd_pin_port(struct imdsd *d, int ifindex)
{
	char name[IF_NAMESIZE];
	int n = 0;

	if (!if_indextoname((unsigned)ifindex, name) || store_lock(&d->store) < 0)
		return;
	n = store_pin_port(&d->store, (uint32_t)ifindex, name);
	store_unlock(&d->store);
	if (n > 0)
		log_info("port %s (ifindex %d): %d pinned VM(s) bound", name, ifindex, n);
}

/* A port that is on the bridge and not known yet: attach, log the outcome
 * and remember the port either way. */
static void imdsd_port_joined(struct imdsd *d, int ifindex)
{
	char err[IMDSD_ERR_LEN] = "", name[IF_NAMESIZE];
	const char *mode = "none";
	struct imdsd_port *p;
	int rc;

	if (imdsd_find_port(d, ifindex))
		return;
	if (d->nports == IMDSD_MAX_PORTS) {
		log_warn("port %s (ifindex %d) skipped: more than %d ports",
			imdsd_port_name(ifindex, name), ifindex, IMDSD_MAX_PORTS);
		return;
	}
	rc = dataplane_attach(&d->store, ifindex, err, sizeof(err));
	p = imdsd_insert_port(d, ifindex);
	p->attached = rc == 0;
	if (rc < 0) {
		__atomic_add_fetch(&d->ports_unattached, 1, __ATOMIC_RELAXED);
		log_error("port %s (ifindex %d): data plane not attached: %s",
			imdsd_port_name(ifindex, name), ifindex, err);
		return;
	}
	if (err[0]) /* attached, with something worth knowing */
		log_info("port %s (ifindex %d): %s", imdsd_port_name(ifindex, name), ifindex, err);
	imdsd_pin_port(d, ifindex);
	if (d->ingress == DATAPLANE_INGRESS_TC) {
		log_info("port %s (ifindex %d): TC ingress and TC egress attached",
			imdsd_port_name(ifindex, name), ifindex);
		return;
	}
	dataplane_mode(&d->store, ifindex, &mode);
	log_info("port %s (ifindex %d): XDP (%s mode) and TC egress attached",
		imdsd_port_name(ifindex, name), ifindex, mode);
}

static void imdsd_flush_left(struct imdsd *d);

/* A known port left the bridge or was deleted: detach from it now (it may
 * live on outside the bridge), and queue it for imdsd_flush_left. */
static void imdsd_port_left(struct imdsd *d, struct imdsd_port *p)
{
	char name[IF_NAMESIZE];
	int ifindex = p->ifindex;

	if (p->attached)
		dataplane_detach(&d->store, ifindex); /* -ENODEV when deleted: nothing to undo */
	else
		__atomic_sub_fetch(&d->ports_unattached, 1, __ATOMIC_RELAXED);
	imdsd_remove_port(d, p);
	if (d->nleft == IMDSD_PORT_SLOTS) /* churn within one batch of events */
		imdsd_flush_left(d);
	d->left[d->nleft++] = (uint32_t)ifindex;
	/* The name is gone when the port was deleted rather than unenslaved. */
	log_info("port %s (ifindex %d) left the bridge", imdsd_port_name(ifindex, name), ifindex);
}

/* Forgets what the store learned on the ports that left: the VMs bound to
 * them (a pinned VM binds again when a port of its name joins; a first-use
 * one on its next packet) and their pending connections and hop marks. */
static void imdsd_flush_left(struct imdsd *d)
{
	int rc;

	if (d->nleft == 0)
		return;
	rc = store_lock(&d->store);
	if (rc == 0) {
		rc = store_forget_ports(&d->store, d->left, d->nleft);
		store_unlock(&d->store);
	}
	if (rc < 0)
		log_error("cannot forget the VMs of %zu departed port(s): %s", d->nleft, strerror(-rc));
	else if (rc > 0)
		log_info("released the port binding of %d VM(s)", rc);
	d->nleft = 0;
}

static void imdsd_on_link(void *ctx, int ifindex, bool joined)
{
	struct imdsd *d = ctx;
	struct imdsd_port *p = imdsd_find_port(d, ifindex);

	if (joined && !p)
		imdsd_port_joined(d, ifindex);
	else if (!joined && p)
		imdsd_port_left(d, p);
}

/* Bindings to ports that are not on the bridge now (they left while no
 * imdsd watched, or while events were lost) are released with their
 * connections and hop marks; pinned VMs bind again when their port joins. */
static void imdsd_release_absent(struct imdsd *d, const int *list, size_t n)
{
	static uint32_t present[IMDSD_MAX_PORTS];
	int rc;

	for (size_t i = 0; i < n; i++)
		present[i] = (uint32_t)list[i];
	rc = store_lock(&d->store);
	if (rc == 0) {
		rc = store_release_absent(&d->store, present, n);
		store_unlock(&d->store);
	}
	if (rc < 0)
		log_error("cannot release bindings to absent ports: %s", strerror(-rc));
	else if (rc > 0)
		log_info("released the port binding of %d VM(s) whose port is gone", rc);
}

/* Brings the known set in line with a fresh port list: at start, and after
 * the monitor socket overflowed and events were lost.  Ports listed are
 * stamped with this round; known ports left unstamped have gone. */
static int imdsd_sync_ports(struct imdsd *d)
{
	static int list[IMDSD_MAX_PORTS];
	size_t n = 0;
	int rc;

	rc = nl_bridge_ports(d->bridge, list, IMDSD_MAX_PORTS, &n);
	if (rc < 0 && rc != -ENOSPC)
		return rc;
	d->sync_round++;
	for (size_t j = 0; j < n; j++) {
		struct imdsd_port *p = imdsd_find_port(d, list[j]);

		if (p)
			p->seen = d->sync_round;
	}
	/* Departed ports go first, so they do not count against the limit
	 * when the new ones join. */
	for (size_t i = 0; i < IMDSD_PORT_SLOTS; i++) {
		/* A removal may shift a later entry into slot i: look again. */
		while (d->ports[i].ifindex && d->ports[i].seen != d->sync_round)
			imdsd_port_left(d, &d->ports[i]);
	}
	imdsd_flush_left(d);
	imdsd_release_absent(d, list, n);
	for (size_t j = 0; j < n; j++)
		imdsd_port_joined(d, list[j]); /* known ones are skipped */
	return 0;
}

/* ---- start and stop ---- */

/* Every connection is a descriptor, and a soft limit of 1024 (the usual
 * default) would let a few VMs take them all: the soft limit goes up to
 * the hard one, which an unprivileged process may do.  The server keeps
 * its total cap below what is left (docs/limits.md, "Descriptors"). */
static void imdsd_raise_nofile(void)
{
	struct rlimit rl;
	rlim_t soft;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0) {
		log_error("RLIMIT_NOFILE: %s", strerror(errno));
		return;
	}
	soft = rl.rlim_cur;
	rl.rlim_cur = rl.rlim_max;
	if (soft != rl.rlim_max && setrlimit(RLIMIT_NOFILE, &rl) < 0) {
		log_warn("RLIMIT_NOFILE: cannot raise the soft limit %llu to the hard limit %llu: %s",
			(unsigned long long)soft, (unsigned long long)rl.rlim_max, strerror(errno));
		return;
	}
	log_info("open files: soft limit %llu, hard limit %llu: using %llu", (unsigned long long)soft,
		(unsigned long long)rl.rlim_max, (unsigned long long)rl.rlim_max);
}

static int imdsd_block_signals(struct imdsd *d)
{
	sigset_t set;

	/* Blocked before any thread starts, so the workers inherit the mask
	 * and the signals are only ever read from the signalfd. */
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	if (pthread_sigmask(SIG_BLOCK, &set, NULL) != 0)
		return -EINVAL;
	signal(SIGPIPE, SIG_IGN);
	d->sig_fd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
	return d->sig_fd < 0 ? -errno : 0;
}

static int imdsd_open_store(struct imdsd *d, uint8_t key[IMDS_TOKEN_KEY_LEN])
{
	char err[IMDSD_ERR_LEN] = "";
	int rc;

	rc = store_open(&d->store, d->pin_dir, STORE_PROGRAMS | (d->first_use_all ? STORE_FIRST_USE_ALL : 0), err,
			sizeof(err));
	if (rc < 0) {
		log_error("%s: %s", d->pin_dir, err[0] ? err : strerror(-rc));
		return rc;
	}
	d->store_ready = true;
	rc = store_token_key(&d->store, key);
	if (rc < 0)
		log_error("token key: %s", strerror(-rc));
	return rc;
}

static int imdsd_find_bridge(struct imdsd *d)
{
	char kind[32] = "";
	int ifindex = nl_ifindex(d->bridge_name);

	if (ifindex < 0 || nl_link_kind(ifindex, kind, sizeof(kind)) < 0 || strcmp(kind, "bridge") != 0) {
		log_error("no bridge named %s", d->bridge_name);
		return -ENODEV;
	}
	d->bridge = ifindex;
	return 0;
}

static int imdsd_add_address(struct imdsd *d)
{
	int rc = nl_addr_add(d->bridge, IMDSD_ADDR_BE, 32);

	if (rc == -EEXIST)
		return 0; /* somebody else's: left in place on exit */
	if (rc < 0) {
		log_error("cannot add 169.254.169.254/32 to %s: %s", d->bridge_name, strerror(-rc));
		return rc;
	}
	d->added_addr = true;
	return 0;
}

static int imdsd_start_server(struct imdsd *d, const uint8_t key[IMDS_TOKEN_KEY_LEN])
{
	struct server_config cfg = {
		.store = &d->store,
		.addr_be = IMDSD_ADDR_BE,
		.port = IMDS_TCP_PORT,
		.workers = d->workers,
		.idle_timeout_ms = d->idle_timeout_ms,
		.header_timeout_ms = d->header_timeout_ms,
		.max_conns_total = (unsigned)d->max_conns_total,
	};
	unsigned total;
	int rc;

	memcpy(cfg.token_key, key, IMDS_TOKEN_KEY_LEN);
	rc = server_start(&d->srv, &cfg);
	if (rc < 0) {
		log_error("cannot serve on 169.254.169.254:%d: %s", IMDS_TCP_PORT, strerror(-rc));
		return rc;
	}
	total = server_max_conns_total(d->srv);
	if (d->max_conns_total && total < (unsigned)d->max_conns_total)
		log_warn("--max-connections-total %d is more than the open-file limit allows: %u",
			d->max_conns_total, total);
	log_info("at most %u connections at once (all VMs), header timeout %d ms, idle timeout %d ms",
		total, d->header_timeout_ms, d->idle_timeout_ms);
	return 0;
}

/* /healthz's question to imdsd (the admin thread asks): is the data plane
 * on every port of the bridge? */
static int imdsd_health(void *ctx, char *why, size_t len)
{
	struct imdsd *d = ctx;
	unsigned failed = __atomic_load_n(&d->ports_unattached, __ATOMIC_RELAXED);

	if (!failed)
		return 0;
	snprintf(why, len, "the data plane is not attached to %u port(s) of %s (see the log)", failed,
		 d->bridge_name);
	return -1;
}

static int imdsd_start_admin(struct imdsd *d)
{
	struct admin_config cfg = {
		.addr = d->metrics_set ? &d->metrics_addr : NULL,
		.srv = d->srv,
		.store = &d->store,
		.health = imdsd_health,
		.health_ctx = d,
	};
	char err[256] = "";
	int rc = admin_start(&d->admin, &cfg, err, sizeof(err));

	if (rc < 0)
		log_error("--metrics: cannot serve metrics: %s", err);
	else if (d->metrics_set && d->metrics_addr.is_unix)
		log_info("metrics on unix:%s", d->metrics_addr.path);
	else if (d->metrics_set)
		log_info("metrics on %s:%u", inet_ntoa((struct in_addr){ d->metrics_addr.addr_be }),
			 d->metrics_addr.port);
	return rc;
}

static int imdsd_start(struct imdsd *d)
{
	uint8_t key[IMDS_TOKEN_KEY_LEN];
	int rc;

	d->ports = calloc(IMDSD_PORT_SLOTS, sizeof(*d->ports));
	d->left = calloc(IMDSD_PORT_SLOTS, sizeof(*d->left));
	if (!d->ports || !d->left)
		return -ENOMEM;
	rc = imdsd_block_signals(d);
	if (rc == 0)
		rc = imdsd_open_store(d, key);
	if (rc == 0)
		rc = imdsd_find_bridge(d);
	if (rc == 0)
		rc = imdsd_add_address(d);
	if (rc == 0) {
		/* Subscribe before listing, so a port that joins in between
		 * is not missed (a duplicate is absorbed by the known set). */
		d->nl_fd = nl_monitor_open();
		rc = d->nl_fd < 0 ? d->nl_fd : imdsd_sync_ports(d);
		if (rc < 0)
			log_error("cannot list the ports of %s: %s", d->bridge_name, strerror(-rc));
	}
	if (rc == 0)
		rc = imdsd_start_server(d, key);
	if (rc == 0)
		rc = imdsd_start_admin(d);
	memset(key, 0, sizeof(key));
	return rc;
}

static void imdsd_stop(struct imdsd *d)
{
	int rc;

	admin_stop(d->admin); /* it reads the server's counters */
	d->admin = NULL;
	server_stop(d->srv);
	d->srv = NULL;
	for (size_t i = 0; d->ports && i < IMDSD_PORT_SLOTS; i++)
		if (d->ports[i].ifindex && d->ports[i].attached)
			dataplane_detach(&d->store, d->ports[i].ifindex);
	d->nports = 0;
	if (d->added_addr) {
		rc = nl_addr_del(d->bridge, IMDSD_ADDR_BE, 32);
		if (rc < 0)
			log_error("cannot remove 169.254.169.254/32: %s", strerror(-rc));
	}
	if (d->store_ready)
		store_close(&d->store);
	if (d->nl_fd >= 0)
		close(d->nl_fd);
	if (d->sig_fd >= 0)
		close(d->sig_fd);
	free(d->ports);
	free(d->left);
}

/* ---- control loop ---- */

static int imdsd_run(struct imdsd *d)
{
	struct pollfd fds[2] = { { .fd = d->sig_fd, .events = POLLIN }, { .fd = d->nl_fd, .events = POLLIN } };
	struct signalfd_siginfo si;
	int rc;

	for (;;) {
		if (poll(fds, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			rc = -errno;
			log_error("poll: %s", strerror(-rc));
			return rc;
		}
		if (fds[0].revents && read(d->sig_fd, &si, sizeof(si)) == sizeof(si)) {
			log_always(LOG_LEVEL_INFO, "%s, stopping", strsignal((int)si.ssi_signo));
			return 0;
		}
		if (!fds[1].revents)
			continue;
		rc = nl_monitor_read(d->nl_fd, d->bridge, imdsd_on_link, d);
		imdsd_flush_left(d);
		if (rc == -ENOBUFS) {
			log_warn("link events were lost, re-reading the ports");
			rc = imdsd_sync_ports(d);
		}
		if (rc < 0)
			log_error("link events: %s", strerror(-rc));
	}
}

int main(int argc, char **argv)
{
	struct imdsd d = {
		.pin_dir = IMDS_DEFAULT_PIN_DIR,
		.workers = 2,
		.idle_timeout_ms = 10000,
		.header_timeout_ms = 5000,
		.ingress = DATAPLANE_INGRESS_TC,
		.sig_fd = -1,
		.nl_fd = -1,
	};
	int rc;

	log_init("imdsd");
	rc = imdsd_parse_args(&d, argc, argv);
	if (rc)
		return rc;
	imdsd_raise_nofile();
	rc = imdsd_start(&d);
	if (rc == 0) {
		log_always(LOG_LEVEL_INFO, "ready");
		rc = imdsd_run(&d);
	}
	imdsd_stop(&d);
	return rc == 0 ? 0 : 1;
}

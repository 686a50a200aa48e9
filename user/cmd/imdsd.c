/* imdsd.c: the metadata daemon.  Opens the pinned store with the data-plane
 * programs and claims it (one imdsd per store), puts the metadata address
 * on every served bridge, attaches the data plane (the ingress check, at
 * TC ingress by default or at XDP, and TC egress) to their ports (and to
 * bridges and ports that appear later: ports/watch.c), serves HTTP with the
 * io_uring server, and undoes its own changes on SIGINT/SIGTERM.  Pinned
 * maps stay: a restarted imdsd finds every VM and the same token key. */
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
#include "lib/namelist.h"
#include "ports/dataplane.h"
#include "imds.h"
#include "ports/watch.h"
#include "serve/admin.h"
#include "serve/server.h"
#include "store/store.h"

#define IMDSD_ERR_LEN 512
/* IMDS_IPV4_ADDR is in host order (0xA9FEA9FE is not a byte palindrome). */
#define IMDSD_ADDR_BE htonl(IMDS_IPV4_ADDR)

struct imdsd {
	/* options */
	struct namelist bridges; /* --bridge, each a list of names and patterns */
	const char *pin_dir;
	int workers;
	int idle_timeout_ms;
	int header_timeout_ms; /* --header-timeout */
	int max_conns_total;   /* --max-connections-total, 0 = from RLIMIT_NOFILE */
	enum dataplane_ingress ingress; /* --ingress */
	enum dataplane_tc_attach tc_attach; /* --tc-attach */
	bool xdp_mode_set;		/* --xdp-mode given: needs --ingress xdp */
	bool first_use_all;		/* --bind-first-use */
	struct admin_addr metrics_addr; /* --metrics */
	bool metrics_set;
	/* state */
	struct store store;
	bool store_ready;
	int claim_fd; /* store_claim's lock, held while we run */
	struct watch *watch;
	struct server *srv;
	struct admin *admin;	     /* the metrics endpoint and the per-VM event log */
	int sig_fd;
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
	OPT_TC_ATTACH,
	OPT_FIRST_USE,
	OPT_LOG_LEVEL,
	OPT_METRICS,
};

static const struct cli_option imdsd_options[] = {
	[OPT_BRIDGE] = { "bridge", 'b', "LIST",
			 "bridges whose ports carry the VMs: names or patterns (virbr*), separated by commas or "
			 "spaces; repeatable; at least one (docs/ports.md)" },
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
	[OPT_TC_ATTACH] = { "tc-attach", 0, "HOW",
			    "how the TC programs go on the ports: auto (TCX links on Linux 6.6+, else cls_bpf; "
			    "default), tcx or cls (docs/ports.md)" },
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
	"--bridge LIST [--bridge LIST...] [--pin-dir DIR] [--workers N] [--idle-timeout MS] [--header-timeout MS] "
	"[--max-connections-total N] [--xdp-mode MODE] [--ingress HOOK] [--tc-attach HOW] [--bind-first-use] [--log-level LEVEL] [--metrics ADDR]";

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

/* The index of `text` among the three names of an option's choices, or -1
 * with the usage error printed. */
static int imdsd_parse_choice(const char *option, const char *text, const char *const names[3])
{
	for (int i = 0; i < 3; i++)
		if (strcmp(text, names[i]) == 0)
			return i;
	fprintf(stderr, "imdsd: --%s: \"%s\" is not %s, %s or %s\n", option, text, names[0], names[1], names[2]);
	return -1;
}

static int imdsd_parse_xdp_mode(const char *text)
{
	static const char *const names[3] = {
		[DATAPLANE_XDP_AUTO] = "auto",
		[DATAPLANE_XDP_NATIVE] = "native",
		[DATAPLANE_XDP_GENERIC] = "generic",
	};
	int i = imdsd_parse_choice("xdp-mode", text, names);

	if (i >= 0)
		dataplane_set_xdp_mode((enum dataplane_xdp_mode)i);
	return i < 0 ? -1 : 0;
}

static int imdsd_parse_tc_attach(struct imdsd *d, const char *text)
{
	static const char *const names[3] = {
		[DATAPLANE_TC_AUTO] = "auto",
		[DATAPLANE_TC_TCX] = "tcx",
		[DATAPLANE_TC_CLS] = "cls",
	};
	int i = imdsd_parse_choice("tc-attach", text, names);

	if (i >= 0)
		d->tc_attach = (enum dataplane_tc_attach)i;
	return i < 0 ? -1 : 0;
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

static int imdsd_add_bridges(struct imdsd *d, const char *list)
{
	char err[IMDSD_ERR_LEN];

	if (namelist_add(&d->bridges, list, err, sizeof(err)) == 0)
		return 0;
	fprintf(stderr, "imdsd: --bridge: %s\n", err);
	return -1;
}

static int imdsd_on_option(void *ctx, int index, const char *arg)
{
	struct imdsd *d = ctx;

	switch (index) {
	case OPT_BRIDGE:
		return imdsd_add_bridges(d, arg);
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
	case OPT_TC_ATTACH:
		return imdsd_parse_tc_attach(d, arg);
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
	if (optind_ < argc || d->bridges.n == 0) {
		fprintf(stderr, "imdsd: %s\n",
			optind_ < argc ? "unexpected argument" : "--bridge is required (and names no bridge when empty)");
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

/* One imdsd per store and per address: a second one would attach its own
 * programs to the same ports and share 169.254.169.254:80 with the first
 * through SO_REUSEPORT (docs/ports.md, "Several bridges").  Checked before
 * anything is attached or added, so a refused imdsd changes nothing. */
static int imdsd_claim(struct imdsd *d)
{
	int holder = 0, rc = store_claim(&d->store, &d->claim_fd, &holder);

	if (rc == -EBUSY) {
		log_error("another imdsd (PID %d) already serves the store %s; one imdsd serves every bridge of a "
			  "host (--bridge A,B)", holder, d->pin_dir);
		return rc;
	}
	if (rc < 0) {
		log_error("%s: cannot take the lock %s/imdsd-lock: %s", d->pin_dir, d->pin_dir, strerror(-rc));
		return rc;
	}
	rc = server_address_free(IMDSD_ADDR_BE, IMDS_TCP_PORT, &holder);
	if (rc == -EADDRINUSE)
		log_error("169.254.169.254:%d is already served in this network namespace by PID %d (another imdsd, "
			  "with another --pin-dir?); one imdsd serves every bridge of a host", IMDS_TCP_PORT, holder);
	else if (rc < 0)
		log_error("cannot bind 169.254.169.254:%d: %s", IMDS_TCP_PORT, strerror(-rc));
	return rc;
}

static int imdsd_watch(struct imdsd *d)
{
	struct watch_config cfg = {
		.store = &d->store,
		.bridges = &d->bridges,
		.addr_be = IMDSD_ADDR_BE,
		.ingress = d->ingress,
	};
	char err[IMDSD_ERR_LEN];
	int rc = dataplane_set_tc_attach(d->tc_attach, err, sizeof(err));

	if (rc < 0) {
		log_error("%s", err);
		return rc;
	}
	if (err[0])
		log_warn("%s", err);
	log_info("TC programs go on the ports as %s", strcmp(dataplane_tc_attach_name(), "tcx") == 0 ?
						       "TCX links (pinned)" : "cls_bpf filters");
	return watch_start(&d->watch, &cfg);
}

static int imdsd_start_server(struct imdsd *d, const uint8_t key[IMDS_TOKEN_KEY_LEN])
{
	struct server_config cfg = {
		.store = &d->store,
		.addr_be = IMDSD_ADDR_BE,
		.port = IMDS_TCP_PORT,
		.ipv6 = true, /* docs/ipv6.md: beside IPv4 whenever the host has IPv6 */
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
		log_error("cannot serve on 169.254.169.254:%d%s: %s", IMDS_TCP_PORT,
			  " and [" IMDS_IPV6_ADDR_TEXT "]", strerror(-rc));
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
 * on every port of the served bridges? */
static int imdsd_health(void *ctx, char *why, size_t len)
{
	struct imdsd *d = ctx;
	unsigned failed = watch_unattached(d->watch);

	if (!failed)
		return 0;
	snprintf(why, len, "the data plane is not attached to %u port(s) of the served bridges (see the log)",
		 failed);
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

	rc = imdsd_block_signals(d);
	if (rc == 0)
		rc = imdsd_open_store(d, key);
	if (rc == 0)
		rc = imdsd_claim(d);
	if (rc == 0)
		rc = imdsd_watch(d);
	if (rc == 0)
		rc = imdsd_start_server(d, key);
	if (rc == 0)
		rc = imdsd_start_admin(d);
	memset(key, 0, sizeof(key));
	return rc;
}

static void imdsd_stop(struct imdsd *d)
{
	admin_stop(d->admin); /* it reads the server's counters */
	d->admin = NULL;
	server_stop(d->srv);
	d->srv = NULL;
	watch_stop(d->watch);
	d->watch = NULL;
	if (d->store_ready)
		store_close(&d->store);
	if (d->claim_fd >= 0)
		close(d->claim_fd); /* last: the next imdsd may start */
	if (d->sig_fd >= 0)
		close(d->sig_fd);
}

/* ---- control loop ---- */

static int imdsd_run(struct imdsd *d)
{
	struct pollfd fds[2] = { { .fd = d->sig_fd, .events = POLLIN }, { .fd = watch_fd(d->watch), .events = POLLIN } };
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
		if (fds[1].revents)
			watch_events(d->watch);
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
		.tc_attach = DATAPLANE_TC_AUTO,
		.sig_fd = -1,
		.claim_fd = -1,
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

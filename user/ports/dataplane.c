/* dataplane.c: puts the data-plane programs (loaded by store_open) on
 * bridge ports and takes them off again.
 *
 * The ingress check of what a VM sends is imds_tc_ingress on the port's TC
 * ingress hook by default, or imds_xdp (--ingress xdp).  TC ingress is the
 * default because it reads the skb in place; XDP on veth and TAP ports
 * copies or de-segments bulk traffic that is not ours (docs/ports.md).  A
 * port carries at most one XDP program per mode, so attaching XDP must not
 * clobber somebody else's: every attach is either "only if nothing is
 * there" or "replace exactly this program".
 *
 * Each port also gets imds_tc_egress on its TC egress hook (the hop limit
 * of token replies: frames the bridge sends toward the VM leave through the
 * port's egress).  The TC programs go on as TCX links where the kernel has
 * them (tcx.c: pinned, so a stale link from a killed imdsd is taken over
 * in place) or as cls_bpf filters on a clsact qdisc (--tc-attach cls).
 * Our TC filters sit at a handle and priority of our own, so a stale copy
 * from a killed imdsd is replaced in place, never doubled, and other TC
 * filters on the port are left alone.  Whichever way a port is attached,
 * our copy attached the other way is removed once the new one is on. */
#include "ports/dataplane.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <stdbool.h>
#include <linux/if_link.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "imds.skel.h"
#include "ports/netlink.h"
#include "ports/tcx.h"

#define DATAPLANE_PROG_NAME "imds_xdp"
#define DATAPLANE_TC_NAME "imds_tc_egress"
#define DATAPLANE_TC_INGRESS_NAME "imds_tc_ingress"
/* Our filters' place on the clsact hooks: "imds" in ASCII as handle, and a
 * priority (49621) low enough that they run after filters added by hand. */
#define DATAPLANE_TC_HANDLE 0x696d6473u
#define DATAPLANE_TC_PRIO 0xc1d5u

/* The program attached to a port in one mode, as the kernel reports it. */
struct dataplane_slot {
	__u32 id;
	__u32 mode_flag; /* XDP_FLAGS_DRV_MODE or XDP_FLAGS_SKB_MODE */
	char kind[32];	 /* the link's kind: "veth", "tun", ... */
};

static int dataplane_our_fd(const struct store *s)
{
	return s->skel ? bpf_program__fd(s->skel->progs.imds_xdp) : -EINVAL;
}

static int dataplane_prog_info(int fd, struct bpf_prog_info *info)
{
	__u32 len = sizeof(*info);

	memset(info, 0, sizeof(*info));
	return bpf_obj_get_info_by_fd(fd, info, &len) ? -errno : 0;
}

/* The program on the port: native first (what we try first), then generic.
 * 0 with slot->id == 0 when none is attached. */
static int dataplane_current(int ifindex, struct dataplane_slot *slot)
{
	struct nl_xdp q;
	int rc = nl_xdp_query(ifindex, &q);

	memset(slot, 0, sizeof(*slot));
	if (rc < 0)
		return rc;
	snprintf(slot->kind, sizeof(slot->kind), "%s", q.kind);
	if (q.drv_id) {
		slot->id = q.drv_id;
		slot->mode_flag = XDP_FLAGS_DRV_MODE;
	} else if (q.skb_id) {
		slot->id = q.skb_id;
		slot->mode_flag = XDP_FLAGS_SKB_MODE;
	} else if (q.hw_id) {
		slot->id = q.hw_id;
		slot->mode_flag = XDP_FLAGS_HW_MODE;
	}
	return 0;
}

/* Replaces an earlier imdsd's program (same name, another instance) in the
 * mode it was attached with; XDP_FLAGS_REPLACE makes the kernel check that
 * it is still that program, so a concurrent change is not overwritten. */
static int dataplane_replace(int ifindex, int our_fd, const struct dataplane_slot *cur, char *err, size_t errlen)
{
	LIBBPF_OPTS(bpf_xdp_attach_opts, opts);
	int old_fd, rc;

	old_fd = bpf_prog_get_fd_by_id(cur->id);
	if (old_fd < 0) {
		rc = -errno;
		snprintf(err, errlen, "cannot open attached program id %u: %s", cur->id, strerror(-rc));
		return rc;
	}
	opts.old_prog_fd = old_fd;
	rc = bpf_xdp_attach(ifindex, our_fd, XDP_FLAGS_REPLACE | cur->mode_flag, &opts);
	if (rc < 0)
		snprintf(err, errlen, "cannot replace stale %s (id %u): %s", DATAPLANE_PROG_NAME, cur->id,
			 strerror(-rc));
	close(old_fd);
	return rc;
}

/* Decides what to do about a program that is already on the port. */
static int dataplane_take_over(int ifindex, int our_fd, const struct dataplane_slot *cur, char *err, size_t errlen)
{
	struct bpf_prog_info ours, theirs;
	int fd, rc;

	rc = dataplane_prog_info(our_fd, &ours);
	if (rc < 0) {
		snprintf(err, errlen, "cannot read our program's info: %s", strerror(-rc));
		return rc;
	}
	if (ours.id == cur->id)
		return 0;
	fd = bpf_prog_get_fd_by_id(cur->id);
	if (fd < 0) {
		rc = -errno;
		snprintf(err, errlen, "XDP program id %u is attached and cannot be inspected: %s", cur->id,
			 strerror(-rc));
		return rc;
	}
	rc = dataplane_prog_info(fd, &theirs);
	close(fd);
	if (rc < 0) {
		snprintf(err, errlen, "XDP program id %u is attached and cannot be inspected: %s", cur->id,
			 strerror(-rc));
		return rc;
	}
	if (strcmp(theirs.name, DATAPLANE_PROG_NAME) != 0) {
		snprintf(err, errlen, "another XDP program is attached: \"%s\" (id %u)", theirs.name, cur->id);
		return -EBUSY;
	}
	return dataplane_replace(ifindex, our_fd, cur, err, errlen);
}

/* One attempt: take over what is there, or attach where nothing is.
 * -EAGAIN when a program appeared between the query and the attach. */
static enum dataplane_xdp_mode dataplane_xdp_mode = DATAPLANE_XDP_AUTO;

void dataplane_set_xdp_mode(enum dataplane_xdp_mode mode)
{
	dataplane_xdp_mode = mode;
}

/* The XDP mode to try first on a port of this kind. */
static __u32 dataplane_first_mode(const char *kind)
{
	switch (dataplane_xdp_mode) {
	case DATAPLANE_XDP_NATIVE:
		return XDP_FLAGS_DRV_MODE;
	case DATAPLANE_XDP_GENERIC:
		return XDP_FLAGS_SKB_MODE;
	default:
		/* veth's native XDP turns GSO off on the peer (the VM side) for
		 * as long as a program is attached, so every TCP segment the
		 * VM sends crosses the bridge alone: bulk traffic loses about
		 * two thirds of its throughput (docs/ports.md).  Generic mode
		 * leaves the peer alone. */
		return strcmp(kind, "veth") == 0 ? XDP_FLAGS_SKB_MODE : XDP_FLAGS_DRV_MODE;
	}
}

static int dataplane_try_attach(int ifindex, int our_fd, char *err, size_t errlen)
{
	struct dataplane_slot cur;
	__u32 first, other;
	int rc;

	rc = dataplane_current(ifindex, &cur);
	if (rc < 0) {
		snprintf(err, errlen, "cannot query XDP state: %s", strerror(-rc));
		return rc;
	}
	if (cur.id)
		return dataplane_take_over(ifindex, our_fd, &cur, err, errlen);
	/* UPDATE_IF_NOEXIST: if somebody attached a program since the query,
	 * the kernel fails with -EBUSY instead of replacing it. */
	first = dataplane_first_mode(cur.kind);
	other = first == XDP_FLAGS_DRV_MODE ? XDP_FLAGS_SKB_MODE : XDP_FLAGS_DRV_MODE;
	rc = bpf_xdp_attach(ifindex, our_fd, XDP_FLAGS_UPDATE_IF_NOEXIST | first, NULL);
	if (rc == 0)
		return 0;
	if (rc == -EBUSY || rc == -EEXIST)
		return -EAGAIN;
	/* The driver has no native XDP (or refuses this program): generic
	 * mode runs the same program on the skb path. */
	rc = bpf_xdp_attach(ifindex, our_fd, XDP_FLAGS_UPDATE_IF_NOEXIST | other, NULL);
	if (rc == -EBUSY || rc == -EEXIST)
		return -EAGAIN;
	if (rc < 0)
		snprintf(err, errlen, "cannot attach XDP (native or generic): %s", strerror(-rc));
	return rc;
}

/* ---- TC: egress (the hop limit) and ingress (the default check) ---- */

/* One of our places on a port's clsact hooks. */
struct dataplane_tc_place {
	enum bpf_tc_attach_point point;
	const char *prog_name; /* the only program allowed at the place */
	const char *what;      /* for messages */
};

static const struct dataplane_tc_place dataplane_tc_egress = { BPF_TC_EGRESS, DATAPLANE_TC_NAME, "TC egress" };
static const struct dataplane_tc_place dataplane_tc_ingress = { BPF_TC_INGRESS, DATAPLANE_TC_INGRESS_NAME,
								 "TC ingress" };

static int dataplane_tc_fd(const struct store *s, const struct dataplane_tc_place *place)
{
	if (!s->skel)
		return -EINVAL;
	return bpf_program__fd(place->point == BPF_TC_EGRESS ? s->skel->progs.imds_tc_egress :
							       s->skel->progs.imds_tc_ingress);
}

/* The program at our handle/priority on the hook: 0 with *id set, 0 with
 * *id == 0 when the place is free, or -errno. */
static int dataplane_tc_current(struct bpf_tc_hook *hook, __u32 *id)
{
	LIBBPF_OPTS(bpf_tc_opts, q, .handle = DATAPLANE_TC_HANDLE, .priority = DATAPLANE_TC_PRIO);
	int rc = bpf_tc_query(hook, &q);

	*id = 0;
	/* The kernel answers -EINVAL ("Cannot find specified filter chain")
	 * while no filter at all hangs on the hook at this priority. */
	if (rc == -ENOENT || rc == -EINVAL)
		return 0;
	if (rc < 0)
		return rc;
	*id = q.prog_id;
	return 0;
}

/* Our place may only hold our program (this instance's or a stale one). */
static int dataplane_tc_check_place(struct bpf_tc_hook *hook, const struct dataplane_tc_place *place, char *err,
				    size_t errlen)
{
	struct bpf_prog_info info;
	__u32 id;
	int fd, rc;

	rc = dataplane_tc_current(hook, &id);
	if (rc < 0) {
		snprintf(err, errlen, "cannot query %s: %s", place->what, strerror(-rc));
		return rc;
	}
	if (id == 0)
		return 0;
	fd = bpf_prog_get_fd_by_id(id);
	if (fd < 0) {
		rc = -errno;
		snprintf(err, errlen, "%s program id %u cannot be inspected: %s", place->what, id, strerror(-rc));
		return rc;
	}
	rc = dataplane_prog_info(fd, &info);
	close(fd);
	if (rc == 0 && strcmp(info.name, place->prog_name) != 0) {
		snprintf(err, errlen, "another %s program (\"%s\", id %u) uses our handle", place->what, info.name, id);
		rc = -EBUSY;
	}
	return rc;
}

/* libbpf prints the kernel's "Exclusivity flag on, cannot modify" when the
 * clsact qdisc already exists, i.e. for every port on every restart; that
 * case is expected and any other failure is reported by the caller, so
 * libbpf is kept quiet for this one call. */
static int dataplane_tc_hook_create(struct bpf_tc_hook *hook)
{
	libbpf_print_fn_t saved = libbpf_set_print(NULL);
	int rc = bpf_tc_hook_create(hook);

	libbpf_set_print(saved);
	return rc;
}

static int dataplane_cls_attach(struct store *s, int ifindex, const struct dataplane_tc_place *place, char *err,
				size_t errlen)
{
	LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = ifindex, .attach_point = place->point);
	LIBBPF_OPTS(bpf_tc_opts, opts, .handle = DATAPLANE_TC_HANDLE, .priority = DATAPLANE_TC_PRIO,
		    .flags = BPF_TC_F_REPLACE);
	int rc;

	opts.prog_fd = dataplane_tc_fd(s, place);
	if (opts.prog_fd < 0) {
		snprintf(err, errlen, "the %s program is not loaded", place->what);
		return -EINVAL;
	}
	/* The clsact qdisc may already exist (ours from an earlier run, or
	 * somebody else's): either way the hook is there to use. */
	rc = dataplane_tc_hook_create(&hook);
	if (rc < 0 && rc != -EEXIST) {
		snprintf(err, errlen, "cannot create the %s hook: %s", place->what, strerror(-rc));
		return rc;
	}
	rc = dataplane_tc_check_place(&hook, place, err, errlen);
	if (rc < 0)
		return rc;
	rc = bpf_tc_attach(&hook, &opts);
	if (rc < 0)
		snprintf(err, errlen, "cannot attach %s: %s", place->what, strerror(-rc));
	return rc;
}

/* Removes the program at our place if it is ours (this run's or stale).
 * The clsact qdisc stays: other filters may hang on it. */
static int dataplane_cls_detach(int ifindex, const struct dataplane_tc_place *place)
{
	LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = ifindex, .attach_point = place->point);
	LIBBPF_OPTS(bpf_tc_opts, opts, .handle = DATAPLANE_TC_HANDLE, .priority = DATAPLANE_TC_PRIO);
	char err[8];
	__u32 id;
	int rc;

	rc = dataplane_tc_current(&hook, &id);
	if (rc < 0 || id == 0)
		return rc < 0 ? rc : -ENOENT;
	rc = dataplane_tc_check_place(&hook, place, err, sizeof(err));
	if (rc < 0)
		return rc;
	return bpf_tc_detach(&hook, &opts);
}

/* ---- TC: TCX link or cls_bpf filter ---- */

static enum dataplane_tc_attach dataplane_tc_how = DATAPLANE_TC_CLS;

/* Why the probe failed: a kernel without TCX, or a probe the kernel
 * refused (no CAP_NET_ADMIN or CAP_BPF, a seccomp filter...). */
static const char *dataplane_tcx_failure(int rc)
{
	return rc == -EOPNOTSUPP ? "this kernel has no TCX links (Linux 6.6 or later)" : "cannot query TCX links";
}

int dataplane_set_tc_attach(enum dataplane_tc_attach how, char *err, size_t errlen)
{
	int rc = how == DATAPLANE_TC_CLS ? 0 : tcx_probe();

	err[0] = '\0';
	if (rc < 0 && how == DATAPLANE_TC_TCX) {
		snprintf(err, errlen, "--tc-attach tcx: %s: %s", dataplane_tcx_failure(rc), strerror(-rc));
		return rc;
	}
	dataplane_tc_how = rc < 0 ? DATAPLANE_TC_CLS : how == DATAPLANE_TC_AUTO ? DATAPLANE_TC_TCX : how;
	if (rc < 0 && how == DATAPLANE_TC_AUTO)
		snprintf(err, errlen, "%s (%s): cls_bpf filters on clsact", dataplane_tcx_failure(rc), strerror(-rc));
	return 0;
}

const char *dataplane_tc_attach_name(void)
{
	return dataplane_tc_how == DATAPLANE_TC_TCX ? "tcx" : "cls";
}

/* The kernel's libbpf messages for a port without clsact are expected
 * when looking for a filter of ours that is not there. */
static int dataplane_cls_detach_quiet(int ifindex, const struct dataplane_tc_place *place)
{
	libbpf_print_fn_t saved = libbpf_set_print(NULL);
	int rc = dataplane_cls_detach(ifindex, place);

	libbpf_set_print(saved);
	return rc;
}

/* Our program at the place, the chosen way; then our copy attached the
 * other way (an earlier imdsd's, in the other mode) goes, so the port
 * never has none and ends with exactly one.  A copy that cannot be
 * removed is reported in err, and the attach still counts. */
static int dataplane_tc_attach(struct store *s, int ifindex, const struct dataplane_tc_place *place, char *err,
			       size_t errlen)
{
	bool ingress = place->point == BPF_TC_INGRESS;
	int rc, fd;

	if (dataplane_tc_how == DATAPLANE_TC_CLS) {
		rc = dataplane_cls_attach(s, ifindex, place, err, errlen);
		if (rc == 0)
			tcx_detach(s->pin_dir, ifindex, ingress);
		return rc;
	}
	fd = dataplane_tc_fd(s, place);
	if (fd < 0) {
		snprintf(err, errlen, "the %s program is not loaded", place->what);
		return -EINVAL;
	}
	rc = tcx_attach(s->pin_dir, ifindex, ingress, fd, err, errlen);
	if (rc < 0)
		return rc;
	rc = dataplane_cls_detach_quiet(ifindex, place);
	if (rc < 0 && rc != -ENOENT && !err[0])
		snprintf(err, errlen, "a cls_bpf filter of an earlier imdsd stays on %s: %s", place->what,
			 strerror(-rc));
	return 0;
}

/* Our copy at the place, however attached: 0, -ENOENT when there was
 * none, or -errno. */
static int dataplane_tc_detach(struct store *s, int ifindex, const struct dataplane_tc_place *place)
{
	int tcx = tcx_detach(s->pin_dir, ifindex, place->point == BPF_TC_INGRESS);
	int cls = dataplane_cls_detach_quiet(ifindex, place);

	if (tcx < 0 && tcx != -ENOENT)
		return tcx;
	if (cls < 0 && cls != -ENOENT)
		return cls;
	return tcx == 0 || cls == 0 ? 0 : -ENOENT;
}

int dataplane_sweep(struct store *s, bool (*attached)(void *ctx, int ifindex), void *ctx)
{
	return tcx_sweep(s->pin_dir, attached, ctx);
}

/* ---- the port as a whole ---- */

static int dataplane_xdp_attach(struct store *s, int ifindex, char *err, size_t errlen)
{
	int our_fd = dataplane_our_fd(s);
	int rc = -EAGAIN;

	if (our_fd < 0) {
		snprintf(err, errlen, "the data-plane program is not loaded");
		return -EINVAL;
	}
	for (int tries = 0; tries < 3 && rc == -EAGAIN; tries++)
		rc = dataplane_try_attach(ifindex, our_fd, err, errlen);
	if (rc == -EAGAIN) {
		snprintf(err, errlen, "the port's XDP program keeps changing");
		rc = -EBUSY;
	}
	return rc;
}

static int dataplane_xdp_detach(struct store *s, int ifindex);

static enum dataplane_ingress dataplane_ingress_hook = DATAPLANE_INGRESS_TC;

void dataplane_set_ingress(enum dataplane_ingress hook)
{
	dataplane_ingress_hook = hook;
}

/* With TC ingress, an XDP program on the port runs before ours.  A stale
 * imds_xdp (an imdsd in XDP mode that was killed) would check and charge
 * every packet a second time: it goes.  Anything else stays, and `note`
 * says it runs first. */
static int dataplane_xdp_clear_stale(int ifindex, char *note, size_t notelen)
{
	LIBBPF_OPTS(bpf_xdp_attach_opts, opts);
	struct dataplane_slot cur;
	struct bpf_prog_info info;
	int fd, rc;

	rc = dataplane_current(ifindex, &cur);
	if (rc < 0 || cur.id == 0)
		return rc;
	fd = bpf_prog_get_fd_by_id(cur.id);
	if (fd < 0)
		return 0; /* gone meanwhile */
	rc = dataplane_prog_info(fd, &info);
	if (rc == 0 && strcmp(info.name, DATAPLANE_PROG_NAME) == 0) {
		opts.old_prog_fd = fd;
		rc = bpf_xdp_detach(ifindex, XDP_FLAGS_REPLACE | cur.mode_flag, &opts);
	} else if (rc == 0) {
		snprintf(note, notelen, "XDP program \"%s\" (id %u) is attached and runs before imds; left in place",
			 info.name, cur.id);
	}
	close(fd);
	return rc;
}

/* The ingress check (XDP or TC ingress) and TC egress go on together or
 * not at all: a port whose token replies could not be hop-limited must
 * not be served either. */
int dataplane_attach(struct store *s, int ifindex, char *err, size_t errlen)
{
	bool tc = dataplane_ingress_hook == DATAPLANE_INGRESS_TC;
	int rc;

	err[0] = '\0';
	if (tc) {
		rc = dataplane_xdp_clear_stale(ifindex, err, errlen);
		if (rc == 0)
			rc = dataplane_tc_attach(s, ifindex, &dataplane_tc_ingress, err, errlen);
	} else {
		rc = dataplane_xdp_attach(s, ifindex, err, errlen);
	}
	if (rc < 0)
		return rc;
	rc = dataplane_tc_attach(s, ifindex, &dataplane_tc_egress, err, errlen);
	if (rc < 0 && tc)
		dataplane_tc_detach(s, ifindex, &dataplane_tc_ingress);
	else if (rc < 0)
		dataplane_xdp_detach(s, ifindex);
	else if (!tc) /* a stale TC ingress copy would check packets twice */
		dataplane_tc_detach(s, ifindex, &dataplane_tc_ingress);
	return rc;
}

/* Which XDP slot of `ifindex` holds our program: 0 with *cur and *our_fd,
 * -ENOENT when another program (or none) is attached there. */
static int dataplane_find_ours(struct store *s, int ifindex, struct dataplane_slot *cur, int *our_fd)
{
	struct bpf_prog_info ours;
	int rc;

	*our_fd = dataplane_our_fd(s);
	if (*our_fd < 0)
		return -EINVAL;
	rc = dataplane_prog_info(*our_fd, &ours);
	if (rc == 0)
		rc = dataplane_current(ifindex, cur);
	if (rc < 0)
		return rc;
	return cur->id == ours.id ? 0 : -ENOENT;
}

int dataplane_mode(struct store *s, int ifindex, const char **mode)
{
	struct dataplane_slot cur;
	int our_fd;
	int rc;

	*mode = "none";
	rc = dataplane_find_ours(s, ifindex, &cur, &our_fd);
	if (rc < 0)
		return rc;
	*mode = cur.mode_flag == XDP_FLAGS_DRV_MODE ? "native" : cur.mode_flag == XDP_FLAGS_SKB_MODE ? "generic" : "offload";
	return 0;
}

static int dataplane_xdp_detach(struct store *s, int ifindex)
{
	LIBBPF_OPTS(bpf_xdp_attach_opts, opts);
	struct dataplane_slot cur;
	int our_fd;
	int rc;

	rc = dataplane_find_ours(s, ifindex, &cur, &our_fd);
	if (rc < 0)
		return rc;
	/* REPLACE with our fd as the expected program: the kernel detaches
	 * only if ours is still the one attached in that mode. */
	opts.old_prog_fd = our_fd;
	return bpf_xdp_detach(ifindex, XDP_FLAGS_REPLACE | cur.mode_flag, &opts);
}

/* Every program of ours; -ENOENT only when none was there. */
int dataplane_detach(struct store *s, int ifindex)
{
	int rcs[3] = {
		dataplane_xdp_detach(s, ifindex),
		dataplane_tc_detach(s, ifindex, &dataplane_tc_ingress),
		dataplane_tc_detach(s, ifindex, &dataplane_tc_egress),
	};
	int rc = -ENOENT;

	for (int i = 0; i < 3; i++) {
		if (rcs[i] == 0 && rc == -ENOENT)
			rc = 0;
		else if (rcs[i] < 0 && rcs[i] != -ENOENT)
			rc = rcs[i];
	}
	return rc;
}

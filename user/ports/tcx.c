/* tcx.c: TCX links for the TC programs (tcx.h).
 *
 * A TCX link runs its program straight from the device's hook, without
 * the clsact qdisc's classifier walk (tcf_classify, cls_bpf_classify).  A
 * link lives as long as something holds it: a pin in bpffs keeps it on the
 * port after imdsd dies (a SIGKILL must not open the port to spoofed
 * traffic), and the next imdsd finds it by the pin's name, which carries
 * the port's ifindex and the hook.  A link whose device was deleted stays
 * as a pin of a defunct link (its ifindex reads 0) until it is unpinned. */
#include "ports/tcx.h"

#include <bpf/bpf.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* linux/bpf.h of Linux 6.6, which Debian 12's headers (linux-libc-dev 6.1)
 * and libbpf 1.1.2 predate.  Own names, since newer headers declare the
 * kernel's as enumerators, which cannot be tested with #ifdef.  libbpf 1.1
 * passes an attach type it does not know through to BPF_LINK_CREATE. */
#define TCX_ATTACH_INGRESS 46 /* BPF_TCX_INGRESS */
#define TCX_ATTACH_EGRESS 47  /* BPF_TCX_EGRESS */
#define TCX_LINK_TYPE 11      /* BPF_LINK_TYPE_TCX */

/* struct bpf_link_info as far as its tcx member (6.6): the kernel fills
 * no more than the length it is given. */
struct tcx_link_info {
	__u32 type, id, prog_id;
	__u32 pad; /* the union that follows is 8-byte aligned */
	__u32 ifindex, attach_type;
};

static __u32 tcx_attach_type(bool ingress)
{
	return ingress ? TCX_ATTACH_INGRESS : TCX_ATTACH_EGRESS;
}

int tcx_probe(void)
{
	__u32 count = 0;
	/* lo is ifindex 1 in every network namespace.  A kernel without TCX
	 * refuses the attach type with -EINVAL. */
	int rc = bpf_prog_query(1, (enum bpf_attach_type)TCX_ATTACH_INGRESS, 0, NULL, NULL, &count);

	if (rc == 0)
		return 0;
	return rc == -EINVAL ? -EOPNOTSUPP : rc;
}

static void tcx_path(char *buf, size_t len, const char *pin_dir, int ifindex, bool ingress)
{
	snprintf(buf, len, "%s/" TCX_LINK_DIR "/tcx-%d-%s", pin_dir, ifindex, ingress ? "ingress" : "egress");
}

static int tcx_mkdir(const char *pin_dir, char *err, size_t errlen)
{
	char dir[PATH_MAX];

	snprintf(dir, sizeof(dir), "%s/" TCX_LINK_DIR, pin_dir);
	if (mkdir(dir, 0700) == 0 || errno == EEXIST)
		return 0;
	snprintf(err, errlen, "cannot create %s: %s", dir, strerror(errno));
	return -errno;
}

static int tcx_info(int fd, struct tcx_link_info *info)
{
	__u32 len = sizeof(*info);

	memset(info, 0, sizeof(*info));
	return bpf_obj_get_info_by_fd(fd, info, &len) ? -errno : 0;
}

/* Our link pinned for that port and hook, moved to prog_fd: 0; -ENOENT
 * when there is none to take over (a pin of a link whose device is gone
 * is removed on the way); or -errno with err set. */
static int tcx_adopt(const char *path, int ifindex, bool ingress, int prog_fd, char *err, size_t errlen)
{
	struct tcx_link_info info;
	int fd = bpf_obj_get(path);
	int rc;

	if (fd < 0) {
		rc = -errno;
		if (rc != -ENOENT)
			snprintf(err, errlen, "cannot open the pinned link %s: %s", path, strerror(-rc));
		return rc;
	}
	rc = tcx_info(fd, &info);
	if (rc == 0 && info.type == TCX_LINK_TYPE && info.ifindex == (__u32)ifindex &&
	    info.attach_type == tcx_attach_type(ingress)) {
		/* The link keeps its place among the hook's programs. */
		rc = bpf_link_update(fd, prog_fd, NULL);
		if (rc < 0)
			snprintf(err, errlen, "cannot move the pinned link %s to this run's program: %s", path,
				 strerror(-rc));
		close(fd);
		return rc;
	}
	/* The port of that ifindex was deleted (a later one may have its
	 * number): the defunct link's pin goes. */
	close(fd);
	unlink(path);
	return -ENOENT;
}

static int tcx_create(const char *path, int ifindex, bool ingress, int prog_fd, char *err, size_t errlen)
{
	/* No relative place asked for: after the programs already there. */
	int fd = bpf_link_create(prog_fd, ifindex, (enum bpf_attach_type)tcx_attach_type(ingress), NULL);
	int rc;

	if (fd < 0) {
		snprintf(err, errlen, "cannot create a TCX %s link: %s", ingress ? "ingress" : "egress",
			 strerror(-fd));
		return fd;
	}
	rc = bpf_obj_pin(fd, path) ? -errno : 0;
	if (rc < 0) /* closing its only reference takes the link off again */
		snprintf(err, errlen, "cannot pin the TCX link at %s: %s", path, strerror(-rc));
	close(fd);
	return rc;
}

int tcx_attach(const char *pin_dir, int ifindex, bool ingress, int prog_fd, char *err, size_t errlen)
{
	char path[PATH_MAX];
	int rc = tcx_mkdir(pin_dir, err, errlen);

	if (rc < 0)
		return rc;
	tcx_path(path, sizeof(path), pin_dir, ifindex, ingress);
	rc = tcx_adopt(path, ifindex, ingress, prog_fd, err, errlen);
	if (rc == -ENOENT)
		rc = tcx_create(path, ifindex, ingress, prog_fd, err, errlen);
	return rc;
}

/* Detaches the link pinned at path (nothing to do when its device is
 * gone) and unpins it. */
static int tcx_remove(const char *path)
{
	int fd = bpf_obj_get(path);
	int rc;

	if (fd < 0)
		return -errno;
	rc = bpf_link_detach(fd) ? -errno : 0;
	close(fd);
	if (unlink(path) < 0)
		return -errno;
	return rc == -ENOLINK ? 0 : rc; /* -ENOLINK: already defunct */
}

int tcx_detach(const char *pin_dir, int ifindex, bool ingress)
{
	char path[PATH_MAX];

	tcx_path(path, sizeof(path), pin_dir, ifindex, ingress);
	return tcx_remove(path);
}

/* The ifindex in a pin's name, or 0 when the name is not one of ours. */
static int tcx_pin_ifindex(const char *name)
{
	int ifindex = 0, end = 0;

	if (sscanf(name, "tcx-%d-ingress%n", &ifindex, &end) == 1 && name[end] == '\0' && end)
		return ifindex;
	end = 0;
	if (sscanf(name, "tcx-%d-egress%n", &ifindex, &end) == 1 && name[end] == '\0' && end)
		return ifindex;
	return 0;
}

/* The link's device is still there (its ifindex did not read 0). */
static bool tcx_alive(const char *path)
{
	struct tcx_link_info info;
	int fd = bpf_obj_get(path);
	bool alive;

	if (fd < 0)
		return false;
	alive = tcx_info(fd, &info) == 0 && info.ifindex != 0;
	close(fd);
	return alive;
}

int tcx_sweep(const char *pin_dir, bool (*keep)(void *ctx, int ifindex), void *ctx)
{
	char dir[PATH_MAX], path[PATH_MAX + 256];
	struct dirent *e;
	int removed = 0;
	DIR *d;

	snprintf(dir, sizeof(dir), "%s/" TCX_LINK_DIR, pin_dir);
	d = opendir(dir);
	if (!d)
		return errno == ENOENT ? 0 : -errno;
	while ((e = readdir(d))) {
		int ifindex = tcx_pin_ifindex(e->d_name);

		if (ifindex <= 0)
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		if (tcx_alive(path) && keep(ctx, ifindex))
			continue;
		if (tcx_remove(path) == 0)
			removed++;
	}
	closedir(d);
	return removed;
}

/* pins.c: opening the store: bpffs and the pin directory, the pinned maps
 * (created and pinned by whoever comes first, under the directory's flock),
 * and the shared mappings of vm_table and the arena.  Also the flock that
 * serialises every writer (store.h).
 */
#include "store/store.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "imds.skel.h"

#define STORE_BPFFS "/sys/fs/bpf"
#define STORE_VM_TABLE_BYTES ((size_t)IMDS_MAX_VMS * sizeof(struct imds_vm))
#define STORE_VM_PORTS_BYTES ((size_t)IMDS_MAX_VMS * sizeof(struct imds_vm_port))
#define STORE_ARENA_BYTES ((size_t)IMDS_ARENA_PAGES * IMDS_ARENA_PAGE)

/* The first TC attach on a port asks the kernel for the clsact filter chain
 * before it exists; libbpf relays the kernel's "Cannot find specified filter
 * chain" as a warning although the attach then succeeds.  Only that line is
 * dropped: every other warning still reaches stderr. */
#define STORE_TC_NOISE "Cannot find specified filter chain"

static int store_libbpf_print(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	char line[1024];
	int n;

	if (level > LIBBPF_WARN)
		return 0;
	n = vsnprintf(line, sizeof(line), fmt, ap);
	if (n < 0 || strstr(line, STORE_TC_NOISE))
		return 0;
	fputs(line, stderr);
	if ((size_t)n >= sizeof(line))
		fputs("...\n", stderr); /* libbpf's lines are short; a long one is cut, not lost */
	return n;
}

/* bpffs must be mounted for pins to exist (a fresh host or a container may
 * not have it); mounting it again on top of a bpffs would hide existing pins. */
static int store_mount_bpffs(const char *pin_dir, char *err, size_t errlen)
{
	struct statfs st;

	if (strncmp(pin_dir, STORE_BPFFS "/", strlen(STORE_BPFFS) + 1) != 0)
		return 0;
	if (statfs(STORE_BPFFS, &st) == 0 && st.f_type == BPF_FS_MAGIC)
		return 0;
	if (mount("bpf", STORE_BPFFS, "bpf", 0, NULL) < 0) {
		int e = errno;

		snprintf(err, errlen, "cannot mount bpffs on %s: %s", STORE_BPFFS, strerror(e));
		return -e;
	}
	return 0;
}

static int store_mkdirs(const char *path, char *err, size_t errlen)
{
	char buf[sizeof(((struct store *)0)->pin_dir)];

	snprintf(buf, sizeof(buf), "%s", path);
	for (char *p = buf + 1;; p++) {
		char c = *p;

		if (c != '/' && c != '\0')
			continue;
		*p = '\0';
		if (mkdir(buf, 0755) < 0 && errno != EEXIST) {
			int e = errno;

			snprintf(err, errlen, "cannot create %s: %s", buf, strerror(e));
			return -e;
		}
		*p = c;
		if (c == '\0')
			return 0;
	}
}

static int store_prepare_dir(struct store *s, char *err, size_t errlen)
{
	int ret;

	ret = store_mount_bpffs(s->pin_dir, err, errlen);
	if (ret)
		return ret;
	ret = store_mkdirs(s->pin_dir, err, errlen);
	if (ret)
		return ret;
	s->lock_fd = open(s->pin_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (s->lock_fd < 0) {
		int e = errno;

		snprintf(err, errlen, "cannot open %s: %s", s->pin_dir, strerror(e));
		return -e;
	}
	return 0;
}

/* libbpf refuses a pin whose type or sizes differ from the program's map and
 * says only "parameter mismatch"; name the map and what differs. */
static bool store_explain_mismatch(const struct store *s, char *err, size_t errlen)
{
	struct bpf_map *map;

	bpf_object__for_each_map(map, s->skel->obj) {
		struct bpf_map_info info = { 0 };
		__u32 info_len = sizeof(info);
		char path[512];
		int fd, ret;

		snprintf(path, sizeof(path), "%s/%s", s->pin_dir, bpf_map__name(map));
		fd = bpf_obj_get(path);
		if (fd < 0)
			continue;
		ret = bpf_obj_get_info_by_fd(fd, &info, &info_len);
		close(fd);
		if (ret || (info.type == bpf_map__type(map) && info.key_size == bpf_map__key_size(map) &&
			    info.value_size == bpf_map__value_size(map) &&
			    info.max_entries == bpf_map__max_entries(map) &&
			    info.map_flags == bpf_map__map_flags(map)))
			continue;
		snprintf(err, errlen,
			 "cannot open pinned maps under %s: pinned map %s has another layout "
			 "(type %u, key %u, value %u, entries %u; this build expects type %u, key %u, value %u, "
			 "entries %u); it was made by an incompatible version: remove %s to start afresh "
			 "(this forgets every loaded VM)",
			 s->pin_dir, path, info.type, info.key_size, info.value_size, info.max_entries,
			 bpf_map__type(map), bpf_map__key_size(map), bpf_map__value_size(map),
			 bpf_map__max_entries(map), s->pin_dir);
		return true;
	}
	return false;
}

static int store_load_maps(struct store *s, unsigned flags, char *err, size_t errlen)
{
	LIBBPF_OPTS(bpf_object_open_opts, opts, .pin_root_path = s->pin_dir);
	struct bpf_program *prog;
	int ret;

	s->skel = imds_bpf__open_opts(&opts);
	if (!s->skel) {
		ret = -errno;
		snprintf(err, errlen, "cannot open the BPF object: %s", strerror(-ret));
		return ret;
	}
	if (!(flags & STORE_PROGRAMS))
		bpf_object__for_each_program(prog, s->skel->obj) bpf_program__set_autoload(prog, false);
	s->skel->rodata->first_use_all = !!(flags & STORE_FIRST_USE_ALL);
	ret = imds_bpf__load(s->skel);
	if (ret) {
		ret = ret < 0 ? ret : -EINVAL;
		if (!store_explain_mismatch(s, err, errlen))
			snprintf(err, errlen, "cannot open pinned maps under %s: %s", s->pin_dir, strerror(-ret));
		return ret;
	}
	s->vm_fd = bpf_map__fd(s->skel->maps.vm_table);
	s->mac_fd = bpf_map__fd(s->skel->maps.mac_index);
	s->conn_fd = bpf_map__fd(s->skel->maps.conn_table);
	s->counters_fd = bpf_map__fd(s->skel->maps.IMDS_MAP_VM_COUNTERS_ID);
	s->arena_fd = bpf_map__fd(s->skel->maps.arena);
	s->key_fd = bpf_map__fd(s->skel->maps.token_key);
	s->hop_fd = bpf_map__fd(s->skel->maps.hop_marks);
	s->gate_fd = bpf_map__fd(s->skel->maps.IMDS_MAP_CONN_GATE_ID);
	s->ports_fd = bpf_map__fd(s->skel->maps.IMDS_MAP_VM_PORTS_ID);
	return 0;
}

/* One pinned mmap-able map, mapped shared: *out, or -errno with err set. */
static int store_map_shared(const struct store *s, int fd, size_t bytes, const char *name, void **out, char *err,
			    size_t errlen)
{
	void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);

	if (p == MAP_FAILED) {
		int e = errno;

		snprintf(err, errlen, "cannot map %s/%s: %s", s->pin_dir, name, strerror(e));
		return -e;
	}
	*out = p;
	return 0;
}

static int store_map_memory(struct store *s, char *err, size_t errlen)
{
	void *vms, *ports, *arena;
	int ret;

	ret = store_map_shared(s, s->vm_fd, STORE_VM_TABLE_BYTES, IMDS_MAP_VM_TABLE, &vms, err, errlen);
	if (ret)
		return ret;
	s->vms = vms;
	ret = store_map_shared(s, s->ports_fd, STORE_VM_PORTS_BYTES, IMDS_MAP_VM_PORTS, &ports, err, errlen);
	if (ret)
		return ret;
	s->ports = ports;
	ret = store_map_shared(s, s->arena_fd, STORE_ARENA_BYTES, IMDS_MAP_ARENA, &arena, err, errlen);
	if (ret)
		return ret;
	ret = arena_attach(&s->arena, arena, STORE_ARENA_BYTES);
	if (ret) {
		munmap(arena, STORE_ARENA_BYTES);
		snprintf(err, errlen, "%s/%s does not hold an arena of this version", s->pin_dir,
			 IMDS_MAP_ARENA);
		return ret;
	}
	return 0;
}

int store_open(struct store *s, const char *pin_dir, unsigned flags, char *err, size_t errlen)
{
	int ret;

	memset(s, 0, sizeof(*s));
	s->lock_fd = s->vm_fd = s->mac_fd = s->conn_fd = s->counters_fd = s->arena_fd = s->key_fd = -1;
	s->hop_fd = s->gate_fd = s->ports_fd = -1;
	if (strlen(pin_dir) >= sizeof(s->pin_dir) || pin_dir[0] != '/') {
		snprintf(err, errlen, "pin directory must be an absolute path shorter than %zu bytes",
			 sizeof(s->pin_dir));
		return -EINVAL;
	}
	snprintf(s->pin_dir, sizeof(s->pin_dir), "%s", pin_dir);
	libbpf_set_print(store_libbpf_print);
	ret = store_prepare_dir(s, err, errlen);
	if (ret)
		goto out;
	/* Serialises creating the pins and formatting the arena with any other
	 * process opening the same directory. */
	ret = store_lock(s);
	if (ret) {
		snprintf(err, errlen, "cannot lock %s: %s", s->pin_dir, strerror(-ret));
		goto out;
	}
	ret = store_load_maps(s, flags, err, errlen);
	if (!ret)
		ret = store_map_memory(s, err, errlen);
	if (!ret && (ret = store_ipv4_index_fill(s)) < 0)
		snprintf(err, errlen, "cannot fill %s/%s: %s", s->pin_dir, IMDS_MAP_IPV4_INDEX, strerror(-ret));
	store_unlock(s);
out:
	if (ret)
		store_close(s);
	return ret;
}

void store_close(struct store *s)
{
	if (s->arena.base)
		munmap(s->arena.base, s->arena.size);
	if (s->vms)
		munmap(s->vms, STORE_VM_TABLE_BYTES);
	if (s->ports)
		munmap(s->ports, STORE_VM_PORTS_BYTES);
	/* The map fds belong to the skeleton's object and close with it. */
	if (s->skel)
		imds_bpf__destroy(s->skel);
	if (s->lock_fd >= 0)
		close(s->lock_fd);
	s->arena.base = NULL;
	s->vms = NULL;
	s->ports = NULL;
	s->skel = NULL;
	s->lock_fd = s->vm_fd = s->mac_fd = s->conn_fd = s->counters_fd = s->arena_fd = s->key_fd = -1;
	s->hop_fd = s->gate_fd = s->ports_fd = -1;
}

int store_lock(struct store *s)
{
	while (flock(s->lock_fd, LOCK_EX) < 0)
		if (errno != EINTR)
			return -errno;
	return 0;
}

void store_unlock(struct store *s)
{
	flock(s->lock_fd, LOCK_UN);
}

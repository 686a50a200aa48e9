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
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "imds.skel.h"

#define STORE_BPFFS "/sys/fs/bpf"
#define STORE_VM_TABLE_BYTES(s) ((size_t)(s)->max_slots * sizeof(struct imds_vm))
#define STORE_VM_PORTS_BYTES(s) ((size_t)(s)->max_slots * sizeof(struct imds_vm_port))
#define STORE_CONN_SLOTS_BYTES(s) ((size_t)(s)->conn_slots_n * sizeof(struct imds_conn_slot))
#define STORE_HOP_GATE_BYTES sizeof(uint64_t)
/* conn_slots' entries in a new store, for the tests that force its
 * collisions (a power of two, at most IMDS_CONN_SLOTS). */
#define STORE_CONN_SLOTS_ENV "IMDS_TEST_CONN_SLOTS"

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

/* max_entries of the pinned map `name`, or 0 when it is not pinned yet. */
static uint32_t store_pinned_entries(const struct store *s, const char *name)
{
	struct bpf_map_info info = { 0 };
	__u32 info_len = sizeof(info);
	char path[512];
	int fd;

	snprintf(path, sizeof(path), "%s/%s", s->pin_dir, name);
	fd = bpf_obj_get(path);
	if (fd < 0)
		return 0;
	if (bpf_obj_get_info_by_fd(fd, &info, &info_len) < 0)
		info.max_entries = 0;
	close(fd);
	return info.max_entries;
}

/* A size asked for that differs from the store's, which was fixed when the
 * store was created. */
static int store_size_differs(const struct store *s, const char *what, unsigned long long asked,
			      unsigned long long has, char *err, size_t errlen)
{
	snprintf(err, errlen,
		 "the store under %s was created with %s %llu; it cannot be changed to %llu in place: "
		 "export the records, remove %s (this forgets every loaded VM and the token key) and "
		 "load them again with the new size (docs/control-plane.md, \"Sizing\")",
		 s->pin_dir, what, has, asked, s->pin_dir);
	return -EEXIST;
}

/* conn_slots' size: the pin's, or IMDS_CONN_SLOTS (IMDS_TEST_CONN_SLOTS
 * in a new store); the data plane masks with it. */
static int store_size_conn_slots(struct store *s)
{
	uint32_t n = store_pinned_entries(s, IMDS_MAP_CONN_SLOTS);
	const char *env = getenv(STORE_CONN_SLOTS_ENV);

	if (!n && env)
		n = (uint32_t)strtoul(env, NULL, 10);
	if (!n)
		n = IMDS_CONN_SLOTS;
	if (n & (n - 1) || n > IMDS_CONN_SLOTS)
		return -EINVAL;
	bpf_map__set_max_entries(s->skel->maps.IMDS_MAP_CONN_SLOTS_ID, n);
	s->skel->rodata->conn_slots_mask = n - 1;
	s->conn_slots_n = n;
	return 0;
}

/* The maps' sizes: those of the pins when the store exists, else what the
 * creator asked for, else the defaults (include/imds.h). */
static int store_size_maps(struct store *s, const struct store_size *want, char *err, size_t errlen)
{
	struct bpf_map *map;
	uint32_t slots = store_pinned_entries(s, IMDS_MAP_VM_TABLE);
	uint32_t pages = store_pinned_entries(s, IMDS_MAP_ARENA);
	uint32_t want_slots = want && want->max_vms ? want->max_vms + 1 : 0;
	uint32_t want_pages = want && want->arena_bytes ? (uint32_t)(want->arena_bytes / IMDS_ARENA_PAGE) : 0;

	if (slots && want_slots && slots != want_slots)
		return store_size_differs(s, "--max-vms", want_slots - 1, slots - 1, err, errlen);
	if (pages && want_pages && pages != want_pages)
		return store_size_differs(s, "--arena-size (bytes)", (unsigned long long)want_pages * IMDS_ARENA_PAGE,
					  (unsigned long long)pages * IMDS_ARENA_PAGE, err, errlen);
	slots = slots ? slots : want_slots ? want_slots : IMDS_MAX_VMS;
	pages = pages ? pages : want_pages ? want_pages : IMDS_ARENA_PAGES;
	/* Every map bpf/maps.h declares with IMDS_MAX_VMS entries is per slot. */
	bpf_object__for_each_map(map, s->skel->obj)
		if (bpf_map__max_entries(map) == IMDS_MAX_VMS)
			bpf_map__set_max_entries(map, slots);
	bpf_map__set_max_entries(s->skel->maps.IMDS_MAP_IPV6_INDEX_ID, slots * IMDS_VM_IPV6_MAX);
	bpf_map__set_max_entries(s->skel->maps.IMDS_MAP_ARENA_ID, pages);
	s->max_slots = slots;
	if (store_size_conn_slots(s) < 0) {
		snprintf(err, errlen, "%s=%s: a power of two up to %u", STORE_CONN_SLOTS_ENV,
			 getenv(STORE_CONN_SLOTS_ENV), IMDS_CONN_SLOTS);
		return -EINVAL;
	}
	return 0;
}

static int store_load_maps(struct store *s, unsigned flags, const struct store_size *want, char *err,
			   size_t errlen)
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
	ret = store_size_maps(s, want, err, errlen);
	if (ret)
		return ret;
	ret = imds_bpf__load(s->skel);
	if (ret) {
		ret = ret < 0 ? ret : -EINVAL;
		if (!store_explain_mismatch(s, err, errlen))
			snprintf(err, errlen, "cannot open pinned maps under %s: %s", s->pin_dir, strerror(-ret));
		return ret;
	}
	s->vm_fd = bpf_map__fd(s->skel->maps.vm_table);
	s->mac_fd = bpf_map__fd(s->skel->maps.mac_index);
	s->conn_fd = bpf_map__fd(s->skel->maps.IMDS_MAP_CONN_TABLE_ID);
	s->counters_fd = bpf_map__fd(s->skel->maps.IMDS_MAP_VM_COUNTERS_ID);
	s->arena_fd = bpf_map__fd(s->skel->maps.arena);
	s->key_fd = bpf_map__fd(s->skel->maps.token_key);
	s->hop_fd = bpf_map__fd(s->skel->maps.IMDS_MAP_HOP_MARKS_ID);
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
	void *vms, *ports, *conn_slots, *hop_gate, *arena;
	size_t arena_bytes;
	int ret;

	ret = store_map_shared(s, s->vm_fd, STORE_VM_TABLE_BYTES(s), IMDS_MAP_VM_TABLE, &vms, err, errlen);
	if (ret)
		return ret;
	s->vms = vms;
	ret = store_map_shared(s, s->ports_fd, STORE_VM_PORTS_BYTES(s), IMDS_MAP_VM_PORTS, &ports, err, errlen);
	if (ret)
		return ret;
	s->ports = ports;
	ret = store_map_shared(s, bpf_map__fd(s->skel->maps.IMDS_MAP_CONN_SLOTS_ID), STORE_CONN_SLOTS_BYTES(s),
			       IMDS_MAP_CONN_SLOTS, &conn_slots, err, errlen);
	if (ret)
		return ret;
	s->conn_slots = conn_slots;
	ret = store_map_shared(s, bpf_map__fd(s->skel->maps.IMDS_MAP_HOP_GATE_ID), STORE_HOP_GATE_BYTES,
			       IMDS_MAP_HOP_GATE, &hop_gate, err, errlen);
	if (ret)
		return ret;
	s->hop_gate = hop_gate;
	arena_bytes = (size_t)bpf_map__max_entries(s->skel->maps.IMDS_MAP_ARENA_ID) * IMDS_ARENA_PAGE;
	ret = store_map_shared(s, s->arena_fd, arena_bytes, IMDS_MAP_ARENA, &arena, err, errlen);
	if (ret)
		return ret;
	ret = arena_attach(&s->arena, arena, arena_bytes);
	if (ret) {
		munmap(arena, arena_bytes);
		snprintf(err, errlen, "%s/%s does not hold an arena of this version", s->pin_dir,
			 IMDS_MAP_ARENA);
		return ret;
	}
	return 0;
}

int store_open(struct store *s, const char *pin_dir, unsigned flags, char *err, size_t errlen)
{
	return store_open_sized(s, pin_dir, flags, NULL, err, errlen);
}

int store_check_size(const struct store_size *want, char *err, size_t errlen)
{
	if (want->max_vms > STORE_MAX_VMS_LIMIT) {
		snprintf(err, errlen, "--max-vms %u: at most %u", want->max_vms, STORE_MAX_VMS_LIMIT);
		return -EINVAL;
	}
	if (want->arena_bytes % IMDS_ARENA_PAGE || (want->arena_bytes && want->arena_bytes < STORE_MIN_ARENA) ||
	    want->arena_bytes > (uint64_t)ARENA_MAX_PAGES * IMDS_ARENA_PAGE) {
		snprintf(err, errlen, "--arena-size %llu: a multiple of %d bytes from %d KiB to %llu GiB",
			 (unsigned long long)want->arena_bytes, IMDS_ARENA_PAGE, STORE_MIN_ARENA / 1024,
			 (unsigned long long)ARENA_MAX_PAGES * IMDS_ARENA_PAGE >> 30);
		return -EINVAL;
	}
	return 0;
}

int store_open_sized(struct store *s, const char *pin_dir, unsigned flags, const struct store_size *want,
		     char *err, size_t errlen)
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
	ret = store_load_maps(s, flags, want, err, errlen);
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
		munmap(s->vms, STORE_VM_TABLE_BYTES(s));
	if (s->ports)
		munmap(s->ports, STORE_VM_PORTS_BYTES(s));
	if (s->conn_slots)
		munmap(s->conn_slots, STORE_CONN_SLOTS_BYTES(s));
	if (s->hop_gate)
		munmap(s->hop_gate, STORE_HOP_GATE_BYTES);
	/* The map fds belong to the skeleton's object and close with it. */
	if (s->skel)
		imds_bpf__destroy(s->skel);
	if (s->lock_fd >= 0)
		close(s->lock_fd);
	s->arena.base = NULL;
	s->vms = NULL;
	s->ports = NULL;
	s->conn_slots = NULL;
	s->hop_gate = NULL;
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

/* proc.c: the /proc probes of the server under test, and the store's
 * arena use (--pin-dir). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "imds.h"
#include "store/arena.h"
#include "store/store.h"
#include "storm/proc.h"

static ssize_t storm_read_file(const char *path, char *buf, size_t size)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return -errno;
	n = read(fd, buf, size - 1);
	close(fd);
	if (n < 0)
		return -EIO;
	buf[n] = '\0';
	return n;
}

/* utime + stime from /proc/PID/stat; resolution: one clock tick, 10 ms. */
double storm_cpu_ticks(long pid)
{
	char path[64], buf[4096];
	unsigned long long ut, st;
	const char *p;

	snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
	if (storm_read_file(path, buf, sizeof(buf)) <= 0)
		return -1;
	/* the command name (field 2) may hold spaces: start after its ')' */
	p = strrchr(buf, ')');
	if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
		return -1;
	return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* The sum of the first field of every thread's /proc/PID/task/TID/schedstat.
 * A storm of 50 VMs costs the server a few ticks, so tick resolution alone
 * would say little. */
double storm_cpu_schedstat(long pid)
{
	char path[128], buf[256];
	unsigned long long ns, sum = 0;
	struct dirent *de;
	DIR *dir;
	int ok = 1;

	snprintf(path, sizeof(path), "/proc/%ld/task", pid);
	dir = opendir(path);
	if (!dir)
		return -1;
	while (ok && (de = readdir(dir))) {
		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/proc/%ld/task/%.32s/schedstat", pid, de->d_name);
		ok = storm_read_file(path, buf, sizeof(buf)) > 0 && sscanf(buf, "%llu", &ns) == 1;
		sum += ok ? ns : 0;
	}
	closedir(dir);
	return ok ? (double)sum / 1e9 : -1;
}

double storm_cpu_sum(const long *pids, unsigned n, double (*cpu)(long))
{
	double sum = 0;

	for (unsigned i = 0; i < n; i++) {
		double one = cpu(pids[i]);

		if (one < 0)
			return -1;
		sum += one;
	}
	return sum;
}

/* The load generator's share of the machine, next to the server's. */
double storm_self_cpu(void)
{
	struct rusage ru;

	if (getrusage(RUSAGE_SELF, &ru))
		return 0;
	return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) + (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

static long storm_status_kb(const char *status, const char *field)
{
	const char *p = strstr(status, field);
	long kb;

	return p && sscanf(p + strlen(field), " %ld", &kb) == 1 ? kb : -1;
}

/* imdsd's mapping of the arena (a BPF array, allocated whole when the map
 * is made) is resident in full and counts as RssFile. */
void storm_read_memory(const long *pids, unsigned n, const char *pin_dir, struct storm_memory *m)
{
	char path[64], buf[8192], err[256];
	struct store st;

	*m = (struct storm_memory){ -1, -1, -1, -1, -1, -1 };
	if (n)
		m->rss_kb = m->rss_anon_kb = m->rss_file_kb = m->rss_shmem_kb = 0;
	for (unsigned i = 0; i < n; i++) {
		snprintf(path, sizeof(path), "/proc/%ld/status", pids[i]);
		if (storm_read_file(path, buf, sizeof(buf)) <= 0 || storm_status_kb(buf, "VmRSS:") < 0) {
			m->rss_kb = m->rss_anon_kb = m->rss_file_kb = m->rss_shmem_kb = -1;
			break;
		}
		m->rss_kb += storm_status_kb(buf, "VmRSS:");
		m->rss_anon_kb += storm_status_kb(buf, "RssAnon:");
		m->rss_file_kb += storm_status_kb(buf, "RssFile:");
		m->rss_shmem_kb += storm_status_kb(buf, "RssShmem:");
	}
	if (!pin_dir)
		return;
	if (store_open(&st, pin_dir, 0, err, sizeof(err))) {
		fprintf(stderr, "imds-storm: --pin-dir: %s\n", err);
		return;
	}
	m->loaded_vms = st.max_slots - 1 - store_free_slots(&st);
	m->arena_bytes = (double)arena_used_bytes(&st.arena);
	store_close(&st);
}

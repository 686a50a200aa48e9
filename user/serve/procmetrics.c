/* procmetrics.c: the process_* metrics every Prometheus exporter gives
 * (CPU time, memory, descriptors, start time), from /proc/self. */
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "serve/metrics.h"
#include "serve/server_int.h"

struct proc_self {
	double cpu_seconds;
	unsigned long long rss_bytes, vsize_bytes;
	double start_unix;
	int open_fds;
	unsigned long long max_fds;
};

/* The boot time in unix seconds (/proc/stat's btime), 0 if unknown. */
static unsigned long long proc_boot_time(void)
{
	unsigned long long btime = 0;
	char line[256];
	FILE *f = fopen("/proc/stat", "re");

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "btime %llu", &btime) == 1)
			break;
	fclose(f);
	return btime;
}

/* /proc/self/stat: fields after the command name, which may hold spaces
 * and parentheses, so parsing starts after its last ')'. */
static int proc_read_stat(struct proc_self *p)
{
	unsigned long long utime, stime, start, vsize, rss;
	double tick = (double)sysconf(_SC_CLK_TCK);
	char buf[1024], *s;
	size_t n;
	FILE *f = fopen("/proc/self/stat", "re");

	if (!f)
		return -1;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	s = strrchr(buf, ')');
	/* state(3) ... utime(14) stime(15) ... starttime(22) vsize(23) rss(24) */
	if (!s || sscanf(s + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %*d %*d %*d %*d %*d %*d %llu "
			 "%llu %llu", &utime, &stime, &start, &vsize, &rss) != 5)
		return -1;
	p->cpu_seconds = (double)(utime + stime) / tick;
	p->start_unix = (double)proc_boot_time() + (double)start / tick;
	p->vsize_bytes = vsize;
	p->rss_bytes = rss * (unsigned long long)sysconf(_SC_PAGESIZE);
	return 0;
}

int metrics_process(struct outbuf *out)
{
	struct proc_self p = { 0 };
	struct rlimit rl;
	int rc = 0;

	if (proc_read_stat(&p) < 0)
		return 0; /* no /proc: no process metrics, the rest stands */
	p.open_fds = srv_fds_open();
	p.max_fds = getrlimit(RLIMIT_NOFILE, &rl) == 0 ? (unsigned long long)rl.rlim_cur : 0;
	rc |= outbuf_printf(out,
			    "# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.\n"
			    "# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total %.2f\n"
			    "# HELP process_resident_memory_bytes Resident memory size in bytes.\n"
			    "# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes %llu\n"
			    "# HELP process_virtual_memory_bytes Virtual memory size in bytes.\n"
			    "# TYPE process_virtual_memory_bytes gauge\nprocess_virtual_memory_bytes %llu\n"
			    "# HELP process_start_time_seconds Start time of the process since unix epoch in seconds.\n"
			    "# TYPE process_start_time_seconds gauge\nprocess_start_time_seconds %.2f\n",
			    p.cpu_seconds, p.rss_bytes, p.vsize_bytes, p.start_unix);
	rc |= outbuf_printf(out,
			    "# HELP process_open_fds Number of open file descriptors.\n"
			    "# TYPE process_open_fds gauge\nprocess_open_fds %d\n"
			    "# HELP process_max_fds Maximum number of open file descriptors.\n"
			    "# TYPE process_max_fds gauge\nprocess_max_fds %llu\n",
			    p.open_fds, p.max_fds);
	return rc;
}

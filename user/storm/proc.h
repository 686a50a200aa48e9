/* proc.h: what the storm cost: the server's CPU time and memory from
 * /proc, this process's own CPU time, and the store's arena use. */
#ifndef IMDS_STORM_PROC_H
#define IMDS_STORM_PROC_H

struct storm_memory {
	long rss_kb, rss_anon_kb, rss_file_kb, rss_shmem_kb; /* -1: unknown */
	long loaded_vms;
	double arena_bytes; /* -1: unknown */
};

/* A process's user+system time in seconds, -1 when unreadable: from the
 * per-thread schedstat (ns) or from /proc/PID/stat (clock ticks). */
double storm_cpu_schedstat(long pid);
double storm_cpu_ticks(long pid);

/* cpu summed over pids; -1 when one is unreadable. */
double storm_cpu_sum(const long *pids, unsigned n, double (*cpu)(long));

/* This process's user+system time in seconds. */
double storm_self_cpu(void);

/* The processes' resident memory (summed; -1 fields when one is
 * unreadable) and, with a pin directory, the arena bytes in use and the
 * number of loaded VMs. */
void storm_read_memory(const long *pids, unsigned n, const char *pin_dir, struct storm_memory *m);

#endif

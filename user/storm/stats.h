/* stats.h: what a storm counts: error kinds, a log-linear latency
 * histogram, and per-thread counters read by the progress line. */
#ifndef IMDS_STORM_STATS_H
#define IMDS_STORM_STATS_H
#include <stdint.h>

/* Error kinds.  A connect failure is not an error by itself (it is counted
 * and retried); it becomes "gave-up" when the retries run out. */
enum storm_err { SE_RESET, SE_TIMEOUT, SE_STATUS, SE_BAD_HTTP, SE_WRONG_DATA, SE_GAVE_UP, SE_N };

extern const char *const storm_err_names[SE_N];

/* HDR-style log-linear histogram of nanoseconds: values below 128 have a
 * bucket each; above, every power of two is cut into 64 buckets, so a
 * bucket's width is under 1/64 (1.6 %) of its values. */
#define HIST_BUCKETS (64 * 64 + 128)

struct storm_hist {
	uint64_t count[HIST_BUCKETS];
	uint64_t total;
	uint64_t max;
	uint64_t sum;
};

/* The highest value that falls into bucket idx. */
uint64_t storm_hist_value(unsigned idx);
void storm_hist_add(struct storm_hist *h, uint64_t v);
void storm_hist_merge(struct storm_hist *into, const struct storm_hist *h);
/* Value at quantile q (0..1), capped by the exact maximum. */
uint64_t storm_hist_quantile(const struct storm_hist *h, double q);

struct storm_stats {
	uint64_t requests; /* completed responses, read by the progress line */
	uint64_t errors[SE_N];
	uint64_t connect_failures;
	uint64_t retries;
	uint64_t reconnects; /* a kept-alive connection the server had closed */
	uint64_t crawls;     /* crawls completed */
	uint64_t clients_done;
	uint64_t last_done_ns; /* when this thread's last client finished */
};

/* A thread's counters are written by that thread only, and read by the
 * progress line: no locked add needed. */
static inline void storm_count(uint64_t *counter)
{
	__atomic_store_n(counter, __atomic_load_n(counter, __ATOMIC_RELAXED) + 1, __ATOMIC_RELAXED);
}

static inline uint64_t storm_read(const uint64_t *counter)
{
	return __atomic_load_n(counter, __ATOMIC_RELAXED);
}

/* Adds a thread's counters (read while it may still run) into sum. */
void storm_stats_add(struct storm_stats *sum, const struct storm_stats *ts);
uint64_t storm_error_total(const struct storm_stats *s);

/* CLOCK_MONOTONIC in nanoseconds. */
uint64_t storm_now(void);

#endif

/* stats.c: the storm's histogram, counters and clock. */
#include <time.h>

#include "storm/stats.h"

const char *const storm_err_names[SE_N] = {
	[SE_RESET] = "reset", [SE_TIMEOUT] = "timeout", [SE_STATUS] = "http-status",
	[SE_BAD_HTTP] = "bad-http", [SE_WRONG_DATA] = "wrong-data", [SE_GAVE_UP] = "gave-up",
};

static unsigned storm_hist_index(uint64_t v)
{
	unsigned shift;

	if (v < 128)
		return (unsigned)v;
	shift = (unsigned)(63 - __builtin_clzll(v)) - 6;
	return shift * 64 + (unsigned)(v >> shift);
}

uint64_t storm_hist_value(unsigned idx)
{
	unsigned shift;

	if (idx < 128)
		return idx;
	shift = idx / 64 - 1;
	return ((uint64_t)(idx - shift * 64 + 1) << shift) - 1;
}

void storm_hist_add(struct storm_hist *h, uint64_t v)
{
	h->count[storm_hist_index(v)]++;
	h->total++;
	h->sum += v;
	if (v > h->max)
		h->max = v;
}

void storm_hist_merge(struct storm_hist *into, const struct storm_hist *h)
{
	for (unsigned i = 0; i < HIST_BUCKETS; i++)
		into->count[i] += h->count[i];
	into->total += h->total;
	into->sum += h->sum;
	if (h->max > into->max)
		into->max = h->max;
}

/* The highest value of the bucket holding the ceil(q * total)-th sample. */
uint64_t storm_hist_quantile(const struct storm_hist *h, double q)
{
	uint64_t rank = (uint64_t)(q * (double)h->total + 0.999999), seen = 0;

	if (!h->total)
		return 0;
	if (rank < 1)
		rank = 1;
	for (unsigned i = 0; i < HIST_BUCKETS; i++) {
		seen += h->count[i];
		if (seen >= rank)
			return storm_hist_value(i) < h->max ? storm_hist_value(i) : h->max;
	}
	return h->max;
}

void storm_stats_add(struct storm_stats *s, const struct storm_stats *ts)
{
	s->requests += storm_read(&ts->requests);
	for (int k = 0; k < SE_N; k++)
		s->errors[k] += storm_read(&ts->errors[k]);
	s->connect_failures += storm_read(&ts->connect_failures);
	s->retries += storm_read(&ts->retries);
	s->reconnects += storm_read(&ts->reconnects);
	s->crawls += storm_read(&ts->crawls);
	s->clients_done += storm_read(&ts->clients_done);
	if (storm_read(&ts->last_done_ns) > s->last_done_ns)
		s->last_done_ns = storm_read(&ts->last_done_ns);
}

uint64_t storm_error_total(const struct storm_stats *s)
{
	uint64_t n = 0;

	for (int k = 0; k < SE_N; k++)
		n += s->errors[k];
	return n;
}

uint64_t storm_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

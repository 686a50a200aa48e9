/* report.h: the storm's output: the progress line, the report as text or
 * JSON (docs/storm.md, "Output"), and the latency plot. */
#ifndef IMDS_STORM_REPORT_H
#define IMDS_STORM_REPORT_H
#include <stdint.h>

#include "storm/proc.h"
#include "storm/stats.h"
#include "storm/storm.h"

struct storm_result {
	struct storm_stats s;
	struct storm_hist h;
	double seconds;   /* completion time: start to the last client's end */
	double cpu_s;     /* server CPU over the run, -1 unknown */
	double client_cpu_s; /* this process's own CPU over the run */
	struct storm_memory mem;
};

/* One progress line on stderr; *last_requests: the count of the last line. */
void storm_report_progress(const struct storm_run *run, const struct storm_stats *s, uint64_t *last_requests);

/* The report on stdout, as text or (--json) JSON.  0 or -ENOMEM. */
int storm_report(const struct storm_run *run, const struct storm_result *r);

/* --plot: FILE.dat and the gnuplot drawing; 0 or a negative errno, the
 * reason printed. */
int storm_plot(const struct storm_run *run, const struct storm_result *r);

#endif

/* log.h: a daemon's log on stderr, one line per event, each with a level
 * (docs/metrics.md, "Logs").  Lines are written with one write(2), so
 * threads never interleave within a line.  Under journald (JOURNAL_STREAM
 * names stderr) a line starts with its syslog priority, "<6>imdsd: ...",
 * which journald strips and keeps as the entry's PRIORITY; elsewhere with
 * the level's name, "info imdsd: ...". */
#ifndef IMDS_LOG_H
#define IMDS_LOG_H
#include <stdbool.h>
#include <stdint.h>

enum log_level {
	LOG_LEVEL_ERROR = 0,
	LOG_LEVEL_WARN = 1,
	LOG_LEVEL_INFO = 2,
	LOG_LEVEL_DEBUG = 3,
};

/* The program's name for every line, and whether stderr is the journal. */
void log_init(const char *prog);
/* "error", "warn", "info" or "debug": 0, or -1 for another word. */
int log_parse_level(const char *text, enum log_level *out);
/* Lines above `level` are dropped (default: info). */
void log_set_level(enum log_level level);
bool log_enabled(enum log_level level);

void log_at(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A line written whatever the level set: the daemon's start and stop,
 * which scripts wait for ("imdsd: ready"). */
void log_always(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#define log_error(...) log_at(LOG_LEVEL_ERROR, __VA_ARGS__)
#define log_warn(...) log_at(LOG_LEVEL_WARN, __VA_ARGS__)
#define log_info(...) log_at(LOG_LEVEL_INFO, __VA_ARGS__)
#define log_debug(...) log_at(LOG_LEVEL_DEBUG, __VA_ARGS__)

/* One kind of event of one source (a VM), logged at most once per
 * interval: a guest that causes the event in a loop costs the journal one
 * line per interval, which says how many were not logged meanwhile.
 * Zeroed memory is a limiter at rest.  Not thread-safe: one owner. */
struct log_limit {
	uint64_t next_ms;    /* when the next line may go out */
	uint64_t suppressed; /* events not logged since the last line */
};

/* Whether the event at now_ms may be logged; if so *suppressed is how many
 * were held back since the last line (and the count starts again). */
bool log_limit_allow(struct log_limit *l, uint64_t now_ms, uint64_t interval_ms, uint64_t *suppressed);

#endif

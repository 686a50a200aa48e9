/* log.c: leveled lines on stderr (log.h). */
#include "lib/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define LOG_LINE_MAX 2048

static const char *log_prog = "?";
static enum log_level log_level = LOG_LEVEL_INFO;
static bool log_journal;

static const char *const log_names[] = {
	[LOG_LEVEL_ERROR] = "error",
	[LOG_LEVEL_WARN] = "warn",
	[LOG_LEVEL_INFO] = "info",
	[LOG_LEVEL_DEBUG] = "debug",
};
/* syslog priorities (RFC 5424): err, warning, info, debug */
static const int log_priorities[] = { 3, 4, 6, 7 };

/* systemd sets JOURNAL_STREAM to "device:inode" of the stream it connected
 * to the journal; stderr is that stream only if both match (a child whose
 * stderr was redirected inherits the variable). */
static bool log_stderr_is_journal(void)
{
	const char *env = getenv("JOURNAL_STREAM");
	unsigned long long dev, ino;
	struct stat st;

	if (!env || sscanf(env, "%llu:%llu", &dev, &ino) != 2 || fstat(STDERR_FILENO, &st) < 0)
		return false;
	return (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

void log_init(const char *prog)
{
	log_prog = prog;
	log_journal = log_stderr_is_journal();
}

int log_parse_level(const char *text, enum log_level *out)
{
	for (size_t i = 0; i < sizeof(log_names) / sizeof(log_names[0]); i++) {
		if (strcmp(text, log_names[i]) == 0) {
			*out = (enum log_level)i;
			return 0;
		}
	}
	return -1;
}

void log_set_level(enum log_level level)
{
	log_level = level;
}

bool log_enabled(enum log_level level)
{
	return level <= log_level;
}

static void log_line(enum log_level level, const char *fmt, va_list ap)
{
	char line[LOG_LINE_MAX];
	int n;

	if (log_journal)
		n = snprintf(line, sizeof(line), "<%d>%s: ", log_priorities[level], log_prog);
	else
		n = snprintf(line, sizeof(line), "%s %s: ", log_names[level], log_prog);
	n += vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
	if (n > (int)sizeof(line) - 2)
		n = (int)sizeof(line) - 2; /* cut, but still one line */
	line[n++] = '\n';
	/* One write per line: concurrent lines do not mix; a short write to a
	 * full pipe loses the rest of a line, never blocks the caller long. */
	if (write(STDERR_FILENO, line, (size_t)n) < 0)
		return;
}

void log_at(enum log_level level, const char *fmt, ...)
{
	va_list ap;

	if (!log_enabled(level))
		return;
	va_start(ap, fmt);
	log_line(level, fmt, ap);
	va_end(ap);
}

void log_always(enum log_level level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_line(level, fmt, ap);
	va_end(ap);
}

bool log_limit_allow(struct log_limit *l, uint64_t now_ms, uint64_t interval_ms, uint64_t *suppressed)
{
	if (l->next_ms && now_ms < l->next_ms) {
		l->suppressed++;
		return false;
	}
	*suppressed = l->suppressed;
	l->suppressed = 0;
	l->next_ms = now_ms + interval_ms;
	return true;
}

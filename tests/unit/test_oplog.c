/* test_oplog.c: the operator's side of imdsd that needs no sockets: log
 * levels and the per-VM line limiter (user/lib/log.c), the metrics
 * address rules (user/serve/admin.c: loopback or a unix socket only), and
 * the workers' answer counts (user/serve/stats.h: a slot's next VM starts
 * from zero). */
#include <arpa/inet.h>
#include <setjmp.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "imds.h"
#include "lib/log.h"
#include "serve/admin.h"
#include "serve/stats.h"

static void test_levels(void **state)
{
	enum log_level l;

	(void)state;
	assert_int_equal(log_parse_level("warn", &l), 0);
	assert_int_equal(l, LOG_LEVEL_WARN);
	assert_int_equal(log_parse_level("debug", &l), 0);
	assert_int_equal(l, LOG_LEVEL_DEBUG);
	assert_int_equal(log_parse_level("warning", &l), -1);
	assert_int_equal(log_parse_level("", &l), -1);
	log_set_level(LOG_LEVEL_WARN);
	assert_true(log_enabled(LOG_LEVEL_ERROR));
	assert_false(log_enabled(LOG_LEVEL_INFO));
	log_set_level(LOG_LEVEL_INFO);
}

/* What one log line looks like on stderr: `stderr_is_journal` sets
 * JOURNAL_STREAM to stderr's device:inode, as systemd does. */
static void capture_line(bool stderr_is_journal, char *out, size_t len)
{
	int fds[2], saved = dup(STDERR_FILENO);
	struct stat st;
	char env[64];
	ssize_t n;

	assert_int_equal(pipe(fds), 0);
	assert_int_equal(dup2(fds[1], STDERR_FILENO), STDERR_FILENO);
	assert_int_equal(fstat(STDERR_FILENO, &st), 0);
	snprintf(env, sizeof(env), "%llu:%llu", (unsigned long long)st.st_dev,
		 (unsigned long long)st.st_ino + (stderr_is_journal ? 0 : 1));
	setenv("JOURNAL_STREAM", env, 1);
	log_init("imdsd");
	log_warn("vm %s: %d", "i-1", 7);
	log_debug("not at the default level");
	dup2(saved, STDERR_FILENO);
	close(saved);
	close(fds[1]);
	n = read(fds[0], out, len - 1);
	close(fds[0]);
	out[n > 0 ? n : 0] = '\0';
	unsetenv("JOURNAL_STREAM");
	log_init("imdsd");
}

static void test_line_format(void **state)
{
	char line[128];

	(void)state;
	capture_line(false, line, sizeof(line));
	assert_string_equal(line, "warn imdsd: vm i-1: 7\n");
	/* journald keeps <4> as the entry's priority (warning) and strips it */
	capture_line(true, line, sizeof(line));
	assert_string_equal(line, "<4>imdsd: vm i-1: 7\n");
}

/* One line, then nothing for the interval, then one line counting what
 * was held back. */
static void test_limit(void **state)
{
	struct log_limit lim = { 0 };
	uint64_t held = 99;

	(void)state;
	assert_true(log_limit_allow(&lim, 1000, 60000, &held));
	assert_int_equal(held, 0);
	for (uint64_t t = 1001; t < 61000; t += 100)
		assert_false(log_limit_allow(&lim, t, 60000, &held));
	assert_true(log_limit_allow(&lim, 61000, 60000, &held));
	assert_int_equal(held, 600);
	assert_false(log_limit_allow(&lim, 61001, 60000, &held));
}

static void test_metrics_addresses(void **state)
{
	static const char *const refused[] = {
		"0.0.0.0:9464", "10.0.0.1:9464", "169.254.169.254:9464", "192.168.122.1:9464", "localhost:9464",
		"[::1]:9464",	"127.0.0.1",	 "127.0.0.1:0",		 "127.0.0.1:65536",    "127.0.0.1:9x",
		"unix:",	"unix:rel/path", ":9464",
	};
	struct admin_addr a;
	char err[256];

	(void)state;
	assert_int_equal(admin_parse_addr("127.0.0.1:9464", &a, err, sizeof(err)), 0);
	assert_false(a.is_unix);
	assert_int_equal(a.addr_be, htonl(0x7f000001));
	assert_int_equal(a.port, 9464);
	assert_int_equal(admin_parse_addr("127.1.2.3:1", &a, err, sizeof(err)), 0);
	assert_int_equal(admin_parse_addr("unix:/run/imds/metrics.sock", &a, err, sizeof(err)), 0);
	assert_true(a.is_unix);
	assert_string_equal(a.path, "/run/imds/metrics.sock");
	for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
		err[0] = '\0';
		if (admin_parse_addr(refused[i], &a, err, sizeof(err)) != -1 || !err[0])
			fail_msg("%s: accepted, or refused without a reason", refused[i]);
	}
	admin_parse_addr("10.0.0.1:9464", &a, err, sizeof(err));
	assert_non_null(strstr(err, "10.0.0.1 is not a loopback address"));
}

static void test_stats_counts_per_vm(void **state)
{
	struct stats_worker s = { .vms = calloc(IMDS_MAX_VMS, sizeof(struct stats_vm)) };
	struct stats_answer ok = { .flavor = ROUTE_FLAVOR_EC2, .tokenless = true, .status = 200 };
	struct stats_answer odd = { .flavor = ROUTE_FLAVOR_GCE, .status = 418 };

	(void)state;
	assert_non_null(s.vms);
	stats_count(&s, 7, 3, &ok, 5000);
	stats_count(&s, 7, 3, &ok, 30000);
	stats_count(&s, 7, 3, &odd, 1000000000);
	assert_int_equal(s.vms[7].requests[ROUTE_FLAVOR_EC2][stats_code_index(200)], 2);
	assert_int_equal(s.vms[7].requests[ROUTE_FLAVOR_GCE][STATS_CODES - 1], 1); /* "other" */
	assert_int_equal(s.vms[7].tokenless, 2);
	assert_int_equal(s.latency.buckets[0], 1);		      /* <= 10 us */
	assert_int_equal(s.latency.buckets[2], 1);		      /* <= 50 us */
	assert_int_equal(s.latency.buckets[STATS_LATENCY_BUCKETS], 1); /* over the last bound */
	assert_int_equal(s.latency.count, 3);
	/* The slot's next VM (generation 4) starts from zero. */
	stats_count(&s, 7, 4, &odd, 1000);
	assert_int_equal(s.vms[7].generation, 4);
	assert_int_equal(s.vms[7].requests[ROUTE_FLAVOR_EC2][stats_code_index(200)], 0);
	assert_int_equal(s.vms[7].tokenless, 0);
	assert_int_equal(s.vms[7].requests[ROUTE_FLAVOR_GCE][STATS_CODES - 1], 1);
	free(s.vms);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_levels),
		cmocka_unit_test(test_line_format),
		cmocka_unit_test(test_limit),
		cmocka_unit_test(test_metrics_addresses),
		cmocka_unit_test(test_stats_counts_per_vm),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

/* test_etcd_json.c: what etcd 3.4's HTTP/JSON gateway sends, as `sync`
 * parses it (user/control/etcd_json.c): base64 both ways, a prefix's
 * range_end, range answers (int64 as strings, "more"), the watch stream's
 * messages (created, PUT without "type", DELETE, compacted, canceled,
 * errors) and input that is not what etcd sends.  The messages are the
 * gateway's own, captured from etcd 3.4.23. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "control/etcd.h"

#define ERRLEN 256

static void expect_b64(const char *plain, size_t len, const char *encoded)
{
	char *e = etcd_b64_encode(plain, len), *d;
	size_t got;

	assert_string_equal(e, encoded);
	d = etcd_b64_decode(e, &got);
	assert_non_null(d);
	assert_int_equal(got, len);
	assert_memory_equal(d, plain, len);
	assert_int_equal(d[len], '\0');
	free(e);
	free(d);
}

static void test_base64(void **state)
{
	size_t len;

	(void)state;
	expect_b64("", 0, "");
	expect_b64("/p/a", 4, "L3AvYQ==");
	expect_b64("/p/ab", 5, "L3AvYWI=");
	expect_b64("/p/abc", 6, "L3AvYWJj");
	expect_b64("a\0b", 3, "YQBi");
	assert_null(etcd_b64_decode("L3AvYQ=", &len)); /* not a multiple of 4 */
	assert_null(etcd_b64_decode("L3A*YQ==", &len));
}

static void test_prefix_end(void **state)
{
	char *end;

	(void)state;
	assert_int_equal(etcd_prefix_end("/imds/hosts/a/vms/", &end), 0);
	assert_string_equal(end, "/imds/hosts/a/vms0"); /* '/' + 1 */
	free(end);
	assert_int_equal(etcd_prefix_end("a\xff\xff", &end), 0);
	assert_string_equal(end, "b");
	free(end);
	assert_int_equal(etcd_prefix_end("\xff", &end), -EINVAL);
}

static void test_range(void **state)
{
	static const char page[] =
		"{\"header\":{\"cluster_id\":\"15118495548433857066\",\"member_id\":\"13668033151171901709\","
		"\"revision\":\"3\",\"raft_term\":\"2\"},\"kvs\":[{\"key\":\"L3AvYQ==\",\"create_revision\":\"2\","
		"\"mod_revision\":\"2\",\"version\":\"1\",\"value\":\"eyJ4IjoxfQ==\"}],\"more\":true,\"count\":\"2\"}";
	static const char empty[] = "{\"header\":{\"revision\":\"7\"}}";
	static const char compacted[] = "{\"error\":\"etcdserver: mvcc: required revision has been compacted\","
					"\"message\":\"etcdserver: mvcc: required revision has been compacted\",\"code\":11}";
	struct etcd_kvs kvs = { 0 };
	char err[ERRLEN] = "";
	int64_t revision = 0;
	bool more = false;

	(void)state;
	assert_int_equal(etcd_parse_range(page, strlen(page), &kvs, &more, &revision, err, sizeof(err)), 0);
	assert_true(more);
	assert_int_equal(revision, 3);
	assert_int_equal(kvs.n, 1);
	assert_string_equal(kvs.kv[0].key, "/p/a");
	assert_string_equal(kvs.kv[0].value, "{\"x\":1}");
	assert_int_equal(kvs.kv[0].value_len, 7);
	assert_int_equal(kvs.kv[0].mod_revision, 2);
	assert_false(kvs.kv[0].deleted);
	assert_int_equal(etcd_parse_range(empty, strlen(empty), &kvs, &more, &revision, err, sizeof(err)), 0);
	assert_false(more);
	assert_int_equal(revision, 7);
	assert_int_equal(kvs.n, 1);
	assert_int_equal(etcd_parse_range(compacted, strlen(compacted), &kvs, &more, &revision, err, sizeof(err)),
			 -EPROTO);
	assert_string_equal(err, "etcd: etcdserver: mvcc: required revision has been compacted");
	assert_int_equal(etcd_parse_range("<html>", 6, &kvs, &more, &revision, err, sizeof(err)), -EPROTO);
	assert_string_equal(err, "etcd's range answer is not JSON: <html>");
	etcd_kvs_free(&kvs);
}

static enum etcd_watch_state parse(const char *line, struct etcd_kvs *ev, bool *created, int64_t *compact, char *err)
{
	return etcd_parse_watch_message(line, strlen(line), ev, created, compact, err, ERRLEN);
}

static void test_watch_messages(void **state)
{
	struct etcd_kvs ev = { 0 };
	char err[ERRLEN] = "";
	bool created = false;
	int64_t compact = 0;

	(void)state;
	assert_int_equal(parse("{\"result\":{\"header\":{\"revision\":\"3\"},\"created\":true}}", &ev, &created,
			       &compact, err),
			 ETCD_WATCH_RUNNING);
	assert_true(created);
	assert_int_equal(ev.n, 0);
	/* A PUT has no "type" (the enum's zero value is left out). */
	assert_int_equal(parse("{\"result\":{\"header\":{\"revision\":\"4\"},\"events\":[{\"kv\":{\"key\":\"L3AvYQ==\","
			       "\"mod_revision\":\"3\",\"value\":\"eyJ4IjoxfQ==\"}},{\"type\":\"DELETE\",\"kv\":"
			       "{\"key\":\"L3AvYg==\",\"mod_revision\":\"4\"}}]}}",
			       &ev, &created, &compact, err),
			 ETCD_WATCH_RUNNING);
	assert_int_equal(ev.n, 2);
	assert_false(ev.kv[0].deleted);
	assert_string_equal(ev.kv[0].value, "{\"x\":1}");
	assert_true(ev.kv[1].deleted);
	assert_string_equal(ev.kv[1].key, "/p/b");
	assert_int_equal(ev.kv[1].value_len, 0);
	assert_int_equal(ev.kv[1].mod_revision, 4);
	assert_int_equal(parse("{\"result\":{\"header\":{\"raft_term\":\"2\"},\"canceled\":true,\"compact_revision\":\"3\"}}",
			       &ev, &created, &compact, err),
			 ETCD_WATCH_COMPACTED);
	assert_int_equal(compact, 3);
	assert_int_equal(parse("{\"result\":{\"canceled\":true,\"cancel_reason\":\"permission denied\"}}", &ev,
			       &created, &compact, err),
			 ETCD_WATCH_ENDED);
	assert_string_equal(err, "etcd canceled the watch: permission denied");
	assert_int_equal(parse("{\"error\":{\"grpc_code\":16,\"http_code\":401,\"message\":\"etcdserver: invalid auth "
			       "token\"}}",
			       &ev, &created, &compact, err),
			 ETCD_WATCH_ENDED);
	assert_string_equal(err, "etcd: etcdserver: invalid auth token");
	assert_int_equal(parse("{\"result\":{\"events\":[{\"kv\":{\"key\":\"!!!!\"}}]}}", &ev, &created, &compact, err),
			 ETCD_WATCH_ENDED);
	assert_string_equal(err, "etcd sent a key or value that is not base64");
	assert_int_equal(parse("{\"result\":{\"events\":[{\"kv\":{}}]}}", &ev, &created, &compact, err),
			 ETCD_WATCH_ENDED);
	assert_string_equal(err, "etcd sent a key-value without a key");
	assert_int_equal(parse("{\"result\"", &ev, &created, &compact, err), ETCD_WATCH_ENDED);
	assert_string_equal(err, "etcd's watch stream sent a line that is not JSON: {\"result\"");
	assert_int_equal(ev.n, 2);
	etcd_kvs_free(&ev);
	assert_int_equal(ev.n, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_base64),
		cmocka_unit_test(test_prefix_end),
		cmocka_unit_test(test_range),
		cmocka_unit_test(test_watch_messages),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

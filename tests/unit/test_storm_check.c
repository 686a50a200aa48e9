/* test_storm_check.c: imds-storm's checker on its own, without a lab.  Two
 * VMs are parsed from JSON; each answer a crawl can get is checked against
 * VM 1: the right one passes, a wrong body, a wrong status, a listing
 * that lacks an entry and a leaf of VM 2 are caught.  Then the crawl's
 * remembered verdicts and the walk a listing starts. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compile/vmconf.h"
#include "storm/check.h"
#include "storm/crawl.h"
#include "storm/stats.h"

static const char vms_json[] =
	"{\"vms\": [\n"
	" {\"instance-id\": \"i-1\", \"mac\": \"52:54:00:00:00:01\", \"ipv4\": \"10.0.0.1\",\n"
	"  \"meta-data\": {\"hostname\": \"vm1.example\", \"ami-launch-index\": 0,\n"
	"                \"placement\": {\"region\": \"eu-west-1\", \"availability-zone\": \"eu-west-1a\"},\n"
	"                \"security-groups\": [\"default\", \"web\"]},\n"
	"  \"user-data\": \"#!/bin/sh\\necho vm1\\n\",\n"
	"  \"public-keys\": [{\"name\": \"alice\", \"openssh-key\": \"ssh-ed25519 AAAA alice\"}]},\n"
	" {\"instance-id\": \"i-2\", \"mac\": \"52:54:00:00:00:02\", \"ipv4\": \"10.0.0.2\",\n"
	"  \"meta-data\": {\"hostname\": \"vm2.example\"}}\n"
	"]}\n";

struct fixture {
	struct vm_set set;
	struct storm_vm vm1, vm2;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	struct conf_error err;

	assert_non_null(f);
	if (vmconf_parse("t.json", vms_json, strlen(vms_json), &f->set, &err)) {
		fprintf(stderr, "%s\n", err.text);
		free(f);
		return -1;
	}
	storm_vm_init(&f->vm1, &f->set.vms[0], 1);
	storm_vm_init(&f->vm2, &f->set.vms[1], 2);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	vmconf_free(&f->set);
	free(f);
	return 0;
}

/* The verdict on rel with status and body (a C string). */
static int check(const struct storm_vm *vm, const char *rel, int status, const char *body)
{
	struct outbuf b = { 0 };
	int kind;

	assert_int_equal(outbuf_append(&b, body, strlen(body)), 0);
	kind = storm_check_answer(vm, rel, status, &b);
	outbuf_free(&b);
	return kind;
}

static void test_vm_identity(void **state)
{
	struct fixture *f = *state;

	assert_string_equal(f->vm1.ipv4, "10.0.0.1");
	assert_string_equal(f->vm1.mac, "52:54:00:00:00:01");
	assert_int_equal(f->vm1.index, 1);
	assert_int_equal(f->vm1.nsfd, -1);
}

static void test_operator_leaf(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(check(&f->vm1, "meta-data/hostname", 200, "vm1.example"), 0);
	assert_int_equal(check(&f->vm1, "meta-data/placement/region", 200, "eu-west-1"), 0);
	/* a wrong body, a prefix, a trailing newline */
	assert_int_equal(check(&f->vm1, "meta-data/hostname", 200, "vm1.exampl"), SE_WRONG_DATA);
	assert_int_equal(check(&f->vm1, "meta-data/hostname", 200, "vm1.example\n"), SE_WRONG_DATA);
	assert_int_equal(check(&f->vm1, "meta-data/placement/region", 200, "us-east-1"), SE_WRONG_DATA);
	/* an array is one line per element */
	assert_int_equal(check(&f->vm1, "meta-data/security-groups", 200, "default\nweb"), 0);
	assert_int_equal(check(&f->vm1, "meta-data/security-groups", 200, "default"), SE_WRONG_DATA);
	/* numbers are the compiler's spelling: not compared */
	assert_int_equal(check(&f->vm1, "meta-data/ami-launch-index", 200, "anything"), 0);
}

static void test_wrong_status(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(check(&f->vm1, "meta-data/hostname", 404, ""), SE_STATUS);
	assert_int_equal(check(&f->vm1, "meta-data/hostname", 500, "vm1.example"), SE_STATUS);
	assert_int_equal(check(&f->vm1, "meta-data/", 401, ""), SE_STATUS);
	assert_int_equal(check(&f->vm1, "dynamic/instance-identity/signature", 429, ""), SE_STATUS);
	/* paths without a rule only need a 200 */
	assert_int_equal(check(&f->vm1, "dynamic/instance-identity/signature", 200, "xyz"), 0);
	assert_int_equal(check(&f->vm1, "meta-data/services/domain", 200, "amazonaws.com"), 0);
}

static void test_derived_leaves(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(check(&f->vm1, "meta-data/instance-id", 200, "i-1"), 0);
	assert_int_equal(check(&f->vm1, "meta-data/local-ipv4", 200, "10.0.0.1"), 0);
	assert_int_equal(check(&f->vm1, "meta-data/mac", 200, "52:54:00:00:00:01"), 0);
	assert_int_equal(check(&f->vm1, "meta-data/network/interfaces/macs/52:54:00:00:00:01/mac", 200,
			       "52:54:00:00:00:01"), 0);
	assert_int_equal(check(&f->vm1, "meta-data/network/interfaces/macs/52:54:00:00:00:01/local-ipv4s", 200,
			       "10.0.0.1"), 0);
	assert_int_equal(check(&f->vm1, "meta-data/network/interfaces/macs/52:54:00:00:00:01/subnet-id", 200,
			       "subnet-1"), 0);
	assert_int_equal(check(&f->vm1, "meta-data/local-ipv4", 200, "10.0.0.11"), SE_WRONG_DATA);
	assert_int_equal(check(&f->vm1, "meta-data/network/interfaces/macs/52:54:00:00:00:01/local-ipv4s", 200,
			       "10.0.0.9"), SE_WRONG_DATA);
	/* a macs/ entry that is not the VM's MAC is wrong, whatever it holds */
	assert_int_equal(check(&f->vm1, "meta-data/network/interfaces/macs/52:54:00:00:00:02/subnet-id", 200,
			       "subnet-1"), SE_WRONG_DATA);
}

static void test_keys(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(check(&f->vm1, "meta-data/public-keys/", 200, "0=alice"), 0);
	assert_int_equal(check(&f->vm1, "meta-data/public-keys/", 200, "0=bob"), SE_WRONG_DATA);
	assert_int_equal(check(&f->vm1, "meta-data/public-keys/", 200, "1=alice"), SE_WRONG_DATA);
	assert_int_equal(check(&f->vm1, "meta-data/public-keys/0/openssh-key", 200, "ssh-ed25519 AAAA alice"), 0);
	assert_int_equal(check(&f->vm1, "meta-data/public-keys/0/openssh-key", 200, "ssh-ed25519 BBBB bob"),
			 SE_WRONG_DATA);
	/* a key the VM does not have: nothing to compare */
	assert_int_equal(check(&f->vm1, "meta-data/public-keys/1/openssh-key", 200, "x"), 0);
}

static void test_listings(void **state)
{
	struct fixture *f = *state;
	static const char full[] = "ami-launch-index\nhostname\ninstance-id\nlocal-ipv4\nmac\nnetwork/\n"
				   "placement/\npublic-keys/\nsecurity-groups\nservices/";

	assert_int_equal(check(&f->vm1, "meta-data/", 200, full), 0);
	/* a derived entry missing */
	assert_int_equal(check(&f->vm1, "meta-data/", 200,
			       "ami-launch-index\nhostname\ninstance-id\nlocal-ipv4\nplacement/\npublic-keys/\n"
			       "security-groups"),
			 SE_WRONG_DATA);
	/* an operator's entry missing */
	assert_int_equal(check(&f->vm1, "meta-data/", 200,
			       "ami-launch-index\ninstance-id\nlocal-ipv4\nmac\nplacement/\npublic-keys/\n"
			       "security-groups"),
			 SE_WRONG_DATA);
	/* a directory listed as a leaf */
	assert_int_equal(check(&f->vm1, "meta-data/", 200,
			       "ami-launch-index\nhostname\ninstance-id\nlocal-ipv4\nmac\nplacement\npublic-keys/\n"
			       "security-groups"),
			 SE_WRONG_DATA);
	assert_int_equal(check(&f->vm1, "meta-data/placement/", 200, "availability-zone\nregion"), 0);
	assert_int_equal(check(&f->vm1, "meta-data/placement/", 200, "availability-zone\nregion\n"), 0);
	assert_int_equal(check(&f->vm1, "meta-data/placement/", 200, "availability-zone"), SE_WRONG_DATA);
	assert_int_equal(check(&f->vm1, "meta-data/placement/", 200, "availability-zone\nregions"), SE_WRONG_DATA);
	/* VM 2 has no keys: its meta-data/ need not list public-keys/ */
	assert_int_equal(check(&f->vm2, "meta-data/", 200, "hostname\ninstance-id\nlocal-ipv4\nmac"), 0);
	/* listings outside meta-data only need a 200 */
	assert_int_equal(check(&f->vm1, "dynamic/instance-identity", 200, "document\nsignature"), 0);
}

static void test_user_data(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(check(&f->vm1, "user-data", 200, "#!/bin/sh\necho vm1\n"), 0);
	assert_int_equal(check(&f->vm1, "user-data", 200, "#!/bin/sh\necho vm2\n"), SE_WRONG_DATA);
	assert_int_equal(check(&f->vm1, "user-data", 404, ""), SE_STATUS);
	/* VM 2 has none: 404 is right, anything else is a wrong status */
	assert_int_equal(check(&f->vm2, "user-data", 404, ""), 0);
	assert_int_equal(check(&f->vm2, "user-data", 200, ""), SE_STATUS);
}

static void test_document(void **state)
{
	struct fixture *f = *state;
	const char *rel = "dynamic/instance-identity/document";

	assert_int_equal(check(&f->vm1, rel, 200, "{\"instanceId\": \"i-1\", \"privateIp\": \"10.0.0.1\"}"), 0);
	assert_int_equal(check(&f->vm1, rel, 200, "{\"instanceId\": \"i-1\"}"), 0);
	assert_int_equal(check(&f->vm1, rel, 200, "{\"instanceId\": \"i-2\", \"privateIp\": \"10.0.0.1\"}"),
			 SE_WRONG_DATA);
	assert_int_equal(check(&f->vm1, rel, 200, "{\"instanceId\": \"i-1\", \"privateIp\": \"10.0.0.2\"}"),
			 SE_WRONG_DATA);
	assert_int_equal(check(&f->vm1, rel, 200, "{\"privateIp\": \"10.0.0.1\"}"), SE_WRONG_DATA);
	assert_int_equal(check(&f->vm1, rel, 200, "not json"), SE_WRONG_DATA);
	assert_int_equal(check(&f->vm1, rel, 200, ""), SE_WRONG_DATA);
}

/* What a store that swapped two VMs serves: VM 2's answers reach VM 1. */
static void test_other_vms_leaves(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(check(&f->vm1, "meta-data/hostname", 200, "vm2.example"), SE_WRONG_DATA);
	assert_int_equal(check(&f->vm1, "meta-data/instance-id", 200, "i-2"), SE_WRONG_DATA);
	assert_int_equal(check(&f->vm1, "meta-data/mac", 200, "52:54:00:00:00:02"), SE_WRONG_DATA);
	assert_int_equal(check(&f->vm2, "meta-data/hostname", 200, "vm1.example"), SE_WRONG_DATA);
	assert_int_equal(check(&f->vm2, "meta-data/instance-id", 200, "i-1"), SE_WRONG_DATA);
	assert_int_equal(check(&f->vm2, "dynamic/instance-identity/document", 200,
			       "{\"instanceId\": \"i-1\", \"privateIp\": \"10.0.0.1\"}"),
			 SE_WRONG_DATA);
}

static void test_paths(void **state)
{
	(void)state;
	assert_string_equal(storm_rel_path("2021-03-23", "/2021-03-23/meta-data/"), "meta-data/");
	assert_string_equal(storm_rel_path("2021-03-23", "/2021-03-230/meta-data/"), "/2021-03-230/meta-data/");
	assert_string_equal(storm_rel_path("latest", "/latest/api/token"), "api/token");
	assert_true(storm_is_listing("meta-data/"));
	assert_true(storm_is_listing("dynamic/instance-identity"));
	assert_false(storm_is_listing("meta-data/hostname"));
	assert_false(storm_is_listing(""));
	assert_true(storm_check_is_costly("meta-data/hostname"));
	assert_true(storm_check_is_costly("dynamic/instance-identity/document"));
	assert_false(storm_check_is_costly("user-data"));
	assert_false(storm_check_is_costly("dynamic/instance-identity/signature"));
}

static void test_escape(void **state)
{
	struct outbuf b = { 0 };
	char out[512];
	char big[150];

	(void)state;
	assert_int_equal(outbuf_append(&b, "a\nb\"c\\\x01", 7), 0);
	storm_check_escape(&b, out, sizeof(out));
	assert_string_equal(out, "a\\nb\\x22c\\x5c\\x01");
	outbuf_reset(&b);
	memset(big, 'x', sizeof(big));
	assert_int_equal(outbuf_append(&b, big, sizeof(big)), 0);
	storm_check_escape(&b, out, sizeof(out));
	assert_int_equal(strlen(out), 103);
	assert_string_equal(out + 100, "...");
	outbuf_free(&b);
}

/* --- the crawl: remembered verdicts and the walk --- */

static const struct storm_opts crawl_opts = { .mode = STORM_KEEPALIVE, .api_version = "2021-03-23" };

static int crawl_answer(struct storm_crawl *cr, const struct storm_vm *vm, int status, const char *body)
{
	struct outbuf b = { 0 };
	int kind;

	assert_int_equal(outbuf_append(&b, body, strlen(body)), 0);
	kind = storm_crawl_verdict(cr, storm_crawl_current(cr), vm, status, &b);
	outbuf_free(&b);
	return kind;
}

static void test_crawl_roots(void **state)
{
	struct storm_crawl cr = { .o = &crawl_opts };

	(void)state;
	assert_int_equal(storm_crawl_init(&cr, 1), 0);
	assert_int_equal(cr.qn, 5);
	assert_int_equal(cr.q[0]->method, STORM_PUT);
	assert_string_equal(cr.q[0]->path, "/latest/api/token");
	assert_string_equal(cr.q[1]->path, "/2021-03-23/meta-data/instance-id");
	assert_string_equal(cr.q[2]->path, "/2021-03-23/meta-data/");
	assert_string_equal(cr.q[3]->path, "/2021-03-23/user-data");
	assert_string_equal(cr.q[4]->path, "/2021-03-23/dynamic/instance-identity");
	assert_non_null(strstr(cr.q[1]->req, "GET /2021-03-23/meta-data/instance-id HTTP/1.1\r\n"));
	assert_non_null(strstr(cr.q[1]->req, "Connection: keep-alive\r\n"));
	/* a steady client's next crawl: same nodes, no PUT */
	assert_int_equal(storm_crawl_init(&cr, 0), 0);
	assert_int_equal(cr.qn, 4);
	assert_string_equal(cr.q[0]->path, "/2021-03-23/meta-data/instance-id");
	storm_crawl_free(&cr);
}

/* A listing queues its entries right after itself, subdirectories first,
 * keys as N/openssh-key, and never security-credentials. */
static void test_crawl_walk(void **state)
{
	struct fixture *f = *state;
	struct storm_crawl cr = { .o = &crawl_opts };
	static const char *const want[] = { "iam/", "placement/", "public-keys/", "ami-launch-index", "hostname", "mac",
					    "security-groups", "instance-id", "local-ipv4" };

	assert_int_equal(storm_crawl_init(&cr, 0), 0);
	cr.qpos = 1; /* meta-data/ */
	assert_int_equal(crawl_answer(&cr, &f->vm1, 200,
				      "ami-launch-index\nhostname\niam/\nmac\nplacement/\npublic-keys/\n"
				      "security-groups\ninstance-id\nlocal-ipv4"),
			 0);
	assert_int_equal(cr.qn, 4 + 9);
	for (unsigned i = 0; i < 9; i++) {
		char path[128];

		snprintf(path, sizeof(path), "/2021-03-23/meta-data/%s", want[i]);
		assert_string_equal(cr.q[2 + i]->path, path);
	}
	assert_ptr_equal(cr.q[9], cr.q[0]); /* one node per path */
	assert_string_equal(cr.q[11]->path, "/2021-03-23/user-data");
	cr.qpos = 2; /* iam/ */
	assert_int_equal(crawl_answer(&cr, &f->vm1, 200, "info\nsecurity-credentials/"), 0);
	assert_string_equal(cr.q[3]->path, "/2021-03-23/meta-data/iam/info");
	assert_string_equal(cr.q[4]->path, "/2021-03-23/meta-data/placement/");
	cr.qpos = 5; /* public-keys/ */
	assert_string_equal(storm_crawl_current(&cr)->path, "/2021-03-23/meta-data/public-keys/");
	assert_int_equal(crawl_answer(&cr, &f->vm1, 200, "0=alice"), 0);
	assert_string_equal(cr.q[6]->path, "/2021-03-23/meta-data/public-keys/0/openssh-key");
	storm_crawl_free(&cr);
}

/* The same answer gets the same verdict (and the same entries queued)
 * from memory; a different answer is checked again. */
static void test_crawl_memo(void **state)
{
	struct fixture *f = *state;
	struct storm_crawl cr = { .o = &crawl_opts };
	struct storm_node *nd;

	assert_int_equal(storm_crawl_init(&cr, 0), 0);
	nd = cr.q[0]; /* meta-data/instance-id */
	assert_int_equal(crawl_answer(&cr, &f->vm1, 200, "i-2"), SE_WRONG_DATA);
	assert_true(nd->memo_set);
	assert_int_equal(crawl_answer(&cr, &f->vm1, 200, "i-2"), SE_WRONG_DATA);
	assert_int_equal(crawl_answer(&cr, &f->vm1, 200, "i-1"), 0);
	assert_int_equal(crawl_answer(&cr, &f->vm1, 200, "i-1"), 0);
	assert_int_equal(crawl_answer(&cr, &f->vm1, 404, "i-1"), SE_STATUS);
	/* a remembered listing queues its entries again */
	cr.qpos = 1;
	assert_int_equal(crawl_answer(&cr, &f->vm2, 200, "hostname\ninstance-id\nlocal-ipv4\nmac"), 0);
	assert_int_equal(cr.qn, 4 + 4);
	assert_int_equal(crawl_answer(&cr, &f->vm2, 200, "hostname\ninstance-id\nlocal-ipv4\nmac"), 0);
	assert_int_equal(cr.qn, 4 + 8);
	assert_string_equal(cr.q[2]->path, "/2021-03-23/meta-data/hostname");
	storm_crawl_free(&cr);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_vm_identity),   cmocka_unit_test(test_operator_leaf),
		cmocka_unit_test(test_wrong_status),  cmocka_unit_test(test_derived_leaves),
		cmocka_unit_test(test_keys),	      cmocka_unit_test(test_listings),
		cmocka_unit_test(test_user_data),     cmocka_unit_test(test_document),
		cmocka_unit_test(test_other_vms_leaves), cmocka_unit_test(test_paths),
		cmocka_unit_test(test_escape),	      cmocka_unit_test(test_crawl_roots),
		cmocka_unit_test(test_crawl_walk),    cmocka_unit_test(test_crawl_memo),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}

/* test_flavors.c: what the OpenStack, GCE and Azure flavors share, without
 * sockets: which requests are a flavor's, sections enabling flavors, binary
 * user data, the framing (Server, Connection), tags, and a walk of every
 * flavor's tree.  Each flavor's own API is in test_flavor_<name>.c; the
 * VMs and request helpers in flavor_fixture.h. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "flavor_fixture.h"

/* Which requests are a flavor's: the first segment of the normalised path,
 * however the target is spelled; a flavor's name deeper in an EC2 path
 * does not count. */
static void test_classification(void **state)
{
	struct reply r;

	(void)state;
	get("http://169.254.169.254/openstack/latest/meta_data.json", NULL, &r);
	expect(&r, 200, NULL);
	expect_header(&r, "Content-Type", "application/json");
	reply_free(&r);
	get("//openstack//latest/./user_data", NULL, &r);
	expect(&r, 200, "#cloud-config\nruncmd:\n  - echo web-1 > /var/tmp/flavor.txt\n");
	reply_free(&r);
	get("/latest/../computeMetadata/v1/instance/name", GOOGLE, &r);
	expect(&r, 200, "web-1");
	reply_free(&r);
	get("/latest/meta-data/metadata", NULL, &r);
	expect(&r, 404, NULL);
	assert_non_null(strstr(r.body, "<title>404 - Not Found</title>")); /* EC2's page */
	reply_free(&r);
	get("/latest/meta-data/openstack/computeMetadata", GOOGLE, &r);
	expect(&r, 404, NULL);
	assert_non_null(strstr(r.body, "<title>404 - Not Found</title>"));
	reply_free(&r);
	get("/metadataX/instance" AZV, AZ, &r);
	expect(&r, 404, NULL);
	assert_non_null(strstr(r.body, "<title>404 - Not Found</title>"));
	reply_free(&r);
	/* The flavor is picked from the decoded path, with or without other
	 * flavors' headers (path.c decodes before anyone looks). */
	get("/%6fpenstack/latest/user_data", NULL, &r);
	expect(&r, 200, "#cloud-config\nruncmd:\n  - echo web-1 > /var/tmp/flavor.txt\n");
	reply_free(&r);
	get("/%6fpenstack/latest/user_data", GOOGLE, &r);
	expect(&r, 200, "#cloud-config\nruncmd:\n  - echo web-1 > /var/tmp/flavor.txt\n");
	reply_free(&r);
}

/* A VM is served only in the flavors its record has a section for. */
static void test_sections_enable_flavors(void **state)
{
	struct reply r;

	(void)state;
	get_vm(&ec2_vm, "GET", "/openstack/latest/meta_data.json", NULL, &r);
	expect(&r, 404, NULL);
	reply_free(&r);
	get_vm(&ec2_vm, "GET", "/computeMetadata/v1/instance/id", GOOGLE, &r);
	expect(&r, 404, NULL);
	expect_header(&r, "Metadata-Flavor", "Google");
	reply_free(&r);
	get_vm(&ec2_vm, "GET", "/metadata/instance" AZV, AZ, &r);
	expect(&r, 404, NULL);
	reply_free(&r);
	/* not even the root ping */
	get_vm(&ec2_vm, "GET", "/", GOOGLE, &r);
	expect(&r, 200, NULL);
	assert_non_null(strstr(r.body, "latest"));
	reply_free(&r);
	get_vm(&ec2_vm, "GET", "/latest/meta-data/instance-id", NULL, &r);
	expect(&r, 200, "i-0f1a2b3c4d5e60003");
	reply_free(&r);
}

/* Binary user data: OpenStack serves it as is, GCE base64 with
 * user-data-encoding (cloud-init decodes it), Azure base64 as always. */
static void test_binary_user_data(void **state)
{
	static const char text[] = "{\"vms\": [{\"instance-id\": \"i-1\", \"mac\": \"52:54:00:00:00:01\", "
				   "\"ipv4\": \"10.0.0.1\", \"user-data-base64\": \"AP/+YQ==\", "
				   "\"openstack\": {}, \"gce\": {}, \"azure\": {}}]}";
	struct vm_set set;
	struct conf_error err;
	struct vm_tree t;
	struct reply r;

	(void)state;
	assert_int_equal(vmconf_parse("t.json", text, strlen(text), &set, &err), 0);
	compile_vm(&set.vms[0], &t);
	get_vm(&t, "GET", "/openstack/latest/user_data", NULL, &r);
	assert_int_equal(r.status, 200);
	assert_int_equal(r.body_len, 4);
	assert_memory_equal(r.body, "\x00\xff\xfe" "a", 4);
	reply_free(&r);
	get_vm(&t, "GET", "/computeMetadata/v1/instance/attributes/?recursive=true", GOOGLE, &r);
	expect(&r, 200, "{\"user-data\":\"AP/+YQ==\",\"user-data-encoding\":\"base64\"}");
	reply_free(&r);
	get_vm(&t, "GET", "/metadata/instance/compute/userData" AZV "&format=text", AZ, &r);
	expect(&r, 200, "AP/+YQ==");
	reply_free(&r);
	free(t.img);
	vmconf_free(&set);
}

/* --- framing shared by the flavors --- */

/* Server: GCE names its own; OpenStack and Azure keep EC2ws. */
static void test_server_header(void **state)
{
	static const struct {
		const char *path, *headers, *server;
		int status;
	} cases[] = {
		{ "/computeMetadata/v1/instance/name", GOOGLE, "Metadata Server for VM", 200 },
		{ "/computeMetadata/v1/instance/name", NULL, "Metadata Server for VM", 403 },
		{ "/computeMetadata/v1/nothing", GOOGLE, "Metadata Server for VM", 404 },
		{ "/", GOOGLE, "Metadata Server for VM", 200 },
		{ "/", NULL, "EC2ws", 200 },
		{ "/openstack/latest/meta_data.json", NULL, "EC2ws", 200 },
		{ "/metadata/instance" AZV, AZ, "EC2ws", 200 },
		{ "/latest/meta-data/instance-id", NULL, "EC2ws", 200 },
	};
	struct reply r;

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		get(cases[i].path, cases[i].headers, &r);
		expect(&r, cases[i].status, NULL);
		expect_header(&r, "Server", cases[i].server);
		reply_free(&r);
	}
	get_vm(&full_vm, "PUT", "/computeMetadata/v1/instance/guest-attributes/hostkeys/rsa", GOOGLE, &r);
	expect(&r, 405, NULL);
	expect_header(&r, "Server", "Metadata Server for VM");
	reply_free(&r);
}

/* Every flavor's errors close the connection, as EC2's do; its answers
 * keep a keep-alive connection open. */
static void test_errors_close(void **state)
{
	static const struct {
		const char *method, *path, *headers;
		int status;
	} cases[] = {
		{ "GET", "/openstack/latest/meta_data.json", NULL, 200 },
		{ "GET", "/openstack/latest/password", NULL, 404 },
		{ "POST", "/openstack/latest/meta_data.json", NULL, 405 },
		{ "GET", "/computeMetadata/v1/instance/id", GOOGLE, 200 },
		{ "GET", "/computeMetadata/v1/instance/id", NULL, 403 },
		{ "GET", "/computeMetadata/v1/instance/id?alt=xml", GOOGLE, 400 },
		{ "GET", "/computeMetadata/v1/instance/nothing", GOOGLE, 404 },
		{ "DELETE", "/computeMetadata/v1/instance/id", GOOGLE, 405 },
		{ "GET", "/metadata/instance" AZV, AZ, 200 },
		{ "GET", "/metadata/instance" AZV, NULL, 400 },
		{ "GET", "/metadata/instance/compute/nothing" AZV, AZ, 404 },
		{ "DELETE", "/metadata/instance" AZV, AZ, 405 },
	};
	struct reply r;

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		bool err = cases[i].status >= 400;

		get_vm(&full_vm, cases[i].method, cases[i].path, cases[i].headers, &r);
		expect(&r, cases[i].status, NULL);
		if (r.res.close != err)
			fail_msg("%s %s: close %d, want %d", cases[i].method, cases[i].path, r.res.close, err);
		expect_header(&r, "Connection", err ? "close" : "keep-alive");
		reply_free(&r);
	}
}

/* Tags are given once, at the top level: Azure shows them whatever EC2's
 * instance-metadata-tags option says, OpenStack's meta starts from them,
 * GCE does not show them. */
static void test_tags_shared(void **state)
{
	static const char text[] = "{\"vms\": [{\"instance-id\": \"i-1\", \"mac\": \"52:54:00:00:00:01\", "
				   "\"ipv4\": \"10.0.0.1\", \"tags\": {\"Name\": \"a:b\", \"k:1\": \"v\"}, "
				   "\"openstack\": {}, \"azure\": {}}]}";
	struct vm_set set;
	struct conf_error err;
	struct vm_tree t;
	struct reply r;

	(void)state;
	assert_int_equal(vmconf_parse("t.json", text, strlen(text), &set, &err), 0);
	compile_vm(&set.vms[0], &t);
	get_vm(&t, "GET", "/latest/meta-data/tags/instance/Name", NULL, &r);
	expect(&r, 404, NULL); /* the EC2 option is off */
	reply_free(&r);
	get_vm(&t, "GET", "/metadata/instance/compute/tags" AZV "&format=text", AZ, &r);
	expect(&r, 200, "Name:a:b;k:1:v"); /* built as Azure builds it */
	reply_free(&r);
	get_vm(&t, "GET", "/metadata/instance/compute/tagsList" AZV, AZ, &r);
	expect(&r, 200, "[{\"name\":\"Name\",\"value\":\"a:b\"},{\"name\":\"k:1\",\"value\":\"v\"}]");
	reply_free(&r);
	get_vm(&t, "GET", "/openstack/latest/meta_data.json", NULL, &r);
	expect(&r, 200, NULL);
	assert_non_null(strstr(r.body, "\"meta\": {\"Name\": \"a:b\", \"k:1\": \"v\"}"));
	reply_free(&r);
	free(t.img);
	vmconf_free(&set);
	/* GCE: labels are not in its metadata server, instance/tags are
	 * network tags; the VM's tags are not shown there. */
	get("/computeMetadata/v1/instance/tags", GOOGLE, &r);
	expect(&r, 404, NULL);
	reply_free(&r);
	get("/computeMetadata/v1/instance/?recursive=true", GOOGLE, &r);
	expect(&r, 200, NULL);
	assert_null(strstr(r.body, "prod"));
	reply_free(&r);
	/* no tags: empty */
	get_vm(&bare_vm, "GET", "/metadata/instance/compute/tagsList" AZV, AZ, &r);
	expect(&r, 200, "[]");
	reply_free(&r);
	get_vm(&bare_vm, "GET", "/metadata/instance/compute/tags" AZV "&format=text", AZ, &r);
	expect(&r, 200, "");
	reply_free(&r);
}

/* --- the whole tree --- */

/* Walks every listing of a flavor from `root`: each listed entry answers
 * 200 and the walk reaches `min` entries at least. */
static void walk(const struct vm_tree *vm, const char *root, const char *query, const char *headers, int min)
{
	char *todo[512];
	int n = 0, seen = 0;

	todo[n++] = strdup(root);
	while (n > 0) {
		char *dir = todo[--n], path[1024];
		struct reply r;

		snprintf(path, sizeof(path), "%s%s", dir, query);
		get_vm(vm, "GET", path, headers, &r);
		if (r.status != 200)
			fail_msg("%s: %d", path, r.status);
		seen++;
		for (const char *p = r.body, *end = r.body + r.body_len; r.body_len && p <= end;) {
			const char *nl = memchr(p, '\n', (size_t)(end - p));
			size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);
			struct reply leaf;

			snprintf(path, sizeof(path), "%s%.*s", dir, (int)len, p);
			if (p[len - 1] == '/') {
				assert_true(n < 512);
				todo[n++] = strdup(path);
			} else {
				char full[1100];

				snprintf(full, sizeof(full), "%s%s", path, query);
				get_vm(vm, "GET", full, headers, &leaf);
				if (leaf.status != 200)
					fail_msg("%s: %d", full, leaf.status);
				seen++;
				reply_free(&leaf);
			}
			p += len + 1;
		}
		reply_free(&r);
		free(dir);
	}
	if (seen < min)
		fail_msg("walk of %s saw %d entries, want at least %d", root, seen, min);
}

static void test_walk_every_flavor(void **state)
{
	(void)state;
	walk(&full_vm, "/openstack/latest/", "", NULL, 6);
	walk(&full_vm, "/openstack/2013-10-17/", "", NULL, 4);
	walk(&full_vm, "/computeMetadata/v1/", "", GOOGLE, 30);
	walk(&bare_vm, "/computeMetadata/v1/", "", GOOGLE, 20);
	walk(&full_vm, "/metadata/instance/", AZV "&format=text", AZ, 30);
	walk(&bare_vm, "/metadata/instance/", AZV "&format=text", AZ, 20);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_classification),
		cmocka_unit_test(test_sections_enable_flavors),
		cmocka_unit_test(test_binary_user_data),
		cmocka_unit_test(test_server_header),
		cmocka_unit_test(test_errors_close),
		cmocka_unit_test(test_tags_shared),
		cmocka_unit_test(test_walk_every_flavor),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}

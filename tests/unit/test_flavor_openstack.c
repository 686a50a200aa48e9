/* test_flavor_openstack.c: the OpenStack flavor (route_openstack.c) without
 * sockets: the versions and the documents each has, meta_data.json,
 * user_data, network_data.json derived from the VM, vendor data, HEAD and
 * methods.  VM records go through the real parser and compiler, requests
 * through the real HTTP parser into route_request (flavor_fixture.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "flavor_fixture.h"

static void test_openstack_versions(void **state)
{
	struct reply r;

	(void)state;
	get("/openstack", NULL, &r);
	expect(&r, 200, "2012-08-10\n2013-04-04\n2013-10-17\n2015-10-15\n2016-06-30\n2016-10-06\n2017-02-22\n"
			"2018-08-27\n2020-10-14\nlatest");
	reply_free(&r);
	get("/openstack/", NULL, &r);
	expect(&r, 200, NULL);
	reply_free(&r);
	get("/openstack/latest/", NULL, &r);
	expect(&r, 200, "meta_data.json\nuser_data\nvendor_data.json\nnetwork_data.json\nvendor_data2.json");
	reply_free(&r);
	/* A version lists (and serves) only the documents it had. */
	get("/openstack/2013-04-04", NULL, &r);
	expect(&r, 200, "meta_data.json\nuser_data");
	reply_free(&r);
	get("/openstack/2013-04-04/network_data.json", NULL, &r);
	expect(&r, 404, NULL);
	expect_header(&r, "Content-Type", "text/html");
	reply_free(&r);
	get("/openstack/2015-10-15/network_data.json", NULL, &r);
	expect(&r, 200, NULL);
	reply_free(&r);
	get("/openstack/2015-10-15/vendor_data2.json", NULL, &r);
	expect(&r, 404, NULL);
	reply_free(&r);
	get("/openstack/2019-01-01/meta_data.json", NULL, &r);
	expect(&r, 404, NULL);
	reply_free(&r);
	get("/openstack/latest/password", NULL, &r);
	expect(&r, 404, NULL);
	reply_free(&r);
	/* Without user data there is no user_data. */
	get_vm(&bare_vm, "GET", "/openstack/latest", NULL, &r);
	expect(&r, 200, "meta_data.json\nvendor_data.json\nnetwork_data.json\nvendor_data2.json");
	reply_free(&r);
	get_vm(&bare_vm, "GET", "/openstack/latest/user_data", NULL, &r);
	expect(&r, 404, NULL);
	reply_free(&r);
}

static void test_openstack_documents(void **state)
{
	struct reply r;
	json_t *md, *nd;

	(void)state;
	get("/openstack/2018-08-27/meta_data.json", NULL, &r);
	expect(&r, 200, NULL);
	expect_header(&r, "Content-Type", "application/json");
	md = body_json(&r);
	assert_string_equal(json_string_value(json_object_get(md, "uuid")), "6a1f2a0e-4c8b-4d6e-9f0a-1b2c3d4e5f60");
	assert_string_equal(json_string_value(json_object_get(md, "name")), "web-1");
	assert_string_equal(json_string_value(json_object_get(md, "hostname")), "web-1.example.internal");
	assert_string_equal(json_string_value(json_object_get(md, "availability_zone")), "eu-west-1a");
	assert_string_equal(json_string_value(json_object_get(md, "project_id")), "8f5f3c2e9b7a4d1c8e6f0a1b2c3d4e5f");
	assert_int_equal(json_integer_value(json_object_get(md, "launch_index")), 0);
	/* meta: the VM's tags, then openstack.meta */
	assert_int_equal(json_object_size(json_object_get(md, "meta")), 4);
	assert_string_equal(json_string_value(json_object_get(json_object_get(md, "meta"), "env")), "prod");
	assert_string_equal(json_string_value(json_object_get(json_object_get(md, "meta"), "team")), "web");
	assert_string_equal(json_string_value(json_object_get(json_object_get(md, "meta"), "role")), "web");
	assert_string_equal(json_string_value(json_object_get(json_object_get(md, "meta"), "dsmode")), "net");
	assert_string_equal(json_string_value(json_object_get(json_object_get(md, "public_keys"), "alice")),
			    example.vms[0].keys[0].openssh_key);
	assert_string_equal(json_string_value(json_object_get(json_array_get(json_object_get(md, "keys"), 0), "data")),
			    example.vms[0].keys[0].openssh_key);
	json_decref(md);
	reply_free(&r);

	get("/openstack/latest/user_data", NULL, &r);
	expect(&r, 200, "#cloud-config\nruncmd:\n  - echo web-1 > /var/tmp/flavor.txt\n");
	expect_header(&r, "Content-Type", "application/octet-stream");
	reply_free(&r);

	/* Derived from the VM's MAC and IPv4. */
	get_vm(&bare_vm, "GET", "/openstack/latest/network_data.json", NULL, &r);
	expect(&r, 200, "{\"links\": [{\"id\": \"interface0\", \"type\": \"phy\", \"ethernet_mac_address\": "
			"\"52:54:00:78:00:02\"}], \"networks\": [{\"id\": \"network0\", \"link\": \"interface0\", "
			"\"type\": \"ipv4\", \"ip_address\": \"10.78.0.12\", \"netmask\": \"255.255.255.0\", "
			"\"routes\": []}], \"services\": []}");
	nd = body_json(&r);
	json_decref(nd);
	reply_free(&r);

	/* Defaults: name and uuid from the instance-id, Nova's zone. */
	get_vm(&bare_vm, "GET", "/openstack/latest/meta_data.json", NULL, &r);
	md = body_json(&r);
	assert_string_equal(json_string_value(json_object_get(md, "uuid")), "i-0f1a2b3c4d5e60002");
	assert_string_equal(json_string_value(json_object_get(md, "name")), "i-0f1a2b3c4d5e60002");
	assert_string_equal(json_string_value(json_object_get(md, "hostname")), "db-1.example.internal");
	assert_string_equal(json_string_value(json_object_get(md, "availability_zone")), "nova");
	assert_int_equal(json_object_size(json_object_get(md, "public_keys")), 0);
	assert_int_equal(json_object_size(json_object_get(md, "meta")), 0);
	json_decref(md);
	reply_free(&r);

	get("/openstack/latest/vendor_data.json", NULL, &r);
	expect(&r, 200, "{\"cloud-init\": \"#cloud-config\\npackages: [htop]\\n\"}");
	reply_free(&r);
	/* HEAD: the headers of GET, no body */
	get_vm(&full_vm, "HEAD", "/openstack/latest/vendor_data.json", NULL, &r);
	expect(&r, 200, "");
	expect_header(&r, "Content-Length", "51");
	reply_free(&r);
	get_vm(&full_vm, "POST", "/openstack/latest/meta_data.json", NULL, &r);
	expect(&r, 405, "");
	expect_header(&r, "Allow", "GET, HEAD");
	reply_free(&r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_openstack_versions),
		cmocka_unit_test(test_openstack_documents),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}

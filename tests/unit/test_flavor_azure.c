/* test_flavor_azure.c: the Azure flavor (route_azure.c) without sockets:
 * the Metadata header and api-version rules, the instance document and its
 * leaves with format=text.  VM records go through the real parser and
 * compiler, requests through the real HTTP parser into route_request
 * (flavor_fixture.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "flavor_fixture.h"

static void test_azure_rules(void **state)
{
	struct reply r;

	(void)state;
	get("/metadata/instance" AZV, NULL, &r);
	expect(&r, 400, "{\"error\":\"Bad request. Required metadata header not specified\"}");
	reply_free(&r);
	get("/metadata/instance", AZ, &r);
	expect(&r, 400, NULL);
	assert_non_null(strstr(r.body, "api-version was not specified"));
	reply_free(&r);
	get("/metadata/instance?api-version=1999-01-01", AZ, &r);
	expect(&r, 400, NULL);
	reply_free(&r);
	get("/metadata/instance" AZV, AZ "X-Forwarded-For: 1.2.3.4\r\n", &r);
	expect(&r, 400, NULL);
	reply_free(&r);
	/* parameters are percent-decoded */
	get("/metadata/instance/compute/vmSize?format=text&api-version=2021%2D02%2D01", AZ, &r);
	expect(&r, 200, "Standard_D2s_v3");
	reply_free(&r);
	get("/metadata/versions", AZ, &r);
	expect(&r, 200, NULL);
	assert_non_null(strstr(r.body, "\"2021-02-01\""));
	reply_free(&r);
	get("/metadata/scheduledevents" AZV, AZ, &r);
	expect(&r, 404, "{\"error\":\"Not found\"}");
	reply_free(&r);
	/* The token endpoint of a VM without managed identities (the rest:
	 * test_flavor_azure_identity.c). */
	get("/metadata/identity/oauth2/token" AZV "&resource=https://management.azure.com/", AZ, &r);
	expect(&r, 400, "{\"error\":\"invalid_request\",\"error_description\":\"Identity not found\"}");
	reply_free(&r);
	get("/metadata/instance/compute/nothing" AZV, AZ, &r);
	expect(&r, 404, NULL);
	reply_free(&r);
	get_vm(&full_vm, "DELETE", "/metadata/instance" AZV, AZ, &r);
	expect(&r, 405, NULL);
	reply_free(&r);
}

static void test_azure_data(void **state)
{
	struct reply r;
	json_t *v, *compute, *iface;

	(void)state;
	get("/metadata/instance" AZV, AZ, &r);
	expect(&r, 200, NULL);
	expect_header(&r, "Content-Type", "application/json");
	v = body_json(&r);
	compute = json_object_get(v, "compute");
	assert_string_equal(json_string_value(json_object_get(compute, "name")), "web-1");
	assert_string_equal(json_string_value(json_object_get(compute, "location")), "westeurope");
	assert_string_equal(json_string_value(json_object_get(compute, "vmId")), "02aab8a4-74ef-476e-8182-f6d2ba4166a6");
	assert_string_equal(json_string_value(json_object_get(compute, "zone")), "eu-west-1a");
	/* the VM's top-level tags */
	assert_string_equal(json_string_value(json_object_get(compute, "tags")), "env:prod;team:web");
	assert_int_equal(json_array_size(json_object_get(compute, "tagsList")), 2);
	assert_string_equal(json_string_value(json_object_get(json_array_get(json_object_get(compute, "tagsList"), 1),
							      "value")),
			    "web");
	assert_string_equal(json_string_value(json_object_get(json_object_get(compute, "osProfile"), "computerName")),
			    "web-1.example.internal");
	assert_string_equal(json_string_value(json_object_get(compute, "userData")),
			    "I2Nsb3VkLWNvbmZpZwpydW5jbWQ6CiAgLSBlY2hvIHdlYi0xID4gL3Zhci90bXAvZmxhdm9yLnR4dAo=");
	iface = json_array_get(json_object_get(json_object_get(v, "network"), "interface"), 0);
	assert_string_equal(json_string_value(json_object_get(iface, "macAddress")), "525400780001");
	json_decref(v);
	reply_free(&r);

	get("/metadata/instance/compute/name" AZV "&format=text", AZ, &r);
	expect(&r, 200, "web-1");
	expect_header(&r, "Content-Type", "text/plain");
	reply_free(&r);
	get("/metadata/instance/network/interface/0/ipv4/ipAddress/0/privateIpAddress" AZV "&format=text", AZ, &r);
	expect(&r, 200, "10.78.0.11");
	reply_free(&r);
	get("/metadata/instance/compute/publicKeys/0/keyData?format=text&api-version=2023-07-01", AZ, &r);
	expect(&r, 200, example.vms[0].keys[0].openssh_key);
	reply_free(&r);
	/* Leaves need format=text. */
	get("/metadata/instance/compute/name" AZV, AZ, &r);
	expect(&r, 400, NULL);
	reply_free(&r);
	get("/metadata/instance/network/" AZV, AZ, &r);
	expect(&r, 200, "{\"interface\":[{\"ipv4\":{\"ipAddress\":[{\"privateIpAddress\":\"10.78.0.11\","
			"\"publicIpAddress\":\"203.0.113.7\"}],\"subnet\":[{\"address\":\"10.78.0.0\",\"prefix\":\"24\"}]},"
			"\"ipv6\":{\"ipAddress\":[]},\"macAddress\":\"525400780001\"}]}");
	reply_free(&r);
	get("/metadata/instance" AZV "&format=text", AZ, &r);
	expect(&r, 200, "compute/\nnetwork/");
	reply_free(&r);
}

/* Every directory answers its member of the instance document, exactly
 * as the whole document writes it (each is precompiled, issue 12). */
static void test_azure_parts_match_the_document(void **state)
{
	static const char *const parts[] = {
		"compute", "compute/osProfile", "compute/publicKeys", "compute/publicKeys/0", "compute/tagsList",
		"compute/tagsList/1", "network", "network/interface", "network/interface/0",
		"network/interface/0/ipv4", "network/interface/0/ipv4/ipAddress", "network/interface/0/ipv4/ipAddress/0",
		"network/interface/0/ipv4/subnet/0", "network/interface/0/ipv6", "network/interface/0/ipv6/ipAddress",
	};
	char path[256];
	struct reply r;
	json_t *doc;

	(void)state;
	get("/metadata/instance" AZV, AZ, &r);
	doc = body_json(&r);
	reply_free(&r);
	for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++) {
		json_t *v = doc;
		char *want, *copy = strdup(parts[i]), *save = NULL;

		for (char *seg = strtok_r(copy, "/", &save); v && seg; seg = strtok_r(NULL, "/", &save))
			v = json_is_array(v) ? json_array_get(v, strtoul(seg, NULL, 10)) : json_object_get(v, seg);
		assert_non_null(v);
		want = json_dumps(v, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENCODE_ANY);
		snprintf(path, sizeof(path), "/metadata/instance/%s" AZV, parts[i]);
		get(path, AZ, &r);
		expect(&r, 200, want);
		expect_header(&r, "Content-Type", "application/json");
		reply_free(&r);
		free(want);
		free(copy);
	}
	json_decref(doc);
	/* Only what the tree has: no index beyond, no other spelling of one. */
	get("/metadata/instance/network/interface/00" AZV, AZ, &r);
	expect(&r, 404, "{\"error\":\"Not found\"}");
	reply_free(&r);
	get("/metadata/instance/compute/tagsList/9" AZV, AZ, &r);
	expect(&r, 404, NULL);
	reply_free(&r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_azure_rules),
		cmocka_unit_test(test_azure_data),
		cmocka_unit_test(test_azure_parts_match_the_document),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}

/* test_flavors.c: the OpenStack, GCE and Azure flavors without sockets.
 * VM records go through the real parser (vmconf.c) and compiler
 * (compile.c), requests through the real HTTP parser into route_request,
 * whose table hands flavor requests to route_openstack.c, route_gce.c and
 * route_azure.c.  Run from the repository root (examples/vms-flavors.json). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "compile/compile.h"
#include "http/http.h"
#include "imds.h"
#include "http/router.h"
#include "route_harness.h"
#include "lib/tree.h"
#include "compile/vmconf.h"

#define EXAMPLE "examples/vms-flavors.json"
#define NOW 1700000000 /* 22:13:20 UTC: 2800 s left in the hour */
#define SA_EMAIL "web-1@example-project.iam.gserviceaccount.com"

static const uint8_t key[IMDS_TOKEN_KEY_LEN] = { 7, 1, 2, 3 };

static struct vm_set example;
static struct vm_tree full_vm, bare_vm, ec2_vm;

/* --- setup --- */

static void compile_vm(const struct vm_desc *vm, struct vm_tree *t)
{
	struct tree_meta meta = { .slot = 1, .last_modified = NOW - 100 };
	char err[512] = "";

	if (vm_compile(vm, &meta, &t->img, &t->len, err, sizeof(err)))
		fail_msg("compile: %s", err);
	assert_int_equal(tree_view_init(&t->view, t->img, t->len), 0);
}

static int setup(void **state)
{
	struct conf_error err;

	(void)state;
	if (vmconf_load_file(EXAMPLE, &example, &err))
		fail_msg("%s", err.text);
	assert_int_equal(example.n, 3);
	compile_vm(&example.vms[0], &full_vm);
	compile_vm(&example.vms[1], &bare_vm);
	compile_vm(&example.vms[2], &ec2_vm);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	free(full_vm.img);
	free(bare_vm.img);
	free(ec2_vm.img);
	vmconf_free(&example);
	return 0;
}

/* --- requests --- */

static void route_at(const struct vm_tree *vm, time_t now, const char *raw, struct reply *r)
{
	route_with_key(vm, key, now, raw, r);
}

/* GET `path` with extra header lines `headers` ("Name: v\r\n"...). */
static void get_vm(const struct vm_tree *vm, const char *method, const char *path, const char *headers,
		   struct reply *r)
{
	char raw[2048];

	snprintf(raw, sizeof(raw), "%s %s HTTP/1.1\r\nHost: 169.254.169.254\r\n%s\r\n", method, path,
		 headers ? headers : "");
	route_at(vm, NOW, raw, r);
}

static void get(const char *path, const char *headers, struct reply *r)
{
	get_vm(&full_vm, "GET", path, headers, r);
}

static void reply_free(struct reply *r)
{
	outbuf_free(&r->out);
}

static const char *header(const struct reply *r, const char *name, char *buf, size_t cap)
{
	char pat[128];
	const char *p, *end;

	snprintf(pat, sizeof(pat), "\r\n%s: ", name);
	p = strstr(r->out.data, pat);
	if (!p || p > r->body)
		return NULL;
	p += strlen(pat);
	end = strstr(p, "\r\n");
	snprintf(buf, cap, "%.*s", (int)(end - p), p);
	return buf;
}

static void expect_header(const struct reply *r, const char *name, const char *value)
{
	char buf[256];

	if (!header(r, name, buf, sizeof(buf)))
		fail_msg("header %s missing in:\n%s", name, r->out.data);
	assert_string_equal(buf, value);
}

static void expect(const struct reply *r, int status, const char *body)
{
	if (r->status != status)
		fail_msg("status %d, want %d:\n%s", r->status, status, r->out.data);
	if (body && (r->body_len != strlen(body) || memcmp(r->body, body, r->body_len)))
		fail_msg("body:\n%.*s\nwant:\n%s", (int)r->body_len, r->body, body);
}

static json_t *body_json(const struct reply *r)
{
	json_error_t err;
	json_t *v = json_loadb(r->body, r->body_len, JSON_DECODE_ANY, &err);

	if (!v)
		fail_msg("not JSON (%s): %.*s", err.text, (int)r->body_len, r->body);
	return v;
}

#define GOOGLE "Metadata-Flavor: Google\r\n"
#define AZ "Metadata: true\r\n"
#define AZV "?api-version=2021-02-01"

/* --- validation --- */

static void expect_parse_error(const char *section, const char *want)
{
	char *text;
	struct vm_set set;
	struct conf_error err;

	assert_true(asprintf(&text,
			     "{\"vms\": [\n{\n\"instance-id\": \"i-1\",\n\"mac\": \"52:54:00:00:00:01\",\n"
			     "\"ipv4\": \"10.0.0.1\",\n%s\n}\n]}\n",
			     section) > 0);
	assert_int_equal(vmconf_parse("t.json", text, strlen(text), &set, &err), -EINVAL);
	assert_string_equal(err.text, want);
	free(text);
}

static void test_section_errors(void **state)
{
	(void)state;
	expect_parse_error("\"gce\": []", "t.json:6:8: vms[0].gce: expected an object, not an array");
	expect_parse_error("\"gce\": {\"zone\": \"x\"}", "t.json:6:17: vms[0].gce.zone: unknown field");
	expect_parse_error("\"gce\": {\"attributes\": {\"a b\": \"x\"}}",
			   "t.json:6:31: vms[0].gce.attributes.a b: a key may only contain letters, digits, '-' and '_'");
	expect_parse_error("\"gce\": {\"attributes\": {\"k\": 1}}",
			   "t.json:6:29: vms[0].gce.attributes.k: expected a string, not an integer");
	expect_parse_error("\"gce\": {\"numeric-project-id\": -5}",
			   "t.json:6:31: vms[0].gce.numeric-project-id: -5 is negative");
	expect_parse_error("\"gce\": {\"service-accounts\": [{\"scopes\": []}]}",
			   "t.json:6:30: vms[0].gce.service-accounts[0]: missing required field \"email\"");
	expect_parse_error("\"gce\": {\"service-accounts\": [{\"email\": \"nobody\"}]}",
			   "t.json:6:40: vms[0].gce.service-accounts[0].email: \"nobody\" is not an e-mail address");
	expect_parse_error("\"gce\": {\"service-accounts\": [{\"email\": \"@json\"}]}",
			   "t.json:6:40: vms[0].gce.service-accounts[0].email: \"@json\" is not an e-mail address");
	expect_parse_error("\"gce\": {\"service-accounts\": [{\"email\": \"a@b\"}, {\"email\": \"a@b\"}]}",
			   "t.json:6:58: vms[0].gce.service-accounts[1].email: duplicates vms[0].gce.service-accounts[0].email");
	expect_parse_error("\"openstack\": {\"meta\": {\"k\": [\"v\"]}}",
			   "t.json:6:29: vms[0].openstack.meta.k: expected a string, not an array");
	expect_parse_error("\"openstack\": {\"uuid\": \"a b\"}",
			   "t.json:6:23: vms[0].openstack.uuid: must not contain '/' or spaces");
	expect_parse_error("\"openstack\": {\"network-data\": {\"links\": [1]}}",
			   "t.json:6:42: vms[0].openstack.network-data.links[0]: expected an object, not an integer");
	expect_parse_error("\"openstack\": {\"vendor-data\": 5}",
			   "t.json:6:30: vms[0].openstack.vendor-data: expected an object, an array or a string");
	expect_parse_error("\"azure\": {\"os-type\": \"BeOS\"}",
			   "t.json:6:22: vms[0].azure.os-type: \"BeOS\" is not \"Linux\" or \"Windows\"");
	expect_parse_error("\"azure\": {\"tags\": {\"a\": \"b\"}}",
			   "t.json:6:19: vms[0].azure.tags: give tags in vms[0].tags (Azure's compute.tags and tagsList show them)");
	expect_parse_error("\"azure\": {\"location\": \"\"}", "t.json:6:23: vms[0].azure.location: must be 1 to 255 bytes long");
}

/* Common fields given in a flavor section too: refused, not silently
 * shadowed. */
static void test_compile_conflict(void **state)
{
	static const char text[] = "{\"vms\": [{\"instance-id\": \"i-1\", \"mac\": \"52:54:00:00:00:01\", "
				   "\"ipv4\": \"10.0.0.1\", \"public-keys\": [{\"name\": \"a\", \"openssh-key\": \"k\"}], "
				   "\"gce\": {\"attributes\": {\"ssh-keys\": \"a:k\"}}}]}";
	struct vm_set set;
	struct conf_error err;
	char msg[512] = "";
	void *img = NULL;
	size_t len;

	(void)state;
	assert_int_equal(vmconf_parse("t.json", text, strlen(text), &set, &err), 0);
	assert_int_equal(vm_compile(&set.vms[0], NULL, &img, &len, msg, sizeof(msg)), -EINVAL);
	assert_string_equal(msg, "vms[0].gce.attributes.ssh-keys: ssh-keys is also given in vms[0].public-keys; keep one");
	assert_null(img);
	vmconf_free(&set);
}

/* openstack.meta adds to the tags; a key in both is refused. */
static void test_compile_meta_conflict(void **state)
{
	static const char text[] = "{\"vms\": [{\"instance-id\": \"i-1\", \"mac\": \"52:54:00:00:00:01\", "
				   "\"ipv4\": \"10.0.0.1\", \"tags\": {\"env\": \"prod\", \"role\": \"db\"}, "
				   "\"openstack\": {\"meta\": {\"dsmode\": \"net\", \"role\": \"web\"}}}]}";
	struct vm_set set;
	struct conf_error err;
	char msg[512] = "";
	void *img = NULL;
	size_t len;

	(void)state;
	assert_int_equal(vmconf_parse("t.json", text, strlen(text), &set, &err), 0);
	assert_int_equal(vm_compile(&set.vms[0], NULL, &img, &len, msg, sizeof(msg)), -EINVAL);
	assert_string_equal(msg, "vms[0].openstack.meta.role: role is also given in vms[0].tags; keep one");
	assert_null(img);
	vmconf_free(&set);
}

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

/* --- OpenStack --- */

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

/* --- GCE --- */

static void test_gce_headers(void **state)
{
	struct reply r;

	(void)state;
	get("/computeMetadata/v1/instance/id", NULL, &r);
	expect(&r, 403, NULL);
	expect_header(&r, "Metadata-Flavor", "Google");
	reply_free(&r);
	get("/computeMetadata/v1/instance/id", "Metadata-Flavor: google\r\n", &r);
	expect(&r, 403, NULL);
	reply_free(&r);
	get("/computeMetadata/v1/instance/id", GOOGLE "X-Forwarded-For: 10.0.0.9\r\n", &r);
	expect(&r, 403, NULL);
	expect_header(&r, "Metadata-Flavor", "Google");
	reply_free(&r);
	get("/computeMetadata/v1/instance/id", GOOGLE, &r);
	expect(&r, 200, "4520031799277581759");
	expect_header(&r, "Metadata-Flavor", "Google");
	expect_header(&r, "ETag", "000000006553f09c"); /* generation 0, NOW - 100 */
	reply_free(&r);
	/* google-auth pings the root with the header: GCE's answer, not EC2's. */
	get("/", "metadata-flavor: Google\r\n", &r);
	expect(&r, 200, "computeMetadata/");
	expect_header(&r, "Metadata-Flavor", "Google");
	reply_free(&r);
	get("/", NULL, &r);
	expect(&r, 200, NULL);
	assert_non_null(strstr(r.body, "2009-04-04"));
	reply_free(&r);
	get("/", "Metadata-Flavor: Other\r\n", &r);
	expect(&r, 200, NULL);
	assert_non_null(strstr(r.body, "2009-04-04"));
	reply_free(&r);
	get_vm(&full_vm, "PUT", "/computeMetadata/v1/instance/id", GOOGLE, &r);
	expect(&r, 405, NULL);
	expect_header(&r, "Metadata-Flavor", "Google");
	reply_free(&r);
}

static void test_gce_data(void **state)
{
	struct reply r;

	(void)state;
	/* gcp-metadata's probe: a directory without its slash. */
	get("/computeMetadata/v1/instance", GOOGLE, &r);
	expect(&r, 200, "attributes/\nhostname\nid\nmachine-type\nname\nnetwork-interfaces/\nservice-accounts/\nzone");
	reply_free(&r);
	get("/computeMetadata/v1/", GOOGLE, &r);
	expect(&r, 200, "instance/\nproject/");
	reply_free(&r);
	get("/computeMetadata/v1/instance/zone", GOOGLE, &r);
	expect(&r, 200, "projects/123456789012/zones/eu-west-1a");
	reply_free(&r);
	get("/computeMetadata/v1/instance/machine-type", GOOGLE, &r);
	expect(&r, 200, "projects/123456789012/machineTypes/e2-standard-2");
	reply_free(&r);
	get("/computeMetadata/v1/instance/attributes/ssh-keys", GOOGLE, &r);
	expect(&r, 200, "alice:ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJ+rx8ErVWVUA97vKtmNiu7Dd0cOMhK18lt6ooPHyyWU alice@workstation");
	reply_free(&r);
	get("/computeMetadata/v1/project/project-id", GOOGLE, &r);
	expect(&r, 200, "example-project");
	reply_free(&r);
	get("/computeMetadata/v1/instance/network-interfaces/0/ip", GOOGLE, &r);
	expect(&r, 200, "10.78.0.11");
	reply_free(&r);
	get("/computeMetadata/v1/instance/nothing", GOOGLE, &r);
	expect(&r, 404, NULL);
	expect_header(&r, "Metadata-Flavor", "Google");
	reply_free(&r);
	get("/computeMetadata/v2/instance/id", GOOGLE, &r);
	expect(&r, 404, NULL);
	reply_free(&r);
	get("/computeMetadata/v1/instance/id?alt=xml", GOOGLE, &r);
	expect(&r, 400, NULL);
	reply_free(&r);
}

static void test_gce_recursive(void **state)
{
	struct reply r;
	json_t *v;

	(void)state;
	/* cloud-init's spelling: capital T. */
	get("/computeMetadata/v1/project/attributes/?recursive=True", GOOGLE, &r);
	expect(&r, 200,
	       "{\"ssh-keys\":\"bob:ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAICohzMs6WuOc/3G0kxLKOPQCDb72sk2QfjjydJN2/3Rt bob@laptop\"}");
	expect_header(&r, "Content-Type", "application/json");
	expect_header(&r, "Metadata-Flavor", "Google");
	reply_free(&r);
	get("/computeMetadata/v1/instance/?recursive=TRUE&wait_for_change=false", GOOGLE, &r);
	expect(&r, 200, NULL);
	expect_header(&r, "Content-Type", "application/json");
	v = body_json(&r);
	assert_int_equal(json_integer_value(json_object_get(v, "id")), 4520031799277581759LL);
	assert_string_equal(json_string_value(json_object_get(v, "machineType")),
			    "projects/123456789012/machineTypes/e2-standard-2");
	assert_string_equal(
		json_string_value(json_object_get(json_array_get(json_object_get(v, "networkInterfaces"), 0), "mac")),
		"52:54:00:78:00:01");
	assert_non_null(json_object_get(json_object_get(v, "serviceAccounts"), SA_EMAIL));
	assert_non_null(json_object_get(json_object_get(v, "attributes"), "startup-script"));
	json_decref(v);
	reply_free(&r);
	get("/computeMetadata/v1/project?recursive=true&alt=text", GOOGLE, &r);
	expect(&r, 200,
	       "attributes/ssh-keys bob:ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAICohzMs6WuOc/3G0kxLKOPQCDb72sk2QfjjydJN2/3Rt bob@laptop\n"
	       "numeric-project-id 123456789012\nproject-id example-project");
	expect_header(&r, "Content-Type", "text/plain");
	reply_free(&r);
	get("/computeMetadata/v1/instance/service-accounts/default/?recursive=true&alt=text", GOOGLE, &r);
	expect(&r, 200,
	       "aliases default\nemail " SA_EMAIL "\nscopes https://www.googleapis.com/auth/cloud-platform\n"
	       "scopes https://www.googleapis.com/auth/logging.write");
	reply_free(&r);
	/* alt=json on leaves: numbers stay numbers, lists become arrays. */
	get("/computeMetadata/v1/project/numeric-project-id?alt=json", GOOGLE, &r);
	expect(&r, 200, "123456789012");
	expect_header(&r, "Content-Type", "application/json");
	reply_free(&r);
	get("/computeMetadata/v1/instance/hostname?alt=json", GOOGLE, &r);
	expect(&r, 200, "\"web-1.example.internal\"");
	reply_free(&r);
	get("/computeMetadata/v1/instance/service-accounts/default/scopes?alt=json", GOOGLE, &r);
	expect(&r, 200,
	       "[\"https://www.googleapis.com/auth/cloud-platform\",\"https://www.googleapis.com/auth/logging.write\"]");
	reply_free(&r);
	get("/computeMetadata/v1/instance/network-interfaces/?alt=json", GOOGLE, &r);
	expect(&r, 200, "[\"0/\"]");
	reply_free(&r);
	/* recursive on a leaf is the leaf */
	get("/computeMetadata/v1/instance/name?recursive=true", GOOGLE, &r);
	expect(&r, 200, NULL);
	reply_free(&r);
}

static void token_of(const struct vm_tree *vm, time_t now, const char *acct, char *out, size_t cap, long long *expires)
{
	char raw[512];
	struct reply r;
	json_t *v;

	snprintf(raw, sizeof(raw),
		 "GET /computeMetadata/v1/instance/service-accounts/%s/token HTTP/1.1\r\nHost: x\r\n" GOOGLE "\r\n", acct);
	route_at(vm, now, raw, &r);
	expect(&r, 200, NULL);
	expect_header(&r, "Content-Type", "application/json");
	v = body_json(&r);
	assert_string_equal(json_string_value(json_object_get(v, "token_type")), "Bearer");
	snprintf(out, cap, "%s", json_string_value(json_object_get(v, "access_token")));
	*expires = json_integer_value(json_object_get(v, "expires_in"));
	json_decref(v);
	reply_free(&r);
}

static void test_gce_token(void **state)
{
	char a[128], b[128], c[128], d[128];
	long long ea, eb, ec, ed;

	(void)state;
	token_of(&full_vm, NOW, "default", a, sizeof(a), &ea);
	token_of(&full_vm, NOW + 60, SA_EMAIL, b, sizeof(b), &eb);
	assert_int_equal(ea, 2800);
	assert_int_equal(eb, 2740);
	assert_string_equal(a, b); /* default is an alias of the e-mail */
	assert_int_equal(strncmp(a, "ya29.", 5), 0);
	/* Near the end of the hour the next hour's token is handed out. */
	token_of(&full_vm, NOW + 2600, "default", c, sizeof(c), &ec);
	assert_int_equal(ec, 3600 + 200);
	assert_string_not_equal(a, c);
	/* Another VM's token differs. */
	token_of(&bare_vm, NOW, "default", d, sizeof(d), &ed);
	assert_string_not_equal(a, d);
}

/* The bare VM's defaults: the name from the instance-id, the default
 * compute account, binary-safe user data. */
static void test_gce_defaults(void **state)
{
	struct reply r;

	(void)state;
	get_vm(&bare_vm, "GET", "/computeMetadata/v1/instance/service-accounts/", GOOGLE, &r);
	expect(&r, 200, "0-compute@developer.gserviceaccount.com/\ndefault/");
	reply_free(&r);
	get_vm(&bare_vm, "GET", "/computeMetadata/v1/instance/zone", GOOGLE, &r);
	expect(&r, 200, "projects/0/zones/local");
	reply_free(&r);
	get_vm(&bare_vm, "GET", "/computeMetadata/v1/instance/attributes/", GOOGLE, &r);
	expect(&r, 200, "");
	reply_free(&r);
	get_vm(&bare_vm, "GET", "/computeMetadata/v1/instance/name", GOOGLE, &r);
	expect(&r, 200, "i-0f1a2b3c4d5e60002");
	reply_free(&r);
}

/* --- Azure --- */

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
	get("/metadata/identity/oauth2/token" AZV, AZ, &r);
	expect(&r, 404, "{\"error\":\"Not found\"}");
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
		cmocka_unit_test(test_section_errors),
		cmocka_unit_test(test_compile_conflict),
		cmocka_unit_test(test_compile_meta_conflict),
		cmocka_unit_test(test_classification),
		cmocka_unit_test(test_openstack_versions),
		cmocka_unit_test(test_openstack_documents),
		cmocka_unit_test(test_gce_headers),
		cmocka_unit_test(test_gce_data),
		cmocka_unit_test(test_gce_recursive),
		cmocka_unit_test(test_gce_token),
		cmocka_unit_test(test_gce_defaults),
		cmocka_unit_test(test_azure_rules),
		cmocka_unit_test(test_azure_data),
		cmocka_unit_test(test_sections_enable_flavors),
		cmocka_unit_test(test_binary_user_data),
		cmocka_unit_test(test_server_header),
		cmocka_unit_test(test_errors_close),
		cmocka_unit_test(test_tags_shared),
		cmocka_unit_test(test_walk_every_flavor),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}

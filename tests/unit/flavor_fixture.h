/* flavor_fixture.h: the VMs of examples/vms-flavors.json compiled once per
 * test file (group setup and teardown), requests to them through
 * route_harness.h, and checks on the replies, for the OpenStack, GCE and
 * Azure unit tests.  Include after cmocka.h; run from the repository root. */
#ifndef IMDS_TEST_FLAVOR_FIXTURE_H
#define IMDS_TEST_FLAVOR_FIXTURE_H
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "compile/compile.h"
#include "compile/vmconf.h"
#include "imds.h"
#include "lib/tree.h"
#include "route_harness.h"

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

/* Compiles one VM record given as the text of its members after the
 * address fields ("\"options\": {...},\n\"gce\": {...}"). */
static __attribute__((unused)) void compile_record(const char *members, struct vm_tree *t)
{
	struct tree_meta meta = { .slot = 1, .last_modified = NOW - 100 };
	struct conf_error cerr;
	struct vm_set set;
	char *text, err[512] = "";

	assert_true(asprintf(&text,
			     "{\"vms\": [{\n\"instance-id\": \"i-1\",\n\"mac\": \"52:54:00:00:00:01\",\n"
			     "\"ipv4\": \"10.0.0.1\",\n%s}]}\n",
			     members) > 0);
	if (vmconf_parse("t.json", text, strlen(text), &set, &cerr))
		fail_msg("%s", cerr.text);
	if (vm_compile(&set.vms[0], &meta, &t->img, &t->len, err, sizeof(err)))
		fail_msg("compile: %s", err);
	assert_int_equal(tree_view_init(&t->view, t->img, t->len), 0);
	vmconf_free(&set);
	free(text);
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

/* unused by test_flavor_tokens.c */
static __attribute__((unused)) void get(const char *path, const char *headers, struct reply *r)
{
	get_vm(&full_vm, "GET", path, headers, r);
}

static void expect(const struct reply *r, int status, const char *body)
{
	if (r->status != status)
		fail_msg("status %d, want %d:\n%s", r->status, status, r->out.data);
	if (body && (r->body_len != strlen(body) || memcmp(r->body, body, r->body_len)))
		fail_msg("body:\n%.*s\nwant:\n%s", (int)r->body_len, r->body, body);
}

/* The reply body as JSON (the caller frees it); unused by test_flavors.c. */
static __attribute__((unused)) json_t *body_json(const struct reply *r)
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

#endif
